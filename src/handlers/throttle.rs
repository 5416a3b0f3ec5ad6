//! Token buckets for throttled transfers (pyftpdlib `ThrottledDTPHandler.read_limit` /
//! `write_limit`): refilled from a monotonic clock, holding at most one second's worth, so a
//! burst never exceeds one second of the rate. The clock is injected for tests.

use std::time::{Duration, Instant};

/// A monotonic time source.
pub trait Clock: Send {
    /// Time elapsed since some fixed point.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
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
        Self::with_clock(rate, MonotonicClock::default())
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
}
