//! Open vSwitch's `NORMAL` action: a MAC-learning L2 switch per VLAN, with
//! the port VLAN modes of Open vSwitch's Port table (`vlan_mode`, `tag`,
//! `trunks`).
//!
//! A packet's VLAN is decided on ingress by its input port's [`PortVlan`]
//! (or the frame is dropped: a tagged frame on an access port, a VLAN a
//! trunk does not carry); its source MAC is learned in that VLAN (never a
//! group source); it goes to the port its destination was learned on in
//! that VLAN, or else is flooded to every port that carries the VLAN. On
//! egress a port sends it untagged (access, VLAN 0, the native VLAN of a
//! native-untagged port) or tagged with the VLAN (the priority bits of a
//! received tag are kept). So a packet reaches only ports of its VLAN.
//!
//! The decision is made per packet, after the cached plan that says
//! "NORMAL" ([`super::pipeline::Plan::normal`]): the megaflows never depend
//! on the MAC table, which changes with every packet, so they stay valid.
//! One packet can need two versions of its bytes (tagged for trunks,
//! untagged for access ports): the one the frame already has (or gets by a
//! rewrite in place when NORMAL is its only output) goes with its verdict,
//! the other as a [`Verdicts::add_variant`]. `Dests` carries what a batch
//! may reuse: the last source learned, the last destination looked up,
//! and an epoch that moves when the batch's learning changes the table.

use std::str::FromStr;

use crate::module::mactable::{self, Learned, MacTable, is_group, mac_at};
use crate::module::{Verdict, Verdicts};
use crate::packet::Batch;
use crate::port::PortId;

use super::pipeline::Pipeline;

const TPID_8021Q: u16 = 0x8100;

/// How a port maps a packet's VLAN to and from its 802.1Q header, as in
/// Open vSwitch's Port table `vlan_mode` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanMode {
    /// One VLAN (`tag`), untagged on the wire.
    Access,
    /// The VLANs in `trunks` (all if empty), tagged on the wire but VLAN 0,
    /// which is untagged.
    Trunk,
    /// A trunk whose untagged frames are in the native VLAN (`tag`), which
    /// it sends tagged.
    NativeTagged,
    /// A trunk whose untagged frames are in the native VLAN (`tag`), which
    /// it sends untagged.
    NativeUntagged,
}

impl FromStr for VlanMode {
    type Err = PortVlanError;

