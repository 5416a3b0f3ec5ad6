//! Shared test harness: a server on port 0 in a fresh temp dir, shut down on drop; the real
//! `suppaftp` client; a raw client for malformed input and exact replies.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::FtpHandler;
use ftpdlib::servers::{Executor, FtpServer, ServerHandle};
pub use suppaftp::types::FileType;
pub use suppaftp::{FtpError, FtpStream, Mode, Status};

pub const USER: &str = "user";
pub const PASS: &str = "12345";
/// How long any test client waits for a reply before failing (never a hang).
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until `f` holds, checking every 10 ms, for at most [`IO_TIMEOUT`] (a liveness
/// bound, not a speed check). True once it holds.
pub fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    while !f() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// [`wait_until`], failing the test with `what` when `f` never holds.
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    assert!(wait_until(f), "timed out waiting for {what}");
}

/// Runs a test body once per in-process concurrency model:
/// `models!(name1, name2)` expects `fn name1(ex: Executor)` in scope.
#[macro_export]
macro_rules! models {
    ($($name:ident),* $(,)?) => {
        mod pool {
            $( #[test] fn $name() { super::$name(ftpdlib::servers::Executor::Pool) } )*
        }
        mod thread {
            $( #[test] fn $name() { super::$name(ftpdlib::servers::Executor::Thread) } )*
        }
    };
    // `models!(a, b; bin: c, d)`: a..d under the in-process models; c and d (whose
    // configuration is expressible as CLI flags: the default users, no closures) also under
    // Fork and PreFork, through the built binary (cargo feature `cli`; without it the
    // in-process models alone).
    (bin: $($bname:ident),* $(,)?) => {
        $crate::models!(; bin: $($bname),*);
    };
    ($($name:ident),* ; bin: $($bname:ident),* $(,)?) => {
        $crate::models!($($name,)* $($bname),*);
        #[cfg(feature = "cli")]
        mod fork {
            $( #[test] fn $bname() { super::$bname(ftpdlib::servers::Executor::Fork) } )*
        }
        #[cfg(feature = "cli")]
        mod prefork {
            $( #[test] fn $bname() {
                super::$bname(ftpdlib::servers::Executor::PreFork { workers: 2 })
            } )*
        }
    };
}

type AuthFn = Box<dyn FnOnce(&mut DummyAuthorizer, &Path)>;
type HandlerFn = Box<dyn FnOnce(&mut FtpHandler)>;
type ServerFn = Box<dyn FnOnce(FtpServer) -> FtpServer>;

/// Builds a test server.
pub struct Builder {
    executor: Executor,
    bind: String,
    auth: Option<AuthFn>,
    handler: Option<HandlerFn>,
    max_cons: usize,
    max_cons_per_ip: usize,
    implicit_tls: bool,
    /// Command-line flags for the binary models, set with the handler closure that means
    /// the same in-process (see [`Builder::config`]).
    flags: Vec<String>,
    /// Serve the metrics endpoint on a port of its own (`--metrics 127.0.0.1:0`).
    metrics: bool,
    /// Changes the in-process server before it starts.
    server: Option<ServerFn>,
}

impl Builder {
    /// One configuration two ways: `flags` for the models run through the binary, `f` on
    /// the handler for the in-process ones (they must mean the same).
    pub fn config(mut self, flags: &[&str], f: impl FnOnce(&mut FtpHandler) + 'static) -> Self {
        self.flags = flags.iter().map(|s| s.to_string()).collect();
        self.handler = Some(Box::new(f));
        self
    }
    /// Serves implicit FTPS (the handler needs `tls`).
    pub fn implicit_tls(mut self, on: bool) -> Self {
        self.implicit_tls = on;
        self
    }
    pub fn executor(mut self, ex: Executor) -> Self {
        self.executor = ex;
        self
    }
    pub fn bind(mut self, addr: &str) -> Self {
        self.bind = addr.to_string();
        self
    }
    /// Replaces the default users (`user`/`12345` with all perms, anonymous read-only).
    pub fn auth(mut self, f: impl FnOnce(&mut DummyAuthorizer, &Path) + 'static) -> Self {
        self.auth = Some(Box::new(f));
        self
    }
    pub fn handler(mut self, f: impl FnOnce(&mut FtpHandler) + 'static) -> Self {
        self.handler = Some(Box::new(f));
        self
    }
    /// Serves the Prometheus endpoint too ([`Server::metrics`] is its address).
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }
    /// Changes the in-process server (stats callback, reload hooks) before it starts.
    pub fn server(mut self, f: impl FnOnce(FtpServer) -> FtpServer + 'static) -> Self {
        self.server = Some(Box::new(f));
        self
    }
    pub fn max_cons(mut self, n: usize, per_ip: usize) -> Self {
        self.max_cons = n;
        self.max_cons_per_ip = per_ip;
        self
    }

    pub fn start(self) -> Server {
        if is_bin_model(self.executor) {
            return self.start_bin();
        }
        let _ = env_logger_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonicalize");
        let mut auth = DummyAuthorizer::new();
        match self.auth {
            Some(f) => f(&mut auth, &root),
            None => {
                auth.add_user(USER, PASS, &root, "elradfmwMT")
                    .expect("add_user");
                auth.add_anonymous(&root, "elr").expect("add_anonymous");
            }
        }
        let mut h = FtpHandler::new(Arc::new(auth));
        h.auth_failed_timeout = Duration::ZERO;
        h.timeout = Some(Duration::from_secs(60));
        h.data_timeout = Some(Duration::from_secs(60));
        h.passive_accept_timeout = Duration::from_secs(10);
        if let Some(f) = self.handler {
            f(&mut h);
        }
        let mut server = FtpServer::new(self.bind.as_str(), h)
            .expect("bind")
            .with_executor(self.executor);
        server.max_cons = self.max_cons;
        server.max_cons_per_ip = self.max_cons_per_ip;
        if self.implicit_tls {
            server = server.implicit_tls(true).expect("implicit TLS");
        }
        #[cfg(feature = "metrics")]
        if self.metrics {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind metrics");
            server = server.serve_metrics(l);
        }
        if let Some(f) = self.server {
            server = f(server);
        }
        #[cfg(feature = "metrics")]
        let metrics = server.metrics_addr();
        #[cfg(not(feature = "metrics"))]
        let metrics = None;
        let addr = server.local_addrs()[0];
        let handle = server.handle();
        let thread = std::thread::spawn(move || {
            server.serve_forever().expect("serve_forever");
        });
        Server {
            addr,
            root,
            dir,
            handle,
            thread: Some(thread),
            bin: None,
            metrics,
        }
    }

    /// Fork and PreFork: the binary with the default users (`user`/`12345`, all
    /// permissions; the CLI has no anonymous user then) serving a fresh temp dir.
    fn start_bin(self) -> Server {
        assert!(
            self.auth.is_none()
                && self.server.is_none()
                && (self.handler.is_none() || !self.flags.is_empty())
                && self.bind == "127.0.0.1:0",
            "this configuration cannot be expressed as command-line flags"
        );
        let mut args = vec![
            "--max-cons".to_string(),
            self.max_cons.to_string(),
            "--max-cons-per-ip".to_string(),
            self.max_cons_per_ip.to_string(),
        ];
        args.extend(model_args(self.executor));
        args.extend(self.flags.iter().cloned());
        if self.metrics {
            args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let bin = BinServer::start(&refs);
        // A handle for the harness's type only: the server is another process.
        let placeholder = FtpServer::from_listener(
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind"),
            FtpHandler::new(Arc::new(DummyAuthorizer::new())),
        )
        .expect("placeholder")
        .handle();
        let metrics = self.metrics.then(|| bin.metrics_addr());
        Server {
            addr: bin.addr,
            root: bin.root.clone(),
            dir: tempfile::tempdir().expect("tempdir"),
            handle: placeholder,
            thread: None,
            bin: Some(bin),
            metrics,
        }
    }
}

/// True for the models tested through the built binary (never by forking the test process).
pub fn is_bin_model(ex: Executor) -> bool {
    matches!(ex, Executor::Fork | Executor::PreFork { .. })
}

/// The `--concurrency` flags of a model.
pub fn model_args(ex: Executor) -> Vec<String> {
    match ex {
        Executor::Fork => vec!["--concurrency".into(), "multi-proc".into()],
        Executor::PreFork { workers } => vec![
            "--concurrency".into(),
            "pre-fork".into(),
            "--workers".into(),
            workers.to_string(),
        ],
        Executor::Thread => vec!["--concurrency".into(), "multi-thread".into()],
        _ => vec!["--concurrency".into(), "pool".into()],
    }
}

/// The built `ftpdlib` binary. Cargo builds it only with the `cli` feature, so a test target
/// that starts it outside `models!` names `cli` in its `required-features` (Cargo.toml).
#[cfg(feature = "cli")]
pub fn ftpdlib_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ftpdlib")
}

/// Without `cli` there is no binary to start (see above).
#[cfg(not(feature = "cli"))]
pub fn ftpdlib_bin() -> &'static str {
    panic!("the ftpdlib binary needs the `cli` feature: list it in the test's required-features")
}

