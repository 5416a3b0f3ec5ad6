//! The sender of a read request (fbtftp `BaseHandler`'s transmit loop): RFC 1350 lock-step
//! and RFC 7440 windows, recovering from loss as RFC 7440 §4 says — an ACK inside the
//! window starts a new window after the acknowledged block at once; a timeout starts it
//! again after the last ACK — with an adaptive timeout and burst (rto.rs). Block numbers
//! wrap 65535 → 0.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use log::debug;

use super::options::Negotiated;
use super::packet::{self, ErrorCode, Packet};
use super::response::ResponseData;
use super::rto::Burst;
use super::transport::Ctx;

/// A block read from the data, kept until acknowledged.
struct Block {
    pkt: Vec<u8>,
    /// When it was last sent.
    sent: Option<Instant>,
    /// Sent more than once: an ACK of it gives no round-trip sample (Karn's rule).
    resent: bool,
}

/// The sender's state: the blocks from the first unacknowledged one (`base`) on, the
/// current window and the next one, read ahead.
struct Sender {
    bs: usize,
    w: u64,
    window: VecDeque<Block>,
    spare: Vec<Vec<u8>>,
    /// The first block not acknowledged (a sequence number, not wrapped).
    base: u64,
    /// The next block to send.
    next: u64,
    /// The final (short) block, once read.
    last: Option<u64>,
    burst: Burst,
    /// Timeouts in a row.
    tries: u32,
}