    fn from_str(s: &str) -> Result<VlanMode, PortVlanError> {
        Ok(match s {
            "access" => VlanMode::Access,
            "trunk" => VlanMode::Trunk,
            "native-tagged" => VlanMode::NativeTagged,
            "native-untagged" => VlanMode::NativeUntagged,
            _ => return Err(PortVlanError::Mode(s.to_owned())),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortVlanError {
    #[error("unknown vlan_mode '{0}' (access, trunk, native-tagged, native-untagged)")]
    Mode(String),
    #[error("VLAN '{0}' is not in 0..=4095")]
    Vlan(String),
    #[error("{0} port needs a tag")]
    NeedsTag(&'static str),
    #[error("a trunk port takes no tag (use native-tagged or native-untagged)")]
    TrunkWithTag,
    #[error("an access port takes no trunks")]
    AccessWithTrunks,
    #[error("expected vlan_mode=, tag= or trunks=, got '{0}'")]
    Syntax(String),
}

/// A port's VLAN configuration for NORMAL (Open vSwitch's `vlan_mode`,
/// `tag` and `trunks`). The default, like a port with neither tag nor
/// trunks in Open vSwitch, is a trunk of every VLAN (VLAN 0 untagged).
///
/// Parsed from the columns' values as ovs-vsctl shows them, space
/// separated, any order: `tag=10`, `trunks=10,20,30`,
/// `vlan_mode=native-untagged tag=10 trunks=20,30` (ranges `20-30` too).
/// Without `vlan_mode` a port with a tag is an access port, else a trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortVlan {
    mode: VlanMode,
    tag: u16,
    /// The trunked VLANs as a bitmap; None: all.
    trunks: Option<Box<[u64; 64]>>,
}

impl Default for PortVlan {
    fn default() -> Self {
        PortVlan {
            mode: VlanMode::Trunk,
            tag: 0,
            trunks: None,
        }
    }
}

/// How a packet leaves a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Egress {
    Untagged,
    Tagged,
}

impl PortVlan {
    /// Builds a configuration from the three columns, checked as Open
    /// vSwitch documents them: `mode` None picks access with a tag, trunk
    /// without; access and native modes need a tag, a trunk takes none,
    /// an access port takes no trunks; an empty `trunks` means all VLANs.
    pub fn new(
        mode: Option<VlanMode>,
        tag: Option<u16>,
        trunks: &[u16],
    ) -> Result<PortVlan, PortVlanError> {
        let mode = mode.unwrap_or(if tag.is_some() {
            VlanMode::Access
        } else {
            VlanMode::Trunk
        });
        for &v in trunks.iter().chain(tag.as_ref()) {
            if v > 4095 {
                return Err(PortVlanError::Vlan(v.to_string()));
            }
        }
        match (mode, tag) {
            (VlanMode::Access, None) => return Err(PortVlanError::NeedsTag("an access")),
            (VlanMode::NativeTagged | VlanMode::NativeUntagged, None) => {
                return Err(PortVlanError::NeedsTag("a native"));
            }
            (VlanMode::Trunk, Some(_)) => return Err(PortVlanError::TrunkWithTag),
            (VlanMode::Access, _) if !trunks.is_empty() => {
                return Err(PortVlanError::AccessWithTrunks);
            }
            _ => {}
        }
        let trunks = (!trunks.is_empty()).then(|| {
            let mut b = Box::new([0u64; 64]);
            for &v in trunks {
                b[usize::from(v / 64)] |= 1 << (v % 64);
            }
            b
        });
        Ok(PortVlan {
            mode,
            tag: tag.unwrap_or(0),
            trunks,
        })
    }

    /// An access port of VLAN `tag`.
    pub fn access(tag: u16) -> Result<PortVlan, PortVlanError> {
        PortVlan::new(Some(VlanMode::Access), Some(tag), &[])
    }

    /// A trunk of `trunks` (all VLANs if empty).
    pub fn trunk(trunks: &[u16]) -> Result<PortVlan, PortVlanError> {
        PortVlan::new(Some(VlanMode::Trunk), None, trunks)
    }

    pub fn mode(&self) -> VlanMode {
        self.mode
    }

    /// The access VLAN, or the native VLAN (0 for a trunk).
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// Whether the port carries `vlan`.
    pub fn carries(&self, vlan: u16) -> bool {
        match self.mode {
            VlanMode::Access => vlan == self.tag,
            VlanMode::Trunk => self.trunks(vlan),
            VlanMode::NativeTagged | VlanMode::NativeUntagged => {
                vlan == self.tag || self.trunks(vlan)
            }
        }
    }

    #[inline]
    fn trunks(&self, vlan: u16) -> bool {
        match &self.trunks {
            None => vlan < 4096,
            Some(b) => b
                .get(usize::from(vlan / 64))
                .is_some_and(|w| w & (1 << (vlan % 64)) != 0),
        }
    }

    /// The VLAN of a frame received with outer 802.1Q TCI `tci` (None:
    /// untagged), or None if the port drops it. A priority tag (VID 0)
    /// counts as no tag, except on a trunk, where it is VLAN 0.
    #[inline]
    pub(crate) fn ingress(&self, tci: Option<u16>) -> Option<u16> {
        let vid = tci.map(|t| t & 0xfff).unwrap_or(0);
        match self.mode {
            VlanMode::Access => (vid == 0).then_some(self.tag),
            VlanMode::Trunk => self.trunks(vid).then_some(vid),
            VlanMode::NativeTagged | VlanMode::NativeUntagged => {
                if vid == 0 {
                    Some(self.tag)
                } else {
                    self.carries(vid).then_some(vid)
                }
            }
        }
    }

    /// How a packet of `vlan` leaves the port, or None if it does not
    /// carry that VLAN.
    #[inline]
    pub(crate) fn egress(&self, vlan: u16) -> Option<Egress> {
        if !self.carries(vlan) {
            return None;
        }
        Some(match self.mode {
            VlanMode::Access => Egress::Untagged,
            VlanMode::NativeUntagged if vlan == self.tag => Egress::Untagged,
            _ if vlan == 0 => Egress::Untagged,
            _ => Egress::Tagged,
        })
    }
}

impl FromStr for PortVlan {
    type Err = PortVlanError;

    fn from_str(s: &str) -> Result<PortVlan, PortVlanError> {
        let vlan = |v: &str| {
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|&n| n < 4096)
                .ok_or_else(|| PortVlanError::Vlan(v.to_owned()))
        };
        let (mut mode, mut tag, mut trunks) = (None, None, Vec::new());
        // Settings are separated by spaces (Open vSwitch's way) or `;` (for
        // config files, whose words cannot hold spaces).
        let toks = s
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|t| !t.is_empty());
        for tok in toks {
            let (k, v) = tok
                .split_once('=')
                .ok_or_else(|| PortVlanError::Syntax(tok.to_owned()))?;
            match k {
                "vlan_mode" => mode = Some(v.parse()?),
                "tag" => tag = Some(vlan(v)?),
                "trunks" => {
                    for r in v.split(',').filter(|r| !r.is_empty()) {
                        let (a, b) = r.split_once('-').unwrap_or((r, r));
                        let (a, b) = (vlan(a)?, vlan(b)?);
                        if a > b {
                            return Err(PortVlanError::Vlan(r.to_owned()));
                        }
                        trunks.extend(a..=b);
                    }
                }
                _ => return Err(PortVlanError::Syntax(tok.to_owned())),
            }
        }
        PortVlan::new(mode, tag, &trunks)
    }
}

impl std::fmt::Display for PortVlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            VlanMode::Access => "access",
            VlanMode::Trunk => "trunk",
            VlanMode::NativeTagged => "native-tagged",
            VlanMode::NativeUntagged => "native-untagged",
        };
        write!(f, "vlan_mode={mode}")?;
        if self.mode != VlanMode::Trunk {
            write!(f, " tag={}", self.tag)?;
        }
        if let Some(b) = &self.trunks {
            let list: Vec<String> = (0..4096u16)
                .filter(|&v| b[usize::from(v / 64)] & (1 << (v % 64)) != 0)
                .map(|v| v.to_string())
                .collect();
            write!(f, " trunks={}", list.join(","))?;
        }
        Ok(())
    }
}

