//! Password hashes of database users: argon2id PHC strings for new ones (RFC 9106, with the
//! `argon2` crate's default parameters: m = 19 MiB, t = 2, p = 1, OWASP's minimum), and
//! crypt(3) hashes (`$y$`, `$6$`, `$5$`, `$2b$`…) through the system's libxcrypt, so users
//! can be imported from /etc/shadow-style sources. Comparisons are constant-time (the
//! `password-hash` crate's output comparison; `authorizers::verify_password` for crypt).
//!
//! A login for an unknown user is checked against a dummy argon2id hash with the same
//! parameters, so it costs what a wrong password costs. At most one verification per CPU
//! runs at once: each takes 19 MiB and a few tens of milliseconds of one core, so more
//! would only queue for the CPU while holding memory (512 connections sending PASS at once
//! would otherwise ask for 10 GiB).

use std::io::Read;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::AuthorizerError;

/// Hashes `password` with argon2id and a random 16-byte salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
///
/// # Errors
/// The system's random source cannot be read.
pub fn hash_password(password: &str) -> Result<String, AuthorizerError> {
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| AuthorizerError(format!("/dev/urandom: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthorizerError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthorizerError(format!("argon2: {e}")))
}

/// Checks `password` against a stored hash: an argon2 PHC string (`$argon2id$…`, also
/// `$argon2i$`/`$argon2d$`) or a crypt(3) hash the system knows. Anything else (an empty
/// value, a locked `!…` or `*` hash, plain text) never matches.
pub fn verify_password_hash(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        return match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
    }
    // Only modular crypt formats: a bare value could be plain text or 13-character DES.
    hash.starts_with('$') && crate::authorizers::verify_password(password, hash.as_bytes())
}

/// True if `hash` has a shape [`verify_password_hash`] can ever accept.
pub(crate) fn is_known_hash(hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        return PasswordHash::new(hash).is_ok_and(|h| h.salt.is_some() && h.hash.is_some());
    }
    // Ask crypt(3) whether it knows the scheme: a hash of anything with this setting.
    hash.starts_with('$') && crate::authorizers::crypt("x", hash.as_bytes()).is_some()
}

/// Verifies logins: a limit on verifications running at once, and the dummy hash that
/// unknown users are checked against.
pub(crate) struct Verifier {
    put: Sender<()>,
    take: Receiver<()>,
    dummy: String,
}

impl Verifier {
    /// A verifier allowing one verification per CPU at once.
    pub(crate) fn new() -> Result<Verifier, AuthorizerError> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (put, take) = bounded(n);
        for _ in 0..n {
            let _ = put.send(());
        }
        // The dummy's password is random too: nothing can match it.
        let mut secret = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .map_err(|e| AuthorizerError(format!("/dev/urandom: {e}")))?;
        let dummy = hash_password(&format!("{secret:?}"))?;
        Ok(Verifier { put, take, dummy })
    }

    /// Checks `password` against `hash`, or against the dummy hash (and then fails) when
    /// there is no usable hash, so every refusal costs the same.
    pub(crate) fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let _token = self.take.recv();
        let ok = match hash.filter(|h| !h.is_empty()) {
            Some(h) => verify_password_hash(password, h),
            None => {
                let _ = verify_password_hash(password, &self.dummy);
                false
            }
        };
        let _ = self.put.send(());
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password_hash("s3cret", &h));
        assert!(!verify_password_hash("s3cret ", &h));
        assert!(!verify_password_hash("", &h));
        assert_ne!(h, hash_password("s3cret").unwrap(), "salted");
        assert!(is_known_hash(&h));
    }

    #[test]
    fn crypt_hashes_and_junk() {
        let six =
            String::from_utf8(crate::authorizers::crypt("pw", b"$6$abcdefgh$").unwrap()).unwrap();
        assert!(verify_password_hash("pw", &six));
        assert!(!verify_password_hash("pwx", &six));
        assert!(is_known_hash(&six));
        let y = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0";
        assert!(verify_password_hash("secret", y));
        // Plain text, DES, locked, empty and malformed values never match.
        for bad in [
            "pw",
            "abJnggxhB/yWI",
            "!$6$abcdefgh$x",
            "*",
            "",
            "$argon2id$junk",
        ] {
            assert!(!verify_password_hash("pw", bad), "{bad}");
            assert!(!is_known_hash(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_users_fail_against_the_dummy() {
        let v = Verifier::new().unwrap();
        assert!(!v.verify("", None));
        assert!(!v.verify("x", Some("")));
        let h = hash_password("pw").unwrap();
        assert!(v.verify("pw", Some(&h)));
    }
}
