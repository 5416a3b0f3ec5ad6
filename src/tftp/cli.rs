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
use log::{error, info};

use super::stats::ServerStats;
use super::{Executor, FileHandler, SessionStats, TftpServer};

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
}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("r", "root", "directory to serve (required)", "DIR");
    o.optopt("p", "port", "UDP port (default 69)", "PORT");
    o.optopt("a", "address", "address to bind (default ::)", "ADDR");
    o.optopt(
        "",
        "retries",
        "retransmissions before giving up (default 5)",
        "N",
    );
    o.optopt(
        "t",
        "timeout",
        "retransmission timeout before a round trip is measured, seconds (default 1)",
        "S",
    );
    o.optopt(
        "",
        "min-timeout",
        "floor of the adaptive retransmission timeout, milliseconds (default 100)",
        "MS",
    );
    o.optopt(
        "",
        "max-timeout",
        "ceiling of the retransmission timeout and largest client timeout option \
         accepted, seconds (default 10)",
        "S",
    );
    o.optopt(
        "",
        "max-session-time",
        "end any session after S seconds, 0 = never (default 600)",
        "S",
    );
    o.optflag("", "fork", "run each session in a forked child");
    o.optopt(
        "",
        "allow-write",
        "accept write requests into DIR (off by default)",
        "DIR",
    );
    o.optopt(
        "",
        "max-upload",
        "largest upload in bytes (default 67108864)",
        "BYTES",
    );
    o.optopt("", "max-sessions", "sessions at once (default 512)", "N");
    o.optopt(
        "",
        "max-sessions-per-ip",
        "sessions at once per client address, 0 = no limit (default 8)",
        "N",
    );
    o.optopt(
        "",
        "rate-limit",
        "requests per second per source, 0 = off (default 100)",
        "N",
    );
    o.optopt(
        "",
        "stats-interval",
        "seconds between server stats lines (default 60)",
        "S",
    );
    o.optflag(
        "",
        "inetd-wait",
        "stdin is the bound UDP socket (inetd \"wait\")",
    );
    o.optopt(
        "",
        "idle-timeout",
        "with --inetd-wait: exit after S idle seconds (default 30)",
        "S",
    );
    o.optopt(
        "",
        "max-blksize",
        "largest blksize granted (default 65464)",
        "N",
    );
    o.optopt(
        "",
        "max-windowsize",
        "largest windowsize granted (default 64)",
        "N",
    );
    o.optopt(
        "u",
        "user",
        "run as this user once port 69 is bound (as tftp-hpa -u)",
        "NAME",
    );
    o.optflag("v", "verbose", "debug logging");
    o.optflag("h", "help", "print this help");
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

fn secs(m: &getopts::Matches, name: &str, default: u64, min: u64) -> Result<Duration, String> {
    let v: u64 = num(m, name, default)?;
    if v < min {
        return Err(format!("--{name} must be at least {min}"));
    }
    Ok(Duration::from_secs(v))
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
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let root = m.opt_str("root").ok_or("--root DIR is required")?;
    let max_blksize: usize = num(&m, "max-blksize", super::options::MAX_BLKSIZE)?;
    if !(super::options::MIN_BLKSIZE..=super::options::MAX_BLKSIZE).contains(&max_blksize) {
        return Err("--max-blksize must be within 8..=65464".into());
    }
    let max_windowsize: u16 = num(&m, "max-windowsize", 64)?;
    if max_windowsize == 0 {
        return Err("--max-windowsize must be at least 1".into());
    }
    let max_sessions: usize = num(&m, "max-sessions", 512)?;
    if max_sessions == 0 {
        return Err("--max-sessions must be at least 1".into());
    }
    let min_timeout = Duration::from_millis(num(&m, "min-timeout", 100)?);
    if min_timeout.is_zero() {
        return Err("--min-timeout must be at least 1".into());
    }
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
        max_sessions,
        max_sessions_per_ip: num(&m, "max-sessions-per-ip", 8)?,
        rate_limit: num(&m, "rate-limit", 100)?,
        stats_interval: secs(&m, "stats-interval", 60, 1)?,
        inetd_wait: m.opt_present("inetd-wait"),
        idle_timeout: secs(&m, "idle-timeout", 30, 1)?,
        max_blksize,
        max_windowsize,
        user: m.opt_str("user"),
        verbose: m.opt_present("verbose"),
    }))
}

/// Builds the server the flags describe (not yet bound).
pub fn build(args: &Args) -> TftpServer {
    let mut handler = FileHandler::new(args.root.clone());
    handler.stats_callback = Some(Arc::new(|s: &SessionStats| {
        info!(
            "session {} {} {}: {} bytes, {} packets, {} retransmits, {:?}{}",
            s.peer,
            if s.write { "WRQ" } else { "RRQ" },
            s.file_path,
            s.bytes_sent + s.bytes_received,
            s.packets_sent,
            s.retransmits,
            s.duration,
            s.error
                .as_deref()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default()
        );
    }));
    let mut server = TftpServer::new(handler.factory());
    server.address = args.address;
    server.port = args.port;
    server.retries = args.retries;
    server.timeout = args.timeout;
    server.min_timeout = args.min_timeout;
    server.limits.max_timeout = args.max_timeout;
    server.max_session_time = args.max_session_time;
    server.executor = if args.fork {
        Executor::Fork
    } else {
        Executor::Thread
    };
    server.upload_dir = args.allow_write.clone();
    server.max_upload = args.max_upload;
    server.max_sessions = args.max_sessions;
    server.max_sessions_per_ip = args.max_sessions_per_ip;
    server.rate_limit = args.rate_limit;
    server.stats_interval = args.stats_interval;
    server.limits.max_blksize = args.max_blksize;
    server.limits.max_windowsize = args.max_windowsize;
    server.server_stats_callback = Some(Arc::new(|stats: &ServerStats| {
        info!("server stats: {:?}", stats.get_and_reset_all_counters());
    }));
    if args.inetd_wait {
        server.idle_timeout = Some(args.idle_timeout);
    }
    server
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
    let level = if args.verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    if !args.root.is_dir() {
        error!("--root {} is not a directory", args.root.display());
        return ExitCode::from(2);
    }
    let server = build(&args);
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
