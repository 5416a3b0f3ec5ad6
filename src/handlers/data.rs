//! The data connection (pyftpdlib `PassiveDTP`, `ActiveDTP`): opening the channel
//! (RFC 959 §3.2, 125 vs 150, passive connections only from the client's address), the
//! timers of an idle channel, and the control commands answered while a transfer runs
//! (RFC 1123 §4.1.3.4). Moving the bytes is `transfer_loop.rs`.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::session::{Input, Session};
use super::stream::Stream;
use crate::proto::{self, TransferType};

/// How the next data connection will be made.
#[derive(Debug, Default)]
pub(crate) enum DataSetup {
    /// Neither PORT nor PASV yet (or the last transfer used it up).
    #[default]
    None,
    /// PASV/EPSV: a listener waiting for the client.
    Passive(TcpListener),
    /// PORT/EPRT: already connected to the client (pyftpdlib connects at PORT time).
    Active(Stream),
}

/// Bytes moved by the running transfer (for STAT).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) start: Instant,
}

/// What control input did during a transfer.
pub(crate) enum Ctl {
    Continue,
    Abort,
    Gone,
}

/// Commands that move data over the data channel.
const TRANSFER_CMDS: &[&str] = &["RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"];

/// Commands that set the data channel up.
const SETUP_CMDS: &[&str] = &["PASV", "EPSV", "PORT", "EPRT"];

/// Commands that change the control or data channel's protection (RFC 4217): never in the
/// middle of a transfer.
const TLS_CMDS: &[&str] = &["AUTH", "CCC", "PBSZ", "PROT"];

