//! Servers: [`FtpServer`] binds or adopts listeners and serves them with an [`Executor`]
//! (pyftpdlib `FTPServer`, `ThreadedFTPServer`); [`ServerHandle`] stops it from another
//! thread (`close`, `close_all`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

use crate::error::Error;
use crate::handlers::throttle::RateTable;
use crate::handlers::FtpHandler;

mod acceptor;
pub(crate) mod admission;
mod descriptors;
mod executor;
mod fork;
pub mod inetd;
#[cfg(feature = "metrics")]
pub mod metrics;
mod pool;
mod prefork;
mod shared;
pub(crate) mod shutdown;
mod stats;

pub use admission::UNLIMITED_SESSIONS;
pub(crate) use descriptors::nofile_limit;
pub use descriptors::DESCRIPTORS_PER_SESSION;
pub use executor::{Executor, DEFAULT_STACK_SIZE};
pub(crate) use shared::{ConnGuard, Shared};
use shutdown::{stop_signals, Ending};
pub use stats::{Refusals, ServerStats, ServerStatsCallback};

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Stops accepting new connections; running sessions go on (pyftpdlib `close`).
    pub fn close(&self) {
        self.shared.wake();
    }

    /// Stops accepting and ends every session (pyftpdlib `close_all`).
    pub fn close_all(&self) {
        // Sessions first: they end without a reply (as pyftpdlib's close_all), before the
        // accept loop's own hard close could send them a 421.
        self.shared.close_sessions();
        self.shared.hard.store(true, Ordering::SeqCst);
        self.shared.wake();
    }

    /// Graceful stop: new connections are refused at once, idle sessions get `421` and
    /// end, sessions running a command (a transfer) may finish it during `grace`, then the
    /// rest are closed with `421`. Waits (at most `grace` plus a few seconds) until
    /// `serve_forever` has returned, and returns whether it has.
    pub fn shutdown(&self, grace: Duration) -> bool {
        if let Ok(mut g) = self.shared.grace.lock() {
            *g = Some(grace);
        }
        self.shared.wake();
        let deadline = std::time::Instant::now() + grace + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.shared.stopped.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Sessions running now, in every process of the server.
    pub fn connection_count(&self) -> usize {
        self.shared.connection_count()
    }

    /// The shared rate buckets of the server's sessions (made with the server, before any
    /// fork): the per-user and server-wide limits, and who holds a user slot now.
    pub fn rate_table(&self) -> &Arc<RateTable> {
        self.shared.rates()
    }

    /// The server's statistics now, counted across every process it runs (what the stats
    /// callback and the metrics endpoint see).
    pub fn stats(&self) -> ServerStats {
        self.shared.server_stats()
    }
}

/// An FTP server: listeners, a handler configuration and a concurrency model.
///
/// ```no_run
/// use std::sync::Arc;
/// use ftpdlib::authorizers::DummyAuthorizer;
/// use ftpdlib::handlers::FtpHandler;
/// use ftpdlib::servers::FtpServer;
///
/// let mut auth = DummyAuthorizer::new();
/// auth.add_anonymous("/srv/ftp", "elr").unwrap();
/// let handler = FtpHandler::new(Arc::new(auth));
/// let server = FtpServer::new("127.0.0.1:2121", handler).unwrap();
/// server.serve_forever().unwrap();
/// ```
pub struct FtpServer {
    listeners: Vec<TcpListener>,
    /// Per listener: implicit FTPS (TLS from the first byte).
    implicit_tls: Vec<bool>,
    handler: Arc<FtpHandler>,
    executor: Executor,
    shared: Arc<Shared>,
    /// Most sessions at once, counted across every worker and child; beyond it clients
    /// get 421. 0 is unlimited (up to [`UNLIMITED_SESSIONS`]). Default: 512.
    pub max_cons: usize,
    /// Most sessions from one address, counted across every worker and child; 0 is
    /// unlimited. Default: 0.
    pub max_cons_per_ip: usize,
    /// Stack size of session threads. Default: [`DEFAULT_STACK_SIZE`].
    pub stack_size: usize,
    /// Exit `serve_forever` after this long with no session (inetd "wait" mode,
    /// pyftpdlib-inetd `--idle-timeout`); `None` serves forever. Default: none.
    pub idle_timeout: Option<Duration>,
    /// How long running transfers may go on after SIGINT/SIGTERM before the remaining
    /// sessions are closed with 421. Default: 10 s.
    pub shutdown_grace: Duration,
    /// Called with the server's statistics every [`stats_interval`](Self::stats_interval)
    /// (fbtftp's `server_stats_callback`), from the thread that runs `serve_forever` (in
    /// the Fork and PreFork models, the parent: the counts include every child's and
    /// worker's). Default: none.
    pub server_stats_callback: Option<ServerStatsCallback>,
    /// The period of `server_stats_callback` (at least 100 ms). Default: 60 s.
    pub stats_interval: Duration,
    /// What SIGHUP does besides reloading the TLS certificate (see [`on_reload`]).
    ///
    /// [`on_reload`]: Self::on_reload
    reload_hooks: Vec<shared::ReloadFn>,
    /// The metrics endpoint's listener, if any.
    #[cfg(feature = "metrics")]
    metrics: Option<TcpListener>,
}

