//! Driving a transfer from the session loop (RFC 959 §3.2; pyftpdlib's `_in_dtp_queue`,
//! `PassiveDTP`, `DTPHandler`): a transfer command hands the session a [`Plan`], which
//! replies 125 or 150 and then, one step of the session loop at a time, waits for a
//! PORT/PASV, for the passive client, for its TLS handshake (PROT P), and runs the
//! transfer, answering the control lines that arrive meanwhile (busy.rs). No step runs
//! another command from inside a command.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::poll::PollFlags;

use super::data::{Ending, Phase, Plan, Running, Setup, Work, Xfer};
use super::tls::{Protection, Securing};
use super::Session;
use crate::handlers::dtp::{self, Download, Outcome, Settings, Step, Stream, Upload, Watch};
use crate::handlers::rates::Direction;
use crate::handlers::stats::{SessionEnd, TransferResult, TransferStats};
use crate::handlers::table::Channel;
use crate::proto::TransferType;

impl Session {
    /// Starts the transfer a command asked for: 125 when its data connection is already
    /// open, 150 when it is about to be (pyftpdlib queues the transfer and answers 150 even
    /// before any PORT/PASV: the channel may still come from a command sent after it).
    pub(crate) fn start_transfer(&mut self, plan: Plan) -> io::Result<()> {
        match std::mem::take(&mut self.data.setup) {
            Setup::None if self.data.refused => {
                // lftp pipelines LIST/RETR after its EPRT/PORT and falls back to passive
                // mode on a 425; waiting here would stall it.
                self.cancel(plan);
                self.ctrl.reply(425, "Use PORT or PASV first.")
            }
            Setup::None => {
                self.preliminary(&plan, false)?;
                self.data.phase = Phase::Awaiting(plan);
                Ok(())
            }
            setup => self.connect(plan, setup, true),
        }
    }

    /// 125 (`open`: the data connection is up) or 150, or the plan's own text.
    fn preliminary(&mut self, plan: &Plan, open: bool) -> io::Result<()> {
        let text: &[u8] = match (&plan.mark, open) {
            (Some(m), _) => m,
            (None, true) => b"Data connection already open. Transfer starting.",
            (None, false) => b"File status okay. About to open data connection.",
        };
        self.ctrl.reply_bytes(if open { 125 } else { 150 }, text)
    }

    /// After a command ran while a transfer awaited its channel: if the command set one up,
    /// the transfer goes on (its 150 is already out).
    #[inline(never)]
    pub(crate) fn after_command(&mut self) -> io::Result<()> {
        if !matches!(self.data.phase, Phase::Awaiting(_)) || matches!(self.data.setup, Setup::None)
        {
            return Ok(());
        }
        let Phase::Awaiting(plan) = std::mem::take(&mut self.data.phase) else {
            return Ok(());
        };
        let setup = std::mem::take(&mut self.data.setup);
        self.connect(plan, setup, false)
    }

    /// Takes the prepared connection: an active one is up, a passive one is accepted now or
    /// waited for, one whose TLS handshake began goes on with it, one whose handshake failed
    /// is reported now (`reply`: the 125/150 is still to be sent).
    fn connect(&mut self, plan: Plan, setup: Setup, reply: bool) -> io::Result<()> {
        let listener = match setup {
            Setup::None => return Ok(()),
            Setup::Failed((code, text)) => {
                self.cancel(plan);
                return self.ctrl.reply(code, text);
            }
            Setup::Securing(sec) => return self.connect_securing(plan, sec, reply),
            Setup::Active(s) => {
                if reply {
                    self.preliminary(&plan, true)?;
                }
                return self.secure_and_run(plan, s);
            }
            Setup::Passive(l) => l,
        };
        listener.set_nonblocking(true)?;
        match self.accept(&listener) {
            Ok(Some(s)) => {
                if reply {
                    self.preliminary(&plan, true)?;
                }
                self.secure_and_run(plan, s)
            }
            Ok(None) => {
                if reply {
                    self.preliminary(&plan, false)?;
                }
                self.data.phase = Phase::Connecting(plan, listener);
                Ok(())
            }
            Err(e) => self.refuse_connection(plan, e),
        }
    }

