//! Handler configuration: masquerade map, encodings, data and passive timeouts, and a custom
//! filesystem serving content that is not a plain file.

mod common;
use common::*;
use ftpdlib::filesystems::{DirIter, FileKind, Filesystem, ReadStream, Stat, WriteMode};
use ftpdlib::servers::Executor;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn masquerade_map_per_local_address(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.masquerade_address = Some("1.1.1.1".parse().unwrap());
            h.masquerade_address_map =
                vec![("127.0.0.1".parse().unwrap(), "2.2.2.2".parse().unwrap())];
        })
        .start();
    let mut r = s.raw_login();
    let (_, text) = r.cmd("PASV");
    assert!(
        text.contains("(2,2,2,2,"),
        "the map wins for its local address: {text}"
    );
}

fn latin1_encoding(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.encoding = ftpdlib::handlers::Encoding::Latin1)
        .start();
    let mut r = s.raw_login();
    // "café" in ISO-8859-1 on the wire becomes UTF-8 on disk, and back.
    r.send_bytes(b"MKD caf\xe9\r\n");
    let (code, text) = r.reply();
    assert_eq!(code, 257);
    // The reply names the directory in ISO-8859-1 again (shown here through a lossy decode).
    assert!(
        text.contains("\"/caf\u{FFFD}\" directory created."),
        "{text:?}"
    );
    assert!(s.path("café").is_dir(), "stored as UTF-8");
    let d = r.pasv();
    assert_eq!(r.cmd("NLST").0, 125);
    assert_eq!(read_all(d), b"caf\xe9\r\n");
    assert_eq!(r.reply().0, 226);
    // pyftpdlib announces UTF8 in FEAT only when the encoding is UTF-8.
    let (code, feat) = r.cmd("FEAT");
    assert_eq!(code, 211);
    assert!(!feat.contains("UTF8"), "{feat}");
}

fn data_timeout_closes(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.data_timeout = Some(Duration::from_millis(300)))
        .start();
    let mut r = s.raw_login();
    let _d = r.pasv();
    assert_eq!(r.cmd("STOR stalled").0, 125);
    // The client sends nothing.
    let (code, text) = r.reply();
    assert_eq!(
        (code, text.trim_end()),
        (421, "421 Data connection timed out.")
    );
    assert!(r.is_closed());
}

fn data_timeout_between_commands(ex: Executor) {
    // pyftpdlib test_data_timeout / test_idle_data_timeout1: a data connection made and
    // left unused ends the session, even with a shorter control idle timeout (suspended
    // while a data connection is open).
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.data_timeout = Some(Duration::from_millis(400));
            h.timeout = Some(Duration::from_millis(200));
        })
        .start();
    let mut r = s.raw_login();
    let _d = r.pasv();
    assert_eq!(r.reply().1.trim_end(), "421 Data connection timed out.");
    assert!(r.is_closed());
}

fn passive_accept_timeout(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.passive_accept_timeout = Duration::from_millis(300))
        .start();
    let mut r = s.raw_login();
    assert_eq!(r.cmd("PASV").0, 227);
    assert_eq!(r.cmd("LIST").0, 150);
    assert_eq!(
        r.reply().1.trim_end(),
        "421 Passive data channel timed out.",
        "nobody connected"
    );
    assert_eq!(r.cmd("NOOP").0, 200);
    // Between commands too (pyftpdlib test_pasv_timeout): an unsolicited 421, the session
    // stays.
    assert_eq!(r.cmd("PASV").0, 227);
    assert_eq!(
        r.reply().1.trim_end(),
        "421 Passive data channel timed out."
    );
    assert_eq!(r.cmd("NOOP").0, 200);
}

