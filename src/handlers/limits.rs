//! Rate limits shared by sessions, beyond pyftpdlib's per-session `ThrottledDTPHandler`: the
//! lock-free [`SharedBucket`] and the registry holding them, one bucket pair (read, write) for
//! the whole server and one per logged-in user, kept in an anonymous `MAP_SHARED` mapping so that they hold across the threads of the Pool/Thread
//! executors and across the processes of Fork/PreFork (the mapping is made when the handler is
//! built, before any `fork()`, and every child inherits the same pages).
//!
//! Layout: an array of [`Slot`]s. Slot 0 is the server's: its buckets are the server-wide
//! limits, its `refs` word is the table lock (holding the locker's pid) and its `key` word the
//! number of user slots ever used. Slots 1.. belong to users, found by a 64-bit hash of the
//! name. Buckets are single atomics ([`SharedBucket`]), so transfers never take the lock;
//! only login and logout do, for a scan of the used slots.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::throttle::{Clock, Direction, MonotonicClock};
use crate::shm::{self, SharedArray, ZeroedAtomics};

/// User slots of [`Limits::new`]: users with a shared limit logged in at once.
pub const DEFAULT_USER_SLOTS: usize = 1024;

/// Nanoseconds per second.
const NS: u128 = 1_000_000_000;

/// The smallest grant worth waiting for from a shared bucket (as a session `TokenBucket`'s).
fn quantum(rate: u64) -> u64 {
    (rate / 32).clamp(1, 16384)
}

/// Nanoseconds that `n` bytes cost at `rate` bytes/s, rounded up.
fn cost_ns(n: u64, rate: u64) -> u64 {
    (u128::from(n) * NS).div_ceil(u128::from(rate.max(1))) as u64
}

/// A token bucket that many sessions — threads, or processes sharing memory — draw from
/// without a lock: one atomic holding the bucket's "theoretical arrival time" (the GCRA form
/// of a token bucket). With `tat` in nanoseconds of [`MonotonicClock`] time, the bucket holds
/// `(now - max(tat, now - 1 s)) × rate` tokens: at most one second's worth, and none while
/// `tat` is `now`. Taking `n` tokens moves `tat` forward by `n / rate` seconds. The rate is
/// passed to every call (it is configuration, not shared state), and a rate of 0 is never
/// passed (callers skip unlimited buckets).
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct SharedBucket(AtomicU64);

impl SharedBucket {
    /// A bucket that is empty at `now`.
    pub fn empty_at(now: Duration) -> SharedBucket {
        SharedBucket(AtomicU64::new(now.as_nanos() as u64))
    }

    /// Empties the bucket at `now`.
    pub fn reset(&self, now: Duration) {
        self.0.store(now.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Tokens available at `now` and the base the next grant is added to.
    fn level(tat: u64, rate: u64, now: u64) -> (u64, u64) {
        let base = tat.max(now.saturating_sub(NS as u64));
        if now <= base {
            return (0, base);
        }
        let tokens = u128::from(now - base) * u128::from(rate) / NS;
        (tokens.min(u128::from(u64::MAX)) as u64, base)
    }

    /// Grants up to `want` bytes at `rate` bytes/s; 0 when fewer than the quantum (a 32nd of
    /// a second's worth, at most 16 KiB, or `want` if smaller) are available.
    pub fn take(&self, rate: u64, want: usize, now: Duration) -> usize {
        let now = now.as_nanos() as u64;
        let want = want as u64;
        let need = quantum(rate).min(want);
        let mut tat = self.0.load(Ordering::Relaxed);
        loop {
            let (tokens, base) = Self::level(tat, rate, now);
            if tokens < need || want == 0 {
                return 0;
            }
            let n = tokens.min(want);
            let next = base.saturating_add(cost_ns(n, rate));
            match self
                .0
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return n as usize,
                Err(cur) => tat = cur,
            }
        }
    }

    /// Gives back `n` unused tokens.
    pub fn refund(&self, rate: u64, n: usize) {
        if n == 0 {
            return;
        }
        let back = (u128::from(n as u64) * NS / u128::from(rate.max(1))) as u64;
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(back))
            });
    }

    /// How long until a grant of up to `want` bytes is possible.
    pub fn wait(&self, rate: u64, want: usize, now: Duration) -> Duration {
        let now_ns = now.as_nanos() as u64;
        let need = quantum(rate).min(want as u64);
        let (tokens, _) = Self::level(self.0.load(Ordering::Relaxed), rate, now_ns);
        if tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_nanos(cost_ns(need - tokens, rate))
        }
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
    buckets: [SharedBucket; 2],
}

