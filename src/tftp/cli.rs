//! The `tftpd` command line (flags in the style of tftp-hpa's `in.tftpd` and
//! pyftpdlib-inetd): parses options and runs a [`TftpServer`] standalone or under inetd
//! "wait" (RFC 1350 servers are traditionally started that way).

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use getopts::Options;
use log::{debug, error, info};

use super::server::ServerStatsCallback;
use super::stats::{Counters, ServerStats};
use super::{Executor, FileHandler, OptionLimits, SessionStats, TftpServer};

/// Parsed `tftpd` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Directory served (`--root`, required).
    pub root: PathBuf,
    /// `--port`, default 69.
    pub port: u16,
    /// `--address`, default `::`.
    pub address: IpAddr,
    /// `--retries`, default 5.
    pub retries: u32,
    /// `--timeout` in seconds: the retransmission timeout until a round trip is measured,
    /// default 1.
    pub timeout: Duration,
    /// `--min-timeout` in milliseconds: the floor of the adaptive timeout, default 100.
    pub min_timeout: Duration,
    /// `--max-timeout` in seconds: its ceiling and the largest RFC 2349 `timeout` accepted,
    /// default 10.
    pub max_timeout: Duration,
    /// `--max-session-time` in seconds, 0 for none; default 600.
    pub max_session_time: Option<Duration>,
    /// `--fork`: one child per session.
    pub fork: bool,
    /// `--allow-write DIR`: accept write requests into DIR.
    pub allow_write: Option<PathBuf>,
    /// `--max-upload BYTES`, default 64 MiB.
    pub max_upload: u64,
    /// `--max-sessions N`, default 512.
    pub max_sessions: usize,
    /// `--max-sessions-per-ip N` (0 = no limit), default 8.
    pub max_sessions_per_ip: usize,
    /// `--rate-limit N` requests/s per source, default 100 (0 = off).
    pub rate_limit: u32,
    /// `--stats-interval S`, default 60.
    pub stats_interval: Duration,
    /// `--inetd-wait`: fd 0 is the bound UDP socket.
    pub inetd_wait: bool,
    /// `--idle-timeout S` in inetd "wait" mode, default 30.
    pub idle_timeout: Duration,
    /// `--max-blksize N`, default 65464.
    pub max_blksize: usize,
    /// `--max-windowsize N`, default 64.
    pub max_windowsize: u16,
    /// `-u`/`--user NAME`: drop to this user (and its groups) once the socket is bound.
    pub user: Option<String>,
    /// `-v`/`--verbose`: debug logging.
    pub verbose: bool,
    /// `-V`/`--version`: print the version and exit.
    pub version: bool,
    /// `--metrics ADDR:PORT`: serve Prometheus metrics there (default: off).
    pub metrics: Option<std::net::SocketAddr>,
}

/// The flags: (short, long, value placeholder or "" for a switch, help).
const FLAGS: &[(&str, &str, &str, &str)] = &[
    ("r", "root", "DIR", "directory to serve (required)"),
    ("p", "port", "PORT", "UDP port (default 69)"),
    ("a", "address", "ADDR", "address to bind (default ::)"),
    (
        "",
        "retries",
        "N",
        "retransmissions before giving up (default 5)",
    ),
    (
        "t",
        "timeout",
        "S",
        "retransmission timeout before a round trip is measured, seconds (default 1)",
    ),
    (
        "",
        "min-timeout",
        "MS",
        "floor of the adaptive retransmission timeout, milliseconds (default 100)",
    ),
    (
        "",
        "max-timeout",
        "S",
        "ceiling of the retransmission timeout and largest client timeout option \
         accepted, seconds (default 10)",
    ),
    (
        "",
        "max-session-time",
        "S",
        "end any session after S seconds, 0 = never (default 600)",
    ),
    ("", "fork", "", "run each session in a forked child"),
    (
        "",
        "allow-write",
        "DIR",
        "accept write requests into DIR (off by default)",
    ),
    (
        "",
        "max-upload",
        "BYTES",
        "largest upload in bytes (default 67108864)",
    ),
    ("", "max-sessions", "N", "sessions at once (default 512)"),
    (
        "",
        "max-sessions-per-ip",
        "N",
        "sessions at once per client address, 0 = no limit (default 8)",
    ),
    (
        "",
        "rate-limit",
        "N",
        "requests per second per source, 0 = off (default 100)",
    ),
    (
        "",
        "stats-interval",
        "S",
        "seconds between server stats lines (default 60)",
    ),
    (
        "",
        "inetd-wait",
        "",
        "stdin is the bound UDP socket (inetd \"wait\")",
    ),
    (
        "",
        "idle-timeout",
        "S",
        "with --inetd-wait: exit after S idle seconds (default 30)",
    ),
    (
        "",
        "max-blksize",
        "N",
        "largest blksize granted (default 65464)",
    ),
    (
        "",
        "max-windowsize",
        "N",
        "largest windowsize granted (default 64)",
    ),
    (
        "u",
        "user",
        "NAME",
        "run as this user once port 69 is bound (as tftp-hpa -u)",
    ),
    (
        "",
        "metrics",
        "ADDR:PORT",
        "serve Prometheus metrics at http://ADDR:PORT/metrics (default off)",
    ),
    ("v", "verbose", "", "debug logging"),
    ("V", "version", "", "print the version and exit"),
    ("h", "help", "", "print this help"),
];

