//! Servers: [`FtpServer`] binds or adopts listeners and serves them with an [`Executor`]
//! (pyftpdlib `FTPServer`, `ThreadedFTPServer`); [`ServerHandle`] stops it from another
//! thread (`close`, `close_all`).
//!
//! # Concurrency models
//!
//! | `--concurrency` | Library | What it does |
//! |---|---|---|
//! | `pool` (default; `async` is accepted as a synonym) | `FtpServer` / `Executor::Pool` | Reusable worker threads that accept for themselves: idle workers wait together on one epoll instance holding the listeners in one-shot mode, so each new connection wakes exactly one of them, which accepts it, re-arms the listener for the next and serves the session on the spot (no accept thread in between). A spawner thread, asked through a crossbeam channel, keeps two workers spare; the pool grows with the sessions, and a worker idle for 60 s retires while two others stay. 256 KiB stacks (`FtpServer::stack_size`), so a thousand idle sessions cost little memory. The main thread only waits for the stop (`close`, signals). |
//! | `multi-thread` | `ThreadedFtpServer` / `Executor::Thread` | A fresh thread per connection. |
//! | `multi-proc` | `MultiprocessFtpServer` / `Executor::Fork` | A child process per connection. The child closes the listeners, serves the session and exits; the parent reaps children without blocking (every 200 ms). After login a child may become the Unix user for good (see below). |
//! | `pre-fork` (`--workers N`, default: number of CPUs) | `Executor::PreFork { workers }` | N worker processes accept on the shared listeners, each running the pool model, so every core serves. A worker that dies is replaced (and the sessions it held are released). |
//!
//! In every model `max_cons`, `max_cons_per_ip` and bans are one admission table per server
//! (see "Limits, bans and descriptors"), so they count every worker's and every child's
//! sessions together and exactly.
//!
//! Every model runs each session inside `catch_unwind`: a panic ends that session only (logged,
//! `421 Internal error; closing connection.` when the socket is still writable).
//!
//! ```sh
//! ftpdlib -w -d /srv/ftp --concurrency multi-proc
//! ftpdlib -w -d /srv/ftp --concurrency pre-fork --workers 4
//! ```
//!
//! `fork()` is only called while the process has a single thread: `serve_forever` under Fork or
//! PreFork returns a configuration error if other threads are running (start the server before
//! any thread, as the command line does). In those models `ServerHandle` cannot reach the server
//! from another thread (there is none); stop it with SIGTERM/SIGINT (graceful) or SIGUSR1
//! (close everything now).
//!
//! # inetd and xinetd ("nowait" and "wait")
//!
//! * `-I` / `--inetd` ("nowait"): stdin is the accepted connection. ftpdlib serves it and exits.
//!   stdout is redirected to stderr at once, so nothing ever reaches the client by accident;
//!   logs go to stderr. stdin may also be a Unix stream socket, as `socat TCP-LISTEN:2121,fork
//!   EXEC:"ftpdlib -I -d /srv/ftp"` (a socketpair) and UCSPI servers (tcpserver) hand over: the
//!   client's and the local address then come from their environment (`SOCAT_PEERADDR`,
//!   `SOCAT_SOCKADDR`…, `TCPREMOTEIP`, `TCPLOCALIP`…). Without them the client's address is
//!   unknown: passive mode still works (PASV says `0,0,0,0` unless `-n`; curl and Python's ftplib
//!   use the server's host instead; the first connection to the passive port is taken), and
//!   PORT/EPRT get 501 unless `--permit-foreign-addresses`, since no bounce check can be made.
//! * `-W` / `--inetd-wait` ("wait"): stdin is the listening socket. ftpdlib accepts connections
//!   (with any `--concurrency`) and, with `-t` / `--idle-timeout SECS`, exits cleanly (code 0)
//!   once no session has existed for that long. inetd then listens again on its behalf.
//!
//! ```text
//! # /etc/inetd.conf
//! ftp  stream  tcp  nowait  root  /usr/local/bin/ftpdlib  ftpdlib -I -d /srv/ftp --user nobody
//! ftp  stream  tcp  wait    root  /usr/local/bin/ftpdlib  ftpdlib -W -t 600 -d /srv/ftp --user nobody
//! ```
//!
//! xinetd services for both modes: `scripts/deploy/xinetd-ftpdlib`,
//! `scripts/deploy/xinetd-ftpdlib-wait`.
//! From a program: `servers::inetd::serve_nowait(handler)`, or
//! `FtpServer::from_listener(servers::inetd::stdin_listener()?, handler)` with
//! `server.idle_timeout = Some(..)` (see `demo/inetd_ftpd.rs`).
//!
//! # systemd socket activation
//!
//! When `LISTEN_PID` names the process and `LISTEN_FDS=N` is set, ftpdlib serves the N listening
//! sockets starting at fd 3 (`-i`/`-p` are then ignored) and removes the `LISTEN_*` variables.
//! When `NOTIFY_SOCKET` is set it sends `READY=1` once serving and `STOPPING=1` on shutdown (a
//! plain datagram; no libsystemd). See `scripts/deploy/ftpdlib.socket` and
//! `scripts/deploy/ftpdlib.service` (`Type=notify`, `KillMode=mixed`):
//!
//! ```sh
//! cp scripts/deploy/ftpdlib.{socket,service} /etc/systemd/system/
//! systemctl daemon-reload && systemctl enable --now ftpdlib.socket
//! ```
//!
//! From a program: `servers::inetd::listen_fds()` and `servers::inetd::notify("READY=1")`.
//!
//! # Real Unix users
//!
//! `--unix-users` (library: `UnixAuthorizer` + `handler.use_unix_filesystem()`) logs
//! system accounts in with their own passwords, starts them in their home on the real
//! filesystem (no jail, as pyftpdlib's `UnixFilesystem`), and acts as them, so the kernel
//! decides every access and uploaded files belong to the uploader. It needs root.
//! `--chroot-local-user` (`FtpHandler.chroot_local_user`, vsftpd's name) jails each account in
//! its home instead, with the same resolution beneath the root as any jail. It is off by
//! default, as in vsftpd and pyftpdlib: the session acts as the account, so it reaches only
//! what the account could reach by logging in to a shell. Turn it on when accounts exist
//! only for FTP, or when users must not see the rest of the system.
//!
//! * Passwords: the system's crypt(3) from libxcrypt (`crypt_rn`, linked as `-lcrypt`; building
//!   needs `libcrypt.so`, which Debian's `libcrypt-dev` ships and `libc6-dev` pulls in), against
//!   the shadow entry read with getspnam_r(3) (NSS-aware). yescrypt (`$y$`, Debian's default),
//!   sha512-crypt (`$6$`) and every scheme the system's libcrypt knows work; locked (`!`) and
//!   expired accounts are refused. PAM is not used: it would add a C dependency and a
//!   conversation callback for the same hashes `pam_unix` checks; sites that need other PAM
//!   modules can write an `Authorizer`.
//! * Options, as pyftpdlib: `global_perm` (default `elradfmwMT`), `allowed_users` /
//!   `rejected_users` (exclusive), `require_valid_shell` (default on; /etc/shells),
//!   `anonymous_user` (a system account serving `anonymous`, read-only unless overridden),
//!   `override_user(name, password, homedir, perm, msg_login, msg_quit)`, `messages`.
//! * Impersonation: in the Fork model (and inetd "nowait") the session process drops to the
//!   user for good after login — `initgroups`, `setgid`, `setuid`, then it checks that
//!   `setuid(0)` fails. The session cannot change identity again: a later login as another
//!   user in the same session is refused. In the Pool and Thread models only the session thread's filesystem identity
//!   changes (Linux `setfsuid`/`setfsgid` are per thread), and it is restored when the session
//!   logs out or ends (a guard, `authorizers::Impersonation`, dropped even by a panic), so no
//!   identity leaks into another session. Supplementary groups cannot be set per
//!   thread: in thread models access is decided by the user's uid and primary gid only. For
//!   full group semantics and privilege separation use `--concurrency multi-proc`.
//!
//! ```sh
//! sudo ftpdlib -p 21 -w --unix-users --concurrency multi-proc
//! ```
//!
//! # Binding port 21, then dropping root
//!
//! `--user NAME` switches the whole process to `NAME` (groups, gid, uid; verified) after the
//! listening socket is bound and before anything is served. Use it for anonymous or virtual
//! (`-u`/`-P`) users; the served directory must be accessible to `NAME`.
//!
//! ```sh
//! sudo ftpdlib -p 21 -d /srv/ftp --user nobody
//! ```
//!
//! # Limits, bans and descriptors
//!
//! * **One admission table per server.** `max_cons`, `max_cons_per_ip` and bans live in shared
//!   memory made before any fork and used by every worker thread, worker process and child:
//!   checking a limit and counting the session are one step under one lock, so exactly
//!   `max_cons` sessions are admitted in every model. A session's place is freed the moment it
//!   ends — before the `221` of its QUIT, so a client that reconnects at once gets in — or,
//!   if the process serving it dies, when the parent reaps it. The table holds four address
//!   records per possible session (`max_cons`; 65,536 sessions when `max_cons` is 0); when it
//!   is full the oldest record of an address with no session is forgotten (a ban may end
//!   early), and an address that would need a new record while every record has a session is
//!   refused like a full server.
//! * **Bans** (fail2ban's idea, inside the server): `--ban-failures` failed logins from one
//!   address within `--ban-find-time`, in any of its sessions, ban it for `--ban-time` (library:
//!   `FtpHandler::ban_failures`, `ban_find_time`, `ban_time`). A successful login resets
//!   nothing, so an account that works (or anonymous) cannot clear an attacker's count; another
//!   address is never affected. The ban is logged once when it starts (`banned for … s`);
//!   inetd "nowait" sessions (a fresh process each) have no table and no bans.
//! * **Refusals say why**, then close: `421 Too many connections. Service temporarily
//!   unavailable.`, `421 Too many connections from the same IP address.`, `421 Too many
//!   failed logins from your address; try again later.`, `421 Server shutting down.`, `421 Too
//!   many open files, try again later.`. The exit log line counts them by reason
//!   (`421 refusals: max_cons=… per_ip=… banned=… shutting_down=… no_descriptors=…; bans: …`).
//! * **Out of descriptors**, a spare descriptor (open on `/dev/null`) is given up to accept the
//!   waiting connection, tell it `421 Too many open files…` and close it, then taken back (the
//!   technique nginx and libev use): no client waits in a backlog nobody can accept from, and
//!   the accept loop backs off instead of spinning. One log line a second at most says how
//!   many were refused. A session that cannot open its data connection or its file gets `425
//!   Can't open passive connection: Too many open files.` / `451 Local error: Too many open
//!   files; try again later.` and goes on. At start-up the soft `RLIMIT_NOFILE` is raised to the
//!   hard limit, and a warning names the numbers when `--max-cons` sessions (5 descriptors
//!   each, plus 32) cannot fit (not under `multi-proc`, where each child has its own table).
//!
//! # Shutdown
//!
//! SIGTERM, SIGINT or `ServerHandle::shutdown(grace)`. What a client sees:
//!
//! | stage | a new client | an idle session | a session in a transfer |
//! |---|---|---|---|
//! | drain (up to `--shutdown-grace`, default 10 s) | `421 Server shutting down.` at once, then closed | `421 Server shutting down.`, closed | the transfer goes on and gets its reply (`226`…), then `421` |
//! | grace period over | the same | — | `421`, closed; never a `226`; an upload fires `on_incomplete_file_received` |
//! | process exited | ftpdlib's own socket: connection refused; a systemd/inetd socket: queued for the next instance | — | — |
//!
//! During the drain the process that owns the stop (the only process under Pool and Thread, the
//! parent under Fork and PreFork) keeps accepting only to answer `421`; listeners that belong
//! to systemd or inetd are never closed. The command line then exits with code 0. SIGUSR1 skips
//! the grace period (421 at once); `close_all()` ends every session at once without a reply, as
//! pyftpdlib's does. In the Fork model the parent forwards SIGTERM to every session process
//! (each drains itself), then SIGUSR1 after the grace period, then SIGKILL as a last resort; in
//! PreFork it forwards the signal to every worker.
//!
//! # Operating it
//!
//! **Logs.** At the default level each session logs its connect and disconnect (with how it
//! ended, commands, bytes and seconds), logins, every state-changing command and every failed
//! one with its virtual path and reply (`127.0.0.1:40112-[alice] DELE /old.txt 250`,
//! `… RETR /nope 550 'No such file or directory.'`), and each transfer (`STOR /up.bin 226
//! completed=1 bytes=1000 seconds=0.004`). `--log-file FILE` appends the log to a file instead
//! of stderr; `--xferlog FILE` writes one line per transfer in the wu-ftpd/vsftpd xferlog
//! format that log analysers read:
//!
//! ```text
//! Mon Jan  6 09:05:02 2025 1 127.0.0.1 1048576 /pub/file.iso b _ o r alice ftp 0 * c
//! ```
//!
//! **SIGHUP** reopens both files (logrotate without `copytruncate`: move the file, then `kill
//! -HUP`), and reloads the TLS certificate and key from `--certfile`/`--keyfile`: new
//! connections get the renewed certificate, running sessions keep theirs, and a bad file is
//! logged while the old certificate stays. Under pre-fork the supervisor passes SIGHUP on to
//! every worker. Library: `FtpServer::on_reload`, `TlsConfig::reload`, `FtpHandler::xferlog`.
//!
//! **Stats.** `Callbacks::on_session_end(&SessionStats)` gets each session once (peer, user,
//! duration, commands, bytes and files each way, failed transfers, TLS, how it ended);
//! `on_transfer_end(&TransferStats)` each transfer (user, path, bytes, duration, result);
//! `FtpServer::server_stats_callback` gets `ServerStats` every `stats_interval` (fbtftp's
//! `server_stats_callback`; the CLI logs it with `--stats-interval SECS`). The counters live in
//! shared memory made before any fork, so Fork, PreFork and the TFTP fork mode count every
//! child.
//!
//! **Metrics.** `--metrics 127.0.0.1:9121` (or `FtpServer::serve_metrics`) serves Prometheus
//! text at `GET /metrics` on its own port, from threads of its own (Pool, Thread) or a process
//! of its own (Fork, PreFork). Cargo feature `metrics` (default), over `tiny_http`.
//!
//! ```text
//! ftpdlib_sessions_active 3
//! ftpdlib_sessions_total 1042
//! ftpdlib_logins_total{result="failed"} 7
//! ftpdlib_sent_bytes_total 8.12e9
//! ftpdlib_transfers_total{direction="upload",result="aborted"} 2
//! ftpdlib_refused_connections_total{reason="max_cons"} 0
//! ftpdlib_pool_workers{state="busy"} 3
//! ftpdlib_login_duration_seconds_bucket{le="0.005"} 1030
//! ```
//!
//! Also: session ends by reason, commands, bans, processes, and the histograms of login and
//! transfer durations; `promtool check metrics` passes (tested). What the switch costs:
//! `scripts/compare.sh --servers "ftpdlib-pool ftpdlib-pool-metrics"` measures both in one run.

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
        metrics.stop(&self.shared);
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
                let keeper = metrics::Keeper::start(listener, &self.shared, close)?;
                *self
                    .shared
                    .metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(keeper);
                Ok(MetricsRunning::Process)
            }
            _ => Ok(MetricsRunning::Thread(metrics::start(
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
    /// A process of its own, kept by `Shared::metrics` (restarted when it dies).
    Process,
}

#[cfg(feature = "metrics")]
impl MetricsRunning {
    /// Ends the endpoint (its process is killed and reaped).
    fn stop(self, shared: &Shared) {
        match self {
            MetricsRunning::Process => shared.stop_metrics(),
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
