//! FTPS data connections (RFC 4217 §7–§10) as eager clients open them: the TLS handshake of
//! a passive connection done before the transfer command (curl connects and starts it right
//! after EPSV, then sends TYPE and SIZE), the session-reuse check on such a connection, the
//! ways a prepared channel ends (ABOR, PASV again, REIN), a failure reported on the next
//! transfer command, the handshake's own timeout, and active mode's order (the handshake
//! follows the transfer command). Driven with a raw rustls client.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use common::tls::*;
use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// How long the client waits for each step of its handshake before a transfer command: the
/// server must answer at once, never only when RETR/STOR/LIST arrives.
const EAGER: Duration = Duration::from_secs(2);

/// EPSV, a connection to the announced port and a whole TLS handshake with `cfg`, before
/// any transfer command; a NOOP is answered while the handshake is under way (curl's TYPE
/// and SIZE). Every read is bounded by [`EAGER`].
fn early(ctl: &mut TlsCtl, cfg: &Arc<ClientConfig>) -> TlsSock {
    let mut sock = ctl.epsv();
    sock.set_read_timeout(Some(EAGER)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(cfg.clone(), name).expect("client connection");
    // The ClientHello goes out first; the control connection is served meanwhile.
    while conn.wants_write() {
        conn.write_tls(&mut sock).expect("send the ClientHello");
    }
    assert_eq!(ctl.cmd("NOOP").0, 200);
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("the data handshake is answered before any transfer command");
    }
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Sends a transfer command and expects 125 (the connection is already open).
fn start(ctl: &mut TlsCtl, cmd: &str) {
    ctl.s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    let (code, text) = read_reply(&mut ctl.s);
    assert_eq!(code, 125, "{cmd}: {text}");
}

/// Reads a download to its end (close_notify or not).
fn drain(d: &mut TlsSock) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match d.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// True once the server has closed the data connection (EOF or reset, after any TLS
/// records it sent before: a ticket brings no plaintext, so the read goes on).
fn closed(d: &mut TlsSock) -> bool {
    let mut buf = [0u8; 256];
    match d.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn handshake_before_retr() {
    let c = need!(certs());
    let s = tls_server(&c);
    let data = pattern(300_000);
    s.write("dl.bin", &data);
    for tls12 in [false, true] {
        let mut ctl = protected(&s, tls12);
        let cfg = ctl.cfg.clone();
        for _ in 0..3 {
            let mut d = early(&mut ctl, &cfg);
            assert_eq!(ctl.cmd("SIZE dl.bin").0, 213);
            start(&mut ctl, "RETR dl.bin");
            let got = drain(&mut d);
            assert_eq!(read_reply(&mut ctl.s).0, 226, "tls12={tls12}");
            assert!(got == data, "tls12={tls12}: {} bytes", got.len());
        }
    }
}

#[test]
fn handshake_before_stor() {
    let c = need!(certs());
    let s = tls_server(&c);
    let data = pattern(2_000_000);
    let mut ctl = protected(&s, false);
    let cfg = ctl.cfg.clone();
    for name in ["up1.bin", "up2.bin"] {
        let mut d = early(&mut ctl, &cfg);
        start(&mut ctl, &format!("STOR {name}"));
        d.write_all(&data).unwrap();
        d.conn.send_close_notify();
        d.flush().unwrap();
        d.sock.shutdown(std::net::Shutdown::Write).unwrap();
        // What the server sent (a session ticket, its close_notify) is read before closing.
        drain(&mut d);
        assert_eq!(read_reply(&mut ctl.s).0, 226, "{name}");
        assert!(s.read(name) == data, "{name}");
    }
}

/// A client that began its handshake before STOR and ends it only after the 125, then
/// sends the file and closes at once without reading: nothing may be written to it
/// meanwhile (a session ticket reaching its closed socket would make its kernel reset the
/// connection and drop the end of the upload still in flight). The ticket waits for the
/// upload's end.
#[test]
fn upload_after_a_late_handshake_gets_nothing_written() {
    let c = need!(certs());
    let s = tls_server(&c);
    let data = pattern(4_000_000);
    let mut ctl = protected(&s, false);
    let cfg = ctl.cfg.clone();
    for name in ["late1.bin", "late2.bin", "late3.bin"] {
        let mut sock = ctl.epsv();
        let mut conn =
            ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        // ClientHello out; the server's flight in; the client's Finished held back.
        while conn.wants_write() {
            conn.write_tls(&mut sock).expect("ClientHello");
        }
        while conn.is_handshaking() {
            conn.read_tls(&mut sock).expect("server flight");
            conn.process_new_packets().expect("server flight");
        }
        start(&mut ctl, &format!("STOR {name}"));
        // The Finished, then the file, then close_notify, and the socket closed unread.
        for chunk in data.chunks(16 * 1024) {
            conn.writer().write_all(chunk).unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut sock).unwrap();
            }
        }
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        drop(sock);
        let (code, text) = read_reply(&mut ctl.s);
        assert_eq!(code, 226, "{name}: {text}");
        assert!(s.read(name) == data, "{name}");
    }
}