/// A frame's Ethernet and outer 802.1Q fields, as NORMAL reads them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub dst: u64,
    pub src: u64,
    /// The outer 802.1Q TCI, if tagged (TPID 0x8100).
    pub tci: Option<u16>,
}

impl Frame {
    #[inline]
    pub fn read(d: &[u8]) -> Option<Frame> {
        let h = d.get(..14)?;
        let tci = match (u16::from_be_bytes([h[12], h[13]]), d.get(14..16)) {
            (TPID_8021Q, Some(t)) if d.len() >= 18 => Some(u16::from_be_bytes([t[0], t[1]])),
            _ => None,
        };
        Some(Frame {
            dst: mac_at(&h[0..6]),
            src: mac_at(&h[6..12]),
            tci,
        })
    }

    /// The bytes' form relative to `vlan`: they fit an untagged egress, a
    /// tagged one (a tag with this VID), or neither (a priority tag, or
    /// VLAN 0 tagged).
    #[inline]
    fn as_is(&self, vlan: u16) -> Option<Egress> {
        match self.tci {
            None => Some(Egress::Untagged),
            Some(t) if t & 0xfff == vlan && vlan != 0 => Some(Egress::Tagged),
            Some(_) => None,
        }
    }

    /// The TCI a tagged egress carries: the VLAN, with the received
    /// priority bits.
    #[inline]
    fn out_tci(&self, vlan: u16) -> [u8; 2] {
        ((self.tci.unwrap_or(0) & 0xf000) | vlan).to_be_bytes()
    }
}

/// Where NORMAL sends one packet: ports that want it untagged and ports
/// that want it tagged. Scratch reused across packets and batches.
#[derive(Default)]
pub(crate) struct Dests {
    pub untagged: Vec<PortId>,
    pub tagged: Vec<PortId>,
    /// Scratch for a merged port set.
    merged: Vec<PortId>,
    /// The packet was flooded (unknown or group destination).
    pub flooded: bool,
    /// Within one batch (all from one port): the last source key learned
    /// and the last destination key looked up with its port, since
    /// consecutive packets mostly share addresses (as in `learn`).
    last_src: u64,
    last_dst: u64,
    last_port: Option<PortId>,
    /// Bumped (from 1, per batch) whenever learning changes the table:
    /// a decision made at one epoch holds for the same addresses until
    /// the next.
    pub epoch: u32,
    /// The last `apply` rewrote the packet or added a variant: its
    /// decision cannot be replayed on another packet as a bare verdict.
    pub reshaped: bool,
}

impl Dests {
    /// Starts a batch: forgets what the last one learned and looked up.
    pub fn begin(&mut self) {
        (self.last_src, self.last_dst, self.epoch) = (0, 0, 1);
    }

