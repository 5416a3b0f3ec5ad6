//! Replies that pyftpdlib 2.2's own test suite (tests/test_functional.py) checks and that
//! ftpdlib once answered differently: OPTS, FEAT, EPRT, a Telnet-prefixed ABOR, STOU before
//! PORT, a busy passive port range (where ftpdlib deliberately answers 425) (RFC 959 §4.1,
//! RFC 2389, RFC 2428 §2).

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::io::{Read, Write};
use std::net::TcpListener;

fn opts_argument_count(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    assert_eq!(
        r.cmd("OPTS MLST type ;").1.trim_end(),
        "501 Invalid number of arguments."
    );
    assert_eq!(
        r.cmd("OPTS MLST bad_fact").1.trim_end(),
        "501 Invalid argument."
    );
    assert_eq!(
        r.cmd("OPTS UTF8 OFF").1.trim_end(),
        "200 Always in UTF8 mode."
    );
    assert_eq!(
        r.cmd("OPTS UTF8 ON").1.trim_end(),
        "200 Always in UTF8 mode."
    );
    let (_, feat) = r.cmd("FEAT");
    assert!(feat.contains(" UTF8\r\n"), "{feat}");
}

fn eprt_checks_in_pyftpdlib_order(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    // The protocol is checked against the connection before the address is parsed.
    assert_eq!(
        r.cmd("EPRT |2|1.2.3.256|2048|").1.trim_end(),
        "522 Network protocol not supported (use 1)."
    );
    assert_eq!(
        r.cmd("EPRT |1|1.2.3.256|2048|").1.trim_end(),
        "501 Invalid EPRT format."
    );
    assert_eq!(r.cmd("EPRT |1|127.0.0.1|65536|").0, 501);
    assert_eq!(
        r.cmd("EPRT |3|127.0.0.1|2048|").1.trim_end(),
        "501 Unknown network protocol (use 1)."
    );
    let (code, text) = r.cmd("EPRT |1|127.0.0.1|222|");
    assert_eq!(code, 501);
    assert!(text.contains("privileged port"), "{text}");
}

fn eprt_v6_unparsable_address_is_foreign(_ex: Executor) {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let s = builder().bind("[::1]:0").start();
    let mut r = s.raw_login();
    let (code, text) = r.cmd("EPRT |2|::foo|2222|");
    assert_eq!(code, 501);
    assert!(text.contains("foreign address"), "{text}");
}

fn abor_behind_out_of_band_ip(ex: Executor) {
    // Python's test_oob_abor: IP and IAC as urgent bytes, then "abor".
    let s = start(ex);
    let mut r = s.raw_login();
    r.send_bytes(b"\xf4\xffabor\r\n");
    assert_eq!(r.reply().1.trim_end(), "225 No transfer to abort.");
}

fn stou_before_port(ex: Executor) {
    // pyftpdlib test_stou: STOU first (150 FILE: name), PORT after it.
    let s = start(ex);
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let (code, text) = r.cmd("STOU");
    assert_eq!(code, 150, "{text}");
    let name = text
        .trim_end()
        .split("FILE: ")
        .nth(1)
        .expect("FILE: mark")
        .to_string();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (code, text) = r.cmd(&format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff));
    assert_eq!(code, 200, "{text}");
    let (mut d, _) = l.accept().unwrap();
    d.write_all(b"unique data").unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read(&name), b"unique data");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.path(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "created like mkstemp, as pyftpdlib does"
    );
}

fn busy_passive_range_is_refused(ex: Executor) {
    // pyftpdlib test_passive_ports_busy expects a kernel-chosen port when the only
    // configured port is taken; ftpdlib never leaves the range (a firewall opened for it
    // would drop the connection) and answers 425 instead, then uses the port once free.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let s = builder()
        .executor(ex)
        .handler(move |h| h.passive_ports = Some(port..=port))
        .start();
    let mut r = s.raw_login();
    let (code, text) = r.cmd("PASV");
    assert_eq!(
        (code, text.trim_end()),
        (
            425,
            "425 Can't open passive connection: no free port in the configured range."
        )
    );
    drop(busy);
    let mut d = r.pasv();
    assert_eq!(d.peer_addr().unwrap().port(), port);
    assert_eq!(r.cmd("LIST").0, 125);
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    assert_eq!(r.reply().0, 226);
}

