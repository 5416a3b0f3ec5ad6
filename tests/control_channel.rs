//! Attacks on the control connection: a client that dribbles bytes without ever finishing a
//! line or never logs in (idle and login timeouts), and an exhausted passive port range.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ftpdlib::servers::Executor;

// ---------------------------------------------------------------- helpers

/// Reads everything the server sends until it closes the connection (or `limit` passes,
/// which fails the test: the server was expected to close).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after the server closed with unread input: closed all the same.
            Err(_) => return out,
        }
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection; it sent {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// Connects and reads the 220 greeting.
fn greeted(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 512];
    let n = s.read(&mut b).unwrap();
    assert!(
        b[..n].starts_with(b"220"),
        "{:?}",
        String::from_utf8_lossy(&b[..n])
    );
    s
}

/// Sends one byte at a time, `every` apart, never a line end, until the server closes the
/// connection; returns what it sent back. Fails if the connection survives `limit`.
fn dribble(s: &mut TcpStream, every: Duration, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    s.set_read_timeout(Some(every)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // Errors are fine: the server may have closed already.
        let _ = s.write_all(b"N");
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return out,
        }
        assert!(
            Instant::now() < deadline,
            "a client sending one byte every {every:?} without a line end outlived {limit:?}"
        );
    }
}

// ---------------------------------------------------------------- timeouts

/// The idle timer runs from the last complete command: bytes that never make a line do not
/// reset it (a slow-dribble client cannot hold a connection slot for ever).
fn byte_dribbler_is_closed(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.timeout = Some(Duration::from_secs(2)))
        .start();
    let mut c = greeted(s.addr);
    let got = dribble(&mut c, Duration::from_millis(400), Duration::from_secs(6));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("421 "), "{text:?}");
    // Logged in, the same holds.
    let mut r = s.raw_login();
    let got = dribble(
        &mut r.stream,
        Duration::from_millis(400),
        Duration::from_secs(6),
    );
    assert!(String::from_utf8_lossy(&got).starts_with("421 "));
}

/// A connection that does not log in within `login_timeout` is closed with 421, however
/// busy it keeps itself with complete commands.
fn login_timeout_closes_busy_unauthenticated_clients(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.login_timeout = Some(Duration::from_secs(2)))
        .start();
    let mut r = s.raw();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        r.send("NOOP");
        let (code, text) = r.reply();
        if code == 421 {
            assert!(text.contains("Login timed out"), "{text}");
            break;
        }
        assert_eq!(code, 200, "{text}");
        assert!(
            Instant::now() < deadline,
            "an unauthenticated client outlived the login timeout"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(r.is_closed());
    // A logged-in session is not subject to it.
    let mut r = s.raw_login();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(r.cmd("NOOP").0, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `--login-timeout` reaches every process model (through the built binary).
fn login_timeout_flag(ex: Executor) {
    let mut args = vec!["--login-timeout", "1", "--timeout", "2"];
    let model = model_args(ex);
    args.extend(model.iter().map(String::as_str));
    let bin = BinServer::start(&args);
    // The login timer: a silent client never logged in.
    let mut c = greeted(bin.addr);
    let got = read_until_closed(&mut c, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&got).starts_with("421 Login timed out"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The idle timer of a dribbler holds in every model too.
    let mut c = greeted(bin.addr);
    let got = dribble(&mut c, Duration::from_millis(300), Duration::from_secs(6));
    assert!(String::from_utf8_lossy(&got).starts_with("421 "));
    assert!(bin.log().contains("timed out"), "{}", bin.log());
}

// ---------------------------------------------------------------- passive port range

/// `n` consecutive ports that are free on 127.0.0.1 now, below the ephemeral range (so no
/// port-0 bind elsewhere takes them); tests running at once start at different places.
fn free_port_range(n: u16) -> std::ops::RangeInclusive<u16> {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
        ^ call.wrapping_mul(2_654_435_761);
    for i in 0..200u32 {
        let base = 20000 + ((seed.wrapping_add(i * 7919)) % 10000) as u16;
        let held: Vec<_> = (base..base + n)
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base..=base + n - 1;
        }
    }
    panic!("no free port range found");
}

fn pasv_port(text: &str) -> u16 {
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    n[4] * 256 + n[5]
}

fn check_exhausted_range(addr: std::net::SocketAddr, range: std::ops::RangeInclusive<u16>) {
    let mut sessions: Vec<Raw> = Vec::new();
    let mut granted = Vec::new();
    let mut refused = 0;
    for _ in 0..5 {
        let mut r = raw_at(addr);
        assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
        let (code, text) = r.cmd("PASV");
        match code {
            227 => {
                let p = pasv_port(&text);
                assert!(range.contains(&p), "port {p} outside {range:?}");
                granted.push(p);
            }
            425 => {
                assert_eq!(
                    text.trim_end(),
                    "425 Can't open passive connection: no free port in the configured range."
                );
                refused += 1;
            }
            _ => panic!("{text}"),
        }
        sessions.push(r);
    }
    granted.sort_unstable();
    granted.dedup();
    assert_eq!(granted.len(), 3, "{granted:?}");
    assert_eq!(refused, 2);
    // EPSV draws on the same range.
    let (code, text) = sessions[4].cmd("EPSV");
    assert_eq!(
        (code, text.trim_end()),
        (
            425,
            "425 Can't open passive connection: no free port in the configured range."
        )
    );
    // A session that takes a new port lets its old one go first.
    let (code, text) = sessions[1].cmd("EPSV");
    assert_eq!(code, 229, "{text}");
    let p: u16 = text.split('|').nth(3).unwrap().parse().unwrap();
    assert!(range.contains(&p), "EPSV port {p} outside {range:?}");
    // A session that lets its listener go frees the port for another.
    assert_eq!(sessions[0].cmd("ABOR").0, 225);
    let (code, text) = sessions[4].cmd("PASV");
    assert_eq!(code, 227, "{text}");
    assert!(range.contains(&pasv_port(&text)));
}

fn passive_range_is_never_left(ex: Executor) {
    let range = free_port_range(3);
    let r2 = range.clone();
    let s = builder()
        .executor(ex)
        .handler(move |h| h.passive_ports = Some(r2))
        .start();
    check_exhausted_range(s.addr, range);
}

fn passive_range_is_never_left_bin(ex: Executor) {
    let range = free_port_range(3);
    let spec = format!("{}-{}", range.start(), range.end());
    let mut args = vec!["-r".to_string(), spec];
    args.extend(model_args(ex));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let bin = BinServer::start(&refs);
    check_exhausted_range(bin.addr, range);
    assert!(bin.log().contains("no free port"), "{}", bin.log());
}

models!(
    byte_dribbler_is_closed,
    login_timeout_closes_busy_unauthenticated_clients,
    passive_range_is_never_left;
    bin: login_timeout_flag, passive_range_is_never_left_bin,
);
