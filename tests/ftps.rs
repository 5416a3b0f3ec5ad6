//! FTPS (RFC 4217): AUTH TLS/SSL, PBSZ, PROT, CCC, implicit FTPS, required TLS, data
//! connections bound to the control connection's TLS session, STARTTLS command injection and
//! uploads cut without close_notify. Driven with suppaftp (rustls) and a raw rustls client
//! (curl, lftp and Python's ftplib: ftps_clients.rs). Certificates are made at test time with
//! the `openssl` CLI (tests skip without it).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::*;
use common::*;
use ftpdlib::handlers::{Callbacks, TlsConfig};
use ftpdlib::servers::Executor;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use suppaftp::{RustlsConnector, RustlsFtpStream};

// ---------------------------------------------------------------- suppaftp helpers

fn suppaftp_secure(s: &Server, cfg: Arc<ClientConfig>) -> RustlsFtpStream {
    let c = RustlsFtpStream::connect_timeout(s.addr, IO_TIMEOUT).expect("connect");
    c.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut c = c
        .into_secure(RustlsConnector::from(cfg), "localhost")
        .expect("AUTH TLS");
    c.login(USER, PASS).expect("login");
    c.transfer_type(FileType::Binary).expect("TYPE I");
    c
}

/// RETR `name` `times` times, each over a new protected data connection, each giving `want`.
fn retr_each(ftp: &mut RustlsFtpStream, name: &str, want: &[u8], times: usize) {
    for i in 0..times {
        let got = ftp.retr_as_buffer(name).expect("RETR").into_inner();
        assert_eq!(got, want, "RETR #{i}");
    }
}

/// A download of `dl.bin` (holding `data`) and an upload of it as `up`.
fn round_trip(ftp: &mut RustlsFtpStream, s: &Server, data: &[u8], up: &str) {
    retr_each(ftp, "dl.bin", data, 1);
    ftp.put_file(up, &mut &data[..]).expect("STOR");
    assert_eq!(s.read(up), data);
}

// ---------------------------------------------------------------- suppaftp

fn suppaftp_explicit_passive_and_active(ex: Executor) {
    let c = need!(certs());
    let s = tls_builder(&c, |_| {}).executor(ex).start();
    let data = pattern(300_000);
    s.write("dl.bin", &data);
    let mut ftp = suppaftp_secure(&s, client_config(false));
    retr_each(&mut ftp, "dl.bin", &data, 2);
    round_trip(&mut ftp, &s, &data, "up.bin");
    let names = ftp.nlst(None).unwrap();
    assert!(names.iter().any(|n| n == "up.bin"), "{names:?}");
    let mut ftp = ftp.active_mode(IO_TIMEOUT);
    round_trip(&mut ftp, &s, &data, "up2.bin");
    assert!(ftp
        .list(None)
        .unwrap()
        .iter()
        .any(|l| l.ends_with("up2.bin")));
    ftp.quit().unwrap();
}

/// Every TLS 1.3 data connection gives the client a new ticket (rustls clients, like
/// OpenSSL ones, use each ticket once), so a session goes past the 8 tickets the control
/// connection gave, with the reuse check on.
#[test]
fn suppaftp_tls13_goes_past_eight_transfers() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"x");
    let mut ftp = suppaftp_secure(&s, client_config(false));
    retr_each(&mut ftp, "f.txt", b"x", 12);
    for _ in 0..10 {
        assert!(ftp.nlst(None).unwrap().iter().any(|n| n == "f.txt"));
    }
    ftp.put_file("up.txt", &mut &b"after twenty-two"[..])
        .unwrap();
    retr_each(&mut ftp, "up.txt", b"after twenty-two", 2);
    ftp.quit().unwrap();
}

#[test]
fn suppaftp_explicit_tls12() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"tls one-two");
    // TLS 1.2 session IDs: resumable any number of times.
    let mut ftp = suppaftp_secure(&s, client_config(true));
    retr_each(&mut ftp, "f.txt", b"tls one-two", 10);
    ftp.quit().unwrap();
}

