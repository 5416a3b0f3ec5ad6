//! `-b sessions`: many logged-in sessions held at once (10,000 by default), grown in steps
//! (`--sessions 1000,5000,10000`). At each step: the time to log them all in from zero (a
//! burst of `--conn-threads` connecting at a time) and the server's PSS per session (its pid
//! and descendants, from /proc), so memory and login time read as a curve. Then one `LIST`
//! from every session (pipelined in batches of `--list-batch`, which bounds the data
//! connections and ephemeral ports open at once), and `QUIT` from all.

use crate::multi::{self, Job, Outcome};
use crate::report::Report;
use crate::{mem, Config};

/// The steps of `--sessions`, ascending, without zeros or repeats.
pub fn steps(cfg: &Config) -> Vec<usize> {
    let mut v: Vec<usize> = cfg.sessions.iter().copied().filter(|&n| n > 0).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Runs the curve; true when any step fell short or a phase failed.
pub fn bench_sessions(cfg: &Config, rep: &mut Report) -> bool {
    let steps = steps(cfg);
    let Some(&max) = steps.last() else {
        rep.note("--sessions: no step");
        return true;
    };
    multi::settle();
    let base = cfg.pid.and_then(mem::tree_pss_kib).map(|(k, _)| k as f64);
    let mut clients = Vec::with_capacity(max);
    let mut login_s = 0.0;
    let mut failed = false;
    for &n in &steps {
        let (more, o) = multi::connect_n(cfg, n - clients.len());
        clients.extend(more);
        login_s += o.elapsed.as_secs_f64();
        let short = clients.len() < n;
        if short {
            rep.note(&format!(
                "{n} sessions: only {} logged in; first failure: {}",
                clients.len(),
                o.first_error.as_deref().unwrap_or("?")
            ));
        }
        let keep = |v: f64| if short { f64::NAN } else { v };
        let label = format!("{n} sessions: connect+login, from zero");
        rep.add(&format!("sessions_{n}_login_s"), &label, keep(login_s), "s");
        multi::settle();
        if let (Some(pid), Some(b)) = (cfg.pid, base) {
            if let Some((kib, procs)) = mem::tree_pss_kib(pid) {
                let label = format!("{n} sessions: server PSS ({procs} processes)");
                let mib = keep(kib as f64 / 1024.0);
                rep.add(&format!("sessions_{n}_pss_mib"), &label, mib, "MiB");
                let per = keep((kib as f64 - b) / n as f64);
                let label = format!("{n} sessions: PSS per session");
                rep.add(&format!("sessions_{n}_pss_per_kib"), &label, per, "KiB");
            }
        }
        if short {
            failed = true;
            break;
        }
    }
    let n = clients.len();
    let t = list_each(cfg, &mut clients, rep);
    let label = format!("{n} sessions: one LIST from each");
    rep.add(
        "sessions_list_s",
        &label,
        if failed { f64::NAN } else { t },
        "s",
    );
    failed |= t.is_nan();
    let o = multi::quit_all(clients, cfg.phase_limit);
    failed |= note(rep, "QUIT", &o);
    let label = format!("{n} sessions: QUIT");
    rep.add("sessions_quit_s", &label, secs(&o), "s");
    failed
}

/// One LIST from every client, `cfg.list_batch` at a time; total seconds, NaN on failure.
fn list_each(cfg: &Config, clients: &mut [crate::client::Ftp], rep: &Report) -> f64 {
    let mut total = 0.0;
    for batch in clients.chunks_mut(cfg.list_batch.max(1)) {
        let o = multi::transfer_all(cfg, batch, &Job::List, 0);
        if note(rep, "LIST from each session", &o) {
            return f64::NAN;
        }
        total += o.elapsed.as_secs_f64();
    }
    total
}

fn note(rep: &Report, what: &str, o: &Outcome) -> bool {
    if o.failed > 0 {
        rep.note(&format!(
            "{what}: {} sessions failed, first: {}",
            o.failed,
            o.first_error.as_deref().unwrap_or("?")
        ));
        return true;
    }
    false
}

fn secs(o: &Outcome) -> f64 {
    if o.failed == 0 {
        o.elapsed.as_secs_f64()
    } else {
        f64::NAN
    }
}
