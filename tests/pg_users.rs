//! Users in PostgreSQL, against a real server (a throw-away cluster, tests/common/pg.rs):
//! `ftpdlib users` and `ftpdlib --users-db postgres://…` (also with forked sessions), names
//! that try SQL injection, slow queries (`pg_sleep`) bounded by the pool while a logged-in
//! session is not delayed, and a server that goes down (421, one log line) and comes back.
//! Skipped with a message without PostgreSQL; failing instead when CI=true.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::logs::logged;
use common::pg::PgCluster;
use common::*;
use ftpdlib::authorizers::sql::{SqlOptions, UserDb, UserRecord};
use ftpdlib::authorizers::{PermSet, SqlAuthorizer};
use ftpdlib::servers::Executor;

fn login(addr: std::net::SocketAddr, user: &str, pass: &str) -> (Raw, u32, String) {
    let mut r = raw_at(addr);
    assert_eq!(r.cmd(&format!("USER {user}")).0, 331);
    let (code, text) = r.cmd(&format!("PASS {pass}"));
    (r, code, text)
}

/// Adds `name` with a cheap sha256-crypt hash (the tests are about the database, not
/// about hashing cost) at `home`.
fn add(db: &UserDb, name: &str, password: &str, home: &Path, perm: &str) {
    let mut u = UserRecord::new(name, home);
    u.perm = PermSet::parse(perm).unwrap();
    let hash = ftpdlib::authorizers::crypt(password, b"$5$rounds=1000$saltsalt$").unwrap();
    u.password_hash = String::from_utf8(hash).unwrap();
    db.add(&u).unwrap();
}

fn serve(url: &str, ex: Executor, opts: SqlOptions) -> Server {
    let auth = SqlAuthorizer::open_with(url, opts).expect("SqlAuthorizer");
    builder()
        .executor(ex)
        .handler(move |h| h.authorizer = Arc::new(auth))
        .start()
}

fn list(r: &mut Raw) -> String {
    let data = r.pasv();
    let code = r.cmd("LIST").0;
    assert!(code == 125 || code == 150, "{code}");
    let text = String::from_utf8_lossy(&read_all(data)).into_owned();
    assert_eq!(r.reply().0, 226);
    text
}

#[test]
fn pg_users_from_the_command_line() {
    let Some(pg) = PgCluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    std::fs::create_dir(base.join("alice")).unwrap();
    std::fs::write(base.join("alice/f"), b"pg").unwrap();
    // The URL from a file (keeps a database password out of ps).
    let url_file = base.join("db.url");
    std::fs::write(&url_file, format!("{}\n", pg.url())).unwrap();
    let at_file = format!("@{}", url_file.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
        .args(["users", "add", "alice", "--home", "alice", "--perm", "elr"])
        .args(["--password-stdin", "--users-db", &at_file])
        .stdin(Stdio::piped())
        .output_with_stdin("s3cret\n");
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    child = Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
        .args(["users", "list", "--users-db", &pg.url()])
        .stdin(Stdio::null())
        .output_with_stdin("");
    assert!(String::from_utf8_lossy(&child.stdout).contains("alice"));
    assert_eq!(pg.psql("SELECT max(version) FROM ftpd_schema_version"), "1");
    assert_eq!(
        pg.psql("SELECT perm FROM ftpd_users WHERE name = 'alice'"),
        "elr"
    );
    for model in [Executor::Pool, Executor::Fork] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftpdlib"));
        cmd.args(["-i", "127.0.0.1", "-p", "0", "--users-db", &pg.url(), "-d"])
            .arg(&base)
            .args(model_args(model))
            // Five refused logins from one address below: no ban (tests/limits.rs has those).
            .args(["--ban-failures", "0"]);
        let srv = BinServer::spawn(cmd, tempfile::tempdir().unwrap(), base.clone());
        for (user, pass) in [
            ("alice", "wrong"),
            ("x' OR '1'='1", "x' OR '1'='1"),
            ("alice'--", "x"),
            ("alice", "' OR ''='"),
            ("nobody", "s3cret"),
        ] {
            assert_eq!(
                login(srv.addr, user, pass).1,
                530,
                "{model:?} {user:?}/{pass:?}"
            );
        }
        let (mut r, code, _) = login(srv.addr, "alice", "s3cret");
        assert_eq!(code, 230, "{model:?}");
        assert!(list(&mut r).contains(" f"), "home alice/ relative to -d");
        // A forked session closes its connection once logged in; the pool keeps one.
        // (A backend leaves pg_stat_activity shortly after its client closes: poll.)
        let want = if model == Executor::Fork { "0" } else { "1" };
        let deadline = Instant::now() + Duration::from_secs(10);
        let open = loop {
            let n =
                pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ftpdlib'");
            if n == want || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            open, want,
            "{model:?}: database connections of a logged-in session"
        );
        assert_eq!(r.cmd("QUIT").0, 221);
    }
    assert_eq!(pg.psql("SELECT count(*) FROM ftpd_users"), "1");
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(input.as_bytes());
        }
        child.wait_with_output().expect("wait")
    }
}

