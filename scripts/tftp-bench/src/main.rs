//! TFTP download benchmark client: RFC 1350 lock-step or RFC 7440 windows, N downloads over
//! K threads, prints bytes, wall time and MB/s. Loopback only; every wait is bounded.
//!
//! Usage: tftp-bench HOST:PORT FILE [--blksize N] [--windowsize W] [--count N]
//!        [--concurrency K] [--expect BYTES]
//! `--blksize 512` without `--windowsize` sends no options at all (plain RFC 1350).

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Cfg {
    server: SocketAddr,
    file: String,
    blksize: usize,
    windowsize: u16,
    count: usize,
    concurrency: usize,
    expect: Option<u64>,
}

fn request(cfg: &Cfg) -> Vec<u8> {
    let mut p = vec![0u8, 1];
    let mut push = |s: &str| {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    };
    push(&cfg.file);
    push("octet");
    if cfg.blksize != 512 {
        push("blksize");
        push(&cfg.blksize.to_string());
    }
    if cfg.windowsize > 1 {
        push("windowsize");
        push(&cfg.windowsize.to_string());
    }
    p
}

fn ack(b: u16) -> [u8; 4] {
    let x = b.to_be_bytes();
    [0, 4, x[0], x[1]]
}

/// Buffers for recvmmsg(2).
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

impl Batch {
    fn new(n: usize, size: usize) -> Self {
        Batch { bufs: vec![vec![0u8; size]; n], lens: vec![0; n] }
    }

    /// Waits for at least one datagram (socket timeout applies) and takes all queued ones.
    fn recv(&mut self, sock: &UdpSocket) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
            .collect();
        // SAFETY: mmsghdr is plain data; all-zero is a valid value.
        let mut hdrs: Vec<libc::mmsghdr> = (0..iovs.len()).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one live iovec over a live buffer of iov_len bytes;
        // both vectors outlive the call. MSG_WAITFORONE: block for the first datagram only.
        let n = unsafe {
            libc::recvmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as _, libc::MSG_WAITFORONE as _, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for (l, h) in self.lens.iter_mut().zip(&hdrs).take(n as usize) {
            *l = h.msg_len as usize;
        }
        Ok(n as usize)
    }

    fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }
}

