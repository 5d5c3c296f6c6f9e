//! Header rewrites as the data path applies them to a frame's bytes.
//!
//! The pipeline decides once per flow (on a cache miss) which rewrites a
//! packet gets; the result is a short list of [`Op`]s that every packet of
//! that flow replays on its own bytes, using its own [`Layout`]. The pipeline
//! emits an op only when the header it changes is there (the key's layer
//! flags say so), and every write here is bounds-checked anyway: a frame
//! never makes this code panic.
//!
//! Checksums follow the bytes: the IPv4 header checksum, the TCP and UDP
//! checksums (pseudo-header included) and the ICMP/ICMPv6 checksums are
//! updated incrementally (RFC 1624), which gives exactly what a full
//! recomputation gives on a packet whose checksums were right and keeps a
//! wrong one wrong. A UDP/IPv4 checksum of 0 ("none") stays 0. The SCTP
//! CRC32c has no incremental form and is recomputed over the datagram when
//! a port changes.

use std::net::Ipv4Addr;

use crate::openflow::oxm::OxmField;
use crate::packet::{Batch, TunMeta};

use super::key::{IP_ICMP, IP_ICMPV6, IP_SCTP, IP_TCP, IP_UDP, L3, Layout};
use super::mpls;

/// One rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Set(OxmField),
    /// Push a tag with this TPID; VID and PCP copied from the outer tag.
    PushVlan(u16),
    PopVlan,
    DecTtl,
    SetTtl(u8),
    /// Push an MPLS entry with this ethertype (`mpls`).
    PushMpls(u16),
    /// Pop the top MPLS entry, setting this ethertype.
    PopMpls(u16),
    DecMplsTtl,
    SetMplsTtl(u8),
    /// `tun_src`/`tun_dst` of the packet's tunnel metadata (`tun_id` is an
    /// `Op::Set` of `TunnelId`): no byte changes ([`tunnel`]).
    SetTunSrc(Ipv4Addr),
    SetTunDst(Ipv4Addr),
    /// One 64-bit half (`hi`: the high one) of `tun_ipv6_dst` (`dst`) or
    /// `tun_ipv6_src`, likewise: a load of part of an address changes
    /// only the half it writes.
    SetTunIpv6 {
        dst: bool,
        hi: bool,
        word: u64,
    },
    /// `tun_metadata<idx>`: present, its bits (`mask`) of the option data
    /// word set to `value`, by the TLV table `tlv` (registry id).
    SetTunMd {
        idx: u8,
        mask: u64,
        value: u64,
        tlv: u32,
    },
}

impl Op {
    /// Whether the op writes tunnel metadata rather than bytes.
    pub(crate) fn is_tunnel(&self) -> bool {
        matches!(
            self,
            Op::SetTunSrc(_)
                | Op::SetTunDst(_)
                | Op::SetTunIpv6 { .. }
                | Op::Set(OxmField::TunnelId(_))
                | Op::SetTunMd { .. }
        )
    }
}

/// The tunnel metadata a packet that came with `m` goes out with after
/// `ops`.
pub(crate) fn tunnel(mut m: TunMeta, ops: &[Op]) -> TunMeta {
    for op in ops {
        match *op {
            Op::Set(OxmField::TunnelId(x)) => m.id = x.value,
            Op::SetTunSrc(a) => m.src = a,
            Op::SetTunDst(a) => m.dst = a,
            Op::SetTunIpv6 { dst, hi, word } => {
                let a = if dst {
                    &mut m.ipv6_dst
                } else {
                    &mut m.ipv6_src
                };
                let (keep, put) = if hi {
                    (u128::from(u64::MAX), u128::from(word) << 64)
                } else {
                    (u128::from(u64::MAX) << 64, u128::from(word))
                };
                *a = std::net::Ipv6Addr::from_bits((a.to_bits() & keep) | put);
            }
            Op::SetTunMd {
                idx,
                mask,
                value,
                tlv,
            } => {
                m.md_present |= 1 << (idx & 63);
                m.md = (m.md & !mask) | (value & mask);
                m.tlv = tlv;
            }
            _ => {}
        }
    }
    m
}

