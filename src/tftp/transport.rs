//! The socket side of a session (fbtftp `BaseHandler`'s transmit/receive helpers): its own
//! UDP socket (the server TID, RFC 1350 §4), the retransmission timer, the session's
//! lifetime, ERROR 5 for strangers, window bursts through UDP GSO or sendmmsg(2)
//! (RFC 7440), the anti-amplification budget until the peer answers, and the route-MTU bound
//! on blksize (RFC 2348).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::debug;

use super::options;
use super::packet::{self, ErrorCode};
use super::ratelimit::Amplification;
use super::rto::Rto;
use super::stats::SessionStats;

/// The socket side of a session: its own UDP socket (the server TID), the peer, the
/// retransmission timer and the running statistics.
pub(crate) struct Ctx {
    pub sock: UdpSocket,
    pub peer: SocketAddr,
    /// The retransmission timeout (adapts to measured round trips).
    pub rto: Rto,
    /// Timeouts in a row before the session gives up, once the peer has answered.
    pub retries: u32,
    pub stats: SessionStats,
    pub buf: Vec<u8>,
    /// True once the peer has sent anything from its TID: until then the first packet goes
    /// at most twice, the second time within the anti-amplification budget.
    pub verified: bool,
    deadline: Instant,
    /// The receive timeout set on the socket now.
    sock_timeout: Duration,
    /// The session ends here, progress or not.
    end_of_life: Option<Instant>,
    /// The server's anti-amplification budget (None: no budget, e.g. in unit tests).
    budget: Option<Arc<Mutex<Amplification>>>,
    /// UDP generic segmentation offload: the datagram size the socket cuts bursts into.
    gso: Option<usize>,
    gso_buf: Vec<u8>,
    /// True when `sock` is connected to the peer (see [`open_sockets`]).
    connected: bool,
    /// With a connected `sock`: the unconnected socket on the same port that receives
    /// everybody else's packets (non-blocking).
    strays: Option<UdpSocket>,
    /// Bursts sent since `strays` was last looked at.
    since_strays: u32,
}

/// How many bursts may go by before packets from strangers are answered.
const STRAY_CHECK_EVERY: u32 = 16;

/// On a server socket bound to a wildcard address, asks the kernel for each datagram's
/// destination address (IP_PKTINFO / IPV6_RECVPKTINFO), so a session can answer from the
/// address the client wrote to — on a multi-homed host any other source would be rejected
/// by the client (RFC 1350 §4: the reply must come from the server the client chose).
/// Returns whether it is on.
pub(crate) fn enable_pktinfo(sock: &UdpSocket) -> bool {
    use nix::sys::socket::{setsockopt, sockopt};
    match sock.local_addr() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => {
            setsockopt(sock, sockopt::Ipv4PacketInfo, &true).is_ok()
        }
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => {
            // IPv4 clients of a dual-stack socket report through IP_PKTINFO.
            let _ = setsockopt(sock, sockopt::Ipv4PacketInfo, &true);
            setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true).is_ok()
        }
        _ => false,
    }
}

/// Receives a datagram with its source and, when [`enable_pktinfo`] is on, the address it
/// was sent to.
///
/// # Errors
/// The receive error (a timeout is `WouldBlock`/`TimedOut`).
pub(crate) fn recv_with_dst(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<std::net::IpAddr>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::io::IoSliceMut;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::V4((*v4).into()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
    });
    let Some(from) = from else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram without a source",
        ));
    };
    let mut dst = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    // ip(7): ipi_spec_dst is the local address to answer from (for a
                    // broadcast request too); ipi_addr is the header's destination.
                    dst = Some(Ipv4Addr::from(u32::from_be(i.ipi_spec_dst.s_addr)).into());
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    dst = Some(Ipv6Addr::from(i.ipi6_addr.s6_addr).into());
                }
                _ => {}
            }
        }
    }
    Ok((msg.bytes, from, dst))
}