fn suppaftp_implicit(ex: Executor) {
    let c = need!(certs());
    let s = tls_builder(&c, |_| {})
        .executor(ex)
        .implicit_tls(true)
        .start();
    let data = pattern(100_000);
    s.write("dl.bin", &data);
    let mut ftp = RustlsFtpStream::connect_secure_implicit(
        s.addr,
        RustlsConnector::from(client_config(false)),
        "localhost",
    )
    .expect("implicit connect");
    ftp.login(USER, PASS).unwrap();
    ftp.transfer_type(FileType::Binary).unwrap();
    // Implicit FTPS protects data connections from the start (no PBSZ/PROT needed).
    round_trip(&mut ftp, &s, &data, "up.bin");
    ftp.quit().unwrap();
}

#[test]
fn implicit_listener_speaks_tls_first() {
    let c = need!(certs());
    let s = tls_builder(&c, |_| {}).implicit_tls(true).start();
    // A plaintext client gets no 220: the server waits for a ClientHello.
    let mut plain = TcpStream::connect(s.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 3];
    assert!(
        !matches!(plain.read(&mut b), Ok(n) if n > 0 && &b[..n] == b"220"),
        "plaintext greeting on an implicit listener"
    );
    let cfg = client_config(false);
    let mut t = tls_connect(&cfg, TcpStream::connect(s.addr).unwrap());
    assert_eq!(read_reply(&mut t).0, 220);
    t.write_all(b"AUTH TLS\r\n").unwrap();
    assert_eq!(read_reply(&mut t).0, 503, "already TLS");
}

#[test]
fn implicit_needs_tls_config() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let h =
        ftpdlib::handlers::FtpHandler::new(Arc::new(ftpdlib::authorizers::DummyAuthorizer::new()));
    let server = ftpdlib::servers::FtpServer::from_listener(l, h).unwrap();
    assert!(server.implicit_tls(true).is_err());
}

// Under every in-process concurrency model.
models!(suppaftp_explicit_passive_and_active, suppaftp_implicit);

// ---------------------------------------------------------------- session binding

/// RETR over a PROT P data connection whose TLS uses `data_cfg`: (final code, bytes).
fn retr_with(ctl: &mut TlsCtl, data_cfg: &Arc<ClientConfig>, name: &str) -> (u32, Vec<u8>) {
    let sock = ctl.data_for(&format!("RETR {name}"));
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name_ = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(data_cfg.clone(), name_).unwrap();
    let mut sock = sock;
    let mut got = Vec::new();
    let mut ok = true;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        let mut t = rustls::StreamOwned::new(conn, sock);
        // A clean end is close_notify: read_to_end fails on a TCP close without it.
        let _ = t.read_to_end(&mut got);
    }
    (read_reply(&mut ctl.s).0, got)
}

#[test]
fn data_connection_must_resume_the_control_session() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"secret");
    for tls12 in [false, true] {
        let mut ctl = protected(&s, tls12);
        let own = ctl.cfg.clone();
        // Same client, same session cache: resumed, served, ended with close_notify.
        assert_eq!(
            retr_with(&mut ctl, &own, "f.txt"),
            (226, b"secret".to_vec())
        );
        assert_eq!(
            retr_with(&mut ctl, &own, "f.txt"),
            (226, b"secret".to_vec())
        );
        // A connection with no session to resume (as a third party would have): refused.
        let stranger = client_config(tls12);
        let (code, got) = retr_with(&mut ctl, &stranger, "f.txt");
        assert_eq!(code, 522, "tls12={tls12}");
        assert!(got.is_empty());
        // The session stays usable.
        assert_eq!(
            retr_with(&mut ctl, &own, "f.txt"),
            (226, b"secret".to_vec())
        );
    }
    // Another control connection's session does not open this one's data connections.
    let a = protected(&s, false);
    let mut b = protected(&s, false);
    let a_cfg = a.cfg.clone();
    assert_eq!(retr_with(&mut b, &a_cfg, "f.txt").0, 522);
}

