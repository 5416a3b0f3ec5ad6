//! The fast paths give the same bytes as the slow ones: RETR by sendfile(2) from a REST
//! offset and by the buffered copy, STOR through the reused buffer (binary and ASCII), and
//! listings whose entries are stat'ed by name on the open directory (a directory larger than
//! the sort limit, symlinks, and Latin-1 names).

mod common;
use common::*;
use ftpdlib::handlers::Encoding;
use ftpdlib::servers::Executor;

fn retr_from_rest_offset(ex: Executor) {
    for sendfile in [true, false] {
        let s = builder()
            .executor(ex)
            .handler(move |h| h.use_sendfile = sendfile)
            .start();
        let data = pattern(3 << 20);
        s.write("f", &data);
        let mut c = s.login();
        assert!(c.retr_as_buffer("f").unwrap().into_inner() == data);
        c.resume_transfer(1_000_003).unwrap();
        let tail = c.retr_as_buffer("f").unwrap().into_inner();
        assert!(tail == data[1_000_003..], "sendfile={sendfile}: wrong tail");
        // ASCII mode takes the buffer path and converts line ends (RFC 959 §3.1.1.1).
        s.write("t.txt", b"a\nb\r\nc\n");
        let mut r = s.raw_login();
        r.cmd("TYPE A");
        let d = r.pasv();
        let (code, _) = r.cmd("RETR t.txt");
        assert!(code == 125 || code == 150);
        assert_eq!(read_all(d), b"a\r\nb\r\nc\r\n");
        assert_eq!(r.reply().0, 226);
    }
}

fn stor_binary_and_ascii(ex: Executor) {
    let s = start(ex);
    let data = pattern((5 << 20) + 17);
    let mut c = s.login();
    c.put_file("up", &mut &data[..]).unwrap();
    assert!(s.read("up") == data, "binary upload changed");
    let mut r = s.raw_login();
    r.cmd("TYPE A");
    let mut d = r.pasv();
    let (code, _) = r.cmd("STOR a.txt");
    assert!(code == 125 || code == 150);
    std::io::Write::write_all(&mut d, b"x\r\ny\r\n\r").unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(s.read("a.txt"), b"x\ny\n\r");
}

fn big_listing_with_symlinks(ex: Executor) {
    let s = start(ex);
    let n = 5000; // above the sort limit: the streamed path
    std::fs::create_dir(s.path("d")).unwrap();
    for i in 0..n {
        std::fs::write(s.path(&format!("d/f{i:05}")), b"").unwrap();
    }
    s.write("d/sized", b"12345");
    std::fs::create_dir(s.path("d/sub")).unwrap();
    std::os::unix::fs::symlink("sized", s.path("d/link")).unwrap();
    let mut c = s.login();
    let list = c.list(Some("d")).unwrap();
    assert_eq!(list.len(), n + 3);
    let link = list.iter().find(|l| l.ends_with(" link -> sized")).unwrap();
    assert!(link.starts_with('l'), "{link}");
    let sub = list.iter().find(|l| l.ends_with(" sub")).unwrap();
    assert!(sub.starts_with('d'), "{sub}");
    let sized = list.iter().find(|l| l.ends_with(" sized")).unwrap();
    assert!(sized.contains(" 5 "), "{sized}");
    let mlsd = c.mlsd(Some("d")).unwrap();
    assert_eq!(mlsd.len(), n + 3);
    // MLSx follows symlinks (RFC 3659 §7.5.2 `unique`): the link shows as the file.
    let link = mlsd.iter().find(|l| l.ends_with(" link")).unwrap();
    assert!(
        link.contains("type=file;") && link.contains("size=5;"),
        "{link}"
    );
    assert!(mlsd
        .iter()
        .any(|l| l.contains("type=dir;") && l.ends_with(" sub")));
    assert_eq!(c.nlst(Some("d")).unwrap().len(), n + 3);
    // A small directory is sorted.
    let small = c.nlst(None).unwrap();
    assert_eq!(small, vec!["d".to_string()]);
}

fn latin1_names_in_listings(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.encoding = Encoding::Latin1)
        .start();
    s.write("caf\u{e9}", b"abc");
    for cmd in ["NLST", "LIST", "MLSD"] {
        let mut r = s.raw_login();
        let d = r.pasv();
        let (code, _) = r.cmd(cmd);
        assert!(code == 125 || code == 150, "{cmd}: {code}");
        let out = read_all(d);
        assert_eq!(r.reply().0, 226);
        assert!(
            out.windows(5).any(|w| w == b"caf\xe9\r"),
            "{cmd}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

models!(
    retr_from_rest_offset,
    stor_binary_and_ascii,
    big_listing_with_symlinks,
    latin1_names_in_listings,
);
