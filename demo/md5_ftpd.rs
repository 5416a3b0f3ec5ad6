//! An authorizer that stores password hashes instead of passwords (pyftpdlib's
//! `demo/md5_ftpd.py`): it wraps `DummyAuthorizer` and checks `md5(password)` against the
//! stored hex digest.
//!
//! MD5 keeps the demo faithful to pyftpdlib's; a real deployment should store a slow, salted
//! hash (yescrypt, argon2) and compare it the same way — only `validate_authentication`
//! changes.
//!
//! Run: `cargo run --example md5_ftpd -- [DIR]`; log in as `user` / `12345`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ftpdlib::authorizers::{Authorizer, DummyAuthorizer, Perm, PermSet};
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::FtpServer;
use ftpdlib::{AuthenticationFailed, AuthorizerError};

/// `DummyAuthorizer` whose stored "passwords" are MD5 hex digests.
struct Md5Authorizer(DummyAuthorizer);

impl Authorizer for Md5Authorizer {
    fn validate_authentication(
        &self,
        username: &str,
        password: &str,
        peer: SocketAddr,
    ) -> Result<(), AuthenticationFailed> {
        let digest = md5_hex(password.as_bytes());
        self.0.validate_authentication(username, &digest, peer)
    }
    fn get_home_dir(&self, u: &str) -> Result<PathBuf, AuthorizerError> {
        self.0.get_home_dir(u)
    }
    fn has_perm(&self, u: &str, perm: Perm, path: Option<&Path>) -> bool {
        self.0.has_perm(u, perm, path)
    }
    fn get_perms(&self, u: &str) -> PermSet {
        self.0.get_perms(u)
    }
    fn get_msg_login(&self, u: &str) -> String {
        self.0.get_msg_login(u)
    }
    fn get_msg_quit(&self, u: &str) -> String {
        self.0.get_msg_quit(u)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    // md5("12345") — what would be stored in a user database.
    let hash = md5_hex(b"12345");
    assert_eq!(hash, "827ccb0eea8a706c4c34a16891f84e7b");
    let mut users = DummyAuthorizer::new();
    users.add_user("user", &hash, &dir, "elradfmwMT")?;
    users.add_anonymous(&dir, "elr")?;
    let handler = FtpHandler::new(Arc::new(Md5Authorizer(users)));
    let mut server = FtpServer::new("0.0.0.0:2121", handler)?;
    server.stop_on_signals()?;
    server.serve_forever()?;
    Ok(())
}

/// MD5 (RFC 1321), hex encoded.
fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) = (
        0x6745_2301u32,
        0xefcd_ab89u32,
        0x98ba_dcfeu32,
        0x1032_5476u32,
    );
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    [a0, b0, c0, d0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}
