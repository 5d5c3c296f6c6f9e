//! Meters (OpenFlow 1.3 section 5.7), as Open vSwitch's userspace datapath
//! has them: token buckets that rate-limit the flows whose entries carry a
//! meter instruction.
//!
//! A meter has one to [`MAX_BANDS`] bands, each a token bucket with a rate
//! (kilobits or packets per second) and a burst (the bucket's size; the
//! rate, i.e. one second's worth, without `OFPMF_BURST`, as Open vSwitch
//! does). A packet takes its cost from every band that can pay it; of the
//! bands that cannot, the one with the highest rate applies: DROP drops the
//! packet, DSCP_REMARK raises the drop precedence of an AF codepoint
//! (RFC 2597: AFxy to AFx(y+prec_level), at most AFx3) and lets it pass.
//! Other bands are refused (`OFPMMFC_BAD_BAND`).
//!
//! The data path is lock-free and allocation-free: a meter is shared (an
//! `Arc`) by the table that owns it and the cached plans that use it, its
//! buckets are atomics refilled from the packet's own `now`. The time of
//! the last refill is advanced with `fetch_max`, so each nanosecond of
//! credit goes to exactly one packet whichever worker sees it first;
//! workers whose clocks lag get no credit rather than double credit. A
//! meter's decision is never cached: plans only name the meter.
//!
//! Tokens are counted in billionths of a unit (a packet, or a kilobit), so
//! that a refill is `elapsed nanoseconds * rate` with no division.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::module::Nanos;
use crate::openflow::FlowRemoved;
use crate::openflow::error::{ErrorCode, MeterModFailedCode};
use crate::openflow::flow::{flow_mod_flags, flow_removed_reason};
use crate::openflow::meter::{
    MeterBand, MeterBandStats, MeterConfig, MeterFeatures, MeterMod, MeterModCommand, MeterStats,
    meter_flags, meter_id,
};
use crate::openflow::oxm::OxmField;

use super::actions::{self, Frame, Op};
use super::key::{L3, Layout};
use super::pipeline::Pipeline;
use super::stats::removed_msg;

/// Most meters a switch holds (`max_meter` of the features reply), and
/// the largest meter id, as in Open vSwitch.
pub(crate) const MAX_METERS: usize = 65536;
/// Most bands per meter (Open vSwitch's userspace datapath has 8).
pub(crate) const MAX_BANDS: usize = 8;
/// Tokens in one unit (a packet, or a kilobit).
const UNIT: u64 = 1_000_000_000;
/// The flags a meter may have.
const FLAGS: u16 = meter_flags::KBPS | meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS;

fn failed(c: MeterModFailedCode) -> ErrorCode {
    ErrorCode::MeterModFailed(c)
}

/// What a band does to the packets that exceed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Drop,
    /// Raise an AF codepoint's drop precedence by this much.
    Remark(u8),
}

/// One band: its bucket and its counters.
#[derive(Debug)]
pub(crate) struct Band {
    kind: Kind,
    /// Tokens per nanosecond (units per second).
    rate: u64,
    /// The bucket's size in tokens.
    cap: u64,
    tokens: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    /// As configured, for the config reply.
    config: MeterBand,
}

/// One meter.
#[derive(Debug)]
pub(crate) struct Meter {
    pub id: u32,
    pub flags: u16,
    bands: Box<[Band]>,
    created: Nanos,
    /// When the buckets were last refilled.
    last: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// What a meter does with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Pass,
    Drop,
    /// Pass, with the DSCP's drop precedence raised by this much.
    Remark(u8),
}

