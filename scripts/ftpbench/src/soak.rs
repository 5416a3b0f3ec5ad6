//! The soak: `-n` concurrent sessions doing mixed operations (login, LIST, RETR, STOR and
//! DELE, ABOR mid-download, navigation, abrupt closes mid-transfer) for `--soak SECS`, while
//! the server's descriptors, threads, processes and memory are sampled from /proc (`-k PID`)
//! before, during and after. Every reply is counted by code; a reply a well-behaved server
//! would not give is "unexpected", a `421` (server full or draining) and a read that times
//! out (`-t`) are counted apart. The server's directory needs `soak-small.bin`,
//! `soak-big.bin` (big enough that an ABOR lands mid-transfer), `soak-list/` and writable
//! `soak-up/0` … `soak-up/31` (scripts/soak.sh makes them).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{parse_epsv, Ftp, Reply};
use crate::probe::Sample;
use crate::Config;

/// The operations, in report order.
const OPS: [&str; 8] = [
    "login", "list", "retr", "stor", "abor", "nav", "abrupt", "quit",
];
/// How many problems are described in full.
const EXAMPLES: usize = 12;

/// What one session thread saw.
#[derive(Default)]
struct Tally {
    ops: [u64; OPS.len()],
    codes: BTreeMap<u16, u64>,
    unexpected: u64,
    r421: u64,
    hung: u64,
    io_errors: u64,
    examples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        for (a, b) in self.ops.iter_mut().zip(o.ops) {
            *a += b;
        }
        for (c, n) in o.codes {
            *self.codes.entry(c).or_default() += n;
        }
        self.unexpected += o.unexpected;
        self.r421 += o.r421;
        self.hung += o.hung;
        self.io_errors += o.io_errors;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(o.examples.into_iter().take(room));
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }
}

/// Why a session stopped early: counted already, so the caller only reconnects.
struct Stop;

/// Progress shared with the monitor.
#[derive(Default)]
struct Live {
    ops: AtomicU64,
    problems: AtomicU64,
}

/// Runs the soak; true when anything failed (unexpected reply, hang, I/O error, leak).
pub fn soak(cfg: &Config, secs: f64) -> bool {
    let Some(pid) = cfg.pid else {
        eprintln!("soak: -k SERVER_PID is needed for the resource figures");
        return true;
    };
    let Some(before) = Sample::take(pid) else {
        eprintln!("soak: no process {pid}");
        return true;
    };
    println!(
        "soak: {} sessions for {secs} s against {}",
        cfg.clients, cfg.addr
    );
    println!("before: {before}");
    let live = Arc::new(Live::default());
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let handles = spawn_sessions(cfg, deadline, &live);
    let (peak, end) = monitor(pid, deadline, &live, handles.len());
    let mut total = Tally::default();
    for h in handles {
        match h.join() {
            Ok(t) => total.merge(t),
            Err(_) => total.note("a session thread panicked".into()),
        }
    }
    let (after, settle) = settle(pid, &before);
    report(&total, &[("during (peak)", peak), ("during (end)", end)]);
    println!("after ({settle:.1} s after the load): {after}");
    verdict(&total, &before, &after)
}

fn spawn_sessions(
    cfg: &Config,
    deadline: Instant,
    live: &Arc<Live>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    let n = cfg.clients.max(1);
    // Sessions start spread over a few seconds, as clients arrive.
    let ramp = Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now()) / 4);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (cfg, live) = (cfg.clone(), Arc::clone(live));
        let delay = ramp.mul_f64(i as f64 / n as f64);
        let spawned = std::thread::Builder::new()
            .name(format!("soak-{i}"))
            .stack_size(256 << 10)
            .spawn(move || {
                std::thread::sleep(delay);
                session_loop(&cfg, i, deadline, &live)
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => eprintln!("soak: cannot start session thread {i}: {e}"),
        }
    }
    handles
}

