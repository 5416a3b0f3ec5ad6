//! Response data (fbtftp's `ResponseData` and the `FileResponseData` of its example server):
//! what a read request is answered with, plus the confined file opener and netascii
//! conversion (RFC 1350 §5, RFC 764 for netascii).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::beneath::RootDir;

/// The content served for one read request: a file, something generated on the fly, or a
/// stream from elsewhere (fbtftp `ResponseData`).
pub trait ResponseData: Send {
    /// Reads up to `buf.len()` bytes; `Ok(0)` means the end of the data.
    ///
    /// # Errors
    /// An I/O error ends the session with ERROR 0.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// The total size in bytes when known (answers the tsize option, RFC 2349).
    fn size(&self) -> Option<u64> {
        None
    }

    /// Called once when the session ends, whatever the outcome.
    fn close(&mut self) {}
}

/// In-memory content, e.g. a generated boot configuration.
#[derive(Debug, Clone, Default)]
pub struct BytesResponseData {
    data: Vec<u8>,
    pos: usize,
}

impl BytesResponseData {
    /// Serves `data`.
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        BytesResponseData {
            data: data.into(),
            pos: 0,
        }
    }
}

impl ResponseData for BytesResponseData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }

    fn size(&self) -> Option<u64> {
        Some(self.data.len() as u64)
    }
}

/// Turns a client path into a relative path of normal components (no `..`, no root).
///
/// # Errors
/// `PermissionDenied` for `..` or an empty path.
pub fn relative(path: &str) -> io::Result<PathBuf> {
    let denied = |why: &str| io::Error::new(io::ErrorKind::PermissionDenied, why.to_owned());
    let cleaned = path.replace('\\', "/");
    let mut rel = PathBuf::new();
    for c in Path::new(&cleaned).components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err(denied("'..' in path")),
            Component::Prefix(_) => return Err(denied("path prefix")),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(denied("empty path"));
    }
    Ok(rel)
}

/// Opens `rel` for reading without leaving `root`: resolved beneath a descriptor of the
/// root at the moment of the open ([`RootDir`]: openat2 `RESOLVE_BENEATH`, or the component
/// walk where openat2 is missing), so `..`, absolute symlinks and symlinks pointing out are
/// refused during the lookup itself and no check-then-open race exists.
///
/// # Errors
/// `PermissionDenied` for an escape, otherwise the open error.
pub fn open_beneath(root: &Path, rel: &Path) -> io::Result<File> {
    use nix::fcntl::OFlag;
    // O_NONBLOCK: opening a FIFO planted in the root must not block the session (it is
    // refused as "not a regular file" next); reads of regular files ignore the flag.
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    RootDir::open(root)?.open_file(rel, flags, nix::sys::stat::Mode::empty())
}

/// A file served from a root directory, opened beneath it ([`open_beneath`]).
#[derive(Debug)]
pub struct FileResponseData {
    reader: BufReader<File>,
    size: u64,
}

impl FileResponseData {
    /// Opens `path` (as sent by the client) under `root`.
    ///
    /// # Errors
    /// `PermissionDenied` for escapes and non-regular files, `NotFound`, or the open error.
    pub fn open(root: &Path, path: &str) -> io::Result<Self> {
        let file = open_beneath(root, &relative(path)?)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a regular file",
            ));
        }
        Ok(FileResponseData {
            reader: BufReader::with_capacity(64 * 1024, file),
            size: meta.len(),
        })
    }
}

/// Reads at least this big go straight from the file into the caller's buffer (the packet)
/// once the 64 KiB buffer is drained: through the buffer, every byte of a big block would be
/// copied twice, and at blksize 65464 a read would rarely line up with the buffer.
const DIRECT_READ: usize = 8 * 1024;

impl ResponseData for FileResponseData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() >= DIRECT_READ && self.reader.buffer().is_empty() {
            return self.reader.get_mut().read(buf);
        }
        self.reader.read(buf)
    }

    fn size(&self) -> Option<u64> {
        Some(self.size)
    }
}

/// Wraps response data with the netascii encoding: LF → CR LF, CR → CR NUL (RFC 764).
/// The encoded size is not known in advance, so tsize is not offered.
pub struct NetasciiEncoder {
    inner: Box<dyn ResponseData>,
    pending: Option<u8>,
    scratch: Vec<u8>,
}

impl NetasciiEncoder {
    /// Encodes `inner` on the fly.
    pub fn new(inner: Box<dyn ResponseData>) -> Self {
        NetasciiEncoder {
            inner,
            pending: None,
            scratch: Vec::new(),
        }
    }
}

