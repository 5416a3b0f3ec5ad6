//! The `ftpdlib` binary: pyftpdlib's flags, exit codes, logs on stderr, clean stop on SIGTERM.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ftpdlib");

/// The binary running with `args`; its address read from the startup log line.
struct Bin {
    child: Child,
    addr: String,
}

impl Bin {
    fn start(args: &[&str]) -> Bin {
        let mut child = Command::new(BIN)
            .args(["-i", "127.0.0.1", "-p", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ftpdlib");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(rest) = line.split("starting FTP server on ").nth(1) {
                addr = Some(rest.split(',').next().unwrap().to_string());
                break;
            }
            line.clear();
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        Bin {
            child,
            addr: addr.expect("startup line on stderr"),
        }
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
    let t = Instant::now();
    let out = run(&["-i", "127.0.0.1", "-p", &port]);
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let t = Instant::now();
    let status = loop {
        if let Some(st) = b.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
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
