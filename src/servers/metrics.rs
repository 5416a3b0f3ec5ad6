//! The Prometheus endpoint: a server's [`ServerStats`] as Prometheus text (exposition format
//! 0.0.4, which OpenMetrics scrapers read too), served at `GET /metrics` by a small blocking
//! HTTP server (tiny_http) on a listener of its own, never the FTP port. Names follow the
//! Prometheus conventions: `ftpdlib_` prefix, base units (bytes, seconds), `_total` on
//! counters.
//!
//! Where it runs: in the Pool and Thread models, on threads of the serving process. The
//! Fork and PreFork models fork, which a process may do only while it runs a single thread,
//! so there the endpoint is a process of its own, forked first; it reads the same shared
//! memory as the server (counters, admission table, gauges), dies with its parent
//! (`PR_SET_PDEATHSIG`) and is ended when the server stops. The parent keeps it running
//! ([`Keeper`]): one that dies is started again on the same listener (connections that
//! arrive meanwhile wait in its backlog), after a pause that doubles while it keeps dying
//! soon after starting, so a crash loop costs a fork a minute at most.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::stats::ServerStats;
use super::Shared;
use crate::handlers::stats::{Histogram, SessionEnd, TransferResult, DURATION_BUCKETS};

/// `ServerStats` as Prometheus text.
pub fn render(s: &ServerStats) -> String {
    let mut out = String::with_capacity(4096);
    sessions(&mut out, s);
    transfers(&mut out, s);
    server(&mut out, s);
    durations(&mut out, s);
    out
}

/// Sessions, logins and commands.
fn sessions(out: &mut String, s: &ServerStats) {
    let t = &s.totals;
    let start = s
        .start_time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metric(
        out,
        "start_time_seconds",
        "gauge",
        "When the server started (Unix time).",
        &[("", start)],
    );
    metric(
        out,
        "sessions_active",
        "gauge",
        "FTP sessions running now.",
        &[("", s.active_sessions as f64)],
    );
    metric(
        out,
        "sessions_total",
        "counter",
        "FTP sessions started.",
        &[("", t.sessions as f64)],
    );
    let ends: Vec<(String, f64)> = SessionEnd::ALL
        .iter()
        .map(|e| (format!("reason=\"{}\"", e.name()), t.ended(*e) as f64))
        .collect();
    metric_owned(
        out,
        "session_ends_total",
        "counter",
        "FTP sessions ended, by how they ended.",
        &ends,
    );
    metric(
        out,
        "logins_total",
        "counter",
        "Login attempts (PASS), by result.",
        &[
            ("result=\"ok\"", t.logins as f64),
            ("result=\"failed\"", t.failed_logins as f64),
        ],
    );
    metric(
        out,
        "commands_total",
        "counter",
        "Command lines received.",
        &[("", t.commands as f64)],
    );
}

/// Bytes and file transfers.
fn transfers(out: &mut String, s: &ServerStats) {
    let t = &s.totals;
    metric(
        out,
        "received_bytes_total",
        "counter",
        "File bytes received (uploads).",
        &[("", t.bytes_received as f64)],
    );
    metric(
        out,
        "sent_bytes_total",
        "counter",
        "File bytes sent (downloads).",
        &[("", t.bytes_sent as f64)],
    );
    let mut transfers = Vec::new();
    for (dir, counts) in [("download", &t.downloads), ("upload", &t.uploads)] {
        for (r, n) in TransferResult::ALL.iter().zip(counts.iter()) {
            transfers.push((
                format!("direction=\"{dir}\",result=\"{}\"", r.name()),
                *n as f64,
            ));
        }
    }
    metric_owned(
        out,
        "transfers_total",
        "counter",
        "File transfers ended, by direction and result.",
        &transfers,
    );
}

