//! `--loopback-limit`: what this machine's loopback can do without any FTP server, measured in
//! the same run as the servers so their figures can be read against it: sendfile(2) of a
//! cached file to a socket (the ceiling for RETR), plain 256 KiB writes (the ceiling for
//! STOR), and TCP connect+close per second (the ceiling for logins).

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::single::mbps;
use crate::Config;

/// A reader thread that drains one connection in `buf`-sized reads; returns bytes received.
fn sink(listener: TcpListener, buf: usize) -> thread::JoinHandle<io::Result<u64>> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        let mut b = vec![0u8; buf];
        let mut total = 0u64;
        loop {
            match s.read(&mut b) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
}

/// A page-cached file of `size` bytes in the temporary directory (`TMPDIR`), removed on drop.
pub struct CachedFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl CachedFile {
    /// Writes the file.
    ///
    /// # Errors
    /// File creation or write failures.
    pub fn new(size: u64) -> io::Result<CachedFile> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ftpbench-loopback-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let cached = CachedFile {
            // Read and write: sendfile(2) reads from this same descriptor.
            file: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?,
            path,
            size,
        };
        let chunk = vec![b'x'; 1 << 20];
        let mut left = size;
        let mut f = &cached.file;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(cached)
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// sendfile(2) of `file`, whole passes again and again for about `d` (at least one, at most
/// 1000), to a reader doing `cfg.buf` reads; the bytes received and the time taken.
///
/// # Errors
/// Socket or file failures.
pub fn sendfile_run(cfg: &Config, file: &CachedFile, d: Duration) -> io::Result<(u64, Duration)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = sink(listener, cfg.buf);
    let sock = TcpStream::connect(addr)?;
    let t0 = Instant::now();
    let size = i64::try_from(file.size).unwrap_or(i64::MAX);
    let mut rounds = 0;
    while rounds < 1000 && (rounds == 0 || t0.elapsed() < d) {
        let mut off: i64 = 0;
        while off < size {
            let count = usize::try_from(size - off)
                .unwrap_or(usize::MAX)
                .min(cfg.sendfile_chunk);
            match nix::sys::sendfile::sendfile(&sock, &file.file, Some(&mut off), count) {
                Ok(0) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        rounds += 1;
    }
    sock.shutdown(Shutdown::Write)?;
    let got = reader
        .join()
        .map_err(|_| io::Error::other("reader thread panicked"))??;
    Ok((got, t0.elapsed()))
}

/// sendfile(2) of a `cfg.transfer_size` page-cached file for `cfg.duration`; MB/s.
///
/// # Errors
/// Socket or file failures.
pub fn sendfile_rate(cfg: &Config) -> io::Result<f64> {
    let file = CachedFile::new(cfg.transfer_size)?;
    let (bytes, t) = sendfile_run(cfg, &file, cfg.duration)?;
    Ok(mbps(bytes, t))
}

/// `cfg.buf`-sized write(2)s from memory for `cfg.duration` (at most 64 GiB); MB/s.
///
/// # Errors
/// Socket failures.
pub fn write_rate(cfg: &Config) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = sink(listener, cfg.buf);
    let mut sock = TcpStream::connect(addr)?;
    let chunk = vec![b'x'; cfg.buf];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < cfg.duration && sent < (64 << 30) {
        sock.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    sock.shutdown(Shutdown::Write)?;
    let got = reader
        .join()
        .map_err(|_| io::Error::other("reader thread panicked"))??;
    Ok(mbps(got, t0.elapsed()))
}

/// TCP connect, then wait for the peer's close (the acceptor closes at once, as a server
/// does after QUIT), for `cfg.duration` (at most 200,000 times); connections per second.
///
/// # Errors
/// Socket failures.
pub fn connect_rate(cfg: &Config) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let acceptor = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => drop(s),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    let t0 = Instant::now();
    let mut n = 0u32;
    let mut b = [0u8; 16];
    let result = (|| {
        while t0.elapsed() < cfg.duration && n < 200_000 {
            let mut s = TcpStream::connect(addr)?;
            while s.read(&mut b)? > 0 {}
            n += 1;
        }
        Ok(f64::from(n) / t0.elapsed().as_secs_f64())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    let _ = acceptor.join();
    result
}
