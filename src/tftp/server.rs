//! The TFTP acceptor (fbtftp `BaseServer`): one UDP socket on the well-known port, a
//! per-source rate limit and a session cap (anti-reflection), sessions on threads or forked
//! children, and the periodic `server_stats_callback`. RFC 1350 §4 (TIDs).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::options::Limits;
use super::packet::{self, ErrorCode, Packet, ParseError, Request};
use super::ratelimit::RateLimiter;
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
    /// server counters only see session outcomes.
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
    /// Retransmissions before a session gives up. Default: 5.
    pub retries: u32,
    /// Retransmission timeout unless the client negotiates one. Default: 2 s.
    pub timeout: Duration,
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
    /// Requests per second accepted from one source address (a burst of twice that is
    /// allowed); 0 disables the limit. Default: 100.
    pub rate_limit: u32,
    /// Option bounds (blksize, windowsize, bytes in flight). Default: [`Limits::default`].
    pub limits: Limits,
    /// Where write requests land; `None` refuses them with ERROR 2. Default: `None`.
    pub upload_dir: Option<PathBuf>,
    /// Largest upload in bytes. Default: 64 MiB.
    pub max_upload: u64,
    /// Stop serving after this long without requests or sessions (inetd "wait" mode).
    /// Default: `None` (serve forever).
    pub idle_timeout: Option<Duration>,
}

