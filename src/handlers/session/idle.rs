//! Waiting for the next command, with the timers pyftpdlib keeps meanwhile (`FTPHandler`
//! idle timeout, `PassiveDTP.handle_timeout`, `DTPHandler.handle_timeout`,
//! `_on_dtp_connection`): the control idle timeout runs from the end of the last command
//! (bytes that do not complete a line do not reset it), the login timeout from connect
//! (or REIN), a passive listener not connected to within `passive_accept_timeout` is closed
//! with 421, and a connected data channel left unused for `data_timeout` ends the session
//! with 421, while suspending the idle timeout. A passive connection made early is
//! accepted at once, as pyftpdlib does, and under PROT P its TLS handshake is stepped
//! between commands (bounded by `data_handshake_timeout`; a failure is kept for the next
//! transfer command).

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::poll::PollFlags;

use super::control::Input;
use super::data::Setup;
use super::Session;
use crate::handlers::dtp;

/// What woke an idle wait.
enum Woken {
    /// Control input.
    Control,
    /// The passive listener has a connection, or a data handshake can move.
    Data,
    /// A deadline passed (or a signal): the timers decide.
    Nothing,
    /// The server drains or ends every session now.
    Server,
}

impl Session {
    /// When waiting for a command that starts now must end: the idle timeout from now
    /// (the previous command is complete), or the login deadline if that comes first.
    pub(crate) fn control_deadline(&self) -> Option<Instant> {
        let idle = self.h.timeout.map(|t| Instant::now() + t);
        earliest(idle, self.account.login_deadline(&self.h))
    }

    /// Says why the control connection is closing after [`Input::Timeout`] and logs it.
    #[inline(never)]
    pub(crate) fn timed_out(&mut self) -> io::Result<()> {
        let login_over = self
            .account
            .login_deadline(&self.h)
            .is_some_and(|d| Instant::now() >= d);
        if login_over {
            log::info!("{} login timed out", self.ctrl.prefix);
            self.ctrl.reply(421, "Login timed out.")
        } else {
            log::info!("{} control connection timed out", self.ctrl.prefix);
            self.ctrl.reply(421, "Control connection timed out.")
        }
    }

    /// Waits for the next command between transfers, running the data channel's timers
    /// and its TLS handshake (see the module's docs).
    #[inline(never)]
    pub(crate) fn read_idle(&mut self) -> io::Result<Input> {
        let idle_deadline = self.control_deadline();
        loop {
            if self.ctrl.has_buffered_input()
                || matches!(self.data.setup, Setup::None | Setup::Failed(_))
            {
                return self
                    .ctrl
                    .read_input(idle_deadline, self.ctx.drain.wake_fds(true));
            }
            let connected = matches!(self.data.setup, Setup::Active(_));
            let pasv = match &self.data.setup {
                Setup::Passive(_) => self.data.passive_deadline(self.h.passive_accept_timeout),
                Setup::Securing(sec) => sec.hs.deadline(),
                _ => None,
            };
            let deadline = if connected {
                self.h.data_timeout.map(|t| self.data.since + t)
            } else {
                earliest(idle_deadline, pasv)
            };
            match self.wait_idle(deadline)? {
                Woken::Control if connected => {
                    // The idle timer is suspended while a data channel is connected: the
                    // line that starts now gets a full timeout.
                    let deadline = self.control_deadline();
                    return self
                        .ctrl
                        .read_input(deadline, self.ctx.drain.wake_fds(true));
                }
                Woken::Control => {
                    return self
                        .ctrl
                        .read_input(idle_deadline, self.ctx.drain.wake_fds(true))
                }
                Woken::Server => return Ok(Input::Woken),
                Woken::Data => self.data_ready()?,
                Woken::Nothing => {
                    if let Some(input) = self.idle_timers(connected, deadline, idle_deadline)? {
                        return Ok(input);
                    }
                }
            }
        }
    }

