//! One FTP session: the control connection of one client, from the 220 greeting to the last
//! byte (pyftpdlib `FTPHandler`'s connection state). Reads length-capped command lines,
//! dispatches them and writes replies (RFC 959 §4.2).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::data::DataSetup;
use super::stream::Stream;
use super::{Callbacks, FtpHandler};
use crate::filesystems::listing::DEFAULT_FACTS;
use crate::filesystems::AbstractedFs;
use crate::proto::{self, TransferType};

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
}

/// The state of one client connection. Custom commands receive it to reply and to reach the
/// user's filesystem.
pub struct Session {
    pub(crate) h: Arc<FtpHandler>,
    pub(crate) ctrl: Stream,
    inbuf: Vec<u8>,
    discarding: bool,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) prefix: String,
    pub(crate) username: String,
    pub(crate) authenticated: bool,
    pub(crate) attempted_logins: u32,
    /// When the login timer started: at connect, and again at every logout (REIN).
    login_since: Instant,
    pub(crate) fs: Option<AbstractedFs>,
    pub(crate) cb: Box<dyn Callbacks>,
    pub(crate) ttype: TransferType,
    pub(crate) rest: u64,
    pub(crate) rnfr: Option<PathBuf>,
    pub(crate) facts: Vec<String>,
    pub(crate) epsv_all: bool,
    pub(crate) data: DataSetup,
    /// When `data` was set up (PASV/PORT) or connected: its timers run from here.
    pub(crate) data_since: Instant,
    /// The last PORT/EPRT/PASV/EPSV was refused: the next transfer command gets 425 at
    /// once instead of waiting for a data channel (clients pipeline it after the refusal).
    pub(crate) data_refused: bool,
    /// Lines that arrived during a transfer, run once it ends (pipelining).
    pub(crate) pending: VecDeque<Vec<u8>>,
    /// QUIT arrived during a transfer: close once it ends.
    pub(crate) quit_pending: bool,
    /// End the session after the current command.
    pub(crate) closing: bool,
    /// Bytes moved and start time of the running transfer (for STAT).
    pub(crate) progress: Option<super::data::Progress>,
    /// Changes at every login and logout: a listing that borrowed the filesystem hands it
    /// back only to the account it came from (USER/PASS/REIN are answered mid-transfer).
    login_epoch: u64,
    /// Rate limits of the logged-in user (decided at login).
    pub(crate) limits: super::throttle::SessionLimits,
    /// FTPS state: PBSZ/PROT, implicit TLS, this connection's rustls configurations.
    pub(crate) tls: super::tls::TlsState,
}

impl Session {
    /// Serves one accepted connection until the client leaves, the session times out or the
    /// socket fails. Every way a connection arrives (acceptor, forked child, inetd, systemd)
    /// ends here.
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run(stream: TcpStream, handler: Arc<FtpHandler>) -> io::Result<()> {
        Self::start(stream, handler, false, None)
    }

    /// Like [`run`](Self::run) on an implicit FTPS connection (port 990 style): the TLS
    /// handshake runs in this thread before the 220 greeting. The handler needs
    /// [`FtpHandler::tls`].
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run_implicit_tls(stream: TcpStream, handler: Arc<FtpHandler>) -> io::Result<()> {
        Self::start(stream, handler, true, None)
    }

    /// Like [`run`](Self::run) on a control connection whose socket cannot tell its
    /// addresses (inetd "nowait" over a Unix socket: servers/inetd.rs): `(peer, local)` as
    /// the launcher told them, each unspecified (`0.0.0.0:0`) when unknown. An unknown peer
    /// turns off the checks that need it (data.rs, datachan.rs).
    pub(crate) fn run_with_addresses(
        stream: TcpStream,
        handler: Arc<FtpHandler>,
        (peer, local): (SocketAddr, SocketAddr),
    ) -> io::Result<()> {
        Self::start(stream, handler, false, Some((peer, local)))
    }

