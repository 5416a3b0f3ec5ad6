//! Unit tests of resolution beneath a root, each run with openat2 and with the component
//! walk.

use super::*;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A root (`base/root`) next to a directory outside it (`base/out`), with:
/// `root/sub/f`, `root/in -> sub` (relative, inside), `root/sub/up -> ../in/f` (climbs and
/// comes back), `root/out -> base/out` (absolute, out), `root/rel_out -> ../out` (relative,
/// out), `root/abs_in -> base/root/sub` (absolute, pointing inside), `root/dangling ->
/// ../out/new` (a file that does not exist yet, out), `root/loop -> loop`.
struct Tree {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonicalize");
    let root = base.join("root");
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    std::fs::create_dir_all(base.join("out")).expect("mkdir");
    std::fs::write(root.join("sub/f"), b"inside").expect("write");
    std::fs::write(base.join("out/secret"), b"secret").expect("write");
    symlink("sub", root.join("in")).expect("symlink");
    symlink("../in/f", root.join("sub/up")).expect("symlink");
    symlink(base.join("out"), root.join("out")).expect("symlink");
    symlink("../out", root.join("rel_out")).expect("symlink");
    symlink(root.join("sub"), root.join("abs_in")).expect("symlink");
    symlink("../out/new", root.join("dangling")).expect("symlink");
    symlink("loop", root.join("loop")).expect("symlink");
    Tree {
        _dir: dir,
        base,
        root,
    }
}

fn roots(path: &Path) -> Vec<RootDir> {
    let mut v = vec![RootDir::open(path)
        .expect("root")
        .with_resolver(Resolver::Walk)];
    let native = RootDir::open(path).expect("root");
    if native.resolver() == Resolver::Openat2 {
        v.push(native);
    } else {
        eprintln!("openat2 missing: only the walk is tested");
    }
    v
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn read(r: &RootDir, path: &str) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = r.open_file(p(path), OFlag::O_RDONLY, Mode::empty())?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

fn is_escape(r: io::Result<impl std::fmt::Debug>) -> bool {
    match r {
        Err(e) => Escape::of(&e).is_some(),
        Ok(v) => panic!("expected an escape, got {v:?}"),
    }
}

#[test]
fn resolves_inside_and_refuses_escapes() {
    let t = tree();
    for r in roots(&t.root) {
        let how = r.resolver();
        assert!(r.is_jailed());
        assert_eq!(read(&r, "/sub/f").expect("sub/f"), b"inside", "{how:?}");
        assert_eq!(read(&r, "in/f").expect("in/f"), b"inside", "{how:?}");
        assert_eq!(read(&r, "sub/up").expect("sub/up"), b"inside", "{how:?}");
        assert_eq!(read(&r, "sub/../sub/f").expect("..inside"), b"inside");
        assert!(r.stat(p("/"), true).expect("root").st_mode & 0o170000 == 0o040000);
        for bad in [
            "out/secret",
            "rel_out/secret",
            "../out/secret",
            "sub/../../out/secret",
        ] {
            assert!(is_escape(read(&r, bad)), "{how:?} {bad}");
        }
        // Absolute links are refused even when they point back inside.
        assert!(is_escape(read(&r, "abs_in/f")), "{how:?}");
        let e = read(&r, "loop").expect_err("loop");
        assert_eq!(e.raw_os_error(), Some(nix::libc::ELOOP), "{how:?}");
        // A dangling link leading out cannot create its target.
        let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
        let mode = Mode::from_bits_truncate(0o644);
        assert!(is_escape(r.open_file(p("dangling"), create, mode)));
        assert!(!t.base.join("out/new").exists());
        // The link itself is inside: it can be looked at without following it.
        let st = r.stat(p("out"), false).expect("lstat out");
        assert_eq!(st.st_mode & 0o170000, 0o120000, "{how:?}");
        assert!(is_escape(r.stat(p("out"), true)));
        assert_eq!(
            r.readlink(p("out")).expect("readlink"),
            t.base.join("out").into_os_string()
        );
        // Creating through a link that stays inside works.
        r.open_file(p("in/created"), create, mode).expect("create");
        assert!(t.root.join("sub/created").exists(), "{how:?}");
        std::fs::remove_file(t.root.join("sub/created")).expect("rm");
        let e = r.open_file(p("sub/f/x"), OFlag::O_RDONLY, Mode::empty());
        assert_eq!(
            e.expect_err("not a dir").raw_os_error(),
            Some(nix::libc::ENOTDIR)
        );
    }
}

#[test]
fn entry_operations_stay_beneath() {
    let t = tree();
    for r in roots(&t.root) {
        let how = r.resolver();
        r.mkdir(p("/sub/d"), 0o755).expect("mkdir");
        assert!(t.root.join("sub/d").is_dir(), "{how:?}");
        r.rename(p("/sub/d"), p("/in/e")).expect("rename");
        r.rmdir(p("sub/e")).expect("rmdir");
        assert!(is_escape(r.mkdir(p("out/d"), 0o755)));
        assert!(is_escape(r.rename(p("sub/f"), p("rel_out/f"))));
        assert!(is_escape(r.unlink(p("out/secret"))));
        assert!(t.base.join("out/secret").exists());
        for bad in ["/", ".", "sub/.."] {
            let e = r.unlink(p(bad)).expect_err(bad);
            assert_eq!(e.raw_os_error(), Some(nix::libc::EINVAL), "{how:?} {bad}");
        }
        let names: std::collections::BTreeSet<OsString> = r
            .read_dir(p("in"))
            .expect("read_dir")
            .map(|n| n.expect("name"))
            .collect();
        assert_eq!(names, ["f", "up"].iter().map(OsString::from).collect());
        assert!(is_escape(r.read_dir(p("out"))));
    }
    // Removing a link removes the link, never its target.
    let r = RootDir::open(&t.root).expect("root");
    r.unlink(p("out")).expect("unlink link");
    assert!(t.base.join("out/secret").exists());
    assert_eq!(
        r.rmdir(p("in")).expect_err("a link").raw_os_error(),
        Some(nix::libc::ENOTDIR)
    );
}

/// The names in a host directory.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn temporary_files_are_made_beside_their_name_and_renamed_or_removed() {
    use std::io::Write;
    let t = tree();
    for r in roots(&t.root) {
        let how = r.resolver();
        let before = names(&t.root.join("sub"));
        let mut tmp = r.create_temp(p("/in/f"), 0o640).expect("create_temp");
        tmp.file().write_all(b"replaced").expect("write");
        let made = names(&t.root.join("sub"));
        assert_eq!(made.len(), before.len() + 1, "{how:?}: {made:?}");
        assert!(made.iter().any(|n| n.starts_with(".ftpdlib.")), "{made:?}");
        assert_eq!(read(&r, "sub/f").expect("old"), b"inside", "not yet");
        tmp.persist().expect("persist");
        assert_eq!(names(&t.root.join("sub")), before, "{how:?}");
        assert_eq!(read(&r, "sub/f").expect("new"), b"replaced", "{how:?}");
        let mode = std::fs::metadata(t.root.join("sub/f"))
            .expect("stat")
            .mode();
        assert_eq!(mode & 0o777 & !0o640, 0, "{how:?}: {mode:o}");
        std::fs::write(t.root.join("sub/f"), b"inside").expect("put back");
        // Dropped without persist: removed, the name untouched.
        drop(r.create_temp(p("sub/f"), 0o600).expect("create_temp"));
        assert_eq!(names(&t.root.join("sub")), before, "{how:?}");
        assert_eq!(read(&r, "sub/f").expect("old"), b"inside");
        // Never beside a name whose directory leads out, nor for the root itself.
        for bad in ["out/secret", "rel_out/x", "../out/x", "abs_in/f"] {
            assert!(is_escape(r.create_temp(p(bad), 0o600)), "{how:?} {bad}");
        }
        assert_eq!(names(&t.base.join("out")), ["secret"], "{how:?}");
        let e = r.create_temp(p("/"), 0o600).expect_err("the root");
        assert_eq!(e.raw_os_error(), Some(nix::libc::EINVAL), "{how:?}");
        // A long name is cut so the temporary name fits the 255-byte limit.
        let long = format!("/sub/{}", "n".repeat(255));
        let tmp = r.create_temp(p(&long), 0o600).expect("long name");
        let made = names(&t.root.join("sub"));
        let temp = made
            .iter()
            .find(|n| n.starts_with(".ftpdlib."))
            .expect("temp");
        assert_eq!(temp.len(), 255, "{how:?}");
        drop(tmp);
    }
}

