//! The jail under a race: a local user flips a path component between a real directory and a
//! symlink leading out of the root (or a file and such a symlink) while a session works
//! through it. Every operation resolves beneath the root at the moment it happens, so nothing
//! outside is ever created, truncated, changed, removed, read or stat'ed, whatever the timing.
//! Each attack runs a fixed number of tries against the built binary.

mod common;
use common::*;

use ftpdlib::servers::Executor;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

/// Swaps two names of one directory with renameat2(RENAME_EXCHANGE) as fast as it can, so
/// each name always exists and is by turns one thing and the other.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(a: PathBuf, b: PathBuf) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let (st, sw) = (stop.clone(), swaps.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE)
                    .expect("RENAME_EXCHANGE");
                sw.fetch_add(1, Ordering::Relaxed);
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    /// Stops swapping; the number of swaps made.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("swapper");
        }
        self.swaps.load(Ordering::Relaxed)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The names in a directory.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

const SECRET: &str = "OUTSIDE-SECRET-CONTENT\n";
const SECRET_SIZE: usize = SECRET.len() * 60;
/// MDTM of the secret: 2001-02-03 04:05:06 UTC.
const SECRET_MTIME: u64 = 981_173_106;

/// The directory outside every root: a secret file with an unusual size, mode and time, a
/// marker name for listings, files to delete or rename and empty directories to remove.
fn outside_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let secret = d.path().join("victim.txt");
    std::fs::write(&secret, SECRET.repeat(60)).expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let f = std::fs::File::options()
        .write(true)
        .open(&secret)
        .expect("open");
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(SECRET_MTIME))
        .expect("set mtime");
    std::fs::write(d.path().join("OUTSIDE-MARKER"), b"m").expect("write");
    for i in 0..8 {
        std::fs::write(d.path().join(format!("keep-{i}")), b"k").expect("write");
        std::fs::create_dir(d.path().join(format!("rmd-{i}"))).expect("mkdir");
    }
    d
}

/// The secret file's observable state, checked (and put back) after each attempt to change it.
struct Victim {
    path: PathBuf,
    meta: (u64, u32, i64),
}

impl Victim {
    fn new(path: &Path) -> Victim {
        let m = std::fs::metadata(path).expect("stat victim");
        Victim {
            path: path.to_path_buf(),
            meta: (m.len(), m.mode(), m.mtime()),
        }
    }

    /// True if the file changed since the last call; it is then written back as it was.
    fn changed_then_restored(&self) -> bool {
        let m = std::fs::metadata(&self.path).expect("stat victim");
        if (m.len(), m.mode(), m.mtime()) == self.meta {
            return false;
        }
        std::fs::write(&self.path, SECRET.repeat(60)).expect("restore");
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        let f = std::fs::File::options()
            .write(true)
            .open(&self.path)
            .expect("open");
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(SECRET_MTIME))
            .expect("set mtime");
        true
    }
}

/// True if the file was gone (it is then created again).
fn restore_file(p: &Path) -> bool {
    if p.exists() {
        return false;
    }
    std::fs::write(p, b"k").expect("restore");
    true
}

/// True if the directory was gone (it is then created again).
fn restore_dir(p: &Path) -> bool {
    if p.exists() {
        return false;
    }
    std::fs::create_dir(p).expect("restore");
    true
}

/// Sends `line` on a fresh PASV data connection and returns (preliminary reply code, data
/// received, final reply code); `upload` is sent for STOR/APPE.
fn transfer(r: &mut Raw, line: &str, upload: &[u8]) -> (u32, Vec<u8>, u32) {
    let mut d = r.pasv();
    let (code, _) = r.cmd(line);
    if code != 150 && code != 125 {
        return (code, Vec::new(), code);
    }
    let mut got = Vec::new();
    if upload.is_empty() {
        let _ = d.read_to_end(&mut got);
    } else {
        let _ = d.write_all(upload);
    }
    drop(d);
    let (end, _) = r.reply();
    (code, got, end)
}