impl FtpServer {
    /// Binds `addr` and builds a server. An unspecified IPv6 address (`[::]:port`) accepts
    /// IPv4 clients too (dual stack) where the system allows.
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound, or the handler is invalid.
    pub fn new(addr: impl ToSocketAddrs, handler: FtpHandler) -> Result<FtpServer, Error> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let first = *addrs
            .first()
            .ok_or_else(|| Error::Config("address resolves to nothing".into()))?;
        Self::from_listener(bind(first)?, handler)
    }

    /// Serves a listener the caller already has (inetd "wait", systemd, tests).
    ///
    /// # Errors
    /// The handler is invalid.
    pub fn from_listener(listener: TcpListener, handler: FtpHandler) -> Result<FtpServer, Error> {
        Self::from_listeners(vec![listener], handler)
    }

    /// Serves several listeners at once (e.g. IPv4 and IPv6 sockets).
    ///
    /// # Errors
    /// No listener, or the handler is invalid.
    pub fn from_listeners(
        listeners: Vec<TcpListener>,
        handler: FtpHandler,
    ) -> Result<FtpServer, Error> {
        if listeners.is_empty() {
            return Err(Error::Config("no listener".into()));
        }
        handler.validate()?;
        Ok(FtpServer {
            implicit_tls: vec![false; listeners.len()],
            listeners,
            handler: Arc::new(handler),
            executor: Executor::Pool,
            shared: Shared::new(None)?,
            max_cons: 512,
            max_cons_per_ip: 0,
            stack_size: DEFAULT_STACK_SIZE,
            idle_timeout: None,
            shutdown_grace: Duration::from_secs(10),
            server_stats_callback: None,
            stats_interval: Duration::from_secs(60),
            reload_hooks: Vec::new(),
            #[cfg(feature = "metrics")]
            metrics: None,
        })
    }

    /// Also does `hook` on SIGHUP (with [`stop_on_signals`](Self::stop_on_signals)), in
    /// every process of the server: reopen a log file, re-read a configuration. The TLS
    /// certificate and key are reloaded from their files in any case
    /// ([`TlsConfig::reload`](crate::handlers::TlsConfig::reload)). Hooks run in order,
    /// before the certificate, from the thread that runs the accept loop.
    pub fn on_reload(&mut self, hook: impl Fn() + Send + Sync + 'static) {
        self.reload_hooks.push(Arc::new(hook));
    }

    /// Serves Prometheus metrics at `GET /metrics` on `listener` (a port of its own, never
    /// the FTP port) while the server runs: see [`metrics`](self::metrics).
    #[cfg(feature = "metrics")]
    pub fn serve_metrics(mut self, listener: TcpListener) -> FtpServer {
        self.metrics = Some(listener);
        self
    }

    /// Where the metrics endpoint listens, if it does.
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Uses `table` for the shared rate buckets of this server's sessions (per user and
    /// server-wide): a table with more user slots than [`DEFAULT_USER_SLOTS`], or one shared
    /// with another server. Without it the server makes one with the default capacity.
    ///
    /// # Errors
    /// The server already has its table (a session ran or `rate_table` was read).
    ///
    /// [`DEFAULT_USER_SLOTS`]: crate::handlers::throttle::DEFAULT_USER_SLOTS
    pub fn with_rate_table(self, table: Arc<RateTable>) -> Result<FtpServer, Error> {
        self.shared
            .rates
            .set(table)
            .map_err(|_| Error::Config("the rate table is already in use".into()))?;
        Ok(self)
    }

    /// Chooses the concurrency model.
    pub fn with_executor(mut self, executor: Executor) -> FtpServer {
        self.executor = executor;
        self
    }

    /// Makes every listener added so far implicit FTPS (`true`: TLS from the first byte,
    /// conventionally port 990) or explicit (`false`, the default: plaintext until
    /// `AUTH TLS`). The handshake runs in the session's thread, never the accept thread.
    ///
    /// # Errors
    /// `true` without [`FtpHandler::tls`](crate::handlers::FtpHandler::tls).
    pub fn implicit_tls(mut self, on: bool) -> Result<FtpServer, Error> {
        if on && self.handler.tls.is_none() {
            return Err(Error::Config(
                "implicit TLS needs a TLS configuration".into(),
            ));
        }
        self.implicit_tls.iter_mut().for_each(|i| *i = on);
        Ok(self)
    }

    /// Adds a listener, implicit FTPS or not (e.g. port 21 explicit and port 990 implicit
    /// on one server).
    ///
    /// # Errors
    /// `implicit_tls` without [`FtpHandler::tls`](crate::handlers::FtpHandler::tls).
    pub fn add_listener(&mut self, listener: TcpListener, implicit_tls: bool) -> Result<(), Error> {
        if implicit_tls && self.handler.tls.is_none() {
            return Err(Error::Config(
                "implicit TLS needs a TLS configuration".into(),
            ));
        }
        self.listeners.push(listener);
        self.implicit_tls.push(implicit_tls);
        Ok(())
    }

    /// The concurrency model.
    pub fn executor(&self) -> Executor {
        self.executor
    }

    /// Stops the server cleanly on SIGINT and SIGTERM (graceful: running transfers get
    /// [`shutdown_grace`](Self::shutdown_grace)) and on SIGUSR1 (every session closed with
    /// 421 at once), and reloads on SIGHUP (the TLS certificate for new connections, and
    /// the [`on_reload`](Self::on_reload) hooks; a pre-fork supervisor passes SIGHUP on to
    /// its workers): they are blocked in the calling thread (and so in every thread started
    /// after) and read from a signalfd by the accept loop. Call before any other thread
    /// starts.
    ///
    /// # Errors
    /// The signal mask or the signalfd cannot be set up.
    pub fn stop_on_signals(&mut self) -> Result<(), Error> {
        let old = self.shared.clone();
        self.shared = Shared::new(Some(stop_signals()?))?;
        self.shared.adopt(&old);
        Ok(())
    }

    /// The addresses the server listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The handler configuration.
    pub fn handler(&self) -> &FtpHandler {
        &self.handler
    }

    /// A handle that can stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting (see [`ServerHandle::close`]).
    pub fn close(&self) {
        self.handle().close()
    }

    /// Stops accepting and ends every session (see [`ServerHandle::close_all`]).
    pub fn close_all(&self) {
        self.handle().close_all()
    }

    /// Accepts and serves connections until [`close`](Self::close) or a stop signal.
    ///
    /// First raises the process's soft descriptor limit to its hard limit (warning when
    /// `max_cons` sessions cannot fit) and makes the admission table every worker and
    /// child will share. On the way out it logs the 421 refusals by reason
    /// (`421 refusals: max_cons=… per_ip=… banned=… shutting_down=… no_descriptors=…`).
    ///
    /// # Errors
    /// The accept loop failed (poll(2) itself failed).
    pub fn serve_forever(&self) -> Result<(), Error> {
        self.log_banner();
        descriptors::prepare(self.max_cons, self.executor);
        let table = self.shared.admission(self.max_cons).clone();
        self.prepare_shared();
        #[cfg(feature = "metrics")]
        let metrics = self.start_metrics()?;
        let r = match self.executor {
            Executor::Fork => fork::serve(self),
            Executor::PreFork { workers } => prefork::serve(self, workers),
            _ => self.serve_threads(),
        };
        #[cfg(feature = "metrics")]
        metrics.stop();
        log::info!("{}", table.summary());
        self.shared.stopped.store(true, Ordering::SeqCst);
        r
    }

    /// Makes what every worker and child shares, before any fork: the rate buckets, the
    /// counters, the gauges; and this process's stats reporter and SIGHUP action.
    fn prepare_shared(&self) {
        let sh = &self.shared;
        let _ = sh.rates();
        let _ = sh.stats();
        let _ = sh.started.set(std::time::SystemTime::now());
        let workers = match self.executor {
            Executor::PreFork { workers } => workers.max(1),
            _ => 0,
        };
        let gauges = sh
            .gauges
            .get_or_init(|| Arc::new(stats::Gauges::new(workers)));
        gauges.set_processes(1);
        if let Some(cb) = &self.server_stats_callback {
            let _ = sh
                .reporter
                .set(stats::Reporter::new(cb.clone(), self.stats_interval));
        }
        let handler = self.handler.clone();
        let hooks = self.reload_hooks.clone();
        let _ = sh.reload.set(Arc::new(move || {
            for hook in &hooks {
                hook();
            }
            if let Some(tls) = &handler.tls {
                match tls.reload() {
                    Ok(true) => log::info!("SIGHUP: TLS certificate reloaded for new connections"),
                    Ok(false) => {}
                    Err(e) => log::error!("SIGHUP: {e}; keeping the current certificate"),
                }
            }
        }));
    }

    /// Starts the metrics endpoint: threads of this process (Pool, Thread), or a process of
    /// its own forked now, while this one runs a single thread (Fork, PreFork).
    #[cfg(feature = "metrics")]
    fn start_metrics(&self) -> Result<MetricsRunning, Error> {
        let Some(l) = &self.metrics else {
            return Ok(MetricsRunning::None);
        };
        let listener = l.try_clone()?;
        if let Ok(a) = listener.local_addr() {
            log::info!(">>> metrics on http://{a}/metrics <<<");
        }
        match self.executor {
            Executor::Fork | Executor::PreFork { .. } => {
                let close = fork::parent_fds(self, true);
                let pid = metrics::fork_process(listener, &self.shared, &close)?;
                Ok(MetricsRunning::Process(pid))
            }
            _ => Ok(MetricsRunning::Thread(metrics::Endpoint::start(
                listener,
                self.shared.clone(),
            )?)),
        }
    }

    /// The accept-loop limits of this server.
    fn limits(&self) -> acceptor::AcceptLimits {
        acceptor::AcceptLimits {
            max_cons: self.max_cons,
            max_cons_per_ip: self.max_cons_per_ip,
            idle_timeout: self.idle_timeout,
        }
    }

    /// Pool and Thread models: sessions are threads of this process.
    fn serve_threads(&self) -> Result<(), Error> {
        let (stop, workers) = if self.executor == Executor::Pool {
            let gauge = self.shared.gauges.get().and_then(|g| g.slot(0));
            let pool = pool::Pool::start(
                &self.listeners,
                &self.implicit_tls,
                &self.shared,
                &self.handler,
                self.limits(),
                (self.stack_size, gauge),
            )?;
            let stop = acceptor::run(None, &self.shared, &self.limits());
            pool.close();
            (stop?, Some(pool.workers()))
        } else {
            let runner = executor::Runner::new(self.stack_size);
            let accepting = acceptor::Accepting {
                listeners: &self.listeners,
                implicit_tls: &self.implicit_tls,
                handler: &self.handler,
                runner: &runner,
            };
            (
                acceptor::run(Some(accepting), &self.shared, &self.limits())?,
                None,
            )
        };
        match self.ending(&stop) {
            Ending::Leave => {}
            Ending::Graceful(grace) => {
                self.shared.stop_admitting();
                self.shared.graceful(grace, &self.listeners);
            }
            Ending::Hard => {
                self.shared.stop_admitting();
                self.shared.hard_close();
                self.shared
                    .wait_sessions(&self.listeners, Duration::from_secs(5));
            }
        }
        let sessions = self.handle().connection_count();
        match workers {
            Some(w) => log::info!(
                ">>> shutting down FTP server ({sessions} sessions, {w} pool workers) <<<"
            ),
            None => log::info!(">>> shutting down FTP server ({sessions} sessions) <<<"),
        }
        Ok(())
    }

    fn log_banner(&self) {
        for a in self.local_addrs() {
            log::info!(
                ">>> starting FTP server on {a}, pid={} <<<",
                std::process::id()
            );
        }
        let h = &self.handler;
        log::info!("concurrency model: {}", self.executor.name());
        log::info!(
            "masquerade (NAT) address: {}",
            h.masquerade_address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "None".into())
        );
        log::info!(
            "passive ports: {}",
            h.passive_ports
                .as_ref()
                .map(|r| format!("{}->{}", r.start(), r.end()))
                .unwrap_or_else(|| "None".into())
        );
        log::info!("use sendfile(2): {}", h.use_sendfile);
        if let Some(t) = &h.tls {
            log::info!(
                "FTPS: implicit listeners={}, tls_control_required={}, tls_data_required={}, \
                 require_session_reuse={}",
                self.implicit_tls.iter().filter(|i| **i).count(),
                t.tls_control_required,
                t.tls_data_required,
                t.require_session_reuse
            );
        }
        log::info!(
            "max connections: {} (per IP: {})",
            self.max_cons,
            self.max_cons_per_ip
        );
        if let Some(pp) = &h.proxy_protocol {
            log::info!("PROXY protocol: on, trusted proxies: {}", pp.describe());
        }
    }
}

