//! `OsFilesystem`: the real disk beneath a root directory held open for the whole session
//! ([`RootDir`]). Every call resolves its virtual path beneath that descriptor at the moment
//! it runs (openat2 `RESOLVE_BENEATH`, or the component walk), so the jail holds even while
//! a local user renames directories or swaps files for symlinks.

use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{upload, DirIter, Filesystem, ReadStream, Stat, UploadOptions, UploadSink, WriteMode};
use crate::beneath::RootDir;

/// The real disk, every path resolved beneath one root directory: the default filesystem.
/// A root of `/` serves the whole file system unjailed (pyftpdlib's `UnixFilesystem`).
#[derive(Debug)]
pub struct OsFilesystem {
    root: RootDir,
}

impl OsFilesystem {
    /// Opens `root` (a real directory) as the session's `/`.
    ///
    /// # Errors
    /// `root` cannot be opened as a directory.
    pub fn new(root: &Path) -> io::Result<OsFilesystem> {
        Ok(OsFilesystem {
            root: RootDir::open(root)?,
        })
    }

    /// A filesystem over an already opened root (e.g. one with a chosen resolver).
    pub fn with_root(root: RootDir) -> OsFilesystem {
        OsFilesystem { root }
    }

    /// The root every path resolves beneath.
    pub fn root(&self) -> &RootDir {
        &self.root
    }
}

/// Only regular files are transferred: a FIFO planted in the tree must not block a session
/// (it is opened with `O_NONBLOCK`, then refused), a device must not be read or written.
pub(super) fn regular(f: fs::File) -> io::Result<fs::File> {
    let m = f.metadata()?;
    if m.is_dir() {
        return Err(io::Error::from_raw_os_error(nix::libc::EISDIR));
    }
    if !m.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Not a regular file",
        ));
    }
    Ok(f)
}

impl Filesystem for OsFilesystem {
    fn open_read(&mut self, path: &Path, offset: u64) -> io::Result<ReadStream> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let mut f = regular(self.root.open_file(path, flags, Mode::empty())?)?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(ReadStream::File(f))
    }

    fn open_write(
        &mut self,
        path: &Path,
        how: WriteMode,
        perm: u32,
    ) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(upload::open_file(
            &self.root, path, how, perm, false,
        )?))
    }

    fn open_upload(
        &mut self,
        path: &Path,
        how: WriteMode,
        perm: u32,
        opts: UploadOptions,
    ) -> io::Result<Box<dyn UploadSink>> {
        upload::open(&self.root, path, how, perm, opts)
    }

    fn mkdir(&mut self, path: &Path, perm: u32) -> io::Result<()> {
        self.root.mkdir(path, perm & 0o777)
    }

    fn rmdir(&mut self, path: &Path) -> io::Result<()> {
        self.root.rmdir(path)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.root.unlink(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.root.rename(from, to)
    }

    /// Only permission bits: setuid, setgid and sticky are refused (`EPERM`), and so is the
    /// root directory itself.
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        if mode & !0o777 != 0 {
            return Err(io::Error::from_raw_os_error(nix::libc::EPERM));
        }
        self.root.chmod(path, mode)
    }

    fn utime(&mut self, path: &Path, mtime: SystemTime) -> io::Result<()> {
        self.root.set_mtime(path, mtime)
    }

    fn stat(&mut self, path: &Path) -> io::Result<Stat> {
        self.root.stat(path, true).map(|st| Stat::from_raw(&st))
    }

    fn lstat(&mut self, path: &Path) -> io::Result<Stat> {
        self.root.stat(path, false).map(|st| Stat::from_raw(&st))
    }

    fn listdir(&mut self, path: &Path) -> io::Result<DirIter> {
        Ok(Box::new(self.root.read_dir(path)?))
    }

    fn readlink(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.root.readlink(path).map(PathBuf::from)
    }

    fn open_dir(&mut self, path: &Path) -> io::Result<Option<fs::File>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        self.root.open_file(path, flags, Mode::empty()).map(Some)
    }
}