// SAFETY: `repr(C)`, only atomics (alignment 8), valid when zeroed.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Slot {}

/// The registry of shared buckets: the server-wide pair and one pair per user. Held by the
/// handler ([`FtpHandler::limits`](crate::handlers::FtpHandler::limits)); sessions take a
/// [`UserSlot`] at login.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ftpdlib::handlers::throttle::{Direction, Limits};
///
/// let limits = Arc::new(Limits::with_capacity(8));
/// assert!(limits.is_process_shared());
/// let now = Duration::from_secs(100);
/// let a = limits.acquire("bob", now).unwrap();
/// let b = limits.acquire("bob", now).unwrap();
/// assert!(std::ptr::eq(a.bucket(Direction::Write), b.bucket(Direction::Write)));
/// ```
pub struct Limits {
    slots: SharedArray<Slot>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("capacity", &self.capacity())
            .field("process_shared", &self.is_process_shared())
            .finish()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new()
    }
}

impl Limits {
    /// A registry for up to [`DEFAULT_USER_SLOTS`] users at once.
    pub fn new() -> Limits {
        Limits::with_capacity(DEFAULT_USER_SLOTS)
    }

    /// A registry for up to `users` distinct users logged in at once (with a shared limit).
    /// The memory is an anonymous `MAP_SHARED` mapping, so build it before forking: children
    /// then share it. If mmap(2) fails it falls back to ordinary memory (threads only) and
    /// logs a warning.
    pub fn with_capacity(users: usize) -> Limits {
        let l = Limits {
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
    pub fn server_bucket(&self, dir: Direction) -> &SharedBucket {
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
    limits: Arc<Limits>,
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
    pub fn bucket(&self, dir: Direction) -> &SharedBucket {
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

    fn secs(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn shared_bucket_starts_empty_and_keeps_the_rate() {
        let b = SharedBucket::empty_at(secs(5_000));
        assert_eq!(b.take(1000, 100, secs(5_000)), 0, "starts empty");
        assert_eq!(b.wait(1000, 100, secs(5_000)), Duration::from_millis(31));
        let mut total = 0;
        for step in 1..=100 {
            total += b.take(1000, usize::MAX, secs(5_000 + step * 100));
        }
        assert!((9_990..=10_000).contains(&total), "{total}");
    }

    #[test]
    fn shared_bucket_burst_is_one_second() {
        let b = SharedBucket::empty_at(secs(1_000));
        assert_eq!(b.take(1000, usize::MAX, secs(61_000)), 1000);
        assert_eq!(b.take(1000, usize::MAX, secs(61_000)), 0);
        b.refund(1000, 300);
        assert_eq!(b.take(1000, usize::MAX, secs(61_000)), 300);
        // Less than the quantum (31 bytes at 1000 B/s) is not granted…
        assert_eq!(b.take(1000, usize::MAX, secs(61_020)), 0);
        // …unless the caller wants less than that.
        assert_eq!(b.take(1000, 10, secs(61_020)), 10);
    }

    #[test]
    fn shared_bucket_threads_never_exceed_the_allowance() {
        let b = Arc::new(SharedBucket::empty_at(secs(0)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    for _ in 0..1000 {
                        got += b.take(100_000, 1000, secs(10_000));
                    }
                    got
                })
            })
            .collect();
        let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 100_000, "exactly one second's worth");
    }

    #[test]
    fn slots_are_shared_per_user_and_reused() {
        let l = Arc::new(Limits::with_capacity(2));
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
        let l = Arc::new(Limits::with_capacity(16));
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
        let l = Limits::with_capacity(1);
        // A pid that does not exist (above the kernel's pid_max).
        l.slots()[0].refs.store(0x7fff_fff0, Ordering::Relaxed);
        let g = l.lock();
        drop(g);
        assert_eq!(l.slots()[0].refs.load(Ordering::Relaxed), 0);
    }
}
