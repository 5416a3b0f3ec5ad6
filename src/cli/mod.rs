//! The command line (`ftpdlib [options]`), mirroring `python3 -m pyftpdlib`: the same flags,
//! meanings and defaults, so a pyftpdlib command line works by changing only the program.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::authorizers::{Authorizer, DummyAuthorizer};
use crate::handlers::FtpHandler;
use crate::servers::FtpServer;
use crate::Error;

mod args;
mod flags;
#[cfg(feature = "sql")]
mod users;

pub use args::{parse_args, parse_rate, Options, Parsed};

/// The authorizer the options describe: users in a database (`--users-db`), system accounts (`--unix-users`, which needs root to
/// become each user, as pyftpdlib's `UnixAuthorizer` insists), one account (`-u`/`-P`), or
/// anonymous.
fn authorizer(o: &Options, perm: &str) -> Result<Arc<dyn Authorizer>, Error> {
    if let Some(url) = &o.users_db {
        return users_db(url, o);
    }
    if o.unix_users {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(Error::Config(
                "--unix-users needs root: it checks passwords in /etc/shadow and serves \
                 each user as themselves (start it as root, or drop --unix-users)"
                    .into(),
            ));
        }
        return unix_users(perm);
    }
    let mut auth = DummyAuthorizer::new();
    match (&o.username, &o.password) {
        (Some(u), Some(p)) => auth.add_user(u, p, &o.directory, perm)?,
        _ => auth.add_anonymous(&o.directory, perm)?,
    }
    Ok(Arc::new(auth))
}

/// The authorizer of `--unix-users`.
#[cfg(feature = "unix-users")]
fn unix_users(perm: &str) -> Result<Arc<dyn Authorizer>, Error> {
    let mut unix = crate::authorizers::UnixAuthorizer::new();
    unix.global_perm(perm)?;
    Ok(Arc::new(unix))
}

#[cfg(not(feature = "unix-users"))]
fn unix_users(_perm: &str) -> Result<Arc<dyn Authorizer>, Error> {
    Err(Error::Config(
        "--unix-users: this ftpdlib was built without system accounts (cargo feature \
         `unix-users`)"
            .into(),
    ))
}

/// Builds the handler the options describe.
///
/// # Errors
/// The directory does not exist, `--unix-users` without root, or another setting is invalid.
pub fn build_handler(o: &Options) -> Result<FtpHandler, Error> {
    let perm = if o.write { "elradfmwMT" } else { "elr" };
    let mut h = FtpHandler::new(authorizer(o, perm)?);
    if o.unix_users {
        h.use_unix_filesystem();
    }
    let t = (o.timeout > 0).then(|| Duration::from_secs(o.timeout));
    h.timeout = t;
    h.data_timeout = t;
    h.login_timeout = (o.login_timeout > 0).then(|| Duration::from_secs(o.login_timeout));
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
    h.batch_scheduling = !o.no_batch_scheduling;
    h.max_login_attempts = o.max_login_attempts;
    h.read_limit = o.read_limit;
    h.write_limit = o.write_limit;
    h.user_read_limit = o.user_read_limit;
    h.user_write_limit = o.user_write_limit;
    h.max_read_rate = o.max_read_rate;
    h.max_write_rate = o.max_write_rate;
    h.umask = o.umask;
    h.chroot_local_user = o.chroot_local_user;
    h.atomic_uploads = o.atomic_uploads;
    h.ban_failures = o.ban_failures;
    h.ban_find_time = Duration::from_secs(o.ban_find_time);
    h.ban_time = Duration::from_secs(o.ban_time);
    if o.proxy_protocol {
        h.proxy_protocol = Some(crate::proxy_protocol::ProxyProtocol::new(
            o.trusted_proxies.clone(),
        ));
    }
    if let Some(path) = &o.xferlog {
        let x = crate::handlers::xferlog::XferLog::open(path, h.use_gmt_times)
            .map_err(|e| Error::Config(format!("--xferlog {}: {e}", path.display())))?;
        h.xferlog = Some(Arc::new(x));
    }
    if o.tls {
        tls(o, &mut h)?;
    }
    Ok(h)
}

