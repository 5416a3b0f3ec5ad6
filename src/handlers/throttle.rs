//! Token buckets for throttled transfers (pyftpdlib `ThrottledDTPHandler.read_limit` /
//! `write_limit`): refilled from a monotonic clock, holding at most one second's worth, so a
//! burst never exceeds one second of the rate. The clock is injected for tests.
//!
//! Beyond pyftpdlib, a transfer may also draw from buckets shared with other sessions (one per
//! user, one for the whole server; see [`Limits`]): a [`Throttle`] takes from every bucket
//! that applies, grants the smallest allowance and gives unused tokens back.

use std::sync::Arc;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

pub use super::limits::{Limits, SharedBucket, UserSlot, DEFAULT_USER_SLOTS};
use super::FtpHandler;
use crate::authorizers::UserLimits;

/// A monotonic time source.
pub trait Clock: Send {
    /// Time elapsed since some fixed point. Buckets shared between sessions (and processes)
    /// must all be driven by clocks with the same fixed point.
    fn now(&self) -> Duration;
}

/// The real monotonic clock: `CLOCK_MONOTONIC`, whose fixed point (boot) is the same in every
/// thread and every process, so buckets in shared memory can be driven from any of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        match clock_gettime(ClockId::CLOCK_MONOTONIC) {
            Ok(t) => Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32),
            // CLOCK_MONOTONIC cannot fail on Linux; a frozen clock only stalls throttling.
            Err(_) => Duration::ZERO,
        }
    }
}

/// A token bucket: one token per byte, `rate` tokens per second, capacity one second's worth.
/// A rate of 0 means unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket<C: Clock = MonotonicClock> {
    rate: f64,
    tokens: f64,
    last: Duration,
    clock: C,
}

impl TokenBucket<MonotonicClock> {
    /// A bucket on the real clock. It starts empty, so a transfer runs at the rate from its
    /// first byte.
    pub fn new(rate: u64) -> Self {
        Self::with_clock(rate, MonotonicClock)
    }
}

impl<C: Clock> TokenBucket<C> {
    /// A bucket on the given clock, starting empty.
    pub fn with_clock(rate: u64, clock: C) -> Self {
        let last = clock.now();
        TokenBucket {
            rate: rate as f64,
            tokens: 0.0,
            last,
            clock,
        }
    }

    /// True when the rate is 0 (no limit).
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// The bucket's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The smallest grant worth waiting for: a 32nd of a second's worth, between 1 byte and
    /// 16 KiB, so slow rates still move and fast ones do not spin.
    fn quantum(&self) -> f64 {
        (self.rate / 32.0).clamp(1.0, 16384.0)
    }

    fn refill(&mut self) {
        let now = self.clock.now();
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
    }

    /// Grants up to `want` bytes now; 0 when the caller must wait ([`wait`](Self::wait)).
    pub fn take(&mut self, want: usize) -> usize {
        if self.is_unlimited() {
            return want;
        }
        self.refill();
        let need = self.quantum().min(want as f64);
        if self.tokens < need {
            return 0;
        }
        let n = self.tokens.min(want as f64).floor();
        self.tokens -= n;
        n as usize
    }

    /// Returns unused tokens (a write that moved fewer bytes than granted).
    pub fn refund(&mut self, n: usize) {
        if !self.is_unlimited() {
            self.tokens = (self.tokens + n as f64).min(self.rate);
        }
    }

    /// How long until a grant of up to `want` bytes is possible.
    pub fn wait(&mut self, want: usize) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        self.refill();
        let need = self.quantum().min(want as f64) - self.tokens;
        if need <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(need / self.rate)
        }
    }
}

/// Which way a transfer moves bytes, from the server's side (pyftpdlib's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Receiving: uploads (STOR, APPE, STOU) — `read_limit`.
    Read = 0,
    /// Sending: downloads and listings (RETR, LIST…) — `write_limit`.
    Write = 1,
}

/// A shared bucket a [`Throttle`] draws from.
enum SharedRef {
    Server(Arc<Limits>),
    User(Arc<UserSlot>),
}

impl SharedRef {
    fn get(&self, dir: Direction) -> &SharedBucket {
        match self {
            SharedRef::Server(l) => l.server_bucket(dir),
            SharedRef::User(u) => u.bucket(dir),
        }
    }
}

/// The throttle of one transfer: the session's own [`TokenBucket`] composed with the shared
/// buckets that apply (the user's, the server's). A grant is taken from every bucket, so it
/// is the smallest allowance; whatever a bucket could not match is given back to the others.
pub struct Throttle<C: Clock = MonotonicClock> {
    dir: Direction,
    session: TokenBucket<C>,
    shared: Vec<(SharedRef, u64)>,
}

