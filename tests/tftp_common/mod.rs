//! Shared helpers of the TFTP integration tests: an in-process server on port 0 with a
//! fresh temp dir (shut down on drop), a raw RFC 1350/7440 client for exact packet checks,
//! and the external clients (curl's tftp://, atftp) when installed.

#![allow(dead_code)]

pub mod client;
pub mod relay;
/// External programs: skip with a message, or fail under CI=true (shared with the FTP tests).
#[path = "../common/tool.rs"]
pub mod tool;
pub use tool::tool;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ftpdlib::tftp::packet::{self, Packet};
use ftpdlib::tftp::{
    BoundTftpServer, Counters, FileHandler, ServerHandle, ServerStats, SessionStats, TftpServer,
};

/// A running server; closes and joins on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub stats: Arc<ServerStats>,
    pub sessions: Arc<Mutex<Vec<SessionStats>>>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestServer {
    /// Writes a file below the served root.
    pub fn file(&self, name: &str, data: &[u8]) {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, data).expect("write test file");
    }

    /// Waits (bounded) until `n` sessions reported their stats; returns them.
    pub fn wait_sessions(&self, n: usize) -> Vec<SessionStats> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.sessions.lock().expect("lock").clone();
            if s.len() >= n || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts a server on 127.0.0.1:0 serving a fresh temp dir, 1 s timeout, after `tweak`.
pub fn start(tweak: impl FnOnce(&mut TftpServer)) -> TestServer {
    start_on("127.0.0.1", tweak).expect("bind 127.0.0.1")
}

/// Like [`start`] on a given address (e.g. "::1").
pub fn start_on(ip: &str, tweak: impl FnOnce(&mut TftpServer)) -> Option<TestServer> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sessions: Arc<Mutex<Vec<SessionStats>>> = Arc::default();
    let mut handler = FileHandler::new(dir.path());
    let sink = sessions.clone();
    handler.stats_callback = Some(Arc::new(move |s: &SessionStats| {
        sink.lock().expect("lock").push(s.clone());
    }));
    let mut server = TftpServer::new(handler.factory());
    server.address = ip.parse().expect("ip");
    server.port = 0;
    server.timeout = Duration::from_secs(1);
    server.retries = 3;
    tweak(&mut server);
    let bound: BoundTftpServer = server.bind().ok()?;
    let addr = bound.local_addr();
    let handle = bound.handle();
    let stats = bound.stats();
    let thread = std::thread::spawn(move || {
        bound.serve_forever().expect("serve_forever");
    });
    Some(TestServer {
        addr,
        dir,
        stats,
        sessions,
        handle,
        thread: Some(thread),
    })
}

/// FNV-1a 64: a checksum to compare transfers.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Deterministic pseudo-random content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What a raw download ended with.
#[derive(Debug, Default)]
pub struct Got {
    pub data: Vec<u8>,
    pub oack: Option<Vec<(String, String)>>,
    pub error: Option<(u16, String)>,
    pub timed_out: bool,
}

/// A bound client socket with a receive timeout.
pub fn client_socket(server: SocketAddr, timeout: Duration) -> UdpSocket {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let s = UdpSocket::bind(bind).expect("client bind");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s
}

/// Receives one packet (owned) or `None` on timeout.
pub fn recv(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 70_000];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(_) => None,
    }
}

/// Ends a session from the client's side (ERROR 0), so the server does not wait for it.
pub fn hang_up(sock: &UdpSocket, peer: SocketAddr) {
    sock.send_to(
        &packet::error(ftpdlib::tftp::ErrorCode::NotDefined, "bye"),
        peer,
    )
    .expect("send ERROR");
}

/// Receives DATA `block` (nothing else): its packet and where it came from.
pub fn expect_data(sock: &UdpSocket, block: u16) -> (Vec<u8>, SocketAddr) {
    let (p, from) = recv(sock).unwrap_or_else(|| panic!("no DATA {block}"));
    assert!(
        matches!(packet::parse(&p), Ok(Packet::Data(n, _)) if n == block),
        "DATA {block} expected"
    );
    (p, from)
}

/// The block size and window an OACK grants (RFC 2348, 7440), defaults where it is silent.
fn oack_sizes<W: std::str::FromStr + From<u8>>(o: &[(String, String)]) -> (usize, W) {
    let blksize = opt(o, "blksize").and_then(|v| v.parse().ok());
    let window = opt(o, "windowsize").and_then(|v| v.parse().ok());
    (blksize.unwrap_or(512), window.unwrap_or(W::from(1)))
}

fn opt<'a>(o: &'a [(String, String)], k: &str) -> Option<&'a str> {
    o.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Downloads `file` with a raw client (RFC 1350 receiver, RFC 7440 windows).
