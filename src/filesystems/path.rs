//! Virtual-path arithmetic, pure and lexical (pyftpdlib `AbstractedFS.ftpnorm`, `ftp2fs`,
//! `fs2ftp`). Virtual paths are bytes, so names that are not UTF-8 survive a round trip
//! (RFC 2640 §2.2 leaves the bytes to the server). Nothing here looks at the disk: the jail
//! is enforced when a file is actually reached ([`crate::beneath`]), never by checking a
//! path that is opened again later.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Symlinks followed while resolving one path before giving up (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Normalizes `path` against the virtual working directory `cwd`: absolute, no `.` or `..`
/// (a `..` at `/` stays at `/`), no repeated slashes. The result always starts with `/`.
pub fn ftpnorm(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    fn push_all<'a>(p: &'a [u8], parts: &mut Vec<&'a [u8]>) {
        for seg in p.split(|&b| b == b'/') {
            match seg {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    if !path.starts_with(b"/") {
        push_all(cwd, &mut parts);
    }
    push_all(path, &mut parts);
    let mut out = Vec::with_capacity(path.len() + cwd.len() + 1);
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Translates a virtual path to a host path under `root` (pyftpdlib `ftp2fs`). Lexically the
/// result is always `root` or below it; symlinks are not looked at.
pub fn ftp2fs(root: &Path, cwd: &[u8], path: &[u8]) -> PathBuf {
    let norm = ftpnorm(cwd, path);
    let rel = &norm[1..];
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// Translates a real path to its virtual form (pyftpdlib `fs2ftp`); a path outside `root`
/// becomes `/`.
pub fn fs2ftp(root: &Path, path: &Path) -> Vec<u8> {
    match path.strip_prefix(root) {
        Ok(rel) => {
            let mut out = vec![b'/'];
            out.extend_from_slice(rel.as_os_str().as_bytes());
            ftpnorm(b"/", &out)
        }
        Err(_) => b"/".to_vec(),
    }
}

/// readlink(2) of `path`, its name and the target both on the heap: this is the deepest
/// call of a login, and an idle session's thread keeps resident every stack page its
/// deepest call touched (std's `read_link` copies the name into a stack buffer; nix's
/// keeps a stat buffer in its frame for long targets). A target of `PATH_MAX` bytes or
/// more is refused (`ENAMETOOLONG`), as an unreadable link.
#[allow(unsafe_code)]
fn read_link(path: &Path) -> std::io::Result<PathBuf> {
    use nix::libc;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf: Vec<u8> = Vec::with_capacity(libc::PATH_MAX as usize);
    // SAFETY: `c` is a NUL-terminated string alive for the call, and `buf` has room for
    // `buf.capacity()` bytes, the most readlink(2) writes.
    let n = unsafe { libc::readlink(c.as_ptr(), buf.as_mut_ptr().cast(), buf.capacity()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    if n >= buf.capacity() {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    // SAFETY: readlink(2) initialized the first `n` bytes (n < capacity).
    unsafe { buf.set_len(n) };
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// `path` made absolute against the working directory: `std::path::absolute` without its
/// walk over the components (the deepest frames of a login; [`realpath`] normalizes what
/// follows anyway).
///
/// # Errors
/// The working directory is needed and cannot be read.
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.as_os_str().as_bytes().first() == Some(&b'/') {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// Resolves every symlink in an absolute path, like Python's `os.path.realpath` (components
/// that do not exist are kept as they are). Only for the directories the configuration names
/// (a session's root and home, resolved at login), never for a client's path: the jail is
/// enforced when a file is reached ([`crate::beneath`]). Written for a small stack: one
/// readlink(2) per component and no stat buffer (glibc's realpath(3) keeps several kilobytes
/// of buffers on a session thread's stack). `None` for a symlink loop or an unreadable link.
pub fn realpath(path: &Path) -> Option<PathBuf> {
    // Sized once: growing these (realloc) is the deepest call of a login.
    let mut todo: Vec<OsString> = Vec::with_capacity(32);
    push_components(path, &mut todo);
    let mut out = PathBuf::with_capacity(path.as_os_str().len() + 256);
    out.push("/");
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            pop_last(&mut out);
            continue;
        }
        out.push(&c);
        // readlink(2) both tests and reads a link: one call per component, and no stat
        // buffer on the stack (this runs at every login, on a session thread's small stack).
        let target = match read_link(&out) {
            Ok(t) => Some(t),
            // Not a link (EINVAL), or nothing there (kept as it is).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EINVAL | nix::libc::ENOENT | nix::libc::ENOTDIR)
                ) =>
            {
                None
            }
            // A link that cannot be read must not pass for a plain name.
            Err(_) => {
                let is_link = std::fs::symlink_metadata(&out)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if is_link {
                    return None;
                }
                None
            }
        };
        if let Some(target) = target {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            pop_last(&mut out);
            if target.is_absolute() {
                out = PathBuf::from("/");
            }
            push_components(&target, &mut todo);
        }
    }
    Some(out)
}

/// Pushes the normal and `..` components of `p` onto `todo` in reverse (so `pop` yields them
/// in order).
fn push_components(p: &Path, todo: &mut Vec<OsString>) {
    // Split on bytes, not with `Path::components`: its iterator is the deepest frame of a
    // login (see `read_link`). "." and empty components are dropped, ".." kept, as
    // `components` does.
    let start = todo.len();
    for c in p.as_os_str().as_bytes().split(|&b| b == b'/') {
        if !c.is_empty() && c != b"." {
            todo.push(OsString::from_vec(c.to_vec()));
        }
    }
    todo[start..].reverse();
}

/// `PathBuf::pop` for the absolute, clean paths `realpath` builds, on bytes (the parent of
/// `/` is `/`).
fn pop_last(p: &mut PathBuf) {
    let cut = match p.as_os_str().as_bytes().iter().rposition(|&b| b == b'/') {
        Some(0) => 1,
        Some(i) => i,
        None => return,
    };
    let mut v = std::mem::take(p).into_os_string().into_vec();
    v.truncate(cut);
    *p = PathBuf::from(OsString::from_vec(v));
}

/// The last component of a virtual path, as bytes (`/a/b` → `b`, `/` → `/`).
pub fn basename(vpath: &[u8]) -> &[u8] {
    match vpath.iter().rposition(|&b| b == b'/') {
        Some(p) if p + 1 < vpath.len() => &vpath[p + 1..],
        _ => vpath,
    }
}

/// A real path from bytes.
pub fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftpnorm_clamps_at_root() {
        assert_eq!(ftpnorm(b"/", b""), b"/");
        assert_eq!(ftpnorm(b"/a", b"b"), b"/a/b");
        assert_eq!(ftpnorm(b"/a", b"../../.."), b"/");
        assert_eq!(ftpnorm(b"/a/b", b"/x//y/./z/.."), b"/x/y");
        assert_eq!(ftpnorm(b"/", b"../etc/passwd"), b"/etc/passwd");
        // A backslash is an ordinary byte on Unix, never a separator.
        assert_eq!(ftpnorm(b"/", b"..\\..\\etc"), b"/..\\..\\etc");
        // Bytes that are not UTF-8 survive.
        assert_eq!(ftpnorm(b"/", b"\xff\xfe"), b"/\xff\xfe");
    }

    #[test]
    fn ftp2fs_and_back() {
        let root = Path::new("/srv/ftp");
        assert_eq!(ftp2fs(root, b"/", b"../../etc"), Path::new("/srv/ftp/etc"));
        assert_eq!(ftp2fs(root, b"/", b"/"), Path::new("/srv/ftp"));
        assert_eq!(fs2ftp(root, Path::new("/srv/ftp/a/b")), b"/a/b");
        assert_eq!(fs2ftp(root, Path::new("/srv/ftp")), b"/");
        assert_eq!(fs2ftp(root, Path::new("/etc")), b"/");
    }

    #[test]
    fn realpath_resolves_links() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", base.join("in")).unwrap();
        std::os::unix::fs::symlink(base.join("loop"), base.join("loop")).unwrap();
        assert_eq!(realpath(&base.join("in/x")), Some(base.join("sub/x")));
        assert_eq!(realpath(&base.join("sub/../in")), Some(base.join("sub")));
        assert_eq!(realpath(&base.join("loop")), None);
    }

    #[test]
    fn basenames() {
        assert_eq!(basename(b"/a/b"), b"b");
        assert_eq!(basename(b"/"), b"/");
    }
}
