//! The TLS byte stream under FTPS control and data connections (pyftpdlib
//! `SSLConnection`'s role; RFC 4217 §10–§12): the server handshake as steps a session loop
//! takes between commands, a rustls `ServerConnection` over a TCP socket that the transfer
//! loop can drive non-blocking, and the plaintext control stream after CCC (RFC 4217 §6).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use nix::poll::PollFlags;
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection};

/// A TLS connection over a TCP socket that keeps the [`Stream`](super::stream::Stream)
/// contract on blocking and non-blocking sockets alike: `write` takes plaintext only once
/// earlier records are on the wire (so `WouldBlock` never loses or repeats a byte), `read`
/// returns `Ok(0)` only after close_notify, `UnexpectedEof` for a TCP close without it,
/// `WouldBlock` when no record is complete.
#[derive(Debug)]
pub(crate) struct TlsStream {
    conn: ServerConnection,
    sock: TcpStream,
    /// Decrypted bytes (or a close_notify) wait in rustls: poll(2) would not show them.
    buffered: bool,
    /// Send close_notify when dropped (the control connection). Never for data connections:
    /// an aborted download must not look complete to the client.
    pub(crate) close_on_drop: bool,
    /// close_notify already sent.
    closed: bool,
    /// Nothing is written until the stream ends (see [`hold_output`](Self::hold_output)).
    hold: bool,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A server TLS handshake under way on a non-blocking socket. rustls is sans-IO: each
/// [`step`](Handshake::step) reads and writes what the socket allows at that moment and
/// never waits, so the thread that drives it (a session loop) polls the socket together
/// with others and takes a step whenever [`interest`](Handshake::interest) is ready.
#[derive(Debug)]
pub(crate) struct Handshake {
    conn: ServerConnection,
    sock: TcpStream,
    deadline: Option<Instant>,
}

impl Handshake {
    /// Starts a server handshake on `sock` (made non-blocking), to end by `deadline`.
    ///
    /// # Errors
    /// The socket could not be made non-blocking, or rustls refused the configuration.
    pub(crate) fn start(
        sock: TcpStream,
        config: Arc<ServerConfig>,
        deadline: Option<Instant>,
    ) -> io::Result<Handshake> {
        sock.set_nonblocking(true)?;
        let conn = ServerConnection::new(config).map_err(tls_error)?;
        Ok(Handshake {
            conn,
            sock,
            deadline,
        })
    }

    /// When the handshake must be over.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The socket.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    /// True once the handshake is over: what rustls queued then is post-handshake (TLS 1.3
    /// session tickets), which [`step`](Self::step) leaves for the stream to send.
    fn over(&self) -> bool {
        !self.conn.is_handshaking()
    }

    /// Handshake records wait to be written (the socket was full).
    fn must_write(&self) -> bool {
        self.conn.wants_write()
            && !(self.over() && self.conn.protocol_version() == Some(ProtocolVersion::TLSv1_3))
    }

    /// The poll(2) events the next step waits for: the client's records, and room in the
    /// socket while handshake records wait.
    pub(crate) fn interest(&self) -> PollFlags {
        if self.must_write() {
            PollFlags::POLLIN | PollFlags::POLLOUT
        } else {
            PollFlags::POLLIN
        }
    }