/// The built `ftpdlib` binary on port 0 of 127.0.0.1, serving a fresh temp dir as
/// `user`/`12345` with write access; the port is learnt from the
/// `>>> starting FTP server on ADDR, pid=N <<<` log line. Dropping it ends the server
/// (SIGUSR1: close every session now; SIGKILL if it lingers).
pub struct BinServer {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub dir: tempfile::TempDir,
    pub child: std::process::Child,
    log: Arc<std::sync::Mutex<String>>,
}

impl BinServer {
    /// Starts the binary with `-i 127.0.0.1 -p 0 -d DIR -u user -P 12345 -w` and `extra`.
    pub fn start(extra: &[&str]) -> BinServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonicalize");
        let mut cmd = std::process::Command::new(ftpdlib_bin());
        cmd.args(["-i", "127.0.0.1", "-p", "0", "-d"])
            .arg(&root)
            .args(["-u", USER, "-P", PASS, "-w"])
            .args(extra);
        Self::spawn(cmd, dir, root)
    }

    /// Starts a prepared command whose stderr carries the server's log.
    pub fn spawn(
        mut cmd: std::process::Command,
        dir: tempfile::TempDir,
        root: PathBuf,
    ) -> BinServer {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .env("RUST_LOG", "info");
        let mut child = cmd.spawn().expect("start the ftpdlib binary");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split(">>> starting FTP server on ").nth(1) {
                    if let Some(addr) = rest.split(',').next().and_then(|a| a.parse().ok()) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr: SocketAddr = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the binary did not start: {}", log.lock().unwrap());
            }
        };
        BinServer {
            addr,
            root,
            dir,
            child,
            log,
        }
    }

    /// The metrics endpoint's address, from its `>>> metrics on http://ADDR/metrics <<<`
    /// log line.
    pub fn metrics_addr(&self) -> SocketAddr {
        assert!(self.wait_log(">>> metrics on http://"), "{}", self.log());
        let log = self.log();
        let rest = log.split(">>> metrics on http://").nth(1).expect("line");
        rest.split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("metrics address")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (up to [`IO_TIMEOUT`]) until the log holds `needle`: the log is read from the
    /// server's stderr by another thread, so a line written just before a reply may not be
    /// here yet when the reply is. True once it is there.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while !self.log().contains(needle) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("kill");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1);
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn env_logger_init() -> Result<(), ()> {
    // Tests log nothing by default; set RUST_LOG to see the server.
    Ok(())
}

/// A running server; dropping it ends every session and joins the acceptor.
pub struct Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub dir: tempfile::TempDir,
    pub handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    /// The binary serving this server (Fork and PreFork models); `handle` is then a
    /// placeholder that controls nothing.
    pub bin: Option<BinServer>,
    /// The metrics endpoint, when the builder asked for it.
    pub metrics: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.close_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn builder() -> Builder {
    Builder {
        executor: Executor::Pool,
        bind: "127.0.0.1:0".into(),
        auth: None,
        handler: None,
        max_cons: 512,
        max_cons_per_ip: 0,
        implicit_tls: false,
        flags: Vec::new(),
        metrics: false,
        server: None,
    }
}

/// A server with the default users under `ex`.
pub fn start(ex: Executor) -> Server {
    builder().executor(ex).start()
}

impl Server {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, data).unwrap();
    }
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }
    /// A connected, not logged-in suppaftp client.
    pub fn connect(&self) -> FtpStream {
        let c = FtpStream::connect_timeout(self.addr, IO_TIMEOUT).expect("connect");
        c.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c
    }
    /// Logged in as `user`, binary mode, passive.
    pub fn login(&self) -> FtpStream {
        let mut c = self.connect();
        c.login(USER, PASS).expect("login");
        c.transfer_type(FileType::Binary).expect("TYPE I");
        c
    }
    /// Logged in as anonymous.
    pub fn anon(&self) -> FtpStream {
        let mut c = self.connect();
        c.login("anonymous", "guest@example.com")
            .expect("anonymous login");
        c.transfer_type(FileType::Binary).expect("TYPE I");
        c
    }
    /// A raw control connection with the 220 greeting already read.
    pub fn raw(&self) -> Raw {
        raw_at(self.addr)
    }
    /// A raw connection logged in as `user`.
    pub fn raw_login(&self) -> Raw {
        let mut r = self.raw();
        assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
        r
    }
}

