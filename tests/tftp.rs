//! TFTP integration tests over loopback: real clients (curl's tftp://, atftp), a raw
//! RFC 1350/2347/7440 client for exact packet checks and malformed input, and the `tftpd`
//! binary for fork and inetd "wait" modes.

mod tftp_common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ftpdlib::tftp::packet::{self, Packet};
use ftpdlib::tftp::{Counters, ServerStats};
use tftp_common::*;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn curl_downloads_empty_block_multiple_and_large_files() {
    if !tool("curl") {
        return;
    }
    let s = start(|_| {});
    let files = [
        ("empty", Vec::new()),
        ("exact512", content(512, 1)),
        ("exact4k", content(4096, 2)),
        ("large.bin", content(3 * 1024 * 1024 + 17, 3)),
    ];
    for (name, data) in &files {
        s.file(name, data);
    }
    let out = tempfile::tempdir().expect("tempdir");
    for (name, data) in &files {
        let got = curl_get(s.addr, name, &[], &out.path().join(name)).expect("curl download");
        assert_eq!(got.len(), data.len(), "{name}");
        assert_eq!(checksum(&got), checksum(data), "{name}");
    }
    let stats = s.wait_sessions(files.len());
    assert_eq!(stats.len(), files.len());
    assert!(stats.iter().all(|st| st.error.is_none()), "{stats:?}");
}

#[test]
fn curl_blksize_1428_and_65464() {
    if !tool("curl") {
        return;
    }
    let s = start(|_| {});
    let data = content(2 * 1024 * 1024 + 5, 4);
    s.file("f", &data);
    let out = tempfile::tempdir().expect("tempdir");
    for bs in ["1428", "65464"] {
        let got = curl_get(s.addr, "f", &["--tftp-blksize", bs], &out.path().join(bs))
            .expect("curl download");
        assert_eq!(checksum(&got), checksum(&data), "blksize {bs}");
    }
    let stats = s.wait_sessions(2);
    let sizes: Vec<usize> = stats.iter().map(|st| st.blksize).collect();
    assert!(sizes.contains(&1428) && sizes.contains(&65464), "{sizes:?}");
}

#[test]
fn atftp_windowsize_download_and_upload() {
    if !tool("atftp") {
        return;
    }
    let up = tempfile::tempdir().expect("tempdir");
    let updir = up.path().to_owned();
    let s = start(move |c| c.upload_dir = Some(updir));
    let data = content(1024 * 1024 + 3, 5);
    s.file("boot/kernel", &data);
    let out = tempfile::tempdir().expect("tempdir");
    let local = out.path().join("k");
    let st = Command::new("atftp")
        .args(["-g", "-r", "boot/kernel", "-l"])
        .arg(&local)
        .args(["--option", "blksize 1428", "--option", "windowsize 16"])
        .arg(s.addr.ip().to_string())
        .arg(s.addr.port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("atftp");
    assert!(st.success());
    assert_eq!(
        checksum(&std::fs::read(&local).expect("read")),
        checksum(&data)
    );
    let st = Command::new("atftp")
        .args(["-p", "-r", "up.bin", "-l"])
        .arg(&local)
        .args(["--option", "windowsize 8"])
        .arg(s.addr.ip().to_string())
        .arg(s.addr.port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("atftp");
    assert!(st.success());
    assert_eq!(
        checksum(&std::fs::read(up.path().join("up.bin")).expect("upload")),
        checksum(&data)
    );
    let stats = s.wait_sessions(2);
    assert!(stats
        .iter()
        .any(|st| st.windowsize == 16 && st.blksize == 1428 && !st.write));
    assert!(stats
        .iter()
        .any(|st| st.write && st.bytes_received == data.len() as u64));
}

#[test]
fn options_tsize_timeout_windowsize_negotiated() {
    let s = start(|_| {});
    let data = content(100_000, 6);
    s.file("f", &data);
    let opts = [
        ("tsize", "0"),
        ("timeout", "3"),
        ("blksize", "1000"),
        ("windowsize", "16"),
    ];
    let g = get(s.addr, "f", "octet", &opts);
    assert_eq!(g.error, None);
    assert_eq!(checksum(&g.data), checksum(&data));
    assert_eq!(
        g.oack,
        Some(pairs(&[
            ("tsize", "100000"),
            ("timeout", "3"),
            ("blksize", "1000"),
            ("windowsize", "16")
        ]))
    );
    // Over the RFC 2348 maximum: clamped; windowsize bounded by bytes in flight.
    let g = get(
        s.addr,
        "f",
        "octet",
        &[("blksize", "70000"), ("windowsize", "64")],
    );
    assert_eq!(checksum(&g.data), checksum(&data));
    let o = g.oack.expect("oack");
    assert_eq!(o[0], ("blksize".into(), "65464".into()));
    let w: usize = o[1].1.parse().expect("number");
    assert!(w >= 1 && w * 65464 <= 256 * 1024, "windowsize {w}");
}

#[test]
fn negotiated_timeout_drives_retransmission() {
    // Server default 10 s; the client asks for 1 s (RFC 2349): the OACK comes again long
    // before the server's own timeout would fire.
    let s = start(|c| c.timeout = Duration::from_secs(10));
    s.file("f", b"x");
    let sock = client_socket(s.addr, Duration::from_secs(5));
    let rrq = packet::request(false, "f", "octet", &[("timeout", "1")]);
    sock.send_to(&rrq, s.addr).expect("rrq");
    let (first, peer) = recv(&sock).expect("OACK");
    assert_eq!(
        packet::parse(&first),
        Ok(Packet::Oack(pairs(&[("timeout", "1")])))
    );
    let (again, from) = recv(&sock).expect("OACK retransmitted within 5 s");
    assert_eq!((again, from), (first, peer));
    sock.send_to(&packet::ack(0), peer).expect("ack 0");
    let (pkt, _) = recv(&sock).expect("DATA 1");
    assert_eq!(packet::parse(&pkt), Ok(Packet::Data(1, &b"x"[..])));
    sock.send_to(&packet::ack(1), peer).expect("ack 1");
    let st = s.wait_sessions(1);
    assert!(
        st[0].error.is_none() && st[0].retransmits >= 1,
        "{:?}",
        st[0]
    );
}

#[test]
fn invalid_options_are_never_echoed() {
    let s = start(|_| {});
    s.file("f", b"hello");
    let bad = [
        ("blksize", "4"),
        ("timeout", "0"),
        ("timeout", "x"),
        ("windowsize", "0"),
        ("tsize", "-1"),
        ("bogus", "1"),
    ];
    let g = get(s.addr, "f", "octet", &bad);
    assert_eq!(g.oack, None, "nothing valid: no OACK, data at once");
    assert_eq!(g.data, b"hello");
}

#[test]
fn netascii_converts_and_mail_is_refused() {
    let s = start(|_| {});
    s.file("t.txt", b"a\nb\rc\n");
    let g = get(s.addr, "t.txt", "netascii", &[("tsize", "0")]);
    assert_eq!(g.data, b"a\r\nb\r\0c\r\n");
    assert_eq!(g.oack, None, "tsize is not offered in netascii");
    let g = get(s.addr, "t.txt", "mail", &[]);
    assert_eq!(g.error.map(|e| e.0), Some(4));
}

#[test]
fn block_number_rollover() {
    let s = start(|_| {});
    // 8-byte blocks: 70 000 blocks, past 65535 (RFC 1350 numbers wrap to 0).
    let data = content(8 * 70_000 + 3, 7);
    s.file("roll", &data);
    let g = get(
        s.addr,
        "roll",
        "octet",
        &[("blksize", "8"), ("windowsize", "32")],
    );
    assert_eq!(g.error, None);
    assert!(!g.timed_out);
    assert_eq!(g.data.len(), data.len());
    assert_eq!(checksum(&g.data), checksum(&data));
    let st = s.wait_sessions(1);
    assert_eq!(st[0].blocks, 70_001);
}

#[test]
fn path_escapes_refused() {
    let s = start(|_| {});
    s.file("ok", b"ok");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret"), b"secret").expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret"), s.dir.path().join("link"))
        .expect("symlink");
    for (path, code) in [
        ("../etc/passwd", 2),
        ("a/../../x", 2),
        ("link", 2),
        ("/etc/passwd", 1),
        ("missing", 1),
        (".", 2),
    ] {
        let g = get(s.addr, path, "octet", &[]);
        assert_eq!(g.error.as_ref().map(|e| e.0), Some(code), "{path}: {g:?}");
        assert!(g.data.is_empty());
    }
    assert_eq!(get(s.addr, "/ok", "octet", &[]).data, b"ok");
}

