//! ABOR, STAT, NOOP and QUIT while a transfer runs (RFC 959 §4.1.3, RFC 1123 §4.1.3.4), and
//! transfers cut short by the client.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::io::{Read, Write};

/// A slow server holding a `size`-byte file `big`, and a session whose RETR of it is under
/// way (125: the passive connection was open already).
fn slow_download(ex: Executor, size: usize) -> (Server, Raw, std::net::TcpStream) {
    let s = slow(ex);
    s.write("big", &pattern(size));
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    (s, r, d)
}

/// A server whose downloads crawl (64 KiB/s), so a transfer is reliably still running.
fn slow(ex: Executor) -> Server {
    builder()
        .executor(ex)
        .handler(|h| {
            h.write_limit = 64 * 1024;
            h.read_limit = 64 * 1024;
        })
        .start()
}

fn abor_during_retr(ex: Executor) {
    let (_s, mut r, mut d) = slow_download(ex, 4 * 1024 * 1024);
    let mut buf = [0u8; 1024];
    d.read_exact(&mut buf).unwrap();
    // Python's ftplib sends ABOR behind Telnet IP + Synch.
    r.send_bytes(b"\xff\xf4\xff\xf2ABOR\r\n");
    let (code, text) = r.reply();
    assert_eq!(
        (code, text.trim_end()),
        (426, "426 Transfer aborted via ABOR.")
    );
    assert_eq!(r.reply(), (226, "226 ABOR command successful.\r\n".into()));
    // Answered mid-transfer: the 4 MiB download (a minute at 64 KiB/s) was cut short.
    let mut rest = Vec::new();
    let _ = d.read_to_end(&mut rest);
    assert!(rest.len() + buf.len() < 4 * 1024 * 1024, "ran to its end");
    assert_eq!(r.cmd("NOOP").0, 200, "session still usable");
    assert_eq!(r.cmd("ABOR").1.trim_end(), "225 No transfer to abort.");
}

fn abor_during_stor(ex: Executor) {
    let s = slow(ex);
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR up").0, 125);
    d.write_all(&pattern(200_000)).unwrap();
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    assert!(
        s.path("up").exists(),
        "the partial file stays, as in pyftpdlib"
    );
}

/// ABOR during an upload large enough to be written by a helper thread: 426 + 226 at once,
/// the file holds exactly a prefix of what was sent, and the session goes on.
fn abor_during_a_pipelined_stor(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR up").0, 125);
    // Past 8 MiB even with several MiB still in the client's socket buffer at ABOR.
    let sent = pattern(24 << 20);
    d.write_all(&sent).unwrap();
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    drop(d);
    let got = s.read("up");
    assert!(
        got.len() > 8 << 20,
        "only {} bytes: no helper thread ran",
        got.len()
    );
    assert!(got.len() <= sent.len());
    assert!(
        got == sent[..got.len()],
        "the file is not a prefix of the upload"
    );
    assert_eq!(r.cmd("NOOP").0, 200, "session still usable");
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR again").0, 125);
    d.write_all(&sent[..1000]).unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read("again"), &sent[..1000]);
}

fn stat_and_noop_during_transfer(ex: Executor) {
    let (_s, mut r, mut d) = slow_download(ex, 2 * 1024 * 1024);
    let mut buf = vec![0u8; 100_000];
    d.read_exact(&mut buf).unwrap();
    let (code, text) = r.cmd("STAT");
    assert_eq!(code, 211);
    assert!(text.contains("Data connection open:"), "{text}");
    assert!(text.contains("Total bytes sent: "), "{text}");
    assert_eq!(r.cmd("NOOP").0, 200);
    // pyftpdlib answers ordinary commands mid-transfer...
    assert_eq!(r.cmd("PWD").0, 257, "PWD answered during the transfer");
    // ...but one that needs the data channel waits for the transfer to end.
    r.send("PASV");
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.reply().0, 227, "PASV answered after the transfer");
}

fn rein_and_user_during_transfer(ex: Executor) {
    // pyftpdlib test_rein_during_transfer / test_user_during_transfer: the account is
    // flushed at once, the transfer still completes with 226.
    let s = builder()
        .executor(ex)
        .handler(|h| h.write_limit = 512 * 1024)
        .start();
    let data = pattern(1024 * 1024);
    s.write("big", &data);
    for flush in ["REIN", "USER user"] {
        let mut r = s.raw_login();
        r.cmd("TYPE I");
        let mut d = r.pasv();
        assert_eq!(r.cmd("RETR big").0, 125);
        let mut buf = vec![0u8; 100_000];
        d.read_exact(&mut buf).unwrap();
        let code = r.cmd(flush).0;
        assert!(code == 230 || code == 331, "{flush}: {code}");
        assert_eq!(
            r.cmd("TYPE A").1.trim_end(),
            "530 Log in with USER and PASS first."
        );
        let rest = read_all(d);
        assert_eq!(buf.len() + rest.len(), data.len(), "{flush}: all bytes");
        assert_eq!(r.reply().0, 226);
        assert_eq!(r.cmd("PWD").0, 530);
    }
}

fn quit_waits_for_transfer(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.write_limit = 512 * 1024)
        .start();
    let data = pattern(700_000);
    s.write("f", &data);
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let d = r.pasv();
    assert_eq!(r.cmd("RETR f").0, 125);
    // RFC 959 / pyftpdlib: 221 at once, the transfer completes, its 226, then the close.
    assert_eq!(r.cmd("QUIT").0, 221);
    assert_eq!(read_all(d), data, "the whole file arrives");
    assert_eq!(r.reply().0, 226);
    assert!(r.is_closed());
}

fn client_closes_data_early(ex: Executor) {
    let (_s, mut r, mut d) = slow_download(ex, 2 * 1024 * 1024);
    let mut buf = [0u8; 10];
    d.read_exact(&mut buf).unwrap();
    drop(d);
    let (code, text) = r.reply();
    assert_eq!(code, 426, "{text}");
    assert_eq!(r.cmd("NOOP").0, 200);
}

fn abor_with_pending_passive(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    let _d = r.pasv();
    assert_eq!(
        r.cmd("ABOR").1.trim_end(),
        "225 ABOR command successful; data channel closed."
    );
    // pyftpdlib: a transfer asked for without a data channel gets 150 and waits for a
    // PORT/PASV sent after it (tests/test_functional.py test_stou does STOU, then PORT).
    assert_eq!(r.cmd("LIST").0, 150, "the data channel is gone");
    let d = r.pasv();
    read_all(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("LIST").0, 150);
    assert_eq!(r.cmd("ABOR").1.trim_end(), "225 No transfer to abort.");
    assert_eq!(r.cmd("NOOP").0, 200);
}

models!(
    abor_during_retr,
    abor_during_stor,
    abor_during_a_pipelined_stor,
    stat_and_noop_during_transfer,
    rein_and_user_during_transfer,
    quit_waits_for_transfer,
    client_closes_data_early;
    bin: abor_with_pending_passive,
);
