//! Access commands: USER, PASS, REIN, QUIT (RFC 959 §4.1.1; pyftpdlib `ftp_USER` …).
//!
//! A login asks the authorizer to take on the user's identity (`impersonate_user`) before
//! the filesystem, and its root directory descriptor, are made, so every later file
//! operation runs as that user. In the Pool and Thread models that identity is the session
//! thread's own filesystem uid and gid (Linux `setfsuid`/`setfsgid` are per thread), so
//! sessions of different users share a process without sharing an identity; only the uid
//! and the primary gid change (supplementary groups are per process). The logout ends it
//! (`terminate_impersonation`, called when the account drops its
//! [`Impersonation`] guard: at logout, and on every other way out of a session, a panic
//! unwinding included). A session in a process of its own
//! ([`ProcessKind::SingleSession`](crate::process::ProcessKind::SingleSession): Fork, inetd
//! "nowait") may instead drop to the user for good.

use std::io;

use crate::authorizers::Impersonation;
use crate::error::AuthenticationFailed;
use crate::filesystems::AbstractedFs;
use crate::handlers::session::Phase;
use crate::handlers::stats::SessionEnd;
use crate::handlers::{BanRules, Request, Session};

pub(super) fn user(s: &mut Session, req: &Request) -> io::Result<()> {
    // RFC 2577 §5: always 331, so a client cannot learn which names exist.
    if s.account.authenticated {
        s.flush_account();
        s.account.username = req.arg_str();
        s.ctrl.reply(
            331,
            "Previous account information was flushed, send password.",
        )
    } else {
        s.account.username = req.arg_str();
        s.ctrl.reply(331, "Username ok, send password.")
    }
}

pub(super) fn pass(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.account.authenticated {
        return s.ctrl.reply(503, "User already authenticated.");
    }
    if s.account.username.is_empty() {
        return s.ctrl.reply(503, "Login with USER first.");
    }
    let user = s.account.username.clone();
    let shown = crate::proto::log_escape(user.as_bytes()).into_owned();
    let password = req.arg_str();
    if s.ctx.banned() {
        return refuse_banned(s, &shown);
    }
    let began = std::time::Instant::now();
    match login(s, &user, &password) {
        Ok((fs, msg, guard)) => {
            let rates = s.ctx.rates.clone();
            s.account.logged_in(&s.h, &rates, fs, guard);
            if user == "anonymous" {
                s.account.anonymous_id = Some(password);
            }
            welcome(s, user, &shown, &msg, began)
        }
        Err(e) if e.is_temporary() => deferred(s, &shown, &e.0),
        Err(e) => failed(s, &user, &shown, &password, e.0),
    }
}

/// A login accepted: 230, counted, logged, `on_login`. This and the other outcomes are
/// not inlined into `pass`, whose frame then stays small under the authorizer's call: an
/// idle logged-in session's thread keeps resident every stack page its login touched.
#[inline(never)]
fn welcome(
    s: &mut Session,
    user: String,
    shown: &str,
    msg: &str,
    began: std::time::Instant,
) -> io::Result<()> {
    s.ctrl.set_user(Some(shown));
    s.reply_lines(230, msg)?;
    s.ctx.stats.login_ok(began.elapsed());
    // Logged once PASS returns, from a shallower frame (`Session::announce_login`).
    s.account.announce = true;
    s.cb.on_login(&user);
    s.stats.user = Some(user);
    Ok(())
}

/// The authorizer could not decide (its database is down): not a wrong password, so no
/// delay, no attempt counted (nor towards a ban), no on_login_failed; 421 closes the
/// session (RFC 959 §4.2) and the client may retry later.
#[inline(never)]
fn deferred(s: &mut Session, shown: &str, why: &str) -> io::Result<()> {
    log::info!("{} USER '{shown}' login deferred: {why}", s.ctrl.prefix);
    s.account.username.clear();
    s.ctrl.closing = true;
    s.ctrl.reply(421, why)
}

