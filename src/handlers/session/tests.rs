//! The session state machine without a control socket: each test runs a session over the
//! in-memory control connection (memory.rs) and reads its replies one by one. Data
//! connections are real loopback sockets (PASV binds 127.0.0.1): an in-memory data path
//! would need a second transport through the transfer loop's sendfile(2) and poll(2) paths
//! for no gain in what these tests show. Transfers that must still be running when a
//! command arrives send more than the socket buffers hold while the test does not read, so
//! no test depends on timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::memory::{self, MemoryClient};
use super::Session;
#[cfg(feature = "tls")]
use super::Transport;
use crate::authorizers::DummyAuthorizer;
#[cfg(feature = "tls")]
use crate::handlers::TlsConfig;
use crate::handlers::{Busy, Command, FtpHandler, SessionContext};

const WAIT: Duration = Duration::from_secs(20);

/// Bigger than the data sockets' buffers on both ends: a download of it cannot finish
/// while the client does not read.
const BIG: usize = 8 << 20;

/// A session running in a thread over an in-memory control connection.
struct Live {
    client: MemoryClient,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

fn handler(root: &Path, f: impl FnOnce(&mut FtpHandler)) -> Arc<FtpHandler> {
    let mut auth = DummyAuthorizer::new();
    auth.add_user("user", "12345", root, "elradfmwMT")
        .expect("add_user");
    let mut h = FtpHandler::new(Arc::new(auth));
    h.auth_failed_timeout = Duration::ZERO;
    h.timeout = Some(Duration::from_secs(60));
    h.data_timeout = Some(Duration::from_secs(60));
    h.passive_accept_timeout = Duration::from_secs(20);
    f(&mut h);
    Arc::new(h)
}

fn live(f: impl FnOnce(&mut FtpHandler)) -> Live {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonicalize");
    let h = handler(&root, f);
    let (control, client) = memory::pair().expect("pair");
    let addrs = memory::loopback_addresses();
    let thread = std::thread::spawn(move || {
        Session::run_memory(control, h, SessionContext::default(), addrs)
    });
    let mut l = Live {
        client,
        thread: Some(thread),
        root,
        _dir: dir,
    };
    assert!(l.reply().starts_with("220 "));
    l
}

impl Live {
    fn send(&mut self, line: &str) {
        self.client
            .send(format!("{line}\r\n").as_bytes())
            .expect("send");
    }

    fn reply(&mut self) -> String {
        self.client.reply(WAIT).expect("a reply")
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.reply()
    }

    fn code(&mut self, line: &str) -> u16 {
        code(&self.cmd(line))
    }

    fn login(&mut self) {
        assert_eq!(self.code("USER user"), 331);
        assert_eq!(self.code("PASS 12345"), 230);
        assert_eq!(self.code("TYPE I"), 200);
    }

    /// PASV, and the address it announced.
    fn pasv(&mut self) -> SocketAddr {
        pasv_addr(&self.cmd("PASV"))
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.root.join(name), bytes).expect("write");
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.root.join(name)).expect("read")
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.client.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn code(reply: &str) -> u16 {
    reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn pasv_addr(reply: &str) -> SocketAddr {
    assert!(reply.starts_with("227 "), "{reply}");
    let inner = &reply[reply.find('(').expect("(") + 1..reply.find(')').expect(")")];
    let n: Vec<u16> = inner
        .split(',')
        .map(|x| x.parse().expect("number"))
        .collect();
    SocketAddr::from(([127, 0, 0, 1], n[4] * 256 + n[5]))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the passive port");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read the data connection");
    v
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn rest_then_stor_writes_from_the_offset_and_appe_is_refused() {
    let mut l = live(|_| {});
    l.write("f", b"0123456789");
    l.login();
    assert_eq!(l.code("REST 4"), 350);
    assert_eq!(
        l.cmd("APPE f").trim_end(),
        "450 Can't APPE while REST request is pending."
    );
    // The refusal used the offset up: STOR now starts afresh... after another REST.
    assert_eq!(l.code("REST 4"), 350);
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("STOR f")), 125);
    (&data).write_all(b"AB").expect("upload");
    drop(data);
    assert_eq!(l.reply().trim_end(), "226 Transfer complete.");
    assert_eq!(l.read("f"), b"0123AB6789");
    // Past the end: 554, and the offset is gone.
    assert_eq!(l.code("REST 99"), 350);
    assert_eq!(
        l.cmd("STOR f").trim_end(),
        "554 REST position (99) > file size (10)."
    );
    assert_eq!(l.code("STOU"), 150, "no REST pending any more");
}

#[test]
fn rest_then_retr_starts_at_the_offset() {
    let mut l = live(|_| {});
    l.write("f", b"0123456789");
    l.login();
    assert_eq!(l.code("REST 6"), 350);
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("RETR f")), 125);
    assert_eq!(read_all(data), b"6789");
    assert_eq!(code(&l.reply()), 226);
    // The offset was used up.
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("RETR f")), 125);
    assert_eq!(read_all(data), b"0123456789");
    assert_eq!(code(&l.reply()), 226);
}

