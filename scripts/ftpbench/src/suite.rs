//! The benchmark suites: what -b transfer, -b concurrence and --loopback-limit run, in
//! pyftpdlib scripts/ftpbench's order, and the figures they report. RFC 959 §4.1.3.

use std::io;
use std::time::Duration;

use crate::cli::{human_size, Selection};
use crate::report::Report;
use crate::single::open;
use crate::usage::{Tracker, Usage};
use crate::{loopback, mem, multi, single, Config};

const FILE: &str = "ftpbench-file";
const MULTI_FILE: &str = "ftpbench-multi";
const UP_PREFIX: &str = "ftpbench-up-";

/// 1,000 clients need ~2,000 descriptors here; raise the soft limit to the hard one.
pub fn raise_fd_limit(need: usize, rep: &Report) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        if (hard as usize) < need {
            rep.note(&format!(
                "fd limit {hard} is below the {need} needed; raise it with ulimit -n"
            ));
        }
    }
}

fn fig(rep: &mut Report, key: &str, label: &str, r: io::Result<f64>, unit: &'static str) -> bool {
    match r {
        Ok(v) => {
            rep.add(key, label, v, unit);
            false
        }
        Err(e) => {
            rep.note(&format!("{label}: {e}"));
            rep.add(key, label, f64::NAN, unit);
            true
        }
    }
}

/// Starts sampling the server's CPU and context switches (with `-k PID`).
fn track(cfg: &Config, interval: Duration) -> Option<Tracker> {
    cfg.pid
        .map(|pid| Tracker::start(pid, interval, cfg.cgroup.as_deref()))
}

/// Ends a [`track`] and reports the upload's cost: `{key}_cpu_s_per_gb` (the server's CPU
/// seconds per GB of 10^9 bytes received), `{key}_cs_per_mb` (its context switches per MB)
/// and `{key}_client_cpu_s_per_gb` (ftpbench's own CPU per GB).
fn report_usage(cfg: &Config, rep: &mut Report, t: Option<Tracker>, key: &str, bytes: f64) {
    let (Some(t), Some(pid)) = (t, cfg.pid) else {
        return;
    };
    let u = t.finish(pid).unwrap_or(Usage {
        cpu_s: f64::NAN,
        ctx_switches: 0,
        client_cpu_s: f64::NAN,
    });
    let ok = bytes > 0.0 && u.cpu_s.is_finite();
    let per_gb = if ok {
        u.cpu_s / (bytes / 1e9)
    } else {
        f64::NAN
    };
    let per_mb = if ok {
        u.ctx_switches as f64 / (bytes / 1e6)
    } else {
        f64::NAN
    };
    rep.add(
        &format!("{key}_cpu_s_per_gb"),
        "  server CPU (user+system) per GB uploaded",
        per_gb,
        "s/GB",
    );
    rep.add(
        &format!("{key}_cs_per_mb"),
        "  server context switches per MB uploaded",
        per_mb,
        "/MB",
    );
    let client = if bytes > 0.0 {
        u.client_cpu_s / (bytes / 1e9)
    } else {
        f64::NAN
    };
    rep.add(
        &format!("{key}_client_cpu_s_per_gb"),
        "  ftpbench's own CPU per GB uploaded",
        client,
        "s/GB",
    );
}

/// One upload of `cfg.transfer_size`; with `usage` (and `-k PID`) also its server cost
/// (keys `{usage}_cpu_s_per_gb`, `{usage}_cs_per_mb`).
fn bench_stor(cfg: &Config, rep: &mut Report, key: &str, label: &str, usage: Option<&str>) -> bool {
    let mut sent_bytes = 0u64;
    let mut tracker = None;
    let r = open(cfg).and_then(|mut f| {
        // Sampled every 20 ms: an upload's helper thread lives a fraction of a second.
        tracker = usage.and_then(|_| track(cfg, Duration::from_millis(20)));
        let (sent, t) = single::stor(cfg, &mut f, FILE, cfg.transfer_size)?;
        sent_bytes = sent;
        if sent < cfg.transfer_size {
            eprintln!("ftpbench: STOR stopped at the phase limit after {sent} bytes");
        }
        Ok((f, single::mbps(sent, t)))
    });
    // The cost is read before QUIT, while the session (process or thread) still exists.
    if let Some(k) = usage {
        let bytes = if r.is_ok() { sent_bytes as f64 } else { 0.0 };
        report_usage(cfg, rep, tracker, k, bytes);
    }
    let r = r.map(|(mut f, v)| {
        let _ = f.cmd("QUIT");
        v
    });
    fig(rep, key, label, r, "MB/s")
}