/// Samples every 2 s while the sessions run; prints progress every 30 s. Returns the peak
/// and the last sample taken under load.
fn monitor(pid: u32, deadline: Instant, live: &Live, n: usize) -> (Sample, Sample) {
    let start = Instant::now();
    let (mut peak, mut end) = (Sample::default(), Sample::default());
    let mut last_print = start;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2).min(deadline - Instant::now().min(deadline)));
        if let Some(s) = Sample::take(pid) {
            peak = peak.max(s);
            end = s;
        }
        if last_print.elapsed() >= Duration::from_secs(30) {
            last_print = Instant::now();
            println!(
                "  {:>5.0} s: {} ops, {} problems, {n} sessions; {end}",
                start.elapsed().as_secs_f64(),
                live.ops.load(Ordering::Relaxed),
                live.problems.load(Ordering::Relaxed)
            );
        }
    }
    (peak, end)
}

/// Waits (at most 90 s: a pool's idle workers retire after 60 s) until the server is back
/// to its descriptors, processes and threads before the load.
fn settle(pid: u32, before: &Sample) -> (Sample, f64) {
    let start = Instant::now();
    loop {
        let s = Sample::take(pid).unwrap_or_default();
        let back = !leaked(before, &s);
        if back || start.elapsed() >= Duration::from_secs(90) {
            return (s, start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn report(t: &Tally, samples: &[(&str, Sample)]) {
    for (name, s) in samples {
        println!("{name}: {s}");
    }
    let ops: Vec<String> = OPS
        .iter()
        .zip(t.ops)
        .map(|(o, n)| format!("{o}={n}"))
        .collect();
    println!(
        "ops: {} total: {}",
        t.ops.iter().sum::<u64>(),
        ops.join(" ")
    );
    let codes: Vec<String> = t.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    println!("replies by code: {}", codes.join(" "));
    println!(
        "unexpected replies: {}  421: {}  hung: {}  I/O errors: {}",
        t.unexpected, t.r421, t.hung, t.io_errors
    );
    for e in &t.examples {
        println!("  {e}");
    }
}

/// More descriptors, processes or threads than before the load.
fn leaked(before: &Sample, now: &Sample) -> bool {
    now.fds > before.fds || now.procs > before.procs || now.threads > before.threads
}

fn verdict(t: &Tally, before: &Sample, after: &Sample) -> bool {
    let leak = leaked(before, after);
    if leak {
        println!("LEAK: the server holds more descriptors, processes or threads than before");
    }
    let failed = leak || t.unexpected > 0 || t.hung > 0 || t.io_errors > 0;
    println!("soak: {}", if failed { "FAILED" } else { "ok" });
    failed
}

/// One client: connect, log in, a few operations, QUIT (or an abrupt close); again until
/// the deadline.
fn session_loop(cfg: &Config, id: usize, deadline: Instant, live: &Live) -> Tally {
    let mut s = Session {
        cfg,
        id,
        rng: seed(id),
        t: Tally::default(),
        live,
        n: 0,
    };
    while Instant::now() < deadline {
        let problems = s.problems();
        s.connection(deadline);
        if s.problems() > problems {
            live.problems
                .fetch_add(s.problems() - problems, Ordering::Relaxed);
            // Not a tight loop against a server that refuses: a second before trying again.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    s.t
}

fn seed(id: usize) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

struct Session<'a> {
    cfg: &'a Config,
    id: usize,
    rng: u64,
    t: Tally,
    live: &'a Live,
    /// Uploads so far (unique names).
    n: u64,
}

impl Session<'_> {
    fn problems(&self) -> u64 {
        self.t.unexpected + self.t.r421 + self.t.hung + self.t.io_errors
    }

    /// xorshift64: enough to mix the operations, no dependency.
    fn roll(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn done(&mut self, op: usize) {
        self.t.ops[op] += 1;
        self.live.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// One control connection from greeting to QUIT or an abrupt close.
    fn connection(&mut self, deadline: Instant) {
        let Ok(mut ftp) = self.login() else { return };
        let ops = 1 + self.roll(12);
        for _ in 0..ops {
            if Instant::now() >= deadline {
                break;
            }
            let r = match self.roll(100) {
                0..=17 => self.list(&mut ftp),
                18..=42 => self.retr(&mut ftp),
                43..=62 => self.stor(&mut ftp),
                63..=74 => self.abor(&mut ftp),
                75..=91 => self.nav(&mut ftp),
                _ => return self.abrupt(ftp),
            };
            if r.is_err() {
                return; // counted; the connection is dropped
            }
            // A short pause between commands, as a person or a script would leave.
            let pause = self.roll(50);
            std::thread::sleep(Duration::from_millis(pause));
        }
        if self.expect(&mut ftp, "QUIT", &[221]).is_ok() {
            self.done(7);
        }
    }

    fn login(&mut self) -> Result<Ftp, Stop> {
        let (mut ftp, greeting) =
            Ftp::connect_greeted(self.cfg.addr, self.cfg.timeout, self.cfg.force_pasv)
                .map_err(|e| self.io_failed("connect", &e))?;
        self.check(&greeting, &[220], "greeting")?;
        let user = format!("USER {}", self.cfg.user);
        self.expect(&mut ftp, &user, &[331])?;
        let pass = format!("PASS {}", self.cfg.pass);
        self.expect(&mut ftp, &pass, &[230])?;
        // Binary: RETR's byte count is then the file's size (ASCII is the default type).
        self.expect(&mut ftp, "TYPE I", &[200])?;
        self.done(0);
        Ok(ftp)
    }

    /// Sends `line`, reads the reply, requires one of `ok`.
    fn expect(&mut self, ftp: &mut Ftp, line: &str, ok: &[u16]) -> Result<Reply, Stop> {
        ftp.send(line).map_err(|e| self.io_failed(line, &e))?;
        self.reply(ftp, ok, line)
    }

    fn reply(&mut self, ftp: &mut Ftp, ok: &[u16], what: &str) -> Result<Reply, Stop> {
        let r = ftp.read_reply().map_err(|e| self.io_failed(what, &e))?;
        self.check(&r, ok, what)?;
        Ok(r)
    }

    fn check(&mut self, r: &Reply, ok: &[u16], what: &str) -> Result<(), Stop> {
        *self.t.codes.entry(r.code).or_default() += 1;
        if ok.contains(&r.code) {
            return Ok(());
        }
        if r.code == 421 {
            self.t.r421 += 1;
        } else {
            self.t.unexpected += 1;
            let id = self.id;
            self.t
                .note(format!("session {id}: {what}: {} {}", r.code, r.text));
        }
        Err(Stop)
    }

    fn io_failed(&mut self, what: &str, e: &io::Error) -> Stop {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            self.t.hung += 1;
        } else {
            self.t.io_errors += 1;
        }
        let id = self.id;
        self.t.note(format!("session {id}: {what}: {e}"));
        Stop
    }

    /// EPSV and the data connection to it.
    fn passive(&mut self, ftp: &mut Ftp) -> Result<TcpStream, Stop> {
        let r = self.expect(ftp, "EPSV", &[229])?;
        let addr = parse_epsv(&r.text, ftp.peer().ip()).map_err(|e| self.io_failed("EPSV", &e))?;
        ftp.data_connect(addr)
            .map_err(|e| self.io_failed("data connect", &e))
    }

    /// A transfer command and its preliminary reply.
    fn start(&mut self, ftp: &mut Ftp, cmd: &str) -> Result<TcpStream, Stop> {
        let data = self.passive(ftp)?;
        self.expect(ftp, cmd, &[125, 150])?;
        Ok(data)
    }

    /// Reads a data connection to its end; the byte count.
    fn drain(&mut self, mut data: TcpStream, what: &str) -> Result<u64, Stop> {
        let mut buf = [0u8; 16 << 10];
        let mut n = 0u64;
        loop {
            match data.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k as u64,
                Err(e) => return Err(self.io_failed(what, &e)),
            }
        }
    }

    fn list(&mut self, ftp: &mut Ftp) -> Result<(), Stop> {
        let data = self.start(ftp, "LIST soak-list")?;
        self.drain(data, "LIST data")?;
        self.reply(ftp, &[226], "LIST end")?;
        self.done(1);
        Ok(())
    }

    fn retr(&mut self, ftp: &mut Ftp) -> Result<(), Stop> {
        let data = self.start(ftp, "RETR soak-small.bin")?;
        let n = self.drain(data, "RETR data")?;
        self.reply(ftp, &[226], "RETR end")?;
        if n != SMALL {
            self.t.unexpected += 1;
            self.t.note(format!(
                "session {}: RETR gave {n} bytes of {SMALL}",
                self.id
            ));
            return Err(Stop);
        }
        self.done(2);
        Ok(())
    }

    /// A new upload's name, in one of [`UPLOAD_DIRS`] directories: every session creating
    /// and deleting in one directory measures the kernel's lock on that directory (each
    /// create and unlink takes it), not the server.
    fn upload_name(&self) -> String {
        format!("soak-up/{}/s{}-{}", self.id % UPLOAD_DIRS, self.id, self.n)
    }

    fn stor(&mut self, ftp: &mut Ftp) -> Result<(), Stop> {
        self.n += 1;
        let name = self.upload_name();
        let mut data = self.start(ftp, &format!("STOR {name}"))?;
        let chunk = [b'u'; 8 << 10];
        for _ in 0..1 + self.roll(8) {
            data.write_all(&chunk)
                .map_err(|e| self.io_failed("STOR data", &e))?;
        }
        drop(data);
        self.reply(ftp, &[226], "STOR end")?;
        self.expect(ftp, &format!("DELE {name}"), &[250])?;
        self.done(3);
        Ok(())
    }

    /// RETR of the big file, ABOR after the first bytes: `426` + `226` when the transfer was
    /// running, `226` + `225` when it had just finished.
    fn abor(&mut self, ftp: &mut Ftp) -> Result<(), Stop> {
        let mut data = self.start(ftp, "RETR soak-big.bin")?;
        let mut buf = [0u8; 16 << 10];
        if let Err(e) = data.read(&mut buf) {
            return Err(self.io_failed("RETR before ABOR", &e));
        }
        ftp.send("ABOR").map_err(|e| self.io_failed("ABOR", &e))?;
        let first = self.reply(ftp, &[426, 226], "ABOR")?;
        let second = if first.code == 426 { 226 } else { 225 };
        drop(data);
        self.reply(ftp, &[second], "ABOR end")?;
        self.done(4);
        Ok(())
    }

    fn nav(&mut self, ftp: &mut Ftp) -> Result<(), Stop> {
        self.expect(ftp, "CWD soak-list", &[250])?;
        self.expect(ftp, "PWD", &[257])?;
        self.expect(ftp, "CDUP", &[250, 200])?;
        self.expect(ftp, "TYPE I", &[200])?;
        self.expect(ftp, "SIZE soak-small.bin", &[213])?;
        self.expect(ftp, "MDTM soak-small.bin", &[213])?;
        self.expect(ftp, "NOOP", &[200])?;
        self.done(5);
        Ok(())
    }

    /// Drops the connection without QUIT: right away, with a passive port open, mid-download
    /// or mid-upload.
    fn abrupt(&mut self, mut ftp: Ftp) {
        let data = match self.roll(4) {
            0 => None,
            1 => self.passive(&mut ftp).ok(),
            2 => self.start(&mut ftp, "RETR soak-big.bin").ok(),
            _ => {
                self.n += 1;
                let name = format!("STOR {}", self.upload_name());
                let mut d = self.start(&mut ftp, &name).ok();
                if let Some(d) = d.as_mut() {
                    let _ = d.write_all(&[b'x'; 4096]);
                }
                d
            }
        };
        if let Some(d) = data {
            let _ = d.shutdown(Shutdown::Both);
        }
        let _ = ftp.sock().shutdown(Shutdown::Both);
        self.done(6);
    }
}

/// The size of `soak-small.bin` (scripts/soak.sh writes it).
pub const SMALL: u64 = 64 << 10;

/// Upload directories `soak-up/0` … `soak-up/31` (scripts/soak.sh makes them).
pub const UPLOAD_DIRS: usize = 32;
