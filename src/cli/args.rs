//! Command-line parsing: the flags of `python3 -m pyftpdlib` (same names, meanings and
//! defaults) plus ftpdlib's own, into [`Options`].

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::handlers::Encoding;
use crate::servers::Executor;

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
    /// `--atomic-uploads`: upload to a hidden temporary file, renamed over the name when
    /// complete.
    pub atomic_uploads: bool,
    /// `--ban-failures`: failed logins from one address that ban it (0 = no bans).
    /// Default: 5.
    pub ban_failures: u32,
    /// `--ban-find-time` seconds in which those failures count. Default: 600.
    pub ban_find_time: u64,
    /// `--ban-time` seconds a banned address is refused. Default: 600.
    pub ban_time: u64,
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
    o.optflag(
        "",
        "atomic-uploads",
        "upload to a hidden temporary file renamed over the name when complete (readers never see a partial file)",
    );
    o.optopt(
        "",
        "ban-failures",
        "failed logins from one address that ban it (default 5; 0 = no bans)",
        "N",
    );
    o.optopt(
        "",
        "ban-find-time",
        "seconds in which --ban-failures failed logins ban an address (default 600)",
        "SECS",
    );
    o.optopt(
        "",
        "ban-time",
        "seconds a banned address gets 421 at connect (default 600)",
        "SECS",
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
        atomic_uploads: m.opt_present("atomic-uploads"),
        ban_failures: num(&m, "ban-failures", 5u32)?,
        ban_find_time: num(&m, "ban-find-time", 600u64)?,
        ban_time: num(&m, "ban-time", 600u64)?,
    })))
}
