//! Anti-reflection rate limiting of the TFTP acceptor: a token bucket per source address
//! (fbtftp has none; RFC 1350 servers answer any source, so a spoofed request flood would
//! turn the server into a reflector).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources remembered at most.
const MAX_SOURCES: usize = 8192;

/// A per-source token bucket: `rate` requests per second, bursts of `2 × rate`.
pub(crate) struct RateLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            buckets: HashMap::new(),
        }
    }

    /// True if a request from `ip` at `now` is allowed.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let burst = self.rate * 2.0;
        if self.buckets.len() > MAX_SOURCES {
            // Forget sources idle long enough to have a full bucket again. If a flood from
            // many (spoofed) sources keeps the table full, start afresh: memory and the cost
            // per request stay bounded, and the session cap still limits what is sent.
            let full_after = Duration::from_secs_f64(burst / self.rate);
            self.buckets
                .retain(|_, (_, t)| now.duration_since(*t) < full_after);
            if self.buckets.len() > MAX_SOURCES / 2 {
                self.buckets.clear();
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
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