#[test]
fn rnfr_then_anything_else() {
    let mut l = live(|_| {});
    l.write("a", b"x");
    l.login();
    assert_eq!(l.code("RNTO b"), 503, "RNTO needs RNFR first");
    assert_eq!(l.code("RNFR a"), 350);
    // Other commands in between leave the pending rename alone, as pyftpdlib does…
    assert_eq!(l.code("NOOP"), 200);
    assert_eq!(l.code("PWD"), 257);
    assert_eq!(l.code("RNTO b"), 250);
    assert!(l.root.join("b").exists() && !l.root.join("a").exists());
    assert_eq!(l.code("RNTO c"), 503, "one RNTO per RNFR");
    // …but a logout forgets it.
    assert_eq!(l.code("RNFR b"), 350);
    assert_eq!(l.code("REIN"), 230);
    l.login();
    assert_eq!(l.code("RNTO c"), 503);
}

#[test]
fn pasv_replaced_by_pasv() {
    let mut l = live(|_| {});
    l.write("f", b"hello");
    l.login();
    let first = l.pasv();
    let mut second = l.pasv();
    // bind(0) may hand out the port just closed again (seen once in CI); the kernel picks
    // at random, so a further PASV gets another.
    for _ in 0..8 {
        if second != first {
            break;
        }
        second = l.pasv();
    }
    assert_ne!(first, second);
    assert!(
        TcpStream::connect(first).is_err(),
        "the first listener is closed"
    );
    let data = connect(second);
    assert_eq!(code(&l.cmd("RETR f")), 125);
    assert_eq!(read_all(data), b"hello");
    assert_eq!(code(&l.reply()), 226);
}

#[test]
fn abor_without_a_transfer() {
    let mut l = live(|_| {});
    l.login();
    assert_eq!(l.cmd("ABOR").trim_end(), "225 No transfer to abort.");
    let addr = l.pasv();
    assert_eq!(
        l.cmd("ABOR").trim_end(),
        "225 ABOR command successful; data channel closed."
    );
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    // A transfer command waiting for its PORT/PASV after its 150 is dropped…
    l.write("f", b"x");
    assert_eq!(code(&l.cmd("RETR f")), 150);
    assert_eq!(l.cmd("ABOR").trim_end(), "225 No transfer to abort.");
    // …and so is one waiting for its passive client.
    l.pasv();
    assert_eq!(code(&l.cmd("RETR f")), 150);
    assert_eq!(
        l.cmd("ABOR").trim_end(),
        "225 ABOR command successful; data channel closed."
    );
    assert_eq!(l.code("NOOP"), 200);
}

#[test]
fn abor_with_a_transfer() {
    let mut l = live(|_| {});
    l.write("big", &pattern(BIG));
    l.login();
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("RETR big")), 125);
    // The client reads nothing: the download cannot end before the ABOR.
    assert_eq!(l.cmd("ABOR").trim_end(), "426 Transfer aborted via ABOR.");
    assert_eq!(l.reply().trim_end(), "226 ABOR command successful.");
    drop(data);
    assert_eq!(l.code("NOOP"), 200);
}

#[test]
fn user_pass_rein_during_a_transfer() {
    let mut l = live(|_| {});
    let body = pattern(BIG);
    l.write("big", &body);
    l.login();
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("RETR big")), 125);
    // Answered at once while the download runs (the client reads nothing yet).
    assert_eq!(l.cmd("REIN").trim_end(), "230 Ready for new user.");
    assert_eq!(l.code("PWD"), 530, "logged out");
    assert_eq!(l.code("USER user"), 331);
    assert_eq!(l.code("PASS 12345"), 230);
    assert_eq!(l.code("TYPE A"), 200);
    // The transfer went on under the account it started with, in binary.
    assert!(read_all(data) == body, "download corrupted");
    assert_eq!(l.reply().trim_end(), "226 Transfer complete.");
}

#[test]
fn a_listing_outlives_the_account_that_started_it() {
    let mut l = live(|_| {});
    // About 1.2 MB of names: more than the data sockets hold while the client waits.
    let names: Vec<String> = (0..6000).map(|i| format!("{i:0>200}")).collect();
    for n in &names {
        l.write(n, b"");
    }
    l.login();
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("NLST")), 125);
    assert_eq!(l.cmd("REIN").trim_end(), "230 Ready for new user.");
    assert_eq!(l.code("USER nobody"), 331);
    let listing = String::from_utf8(read_all(data)).expect("utf-8");
    assert_eq!(listing.lines().count(), names.len(), "every name listed");
    assert_eq!(l.reply().trim_end(), "226 Transfer complete.");
}

#[test]
fn commands_that_need_the_channel_wait_for_the_transfer() {
    let mut l = live(|h| {
        h.add_command(
            Command::new("SITE LATER", "Syntax: SITE LATER.", |s, _| {
                s.reply(200, "Later.")
            })
            .busy(Busy::Wait),
        );
    });
    l.write("big", &pattern(BIG));
    l.login();
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("RETR big")), 125);
    // PASV and a row marked Wait are held, and so is every line after them.
    l.send("PASV");
    l.send("SITE LATER");
    l.send("NOOP");
    // STAT is urgent: answered ahead of the held lines, showing the transfer.
    let stat = l.cmd("STAT");
    assert!(stat.contains("Data connection open:"), "{stat}");
    assert_eq!(read_all(data).len(), BIG);
    assert_eq!(code(&l.reply()), 226);
    assert_eq!(code(&l.reply()), 227);
    assert_eq!(l.reply().trim_end(), "200 Later.");
    assert_eq!(code(&l.reply()), 200);
}

