//! Uploads on the real disk as the handler wants them ([`Filesystem::open_upload`]):
//! locked against a second writer (vsftpd `lock_upload_files`: an exclusive flock(2) taken
//! on the opened file before it is truncated, so a refused upload has changed nothing) and
//! atomic (a hidden temporary file in the same directory, renamed over the name only when
//! the upload is complete; proftpd's `HiddenStores` does the same). Every file is opened,
//! created, renamed and removed beneath the session's root directory descriptor
//! ([`RootDir`]), by virtual path, like every other file operation: see
//! [`RootDir::create_temp`] for the temporary file.
//!
//! [`Filesystem::open_upload`]: super::Filesystem::open_upload
//!
//! * **The upload lock** (vsftpd's `lock_upload_files`; `FtpHandler::lock_upload_files`, on by
//!   default): an upload takes an exclusive advisory lock (flock(2)) on its file before
//!   truncating it, a download a shared one. Whoever finds the lock taken gets `450 File busy:
//!   another session is transferring it; try again later.` (an upload) or `450 File busy: it is
//!   being uploaded; try again later.` (a download) at once; vsftpd waits instead, which a
//!   client cannot tell from a hang. So two uploads of one name never interleave, a refused
//!   upload changes nothing, a download never serves a half-written file as complete — and an
//!   upload over a file someone is downloading waits for the download. The lock is advisory:
//!   other programs on the host are not bound by it.
//! * **Without atomic uploads** (the default, as pyftpdlib), a STOR writes the file in place:
//!   a STOR over an existing file that is cut (ABOR, a reset, a timeout) leaves the bytes that
//!   arrived — the old contents are gone — with `426` and `on_incomplete_file_received`.
//! * **`--atomic-uploads`** (`FtpHandler::atomic_uploads`): the upload goes to a hidden
//!   temporary file in the same directory (`.ftpdlib.<random>.<name>`), renamed over the name
//!   only once the upload is complete. The jail holds throughout: the directory is resolved
//!   beneath the session's root descriptor once and held open; the temporary file is created
//!   in it with `O_EXCL` (openat2), renamed with renameat(2) and removed with unlinkat(2)
//!   relative to that descriptor, and the old file of an APPE/REST is opened beneath the root
//!   like any download (`tests/jail.rs` races a directory swapped for a symlink out). Readers see the old file or the new one, never a part;
//!   a cut upload removes the temporary file and leaves the old file byte for byte. The new
//!   file is a new inode with the mode of a fresh upload (not the old file's; hard links to the
//!   old file keep the old contents). `APPE` copies the old file into the temporary file
//!   first, `REST n` + `STOR` its first n bytes (copy_file_range(2): a reflink where the
//!   filesystem can), holding the old file's lock until the rename, so the result ends where
//!   the upload ends and two appends never lose one another. `STOU` reserves its unique name
//!   as an empty file, uploads to a temporary file and renames it over the reservation; a cut
//!   STOU leaves neither. Downloads take no lock in this mode: they never need one.
//! * **Every byte received is written**: an upload past 8 MiB writes through a helper thread
//!   (`handlers/dtp/writer.rs`); when an ABOR, a reset or a timeout ends it, what is still in the receive
//!   buffer is handed to the helper and written before the reply, so the file holds every byte
//!   the server read (the kernel delivers queued data before the reset).
//! * A filesystem of your own gets neither the lock nor atomic uploads unless it implements
//!   `Filesystem::open_upload` (the default opens with `open_write`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::os::regular;
use super::WriteMode;
use crate::beneath::{RootDir, TempFile};

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

    /// The regular file the upload's bytes go to, written at its current position, when
    /// there is one: the transfer may then move bytes from the socket into it with
    /// splice(2), without copying them through the process (see `handlers/dtp`). Writes
    /// through [`Write`] and through this file must be interchangeable. Default: none (the
    /// bytes go through [`Write`]).
    fn file(&self) -> Option<&File> {
        None
    }
}

