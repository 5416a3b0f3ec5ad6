//! The process-per-connection model (pyftpdlib `MultiprocessFTPServer`): the accept loop
//! forks a child for each connection; the child closes the listeners, serves the one session
//! (where it may drop to the logged-in Unix user for good) and exits, releasing its place
//! in the admission table as its session ends; the parent reaps its children without
//! blocking (releasing the place of one that died without doing so) and ends them on
//! shutdown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::acceptor::{self, serve_guarded_with, Dispatch};
use super::admission::Admitted;
use super::shutdown::{wait_refusing, Ending};
use super::{ConnGuard, FtpServer, Shared};
use crate::error::Error;
use crate::handlers::{FtpHandler, SessionContext};
use crate::process::{self, ProcessKind};

/// Forks a child for each connection and remembers it until it is reaped.
struct Forker {
    children: RefCell<HashMap<Pid, ConnGuard>>,
    /// The parent's descriptors a child must not keep: listeners, wake pipe, signalfd.
    close_in_child: Vec<RawFd>,
    /// The server's shared state (for the processes gauge).
    shared: Arc<Shared>,
}

impl Dispatch for Forker {
    fn dispatch(
        &self,
        stream: TcpStream,
        admitted: Admitted,
        handler: &Arc<FtpHandler>,
        shared: &Arc<Shared>,
        implicit_tls: bool,
    ) {
        // The parent holds the admission until it reaps the child, in case the child dies
        // without releasing it; the child releases the same ticket itself when its session
        // ends (before its 221), and the second release is a no-op.
        let guard = shared.count_only(Some(admitted));
        match process::fork("multi-proc") {
            Ok(ForkResult::Parent { child }) => {
                drop(stream);
                let mut children = self.children.borrow_mut();
                children.insert(child, guard);
                set_processes(shared, children.len());
            }
            Ok(ForkResult::Child) => {
                for fd in &self.close_in_child {
                    let _ = nix::unistd::close(*fd);
                }
                let mine = guard.admitted.as_ref().map(|a| a.share());
                // The parent's counters are the parent's; the child leaves them alone.
                std::mem::forget(guard);
                let code = single_session(stream, handler.clone(), implicit_tls, mine, shared);
                std::process::exit(code);
            }
            Err(e) => {
                log::error!("fork failed: {e}; refusing the connection");
                let _ = nix::sys::socket::send(
                    stream.as_raw_fd(),
                    b"421 Service not available.\r\n",
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                );
            }
        }
    }

