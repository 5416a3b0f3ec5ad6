//! Uploads on the real disk as the handler wants them ([`Filesystem::open_upload`]):
//! locked against a second writer (vsftpd `lock_upload_files`: an exclusive flock(2) taken
//! before the file is truncated, so a refused upload has changed nothing) and atomic (a
//! hidden temporary file in the same directory, renamed over the name only when the upload
//! is complete; proftpd's `HiddenStores` does the same).
//!
//! [`Filesystem::open_upload`]: super::Filesystem::open_upload

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::WriteMode;

/// How an upload is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Take an exclusive advisory lock on the file for the upload; fail at once with
    /// [`io::ErrorKind::WouldBlock`] when another upload or a download holds one.
    pub lock: bool,
    /// Write to a hidden temporary file renamed over the name by [`UploadSink::commit`].
    pub atomic: bool,
}

/// An upload being written: bytes go to the file (or its temporary file); [`commit`]
/// ends a complete upload, and dropping the sink without it abandons the upload (an
/// atomic upload's temporary file is removed and the old file stays as it was).
///
/// [`commit`]: UploadSink::commit
pub trait UploadSink: Write + Send {
    /// The upload is complete: flush it and, when atomic, rename it over its name.
    ///
    /// # Errors
    /// The flush or the rename failed (the upload is then abandoned).
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// Any writer as an upload with nothing to do at the end but flush (filesystems that do not
/// implement [`open_upload`](super::Filesystem::open_upload), generated content).
pub struct PlainUpload<W>(pub W);

impl<W: Write> Write for PlainUpload<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> UploadSink for PlainUpload<W> {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

/// Takes a flock(2) on `file` without waiting: exclusive for an upload, shared for a
/// download. The lock ends when the file's last descriptor closes. A filesystem that
/// cannot lock (flock(2) failing otherwise) is used without the lock, as vsftpd does.
///
/// # Errors
/// [`io::ErrorKind::WouldBlock`] when another session holds a conflicting lock.
pub fn try_lock(file: &File, exclusive: bool) -> io::Result<()> {
    use nix::fcntl::FlockArg;
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    // nix's `Flock` owns the file it locks; a download's file goes on to sendfile(2) as a
    // plain `File`, so the descriptor-level call is used and the close ends the lock.
    #[allow(deprecated)]
    match nix::fcntl::flock(file.as_raw_fd(), arg) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EWOULDBLOCK) => Err(io::Error::from(nix::errno::Errno::EWOULDBLOCK)),
        Err(e) => {
            log::debug!("flock(2) refused ({e}); going on without the upload lock");
            Ok(())
        }
    }
}

/// Opens `path` for writing as `mode` says; with `lock`, takes the exclusive lock before
/// anything is truncated.
///
/// # Errors
/// Any I/O error; `WouldBlock` when locked by another session.
pub(super) fn open_file(path: &Path, mode: WriteMode, lock: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.mode(0o666);
    match mode {
        // With the lock, truncation waits until the lock is ours (vsftpd does the same).
        WriteMode::Truncate => o.write(true).create(true).truncate(!lock),
        WriteMode::Append => o.append(true).create(true),
        WriteMode::At(_) => o.write(true).create(true),
        // pyftpdlib creates STOU files with tempfile.mkstemp: mode 0600.
        WriteMode::CreateNew => o.write(true).create_new(true).mode(0o600),
    };
    let mut f = o.open(path)?;
    if lock {
        try_lock(&f, true)?;
        if mode == WriteMode::Truncate {
            f.set_len(0)?;
        }
    }
    if let WriteMode::At(off) = mode {
        f.seek(SeekFrom::Start(off))?;
    }
    Ok(f)
}

/// Opens an upload on the real disk.
pub(super) fn open(
    path: &Path,
    mode: WriteMode,
    opts: UploadOptions,
) -> io::Result<Box<dyn UploadSink>> {
    if opts.atomic && mode != WriteMode::CreateNew {
        return Ok(Box::new(AtomicUpload::open(path, mode, opts.lock)?));
    }
    Ok(Box::new(PlainUpload(open_file(path, mode, opts.lock)?)))
}

/// An atomic upload: a temporary file renamed over `target` on commit, removed otherwise.
struct AtomicUpload {
    file: File,
    /// The temporary file while it exists.
    temp: Option<PathBuf>,
    target: PathBuf,
    /// APPE / REST: the old file, locked until the rename replaces it.
    _source: Option<File>,
}

