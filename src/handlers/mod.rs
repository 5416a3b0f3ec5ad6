//! The protocol handler: [`FtpHandler`] (the configuration, pyftpdlib `FTPHandler`'s class
//! attributes with the same defaults), the [`Callbacks`] trait (the `on_*` hooks) and the
//! command table ([`Command`], pyftpdlib `proto_cmds`). A [`Session`] runs one connection,
//! in the [`SessionContext`] its server gives it.
//!
//! Inside: `session/` (the session as three parts and the loop that drives it), `table.rs`
//! (the command table's columns), `commands/` (one function per command), `dtp/` (moving
//! bytes: transfer loops, TLS stream, throttle), `rates.rs` (rate limits by scope and the
//! shared buckets), `context.rs` (what the server hands a session), `stats.rs` (session and
//! transfer stats, the server's shared counters), `xferlog.rs` (the transfer log), `tls.rs`
//! (FTPS configuration). handlers/ imports nothing from servers/: the server side builds the
//! context and calls in.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::authorizers::Authorizer;
use crate::filesystems::{Filesystem, OsFilesystem};
use crate::proxy_protocol::ProxyProtocol;

mod commands;
mod context;
pub(crate) mod dtp;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod rates;
mod session;
pub mod stats;
mod table;
#[cfg(feature = "tls")]
mod tls;
// Without the `tls` feature: the same names, none of which can be made (see the file).
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
pub mod xferlog;

pub use context::{AdmissionHooks, BanRules, DrainToken, ProcessKind, SessionContext, Wakeups};
#[cfg(feature = "fuzzing")]
pub(crate) use session::memory;
pub use session::Session;
pub use table::{
    Arg, Audit, Busy, Channel, Command, CommandFn, CommandTable, Creates, Login, PathArg, Request,
    Telnet, Tls,
};
pub use tls::TlsConfig;

/// Rate limits shared by a user's sessions or by a whole server: the table of shared
/// buckets a server makes before it forks ([`RateTable`](throttle::RateTable)). The
/// limits themselves are [`FtpHandler`]'s `*_limit` and `max_*_rate` fields.
pub mod throttle {
    pub use super::rates::{RateTable, DEFAULT_USER_SLOTS};
}

