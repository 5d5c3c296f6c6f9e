//! `learn`: a learning bridge.
//!
//! Learns each source MAC on its input port, forwards known unicast to the
//! learned port, floods unknown unicast, broadcast and multicast, drops frames
//! whose destination sits on the input port, and ages entries out.
//!
//! The MAC table is a fixed-size, set-associative hash table (8 entries per
//! 64-byte bucket) allocated once: memory is bounded whatever arrives. Each
//! entry is one `u64` (`mac << 16 | port`), so lookups are lock-free and never
//! see a MAC paired with another entry's port. Inserts, moves and aging take a
//! mutex; the hot path takes it only for a MAC it has not seen on that port.
//!
//! A MAC flood from one port cannot take over the table: a port may hold at
//! most `port_max` entries, and when a bucket or the table is full a newcomer
//! may only evict an entry of a port that holds more entries than its own.
//! The hash is keyed per table, so senders cannot aim collisions at a bucket.
//!
//! Spec: `learn[:max=N,port_max=N,aging=SECS]` (defaults 8192, max/2, 300).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Module, ModuleError, ModuleInfo, Nanos, Verdict, Verdicts, parse_args};
use crate::packet::Batch;
use crate::port::{MAX_PORTS, PortId};

pub const INFO: ModuleInfo = ModuleInfo {
    name: "learn",
    help: "learning bridge; learn:max=8192,port_max=4096,aging=300",
    build: |args| Ok(Arc::new(Learn::new(LearnConfig::parse(args)?))),
};

const WAYS: usize = 8;
const NS_PER_SEC: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnConfig {
    /// Most MACs learned at once.
    pub max_entries: usize,
    /// Most MACs learned on one port.
    pub port_max: usize,
    /// Seconds an entry lives without traffic from its MAC.
    pub aging_secs: u32,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            max_entries: 8192,
            port_max: 4096,
            aging_secs: 300,
        }
    }
}

impl LearnConfig {
    pub fn parse(args: &str) -> Result<LearnConfig, ModuleError> {
        let bad = |msg: String| ModuleError::BadArgs {
            module: "learn",
            msg,
        };
        let mut c = LearnConfig::default();
        let mut port_max = None;
        for (k, v) in parse_args("learn", args)? {
            let n: u64 = v
                .parse()
                .map_err(|_| bad(format!("{k}: '{v}' is not a number")))?;
            match k.as_str() {
                "max" if (1..=1 << 24).contains(&n) => c.max_entries = n as usize,
                "port_max" if n >= 1 => port_max = Some(n as usize),
                "aging" if (1..=1_000_000).contains(&n) => c.aging_secs = n as u32,
                "max" | "port_max" | "aging" => {
                    return Err(bad(format!("{k}={v} is out of range")));
                }
                _ => return Err(bad(format!("unknown option '{k}' (max, port_max, aging)"))),
            }
        }
        c.port_max = port_max
            .unwrap_or(c.max_entries.div_ceil(2))
            .min(c.max_entries);
        Ok(c)
    }
}

#[repr(C, align(64))]
struct Bucket([AtomicU64; WAYS]);

/// Bookkeeping changed only under the write lock.
struct Books {
    per_port: Vec<u32>,
    total: usize,
}

pub struct Learn {
    cfg: LearnConfig,
    buckets: Box<[Bucket]>,
    /// Last time (seconds) each entry's MAC was seen, indexed like the entries.
    seen: Box<[AtomicU32]>,
    mask: usize,
    seed: u64,
    books: Mutex<Books>,
    learned: AtomicU64,
    moved: AtomicU64,
    refused: AtomicU64,
    aged: AtomicU64,
}

