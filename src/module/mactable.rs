//! A bounded MAC learning table keyed by (VLAN, MAC), shared by the `learn`
//! module (every entry in VLAN 0) and the flow module's NORMAL action.
//!
//! Guarantees:
//! - Memory is fixed at construction: a set-associative hash table (8 ways
//!   per bucket) sized for `max_entries`, whatever arrives.
//! - Lookups are lock-free and never pair a key with another entry's port:
//!   an entry's key word doubles as its sequence word (it is emptied before
//!   a slot is reused and re-read after the port), as in a seqlock.
//! - Learning a known (VLAN, MAC) on its own port is lock-free (a time
//!   stamp store at most once a second); new entries, moves and aging take
//!   a mutex.
//! - Bounds: at most `max_entries` entries, at most `port_max` per port.
//!   When a bucket or the table is full, a newcomer may only evict an entry
//!   of a port that holds more entries than its own port (plus one): a MAC
//!   flood from one port fills at most its own share and never evicts the
//!   hosts of quieter ports, while those ports can still take room back
//!   from the flooder. The hash is keyed per table, so senders cannot aim
//!   collisions at a bucket.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard};

use crate::port::{MAX_PORTS, PortId};
use crate::wire::MacAddr;

use super::Nanos;

const WAYS: usize = 8;
const NS_PER_SEC: u64 = 1_000_000_000;
/// Marks a used key word (a key is never 0, so 0 is an empty way).
const USED: u64 = 1 << 63;

/// The bounds of a [`MacTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacLimits {
    /// Most entries at once (Open vSwitch's `mac-table-size`, 8192).
    pub max_entries: usize,
    /// Most entries learned on one port (default: half the table).
    pub port_max: usize,
    /// Seconds an entry lives without traffic from its MAC (Open vSwitch's
    /// `mac-aging-time`, 300).
    pub aging_secs: u32,
}

impl Default for MacLimits {
    fn default() -> Self {
        MacLimits {
            max_entries: 8192,
            port_max: 4096,
            aging_secs: 300,
        }
    }
}

/// The key of `mac` (its 48 bits, as from [`mac_at`]) in `vlan`.
#[inline]
pub fn key(vlan: u16, mac: u64) -> u64 {
    USED | u64::from(vlan & 0xfff) << 48 | (mac & 0xffff_ffff_ffff)
}

/// The 48-bit MAC in the first six bytes of `b` (which has them).
#[inline]
pub fn mac_at(b: &[u8]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Whether a MAC (as from [`mac_at`]) is a group (multicast or broadcast)
/// address, never a valid source.
#[inline]
pub fn is_group(mac: u64) -> bool {
    mac & (1 << 40) != 0
}

/// One learned entry, for display (`fdb/show`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    pub port: PortId,
    pub vlan: u16,
    pub mac: MacAddr,
    /// Seconds since traffic from the MAC was last seen.
    pub age_secs: u32,
}

/// Ways of one bucket: key words, ports and last-seen seconds, in two
/// adjacent cache lines.
#[repr(C, align(64))]
struct Bucket {
    keys: [AtomicU64; WAYS],
    ports: [AtomicU16; WAYS],
    seen: [AtomicU32; WAYS],
}

/// Bookkeeping changed only under the write lock.
struct Books {
    per_port: Vec<u32>,
    total: usize,
}

/// What learning one source did (for callers that count more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Already known there (refreshed).
    Known,
    New,
    Moved,
    /// No room for it (per-port bound or a full bucket/table).
    Refused,
}

pub struct MacTable {
    limits: MacLimits,
    buckets: Box<[Bucket]>,
    mask: usize,
    seed: u64,
    books: Mutex<Books>,
    learned: AtomicU64,
    moved: AtomicU64,
    refused: AtomicU64,
    aged: AtomicU64,
}