#[test]
fn a_second_transfer_replaces_the_one_waiting_for_its_channel() {
    let mut l = live(|_| {});
    l.write("f", b"content");
    l.login();
    assert_eq!(code(&l.cmd("RETR f")), 150);
    assert_eq!(l.cmd("RETR f").trim_end(), "425 Use PORT or PASV first.");
    assert_eq!(code(&l.reply()), 150, "the second one waits now");
    // The channel set up after the 150 carries it; no second 150.
    let data = connect(l.pasv());
    assert_eq!(read_all(data), b"content");
    assert_eq!(code(&l.reply()), 226);
}

#[test]
fn quit_during_a_transfer_closes_after_it() {
    let mut l = live(|_| {});
    l.write("big", &pattern(BIG));
    l.login();
    let data = connect(l.pasv());
    assert_eq!(code(&l.cmd("RETR big")), 125);
    assert_eq!(l.code("QUIT"), 221);
    l.send("NOOP");
    assert_eq!(read_all(data).len(), BIG);
    assert_eq!(code(&l.reply()), 226);
    assert!(l.client.reply(Duration::from_millis(200)).is_none());
    let r = l.thread.take().expect("thread").join().expect("join");
    assert!(r.is_ok(), "the session ended by itself: {r:?}");
}

/// A TLS configuration without a certificate: enough for the FTPS rows to exist; a
/// handshake on an in-memory connection never starts.
#[cfg(feature = "tls")]
fn tls_without_certificate() -> TlsConfig {
    #[derive(Debug)]
    struct NoCert;
    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
    let provider = crate::handlers::tls::crypto_provider().expect("provider");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    TlsConfig::from_server_config(Arc::new(config))
}

#[test]
#[cfg(feature = "tls")]
fn auth_discards_plaintext_pipelined_behind_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = handler(dir.path(), |h| h.tls = Some(tls_without_certificate()));
    let (control, mut client) = memory::pair().expect("pair");
    let mut s = Session::boxed(
        h,
        SessionContext::default(),
        Transport::Memory(control),
        memory::loopback_addresses(),
    );
    // One write: the session reads both lines at once.
    client
        .send(b"AUTH TLS\r\nUSER evil\r\nPASS x\r\n")
        .expect("send");
    let line = match s.ctrl.read_input(None, Default::default()).expect("read") {
        super::Input::Line(l) => l,
        _ => panic!("no line"),
    };
    assert_eq!(line, b"AUTH TLS");
    assert!(s.ctrl.has_line(), "USER was read along with AUTH");
    s.dispatch(&line).expect("dispatch");
    assert_eq!(
        client.reply(WAIT).as_deref(),
        Some("234 AUTH TLS successful.\r\n")
    );
    assert!(
        !s.ctrl.has_buffered_input() && s.ctrl.pending.is_empty(),
        "the plaintext behind AUTH is gone"
    );
    // No TLS over memory: the handshake fails and the session ends, USER never answered.
    assert!(s.ctrl.closing);
    assert!(client.reply(Duration::from_millis(100)).is_none());
}

#[test]
fn tls_rows_exist_only_with_tls() {
    let mut l = live(|_| {});
    assert_eq!(
        l.cmd("AUTH TLS").trim_end(),
        "500 Command \"AUTH\" not understood."
    );
    assert!(!l.cmd("HELP").contains("AUTH"));
    assert!(!l.cmd("FEAT").contains("PBSZ"));
    // Without the `tls` feature no TlsConfig exists: the rows above are all there is.
    #[cfg(feature = "tls")]
    {
        let mut t = live(|h| h.tls = Some(tls_without_certificate()));
        assert!(t.cmd("HELP").contains("AUTH"));
        let feat = t.cmd("FEAT");
        assert!(
            feat.contains(" AUTH TLS\r\n") && feat.contains(" PBSZ\r\n"),
            "{feat}"
        );
        assert_eq!(
            t.code("PBSZ 0"),
            503,
            "PBSZ needs TLS on the control connection"
        );
    }
}

#[test]
fn the_fuzz_entry_runs_a_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = handler(dir.path(), |h| {
        h.passive_accept_timeout = Duration::from_millis(50)
    });
    let out = memory::run_script(
        h,
        b"USER user\r\nPASS 12345\r\nPASV\r\nLIST\r\n\xff\xf4\xff\xf2ABOR\r\nBOGUS\r\nQUIT\r\n",
    );
    let out = String::from_utf8_lossy(&out);
    let codes: Vec<&str> = out.lines().map(|l| &l[..3.min(l.len())]).collect();
    assert_eq!(
        codes,
        ["220", "331", "230", "227", "150", "225", "500", "221"],
        "{out}"
    );
}
