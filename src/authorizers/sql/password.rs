//! Password hashes of database users: argon2id PHC strings for new ones (RFC 9106, with the
//! `argon2` crate's default parameters: m = 19 MiB, t = 2, p = 1, OWASP's minimum), and
//! crypt(3) hashes (`$y$`, `$6$`, `$5$`, `$2b$`…) through the system's libxcrypt, so users
//! can be imported from /etc/shadow-style sources. Comparisons are constant-time (the
//! `password-hash` crate's output comparison; `authorizers::verify_password` for crypt).
//!
//! A login for an unknown user is checked against a dummy argon2id hash with the same
//! parameters, so it costs what a wrong password costs. At most one verification per CPU
//! runs at once, each in one of as many work areas allocated once and reused: a
//! verification needs 19 MiB and a few tens of milliseconds of one core, so more at once
//! would only queue for the CPU while holding memory (512 connections sending PASS together
//! would ask for 10 GiB), and a fresh 19 MiB per login would stay behind in the allocator's
//! per-thread arenas (measured: 180 MB resident after ten logins on a pool of threads).

use std::io::Read;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// True if `hash` has a shape [`verify_password_hash`] can ever accept (`ftpdlib users
/// --hash-stdin` checks what it stores).
#[cfg(any(feature = "cli", test))]
pub(crate) fn is_known_hash(hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        return PasswordHash::new(hash).is_ok_and(|h| h.salt.is_some() && h.hash.is_some());
    }
    // Ask crypt(3) whether it knows the scheme: a hash of anything with this setting.
    hash.starts_with('$') && crate::authorizers::crypt("x", hash.as_bytes()).is_some()
}

/// The largest argon2 work area a stored hash may ask for (m = 256 MiB): a hash edited into
/// the table by hand cannot make every login allocate gigabytes.
const MAX_BLOCKS: usize = 256 * 1024;

/// Checks an argon2 PHC hash using `memory` as the work area (grown when the hash's
/// parameters need more). Same result as [`verify_password_hash`].
fn verify_argon2_in(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let algorithm = Algorithm::try_from(parsed.algorithm);
    let version = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, Params::try_from(&parsed))
    else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        log::warn!("argon2 hash refused: it needs {} MiB", blocks / 1024);
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
            .map_err(|_| argon2::password_hash::Error::Password)
    });
    // Output's equality is constant-time (subtle).
    computed.is_ok_and(|c| c == expected)
}

/// Verifies logins: at most one verification per CPU at once, each in a reused work area,
/// and the dummy hash unknown users are checked against.
pub(crate) struct Verifier {
    put: Sender<Vec<Block>>,
    take: Receiver<Vec<Block>>,
    dummy: String,
    /// Hashes computed so far (every refusal must compute one, like a wrong password).
    computed: std::sync::atomic::AtomicU64,
}

impl Verifier {
    /// A verifier with one work area per CPU (allocated on first use).
    pub(crate) fn new() -> Result<Verifier, AuthorizerError> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (put, take) = bounded(n);
        for _ in 0..n {
            let _ = put.send(Vec::new());
        }
        // The dummy's password is random too: nothing can match it.
        let mut secret = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .map_err(|e| AuthorizerError(format!("/dev/urandom: {e}")))?;
        let dummy = hash_password(&format!("{secret:?}"))?;
        Ok(Verifier {
            put,
            take,
            dummy,
            computed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Checks `password` against `hash`, or against the dummy hash (and then fails) when
    /// there is no usable hash, so every refusal costs the same.
    pub(crate) fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        // Cannot fail: the verifier holds both ends of the channel.
        let mut memory = self.take.recv().unwrap_or_default();
        self.computed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = match hash.filter(|h| !h.is_empty()) {
            Some(h) if h.starts_with("$argon2") => verify_argon2_in(password, h, &mut memory),
            Some(h) => verify_password_hash(password, h),
            None => {
                let _ = verify_argon2_in(password, &self.dummy, &mut memory);
                false
            }
        };
        let _ = self.put.send(memory);
        ok
    }

    /// How many hashes were computed.
    #[cfg(all(test, feature = "sqlite"))]
    pub(crate) fn computed(&self) -> u64 {
        self.computed.load(std::sync::atomic::Ordering::Relaxed)
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
        assert!(!v.verify("pW", Some(&h)));
        // The reused work area gives the same answers as the crate's own verifier, for
        // argon2i/argon2d and other parameters too.
        let mut mem = Vec::new();
        for (alg, m, t) in [(Algorithm::Argon2id, 19456, 2), (Algorithm::Argon2i, 8, 1)] {
            let params = Params::new(m, t, 1, Some(24)).unwrap();
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            let h = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            assert!(verify_argon2_in("pw", &h, &mut mem), "{h}");
            assert!(!verify_argon2_in("px", &h, &mut mem), "{h}");
            assert!(verify_password_hash("pw", &h));
        }
        assert!(!verify_argon2_in(
            "pw",
            "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            &mut mem
        ));
    }
}