impl ResponseData for NetasciiEncoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = 0;
        if let Some(b) = self.pending.take() {
            if buf.is_empty() {
                self.pending = Some(b);
                return Ok(0);
            }
            buf[0] = b;
            out = 1;
        }
        let want = ((buf.len() - out) / 2).max(1);
        if out == buf.len() {
            return Ok(out);
        }
        self.scratch.resize(want, 0);
        let n = self.inner.read(&mut self.scratch)?;
        for &b in &self.scratch[..n] {
            let (first, second) = match b {
                b'\n' => (b'\r', Some(b'\n')),
                b'\r' => (b'\r', Some(0)),
                other => (other, None),
            };
            // `want` input bytes expand to at most 2*want <= remaining output bytes, except
            // when `want` was rounded up to 1: keep the second half for the next call.
            if out < buf.len() {
                buf[out] = first;
                out += 1;
            }
            if let Some(s) = second {
                if out < buf.len() {
                    buf[out] = s;
                    out += 1;
                } else {
                    self.pending = Some(s);
                }
            }
        }
        Ok(out)
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

/// Decodes netascii uploads: CR LF → LF, CR NUL → CR (RFC 764), across packet borders.
#[derive(Debug, Default)]
pub struct NetasciiDecoder {
    cr: bool,
}

impl NetasciiDecoder {
    /// Decodes `input` appending to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.cr {
                self.cr = false;
                match b {
                    b'\n' => out.push(b'\n'),
                    0 => out.push(b'\r'),
                    b'\r' => {
                        out.push(b'\r');
                        self.cr = true;
                    }
                    other => out.extend_from_slice(&[b'\r', other]),
                }
            } else if b == b'\r' {
                self.cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Flushes a trailing lone CR at the end of the transfer.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut dyn ResponseData, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        for _ in 0..10_000 {
            let n = r.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn netascii_round_trip() {
        let text = b"a\nb\r\nc\rd\n\n\r".to_vec();
        for chunk in [1, 2, 3, 512] {
            let mut enc = NetasciiEncoder::new(Box::new(BytesResponseData::new(text.clone())));
            let wire = drain(&mut enc, chunk);
            assert_eq!(
                wire,
                b"a\r\nb\r\0\r\nc\r\0d\r\n\r\n\r\0".to_vec(),
                "chunk {chunk}"
            );
            let mut dec = NetasciiDecoder::default();
            let mut back = Vec::new();
            for piece in wire.chunks(chunk) {
                dec.decode(piece, &mut back);
            }
            dec.finish(&mut back);
            assert_eq!(back, text);
        }
    }

    #[test]
    fn file_reads_mix_buffered_and_direct() {
        // Small reads go through the 64 KiB buffer, big ones past it straight from the file
        // once the buffer is empty; in any order the bytes come out in order.
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).expect("write");
        let mut f = FileResponseData::open(dir.path(), "f").expect("open");
        let mut out = Vec::new();
        for (i, chunk) in [65_464, 512, 9_000, 65_464, 1_468, 65_464, 100_000]
            .iter()
            .cycle()
            .enumerate()
        {
            let mut buf = vec![0; *chunk];
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            assert!(n <= *chunk, "read {i}");
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out.len(), data.len());
        assert!(out == data, "bytes out of order");
    }

    #[test]
    fn relative_refuses_parent_and_empty() {
        assert_eq!(relative("/boot/x").expect("ok"), PathBuf::from("boot/x"));
        assert_eq!(relative("\\a\\b").expect("ok"), PathBuf::from("a/b"));
        assert_eq!(relative("./a//b").expect("ok"), PathBuf::from("a/b"));
        for bad in ["../etc/passwd", "a/../../b", "/", "", "a/.."] {
            let e = relative(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{bad}");
        }
    }

    #[test]
    fn open_refuses_symlink_escape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), b"x").expect("write");
        std::fs::write(dir.path().join("ok"), b"y").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link"))
            .expect("symlink");
        std::os::unix::fs::symlink("ok", dir.path().join("inner")).expect("symlink");
        let e = FileResponseData::open(dir.path(), "missing").expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let mut f = FileResponseData::open(dir.path(), "/ok").expect("open");
        assert_eq!(f.size(), Some(1));
        assert_eq!(drain(&mut f, 8), b"y");
        assert!(FileResponseData::open(dir.path(), ".").is_err());
        let e = FileResponseData::open(dir.path(), "link").expect_err("escape");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(FileResponseData::open(dir.path(), "inner").is_ok());
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        let e = FileResponseData::open(dir.path(), "fifo").expect_err("a FIFO is no file");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).expect("symlink");
        let e = FileResponseData::open(dir.path(), "etc/hostname").expect_err("escape");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
}
