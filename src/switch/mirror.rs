//! Port mirroring (SPAN, Open vSwitch's Mirror table): every frame received
//! on a selected source port, or sent to a selected destination port, is
//! also copied to the mirror's output port, whatever the module decided.
//! A copy the module rewrote for some port (a variant) is mirrored as that
//! port gets it, by the mirrors that select that port as a destination.
//!
//! A switch without mirrors pays one predictable branch per batch: the
//! forwarder picks its mirroring variant only when the published table
//! carries [`Mirrors`]. As in Open vSwitch, an output port is reserved for
//! its mirrors: nothing else is forwarded to it (the module's verdicts and
//! floods skip it), and what it receives is dropped.
//!
//! VLANs (Open vSwitch's `select_vlan` and `output_vlan`), given the
//! ports' VLAN settings (NORMAL's [`PortVlan`]): a frame belongs to the
//! VLAN its input port puts it in (an access port's tag; on a trunk its
//! 802.1Q tag, untagged frames of a native port in the native VLAN); a
//! frame its input port does not accept is not mirrored. A mirror with
//! `select_vlan` takes only frames of those VLANs. A mirror with an output
//! VLAN (RSPAN) has no output port: its copies go to every port that
//! carries that VLAN (the input port too, as in Open vSwitch), tagged with
//! it on trunks (the frame's tag replaced) and untagged on access ports
//! and a native-untagged port's native VLAN; frames already in the output
//! VLAN, and to reserved multicast addresses (STP, LACP, CDP...), are not
//! copied. Its ports are not reserved. Given the ports' VLAN settings, an
//! output port's copies leave it as Open vSwitch sends them, in the
//! frame's VLAN (tagged on a trunk, untagged on an access port). A copy to a port's outgoing ring
//! that outgrows the port's buffers (a tag added) is dropped and counted
//! as any frame (`oversize`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::module::flow::{PortVlan, VlanMode};
use crate::port::{MAX_PORTS, PortId};

/// A set of port numbers as a bitmap (512 bytes for 4096 ports).
#[derive(Clone)]
struct PortSet(Box<[u64; MAX_PORTS / 64]>);

impl PortSet {
    fn new(ports: &[PortId]) -> PortSet {
        let mut s = PortSet(Box::new([0; MAX_PORTS / 64]));
        for p in ports {
            s.0[p.index() / 64] |= 1 << (p.index() % 64);
        }
        s
    }

    #[inline]
    fn has(&self, p: PortId) -> bool {
        self.0[p.index() / 64] & (1 << (p.index() % 64)) != 0
    }
}

/// What one mirror has copied (Open vSwitch's `Mirror.statistics`
/// `tx_packets`/`tx_bytes`). Shared with control, which keeps it across
/// reconfigurations of the same mirror.
#[derive(Debug, Default)]
pub struct MirrorCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl MirrorCounters {
    pub fn read(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// One mirror as control describes it.
#[derive(Clone, Debug)]
pub struct MirrorSpec {
    /// Every frame the switch forwards (`select_all`).
    pub all: bool,
    /// Frames received on these ports (`select_src_port`).
    pub src: Vec<PortId>,
    /// Frames sent to these ports (`select_dst_port`).
    pub dst: Vec<PortId>,
    /// Where the copies go.
    pub out: MirrorOut,
    /// Only frames in these VLANs (`select_vlan`); `None`: all.
    pub select_vlan: Option<Vec<u16>>,
    pub counters: Arc<MirrorCounters>,
}

/// Where a mirror's copies go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorOut {
    /// One port, reserved for the mirror (`output_port`).
    Port(PortId),
    /// Every port carrying this VLAN (`output_vlan`, RSPAN).
    Vlan(u16),
}

/// How one copy leaves its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyAs {
    /// The frame as it is.
    AsIs,
    /// With this VLAN as its outer 802.1Q tag (replacing one it had).
    Tagged(u16),
    /// Without an outer 802.1Q tag.
    Untagged,
}

struct Compiled {
    all: bool,
    src: PortSet,
    dst: PortSet,
    dst_list: Vec<PortId>,
    out: MirrorOut,
    vlans: Option<VlanSet>,
    counters: Arc<MirrorCounters>,
}

/// A set of VLANs as a bitmap.
struct VlanSet(Box<[u64; 64]>);