/// A frame being rewritten: its bytes, and a way to change its length
/// within its buffer.
pub(crate) trait Frame {
    fn bytes(&mut self) -> &mut [u8];
    /// False if the buffer has no room.
    fn resize(&mut self, len: usize) -> bool;
}

/// Packet `i` of a batch.
pub(crate) struct BatchFrame<'a, 'b> {
    pub batch: &'a mut Batch<'b>,
    pub i: usize,
}

impl Frame for BatchFrame<'_, '_> {
    fn bytes(&mut self) -> &mut [u8] {
        self.batch.data_mut(self.i)
    }

    fn resize(&mut self, len: usize) -> bool {
        self.batch.set_len(self.i, len)
    }
}

/// A frame in a buffer of its own with room to grow (packet-outs; tests).
pub(crate) struct VecFrame {
    pub buf: Vec<u8>,
    pub len: usize,
}

impl VecFrame {
    /// A copy of `f` with `room` bytes to grow into.
    #[cfg(test)]
    pub fn new(f: &[u8], room: usize) -> VecFrame {
        let mut buf = Vec::with_capacity(f.len() + room);
        buf.extend_from_slice(f);
        buf.resize(f.len() + room, 0);
        VecFrame { buf, len: f.len() }
    }

    #[cfg(test)]
    pub fn frame(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }
}

impl Frame for VecFrame {
    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    fn resize(&mut self, len: usize) -> bool {
        if len > self.buf.len() {
            return false;
        }
        self.len = len;
        true
    }
}

/// `f` (laid out as `lay`) with `ops` applied, in a buffer of its own; None
/// if the ops drop it.
pub(crate) fn rewritten(f: &[u8], lay: Layout, ops: &[Op]) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    rewritten_into(f, lay, ops, &mut buf).then_some(buf)
}

/// The same in `buf` (its old contents replaced, its memory reused);
/// false if the ops drop the frame.
pub(crate) fn rewritten_into(f: &[u8], lay: Layout, ops: &[Op], buf: &mut Vec<u8>) -> bool {
    let pushes = ops
        .iter()
        .filter(|o| matches!(o, Op::PushVlan(_) | Op::PushMpls(_)))
        .count();
    buf.clear();
    buf.extend_from_slice(f);
    buf.resize(f.len() + 4 * pushes, 0);
    let mut v = VecFrame {
        buf: std::mem::take(buf),
        len: f.len(),
    };
    let ok = apply(&mut v, lay, ops);
    *buf = v.into_vec();
    ok
}

/// Ones-complement sums of the 16-bit words a rewrite took out and put in,
/// for one checksum.
#[derive(Default, Clone, Copy)]
struct Delta {
    old: u64,
    new: u64,
}

impl Delta {
    /// Accounts bytes `old` replaced by `new`; `odd` says whether the first
    /// byte sits at an odd offset from the start of the checksummed data.
    fn add(&mut self, old: &[u8], new: &[u8], odd: bool) {
        for (j, (&o, &n)) in old.iter().zip(new).enumerate() {
            let shift = if (j + usize::from(odd)) % 2 == 0 {
                8
            } else {
                0
            };
            self.old += u64::from(o) << shift;
            self.new += u64::from(n) << shift;
        }
    }

    fn is_empty(&self) -> bool {
        self.old == self.new
    }

