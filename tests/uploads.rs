//! Uploads that never interleave: the upload lock (vsftpd `lock_upload_files`: a second
//! writer of a name gets 450, a reader of a name being uploaded gets 450), atomic uploads
//! (`--atomic-uploads`: a hidden temporary file renamed over the name on success), and an
//! upload cut by a TCP reset that keeps every byte the server had received.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::io::Write;
use std::path::Path;

/// A server with atomic uploads on.
fn atomic(ex: Executor) -> Server {
    builder()
        .executor(ex)
        .config(&["--atomic-uploads"], |h| h.atomic_uploads = true)
        .start()
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The size of the largest file in `dir` (an upload in progress, under whatever name).
fn largest(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0)
}

fn status(e: FtpError) -> u32 {
    match e {
        FtpError::UnexpectedResponse(r) => r.status.code(),
        other => panic!("not a reply: {other}"),
    }
}

/// Two overlapping STORs of one name: while the first runs the second gets 450 and its
/// session goes on; the file is exactly the first upload, never a mix; once the first
/// has ended the second may store.
fn overlapping_stors_never_interleave(ex: Executor) {
    let s = start(ex);
    let a_data = vec![b'A'; 4 << 20];
    let b_data = vec![b'B'; 4 << 20];
    let mut a = s.login();
    let mut b = s.login();
    let mut wa = a.put_with_stream("same.bin").unwrap();
    wa.write_all(&a_data[..1 << 20]).unwrap();
    match b.put_with_stream("same.bin") {
        Ok(mut wb) => {
            // The behaviour this test guards against: both uploads run at once.
            wb.write_all(&b_data).unwrap();
            wb.finish().unwrap();
        }
        Err(e) => assert_eq!(status(e), 450, "the second writer is refused"),
    }
    wa.write_all(&a_data[1 << 20..]).unwrap();
    wa.finish().unwrap();
    let got = s.read("same.bin");
    assert!(
        got == a_data || got == b_data,
        "a mix of two uploads: {} bytes, starts with {:?}, ends with {:?}",
        got.len(),
        got.first(),
        got.last()
    );
    assert_eq!(got, a_data, "the first upload holds the name");
    b.noop().unwrap();
    b.put_file("same.bin", &mut &b_data[..]).unwrap();
    assert_eq!(s.read("same.bin"), b_data, "the name is free again");
}

/// A download of a file being uploaded gets 450 (it would read a partial file and be told
/// 226); once the upload has ended the download works.
fn download_of_a_file_being_uploaded_waits(ex: Executor) {
    let s = start(ex);
    let data = pattern(2 << 20);
    s.write("f.bin", b"old");
    let mut up = s.login();
    let mut down = s.login();
    let mut w = up.put_with_stream("f.bin").unwrap();
    w.write_all(&data[..1 << 20]).unwrap();
    match down.retr_as_buffer("f.bin") {
        Ok(got) => panic!(
            "a partial file was served: {} bytes",
            got.into_inner().len()
        ),
        Err(e) => assert_eq!(status(e), 450),
    }
    w.write_all(&data[1 << 20..]).unwrap();
    w.finish().unwrap();
    assert_eq!(down.retr_as_buffer("f.bin").unwrap().into_inner(), data);
}

/// Without atomic uploads, a STOR over an existing file that is cut (ABOR) after 100 KB
/// leaves the 100 KB received: the old contents are gone (documented in the README).
fn cut_stor_keeps_what_arrived(ex: Executor) {
    let s = start(ex);
    let old = vec![b'o'; 300_000];
    let new = pattern(1 << 20);
    s.write("f", &old);
    let mut c = s.login();
    let mut w = c.put_with_stream("f").unwrap();
    w.write_all(&new[..100_000]).unwrap();
    w.flush().unwrap();
    let path = s.path("f");
    wait_for("100 KB on disk", || {
        std::fs::metadata(&path).map(|m| m.len()).ok() == Some(100_000)
    });
    c.abort(w).unwrap();
    assert_eq!(s.read("f"), &new[..100_000]);
    c.noop().unwrap();
}

/// With atomic uploads the same cut leaves the old file byte for byte and no temporary
/// file behind; while the upload runs a download gets the old file whole.
fn atomic_cut_stor_keeps_the_old_file(ex: Executor) {
    let s = atomic(ex);
    let old = pattern(300_000);
    let new = vec![b'n'; 1 << 20];
    s.write("f", &old);
    let mut c = s.login();
    let mut w = c.put_with_stream("f").unwrap();
    w.write_all(&new[..100_000]).unwrap();
    w.flush().unwrap();
    wait_for("100 KB in the temporary file", || {
        std::fs::read_dir(&s.root)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name() != "f" && e.metadata().map(|m| m.len()).ok() == Some(100_000))
    });
    let mut reader = s.login();
    assert_eq!(
        reader.retr_as_buffer("f").unwrap().into_inner(),
        old,
        "a reader sees the old file whole"
    );
    c.abort(w).unwrap();
    assert_eq!(s.read("f"), old, "the old file survives");
    assert_eq!(
        names(&s.root),
        vec!["f".to_string()],
        "no temporary file left"
    );
    // A complete upload replaces it.
    c.put_file("f", &mut &new[..]).unwrap();
    assert_eq!(s.read("f"), new);
    assert_eq!(names(&s.root), vec!["f".to_string()]);
}