#[test]
fn reuse_check_can_be_turned_off() {
    let c = need!(certs());
    let s = tls_builder(&c, |t| t.require_session_reuse = false).start();
    s.write("f.txt", b"old client");
    let mut ctl = protected(&s, false);
    let stranger = client_config(false);
    assert_eq!(
        retr_with(&mut ctl, &stranger, "f.txt"),
        (226, b"old client".to_vec())
    );
}

// ---------------------------------------------------------------- protocol rules

#[test]
fn starttls_injection_is_discarded() {
    let c = need!(certs());
    let s = tls_server(&c);
    let mut r = s.raw();
    // One write: the USER behind AUTH arrives in the same segment, before the handshake.
    r.send_bytes(format!("AUTH TLS\r\nUSER {USER}\r\n").as_bytes());
    assert_eq!(r.reply().0, 234);
    let cfg = client_config(false);
    let mut t = tls_connect(&cfg, r.stream.try_clone().unwrap());
    t.write_all(format!("PASS {PASS}\r\n").as_bytes()).unwrap();
    let (code, text) = read_reply(&mut t);
    assert_eq!(code, 503, "the plaintext USER must not have run: {text}");
    t.write_all(format!("USER {USER}\r\nPASS {PASS}\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_reply(&mut t).0, 331);
    assert_eq!(read_reply(&mut t).0, 230);
}

#[test]
fn tls_commands_follow_rfc4217() {
    let c = need!(certs());
    let s = tls_server(&c);
    let mut r = s.raw();
    let (code, feat) = r.cmd("FEAT");
    assert_eq!(code, 211);
    for f in [" AUTH TLS\r\n", " AUTH SSL\r\n", " PBSZ\r\n", " PROT\r\n"] {
        assert!(feat.contains(f), "{f:?} missing in {feat}");
    }
    assert_eq!(r.cmd("PBSZ 0").0, 503, "PBSZ before AUTH");
    assert_eq!(r.cmd("PROT P").0, 503, "PROT before AUTH");
    assert_eq!(r.cmd("CCC").0, 533, "CCC on a clear connection");
    assert_eq!(r.cmd("AUTH KERBEROS_V4").0, 504);
    assert_eq!(r.cmd("AUTH").0, 501);

    let mut t = auth_tls(&s, false);
    assert_eq!(t.cmd("AUTH TLS").0, 503, "already TLS");
    let (code, text) = t.cmd("PROT P");
    assert_eq!(code, 503, "PROT before PBSZ (RFC 4217 §9): {text}");
    assert_eq!(t.cmd("PBSZ 0").0, 200);
    assert_eq!(t.cmd("PROT S").0, 536);
    assert_eq!(t.cmd("PROT E").0, 536);
    assert_eq!(t.cmd("PROT X").0, 504);
    assert_eq!(t.cmd("PROT C").0, 200);
    assert_eq!(t.cmd("PROT P").0, 200);
    // AUTH SSL is a synonym.
    let mut r = s.raw();
    assert_eq!(r.cmd("AUTH SSL").0, 234);
}

#[test]
fn without_tls_config_the_commands_do_not_exist() {
    let s = start(ftpdlib::servers::Executor::Pool);
    let mut r = s.raw();
    let (_, feat) = r.cmd("FEAT");
    assert!(!feat.contains("AUTH") && !feat.contains("PROT"), "{feat}");
    for cmd in ["AUTH TLS", "PBSZ 0", "PROT P", "CCC"] {
        let (code, text) = r.cmd(cmd);
        assert_eq!(code, 500, "{cmd}: {text}");
        assert!(text.contains("not understood"), "{text}");
    }
    let (_, help) = r.cmd("HELP");
    assert!(!help.contains("AUTH"), "{help}");
    assert_eq!(r.cmd("HELP AUTH").0, 501);
}

#[test]
fn required_tls_refusals() {
    let c = need!(certs());
    let s = tls_builder(&c, |t| {
        t.tls_control_required = true;
        t.tls_data_required = true;
    })
    .start();
    let mut r = s.raw();
    let (code, text) = r.cmd(&format!("USER {USER}"));
    assert_eq!(
        (code, text.trim_end()),
        (550, "550 SSL/TLS required on the control channel.")
    );
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 550);

    let mut t = auth_tls(&s, false);
    t.login();
    for cmd in [
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,200,10",
        "EPRT |1|127.0.0.1|51210|",
    ] {
        let (code, text) = t.cmd(cmd);
        // pyftpdlib's reply.
        assert_eq!(
            (code, text.trim_end()),
            (550, "550 SSL/TLS required on the data channel."),
            "{cmd}"
        );
    }
    assert_eq!(t.cmd("PBSZ 0").0, 200);
    assert_eq!(t.cmd("PROT C").0, 534, "clear data refused by policy");
    assert_eq!(t.cmd("PROT P").0, 200);
    assert_eq!(t.cmd("EPSV").0, 229);
    assert_eq!(
        t.cmd("CCC").0,
        534,
        "CCC refused when control TLS is required"
    );
}

#[test]
fn ccc_returns_the_control_connection_to_plaintext() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("f.txt", b"after ccc");
    let mut t = protected(&s, false);
    assert_eq!(t.cmd("CCC").0, 200);
    // The client answers with its own close_notify, then speaks plaintext on the same socket.
    let TlsCtl {
        s: mut tls, cfg, ..
    } = t;
    // The server's close_notify follows the 200; read it before going plaintext.
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest)
        .expect("close_notify from the server");
    assert!(rest.is_empty(), "{rest:?}");
    tls.conn.send_close_notify();
    tls.conn.write_tls(&mut tls.sock).unwrap();
    let mut plain = tls.sock.try_clone().unwrap();
    plain.write_all(b"NOOP\r\n").unwrap();
    assert_eq!(read_reply(&mut plain).0, 200);
    // PROT P still holds for data connections, which still resume the session.
    let mut ctl = PlainCtl(plain);
    let (code, got) = ctl.retr(&cfg, s.addr, "f.txt");
    assert_eq!((code, got), (226, b"after ccc".to_vec()));
}

