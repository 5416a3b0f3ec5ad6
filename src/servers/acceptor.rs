//! The control loop: polls a wake-up pipe (and a signalfd when the server stops on signals)
//! and, for the Thread and Fork models, the listeners, handing each admitted connection to
//! the executor (pyftpdlib `FTPServer.handle_accepted`). The pool model's workers accept for
//! themselves (pool.rs); there this loop only waits for the stop. Admission (`max_cons`,
//! `max_cons_per_ip`, bans, the 421 replies) is [`admit`], shared by both, over the
//! server's admission table (admission.rs). Out of descriptors, a spare one is given up
//! to accept the connection and tell it so ([`Reserve`], the idle-descriptor technique of
//! nginx and libev), so no client waits in a backlog nobody can accept from.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use super::admission::{Admitted, Refusal};
use super::{ConnGuard, Shared};
use crate::handlers::{FtpHandler, ProcessKind, Session, SessionContext};
use crate::proto;
use crate::proxy_protocol::ProxyProtocol;

/// Why the loop stopped.
pub(crate) enum Stop {
    /// `close()` or `close_all()`.
    Closed,
    /// A signal from the signalfd.
    Signal(nix::sys::signal::Signal),
    /// No session for `idle_timeout` (inetd "wait" mode).
    Idle,
}

/// The accept loop's limits: connection counts (admission) and the idle timeout of inetd
/// "wait".
#[derive(Clone, Copy)]
pub(crate) struct AcceptLimits {
    pub(crate) max_cons: usize,
    pub(crate) max_cons_per_ip: usize,
    pub(crate) idle_timeout: Option<Duration>,
}

/// Where accepted connections go: threads of this process, or forked children.
pub(crate) trait Dispatch {
    /// Serves an accepted, admitted connection (`implicit_tls`: TLS from the first byte).
    fn dispatch(
        &self,
        stream: TcpStream,
        admitted: Admitted,
        handler: &Arc<FtpHandler>,
        shared: &Arc<Shared>,
        implicit_tls: bool,
    );
    /// Called on every wake-up of the loop (the fork model reaps its children here).
    fn tick(&self) {}
    /// How often the loop must wake up even when nothing happens.
    fn tick_every(&self) -> Option<Duration> {
        None
    }
}

/// What the control loop accepts for, when it accepts (Thread, Fork models).
pub(crate) struct Accepting<'a> {
    pub(crate) listeners: &'a [TcpListener],
    /// Per listener: implicit FTPS.
    pub(crate) implicit_tls: &'a [bool],
    pub(crate) handler: &'a Arc<FtpHandler>,
    pub(crate) runner: &'a dyn Dispatch,
}

/// Runs until closed, a stop signal or the idle timeout, accepting when `accepting` is
/// given.
pub(crate) fn run(
    accepting: Option<Accepting<'_>>,
    shared: &Arc<Shared>,
    limits: &AcceptLimits,
) -> io::Result<Stop> {
    let listeners = accepting.as_ref().map(|a| a.listeners).unwrap_or(&[]);
    for l in listeners {
        l.set_nonblocking(true)?;
    }
    if !listeners.is_empty() {
        shared.reserve.arm();
    }
    let tick_every = accepting.as_ref().and_then(|a| a.runner.tick_every());
    let timeout = poll_timeout(tick_every, limits.idle_timeout);
    let mut idle = IdleWatch::new(shared);
    loop {
        if let Some(a) = &accepting {
            a.runner.tick();
        }
        let report = shared.report();
        if shared.shutdown.load(Ordering::SeqCst) {
            return Ok(Stop::Closed);
        }
        if limits
            .idle_timeout
            .is_some_and(|limit| idle.expired(shared, limit))
        {
            return Ok(Stop::Idle);
        }
        let timeout = match (timeout, report) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        let woken = wait(listeners, shared, timeout)?;
        match woken.stop(shared) {
            Some(Stop::Signal(nix::sys::signal::Signal::SIGHUP)) => {
                log::info!("received SIGHUP, reloading");
                shared.reload();
                continue;
            }
            Some(stop) => return Ok(stop),
            None => {}
        }
        let Some(a) = &accepting else { continue };
        for (i, l) in listeners
            .iter()
            .enumerate()
            .filter(|(i, _)| woken.ready[*i])
        {
            idle.last_busy = Instant::now();
            let implicit = a.implicit_tls.get(i).copied().unwrap_or(false);
            accept_all(l, shared, a.handler, a.runner, limits, implicit);
        }
    }
}

