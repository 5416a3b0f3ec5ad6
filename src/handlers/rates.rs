//! Rate limits, by scope: the session's own (pyftpdlib `ThrottledDTPHandler.read_limit` /
//! `write_limit`), one shared by a user's sessions and one shared by every session of the
//! server. [`SessionRates`] are what a login decides from the handler and the authorizer;
//! [`RateTable`] holds the shared buckets, one pair (read, write) for the whole server and
//! one per logged-in user, in an anonymous `MAP_SHARED` mapping so that they hold across the
//! threads of the Pool/Thread executors and across the processes of Fork/PreFork. The table
//! is live state: the server makes it (before any `fork()`, so every child inherits the same
//! pages) and hands it to each session in its [`SessionContext`](super::SessionContext);
//! the handler, a configuration value, holds only the rates. Every bucket is the crate's one
//! primitive, [`ratelimit::Bucket`](crate::ratelimit::Bucket).
//!
//! Layout of the table: an array of [`Slot`]s. Slot 0 is the server's: its buckets are the
//! server-wide limits, its `refs` word is the table lock (holding the locker's pid) and its
//! `key` word the number of user slots ever used. Slots 1.. belong to users, found by a
//! 64-bit hash of the name. Buckets are single atomics, so transfers never take the lock;
//! only login and logout do, for a scan of the used slots.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::FtpHandler;
use crate::authorizers::UserLimits;
use crate::ratelimit::{Bucket, Clock, MonotonicClock};
use crate::shm::{self, SharedArray, ZeroedAtomics};

/// User slots of [`RateTable::new`]: users with a shared limit logged in at once.
pub const DEFAULT_USER_SLOTS: usize = 1024;

/// Which way a transfer moves bytes, from the server's side (pyftpdlib's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Receiving: uploads (STOR, APPE, STOU) — `read_limit`.
    Read = 0,
    /// Sending: downloads and listings (RETR, LIST…) — `write_limit`.
    Write = 1,
}

/// Who a rate limit is shared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One session alone (`read_limit`, `write_limit`).
    Session,
    /// Every session of one user (`user_read_limit`, `user_write_limit`).
    User,
    /// Every session of the server (`max_read_rate`, `max_write_rate`).
    Server,
}

impl FtpHandler {
    /// The handler's rate for a scope and direction, bytes/s (0: unlimited).
    pub fn rate(&self, scope: Scope, dir: Direction) -> u64 {
        match (scope, dir) {
            (Scope::Session, Direction::Read) => self.read_limit,
            (Scope::Session, Direction::Write) => self.write_limit,
            (Scope::User, Direction::Read) => self.user_read_limit,
            (Scope::User, Direction::Write) => self.user_write_limit,
            (Scope::Server, Direction::Read) => self.max_read_rate,
            (Scope::Server, Direction::Write) => self.max_write_rate,
        }
    }
}

/// The authorizer's override of a session or user rate, if it sets one.
fn user_override(u: &UserLimits, scope: Scope, dir: Direction) -> Option<u64> {
    match (scope, dir) {
        (Scope::Session, Direction::Read) => u.read_limit,
        (Scope::Session, Direction::Write) => u.write_limit,
        (Scope::User, Direction::Read) => u.user_read_limit,
        (Scope::User, Direction::Write) => u.user_write_limit,
        (Scope::Server, _) => None,
    }
}

/// The rates of a logged-in session, decided at login from the handler and the authorizer,
/// with its hold on the user's shared buckets when a per-user rate applies.
#[derive(Debug, Default)]
pub(crate) struct SessionRates {
    /// Per direction: the session's own rate and the user's shared one (bytes/s, 0: none).
    own: [u64; 2],
    user: [u64; 2],
    slot: Option<Arc<UserSlot>>,
}

impl SessionRates {
    /// The rates of `user`: the authorizer's [`UserLimits`] where set, the handler's
    /// otherwise; takes the user's slot in `table` when a per-user rate applies.
    pub(crate) fn at_login(h: &FtpHandler, table: &Arc<RateTable>, user: &str) -> SessionRates {
        let u: UserLimits = h.authorizer.get_limits(user);
        let pick = |scope, dir| user_override(&u, scope, dir).unwrap_or(h.rate(scope, dir));
        let dirs = [Direction::Read, Direction::Write];
        let own = dirs.map(|d| pick(Scope::Session, d));
        let user_rates = dirs.map(|d| pick(Scope::User, d));
        let slot = if user_rates.iter().any(|r| *r > 0) {
            table.acquire(user, MonotonicClock.now()).map(Arc::new)
        } else {
            None
        };
        SessionRates {
            own,
            user: user_rates,
            slot,
        }
    }

