//! `UnixAuthorizer`: the system's own accounts, mirroring pyftpdlib's `UnixAuthorizer`
//! (global_perm, allowed_users, rejected_users, require_valid_shell, anonymous_user,
//! override_user). Users and homes come from the account database (getpwnam_r); passwords
//! are checked with the system's crypt(3) (libxcrypt: yescrypt `$y$`, sha512-crypt `$6$`
//! and every other scheme the system supports) against the shadow entry (getspnam_r, so
//! NSS sources work too). PAM is not used: it would need a C dependency and a conversation
//! callback, and the hashes PAM's pam_unix checks are exactly these.
//!
//! Impersonation: in a process that serves one session (Fork model, inetd "nowait") the
//! process drops to the user for good (setgroups, setgid, setuid, then checks that
//! setuid(0) fails); in the thread models only the session thread's filesystem identity
//! changes (Linux setfsuid/setfsgid, per thread), so sessions never see each other's.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use super::{is_subpath, Authorizer, Perm, PermSet};
use crate::error::{AuthenticationFailed, AuthorizerError};

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
        if !self.rejected_users.is_empty() {
            return Err(AuthorizerError(
                "allowed_users and rejected_users options are mutually exclusive".into(),
            ));
        }
        self.allowed_users = known_users(users)?;
        Ok(self)
    }

    /// These users may not log in (`rejected_users`).
    ///
    /// # Errors
    /// `allowed_users` is set too, or a user does not exist.
    pub fn rejected_users(&mut self, users: &[&str]) -> Result<&mut Self, AuthorizerError> {
        if !self.allowed_users.is_empty() {
            return Err(AuthorizerError(
                "allowed_users and rejected_users options are mutually exclusive".into(),
            ));
        }
        self.rejected_users = known_users(users)?;
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

fn known_users(users: &[&str]) -> Result<Vec<String>, AuthorizerError> {
    users
        .iter()
        .map(|u| lookup(u).map(|_| (*u).to_owned()))
        .collect()
}

/// The account database entry of `name`.
fn lookup(name: &str) -> Result<User, AuthorizerError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(AuthorizerError(format!("no such user {name:?}"))),
        Err(e) => Err(AuthorizerError(format!("getpwnam({name:?}): {e}"))),
    }
}

/// True if `shell` is listed in /etc/shells (or that file does not exist).
fn valid_shell(shell: &Path) -> bool {
    match std::fs::read_to_string("/etc/shells") {
        Ok(list) => list
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .any(|l| Path::new(l) == shell),
        Err(_) => true,
    }
}

/// Days since the epoch, for shadow expiry dates.
fn today() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86400) as i64)
        .unwrap_or(0)
}

/// The password hash of an account and its expiry day (-1: never), from the shadow
/// database when there is one, else from the passwd entry.
fn password_hash(user: &User) -> Option<(Vec<u8>, i64)> {
    if let Some(found) = shadow_entry(&user.name) {
        return Some(found);
    }
    let p = user.passwd.as_bytes();
    (!p.is_empty() && p != b"x").then(|| (p.to_vec(), -1))
}

/// getspnam_r(3): the shadow hash and expiry day of `name`.
#[allow(unsafe_code)]
fn shadow_entry(name: &str) -> Option<(Vec<u8>, i64)> {
    let cname = CString::new(name).ok()?;
    let mut buf: Vec<nix::libc::c_char> = vec![0; 16 * 1024];
    loop {
        // SAFETY: an all-zero `spwd` (null pointers, zero numbers) is a valid value; the
        // pointers getspnam_r stores in it point into `buf`, which outlives every use below.
        let mut sp: nix::libc::spwd = unsafe { std::mem::zeroed() };
        let mut result: *mut nix::libc::spwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: a NUL-terminated name, a `spwd` to
        // fill, a buffer of `buf.len()` bytes and a place for the result pointer.
        let rc = unsafe {
            nix::libc::getspnam_r(
                cname.as_ptr(),
                &mut sp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == nix::libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || sp.sp_pwdp.is_null() {
            return None;
        }
        // SAFETY: on success sp_pwdp points to a NUL-terminated string inside `buf`.
        let hash = unsafe { CStr::from_ptr(sp.sp_pwdp) }.to_bytes().to_vec();
        return Some((hash, sp.sp_expire));
    }
}

#[link(name = "crypt")]
extern "C" {
    /// libxcrypt's crypt_rn(3): like crypt_r, with the size of the work area given and
    /// NULL (not a magic string) on failure.
    fn crypt_rn(
        phrase: *const nix::libc::c_char,
        setting: *const nix::libc::c_char,
        data: *mut nix::libc::c_void,
        size: nix::libc::c_int,
    ) -> *mut nix::libc::c_char;
}

/// The size of libxcrypt's `struct crypt_data`.
const CRYPT_DATA_SIZE: usize = 32768;

/// Hashes `password` with the scheme and salt of `setting` (a full hash works) using the
/// system's crypt(3). `None` when the scheme is unknown or the input holds a NUL.
#[allow(unsafe_code)]
pub fn crypt(password: &str, setting: &[u8]) -> Option<Vec<u8>> {
    let phrase = CString::new(password).ok()?;
    let setting = CString::new(setting).ok()?;
    // Zeroed, as crypt_rn requires on first use.
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: phrase and setting are NUL-terminated; data is a writable area of exactly
    // CRYPT_DATA_SIZE bytes, the size passed; the result points into `data` (or is NULL)
    // and is copied out before `data` is dropped.
    let out = unsafe {
        crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as nix::libc::c_int,
        )
    };
    if out.is_null() {
        return None;
    }
    // SAFETY: a non-NULL result is a NUL-terminated string inside `data`.
    let hash = unsafe { CStr::from_ptr(out) }.to_bytes().to_vec();
    // libxcrypt marks failure with a hash starting with '*' in some builds.
    (!hash.starts_with(b"*")).then_some(hash)
}

/// Checks `password` against a crypt(3) hash in constant time; locked (`!…`) and disabled
/// (`*`, empty) hashes never match.
pub fn verify_password(password: &str, hash: &[u8]) -> bool {
    if hash.is_empty() || hash.starts_with(b"!") || hash.starts_with(b"*") {
        return false;
    }
    match crypt(password, hash) {
        Some(h) => {
            h.len() == hash.len() && h.iter().zip(hash).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
        }
        None => false,
    }
}

/// Drops the whole process to `name` for good: supplementary groups, gid, uid, then checks
/// that root cannot be regained (the `--user` flag; the Fork model after login).
///
/// # Errors
/// Unknown user, a failed set*id call, or root still reachable afterwards.
pub fn drop_privileges(name: &str) -> Result<(), AuthorizerError> {
    let u = lookup(name)?;
    become_user(&u)
}

fn become_user(u: &User) -> Result<(), AuthorizerError> {
    let err = |what: &str, e: nix::Error| AuthorizerError(format!("{what}: {e}"));
    let cname = CString::new(u.name.as_str())
        .map_err(|_| AuthorizerError("user name holds a NUL byte".into()))?;
    if Uid::effective().is_root() {
        nix::unistd::initgroups(&cname, u.gid).map_err(|e| err("initgroups", e))?;
    }
    nix::unistd::setgid(u.gid).map_err(|e| err("setgid", e))?;
    nix::unistd::setuid(u.uid).map_err(|e| err("setuid", e))?;
    if !u.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(AuthorizerError(
            "privileges not dropped: setuid(0) still succeeds".into(),
        ));
    }
    if Uid::current() != u.uid || Uid::effective() != u.uid || Gid::effective() != u.gid {
        return Err(AuthorizerError("privileges not dropped".into()));
    }
    Ok(())
}

