//! TFTP under loss: every pattern of the lossy relay (tests/tftp_common/relay.rs) × blksize
//! 512 / 1468 / 65464 × windowsize 1 / 8 / 16, for downloads (RRQ) and uploads (WRQ), must
//! complete with the right bytes within a generous time budget. Files are a few windows long
//! so that the whole matrix stays small; the cases of one pattern run in parallel.
//! `loss_table` (ignored; scripts/tftp-bench.sh runs it) prints the time and packets per
//! block of each case, against this server or any other (`TFTP_LOSS_TARGETS`).

mod tftp_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ftpdlib::tftp::options::{negotiate, OptionLimits};
use tftp_common::client::{download, upload, ClientCfg, Xfer};
use tftp_common::relay::{Loss, Relay, RelayStats};
use tftp_common::*;

/// blksize × windowsize asked for.
const SETTINGS: [(usize, u16); 9] = [
    (512, 1),
    (512, 8),
    (512, 16),
    (1468, 1),
    (1468, 8),
    (1468, 16),
    (65464, 1),
    (65464, 8),
    (65464, 16),
];

/// The longest any one case may take: a liveness limit, not a speed test (a loaded 2-core
/// machine must not fail it). A transfer that loses a block needs one round trip or one
/// adaptive timeout per loss, far less; one that stalls (a loss never recovered, a session
/// waiting for a client that is gone) runs into it. `loss_table` prints the real times.
const BUDGET: Duration = Duration::from_secs(60);

fn options(bs: usize, w: u16) -> Vec<(String, String)> {
    let mut o = Vec::new();
    if bs != 512 || w != 1 {
        o.push(("blksize".to_owned(), bs.to_string()));
    }
    if w > 1 {
        o.push(("windowsize".to_owned(), w.to_string()));
    }
    o
}

/// The windowsize the server grants (its own negotiation with the default limits).
fn granted(bs: usize, w: u16) -> u16 {
    negotiate(&options(bs, w), false, None, &OptionLimits::default())
        .map(|n| n.windowsize)
        .unwrap_or(1)
}

/// The loss patterns, shaped for a window of `w` blocks.
fn patterns(w: u16) -> Vec<Loss> {
    let w = w.max(1);
    let mut chosen = vec![2, w + 1, 2 * w + w / 2 + 1];
    chosen.dedup();
    vec![
        Loss::DropData(chosen),
        Loss::DropAck(if w == 1 { vec![2, 5] } else { vec![w, 3 * w] }),
        Loss::Duplicate(5),
        Loss::Reorder(6),
        Loss::DropWindowTail(vec![2, 4]),
        Loss::Random {
            seed: 0x5eed + u64::from(w),
            per_mille: 40,
            max: 6,
        },
        Loss::Burst {
            at: vec![6, 16],
            len: 3,
        },
    ]
}

/// One transfer's outcome.
struct Outcome {
    xfer: Xfer,
    relay: RelayStats,
}

/// Runs one case through a fresh relay; checks the bytes.
fn run_case(
    server: &TestServer,
    updir: &std::path::Path,
    write: bool,
    loss: Loss,
    bs: usize,
    w: u16,
    tag: &str,
) -> Result<Outcome, String> {
    let blocks = (4 * usize::from(granted(bs, w))).max(12);
    let data = content(blocks * bs + bs / 3, (bs as u64) << 8 | u64::from(w));
    let name = format!("{tag}-{bs}-{w}.bin");
    let relay = Relay::start(server.addr, loss);
    let opts = options(bs, w);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = ClientCfg::default();
    let xfer = if write {
        let x = upload(relay.addr, &name, &data, &opts, &cfg)?;
        // The file is linked to its name before the last ACK leaves the server.
        let got = std::fs::read(updir.join(&name)).map_err(|e| format!("uploaded file: {e}"))?;
        if checksum(&got) != checksum(&data) || got.len() != data.len() {
            return Err(format!(
                "upload corrupted: {} of {} bytes",
                got.len(),
                data.len()
            ));
        }
        x
    } else {
        server.file(&name, &data);
        let x = download(relay.addr, &name, &opts, &cfg)?;
        if checksum(&x.data) != checksum(&data) || x.data.len() != data.len() {
            return Err(format!(
                "download corrupted: {} of {} bytes",
                x.data.len(),
                data.len()
            ));
        }
        x
    };
    Ok(Outcome {
        xfer,
        relay: relay.stats(),
    })
}

