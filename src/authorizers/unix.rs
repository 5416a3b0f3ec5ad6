//! `UnixAuthorizer`: the system's own accounts, mirroring pyftpdlib's `UnixAuthorizer`
//! (global_perm, allowed_users, rejected_users, require_valid_shell, anonymous_user,
//! override_user). Users and homes come from the account database (getpwnam_r); passwords
//! are checked with the system's crypt(3) (libxcrypt: yescrypt `$y$`, sha512-crypt `$6$`
//! and every other scheme the system supports) against the shadow entry (getspnam_r, so
//! NSS sources work too). PAM is not used: it would need a C dependency and a conversation
//! callback, and the hashes PAM's pam_unix checks are exactly these.
//!
//! Impersonation, decided by the [`ProcessKind`] the session passes to
//! [`impersonate_user`](Authorizer::impersonate_user):
//! - In a process that serves one session ([`ProcessKind::SingleSession`]: the Fork model,
//!   inetd "nowait") the process drops to the user for good (initgroups, setgid, setuid,
//!   then checks that setuid(0) fails): full group semantics, and nothing the session does
//!   can regain root. A second login in the same session then fails (it cannot become
//!   anyone else).
//! - In a process shared by many sessions ([`ProcessKind::Shared`]: Pool, Thread, PreFork
//!   workers, inetd "wait") only the session thread's filesystem identity changes (Linux
//!   setfsuid/setfsgid), restored when the session's [`Impersonation`](super::Impersonation)
//!   guard is dropped. pyftpdlib's `seteuid` cannot serve here: POSIX makes set*id calls
//!   process-wide (glibc applies them to every thread), so one login would change every
//!   session's identity; the filesystem ids are the only per-thread identity Linux has, and
//!   they are the ones the kernel checks for file access. Supplementary groups are
//!   process-wide and stay the server's: in these models access follows the user's uid and
//!   primary gid only. Only a thread that impersonated restores its ids (two system calls).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::system::{
    become_user, lookup, password_hash, restore_fs_ids, set_fs_ids, today, valid_shell,
    verify_password,
};
use super::{is_subpath, Authorizer, Perm, PermSet};
use crate::error::{AuthenticationFailed, AuthorizerError};
use crate::process::ProcessKind;

const MSG_AUTH_FAILED: &str = "Authentication failed.";
const MSG_ANON_NOT_ALLOWED: &str = "Anonymous access not allowed.";

/// Per-user settings that replace the constructor's (pyftpdlib `override_user`).
#[derive(Debug, Clone, Default)]
struct Override {
    password: Option<String>,
    homedir: Option<PathBuf>,
    perm: Option<PermSet>,
    msg_login: Option<String>,
    msg_quit: Option<String>,
}

/// Real Unix accounts (pyftpdlib `UnixAuthorizer`). Needs root to read password hashes and
/// to change identity.
///
/// ```no_run
/// use ftpdlib::authorizers::UnixAuthorizer;
/// let mut auth = UnixAuthorizer::new();
/// auth.rejected_users(&["root"]).unwrap();
/// auth.override_user("matt", None, None, Some("elr"), None, None).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct UnixAuthorizer {
    global_perm: PermSet,
    allowed_users: Vec<String>,
    rejected_users: Vec<String>,
    require_valid_shell: bool,
    anonymous_user: Option<String>,
    msg_login: String,
    msg_quit: String,
    overrides: HashMap<String, Override>,
}

impl Default for UnixAuthorizer {
    fn default() -> Self {
        Self::new()
    }
}

impl UnixAuthorizer {
    /// pyftpdlib's defaults: every permission (`"elradfmwMT"`), no user lists, a valid
    /// shell required, no anonymous access, "Login successful." / "Goodbye.".
    pub fn new() -> Self {
        UnixAuthorizer {
            global_perm: PermSet::all(),
            allowed_users: Vec::new(),
            rejected_users: Vec::new(),
            require_valid_shell: true,
            anonymous_user: None,
            msg_login: "Login successful.".into(),
            msg_quit: "Goodbye.".into(),
            overrides: HashMap::new(),
        }
    }

    /// Sets the permissions of every user (`global_perm`).
    ///
    /// # Errors
    /// An unknown permission letter.
    pub fn global_perm(&mut self, perm: &str) -> Result<&mut Self, AuthorizerError> {
        self.global_perm = PermSet::parse(perm)?;
        Ok(self)
    }

