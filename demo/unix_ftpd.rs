//! A "real" Unix FTP server (pyftpdlib `demo/unix_ftpd.py`): system accounts log in with
//! their own passwords, land in their home on the real filesystem and act as themselves.
//! The Fork model gives each session its own process, which drops to the user for good
//! after login. Run as root: `cargo run --example unix_ftpd -- 0.0.0.0:21`.

use std::process::ExitCode;
use std::sync::Arc;

use ftpdlib::authorizers::UnixAuthorizer;
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::MultiprocessFtpServer;

fn run(addr: &str) -> Result<(), ftpdlib::Error> {
    let mut auth = UnixAuthorizer::new();
    auth.rejected_users(&["root"])?;
    let mut handler = FtpHandler::new(Arc::new(auth));
    handler.use_unix_filesystem();
    let mut server = MultiprocessFtpServer::new(addr, handler)?;
    server.stop_on_signals()?;
    server.serve_forever()
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:21".into());
    match run(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unix_ftpd: {e}");
            ExitCode::FAILURE
        }
    }
}