/// A plaintext control connection after CCC.
struct PlainCtl(TcpStream);

impl PlainCtl {
    fn cmd(&mut self, line: &str) -> (u32, String) {
        self.0.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        read_reply(&mut self.0)
    }
    fn retr(&mut self, cfg: &Arc<ClientConfig>, addr: SocketAddr, name: &str) -> (u32, Vec<u8>) {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        let sock = TcpStream::connect((addr.ip(), epsv_port(&text))).unwrap();
        self.0
            .write_all(format!("RETR {name}\r\n").as_bytes())
            .unwrap();
        assert!(matches!(read_reply(&mut self.0).0, 125 | 150));
        let mut t = tls_connect(cfg, sock);
        let mut got = Vec::new();
        let _ = t.read_to_end(&mut got);
        (read_reply(&mut self.0).0, got)
    }
}

// ---------------------------------------------------------------- truncated uploads

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Callbacks for Events {
    fn on_file_received(&mut self, _path: &Path) {
        self.0.lock().unwrap().push("received".into());
    }
    fn on_incomplete_file_received(&mut self, _path: &Path) {
        self.0.lock().unwrap().push("incomplete".into());
    }
}

#[test]
fn upload_without_close_notify_is_incomplete() {
    let c = need!(certs());
    let events = Events::default();
    let ev = events.clone();
    let (cert, key) = (c.cert.clone(), c.key.clone());
    let s = builder()
        .handler(move |h| {
            h.tls = Some(TlsConfig::from_pem_files(&cert, Some(&key)).unwrap());
            h.set_callbacks(move || ev.clone());
        })
        .start();
    let mut t = protected(&s, false);
    let cfg = t.cfg.clone();
    // A complete upload (close_notify sent) is a 226. The client never reads the data
    // connection: had the server sent TLS 1.3 tickets there, closing the socket with them
    // unread would reset it and the kernel could drop the end of the upload.
    let sock = t.data_for("STOR whole.bin");
    let mut d = tls_connect(&cfg, sock);
    // Nothing arrives after the handshake: no NewSessionTicket on data connections.
    d.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut peek = [0u8; 1];
    assert!(
        d.sock.peek(&mut peek).is_err(),
        "the server sent bytes after the handshake"
    );
    d.sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    d.write_all(&pattern(2_000_000)).unwrap();
    d.conn.send_close_notify();
    d.flush().unwrap();
    drop(d);
    assert_eq!(read_reply(&mut t.s).0, 226);
    assert_eq!(s.read("whole.bin"), pattern(2_000_000));

    // Cut: TCP closed without close_notify (a truncation attack or a crashed client).
    let sock = t.data_for("STOR cut.bin");
    let mut d = tls_connect(&cfg, sock);
    d.write_all(&pattern(50_000)).unwrap();
    d.flush().unwrap();
    d.sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(d);
    let (code, text) = read_reply(&mut t.s);
    assert_eq!(code, 426, "{text}");
    assert_eq!(t.cmd("NOOP").0, 200, "no 226 was queued behind the 426");
    assert_eq!(
        *events.0.lock().unwrap(),
        vec!["received".to_string(), "incomplete".to_string()]
    );
}

