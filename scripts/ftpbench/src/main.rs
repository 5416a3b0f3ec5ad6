//! ftpbench: FTP server benchmark client, modelled on pyftpdlib's scripts/ftpbench, usable
//! against any FTP server on loopback. RFC 959 (FTP), RFC 2428 (EPSV), RFC 3659 (MLSD).
//!
//! ```text
//! ftpbench -u USER -p PASS -H 127.0.0.1 -P 2121 -b all -n 1000 -s 4M -k SERVER_PID
//! ftpbench --loopback-limit
//! ```

mod client;
mod loopback;
mod mem;
mod multi;
mod report;
mod single;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use client::Ftp;
use report::{Format, Report};

/// Everything the workloads need, from the command line.
pub struct Config {
    /// Server control address (loopback only).
    pub addr: SocketAddr,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Per-socket connect/read/write timeout.
    pub timeout: Duration,
    /// Use PASV instead of EPSV.
    pub force_pasv: bool,
    /// Read/write size for transfers (256 KiB by default).
    pub buf: usize,
    /// Size of the one-client STOR/RETR file.
    pub transfer_size: u64,
    /// How long rate measurements (RETR loop, logins/s, loopback) run.
    pub duration: Duration,
    /// Number of clients of the concurrence benchmark.
    pub clients: usize,
    /// File size each of those clients transfers.
    pub size: u64,
    /// At most this many clients connecting at once.
    pub conn_threads: usize,
    /// Directory (relative to the login directory) holding `list_files` files.
    pub list_dir: String,
    /// Expected number of files in `list_dir`.
    pub list_files: usize,
    /// LIST/MLSD repetitions (median reported).
    pub list_reps: usize,
    /// Upper bound for any one phase.
    pub phase_limit: Duration,
    /// Bytes per sendfile(2) call in `--loopback-limit`.
    pub sendfile_chunk: usize,
    /// Server pid for the PSS figures.
    pub pid: Option<u32>,
}

const FILE: &str = "ftpbench-file";
const MULTI_FILE: &str = "ftpbench-multi";
const UP_PREFIX: &str = "ftpbench-up-";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ftpbench: {e}");
            ExitCode::from(2)
        }
    }
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "H",
        "host",
        "server host, loopback only (default 127.0.0.1)",
        "HOST",
    );
    o.optopt("P", "port", "server port (default 21)", "PORT");
    o.optopt("u", "user", "user name (default anonymous)", "USER");
    o.optopt("p", "pass", "password (default ftpbench@)", "PASS");
    o.optopt(
        "b",
        "benchmark",
        "transfer | concurrence | all, or a comma list of stor,retr,list,logins (default transfer)",
        "WHAT",
    );
    o.optopt(
        "n",
        "clients",
        "clients of the concurrence benchmark (default 200)",
        "N",
    );
    o.optopt(
        "s",
        "filesize",
        "file size per client in concurrence (default 4M)",
        "SIZE",
    );
    o.optopt(
        "k",
        "pid",
        "server pid: report PSS of it and its descendants",
        "PID",
    );
    o.optopt(
        "t",
        "timeout",
        "socket timeout in seconds (default 30)",
        "SECS",
    );
    o.optopt(
        "",
        "transfer-size",
        "one-client STOR/RETR file size (default 512M)",
        "SIZE",
    );
    o.optopt(
        "",
        "duration",
        "seconds per rate measurement (default 2)",
        "SECS",
    );
    o.optopt(
        "",
        "buffer",
        "transfer read/write size (default 256K)",
        "SIZE",
    );
    o.optopt(
        "",
        "list-dir",
        "directory for LIST/MLSD (default ftpbench-list)",
        "DIR",
    );
    o.optopt(
        "",
        "list-files",
        "files expected in it (default 10000)",
        "N",
    );
    o.optopt(
        "",
        "list-reps",
        "LIST/MLSD repetitions, median kept (default 3)",
        "N",
    );
    o.optopt(
        "",
        "conn-threads",
        "clients connecting at once (default 16)",
        "N",
    );
    o.optopt(
        "",
        "phase-limit",
        "seconds any one phase may take (default 120)",
        "SECS",
    );
    o.optopt(
        "",
        "sendfile-chunk",
        "bytes per sendfile(2) call in --loopback-limit (default 1G)",
        "SIZE",
    );
    o.optflag("", "pasv", "use PASV instead of EPSV");
    o.optflag(
        "",
        "csv",
        "human lines on stderr, key,value,unit,label CSV on stdout",
    );
    o.optflag("", "json", "human lines on stderr, a JSON array on stdout");
    o.optflag(
        "",
        "loopback-limit",
        "no server: measure loopback sendfile, write and connect rates",
    );
    o.optflag("h", "help", "this help");
    o
}