pub fn get(server: SocketAddr, file: &str, mode: &str, options: &[(&str, &str)]) -> Got {
    let sock = client_socket(server, Duration::from_secs(3));
    let rrq = packet::request(false, file, mode, options);
    sock.send_to(&rrq, server).expect("send rrq");
    let mut got = Got::default();
    let mut peer: Option<SocketAddr> = None;
    let (mut blksize, mut window) = (512usize, 1u64);
    let mut expected: u64 = 1;
    let mut in_window = 0u64;
    let mut last_ack: Vec<u8> = rrq.clone();
    let mut timeouts = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Some((pkt, from)) = recv(&sock) else {
            timeouts += 1;
            if timeouts > 4 {
                got.timed_out = true;
                return got;
            }
            let to = peer.unwrap_or(server);
            sock.send_to(&last_ack, to).expect("resend");
            continue;
        };
        if *peer.get_or_insert(from) != from {
            continue;
        }
        timeouts = 0;
        match packet::parse(&pkt) {
            Ok(Packet::Oack(o)) => {
                (blksize, window) = oack_sizes(&o);
                got.oack = Some(o);
                last_ack = packet::ack(0).to_vec();
                sock.send_to(&last_ack, from).expect("ack 0");
            }
            Ok(Packet::Data(b, d)) => {
                if b == expected as u16 {
                    got.data.extend_from_slice(d);
                    expected += 1;
                    in_window += 1;
                    let end = d.len() < blksize;
                    if end || in_window >= window {
                        last_ack = packet::ack(b).to_vec();
                        sock.send_to(&last_ack, from).expect("ack");
                        in_window = 0;
                    }
                    if end {
                        return got;
                    }
                } else if in_window > 0 || window == 1 {
                    // A gap (RFC 7440): acknowledge the last block received in order.
                    last_ack = packet::ack((expected - 1) as u16).to_vec();
                    sock.send_to(&last_ack, from).expect("ack");
                    in_window = 0;
                }
            }
            Ok(Packet::Error(c, m)) => {
                got.error = Some((c, m));
                return got;
            }
            other => panic!("unexpected packet {other:?}"),
        }
    }
    got.timed_out = true;
    got
}

/// Negotiated options as received in an OACK.
pub type Options = Vec<(String, String)>;

/// Uploads `data` as `file` with a raw client; returns the OACK or the server's ERROR.
pub fn put(
    server: SocketAddr,
    file: &str,
    data: &[u8],
    options: &[(&str, &str)],
) -> Result<Option<Options>, (u16, String)> {
    put_mode(server, file, "octet", data, options)
}

/// Like [`put`] in a given mode; `data` is sent as is (already in that mode's encoding).
pub fn put_mode(
    server: SocketAddr,
    file: &str,
    mode: &str,
    data: &[u8],
    options: &[(&str, &str)],
) -> Result<Option<Options>, (u16, String)> {
    let sock = client_socket(server, Duration::from_secs(3));
    let wrq = packet::request(true, file, mode, options);
    sock.send_to(&wrq, server).expect("send wrq");
    let (pkt, peer) = recv(&sock).ok_or((99, "no answer".to_owned()))?;
    let (mut blksize, mut window) = (512usize, 1u64);
    let oack = match packet::parse(&pkt) {
        Ok(Packet::Ack(0)) => None,
        Ok(Packet::Oack(o)) => {
            (blksize, window) = oack_sizes(&o);
            Some(o)
        }
        Ok(Packet::Error(c, m)) => return Err((c, m)),
        other => panic!("unexpected {other:?}"),
    };
    let blocks = data.len() / blksize + 1;
    let block = |i: usize| {
        let s = (i - 1) * blksize;
        let mut p = vec![0u8; 4];
        packet::data_header(&mut p, i as u16);
        p.extend_from_slice(&data[s.min(data.len())..(s + blksize).min(data.len())]);
        p
    };
    let mut base = 1usize;
    let mut timeouts = 0;
    while base <= blocks {
        let end = (base + window as usize - 1).min(blocks);
        for i in base..=end {
            sock.send_to(&block(i), peer).expect("send data");
        }
        let Some((pkt, from)) = recv(&sock) else {
            timeouts += 1;
            if timeouts > 4 {
                return Err((99, "timeout".into()));
            }
            continue;
        };
        if from != peer {
            continue;
        }
        match packet::parse(&pkt) {
            Ok(Packet::Ack(a)) => {
                let off = usize::from(a.wrapping_sub((base - 1) as u16));
                if off >= 1 && off <= end + 1 - base {
                    base += off;
                    timeouts = 0;
                }
            }
            Ok(Packet::Error(c, m)) => return Err((c, m)),
            other => panic!("unexpected {other:?}"),
        }
    }
    Ok(oack)
}

/// Downloads with curl's tftp:// client; `None` when curl failed.
pub fn curl_get(server: SocketAddr, file: &str, extra: &[&str], out: &Path) -> Option<Vec<u8>> {
    let host = match server {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let url = format!("tftp://{host}:{}/{file}", server.port());
    let status = Command::new("curl")
        .args(["-s", "--max-time", "60", "-o"])
        .arg(out)
        .args(extra)
        .arg(&url)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    std::fs::read(out).ok()
}

/// Sum of the counters reported so far.
pub fn add(total: &mut Counters, c: &Counters) {
    total.sessions_started += c.sessions_started;
    total.sessions_finished += c.sessions_finished;
    total.sessions_failed += c.sessions_failed;
    total.bytes_sent += c.bytes_sent;
    total.packets_sent += c.packets_sent;
    for (t, x) in total.errors_by_code.iter_mut().zip(c.errors_by_code) {
        *t += x;
    }
}
