//! Option negotiation (fbtftp's `BaseHandler._parse_options`): RFC 2347 (OACK), RFC 2348
//! (blksize), RFC 2349 (timeout, tsize) and RFC 7440 (windowsize).

use std::time::Duration;

use super::packet::ErrorCode;

/// The smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: usize = 8;
/// The largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: usize = 65464;
/// The block size without options (RFC 1350).
pub const DEFAULT_BLKSIZE: usize = 512;

/// Server-side bounds of the RFC 2347–2349 and 7440 options, applied while negotiating
/// (`TftpServer::limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionLimits {
    /// The largest block size granted (already clamped to the path MTU by the caller).
    pub max_blksize: usize,
    /// The largest windowsize granted.
    pub max_windowsize: u16,
    /// What one window may cost the receiver's socket buffer, counted as Linux counts it
    /// ([`receive_charge`] per datagram): the windowsize is negotiated down to fit (at least
    /// one block is always allowed). Default: [`DEFAULT_MAX_WINDOW_BYTES`].
    pub max_window_bytes: usize,
    /// The largest RFC 2349 `timeout` accepted, and the ceiling of the retransmission
    /// timeout. A larger `timeout` is left out of the OACK. Default: 10 s.
    pub max_timeout: Duration,
    /// For a WRQ: the largest upload accepted (checked against the client's tsize).
    pub max_upload: Option<u64>,
}

/// The default [`OptionLimits::max_window_bytes`]: 200,000 bytes of receive buffer.
///
/// A window leaves in one burst (UDP GSO or sendmmsg(2)), faster than any receiver reads it,
/// so the whole window must fit in the receiver's socket buffer or its tail is dropped — and
/// the retransmitted window is dropped the same way, for ever. Linux charges each queued
/// datagram its `skb->truesize`, not its payload, against `SO_RCVBUF`, whose default
/// (`net.core.rmem_default`) is 212,992 bytes; a datagram that would take the queue past it
/// is dropped. 200,000 leaves room for a few small packets besides the window: three
/// 65,464-byte blocks (3 × 66,300 = 198,900 charged), 86 of 1,468 bytes, 148 of 512.
pub const DEFAULT_MAX_WINDOW_BYTES: usize = 200_000;

/// What Linux charges a socket's receive buffer for one queued UDP datagram carrying `len`
/// bytes (a TFTP packet: block plus 4 header bytes).
///
/// Measured on loopback (Linux 6.x; the receive queue of /proc/net/udp after one datagram):
/// 516 bytes cost 1,280, 1,472 cost 2,304, 4,100 cost 8,448, 8,196 cost 16,640 — below
/// about 16 KB the packet sits in one kmalloc'ed buffer rounded up to a power of two, plus
/// the 256-byte `sk_buff` — and 16,388 cost 17,220, 65,468 cost 66,300: larger ones are
/// carried in page fragments, the payload plus 832. The estimate is never below either.
pub fn receive_charge(len: usize) -> usize {
    let paged = len + 832;
    if len + 64 < 16_000 {
        ((len + 476).next_power_of_two() + 256).max(paged)
    } else {
        paged
    }
}

impl Default for OptionLimits {
    fn default() -> Self {
        OptionLimits {
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            max_window_bytes: DEFAULT_MAX_WINDOW_BYTES,
            max_timeout: Duration::from_secs(10),
            max_upload: None,
        }
    }
}

/// The result of a negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA packet.
    pub blksize: usize,
    /// The client's retransmission timeout (RFC 2349), when it set one the server accepts:
    /// the upper bound of the session's retransmission timeout.
    pub timeout: Option<Duration>,
    /// Transfer size: sent in the OACK of an RRQ, announced by the client in a WRQ.
    pub tsize: Option<u64>,
    /// Blocks per window (RFC 7440); 1 without the option.
    pub windowsize: u16,
    /// The options to put in the OACK, in the client's order; empty means no OACK.
    pub oack: Vec<(String, String)>,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            blksize: DEFAULT_BLKSIZE,
            timeout: None,
            tsize: None,
            windowsize: 1,
            oack: Vec::new(),
        }
    }
}

