//! The session's TLS handshakes (pyftpdlib `TLS_FTPHandler` / `TLS_DTPHandler`; RFC 4217
//! §4–§10): the control connection's upgrade (`AUTH`, implicit FTPS) and its return to
//! plaintext (`CCC`), and the handshake of a `PROT P` data connection, which must resume
//! the control connection's TLS session. A data handshake is a value the session loop
//! steps ([`Securing`]): a passive connection's starts as soon as it is accepted, before
//! its transfer command, so a client that handshakes at once (curl) is answered while the
//! control connection goes on being served; an active one's starts at the transfer
//! command (RFC 4217 §7 order).

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::control::Transport;
use super::data::Refusal;
use super::dispatch::DATA_REQUIRED;
use super::Session;
use crate::handlers::dtp::tls_stream::{Handshake, TlsStream};
use crate::handlers::dtp::Stream;
use crate::handlers::tls::{DataTickets, SessionConfigs};

/// A data connection's TLS handshake under way, and the session ticket it will issue.
#[derive(Debug)]
pub(crate) struct Securing {
    pub(crate) hs: Handshake,
    tickets: DataTickets,
}

/// What a new data connection needs before bytes move.
pub(crate) enum Protection {
    /// Nothing: bytes move now.
    Plain(Stream),
    /// A TLS handshake.
    Handshake(Box<Securing>),
    /// The transfer is refused with this reply.
    Refused(Refusal),
}

impl Session {
    /// This control connection's rustls configurations, made at the first handshake.
    fn tls_configs(&mut self) -> Option<SessionConfigs> {
        let cfg = self.h.tls.as_ref()?;
        if self.ctrl.tls_configs.is_none() {
            self.ctrl.tls_configs = Some(cfg.per_session());
        }
        self.ctrl.tls_configs.clone()
    }

    /// Upgrades the control connection (after `234`, or before the 220 on an implicit
    /// listener). Input the client sent in plaintext behind AUTH is discarded, never run
    /// (STARTTLS command injection). On failure the session ends.
    pub(crate) fn secure_control(&mut self) -> io::Result<bool> {
        let Some(configs) = self.tls_configs() else {
            return Ok(false);
        };
        self.ctrl.discard_input();
        let sock = match self.ctrl.transport.tcp() {
            Some(s) => s.try_clone(),
            None => Err(io::Error::other("TLS needs a TCP connection")),
        };
        // The handshake counts against the idle and login timers like a command line.
        let deadline = self.control_deadline();
        match sock.and_then(|sock| TlsStream::accept(sock, configs.ctrl, deadline)) {
            Ok(mut t) => {
                t.close_on_drop = true;
                log::info!(
                    "{} control connection secured: {}",
                    self.ctrl.prefix,
                    t.describe()
                );
                self.stats.tls = Some(t.info());
                self.ctrl.transport = Transport::Tls(Box::new(t));
                // RFC 4217 §4: a new security exchange resets PBSZ/PROT. Implicit FTPS
                // protects data connections from the start (as vsftpd and most servers do).
                let implicit = self.ctrl.implicit_tls;
                self.data.protection.pbsz = implicit;
                self.data.protection.private = implicit;
                Ok(true)
            }
            Err(e) => {
                log::info!(
                    "{} TLS handshake failed on control connection: {e}",
                    self.ctrl.prefix
                );
                self.ctrl.closing = true;
                self.stats.ending(crate::handlers::stats::SessionEnd::Error);
                Ok(false)
            }
        }
    }

    /// What a data connection needs before bytes move, at its transfer command: nothing
    /// (PROT C, or its handshake already done), a TLS handshake (PROT P), or a refusal
    /// (TLS required on data connections but PROT C: pyftpdlib's 550).
    pub(crate) fn protect(&mut self, conn: Stream) -> io::Result<Protection> {
        let Some(cfg) = self.h.tls.as_ref() else {
            return Ok(Protection::Plain(conn));
        };
        let Stream::Tcp(sock) = conn else {
            return Ok(Protection::Plain(conn));
        };
        if !self.data.protection.private {
            if cfg.tls_data_required {
                log::info!("{} transfer refused: {DATA_REQUIRED}", self.ctrl.prefix);
                return Ok(Protection::Refused((550, DATA_REQUIRED)));
            }
            return Ok(Protection::Plain(Stream::Tcp(sock)));
        }
        Ok(match self.start_data_tls(sock) {
            Ok(sec) => Protection::Handshake(Box::new(sec)),
            Err(e) => Protection::Refused(self.handshake_failed(&e)),
        })
    }

