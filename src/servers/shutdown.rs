//! Graceful shutdown (pyftpdlib `FTPServer.close_all`, made gentle): stop admitting, let the
//! sessions that are running a command (a transfer) finish it, end idle sessions at once with
//! `421`, and after the grace period close whatever is left with `421`. Until the process
//! exits, every new connection is accepted and told `421 Server shutting down.` at once, so
//! none waits in a backlog nobody accepts from; listeners that belong to systemd or inetd
//! stay open for the next instance. Each session tells its server whether it is busy through
//! the drain token of its [`SessionContext`](crate::handlers::SessionContext) (its busy flag
//! and this server's drain flag; see [`ConnGuard::context`](super::ConnGuard::context)).

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::admission::Refusal;
use super::{acceptor, FtpServer, Shared};
use crate::error::Error;

impl Shared {
    /// Starts draining: idle sessions are woken (they wait on the drain descriptor beside
    /// their control connection) and reply 421; busy ones finish their command first.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wakeups.drain();
    }

    /// Ends every session now with a 421 (each session writes it without blocking: a
    /// client that does not read cannot hold the shutdown up), transfers included.
    pub(crate) fn hard_close(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wakeups.end(false);
    }

    /// Waits until no session of this process is left or `limit` has passed, refusing
    /// new connections on `listeners` meanwhile; true if none is left.
    pub(crate) fn wait_sessions(&self, listeners: &[TcpListener], limit: Duration) -> bool {
        wait_refusing(self, listeners, limit, || {
            self.count.load(Ordering::SeqCst) == 0
        })
    }

    /// The whole graceful shutdown of in-process sessions: drain, wait up to `grace`, then
    /// close the rest with 421 and give them a moment to unwind; new connections on
    /// `listeners` get 421 throughout.
    pub(crate) fn graceful(&self, grace: Duration, listeners: &[TcpListener]) {
        self.drain();
        if !self.wait_sessions(listeners, grace) {
            log::info!(
                "grace period over; closing {} session(s)",
                self.count.load(Ordering::SeqCst)
            );
            self.hard_close();
            self.wait_sessions(listeners, Duration::from_secs(5));
        }
    }

    /// From now on the whole server (every worker and child) admits no one. Called by the
    /// process that owns the server's stop, never by a session process on its own.
    pub(crate) fn stop_admitting(&self) {
        if let Some(a) = self.admission.get() {
            a.set_draining();
        }
    }
}

/// Waits until `done()` or `limit`, answering every connection that arrives on `listeners`
/// with `421 Server shutting down.` and closing it (a listener of systemd or inetd stays
/// open for the next instance). True when `done()`.
pub(crate) fn wait_refusing(
    shared: &Shared,
    listeners: &[TcpListener],
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    for l in listeners {
        let _ = l.set_nonblocking(true);
    }
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wait = (deadline - now).min(Duration::from_millis(20));
        if listeners.is_empty() {
            std::thread::sleep(wait);
            continue;
        }
        let fds: Vec<_> = listeners
            .iter()
            .map(|l| (l.as_fd(), PollFlags::POLLIN))
            .collect();
        let Ok(ready) = crate::poll::ready_slice(&fds, Some(wait)) else {
            std::thread::sleep(wait);
            continue;
        };
        for (l, _) in listeners.iter().zip(ready).filter(|(_, r)| *r) {
            refuse_all(shared, l);
        }
    }
}

/// Accepts everything pending on `l` and answers it with 421 (shutting down).
fn refuse_all(shared: &Shared, l: &TcpListener) {
    loop {
        match l.accept() {
            Ok((stream, addr)) => {
                log::info!("{}:{} refused: shutting down", addr.ip(), addr.port());
                acceptor::refuse(&stream, Refusal::ShuttingDown.reply());
                if let Some(a) = shared.admission.get() {
                    a.count(Refusal::ShuttingDown);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                if !acceptor::accept_failed(l, &e, shared) {
                    return;
                }
            }
        }
    }
}

/// What happens to running sessions when a server stops accepting.
pub(crate) enum Ending {
    /// They go on (`close`, idle exit).
    Leave,
    /// Drain, wait up to the grace period, then 421 (signals, `shutdown`).
    Graceful(Duration),
    /// 421 now (`close_all`).
    Hard,
}

/// Blocks SIGINT, SIGTERM, SIGUSR1 (the "close everything now" signal a pre-fork parent
/// sends its workers) and SIGHUP (reload) in the calling thread and returns a signalfd that
/// reads them.
pub(crate) fn stop_signals() -> Result<SignalFd, Error> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGUSR1);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(std::io::Error::from)?;
    Ok(
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(std::io::Error::from)?,
    )
}

impl FtpServer {
    /// What to do with running sessions once the accept loop has stopped.
    pub(crate) fn ending(&self, stop: &acceptor::Stop) -> Ending {
        match stop {
            acceptor::Stop::Signal(Signal::SIGUSR1) => Ending::Hard,
            acceptor::Stop::Signal(sig) => {
                log::info!("received {sig}, shutting down");
                Ending::Graceful(self.shutdown_grace)
            }
            acceptor::Stop::Idle => {
                let secs = self.idle_timeout.unwrap_or_default().as_secs();
                log::info!("idle for {secs}s with no session; exiting");
                Ending::Leave
            }
            acceptor::Stop::Closed => {
                let grace = self.shared.grace.lock().ok().and_then(|g| *g);
                if self.shared.hard.load(Ordering::SeqCst) {
                    Ending::Hard
                } else if let Some(g) = grace {
                    Ending::Graceful(g)
                } else {
                    Ending::Leave
                }
            }
        }
    }
}