/// Reads `buf.len()` bytes unless the data ends first.
fn read_full(data: &mut dyn ResponseData, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match data.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n.min(buf.len() - got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn io_str(e: io::Error) -> String {
    e.to_string()
}

/// Sends `data` in blocks of the negotiated size and windows of the negotiated windowsize
/// (1 without the option: RFC 1350 lock-step), until the last block is acknowledged.
///
/// A duplicate or stale ACK never triggers a resend (the Sorcerer's Apprentice, RFC 1123
/// §4.2.3.1); an ACK for a block not yet sent is ignored. An ACK inside the window means
/// the receiver missed the next block and dropped what followed (RFC 7440 §4): a new window
/// starts there, at once but for a fraction of a round trip spent waiting for a later ACK
/// (see `Sender::settle`). A lost first block of a window (its gap ACK repeats the ACK that
/// opened the window, indistinguishable from a duplicate) and a lost tail are recovered by
/// the timeout.
pub(crate) fn send_blocks(
    ctx: &mut Ctx,
    data: &mut dyn ResponseData,
    n: &Negotiated,
) -> Result<(), String> {
    let mut s = Sender {
        bs: n.blksize,
        w: u64::from(n.windowsize.max(1)),
        window: VecDeque::new(),
        spare: Vec::new(),
        base: 1,
        next: 1,
        last: None,
        burst: Burst::new(n.windowsize),
        tries: 0,
    };
    if s.w > 1 {
        ctx.enable_gso(s.bs + 4);
    }
    loop {
        s.fill(ctx, data, s.base + s.w)?;
        if s.next < s.limit() {
            s.transmit(ctx).map_err(io_str)?;
            ctx.arm().map_err(io_str)?;
            // Read the next window while this one is on its way: on the ACK it leaves at
            // once, the file read off the round trip.
            s.fill(ctx, data, s.base + 2 * s.w)?;
        }
        let Some(len) = ctx.recv().map_err(io_str)? else {
            s.timeout(ctx)?;
            continue;
        };
        match packet::parse(&ctx.buf[..len]) {
            Ok(Packet::Ack(a)) => {
                if s.ack(ctx, a)? {
                    return Ok(());
                }
            }
            Ok(Packet::Error(code, msg)) => return Err(format!("peer sent ERROR {code} {msg}")),
            _ => {
                ctx.send_error(ErrorCode::IllegalOperation, "Expected ACK");
                return Err("unexpected packet during a read".into());
            }
        }
    }
}

impl Sender {
    /// One past the last block read.
    fn end(&self) -> u64 {
        self.base + self.window.len() as u64
    }

    /// One past the last block of the current window that has been read.
    fn limit(&self) -> u64 {
        self.end().min(self.base + self.w)
    }

    /// Reads blocks up to (not including) `upto`, or until the data has ended.
    fn fill(
        &mut self,
        ctx: &mut Ctx,
        data: &mut dyn ResponseData,
        upto: u64,
    ) -> Result<(), String> {
        while self.end() < upto && self.last.is_none() {
            let seq = self.end();
            let mut b = self.spare.pop().unwrap_or_default();
            b.resize(4 + self.bs, 0);
            let got = read_full(data, &mut b[4..]).map_err(|e| {
                ctx.send_error(ErrorCode::NotDefined, "Read error");
                format!("read error: {e}")
            })?;
            b.truncate(4 + got);
            packet::data_header(&mut b, seq as u16);
            if got < self.bs {
                self.last = Some(seq);
            }
            self.window.push_back(Block {
                pkt: b,
                sent: None,
                resent: false,
            });
        }
        Ok(())
    }

    /// Sends the blocks from `next` to the end of the window: in one burst while nothing is
    /// lost, otherwise in smaller bursts with a pause between them.
    fn transmit(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        let from = (self.next - self.base) as usize;
        let to = (self.limit() - self.base) as usize;
        self.next = self.limit();
        if !ctx.verified && self.base == 1 && self.window[0].sent.is_none() {
            // DATA 1 of a request without options: the session's first packet.
            let now = Instant::now();
            let b = &mut self.window[0];
            b.sent = Some(now);
            ctx.stats.bytes_sent += (b.pkt.len() - 4) as u64;
            return ctx.send_first(&self.window[0].pkt);
        }
        let step = if self.burst.whole() {
            to - from
        } else {
            usize::from(self.burst.size())
        };
        let mut i = from;
        while i < to {
            let j = (i + step).min(to);
            let now = Instant::now();
            for b in self.window.range_mut(i..j) {
                if b.sent.is_some() {
                    b.resent = true;
                    ctx.stats.retransmits += 1;
                }
                b.sent = Some(now);
                ctx.stats.bytes_sent += (b.pkt.len() - 4) as u64;
            }
            let pkts: Vec<&[u8]> = self.window.range(i..j).map(|b| b.pkt.as_slice()).collect();
            ctx.send_burst(&pkts)?;
            i = j;
            if i < to {
                std::thread::sleep(self.burst.gap(ctx.rto.srtt()));
            }
        }
        Ok(())
    }

    /// The timer expired: back off, and start the window again after the last ACK
    /// (RFC 7440 §4); before the peer has answered, the first packet goes at most twice.
    fn timeout(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        ctx.timed_out(&mut self.tries)?;
        self.burst.loss();
        if !ctx.verified {
            let pkt = std::mem::take(&mut self.window[0].pkt);
            let sent = ctx.resend_first(&pkt).map_err(io_str);
            self.window[0].pkt = pkt;
            if sent? {
                self.window[0].resent = true;
            }
            return ctx.arm().map_err(io_str);
        }
        debug!(
            "{} timeout ({:?}), resending {} block(s)",
            ctx.log_prefix(),
            ctx.rto.current(),
            self.next - self.base
        );
        self.next = self.base;
        Ok(())
    }

    /// Handles ACK `a`; true when the last block is acknowledged.
    fn ack(&mut self, ctx: &mut Ctx, a: u16) -> Result<bool, String> {
        match self.slide(ctx, a) {
            Slide::Stale => {
                ctx.shrink_wait().map_err(io_str)?;
                Ok(false)
            }
            Slide::Done => Ok(true),
            Slide::Whole { clean } => {
                if clean {
                    self.burst.clean();
                }
                Ok(false)
            }
            Slide::Inside => self.settle(ctx),
        }
    }

    /// An ACK fell inside the window: the receiver missed block `base` and dropped what
    /// followed — or it answered a duplicate with that duplicate's number (atftp does),
    /// while the ACK of the whole window is right behind. As RACK's reordering window
    /// (RFC 8985 §6.2), wait a quarter of a round trip for a later ACK; if none covers the
    /// window, start a new one after the acknowledged block.
    fn settle(&mut self, ctx: &mut Ctx) -> Result<bool, String> {
        let wait = ctx
            .rto
            .srtt()
            .map_or(REORDER_MIN, |s| s / 4)
            .clamp(REORDER_MIN, REORDER_MAX);
        ctx.arm_for(wait).map_err(io_str)?;
        while let Some(len) = ctx.recv().map_err(io_str)? {
            match packet::parse(&ctx.buf[..len]) {
                Ok(Packet::Ack(a)) => match self.slide(ctx, a) {
                    Slide::Done => return Ok(true),
                    Slide::Whole { .. } => return Ok(false),
                    Slide::Stale | Slide::Inside => ctx.shrink_wait().map_err(io_str)?,
                },
                Ok(Packet::Error(code, msg)) => {
                    return Err(format!("peer sent ERROR {code} {msg}"))
                }
                _ => {
                    ctx.send_error(ErrorCode::IllegalOperation, "Expected ACK");
                    return Err("unexpected packet during a read".into());
                }
            }
        }
        debug!(
            "{} ACK {} inside the window: resending from block {}",
            ctx.log_prefix(),
            (self.base - 1) as u16,
            self.base as u16
        );
        self.next = self.base;
        self.burst.loss();
        Ok(false)
    }

    /// Slides the window to ACK `a`.
    fn slide(&mut self, ctx: &mut Ctx, a: u16) -> Slide {
        // 0 = the last ACK again; beyond what was sent = a block never sent.
        let off = u64::from(a.wrapping_sub((self.base - 1) as u16));
        if off == 0 || off > self.next - self.base {
            return Slide::Stale;
        }
        let now = Instant::now();
        let acked = &self.window[(off - 1) as usize];
        if let (false, Some(sent)) = (acked.resent, acked.sent) {
            ctx.rto.sample(now.saturating_duration_since(sent));
        }
        let mut clean = true;
        for _ in 0..off {
            if let Some(b) = self.window.pop_front() {
                clean &= !b.resent;
                self.spare.push(b.pkt);
            }
        }
        self.base += off;
        self.tries = 0;
        ctx.stats.blocks = self.base - 1;
        if self.last == Some(self.base - 1) {
            Slide::Done
        } else if self.base < self.next {
            Slide::Inside
        } else {
            Slide::Whole { clean }
        }
    }
}

/// What an ACK did to the window.
enum Slide {
    /// Nothing: a duplicate, an old ACK, or one for a block never sent.
    Stale,
    /// The last block is acknowledged.
    Done,
    /// Everything sent is acknowledged (`clean`: none of it was sent twice).
    Whole { clean: bool },
    /// Part of what was sent is acknowledged.
    Inside,
}

/// Bounds of the wait for a later ACK before a window starts again (see `Sender::settle`).
const REORDER_MIN: Duration = Duration::from_micros(200);
const REORDER_MAX: Duration = Duration::from_millis(20);
