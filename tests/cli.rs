//! The `ftpdlib` binary: pyftpdlib's flags, exit codes, logs on stderr, clean stop on SIGTERM.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ftpdlib");

/// The binary running with `args`; its address read from the startup log line.
struct Bin {
    child: Child,
    addr: String,
    /// Everything it logged so far (stderr), kept by a draining thread.
    log: Arc<Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Bin {
    /// Starts `-i 127.0.0.1 -p 0 ARGS` (a repeated flag's last value wins, as in pyftpdlib).
    fn start(args: &[&str]) -> Bin {
        let mut child = Command::new(BIN)
            .args(["-i", "127.0.0.1", "-p", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ftpdlib");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let mut addr = None;
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            log.lock().unwrap().push_str(&line);
            if let Some(rest) = line.split("starting FTP server on ").nth(1) {
                addr = Some(rest.split(',').next().unwrap().to_string());
                break;
            }
            line.clear();
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        let sink = log.clone();
        let drain = std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("no startup line on stderr: {}", log.lock().unwrap());
        };
        Bin {
            child,
            addr,
            log,
            drain: Some(drain),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status (bounded).
    fn stop(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let st = wait_bounded(&mut self.child).expect("stops after SIGTERM");
        // The whole log: stderr ends with the process.
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        st
    }

    fn raw(&self) -> Raw {
        Raw::connect(&self.addr)
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--nope"][..],
        &["-p", "x"],
        &["-u", "bob"],
        &["--concurrency", "x"],
        &["-r", "5-1"],
        // Needs --tls; a zero timeout would fail every data handshake.
        &["--data-handshake-timeout", "5"],
        &[
            "--tls",
            "--certfile",
            "c.pem",
            "--data-handshake-timeout",
            "0",
        ],
        &[
            "--tls",
            "--certfile",
            "c.pem",
            "--data-handshake-timeout",
            "x",
        ],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error"),
            "{args:?}"
        );
    }
    let out = run(&["-d", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_and_help() {
    let out = run(&["-v"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ftpdlib "));
    let out = run(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--max-cons-per-ip"));
}

#[test]
fn busy_port_exits_at_once() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    // It exits by itself (no retrying the bind), with code 1 and the reason.
    let (code, stderr) = run_bounded(Command::new(BIN).args(["-i", "127.0.0.1", "-p", &port]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn anonymous_read_only_by_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hi").unwrap();
    let b = Bin::start(&["-d", dir.path().to_str().unwrap()]);
    let mut c = FtpStream::connect(&b.addr).unwrap();
    c.login("anonymous", "x").unwrap();
    assert_eq!(c.retr_as_buffer("f").unwrap().into_inner(), b"hi");
    assert!(c.put_file("g", &mut &b"x"[..]).is_err());
}

#[test]
fn write_flag_and_user_account() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bin::start(&[
        "-d",
        dir.path().to_str().unwrap(),
        "-w",
        "-u",
        "bob",
        "-P",
        "secret",
    ]);
    let mut r = b.raw();
    r.cmd("USER anonymous");
    assert_eq!(
        r.cmd("PASS x").1.trim_end(),
        "530 Anonymous access not allowed."
    );
    let mut c = FtpStream::connect(&b.addr).unwrap();
    c.login("bob", "secret").unwrap();
    c.put_file("up", &mut &b"data"[..]).unwrap();
    assert_eq!(std::fs::read(dir.path().join("up")).unwrap(), b"data");
}

#[test]
fn banner_nat_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bin::start(&[
        "-d",
        dir.path().to_str().unwrap(),
        "--banner",
        "Hello there",
        "-n",
        "10.9.8.7",
        "-r",
        "50000-50010",
    ]);
    let mut s = std::net::TcpStream::connect(&b.addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).unwrap();
    assert_eq!(line, "220 Hello there\r\n");
    let mut r = b.raw();
    r.cmd("USER anonymous");
    r.cmd("PASS x");
    let (code, text) = r.cmd("PASV");
    assert_eq!(code, 227);
    assert!(
        text.contains("(10,9,8,7,"),
        "the NAT address is sent as given: {text}"
    );
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u32> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    let port = n[4] * 256 + n[5];
    assert!((50000..=50010).contains(&port), "{port}");
}

#[test]
fn sigterm_stops_cleanly_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bin::start(&["-d", dir.path().to_str().unwrap()]);
    let mut r = b.raw();
    r.cmd("USER anonymous");
    r.cmd("PASS x");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let status = wait_bounded(&mut b.child).expect("did not stop");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        r.reply().0,
        421,
        "idle sessions get 421 (graceful shutdown)"
    );
    assert!(r.is_closed(), "sessions are ended");
    let mut out = String::new();
    std::io::Read::read_to_string(b.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(out, "", "nothing on stdout");
}

#[test]
fn timeout_zero_disables_and_ipv6_dual_stack() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"dual").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "-i",
            "::",
            "-p",
            "0",
            "--timeout",
            "0",
            "-d",
            dir.path().to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut port = 0u16;
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("starting FTP server on ").nth(1) {
            port = rest
                .split(',')
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || for _ in err.lines() {});
    for host in ["127.0.0.1", "[::1]"] {
        let mut c = FtpStream::connect(format!("{host}:{port}")).unwrap();
        c.login("anonymous", "x").unwrap();
        c.set_mode(Mode::ExtendedPassive);
        assert_eq!(
            c.retr_as_buffer("f").unwrap().into_inner(),
            b"dual",
            "{host}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a child to exit, at most [`IO_TIMEOUT`].
fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command that is expected to exit by itself: its exit code (`None` if it had to
/// be killed) and stderr.
fn run_bounded(cmd: &mut Command) -> (Option<i32>, String) {
    let mut child = cmd
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let code = match wait_bounded(&mut child) {
        Some(st) => st.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    (code, reader.join().unwrap())
}

/// The binary with `args`, as the unprivileged user `nobody` when the tests run as root.
fn unprivileged(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if nix::unistd::Uid::effective().is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

/// The README's quick-start command line, word by word (`cargo run --release -- …`).
fn readme_quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Quick start section");
    let line = section
        .lines()
        .find(|l| l.starts_with("cargo run"))
        .expect("a `cargo run` line in the Quick start");
    line.split_whitespace().map(String::from).collect()
}

/// `cargo run --release -- ARGS` needs `default-run` (two binaries: ftpdlib and tftpd), and
/// the README's arguments must start the server. `.ci/run` runs the very command; here the
/// binary runs with the README's arguments followed by another port and directory, which
/// win as the last of a repeated flag (as in pyftpdlib).
#[test]
fn readme_quick_start_serves_a_directory() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    assert!(
        manifest
            .lines()
            .any(|l| l.replace(' ', "") == "default-run=\"ftpdlib\""),
        "Cargo.toml needs default-run = \"ftpdlib\" for `cargo run`"
    );
    let words = readme_quick_start();
    assert_eq!(
        &words[..4],
        ["cargo", "run", "--release", "--"],
        "{words:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"quick start").unwrap();
    let mut args: Vec<&str> = words[4..].iter().map(String::as_str).collect();
    args.extend([
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-d",
        dir.path().to_str().unwrap(),
    ]);
    let b = Bin::start(&args);
    let mut c = FtpStream::connect(&b.addr).unwrap();
    c.login("anonymous", "guest@").unwrap();
    assert_eq!(
        c.retr_as_buffer("hello.txt").unwrap().into_inner(),
        b"quick start"
    );
    assert!(c.mkdir("x").is_err(), "anonymous and read-only");
}

/// `-i localhost` and `-n localhost`: host names are resolved, as pyftpdlib does.
#[test]
fn interface_and_nat_address_take_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bin::start(&[
        "-d",
        dir.path().to_str().unwrap(),
        "-i",
        "localhost",
        "-n",
        "localhost",
    ]);
    let addr: std::net::SocketAddr = b.addr.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let mut r = b.raw();
    r.cmd("USER anonymous");
    assert_eq!(r.cmd("PASS x").0, 230);
    let (code, text) = r.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    assert!(text.contains("(127,0,0,1,"), "{text}");
}

/// A busy port names the address and says what to do.
#[test]
fn busy_port_error_names_the_address() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let (code, err) = run_bounded(Command::new(BIN).args(["-i", "127.0.0.1", "-p", &port]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: address already in use"
        )),
        "{err}"
    );
}

/// A port below 1024 without the privilege: the message says what grants it.
#[test]
fn privileged_port_needs_root_or_capability() {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    if start <= 1 {
        eprintln!("skipped: every port is unprivileged here (ip_unprivileged_port_start={start})");
        return;
    }
    let (code, err) = run_bounded(&mut unprivileged(&[
        "-i",
        "127.0.0.1",
        "-p",
        "1",
        "-d",
        "/",
    ]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot listen on 127.0.0.1:1: permission denied"),
        "{err}"
    );
    assert!(
        err.contains("root") && err.contains("CAP_NET_BIND_SERVICE"),
        "{err}"
    );
}

/// `--unix-users` logs users in as themselves, which needs root: without it the server
/// refuses to start instead of failing every login.
#[test]
fn unix_users_without_root_refuses_to_start() {
    let (code, err) = run_bounded(&mut unprivileged(&[
        "--unix-users",
        "-i",
        "127.0.0.1",
        "-p",
        "0",
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--unix-users needs root"), "{err}");
}

/// Flags that would be accepted and then ignored are refused, saying why.
#[test]
fn flags_that_would_be_ignored_are_errors() {
    for (args, says) in [
        (&["-P", "secret"][..], "-P/--password needs -u/--username"),
        (
            &["--workers", "3"],
            "--workers needs --concurrency pre-fork",
        ),
        (
            &["--concurrency", "multi-thread", "--workers", "3"],
            "--workers needs --concurrency pre-fork",
        ),
        (
            &["-I", "-t", "5"],
            "-t/--idle-timeout needs -W/--inetd-wait",
        ),
        (&["-t", "1"], "-t/--idle-timeout needs -W/--inetd-wait"),
        (
            &["-r", "9000-8000"],
            "the start port must not exceed the end port",
        ),
    ] {
        let (code, err) = run_bounded(
            Command::new(BIN)
                .args(["-i", "127.0.0.1", "-p", "0", "-d", "/"])
                .args(args),
        );
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// The help text of one flag in `--help` (its line and any wrapped continuation lines).
fn help_of(help: &str, flag: &str) -> String {
    help_lines(help, flag)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn help_lines(help: &str, flag: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            inside = t.split([',', ' ']).any(|w| w == flag);
        } else if t.is_empty() || !line.starts_with(' ') {
            inside = false;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "{flag} not in --help:\n{help}");
    out
}

/// `--help` groups the flags as pyftpdlib does and states the defaults.
#[test]
fn help_groups_flags_and_states_defaults() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let mut at = 0;
    for group in [
        "Main options:",
        "TLS (FTPS) options:",
        "Deployment options:",
        "Limits:",
    ] {
        let i = help[at..]
            .find(group)
            .unwrap_or_else(|| panic!("{group} missing or out of order:\n{help}"));
        at += i + group.len();
    }
    assert!(help_of(&help, "--port").contains("2121"), "{help}");
    assert!(help_of(&help, "--timeout").contains("300"), "{help}");
    assert!(
        help_of(&help, "--max-cons").contains("0 = unlimited"),
        "{help}"
    );
    assert!(help_of(&help, "--max-cons").contains("512"), "{help}");
    let sendfile = help_of(&help, "--disable-sendfile");
    assert!(
        sendfile.contains("downloads") && !sendfile.contains("uploads"),
        "{sendfile}"
    );
}

/// `--max-cons 0` means no limit.
#[test]
fn max_cons_zero_is_unlimited() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bin::start(&["-d", dir.path().to_str().unwrap(), "--max-cons", "0"]);
    let mut clients: Vec<Raw> = (0..3).map(|_| b.raw()).collect();
    for r in &mut clients {
        assert_eq!(r.cmd("NOOP").0, 200);
    }
}

/// `--unix-users -w` grants write access to system users only: no warning about anonymous
/// write access (pyftpdlib's warning for `-w` with anonymous login).
#[test]
fn unix_users_write_does_not_warn_about_anonymous() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: --unix-users needs root");
        return;
    }
    let mut b = Bin::start(&["--unix-users", "-w", "-d", "/"]);
    assert_eq!(b.stop().code(), Some(0));
    assert!(!b.log().contains("anonymous"), "{}", b.log());
    // Anonymous with -w still gets pyftpdlib's warning.
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bin::start(&["-w", "-d", dir.path().to_str().unwrap()]);
    assert_eq!(b.stop().code(), Some(0));
    assert!(b.log().contains("anonymous"), "{}", b.log());
}

/// `-D` traces ftpdlib itself — commands, replies, data-channel setup — and not the TLS
/// library's handshake internals.
#[test]
fn debug_traces_ftpdlib_not_rustls() {
    if !tool("openssl") || !tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f.txt"), b"traced").unwrap();
    let mut b = Bin::start(&[
        "-D",
        "-d",
        root.to_str().unwrap(),
        "--tls",
        "--certfile",
        cert.to_str().unwrap(),
        "--keyfile",
        key.to_str().unwrap(),
    ]);
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "--ssl-reqd", "-k"])
        .arg(format!("ftp://{}/f.txt", b.addr))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"traced", "{out:?}\n{}", b.log());
    b.stop();
    let log = b.log();
    for want in [
        "<- AUTH",
        "-> 234",
        "<- RETR f.txt",
        "-> 226",
        "data connection from 127.0.0.1",
    ] {
        assert!(log.contains(want), "{want:?} missing:\n{log}");
    }
    for unwanted in ["clienthello", "ClientHello", "Resolving server certificate"] {
        assert!(!log.contains(unwanted), "{unwanted:?} in:\n{log}");
    }
}

/// Log lines read as sentences: `idle for 1s`, not `idle for Some(1s)`; no pool-worker
/// count when there is no pool.
#[test]
fn log_lines_have_no_debug_formatting() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(BIN)
        .args(["-W", "-t", "1", "-d", "/"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_bounded(&mut child).expect("exits when idle");
    assert_eq!(st.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("idle for 1s"), "{log}");
    assert!(!log.contains("Some("), "{log}");
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bin::start(&[
        "-d",
        dir.path().to_str().unwrap(),
        "--concurrency",
        "multi-thread",
    ]);
    assert_eq!(b.stop().code(), Some(0));
    let log = b.log();
    assert!(log.contains("shutting down FTP server"), "{log}");
    assert!(!log.contains("pool workers"), "{log}");
}

// ---------------------------------------------------------------- tftpd

const TFTPD: &str = env!("CARGO_BIN_EXE_tftpd");

/// `tftpd --version`, ftpdlib's log format, readable server stats, each failure logged once.
#[test]
fn tftpd_version_log_format_and_stats() {
    let out = Command::new(TFTPD).arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("tftpd {}", env!("CARGO_PKG_VERSION"))),
        "{out:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(TFTPD)
        .args(["-a", "127.0.0.1", "-p", "0", "--stats-interval", "1", "-r"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut log = Vec::new();
    let next = |log: &mut Vec<String>, what: &str| -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    log.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => panic!("no {what:?} line: {log:#?}"),
            }
        }
    };
    let serving = next(&mut log, "serving ");
    let addr = serving
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.send_to(b"\x00\x01missing.txt\x00octet\x00", &addr)
        .unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], b"\x00\x05", "an ERROR packet: {:?}", &buf[..n]);
    let stats = next(&mut log, "server stats");
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(l) = rx.try_recv() {
        log.push(l);
    }
    for l in &log {
        assert!(
            l.starts_with("[I ") || l.starts_with("[W ") || l.starts_with("[E "),
            "ftpdlib's format: {l}"
        );
    }
    let failures = log.iter().filter(|l| l.contains("No such file")).count();
    assert_eq!(failures, 1, "{log:#?}");
    assert!(!stats.contains("Counters {"), "{stats}");
    assert!(stats.contains("1 failed"), "{stats}");
}
