//! What a phase cost the server: CPU time (utime + stime) and context switches (voluntary +
//! involuntary) of the server's pid and all its descendants, from /proc, over the phase;
//! and what it cost ftpbench itself (its CPU, from getrusage(2)), which tells whether the
//! client was the bottleneck.
//!
//! With `--cgroup DIR` (a cgroup holding the server alone, as compare.sh makes one per
//! server start) the CPU comes from the cgroup instead (`cpuacct.usage` in v1, `cpu.stat`'s
//! `usage_usec` in v2): in nanoseconds and counting every process that ran, exited ones
//! included. /proc's per-process figures are whole ticks (10 ms), so a server of hundreds of
//! short-lived or lightly loaded processes sums to much less than it used.
//!
//! CPU comes from `/proc/PID/stat` per process, which includes the threads that exited
//! meanwhile. Context switches exist only per thread (`/proc/PID/task/TID/status`), so the
//! threads are sampled every `interval` while the phase runs: a thread that exits between
//! two samples loses the switches since the last one (one-client phases sample every 20 ms,
//! so a helper thread that lives for one upload is counted nearly whole). Tasks that appear
//! during the phase count from zero. Times are in USER_HZ ticks, 100 per second on Linux
//! (the /proc ABI fixes it, whatever the kernel's HZ).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::mem::process_tree;

/// Ticks per second of /proc's times (USER_HZ).
const USER_HZ: f64 = 100.0;

/// What a phase cost the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU seconds (user + system), summed over the server's processes.
    pub cpu_s: f64,
    /// Context switches (voluntary + involuntary), summed over its threads.
    pub ctx_switches: u64,
    /// CPU seconds (user + system) of ftpbench itself over the phase.
    pub client_cpu_s: f64,
}

/// CPU seconds a cgroup's processes used so far (v1 cpuacct or v2).
fn cgroup_cpu_s(dir: &Path) -> Option<f64> {
    if let Ok(s) = fs::read_to_string(dir.join("cpuacct.usage")) {
        return s.trim().parse::<u64>().ok().map(|ns| ns as f64 / 1e9);
    }
    let s = fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let us: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()?;
    Some(us as f64 / 1e6)
}

/// CPU seconds (user + system) this process used so far.
fn own_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// First and latest reading per process (CPU ticks) and per thread (switches).
#[derive(Default)]
struct Readings {
    cpu: HashMap<u32, (u64, u64)>,
    ctx: HashMap<(u32, u32), (u64, u64)>,
}

impl Readings {
    /// Reads every process and thread of the tree; `baseline` marks the phase's start (new
    /// tasks after it count from zero).
    fn sample(&mut self, root: u32, baseline: bool) {
        for pid in process_tree(root) {
            if let Some(t) = proc_ticks(pid) {
                let e = self
                    .cpu
                    .entry(pid)
                    .or_insert((if baseline { t } else { 0 }, t));
                e.1 = e.1.max(t);
            }
            let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for tid in dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
            {
                if let Some(c) = task_switches(pid, tid) {
                    let e = self
                        .ctx
                        .entry((pid, tid))
                        .or_insert((if baseline { c } else { 0 }, c));
                    e.1 = e.1.max(c);
                }
            }
        }
    }

    fn usage(&self) -> Usage {
        let ticks: u64 = self.cpu.values().map(|(a, b)| b - a).sum();
        Usage {
            cpu_s: ticks as f64 / USER_HZ,
            ctx_switches: self.ctx.values().map(|(a, b)| b - a).sum(),
            client_cpu_s: 0.0,
        }
    }
}

/// utime + stime of a whole process (its live and exited threads), in ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": fields 14 and 15 are utime and stime; comm may hold
    // spaces, so count from the last ')', after which field 3 (state) comes first.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Voluntary + involuntary context switches of one thread.
fn task_switches(pid: u32, tid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// Samples a server's tree in a background thread while a phase runs.
pub struct Tracker {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Readings>,
    /// The server's cgroup and its CPU seconds at the start.
    cgroup: Option<(PathBuf, f64)>,
    client_start: f64,
}

impl Tracker {
    /// Takes the baseline now, then samples every `interval` until [`Tracker::finish`].
    pub fn start(root: u32, interval: Duration, cgroup: Option<&Path>) -> Tracker {
        let cgroup = cgroup.and_then(|d| Some((d.to_path_buf(), cgroup_cpu_s(d)?)));
        let client_start = own_cpu_s();
        let mut r = Readings::default();
        r.sample(root, true);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let step = Duration::from_millis(5).min(interval);
            let mut waited = Duration::ZERO;
            while !stop2.load(Ordering::Relaxed) {
                thread::sleep(step);
                waited += step;
                if waited >= interval {
                    r.sample(root, false);
                    waited = Duration::ZERO;
                }
            }
            r
        });
        Tracker {
            stop,
            handle,
            cgroup,
            client_start,
        }
    }

    /// The last sample, and the cost since the baseline (`None` if the sampler died).
    pub fn finish(self, root: u32) -> Option<Usage> {
        self.stop.store(true, Ordering::Relaxed);
        let mut r = self.handle.join().ok()?;
        r.sample(root, false);
        let mut u = r.usage();
        if let Some((dir, start)) = &self.cgroup {
            if let Some(now) = cgroup_cpu_s(dir) {
                u.cpu_s = now - start;
            }
        }
        u.client_cpu_s = own_cpu_s() - self.client_start;
        Some(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_work_is_counted() {
        let me = std::process::id();
        let t = Tracker::start(me, Duration::from_millis(10), None);
        // Burn some CPU and switch a few times.
        let mut x = 0u64;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
            if x % 1000 == 0 {
                thread::yield_now();
            }
        }
        thread::sleep(Duration::from_millis(20));
        let u = t.finish(me).expect("usage");
        assert!(u.cpu_s > 0.0, "{u:?} {x}");
        assert!(u.ctx_switches > 0, "{u:?}");
        assert!(u.client_cpu_s > 0.0, "{u:?}");
    }
}