/// Binds a UDP socket with SO_REUSEPORT, so a second one can share its port. Unlike
/// SO_REUSEADDR, the kernel lets only sockets of the same user join: another local user
/// cannot bind the session's port to read or forge its packets.
fn bind_reuse(addr: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    use std::os::fd::AsRawFd;
    let (family, sa) = match addr {
        SocketAddr::V4(a) => (AddressFamily::Inet, SockaddrStorage::from(a)),
        SocketAddr::V6(a) => (AddressFamily::Inet6, SockaddrStorage::from(a)),
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &sa)?;
    Ok(UdpSocket::from(fd))
}

/// Opens a session's sockets on an ephemeral port of `local_ip` (the server TID).
///
/// The main socket is connected to the peer, so the kernel filters the peer's packets for
/// it and caches the route for every send; a second, unconnected socket bound to the same
/// port (SO_REUSEPORT; the connected one wins for the peer's packets) receives everybody
/// else's, answered with ERROR 5 (RFC 1350 §4). If that cannot be set up, one unconnected
/// socket does both jobs.
///
/// # Errors
/// When not even one socket can be bound.
pub(crate) fn open_sockets(
    local_ip: std::net::IpAddr,
    peer: SocketAddr,
) -> io::Result<(UdpSocket, Option<UdpSocket>)> {
    let pair = || -> io::Result<(UdpSocket, UdpSocket)> {
        let main = bind_reuse(SocketAddr::new(local_ip, 0))?;
        let strays = bind_reuse(main.local_addr()?)?;
        strays.set_nonblocking(true)?;
        main.connect(peer)?;
        Ok((main, strays))
    };
    match pair() {
        Ok((main, strays)) => Ok((main, Some(strays))),
        Err(e) => {
            debug!("{peer} single unconnected session socket: {e}");
            Ok((UdpSocket::bind(SocketAddr::new(local_ip, 0))?, None))
        }
    }
}

impl Ctx {
    /// A session context on `sock` with the retransmission timer `rto`, ending at
    /// `end_of_life` at the latest.
    pub fn new(
        sock: UdpSocket,
        peer: SocketAddr,
        rto: Rto,
        retries: u32,
        stats: SessionStats,
        end_of_life: Option<Instant>,
    ) -> io::Result<Ctx> {
        let now = Instant::now();
        let first = rto.current();
        sock.set_read_timeout(Some(first))?;
        Ok(Ctx {
            sock,
            peer,
            rto,
            retries,
            stats,
            buf: vec![0; 65536 + 4],
            verified: false,
            deadline: now,
            sock_timeout: first,
            end_of_life,
            budget: None,
            gso: None,
            gso_buf: Vec::new(),
            connected: false,
            strays: None,
            since_strays: 0,
        })
    }

    /// Charges what is sent before the peer answers to `budget`.
    pub fn set_budget(&mut self, budget: Arc<Mutex<Amplification>>) {
        self.budget = Some(budget);
    }

    /// Uses `strays` for packets from others; `self.sock` must be connected to the peer.
    pub fn set_strays(&mut self, strays: Option<UdpSocket>) {
        self.connected = strays.is_some();
        self.strays = strays;
    }

    /// Answers what strangers sent to the session's port with ERROR 5 (RFC 1350 §4: "an
    /// error packet should be sent to the source of the incorrect packet, while not
    /// disturbing the transfer"); never an ERROR in reply to an ERROR.
    pub fn answer_strays(&mut self) {
        self.since_strays = 0;
        let Some(strays) = &self.strays else { return };
        let mut buf = [0u8; 4];
        for _ in 0..16 {
            // A datagram longer than `buf` is truncated: its opcode is all we look at.
            let Ok((n, from)) = strays.recv_from(&mut buf) else {
                return;
            };
            debug!("{} packet from stranger {from}", self.log_prefix());
            if n >= 2 && buf[1] != packet::OP_ERROR as u8 {
                let e = packet::error(ErrorCode::UnknownTid, "Unknown transfer ID");
                if strays.send_to(&e, from).is_ok() {
                    self.stats.packets_sent += 1;
                }
            }
        }
    }