#[test]
fn twenty_concurrent_downloads() {
    // All from 127.0.0.1: no per-address cap here.
    let s = start(|c| c.max_sessions_per_ip = 0);
    let data = Arc::new(content(300_000, 8));
    s.file("f", &data);
    let use_curl = tool("curl");
    let out = tempfile::tempdir().expect("tempdir");
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let addr = s.addr;
            let path = out.path().join(format!("o{i}"));
            std::thread::spawn(move || {
                if use_curl && i % 2 == 0 {
                    curl_get(addr, "f", &["--tftp-blksize", "1428"], &path).unwrap_or_default()
                } else {
                    get(
                        addr,
                        "f",
                        "octet",
                        &[("blksize", "1428"), ("windowsize", "8")],
                    )
                    .data
                }
            })
        })
        .collect();
    for t in threads {
        let got = t.join().expect("thread");
        assert_eq!(checksum(&got), checksum(&data));
    }
    let st = s.wait_sessions(20);
    assert_eq!(st.len(), 20);
    assert!(st
        .iter()
        .all(|x| x.error.is_none() && x.bytes_sent >= data.len() as u64));
}

#[test]
fn stats_callbacks_observed() {
    let seen: Arc<Mutex<Vec<Counters>>> = Arc::default();
    let sink = seen.clone();
    let s = start(move |c| {
        c.stats_interval = Duration::from_millis(100);
        c.server_stats_callback = Some(Arc::new(move |st: &ServerStats| {
            sink.lock()
                .expect("lock")
                .push(st.get_and_reset_all_counters());
        }));
    });
    let data = content(10_000, 9);
    s.file("f", &data);
    assert_eq!(get(s.addr, "f", "octet", &[]).data.len(), data.len());
    assert_eq!(
        get(s.addr, "nope", "octet", &[]).error.map(|e| e.0),
        Some(1)
    );
    let sessions = s.wait_sessions(2);
    let ok = sessions
        .iter()
        .find(|x| x.file_path == "f")
        .expect("session stats");
    assert_eq!(ok.bytes_sent, data.len() as u64);
    assert_eq!(ok.packets_sent, 20); // 19 full blocks + the final short one
    assert_eq!(ok.peer.ip(), s.addr.ip());
    assert!(ok.error.is_none());
    let failed = sessions
        .iter()
        .find(|x| x.file_path == "nope")
        .expect("session stats");
    assert_eq!(failed.error_sent.as_ref().map(|e| e.0), Some(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut total = Counters::default();
    while Instant::now() < deadline {
        total = Counters::default();
        for c in seen.lock().expect("lock").iter() {
            add(&mut total, c);
        }
        if total.sessions_finished + total.sessions_failed >= 2
            && seen.lock().expect("lock").len() >= 2
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(total.sessions_started, 2);
    assert_eq!((total.sessions_finished, total.sessions_failed), (1, 1));
    assert_eq!(total.bytes_sent, data.len() as u64);
    assert_eq!(total.errors_by_code[1], 1);
    assert!(
        seen.lock().expect("lock").len() >= 2,
        "callback runs periodically"
    );
}

/// Starts a lock-step download by hand; returns the socket and the session's address
/// after DATA 1 arrived.
fn first_block(s: &TestServer, file: &str) -> (UdpSocket, SocketAddr, Vec<u8>) {
    let sock = client_socket(s.addr, Duration::from_secs(3));
    sock.send_to(&packet::request(false, file, "octet", &[]), s.addr)
        .expect("rrq");
    let (pkt, peer) = recv(&sock).expect("DATA 1");
    // From here on the tests listen for silence: short waits, well under the server's
    // retransmission timeout.
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    assert!(matches!(packet::parse(&pkt), Ok(Packet::Data(1, _))));
    assert_ne!(
        peer.port(),
        s.addr.port(),
        "the session answers from its own port"
    );
    (sock, peer, pkt)
}

#[test]
fn stranger_gets_error_5_and_session_continues() {
    let s = start(|_| {});
    let data = content(1500, 10);
    s.file("f", &data);
    let (sock, peer, _) = first_block(&s, "f");
    // Strangers are answered at the latest when the session next times out (1 s here).
    let stranger = client_socket(s.addr, Duration::from_secs(3));
    stranger.send_to(&packet::ack(1), peer).expect("send");
    let (pkt, from) = recv(&stranger).expect("ERROR 5");
    assert_eq!(from, peer, "ERROR 5 comes from the session's port");
    assert!(matches!(packet::parse(&pkt), Ok(Packet::Error(5, _))));
    // The real transfer goes on (a retransmitted DATA 1 may be waiting: skip it).
    let mut got = Vec::new();
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    for b in 1..=2u16 {
        sock.send_to(&packet::ack(b), peer).expect("ack");
        let d = loop {
            let (pkt, _) = recv(&sock).expect("DATA");
            match packet::parse(&pkt) {
                Ok(Packet::Data(n, d)) if n == b + 1 => break d.to_vec(),
                Ok(Packet::Data(n, _)) if n <= b => continue,
                other => panic!("unexpected {other:?}"),
            }
        };
        got.extend_from_slice(&d);
    }
    sock.send_to(&packet::ack(3), peer).expect("ack");
    assert_eq!(got, &data[512..]);
    assert!(s.wait_sessions(1)[0].error.is_none());
}

#[test]
fn retransmitted_request_does_not_start_a_second_session() {
    let s = start(|c| c.timeout = Duration::from_secs(3));
    s.file("f", &content(2000, 18));
    let (sock, _peer, _) = first_block(&s, "f");
    sock.send_to(&packet::request(false, "f", "octet", &[]), s.addr)
        .expect("rrq again");
    assert!(recv(&sock).is_none(), "a second session answered");
    assert_eq!(s.stats.get_all_counters().sessions_started, 1);
}

#[test]
fn duplicate_and_unsent_acks_trigger_nothing() {
    // A retransmission timeout of 3 s at least: the silence below is the server's choice.
    let s = start(|c| {
        c.timeout = Duration::from_secs(3);
        c.min_timeout = Duration::from_secs(3);
    });
    s.file("f", &content(5000, 11));
    let (sock, peer, _) = first_block(&s, "f");
    sock.send_to(&packet::ack(1), peer).expect("ack");
    sock.send_to(&packet::ack(1), peer).expect("dup ack");
    sock.send_to(&packet::ack(0), peer).expect("old ack");
    sock.send_to(&packet::ack(40), peer)
        .expect("ack for an unsent block");
    expect_data(&sock, 2);
    // Sorcerer's Apprentice: the duplicate ACK 1 must not produce a second DATA 2 (the
    // server's retransmission timeout is 1 s; we listen for 400 ms).
    assert!(
        recv(&sock).is_none(),
        "duplicate DATA after a duplicate ACK"
    );
    sock.send_to(&packet::ack(2), peer).expect("ack");
    expect_data(&sock, 3);
    hang_up(&sock, peer);
    let st = s.wait_sessions(1);
    assert!(st[0].error.is_some());
    assert_eq!(st[0].retransmits, 0);
}

#[test]
fn retransmits_on_timeout_then_gives_up() {
    let s = start(|c| c.retries = 2);
    s.file("f", &content(2000, 12));
    let (sock, peer, _) = first_block(&s, "f");
    // The peer answers once, then goes silent: DATA 2 comes again `retries` times.
    sock.send_to(&packet::ack(1), peer).expect("ack 1");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let (first, _) = recv(&sock).expect("DATA 2");
    assert!(matches!(packet::parse(&first), Ok(Packet::Data(2, _))));
    let (again, _) = recv(&sock).expect("retransmitted DATA 2");
    assert_eq!(again, first);
    let st = s.wait_sessions(1);
    assert_eq!(st.len(), 1, "the session ends by itself after its retries");
    assert!(st[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("timeout"));
    assert_eq!(st[0].retransmits, 2);
}

#[test]
fn window_is_resent_whole_after_a_timeout() {
    let s = start(|_| {});
    let data = content(512 * 6 + 100, 19);
    s.file("f", &data);
    let sock = client_socket(s.addr, Duration::from_secs(3));
    let rrq = packet::request(false, "f", "octet", &[("windowsize", "4")]);
    sock.send_to(&rrq, s.addr).expect("rrq");
    let (pkt, peer) = recv(&sock).expect("OACK");
    assert_eq!(
        packet::parse(&pkt),
        Ok(Packet::Oack(pairs(&[("windowsize", "4")])))
    );
    sock.send_to(&packet::ack(0), peer).expect("ack 0");
    let window: Vec<Vec<u8>> = (0..4).map(|_| recv(&sock).expect("DATA").0).collect();
    for (i, p) in window.iter().enumerate() {
        assert!(matches!(packet::parse(p), Ok(Packet::Data(b, _)) if usize::from(b) == i + 1));
    }
    // No ACK: after the timeout the whole unacknowledged window comes again, in order.
    let again: Vec<Vec<u8>> = (0..4)
        .map(|_| recv(&sock).expect("resent DATA").0)
        .collect();
    assert_eq!(again, window);
    // ACK 2 of 4: the window slides to 3..=6 (3 and 4 already sent, 5 and 6 new).
    sock.send_to(&packet::ack(2), peer).expect("ack 2");
    for b in [5u16, 6] {
        // (On a slow machine another timeout may resend 3 and 4 first: skip them.)
        loop {
            let (p, _) = recv(&sock).expect("DATA");
            match packet::parse(&p) {
                Ok(Packet::Data(n, _)) if n == b => break,
                Ok(Packet::Data(n, _)) if n < b => continue,
                other => panic!("expected DATA {b}, got {other:?}"),
            }
        }
    }
    sock.send_to(&packet::ack(6), peer).expect("ack 6");
    let (p, _) = recv(&sock).expect("last DATA");
    let Ok(Packet::Data(7, d)) = packet::parse(&p) else {
        panic!("not DATA 7")
    };
    assert_eq!(d, &data[512 * 6..]);
    sock.send_to(&packet::ack(7), peer).expect("ack 7");
    let st = s.wait_sessions(1);
    assert!(st[0].error.is_none());
    assert!(st[0].retransmits >= 4, "{:?}", st[0]);
}

#[test]
fn oack_refused_by_client_ends_session() {
    let s = start(|_| {});
    s.file("f", b"data");
    let sock = client_socket(s.addr, Duration::from_secs(2));
    let rrq = packet::request(false, "f", "octet", &[("blksize", "1024")]);
    sock.send_to(&rrq, s.addr).expect("rrq");
    let (pkt, peer) = recv(&sock).expect("OACK");
    assert!(matches!(packet::parse(&pkt), Ok(Packet::Oack(_))));
    let e = packet::error(ftpdlib::tftp::ErrorCode::OptionNegotiation, "no");
    sock.send_to(&e, peer).expect("error 8");
    let st = s.wait_sessions(1);
    assert!(st[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("refused"));
    assert!(st[0].bytes_sent == 0);
}

#[test]
fn malformed_packets_never_crash_or_stall() {
    let s = start(|_| {});
    s.file("f", b"still here");
    let sock = client_socket(s.addr, Duration::from_millis(300));
    let answers = client_socket(s.addr, Duration::from_secs(3));
    // Silence for what cannot be a request.
    for junk in [
        &b""[..],
        &b"\x00"[..],
        &b"\x00\x04\x00\x01"[..],
        &b"\x00\x05\x00\x00x\x00"[..],
    ] {
        sock.send_to(junk, s.addr).expect("send");
        assert!(recv(&sock).is_none(), "answered {junk:?}");
    }
    let mut long_name = vec![0u8, 1];
    long_name.extend(vec![b'a'; 65_000]);
    long_name.extend_from_slice(b"\x00octet\x00");
    let junk: Vec<Vec<u8>> = vec![
        b"\x00\x01no-nul-at-all".to_vec(),
        b"\x00\x09\x00\x00".to_vec(),
        b"\x00\x01f\x00".to_vec(),
        b"\x00\x01f\x00binary\x00".to_vec(),
        b"\x00\x01\xff\xfe\x00octet\x00".to_vec(),
        long_name,
    ];
    for j in &junk {
        answers.send_to(j, s.addr).expect("send");
        let (pkt, from) = recv(&answers).expect("ERROR 4");
        assert_eq!(from, s.addr);
        assert!(
            matches!(packet::parse(&pkt), Ok(Packet::Error(4, _))),
            "{pkt:?}"
        );
    }
    assert_eq!(get(s.addr, "f", "octet", &[]).data, b"still here");
    assert!(s.stats.get_all_counters().bad_packets >= 10);
}

#[test]
fn writes_refused_by_default() {
    let s = start(|_| {});
    assert_eq!(put(s.addr, "x", b"data", &[]).map_err(|e| e.0), Err(2));
    assert!(!s.dir.path().join("x").exists());
}

#[test]
fn writes_commit_atomically_with_a_size_cap() {
    let up = tempfile::tempdir().expect("tempdir");
    let updir = up.path().to_owned();
    let s = start(move |c| {
        c.upload_dir = Some(updir);
        c.max_upload = 100_000;
    });
    let data = content(50_000, 13);
    assert_eq!(put(s.addr, "a.bin", &data, &[]), Ok(None));
    assert_eq!(std::fs::read(up.path().join("a.bin")).expect("a"), data);
    let o = put(
        s.addr,
        "b.bin",
        &data,
        &[("blksize", "1024"), ("windowsize", "4"), ("tsize", "50000")],
    )
    .expect("put");
    assert_eq!(
        o,
        Some(pairs(&[
            ("blksize", "1024"),
            ("windowsize", "4"),
            ("tsize", "50000")
        ]))
    );
    assert_eq!(std::fs::read(up.path().join("b.bin")).expect("b"), data);
    assert_eq!(put(s.addr, "a.bin", &data, &[]).map_err(|e| e.0), Err(6));
    assert_eq!(put(s.addr, "../esc", &data, &[]).map_err(|e| e.0), Err(2));
    // Into an existing subdirectory, yes; out through a symlinked directory, no.
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(up.path().join("logs")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), up.path().join("out")).expect("symlink");
    assert_eq!(put(s.addr, "logs/m1.txt", b"boot log", &[]), Ok(None));
    assert_eq!(
        std::fs::read(up.path().join("logs/m1.txt")).expect("log"),
        b"boot log"
    );
    assert_eq!(put(s.addr, "out/x", &data, &[]).map_err(|e| e.0), Err(2));
    assert_eq!(put(s.addr, "nodir/x", &data, &[]).map_err(|e| e.0), Err(1));
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("readdir").count(),
        0
    );
    std::fs::remove_dir_all(up.path().join("logs")).expect("rm");
    std::fs::remove_file(up.path().join("out")).expect("rm");
    assert_eq!(
        put(s.addr, "big", &data, &[("tsize", "200000")]).map_err(|e| e.0),
        Err(3)
    );
    // netascii on the wire, local line ends on disk, across block borders (RFC 764).
    let mut wire = Vec::new();
    for i in 0..300 {
        wire.extend_from_slice(format!("line {i}\r\nbare cr\r\0").as_bytes());
    }
    assert_eq!(put_mode(s.addr, "n.txt", "netascii", &wire, &[]), Ok(None));
    let text = std::fs::read(up.path().join("n.txt")).expect("n.txt");
    let want: String = (0..300).map(|i| format!("line {i}\nbare cr\r")).collect();
    assert_eq!(String::from_utf8_lossy(&text), want);
    std::fs::remove_file(up.path().join("n.txt")).expect("rm");
    let big = content(150_000, 14);
    assert_eq!(put(s.addr, "big", &big, &[]).map_err(|e| e.0), Err(3));
    assert_eq!(s.wait_sessions(10).len(), 10);
    let names: Vec<String> = std::fs::read_dir(up.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        ["a.bin", "b.bin"],
        "no partial or temporary files left"
    );
}

#[test]
fn windowed_upload_recovers_from_a_gap() {
    let up = tempfile::tempdir().expect("tempdir");
    let updir = up.path().to_owned();
    let s = start(move |c| {
        c.upload_dir = Some(updir);
        c.timeout = Duration::from_secs(3);
        c.min_timeout = Duration::from_secs(3);
    });
    let data = content(512 * 6 + 10, 20);
    let block = |i: u16| {
        let start = (usize::from(i) - 1) * 512;
        let mut p = vec![0u8; 4];
        packet::data_header(&mut p, i);
        p.extend_from_slice(&data[start..(start + 512).min(data.len())]);
        p
    };
    let sock = client_socket(s.addr, Duration::from_secs(3));
    let wrq = packet::request(true, "w.bin", "octet", &[("windowsize", "4")]);
    sock.send_to(&wrq, s.addr).expect("wrq");
    let (pkt, peer) = recv(&sock).expect("OACK");
    assert_eq!(
        packet::parse(&pkt),
        Ok(Packet::Oack(pairs(&[("windowsize", "4")])))
    );
    // Block 2 is lost: the server acknowledges block 1 once (RFC 7440), not once per
    // out-of-order block.
    for i in [1u16, 3, 4] {
        sock.send_to(&block(i), peer).expect("data");
    }
    let (pkt, _) = recv(&sock).expect("ACK of the last block in order");
    assert_eq!(packet::parse(&pkt), Ok(Packet::Ack(1)));
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    assert!(recv(&sock).is_none(), "one ACK per gap");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    // The sender restarts its window after the acknowledged block: 2..=5, then 6 and 7.
    for i in 2u16..=7 {
        sock.send_to(&block(i), peer).expect("data");
    }
    let acks: Vec<u16> = (0..2)
        .filter_map(|_| {
            let (p, _) = recv(&sock)?;
            match packet::parse(&p) {
                Ok(Packet::Ack(a)) => Some(a),
                _ => None,
            }
        })
        .collect();
    assert_eq!(acks, [5, 7], "end of the new window, then the final block");
    assert_eq!(
        std::fs::read(up.path().join("w.bin")).expect("uploaded"),
        data
    );
}

#[test]
fn rate_limit_and_session_cap() {
    let s = start(|c| c.rate_limit = 1);
    s.file("f", b"x");
    let sock = client_socket(s.addr, Duration::from_millis(800));
    for _ in 0..10 {
        sock.send_to(&packet::request(false, "f", "octet", &[]), s.addr)
            .expect("rrq");
    }
    let mut answers = 0;
    while recv(&sock).is_some() {
        answers += 1;
    }
    assert!((1..10).contains(&answers), "{answers} answers");
    assert!(s.stats.get_all_counters().requests_rate_limited > 0);

    let s = start(|c| c.max_sessions = 1);
    s.file("f", &content(2000, 15));
    // The held session has answered once: its address is no reflection victim, and may be
    // told it must wait.
    let (held, peer, _) = first_block(&s, "f");
    held.send_to(&packet::ack(1), peer).expect("ack 1");
    held.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let (p, _) = recv(&held).expect("DATA 2: the session heard the ACK");
    assert!(matches!(packet::parse(&p), Ok(Packet::Data(2, _))));
    let g = get(s.addr, "f", "octet", &[]);
    assert_eq!(g.error.map(|e| e.0), Some(0), "busy");
    assert_eq!(s.stats.get_all_counters().requests_over_capacity, 1);
}

#[test]
fn ipv6_loopback() {
    let Some(s) = start_on("::1", |_| {}) else {
        eprintln!("SKIP ipv6_loopback: ::1 not available");
        return;
    };
    let data = content(70_000, 16);
    s.file("f", &data);
    assert_eq!(
        checksum(&get(s.addr, "f", "octet", &[("blksize", "1428")]).data),
        checksum(&data)
    );
    if tool("curl") {
        let out = tempfile::tempdir().expect("tempdir");
        let got = curl_get(s.addr, "f", &[], &out.path().join("f")).expect("curl");
        assert_eq!(checksum(&got), checksum(&data));
    }
}

#[test]
fn wildcard_bind_answers_from_the_address_asked() {
    // Bound to `::` (an ephemeral port, used over loopback only): each session must answer
    // from the address the request went to, for IPv4 and IPv6 clients alike.
    let Some(s) = start_on("::", |_| {}) else {
        eprintln!("SKIP wildcard_bind: cannot bind ::");
        return;
    };
    s.file("f", b"any address");
    let port = s.addr.port();
    for client in ["127.0.0.1", "::1"] {
        let server: SocketAddr = SocketAddr::new(client.parse().expect("ip"), port);
        let sock = client_socket(server, Duration::from_secs(3));
        sock.send_to(&packet::request(false, "f", "octet", &[]), server)
            .expect("rrq");
        let (pkt, from) = recv(&sock).expect("DATA 1");
        assert_eq!(from.ip(), server.ip(), "answer from the address asked");
        assert_ne!(from.port(), port);
        assert_eq!(
            packet::parse(&pkt),
            Ok(Packet::Data(1, &b"any address"[..]))
        );
        sock.send_to(&packet::ack(1), from).expect("ack");
    }
    let st = s.wait_sessions(2);
    assert!(st.iter().all(|x| x.error.is_none()), "{st:?}");
    assert!(st
        .iter()
        .any(|x| x.peer.is_ipv4() && x.server_addr.ip().to_string() == "127.0.0.1"));
}

/// Starts the built `tftpd` with `args` and returns it with its address (from its log).
fn spawn_tftpd(args: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn tftpd");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("tftpd log line").expect("read log");
        if let Some(rest) = line.split(" on ").nth(1) {
            if line.contains("serving") {
                break rest
                    .split(' ')
                    .next()
                    .expect("addr")
                    .parse()
                    .expect("socket addr");
            }
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, addr)
}

#[test]
fn fork_executor_refused_in_a_threaded_process() {
    let mut server = ftpdlib::tftp::TftpServer::new(ftpdlib::tftp::FileHandler::new(".").factory());
    server.address = "127.0.0.1".parse().expect("ip");
    server.port = 0;
    server.executor = ftpdlib::tftp::Executor::Fork;
    // The test harness runs threads, so fork() would be unsafe here.
    let err = server
        .bind()
        .expect("bind")
        .serve_forever()
        .expect_err("refused");
    assert!(err.to_string().contains("single-threaded"), "{err}");
}

#[test]
fn binary_fork_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = content(200_000, 17);
    std::fs::write(dir.path().join("f"), &data).expect("write");
    let root = dir.path().to_str().expect("utf-8 path");
    let (mut child, addr) = spawn_tftpd(&[
        "--root",
        root,
        "--port",
        "0",
        "--address",
        "127.0.0.1",
        "--fork",
        "--timeout",
        "1",
    ]);
    for opts in [&[][..], &[("blksize", "1428"), ("windowsize", "8")][..]] {
        let g = get(addr, "f", "octet", opts);
        assert_eq!(checksum(&g.data), checksum(&data));
    }
    assert_eq!(get(addr, "../x", "octet", &[]).error.map(|e| e.0), Some(2));
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn binary_drops_privileges_with_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP binary_drops_privileges: not running as root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIP binary_drops_privileges: no user nobody");
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("f"), b"as nobody").expect("write");
    std::fs::write(dir.path().join("secret"), b"root only").expect("write");
    std::fs::set_permissions(
        dir.path().join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let root = dir.path().to_str().expect("utf-8 path");
    let (mut child, addr) = spawn_tftpd(&[
        "--root",
        root,
        "--port",
        "0",
        "--address",
        "127.0.0.1",
        "--user",
        "nobody",
    ]);
    assert_eq!(get(addr, "f", "octet", &[]).data, b"as nobody");
    // The file is there but not readable by the unprivileged server: access violation.
    assert_eq!(
        get(addr, "secret", "octet", &[]).error.map(|e| e.0),
        Some(2)
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == nobody.uid.to_string()),
        "{uid_line}"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn binary_inetd_wait_mode_exits_when_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f"), b"from inetd").expect("write");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    let fd: std::os::fd::OwnedFd = sock.into();
    let root = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", root, "--inetd-wait", "--idle-timeout", "1"])
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tftpd");
    assert_eq!(get(addr, "f", "octet", &[]).data, b"from inetd");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status
        .expect("tftpd exits after the idle timeout")
        .success());
}

// ---- Loss recovery: each test reproduces one measured defect of the RFC 7440 sender ----

/// The windowsize of an OACK.
fn oack_window(o: &[(String, String)]) -> usize {
    o.iter()
        .find(|(k, _)| k == "windowsize")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

#[test]
fn big_block_windows_fit_a_default_receive_buffer() {
    use tftp_common::client::{download, ClientCfg};
    use tftp_common::relay::Relay;
    let s = start(|_| {});
    let data = content(2 * 1024 * 1024 + 9, 21);
    s.file("big", &data);
    let opts = [("blksize", "65464"), ("windowsize", "16")];
    // Linux charges 66,300 bytes of receive buffer per 65,468-byte datagram; a window that
    // costs more than net.core.rmem_default (212,992) loses its tail in every client that
    // never enlarged its buffer, and the same window sent again loses it again.
    let g = get(s.addr, "big", "octet", &opts);
    assert_eq!(checksum(&g.data), checksum(&data));
    let w = oack_window(&g.oack.expect("oack"));
    assert!(
        w * 66_300 < 212_992,
        "windowsize {w} overflows a default buffer"
    );
    // A client with a default buffer that drains it only every few milliseconds.
    let relay = Relay::slow_reader(s.addr, Duration::from_millis(4));
    let cfg = ClientCfg {
        deadline: Duration::from_secs(40),
        ..ClientCfg::default()
    };
    let x = download(relay.addr, "big", &opts, &cfg).expect("download through a slow reader");
    assert_eq!(checksum(&x.data), checksum(&data));
}

#[test]
fn ack_inside_the_window_starts_a_new_window_at_once() {
    // A minute's timeout, never shortened by round trips (its floor too): the new window
    // comes within the client's 20 s wait only if the ACK itself started it.
    let s = start(|c| {
        c.timeout = Duration::from_secs(60);
        c.min_timeout = Duration::from_secs(60);
    });
    let data = content(512 * 10 + 7, 22);
    s.file("f", &data);
    let sock = client_socket(s.addr, Duration::from_secs(20));
    let rrq = packet::request(false, "f", "octet", &[("windowsize", "4")]);
    sock.send_to(&rrq, s.addr).expect("rrq");
    let (_, peer) = recv(&sock).expect("OACK");
    sock.send_to(&packet::ack(0), peer).expect("ack 0");
    for b in 1..=4u16 {
        expect_data(&sock, b);
    }
    // Block 3 was "lost": the receiver acknowledges 2 (RFC 7440 §4) and drops 4.
    sock.send_to(&packet::ack(2), peer).expect("ack 2");
    let mut next = Vec::new();
    for _ in 0..4 {
        let (p, _) = recv(&sock).expect("DATA after the ACK");
        let Ok(Packet::Data(n, _)) = packet::parse(&p) else {
            panic!("not DATA")
        };
        next.push(n);
    }
    assert_eq!(
        next,
        [3, 4, 5, 6],
        "a new window from the block after the ACK"
    );
    hang_up(&sock, peer);
}

#[test]
fn retransmission_timeout_follows_the_round_trip() {
    // Configured timeout 60 s; on loopback the measured round trip is far below a
    // millisecond, so a lost block must come again long before (at the 100 ms floor, give
    // or take): within half of it, however slow the machine.
    let s = start(|c| c.timeout = Duration::from_secs(60));
    let data = content(512 * 20 + 1, 23);
    s.file("f", &data);
    let sock = client_socket(s.addr, Duration::from_secs(45));
    sock.send_to(&packet::request(false, "f", "octet", &[]), s.addr)
        .expect("rrq");
    let mut peer = None;
    for b in 1..=10u16 {
        let (_, from) = expect_data(&sock, b);
        peer = Some(from);
        sock.send_to(&packet::ack(b), from).expect("ack");
    }
    let peer = peer.expect("peer");
    let (first, _) = recv(&sock).expect("DATA 11");
    let sent = Instant::now();
    let (again, _) = recv(&sock).expect("DATA 11 again");
    let waited = sent.elapsed();
    assert_eq!(first, again);
    assert!(
        waited < Duration::from_secs(30),
        "retransmitted after {waited:?}: the configured timeout, not the round trip"
    );
    hang_up(&sock, peer);
}

#[test]
fn duplicated_packets_cost_no_timeout() {
    use tftp_common::client::{download, ClientCfg};
    use tftp_common::relay::{Loss, Relay};
    // Every fifth DATA and every fifth ACK twice: each download completes whole, well
    // within a liveness limit (a stalled session gives up after 5 timeouts of 3 s; the
    // client after 40 of 300 ms). How fast is not asserted: on a loaded machine the
    // adaptive timeout (100 ms floor) may fire, which costs time but not the transfer.
    let s = start(|c| c.timeout = Duration::from_secs(3));
    let data = content(65464 * 12 + 100, 24);
    s.file("f", &data);
    for (bs, w) in [("65464", "4"), ("1468", "8"), ("512", "1")] {
        let relay = Relay::start(s.addr, Loss::Duplicate(5));
        let started = Instant::now();
        let x = download(
            relay.addr,
            "f",
            &[("blksize", bs), ("windowsize", w)],
            &ClientCfg::default(),
        )
        .expect("download");
        assert_eq!(checksum(&x.data), checksum(&data));
        assert!(relay.stats().duplicated > 0);
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "blksize {bs} windowsize {w}: {:?}",
            started.elapsed()
        );
    }
}

// ---- Reflection and exhaustion ----

/// Everything a socket receives until `quiet` passes without a packet.
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    std::iter::from_fn(|| recv(sock).map(|(p, _)| p)).collect()
}

