//! A lossy UDP relay between a TFTP client and a server, for the loss tests and the loss
//! table of scripts/tftp-bench.sh: it drops chosen DATA blocks or ACKs once, duplicates,
//! reorders within a window, drops the last block of a window, drops at random (seeded) or in
//! bursts — a network that loses, repeats and reorders datagrams, on loopback.
//!
//! The client talks to [`Relay::addr`] only; the relay forwards requests to the server's port
//! and everything else to the session's port (learnt from the server's latest packet).

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the relay does to the traffic. Block numbers and packet counts start at 1; only DATA
/// and ACK packets of block 1 and above are ever touched (requests, OACKs, ACK 0 and ERRORs
/// pass), so every loss is one the transfer itself must recover from.
#[derive(Debug, Clone)]
pub enum Loss {
    /// Forward everything.
    None,
    /// Drop the first copy of each of these DATA blocks.
    DropData(Vec<u16>),
    /// Drop the first copy of each of these ACKs.
    DropAck(Vec<u16>),
    /// Send every n-th DATA and every n-th ACK twice.
    Duplicate(u32),
    /// Hold every n-th DATA packet back until the next DATA packet has passed.
    Reorder(u32),
    /// Drop the last block of these windows (counted from 1), once each.
    DropWindowTail(Vec<u32>),
    /// Drop DATA and ACKs at random, `per_mille` of them, at most `max` in all.
    Random { seed: u64, per_mille: u32, max: u32 },
    /// From each of these packet counts on (DATA and ACKs together), drop `len` in a row.
    Burst { at: Vec<u32>, len: u32 },
}

impl Loss {
    /// A short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::None => "none",
            Loss::DropData(_) => "drop DATA once",
            Loss::DropAck(_) => "drop ACK once",
            Loss::Duplicate(_) => "duplicate",
            Loss::Reorder(_) => "reorder",
            Loss::DropWindowTail(_) => "drop window tail",
            Loss::Random { .. } => "random",
            Loss::Burst { .. } => "burst",
        }
    }
}

/// What the relay did.
#[derive(Debug, Default, Clone)]
pub struct RelayStats {
    /// DATA packets that reached the relay (before any drop).
    pub data_in: u64,
    /// ACK packets that reached the relay.
    pub acks_in: u64,
    /// Packets dropped on purpose.
    pub dropped: u64,
    /// Packets sent twice.
    pub duplicated: u64,
    /// Packets held back behind the next one.
    pub reordered: u64,
}