/// Refused connections, bans, processes and pool threads.
fn server(out: &mut String, s: &ServerStats) {
    let t = &s.totals;
    let r = &s.refused;
    metric(
        out,
        "refused_connections_total",
        "counter",
        "Connections refused with 421 before a session started, by reason.",
        &[
            ("reason=\"max_cons\"", r.max_cons as f64),
            ("reason=\"per_ip\"", r.per_ip as f64),
            ("reason=\"banned\"", r.banned as f64),
            ("reason=\"shutting_down\"", r.shutting_down as f64),
            ("reason=\"no_descriptors\"", r.no_descriptors as f64),
        ],
    );
    metric(
        out,
        "login_attempts_exceeded_total",
        "counter",
        "Sessions closed after max_login_attempts failed logins.",
        &[("", t.login_attempts_exceeded as f64)],
    );
    metric(
        out,
        "bans_total",
        "counter",
        "Addresses banned for failed logins.",
        &[("", s.bans as f64)],
    );
    metric(
        out,
        "processes",
        "gauge",
        "Processes serving (1, plus forked children or pre-forked workers).",
        &[("", s.processes as f64)],
    );
    metric(
        out,
        "pool_workers",
        "gauge",
        "Pool worker threads in every process, by state.",
        &[
            (
                "state=\"busy\"",
                s.pool_workers.saturating_sub(s.pool_idle) as f64,
            ),
            ("state=\"idle\"", s.pool_idle as f64),
        ],
    );
}

/// The login and transfer duration histograms.
fn durations(out: &mut String, s: &ServerStats) {
    let t = &s.totals;
    histogram(
        out,
        "login_duration_seconds",
        "Time from PASS to the 230 reply of successful logins.",
        &[("", &t.login_time)],
    );
    histogram(
        out,
        "transfer_duration_seconds",
        "Duration of file transfers, by direction.",
        &[
            ("direction=\"download\"", &t.download_time),
            ("direction=\"upload\"", &t.upload_time),
        ],
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP ftpdlib_{name} {help}");
    let _ = writeln!(out, "# TYPE ftpdlib_{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, v: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "ftpdlib_{name} {v}");
    } else {
        let _ = writeln!(out, "ftpdlib_{name}{{{labels}}} {v}");
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    header(out, name, kind, help);
    for (labels, v) in samples {
        sample(out, name, labels, *v);
    }
}

fn metric_owned(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    header(out, name, kind, help);
    for (labels, v) in samples {
        sample(out, name, labels, *v);
    }
}

fn histogram(out: &mut String, name: &str, help: &str, series: &[(&str, &Histogram)]) {
    header(out, name, "histogram", help);
    for (labels, h) in series {
        let sep = if labels.is_empty() { "" } else { "," };
        let bounds = DURATION_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()]);
        for (le, n) in bounds.zip(&h.cumulative) {
            let l = format!("{labels}{sep}le=\"{le}\"");
            sample(out, &format!("{name}_bucket"), &l, *n as f64);
        }
        sample(out, &format!("{name}_sum"), labels, h.sum.as_secs_f64());
        sample(out, &format!("{name}_count"), labels, h.count as f64);
    }
}

