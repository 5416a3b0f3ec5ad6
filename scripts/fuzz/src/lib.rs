//! Fixtures shared by ftpdlib's fuzz targets: the jail tree every path target resolves in,
//! and the check that a descriptor names something inside it. A new target is one file in
//! fuzz_targets/ (`cargo fuzz add NAME --fuzz-dir scripts/fuzz`) using what is here.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ftpdlib::fuzzing::paths::{Resolver, RootDir};

/// A root directory with symlinks of every kind next to a directory outside it.
pub struct Jail {
    /// The root, canonical.
    pub root: PathBuf,
    /// The same root opened once per resolver (the component walk, then openat2 when the
    /// kernel has it).
    pub dirs: Vec<RootDir>,
}

/// The jail, built once per fuzzing process under the temporary directory
/// (`ftpdlib-fuzz-PID`; scripts/fuzz.sh removes them). Its layout:
///
/// ```text
/// base/out/secret                 outside the root
/// base/root/a/f, a/b/c/           ordinary entries
/// in -> a                         relative, inside
/// a/up -> ../in/f                 climbs and comes back
/// a/b/back -> ../..               the root itself
/// dotdot -> ..                    one level out
/// rel_out -> ../out               relative, out
/// a/deep_out -> ../../out         relative, out from deeper
/// abs_out -> base/out             absolute, out
/// abs_in -> base/root/a           absolute, pointing inside (refused beneath a descriptor)
/// proc -> /proc/self/root         a magic link's way out
/// dangling -> ../out/new          a file that does not exist yet, out
/// loop -> loop, l1 -> l2 -> l1    loops
/// self -> .                       the root again
/// ```
pub fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(build)
}

fn build() -> Jail {
    let base = std::env::temp_dir().join(format!("ftpdlib-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    must(std::fs::create_dir_all(root.join("a/b/c")));
    must(std::fs::create_dir_all(base.join("out")));
    let base = must(base.canonicalize());
    let root = must(root.canonicalize());
    must(std::fs::write(root.join("a/f"), b"inside"));
    must(std::fs::write(base.join("out/secret"), b"secret"));
    let links: [(&Path, &str); 15] = [
        (Path::new("a"), "in"),
        (Path::new("../in/f"), "a/up"),
        (Path::new("../.."), "a/b/back"),
        (Path::new(".."), "dotdot"),
        (Path::new("../out"), "rel_out"),
        (Path::new("../../out"), "a/deep_out"),
        (&base.join("out"), "abs_out"),
        (&root.join("a"), "abs_in"),
        (Path::new("/proc/self/root"), "proc"),
        (Path::new("../out/new"), "dangling"),
        (Path::new("loop"), "loop"),
        (Path::new("l2"), "l1"),
        (Path::new("l1"), "l2"),
        (Path::new("."), "self"),
        (Path::new("/"), "slash"),
    ];
    for (target, name) in links {
        must(symlink(target, root.join(name)));
    }
    let mut dirs = vec![must(RootDir::open(&root)).with_resolver(Resolver::Walk)];
    let native = must(RootDir::open(&root));
    if native.resolver() == Resolver::Openat2 {
        dirs.push(native);
    }
    Jail { root, dirs }
}

fn must<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("building the fuzz jail: {e:?}"),
    }
}

/// Where a descriptor really is (its /proc/self/fd link).
pub fn where_is(fd: &OwnedFd) -> PathBuf {
    must(std::fs::read_link(format!(
        "/proc/self/fd/{}",
        fd.as_raw_fd()
    )))
}

/// True when `p` is `root` or beneath it.
pub fn beneath(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}

/// Splits fuzz input at the first `sep`: (before, after); all of it is `before` without one.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
