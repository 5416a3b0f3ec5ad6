//! Concurrency models (pyftpdlib `FTPServer`, `ThreadedFTPServer`): how an accepted
//! connection gets a thread. Every model runs the session inside `catch_unwind`, so a panic
//! ends one session and the server keeps serving.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// A unit of work: serve one connection.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// How sessions get their threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executor {
    /// Reusable worker threads fed through a channel, grown on demand up to `max_cons`
    /// (the default; mirrors pyftpdlib `FTPServer`'s role as the default server).
    Pool,
    /// A fresh thread per connection (pyftpdlib `ThreadedFTPServer`).
    Thread,
    /// A child process per connection (pyftpdlib `MultiprocessFTPServer`): the child
    /// closes the listeners, serves the session and exits; after login it may drop to the
    /// logged-in Unix user for good. The server must run in a process with no other thread.
    Fork,
    /// `workers` processes share the listeners, each running the [`Pool`](Executor::Pool)
    /// model, so every core serves (pyftpdlib `--concurrency pre-fork`); a worker that
    /// dies is replaced. `max_cons` is split evenly between workers; `max_cons_per_ip`
    /// applies within each worker.
    PreFork {
        /// Worker processes (at least 1).
        workers: usize,
    },
}

impl Executor {
    /// The name pyftpdlib's `--concurrency` uses for this model.
    pub fn name(self) -> &'static str {
        match self {
            Executor::Pool => "pool",
            Executor::Thread => "multi-thread",
            Executor::Fork => "multi-proc",
            Executor::PreFork { .. } => "pre-fork",
        }
    }
}

/// Default stack of a session thread: sessions keep their buffers on the heap, so a small
/// stack keeps a thousand idle sessions cheap.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// How long an idle pool worker waits for work before exiting.
const IDLE_WORKER: Duration = Duration::from_secs(60);

/// Runs jobs on threads according to an [`Executor`].
pub(crate) struct Runner {
    kind: Executor,
    stack_size: usize,
    tx: Sender<Job>,
    rx: Receiver<Job>,
    workers: Arc<AtomicUsize>,
}

impl Runner {
    pub(crate) fn new(kind: Executor, stack_size: usize) -> Runner {
        // A rendezvous channel: a send succeeds only when a worker is idle and waiting.
        let (tx, rx) = crossbeam_channel::bounded(0);
        Runner {
            kind,
            stack_size,
            tx,
            rx,
            workers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Worker threads alive (pool) — for logs and tests.
    pub(crate) fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    /// Runs `job` on an idle worker, a new worker, or a new thread.
    pub(crate) fn spawn(&self, job: Job) {
        match self.kind {
            Executor::Thread | Executor::Fork => {
                let r = std::thread::Builder::new()
                    .name("ftp-session".into())
                    .stack_size(self.stack_size)
                    .spawn(job);
                if let Err(e) = r {
                    log::error!("cannot start a session thread: {e}");
                }
            }
            Executor::Pool | Executor::PreFork { .. } => match self.tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                    self.grow(job)
                }
            },
        }
    }

    fn grow(&self, first: Job) {
        let rx = self.rx.clone();
        let workers = self.workers.clone();
        workers.fetch_add(1, Ordering::Relaxed);
        let r = std::thread::Builder::new()
            .name("ftp-worker".into())
            .stack_size(self.stack_size)
            .spawn(move || {
                first();
                while let Ok(job) = rx.recv_timeout(IDLE_WORKER) {
                    job();
                }
                workers.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = r {
            self.workers.fetch_sub(1, Ordering::Relaxed);
            log::error!("cannot start a worker thread: {e}");
        }
    }
}

impl super::acceptor::Dispatch for Runner {
    fn dispatch(
        &self,
        stream: std::net::TcpStream,
        ip: std::net::IpAddr,
        handler: &Arc<crate::handlers::FtpHandler>,
        shared: &Arc<super::Shared>,
        implicit_tls: bool,
    ) {
        let guard = shared.register(&stream, ip);
        let handler = handler.clone();
        let session = super::acceptor::entry(implicit_tls);
        self.spawn(Box::new(move || {
            super::acceptor::serve_guarded_with(stream, handler, guard, session)
        }));
    }
}