pub(crate) fn timeout_ms(d: Option<Duration>) -> PollTimeout {
    match d {
        None => PollTimeout::NONE,
        Some(d) => {
            PollTimeout::try_from(d.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Send and receive buffer of a data connection, in bytes (Linux doubles it).
///
/// Left to autotuning, every download socket grows its send buffer (and the client its
/// receive buffer) toward `tcp_wmem`/`tcp_rmem` maxima of several MiB. A thousand concurrent
/// transfers then exceed `tcp_mem`: the kernel enters memory pressure, drops segments even on
/// loopback and recovers only through retransmission timeouts, stalling transfers for tens of
/// seconds. A fixed buffer bounds each transfer's bytes in flight; 128 KiB (256 KiB once
/// doubled) still reaches the loopback sendfile limit with one client.
pub(crate) const DATA_SOCKET_BUFFER: usize = 128 * 1024;

/// Caps a data socket's buffers (see [`DATA_SOCKET_BUFFER`]); failure only loses the cap.
pub(crate) fn limit_socket_buffers(s: &std::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(s, sockopt::SndBuf, &DATA_SOCKET_BUFFER);
    let _ = setsockopt(s, sockopt::RcvBuf, &DATA_SOCKET_BUFFER);
}

pub(crate) use super::transfer_loop::{Outcome, Source};

/// True for EMFILE and ENFILE: the process or the system is out of file descriptors.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE)
    )
}

impl Session {
    /// Takes the prepared data connection, replying 125 (already open) or 150 (about to
    /// open), then waiting for a passive client. `None` when a reply already refused it
    /// (425 with the reason when the process is out of descriptors: the session goes on).
    pub(crate) fn open_data(&mut self, mark: Option<&[u8]>) -> io::Result<Option<Stream>> {
        match self.open_data_channel(mark) {
            Err(e) if out_of_descriptors(&e) => {
                log::warn!("{} cannot accept the data connection: {e}", self.prefix);
                let why = crate::filesystems::strerror(&e);
                self.reply(425, &format!("Can't open data connection: {why}."))?;
                Ok(None)
            }
            r => r,
        }
    }

    fn open_data_channel(&mut self, mark: Option<&[u8]>) -> io::Result<Option<Stream>> {
        let prelim = |open: bool| -> Vec<u8> {
            match mark {
                Some(m) => m.to_vec(),
                None if open => b"Data connection already open. Transfer starting.".to_vec(),
                None => b"File status okay. About to open data connection.".to_vec(),
            }
        };
        let mut replied = false;
        let setup = match std::mem::take(&mut self.data) {
            DataSetup::None if self.data_refused => {
                // lftp pipelines LIST/RETR after its EPRT/PORT and falls back to passive
                // mode on a 425; waiting here would stall it.
                self.reply(425, "Use PORT or PASV first.")?;
                return Ok(None);
            }
            DataSetup::None => {
                // pyftpdlib queues the transfer and answers 150: the data channel may still
                // come from a PORT/EPRT/PASV/EPSV sent after the command.
                self.reply_bytes(150, &prelim(false))?;
                replied = true;
                match self.await_data_setup()? {
                    Some(setup) => setup,
                    None => return Ok(None),
                }
            }
            other => other,
        };
        match setup {
            DataSetup::None => Ok(None),
            DataSetup::Active(s) => {
                if !replied {
                    self.reply_bytes(125, &prelim(true))?;
                }
                self.secure_data(s)
            }
            DataSetup::Passive(listener) => {
                listener.set_nonblocking(true)?;
                if let Some(s) = self.accept_data(&listener)? {
                    if !replied {
                        self.reply_bytes(125, &prelim(true))?;
                    }
                    return self.secure_data(s);
                }
                if !replied {
                    self.reply_bytes(150, &prelim(false))?;
                }
                // pyftpdlib `PassiveDTP.timeout` runs from PASV, not from the command.
                let deadline = self.pasv_deadline();
                loop {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        log::info!("{} passive data channel timed out", self.prefix);
                        self.reply(421, "Passive data channel timed out.")?;
                        return Ok(None);
                    }
                    let (lrev, crev) = {
                        let mut fds = [
                            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                            PollFd::new(self.ctrl.as_fd(), PollFlags::POLLIN),
                        ];
                        let t = if self.has_buffered_line() {
                            Some(Duration::ZERO)
                        } else {
                            left
                        };
                        match poll(&mut fds, timeout_ms(t)) {
                            Ok(_) => {}
                            Err(nix::errno::Errno::EINTR) => continue,
                            Err(e) => return Err(e.into()),
                        }
                        (
                            fds[0].revents().map(|r| !r.is_empty()).unwrap_or(false),
                            fds[1].revents().map(|r| !r.is_empty()).unwrap_or(false),
                        )
                    };
                    if crev || self.has_buffered_line() {
                        match self.service_control()? {
                            Ctl::Continue if self.quit_pending => {
                                // pyftpdlib: QUIT before the data connection closes at once.
                                self.quit_pending = false;
                                self.closing = true;
                                return Ok(None);
                            }
                            Ctl::Continue => {}
                            Ctl::Abort => {
                                // pyftpdlib: nothing was transferred, so a single 225.
                                self.reply(225, "ABOR command successful; data channel closed.")?;
                                return Ok(None);
                            }
                            Ctl::Gone => {
                                self.closing = true;
                                return Ok(None);
                            }
                        }
                    }
                    if lrev {
                        if let Some(s) = self.accept_data(&listener)? {
                            return self.secure_data(s);
                        }
                    }
                }
            }
        }
    }

    /// When the passive listener set up by PASV/EPSV stops waiting (`None`: a zero
    /// `passive_accept_timeout` disables the timer, as pyftpdlib's 0 does).
    fn pasv_deadline(&self) -> Option<Instant> {
        let t = self.h.passive_accept_timeout;
        (!t.is_zero()).then(|| self.data_since + t)
    }

    /// After a 150 for a transfer asked for before any PORT/PASV: runs the commands that
    /// follow until one of them sets a data channel up (pyftpdlib `_in_dtp_queue` /
    /// `_out_dtp_queue`). `None` when the transfer is given up (ABOR, another transfer
    /// command, the client gone).
    fn await_data_setup(&mut self) -> io::Result<Option<DataSetup>> {
        loop {
            let line = match self.read_input(self.control_deadline())? {
                Input::Line(l) => l,
                Input::TooLong => {
                    self.reply(500, "Command too long.")?;
                    continue;
                }
                Input::Eof => {
                    self.closing = true;
                    return Ok(None);
                }
                Input::Timeout => {
                    self.timed_out()?;
                    self.closing = true;
                    return Ok(None);
                }
            };
            let clean = proto::clean_line(&line);
            let (verb, _) = proto::split_command(&clean);
            let tail = verb.get(verb.len().saturating_sub(4)..).unwrap_or("");
            if tail == "ABOR" {
                self.reply(225, "No transfer to abort.")?;
                return Ok(None);
            }
            if TRANSFER_CMDS.contains(&verb.as_str()) {
                // A second transfer replaces the one waiting for its channel.
                self.reply(425, "Use PORT or PASV first.")?;
                self.pending.push_back(line);
                return Ok(None);
            }
            self.handle_line(&line)?;
            if self.closing {
                return Ok(None);
            }
            if !matches!(self.data, DataSetup::None) {
                return Ok(Some(std::mem::take(&mut self.data)));
            }
        }
    }

    /// Waits for the next command between transfers, running the timers pyftpdlib keeps on
    /// a data channel set up in advance: a passive listener not connected to within
    /// `passive_accept_timeout` is closed with `421 Passive data channel timed out.`; a
    /// connected data channel left unused for `data_timeout` ends the session with
    /// `421 Data connection timed out.`, and while one is connected the control idle
    /// timeout is suspended (pyftpdlib `PassiveDTP.handle_timeout`,
    /// `DTPHandler.handle_timeout`, `_on_dtp_connection`). A passive connection made early
    /// is accepted at once, as pyftpdlib does. The idle timer runs from the end of the last
    /// command, and bytes that do not complete a line do not reset it.
    pub(crate) fn read_idle(&mut self) -> io::Result<Input> {
        let idle_deadline = self.control_deadline();
        loop {
            if self.has_buffered_line() || matches!(self.data, DataSetup::None) {
                return self.read_input(idle_deadline);
            }
            let connected = matches!(self.data, DataSetup::Active(_));
            let deadline = if connected {
                self.h.data_timeout.map(|t| self.data_since + t)
            } else {
                match (idle_deadline, self.pasv_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let (lrev, crev) = {
                let listener = match &self.data {
                    DataSetup::Passive(l) => Some(l),
                    _ => None,
                };
                let mut fds = vec![PollFd::new(self.ctrl.as_fd(), PollFlags::POLLIN)];
                if let Some(l) = listener {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout_ms(wait)) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                let ready = |f: &PollFd| f.revents().map(|r| !r.is_empty()).unwrap_or(false);
                (fds.get(1).is_some_and(ready), ready(&fds[0]))
            };
            if crev {
                // The idle timer is suspended while a data channel is connected: the line
                // that starts now gets a full timeout.
                let deadline = if connected {
                    self.control_deadline()
                } else {
                    idle_deadline
                };
                return self.read_input(deadline);
            }
            if lrev {
                if let DataSetup::Passive(listener) = std::mem::take(&mut self.data) {
                    listener.set_nonblocking(true)?;
                    match self.accept_data(&listener) {
                        Ok(Some(conn)) => {
                            self.data = DataSetup::Active(conn);
                            self.data_since = Instant::now();
                        }
                        Ok(None) => self.data = DataSetup::Passive(listener),
                        Err(e) if out_of_descriptors(&e) => {
                            // No command to answer yet: the channel is dropped and the
                            // next transfer command gets 425 at once.
                            log::warn!("{} cannot accept a data connection: {e}", self.prefix);
                            self.data_refused = true;
                        }
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let now = Instant::now();
            if connected {
                if deadline.is_some_and(|d| now >= d) {
                    log::info!("{} data connection timed out", self.prefix);
                    self.data = DataSetup::None;
                    self.reply(421, "Data connection timed out.")?;
                    // The session ends here, as after any 421.
                    return Ok(Input::Eof);
                }
            } else if idle_deadline.is_some_and(|d| now >= d) {
                return Ok(Input::Timeout);
            } else if self.pasv_deadline().is_some_and(|d| now >= d) {
                log::info!("{} passive data channel timed out", self.prefix);
                self.data = DataSetup::None;
                self.reply(421, "Passive data channel timed out.")?;
            }
        }
    }

    /// Accepts pending passive connections, dropping any from a foreign address
    /// (RFC 2577 §3: data connections only from the client's own address). With the
    /// client's address unknown (a control connection over a Unix socket) the first
    /// connection is taken, as with `permit_foreign_addresses`.
    fn accept_data(&mut self, listener: &TcpListener) -> io::Result<Option<Stream>> {
        loop {
            match listener.accept() {
                Ok((s, addr)) => {
                    let ip = proto::unmap(addr.ip());
                    let known = !self.peer.ip().is_unspecified();
                    if known && ip != self.peer.ip() && !self.h.permit_foreign_addresses {
                        log::warn!(
                            "{} rejected data connection from foreign address {addr}",
                            self.prefix
                        );
                        continue;
                    }
                    log::trace!("{} data connection from {addr}", self.prefix);
                    s.set_nonblocking(false)?;
                    limit_socket_buffers(&s);
                    return Ok(Some(Stream::Tcp(s)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what the control connection has and handles the lines a transfer must answer
    /// at once; the rest wait in `pending` until the transfer ends.
    pub(crate) fn service_control(&mut self) -> io::Result<Ctl> {
        if !self.has_buffered_line() {
            match self.read_once() {
                Ok(0) => return Ok(Ctl::Gone),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Ok(Ctl::Gone),
            }
        }
        while let Some(input) = self.take_line() {
            let line = match input {
                super::session::Input::Line(l) => l,
                super::session::Input::TooLong => {
                    self.reply(500, "Command too long.")?;
                    continue;
                }
                _ => continue,
            };
            if self.quit_pending {
                // After QUIT nothing more is read (pyftpdlib stops reading the channel).
                continue;
            }
            let clean = proto::clean_line(&line);
            let (verb, arg) = proto::split_command(&clean);
            let tail = verb.get(verb.len().saturating_sub(4)..).unwrap_or("");
            match (tail, arg.is_empty()) {
                ("ABOR", _) => {
                    log::debug!("{} <- ABOR", self.prefix);
                    return Ok(Ctl::Abort);
                }
                ("STAT", true) => {
                    log::debug!("{} <- STAT", self.prefix);
                    self.status_reply()?;
                }
                _ if !self.pending.is_empty()
                    || TRANSFER_CMDS.contains(&verb.as_str())
                    || SETUP_CMDS.contains(&verb.as_str())
                    || TLS_CMDS.contains(&verb.as_str()) =>
                {
                    // Commands that need the data channel wait for the transfer to end, and
                    // so does everything sent after them (replies stay in order).
                    self.pending.push_back(line)
                }
                ("QUIT", _) if verb.ends_with("QUIT") => {
                    // RFC 959 / pyftpdlib: 221 now, the transfer's reply when it ends, then
                    // the connection closes.
                    log::debug!("{} <- QUIT (closing after the transfer)", self.prefix);
                    self.say_goodbye()?;
                    self.quit_pending = true;
                }
                _ => {
                    // Everything else is answered at once, as pyftpdlib does (REIN, USER,
                    // TYPE, SIZE, ...); the running transfer is not affected.
                    self.handle_line(&line)?;
                    if self.closing {
                        return Ok(Ctl::Gone);
                    }
                }
            }
        }
        Ok(Ctl::Continue)
    }

    /// The 211 reply to STAT without an argument (pyftpdlib `ftp_STAT`).
    pub(crate) fn status_reply(&mut self) -> io::Result<()> {
        let mut s: Vec<Vec<u8>> = Vec::new();
        s.push(format!("Connected to: {}", self.local).into_bytes());
        if self.authenticated {
            s.push(format!("Logged in as: {}", self.username).into_bytes());
        } else if self.username.is_empty() {
            s.push(b"Waiting for username.".to_vec());
        } else {
            s.push(b"Waiting for password.".to_vec());
        }
        let t = if self.ttype == TransferType::Ascii {
            "ASCII"
        } else {
            "Binary"
        };
        s.push(format!("TYPE: {t}; STRUcture: File; MODE: Stream").into_bytes());
        if let Some(p) = self.progress {
            s.push(b"Data connection open:".to_vec());
            s.push(format!("Total bytes sent: {}", p.sent).into_bytes());
            s.push(format!("Total bytes received: {}", p.received).into_bytes());
            s.push(
                format!(
                    "Transfer elapsed time: {:.3} secs",
                    p.start.elapsed().as_secs_f64()
                )
                .into_bytes(),
            );
        } else {
            match self.data {
                DataSetup::Passive(_) => {
                    s.push(b"Passive data channel waiting for connection.".to_vec())
                }
                DataSetup::Active(_) => {
                    // pyftpdlib: a connected channel shows its (zero) totals.
                    s.push(b"Data connection open:".to_vec());
                    s.push(b"Total bytes sent: 0".to_vec());
                    s.push(b"Total bytes received: 0".to_vec());
                    s.push(
                        format!(
                            "Transfer elapsed time: {:.3} secs",
                            self.data_since.elapsed().as_secs_f64()
                        )
                        .into_bytes(),
                    );
                }
                DataSetup::None => s.push(b"Data connection closed.".to_vec()),
            }
        }
        self.reply_multi(211, "FTP server status:", &s, "End of status.")
    }
}