#[test]
fn spoofed_request_gets_at_most_two_packets() {
    let s = start(|c| {
        c.timeout = Duration::from_millis(300);
        c.retries = 5;
    });
    s.file("f", &content(3000, 25));
    let cases: [&[(&str, &str)]; 2] = [&[], &[("blksize", "1024"), ("tsize", "0")]];
    for (i, opts) in cases.iter().enumerate() {
        // The "victim": a socket that receives and never answers.
        let victim = client_socket(s.addr, Duration::from_secs(3));
        let rrq = packet::request(false, "f", "octet", opts);
        victim.send_to(&rrq, s.addr).expect("rrq");
        let st = s.wait_sessions(i + 1);
        assert_eq!(st.len(), i + 1, "the session gives up by itself");
        let got = drain(&victim, Duration::from_millis(500));
        assert!(
            (1..=2).contains(&got.len()),
            "{opts:?}: {} packets to a peer that never answered",
            got.len()
        );
        let bytes: usize = got.iter().map(Vec::len).sum();
        assert!(bytes <= 2 * got[0].len(), "{bytes} bytes");
    }
}

#[test]
fn one_source_cannot_take_every_slot() {
    let Some(s) = start_on("::", |c| c.max_sessions = 12) else {
        eprintln!("SKIP one_source_cannot_take_every_slot: cannot bind ::");
        return;
    };
    s.file("f", &content(2000, 26));
    let v4: SocketAddr = SocketAddr::new("127.0.0.1".parse().expect("ip"), s.addr.port());
    let v6: SocketAddr = SocketAddr::new("::1".parse().expect("ip"), s.addr.port());
    // Twelve sessions asked from 127.0.0.1, none of them ever acknowledged.
    let held: Vec<(UdpSocket, Option<SocketAddr>)> = (0..12)
        .map(|_| {
            let sock = client_socket(v4, Duration::from_millis(800));
            sock.send_to(&packet::request(false, "f", "octet", &[]), v4)
                .expect("rrq");
            let peer = recv(&sock).and_then(|(p, from)| {
                matches!(packet::parse(&p), Ok(Packet::Data(1, _))).then_some(from)
            });
            (sock, peer)
        })
        .collect();
    let served = held.iter().filter(|(_, p)| p.is_some()).count();
    assert!(
        (1..12).contains(&served),
        "{served} sessions for one address out of 12 slots"
    );
    // Another address still gets a slot.
    let g = get(v6, "f", "octet", &[]);
    assert_eq!(g.error, None, "refused while one address holds the slots");
    assert_eq!(g.data.len(), 2000);
    for (sock, peer) in &held {
        if let Some(peer) = peer {
            let _ = sock.send_to(
                &packet::error(ftpdlib::tftp::ErrorCode::NotDefined, "bye"),
                *peer,
            );
        }
    }
}

