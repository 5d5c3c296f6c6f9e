//! The match of a flow a `learn` builds (a child of `learn`): the fields
//! it may hold, by NXM/OXM header, the bits the specs set in each, and
//! the OpenFlow match they make. Fields up to 128 bits wide (IPv6
//! addresses); a field no match here can hold, or a match without its
//! prerequisites, is refused.

use super::*;

/// The match fields a learned flow may have, by NXM/OXM header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    InPort16,
    InPort,
    Metadata,
    EthDst,
    EthSrc,
    EthType,
    VlanTci,
    IpProto,
    Ipv4Src,
    Ipv4Dst,
    TcpSrc,
    TcpDst,
    UdpSrc,
    UdpDst,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    NdTarget,
    NdSll,
    NdTll,
    Icmp4Type,
    Icmp4Code,
    Icmp6Type,
    Icmp6Code,
    SctpSrc,
    SctpDst,
    MplsLabel,
    MplsTc,
    MplsBos,
    TunId,
}

impl Kind {
    pub(super) fn of(f: FieldRef) -> Option<Kind> {
        use Kind::*;
        Some(match f.0 {
            0x0000_0002 => InPort16,
            0x8000_0004 => InPort,
            0x8000_0408 => Metadata,
            0x0000_0206 | 0x8000_0606 => EthDst,
            0x0000_0406 | 0x8000_0806 => EthSrc,
            0x0000_0602 | 0x8000_0a02 => EthType,
            0x0000_0802 => VlanTci,
            0x0000_0c01 | 0x8000_1401 => IpProto,
            0x0000_0e04 | 0x8000_1604 => Ipv4Src,
            0x0000_1004 | 0x8000_1804 => Ipv4Dst,
            0x0000_1202 | 0x8000_1a02 => TcpSrc,
            0x0000_1402 | 0x8000_1c02 => TcpDst,
            0x0000_1602 | 0x8000_1e02 => UdpSrc,
            0x0000_1802 | 0x8000_2002 => UdpDst,
            0x0000_1e02 | 0x8000_2a02 => ArpOp,
            0x0000_2004 | 0x8000_2c04 => ArpSpa,
            0x0000_2204 | 0x8000_2e04 => ArpTpa,
            0x0001_2206 | 0x8000_3006 => ArpSha,
            0x0001_2406 | 0x8000_3206 => ArpTha,
            0x0001_2610 | 0x8000_3410 => Ipv6Src,
            0x0001_2810 | 0x8000_3610 => Ipv6Dst,
            0x0001_3604 | 0x8000_3804 => Ipv6Label,
            0x0001_2e10 | 0x8000_3e10 => NdTarget,
            0x0001_3006 | 0x8000_4006 => NdSll,
            0x0001_3206 | 0x8000_4206 => NdTll,
            0x0000_1a01 | 0x8000_2601 => Icmp4Type,
            0x0000_1c01 | 0x8000_2801 => Icmp4Code,
            0x0001_2a01 | 0x8000_3a01 => Icmp6Type,
            0x0001_2c01 | 0x8000_3c01 => Icmp6Code,
            0x8000_2202 => SctpSrc,
            0x8000_2402 => SctpDst,
            0x8000_4404 => MplsLabel,
            0x8000_4601 => MplsTc,
            0x8000_4801 => MplsBos,
            0x0001_2008 | 0x8000_4c08 => TunId,
            _ => return None,
        })
    }

