//! A small blocking connection pool: at most `size` connections, opened on demand, handed
//! to one session thread at a time, replaced when they break.
//!
//! Why not r2d2: r2d2 starts a scheduled thread pool (three threads) when the pool is built,
//! which the Fork and PreFork models forbid (`fork()` only while the process has no other
//! thread), and brings `scheduled-thread-pool` and `parking_lot`. This pool has no thread
//! of its own: `size` permits travel through a bounded crossbeam channel (already a
//! dependency) and idle connections wait on a stack, the most recently used on top (so a
//! light load keeps reusing one connection). Taking a permit is the only wait: at most
//! `size` queries run at once, and a session that finds none free waits up to
//! `acquire_timeout` without stalling any other session.

use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::{Conn, DbError};

/// Opens connections (one backend: SQLite, PostgreSQL, or a test's fake).
pub(crate) trait Connect: Send + Sync {
    /// A new connection, its schema checked.
    fn connect(&self) -> Result<Box<dyn Conn>, DbError>;
}

/// A connection and the process that opened it: a connection inherited across `fork()`
/// shares its socket or file locks with the parent and is never used in the child.
struct Idle {
    pid: u32,
    conn: Box<dyn Conn>,
}

/// The pool. Connections in use never outnumber the permits taken, and a connection is
/// opened only when none is idle, so at most `size` exist.
pub(crate) struct Pool {
    connector: Box<dyn Connect>,
    size: usize,
    give: Sender<()>,
    take: Receiver<()>,
    idle: Mutex<Vec<Idle>>,
    acquire_timeout: Duration,
}

impl Pool {
    /// A pool of `size` (at least 1) connections, none opened yet.
    pub(crate) fn new(connector: Box<dyn Connect>, size: usize, acquire_timeout: Duration) -> Pool {
        let size = size.max(1);
        let (give, take) = bounded(size);
        for _ in 0..size {
            // Cannot fail: the channel has room for exactly `size` permits.
            let _ = give.send(());
        }
        Pool {
            connector,
            size,
            give,
            take,
            idle: Mutex::new(Vec::with_capacity(size)),
            acquire_timeout,
        }
    }

    /// Runs `f` on a pooled connection. A connection that fails with a connection error
    /// (the server restarted, an idle connection was closed) is replaced and `f` tried once
    /// more on the fresh one; a broken connection never goes back to the pool.
    ///
    /// # Errors
    /// No permit within the acquire timeout, no connection, or `f`'s error.
    pub(crate) fn run<T>(
        &self,
        mut f: impl FnMut(&mut dyn Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut slot = self.acquire()?;
        let reused = slot.conn.is_some();
        let r = f(slot.conn_or_connect()?);
        match r {
            Err(e) if e.is_connection() && reused => {
                slot.conn = None;
                let r = f(slot.conn_or_connect()?);
                slot.keep_if(&r);
                r
            }
            r => {
                slot.keep_if(&r);
                r
            }
        }
    }

    /// Closes the idle connections (they reopen on demand).
    pub(crate) fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.lock_idle());
        drop(idle);
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn acquire(&self) -> Result<Slot<'_>, DbError> {
        self.take.recv_timeout(self.acquire_timeout).map_err(|_| {
            DbError::unavailable(format!(
                "no database connection free within {:?} (all {} in use)",
                self.acquire_timeout, self.size
            ))
        })?;
        let me = std::process::id();
        let mut idle = self.lock_idle();
        let conn = loop {
            match idle.pop() {
                Some(i) if i.pid == me => break Some(i.conn),
                // Opened by the parent before fork(): closing it here would close the
                // parent's session (PostgreSQL Terminate) or its locks; leave it alone.
                Some(inherited) => std::mem::forget(inherited),
                None => break None,
            }
        };
        Ok(Slot { pool: self, conn })
    }
}

