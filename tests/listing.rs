//! Listings: LIST, NLST, MLSD, MLST, OPTS MLST, STAT <path>; streaming of big directories.

mod common;
use common::*;
use ftpdlib::servers::Executor;

fn list_format(ex: Executor) {
    let s = start(ex);
    s.write("a.txt", b"hello");
    std::fs::create_dir(s.path("dir")).unwrap();
    std::os::unix::fs::symlink("a.txt", s.path("link")).unwrap();
    let mut c = s.login();
    let lines = c.list(None).unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let a = lines
        .iter()
        .find(|l| l.ends_with(" a.txt"))
        .expect("a.txt listed");
    assert!(a.starts_with("-rw"), "{a}");
    let cols: Vec<&str> = a.split_whitespace().collect();
    assert_eq!(cols[4], "5", "size column: {a}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with('d') && l.ends_with(" dir")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with('l') && l.ends_with(" link -> a.txt")));
    // Sorted, as RFC 959 recommends for small directories.
    let order: Vec<bool> = ["a.txt", "dir", "link -> a.txt"]
        .iter()
        .zip(&lines)
        .map(|(n, l)| l.ends_with(n))
        .collect();
    assert_eq!(order, [true, true, true], "{lines:?}");
    // ls options are ignored; a file argument lists one line.
    assert_eq!(c.list(Some("-la")).unwrap().len(), 3);
    assert_eq!(c.list(Some("-a dir")).unwrap().len(), 0);
    let one = c.list(Some("a.txt")).unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].ends_with(" a.txt"));
    assert!(c.list(Some("missing")).is_err());
}

fn nlst_names(ex: Executor) {
    let s = start(ex);
    for n in ["b", "a", "c"] {
        s.write(n, b"");
    }
    let mut c = s.login();
    assert_eq!(c.nlst(None).unwrap(), ["a", "b", "c"]);
    assert_eq!(c.nlst(Some("b")).unwrap(), ["b"]);
    assert_eq!(c.nlst(Some("-l")).unwrap().len(), 3);
}

fn mlsd_and_mlst(ex: Executor) {
    let s = start(ex);
    s.write("f", b"12345");
    std::fs::create_dir(s.path("d")).unwrap();
    let mut c = s.login();
    let lines = c.mlsd(None).unwrap();
    let f = lines.iter().find(|l| l.ends_with(" f")).unwrap();
    assert!(f.starts_with("modify="), "{f}");
    assert!(f.contains("perm=radfwMT;"), "{f}");
    assert!(f.contains("size=5;type=file;"), "{f}");
    let d = lines.iter().find(|l| l.ends_with(" d")).unwrap();
    assert!(d.contains("type=dir;"), "{d}");
    assert!(d.contains("perm=eldfmMTcp;"), "{d}");
    // pyftpdlib on POSIX shows `unique` by default.
    assert!(d.contains(";unique="), "{d}");
    let mut r = s.raw_login();
    let (code, text) = r.cmd("MLST f");
    assert_eq!(code, 250);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "250-Listing \"/f\":");
    assert!(
        lines[1].starts_with(" modify=") && lines[1].ends_with("; /f"),
        "{text}"
    );
    assert_eq!(lines[2], "250 End MLST.");
    assert_eq!(r.cmd("MLST missing").0, 550);
    let (code, text) = r.cmd("OPTS MLST type;size;unix.mode;");
    assert_eq!(
        (code, text.trim_end()),
        (200, "200 MLST OPTS type;size;unix.mode;")
    );
    let (_, text) = r.cmd("MLST f");
    assert!(text.contains(" size=5;type=file;unix.mode=0"), "{text}");
    assert!(!text.contains("modify="), "{text}");
    assert_eq!(r.cmd("OPTS MLSD type;").0, 501);
    // MLSD of a file is refused.
    let _data = r.pasv();
    let (code, _) = r.cmd("MLSD f");
    assert_eq!(code, 501);
    // So is a missing one, with the same reply (pyftpdlib checks isdir only).
    let (code, text) = r.cmd("MLSD missing");
    assert_eq!((code, text.trim_end()), (501, "501 No such directory."));
}

fn stat_over_control(ex: Executor) {
    let s = start(ex);
    s.write("x.bin", b"1");
    let mut r = s.raw();
    let (code, text) = r.cmd("STAT");
    assert_eq!(code, 211);
    assert!(text.contains("Waiting for username."), "{text}");
    assert_eq!(r.cmd("STAT /").0, 530, "STAT <path> needs login");
    r.cmd("USER user");
    r.cmd("PASS 12345");
    let (code, text) = r.cmd("STAT");
    assert_eq!(code, 211);
    assert!(text.contains("Logged in as: user"), "{text}");
    assert!(text.ends_with("211 End of status.\r\n"), "{text}");
    let (code, text) = r.cmd("STAT /");
    assert_eq!(code, 213);
    assert!(text.starts_with("213-Status of \"/\":"), "{text}");
    assert!(text.contains(" x.bin\r\n"), "{text}");
    assert!(text.ends_with("213 End of status.\r\n"));
    assert_eq!(
        r.cmd("STAT *.bin").1.trim_end(),
        "550 Globbing not supported."
    );
}

fn huge_directory_streams(ex: Executor) {
    let s = start(ex);
    // More than the sort limit, so the tail streams straight from readdir.
    let n = 5000;
    for i in 0..n {
        std::fs::write(s.path(&format!("file{i:05}")), b"").unwrap();
    }
    let mut c = s.login();
    let mut names = c.nlst(None).unwrap();
    assert_eq!(names.len(), n);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "no entry twice");
    assert_eq!(c.list(None).unwrap().len(), n);
    assert_eq!(c.mlsd(None).unwrap().len(), n);
}

fn listing_with_curl(ex: Executor) {
    if !tool("curl") {
        return;
    }
    let s = start(ex);
    s.write("hello.txt", b"hi");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            &format!("ftp://user:12345@{}/", s.addr),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" hello.txt"), "{text}");
}

models!(
    bin: list_format,
    nlst_names,
    mlsd_and_mlst,
    stat_over_control,
    huge_directory_streams,
    listing_with_curl,
);