fn usage(o: &getopts::Options) -> String {
    o.usage(
        "Usage: ftpbench -u USER -p PASS [-H HOST] [-P PORT] [-b transfer|concurrence|all] \
         [-n CLIENTS] [-s SIZE] [-k PID] [--csv|--json]\n       ftpbench --loopback-limit",
    )
}

/// "4M", "256K", "1G", "1000" → bytes (binary multiples, like pyftpdlib's human2bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('B') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("bad size {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

fn opt_num<T: std::str::FromStr>(
    m: &getopts::Matches,
    name: &str,
    default: T,
) -> Result<T, String> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("bad value for --{name}: {v:?}")),
    }
}

fn opt_size(m: &getopts::Matches, name: &str, default: u64) -> Result<u64, String> {
    m.opt_str(name).map_or(Ok(default), |v| parse_size(&v))
}

fn human_size(n: u64) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 {
        format!("{}G", n >> 30)
    } else if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}K", n >> 10)
    } else {
        format!("{n}B")
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let o = options();
    let m = o
        .parse(&args[1..])
        .map_err(|e| format!("{e}\n{}", usage(&o)))?;
    if m.opt_present("h") {
        println!("{}", usage(&o));
        return Ok(ExitCode::SUCCESS);
    }
    let host = m.opt_str("H").unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = opt_num(&m, "P", 21)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{host} is not a loopback address; ftpbench talks to loopback only"
        ));
    }
    let buf = opt_size(&m, "buffer", 256 << 10)?;
    let cfg = Config {
        addr,
        user: m.opt_str("u").unwrap_or_else(|| "anonymous".into()),
        pass: m.opt_str("p").unwrap_or_else(|| "ftpbench@".into()),
        timeout: Duration::from_secs_f64(opt_num(&m, "t", 30.0)?),
        force_pasv: m.opt_present("pasv"),
        buf: usize::try_from(buf.clamp(512, 64 << 20)).unwrap_or(256 << 10),
        transfer_size: opt_size(&m, "transfer-size", 512 << 20)?,
        duration: Duration::from_secs_f64(opt_num(&m, "duration", 2.0)?),
        clients: opt_num(&m, "n", 200)?,
        size: opt_size(&m, "s", 4 << 20)?,
        conn_threads: opt_num(&m, "conn-threads", 16)?,
        list_dir: m
            .opt_str("list-dir")
            .unwrap_or_else(|| "ftpbench-list".into()),
        list_files: opt_num(&m, "list-files", 10_000)?,
        list_reps: opt_num(&m, "list-reps", 3)?,
        phase_limit: Duration::from_secs_f64(opt_num(&m, "phase-limit", 120.0)?),
        sendfile_chunk: usize::try_from(opt_size(&m, "sendfile-chunk", 1 << 30)?.max(4096))
            .unwrap_or(1 << 30),
        pid: m
            .opt_str("k")
            .map(|v| v.parse().map_err(|_| format!("bad pid {v:?}")))
            .transpose()?,
    };
    let format = if m.opt_present("json") {
        Format::Json
    } else if m.opt_present("csv") {
        Format::Csv
    } else {
        Format::Human
    };
    let mut rep = Report::new(format);
    if m.opt_present("loopback-limit") {
        loopback_limit(&cfg, &mut rep);
        rep.finish();
        return Ok(ExitCode::SUCCESS);
    }
    let what = m.opt_str("b").unwrap_or_else(|| "transfer".into());
    let sel = Selection::parse(&what).map_err(|e| format!("{e}\n{}", usage(&o)))?;
    raise_fd_limit(cfg.clients * 2 + 64, &rep);
    // Fail early and clearly when the server is not there or refuses the login.
    Ftp::open(cfg.addr, cfg.timeout, cfg.force_pasv, &cfg.user, &cfg.pass)
        .and_then(|mut f| f.void_cmd("QUIT").map(drop))
        .map_err(|e| format!("cannot log in to {}: {e}", cfg.addr))?;
    let mut failed = false;
    failed |= bench_transfer(&cfg, &mut rep, &sel);
    if sel.concurrence {
        failed |= bench_concurrence(&cfg, &mut rep);
    }
    cleanup(&cfg, &rep);
    rep.finish();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// 1,000 clients need ~2,000 descriptors here; raise the soft limit to the hard one.
