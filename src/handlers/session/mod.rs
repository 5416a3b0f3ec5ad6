//! One FTP session: the control connection of one client, from the 220 greeting to the last
//! byte (pyftpdlib `FTPHandler`'s connection state). A [`Session`] is three owned parts with
//! one job each — the control channel (control.rs: the connection, its input, replies, the
//! log prefix), the account (account.rs: the user, their filesystem, rates, the login
//! timer) and the data channel (data.rs: the prepared connection, the transfer parameters
//! and the transfer in progress) — plus the handler's configuration, the callbacks and the
//! [`SessionContext`] the server gave it.
//!
//! The session loop ([`Session::serve`]) is the only driver: each turn it either reads a
//! command line and dispatches it through the command table (dispatch.rs), or, while a
//! transfer waits for its client or runs, takes one step of it (drive.rs) and serves the
//! control lines that arrive meanwhile by the table's `busy` column (busy.rs). A command
//! that starts a transfer returns at once with the transfer handed to the data channel, so
//! no command runs inside another: a listing reads the account's filesystem at each step,
//! and one whose account logs out meanwhile (REIN, USER: RFC 959 lets the transfer finish)
//! keeps the filesystem it started with.
//!
//! The control connection may be a socket or an in-memory pipe ([`memory`]): the unit tests
//! below drive the state machine with the latter, and [`memory::run_script`] is the entry
//! point of a fuzz target.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::stats::{SessionEnd, Tally};
use super::{Callbacks, FtpHandler, SessionContext};
use crate::filesystems::listing::DEFAULT_FACTS;
use crate::filesystems::AbstractedFs;
use crate::proto::{self, TransferType};

mod account;
mod busy;
pub(crate) mod control;
pub(crate) mod data;
mod dispatch;
mod drive;
mod idle;
// The in-memory control connection serves the unit tests and, through `ftpdlib::fuzzing`,
// the fuzz targets; an ordinary build has no use for it.
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub(crate) mod memory;
#[cfg(test)]
mod tests;
mod tls;

pub(crate) use account::Account;
pub(crate) use control::{ControlChannel, Input, Transport, Via};
pub(crate) use data::{DataChannel, Ending, Listing, Phase, Plan, Setup, Work};

/// The state of one client connection. Custom commands receive it to reply and to reach the
/// user's filesystem.
pub struct Session {
    pub(crate) h: Arc<FtpHandler>,
    pub(crate) ctx: SessionContext,
    pub(crate) cb: Box<dyn Callbacks>,
    pub(crate) ctrl: ControlChannel,
    pub(crate) account: Account,
    pub(crate) data: DataChannel,
    /// The MLST/MLSD facts chosen with `OPTS MLST` (RFC 3659 §7.9).
    pub(crate) facts: Vec<String>,
    /// What the session did so far, for its stats.
    pub(crate) stats: Tally,
}

impl Session {
    /// Serves one accepted connection until the client leaves, the session times out or the
    /// socket fails, in a context of its own ([`SessionContext::default`]). Every way a
    /// connection arrives (acceptor, forked child, inetd, systemd) ends in
    /// [`run_with`](Self::run_with).
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run(stream: TcpStream, handler: Arc<FtpHandler>) -> io::Result<()> {
        Self::run_with(stream, handler, SessionContext::default())
    }

    /// Like [`run`](Self::run), with the context of the server that runs the session.
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run_with(
        stream: TcpStream,
        handler: Arc<FtpHandler>,
        ctx: SessionContext,
    ) -> io::Result<()> {
        Self::start(stream, handler, ctx, false, None)
    }

    /// Like [`run`](Self::run) on an implicit FTPS connection (port 990 style): the TLS
    /// handshake runs in this thread before the 220 greeting. The handler needs
    /// [`FtpHandler::tls`].
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run_implicit_tls(stream: TcpStream, handler: Arc<FtpHandler>) -> io::Result<()> {
        Self::run_implicit_tls_with(stream, handler, SessionContext::default())
    }

