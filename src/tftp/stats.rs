//! Server and session statistics (fbtftp's `ServerStats` with `get_and_reset_all_counters`
//! and `SessionStats`), handed to `server_stats_callback` and `session_stats_callback`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::packet::Mode;
use crate::shm::{SharedArray, ZeroedAtomics};

/// Number of error codes counted separately (RFC 1350 codes 0–7, RFC 2347 code 8).
pub const ERROR_CODES: usize = 9;

/// A snapshot of the server counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sessions started (requests that passed the rate limit and session cap).
    pub sessions_started: u64,
    /// Sessions that ended with the whole file transferred.
    pub sessions_finished: u64,
    /// Sessions that ended with an error or a timeout.
    pub sessions_failed: u64,
    /// Requests dropped by the per-source rate limit.
    pub requests_rate_limited: u64,
    /// Requests refused because `max_sessions` sessions were running.
    pub requests_over_capacity: u64,
    /// Datagrams on the server port that were not valid requests.
    pub bad_packets: u64,
    /// Payload bytes sent in DATA packets (retransmissions included).
    pub bytes_sent: u64,
    /// Payload bytes received in DATA packets (write requests).
    pub bytes_received: u64,
    /// Packets sent by sessions (DATA, OACK, ACK, ERROR).
    pub packets_sent: u64,
    /// Packets received by sessions.
    pub packets_received: u64,
    /// Packets sent again after a timeout.
    pub retransmits: u64,
    /// ERROR packets sent, by code (index = code; unknown codes count as 0).
    pub errors_by_code: [u64; ERROR_CODES],
}

impl Counters {
    /// What was counted since `earlier`, a previous reading of the same counters.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut errors = [0u64; ERROR_CODES];
        for ((out, now), then) in errors
            .iter_mut()
            .zip(&self.errors_by_code)
            .zip(&earlier.errors_by_code)
        {
            *out = now.saturating_sub(*then);
        }
        Counters {
            sessions_started: self
                .sessions_started
                .saturating_sub(earlier.sessions_started),
            sessions_finished: self
                .sessions_finished
                .saturating_sub(earlier.sessions_finished),
            sessions_failed: self.sessions_failed.saturating_sub(earlier.sessions_failed),
            requests_rate_limited: self
                .requests_rate_limited
                .saturating_sub(earlier.requests_rate_limited),
            requests_over_capacity: self
                .requests_over_capacity
                .saturating_sub(earlier.requests_over_capacity),
            bad_packets: self.bad_packets.saturating_sub(earlier.bad_packets),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            packets_sent: self.packets_sent.saturating_sub(earlier.packets_sent),
            packets_received: self
                .packets_received
                .saturating_sub(earlier.packets_received),
            retransmits: self.retransmits.saturating_sub(earlier.retransmits),
            errors_by_code: errors,
        }
    }
}

/// Live server counters, shared by the acceptor and the sessions (fbtftp `ServerStats`).
///
/// They sit in an anonymous shared mapping made with the server, before any fork (see
/// `crate::shm`): in `--fork` mode a session runs in a child process and counts its bytes,
/// packets and outcome into the same memory the parent reads.
pub struct ServerStats {
    mem: SharedArray<Live>,
    /// How often the server calls `server_stats_callback`.
    pub interval: Duration,
}

/// The live counters behind [`ServerStats`], in shared memory (all zero when mapped); read
/// them with [`ServerStats::get_all_counters`].
#[repr(C)]
#[derive(Default)]
pub struct Live {
    pub(crate) sessions_started: AtomicU64,
    pub(crate) sessions_finished: AtomicU64,
    pub(crate) sessions_failed: AtomicU64,
    pub(crate) requests_rate_limited: AtomicU64,
    pub(crate) requests_over_capacity: AtomicU64,
    pub(crate) bad_packets: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) packets_sent: AtomicU64,
    pub(crate) packets_received: AtomicU64,
    pub(crate) retransmits: AtomicU64,
    pub(crate) errors_by_code: [AtomicU64; ERROR_CODES],
    /// Sessions running now (a gauge, never reset): the acceptor's threads or children.
    pub(crate) sessions_active: AtomicU64,
}

// SAFETY: `repr(C)`, only atomic integers and an array of them (alignment 8), valid when
// zeroed.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Live {}

impl std::ops::Deref for ServerStats {
    type Target = Live;
    fn deref(&self) -> &Live {
        &self.mem[0]
    }
}

impl Default for ServerStats {
    fn default() -> ServerStats {
        ServerStats::new(Duration::ZERO)
    }
}

impl std::fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStats")
            .field("counters", &self.get_all_counters())
            .field("interval", &self.interval)
            .finish()
    }
}

fn take(c: &AtomicU64, reset: bool) -> u64 {
    if reset {
        c.swap(0, Ordering::Relaxed)
    } else {
        c.load(Ordering::Relaxed)
    }
}

impl ServerStats {
    /// New zeroed counters for a server reporting every `interval`, in memory that
    /// processes forked later share.
    pub fn new(interval: Duration) -> Self {
        ServerStats {
            mem: SharedArray::new(1, "TFTP server counters"),
            interval,
        }
    }