    /// Moves the handshake on as far as the socket allows without waiting: `Ok(true)` once
    /// it is over (TLS 1.2's last flight written; TLS 1.3's session tickets left queued),
    /// `Ok(false)` when it waits for the client.
    ///
    /// # Errors
    /// `TimedOut` past the deadline; the TLS alert rustls sent (`InvalidData`); the client
    /// closing the connection (`UnexpectedEof`); a socket error.
    pub(crate) fn step(&mut self) -> io::Result<bool> {
        loop {
            // A full socket does not stop the reading: a client sending while it does not
            // read must not turn the wait into a busy loop.
            let mut blocked = false;
            if self.must_write() {
                match self.conn.write_tls(&mut self.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
                    Err(e) => return Err(e),
                }
            }
            if self.over() {
                return if blocked { self.waiting() } else { Ok(true) };
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // The alert rustls queued: one attempt, the connection is over.
                        let _ = self.conn.write_tls(&mut self.sock);
                        return Err(tls_error(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.waiting(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Nothing more can move now: `Ok(false)`, or `TimedOut` once the deadline is past.
    fn waiting(&self) -> io::Result<bool> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
        }
        Ok(false)
    }

    /// Runs the handshake to its end, waiting with poll(2) (the socket is left
    /// non-blocking).
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub(crate) fn complete(&mut self) -> io::Result<()> {
        while !self.step()? {
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            crate::poll::ready([(self.sock.as_fd(), self.interest())], left)?;
        }
        Ok(())
    }

    /// The stream of a completed handshake, its post-handshake records still queued: the
    /// first write or flush sends them, and a stream that holds its output
    /// ([`TlsStream::hold_output`]) keeps them until it closes.
    pub(crate) fn finish(self) -> TlsStream {
        let mut t = TlsStream {
            conn: self.conn,
            sock: self.sock,
            buffered: false,
            close_on_drop: false,
            closed: false,
            hold: false,
        };
        t.refresh();
        t
    }
}

impl TlsStream {
    /// Runs the server handshake on a blocking socket, ending it with `TimedOut` at
    /// `deadline` (a client sending its handshake a byte at a time cannot stretch it), and
    /// sends what followed it (TLS 1.3 session tickets). The socket is blocking again after.
    pub(crate) fn accept(
        sock: TcpStream,
        config: Arc<ServerConfig>,
        deadline: Option<Instant>,
    ) -> io::Result<TlsStream> {
        let mut h = Handshake::start(sock, config, deadline)?;
        let done = h.complete();
        h.sock.set_nonblocking(false)?;
        done?;
        let mut t = h.finish();
        t.flush_tls()?;
        Ok(t)
    }

    /// Writes every pending TLS record; `WouldBlock` leaves the rest queued in rustls.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    fn refresh(&mut self) {
        self.buffered = match self.conn.process_new_packets() {
            Ok(st) => st.plaintext_bytes_to_read() > 0 || st.peer_has_closed(),
            Err(_) => true,
        };
    }

    /// The negotiated protocol version and cipher suite, for the session's stats.
    pub(crate) fn info(&self) -> crate::handlers::stats::TlsInfo {
        crate::handlers::stats::TlsInfo {
            version: self
                .conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
        }
    }

    /// A short description for logs: `TLSv1_3 TLS13_AES_256_GCM_SHA384 (resumed)`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {} ({})",
            self.conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            self.conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            match self.conn.handshake_kind() {
                Some(HandshakeKind::Resumed) => "resumed",
                _ => "full handshake",
            }
        )
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    /// Whether the handshake resumed an earlier session.
    pub(crate) fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    pub(crate) fn has_buffered_input(&self) -> bool {
        self.buffered
    }

    /// From now on nothing is written until the stream ends: records rustls queues (the
    /// session ticket that followed the handshake, a key-update reply) wait for the end.
    /// An upload's client may never read its data connection, and closing a socket with
    /// unread bytes makes a reset that can lose the end of the upload (RFC 8446 §4.6.3
    /// allows a KeyUpdate reply to wait for the next record the server sends).
    pub(crate) fn hold_output(&mut self) {
        self.hold = true;
    }

    /// Flushes, sends close_notify and half-closes the socket (call in blocking mode).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.flush_tls()?;
        self.closed = true;
        self.conn.send_close_notify();
        self.flush_tls()?;
        self.sock.shutdown(std::net::Shutdown::Write)
    }

    /// Ends TLS on the control connection (CCC, RFC 4217 §6): close_notify, then plain TCP.
    pub(crate) fn into_cleared(mut self) -> io::Result<Cleared> {
        self.flush_tls()?;
        self.closed = true;
        self.conn.send_close_notify();
        self.flush_tls()?;
        let sock = self.sock.try_clone()?;
        Ok(Cleared {
            sock,
            absorbing: true,
            buf: Vec::new(),
        })
    }
}

impl Read for TlsStream {
    /// At most one read(2) per call. When it brings no plaintext (part of a record, a
    /// ticket, a key update) the answer is `Interrupted`: the callers retry (a blocking
    /// control read) or go back to poll(2) (the transfer loop), so a partial record on the
    /// control connection never stalls a transfer.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut fetched = false;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    self.refresh();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if fetched {
                self.refresh();
                return Err(io::ErrorKind::Interrupted.into());
            }
            // Alerts or key-update replies rustls queued; on a full socket they wait.
            if !self.hold {
                match self.flush_tls() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // 0 (TCP EOF) is recorded by rustls: the reader then says Ok(0) after a
            // close_notify, UnexpectedEof without one (a truncated upload).
            self.conn.read_tls(&mut self.sock)?;
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.flush_tls();
                return Err(tls_error(e));
            }
            fetched = true;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Earlier records first: on WouldBlock nothing of `buf` has been taken.
        self.flush_tls()?;
        let n = self.conn.writer().write(buf)?;
        match self.flush_tls() {
            Ok(()) => Ok(n),
            // Taken and queued in rustls: the next write or flush sends it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // Close the control connection cleanly, and answer the client's close_notify after
        // an upload (best effort).
        let peer_closed = self.buffered
            && self
                .conn
                .process_new_packets()
                .is_ok_and(|s| s.peer_has_closed());
        if !self.closed && (self.close_on_drop || peer_closed) {
            // The socket is closing: one attempt, never a wait on a client that stopped reading.
            let _ = self.sock.set_nonblocking(true);
            self.conn.send_close_notify();
            let _ = self.conn.write_tls(&mut self.sock);
        }
    }
}

/// The control connection after CCC: plain TCP again. The client may still send its own
/// close_notify (an encrypted alert record) before the next command; TLS records at the start
/// of the plaintext stream are skipped (no FTP command starts with byte 0x15 or 0x17).
#[derive(Debug)]
pub(crate) struct Cleared {
    sock: TcpStream,
    absorbing: bool,
    buf: Vec<u8>,
}

impl Cleared {
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.absorbing && !self.buf.is_empty()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.sock.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

impl Read for Cleared {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.absorbing {
                if self.buf.is_empty() {
                    return self.sock.read(out);
                }
                let n = out.len().min(self.buf.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                return Ok(n);
            }
            match self.buf.first() {
                None => {
                    if self.fill()? == 0 {
                        return Ok(0);
                    }
                }
                Some(0x15) | Some(0x17) => {
                    if self.buf.len() < 5 {
                        if self.fill()? == 0 {
                            return Ok(0);
                        }
                        continue;
                    }
                    let len = 5 + usize::from(u16::from_be_bytes([self.buf[3], self.buf[4]]));
                    if self.buf.len() < len {
                        if self.fill()? == 0 {
                            return Ok(0);
                        }
                        continue;
                    }
                    self.buf.drain(..len);
                }
                Some(_) => self.absorbing = false,
            }
        }
    }
}

impl Write for Cleared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}
