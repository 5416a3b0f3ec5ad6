//! The TFTP acceptor (fbtftp `BaseServer`): one UDP socket on the well-known port, a
//! per-source rate limit, a byte budget for unanswered peers and session caps (in all and
//! per source address) against reflection and exhaustion, the session's own sockets (opened
//! here, so that running out of descriptors is answered with an ERROR), sessions on threads
//! or forked children, and the periodic `server_stats_callback`. RFC 1350 §4 (TIDs).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::options::OptionLimits;
use super::packet::{self, ErrorCode, Packet, ParseError, Request};
use super::ratelimit::{Amplification, RateLimiter};
use super::stats::ServerStats;
use super::{session, transport, RequestInfo, TftpHandler};

/// Builds the handler of each request (fbtftp `BaseServer.get_handler`).
pub type HandlerFactory = Arc<dyn Fn(&RequestInfo) -> Box<dyn TftpHandler> + Send + Sync>;

/// Called every `stats_interval` with the live counters (fbtftp `server_stats_callback`);
/// always from the acceptor thread, never concurrently with itself.
pub type ServerStatsCallback = Arc<dyn Fn(&ServerStats) + Send + Sync>;

/// How a session is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// One thread per session (default).
    Thread,
    /// One child process per session (fbtftp's model). The acceptor stays single-threaded
    /// so that `fork()` is safe, and the process must run no other thread (checked);
    /// the children count into the server's counters, which live in shared memory.
    Fork,
}

/// A TFTP server's configuration (fbtftp `BaseServer`). Build with [`TftpServer::new`],
/// adjust the public fields, then [`TftpServer::bind`].
#[non_exhaustive]
pub struct TftpServer {
    /// Address to listen on. Default: `::` (dual stack).
    pub address: IpAddr,
    /// UDP port. Default: 69.
    pub port: u16,
    /// Timeouts in a row before a session gives up, once the peer has answered (until then
    /// the first packet goes at most twice). Default: 5.
    pub retries: u32,
    /// The retransmission timeout until a round trip is measured (RFC 6298 §2.1); after
    /// that it follows the measured round trips, within `min_timeout` and
    /// `limits.max_timeout` and never above the client's RFC 2349 `timeout`. Default: 1 s.
    pub timeout: Duration,
    /// The floor of the retransmission timeout. Default: 100 ms.
    pub min_timeout: Duration,
    /// A session ends after this long whatever its progress (ERROR 0 to the peer), so no
    /// client holds a slot for ever; `None` for no limit. Default: 10 minutes.
    pub max_session_time: Option<Duration>,
    /// Builds the handler of each request.
    pub handler_factory: HandlerFactory,
    /// Called every `stats_interval`. Default: none.
    pub server_stats_callback: Option<ServerStatsCallback>,
    /// Period of `server_stats_callback`. Default: 60 s.
    pub stats_interval: Duration,
    /// Threads or forked children. Default: [`Executor::Thread`].
    pub executor: Executor,
    /// Sessions running at once; more requests get ERROR 0. Default: 512.
    pub max_sessions: usize,
    /// Sessions running at once for one client address, so that one source cannot take
    /// every slot; more requests from it get ERROR 0; 0 for no limit. Default: 8.
    pub max_sessions_per_ip: usize,
    /// Requests per second accepted from one source address (a burst of twice that is
    /// allowed); 0 disables the limit. Default: 100.
    pub rate_limit: u32,
    /// Option bounds (blksize, windowsize, bytes in flight). Default: [`OptionLimits::default`].
    pub limits: OptionLimits,
    /// Where write requests land; `None` refuses them with ERROR 2. Default: `None`.
    pub upload_dir: Option<PathBuf>,
    /// Largest upload in bytes. Default: 64 MiB.
    pub max_upload: u64,
    /// Stop serving after this long without requests or sessions (inetd "wait" mode).
    /// Default: `None` (serve forever).
    pub idle_timeout: Option<Duration>,
    /// Serve the server's counters as Prometheus text at `GET /metrics` on this listener
    /// (see [`metrics`](super::metrics)). Default: none. The endpoint serves totals: a stats
    /// callback that reads the counters with `get_and_reset_all_counters` makes them restart
    /// from zero at every call (read them with `since`, as `tftpd` does).
    #[cfg(feature = "metrics")]
    pub metrics: Option<std::net::TcpListener>,
}

