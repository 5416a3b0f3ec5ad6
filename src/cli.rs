//! The command line (`ftpdlib [options]`), mirroring `python3 -m pyftpdlib`: the same flags,
//! meanings and defaults, so a pyftpdlib command line works by changing only the program.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::authorizers::DummyAuthorizer;
use crate::handlers::{Encoding, FtpHandler};
use crate::servers::{Executor, FtpServer};
use crate::Error;

/// Everything the command line decides.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// `-i`: address to listen on. Default: `::` (dual stack: IPv4 and IPv6).
    pub interface: IpAddr,
    /// `-p`: port. Default: 2121.
    pub port: u16,
    /// `-w`: grant write permissions.
    pub write: bool,
    /// `-d`: the directory served. Default: the current directory.
    pub directory: PathBuf,
    /// `-n`: address sent in PASV replies (NAT).
    pub nat_address: Option<Ipv4Addr>,
    /// `-r FROM-TO`: passive port range.
    pub range: Option<(u16, u16)>,
    /// `-u`: the one account (anonymous is then refused).
    pub username: Option<String>,
    /// `-P`: its password.
    pub password: Option<String>,
    /// Log level: 0 info, 1 `-V` debug, 2 `-D` trace.
    pub verbosity: u8,
    /// `--concurrency`.
    pub concurrency: Executor,
    /// `--timeout` seconds for control and data connections (0 disables). Default: 300.
    pub timeout: u64,
    /// `--banner`.
    pub banner: Option<String>,
    /// `--permit-foreign-addresses`.
    pub permit_foreign_addresses: bool,
    /// `--permit-privileged-ports`.
    pub permit_privileged_ports: bool,
    /// `--encoding`. Default: utf8.
    pub encoding: Encoding,
    /// `--use-localtime`.
    pub use_localtime: bool,
    /// `--disable-sendfile`.
    pub disable_sendfile: bool,
    /// `--max-cons`. Default: 512.
    pub max_cons: usize,
    /// `--max-cons-per-ip`. Default: 0 (unlimited).
    pub max_cons_per_ip: usize,
    /// `--max-login-attempts`. Default: 3.
    pub max_login_attempts: u32,
    /// `--read-limit`: upload bytes/s per session (0 = unlimited).
    pub read_limit: u64,
    /// `--write-limit`: download bytes/s per session (0 = unlimited).
    pub write_limit: u64,
    /// `--user-read-limit`: upload bytes/s shared by one user's sessions (0 = unlimited).
    pub user_read_limit: u64,
    /// `--user-write-limit`: download bytes/s shared by one user's sessions (0 = unlimited).
    pub user_write_limit: u64,
    /// `--max-read-rate`: upload bytes/s shared by all sessions (0 = unlimited).
    pub max_read_rate: u64,
    /// `--max-write-rate`: download bytes/s shared by all sessions (0 = unlimited).
    pub max_write_rate: u64,
    /// `-I`/`--inetd`: serve the connection on stdin (inetd "nowait") and exit.
    pub inetd: bool,
    /// `-W`/`--inetd-wait`: serve the listening socket on stdin (inetd "wait").
    pub inetd_wait: bool,
    /// `-t`/`--idle-timeout` seconds with no session before exiting (0 never). Default: 0.
    pub idle_timeout: u64,
    /// `--user NAME`: the account to switch to once the port is bound.
    pub run_as: Option<String>,
    /// `--shutdown-grace` seconds running transfers get after SIGTERM. Default: 10.
    pub shutdown_grace: u64,
    /// `--unix-users`: log system accounts in (UnixAuthorizer + UnixFilesystem).
    pub unix_users: bool,
    /// `--tls`: FTPS (needs `--certfile`).
    pub tls: bool,
    /// `--certfile`: PEM certificate chain (may hold the key too).
    pub certfile: Option<PathBuf>,
    /// `--keyfile`: PEM private key.
    pub keyfile: Option<PathBuf>,
    /// `--tls-control-required`.
    pub tls_control_required: bool,
    /// `--tls-data-required`.
    pub tls_data_required: bool,
    /// `--implicit-tls`: TLS from the first byte (port 990 style).
    pub implicit_tls: bool,
    /// `--disable-tls-reuse-check`: data connections need not resume the control session.
    pub disable_tls_reuse_check: bool,
}

