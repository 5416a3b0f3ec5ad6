//! The scheduling policy of a session's thread (`FtpHandler::batch_scheduling`): ordinary
//! until the user logs in, `SCHED_BATCH` from then until the session ends, in every
//! concurrency model; never for the threads that accept; off with `--no-batch-scheduling`.
//! Checked through the built binary and /proc, with a real client.

mod common;

use common::{wait_for, BinServer, PASS, USER};
use suppaftp::FtpStream;

const SCHED_BATCH: i32 = 3;

/// (thread id, thread name, policy) of every thread of `pid` and of its child processes.
fn threads(pid: u32) -> Vec<(u32, String, i32)> {
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if stat_fields(&format!("/proc/{p}/stat")).is_some_and(|(_, f)| f[1] == pid.to_string()) {
            pids.push(p);
        }
    }
    let mut out = Vec::new();
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let tid = t.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
            if let Some((name, f)) = stat_fields(&format!("/proc/{p}/task/{tid}/stat")) {
                // Field 41 (policy); the fields after the name start at field 3.
                out.push((tid, name, f[38].parse().expect("policy")));
            }
        }
    }
    out
}

/// The name and the fields after it of a /proc stat file (the name may hold spaces).
fn stat_fields(path: &str) -> Option<(String, Vec<String>)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let rest = s.get(close + 2..)?;
    Some((
        s[open + 1..close].to_string(),
        rest.split(' ').map(str::to_string).collect(),
    ))
}

fn batch_threads(pid: u32) -> Vec<(u32, String)> {
    threads(pid)
        .into_iter()
        .filter(|t| t.2 == SCHED_BATCH)
        .map(|t| (t.0, t.1))
        .collect()
}

fn check_model(model: &[&str]) {
    let srv = BinServer::start(model);
    let pid = srv.child.id();
    let mut c = FtpStream::connect(srv.addr).expect("connect");
    c.noop().expect("NOOP before login");
    assert_eq!(batch_threads(pid), vec![], "before login ({model:?})");

    c.login(USER, PASS).expect("login");
    // PASS's reply goes out before the switch: one more exchange orders them.
    c.noop().expect("NOOP");
    let batch = batch_threads(pid);
    assert_eq!(
        batch.len(),
        1,
        "one session thread runs batch ({model:?}): {batch:?}"
    );
    // The session's own transfers run in that thread or in threads it starts.
    c.put_file("f.txt", &mut &b"scheduled"[..]).expect("STOR");
    assert_eq!(
        &*c.retr_as_buffer("f.txt").expect("RETR").into_inner(),
        b"scheduled"
    );
    // The server's main thread, which accepts or waits for the stop, never does.
    let main = threads(pid)
        .into_iter()
        .find(|t| t.0 == pid)
        .expect("main thread");
    assert_ne!(main.2, SCHED_BATCH, "{main:?}");

    // A second client: its thread is ordinary until it logs in, whatever the first does.
    let mut d = FtpStream::connect(srv.addr).expect("connect");
    d.noop().expect("NOOP");
    assert_eq!(
        batch_threads(pid),
        batch,
        "a second client before login ({model:?})"
    );

    c.quit().expect("QUIT");
    d.login(USER, PASS).expect("login");
    d.noop().expect("NOOP");
    // The first session's thread is back to ordinary (or gone), the second's is batch.
    wait_for("only the second session runs batch", || {
        let now = batch_threads(pid);
        now.len() == 1 && now[0] != batch[0]
    });
    d.quit().expect("QUIT");
    wait_for("no thread runs batch once every session ended", || {
        batch_threads(pid).is_empty()
    });
}

#[test]
fn pool_sessions_run_batch_after_login() {
    check_model(&["--concurrency", "pool"]);
}

#[test]
fn thread_sessions_run_batch_after_login() {
    check_model(&["--concurrency", "multi-thread"]);
}

#[test]
fn fork_sessions_run_batch_after_login() {
    check_model(&["--concurrency", "multi-proc"]);
}

#[test]
fn prefork_sessions_run_batch_after_login() {
    check_model(&["--concurrency", "pre-fork", "--workers", "1"]);
}

#[test]
fn no_batch_scheduling_keeps_sessions_ordinary() {
    let srv = BinServer::start(&["--no-batch-scheduling"]);
    let mut c = FtpStream::connect(srv.addr).expect("connect");
    c.login(USER, PASS).expect("login");
    c.noop().expect("NOOP");
    c.put_file("f.txt", &mut &b"x"[..]).expect("STOR");
    let all = threads(srv.child.id());
    assert!(all.len() > 1, "the server's threads are read: {all:?}");
    assert_eq!(batch_threads(srv.child.id()), vec![]);
}
