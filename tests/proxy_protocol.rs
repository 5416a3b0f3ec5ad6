//! The PROXY protocol (v1 and v2) without a balancer: the tests write the headers a
//! balancer would, from 127.0.0.1 (the trusted proxy), naming clients of their choice. The
//! named client is then the session's peer everywhere: per-address limits and bans, logs,
//! callbacks, the PORT bounce check and the passive connection check (a data connection
//! through the balancer carries a header naming the same client; one straight from the
//! client is checked by its address). Untrusted senders, missing, late or malformed headers
//! close the connection; without the option a header is an unknown command.
//! tests/haproxy.rs does the same through a real HAProxy.

mod common;
use common::logs::logged;
use common::*;
use ftpdlib::handlers::{Callbacks, FtpHandler};
use ftpdlib::proxy_protocol::parse::{encode_v1, encode_v2};
use ftpdlib::proxy_protocol::ProxyProtocol;
use ftpdlib::servers::Executor;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LB: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Proxy protocol on, trusting `trusted`, two ways (flags for the binary models).
fn proxied(ex: Executor, trusted: &'static str) -> Builder {
    let _ = logged(""); // start capturing the in-process servers' warnings
    builder().executor(ex).config(
        &["--proxy-protocol", "--trusted-proxy", trusted],
        move |h: &mut FtpHandler| {
            h.proxy_protocol = Some(ProxyProtocol::new(vec![trusted.parse().unwrap()]));
        },
    )
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A connection from the balancer that starts with `header`; its first reply line.
fn send_header(addr: SocketAddr, header: &[u8]) -> (TcpStream, String) {
    let mut c = connect_from(LB, addr);
    c.write_all(header).unwrap();
    let line = first_line(&c);
    (c, line)
}

/// A control connection through the "balancer" for `client`, 220 read.
fn via(addr: SocketAddr, client: &str) -> Raw {
    let (c, line) = send_header(addr, &encode_v2(Some((sa(client), addr))));
    assert!(line.starts_with("220"), "{client}: {line:?}");
    Raw::greeted(c)
}

fn login(r: &mut Raw) {
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
}

/// True once the server logged `needle` (the binary's log, or this process's warnings).
fn server_logged(s: &Server, needle: &str) -> bool {
    match &s.bin {
        Some(b) => b.wait_log(needle),
        None => !logged(needle).is_empty(),
    }
}

/// `max_cons_per_ip` counts the clients the headers name, not the balancer every session
/// comes from (without the header all three would be 127.0.0.1, and the second refused).
fn per_address_limit_counts_the_client(ex: Executor) {
    let s = proxied(ex, "127.0.0.1").max_cons(0, 1).start();
    let mut a = via(s.addr, "203.0.113.7:40000");
    login(&mut a);
    let (_b, line) = send_header(s.addr, &encode_v2(Some((sa("203.0.113.7:40001"), s.addr))));
    assert_eq!(line, "421 Too many connections from the same IP address.");
    let mut c = via(s.addr, "203.0.113.8:40000");
    login(&mut c);
    // Version 1 headers name clients the same way.
    let (_d, line) = send_header(s.addr, &encode_v1(sa("203.0.113.8:1"), s.addr));
    assert_eq!(line, "421 Too many connections from the same IP address.");
    drop(a);
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let (_e, line) = send_header(s.addr, &encode_v1(sa("203.0.113.7:2"), s.addr));
        if line.starts_with("220") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never released: {line}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(bin) = &s.bin {
        assert!(bin.wait_log("203.0.113.8:40000-[] FTP session opened (connect via 127.0.0.1:"));
        assert!(bin.wait_log("203.0.113.7:40001 refused: too many connections from this"));
    }
}

/// Failed logins ban the client the header names; another client behind the same balancer
/// is served.
fn bans_fall_on_the_client(ex: Executor) {
    let s = proxied(ex, "127.0.0.1")
        .config(
            &[
                "--proxy-protocol",
                "--trusted-proxy",
                "127.0.0.1",
                "--ban-failures",
                "2",
            ],
            |h| {
                h.proxy_protocol = Some(ProxyProtocol::new(vec!["127.0.0.1".parse().unwrap()]));
                h.ban_failures = 2;
            },
        )
        .start();
    let fail = |port: u16| {
        let mut r = via(s.addr, &format!("198.51.100.66:{port}"));
        assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
        r.cmd("PASS wrong").0
    };
    assert_eq!(fail(1), 530);
    assert_eq!(fail(2), 421, "the second failure bans");
    let (_c, line) = send_header(s.addr, &encode_v2(Some((sa("198.51.100.66:3"), s.addr))));
    assert_eq!(
        line,
        "421 Too many failed logins from your address; try again later."
    );
    let mut other = via(s.addr, "198.51.100.67:1");
    login(&mut other);
    assert!(server_logged(&s, "198.51.100.66 banned for"));
}

/// A data port opened with PORT connects to the client the header named (and nowhere
/// else); a passive connection is the client's when it comes through the balancer with a
/// header naming it, or straight from its address; the header is not part of the data.
fn data_connections_belong_to_the_named_client(ex: Executor) {
    let s = proxied(ex, "127.0.0.1").start();
    let client = Ipv4Addr::new(127, 0, 0, 5);
    s.write("f.bin", &pattern(100_000));
    let mut r = via(s.addr, "127.0.0.5:40000");
    login(&mut r);
    assert_eq!(r.cmd("TYPE I").0, 200);
    // PORT to the balancer's address is a bounce: the client is 127.0.0.5.
    let (code, text) = r.cmd("PORT 127,0,0,1,200,10");
    assert_eq!(code, 501, "{text}");
    let active = TcpListener::bind((client, 0)).unwrap();
    let p = active.local_addr().unwrap().port();
    assert_eq!(
        r.cmd(&format!("PORT 127,0,0,5,{},{}", p >> 8, p & 0xff)).0,
        200
    );
    assert_eq!(r.cmd("RETR f.bin").0, 125);
    let (conn, _) = active.accept().unwrap();
    assert_eq!(read_all(conn), pattern(100_000));
    assert_eq!(r.reply().0, 226);

    // Passive: refused from the balancer without a valid header or for another client, and
    // straight from another address; accepted straight from the client.
    let port = epsv_port(&r.cmd("EPSV").1);
    let data = SocketAddr::new(s.addr.ip(), port);
    let mut garbage = connect_from(LB, data);
    garbage.write_all(b"hello, world\r\n").unwrap();
    let mut stranger = connect_from(LB, data);
    stranger
        .write_all(&encode_v2(Some((sa("127.0.0.9:1"), data))))
        .unwrap();
    let direct_stranger = connect_from(Ipv4Addr::new(127, 0, 0, 6), data);
    r.send("NLST");
    for (what, mut c) in [
        ("no header", garbage),
        ("another client", stranger),
        ("direct", direct_stranger),
    ] {
        let mut b = [0u8; 64];
        assert!(
            matches!(c.read(&mut b), Ok(0) | Err(_)),
            "{what}: not closed"
        );
    }
    assert_eq!(r.reply().0, 150);
    let names = read_all(connect_from(client, data));
    assert_eq!(String::from_utf8_lossy(&names).trim(), "f.bin");
    assert_eq!(r.reply().0, 226);
    assert!(server_logged(
        &s,
        "127.0.0.5:40000-[user] rejected data connection from foreign address 127.0.0.9 (via 127.0.0.1:"
    ));

    // Through the balancer both ways: the header is taken off, the bytes are exact.
    let port = epsv_port(&r.cmd("EPSV").1);
    let data = SocketAddr::new(s.addr.ip(), port);
    let mut up = connect_from(LB, data);
    up.write_all(&encode_v1(sa("127.0.0.5:40001"), data))
        .unwrap();
    assert_eq!(r.cmd("STOR up.bin").0, 125);
    up.write_all(&pattern(70_000)).unwrap();
    drop(up);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read("up.bin"), pattern(70_000));
    let port = epsv_port(&r.cmd("EPSV").1);
    let data = SocketAddr::new(s.addr.ip(), port);
    let mut down = connect_from(LB, data);
    down.write_all(&encode_v2(Some((sa("127.0.0.5:40002"), data))))
        .unwrap();
    assert_eq!(r.cmd("RETR up.bin").0, 125);
    assert_eq!(read_all(down), pattern(70_000));
    assert_eq!(r.reply().0, 226);
}

