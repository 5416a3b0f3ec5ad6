//! The session's TLS handshakes (pyftpdlib `TLS_FTPHandler` / `TLS_DTPHandler`; RFC 4217
//! §4–§10): the control connection's upgrade (`AUTH`, implicit FTPS) and its return to
//! plaintext (`CCC`), and the handshake of a `PROT P` data connection, which must resume
//! the control connection's TLS session.

use std::io;
use std::time::{Duration, Instant};

use super::control::Transport;
use super::dispatch::DATA_REQUIRED;
use super::Session;
use crate::handlers::dtp::tls_stream::TlsStream;
use crate::handlers::dtp::Stream;
use crate::handlers::tls::SessionConfigs;

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
                Ok(false)
            }
        }
    }

    /// Secures a freshly opened data connection under PROT P (after the 125/150 reply):
    /// handshake, then the session-reuse check. `None` when a reply already refused it.
    pub(crate) fn secure_data(&mut self, s: Stream) -> io::Result<Option<Stream>> {
        let Some(cfg) = self.h.tls.as_ref() else {
            return Ok(Some(s));
        };
        let require_reuse = cfg.require_session_reuse;
        if !self.data.protection.private {
            if cfg.tls_data_required {
                log::info!("{} transfer refused: {DATA_REQUIRED}", self.ctrl.prefix);
                self.ctrl.reply(522, DATA_REQUIRED)?;
                return Ok(None);
            }
            return Ok(Some(s));
        }
        let Some(configs) = self.tls_configs() else {
            return Ok(Some(s));
        };
        let Stream::Tcp(sock) = s else {
            return Ok(Some(s));
        };
        let t: Option<Duration> = self.h.data_timeout;
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(t)?;
        sock.set_write_timeout(t)?;
        let deadline = t.map(|t| Instant::now() + t);
        match TlsStream::accept(sock, configs.data, deadline) {
            Ok(tls) if require_reuse && !tls.resumed() => {
                log::warn!(
                    "{} data connection refused: its TLS session does not resume the \
                     control connection's (require_session_reuse; a client that cannot \
                     resume needs the check turned off)",
                    self.ctrl.prefix
                );
                self.ctrl
                    .reply(522, "SSL connection failed: session reuse required.")?;
                Ok(None)
            }
            Ok(tls) => {
                log::debug!(
                    "{} data connection secured: {}",
                    self.ctrl.prefix,
                    tls.describe()
                );
                Ok(Some(Stream::Tls(Box::new(tls))))
            }
            Err(e) => {
                log::info!(
                    "{} TLS handshake failed on data connection: {e}",
                    self.ctrl.prefix
                );
                self.ctrl
                    .reply(522, "SSL/TLS handshake failed on the data channel.")?;
                Ok(None)
            }
        }
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