#[test]
fn handshake_before_list() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("listed.txt", b"x");
    let mut ctl = protected(&s, false);
    let cfg = ctl.cfg.clone();
    for cmd in ["LIST", "NLST", "MLSD"] {
        let mut d = early(&mut ctl, &cfg);
        start(&mut ctl, cmd);
        let got = String::from_utf8(drain(&mut d)).unwrap();
        assert_eq!(read_reply(&mut ctl.s).0, 226, "{cmd}");
        assert!(got.contains("listed.txt"), "{cmd}: {got}");
    }
}

/// A connection that does not resume the control connection's TLS session is refused even
/// when its handshake is over before the transfer command: 522 on that command.
#[test]
fn early_handshake_without_resumption_is_refused() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"secret");
    for tls12 in [false, true] {
        let mut ctl = protected(&s, tls12);
        let own = ctl.cfg.clone();
        let mut d = early(&mut ctl, &client_config(tls12));
        assert!(closed(&mut d), "the refused connection is closed");
        assert_eq!(ctl.cmd("TYPE I").0, 200);
        let (code, text) = ctl.cmd("RETR f.txt");
        assert_eq!(code, 522, "tls12={tls12}: {text}");
        // Another control connection's session does not help either.
        let other = protected(&s, tls12);
        let mut d = early(&mut ctl, &other.cfg);
        assert!(closed(&mut d));
        assert_eq!(ctl.cmd("LIST").0, 522, "tls12={tls12}");
        // The session goes on.
        let mut d = early(&mut ctl, &own);
        start(&mut ctl, "RETR f.txt");
        assert_eq!(drain(&mut d), b"secret");
        assert_eq!(read_reply(&mut ctl.s).0, 226);
    }
}

/// A handshake that fails before any transfer command is reported on the next one.
#[test]
fn early_handshake_failure_is_reported_on_the_next_transfer() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"x");
    let mut ctl = protected(&s, false);
    let mut sock = ctl.epsv();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    // The server gives up on it (an alert, then the close) without waiting for RETR.
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert_eq!(
        ctl.cmd("NOOP").0,
        200,
        "nothing is said before a transfer asks"
    );
    let (code, text) = ctl.cmd("RETR f.txt");
    assert_eq!(code, 522, "{text}");
    assert_eq!(ctl.cmd("NOOP").0, 200);
}

/// ABOR, a new PASV/EPSV and REIN each close a channel whose handshake is done.
#[test]
fn a_secured_channel_is_closed_by_abor_pasv_and_rein() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"still served");
    let mut ctl = protected(&s, false);
    let cfg = ctl.cfg.clone();

    let mut d = early(&mut ctl, &cfg);
    let (code, text) = ctl.cmd("ABOR");
    assert_eq!(code, 225, "{text}");
    assert!(text.contains("data channel closed"), "{text}");
    assert!(closed(&mut d), "ABOR");

    let mut d = early(&mut ctl, &cfg);
    let mut next = early(&mut ctl, &cfg);
    assert!(closed(&mut d), "replaced by EPSV");
    start(&mut ctl, "RETR f.txt");
    assert_eq!(drain(&mut next), b"still served");
    assert_eq!(read_reply(&mut ctl.s).0, 226);

    let mut d = early(&mut ctl, &cfg);
    assert_eq!(ctl.cmd("REIN").0, 230);
    assert!(closed(&mut d), "REIN");
    ctl.login();
    ctl.protect();
    let mut d = early(&mut ctl, &cfg);
    start(&mut ctl, "RETR f.txt");
    assert_eq!(drain(&mut d), b"still served");
    assert_eq!(read_reply(&mut ctl.s).0, 226);
}

/// A passive client that connects and never completes its handshake: the transfer command
/// gets 425 once the data handshake timeout is over, and the session goes on.
#[test]
fn stalled_passive_handshake_times_out() {
    let c = need!(certs());
    logs::logged(""); // capture from the start
    let s = tls_builder(&c, |t| t.data_handshake_timeout = Duration::from_secs(1)).start();
    s.write("f.txt", b"x");
    let mut ctl = protected(&s, false);
    // After the transfer command (RFC 4217 order), half a ClientHello.
    let mut sock = ctl.data_for("RETR f.txt");
    sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let (code, text) = read_reply(&mut ctl.s);
    assert_eq!(code, 425, "{text}");
    assert!(text.contains("timed out"), "{text}");
    // Before it: the next transfer command hears of it.
    let _sock = ctl.epsv();
    std::thread::sleep(Duration::from_millis(1500));
    let (code, text) = ctl.cmd("RETR f.txt");
    assert_eq!(code, 425, "{text}");
    assert_eq!(ctl.cmd("NOOP").0, 200);
    let port = ctl.s.sock.local_addr().unwrap().port();
    let lines = logs::logged(&format!("127.0.0.1:{port}-"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("TLS handshake") && l.contains("timed out")),
        "{lines:?}"
    );
}