/// Sets the calling thread's filesystem uid and gid (Linux setfsuid/setfsgid: per thread)
/// and checks they took effect.
fn set_fs_ids(uid: Uid, gid: Gid) -> Result<(), AuthorizerError> {
    nix::unistd::setfsgid(gid);
    nix::unistd::setfsuid(uid);
    // setfsuid returns the previous value: calling it again with the same id reads it back.
    if nix::unistd::setfsuid(uid) != uid || nix::unistd::setfsgid(gid) != gid {
        return Err(AuthorizerError(format!(
            "setfsuid({uid})/setfsgid({gid}) refused"
        )));
    }
    Ok(())
}

/// Gives the calling thread back the process's own filesystem identity (after a session
/// that impersonated a user, so a reused pool thread starts clean).
pub(crate) fn restore_fs_ids() {
    let (uid, gid) = (Uid::effective(), Gid::effective());
    if nix::unistd::setfsuid(uid) != uid {
        nix::unistd::setfsuid(uid);
    }
    if nix::unistd::setfsgid(gid) != gid {
        nix::unistd::setfsgid(gid);
    }
}

impl Authorizer for UnixAuthorizer {
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        _peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed> {
        let fail = |m: &str| Err(AuthenticationFailed(m.to_owned()));
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

    fn impersonate_user(&self, username: &str, _password: &str) -> Result<(), AuthorizerError> {
        let account = self
            .account(username)
            .ok_or_else(|| AuthorizerError(MSG_ANON_NOT_ALLOWED.into()))?;
        let user = lookup(&account)?;
        if crate::servers::is_session_process() {
            // This process serves only this session: become the user for good.
            become_user(&user)
        } else {
            set_fs_ids(user.uid, user.gid)
        }
    }

    fn terminate_impersonation(&self, _username: &str) -> Result<(), AuthorizerError> {
        if !crate::servers::is_session_process() {
            restore_fs_ids();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_knows_yescrypt_and_sha512() {
        // A yescrypt hash of "secret" made by the system crypt(3) (perl -e crypt).
        let sha = crypt("secret", b"$6$saltsalt$").unwrap();
        assert!(sha.starts_with(b"$6$saltsalt$"));
        assert!(verify_password("secret", &sha));
        assert!(!verify_password("Secret", &sha));
        let known = b"$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0";
        let y = crypt("secret", known).unwrap();
        assert_eq!(y, known);
        assert!(y.starts_with(b"$y$"));
        assert!(verify_password("secret", &y));
        assert!(!verify_password("wrong", &y));
        assert!(!verify_password("secret", b"!$6$saltsalt$x"));
        assert!(!verify_password("", b""));
        assert!(crypt("x", b"$nope$").is_none());
    }

    #[test]
    fn options_are_checked() {
        let mut a = UnixAuthorizer::new();
        assert!(a.global_perm("elz").is_err());
        assert!(a.allowed_users(&["no-such-user-xyz"]).is_err());
        a.rejected_users(&["root"]).unwrap();
        assert!(a.allowed_users(&["root"]).is_err());
        assert!(a.is_rejected("root"));
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
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
