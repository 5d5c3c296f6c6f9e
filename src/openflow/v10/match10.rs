//! OpenFlow 1.0's `ofp_match` (40 bytes of fixed fields and a wildcard
//! word) to and from the model's [`Match`] of OXM fields.
//!
//! Decoding normalises as Open vSwitch does: a field whose prerequisites the
//! match does not give (tp_src without an exact nw_proto of TCP, UDP, SCTP or
//! ICMP, nw_src without dl_type IPv4 or ARP, ...) is dropped without error,
//! address values are cut to their prefix, so the result always satisfies
//! [`Match::from_fields`]. The fields come out in a fixed order (in_port,
//! eth, vlan, eth_type, L3, L4).
//!
//! Encoding writes the fields 1.0 can say and wildcards the others (IPv6,
//! MPLS, metadata, tunnel id, ECN, ARP hardware addresses, masked Ethernet
//! addresses, non-prefix IPv4 masks, "any VLAN" without a priority...): the
//! 1.0 match then matches more than the model's. That is right for flow
//! statistics and flow removal, which only describe a flow; a flow mod with
//! such fields is for the agent to refuse (it can check with
//! [`is_exact_in_v10`]) until NXM carries them.

use std::net::Ipv4Addr;

use crate::openflow::bytes::{Reader, Res, Writer};
use crate::openflow::error::BadMatchCode;
use crate::openflow::flow_match::Match;
use crate::openflow::oxm::{Masked, OFPVID_NONE, OFPVID_PRESENT, OxmField};
use crate::wire::MacAddr;

use super::{EncodeError, port_from_v10, port_to_v10};

/// Size of `ofp_match`.
pub const MATCH_LEN: usize = 40;

/// `ofp_flow_wildcards` bits.
pub mod wildcards {
    pub const IN_PORT: u32 = 1 << 0;
    pub const DL_VLAN: u32 = 1 << 1;
    pub const DL_SRC: u32 = 1 << 2;
    pub const DL_DST: u32 = 1 << 3;
    pub const DL_TYPE: u32 = 1 << 4;
    pub const NW_PROTO: u32 = 1 << 5;
    pub const TP_SRC: u32 = 1 << 6;
    pub const TP_DST: u32 = 1 << 7;
    /// Number of low nw_src bits wildcarded, in bits 8..14 (32 or more: all).
    pub const NW_SRC_SHIFT: u32 = 8;
    pub const NW_SRC_MASK: u32 = 0x3f << NW_SRC_SHIFT;
    pub const NW_DST_SHIFT: u32 = 14;
    pub const NW_DST_MASK: u32 = 0x3f << NW_DST_SHIFT;
    pub const DL_VLAN_PCP: u32 = 1 << 20;
    pub const NW_TOS: u32 = 1 << 21;
    /// Everything wildcarded.
    pub const ALL: u32 = (1 << 22) - 1;
}

/// `dl_vlan` of a frame without a VLAN tag (`OFP_VLAN_NONE`).
pub const VLAN_NONE: u16 = 0xffff;

const ETH_IP: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;

/// The 40 bytes of `ofp_match`, as plain fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Raw10 {
    wildcards: u32,
    in_port: u16,
    dl_src: [u8; 6],
    dl_dst: [u8; 6],
    dl_vlan: u16,
    dl_vlan_pcp: u8,
    dl_type: u16,
    nw_tos: u8,
    nw_proto: u8,
    nw_src: u32,
    nw_dst: u32,
    tp_src: u16,
    tp_dst: u16,
}

/// The prefix mask for `n` wildcarded low bits (all wildcarded from 32 on).
fn prefix_mask(n: u32) -> u32 {
    if n >= 32 { 0 } else { u32::MAX << n }
}

/// Wildcarded low bits of a prefix mask, or `None` if it is not a prefix.
fn prefix_bits(mask: u32) -> Option<u32> {
    let n = mask.trailing_zeros();
    (prefix_mask(n) == mask).then_some(n.min(32))
}

/// An IPv4 field from a value and its wildcard count (`None`: all wildcarded).
fn ip_field(value: u32, n: u32) -> Option<Masked<Ipv4Addr>> {
    let mask = prefix_mask(n);
    match (n, mask) {
        (_, 0) => None,
        (0, _) => Some(Masked::exact(Ipv4Addr::from(value))),
        _ => Some(Masked::new(
            Ipv4Addr::from(value & mask),
            Ipv4Addr::from(mask),
        )),
    }
}

/// Makes a match field of tp_src or tp_dst.
type FieldOf = fn(u16) -> OxmField;

