//! The address table of the admission table (mod.rs): one record per client address (its
//! sessions, failed logins and ban) in shared memory, found by open addressing with linear
//! probing from a home slot given by a hash seeded at random when the table is made (so no
//! client can choose colliding addresses), with backward-shift deletion (no tombstones).
//! Kept at most three quarters full; when full, the oldest record of an address without a
//! session is forgotten. Every method runs under the admission table's lock.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::shm::{SharedArray, ZeroedAtomics};

pub(super) type Key = (u64, u64);

pub(super) fn key(ip: IpAddr) -> Key {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let bits = u128::from(v6);
    ((bits >> 64) as u64, bits as u64)
}

pub(super) fn key_ip(k: Key) -> IpAddr {
    crate::proto::unmap(IpAddr::V6(Ipv6Addr::from(
        (u128::from(k.0) << 64) | u128::from(k.1),
    )))
}

/// One address: its sessions, failed logins and ban.
#[repr(C)]
#[derive(Default)]
pub(super) struct Entry {
    /// The address as IPv6 (IPv4 mapped), high and low halves.
    pub(super) hi: AtomicU64,
    pub(super) lo: AtomicU64,
    pub(super) used: AtomicU32,
    pub(super) conns: AtomicU32,
    /// Failed logins in the window that started at `window`.
    pub(super) fails: AtomicU32,
    _pad: AtomicU32,
    /// Start of the failure window, ms of CLOCK_MONOTONIC.
    pub(super) window: AtomicU64,
    /// Refused until then (ms of CLOCK_MONOTONIC); 0: never banned.
    pub(super) banned_until: AtomicU64,
}

/// The table's own counters.
#[repr(C)]
#[derive(Default)]
struct TableHead {
    /// Entries in use.
    used: AtomicU32,
    _pad: AtomicU32,
    /// The hash seed.
    seed: [AtomicU64; 2],
}

// SAFETY: `repr(C)`, only atomics (alignment 8), valid when zeroed.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for Entry {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl ZeroedAtomics for TableHead {}

/// The address records (see the module docs).
pub(super) struct AddrTable {
    head: SharedArray<TableHead>,
    entries: SharedArray<Entry>,
}

impl AddrTable {
    /// A table of `len` entries (a power of two), seeded at random.
    pub(super) fn new(len: usize) -> AddrTable {
        let t = AddrTable {
            head: SharedArray::new(1, "admission counts"),
            entries: SharedArray::new(len.next_power_of_two(), "admission counts"),
        };
        let random = std::collections::hash_map::RandomState::new();
        for (i, s) in t.head[0].seed.iter().enumerate() {
            let mut x = random.build_hasher();
            x.write_usize(i);
            s.store(x.finish(), Ordering::Relaxed);
        }
        t
    }

    /// Entries in use.
    pub(super) fn used(&self) -> u32 {
        self.head[0].used.load(Ordering::Relaxed)
    }

    /// Entry `i` (from [`find`](Self::find) or [`insert`](Self::insert)).
    pub(super) fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, k: Key) -> usize {
        let seed = &self.head[0].seed;
        let mut x = std::collections::hash_map::DefaultHasher::new();
        x.write_u64(seed[0].load(Ordering::Relaxed));
        x.write_u64(seed[1].load(Ordering::Relaxed));
        x.write_u64(k.0);
        x.write_u64(k.1);
        (x.finish() as usize) & self.mask()
    }

    pub(super) fn key_at(&self, i: usize) -> Key {
        let e = &self.entries[i];
        (e.hi.load(Ordering::Relaxed), e.lo.load(Ordering::Relaxed))
    }

    /// Under the lock: the entry of `k`.
    pub(super) fn find(&self, k: Key) -> Option<usize> {
        let mut i = self.home(k);
        for _ in 0..self.entries.len() {
            if self.entries[i].used.load(Ordering::Relaxed) == 0 {
                return None;
            }
            if self.key_at(i) == k {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
        None
    }

    /// Under the lock: a new entry for `k` (making room if the table is full), or `None`.
    pub(super) fn insert(&self, k: Key, now: u64) -> Option<usize> {
        let h = &self.head[0];
        let limit = (self.entries.len() / 4 * 3) as u32;
        if h.used.load(Ordering::Relaxed) >= limit && !self.evict(now) {
            return None;
        }
        let mut i = self.home(k);
        while self.entries[i].used.load(Ordering::Relaxed) != 0 {
            i = (i + 1) & self.mask();
        }
        let e = &self.entries[i];
        e.hi.store(k.0, Ordering::Relaxed);
        e.lo.store(k.1, Ordering::Relaxed);
        e.conns.store(0, Ordering::Relaxed);
        e.fails.store(0, Ordering::Relaxed);
        e.window.store(now, Ordering::Relaxed);
        e.banned_until.store(0, Ordering::Relaxed);
        e.used.store(1, Ordering::Relaxed);
        h.used.fetch_add(1, Ordering::Relaxed);
        Some(i)
    }

    /// True when the entry records nothing worth keeping at `now`.
    fn stale(e: &Entry, now: u64) -> bool {
        e.conns.load(Ordering::Relaxed) == 0
            && e.banned_until.load(Ordering::Relaxed) <= now
            && e.fails.load(Ordering::Relaxed) == 0
    }

    /// Under the lock: removes entry `i` if it is stale.
    pub(super) fn tidy(&self, i: usize, now: u64) {
        if Self::stale(&self.entries[i], now) {
            self.remove(i);
        }
    }

    /// Under the lock, the table full: forgets the oldest record of an address with no
    /// session (a stale one first). False when every entry has a session.
    fn evict(&self, now: u64) -> bool {
        let mut oldest: Option<(u64, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            if e.used.load(Ordering::Relaxed) == 0 || e.conns.load(Ordering::Relaxed) > 0 {
                continue;
            }
            if Self::stale(e, now) {
                self.remove(i);
                return true;
            }
            let age = e.window.load(Ordering::Relaxed);
            if oldest.is_none_or(|(a, _)| age < a) {
                oldest = Some((age, i));
            }
        }
        let Some((_, i)) = oldest else {
            return false;
        };
        log::debug!(
            "admission table full: forgetting the failed logins of {}",
            key_ip(self.key_at(i))
        );
        self.remove(i);
        true
    }

    /// Under the lock: empties entry `i`, moving later entries of its probe run back so
    /// every remaining key stays reachable from its home (backward-shift deletion).
    fn remove(&self, i: usize) {
        let mask = self.mask();
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.entries[j].used.load(Ordering::Relaxed) == 0 {
                break;
            }
            let home = self.home(self.key_at(j));
            // Entry j may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.copy_entry(j, hole);
                hole = j;
            }
        }
        let e = &self.entries[hole];
        e.used.store(0, Ordering::Relaxed);
        let h = &self.head[0];
        h.used.store(
            h.used.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    fn copy_entry(&self, from: usize, to: usize) {
        let (a, b) = (&self.entries[from], &self.entries[to]);
        for (x, y) in [(&a.hi, &b.hi), (&a.lo, &b.lo), (&a.window, &b.window)] {
            y.store(x.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        b.banned_until
            .store(a.banned_until.load(Ordering::Relaxed), Ordering::Relaxed);
        for (x, y) in [
            (&a.used, &b.used),
            (&a.conns, &b.conns),
            (&a.fails, &b.fails),
        ] {
            y.store(x.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}
