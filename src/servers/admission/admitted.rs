//! A session's admission as the session holds it ([`Admitted`]): released exactly once,
//! moved to the client a PROXY protocol header names, and the session's hooks into the
//! table (failed logins, bans) through [`AdmissionHooks`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Admission, Refusal, Strike, Ticket};
use crate::handlers::{AdmissionHooks, BanRules};

/// A session's admission: released once, when the session ends or earlier (QUIT), by
/// whichever of its holders gets there first.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    ticket: Ticket,
    /// The client's address: the connection's, or the one its PROXY header named.
    ip: Mutex<IpAddr>,
    /// `max_cons_per_ip`, applied again when a PROXY header names the client.
    max_per_ip: usize,
    released: AtomicBool,
}

impl Admitted {
    pub(crate) fn new(
        admission: Arc<Admission>,
        ticket: Ticket,
        ip: IpAddr,
        max_per_ip: usize,
    ) -> Admitted {
        Admitted {
            admission,
            ticket,
            ip: Mutex::new(ip),
            max_per_ip,
            released: AtomicBool::new(false),
        }
    }

    /// The same admission for another process (a forked child serving the session).
    pub(crate) fn share(&self) -> Admitted {
        Admitted::new(
            self.admission.clone(),
            self.ticket,
            self.ip(),
            self.max_per_ip,
        )
    }

    /// The client's address.
    pub(crate) fn ip(&self) -> IpAddr {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table it belongs to.
    pub(crate) fn table(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Frees the session's place now (idempotent).
    pub(crate) fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.admission.release(self.ticket);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.release();
    }
}

/// The session's side of its admission, as the session sees it in its context.
impl AdmissionHooks for Admitted {
    fn release(&self) {
        Admitted::release(self);
    }

    /// Counts the failure for the address across all its sessions (and every worker and
    /// child); the ban is logged once, when it starts.
    fn login_failed(&self, rules: &BanRules) -> bool {
        let strike =
            self.table()
                .login_failed(self.ip(), rules.failures, rules.find_time, rules.ban_time);
        if strike == Strike::Banned {
            log::warn!(
                "{} banned for {} s after {} failed logins within {} s",
                self.ip(),
                rules.ban_time.as_secs(),
                rules.failures,
                rules.find_time.as_secs()
            );
        }
        strike != Strike::Counted
    }

    fn is_banned(&self) -> bool {
        self.table().is_banned(self.ip())
    }

    /// The session's client is `client` (its PROXY header said so): its bans and
    /// `max_cons_per_ip` apply now, and the session counts under its address.
    fn proxied(&self, client: SocketAddr) -> Result<(), &'static str> {
        let ip = crate::proto::unmap(client.ip());
        match self.table().readdress(self.ticket, ip, self.max_per_ip) {
            Ok(()) => {
                *self.ip.lock().unwrap_or_else(|p| p.into_inner()) = ip;
                Ok(())
            }
            Err(why) => {
                log_refusal(ip, client.port(), why);
                Err(why.reply())
            }
        }
    }
}

/// The log line of a refused connection (once per ban, when it starts: a flood must not
/// flood the log).
pub(crate) fn log_refusal(ip: IpAddr, port: u16, why: Refusal) {
    match why {
        Refusal::Full => log::info!("{ip}:{port} refused: too many connections"),
        Refusal::PerIp => {
            log::info!("{ip}:{port} refused: too many connections from this address")
        }
        Refusal::ShuttingDown => log::info!("{ip}:{port} refused: shutting down"),
        Refusal::Banned | Refusal::NoDescriptors => {
            log::debug!("{ip}:{port} refused: {why:?}")
        }
    }
}
