//! How long a session waits before sending again, and how much it sends at once: the
//! retransmission timeout from measured round trips (RFC 6298: SRTT + 4 × RTTVAR, Karn's
//! rule, exponential backoff, floor and ceiling) and the burst that adapts to loss
//! (RFC 7440 §6 defers to the congestion guidelines of RFC 5405 §3.1: additive increase,
//! multiplicative decrease).

use std::time::Duration;

/// The retransmission timeout of one session (RFC 6298).
///
/// Before the first round trip is measured it is the server's initial timeout (RFC 6298
/// §2.1: 1 s). Each sample from a packet sent once (Karn: never from a retransmitted one)
/// updates SRTT and RTTVAR; the timeout is SRTT + 4 × RTTVAR, at least `min`. Each expiry
/// doubles it (§5.5) until the next valid sample; it never exceeds `max`, nor the client's
/// RFC 2349 `timeout`, which caps it when negotiated.
#[derive(Debug, Clone)]
pub(crate) struct Rto {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The timeout before backoff.
    base: Duration,
    /// Expiries since the last valid sample.
    backoff: u32,
    min: Duration,
    max: Duration,
}

impl Rto {
    /// A timeout of `initial` until measured, kept within `min..=max`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Rto {
        let max = max.max(min);
        Rto {
            srtt: None,
            rttvar: Duration::ZERO,
            base: initial.clamp(min, max),
            backoff: 0,
            min,
            max,
        }
    }

    /// The current timeout, backoff included.
    pub fn current(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The smoothed round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Takes one round-trip sample (RFC 6298 §2.2, §2.3) and ends any backoff.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.base = (srtt + self.rttvar * 4).clamp(self.min, self.max);
        self.backoff = 0;
    }

    /// How soon after our ACK a duplicate of what it acknowledged cannot be the sender's
    /// retransmission for a lost ACK (that takes the sender a timeout of its own): twice
    /// the round trip, within 1 ms and the floor of the timeout. Such a duplicate is the
    /// network's, and answering it would feed a sender's Sorcerer's Apprentice.
    pub fn echo_window(&self) -> Duration {
        let twice = self.srtt.map_or(Duration::from_millis(1), |s| s * 2);
        twice.clamp(
            Duration::from_millis(1),
            self.min.max(Duration::from_millis(1)),
        )
    }

    /// The timer expired: wait twice as long next time (RFC 6298 §5.5).
    pub fn back_off(&mut self) {
        if self.current() < self.max {
            self.backoff += 1;
        }
    }

    /// Never waits longer than `limit` (the client's RFC 2349 timeout).
    pub fn cap(&mut self, limit: Duration) {
        self.max = self.max.min(limit).max(self.min);
        self.base = self.base.min(self.max);
    }
}

/// How many blocks of a window leave back to back (the rest follow in paced bursts): the
/// negotiated windowsize while nothing is lost, halved at each loss, grown back by one
/// block per window delivered without loss (AIMD, RFC 5405 §3.1). The receiver still
/// acknowledges every `windowsize` blocks (RFC 7440), so the window itself never shrinks:
/// only how fast its blocks follow each other.
#[derive(Debug, Clone)]
pub(crate) struct Burst {
    negotiated: u16,
    current: u16,
}

impl Burst {
    /// A burst of the whole window.
    pub fn new(windowsize: u16) -> Burst {
        let w = windowsize.max(1);
        Burst {
            negotiated: w,
            current: w,
        }
    }

    /// Blocks sent back to back.
    pub fn size(&self) -> u16 {
        self.current
    }

    /// True while the window leaves in one burst.
    pub fn whole(&self) -> bool {
        self.current >= self.negotiated
    }

    /// A block was lost.
    pub fn loss(&mut self) {
        self.current = (self.current / 2).max(1);
    }

    /// A window arrived whole.
    pub fn clean(&mut self) {
        self.current = (self.current + 1).min(self.negotiated);
    }

    /// The pause between two bursts of a window, given the smoothed round trip of a window:
    /// the time the receiver takes to drain one burst, as if the window's round trip were
    /// spent draining it block by block.
    pub fn gap(&self, srtt: Option<Duration>) -> Duration {
        let srtt = srtt.unwrap_or(Duration::from_millis(1));
        (srtt * u32::from(self.current) / u32::from(self.negotiated))
            .clamp(Duration::from_micros(50), Duration::from_millis(50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn initial_then_measured_with_floor() {
        let mut r = Rto::new(1000 * MS, 100 * MS, 10_000 * MS);
        assert_eq!(r.current(), 1000 * MS);
        // A LAN round trip: SRTT + 4 × RTTVAR is far below the floor.
        r.sample(MS / 2);
        assert_eq!(r.current(), 100 * MS);
        assert_eq!(r.srtt(), Some(MS / 2));
        assert_eq!(r.echo_window(), MS);
        r.sample(30 * MS);
        assert_eq!(r.echo_window(), 8375 * MS / 1000);
        for _ in 0..100 {
            r.sample(80 * MS);
        }
        assert_eq!(r.echo_window(), 100 * MS);
        // A slow client: 400 ms, then steady.
        let mut slow = Rto::new(1000 * MS, 100 * MS, 10_000 * MS);
        slow.sample(400 * MS);
        assert_eq!(slow.current(), 1200 * MS);
        for _ in 0..50 {
            slow.sample(400 * MS);
        }
        assert!(slow.current() < 450 * MS && slow.current() >= 400 * MS);
    }

    #[test]
    fn backoff_doubles_to_the_ceiling_and_a_sample_ends_it() {
        let mut r = Rto::new(1000 * MS, 100 * MS, 5000 * MS);
        r.sample(10 * MS);
        let base = r.current();
        r.back_off();
        assert_eq!(r.current(), base * 2);
        for _ in 0..20 {
            r.back_off();
        }
        assert_eq!(r.current(), 5000 * MS);
        r.sample(10 * MS);
        assert!(r.current() < 200 * MS);
    }

    #[test]
    fn client_timeout_caps() {
        let mut r = Rto::new(2000 * MS, 100 * MS, 10_000 * MS);
        r.cap(1000 * MS);
        assert_eq!(r.current(), 1000 * MS);
        for _ in 0..5 {
            r.back_off();
        }
        assert_eq!(r.current(), 1000 * MS);
        r.sample(3000 * MS);
        assert_eq!(r.current(), 1000 * MS);
    }

    #[test]
    fn burst_halves_on_loss_and_grows_back() {
        let mut b = Burst::new(16);
        assert!(b.whole());
        b.loss();
        assert_eq!(b.size(), 8);
        b.loss();
        b.loss();
        b.loss();
        b.loss();
        assert_eq!(b.size(), 1);
        for _ in 0..100 {
            b.clean();
        }
        assert_eq!(b.size(), 16);
        b.loss();
        assert_eq!(b.gap(Some(16 * MS)), 8 * MS);
        assert_eq!(Burst::new(0).size(), 1);
    }
}