/// What parsing the command line produced besides options.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Run the server.
    Run(Box<Options>),
    /// Print this (help or version) and exit 0.
    Print(String),
}

fn opts() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "i",
        "interface",
        "specify the interface to run on (default all interfaces)",
        "ADDRESS",
    );
    o.optopt(
        "p",
        "port",
        "specify port number to run on (default 2121)",
        "PORT",
    );
    o.optflag(
        "w",
        "write",
        "grants write access for logged in user (default read-only)",
    );
    o.optopt(
        "d",
        "directory",
        "specify the directory to share (default current directory)",
        "FOLDER",
    );
    o.optopt(
        "n",
        "nat-address",
        "the NAT address to use for passive connections",
        "ADDRESS",
    );
    o.optopt(
        "r",
        "range",
        "the range of TCP ports to use for passive connections (e.g. -r 8000-9000)",
        "FROM-TO",
    );
    o.optflag("D", "debug", "enable DEBUG logging level");
    o.optflag("v", "version", "print ftpdlib version and exit");
    o.optflag("V", "verbose", "activate a more verbose logging");
    o.optopt("u", "username", "specify username to login with (anonymous login will be disabled and password required if supplied)", "USERNAME");
    o.optopt(
        "P",
        "password",
        "specify a password to login with (username required to be useful)",
        "PASSWORD",
    );
    o.optopt(
        "",
        "concurrency",
        "concurrency model: pool (default; 'async' is a synonym), multi-thread, multi-proc, pre-fork",
        "MODEL",
    );
    o.optopt(
        "",
        "workers",
        "worker processes of the pre-fork model (default: number of CPUs)",
        "N",
    );
    o.optflag(
        "I",
        "inetd",
        "inetd \"nowait\" service: serve the connection on stdin, then exit",
    );
    o.optflag(
        "W",
        "inetd-wait",
        "inetd \"wait\" service: serve the listening socket on stdin",
    );
    o.optopt(
        "t",
        "idle-timeout",
        "exit after SECS with no client (inetd-wait; default 0 = never)",
        "SECS",
    );
    o.optopt(
        "",
        "user",
        "switch to this account once the port is bound (when started as root)",
        "NAME",
    );
    o.optopt(
        "",
        "shutdown-grace",
        "seconds running transfers may go on after SIGTERM/SIGINT (default 10)",
        "SECS",
    );
    o.optflag(
        "",
        "unix-users",
        "log in system accounts with their passwords, in their homes, as themselves (needs root)",
    );
    o.optopt(
        "",
        "timeout",
        "connection timeout in seconds; 0 disables (default 300)",
        "SECS",
    );
    o.optopt(
        "",
        "banner",
        "the message sent when client connects",
        "TEXT",
    );
    o.optflag(
        "",
        "permit-foreign-addresses",
        "allow data connections from/to foreign IP addresses (FXP)",
    );
    o.optflag(
        "",
        "permit-privileged-ports",
        "allow data connections (PORT) to privileged ports",
    );
    o.optopt(
        "",
        "encoding",
        "the encoding used for client / server communication (default utf8)",
        "ENCODING",
    );
    o.optflag(
        "",
        "use-localtime",
        "display directory listings with the time in your local time zone (default GMT)",
    );
    o.optflag(
        "",
        "disable-sendfile",
        "disable sendfile() syscall (zero-copy) for faster uploads",
    );
    o.optopt(
        "",
        "max-cons",
        "max number of simultaneous connections (default 512)",
        "N",
    );
    o.optopt(
        "",
        "max-cons-per-ip",
        "maximum number connections from the same IP address (default 0 = unlimited)",
        "N",
    );
    o.optopt(
        "",
        "max-login-attempts",
        "max number of failed authentications before disconnect (default 3)",
        "N",
    );
    for (name, what) in RATE_FLAGS {
        o.optopt("", name, what, "RATE");
    }
    o.optflag(
        "",
        "tls",
        "enable FTPS (AUTH TLS, PROT P); needs --certfile",
    );
    o.optopt(
        "",
        "certfile",
        "the PEM certificate chain for FTPS (may contain the key too)",
        "FILE",
    );
    o.optopt(
        "",
        "keyfile",
        "the PEM private key for FTPS (default: read from --certfile)",
        "FILE",
    );
    o.optflag(
        "",
        "tls-control-required",
        "impose TLS for the control connection (USER/PASS before AUTH refused)",
    );
    o.optflag(
        "",
        "tls-data-required",
        "impose TLS for the data connection (transfers without PROT P refused)",
    );
    o.optflag(
        "",
        "implicit-tls",
        "implicit FTPS: TLS from the first byte (usually port 990); implies --tls",
    );
    o.optflag(
        "",
        "disable-tls-reuse-check",
        "accept PROT P data connections that do not resume the control TLS session",
    );
    o.optflag("h", "help", "show this help message and exit");
    o
}