/// The metrics endpoint while the server runs.
#[cfg(feature = "metrics")]
enum MetricsRunning {
    None,
    Thread(metrics::Endpoint),
    Process(nix::unistd::Pid),
}

#[cfg(feature = "metrics")]
impl MetricsRunning {
    /// Ends the endpoint (its process is killed and reaped).
    fn stop(self) {
        match self {
            MetricsRunning::Process(pid) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            MetricsRunning::Thread(endpoint) => drop(endpoint),
            MetricsRunning::None => {}
        }
    }
}

/// pyftpdlib's `MultiprocessFTPServer`: an [`FtpServer`] with a child process per
/// connection ([`Executor::Fork`]).
#[derive(Debug)]
pub struct MultiprocessFtpServer;

impl MultiprocessFtpServer {
    /// Binds `addr` and builds a process-per-connection server.
    ///
    /// # Errors
    /// As [`FtpServer::new`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new(addr: impl ToSocketAddrs, handler: FtpHandler) -> Result<FtpServer, Error> {
        Ok(FtpServer::new(addr, handler)?.with_executor(Executor::Fork))
    }
}

/// pyftpdlib's `ThreadedFTPServer`: an [`FtpServer`] with a thread per connection.
#[derive(Debug)]
pub struct ThreadedFtpServer;

