//! poll(2) on a fixed set of descriptors, answered as "which are ready": the wait every
//! blocking loop of the crate shares (a session waiting for a command or a passive
//! connection, the transfer loop watching the data and control sockets together, a server
//! refusing connections while it drains).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A poll(2) timeout: `None` waits for ever; anything shorter than a millisecond waits one
/// (a zero timeout only for [`Duration::ZERO`]).
pub(crate) fn timeout(d: Option<Duration>) -> PollTimeout {
    match d {
        None => PollTimeout::NONE,
        Some(d) if d.is_zero() => PollTimeout::ZERO,
        Some(d) => {
            PollTimeout::try_from(d.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Waits up to `wait` (`None`: for ever) until one of `fds` has one of its events (or an
/// error or hang-up, which the next read or write reports), and says which did. A signal
/// interrupting the wait counts as nothing ready: callers go round their loop again.
///
/// # Errors
/// poll(2) failed for another reason than EINTR.
pub(crate) fn ready<const N: usize>(
    fds: [(BorrowedFd<'_>, PollFlags); N],
    wait: Option<Duration>,
) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|(fd, ev)| PollFd::new(fd, ev));
    match poll(&mut pfds, timeout(wait)) {
        Ok(_) => Ok(pfds.map(|p| revented(&p))),
        Err(nix::errno::Errno::EINTR) => Ok([false; N]),
        Err(e) => Err(e.into()),
    }
}

/// [`ready`] for a number of descriptors known only at run time (a server's listeners).
///
/// # Errors
/// poll(2) failed for another reason than EINTR.
pub(crate) fn ready_slice(
    fds: &[(BorrowedFd<'_>, PollFlags)],
    wait: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd> = fds.iter().map(|(fd, ev)| PollFd::new(*fd, *ev)).collect();
    match poll(&mut pfds, timeout(wait)) {
        Ok(_) => Ok(pfds.iter().map(revented).collect()),
        Err(nix::errno::Errno::EINTR) => Ok(vec![false; fds.len()]),
        Err(e) => Err(e.into()),
    }
}

/// True when poll(2) reported anything for the descriptor.
fn revented(p: &PollFd<'_>) -> bool {
    p.revents().is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn says_which_descriptor_is_ready() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let r = ready(
            [
                (b.as_fd(), PollFlags::POLLIN),
                (d.as_fd(), PollFlags::POLLIN),
            ],
            Some(Duration::ZERO),
        )
        .unwrap();
        assert_eq!(r, [false, false]);
        a.write_all(b"x").unwrap();
        let r = ready(
            [
                (b.as_fd(), PollFlags::POLLIN),
                (d.as_fd(), PollFlags::POLLIN),
            ],
            Some(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(r, [true, false]);
    }
}
