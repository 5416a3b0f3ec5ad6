//! ftpbench: FTP server benchmark client, modelled on pyftpdlib's scripts/ftpbench, usable
//! against any FTP server on loopback. RFC 959 (FTP), RFC 2428 (EPSV), RFC 3659 (MLSD).
//!
//! ```text
//! ftpbench -u USER -p PASS -H 127.0.0.1 -P 2121 -b all -n 1000 -s 4M -k SERVER_PID
//! ftpbench -u USER -p PASS -P 2121 -b ftps --tls-clients 100 --key-suffix _ecdsa -k PID
//! ftpbench -u USER -p PASS -P 2121 -b sessions --sessions 1000,5000,10000 -k SERVER_PID
//! ftpbench --loopback-limit
//! ftpbench -u USER -p PASS -P 2121 -n 1000 -k SERVER_PID --soak 600
//! ```

mod cli;
mod client;
mod loopback;
mod mem;
mod multi;
mod probe;
mod report;
mod sessions;
mod single;
mod soak;
mod suite;
mod tls;
mod usage;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use cli::{opt_num, opt_size, options, parse_list, usage, Selection};
use client::Ftp;
use report::{Format, Report};
use suite::{
    bench_concurrence, bench_ftps, bench_many, bench_transfer, cleanup, loopback_limit,
    raise_fd_limit,
};

/// Everything the workloads need, from the command line.
#[derive(Clone)]
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
    /// Server pid for the PSS, CPU and context-switch figures.
    pub pid: Option<u32>,
    /// A cgroup holding the server alone: its CPU is read there (exact, exited processes
    /// included) instead of summed over /proc.
    pub cgroup: Option<std::path::PathBuf>,
    /// Explicit FTPS (`AUTH TLS`, `PBSZ 0`, `PROT P`) for the connections opened.
    pub tls: bool,
    /// Clients of the concurrent FTPS logins (`-b ftps`).
    pub tls_clients: usize,
    /// The steps of `-b sessions`: logged-in sessions held at once.
    pub sessions: Vec<usize>,
    /// Sessions listing at once in `-b sessions`.
    pub list_batch: usize,
}

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
        cgroup: m.opt_str("cgroup").map(std::path::PathBuf::from),
        tls: m.opt_present("tls"),
        tls_clients: opt_num(&m, "tls-clients", 100)?,
        sessions: parse_list(
            m.opt_str("sessions")
                .as_deref()
                .unwrap_or("1000,5000,10000"),
        )?,
        list_batch: opt_num(&m, "list-batch", 1000)?,
    };
    let format = if m.opt_present("json") {
        Format::Json
    } else if m.opt_present("csv") {
        Format::Csv
    } else {
        Format::Human
    };
    let mut rep = Report::new(format, m.opt_str("key-suffix").unwrap_or_default());
    if m.opt_present("loopback-limit") {
        loopback_limit(&cfg, &mut rep);
        rep.finish();
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(secs) = m.opt_str("soak") {
        let secs: f64 = secs
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("bad value for --soak: {secs:?}"))?;
        raise_fd_limit(cfg.clients * 3 + 64, &rep);
        let failed = soak::soak(&cfg, secs);
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let what = m.opt_str("b").unwrap_or_else(|| "transfer".into());
    let sel = Selection::parse(&what).map_err(|e| format!("{e}\n{}", usage(&o)))?;
    // A client holds its control connection, and one data connection while it transfers;
    // the many-sessions phase has only `--list-batch` of them transferring at once.
    let need = if sel.sessions {
        sessions::steps(&cfg).last().copied().unwrap_or(0) + cfg.list_batch
    } else {
        cfg.clients.max(cfg.tls_clients) * 2
    };
    raise_fd_limit(need + 64, &rep);
    // Fail early and clearly when the server is not there or refuses the login.
    Ftp::open_with(
        cfg.addr,
        cfg.timeout,
        cfg.force_pasv,
        cfg.tls || (sel.ftps && !sel.any_plain()),
        &cfg.user,
        &cfg.pass,
    )
    .and_then(|mut f| f.void_cmd("QUIT").map(drop))
    .map_err(|e| format!("cannot log in to {}: {e}", cfg.addr))?;
    let mut failed = false;
    failed |= bench_transfer(&cfg, &mut rep, &sel);
    if sel.concurrence {
        failed |= bench_concurrence(&cfg, &mut rep);
    } else if sel.many_retr || sel.many_stor {
        failed |= bench_many(&cfg, &mut rep, sel.many_retr, sel.many_stor);
    }
    if sel.ftps {
        failed |= bench_ftps(&cfg, &mut rep);
    }
    if sel.sessions {
        failed |= sessions::bench_sessions(&cfg, &mut rep);
    }
    cleanup(&cfg, &rep);
    rep.finish();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
