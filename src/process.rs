//! Facts about the serving process that the FTP and TFTP servers share: what kind of
//! process a session runs in ([`ProcessKind`], a value the server hands down to whoever
//! needs it, never a global), the one `fork(2)` of the crate, allowed only while the
//! process runs a single thread, and the scheduling policy of a session's thread
//! ([`batch_scheduling`]).

use std::io;

use nix::unistd::ForkResult;

/// The kind of process a session runs in, as the server that started the session knows it.
/// An authorizer is told it at login ([`Authorizer::impersonate_user`]): only a process of
/// its own may take on a user's identity for good.
///
/// [`Authorizer::impersonate_user`]: crate::authorizers::Authorizer::impersonate_user
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessKind {
    /// The process serves many sessions at once, each on a thread of its own (the Pool and
    /// Thread models, a PreFork worker, inetd "wait"): whatever a session changes must stay
    /// with its thread.
    #[default]
    Shared,
    /// The process serves exactly one session and ends with it (a child of the Fork model,
    /// inetd "nowait"): the session may change the process itself, for good.
    SingleSession,
}

/// The number of threads the calling process runs (1 when /proc cannot tell).
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(1)
}

/// Fails unless the calling process runs a single thread: `fork()` copies only the calling
/// thread, so a lock held by another thread (allocator, logger, stdio) would stay locked
/// for ever in the child. `model` names what forks, for the message.
///
/// # Errors
/// An error saying how many threads run.
pub(crate) fn ensure_single_thread(model: &str) -> io::Result<()> {
    match threads() {
        1 => Ok(()),
        n => Err(io::Error::other(format!(
            "the {model} model forks, which needs a single-threaded process \
             ({n} threads are running)"
        ))),
    }
}

/// `fork(2)`, refused (as [`ensure_single_thread`] says) unless the process runs a single
/// thread. The FTP Fork and PreFork models and the TFTP Fork executor fork through here.
///
/// # Errors
/// Another thread runs, or the fork itself failed.
#[allow(unsafe_code)]
pub(crate) fn fork(model: &str) -> io::Result<ForkResult> {
    ensure_single_thread(model)?;
    // SAFETY: the process runs one thread (checked just above, and the callers start none
    // of their own between the check and the fork), so no other thread can hold a lock at
    // the moment of the fork; the child is an ordinary single-threaded process that may
    // allocate, log and start threads.
    Ok(unsafe { nix::unistd::fork() }?)
}

thread_local! {
    /// Whether [`batch_scheduling`] put the calling thread under `SCHED_BATCH`.
    static BATCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Puts the calling thread under `SCHED_BATCH` (`on`) or back under `SCHED_OTHER`; a
/// no-op when the thread is already there by this function's doing. Linux applies a
/// policy set with pid 0 to the calling thread only, and threads started afterwards
/// inherit it.
///
/// Why a logged-in session runs batch: a thread woken by data from its client does not
/// then preempt the process that woke it. On one host (a client on loopback) the
/// session's reply otherwise lands before the client's own `send` has even returned, so
/// each exchange costs the client an extra context switch and each streamed upload
/// more of them (measured: 35-40 % fewer context switches per uploaded MB, 8-13 % less
/// server CPU per GB). It also spares curl before 8.4 a stall: when the 227/229 reply is
/// already readable as curl checks right after sending EPSV, curl waits for its next
/// timer (200 ms, up to 1 s) before connecting the data socket (curl/curl#12042). A
/// woken batch thread still runs at once on an idle CPU; on a busy one it waits for the
/// running thread to block or for the tick. The policy keeps the thread's nice value, so
/// an unprivileged process may switch either way; a failure (a seccomp filter, say) is
/// logged at debug level and the session runs on as it was.
#[allow(unsafe_code)]
pub(crate) fn batch_scheduling(on: bool) {
    if BATCH.with(|b| b.get()) == on {
        return;
    }
    let policy = if on {
        nix::libc::SCHED_BATCH
    } else {
        nix::libc::SCHED_OTHER
    };
    let param = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call, which
    // only reads it; pid 0 names the calling thread. Nothing else is touched.
    let r = unsafe { nix::libc::sched_setscheduler(0, policy, &param) };
    if r == 0 {
        BATCH.with(|b| b.set(on));
    } else {
        log::debug!(
            "cannot set the session thread's scheduling policy: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of the calling thread, from /proc (field 41 of `stat`).
    fn policy() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(38).unwrap().parse().unwrap()
    }

    #[test]
    fn batch_scheduling_switches_the_calling_thread_only() {
        std::thread::spawn(|| {
            assert_eq!(policy(), nix::libc::SCHED_OTHER);
            batch_scheduling(true);
            assert_eq!(policy(), nix::libc::SCHED_BATCH);
            // A thread started now inherits the policy; the test's other threads did not.
            let child = std::thread::spawn(policy).join().unwrap();
            assert_eq!(child, nix::libc::SCHED_BATCH);
            batch_scheduling(true);
            assert_eq!(policy(), nix::libc::SCHED_BATCH);
            batch_scheduling(false);
            assert_eq!(policy(), nix::libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
        assert_eq!(policy(), nix::libc::SCHED_OTHER);
    }

    #[test]
    fn a_threaded_process_may_not_fork() {
        // The test harness runs tests on threads of their own: this process has several.
        std::thread::scope(|s| {
            s.spawn(|| {
                let e = fork("test").unwrap_err();
                assert!(e.to_string().contains("threads are running"), "{e}");
            });
        });
        assert_eq!(ProcessKind::default(), ProcessKind::Shared);
    }
}
