//! A small TFTP client for the loss tests: an RFC 7440 receiver (ACK after each window, one
//! ACK per gap, the latest ACK again for a duplicate sent because that ACK was missed,
//! silence for a duplicate that crossed a new window) and an RFC 7440 sender (a new window
//! from the block after an ACK that falls inside the window, stale ACKs ignored, the window
//! again after a timeout), both with a fixed retransmission timeout and bounded in time.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ftpdlib::tftp::packet::{self, Packet};

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientCfg {
    /// Wait before saying again what was said last (request, ACK, window).
    pub timeout: Duration,
    /// Timeouts in a row before giving up.
    pub max_timeouts: u32,
    /// Give up after this long in any case.
    pub deadline: Duration,
}

impl Default for ClientCfg {
    fn default() -> Self {
        ClientCfg {
            timeout: Duration::from_millis(300),
            max_timeouts: 40,
            deadline: Duration::from_secs(60),
        }
    }
}

/// What a transfer ended with.
#[derive(Debug, Default, Clone)]
pub struct Xfer {
    /// The bytes received (downloads).
    pub data: Vec<u8>,
    /// The OACK, if the server sent one.
    pub oack: Option<Vec<(String, String)>>,
    /// DATA packets sent (uploads) or received (downloads), duplicates included.
    pub data_packets: u64,
    /// Blocks in the file.
    pub blocks: u64,
    /// Timeouts the client itself hit.
    pub timeouts: u32,
    /// How long it took.
    pub elapsed: Duration,
}

fn opt(o: &[(String, String)], k: &str) -> Option<usize> {
    o.iter()
        .find(|(n, _)| n == k)
        .and_then(|(_, v)| v.parse().ok())
}

fn socket(server: SocketAddr, timeout: Duration) -> Result<UdpSocket, String> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Downloads `file`; `Err` on an ERROR from the server or when the client gives up.
pub fn download(
    server: SocketAddr,
    file: &str,
    options: &[(&str, &str)],
    cfg: &ClientCfg,
) -> Result<Xfer, String> {
    let started = Instant::now();
    let sock = socket(server, cfg.timeout)?;
    let rrq = packet::request(false, file, "octet", options);
    sock.send_to(&rrq, server).map_err(|e| e.to_string())?;
    let mut x = Xfer::default();
    let mut peer: Option<SocketAddr> = None;
    let (mut blksize, mut window) = (512usize, 1u64);
    let mut expected: u64 = 1;
    // The block our latest ACK acknowledged, and blocks in order since.
    let mut acked: u64 = 0;
    let mut in_window = 0u64;
    // After an ACK for a gap or a duplicate, stay quiet until a block arrives in order.
    let mut quiet = false;
    let mut last: Vec<u8> = rrq;
    let mut buf = vec![0u8; 65_536 + 4];
    let mut timeouts = 0;
    while started.elapsed() < cfg.deadline {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => {
                timeouts += 1;
                x.timeouts += 1;
                if timeouts > cfg.max_timeouts {
                    return Err(format!("gave up after {timeouts} timeouts: {x:?}"));
                }
                let _ = sock.send_to(&last, peer.unwrap_or(server));
                acked = expected - 1;
                in_window = 0;
                quiet = false;
                continue;
            }
        };
        // A new session port while nothing was received yet: the earlier session gave up.
        if expected == 1 && x.oack.is_none() {
            peer = Some(from);
        }
        if peer != Some(from) {
            continue;
        }
        timeouts = 0;
        let ack = |b: u64| packet::ack(b as u16).to_vec();
        match packet::parse(&buf[..n]) {
            Ok(Packet::Oack(o)) => {
                if expected == 1 {
                    blksize = opt(&o, "blksize").unwrap_or(512);
                    window = opt(&o, "windowsize").unwrap_or(1) as u64;
                    x.oack = Some(o);
                }
                last = ack(0);
                let _ = sock.send_to(&last, from);
            }
            Ok(Packet::Data(b, d)) => {
                x.data_packets += 1;
                if b == expected as u16 {
                    x.data.extend_from_slice(d);
                    expected += 1;
                    in_window += 1;
                    quiet = false;
                    let end = d.len() < blksize;
                    if end || in_window >= window {
                        last = ack(expected - 1);
                        let _ = sock.send_to(&last, from);
                        acked = expected - 1;
                        in_window = 0;
                    }
                    if end {
                        x.blocks = expected - 1;
                        x.elapsed = started.elapsed();
                        // Linger for a retransmitted last block (our final ACK may be lost).
                        linger(&sock, &last, from);
                        return Ok(x);
                    }
                } else if window == 1 {
                    // Lock-step: a duplicate means our ACK was lost.
                    let _ = sock.send_to(&last, from);
                } else if !quiet {
                    let ahead = b.wrapping_sub(expected as u16) < 0x8000;
                    let before_ack = (acked as u16).wrapping_sub(b) < 0x8000;
                    if ahead {
                        // A gap (RFC 7440 §4): a new window starts after this ACK.
                        last = ack(expected - 1);
                        acked = expected - 1;
                        in_window = 0;
                        let _ = sock.send_to(&last, from);
                        quiet = true;
                    } else if before_ack {
                        // The sender missed our latest ACK.
                        last = ack(acked);
                        let _ = sock.send_to(&last, from);
                        quiet = true;
                    }
                }
            }
            Ok(Packet::Error(c, m)) => return Err(format!("ERROR {c} {m}")),
            other => return Err(format!("unexpected packet {other:?}")),
        }
    }
    Err(format!("deadline passed: {x:?}"))
}