/// The rate flags (bytes per second; `500K`, `10M`, `1G` or plain bytes; K = 1024).
const RATE_FLAGS: [(&str, &str); 6] = [
    (
        "read-limit",
        "max upload speed per session, bytes/s (e.g. 500K, 10M; 0 = unlimited)",
    ),
    (
        "write-limit",
        "max download speed per session, bytes/s (e.g. 500K, 10M; 0 = unlimited)",
    ),
    (
        "user-read-limit",
        "max upload speed shared by all sessions of a user, bytes/s",
    ),
    (
        "user-write-limit",
        "max download speed shared by all sessions of a user, bytes/s",
    ),
    (
        "max-read-rate",
        "max upload speed shared by all sessions of the server, bytes/s",
    ),
    (
        "max-write-rate",
        "max download speed shared by all sessions of the server, bytes/s",
    ),
];

/// Parses a rate: plain bytes per second, or a number with `K`, `M` or `G` (powers of 1024,
/// either case, an optional trailing `B`): `500K` is 512000.
///
/// # Errors
/// Not a number, an unknown suffix, or too large.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix(['B', 'b'])
        .filter(|r| !r.is_empty())
        .unwrap_or(t);
    let (digits, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("invalid rate {s:?} (use e.g. 500K, 10M, 1G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid rate {s:?} (use e.g. 500K, 10M, 1G)"))
}

fn rate(m: &getopts::Matches, name: &str) -> Result<u64, String> {
    match m.opt_str(name) {
        None => Ok(0),
        Some(v) => parse_rate(&v).map_err(|e| format!("argument --{name}: {e}")),
    }
}

fn num<T: std::str::FromStr>(m: &getopts::Matches, name: &str, default: T) -> Result<T, String> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("argument --{name}: invalid value: {v:?}")),
    }
}