    fn clear(&mut self) {
        self.untagged.clear();
        self.tagged.clear();
        self.flooded = false;
        self.reshaped = false;
    }

    fn push(&mut self, p: PortId, e: Egress) {
        match e {
            Egress::Untagged => self.untagged.push(p),
            Egress::Tagged => self.tagged.push(p),
        }
    }

    fn list(&self, e: Egress) -> &[PortId] {
        match e {
            Egress::Untagged => &self.untagged,
            Egress::Tagged => &self.tagged,
        }
    }
}

/// What NORMAL did with one packet, for the counters (the MAC table
/// counts its own learning).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub vlan_drop: bool,
}

/// NORMAL's decision for frame `f` received on `in_port` (a real port, or
/// None for a packet-out from the controller: a trunk of all VLANs that
/// learns nothing): learns the source and fills `dests`. Returns the
/// packet's VLAN, or None if the input port's VLAN configuration drops it.
pub(crate) fn decide(
    pipe: &Pipeline,
    macs: &MacTable,
    in_port: Option<PortId>,
    f: &Frame,
    now_s: u32,
    dests: &mut Dests,
    outcome: &mut Outcome,
) -> Option<u16> {
    dests.clear();
    let in_vlan = in_port.map_or(&DEFAULT_VLAN, |p| pipe.port_vlan(u32::from(p.0)));
    let Some(vlan) = in_vlan.ingress(f.tci) else {
        outcome.vlan_drop = true;
        return None;
    };
    if let Some(p) = in_port
        && !is_group(f.src)
    {
        let src = mactable::key(vlan, f.src);
        if src != dests.last_src {
            if !matches!(macs.learn(src, p, now_s), Learned::Known | Learned::Refused) {
                // What the table says of the last destination may have
                // changed with it.
                dests.last_dst = 0;
                dests.epoch = dests.epoch.wrapping_add(1).max(1);
            }
            dests.last_src = src;
        }
    }
    let dst = mactable::key(vlan, f.dst);
    let known = if is_group(f.dst) {
        None
    } else if dst == dests.last_dst {
        dests.last_port
    } else {
        let p = macs.lookup_secs(dst, now_s);
        (dests.last_dst, dests.last_port) = (dst, p);
        p
    };
    if let Some(p) = known {
        // Known: to that port, if it still carries the VLAN and takes
        // outputs; a destination on the input port goes nowhere.
        if Some(p) != in_port
            && !pipe.id_no_fwd(p)
            && let Some(e) = pipe.port_vlan(u32::from(p.0)).egress(vlan)
        {
            dests.push(p, e);
        }
        return Some(vlan);
    }
    dests.flooded = true;
    // Ports configured out of floods (PORT_DOWN, NO_FWD, NO_FLOOD) are
    // not on the list.
    for &p in pipe.flood_list() {
        if Some(p) == in_port {
            continue;
        }
        if let Some(e) = pipe.port_vlan(u32::from(p.0)).egress(vlan) {
            dests.push(p, e);
        }
    }
    Some(vlan)
}

pub(crate) static DEFAULT_VLAN: PortVlan = PortVlan {
    mode: VlanMode::Trunk,
    tag: 0,
    trunks: None,
};

/// The bytes of frame `d` (fields `f`) in form `e` for `vlan`, as parts
/// to put end to end.
fn parts<'a>(d: &'a [u8], f: &Frame, e: Egress, tag: &'a [u8; 4]) -> [&'a [u8]; 3] {
    let body = if f.tci.is_some() { &d[16..] } else { &d[12..] };
    match e {
        Egress::Untagged => [&d[..12], body, &[]],
        Egress::Tagged => [&d[..12], tag, body],
    }
}

