//! The server's statistics (fbtftp's `ServerStats` for FTP): the sessions' counters
//! ([`Counters`], which the sessions add to), the admission table's refusals, and gauges
//! only the server knows — processes, and pool workers busy and idle in every process —
//! read together as one [`ServerStats`] by the periodic callback
//! ([`FtpServer::server_stats_callback`](super::FtpServer::server_stats_callback)) and by
//! the metrics endpoint. The gauges live in shared memory made before any fork, like the
//! counters: a pre-forked worker reports its pool in its own slot, which the supervisor
//! clears when the worker dies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::handlers::stats::{Counters, Totals};
use crate::shm::{SharedArray, ZeroedAtomics};

/// Connections refused with 421 before a session started, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusals {
    /// `max_cons` sessions were running.
    pub max_cons: u64,
    /// `max_cons_per_ip` sessions from the address were running.
    pub per_ip: u64,
    /// The address was banned after failed logins.
    pub banned: u64,
    /// The server was shutting down.
    pub shutting_down: u64,
    /// The process was out of file descriptors.
    pub no_descriptors: u64,
}

/// What a server has done since it started, as read at one moment (every process of the
/// server counted).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// When the server started serving.
    pub start_time: SystemTime,
    /// Sessions running now.
    pub active_sessions: u64,
    /// The sessions' counters: sessions, logins, commands, bytes, transfers, durations.
    pub totals: Totals,
    /// Connections refused before a session started.
    pub refused: Refusals,
    /// Addresses banned for failed logins.
    pub bans: u64,
    /// Processes serving: 1, plus the children (Fork) or the workers (PreFork).
    pub processes: u64,
    /// Pool worker threads, in every process (Pool, PreFork).
    pub pool_workers: u64,
    /// Of them, those waiting for a connection.
    pub pool_idle: u64,
}

/// One process's pool, or the process gauges (slot 0 holds `processes`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) workers: AtomicU64,
    pub(crate) idle: AtomicU64,
    /// Slot 0: processes serving. Others: the pid of the worker that owns the slot.
    pub(crate) extra: AtomicU64,
}

// SAFETY: `repr(C)`, only atomic integers (alignment 8), valid when zeroed.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Slot {}

/// Gauges of the server's processes in shared memory: slot 0 for the process that serves
/// (Pool) or supervises, slots 1.. for pre-forked workers.
pub(crate) struct Gauges {
    slots: SharedArray<Slot>,
}

impl Gauges {
    /// Room for `workers` worker processes besides the first.
    pub(crate) fn new(workers: usize) -> Gauges {
        Gauges {
            slots: SharedArray::new(workers + 1, "server gauges"),
        }
    }

    /// The slot of process `i` (0: this process), if there is one.
    pub(crate) fn slot(self: &Arc<Self>, i: usize) -> Option<PoolGauge> {
        (i < self.slots.len()).then(|| PoolGauge {
            gauges: self.clone(),
            i,
        })
    }

    /// Sets the number of processes serving.
    pub(crate) fn set_processes(&self, n: usize) {
        self.slots[0].extra.store(n as u64, Ordering::Relaxed);
    }

    /// Clears slot `i` (its worker died, or is replaced).
    pub(crate) fn clear(&self, i: usize) {
        if let Some(s) = self.slots.get(i) {
            s.workers.store(0, Ordering::Relaxed);
            s.idle.store(0, Ordering::Relaxed);
            s.extra.store(0, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(w, i), s| {
            (
                w + s.workers.load(Ordering::Relaxed),
                i + s.idle.load(Ordering::Relaxed),
            )
        })
    }
}

/// A pool's place in the gauges: it adds and removes its workers and idle workers there as
/// it does in its own counts.
#[derive(Clone)]
pub(crate) struct PoolGauge {
    gauges: Arc<Gauges>,
    i: usize,
}

impl PoolGauge {
    fn slot(&self) -> &Slot {
        &self.gauges.slots[self.i]
    }