/// The session's peer, for callbacks and the authorizer, is the client the header named.
#[derive(Clone, Default)]
struct Peers(Arc<Mutex<Vec<SocketAddr>>>);
impl Callbacks for Peers {
    fn on_connect(&mut self, peer: SocketAddr) {
        self.0.lock().unwrap().push(peer);
    }
}

fn callbacks_see_the_client(ex: Executor) {
    let peers = Peers::default();
    let seen = peers.clone();
    let s = builder()
        .executor(ex)
        .handler(move |h| {
            h.proxy_protocol = Some(ProxyProtocol::new(vec!["127.0.0.1".parse().unwrap()]));
            h.set_callbacks(move || peers.clone());
        })
        .start();
    let mut a = via(s.addr, "[2001:db8::7]:5555");
    assert_eq!(a.cmd("NOOP").0, 200);
    // LOCAL (a health check): the balancer's own connection, served as itself.
    let (local, line) = send_header(s.addr, &encode_v2(None));
    assert!(line.starts_with("220"), "{line}");
    let mut local = Raw::greeted(local);
    assert_eq!(local.cmd("QUIT").0, 221);
    let mut b = via(s.addr, "203.0.113.7:6666");
    assert_eq!(b.cmd("NOOP").0, 200);
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], sa("[2001:db8::7]:5555"));
    assert_eq!(got[1].ip(), std::net::IpAddr::V4(LB));
    assert_eq!(got[2], sa("203.0.113.7:6666"));
}

