//! An authorizer that stores password hashes, never passwords (pyftpdlib's
//! `demo/md5_ftpd.py`, with argon2id in place of its unsalted MD5, which is fast enough to
//! crack a stolen table of it on one GPU). It keeps homes and permissions in a
//! `DummyAuthorizer` and checks passwords against the stored argon2id PHC strings with
//! `authorizers::sql::verify_password_hash` (which also accepts the system's crypt(3)
//! hashes: `$y$`, `$6$`).
//!
//! Run: `cargo run --example hashed_ftpd -- [DIR] [ADDRESS]` (default `.` on
//! 127.0.0.1:2121), then `curl ftp://user:12345@127.0.0.1:2121/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ftpdlib::authorizers::sql::{hash_password, verify_password_hash};
use ftpdlib::authorizers::{Authorizer, DummyAuthorizer, Perm, PermSet};
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::FtpServer;
use ftpdlib::{AuthenticationFailed, AuthorizerError};

/// Homes and permissions from a `DummyAuthorizer`; passwords as argon2id hashes.
struct HashedAuthorizer {
    users: DummyAuthorizer,
    hashes: HashMap<String, String>,
    /// Checked for unknown users, so they take as long to refuse as a wrong password.
    decoy: String,
}

impl Authorizer for HashedAuthorizer {
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed> {
        if username == "anonymous" {
            return self.users.validate_authentication(username, password, peer);
        }
        let hash = self.hashes.get(username).unwrap_or(&self.decoy);
        if verify_password_hash(password, hash) && self.hashes.contains_key(username) {
            Ok(())
        } else {
            Err(AuthenticationFailed::new("Authentication failed."))
        }
    }
    fn get_home_dir(&self, u: &str) -> Result<PathBuf, AuthorizerError> {
        self.users.get_home_dir(u)
    }
    fn has_perm(&self, u: &str, perm: Perm, path: Option<&Path>) -> bool {
        self.users.has_perm(u, perm, path)
    }
    fn get_perms(&self, u: &str) -> PermSet {
        self.users.get_perms(u)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into());

    // What a user database would store for user/12345: a salted, slow hash.
    let hash = hash_password("12345")?;
    println!("user's stored hash: {hash}");
    let mut users = DummyAuthorizer::new();
    // The DummyAuthorizer's own password is never consulted for "user".
    users.add_user("user", &hash, &dir, "elradfmwMT")?;
    users.add_anonymous(&dir, "elr")?;
    let authorizer = HashedAuthorizer {
        users,
        hashes: HashMap::from([("user".to_string(), hash)]),
        decoy: hash_password("not a password anyone has")?,
    };

    let handler = FtpHandler::new(Arc::new(authorizer));
    let mut server = FtpServer::new(addr.as_str(), handler)?;
    server.stop_on_signals()?;
    server.serve_forever()?;
    Ok(())
}
