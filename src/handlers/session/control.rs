//! The control channel part of a session: the connection (plain TCP, TLS after AUTH or on an
//! implicit FTPS listener, plaintext again after CCC, or in memory), the input buffer it
//! reads length-capped command lines from (RFC 959 §4.1, RFC 2640 §3.1), the lines that wait
//! for a transfer to end, the replies (RFC 959 §4.2) and the log prefix
//! (pyftpdlib's `ip:port-[user]`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use super::memory::MemoryControl;
use crate::handlers::context::WakeFds;
use crate::handlers::dtp::tls_stream::{Cleared, TlsStream};
use crate::handlers::tls::SessionConfigs;
use crate::proto;

/// The connection under the control channel.
pub(crate) enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (AUTH TLS, implicit FTPS).
    Tls(Box<TlsStream>),
    /// Plaintext again after CCC (RFC 4217 §6).
    Cleared(Box<Cleared>),
    /// In memory (unit tests, fuzzing): see memory.rs.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    Memory(MemoryControl),
}

impl Transport {
    /// The TCP socket underneath, if there is one.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Tls(t) => Some(t.tcp()),
            Transport::Cleared(c) => Some(c.tcp()),
            Transport::Memory(_) => None,
        }
    }

    /// True when decrypted bytes wait in TLS, where poll(2) would not show them.
    fn has_buffered_input(&self) -> bool {
        match self {
            Transport::Tls(t) => t.has_buffered_input(),
            Transport::Cleared(c) => c.has_buffered_input(),
            Transport::Tcp(_) | Transport::Memory(_) => false,
        }
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Transport::Memory(m) => {
                m.set_read_timeout(t);
                Ok(())
            }
            other => match other.tcp() {
                Some(s) => s.set_read_timeout(t),
                None => Ok(()),
            },
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
            Transport::Cleared(c) => c.read(buf),
            Transport::Memory(m) => m.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
            Transport::Cleared(c) => c.write(buf),
            Transport::Memory(m) => m.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
            Transport::Cleared(c) => c.flush(),
            Transport::Memory(m) => m.flush(),
        }
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Memory(m) => m.as_fd(),
            Transport::Tcp(s) => s.as_fd(),
            Transport::Tls(t) => t.tcp().as_fd(),
            Transport::Cleared(c) => c.tcp().as_fd(),
        }
    }
}

/// How the control connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// From the client itself.
    Direct,
    /// Through the balancer at this address, whose PROXY header (this version) named the
    /// client: the channel's `peer` is the client.
    Proxy(SocketAddr, u8),
    /// From the balancer at this address, for itself (a LOCAL or UNKNOWN header: a health
    /// check): the channel's `peer` is the balancer.
    ProxyLocal(SocketAddr),
}

impl Via {
    /// How loudly the session's opening and closing are logged.
    pub(crate) fn log_level(self) -> log::Level {
        match self {
            Via::ProxyLocal(_) => log::Level::Debug,
            _ => log::Level::Info,
        }
    }
}

/// What the session's first log line adds: the balancer, when there is one.
impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Direct => Ok(()),
            Via::Proxy(p, v) => write!(f, " via {p}, PROXY v{v}"),
            Via::ProxyLocal(p) => write!(f, " from proxy {p} for itself"),
        }
    }
}

/// What reading the control connection produced.
pub(crate) enum Input {
    /// A complete command line (terminator removed, not yet cleaned).
    Line(Vec<u8>),
    /// A line longer than `max_line_length` (discarded).
    TooLong,
    /// The client closed the connection.
    Eof,
    /// Nothing arrived within the idle timeout.
    Timeout,
    /// A wake-up descriptor of the server ([`WakeFds`]) fired: it drains or ends every
    /// session now.
    Woken,
}

