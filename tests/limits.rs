//! Connection limits (max_cons, max_cons_per_ip), close and close_all, and a panic in one
//! session.

mod common;
use common::*;
use ftpdlib::handlers::Command;
use ftpdlib::servers::Executor;
use std::time::{Duration, Instant};

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn max_cons(ex: Executor) {
    let s = builder().executor(ex).max_cons(2, 0).start();
    let a = s.raw();
    let _b = s.raw();
    let mut c = Raw::connect_any(&s.addr.to_string());
    let (code, text) = c.reply();
    assert_eq!(
        (code, text.trim_end()),
        (
            421,
            "421 Too many connections. Service temporarily unavailable."
        )
    );
    drop(a);
    assert!(wait_until(|| s.handle.connection_count() < 2));
    let _d = s.raw();
}

fn max_cons_per_ip(ex: Executor) {
    let s = builder().executor(ex).max_cons(0, 1).start();
    let _a = s.raw();
    let mut b = Raw::connect_any(&s.addr.to_string());
    assert_eq!(
        b.reply().1.trim_end(),
        "421 Too many connections from the same IP address."
    );
}

fn close_all_ends_sessions(ex: Executor) {
    let s = start(ex);
    let mut a = s.raw_login();
    s.handle.close_all();
    assert!(a.is_closed());
    assert!(wait_until(|| s.handle.connection_count() == 0));
}

/// Whether a new connection to `addr` gets a 220 greeting within a short wait.
fn greeted(addr: std::net::SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
    let mut b = [0u8; 3];
    matches!(c.read_exact(&mut b), Ok(())) && &b == b"220"
}

/// `close` (pyftpdlib `close`): no new connection is served, the sessions already running
/// go on.
fn close_stops_accepting_but_sessions_go_on(ex: Executor) {
    let s = start(ex);
    let mut a = s.raw_login();
    assert!(greeted(s.addr));
    s.handle.close();
    assert!(
        wait_until(|| !greeted(s.addr)),
        "still greeting after close"
    );
    assert_eq!(a.cmd("NOOP").0, 200);
    assert_eq!(a.cmd("PWD").0, 257);
    assert!(s.handle.connection_count() >= 1);
}

fn panic_ends_only_that_session(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.add_command(Command::new("SITE BOOM", "Syntax: SITE BOOM.", |_s, _r| {
                panic!("boom")
            }));
        })
        .start();
    let mut a = s.raw_login();
    let (code, text) = a.cmd("SITE BOOM");
    assert_eq!(
        (code, text.trim_end()),
        (421, "421 Internal error; closing connection.")
    );
    assert!(a.is_closed());
    let mut b = s.raw_login();
    assert_eq!(b.cmd("NOOP").0, 200, "the server keeps serving");
    assert!(wait_until(|| s.handle.connection_count() == 1));
}

fn idle_timeout(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.timeout = Some(Duration::from_millis(300)))
        .start();
    let mut r = s.raw();
    let (code, text) = r.reply();
    assert_eq!(
        (code, text.trim_end()),
        (421, "421 Control connection timed out.")
    );
    assert!(r.is_closed());
}

fn many_concurrent_sessions(ex: Executor) {
    let s = start(ex);
    s.write("f", &pattern(64 * 1024));
    let addr = s.addr;
    let threads: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = FtpStream::connect(addr).unwrap();
                c.login(USER, PASS).unwrap();
                c.transfer_type(FileType::Binary).unwrap();
                let name = format!("up{i}");
                c.put_file(&name, &mut &pattern(10_000)[..]).unwrap();
                assert_eq!(
                    c.retr_as_buffer("f").unwrap().into_inner(),
                    pattern(64 * 1024)
                );
                c.quit().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for i in 0..50 {
        assert_eq!(s.read(&format!("up{i}")), pattern(10_000));
    }
}

models!(
    max_cons,
    max_cons_per_ip,
    close_all_ends_sessions,
    close_stops_accepting_but_sessions_go_on,
    panic_ends_only_that_session,
    idle_timeout,
    many_concurrent_sessions,
);
