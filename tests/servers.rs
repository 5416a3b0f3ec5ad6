//! Concurrency models and shutdown (pyftpdlib `test_servers.py`): many sessions at once,
//! `max_cons`, graceful shutdown by `ServerHandle::shutdown` and by
//! SIGTERM. Fork and PreFork run through the built binary.

mod common;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use ftpdlib::servers::Executor;
use nix::sys::signal::Signal;

/// 200 clients at once, each doing one of: download, upload + download back, listing.
fn many_concurrent_sessions(ex: Executor) {
    let s = start(ex);
    let seed = pattern(64 * 1024);
    s.write("seed.bin", &seed);
    let addr = s.addr;
    let workers: Vec<_> = (0..200)
        .map(|i| {
            let seed = seed.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut c =
                    FtpStream::connect_timeout(addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
                c.get_ref()
                    .set_read_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                c.login(USER, PASS).map_err(|e| format!("login: {e}"))?;
                c.transfer_type(FileType::Binary)
                    .map_err(|e| e.to_string())?;
                match i % 3 {
                    0 => {
                        let got = c
                            .retr_as_buffer("seed.bin")
                            .map_err(|e| format!("RETR: {e}"))?;
                        if got.into_inner() != seed {
                            return Err("download differs".into());
                        }
                    }
                    1 => {
                        let name = format!("up{i}.bin");
                        let mine = pattern(1000 + i);
                        c.put_file(&name, &mut &mine[..])
                            .map_err(|e| format!("STOR: {e}"))?;
                        let back = c.retr_as_buffer(&name).map_err(|e| format!("RETR: {e}"))?;
                        if back.into_inner() != mine {
                            return Err("upload differs".into());
                        }
                    }
                    _ => {
                        let names = c.nlst(None).map_err(|e| format!("NLST: {e}"))?;
                        if !names.iter().any(|n| n.ends_with("seed.bin")) {
                            return Err(format!("listing lacks seed.bin: {names:?}"));
                        }
                    }
                }
                c.quit().map_err(|e| format!("QUIT: {e}"))
            })
        })
        .collect();
    let errors: Vec<String> = workers
        .into_iter()
        .enumerate()
        .filter_map(|(i, w)| match w.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("client {i}: {e}")),
            Err(_) => Some(format!("client {i} panicked")),
        })
        .collect();
    assert!(errors.is_empty(), "{} failures: {errors:?}", errors.len());
    for i in (1..200).step_by(3) {
        assert_eq!(s.read(&format!("up{i}.bin")), pattern(1000 + i));
    }
}

/// Graceful shutdown: idle sessions get 421 at once, a running download completes (226,
/// every byte), then that session gets 421 too and shutdown() reports success.
fn shutdown_lets_transfer_finish(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.write_limit = 256 * 1024)
        .start();
    let big = pattern(512 * 1024);
    s.write("big.bin", &big);
    let mut idle = s.raw_login();
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    let (code, text) = r.cmd("RETR big.bin");
    assert!(code == 150 || code == 125, "{text}");
    let handle = s.handle.clone();
    let started = Instant::now();
    let stopper = std::thread::spawn(move || handle.shutdown(Duration::from_secs(120)));
    let (code, text) = idle.reply();
    assert_eq!(code, 421, "idle session: {text}");
    // At once, not when the grace period ends (a liveness limit far below it).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "idle close was not prompt"
    );
    assert_eq!(read_all(data), big, "the transfer finished whole");
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.reply().0, 421, "then the session is closed");
    assert!(stopper.join().unwrap(), "shutdown completed");
}

/// Past the grace period an upload is cut: the client gets 421 and never a 226.
fn shutdown_cuts_overrunning_upload(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut data = r.pasv();
    let (code, text) = r.cmd("STOR part.bin");
    assert!(code == 150 || code == 125, "{text}");
    data.write_all(&pattern(10_000)).unwrap();
    let handle = s.handle.clone();
    let stopper = std::thread::spawn(move || handle.shutdown(Duration::from_millis(300)));
    let (code, text) = r.reply();
    assert_eq!(code, 421, "{text}");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut r.stream, &mut rest);
    assert!(
        !rest.contains("226"),
        "a cut upload was reported complete: {rest}"
    );
    assert!(stopper.join().unwrap());
    drop(data);
}