impl TftpServer {
    /// A server with the defaults above and `handler_factory`.
    pub fn new(handler_factory: HandlerFactory) -> Self {
        TftpServer {
            address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port: 69,
            retries: 5,
            timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(100),
            max_session_time: Some(Duration::from_secs(600)),
            handler_factory,
            server_stats_callback: None,
            stats_interval: Duration::from_secs(60),
            executor: Executor::Thread,
            max_sessions: 512,
            max_sessions_per_ip: 8,
            rate_limit: 100,
            limits: OptionLimits::default(),
            upload_dir: None,
            max_upload: 64 * 1024 * 1024,
            idle_timeout: None,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Binds the server socket.
    ///
    /// # Errors
    /// The bind error.
    pub fn bind(self) -> io::Result<BoundTftpServer> {
        let sock = UdpSocket::bind(SocketAddr::new(self.address, self.port))?;
        self.from_socket(sock)
    }

    /// Serves on an already bound socket (inetd "wait" mode hands over fd 0).
    ///
    /// # Errors
    /// When the socket cannot report its address or take a read timeout.
    pub fn from_socket(self, sock: UdpSocket) -> io::Result<BoundTftpServer> {
        let local = sock.local_addr()?;
        sock.set_read_timeout(Some(TICK))?;
        let pktinfo = transport::enable_pktinfo(&sock);
        let stats = Arc::new(ServerStats::new(self.stats_interval));
        Ok(BoundTftpServer {
            shared: Arc::new(Shared {
                cfg: self,
                stats,
                active: Arc::new(AtomicUsize::new(0)),
                peers: Mutex::new(HashSet::new()),
                budget: Arc::new(Mutex::new(Amplification::new())),
            }),
            sock,
            local,
            pktinfo,
            shutdown: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// How often the acceptor wakes up without traffic (shutdown, stats, reaping, idleness).
const TICK: Duration = Duration::from_millis(100);

/// What sessions share: the configuration and the counters.
pub(crate) struct Shared {
    pub cfg: TftpServer,
    pub stats: Arc<ServerStats>,
    /// Sessions running on threads.
    pub active: Arc<AtomicUsize>,
    /// Peers (client TIDs) with a session running on a thread.
    pub peers: Mutex<HashSet<SocketAddr>>,
    /// What may be sent to addresses that have not answered yet.
    pub budget: Arc<Mutex<Amplification>>,
}

/// A bound server, ready to [`serve_forever`](BoundTftpServer::serve_forever).
pub struct BoundTftpServer {
    shared: Arc<Shared>,
    sock: UdpSocket,
    local: SocketAddr,
    /// True when each request's destination address is known (wildcard bind).
    pktinfo: bool,
    shutdown: Arc<AtomicBool>,
}

/// Stops a running server from another thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shutdown: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl ServerHandle {
    /// Asks the acceptor to stop (within 100 ms); running sessions finish on their own.
    pub fn close(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The session's sockets: its own, connected to the peer, and the one for strangers.
type Sockets = (UdpSocket, Option<UdpSocket>);

/// A job the acceptor hands back to the child after `fork()`.
struct ChildJob {
    req: Request,
    peer: SocketAddr,
    local: SocketAddr,
    sockets: Sockets,
}

impl BoundTftpServer {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shutdown: self.shutdown.clone(),
            addr: self.local,
        }
    }

    /// The live server counters.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.shared.stats.clone()
    }

    /// Serves until [`ServerHandle::close`] (or the idle timeout).
    ///
    /// # Errors
    /// A fatal error of the server socket, or [`Executor::Fork`] in a process that runs
    /// other threads.
    pub fn serve_forever(self) -> io::Result<()> {
        if self.shared.cfg.executor == Executor::Fork {
            crate::process::ensure_single_thread("TFTP fork")?;
        }
        #[cfg(feature = "metrics")]
        let _metrics = self.start_metrics()?;
        match self.accept_loop()? {
            None => Ok(()),
            Some(job) => {
                // In a forked child: close the server socket, run the one session, exit.
                let BoundTftpServer { shared, sock, .. } = self;
                drop(sock);
                // The child counts its session into the shared counters itself (bytes,
                // packets, outcome); the parent only counts a child that died unreported.
                let ok = match catch_unwind(AssertUnwindSafe(|| {
                    session::run(&shared, job.req, job.peer, job.local, job.sockets)
                })) {
                    Ok(s) => {
                        shared.stats.session_done(&s);
                        s.error.is_none()
                    }
                    Err(_) => {
                        shared.stats.session_result(false);
                        false
                    }
                };
                std::process::exit(if ok { 0 } else { 1 });
            }
        }
    }

    /// Starts the metrics endpoint, if asked for: a thread, or in Fork mode a process
    /// forked now, before any session (dropping it stops it).
    #[cfg(feature = "metrics")]
    fn start_metrics(&self) -> io::Result<Option<super::metrics::Endpoint>> {
        use std::os::fd::AsRawFd;
        let Some(l) = &self.shared.cfg.metrics else {
            return Ok(None);
        };
        let l = l.try_clone()?;
        let stats = self.shared.stats.clone();
        Ok(Some(match self.shared.cfg.executor {
            Executor::Thread => super::metrics::Endpoint::thread(l, stats)?,
            Executor::Fork => super::metrics::Endpoint::process(l, &stats, self.sock.as_raw_fd())?,
        }))
    }

    fn peers(&self) -> MutexGuard<'_, HashSet<SocketAddr>> {
        // A poisoned set is still a valid set: sessions never panic while holding it.
        self.shared.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an ERROR from the server port, within the address's anti-amplification budget
    /// (the source has not proved it is the one asking).
    fn send_error(&self, to: SocketAddr, code: ErrorCode, msg: &str) {
        let pkt = packet::error(code, msg);
        let allowed = self
            .shared
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(to.ip(), pkt.len(), Instant::now());
        if !allowed {
            debug!("{to} no ERROR {}: over its budget", code.code());
            return;
        }
        if self.sock.send_to(&pkt, to).is_ok() {
            self.shared.stats.error_sent(code.code());
        }
    }

    fn accept_loop(&self) -> io::Result<Option<ChildJob>> {
        let cfg = &self.shared.cfg;
        let mut st = AcceptState {
            children: HashMap::new(),
            limiter: RateLimiter::new(cfg.rate_limit),
            next_stats: Instant::now() + cfg.stats_interval,
            last_activity: Instant::now(),
            emfile: Throttled::default(),
        };
        let mut buf = vec![0u8; 65536];
        while !self.shutdown.load(Ordering::SeqCst) {
            if self.housekeeping(&mut st) {
                return Ok(None);
            }
            let received = if self.pktinfo {
                transport::recv_with_dst(&self.sock, &mut buf)
            } else {
                self.sock.recv_from(&mut buf).map(|(n, p)| (n, p, None))
            };
            let (n, peer, local) = match received {
                Ok((n, peer, dst)) => self.session_addrs(n, peer, dst),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) if is_fatal(&e) => {
                    error!("server socket: {e}");
                    return Err(e);
                }
                Err(e) => {
                    // E.g. ENOBUFS or an ICMP error surfacing: one datagram lost, not the
                    // server. The pause keeps a persistent error from spinning the loop.
                    warn!("server socket: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            st.last_activity = Instant::now();
            if let Some(job) = self.admit(&mut st, &buf[..n], peer, local) {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Reaps children, calls the stats callback, and says whether the idle timeout passed.
    fn housekeeping(&self, st: &mut AcceptState) -> bool {
        let cfg = &self.shared.cfg;
        let stats = &self.shared.stats;
        let now = Instant::now();
        if cfg.executor == Executor::Fork {
            reap(stats, &mut st.children);
        }
        if now >= st.next_stats {
            st.next_stats = now + cfg.stats_interval;
            if let Some(cb) = &cfg.server_stats_callback {
                cb(stats);
            }
        }
        if self.shared.active.load(Ordering::SeqCst) + st.children.len() > 0 {
            st.last_activity = now;
        }
        let idle = cfg
            .idle_timeout
            .is_some_and(|idle| now.duration_since(st.last_activity) >= idle);
        if idle {
            info!(
                "idle for {:?}, exiting",
                cfg.idle_timeout.unwrap_or_default()
            );
        }
        idle
    }

    /// Sessions running for `ip` (and whether `peer` itself has one).
    fn running_for(&self, st: &AcceptState, peer: SocketAddr) -> (usize, bool) {
        let count = |addrs: &mut dyn Iterator<Item = &SocketAddr>| {
            addrs.fold((0, false), |(n, dup), a| {
                (n + usize::from(a.ip() == peer.ip()), dup || *a == peer)
            })
        };
        match self.shared.cfg.executor {
            Executor::Thread => count(&mut self.peers().iter()),
            Executor::Fork => count(&mut st.children.values()),
        }
    }

    /// Checks one datagram on the server port and starts its session; in a forked child,
    /// returns the job to run.
    fn admit(
        &self,
        st: &mut AcceptState,
        pkt: &[u8],
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Option<ChildJob> {
        let req = self.request(st, pkt, peer)?;
        if !st.limiter.allow(peer.ip(), Instant::now()) {
            debug!("{peer} rate limited");
            ServerStats::add(&self.shared.stats.requests_rate_limited, 1);
            return None;
        }
        self.credit(peer, pkt.len());
        if !self.room_for(st, peer) {
            return None;
        }
        let sockets = match transport::open_sockets(local.ip(), peer) {
            Ok(s) => s,
            Err(e) => {
                self.no_session_socket(st, peer, &e);
                return None;
            }
        };
        ServerStats::add(&self.shared.stats.sessions_started, 1);
        match self.shared.cfg.executor {
            Executor::Thread => {
                self.spawn_thread(req, peer, local, sockets);
                None
            }
            Executor::Fork => self.fork(req, peer, local, sockets, &mut st.children),
        }
    }

    /// The request in a datagram on the server port. Anything else is counted and dropped:
    /// silently when it is a stray packet or too short to be anything, else with a
    /// (rate-limited) ERROR 4.
    fn request(&self, st: &mut AcceptState, pkt: &[u8], peer: SocketAddr) -> Option<Request> {
        let stats = &self.shared.stats;
        match packet::parse(pkt) {
            Ok(Packet::Request(r)) => Some(r),
            Ok(other) => {
                // DATA/ACK/ERROR/OACK on the server port belong to no session: silence.
                debug!("{peer} stray packet on the server port: {other:?}");
                ServerStats::add(&stats.bad_packets, 1);
                None
            }
            Err(e) => {
                debug!("{peer} bad packet ({} bytes): {e}", pkt.len());
                ServerStats::add(&stats.bad_packets, 1);
                if e != ParseError::TooShort && st.limiter.allow(peer.ip(), Instant::now()) {
                    self.credit(peer, pkt.len());
                    self.send_error(peer, ErrorCode::IllegalOperation, "Illegal TFTP operation");
                }
                None
            }
        }
    }

    /// Whether a new session for `peer` fits: not a retransmitted request of a running
    /// session (ignored), within `max_sessions` and `max_sessions_per_ip` (else ERROR 0).
    fn room_for(&self, st: &AcceptState, peer: SocketAddr) -> bool {
        let cfg = &self.shared.cfg;
        let stats = &self.shared.stats;
        let (from_ip, duplicate) = self.running_for(st, peer);
        if duplicate {
            // A retransmitted request while its session runs is not a new transfer.
            debug!("{peer} duplicate request ignored: its session is running");
            return false;
        }
        let running = self.shared.active.load(Ordering::SeqCst) + st.children.len();
        let why = if running >= cfg.max_sessions {
            warn!("{peer} refused: {} sessions running", cfg.max_sessions);
            "Server busy, try again later"
        } else if cfg.max_sessions_per_ip > 0 && from_ip >= cfg.max_sessions_per_ip {
            debug!("{peer} refused: {from_ip} sessions running for its address");
            "Too many sessions from your address"
        } else {
            return true;
        };
        ServerStats::add(&stats.requests_over_capacity, 1);
        self.send_error(peer, ErrorCode::NotDefined, why);
        false
    }

    /// Credits `peer`'s address with a request of `len` bytes (anti-amplification budget).
    fn credit(&self, peer: SocketAddr, len: usize) {
        self.shared
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .received(peer.ip(), len, Instant::now());
    }

    /// The session's socket could not be opened: the request is dropped with an ERROR from
    /// the server port, and the server goes on serving others. Out of descriptors, the log
    /// says so once a second with a count, not once per request.
    fn no_session_socket(&self, st: &mut AcceptState, peer: SocketAddr, e: &io::Error) {
        ServerStats::add(&self.shared.stats.requests_over_capacity, 1);
        if transport::is_out_of_descriptors(e) {
            if let Some(n) = st.emfile.tick(Instant::now()) {
                warn!("{peer} no session socket: {e} ({n} request(s) refused in the last second)");
            }
            self.send_error(
                peer,
                ErrorCode::NotDefined,
                "Server out of resources, try again later",
            );
        } else {
            warn!("{peer} cannot open a session socket: {e}");
            self.send_error(peer, ErrorCode::NotDefined, "Cannot start a session");
        }
    }

    /// The session's addresses: the peer (an IPv4-mapped peer as plain IPv4 when the request
    /// came to an IPv4 address) and the server address the request was sent to.
    fn session_addrs(
        &self,
        n: usize,
        peer: SocketAddr,
        dst: Option<IpAddr>,
    ) -> (usize, SocketAddr, SocketAddr) {
        match dst.map(|ip| ip.to_canonical()) {
            Some(ip) if !ip.is_unspecified() => {
                let peer = if ip.is_ipv4() {
                    SocketAddr::new(peer.ip().to_canonical(), peer.port())
                } else {
                    peer
                };
                (n, peer, SocketAddr::new(ip, self.local.port()))
            }
            _ => (n, peer, self.local),
        }
    }

    fn spawn_thread(&self, req: Request, peer: SocketAddr, local: SocketAddr, sockets: Sockets) {
        let active = &self.shared.active;
        struct Guard(Arc<AtomicUsize>, Arc<Shared>, SocketAddr);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.1
                    .peers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.2);
                self.0.fetch_sub(1, Ordering::SeqCst);
                self.1.stats.sessions_active.fetch_sub(1, Ordering::Relaxed);
            }
        }
        active.fetch_add(1, Ordering::SeqCst);
        ServerStats::add(&self.shared.stats.sessions_active, 1);
        self.peers().insert(peer);
        let guard = Guard(active.clone(), self.shared.clone(), peer);
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("tftp-session".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _guard = guard;
                let res = catch_unwind(AssertUnwindSafe(|| {
                    session::run(&shared, req, peer, local, sockets)
                }));
                match res {
                    Ok(s) => shared.stats.session_done(&s),
                    Err(_) => {
                        error!("{peer} session panicked");
                        shared.stats.session_result(false);
                    }
                }
            });
        if let Err(e) = spawned {
            error!("{peer} cannot start a session thread: {e}");
            self.shared.stats.session_result(false);
            self.send_error(peer, ErrorCode::NotDefined, "Server busy, try again later");
        }
    }

    fn fork(
        &self,
        req: Request,
        peer: SocketAddr,
        local: SocketAddr,
        sockets: Sockets,
        children: &mut HashMap<nix::unistd::Pid, SocketAddr>,
    ) -> Option<ChildJob> {
        use nix::unistd::ForkResult;
        // In Fork mode the acceptor is the only thread of the process (no stats thread, no
        // session threads), as the shared fork helper requires.
        match crate::process::fork("TFTP fork") {
            Ok(ForkResult::Child) => Some(ChildJob {
                req,
                peer,
                local,
                sockets,
            }),
            Ok(ForkResult::Parent { child }) => {
                // The child owns the session's sockets; the parent's copies close here.
                drop(sockets);
                debug!("{peer} session in child {child}");
                children.insert(child, peer);
                set_active(&self.shared.stats, children);
                None
            }
            Err(e) => {
                error!("{peer} fork failed: {e}");
                self.shared.stats.session_result(false);
                self.send_error(peer, ErrorCode::NotDefined, "Server busy, try again later");
                None
            }
        }
    }
}

/// What the acceptor keeps between datagrams.
struct AcceptState {
    /// Forked sessions by pid, with their peer (Fork mode).
    children: HashMap<nix::unistd::Pid, SocketAddr>,
    limiter: RateLimiter,
    next_stats: Instant,
    last_activity: Instant,
    /// Requests refused for want of descriptors, logged once a second.
    emfile: Throttled,
}

/// Counts events and lets one through per second, with the count since the last.
#[derive(Default)]
struct Throttled {
    count: u64,
    last: Option<Instant>,
}

impl Throttled {
    /// Counts one event; `Some(count)` when it is time to log.
    fn tick(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// Errors after which the server socket cannot be used again.
fn is_fatal(e: &io::Error) -> bool {
    use nix::libc::{EBADF, EFAULT, EINVAL, ENOTSOCK};
    matches!(e.raw_os_error(), Some(EBADF | ENOTSOCK | EINVAL | EFAULT))
}

/// Reaps finished children without blocking. A child that exited counted its session
/// itself; one killed by a signal could not, and counts as failed here.
fn reap(stats: &ServerStats, children: &mut HashMap<nix::unistd::Pid, SocketAddr>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while !children.is_empty() {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, _)) => {
                children.remove(&pid);
            }
            // Only a session's child counts (not the metrics endpoint's process).
            Ok(WaitStatus::Signaled(pid, ..)) => {
                if children.remove(&pid).is_some() {
                    stats.session_result(false);
                }
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
    set_active(stats, children);
}

/// The active-sessions gauge in Fork mode: the children running.
fn set_active(stats: &ServerStats, children: &HashMap<nix::unistd::Pid, SocketAddr>) {
    stats
        .sessions_active
        .store(children.len() as u64, Ordering::Relaxed);
}