/// Wins of the attacker, by operation.
#[derive(Default)]
struct Wins(BTreeMap<&'static str, u32>);

impl Wins {
    fn check(&mut self, op: &'static str, won: bool) {
        let n = self.0.entry(op).or_default();
        if won {
            *n += 1;
        }
    }

    /// The race's verdict: the swapper ran, `ran` (what proves the race reached the inside,
    /// e.g. "SIZE reached the file inside") happened `times` > 0 times, and the attacker won
    /// nothing (`escaped` says what a win would mean).
    fn verdict(&self, swaps: u64, ran: &str, times: usize, escaped: &str) {
        eprintln!("swaps: {swaps}; attacker wins by operation: {:?}", self.0);
        assert!(swaps > 0, "the swapper ran");
        assert!(times > 0, "never: {ran}; no race was run");
        assert!(self.0.values().all(|&n| n == 0), "{escaped}: {:?}", self.0);
    }

    /// Counts a win when a name not in `before` (nor kept by `keep`) appeared in `outside`.
    fn check_created(&mut self, outside: &Path, before: &BTreeSet<String>, keep: fn(&str) -> bool) {
        let created: Vec<String> = names(outside)
            .into_iter()
            .filter(|n| !before.contains(n) && !keep(n))
            .collect();
        eprintln!("names that appeared outside: {created:?}");
        self.check("anything created outside", !created.is_empty());
    }
}

/// The race of the tests below: the root holds `q/victim.txt` and `qx`, a symlink to the
/// tree outside, and the names outside before the race.
fn swap_ground(root: &Path, outside: &Path) -> BTreeSet<String> {
    std::fs::create_dir(root.join("q")).expect("mkdir q");
    std::fs::write(root.join("q/victim.txt"), b"inside\n").expect("write");
    std::os::unix::fs::symlink(outside, root.join("qx")).expect("symlink");
    names(outside)
}

/// A session of the default user at `addr`, logged in, binary type.
fn writer(addr: std::net::SocketAddr) -> Raw {
    let mut r = raw_at(addr);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(r.cmd("TYPE I").0, 200);
    r
}

/// Tries per operation: the cheap control-connection commands many times, the ones needing a
/// data connection fewer.
const CTRL_TRIES: usize = 1500;
const DATA_TRIES: usize = 150;

/// A user with write access works through `q` while `q` flips between a directory of the
/// root and a symlink to a directory outside it.
#[test]
fn parent_directory_swapped_for_a_symlink_out() {
    let outside = outside_tree();
    let srv = BinServer::start(&[]);
    let root = srv.root.clone();
    let before = swap_ground(&root, outside.path());
    for i in 0..DATA_TRIES {
        std::fs::write(root.join(format!("movable-{i}")), b"in").expect("write");
    }
    let secret_size = format!("213 {SECRET_SIZE}");
    let secret_mtime = "213 20010203040506";

    let mut r = writer(srv.addr);
    let swapper = Swapper::start(root.join("q"), root.join("qx"));
    let mut wins = Wins::default();
    let out = outside.path().to_path_buf();
    let victim = Victim::new(&out.join("victim.txt"));
    let mut inside = 0;
    for i in 0..CTRL_TRIES {
        let k = i % 8;
        let t = r.cmd("SIZE q/victim.txt").1;
        wins.check("SIZE", t.starts_with(&secret_size));
        inside += usize::from(t.starts_with("213 "));
        let t = r.cmd("MDTM q/victim.txt").1;
        wins.check("MDTM", t.starts_with(secret_mtime));
        let t = r.cmd("MLST q/victim.txt").1;
        wins.check("MLST", t.contains(&format!("size={SECRET_SIZE};")));
        let t = r.cmd("STAT q").1;
        wins.check("STAT", t.contains("OUTSIDE-MARKER"));
        r.cmd(&format!("MKD q/mkd-{i}"));
        wins.check("MKD", out.join(format!("mkd-{i}")).exists());
        r.cmd(&format!("DELE q/keep-{k}"));
        wins.check("DELE", restore_file(&out.join(format!("keep-{k}"))));
        r.cmd(&format!("RMD q/rmd-{k}"));
        wins.check("RMD", restore_dir(&out.join(format!("rmd-{k}"))));
        r.cmd("SITE CHMOD 777 q/victim.txt");
        wins.check("SITE CHMOD", victim.changed_then_restored());
        r.cmd("MFMT 20200101000000 q/victim.txt");
        wins.check("MFMT", victim.changed_then_restored());
        if r.cmd(&format!("RNFR q/keep-{k}")).0 == 350 {
            r.cmd(&format!("RNTO taken-{i}"));
        }
        wins.check("RNFR out", restore_file(&out.join(format!("keep-{k}"))));
    }
    for i in 0..DATA_TRIES {
        let (_, data, _) = transfer(&mut r, "RETR q/victim.txt", b"");
        wins.check(
            "RETR",
            String::from_utf8_lossy(&data).contains("OUTSIDE-SECRET"),
        );
        let (_, data, _) = transfer(&mut r, "LIST q", b"");
        wins.check(
            "LIST",
            String::from_utf8_lossy(&data).contains("OUTSIDE-MARKER"),
        );
        let (_, data, _) = transfer(&mut r, "MLSD q", b"");
        wins.check(
            "MLSD",
            String::from_utf8_lossy(&data).contains("OUTSIDE-MARKER"),
        );
        transfer(&mut r, "STOR q/victim.txt", b"overwritten");
        wins.check("STOR truncate", victim.changed_then_restored());
        transfer(&mut r, &format!("STOR q/new-{i}"), b"planted");
        wins.check("STOR create", out.join(format!("new-{i}")).exists());
        transfer(&mut r, "APPE q/victim.txt", b"appended");
        wins.check("APPE", victim.changed_then_restored());
        if r.cmd(&format!("RNFR movable-{i}")).0 == 350 {
            r.cmd(&format!("RNTO q/moved-{i}"));
        }
        wins.check("RNTO out", out.join(format!("moved-{i}")).exists());
    }
    let swaps = swapper.finish();
    // Anything else that appeared outside (each attempt above is also checked on its own).
    wins.check_created(outside.path(), &before, |n| {
        n.starts_with("keep-") || n.starts_with("rmd-")
    });
    wins.verdict(
        swaps,
        "SIZE reached the file inside",
        inside,
        "the jail was escaped",
    );
    assert_eq!(r.cmd("NOOP").0, 200, "the session is alive");
}

/// Atomic uploads (`--atomic-uploads`) under the same race: the temporary file is created,
/// filled from the old file (APPE, REST), renamed over the name or removed while `q` flips
/// between a directory of the root and a symlink out. Nothing outside is created, replaced
/// or read into a file inside.
#[test]
fn atomic_uploads_while_the_parent_directory_is_swapped() {
    let outside = outside_tree();
    let srv = BinServer::start(&["--atomic-uploads"]);
    let root = srv.root.clone();
    let before = swap_ground(&root, outside.path());
    let mut r = writer(srv.addr);
    let swapper = Swapper::start(root.join("q"), root.join("qx"));
    let mut wins = Wins::default();
    let out = outside.path().to_path_buf();
    let victim = Victim::new(&out.join("victim.txt"));
    let mut done = 0;
    for i in 0..DATA_TRIES {
        let (_, _, end) = transfer(&mut r, "STOR q/victim.txt", b"overwritten");
        done += usize::from(end == 226);
        wins.check("STOR replace", victim.changed_then_restored());
        transfer(&mut r, &format!("STOR q/new-{i}"), b"planted");
        wins.check("STOR create", out.join(format!("new-{i}")).exists());
        transfer(&mut r, "APPE q/victim.txt", b"appended");
        wins.check("APPE", victim.changed_then_restored());
        if r.cmd("REST 3").0 == 350 {
            transfer(&mut r, "STOR q/victim.txt", b"rest");
        }
        wins.check("REST STOR", victim.changed_then_restored());
        transfer(&mut r, "STOU q/u", b"unique");
        wins.check("STOU", victim.changed_then_restored());
    }
    let swaps = swapper.finish();
    wins.check_created(outside.path(), &before, |_| false);
    // The real `q` (whichever name it has now): no copy of the secret, no temporary file left.
    let q = if root.join("q").is_symlink() {
        root.join("qx")
    } else {
        root.join("q")
    };
    let mut leaked = Vec::new();
    for n in names(&q) {
        let text = std::fs::read(q.join(&n)).unwrap_or_default();
        if n.starts_with(".ftpdlib.") || String::from_utf8_lossy(&text).contains("OUTSIDE-SECRET") {
            leaked.push(n);
        }
    }
    wins.check(
        "secret copied inside, or a temporary file left",
        !leaked.is_empty(),
    );
    eprintln!("leaked: {leaked:?}");
    wins.verdict(
        swaps,
        "an upload reached the directory inside",
        done,
        "the jail was escaped",
    );
    assert_eq!(r.cmd("NOOP").0, 200, "the session is alive");
}

/// A read-only anonymous user downloads a public file while a local user swaps it for a
/// symlink to a secret outside the served tree.
#[test]
fn file_swapped_for_a_symlink_out_under_anonymous() {
    let outside = outside_tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonicalize");
    std::fs::write(root.join("pub.txt"), b"public\n").expect("write");
    std::os::unix::fs::symlink(outside.path().join("victim.txt"), root.join(".swap"))
        .expect("symlink");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ftpdlib"));
    cmd.args(["-i", "127.0.0.1", "-p", "0", "-d"]).arg(&root);
    let srv = BinServer::spawn(cmd, dir, root.clone());
    let mut r = raw_at(srv.addr);
    r.cmd("USER anonymous");
    assert_eq!(r.cmd("PASS guest@").0, 230);
    r.cmd("TYPE I");
    let secret_size = format!("213 {SECRET_SIZE}");
    let swapper = Swapper::start(root.join("pub.txt"), root.join(".swap"));
    let mut wins = Wins::default();
    let mut inside = 0;
    for _ in 0..CTRL_TRIES {
        let t = r.cmd("SIZE pub.txt").1;
        wins.check("SIZE", t.starts_with(&secret_size));
        inside += usize::from(t.starts_with("213 7"));
        let t = r.cmd("MDTM pub.txt").1;
        wins.check("MDTM", t.starts_with("213 20010203040506"));
        let t = r.cmd("MLST pub.txt").1;
        wins.check("MLST", t.contains(&format!("size={SECRET_SIZE};")));
    }
    for _ in 0..DATA_TRIES * 2 {
        let (_, data, _) = transfer(&mut r, "RETR pub.txt", b"");
        wins.check(
            "RETR",
            String::from_utf8_lossy(&data).contains("OUTSIDE-SECRET"),
        );
        let (_, data, _) = transfer(&mut r, "MLSD", b"");
        wins.check(
            "MLSD",
            String::from_utf8_lossy(&data).contains(&format!("size={SECRET_SIZE};")),
        );
    }
    let swaps = swapper.finish();
    wins.verdict(
        swaps,
        "SIZE reached the public file",
        inside,
        "a read-only user read outside the root",
    );
}

/// A symlink whose target is outside the root is listed with its own facts (MLSD, MLST, LIST,
/// STAT), never with its target's size, time or inode; a link staying inside is followed.
fn links_out_are_listed_with_their_own_facts(ex: Executor) {
    let outside = outside_tree();
    let secret = outside.path().join("victim.txt");
    let st = std::fs::metadata(&secret).expect("stat");
    let unique = format!("unique={:x}g{:x};", st.dev(), st.ino());
    let s = start(ex);
    s.write("f", b"inside");
    std::os::unix::fs::symlink(&secret, s.path("link")).expect("symlink");
    std::os::unix::fs::symlink("f", s.path("inlink")).expect("symlink");
    let leaks = |text: &str| {
        text.contains(&format!("size={SECRET_SIZE};"))
            || text.contains("modify=20010203040506")
            || text.contains(&unique)
    };
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let (_, data, end) = transfer(&mut r, "MLSD", b"");
    assert_eq!(end, 226);
    let data = String::from_utf8_lossy(&data).into_owned();
    let line = data
        .lines()
        .find(|l| l.ends_with(" link"))
        .expect("link listed");
    assert!(!leaks(line), "{line}");
    assert!(line.contains("type=OS.unix=symlink;"), "{line}");
    let line = data
        .lines()
        .find(|l| l.ends_with(" inlink"))
        .expect("inlink");
    assert!(
        line.contains("type=file;") && line.contains("size=6;"),
        "{line}"
    );
    let (code, text) = r.cmd("MLST link");
    assert_eq!(code, 250, "{text}");
    assert!(
        !leaks(&text) && text.contains("type=OS.unix=symlink;"),
        "{text}"
    );
    let (code, text) = r.cmd("MLST inlink");
    assert!(code == 250 && text.contains("size=6;"), "{text}");
    let (_, data, _) = transfer(&mut r, "LIST", b"");
    let data = String::from_utf8_lossy(&data).into_owned();
    let line = data
        .lines()
        .find(|l| l.contains(" link -> "))
        .expect("link");
    assert!(
        line.starts_with('l') && !line.contains(&format!(" {SECRET_SIZE} ")),
        "{line}"
    );
    let (_, text) = r.cmd("STAT /");
    assert!(!text.contains(&format!(" {SECRET_SIZE} ")), "{text}");
    let (code, text) = r.cmd("SIZE link");
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("outside the user's root directory"), "{text}");
}