fn options() -> Options {
    let mut o = Options::new();
    for (short, long, value, help) in FLAGS {
        if value.is_empty() {
            o.optflag(short, long, help);
        } else {
            o.optopt(short, long, help, value);
        }
    }
    o
}

fn num<T: std::str::FromStr>(m: &getopts::Matches, name: &str, default: T) -> Result<T, String> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("invalid value for --{name}: {v:?}")),
    }
}

/// [`num`], refused below `min`.
fn num_at_least<T>(m: &getopts::Matches, name: &str, default: T, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let v = num(m, name, default)?;
    if v < min {
        return Err(format!("--{name} must be at least {min}"));
    }
    Ok(v)
}

fn secs(m: &getopts::Matches, name: &str, default: u64, min: u64) -> Result<Duration, String> {
    num_at_least(m, name, default, min).map(Duration::from_secs)
}

/// Parses the arguments after the program name. `Ok(None)` means `--help` was asked.
///
/// # Errors
/// A message for an unknown flag, a missing `--root` or an invalid value.
pub fn parse_args<I, S>(args: I) -> Result<Option<Args>, String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let m = options().parse(&args).map_err(|e| e.to_string())?;
    if m.opt_present("help") {
        return Ok(None);
    }
    if m.opt_present("version") {
        // Nothing else is needed (not even --root) to print the version.
        return Ok(Some(Args {
            version: true,
            ..Args::unparsed()
        }));
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let root = m.opt_str("root").ok_or("--root DIR is required")?;
    let max_blksize: usize = num(&m, "max-blksize", super::options::MAX_BLKSIZE)?;
    if !(super::options::MIN_BLKSIZE..=super::options::MAX_BLKSIZE).contains(&max_blksize) {
        return Err("--max-blksize must be within 8..=65464".into());
    }
    let min_timeout = Duration::from_millis(num_at_least(&m, "min-timeout", 100, 1)?);
    let max_timeout = secs(&m, "max-timeout", 10, 1)?;
    if max_timeout < min_timeout {
        return Err("--max-timeout must not be below --min-timeout".into());
    }
    let max_session_time = secs(&m, "max-session-time", 600, 0)?;
    Ok(Some(Args {
        root: PathBuf::from(root),
        port: num(&m, "port", 69)?,
        address: num(&m, "address", IpAddr::from([0u16; 8]))?,
        retries: num(&m, "retries", 5)?,
        timeout: secs(&m, "timeout", 1, 1)?,
        min_timeout,
        max_timeout,
        max_session_time: (!max_session_time.is_zero()).then_some(max_session_time),
        fork: m.opt_present("fork"),
        allow_write: m.opt_str("allow-write").map(PathBuf::from),
        max_upload: num(&m, "max-upload", 64 * 1024 * 1024)?,
        max_sessions: num_at_least(&m, "max-sessions", 512, 1)?,
        max_sessions_per_ip: num(&m, "max-sessions-per-ip", 8)?,
        rate_limit: num(&m, "rate-limit", 100)?,
        stats_interval: secs(&m, "stats-interval", 60, 1)?,
        inetd_wait: m.opt_present("inetd-wait"),
        idle_timeout: secs(&m, "idle-timeout", 30, 1)?,
        max_blksize,
        max_windowsize: num_at_least(&m, "max-windowsize", 64, 1)?,
        user: m.opt_str("user"),
        verbose: m.opt_present("verbose"),
        version: false,
        metrics: match m.opt_str("metrics") {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                format!("--metrics: expected ADDR:PORT (e.g. 127.0.0.1:9169), not {v:?}")
            })?),
        },
    }))
}

