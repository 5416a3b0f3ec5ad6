//! What an operator sees: the per-command log lines, session and server stats, the
//! Prometheus endpoint, xferlog, log files and SIGHUP reloads.

mod common;
use common::*;
use ftpdlib::handlers::stats::{SessionEnd, SessionStats, TransferResult, TransferStats};
use ftpdlib::handlers::Callbacks;
use ftpdlib::servers::{Executor, ServerStats};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// At the default level, one line per state-changing command with its reply code and the
/// virtual path, transfers with bytes and seconds, failed commands with code and text; no
/// bare `filesystem error` line that names neither the command nor the path.
#[test]
fn admin_log_names_command_path_and_code() {
    let b = BinServer::start(&[]);
    std::fs::write(b.root.join("f.txt"), b"hello").unwrap();
    let mut r = raw_at(b.addr);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(r.cmd("TYPE I").0, 200);
    assert_eq!(r.cmd("MKD d").0, 257);
    assert_eq!(r.cmd("RNFR f.txt").0, 350);
    assert_eq!(r.cmd("RNTO g.txt").0, 250);
    assert_eq!(r.cmd("SITE CHMOD 640 g.txt").0, 200);
    assert_eq!(r.cmd("MFMT 20200102030405 g.txt").0, 213);
    let d = r.pasv();
    assert_eq!(r.cmd("RETR g.txt").0, 125);
    assert_eq!(read_all(d), b"hello");
    assert_eq!(r.reply().0, 226);
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR d/up.bin").0, 125);
    d.write_all(&[7u8; 1000]).unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("DELE d/up.bin").0, 250);
    assert_eq!(r.cmd("DELE nope.txt").0, 550);
    assert_eq!(r.cmd("RMD d").0, 250);
    assert_eq!(r.cmd("RETR nope.txt").0, 550);
    assert_eq!(r.cmd("QUIT").0, 221);
    let prefix = "-[user] ";
    for want in [
        "MKD /d 257",
        "RNFR /f.txt 350",
        "RNTO /g.txt 250",
        "SITE CHMOD 640 /g.txt 200",
        "MFMT 20200102030405 /g.txt 213",
        "RETR /g.txt 226 completed=1 bytes=5 seconds=",
        "STOR /d/up.bin 226 completed=1 bytes=1000 seconds=",
        "DELE /d/up.bin 250",
        "DELE /nope.txt 550 'No such file or directory.'",
        "RMD /d 250",
        "RETR /nope.txt 550 'No such file or directory.'",
    ] {
        let line = format!("{prefix}{want}");
        assert!(b.wait_log(&line), "{line:?} missing from:\n{}", b.log());
    }
    assert!(b.wait_log("logged out"), "{}", b.log());
    assert!(!b.log().contains("filesystem error"), "{}", b.log());
}

