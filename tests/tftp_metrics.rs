//! `tftpd --metrics ADDR:PORT`: the TFTP server's counters as Prometheus text, scraped with
//! curl from the built binary after real transfers (sessions on threads and in forked
//! children) and checked by Prometheus's own `promtool check metrics`.

mod tftp_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tftp_common::*;

/// `tftpd` serving a fresh directory on 127.0.0.1 with its metrics endpoint; killed on drop.
struct Tftpd {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `marker` in a log line, up to the first of `ends`.
fn addr_after(line: &str, marker: &str, ends: &[char]) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    rest.split(ends).next()?.parse().ok()
}

fn start(extra: &[&str]) -> Tftpd {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8 path").to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", &root, "--port", "0", "--address", "127.0.0.1"])
        .args(["--metrics", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn tftpd");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut metrics = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = addr_after(&line, ">>> metrics on http://", &['/']) {
                metrics = Some(a);
            }
            if let Some(a) = addr_after(&line, " on ", &[' ']).filter(|_| line.contains("serving"))
            {
                let _ = tx.send((a, metrics));
            }
            sink.lock().expect("log").push_str(&(line + "\n"));
        }
    });
    let (addr, metrics) = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("tftpd did not start: {}", log.lock().expect("log"))
        });
    Tftpd {
        child,
        addr,
        metrics: metrics.expect("the metrics line comes before the serving line"),
        log,
        dir,
    }
}

/// `GET path` with curl: (HTTP status, body).
fn curl(addr: SocketAddr, path: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.to_string(), body.to_string())
}

/// The samples of an exposition, by name with labels.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get_or(m: &HashMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(-1.0)
}

/// `promtool check metrics` on `body`: silent success.
fn promtool_accepts(body: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {out:?}\n{body}"
    );
}

/// Two downloads and a request for a missing file, then the counters: the same numbers
/// whether the sessions ran on threads or in children, valid for promtool, and only
/// `GET /metrics` served.
fn counts_real_transfers(extra: &[&str]) {
    if !tool("curl") || !tool("promtool") {
        return;
    }
    let t = start(extra);
    let data = content(10_000, 7);
    std::fs::write(t.dir.path().join("f"), &data).expect("write");
    let (code, body) = curl(t.metrics, "/metrics");
    assert_eq!(code, "200");
    assert_eq!(get_or(&samples(&body), "ftpdlib_tftp_sessions_total"), 0.0);
    for _ in 0..2 {
        assert_eq!(
            checksum(&get(t.addr, "f", "octet", &[]).data),
            checksum(&data)
        );
    }
    assert_eq!(
        get(t.addr, "nope", "octet", &[]).error.map(|e| e.0),
        Some(1)
    );
    let want = [
        ("ftpdlib_tftp_sessions_total", 3.0),
        ("ftpdlib_tftp_session_ends_total{result=\"finished\"}", 2.0),
        ("ftpdlib_tftp_session_ends_total{result=\"failed\"}", 1.0),
        ("ftpdlib_tftp_sent_bytes_total", 20_000.0),
        ("ftpdlib_tftp_received_bytes_total", 0.0),
        ("ftpdlib_tftp_errors_sent_total{code=\"1\"}", 1.0),
        ("ftpdlib_tftp_sessions_active", 0.0),
    ];
    // Sessions count their end after their last packet: scrape until they are in.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (body, m) = loop {
        let (_, body) = curl(t.metrics, "/metrics");
        let m = samples(&body);
        if want.iter().all(|(k, v)| get_or(&m, k) == *v) || Instant::now() > deadline {
            break (body, m);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (k, v) in want {
        assert_eq!(get_or(&m, k), v, "{k} in {body}");
    }
    // 20 DATA packets per download (19 of 512 bytes and a short one), and the ERROR.
    assert!(get_or(&m, "ftpdlib_tftp_packets_total{direction=\"sent\"}") >= 41.0);
    promtool_accepts(&body);
    assert_eq!(curl(t.metrics, "/").0, "404");
    assert!(
        t.log
            .lock()
            .expect("log")
            .contains(">>> metrics on http://"),
        "the endpoint's address is logged"
    );
}

#[test]
fn thread_mode_metrics_count_real_transfers() {
    counts_real_transfers(&[]);
}

#[test]
fn fork_mode_metrics_count_real_transfers() {
    counts_real_transfers(&["--fork"]);
}

/// A bad `--metrics` value is a command-line error (exit 2), never a silent default.
#[test]
fn bad_metrics_address_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", "/tmp", "--metrics", "nowhere"])
        .stderr(Stdio::piped())
        .output()
        .expect("run tftpd");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics"));
}
