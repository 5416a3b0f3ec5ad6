//! A control connection in memory: the client's bytes go through a pipe (so the session's
//! waits, which are poll(2) on the control descriptor, work unchanged) and the session's
//! replies land in a buffer the client side reads. Unit tests drive the session state
//! machine with it, without a control socket, and [`run_script`] runs a byte string of
//! control input through a whole session for fuzzing. A session on it cannot start TLS
//! (`AUTH TLS` answers 234 and the handshake fails, closing the session); data connections
//! are real loopback sockets (PASV binds one on the local address the session is given).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use crate::handlers::{FtpHandler, Session, SessionContext};

/// What the session wrote, with a signal for the client side.
#[derive(Default)]
struct Output {
    bytes: Mutex<Vec<u8>>,
    more: Condvar,
}

/// The session's end of an in-memory control connection.
pub struct MemoryControl {
    input: File,
    output: Arc<Output>,
    timeout: Option<Duration>,
}

/// The client's end of an in-memory control connection.
pub struct MemoryClient {
    input: Option<File>,
    output: Arc<Output>,
    read: usize,
}

/// A new in-memory control connection: the session's end and the client's.
///
/// # Errors
/// pipe(2) failed (out of descriptors).
pub fn pair() -> io::Result<(MemoryControl, MemoryClient)> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let output = Arc::new(Output::default());
    Ok((
        MemoryControl {
            input: File::from(rx),
            output: output.clone(),
            timeout: None,
        },
        MemoryClient {
            input: Some(File::from(tx)),
            output,
            read: 0,
        },
    ))
}

impl MemoryControl {
    /// Like a socket's read timeout: a read waits this long at most (`WouldBlock` after).
    pub(crate) fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }
}

impl Read for MemoryControl {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let [ready] = crate::poll::ready([(self.input.as_fd(), PollFlags::POLLIN)], self.timeout)?;
        if !ready {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.input.read(buf)
    }
}

impl Write for MemoryControl {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = self
            .output
            .bytes
            .lock()
            .map_err(|_| io::ErrorKind::BrokenPipe)?;
        out.extend_from_slice(buf);
        self.output.more.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for MemoryControl {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.input.as_fd()
    }
}

impl MemoryClient {
    /// Sends bytes to the session.
    ///
    /// # Errors
    /// The session is gone, or the client side was closed.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.input {
            Some(f) => f.write_all(bytes),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes the client's side: the session reads end of file.
    pub fn close(&mut self) {
        self.input = None;
    }

    /// Everything the session wrote so far.
    pub fn output(&self) -> Vec<u8> {
        self.output
            .bytes
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    /// The next whole reply (every line of a multi-line one, CRLF kept), waiting up to
    /// `limit` for it; `None` if none came.
    pub fn reply(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut out = self.output.bytes.lock().ok()?;
        loop {
            if let Some(end) = reply_end(&out[self.read..]) {
                let text = String::from_utf8_lossy(&out[self.read..self.read + end]).into_owned();
                self.read += end;
                return Some(text);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            out = self.output.more.wait_timeout(out, left).ok()?.0;
        }
    }
}

/// The length of the first complete reply in `buf`: a line `ddd text`, or `ddd-` … up to
/// the line that starts with the same code and a space (RFC 959 §4.2).
fn reply_end(buf: &[u8]) -> Option<usize> {
    let first = buf.get(..4)?;
    let mut at = 0;
    while let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') {
        let line = &buf[at..at + nl + 1];
        at += nl + 1;
        if first[3] != b'-' || (line.len() > 4 && line[..3] == first[..3] && line[3] == b' ') {
            return Some(at);
        }
    }
    None
}

/// Runs `input` through a whole session on an in-memory control connection and returns
/// every byte the session replied: the entry point of a fuzz target. The client's address
/// is 127.0.0.1, so PASV binds loopback ports; give the handler short timeouts
/// (`auth_failed_timeout` zero, a short `passive_accept_timeout` and `timeout`) so no input
/// makes the run wait.
///
/// ```
/// use std::sync::Arc;
/// use ftpdlib::authorizers::DummyAuthorizer;
/// use ftpdlib::handlers::{memory, FtpHandler};
///
/// let handler = Arc::new(FtpHandler::new(Arc::new(DummyAuthorizer::new())));
/// let out = memory::run_script(handler, b"SYST\r\nQUIT\r\n");
/// assert!(String::from_utf8_lossy(&out).contains("215 UNIX Type: L8"));
/// ```
pub fn run_script(handler: Arc<FtpHandler>, input: &[u8]) -> Vec<u8> {
    let Ok((control, mut client)) = pair() else {
        return Vec::new();
    };
    // The pipe's read end stays open until the writer is done, so a session that ends
    // before reading everything never makes the writer's write(2) raise SIGPIPE.
    let Ok(mut rest) = control.input.try_clone() else {
        return Vec::new();
    };
    let bytes = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A pipe holds 64 KiB: longer input is fed while the session reads.
        let _ = client.send(&bytes);
        client.close();
        client
    });
    let addrs = loopback_addresses();
    let _ = Session::run_memory(control, handler, SessionContext::default(), addrs);
    let _ = io::copy(&mut rest, &mut io::sink());
    match writer.join() {
        Ok(client) => client.output(),
        Err(_) => Vec::new(),
    }
}

/// The addresses an in-memory session pretends to have: a client at 127.0.0.1:40000 talking
/// to 127.0.0.1:21.
pub fn loopback_addresses() -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::from(([127, 0, 0, 1], 40000)),
        SocketAddr::from(([127, 0, 0, 1], 21)),
    )
}

#[cfg(test)]
mod tests {
    use super::reply_end;

    #[test]
    fn replies_are_split_whole() {
        assert_eq!(reply_end(b"200 ok\r\n331 x"), Some(8));
        assert_eq!(reply_end(b"211-a\r\n b\r\n211 End\r\nx"), Some(20));
        assert_eq!(reply_end(b"211-a\r\n211-b\r\n"), None);
        assert_eq!(reply_end(b"20"), None);
    }
}