/// Applies NORMAL's decision (`dests`, for a packet of `vlan` whose fields
/// are `f`) to packet `i` of `batch`, whose verdict so far is `v` (the
/// plan's other outputs; Drop or Controller if NORMAL is the only one).
/// With no other port outputs the bytes may be rewritten in place to the
/// form the ports want; otherwise they stay, and ports that want the
/// other form get a variant. Returns the verdict, or None if a tag could
/// not be pushed for lack of room (the caller drops and counts it).
pub(crate) fn apply(
    batch: &mut Batch<'_>,
    i: usize,
    f: &Frame,
    vlan: u16,
    v: Verdict,
    dests: &mut Dests,
    out: &mut Verdicts,
) -> Option<Verdict> {
    let tag = {
        let t = f.out_tci(vlan);
        [0x81, 0x00, t[0], t[1]]
    };
    let as_is = f.as_is(vlan);
    let alone = matches!(v, Verdict::Drop | Verdict::Controller);
    if !alone {
        // Other outputs take the bytes as they are: NORMAL's ports that
        // want them so join the verdict; the others get a variant.
        dests.merged.clear();
        match v {
            // A flood already reaches every port with these bytes.
            Verdict::Flood => return Some(v),
            Verdict::Port(p) => dests.merged.push(p),
            Verdict::Ports(k) => dests.merged.extend_from_slice(out.set_members(k)),
            _ => {}
        }
        let hairpin = matches!(v, Verdict::Ports(k) if out.set_hairpin(k));
        let mut verdict = v;
        for e in [Egress::Untagged, Egress::Tagged] {
            let (list, merged) = match e {
                Egress::Untagged => (&dests.untagged, &mut dests.merged),
                Egress::Tagged => (&dests.tagged, &mut dests.merged),
            };
            if list.is_empty() {
                continue;
            }
            if as_is == Some(e) {
                merged.extend_from_slice(list);
                verdict = out.add_set_with(merged, hairpin);
            } else {
                let to = one_or_set(out, list);
                let d = batch.data(i);
                out.add_variant(i, to, &parts(d, f, e, &tag));
                dests.reshaped = true;
            }
        }
        return Some(verdict);
    }
    // NORMAL alone: the bytes take the form of one non-empty list (the
    // one they have if it wants them, else untagged, which never grows),
    // the other list gets a variant.
    let main = match as_is {
        Some(e) if !dests.list(e).is_empty() => e,
        _ if !dests.untagged.is_empty() => Egress::Untagged,
        _ if !dests.tagged.is_empty() => Egress::Tagged,
        _ => return Some(v),
    };
    let other = match main {
        Egress::Untagged => Egress::Tagged,
        Egress::Tagged => Egress::Untagged,
    };
    if !dests.list(other).is_empty() {
        let to = one_or_set(out, dests.list(other));
        let d = batch.data(i);
        out.add_variant(i, to, &parts(d, f, other, &tag));
        dests.reshaped = true;
    }
    if as_is != Some(main) {
        dests.reshaped = true;
        if !rewrite(batch, i, f, main, &tag) {
            return None;
        }
    }
    Some(one_or_set(out, dests.list(main)))
}

fn one_or_set(out: &mut Verdicts, ports: &[PortId]) -> Verdict {
    match ports {
        [p] => Verdict::Port(*p),
        _ => out.add_set(ports),
    }
}

/// Rewrites packet `i` in place to form `e` (tag bytes `tag`). False if
/// its buffer has no room for a tag.
fn rewrite(batch: &mut Batch<'_>, i: usize, f: &Frame, e: Egress, tag: &[u8; 4]) -> bool {
    let len = batch.data(i).len();
    match (e, f.tci.is_some()) {
        (Egress::Untagged, true) => {
            batch.data_mut(i).copy_within(16..len, 12);
            batch.set_len(i, len - 4)
        }
        (Egress::Untagged, false) => true,
        (Egress::Tagged, true) => {
            batch.data_mut(i)[12..16].copy_from_slice(tag);
            true
        }
        (Egress::Tagged, false) => {
            if !batch.set_len(i, len + 4) {
                return false;
            }
            let d = batch.data_mut(i);
            d.copy_within(12..len, 16);
            d[12..16].copy_from_slice(tag);
            true
        }
    }
}

