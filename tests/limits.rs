//! Connection limits (max_cons, max_cons_per_ip), close and close_all, and a panic in one
//! session.

mod common;
use common::*;
use ftpdlib::handlers::Command;
use ftpdlib::servers::Executor;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

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

/// `close_all` during a download (throttled, so it is still running): that session ends
/// too, its data and control connections closed without waiting for the transfer.
fn close_all_ends_a_session_mid_transfer(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.write_limit = 64 * 1024)
        .start();
    s.write("big", &pattern(4 << 20));
    let mut a = s.raw_login();
    assert_eq!(a.cmd("TYPE I").0, 200);
    let mut data = a.pasv();
    let (code, text) = a.cmd("RETR big");
    assert!(code == 125 || code == 150, "{text}");
    let mut head = [0u8; 4096];
    std::io::Read::read_exact(&mut data, &mut head).unwrap();
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

/// `n` connections from `src` opened at once; the greeted ones stay open. Returns them and
/// the refusals' first lines.
fn burst(addr: SocketAddr, src: Ipv4Addr, n: usize) -> (Vec<TcpStream>, Vec<String>) {
    let go = Arc::new(Barrier::new(n));
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let c = connect_from(src, addr);
                let line = first_line(&c);
                (c, line)
            })
        })
        .collect();
    let mut greeted = Vec::new();
    let mut refused = Vec::new();
    for t in clients {
        let (c, line) = t.join().unwrap();
        if line.starts_with("220") {
            greeted.push(c);
        } else {
            refused.push(line);
        }
    }
    (greeted, refused)
}

/// max_cons_per_ip admits exactly that many sessions per address, whatever the model (one
/// count shared by every worker and child), and counts each address apart.
fn per_ip_limit_is_exact(ex: Executor) {
    let s = builder().executor(ex).max_cons(0, 5).start();
    let mut held = Vec::new();
    for src in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)] {
        let (greeted, refused) = burst(s.addr, src, 12);
        assert_eq!(
            greeted.len(),
            5,
            "{src}: admitted {}: {refused:?}",
            greeted.len()
        );
        for r in &refused {
            assert_eq!(r, "421 Too many connections from the same IP address.");
        }
        held.extend(greeted);
    }
}

/// max_cons admits exactly that many sessions at once, whatever the model.
fn max_cons_is_exact(ex: Executor) {
    let s = builder().executor(ex).max_cons(50, 0).start();
    // One after another (pre-fork workers take them unevenly): every one is admitted
    // until the limit; then all at once (pool workers accept concurrently): none is.
    let mut greeted = Vec::new();
    for i in 0..50 {
        let c = connect_from(Ipv4Addr::LOCALHOST, s.addr);
        let line = first_line(&c);
        assert!(line.starts_with("220"), "connection {i}: {line}");
        greeted.push(c);
    }
    let (more, refused) = burst(s.addr, Ipv4Addr::LOCALHOST, 30);
    greeted.extend(more);
    assert_eq!(greeted.len(), 50, "admitted {}", greeted.len());
    for r in &refused {
        assert_eq!(
            r,
            "421 Too many connections. Service temporarily unavailable."
        );
    }
}

/// The slot is free the moment a session ends: a client that reconnects as soon as it has
/// the 221 gets in, with both limits reached (another address holds the other slot).
fn reconnect_right_after_quit(ex: Executor) {
    let s = builder().executor(ex).max_cons(2, 1).start();
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), s.addr);
    assert!(first_line(&other).starts_with("220"));
    for i in 0..20 {
        let c = connect_from(Ipv4Addr::LOCALHOST, s.addr);
        let line = first_line(&c);
        assert!(line.starts_with("220"), "try {i}: {line}");
        let mut r = Raw::greeted(c);
        assert_eq!(r.cmd("QUIT").0, 221, "try {i}");
    }
    other.write_all(b"NOOP\r\n").unwrap();
    assert!(first_line(&other).starts_with("200"));
}