/// The events of a session (pyftpdlib's `on_*` methods). One value per connection, built by
/// [`FtpHandler::callbacks`], so `&mut self` needs no lock; a method may block (a database
/// call) without stalling any other session. Every method defaults to doing nothing.
///
/// # Example
///
/// An audit trail: one line per login and per transfer, with who, what, how much and how
/// long. Here the lines go to a shared `Vec`; a real one would write a file or a table.
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use ftpdlib::authorizers::DummyAuthorizer;
/// use ftpdlib::handlers::stats::{TransferResult, TransferStats};
/// use ftpdlib::handlers::{Callbacks, FtpHandler};
///
/// struct Audit {
///     peer: Option<std::net::SocketAddr>,
///     trail: Arc<Mutex<Vec<String>>>,
/// }
///
/// impl Audit {
///     fn note(&self, line: String) {
///         self.trail.lock().unwrap_or_else(|e| e.into_inner()).push(line);
///     }
/// }
///
/// impl Callbacks for Audit {
///     fn on_connect(&mut self, peer: std::net::SocketAddr) {
///         self.peer = Some(peer);
///     }
///     fn on_login(&mut self, user: &str) {
///         self.note(format!("{user} logged in from {:?}", self.peer));
///     }
///     fn on_login_failed(&mut self, user: &str, _password: &str) {
///         self.note(format!("failed login as {user} from {:?}", self.peer));
///     }
///     fn on_transfer_end(&mut self, t: &TransferStats) {
///         self.note(format!(
///             "{} {} {}: {} bytes in {:?}{}",
///             t.user,
///             if t.upload { "uploaded" } else { "downloaded" },
///             t.path.display(),
///             t.bytes,
///             t.duration,
///             if t.result == TransferResult::Complete { "" } else { " (cut short)" },
///         ));
///     }
/// }
///
/// let trail = Arc::new(Mutex::new(Vec::new()));
/// let mut handler = FtpHandler::new(Arc::new(DummyAuthorizer::new()));
/// // One `Audit` per connection; they share the trail.
/// let shared = trail.clone();
/// handler.set_callbacks(move || Audit { peer: None, trail: shared.clone() });
/// # let mut a = (handler.callbacks)();
/// # a.on_login("alice");
/// # assert_eq!(trail.lock().unwrap()[0], "alice logged in from None");
/// ```
///
/// For the simple case, override the path-only methods pyftpdlib has (`on_file_sent`,
/// `on_file_received` and their `on_incomplete_*` twins) instead of
/// [`on_transfer_end`](Self::on_transfer_end).
pub trait Callbacks: Send {
    /// A client connected (after the 220 banner was sent).
    fn on_connect(&mut self, _peer: SocketAddr) {}
    /// The connection closed.
    fn on_disconnect(&mut self) {}
    /// A user logged in.
    fn on_login(&mut self, _username: &str) {}
    /// A login was refused.
    fn on_login_failed(&mut self, _username: &str, _password: &str) {}
    /// A user logged out (QUIT, REIN, USER again or disconnect).
    fn on_logout(&mut self, _username: &str) {}
    /// A download completed (called by the default [`on_transfer_end`](Self::on_transfer_end)).
    fn on_file_sent(&mut self, _path: &Path) {}
    /// An upload completed (called by the default `on_transfer_end`).
    fn on_file_received(&mut self, _path: &Path) {}
    /// A download was cut short (called by the default `on_transfer_end`).
    fn on_incomplete_file_sent(&mut self, _path: &Path) {}
    /// An upload was cut short; the partial file stays where it is (with
    /// [`FtpHandler::atomic_uploads`] it was removed and the old file is unchanged). Called
    /// by the default `on_transfer_end`.
    fn on_incomplete_file_received(&mut self, _path: &Path) {}
    /// A file transfer (RETR, STOR, APPE, STOU) ended, complete or not: who moved which file,
    /// how many bytes and how long it took (what an xferlog line says). pyftpdlib passes
    /// only the path; the default calls the path-only method of the four above that fits, so
    /// override either this one (for the details) or those (for the simple case).
    fn on_transfer_end(&mut self, t: &stats::TransferStats) {
        let complete = t.result == stats::TransferResult::Complete;
        match (t.upload, complete) {
            (false, true) => self.on_file_sent(&t.path),
            (false, false) => self.on_incomplete_file_sent(&t.path),
            (true, true) => self.on_file_received(&t.path),
            (true, false) => self.on_incomplete_file_received(&t.path),
        }
    }
    /// The session ended: everything it did, once, after `on_disconnect` (fbtftp's
    /// `session_stats_callback`).
    fn on_session_end(&mut self, _stats: &stats::SessionStats) {}
}

/// Callbacks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCallbacks;
impl Callbacks for NoCallbacks {}

/// Builds the callbacks of a new connection.
pub type CallbacksFactory = Arc<dyn Fn() -> Box<dyn Callbacks> + Send + Sync>;

/// Builds the filesystem of a session at login, from the user's name and the real directory
/// that is the session's root (the home, or [`FtpHandler::root_dir`]). The filesystem then
/// receives virtual paths only (see [`filesystems`](crate::filesystems)).
pub type FilesystemFactory =
    Arc<dyn Fn(&str, &Path) -> io::Result<Box<dyn Filesystem>> + Send + Sync>;

/// The default filesystem factory: an [`OsFilesystem`] beneath each session's root, the
/// root directory's descriptor shared by the sessions that have the same root, so an idle
/// session holds one descriptor (its control connection).
fn os_filesystems() -> FilesystemFactory {
    let roots = Arc::new(crate::beneath::RootCache::default());
    Arc::new(move |_, root| {
        let root = crate::beneath::RootDir::open_shared(root, &roots)?;
        Ok(Box::new(OsFilesystem::with_root(root)))
    })
}