// ---------------------------------------------------------------- configuration errors

#[test]
fn bad_certificates_are_startup_errors() {
    let c = need!(certs());
    let missing = TlsConfig::from_pem_files(Path::new("/nonexistent/cert.pem"), None);
    assert!(matches!(missing, Err(ftpdlib::Error::Tls(m)) if m.contains("/nonexistent")));
    // A certificate file without a key, and no keyfile.
    assert!(matches!(
        TlsConfig::from_pem_files(&c.cert, None),
        Err(ftpdlib::Error::Tls(_))
    ));
    // Certificate and key in one file, as pyftpdlib allows.
    let both = c._dir.path().join("both.pem");
    let mut pem = std::fs::read(&c.cert).unwrap();
    pem.extend(std::fs::read(&c.key).unwrap());
    std::fs::write(&both, pem).unwrap();
    assert!(TlsConfig::from_pem_files(&both, None).is_ok());
    // A key that does not belong to the certificate.
    let other = certs().unwrap();
    assert!(matches!(
        TlsConfig::from_pem_files(&c.cert, Some(&other.key)),
        Err(ftpdlib::Error::Tls(_))
    ));
    // The command line exits 2 with a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
        .args(["-i", "127.0.0.1", "-p", "0", "--tls", "--certfile"])
        .arg("/nonexistent/cert.pem")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cert.pem"));
}

// ---------------------------------------------------------------- the transfer loop over TLS

#[test]
fn abor_during_a_tls_download() {
    let c = need!(certs());
    let s = tls_server(&c);
    s.write("big.bin", &pattern(16 << 20));
    let mut t = protected(&s, false);
    let cfg = t.cfg.clone();
    let sock = t.data_for("RETR big.bin");
    // Handshake, then read nothing: the server blocks on a full socket and must still hear
    // ABOR on the (encrypted) control connection.
    let d = tls_connect(&cfg, sock);
    t.s.write_all(b"ABOR\r\n").unwrap();
    let (code, text) = read_reply(&mut t.s);
    assert_eq!(code, 426, "{text}");
    assert_eq!(read_reply(&mut t.s).0, 226);
    drop(d);
    assert_eq!(t.cmd("NOOP").0, 200);
}