#[test]
fn chmod_and_mtime_follow_links_only_inside() {
    let t = tree();
    for mut r in roots(&t.root) {
        for proc_fd in [true, false] {
            r.proc_fd = proc_fd;
            let how = (r.resolver(), proc_fd);
            r.chmod(p("in/f"), 0o600).expect("chmod");
            let m = std::fs::metadata(t.root.join("sub/f")).expect("stat");
            assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{how:?}");
            r.chmod(p("sub/f"), 0o644).expect("chmod");
            let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            r.set_mtime(p("sub/up"), when).expect("mtime");
            let m = std::fs::metadata(t.root.join("sub/f")).expect("stat");
            assert_eq!(m.mtime(), 1_000_000_000, "{how:?}");
            let before = std::fs::metadata(t.base.join("out/secret")).expect("stat");
            assert!(is_escape(r.chmod(p("out/secret"), 0o777)));
            assert!(is_escape(r.set_mtime(p("rel_out/secret"), when)));
            let after = std::fs::metadata(t.base.join("out/secret")).expect("stat");
            assert_eq!(
                (before.mode(), before.mtime()),
                (after.mode(), after.mtime())
            );
            // Never the root, by its name or through a link to it.
            symlink(".", t.root.join("self")).ok();
            for root in ["/", "self", "sub/.."] {
                let e = r.chmod(p(root), 0o777).expect_err(root);
                assert_eq!(e.raw_os_error(), Some(nix::libc::EPERM), "{how:?} {root}");
            }
        }
    }
}