/// One download; returns the bytes received.
fn download(cfg: &Cfg) -> Result<u64, String> {
    let sock = UdpSocket::bind(if cfg.server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" })
        .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    let rrq = request(cfg);
    sock.send_to(&rrq, cfg.server).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536 + 4];
    let mut batch = Batch::new(64, 65536 + 4);
    let mut connected = false;
    let (mut bs, mut w) = (512usize, 1u64);
    let mut expected: u64 = 1;
    let mut in_window = 0u64;
    let mut bytes = 0u64;
    let mut last: Vec<u8> = rrq;
    let mut timeouts = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if connected && w > 1 {
            // Drain what a window burst left queued, several datagrams per system call.
            match batch.recv(&sock) {
                Ok(k) => {
                    timeouts = 0;
                    for i in 0..k {
                        let pkt = batch.packet(i);
                        if pkt.len() < 4 || pkt[1] != 3 {
                            continue;
                        }
                        let b = u16::from_be_bytes([pkt[2], pkt[3]]);
                        let len = pkt.len() - 4;
                        if b == expected as u16 {
                            bytes += len as u64;
                            expected += 1;
                            in_window += 1;
                            if len < bs || in_window >= w {
                                last = ack(b).to_vec();
                                sock.send(&last).map_err(|e| e.to_string())?;
                                in_window = 0;
                            }
                            if len < bs {
                                return Ok(bytes);
                            }
                        } else if in_window > 0 {
                            last = ack((expected - 1) as u16).to_vec();
                            sock.send(&last).map_err(|e| e.to_string())?;
                            in_window = 0;
                        }
                    }
                    continue;
                }
                Err(_) => {
                    timeouts += 1;
                    if timeouts > 10 {
                        return Err("timeout".into());
                    }
                    sock.send(&last).map_err(|e| e.to_string())?;
                    continue;
                }
            }
        }
        let n = if connected {
            sock.recv(&mut buf)
        } else {
            sock.recv_from(&mut buf).and_then(|(n, from)| {
                sock.connect(from)?;
                connected = true;
                Ok(n)
            })
        };
        let n = match n {
            Ok(n) => n,
            Err(_) => {
                timeouts += 1;
                if timeouts > 10 {
                    return Err("timeout".into());
                }
                let r = if connected { sock.send(&last) } else { sock.send_to(&last, cfg.server) };
                r.map_err(|e| e.to_string())?;
                continue;
            }
        };
        timeouts = 0;
        if n < 4 {
            continue;
        }
        match buf[1] {
            6 => {
                // OACK: name/value pairs.
                let strings: Vec<&[u8]> = buf[2..n].split(|b| *b == 0).collect();
                for kv in strings.chunks(2) {
                    if kv.len() == 2 {
                        let v: u64 = std::str::from_utf8(kv[1]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        match kv[0] {
                            b"blksize" => bs = v as usize,
                            b"windowsize" => w = v.max(1),
                            _ => {}
                        }
                    }
                }
                last = ack(0).to_vec();
                sock.send(&last).map_err(|e| e.to_string())?;
            }
            3 => {
                let b = u16::from_be_bytes([buf[2], buf[3]]);
                let len = n - 4;
                if b == expected as u16 {
                    bytes += len as u64;
                    expected += 1;
                    in_window += 1;
                    if len < bs || in_window >= w {
                        last = ack(b).to_vec();
                        sock.send(&last).map_err(|e| e.to_string())?;
                        in_window = 0;
                    }
                    if len < bs {
                        return Ok(bytes);
                    }
                } else if in_window > 0 {
                    last = ack((expected - 1) as u16).to_vec();
                    sock.send(&last).map_err(|e| e.to_string())?;
                    in_window = 0;
                }
            }
            5 => {
                return Err(format!("server error: {}", String::from_utf8_lossy(&buf[4..n])));
            }
            _ => {}
        }
    }
    Err("deadline".into())
}

fn parse() -> Result<Cfg, String> {
    let mut args = std::env::args().skip(1);
    let server = args.next().ok_or("HOST:PORT missing")?.parse().map_err(|e| format!("{e}"))?;
    let file = args.next().ok_or("FILE missing")?;
    let mut cfg = Cfg { server, file, blksize: 512, windowsize: 1, count: 1, concurrency: 1, expect: None };
    while let Some(flag) = args.next() {
        let v = args.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = v.parse().map_err(|_| format!("bad number {v}"))?;
        match flag.as_str() {
            "--blksize" => cfg.blksize = n as usize,
            "--windowsize" => cfg.windowsize = n as u16,
            "--count" => cfg.count = n as usize,
            "--concurrency" => cfg.concurrency = (n as usize).max(1),
            "--expect" => cfg.expect = Some(n),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cfg = match parse() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("tftp-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let total = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..cfg.concurrency)
        .map(|i| {
            let (cfg, total, failures) = (cfg.clone(), total.clone(), failures.clone());
            std::thread::spawn(move || {
                let mine = cfg.count / cfg.concurrency + usize::from(i < cfg.count % cfg.concurrency);
                for _ in 0..mine {
                    match download(&cfg) {
                        Ok(b) if cfg.expect.is_none_or(|e| e == b) => {
                            total.fetch_add(b, Ordering::Relaxed);
                        }
                        Ok(b) => {
                            eprintln!("short download: {b} bytes");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("download failed: {e}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = total.load(Ordering::Relaxed);
    let failed = failures.load(Ordering::Relaxed);
    println!("bytes={bytes} secs={secs:.3} MBps={:.1} failed={failed}", bytes as f64 / secs / 1e6);
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