/// The component walk (the resolver for kernels without openat2) behind a whole session: the
/// jail holds and links inside work.
fn the_walk_keeps_the_jail_too(ex: Executor) {
    use ftpdlib::beneath::{Resolver, RootDir};
    use ftpdlib::filesystems::OsFilesystem;
    let outside = outside_tree();
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.filesystem = Arc::new(|_user, root| {
                let root = RootDir::open(root)?.with_resolver(Resolver::Walk);
                Ok(Box::new(OsFilesystem::with_root(root)))
            });
        })
        .start();
    std::fs::create_dir(s.path("in")).expect("mkdir");
    s.write("in/f", b"inside");
    std::os::unix::fs::symlink("in", s.path("inlink")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), s.path("out")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../../..", s.path("up")).expect("symlink");
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    assert_eq!(r.cmd("SIZE inlink/f").1.trim_end(), "213 6");
    for bad in [
        "SIZE out/victim.txt",
        "CWD out",
        "MKD out/x",
        "DELE out/keep-0",
        "CWD up/etc",
    ] {
        let (code, text) = r.cmd(bad);
        assert_eq!(code, 550, "{bad}: {text}");
        assert!(
            text.contains("outside the user's root directory"),
            "{bad}: {text}"
        );
    }
    let (_, data, end) = transfer(&mut r, "RETR out/victim.txt", b"");
    assert!(data.is_empty() && end == 550);
    let (_, _, end) = transfer(&mut r, "STOR inlink/new", b"new");
    assert_eq!(end, 226);
    assert_eq!(s.read("in/new"), b"new");
    assert!(outside.path().join("keep-0").exists());
}

models!(
    links_out_are_listed_with_their_own_facts,
    the_walk_keeps_the_jail_too
);
