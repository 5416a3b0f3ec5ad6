//! The command line (`ftpdlib [options]`), mirroring `python3 -m pyftpdlib`: the same flags,
//! meanings and defaults, so a pyftpdlib command line works by changing only the program.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::authorizers::DummyAuthorizer;
use crate::handlers::FtpHandler;
use crate::servers::FtpServer;
use crate::Error;

mod args;

pub use args::{parse_args, parse_rate, Options, Parsed};

/// Builds the handler the options describe.
///
/// # Errors
/// The directory does not exist, or another setting is invalid.
pub fn build_handler(o: &Options) -> Result<FtpHandler, Error> {
    let perm = if o.write { "elradfmwMT" } else { "elr" };
    let mut auth = DummyAuthorizer::new();
    match (&o.username, &o.password) {
        (Some(u), Some(p)) => auth.add_user(u, p, &o.directory, perm)?,
        _ => auth.add_anonymous(&o.directory, perm)?,
    }
    let mut h = FtpHandler::new(Arc::new(auth));
    let t = (o.timeout > 0).then(|| Duration::from_secs(o.timeout));
    h.timeout = t;
    h.data_timeout = t;
    if let Some(b) = &o.banner {
        h.banner = b.clone();
    }
    h.masquerade_address = o.nat_address;
    h.passive_ports = o.range.map(|(a, b)| a..=b);
    h.permit_foreign_addresses = o.permit_foreign_addresses;
    h.permit_privileged_ports = o.permit_privileged_ports;
    h.encoding = o.encoding;
    h.use_gmt_times = !o.use_localtime;
    h.use_sendfile = !o.disable_sendfile;
    h.max_login_attempts = o.max_login_attempts;
    h.read_limit = o.read_limit;
    h.write_limit = o.write_limit;
    h.user_read_limit = o.user_read_limit;
    h.user_write_limit = o.user_write_limit;
    h.max_read_rate = o.max_read_rate;
    h.max_write_rate = o.max_write_rate;
    h.atomic_uploads = o.atomic_uploads;
    h.ban_failures = o.ban_failures;
    h.ban_find_time = Duration::from_secs(o.ban_find_time);
    h.ban_time = Duration::from_secs(o.ban_time);
    if o.unix_users {
        let mut unix = crate::authorizers::UnixAuthorizer::new();
        unix.global_perm(perm)?;
        h.authorizer = Arc::new(unix);
        crate::filesystems::UnixFilesystem::install(&mut h);
    }
    if let (true, Some(cert)) = (o.tls, &o.certfile) {
        let mut t = crate::handlers::TlsConfig::from_pem_files(cert, o.keyfile.as_deref())?;
        t.tls_control_required = o.tls_control_required;
        t.tls_data_required = o.tls_data_required;
        t.require_session_reuse = !o.disable_tls_reuse_check;
        h.tls = Some(t);
    }
    Ok(h)
}

/// Builds the server the options describe (binds the port).
///
/// # Errors
/// As [`build_handler`], or the address cannot be bound.
pub fn build_server(o: &Options) -> Result<FtpServer, Error> {
    let handler = build_handler(o)?;
    let listeners = crate::servers::inetd::listeners_for(o.inetd_wait, || {
        crate::servers::bind(SocketAddr::new(o.interface, o.port))
    })?;
    let mut server = FtpServer::from_listeners(listeners, handler)?
        .with_executor(o.concurrency)
        .implicit_tls(o.implicit_tls)?;
    server.max_cons = o.max_cons;
    server.max_cons_per_ip = o.max_cons_per_ip;
    server.idle_timeout = (o.idle_timeout > 0).then(|| Duration::from_secs(o.idle_timeout));
    server.shutdown_grace = Duration::from_secs(o.shutdown_grace);
    Ok(server)
}

fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(level);
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, rec| {
            let l = rec.level().as_str().chars().next().unwrap_or('?');
            writeln!(buf, "[{l} {}] {}", buf.timestamp_seconds(), rec.args())
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}