impl VlanSet {
    fn new(vlans: &[u16]) -> VlanSet {
        let mut s = VlanSet(Box::new([0; 64]));
        for &v in vlans.iter().filter(|&&v| v < 4096) {
            s.0[usize::from(v / 64)] |= 1 << (v % 64);
        }
        s
    }

    fn has(&self, v: u16) -> bool {
        v < 4096 && self.0[usize::from(v / 64)] & (1 << (v % 64)) != 0
    }
}

/// A switch's mirrors, compiled for the forwarders.
pub struct Mirrors {
    mirrors: Vec<Compiled>,
    reserved: PortSet,
    /// Each port's VLAN settings by port number, when a mirror looks at
    /// VLANs (ports not given are trunks of every VLAN).
    vlans: Option<Box<[PortVlan]>>,
}

impl Mirrors {
    /// `None` for an empty list: a switch without mirrors carries none.
    /// `port_vlans` are the ports' VLAN settings.
    pub fn new(specs: &[MirrorSpec], port_vlans: &[(PortId, PortVlan)]) -> Option<Mirrors> {
        if specs.is_empty() {
            return None;
        }
        let outs: Vec<PortId> = specs
            .iter()
            .filter_map(|m| match m.out {
                MirrorOut::Port(p) => Some(p),
                MirrorOut::Vlan(_) => None,
            })
            .collect();
        let by_vlan = !port_vlans.is_empty()
            || specs
                .iter()
                .any(|m| m.select_vlan.is_some() || matches!(m.out, MirrorOut::Vlan(_)));
        let vlans = by_vlan.then(|| {
            let mut t = vec![PortVlan::default(); MAX_PORTS].into_boxed_slice();
            for (p, v) in port_vlans {
                t[p.index()] = v.clone();
            }
            t
        });
        Some(Mirrors {
            reserved: PortSet::new(&outs),
            vlans,
            mirrors: specs
                .iter()
                .map(|m| Compiled {
                    all: m.all,
                    src: PortSet::new(&m.src),
                    dst: PortSet::new(&m.dst),
                    dst_list: m.dst.clone(),
                    out: m.out,
                    vlans: m.select_vlan.as_deref().map(VlanSet::new),
                    counters: m.counters.clone(),
                })
                .collect(),
        })
    }

    /// Whether `p` is a mirror's output port (nothing else goes there).
    #[inline]
    pub fn reserved(&self, p: PortId) -> bool {
        self.reserved.has(p)
    }

    /// The output ports that want `frame`, received on `input`, whose
    /// destinations are `dst` (a flood reaches every attached port but the
    /// input, `attached`), each mirror that selects it counted with its
    /// length. Calls `to(out, how)` once per mirror and output port. For a
    /// `variant` (another version of a frame already offered, `received`
    /// the frame as it came in, whose VLAN it is in) only the mirrors that
    /// select by destination and did not take the frame itself count.
    #[allow(clippy::too_many_arguments)]
    pub fn select(
        &self,
        input: PortId,
        dst: Dests<'_>,
        attached: &[PortId],
        frame: &[u8],
        received: &[u8],
        variant: bool,
        mut to: impl FnMut(PortId, CopyAs),
    ) {
        // The frame's VLAN, when a mirror looks at VLANs; a frame its
        // input port refuses is not mirrored.
        let vlan = match &self.vlans {
            None => None,
            Some(t) => match ingress(&t[input.index()], outer_tci(received)) {
                Some(v) => Some(v),
                None => return,
            },
        };
        let len = frame.len() as u32;
        for m in &self.mirrors {
            let took_frame = m.all || m.src.has(input);
            let hit = (took_frame && !variant)
                || !took_frame
                    && match dst {
                        Dests::None => false,
                        Dests::Ports(ps) => ps.iter().any(|p| *p != input && m.dst.has(*p)),
                        Dests::Flood => m
                            .dst_list
                            .iter()
                            .any(|p| *p != input && !self.reserved(*p) && attached.contains(p)),
                    };
            if !hit
                || m.vlans
                    .as_ref()
                    .is_some_and(|s| vlan.is_none_or(|v| !s.has(v)))
            {
                continue;
            }
            match m.out {
                MirrorOut::Port(o) => {
                    m.count(len);
                    let how = match (&self.vlans, vlan) {
                        (Some(t), Some(v)) => span_egress(&t[o.index()], v, outer_tci(frame)),
                        _ => CopyAs::AsIs,
                    };
                    to(o, how);
                }
                MirrorOut::Vlan(out) => {
                    if vlan == Some(out) || reserved_mac(frame) {
                        continue;
                    }
                    let Some(t) = &self.vlans else { continue };
                    m.count(len);
                    for &p in attached.iter().filter(|p| !self.reserved(**p)) {
                        if let Some(how) = egress(&t[p.index()], out) {
                            to(p, how);
                        }
                    }
                }
            }
        }
    }
}