    /// The OXM field whose prerequisites reading or matching this has.
    pub(super) fn oxm(self) -> Option<OxmFieldType> {
        use Kind::*;
        Some(match self {
            IpProto => OxmFieldType::IpProto,
            Ipv4Src => OxmFieldType::Ipv4Src,
            Ipv4Dst => OxmFieldType::Ipv4Dst,
            TcpSrc => OxmFieldType::TcpSrc,
            TcpDst => OxmFieldType::TcpDst,
            UdpSrc => OxmFieldType::UdpSrc,
            UdpDst => OxmFieldType::UdpDst,
            ArpOp => OxmFieldType::ArpOp,
            ArpSpa => OxmFieldType::ArpSpa,
            ArpTpa => OxmFieldType::ArpTpa,
            ArpSha => OxmFieldType::ArpSha,
            ArpTha => OxmFieldType::ArpTha,
            Ipv6Src => OxmFieldType::Ipv6Src,
            Ipv6Dst => OxmFieldType::Ipv6Dst,
            Ipv6Label => OxmFieldType::Ipv6Flabel,
            NdTarget => OxmFieldType::Ipv6NdTarget,
            NdSll => OxmFieldType::Ipv6NdSll,
            NdTll => OxmFieldType::Ipv6NdTll,
            Icmp4Type => OxmFieldType::Icmpv4Type,
            Icmp4Code => OxmFieldType::Icmpv4Code,
            Icmp6Type => OxmFieldType::Icmpv6Type,
            Icmp6Code => OxmFieldType::Icmpv6Code,
            SctpSrc => OxmFieldType::SctpSrc,
            SctpDst => OxmFieldType::SctpDst,
            MplsLabel => OxmFieldType::MplsLabel,
            MplsTc => OxmFieldType::MplsTc,
            MplsBos => OxmFieldType::MplsBos,
            _ => return None,
        })
    }
}

/// The bits a learn sets in one field of the new flow's match.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acc {
    field: FieldRef,
    value: u128,
    mask: u128,
}

/// Why a learned match cannot be built.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MatchError {
    /// A field (or part of one) no match here can hold.
    Unsupported,
    /// The fields' prerequisites are not in the match.
    Prereq,
}

fn ones(n: u16) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

pub(super) fn ones128(n: u16) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

pub(super) fn shl(v: u128, s: u16) -> u128 {
    v.checked_shl(u32::from(s)).unwrap_or(0)
}

