//! Filesystems: the [`Filesystem`] trait (what a session may do to files), [`OsFilesystem`]
//! (the real disk beneath a root directory) and [`AbstractedFs`] (the virtual working
//! directory and path arithmetic around any of them), mirroring pyftpdlib's `AbstractedFS`.
//!
//! # The path contract
//!
//! A [`Filesystem`] receives **virtual paths** only: absolute, normalized by
//! [`path::ftpnorm`] (no `.`, `..` or repeated `/`), where `/` is the session's root. It
//! never sees a host path, so a custom filesystem (content generated on the fly, an
//! in-memory tree, a database) has nothing to confine and cannot weaken the jail.
//! [`OsFilesystem`] is built per session around the real root directory, held open as a
//! descriptor ([`RootDir`](crate::beneath::RootDir)), and resolves every virtual path
//! beneath it at the moment of the operation: there is no check of a path followed by a
//! second lookup of the same name. A path leading out of the root (a symlink whose target is
//! absolute or climbs above the root) fails with an error carrying
//! [`Escape`](crate::beneath::Escape), which the session answers with pyftpdlib's
//! `550 '<path>' points to a path which is outside the user's root directory.`
//!
//! The host form of a path ([`AbstractedFs::ftp2fs`], the root joined with the virtual path,
//! symlinks not resolved) is for display, for [`Authorizer::has_perm`](crate::authorizers::Authorizer::has_perm)
//! (whose `override_perm` directories are compared lexically) and for the callbacks.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod abstracted;
pub mod listing;
mod os;
pub mod path;
pub use abstracted::AbstractedFs;
pub use os::OsFilesystem;
mod upload;
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
/// no lock. Every path is a virtual path (see the [module docs](self): absolute, normalized,
/// `/` is the session's root).
pub trait Filesystem: Send {
    /// Opens a file for download, positioned at `offset`.
    ///
    /// # Errors
    /// Any I/O error; it becomes a 550 reply.
    fn open_read(&mut self, path: &Path, offset: u64) -> io::Result<ReadStream>;
    /// Opens a file for upload; a file this call creates gets the permission bits `perm`
    /// (`0o666` less the handler's umask, `0o600` less it for STOU; the process umask
    /// applies as well).
    ///
    /// # Errors
    /// Any I/O error; it becomes a 550 reply.
    fn open_write(
        &mut self,
        path: &Path,
        how: WriteMode,
        perm: u32,
    ) -> io::Result<Box<dyn Write + Send>>;
    /// Opens a file for an upload under the handler's upload rules (see [`UploadOptions`]:
    /// the upload lock, atomic uploads); `perm` as for [`open_write`](Self::open_write).
    /// The default opens it with [`open_write`](Self::open_write) and applies neither:
    /// content that is not a plain file has nothing to lock or rename.
    ///
    /// # Errors
    /// Any I/O error; [`io::ErrorKind::WouldBlock`] when another session holds the file's
    /// lock (a 450 reply).
    fn open_upload(
        &mut self,
        path: &Path,
        how: WriteMode,
        perm: u32,
        _opts: UploadOptions,
    ) -> io::Result<Box<dyn UploadSink>> {
        Ok(Box::new(PlainUpload(self.open_write(path, how, perm)?)))
    }
    /// Creates a directory with the permission bits `perm` (`0o777` less the handler's umask;
    /// the process umask applies as well).
    ///
    /// # Errors
    /// Any I/O error.
    fn mkdir(&mut self, path: &Path, perm: u32) -> io::Result<()>;
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
    /// Changes permission bits (SITE CHMOD, which passes only bits within `0o777`).
    ///
    /// # Errors
    /// Any I/O error.
    fn chmod(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    /// Sets the modification time (MFMT).
    ///
    /// # Errors
    /// Any I/O error.
    fn utime(&mut self, path: &Path, mtime: SystemTime) -> io::Result<()>;
    /// Facts about a path, following symlinks (beneath the root: a link leading out fails
    /// with [`Escape`](crate::beneath::Escape)).
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
    /// fstatat(2) (never following a symlink: a link's target is stat'ed with
    /// [`stat`](Self::stat) on its virtual path, beneath the root): one path walk per listing
    /// instead of one per entry. Only for filesystems whose `lstat`/`readlink` are the OS's
    /// own. Default: `None` (listings call `lstat`/`stat`/`readlink` with each entry's path).
    ///
    /// # Errors
    /// Any I/O error opening the directory (the listing then falls back to paths).
    fn open_dir(&mut self, _path: &Path) -> io::Result<Option<fs::File>> {
        Ok(None)
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
