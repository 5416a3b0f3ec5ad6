//! Out of file descriptors (the binary under `prlimit --nofile=N:N`): every connection gets
//! its 220 or a `421 Too many open files` at once, none waits in the backlog; a data
//! connection or an upload file that cannot be opened gets 425/451 with the reason and the
//! session goes on; the server recovers when descriptors free up.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Descriptors the server may hold.
const NOFILE: u32 = 40;

/// The binary limited to [`NOFILE`] descriptors.
fn limited(ex: Executor) -> BinServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonicalize");
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_ftpdlib"))
        .args(["-i", "127.0.0.1", "-p", "0", "-d"])
        .arg(&root)
        .args(["-u", USER, "-P", PASS, "-w"])
        .args(model_args(ex));
    BinServer::spawn(cmd, dir, root)
}

/// Connects `n` clients one after another; each must get a first line at once.
fn flood(bin: &BinServer, n: usize) -> (Vec<TcpStream>, usize) {
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        let c = TcpStream::connect(bin.addr).expect("connect");
        let line = first_line(&c);
        match &line[..line.len().min(3)] {
            "220" => held.push(c),
            "421" => {
                assert_eq!(
                    line, "421 Too many open files, try again later.",
                    "client {i}"
                );
                refused += 1;
            }
            _ => panic!("client {i}: {line:?}\n{}", bin.log()),
        }
    }
    (held, refused)
}

/// Far more connections than descriptors: each gets a 220 or a 421, nothing hangs; the
/// start-up warning names the numbers; the failures are logged at most once a second;
/// once the clients leave, new ones are served again.
fn every_connection_gets_an_answer(ex: Executor) {
    if !tool("prlimit") {
        return;
    }
    let bin = limited(ex);
    let (held, refused) = flood(&bin, 3 * NOFILE as usize);
    if ex != Executor::Fork {
        // A forked child has a descriptor table of its own: only the others run out.
        assert!(refused > 0, "never ran out of descriptors");
        assert!(
            bin.wait_log(&format!("descriptor limit {NOFILE}")),
            "no start-up warning: {}",
            bin.log()
        );
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = TcpStream::connect(bin.addr).unwrap();
        if first_line(&c).starts_with("220") {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refused == 0 || bin.wait_log("out of descriptors"));
    let log = bin.log();
    let lines = log.matches("out of descriptors").count();
    assert!(
        refused == 0 || (1..=30).contains(&lines),
        "{lines} log lines for {refused} refusals"
    );
}

#[test]
fn emfile_pool() {
    every_connection_gets_an_answer(Executor::Pool);
}
#[test]
fn emfile_thread() {
    every_connection_gets_an_answer(Executor::Thread);
}
#[test]
fn emfile_fork() {
    every_connection_gets_an_answer(Executor::Fork);
}
#[test]
fn emfile_prefork() {
    every_connection_gets_an_answer(Executor::PreFork { workers: 2 });
}

fn login(bin: &BinServer) -> Raw {
    let mut r = raw_at(bin.addr);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(r.cmd("TYPE I").0, 200);
    r
}

/// With every descriptor taken, PASV gets 425 and STOR 451, each saying why, and the
/// sessions go on; once descriptors free up the same session uploads.
fn data_channel_and_file_without_descriptors(ex: Executor) {
    if !tool("prlimit") {
        return;
    }
    let bin = limited(ex);
    let mut a = login(&bin);
    let mut b = login(&bin);
    let mut c = login(&bin);
    let (code, text) = a.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    let (held, refused) = flood(&bin, 3 * NOFILE as usize);
    assert!(refused > 0);
    // At most one descriptor is left: one of these two PASVs cannot have it.
    let replies = [b.cmd("PASV"), c.cmd("PASV")];
    assert!(
        replies
            .iter()
            .any(|(code, text)| *code == 425 && text.contains("Too many open files")),
        "{replies:?}"
    );
    let (code, text) = a.cmd("STOR up.bin");
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("Too many open files"), "{text}");
    for r in [&mut a, &mut b, &mut c] {
        assert_eq!(r.cmd("NOOP").0, 200, "the session goes on");
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = a.cmd("PASV");
        if code == 227 {
            break;
        }
        assert!(Instant::now() < deadline, "PASV never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut d = a.pasv();
    let (code, text) = a.cmd("STOR up.bin");
    assert!(code == 125 || code == 150, "{text}");
    std::io::Write::write_all(&mut d, b"made it").unwrap();
    drop(d);
    assert_eq!(a.reply().0, 226);
    assert_eq!(std::fs::read(bin.root.join("up.bin")).unwrap(), b"made it");
}

#[test]
fn emfile_data_pool() {
    data_channel_and_file_without_descriptors(Executor::Pool);
}
#[test]
fn emfile_data_thread() {
    data_channel_and_file_without_descriptors(Executor::Thread);
}

/// Descriptors of `pid` (its /proc/PID/fd entries).
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// An idle logged-in session holds one descriptor, its control connection (the server's
/// wake-ups and the session's root directory are shared): 10,000 sessions fit a process
/// limit of 20,000 with room for their data connections.
fn idle_sessions_hold_one_descriptor_each(ex: Executor) {
    let args = model_args(ex);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let bin = BinServer::start(&refs);
    let pid = bin.child.id();
    let first = login(&bin);
    let before = open_descriptors(pid);
    let sessions: Vec<Raw> = (0..20).map(|_| login(&bin)).collect();
    let after = open_descriptors(pid);
    assert!(
        after - before <= 20 + 2,
        "20 idle sessions took {} descriptors",
        after - before
    );
    drop((first, sessions));
}

#[test]
fn one_descriptor_per_session_pool() {
    idle_sessions_hold_one_descriptor_each(Executor::Pool);
}
#[test]
fn one_descriptor_per_session_thread() {
    idle_sessions_hold_one_descriptor_each(Executor::Thread);
}
