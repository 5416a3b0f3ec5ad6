//! A hidden temporary file beside a name beneath the root, renamed over that name when it is
//! complete or removed when it is not ([`RootDir::create_temp`], [`TempFile`]): what atomic
//! uploads write to (proftpd's `HiddenStores`). The name's directory is resolved beneath the
//! root once and held by its descriptor; the temporary file is created in it with `O_EXCL`,
//! and the rename and the removal name both entries relative to that same descriptor, so no
//! host path is ever looked up again after a check.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::{Resolver, RootDir};

/// The longest file name Linux file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Names tried before giving up (`EEXIST`): each is random, so a clash is rare.
const TRIES: usize = 100;

impl RootDir {
    /// Creates a new hidden file (`.ftpdlib.<random>.<name>`, cut to the 255-byte name
    /// limit) with permission bits `mode` in the directory of `path`, for
    /// [`TempFile::persist`] to rename over `path`'s final name.
    ///
    /// # Errors
    /// As [`parent`](Self::parent) (`EINVAL` when `path` names no entry), or the error of
    /// creating the file.
    pub fn create_temp(&self, path: &Path, mode: u32) -> io::Result<TempFile> {
        let (dir, name) = self.parent(path)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(mode & 0o777);
        for _ in 0..TRIES {
            let temp = temp_name(name.as_bytes());
            match self.create_in(dir.as_fd(), &temp, flags, mode) {
                Ok(fd) => {
                    return Ok(TempFile {
                        file: File::from(fd),
                        dir,
                        temp: Some(temp),
                        name,
                    })
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Errno::EEXIST.into())
    }

    /// Creates the single component `name` in `dir` (a directory already resolved beneath
    /// the root): openat2 confined beneath `dir` where the kernel has it, else openat(2);
    /// `O_EXCL` never follows a symlink planted under the name.
    fn create_in(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        flags: OFlag,
        mode: Mode,
    ) -> Result<OwnedFd, Errno> {
        match self.resolver {
            Resolver::Openat2 => {
                let resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
                let how = OpenHow::new().flags(flags).mode(mode).resolve(resolve);
                openat2(dir, name, how)
            }
            Resolver::Walk => openat(dir, name, flags | OFlag::O_NOFOLLOW, mode),
        }
    }
}

/// A temporary file beside a name, from [`RootDir::create_temp`]. Dropped without
/// [`persist`](Self::persist), it is removed (the name keeps what it had).
#[derive(Debug)]
pub struct TempFile {
    file: File,
    /// The directory holding both names.
    dir: OwnedFd,
    /// The temporary name, while the file has it.
    temp: Option<OsString>,
    /// The name it replaces.
    name: OsString,
}

impl TempFile {
    /// The file, open for writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The file, shared (for calls such as splice(2) that take a descriptor).
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// Renames the file over its name (renameat(2) within the held directory: readers see
    /// the old file or this one, never a part).
    ///
    /// # Errors
    /// The renameat(2) error; the temporary file is then removed.
    pub fn persist(mut self) -> io::Result<()> {
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        let dir = self.dir.as_fd();
        match nix::fcntl::renameat(dir, temp.as_os_str(), dir, self.name.as_os_str()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.temp = Some(temp);
                Err(e.into())
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        use nix::unistd::{unlinkat, UnlinkatFlags};
        if let Some(temp) = self.temp.take() {
            if let Err(e) = unlinkat(&self.dir, temp.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                log::warn!("cannot remove the temporary file {temp:?}: {e}");
            }
        }
    }
}

/// `.ftpdlib.<random>.<name>`, `name` cut so the whole fits in [`NAME_MAX`] bytes.
fn temp_name(name: &[u8]) -> OsString {
    let mut temp = format!(".ftpdlib.{}.", random_word()).into_bytes();
    let room = NAME_MAX - temp.len();
    temp.extend_from_slice(&name[..name.len().min(room)]);
    OsStr::from_bytes(&temp).to_owned()
}

/// Eight characters that differ between calls and processes (the `O_EXCL` create makes the
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
