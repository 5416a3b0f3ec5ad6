//! Real Unix accounts (pyftpdlib `UnixAuthorizer` + `UnixFilesystem`): a system account the
//! test creates (`useradd`, passwords set with `chpasswd` as yescrypt and as sha512-crypt),
//! per-thread filesystem identity in the thread models, a permanent identity change in the
//! Fork model, and file ownership of uploads. Needs root; skips with a message otherwise.

mod common;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use ftpdlib::authorizers::UnixAuthorizer;
use ftpdlib::servers::Executor;

/// A system account that exists for the life of the value.
struct Account {
    name: String,
    home: PathBuf,
    uid: u32,
    gid: u32,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn can_run() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: creating system accounts needs root");
        return false;
    }
    if !tool("useradd") || !tool("chpasswd") || !tool("userdel") {
        return false;
    }
    true
}

impl Account {
    fn create(password: &str) -> Account {
        Self::create_with_shell(password, "/bin/sh")
    }

    fn create_with_shell(password: &str, shell: &str) -> Account {
        let name = format!(
            "ftpdt{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let home = PathBuf::from(format!("/tmp/ftpdlib-test-home-{name}"));
        let _ = std::fs::remove_dir_all(&home);
        let st = Command::new("useradd")
            .args(["-m", "-s", shell, "-d"])
            .arg(&home)
            .arg(&name)
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name} failed");
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        let a = Account {
            name,
            home,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        };
        a.set_password(password, None);
        a
    }