impl Throttle<MonotonicClock> {
    /// A throttle with only a per-session limit (`rate` bytes/s, 0 = unlimited).
    pub fn new(dir: Direction, rate: u64) -> Self {
        Self::with_clock(dir, rate, MonotonicClock)
    }
}

impl<C: Clock> Throttle<C> {
    /// A throttle on the given clock with a per-session limit (0 = unlimited).
    pub fn with_clock(dir: Direction, rate: u64, clock: C) -> Self {
        Throttle {
            dir,
            session: TokenBucket::with_clock(rate, clock),
            shared: Vec::new(),
        }
    }

    /// Also draws from the server-wide bucket of `limits` at `rate` (0: not added).
    pub fn with_server(mut self, limits: &Arc<Limits>, rate: u64) -> Self {
        if rate > 0 {
            self.shared.push((SharedRef::Server(limits.clone()), rate));
        }
        self
    }

    /// Also draws from a user's bucket at `rate` (0: not added).
    pub fn with_user(mut self, slot: &Arc<UserSlot>, rate: u64) -> Self {
        if rate > 0 {
            self.shared.push((SharedRef::User(slot.clone()), rate));
        }
        self
    }

    /// True when no bucket limits the transfer.
    pub fn is_unlimited(&self) -> bool {
        self.session.is_unlimited() && self.shared.is_empty()
    }

    /// Grants up to `want` bytes now; 0 when the caller must wait ([`wait`](Self::wait)).
    pub fn take(&mut self, want: usize) -> usize {
        let mut grant = self.session.take(want);
        if grant == 0 || self.shared.is_empty() {
            return grant;
        }
        let now = self.session.clock().now();
        for i in 0..self.shared.len() {
            let (b, rate) = &self.shared[i];
            let got = b.get(self.dir).take(*rate, grant, now);
            if got < grant {
                let back = grant - got;
                self.session.refund(back);
                for (b, rate) in &self.shared[..i] {
                    b.get(self.dir).refund(*rate, back);
                }
                grant = got;
                if grant == 0 {
                    return 0;
                }
            }
        }
        grant
    }

    /// Returns unused tokens to every bucket.
    pub fn refund(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.session.refund(n);
        for (b, rate) in &self.shared {
            b.get(self.dir).refund(*rate, n);
        }
    }

    /// How long until a grant of up to `want` bytes is possible from every bucket.
    pub fn wait(&mut self, want: usize) -> Duration {
        let mut w = self.session.wait(want);
        if !self.shared.is_empty() {
            let now = self.session.clock().now();
            for (b, rate) in &self.shared {
                w = w.max(b.get(self.dir).wait(*rate, want, now));
            }
        }
        w
    }
}

/// The limits of a logged-in session, decided at login from the handler and the authorizer.
#[derive(Debug, Default)]
pub(crate) struct SessionLimits {
    read: u64,
    write: u64,
    user_read: u64,
    user_write: u64,
    slot: Option<Arc<UserSlot>>,
}

impl SessionLimits {
    /// The limits of `user`: the authorizer's [`UserLimits`] where set, the handler's
    /// otherwise; takes the user's shared slot when a per-user limit applies.
    pub(crate) fn at_login(h: &FtpHandler, user: &str) -> SessionLimits {
        let u: UserLimits = h.authorizer.get_limits(user);
        let user_read = u.user_read_limit.unwrap_or(h.user_read_limit);
        let user_write = u.user_write_limit.unwrap_or(h.user_write_limit);
        let slot = if user_read > 0 || user_write > 0 {
            h.limits.acquire(user, MonotonicClock.now()).map(Arc::new)
        } else {
            None
        };
        SessionLimits {
            read: u.read_limit.unwrap_or(h.read_limit),
            write: u.write_limit.unwrap_or(h.write_limit),
            user_read,
            user_write,
            slot,
        }
    }