/// Encodings for names on the wire. The filesystem side is always the raw bytes the OS uses
/// (UTF-8 on any modern system).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (RFC 2640); bytes that are not UTF-8 pass through unchanged, both ways.
    Utf8,
    /// ISO-8859-1 on the wire, transcoded to UTF-8 for the filesystem.
    Latin1,
}

impl Encoding {
    /// Parses an encoding name as Python spells it (`utf8`, `utf-8`, `latin-1`, `iso-8859-1`).
    pub fn parse(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf8" | "utf-8" => Some(Encoding::Utf8),
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => Some(Encoding::Latin1),
            _ => None,
        }
    }

    /// Wire bytes → filesystem bytes.
    pub fn decode(self, wire: &[u8]) -> Vec<u8> {
        match self {
            Encoding::Utf8 => wire.to_vec(),
            Encoding::Latin1 => wire
                .iter()
                .map(|&b| b as char)
                .collect::<String>()
                .into_bytes(),
        }
    }

    /// Filesystem bytes → wire bytes.
    pub fn encode(self, fs: &[u8]) -> Vec<u8> {
        match self {
            Encoding::Utf8 => fs.to_vec(),
            Encoding::Latin1 => match std::str::from_utf8(fs) {
                Ok(s) => s
                    .chars()
                    .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' })
                    .collect(),
                Err(_) => fs.to_vec(),
            },
        }
    }
}

