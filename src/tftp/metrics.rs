//! The TFTP server's Prometheus endpoint (`tftpd --metrics ADDR:PORT`,
//! [`TftpServer::metrics`](super::TftpServer::metrics)): its [`ServerStats`] as Prometheus
//! text (exposition format 0.0.4) at `GET /metrics`, served by tiny_http on a listener of
//! its own. Names follow the FTP endpoint's conventions: `ftpdlib_tftp_` prefix, base units
//! (bytes), `_total` on counters.
//!
//! With threads (the default executor) the endpoint is a thread of the server's process. In
//! Fork mode the acceptor must stay the only thread (it forks a child per session), so the
//! endpoint is a process of its own, forked before the first session; it reads the
//! counters in shared memory, dies with its parent (`PR_SET_PDEATHSIG`) and is killed when
//! the server stops. The counters are read, never reset: scrapers compute rates.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::stats::{ServerStats, ERROR_CODES};

/// A metric family: name (after the prefix), help, and its samples by labels.
type Family = (&'static str, &'static str, Vec<(String, u64)>);

/// The server's counters and active sessions as Prometheus text.
pub fn render(stats: &ServerStats) -> String {
    let c = stats.get_all_counters();
    let mut out = String::with_capacity(4096);
    let counters: [Family; 9] = [
        (
            "sessions_total",
            "Sessions started (requests past the rate limit and session caps).",
            vec![(String::new(), c.sessions_started)],
        ),
        (
            "session_ends_total",
            "Sessions ended, by result (finished: the whole file moved).",
            vec![
                ("result=\"finished\"".into(), c.sessions_finished),
                ("result=\"failed\"".into(), c.sessions_failed),
            ],
        ),
        (
            "requests_refused_total",
            "Requests refused, by reason.",
            vec![
                ("reason=\"rate_limited\"".into(), c.requests_rate_limited),
                ("reason=\"over_capacity\"".into(), c.requests_over_capacity),
            ],
        ),
        (
            "bad_packets_total",
            "Datagrams on the server port that were not valid requests.",
            vec![(String::new(), c.bad_packets)],
        ),
        (
            "sent_bytes_total",
            "Payload bytes sent in DATA packets, retransmissions included.",
            vec![(String::new(), c.bytes_sent)],
        ),
        (
            "received_bytes_total",
            "Payload bytes received in DATA packets (uploads).",
            vec![(String::new(), c.bytes_received)],
        ),
        (
            "packets_total",
            "Packets of sessions (DATA, OACK, ACK, ERROR), by direction.",
            vec![
                ("direction=\"sent\"".into(), c.packets_sent),
                ("direction=\"received\"".into(), c.packets_received),
            ],
        ),
        (
            "retransmitted_packets_total",
            "Packets sent again after a timeout (within the sent packets).",
            vec![(String::new(), c.retransmits)],
        ),
        (
            "errors_sent_total",
            "ERROR packets sent, by TFTP error code (RFC 1350, RFC 2347).",
            (0..ERROR_CODES)
                .map(|code| (format!("code=\"{code}\""), c.errors_by_code[code]))
                .collect(),
        ),
    ];
    for (name, help, samples) in &counters {
        family(&mut out, name, "counter", help, samples);
    }
    family(
        &mut out,
        "sessions_active",
        "gauge",
        "Sessions running now.",
        &[(String::new(), stats.active_sessions())],
    );
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP ftpdlib_tftp_{name} {help}");
    let _ = writeln!(out, "# TYPE ftpdlib_tftp_{name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "ftpdlib_tftp_{name} {v}");
        } else {
            let _ = writeln!(out, "ftpdlib_tftp_{name}{{{labels}}} {v}");
        }
    }
}

/// The running endpoint; dropping it stops it.
pub(crate) enum Endpoint {
    /// Held for its `Drop`, which stops the thread.
    Thread {
        _running: crate::exposition::Thread,
    },
    Process(nix::unistd::Pid),
}

impl Endpoint {
    /// Serves on `listener` from a thread of this process.
    pub(crate) fn thread(listener: TcpListener, stats: Arc<ServerStats>) -> std::io::Result<Self> {
        let render = move || render(&stats);
        let t = crate::exposition::Thread::start(listener, "tftp-metrics", Box::new(render))?;
        Ok(Endpoint::Thread { _running: t })
    }

    /// Serves on `listener` from a process of its own, forked now (this process must run
    /// a single thread); the child closes `close` (the server's socket) first.
    pub(crate) fn process(
        listener: TcpListener,
        stats: &ServerStats,
        close: RawFd,
    ) -> std::io::Result<Self> {
        let pid = crate::exposition::fork("TFTP metrics", listener, &[close], &|| render(stats))?;
        Ok(Endpoint::Process(pid))
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Endpoint::Process(pid) = self {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(*pid, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_samples() {
        let s = ServerStats::new(std::time::Duration::ZERO);
        ServerStats::add(&s.bytes_sent, 1234);
        s.error_sent(1);
        let text = render(&s);
        assert!(
            text.contains("ftpdlib_tftp_sent_bytes_total 1234\n"),
            "{text}"
        );
        assert!(text.contains("ftpdlib_tftp_errors_sent_total{code=\"1\"} 1\n"));
        assert!(text.contains("ftpdlib_tftp_sessions_active 0\n"));
        for l in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = l.split(' ').nth(2).unwrap_or_default();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(
                text.lines()
                    .any(|s| !s.starts_with('#') && s.starts_with(name)),
                "{name} has no sample"
            );
        }
    }
}
