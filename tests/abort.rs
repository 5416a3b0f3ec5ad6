//! ABOR, STAT, NOOP and QUIT while a transfer runs (RFC 959 §4.1.3, RFC 1123 §4.1.3.4), and
//! transfers cut short by the client.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

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
    let s = slow(ex);
    s.write("big", &pattern(4 * 1024 * 1024));
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    let mut buf = [0u8; 1024];
    d.read_exact(&mut buf).unwrap();
    // Python's ftplib sends ABOR behind Telnet IP + Synch.
    r.send_bytes(b"\xff\xf4\xff\xf2ABOR\r\n");
    let t = Instant::now();
    let (code, text) = r.reply();
    assert_eq!(
        (code, text.trim_end()),
        (426, "426 Transfer aborted via ABOR.")
    );
    assert_eq!(r.reply(), (226, "226 ABOR command successful.\r\n".into()));
    assert!(t.elapsed() < Duration::from_secs(5));
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

fn stat_and_noop_during_transfer(ex: Executor) {
    let s = slow(ex);
    s.write("big", &pattern(2 * 1024 * 1024));
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    let mut buf = vec![0u8; 100_000];
    d.read_exact(&mut buf).unwrap();
    let (code, text) = r.cmd("STAT");
    assert_eq!(code, 211);
    assert!(text.contains("Data connection open:"), "{text}");
    assert!(text.contains("Total bytes sent: "), "{text}");
    assert_eq!(r.cmd("NOOP").0, 200);
    // A command that cannot run mid-transfer waits for the transfer to end.
    r.send("PWD");
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.reply().0, 257, "PWD answered after the transfer");
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
    r.send("QUIT");
    assert_eq!(read_all(d), data, "the whole file arrives");
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.reply().0, 221);
    assert!(r.is_closed());
}

fn client_closes_data_early(ex: Executor) {
    let s = slow(ex);
    s.write("big", &pattern(2 * 1024 * 1024));
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
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
    assert_eq!(r.cmd("LIST").0, 425, "the data channel is gone");
}

models!(
    abor_during_retr,
    abor_during_stor,
    stat_and_noop_during_transfer,
    quit_waits_for_transfer,
    client_closes_data_early;
    bin: abor_with_pending_passive,
);