    /// The session's own rate in a direction (0: unlimited).
    pub(crate) fn own(&self, dir: Direction) -> u64 {
        self.own[dir as usize]
    }

    /// The user's shared bucket in a direction with its rate, if one applies.
    pub(crate) fn user(&self, dir: Direction) -> Option<(&Arc<UserSlot>, u64)> {
        let rate = self.user[dir as usize];
        self.slot.as_ref().filter(|_| rate > 0).map(|s| (s, rate))
    }
}

/// One user's (or the server's) shared state: 32 bytes, all atomics, valid when zeroed (which
/// is how a fresh anonymous mapping starts).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Hash of the user name (0: never used). Slot 0: user slots ever used.
    key: AtomicU64,
    /// Sessions holding the slot. Slot 0: the table lock (pid of the holder, 0 when free).
    refs: AtomicU32,
    _pad: AtomicU32,
    /// Read (upload) and write (download) buckets.
    buckets: [Bucket; 2],
}

// SAFETY: `repr(C)`, only atomics (alignment 8), valid when zeroed.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Slot {}

/// The registry of shared buckets: the server-wide pair and one pair per user. Made by the
/// server and passed to its sessions in their [`SessionContext`](super::SessionContext);
/// sessions take a [`UserSlot`] at login.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ftpdlib::handlers::throttle::{Direction, RateTable};
///
/// let limits = Arc::new(RateTable::with_capacity(8));
/// assert!(limits.is_process_shared());
/// let now = Duration::from_secs(100);
/// let a = limits.acquire("bob", now).unwrap();
/// let b = limits.acquire("bob", now).unwrap();
/// assert!(std::ptr::eq(a.bucket(Direction::Write), b.bucket(Direction::Write)));
/// ```
pub struct RateTable {
    slots: SharedArray<Slot>,
}

impl std::fmt::Debug for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("capacity", &self.capacity())
            .field("process_shared", &self.is_process_shared())
            .finish()
    }
}

impl Default for RateTable {
    fn default() -> Self {
        RateTable::new()
    }
}

impl RateTable {
    /// A registry for up to [`DEFAULT_USER_SLOTS`] users at once.
    pub fn new() -> RateTable {
        RateTable::with_capacity(DEFAULT_USER_SLOTS)
    }

    /// A registry for up to `users` distinct users logged in at once (with a shared limit).
    /// The memory is an anonymous `MAP_SHARED` mapping, so build it before forking: children
    /// then share it. If mmap(2) fails it falls back to ordinary memory (threads only) and
    /// logs a warning.
    pub fn with_capacity(users: usize) -> RateTable {
        let l = RateTable {
            slots: SharedArray::new(users.saturating_add(1), "rate limits"),
        };
        let now = MonotonicClock.now();
        // The server buckets start empty, like a session's: no burst at start-up.
        for b in &l.slots()[0].buckets {
            b.reset(now);
        }
        l
    }

    fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// True when the buckets live in shared memory and so hold across `fork()`.
    pub fn is_process_shared(&self) -> bool {
        self.slots.is_process_shared()
    }

    /// How many users can hold a slot at once.
    pub fn capacity(&self) -> usize {
        self.slots().len() - 1
    }

    /// The server-wide bucket for a direction.
    pub fn server_bucket(&self, dir: Direction) -> &Bucket {
        &self.slots()[0].buckets[dir as usize]
    }

    /// Users holding a slot now (for logs and tests).
    pub fn active_users(&self) -> usize {
        let _g = self.lock();
        let used = self.used();
        self.slots()[1..=used]
            .iter()
            .filter(|s| s.refs.load(Ordering::Relaxed) > 0)
            .count()
    }

    fn used(&self) -> usize {
        (self.slots()[0].key.load(Ordering::Relaxed) as usize).min(self.capacity())
    }

