//! The admission table: one count of sessions per server, shared by every worker thread,
//! worker process and forked child (shared memory made before any fork, shm.rs), so
//! `max_cons` and `max_cons_per_ip` hold exactly in every model, with the check and the
//! count one step under one lock; the failed logins and bans of each address (fail2ban's
//! `maxretry`/`findtime`/`bantime`, inside the server); and counters of the 421 refusals.
//!
//! Three tables live in shared memory, all changed under one lock (shm.rs): the addresses
//! (table.rs; four records per possible session; when full, the oldest record of an
//! address without a session is forgotten, so a ban may end early, and if every record
//! belongs to a connected address a new address is refused like a full server); one
//! ticket per admitted session, naming its address, the process that admitted it and a
//! generation, so a session is released exactly once — by itself when it ends (before its
//! 221), or by the parent when the process serving it died; and a stack of free tickets.
//!
//! Behind a balancer (PROXY protocol), a connection is admitted under the balancer's
//! address with only `max_cons` checked, and its ticket moved to the client's address once
//! the session has read the header ([`Admission::readdress`]), where the client's bans and
//! `max_cons_per_ip` apply. The session's side of a ticket is [`Admitted`] (admitted.rs).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::shm::{self, SharedArray, ZeroedAtomics};

mod admitted;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use admitted::{log_refusal, Admitted};
use table::{key, AddrTable, Key};

/// Sessions the table holds when `max_cons` is 0 (unlimited); beyond them new connections
/// are refused as when the server is full.
pub const UNLIMITED_SESSIONS: usize = 65_536;

/// Why a connection is refused; each has its 421 reply and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_cons` sessions are running (or the table is full).
    Full = 0,
    /// `max_cons_per_ip` sessions from this address are running.
    PerIp = 1,
    /// The address is banned after failed logins.
    Banned = 2,
    /// The server is draining.
    ShuttingDown = 3,
    /// The process is out of file descriptors.
    NoDescriptors = 4,
}

impl Refusal {
    /// The reply line sent before the connection is closed.
    pub(crate) fn reply(self) -> &'static str {
        match self {
            Refusal::Full => "421 Too many connections. Service temporarily unavailable.\r\n",
            Refusal::PerIp => "421 Too many connections from the same IP address.\r\n",
            Refusal::Banned => "421 Too many failed logins from your address; try again later.\r\n",
            Refusal::ShuttingDown => "421 Server shutting down.\r\n",
            Refusal::NoDescriptors => "421 Too many open files, try again later.\r\n",
        }
    }
}

/// Names of the refusal counters in the shutdown log line.
const REFUSAL_NAMES: [&str; 5] = [
    "max_cons",
    "per_ip",
    "banned",
    "shutting_down",
    "no_descriptors",
];

/// What a failed login did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strike {
    /// Counted; the address is not banned.
    Counted,
    /// This failure banned the address.
    Banned,
    /// The address was banned already.
    AlreadyBanned,
}

/// The lock, the counts and the flags: one per table.
#[repr(C)]
#[derive(Default)]
struct Header {
    lock: AtomicU32,
    sessions: AtomicU32,
    /// Free tickets on the stack.
    free_top: AtomicU32,
    /// Set when the server drains: every admission is refused.
    draining: AtomicU32,
    _pad: AtomicU32,
    /// Refusals by [`Refusal`].
    refused: [AtomicU64; 5],
    /// Bans imposed.
    bans: AtomicU64,
}

/// One admitted session.
#[repr(C)]
#[derive(Default)]
struct TicketSlot {
    /// Generation (high half) and pid of the admitting process (low half; 0: free).
    state: AtomicU64,
    hi: AtomicU64,
    lo: AtomicU64,
}

// SAFETY: `repr(C)`, only atomics (alignment 8), valid when zeroed.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Header {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for TicketSlot {}

/// An admitted session's place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    index: u32,
    gen: u32,
}

