//! Users in a SQLite database: `ftpdlib users` then `ftpdlib --users-db` (every concurrency
//! model, Fork and PreFork included), passwords (argon2id, crypt), permissions and their
//! per-directory overrides, messages and limits from the row, names that try SQL
//! injection, and a database that is slow (a writer's lock) or unavailable (421, logged
//! once, recovery) while logged-in sessions go on untouched.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::logs::logged;
use common::*;
use ftpdlib::authorizers::sql::{hash_password, SqlOptions, UserDb, UserRecord};
use ftpdlib::authorizers::{Authorizer, PermSet, SqlAuthorizer, UserLimits};
use ftpdlib::servers::Executor;

/// A database file and a directory of homes, both temporary.
struct Db {
    dir: tempfile::TempDir,
    url: String,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("users.db").display());
        Db { dir, url }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }
    /// A home directory `name` below the temp dir.
    fn home(&self, name: &str) -> PathBuf {
        let h = self.path().join("homes").join(name);
        std::fs::create_dir_all(&h).unwrap();
        h
    }
    fn open(&self) -> UserDb {
        UserDb::open(&self.url).expect("open the user database")
    }
    /// Adds `name`/`password` at its own home with `perm`.
    fn add(&self, name: &str, password: &str, perm: &str) -> PathBuf {
        let home = self.home(name);
        let mut u = UserRecord::new(name, &home);
        u.perm = PermSet::parse(perm).unwrap();
        u.password_hash = hash_password(password).unwrap();
        self.open().add(&u).unwrap();
        home
    }
}