    /// The slot of `user`, shared with every other session of that user (in any process
    /// sharing this registry); `now` is the [`MonotonicClock`] time, used when a new slot's
    /// buckets start empty. `None` when every slot is held by other users (logged; the user
    /// then has no shared limit).
    pub fn acquire(self: &Arc<Self>, user: &str, now: Duration) -> Option<UserSlot> {
        let key = name_key(user);
        let slots = self.slots();
        let g = self.lock();
        let used = self.used();
        let mut found = None;
        let mut reuse = None;
        for (i, s) in slots.iter().enumerate().take(used + 1).skip(1) {
            if s.key.load(Ordering::Relaxed) == key {
                found = Some(i);
                break;
            }
            if reuse.is_none() && s.refs.load(Ordering::Relaxed) == 0 {
                reuse = Some(i);
            }
        }
        let index = match found {
            Some(i) => i,
            None => {
                let i = match reuse {
                    Some(i) => i,
                    None if used < self.capacity() => {
                        slots[0].key.store(used as u64 + 1, Ordering::Relaxed);
                        used + 1
                    }
                    None => {
                        drop(g);
                        log::warn!(
                            "all {} shared rate-limit slots in use; no user limit for {user:?}",
                            self.capacity()
                        );
                        return None;
                    }
                };
                let s = &slots[i];
                s.key.store(key, Ordering::Relaxed);
                for b in &s.buckets {
                    b.reset(now);
                }
                i
            }
        };
        slots[index].refs.fetch_add(1, Ordering::Relaxed);
        drop(g);
        Some(UserSlot {
            limits: self.clone(),
            index,
        })
    }

    /// Takes the table lock (see [`shm::lock`]).
    fn lock(&self) -> shm::LockGuard<'_> {
        shm::lock(&self.slots()[0].refs, "rate-limit")
    }
}

/// FNV-1a, never 0 (0 marks an unused slot).
fn name_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// A session's hold on its user's shared buckets; released when dropped (logout, end of
/// session).
pub struct UserSlot {
    limits: Arc<RateTable>,
    index: usize,
}

impl std::fmt::Debug for UserSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSlot")
            .field("index", &self.index)
            .finish()
    }
}

impl UserSlot {
    /// The user's bucket for a direction.
    pub fn bucket(&self, dir: Direction) -> &Bucket {
        &self.limits.slots()[self.index].buckets[dir as usize]
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let _g = self.limits.lock();
        let refs = &self.limits.slots()[self.index].refs;
        let n = refs.load(Ordering::Relaxed);
        refs.store(n.saturating_sub(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_per_user_and_reused() {
        let l = Arc::new(RateTable::with_capacity(2));
        assert!(l.is_process_shared());
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let now = Duration::from_secs(10);
        let a1 = l.acquire("alice", now).unwrap();
        let a2 = l.acquire("alice", now).unwrap();
        let b = l.acquire("bob", now).unwrap();
        assert_eq!(a1.index, a2.index);
        assert_ne!(a1.index, b.index);
        assert_eq!(l.active_users(), 2);
        assert!(l.acquire("carol", now).is_none(), "table full");
        drop(a1);
        assert!(l.acquire("carol", now).is_none(), "alice still holds it");
        drop(a2);
        let c = l.acquire("carol", now).unwrap();
        assert_eq!(c.index, 1, "alice's slot reused");
        assert_eq!(l.active_users(), 2);
        drop((b, c));
        assert_eq!(l.active_users(), 0);
    }

    #[test]
    fn threads_share_the_lock_and_counts() {
        let l = Arc::new(RateTable::with_capacity(16));
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let name = format!("u{}", (t + i) % 8);
                        let s = l.acquire(&name, Duration::from_secs(1)).unwrap();
                        drop(s);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(l.active_users(), 0);
        assert!(l.used() <= 8, "{}", l.used());
    }

    #[test]
    fn a_dead_lock_holder_is_taken_over() {
        let l = RateTable::with_capacity(1);
        // A pid that does not exist (above the kernel's pid_max).
        l.slots()[0].refs.store(0x7fff_fff0, Ordering::Relaxed);
        let g = l.lock();
        drop(g);
        assert_eq!(l.slots()[0].refs.load(Ordering::Relaxed), 0);
    }
}