fn raise_fd_limit(need: usize, rep: &Report) {
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

fn open(cfg: &Config) -> io::Result<Ftp> {
    Ftp::open(cfg.addr, cfg.timeout, cfg.force_pasv, &cfg.user, &cfg.pass)
}

fn bench_stor(cfg: &Config, rep: &mut Report, key: &str, label: &str) -> bool {
    let r = open(cfg).and_then(|mut f| {
        let (sent, t) = single::stor(cfg, &mut f, FILE, cfg.transfer_size)?;
        let _ = f.cmd("QUIT");
        if sent < cfg.transfer_size {
            eprintln!("ftpbench: STOR stopped at the phase limit after {sent} bytes");
        }
        Ok(single::mbps(sent, t))
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

/// Which workloads `-b` asked for: `transfer` (stor, retr, list, logins), `concurrence`, `all`,
/// or a comma-separated mix of those and the single names.
struct Selection {
    stor: bool,
    retr: bool,
    list: bool,
    logins: bool,
    concurrence: bool,
}

impl Selection {
    fn parse(s: &str) -> Result<Selection, String> {
        let mut sel = Selection {
            stor: false,
            retr: false,
            list: false,
            logins: false,
            concurrence: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "transfer" | "all" => {
                    (sel.stor, sel.retr, sel.list, sel.logins) = (true, true, true, true);
                    sel.concurrence |= part == "all";
                }
                "concurrence" => sel.concurrence = true,
                // pyftpdlib's ftpbench calls them upload and download.
                "stor" | "upload" => sel.stor = true,
                "retr" | "download" => sel.retr = true,
                "list" => sel.list = true,
                "logins" => sel.logins = true,
                other => return Err(format!("unknown benchmark {other:?}")),
            }
        }
        Ok(sel)
    }
}

fn bench_transfer(cfg: &Config, rep: &mut Report, sel: &Selection) -> bool {
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
    )
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

fn bench_concurrence(cfg: &Config, rep: &mut Report) -> bool {
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
    failed |= bench_stor(cfg, rep, "stor_idle_mbps", &label);
    let label = format!("RETR 1 file with {n} idle clients");
    failed |= bench_retr(cfg, rep, "retr_idle_mbps", &label);
    let dropped = multi::void_all(&mut clients, "TYPE I", cfg.phase_limit);
    if dropped > 0 {
        rep.note(&format!("TYPE I failed on {dropped} clients"));
        failed = true;
    }
    let sz = human_size(cfg.size);
    let o = multi::transfer_all(cfg, &mut clients, &multi::Job::Retr(MULTI_FILE), cfg.size);
    failed |= note_outcome(rep, "concurrent RETR", &o);
    let label = format!("{n} clients RETR a {sz} file at once");
    rep.add("multi_retr_s", &label, keep(secs(&o)), "s");
    multi::settle();
    let o = multi::transfer_all(cfg, &mut clients, &multi::Job::Stor(UP_PREFIX), cfg.size);
    failed |= note_outcome(rep, "concurrent STOR", &o);
    let label = format!("{n} clients STOR a {sz} file at once");
    rep.add("multi_stor_s", &label, keep(secs(&o)), "s");
    multi::settle();
    let o = multi::quit_all(clients, cfg.phase_limit);
    failed |= note_outcome(rep, "QUIT", &o);
    rep.add("quit_s", &format!("{n} clients QUIT"), keep(secs(&o)), "s");
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
fn cleanup(cfg: &Config, rep: &Report) {
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

fn loopback_limit(cfg: &Config, rep: &mut Report) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("256k").unwrap(), 256 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("x").is_err());
        assert_eq!(human_size(4 << 20), "4M");
    }
}