#[test]
fn timeout_255_is_not_accepted() {
    let s = start(|_| {});
    s.file("f", b"data");
    let g = get(
        s.addr,
        "f",
        "octet",
        &[("timeout", "255"), ("blksize", "1024")],
    );
    assert_eq!(g.data, b"data");
    assert_eq!(
        g.oack,
        Some(pairs(&[("blksize", "1024")])),
        "a 255 s timeout would hold a slot for minutes"
    );
}

#[test]
fn wrq_names_with_control_characters_are_refused() {
    let up = tempfile::tempdir().expect("tempdir");
    let updir = up.path().to_owned();
    let s = start(move |c| c.upload_dir = Some(updir));
    for name in [
        "log\r\n227 Entering passive mode",
        "a\nb",
        "bell\x07",
        "esc\x1b[2J",
    ] {
        assert_eq!(
            put(s.addr, name, b"x", &[]).map_err(|e| e.0),
            Err(2),
            "{name:?}"
        );
    }
    assert_eq!(std::fs::read_dir(up.path()).expect("readdir").count(), 0);
    assert_eq!(put(s.addr, "fine name.txt", b"x", &[]), Ok(None));
}

#[test]
fn binary_out_of_descriptors_answers_and_keeps_serving() {
    if !tool("prlimit") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f"), content(5000, 27)).expect("write");
    let root = dir.path().to_str().expect("utf-8 path");
    // 12 descriptors: stdin/out/err and the server socket leave 8, two or three sessions.
    let mut child = Command::new("prlimit")
        .args(["--nofile=12:12", "--"])
        .arg(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", root, "--port", "0", "--address", "127.0.0.1"])
        .args(["--timeout", "5", "--rate-limit", "0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn prlimit tftpd");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("tftpd log line").expect("read log");
        if line.contains("serving") {
            let rest = line.split(" on ").nth(1).expect("addr");
            break rest.split(' ').next().expect("addr").parse().expect("addr");
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    // Sessions held open (never acknowledged) until descriptors run out.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let sock = client_socket(addr, Duration::from_secs(3));
        sock.send_to(&packet::request(false, "f", "octet", &[]), addr)
            .expect("rrq");
        let (p, from) = recv(&sock).expect("an answer, DATA or ERROR, never silence");
        match packet::parse(&p) {
            Ok(Packet::Data(1, _)) => held.push((sock, from)),
            Ok(Packet::Error(0, msg)) => {
                refused = Some(msg);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let msg = refused.expect("descriptors ran out within six sessions");
    assert!(msg.contains("try again"), "{msg}");
    // The held sessions end; the server serves again.
    for (sock, peer) in &held {
        hang_up(sock, *peer);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let served = loop {
        let g = get(addr, "f", "octet", &[]);
        if g.data.len() == 5000 || Instant::now() > deadline {
            break g.data.len() == 5000;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "the server serves again once descriptors are free");
}

#[test]
fn a_session_ends_at_its_time_limit() {
    let s = start(|c| c.max_session_time = Some(Duration::from_secs(2)));
    s.file("f", &content(8 * 200, 28));
    let sock = client_socket(s.addr, Duration::from_secs(3));
    // Acknowledging one 8-byte block every 300 ms, a client would hold its slot for a
    // minute; a 255 s timeout once held it for 25.
    let rrq = packet::request(false, "f", "octet", &[("blksize", "8"), ("timeout", "255")]);
    let started = Instant::now();
    sock.send_to(&rrq, s.addr).expect("rrq");
    let (_, peer) = recv(&sock).expect("OACK");
    sock.send_to(&packet::ack(0), peer).expect("ack 0");
    let ended = loop {
        // Without the limit the 200 blocks take a minute.
        assert!(started.elapsed() < Duration::from_secs(45), "no time limit");
        let Some((p, _)) = recv(&sock) else { continue };
        match packet::parse(&p) {
            Ok(Packet::Data(b, _)) => {
                std::thread::sleep(Duration::from_millis(300));
                sock.send_to(&packet::ack(b), peer).expect("ack");
            }
            Ok(Packet::Error(0, msg)) => break msg,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(ended.contains("time limit"), "{ended}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended before its limit"
    );
    let st = s.wait_sessions(1);
    assert!(st[0].blocks < 200);
    assert!(st[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("time limit"));
}

/// `--fork`: the sessions run in children, and their bytes and packets still reach the
/// server's counters (shared memory made before the fork), not only their outcome.
#[test]
fn binary_fork_mode_counts_the_childrens_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = content(100_000, 3);
    std::fs::write(dir.path().join("f"), &data).expect("write");
    let root = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--root",
            root,
            "--port",
            "0",
            "--address",
            "127.0.0.1",
            "--fork",
        ])
        .args(["--timeout", "1", "--stats-interval", "1"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn tftpd");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("serving") {
                if let Some(a) = line.split(" on ").nth(1).and_then(|r| r.split(' ').next()) {
                    let _ = tx.send(a.to_string());
                }
            }
            sink.lock().expect("log").push_str(&(line + "\n"));
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tftpd started")
        .parse()
        .expect("addr");
    for _ in 0..2 {
        assert_eq!(
            checksum(&get(addr, "f", "octet", &[]).data),
            checksum(&data)
        );
    }
    // Each stats line counts one interval; add them up until both files are in.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let sent = loop {
        let text = log.lock().expect("log").clone();
        let sent: u64 = text
            .lines()
            .filter_map(|l| l.split("bytes ").nth(1))
            .filter_map(|r| r.split(' ').next()?.parse::<u64>().ok())
            .sum();
        if sent >= 2 * data.len() as u64 || std::time::Instant::now() > deadline {
            break (sent, text);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        sent.0 >= 2 * data.len() as u64,
        "bytes sent {}:\n{}",
        sent.0,
        sent.1
    );
}