#[test]
fn throttled_transfers_over_tls() {
    let c = need!(certs());
    let (cert, key) = (c.cert.clone(), c.key.clone());
    let s = builder()
        .handler(move |h| {
            h.tls = Some(TlsConfig::from_pem_files(&cert, Some(&key)).unwrap());
            h.read_limit = 256 * 1024;
            h.write_limit = 256 * 1024;
        })
        .start();
    let data = pattern(400_000);
    s.write("dl.bin", &data);
    let mut ftp = suppaftp_secure(&s, client_config(false));
    round_trip(&mut ftp, &s, &data, "up.bin");
}

#[test]
fn partial_control_record_does_not_stall_a_transfer() {
    let c = need!(certs());
    let s = tls_server(&c);
    let data = pattern(16 << 20);
    s.write("big.bin", &data);
    let mut t = protected(&s, false);
    let cfg = t.cfg.clone();
    let sock = t.data_for("RETR big.bin");
    let mut d = tls_connect(&cfg, sock);
    // Half of an encrypted "NOOP" record on the control connection while the server waits
    // on a full data socket: it must go back to the transfer, not wait for the other half.
    t.s.conn.writer().write_all(b"NOOP\r\n").unwrap();
    let mut record = Vec::new();
    t.s.conn.write_tls(&mut record).unwrap();
    let half = record.len() / 2;
    t.s.sock.write_all(&record[..half]).unwrap();
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("download completes");
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    t.s.sock.write_all(&record[half..]).unwrap();
    assert_eq!(read_reply(&mut t.s).0, 226);
    assert_eq!(read_reply(&mut t.s).0, 200, "the NOOP, once whole");
}

// ---------------------------------------------------------------- ALPN (ALPACA defence)

/// A client configuration that offers these ALPN protocols (RFC 7301).
fn alpn_config(protocols: &[&[u8]]) -> Arc<ClientConfig> {
    let mut cfg = (*client_config(false)).clone();
    cfg.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// Runs a client handshake to its end: the negotiated ALPN protocol, or the error.
fn try_handshake(
    cfg: &Arc<ClientConfig>,
    mut sock: TcpStream,
) -> Result<(Option<Vec<u8>>, TlsSock), rustls::Error> {
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(cfg.clone(), name).expect("client connection");
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(
                match e.into_inner().map(|i| i.downcast::<rustls::Error>()) {
                    Some(Ok(tls)) => *tls,
                    _ => rustls::Error::General("I/O error during the handshake".into()),
                },
            );
        }
    }
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok((alpn, rustls::StreamOwned::new(conn, sock)))
}

fn is_no_application_protocol(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    )
}

/// ALPACA (RFC 7301 §3.2, vsftpd 3.0.4): a client that offers ALPN without `ftp` (a browser
/// offering `http/1.1`) fails the handshake; `ftp` is chosen when offered; no ALPN is fine.
#[test]
fn alpn_without_ftp_fails_the_explicit_handshake() {
    let c = need!(certs());
    let s = tls_server(&c);
    for offered in [&[&b"http/1.1"[..]][..], &[b"h2", b"http/1.1"]] {
        let mut r = s.raw();
        assert_eq!(r.cmd("AUTH TLS").0, 234);
        let err = try_handshake(&alpn_config(offered), r.stream.try_clone().unwrap())
            .expect_err("handshake refused");
        assert!(is_no_application_protocol(&err), "{err:?}");
        assert!(r.is_closed());
    }
    for offered in [&[&b"ftp"[..]][..], &[b"http/1.1", b"ftp"]] {
        let mut r = s.raw();
        assert_eq!(r.cmd("AUTH TLS").0, 234);
        let (alpn, mut t) = try_handshake(&alpn_config(offered), r.stream.try_clone().unwrap())
            .expect("ftp is accepted");
        assert_eq!(alpn.as_deref(), Some(&b"ftp"[..]));
        t.write_all(format!("USER {USER}\r\n").as_bytes()).unwrap();
        assert_eq!(read_reply(&mut t).0, 331);
    }
}

