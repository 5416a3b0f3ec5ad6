//! Virtual paths and the jail: ftpnorm gives an absolute, normal path whatever the input,
//! and any path — normalized as a session does, or raw — resolves inside the root or is
//! refused, under both resolvers (openat2 RESOLVE_BENEATH and the component walk), which
//! agree with each other.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ftpdlib::handlers::fuzzing::paths::{ftp2fs, ftpnorm, RootDir};
use ftpdlib_fuzz::{beneath, jail, split_at_byte, where_is};
use libfuzzer_sys::fuzz_target;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

fuzz_target!(|data: &[u8]| {
    // Input: the working directory, a NUL, the client's path.
    let (cwd, path) = split_at_byte(data, 0);
    let norm = ftpnorm(cwd, path);
    assert!(norm.starts_with(b"/"), "absolute");
    if norm != b"/" {
        for seg in norm[1..].split(|&b| b == b'/') {
            assert!(!matches!(seg, b"" | b"." | b".."), "normal: {norm:?}");
        }
    }
    assert_eq!(ftpnorm(b"/", &norm), norm, "idempotent");
    assert_eq!(
        ftpnorm(path, &norm),
        norm,
        "an absolute path ignores the cwd"
    );
    let j = jail();
    assert!(
        ftp2fs(&j.root, cwd, path).starts_with(&j.root),
        "lexically inside"
    );
    if norm.contains(&0) || path.contains(&0) {
        return; // no file name holds a NUL: the kernel is never asked
    }
    resolve(&norm, j);
    resolve(path, j);
});

fn resolve(p: &[u8], j: &ftpdlib_fuzz::Jail) {
    let p = Path::new(OsStr::from_bytes(p));
    let mut seen = Vec::new();
    for dir in &j.dirs {
        seen.push(open(dir, p, &j.root).ok());
        if let Ok((fd, name)) = dir.parent(p) {
            let at = where_is(&fd);
            assert!(beneath(&at, &j.root), "parent of {p:?} at {at:?}");
            let name = name.as_bytes();
            assert!(!name.contains(&b'/') && !matches!(name, b"" | b"." | b".."));
        }
    }
    if let [walk, native] = &seen[..] {
        assert_eq!(walk, native, "both resolvers agree on {p:?}");
    }
}

/// Opens `p` (O_PATH) beneath `dir`; where it landed, or the error kind (which may differ
/// between resolvers: a loop is ELOOP for one and an escape for the other).
fn open(dir: &RootDir, p: &Path, root: &Path) -> Result<std::path::PathBuf, std::io::ErrorKind> {
    let fd = dir
        .open_at(p, OFlag::O_PATH, Mode::empty())
        .map_err(|e| e.kind())?;
    let at = where_is(&fd);
    assert!(
        beneath(&at, root),
        "{p:?} resolved to {at:?}, outside {root:?}"
    );
    Ok(at)
}
