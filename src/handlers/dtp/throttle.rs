//! The throttle of one transfer (pyftpdlib `ThrottledDTPHandler`): the session's own bucket
//! composed with the shared buckets that apply (the user's, the server's; see
//! [`RateTable`]). Every bucket is the crate's one primitive,
//! [`ratelimit::Bucket`](crate::ratelimit::Bucket); a grant is taken from each in turn, so
//! it is the smallest allowance, and whatever a bucket could not match is given back to the
//! ones before it. The clock is injected for tests.

use std::sync::Arc;
use std::time::Duration;

use crate::handlers::rates::{Direction, RateTable, UserSlot};
use crate::ratelimit::{Bucket, Clock, MonotonicClock, Rate};

/// Where a bucket a throttle draws from lives.
enum Held {
    /// The transfer's own (pyftpdlib's per-session limit).
    Own(Bucket),
    /// The server's, in the shared table.
    Server(Arc<RateTable>),
    /// The user's, in the shared table.
    User(Arc<UserSlot>),
}

impl Held {
    fn get(&self, dir: Direction) -> &Bucket {
        match self {
            Held::Own(b) => b,
            Held::Server(t) => t.server_bucket(dir),
            Held::User(u) => u.bucket(dir),
        }
    }
}

/// The throttle of one transfer: every bucket that applies, with its rate.
pub struct Throttle<C: Clock = MonotonicClock> {
    dir: Direction,
    buckets: Vec<(Held, Rate)>,
    clock: C,
}

impl Throttle<MonotonicClock> {
    /// A throttle with only a per-session limit (`rate` bytes/s, 0 = unlimited).
    pub fn new(dir: Direction, rate: u64) -> Self {
        Self::with_clock(dir, rate, MonotonicClock)
    }
}

impl<C: Clock> Throttle<C> {
    /// A throttle on the given clock with a per-session limit (0 = unlimited). Its own
    /// bucket starts empty, so a transfer runs at the rate from its first byte.
    pub fn with_clock(dir: Direction, rate: u64, clock: C) -> Self {
        let mut buckets = Vec::new();
        if rate > 0 {
            buckets.push((Held::Own(Bucket::empty_at(clock.now())), Rate::bytes(rate)));
        }
        Throttle {
            dir,
            buckets,
            clock,
        }
    }

    /// Also draws from the server-wide bucket of `table` at `rate` (0: not added).
    pub fn with_server(mut self, table: &Arc<RateTable>, rate: u64) -> Self {
        if rate > 0 {
            self.buckets
                .push((Held::Server(table.clone()), Rate::bytes(rate)));
        }
        self
    }

    /// Also draws from a user's bucket at `rate` (0: not added).
    pub fn with_user(mut self, slot: &Arc<UserSlot>, rate: u64) -> Self {
        if rate > 0 {
            self.buckets
                .push((Held::User(slot.clone()), Rate::bytes(rate)));
        }
        self
    }

    /// True when no bucket limits the transfer.
    pub fn is_unlimited(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Grants up to `want` bytes now; 0 when the caller must wait ([`wait`](Self::wait)).
    pub fn take(&mut self, want: usize) -> usize {
        if self.buckets.is_empty() {
            return want;
        }
        let now = self.clock.now();
        let mut grant = want as u64;
        for i in 0..self.buckets.len() {
            let (b, rate) = &self.buckets[i];
            let got = b.get(self.dir).take(rate, grant, now);
            if got < grant {
                for (b, rate) in &self.buckets[..i] {
                    b.get(self.dir).refund(rate, grant - got);
                }
                grant = got;
                if grant == 0 {
                    return 0;
                }
            }
        }
        grant as usize
    }

    /// Returns unused tokens to every bucket.
    pub fn refund(&mut self, n: usize) {
        for (b, rate) in &self.buckets {
            b.get(self.dir).refund(rate, n as u64);
        }
    }

    /// How long until a grant of up to `want` bytes is possible from every bucket.
    pub fn wait(&mut self, want: usize) -> Duration {
        let now = self.clock.now();
        self.buckets
            .iter()
            .map(|(b, rate)| b.get(self.dir).wait(rate, want as u64, now))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

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
        let mut t = Throttle::with_clock(Direction::Write, 0, FakeClock::default());
        assert!(t.is_unlimited());
        assert_eq!(t.take(1 << 20), 1 << 20);
        assert_eq!(t.wait(10), Duration::ZERO);
    }

    #[test]
    fn a_session_rate_is_respected_over_time() {
        let clock = FakeClock::default();
        let mut t = Throttle::with_clock(Direction::Write, 1000, clock.clone());
        assert_eq!(t.take(100), 0, "starts empty");
        assert_eq!(t.wait(100), Duration::from_millis(31));
        let mut total = 0;
        for _ in 0..100 {
            clock.advance(100);
            total += t.take(usize::MAX);
        }
        assert!((9_990..=10_000).contains(&total), "{total}");
    }

    #[test]
    fn composition_grants_the_smallest_allowance() {
        let clock = FakeClock::default();
        clock.advance(1_000);
        let table = Arc::new(RateTable::with_capacity(4));
        table.server_bucket(Direction::Write).reset(clock.now());
        // Session 1000 B/s, server 500 B/s: the server's rate wins.
        let mut t =
            Throttle::with_clock(Direction::Write, 1000, clock.clone()).with_server(&table, 500);
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
        // The waiting time is the longest of the buckets': the session bucket still holds
        // tokens; the server one needs 15 bytes (30 ms).
        assert_eq!(t.wait(usize::MAX), Duration::from_millis(30));
    }

    #[test]
    fn sessions_sharing_a_bucket_split_its_rate() {
        let clock = FakeClock::default();
        clock.advance(1_000);
        let table = Arc::new(RateTable::with_capacity(4));
        let slot = Arc::new(table.acquire("bob", clock.now()).unwrap());
        let other = Arc::new(table.acquire("bob", clock.now()).unwrap());
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
            .with_server(&table, 0);
        assert!(t.is_unlimited());
    }

    #[test]
    fn a_session_bucket_limits_below_a_shared_one() {
        let clock = FakeClock::default();
        let table = Arc::new(RateTable::with_capacity(1));
        table.server_bucket(Direction::Read).reset(clock.now());
        let mut t =
            Throttle::with_clock(Direction::Read, 300, clock.clone()).with_server(&table, 1000);
        let mut total = 0;
        for _ in 0..100 {
            clock.advance(100);
            total += t.take(usize::MAX);
        }
        assert!((2_990..=3_000).contains(&total), "{total}");
    }
}
