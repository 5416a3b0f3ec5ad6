//! Many-client workloads: N clients connect+login, N clients RETR/STOR a file at once, N
//! clients QUIT. Mirrors `bench_multi` of pyftpdlib's scripts/ftpbench (which drives the data
//! connections with asyncore); here the commands go out in pipelined phases and one poll(2)
//! loop with one shared buffer moves every data connection, so the client stays cheap next to
//! the server. RFC 959 §4.1.3 (RETR, STOR, QUIT), RFC 2428 §3 (EPSV).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};

use crate::client::Ftp;
use crate::Config;

/// How a phase went: elapsed time, and failures (count and the first message).
pub struct Outcome {
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Clients that failed.
    pub failed: usize,
    /// The first failure, for the log.
    pub first_error: Option<String>,
}

impl Outcome {
    fn new(elapsed: Duration, errors: &[String]) -> Outcome {
        Outcome {
            elapsed,
            failed: errors.len(),
            first_error: errors.first().cloned(),
        }
    }
}

/// Opens and logs in `cfg.clients` clients, at most `cfg.conn_threads` connecting at a time
/// (threads with small stacks; more at once would only measure the server's listen backlog).
pub fn connect_all(cfg: &Config) -> (Vec<Ftp>, Outcome) {
    connect_n(cfg, cfg.clients)
}

/// Opens and logs in `n` clients (FTPS when `cfg.tls`), as [`connect_all`] does.
pub fn connect_n(cfg: &Config, n: usize) -> (Vec<Ftp>, Outcome) {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let workers = cfg.conn_threads.clamp(1, n.max(1));
    let clients: Vec<Ftp> = thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn_scoped(s, || {
                        let mut mine = Vec::new();
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            if t0.elapsed() > cfg.phase_limit {
                                push_err(&errors, "phase time limit reached".into());
                                continue;
                            }
                            match crate::single::open(cfg) {
                                Ok(f) => mine.push(f),
                                Err(e) => push_err(&errors, format!("connect/login: {e}")),
                            }
                        }
                        mine
                    })
                    .ok()
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = t0.elapsed();
    let errors = errors.into_inner().unwrap_or_default();
    (clients, Outcome::new(elapsed, &errors))
}

fn push_err(errors: &Mutex<Vec<String>>, e: String) {
    if let Ok(mut v) = errors.lock() {
        v.push(e);
    }
}

/// Sends `cmd` to every client, then reads every reply; drops clients whose reply is not 2xx
/// or that are still waiting when `limit` has passed.
pub fn void_all(clients: &mut Vec<Ftp>, cmd: &str, limit: Duration) -> usize {
    let t0 = Instant::now();
    let mut ok = vec![true; clients.len()];
    for (i, c) in clients.iter_mut().enumerate() {
        ok[i] = c.send(cmd).is_ok();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        if ok[i] {
            ok[i] = t0.elapsed() < limit
                && match c.read_reply() {
                    Ok(r) if r.class() == 2 => true,
                    Ok(r) => {
                        eprintln!("ftpbench: {cmd}: {} {}", r.code, r.text);
                        false
                    }
                    Err(e) => {
                        eprintln!("ftpbench: {cmd}: {e}");
                        false
                    }
                };
        }
    }
    let before = clients.len();
    let mut it = ok.iter();
    clients.retain(|_| *it.next().unwrap_or(&false));
    before - clients.len()
}

