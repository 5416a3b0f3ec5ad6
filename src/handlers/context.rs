//! What a session receives from the server that runs it, as one explicit value: the drain
//! token of a graceful shutdown, the kind of process it runs in, its place in the server's
//! admission table (freed before the 221 of QUIT, told of failed logins for bans), the
//! shared rate buckets and the session counters. The server builds one per session
//! (servers/); a program that calls [`Session::run`](super::Session::run) itself gets a
//! [`SessionContext::default`], whose parts belong to that session alone. Nothing here is a
//! thread-local or a static: the session reads only what it was given.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::rates::RateTable;
use super::stats::Counters;

/// How a server ends its sessions now (see [`Wakeups::end`]).
const RUNNING: u8 = 0;
const END_WITH_421: u8 = 1;
const END_SILENTLY: u8 = 2;

/// Two wake-up descriptors (eventfds) a server shares with every session of its process:
/// one becomes readable when the server drains (idle sessions wait on it beside their
/// control connection, so they wake and end with 421), the other when it ends every
/// session now (every session waits on it, transfers included). Once readable they stay
/// readable. Two descriptors for the whole process, where keeping a duplicate of every
/// session's socket to shut it down took one descriptor per session: 10,000 sessions need
/// 10,000 descriptors, not 20,000.
#[derive(Debug)]
pub struct Wakeups {
    drain: OwnedFd,
    end: OwnedFd,
    how: AtomicU8,
}

impl Wakeups {
    /// Two fresh eventfds.
    ///
    /// # Errors
    /// eventfd(2) failed (out of descriptors).
    pub fn new() -> io::Result<Wakeups> {
        let make = || -> io::Result<OwnedFd> {
            let e = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
            Ok(OwnedFd::from(e))
        };
        Ok(Wakeups {
            drain: make()?,
            end: make()?,
            how: AtomicU8::new(RUNNING),
        })
    }

    /// Wakes the idle sessions (the drain flag is set first by the caller).
    pub fn drain(&self) {
        ring(&self.drain);
    }

    /// Ends every session now: with `421 Server shutting down.`, or `silently` (pyftpdlib's
    /// `close_all`: the connection just closes).
    pub fn end(&self, silently: bool) {
        let how = if silently { END_SILENTLY } else { END_WITH_421 };
        let _ = self
            .how
            .compare_exchange(RUNNING, how, Ordering::SeqCst, Ordering::SeqCst);
        ring(&self.end);
        ring(&self.drain);
    }
}

/// Makes an eventfd readable for good (a full counter only refuses more: still readable).
fn ring(fd: &OwnedFd) {
    let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
}

/// The drain flag of a server and the "running a command" flag of one session, shared with
/// the server's drainer (graceful shutdown: idle sessions end with `421` at once, busy ones
/// finish their command first), and the server's [`Wakeups`].
///
/// An idle session marks itself idle, reads the flag, then waits on its control connection
/// and the drain descriptor together: a drain that starts after the flag was read still
/// wakes it. Without wake-ups (a token made with [`new`](Self::new) alone) a drain is seen
/// when the session next goes idle.
#[derive(Debug, Clone, Default)]
pub struct DrainToken {
    draining: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
    wakeups: Option<Arc<Wakeups>>,
}

impl DrainToken {
    /// A token on a server's drain flag and the session's busy flag.
    pub fn new(draining: Arc<AtomicBool>, busy: Arc<AtomicBool>) -> DrainToken {
        DrainToken {
            draining,
            busy,
            wakeups: None,
        }
    }

    /// The token with the server's wake-up descriptors.
    pub fn with_wakeups(mut self, w: Arc<Wakeups>) -> DrainToken {
        self.wakeups = Some(w);
        self
    }

    /// The descriptors a session waits on beside its control connection: the end one
    /// always, the drain one too when `idle`.
    pub(crate) fn wake_fds(&self, idle: bool) -> WakeFds<'_> {
        match &self.wakeups {
            Some(w) => WakeFds {
                end: Some(w.end.as_fd()),
                drain: idle.then(|| w.drain.as_fd()),
            },
            None => WakeFds::default(),
        }
    }

    /// `Some(silently)` once the server ends every session now.
    pub(crate) fn ending(&self) -> Option<bool> {
        match self.wakeups.as_ref()?.how.load(Ordering::SeqCst) {
            END_WITH_421 => Some(false),
            END_SILENTLY => Some(true),
            _ => None,
        }
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

/// The wake-up descriptors a session polls beside what it waits for (see
/// [`DrainToken::wake_fds`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WakeFds<'a> {
    /// Readable once the server ends every session now.
    pub(crate) end: Option<BorrowedFd<'a>>,
    /// Readable once the server drains (only while the session is idle).
    pub(crate) drain: Option<BorrowedFd<'a>>,
}

impl<'a> WakeFds<'a> {
    /// The descriptors to add to a poll(2), `fallback` standing in for an absent one (a
    /// descriptor polled twice is harmless; a fixed-size set keeps the callers simple).
    pub(crate) fn or(self, fallback: BorrowedFd<'a>) -> [BorrowedFd<'a>; 2] {
        [self.end.unwrap_or(fallback), self.drain.unwrap_or(fallback)]
    }

    /// True when any of them is there.
    pub(crate) fn any(&self) -> bool {
        self.end.is_some() || self.drain.is_some()
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
    /// The session's PROXY protocol header named its real client: the session's place moves
    /// to that address, whose bans and per-address limit apply from now on. `Err` is the
    /// reply line (`421 …\r\n`) to close the connection with. The default accepts.
    fn proxied(&self, _client: std::net::SocketAddr) -> Result<(), &'static str> {
        Ok(())
    }
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
    /// The server's session counters (sessions, logins, transfers, bytes), made before any
    /// fork: the session adds to them as it goes.
    pub stats: Arc<Counters>,
}

impl fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("drain", &self.drain)
            .field("process", &self.process)
            .field("admitted", &self.admission.is_some())
            .field("rates", &self.rates)
            .field("stats", &self.stats)
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
            stats: Arc::new(Counters::new()),
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

    /// The session's client is `client` (its PROXY header said so): `Err` is the 421
    /// line when that address may not connect.
    pub(crate) fn proxied(&self, client: std::net::SocketAddr) -> Result<(), &'static str> {
        self.admission
            .as_ref()
            .map_or(Ok(()), |a| a.proxied(client))
    }

    /// True while the session's address is banned.
    pub(crate) fn banned(&self) -> bool {
        self.admission.as_ref().is_some_and(|a| a.is_banned())
    }
}
