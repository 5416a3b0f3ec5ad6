//! Anti-reflection limits of the TFTP acceptor: a token bucket of requests per source
//! address (the crate's one rate-limiting primitive), and a byte budget for what is sent to an address that has not yet answered
//! (fbtftp has neither; RFC 1350 servers answer any source, so spoofed requests would turn
//! the server into a reflector).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ratelimit::{Bucket, Rate};

/// Sources remembered at most.
const MAX_SOURCES: usize = 8192;

/// How many seconds' worth of requests a source may send at once.
const BURST: Duration = Duration::from_secs(2);

/// A per-source token bucket, the crate's one rate-limiting primitive
/// ([`ratelimit::Bucket`](crate::ratelimit::Bucket)): `rate` requests per second, bursts of
/// `2 × rate`.
pub(crate) struct RateLimiter {
    rate: Option<Rate>,
    buckets: HashMap<IpAddr, Bucket>,
    /// Bucket times are durations since this instant, shifted by [`BURST`] so that a bucket
    /// full at the first request is representable.
    origin: Instant,
}

impl RateLimiter {
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate: (rate > 0).then(|| Rate::requests(u64::from(rate), BURST)),
            buckets: HashMap::new(),
            origin: Instant::now(),
        }
    }

    /// True if a request from `ip` at `now` is allowed.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let t = now.saturating_duration_since(self.origin) + BURST;
        if self.buckets.len() > MAX_SOURCES {
            // Forget sources idle long enough to have a full bucket again. If a flood from
            // many (spoofed) sources keeps the table full, start afresh: memory and the cost
            // per request stay bounded, and the session cap still limits what is sent.
            self.buckets.retain(|_, b| !b.is_full(&rate, t));
            if self.buckets.len() > MAX_SOURCES / 2 {
                self.buckets.clear();
            }
        }
        let bucket = self
            .buckets
            .entry(ip)
            .or_insert_with(|| Bucket::full_at(&rate, t));
        bucket.take(&rate, 1, t) == 1
    }
}

/// What an address may be sent before it answers, per byte it sent us (the idea of QUIC's
/// anti-amplification limit, RFC 9000 §8.1, which allows 3).
pub(crate) const AMPLIFICATION_FACTOR: f64 = 8.0;

/// The byte budget of addresses that have not answered yet.
///
/// Every request credits its source `AMPLIFICATION_FACTOR` × its length; everything sent to
/// a peer before it answered — a session's first packet, its one retransmission, the
/// acceptor's ERRORs — is charged to its address. Credit and charges halve every second,
/// so the budget is a rate: about `AMPLIFICATION_FACTOR` × the request bytes per second.
/// A session's first packet always goes (a request must be answerable: DATA 1 of a request
/// without options may be 50 times its size); a retransmission or an ERROR goes only within
/// the budget. An OACK is about the size of the request, so clients that ask for any option
/// always get their retransmission; one without options whose DATA 1 is lost asks again.
pub(crate) struct Amplification {
    sources: HashMap<IpAddr, Ledger>,
}

/// Bytes received from and sent to one address, decayed to `at`.
#[derive(Clone, Copy)]
struct Ledger {
    received: f64,
    sent: f64,
    at: Instant,
}

impl Ledger {
    fn decay(&mut self, now: Instant) {
        let halvings = now.saturating_duration_since(self.at).as_secs_f64();
        let keep = 0.5f64.powf(halvings);
        self.received *= keep;
        self.sent *= keep;
        self.at = now;
    }
}

impl Amplification {
    pub fn new() -> Self {
        Amplification {
            sources: HashMap::new(),
        }
    }

    fn ledger(&mut self, ip: IpAddr, now: Instant) -> &mut Ledger {
        if self.sources.len() > MAX_SOURCES {
            // Forget addresses whose ledger has decayed to nothing; under a flood from many
            // sources start afresh (the request rate limit and session caps still hold).
            self.sources.retain(|_, l| {
                l.decay(now);
                l.received >= 1.0 || l.sent >= 1.0
            });
            if self.sources.len() > MAX_SOURCES / 2 {
                self.sources.clear();
            }
        }
        let l = self.sources.entry(ip).or_insert(Ledger {
            received: 0.0,
            sent: 0.0,
            at: now,
        });
        l.decay(now);
        l
    }

    /// A request of `len` bytes arrived from `ip`.
    pub fn received(&mut self, ip: IpAddr, len: usize, now: Instant) {
        self.ledger(ip, now).received += len as f64;
    }

    /// `len` bytes go to `ip` whatever the budget (a session's first packet).
    pub fn charge(&mut self, ip: IpAddr, len: usize, now: Instant) {
        self.ledger(ip, now).sent += len as f64;
    }

    /// A peer at `ip` answered from the port it was sent to: the address is no reflection
    /// victim, what it was sent is forgiven.
    pub fn answered(&mut self, ip: IpAddr) {
        if let Some(l) = self.sources.get_mut(&ip) {
            l.sent = 0.0;
        }
    }

    /// True (and charged) if `len` more bytes to `ip` stay within the budget.
    pub fn allow(&mut self, ip: IpAddr, len: usize, now: Instant) -> bool {
        let l = self.ledger(ip, now);
        if l.sent + len as f64 <= l.received * AMPLIFICATION_FACTOR {
            l.sent += len as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amplification_budget() {
        let mut a = Amplification::new();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        // A 10-byte request without options: DATA 1 goes, no second copy, no ERROR either.
        a.received(ip, 10, t0);
        a.charge(ip, 516, t0);
        assert!(!a.allow(ip, 516, t0 + Duration::from_secs(1)));
        assert!(!a.allow(ip, 20, t0 + Duration::from_secs(1)));
        // A request with options, answered by an OACK of about its size: one resend a second
        // later fits.
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        a.received(other, 30, t0);
        a.charge(other, 25, t0);
        assert!(a.allow(other, 25, t0 + Duration::from_secs(1)));
        a.answered(ip);
        assert!(a.allow(ip, 20, t0 + Duration::from_secs(1)));
        // Never more than the factor × what arrived.
        let third: IpAddr = "192.0.2.3".parse().expect("ip");
        a.received(third, 100, t0);
        assert!(a.allow(third, 800, t0));
        assert!(!a.allow(third, 1, t0));
        // Bounded under a flood of sources.
        for i in 0..20_000u32 {
            a.received(IpAddr::from(i.to_be_bytes()), 10, t0);
        }
        assert!(a.sources.len() <= MAX_SOURCES + 1);
    }

    #[test]
    fn rate_limiter_bursts_then_refills() {
        let mut l = RateLimiter::new(5);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let allowed = (0..20).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(allowed, 10);
        assert!(l.allow(other, t0));
        assert!(!l.allow(ip, t0 + Duration::from_millis(100)));
        assert!(l.allow(ip, t0 + Duration::from_millis(250)));
        // Many sources: the table stays bounded.
        for i in 0..20_000u32 {
            assert!(l.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert!(l.buckets.len() <= MAX_SOURCES + 1);
        let mut off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.allow(ip, t0)));
    }
}
