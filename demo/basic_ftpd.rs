//! A basic FTP server: one virtual user with full permissions and read-only anonymous
//! access (pyftpdlib's `demo/basic_ftpd.py`).
//!
//! Run: `cargo run --example basic_ftpd -- [DIR] [ADDRESS]` (default `.` on
//! 127.0.0.1:2121), then `curl ftp://user:12345@127.0.0.1:2121/`.

use std::sync::Arc;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::FtpServer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `[DIR] [ADDRESS]`: loopback unless told otherwise (`0.0.0.0:2121` serves the network).
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2121".into());

    // Virtual users: a full-access account and a read-only anonymous one.
    let mut authorizer = DummyAuthorizer::new();
    authorizer.add_user("user", "12345", &dir, "elradfmwMT")?;
    authorizer.add_anonymous(&dir, "elr")?;

    let mut handler = FtpHandler::new(Arc::new(authorizer));
    handler.banner = "ftpdlib based FTP server ready.".into();
    // Behind NAT: handler.masquerade_address = Some("151.25.42.11".parse()?);
    handler.passive_ports = Some(60000..=65535);

    let mut server = FtpServer::new(addr.as_str(), handler)?;
    server.max_cons = 256;
    server.max_cons_per_ip = 5;
    server.stop_on_signals()?;
    server.serve_forever()?;
    Ok(())
}