fn bench_retr(cfg: &Config, rep: &mut Report, key: &str, label: &str) -> bool {
    let r = open(cfg).and_then(|mut f| {
        // SIZE is refused in ASCII mode by some servers (pyftpdlib, ftpdlib).
        f.void_cmd("TYPE I")?;
        let size = match f.void_cmd(&format!("SIZE {FILE}")) {
            Ok(r) => r.text.trim().parse().unwrap_or(cfg.transfer_size),
            // Missing (e.g. `-b retr` alone): upload it first, untimed.
            Err(_) => single::stor(cfg, &mut f, FILE, cfg.transfer_size)?.0,
        };
        let v = single::retr_rate(cfg, &mut f, FILE, size)?;
        let _ = f.cmd("QUIT");
        Ok(v)
    });
    fig(rep, key, label, r, "MB/s")
}

/// RETR against the loopback sendfile(2) limit, in alternating windows (three of each,
/// `cfg.duration` / 3 long, same file size) so a drifting machine load hits both alike; the
/// RETR rate as a percentage of the sendfile rate.
fn retr_vs_sendfile(cfg: &Config) -> io::Result<f64> {
    let mut f = open(cfg)?;
    f.void_cmd("TYPE I")?;
    let size: u64 = match f.void_cmd(&format!("SIZE {FILE}")) {
        Ok(r) => r.text.trim().parse().unwrap_or(cfg.transfer_size),
        Err(_) => single::stor(cfg, &mut f, FILE, cfg.transfer_size)?.0,
    };
    let cached = loopback::CachedFile::new(size)?;
    let slice = cfg.duration / 3;
    let (mut rb, mut rt, mut sb, mut st) = (0u64, 0f64, 0u64, 0f64);
    for _ in 0..3 {
        let (b, t) = single::retr_run(cfg, &mut f, FILE, size, slice)?;
        rb += b;
        rt += t.as_secs_f64();
        let (b, t) = loopback::sendfile_run(cfg, &cached, slice)?;
        sb += b;
        st += t.as_secs_f64();
    }
    let _ = f.cmd("QUIT");
    let retr = rb as f64 / rt.max(1e-9);
    let limit = sb as f64 / st.max(1e-9);
    eprintln!(
        "ftpbench: interleaved: RETR {:.1} MB/s, loopback sendfile {:.1} MB/s",
        retr / 1e6,
        limit / 1e6
    );
    Ok(100.0 * retr / limit.max(1e-9))
}

/// The one-client workloads `sel` asks for; true when any failed.
pub fn bench_transfer(cfg: &Config, rep: &mut Report, sel: &Selection) -> bool {
    let kb = cfg.buf >> 10;
    let mut failed = false;
    if sel.stor {
        failed |= bench_stor_fig(cfg, rep, kb);
    }
    if sel.retr {
        failed |= bench_retr(
            cfg,
            rep,
            "retr_mbps",
            &format!("RETR 1 client, {kb} KiB reads"),
        );
        let r = retr_vs_sendfile(cfg);
        failed |= fig(
            rep,
            "retr_sendfile_pct",
            "RETR 1 client ÷ loopback sendfile, interleaved",
            r,
            "%",
        );
    }
    if sel.list {
        failed |= bench_list(cfg, rep);
    }
    if sel.logins {
        failed |= fig(
            rep,
            "logins_per_s",
            "sequential logins (connect, USER, PASS, QUIT)",
            single::logins_per_sec(cfg),
            "/s",
        );
    }
    failed
}

fn bench_stor_fig(cfg: &Config, rep: &mut Report, kb: usize) -> bool {
    bench_stor(
        cfg,
        rep,
        "stor_mbps",
        &format!(
            "STOR 1 client, {kb} KiB writes ({})",
            human_size(cfg.transfer_size)
        ),
        Some("stor"),
    )
}

/// `-b ftps`: the one-client and login workloads over explicit FTPS (`AUTH TLS`, `PBSZ 0`,
/// `PROT P`, data connections resuming the control session): STOR, RETR, sequential logins,
/// and `--tls-clients` concurrent logins; true when any failed. Keys start with `tls_`.
pub fn bench_ftps(cfg: &Config, rep: &mut Report) -> bool {
    let cfg = &Config {
        tls: true,
        ..cfg.clone()
    };
    let kb = cfg.buf >> 10;
    let size = human_size(cfg.transfer_size);
    let mut failed = bench_stor(
        cfg,
        rep,
        "tls_stor_mbps",
        &format!("FTPS STOR 1 client, {kb} KiB writes ({size})"),
        Some("tls_stor"),
    );
    failed |= bench_retr(
        cfg,
        rep,
        "tls_retr_mbps",
        &format!("FTPS RETR 1 client, {kb} KiB reads"),
    );
    failed |= fig(
        rep,
        "tls_logins_per_s",
        "FTPS sequential logins (AUTH TLS, USER, PASS, PBSZ, PROT, QUIT)",
        single::logins_per_sec(cfg),
        "/s",
    );
    let n = cfg.tls_clients;
    let (clients, o) = multi::connect_n(cfg, n);
    failed |= note_outcome(rep, "FTPS connect", &o);
    let label = format!("{n} clients FTPS connect+login at once");
    rep.add("tls_connect_login_s", &label, secs(&o), "s");
    let o = multi::quit_all(clients, cfg.phase_limit);
    failed |= note_outcome(rep, "FTPS QUIT", &o);
    failed
}

