//! Throttled FTP server (pyftpdlib `demo/throttled_ftpd.py`): downloads and uploads limited
//! to 30 KiB/s per session, as pyftpdlib's demo does with `ThrottledDTPHandler`, plus what
//! pyftpdlib cannot do: a limit shared by all sessions of one user, one shared by the whole
//! server, and a per-user limit set in the authorizer.
//!
//! Run: `cargo run --example throttled_ftpd -- [DIR] [ADDRESS]` (default `.` on
//! 127.0.0.1:2121), then e.g.
//! `curl -u user:12345 ftp://127.0.0.1:2121/somefile -o /dev/null`.

use std::sync::Arc;

use ftpdlib::authorizers::{DummyAuthorizer, UserLimits};
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::FtpServer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `[DIR] [ADDRESS]`: loopback unless told otherwise (`0.0.0.0:2121` serves the network).
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into());

    let mut authorizer = DummyAuthorizer::new();
    authorizer.add_user("user", "12345", &dir, "elradfmwMT")?;
    authorizer.add_anonymous(&dir, "elr")?;
    // A user of its own: 1 MiB/s per session, 2 MiB/s across all of its sessions.
    authorizer.add_user("fast", "12345", &dir, "elr")?;
    authorizer.set_limits(
        "fast",
        UserLimits {
            read_limit: Some(1 << 20),
            write_limit: Some(1 << 20),
            user_read_limit: Some(2 << 20),
            user_write_limit: Some(2 << 20),
        },
    )?;

    let mut handler = FtpHandler::new(Arc::new(authorizer));
    // pyftpdlib's demo: 30 Kb/sec (30 * 1024) each way, per session.
    handler.read_limit = 30 * 1024;
    handler.write_limit = 30 * 1024;
    // Every session of one user together: 60 KiB/s each way.
    handler.user_read_limit = 60 * 1024;
    handler.user_write_limit = 60 * 1024;
    // The whole server: 10 MiB/s each way.
    handler.max_read_rate = 10 << 20;
    handler.max_write_rate = 10 << 20;

    let mut server = FtpServer::new(addr.as_str(), handler)?;
    server.stop_on_signals()?;
    server.serve_forever()?;
    Ok(())
}
