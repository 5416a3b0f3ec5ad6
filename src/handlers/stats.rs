//! Statistics of FTP sessions, as fbtftp keeps them for TFTP (`SessionStats`,
//! `ServerStats`): what one session did ([`SessionStats`], handed to
//! [`Callbacks::on_session_end`](super::Callbacks::on_session_end) once, when it ends), what
//! one file transfer did ([`TransferStats`], to
//! [`Callbacks::on_transfer_end`](super::Callbacks::on_transfer_end) and the xferlog), and
//! the server's live counters ([`Counters`]), which every session of a server adds to.
//!
//! The counters sit in an anonymous shared mapping (shm.rs) that the server makes before it
//! forks, like the admission table and the rate buckets: the sessions of forked children
//! (`Fork`) and of pre-forked workers (`PreFork`) count into the same memory as threads do,
//! so the parent reads exact totals under every concurrency model. A session reaches them
//! through its [`SessionContext`](super::SessionContext), never through a static.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::shm::{SharedArray, ZeroedAtomics};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// The client sent QUIT.
    Quit,
    /// The idle, login or data timeout ran out.
    Timeout,
    /// The client closed the control connection (or it failed) without QUIT.
    ClientClosed,
    /// The server shut down or closed the session (`close_all`, a stop signal).
    ServerShutdown,
    /// A limit closed it: too many failed logins, a banned address, an HTTP request on the
    /// control connection.
    Limit,
    /// A local error ended it (a failed TLS handshake, a panic).
    Error,
}

impl SessionEnd {
    /// Every way a session ends, in the order of the counters.
    pub const ALL: [SessionEnd; 6] = [
        SessionEnd::Quit,
        SessionEnd::Timeout,
        SessionEnd::ClientClosed,
        SessionEnd::ServerShutdown,
        SessionEnd::Limit,
        SessionEnd::Error,
    ];

    /// The label metrics and logs use: `quit`, `timeout`, `client_closed`,
    /// `server_shutdown`, `limit`, `error`.
    pub fn name(self) -> &'static str {
        match self {
            SessionEnd::Quit => "quit",
            SessionEnd::Timeout => "timeout",
            SessionEnd::ClientClosed => "client_closed",
            SessionEnd::ServerShutdown => "server_shutdown",
            SessionEnd::Limit => "limit",
            SessionEnd::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The TLS of a control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version (`TLSv1_3`).
    pub version: String,
    /// The cipher suite (`TLS13_AES_256_GCM_SHA384`).
    pub cipher: String,
}

/// What one session did, delivered once when it ends (fbtftp's `SessionStats`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionStats {
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address of the connection.
    pub local: SocketAddr,
    /// The last user who logged in during the session, if any.
    pub user: Option<String>,
    /// When the client connected.
    pub start_time: SystemTime,
    /// How long the session lasted.
    pub duration: Duration,
    /// Command lines received.
    pub commands: u64,
    /// File bytes received (uploads).
    pub bytes_received: u64,
    /// File bytes sent (downloads).
    pub bytes_sent: u64,
    /// Uploads completed.
    pub files_received: u64,
    /// Downloads completed.
    pub files_sent: u64,
    /// File transfers that did not complete (aborted, cut, failed).
    pub failed_transfers: u64,
    /// The control connection's TLS, if it was secured (the last handshake; none after CCC
    /// is still the TLS it had).
    pub tls: Option<TlsInfo>,
    /// How it ended.
    pub end: SessionEnd,
}

/// How a file transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferResult {
    /// Every byte moved.
    Complete,
    /// ABOR.
    Aborted,
    /// Cut short: the client closed the data connection, a timeout, a local error, the
    /// control connection gone.
    Failed,
}

impl TransferResult {
    /// Every result, in the order of the counters.
    pub const ALL: [TransferResult; 3] = [
        TransferResult::Complete,
        TransferResult::Aborted,
        TransferResult::Failed,
    ];

    /// The metrics label: `complete`, `aborted`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            TransferResult::Complete => "complete",
            TransferResult::Aborted => "aborted",
            TransferResult::Failed => "failed",
        }
    }
}

/// What one file transfer did (RETR, STOR, APPE, STOU), delivered when it ends, complete
/// or not: one xferlog line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransferStats {
    /// The verb (`RETR`).
    pub command: String,
    /// The logged-in user.
    pub user: String,
    /// For the anonymous user, the password given (by custom an e-mail address: xferlog's
    /// "identification string"); `None` for other users.
    pub anonymous_id: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The file's virtual path (as the client sees it).
    pub vpath: PathBuf,
    /// The file on the host.
    pub path: PathBuf,
    /// True for an upload.
    pub upload: bool,
    /// ASCII mode (`TYPE A`).
    pub ascii: bool,
    /// Bytes moved.
    pub bytes: u64,
    /// From the data connection's opening to the transfer's end.
    pub duration: Duration,
    /// How it ended.
    pub result: TransferResult,
    /// The control connection was TLS.
    pub tls: bool,
}

