//! Access commands: USER, PASS, REIN, QUIT (RFC 959 §4.1.1; pyftpdlib `ftp_USER` …).

use std::io;

use crate::error::AuthenticationFailed;
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
    let shown = crate::proto::log_escape(user.as_bytes()).into_owned();
    let password = req.arg_str();
    if crate::servers::admission::banned() {
        return refuse_banned(s, &shown);
    }
    match login(s, &user, &password) {
        Ok((fs, msg)) => {
            s.set_login_fs(fs);
            s.limits = crate::handlers::throttle::SessionLimits::at_login(&s.h, &user);
            s.authenticated = true;
            s.attempted_logins = 0;
            s.prefix = format!("{}:{}-[{shown}]", s.peer.ip(), s.peer.port());
            s.reply_lines(230, &msg)?;
            log::info!("{} USER '{shown}' logged in.", s.prefix);
            s.cb.on_login(&user);
            Ok(())
        }
        Err(e) if e.is_temporary() => {
            // The authorizer could not decide (its database is down): not a wrong password,
            // so no delay, no attempt counted (nor towards a ban), no on_login_failed; 421
            // closes the session (RFC 959 §4.2) and the client may retry later.
            log::info!("{} USER '{shown}' login deferred: {}", s.prefix, e.0);
            s.username.clear();
            s.closing = true;
            s.reply(421, &e.0)
        }
        Err(e) => {
            let msg = e.0;
            // Counted for the address across all its sessions (servers/admission/)...
            let banned = crate::servers::admission::login_failed(&s.h);
            // ...and slowed down; only this session waits.
            std::thread::sleep(s.h.auth_failed_timeout);
            if banned {
                s.cb.on_login_failed(&user, &password);
                return refuse_banned(s, &shown);
            }
            s.attempted_logins += 1;
            s.username.clear();
            let mut msg = capitalize(&msg);
            if s.attempted_logins >= s.h.max_login_attempts {
                msg.push_str(" Disconnecting.");
                s.closing = true;
            }
            s.reply(530, &msg)?;
            log::info!("{} USER '{shown}' failed login.", s.prefix);
            s.cb.on_login_failed(&user, &password);
            Ok(())
        }
    }
}

/// An address banned for failed logins (its own or other sessions') gets 421 and the
/// session ends; the password is not even tried. `shown` is the user name as logged.
fn refuse_banned(s: &mut Session, shown: &str) -> io::Result<()> {
    log::info!("{} USER '{shown}' refused: address banned.", s.prefix);
    s.username.clear();
    s.closing = true;
    s.reply(
        421,
        "Too many failed logins from your address; try again later.",
    )
}

/// Validates, finds the home, takes on the user's identity and builds the filesystem.
fn login(
    s: &Session,
    user: &str,
    password: &str,
) -> Result<(AbstractedFs, String), AuthenticationFailed> {
    let auth = &s.h.authorizer;
    auth.validate_authentication(user, password, s.peer)
        .map_err(|e| AuthenticationFailed(non_empty(e.0, user), e.1))?;
    let home = auth
        .get_home_dir(user)
        .map_err(|e| AuthenticationFailed::new(non_empty(e.0, user)))?;
    let msg = auth.get_msg_login(user);
    auth.impersonate_user(user, password, crate::servers::process_kind())
        .map_err(|e| {
            log::error!("{} impersonate_user({user}): {e}", s.prefix);
            AuthenticationFailed::new("Authentication failed.")
        })?;
    let fs = new_fs(s, user, &home).map_err(|e| {
        log::error!(
            "{} filesystem for {user} at {}: {e}",
            s.prefix,
            home.display()
        );
        let _ = auth.terminate_impersonation(user);
        AuthenticationFailed::new("Authentication failed.")
    })?;
    Ok((fs, msg))
}

/// The session's files: rooted at the home, or at `root_dir` with the home as working
/// directory (unless `chroot_local_user` jails every user in their home). The filesystem
/// is built, and its root opened, after the user's identity was taken on.
fn new_fs(s: &Session, user: &str, home: &std::path::Path) -> io::Result<AbstractedFs> {
    let root = match &s.h.root_dir {
        Some(root) if !s.h.chroot_local_user => root.as_path(),
        _ => home,
    };
    let fs = (s.h.filesystem)(user, root)?;
    let mut afs = AbstractedFs::new(root, fs)?;
    if root != home {
        let home = crate::filesystems::path::realpath(&std::path::absolute(home)?)
            .ok_or_else(|| io::Error::other("symlink loop in home"))?;
        if !home.starts_with(afs.root()) {
            return Err(io::Error::other("home directory outside root_dir"));
        }
        let v = afs.fs2ftp(&home);
        afs.chdir(&crate::filesystems::path::bytes_path(&v))?;
    }
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