impl AtomicUpload {
    /// APPE and REST n copy the old file (all of it, or its first n bytes) into the
    /// temporary file first, holding the old file's lock until the rename.
    fn open(path: &Path, mode: WriteMode, lock: bool) -> io::Result<AtomicUpload> {
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (d, n),
            _ => return Err(io::Error::from_raw_os_error(nix::libc::EISDIR)),
        };
        let source = match mode {
            WriteMode::Append => match open_source(path, lock) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            WriteMode::At(_) => Some(open_source(path, lock)?),
            WriteMode::Truncate | WriteMode::CreateNew => None,
        };
        let (temp, file) = create_temp(dir, name.as_encoded_bytes())?;
        let mut up = AtomicUpload {
            file,
            temp: Some(temp),
            target: path.to_path_buf(),
            _source: None,
        };
        if let Some(mut src) = source {
            let keep = match mode {
                WriteMode::At(n) => n,
                _ => u64::MAX,
            };
            // std::io::copy between files uses copy_file_range(2): in the kernel, and a
            // reflink where the filesystem can.
            io::copy(&mut (&mut src).take(keep), &mut up.file)?;
            up._source = Some(src);
        }
        Ok(up)
    }
}

impl Write for AtomicUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl UploadSink for AtomicUpload {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        self.file.flush()?;
        if let Some(temp) = &self.temp {
            fs::rename(temp, &self.target)?;
        }
        self.temp = None;
        Ok(())
    }
}

impl Drop for AtomicUpload {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            if let Err(e) = fs::remove_file(&temp) {
                log::warn!("cannot remove {}: {e}", temp.display());
            }
        }
    }
}

/// Opens the old file of an atomic APPE/REST for reading; with `lock`, locked exclusively
/// and checked to still be the file at `path` (an upload that held the lock may have
/// renamed a new file over the name meanwhile: then the new one is opened).
fn open_source(path: &Path, lock: bool) -> io::Result<File> {
    for _ in 0..8 {
        let f = File::open(path)?;
        if f.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(nix::libc::EISDIR));
        }
        if !lock {
            return Ok(f);
        }
        try_lock(&f, true)?;
        let (now, held) = (fs::metadata(path)?, f.metadata()?);
        if (now.dev(), now.ino()) == (held.dev(), held.ino()) {
            return Ok(f);
        }
    }
    Err(io::Error::from_raw_os_error(nix::libc::EWOULDBLOCK))
}

/// Creates a new hidden file next to the upload's name: `.ftpdlib.<random>.<name>`,
/// shortened to the 255-byte name limit.
fn create_temp(dir: &Path, name: &[u8]) -> io::Result<(PathBuf, File)> {
    for _ in 0..100 {
        let mut temp = format!(".ftpdlib.{}.", random_word()).into_bytes();
        temp.extend_from_slice(&name[..name.len().min(255 - temp.len())]);
        let path = dir.join(super::path::bytes_path(&temp));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(nix::libc::EEXIST))
}

/// Eight characters that differ between calls and processes (the O_EXCL create makes the
/// name safe whatever they are).
fn random_word() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    (0..8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_second_locked_writer_is_refused_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"old contents").unwrap();
        let mut a = open_file(&p, WriteMode::Truncate, true).unwrap();
        a.write_all(b"new").unwrap();
        let e = open_file(&p, WriteMode::Truncate, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            fs::read(&p).unwrap(),
            b"new",
            "the refused writer truncated nothing"
        );
        drop(a);
        drop(open_file(&p, WriteMode::Truncate, true).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn atomic_commit_renames_and_drop_removes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"old").unwrap();
        let opts = UploadOptions {
            lock: true,
            atomic: true,
        };
        let mut up = open(&p, WriteMode::Truncate, opts).unwrap();
        up.write_all(b"brand new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"old", "readers see the old file");
        assert_eq!(dir_names(d.path()).len(), 2);
        up.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"brand new");
        assert_eq!(dir_names(d.path()), ["f"]);
        let mut up = open(&p, WriteMode::Append, opts).unwrap();
        up.write_all(b"!").unwrap();
        drop(up);
        assert_eq!(fs::read(&p).unwrap(), b"brand new", "an abandoned APPE");
        assert_eq!(dir_names(d.path()), ["f"]);
        let mut up = open(&p, WriteMode::At(5), opts).unwrap();
        up.write_all(b"X").unwrap();
        up.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"brandX");
    }

    #[test]
    fn temporary_names_fit_the_name_limit() {
        let d = tempfile::tempdir().unwrap();
        let long = vec![b'n'; 255];
        let (p, _f) = create_temp(d.path(), &long).unwrap();
        let name = p.file_name().unwrap().len();
        assert_eq!(name, 255);
        assert!(p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".ftpdlib."));
    }
}
