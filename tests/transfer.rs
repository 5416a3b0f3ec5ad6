//! Transfers: RETR, STOR, APPE, STOU, REST, TYPE A/I, MODE, STRU, ALLO; passive and active,
//! IPv4 and IPv6; 125 vs 150.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::io::{Read, Write};
use std::net::TcpListener;

fn binary_round_trip(ex: Executor) {
    let s = start(ex);
    let data = pattern(3 * 1024 * 1024 + 17);
    let mut c = s.login();
    c.put_file("big.bin", &mut &data[..]).unwrap();
    assert_eq!(s.read("big.bin"), data);
    let back = c.retr_as_buffer("big.bin").unwrap().into_inner();
    assert_eq!(back, data);
    // The same without sendfile(2).
    drop(c);
    let s2 = builder()
        .executor(ex)
        .handler(|h| h.use_sendfile = false)
        .start();
    s2.write("f", &data);
    assert_eq!(s2.login().retr_as_buffer("f").unwrap().into_inner(), data);
}

fn empty_file(ex: Executor) {
    let s = start(ex);
    let mut c = s.login();
    c.put_file("empty", &mut &b""[..]).unwrap();
    assert_eq!(s.read("empty"), b"");
    assert!(c.retr_as_buffer("empty").unwrap().into_inner().is_empty());
}

fn ascii_converts_line_endings(ex: Executor) {
    let s = start(ex);
    s.write("unix.txt", b"a\nb\r\nc\n");
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE A").1.trim_end(), "200 Type set to: ASCII.");
    let data = r.pasv();
    assert_eq!(r.cmd("RETR unix.txt").0, 125);
    assert_eq!(read_all(data), b"a\r\nb\r\nc\r\n");
    assert_eq!(r.reply().0, 226);
    let mut data = r.pasv();
    assert_eq!(r.cmd("STOR up.txt").0, 125);
    data.write_all(b"x\r\ny\r\n\r\nz").unwrap();
    drop(data);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read("up.txt"), b"x\ny\n\nz");
    assert_eq!(r.cmd("TYPE L 8").1.trim_end(), "200 Type set to: Binary.");
    assert_eq!(r.cmd("TYPE X").0, 504);
}

fn appe_and_stou(ex: Executor) {
    let s = start(ex);
    let mut c = s.login();
    c.put_file("log", &mut &b"one"[..]).unwrap();
    c.append_file("log", &mut &b"two"[..]).unwrap();
    assert_eq!(s.read("log"), b"onetwo");
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut data = r.pasv();
    let (code, text) = r.cmd("STOU");
    assert_eq!(code, 125);
    assert!(text.starts_with("125 FILE: ftpd."), "RFC 1123 mark: {text}");
    let name = text.trim_end()[10..].to_string();
    data.write_all(b"unique").unwrap();
    drop(data);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read(&name), b"unique");
    let mut data = r.pasv();
    let (code, text) = r.cmd("STOU report");
    assert_eq!(code, 125);
    assert!(text.starts_with("125 FILE: report."), "{text}");
    data.write_all(b"r").unwrap();
    drop(data);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("REST 5").0, 350);
    assert_eq!(r.cmd("STOU").0, 450, "STOU with REST pending");
}

fn rest_resumes(ex: Executor) {
    let s = start(ex);
    let data = pattern(100_000);
    s.write("f", &data);
    let mut c = s.login();
    c.resume_transfer(60_000).unwrap();
    let tail = c.retr_as_buffer("f").unwrap().into_inner();
    assert_eq!(tail, &data[60_000..]);
    // APPE after REST is refused (pyftpdlib), STOR after REST resumes.
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    r.cmd("REST 10");
    assert_eq!(
        r.cmd("APPE f").1.trim_end(),
        "450 Can't APPE while REST request is pending."
    );
    // Resume an upload.
    s.write("part", &data[..40_000]);
    c.resume_transfer(40_000).unwrap();
    c.put_file("part", &mut &data[40_000..]).unwrap();
    assert_eq!(s.read("part"), data);
    let mut r = s.raw_login();
    assert_eq!(r.cmd("REST 10").0, 501, "no REST in ASCII mode");
    r.cmd("TYPE I");
    assert_eq!(r.cmd("REST -1").0, 501);
    assert_eq!(r.cmd("REST abc").0, 501);
    assert_eq!(
        r.cmd("REST 200000").1.trim_end(),
        "350 Restarting at position 200000."
    );
    let _d = r.pasv();
    let (code, text) = r.cmd("RETR f");
    assert_eq!(code, 554, "{text}");
    assert!(
        text.contains("REST position (200000) > file size (100000)"),
        "{text}"
    );
}