#[inline]
fn mac_at(b: &[u8]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

#[inline]
fn is_group(mac: u64) -> bool {
    mac & (1 << 40) != 0
}

#[inline]
fn entry_mac(e: u64) -> u64 {
    e >> 16
}

#[inline]
fn entry_port(e: u64) -> u16 {
    e as u16
}

impl Learn {
    pub fn new(cfg: LearnConfig) -> Learn {
        let nbuckets = (cfg.max_entries * 2).div_ceil(WAYS).next_power_of_two();
        let buckets = (0..nbuckets).map(|_| Bucket(Default::default())).collect();
        let seen = (0..nbuckets * WAYS).map(|_| AtomicU32::new(0)).collect();
        Learn {
            cfg,
            buckets,
            seen,
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

    pub fn config(&self) -> LearnConfig {
        self.cfg
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn bucket_of(&self, mac: u64) -> usize {
        let h = (mac ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 32) ^ h) as usize & self.mask
    }

    #[inline]
    fn live(&self, idx: usize, now_s: u32) -> bool {
        now_s.wrapping_sub(self.seen[idx].load(Ordering::Relaxed)) < self.cfg.aging_secs
    }

    /// Finds `mac`'s entry: (entry index, port), live or not.
    #[inline]
    fn find(&self, mac: u64) -> Option<(usize, u16)> {
        let b = self.bucket_of(mac);
        for (w, e) in self.buckets[b].0.iter().enumerate() {
            let v = e.load(Ordering::Acquire);
            if v != 0 && entry_mac(v) == mac {
                return Some((b * WAYS + w, entry_port(v)));
            }
        }
        None
    }

    fn entry(&self, idx: usize) -> &AtomicU64 {
        &self.buckets[idx / WAYS].0[idx % WAYS]
    }

    /// The port `mac` was learned on, if its entry is live.
    pub fn lookup(&self, mac: u64, now: Nanos) -> Option<PortId> {
        let now_s = (now / NS_PER_SEC) as u32;
        self.find(mac)
            .filter(|&(i, _)| self.live(i, now_s))
            .map(|(_, p)| PortId(p))
    }

    /// Number of live entries as far as the bookkeeping knows (expired entries
    /// count until the next `tick` or until reused).
    pub fn len(&self) -> usize {
        self.books().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Learns that `mac` is behind `port`.
    #[inline]
    pub fn learn(&self, mac: u64, port: PortId, now_s: u32) {
        if let Some((i, p)) = self.find(mac)
            && p == port.0
        {
            if self.seen[i].load(Ordering::Relaxed) != now_s {
                self.seen[i].store(now_s, Ordering::Relaxed);
            }
            return;
        }
        self.learn_slow(mac, port, now_s);
    }

    fn learn_slow(&self, mac: u64, port: PortId, now_s: u32) {
        let mut books = self.books();
        let value = mac << 16 | u64::from(port.0);
        if let Some((i, p)) = self.find(mac) {
            // Seen on another port: the host moved (or raced us to the same port).
            self.seen[i].store(now_s, Ordering::Relaxed);
            if p != port.0 {
                books.per_port[p as usize] -= 1;
                books.per_port[port.index()] += 1;
                self.entry(i).store(value, Ordering::Release);
                self.moved.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if books.per_port[port.index()] as usize >= self.cfg.port_max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let b = self.bucket_of(mac);
        let base = b * WAYS;
        let mut free = None;
        for w in 0..WAYS {
            let v = self.entry(base + w).load(Ordering::Relaxed);
            if v == 0 {
                free = Some(base + w);
                break;
            }
            if !self.live(base + w, now_s) {
                self.remove(&mut books, base + w, v);
                self.aged.fetch_add(1, Ordering::Relaxed);
                free = Some(base + w);
                break;
            }
        }
        if free.is_some() && books.total >= self.cfg.max_entries {
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
                        let v = self.entry(i).load(Ordering::Relaxed);
                        (v != 0).then(|| (i, v, books.per_port[entry_port(v) as usize]))
                    })
                    .filter(|&(_, _, n)| n > mine + 1)
                    .max_by_key(|&(i, _, n)| (n, u32::MAX - self.seen[i].load(Ordering::Relaxed)));
                match victim {
                    Some((i, v, _)) => {
                        self.remove(&mut books, i, v);
                        i
                    }
                    None => {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        self.seen[slot].store(now_s, Ordering::Relaxed);
        self.entry(slot).store(value, Ordering::Release);
        books.per_port[port.index()] += 1;
        books.total += 1;
        self.learned.fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, books: &mut Books, idx: usize, v: u64) {
        self.entry(idx).store(0, Ordering::Release);
        books.per_port[entry_port(v) as usize] -= 1;
        books.total -= 1;
    }

    /// Removes entries matching `pred` (under the write lock); returns how many.
    fn sweep(&self, mut pred: impl FnMut(usize, u64) -> bool) -> u64 {
        let mut books = self.books();
        let mut n = 0;
        for i in 0..self.seen.len() {
            let v = self.entry(i).load(Ordering::Relaxed);
            if v != 0 && pred(i, v) {
                self.remove(&mut books, i, v);
                n += 1;
            }
        }
        n
    }

    /// Entries learned on `port`.
    pub fn port_entries(&self, port: PortId) -> u32 {
        self.books()
            .per_port
            .get(port.index())
            .copied()
            .unwrap_or(0)
    }
}

impl Module for Learn {
    fn name(&self) -> &'static str {
        "learn"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, now: Nanos) {
        let in_port = batch.in_port();
        let now_s = (now / NS_PER_SEC) as u32;
        // Consecutive packets of a batch mostly share addresses: remember the
        // last source learned and the last destination decided.
        let (mut last_src, mut last_dst, mut last_v) = (u64::MAX, u64::MAX, Verdict::Drop);
        for i in 0..batch.len() {
            let d = batch.data(i);
            if d.len() < 14 {
                out.set(i, Verdict::Invalid);
                continue;
            }
            let (dst, src) = (mac_at(&d[0..6]), mac_at(&d[6..12]));
            if src != last_src {
                if is_group(src) {
                    // A group address is never a valid source.
                    out.set(i, Verdict::Invalid);
                    continue;
                }
                self.learn(src, in_port, now_s);
                last_src = src;
            }
            if dst != last_dst {
                last_v = if is_group(dst) {
                    Verdict::Flood
                } else {
                    match self.find(dst) {
                        Some((idx, p)) if self.live(idx, now_s) => {
                            if p == in_port.0 {
                                Verdict::Drop
                            } else {
                                Verdict::Port(PortId(p))
                            }
                        }
                        _ => Verdict::Flood,
                    }
                };
                last_dst = dst;
            }
            out.set(i, last_v);
        }
    }

    fn port_detached(&self, port: PortId) {
        self.sweep(|_, v| entry_port(v) == port.0);
    }

    fn tick(&self, now: Nanos) {
        let now_s = (now / NS_PER_SEC) as u32;
        let n = self.sweep(|i, _| !self.live(i, now_s));
        self.aged.fetch_add(n, Ordering::Relaxed);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
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
    use crate::wire::MacAddr;

    const SEC: Nanos = NS_PER_SEC;

    fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f
    }

    fn run(m: &Learn, in_port: u16, frames: Vec<Vec<u8>>, now: Nanos) -> Vec<Verdict> {
        let mut frames = frames;
        let mut refs = Vec::new();
        let n = frames.len();
        let mut b = Batch::from_buffers(&mut frames, &mut refs, PortId(in_port));
        let mut out = Verdicts::default();
        out.reset(n);
        m.process(&mut b, &mut out, now);
        out.as_slice().to_vec()
    }

    fn mac(n: u32) -> MacAddr {
        MacAddr::local(n)
    }

    #[test]
    fn floods_unknown_then_forwards_learned() {
        let m = Learn::new(LearnConfig::default());
        assert_eq!(run(&m, 1, vec![frame(mac(2), mac(1))], 0), [Verdict::Flood]);
        assert_eq!(
            run(&m, 2, vec![frame(mac(1), mac(2))], 0),
            [Verdict::Port(PortId(1))]
        );
        assert_eq!(
            run(&m, 1, vec![frame(mac(2), mac(1))], 0),
            [Verdict::Port(PortId(2))]
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn broadcast_and_multicast_flood() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 2, vec![frame(mac(1), mac(2))], 0);
        let v = run(
            &m,
            1,
            vec![
                frame(MacAddr::BROADCAST, mac(1)),
                frame(MacAddr([1, 0, 0x5e, 0, 0, 9]), mac(1)),
            ],
            0,
        );
        assert_eq!(v, [Verdict::Flood, Verdict::Flood]);
    }

    #[test]
    fn bad_frames_and_group_sources_are_invalid() {
        let m = Learn::new(LearnConfig::default());
        let v = run(
            &m,
            1,
            vec![vec![0u8; 13], frame(mac(2), MacAddr::BROADCAST)],
            0,
        );
        assert_eq!(v, [Verdict::Invalid, Verdict::Invalid]);
        assert!(m.is_empty());
    }

    #[test]
    fn destination_on_input_port_is_dropped() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 1, vec![frame(mac(9), mac(2))], 0);
        assert_eq!(run(&m, 1, vec![frame(mac(2), mac(3))], 0), [Verdict::Drop]);
    }

    #[test]
    fn entries_age_out() {
        let m = Learn::new(LearnConfig {
            aging_secs: 10,
            ..LearnConfig::default()
        });
        run(&m, 2, vec![frame(mac(1), mac(2))], 0);
        assert_eq!(m.lookup(mac(2).to_u64(), 9 * SEC), Some(PortId(2)));
        assert_eq!(m.lookup(mac(2).to_u64(), 10 * SEC), None);
        assert_eq!(
            run(&m, 1, vec![frame(mac(2), mac(1))], 10 * SEC),
            [Verdict::Flood]
        );
        // Traffic refreshes an entry.
        run(&m, 1, vec![frame(mac(5), mac(1))], 15 * SEC);
        assert_eq!(m.lookup(mac(1).to_u64(), 24 * SEC), Some(PortId(1)));
        m.tick(30 * SEC);
        assert_eq!(m.len(), 0);
        assert_eq!(m.counters().iter().find(|c| c.0 == "aged").unwrap().1, 2);
    }

    #[test]
    fn a_host_that_moves_is_followed() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 1, vec![frame(mac(9), mac(7))], 0);
        assert_eq!(m.lookup(mac(7).to_u64(), 0), Some(PortId(1)));
        run(&m, 3, vec![frame(mac(9), mac(7))], SEC);
        assert_eq!(m.lookup(mac(7).to_u64(), SEC), Some(PortId(3)));
        assert_eq!(
            (m.port_entries(PortId(1)), m.port_entries(PortId(3))),
            (0, 1)
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_mac_flood_is_bounded_and_evicts_nobody_else() {
        let m = Learn::new(LearnConfig {
            max_entries: 256,
            port_max: 128,
            aging_secs: 300,
        });
        // Ten quiet hosts on ports 2..=11.
        for p in 2..12u16 {
            run(&m, p, vec![frame(MacAddr::BROADCAST, mac(u32::from(p)))], 0);
        }
        // Port 1 sends from 100,000 different source MACs.
        for chunk in 0..100u32 {
            let frames = (0..1000)
                .map(|i| frame(mac(2), mac(1_000_000 + chunk * 1000 + i)))
                .collect();
            run(&m, 1, frames, SEC);
        }
        assert!(m.port_entries(PortId(1)) <= 128);
        assert!(m.len() <= 256);
        for p in 2..12u16 {
            assert_eq!(
                m.lookup(mac(u32::from(p)).to_u64(), SEC),
                Some(PortId(p)),
                "host on port {p} survives"
            );
        }
        assert!(m.counters().iter().any(|&(k, v)| k == "refused" && v > 0));
    }

    #[test]
    fn detaching_a_port_forgets_its_macs() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 1, vec![frame(mac(9), mac(1))], 0);
        run(&m, 2, vec![frame(mac(9), mac(2))], 0);
        m.port_detached(PortId(1));
        assert_eq!(m.lookup(mac(1).to_u64(), 0), None);
        assert_eq!(m.lookup(mac(2).to_u64(), 0), Some(PortId(2)));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn config_parsing() {
        assert_eq!(LearnConfig::parse("").unwrap(), LearnConfig::default());
        let c = LearnConfig::parse("max=100,aging=5").unwrap();
        assert_eq!((c.max_entries, c.port_max, c.aging_secs), (100, 50, 5));
        for bad in ["max=0", "aging=0", "size=3", "max=x", "max"] {
            assert!(LearnConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
