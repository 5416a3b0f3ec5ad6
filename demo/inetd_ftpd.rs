//! An FTP server started by inetd, xinetd or systemd (pyftpdlib-inetd's two examples):
//! "nowait" serves the connection on stdin and exits; "wait" serves the listening socket on
//! stdin until idle for ten minutes. Logs go to stderr, never to stdout.
//!
//! inetd.conf lines:
//! ```text
//! ftp stream tcp nowait root /usr/local/bin/inetd_ftpd inetd_ftpd
//! ftp stream tcp wait   root /usr/local/bin/inetd_ftpd inetd_ftpd wait
//! ```
//! Run it by hand (nowait) with a connected socket as stdin, e.g. through socat:
//! `socat TCP-LISTEN:2121,reuseaddr,fork EXEC:target/debug/examples/inetd_ftpd`.
//! socat hands over a Unix socketpair and tells the client's address in `SOCAT_PEERADDR`,
//! which the session uses (see `ftpdlib::servers::inetd::serve_nowait`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::{inetd, FtpServer};

fn run(wait: bool) -> Result<(), ftpdlib::Error> {
    let cwd = std::env::current_dir()?;
    let mut auth = DummyAuthorizer::new();
    auth.add_user("user", "12345", &cwd, "elradfmw")?;
    auth.add_anonymous(&cwd, "elr")?;
    let handler = FtpHandler::new(Arc::new(auth));
    if !wait {
        // The connection is stdin (and stdout): serve it, then exit.
        return inetd::serve_nowait(handler);
    }
    // The listening socket is stdin: accept until idle for ten minutes.
    inetd::stdout_to_stderr()?;
    let mut server = FtpServer::from_listener(inetd::stdin_listener()?, handler)?;
    server.idle_timeout = Some(Duration::from_secs(600));
    server.stop_on_signals()?;
    server.serve_forever()
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let wait = std::env::args().nth(1).as_deref() == Some("wait");
    match run(wait) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inetd_ftpd: {e}");
            ExitCode::FAILURE
        }
    }
}
