//! Throttled transfers: per-session `read_limit`/`write_limit` (pyftpdlib
//! `ThrottledDTPHandler`), limits shared by a user's sessions and by the whole server, limits
//! from the authorizer, and ABOR/STAT answered promptly while a transfer sleeps for tokens.
//! A throttled transfer cannot be faster than its rate allows: that lower bound is asserted
//! (1.5 s where 2 s is expected); above it only a generous liveness limit, as a loaded
//! machine may be slow. Prompt answers are asserted by what they show (the transfer was
//! still running, it was cut short), never by a stopwatch.

mod common;
use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use ftpdlib::authorizers::UserLimits;
use ftpdlib::servers::Executor;

const MIB: usize = 1 << 20;

/// At least 1.5 s (the rate holds), and done within a liveness limit far above the
/// expected 2 s (a throttle that stalls fails).
fn assert_about_two_seconds(what: &str, t: Duration) {
    assert!(
        t >= Duration::from_millis(1500),
        "{what} took {t:?}: faster than the limit allows (about 2 s expected)"
    );
    assert!(
        t <= Duration::from_secs(60),
        "{what} took {t:?}, expected about 2 s"
    );
}

fn download_at_write_limit(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.write_limit = MIB as u64)
        .start();
    let data = pattern(2 * MIB);
    s.write("big", &data);
    let mut c = s.login();
    let t0 = Instant::now();
    let got = c.retr_as_buffer("big").unwrap().into_inner();
    let t = t0.elapsed();
    assert!(got == data, "download corrupted");
    assert_about_two_seconds("2 MiB download at write_limit=1M", t);
}

fn upload_at_read_limit(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.read_limit = MIB as u64)
        .start();
    let data = pattern(2 * MIB);
    let mut c = s.login();
    let t0 = Instant::now();
    c.put_file("up", &mut &data[..]).unwrap();
    let t = t0.elapsed();
    assert!(s.read("up") == data, "upload corrupted");
    assert_about_two_seconds("2 MiB upload at read_limit=1M", t);
}

fn abor_and_stat_answer_during_throttled_download(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.write_limit = 64 * 1024)
        .start();
    s.write("big", &pattern(2 * MIB));
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut data = r.pasv();
    let (code, _) = r.cmd("RETR big");
    assert!(code == 125 || code == 150, "{code}");
    let mut buf = [0u8; 4096];
    let n = data.read(&mut buf).unwrap();
    assert!(n > 0);
    // Answered while the transfer runs: the reply says the data connection is open.
    let (code, text) = r.cmd("STAT");
    assert_eq!(code, 211, "{text}");
    assert!(text.contains("Data connection open"), "{text}");
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    // ABOR cut the 2 MiB download short (at 64 KiB/s it would run for 32 s).
    let mut rest = Vec::new();
    let _ = data.read_to_end(&mut rest);
    assert!(
        n + rest.len() < 2 * MIB,
        "the download ran to its end: {} bytes",
        n + rest.len()
    );
    // The session goes on.
    assert_eq!(r.cmd("NOOP").0, 200);
}

fn abor_answers_during_throttled_upload(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.read_limit = 64 * 1024)
        .start();
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut data = r.pasv();
    let (code, _) = r.cmd("STOR up");
    assert!(code == 125 || code == 150, "{code}");
    // More than the socket buffers hold, from another thread, so the server is throttled.
    let writer = std::thread::spawn(move || {
        let chunk = pattern(64 * 1024);
        for _ in 0..64 {
            if std::io::Write::write_all(&mut data, &chunk).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    r.send("ABOR");
    let first = r.reply().0;
    assert!(first == 426 || first == 226, "{first}");
    if first == 426 {
        assert_eq!(r.reply().0, 226);
    }
    // Answered mid-upload: the writer (4 MiB at 64 KiB/s would take a minute) is cut off.
    writer.join().unwrap();
    assert!(s.read("up").len() < 4 * MIB, "the upload was cut short");
}

/// Downloads `file` in each of `clients` concurrently; returns the time until all finished.
fn concurrent_downloads(clients: Vec<FtpStream>, file: &str, len: usize) -> Duration {
    let t0 = Instant::now();
    let hs: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let f = file.to_string();
            std::thread::spawn(move || c.retr_as_buffer(&f).unwrap().into_inner().len())
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), len);
    }
    t0.elapsed()
}

fn user_limit_is_shared_by_the_users_sessions(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.user_write_limit = MIB as u64)
        .start();
    s.write("one", &pattern(MIB));
    let clients = vec![s.login(), s.login()];
    // Two sessions of one user, 1 MiB each, share 1 MiB/s: about 2 s together (a session
    // alone would need about 1 s).
    let t = concurrent_downloads(clients, "one", MIB);
    assert_about_two_seconds("two sessions of one user at user_write_limit=1M", t);
}