/// `GET /metrics` with curl: the samples, by name with labels (`name{labels}` → value).
fn scrape(addr: std::net::SocketAddr) -> std::collections::HashMap<String, f64> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Scrapes until `ok` holds for the samples (sessions finish their bookkeeping after their
/// last reply), at most [`IO_TIMEOUT`]; returns the last scrape.
fn scrape_until(
    addr: std::net::SocketAddr,
    ok: impl Fn(&std::collections::HashMap<String, f64>) -> bool,
) -> std::collections::HashMap<String, f64> {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let m = scrape(addr);
        if ok(&m) || std::time::Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn get(m: &std::collections::HashMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(-1.0)
}

/// Real transfers by suppaftp, then the counters scraped from the endpoint with curl: the
/// same numbers in every model, forked children and pre-forked workers included.
fn metrics_count_real_transfers(ex: Executor) {
    if !cfg!(feature = "metrics") {
        return missing("built without the `metrics` feature");
    }
    if !tool("curl") {
        return;
    }
    let s = builder().executor(ex).metrics().start();
    let addr = s.metrics.expect("metrics address");
    s.write("down.bin", &pattern(3000));
    let before = scrape(addr);
    assert_eq!(get(&before, "ftpdlib_sessions_total"), 0.0, "{before:?}");
    let mut bad = s.connect();
    assert!(bad.login(USER, "wrong").is_err());
    let _ = bad.quit();
    let mut c = s.login();
    c.put_file("up.bin", &mut &pattern(1000)[..]).expect("STOR");
    assert_eq!(
        c.retr_as_buffer("down.bin").expect("RETR").into_inner(),
        pattern(3000)
    );
    c.quit().expect("QUIT");
    let m = scrape_until(addr, |m| {
        get(m, "ftpdlib_session_ends_total{reason=\"quit\"}") >= 2.0
    });
    for (k, want) in [
        ("ftpdlib_sessions_total", 2.0),
        ("ftpdlib_session_ends_total{reason=\"quit\"}", 2.0),
        ("ftpdlib_logins_total{result=\"ok\"}", 1.0),
        ("ftpdlib_logins_total{result=\"failed\"}", 1.0),
        ("ftpdlib_sent_bytes_total", 3000.0),
        ("ftpdlib_received_bytes_total", 1000.0),
        (
            "ftpdlib_transfers_total{direction=\"download\",result=\"complete\"}",
            1.0,
        ),
        (
            "ftpdlib_transfers_total{direction=\"upload\",result=\"complete\"}",
            1.0,
        ),
        (
            "ftpdlib_transfers_total{direction=\"upload\",result=\"failed\"}",
            0.0,
        ),
        ("ftpdlib_login_duration_seconds_count", 1.0),
        (
            "ftpdlib_transfer_duration_seconds_count{direction=\"upload\"}",
            1.0,
        ),
        ("ftpdlib_login_duration_seconds_bucket{le=\"+Inf\"}", 1.0),
        ("ftpdlib_sessions_active", 0.0),
    ] {
        assert_eq!(get(&m, k), want, "{k} in {m:?}");
    }
    assert!(get(&m, "ftpdlib_commands_total") >= 8.0, "{m:?}");
    let processes = get(&m, "ftpdlib_processes");
    let (busy, idle) = (
        get(&m, "ftpdlib_pool_workers{state=\"busy\"}"),
        get(&m, "ftpdlib_pool_workers{state=\"idle\"}"),
    );
    match ex {
        Executor::PreFork { workers } => {
            assert_eq!(processes, 1.0 + workers as f64, "{m:?}");
            assert!(
                idle >= 2.0 * workers as f64,
                "each worker keeps 2 spare: {m:?}"
            );
        }
        Executor::Pool => {
            assert_eq!(processes, 1.0);
            assert!(idle >= 2.0 && busy >= 0.0, "{m:?}");
        }
        _ => assert_eq!((busy, idle), (0.0, 0.0), "no pool: {m:?}"),
    }
}

/// The exposition passes Prometheus's own checker (`promtool check metrics`), after real
/// traffic so every family has samples.
fn metrics_pass_promtool(ex: Executor) {
    if !cfg!(feature = "metrics") {
        return missing("built without the `metrics` feature");
    }
    if !tool("curl") || !tool("promtool") {
        return;
    }
    let s = builder().executor(ex).metrics().start();
    let addr = s.metrics.expect("metrics address");
    let mut c = s.login();
    c.put_file("f", &mut &b"x"[..]).expect("STOR");
    c.quit().expect("QUIT");
    scrape_until(addr, |m| {
        get(m, "ftpdlib_session_ends_total{reason=\"quit\"}") >= 1.0
    });
    let body = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("curl");
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(&body.stdout)
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {out:?}\n{}",
        String::from_utf8_lossy(&body.stdout)
    );
    // Only GET /metrics: another path is 404, never the FTP port's business.
    let other = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("curl");
    assert_eq!(other.stdout, b"404");
}

/// What the session and transfer callbacks record.
#[derive(Clone, Default)]
struct Seen {
    sessions: Arc<Mutex<Vec<SessionStats>>>,
    transfers: Arc<Mutex<Vec<TransferStats>>>,
}

struct Recorder(Seen);

impl Callbacks for Recorder {
    fn on_transfer_end(&mut self, t: &TransferStats) {
        self.0.transfers.lock().unwrap().push(t.clone());
    }
    fn on_session_end(&mut self, s: &SessionStats) {
        self.0.sessions.lock().unwrap().push(s.clone());
    }
}

impl Seen {
    /// The session stats once `n` sessions ended (at most [`IO_TIMEOUT`]).
    fn sessions(&self, n: usize) -> Vec<SessionStats> {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while self.sessions.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.sessions.lock().unwrap().clone()
    }
}

/// Each session's stats arrive once, when it ends, with who, what and how it ended; each
/// transfer's with user, bytes and duration; and the server's stats every interval.
fn session_transfer_and_server_stats(ex: Executor) {
    let seen = Seen::default();
    let server_stats: Arc<Mutex<Vec<ServerStats>>> = Arc::default();
    let (seen2, ss) = (seen.clone(), server_stats.clone());
    let s = builder()
        .executor(ex)
        .handler(move |h| {
            h.max_login_attempts = 2;
            h.set_callbacks(move || Recorder(seen2.clone()));
        })
        .server(move |mut srv| {
            srv.stats_interval = std::time::Duration::from_millis(100);
            srv.server_stats_callback =
                Some(Arc::new(move |st| ss.lock().unwrap().push(st.clone())));
            srv
        })
        .start();
    s.write("f", &pattern(5000));
    // 1: QUIT after a download, an upload and an aborted download.
    let mut c = s.login();
    c.retr_as_buffer("f").expect("RETR");
    c.put_file("g", &mut &pattern(700)[..]).expect("STOR");
    c.quit().expect("QUIT");
    let first = seen.sessions(1);
    // 2: two failed logins close the session (max_login_attempts = 2).
    let mut r = s.raw();
    for _ in 0..2 {
        r.cmd(&format!("USER {USER}"));
        r.cmd("PASS nope");
    }
    assert!(r.is_closed());
    // 3: the client just goes away.
    let r = s.raw_login();
    drop(r);
    let all = seen.sessions(3);
    assert_eq!(all.len(), 3, "{all:?}");
    let q = &first[0];
    assert_eq!(q.end, SessionEnd::Quit);
    assert_eq!(q.user.as_deref(), Some(USER));
    assert_eq!((q.bytes_sent, q.bytes_received), (5000, 700));
    assert_eq!(
        (q.files_sent, q.files_received, q.failed_transfers),
        (1, 1, 0)
    );
    assert!(q.commands >= 6, "{q:?}");
    assert_eq!(q.peer.ip(), s.addr.ip());
    assert!(q.tls.is_none());
    assert_eq!(all[1].end, SessionEnd::Limit, "{all:?}");
    assert_eq!(all[1].user, None);
    assert_eq!(all[2].end, SessionEnd::ClientClosed, "{all:?}");
    let t = seen.transfers.lock().unwrap().clone();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(
        (t[0].user.as_str(), t[0].bytes, t[0].upload),
        (USER, 5000, false)
    );
    assert_eq!(t[0].vpath, std::path::Path::new("/f"));
    assert_eq!(
        (t[1].bytes, t[1].upload, t[1].result),
        (700, true, TransferResult::Complete)
    );
    // The server's stats, delivered every 100 ms, reach these totals.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let last = loop {
        let last = server_stats.lock().unwrap().last().cloned();
        if let Some(st) = &last {
            if st.totals.sessions == 3 && st.totals.ended(SessionEnd::ClientClosed) == 1 {
                break last;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{last:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let st = last.expect("server stats");
    assert_eq!(
        (st.totals.logins, st.totals.failed_logins),
        (2, 2),
        "{st:?}"
    );
    assert_eq!(st.totals.login_attempts_exceeded, 1);
    assert_eq!(
        (st.totals.bytes_sent, st.totals.bytes_received),
        (5000, 700)
    );
    assert_eq!(st.totals.ended(SessionEnd::Limit), 1);
    assert_eq!(s.handle.stats().totals.sessions, 3);
}

/// Under Fork and PreFork the same totals reach the parent: `--stats-interval` logs them.
fn stats_lines_count_every_process(ex: Executor) {
    let s = builder()
        .executor(ex)
        .config(&["--stats-interval", "1"], |_| {})
        .start();
    s.write("f", &pattern(4000));
    for _ in 0..3 {
        let mut c = s.login();
        c.retr_as_buffer("f").expect("RETR");
        c.quit().expect("QUIT");
    }
    let b = s.bin.as_ref().expect("binary");
    assert!(b.wait_log("logins: 3 ok, 0 failed"), "{}", b.log());
    assert!(
        b.wait_log("downloads: 3 complete, 0 aborted, 0 failed, 12000 bytes"),
        "{}",
        b.log()
    );
}

/// A server whose downloads crawl (64 KiB/s), holding a 4 MiB `big`, whose sessions'
/// stats are recorded.
fn slow_recorded(ex: Executor) -> (Server, Seen) {
    let seen = Seen::default();
    let seen2 = seen.clone();
    let s = builder()
        .executor(ex)
        .handler(move |h| {
            h.write_limit = 64 * 1024;
            h.set_callbacks(move || Recorder(seen2.clone()));
        })
        .start();
    s.write("big", &pattern(4 << 20));
    (s, seen)
}

/// A logged-in session whose download of `big` is under way (its first bytes read).
fn downloading(s: &Server) -> (Raw, std::net::TcpStream) {
    let mut r = s.raw_login();
    assert_eq!(r.cmd("TYPE I").0, 200);
    let mut d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    let mut head = [0u8; 4096];
    std::io::Read::read_exact(&mut d, &mut head).expect("first bytes");
    (r, d)
}

/// `close_all` ends an idle session and one in the middle of a download: both end as
/// server shutdowns, in their own stats and in the server's.
fn close_all_counts_as_server_shutdown(ex: Executor) {
    let (s, seen) = slow_recorded(ex);
    let mut idle = s.raw_login();
    let (mut busy, _d) = downloading(&s);
    s.handle.close_all();
    assert!(idle.is_closed() && busy.is_closed());
    let all = seen.sessions(2);
    assert_eq!(all.len(), 2, "{all:?}");
    for st in &all {
        assert_eq!(st.end, SessionEnd::ServerShutdown, "{all:?}");
    }
    assert_eq!(all.iter().filter(|st| st.failed_transfers == 1).count(), 1);
    let totals = s.handle.stats().totals;
    assert_eq!(totals.ended(SessionEnd::ServerShutdown), 2, "{totals:?}");
    assert_eq!(totals.ended(SessionEnd::ClientClosed), 0, "{totals:?}");
}

/// ABOR during a transfer is a command like any other: in the session's count and the
/// server's (the `ftpdlib_commands_total` metric reads the same counter).
fn abor_mid_transfer_counts_as_a_command(ex: Executor) {
    let (s, seen) = slow_recorded(ex);
    let (mut r, _d) = downloading(&s);
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("QUIT").0, 221);
    let all = seen.sessions(1);
    // USER, PASS, TYPE, PASV, RETR, ABOR, QUIT.
    assert_eq!(all[0].commands, 7, "{all:?}");
    assert_eq!(s.handle.stats().totals.commands, 7);
}

models!(
    session_transfer_and_server_stats,
    close_all_counts_as_server_shutdown,
    abor_mid_transfer_counts_as_a_command;
    bin: metrics_count_real_transfers,
    metrics_pass_promtool,
    abor_mid_transfer_counts_in_the_metric,
);

/// Under Fork and PreFork, ABOR mid-transfer reaches `ftpdlib_commands_total` too.
fn abor_mid_transfer_counts_in_the_metric(ex: Executor) {
    if !cfg!(feature = "metrics") {
        return missing("built without the `metrics` feature");
    }
    if !tool("curl") {
        return;
    }
    let s = builder()
        .executor(ex)
        .config(&["--write-limit", "65536"], |h| h.write_limit = 64 * 1024)
        .metrics()
        .start();
    let addr = s.metrics.expect("metrics address");
    s.write("big", &pattern(4 << 20));
    let (mut r, _d) = downloading(&s);
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("QUIT").0, 221);
    let m = scrape_until(addr, |m| {
        get(m, "ftpdlib_session_ends_total{reason=\"quit\"}") >= 1.0
    });
    assert_eq!(get(&m, "ftpdlib_commands_total"), 7.0, "{m:?}");
}

/// The pids of the metrics endpoint's processes so far, from the parent's
/// `metrics endpoint: process N` lines.
fn metrics_pids(b: &BinServer) -> Vec<i32> {
    b.log()
        .lines()
        .filter_map(|l| l.split("metrics endpoint: process ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Under Fork and PreFork the endpoint is a process of its own: killed, it is started
/// again (logged, after a pause that doubles while it keeps dying) on the same listener,
/// and the next scrape is answered with the live counters.
fn metrics_process_is_restarted(ex: Executor) {
    if !cfg!(feature = "metrics") {
        return missing("built without the `metrics` feature");
    }
    if !tool("curl") {
        return;
    }
    let s = builder().executor(ex).metrics().start();
    let addr = s.metrics.expect("metrics address");
    let b = s.bin.as_ref().expect("binary");
    assert!(b.wait_log("metrics endpoint: process"), "{}", b.log());
    for (round, pause) in [(1, 1), (2, 2)] {
        let pids = metrics_pids(b);
        assert_eq!(pids.len(), round, "{}", b.log());
        let pid = nix::unistd::Pid::from_raw(pids[round - 1]);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
        assert!(
            b.wait_log(&format!("restarting it in {pause} s")),
            "{}",
            b.log()
        );
        // Waits in the listener's backlog until the new process accepts it.
        let mut c = s.login();
        c.quit().expect("QUIT");
        let m = scrape_until(addr, |m| {
            get(m, "ftpdlib_session_ends_total{reason=\"quit\"}") >= round as f64
        });
        assert_eq!(
            get(&m, "ftpdlib_session_ends_total{reason=\"quit\"}"),
            round as f64,
            "{m:?}"
        );
        assert!(b.wait_log("metrics endpoint restarted"), "{}", b.log());
    }
    assert_eq!(metrics_pids(b).len(), 3, "{}", b.log());
}

#[test]
fn fork_metrics_process_is_restarted() {
    metrics_process_is_restarted(Executor::Fork)
}

#[test]
fn prefork_metrics_process_is_restarted() {
    metrics_process_is_restarted(Executor::PreFork { workers: 2 })
}

/// Under Fork the parent ends its session processes by signal: SIGUSR1 (close every
/// session now, `close_all`'s meaning) ends an idle session and one mid-download as
/// server shutdowns, and SIGTERM (graceful) ends an idle one so too.
#[test]
fn fork_shutdown_counts_as_server_shutdown() {
    for (sig, busy) in [
        (nix::sys::signal::Signal::SIGUSR1, true),
        (nix::sys::signal::Signal::SIGTERM, false),
    ] {
        let s = builder()
            .executor(Executor::Fork)
            .config(&["--write-limit", "65536"], |_| {})
            .start();
        s.write("big", &pattern(4 << 20));
        let mut idle = s.raw_login();
        let mut transfer = busy.then(|| downloading(&s));
        let b = s.bin.as_ref().expect("binary");
        b.signal(sig);
        // Signals end sessions with a 421 (close_all in-process ends them silently).
        assert_eq!(idle.reply().0, 421);
        assert!(idle.is_closed());
        if let Some((r, _)) = &mut transfer {
            assert_eq!(r.reply().0, 421);
            assert!(r.is_closed());
        }
        let want = 1 + usize::from(busy);
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while b.log().matches("(disconnect): server_shutdown,").count() < want
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let log = b.log();
        assert_eq!(
            log.matches("(disconnect): server_shutdown,").count(),
            want,
            "{sig:?}: {log}"
        );
        assert!(!log.contains("(disconnect): client_closed"), "{log}");
    }
}

#[test]
fn fork_stats_lines_count_every_process() {
    stats_lines_count_every_process(Executor::Fork)
}

#[test]
fn prefork_stats_lines_count_every_process() {
    stats_lines_count_every_process(Executor::PreFork { workers: 2 })
}

/// The pool and pre-fork models through the binary (pre-fork: the supervisor must pass
/// SIGHUP on to the workers that serve the sessions).
const BIN_MODELS: [Executor; 2] = [Executor::Pool, Executor::PreFork { workers: 2 }];

/// `--xferlog`: one line per transfer in the wu-ftpd format, parsed field by field.
#[test]
fn xferlog_lines_parse_field_by_field() {
    for ex in BIN_MODELS {
        let dir = tempfile::tempdir().unwrap();
        let xfer = dir.path().join("xferlog");
        let mut args = model_args(ex);
        args.extend(["--xferlog".into(), xfer.to_str().unwrap().into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let b = BinServer::start(&refs);
        std::fs::write(b.root.join("big file.bin"), pattern(1 << 20)).unwrap();
        let mut c = FtpStream::connect(b.addr).unwrap();
        c.login(USER, PASS).unwrap();
        c.transfer_type(FileType::Binary).unwrap();
        c.put_file("up.txt", &mut &pattern(1234)[..]).unwrap();
        assert_eq!(
            c.retr_as_buffer("big file.bin").unwrap().into_inner().len(),
            1 << 20
        );
        // An aborted download: incomplete.
        let mut r = raw_at(b.addr);
        r.cmd(&format!("USER {USER}"));
        r.cmd(&format!("PASS {PASS}"));
        r.cmd("TYPE A");
        let _d = r.pasv();
        assert_eq!(r.cmd("RETR big file.bin").0, 125);
        r.send("ABOR");
        assert_eq!(r.reply().0, 426);
        r.reply();
        c.quit().unwrap();
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let text = loop {
            let t = std::fs::read_to_string(&xfer).unwrap_or_default();
            if t.lines().count() >= 3 || std::time::Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines.len(), 3, "{ex:?}: {text}");
        for f in &lines {
            // Date (5 fields) + 13 fields.
            assert_eq!(f.len(), 18, "{text}");
            assert!(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&f[0]));
            assert_eq!(f[3].len(), 8, "HH:MM:SS: {text}");
            assert!(f[4].parse::<u32>().unwrap() >= 2024);
            assert!(f[5].parse::<u64>().unwrap() >= 1, "transfer time: {text}");
            assert_eq!(f[6], "127.0.0.1");
            assert_eq!((f[10], f[12], f[13]), ("_", "r", USER));
            assert_eq!((f[14], f[15], f[16]), ("ftp", "0", "*"));
        }
        let (up, down, aborted) = (&lines[0], &lines[1], &lines[2]);
        assert_eq!(
            (up[7], up[8], up[9], up[11], up[17]),
            ("1234", "/up.txt", "b", "i", "c")
        );
        assert_eq!(down[7], (1 << 20).to_string());
        assert_eq!(
            (down[8], down[9], down[11], down[17]),
            ("/big_file.bin", "b", "o", "c")
        );
        assert_eq!(
            (aborted[9], aborted[11], aborted[17]),
            ("a", "o", "i"),
            "{text}"
        );
    }
}

/// `--log-file` and SIGHUP: after logrotate moves the file, SIGHUP makes every process
/// (pre-fork workers included) write to a new one at the same path.
#[test]
fn sighup_reopens_the_log_file_and_the_xferlog() {
    for ex in BIN_MODELS {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ftpd.log");
        let xfer = dir.path().join("xferlog");
        let mut args = model_args(ex);
        args.extend(["--log-file".into(), log.to_str().unwrap().into()]);
        args.extend(["--xferlog".into(), xfer.to_str().unwrap().into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut b = start_logging_to_file(&refs, &log);
        let addr = b.addr;
        let session = |name: &str| {
            let mut c = FtpStream::connect(addr).unwrap();
            c.login(USER, PASS).unwrap();
            c.put_file(name, &mut &b"data"[..]).unwrap();
            c.quit().unwrap();
        };
        session("before.txt");
        assert!(wait_file(&log, "STOR /before.txt 226"), "{}", read(&log));
        std::fs::rename(&log, dir.path().join("ftpd.log.1")).unwrap();
        std::fs::rename(&xfer, dir.path().join("xferlog.1")).unwrap();
        b.signal(nix::sys::signal::Signal::SIGHUP);
        let reopened = match ex {
            Executor::PreFork { workers } => workers + 1,
            _ => 1,
        };
        assert!(
            wait_count(&log, "log file", reopened),
            "{ex:?}: every process reopens: {}",
            read(&log)
        );
        session("after.txt");
        assert!(
            wait_file(&log, "STOR /after.txt 226"),
            "{ex:?}: {}",
            read(&log)
        );
        assert!(wait_file(&xfer, "/after.txt"), "{}", read(&xfer));
        let old = read(&dir.path().join("ftpd.log.1"));
        assert!(
            old.contains("/before.txt") && !old.contains("/after.txt"),
            "{old}"
        );
        assert!(!read(&xfer).contains("/before.txt"));
        assert!(read(&dir.path().join("xferlog.1")).contains("/before.txt"));
        // Still serving, and stops cleanly.
        b.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(b.wait_exit(IO_TIMEOUT).and_then(|s| s.code()), Some(0));
    }
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits until `p` holds `needle`.
fn wait_file(p: &std::path::Path, needle: &str) -> bool {
    wait_count(p, needle, 1)
}

/// Waits until `p` holds `needle` at least `n` times.
fn wait_count(p: &std::path::Path, needle: &str, n: usize) -> bool {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    while read(p).matches(needle).count() < n {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// The binary with its log in a file (not stderr): the port comes from the file.
struct FileLogged {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl FileLogged {
    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("kill");
    }

    fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for FileLogged {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_logging_to_file(args: &[&str], log: &std::path::Path) -> FileLogged {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ftpdlib"))
        .args(["-i", "127.0.0.1", "-p", "0", "-d"])
        .arg(&root)
        .args(["-u", USER, "-P", PASS, "-w"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ftpdlib");
    assert!(
        wait_file(log, ">>> starting FTP server on "),
        "{}",
        read(log)
    );
    let text = read(log);
    let addr = text
        .split(">>> starting FTP server on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|a| a.parse().ok())
        .expect("address in the log");
    FileLogged {
        child,
        addr,
        _dir: dir,
    }
}

/// A self-signed certificate for CN=`cn` written to `cert` and `key`.
fn make_cert(cn: &str, cert: &std::path::Path, key: &std::path::Path) {
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(st.status.success(), "openssl: {st:?}");
}

/// The subject of the certificate a new FTPS connection (AUTH TLS) is shown.
fn served_subject(addr: std::net::SocketAddr) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-starttls", "ftp", "-connect"])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

/// SIGHUP reloads the certificate and key from their files (a renewal): new connections
/// get the new one; a bad file is logged and the certificate in use stays. Under pre-fork
/// the supervisor passes SIGHUP on, so every worker reloads.
#[test]
fn sighup_reloads_the_tls_certificate() {
    if !tool("openssl") {
        return;
    }
    for ex in BIN_MODELS {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        make_cert("first.example", &cert, &key);
        let mut args = model_args(ex);
        args.extend([
            "--tls".into(),
            "--certfile".into(),
            cert.to_str().unwrap().into(),
        ]);
        args.extend(["--keyfile".into(), key.to_str().unwrap().into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let b = BinServer::start(&refs);
        assert!(
            served_subject(b.addr).contains("first.example"),
            "{}",
            b.log()
        );
        make_cert("second.example", &cert, &key);
        b.signal(nix::sys::signal::Signal::SIGHUP);
        let processes = match ex {
            Executor::PreFork { workers } => workers + 1,
            _ => 1,
        };
        let reloaded = "TLS certificate reloaded";
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while b.log().matches(reloaded).count() < processes {
            assert!(std::time::Instant::now() < deadline, "{ex:?}: {}", b.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for _ in 0..4 {
            // Several connections: under pre-fork they land on different workers.
            let subject = served_subject(b.addr);
            assert!(
                subject.contains("second.example"),
                "{ex:?}: {subject}\n{}",
                b.log()
            );
        }
        std::fs::write(&cert, b"not a certificate").unwrap();
        b.signal(nix::sys::signal::Signal::SIGHUP);
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while b.log().matches("keeping the current certificate").count() < processes {
            assert!(std::time::Instant::now() < deadline, "{ex:?}: {}", b.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            served_subject(b.addr).contains("second.example"),
            "{}",
            b.log()
        );
    }
}
