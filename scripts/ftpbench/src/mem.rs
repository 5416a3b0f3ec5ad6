//! Server memory: PSS summed over a process and all its descendants, read from
//! /proc/PID/smaps_rollup (Linux ≥ 4.14). Replaces the psutil (rss - shared) approximation of
//! pyftpdlib's scripts/ftpbench: PSS splits shared pages fairly between forked children, so a
//! fork-per-connection server and a threaded one are measured on the same scale.

use std::collections::HashMap;
use std::fs;

/// The pids of `root` and every descendant (scanning /proc/*/stat for parent pids).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// PSS of one process in KiB, or None when it is gone or unreadable.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Total PSS in KiB of `root` and its descendants, and how many processes were counted.
/// None when `root` itself cannot be read.
pub fn tree_pss_kib(root: u32) -> Option<(u64, usize)> {
    pss_kib(root)?;
    let mut total = 0;
    let mut n = 0;
    for pid in process_tree(root) {
        if let Some(k) = pss_kib(pid) {
            total += k;
            n += 1;
        }
    }
    Some((total, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_pss() {
        let me = std::process::id();
        let (kib, n) = tree_pss_kib(me).expect("smaps_rollup of self");
        assert!(kib > 0);
        assert!(n >= 1);
        assert_eq!(process_tree(me)[0], me);
    }
}
