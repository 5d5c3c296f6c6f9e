//! Processing modules: the switch's one extension point.
//!
//! A module sees a batch of packets from one input port and answers a
//! [`Verdict`] per packet: a port, a set of ports, flood, the controller, or
//! drop. It may rewrite packet bytes. It never touches ports or rings, and it
//! does no I/O: time comes in as an argument, so tests drive modules in memory.
//! Modules are chosen by name from [`REGISTRY`], one explicit table.
//!
//! A module is shared by all workers of a switch (`&self`, `Sync`): workers
//! call [`Module::process`] concurrently for batches from different ports.

pub mod demux;
mod demux_table;
pub mod dummy;
pub mod flow;
pub mod learn;
pub mod mactable;

use std::sync::Arc;

use crate::packet::{Batch, TunMeta};
use crate::port::PortId;

/// Monotonic time in nanoseconds, from an origin fixed by the caller.
pub type Nanos = u64;

/// Where one packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped by the module's decision (counted as a module drop).
    Drop,
    /// Dropped because the frame is malformed (counted as a bad frame).
    Invalid,
    /// To one port. A packet is never sent back to its input port.
    Port(PortId),
    /// To every port but the input.
    Flood,
    /// To a set of ports recorded with [`Verdicts::set_ports`] (or
    /// [`Verdicts::add_set_with`]: only a hairpin set may name the input).
    Ports(u16),
    /// To the controller only (packet-in), with the tag of a
    /// [`Verdicts::to_controller`] call for the packet if there was one,
    /// else tag 0.
    Controller,
}

/// The verdicts for one batch, plus the port sets they refer to and the
/// packets that also go to the controller. Owned by the switch and reused
/// across batches, so answering allocates nothing once warm.
///
/// Controller copies: [`Verdicts::to_controller`] sends a packet to the
/// controller *as well as* wherever its verdict sends it, with a tag the
/// module chooses (the switch hands it back in
/// [`crate::switch::PacketIn::tag`]; the flow module interns packet-in
/// metadata behind it). A packet whose verdict is [`Verdict::Controller`]
/// goes up once: with the tag of its `to_controller` entry if it has one,
/// else with tag 0. Each `to_controller` entry is one copy.
///
/// Variants: [`Verdicts::add_variant`] sends a packet to more ports with
/// bytes of its own (the flow module's NORMAL sends a VLAN's packet tagged
/// to trunks and untagged to access ports). The bytes live in an arena
/// reused across batches; the switch copies them to those destinations
/// like any packet, in input order with the others. Only batches that
/// have variants take that path.
///
/// Tunnel metadata ([`Verdicts::set_tunnel`]): what a packet goes out
/// with to a `key=flow`/`remote_ip=flow` tunnel port. A packet the module
/// sets none for goes out with none (such a port drops it, or sends it
/// with VNI 0): what came in on a tunnel goes back out of one only where
/// the module says. The flow module sets every packet of a tunnel batch
/// (what it came with, as Open vSwitch's flows keep it, unless a flow
/// changes it).
#[derive(Default)]
pub struct Verdicts {
    v: Vec<Verdict>,
    sets: Vec<PortId>,
    /// Per set: its range in `sets` and whether it may name the input port.
    ranges: Vec<(u32, u32, bool)>,
    /// (packet, tag) of the controller copies, in the order recorded.
    ctl: Vec<(u16, u32)>,
    variants: Vec<Variant>,
    /// The variants' bytes, back to back.
    arena: Vec<u8>,
    /// Per packet, once `tun_set`.
    tun: Vec<TunMeta>,
    tun_set: bool,
}

/// One variant: a packet's extra copy with its own bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Variant {
    pub pkt: u16,
    /// A [`Verdict::Port`] or a [`Verdict::Ports`] set without hairpin.
    pub to: Verdict,
    pub start: u32,
    pub len: u32,
    /// Its own tunnel metadata (else its packet's).
    pub tun: Option<TunMeta>,
}

impl Verdicts {
    /// Variants a batch may have per packet, on average.
    pub const MAX_VARIANTS_PER_PACKET: usize = 4;