/// `ftpdlib users ARGS --users-db URL`, `stdin` fed to it.
fn users(db: &Db, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
        .arg("users")
        .args(args)
        .args(["--users-db", &db.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ftpdlib users");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An in-process server whose users are in `db`, with `opts`.
fn serve(db: &Db, ex: Executor, opts: SqlOptions) -> Server {
    let auth = SqlAuthorizer::open_with(&db.url, opts).expect("SqlAuthorizer");
    builder()
        .executor(ex)
        .handler(move |h| h.authorizer = Arc::new(auth))
        .start()
}

fn login(addr: std::net::SocketAddr, user: &str, pass: &str) -> (Raw, u32, String) {
    let mut r = raw_at(addr);
    assert_eq!(r.cmd(&format!("USER {user}")).0, 331);
    let (code, text) = r.cmd(&format!("PASS {pass}"));
    (r, code, text)
}

/// The binary serving the users of `db` with `-d base` (and `extra` flags).
fn bin_server(db: &Db, base: &Path, extra: &[String]) -> BinServer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftpdlib"));
    cmd.args(["-i", "127.0.0.1", "-p", "0", "--users-db", &db.url, "-d"])
        .arg(base)
        .args(extra);
    BinServer::spawn(cmd, tempfile::tempdir().unwrap(), base.to_path_buf())
}

// ---- The command line, then the server, under every concurrency model ----

fn cli_users_log_in(ex: Executor) {
    let db = Db::new();
    let base = db.path();
    let alice = db.home("alice");
    std::fs::write(alice.join("f.txt"), b"hello").unwrap();
    let home = alice.to_str().unwrap();
    let out = ok(users(
        &db,
        &[
            "add",
            "alice",
            "--home",
            home,
            "--perm",
            "elr",
            "--password-stdin",
        ],
        "pw1\n",
    ));
    assert!(out.contains("added alice"), "{out}");
    // The same name twice: refused, exit 1.
    assert_eq!(
        users(&db, &["add", "alice", "--password-stdin"], "x\n")
            .status
            .code(),
        Some(1)
    );
    ok(users(
        &db,
        &["passwd", "alice", "--password-stdin"],
        "pw2\n",
    ));
    ok(users(&db, &["perm", "alice", "elrw", "--dir", "up"], ""));
    std::fs::create_dir(alice.join("up")).unwrap();
    ok(users(
        &db,
        &["set", "alice", "--msg-login", "Hi alice."],
        "",
    ));
    // A sha512-crypt hash imported as it is (an /etc/shadow line's second field).
    let six = String::from_utf8(ftpdlib::authorizers::crypt("pw3", b"$6$saltsalt$").unwrap());
    let carol = db.home("carol");
    ok(users(
        &db,
        &[
            "add",
            "carol",
            "--home",
            carol.to_str().unwrap(),
            "--hash-stdin",
        ],
        &format!("{}\n", six.unwrap()),
    ));
    let listed = ok(users(&db, &["list"], ""));
    assert!(
        listed.contains("alice") && listed.contains("carol"),
        "{listed}"
    );

    let srv = bin_server(&db, &base, &model_args(ex));
    let (_, code, _) = login(srv.addr, "alice", "pw1");
    assert_eq!(code, 530, "the old password");
    let (mut r, code, text) = login(srv.addr, "alice", "pw2");
    assert_eq!((code, text.trim_end()), (230, "230 Hi alice."));
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    prelim(r.cmd("RETR f.txt").0);
    assert_eq!(read_all(data), b"hello");
    assert_eq!(r.reply().0, 226);
    // elr at home, elrw in up/.
    assert_eq!(r.cmd("STOR nope.txt").0, 550);
    let mut data = r.pasv();
    prelim(r.cmd("STOR up/yes.txt").0);
    data.write_all(b"up").unwrap();
    drop(data);
    assert_eq!(r.reply().0, 226);
    assert_eq!(std::fs::read(alice.join("up/yes.txt")).unwrap(), b"up");
    assert_eq!(r.cmd("QUIT").0, 221);
    let (_, code, _) = login(srv.addr, "carol", "pw3");
    assert_eq!(code, 230, "crypt(3) hash");
    // No anonymous user in the database: refused with pyftpdlib's text.
    let (_, code, text) = login(srv.addr, "anonymous", "me@x");
    assert_eq!(
        (code, text.trim_end()),
        (530, "530 Anonymous access not allowed.")
    );
    // Added (no password asked), anonymous logs in with any password, at -d.
    ok(users(&db, &["add", "anonymous"], ""));
    let (mut r, code, _) = login(srv.addr, "anonymous", "whatever@x");
    assert_eq!(code, 230);
    let (code, text) = r.cmd("PWD");
    assert_eq!(
        (code, text.trim_end()),
        (257, "257 \"/\" is the current directory.")
    );
    assert_eq!(r.cmd("CWD homes").0, 250, "anonymous's home is -d itself");
    // Disabled: refused like a wrong password.
    ok(users(&db, &["disable", "carol"], ""));
    assert_eq!(login(srv.addr, "carol", "pw3").1, 530);
    ok(users(&db, &["enable", "carol"], ""));
    assert_eq!(login(srv.addr, "carol", "pw3").1, 230);
    ok(users(&db, &["del", "carol"], ""));
    assert_eq!(login(srv.addr, "carol", "pw3").1, 530);
}

models!(; bin: cli_users_log_in);

#[test]
fn cli_checks_its_input() {
    let db = Db::new();
    // No password on argv, no terminal: refused.
    let o = users(&db, &["add", "bob"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--password-stdin"));
    assert_eq!(
        users(&db, &["add", "bob", "--password-stdin"], "\n")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        users(
            &db,
            &["add", "bob", "--perm", "elz", "--password-stdin"],
            "p\n"
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        users(&db, &["add", "bob", "--hash-stdin"], "plaintext\n")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        users(&db, &["perm", "nobody", "elr"], "").status.code(),
        Some(1)
    );
    assert_eq!(
        users(&db, &["perm", "bob", "elr", "--dir", "../x"], "")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(users(&db, &["frob"], "").status.code(), Some(2));
    let o = ok(users(&db, &["init"], ""));
    assert!(o.contains("schema version 1"), "{o}");
    let o = ok(users(
        &db,
        &["add", "bob", "--read-limit", "500K", "--password-stdin"],
        "p\n",
    ));
    assert!(o.contains("added bob"), "{o}");
    let show = ok(users(&db, &["show", "bob"], ""));
    assert!(
        show.contains("read 512000") && show.contains("argon2id"),
        "{show}"
    );
    ok(users(&db, &["set", "bob", "--read-limit", "default"], ""));
    assert!(ok(users(&db, &["show", "bob"], "")).contains("read -"));
}

#[test]
fn server_refuses_a_missing_or_newer_database() {
    let db = Db::new();
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
            .args(["-i", "127.0.0.1", "-p", "0", "--users-db", url])
            .output()
            .unwrap()
    };
    // A typo in the path is not an empty user list.
    let o = run(&db.url);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no user database"));
    db.add("u", "p", "elr");
    let c = rusqlite::Connection::open(db.dir.path().join("users.db")).unwrap();
    c.execute(
        "INSERT INTO ftpd_schema_version (version, description) VALUES (99, 'future')",
        [],
    )
    .unwrap();
    let o = run(&db.url);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("newer than this ftpdlib"));
    assert!(parse_fails(&["--users-db", &db.url, "-u", "x", "-P", "y"]));
    assert!(parse_fails(&["--users-db", &db.url, "-w"]));
}

fn parse_fails(args: &[&str]) -> bool {
    let o = Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
        .args(args)
        .output()
        .unwrap();
    o.status.code() == Some(2)
}

// ---- Injection ----

#[test]
fn injection_names_are_only_names() {
    let db = Db::new();
    let home = db.add("admin", "right", "elradfmwMT");
    std::fs::write(home.join("secret"), b"s").unwrap();
    let auth = SqlAuthorizer::open_with(&db.url, SqlOptions::default()).expect("SqlAuthorizer");
    // Eight refused logins from one address: no ban (tests/limits.rs has those).
    let srv = builder()
        .executor(Executor::Pool)
        .handler(move |h| {
            h.authorizer = Arc::new(auth);
            h.ban_failures = 0;
        })
        .start();
    for (user, pass) in [
        ("x' OR '1'='1", "x' OR '1'='1"),
        ("admin'--", "anything"),
        ("admin' --", "anything"),
        ("admin\"--", "anything"),
        ("admin", "' OR '1'='1"),
        ("admin'; DROP TABLE ftpd_users; --", "x"),
        ("%", "x"),
        ("_dmin", "x"),
    ] {
        let (_, code, text) = login(srv.addr, user, pass);
        assert_eq!(code, 530, "{user:?}/{pass:?}: {text}");
    }
    // The table is intact and admin still logs in.
    assert_eq!(db.open().list().unwrap().len(), 1);
    assert_eq!(login(srv.addr, "admin", "right").1, 230);
}

/// 125 (data connection already open) or 150 (about to open).
fn prelim(code: u32) {
    assert!(code == 125 || code == 150, "{code}");
}

/// STOR of a few bytes: the final reply code (or the refusal's).
fn upload(r: &mut Raw, path: &str) -> u32 {
    let mut data = r.pasv();
    let (code, text) = r.cmd(&format!("STOR {path}"));
    if code != 150 && code != 125 {
        return code;
    }
    data.write_all(b"data").unwrap();
    drop(data);
    let (code, _) = r.reply();
    assert_eq!(code, 226, "{text}");
    code
}

// ---- Rows feed permissions, messages and limits; one query per login ----

#[test]
fn overrides_messages_and_the_per_login_cache() {
    let db = Db::new();
    let home = db.add("u", "p", "elr");
    std::fs::create_dir_all(home.join("drop/deep")).unwrap();
    let udb = db.open();
    udb.override_perm(
        "u",
        Path::new("drop"),
        PermSet::parse("elrw").unwrap(),
        false,
    )
    .unwrap();
    udb.set_messages("u", Some("Welcome, u."), Some("Bye, u."))
        .unwrap();
    let srv = serve(&db, Executor::Thread, SqlOptions::default());
    let (mut a, code, text) = login(srv.addr, "u", "p");
    assert_eq!((code, text.trim_end()), (230, "230 Welcome, u."));
    // Non-recursive override: the directory and its files only.
    assert_eq!(upload(&mut a, "top.txt"), 550);
    assert_eq!(upload(&mut a, "drop/deep/x.txt"), 550);
    assert_eq!(upload(&mut a, "drop/x.txt"), 226);
    // The row changes; this session keeps what it read at login (no query per command)…
    udb.set_perm("u", PermSet::parse("elrw").unwrap()).unwrap();
    udb.override_perm(
        "u",
        Path::new("drop"),
        PermSet::parse("elrw").unwrap(),
        true,
    )
    .unwrap();
    assert_eq!(upload(&mut a, "top.txt"), 550);
    // …and a new login reads it again.
    let (mut b, code, _) = login(srv.addr, "u", "p");
    assert_eq!(code, 230);
    assert_eq!(upload(&mut b, "top.txt"), 226);
    assert_eq!(upload(&mut b, "drop/deep/y.txt"), 226);
    let (code, text) = b.cmd("QUIT");
    assert_eq!((code, text.trim_end()), (221, "221 Bye, u."));
}

#[test]
fn limits_come_from_the_row() {
    let db = Db::new();
    let home = db.add("slow", "p", "elr");
    db.add("fast", "p", "elr");
    let limits = UserLimits {
        write_limit: Some(100 * 1024),
        user_read_limit: Some(7),
        ..UserLimits::default()
    };
    db.open().set_limits("slow", &limits).unwrap();
    let auth = SqlAuthorizer::open(&db.url).unwrap();
    let peer = "127.0.0.1:1".parse().unwrap();
    auth.validate_authentication("slow", "p", peer).unwrap();
    auth.validate_authentication("fast", "p", peer).unwrap();
    assert_eq!(auth.get_limits("slow"), limits);
    assert_eq!(auth.get_limits("fast"), UserLimits::default());
    // Through the server: 300 KiB at 100 KiB/s cannot take less than two seconds (the
    // bucket starts empty and holds at most one second's worth).
    std::fs::write(home.join("big"), pattern(300 * 1024)).unwrap();
    let srv = serve(&db, Executor::Pool, SqlOptions::default());
    let (mut r, code, _) = login(srv.addr, "slow", "p");
    assert_eq!(code, 230);
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    let t = Instant::now();
    prelim(r.cmd("RETR big").0);
    assert_eq!(read_all(data).len(), 300 * 1024);
    assert_eq!(r.reply().0, 226);
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
}

// ---- A slow database delays only the login that waits for it ----

/// Holds SQLite's exclusive lock (as a long write by an administrator would) until dropped.
struct Lock(rusqlite::Connection);

impl Lock {
    fn take(db: &Db) -> Lock {
        let c = rusqlite::Connection::open(db.dir.path().join("users.db")).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        Lock(c)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[test]
fn locked_database_delays_only_the_login() {
    let db = Db::new();
    let home = db.add("bob", "p", "elr");
    std::fs::write(home.join("f"), b"x").unwrap();
    db.add("alice", "p", "elr");
    let mut opts = SqlOptions::default();
    opts.busy_timeout = Duration::from_secs(60);
    let srv = serve(&db, Executor::Pool, opts);
    let (mut bob, code, _) = login(srv.addr, "bob", "p");
    assert_eq!(code, 230);
    let lock = Lock::take(&db);
    let done = Arc::new(AtomicBool::new(false));
    let (addr, flag) = (srv.addr, done.clone());
    let alice = std::thread::spawn(move || {
        let r = login(addr, "alice", "p");
        flag.store(true, Ordering::SeqCst);
        r.1
    });
    // bob's session needs nothing from the database: LIST, RETR, CWD all answer while
    // alice's login waits on the lock.
    for _ in 0..3 {
        let data = bob.pasv();
        prelim(bob.cmd("LIST").0);
        assert!(String::from_utf8_lossy(&read_all(data)).contains(" f"));
        assert_eq!(bob.reply().0, 226);
        assert_eq!(bob.cmd("CWD /").0, 250);
    }
    assert!(
        !done.load(Ordering::SeqCst),
        "alice logged in through a held lock"
    );
    drop(lock);
    assert_eq!(alice.join().unwrap(), 230);
}

// ---- Unavailable: 421, one log line per interval, recovery ----

#[test]
fn locked_too_long_is_421_logged_once_then_recovers() {
    let _ = logged("");
    let db = Db::new();
    let home = db.add("bob", "p", "elr");
    std::fs::write(home.join("f"), b"x").unwrap();
    db.add("alice", "p", "elr");
    let mut opts = SqlOptions::default();
    opts.busy_timeout = Duration::from_millis(100);
    let srv = serve(&db, Executor::Thread, opts);
    let (mut bob, code, _) = login(srv.addr, "bob", "p");
    assert_eq!(code, 230);
    let tag = db.dir.path().to_string_lossy().into_owned();
    let lock = Lock::take(&db);
    for _ in 0..3 {
        let (mut r, code, text) = login(srv.addr, "alice", "p");
        assert_eq!(
            (code, text.trim_end()),
            (421, "421 Service not available, try later.")
        );
        assert!(r.is_closed(), "421 ends the session");
        // The logged-in session goes on.
        let data = bob.pasv();
        prelim(bob.cmd("RETR f").0);
        assert_eq!(read_all(data), b"x");
        assert_eq!(bob.reply().0, 226);
    }
    let errors = logged(&tag);
    assert_eq!(errors.len(), 1, "one report per interval: {errors:?}");
    assert!(errors[0].contains("unavailable"), "{errors:?}");
    drop(lock);
    // Back by itself: the next login works, and the recovery is logged.
    assert_eq!(login(srv.addr, "alice", "p").1, 230);
    let lines = logged(&tag);
    assert!(
        lines.len() == 2 && lines[1].contains("available again"),
        "{lines:?}"
    );
}
