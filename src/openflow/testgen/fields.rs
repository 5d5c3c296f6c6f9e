//! Strategies for match fields, matches, actions and instructions.

#![allow(clippy::type_complexity)]

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::openflow::action::Action;
use crate::openflow::flow_match::Match;
use crate::openflow::instruction::Instruction;
use crate::openflow::oxm::{Masked, OxmField};
use crate::openflow::port::PortNo;
use crate::wire::MacAddr;

pub(super) fn port_no() -> impl Strategy<Value = PortNo> {
    prop_oneof![
        (1u32..64).prop_map(PortNo),
        Just(PortNo::CONTROLLER),
        Just(PortNo::ANY),
        Just(PortNo::LOCAL),
        any::<u32>().prop_map(PortNo),
    ]
}

pub(super) fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn masked_bits(bits: u32) -> impl Strategy<Value = Masked<u64>> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    (any::<u64>(), option::of(any::<u64>())).prop_map(move |(v, m)| {
        let m = m.map(|m| m & max);
        Masked {
            value: v & max & m.unwrap_or(max),
            mask: m,
        }
    })
}

fn masked_u16(bits: u32) -> impl Strategy<Value = Masked<u16>> {
    masked_bits(bits).prop_map(|m| Masked {
        value: m.value as u16,
        mask: m.mask.map(|x| x as u16),
    })
}

fn masked_u32(bits: u32) -> impl Strategy<Value = Masked<u32>> {
    masked_bits(bits).prop_map(|m| Masked {
        value: m.value as u32,
        mask: m.mask.map(|x| x as u32),
    })
}

fn masked_mac() -> impl Strategy<Value = Masked<MacAddr>> {
    masked_bits(48).prop_map(|m| Masked {
        value: MacAddr::from_u64(m.value),
        mask: m.mask.map(MacAddr::from_u64),
    })
}

fn masked_v4() -> impl Strategy<Value = Masked<Ipv4Addr>> {
    masked_u32(32).prop_map(|m| Masked {
        value: Ipv4Addr::from(m.value),
        mask: m.mask.map(Ipv4Addr::from),
    })
}

fn masked_v6() -> impl Strategy<Value = Masked<Ipv6Addr>> {
    (masked_bits(64), masked_bits(64)).prop_map(|(hi, lo)| {
        let join = |a: u64, b: u64| Ipv6Addr::from((u128::from(a) << 64) | u128::from(b));
        Masked {
            value: join(hi.value, lo.value),
            mask: match (hi.mask, lo.mask) {
                (None, None) => None,
                (h, l) => Some(join(h.unwrap_or(u64::MAX), l.unwrap_or(u64::MAX))),
            },
        }
    })
}