    pub fn with_capacity(n: usize) -> Verdicts {
        Verdicts {
            v: Vec::with_capacity(n),
            sets: Vec::with_capacity(n),
            ranges: Vec::with_capacity(n),
            ctl: Vec::new(),
            variants: Vec::new(),
            arena: Vec::new(),
            tun: Vec::new(),
            tun_set: false,
        }
    }

    /// Starts a batch of `n` packets, all `Drop` until the module says otherwise.
    pub fn reset(&mut self, n: usize) {
        self.v.clear();
        self.v.resize(n, Verdict::Drop);
        self.sets.clear();
        self.ranges.clear();
        self.ctl.clear();
        self.variants.clear();
        self.arena.clear();
        self.tun_set = false;
    }

    /// Packet `i` goes out with tunnel metadata `m` (see the type).
    #[inline]
    pub fn set_tunnel(&mut self, i: usize, m: TunMeta) {
        if !self.tun_set {
            self.tun.clear();
            self.tun.resize(self.v.len(), TunMeta::NONE);
            self.tun_set = true;
        }
        if let Some(t) = self.tun.get_mut(i) {
            *t = m;
        }
    }

    /// The tunnel metadata the module set, one per packet, if it set any.
    #[inline]
    pub fn tunnel(&self) -> Option<&[TunMeta]> {
        self.tun_set.then_some(self.tun.as_slice())
    }