fn start_server() -> (TestServer, tempfile::TempDir) {
    let up = tempfile::tempdir().expect("tempdir");
    let updir = up.path().to_owned();
    let s = start(move |c| {
        c.upload_dir = Some(updir);
        c.retries = 8;
        // Every case comes from 127.0.0.1, and uploads stay a moment after their last ACK.
        c.max_sessions_per_ip = 0;
    });
    (s, up)
}

/// Runs every setting of one pattern (the pattern shaped for each setting's window), four at
/// a time, and fails with every case that did not complete correctly within the budget.
fn matrix(write: bool, pick: usize) {
    let (server, up) = start_server();
    let server = Arc::new(server);
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let queue: Arc<Mutex<Vec<(usize, u16)>>> = Arc::new(Mutex::new(SETTINGS.to_vec()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (server, failures, queue) = (server.clone(), failures.clone(), queue.clone());
            let updir = up.path().to_owned();
            std::thread::spawn(move || loop {
                let Some((bs, w)) = queue.lock().expect("lock").pop() else {
                    return;
                };
                let loss = patterns(granted(bs, w)).swap_remove(pick);
                let what = format!(
                    "{} {} blksize {bs} windowsize {w}",
                    if write { "WRQ" } else { "RRQ" },
                    loss.name()
                );
                match run_case(&server, &updir, write, loss, bs, w, "m") {
                    Ok(o) if o.xfer.elapsed <= BUDGET => eprintln!(
                        "{what}: {:?}, {} DATA for {} blocks, relay {:?}",
                        o.xfer.elapsed, o.relay.data_in, o.xfer.blocks, o.relay
                    ),
                    Ok(o) => failures
                        .lock()
                        .expect("lock")
                        .push(format!("{what}: took {:?}", o.xfer.elapsed)),
                    Err(e) => failures.lock().expect("lock").push(format!("{what}: {e}")),
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rrq_drop_data_once() {
    matrix(false, 0);
}

#[test]
fn rrq_drop_ack_once() {
    matrix(false, 1);
}

#[test]
fn rrq_duplicates() {
    matrix(false, 2);
}

#[test]
fn rrq_reorder_within_window() {
    matrix(false, 3);
}

#[test]
fn rrq_drop_window_tail() {
    matrix(false, 4);
}

#[test]
fn rrq_random_loss() {
    matrix(false, 5);
}

#[test]
fn rrq_burst_loss() {
    matrix(false, 6);
}

#[test]
fn wrq_drop_data_once() {
    matrix(true, 0);
}

#[test]
fn wrq_drop_ack_once() {
    matrix(true, 1);
}

#[test]
fn wrq_duplicates() {
    matrix(true, 2);
}

#[test]
fn wrq_reorder_within_window() {
    matrix(true, 3);
}

#[test]
fn wrq_drop_window_tail() {
    matrix(true, 4);
}

#[test]
fn wrq_random_loss() {
    matrix(true, 5);
}

#[test]
fn wrq_burst_loss() {
    matrix(true, 6);
}

/// Runs atftp (`-g` or `-p`) through a relay applying `loss`; Ok(elapsed) when the bytes
/// arrived whole.
fn atftp_case(
    server: &TestServer,
    updir: &std::path::Path,
    write: bool,
    loss: Loss,
    bs: usize,
    w: u16,
) -> Result<(Duration, RelayStats), String> {
    let blocks = (4 * usize::from(granted(bs, w))).max(12);
    let data = content(blocks * bs + bs / 3, 77 + bs as u64);
    let name = format!(
        "atftp-{}-{bs}-{w}-{}.bin",
        write,
        loss.name().replace(' ', "_")
    );
    let relay = Relay::start(server.addr, loss);
    let work = tempfile::tempdir().expect("tempdir");
    let local = work.path().join("f");
    if write {
        std::fs::write(&local, &data).expect("write");
    } else {
        server.file(&name, &data);
    }
    let mut cmd = std::process::Command::new("atftp");
    cmd.arg(if write { "-p" } else { "-g" })
        .args(["-r", &name, "-l"])
        .arg(&local)
        .args(["--tftp-timeout", "1"])
        .args(["--option", &format!("blksize {bs}")]);
    if w > 1 {
        cmd.args(["--option", &format!("windowsize {w}")]);
    }
    let started = std::time::Instant::now();
    let out = cmd
        .arg(relay.addr.ip().to_string())
        .arg(relay.addr.port().to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let got = if write {
        std::fs::read(updir.join(&name)).map_err(|e| format!("uploaded file: {e}"))?
    } else {
        std::fs::read(&local).map_err(|e| format!("downloaded file: {e}"))?
    };
    if !out.status.success() || checksum(&got) != checksum(&data) || got.len() != data.len() {
        return Err(format!(
            "atftp failed ({}): {} of {} bytes: {}",
            out.status,
            got.len(),
            data.len(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((elapsed, relay.stats()))
}

/// Runs `cases` on `workers` threads; returns the failures.
fn parallel<T: Send + 'static>(
    cases: Vec<T>,
    workers: usize,
    run: impl Fn(T) -> Result<(), String> + Send + Sync + 'static,
) -> Vec<String> {
    let queue = Arc::new(Mutex::new(cases));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let run = Arc::new(run);
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (queue, failures, run) = (queue.clone(), failures.clone(), run.clone());
            std::thread::spawn(move || loop {
                let Some(case) = queue.lock().expect("lock").pop() else {
                    return;
                };
                if let Err(e) = run(case) {
                    failures.lock().expect("lock").push(e);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }
    let f = failures.lock().expect("lock").clone();
    f
}

#[test]
fn atftp_through_lossy_relay() {
    if !tool("atftp") {
        return;
    }
    let (server, up) = start_server();
    let server = Arc::new(server);
    let updir = up.path().to_owned();
    let mut cases = Vec::new();
    for write in [false, true] {
        for (bs, w) in [(512, 1), (1468, 8), (65464, 16)] {
            for pick in 0..patterns(1).len() {
                cases.push((write, bs, w, pick));
            }
        }
    }
    let failures = parallel(cases, 4, move |(write, bs, w, pick)| {
        let loss = patterns(granted(bs, w)).swap_remove(pick);
        let what = format!(
            "atftp {} {} blksize {bs} windowsize {w}",
            if write { "-p" } else { "-g" },
            loss.name()
        );
        match atftp_case(&server, &updir, write, loss, bs, w) {
            Ok((t, _)) if t <= BUDGET => Ok(()),
            Ok((t, _)) => Err(format!("{what}: took {t:?}")),
            Err(e) => Err(format!("{what}: {e}")),
        }
    });
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The loss table of the README (scripts/tftp-bench.sh runs it in release mode): every
/// pattern × setting, downloads, median time of three runs and DATA packets per block, for
/// this server and for each `name=host:port` of `TFTP_LOSS_TARGETS` serving
/// `TFTP_LOSS_ROOT` (where the files are written).
#[test]
#[ignore]
fn loss_table() {
    let (ours, _up) = start_server();
    let root = std::env::var_os("TFTP_LOSS_ROOT").map(std::path::PathBuf::from);
    let mut targets = vec![("ftpdlib".to_owned(), ours.addr)];
    for t in std::env::var("TFTP_LOSS_TARGETS")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((name, addr)) = t.split_once('=') {
            targets.push((name.to_owned(), addr.parse().expect("host:port")));
        }
    }
    println!(
        "| pattern | blksize/windowsize | {} |",
        targets
            .iter()
            .map(|t| t.0.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---:|".repeat(targets.len()));
    for pick in 0..patterns(1).len() {
        for (bs, w) in SETTINGS {
            let blocks = (4 * usize::from(granted(bs, w))).max(12);
            let data = content(blocks * bs + bs / 3, (bs as u64) << 8 | u64::from(w));
            let name = format!("loss-{bs}-{w}.bin");
            ours.file(&name, &data);
            if let Some(r) = &root {
                std::fs::write(r.join(&name), &data).expect("write to TFTP_LOSS_ROOT");
            }
            let mut cells = Vec::new();
            for (_, addr) in &targets {
                cells.push(table_cell(*addr, &name, &data, pick, bs, w));
            }
            println!(
                "| {} | {bs}/{w} | {} |",
                patterns(1)[pick].name(),
                cells.join(" | ")
            );
        }
    }
}

/// "median time, DATA per block" of three downloads through a fresh relay each.
fn table_cell(
    server: std::net::SocketAddr,
    name: &str,
    data: &[u8],
    pick: usize,
    bs: usize,
    w: u16,
) -> String {
    let opts = options(bs, w);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let relay = Relay::start(server, patterns(granted(bs, w)).swap_remove(pick));
        match download(relay.addr, name, &opts, &ClientCfg::default()) {
            Ok(x) if x.data == data => runs.push((
                x.elapsed,
                relay.stats().data_in as f64 / x.blocks.max(1) as f64,
            )),
            Ok(_) => return "corrupt".into(),
            Err(e) => return format!("failed ({})", e.chars().take(30).collect::<String>()),
        }
    }
    runs.sort_by_key(|r| r.0);
    let (t, ppb) = runs[1];
    format!("{:.0} ms, {ppb:.2}", t.as_secs_f64() * 1000.0)
}
