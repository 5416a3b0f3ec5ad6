//! The pool model (pyftpdlib `FTPServer`, the default): reusable session threads that
//! accept for themselves. Idle workers wait together on one epoll instance that holds the
//! listeners in one-shot mode, so a new connection wakes exactly one idle worker, which
//! accepts it, re-arms the listener for the next idle worker and serves the session on the
//! spot: no accept thread between the client and its session, so a login costs one wake-up
//! fewer than a hand-off would (leader/followers).
//!
//! Why not the classic pool, an accept thread feeding workers through a channel (what this
//! model was first): every login then costs two wake-ups (the accept thread, then a worker)
//! and usually a migration between cores. Measured on the same machine, 3 interleaved runs
//! each, leader/followers against the channel-fed pool: sequential logins 3,665 → 3,939/s,
//! server CPU per login 144 → 118 µs, context switches per login 5.5 → 4.0, CPU migrations
//! 1,000–4,000/s → 5/s, 1,000 connect+login 0.22 → 0.16 s (README, "Performance"). The
//! price is that the thread that accepts is the thread that serves, so the accept path
//! (admission, the 421s) runs on the workers: [`acceptor::admit`] is shared by both models.
//!
//! A worker that leaves fewer than [`SPARE`] workers idle asks the pool's spawner thread for
//! another through a crossbeam channel, so thread creation stays off the sessions' path;
//! a worker idle for [`IDLE_WORKER`] exits while another stays idle. The control thread
//! (`serve_forever`) only waits for the stop; [`Pool::close`] wakes every idle worker
//! through an eventfd and closes the pool's listener duplicates.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::acceptor::{self, AcceptLimits};
use super::{ConnGuard, Shared};
use crate::handlers::FtpHandler;

/// Idle workers the pool keeps ready, so a burst of connections does not wait for threads
/// to be created.
const SPARE: usize = 2;

/// How long an idle worker waits for a connection before exiting (when another is idle).
const IDLE_WORKER: Duration = Duration::from_secs(60);

/// The epoll token of the stop eventfd (listeners use their index).
const STOP: u64 = u64::MAX;

/// What the spawner thread is asked to do.
enum Ask {
    /// Start one more worker.
    Grow,
    /// The pool is closing: exit.
    Stop,
}

/// A running pool (shared by its workers, its spawner and the control thread).
pub(crate) struct Pool {
    epoll: Epoll,
    stop_fd: EventFd,
    stopped: AtomicBool,
    /// The pool's duplicates of the listeners with their implicit-TLS flag; `None` once
    /// closed, so no worker accepts on a descriptor the server has let go.
    listeners: RwLock<Option<Vec<(TcpListener, bool)>>>,
    shared: Arc<Shared>,
    handler: Arc<FtpHandler>,
    limits: AcceptLimits,
    stack_size: usize,
    /// Workers waiting for a connection (or about to).
    idle: AtomicUsize,
    /// Workers alive.
    workers: AtomicUsize,
    ask: Sender<Ask>,
}

impl Pool {
    /// Starts the spawner and [`SPARE`] workers on duplicates of `listeners`.
    ///
    /// # Errors
    /// epoll, eventfd, dup(2) or the spawner thread failed.
    pub(crate) fn start(
        listeners: &[TcpListener],
        implicit_tls: &[bool],
        shared: &Arc<Shared>,
        handler: &Arc<FtpHandler>,
        limits: AcceptLimits,
        stack_size: usize,
    ) -> io::Result<Arc<Pool>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let stop_fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(stop_fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
        let mut dups = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.iter().enumerate() {
            let l = l.try_clone()?;
            l.set_nonblocking(true)?;
            epoll.add(l.as_fd(), armed(i))?;
            dups.push((l, implicit_tls.get(i).copied().unwrap_or(false)));
        }
        let (ask, asked) = crossbeam_channel::unbounded();
        let pool = Arc::new(Pool {
            epoll,
            stop_fd,
            stopped: AtomicBool::new(false),
            listeners: RwLock::new(Some(dups)),
            shared: shared.clone(),
            handler: handler.clone(),
            limits,
            stack_size,
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            ask,
        });
        shared.reserve.arm();
        let weak = Arc::downgrade(&pool);
        std::thread::Builder::new()
            .name("ftp-spawner".into())
            .stack_size(64 * 1024)
            .spawn(move || spawner(&weak, &asked))?;
        for _ in 0..SPARE {
            pool.grow();
        }
        Ok(pool)
    }

