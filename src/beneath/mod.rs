//! Resolution beneath a root directory, at the moment of each operation: a [`RootDir`] holds
//! a descriptor of the root (`O_PATH`), and every file operation of an FTP session or a TFTP
//! request names its file relative to it. The kernel resolves the name with openat2(2)
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (Linux ≥ 5.6) and the final component is then
//! handled by an `*at()` call relative to its parent's descriptor. No path is checked and
//! then opened again by name, so a component renamed, or swapped for a symlink, between two
//! steps cannot lead out of the root. Where openat2 is missing, `walk` resolves one
//! component at a time with the same guarantees.
//!
//! What a jailed root refuses (the error carries [`Escape`]): `..` above the root, a symlink
//! whose target is absolute (even one pointing back inside: beneath a descriptor, `/` has no
//! meaning; use relative links) or climbs out, and /proc "magic" links. A root that is the
//! file system's `/` is no jail: absolute symlinks work there as usual (magic links are still
//! refused).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fstat, FileStat, Mode};
use nix::sys::time::TimeSpec;

mod temp;
mod walk;

pub use temp::TempFile;

#[cfg(test)]
mod tests;

/// How often a lookup is tried again when the kernel saw a rename race during it (openat2
/// answers EAGAIN when a `..` was crossed while something was renamed).
const RETRIES: usize = 32;

/// The error inside an [`io::Error`] (kind `PermissionDenied`) of a path that leads out of
/// the root: `..` above it, or a symlink whose target is absolute or climbs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escape {
    /// The path as the caller gave it.
    pub path: PathBuf,
}

impl Escape {
    /// The I/O error for `path` leading out of the root.
    pub fn error(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            Escape {
                path: path.to_path_buf(),
            },
        )
    }

    /// The [`Escape`] inside `e`, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&Escape> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Escape>())
    }
}

impl fmt::Display for Escape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} leads outside the root directory",
            self.path.display()
        )
    }
}

impl std::error::Error for Escape {}

/// Opens `path` as a directory, `O_PATH`. This runs at every login, at the deepest point
/// of a session thread's stack: the name is copied to the heap (std and nix would copy it
/// into a buffer on the stack; an idle session keeps every stack page it touched).
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(c.as_c_str(), flags, Mode::empty())?)
}

/// Whether `path` names `/` (as its components say: `/`, `//`, `/./`), judged on its bytes:
/// this runs when a session opens a root no other session holds, at the bottom of its
/// stack, where comparing `Components` took 280 bytes more (measured: deepest word 8,520
/// bytes from the top instead of 8,800).
fn names_slash(path: &Path) -> bool {
    let b = path.as_os_str().as_bytes();
    b.first() == Some(&b'/') && b.split(|&c| c == b'/').all(|s| s.is_empty() || s == b".")
}

/// The root directories a process's sessions hold open, by path, so sessions of the same
/// root share one descriptor ([`RootDir::open_shared`]): 10,000 sessions of one home need
/// one descriptor for it, not 10,000. Entries hold no descriptor themselves: the last
/// session of a root closes it.
#[derive(Debug, Default)]
pub struct RootCache {
    /// Keyed by the path's bytes: a `PathBuf` hashes and compares component by component,
    /// and this runs at every login, the deepest call of a session thread's stack.
    open: Mutex<HashMap<OsString, CachedRoot>>,
}

#[derive(Debug)]
struct CachedRoot {
    /// (st_dev, st_ino) of the directory.
    id: (u64, u64),
    fd: Weak<OwnedFd>,
    jailed: bool,
    resolver: Resolver,
}

/// How names are resolved beneath the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// openat2(2) with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (Linux ≥ 5.6).
    Openat2,
    /// One component at a time (`walk`), where openat2 is missing or filtered.
    Walk,
}

/// A root directory held open; every operation resolves its path beneath it.
#[derive(Debug)]
pub struct RootDir {
    /// Shared by the sessions of one root when opened through a [`RootCache`].
    fd: Arc<OwnedFd>,
    /// False when the root is the file system's `/` (nothing to escape from).
    jailed: bool,
    resolver: Resolver,
    /// chmod and utimes reach a pinned object through `/proc/self/fd` (when it exists).
    proc_fd: bool,
}