    /// [`run_implicit_tls`](Self::run_implicit_tls) with the server's context.
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run_implicit_tls_with(
        stream: TcpStream,
        handler: Arc<FtpHandler>,
        ctx: SessionContext,
    ) -> io::Result<()> {
        Self::start(stream, handler, ctx, true, None)
    }

    /// Like [`run_with`](Self::run_with) on a control connection whose socket cannot tell
    /// its addresses (inetd "nowait" over a Unix socket: servers/inetd.rs): `(peer, local)`
    /// as the launcher told them, each unspecified (`0.0.0.0:0`) when unknown. An unknown
    /// peer turns off the checks that need it (passive accept, PORT).
    ///
    /// # Errors
    /// Only errors of the control connection itself (the client vanished).
    pub fn run_with_addresses(
        stream: TcpStream,
        handler: Arc<FtpHandler>,
        ctx: SessionContext,
        addrs: (SocketAddr, SocketAddr),
    ) -> io::Result<()> {
        Self::start(stream, handler, ctx, false, Some(addrs))
    }

    /// Serves a session over an in-memory control connection ([`memory::pair`]), as if the
    /// client at `addrs.0` had connected to `addrs.1`.
    ///
    /// # Errors
    /// Only errors of the control connection itself.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub(crate) fn run_memory(
        control: memory::MemoryControl,
        handler: Arc<FtpHandler>,
        ctx: SessionContext,
        addrs: (SocketAddr, SocketAddr),
    ) -> io::Result<()> {
        let mut s = Session::boxed(handler, ctx, Transport::Memory(control), addrs);
        s.serve_and_end()
    }

    fn start(
        stream: TcpStream,
        handler: Arc<FtpHandler>,
        ctx: SessionContext,
        implicit_tls: bool,
        addrs: Option<(SocketAddr, SocketAddr)>,
    ) -> io::Result<()> {
        let (peer, local) = match addrs {
            Some(a) => a,
            None => (stream.peer_addr()?, stream.local_addr()?),
        };
        let _ = stream.set_nodelay(handler.tcp_no_delay);
        // Telnet Synch arrives as TCP urgent data (RFC 959 §4.1.3): keep it in the stream so
        // the IAC bytes before ABOR are stripped instead of lost.
        let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::OobInline, &true);
        stream.set_read_timeout(handler.timeout)?;
        stream.set_write_timeout(Some(handler.timeout.unwrap_or(Duration::from_secs(300))))?;
        let (peer, via) = match &handler.proxy_protocol {
            None => (peer, Via::Direct),
            Some(pp) => match Self::through_proxy(&stream, peer, pp, &ctx) {
                Some(arrived) => arrived,
                None => return Ok(()),
            },
        };
        // Built on the heap by a function of its own, whose frame (where the value is first
        // assembled) is gone before the session runs: the frames under `serve` stay small,
        // and so does the resident stack of an idle session's thread.
        let mut s = Session::boxed(handler, ctx, Transport::Tcp(stream), (peer, local));
        s.ctrl.implicit_tls = implicit_tls;
        s.ctrl.via = via;
        s.serve_and_end()
    }

    /// The PROXY protocol header of a control connection from `proxy` (before the 220, and
    /// before any TLS): the client it names and how it came, or `None` when the connection
    /// is to be closed (untrusted sender, missing, late or invalid header, or a client the
    /// admission refuses, which gets its 421 first). Not inlined: the header's buffer lives
    /// in this frame, gone before the session runs (see [`boxed`](Self::boxed)).
    #[inline(never)]
    fn through_proxy(
        stream: &TcpStream,
        proxy: SocketAddr,
        pp: &crate::proxy_protocol::ProxyProtocol,
        ctx: &SessionContext,
    ) -> Option<(SocketAddr, Via)> {
        use crate::proxy_protocol::Header;
        let parsed = crate::proxy_protocol::control_header(stream, proxy, pp)?;
        match parsed.header {
            // LOCAL or UNKNOWN: the balancer's own connection (a health check).
            Header::Local => Some((proxy, Via::ProxyLocal(proxy))),
            Header::Proxied { source, .. } => {
                let client = SocketAddr::new(proto::unmap(source.ip()), source.port());
                if let Err(reply) = ctx.proxied(client) {
                    let _ = (&*stream).write_all(reply.as_bytes());
                    return None;
                }
                Some((client, Via::Proxy(proxy, parsed.version)))
            }
        }
    }

    /// The session, on the heap. What formats or calls out (the log prefix, the facts, the
    /// callbacks' factory) runs here, outside the frame [`assemble`](Self::assemble) builds
    /// the value in: an idle session's thread keeps resident every stack page its deepest
    /// call touched, and this is the deepest point of a session's start.
    fn boxed(
        h: Arc<FtpHandler>,
        ctx: SessionContext,
        transport: Transport,
        addrs: (SocketAddr, SocketAddr),
    ) -> Box<Session> {
        let cb = (h.callbacks)();
        let mut s = Self::assemble(h, ctx, transport, addrs, cb);
        s.ctrl.set_user(None);
        s.facts = DEFAULT_FACTS.iter().map(|s| s.to_string()).collect();
        s
    }

    /// Not inlined: the `Session` is built in this frame (about 2 KiB), which is gone before
    /// the session loop runs (see [`serve`](Self::serve) on stack depth); nothing is called
    /// from it but the allocation.
    #[inline(never)]
    fn assemble(
        h: Arc<FtpHandler>,
        ctx: SessionContext,
        transport: Transport,
        (peer, local): (SocketAddr, SocketAddr),
        cb: Box<dyn Callbacks>,
    ) -> Box<Session> {
        let peer = SocketAddr::new(proto::unmap(peer.ip()), peer.port());
        let local = SocketAddr::new(proto::unmap(local.ip()), local.port());
        Box::new(Session {
            ctrl: ControlChannel::new(transport, (peer, local), h.max_line_length),
            h,
            ctx,
            cb,
            account: Account::new(),
            data: DataChannel::new(),
            facts: Vec::new(),
            stats: Tally::new(),
        })
    }

    #[inline(never)]
    fn serve_and_end(&mut self) -> io::Result<()> {
        self.opened();
        let r = self.serve();
        if let Err(e) = &r {
            self.failed(e);
        }
        // A client that sent QUIT waits for the close: it gets it before the session's
        // callbacks and log lines run.
        self.ctrl.hang_up();
        self.end();
        r
    }

    /// The session loop: the greeting, then one turn per command or transfer step until
    /// the session closes.
    ///
    /// An idle session's thread keeps resident every stack page its deepest call touched,
    /// so the frames under every command are kept small: what runs rarely (the end, the
    /// timeouts, the wake-ups, the command checks) is not inlined into the loop. A login
    /// then stays within two pages (8 KiB of a 10,000-session server's ~12 KiB each).
    fn serve(&mut self) -> io::Result<()> {
        if self.ctrl.implicit_tls && !self.secure_control()? {
            self.stats.ending(SessionEnd::Error);
            return Ok(());
        }
        let banner = self.h.banner.clone();
        self.reply_lines(220, &banner)?;
        let peer = self.ctrl.peer;
        self.cb.on_connect(peer);
        while !self.ctrl.closing {
            match self.data.phase {
                Phase::Connecting(..) | Phase::Securing(..) | Phase::Running(_)
                    if self.ctrl.has_buffered_input() =>
                {
                    self.serve_busy()?
                }
                Phase::Connecting(..) => self.wait_connection()?,
                Phase::Securing(..) => self.step_securing()?,
                Phase::Running(_) => self.step_transfer()?,
                Phase::Idle | Phase::Awaiting(_) => self.next_command()?,
            }
        }
        Ok(())
    }

    /// One turn between transfers: the next line (one that waited for a transfer first),
    /// dispatched.
    fn next_command(&mut self) -> io::Result<()> {
        let awaiting = matches!(self.data.phase, Phase::Awaiting(_));
        if let Some(line) = self.ctrl.pending.pop_front() {
            return self.dispatch(&line);
        }
        // Graceful shutdown: an idle session ends here (servers/shutdown.rs).
        if !awaiting && self.ctx.drain.going_idle() {
            return self.woken(false);
        }
        let input = if awaiting {
            // After a 150, waiting for the PORT/PASV that will carry the transfer.
            let deadline = self.control_deadline();
            self.ctrl
                .read_input(deadline, self.ctx.drain.wake_fds(false))?
        } else {
            self.read_idle()?
        };
        match input {
            Input::Line(line) => {
                self.ctx.drain.busy();
                self.dispatch(&line)
            }
            Input::TooLong => {
                log::warn!("{} command too long", self.ctrl.prefix);
                self.ctrl.reply(500, "Command too long.")
            }
            Input::Eof => {
                self.ctrl.closing = true;
                if self.ctx.drain.draining() {
                    self.stats.ending(SessionEnd::ServerShutdown);
                    if !awaiting {
                        let _ = self.ctrl.reply(421, "Server shutting down.");
                    }
                }
                self.stats.ending(SessionEnd::ClientClosed);
                Ok(())
            }
            Input::Timeout => {
                self.ctrl.closing = true;
                self.stats.ending(SessionEnd::Timeout);
                self.timed_out()
            }
            Input::Woken => self.woken(awaiting),
        }
    }

    /// A wake-up from the server: it ends every session now (421, or silently for
    /// `close_all`), or it drains and this session is idle (421). A transfer in progress
    /// ends without its reply, as when the client leaves.
    #[inline(never)]
    pub(crate) fn woken(&mut self, awaiting: bool) -> io::Result<()> {
        let reply = match self.ctx.drain.ending() {
            Some(silently) => !silently,
            None if !awaiting && self.ctx.drain.draining() => true,
            None => return Ok(()),
        };
        self.ctrl.closing = true;
        self.stats.ending(SessionEnd::ServerShutdown);
        if matches!(self.data.phase, Phase::Running(_)) {
            self.end_transfer(crate::handlers::dtp::Outcome::ControlGone)?;
        }
        self.cancel_phase();
        if reply {
            // Without waiting: a client that does not read must not hold the shutdown.
            self.ctrl.reply_now(421, "Server shutting down.");
        }
        Ok(())
    }

    /// The session's first log line and count. Not inlined, as what follows: these frames
    /// are gone before the session loop runs, and an idle session's thread keeps resident
    /// only the pages its deepest call touched (see [`serve`](Self::serve)).
    #[inline(never)]
    fn opened(&mut self) {
        // A balancer's health checks come every few seconds: their sessions log at debug.
        log::log!(
            self.ctrl.via.log_level(),
            "{} FTP session opened (connect{})",
            self.ctrl.prefix,
            self.ctrl.via
        );
        self.ctx.stats.session_started();
    }

    /// How a session that ended with an error ended: the client went away, or it broke.
    #[inline(never)]
    fn failed(&mut self, e: &io::Error) {
        let end = if control::is_disconnect(e) {
            SessionEnd::ClientClosed
        } else {
            SessionEnd::Error
        };
        self.stats.ending(end);
    }

    /// The transfer left behind is abandoned, then the logout and disconnect callbacks.
    #[inline(never)]
    fn end(&mut self) {
        if matches!(self.data.phase, Phase::Running(_)) {
            let _ = self.end_transfer(crate::handlers::dtp::Outcome::ControlGone);
        }
        self.cancel_phase();
        self.data.setup = Setup::None;
        self.logout();
        self.cb.on_disconnect();
        let stats = self.stats.finish(self.ctrl.peer, self.ctrl.local);
        self.ctx.stats.session_ended(stats.end);
        self.cb.on_session_end(&stats);
        log::log!(
            self.ctrl.via.log_level(),
            "{} FTP session closed (disconnect): {}, {} commands, {} bytes in, {} bytes out, \
             {:.3} s.",
            self.ctrl.prefix,
            stats.end.name(),
            stats.commands,
            stats.bytes_received,
            stats.bytes_sent,
            stats.duration.as_secs_f64()
        );
    }

    /// Forgets the logged-in user (REIN, USER again, QUIT, disconnect). A listing still
    /// running goes on with the filesystem it started with.
    pub(crate) fn logout(&mut self) {
        let fs = self.account.logout(&mut *self.cb, &self.ctrl.prefix);
        self.ctrl.set_user(None);
        self.data.rest = 0;
        if let (Phase::Running(r), Some(fs)) = (&mut self.data.phase, fs) {
            if r.lister.is_some() && r.own_fs.is_none() {
                r.own_fs = Some(fs);
            }
        }
    }

    /// Resets the account and transfer parameters (pyftpdlib `flush_account`: REIN, or USER
    /// while logged in). A transfer in progress goes on (RFC 959); one still waiting for its
    /// PORT/PASV is dropped.
    pub(crate) fn flush_account(&mut self) {
        if matches!(self.data.phase, Phase::Awaiting(_)) {
            self.cancel_phase();
        }
        self.data.setup = Setup::None;
        self.logout();
        self.account.attempted_logins = 0;
        self.data.ttype = TransferType::Ascii;
        self.data.rest = 0;
        self.data.epsv_all = false;
        self.ctrl.quit_pending = false;
    }

    /// The 211 reply to STAT without an argument (pyftpdlib `ftp_STAT`).
    pub(crate) fn status_reply(&mut self) -> io::Result<()> {
        let mut s: Vec<Vec<u8>> = Vec::new();
        s.push(format!("Connected to: {}", self.ctrl.local).into_bytes());
        if self.account.authenticated {
            s.push(format!("Logged in as: {}", self.account.username).into_bytes());
        } else if self.account.username.is_empty() {
            s.push(b"Waiting for username.".to_vec());
        } else {
            s.push(b"Waiting for password.".to_vec());
        }
        let t = if self.data.ttype == TransferType::Ascii {
            "ASCII"
        } else {
            "Binary"
        };
        s.push(format!("TYPE: {t}; STRUcture: File; MODE: Stream").into_bytes());
        s.extend(self.data.status());
        self.reply_multi(211, "FTP server status:", &s, "End of status.")
    }

    /// Sends a one-line reply `code text`.
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.ctrl.reply(code, text)
    }

    /// Sends a one-line reply whose text may hold non-UTF-8 bytes (a path).
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply_bytes(&mut self, code: u16, text: &[u8]) -> io::Result<()> {
        self.ctrl.reply_bytes(code, text)
    }

    /// Sends a reply whose text may span lines: `code-first` … `code last` (RFC 959 §4.2).
    ///
    /// # Errors
    /// The control connection failed.
    pub fn reply_lines(&mut self, code: u16, text: &str) -> io::Result<()> {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() <= 1 {
            return self.ctrl.reply(code, text.trim_end());
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
        let last = lines.last().map_or(&b""[..], |l| l.as_bytes());
        self.ctrl.last_reply = Some((code, last.to_vec()));
        self.ctrl.send_raw(&out)
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
        self.ctrl.last_reply = Some((code, last.as_bytes().to_vec()));
        self.ctrl.send_raw(&out)
    }

    /// The logged-in user, if any.
    pub fn username(&self) -> Option<&str> {
        self.account.user()
    }

    /// The client's address (IPv4-mapped addresses shown as IPv4); behind a balancer
    /// ([`FtpHandler::proxy_protocol`]), the one its PROXY header named.
    pub fn peer(&self) -> SocketAddr {
        self.ctrl.peer
    }

    /// The user's jailed filesystem, once logged in.
    pub fn fs(&mut self) -> Option<&mut AbstractedFs> {
        self.account.fs.as_mut()
    }

    /// The handler configuration this session runs with.
    pub fn handler(&self) -> &FtpHandler {
        &self.h
    }

    /// The context the server gave this session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Ends the session after the current command.
    pub fn close_when_done(&mut self) {
        self.ctrl.closing = true;
    }
}