/// Active mode keeps RFC 4217's order: the server answers the client's handshake only once
/// the transfer command has come; one that never comes ends with 425 after the data
/// handshake timeout (curl 7.87–7.88 never starts it in active mode).
#[test]
fn active_mode_handshake_follows_the_command() {
    let c = need!(certs());
    let s = tls_builder(&c, |t| t.data_handshake_timeout = Duration::from_secs(1)).start();
    s.write("f.txt", b"active");
    let mut ctl = protected(&s, false);
    let cfg = ctl.cfg.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let eprt = format!("EPRT |1|127.0.0.1|{port}|");
    assert_eq!(ctl.cmd(&eprt).0, 200);
    let (mut sock, _) = listener.accept().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(cfg.clone(), name).unwrap();
    while conn.wants_write() {
        conn.write_tls(&mut sock).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(sock.peek(&mut b).is_err(), "answered before RETR");
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    start(&mut ctl, "RETR f.txt");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("handshake after RETR");
    }
    let mut d = rustls::StreamOwned::new(conn, sock);
    assert_eq!(drain(&mut d), b"active");
    assert_eq!(read_reply(&mut ctl.s).0, 226);

    // A client that accepts the connection and never speaks TLS.
    assert_eq!(ctl.cmd(&eprt).0, 200);
    let (_silent, _) = listener.accept().unwrap();
    start(&mut ctl, "RETR f.txt");
    let (code, text) = read_reply(&mut ctl.s);
    assert_eq!(code, 425, "{text}");
    assert_eq!(ctl.cmd("NOOP").0, 200);
}

/// The default data handshake timeout is short, like the passive accept timeout.
#[test]
fn data_handshake_timeout_default() {
    let c = need!(certs());
    let t = ftpdlib::handlers::TlsConfig::from_pem_files(&c.cert, Some(&c.key)).unwrap();
    assert!(t.data_handshake_timeout <= Duration::from_secs(30));
    assert!(t.data_handshake_timeout >= Duration::from_secs(1));
}

/// Handshakes of eager clients under the concurrency models that fork, through the binary.
#[test]
fn handshake_before_retr_in_forked_sessions() {
    let c = need!(certs());
    for model in [
        ftpdlib::servers::Executor::Fork,
        ftpdlib::servers::Executor::PreFork { workers: 2 },
    ] {
        let mut args = model_args(model);
        args.extend(["--tls".into(), "--certfile".into()]);
        args.push(c.cert.display().to_string());
        args.push("--keyfile".into());
        args.push(c.key.display().to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let bin = BinServer::start(&refs);
        std::fs::write(bin.root.join("f.txt"), b"forked").unwrap();
        let mut ctl = protected_at(bin.addr);
        let cfg = ctl.cfg.clone();
        let mut d = early(&mut ctl, &cfg);
        start(&mut ctl, "RETR f.txt");
        assert_eq!(drain(&mut d), b"forked");
        assert_eq!(read_reply(&mut ctl.s).0, 226);
    }
}

/// `--data-handshake-timeout SECS`: a passive client that never completes its data
/// handshake gets 425 once that many seconds are over, and the log names them.
#[test]
fn data_handshake_timeout_flag() {
    let c = need!(certs());
    let args = [
        "--tls",
        "--certfile",
        c.cert.to_str().unwrap(),
        "--keyfile",
        c.key.to_str().unwrap(),
        "--data-handshake-timeout",
        "2",
    ];
    let bin = BinServer::start(&args);
    std::fs::write(bin.root.join("f.txt"), b"x").unwrap();
    let mut ctl = protected_at(bin.addr);
    let mut sock = ctl.data_for("RETR f.txt");
    // Half a ClientHello, never finished.
    sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let (code, text) = read_reply(&mut ctl.s);
    assert_eq!(code, 425, "{text}");
    assert_eq!(ctl.cmd("NOOP").0, 200);
    assert!(
        bin.wait_log("TLS handshake on the data connection timed out after 2 s"),
        "{}",
        bin.log()
    );
}

/// [`protected`] against a server known only by its address.
fn protected_at(addr: std::net::SocketAddr) -> TlsCtl {
    let mut r = raw_at(addr);
    assert_eq!(r.cmd("AUTH TLS").0, 234);
    let cfg = client_config(false);
    let s = tls_connect(&cfg, r.stream.try_clone().unwrap());
    let mut t = TlsCtl { s, cfg, addr };
    t.login();
    t.protect();
    t
}