    /// Updates the checksum at `at`. `udp4`: a zero checksum means "none"
    /// and stays so, and a computed zero is sent as all ones.
    fn apply(&self, d: &mut [u8], at: usize, udp4: bool) {
        if self.is_empty() {
            return;
        }
        let Some(c) = d.get_mut(at..at + 2) else {
            return;
        };
        let hc = u16::from_be_bytes([c[0], c[1]]);
        if udp4 && hc == 0 {
            return;
        }
        let sum = u64::from(!hc) + u64::from(!fold(self.old)) + u64::from(fold(self.new));
        let mut out = !fold(sum);
        if udp4 && out == 0 {
            out = 0xffff;
        }
        c.copy_from_slice(&out.to_be_bytes());
    }
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksums touched while applying a list of ops.
#[derive(Default)]
struct Sums {
    ip: Delta,
    l4: Delta,
    sctp: bool,
}

/// Writes `new` at `at`, accounting the change in `sums` (which checksums
/// cover the bytes is decided by the caller through `ip`/`l4` parities).
fn write(
    d: &mut [u8],
    at: usize,
    new: &[u8],
    ip: Option<(&mut Delta, bool)>,
    l4: Option<(&mut Delta, bool)>,
) {
    let Some(dst) = d.get_mut(at..at + new.len()) else {
        return;
    };
    let mut old = [0u8; 16];
    let old = &mut old[..new.len()];
    old.copy_from_slice(dst);
    dst.copy_from_slice(new);
    if let Some((s, odd)) = ip {
        s.add(old, new, odd);
    }
    if let Some((s, odd)) = l4 {
        s.add(old, new, odd);
    }
}

/// Applies `ops` to a frame laid out as `lay`. False if the frame had to be
/// dropped (no room to push a tag, a TTL that cannot be decremented).
pub(crate) fn apply(f: &mut dyn Frame, mut lay: Layout, ops: &[Op]) -> bool {
    let mut sums = Sums::default();
    for op in ops {
        match *op {
            Op::PushVlan(tpid) => {
                if !push_vlan(f, &mut lay, tpid) {
                    return false;
                }
            }
            Op::PopVlan => pop_vlan(f, &mut lay),
            Op::DecTtl => {
                if !set_ttl(f.bytes(), &lay, None, &mut sums) {
                    return false;
                }
            }
            Op::SetTtl(t) => {
                set_ttl(f.bytes(), &lay, Some(t), &mut sums);
            }
            Op::Set(field) => set(f.bytes(), &lay, &field, &mut sums),
            // The layout changes under the IP header: settle its
            // checksums where it is now.
            Op::PushMpls(t) => {
                finish(f.bytes(), &lay, &std::mem::take(&mut sums));
                if !mpls::push(f, &mut lay, t) {
                    return false;
                }
            }
            Op::PopMpls(t) => {
                finish(f.bytes(), &lay, &std::mem::take(&mut sums));
                mpls::pop(f, &mut lay, t);
            }
            Op::DecMplsTtl => {
                if !mpls::set_ttl(f.bytes(), &lay, None) {
                    return false;
                }
            }
            Op::SetMplsTtl(t) => {
                mpls::set_ttl(f.bytes(), &lay, Some(t));
            }
            // Metadata, not bytes.
            Op::SetTunSrc(_) | Op::SetTunDst(_) | Op::SetTunIpv6 { .. } | Op::SetTunMd { .. } => {}
        }
    }
    finish(f.bytes(), &lay, &sums);
    true
}

fn finish(d: &mut [u8], lay: &Layout, sums: &Sums) {
    let (l3, l4) = (usize::from(lay.l3), usize::from(lay.l4));
    if lay.l3_kind == L3::Ipv4 {
        sums.ip.apply(d, l3 + 10, false);
    }
    if l4 == 0 {
        return;
    }
    let v4 = lay.l3_kind == L3::Ipv4;
    match lay.proto {
        IP_TCP => sums.l4.apply(d, l4 + 16, false),
        IP_UDP => sums.l4.apply(d, l4 + 6, v4),
        IP_ICMP | IP_ICMPV6 => sums.l4.apply(d, l4 + 2, false),
        IP_SCTP if sums.sctp => {
            let end = usize::from(lay.ip_end).min(d.len());
            if let Some(seg) = d.get_mut(l4..end).filter(|s| s.len() >= 12) {
                seg[8..12].fill(0);
                let crc = crc32c(seg);
                seg[8..12].copy_from_slice(&crc.to_le_bytes());
            }
        }
        _ => {}
    }
}

fn push_vlan(f: &mut dyn Frame, lay: &mut Layout, tpid: u16) -> bool {
    let len = f.bytes().len();
    if len < 14 || !f.resize(len + 4) {
        return false;
    }
    let d = f.bytes();
    d.copy_within(12..len, 16);
    // The new tag copies the old outer tag's TCI (now at 18..20), or is 0.
    let tci = match d.get(18..20) {
        Some(&[a, b]) if lay.vlans > 0 => [a, b],
        _ => [0, 0],
    };
    let Some(tag) = d.get_mut(12..16) else {
        return false;
    };
    tag[..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..].copy_from_slice(&tci);
    lay.vlans = lay.vlans.saturating_add(1);
    lay.shift(4);
    true
}

fn pop_vlan(f: &mut dyn Frame, lay: &mut Layout) {
    let len = f.bytes().len();
    if lay.vlans == 0 || len < 18 {
        return;
    }
    f.bytes().copy_within(16..len, 12);
    f.resize(len - 4);
    lay.vlans -= 1;
    lay.shift(-4);
}

/// Decrements (`to` = None) or sets the IPv4 TTL / IPv6 hop limit.
fn set_ttl(d: &mut [u8], lay: &Layout, to: Option<u8>, sums: &mut Sums) -> bool {
    let l3 = usize::from(lay.l3);
    let at = match lay.l3_kind {
        L3::Ipv4 => l3 + 8,
        L3::Ipv6 => l3 + 7,
        _ => return true,
    };
    let Some(&ttl) = d.get(at) else {
        return true;
    };
    let new = match to {
        Some(t) => t,
        None if ttl <= 1 => return false,
        None => ttl - 1,
    };
    let ip = (lay.l3_kind == L3::Ipv4).then_some((&mut sums.ip, false));
    write(d, at, &[new], ip, None);
    true
}

/// Whether the L4 checksum covers the IP addresses (pseudo-header).
fn pseudo(lay: &Layout) -> bool {
    lay.l4 != 0
        && match lay.l3_kind {
            L3::Ipv4 => matches!(lay.proto, IP_TCP | IP_UDP),
            L3::Ipv6 => matches!(lay.proto, IP_TCP | IP_UDP | IP_ICMPV6),
            _ => false,
        }
}

fn set(d: &mut [u8], lay: &Layout, field: &OxmField, sums: &mut Sums) {
    let (l3, l4) = (usize::from(lay.l3), usize::from(lay.l4));
    let v4 = lay.l3_kind == L3::Ipv4;
    let v6 = lay.l3_kind == L3::Ipv6;
    let arp = lay.l3_kind == L3::Arp;
    let ps = pseudo(lay);
    match *field {
        OxmField::EthDst(m) => write(d, 0, &m.value.0, None, None),
        OxmField::EthSrc(m) => write(d, 6, &m.value.0, None, None),
        OxmField::MplsLabel(l) => mpls::set_label_tc(d, lay, Some(l), None),
        OxmField::MplsTc(t) => mpls::set_label_tc(d, lay, None, Some(t)),
        OxmField::VlanVid(_) | OxmField::VlanPcp(_) if lay.vlans > 0 => {
            let Some(&[a, b]) = d.get(14..16) else { return };
            let tci = u16::from_be_bytes([a, b]);
            let tci = match *field {
                OxmField::VlanVid(m) => (tci & 0xf000) | (m.value & 0x0fff),
                OxmField::VlanPcp(p) => (tci & 0x1fff) | (u16::from(p & 7) << 13),
                _ => tci,
            };
            write(d, 14, &tci.to_be_bytes(), None, None);
        }
        OxmField::IpDscp(x) | OxmField::IpEcn(x) if v4 => {
            let Some(&tos) = d.get(l3 + 1) else { return };
            let tos = match field {
                OxmField::IpDscp(_) => (tos & 0x03) | ((x & 0x3f) << 2),
                _ => (tos & 0xfc) | (x & 3),
            };
            write(d, l3 + 1, &[tos], Some((&mut sums.ip, true)), None);
        }
        OxmField::IpDscp(x) | OxmField::IpEcn(x) if v6 => {
            let Some(b) = d.get(l3..l3 + 2) else { return };
            let tc = ((b[0] & 0x0f) << 4) | (b[1] >> 4);
            let tc = match field {
                OxmField::IpDscp(_) => (tc & 0x03) | ((x & 0x3f) << 2),
                _ => (tc & 0xfc) | (x & 3),
            };
            let nb = [(b[0] & 0xf0) | (tc >> 4), (b[1] & 0x0f) | (tc << 4)];
            write(d, l3, &nb, None, None);
        }
        OxmField::Ipv4Src(a) if v4 => write_addr(d, l3 + 12, &a.value.octets(), ps, sums),
        OxmField::Ipv4Dst(a) if v4 => write_addr(d, l3 + 16, &a.value.octets(), ps, sums),
        OxmField::Ipv6Src(a) if v6 => write_addr(d, l3 + 8, &a.value.octets(), ps, sums),
        OxmField::Ipv6Dst(a) if v6 => write_addr(d, l3 + 24, &a.value.octets(), ps, sums),
        OxmField::Ipv6Flabel(x) if v6 => {
            let Some(b) = d.get(l3 + 1..l3 + 4) else {
                return;
            };
            let v = x.value & 0x000f_ffff;
            let nb = [(b[0] & 0xf0) | (v >> 16) as u8, (v >> 8) as u8, v as u8];
            write(d, l3 + 1, &nb, None, None);
        }
        OxmField::TcpSrc(p) | OxmField::UdpSrc(p) | OxmField::SctpSrc(p) if l4 != 0 => {
            write_port(d, l4, p, lay.proto, sums)
        }
        OxmField::TcpDst(p) | OxmField::UdpDst(p) | OxmField::SctpDst(p) if l4 != 0 => {
            write_port(d, l4 + 2, p, lay.proto, sums)
        }
        OxmField::Icmpv4Type(t) | OxmField::Icmpv6Type(t) if l4 != 0 => {
            write(d, l4, &[t], None, Some((&mut sums.l4, false)))
        }
        OxmField::Icmpv4Code(c) | OxmField::Icmpv6Code(c) if l4 != 0 => {
            write(d, l4 + 1, &[c], None, Some((&mut sums.l4, true)))
        }
        OxmField::ArpOp(op) if arp => write(d, l3 + 6, &op.to_be_bytes(), None, None),
        OxmField::ArpSha(m) if arp => write(d, l3 + 8, &m.value.0, None, None),
        OxmField::ArpSpa(a) if arp => write(d, l3 + 14, &a.value.octets(), None, None),
        OxmField::ArpTha(m) if arp => write(d, l3 + 18, &m.value.0, None, None),
        OxmField::ArpTpa(a) if arp => write(d, l3 + 24, &a.value.octets(), None, None),
        OxmField::Ipv6NdTarget(a) if l4 != 0 && lay.proto == IP_ICMPV6 => {
            write(d, l4 + 8, &a.octets(), None, Some((&mut sums.l4, false)))
        }
        OxmField::Ipv6NdSll(m) | OxmField::Ipv6NdTll(m) if lay.nd_ll != 0 && l4 != 0 => {
            let at = usize::from(lay.nd_ll);
            let odd = (at - l4) % 2 == 1;
            write(d, at, &m.0, None, Some((&mut sums.l4, odd)))
        }
        _ => {}
    }
}

fn write_addr(d: &mut [u8], at: usize, a: &[u8], pseudo: bool, sums: &mut Sums) {
    let l4 = pseudo.then_some((&mut sums.l4, false));
    // Only IPv4 has a header checksum; IPv6 addresses start at even
    // offsets of the header, like IPv4's.
    let is_v4 = a.len() == 4;
    let ip = is_v4.then_some((&mut sums.ip, false));
    write(d, at, a, ip, l4);
}

fn write_port(d: &mut [u8], at: usize, port: u16, proto: u8, sums: &mut Sums) {
    match proto {
        IP_TCP | IP_UDP => write(
            d,
            at,
            &port.to_be_bytes(),
            None,
            Some((&mut sums.l4, false)),
        ),
        IP_SCTP => {
            write(d, at, &port.to_be_bytes(), None, None);
            sums.sctp = true;
        }
        _ => {}
    }
}

/// CRC32c (Castagnoli), as SCTP uses it.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u32; 256] = table();
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::module::flow::key::parse;
    use crate::openflow::oxm::Masked;
    use crate::wire::MacAddr;
    use crate::wire::ethernet::{ones_complement_sum, udp_frame};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Checks the IPv4 header checksum and the L4 checksum of a frame.
    pub(crate) fn checksums_ok(f: &[u8]) -> bool {
        let p = parse(f, 1).unwrap();
        let lay = p.layout;
        let (l3, l4) = (usize::from(lay.l3), usize::from(lay.l4));
        let end = usize::from(lay.ip_end);
        let mut ok = true;
        let mut pseudo = Vec::new();
        match lay.l3_kind {
            L3::Ipv4 => {
                let ihl = usize::from(f[l3] & 15) * 4;
                ok &= ones_complement_sum(&f[l3..l3 + ihl]) == 0xffff;
                pseudo.extend_from_slice(&f[l3 + 12..l3 + 20]);
            }
            L3::Ipv6 => pseudo.extend_from_slice(&f[l3 + 8..l3 + 40]),
            _ => return ok,
        }
        if l4 == 0 {
            return ok;
        }
        let seg = &f[l4..end];
        let len = seg.len() as u32;
        match lay.proto {
            IP_SCTP => {
                let mut c = seg.to_vec();
                c[8..12].fill(0);
                ok &= crc32c(&c).to_le_bytes() == seg[8..12];
            }
            IP_ICMP => ok &= ones_complement_sum(seg) == 0xffff,
            p => {
                if p == IP_UDP && lay.l3_kind == L3::Ipv4 && seg[6..8] == [0, 0] {
                    return ok;
                }
                if lay.l3_kind == L3::Ipv4 {
                    pseudo.extend_from_slice(&[0, p]);
                    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
                } else {
                    pseudo.extend_from_slice(&len.to_be_bytes());
                    pseudo.extend_from_slice(&[0, 0, 0, p]);
                }
                pseudo.extend_from_slice(seg);
                ok &= ones_complement_sum(&pseudo) == 0xffff;
            }
        }
        ok
    }

