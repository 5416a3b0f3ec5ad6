//! Concurrency models (pyftpdlib `FTPServer`, `ThreadedFTPServer`,
//! `MultiprocessFTPServer`): the [`Executor`] choice, and the Thread model's dispatcher
//! (the pool is pool.rs, the process models fork.rs and prefork.rs). Every model runs the
//! session inside `catch_unwind`, so a panic ends one session and the server keeps serving.
//!
//! Only the Thread and Fork models have a thread that accepts for them (acceptor.rs) and
//! hands each connection over. The Pool accepts by itself: its idle workers wait on one
//! epoll instance holding the listeners (EPOLLONESHOT), and the one woken accepts, re-arms
//! and serves the session on its own stack (leader/followers). Measured against a pool fed
//! through a channel by an accept thread, it moves no connection between threads, wakes one
//! thread per connection instead of two, and keeps idle workers' stacks small; its accept
//! thread only waits for the stop. Every session still gets the same
//! [`SessionContext`](crate::handlers::SessionContext) from its guard.

use std::sync::Arc;

/// How sessions get their threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executor {
    /// Reusable worker threads that accept connections themselves, grown on demand (the
    /// default; mirrors pyftpdlib `FTPServer`'s role as the default server).
    Pool,
    /// A fresh thread per connection (pyftpdlib `ThreadedFTPServer`).
    Thread,
    /// A child process per connection (pyftpdlib `MultiprocessFTPServer`): the child
    /// closes the listeners, serves the session and exits; after login it may drop to the
    /// logged-in Unix user for good. The server must run in a process with no other thread.
    Fork,
    /// `workers` processes share the listeners, each running the [`Pool`](Executor::Pool)
    /// model, so every core serves (pyftpdlib `--concurrency pre-fork`); a worker that
    /// dies is replaced. `max_cons` and `max_cons_per_ip` count the sessions of every
    /// worker together.
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

/// The Thread model's dispatcher: a fresh thread per session.
pub(crate) struct Runner {
    stack_size: usize,
}

impl Runner {
    pub(crate) fn new(stack_size: usize) -> Runner {
        Runner { stack_size }
    }

    /// Runs `job` on a new thread.
    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let r = std::thread::Builder::new()
            .name("ftp-session".into())
            .stack_size(self.stack_size)
            .spawn(job);
        if let Err(e) = r {
            log::error!("cannot start a session thread: {e}");
        }
    }
}

impl super::acceptor::Dispatch for Runner {
    fn dispatch(
        &self,
        stream: std::net::TcpStream,
        admitted: super::admission::Admitted,
        handler: &Arc<crate::handlers::FtpHandler>,
        shared: &Arc<super::Shared>,
        implicit_tls: bool,
    ) {
        let Some(guard) = super::acceptor::register_or_refuse(shared, &stream, admitted) else {
            return;
        };
        let handler = handler.clone();
        let session = super::acceptor::entry(implicit_tls);
        self.spawn(move || {
            super::acceptor::serve_guarded_with(
                stream,
                handler,
                guard,
                crate::handlers::ProcessKind::Shared,
                session,
            )
        });
    }
}
