//! Filesystems: the [`Filesystem`] trait (what a session may do to files), [`OsFilesystem`]
//! (the real disk) and [`AbstractedFs`] (the jail around any of them), mirroring pyftpdlib's
//! `AbstractedFS`. Paths handed to a [`Filesystem`] are real paths already checked by the jail
//! in [`path`], which is not a trait method, so a custom filesystem cannot weaken it.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub mod listing;
pub mod path;
mod unix;
mod upload;
pub use unix::UnixFilesystem;
pub use upload::{try_lock, PlainUpload, UploadOptions, UploadSink};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (from `lstat`).
    Symlink,
    /// Anything else (device, socket, FIFO).
    Other,
}

/// File facts a listing or a command needs, independent of `std::fs::Metadata` so that a
/// filesystem serving generated content can make them up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The kind of entry.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Unix mode bits including the file type (`st_mode`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Last modification time.
    pub mtime: SystemTime,
    /// Device number (for the MLSx `unique` fact).
    pub dev: u64,
    /// Inode number (for the MLSx `unique` fact).
    pub ino: u64,
}

impl Stat {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }

    /// Facts from a raw stat(2) result (listings stat entries with fstatat(2)).
    pub fn from_raw(st: &nix::sys::stat::FileStat) -> Stat {
        let mode = st.st_mode;
        let kind = match mode & nix::libc::S_IFMT {
            nix::libc::S_IFLNK => FileKind::Symlink,
            nix::libc::S_IFDIR => FileKind::Dir,
            nix::libc::S_IFREG => FileKind::File,
            _ => FileKind::Other,
        };
        let mtime = if st.st_mtime >= 0 {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32)
        } else {
            SystemTime::UNIX_EPOCH
                .checked_sub(std::time::Duration::from_secs(st.st_mtime.unsigned_abs()))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        Stat {
            kind,
            size: st.st_size.max(0) as u64,
            mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime,
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

impl From<&fs::Metadata> for Stat {
    fn from(m: &fs::Metadata) -> Self {
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        Stat {
            kind,
            size: m.size(),
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// A file opened for reading. A plain [`fs::File`] lets downloads use sendfile(2); any other
/// reader (content generated on the fly) is copied through a buffer.
pub enum ReadStream {
    /// A real file, positioned at the requested offset.
    File(fs::File),
    /// Any other source of bytes, already positioned at the requested offset.
    Other(Box<dyn Read + Send>),
}

impl Read for ReadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadStream::File(f) => f.read(buf),
            ReadStream::Other(r) => r.read(buf),
        }
    }
}

/// How an upload opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: create or truncate.
    Truncate,
    /// APPE: create or append.
    Append,
    /// STOR/APPE after REST: keep the contents, write from this offset.
    At(u64),
    /// STOU: create a new file (mode 0600, as `mkstemp`), failing if the name exists.
    CreateNew,
}

/// A directory listing in progress: names only, produced one at a time.
pub type DirIter = Box<dyn Iterator<Item = io::Result<OsString>> + Send>;

/// The operations a session performs on files. One value per session (built at login by
/// [`FtpHandler::filesystem`](crate::handlers::FtpHandler::filesystem)), so `&mut self` needs
/// no lock. Every path is a real path that already passed the jail.
pub trait Filesystem: Send {
    /// Opens a file for download, positioned at `offset`.
    ///
    /// # Errors
    /// Any I/O error; it becomes a 550 reply.
    fn open_read(&mut self, path: &Path, offset: u64) -> io::Result<ReadStream>;
    /// Opens a file for upload.
    ///
    /// # Errors
    /// Any I/O error; it becomes a 550 reply.
    fn open_write(&mut self, path: &Path, mode: WriteMode) -> io::Result<Box<dyn Write + Send>>;
    /// Opens a file for an upload under the handler's upload rules (see [`UploadOptions`]:
    /// the upload lock, atomic uploads). The default opens it with
    /// [`open_write`](Self::open_write) and applies neither: content that is not a plain
    /// file has nothing to lock or rename.
    ///
    /// # Errors
    /// Any I/O error; [`io::ErrorKind::WouldBlock`] when another session holds the file's
    /// lock (a 450 reply).
    fn open_upload(
        &mut self,
        path: &Path,
        mode: WriteMode,
        _opts: UploadOptions,
    ) -> io::Result<Box<dyn UploadSink>> {
        Ok(Box::new(PlainUpload(self.open_write(path, mode)?)))
    }
    /// Creates a directory.
    ///
    /// # Errors
    /// Any I/O error.
    fn mkdir(&mut self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    ///
    /// # Errors
    /// Any I/O error.
    fn rmdir(&mut self, path: &Path) -> io::Result<()>;
    /// Removes a file.
    ///
    /// # Errors
    /// Any I/O error.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Renames a file or directory.
    ///
    /// # Errors
    /// Any I/O error.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Changes permission bits (SITE CHMOD).
    ///
    /// # Errors
    /// Any I/O error.
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    /// Sets the modification time (MFMT).
    ///
    /// # Errors
    /// Any I/O error.
    fn utime(&mut self, path: &Path, mtime: SystemTime) -> io::Result<()>;
    /// Facts about a path, following symlinks.
    ///
    /// # Errors
    /// Any I/O error.
    fn stat(&mut self, path: &Path) -> io::Result<Stat>;
    /// Facts about a path, not following a final symlink.
    ///
    /// # Errors
    /// Any I/O error.
    fn lstat(&mut self, path: &Path) -> io::Result<Stat>;
    /// The names in a directory, streamed (never collected whole).
    ///
    /// # Errors
    /// Any I/O error opening the directory.
    fn listdir(&mut self, path: &Path) -> io::Result<DirIter>;
    /// The target of a symlink (shown as `name -> target` in LIST).
    ///
    /// # Errors
    /// Any I/O error.
    fn readlink(&mut self, path: &Path) -> io::Result<PathBuf>;
    /// An open handle on the directory `path` through which a listing stats its entries with
    /// fstatat(2): one path walk per listing instead of one per entry. Only for filesystems
    /// whose `stat`/`lstat`/`readlink` are the OS's own. Default: `None` (listings call
    /// `stat`/`lstat`/`readlink` with each entry's path).
    ///
    /// # Errors
    /// Any I/O error opening the directory (the listing then falls back to paths).
    fn open_dir(&mut self, _path: &Path) -> io::Result<Option<fs::File>> {
        Ok(None)
    }
}

/// The real disk through `std::fs`: the default filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFilesystem;

impl Filesystem for OsFilesystem {
    fn open_read(&mut self, path: &Path, offset: u64) -> io::Result<ReadStream> {
        let mut f = fs::File::open(path)?;
        if f.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(nix::libc::EISDIR));
        }
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(ReadStream::File(f))
    }

    fn open_write(&mut self, path: &Path, mode: WriteMode) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(upload::open_file(path, mode, false)?))
    }

    fn open_upload(
        &mut self,
        path: &Path,
        mode: WriteMode,
        opts: UploadOptions,
    ) -> io::Result<Box<dyn UploadSink>> {
        upload::open(path, mode, opts)
    }

    fn mkdir(&mut self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(0o777).create(path)
    }

    fn rmdir(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        if fs::symlink_metadata(path)?.is_dir() {
            return Err(io::Error::from_raw_os_error(nix::libc::EISDIR));
        }
        fs::remove_file(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    fn utime(&mut self, path: &Path, mtime: SystemTime) -> io::Result<()> {
        let f = fs::OpenOptions::new().write(true).open(path)?;
        f.set_modified(mtime)
    }

    fn stat(&mut self, path: &Path) -> io::Result<Stat> {
        fs::metadata(path).map(|m| Stat::from(&m))
    }

    fn lstat(&mut self, path: &Path) -> io::Result<Stat> {
        fs::symlink_metadata(path).map(|m| Stat::from(&m))
    }

    fn listdir(&mut self, path: &Path) -> io::Result<DirIter> {
        let rd = fs::read_dir(path)?;
        Ok(Box::new(rd.map(|e| e.map(|e| e.file_name()))))
    }

    fn readlink(&mut self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    fn open_dir(&mut self, path: &Path) -> io::Result<Option<fs::File>> {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
            .open(path)
            .map(Some)
    }
}

/// The jail around a [`Filesystem`]: a real root that is the virtual `/`, and the virtual
/// working directory (pyftpdlib `AbstractedFS`).
pub struct AbstractedFs {
    root: PathBuf,
    cwd: Vec<u8>,
    fs: Box<dyn Filesystem>,
}

impl AbstractedFs {
    /// A jail rooted at `root` (resolved to a real path) with the working directory `/`.
    ///
    /// # Errors
    /// `root` cannot be resolved.
    pub fn new(root: &Path, fs: Box<dyn Filesystem>) -> io::Result<Self> {
        let root = path::realpath(&std::path::absolute(root)?)
            .ok_or_else(|| io::Error::other("symlink loop in root"))?;
        Ok(AbstractedFs {
            root,
            cwd: b"/".to_vec(),
            fs,
        })
    }

    /// The real root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The virtual working directory.
    pub fn cwd(&self) -> &[u8] {
        &self.cwd
    }

    /// Normalizes a virtual path against the working directory.
    pub fn ftpnorm(&self, vpath: &[u8]) -> Vec<u8> {
        path::ftpnorm(&self.cwd, vpath)
    }

    /// Virtual → real.
    pub fn ftp2fs(&self, vpath: &[u8]) -> PathBuf {
        path::ftp2fs(&self.root, &self.cwd, vpath)
    }

    /// Real → virtual.
    pub fn fs2ftp(&self, real: &Path) -> Vec<u8> {
        path::fs2ftp(&self.root, real)
    }

    /// True if a real path, symlinks resolved, stays inside the root.
    pub fn validpath(&self, real: &Path) -> bool {
        path::validpath(&self.root, real)
    }

    /// Changes the working directory to a real path that must be a directory.
    ///
    /// # Errors
    /// `ENOTDIR` or the error of `stat`.
    pub fn chdir(&mut self, real: &Path) -> io::Result<()> {
        let st = self.fs.stat(real)?;
        if !st.is_dir() {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOTDIR));
        }
        self.cwd = self.fs2ftp(real);
        Ok(())
    }

    /// The filesystem operations.
    pub fn fs(&mut self) -> &mut dyn Filesystem {
        self.fs.as_mut()
    }
}

/// The text of an I/O error as it goes into a reply: the OS message without "(os error N)",
/// as Python's `strerror` gives it.
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