fn bench_list(cfg: &Config, rep: &mut Report) -> bool {
    let mut failed = false;
    let n = cfg.list_files;
    let r = open(cfg).and_then(|mut f| {
        single::ensure_list_dir(cfg, &mut f)?;
        Ok(f)
    });
    match r {
        Ok(mut f) => {
            for (key, cmd) in [("list_ms", "LIST"), ("mlsd_ms", "MLSD")] {
                let label = format!("{cmd} of a {n}-file directory");
                let r = single::listing(cfg, &mut f, cmd).map(|o| {
                    o.map_or(f64::NAN, |(ms, lines)| {
                        if lines < n {
                            eprintln!("ftpbench: {cmd} returned {lines} lines, expected ≥ {n}");
                        }
                        ms
                    })
                });
                if matches!(r, Ok(v) if v.is_nan()) {
                    rep.note(&format!("{cmd} not supported by the server"));
                }
                failed |= fig(rep, key, &label, r, "ms");
            }
            let _ = f.cmd("QUIT");
        }
        Err(e) => {
            rep.note(&format!("list directory: {e}"));
            failed = true;
        }
    }
    failed
}

fn note_outcome(rep: &Report, what: &str, o: &multi::Outcome) -> bool {
    if o.failed > 0 {
        rep.note(&format!(
            "{what}: {} clients failed, first: {}",
            o.failed,
            o.first_error.as_deref().unwrap_or("?")
        ));
        return true;
    }
    false
}

/// The many-client workloads (connect, memory, idle transfers, concurrent RETR/STOR, QUIT);
/// true when any failed.
pub fn bench_concurrence(cfg: &Config, rep: &mut Report) -> bool {
    let mut failed = false;
    let n = cfg.clients;
    // The file every client will download.
    let prep = open(cfg).and_then(|mut f| {
        single::stor(cfg, &mut f, MULTI_FILE, cfg.size)?;
        if !matches!(f.cmd(&format!("SIZE {FILE}")), Ok(r) if r.code == 213) {
            single::stor(cfg, &mut f, FILE, cfg.transfer_size)?;
        }
        f.cmd("QUIT").map(drop)
    });
    if let Err(e) = prep {
        rep.note(&format!("preparing files: {e}"));
        return true;
    }
    multi::settle();
    // The baseline is the server idle, right before the clients come.
    let base = cfg.pid.and_then(mem::tree_pss_kib);
    if cfg.pid.is_some() && base.is_none() {
        rep.note("cannot read the server's /proc/PID/smaps_rollup: no memory figures");
    }
    let (mut clients, o) = multi::connect_all(cfg);
    failed |= note_outcome(rep, "connect", &o);
    let got = clients.len();
    rep.add(
        "connect_login_s",
        &format!("{n} clients connect+login"),
        secs(&o),
        "s",
    );
    // Figures for fewer clients than asked for would not compare: they become n/a.
    let short = got < n;
    if short {
        rep.note(&format!(
            "only {got} of {n} clients logged in: the concurrence figures below are n/a"
        ));
    }
    let keep = |v: f64| if short { f64::NAN } else { v };
    multi::settle();
    if let (Some(pid), Some((b, _))) = (cfg.pid, base) {
        if let Some((loaded, procs)) = mem::tree_pss_kib(pid) {
            let (b, loaded) = (b as f64, loaded as f64);
            rep.add("mem_base_kib", "server PSS before the clients", b, "KiB");
            let label = format!("server PSS with {n} idle clients ({procs} processes)");
            rep.add("mem_loaded_kib", &label, keep(loaded), "KiB");
            let per = keep((loaded - b) / got.max(1) as f64);
            rep.add(
                "mem_per_client_kib",
                "PSS per idle logged-in client",
                per,
                "KiB",
            );
        }
    }
    let label = format!("STOR 1 file with {n} idle clients");
    failed |= bench_stor(cfg, rep, "stor_idle_mbps", &label, None);
    let label = format!("RETR 1 file with {n} idle clients");
    failed |= bench_retr(cfg, rep, "retr_idle_mbps", &label);
    failed |= many_transfers(cfg, rep, &mut clients, short, (true, true));
    if failed {
        // Transfers cut by the time limit leave replies in flight: QUIT would read them and
        // wait on a stalled server for a socket timeout per client, measuring nothing.
        rep.note("QUIT not measured: an earlier phase failed");
        drop(clients);
        rep.add("quit_s", &format!("{n} clients QUIT"), f64::NAN, "s");
        return failed;
    }
    let o = multi::quit_all(clients, cfg.phase_limit);
    failed |= note_outcome(rep, "QUIT", &o);
    rep.add("quit_s", &format!("{n} clients QUIT"), keep(secs(&o)), "s");
    failed
}