    /// Adds `d` workers (negative: removes).
    pub(crate) fn workers(&self, d: i64) {
        add(&self.slot().workers, d);
    }

    /// Adds `d` idle workers (negative: removes).
    pub(crate) fn idle(&self, d: i64) {
        add(&self.slot().idle, d);
    }
}

fn add(a: &AtomicU64, d: i64) {
    if d >= 0 {
        a.fetch_add(d as u64, Ordering::Relaxed);
    } else {
        let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(d.unsigned_abs()))
        });
    }
}

/// Reads a server's statistics: its counters, its admission table and its gauges.
pub(crate) fn read(
    start_time: SystemTime,
    counters: &Counters,
    admission: Option<&super::admission::Admission>,
    gauges: Option<&Gauges>,
) -> ServerStats {
    let (refused, bans, active) = match admission {
        Some(a) => {
            let (r, bans) = a.refusals();
            (
                Refusals {
                    max_cons: r[0],
                    per_ip: r[1],
                    banned: r[2],
                    shutting_down: r[3],
                    no_descriptors: r[4],
                },
                bans,
                a.sessions() as u64,
            )
        }
        None => (Refusals::default(), 0, 0),
    };
    let (pool_workers, pool_idle) = gauges.map_or((0, 0), Gauges::sum);
    let processes = gauges.map_or(1, |g| g.slots[0].extra.load(Ordering::Relaxed).max(1));
    ServerStats {
        start_time,
        active_sessions: active,
        totals: counters.totals(),
        refused,
        bans,
        processes,
        pool_workers,
        pool_idle,
    }
}

/// The callback that receives a server's statistics every `stats_interval`.
pub type ServerStatsCallback = Arc<dyn Fn(&ServerStats) + Send + Sync>;

/// Calls the stats callback when it is due (from the loop of the process that serves or
/// supervises).
pub(crate) struct Reporter {
    callback: ServerStatsCallback,
    every: Duration,
    next: Mutex<Instant>,
}

impl Reporter {
    pub(crate) fn new(callback: ServerStatsCallback, every: Duration) -> Reporter {
        let every = every.max(Duration::from_millis(100));
        Reporter {
            callback,
            every,
            next: Mutex::new(Instant::now() + every),
        }
    }

    /// How long until the next call is due.
    pub(crate) fn due_in(&self) -> Duration {
        self.next
            .lock()
            .map(|n| n.saturating_duration_since(Instant::now()))
            .unwrap_or(self.every)
    }

    /// Calls the callback with `read()` if it is due.
    pub(crate) fn tick(&self, read: impl FnOnce() -> ServerStats) {
        let Ok(mut next) = self.next.lock() else {
            return;
        };
        let now = Instant::now();
        if now < *next {
            return;
        }
        *next = now + self.every;
        drop(next);
        (self.callback)(&read());
    }
}

impl std::fmt::Display for ServerStats {
    /// One line for the log: `sessions: 3 active, 10 total; logins: 9 ok, 1 failed; …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.totals;
        let r = &self.refused;
        write!(
            f,
            "sessions: {} active, {} total; logins: {} ok, {} failed; commands: {}; \
             downloads: {} complete, {} aborted, {} failed, {} bytes; \
             uploads: {} complete, {} aborted, {} failed, {} bytes; \
             refused: max_cons={} per_ip={} banned={} shutting_down={} no_descriptors={}; \
             processes: {}; pool workers: {} ({} idle)",
            self.active_sessions,
            t.sessions,
            t.logins,
            t.failed_logins,
            t.commands,
            t.downloads[0],
            t.downloads[1],
            t.downloads[2],
            t.bytes_sent,
            t.uploads[0],
            t.uploads[1],
            t.uploads[2],
            t.bytes_received,
            r.max_cons,
            r.per_ip,
            r.banned,
            r.shutting_down,
            r.no_descriptors,
            self.processes,
            self.pool_workers,
            self.pool_idle
        )
    }
}