/// A filesystem whose files are made up on the fly: every name holds "content of <name>\n"
/// repeated; uploads are counted, not stored. It records the paths it is given: virtual
/// paths, never the host's.
struct Generated {
    seen: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl Generated {
    fn saw(&self, path: &Path) {
        self.seen.lock().unwrap().push(path.to_path_buf());
    }
    fn body(path: &Path) -> Vec<u8> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        format!("content of {name}\n").repeat(1000).into_bytes()
    }
    fn stat_of(kind: FileKind, size: u64) -> Stat {
        Stat {
            kind,
            size,
            mode: if kind == FileKind::Dir {
                0o040755
            } else {
                0o100444
            },
            nlink: 1,
            uid: 0,
            gid: 0,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            dev: 1,
            ino: size,
        }
    }
}

impl Filesystem for Generated {
    fn open_read(&mut self, path: &Path, offset: u64) -> io::Result<ReadStream> {
        self.saw(path);
        let body = Self::body(path);
        let start = (offset as usize).min(body.len());
        Ok(ReadStream::Other(Box::new(io::Cursor::new(
            body[start..].to_vec(),
        ))))
    }
    fn open_write(
        &mut self,
        _path: &Path,
        _mode: WriteMode,
        _perm: u32,
    ) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(io::sink()))
    }
    fn mkdir(&mut self, _: &Path, _: u32) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(nix::libc::EROFS))
    }
    fn rmdir(&mut self, _: &Path) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(nix::libc::EROFS))
    }
    fn remove(&mut self, _: &Path) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(nix::libc::EROFS))
    }
    fn rename(&mut self, _: &Path, _: &Path) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(nix::libc::EROFS))
    }
    fn chmod(&mut self, _: &Path, _: u32) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(nix::libc::EROFS))
    }
    fn utime(&mut self, _: &Path, _: SystemTime) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(nix::libc::EROFS))
    }
    fn stat(&mut self, path: &Path) -> io::Result<Stat> {
        self.saw(path);
        if path == Path::new("/") {
            Ok(Self::stat_of(FileKind::Dir, 0))
        } else {
            Ok(Self::stat_of(FileKind::File, Self::body(path).len() as u64))
        }
    }
    fn lstat(&mut self, path: &Path) -> io::Result<Stat> {
        self.stat(path)
    }
    fn listdir(&mut self, path: &Path) -> io::Result<DirIter> {
        self.saw(path);
        Ok(Box::new(
            ["alpha", "beta"].into_iter().map(|n| Ok(n.into())),
        ))
    }
    fn readlink(&mut self, _: &Path) -> io::Result<PathBuf> {
        Err(io::Error::from_raw_os_error(nix::libc::EINVAL))
    }
}

fn generated_content_filesystem(ex: Executor) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let s = builder()
        .executor(ex)
        .handler(move |h| {
            h.filesystem = std::sync::Arc::new(move |_user, _root| {
                Ok(Box::new(Generated {
                    seen: record.clone(),
                }))
            });
        })
        .start();
    let mut c = s.login();
    let want = "content of alpha\n".repeat(1000).into_bytes();
    assert_eq!(c.retr_as_buffer("alpha").unwrap().into_inner(), want);
    assert_eq!(c.size("alpha").unwrap(), want.len());
    assert_eq!(c.nlst(None).unwrap(), ["alpha", "beta"]);
    let list = c.list(None).unwrap();
    assert!(
        list[0].starts_with("-r--r--r--") && list[0].ends_with(" alpha"),
        "{list:?}"
    );
    c.resume_transfer(17).unwrap();
    assert_eq!(
        c.retr_as_buffer("beta").unwrap().into_inner().len(),
        "content of beta\n".len() * 1000 - 17
    );
    assert!(c.mkdir("x").is_err(), "read-only filesystem");
    assert!(!s.path("alpha").exists(), "nothing touched the disk");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&PathBuf::from("/alpha")), "{seen:?}");
    assert!(
        seen.iter()
            .all(|p| p.starts_with("/") && !p.starts_with(&s.root)),
        "virtual paths only: {seen:?}"
    );
}

models!(
    masquerade_map_per_local_address,
    latin1_encoding,
    data_timeout_closes,
    data_timeout_between_commands,
    passive_accept_timeout,
    generated_content_filesystem,
);