impl TftpServer {
    /// A server with the defaults above and `handler_factory`.
    pub fn new(handler_factory: HandlerFactory) -> Self {
        TftpServer {
            address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port: 69,
            retries: 5,
            timeout: Duration::from_secs(2),
            handler_factory,
            server_stats_callback: None,
            stats_interval: Duration::from_secs(60),
            executor: Executor::Thread,
            max_sessions: 512,
            rate_limit: 100,
            limits: Limits::default(),
            upload_dir: None,
            max_upload: 64 * 1024 * 1024,
            idle_timeout: None,
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

/// A job the acceptor hands back to the child after `fork()`.
struct ChildJob {
    req: Request,
    peer: SocketAddr,
    local: SocketAddr,
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
            // fork() in a multi-threaded process can leave the child with locks held by
            // threads that do not exist there; refuse rather than deadlock a child later.
            let threads = std::fs::read_dir("/proc/self/task")
                .map(|d| d.count())
                .unwrap_or(1);
            if threads > 1 {
                return Err(io::Error::other(format!(
                    "Executor::Fork needs a single-threaded process ({threads} threads running)"
                )));
            }
        }
        match self.accept_loop()? {
            None => Ok(()),
            Some(job) => {
                // In a forked child: close the server socket, run the one session, exit.
                let BoundTftpServer { shared, sock, .. } = self;
                drop(sock);
                let ok = catch_unwind(AssertUnwindSafe(|| {
                    session::run(&shared, job.req, job.peer, job.local)
                        .error
                        .is_none()
                }))
                .unwrap_or(false);
                std::process::exit(if ok { 0 } else { 1 });
            }
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashSet<SocketAddr>> {
        // A poisoned set is still a valid set: sessions never panic while holding it.
        self.shared.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_error(&self, to: SocketAddr, code: ErrorCode, msg: &str) {
        if self.sock.send_to(&packet::error(code, msg), to).is_ok() {
            self.shared.stats.error_sent(code.code());
        }
    }

    fn accept_loop(&self) -> io::Result<Option<ChildJob>> {
        let stats = &self.shared.stats;
        let cfg = &self.shared.cfg;
        let active = self.shared.active.clone();
        // Forked sessions by pid, with their peer (Fork mode).
        let mut children: HashMap<nix::unistd::Pid, SocketAddr> = HashMap::new();
        let mut limiter = RateLimiter::new(cfg.rate_limit);
        let mut buf = vec![0u8; 65536];
        let mut next_stats = Instant::now() + cfg.stats_interval;
        let mut last_activity = Instant::now();
        while !self.shutdown.load(Ordering::SeqCst) {
            let now = Instant::now();
            if cfg.executor == Executor::Fork {
                reap(stats, &mut children);
            }
            if now >= next_stats {
                next_stats = now + cfg.stats_interval;
                if let Some(cb) = &cfg.server_stats_callback {
                    cb(stats);
                }
            }
            let running = active.load(Ordering::SeqCst) + children.len();
            if running > 0 {
                last_activity = now;
            }
            if cfg
                .idle_timeout
                .is_some_and(|idle| now.duration_since(last_activity) >= idle)
            {
                info!(
                    "idle for {:?}, exiting",
                    cfg.idle_timeout.unwrap_or_default()
                );
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
            last_activity = Instant::now();
            let req = match packet::parse(&buf[..n]) {
                Ok(Packet::Request(r)) => r,
                Ok(other) => {
                    // DATA/ACK/ERROR/OACK on the server port belong to no session: silence.
                    debug!("{peer} stray packet on the server port: {other:?}");
                    ServerStats::add(&stats.bad_packets, 1);
                    continue;
                }
                Err(e) => {
                    debug!("{peer} bad packet ({n} bytes): {e}");
                    ServerStats::add(&stats.bad_packets, 1);
                    // Too short to be anything: silence. Otherwise a (rate-limited) ERROR 4.
                    if e != ParseError::TooShort && limiter.allow(peer.ip(), Instant::now()) {
                        self.send_error(
                            peer,
                            ErrorCode::IllegalOperation,
                            "Illegal TFTP operation",
                        );
                    }
                    continue;
                }
            };
            if !limiter.allow(peer.ip(), Instant::now()) {
                debug!("{peer} rate limited");
                ServerStats::add(&stats.requests_rate_limited, 1);
                continue;
            }
            // A retransmitted request while its session runs is not a new transfer.
            let duplicate = match cfg.executor {
                Executor::Thread => self.peers().contains(&peer),
                Executor::Fork => children.values().any(|p| *p == peer),
            };
            if duplicate {
                debug!("{peer} duplicate request ignored: its session is running");
                continue;
            }
            if active.load(Ordering::SeqCst) + children.len() >= cfg.max_sessions {
                warn!("{peer} refused: {} sessions running", cfg.max_sessions);
                ServerStats::add(&stats.requests_over_capacity, 1);
                self.send_error(peer, ErrorCode::NotDefined, "Server busy, try again later");
                continue;
            }
            ServerStats::add(&stats.sessions_started, 1);
            match cfg.executor {
                Executor::Thread => self.spawn_thread(req, peer, local, &active),
                Executor::Fork => {
                    if let Some(job) = self.fork(req, peer, local, &mut children) {
                        return Ok(Some(job));
                    }
                }
            }
        }
        Ok(None)
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

    fn spawn_thread(
        &self,
        req: Request,
        peer: SocketAddr,
        local: SocketAddr,
        active: &Arc<AtomicUsize>,
    ) {
        struct Guard(Arc<AtomicUsize>, Arc<Shared>, SocketAddr);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.1
                    .peers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&self.2);
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        active.fetch_add(1, Ordering::SeqCst);
        self.peers().insert(peer);
        let guard = Guard(active.clone(), self.shared.clone(), peer);
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("tftp-session".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _guard = guard;
                let res =
                    catch_unwind(AssertUnwindSafe(|| session::run(&shared, req, peer, local)));
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

    #[allow(unsafe_code)]
    fn fork(
        &self,
        req: Request,
        peer: SocketAddr,
        local: SocketAddr,
        children: &mut HashMap<nix::unistd::Pid, SocketAddr>,
    ) -> Option<ChildJob> {
        use nix::unistd::{fork, ForkResult};
        // SAFETY: in Fork mode the acceptor is the only thread of the process (no stats
        // thread, no session threads), so the child inherits no lock held by another thread.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => Some(ChildJob { req, peer, local }),
            Ok(ForkResult::Parent { child }) => {
                debug!("{peer} session in child {child}");
                children.insert(child, peer);
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

/// Errors after which the server socket cannot be used again.
fn is_fatal(e: &io::Error) -> bool {
    use nix::libc::{EBADF, EFAULT, EINVAL, ENOTSOCK};
    matches!(e.raw_os_error(), Some(EBADF | ENOTSOCK | EINVAL | EFAULT))
}

/// Reaps finished children without blocking.
fn reap(stats: &ServerStats, children: &mut HashMap<nix::unistd::Pid, SocketAddr>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while !children.is_empty() {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                stats.session_result(code == 0);
                children.remove(&pid);
            }
            Ok(WaitStatus::Signaled(pid, ..)) => {
                stats.session_result(false);
                children.remove(&pid);
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