/// A plain upload on the real disk: the opened file itself, written where it stands.
struct FileUpload(File);

impl Write for FileUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl UploadSink for FileUpload {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }

    fn file(&self) -> Option<&File> {
        Some(&self.0)
    }
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

/// Opens the virtual `path` beneath `root` for writing as `mode` says, a new file getting
/// the permission bits `perm`; with `lock`, takes the exclusive lock before anything is
/// truncated. Only a regular file is written (a FIFO or a device planted in the tree is
/// refused without blocking).
///
/// # Errors
/// Any I/O error; `WouldBlock` when locked by another session.
pub(super) fn open_file(
    root: &RootDir,
    path: &Path,
    mode: WriteMode,
    perm: u32,
    lock: bool,
) -> io::Result<File> {
    let base = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let flags = match mode {
        // With the lock, truncation waits until the lock is ours (vsftpd does the same).
        WriteMode::Truncate if lock => base,
        WriteMode::Truncate => base | OFlag::O_TRUNC,
        WriteMode::Append => base | OFlag::O_APPEND,
        WriteMode::At(_) => base,
        // A new name only: O_EXCL never follows a symlink in the last component.
        WriteMode::CreateNew => base | OFlag::O_EXCL,
    };
    let mode_bits = Mode::from_bits_truncate(perm & 0o777);
    let mut f = regular(root.open_file(path, flags, mode_bits)?)?;
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

/// Opens an upload of the virtual `path` beneath `root`.
///
/// # Errors
/// As [`open_file`], or creating the temporary file or copying the old one failed.
pub(super) fn open(
    root: &RootDir,
    path: &Path,
    mode: WriteMode,
    perm: u32,
    opts: UploadOptions,
) -> io::Result<Box<dyn UploadSink>> {
    if opts.atomic && mode != WriteMode::CreateNew {
        return Ok(Box::new(AtomicUpload::open(
            root, path, mode, perm, opts.lock,
        )?));
    }
    Ok(Box::new(FileUpload(open_file(
        root, path, mode, perm, opts.lock,
    )?)))
}

/// An atomic upload: a temporary file renamed over its name on commit, removed otherwise.
struct AtomicUpload {
    temp: TempFile,
    /// APPE / REST: the old file, locked until the rename replaces it.
    _source: Option<File>,
}

impl AtomicUpload {
    /// APPE and REST n copy the old file (all of it, or its first n bytes) into the
    /// temporary file first, holding the old file's lock until the rename.
    fn open(
        root: &RootDir,
        path: &Path,
        mode: WriteMode,
        perm: u32,
        lock: bool,
    ) -> io::Result<AtomicUpload> {
        // A directory cannot be replaced by the rename: refuse now, as a plain open does,
        // rather than after the whole upload.
        if root.stat(path, true).is_ok_and(|st| is_dir(&st)) {
            return Err(io::Error::from_raw_os_error(nix::libc::EISDIR));
        }
        let source = match mode {
            WriteMode::Append => match open_source(root, path, lock) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            WriteMode::At(_) => Some(open_source(root, path, lock)?),
            WriteMode::Truncate | WriteMode::CreateNew => None,
        };
        let mut temp = root.create_temp(path, perm)?;
        if let Some(mut src) = source {
            let keep = match mode {
                WriteMode::At(n) => n,
                _ => u64::MAX,
            };
            // std::io::copy between files uses copy_file_range(2): in the kernel, and a
            // reflink where the filesystem can.
            io::copy(&mut (&mut src).take(keep), temp.file())?;
            return Ok(AtomicUpload {
                temp,
                _source: Some(src),
            });
        }
        Ok(AtomicUpload {
            temp,
            _source: None,
        })
    }
}

impl Write for AtomicUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.file().flush()
    }
}

impl UploadSink for AtomicUpload {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        self.temp.file().flush()?;
        let AtomicUpload { temp, _source } = *self;
        temp.persist()
    }

    fn file(&self) -> Option<&File> {
        Some(self.temp.as_file())
    }
}