/// What every client transfers in [`transfer_all`].
pub enum Job<'a> {
    /// Every client downloads this file, which must be `size` bytes long.
    Retr(&'a str),
    /// Client i uploads `size` bytes to `{prefix}{i}`.
    Stor(&'a str),
    /// Every client lists its current directory (`size` is not checked).
    List,
}

struct Slot {
    data: Option<TcpStream>,
    bytes: u64,
    done: bool,
    err: Option<String>,
}

/// Every client transfers `size` bytes at the same time; the time runs from the first EPSV
/// to the last final reply.
pub fn transfer_all(cfg: &Config, clients: &mut [Ftp], job: &Job, size: u64) -> Outcome {
    let t0 = Instant::now();
    let mut slots: Vec<Slot> = clients
        .iter()
        .map(|_| Slot {
            data: None,
            bytes: 0,
            done: false,
            err: None,
        })
        .collect();
    // Phase 1: EPSV everywhere, then the replies, then the data connections.
    let mut sent_ok = vec![false; clients.len()];
    for (i, c) in clients.iter_mut().enumerate() {
        sent_ok[i] = c.passive_send().is_ok();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        // A stalling server must not hold this phase up for a socket timeout per client.
        let r = if t0.elapsed() > cfg.phase_limit {
            Err(io::Error::other("phase time limit reached"))
        } else if sent_ok[i] {
            c.passive_read()
                .and_then(|a| c.data_connect(a))
                .and_then(|d| d.set_nonblocking(true).map(|()| d))
        } else {
            Err(io::Error::other("EPSV not sent"))
        };
        match r {
            Ok(d) => slots[i].data = Some(d),
            Err(e) => fail(&mut slots[i], format!("data connection: {e}")),
        }
    }
    // Phase 2: the transfer commands.
    for (i, c) in clients.iter_mut().enumerate() {
        if slots[i].done {
            continue;
        }
        let cmd = match job {
            Job::Retr(name) => format!("RETR {name}"),
            Job::Stor(prefix) => format!("STOR {prefix}{i}"),
            Job::List => "LIST".to_string(),
        };
        if let Err(e) = c.send(&cmd) {
            fail(&mut slots[i], format!("{cmd}: {e}"));
        }
    }
    // Phase 3: one poll loop over every data and control connection.
    let retr = !matches!(job, Job::Stor(_));
    let mut buf = vec![0u8; cfg.buf];
    let chunk = vec![b'x'; cfg.buf];
    let mut ready: Vec<(usize, bool)> = Vec::new();
    while slots.iter().any(|s| !s.done) {
        if t0.elapsed() > cfg.phase_limit {
            for s in slots.iter_mut().filter(|s| !s.done) {
                fail(s, "phase time limit reached".into());
            }
            break;
        }
        ready.clear();
        {
            let mut fds = Vec::new();
            let mut owners = Vec::new();
            let mut buffered = false;
            for (i, s) in slots.iter().enumerate() {
                if s.done {
                    continue;
                }
                if let Some(d) = &s.data {
                    let ev = if retr {
                        PollFlags::POLLIN
                    } else {
                        PollFlags::POLLOUT
                    };
                    fds.push(PollFd::new(d.as_fd(), ev));
                    owners.push((i, true));
                }
                if clients[i].has_buffered() {
                    ready.push((i, false));
                    buffered = true;
                } else {
                    fds.push(PollFd::new(clients[i].sock().as_fd(), PollFlags::POLLIN));
                    owners.push((i, false));
                }
            }
            let timeout: u16 = if buffered { 0 } else { 100 };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    for s in slots.iter_mut().filter(|s| !s.done) {
                        fail(s, format!("poll: {e}"));
                    }
                    break;
                }
            }
            for (fd, &owner) in fds.iter().zip(&owners) {
                if fd.revents().is_some_and(|r| !r.is_empty()) {
                    ready.push(owner);
                }
            }
        }
        for &(i, is_data) in &ready {
            let s = &mut slots[i];
            if s.done {
                continue;
            }
            if is_data {
                if retr {
                    pump_read(s, &mut buf);
                } else {
                    pump_write(s, &chunk, size);
                }
            } else {
                control_ready(s, &mut clients[i]);
            }
        }
    }
    for (s, c) in slots.iter_mut().zip(clients.iter()) {
        if s.err.is_none() && matches!(job, Job::Retr(_)) && s.bytes != size {
            s.err = Some(format!(
                "RETR: got {} bytes, expected {size} ({:?})",
                s.bytes,
                c.sock().peer_addr().ok()
            ));
        }
    }
    let errors: Vec<String> = slots.into_iter().filter_map(|s| s.err).collect();
    Outcome::new(t0.elapsed(), &errors)
}