    /// chpasswd with the system default scheme (yescrypt on current Debian) or `-c SCHEME`.
    fn set_password(&self, password: &str, scheme: Option<&str>) {
        let mut cmd = Command::new("chpasswd");
        if let Some(s) = scheme {
            cmd.args(["-c", s]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{}:{}", self.name, password).unwrap();
        assert!(child.wait().unwrap().success(), "chpasswd failed");
    }

    fn shadow_hash(&self) -> String {
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
        shadow
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{}:", self.name)))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .arg("-r")
            .arg(&self.name)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn unix_server(ex: Executor) -> Server {
    builder()
        .executor(ex)
        .handler(|h| {
            let mut auth = UnixAuthorizer::new();
            auth.rejected_users(&["root"]).unwrap();
            h.authorizer = Arc::new(auth);
            h.use_unix_filesystem();
        })
        .start()
}

/// `a` logged in to `bin` with `password`, binary type.
fn login_at(bin: &BinServer, a: &Account, password: &str) -> FtpStream {
    let mut c = FtpStream::connect_timeout(bin.addr, IO_TIMEOUT).unwrap();
    c.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.login(a.name.as_str(), password).unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    c
}

fn put(c: &mut FtpStream, name: &str, data: &[u8]) -> Result<(), FtpError> {
    c.put_file(name, &mut &data[..]).map(|_| ())
}

/// Thread models: yescrypt and sha512-crypt passwords, login in the home of a real
/// filesystem, uploads owned by the user, identities never mixed between sessions.
fn system_accounts_log_in(ex: Executor) {
    if !can_run() {
        return;
    }
    let a = Account::create("pw-A-1");
    let b = Account::create("pw-B-1");
    assert!(a.shadow_hash().starts_with('$'), "{}", a.shadow_hash());
    let s = unix_server(ex);

    let mut wrong = s.connect();
    assert!(wrong.login(a.name.as_str(), "nope").is_err());
    let mut r = s.raw();
    r.cmd("USER root");
    let (code, text) = r.cmd("PASS x");
    assert_eq!(code, 530);
    assert!(text.contains("not allowed"), "{text}");

    let mut ca = s.connect();
    ca.login(a.name.as_str(), "pw-A-1").unwrap();
    ca.transfer_type(FileType::Binary).unwrap();
    let mut cb = s.connect();
    cb.login(b.name.as_str(), "pw-B-1").unwrap();
    cb.transfer_type(FileType::Binary).unwrap();
    assert_eq!(
        ca.pwd().unwrap(),
        a.home.to_str().unwrap(),
        "login in the home"
    );
    // Interleaved uploads: each file belongs to its own uploader.
    for i in 0..3 {
        put(&mut ca, &format!("a{i}.txt"), b"from a").unwrap();
        put(&mut cb, &format!("b{i}.txt"), b"from b").unwrap();
    }
    for i in 0..3 {
        let ma = std::fs::metadata(a.home.join(format!("a{i}.txt"))).unwrap();
        assert_eq!((ma.uid(), ma.gid()), (a.uid, a.gid));
        let mb = std::fs::metadata(b.home.join(format!("b{i}.txt"))).unwrap();
        assert_eq!((mb.uid(), mb.gid()), (b.uid, b.gid));
    }
    // The OS decides access under the user's identity: root-only files stay closed.
    let err = ca.retr_as_buffer("/etc/shadow").unwrap_err();
    assert!(err.to_string().contains("550"), "{err}");
    ca.quit().unwrap();
    cb.quit().unwrap();

    // sha512-crypt works as well as yescrypt.
    a.set_password("pw-A-2", Some("SHA512"));
    assert!(a.shadow_hash().starts_with("$6$"), "{}", a.shadow_hash());
    let mut c = s.connect();
    assert!(c.login(a.name.as_str(), "pw-A-1").is_err());
    let mut c = s.connect();
    c.login(a.name.as_str(), "pw-A-2").unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    put(&mut c, "after.txt", b"x").unwrap();
    assert_eq!(
        std::fs::metadata(a.home.join("after.txt")).unwrap().uid(),
        a.uid
    );
    c.quit().unwrap();
}

/// `chroot_local_user` (vsftpd's name): each account sees its home as `/` and nothing above
/// it, with the same resolution beneath the root as any jail (absolute links and links that
/// climb out are refused).
fn chroot_local_user_jails_each_account(ex: Executor) {
    if !can_run() {
        return;
    }
    let a = Account::create("pw-C-1");
    let b = Account::create("pw-C-2");
    std::fs::write(a.home.join("mine.txt"), b"mine").unwrap();
    std::fs::write(b.home.join("theirs.txt"), b"theirs").unwrap();
    std::os::unix::fs::symlink("/etc", a.home.join("etc")).unwrap();
    std::os::unix::fs::symlink("../..", a.home.join("up")).unwrap();
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.authorizer = Arc::new(UnixAuthorizer::new());
            h.use_unix_filesystem();
            h.chroot_local_user = true;
        })
        .start();
    let mut c = s.connect();
    c.login(a.name.as_str(), "pw-C-1").unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    assert_eq!(c.pwd().unwrap(), "/", "the home is the root");
    assert_eq!(c.retr_as_buffer("/mine.txt").unwrap().into_inner(), b"mine");
    c.cwd("..").unwrap();
    assert_eq!(c.pwd().unwrap(), "/");
    for outside in ["/etc/passwd", "etc/passwd", "up/etc/passwd"] {
        let err = c.retr_as_buffer(outside).unwrap_err();
        assert!(err.to_string().contains("550"), "{outside}: {err}");
    }
    let theirs = format!(
        "../{}/theirs.txt",
        b.home.file_name().unwrap().to_str().unwrap()
    );
    assert!(c.retr_as_buffer(&theirs).is_err(), "another home");
    assert!(c.cwd("etc").is_err() && c.cwd("up").is_err());
    put(&mut c, "up.txt", b"x").unwrap();
    let m = std::fs::metadata(a.home.join("up.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (a.uid, a.gid), "written as the user");
    let names = c.nlst(None).unwrap();
    assert!(names.contains(&"mine.txt".to_string()), "{names:?}");
    c.quit().unwrap();
}

models!(system_accounts_log_in, chroot_local_user_jails_each_account);

/// `--unix-users --chroot-local-user` through the binary, in the Fork model: the account
/// that reads /etc/passwd without the flag sees only its home with it.
#[test]
fn chroot_local_user_flag() {
    if !can_run() {
        return;
    }
    let a = Account::create("pw-D-1");
    // By default an account reads whatever it may read on the system (pyftpdlib, vsftpd).
    let free = BinServer::start(&["--unix-users", "--concurrency", "multi-proc"]);
    let mut c = login_at(&free, &a, "pw-D-1");
    assert_eq!(c.pwd().unwrap(), a.home.to_str().unwrap());
    assert!(c.retr_as_buffer("/etc/passwd").is_ok());
    c.quit().unwrap();
    let bin = BinServer::start(&[
        "--unix-users",
        "--chroot-local-user",
        "--concurrency",
        "multi-proc",
    ]);
    let mut c = login_at(&bin, &a, "pw-D-1");
    assert_eq!(c.pwd().unwrap(), "/");
    let err = c.retr_as_buffer("/etc/passwd").unwrap_err();
    assert!(err.to_string().contains("550"), "{err}");
    put(&mut c, "jailed.txt", b"x").unwrap();
    assert_eq!(
        std::fs::metadata(a.home.join("jailed.txt")).unwrap().uid(),
        a.uid
    );
    c.quit().unwrap();
}

/// Fork model through the binary (`--unix-users`): the session process becomes the user for
/// good (every uid of the process is the user's) and uploads belong to the user.
#[test]
fn fork_model_drops_to_the_user_for_good() {
    if !can_run() {
        return;
    }
    let a = Account::create("pw-F-1");
    let bin = BinServer::start(&["--unix-users", "--concurrency", "multi-proc"]);
    let mut c = login_at(&bin, &a, "pw-F-1");
    put(&mut c, "forked.txt", b"hello").unwrap();
    let m = std::fs::metadata(a.home.join("forked.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (a.uid, a.gid));
    let parent = bin.child.id();
    let Ok(children) = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
    else {
        eprintln!("uid check skipped: this kernel has no /proc/PID/task/TID/children");
        return;
    };
    let child = children
        .split_whitespace()
        .next()
        .expect("a session process");
    let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(uids, vec![a.uid; 4], "real, effective, saved and fs uid");
    // A new login in the same process cannot take another identity back.
    c.quit().unwrap();
}

/// `--user`: bind as root, then serve as an unprivileged account for good.
#[test]
fn run_as_drops_root_after_binding() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("skipped: no 'nobody' account");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(root.join("pub.txt"), b"public").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftpdlib"));
    cmd.args([
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "--user",
        "nobody",
        "-u",
        USER,
        "-P",
        PASS,
        "-d",
    ])
    .arg(&root);
    let bin = BinServer::spawn(cmd, dir, root);
    let mut c = FtpStream::connect_timeout(bin.addr, IO_TIMEOUT).unwrap();
    c.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.login(USER, PASS).unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    assert_eq!(c.retr_as_buffer("pub.txt").unwrap().into_inner(), b"public");
    let pid = bin.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(uids, vec![nobody.uid.as_raw(); 4]);
    assert!(bin.log().contains("running as user"), "{}", bin.log());
    c.quit().unwrap();
}

/// `anonymous_user` serves `anonymous` as a system account (its home, read-only);
/// `require_valid_shell` refuses an account whose shell is not in /etc/shells.
#[test]
fn anonymous_user_and_valid_shell() {
    if !can_run() {
        return;
    }
    let anon = Account::create("unused-pw");
    let noshell = Account::create_with_shell("pw-N-1", "/usr/sbin/nologin");
    std::fs::write(anon.home.join("pub.txt"), b"public").unwrap();
    let anon_name = anon.name.clone();
    let s = builder()
        .handler(move |h| {
            let mut auth = UnixAuthorizer::new();
            auth.anonymous_user(&anon_name).unwrap();
            h.authorizer = Arc::new(auth);
            h.use_unix_filesystem();
        })
        .start();
    let mut c = s.anon();
    assert_eq!(c.pwd().unwrap(), anon.home.to_str().unwrap());
    assert_eq!(c.retr_as_buffer("pub.txt").unwrap().into_inner(), b"public");
    let err = put(&mut c, "up.txt", b"x").unwrap_err();
    assert!(err.to_string().contains("550"), "{err}");
    c.quit().unwrap();
    let mut r = s.raw();
    r.cmd(&format!("USER {}", noshell.name));
    let (code, text) = r.cmd("PASS pw-N-1");
    assert_eq!(code, 530);
    assert!(text.contains("doesn't have a valid shell"), "{text}");
}
