//! An FTPS server (pyftpdlib `demo/tls_ftpd.py`; RFC 4217): explicit FTPS on one port
//! (`AUTH TLS`), implicit FTPS on the next, TLS required on both channels.
//!
//! ```text
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
//!     -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost
//! cargo run --example tls_ftpd -- cert.pem key.pem
//! curl --ssl-reqd -k -u user:12345 ftp://127.0.0.1:2121/
//! curl -k -u user:12345 ftps://127.0.0.1:2122/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::{FtpHandler, TlsConfig};
use ftpdlib::servers::{bind, FtpServer};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args_os().skip(1);
    let cert = PathBuf::from(args.next().unwrap_or_else(|| "cert.pem".into()));
    let key = args.next().map(PathBuf::from);
    match run(cert, key) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_ftpd: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cert: PathBuf, key: Option<PathBuf>) -> Result<(), ftpdlib::Error> {
    let mut auth = DummyAuthorizer::new();
    auth.add_user("user", "12345", std::env::current_dir()?, "elradfmwMT")?;
    auth.add_anonymous(std::env::current_dir()?, "elr")?;
    let mut handler = FtpHandler::new(Arc::new(auth));
    // Certificate chain and key from PEM files (the key may sit in the certificate file).
    let mut tls = TlsConfig::from_pem_files(&cert, key.as_deref())?;
    tls.tls_control_required = true;
    tls.tls_data_required = true;
    // Default: every PROT P data connection must resume the control connection's session.
    tls.require_session_reuse = true;
    handler.tls = Some(tls);
    let mut server = FtpServer::new("127.0.0.1:2121", handler)?;
    server.add_listener(bind("127.0.0.1:2122".parse().expect("address"))?, true)?;
    server.stop_on_signals()?;
    server.serve_forever()
}