fn fail(s: &mut Slot, e: String) {
    s.data = None;
    s.done = true;
    if s.err.is_none() {
        s.err = Some(e);
    }
}

/// Reads a few times from a readable data connection; EOF closes it.
fn pump_read(s: &mut Slot, buf: &mut [u8]) {
    let Some(d) = s.data.as_mut() else { return };
    for _ in 0..4 {
        match d.read(buf) {
            Ok(0) => {
                s.data = None;
                return;
            }
            Ok(n) => s.bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return fail(s, format!("data read: {e}")),
        }
    }
}

/// Writes a few chunks to a writable data connection; after `size` bytes it is closed.
fn pump_write(s: &mut Slot, chunk: &[u8], size: u64) {
    let Some(d) = s.data.as_mut() else { return };
    for _ in 0..4 {
        let left = size - s.bytes;
        if left == 0 {
            let _ = d.shutdown(Shutdown::Write);
            s.data = None;
            return;
        }
        let n = left.min(chunk.len() as u64) as usize;
        match d.write(&chunk[..n]) {
            Ok(n) => s.bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return fail(s, format!("data write: {e}")),
        }
    }
    if s.bytes == size {
        let _ = d.shutdown(Shutdown::Write);
        s.data = None;
    }
}

/// Reads the replies waiting on a control connection: 1xx goes on, 2xx ends the transfer
/// (once its data connection is done), 4xx/5xx fails it.
fn control_ready(s: &mut Slot, c: &mut Ftp) {
    loop {
        match c.read_reply() {
            Ok(r) if r.class() == 1 => {}
            Ok(r) if r.class() == 2 => {
                if s.data.is_some() {
                    // A 226 before our side saw EOF: finish reading what the kernel holds.
                    if let Some(d) = s.data.take() {
                        drain(s, d);
                    }
                }
                s.done = true;
                return;
            }
            Ok(r) => return fail(s, format!("transfer: {} {}", r.code, r.text)),
            Err(e) => return fail(s, format!("control: {e}")),
        }
        if !c.has_buffered() {
            return;
        }
    }
}

fn drain(s: &mut Slot, mut d: TcpStream) {
    let _ = d.set_nonblocking(false);
    let mut buf = [0u8; 64 * 1024];
    loop {
        match d.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => s.bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends QUIT to every client, then waits for every 221 and for every server-side close
/// (giving up on the rest once `limit` has passed).
pub fn quit_all(clients: Vec<Ftp>, limit: Duration) -> Outcome {
    let t0 = Instant::now();
    let mut clients = clients;
    let mut errors = Vec::new();
    let mut ok = vec![true; clients.len()];
    for (i, c) in clients.iter_mut().enumerate() {
        if let Err(e) = c.send("QUIT") {
            errors.push(format!("QUIT: {e}"));
            ok[i] = false;
        }
    }
    let mut sink = [0u8; 256];
    for (i, c) in clients.iter_mut().enumerate() {
        if !ok[i] {
            continue;
        }
        if t0.elapsed() > limit {
            errors.push("phase time limit reached".into());
            continue;
        }
        match c.read_reply() {
            Ok(r) if r.class() == 2 => {
                let mut s = c.sock();
                loop {
                    match s.read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            // A reset after the 221 is still a closed session.
                            if e.kind() != ErrorKind::ConnectionReset {
                                errors.push(format!("after QUIT: {e}"));
                            }
                            break;
                        }
                    }
                }
            }
            Ok(r) => errors.push(format!("QUIT: {} {}", r.code, r.text)),
            Err(e) => errors.push(format!("QUIT: {e}")),
        }
    }
    Outcome::new(t0.elapsed(), &errors)
}

/// A short pause between phases, so a server's leftovers (sessions closing, children exiting)
/// do not land in the next figure.
pub fn settle() {
    thread::sleep(Duration::from_millis(200));
}