/// A raw control connection to `addr` with the 220 greeting already read.
pub fn raw_at(addr: SocketAddr) -> Raw {
    raw_from(TcpStream::connect(addr).expect("connect"))
}

/// A raw control connection over an already connected socket, 220 greeting read.
pub fn raw_from(s: TcpStream) -> Raw {
    let mut r = Raw::greeted(s);
    let (code, text) = r.reply();
    assert_eq!(code, 220, "{text}");
    r
}

/// A control connection driven by hand.
pub struct Raw {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    /// Connects without reading anything (for refusals sent instead of the greeting).
    pub fn connect_any(addr: &str) -> Raw {
        Raw::greeted(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects to any address and reads the 220 greeting.
    pub fn connect(addr: &str) -> Raw {
        raw_from(TcpStream::connect(addr).expect("connect"))
    }

    /// A connection whose 220 greeting the caller has already read.
    pub fn greeted(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Raw {
            reader: BufReader::new(s.try_clone().unwrap()),
            stream: s,
        }
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes());
    }
    pub fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).expect("send");
    }
    /// Reads one whole reply (multi-line aware): (code, full text).
    pub fn reply(&mut self) -> (u32, String) {
        parse_reply(|| {
            let mut l = Vec::new();
            self.reader.read_until(b'\n', &mut l).expect("read reply");
            l
        })
    }
    pub fn cmd(&mut self, line: &str) -> (u32, String) {
        self.send(line);
        self.reply()
    }
    /// PASV and connect to the announced port.
    pub fn pasv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("PASV");
        assert_eq!(code, 227, "{text}");
        let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
        let n: Vec<u16> = inner
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        let addr = format!("{}.{}.{}.{}:{}", n[0], n[1], n[2], n[3], n[4] * 256 + n[5]);
        let s = TcpStream::connect(addr).expect("data connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }
    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// One whole reply (RFC 959 §4.2, multi-line aware) from `next_line`, which returns each
/// line with its end (empty at EOF): (code, full text).
pub fn parse_reply(mut next_line: impl FnMut() -> Vec<u8>) -> (u32, String) {
    let first = String::from_utf8_lossy(&next_line()).into_owned();
    assert!(first.len() >= 4, "short reply line {first:?}");
    let code: u32 = first[..3]
        .parse()
        .unwrap_or_else(|_| panic!("bad reply {first:?}"));
    let mut text = first.clone();
    if first.as_bytes()[3] == b'-' {
        loop {
            let l = next_line();
            assert!(!l.is_empty(), "EOF in multi-line reply: {text}");
            let l = String::from_utf8_lossy(&l);
            text.push_str(&l);
            if l.starts_with(&format!("{code} ")) {
                break;
            }
        }
    }
    (code, text)
}

/// Reads one whole reply byte by byte, so nothing after it is consumed (on a control
/// connection about to carry a TLS handshake, or inside a TLS stream): (code, text).
pub fn read_reply(r: &mut impl Read) -> (u32, String) {
    parse_reply(|| {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\n") && r.read(&mut b).expect("read reply") > 0 {
            line.push(b[0]);
        }
        line
    })
}

/// The data port of a 229 reply (RFC 2428 §3: `(|||port|)`).
pub fn epsv_port(text: &str) -> u16 {
    text.split('|')
        .nth(3)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad 229 reply {text:?}"))
}

/// Reads a data connection to its end.
pub fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read data");
    v
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// External programs: skip with a message, or fail under CI=true.
pub mod tool;
pub use tool::{missing, tool};

/// Warnings and errors of in-process servers, captured.
pub mod logs;
/// A throw-away PostgreSQL server (tests of database users, and of several servers sharing one).
pub mod pg;
/// FTPS: certificates, servers with TLS, a rustls client.
#[cfg(feature = "tls")]
pub mod tls;

/// A TCP connection to `addr` (IPv4) from the loopback address `src`: every address of
/// 127.0.0.0/8 is local, so tests can be several clients at once.
pub fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(to) = addr else {
        panic!("connect_from: {addr} is not IPv4")
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
    )
    .expect("bind the client address");
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// The first reply line a new connection gets ("" when the server closed it first).
pub fn first_line(s: &TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let mut r = s;
    while line.len() < 512 {
        match r.read(&mut b) {
            Ok(1) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no reply within {IO_TIMEOUT:?}: {e}"),
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}