/// L3/L4 fields consistent with an ethertype and IP protocol.
fn upper_fields() -> impl Strategy<Value = Vec<OxmField>> {
    use OxmField as F;
    let l4 = |proto: u8| -> BoxedStrategy<Vec<OxmField>> {
        match proto {
            6 => (option::of(any::<u16>()), option::of(any::<u16>()))
                .prop_map(|(s, d)| {
                    [s.map(F::TcpSrc), d.map(F::TcpDst)]
                        .into_iter()
                        .flatten()
                        .collect()
                })
                .boxed(),
            17 => (option::of(any::<u16>()), option::of(any::<u16>()))
                .prop_map(|(s, d)| {
                    [s.map(F::UdpSrc), d.map(F::UdpDst)]
                        .into_iter()
                        .flatten()
                        .collect()
                })
                .boxed(),
            132 => (option::of(any::<u16>()), option::of(any::<u16>()))
                .prop_map(|(s, d)| {
                    [s.map(F::SctpSrc), d.map(F::SctpDst)]
                        .into_iter()
                        .flatten()
                        .collect()
                })
                .boxed(),
            _ => Just(Vec::new()).boxed(),
        }
    };
    let ip_common = (option::of(0u8..64), option::of(0u8..4)).prop_map(|(d, e)| {
        [d.map(F::IpDscp), e.map(F::IpEcn)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    });
    let ipv4 = (
        ip_common.clone(),
        option::of(masked_v4()),
        option::of(masked_v4()),
        prop_oneof![
            Just(None),
            Just(Some(6u8)),
            Just(Some(17)),
            Just(Some(132)),
            Just(Some(1)),
            any::<u8>().prop_map(Some)
        ],
        option::of(any::<u8>()),
        option::of(any::<u8>()),
    )
        .prop_flat_map(move |(common, s, d, proto, it, ic)| {
            let mut f = vec![F::EthType(0x0800)];
            f.extend(common);
            f.extend(s.map(F::Ipv4Src));
            f.extend(d.map(F::Ipv4Dst));
            if let Some(p) = proto {
                f.push(F::IpProto(p));
                if p == 1 {
                    f.extend(it.map(F::Icmpv4Type));
                    f.extend(ic.map(F::Icmpv4Code));
                }
            }
            l4(proto.unwrap_or(0)).prop_map(move |mut l| {
                let mut f = f.clone();
                f.append(&mut l);
                f
            })
        });
    let nd = prop_oneof![Just(135u8), Just(136u8), Just(1u8)];
    let ipv6 = (
        ip_common,
        (
            option::of(masked_v6()),
            option::of(masked_v6()),
            option::of(masked_u32(20)),
            option::of(masked_u16(9)),
        ),
        prop_oneof![Just(None), Just(Some(6u8)), Just(Some(58)), Just(Some(17))],
        nd,
        (
            option::of(any::<u8>()),
            option::of(any::<[u8; 16]>()),
            option::of(mac()),
        ),
    )
        .prop_flat_map(
            move |(common, (s, d, fl, ex), proto, icmp_type, (code, target, ll))| {
                let mut f = vec![F::EthType(0x86dd)];
                f.extend(common);
                f.extend(s.map(F::Ipv6Src));
                f.extend(d.map(F::Ipv6Dst));
                f.extend(fl.map(F::Ipv6Flabel));
                f.extend(ex.map(F::Ipv6Exthdr));
                if let Some(p) = proto {
                    f.push(F::IpProto(p));
                    if p == 58 {
                        f.push(F::Icmpv6Type(icmp_type));
                        f.extend(code.map(F::Icmpv6Code));
                        if icmp_type != 1 {
                            f.extend(target.map(|t| F::Ipv6NdTarget(Ipv6Addr::from(t))));
                        }
                        match (icmp_type, ll) {
                            (135, Some(m)) => f.push(F::Ipv6NdSll(m)),
                            (136, Some(m)) => f.push(F::Ipv6NdTll(m)),
                            _ => {}
                        }
                    }
                }
                l4(proto.unwrap_or(0)).prop_map(move |mut l| {
                    let mut f = f.clone();
                    f.append(&mut l);
                    f
                })
            },
        );
    let arp = (
        option::of(any::<u16>()),
        option::of(masked_v4()),
        option::of(masked_v4()),
        option::of(masked_mac()),
        option::of(masked_mac()),
    )
        .prop_map(|(op, spa, tpa, sha, tha)| {
            let mut f = vec![F::EthType(0x0806)];
            f.extend(op.map(F::ArpOp));
            f.extend(spa.map(F::ArpSpa));
            f.extend(tpa.map(F::ArpTpa));
            f.extend(sha.map(F::ArpSha));
            f.extend(tha.map(F::ArpTha));
            f
        });
    let mpls = (
        prop_oneof![Just(0x8847u16), Just(0x8848)],
        option::of(0u32..0x10_0000),
        option::of(0u8..8),
        option::of(0u8..2),
    )
        .prop_map(|(et, l, tc, bos)| {
            let mut f = vec![F::EthType(et)];
            f.extend(l.map(F::MplsLabel));
            f.extend(tc.map(F::MplsTc));
            f.extend(bos.map(F::MplsBos));
            f
        });
    let pbb = option::of(masked_u32(24)).prop_map(|i| {
        let mut f = vec![F::EthType(0x88e7)];
        f.extend(i.map(F::PbbIsid));
        f
    });
    prop_oneof![
        Just(Vec::new()),
        any::<u16>().prop_map(|t| vec![F::EthType(t)]),
        ipv4,
        ipv6,
        arp,
        mpls,
        pbb,
    ]
}

pub(crate) fn match_() -> impl Strategy<Value = Match> {
    use OxmField as F;
    (
        (option::of(port_no()), any::<bool>(), any::<u32>()),
        (
            option::of(masked_bits(64)),
            option::of(masked_mac()),
            option::of(masked_mac()),
        ),
        (
            option::of(masked_u16(13)),
            option::of(0u8..8),
            option::of(masked_bits(64)),
        ),
        upper_fields(),
        any::<u64>(),
    )
        .prop_map(
            |((inp, phy, phy_v), (md, dst, src), (vid, pcp, tun), upper, seed)| {
                let mut f = Vec::new();
                if let Some(p) = inp {
                    f.push(F::InPort(p));
                    if phy {
                        f.push(F::InPhyPort(PortNo(phy_v)));
                    }
                }
                f.extend(md.map(F::Metadata));
                f.extend(dst.map(F::EthDst));
                f.extend(src.map(F::EthSrc));
                if let Some(v) = vid {
                    f.push(F::VlanVid(v));
                    if v.value & v.mask.unwrap_or(0xffff) & 0x1000 != 0 {
                        f.extend(pcp.map(F::VlanPcp));
                    }
                }
                f.extend(tun.map(F::TunnelId));
                f.extend(upper);
                // Any order: prerequisites need not come first.
                let n = f.len();
                if n > 1 {
                    f.rotate_left((seed as usize) % n);
                }
                Match::from_fields(f).expect("generated match is valid")
            },
        )
}

/// A field that a SET_FIELD action may carry: unmasked, value in range.
fn set_field() -> impl Strategy<Value = OxmField> {
    use OxmField as F;
    prop_oneof![
        mac().prop_map(|m| F::EthDst(Masked::exact(m))),
        mac().prop_map(|m| F::EthSrc(Masked::exact(m))),
        (0u16..0x2000).prop_map(|v| F::VlanVid(Masked::exact(v))),
        (0u8..8).prop_map(F::VlanPcp),
        (0u8..64).prop_map(F::IpDscp),
        any::<[u8; 4]>().prop_map(|a| F::Ipv4Dst(Masked::exact(Ipv4Addr::from(a)))),
        any::<[u8; 16]>().prop_map(|a| F::Ipv6Src(Masked::exact(Ipv6Addr::from(a)))),
        any::<u16>().prop_map(F::TcpDst),
        (0u32..0x10_0000).prop_map(F::MplsLabel),
        any::<u64>().prop_map(|t| F::TunnelId(Masked::exact(t))),
        any::<u64>().prop_map(|t| F::Metadata(Masked::exact(t))),
    ]
}

pub(crate) fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (port_no(), any::<u16>()).prop_map(|(port, max_len)| Action::Output { port, max_len }),
        Just(Action::CopyTtlOut),
        Just(Action::CopyTtlIn),
        any::<u8>().prop_map(Action::SetMplsTtl),
        Just(Action::DecMplsTtl),
        prop_oneof![Just(0x8100u16), Just(0x88a8)].prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        prop_oneof![Just(0x8847u16), Just(0x8848)].prop_map(Action::PushMpls),
        any::<u16>().prop_map(Action::PopMpls),
        any::<u32>().prop_map(Action::SetQueue),
        any::<u32>().prop_map(Action::Group),
        any::<u8>().prop_map(Action::SetNwTtl),
        Just(Action::DecNwTtl),
        set_field().prop_map(Action::SetField),
        Just(Action::PushPbb(0x88e7)),
        Just(Action::PopPbb),
        super::nicira::nx_action().prop_map(Action::Nx),
    ]
}

pub(super) fn actions() -> impl Strategy<Value = Vec<Action>> {
    vec(action(), 0..5)
}

pub(crate) fn instructions() -> impl Strategy<Value = Vec<Instruction>> {
    (
        option::of(any::<u32>().prop_map(Instruction::Meter)),
        option::of(actions().prop_map(Instruction::ApplyActions)),
        option::of(Just(Instruction::ClearActions)),
        option::of(actions().prop_map(Instruction::WriteActions)),
        option::of(
            (any::<u64>(), any::<u64>())
                .prop_map(|(metadata, mask)| Instruction::WriteMetadata { metadata, mask }),
        ),
        option::of(any::<u8>().prop_map(Instruction::GotoTable)),
        any::<usize>(),
    )
        .prop_map(|(a, b, c, d, e, f, seed)| {
            let mut v: Vec<Instruction> = [a, b, c, d, e, f].into_iter().flatten().collect();
            if v.len() > 1 {
                let n = v.len();
                v.rotate_left(seed % n);
            }
            v
        })
}