/// The upper bounds, in seconds, of the buckets of the duration histograms (login and
/// transfer): from a millisecond (a local login) to five minutes (a large file).
pub const DURATION_BUCKETS: [f64; 10] =
    [0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0];

/// A histogram of durations in shared memory: a count per bucket (not cumulative; the last
/// one is `+Inf`), the count and the sum in microseconds.
#[repr(C)]
#[derive(Default)]
struct Hist {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Hist {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Histogram {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut n = 0;
        for b in &self.buckets {
            n += b.load(Ordering::Relaxed);
            cumulative.push(n);
        }
        Histogram {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram as read: cumulative counts per bucket of [`DURATION_BUCKETS`] plus `+Inf`
/// (the Prometheus shape), the count and the sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations at most each bound of [`DURATION_BUCKETS`], then all (`+Inf`).
    pub cumulative: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

/// The counters in shared memory (all zero when mapped).
#[repr(C)]
#[derive(Default)]
struct Raw {
    sessions: AtomicU64,
    ends: [AtomicU64; 6],
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    /// Sessions closed after `max_login_attempts` failed logins.
    login_attempts_exceeded: AtomicU64,
    commands: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    /// `[download, upload][result]`.
    transfers: [[AtomicU64; 3]; 2],
    login_time: Hist,
    /// `[download, upload]`.
    transfer_time: [Hist; 2],
}

// SAFETY: `repr(C)`, made only of atomic integers and arrays and structs of them
// (alignment 8), for which all-zero bytes are valid.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Raw {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Hist {}

/// The live counters of a server's sessions, shared by every thread and every process the
/// server forks (made before the fork: see the module docs). Sessions add to them; the
/// server reads them ([`totals`](Self::totals)) for its stats callback and its metrics.
pub struct Counters {
    mem: SharedArray<Raw>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters::new()
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("process_shared", &self.mem.is_process_shared())
            .finish_non_exhaustive()
    }
}

impl Counters {
    /// Zeroed counters in a new shared mapping (ordinary memory, with a warning, should
    /// mmap(2) fail: then they hold for this process only). Make them before forking.
    pub fn new() -> Counters {
        Counters {
            mem: SharedArray::new(1, "session counters"),
        }
    }

    fn raw(&self) -> &Raw {
        &self.mem[0]
    }