impl MacTable {
    pub fn new(limits: MacLimits) -> MacTable {
        let limits = MacLimits {
            max_entries: limits.max_entries.max(1),
            port_max: limits.port_max.clamp(1, limits.max_entries.max(1)),
            aging_secs: limits.aging_secs.max(1),
        };
        let nbuckets = (limits.max_entries * 2).div_ceil(WAYS).next_power_of_two();
        let buckets = (0..nbuckets)
            .map(|_| Bucket {
                keys: Default::default(),
                ports: Default::default(),
                seen: Default::default(),
            })
            .collect();
        MacTable {
            limits,
            buckets,
            mask: nbuckets - 1,
            seed: std::collections::hash_map::RandomState::new()
                .hash_one(0x006d_7377_6974_6368_u64),
            books: Mutex::new(Books {
                per_port: vec![0; MAX_PORTS],
                total: 0,
            }),
            learned: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            aged: AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> MacLimits {
        self.limits
    }

    /// Seconds since the time origin, as entries record it.
    #[inline]
    pub fn secs(now: Nanos) -> u32 {
        (now / NS_PER_SEC) as u32
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn bucket_of(&self, key: u64) -> usize {
        let h = (key ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 32) ^ h) as usize & self.mask
    }

    #[inline]
    fn way(&self, idx: usize) -> (&Bucket, usize) {
        (&self.buckets[idx / WAYS], idx % WAYS)
    }

    #[inline]
    fn live(&self, idx: usize, now_s: u32) -> bool {
        let (b, w) = self.way(idx);
        now_s.wrapping_sub(b.seen[w].load(Ordering::Relaxed)) < self.limits.aging_secs
    }

    /// Finds `key`'s entry: (entry index, port), live or not. A slot being
    /// rewritten while we read it reads as absent.
    #[inline]
    fn find(&self, key: u64) -> Option<(usize, u16)> {
        let bi = self.bucket_of(key);
        let b = &self.buckets[bi];
        for w in 0..WAYS {
            if b.keys[w].load(Ordering::Acquire) == key {
                let p = b.ports[w].load(Ordering::Relaxed);
                // Pairs with the release fence in `put`: if we read a port
                // stored for a newer key, the key word no longer reads `key`.
                fence(Ordering::Acquire);
                if b.keys[w].load(Ordering::Relaxed) != key {
                    return None;
                }
                return Some((bi * WAYS + w, p));
            }
        }
        None
    }

    /// The port `key` was learned on, if its entry is live at `now_s`.
    #[inline]
    pub fn lookup_secs(&self, key: u64, now_s: u32) -> Option<PortId> {
        self.find(key)
            .filter(|&(i, _)| self.live(i, now_s))
            .map(|(_, p)| PortId(p))
    }

    /// The port `mac` was learned on in `vlan`, if its entry is live.
    pub fn lookup(&self, vlan: u16, mac: u64, now: Nanos) -> Option<PortId> {
        self.lookup_secs(key(vlan, mac), Self::secs(now))
    }

    /// Learns that `key`'s MAC is behind `port`. The caller has checked
    /// that the MAC is not a group address.
    #[inline]
    pub fn learn(&self, key: u64, port: PortId, now_s: u32) -> Learned {
        if let Some((i, p)) = self.find(key)
            && p == port.0
        {
            let (b, w) = self.way(i);
            if b.seen[w].load(Ordering::Relaxed) != now_s {
                b.seen[w].store(now_s, Ordering::Relaxed);
            }
            return Learned::Known;
        }
        self.learn_slow(key, port, now_s)
    }

    fn learn_slow(&self, key: u64, port: PortId, now_s: u32) -> Learned {
        let mut books = self.books();
        if let Some((i, p)) = self.find(key) {
            // Seen on another port: the host moved (or raced us here).
            let (b, w) = self.way(i);
            b.seen[w].store(now_s, Ordering::Relaxed);
            if p == port.0 {
                return Learned::Known;
            }
            books.per_port[usize::from(p)] -= 1;
            books.per_port[port.index()] += 1;
            // Same key, new port: a reader gets either, both right then.
            b.ports[w].store(port.0, Ordering::Relaxed);
            self.moved.fetch_add(1, Ordering::Relaxed);
            return Learned::Moved;
        }
        if books.per_port[port.index()] as usize >= self.limits.port_max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Learned::Refused;
        }
        let base = self.bucket_of(key) * WAYS;
        let mut free = None;
        for i in base..base + WAYS {
            let (b, w) = self.way(i);
            let k = b.keys[w].load(Ordering::Relaxed);
            if k == 0 {
                free = Some(i);
                break;
            }
            if !self.live(i, now_s) {
                self.remove(&mut books, i);
                self.aged.fetch_add(1, Ordering::Relaxed);
                free = Some(i);
                break;
            }
        }
        if free.is_some() && books.total >= self.limits.max_entries {
            free = None;
        }
        let slot = match free {
            Some(s) => s,
            None => {
                // Full: evict the oldest entry of the heaviest port in this
                // bucket, but only if that port holds more than the newcomer's.
                let mine = books.per_port[port.index()];
                let victim = (base..base + WAYS)
                    .filter_map(|i| {
                        let (b, w) = self.way(i);
                        (b.keys[w].load(Ordering::Relaxed) != 0).then(|| {
                            let p = b.ports[w].load(Ordering::Relaxed);
                            (
                                i,
                                books.per_port[usize::from(p)],
                                b.seen[w].load(Ordering::Relaxed),
                            )
                        })
                    })
                    .filter(|&(_, n, _)| n > mine + 1)
                    .max_by_key(|&(_, n, seen)| (n, u32::MAX - seen));
                match victim {
                    Some((i, _, _)) => {
                        self.remove(&mut books, i);
                        i
                    }
                    None => {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        return Learned::Refused;
                    }
                }
            }
        };
        self.put(slot, key, port, now_s);
        books.per_port[port.index()] += 1;
        books.total += 1;
        self.learned.fetch_add(1, Ordering::Relaxed);
        Learned::New
    }

    /// Fills an empty slot (under the write lock).
    fn put(&self, idx: usize, key: u64, port: PortId, now_s: u32) {
        let (b, w) = self.way(idx);
        // The key word is 0 here; the fence orders that emptying before the
        // new port, for readers that still look for the slot's old key.
        fence(Ordering::Release);
        b.seen[w].store(now_s, Ordering::Relaxed);
        b.ports[w].store(port.0, Ordering::Relaxed);
        b.keys[w].store(key, Ordering::Release);
    }

    fn remove(&self, books: &mut Books, idx: usize) {
        let (b, w) = self.way(idx);
        b.keys[w].store(0, Ordering::Release);
        let p = b.ports[w].load(Ordering::Relaxed);
        books.per_port[usize::from(p)] -= 1;
        books.total -= 1;
    }

    /// Removes the entries for which `pred(key, port, seen)` holds (under
    /// the write lock); returns how many.
    fn sweep(&self, mut pred: impl FnMut(u64, u16, usize) -> bool) -> u64 {
        let mut books = self.books();
        let mut n = 0;
        for i in 0..self.buckets.len() * WAYS {
            let (b, w) = self.way(i);
            let k = b.keys[w].load(Ordering::Relaxed);
            if k != 0 && pred(k, b.ports[w].load(Ordering::Relaxed), i) {
                self.remove(&mut books, i);
                n += 1;
            }
        }
        n
    }

    /// Ages out entries not refreshed within the aging time.
    pub fn expire(&self, now: Nanos) {
        let now_s = Self::secs(now);
        let n = self.sweep(|_, _, i| !self.live(i, now_s));
        self.aged.fetch_add(n, Ordering::Relaxed);
    }

    /// Forgets the MACs learned on `port`.
    pub fn forget_port(&self, port: PortId) {
        self.sweep(|_, p, _| p == port.0);
    }

    /// Forgets every entry (`fdb/flush`).
    pub fn flush(&self) {
        self.sweep(|_, _, _| true);
    }

    /// The live entries at `now`, by VLAN, MAC.
    pub fn entries(&self, now: Nanos) -> Vec<MacEntry> {
        let now_s = Self::secs(now);
        let _books = self.books();
        let mut v = Vec::new();
        for i in 0..self.buckets.len() * WAYS {
            let (b, w) = self.way(i);
            let k = b.keys[w].load(Ordering::Relaxed);
            if k == 0 || !self.live(i, now_s) {
                continue;
            }
            let m = (k & 0xffff_ffff_ffff).to_be_bytes();
            v.push(MacEntry {
                port: PortId(b.ports[w].load(Ordering::Relaxed)),
                vlan: ((k >> 48) & 0xfff) as u16,
                mac: MacAddr([m[2], m[3], m[4], m[5], m[6], m[7]]),
                age_secs: now_s.wrapping_sub(b.seen[w].load(Ordering::Relaxed)),
            });
        }
        v.sort_by_key(|e| (e.vlan, e.mac.0));
        v
    }

    /// Entries as far as the bookkeeping knows (expired ones count until
    /// the next [`MacTable::expire`] or until their slot is reused).
    pub fn len(&self) -> usize {
        self.books().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries learned on `port`.
    pub fn port_entries(&self, port: PortId) -> u32 {
        self.books()
            .per_port
            .get(port.index())
            .copied()
            .unwrap_or(0)
    }

    /// (entries, learned, moved, refused, aged).
    pub fn counters(&self) -> [(&'static str, u64); 5] {
        [
            ("entries", self.len() as u64),
            ("learned", self.learned.load(Ordering::Relaxed)),
            ("moved", self.moved.load(Ordering::Relaxed)),
            ("refused", self.refused.load(Ordering::Relaxed)),
            ("aged", self.aged.load(Ordering::Relaxed)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = NS_PER_SEC;

    fn mac(n: u32) -> u64 {
        MacAddr::local(n).to_u64()
    }

    #[test]
    fn vlans_keep_separate_entries() {
        let t = MacTable::new(MacLimits::default());
        assert_eq!(t.learn(key(10, mac(1)), PortId(1), 0), Learned::New);
        assert_eq!(t.learn(key(20, mac(1)), PortId(2), 0), Learned::New);
        assert_eq!(t.learn(key(10, mac(1)), PortId(1), 0), Learned::Known);
        assert_eq!(t.lookup(10, mac(1), 0), Some(PortId(1)));
        assert_eq!(t.lookup(20, mac(1), 0), Some(PortId(2)));
        assert_eq!(t.lookup(30, mac(1), 0), None);
        assert_eq!(t.learn(key(10, mac(1)), PortId(3), 1), Learned::Moved);
        assert_eq!(t.lookup(10, mac(1), SEC), Some(PortId(3)));
        let e = t.entries(3 * SEC);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            MacEntry {
                port: PortId(3),
                vlan: 10,
                mac: MacAddr::local(1),
                age_secs: 2
            }
        );
        assert_eq!((e[1].vlan, e[1].age_secs), (20, 3));
        t.flush();
        assert!(t.is_empty() && t.entries(3 * SEC).is_empty());
    }

    #[test]
    fn bounds_hold_and_refusals_count() {
        let t = MacTable::new(MacLimits {
            max_entries: 64,
            port_max: 16,
            aging_secs: 300,
        });
        for i in 0..1000 {
            t.learn(key(1, mac(100 + i)), PortId(1), 0);
        }
        assert_eq!(t.port_entries(PortId(1)), 16);
        for p in 2..=10u16 {
            for i in 0..20 {
                t.learn(key(1, mac(10_000 * u32::from(p) + i)), PortId(p), 0);
            }
        }
        assert!(t.len() <= 64);
        assert!(t.counters()[3].1 > 0);
    }

    /// Readers racing inserts, evictions and flushes never see a key with
    /// a port that was never its own (each key has one port here).
    #[test]
    fn lookups_never_pair_a_key_with_another_entrys_port() {
        let t = std::sync::Arc::new(MacTable::new(MacLimits {
            max_entries: 64,
            port_max: 64,
            aging_secs: 300,
        }));
        let port_of = |n: u32| PortId((n % 50 + 1) as u16);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (t, stop) = (t.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut found = 0u64;
                    let mut n = r;
                    while !stop.load(Ordering::Relaxed) {
                        n = (n + 7) % 1000;
                        if let Some(p) = t.lookup(1, mac(n), 0) {
                            assert_eq!(p, port_of(n), "mac {n}");
                            found += 1;
                        }
                    }
                    found
                })
            })
            .collect();
        for round in 0..200u32 {
            for n in 0..1000 {
                t.learn(
                    key(1, mac((n + round) % 1000)),
                    port_of((n + round) % 1000),
                    0,
                );
            }
            if round % 10 == 0 {
                t.flush();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let found: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(found > 0);
    }
}