/// FTPS as `--tls`, `--certfile`… describe it.
#[cfg(feature = "tls")]
fn tls(o: &Options, h: &mut FtpHandler) -> Result<(), Error> {
    if let Some(cert) = &o.certfile {
        let mut t = crate::handlers::TlsConfig::from_pem_files(cert, o.keyfile.as_deref())?;
        t.tls_control_required = o.tls_control_required;
        t.tls_data_required = o.tls_data_required;
        t.require_session_reuse = !o.disable_tls_reuse_check;
        t.data_handshake_timeout = Duration::from_secs(o.data_handshake_timeout);
        h.tls = Some(t);
    }
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn tls(_o: &Options, _h: &mut FtpHandler) -> Result<(), Error> {
    Err(Error::Config(
        "--tls: this ftpdlib was built without FTPS (cargo feature `tls`)".into(),
    ))
}

/// The authorizer of `--users-db`: relative homes hang from `-d`.
#[cfg(feature = "sql")]
fn users_db(url: &str, o: &Options) -> Result<Arc<dyn crate::authorizers::Authorizer>, Error> {
    let url = users::users_db_url(url).map_err(Error::Config)?;
    let opts = crate::authorizers::sql::SqlOptions {
        base_dir: Some(std::path::absolute(&o.directory)?),
        ..Default::default()
    };
    Ok(Arc::new(crate::authorizers::SqlAuthorizer::open_with(
        &url, opts,
    )?))
}

#[cfg(not(feature = "sql"))]
fn users_db(_url: &str, _o: &Options) -> Result<Arc<dyn crate::authorizers::Authorizer>, Error> {
    Err(Error::Config(
        "--users-db: this ftpdlib was built without database support (cargo feature `sqlite` or `postgres`)".into(),
    ))
}

/// Builds the server the options describe (binds the port).
///
/// # Errors
/// As [`build_handler`], or an address cannot be bound (the message names it and says what
/// to do), or `-t` on a server that binds its own port.
pub fn build_server(o: &Options) -> Result<FtpServer, Error> {
    let handler = build_handler(o)?;
    let listeners = crate::servers::inetd::listeners_for(o.inetd_wait, || {
        if o.idle_timeout > 0 {
            return Err(Error::Config(
                "-t/--idle-timeout needs -W/--inetd-wait or systemd socket activation: a \
                 server that binds its own port would exit when idle, with nothing to \
                 start it again"
                    .into(),
            ));
        }
        bind_all(&o.interfaces, o.port)
    })?;
    let mut server = FtpServer::from_listeners(listeners, handler)?
        .with_executor(o.concurrency)
        .implicit_tls(o.implicit_tls)?;
    server.max_cons = o.max_cons;
    server.max_cons_per_ip = o.max_cons_per_ip;
    server.idle_timeout = (o.idle_timeout > 0).then(|| Duration::from_secs(o.idle_timeout));
    server.shutdown_grace = Duration::from_secs(o.shutdown_grace);
    if o.stats_interval > 0 {
        server.stats_interval = Duration::from_secs(o.stats_interval);
        server.server_stats_callback = Some(Arc::new(|s| log::info!("stats: {s}")));
    }
    #[cfg(feature = "metrics")]
    if let Some(addr) = o.metrics {
        server = server.serve_metrics(bind_one(addr)?);
    }
    Ok(server)
}

/// Binds `port` on every address (a host name may have given several). With port 0 the
/// first address picks the port and the others follow it; should one of them find it taken,
/// all start again on a new port.
fn bind_all(ips: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, Error> {
    let Some((&first, rest)) = ips.split_first() else {
        return Err(Error::Config("no address to listen on".into()));
    };
    let mut attempts = 0;
    'again: loop {
        let l = bind_one(SocketAddr::new(first, port))?;
        let chosen = l.local_addr()?.port();
        let mut out = vec![l];
        for &ip in rest {
            match bind_one(SocketAddr::new(ip, chosen)) {
                Ok(l) => out.push(l),
                Err(Error::Io(e))
                    if port == 0 && e.kind() == io::ErrorKind::AddrInUse && attempts < 10 =>
                {
                    attempts += 1;
                    continue 'again;
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(out);
    }
}

/// Binds one address; a failure names the address and the way out.
fn bind_one(addr: SocketAddr) -> Result<TcpListener, Error> {
    crate::servers::bind(addr).map_err(|e| match e {
        Error::Io(e) => Error::Io(io::Error::new(e.kind(), listen_error(addr, &e))),
        e => e,
    })
}

/// `cannot listen on ADDR: REASON`, with what to do about the common reasons.
fn listen_error(addr: SocketAddr, e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(nix::libc::EADDRINUSE) => format!(
            "address already in use (another server has port {}; choose another with -p)",
            addr.port()
        ),
        Some(nix::libc::EACCES) if addr.port() < 1024 => format!(
            "permission denied: ports below 1024 need root (with --user NAME to drop it once \
             bound) or the CAP_NET_BIND_SERVICE capability (sudo setcap \
             cap_net_bind_service=+ep {}); or use a port from 1024 up, e.g. -p 2121",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "ftpdlib".into())
        ),
        Some(nix::libc::EADDRNOTAVAIL) => {
            "address not available (not an address of this host; see -i)".to_string()
        }
        _ => e.to_string(),
    };
    format!("cannot listen on {addr}: {what}")
}

/// A startup error as the command line prints it.
fn describe(e: &Error) -> String {
    match e {
        // Bind errors already say what failed, configuration errors name the flag.
        Error::Io(io) => io.to_string(),
        Error::Config(m) => m.clone(),
        e => e.to_string(),
    }
}

/// Runs the command line: parse, build, serve until SIGINT/SIGTERM. Exit codes: 0 after a
/// clean stop, 1 when the server cannot start, 2 for a bad command line.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // `ftpdlib users …`: a pyftpdlib command line has no free argument, so no clash.
    if args.first().is_some_and(|a| a == "users") {
        #[cfg(feature = "sql")]
        return users::main(args[1..].to_vec());
        #[cfg(not(feature = "sql"))]
        {
            eprintln!("ftpdlib: this ftpdlib was built without database support");
            return ExitCode::from(2);
        }
    }
    let parsed = match parse_args(args) {
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
    let log_file = match crate::logging::init(o.verbosity, o.log_file.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            let path = o.log_file.as_deref().unwrap_or(std::path::Path::new(""));
            eprintln!("ftpdlib: error: --log-file {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    // New files and directories get exactly the modes `--umask` gives them (vsftpd sets
    // its process umask the same way); the server creates nothing else.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if o.inetd {
        return crate::servers::inetd::main_nowait(build_handler(&o), o.run_as.as_deref());
    }
    let mut server = match build_server(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ftpdlib: error: {}", describe(&e));
            return ExitCode::from(match e {
                Error::Config(_) | Error::Authorizer(_) | Error::Tls(_) => 2,
                _ => 1,
            });
        }
    };
    if let Some(f) = log_file {
        server.on_reload(move || f.reopen());
    }
    if let Some(x) = server.handler().xferlog.clone() {
        server.on_reload(move || match x.reopen() {
            Ok(()) => log::info!("xferlog {} reopened", x.path().display()),
            Err(e) => log::error!("cannot reopen the xferlog {}: {e}", x.path().display()),
        });
    }
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
        assert_eq!(o.interfaces, ["::".parse::<IpAddr>().unwrap()]);
        assert!(!o.write);
        assert_eq!(o.timeout, 300);
        assert_eq!(o.login_timeout, 60);
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
            "--login-timeout",
            "0",
            "--banner",
            "hi",
            "--permit-foreign-addresses",
            "--permit-privileged-ports",
            "--encoding",
            "latin-1",
            "--use-localtime",
            "--disable-sendfile",
            "--no-batch-scheduling",
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
        assert_eq!(build_handler(&o).unwrap().login_timeout, None);
        assert_eq!(o.encoding, Encoding::Latin1);
        assert!(o.use_localtime && o.disable_sendfile && o.permit_foreign_addresses);
        assert!(o.no_batch_scheduling && !build_handler(&o).unwrap().batch_scheduling);
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
        let o = run(&["--unix-users", "--chroot-local-user", "--umask", "077"]);
        assert!(o.chroot_local_user);
        assert_eq!(o.umask, 0o077);
        #[cfg(feature = "unix-users")]
        {
            let h = build_handler(&o).unwrap();
            assert!(h.chroot_local_user);
            assert_eq!(h.umask, 0o077);
        }
        // A build without system accounts refuses the flag rather than ignore it.
        #[cfg(not(feature = "unix-users"))]
        assert!(matches!(build_handler(&o), Err(Error::Config(m)) if m.contains("unix-users")));
        assert_eq!(run(&[]).umask, 0o022);
        assert!(!run(&["--unix-users"]).chroot_local_user);
        assert!(
            parse(&["--chroot-local-user"]).is_err(),
            "needs --unix-users"
        );
        for bad in ["8", "1000", "-1", "rw", ""] {
            assert!(parse(&["--umask", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proxy_protocol_flags_parse() {
        assert!(build_handler(&run(&["-d", "/tmp"]))
            .unwrap()
            .proxy_protocol
            .is_none());
        let o = run(&[
            "-d",
            "/tmp",
            "--proxy-protocol",
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy",
            "10.0.0.0/8,::1",
        ]);
        let h = build_handler(&o).unwrap();
        let pp = h.proxy_protocol.expect("on");
        assert_eq!(pp.describe(), "127.0.0.1/32, 10.0.0.0/8, ::1/128");
        assert!(pp.trusts("10.9.8.7".parse().unwrap()));
        assert!(!pp.trusts("127.0.0.2".parse().unwrap()));
        assert!(
            parse(&["--proxy-protocol"]).is_err(),
            "needs a trusted proxy"
        );
        assert!(
            parse(&["--trusted-proxy", "127.0.0.1"]).is_err(),
            "needs the switch"
        );
        let bad = parse(&["--proxy-protocol", "--trusted-proxy", "10.0.0.0/40"]);
        assert!(bad.unwrap_err().contains("--trusted-proxy"));
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
        assert_eq!(o.data_handshake_timeout, 10);
        let o = run(&[
            "--tls",
            "--certfile",
            "c.pem",
            "--data-handshake-timeout",
            "3",
        ]);
        assert_eq!(o.data_handshake_timeout, 3);
        assert!(
            parse(&["--data-handshake-timeout", "3"]).is_err(),
            "needs --tls"
        );
        assert!(parse(&["--tls", "--certfile", "c", "--data-handshake-timeout", "0"]).is_err());
    }

    /// A build without FTPS refuses `--tls` rather than serve plaintext.
    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_flags_need_the_tls_feature() {
        let o = run(&["-d", "/tmp", "--tls", "--certfile", "/nonexistent/cert.pem"]);
        assert!(matches!(build_handler(&o), Err(Error::Config(m)) if m.contains("`tls`")));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn missing_certificate_is_a_tls_error() {
        let o = run(&["-d", "/tmp", "--tls", "--certfile", "/nonexistent/cert.pem"]);
        match build_handler(&o) {
            Err(Error::Tls(m)) => assert!(m.contains("/nonexistent/cert.pem"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn last_value_wins_and_names_resolve() {
        let o = run(&["-p", "21", "-d", "/a", "-p", "2121", "-d", "/b", "-w", "-w"]);
        assert_eq!(
            (o.port, o.directory.clone(), o.write),
            (2121, "/b".into(), true)
        );
        let o = run(&["-i", "localhost", "-n", "localhost"]);
        assert!(!o.interfaces.is_empty());
        assert!(o.interfaces.iter().all(|ip| ip.is_loopback()), "{o:?}");
        assert_eq!(o.nat_address, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(
            run(&["-i", "[::1]"]).interfaces,
            [IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])]
        );
        assert!(parse(&["-n", "::1"]).is_err(), "PASV needs IPv4");
    }

    #[test]
    fn flags_without_effect_are_errors() {
        let says = |args: &[&str], what: &str| match parse(args) {
            Err(e) => assert!(e.contains(what), "{args:?}: {e}"),
            other => panic!("{args:?}: {other:?}"),
        };
        says(&["-P", "x"], "-P/--password needs -u/--username");
        says(
            &["--workers", "2"],
            "--workers needs --concurrency pre-fork",
        );
        says(
            &["--concurrency", "multi-proc", "--workers", "2"],
            "pre-fork",
        );
        says(&["-I", "-t", "5"], "-t/--idle-timeout needs -W");
        says(
            &["-r", "9000-8000"],
            "the start port must not exceed the end port",
        );
        says(&["-r", "0-10"], "ports start at 1");
        assert_eq!(run(&["-W", "-t", "5"]).idle_timeout, 5);
        assert_eq!(run(&["--max-cons", "0"]).max_cons, 0);
    }

    #[test]
    fn listen_errors_say_what_to_do() {
        let says = |addr: &str, errno: i32, start: &str| {
            let e = io::Error::from_raw_os_error(errno);
            let m = listen_error(addr.parse().unwrap(), &e);
            assert!(m.starts_with(start), "{m}");
            m
        };
        says(
            "[::]:2121",
            nix::libc::EADDRINUSE,
            "cannot listen on [::]:2121: address already in use",
        );
        let m = says(
            "0.0.0.0:21",
            nix::libc::EACCES,
            "cannot listen on 0.0.0.0:21: permission denied",
        );
        assert!(
            m.contains("CAP_NET_BIND_SERVICE") && m.contains("root"),
            "{m}"
        );
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