    /// The timers of an idle wait that woke with nothing: the unused connected channel
    /// (421, the session ends), the idle timeout, the passive accept timeout (421), the
    /// data handshake timeout (reported on the next transfer command).
    fn idle_timers(
        &mut self,
        connected: bool,
        deadline: Option<Instant>,
        idle_deadline: Option<Instant>,
    ) -> io::Result<Option<Input>> {
        let now = Instant::now();
        if connected && deadline.is_some_and(|d| now >= d) {
            log::info!("{} data connection timed out", self.ctrl.prefix);
            self.data.setup = Setup::None;
            self.ctrl.reply(421, "Data connection timed out.")?;
            // The session ends here, as after any 421.
            return Ok(Some(Input::Eof));
        }
        if !connected && idle_deadline.is_some_and(|d| now >= d) {
            return Ok(Some(Input::Timeout));
        }
        match &self.data.setup {
            Setup::Passive(_)
                if self
                    .data
                    .passive_deadline(self.h.passive_accept_timeout)
                    .is_some_and(|d| now >= d) =>
            {
                log::info!("{} passive data channel timed out", self.ctrl.prefix);
                self.data.setup = Setup::None;
                self.ctrl.reply(421, "Passive data channel timed out.")?;
            }
            // Its step reports the timeout.
            Setup::Securing(_) => self.data_ready()?,
            _ => {}
        }
        Ok(None)
    }

    /// Polls the control connection, the data channel being set up, if any (the passive
    /// listener, or the socket of a TLS handshake), and the server's wake-up descriptors, up
    /// to `deadline`.
    fn wait_idle(&self, deadline: Option<Instant>) -> io::Result<Woken> {
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let fd = self.ctrl.fd();
        let wake = self.ctx.drain.wake_fds(true);
        let [end, drain] = wake.or(fd);
        let data = match &self.data.setup {
            Setup::Passive(l) => Some((l.as_fd(), PollFlags::POLLIN)),
            Setup::Securing(sec) => Some((sec.hs.tcp().as_fd(), sec.hs.interest())),
            _ => None,
        };
        // Without a data channel being set up, the control connection stands in for it.
        let [c, ready, e, d] = crate::poll::ready(
            [
                (fd, PollFlags::POLLIN),
                data.unwrap_or((fd, PollFlags::POLLIN)),
                (end, PollFlags::POLLIN),
                (drain, PollFlags::POLLIN),
            ],
            wait,
        )?;
        if (e && wake.end.is_some()) || (d && wake.drain.is_some()) {
            return Ok(Woken::Server);
        }
        // The data channel first (an accept, a handshake step: neither waits): a client
        // that connected and sent its handshake before the command then finds it answered.
        Ok(match (c, ready && data.is_some()) {
            (_, true) => Woken::Data,
            (true, false) => Woken::Control,
            _ => Woken::Nothing,
        })
    }

    /// The data channel being set up can move: a passive connection to accept, or a step
    /// of its TLS handshake.
    fn data_ready(&mut self) -> io::Result<()> {
        match &self.data.setup {
            Setup::Passive(_) => self.accept_early(),
            Setup::Securing(_) => {
                self.step_early();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Accepts a passive connection made before its transfer command; under PROT P its TLS
    /// handshake starts at once (the client may be waiting for it before it sends the
    /// command, as curl does).
    fn accept_early(&mut self) -> io::Result<()> {
        let Setup::Passive(listener) = std::mem::take(&mut self.data.setup) else {
            return Ok(());
        };
        listener.set_nonblocking(true)?;
        match self.accept(&listener) {
            Ok(Some(dtp::Stream::Tcp(sock))) if self.data_private() => {
                let setup = match self.start_data_tls(sock) {
                    Ok(sec) => Setup::Securing(Box::new(sec)),
                    Err(e) => Setup::Failed(self.handshake_failed(&e)),
                };
                self.data.prepare(setup);
                self.step_early();
            }
            Ok(Some(conn)) => self.data.prepare(Setup::Active(conn)),
            Ok(None) => self.data.setup = Setup::Passive(listener),
            Err(e) if dtp::out_of_descriptors(&e) => {
                // No command to answer yet: the channel is dropped and the next transfer
                // command gets 425 at once.
                log::warn!("{} cannot accept a data connection: {e}", self.ctrl.prefix);
                self.data.refused = true;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// One step of a data handshake that began before its transfer command. Once it is
    /// over the channel is ready (or refused: the next transfer command hears why).
    fn step_early(&mut self) {
        let Setup::Securing(sec) = &mut self.data.setup else {
            return;
        };
        let step = sec.hs.step();
        if matches!(step, Ok(false)) {
            return;
        }
        let Setup::Securing(sec) = std::mem::take(&mut self.data.setup) else {
            return;
        };
        let setup = match step.map(|_| self.secured(*sec, true)) {
            Ok(Ok(conn)) => Setup::Active(conn),
            Ok(Err(refusal)) => Setup::Failed(refusal),
            Err(e) => Setup::Failed(self.handshake_failed(&e)),
        };
        // A connected channel's unused timer (data_timeout) starts now.
        self.data.prepare(setup);
    }
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