/// Only trusted balancers may connect: anyone else is closed before the greeting, header
/// or not, and the refusal is logged.
fn untrusted_senders_are_closed(ex: Executor) {
    let s = proxied(ex, "127.0.0.2").start();
    let (_c, line) = send_header(s.addr, &encode_v2(Some((sa("192.0.2.99:1"), s.addr))));
    assert_eq!(line, "", "closed without a reply");
    let plain = connect_from(Ipv4Addr::new(127, 0, 0, 3), s.addr);
    assert_eq!(first_line(&plain), "");
    assert!(server_logged(&s, "127.0.0.3:"));
    assert!(server_logged(&s, "refused: not a trusted proxy"));
    let c = connect_from(Ipv4Addr::new(127, 0, 0, 2), s.addr);
    (&c).write_all(&encode_v1(sa("192.0.2.99:1"), s.addr))
        .unwrap();
    assert!(
        first_line(&c).starts_with("220"),
        "the trusted one is served"
    );
}

/// A trusted sender that sends no header, a malformed one, or one too slowly is closed
/// without a reply, and logged.
fn missing_bad_or_late_headers_close(ex: Executor) {
    let s = proxied(ex, "127.0.0.1")
        .handler(|h| {
            let mut pp = ProxyProtocol::new(vec!["127.0.0.1".parse().unwrap()]);
            pp.timeout = Duration::from_millis(300);
            h.proxy_protocol = Some(pp);
        })
        .start();
    let bad: [&[u8]; 4] = [
        b"USER anonymous\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 99999\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        b"PROXY TCP4 192.0.2.1",
    ];
    for b in bad {
        let (_c, line) = send_header(s.addr, b);
        assert_eq!(line, "", "{:?}", String::from_utf8_lossy(b));
    }
    assert!(server_logged(
        &s,
        "refused: invalid PROXY protocol header: not a PROXY"
    ));
    assert!(server_logged(
        &s,
        "refused: invalid PROXY protocol header: malformed version 1"
    ));
    assert!(server_logged(
        &s,
        "refused: invalid PROXY protocol header: version 2 header with a bad version"
    ));
    assert!(server_logged(
        &s,
        "refused: incomplete PROXY protocol header (20 bytes) in time"
    ));
}

/// Without `--proxy-protocol` a header is a command like any other: unknown.
fn without_the_option_a_header_is_an_unknown_command(ex: Executor) {
    let s = builder().executor(ex).start();
    let mut r = s.raw();
    let (code, text) = r.cmd("PROXY TCP4 192.0.2.1 192.0.2.2 1 2");
    assert_eq!(code, 500, "{text}");
    login(&mut r);
}

/// The header comes before the TLS handshake of AUTH TLS, and nothing of what follows it is
/// swallowed: a client that sends its USER right behind the header is answered.
fn pipelined_commands_behind_the_header_survive(ex: Executor) {
    let s = proxied(ex, "127.0.0.1").start();
    let mut c = connect_from(LB, s.addr);
    let mut bytes = encode_v2(Some((sa("192.0.2.44:1"), s.addr)));
    bytes.extend_from_slice(format!("USER {USER}\r\nPASS {PASS}\r\n").as_bytes());
    c.write_all(&bytes).unwrap();
    let mut r = Raw::greeted(c);
    assert_eq!(r.reply().0, 220);
    assert_eq!(r.reply().0, 331);
    assert_eq!(r.reply().0, 230);
}

models!(
    callbacks_see_the_client,
    missing_bad_or_late_headers_close;
    bin: per_address_limit_counts_the_client,
    bans_fall_on_the_client,
    data_connections_belong_to_the_named_client,
    untrusted_senders_are_closed,
    without_the_option_a_header_is_an_unknown_command,
    pipelined_commands_behind_the_header_survive,
);