impl RootDir {
    /// Opens `path` (symlinks in it followed: it is the administrator's choice) as a root.
    /// The resolver is openat2 when the kernel has it, the component walk otherwise.
    ///
    /// # Errors
    /// `path` cannot be opened as a directory.
    pub fn open(path: &Path) -> io::Result<RootDir> {
        Ok(RootDir::from_fd(path, open_dir(path)?))
    }

    /// [`open`](Self::open), sharing the descriptor with the other sessions of `cache` that
    /// opened the same directory: the path is opened again (it may name another directory
    /// by now) and, when it still names the directory a live entry holds, that entry's
    /// descriptor is used and the new one closed. One descriptor per root directory in use,
    /// not one per session.
    ///
    /// # Errors
    /// `path` cannot be opened as a directory.
    pub fn open_shared(path: &Path, cache: &RootCache) -> io::Result<RootDir> {
        let fd = open_dir(path)?;
        let st = fstat(&fd)?;
        let id = (st.st_dev, st.st_ino);
        let Ok(mut open) = cache.open.lock() else {
            return Ok(RootDir::from_fd(path, fd));
        };
        if let Some(e) = open.get(path.as_os_str()) {
            if let (true, Some(fd)) = (e.id == id, e.fd.upgrade()) {
                return Ok(RootDir {
                    fd,
                    jailed: e.jailed,
                    resolver: e.resolver,
                    proc_fd: true,
                });
            }
        }
        let root = RootDir::from_fd(path, fd);
        if open.len() >= 1024 && open.len().is_power_of_two() {
            open.retain(|_, e| e.fd.strong_count() > 0);
        }
        open.insert(
            path.as_os_str().to_os_string(),
            CachedRoot {
                id,
                fd: Arc::downgrade(&root.fd),
                jailed: root.jailed,
                resolver: root.resolver,
            },
        );
        Ok(root)
    }