/// Connections accepted in one round before the loop goes back to its other work (reaping
/// children, signals, the stop): under a steady stream of clients the backlog is never
/// empty, so "until EAGAIN" would never end. The listener stays readable, so the next poll
/// returns at once.
const ACCEPT_BATCH: usize = 64;

/// How long the loop's poll may wait: until the runner's next tick, and at most 250 ms
/// when an idle timeout must be noticed (`None`: until something happens).
fn poll_timeout(tick_every: Option<Duration>, idle_timeout: Option<Duration>) -> Option<Duration> {
    match (tick_every, idle_timeout) {
        (Some(t), Some(_)) => Some(t.min(Duration::from_millis(250))),
        (None, Some(_)) => Some(Duration::from_millis(250)),
        (t, None) => t,
    }
}

/// When the server was last busy, for the idle timeout (inetd "wait").
struct IdleWatch {
    /// Sessions registered so far: a change means a connection came (and maybe went)
    /// between two checks, which counts as activity.
    registered: u64,
    last_busy: Instant,
}

impl IdleWatch {
    fn new(shared: &Shared) -> IdleWatch {
        IdleWatch {
            registered: shared.next_id.load(Ordering::SeqCst),
            last_busy: Instant::now(),
        }
    }

    /// True once no session has run or come for `limit`.
    fn expired(&mut self, shared: &Shared, limit: Duration) -> bool {
        let registered = shared.next_id.load(Ordering::SeqCst);
        if shared.count.load(Ordering::SeqCst) > 0 || registered != self.registered {
            self.registered = registered;
            self.last_busy = Instant::now();
            return false;
        }
        self.last_busy.elapsed() >= limit
    }
}

/// What one poll of the control loop found.
pub(super) struct Woken {
    /// Per listener: a connection is waiting.
    ready: Vec<bool>,
    /// The wake-up pipe: `close()` was called.
    woke: bool,
    /// The signalfd is readable.
    signalled: bool,
}

impl Woken {
    /// The reason to stop, if the poll found one: a stop signal, or the wake-up pipe.
    pub(super) fn stop(&self, shared: &Shared) -> Option<Stop> {
        if self.signalled {
            if let Some(Ok(Some(info))) = shared.signals.as_ref().map(|s| s.read_signal()) {
                let sig = nix::sys::signal::Signal::try_from(info.ssi_signo as i32)
                    .unwrap_or(nix::sys::signal::Signal::SIGTERM);
                return Some(Stop::Signal(sig));
            }
        }
        self.woke.then_some(Stop::Closed)
    }
}

/// Polls the listeners, the wake-up pipe and the signalfd (a signal interrupting the wait
/// finds nothing ready).
pub(super) fn wait(
    listeners: &[TcpListener],
    shared: &Shared,
    timeout: Option<Duration>,
) -> io::Result<Woken> {
    let mut fds: Vec<(BorrowedFd<'_>, PollFlags)> = listeners
        .iter()
        .map(|l| (l.as_fd(), PollFlags::POLLIN))
        .collect();
    fds.push((shared.wake_rx.as_fd(), PollFlags::POLLIN));
    if let Some(sfd) = &shared.signals {
        fds.push((sfd.as_fd(), PollFlags::POLLIN));
    }
    let ready = crate::poll::ready_slice(&fds, timeout)?;
    let n = listeners.len();
    Ok(Woken {
        ready: ready[..n].to_vec(),
        woke: ready[n],
        signalled: ready.get(n + 1).copied().unwrap_or(false),
    })
}

fn accept_all(
    l: &TcpListener,
    shared: &Arc<Shared>,
    handler: &Arc<FtpHandler>,
    runner: &dyn Dispatch,
    limits: &AcceptLimits,
    implicit_tls: bool,
) {
    for _ in 0..ACCEPT_BATCH {
        let (stream, addr) = match l.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if accept_failed(l, &e, shared) {
                    continue;
                }
                return;
            }
        };
        if let Some(a) = admit(
            &stream,
            addr,
            shared,
            limits,
            handler.proxy_protocol.as_ref(),
        ) {
            runner.dispatch(stream, a, handler, shared, implicit_tls);
        }
    }
}