fn server_limit_is_shared_by_all_sessions(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.max_write_rate = MIB as u64)
        .start();
    s.write("one", &pattern(MIB));
    let clients = vec![s.login(), s.anon()];
    let t = concurrent_downloads(clients, "one", MIB);
    assert_about_two_seconds("two users at max_write_rate=1M", t);
}

fn server_read_rate_limits_uploads(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.max_read_rate = MIB as u64)
        .start();
    let data = pattern(2 * MIB);
    let mut c = s.login();
    let t0 = Instant::now();
    c.put_file("up", &mut &data[..]).unwrap();
    assert_about_two_seconds("2 MiB upload at max_read_rate=1M", t0.elapsed());
    assert_eq!(s.read("up").len(), 2 * MIB);
}

fn authorizer_limits_apply_to_that_user(ex: Executor) {
    let s = builder()
        .executor(ex)
        .auth(|a, root| {
            a.add_user(USER, PASS, root, "elradfmwMT").unwrap();
            a.set_limits(
                USER,
                UserLimits {
                    write_limit: Some(MIB as u64),
                    ..UserLimits::default()
                },
            )
            .unwrap();
            assert!(a.set_limits("nobody", UserLimits::default()).is_err());
        })
        .start();
    s.write("big", &pattern(2 * MIB));
    let mut c = s.login();
    let t0 = Instant::now();
    assert_eq!(c.retr_as_buffer("big").unwrap().into_inner().len(), 2 * MIB);
    assert_about_two_seconds(
        "2 MiB download with the authorizer's write_limit=1M",
        t0.elapsed(),
    );
}

fn user_slots_are_taken_at_login_and_released_at_logout(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(move |h| h.user_read_limit = MIB as u64)
        .start();
    // The shared buckets are the server's (live state), not the handler's.
    let limits = s.handle.rate_table().clone();
    assert!(limits.is_process_shared());
    let wait_for = |n: usize| {
        let t0 = Instant::now();
        while limits.active_users() != n && t0.elapsed() < IO_TIMEOUT {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(limits.active_users(), n);
    };
    let mut a = s.login();
    let mut b = s.login();
    let mut anon = s.anon();
    wait_for(2);
    a.quit().unwrap();
    wait_for(2);
    b.quit().unwrap();
    wait_for(1);
    let mut r = s.raw_login();
    wait_for(2);
    assert_eq!(r.cmd("REIN").0, 230);
    wait_for(1);
    anon.quit().unwrap();
    wait_for(0);
}

/// Two sessions of `user` on the built binary in a forking model, 1 MiB each at once: the
/// shared limit (1 MiB/s) must hold across the session processes, so about 2 s together
/// (with a bucket per process they would take about 1 s).
fn shared_limit_across_processes(flags: &[&str]) {
    let bin = BinServer::start(flags);
    std::fs::write(bin.root.join("one"), pattern(MIB)).unwrap();
    let mut clients: Vec<FtpStream> = (0..2)
        .map(|_| {
            let mut c = FtpStream::connect_timeout(bin.addr, IO_TIMEOUT).expect("connect");
            c.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            c.login(USER, PASS).expect("login");
            c.transfer_type(FileType::Binary).expect("TYPE I");
            c
        })
        .collect();
    // A shared bucket fills from the moment it is made (the server's with its table, before
    // the workers fork), up to one second's worth: on a loaded machine the start and the
    // logins can take that long, and the two downloads would then ride a full bucket and
    // take 1 s with the limit holding. One download alone first spends what accumulated, so
    // the two measured ones start from an empty bucket.
    let warm = clients[0].retr_as_buffer("one").expect("warm-up download");
    assert_eq!(warm.into_inner().len(), MIB);
    let t = concurrent_downloads(clients, "one", MIB);
    assert_about_two_seconds(&format!("two sessions with {flags:?}"), t);
}

models!(
    user_slots_are_taken_at_login_and_released_at_logout,
    download_at_write_limit,
    upload_at_read_limit,
    abor_and_stat_answer_during_throttled_download,
    abor_answers_during_throttled_upload,
);

mod shared {
    use super::*;

    #[test]
    fn user_limit() {
        user_limit_is_shared_by_the_users_sessions(Executor::Pool)
    }

    #[test]
    fn user_limit_thread() {
        user_limit_is_shared_by_the_users_sessions(Executor::Thread)
    }

    #[test]
    fn server_limit() {
        server_limit_is_shared_by_all_sessions(Executor::Pool)
    }

    #[test]
    fn server_read_rate() {
        server_read_rate_limits_uploads(Executor::Pool)
    }

    #[test]
    fn user_limit_across_forked_sessions() {
        shared_limit_across_processes(&["--concurrency", "multi-proc", "--user-write-limit", "1M"])
    }

    #[test]
    fn server_limit_across_prefork_workers() {
        shared_limit_across_processes(&[
            "--concurrency",
            "pre-fork",
            "--workers",
            "2",
            "--max-write-rate",
            "1M",
        ])
    }

    #[test]
    fn authorizer_limits() {
        authorizer_limits_apply_to_that_user(Executor::Pool)
    }
}