impl Meter {
    /// Builds a meter from a METER_MOD's flags and bands, checked as Open
    /// vSwitch checks them; its buckets start full.
    fn new(mm: &MeterMod, now: Nanos) -> Result<Meter, ErrorCode> {
        if mm.flags & !FLAGS != 0
            || mm.flags & (meter_flags::KBPS | meter_flags::PKTPS)
                == meter_flags::KBPS | meter_flags::PKTPS
        {
            return Err(failed(MeterModFailedCode::BadFlags));
        }
        if mm.bands.len() > MAX_BANDS {
            return Err(failed(MeterModFailedCode::OutOfBands));
        }
        let burst = mm.flags & meter_flags::BURST != 0;
        let mut bands = Vec::with_capacity(mm.bands.len());
        for b in &mm.bands {
            let (kind, rate, burst_size) = match *b {
                MeterBand::Drop { rate, burst_size } => (Kind::Drop, rate, burst_size),
                MeterBand::DscpRemark {
                    rate,
                    burst_size,
                    prec_level,
                } => {
                    // Raising by nothing is no band.
                    if prec_level == 0 {
                        return Err(failed(MeterModFailedCode::BadBandValue));
                    }
                    (Kind::Remark(prec_level), rate, burst_size)
                }
                MeterBand::Experimenter { .. } => return Err(failed(MeterModFailedCode::BadBand)),
            };
            if rate == 0 {
                return Err(failed(MeterModFailedCode::BadRate));
            }
            // Without OFPMF_BURST the burst field means nothing (1.3,
            // 7.3.4.4); a size of 0 with it means the default.
            let size = if burst && burst_size != 0 {
                burst_size
            } else {
                rate
            };
            let cap = u64::from(size) * UNIT;
            bands.push(Band {
                kind,
                rate: u64::from(rate),
                cap,
                tokens: AtomicU64::new(cap),
                packets: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                config: b.clone(),
            });
        }
        Ok(Meter {
            id: mm.meter_id,
            flags: mm.flags,
            bands: bands.into_boxed_slice(),
            created: now,
            last: AtomicU64::new(now),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// The cost of a packet of `len` bytes, in tokens.
    #[inline]
    fn cost(&self, len: usize) -> u64 {
        if self.flags & meter_flags::PKTPS != 0 {
            UNIT
        } else {
            // A kilobit is UNIT tokens: a bit is UNIT / 1000.
            (len as u64).saturating_mul(8 * (UNIT / 1000))
        }
    }

    /// Meters one packet of `len` bytes seen at `now`: refills every
    /// bucket, takes the packet's cost where it can, and counts the band
    /// that applies.
    #[inline]
    pub fn police(&self, len: usize, now: Nanos) -> Decision {
        let prev = self.last.fetch_max(now, Ordering::Relaxed);
        let elapsed = u128::from(now.saturating_sub(prev));
        let cost = self.cost(len);
        let mut hit: Option<&Band> = None;
        for b in self.bands.iter() {
            let add = (elapsed * u128::from(b.rate)).min(u128::from(b.cap)) as u64;
            let mut paid = false;
            // The closure always returns Some: the update cannot fail.
            let _ = b
                .tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    let t = t.saturating_add(add).min(b.cap);
                    paid = t >= cost;
                    Some(if paid { t - cost } else { t })
                });
            if !paid && hit.is_none_or(|h| b.rate > h.rate) {
                hit = Some(b);
            }
        }
        let Some(b) = hit else {
            return Decision::Pass;
        };
        b.packets.fetch_add(1, Ordering::Relaxed);
        b.bytes.fetch_add(len as u64, Ordering::Relaxed);
        match b.kind {
            Kind::Drop => Decision::Drop,
            Kind::Remark(p) => Decision::Remark(p),
        }
    }

    /// Credits packets that reached the meter (once per batch).
    pub fn credit(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn stats(&self, flow_count: u32, now: Nanos) -> MeterStats {
        let age = now.saturating_sub(self.created);
        MeterStats {
            meter_id: self.id,
            flow_count,
            packet_in_count: self.packets.load(Ordering::Relaxed),
            byte_in_count: self.bytes.load(Ordering::Relaxed),
            duration_sec: u32::try_from(age / 1_000_000_000).unwrap_or(u32::MAX),
            duration_nsec: (age % 1_000_000_000) as u32,
            band_stats: self
                .bands
                .iter()
                .map(|b| MeterBandStats {
                    packet_band_count: b.packets.load(Ordering::Relaxed),
                    byte_band_count: b.bytes.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }

    fn config(&self) -> MeterConfig {
        MeterConfig {
            flags: self.flags,
            meter_id: self.id,
            bands: self.bands.iter().map(|b| b.config.clone()).collect(),
        }
    }
}

/// Runs a plan's meters on packet `f` (laid out as `lay`, as received) at
/// `now`, in the order the tables met them. False: a band dropped it. A
/// DSCP remark rewrites the packet's bytes (and its IPv4 checksum).
#[inline]
pub(crate) fn police(meters: &[Arc<Meter>], f: &mut dyn Frame, lay: Layout, now: Nanos) -> bool {
    for m in meters {
        let len = f.bytes().len();
        match m.police(len, now) {
            Decision::Pass => {}
            Decision::Drop => return false,
            Decision::Remark(p) => remark(f, lay, p),
        }
    }
    true
}

/// Raises the drop precedence of the packet's DSCP by `prec` if it is an
/// assured-forwarding codepoint (AFxy: class x in 1..=4, precedence y in
/// 1..=3); other codepoints have no drop precedence to raise.
fn remark(f: &mut dyn Frame, lay: Layout, prec: u8) {
    let l3 = usize::from(lay.l3);
    let d = f.bytes();
    let dscp = match lay.l3_kind {
        L3::Ipv4 => d.get(l3 + 1).map(|tos| tos >> 2),
        L3::Ipv6 => d
            .get(l3..l3 + 2)
            .map(|b| (((b[0] & 0x0f) << 4) | (b[1] >> 4)) >> 2),
        _ => None,
    };
    let Some(new) = dscp.and_then(|x| raised(x, prec)) else {
        return;
    };
    // The same rewrite as a set-field, checksum included.
    actions::apply(f, lay, &[Op::Set(OxmField::IpDscp(new))]);
}

/// `dscp` with its AF drop precedence raised by `prec` (at most 3), or
/// None if it is not an AF codepoint or is already at the top.
fn raised(dscp: u8, prec: u8) -> Option<u8> {
    let (class, y) = (dscp >> 3, (dscp >> 1) & 3);
    if !(1..=4).contains(&class) || y == 0 || dscp & 1 != 0 || y == 3 {
        return None;
    }
    let y = (y + prec).min(3);
    Some((class << 3) | (y << 1))
}

/// The switch's meters, by id.
#[derive(Default, Clone)]
pub(crate) struct Meters {
    map: BTreeMap<u32, Arc<Meter>>,
}

impl Meters {
    pub fn get(&self, id: u32) -> Option<&Arc<Meter>> {
        self.map.get(&id)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.map.contains_key(&id)
    }

    /// Applies a METER_MOD. Returns the meters deleted (whose flows must
    /// go): `OFPM_ALL` deletes every meter, an unknown id nothing.
    /// Modifying a meter starts it afresh (full buckets, zero counters),
    /// as Open vSwitch's userspace datapath does.
    pub fn meter_mod(&mut self, mm: &MeterMod, now: Nanos) -> Result<Vec<u32>, ErrorCode> {
        let id = mm.meter_id;
        if mm.command == MeterModCommand::Delete {
            if id == meter_id::ALL {
                let ids = self.map.keys().copied().collect();
                self.map.clear();
                return Ok(ids);
            }
            return Ok(self.map.remove(&id).map(|m| vec![m.id]).unwrap_or_default());
        }
        // The virtual meters (SLOWPATH, CONTROLLER) would meter packets
        // to the controller, which this switch does not do.
        if id == 0 || id > meter_id::MAX {
            return Err(failed(MeterModFailedCode::InvalidMeter));
        }
        // Open vSwitch numbers meters 1..=max_meter: a larger id is out
        // of meters, whatever the count.
        if id as usize > MAX_METERS {
            return Err(failed(MeterModFailedCode::OutOfMeters));
        }
        let exists = self.map.contains_key(&id);
        match mm.command {
            MeterModCommand::Add if exists => return Err(failed(MeterModFailedCode::MeterExists)),
            MeterModCommand::Modify if !exists => {
                return Err(failed(MeterModFailedCode::UnknownMeter));
            }
            _ => {}
        }
        let m = Meter::new(mm, now)?;
        self.map.insert(id, Arc::new(m));
        Ok(Vec::new())
    }

    /// `OFPMP_METER` for one meter or `OFPM_ALL`; `flows` counts the flow
    /// entries that use a meter.
    pub fn stats(&self, id: u32, now: Nanos, flows: impl Fn(u32) -> u32) -> Vec<MeterStats> {
        self.select(id).map(|m| m.stats(flows(m.id), now)).collect()
    }

    /// `OFPMP_METER_CONFIG` for one meter or `OFPM_ALL`.
    pub fn config(&self, id: u32) -> Vec<MeterConfig> {
        self.select(id).map(Meter::config).collect()
    }

    fn select(&self, id: u32) -> impl Iterator<Item = &Meter> {
        self.map
            .values()
            .filter(move |m| id == meter_id::ALL || m.id == id)
            .map(|m| &**m)
    }
}

/// `OFPMP_METER_FEATURES`.
pub(crate) fn features() -> MeterFeatures {
    MeterFeatures {
        max_meter: MAX_METERS as u32,
        // Bit 1 << type: DROP (1) and DSCP_REMARK (2).
        band_types: (1 << 1) | (1 << 2),
        capabilities: u32::from(FLAGS),
        max_bands: MAX_BANDS as u8,
        max_color: 0,
    }
}

impl Pipeline {
    /// Applies a METER_MOD. Deleting a meter removes the flow entries that
    /// use it, as Open vSwitch does; those that asked are returned for
    /// FLOW_REMOVED (reason DELETE: 1.3 has no METER_DELETE). Every change
    /// makes the cached plans stale, so none names an old meter.
    pub fn meter_mod(&mut self, mm: &MeterMod, now: Nanos) -> Result<Vec<FlowRemoved>, ErrorCode> {
        let gone = self.meters.meter_mod(mm, now)?;
        let mut removed = Vec::new();
        if mm.command != MeterModCommand::Delete {
            self.bump();
            return Ok(removed);
        }
        if gone.is_empty() {
            return Ok(removed);
        }
        for t in 0..self.tables.len() {
            let flows = self.tables[t]
                .remove_where(|r| r.data.prog.meter.is_some_and(|m| gone.contains(&m)));
            self.flow_count -= flows.len();
            removed.extend(
                flows
                    .iter()
                    .filter(|r| r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0)
                    .map(|r| removed_msg(r, flow_removed_reason::DELETE, now)),
            );
        }
        self.bump();
        Ok(removed)
    }

    /// `OFPMP_METER`, with the number of flow entries using each meter.
    pub fn meter_stats(&self, id: u32, now: Nanos) -> Vec<MeterStats> {
        self.meters.stats(id, now, |m| {
            let n: usize = self
                .tables
                .iter()
                .map(|t| {
                    t.cls
                        .iter()
                        .filter(|r| r.data.prog.meter == Some(m))
                        .count()
                })
                .sum();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    fn mm(command: MeterModCommand, id: u32, flags: u16, bands: Vec<MeterBand>) -> MeterMod {
        MeterMod {
            command,
            flags,
            meter_id: id,
            bands,
        }
    }

    fn drop_band(rate: u32, burst_size: u32) -> MeterBand {
        MeterBand::Drop { rate, burst_size }
    }

    fn meter(flags: u16, bands: Vec<MeterBand>) -> Meter {
        Meter::new(&mm(MeterModCommand::Add, 1, flags, bands), 0).expect("valid meter")
    }

    fn passed(m: &Meter, n: usize, len: usize, now: Nanos) -> usize {
        (0..n)
            .filter(|_| m.police(len, now) != Decision::Drop)
            .count()
    }

    #[test]
    fn packet_bucket_starts_full_and_refills_with_time() {
        let m = meter(meter_flags::PKTPS, vec![drop_band(100, 0)]);
        // A full bucket: one second's worth (the rate) passes at once.
        assert_eq!(passed(&m, 1000, 60, 0), 100);
        // Half a second later, half the rate again.
        assert_eq!(passed(&m, 1000, 60, SEC / 2), 50);
        // A long pause refills to the burst, no more.
        assert_eq!(passed(&m, 1000, 60, 100 * SEC), 100);
        let s = m.stats(0, 100 * SEC);
        assert_eq!(s.band_stats[0].packet_band_count, 3000 - 250);
        assert_eq!(s.band_stats[0].byte_band_count, 60 * (3000 - 250));
        assert_eq!(s.duration_sec, 100);
    }

    #[test]
    fn burst_flag_sets_the_bucket_size() {
        let m = meter(
            meter_flags::PKTPS | meter_flags::BURST,
            vec![drop_band(100, 10)],
        );
        assert_eq!(passed(&m, 1000, 60, 0), 10);
        assert_eq!(passed(&m, 1000, 60, SEC / 10), 10);
        // Burst 0 with the flag: the rate.
        let m = meter(
            meter_flags::PKTPS | meter_flags::BURST,
            vec![drop_band(100, 0)],
        );
        assert_eq!(passed(&m, 1000, 60, 0), 100);
    }

    #[test]
    fn kbps_counts_bits() {
        // 80 kbit/s, burst 8 kbit: 1000-byte packets are 8 kbit each.
        let m = meter(
            meter_flags::KBPS | meter_flags::BURST,
            vec![drop_band(80, 8)],
        );
        assert_eq!(passed(&m, 10, 1000, 0), 1);
        // A second earns 80 kbit, but the bucket holds 8.
        assert_eq!(passed(&m, 100, 1000, SEC), 1);
        // 500-byte packets cost half as much.
        assert_eq!(passed(&m, 100, 500, SEC + SEC / 10), 2);
        // No flag at all means kilobits too; the burst is the rate.
        let m = meter(0, vec![drop_band(80, 0)]);
        assert_eq!(passed(&m, 100, 1000, 0), 10);
    }

    #[test]
    fn workers_sharing_a_meter_never_overspend() {
        let m = Arc::new(meter(meter_flags::PKTPS, vec![drop_band(1000, 0)]));
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let m = m.clone();
                std::thread::spawn(move || {
                    // Each worker at its own, slightly different time.
                    (0..5000u64)
                        .filter(|i| m.police(60, SEC + k * 1000 + i) != Decision::Drop)
                        .count()
                })
            })
            .collect();
        let passed: usize = threads.into_iter().map(|t| t.join().expect("worker")).sum();
        // The burst (1000) plus at most ~8 us of refill at 1000/s.
        assert_eq!(passed, 1000);
    }

    #[test]
    fn a_clock_that_goes_back_earns_nothing() {
        let m = meter(meter_flags::PKTPS, vec![drop_band(10, 0)]);
        assert_eq!(passed(&m, 100, 60, SEC), 10);
        assert_eq!(passed(&m, 100, 60, SEC / 2), 0);
        assert_eq!(passed(&m, 100, 60, SEC + SEC / 10), 1);
    }

    #[test]
    fn the_exceeded_band_with_the_highest_rate_applies() {
        let remark = MeterBand::DscpRemark {
            rate: 10,
            burst_size: 0,
            prec_level: 1,
        };
        let m = meter(meter_flags::PKTPS, vec![drop_band(20, 0), remark]);
        let d: Vec<Decision> = (0..25).map(|_| m.police(60, 0)).collect();
        assert!(d[..10].iter().all(|&x| x == Decision::Pass));
        assert!(d[10..20].iter().all(|&x| x == Decision::Remark(1)));
        assert!(d[20..].iter().all(|&x| x == Decision::Drop));
        let s = m.stats(1, 0);
        assert_eq!(
            (
                s.band_stats[0].packet_band_count,
                s.band_stats[1].packet_band_count
            ),
            (5, 10)
        );
    }

    #[test]
    fn af_codepoints_get_a_higher_drop_precedence() {
        // AF11 (10) -> AF12 (12), AF21 (18) +2 -> AF23 (22), AF43 stays.
        assert_eq!(raised(10, 1), Some(12));
        assert_eq!(raised(18, 2), Some(22));
        assert_eq!(raised(12, 2), Some(14));
        assert_eq!(raised(38, 1), None);
        // EF (46), CS1 (8), best effort: no drop precedence.
        assert_eq!(raised(46, 1), None);
        assert_eq!(raised(8, 1), None);
        assert_eq!(raised(0, 1), None);
    }

    #[test]
    fn meter_mods_are_checked_as_open_vswitch_does() {
        use MeterModCommand::*;
        let mut t = Meters::default();
        let ok = vec![drop_band(10, 0)];
        let err = |c| Err(failed(c));
        assert_eq!(t.meter_mod(&mm(Add, 1, 0, ok.clone()), 0), Ok(vec![]));
        assert_eq!(
            t.meter_mod(&mm(Add, 1, 0, ok.clone()), 0),
            err(MeterModFailedCode::MeterExists)
        );
        assert_eq!(
            t.meter_mod(&mm(Modify, 2, 0, ok.clone()), 0),
            err(MeterModFailedCode::UnknownMeter)
        );
        for id in [0, meter_id::MAX + 1, meter_id::CONTROLLER, meter_id::ALL] {
            assert_eq!(
                t.meter_mod(&mm(Add, id, 0, ok.clone()), 0),
                err(MeterModFailedCode::InvalidMeter)
            );
        }
        assert_eq!(
            t.meter_mod(&mm(Add, MAX_METERS as u32 + 1, 0, ok.clone()), 0),
            err(MeterModFailedCode::OutOfMeters)
        );
        let both = meter_flags::KBPS | meter_flags::PKTPS;
        for flags in [both, 1 << 4] {
            assert_eq!(
                t.meter_mod(&mm(Add, 2, flags, ok.clone()), 0),
                err(MeterModFailedCode::BadFlags)
            );
        }
        assert_eq!(
            t.meter_mod(&mm(Add, 2, 0, vec![drop_band(0, 0)]), 0),
            err(MeterModFailedCode::BadRate)
        );
        let exp = MeterBand::Experimenter {
            rate: 1,
            burst_size: 0,
            experimenter: 0x2320,
            data: vec![],
        };
        assert_eq!(
            t.meter_mod(&mm(Add, 2, 0, vec![exp]), 0),
            err(MeterModFailedCode::BadBand)
        );
        assert_eq!(
            t.meter_mod(&mm(Add, 2, 0, vec![drop_band(1, 0); MAX_BANDS + 1]), 0),
            err(MeterModFailedCode::OutOfBands)
        );
        let remark = |p| MeterBand::DscpRemark {
            rate: 1,
            burst_size: 0,
            prec_level: p,
        };
        assert_eq!(
            t.meter_mod(&mm(Add, 2, 0, vec![remark(0)]), 0),
            err(MeterModFailedCode::BadBandValue)
        );
        assert_eq!(t.meter_mod(&mm(Add, 2, 0, vec![remark(2)]), 0), Ok(vec![]));
        // Modify replaces the bands; the config reply shows them.
        let new = vec![drop_band(99, 0)];
        assert_eq!(t.meter_mod(&mm(Modify, 1, 0, new.clone()), 0), Ok(vec![]));
        assert_eq!(t.config(1)[0].bands, new);
        assert_eq!(t.config(meter_id::ALL).len(), 2);
        assert_eq!(t.stats(7, 0, |_| 0), vec![]);
        // Deleting an unknown meter is no error; ALL deletes every one.
        assert_eq!(t.meter_mod(&mm(Delete, 9, 0, vec![]), 0), Ok(vec![]));
        assert_eq!(
            t.meter_mod(&mm(Delete, meter_id::ALL, 0, vec![]), 0),
            Ok(vec![1, 2])
        );
        assert!(t.config(meter_id::ALL).is_empty());
    }
}