#[test]
fn pg_slow_queries_wait_for_the_pool_not_the_sessions() {
    const LOGINS: usize = 50;
    const POOL: usize = 5;
    const QUERY: Duration = Duration::from_millis(200);
    let Some(pg) = PgCluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().canonicalize().unwrap();
    std::fs::write(home.join("f"), b"x").unwrap();
    let db = UserDb::open(&pg.url()).unwrap();
    add(&db, "bob", "p", &home, "elr");
    add(&db, "u", "p", &home, "elr");
    // Every query on the users now takes 200 ms.
    pg.psql(
        "ALTER TABLE ftpd_users RENAME TO ftpd_users_t; \
         CREATE VIEW ftpd_users AS SELECT t.* FROM ftpd_users_t t, pg_sleep(0.2) s",
    );
    drop(db);
    let mut opts = SqlOptions::default();
    opts.pool_size = POOL;
    let srv = serve(&pg.url(), Executor::Pool, opts);
    let (mut bob, code, _) = login(srv.addr, "bob", "p");
    assert_eq!(code, 230);
    let start = Instant::now();
    let addr = srv.addr;
    let clients: Vec<_> = (0..LOGINS)
        .map(|_| std::thread::spawn(move || login(addr, "u", "p").1))
        .collect();
    // bob's commands need no query: they are answered while 50 logins queue for 5
    // connections.
    for _ in 0..3 {
        assert!(list(&mut bob).contains(" f"));
    }
    let listed = start.elapsed();
    // While the logins run, the most queries the server has running at once.
    let mut most = 0usize;
    while clients.iter().any(|c| !c.is_finished()) {
        let active: usize = pg
            .psql(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'ftpdlib' AND state = 'active'",
            )
            .parse()
            .unwrap_or(0);
        most = most.max(active);
    }
    let codes: Vec<u32> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let all = start.elapsed();
    assert!(codes.iter().all(|&c| c == 230), "{codes:?}");
    // At most POOL queries at once: 50 logins cannot take less than 10 rounds of 200 ms…
    let floor = QUERY * (LOGINS / POOL) as u32;
    assert!(all >= floor, "{all:?} < {floor:?}");
    // …and they ran several at a time, not one by one (seen in the database itself, not
    // by a stopwatch a slow machine could fail).
    assert!(
        (2..=POOL).contains(&most),
        "{most} queries at once: the logins were serialised or overran the pool"
    );
    assert!(
        listed < all,
        "LIST ({listed:?}) waited for the logins ({all:?})"
    );
    let conns: usize = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ftpdlib'")
        .parse()
        .unwrap();
    assert!(
        (1..=POOL).contains(&conns),
        "{conns} connections for a pool of {POOL}"
    );
    // A query slower than query_timeout is cancelled by the server: 421, not a hang.
    pg.psql(
        "CREATE OR REPLACE VIEW ftpd_users AS \
         SELECT t.* FROM ftpd_users_t t, pg_sleep(5) s",
    );
    let mut opts = SqlOptions::default();
    opts.query_timeout = Duration::from_millis(300);
    let impatient = serve(&pg.url(), Executor::Pool, opts);
    let (_, code, text) = login(impatient.addr, "u", "p");
    assert_eq!(code, 421, "{text}");
}

#[test]
fn pg_down_is_421_then_recovers() {
    let Some(mut pg) = PgCluster::start() else {
        return;
    };
    let _ = logged("");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().canonicalize().unwrap();
    std::fs::write(home.join("f"), b"x").unwrap();
    let db = UserDb::open(&pg.url()).unwrap();
    add(&db, "bob", "p", &home, "elr");
    add(&db, "alice", "p", &home, "elr");
    drop(db);
    let srv = serve(&pg.url(), Executor::Thread, SqlOptions::default());
    let (mut bob, code, _) = login(srv.addr, "bob", "p");
    assert_eq!(code, 230);
    pg.stop();
    let tag = format!("127.0.0.1:{}", pg.port);
    for _ in 0..3 {
        let (mut r, code, text) = login(srv.addr, "alice", "p");
        assert_eq!(
            (code, text.trim_end()),
            (421, "421 Service not available, try later.")
        );
        assert!(r.is_closed());
        assert!(list(&mut bob).contains(" f"), "a logged-in session goes on");
    }
    let lines = logged(&tag);
    assert_eq!(lines.len(), 1, "one report per interval: {lines:?}");
    pg.restart();
    let (mut r, code, _) = login(srv.addr, "alice", "p");
    assert_eq!(code, 230, "recovered by itself");
    assert!(list(&mut r).contains(" f"));
    let lines = logged(&tag);
    assert!(
        lines.len() == 2 && lines[1].contains("available again"),
        "{lines:?}"
    );
}