    /// Only these users may log in (`allowed_users`).
    ///
    /// # Errors
    /// `rejected_users` is set too, or a user does not exist.
    pub fn allowed_users(&mut self, users: &[&str]) -> Result<&mut Self, AuthorizerError> {
        self.allowed_users = user_list(users, &self.rejected_users)?;
        Ok(self)
    }

    /// These users may not log in (`rejected_users`).
    ///
    /// # Errors
    /// `allowed_users` is set too, or a user does not exist.
    pub fn rejected_users(&mut self, users: &[&str]) -> Result<&mut Self, AuthorizerError> {
        self.rejected_users = user_list(users, &self.allowed_users)?;
        Ok(self)
    }

    /// Whether a login needs a shell listed in /etc/shells (no-op without that file).
    pub fn require_valid_shell(&mut self, yes: bool) -> &mut Self {
        self.require_valid_shell = yes;
        self
    }

    /// Allows anonymous logins, served as this system account (its home and identity).
    ///
    /// # Errors
    /// The account does not exist.
    pub fn anonymous_user(&mut self, user: &str) -> Result<&mut Self, AuthorizerError> {
        lookup(user)?;
        self.anonymous_user = Some(user.to_owned());
        Ok(self)
    }

    /// Sets the default login and quit messages.
    pub fn messages(&mut self, msg_login: &str, msg_quit: &str) -> &mut Self {
        self.msg_login = msg_login.to_owned();
        self.msg_quit = msg_quit.to_owned();
        self
    }

    /// Overrides settings for one user (pyftpdlib `override_user`): a password that
    /// replaces the system one, a home directory, permissions, messages.
    ///
    /// # Errors
    /// The user does not exist (and is not `anonymous`), the home is not a directory, or a
    /// permission letter is unknown.
    pub fn override_user(
        &mut self,
        username: &str,
        password: Option<&str>,
        homedir: Option<&Path>,
        perm: Option<&str>,
        msg_login: Option<&str>,
        msg_quit: Option<&str>,
    ) -> Result<&mut Self, AuthorizerError> {
        if username != "anonymous" {
            lookup(username)?;
        }
        let homedir = match homedir {
            Some(h) if !h.is_dir() => {
                return Err(AuthorizerError(format!(
                    "no such directory: {}",
                    h.display()
                )))
            }
            Some(h) => Some(
                h.canonicalize()
                    .map_err(|e| AuthorizerError(format!("{}: {e}", h.display())))?,
            ),
            None => None,
        };
        let perm = perm.map(PermSet::parse).transpose()?;
        let o = self.overrides.entry(username.to_owned()).or_default();
        if password.is_some() {
            o.password = password.map(str::to_owned);
        }
        if homedir.is_some() {
            o.homedir = homedir;
        }
        if perm.is_some() {
            o.perm = perm;
        }
        if msg_login.is_some() {
            o.msg_login = msg_login.map(str::to_owned);
        }
        if msg_quit.is_some() {
            o.msg_quit = msg_quit.map(str::to_owned);
        }
        Ok(self)
    }

    /// The system account a login name maps to (`anonymous` → `anonymous_user`).
    fn account(&self, username: &str) -> Option<String> {
        if username == "anonymous" {
            self.anonymous_user.clone()
        } else {
            Some(username.to_owned())
        }
    }

    fn is_rejected(&self, username: &str) -> bool {
        (!self.allowed_users.is_empty() && !self.allowed_users.iter().any(|u| u == username))
            || self.rejected_users.iter().any(|u| u == username)
    }

    fn perms(&self, username: &str) -> PermSet {
        if let Some(p) = self.overrides.get(username).and_then(|o| o.perm) {
            return p;
        }
        if username == "anonymous" {
            // Anonymous users read only unless overridden (pyftpdlib warns on write perms).
            let read = PermSet::parse(PermSet::READ).unwrap_or_default();
            return PermSet::parse(
                &Perm::ALL
                    .iter()
                    .filter(|p| read.contains(**p) && self.global_perm.contains(**p))
                    .map(|p| p.letter())
                    .collect::<String>(),
            )
            .unwrap_or_default();
        }
        self.global_perm
    }
}

/// `users` for `allowed_users` or `rejected_users` (each must exist), unless `other`, the
/// other list, is set already: pyftpdlib allows one of the two.
fn user_list(users: &[&str], other: &[String]) -> Result<Vec<String>, AuthorizerError> {
    if !other.is_empty() {
        return Err(AuthorizerError(
            "allowed_users and rejected_users options are mutually exclusive".into(),
        ));
    }
    known_users(users)
}

fn known_users(users: &[&str]) -> Result<Vec<String>, AuthorizerError> {
    users
        .iter()
        .map(|u| lookup(u).map(|_| (*u).to_owned()))
        .collect()
}