fn active_mode(ex: Executor) {
    let s = start(ex);
    let data = pattern(500_000);
    s.write("f", &data);
    let mut c = s.login().active_mode(std::time::Duration::from_secs(10));
    assert_eq!(c.retr_as_buffer("f").unwrap().into_inner(), data);
    c.put_file("g", &mut &data[..]).unwrap();
    assert_eq!(s.read("g"), data);
    assert_eq!(c.nlst(None).unwrap().len(), 2);
    // EPRT by hand.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut r = s.raw_login();
    let (code, text) = r.cmd(&format!("EPRT |1|127.0.0.1|{port}|"));
    assert_eq!(
        (code, text.trim_end()),
        (200, "200 Active data connection established.")
    );
    let (conn, _) = l.accept().unwrap();
    assert_eq!(r.cmd("NLST").0, 125);
    assert_eq!(read_all(conn), b"f\r\ng\r\n");
    assert_eq!(r.reply().0, 226);
}

fn extended_passive_and_epsv_all(ex: Executor) {
    let s = start(ex);
    s.write("f", b"abc");
    let mut c = s.login();
    c.set_mode(Mode::ExtendedPassive);
    assert_eq!(c.retr_as_buffer("f").unwrap().into_inner(), b"abc");
    let mut r = s.raw_login();
    assert_eq!(r.cmd("EPSV 2").0, 522);
    assert_eq!(r.cmd("EPSV 3").0, 501);
    let (code, text) = r.cmd("EPSV 1");
    assert_eq!(code, 229);
    assert!(
        text.starts_with("229 Entering extended passive mode (|||"),
        "{text}"
    );
    assert_eq!(r.cmd("EPSV ALL").0, 220);
    assert_eq!(r.cmd("PASV").0, 501);
    assert_eq!(r.cmd("PORT 127,0,0,1,4,1").0, 501);
    assert_eq!(r.cmd("EPRT |1|127.0.0.1|1025|").0, 501);
    assert_eq!(r.cmd("EPSV").0, 229);
}

fn ipv6(ex: Executor) {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback");
        return;
    }
    let s = builder().executor(ex).bind("[::1]:0").start();
    s.write("f", b"six");
    let mut c = s.login();
    c.set_mode(Mode::ExtendedPassive);
    assert_eq!(c.retr_as_buffer("f").unwrap().into_inner(), b"six");
    c.put_file("g", &mut &b"up6"[..]).unwrap();
    assert_eq!(s.read("g"), b"up6");
    let mut r = s.raw_login();
    assert_eq!(r.cmd("PASV").0, 425, "PASV cannot name an IPv6 address");
    assert_eq!(r.cmd("EPSV 1").0, 522);
    let l = TcpListener::bind("[::1]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(r.cmd(&format!("EPRT |2|::1|{port}|")).0, 200);
    // pyftpdlib (dual-stack capable system): an IPv4 address is simply not the client's.
    let (code, text) = r.cmd("EPRT |1|127.0.0.1|2000|");
    assert_eq!(code, 501);
    assert!(text.contains("foreign address"), "{text}");
}

fn dual_stack_pasv_answers_ipv4(ex: Executor) {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6");
        return;
    }
    let s = builder().executor(ex).bind("[::]:0").start();
    let mut r = Raw::connect(&format!("127.0.0.1:{}", s.addr.port()));
    r.cmd("USER user");
    r.cmd("PASS 12345");
    let (code, text) = r.cmd("PASV");
    assert_eq!(code, 227);
    assert!(
        text.contains("(127,0,0,1,"),
        "plain IPv4, never mapped: {text}"
    );
}

fn preliminary_reply_125_vs_150(ex: Executor) {
    let s = start(ex);
    s.write("f", b"data");
    let mut r = s.raw_login();
    // Client connects first: 125.
    let d = r.pasv();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(r.cmd("RETR f").0, 125);
    assert_eq!(read_all(d), b"data");
    assert_eq!(r.reply().0, 226);
    // Command first, connection after: 150.
    let (code, text) = r.cmd("PASV");
    assert_eq!(code, 227);
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    r.send("RETR f");
    let (code, text) = r.reply();
    assert_eq!(
        (code, text.trim_end()),
        (150, "150 File status okay. About to open data connection.")
    );
    let d = std::net::TcpStream::connect(("127.0.0.1", n[4] * 256 + n[5])).unwrap();
    assert_eq!(read_all(d), b"data");
    assert_eq!(r.reply().0, 226);
    // No PORT/PASV yet: 150, and the PASV sent after the command opens the channel, as in
    // pyftpdlib (which queues the transfer).
    assert_eq!(r.cmd("RETR f").0, 150);
    let late = r.pasv();
    assert_eq!(read_all(late), b"data");
    assert_eq!(r.reply().0, 226);
    // PASV is per transfer: a second PASV replaces the first.
    let _old = r.pasv();
    let newer = r.pasv();
    assert_eq!(r.cmd("RETR f").0, 125);
    assert_eq!(read_all(newer), b"data");
    assert_eq!(r.reply().0, 226);
}