#[test]
fn a_root_at_slash_is_no_jail() {
    let t = tree();
    for r in roots(Path::new("/")) {
        assert!(!r.is_jailed());
        let link = t.root.join("abs_in/f");
        assert_eq!(
            read(&r, link.to_str().expect("utf8")).expect("abs"),
            b"inside"
        );
        let out = t.root.join("out/secret");
        assert_eq!(
            read(&r, out.to_str().expect("utf8")).expect("out"),
            b"secret"
        );
        assert_eq!(
            read(&r, "/../../etc/../etc/hostname").is_ok(),
            Path::new("/etc/hostname").exists()
        );
    }
}

/// A directory component flipped between a real directory and a symlink out while files are
/// opened, created and stat'ed through it: nothing outside is ever reached.
#[test]
fn a_component_swapped_for_a_symlink_never_leads_out() {
    let t = tree();
    std::fs::create_dir(t.root.join("q")).expect("mkdir");
    std::fs::write(t.root.join("q/secret"), b"inside").expect("write");
    symlink(t.base.join("out"), t.root.join("qx")).expect("symlink");
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b, st) = (t.root.join("q"), t.root.join("qx"), stop.clone());
    let swapper = std::thread::spawn(move || {
        use nix::fcntl::{renameat2, RenameFlags};
        while !st.load(Ordering::Relaxed) {
            renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).expect("swap");
        }
    });
    let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
    let mode = Mode::from_bits_truncate(0o644);
    let mut opened = 0;
    for r in roots(&t.root) {
        for i in 0..3000 {
            if let Ok(body) = read(&r, "q/secret") {
                assert_eq!(body, b"inside", "{:?}", r.resolver());
                opened += 1;
            }
            if let Ok(st) = r.stat(p("q/secret"), true) {
                assert_eq!(st.st_size, 6);
            }
            let _ = r.open_file(p(&format!("q/new-{i}")), create, mode);
            let _ = r.mkdir(p(&format!("q/dir-{i}")), 0o755);
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    let outside: Vec<_> = std::fs::read_dir(t.base.join("out"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, [OsString::from("secret")], "created outside");
    assert_eq!(
        std::fs::read(t.base.join("out/secret")).expect("read"),
        b"secret"
    );
    assert!(opened > 0, "the race was run");
}

/// A trailing `/` (or `/.`) asks for a directory (POSIX path resolution): a file or a link to
/// one named so is ENOTDIR under both resolvers, a link to a directory is followed even by a
/// no-follow lookup. Found by the fuzz target `paths`: the walk used to drop the slash.
#[test]
fn trailing_slash_means_a_directory() {
    let t = tree();
    for r in roots(&t.root) {
        let how = r.resolver();
        for name in ["sub/f/", "sub/f/.", "/sub/f//", "in/f/", "sub/up/"] {
            for follow in [true, false] {
                let e = r.stat(p(name), follow).expect_err(name);
                assert_eq!(e.raw_os_error(), Some(nix::libc::ENOTDIR), "{how:?} {name}");
            }
            let e = read(&r, name).expect_err(name);
            assert_eq!(e.raw_os_error(), Some(nix::libc::ENOTDIR), "{how:?} {name}");
        }
        for name in ["sub/", "in/", "in/.", "sub/../in/"] {
            for follow in [true, false] {
                let st = r.stat(p(name), follow).expect(name);
                assert_eq!(st.st_mode & 0o170000, 0o040000, "{how:?} {name} {follow}");
            }
        }
    }
}

#[test]
fn shared_roots_share_one_descriptor_while_the_directory_is_the_same() {
    let t = tree();
    let cache = RootCache::default();
    let a = RootDir::open_shared(&t.root, &cache).unwrap();
    let b = RootDir::open_shared(&t.root, &cache).unwrap();
    assert_eq!(
        a.fd.as_raw_fd(),
        b.fd.as_raw_fd(),
        "one descriptor for both"
    );
    assert!(b.stat(p("sub/f"), true).is_ok());
    // The path now names another directory: a new descriptor, on the new directory.
    std::fs::rename(&t.root, t.base.join("moved")).unwrap();
    std::fs::create_dir(&t.root).unwrap();
    std::fs::write(t.root.join("new"), b"x").unwrap();
    let c = RootDir::open_shared(&t.root, &cache).unwrap();
    assert_ne!(c.fd.as_raw_fd(), a.fd.as_raw_fd());
    assert!(c.stat(p("new"), true).is_ok());
    assert!(
        a.stat(p("sub/f"), true).is_ok(),
        "the old sessions keep theirs"
    );
    // The last holder closes it: the next open makes a new one.
    let raw = c.fd.as_raw_fd();
    drop(c);
    let d = RootDir::open_shared(&t.root, &cache).unwrap();
    assert!(d.stat(p("new"), true).is_ok());
    drop((a, b, d));
    let _ = raw;
}

#[test]
fn names_slash_as_components_do() {
    for p in [
        "/", "//", "/.", "/./", "/././/", "/tmp", "/..", "./", ".", "", "/tmp/..", "a/",
    ] {
        let by_components = Path::new(p).components().eq(Path::new("/").components());
        assert_eq!(names_slash(Path::new(p)), by_components, "{p:?}");
    }
}