/// The configuration of every session a server runs (pyftpdlib `FTPHandler` attributes, with
/// pyftpdlib's names and defaults). Build it with [`FtpHandler::new`], then set fields. A
/// plain value: it holds no live state (the shared rate buckets, the admission table and
/// the drain flag are the server's, handed to each session in its [`SessionContext`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct FtpHandler {
    /// Who may log in. Required.
    pub authorizer: Arc<dyn Authorizer>,
    /// The 220 greeting. Default: `"ftpdlib <version> ready."`.
    pub banner: String,
    /// Idle timeout of the control connection, counted from the end of the last complete
    /// command: bytes that never make a whole line do not reset it (a client dribbling one
    /// byte at a time is closed with 421 like an idle one). `None` disables it.
    /// Default: 300 s.
    pub timeout: Option<Duration>,
    /// How long a connection may stay without logging in, from connect (or REIN) to a
    /// successful PASS, however busy it keeps itself; then `421 Login timed out.` and the
    /// connection closes (ProFTPD's `TimeoutLogin`). Implicit FTPS counts its handshake in.
    /// `None` disables it. Default: 60 s.
    pub login_timeout: Option<Duration>,
    /// Stall timeout of a data transfer (pyftpdlib `DTPHandler.timeout`); `None` disables it.
    /// Default: 300 s.
    pub data_timeout: Option<Duration>,
    /// How long a passive listener waits for the client, from PASV/EPSV on (pyftpdlib
    /// `PassiveDTP.timeout`); zero waits for ever. Default: 30 s.
    pub passive_accept_timeout: Duration,
    /// Failed logins before the connection is closed. Default: 3.
    pub max_login_attempts: u32,
    /// Delay before answering a failed login. Default: 3 s.
    pub auth_failed_timeout: Duration,
    /// Allow PORT/EPRT to an address other than the client's and passive connections from
    /// one (FXP). Default: false (RFC 2577 bounce protection).
    pub permit_foreign_addresses: bool,
    /// Allow PORT/EPRT to ports below 1024. Default: false.
    pub permit_privileged_ports: bool,
    /// The IPv4 address sent in PASV replies instead of the local one (NAT). Default: none.
    pub masquerade_address: Option<Ipv4Addr>,
    /// Per-local-address masquerade addresses (pyftpdlib `masquerade_address_map`).
    /// Default: empty.
    pub masquerade_address_map: Vec<(IpAddr, Ipv4Addr)>,
    /// Ports passive listeners use; `None` lets the kernel choose. Default: none.
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Listing and MDTM times in UTC (true) or local time. Default: true.
    pub use_gmt_times: bool,
    /// TCP_NODELAY on the control connection. Default: true.
    pub tcp_no_delay: bool,
    /// Send downloads with sendfile(2) when possible. Default: true.
    pub use_sendfile: bool,
    /// Run a session's thread under `SCHED_BATCH` once the user has logged in, back to
    /// `SCHED_OTHER` when the session ends: a thread woken by its client's data then does
    /// not preempt the process that woke it, which on one host saves a context switch per
    /// exchange and spares curl before 8.4 a 200 ms stall per transfer. A woken session
    /// still runs at once on an idle CPU; on a saturated machine it waits for the running
    /// thread to block or for the scheduler's tick. Linux; the CLI's
    /// `--no-batch-scheduling` turns it off. Default: true.
    pub batch_scheduling: bool,
    /// Wire encoding of names. Default: UTF-8.
    pub encoding: Encoding,
    /// Read size for uploads, bytes (pyftpdlib `ac_in_buffer_size`): one buffer per running
    /// upload, allocated when it starts. Default: 262144 (pyftpdlib uses 65536; a quarter
    /// MiB per read lifts one-client STOR by about a third on loopback).
    pub ac_in_buffer_size: usize,
    /// Send buffer for downloads that cannot use sendfile (pyftpdlib `ac_out_buffer_size`).
    /// Default: 65536.
    pub ac_out_buffer_size: usize,
    /// Longest command line accepted; longer lines get `500 Command too long.`.
    /// Default: 2048.
    pub max_line_length: usize,
    /// Upload rate limit per session, bytes/s (pyftpdlib `ThrottledDTPHandler.read_limit`);
    /// 0 is unlimited. Default: 0.
    pub read_limit: u64,
    /// Download rate limit per session, bytes/s (`ThrottledDTPHandler.write_limit`); 0 is
    /// unlimited. Default: 0.
    pub write_limit: u64,
    /// Upload rate limit shared by all sessions of one user, bytes/s; 0 is unlimited.
    /// Default: 0.
    pub user_read_limit: u64,
    /// Download rate limit shared by all sessions of one user, bytes/s; 0 is unlimited.
    /// Default: 0.
    pub user_write_limit: u64,
    /// Upload rate limit shared by every session of the server, bytes/s; 0 is unlimited.
    /// Default: 0.
    pub max_read_rate: u64,
    /// Download rate limit shared by every session of the server, bytes/s; 0 is unlimited.
    /// The buckets behind `user_*_limit` and `max_*_rate` are live state, so the server
    /// keeps them ([`SessionContext::rates`]), not the handler. Default: 0.
    pub max_write_rate: u64,
    /// Builds the callbacks of each connection. Default: [`NoCallbacks`].
    pub callbacks: CallbacksFactory,
    /// Builds each session's filesystem at login. Default: [`OsFilesystem`] beneath the
    /// session's root (the sessions of one root share its descriptor:
    /// [`RootDir::open_shared`](crate::beneath::RootDir::open_shared)).
    pub filesystem: FilesystemFactory,
    /// The command table; add custom commands with [`FtpHandler::add_command`].
    pub commands: CommandTable,
    /// The virtual root of every session instead of the user's home; the session then
    /// starts in its home below it. `Some("/")` is pyftpdlib's `UnixFilesystem` (the real
    /// filesystem, no jail; see [`FtpHandler::use_unix_filesystem`]). pyftpdlib has no such
    /// attribute: its `UnixFilesystem` subclass roots the session at `/` and starts it in
    /// the home. Here the filesystem is a [`Filesystem`]
    /// that only ever sees virtual paths, so where the root lies is the handler's to say,
    /// for every filesystem alike, and the jail (openat2 beneath the root) stays one code
    /// path. Default: none (the home is the root: a jail).
    pub root_dir: Option<std::path::PathBuf>,
    /// Jail every user in their own home, whatever `root_dir` says (vsftpd's
    /// `chroot_local_user`): with [`FtpHandler::use_unix_filesystem`]
    /// system users then see their home as `/` and nothing else. Default: false
    /// (pyftpdlib: `root_dir` decides).
    pub chroot_local_user: bool,
    /// The umask of uploads and new directories (vsftpd's `local_umask`): a file is created
    /// with `0o666 & !umask` (STOU `0o600 & !umask`), a directory with `0o777 & !umask`; the
    /// process umask applies as well. Whatever the umask, the anonymous user never makes a
    /// file executable (SITE CHMOD with an execute bit on a file is refused), and nobody sets
    /// setuid, setgid or sticky bits. Default: `0o022`.
    pub umask: u32,
    /// FTPS (pyftpdlib `TLS_FTPHandler`): AUTH/PBSZ/PROT/CCC exist only when set. Needs
    /// the `tls` cargo feature (without it no [`TlsConfig`] can be made). Default: none.
    pub tls: Option<TlsConfig>,
    /// Uploads take an exclusive advisory lock (flock(2)) on their file and downloads a
    /// shared one, so two uploads of one name never interleave and a download never reads
    /// a file being written: the one that finds the lock taken gets `450` at once (vsftpd
    /// `lock_upload_files`, which waits instead). Only for files a [`Filesystem`] opens as
    /// real files. Default: true.
    pub lock_upload_files: bool,
    /// Uploads go to a hidden temporary file in the same directory, renamed over the name
    /// only when the upload is complete: readers never see a partial file and a failed or
    /// aborted upload leaves the old file as it was (see the README for APPE, REST and
    /// STOU). Default: false.
    pub atomic_uploads: bool,
    /// Failed logins from one address, counted across all its sessions (and every worker
    /// and child process), after which the address is refused with `421` at connect for
    /// `ban_time` (fail2ban's `maxretry`); 0 turns bans off. Default: 5.
    pub ban_failures: u32,
    /// The window in which `ban_failures` failed logins ban an address (fail2ban's
    /// `findtime`). Default: 600 s.
    pub ban_find_time: Duration,
    /// How long a banned address is refused (fail2ban's `bantime`). Default: 600 s.
    pub ban_time: Duration,
    /// Where each file transfer's line goes in the wu-ftpd xferlog format (vsftpd's
    /// `xferlog_std_format`; see [`xferlog`]). Default: none.
    pub xferlog: Option<Arc<xferlog::XferLog>>,
    /// The PROXY protocol (HAProxy's, versions 1 and 2) on every connection, for a server
    /// behind a TCP load balancer: only the [trusted](ProxyProtocol::trusted) balancers
    /// may connect, each control connection starts with a header naming the client, and
    /// that address is the session's peer from then on (logs, callbacks, per-address
    /// limits and bans, the PORT bounce check, the passive connection check). A passive
    /// data connection from a trusted balancer must carry a header naming the same client;
    /// one from anywhere else is the client's own, checked by its address. Default: none.
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl fmt::Debug for FtpHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpHandler")
            .field("banner", &self.banner)
            .field("timeout", &self.timeout)
            .field("login_timeout", &self.login_timeout)
            .field("masquerade_address", &self.masquerade_address)
            .field("passive_ports", &self.passive_ports)
            .field("proxy_protocol", &self.proxy_protocol)
            .finish_non_exhaustive()
    }
}