    /// Takes a passive connection whose handshake began before its transfer command. One
    /// step first: the client's last handshake flight usually came before the command, and a
    /// handshake over before the 125 lets the session ticket go at once (the client has not
    /// begun an upload: see [`secured`](Self::secured)); else it goes on as a phase.
    fn connect_securing(
        &mut self,
        plan: Plan,
        mut sec: Box<Securing>,
        reply: bool,
    ) -> io::Result<()> {
        let secured = match sec.hs.step() {
            Ok(false) => {
                if reply {
                    self.preliminary(&plan, true)?;
                }
                self.data.phase = Phase::Securing(plan, sec);
                return Ok(());
            }
            Ok(true) => self.secured(*sec, true),
            Err(e) => Err(self.handshake_failed(&e)),
        };
        match secured {
            Ok(conn) => {
                if reply {
                    self.preliminary(&plan, true)?;
                }
                self.begin_moving(plan, conn)
            }
            Err((code, text)) => {
                self.cancel(plan);
                self.ctrl.reply(code, text)
            }
        }
    }

    /// Accepts a pending passive connection from the client (from anyone with
    /// `permit_foreign_addresses`, or when the client's address is unknown).
    pub(crate) fn accept(&self, listener: &TcpListener) -> io::Result<Option<Stream>> {
        let peer = self.ctrl.peer.ip();
        let client = (!peer.is_unspecified() && !self.h.permit_foreign_addresses).then_some(peer);
        let proxy = self.h.proxy_protocol.as_ref();
        dtp::accept_from(listener, client, proxy, &self.ctrl.prefix)
    }

    /// 425 with the reason when the process is out of descriptors (the session goes on);
    /// any other accept error ends the session.
    fn refuse_connection(&mut self, plan: Plan, e: io::Error) -> io::Result<()> {
        self.cancel(plan);
        if !dtp::out_of_descriptors(&e) {
            return Err(e);
        }
        log::warn!(
            "{} cannot accept the data connection: {e}",
            self.ctrl.prefix
        );
        let why = crate::filesystems::strerror(&e);
        self.ctrl
            .reply(425, &format!("Can't open data connection: {why}."))
    }