    fn send_raw(&self, pkt: &[u8]) -> io::Result<usize> {
        if self.connected {
            self.sock.send(pkt)
        } else {
            self.sock.send_to(pkt, self.peer)
        }
    }

    /// `peer-[file]`, the prefix of this session's log lines.
    pub fn log_prefix(&self) -> String {
        format!(
            "{}-[{}]",
            self.peer,
            super::session::printable(&self.stats.file_path)
        )
    }

    /// Sends a packet to the peer, counted.
    pub fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        self.send_raw(pkt)?;
        self.stats.packets_sent += 1;
        Ok(())
    }

    /// Sends an ERROR to the peer and records it.
    pub fn send_error(&mut self, code: ErrorCode, msg: &str) {
        debug!("{} sending ERROR {} {msg}", self.log_prefix(), code.code());
        if self.send(&packet::error(code, msg)).is_ok() {
            self.stats.error_sent = Some((code.code(), msg.to_owned()));
        }
    }

    /// Sends the session's first packet (OACK, DATA 1 or ACK 0), charged to the peer's
    /// anti-amplification budget.
    pub fn send_first(&mut self, pkt: &[u8]) -> io::Result<()> {
        if let Some(b) = &self.budget {
            b.lock().unwrap_or_else(|e| e.into_inner()).charge(
                self.peer.ip(),
                pkt.len(),
                Instant::now(),
            );
        }
        self.send(pkt)
    }

    /// Sends the first packet again to a peer that has not answered, if its address's
    /// anti-amplification budget allows; false when it was not sent.
    pub fn resend_first(&mut self, pkt: &[u8]) -> io::Result<bool> {
        let allowed = self.budget.as_ref().map_or(true, |b| {
            b.lock().unwrap_or_else(|e| e.into_inner()).allow(
                self.peer.ip(),
                pkt.len(),
                Instant::now(),
            )
        });
        if !allowed {
            debug!(
                "{} no retransmission: the peer has not answered and its budget is spent",
                self.log_prefix()
            );
            return Ok(false);
        }
        self.send(pkt)?;
        self.stats.retransmits += 1;
        Ok(true)
    }

    /// Timeouts in a row allowed before giving up: one retransmission of the first packet
    /// until the peer has answered (anti-reflection), `retries` afterwards.
    pub fn tries_allowed(&self) -> u32 {
        if self.verified {
            self.retries
        } else {
            1
        }
    }

    /// A wait ran out: counts it in `tries` and backs the retransmission timeout off, or
    /// says why the session ends: too many timeouts in a row ([`tries_allowed`]), or no
    /// answer at all from a peer that never answered.
    ///
    /// [`tries_allowed`]: Self::tries_allowed
    pub fn timed_out(&mut self, tries: &mut u32) -> Result<(), String> {
        *tries += 1;
        if *tries > self.tries_allowed() {
            return Err(if self.verified {
                format!("timeout after {} retries", self.retries)
            } else {
                "no answer from the peer".to_owned()
            });
        }
        self.rto.back_off();
        Ok(())
    }

    /// Starts a new wait of one retransmission timeout (after each burst sent).
    pub fn arm(&mut self) -> io::Result<()> {
        let rto = self.rto.current();
        self.arm_for(rto)
    }

    /// Starts a new wait of `wait`, cut short by the end of the session's life.
    pub fn arm_for(&mut self, wait: Duration) -> io::Result<()> {
        let now = Instant::now();
        let wait = match self.end_of_life {
            Some(end) => wait.min(end.saturating_duration_since(now)),
            None => wait,
        };
        self.set_sock_timeout(wait)?;
        self.since_strays += 1;
        if self.since_strays >= STRAY_CHECK_EVERY {
            self.answer_strays();
        }
        self.deadline = now + wait;
        Ok(())
    }

    /// Sets the socket's receive timeout unless it is already that (a system call saved per
    /// packet: on a LAN the timeout sits at its floor).
    fn set_sock_timeout(&mut self, t: Duration) -> io::Result<()> {
        // A zero timeout means "block for ever" to SO_RCVTIMEO.
        let t = t.max(Duration::from_micros(100));
        if t != self.sock_timeout {
            self.sock.set_read_timeout(Some(t))?;
            self.sock_timeout = t;
        }
        Ok(())
    }

    /// Sends packets to the peer, several per system call (sendmmsg(2)) — a window of
    /// RFC 7440 blocks leaves in one burst, so the receiver drains it without sleeping.
    pub fn send_burst(&mut self, pkts: &[&[u8]]) -> io::Result<()> {
        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        let addr = match self.peer {
            SocketAddr::V4(a) => SockaddrStorage::from(a),
            SocketAddr::V6(a) => SockaddrStorage::from(a),
        };
        let mut done = 0;
        if let Some(seg) = self.gso {
            done = self.send_gso(pkts, seg);
        }
        while done < pkts.len() {
            let rest = &pkts[done..];
            if rest.len() == 1 {
                self.send(rest[0])?;
                done += 1;
                continue;
            }
            let iovs: Vec<[IoSlice<'_>; 1]> = rest.iter().map(|p| [IoSlice::new(p)]).collect();
            // A connected socket sends to its peer (and keeps its cached route).
            let addrs = vec![if self.connected { None } else { Some(addr) }; rest.len()];
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(rest.len(), None);
            let cmsgs: [ControlMessage<'_>; 0] = [];
            let sent = sendmmsg(
                self.sock.as_raw_fd(),
                &mut headers,
                &iovs,
                addrs,
                cmsgs,
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?
            .count();
            if sent == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "sendmmsg sent nothing",
                ));
            }
            self.stats.packets_sent += sent as u64;
            done += sent;
        }
        Ok(())
    }

    /// Turns on UDP GSO (UDP_SEGMENT) for bursts of `seg`-byte datagrams: the kernel then
    /// walks its send path once per burst instead of once per block. Off if unsupported.
    pub fn enable_gso(&mut self, seg: usize) {
        use nix::sys::socket::{setsockopt, sockopt};
        // Worth it only if at least two datagrams fit in one 64 KiB send.
        if seg * 2 > GSO_MAX_BYTES {
            return;
        }
        if let Ok(v) = i32::try_from(seg) {
            if setsockopt(&self.sock, sockopt::UdpGsoSegment, &v).is_ok() {
                self.gso = Some(seg);
            }
        }
    }

    /// Sends as much of `pkts` as possible through GSO (all full-size datagrams, the last
    /// one may be shorter); returns how many were sent. On an error GSO is switched off and
    /// the caller sends the rest one by one.
    fn send_gso(&mut self, pkts: &[&[u8]], seg: usize) -> usize {
        use nix::sys::socket::{setsockopt, sockopt};
        let per_send = (GSO_MAX_BYTES / seg).min(GSO_MAX_SEGMENTS);
        let mut done = 0;
        while pkts.len() - done >= 2 {
            let chunk = &pkts[done..(done + per_send).min(pkts.len())];
            // Only the last datagram of a GSO send may be short.
            let full = chunk.iter().take(chunk.len() - 1).all(|p| p.len() == seg);
            if !full || chunk[chunk.len() - 1].len() > seg {
                break;
            }
            self.gso_buf.clear();
            for p in chunk {
                self.gso_buf.extend_from_slice(p);
            }
            match self.send_raw(&self.gso_buf) {
                Ok(_) => {
                    self.stats.packets_sent += chunk.len() as u64;
                    done += chunk.len();
                }
                Err(e) => {
                    debug!("{} UDP GSO off: {e}", self.log_prefix());
                    let _ = setsockopt(&self.sock, sockopt::UdpGsoSegment, &0);
                    self.gso = None;
                    break;
                }
            }
        }
        done
    }

    /// Waits for the next packet from the peer until the armed deadline.
    ///
    /// Returns the packet length in `self.buf`, or `None` once the deadline has passed. A
    /// packet from any other address or port gets ERROR 5 and the wait goes on (RFC 1350
    /// §4).
    ///
    /// # Errors
    /// A socket error, or `TimedOut` when the session has reached the end of its life (the
    /// peer is told with an ERROR).
    pub fn recv(&mut self) -> io::Result<Option<usize>> {
        loop {
            let now = Instant::now();
            if self.end_of_life.is_some_and(|end| now >= end) {
                self.send_error(ErrorCode::NotDefined, "Session time limit reached");
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "session time limit reached",
                ));
            }
            if now >= self.deadline {
                self.answer_strays();
                return Ok(None);
            }
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, from)) if from == self.peer => {
                    self.stats.packets_received += 1;
                    if !self.verified {
                        self.verified = true;
                        if let Some(b) = &self.budget {
                            b.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .answered(self.peer.ip());
                        }
                    }
                    return Ok(Some(n));
                }
                Ok((n, from)) => {
                    debug!("{} packet from stranger {from}", self.log_prefix());
                    // Never answer an ERROR with an ERROR (no ping-pong).
                    if n >= 2 && self.buf[1] != packet::OP_ERROR as u8 {
                        let e = packet::error(ErrorCode::UnknownTid, "Unknown transfer ID");
                        if self.sock.send_to(&e, from).is_ok() {
                            self.stats.packets_sent += 1;
                        }
                    }
                    self.shrink_wait()?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.answer_strays();
                    if Instant::now() >= self.deadline {
                        return Ok(None);
                    }
                    // Woken early (a shorter timeout set earlier): wait out the rest.
                    self.shrink_wait()?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// After an ignored packet, waits only for what is left of the deadline, so a stream of
    /// junk cannot keep a session alive.
    pub fn shrink_wait(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.set_sock_timeout(left)
    }
}