impl FtpHandler {
    /// A handler with pyftpdlib's defaults and the given authorizer.
    pub fn new(authorizer: Arc<dyn Authorizer>) -> FtpHandler {
        FtpHandler {
            authorizer,
            banner: format!("ftpdlib {} ready.", env!("CARGO_PKG_VERSION")),
            timeout: Some(Duration::from_secs(300)),
            login_timeout: Some(Duration::from_secs(60)),
            data_timeout: Some(Duration::from_secs(300)),
            passive_accept_timeout: Duration::from_secs(30),
            max_login_attempts: 3,
            auth_failed_timeout: Duration::from_secs(3),
            permit_foreign_addresses: false,
            permit_privileged_ports: false,
            masquerade_address: None,
            masquerade_address_map: Vec::new(),
            passive_ports: None,
            use_gmt_times: true,
            tcp_no_delay: true,
            use_sendfile: true,
            batch_scheduling: true,
            encoding: Encoding::Utf8,
            ac_in_buffer_size: 262144,
            ac_out_buffer_size: 65536,
            max_line_length: 2048,
            read_limit: 0,
            write_limit: 0,
            user_read_limit: 0,
            user_write_limit: 0,
            max_read_rate: 0,
            max_write_rate: 0,
            callbacks: Arc::new(|| Box::new(NoCallbacks)),
            filesystem: os_filesystems(),
            commands: CommandTable::builtin(),
            root_dir: None,
            chroot_local_user: false,
            umask: 0o022,
            tls: None,
            lock_upload_files: true,
            atomic_uploads: false,
            ban_failures: 5,
            ban_find_time: Duration::from_secs(600),
            ban_time: Duration::from_secs(600),
            xferlog: None,
            proxy_protocol: None,
        }
    }