    /// Fills in a correct L4 checksum (TCP, UDP, ICMP, ICMPv6, SCTP).
    pub(crate) fn fix_l4_checksum(f: &mut [u8]) {
        let lay = parse(f, 1).unwrap().layout;
        let (l3, l4, end) = (
            usize::from(lay.l3),
            usize::from(lay.l4),
            usize::from(lay.ip_end),
        );
        let at = match lay.proto {
            IP_TCP => l4 + 16,
            IP_UDP => l4 + 6,
            IP_SCTP => {
                f[l4 + 8..l4 + 12].fill(0);
                let c = crc32c(&f[l4..end]);
                f[l4 + 8..l4 + 12].copy_from_slice(&c.to_le_bytes());
                return;
            }
            _ => l4 + 2,
        };
        f[at..at + 2].fill(0);
        let len = (end - l4) as u32;
        let mut pseudo = Vec::new();
        if lay.proto != IP_ICMP {
            if lay.l3_kind == L3::Ipv4 {
                pseudo.extend_from_slice(&f[l3 + 12..l3 + 20]);
                pseudo.extend_from_slice(&[0, lay.proto]);
                pseudo.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                pseudo.extend_from_slice(&f[l3 + 8..l3 + 40]);
                pseudo.extend_from_slice(&len.to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, lay.proto]);
            }
        }
        pseudo.extend_from_slice(&f[l4..end]);
        let c = !ones_complement_sum(&pseudo);
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    fn udp4() -> Vec<u8> {
        let mut f = udp_frame(
            80,
            MacAddr::local(2),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 1, 1],
            1000,
            2000,
        );
        fix_l4_checksum(&mut f);
        f
    }

    fn run(f: &[u8], ops: &[Op], room: usize) -> Option<Vec<u8>> {
        let lay = parse(f, 1).unwrap().layout;
        let mut v = VecFrame::new(f, room);
        apply(&mut v, lay, ops).then(|| v.frame().to_vec())
    }

    #[test]
    fn crc32c_known_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn rewriting_addresses_and_ports_keeps_checksums_right() {
        let f = udp4();
        assert!(checksums_ok(&f));
        let ops = [
            Op::Set(OxmField::Ipv4Src(Masked::exact(Ipv4Addr::new(
                192, 168, 7, 9,
            )))),
            Op::Set(OxmField::UdpDst(53)),
            Op::Set(OxmField::IpDscp(46)),
            Op::DecTtl,
        ];
        let out = run(&f, &ops, 0).unwrap();
        assert_eq!(&out[26..30], &[192, 168, 7, 9]);
        assert_eq!(&out[36..38], &53u16.to_be_bytes());
        assert_eq!(out[15], 46 << 2);
        assert_eq!(out[22], 63);
        assert!(checksums_ok(&out));
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let f = udp_frame(
            60,
            MacAddr::local(2),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 1, 1],
            1,
            2,
        );
        let out = run(
            &f,
            &[Op::Set(OxmField::Ipv4Dst(Masked::exact(Ipv4Addr::new(
                1, 2, 3, 4,
            ))))],
            0,
        )
        .unwrap();
        assert_eq!(&out[40..42], &[0, 0]);
        assert!(checksums_ok(&out));
    }

    #[test]
    fn vlan_push_and_pop() {
        let f = udp4();
        // No room: the frame is dropped.
        assert!(run(&f, &[Op::PushVlan(0x8100)], 0).is_none());
        let ops = [
            Op::PushVlan(0x8100),
            Op::Set(OxmField::VlanVid(Masked::exact(0x1000 | 42))),
            Op::Set(OxmField::VlanPcp(5)),
            Op::Set(OxmField::UdpSrc(7)),
        ];
        let out = run(&f, &ops, 8).unwrap();
        assert_eq!(out.len(), f.len() + 4);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0xa0, 42]);
        assert_eq!(&out[16..18], &[0x08, 0x00]);
        assert!(checksums_ok(&out));
        // Push again copies the outer tag; pop twice restores the original
        // (but for the port, which the first round changed).
        let two = run(&out, &[Op::PushVlan(0x88a8)], 4).unwrap();
        assert_eq!(&two[12..20], &[0x88, 0xa8, 0xa0, 42, 0x81, 0, 0xa0, 42]);
        let back = run(&two, &[Op::PopVlan, Op::PopVlan], 0).unwrap();
        assert_eq!(&back[..34], &f[..34]);
        assert_eq!(&back[34..36], &7u16.to_be_bytes());
        // Pop on an untagged frame does nothing.
        assert_eq!(run(&f, &[Op::PopVlan], 0).unwrap(), f);
    }

    #[test]
    fn ttl_that_cannot_be_decremented_drops() {
        let mut f = udp4();
        f[22] = 1;
        let s = !ones_complement_sum(&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        f[24..26].copy_from_slice(&s.to_be_bytes());
        assert!(run(&f, &[Op::DecTtl], 0).is_none());
        let out = run(&f, &[Op::SetTtl(9)], 0).unwrap();
        assert_eq!(out[22], 9);
        assert!(checksums_ok(&out));
    }

    pub(crate) fn tcp6() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20 + 6];
        f[0..6].copy_from_slice(&MacAddr::local(2).0);
        f[6..12].copy_from_slice(&MacAddr::local(1).0);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        // Traffic class 0xa0, flow label 0xbcdef.
        f[14] = 0x6a;
        f[15] = 0x0b;
        f[16] = 0xcd;
        f[17] = 0xef;
        f[18..20].copy_from_slice(&26u16.to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22..38].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        f[38..54].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        f[54..56].copy_from_slice(&1234u16.to_be_bytes());
        f[56..58].copy_from_slice(&80u16.to_be_bytes());
        f[66] = 0x50;
        f[74..].copy_from_slice(b"hello!");
        fix_l4_checksum(&mut f);
        f
    }

    #[test]
    fn ipv6_rewrites() {
        let f = tcp6();
        assert!(checksums_ok(&f));
        let a: Ipv6Addr = "fe80::abcd:1".parse().unwrap();
        let ops = [
            Op::Set(OxmField::Ipv6Dst(Masked::exact(a))),
            Op::Set(OxmField::TcpSrc(4321)),
            Op::Set(OxmField::Ipv6Flabel(Masked::exact(0x12345))),
            Op::Set(OxmField::IpEcn(3)),
            Op::DecTtl,
        ];
        let out = run(&f, &ops, 0).unwrap();
        assert_eq!(&out[38..54], &a.octets());
        assert_eq!(&out[14..18], &[0x6a, 0x31, 0x23, 0x45]);
        assert_eq!(out[21], 63);
        let p = parse(&out, 1).unwrap();
        assert_eq!(super::super::key::NW_TOS.get(&p.key), 0xa3);
        assert!(checksums_ok(&out));
    }
}
