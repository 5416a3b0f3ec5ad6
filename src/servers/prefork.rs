//! The pre-fork model (pyftpdlib `--concurrency pre-fork`): N worker processes share the
//! listening sockets, each running the pooled-thread model, so the server uses every core;
//! they admit sessions through one admission table, so the limits count every worker's
//! sessions together. The parent only supervises: it replaces a worker that dies (and
//! releases the sessions it held), forwards shutdown and, while the workers drain, answers
//! new connections with 421.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::acceptor::{self, AcceptLimits, Stop};
use super::admission::Admission;
use super::fork::parent_fds;
use super::pool::Pool;
use super::shutdown::{stop_signals, wait_refusing, Ending};
use super::{FtpServer, Shared};
use crate::error::Error;
use crate::process;

/// The PreFork model's `serve_forever`.
pub(super) fn serve(server: &FtpServer, workers: usize) -> Result<(), Error> {
    process::ensure_single_thread("pre-fork").map_err(|e| Error::Config(e.to_string()))?;
    let workers = workers.max(1);
    let mut pids: HashSet<Pid> = HashSet::new();
    for _ in 0..workers {
        pids.insert(spawn_worker(server)?);
    }
    log::info!("pre-fork: {workers} worker processes");
    let table = server.shared.admission(server.max_cons).clone();
    let stop = supervise(server, &mut pids, workers, &table)?;
    stop_workers(server, pids, &stop, &table);
    log::info!(">>> shutting down FTP server (pre-fork) <<<");
    Ok(())
}

/// Keeps `workers` workers running (replacing any that dies) until the server is closed or
/// a stop signal comes.
fn supervise(
    server: &FtpServer,
    pids: &mut HashSet<Pid>,
    workers: usize,
    table: &Admission,
) -> Result<Stop, Error> {
    let shared = &server.shared;
    loop {
        reap(pids, table, |pid, status| {
            log::warn!("worker {pid} died ({status:?}); starting another");
        });
        while pids.len() < workers {
            match spawn_worker(server) {
                Ok(pid) => {
                    pids.insert(pid);
                }
                Err(e) => {
                    log::error!("cannot start a worker: {e}");
                    break;
                }
            }
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            return Ok(Stop::Closed);
        }
        if let Some(stop) =
            acceptor::wait(&[], shared, Some(Duration::from_millis(200)))?.stop(shared)
        {
            return Ok(stop);
        }
    }
}

/// Tells the workers to stop as `stop` asks (SIGUSR1: close now; SIGTERM: drain) and waits
/// for them, answering new connections with 421 meanwhile; kills those that do not stop.
fn stop_workers(server: &FtpServer, mut pids: HashSet<Pid>, stop: &Stop, table: &Admission) {
    let shared = &server.shared;
    let (sig, limit) = match server.ending(stop) {
        Ending::Hard => (Signal::SIGUSR1, Duration::from_secs(5)),
        Ending::Graceful(g) => (Signal::SIGTERM, g + Duration::from_secs(10)),
        Ending::Leave => (
            Signal::SIGTERM,
            server.shutdown_grace + Duration::from_secs(10),
        ),
    };
    shared.stop_admitting();
    for pid in &pids {
        let _ = kill(*pid, sig);
    }
    let wait = |pids: &mut HashSet<Pid>, limit| {
        wait_refusing(shared, &server.listeners, limit, || {
            reap(pids, table, |_, _| {});
            pids.is_empty()
        })
    };
    if !wait(&mut pids, limit) {
        for pid in &pids {
            log::warn!("worker {pid} did not stop; killing it");
            let _ = kill(*pid, Signal::SIGKILL);
        }
        wait(&mut pids, Duration::from_secs(5));
    }
}

/// Collects exited workers, releasing the sessions each still held in the admission table
/// (a worker that died cannot) and calling `died` for each.
fn reap(pids: &mut HashSet<Pid>, table: &Admission, mut died: impl FnMut(Pid, WaitStatus)) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    if pids.remove(&pid) {
                        let n = table.release_owned_by(pid.as_raw() as u32);
                        if n > 0 {
                            log::warn!("released {n} session(s) of worker {pid}");
                        }
                        died(pid, status);
                    }
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
}

/// Forks one worker; in the child this never returns.
fn spawn_worker(server: &FtpServer) -> Result<Pid, Error> {
    match process::fork("pre-fork")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            for fd in parent_fds(server, false) {
                let _ = nix::unistd::close(fd);
            }
            std::process::exit(worker_main(server))
        }
    }
}

/// A worker: the pooled-thread model on the shared listeners until SIGTERM (graceful) or
/// SIGUSR1 (close now).
fn worker_main(server: &FtpServer) -> i32 {
    let shared = match stop_signals().and_then(|s| Shared::new(Some(s))) {
        Ok(s) => s,
        Err(e) => {
            log::error!("worker {}: cannot set up: {e}", std::process::id());
            return 1;
        }
    };
    // The parent's tables, made before the fork in shared memory: one admission count and
    // one set of rate buckets for every worker (a table of the worker's own would make
    // `max_*_rate` and `user_*_limit` hold per worker).
    if let Some(table) = server.shared.admission.get() {
        let _ = shared.admission.set(table.clone());
    }
    if let Some(rates) = server.shared.rates.get() {
        let _ = shared.rates.set(rates.clone());
    }
    let limits = AcceptLimits {
        max_cons: server.max_cons,
        max_cons_per_ip: server.max_cons_per_ip,
        idle_timeout: None,
    };
    let pool = match Pool::start(
        &server.listeners,
        &server.implicit_tls,
        &shared,
        &server.handler,
        limits,
        server.stack_size,
    ) {
        Ok(p) => p,
        Err(e) => {
            log::error!("worker {}: cannot start its pool: {e}", std::process::id());
            return 1;
        }
    };
    let stop = acceptor::run(None, &shared, &limits);
    pool.close();
    match stop {
        Ok(Stop::Signal(Signal::SIGUSR1)) => {
            shared.hard_close();
            shared.wait_sessions(&[], Duration::from_secs(5));
        }
        // The parent answers new connections while the workers drain.
        Ok(_) => shared.graceful(server.shutdown_grace, &[]),
        Err(e) => {
            log::error!("worker {}: accept loop failed: {e}", std::process::id());
            return 1;
        }
    }
    0
}