/// The admission table of one server (see the module docs).
pub(crate) struct Admission {
    head: SharedArray<Header>,
    addrs: AddrTable,
    tickets: SharedArray<TicketSlot>,
    free: SharedArray<AtomicU32>,
}

/// Milliseconds of CLOCK_MONOTONIC: one clock for every process of the machine.
fn now_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000,
        Err(_) => 0,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Admission {
    /// A table for a server of `max_cons` sessions (0: [`UNLIMITED_SESSIONS`]). Make it
    /// before forking: children share it.
    pub(crate) fn new(max_cons: usize) -> Admission {
        let sessions = if max_cons == 0 {
            UNLIMITED_SESSIONS
        } else {
            max_cons.min(1 << 20)
        };
        let entries = (sessions * 4).max(1024).next_power_of_two();
        let a = Admission {
            head: SharedArray::new(1, "admission counts"),
            addrs: AddrTable::new(entries),
            tickets: SharedArray::new(sessions, "admission counts"),
            free: SharedArray::new(sessions, "admission counts"),
        };
        for (i, f) in a.free.iter().enumerate() {
            f.store(i as u32, Ordering::Relaxed);
        }
        let h = a.h();
        h.free_top.store(sessions as u32, Ordering::Relaxed);
        a
    }

    fn h(&self) -> &Header {
        &self.head[0]
    }

    /// Sessions admitted and not yet released, in every process.
    pub(crate) fn sessions(&self) -> usize {
        self.h().sessions.load(Ordering::SeqCst) as usize
    }

    /// From now on every admission is refused with "shutting down".
    pub(crate) fn set_draining(&self) {
        self.h().draining.store(1, Ordering::SeqCst);
    }

    /// Counts a refusal made outside [`admit`](Self::admit).
    pub(crate) fn count(&self, r: Refusal) {
        self.h().refused[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The refusal counters, as the shutdown log line shows them:
    /// `421 refusals: max_cons=0 per_ip=0 banned=0 shutting_down=0 no_descriptors=0`.
    pub(crate) fn summary(&self) -> String {
        let mut out = String::from("421 refusals:");
        for (name, n) in REFUSAL_NAMES.iter().zip(&self.h().refused) {
            out.push_str(&format!(" {name}={}", n.load(Ordering::Relaxed)));
        }
        out.push_str(&format!(
            "; bans: {}; addresses on record: {}",
            self.h().bans.load(Ordering::Relaxed),
            self.addrs.used()
        ));
        out
    }

    /// The refusal counters (by [`Refusal`]) and the bans imposed.
    pub(crate) fn refusals(&self) -> ([u64; 5], u64) {
        let mut out = [0; 5];
        for (o, n) in out.iter_mut().zip(&self.h().refused) {
            *o = n.load(Ordering::Relaxed);
        }
        (out, self.h().bans.load(Ordering::Relaxed))
    }

    /// Admits a session from `ip` if the server is not draining, the address is not
    /// banned and both limits (0: none) leave room; check and count are one step.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        max_cons: usize,
        max_per_ip: usize,
    ) -> Result<Ticket, Refusal> {
        let r = self.admit_locked(key(ip), max_cons, Some(max_per_ip));
        if let Err(why) = r {
            self.count(why);
        }
        r
    }

    /// Admits a connection from a trusted proxy whose client is not known yet: only the
    /// drain and `max_cons` apply now, the client's bans and `max_cons_per_ip` once its
    /// PROXY header names it ([`readdress`](Self::readdress)). The session is counted
    /// under the proxy's address meanwhile.
    pub(crate) fn admit_unaddressed(&self, ip: IpAddr, max_cons: usize) -> Result<Ticket, Refusal> {
        let r = self.admit_locked(key(ip), max_cons, None);
        if let Err(why) = r {
            self.count(why);
        }
        r
    }

    /// `max_per_ip`: `None` skips the address's checks (bans, per-address count).
    fn admit_locked(
        &self,
        k: Key,
        max_cons: usize,
        max_per_ip: Option<usize>,
    ) -> Result<Ticket, Refusal> {
        let h = self.h();
        let _g = shm::lock(&h.lock, "admission");
        let now = now_ms();
        if h.draining.load(Ordering::Relaxed) != 0 {
            return Err(Refusal::ShuttingDown);
        }
        let found = self.addrs.find(k);
        if let Some(max_per_ip) = max_per_ip {
            self.address_allows(found, now, max_per_ip)?;
        }
        if max_cons > 0 && h.sessions.load(Ordering::Relaxed) as usize >= max_cons {
            return Err(Refusal::Full);
        }
        let top = h.free_top.load(Ordering::Relaxed);
        if top == 0 {
            return Err(Refusal::Full);
        }
        let Some(i) = found.or_else(|| self.addrs.insert(k, now)) else {
            log::warn!("the admission table is full of connected addresses");
            return Err(Refusal::Full);
        };
        let index = self.free[top as usize - 1].load(Ordering::Relaxed);
        h.free_top.store(top - 1, Ordering::Relaxed);
        let e = self.addrs.entry(i);
        e.conns
            .store(e.conns.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        h.sessions.fetch_add(1, Ordering::SeqCst);
        let t = &self.tickets[index as usize];
        let gen = ((t.state.load(Ordering::Relaxed) >> 32) as u32).wrapping_add(1);
        t.hi.store(k.0, Ordering::Relaxed);
        t.lo.store(k.1, Ordering::Relaxed);
        let pid = std::process::id().max(1);
        t.state
            .store((u64::from(gen) << 32) | u64::from(pid), Ordering::Relaxed);
        Ok(Ticket { index, gen })
    }

    /// Under the lock: the address of record `found` is not banned and has fewer than
    /// `max_per_ip` sessions (0: no limit).
    fn address_allows(
        &self,
        found: Option<usize>,
        now: u64,
        max_per_ip: usize,
    ) -> Result<(), Refusal> {
        let Some(e) = found.map(|i| self.addrs.entry(i)) else {
            return Ok(());
        };
        if e.banned_until.load(Ordering::Relaxed) > now {
            return Err(Refusal::Banned);
        }
        if max_per_ip > 0 && e.conns.load(Ordering::Relaxed) as usize >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        Ok(())
    }

    /// Moves an admitted session to the address of its real client (named by a PROXY
    /// header), if that address is not banned and has room under `max_per_ip`; otherwise
    /// the session stays counted under its old address until it is released. A ticket
    /// released already is left alone.
    pub(crate) fn readdress(
        &self,
        t: Ticket,
        ip: IpAddr,
        max_per_ip: usize,
    ) -> Result<(), Refusal> {
        let r = self.readdress_locked(t, key(ip), max_per_ip);
        if let Err(why) = r {
            self.count(why);
        }
        r
    }

    fn readdress_locked(&self, t: Ticket, k: Key, max_per_ip: usize) -> Result<(), Refusal> {
        let _g = shm::lock(&self.h().lock, "admission");
        let now = now_ms();
        let Some(slot) = self.tickets.get(t.index as usize) else {
            return Ok(());
        };
        let st = slot.state.load(Ordering::Relaxed);
        let old = (
            slot.hi.load(Ordering::Relaxed),
            slot.lo.load(Ordering::Relaxed),
        );
        if (st >> 32) as u32 != t.gen || st as u32 == 0 || old == k {
            return Ok(());
        }
        let found = self.addrs.find(k);
        self.address_allows(found, now, max_per_ip)?;
        let Some(i) = found.or_else(|| self.addrs.insert(k, now)) else {
            log::warn!("the admission table is full of connected addresses");
            return Err(Refusal::Full);
        };
        let e = self.addrs.entry(i);
        e.conns
            .store(e.conns.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        slot.hi.store(k.0, Ordering::Relaxed);
        slot.lo.store(k.1, Ordering::Relaxed);
        // The new record first: the old one (which has this session) is never the one a
        // full table forgets, and tidying it may move others.
        if let Some(o) = self.addrs.find(old) {
            let e = self.addrs.entry(o);
            e.conns.store(
                e.conns.load(Ordering::Relaxed).saturating_sub(1),
                Ordering::Relaxed,
            );
            self.addrs.tidy(o, now);
        }
        Ok(())
    }

    /// Releases an admitted session; a ticket released already (or reused since) is left
    /// alone, so the session and the parent that reaps it may both call this.
    pub(crate) fn release(&self, t: Ticket) {
        let _g = shm::lock(&self.h().lock, "admission");
        let Some(slot) = self.tickets.get(t.index as usize) else {
            return;
        };
        let st = slot.state.load(Ordering::Relaxed);
        if (st >> 32) as u32 == t.gen && st as u32 != 0 {
            self.free_ticket(t.index, now_ms());
        }
    }

    /// Releases every session admitted by `pid` (a pre-fork worker that died); returns
    /// how many.
    pub(crate) fn release_owned_by(&self, pid: u32) -> usize {
        let _g = shm::lock(&self.h().lock, "admission");
        let now = now_ms();
        let mut n = 0;
        for (i, t) in self.tickets.iter().enumerate() {
            if t.state.load(Ordering::Relaxed) as u32 == pid {
                self.free_ticket(i as u32, now);
                n += 1;
            }
        }
        n
    }

    /// Under the lock: frees a held ticket and uncounts its session.
    fn free_ticket(&self, index: u32, now: u64) {
        let h = self.h();
        let t = &self.tickets[index as usize];
        let st = t.state.load(Ordering::Relaxed);
        t.state.store(st & !0xffff_ffff, Ordering::Relaxed);
        let k = (t.hi.load(Ordering::Relaxed), t.lo.load(Ordering::Relaxed));
        if let Some(i) = self.addrs.find(k) {
            let e = self.addrs.entry(i);
            e.conns.store(
                e.conns.load(Ordering::Relaxed).saturating_sub(1),
                Ordering::Relaxed,
            );
            self.addrs.tidy(i, now);
        }
        let _ = h
            .sessions
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        let top = h.free_top.load(Ordering::Relaxed);
        if let Some(f) = self.free.get(top as usize) {
            f.store(index, Ordering::Relaxed);
            h.free_top.store(top + 1, Ordering::Relaxed);
        }
    }

    /// Records a failed login from `ip`: `failures` of them within `find_time` ban it for
    /// `ban_time` (0 failures: bans are off).
    pub(crate) fn login_failed(
        &self,
        ip: IpAddr,
        failures: u32,
        find_time: Duration,
        ban_time: Duration,
    ) -> Strike {
        if failures == 0 {
            return Strike::Counted;
        }
        let h = self.h();
        let _g = shm::lock(&h.lock, "admission");
        let now = now_ms();
        let k = key(ip);
        let Some(i) = self.addrs.find(k).or_else(|| self.addrs.insert(k, now)) else {
            return Strike::Counted;
        };
        let e = self.addrs.entry(i);
        if e.banned_until.load(Ordering::Relaxed) > now {
            return Strike::AlreadyBanned;
        }
        let mut fails = e.fails.load(Ordering::Relaxed);
        if fails == 0 || now.saturating_sub(e.window.load(Ordering::Relaxed)) >= ms(find_time) {
            fails = 0;
            e.window.store(now, Ordering::Relaxed);
        }
        fails += 1;
        if fails >= failures {
            e.banned_until
                .store(now.saturating_add(ms(ban_time)).max(1), Ordering::Relaxed);
            e.fails.store(0, Ordering::Relaxed);
            h.bans.fetch_add(1, Ordering::Relaxed);
            return Strike::Banned;
        }
        e.fails.store(fails, Ordering::Relaxed);
        Strike::Counted
    }

    /// True while `ip` is banned.
    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        let _g = shm::lock(&self.h().lock, "admission");
        let now = now_ms();
        self.addrs
            .find(key(ip))
            .is_some_and(|i| self.addrs.entry(i).banned_until.load(Ordering::Relaxed) > now)
    }
}
