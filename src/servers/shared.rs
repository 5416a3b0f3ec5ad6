//! What a server's accept loop, its sessions' guards and every [`ServerHandle`] share
//! within one process ([`Shared`]), and the guard that counts a session while it runs
//! ([`ConnGuard`]). Across processes, the admission table (admission.rs) is the count.
//!
//! [`ServerHandle`]: super::ServerHandle

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signalfd::SignalFd;
use nix::sys::wait::WaitStatus;

use super::admission::{Admission, Admitted};
use super::stats::{Gauges, Reporter, ServerStats};
use crate::error::Error;
use crate::handlers::stats::Counters;
use crate::handlers::throttle::RateTable;
use crate::handlers::{AdmissionHooks, DrainToken, ProcessKind, SessionContext, Wakeups};

/// State shared by the acceptor, the sessions' guards and every `ServerHandle`.
pub(crate) struct Shared {
    pub(super) shutdown: AtomicBool,
    pub(super) wake_rx: OwnedFd,
    pub(super) wake_tx: Mutex<std::fs::File>,
    pub(super) signals: Option<SignalFd>,
    /// Sessions served by this process (graceful shutdown waits for them).
    pub(super) count: AtomicUsize,
    /// The wake-up descriptors every session of this process waits on: a drain wakes
    /// the idle ones, `close_all` and the hard close end them all (shutdown.rs). Two
    /// descriptors for the process, none per session.
    pub(super) wakeups: Arc<Wakeups>,
    /// Sessions counted so far (the idle timeout of inetd "wait" sees a change as activity).
    pub(super) next_id: AtomicU64,
    /// Graceful shutdown in progress (see `shutdown.rs`); every session's drain token
    /// reads it.
    pub(super) draining: Arc<AtomicBool>,
    /// `ServerHandle::shutdown` asked for a graceful stop with this grace period.
    pub(super) grace: Mutex<Option<Duration>>,
    /// `close_all` was asked for (forked children are ended too).
    pub(super) hard: AtomicBool,
    /// `serve_forever` has returned.
    pub(super) stopped: AtomicBool,
    /// The server's admission table, made when it starts serving (before any fork) and
    /// shared with its worker processes and children.
    pub(super) admission: OnceLock<Arc<Admission>>,
    /// Connections refused for lack of descriptors, logged at most once a second.
    pub(super) fd_refusals: RateLog,
    /// The spare descriptor given up to refuse a connection when there is none left.
    pub(super) reserve: super::acceptor::Reserve,
    /// The shared rate buckets of the server's sessions (per user, server-wide), made in
    /// the parent before any fork (like the admission table) so every worker and child
    /// shares them.
    pub(crate) rates: OnceLock<Arc<RateTable>>,
    /// The sessions' counters, made with the rate table (shared the same way).
    pub(crate) stats: OnceLock<Arc<Counters>>,
    /// The process and pool gauges, made when the server starts serving (before any fork).
    pub(crate) gauges: OnceLock<Arc<Gauges>>,
    /// When the server started serving.
    pub(crate) started: OnceLock<SystemTime>,
    /// The periodic stats callback (only in the process that serves or supervises).
    pub(crate) reporter: OnceLock<Reporter>,
    /// What SIGHUP does in this process: reload the TLS certificate, reopen log files.
    pub(crate) reload: OnceLock<ReloadFn>,
    /// The metrics endpoint's process (Fork, PreFork), kept running by this process.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Mutex<Option<super::metrics::Keeper>>,
}

/// What a server does on SIGHUP (see [`FtpServer::on_reload`](super::FtpServer::on_reload)).
pub(crate) type ReloadFn = Arc<dyn Fn() + Send + Sync>;

impl Shared {
    pub(super) fn new(signals: Option<SignalFd>) -> Result<Arc<Shared>, Error> {
        let (rx, tx) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        Ok(Arc::new(Shared {
            shutdown: AtomicBool::new(false),
            wake_rx: rx,
            wake_tx: Mutex::new(std::fs::File::from(tx)),
            signals,
            count: AtomicUsize::new(0),
            wakeups: Arc::new(Wakeups::new()?),
            next_id: AtomicU64::new(1),
            draining: Arc::new(AtomicBool::new(false)),
            grace: Mutex::new(None),
            hard: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            admission: OnceLock::new(),
            fd_refusals: RateLog::default(),
            reserve: Default::default(),
            rates: OnceLock::new(),
            stats: OnceLock::new(),
            gauges: OnceLock::new(),
            started: OnceLock::new(),
            reporter: OnceLock::new(),
            reload: OnceLock::new(),
            #[cfg(feature = "metrics")]
            metrics: Mutex::new(None),
        }))
    }

    /// The sessions' counters, made if there are none yet.
    pub(crate) fn stats(&self) -> &Arc<Counters> {
        self.stats.get_or_init(|| Arc::new(Counters::new()))
    }

    /// Shares another `Shared`'s tables (a worker process's own `Shared` takes its
    /// server's): admission, rates, counters, gauges, start time and reload action.
    pub(crate) fn adopt(&self, from: &Shared) {
        if let Some(a) = from.admission.get() {
            let _ = self.admission.set(a.clone());
        }
        let _ = self.rates.set(from.rates().clone());
        let _ = self.stats.set(from.stats().clone());
        if let Some(g) = from.gauges.get() {
            let _ = self.gauges.set(g.clone());
        }
        if let Some(t) = from.started.get() {
            let _ = self.started.set(*t);
        }
        if let Some(r) = from.reload.get() {
            let _ = self.reload.set(r.clone());
        }
    }