    /// A root on the descriptor `fd` of `path`.
    fn from_fd(path: &Path, fd: OwnedFd) -> RootDir {
        // `/` itself is no jail. Judged by the name: another way to name `/` (a symlink to
        // it) gets the stricter resolution, which is safe.
        let jailed = !names_slash(path);
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH);
        // ENOSYS before Linux 5.6; EPERM where a seccomp filter refuses unknown calls.
        let resolver = match openat2(&fd, c".", how) {
            Err(Errno::ENOSYS | Errno::EPERM) => Resolver::Walk,
            _ => Resolver::Openat2,
        };
        RootDir {
            fd: Arc::new(fd),
            jailed,
            resolver,
            proc_fd: true,
        }
    }

    /// The same root resolved with `resolver` (the walk can be chosen on any kernel, which
    /// is how it is tested).
    pub fn with_resolver(mut self, resolver: Resolver) -> RootDir {
        self.resolver = resolver;
        self
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// False when the root is the file system's `/`.
    pub fn is_jailed(&self) -> bool {
        self.jailed
    }

    /// Resolves `path` beneath the root and opens it with `flags` (`O_CLOEXEC` added), the
    /// final symlink followed unless `flags` has `O_NOFOLLOW`.
    ///
    /// # Errors
    /// [`Escape`] for a path leading out, or the open error.
    pub fn open_at(&self, path: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let rel = relative(path);
        let flags = flags | OFlag::O_CLOEXEC;
        let r = match self.resolver {
            Resolver::Openat2 => self.openat2(rel, flags, mode),
            Resolver::Walk => walk::open(self.fd.as_fd(), self.jailed, rel, flags, mode),
        };
        r.map_err(|e| match e {
            Errno::EXDEV if self.jailed => Escape::error(path),
            e => io::Error::from(e),
        })
    }

    fn openat2(&self, rel: &[u8], flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
        let mut resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if self.jailed {
            resolve |= ResolveFlag::RESOLVE_BENEATH;
        }
        // openat2 refuses a mode without O_CREAT (EINVAL), where openat ignores it.
        let mode = if flags.intersects(OFlag::O_CREAT | OFlag::O_TMPFILE) {
            mode
        } else {
            Mode::empty()
        };
        let how = OpenHow::new().flags(flags).mode(mode).resolve(resolve);
        let rel = OsStr::from_bytes(rel);
        for _ in 0..RETRIES {
            match openat2(&self.fd, rel, how) {
                Err(Errno::EAGAIN) => continue,
                r => return r,
            }
        }
        Err(Errno::EAGAIN)
    }

    /// Opens a file (see [`open_at`](Self::open_at)).
    ///
    /// # Errors
    /// As [`open_at`](Self::open_at).
    pub fn open_file(&self, path: &Path, flags: OFlag, mode: Mode) -> io::Result<File> {
        self.open_at(path, flags, mode).map(File::from)
    }

    /// A descriptor (`O_PATH`) of the directory `path`.
    ///
    /// # Errors
    /// As [`open_at`](Self::open_at); `ENOTDIR` when it is no directory.
    pub fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        self.open_at(path, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
    }

    /// Facts about `path`, the final symlink followed or not.
    ///
    /// # Errors
    /// As [`open_at`](Self::open_at).
    pub fn stat(&self, path: &Path, follow: bool) -> io::Result<FileStat> {
        let mut flags = OFlag::O_PATH;
        if !follow {
            flags |= OFlag::O_NOFOLLOW;
        }
        let fd = self.open_at(path, flags, Mode::empty())?;
        Ok(fstat(&fd)?)
    }

    /// The directory holding `path` (resolved beneath the root, symlinks followed) and the
    /// final name, which the caller handles with an `*at()` call that does not follow it.
    ///
    /// # Errors
    /// `EINVAL` when `path` names no entry (the root itself, `.`, `..`); or as
    /// [`open_dir`](Self::open_dir) for the parent.
    pub fn parent(&self, path: &Path) -> io::Result<(OwnedFd, OsString)> {
        let rel = relative(path);
        let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        if matches!(name, b"" | b"." | b"..") {
            return Err(Errno::EINVAL.into());
        }
        let fd = if dir.is_empty() {
            self.fd.try_clone()?
        } else {
            self.open_at(
                Path::new(OsStr::from_bytes(dir)),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .map_err(|e| match Escape::of(&e) {
                Some(_) => Escape::error(path),
                None => e,
            })?
        };
        Ok((fd, OsStr::from_bytes(name).to_owned()))
    }

    /// The target of the symlink `path`.
    ///
    /// # Errors
    /// As [`parent`](Self::parent), or `EINVAL` when it is no symlink.
    pub fn readlink(&self, path: &Path) -> io::Result<OsString> {
        let (dir, name) = self.parent(path)?;
        Ok(nix::fcntl::readlinkat(&dir, name.as_os_str())?)
    }

    /// Creates the directory `path` with permission bits `mode` (the process umask applies).
    ///
    /// # Errors
    /// As [`parent`](Self::parent), or the mkdirat(2) error.
    pub fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        Ok(nix::sys::stat::mkdirat(&dir, name.as_os_str(), mode)?)
    }

    /// Removes the empty directory `path` (a symlink is not followed: `ENOTDIR`).
    ///
    /// # Errors
    /// As [`parent`](Self::parent), or the unlinkat(2) error.
    pub fn rmdir(&self, path: &Path) -> io::Result<()> {
        use nix::unistd::{unlinkat, UnlinkatFlags};
        let (dir, name) = self.parent(path)?;
        Ok(unlinkat(&dir, name.as_os_str(), UnlinkatFlags::RemoveDir)?)
    }

    /// Removes the entry `path`, a file or a symlink itself (`EISDIR` for a directory).
    ///
    /// # Errors
    /// As [`parent`](Self::parent), or the unlinkat(2) error.
    pub fn unlink(&self, path: &Path) -> io::Result<()> {
        use nix::unistd::{unlinkat, UnlinkatFlags};
        let (dir, name) = self.parent(path)?;
        Ok(unlinkat(
            &dir,
            name.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// Renames the entry `from` (not followed if a symlink) to `to`, both beneath the root.
    /// An `EXDEV` here is a real cross-device rename, never an escape.
    ///
    /// # Errors
    /// As [`parent`](Self::parent) for either path, or the renameat(2) error.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        Ok(nix::fcntl::renameat(
            &from_dir,
            from_name.as_os_str(),
            &to_dir,
            to_name.as_os_str(),
        )?)
    }

    /// Sets the permission bits of `path`, its final symlink followed beneath the root (as
    /// chmod(2) does, so a link leading out fails with [`Escape`]). Never the root directory
    /// itself (`EPERM`): a user must not open up, or shut themselves out of, their root.
    ///
    /// The object is resolved once and pinned by an `O_PATH` descriptor, then changed
    /// through `/proc/self/fd/N` (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does). Without
    /// /proc it is opened for reading beneath the root and changed with fchmod(2), which
    /// needs read permission on it.
    ///
    /// # Errors
    /// [`Escape`], `EPERM`, or the chmod error.
    pub fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        self.on_pinned(
            path,
            |p| {
                nix::sys::stat::fchmodat(
                    AT_FDCWD,
                    p,
                    mode,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
            },
            |f| nix::sys::stat::fchmod(f, mode),
        )
    }

    /// Sets the modification time of `path` (the access time is left alone), its final
    /// symlink followed beneath the root, on an object pinned as in [`chmod`](Self::chmod).
    ///
    /// # Errors
    /// [`Escape`], `EPERM`, or the utimensat(2) error.
    pub fn set_mtime(&self, path: &Path, mtime: SystemTime) -> io::Result<()> {
        let ts = timespec(mtime);
        let omit = TimeSpec::UTIME_OMIT;
        self.on_pinned(
            path,
            |p| {
                use nix::sys::stat::{utimensat, UtimensatFlags};
                utimensat(AT_FDCWD, p, &omit, &ts, UtimensatFlags::FollowSymlink)
            },
            |f| nix::sys::stat::futimens(f, &omit, &ts),
        )
    }

    /// Runs a change on the object `path` resolves to, pinned by a descriptor: through
    /// `/proc/self/fd/N`, or on a readable descriptor of the same object without /proc.
    fn on_pinned(
        &self,
        path: &Path,
        via_proc: impl Fn(&Path) -> nix::Result<()>,
        via_fd: impl Fn(BorrowedFd<'_>) -> nix::Result<()>,
    ) -> io::Result<()> {
        let fd = self.open_at(path, OFlag::O_PATH, Mode::empty())?;
        let st = fstat(&fd)?;
        let root = fstat(&self.fd)?;
        if (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino) {
            return Err(Errno::EPERM.into());
        }
        if self.proc_fd {
            let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            match via_proc(&p) {
                Err(Errno::ENOENT) if !Path::new("/proc/self/fd").is_dir() => {}
                r => return Ok(r?),
            }
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let f = self.open_at(path, flags, Mode::empty())?;
        let again = fstat(&f)?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            // Swapped between the two lookups: both were beneath the root, but this is not
            // the object the caller was told about.
            return Err(Errno::EAGAIN.into());
        }
        Ok(via_fd(f.as_fd())?)
    }

    /// The names in the directory `path` (`.` and `..` left out), read from a descriptor
    /// opened beneath the root.
    ///
    /// # Errors
    /// As [`open_at`](Self::open_at).
    pub fn read_dir(&self, path: &Path) -> io::Result<ReadDir> {
        let fd = self.open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
        Ok(ReadDir(nix::dir::Dir::from_fd(fd)?.into_iter()))
    }
}

/// The names in a directory, one at a time (see [`RootDir::read_dir`]).
#[derive(Debug)]
pub struct ReadDir(nix::dir::OwningIter);

impl Iterator for ReadDir {
    type Item = io::Result<OsString>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.0.next()? {
                Ok(e) => {
                    let name = e.file_name().to_bytes();
                    if name != b"." && name != b".." {
                        return Some(Ok(OsStr::from_bytes(name).to_owned()));
                    }
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// `path` without its leading slashes (a virtual `/a/b` is `a/b` beneath the root); the root
/// itself is `.`.
fn relative(path: &Path) -> &[u8] {
    let b = path.as_os_str().as_bytes();
    let start = b.iter().position(|&c| c != b'/').unwrap_or(b.len());
    let rel = &b[start..];
    if rel.is_empty() {
        b"."
    } else {
        rel
    }
}

/// A `SystemTime` as a `timespec` (times before 1970 included).
fn timespec(t: SystemTime) -> TimeSpec {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => TimeSpec::from_duration(d),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            TimeSpec::new(-secs, 0)
        }
    }
}
