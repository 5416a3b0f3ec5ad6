//! The system side of Unix accounts (pyftpdlib `UnixAuthorizer`'s use of `pwd`, `spwd`,
//! `crypt` and `os.seteuid`): the account database (getpwnam_r, getspnam_r), password hashes
//! checked with the system's crypt(3) (libxcrypt), and identity changes — for good
//! (setgroups/setgid/setuid) or per thread (Linux setfsuid/setfsgid).

use std::ffi::{CStr, CString};
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::error::AuthorizerError;

/// The account database entry of `name`.
pub(super) fn lookup(name: &str) -> Result<User, AuthorizerError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(AuthorizerError(format!("no such user {name:?}"))),
        Err(e) => Err(AuthorizerError(format!("getpwnam({name:?}): {e}"))),
    }
}

/// True if `shell` is listed in /etc/shells (or that file does not exist).
pub(super) fn valid_shell(shell: &Path) -> bool {
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
pub(super) fn today() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86400) as i64)
        .unwrap_or(0)
}

/// The password hash of an account and its expiry day (-1: never), from the shadow
/// database when there is one, else from the passwd entry.
pub(super) fn password_hash(user: &User) -> Option<(Vec<u8>, i64)> {
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

pub(super) fn become_user(u: &User) -> Result<(), AuthorizerError> {
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
pub(super) fn set_fs_ids(uid: Uid, gid: Gid) -> Result<(), AuthorizerError> {
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

/// Gives the calling thread back the process's own filesystem identity (its effective ids),
/// so a reused pool thread starts its next session clean. After a drop for good
/// ([`become_user`]) the effective ids are the user's: nothing changes.
pub(super) fn restore_fs_ids() {
    nix::unistd::setfsuid(Uid::effective());
    nix::unistd::setfsgid(Gid::effective());
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
}