/// The control channel of one session.
pub(crate) struct ControlChannel {
    pub(crate) transport: Transport,
    inbuf: Vec<u8>,
    discarding: bool,
    max_line: usize,
    /// The client's address (IPv4-mapped addresses shown as IPv4; unspecified when the
    /// connection cannot tell it).
    pub(crate) peer: SocketAddr,
    /// The server's address of this connection.
    pub(crate) local: SocketAddr,
    /// Directly, or through a balancer (PROXY protocol).
    pub(crate) via: Via,
    /// pyftpdlib's log prefix `ip:port-[user]`.
    pub(crate) prefix: String,
    /// Lines that arrived during a transfer, run once it ends (pipelining).
    pub(crate) pending: VecDeque<Vec<u8>>,
    /// End the session after the current command.
    pub(crate) closing: bool,
    /// QUIT arrived during a transfer: close once it ends.
    pub(crate) quit_pending: bool,
    /// The listener is implicit FTPS: the handshake runs before the 220.
    pub(crate) implicit_tls: bool,
    /// This connection's rustls configurations (made at the first handshake).
    pub(crate) tls_configs: Option<SessionConfigs>,
    /// The code and text of the last reply sent (its last line), for the command's log line.
    pub(crate) last_reply: Option<(u16, Vec<u8>)>,
}

impl ControlChannel {
    /// A control channel over `transport`, lines capped at `max_line` bytes.
    pub(crate) fn new(
        transport: Transport,
        (peer, local): (SocketAddr, SocketAddr),
        max_line: usize,
    ) -> ControlChannel {
        ControlChannel {
            transport,
            inbuf: Vec::new(),
            discarding: false,
            max_line,
            peer,
            local,
            via: Via::Direct,
            prefix: String::new(),
            pending: VecDeque::new(),
            closing: false,
            quit_pending: false,
            implicit_tls: false,
            tls_configs: None,
            last_reply: None,
        }
    }

    /// Sets the log prefix for a logged-in user (or none).
    /// Once the address part is there, only the user part is replaced: formatting the
    /// address again (std's `Ipv4Addr` display nests a second `fmt::write`) ran at the bottom
    /// of a login's stack, and took an idle session's thread onto a third stack page.
    pub(crate) fn set_user(&mut self, shown: Option<&str>) {
        // An address and port never hold "-[", so the first one ends the address part.
        if let Some(i) = self.prefix.find("-[") {
            self.prefix.truncate(i + 2);
        } else {
            let (ip, port) = (self.peer.ip(), self.peer.port());
            self.prefix = format!("{ip}:{port}-[");
        }
        self.prefix.push_str(shown.unwrap_or(""));
        self.prefix.push(']');
    }

