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

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::handlers::{AdmissionHooks, BanRules};
use crate::shm::{self, SharedArray, ZeroedAtomics};

mod table;
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

    /// Admits a session from `ip` if the server is not draining, the address is not
    /// banned and both limits (0: none) leave room; check and count are one step.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        max_cons: usize,
        max_per_ip: usize,
    ) -> Result<Ticket, Refusal> {
        let r = self.admit_locked(key(ip), max_cons, max_per_ip);
        if let Err(why) = r {
            self.count(why);
        }
        r
    }

    fn admit_locked(&self, k: Key, max_cons: usize, max_per_ip: usize) -> Result<Ticket, Refusal> {
        let h = self.h();
        let _g = shm::lock(&h.lock, "admission");
        let now = now_ms();
        if h.draining.load(Ordering::Relaxed) != 0 {
            return Err(Refusal::ShuttingDown);
        }
        let found = self.addrs.find(k);
        if let Some(e) = found.map(|i| self.addrs.entry(i)) {
            if e.banned_until.load(Ordering::Relaxed) > now {
                return Err(Refusal::Banned);
            }
        }
        if max_cons > 0 && h.sessions.load(Ordering::Relaxed) as usize >= max_cons {
            return Err(Refusal::Full);
        }
        let conns = found.map_or(0, |i| self.addrs.entry(i).conns.load(Ordering::Relaxed));
        if max_per_ip > 0 && conns as usize >= max_per_ip {
            return Err(Refusal::PerIp);
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
        e.conns.store(conns + 1, Ordering::Relaxed);
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

/// A session's admission: released once, when the session ends or earlier (QUIT), by
/// whichever of its holders gets there first.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    ticket: Ticket,
    ip: IpAddr,
    released: AtomicBool,
}

impl Admitted {
    pub(crate) fn new(admission: Arc<Admission>, ticket: Ticket, ip: IpAddr) -> Admitted {
        Admitted {
            admission,
            ticket,
            ip,
            released: AtomicBool::new(false),
        }
    }

    /// The same admission for another process (a forked child serving the session).
    pub(crate) fn share(&self) -> Admitted {
        Admitted::new(self.admission.clone(), self.ticket, self.ip)
    }

    /// The client's address.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
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
}

#[cfg(test)]
mod tests {
    use super::table::key_ip;
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn limits_are_exact_and_released_once() {
        let a = Admission::new(3);
        let t1 = a.admit(ip(1), 3, 2).unwrap();
        let t2 = a.admit(ip(1), 3, 2).unwrap();
        assert_eq!(a.admit(ip(1), 3, 2), Err(Refusal::PerIp));
        let t3 = a.admit(ip(2), 3, 2).unwrap();
        assert_eq!(a.admit(ip(3), 3, 2), Err(Refusal::Full));
        assert_eq!(a.sessions(), 3);
        a.release(t1);
        a.release(t1);
        assert_eq!(a.sessions(), 2, "a second release is a no-op");
        let t4 = a.admit(ip(1), 3, 2).unwrap();
        assert_eq!(t4.index, t1.index, "the freed ticket is reused");
        a.release(t1);
        assert_eq!(
            a.sessions(),
            3,
            "an old ticket does not release its successor"
        );
        for t in [t2, t3, t4] {
            a.release(t);
        }
        assert_eq!(a.sessions(), 0);
        assert_eq!(a.addrs.used(), 0, "no entry left");
        a.set_draining();
        assert_eq!(a.admit(ip(9), 3, 2), Err(Refusal::ShuttingDown));
        assert!(a.summary().contains("per_ip=1 banned=0 shutting_down=1"));
    }

    #[test]
    fn a_dead_owner_is_released_by_pid() {
        let a = Admission::new(0);
        let _t = a.admit(ip(1), 0, 0).unwrap();
        let _u = a.admit(ip(2), 0, 0).unwrap();
        assert_eq!(a.release_owned_by(std::process::id()), 2);
        assert_eq!(a.sessions(), 0);
    }

    #[test]
    fn failures_ban_within_the_window() {
        let a = Admission::new(8);
        let (find, ban) = (Duration::from_secs(600), Duration::from_secs(600));
        assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::Counted);
        assert_eq!(a.login_failed(ip(2), 3, find, ban), Strike::Counted);
        assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::Counted);
        assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::Banned);
        assert_eq!(a.login_failed(ip(1), 3, find, ban), Strike::AlreadyBanned);
        assert!(a.is_banned(ip(1)) && !a.is_banned(ip(2)));
        assert_eq!(a.admit(ip(1), 0, 0), Err(Refusal::Banned));
        assert!(a.admit(ip(2), 0, 0).is_ok());
        // A zero ban time ends at once; a zero window never adds failures up.
        let z = Duration::ZERO;
        assert_eq!(a.login_failed(ip(3), 2, z, z), Strike::Counted);
        assert_eq!(a.login_failed(ip(3), 2, z, z), Strike::Counted);
        assert_eq!(a.login_failed(ip(3), 1, find, z), Strike::Banned);
        assert!(!a.is_banned(ip(3)));
    }

    #[test]
    fn a_full_table_forgets_the_oldest_record_and_keeps_every_key_reachable() {
        let a = Admission::new(1); // 1024 entries, 768 usable
        let (find, ban) = (Duration::from_secs(600), Duration::from_secs(600));
        for n in 0..2000 {
            a.login_failed(ip(n), 5, find, ban);
        }
        assert!(a.addrs.used() <= 768);
        // Every recorded key is still found after all the shifting.
        let found = (0..2000)
            .filter(|n| a.addrs.find(key(ip(*n))).is_some())
            .count();
        assert_eq!(found, a.addrs.used() as usize);
        assert!(
            a.admit(ip(5000), 1, 0).is_ok(),
            "room is made for a session"
        );
    }

    #[test]
    fn backward_shift_keeps_runs_intact() {
        let a = Admission::new(600);
        let keys: Vec<IpAddr> = (0..600).map(ip).collect();
        let tickets: Vec<Ticket> = keys.iter().map(|k| a.admit(*k, 0, 0).unwrap()).collect();
        for (n, t) in tickets.iter().enumerate() {
            if n % 3 == 0 {
                a.release(*t);
            }
        }
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(a.addrs.find(key(*k)).is_some(), n % 3 != 0, "{k}");
        }
    }

    #[test]
    fn ipv4_and_mapped_ipv6_are_one_address() {
        let a = Admission::new(4);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _t = a.admit(v4, 0, 1).unwrap();
        assert_eq!(a.admit(mapped, 0, 1), Err(Refusal::PerIp));
        assert_eq!(key_ip(key(mapped)), v4);
    }
}