/// NORMAL for a packet-out: the frame `d` as it is at the NORMAL output,
/// received on `in_port` (None: from the controller). Returns (port,
/// bytes) per destination.
pub(crate) fn packet_out(
    pipe: &Pipeline,
    macs: &MacTable,
    in_port: Option<PortId>,
    d: &[u8],
    now_s: u32,
) -> (Vec<(PortId, Vec<u8>)>, Outcome) {
    let mut o = Outcome::default();
    let Some(f) = Frame::read(d) else {
        return (Vec::new(), o);
    };
    let mut dests = Dests::default();
    let Some(vlan) = decide(pipe, macs, in_port, &f, now_s, &mut dests, &mut o) else {
        return (Vec::new(), o);
    };
    let t = f.out_tci(vlan);
    let tag = [0x81, 0x00, t[0], t[1]];
    let mut outs = Vec::new();
    for e in [Egress::Untagged, Egress::Tagged] {
        for &p in dests.list(e) {
            outs.push((p, parts(d, &f, e, &tag).concat()));
        }
    }
    outs.sort_by_key(|o| o.0);
    (outs, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_vlan_parses_like_ovs_columns() {
        assert_eq!("".parse::<PortVlan>().unwrap(), PortVlan::default());
        let a: PortVlan = "tag=10".parse().unwrap();
        assert_eq!((a.mode(), a.tag()), (VlanMode::Access, 10));
        assert_eq!(a, PortVlan::access(10).unwrap());
        let t: PortVlan = "trunks=10,20-22".parse().unwrap();
        assert!(t.carries(21) && t.carries(10) && !t.carries(0) && !t.carries(23));
        assert_eq!(t.to_string(), "vlan_mode=trunk trunks=10,20,21,22");
        let n: PortVlan = "vlan_mode=native-untagged tag=5 trunks=7".parse().unwrap();
        assert!(n.carries(5) && n.carries(7) && !n.carries(8));
        assert_eq!(n.to_string().parse::<PortVlan>().unwrap(), n);
        for bad in [
            "tag=4096",
            "vlan_mode=trunk tag=3",
            "vlan_mode=access",
            "vlan_mode=native-tagged",
            "tag=1 trunks=2",
            "vlan_mode=dot1q-tunnel tag=1",
            "trunks=9-3",
            "tag",
            "color=red",
        ] {
            assert!(bad.parse::<PortVlan>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ingress_and_egress_follow_the_modes() {
        let access = PortVlan::access(10).unwrap();
        assert_eq!(access.ingress(None), Some(10));
        assert_eq!(access.ingress(Some(0x2000)), Some(10), "priority tag");
        assert_eq!(access.ingress(Some(10)), None, "tagged, even its own VLAN");
        assert_eq!(access.egress(10), Some(Egress::Untagged));
        assert_eq!(access.egress(20), None);

        let all = PortVlan::default();
        assert_eq!(all.ingress(None), Some(0));
        assert_eq!(all.ingress(Some(0x2000)), Some(0));
        assert_eq!(all.ingress(Some(4000)), Some(4000));
        assert_eq!(all.egress(0), Some(Egress::Untagged));
        assert_eq!(all.egress(10), Some(Egress::Tagged));

        let some = PortVlan::trunk(&[10, 20]).unwrap();
        assert_eq!(some.ingress(None), None, "VLAN 0 not trunked");
        assert_eq!(some.ingress(Some(30)), None);
        assert_eq!(some.ingress(Some(20)), Some(20));

        for (mode, native_out) in [
            (VlanMode::NativeTagged, Egress::Tagged),
            (VlanMode::NativeUntagged, Egress::Untagged),
        ] {
            let n = PortVlan::new(Some(mode), Some(5), &[7]).unwrap();
            assert_eq!(n.ingress(None), Some(5));
            assert_eq!(n.ingress(Some(7)), Some(7));
            assert_eq!(n.ingress(Some(5)), Some(5));
            assert_eq!(n.ingress(Some(8)), None);
            assert_eq!(n.egress(5), Some(native_out));
            assert_eq!(n.egress(7), Some(Egress::Tagged));
            assert_eq!(n.egress(8), None);
        }
    }

    #[test]
    fn frames_are_read_and_reformed() {
        let mut d = vec![0u8; 64];
        d[0..6].copy_from_slice(&[0xff; 6]);
        d[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        d[12..14].copy_from_slice(&[0x81, 0x00]);
        d[14..16].copy_from_slice(&0xa00a_u16.to_be_bytes());
        d[16..18].copy_from_slice(&[0x08, 0x00]);
        let f = Frame::read(&d).unwrap();
        assert_eq!(f.tci, Some(0xa00a));
        assert!(is_group(f.dst) && !is_group(f.src));
        assert_eq!(f.as_is(10), Some(Egress::Tagged));
        assert_eq!(f.as_is(11), None);
        assert_eq!(f.out_tci(11), 0xa00b_u16.to_be_bytes());
        let tag = [0x81, 0, 0xa0, 0x0b];
        let u = parts(&d, &f, Egress::Untagged, &tag).concat();
        assert_eq!((u.len(), &u[12..14]), (60, &[0x08, 0x00][..]));
        let t = parts(&d, &f, Egress::Tagged, &tag).concat();
        assert_eq!(
            (t.len(), &t[12..18]),
            (64, &[0x81, 0, 0xa0, 0x0b, 8, 0][..])
        );
        assert!(Frame::read(&d[..13]).is_none());
        // A tag that does not fit the frame is no tag.
        assert_eq!(Frame::read(&d[..16]).unwrap().tci, None);
    }
}