    fn snapshot(&self, reset: bool) -> Counters {
        let mut errors = [0u64; ERROR_CODES];
        for (out, c) in errors.iter_mut().zip(&self.errors_by_code) {
            *out = take(c, reset);
        }
        Counters {
            sessions_started: take(&self.sessions_started, reset),
            sessions_finished: take(&self.sessions_finished, reset),
            sessions_failed: take(&self.sessions_failed, reset),
            requests_rate_limited: take(&self.requests_rate_limited, reset),
            requests_over_capacity: take(&self.requests_over_capacity, reset),
            bad_packets: take(&self.bad_packets, reset),
            bytes_sent: take(&self.bytes_sent, reset),
            bytes_received: take(&self.bytes_received, reset),
            packets_sent: take(&self.packets_sent, reset),
            packets_received: take(&self.packets_received, reset),
            retransmits: take(&self.retransmits, reset),
            errors_by_code: errors,
        }
    }

    /// Sessions running now, on threads or in forked children.
    pub fn active_sessions(&self) -> u64 {
        self.sessions_active.load(Ordering::Relaxed)
    }

    /// The counters as they are now.
    pub fn get_all_counters(&self) -> Counters {
        self.snapshot(false)
    }

    /// The counters, each reset to zero as it is read (fbtftp `get_and_reset_all_counters`).
    pub fn get_and_reset_all_counters(&self) -> Counters {
        self.snapshot(true)
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn error_sent(&self, code: u16) {
        let i = usize::from(code);
        let i = if i < ERROR_CODES { i } else { 0 };
        Self::add(&self.errors_by_code[i], 1);
    }

    /// Folds a finished session into the counters.
    pub(crate) fn session_done(&self, s: &SessionStats) {
        Self::add(&self.bytes_sent, s.bytes_sent);
        Self::add(&self.bytes_received, s.bytes_received);
        Self::add(&self.packets_sent, s.packets_sent);
        Self::add(&self.packets_received, s.packets_received);
        Self::add(&self.retransmits, s.retransmits);
        if let Some((code, _)) = &s.error_sent {
            self.error_sent(*code);
        }
        self.session_result(s.error.is_none());
    }

    pub(crate) fn session_result(&self, ok: bool) {
        if ok {
            Self::add(&self.sessions_finished, 1);
        } else {
            Self::add(&self.sessions_failed, 1);
        }
    }
}

/// What one session did, handed to `TftpHandler::session_stats_callback` when it ends
/// (fbtftp `SessionStats`).
#[derive(Debug, Clone)]
pub struct SessionStats {
    /// The client's address and port (its TID).
    pub peer: SocketAddr,
    /// The server address the request arrived at.
    pub server_addr: SocketAddr,
    /// The file name as requested.
    pub file_path: String,
    /// True for a write request.
    pub write: bool,
    /// The transfer mode.
    pub mode: Mode,
    /// The options the client asked for.
    pub options: Vec<(String, String)>,
    /// The options the server acknowledged (empty without OACK).
    pub negotiated: Vec<(String, String)>,
    /// Block size used.
    pub blksize: usize,
    /// Window size used.
    pub windowsize: u16,
    /// When the request arrived.
    pub start_time: SystemTime,
    /// How long the session lasted.
    pub duration: Duration,
    /// Payload bytes sent (retransmissions included).
    pub bytes_sent: u64,
    /// Payload bytes received (write requests).
    pub bytes_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets received from the peer.
    pub packets_received: u64,
    /// Packets sent again after a timeout.
    pub retransmits: u64,
    /// Highest block number (sequence, not wrapped) acknowledged or received.
    pub blocks: u64,
    /// Why the session failed, `None` on success.
    pub error: Option<String>,
    /// The ERROR packet we sent, if any (code, message).
    pub error_sent: Option<(u16, String)>,
}

impl SessionStats {
    pub(crate) fn new(peer: SocketAddr, server_addr: SocketAddr, req: &super::Request) -> Self {
        SessionStats {
            peer,
            server_addr,
            file_path: req.filename.clone(),
            write: req.write,
            mode: req.mode,
            options: req.options.clone(),
            negotiated: Vec::new(),
            blksize: super::options::DEFAULT_BLKSIZE,
            windowsize: 1,
            start_time: SystemTime::now(),
            duration: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
            packets_sent: 0,
            packets_received: 0,
            retransmits: 0,
            blocks: 0,
            error: None,
            error_sent: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_reset() {
        let s = ServerStats::new(Duration::from_secs(60));
        ServerStats::add(&s.sessions_started, 2);
        s.error_sent(5);
        s.error_sent(77);
        let c = s.get_all_counters();
        assert_eq!(c.sessions_started, 2);
        assert_eq!(c.errors_by_code[5], 1);
        assert_eq!(c.errors_by_code[0], 1);
        assert_eq!(s.get_and_reset_all_counters(), c);
        assert_eq!(s.get_all_counters(), Counters::default());
    }
}