/// `-b many-retr` / `-b many-stor`: only the concurrent RETR and/or STOR of the
/// concurrence phase (after its connect+login), for runs that measure those alone.
pub fn bench_many(cfg: &Config, rep: &mut Report, retr: bool, stor: bool) -> bool {
    if let Err(e) = open(cfg).and_then(|mut f| {
        single::stor(cfg, &mut f, MULTI_FILE, cfg.size)?;
        f.cmd("QUIT").map(drop)
    }) {
        rep.note(&format!("preparing files: {e}"));
        return true;
    }
    multi::settle();
    let n = cfg.clients;
    let (mut clients, o) = multi::connect_all(cfg);
    let mut failed = note_outcome(rep, "connect", &o);
    rep.add(
        "connect_login_s",
        &format!("{n} clients connect+login"),
        secs(&o),
        "s",
    );
    let short = clients.len() < n;
    multi::settle();
    failed |= many_transfers(cfg, rep, &mut clients, short, (retr, stor));
    drop(clients);
    failed
}

/// The concurrent RETR and STOR of every client (`which`: RETR, STOR), with the server's
/// cost of the uploads; true when any failed.
fn many_transfers(
    cfg: &Config,
    rep: &mut Report,
    clients: &mut Vec<crate::client::Ftp>,
    short: bool,
    which: (bool, bool),
) -> bool {
    let n = cfg.clients;
    let keep = |v: f64| if short { f64::NAN } else { v };
    let mut failed = false;
    let dropped = multi::void_all(clients, "TYPE I", cfg.phase_limit);
    if dropped > 0 {
        rep.note(&format!("TYPE I failed on {dropped} clients"));
        failed = true;
    }
    let sz = human_size(cfg.size);
    if which.0 {
        let o = multi::transfer_all(cfg, clients, &multi::Job::Retr(MULTI_FILE), cfg.size);
        failed |= note_outcome(rep, "concurrent RETR", &o);
        let label = format!("{n} clients RETR a {sz} file at once");
        rep.add("multi_retr_s", &label, keep(secs(&o)), "s");
        multi::settle();
    }
    if which.1 {
        // Sampled every 500 ms: the sessions' threads and processes live through the phase.
        let tracker = track(cfg, Duration::from_millis(500));
        let o = multi::transfer_all(cfg, clients, &multi::Job::Stor(UP_PREFIX), cfg.size);
        failed |= note_outcome(rep, "concurrent STOR", &o);
        let label = format!("{n} clients STOR a {sz} file at once");
        rep.add("multi_stor_s", &label, keep(secs(&o)), "s");
        let bytes = if o.failed == 0 && !short {
            (cfg.size * n as u64) as f64
        } else {
            0.0
        };
        report_usage(cfg, rep, tracker, "multi_stor", bytes);
        multi::settle();
    }
    failed
}

/// The phase's wall time in seconds, NaN when any client failed.
fn secs(o: &multi::Outcome) -> f64 {
    if o.failed == 0 {
        o.elapsed.as_secs_f64()
    } else {
        f64::NAN
    }
}

/// Removes the files ftpbench created (not the listing directory, which is reused).
pub fn cleanup(cfg: &Config, rep: &Report) {
    let r = open(cfg).and_then(|mut f| {
        for name in [FILE, MULTI_FILE] {
            let _ = f.cmd(&format!("DELE {name}"));
        }
        for i in 0..cfg.clients {
            let r = f.cmd(&format!("DELE {UP_PREFIX}{i}"))?;
            if r.class() != 2 && i == 0 {
                break;
            }
        }
        f.cmd("QUIT").map(drop)
    });
    if let Err(e) = r {
        rep.note(&format!("cleanup: {e}"));
    }
}

/// `--loopback-limit`: sendfile, write and connect rates with no FTP server.
pub fn loopback_limit(cfg: &Config, rep: &mut Report) {
    let kb = cfg.buf >> 10;
    fig(
        rep,
        "loopback_sendfile_mbps",
        &format!("loopback sendfile(2) to a socket, {kb} KiB reads"),
        loopback::sendfile_rate(cfg),
        "MB/s",
    );
    fig(
        rep,
        "loopback_write_mbps",
        &format!("loopback write(2) of {kb} KiB chunks"),
        loopback::write_rate(cfg),
        "MB/s",
    );
    fig(
        rep,
        "loopback_connect_per_s",
        "loopback TCP connect+close",
        loopback::connect_rate(cfg),
        "/s",
    );
}