/// Reads an `ofp_match` and turns it into a model match.
pub(crate) fn decode_match(r: &mut Reader<'_>) -> Res<Match> {
    let wildcards = r.u32()?;
    let in_port = r.u16()?;
    let dl_src = r.array()?;
    let dl_dst = r.array()?;
    let dl_vlan = r.u16()?;
    let dl_vlan_pcp = r.u8()?;
    r.skip(1)?;
    let dl_type = r.u16()?;
    let nw_tos = r.u8()?;
    let nw_proto = r.u8()?;
    r.skip(2)?;
    let raw = Raw10 {
        wildcards,
        in_port,
        dl_src,
        dl_dst,
        dl_vlan,
        dl_vlan_pcp,
        dl_type,
        nw_tos,
        nw_proto,
        nw_src: r.u32()?,
        nw_dst: r.u32()?,
        tp_src: r.u16()?,
        tp_dst: r.u16()?,
    };
    // The normalisation below only builds valid matches; should one not be,
    // the flow's match is the problem.
    Match::from_fields(fields_of(&raw))
        .map_err(|_| crate::openflow::error::ErrorCode::BadMatch(BadMatchCode::BadPrereq))
}

fn fields_of(m: &Raw10) -> Vec<OxmField> {
    use OxmField as F;
    use wildcards as W;
    let has = |bit: u32| m.wildcards & bit == 0;
    let mut f = Vec::new();
    if has(W::IN_PORT) {
        f.push(F::InPort(port_from_v10(m.in_port)));
    }
    if has(W::DL_SRC) {
        f.push(F::EthSrc(Masked::exact(MacAddr(m.dl_src))));
    }
    if has(W::DL_DST) {
        f.push(F::EthDst(Masked::exact(MacAddr(m.dl_dst))));
    }
    let pcp = has(W::DL_VLAN_PCP).then_some(m.dl_vlan_pcp & 7);
    match (has(W::DL_VLAN), m.dl_vlan) {
        // No tag: a priority cannot match.
        (true, VLAN_NONE) => f.push(F::VlanVid(Masked::exact(OFPVID_NONE))),
        (true, vid) => {
            f.push(F::VlanVid(Masked::exact(OFPVID_PRESENT | (vid & 0x0fff))));
            f.extend(pcp.map(F::VlanPcp));
        }
        // Any VLAN id with this priority: a tag must be there.
        (false, _) => {
            if let Some(p) = pcp {
                f.push(F::VlanVid(Masked::new(OFPVID_PRESENT, OFPVID_PRESENT)));
                f.push(F::VlanPcp(p));
            }
        }
    }
    if !has(W::DL_TYPE) {
        return f;
    }
    f.push(F::EthType(m.dl_type));
    let src_bits = (m.wildcards & W::NW_SRC_MASK) >> W::NW_SRC_SHIFT;
    let dst_bits = (m.wildcards & W::NW_DST_MASK) >> W::NW_DST_SHIFT;
    let proto = has(W::NW_PROTO).then_some(m.nw_proto);
    match m.dl_type {
        ETH_IP => {
            if has(W::NW_TOS) {
                f.push(F::IpDscp(m.nw_tos >> 2));
            }
            f.extend(proto.map(F::IpProto));
            f.extend(ip_field(m.nw_src, src_bits).map(F::Ipv4Src));
            f.extend(ip_field(m.nw_dst, dst_bits).map(F::Ipv4Dst));
            let (src, dst) = (
                has(W::TP_SRC).then_some(m.tp_src),
                has(W::TP_DST).then_some(m.tp_dst),
            );
            let l4: Option<(FieldOf, FieldOf)> = match proto {
                Some(6) => Some((F::TcpSrc, F::TcpDst)),
                Some(17) => Some((F::UdpSrc, F::UdpDst)),
                Some(132) => Some((F::SctpSrc, F::SctpDst)),
                Some(1) => Some((|t| F::Icmpv4Type(t as u8), |c| F::Icmpv4Code(c as u8))),
                _ => None,
            };
            if let Some((s, d)) = l4 {
                f.extend(src.map(s));
                f.extend(dst.map(d));
            }
        }
        ETH_ARP => {
            f.extend(proto.map(|p| F::ArpOp(u16::from(p))));
            f.extend(ip_field(m.nw_src, src_bits).map(F::ArpSpa));
            f.extend(ip_field(m.nw_dst, dst_bits).map(F::ArpTpa));
        }
        _ => {}
    }
    f
}

/// An IPv4 match field as (value, wildcarded low bits), if 1.0 can say it.
fn ip_parts(m: &Masked<Ipv4Addr>) -> Option<(u32, u32)> {
    let mask = m.mask.map_or(u32::MAX, u32::from);
    let n = prefix_bits(mask)?;
    Some((u32::from(m.value) & mask, n))
}