    /// One step while the passive listener waits for the client: a connection, control
    /// input, or the end of `passive_accept_timeout` (pyftpdlib `PassiveDTP.timeout`, from
    /// PASV on).
    #[inline(never)]
    pub(crate) fn wait_connection(&mut self) -> io::Result<()> {
        let Phase::Connecting(_, listener) = &self.data.phase else {
            return Ok(());
        };
        let deadline = self.data.passive_deadline(self.h.passive_accept_timeout);
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            log::info!("{} passive data channel timed out", self.ctrl.prefix);
            self.cancel_phase();
            return self.ctrl.reply(421, "Passive data channel timed out.");
        }
        let end = self.ctx.drain.wake_fds(false).end;
        let [l, c, e] = crate::poll::ready(
            [
                (listener.as_fd(), PollFlags::POLLIN),
                (self.ctrl.fd(), PollFlags::POLLIN),
                (end.unwrap_or(self.ctrl.fd()), PollFlags::POLLIN),
            ],
            left,
        )?;
        if e && self.ctx.drain.ending().is_some() {
            return self.woken(false);
        }
        if c {
            return self.serve_busy();
        }
        if !l {
            return Ok(());
        }
        let Phase::Connecting(plan, listener) = std::mem::take(&mut self.data.phase) else {
            return Ok(());
        };
        match self.accept(&listener) {
            Ok(Some(s)) => self.secure_and_run(plan, s),
            Ok(None) => {
                self.data.phase = Phase::Connecting(plan, listener);
                Ok(())
            }
            Err(e) => self.refuse_connection(plan, e),
        }
    }

    /// Starts moving bytes on the new data connection, or first its TLS handshake (PROT P),
    /// which the session loop then steps.
    fn secure_and_run(&mut self, plan: Plan, conn: Stream) -> io::Result<()> {
        match self.protect(conn)? {
            Protection::Plain(conn) => self.begin_moving(plan, conn),
            Protection::Handshake(sec) => {
                self.data.phase = Phase::Securing(plan, sec);
                Ok(())
            }
            Protection::Refused((code, text)) => {
                self.cancel(plan);
                self.ctrl.reply(code, text)
            }
        }
    }

    /// One step while the data connection's TLS handshake runs after its transfer command:
    /// records from the client, then control input (ABOR, STAT, …), or the end of
    /// `data_handshake_timeout`. Once it is over and passes the reuse check, bytes move.
    #[inline(never)]
    pub(crate) fn step_securing(&mut self) -> io::Result<()> {
        let Phase::Securing(_, sec) = &self.data.phase else {
            return Ok(());
        };
        let left = sec
            .hs
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let [_, c] = crate::poll::ready(
            [
                (sec.hs.tcp().as_fd(), sec.hs.interest()),
                (self.ctrl.fd(), PollFlags::POLLIN),
            ],
            left,
        )?;
        // The handshake first: a client that completed it, then sent ABOR, gets its
        // transfer started and then aborted (426, 226) whichever socket poll(2) saw first.
        let Phase::Securing(_, sec) = &mut self.data.phase else {
            return Ok(());
        };
        let step = sec.hs.step();
        if matches!(step, Ok(false)) {
            return if c { self.serve_busy() } else { Ok(()) };
        }
        let Phase::Securing(plan, sec) = std::mem::take(&mut self.data.phase) else {
            return Ok(());
        };
        let secured = match step {
            Ok(_) => self.secured(*sec, false),
            Err(e) => Err(self.handshake_failed(&e)),
        };
        match secured {
            Ok(conn) => self.begin_moving(plan, conn),
            Err((code, text)) => {
                self.cancel(plan);
                self.ctrl.reply(code, text)
            }
        }
    }

    /// The transfer's settings and throttle, from the handler and the account.
    fn transfer_settings(&self, dir: Direction) -> (Settings, dtp::throttle::Throttle) {
        let h = &self.h;
        let rates = &self.account.rates;
        let mut throttle = dtp::throttle::Throttle::new(dir, rates.own(dir)).with_server(
            &self.ctx.rates,
            h.rate(crate::handlers::rates::Scope::Server, dir),
        );
        if let Some((slot, rate)) = rates.user(dir) {
            throttle = throttle.with_user(slot, rate);
        }
        let settings = Settings {
            ascii: self.data.ttype == TransferType::Ascii,
            buf_size: match dir {
                Direction::Read => h.ac_in_buffer_size,
                Direction::Write => h.ac_out_buffer_size,
            },
            sendfile: h.use_sendfile,
            stall: h.data_timeout,
            log: self.ctrl.prefix.clone(),
        };
        (settings, throttle)
    }

    /// Puts the transfer in motion on `conn` (a socket that cannot be made non-blocking
    /// ends it at once with 451).
    fn begin_moving(&mut self, plan: Plan, conn: Stream) -> io::Result<()> {
        let dir = match plan.work {
            Work::Receive(_) => Direction::Read,
            _ => Direction::Write,
        };
        let (set, throttle) = self.transfer_settings(dir);
        let (xfer, lister) = match plan.work {
            Work::Send(src) => (
                Download::new(conn, src, set, throttle).map(Xfer::Down),
                None,
            ),
            Work::List(l) => (
                Download::new(conn, dtp::Source::Lines, set, throttle).map(Xfer::Down),
                Some(l),
            ),
            Work::Receive(sink) => (Upload::new(conn, sink, set, throttle).map(Xfer::Up), None),
        };
        match xfer {
            Ok(xfer) => {
                self.data.phase = Phase::Running(Box::new(Running {
                    end: plan.end,
                    xfer,
                    lister,
                    own_fs: None,
                    start: Instant::now(),
                }));
                Ok(())
            }
            Err(e) => {
                let upload = dir == Direction::Read;
                self.finish(&plan.end, upload, 0, None, Outcome::LocalError(e))
            }
        }
    }

    /// One step of a running transfer: it moves bytes until it ends or the client sends a
    /// control line, which is then answered.
    #[inline(never)]
    pub(crate) fn step_transfer(&mut self) -> io::Result<()> {
        let Phase::Running(r) = &mut self.data.phase else {
            return Ok(());
        };
        let ctl = Watch {
            ctl: self.ctrl.fd(),
            end: self.ctx.drain.wake_fds(false).end,
        };
        let step = match &mut r.xfer {
            Xfer::Up(u) => u.run(ctl),
            Xfer::Down(d) => {
                let fs = r.own_fs.as_mut().or(self.account.fs.as_mut());
                match (r.lister.as_mut(), fs) {
                    (Some(lister), Some(fs)) => {
                        let mut fill = |out: &mut Vec<u8>| lister.fill(fs, out);
                        d.run(ctl, Some(&mut fill))
                    }
                    _ => d.run(ctl, None),
                }
            }
        };
        match step {
            Ok(Step::Control) if self.ctx.drain.ending().is_some() => self.woken(false),
            Ok(Step::Control) => self.serve_busy(),
            Ok(Step::Done(o)) => self.end_transfer(o),
            Err(e) => self.end_transfer(Outcome::LocalError(e)),
        }
    }

    /// Ends the running transfer: the file is closed (an upload committed or abandoned),
    /// then the log line, the callbacks and the reply.
    pub(crate) fn end_transfer(&mut self, outcome: Outcome) -> io::Result<()> {
        let r = match std::mem::take(&mut self.data.phase) {
            Phase::Running(r) => r,
            other => {
                self.data.phase = other;
                return Ok(());
            }
        };
        let Running {
            end, xfer, start, ..
        } = *r;
        let (upload, bytes, outcome) = match xfer {
            Xfer::Down(d) => (false, d.sent, outcome),
            Xfer::Up(u) => (true, u.received, u.finish(outcome)),
        };
        self.finish(&end, upload, bytes, Some(start), outcome)
    }

    /// Forgets a transfer that never ran (refused, aborted, the session ending): an upload
    /// is abandoned and an atomic STOU's reserved name removed. No reply.
    pub(crate) fn cancel(&mut self, plan: Plan) {
        drop(plan.work);
        self.remove_reserved(&plan.end);
    }

    /// Cancels a transfer waiting for its channel or its client (no reply).
    pub(crate) fn cancel_phase(&mut self) {
        match std::mem::take(&mut self.data.phase) {
            Phase::Awaiting(plan) | Phase::Connecting(plan, _) | Phase::Securing(plan, _) => {
                self.cancel(plan)
            }
            other => self.data.phase = other,
        }
    }

    /// Removes an atomic STOU's reserved name.
    fn remove_reserved(&mut self, end: &Ending) {
        if let (Some(vpath), Some(fs)) = (&end.reserved, self.account.fs.as_mut()) {
            let _ = fs.fs().remove(vpath);
        }
    }

    /// The log line (pyftpdlib's `RETR /f completed=1 bytes=N seconds=S`), the file
    /// callbacks and the reply that end a transfer.
    fn finish(
        &mut self,
        end: &Ending,
        upload: bool,
        bytes: u64,
        start: Option<Instant>,
        outcome: Outcome,
    ) -> io::Result<()> {
        let complete = matches!(outcome, Outcome::Complete);
        if !complete {
            self.remove_reserved(end);
        }
        let secs = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        let vpath = self
            .account
            .fs
            .as_ref()
            .map(|f| f.fs2ftp(&end.path))
            .unwrap_or_default();
        let code = outcome_code(&outcome).map_or(String::new(), |c| format!("{c} "));
        log::info!(
            "{} {} {} {code}completed={} bytes={bytes} seconds={secs:.3}",
            self.ctrl.prefix,
            end.cmd,
            crate::proto::log_escape(&vpath),
            u8::from(complete)
        );
        if end.channel == Channel::File {
            let t = self.transfer_stats(end, upload, bytes, start, &outcome, &vpath);
            self.stats.transfer(&t);
            self.ctx.stats.transfer(&t);
            if let Some(x) = &self.h.xferlog {
                x.write(&t);
            }
            self.cb.on_transfer_end(&t);
        }
        if matches!(outcome, Outcome::DataTimeout) {
            self.stats.ending(SessionEnd::Timeout);
        }
        self.reply_outcome(&end.cmd, upload, bytes, outcome)
    }

    /// What a finished file transfer did (its stats, its xferlog line).
    fn transfer_stats(
        &self,
        end: &Ending,
        upload: bool,
        bytes: u64,
        start: Option<Instant>,
        outcome: &Outcome,
        vpath: &[u8],
    ) -> TransferStats {
        let user = match self.account.user() {
            Some(u) => u.to_string(),
            None => self.stats.user.clone().unwrap_or_default(),
        };
        TransferStats {
            command: end.cmd.clone(),
            user,
            anonymous_id: self.account.anonymous_id.clone(),
            peer: self.ctrl.peer,
            vpath: crate::filesystems::path::bytes_path(vpath),
            path: end.path.clone(),
            upload,
            ascii: self.data.ttype == TransferType::Ascii,
            bytes,
            duration: start.map(|s| s.elapsed()).unwrap_or_default(),
            result: match outcome {
                Outcome::Complete => TransferResult::Complete,
                Outcome::Aborted => TransferResult::Aborted,
                _ => TransferResult::Failed,
            },
            tls: self.ctrl.is_tls(),
        }
    }

    /// The reply to a transfer's outcome (pyftpdlib's texts).
    fn reply_outcome(
        &mut self,
        cmd: &str,
        upload: bool,
        bytes: u64,
        outcome: Outcome,
    ) -> io::Result<()> {
        let c = &mut self.ctrl;
        match outcome {
            Outcome::Complete => c.reply(226, "Transfer complete.")?,
            Outcome::Aborted => {
                c.reply(426, "Transfer aborted via ABOR.")?;
                c.reply(226, "ABOR command successful.")?;
            }
            Outcome::PeerClosed if upload => {
                c.reply(426, "Connection closed by peer; transfer aborted.")?
            }
            Outcome::PeerClosed => c.reply(
                426,
                &format!("Transfer aborted; {bytes} bytes transmitted."),
            )?,
            Outcome::DataTimeout => {
                c.reply(421, "Data connection timed out.")?;
                c.closing = true;
            }
            Outcome::LocalError(e) => {
                log::error!("{} {cmd} local error: {e}", c.prefix);
                crate::handlers::commands::reply_local_error(c, &e, "transfer aborted")?;
            }
            Outcome::ControlGone => {
                c.closing = true;
                return Ok(());
            }
        }
        if std::mem::take(&mut c.quit_pending) {
            // QUIT was answered when it arrived.
            c.closing = true;
        }
        Ok(())
    }
}

/// The reply code that ends a transfer with `outcome` (none when the control connection is
/// gone), for its log line.
fn outcome_code(outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::Complete => Some(226),
        Outcome::Aborted | Outcome::PeerClosed => Some(426),
        Outcome::DataTimeout => Some(421),
        Outcome::LocalError(e) if crate::handlers::commands::out_of_space(e) => Some(452),
        Outcome::LocalError(_) => Some(451),
        Outcome::ControlGone => None,
    }
}