    /// A session started.
    pub(crate) fn session_started(&self) {
        self.raw().sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended.
    pub(crate) fn session_ended(&self, end: SessionEnd) {
        self.raw().ends[end.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A command line was dispatched.
    pub(crate) fn command(&self) {
        self.raw().commands.fetch_add(1, Ordering::Relaxed);
    }

    /// A login succeeded after `took` (from PASS to the 230).
    pub(crate) fn login_ok(&self, took: Duration) {
        self.raw().logins_ok.fetch_add(1, Ordering::Relaxed);
        self.raw().login_time.observe(took);
    }

    /// A login failed; `closed` when the session is closed for it (`max_login_attempts`).
    pub(crate) fn login_failed(&self, closed: bool) {
        self.raw().logins_failed.fetch_add(1, Ordering::Relaxed);
        if closed {
            self.raw()
                .login_attempts_exceeded
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A file transfer ended.
    pub(crate) fn transfer(&self, t: &TransferStats) {
        let r = self.raw();
        let dir = usize::from(t.upload);
        let result = TransferResult::ALL
            .iter()
            .position(|x| *x == t.result)
            .unwrap_or(2);
        r.transfers[dir][result].fetch_add(1, Ordering::Relaxed);
        let bytes = if t.upload {
            &r.bytes_received
        } else {
            &r.bytes_sent
        };
        bytes.fetch_add(t.bytes, Ordering::Relaxed);
        r.transfer_time[dir].observe(t.duration);
    }

    /// The counters as they are now.
    pub fn totals(&self) -> Totals {
        let r = self.raw();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let by_result = |d: usize| {
            let mut out = [0; 3];
            for (o, c) in out.iter_mut().zip(&r.transfers[d]) {
                *o = load(c);
            }
            out
        };
        let mut ends = [0; 6];
        for (o, c) in ends.iter_mut().zip(&r.ends) {
            *o = load(c);
        }
        Totals {
            sessions: load(&r.sessions),
            session_ends: ends,
            logins: load(&r.logins_ok),
            failed_logins: load(&r.logins_failed),
            login_attempts_exceeded: load(&r.login_attempts_exceeded),
            commands: load(&r.commands),
            bytes_received: load(&r.bytes_received),
            bytes_sent: load(&r.bytes_sent),
            downloads: by_result(0),
            uploads: by_result(1),
            login_time: r.login_time.snapshot(),
            download_time: r.transfer_time[0].snapshot(),
            upload_time: r.transfer_time[1].snapshot(),
        }
    }
}

/// The session counters of a server as read at one moment (every count since the server
/// started).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Sessions started.
    pub sessions: u64,
    /// Sessions ended, by [`SessionEnd`] (in the order of [`SessionEnd::ALL`]).
    pub session_ends: [u64; 6],
    /// Successful logins.
    pub logins: u64,
    /// Refused logins.
    pub failed_logins: u64,
    /// Sessions closed after `max_login_attempts` refused logins.
    pub login_attempts_exceeded: u64,
    /// Command lines dispatched.
    pub commands: u64,
    /// File bytes received (uploads, complete or not).
    pub bytes_received: u64,
    /// File bytes sent (downloads, complete or not).
    pub bytes_sent: u64,
    /// Downloads by [`TransferResult`] (in the order of [`TransferResult::ALL`]).
    pub downloads: [u64; 3],
    /// Uploads by [`TransferResult`].
    pub uploads: [u64; 3],
    /// Login durations (PASS to 230).
    pub login_time: Histogram,
    /// Download durations.
    pub download_time: Histogram,
    /// Upload durations.
    pub upload_time: Histogram,
}

impl Totals {
    /// Sessions that ended `end`.
    pub fn ended(&self, end: SessionEnd) -> u64 {
        self.session_ends[end.index()]
    }
}

/// What a session tallies about itself until it ends (its part of [`SessionStats`]).
pub(crate) struct Tally {
    pub(crate) start_time: SystemTime,
    pub(crate) started: Instant,
    pub(crate) user: Option<String>,
    pub(crate) commands: u64,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) files_received: u64,
    pub(crate) files_sent: u64,
    pub(crate) failed_transfers: u64,
    pub(crate) tls: Option<TlsInfo>,
    /// The first reason the session was given to end.
    pub(crate) end: Option<SessionEnd>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            start_time: SystemTime::now(),
            started: Instant::now(),
            user: None,
            commands: 0,
            bytes_received: 0,
            bytes_sent: 0,
            files_received: 0,
            files_sent: 0,
            failed_transfers: 0,
            tls: None,
            end: None,
        }
    }

    /// Records why the session ends, unless a reason was given already.
    pub(crate) fn ending(&mut self, end: SessionEnd) {
        self.end.get_or_insert(end);
    }

    /// Adds a finished file transfer.
    pub(crate) fn transfer(&mut self, t: &TransferStats) {
        let complete = t.result == TransferResult::Complete;
        if t.upload {
            self.bytes_received += t.bytes;
            self.files_received += u64::from(complete);
        } else {
            self.bytes_sent += t.bytes;
            self.files_sent += u64::from(complete);
        }
        self.failed_transfers += u64::from(!complete);
    }

    /// The session's stats, as it ends.
    pub(crate) fn finish(&self, peer: SocketAddr, local: SocketAddr) -> SessionStats {
        SessionStats {
            peer,
            local,
            user: self.user.clone(),
            start_time: self.start_time,
            duration: self.started.elapsed(),
            commands: self.commands,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            files_received: self.files_received,
            files_sent: self.files_sent,
            failed_transfers: self.failed_transfers,
            tls: self.tls.clone(),
            end: self.end.unwrap_or(SessionEnd::ClientClosed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(upload: bool, result: TransferResult, bytes: u64, ms: u64) -> TransferStats {
        TransferStats {
            command: "RETR".into(),
            user: "u".into(),
            anonymous_id: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            vpath: "/f".into(),
            path: "/tmp/f".into(),
            upload,
            ascii: false,
            bytes,
            duration: Duration::from_millis(ms),
            result,
            tls: false,
        }
    }

    #[test]
    fn counters_add_up_and_histograms_are_cumulative() {
        let c = Counters::new();
        c.session_started();
        c.command();
        c.command();
        c.login_ok(Duration::from_micros(700));
        c.login_failed(true);
        c.transfer(&transfer(false, TransferResult::Complete, 10, 2));
        c.transfer(&transfer(true, TransferResult::Aborted, 5, 20_000));
        c.session_ended(SessionEnd::Quit);
        let t = c.totals();
        assert_eq!(
            (t.sessions, t.commands, t.logins, t.failed_logins),
            (1, 2, 1, 1)
        );
        assert_eq!(t.login_attempts_exceeded, 1);
        assert_eq!((t.bytes_sent, t.bytes_received), (10, 5));
        assert_eq!(t.downloads, [1, 0, 0]);
        assert_eq!(t.uploads, [0, 1, 0]);
        assert_eq!(t.ended(SessionEnd::Quit), 1);
        assert_eq!(t.login_time.cumulative[0], 1, "0.7 ms is within 1 ms");
        assert_eq!(t.login_time.cumulative.len(), DURATION_BUCKETS.len() + 1);
        assert!(t.login_time.cumulative.iter().all(|n| *n == 1));
        // 20 s: above 10 s, within 60 s.
        let up = &t.upload_time;
        assert_eq!(up.cumulative[7], 0);
        assert_eq!(up.cumulative[8], 1);
        assert_eq!(up.sum, Duration::from_secs(20));
    }

    #[test]
    fn the_first_reason_to_end_wins() {
        let mut t = Tally::new();
        t.ending(SessionEnd::Quit);
        t.ending(SessionEnd::ClientClosed);
        let s = t.finish(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert_eq!(s.end, SessionEnd::Quit);
    }
}