    /// The throttle of a transfer in direction `dir`.
    pub(crate) fn throttle(&self, h: &FtpHandler, dir: Direction) -> Throttle {
        let (own, user, server) = match dir {
            Direction::Read => (self.read, self.user_read, h.max_read_rate),
            Direction::Write => (self.write, self.user_write, h.max_write_rate),
        };
        let mut t = Throttle::new(dir, own).with_server(&h.limits, server);
        if let Some(slot) = &self.slot {
            t = t.with_user(slot, user);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct FakeClock(Arc<AtomicU64>);
    impl FakeClock {
        fn advance(&self, ms: u64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }
    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn unlimited_grants_everything() {
        let mut b = TokenBucket::with_clock(0, FakeClock::default());
        assert_eq!(b.take(1 << 20), 1 << 20);
        assert_eq!(b.wait(10), Duration::ZERO);
    }

    #[test]
    fn rate_is_respected_over_time() {
        let clock = FakeClock::default();
        let mut b = TokenBucket::with_clock(1000, clock.clone());
        assert_eq!(b.take(100), 0, "starts empty");
        assert_eq!(b.wait(100), Duration::from_secs_f64(31.25 / 1000.0));
        let mut total = 0;
        for _ in 0..100 {
            clock.advance(100);
            total += b.take(usize::MAX);
        }
        // 10 simulated seconds at 1000 B/s.
        assert!((9_990..=10_000).contains(&total), "{total}");
    }

    #[test]
    fn burst_is_capped_at_one_second() {
        let clock = FakeClock::default();
        let mut b = TokenBucket::with_clock(1000, clock.clone());
        clock.advance(60_000);
        assert_eq!(b.take(usize::MAX), 1000);
        assert_eq!(b.take(usize::MAX), 0);
    }

    #[test]
    fn refund_returns_tokens() {
        let clock = FakeClock::default();
        let mut b = TokenBucket::with_clock(1000, clock.clone());
        clock.advance(500);
        assert_eq!(b.take(400), 400);
        b.refund(150);
        assert_eq!(b.take(usize::MAX), 250);
    }
    #[test]
    fn composition_grants_the_smallest_allowance() {
        let clock = FakeClock::default();
        clock.advance(1_000);
        let limits = Arc::new(Limits::with_capacity(4));
        limits.server_bucket(Direction::Write).reset(clock.now());
        // Session 1000 B/s, server 500 B/s: the server's rate wins.
        let mut t =
            Throttle::with_clock(Direction::Write, 1000, clock.clone()).with_server(&limits, 500);
        assert!(!t.is_unlimited());
        let mut total = 0;
        for _ in 0..100 {
            clock.advance(100);
            total += t.take(usize::MAX);
        }
        assert!((4_990..=5_000).contains(&total), "{total}");
        // Unused tokens go back to both buckets.
        clock.advance(1_000);
        let g = t.take(usize::MAX);
        assert_eq!(g, 500);
        t.refund(200);
        assert_eq!(t.take(usize::MAX), 200);
        // The waiting time is the longest of the buckets'.
        // The session bucket still holds tokens; the server one needs 15 bytes (30 ms).
        assert_eq!(t.wait(usize::MAX), Duration::from_millis(30));
    }

    #[test]
    fn sessions_sharing_a_bucket_split_its_rate() {
        let clock = FakeClock::default();
        clock.advance(1_000);
        let limits = Arc::new(Limits::with_capacity(4));
        let slot = Arc::new(limits.acquire("bob", clock.now()).unwrap());
        let other = Arc::new(limits.acquire("bob", clock.now()).unwrap());
        let mut a = Throttle::with_clock(Direction::Read, 0, clock.clone()).with_user(&slot, 1000);
        let mut b = Throttle::with_clock(Direction::Read, 0, clock.clone()).with_user(&other, 1000);
        let (mut ta, mut tb) = (0, 0);
        for _ in 0..100 {
            clock.advance(100);
            ta += a.take(60);
            tb += b.take(60);
        }
        // 10 s at 1000 B/s shared: each gets about half, together the whole rate.
        assert!((9_900..=10_000).contains(&(ta + tb)), "{ta} + {tb}");
        assert!(ta >= 4_000 && tb >= 4_000, "{ta} / {tb}");
        // A rate of 0 adds no bucket.
        let t = Throttle::with_clock(Direction::Read, 0, clock.clone())
            .with_user(&slot, 0)
            .with_server(&limits, 0);
        assert!(t.is_unlimited());
    }

    #[test]
    fn a_session_bucket_limits_below_a_shared_one() {
        let clock = FakeClock::default();
        let limits = Arc::new(Limits::with_capacity(1));
        limits.server_bucket(Direction::Read).reset(clock.now());
        let mut t =
            Throttle::with_clock(Direction::Read, 300, clock.clone()).with_server(&limits, 1000);
        let mut total = 0;
        for _ in 0..100 {
            clock.advance(100);
            total += t.take(usize::MAX);
        }
        assert!((2_990..=3_000).contains(&total), "{total}");
    }
}