impl Authorizer for UnixAuthorizer {
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        _peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed> {
        let fail = |m: &str| Err(AuthenticationFailed::new(m));
        if username == "anonymous" {
            return match self.anonymous_user {
                Some(_) => Ok(()),
                None => fail(MSG_ANON_NOT_ALLOWED),
            };
        }
        if self.is_rejected(username) {
            return fail(&format!("User {username} is not allowed to login."));
        }
        let Ok(user) = lookup(username) else {
            return fail(MSG_AUTH_FAILED);
        };
        match self
            .overrides
            .get(username)
            .and_then(|o| o.password.clone())
        {
            Some(p) => {
                if p.len() != password.len()
                    || p.bytes()
                        .zip(password.bytes())
                        .fold(0u8, |a, (x, y)| a | (x ^ y))
                        != 0
                {
                    return fail(MSG_AUTH_FAILED);
                }
            }
            None => {
                let Some((hash, expire)) = password_hash(&user) else {
                    return fail(MSG_AUTH_FAILED);
                };
                if !verify_password(password, &hash) {
                    return fail(MSG_AUTH_FAILED);
                }
                if expire >= 0 && expire <= today() {
                    log::info!("account {username:?} has expired");
                    return fail(MSG_AUTH_FAILED);
                }
            }
        }
        if self.require_valid_shell && !valid_shell(&user.shell) {
            return fail(&format!("User {username} doesn't have a valid shell."));
        }
        Ok(())
    }

    fn get_home_dir(&self, username: &str) -> Result<PathBuf, AuthorizerError> {
        if let Some(h) = self.overrides.get(username).and_then(|o| o.homedir.clone()) {
            return Ok(h);
        }
        let account = self
            .account(username)
            .ok_or_else(|| AuthorizerError(MSG_ANON_NOT_ALLOWED.into()))?;
        Ok(lookup(&account)?.dir)
    }

    fn has_perm(&self, username: &str, perm: Perm, path: Option<&Path>) -> bool {
        if !self.perms(username).contains(perm) {
            return false;
        }
        // With an overridden home the user stays inside it (as DummyAuthorizer users do).
        match (
            path,
            self.overrides
                .get(username)
                .and_then(|o| o.homedir.as_ref()),
        ) {
            (Some(p), Some(home)) => is_subpath(p, home),
            _ => true,
        }
    }

    fn get_perms(&self, username: &str) -> PermSet {
        self.perms(username)
    }

    fn get_msg_login(&self, username: &str) -> String {
        self.overrides
            .get(username)
            .and_then(|o| o.msg_login.clone())
            .unwrap_or_else(|| self.msg_login.clone())
    }

    fn get_msg_quit(&self, username: &str) -> String {
        self.overrides
            .get(username)
            .and_then(|o| o.msg_quit.clone())
            .unwrap_or_else(|| self.msg_quit.clone())
    }

    fn impersonate_user(
        &self,
        username: &str,
        _password: &str,
        process: ProcessKind,
    ) -> Result<(), AuthorizerError> {
        let account = self
            .account(username)
            .ok_or_else(|| AuthorizerError(MSG_ANON_NOT_ALLOWED.into()))?;
        let user = lookup(&account)?;
        match process {
            // This process serves only this session: become the user for good.
            ProcessKind::SingleSession => become_user(&user),
            ProcessKind::Shared => set_fs_ids(user.uid, user.gid),
        }
    }

    fn terminate_impersonation(&self, _username: &str) -> Result<(), AuthorizerError> {
        // After a drop for good the effective ids are the user's, and this changes nothing.
        restore_fs_ids();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let mut a = UnixAuthorizer::new();
        assert!(a.global_perm("elz").is_err());
        assert!(a.allowed_users(&["no-such-user-xyz"]).is_err());
        a.rejected_users(&["root"]).unwrap();
        assert!(a.allowed_users(&["root"]).is_err());
        assert!(a.is_rejected("root"));
        let peer = crate::authorizers::tests::peer();
        assert_eq!(
            a.validate_authentication("anonymous", "x", peer)
                .unwrap_err()
                .0,
            MSG_ANON_NOT_ALLOWED
        );
        assert_eq!(
            a.validate_authentication("root", "x", peer).unwrap_err().0,
            "User root is not allowed to login."
        );
        assert_eq!(a.get_perms("anonymous").to_string(), "elr");
        assert_eq!(a.get_perms("root").to_string(), "elradfmwMT");
    }
}