/// How long an accept loop waits when it is out of descriptors and cannot even refuse.
const FD_BACKOFF: Duration = Duration::from_millis(100);

/// accept(2) on `l` failed with `e`. Out of descriptors (EMFILE, ENFILE), the reserve is
/// given up to take one connection off the backlog and refuse it with 421: true, accept
/// again. When even that fails the caller must not spin: this waits [`FD_BACKOFF`] and
/// returns false, as for any other error (logged).
pub(crate) fn accept_failed(l: &TcpListener, e: &io::Error, shared: &Shared) -> bool {
    match e.raw_os_error() {
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE) => {
            match shared.reserve.refuse_one(l, shared) {
                Spare::Refused => true,
                Spare::NothingPending => false,
                Spare::Failed => {
                    std::thread::sleep(FD_BACKOFF);
                    false
                }
            }
        }
        Some(nix::libc::ECONNABORTED) => true,
        _ => {
            log::warn!("accept failed: {e}");
            false
        }
    }
}

/// What giving up the spare descriptor did.
enum Spare {
    /// A connection was accepted and refused.
    Refused,
    /// The backlog was empty after all.
    NothingPending,
    /// Nothing could be accepted even so (another thread took the descriptor).
    Failed,
}

/// A descriptor kept open on /dev/null, to be closed when the process runs out of them so
/// one more connection can be accepted and told so (the idle-descriptor technique of
/// nginx and libev).
#[derive(Default)]
pub(crate) struct Reserve(Mutex<Option<File>>);

impl Reserve {
    /// Takes the spare descriptor (at start-up, while there are descriptors to spare).
    pub(crate) fn arm(&self) {
        if let Ok(mut r) = self.0.lock() {
            if r.is_none() {
                *r = File::open("/dev/null").ok();
            }
        }
    }