/// Turns a model match into 1.0's, leaving out what 1.0 cannot say; the
/// `bool` says whether everything was said. Fails only for an in_port that
/// does not fit 16 bits.
fn raw_of(m: &Match) -> Result<(Raw10, bool), EncodeError> {
    use OxmField as F;
    use wildcards as W;
    let mut r = Raw10 {
        // Unmatched addresses say 32 wildcarded bits, as Open vSwitch writes.
        wildcards: W::ALL & !W::NW_SRC_MASK & !W::NW_DST_MASK
            | (32 << W::NW_SRC_SHIFT)
            | (32 << W::NW_DST_SHIFT),
        in_port: 0,
        dl_src: [0; 6],
        dl_dst: [0; 6],
        dl_vlan: 0,
        dl_vlan_pcp: 0,
        dl_type: 0,
        nw_tos: 0,
        nw_proto: 0,
        nw_src: 0,
        nw_dst: 0,
        tp_src: 0,
        tp_dst: 0,
    };
    let mut exact = true;
    let set_ip = |r: &mut Raw10, shift: u32, mask: u32, v: &Masked<Ipv4Addr>| match ip_parts(v) {
        Some((value, n)) => {
            r.wildcards = (r.wildcards & !mask) | (n << shift);
            Some(value)
        }
        None => None,
    };
    for field in m.fields() {
        let said = match field {
            F::InPort(p) => {
                r.in_port = port_to_v10(*p)?;
                r.wildcards &= !W::IN_PORT;
                true
            }
            F::EthSrc(Masked { value, mask: None }) => {
                r.dl_src = value.0;
                r.wildcards &= !W::DL_SRC;
                true
            }
            F::EthDst(Masked { value, mask: None }) => {
                r.dl_dst = value.0;
                r.wildcards &= !W::DL_DST;
                true
            }
            F::VlanVid(Masked { value, mask: None }) => {
                r.dl_vlan = if *value == OFPVID_NONE {
                    VLAN_NONE
                } else {
                    value & 0x0fff
                };
                r.wildcards &= !W::DL_VLAN;
                true
            }
            // "Some tag": 1.0 says it only through a VLAN priority.
            F::VlanVid(Masked {
                value: OFPVID_PRESENT,
                mask: Some(OFPVID_PRESENT),
            }) => m.get(crate::openflow::oxm::OxmFieldType::VlanPcp).is_some(),
            F::VlanPcp(p) => {
                r.dl_vlan_pcp = *p;
                r.wildcards &= !W::DL_VLAN_PCP;
                true
            }
            F::EthType(t) => {
                r.dl_type = *t;
                r.wildcards &= !W::DL_TYPE;
                true
            }
            F::IpDscp(d) => {
                r.nw_tos = d << 2;
                r.wildcards &= !W::NW_TOS;
                true
            }
            F::IpProto(p) => {
                r.nw_proto = *p;
                r.wildcards &= !W::NW_PROTO;
                true
            }
            F::ArpOp(op) => match u8::try_from(*op) {
                Ok(p) => {
                    r.nw_proto = p;
                    r.wildcards &= !W::NW_PROTO;
                    true
                }
                Err(_) => false,
            },
            F::Ipv4Src(v) | F::ArpSpa(v) => {
                match set_ip(&mut r, W::NW_SRC_SHIFT, W::NW_SRC_MASK, v) {
                    Some(value) => {
                        r.nw_src = value;
                        true
                    }
                    None => false,
                }
            }
            F::Ipv4Dst(v) | F::ArpTpa(v) => {
                match set_ip(&mut r, W::NW_DST_SHIFT, W::NW_DST_MASK, v) {
                    Some(value) => {
                        r.nw_dst = value;
                        true
                    }
                    None => false,
                }
            }
            F::TcpSrc(p) | F::UdpSrc(p) | F::SctpSrc(p) => {
                r.tp_src = *p;
                r.wildcards &= !W::TP_SRC;
                true
            }
            F::TcpDst(p) | F::UdpDst(p) | F::SctpDst(p) => {
                r.tp_dst = *p;
                r.wildcards &= !W::TP_DST;
                true
            }
            F::Icmpv4Type(t) => {
                r.tp_src = u16::from(*t);
                r.wildcards &= !W::TP_SRC;
                true
            }
            F::Icmpv4Code(c) => {
                r.tp_dst = u16::from(*c);
                r.wildcards &= !W::TP_DST;
                true
            }
            _ => false,
        };
        exact &= said;
    }
    // Registers need NXM, which is not 1.0's `ofp_match`.
    exact &= m.registers().is_empty();
    Ok((r, exact))
}

/// Whether 1.0's `ofp_match` can say all of `m` (else encoding widens it).
pub fn is_exact_in_v10(m: &Match) -> bool {
    matches!(raw_of(m), Ok((_, true)))
}

/// Writes the 40-byte `ofp_match` for a model match (see the module doc for
/// what is left out).
pub(crate) fn encode_match(m: &Match, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    let (r, _) = raw_of(m)?;
    w.u32(r.wildcards);
    w.u16(r.in_port);
    w.bytes(&r.dl_src);
    w.bytes(&r.dl_dst);
    w.u16(r.dl_vlan);
    w.u8(r.dl_vlan_pcp);
    w.zeros(1);
    w.u16(r.dl_type);
    w.u8(r.nw_tos);
    w.u8(r.nw_proto);
    w.zeros(2);
    w.u32(r.nw_src);
    w.u32(r.nw_dst);
    w.u16(r.tp_src);
    w.u16(r.tp_dst);
    Ok(())
}