/// True for a directory's facts.
fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR
}

/// Opens the old file of an atomic APPE/REST for reading, beneath `root`; with `lock`,
/// locked exclusively and checked to still be the file at `path` (an upload that held the
/// lock may have renamed a new file over the name meanwhile: then the new one is opened).
fn open_source(root: &RootDir, path: &Path, lock: bool) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    for _ in 0..8 {
        let f = regular(root.open_file(path, flags, Mode::empty())?)?;
        if !lock {
            return Ok(f);
        }
        try_lock(&f, true)?;
        let now = root.stat(path, true)?;
        let held = nix::sys::stat::fstat(&f)?;
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino) {
            return Ok(f);
        }
    }
    Err(io::Error::from_raw_os_error(nix::libc::EWOULDBLOCK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn dir_names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn root(d: &tempfile::TempDir) -> RootDir {
        RootDir::open(d.path()).unwrap()
    }

    #[test]
    fn a_second_locked_writer_is_refused_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (r, p, v) = (root(&d), d.path().join("f"), Path::new("/f"));
        fs::write(&p, b"old contents").unwrap();
        let mut a = open_file(&r, v, WriteMode::Truncate, 0o666, true).unwrap();
        a.write_all(b"new").unwrap();
        let e = open_file(&r, v, WriteMode::Truncate, 0o666, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            fs::read(&p).unwrap(),
            b"new",
            "the refused writer truncated nothing"
        );
        drop(a);
        drop(open_file(&r, v, WriteMode::Truncate, 0o666, true).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn atomic_commit_renames_and_drop_removes() {
        let d = tempfile::tempdir().unwrap();
        let (r, p, v) = (root(&d), d.path().join("f"), Path::new("/f"));
        fs::write(&p, b"old").unwrap();
        let opts = UploadOptions {
            lock: true,
            atomic: true,
        };
        let mut up = open(&r, v, WriteMode::Truncate, 0o640, opts).unwrap();
        up.write_all(b"brand new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"old", "readers see the old file");
        assert_eq!(dir_names(d.path()).len(), 2);
        up.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"brand new");
        assert_eq!(dir_names(d.path()), ["f"]);
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "the upload's permission bits: {mode:o}");
        let mut up = open(&r, v, WriteMode::Append, 0o666, opts).unwrap();
        up.write_all(b"!").unwrap();
        drop(up);
        assert_eq!(fs::read(&p).unwrap(), b"brand new", "an abandoned APPE");
        assert_eq!(dir_names(d.path()), ["f"]);
        let mut up = open(&r, v, WriteMode::At(5), 0o666, opts).unwrap();
        up.write_all(b"X").unwrap();
        up.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"brandX");
        fs::create_dir(d.path().join("dir")).unwrap();
        let e = open(&r, Path::new("/dir"), WriteMode::Truncate, 0o666, opts).err();
        let e = e.expect("a directory is no upload target");
        assert_eq!(e.raw_os_error(), Some(nix::libc::EISDIR));
        assert_eq!(dir_names(d.path()), ["dir", "f"], "no temporary file left");
    }

    #[test]
    fn atomic_uploads_stay_beneath_the_root() {
        let d = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        fs::write(out.path().join("f"), b"outside").unwrap();
        std::os::unix::fs::symlink(out.path(), d.path().join("out")).unwrap();
        let r = root(&d);
        let opts = UploadOptions {
            lock: true,
            atomic: true,
        };
        for mode in [WriteMode::Truncate, WriteMode::Append, WriteMode::At(1)] {
            let e = open(&r, Path::new("/out/f"), mode, 0o666, opts).err();
            let e = e.expect("an upload through a symlink leading out");
            assert!(crate::beneath::Escape::of(&e).is_some(), "{mode:?}: {e}");
        }
        assert_eq!(dir_names(out.path()), ["f"], "nothing created outside");
        assert_eq!(fs::read(out.path().join("f")).unwrap(), b"outside");
    }
}