#[test]
fn alpn_without_ftp_fails_the_implicit_handshake() {
    let c = need!(certs());
    let s = tls_builder(&c, |_| {}).implicit_tls(true).start();
    let err = try_handshake(
        &alpn_config(&[b"http/1.1"]),
        TcpStream::connect(s.addr).unwrap(),
    )
    .expect_err("handshake refused");
    assert!(is_no_application_protocol(&err), "{err:?}");
    let (alpn, mut t) = try_handshake(&alpn_config(&[b"ftp"]), TcpStream::connect(s.addr).unwrap())
        .expect("ftp is accepted");
    assert_eq!(alpn.as_deref(), Some(&b"ftp"[..]));
    assert_eq!(read_reply(&mut t).0, 220);
    // No ALPN at all: accepted, nothing negotiated.
    let (alpn, mut t) = try_handshake(&client_config(false), TcpStream::connect(s.addr).unwrap())
        .expect("no ALPN is accepted");
    assert_eq!(alpn, None);
    assert_eq!(read_reply(&mut t).0, 220);
}

/// The same rule on PROT P data connections.
#[test]
fn alpn_without_ftp_fails_the_data_handshake() {
    let c = need!(certs());
    let s = tls_builder(&c, |t| t.require_session_reuse = false).start();
    s.write("f.txt", b"data");
    let mut t = protected(&s, false);
    let sock = t.data_for("RETR f.txt");
    let err = try_handshake(&alpn_config(&[b"http/1.1"]), sock).expect_err("handshake refused");
    assert!(is_no_application_protocol(&err), "{err:?}");
    assert_eq!(read_reply(&mut t.s).0, 522);
    assert_eq!(t.cmd("NOOP").0, 200);
}

/// A TLS handshake dribbled one byte at a time is bounded by the login timeout (implicit
/// FTPS: the session's clock starts at connect).
#[test]
fn dribbled_handshake_is_closed() {
    let c = need!(certs());
    let (cert, key) = (c.cert.clone(), c.key.clone());
    let s = builder()
        .handler(move |h| {
            h.tls = Some(TlsConfig::from_pem_files(&cert, Some(&key)).expect("certificate"));
            h.login_timeout = Some(Duration::from_secs(2));
        })
        .implicit_tls(true)
        .start();
    let mut sock = TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // A record header announcing a 16 KiB ClientHello, then one byte at a time.
    let _ = sock.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]);
    // A liveness limit far beyond the 2 s timer (without it the dribble never ends).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut b = [0u8; 64];
    loop {
        let _ = sock.write_all(&[0x01]);
        match sock.read(&mut b) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a dribbled handshake outlived the login timeout"
        );
    }
}

/// Certificates loaded from PEM files prefer AES-128-GCM, whatever the client's order
/// (rustls and OpenSSL clients list AES-256-GCM first): the cheaper cipher for bulk
/// transfers. A client without AES-128-GCM still gets what it offers.
#[test]
fn aes_128_gcm_is_preferred() {
    use rustls::CipherSuite::*;
    let c = need!(certs());
    let s = tls_server(&c);
    for (tls12, want) in [
        (false, TLS13_AES_128_GCM_SHA256),
        (true, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ] {
        let t = auth_tls(&s, tls12);
        let got = t.s.conn.negotiated_cipher_suite().map(|s| s.suite());
        assert_eq!(got, Some(want), "TLS 1.2 only: {tls12}");
    }
    // A client offering only ChaCha20-Poly1305.
    let mut provider = (**ClientConfig::builder().crypto_provider()).clone();
    provider
        .cipher_suites
        .retain(|s| s.suite() == TLS13_CHACHA20_POLY1305_SHA256);
    let provider = Arc::new(provider);
    let cfg = Arc::new(
        ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    );
    let mut r = s.raw();
    assert_eq!(r.cmd("AUTH TLS").0, 234);
    let t = tls_connect(&cfg, r.stream.try_clone().unwrap());
    let got = t.conn.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(got, Some(TLS13_CHACHA20_POLY1305_SHA256));
}