/// max_cons counts sessions; a freed slot is reused.
fn max_cons_is_enforced(ex: Executor) {
    let s = builder().executor(ex).max_cons(2, 0).start();
    let c1 = s.login();
    let _c2 = s.login();
    let mut third = std::net::TcpStream::connect(s.addr).unwrap();
    third.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = String::new();
    let _ = std::io::Read::read_to_string(&mut third, &mut buf);
    assert!(buf.starts_with("421"), "{buf:?}");
    drop(c1);
    // The slot frees once the session ends (a forked child must be reaped first).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut line = [0u8; 3];
        let _ = std::io::Read::read_exact(&mut c, &mut line);
        if &line == b"220" {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// A panicking command under Pool and Thread: tests/limits.rs; under Fork: tests/fork_custom.rs.
models!(
    shutdown_lets_transfer_finish,
    shutdown_cuts_overrunning_upload,
    max_cons_is_enforced;
    bin: many_concurrent_sessions,
);

#[test]
fn fork_max_cons_is_enforced() {
    max_cons_is_enforced(Executor::Fork);
}

/// SIGTERM: an idle session gets 421, the process exits 0 (every model, through the binary).
fn sigterm_drains_and_exits_zero(ex: Executor) {
    let mut args = model_args(ex);
    args.extend(["--shutdown-grace".to_string(), "20".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut bin = BinServer::start(&refs);
    let mut r = raw_at(bin.addr);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    bin.signal(Signal::SIGTERM);
    let (code, text) = r.reply();
    assert_eq!(code, 421, "{text}");
    let st = bin
        .wait_exit(Duration::from_secs(30))
        .expect("the server exited");
    assert_eq!(st.code(), Some(0), "{}", bin.log());
    assert!(
        std::net::TcpStream::connect(bin.addr).is_err(),
        "still listening"
    );
}

#[test]
fn sigterm_pool() {
    sigterm_drains_and_exits_zero(Executor::Pool);
}
#[test]
fn sigterm_thread() {
    sigterm_drains_and_exits_zero(Executor::Thread);
}
#[test]
fn sigterm_fork() {
    sigterm_drains_and_exits_zero(Executor::Fork);
}
#[test]
fn sigterm_prefork() {
    sigterm_drains_and_exits_zero(Executor::PreFork { workers: 2 });
}

/// SIGTERM with a throttled download running: an idle session gets 421, a client that
/// connects during the drain gets `421 Server shutting down.` at once (it is not left in
/// the listener's backlog), the download completes with 226, and the process exits 0.
fn new_connection_during_drain_gets_421(ex: Executor) {
    let mut args = model_args(ex);
    args.extend(
        ["--shutdown-grace", "60", "--write-limit", "128K"]
            .iter()
            .map(|s| s.to_string()),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut bin = BinServer::start(&refs);
    let big = pattern(1 << 20);
    std::fs::write(bin.root.join("big.bin"), &big).unwrap();
    let login = |bin: &BinServer| {
        let mut r = raw_at(bin.addr);
        assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
        r
    };
    let mut idle = login(&bin);
    let mut r = login(&bin);
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut data = r.pasv();
    let (code, text) = r.cmd("RETR big.bin");
    assert!(code == 150 || code == 125, "{text}");
    let mut head = vec![0u8; 64 * 1024];
    std::io::Read::read_exact(&mut data, &mut head).unwrap();
    bin.signal(Signal::SIGTERM);
    assert_eq!(idle.reply().0, 421, "the idle session is told at once");
    for i in 0..5 {
        let c = std::net::TcpStream::connect(bin.addr).expect("connect during the drain");
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(
            first_line(&c),
            "421 Server shutting down.",
            "connection {i} during the drain"
        );
    }
    let mut rest = read_all(data);
    head.append(&mut rest);
    assert!(head == big, "the download was cut: {} bytes", head.len());
    assert_eq!(r.reply().0, 226);
    let st = bin
        .wait_exit(Duration::from_secs(60))
        .expect("the server exited");
    assert_eq!(st.code(), Some(0), "{}", bin.log());
    assert!(
        bin.wait_log("shutting_down=5"),
        "the refusals are counted: {}",
        bin.log()
    );
}

#[test]
fn drain_pool() {
    new_connection_during_drain_gets_421(Executor::Pool);
}
#[test]
fn drain_thread() {
    new_connection_during_drain_gets_421(Executor::Thread);
}
#[test]
fn drain_fork() {
    new_connection_during_drain_gets_421(Executor::Fork);
}
#[test]
fn drain_prefork() {
    new_connection_during_drain_gets_421(Executor::PreFork { workers: 2 });
}

/// fork() is refused in a process with other threads (like this test process).
#[test]
fn fork_model_refuses_a_threaded_process() {
    let h = ftpdlib::handlers::FtpHandler::new(std::sync::Arc::new(
        ftpdlib::authorizers::DummyAuthorizer::new(),
    ));
    let server = ftpdlib::servers::MultiprocessFtpServer::new("127.0.0.1:0", h).unwrap();
    assert_eq!(server.executor(), Executor::Fork);
    let err = server.serve_forever().unwrap_err();
    assert!(err.to_string().contains("thread"), "{err}");
}

/// A worker that dies is replaced and the server goes on serving.
#[test]
fn prefork_replaces_a_dead_worker() {
    let bin = BinServer::start(&["--concurrency", "pre-fork", "--workers", "2"]);
    let parent = bin.child.id() as i32;
    if !std::path::Path::new(&format!("/proc/{parent}/task/{parent}/children")).exists() {
        eprintln!("skipped: this kernel has no /proc/PID/task/TID/children");
        return;
    }
    let children = || -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    // The banner is logged before the workers are forked: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let now = children();
        if now.len() == 2 {
            break now;
        }
        assert!(Instant::now() < deadline, "workers: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(before[0]), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = children();
        if now.len() == 2 && !now.contains(&before[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no replacement: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..4 {
        let mut r = raw_at(bin.addr);
        assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    }
    assert!(bin.log().contains("starting another"), "{}", bin.log());
}
