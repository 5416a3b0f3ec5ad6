//! Facts about the serving process that the FTP and TFTP servers share: what kind of
//! process a session runs in ([`ProcessKind`], a value the server hands down to whoever
//! needs it, never a global) and the one `fork(2)` of the crate, allowed only while the
//! process runs a single thread.

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

#[cfg(test)]
mod tests {
    use super::*;

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