/// Parses the arguments (without the program name).
///
/// # Errors
/// A message for a bad flag or value; the caller prints it and exits 2.
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Parsed, String> {
    let o = opts();
    let m = o.parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("h") {
        return Ok(Parsed::Print(o.usage(
            "Usage: ftpdlib [options]\n\nStart a stand alone anonymous FTP server.",
        )));
    }
    if m.opt_present("v") {
        return Ok(Parsed::Print(format!(
            "ftpdlib {}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if !m.free.is_empty() {
        return Err(format!("unrecognized arguments: {}", m.free.join(" ")));
    }
    let interface = match m.opt_str("i") {
        None => IpAddr::from([0u16; 8]),
        Some(s) if s.is_empty() => IpAddr::from([0u16; 8]),
        Some(s) => s
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| format!("argument -i/--interface: invalid address: {s:?}"))?,
    };
    let port = num(&m, "port", 2121u16)?;
    let directory = match m.opt_str("d") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let nat_address = match m.opt_str("n") {
        None => None,
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("argument -n/--nat-address: not an IPv4 address: {s:?}"))?,
        ),
    };
    let range = match m.opt_str("r") {
        None => None,
        Some(s) => {
            let bad = || format!("argument -r/--range: invalid range {s:?} (expected FROM-TO)");
            let (a, b) = s.split_once('-').ok_or_else(bad)?;
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a == 0 || a > b {
                return Err(bad());
            }
            Some((a, b))
        }
    };
    let username = m.opt_str("u");
    let password = m.opt_str("P");
    if username.is_some() && password.is_none() {
        return Err("if username (-u) is supplied, password (-P) is required".into());
    }
    let concurrency = match m.opt_str("concurrency").as_deref() {
        None | Some("pool") | Some("async") => Executor::Pool,
        Some("multi-thread") | Some("thread") => Executor::Thread,
        Some("multi-proc") | Some("fork") => Executor::Fork,
        Some("pre-fork") | Some("prefork") => Executor::PreFork {
            workers: match m.opt_str("workers") {
                Some(_) => num(&m, "workers", 1usize)?,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        },
        Some(other) => {
            return Err(format!(
                "argument --concurrency: invalid choice: {other:?} (choose from 'pool', 'async', 'multi-thread', 'multi-proc', 'pre-fork')"
            ))
        }
    };
    if matches!(concurrency, Executor::PreFork { workers: 0 }) {
        return Err("argument --workers: must be at least 1".into());
    }
    if m.opt_present("I") && m.opt_present("W") {
        return Err("--inetd and --inetd-wait are exclusive".into());
    }
    if m.opt_present("user") && m.opt_present("unix-users") {
        return Err(
            "--user and --unix-users are exclusive (Unix users need root to become themselves)"
                .into(),
        );
    }
    let encoding = match m.opt_str("encoding") {
        None => Encoding::Utf8,
        Some(e) => Encoding::parse(&e).ok_or_else(|| {
            format!("argument --encoding: unsupported encoding {e:?} (utf8 or latin-1)")
        })?,
    };
    let implicit_tls = m.opt_present("implicit-tls");
    let tls = m.opt_present("tls") || implicit_tls;
    let certfile = m.opt_str("certfile").map(PathBuf::from);
    let keyfile = m.opt_str("keyfile").map(PathBuf::from);
    if tls && certfile.is_none() {
        return Err("--tls requires --certfile".into());
    }
    if !tls
        && (certfile.is_some()
            || keyfile.is_some()
            || m.opt_present("tls-control-required")
            || m.opt_present("tls-data-required")
            || m.opt_present("disable-tls-reuse-check"))
    {
        return Err("--certfile, --keyfile and --tls-* options require --tls".into());
    }
    let verbosity = if m.opt_present("D") {
        2
    } else {
        u8::from(m.opt_present("V"))
    };
    Ok(Parsed::Run(Box::new(Options {
        interface,
        port,
        write: m.opt_present("w"),
        directory,
        nat_address,
        range,
        username,
        password,
        verbosity,
        concurrency,
        timeout: num(&m, "timeout", 300u64)?,
        banner: m.opt_str("banner"),
        permit_foreign_addresses: m.opt_present("permit-foreign-addresses"),
        permit_privileged_ports: m.opt_present("permit-privileged-ports"),
        encoding,
        use_localtime: m.opt_present("use-localtime"),
        disable_sendfile: m.opt_present("disable-sendfile"),
        max_cons: num(&m, "max-cons", 512usize)?,
        max_cons_per_ip: num(&m, "max-cons-per-ip", 0usize)?,
        max_login_attempts: num(&m, "max-login-attempts", 3u32)?,
        read_limit: rate(&m, "read-limit")?,
        write_limit: rate(&m, "write-limit")?,
        user_read_limit: rate(&m, "user-read-limit")?,
        user_write_limit: rate(&m, "user-write-limit")?,
        max_read_rate: rate(&m, "max-read-rate")?,
        max_write_rate: rate(&m, "max-write-rate")?,
        inetd: m.opt_present("I"),
        inetd_wait: m.opt_present("W"),
        idle_timeout: num(&m, "idle-timeout", 0u64)?,
        run_as: m.opt_str("user"),
        shutdown_grace: num(&m, "shutdown-grace", 10u64)?,
        unix_users: m.opt_present("unix-users"),
        tls,
        certfile,
        keyfile,
        tls_control_required: m.opt_present("tls-control-required"),
        tls_data_required: m.opt_present("tls-data-required"),
        implicit_tls,
        disable_tls_reuse_check: m.opt_present("disable-tls-reuse-check"),
    })))
}

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