    /// Frees the spare, accepts one connection, refuses it, takes the spare back.
    fn refuse_one(&self, l: &TcpListener, shared: &Shared) -> Spare {
        let Ok(mut spare) = self.0.lock() else {
            return Spare::Failed;
        };
        drop(spare.take());
        let done = loop {
            match l.accept() {
                Ok((stream, _)) => {
                    out_of_descriptors(&stream, shared);
                    break Spare::Refused;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Spare::NothingPending,
                Err(_) => break Spare::Failed,
            }
        };
        *spare = File::open("/dev/null").ok();
        done
    }
}

/// Refuses a connection for lack of descriptors: the 421, the counter, a log line at most
/// once a second.
pub(crate) fn out_of_descriptors(stream: &TcpStream, shared: &Shared) {
    refuse(stream, Refusal::NoDescriptors.reply());
    if let Some(a) = shared.admission.get() {
        a.count(Refusal::NoDescriptors);
    }
    if let Some(n) = shared.fd_refusals.hit() {
        log::warn!(
            "out of descriptors (limit {}): refused {n} connection(s) with 421 since the \
             last report",
            super::nofile_limit().map_or_else(|| "?".to_string(), |l| l.to_string())
        );
    }
}

/// Admission of an accepted connection through the server's admission table: its place
/// there, or `None` after the 421 that says why (draining, banned, `max_cons`,
/// `max_cons_per_ip`). (An accepted socket is blocking: Linux does not pass the
/// listener's O_NONBLOCK on.)
///
/// With the PROXY protocol on, a connection from an untrusted address is closed here,
/// without a reply and without taking a place; one from a trusted balancer is admitted
/// under the balancer's address with only `max_cons` checked: its client's bans and
/// `max_cons_per_ip` apply once the session has read the header that names the client
/// (in its own thread or process, never on the accept path).
pub(crate) fn admit(
    stream: &TcpStream,
    addr: SocketAddr,
    shared: &Shared,
    limits: &AcceptLimits,
    proxy: Option<&ProxyProtocol>,
) -> Option<Admitted> {
    let ip = proto::unmap(addr.ip());
    let table = shared.admission(limits.max_cons);
    let r = match proxy {
        None => table.admit(ip, limits.max_cons, limits.max_cons_per_ip),
        Some(pp) if pp.trusts(ip) => table.admit_unaddressed(ip, limits.max_cons),
        Some(pp) => {
            log::warn!(
                "{ip}:{} refused: not a trusted proxy (PROXY protocol is on; trusted: {})",
                addr.port(),
                pp.describe()
            );
            return None;
        }
    };
    match r {
        Ok(t) => Some(Admitted::new(table.clone(), t, ip, limits.max_cons_per_ip)),
        Err(why) => {
            super::admission::log_refusal(ip, addr.port(), why);
            refuse(stream, why.reply());
            None
        }
    }
}

/// Registers an admitted session served in this process, or refuses it for lack of
/// descriptors (see [`Shared::register`]).
pub(crate) fn register_or_refuse(
    shared: &Arc<Shared>,
    stream: &TcpStream,
    admitted: Admitted,
) -> Option<ConnGuard> {
    let guard = shared.register(stream, Some(admitted));
    if guard.is_none() {
        out_of_descriptors(stream, shared);
    }
    guard
}

/// Writes a refusal without letting a slow client stall the accept loop.
pub(crate) fn refuse(stream: &TcpStream, msg: &str) {
    let _ = nix::sys::socket::send(
        stream.as_raw_fd(),
        msg.as_bytes(),
        nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    );
}

/// Session entry points: [`Session::run_with`] or [`Session::run_implicit_tls_with`].
pub(crate) type SessionFn = fn(TcpStream, Arc<FtpHandler>, SessionContext) -> io::Result<()>;

/// The session entry point for a listener: implicit FTPS or plain.
pub(crate) fn entry(implicit_tls: bool) -> SessionFn {
    if implicit_tls {
        // Implicit FTPS: the handshake runs in the session's thread, never the acceptor's.
        Session::run_implicit_tls_with
    } else {
        Session::run_with
    }
}

/// Runs one session through `session` (see [`entry`]) in the context its guard gives it,
/// turning a panic into a log line and a 421.
pub(crate) fn serve_guarded_with(
    stream: TcpStream,
    handler: Arc<FtpHandler>,
    guard: super::ConnGuard,
    process: ProcessKind,
    session: impl FnOnce(TcpStream, Arc<FtpHandler>, SessionContext) -> io::Result<()>,
) {
    let ctx = guard.context(process);
    let r = catch_unwind(AssertUnwindSafe(|| session(stream, handler, ctx)));
    if !matches!(r, Ok(Ok(()))) {
        report_end(r);
    }
    // A pool worker serves its next client's login under the ordinary policy.
    crate::process::batch_scheduling(false);
    drop(guard);
}

/// Logs a session that ended with an error or a panic. Not inlined: this frame stays off
/// the stack under every session (an idle session's thread keeps resident every stack page
/// its deepest call touched).
#[cold]
#[inline(never)]
fn report_end(r: std::thread::Result<io::Result<()>>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("session ended: {e}"),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // The client was told by the control channel as the panic unwound it
            // (`421 Internal error`, session/control.rs).
            log::error!("session panicked: {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Counts the connections handed over.
    #[derive(Default)]
    struct Counting(Cell<usize>);

    impl Dispatch for Counting {
        fn dispatch(
            &self,
            _: TcpStream,
            _: Admitted,
            _: &Arc<FtpHandler>,
            _: &Arc<Shared>,
            _: bool,
        ) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// Under a steady stream of connections the backlog is never empty; one round of accepts
    /// must still end, or the loop never reaps its children (Fork: zombies pile up until
    /// fork fails, and their sessions stay counted against max_cons), nor sees a stop signal.
    /// Found by scripts/soak.sh under multi-proc.
    #[test]
    fn one_round_of_accepts_is_bounded() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let pending = 80; // under std's listen backlog of 128: all complete their handshake
        let _clients: Vec<TcpStream> = (0..pending)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let shared = Shared::new(None).expect("shared");
        let auth = crate::authorizers::DummyAuthorizer::new();
        let handler = Arc::new(FtpHandler::new(Arc::new(auth)));
        let limits = AcceptLimits {
            max_cons: 0,
            max_cons_per_ip: 0,
            idle_timeout: None,
        };
        let runner = Counting::default();
        accept_all(&l, &shared, &handler, &runner, &limits, false);
        assert_eq!(
            runner.0.get(),
            ACCEPT_BATCH,
            "one round takes at most a batch"
        );
        accept_all(&l, &shared, &handler, &runner, &limits, false);
        assert_eq!(runner.0.get(), pending, "the rest in the next round");
    }
}