    /// The server's statistics now.
    pub(crate) fn server_stats(&self) -> ServerStats {
        super::stats::read(
            self.started
                .get()
                .copied()
                .unwrap_or(SystemTime::UNIX_EPOCH),
            self.stats(),
            self.admission.get().map(|a| &**a),
            self.gauges.get().map(|g| &**g),
        )
    }

    /// Calls the stats callback if it is due; how long until the next call (`None`: there
    /// is no callback).
    pub(crate) fn report(&self) -> Option<Duration> {
        let r = self.reporter.get()?;
        r.tick(|| self.server_stats());
        Some(r.due_in())
    }

    /// A child process was reaped: true if it was the metrics endpoint's (then started
    /// again by [`keep_metrics`](Self::keep_metrics) after a pause).
    pub(crate) fn metrics_reaped(&self, pid: nix::unistd::Pid, status: &WaitStatus) -> bool {
        #[cfg(feature = "metrics")]
        if let Some(k) = self
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            return k.reaped(pid, status);
        }
        let _ = (pid, status);
        false
    }

    /// Restarts the metrics endpoint's process if it died and its pause is over. Forks:
    /// call only while this process runs a single thread.
    pub(crate) fn keep_metrics(self: &Arc<Self>) {
        #[cfg(feature = "metrics")]
        if let Some(k) = self
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            k.tick(self);
        }
    }

    /// Ends the metrics endpoint's process, if this process keeps one.
    #[cfg(feature = "metrics")]
    pub(crate) fn stop_metrics(&self) {
        if let Some(k) = self
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            k.stop();
        }
    }

    /// Runs the SIGHUP action of this process.
    pub(crate) fn reload(&self) {
        match self.reload.get() {
            Some(r) => r(),
            None => log::info!("SIGHUP: nothing to reload"),
        }
    }

    /// The admission table, made for `max_cons` sessions if there is none yet.
    pub(crate) fn admission(&self, max_cons: usize) -> &Arc<Admission> {
        self.admission
            .get_or_init(|| Arc::new(Admission::new(max_cons)))
    }

    /// The shared rate table, made with [`DEFAULT_USER_SLOTS`] if the server was given none.
    ///
    /// [`DEFAULT_USER_SLOTS`]: crate::handlers::throttle::DEFAULT_USER_SLOTS
    pub(crate) fn rates(&self) -> &Arc<RateTable> {
        self.rates.get_or_init(|| Arc::new(RateTable::new()))
    }

    /// Counts a new session served in this process; the guard uncounts it (and releases
    /// its admission) when dropped, even after a panic. The session is reached through
    /// the process's wake-up descriptors, so nothing of its socket is kept here. `None`
    /// when not even one more descriptor is free (a duplicate of the socket, made and
    /// closed at once, is the probe): a session that could not open its files or its data
    /// connections is refused with 421 instead.
    pub(crate) fn register(
        self: &Arc<Self>,
        stream: &TcpStream,
        admitted: Option<Admitted>,
    ) -> Option<ConnGuard> {
        if let Err(e) = stream.try_clone() {
            log::debug!("cannot register a session: {e}");
            return None;
        }
        Some(self.count_only(admitted))
    }

    /// Counts a session, served here ([`register`](Self::register)) or in a forked child.
    pub(crate) fn count_only(self: &Arc<Self>, admitted: Option<Admitted>) -> ConnGuard {
        self.next_id.fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::SeqCst);
        ConnGuard {
            shared: self.clone(),
            busy: Arc::new(AtomicBool::new(false)),
            admitted: admitted.map(Arc::new),
        }
    }

    pub(super) fn wake(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Ok(mut w) = self.wake_tx.lock() {
            let _ = w.write_all(b"x");
        }
    }

    /// Ends every session of this process now, without a reply (pyftpdlib's `close_all`).
    pub(super) fn close_sessions(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wakeups.end(true);
    }

    /// Sessions admitted by the whole server (every process), or by this process when it
    /// has no table yet.
    pub(super) fn connection_count(&self) -> usize {
        match self.admission.get() {
            Some(a) => a.sessions(),
            None => self.count.load(Ordering::SeqCst),
        }
    }
}

/// Counts a session while it runs (see [`Shared::register`]).
pub(crate) struct ConnGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) busy: Arc<AtomicBool>,
    /// The session's place in the admission table (none in inetd "nowait" mode).
    pub(super) admitted: Option<Arc<Admitted>>,
}

impl ConnGuard {
    /// What the session this guard counts gets from its server: the drain token (the
    /// server's drain flag and this session's busy flag), its admission, the shared rate
    /// buckets, and the kind of process it runs in.
    pub(crate) fn context(&self, process: ProcessKind) -> SessionContext {
        SessionContext {
            drain: DrainToken::new(self.shared.draining.clone(), self.busy.clone())
                .with_wakeups(self.shared.wakeups.clone()),
            process,
            admission: self.admitted.clone().map(|a| a as Arc<dyn AdmissionHooks>),
            rates: self.shared.rates().clone(),
            stats: self.shared.stats().clone(),
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(a) = &self.admitted {
            a.release();
        }
        self.shared.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts events and logs them at most once a second, with the count since the last line
/// (a flood of failures must not become a flood of log lines).
#[derive(Default)]
pub(crate) struct RateLog {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RateLog {
    /// Counts one event; returns the count to log when a line is due.
    pub(crate) fn hit(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().ok()?;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        *last = Some(Instant::now());
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_log_logs_once_a_second_with_the_count() {
        let r = RateLog::default();
        assert_eq!(r.hit(), Some(1));
        for _ in 0..99 {
            assert_eq!(r.hit(), None);
        }
        if let Ok(mut l) = r.last.lock() {
            *l = Some(Instant::now() - Duration::from_secs(2));
        }
        assert_eq!(r.hit(), Some(100));
    }
}