impl Args {
    /// Placeholder values for a command line that only asks for `--version`.
    fn unparsed() -> Args {
        Args {
            root: PathBuf::new(),
            port: 69,
            address: IpAddr::from([0u16; 8]),
            retries: 5,
            timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(100),
            max_timeout: Duration::from_secs(10),
            max_session_time: Some(Duration::from_secs(600)),
            fork: false,
            allow_write: None,
            max_upload: 64 * 1024 * 1024,
            max_sessions: 512,
            max_sessions_per_ip: 8,
            rate_limit: 100,
            stats_interval: Duration::from_secs(60),
            inetd_wait: false,
            idle_timeout: Duration::from_secs(30),
            max_blksize: super::options::MAX_BLKSIZE,
            max_windowsize: 64,
            user: None,
            verbose: false,
            version: false,
            metrics: None,
        }
    }
}

/// One session, for the log: `peer RRQ file: N bytes, N packets, N retransmits in S`.
fn describe_session(s: &SessionStats) -> String {
    format!(
        "session {} {} {}: {} bytes, {} packets, {} retransmits in {:.3}s",
        s.peer,
        if s.write { "WRQ" } else { "RRQ" },
        s.file_path,
        s.bytes_sent + s.bytes_received,
        s.packets_sent,
        s.retransmits,
        s.duration.as_secs_f64(),
    )
}

/// The server counters of one interval, for the log.
fn describe_counters(c: &Counters) -> String {
    let mut out = format!(
        "sessions {} started, {} finished, {} failed; bytes {} sent, {} received; \
         packets {} sent, {} received, {} retransmitted; requests {} rate-limited, \
         {} over capacity, {} malformed",
        c.sessions_started,
        c.sessions_finished,
        c.sessions_failed,
        c.bytes_sent,
        c.bytes_received,
        c.packets_sent,
        c.packets_received,
        c.retransmits,
        c.requests_rate_limited,
        c.requests_over_capacity,
        c.bad_packets,
    );
    let errors: Vec<String> = (c.errors_by_code.iter().enumerate())
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{n} with code {code}"))
        .collect();
    if !errors.is_empty() {
        out.push_str(&format!("; ERROR packets: {}", errors.join(", ")));
    }
    out
}

/// Builds the server the flags describe (not yet bound).
pub fn build(args: &Args) -> TftpServer {
    let mut handler = FileHandler::new(args.root.clone());
    handler.stats_callback = Some(Arc::new(|s: &SessionStats| match &s.error {
        // The session has logged its failure already: once is enough at the default level.
        Some(e) => debug!("{}, error: {e}", describe_session(s)),
        None => info!("{}", describe_session(s)),
    }));
    // Each line counts one interval: the difference from the last reading. The counters
    // themselves are never reset, so the metrics endpoint serves them as totals.
    let last = std::sync::Mutex::new(Counters::default());
    let server_stats_callback: ServerStatsCallback = Arc::new(move |stats: &ServerStats| {
        let now = stats.get_all_counters();
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let c = now.since(&last);
        *last = now;
        if c == Counters::default() {
            debug!("server stats: no activity");
        } else {
            info!("server stats: {}", describe_counters(&c));
        }
    });
    let defaults = TftpServer::new(handler.factory());
    TftpServer {
        address: args.address,
        port: args.port,
        retries: args.retries,
        timeout: args.timeout,
        min_timeout: args.min_timeout,
        max_session_time: args.max_session_time,
        executor: if args.fork {
            Executor::Fork
        } else {
            Executor::Thread
        },
        upload_dir: args.allow_write.clone(),
        max_upload: args.max_upload,
        max_sessions: args.max_sessions,
        max_sessions_per_ip: args.max_sessions_per_ip,
        rate_limit: args.rate_limit,
        stats_interval: args.stats_interval,
        limits: OptionLimits {
            max_timeout: args.max_timeout,
            max_blksize: args.max_blksize,
            max_windowsize: args.max_windowsize,
            ..defaults.limits
        },
        server_stats_callback: Some(server_stats_callback),
        idle_timeout: args.inetd_wait.then_some(args.idle_timeout),
        ..defaults
    }
}

/// Becomes `name` for good: its groups, then its gid, then its uid (the order that leaves
/// no way back), like tftp-hpa's `-u`.
///
/// # Errors
/// An unknown user or a failed set*id call.
pub fn drop_privileges(name: &str) -> io::Result<()> {
    use nix::unistd::{initgroups, setgid, setuid, User};
    let user = User::from_name(name)
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such user"))?;
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in user name"))?;
    initgroups(&cname, user.gid).map_err(io::Error::from)?;
    setgid(user.gid).map_err(io::Error::from)?;
    setuid(user.uid).map_err(io::Error::from)?;
    info!("running as {name} (uid {}, gid {})", user.uid, user.gid);
    Ok(())
}