/// Serves the statistics of `shared` on `listener` from a thread of this process (Pool,
/// Thread); dropping the endpoint stops it.
pub(crate) fn start(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<Endpoint> {
    let render = move || render(&shared.server_stats());
    Endpoint::start(listener, "ftp-metrics", Box::new(render))
}

/// The endpoint on a thread of this process.
pub(crate) type Endpoint = crate::exposition::Thread;

/// The endpoint in a process of its own (Fork, PreFork); call while the process runs a
/// single thread. Returns the child's pid.
pub(crate) fn fork_process(
    listener: TcpListener,
    shared: &Arc<Shared>,
    close: &[RawFd],
) -> std::io::Result<nix::unistd::Pid> {
    crate::exposition::fork("metrics", listener, close, &|| {
        render(&shared.server_stats())
    })
}

/// The pause before the first restart of a dead endpoint process.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause: a process that keeps dying is forked once a minute at most.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A process that ran this long was healthy: after its death the pauses start over.
const HEALTHY: Duration = Duration::from_secs(60);

/// The endpoint's process under Fork and PreFork, kept running by the parent (the accept
/// loop of Fork, the supervisor of PreFork), which reports each child it reaps
/// ([`reaped`](Self::reaped)) and lets the keeper restart a dead endpoint when its pause
/// is over ([`tick`](Self::tick)), both while it runs a single thread.
pub(crate) struct Keeper {
    listener: TcpListener,
    /// The parent's descriptors the endpoint's process closes.
    close: Vec<RawFd>,
    pid: Option<Pid>,
    started: Instant,
    /// When a dead endpoint is started again.
    restart_at: Option<Instant>,
    pause: Duration,
}

impl Keeper {
    /// Forks the endpoint's process, serving on `listener`.
    pub(crate) fn start(
        listener: TcpListener,
        shared: &Arc<Shared>,
        close: Vec<RawFd>,
    ) -> std::io::Result<Keeper> {
        let mut k = Keeper {
            listener,
            close,
            pid: None,
            started: Instant::now(),
            restart_at: None,
            pause: FIRST_PAUSE,
        };
        k.spawn(shared)?;
        Ok(k)
    }

    fn spawn(&mut self, shared: &Arc<Shared>) -> std::io::Result<()> {
        let pid = fork_process(self.listener.try_clone()?, shared, &self.close)?;
        log::info!("metrics endpoint: process {pid}");
        self.pid = Some(pid);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    /// Schedules the next start after the current pause, and doubles the pause.
    fn schedule(&mut self) -> Duration {
        let pause = self.pause;
        self.restart_at = Some(Instant::now() + pause);
        self.pause = (pause * 2).min(LONGEST_PAUSE);
        pause
    }

    /// Whether `pid`, reaped with `status`, was the endpoint's process; if so, its restart
    /// is scheduled.
    pub(crate) fn reaped(&mut self, pid: Pid, status: &WaitStatus) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        self.pid = None;
        if self.started.elapsed() >= HEALTHY {
            self.pause = FIRST_PAUSE;
        }
        let pause = self.schedule();
        log::warn!(
            "metrics endpoint process {pid} ended ({status:?}); restarting it in {} s",
            pause.as_secs()
        );
        true
    }

    /// Starts a dead endpoint again once its pause is over (forks: call only while this
    /// process runs a single thread).
    pub(crate) fn tick(&mut self, shared: &Arc<Shared>) {
        if self.restart_at.is_none_or(|at| Instant::now() < at) {
            return;
        }
        match self.spawn(shared) {
            Ok(()) => log::info!("metrics endpoint restarted"),
            Err(e) => {
                let pause = self.schedule();
                log::error!(
                    "cannot restart the metrics endpoint: {e}; trying again in {} s",
                    pause.as_secs()
                );
            }
        }
    }

    /// Ends the endpoint's process (killed and reaped).
    pub(crate) fn stop(self) {
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::stats::Counters;

    #[test]
    fn every_family_has_help_type_and_samples() {
        let c = Counters::new();
        let s = super::super::stats::read(std::time::SystemTime::now(), &c, None, None);
        let text = render(&s);
        for family in [
            "ftpdlib_sessions_total 0",
            "ftpdlib_logins_total{result=\"failed\"} 0",
            "ftpdlib_transfers_total{direction=\"upload\",result=\"aborted\"} 0",
            "ftpdlib_login_duration_seconds_bucket{le=\"+Inf\"} 0",
            "ftpdlib_transfer_duration_seconds_bucket{direction=\"download\",le=\"0.001\"} 0",
            "ftpdlib_transfer_duration_seconds_count{direction=\"upload\"} 0",
            "# TYPE ftpdlib_pool_workers gauge",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(helps, types);
    }
}