/// Logs in from `src` with `password`: the reply to PASS.
fn try_login(addr: SocketAddr, src: Ipv4Addr, password: &str) -> (u32, String) {
    let c = connect_from(src, addr);
    let line = first_line(&c);
    assert!(line.starts_with("220"), "{src}: {line}");
    let mut r = Raw::greeted(c);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    r.cmd(&format!("PASS {password}"))
}

/// Brute force across sessions: three failed logins from one address, in sessions of their
/// own (two of them at once, so in different workers or children), ban it: new connections
/// get 421 and a session it already had is refused at PASS. Another address is not
/// affected, and its successful login does not reset the first one's count. The ban ends
/// after `ban_time`.
fn failed_logins_ban_the_address(ex: Executor) {
    let s = builder()
        .executor(ex)
        // The binary waits 3 s before each 530, and the ban counts from the failure.
        .config(&["--ban-failures", "3", "--ban-time", "8"], |h| {
            h.ban_failures = 3;
            h.ban_time = Duration::from_secs(4);
        })
        .start();
    let (me, other) = (Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2));
    let early = connect_from(me, s.addr);
    assert!(first_line(&early).starts_with("220"));
    let addr = s.addr;
    let guesses: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || try_login(addr, me, "wrong")))
        .collect();
    for g in guesses {
        assert_eq!(g.join().unwrap().0, 530);
    }
    assert_eq!(try_login(s.addr, other, "wrong").0, 530);
    assert_eq!(try_login(s.addr, other, PASS).0, 230);
    let (code, text) = try_login(s.addr, me, "wrong");
    assert_eq!(code, 421, "the third failure bans: {text}");
    let banned = connect_from(me, s.addr);
    assert_eq!(
        first_line(&banned),
        "421 Too many failed logins from your address; try again later."
    );
    let mut early = Raw::greeted(early);
    assert_eq!(early.cmd(&format!("USER {USER}")).0, 331);
    let (code, text) = early.cmd(&format!("PASS {PASS}"));
    assert_eq!(code, 421, "a banned address cannot log in: {text}");
    assert_eq!(
        try_login(s.addr, other, PASS).0,
        230,
        "another address is not banned"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !first_line(&connect_from(me, s.addr)).starts_with("220") {
        assert!(Instant::now() < deadline, "the ban never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(try_login(s.addr, me, PASS).0, 230);
    if let Some(bin) = &s.bin {
        assert!(bin.wait_log("banned for"), "{}", bin.log());
        let log = bin.log();
        assert_eq!(log.matches("banned for").count(), 1, "{log}");
    }
}

/// Failures further apart than `ban_find_time` do not add up; 0 failures turns bans off.
fn failures_outside_the_window_do_not_ban(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.ban_failures = 2;
            h.ban_find_time = Duration::from_millis(500);
        })
        .start();
    assert_eq!(try_login(s.addr, Ipv4Addr::LOCALHOST, "wrong").0, 530);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(try_login(s.addr, Ipv4Addr::LOCALHOST, "wrong").0, 530);
    assert_eq!(try_login(s.addr, Ipv4Addr::LOCALHOST, PASS).0, 230);
    let off = builder()
        .executor(ex)
        .handler(|h| h.ban_failures = 0)
        .start();
    for _ in 0..8 {
        assert_eq!(try_login(off.addr, Ipv4Addr::LOCALHOST, "wrong").0, 530);
    }
    assert_eq!(try_login(off.addr, Ipv4Addr::LOCALHOST, PASS).0, 230);
}

models!(
    max_cons,
    max_cons_per_ip,
    close_all_ends_sessions,
    close_all_ends_a_session_mid_transfer,
    close_stops_accepting_but_sessions_go_on,
    panic_ends_only_that_session,
    idle_timeout,
    many_concurrent_sessions,
    failures_outside_the_window_do_not_ban;
    bin: per_ip_limit_is_exact,
    failed_logins_ban_the_address,
    max_cons_is_exact,
    reconnect_right_after_quit,
);