    pub fn len(&self) -> usize {
        self.v.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    #[inline]
    pub fn set(&mut self, i: usize, v: Verdict) {
        self.v[i] = v;
    }

    /// Gives every packet the same verdict.
    pub fn fill(&mut self, v: Verdict) {
        self.v.fill(v);
    }

    #[inline]
    pub fn get(&self, i: usize) -> Verdict {
        self.v[i]
    }

    pub fn as_slice(&self) -> &[Verdict] {
        &self.v
    }

    /// Records a set of ports and returns the verdict that names it. The
    /// input port, if listed, is skipped (as for [`Verdict::Port`]).
    pub fn add_set(&mut self, ports: &[PortId]) -> Verdict {
        self.add_set_with(ports, false)
    }

    /// Records a set of ports; a `hairpin` set may send the packet back out
    /// of its input port (OpenFlow's output to `IN_PORT`) if it lists it.
    pub fn add_set_with(&mut self, ports: &[PortId], hairpin: bool) -> Verdict {
        let start = self.sets.len() as u32;
        self.sets.extend_from_slice(ports);
        self.ranges.push((start, self.sets.len() as u32, hairpin));
        Verdict::Ports((self.ranges.len() - 1) as u16)
    }

    /// Whether set `k` is a hairpin set (false if `k` was never recorded).
    #[inline]
    pub fn set_hairpin(&self, k: u16) -> bool {
        self.ranges.get(k as usize).is_some_and(|r| r.2)
    }

    /// Sends packet `i` to the controller too, whatever its verdict, with
    /// `tag` (see the type's documentation).
    pub fn to_controller(&mut self, i: usize, tag: u32) {
        debug_assert!(i < self.v.len());
        self.ctl.push((i as u16, tag));
    }

    /// The controller copies: (packet index, tag), in the order recorded.
    pub fn controller_copies(&self) -> &[(u16, u32)] {
        &self.ctl
    }

    /// Orders the controller copies by packet (stable: one packet's copies
    /// keep their order), for the forwarder's walk in packet order.
    pub(crate) fn sort_controller_copies(&mut self) {
        if !self.ctl.is_sorted_by_key(|c| c.0) {
            self.ctl.sort_by_key(|c| c.0);
        }
    }

    /// Sends packet `i` also to `to` (a [`Verdict::Port`], or a
    /// [`Verdict::Ports`] set of this batch that is not a hairpin set) with
    /// bytes of its own: `parts` put end to end. The destinations should
    /// not overlap the packet's verdict (a port named by both gets both
    /// copies); the input port is skipped. Returns false, recording
    /// nothing, for another kind of verdict, bytes longer than a slot can
    /// describe (65535), or past [`Verdicts::MAX_VARIANTS_PER_PACKET`]
    /// variants per packet of the batch on average (the switch numbers
    /// them in 16 bits with the packets).
    pub fn add_variant(&mut self, i: usize, to: Verdict, parts: &[&[u8]]) -> bool {
        self.add_variant_with(i, to, parts, None)
    }

    /// [`Verdicts::add_variant`] with tunnel metadata of its own (`None`:
    /// its packet's).
    pub fn add_variant_with(
        &mut self,
        i: usize,
        to: Verdict,
        parts: &[&[u8]],
        tun: Option<TunMeta>,
    ) -> bool {
        let ok = match to {
            Verdict::Port(_) => true,
            Verdict::Ports(k) => self.ranges.get(usize::from(k)).is_some_and(|r| !r.2),
            _ => false,
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if !ok
            || len > usize::from(u16::MAX)
            || i >= self.v.len()
            || self.variants.len() >= Self::MAX_VARIANTS_PER_PACKET * self.v.len()
        {
            return false;
        }
        let start = self.arena.len() as u32;
        for p in parts {
            self.arena.extend_from_slice(p);
        }
        self.variants.push(Variant {
            pkt: i as u16,
            to,
            start,
            len: len as u32,
            tun,
        });
        true
    }

    /// The variants recorded: (packet, destinations, bytes), in the order
    /// recorded (in packet order once the switch sorted them).
    pub fn variants(&self) -> impl Iterator<Item = (usize, Verdict, &[u8])> {
        self.variants.iter().map(|v| {
            let b = &self.arena[v.start as usize..(v.start + v.len) as usize];
            (usize::from(v.pkt), v.to, b)
        })
    }

    /// Where variant `k` goes (in the order of [`Verdicts::sorted_variants`]).
    #[inline]
    pub(crate) fn variant_to(&self, k: usize) -> Option<Verdict> {
        self.variants.get(k).map(|v| v.to)
    }

    #[inline]
    pub fn has_variants(&self) -> bool {
        !self.variants.is_empty()
    }

    /// The variants, ordered by packet (stable), and their arena.
    pub(crate) fn sorted_variants(&mut self) -> (&[Variant], &[u8]) {
        if !self.variants.is_sorted_by_key(|v| v.pkt) {
            self.variants.sort_by_key(|v| v.pkt);
        }
        (&self.variants, &self.arena)
    }

    /// Sends packet `i` to a set of ports.
    pub fn set_ports(&mut self, i: usize, ports: &[PortId]) {
        let v = self.add_set(ports);
        self.v[i] = v;
    }

    /// The ports of set `k` (empty if `k` was never recorded).
    pub fn set_members(&self, k: u16) -> &[PortId] {
        match self.ranges.get(k as usize) {
            Some(&(a, b, _)) => &self.sets[a as usize..b as usize],
            None => &[],
        }
    }
}

/// A packet-processing module.
pub trait Module: Send + Sync {
    /// The registry name this module was built from.
    fn name(&self) -> &'static str;

    /// Decides a verdict for every packet of `batch` (`out` has one `Drop`
    /// entry per packet on entry). Called concurrently by several workers.
    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, now: Nanos);

    /// A port was attached to the switch.
    fn port_attached(&self, _port: PortId) {}

    /// A port was detached: forget anything that points at it.
    fn port_detached(&self, _port: PortId) {}

    /// Housekeeping (aging), called about once a second by a worker.
    fn tick(&self, _now: Nanos) {}

    /// Module-specific counters for `stats`, as (name, value).
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The module as `Any`, for control commands that belong to one kind
    /// of module (`ctl demux` finds the [`demux::Demux`] of a switch).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleError {
    #[error("unknown module '{0}' (available: {list})", list = names().join(", "))]
    Unknown(String),
    #[error("module {module}: {msg}")]
    BadArgs { module: &'static str, msg: String },
}

/// One entry of the registry: a name, a line of help and a constructor that
/// takes the text after `NAME:` in a module spec.
pub struct ModuleInfo {
    pub name: &'static str,
    pub help: &'static str,
    pub build: fn(&str) -> Result<Arc<dyn Module>, ModuleError>,
}

/// Every module mswitch knows, by name.
pub const REGISTRY: &[ModuleInfo] = &[dummy::INFO, learn::INFO, flow::INFO, demux::INFO];

pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|m| m.name).collect()
}