    /// Worker threads alive — for logs.
    pub(crate) fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    /// Stops accepting: idle workers exit now, busy ones after their session; the pool's
    /// listener duplicates are closed.
    pub(crate) fn close(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = self.stop_fd.write(1);
        let _ = self.ask.send(Ask::Stop);
        if let Ok(mut l) = self.listeners.write() {
            for (l, _) in l.iter().flatten() {
                let _ = self.epoll.delete(l.as_fd());
            }
            *l = None;
        }
    }

    /// Starts a worker thread now.
    fn grow(self: &Arc<Self>) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        self.workers.fetch_add(1, Ordering::Relaxed);
        self.idle.fetch_add(1, Ordering::SeqCst);
        let pool = self.clone();
        let r = std::thread::Builder::new()
            .name("ftp-worker".into())
            .stack_size(self.stack_size)
            .spawn(move || worker(&pool));
        if let Err(e) = r {
            self.workers.fetch_sub(1, Ordering::Relaxed);
            self.idle.fetch_sub(1, Ordering::SeqCst);
            log::error!("cannot start a worker thread: {e}");
        }
    }

    /// Waits for the next connection to serve (already admitted and registered) or `None`
    /// when this worker should exit. The caller counts as idle on entry.
    #[inline(never)]
    fn next(self: &Arc<Self>) -> Option<(TcpStream, ConnGuard, bool)> {
        let mut events = [EpollEvent::empty()];
        let timeout = EpollTimeout::try_from(IDLE_WORKER).unwrap_or(EpollTimeout::NONE);
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // Not expected (the epoll descriptor is the pool's own); back off so a
                    // persistent error cannot spin.
                    log::error!("pool: epoll_wait failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if n == 0 {
                if self.retire() {
                    return None;
                }
                continue;
            }
            let token = events[0].data();
            if token == STOP {
                continue; // `stopped` is set: the loop's first check ends this worker.
            }
            let was_idle = self.idle.fetch_sub(1, Ordering::SeqCst);
            if let Some(got) = self.accept(token) {
                // Only a connection taken changes the pool: a wake-up that found nothing
                // (another pre-fork process accepted first) or a refusal asks for no worker.
                if was_idle <= SPARE {
                    let _ = self.ask.send(Ask::Grow);
                }
                return Some(got);
            }
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Accepts one connection on listener `i`, re-arms it (so a second pending connection
    /// wakes the next idle worker) and admits it.
    fn accept(&self, i: u64) -> Option<(TcpStream, ConnGuard, bool)> {
        let (stream, addr, implicit) = {
            let guard = self.listeners.read().ok()?;
            let (l, implicit) = guard.as_ref()?.get(usize::try_from(i).ok()?)?;
            let r = loop {
                match l.accept() {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            if let Err(e) = &r {
                if e.kind() != io::ErrorKind::WouldBlock {
                    acceptor::accept_failed(l, e, &self.shared);
                }
            }
            let mut ev = armed(i as usize);
            if let Err(e) = self.epoll.modify(l.as_fd(), &mut ev) {
                log::error!("pool: cannot re-arm a listener: {e}");
            }
            let (s, a) = r.ok()?;
            (s, a, *implicit)
        };
        let admitted = acceptor::admit(&stream, addr, &self.shared, &self.limits)?;
        let guard = acceptor::register_or_refuse(&self.shared, &stream, admitted)?;
        Some((stream, guard, implicit))
    }

    /// An idle worker timed out: it may exit when another worker stays idle.
    fn retire(&self) -> bool {
        self.idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > SPARE).then(|| n - 1)
            })
            .is_ok()
    }
}

/// The listener event: readable, once until re-armed.
fn armed(i: usize) -> EpollEvent {
    EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT, i as u64)
}

/// A worker: serves the connections it accepts until the pool closes or it retires. Kept
/// small: the session runs right under this frame, so idle sessions keep few stack pages.
fn worker(pool: &Arc<Pool>) {
    while let Some((stream, guard, implicit)) = pool.next() {
        acceptor::serve_guarded_with(
            stream,
            pool.handler.clone(),
            guard,
            crate::handlers::ProcessKind::Shared,
            acceptor::entry(implicit),
        );
        pool.idle.fetch_add(1, Ordering::SeqCst);
    }
    pool.workers.fetch_sub(1, Ordering::Relaxed);
}

/// The spawner thread: starts workers when asked, until the pool closes.
fn spawner(pool: &std::sync::Weak<Pool>, asked: &Receiver<Ask>) {
    while let Ok(Ask::Grow) = asked.recv() {
        let Some(pool) = pool.upgrade() else { return };
        if pool.idle.load(Ordering::SeqCst) < SPARE {
            pool.grow();
        }
    }
}
