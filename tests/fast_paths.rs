//! The fast paths give the same bytes as the slow ones: RETR by sendfile(2) from a REST
//! offset and by the buffered copy, STOR through the reused buffer (binary and ASCII), and
//! listings whose entries are stat'ed by name on the open directory (a directory larger than
//! the sort limit, symlinks, and Latin-1 names). Uploads past 8 MiB, whose writes move to a
//! helper thread, arrive whole, and a disk failing under them is reported, not 226.

mod common;
use common::*;
use ftpdlib::filesystems::{DirIter, Filesystem, OsFilesystem, ReadStream, Stat, WriteMode};
use ftpdlib::handlers::Encoding;
use ftpdlib::servers::Executor;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// Uploads large enough to be written by a helper thread: STOR, APPE onto it, and STOR
/// from a REST offset all leave exactly the bytes sent.
fn large_uploads_arrive_whole(ex: Executor) {
    let s = start(ex);
    let a = pattern((20 << 20) + 5);
    let mut c = s.login();
    c.transfer_type(FileType::Binary).unwrap();
    c.put_file("big", &mut &a[..]).unwrap();
    assert!(s.read("big") == a, "STOR changed the file");
    let b: Vec<u8> = pattern((9 << 20) + 3).iter().map(|x| x ^ 0x5a).collect();
    c.append_file("big", &mut &b[..]).unwrap();
    let mut want = a.clone();
    want.extend_from_slice(&b);
    assert!(s.read("big") == want, "APPE changed the file");
    c.resume_transfer(1 << 20).unwrap();
    c.put_file("big", &mut &b[..]).unwrap();
    // REST + STOR overwrites from the offset and keeps what lies beyond (no truncation).
    let mut after = want[..1 << 20].to_vec();
    after.extend_from_slice(&b);
    after.extend_from_slice(&want[(1 << 20) + b.len()..]);
    let want = after;
    assert_eq!(s.read("big").len(), want.len());
    assert!(s.read("big") == want, "REST + STOR changed the file");
}

/// A file that fails with ENOSPC after `room` bytes.
struct Tight {
    file: Box<dyn Write + Send>,
    room: usize,
}

impl Write for Tight {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if b.len() > self.room {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        self.room -= b.len();
        self.file.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The local filesystem with a disk that fills up after 12 MiB of any upload.
struct TightDisk(OsFilesystem);

impl Filesystem for TightDisk {
    fn open_read(&mut self, p: &Path, offset: u64) -> io::Result<ReadStream> {
        self.0.open_read(p, offset)
    }
    fn open_write(
        &mut self,
        p: &Path,
        mode: WriteMode,
        perm: u32,
    ) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(Tight {
            file: self.0.open_write(p, mode, perm)?,
            room: 12 << 20,
        }))
    }
    fn mkdir(&mut self, p: &Path, perm: u32) -> io::Result<()> {
        self.0.mkdir(p, perm)
    }
    fn rmdir(&mut self, p: &Path) -> io::Result<()> {
        self.0.rmdir(p)
    }
    fn remove(&mut self, p: &Path) -> io::Result<()> {
        self.0.remove(p)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn chmod(&mut self, p: &Path, mode: u32) -> io::Result<()> {
        self.0.chmod(p, mode)
    }
    fn utime(&mut self, p: &Path, t: SystemTime) -> io::Result<()> {
        self.0.utime(p, t)
    }
    fn stat(&mut self, p: &Path) -> io::Result<Stat> {
        self.0.stat(p)
    }
    fn lstat(&mut self, p: &Path) -> io::Result<Stat> {
        self.0.lstat(p)
    }
    fn listdir(&mut self, p: &Path) -> io::Result<DirIter> {
        self.0.listdir(p)
    }
    fn readlink(&mut self, p: &Path) -> io::Result<PathBuf> {
        self.0.readlink(p)
    }
}

/// A disk that fills up while a helper thread writes an upload: 452, never 226, and the
/// session goes on.
fn disk_full_during_a_large_upload_is_452(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.filesystem =
                std::sync::Arc::new(|_user, root| Ok(Box::new(TightDisk(OsFilesystem::new(root)?))))
        })
        .start();
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let mut d = r.pasv();
    let (code, _) = r.cmd("STOR full");
    assert!(code == 125 || code == 150, "{code}");
    let chunk = pattern(1 << 20);
    // The server stops reading once the disk is full: the client may see its writes fail.
    for _ in 0..20 {
        if d.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(d);
    let (code, text) = r.reply();
    assert_eq!(code, 452, "{text}");
    assert_eq!(r.cmd("NOOP").0, 200);
    assert!(s.read("full").len() <= 12 << 20);
}

models!(
    large_uploads_arrive_whole,
    disk_full_during_a_large_upload_is_452,
    retr_from_rest_offset,
    stor_binary_and_ascii,
    big_listing_with_symlinks,
    latin1_names_in_listings,
);
