//! Access commands: USER, PASS, REIN, QUIT (RFC 959 §4.1.1; pyftpdlib `ftp_USER` …).

use std::io;

use crate::filesystems::AbstractedFs;
use crate::handlers::data::DataSetup;
use crate::handlers::{Request, Session};
use crate::proto::TransferType;

pub(super) fn user(s: &mut Session, req: &Request) -> io::Result<()> {
    // RFC 2577 §5: always 331, so a client cannot learn which names exist.
    if s.authenticated {
        s.flush_account();
        s.username = req.arg_str();
        s.reply(
            331,
            "Previous account information was flushed, send password.",
        )
    } else {
        s.username = req.arg_str();
        s.reply(331, "Username ok, send password.")
    }
}

pub(super) fn pass(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.authenticated {
        return s.reply(503, "User already authenticated.");
    }
    if s.username.is_empty() {
        return s.reply(503, "Login with USER first.");
    }
    let user = s.username.clone();
    let password = req.arg_str();
    if crate::servers::admission::banned() {
        return refuse_banned(s, &user);
    }
    match login(s, &user, &password) {
        Ok((fs, msg)) => {
            s.set_login_fs(fs);
            s.limits = crate::handlers::throttle::SessionLimits::at_login(&s.h, &user);
            s.authenticated = true;
            s.attempted_logins = 0;
            s.prefix = format!("{}:{}-[{}]", s.peer.ip(), s.peer.port(), user);
            s.reply_lines(230, &msg)?;
            log::info!("{} USER '{}' logged in.", s.prefix, user);
            s.cb.on_login(&user);
            Ok(())
        }
        Err(msg) => {
            // Counted for the address across all its sessions (servers/admission.rs)...
            let banned = crate::servers::admission::login_failed(&s.h);
            // ...and slowed down; only this session waits.
            std::thread::sleep(s.h.auth_failed_timeout);
            if banned {
                s.cb.on_login_failed(&user, &password);
                return refuse_banned(s, &user);
            }
            s.attempted_logins += 1;
            s.username.clear();
            let mut msg = capitalize(&msg);
            if s.attempted_logins >= s.h.max_login_attempts {
                msg.push_str(" Disconnecting.");
                s.closing = true;
            }
            s.reply(530, &msg)?;
            log::info!("{} USER '{}' failed login.", s.prefix, user);
            s.cb.on_login_failed(&user, &password);
            Ok(())
        }
    }
}

/// An address banned for failed logins (its own or other sessions') gets 421 and the
/// session ends; the password is not even tried.
fn refuse_banned(s: &mut Session, user: &str) -> io::Result<()> {
    log::info!("{} USER '{user}' refused: address banned.", s.prefix);
    s.username.clear();
    s.closing = true;
    s.reply(
        421,
        "Too many failed logins from your address; try again later.",
    )
}

/// Validates, finds the home, takes on the user's identity and builds the filesystem.
fn login(s: &Session, user: &str, password: &str) -> Result<(AbstractedFs, String), String> {
    let auth = &s.h.authorizer;
    auth.validate_authentication(user, password, s.peer)
        .map_err(|e| non_empty(e.0, user))?;
    let home = auth.get_home_dir(user).map_err(|e| non_empty(e.0, user))?;
    let msg = auth.get_msg_login(user);
    auth.impersonate_user(user, password).map_err(|e| {
        log::error!("{} impersonate_user({user}): {e}", s.prefix);
        "Authentication failed.".to_string()
    })?;
    let fs = (s.h.filesystem)(user, &home)
        .and_then(|fs| new_fs(s.h.root_dir.as_deref(), &home, fs))
        .map_err(|e| {
            log::error!(
                "{} filesystem for {user} at {}: {e}",
                s.prefix,
                home.display()
            );
            let _ = auth.terminate_impersonation(user);
            "Authentication failed.".to_string()
        })?;
    Ok((fs, msg))
}

/// The session's jail: the home, or `root_dir` with the home as working directory.
fn new_fs(
    root: Option<&std::path::Path>,
    home: &std::path::Path,
    fs: Box<dyn crate::filesystems::Filesystem>,
) -> io::Result<AbstractedFs> {
    let Some(root) = root else {
        return AbstractedFs::new(home, fs);
    };
    let mut afs = AbstractedFs::new(root, fs)?;
    let home = std::fs::canonicalize(home)?;
    if !afs.validpath(&home) {
        return Err(io::Error::other("home directory outside root_dir"));
    }
    afs.chdir(&home)?;
    Ok(afs)
}

fn non_empty(msg: String, user: &str) -> String {
    if !msg.is_empty() {
        msg
    } else if user == "anonymous" {
        "Anonymous access not allowed.".into()
    } else {
        "Authentication failed.".into()
    }
}

/// RFC 959 replies start with a capital letter (pyftpdlib capitalizes error texts).
fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

pub(super) fn rein(s: &mut Session, _req: &Request) -> io::Result<()> {
    s.flush_account();
    s.reply(230, "Ready for new user.")
}

pub(super) fn quit(s: &mut Session, _req: &Request) -> io::Result<()> {
    // The slot is free before the client has the 221: it may reconnect at once.
    crate::servers::admission::release_early();
    s.say_goodbye()?;
    s.closing = true;
    Ok(())
}

impl Session {
    /// The 221 reply to QUIT: the user's quit message, or pyftpdlib's "Goodbye.".
    pub(crate) fn say_goodbye(&mut self) -> io::Result<()> {
        let msg = if self.authenticated {
            self.h.authorizer.get_msg_quit(&self.username)
        } else {
            "Goodbye.".to_string()
        };
        self.reply_lines(221, &msg)
    }

    /// Resets the account and transfer parameters (pyftpdlib `flush_account`: REIN, or USER
    /// while logged in).
    pub(crate) fn flush_account(&mut self) {
        self.data = DataSetup::None;
        self.logout();
        self.attempted_logins = 0;
        self.ttype = TransferType::Ascii;
        self.epsv_all = false;
        self.quit_pending = false;
    }
}
