//! Counters. Each worker writes its own copy of a port's counters (one writer
//! per cache line, plain loads and stores, no atomic read-modify-write on the
//! hot path); readers sum the copies.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a packet was dropped. The data path counts drops by reason instead of
/// returning per-packet errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// The destination's outgoing ring (or the controller queue) had no room.
    /// Charged to the destination port.
    DestFull = 0,
    /// The verdict named no attached port, or the input port itself.
    /// Charged to the input port.
    NoDest = 1,
    /// The module decided to drop. Charged to the input port.
    Module = 2,
    /// Malformed: bad buffer index, zero or impossible length, or a frame the
    /// module could not parse. Charged to the port that supplied it.
    BadFrame = 3,
    /// Longer than the destination port's buffers. Charged to the destination.
    Oversize = 4,
}

pub const DROP_REASONS: [DropReason; 5] = [
    DropReason::DestFull,
    DropReason::NoDest,
    DropReason::Module,
    DropReason::BadFrame,
    DropReason::Oversize,
];

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::DestFull => "dest_full",
            DropReason::NoDest => "no_dest",
            DropReason::Module => "module",
            DropReason::BadFrame => "bad_frame",
            DropReason::Oversize => "oversize",
        }
    }
}

/// One writer's counters for one port.
#[repr(align(64))]
#[derive(Default)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    pub drops: [Counter; 5],
}

/// A counter with a single writer: increments are a load and a store.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, v: u64) {
        if v != 0 {
            self.0.store(
                self.0.load(Ordering::Relaxed).wrapping_add(v),
                Ordering::Relaxed,
            );
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl PortCounters {
    /// Starts this copy from `t` (used when a port's backend is replaced).
    pub fn load_totals(&self, t: &PortTotals) {
        self.rx_packets.add(t.rx_packets);
        self.rx_bytes.add(t.rx_bytes);
        self.tx_packets.add(t.tx_packets);
        self.tx_bytes.add(t.tx_bytes);
        for r in DROP_REASONS {
            self.drops[r as usize].add(t.drops.get(r));
        }
    }

    #[inline]
    pub fn drop(&self, r: DropReason, n: u64) {
        self.drops[r as usize].add(n);
    }
}

/// A port's counters summed over all writers.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: Drops,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Drops {
    pub dest_full: u64,
    pub no_dest: u64,
    pub module: u64,
    pub bad_frame: u64,
    pub oversize: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.dest_full + self.no_dest + self.module + self.bad_frame + self.oversize
    }

    pub fn get(&self, r: DropReason) -> u64 {
        match r {
            DropReason::DestFull => self.dest_full,
            DropReason::NoDest => self.no_dest,
            DropReason::Module => self.module,
            DropReason::BadFrame => self.bad_frame,
            DropReason::Oversize => self.oversize,
        }
    }

    fn add(&mut self, r: DropReason, v: u64) {
        let f = match r {
            DropReason::DestFull => &mut self.dest_full,
            DropReason::NoDest => &mut self.no_dest,
            DropReason::Module => &mut self.module,
            DropReason::BadFrame => &mut self.bad_frame,
            DropReason::Oversize => &mut self.oversize,
        };
        *f += v;
    }

    pub fn accumulate(&mut self, o: &Drops) {
        for r in DROP_REASONS {
            self.add(r, o.get(r));
        }
    }
}

impl PortTotals {
    /// What was counted since `earlier`, a reading of the same counters.
    pub fn since(&self, earlier: &PortTotals) -> PortTotals {
        let mut d = PortTotals {
            rx_packets: self.rx_packets.wrapping_sub(earlier.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(earlier.rx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(earlier.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(earlier.tx_bytes),
            drops: Drops::default(),
        };
        for r in DROP_REASONS {
            d.drops
                .add(r, self.drops.get(r).wrapping_sub(earlier.drops.get(r)));
        }
        d
    }

    pub fn sum(copies: &[PortCounters]) -> PortTotals {
        let mut t = PortTotals::default();
        for c in copies {
            t.rx_packets += c.rx_packets.get();
            t.rx_bytes += c.rx_bytes.get();
            t.tx_packets += c.tx_packets.get();
            t.tx_bytes += c.tx_bytes.get();
            for r in DROP_REASONS {
                t.drops.add(r, c.drops[r as usize].get());
            }
        }
        t
    }
}
