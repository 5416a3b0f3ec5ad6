//! Control lines that arrive while a transfer runs or waits for its passive client
//! (RFC 959 §4.1.3, RFC 1123 §4.1.3.4), served by the table's `busy` column: urgent rows
//! (ABOR, STAT without argument) run at once without the usual checks; rows that need the
//! data channel, and every line after one of them, wait until the transfer ends (replies
//! stay in order); the others are dispatched at once, as pyftpdlib answers USER, TYPE,
//! SIZE … during a transfer. Each line is handed to the same dispatch the idle session
//! uses, from the session loop: nothing here re-enters a running command.

use std::io;

use super::control::Input;
use super::data::Phase;
use super::Session;
use crate::handlers::dtp::Outcome;
use crate::handlers::table::{Busy, Found, Request};
use crate::proto;

impl Session {
    /// Reads what the control connection has and serves the complete lines, until the
    /// transfer is no longer busy (ABOR ended it: later lines wait for the session loop).
    #[inline(never)]
    pub(crate) fn serve_busy(&mut self) -> io::Result<()> {
        if !self.ctrl.has_line() {
            match self.ctrl.read_once() {
                Ok(0) => return self.control_gone(),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return self.control_gone(),
            }
        }
        while self.data.busy() && !self.ctrl.closing {
            match self.ctrl.take_line() {
                Some(Input::Line(line)) => self.busy_line(line)?,
                Some(Input::TooLong) => self.ctrl.reply(500, "Command too long.")?,
                Some(_) => {}
                None => break,
            }
        }
        if self.ctrl.closing && self.data.busy() {
            // A command closed the session (too many failed logins, an HTTP request…).
            self.control_gone()?;
        }
        Ok(())
    }

    /// The client closed the control connection, or a command closed the session, during
    /// a transfer: it ends without a reply.
    fn control_gone(&mut self) -> io::Result<()> {
        self.ctrl.closing = true;
        self.stats
            .ending(crate::handlers::stats::SessionEnd::ClientClosed);
        if matches!(self.data.phase, Phase::Running(_)) {
            return self.end_transfer(Outcome::ControlGone);
        }
        self.cancel_phase();
        Ok(())
    }

    /// Serves one line by its row's `busy` column.
    fn busy_line(&mut self, line: Vec<u8>) -> io::Result<()> {
        if self.ctrl.quit_pending {
            // After QUIT nothing more is read (pyftpdlib stops reading the channel).
            return Ok(());
        }
        let clean = proto::clean_line(&line);
        let (verb, arg) = self.split_verb(&clean);
        let h = self.h.clone();
        let row = match h.lookup(&verb) {
            Found::Row(c) => Some(c),
            _ => None,
        };
        let busy = row.map(|c| c.busy);
        let urgent = match busy {
            Some(Busy::Urgent) => true,
            Some(Busy::UrgentBare) => arg.is_empty(),
            _ => false,
        };
        match row {
            Some(c) if urgent => {
                // Counted as `dispatch` counts every other line (SessionStats, metrics).
                self.stats.commands += 1;
                self.ctx.stats.command();
                log::debug!("{} <- {}", self.ctrl.prefix, c.name);
                let req = Request {
                    verb: c.name.clone(),
                    arg,
                    vpath: None,
                    path: None,
                    extra: None,
                };
                (c.run.clone())(self, &req)
            }
            _ if !self.ctrl.pending.is_empty() || busy == Some(Busy::Wait) => {
                self.ctrl.pending.push_back(line);
                Ok(())
            }
            _ => self.dispatch(&line),
        }
    }
}