/// Builds a module from a spec `NAME[:ARGS]`.
pub fn build(spec: &str) -> Result<Arc<dyn Module>, ModuleError> {
    let (name, args) = spec.split_once(':').unwrap_or((spec, ""));
    let info = REGISTRY
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModuleError::Unknown(name.to_owned()))?;
    (info.build)(args)
}

/// Splits `k=v,k=v` module arguments, rejecting anything else.
pub(crate) fn parse_args(
    module: &'static str,
    args: &str,
) -> Result<Vec<(String, String)>, ModuleError> {
    args.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| ModuleError::BadArgs {
                    module,
                    msg: format!("expected KEY=VALUE, got '{kv}'"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_by_name() {
        assert_eq!(build("dummy").unwrap().name(), "dummy");
        assert_eq!(build("learn").unwrap().name(), "learn");
        let e = build("nope").err().unwrap();
        assert_eq!(
            e.to_string(),
            "unknown module 'nope' (available: dummy, learn, flow, demux)"
        );
        assert!(build("learn:bogus").is_err());
    }

    #[test]
    fn verdict_sets_round_trip() {
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        v.set_ports(1, &[PortId(2), PortId(5)]);
        v.set(2, Verdict::Flood);
        assert_eq!(v.get(0), Verdict::Drop);
        let Verdict::Ports(k) = v.get(1) else {
            panic!()
        };
        assert_eq!(v.set_members(k), &[PortId(2), PortId(5)]);
        assert_eq!(v.set_members(9), &[] as &[PortId]);
        assert!(!v.set_hairpin(k) && !v.set_hairpin(9));
        let h = v.add_set_with(&[PortId(1)], true);
        let Verdict::Ports(h) = h else { panic!() };
        assert!(v.set_hairpin(h));
        assert_eq!(v.set_members(h), &[PortId(1)]);
    }

    #[test]
    fn controller_copies_are_a_side_list() {
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        v.set(0, Verdict::Port(PortId(2)));
        v.to_controller(0, 7);
        v.to_controller(2, 9);
        assert_eq!(v.get(0), Verdict::Port(PortId(2)));
        assert_eq!(v.controller_copies(), &[(0, 7), (2, 9)]);
        v.reset(2);
        assert!(v.controller_copies().is_empty());
    }

    #[test]
    fn variants_carry_their_own_bytes() {
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        let set = v.add_set(&[PortId(3), PortId(4)]);
        let hp = v.add_set_with(&[PortId(1)], true);
        assert!(v.add_variant(2, set, &[b"ab", b"", b"cd"]));
        assert!(v.add_variant(0, Verdict::Port(PortId(5)), &[b"x"]));
        assert!(!v.add_variant(0, Verdict::Flood, &[b"x"]));
        assert!(!v.add_variant(0, hp, &[b"x"]));
        assert!(!v.add_variant(7, Verdict::Port(PortId(5)), &[b"x"]));
        assert!(!v.add_variant(0, Verdict::Port(PortId(5)), &[&[0; 70000]]));
        let mut full = 0;
        while v.add_variant(1, Verdict::Port(PortId(6)), &[b"y"]) {
            full += 1;
        }
        assert_eq!(full, 3 * Verdicts::MAX_VARIANTS_PER_PACKET - 2);
        let got: Vec<_> = v
            .variants()
            .filter(|&(i, _, _)| i != 1)
            .map(|(i, t, b)| (i, t, b.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (2, set, b"abcd".to_vec()),
                (0, Verdict::Port(PortId(5)), b"x".to_vec())
            ]
        );
        let (sorted, _) = v.sorted_variants();
        assert_eq!(sorted.first().map(|x| x.pkt), Some(0));
        assert_eq!(sorted.last().map(|x| x.pkt), Some(2));
        v.reset(1);
        assert!(!v.has_variants());
    }
}