fn mode_stru_allo(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    assert_eq!(r.cmd("MODE S").0, 200);
    assert_eq!(r.cmd("MODE B").0, 504);
    assert_eq!(r.cmd("MODE X").0, 501);
    assert_eq!(r.cmd("STRU F").0, 200);
    assert_eq!(r.cmd("STRU R").0, 504);
    assert_eq!(r.cmd("STRU X").0, 501);
    assert_eq!(
        r.cmd("ALLO 1000").1.trim_end(),
        "202 No storage allocation necessary."
    );
    assert_eq!(r.cmd("RETR missing").0, 550);
    assert_eq!(r.cmd("RETR /").0, 550, "RETR of a directory");
}

fn curl_upload_download(ex: Executor) {
    if !tool("curl") {
        return;
    }
    let s = start(ex);
    let data = pattern(1_000_000);
    let src = s.dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let url = format!("ftp://user:12345@{}/sub/up.bin", s.addr);
    let st = std::process::Command::new("curl")
        .args(["-s", "--max-time", "30", "--ftp-create-dirs", "-T"])
        .arg(&src)
        .arg(&url)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(s.read("sub/up.bin"), data);
    for extra in [&["--ftp-pasv"][..], &["-P", "127.0.0.1"][..]] {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "30"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}");
        assert_eq!(out.stdout, data, "{extra:?}");
    }
    // Resume with curl -C.
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "30", "-C", "999000"])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(out.stdout, &data[999_000..]);
}

fn pipelined_commands_run_in_order(ex: Executor) {
    let s = start(ex);
    s.write("f", b"x");
    let mut r = s.raw_login();
    r.send_bytes(b"TYPE I\r\nSIZE f\r\nNOOP\r\n");
    assert_eq!(r.reply().0, 200);
    assert_eq!(r.reply().1.trim_end(), "213 1");
    assert_eq!(r.reply().0, 200);
    let mut buf = [0u8; 1];
    r.stream.set_nonblocking(true).unwrap();
    assert!(r.stream.read(&mut buf).is_err(), "no stray reply");
}

/// A transfer command and the EPSV for it, pipelined while another transfer runs: both
/// wait for it to end, then the EPSV carries the second transfer (it must not wait for a
/// channel from the socket while the command that makes one is already queued).
fn queued_transfer_and_its_channel(ex: Executor) {
    let s = start(ex);
    let big = pattern(8 << 20);
    s.write("big", &big);
    s.write("small", b"small");
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    // Sent while the download runs (the client reads nothing yet).
    r.send_bytes(b"RETR small\r\nEPSV\r\n");
    assert!(read_all(data) == big, "download corrupted");
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.reply().0, 150, "RETR small waits for its channel");
    let (code, text) = r.reply();
    assert_eq!(code, 229, "{text}");
    let port: u16 = text.split('|').nth(3).unwrap().parse().unwrap();
    let second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(read_all(second), b"small");
    assert_eq!(r.reply().0, 226);
}

/// Commands that use the filesystem are answered while a listing streams: the listing does
/// not take the user's filesystem away from the session.
fn filesystem_commands_during_a_listing(ex: Executor) {
    let s = start(ex);
    std::fs::create_dir(s.path("sub")).unwrap();
    // About 1.2 MB of names: more than the data sockets hold while the client waits.
    for i in 0..6000 {
        s.write(&format!("{i:0>200}"), b"");
    }
    let mut r = s.raw_login();
    let data = r.pasv();
    assert_eq!(r.cmd("NLST").0, 125);
    assert_eq!(
        r.cmd("CWD sub").1.trim_end(),
        "250 \"/sub\" is the current directory."
    );
    assert_eq!(r.cmd("MKD new").0, 257);
    let names = String::from_utf8(read_all(data)).unwrap();
    assert_eq!(names.lines().count(), 6001, "the listing of / went on");
    assert_eq!(r.reply().0, 226);
    assert!(s.path("sub/new").is_dir());
}

models!(
    binary_round_trip,
    ipv6,
    dual_stack_pasv_answers_ipv4;
    bin: empty_file, ascii_converts_line_endings, appe_and_stou, rest_resumes, active_mode, extended_passive_and_epsv_all, preliminary_reply_125_vs_150, mode_stru_allo, curl_upload_download, pipelined_commands_run_in_order, queued_transfer_and_its_channel, filesystem_commands_during_a_listing,
);
