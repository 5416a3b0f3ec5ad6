//! The one rate-limiting primitive of the crate: a token bucket kept as a single atomic word
//! (the GCRA form: the bucket's "theoretical arrival time"), so one value serves a session
//! alone, the threads of a server, and the processes that share it through memory mapped
//! before `fork()` (shm.rs). FTP transfers (per session, per user, per server: pyftpdlib
//! `ThrottledDTPHandler.read_limit` / `write_limit` and beyond) and the TFTP acceptor's
//! per-address request limit all draw from a [`Bucket`] with a [`Rate`].
//!
//! A bucket holds at most [`Rate::burst`] worth of tokens; taking `n` tokens moves its
//! arrival time forward by `n / rate` seconds; it is empty while that time is now or later.
//! Callers pass the time ([`Clock`]), so every test drives it with an injected clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds per second.
const NS: u128 = 1_000_000_000;

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

/// How fast a [`Bucket`] fills, how much it holds, and the smallest grant worth waiting for.
/// Configuration, passed to every call: it is never stored in (shared) bucket memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_second: u64,
    burst_ns: u64,
    min_grant: u64,
}

impl Rate {
    /// A byte rate (`per_second` > 0): a bucket of one second's worth, and grants of at
    /// least a 32nd of a second's worth (between 1 byte and 16 KiB), so slow rates still
    /// move and fast ones do not spin.
    pub fn bytes(per_second: u64) -> Rate {
        Rate {
            per_second: per_second.max(1),
            burst_ns: NS as u64,
            min_grant: (per_second / 32).clamp(1, 16384),
        }
    }

    /// A request rate (`per_second` > 0) allowing bursts of `burst` seconds' worth; any
    /// single request may be granted.
    pub fn requests(per_second: u64, burst: Duration) -> Rate {
        Rate {
            per_second: per_second.max(1),
            burst_ns: burst.as_nanos().min(u128::from(u64::MAX)) as u64,
            min_grant: 1,
        }
    }

    /// Tokens per second.
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// How long an empty bucket takes to fill.
    pub fn burst(&self) -> Duration {
        Duration::from_nanos(self.burst_ns)
    }

    /// Nanoseconds that `n` tokens cost, rounded up.
    fn cost_ns(&self, n: u64) -> u64 {
        (u128::from(n) * NS)
            .div_ceil(u128::from(self.per_second))
            .min(u128::from(u64::MAX)) as u64
    }
}

/// A token bucket in one atomic word: lock-free, valid when zeroed, so it can live in memory
/// shared by threads and forked processes. Every method takes the [`Rate`] and the time.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Bucket(AtomicU64);