    /// Adds (or replaces) a command, e.g. a `SITE` extension; it shows in HELP/SITE HELP.
    pub fn add_command(&mut self, cmd: Command) {
        self.commands.insert(cmd);
    }

    /// Sets the callbacks factory from a closure.
    pub fn set_callbacks<C: Callbacks + 'static>(
        &mut self,
        make: impl Fn() -> C + Send + Sync + 'static,
    ) {
        self.callbacks = Arc::new(move || Box::new(make()));
    }

    /// Serves the real filesystem, unjailed, as pyftpdlib's `UnixFilesystem` does for
    /// `UnixAuthorizer` users: every session's root is `/` ([`root_dir`](Self::root_dir)),
    /// login lands in the user's home, and files are opened with the session's impersonated
    /// identity, so the kernel decides what each user may touch. Paths are resolved as the
    /// kernel always does (absolute symlinks work), except that /proc "magic" links are never
    /// followed. Setting [`chroot_local_user`](Self::chroot_local_user) as well jails each
    /// user in their home instead (vsftpd's `chroot_local_user`).
    pub fn use_unix_filesystem(&mut self) {
        self.root_dir = Some(std::path::PathBuf::from("/"));
        self.filesystem = os_filesystems();
    }

    /// Checks the configuration once, when a server is built.
    ///
    /// # Errors
    /// A message naming the invalid field.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if let Some(r) = &self.passive_ports {
            if r.start() > r.end() || *r.start() == 0 {
                return Err(crate::Error::Config(format!(
                    "passive_ports: invalid range {}-{}",
                    r.start(),
                    r.end()
                )));
            }
        }
        if self.max_login_attempts == 0 {
            return Err(crate::Error::Config(
                "max_login_attempts must be ≥ 1".into(),
            ));
        }
        if self.ac_in_buffer_size == 0 || self.ac_out_buffer_size == 0 {
            return Err(crate::Error::Config("buffer sizes must be > 0".into()));
        }
        if self.umask > 0o777 {
            return Err(crate::Error::Config(format!(
                "umask {:o} has bits outside 0777",
                self.umask
            )));
        }
        if self.max_line_length < 64 {
            return Err(crate::Error::Config("max_line_length must be ≥ 64".into()));
        }
        if let Some(pp) = &self.proxy_protocol {
            if pp.trusted.is_empty() {
                return Err(crate::Error::Config(
                    "proxy_protocol: no trusted proxy (every connection would be refused)".into(),
                ));
            }
            if pp.timeout.is_zero() {
                return Err(crate::Error::Config(
                    "proxy_protocol: the header timeout must be > 0".into(),
                ));
            }
        }
        Ok(())
    }

    /// The masquerade address for a local address, if any.
    pub(crate) fn masquerade_for(&self, local: IpAddr) -> Option<Ipv4Addr> {
        self.masquerade_address_map
            .iter()
            .find(|(l, _)| *l == local)
            .map(|(_, m)| *m)
            .or(self.masquerade_address)
    }
}
