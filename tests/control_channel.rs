//! Attacks on the control connection: a client that dribbles bytes without ever finishing a
//! line or never logs in (idle and login timeouts).

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

models!(
    byte_dribbler_is_closed,
    login_timeout_closes_busy_unauthenticated_clients;
    bin: login_timeout_flag,
);
