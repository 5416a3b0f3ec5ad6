//! One-client workloads: STOR and RETR rates, LIST/MLSD of a big directory, sequential logins
//! per second. Mirrors `bench_stor`/`bench_retr` of pyftpdlib's scripts/ftpbench, with fixed
//! sizes instead of "bytes in one second" so every server moves the same bytes.
//! RFC 959 §4.1.3 (STOR, RETR, LIST), RFC 3659 §7 (MLSD).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::client::{proto_err, Ftp};
use crate::tls::TRANSFERS_PER_LOGIN;
use crate::Config;

/// Connects and logs in as `cfg` says (FTPS with `PROT P` when `cfg.tls`).
///
/// # Errors
/// Connection, TLS or login failures.
pub fn open(cfg: &Config) -> io::Result<Ftp> {
    Ftp::open_with(
        cfg.addr,
        cfg.timeout,
        cfg.force_pasv,
        cfg.tls,
        &cfg.user,
        &cfg.pass,
    )
}

/// Bytes per second to MB/s (10^6 bytes).
pub fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// Uploads `size` bytes to `name` in `cfg.buf`-sized writes (stops early at `cfg.phase_limit`);
/// returns the bytes sent and the time until the server's final 2xx reply.
///
/// # Errors
/// Any I/O or protocol failure.
pub fn stor(cfg: &Config, ftp: &mut Ftp, name: &str, size: u64) -> io::Result<(u64, Duration)> {
    let chunk = vec![b'x'; cfg.buf];
    ftp.void_cmd("TYPE I")?;
    let t0 = Instant::now();
    let mut data = ftp.transfer_cmd(&format!("STOR {name}"))?;
    let mut sent = 0u64;
    while sent < size && t0.elapsed() < cfg.phase_limit {
        let n = (size - sent).min(chunk.len() as u64) as usize;
        data.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    data.finish_write()?;
    drop(data);
    ftp.finish()?;
    Ok((sent, t0.elapsed()))
}

/// Downloads `name` completely into a `cfg.buf` buffer, discarding it; returns the bytes read.
///
/// # Errors
/// Any I/O or protocol failure.
pub fn retr_once(ftp: &mut Ftp, name: &str, buf: &mut [u8]) -> io::Result<u64> {
    let mut data = ftp.transfer_cmd(&format!("RETR {name}"))?;
    let mut got = 0u64;
    loop {
        let n = data.read(buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    drop(data);
    ftp.finish()?;
    Ok(got)
}

/// Downloads `name` (of `size` bytes) again and again for `cfg.duration` (at least once,
/// at most 1000 times); returns MB/s over the whole time.
///
/// # Errors
/// Any I/O or protocol failure, or a short file.
pub fn retr_rate(cfg: &Config, ftp: &mut Ftp, name: &str, size: u64) -> io::Result<f64> {
    let (bytes, t) = retr_run(cfg, ftp, name, size, cfg.duration)?;
    Ok(mbps(bytes, t))
}

/// Downloads `name` (of `size` bytes) again and again for about `d` (at least once, at most
/// 1000 times); returns the bytes and the time taken. Over TLS the control connection is
/// replaced (untimed) every [`TRANSFERS_PER_LOGIN`] downloads, before its session tickets
/// run out.
///
/// # Errors
/// Any I/O or protocol failure, or a short file.
pub fn retr_run(
    cfg: &Config,
    ftp: &mut Ftp,
    name: &str,
    size: u64,
    d: Duration,
) -> io::Result<(u64, Duration)> {
    let mut buf = vec![0u8; cfg.buf];
    ftp.void_cmd("TYPE I")?;
    let t0 = Instant::now();
    let mut paused = Duration::ZERO;
    let mut total = 0u64;
    for i in 0..1000 {
        if ftp.is_tls() && i > 0 && i % TRANSFERS_PER_LOGIN == 0 {
            let p0 = Instant::now();
            let _ = ftp.cmd("QUIT");
            *ftp = open(cfg)?;
            ftp.void_cmd("TYPE I")?;
            paused += p0.elapsed();
        }
        let got = retr_once(ftp, name, &mut buf)?;
        if got != size {
            return Err(proto_err(format!(
                "RETR {name}: got {got} bytes, expected {size}"
            )));
        }
        total += got;
        if t0.elapsed() - paused >= d {
            break;
        }
    }
    Ok((total, t0.elapsed() - paused))
}

/// Makes sure `cfg.list_dir` exists; when missing it is created and filled over FTP with
/// `cfg.list_files` empty files (slow: compare.sh creates it on disk beforehand).
///
/// # Errors
/// Any I/O or protocol failure.
pub fn ensure_list_dir(cfg: &Config, ftp: &mut Ftp) -> io::Result<()> {
    let r = ftp.cmd(&format!("CWD {}", cfg.list_dir))?;
    if r.class() == 2 {
        ftp.void_cmd("CWD ..")?;
        return Ok(());
    }
    eprintln!(
        "ftpbench: creating {} with {} empty files over FTP (pre-create it on disk to save time)",
        cfg.list_dir, cfg.list_files
    );
    ftp.void_cmd(&format!("MKD {}", cfg.list_dir))?;
    ftp.void_cmd(&format!("CWD {}", cfg.list_dir))?;
    ftp.void_cmd("TYPE I")?;
    let t0 = Instant::now();
    for i in 0..cfg.list_files {
        if t0.elapsed() > cfg.phase_limit * 4 {
            eprintln!("ftpbench: gave up filling {} after {i} files", cfg.list_dir);
            break;
        }
        let data = ftp.transfer_cmd(&format!("STOR f{i:06}"))?;
        drop(data);
        ftp.finish()?;
    }
    ftp.void_cmd("CWD ..")?;
    Ok(())
}

/// Runs `cmd` (LIST or MLSD) in `cfg.list_dir` `cfg.list_reps` times; returns the median time in
/// ms and the line count of the last listing, or None when the server does not know the command.
///
/// # Errors
/// Any I/O or protocol failure.
pub fn listing(cfg: &Config, ftp: &mut Ftp, cmd: &str) -> io::Result<Option<(f64, usize)>> {
    ftp.void_cmd(&format!("CWD {}", cfg.list_dir))?;
    let mut buf = vec![0u8; cfg.buf];
    let mut times = Vec::new();
    let mut lines = 0;
    let t_all = Instant::now();
    for _ in 0..cfg.list_reps.max(1) {
        let t0 = Instant::now();
        let addr = ftp.passive()?;
        let mut data = ftp.data_open(addr)?;
        let r = ftp.cmd(cmd)?;
        if r.code == 500 || r.code == 502 || r.code == 504 {
            ftp.void_cmd("CWD ..")?;
            return Ok(None);
        }
        if r.class() != 1 {
            return Err(proto_err(format!("{cmd}: {} {}", r.code, r.text)));
        }
        lines = 0;
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
        drop(data);
        ftp.finish()?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        if t_all.elapsed() > cfg.phase_limit {
            break;
        }
    }
    ftp.void_cmd("CWD ..")?;
    Ok(Some((median(&mut times), lines)))
}

/// Sequential connect + USER/PASS + QUIT (waiting for the server to close) for `cfg.duration`
/// (at most 100,000 logins); returns logins per second. With `cfg.tls` each login is
/// connect, `AUTH TLS` and a full handshake, USER/PASS, `PBSZ 0`, `PROT P`, QUIT.
///
/// # Errors
/// Any I/O or protocol failure.
pub fn logins_per_sec(cfg: &Config) -> io::Result<f64> {
    let t0 = Instant::now();
    let mut n = 0u32;
    let mut sink = [0u8; 512];
    while t0.elapsed() < cfg.duration && n < 100_000 {
        let mut ftp = open(cfg)?;
        ftp.void_cmd("QUIT")?;
        // The server closes first (so TIME_WAIT sits on its side, not on our ephemeral ports).
        let mut s = ftp.sock();
        while s.read(&mut sink)? > 0 {}
        n += 1;
    }
    Ok(f64::from(n) / t0.elapsed().as_secs_f64())
}

/// Median of a non-empty list (NaN when empty).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