fn unspecified_port_address_means_the_client(ex: Executor) {
    // lftp on IPv6 sends `EPRT |2|::|port|`; the IPv4 form is PORT 0,0,0,0,...
    let s = start(ex);
    s.write("f", b"data");
    let mut r = s.raw_login();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (code, text) = r.cmd(&format!("PORT 0,0,0,0,{},{}", port >> 8, port & 0xff));
    assert_eq!(code, 200, "{text}");
    let (mut d, _) = l.accept().unwrap();
    assert_eq!(r.cmd("RETR f").0, 125);
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"data");
    assert_eq!(r.reply().0, 226);
}

fn transfer_after_refused_port_fails_at_once(ex: Executor) {
    // lftp pipelines LIST after EPRT and falls back to passive mode on a 425.
    let s = start(ex);
    let mut r = s.raw_login();
    r.send("PORT 1,2,3,4,4,4");
    r.send("LIST");
    let (code, text) = r.reply();
    assert_eq!(code, 501, "{text}");
    assert!(text.contains("foreign address"), "{text}");
    assert_eq!(r.reply().1.trim_end(), "425 Use PORT or PASV first.");
    let mut d = r.pasv();
    assert_eq!(r.cmd("LIST").0, 125);
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    assert_eq!(r.reply().0, 226);
}

fn abor_and_quit_while_waiting_for_the_data_connection(ex: Executor) {
    // pyftpdlib ftp_ABOR with a listening (not yet connected) passive socket: one 225.
    let s = start(ex);
    let mut r = s.raw_login();
    assert_eq!(r.cmd("PASV").0, 227);
    assert_eq!(r.cmd("LIST").0, 150);
    assert_eq!(
        r.cmd("ABOR").1.trim_end(),
        "225 ABOR command successful; data channel closed."
    );
    assert_eq!(r.cmd("NOOP").0, 200);
    // QUIT in the same state: 221, then the connection closes without waiting.
    assert_eq!(r.cmd("PASV").0, 227);
    assert_eq!(r.cmd("LIST").0, 150);
    assert_eq!(r.cmd("QUIT").0, 221);
    assert!(r.is_closed());
}

fn help_rows_and_stat_with_an_open_channel(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    // pyftpdlib formats HELP rows as " %-6s" per name, eight names a row.
    let (code, help) = r.cmd("HELP");
    assert_eq!(code, 214);
    let row = help.lines().nth(1).expect("a row");
    assert!(row.starts_with(" ABOR   ALLO   APPE   "), "{row:?}");
    assert_eq!(row.len(), 8 * 7, "{row:?}");
    // A connected but unused data channel shows its totals.
    let _d = r.pasv();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (code, stat) = r.cmd("STAT");
    assert_eq!(code, 211);
    assert!(stat.contains(" Data connection open:\r\n"), "{stat}");
    assert!(stat.contains(" Total bytes sent: 0\r\n"), "{stat}");
}

fn quit_during_upload(ex: Executor) {
    // pyftpdlib test_quit_during_transfer: 221 at once, the upload goes on, 226, closed.
    let s = start(ex);
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR up").0, 125);
    d.write_all(&pattern(100_000)).unwrap();
    assert_eq!(r.cmd("QUIT").0, 221);
    d.write_all(&pattern(100_000)).unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert!(r.is_closed());
    assert_eq!(std::fs::metadata(s.path("up")).unwrap().len(), 200_000);
}

models!(
    help_rows_and_stat_with_an_open_channel,
    quit_during_upload,
    abor_and_quit_while_waiting_for_the_data_connection,
    unspecified_port_address_means_the_client,
    transfer_after_refused_port_fails_at_once,
    opts_argument_count,
    eprt_checks_in_pyftpdlib_order,
    eprt_v6_unparsable_address_is_foreign,
    abor_behind_out_of_band_ip,
    stou_before_port,
    busy_passive_range_is_refused,
);
