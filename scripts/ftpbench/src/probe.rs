//! A server's resources, read from /proc for a process and all its descendants (forked
//! sessions and pre-fork workers included): open descriptors, threads, processes, and
//! resident memory (RSS, and PSS, which splits pages shared between forked children).

use std::fmt;
use std::fs;

use crate::mem::{process_tree, pss_kib};

/// One reading of the server's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Processes in the tree.
    pub procs: usize,
    /// Threads, summed over the processes.
    pub threads: u64,
    /// Open file descriptors, summed over the processes.
    pub fds: u64,
    /// Resident set size in KiB, summed (shared pages counted once per process).
    pub rss_kib: u64,
    /// Proportional set size in KiB, summed.
    pub pss_kib: u64,
}

impl Sample {
    /// Reads the tree rooted at `pid`; `None` when `pid` is gone.
    pub fn take(pid: u32) -> Option<Sample> {
        fs::metadata(format!("/proc/{pid}")).ok()?;
        let mut s = Sample::default();
        for p in process_tree(pid) {
            let Ok(status) = fs::read_to_string(format!("/proc/{p}/status")) else {
                continue; // exited meanwhile
            };
            s.procs += 1;
            s.threads += field(&status, "Threads:");
            s.rss_kib += field(&status, "VmRSS:");
            s.pss_kib += pss_kib(p).unwrap_or(0);
            s.fds += fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count() as u64);
        }
        Some(s)
    }

    /// The larger of each figure.
    pub fn max(self, o: Sample) -> Sample {
        Sample {
            procs: self.procs.max(o.procs),
            threads: self.threads.max(o.threads),
            fds: self.fds.max(o.fds),
            rss_kib: self.rss_kib.max(o.rss_kib),
            pss_kib: self.pss_kib.max(o.pss_kib),
        }
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "procs={} threads={} fds={} rss={:.1}MiB pss={:.1}MiB",
            self.procs,
            self.threads,
            self.fds,
            self.rss_kib as f64 / 1024.0,
            self.pss_kib as f64 / 1024.0
        )
    }
}

fn field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_sampled() {
        let s = Sample::take(std::process::id()).expect("self");
        assert!(s.procs >= 1 && s.threads >= 1 && s.fds >= 3 && s.rss_kib > 0);
    }
}