/// A refused password: counted for the address across all its sessions (the server's
/// admission table), answered after `auth_failed_timeout`, and the session closed after
/// `max_login_attempts`.
#[inline(never)]
fn failed(s: &mut Session, user: &str, shown: &str, password: &str, msg: String) -> io::Result<()> {
    let rules = BanRules {
        failures: s.h.ban_failures,
        find_time: s.h.ban_find_time,
        ban_time: s.h.ban_time,
    };
    let banned = s.ctx.login_failed(&rules);
    // Slowed down; only this session waits.
    std::thread::sleep(s.h.auth_failed_timeout);
    if banned {
        s.ctx.stats.login_failed(false);
        s.cb.on_login_failed(user, password);
        return refuse_banned(s, shown);
    }
    s.account.attempted_logins += 1;
    s.account.username.clear();
    let mut msg = capitalize(&msg);
    let exceeded = s.account.attempted_logins >= s.h.max_login_attempts;
    s.ctx.stats.login_failed(exceeded);
    if exceeded {
        msg.push_str(" Disconnecting.");
        s.ctrl.closing = true;
        s.stats.ending(SessionEnd::Limit);
    }
    s.ctrl.reply(530, &msg)?;
    log::info!("{} USER '{shown}' failed login.", s.ctrl.prefix);
    s.cb.on_login_failed(user, password);
    Ok(())
}

/// An address banned for failed logins (its own or other sessions') gets 421 and the
/// session ends; the password is not even tried. `shown` is the user name as logged.
#[inline(never)]
fn refuse_banned(s: &mut Session, shown: &str) -> io::Result<()> {
    log::info!("{} USER '{shown}' refused: address banned.", s.ctrl.prefix);
    s.account.username.clear();
    s.ctrl.closing = true;
    s.stats.ending(SessionEnd::Limit);
    s.ctrl.reply(
        421,
        "Too many failed logins from your address; try again later.",
    )
}

/// Validates, finds the home, takes on the user's identity and builds the filesystem.
/// Not inlined: its frame (the authorizer's answer, the home's checks) is gone before the
/// login is logged, so the deepest stack page an idle logged-in session keeps is not
/// touched (see `Session::serve`).
#[inline(never)]
fn login(
    s: &Session,
    user: &str,
    password: &str,
) -> Result<(AbstractedFs, String, Impersonation), AuthenticationFailed> {
    let auth = &s.h.authorizer;
    auth.validate_authentication(user, password, s.ctrl.peer)
        .map_err(|e| AuthenticationFailed(non_empty(e.0, user), e.1))?;
    let home = auth
        .get_home_dir(user)
        .map_err(|e| AuthenticationFailed::new(non_empty(e.0, user)))?;
    let msg = auth.get_msg_login(user);
    let guard = Impersonation::begin(auth, user, password, s.ctx.process).map_err(|e| {
        log::error!("{} impersonate_user({user}): {e}", s.ctrl.prefix);
        AuthenticationFailed::new("Authentication failed.")
    })?;
    let fs = new_fs(s, user, &home).map_err(|e| {
        log::error!(
            "{} filesystem for {user} at {}: {e}",
            s.ctrl.prefix,
            home.display()
        );
        AuthenticationFailed::new("Authentication failed.")
    })?;
    Ok((fs, msg, guard))
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
        let home = crate::filesystems::path::realpath(&crate::filesystems::path::absolute(home)?)
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
    s.ctrl.reply(230, "Ready for new user.")
}

/// QUIT: 221 and the session ends. During a transfer the 221 comes now and the transfer's
/// own reply when it ends, then the connection closes (RFC 959, pyftpdlib); while a
/// transfer waits for its passive client, it is dropped and the session ends at once.
pub(super) fn quit(s: &mut Session, _req: &Request) -> io::Result<()> {
    if matches!(s.data.phase, Phase::Running(_)) {
        log::debug!("{} QUIT: closing after the transfer", s.ctrl.prefix);
        s.say_goodbye()?;
        s.ctrl.quit_pending = true;
        return Ok(());
    }
    s.stats.ending(SessionEnd::Quit);
    if !matches!(s.data.phase, Phase::Connecting(..) | Phase::Securing(..)) {
        // The slot is free before the client has the 221: it may reconnect at once.
        s.ctx.release_early();
    }
    s.say_goodbye()?;
    s.cancel_phase();
    s.ctrl.closing = true;
    Ok(())
}

impl Session {
    /// The 221 reply to QUIT: the user's quit message, or pyftpdlib's "Goodbye.".
    pub(crate) fn say_goodbye(&mut self) -> io::Result<()> {
        let msg = match self.account.user() {
            Some(u) => self.h.authorizer.get_msg_quit(u),
            None => "Goodbye.".to_string(),
        };
        self.reply_lines(221, &msg)
    }
}
