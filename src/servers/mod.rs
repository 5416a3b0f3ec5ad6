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
mod pool;
mod prefork;
mod shared;
pub(crate) mod shutdown;

pub use admission::UNLIMITED_SESSIONS;
pub(crate) use descriptors::nofile_limit;
pub use descriptors::DESCRIPTORS_PER_SESSION;
pub use executor::{Executor, DEFAULT_STACK_SIZE};
pub(crate) use shared::{ConnGuard, Shared};
use shutdown::{stop_signals, Ending};

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
        })
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
    /// 421 at once): they are blocked in the calling thread (and so in every thread started
    /// after) and read from a signalfd by the accept loop. Call before any other thread
    /// starts.
    ///
    /// # Errors
    /// The signal mask or the signalfd cannot be set up.
    pub fn stop_on_signals(&mut self) -> Result<(), Error> {
        let rates = self.shared.rates.get().cloned();
        self.shared = Shared::new(Some(stop_signals()?))?;
        if let Some(r) = rates {
            let _ = self.shared.rates.set(r);
        }
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
        // Made before any fork, so every worker and child shares the same buckets.
        let _ = self.shared.rates();
        let r = match self.executor {
            Executor::Fork => fork::serve(self),
            Executor::PreFork { workers } => prefork::serve(self, workers),
            _ => self.serve_threads(),
        };
        log::info!("{}", table.summary());
        self.shared.stopped.store(true, Ordering::SeqCst);
        r
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
            let pool = pool::Pool::start(
                &self.listeners,
                &self.implicit_tls,
                &self.shared,
                &self.handler,
                self.limits(),
                self.stack_size,
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