    /// The descriptor to poll for input.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.transport.as_fd()
    }

    /// True when the control connection is encrypted now.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls(_))
    }

    /// Reads the next control line, waiting until `deadline` at most, or until one of the
    /// server's `wake` descriptors fires ([`Input::Woken`]). The deadline holds for the
    /// whole line: bytes that arrive without completing one do not extend it, so a client
    /// dribbling a byte at a time cannot hold the connection (each wait is only for what is
    /// left).
    pub(crate) fn read_input(
        &mut self,
        deadline: Option<Instant>,
        wake: WakeFds<'_>,
    ) -> io::Result<Input> {
        loop {
            if let Some(input) = self.take_line() {
                return Ok(input);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(Input::Timeout);
            }
            match self.wait_readable(left, wake)? {
                Some(true) => {}
                // Woken, or a wait that ended early: the deadline decides.
                Some(false) => continue,
                None => return Ok(Input::Woken),
            }
            match self.read_once() {
                Ok(0) => return Ok(Input::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Input::Timeout)
                }
                Err(e) if is_disconnect(&e) => return Ok(Input::Eof),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits up to `left` for input. With wake-up descriptors and a socket, poll(2) waits
    /// on them all: `Some(true)` input, `Some(false)` nothing yet, `None` woken. Otherwise
    /// the socket's read timeout is set for the blocking read that follows (`Some(true)`).
    fn wait_readable(
        &mut self,
        left: Option<Duration>,
        wake: WakeFds<'_>,
    ) -> io::Result<Option<bool>> {
        let fd = match self.transport.tcp() {
            Some(s) if wake.any() && !self.transport.has_buffered_input() => s.as_fd(),
            _ => {
                self.transport.set_read_timeout(left)?;
                return Ok(Some(true));
            }
        };
        let [end, drain] = wake.or(fd);
        let [c, e, d] = crate::poll::ready(
            [
                (fd, PollFlags::POLLIN),
                (end, PollFlags::POLLIN),
                (drain, PollFlags::POLLIN),
            ],
            left,
        )?;
        if (e && wake.end.is_some()) || (d && wake.drain.is_some()) {
            return Ok(None);
        }
        Ok(Some(c))
    }

    /// Splits the next complete line off the input buffer, if there is one.
    pub(crate) fn take_line(&mut self) -> Option<Input> {
        let (len, consumed) = proto::find_line(&self.inbuf)?;
        let line: Vec<u8> = self.inbuf[..len].to_vec();
        self.inbuf.drain(..consumed);
        if std::mem::take(&mut self.discarding) || len > self.max_line {
            return Some(Input::TooLong);
        }
        Some(Input::Line(line))
    }

    /// One read(2) from the control connection into the input buffer. A line growing past
    /// `max_line_length` is dropped as it arrives and reported as too long at its end, so
    /// memory stays bounded.
    pub(crate) fn read_once(&mut self) -> io::Result<usize> {
        if self.inbuf.len() > self.max_line && proto::find_line(&self.inbuf).is_none() {
            self.discarding = true;
            self.inbuf.clear();
        }
        // Straight into the line buffer's spare room, not through an array on the stack: the
        // stack of an idle session's thread then stays two pages deep.
        let start = self.inbuf.len();
        self.inbuf.resize(start + 512, 0);
        let r = self.transport.read(&mut self.inbuf[start..]);
        self.inbuf.truncate(start + r.as_ref().map_or(0, |n| *n));
        r
    }

    /// Drops every control byte received but not yet run: plaintext the client pipelined
    /// behind AUTH must never execute once TLS is up (RFC 4217 §4; STARTTLS injection).
    pub(crate) fn discard_input(&mut self) {
        self.inbuf.clear();
        self.discarding = false;
        self.pending.clear();
    }

    /// True when a complete line is already buffered.
    pub(crate) fn has_line(&self) -> bool {
        proto::find_line(&self.inbuf).is_some()
    }

    /// True when input is waiting where poll(2) on the socket would not show it: a
    /// complete line in the buffer, or decrypted bytes in TLS.
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.has_line() || self.transport.has_buffered_input()
    }

    /// Sends a one-line reply `code text`.
    pub(crate) fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.reply_bytes(code, text.as_bytes())
    }

    /// Sends a one-line reply whose text may hold non-UTF-8 bytes (a path).
    pub(crate) fn reply_bytes(&mut self, code: u16, text: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(text.len() + 6);
        out.extend_from_slice(code.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&proto::escape_line(text));
        log::debug!("{} -> {}", self.prefix, proto::log_escape(&out));
        out.extend_from_slice(b"\r\n");
        self.last_reply = Some((code, text.to_vec()));
        self.send_raw(&out)
    }

    /// Closes a plain TCP control connection for writing now (the client sees its end at
    /// once). TLS connections are left to their drop, which sends close_notify first.
    pub(crate) fn hang_up(&mut self) {
        if let Transport::Tcp(s) = &self.transport {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Sends a one-line reply without waiting for the client to read it (the session is
    /// closing: a client that stopped reading gets nothing more, and holds nothing up).
    pub(crate) fn reply_now(&mut self, code: u16, text: &str) {
        if let Some(s) = self.transport.tcp() {
            let _ = s.set_nonblocking(true);
        }
        let _ = self.reply(code, text);
    }

    /// Writes bytes to the control connection as they are: every name in them must have
    /// been through [`proto::escape_line`] (or [`proto::quote_path`]).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.transport.write_all(bytes)?;
        self.transport.flush()
    }
}

impl Drop for ControlChannel {
    /// A command that panicked ends the session (the executors catch the panic): the client
    /// is told before the socket closes, without waiting (plain bytes even under TLS, whose
    /// state the panic may have left anywhere).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(s) = self.transport.tcp() {
            let _ = nix::sys::socket::send(
                std::os::fd::AsRawFd::as_raw_fd(s),
                b"421 Internal error; closing connection.\r\n",
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            );
        }
    }
}

/// True for the errors that just mean "the other side is gone".
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}
