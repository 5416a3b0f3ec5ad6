//! Users in a database from a program: a SQLite file with one user, written through
//! `UserDb` (what `ftpdlib users` does), served by `SqlAuthorizer` (what `--users-db` does).
//! With `--features postgres`, a `postgres://…` URL works the same way.
//!
//! Run: `cargo run --example sql_ftpd -- [DB_URL] [DIR]` (default `sqlite:demo-users.db`
//! and `.`), then `curl ftp://alice:s3cret@127.0.0.1:2121/`.

use std::sync::Arc;

use ftpdlib::authorizers::sql::{hash_password, SqlOptions, UserDb, UserRecord};
use ftpdlib::authorizers::{PermSet, SqlAuthorizer};
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::FtpServer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite:demo-users.db".into());
    let dir = std::path::absolute(std::env::args().nth(2).unwrap_or_else(|| ".".into()))?;

    // Created with its tables when missing; alice added once.
    let db = UserDb::open(&url)?;
    if db.get("alice")?.is_none() {
        let mut alice = UserRecord::new("alice", &dir);
        alice.perm = PermSet::parse("elradfmw")?;
        alice.password_hash = hash_password("s3cret")?;
        alice.msg_login = "Welcome, alice.".into();
        db.add(&alice)?;
    }
    drop(db);

    // A pool of 4 connections; relative homes would hang from `dir`.
    let mut opts = SqlOptions::default();
    opts.pool_size = 4;
    opts.base_dir = Some(dir);
    let authorizer = SqlAuthorizer::open_with(&url, opts)?;

    let handler = FtpHandler::new(Arc::new(authorizer));
    let mut server = FtpServer::new("127.0.0.1:2121", handler)?;
    server.stop_on_signals()?;
    server.serve_forever()?;
    Ok(())
}