/// Runs the command line: parse, build, serve until SIGINT/SIGTERM. Exit codes: 0 after a
/// clean stop, 1 when the server cannot start, 2 for a bad command line.
pub fn main() -> ExitCode {
    let parsed = match parse_args(std::env::args_os().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ftpdlib: error: {e}\nTry 'ftpdlib --help' for more information.");
            return ExitCode::from(2);
        }
    };
    let o = match parsed {
        Parsed::Print(s) => {
            println!("{s}");
            return ExitCode::SUCCESS;
        }
        Parsed::Run(o) => o,
    };
    init_logging(o.verbosity);
    if o.inetd {
        return crate::servers::inetd::main_nowait(build_handler(&o), o.run_as.as_deref());
    }
    let mut server = match build_server(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ftpdlib: error: {e}");
            return ExitCode::from(match e {
                Error::Config(_) | Error::Authorizer(_) | Error::Tls(_) => 2,
                _ => 1,
            });
        }
    };
    if let Some(code) = crate::servers::inetd::before_serving(o.run_as.as_deref()) {
        return code;
    }
    if let Err(e) = server.stop_on_signals() {
        log::warn!("cannot install signal handling: {e}");
    }
    crate::servers::inetd::notify("READY=1");
    let r = server.serve_forever();
    crate::servers::inetd::notify("STOPPING=1");
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftpdlib: error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Encoding;
    use crate::servers::Executor;
    use std::ffi::OsString;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Parsed::Run(o)) => *o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_pyftpdlib() {
        let o = run(&["-d", "/tmp"]);
        assert_eq!(o.port, 2121);
        assert_eq!(o.interface, "::".parse::<IpAddr>().unwrap());
        assert!(!o.write);
        assert_eq!(o.timeout, 300);
        assert_eq!(o.max_cons, 512);
        assert_eq!(o.max_cons_per_ip, 0);
        assert_eq!(o.max_login_attempts, 3);
        assert_eq!(o.concurrency, Executor::Pool);
        assert_eq!(o.encoding, Encoding::Utf8);
        assert_eq!((o.read_limit, o.write_limit), (0, 0));
        assert_eq!((o.user_read_limit, o.user_write_limit), (0, 0));
        assert_eq!((o.max_read_rate, o.max_write_rate), (0, 0));
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1234"), Ok(1234));
        assert_eq!(parse_rate("500K"), Ok(512_000));
        assert_eq!(parse_rate("500k"), Ok(512_000));
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        assert_eq!(parse_rate(" 2MB "), Ok(2 << 20));
        for bad in [
            "",
            "K",
            "10X",
            "-1",
            "1.5M",
            "M10",
            "99999999999999999999G",
            "B",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        let o = run(&[
            "--read-limit",
            "500K",
            "--write-limit",
            "10M",
            "--user-read-limit",
            "1M",
            "--user-write-limit",
            "2048",
            "--max-read-rate",
            "1G",
            "--max-write-rate",
            "3m",
        ]);
        assert_eq!((o.read_limit, o.write_limit), (512_000, 10 << 20));
        assert_eq!((o.user_read_limit, o.user_write_limit), (1 << 20, 2048));
        assert_eq!((o.max_read_rate, o.max_write_rate), (1 << 30, 3 << 20));
        let h = build_handler(&o).unwrap();
        assert_eq!((h.read_limit, h.write_limit), (512_000, 10 << 20));
        assert_eq!((h.user_read_limit, h.user_write_limit), (1 << 20, 2048));
        assert_eq!((h.max_read_rate, h.max_write_rate), (1 << 30, 3 << 20));
        assert!(parse(&["--write-limit", "fast"]).is_err());
        assert!(parse(&["--max-read-rate", "10Q"]).is_err());
    }

    #[test]
    fn flags_parse() {
        let o = run(&[
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-w",
            "-d",
            "/tmp",
            "-n",
            "1.2.3.4",
            "-r",
            "60000-60010",
            "-u",
            "bob",
            "-P",
            "pw",
            "-V",
            "--concurrency",
            "multi-thread",
            "--timeout",
            "0",
            "--banner",
            "hi",
            "--permit-foreign-addresses",
            "--permit-privileged-ports",
            "--encoding",
            "latin-1",
            "--use-localtime",
            "--disable-sendfile",
            "--max-cons",
            "10",
            "--max-cons-per-ip",
            "2",
            "--max-login-attempts",
            "5",
        ]);
        assert_eq!(o.port, 0);
        assert!(o.write);
        assert_eq!(o.nat_address, Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(o.range, Some((60000, 60010)));
        assert_eq!(o.username.as_deref(), Some("bob"));
        assert_eq!(o.verbosity, 1);
        assert_eq!(o.concurrency, Executor::Thread);
        assert_eq!(o.timeout, 0);
        assert_eq!(o.encoding, Encoding::Latin1);
        assert!(o.use_localtime && o.disable_sendfile && o.permit_foreign_addresses);
        assert_eq!(
            (o.max_cons, o.max_cons_per_ip, o.max_login_attempts),
            (10, 2, 5)
        );
        assert_eq!(run(&["--concurrency", "async"]).concurrency, Executor::Pool);
    }

    #[test]
    fn deployment_flags_parse() {
        assert_eq!(
            run(&["--concurrency", "multi-proc"]).concurrency,
            Executor::Fork
        );
        assert_eq!(
            run(&["--concurrency", "pre-fork", "--workers", "3"]).concurrency,
            Executor::PreFork { workers: 3 }
        );
        assert!(matches!(
            run(&["--concurrency", "pre-fork"]).concurrency,
            Executor::PreFork { workers } if workers >= 1
        ));
        assert!(parse(&["--concurrency", "pre-fork", "--workers", "0"]).is_err());
        let o = run(&[
            "-W",
            "-t",
            "600",
            "--user",
            "nobody",
            "--shutdown-grace",
            "3",
        ]);
        assert!(o.inetd_wait && !o.inetd);
        assert_eq!(o.idle_timeout, 600);
        assert_eq!(o.run_as.as_deref(), Some("nobody"));
        assert_eq!(o.shutdown_grace, 3);
        let o = run(&["--inetd"]);
        assert!(o.inetd);
        assert_eq!((o.idle_timeout, o.shutdown_grace), (0, 10));
        assert!(parse(&["-I", "-W"]).is_err());
        assert!(parse(&["-t", "soon"]).is_err());
        assert!(parse(&["--user", "nobody", "--unix-users"]).is_err());
        assert!(run(&["--unix-users"]).unix_users);
    }

    #[test]
    fn upload_and_ban_flags_parse() {
        let o = run(&["-d", "/tmp"]);
        assert!(!o.atomic_uploads);
        assert_eq!((o.ban_failures, o.ban_find_time, o.ban_time), (5, 600, 600));
        let h = build_handler(&o).unwrap();
        assert!(h.lock_upload_files && !h.atomic_uploads);
        let o = run(&[
            "--atomic-uploads",
            "--ban-failures",
            "3",
            "--ban-find-time",
            "60",
            "--ban-time",
            "0",
        ]);
        let h = build_handler(&o).unwrap();
        assert!(h.atomic_uploads);
        assert_eq!(h.ban_failures, 3);
        assert_eq!(h.ban_find_time, Duration::from_secs(60));
        assert_eq!(h.ban_time, Duration::ZERO);
        assert!(parse(&["--ban-failures", "-1"]).is_err());
        assert!(parse(&["--ban-time", "soon"]).is_err());
    }

    #[test]
    fn tls_flags_parse() {
        let o = run(&["-d", "/tmp"]);
        assert!(!o.tls && !o.implicit_tls && o.certfile.is_none());
        let o = run(&[
            "--tls",
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--tls-control-required",
            "--tls-data-required",
            "--disable-tls-reuse-check",
        ]);
        assert!(o.tls && o.tls_control_required && o.tls_data_required);
        assert!(o.disable_tls_reuse_check && !o.implicit_tls);
        assert_eq!(o.certfile, Some(PathBuf::from("c.pem")));
        assert_eq!(o.keyfile, Some(PathBuf::from("k.pem")));
        let o = run(&["--implicit-tls", "--certfile", "c.pem"]);
        assert!(o.tls && o.implicit_tls && o.keyfile.is_none());
        assert!(parse(&["--tls"]).is_err(), "--tls without --certfile");
        assert!(
            parse(&["--certfile", "c.pem"]).is_err(),
            "--certfile without --tls"
        );
        assert!(parse(&["--tls-data-required"]).is_err());
    }

    #[test]
    fn missing_certificate_is_a_tls_error() {
        let o = run(&["-d", "/tmp", "--tls", "--certfile", "/nonexistent/cert.pem"]);
        match build_handler(&o) {
            Err(Error::Tls(m)) => assert!(m.contains("/nonexistent/cert.pem"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["-p", "x"]).is_err());
        assert!(parse(&["-p", "70000"]).is_err());
        assert!(parse(&["-r", "9-1"]).is_err());
        assert!(parse(&["-n", "::1"]).is_err());
        assert!(parse(&["-u", "bob"]).is_err());
        assert!(parse(&["--concurrency", "nope"]).is_err());
        assert!(parse(&["--encoding", "klingon"]).is_err());
        assert!(parse(&["extra"]).is_err());
        assert!(matches!(parse(&["-v"]), Ok(Parsed::Print(s)) if s.starts_with("ftpdlib ")));
        assert!(matches!(parse(&["-h"]), Ok(Parsed::Print(_))));
    }
}
