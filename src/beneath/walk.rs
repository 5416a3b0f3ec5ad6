//! The resolver for kernels without openat2(2) (Linux < 5.6, or a sandbox that filters it):
//! one component at a time, each opened with `O_PATH | O_NOFOLLOW` relative to the
//! descriptor of the directory before it, so the kernel never follows a symlink or a `..`
//! on its own. A symlink is read from its own descriptor (readlinkat with an empty name) and
//! its target walked the same way; `..` goes back to the descriptor held for the directory
//! before (never `openat(fd, "..")`, which a directory moved meanwhile would turn into a way
//! out); an absolute target or a `..` above the root is an escape (`EXDEV`, as openat2's
//! `RESOLVE_BENEATH` answers), unless the root is the file system's `/`.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, Mode};

use super::RETRIES;

/// Symlinks followed in one resolution before giving up (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Resolves `path` beneath `root` and opens it with `flags` (the final symlink followed
/// unless `flags` has `O_NOFOLLOW`). Tried again when the final object turned into a symlink
/// between looking at it and opening it.
pub(super) fn open(
    root: BorrowedFd<'_>,
    jailed: bool,
    path: &[u8],
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    for _ in 0..RETRIES {
        if let Some(fd) = walk_once(root, jailed, path, flags, mode)? {
            return Ok(fd);
        }
    }
    Err(Errno::EAGAIN)
}

/// The non-empty components of `p` other than `.`.
fn components(p: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// True when `p` ends in `/` or `/.`: POSIX path resolution then wants a directory at the
/// end (openat2 answers ENOTDIR for `file/`), and `components` alone would lose that.
fn wants_dir(p: &[u8]) -> bool {
    !p.is_empty() && matches!(p.rsplit(|&b| b == b'/').next(), Some(b"" | b"."))
}

/// The flags for a final component that must be a directory: `O_DIRECTORY`, and a symlink
/// there is followed even without asking (`link/` names the directory, as in the kernel).
fn dir_flags(flags: OFlag) -> OFlag {
    (flags | OFlag::O_DIRECTORY) & !OFlag::O_NOFOLLOW
}

/// One walk; `Ok(None)` when the final object changed under it (walk again).
fn walk_once(
    root: BorrowedFd<'_>,
    jailed: bool,
    path: &[u8],
    flags: OFlag,
    mode: Mode,
) -> Result<Option<OwnedFd>, Errno> {
    // Descriptors of the directories walked into, below the root: `..` pops one.
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut todo: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
    let mut links = 0;
    let mut flags = flags;
    if wants_dir(path) {
        flags = dir_flags(flags);
    }
    while let Some(name) = todo.pop_front() {
        let cur = held.last().map_or(root, |f| f.as_fd());
        if name == b".." {
            if held.pop().is_none() && jailed {
                return Err(Errno::EXDEV);
            }
            continue;
        }
        let name = OsStr::from_bytes(&name);
        let last = todo.is_empty();
        if last && flags.contains(OFlag::O_NOFOLLOW) {
            return openat(cur, name, flags, mode).map(Some);
        }
        let probe = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(cur, name, probe, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if last && flags.contains(OFlag::O_CREAT) => {
                return create(cur, name, flags, mode);
            }
            Err(e) => return Err(e),
        };
        let kind = fstat(&fd)?.st_mode & nix::libc::S_IFMT;
        if kind == nix::libc::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::ELOOP);
            }
            if follow_link(&fd, jailed, &mut held, &mut todo)? && last {
                flags = dir_flags(flags);
            }
        } else if !last {
            if kind != nix::libc::S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
            held.push(fd);
        } else {
            return finish(cur, name, fd, kind, flags, mode);
        }
    }
    // The path ends at a directory reached by `..` (or is the root itself).
    let cur = held.last().map_or(root, |f| f.as_fd());
    openat(cur, ".", flags, mode).map(Some)
}

/// A symlink met on the walk (`fd`, opened O_PATH|O_NOFOLLOW): its target's components go
/// in front of what is left to walk. An absolute target starts again at the root (all
/// `held` directories dropped), which a jailed walk refuses with EXDEV. True when the
/// target ends in a slash (or `.`/`..`): it then names a directory.
fn follow_link(
    fd: &OwnedFd,
    jailed: bool,
    held: &mut Vec<OwnedFd>,
    todo: &mut VecDeque<Vec<u8>>,
) -> Result<bool, Errno> {
    let target = readlinkat(fd, "")?;
    let target = target.as_bytes();
    if target.starts_with(b"/") {
        if jailed {
            return Err(Errno::EXDEV);
        }
        held.clear();
    }
    for c in components(target).rev() {
        todo.push_front(c.to_vec());
    }
    Ok(wants_dir(target))
}

/// Creates the final component, which did not exist a moment ago. `O_NOFOLLOW`: a symlink
/// planted meanwhile is not followed (ELOOP, or EEXIST with `O_EXCL`), and without `O_EXCL`
/// the walk starts again to see what is there now.
fn create(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlag,
    mode: Mode,
) -> Result<Option<OwnedFd>, Errno> {
    match openat(dir, name, flags | OFlag::O_NOFOLLOW, mode) {
        Err(Errno::ELOOP) if !flags.contains(OFlag::O_EXCL) => Ok(None),
        r => r.map(Some),
    }
}

/// Opens the final object, which the probe `fd` showed is no symlink: an `O_PATH` request
/// is the probe itself; anything else opens the name again with `O_NOFOLLOW` (ELOOP: it
/// became a symlink meanwhile, walk again).
fn finish(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    fd: OwnedFd,
    kind: u32,
    flags: OFlag,
    mode: Mode,
) -> Result<Option<OwnedFd>, Errno> {
    if flags.contains(OFlag::O_PATH) {
        if flags.contains(OFlag::O_DIRECTORY) && kind != nix::libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        return Ok(Some(fd));
    }
    match openat(dir, name, flags | OFlag::O_NOFOLLOW, mode) {
        Err(Errno::ELOOP) => Ok(None),
        r => r.map(Some),
    }
}