    /// True when new data connections are encrypted (PROT P with TLS configured): the
    /// handshake of a passive one starts as soon as it is accepted.
    pub(crate) fn data_private(&self) -> bool {
        self.h.tls.is_some() && self.data.protection.private
    }

    /// Starts the TLS handshake of a data connection, to be over within
    /// `data_handshake_timeout` (session-loop steps drive it: drive.rs, idle.rs).
    pub(crate) fn start_data_tls(&mut self, sock: TcpStream) -> io::Result<Securing> {
        let (Some(configs), Some(cfg)) = (self.tls_configs(), self.h.tls.as_ref()) else {
            return Err(io::Error::other("no TLS configuration"));
        };
        let (config, tickets) = configs.data_connection();
        let deadline = Instant::now() + cfg.data_handshake_timeout;
        let hs = Handshake::start(sock, config, Some(deadline))?;
        Ok(Securing { hs, tickets })
    }

    /// The stream of a data connection whose handshake is over, once it passes the
    /// session-reuse check (RFC 4217 §10: only the client that logged in can resume the
    /// control connection's session), or the refusal. `early`: the handshake ended before
    /// the transfer's 125/150, so the client has not begun an upload and what followed the
    /// handshake (its next session ticket) is sent now, for it to read (curl reads what
    /// waits when it closes). Otherwise the ticket goes with a download's first bytes, or at
    /// an upload's end: bytes reaching a client that has already closed its socket make the
    /// kernel reset it and drop the end of the upload still in flight (see
    /// [`TlsStream::hold_output`]).
    pub(crate) fn secured(&mut self, sec: Securing, early: bool) -> Result<Stream, Refusal> {
        let require_reuse = self.h.tls.as_ref().is_some_and(|c| c.require_session_reuse);
        let mut tls = sec.hs.finish();
        if require_reuse && !tls.resumed() {
            log::warn!(
                "{} data connection refused: its TLS session does not resume the control \
                 connection's. The client must reuse the control connection's TLS session on \
                 data connections (curl and lftp do; Python's ftplib.FTP_TLS needs a subclass \
                 that passes session=self.sock.session when it wraps the data socket), or the \
                 check be turned off: --disable-tls-reuse-check \
                 (TlsConfig::require_session_reuse = false)",
                self.ctrl.prefix
            );
            return Err((522, "SSL connection failed: session reuse required."));
        }
        if tls.resumed() {
            sec.tickets.keep();
        }
        log::debug!(
            "{} data connection secured: {}",
            self.ctrl.prefix,
            tls.describe()
        );
        if early {
            // Non-blocking: a full socket keeps the rest queued for the first write.
            let _ = tls.flush();
        }
        let t = self.h.data_timeout;
        let sock = tls.tcp();
        let blocking = sock
            .set_nonblocking(false)
            .and_then(|()| sock.set_read_timeout(t))
            .and_then(|()| sock.set_write_timeout(t));
        match blocking {
            Ok(()) => Ok(Stream::Tls(Box::new(tls))),
            Err(e) => Err(self.handshake_failed(&e)),
        }
    }

    /// Logs a data connection's failed handshake and says how to answer its transfer
    /// command: 425 when it timed out (the client never completed it), 522 otherwise.
    pub(crate) fn handshake_failed(&self, e: &io::Error) -> Refusal {
        if e.kind() == io::ErrorKind::TimedOut {
            let secs = self
                .h
                .tls
                .as_ref()
                .map_or(0, |c| c.data_handshake_timeout.as_secs());
            log::warn!(
                "{} TLS handshake on the data connection timed out after {secs} s",
                self.ctrl.prefix
            );
            return (425, "Can't open data connection: TLS handshake timed out.");
        }
        log::info!(
            "{} TLS handshake failed on data connection: {e}",
            self.ctrl.prefix
        );
        (522, "SSL/TLS handshake failed on the data channel.")
    }

    /// CCC (RFC 4217 §6): back to a plaintext control connection on the same socket.
    pub(crate) fn clear_control(&mut self) -> io::Result<()> {
        let Some(sock) = self.ctrl.transport.tcp() else {
            return Ok(());
        };
        // A stand-in while the connection changes form.
        let stand_in = Transport::Tcp(sock.try_clone()?);
        let t = match std::mem::replace(&mut self.ctrl.transport, stand_in) {
            Transport::Tls(t) => t,
            other => {
                self.ctrl.transport = other;
                return Ok(());
            }
        };
        self.ctrl.transport = Transport::Cleared(Box::new(t.into_cleared()?));
        log::info!(
            "{} control connection back to plaintext (CCC)",
            self.ctrl.prefix
        );
        Ok(())
    }
}
