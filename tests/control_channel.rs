//! Attacks on the control connection: a client that dribbles bytes without ever finishing a
//! line or never logs in (idle and login timeouts), a browser speaking HTTP to the FTP port
//! (cross-protocol requests), names that would inject reply lines (RFC 959 §4.2, RFC 2640
//! §3.1), client bytes echoed in replies and logs, and an exhausted passive port range.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::*;
use ftpdlib::servers::Executor;

// ---------------------------------------------------------------- helpers

/// How long a test waits for a timer of a few seconds to act before it fails: far beyond
/// the timer (a client that is never closed would stay for ever), so a slow machine passes.
const LIVENESS: Duration = Duration::from_secs(60);

/// Reads everything the server sends until it closes the connection (or `limit` passes,
/// which fails the test: the server was expected to close). Callers pass [`LIVENESS`]: a
/// timer that works closes long before it, whatever the machine's load.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    loop {
        if read_some(s, &mut out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection; it sent {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// One read (up to the socket's read timeout) appended to `out`; true once the server has
/// closed the connection (EOF, or a reset after it closed with unread input).
fn read_some(s: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            out.extend_from_slice(&buf[..n]);
            false
        }
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
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
    loop {
        // Errors are fine: the server may have closed already.
        let _ = s.write_all(b"N");
        if read_some(s, &mut out) {
            return out;
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
    let got = dribble(&mut c, Duration::from_millis(400), LIVENESS);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("421 "), "{text:?}");
    // Logged in, the same holds.
    let mut r = s.raw_login();
    let got = dribble(&mut r.stream, Duration::from_millis(400), LIVENESS);
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
    let deadline = Instant::now() + LIVENESS;
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
    let got = read_until_closed(&mut c, LIVENESS);
    assert!(
        String::from_utf8_lossy(&got).starts_with("421 Login timed out"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The idle timer of a dribbler holds in every model too.
    let mut c = greeted(bin.addr);
    let got = dribble(&mut c, Duration::from_millis(300), LIVENESS);
    assert!(String::from_utf8_lossy(&got).starts_with("421 "));
    assert!(bin.wait_log("timed out"), "{}", bin.log());
}

// ---------------------------------------------------------------- cross-protocol requests

/// The browser cross-protocol attack: an HTTP POST whose body holds FTP commands. Nothing
/// after the request line runs.
fn http_post_runs_nothing(ex: Executor) {
    let s = builder()
        .executor(ex)
        .auth(|a, root| a.add_anonymous(root, "elradfmwMT").unwrap())
        .start();
    let mut c = greeted(s.addr);
    let body = "USER anonymous\r\nPASS x\r\nMKD created_by_http_post\r\n";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:21\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let got = read_until_closed(&mut c, LIVENESS);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text, "500 HTTP protocol commands not allowed.\r\n");
    assert!(!s.path("created_by_http_post").exists());
}

/// A GET is closed at once (one reply), as are header lines and other HTTP methods.
fn http_requests_are_closed(ex: Executor) {
    let s = start(ex);
    for first in [
        "GET / HTTP/1.1",
        "get /index.html HTTP/1.0",
        "HEAD / HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        "CONNECT 127.0.0.1:443 HTTP/1.1",
        "PUT /x HTTP/1.1",
        "DELETE /x HTTP/1.1",
        "PROPFIND / HTTP/1.1",
        "Host: 127.0.0.1",
        "User-Agent: Mozilla/5.0",
        "content-type: text/html",
    ] {
        let mut c = greeted(s.addr);
        let req = format!("{first}\r\nAccept: */*\r\nUser-Agent: x\r\n\r\nNOOP\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let got = read_until_closed(&mut c, LIVENESS);
        assert_eq!(
            String::from_utf8_lossy(&got),
            "500 HTTP protocol commands not allowed.\r\n",
            "after {first:?}"
        );
    }
    assert_eq!(s.raw_login().cmd("NOOP").0, 200, "the server still serves");
}

/// Unknown verbs are not reflected as they came: only a short alphanumeric verb is quoted;
/// markup, control bytes and long words are not echoed at all.
fn unknown_verbs_are_not_echoed_raw(ex: Executor) {
    let s = start(ex);
    for logged_in in [false, true] {
        let mut r = if logged_in { s.raw_login() } else { s.raw() };
        let (code, text) = r.cmd("FOO bar");
        assert_eq!(
            (code, text.trim_end()),
            (500, "500 Command \"FOO\" not understood.")
        );
        let (code, text) = r.cmd("<svg/onload=alert(1)>");
        assert_eq!(
            (code, text.trim_end()),
            (500, "500 Command not understood.")
        );
        r.send_bytes(b"\x1b[2J\x07X y\r\n");
        let (code, text) = r.reply();
        assert_eq!(
            (code, text.trim_end()),
            (500, "500 Command not understood.")
        );
        let long = "A".repeat(200);
        let (code, text) = r.cmd(&long);
        assert_eq!(code, 500);
        assert!(text.len() < 80, "{text}");
        assert_eq!(r.cmd("NOOP").0, 200);
    }
}

// ---------------------------------------------------------------- reply injection

/// A name holding CR LF and reply lines, shown by STAT over the control connection, stays
/// inside one well-formed multi-line reply: the client's next PASV gets the real 227.
fn stat_listing_cannot_inject_replies(ex: Executor) {
    let s = start(ex);
    let evil = b"x\r\n213 End of status.\r\n227 Entering passive mode (127,0,0,2,4,1)";
    std::fs::write(s.root.join(std::ffi::OsStr::from_bytes(evil)), b"").unwrap();
    let mut r = s.raw_login();
    let (code, text) = r.cmd("STAT /");
    assert_eq!(code, 213, "{text}");
    assert!(text.ends_with("\r\n213 End of status.\r\n"), "{text:?}");
    // Exactly three lines: the header, the one entry, the end.
    assert_eq!(text.matches("\r\n").count(), 3, "{text:?}");
    // RFC 2640 §3.1: the CR travels as CR NUL; an LF never ends a line inside a name.
    assert!(text.contains("x\r\0"), "{text:?}");
    let (code, text) = r.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    assert!(
        text.contains("(127,0,0,1,"),
        "a forged 227 was taken: {text}"
    );
    assert!(!text.contains("127,0,0,2"), "{text}");
    assert_eq!(r.cmd("NOOP").0, 200);
}

/// MLST, PWD, CWD and error texts carry a CR in a name as CR NUL (RFC 2640 §3.1), so the
/// reply stays one line for every client.
fn paths_in_replies_are_escaped(ex: Executor) {
    let s = start(ex);
    let evil = b"d\r227 Entering passive mode (127,0,0,2,4,1)";
    std::fs::create_dir(s.root.join(std::ffi::OsStr::from_bytes(evil))).unwrap();
    let mut r = s.raw_login();
    let wire = b"d\r\x00227 Entering passive mode (127,0,0,2,4,1)";
    let mut mlst = b"MLST ".to_vec();
    mlst.extend_from_slice(wire);
    mlst.extend_from_slice(b"\r\n");
    r.send_bytes(&mlst);
    let (code, text) = r.reply();
    assert_eq!(code, 250, "{text:?}");
    assert_eq!(text.matches("\r\n").count(), 3, "{text:?}");
    assert_eq!(text.matches("d\r\x00227").count(), 2, "{text:?}");
    let mut cwd = b"CWD ".to_vec();
    cwd.extend_from_slice(wire);
    cwd.extend_from_slice(b"\r\n");
    r.send_bytes(&cwd);
    let (code, text) = r.reply();
    assert_eq!(code, 250, "{text:?}");
    assert!(text.contains("d\r\x00227"), "{text:?}");
    let (code, text) = r.cmd("PWD");
    assert_eq!(code, 257);
    assert_eq!(
        text,
        "257 \"/d\r\x00227 Entering passive mode (127,0,0,2,4,1)\" is the current directory.\r\n"
    );
    assert_eq!(r.cmd("TYPE I").0, 200);
    let (code, text) = r.cmd("SIZE .");
    assert_eq!(code, 550, "{text:?}");
    assert!(text.contains("d\r\x00227"), "{text:?}");
    let (code, text) = r.cmd("PASV");
    assert_eq!(code, 227);
    assert!(text.contains("(127,0,0,1,"), "{text}");
}

/// Names with CR, LF or NUL cannot be created over FTP (RFC 959 553 "File name not
/// allowed"); other commands keep working.
fn control_characters_in_new_names_are_refused(ex: Executor) {
    let s = start(ex);
    s.write("src", b"x");
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let cmd = |verb: &str| {
        let mut v = format!("{verb} new").into_bytes();
        v.extend_from_slice(b"\r\x00name\r\n");
        v
    };
    for verb in ["MKD", "XMKD", "STOR", "APPE", "STOU"] {
        r.send_bytes(&cmd(verb));
        let (code, text) = r.reply();
        assert_eq!(code, 553, "{verb}: {text}");
    }
    assert_eq!(r.cmd("RNFR src").0, 350);
    r.send_bytes(&cmd("RNTO"));
    assert_eq!(r.reply().0, 553);
    // NUL keeps its 501 (refused for every path).
    r.send_bytes(b"MKD a\x00b\r\n");
    assert_eq!(r.reply().0, 501);
    let created: Vec<_> = std::fs::read_dir(&s.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        created,
        vec![std::ffi::OsString::from("src")],
        "{created:?}"
    );
    assert_eq!(r.cmd("MKD plain").0, 257);
}

/// Client bytes never reach the log raw: a CR in a user name is escaped.
fn log_lines_escape_control_characters(ex: Executor) {
    let mut args: Vec<String> = model_args(ex);
    args.push("--max-login-attempts".into());
    args.push("10".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let bin = BinServer::start(&refs);
    let mut r = raw_at(bin.addr);
    r.send_bytes(b"USER evil\r\x00FAKE LOG LINE\r\n");
    assert_eq!(r.reply().0, 331);
    assert_eq!(r.cmd("PASS wrong").0, 530);
    r.send_bytes(b"USER user\r\nPASS 12345\r\nMKD a\r\x00b\r\nQUIT\r\n");
    assert_eq!(r.reply().0, 331);
    assert_eq!(r.reply().0, 230);
    assert_eq!(r.reply().0, 553);
    assert_eq!(r.reply().0, 221);
    assert!(r.is_closed());
    let deadline = Instant::now() + IO_TIMEOUT;
    while !bin.log().contains("logged out") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = bin.log();
    assert!(log.contains("failed login"), "{log}");
    assert!(!log.contains('\r'), "a raw CR in the log: {log:?}");
    assert!(log.contains("evil\\rFAKE LOG LINE"), "{log}");
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
    let p = epsv_port(&text);
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
    assert!(bin.wait_log("no free port"), "{}", bin.log());
}

models!(
    byte_dribbler_is_closed,
    login_timeout_closes_busy_unauthenticated_clients,
    http_post_runs_nothing,
    http_requests_are_closed,
    unknown_verbs_are_not_echoed_raw,
    stat_listing_cannot_inject_replies,
    paths_in_replies_are_escaped,
    control_characters_in_new_names_are_refused,
    passive_range_is_never_left;
    bin: login_timeout_flag, log_lines_escape_control_characters, passive_range_is_never_left_bin,
);