/// The socket inetd hands over as stdin.
fn inetd_socket() -> io::Result<UdpSocket> {
    use std::os::fd::AsFd;
    let fd = nix::unistd::dup(io::stdin().as_fd()).map_err(io::Error::from)?;
    Ok(UdpSocket::from(fd))
}

/// Binds the `--metrics` listener (its own port, never the TFTP one) and logs where.
#[cfg(feature = "metrics")]
fn metrics_listener(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, ExitCode> {
    match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            if let Ok(a) = l.local_addr() {
                info!(">>> metrics on http://{a}/metrics <<<");
            }
            Ok(l)
        }
        Err(e) => {
            error!("--metrics {addr}: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The `tftpd` program.
pub fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{}", options().usage("Usage: tftpd --root DIR [options]"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tftpd: {e}\n{}", options().short_usage("tftpd"));
            return ExitCode::from(2);
        }
    };
    if args.version {
        println!("tftpd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let _ = crate::logging::init(u8::from(args.verbose), None);
    if !args.root.is_dir() {
        error!("--root {} is not a directory", args.root.display());
        return ExitCode::from(2);
    }
    #[allow(unused_mut)]
    let mut server = build(&args);
    if let Some(addr) = args.metrics {
        #[cfg(feature = "metrics")]
        match metrics_listener(addr) {
            Ok(l) => server.metrics = Some(l),
            Err(code) => return code,
        }
        #[cfg(not(feature = "metrics"))]
        {
            error!("--metrics {addr}: this tftpd was built without the `metrics` feature");
            return ExitCode::from(2);
        }
    }
    let bound = if args.inetd_wait {
        inetd_socket().and_then(|s| server.from_socket(s))
    } else {
        server.bind()
    };
    let bound = match bound {
        Ok(b) => b,
        Err(e) => {
            error!("cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(name) = &args.user {
        if let Err(e) = drop_privileges(name) {
            error!("cannot run as {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    info!(
        "serving {} on {} ({} mode)",
        args.root.display(),
        bound.local_addr(),
        if args.fork { "fork" } else { "thread" }
    );
    match bound.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("server stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let a = parse_args(["--root", "/srv"]).expect("ok").expect("args");
        assert_eq!(a.port, 69);
        assert_eq!(a.address.to_string(), "::");
        assert_eq!(a.timeout, Duration::from_secs(1));
        assert_eq!(a.min_timeout, Duration::from_millis(100));
        assert_eq!(a.max_timeout, Duration::from_secs(10));
        assert_eq!(a.max_session_time, Some(Duration::from_secs(600)));
        assert_eq!(a.max_sessions_per_ip, 8);
        assert!(!a.fork && !a.inetd_wait && a.allow_write.is_none());
        let a = parse_args([
            "--root",
            "/srv",
            "--port",
            "0",
            "--address",
            "127.0.0.1",
            "--retries",
            "3",
            "--timeout",
            "1",
            "--fork",
            "--allow-write",
            "/up",
            "--max-sessions",
            "9",
            "--inetd-wait",
            "--idle-timeout",
            "5",
            "--max-sessions-per-ip",
            "0",
            "--max-session-time",
            "0",
            "--min-timeout",
            "50",
            "--max-timeout",
            "4",
        ])
        .expect("ok")
        .expect("args");
        assert_eq!((a.port, a.retries, a.max_sessions), (0, 3, 9));
        assert_eq!(a.address.to_string(), "127.0.0.1");
        assert!(a.fork && a.inetd_wait);
        assert_eq!(a.allow_write, Some(PathBuf::from("/up")));
        assert_eq!(a.idle_timeout, Duration::from_secs(5));
        assert_eq!((a.max_sessions_per_ip, a.max_session_time), (0, None));
        let s = build(&a);
        assert_eq!(s.executor, Executor::Fork);
        assert_eq!(s.min_timeout, Duration::from_millis(50));
        assert_eq!(s.limits.max_timeout, Duration::from_secs(4));
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn errors_and_help() {
        assert!(parse_args(["--help"]).expect("ok").is_none());
        assert!(parse_args(Vec::<String>::new()).is_err());
        assert!(parse_args(["--root", "/x", "--port", "70000"]).is_err());
        assert!(parse_args(["--root", "/x", "--timeout", "0"]).is_err());
        assert!(parse_args(["--root", "/x", "--min-timeout", "0"]).is_err());
        assert!(parse_args(["--root", "/x", "--max-timeout", "0"]).is_err());
        assert!(parse_args(["--root", "/x", "--max-blksize", "4"]).is_err());
        assert!(parse_args(["--root", "/x", "--bogus"]).is_err());
        assert!(parse_args(["--root", "/x", "extra"]).is_err());
    }
}