fn ns(t: Duration) -> u64 {
    t.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Bucket {
    /// A bucket that is empty at `now` (a transfer then runs at the rate from its first byte).
    pub fn empty_at(now: Duration) -> Bucket {
        Bucket(AtomicU64::new(ns(now)))
    }

    /// A bucket that is full at `now`.
    pub fn full_at(rate: &Rate, now: Duration) -> Bucket {
        Bucket(AtomicU64::new(ns(now).saturating_sub(rate.burst_ns)))
    }

    /// Empties the bucket at `now`.
    pub fn reset(&self, now: Duration) {
        self.0.store(ns(now), Ordering::Relaxed);
    }

    /// Tokens available at `now` (nanoseconds) and the base the next grant is added to.
    fn level(tat: u64, rate: &Rate, now: u64) -> (u64, u64) {
        let base = tat.max(now.saturating_sub(rate.burst_ns));
        if now <= base {
            return (0, base);
        }
        let tokens = u128::from(now - base) * u128::from(rate.per_second) / NS;
        (tokens.min(u128::from(u64::MAX)) as u64, base)
    }

    /// Tokens available at `now`.
    pub fn available(&self, rate: &Rate, now: Duration) -> u64 {
        Self::level(self.0.load(Ordering::Relaxed), rate, ns(now)).0
    }

    /// True when the bucket holds all it can at `now`.
    pub fn is_full(&self, rate: &Rate, now: Duration) -> bool {
        self.0.load(Ordering::Relaxed) <= ns(now).saturating_sub(rate.burst_ns)
    }

    /// Grants up to `want` tokens at `now`; 0 when fewer than the rate's smallest grant (or
    /// `want`, if smaller) are available.
    pub fn take(&self, rate: &Rate, want: u64, now: Duration) -> u64 {
        let now = ns(now);
        let need = rate.min_grant.min(want);
        let mut tat = self.0.load(Ordering::Relaxed);
        loop {
            let (tokens, base) = Self::level(tat, rate, now);
            if tokens < need || want == 0 {
                return 0;
            }
            let n = tokens.min(want);
            let next = base.saturating_add(rate.cost_ns(n));
            match self
                .0
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return n,
                Err(cur) => tat = cur,
            }
        }
    }

    /// Gives back `n` unused tokens (never beyond a full bucket: the level is capped when
    /// read).
    pub fn refund(&self, rate: &Rate, n: u64) {
        if n == 0 {
            return;
        }
        let back = (u128::from(n) * NS / u128::from(rate.per_second)).min(u128::from(u64::MAX));
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(back as u64))
            });
    }

    /// How long until a grant of up to `want` tokens is possible.
    pub fn wait(&self, rate: &Rate, want: u64, now: Duration) -> Duration {
        let need = rate.min_grant.min(want);
        let tokens = self.available(rate, now);
        if tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_nanos(rate.cost_ns(need - tokens))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_empty_and_keeps_the_rate() {
        let r = Rate::bytes(1000);
        let b = Bucket::empty_at(ms(5_000));
        assert_eq!(b.take(&r, 100, ms(5_000)), 0, "starts empty");
        assert_eq!(b.wait(&r, 100, ms(5_000)), ms(31));
        let mut total = 0;
        for step in 1..=100 {
            total += b.take(&r, u64::MAX, ms(5_000 + step * 100));
        }
        // 10 simulated seconds at 1000 B/s.
        assert!((9_990..=10_000).contains(&total), "{total}");
    }

    #[test]
    fn burst_is_capped_and_refunds_return_tokens() {
        let r = Rate::bytes(1000);
        let b = Bucket::empty_at(ms(1_000));
        assert_eq!(b.take(&r, u64::MAX, ms(61_000)), 1000, "one second's worth");
        assert_eq!(b.take(&r, u64::MAX, ms(61_000)), 0);
        b.refund(&r, 300);
        assert_eq!(b.take(&r, u64::MAX, ms(61_000)), 300);
        // Less than the smallest grant (31 bytes at 1000 B/s) is not granted…
        assert_eq!(b.take(&r, u64::MAX, ms(61_020)), 0);
        // …unless the caller wants less than that.
        assert_eq!(b.take(&r, 10, ms(61_020)), 10);
        // A refund never fills beyond the burst.
        b.refund(&r, 1_000_000);
        assert_eq!(b.available(&r, ms(61_020)), 1000);
    }

    #[test]
    fn request_rate_bursts_then_refills() {
        let r = Rate::requests(5, Duration::from_secs(2));
        let b = Bucket::full_at(&r, ms(10_000));
        assert!(b.is_full(&r, ms(10_000)));
        let allowed = (0..20).filter(|_| b.take(&r, 1, ms(10_000)) == 1).count();
        assert_eq!(allowed, 10, "a burst of two seconds' worth");
        assert_eq!(b.take(&r, 1, ms(10_100)), 0, "half a request is not one");
        assert_eq!(b.take(&r, 1, ms(10_250)), 1);
        assert!(!b.is_full(&r, ms(10_250)));
        assert!(b.is_full(&r, ms(13_000)));
    }

    #[test]
    fn threads_never_exceed_the_allowance() {
        let r = Rate::bytes(100_000);
        let b = Arc::new(Bucket::empty_at(ms(0)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..1000).map(|_| b.take(&r, 1000, ms(10_000))).sum::<u64>()
                })
            })
            .collect();
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 100_000, "exactly one second's worth");
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let c = MonotonicClock;
        let a = c.now();
        assert!(c.now() >= a);
    }
}