    fn tick(&self) {
        self.reap();
        // Between connections, with no other thread: the endpoint may be forked again.
        self.shared.keep_metrics();
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

impl Forker {
    /// Collects every child that has exited, uncounting its session.
    fn reap(&self) {
        let mut children = self.children.borrow_mut();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        if self.shared.metrics_reaped(pid, &status) {
                            continue;
                        }
                        if let WaitStatus::Signaled(_, sig, _) = status {
                            log::debug!("session process {pid} ended by {sig}");
                        }
                        children.remove(&pid);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        set_processes(&self.shared, children.len());
    }

    /// Sends `sig` to every live child.
    fn signal_all(&self, sig: Signal) {
        for pid in self.children.borrow().keys() {
            let _ = kill(*pid, sig);
        }
    }

    /// Reaps until no child is left or `limit` has passed, answering new connections with
    /// 421 meanwhile; true if none is left.
    fn wait_children(&self, server: &FtpServer, limit: Duration) -> bool {
        wait_refusing(&server.shared, &server.listeners, limit, || {
            self.reap();
            self.children.borrow().is_empty()
        })
    }

    /// Ends the children as `ending` says: SIGTERM makes a child drain (finish its transfer,
    /// 421 when idle), SIGUSR1 makes it close with 421 at once, SIGKILL is the last resort.
    fn finish(&self, server: &FtpServer, ending: Ending) {
        match ending {
            Ending::Leave => return,
            Ending::Graceful(grace) => {
                server.shared.stop_admitting();
                self.signal_all(Signal::SIGTERM);
                if self.wait_children(server, grace) {
                    return;
                }
                log::info!("grace period over; closing the remaining sessions");
            }
            Ending::Hard => server.shared.stop_admitting(),
        }
        self.signal_all(Signal::SIGUSR1);
        if !self.wait_children(server, Duration::from_secs(5)) {
            self.signal_all(Signal::SIGKILL);
            self.wait_children(server, Duration::from_secs(5));
        }
    }
}

/// The processes gauge: this one and its session children.
fn set_processes(shared: &Shared, children: usize) {
    if let Some(g) = shared.gauges.get() {
        g.set_processes(1 + children);
    }
}

/// The Fork model's `serve_forever`.
pub(super) fn serve(server: &FtpServer) -> Result<(), Error> {
    process::ensure_single_thread("multi-proc").map_err(|e| Error::Config(e.to_string()))?;
    let forker = Forker {
        children: RefCell::new(HashMap::new()),
        close_in_child: parent_fds(server, true),
        shared: server.shared.clone(),
    };
    let accepting = acceptor::Accepting {
        listeners: &server.listeners,
        implicit_tls: &server.implicit_tls,
        handler: &server.handler,
        runner: &forker,
    };
    let stop = acceptor::run(Some(accepting), &server.shared, &server.limits())?;
    forker.finish(server, server.ending(&stop));
    log::info!(
        ">>> shutting down FTP server ({} session processes) <<<",
        forker.children.borrow().len()
    );
    Ok(())
}

/// The parent's own descriptors (and the listeners when `listeners`), which a child closes.
pub(super) fn parent_fds(server: &FtpServer, listeners: bool) -> Vec<RawFd> {
    let mut fds = Vec::new();
    if listeners {
        fds.extend(server.listeners.iter().map(|l| l.as_raw_fd()));
    }
    fds.push(server.shared.wake_rx.as_raw_fd());
    if let Ok(w) = server.shared.wake_tx.lock() {
        fds.push(w.as_raw_fd());
    }
    if let Some(s) = &server.shared.signals {
        fds.push(s.as_raw_fd());
    }
    fds
}

/// Serves one connection in a process of its own (a forked child, inetd "nowait") and
/// returns the exit code. SIGTERM/SIGINT drain the session (a transfer finishes, an idle
/// session gets 421), SIGUSR1 closes it with 421 at once. `admitted` is the session's
/// place in its server's admission table (none under inetd "nowait"); `parent` holds the
/// tables the session shares with its server (rate buckets, counters).
pub(crate) fn single_session(
    stream: TcpStream,
    handler: Arc<FtpHandler>,
    implicit_tls: bool,
    admitted: Option<Admitted>,
    parent: &Shared,
) -> i32 {
    single_session_with(
        stream,
        handler,
        admitted,
        parent,
        acceptor::entry(implicit_tls),
    )
}

/// [`single_session`] with the session started by `session` (inetd "nowait" over a Unix
/// socket, whose addresses the socket cannot tell).
pub(crate) fn single_session_with(
    stream: TcpStream,
    handler: Arc<FtpHandler>,
    admitted: Option<Admitted>,
    parent: &Shared,
    session: impl FnOnce(TcpStream, Arc<FtpHandler>, SessionContext) -> std::io::Result<()>,
) -> i32 {
    let shared = match Shared::new(None) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot set up the session: {e}");
            return 1;
        }
    };
    shared.adopt(parent);
    if let Some(a) = &admitted {
        let _ = shared.admission.set(a.table().clone());
    }
    let Some(guard) = shared.register(&stream, admitted) else {
        acceptor::out_of_descriptors(&stream, &shared);
        return 1;
    };
    watch_signals(&shared);
    serve_guarded_with(stream, handler, guard, ProcessKind::SingleSession, session);
    0
}

/// Starts a thread that turns SIGTERM/SIGINT into a drain and SIGUSR1 into a hard close.
fn watch_signals(shared: &Arc<Shared>) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGUSR1);
    if let Err(e) = set.thread_block() {
        log::warn!("cannot block signals: {e}");
        return;
    }
    let sfd = match SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot read signals: {e}");
            return;
        }
    };
    let shared = shared.clone();
    let r = std::thread::Builder::new()
        .name("ftp-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            match sfd.read_signal() {
                Ok(Some(info)) if info.ssi_signo == Signal::SIGUSR1 as u32 => shared.hard_close(),
                Ok(Some(_)) => shared.drain(),
                Ok(None) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        });
    if let Err(e) = r {
        log::warn!("cannot start the signal thread: {e}");
    }
}