/// Atomic APPE copies the old contents then appends; atomic REST n + STOR keeps the first
/// n bytes and ends where the upload ends; an aborted APPE leaves the old file.
fn atomic_appe_and_rest(ex: Executor) {
    let s = atomic(ex);
    s.write("log", b"first\n");
    let mut c = s.login();
    c.append_file("log", &mut &b"second\n"[..]).unwrap();
    assert_eq!(s.read("log"), b"first\nsecond\n");
    c.append_file("new", &mut &b"fresh"[..]).unwrap();
    assert_eq!(s.read("new"), b"fresh", "APPE creates a missing file");
    s.write("r", b"0123456789");
    c.resume_transfer(4).unwrap();
    c.put_file("r", &mut &b"abc"[..]).unwrap();
    assert_eq!(s.read("r"), b"0123abc");
    let mut w = c.append_with_stream("log").unwrap();
    w.write_all(&vec![b'x'; 50_000]).unwrap();
    w.flush().unwrap();
    wait_for("the append on disk", || largest(&s.root) >= 50_000);
    c.abort(w).unwrap();
    assert_eq!(s.read("log"), b"first\nsecond\n");
    let mut left = names(&s.root);
    left.retain(|n| n.starts_with('.'));
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Atomic STOU: the unique name holds the whole upload; an aborted STOU leaves nothing.
fn atomic_stou(ex: Executor) {
    let s = atomic(ex);
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut d = r.pasv();
    let (code, text) = r.cmd("STOU");
    assert!(code == 125 || code == 150, "{text}");
    let name = text.split("FILE: ").nth(1).unwrap().trim().to_string();
    d.write_all(b"unique contents").unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read(&name), b"unique contents");
    let mut d = r.pasv();
    let (code, _) = r.cmd("STOU");
    assert!(code == 125 || code == 150);
    d.write_all(&[7u8; 30_000]).unwrap();
    d.flush().unwrap();
    wait_for("the STOU upload on disk", || largest(&s.root) >= 30_000);
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    drop(d);
    assert_eq!(names(&s.root), vec![name], "the aborted STOU left nothing");
}

/// Bytes in the send and receive queues of the TCP socket from `local` to `remote` port on
/// loopback, from /proc/net/tcp (`tx_queue:rx_queue`).
fn tcp_queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
            if f.len() > 4 && port(f[1]) == Some(local) && port(f[2]) == Some(remote) {
                let (tx, rx) = f[4].split_once(':')?;
                return Some((
                    u64::from_str_radix(tx, 16).ok()?,
                    u64::from_str_radix(rx, 16).ok()?,
                ));
            }
        }
    }
    None
}

/// A large upload (past the 8 MiB helper-thread threshold) cut by a TCP reset keeps every
/// byte the server had read: the client sends everything, waits until its socket has no
/// unacknowledged byte and the server's socket no unread one (so the server process holds
/// every byte), resets the connection (SO_LINGER 0), and the file must be whole.
fn reset_upload_keeps_every_received_byte(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut d = r.pasv();
    let (code, text) = r.cmd("STOR big.bin");
    assert!(code == 125 || code == 150, "{text}");
    let sent = pattern((9 << 20) + 54_321);
    let (client, server) = (
        d.local_addr().unwrap().port(),
        d.peer_addr().unwrap().port(),
    );
    let drained = || {
        wait_for("the server to read every byte", || {
            matches!(tcp_queues(client, server), Some((0, _)))
                && matches!(tcp_queues(server, client), Some((_, 0)))
        })
    };
    // The bulk, then a small tail read on its own: it is still in the server's buffer,
    // not yet handed to the file, when the reset comes.
    let tail = sent.len() - 1000;
    d.write_all(&sent[..tail]).unwrap();
    drained();
    d.write_all(&sent[tail..]).unwrap();
    drained();
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&d, nix::sys::socket::sockopt::Linger, &linger).unwrap();
    drop(d);
    let (code, text) = r.reply();
    assert_eq!(code, 426, "{text}");
    let got = s.read("big.bin");
    assert_eq!(
        got.len(),
        sent.len(),
        "bytes lost after the reset: {}",
        sent.len() as i64 - got.len() as i64
    );
    assert!(got == sent, "the file differs from what was sent");
    assert_eq!(r.cmd("NOOP").0, 200, "the session goes on");
}

models!(; bin:
    overlapping_stors_never_interleave,
    download_of_a_file_being_uploaded_waits,
    cut_stor_keeps_what_arrived,
    atomic_cut_stor_keeps_the_old_file,
    atomic_appe_and_rest,
    atomic_stou,
    reset_upload_keeps_every_received_byte,
);

/// The lock is advisory and the handler's to give up: with `lock_upload_files` off a second
/// writer is not refused (pyftpdlib's behaviour).
#[test]
fn lock_upload_files_can_be_turned_off() {
    let s = builder().handler(|h| h.lock_upload_files = false).start();
    let mut a = s.login();
    let mut b = s.login();
    let mut wa = a.put_with_stream("x").unwrap();
    wa.write_all(b"aaaa").unwrap();
    wa.flush().unwrap();
    let mut wb = b.put_with_stream("x").expect("no lock, no 450");
    wb.write_all(b"bb").unwrap();
    wb.finish().unwrap();
    wa.finish().unwrap();
}