/// A taken permit and its connection; dropping it gives both back (the connection only
/// if healthy).
struct Slot<'a> {
    pool: &'a Pool,
    conn: Option<Box<dyn Conn>>,
}

impl Slot<'_> {
    fn conn_or_connect(&mut self) -> Result<&mut dyn Conn, DbError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.connector.connect()?,
        };
        Ok(self.conn.insert(conn).as_mut())
    }

    /// Drops the connection after a connection error, so the next user opens a new one.
    fn keep_if<T>(&mut self, r: &Result<T, DbError>) {
        if let Err(e) = r {
            if e.is_connection() {
                self.conn = None;
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lock_idle().push(Idle {
                pid: std::process::id(),
                conn,
            });
        }
        // Cannot block or fail: this permit's place in the channel is free.
        let _ = self.pool.give.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorizers::sql::{RawRow, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Counters {
        opened: AtomicUsize,
        busy: AtomicUsize,
        max_busy: AtomicUsize,
        fail_next: AtomicUsize,
    }

    struct Fake(Arc<Counters>);
    struct FakeConn(Arc<Counters>);

    impl Connect for Fake {
        fn connect(&self) -> Result<Box<dyn Conn>, DbError> {
            self.0.opened.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FakeConn(self.0.clone())))
        }
    }

    impl Conn for FakeConn {
        fn query_users(&mut self, _: &str, _: &[Value]) -> Result<Vec<RawRow>, DbError> {
            let c = &self.0;
            if c.fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(DbError::connection("connection reset"));
            }
            let now = c.busy.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_busy.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            c.busy.fetch_sub(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64, DbError> {
            Ok(0)
        }
        fn migrate(&mut self) -> Result<i64, DbError> {
            Ok(0)
        }
    }

    fn pool(size: usize) -> (Arc<Pool>, Arc<Counters>) {
        let c = Arc::new(Counters::default());
        let p = Pool::new(Box::new(Fake(c.clone())), size, Duration::from_secs(20));
        (Arc::new(p), c)
    }

    #[test]
    fn never_more_than_size_connections_or_queries() {
        let (p, c) = pool(3);
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        p.run(|c| c.query_users("", &[])).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.opened.load(Ordering::SeqCst) <= 3);
        assert!(c.max_busy.load(Ordering::SeqCst) <= 3);
        assert!(c.max_busy.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn sequential_use_keeps_one_connection() {
        let (p, c) = pool(8);
        for _ in 0..20 {
            p.run(|c| c.query_users("", &[])).unwrap();
        }
        assert_eq!(c.opened.load(Ordering::SeqCst), 1);
        p.close_idle();
        p.run(|c| c.query_users("", &[])).unwrap();
        assert_eq!(c.opened.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_broken_connection_is_replaced_and_the_query_retried_once() {
        let (p, c) = pool(1);
        p.run(|c| c.query_users("", &[])).unwrap();
        assert_eq!(c.opened.load(Ordering::SeqCst), 1);
        // The pooled connection breaks: reopened and retried transparently.
        c.fail_next.store(1, Ordering::SeqCst);
        p.run(|c| c.query_users("", &[])).unwrap();
        assert_eq!(c.opened.load(Ordering::SeqCst), 2);
        // Broken twice in a row (the fresh one too): the error comes out, nothing is kept.
        c.fail_next.store(2, Ordering::SeqCst);
        assert!(p
            .run(|c| c.query_users("", &[]))
            .unwrap_err()
            .is_connection());
        p.run(|c| c.query_users("", &[])).unwrap();
        assert_eq!(c.opened.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn no_free_slot_is_an_unavailable_error() {
        let c = Arc::new(Counters::default());
        let p = Pool::new(Box::new(Fake(c)), 1, Duration::from_millis(50));
        let e = p
            .run(|_| p.run(|c| c.query_users("", &[])).map(|_| ()))
            .unwrap_err();
        assert!(e.to_string().contains("no database connection free"), "{e}");
    }
}