/// Parses a decimal option value; anything else (sign, spaces, overflow) is invalid.
fn number(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Negotiates the options of a request.
///
/// Unknown options and invalid values are ignored and never echoed (RFC 2347 §3: the
/// server omits what it does not accept). `size` is the response size for an RRQ's tsize
/// (`None` if unknown: then tsize is left out).
///
/// # Errors
/// An error code and message to send when the request must be refused: a WRQ whose
/// announced tsize exceeds [`OptionLimits::max_upload`] gets ERROR 3 ("allocation exceeded"),
/// the refusal RFC 2349 §4 allows the receiver before any data moves.
pub fn negotiate(
    options: &[(String, String)],
    write: bool,
    size: Option<u64>,
    limits: &OptionLimits,
) -> Result<Negotiated, (ErrorCode, String)> {
    let mut n = Negotiated::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut want_window: Option<u16> = None;
    for (name, value) in options {
        // RFC 2347: a repeated option is a client bug; the first one wins.
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let granted = match name.as_str() {
            "blksize" => grant_blksize(value, limits).map(|b| {
                n.blksize = b;
                b.to_string()
            }),
            "timeout" => grant_timeout(value, limits).map(|t| {
                n.timeout = Some(Duration::from_secs(t));
                t.to_string()
            }),
            "tsize" => grant_tsize(value, write, size, limits)?.map(|t| {
                n.tsize = Some(t);
                t.to_string()
            }),
            // RFC 7440: 1..=65535; the value is decided below, once blksize is known.
            "windowsize" => number(value).filter(|v| (1..=65535).contains(v)).map(|v| {
                want_window = Some(v as u16);
                String::new()
            }),
            _ => None,
        };
        if let Some(v) = granted {
            n.oack.push((name.clone(), v));
        }
    }
    if let Some(w) = want_window {
        n.windowsize = grant_windowsize(w, n.blksize, limits);
        if let Some(entry) = n.oack.iter_mut().find(|(k, _)| k == "windowsize") {
            entry.1 = n.windowsize.to_string();
        }
    }
    Ok(n)
}

/// RFC 2348: 8..=65464; a bigger request may be answered with a smaller value.
fn grant_blksize(value: &str, limits: &OptionLimits) -> Option<usize> {
    let v = number(value).filter(|v| *v >= MIN_BLKSIZE as u64)?;
    Some((v.min(limits.max_blksize as u64) as usize).max(MIN_BLKSIZE))
}

/// RFC 2349: 1..=255 seconds, and the OACK must carry the value asked for, so a larger one
/// than we accept cannot be clamped: it is left out, and the client keeps its own timeout
/// (a session cannot be held for minutes).
fn grant_timeout(value: &str, limits: &OptionLimits) -> Option<u64> {
    let max = limits.max_timeout.as_secs().clamp(1, 255);
    number(value).filter(|v| (1..=max).contains(v))
}

/// RFC 2349 tsize: a WRQ announces the size (refused when it will not fit); an RRQ's
/// `tsize 0` asks for the file's size.
fn grant_tsize(
    value: &str,
    write: bool,
    size: Option<u64>,
    limits: &OptionLimits,
) -> Result<Option<u64>, (ErrorCode, String)> {
    let Some(v) = number(value) else {
        return Ok(None);
    };
    if write {
        if limits.max_upload.is_some_and(|max| v > max) {
            return Err((ErrorCode::DiskFull, format!("file too large ({v} bytes)")));
        }
        return Ok(Some(v));
    }
    // An empty file's tsize is left out: curl (7.x) rejects "tsize 0" in an OACK as
    // invalid, and omitting an option is always allowed (RFC 2347).
    Ok(size.filter(|s| v == 0 && *s > 0))
}

/// The window granted for a requested `w` blocks (RFC 7440: the server may answer with a
/// smaller value), bounded by what a window costs the receiver's buffer at `blksize`.
fn grant_windowsize(w: u16, blksize: usize, limits: &OptionLimits) -> u16 {
    let per_block = receive_charge(blksize + 4);
    let by_bytes = (limits.max_window_bytes / per_block).clamp(1, 65535) as u16;
    w.min(limits.max_windowsize.max(1)).min(by_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_options_no_oack() {
        let n = negotiate(&[], false, Some(10), &OptionLimits::default()).expect("ok");
        assert_eq!(n, Negotiated::default());
    }

    #[test]
    fn blksize_clamped_and_invalid_ignored() {
        let l = OptionLimits {
            max_blksize: 1428,
            ..OptionLimits::default()
        };
        let n = negotiate(&opts(&[("blksize", "65464")]), false, None, &l).expect("ok");
        assert_eq!(n.blksize, 1428);
        assert_eq!(n.oack, opts(&[("blksize", "1428")]));
        for bad in ["7", "0", "-1", "abc", "", " 512", "99999999999999999999999"] {
            let n = negotiate(&opts(&[("blksize", bad)]), false, None, &l).expect("ok");
            assert_eq!(n.blksize, 512, "{bad}");
            assert!(n.oack.is_empty(), "{bad} echoed");
        }
        let n = negotiate(
            &opts(&[("blksize", "70000")]),
            false,
            None,
            &OptionLimits::default(),
        )
        .expect("ok");
        assert_eq!(n.blksize, MAX_BLKSIZE);
    }

    #[test]
    fn timeout_range() {
        let l = OptionLimits::default();
        let n = negotiate(&opts(&[("timeout", "3")]), false, None, &l).expect("ok");
        assert_eq!(n.timeout, Some(Duration::from_secs(3)));
        assert_eq!(n.oack, opts(&[("timeout", "3")]));
        for bad in ["0", "256", "x", "11", "255"] {
            let n = negotiate(&opts(&[("timeout", bad)]), false, None, &l).expect("ok");
            assert!(n.timeout.is_none() && n.oack.is_empty(), "{bad}");
        }
        let n = negotiate(&opts(&[("timeout", "10")]), false, None, &l).expect("ok");
        assert_eq!(n.timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn tsize_read_and_write() {
        let l = OptionLimits {
            max_upload: Some(100),
            ..OptionLimits::default()
        };
        let n = negotiate(&opts(&[("tsize", "0")]), false, Some(1234), &l).expect("ok");
        assert_eq!(n.oack, opts(&[("tsize", "1234")]));
        let n = negotiate(&opts(&[("tsize", "0")]), false, None, &l).expect("ok");
        assert!(n.oack.is_empty());
        let n = negotiate(&opts(&[("tsize", "0")]), false, Some(0), &l).expect("ok");
        assert!(n.oack.is_empty());
        let n = negotiate(&opts(&[("tsize", "100")]), true, None, &l).expect("ok");
        assert_eq!(n.tsize, Some(100));
        let e = negotiate(&opts(&[("tsize", "101")]), true, None, &l).expect_err("too big");
        assert_eq!(e.0, ErrorCode::DiskFull);
    }

    #[test]
    fn windowsize_bounded_by_bytes_in_flight() {
        let l = OptionLimits {
            max_window_bytes: 64 * 1024,
            ..OptionLimits::default()
        };
        // 8,196-byte packets are charged 16,640 each: three fit in 64 KiB.
        let o = opts(&[("windowsize", "16"), ("blksize", "8192")]);
        let n = negotiate(&o, false, None, &l).expect("ok");
        assert_eq!(n.windowsize, 3);
        assert_eq!(n.oack, opts(&[("windowsize", "3"), ("blksize", "8192")]));
        let n = negotiate(&opts(&[("windowsize", "16")]), false, None, &l).expect("ok");
        assert_eq!(n.windowsize, 16);
        let n = negotiate(&opts(&[("windowsize", "0")]), false, None, &l).expect("ok");
        assert_eq!((n.windowsize, n.oack.len()), (1, 0));
        let big = OptionLimits {
            max_window_bytes: 1,
            ..l
        };
        let n = negotiate(&opts(&[("windowsize", "4")]), false, None, &big).expect("ok");
        assert_eq!(n.windowsize, 1);
    }

    #[test]
    fn default_window_fits_a_default_receive_buffer() {
        // net.core.rmem_default: a window that costs more loses its tail in a receiver that
        // never enlarged its buffer.
        const RMEM_DEFAULT: usize = 212_992;
        for (bs, want) in [(512, 64), (1468, 64), (8192, 12), (65464, 3)] {
            let o = opts(&[("blksize", &bs.to_string()), ("windowsize", "65535")]);
            let n = negotiate(&o, false, None, &OptionLimits::default()).expect("ok");
            assert_eq!(n.windowsize, want, "blksize {bs}");
            let charged = usize::from(n.windowsize) * receive_charge(bs + 4);
            assert!(charged < RMEM_DEFAULT, "blksize {bs}: {charged}");
        }
        assert_eq!(receive_charge(516), 1348);
        assert_eq!(receive_charge(1472), 2304);
        assert_eq!(receive_charge(8196), 16640);
        assert_eq!(receive_charge(65468), 66300);
    }

    #[test]
    fn unknown_and_repeated_options() {
        let o = opts(&[("multicast", ""), ("blksize", "1024"), ("blksize", "2048")]);
        let n = negotiate(&o, false, None, &OptionLimits::default()).expect("ok");
        assert_eq!(n.blksize, 1024);
        assert_eq!(n.oack, opts(&[("blksize", "1024")]));
    }
}