fn linger(sock: &UdpSocket, last: &[u8], peer: SocketAddr) {
    let mut buf = vec![0u8; 65_536 + 4];
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if from == peer && matches!(packet::parse(&buf[..n]), Ok(Packet::Data(..))) {
                let _ = sock.send_to(last, peer);
            }
        }
    }
}

/// A block of an upload, numbered from 1.
fn block(data: &[u8], blksize: usize, i: u64) -> Vec<u8> {
    let start = ((i - 1) as usize * blksize).min(data.len());
    let end = (start + blksize).min(data.len());
    let mut p = vec![0u8; 4];
    packet::data_header(&mut p, i as u16);
    p.extend_from_slice(&data[start..end]);
    p
}

/// Uploads `data` as `file`; `Err` on an ERROR from the server or when the client gives up.
pub fn upload(
    server: SocketAddr,
    file: &str,
    data: &[u8],
    options: &[(&str, &str)],
    cfg: &ClientCfg,
) -> Result<Xfer, String> {
    let started = Instant::now();
    let sock = socket(server, cfg.timeout)?;
    let wrq = packet::request(true, file, "octet", options);
    sock.send_to(&wrq, server).map_err(|e| e.to_string())?;
    let mut x = Xfer::default();
    let mut buf = vec![0u8; 65_536 + 4];
    let mut timeouts = 0;
    // The answer to the request: ACK 0 or an OACK.
    let (peer, blksize, window) = loop {
        if started.elapsed() > cfg.deadline {
            return Err("no answer to the WRQ".into());
        }
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            timeouts += 1;
            x.timeouts += 1;
            if timeouts > cfg.max_timeouts {
                return Err("no answer to the WRQ".into());
            }
            let _ = sock.send_to(&wrq, server);
            continue;
        };
        match packet::parse(&buf[..n]) {
            Ok(Packet::Ack(0)) => break (from, 512, 1u64),
            Ok(Packet::Oack(o)) => {
                let bs = opt(&o, "blksize").unwrap_or(512);
                let w = opt(&o, "windowsize").unwrap_or(1) as u64;
                x.oack = Some(o);
                break (from, bs, w);
            }
            Ok(Packet::Error(c, m)) => return Err(format!("ERROR {c} {m}")),
            other => return Err(format!("unexpected packet {other:?}")),
        }
    };
    let blocks = data.len() as u64 / blksize as u64 + 1;
    x.blocks = blocks;
    let mut base = 1u64; // first block not acknowledged
    let mut next = 1u64; // next block to send
    timeouts = 0;
    while base <= blocks {
        if started.elapsed() > cfg.deadline {
            return Err(format!("deadline passed: {x:?}"));
        }
        while next < base + window && next <= blocks {
            let _ = sock.send_to(&block(data, blksize, next), peer);
            x.data_packets += 1;
            next += 1;
        }
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            timeouts += 1;
            x.timeouts += 1;
            if timeouts > cfg.max_timeouts {
                return Err(format!("gave up after {timeouts} timeouts: {x:?}"));
            }
            // RFC 7440 §4: after a timeout the window starts again after the last ACK.
            next = base;
            continue;
        };
        if from != peer {
            continue;
        }
        match packet::parse(&buf[..n]) {
            Ok(Packet::Ack(a)) => {
                let off = u64::from(a.wrapping_sub((base - 1) as u16));
                if off == 0 || off > next - base {
                    continue; // stale or duplicate: never a resend
                }
                timeouts = 0;
                base += off;
                if base < next {
                    // Inside the window: a new window from the next block, at once.
                    next = base;
                }
            }
            Ok(Packet::Oack(_)) => {}
            Ok(Packet::Error(c, m)) => return Err(format!("ERROR {c} {m}")),
            other => return Err(format!("unexpected packet {other:?}")),
        }
    }
    x.elapsed = started.elapsed();
    Ok(x)
}