/// The most payload one GSO send carries (a UDP datagram's limit, with IPv6 headroom).
const GSO_MAX_BYTES: usize = 65_000;
/// The most datagrams one GSO send may be cut into (Linux UDP_MAX_SEGMENTS is 64 or 128).
const GSO_MAX_SEGMENTS: usize = 64;

/// Maps a handler's I/O error to the ERROR sent (messages never reveal server paths).
pub(crate) fn io_error_reply(e: &io::Error) -> (ErrorCode, &'static str) {
    if is_out_of_descriptors(e) {
        return (
            ErrorCode::NotDefined,
            "Server out of resources, try again later",
        );
    }
    match e.kind() {
        io::ErrorKind::NotFound => (ErrorCode::FileNotFound, "File not found"),
        io::ErrorKind::PermissionDenied => (ErrorCode::AccessViolation, "Access violation"),
        io::ErrorKind::AlreadyExists => (ErrorCode::FileExists, "File already exists"),
        _ => (ErrorCode::NotDefined, "Cannot read the file"),
    }
}

/// True for EMFILE/ENFILE: the process or the system has no descriptor left.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE)
    )
}

/// The largest block size the route to `peer` carries without IP fragmentation
/// (RFC 2348: the server may answer with a smaller blksize). IPv4 only; IPv6 keeps `max`.
pub(crate) fn path_max_blksize(ctx: &Ctx, max: usize) -> usize {
    use nix::sys::socket::{getsockopt, sockopt};
    if !ctx.peer.is_ipv4() {
        return max;
    }
    // IP_MTU needs a connected socket: the session's own, or a throwaway one.
    let mtu = if ctx.connected {
        getsockopt(&ctx.sock, sockopt::IpMtu).ok()
    } else {
        UdpSocket::bind(("0.0.0.0", 0))
            .and_then(|s| s.connect(ctx.peer).map(|()| s))
            .ok()
            .and_then(|s| getsockopt(&s, sockopt::IpMtu).ok())
    };
    match mtu {
        Some(mtu) if mtu > 28 => max.min(mtu as usize - 28).max(options::MIN_BLKSIZE),
        _ => max,
    }
}