impl Compiled {
    fn count(&self, len: u32) {
        self.counters.packets.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(u64::from(len), Ordering::Relaxed);
    }
}

/// The TCI of a frame's outer 802.1Q (or 802.1ad) tag, if it has one.
fn outer_tci(frame: &[u8]) -> Option<u16> {
    let t = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if !matches!(t, 0x8100 | 0x88a8) {
        return None;
    }
    Some(u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]))
}

/// The VLAN a frame with outer tag `tci` belongs to on a port with
/// settings `pv`, or None if the port does not accept it (NORMAL's rule;
/// a priority tag, VID 0, counts as none).
fn ingress(pv: &PortVlan, tci: Option<u16>) -> Option<u16> {
    let vid = tci.map_or(0, |t| t & 0xfff);
    match pv.mode() {
        VlanMode::Access => (vid == 0).then_some(pv.tag()),
        VlanMode::Trunk => pv.carries(vid).then_some(vid),
        VlanMode::NativeTagged | VlanMode::NativeUntagged if vid == 0 => Some(pv.tag()),
        VlanMode::NativeTagged | VlanMode::NativeUntagged => pv.carries(vid).then_some(vid),
    }
}

/// How a copy in VLAN `vlan` (1..4095) leaves a port with settings `pv`,
/// if the port carries it.
fn egress(pv: &PortVlan, vlan: u16) -> Option<CopyAs> {
    if !pv.carries(vlan) {
        return None;
    }
    Some(match pv.mode() {
        VlanMode::Access => CopyAs::Untagged,
        VlanMode::NativeUntagged if vlan == pv.tag() => CopyAs::Untagged,
        _ => CopyAs::Tagged(vlan),
    })
}

/// How a copy of a frame in VLAN `vlan` (currently with outer tag `tci`)
/// leaves a mirror's output port with settings `pv`: as Open vSwitch
/// sends it there, in its VLAN (untagged on an access port or in the
/// native VLAN of a native-untagged port, else tagged), whether or not the
/// port carries that VLAN.
fn span_egress(pv: &PortVlan, vlan: u16, tci: Option<u16>) -> CopyAs {
    let untagged = vlan == 0
        || match pv.mode() {
            VlanMode::Access => true,
            VlanMode::NativeUntagged => vlan == pv.tag(),
            VlanMode::Trunk | VlanMode::NativeTagged => false,
        };
    match (untagged, tci) {
        (true, None) => CopyAs::AsIs,
        (true, Some(_)) => CopyAs::Untagged,
        (false, Some(t)) if t & 0xfff == vlan => CopyAs::AsIs,
        (false, _) => CopyAs::Tagged(vlan),
    }
}

/// Destinations Open vSwitch never mirrors to a VLAN (its
/// `forward-bpdu` list: STP, LACP and other 802.1 protocols, Cisco's).
fn reserved_mac(frame: &[u8]) -> bool {
    let Some(d) = frame.get(..6) else {
        return false;
    };
    match d {
        [0x01, 0x80, 0xc2, 0, 0, x] => *x <= 0x0f,
        [0x00, 0xe0, 0x2b, 0, 0, x] => matches!(x, 0 | 4 | 6),
        [0x01, 0x00, 0x0c, 0xcc, 0xcc, x] => *x & 0xf0 == 0xc0,
        [0x01, 0x00, 0x0c, 0xcd, 0xcd, 0xcd] | [0x01, 0x00, 0x0c, 0, 0, 0] => true,
        _ => false,
    }
}