    fn start(
        stream: TcpStream,
        handler: Arc<FtpHandler>,
        implicit_tls: bool,
        addrs: Option<(SocketAddr, SocketAddr)>,
    ) -> io::Result<()> {
        let (peer, local) = match addrs {
            Some(a) => a,
            None => (stream.peer_addr()?, stream.local_addr()?),
        };
        let peer = SocketAddr::new(proto::unmap(peer.ip()), peer.port());
        let local = SocketAddr::new(proto::unmap(local.ip()), local.port());
        let _ = stream.set_nodelay(handler.tcp_no_delay);
        // Telnet Synch arrives as TCP urgent data (RFC 959 §4.1.3): keep it in the stream so
        // the IAC bytes before ABOR are stripped instead of lost.
        let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::OobInline, &true);
        stream.set_read_timeout(handler.timeout)?;
        stream.set_write_timeout(Some(handler.timeout.unwrap_or(Duration::from_secs(300))))?;
        let cb = (handler.callbacks)();
        // Built on the heap by a function of its own, whose frame (where the value is first
        // assembled) is gone before the session runs: the frames under `serve` stay small,
        // and so does the resident stack of an idle session's thread.
        let mut s = Session::boxed(handler, stream, peer, local, cb);
        s.tls.implicit = implicit_tls;
        log::info!("{} FTP session opened (connect)", s.prefix);
        let r = s.serve();
        s.end();
        r
    }

    #[inline(never)]
    fn boxed(
        handler: Arc<FtpHandler>,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        cb: Box<dyn Callbacks>,
    ) -> Box<Session> {
        Box::new(Session {
            prefix: format!("{}:{}-[]", peer.ip(), peer.port()),
            h: handler,
            ctrl: Stream::Tcp(stream),
            inbuf: Vec::new(),
            discarding: false,
            peer,
            local,
            username: String::new(),
            authenticated: false,
            attempted_logins: 0,
            login_since: Instant::now(),
            fs: None,
            cb,
            ttype: TransferType::Ascii,
            rest: 0,
            rnfr: None,
            facts: DEFAULT_FACTS.iter().map(|s| s.to_string()).collect(),
            epsv_all: false,
            data: DataSetup::None,
            data_since: Instant::now(),
            data_refused: false,
            pending: VecDeque::new(),
            quit_pending: false,
            closing: false,
            progress: None,
            login_epoch: 0,
            limits: Default::default(),
            tls: super::tls::TlsState::default(),
        })
    }

    fn serve(&mut self) -> io::Result<()> {
        if self.tls.implicit && !self.secure_control()? {
            return Ok(());
        }
        let banner = self.h.banner.clone();
        self.reply_lines(220, &banner)?;
        let peer = self.peer;
        self.cb.on_connect(peer);
        while !self.closing {
            // Graceful shutdown: an idle session ends here (servers/shutdown.rs).
            if self.pending.is_empty() && crate::servers::shutdown::going_idle() {
                let _ = self.reply(421, "Server shutting down.");
                break;
            }
            let line = match self.pending.pop_front() {
                Some(l) => l,
                None => match self.read_idle()? {
                    Input::Line(l) => l,
                    Input::TooLong => {
                        log::warn!("{} command too long", self.prefix);
                        self.reply(500, "Command too long.")?;
                        continue;
                    }
                    Input::Eof => {
                        if crate::servers::shutdown::draining() {
                            let _ = self.reply(421, "Server shutting down.");
                        }
                        break;
                    }
                    Input::Timeout => {
                        self.timed_out()?;
                        break;
                    }
                },
            };
            crate::servers::shutdown::busy();
            self.handle_line(&line)?;
        }
        Ok(())
    }

    /// Logout and disconnect callbacks, impersonation ended.
    fn end(&mut self) {
        self.data = DataSetup::None;
        self.logout();
        self.cb.on_disconnect();
        log::info!("{} FTP session closed (disconnect).", self.prefix);
    }

    /// Forgets the logged-in user (REIN, USER again, QUIT, disconnect).
    pub(crate) fn logout(&mut self) {
        self.login_epoch = self.login_epoch.wrapping_add(1);
        if self.authenticated {
            let user = std::mem::take(&mut self.username);
            if let Err(e) = self.h.authorizer.terminate_impersonation(&user) {
                log::error!("{} terminate_impersonation: {e}", self.prefix);
            }
            self.cb.on_logout(&user);
            let shown = proto::log_escape(user.as_bytes());
            log::info!("{} USER '{shown}' logged out.", self.prefix);
        }
        self.authenticated = false;
        self.login_since = Instant::now();
        self.username.clear();
        self.fs = None;
        self.limits = Default::default();
        self.rnfr = None;
        self.rest = 0;
        self.prefix = format!("{}:{}-[]", self.peer.ip(), self.peer.port());
    }

    /// Takes the user's filesystem out of the session for a listing that streams while the
    /// session keeps answering commands; give it back with [`restore_fs`](Self::restore_fs).
    pub(crate) fn take_fs(&mut self) -> Option<(AbstractedFs, u64)> {
        self.fs.take().map(|fs| (fs, self.login_epoch))
    }

    /// Gives a borrowed filesystem back, unless the account changed meanwhile (the new
    /// account has its own filesystem, or none after a logout).
    pub(crate) fn restore_fs(&mut self, fs: AbstractedFs, epoch: u64) {
        if epoch == self.login_epoch {
            self.fs = Some(fs);
        }
    }

    /// A new account logged in with this filesystem.
    pub(crate) fn set_login_fs(&mut self, fs: AbstractedFs) {
        self.login_epoch = self.login_epoch.wrapping_add(1);
        self.fs = Some(fs);
    }

    /// When waiting for a command that starts now must end: the idle timeout from now
    /// (the previous command is complete), or the login deadline if that comes first.
    pub(crate) fn control_deadline(&self) -> Option<Instant> {
        let idle = self.h.timeout.map(|t| Instant::now() + t);
        let login = match self.h.login_timeout {
            Some(t) if !self.authenticated => Some(self.login_since + t),
            _ => None,
        };
        match (idle, login) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Says why the control connection is closing after [`Input::Timeout`] and logs it.
    pub(crate) fn timed_out(&mut self) -> io::Result<()> {
        let login_over = self
            .h
            .login_timeout
            .is_some_and(|t| !self.authenticated && self.login_since.elapsed() >= t);
        if login_over {
            log::info!("{} login timed out", self.prefix);
            self.reply(421, "Login timed out.")
        } else {
            log::info!("{} control connection timed out", self.prefix);
            self.reply(421, "Control connection timed out.")
        }
    }

    /// Reads the next control line, waiting until `deadline` at most. The deadline holds for
    /// the whole line: bytes that arrive without completing one do not extend it, so a
    /// client dribbling a byte at a time cannot hold the connection (each read(2) waits only
    /// for what is left).
    pub(crate) fn read_input(&mut self, deadline: Option<Instant>) -> io::Result<Input> {
        loop {
            if let Some(input) = self.take_line() {
                return Ok(input);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(Input::Timeout);
            }
            self.ctrl.tcp().set_read_timeout(left)?;
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

    /// Splits the next complete line off the input buffer, if there is one.
    pub(crate) fn take_line(&mut self) -> Option<Input> {
        let (len, consumed) = proto::find_line(&self.inbuf)?;
        let line: Vec<u8> = self.inbuf[..len].to_vec();
        self.inbuf.drain(..consumed);
        if std::mem::take(&mut self.discarding) || len > self.h.max_line_length {
            return Some(Input::TooLong);
        }
        Some(Input::Line(line))
    }

    /// One read(2) from the control connection into the input buffer. A line growing past
    /// `max_line_length` is dropped as it arrives and reported as too long at its end, so
    /// memory stays bounded.
    pub(crate) fn read_once(&mut self) -> io::Result<usize> {
        if self.inbuf.len() > self.h.max_line_length && proto::find_line(&self.inbuf).is_none() {
            self.discarding = true;
            self.inbuf.clear();
        }
        // Straight into the line buffer's spare room, not through an array on the stack: the
        // stack of an idle session's thread then stays two pages deep.
        let start = self.inbuf.len();
        self.inbuf.resize(start + 512, 0);
        let r = self.ctrl.read(&mut self.inbuf[start..]);
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
    pub(crate) fn has_buffered_line(&self) -> bool {
        proto::find_line(&self.inbuf).is_some() || self.ctrl.has_buffered_input()
    }

    /// Sends a one-line reply `code text`.
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.reply_bytes(code, text.as_bytes())
    }

    /// Sends a one-line reply whose text may hold non-UTF-8 bytes (a path).
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply_bytes(&mut self, code: u16, text: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(text.len() + 6);
        out.extend_from_slice(code.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&proto::escape_line(text));
        log::debug!("{} -> {}", self.prefix, proto::log_escape(&out));
        out.extend_from_slice(b"\r\n");
        self.send_raw(&out)
    }

    /// Sends a reply whose text may span lines: `code-first` … `code last` (RFC 959 §4.2).
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply_lines(&mut self, code: u16, text: &str) -> io::Result<()> {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() <= 1 {
            return self.reply(code, text.trim_end());
        }
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if i + 1 == lines.len() {
                out.extend_from_slice(format!("{code} ").as_bytes());
            } else if i == 0 {
                out.extend_from_slice(format!("{code}-").as_bytes());
            } else {
                // Continuation lines start with a space so none looks like a final line.
                out.push(b' ');
            }
            out.extend_from_slice(&proto::escape_line(l.as_bytes()));
            out.extend_from_slice(b"\r\n");
        }
        self.send_raw(&out)
    }

    /// Sends a multi-line reply: `code-first`, each body line indented by one space, then
    /// `code last`.
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply_multi(
        &mut self,
        code: u16,
        first: &str,
        body: &[Vec<u8>],
        last: &str,
    ) -> io::Result<()> {
        let mut out = format!("{code}-").into_bytes();
        out.extend_from_slice(&proto::escape_line(first.as_bytes()));
        out.extend_from_slice(b"\r\n");
        for l in body {
            out.push(b' ');
            out.extend_from_slice(&proto::escape_line(l));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("{code} ").as_bytes());
        out.extend_from_slice(&proto::escape_line(last.as_bytes()));
        out.extend_from_slice(b"\r\n");
        self.send_raw(&out)
    }

    /// Writes bytes to the control connection as they are: every name in them must have
    /// been through [`proto::escape_line`] (or [`proto::quote_path`]).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.ctrl.write_all(bytes)?;
        self.ctrl.flush()
    }

    /// The logged-in user, if any.
    pub fn username(&self) -> Option<&str> {
        self.authenticated.then_some(self.username.as_str())
    }

    /// The client's address (IPv4-mapped addresses shown as IPv4).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The user's jailed filesystem, once logged in.
    pub fn fs(&mut self) -> Option<&mut AbstractedFs> {
        self.fs.as_mut()
    }

    /// The handler configuration this session runs with.
    pub fn handler(&self) -> &FtpHandler {
        &self.h
    }

    /// Ends the session after the current command.
    pub fn close_when_done(&mut self) {
        self.closing = true;
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
