//! Command-line parsing: the flags of `python3 -m pyftpdlib` (same names, meanings and
//! defaults) plus ftpdlib's own, into [`Options`].

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::PathBuf;

use super::flags;
use crate::handlers::Encoding;
use crate::proxy_protocol::Cidr;
use crate::servers::Executor;

/// Everything the command line decides.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// `-i`: the addresses to listen on; a host name gives each of its addresses (`-i
    /// localhost` → `::1` and `127.0.0.1`). Default: `::` (dual stack: IPv4 and IPv6).
    pub interfaces: Vec<IpAddr>,
    /// `-p`: port. Default: 2121.
    pub port: u16,
    /// `-w`: grant write permissions.
    pub write: bool,
    /// `-d`: the directory served. Default: the current directory.
    pub directory: PathBuf,
    /// `-n`: address sent in PASV replies (NAT); a host name is resolved at startup.
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
    /// `--login-timeout` seconds to log in, from connect (0 disables; ProFTPD's
    /// `TimeoutLogin`). Default: 60.
    pub login_timeout: u64,
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
    /// `--no-batch-scheduling` (`FtpHandler::batch_scheduling` off).
    pub no_batch_scheduling: bool,
    /// `--max-cons`. Default: 512; 0 = unlimited.
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
    /// `--chroot-local-user`: jail each `--unix-users` account in its home (vsftpd's
    /// `chroot_local_user`). Default: off (the whole file system, as the account sees it).
    pub chroot_local_user: bool,
    /// `--umask`: octal umask of uploads and new directories (vsftpd's `local_umask`).
    /// Default: 022.
    pub umask: u32,
    /// `--users-db URL`: users from a database (`sqlite:PATH`, `postgres://…`, `@FILE`);
    /// `-d` is then the directory relative homes hang from.
    pub users_db: Option<String>,
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
    /// `--data-handshake-timeout` seconds for a data connection's TLS handshake (at least 1).
    /// Default: 10, as `TlsConfig::data_handshake_timeout`.
    pub data_handshake_timeout: u64,
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
    /// `--log-file`: the log goes there (appended) instead of stderr. Default: stderr.
    pub log_file: Option<PathBuf>,
    /// `--xferlog`: the transfer log (wu-ftpd xferlog format). Default: none.
    pub xferlog: Option<PathBuf>,
    /// `--metrics ADDR:PORT`: where the Prometheus endpoint listens. Default: off.
    pub metrics: Option<std::net::SocketAddr>,
    /// `--stats-interval` seconds between lines of server counters (0 never). Default: 0.
    pub stats_interval: u64,
    /// `--proxy-protocol`: PROXY protocol headers from the `--trusted-proxy` balancers.
    pub proxy_protocol: bool,
    /// `--trusted-proxy` (repeatable, or comma-separated): who may send PROXY headers.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for Options {
    /// pyftpdlib's defaults (the directory is `.`; the command line makes it absolute).
    fn default() -> Self {
        Options {
            interfaces: vec![IpAddr::from([0u16; 8])],
            port: 2121,
            write: false,
            directory: PathBuf::from("."),
            nat_address: None,
            range: None,
            username: None,
            password: None,
            verbosity: 0,
            concurrency: Executor::Pool,
            timeout: 300,
            login_timeout: 60,
            banner: None,
            permit_foreign_addresses: false,
            permit_privileged_ports: false,
            encoding: Encoding::Utf8,
            use_localtime: false,
            disable_sendfile: false,
            no_batch_scheduling: false,
            max_cons: 512,
            max_cons_per_ip: 0,
            max_login_attempts: 3,
            read_limit: 0,
            write_limit: 0,
            user_read_limit: 0,
            user_write_limit: 0,
            max_read_rate: 0,
            max_write_rate: 0,
            inetd: false,
            inetd_wait: false,
            idle_timeout: 0,
            run_as: None,
            shutdown_grace: 10,
            unix_users: false,
            chroot_local_user: false,
            umask: 0o022,
            users_db: None,
            tls: false,
            certfile: None,
            keyfile: None,
            tls_control_required: false,
            tls_data_required: false,
            implicit_tls: false,
            disable_tls_reuse_check: false,
            data_handshake_timeout: 10,
            atomic_uploads: false,
            ban_failures: 5,
            ban_find_time: 600,
            ban_time: 600,
            log_file: None,
            xferlog: None,
            metrics: None,
            stats_interval: 0,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// What parsing the command line produced besides options.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Run the server.
    Run(Box<Options>),
    /// Print this (help or version) and exit 0.
    Print(String),
}

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

/// A value flag's value: the last one given, as with pyftpdlib's argparse (so a command line
/// can be extended with flags that override what it already says).
fn value(m: &getopts::Matches, name: &str) -> Option<String> {
    m.opt_strs(name).pop()
}

/// An address, or a host name resolved to its addresses (pyftpdlib hands `-i` to
/// getaddrinfo(3) too).
fn resolve(flag: &str, s: &str) -> Result<Vec<IpAddr>, String> {
    let s = s.trim_matches(|c| c == '[' || c == ']');
    if let Ok(ip) = s.parse() {
        return Ok(vec![ip]);
    }
    let addrs = (s, 0)
        .to_socket_addrs()
        .map_err(|e| format!("argument {flag}: cannot resolve {s:?}: {e}"))?;
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in addrs.map(|a| a.ip()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err(format!("argument {flag}: {s:?} has no address"));
    }
    Ok(out)
}

fn rate(m: &getopts::Matches, name: &str) -> Result<u64, String> {
    match value(m, name) {
        None => Ok(0),
        Some(v) => parse_rate(&v).map_err(|e| format!("argument --{name}: {e}")),
    }
}

fn num<T: std::str::FromStr>(m: &getopts::Matches, name: &str, default: T) -> Result<T, String> {
    match value(m, name) {
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
    let m = flags::parser().parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("help") {
        return Ok(Parsed::Print(flags::usage()));
    }
    if m.opt_present("version") {
        return Ok(Parsed::Print(format!(
            "ftpdlib {}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if !m.free.is_empty() {
        return Err(format!("unrecognized arguments: {}", m.free.join(" ")));
    }
    let mut o = Options::default();
    main_options(&m, &mut o)?;
    tls_options(&m, &mut o)?;
    deployment_options(&m, &mut o)?;
    limits(&m, &mut o)?;
    operating(&m, &mut o)?;
    Ok(Parsed::Run(Box::new(o)))
}

/// `--log-file`, `--xferlog`, `--metrics`, `--stats-interval`.
fn operating(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    o.log_file = value(m, "log-file").map(PathBuf::from);
    o.xferlog = value(m, "xferlog").map(PathBuf::from);
    o.stats_interval = num(m, "stats-interval", o.stats_interval)?;
    if let Some(s) = value(m, "metrics") {
        if !cfg!(feature = "metrics") {
            return Err(
                "--metrics: this ftpdlib was built without the metrics endpoint (cargo \
                 feature `metrics`)"
                    .into(),
            );
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("argument --metrics: {s:?}: expected ADDR:PORT"))?;
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| format!("argument --metrics: {s:?}: invalid port"))?;
        let ip = resolve("--metrics", host)?[0];
        o.metrics = Some(std::net::SocketAddr::new(ip, port));
    }
    if o.inetd && (o.metrics.is_some() || o.stats_interval > 0) {
        return Err(
            "--metrics and --stats-interval need a server: -I serves one connection and exits"
                .into(),
        );
    }
    Ok(())
}

/// pyftpdlib's own flags.
fn main_options(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    if let Some(s) = value(m, "interface").filter(|s| !s.is_empty()) {
        o.interfaces = resolve("-i/--interface", &s)?;
    }
    o.port = num(m, "port", o.port)?;
    o.write = m.opt_present("write");
    o.directory = match value(m, "directory") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    if let Some(s) = value(m, "nat-address") {
        // PASV replies carry IPv4 only (RFC 959); a name's first IPv4 address is sent.
        let v4 = resolve("-n/--nat-address", &s)?
            .into_iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
        o.nat_address =
            Some(v4.ok_or_else(|| format!("argument -n/--nat-address: no IPv4 address: {s:?}"))?);
    }
    o.range = value(m, "range").map(|s| port_range(&s)).transpose()?;
    o.username = value(m, "username");
    o.password = value(m, "password");
    match (&o.username, &o.password) {
        (Some(_), None) => {
            return Err("if username (-u) is supplied, password (-P) is required".into())
        }
        (None, Some(_)) => {
            return Err(
                "-P/--password needs -u/--username (anonymous login has no password)".into(),
            )
        }
        _ => {}
    }
    o.verbosity = if m.opt_present("debug") {
        2
    } else {
        u8::from(m.opt_present("verbose"))
    };
    o.banner = value(m, "banner");
    o.permit_foreign_addresses = m.opt_present("permit-foreign-addresses");
    o.permit_privileged_ports = m.opt_present("permit-privileged-ports");
    if let Some(e) = value(m, "encoding") {
        o.encoding = Encoding::parse(&e).ok_or_else(|| {
            format!("argument --encoding: unsupported encoding {e:?} (utf8 or latin-1)")
        })?;
    }
    o.use_localtime = m.opt_present("use-localtime");
    o.disable_sendfile = m.opt_present("disable-sendfile");
    o.no_batch_scheduling = m.opt_present("no-batch-scheduling");
    Ok(())
}

/// `-r FROM-TO`.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("argument -r/--range: invalid range {s:?} (expected FROM-TO)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 {
        return Err(format!("argument -r/--range: {s:?}: ports start at 1"));
    }
    if a > b {
        return Err(format!(
            "argument -r/--range: {s:?}: the start port must not exceed the end port"
        ));
    }
    Ok((a, b))
}

/// FTPS flags: `--tls` and `--implicit-tls` need a certificate; the others need `--tls`.
fn tls_options(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    o.implicit_tls = m.opt_present("implicit-tls");
    o.tls = m.opt_present("tls") || o.implicit_tls;
    o.certfile = value(m, "certfile").map(PathBuf::from);
    o.keyfile = value(m, "keyfile").map(PathBuf::from);
    o.tls_control_required = m.opt_present("tls-control-required");
    o.tls_data_required = m.opt_present("tls-data-required");
    o.disable_tls_reuse_check = m.opt_present("disable-tls-reuse-check");
    o.data_handshake_timeout = num(m, "data-handshake-timeout", o.data_handshake_timeout)?;
    if o.data_handshake_timeout == 0 {
        // Zero would time every data handshake out before it starts.
        return Err("argument --data-handshake-timeout: must be at least 1".into());
    }
    if o.tls && o.certfile.is_none() {
        return Err("--tls requires --certfile".into());
    }
    if !o.tls
        && (o.certfile.is_some()
            || o.keyfile.is_some()
            || o.tls_control_required
            || o.tls_data_required
            || o.disable_tls_reuse_check
            || m.opt_present("data-handshake-timeout"))
    {
        return Err("--certfile, --keyfile and --tls-* options require --tls".into());
    }
    Ok(())
}

/// Concurrency model, service-manager modes, identity and shutdown.
fn deployment_options(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    o.concurrency = concurrency(m)?;
    o.inetd = m.opt_present("inetd");
    o.inetd_wait = m.opt_present("inetd-wait");
    if o.inetd && o.inetd_wait {
        return Err("--inetd and --inetd-wait are exclusive".into());
    }
    o.idle_timeout = num(m, "idle-timeout", o.idle_timeout)?;
    if o.idle_timeout > 0 && o.inetd {
        // A standalone server is checked once its listeners are known (systemd may pass them).
        return Err(
            "-t/--idle-timeout needs -W/--inetd-wait: -I serves one connection and exits".into(),
        );
    }
    identity_options(m, o)?;
    o.shutdown_grace = num(m, "shutdown-grace", o.shutdown_grace)?;
    proxy_options(m, o)
}

/// `--proxy-protocol` and its `--trusted-proxy` blocks (every value counts, not the last).
fn proxy_options(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    o.proxy_protocol = m.opt_present("proxy-protocol");
    for v in m.opt_strs("trusted-proxy") {
        for c in v.split(',').filter(|c| !c.trim().is_empty()) {
            let cidr = c
                .parse()
                .map_err(|e| format!("argument --trusted-proxy: {e}"))?;
            o.trusted_proxies.push(cidr);
        }
    }
    match (o.proxy_protocol, o.trusted_proxies.is_empty()) {
        (true, true) => Err(
            "--proxy-protocol needs --trusted-proxy ADDRESS[/PREFIX]: the balancers whose \
             headers are believed"
                .into(),
        ),
        (false, false) => Err("--trusted-proxy requires --proxy-protocol".into()),
        _ => Ok(()),
    }
}

/// `--concurrency` and `--workers`.
fn concurrency(m: &getopts::Matches) -> Result<Executor, String> {
    let model = value(m, "concurrency");
    let pre_fork = matches!(model.as_deref(), Some("pre-fork") | Some("prefork"));
    if m.opt_present("workers") && !pre_fork {
        return Err("--workers needs --concurrency pre-fork".into());
    }
    let executor = match model.as_deref() {
        None | Some("pool") | Some("async") => Executor::Pool,
        Some("multi-thread") | Some("thread") => Executor::Thread,
        Some("multi-proc") | Some("fork") => Executor::Fork,
        Some("pre-fork") | Some("prefork") => Executor::PreFork {
            workers: match value(m, "workers") {
                Some(_) => num(m, "workers", 1usize)?,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        },
        Some(other) => {
            return Err(format!(
                "argument --concurrency: invalid choice: {other:?} (choose from 'pool', \
                 'async', 'multi-thread', 'multi-proc', 'pre-fork')"
            ))
        }
    };
    if matches!(executor, Executor::PreFork { workers: 0 }) {
        return Err("argument --workers: must be at least 1".into());
    }
    Ok(executor)
}

/// Who the server runs as and whose files it serves: `--user`, `--unix-users`,
/// `--chroot-local-user`, `--umask`, `--atomic-uploads`, `--users-db`.
fn identity_options(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    o.run_as = value(m, "user");
    o.unix_users = m.opt_present("unix-users");
    if o.run_as.is_some() && o.unix_users {
        return Err(
            "--user and --unix-users are exclusive (Unix users need root to become themselves)"
                .into(),
        );
    }
    o.chroot_local_user = m.opt_present("chroot-local-user");
    if o.chroot_local_user && !o.unix_users {
        return Err("--chroot-local-user requires --unix-users".into());
    }
    if let Some(s) = value(m, "umask") {
        o.umask = u32::from_str_radix(s.trim(), 8)
            .ok()
            .filter(|&u| u <= 0o777)
            .ok_or_else(|| format!("argument --umask: not an octal mask up to 777: {s:?}"))?;
    }
    o.atomic_uploads = m.opt_present("atomic-uploads");
    o.users_db = value(m, "users-db");
    if o.users_db.is_some() && (m.opt_present("u") || o.unix_users || o.write) {
        return Err(
            "--users-db excludes -u/-P, -w and --unix-users (users and permissions come from \
             the database)"
                .into(),
        );
    }
    Ok(())
}

/// Timeouts, connection counts and rates.
fn limits(m: &getopts::Matches, o: &mut Options) -> Result<(), String> {
    o.timeout = num(m, "timeout", o.timeout)?;
    o.login_timeout = num(m, "login-timeout", o.login_timeout)?;
    o.max_cons = num(m, "max-cons", o.max_cons)?;
    o.max_cons_per_ip = num(m, "max-cons-per-ip", o.max_cons_per_ip)?;
    o.max_login_attempts = num(m, "max-login-attempts", o.max_login_attempts)?;
    o.ban_failures = num(m, "ban-failures", o.ban_failures)?;
    o.ban_find_time = num(m, "ban-find-time", o.ban_find_time)?;
    o.ban_time = num(m, "ban-time", o.ban_time)?;
    o.read_limit = rate(m, "read-limit")?;
    o.write_limit = rate(m, "write-limit")?;
    o.user_read_limit = rate(m, "user-read-limit")?;
    o.user_write_limit = rate(m, "user-write-limit")?;
    o.max_read_rate = rate(m, "max-read-rate")?;
    o.max_write_rate = rate(m, "max-write-rate")?;
    Ok(())
}
