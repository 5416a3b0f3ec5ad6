//! File descriptors at start-up (what nginx's `worker_rlimit_nofile` is for): the soft
//! `RLIMIT_NOFILE` is raised to the hard limit, and a warning says when `max_cons`
//! sessions cannot fit in what is left, with the numbers and what to change.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::Executor;

/// Descriptors one session may hold at once in a process serving many: its control
/// connection, the data connection (or the passive listener before it), the file and,
/// during a spliced upload, a pipe's two ends. An idle session holds only the first; TLS
/// (rustls) adds none.
pub const DESCRIPTORS_PER_SESSION: u64 = 5;

/// Descriptors a serving process holds besides its sessions: standard streams, listeners,
/// epoll, eventfd, signalfd, the wake pipe, the spare descriptor, logging.
const BASE: u64 = 32;

/// The soft descriptor limit of this process.
pub(crate) fn nofile_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Raises the soft descriptor limit to the hard one; returns the soft limit now in force.
fn raise_nofile_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                log::info!("descriptor limit raised from {soft} to {hard}");
                return Some(hard);
            }
            Err(e) => log::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}"),
        }
    }
    Some(soft)
}

/// At start-up: raises the limit, then warns when `max_cons` sessions of `executor` cannot
/// fit. Forked sessions (the Fork model) each have a descriptor table of their own.
pub(crate) fn prepare(max_cons: usize, executor: Executor) {
    let Some(limit) = raise_nofile_limit() else {
        return;
    };
    if executor == Executor::Fork || max_cons == 0 {
        return;
    }
    let need = (max_cons as u64)
        .saturating_mul(DESCRIPTORS_PER_SESSION)
        .saturating_add(BASE);
    if need > limit {
        let fit = limit.saturating_sub(BASE) / DESCRIPTORS_PER_SESSION;
        log::warn!(
            "descriptor limit {limit} is too low for --max-cons {max_cons} ({DESCRIPTORS_PER_SESSION} \
             per session + {BASE} = {need}): beyond about {fit} busy sessions clients get \
             '421 Too many open files'; raise the hard limit (ulimit -Hn, LimitNOFILE=) or \
             lower --max-cons"
        );
    }
}