/// Writes `frame` as `how` says into `out` (at least 4 bytes longer than
/// `frame`), returning the length written.
pub fn rewrite(frame: &[u8], how: CopyAs, out: &mut [u8]) -> usize {
    let tci = outer_tci(frame);
    let (addrs, rest) = frame.split_at(12.min(frame.len()));
    // The payload after the addresses and the outer tag, if any.
    let rest = match (how, tci) {
        (CopyAs::AsIs, _) | (_, None) => rest,
        (_, Some(_)) => &rest[4..],
    };
    let mut n = addrs.len();
    out[..n].copy_from_slice(addrs);
    let tag = match how {
        CopyAs::AsIs | CopyAs::Untagged => None,
        // Keep a priority the frame had; the VID becomes `v`.
        CopyAs::Tagged(v) => Some(tci.map_or(0, |t| t & 0xe000) | (v & 0xfff)),
    };
    if let Some(t) = tag {
        out[n..n + 2].copy_from_slice(&0x8100u16.to_be_bytes());
        out[n + 2..n + 4].copy_from_slice(&t.to_be_bytes());
        n += 4;
    }
    out[n..n + rest.len()].copy_from_slice(rest);
    n + rest.len()
}

/// Where the module sent a frame, as mirrors look at it.
#[derive(Clone, Copy)]
pub enum Dests<'a> {
    None,
    Ports(&'a [PortId]),
    Flood,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u16) -> PortId {
        PortId(n)
    }

    fn spec(
        all: bool,
        src: &[u16],
        dst: &[u16],
        out: MirrorOut,
        c: &Arc<MirrorCounters>,
    ) -> MirrorSpec {
        MirrorSpec {
            all,
            src: src.iter().map(|&n| p(n)).collect(),
            dst: dst.iter().map(|&n| p(n)).collect(),
            out,
            select_vlan: None,
            counters: c.clone(),
        }
    }

    #[test]
    fn mirrors_select_by_source_destination_or_all_and_count() {
        let c0 = Arc::new(MirrorCounters::default());
        let c1 = Arc::new(MirrorCounters::default());
        assert!(Mirrors::new(&[], &[]).is_none());
        let m = Mirrors::new(
            &[
                spec(false, &[1], &[2], MirrorOut::Port(p(9)), &c0),
                spec(true, &[], &[], MirrorOut::Port(p(4095)), &c1),
            ],
            &[],
        )
        .unwrap();
        assert!(m.reserved(p(9)) && m.reserved(p(4095)) && !m.reserved(p(1)));
        let attached = [p(1), p(2), p(3), p(9), p(4095)];
        let (to1, to2) = ([p(1)], [p(2)]);
        let f100 = [0u8; 100];
        let outs = |input, d| {
            let mut v = Vec::new();
            m.select(p(input), d, &attached, &f100, &f100, false, |o, how| {
                assert_eq!(how, CopyAs::AsIs);
                v.push(o.0)
            });
            v
        };
        assert_eq!(outs(1, Dests::None), vec![9, 4095], "received on 1");
        assert_eq!(outs(3, Dests::Ports(&to2)), vec![9, 4095], "sent to 2");
        assert_eq!(outs(3, Dests::Ports(&to1)), vec![4095]);
        assert_eq!(outs(3, Dests::Flood), vec![9, 4095], "a flood reaches 2");
        assert_eq!(outs(2, Dests::Flood), vec![4095], "not back to its input");
        assert_eq!(c0.read(), (3, 300));
        assert_eq!(c1.read(), (5, 500));
        // A rewritten copy sent to 2: only mirror 0 (selecting by
        // destination, not by the input) wants it; from 1 mirror 0 took
        // the frame itself already.
        let mut v = Vec::new();
        let f50 = [0u8; 50];
        for input in [3, 1] {
            m.select(
                p(input),
                Dests::Ports(&to2),
                &attached,
                &f50,
                &f100,
                true,
                |o, _| v.push(o.0),
            );
        }
        assert_eq!(v, vec![9]);
    }

    /// A frame to `dst` with an outer tag of `vid` (None: untagged).
    fn eth(dst: [u8; 6], vid: Option<u16>) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if let Some(v) = vid {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(0x6000 | v).to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45; 46]);
        f
    }

    #[test]
    fn vlan_mirrors_select_by_the_ingress_vlan_and_rspan_to_the_ports_carrying_theirs() {
        let c = Arc::new(MirrorCounters::default());
        let vl = |s: &str| s.parse::<PortVlan>().unwrap();
        // 1: access 10; 2: access 20; 3: trunk 10,99; 4: access 99;
        // 5: native-untagged 99 with trunk 10; 6: mirror output port.
        let port_vlans = [
            (p(1), vl("tag=10")),
            (p(2), vl("tag=20")),
            (p(3), vl("trunks=10,99")),
            (p(4), vl("tag=99")),
            (p(5), vl("vlan_mode=native-untagged tag=99 trunks=10")),
            (p(6), vl("tag=10")),
        ];
        let mut rspan = spec(true, &[], &[], MirrorOut::Vlan(99), &c);
        rspan.select_vlan = Some(vec![10]);
        let c6 = Arc::new(MirrorCounters::default());
        let mut span = spec(true, &[], &[], MirrorOut::Port(p(6)), &c6);
        span.select_vlan = Some(vec![20]);
        let m = Mirrors::new(&[rspan, span], &port_vlans).unwrap();
        assert!(m.reserved(p(6)) && !m.reserved(p(4)));
        let attached: Vec<PortId> = (1..=6).map(p).collect();
        let outs = |input: u16, f: &[u8]| {
            let mut v = Vec::new();
            m.select(p(input), Dests::Flood, &attached, f, f, false, |o, how| {
                v.push((o.0, how))
            });
            v
        };
        let bcast = [0xff; 6];
        // In VLAN 10 from an access port: to the trunk tagged, to the
        // access and native-untagged ports of 99 untagged; not to the
        // reserved port 6.
        let want = vec![
            (3, CopyAs::Tagged(99)),
            (4, CopyAs::Untagged),
            (5, CopyAs::Untagged),
        ];
        assert_eq!(outs(1, &eth(bcast, None)), want);
        // The same VLAN tagged on the trunk: back out of it too.
        assert_eq!(outs(3, &eth(bcast, Some(10))), want);
        // VLAN 20: only the SPAN mirror selecting 20.
        assert_eq!(outs(2, &eth(bcast, None)), vec![(6, CopyAs::AsIs)]);
        // Not in a selected VLAN, refused by its port, already in 99, or
        // to a reserved address: nothing.
        assert!(outs(3, &eth(bcast, Some(30))).is_empty());
        assert!(
            outs(1, &eth(bcast, Some(10))).is_empty(),
            "tagged on access"
        );
        assert!(outs(4, &eth(bcast, None)).is_empty());
        assert!(outs(1, &eth([0x01, 0x80, 0xc2, 0, 0, 0], None)).is_empty());
        assert_eq!(c.read().0, 2);
        assert_eq!(c6.read().0, 1);

        // An output port's copies leave it in the frame's VLAN.
        let span = |out: u16| {
            Mirrors::new(
                &[spec(true, &[], &[], MirrorOut::Port(p(out)), &c)],
                &port_vlans,
            )
            .unwrap()
        };
        let how = |m: &Mirrors, input: u16, f: &[u8]| {
            let mut v = Vec::new();
            m.select(p(input), Dests::None, &attached, f, f, false, |_, how| {
                v.push(how)
            });
            v
        };
        let to_trunk = span(3);
        assert_eq!(how(&to_trunk, 1, &eth(bcast, None)), [CopyAs::Tagged(10)]);
        assert_eq!(how(&to_trunk, 3, &eth(bcast, Some(10))), [CopyAs::AsIs]);
        let to_access = span(4);
        assert_eq!(
            how(&to_access, 3, &eth(bcast, Some(10))),
            [CopyAs::Untagged]
        );
        assert_eq!(how(&to_access, 1, &eth(bcast, None)), [CopyAs::AsIs]);
    }

    #[test]
    fn copies_are_rewritten_with_the_output_vlan_or_without_a_tag() {
        let mut out = [0u8; 200];
        let plain = eth([0xff; 6], None);
        let tagged = eth([0xff; 6], Some(10));
        let n = rewrite(&plain, CopyAs::Tagged(99), &mut out);
        let mut want = eth([0xff; 6], Some(99));
        want[14] &= 0x0f; // no priority to keep from an untagged frame
        assert_eq!(&out[..n], &want[..]);
        // A tag is replaced (its priority kept), or removed.
        let n = rewrite(&tagged, CopyAs::Tagged(99), &mut out);
        assert_eq!(&out[..n], &eth([0xff; 6], Some(99))[..]);
        let n = rewrite(&tagged, CopyAs::Untagged, &mut out);
        assert_eq!(&out[..n], &plain[..]);
        let n = rewrite(&plain, CopyAs::Untagged, &mut out);
        assert_eq!(&out[..n], &plain[..]);
        let n = rewrite(&tagged, CopyAs::AsIs, &mut out);
        assert_eq!(&out[..n], &tagged[..]);
        // Runts pass through without panicking.
        for len in 0..16 {
            let n = rewrite(&tagged[..len], CopyAs::Tagged(5), &mut out);
            assert!(n <= len + 4);
        }
    }
}