impl ThreadedFtpServer {
    /// Binds `addr` and builds a thread-per-connection server.
    ///
    /// # Errors
    /// As [`FtpServer::new`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new(addr: impl ToSocketAddrs, handler: FtpHandler) -> Result<FtpServer, Error> {
        Ok(FtpServer::new(addr, handler)?.with_executor(Executor::Thread))
    }
}

/// Binds a listening socket with the largest backlog the system allows (a burst of a
/// thousand connecting clients must not overflow it). `[::]` is bound dual-stack
/// (IPV6_V6ONLY off) so IPv4 clients are served too; if IPv6 is unavailable, `0.0.0.0` is
/// used instead.
///
/// # Errors
/// The socket cannot be created or bound (e.g. the port is busy).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    match listen_on(addr) {
        Err(e)
            if e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT)
                && addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) =>
        {
            log::warn!("IPv6 unavailable; listening on 0.0.0.0");
            Ok(listen_on(SocketAddr::from(([0, 0, 0, 0], addr.port())))?)
        }
        r => Ok(r?),
    }
}

fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match addr {
        SocketAddr::V4(a) => socket::bind(raw, &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => {
            if a.ip().is_unspecified() {
                socket::setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
            }
            socket::bind(raw, &SockaddrIn6::from(a))?
        }
    }
    socket::listen(&fd, Backlog::MAXCONN)?;
    Ok(TcpListener::from(fd))
}
