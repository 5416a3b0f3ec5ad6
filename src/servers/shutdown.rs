//! Graceful shutdown (pyftpdlib `FTPServer.close_all`, made gentle): stop accepting, let the
//! sessions that are running a command (a transfer) finish it, end idle sessions at once with
//! `421`, and after the grace period close whatever is left with `421`. Each session thread
//! tells its server whether it is busy through the hooks below, which the session loop calls.

use std::cell::RefCell;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, MsgFlags};

use super::{acceptor, FtpServer, Shared};
use crate::error::Error;

/// The reply a session gets when the server closes it.
pub(crate) const SHUTDOWN_REPLY: &[u8] = b"421 Server shutting down.\r\n";

/// What the current thread's session shares with its server.
struct Slot {
    shared: Arc<Shared>,
    busy: Arc<AtomicBool>,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Binds the current thread to a registered session (called by `serve_guarded`).
pub(crate) fn enter(shared: &Arc<Shared>, busy: &Arc<AtomicBool>) {
    SLOT.with(|s| {
        *s.borrow_mut() = Some(Slot {
            shared: shared.clone(),
            busy: busy.clone(),
        })
    });
}

/// Unbinds the current thread (pool workers serve many sessions in turn).
pub(crate) fn leave() {
    SLOT.with(|s| *s.borrow_mut() = None);
}

/// The session is about to wait for its next command. Returns true when the server is
/// shutting down, in which case the session should reply 421 and end.
///
/// The order (mark idle, then read the flag; the drainer sets the flag, then reads the mark,
/// both `SeqCst`) guarantees that either the session sees the flag here or the drainer sees
/// the session idle and shuts its socket for reading, which wakes the session's read.
pub(crate) fn going_idle() -> bool {
    SLOT.with(|s| match &*s.borrow() {
        Some(slot) => {
            slot.busy.store(false, Ordering::SeqCst);
            slot.shared.draining.load(Ordering::SeqCst)
        }
        None => false,
    })
}

/// The session got a command and runs it (a transfer in progress must not be cut).
pub(crate) fn busy() {
    SLOT.with(|s| {
        if let Some(slot) = &*s.borrow() {
            slot.busy.store(true, Ordering::SeqCst);
        }
    });
}

/// True once the server of the current session is shutting down.
pub(crate) fn draining() -> bool {
    SLOT.with(|s| match &*s.borrow() {
        Some(slot) => slot.shared.draining.load(Ordering::SeqCst),
        None => false,
    })
}

impl Shared {
    /// Starts draining: idle sessions are woken (their control socket is shut for reading,
    /// so their read ends and they reply 421); busy ones finish their command first.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Ok(m) = self.sessions.lock() {
            for (stream, busy) in m.values() {
                if !busy.load(Ordering::SeqCst) {
                    let _ = stream.shutdown(Shutdown::Read);
                }
            }
        }
    }

    /// Ends every session now with a 421 (written without blocking: a client that does not
    /// read cannot hold the shutdown up).
    pub(crate) fn hard_close(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Ok(m) = self.sessions.lock() {
            for (stream, _) in m.values() {
                let _ = socket::send(
                    stream.as_raw_fd(),
                    SHUTDOWN_REPLY,
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                );
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Waits until no session is left or `limit` has passed; true if none is left.
    pub(crate) fn wait_sessions(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.count.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The whole graceful shutdown of in-process sessions: drain, wait up to `grace`, then
    /// close the rest with 421 and give them a moment to unwind.
    pub(crate) fn graceful(&self, grace: Duration) {
        self.drain();
        if !self.wait_sessions(grace) {
            log::info!(
                "grace period over; closing {} session(s)",
                self.count.load(Ordering::SeqCst)
            );
            self.hard_close();
            self.wait_sessions(Duration::from_secs(5));
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

/// Blocks SIGINT, SIGTERM and SIGUSR1 (the "close everything now" signal a pre-fork parent
/// sends its workers) in the calling thread and returns a signalfd that reads them.
pub(crate) fn stop_signals() -> Result<SignalFd, Error> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGUSR1);
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