fn mac(v: u64) -> MacAddr {
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A 16-bit (OpenFlow 1.0) port number as a 32-bit one.
pub(super) fn port16(v: u64) -> PortNo {
    let p = v as u16;
    PortNo(if p >= 0xff00 {
        0xffff_0000 | u32::from(p)
    } else {
        u32::from(p)
    })
}

/// Adds `n` bits of `v` at `ofs` of `field` to the accumulated match.
pub(super) fn accumulate(accs: &mut Vec<Acc>, field: FieldRef, ofs: u16, n: u16, v: u128) {
    let m = shl(ones128(n), ofs);
    let i = match accs.iter().position(|a| a.field == field) {
        Some(i) => i,
        None => {
            accs.push(Acc {
                field,
                value: 0,
                mask: 0,
            });
            accs.len() - 1
        }
    };
    let a = &mut accs[i];
    a.value = (a.value & !m) | (shl(v, ofs) & m);
    a.mask |= m;
}

/// The match of a learned flow.
pub(super) fn learned_match(accs: &[Acc]) -> Result<Match, MatchError> {
    use OxmField as F;
    let mut fields = Vec::new();
    let mut regs = Vec::new();
    for a in accs {
        let (v128, m128) = (a.value & a.mask, a.mask);
        // Every field but the 128-bit ones fits in 64 bits (the codec
        // checked offsets against the field's width).
        let (v, m) = (v128 as u64, m128 as u64);
        if let Some(reg) = a.field.register() {
            if reg == Register::ConjId {
                return Err(MatchError::Unsupported);
            }
            let all = ones(reg.bits());
            regs.push(NxMatchField {
                reg,
                value: v,
                mask: (m != all).then_some(m),
            });
            continue;
        }
        let kind = Kind::of(a.field).ok_or(MatchError::Unsupported)?;
        let full = |bits: u16| {
            if m == ones(bits) {
                Ok(())
            } else {
                Err(MatchError::Unsupported)
            }
        };
        let masked = |bits: u16| (m != ones(bits)).then_some(m);
        let ip = |x: u64| std::net::Ipv4Addr::from(x as u32);
        let macs = || Masked {
            value: mac(v),
            mask: masked(48).map(mac),
        };
        let ips = || Masked {
            value: ip(v),
            mask: masked(32).map(ip),
        };
        let ip6 = |x: u128| std::net::Ipv6Addr::from(x);
        let ip6s = || Masked {
            value: ip6(v128),
            mask: (m128 != u128::MAX).then_some(ip6(m128)),
        };
        use Kind::*;
        let f = match kind {
            InPort16 => {
                full(16)?;
                F::InPort(port16(v))
            }
            InPort => {
                full(32)?;
                F::InPort(PortNo(v as u32))
            }
            Metadata => F::Metadata(Masked {
                value: v,
                mask: masked(64),
            }),
            EthDst => F::EthDst(macs()),
            EthSrc => F::EthSrc(macs()),
            EthType => {
                full(16)?;
                F::EthType(v as u16)
            }
            VlanTci => {
                // The VID and "present" bits are OXM's VLAN_VID; the PCP,
                // whole, VLAN_PCP (only meaningful on a tagged packet).
                let pcp_mask = m & 0xe000;
                if pcp_mask != 0 && pcp_mask != 0xe000 {
                    return Err(MatchError::Unsupported);
                }
                let vid_mask = (m & 0x1fff) as u16;
                if vid_mask != 0 {
                    fields.push(F::VlanVid(Masked {
                        value: (v & 0x1fff) as u16,
                        mask: (vid_mask != 0x1fff).then_some(vid_mask),
                    }));
                }
                let tagged = m & 0x1000 != 0 && v & 0x1000 != 0;
                if pcp_mask == 0 || (!tagged && v & 0xe000 == 0) {
                    continue;
                }
                F::VlanPcp((v >> 13) as u8)
            }
            IpProto => {
                full(8)?;
                F::IpProto(v as u8)
            }
            Ipv4Src => F::Ipv4Src(ips()),
            Ipv4Dst => F::Ipv4Dst(ips()),
            TcpSrc | TcpDst | UdpSrc | UdpDst | ArpOp => {
                full(16)?;
                let p = v as u16;
                match kind {
                    TcpSrc => F::TcpSrc(p),
                    TcpDst => F::TcpDst(p),
                    UdpSrc => F::UdpSrc(p),
                    UdpDst => F::UdpDst(p),
                    _ => F::ArpOp(p),
                }
            }
            ArpSpa => F::ArpSpa(ips()),
            ArpTpa => F::ArpTpa(ips()),
            ArpSha => F::ArpSha(macs()),
            ArpTha => F::ArpTha(macs()),
            Ipv6Src => F::Ipv6Src(ip6s()),
            Ipv6Dst => F::Ipv6Dst(ip6s()),
            Ipv6Label => F::Ipv6Flabel(Masked {
                value: v as u32,
                mask: masked(20).map(|x| x as u32),
            }),
            NdTarget => {
                if m128 != u128::MAX {
                    return Err(MatchError::Unsupported);
                }
                F::Ipv6NdTarget(ip6(v128))
            }
            NdSll | NdTll => {
                full(48)?;
                if kind == NdSll {
                    F::Ipv6NdSll(mac(v))
                } else {
                    F::Ipv6NdTll(mac(v))
                }
            }
            Icmp4Type | Icmp4Code | Icmp6Type | Icmp6Code | MplsTc | MplsBos => {
                full(match kind {
                    MplsTc => 3,
                    MplsBos => 1,
                    _ => 8,
                })?;
                let b = v as u8;
                match kind {
                    Icmp4Type => F::Icmpv4Type(b),
                    Icmp4Code => F::Icmpv4Code(b),
                    Icmp6Type => F::Icmpv6Type(b),
                    Icmp6Code => F::Icmpv6Code(b),
                    MplsTc => F::MplsTc(b),
                    _ => F::MplsBos(b),
                }
            }
            SctpSrc | SctpDst => {
                full(16)?;
                if kind == SctpSrc {
                    F::SctpSrc(v as u16)
                } else {
                    F::SctpDst(v as u16)
                }
            }
            MplsLabel => {
                full(20)?;
                F::MplsLabel(v as u32)
            }
            TunId => F::TunnelId(Masked {
                value: v,
                mask: masked(64),
            }),
        };
        fields.push(f);
    }
    let m = Match::from_fields(fields).map_err(|e| match e {
        BadMatchCode::BadPrereq => MatchError::Prereq,
        _ => MatchError::Unsupported,
    })?;
    m.with_registers(regs).map_err(|_| MatchError::Unsupported)
}