/// A running relay; stops on drop.
pub struct Relay {
    /// Where the client sends its request.
    pub addr: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Relay {
    /// Starts a relay in front of `server` applying `loss`.
    pub fn start(server: SocketAddr, loss: Loss) -> Relay {
        Relay::spawn(server, loss, None)
    }

    /// A relay that loses nothing on purpose but reads like a busy client: its socket
    /// toward the server keeps the default receive buffer (`net.core.rmem_default`), and
    /// after each wake-up it pauses `pause` before draining it, so a burst the buffer
    /// cannot hold loses its tail — in the kernel, as a real client would.
    pub fn slow_reader(server: SocketAddr, pause: Duration) -> Relay {
        Relay::spawn(server, Loss::None, Some(pause))
    }

    fn spawn(server: SocketAddr, loss: Loss, pause: Option<Duration>) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay bind");
        let back = UdpSocket::bind("127.0.0.1:0").expect("relay bind");
        // Room for any burst: the relay itself must lose nothing it was not told to.
        for s in [&front, &back] {
            if pause.is_none() {
                let _ =
                    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
            }
            s.set_nonblocking(true).expect("nonblocking");
        }
        let addr = front.local_addr().expect("addr");
        let stats = Arc::new(Mutex::new(RelayStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State::new(loss, server, stats.clone());
        state.pause = pause;
        let flag = stop.clone();
        let thread = std::thread::spawn(move || state.run(&front, &back, &flag));
        Relay {
            addr,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        self.stats.lock().expect("lock").clone()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

enum Verdict {
    Forward,
    Drop,
    Twice,
    Hold,
}

struct State {
    loss: Loss,
    server: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    client: Option<SocketAddr>,
    session: Option<SocketAddr>,
    window: u16,
    /// The latest ACK forwarded (the start of the receiver's current window).
    last_ack: u16,
    tails_seen: HashSet<u16>,
    dropped_once: HashSet<(bool, u16)>,
    data_count: u32,
    ack_count: u32,
    rng: u64,
    random_drops: u32,
    burst_left: u32,
    held: Option<(Vec<u8>, Dir, Instant)>,
    /// Pause before draining the socket toward the server (a slow reader).
    pause: Option<Duration>,
}

/// How long a held packet waits for a successor before it is sent anyway.
const HOLD_MAX: Duration = Duration::from_millis(20);

impl State {
    fn new(loss: Loss, server: SocketAddr, stats: Arc<Mutex<RelayStats>>) -> State {
        let seed = match &loss {
            Loss::Random { seed, .. } => *seed | 1,
            _ => 1,
        };
        State {
            loss,
            server,
            stats,
            client: None,
            session: None,
            window: 1,
            last_ack: 0,
            tails_seen: HashSet::new(),
            dropped_once: HashSet::new(),
            data_count: 0,
            ack_count: 0,
            rng: seed,
            random_drops: 0,
            burst_left: 0,
            held: None,
            pause: None,
        }
    }

    fn run(&mut self, front: &UdpSocket, back: &UdpSocket, stop: &AtomicBool) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut buf = vec![0u8; 65_536 + 4];
        while !stop.load(Ordering::SeqCst) {
            let mut fds = [
                PollFd::new(front.as_fd(), PollFlags::POLLIN),
                PollFd::new(back.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::from(5u8));
            let back_ready = fds[1]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            if let (Some(pause), true) = (self.pause, back_ready) {
                std::thread::sleep(pause);
            }
            while let Ok((n, from)) = front.recv_from(&mut buf) {
                self.client = Some(from);
                let pkt = buf[..n].to_vec();
                self.handle(pkt, Dir::ToServer, front, back);
            }
            while let Ok((n, from)) = back.recv_from(&mut buf) {
                self.session = Some(from);
                let pkt = buf[..n].to_vec();
                self.handle(pkt, Dir::ToClient, front, back);
            }
            if let Some((_, _, since)) = &self.held {
                if since.elapsed() >= HOLD_MAX {
                    self.release(front, back);
                }
            }
        }
    }

    fn send(&self, pkt: &[u8], dir: Dir, front: &UdpSocket, back: &UdpSocket) {
        match dir {
            Dir::ToServer => {
                let is_request = pkt.len() >= 2 && (pkt[1] == 1 || pkt[1] == 2);
                let to = if is_request {
                    Some(self.server)
                } else {
                    self.session
                };
                if let Some(to) = to {
                    let _ = back.send_to(pkt, to);
                }
            }
            Dir::ToClient => {
                if let Some(c) = self.client {
                    let _ = front.send_to(pkt, c);
                }
            }
        }
    }

    fn release(&mut self, front: &UdpSocket, back: &UdpSocket) {
        if let Some((pkt, dir, _)) = self.held.take() {
            self.send(&pkt, dir, front, back);
        }
    }

    fn handle(&mut self, pkt: Vec<u8>, dir: Dir, front: &UdpSocket, back: &UdpSocket) {
        let verdict = self.judge(&pkt);
        if std::env::var_os("TFTP_RELAY_TRACE").is_some() && pkt.len() >= 4 {
            eprintln!(
                "relay {} op {} block {} {}",
                if dir == Dir::ToServer { "->" } else { "<-" },
                pkt[1],
                u16::from_be_bytes([pkt[2], pkt[3]]),
                match verdict {
                    Verdict::Forward => "",
                    Verdict::Drop => "DROP",
                    Verdict::Twice => "TWICE",
                    Verdict::Hold => "HOLD",
                }
            );
        }
        let is_data = pkt.len() >= 4 && pkt[1] == 3;
        match verdict {
            Verdict::Forward => self.send(&pkt, dir, front, back),
            Verdict::Drop => self.stats.lock().expect("lock").dropped += 1,
            Verdict::Twice => {
                self.send(&pkt, dir, front, back);
                self.send(&pkt, dir, front, back);
                self.stats.lock().expect("lock").duplicated += 1;
            }
            Verdict::Hold => {
                self.release(front, back);
                self.held = Some((pkt, dir, Instant::now()));
                self.stats.lock().expect("lock").reordered += 1;
                return;
            }
        }
        if is_data && !matches!(verdict, Verdict::Drop) {
            // The held packet goes after the DATA packet that overtook it.
            self.release(front, back);
        }
    }

    fn next_random(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1000) as u32
    }

    fn once(&mut self, data: bool, block: u16) -> bool {
        self.dropped_once.insert((data, block))
    }

    /// Decides the fate of one packet.
    fn judge(&mut self, pkt: &[u8]) -> Verdict {
        if pkt.len() < 4 {
            return Verdict::Forward;
        }
        let block = u16::from_be_bytes([pkt[2], pkt[3]]);
        let (data, ack) = (pkt[1] == 3, pkt[1] == 4);
        if pkt[1] == 6 {
            self.window = oack_window(pkt).unwrap_or(1);
        }
        if !(data || ack) || block == 0 {
            return Verdict::Forward;
        }
        {
            let mut s = self.stats.lock().expect("lock");
            if data {
                s.data_in += 1;
            } else {
                s.acks_in += 1;
            }
        }
        if data {
            self.data_count += 1;
        } else {
            self.ack_count += 1;
        }
        let verdict = match self.loss.clone() {
            Loss::None => Verdict::Forward,
            Loss::DropData(list) if data && list.contains(&block) && self.once(true, block) => {
                Verdict::Drop
            }
            Loss::DropAck(list) if ack && list.contains(&block) && self.once(false, block) => {
                Verdict::Drop
            }
            Loss::Duplicate(n) => {
                let count = if data {
                    self.data_count
                } else {
                    self.ack_count
                };
                if count % n == 0 {
                    Verdict::Twice
                } else {
                    Verdict::Forward
                }
            }
            Loss::Reorder(n) if data && self.data_count % n == 0 && self.held.is_none() => {
                Verdict::Hold
            }
            Loss::DropWindowTail(list) if data => {
                let tail = self.last_ack.wrapping_add(self.window);
                if block == tail && self.tails_seen.insert(tail) {
                    let nth = self.tails_seen.len() as u32;
                    if list.contains(&nth) && self.once(true, block) {
                        Verdict::Drop
                    } else {
                        Verdict::Forward
                    }
                } else {
                    Verdict::Forward
                }
            }
            Loss::Random { per_mille, max, .. } => {
                if self.random_drops < max && self.next_random() < per_mille {
                    self.random_drops += 1;
                    Verdict::Drop
                } else {
                    Verdict::Forward
                }
            }
            Loss::Burst { at, len } => {
                let count = self.data_count + self.ack_count;
                if at.contains(&count) {
                    self.burst_left = len;
                }
                if self.burst_left > 0 {
                    self.burst_left -= 1;
                    Verdict::Drop
                } else {
                    Verdict::Forward
                }
            }
            _ => Verdict::Forward,
        };
        if ack && !matches!(verdict, Verdict::Drop) {
            self.last_ack = block;
        }
        verdict
    }
}

/// The windowsize of an OACK, if any.
fn oack_window(pkt: &[u8]) -> Option<u16> {
    let strings: Vec<&[u8]> = pkt[2..].split(|b| *b == 0).collect();
    strings
        .chunks(2)
        .find(|kv| kv.len() == 2 && kv[0].eq_ignore_ascii_case(b"windowsize"))
        .and_then(|kv| std::str::from_utf8(kv[1]).ok()?.parse().ok())
}
