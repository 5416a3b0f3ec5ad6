//! The pre-fork model (pyftpdlib `--concurrency pre-fork`): N worker processes share the
//! listening sockets, each running the pooled-thread model, so the server uses every core;
//! they admit sessions through one admission table, so the limits count every worker's
//! sessions together. The parent only supervises: it replaces a worker that dies (and
//! releases the sessions it held), forwards shutdown and, while the workers drain, answers
//! new connections with 421.

use std::collections::HashMap;
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
    // Each worker has its slot in the gauges (1..=workers), reused by its replacement.
    let mut pids: Workers = HashMap::new();
    for slot in 1..=workers {
        pids.insert(spawn_worker(server, slot)?, slot);
    }
    set_processes(server, &pids);
    log::info!("pre-fork: {workers} worker processes");
    let table = server.shared.admission(server.max_cons).clone();
    let stop = supervise(server, &mut pids, workers, &table)?;
    stop_workers(server, pids, &stop, &table);
    log::info!(">>> shutting down FTP server (pre-fork) <<<");
    Ok(())
}

/// The workers by pid, with their slot in the gauges.
type Workers = HashMap<Pid, usize>;

/// The processes gauge: the supervisor and its workers.
fn set_processes(server: &FtpServer, pids: &Workers) {
    if let Some(g) = server.shared.gauges.get() {
        g.set_processes(1 + pids.len());
    }
}

/// Keeps `workers` workers running (replacing any that dies) until the server is closed or
/// a stop signal comes; on SIGHUP, reloads and passes the signal on to every worker.
fn supervise(
    server: &FtpServer,
    pids: &mut Workers,
    workers: usize,
    table: &Admission,
) -> Result<Stop, Error> {
    let shared = &server.shared;
    loop {
        reap(pids, table, server, |pid, _, status| {
            log::warn!("worker {pid} died ({status:?}); starting another");
        });
        for slot in 1..=workers {
            if pids.values().any(|s| *s == slot) {
                continue;
            }
            match spawn_worker(server, slot) {
                Ok(pid) => {
                    pids.insert(pid, slot);
                }
                Err(e) => {
                    log::error!("cannot start a worker: {e}");
                    break;
                }
            }
        }
        set_processes(server, pids);
        shared.keep_metrics();
        if shared.shutdown.load(Ordering::SeqCst) {
            return Ok(Stop::Closed);
        }
        let wait = shared.report().map_or(Duration::from_millis(200), |r| {
            r.min(Duration::from_millis(200))
        });
        match acceptor::wait(&[], shared, Some(wait))?.stop(shared) {
            Some(Stop::Signal(Signal::SIGHUP)) => {
                log::info!("received SIGHUP, reloading and passing it on to the workers");
                shared.reload();
                for pid in pids.keys() {
                    let _ = kill(*pid, Signal::SIGHUP);
                }
            }
            Some(stop) => return Ok(stop),
            None => {}
        }
    }
}

/// Tells the workers to stop as `stop` asks (SIGUSR1: close now; SIGTERM: drain) and waits
/// for them, answering new connections with 421 meanwhile; kills those that do not stop.
fn stop_workers(server: &FtpServer, mut pids: Workers, stop: &Stop, table: &Admission) {
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
    for pid in pids.keys() {
        let _ = kill(*pid, sig);
    }
    let wait = |pids: &mut Workers, limit| {
        wait_refusing(shared, &server.listeners, limit, || {
            reap(pids, table, server, |_, _, _| {});
            pids.is_empty()
        })
    };
    if !wait(&mut pids, limit) {
        for pid in pids.keys() {
            log::warn!("worker {pid} did not stop; killing it");
            let _ = kill(*pid, Signal::SIGKILL);
        }
        wait(&mut pids, Duration::from_secs(5));
    }
}

/// Collects exited workers, releasing the sessions each still held in the admission table
/// (a worker that died cannot), clearing its gauges and calling `died` for each.
fn reap(
    pids: &mut Workers,
    table: &Admission,
    server: &FtpServer,
    mut died: impl FnMut(Pid, usize, WaitStatus),
) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    if server.shared.metrics_reaped(pid, &status) {
                        continue;
                    }
                    if let Some(slot) = pids.remove(&pid) {
                        let n = table.release_owned_by(pid.as_raw() as u32);
                        if n > 0 {
                            log::warn!("released {n} session(s) of worker {pid}");
                        }
                        if let Some(g) = server.shared.gauges.get() {
                            g.clear(slot);
                        }
                        died(pid, slot, status);
                    }
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
}

/// Forks one worker, which reports its pool in gauge slot `slot`; in the child this never
/// returns.
fn spawn_worker(server: &FtpServer, slot: usize) -> Result<Pid, Error> {
    if let Some(g) = server.shared.gauges.get() {
        g.clear(slot);
    }
    match process::fork("pre-fork")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            for fd in parent_fds(server, false) {
                let _ = nix::unistd::close(fd);
            }
            std::process::exit(worker_main(server, slot))
        }
    }
}

/// A worker: the pooled-thread model on the shared listeners until SIGTERM (graceful) or
/// SIGUSR1 (close now).
fn worker_main(server: &FtpServer, slot: usize) -> i32 {
    let shared = match stop_signals().and_then(|s| Shared::new(Some(s))) {
        Ok(s) => s,
        Err(e) => {
            log::error!("worker {}: cannot set up: {e}", std::process::id());
            return 1;
        }
    };
    // The parent's tables, made before the fork in shared memory: one admission count, one
    // set of rate buckets and one set of counters for every worker (a table of the
    // worker's own would make `max_*_rate` and `user_*_limit` hold per worker).
    shared.adopt(&server.shared);
    let gauge = shared.gauges.get().and_then(|g| g.slot(slot));
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
        (server.stack_size, gauge),
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
