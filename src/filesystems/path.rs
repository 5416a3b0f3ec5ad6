//! The jail: pure virtual-path arithmetic (pyftpdlib `AbstractedFS.ftpnorm`, `ftp2fs`,
//! `fs2ftp`, `validpath`, `realpath`). Virtual paths are bytes, so names that are not UTF-8
//! survive a round trip (RFC 2640 §2.2 leaves the bytes to the server).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

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

/// Translates a virtual path to a real one under `root` (pyftpdlib `ftp2fs`). Lexically the
/// result is always `root` or below it; symlinks are judged by [`validpath`].
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

/// Resolves every symlink in an absolute path, like Python's `os.path.realpath`: components
/// that do not exist are kept as they are, a dangling link is still followed, so a link to a
/// file that does not exist yet cannot be used to create one outside the root.
/// `None` for a symlink loop or an unreadable link.
pub fn realpath(path: &Path) -> Option<PathBuf> {
    let mut todo: Vec<OsString> = Vec::new();
    push_components(path, &mut todo);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        out.push(&c);
        // readlink(2) both tests and reads a link: one call per component, and no stat
        // buffer on the stack (this runs at every login, on a session thread's small stack).
        let target = match std::fs::read_link(&out) {
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
            out.pop();
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
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(comps.into_iter().rev());
}

/// True if `path`, with every symlink resolved, is `root` or below it, and carries no NUL
/// byte (pyftpdlib `validpath`). `root` must already be a real path (no symlinks).
pub fn validpath(root: &Path, path: &Path) -> bool {
    if path.as_os_str().as_bytes().contains(&0) {
        return false;
    }
    match realpath(path) {
        Some(real) => real.starts_with(root),
        None => false,
    }
}

/// The last component of a virtual path, as bytes (`/a/b` → `b`, `/` → `/`).
pub fn basename(vpath: &[u8]) -> &[u8] {
    match vpath.iter().rposition(|&b| b == b'/') {
        Some(p) if p + 1 < vpath.len() => &vpath[p + 1..],
        _ => vpath,
    }
}

/// Bytes of a real path (for replies and listings).
pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// A real path from bytes.
pub fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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
    fn validpath_follows_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("secret"), b"x").unwrap();
        symlink(base.join("secret"), root.join("out")).unwrap();
        symlink("../secret", root.join("rel_out")).unwrap();
        symlink("sub", root.join("in")).unwrap();
        symlink(base.join("nothing-yet"), root.join("dangling")).unwrap();
        symlink(root.join("loop"), root.join("loop")).unwrap();
        assert!(validpath(&root, &root));
        assert!(validpath(&root, &root.join("sub/new-file")));
        assert!(validpath(&root, &root.join("in/x")));
        assert!(!validpath(&root, &root.join("out")));
        assert!(!validpath(&root, &root.join("rel_out")));
        assert!(!validpath(&root, &root.join("dangling")));
        assert!(!validpath(&root, &root.join("loop")));
        // A chain of links, and a link under a linked directory, are followed to the end.
        symlink("out", root.join("chain")).unwrap();
        symlink("../rel_out", root.join("sub/up")).unwrap();
        assert!(!validpath(&root, &root.join("chain")));
        assert!(!validpath(&root, &root.join("in/up")));
        assert_eq!(realpath(&root.join("in/x")), Some(root.join("sub/x")));
        assert!(!validpath(&root, &base));
        assert!(!validpath(&root, &root.join("a\0b")));
    }

    #[test]
    fn basenames() {
        assert_eq!(basename(b"/a/b"), b"b");
        assert_eq!(basename(b"/"), b"/");
    }
}
