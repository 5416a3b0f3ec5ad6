//! What a session receives from the server that runs it, as one explicit value: the drain
//! token of a graceful shutdown, the kind of process it runs in, its place in the server's
//! admission table (freed before the 221 of QUIT, told of failed logins for bans), and the
//! shared rate buckets. The server builds one per session (servers/); a program that calls
//! [`Session::run`](super::Session::run) itself gets a [`SessionContext::default`], whose
//! parts belong to that session alone. Nothing here is a thread-local or a static: the
//! session reads only what it was given.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::rates::RateTable;

/// The drain flag of a server and the "running a command" flag of one session, shared with
/// the server's drainer (graceful shutdown: idle sessions end with `421` at once, busy ones
/// finish their command first).
///
/// The order (the session marks itself idle, then reads the flag; the drainer sets the
/// flag, then reads the mark, both `SeqCst`) guarantees that either the session sees the
/// flag or the drainer sees the session idle and wakes it (by shutting its socket for
/// reading).
#[derive(Debug, Clone, Default)]
pub struct DrainToken {
    draining: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
}

impl DrainToken {
    /// A token on a server's drain flag and the session's busy flag.
    pub fn new(draining: Arc<AtomicBool>, busy: Arc<AtomicBool>) -> DrainToken {
        DrainToken { draining, busy }
    }

    /// The session is about to wait for its next command. True when the server is
    /// shutting down: the session then replies 421 and ends.
    pub(crate) fn going_idle(&self) -> bool {
        self.busy.store(false, Ordering::SeqCst);
        self.draining.load(Ordering::SeqCst)
    }

    /// The session got a command and runs it (a transfer in progress must not be cut).
    pub(crate) fn busy(&self) {
        self.busy.store(true, Ordering::SeqCst);
    }

    /// True once the server is shutting down.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

pub use crate::process::ProcessKind;

/// When failed logins ban an address (the handler's `ban_*` settings, fail2ban's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRules {
    /// Failures within `find_time` that ban the address (0: no bans).
    pub failures: u32,
    /// The window failures are counted in.
    pub find_time: Duration,
    /// How long a ban lasts.
    pub ban_time: Duration,
}

/// A session's place in its server's admission table (servers/admission/).
pub trait AdmissionHooks: Send + Sync {
    /// Frees the session's place now (QUIT, before the 221: a client that reconnects at
    /// once is admitted). Idempotent.
    fn release(&self);
    /// Records a failed login from the session's address; true when the address is banned
    /// (by this failure or before).
    fn login_failed(&self, rules: &BanRules) -> bool;
    /// True while the session's address is banned.
    fn is_banned(&self) -> bool;
}

/// What a session shares with the server that runs it.
#[derive(Clone)]
pub struct SessionContext {
    /// Graceful shutdown.
    pub drain: DrainToken,
    /// The process the session runs in.
    pub process: ProcessKind,
    /// The session's admission; `None` outside a server (a library caller, inetd "nowait").
    pub admission: Option<Arc<dyn AdmissionHooks>>,
    /// The server's shared rate buckets (per user, server-wide), made before any fork.
    pub rates: Arc<RateTable>,
}

impl fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("drain", &self.drain)
            .field("process", &self.process)
            .field("admitted", &self.admission.is_some())
            .field("rates", &self.rates)
            .finish()
    }
}

impl Default for SessionContext {
    /// A context of the session's own: never drained, no admission, a rate table no other
    /// session shares (so user and server rates hold only within the session).
    fn default() -> SessionContext {
        SessionContext::with_rates(Arc::new(RateTable::with_capacity(1)))
    }
}

impl SessionContext {
    /// A context with no drain and no admission, sharing `rates` (give every session of a
    /// program the same table for user and server rates to hold across them).
    pub fn with_rates(rates: Arc<RateTable>) -> SessionContext {
        SessionContext {
            drain: DrainToken::default(),
            process: ProcessKind::Shared,
            admission: None,
            rates,
        }
    }

    /// Frees the session's admission before the 221 of QUIT.
    pub(crate) fn release_early(&self) {
        if let Some(a) = &self.admission {
            a.release();
        }
    }

    /// Records a failed login; true when the address is now banned.
    pub(crate) fn login_failed(&self, rules: &BanRules) -> bool {
        self.admission
            .as_ref()
            .is_some_and(|a| a.login_failed(rules))
    }

    /// True while the session's address is banned.
    pub(crate) fn banned(&self) -> bool {
        self.admission.as_ref().is_some_and(|a| a.is_banned())
    }
}
