//! The pipeline fields of packet-ins and packet-outs: what a packet-in's
//! match says about the packet beside its port (the tunnel metadata, the
//! OpenFlow metadata, the registers, as Open vSwitch fills it), and the
//! tunnel metadata an OpenFlow 1.5 packet-out's match gives its packet.

use std::net::Ipv4Addr;

use crate::module::TunMeta;
use crate::module::flow::{ControllerMeta, PacketOutStart};
use crate::openflow::nicira::{NxMatchField, Register};
use crate::openflow::oxm::{Masked, OxmField};
use crate::openflow::{Match, PortNo};
use crate::port::tunnel::geneve_opts;

/// A packet-in's match, as Open vSwitch fills it: the input port, and the
/// pipeline fields that are not zero when the packet went to the
/// controller (the tunnel's `tun_id` as `OXM_OF_TUNNEL_ID`, its `tun_src`
/// and `tun_dst` as `NXM_NX_TUN_IPV4_SRC/DST`, `tun_ipv6_src` and
/// `tun_ipv6_dst` as `NXM_NX_TUN_IPV6_SRC/DST`, the metadata, the registers
/// as `NXM_NX_REGn`). A 1.0 `OFPT_PACKET_IN` has no match; Nicira's
/// packet-ins carry it as theirs.
pub(super) fn packet_in_match(in_port: u32, meta: &ControllerMeta, tun: &TunMeta) -> Match {
    let mut fields = vec![OxmField::InPort(PortNo(in_port))];
    if tun.id != 0 {
        fields.push(OxmField::TunnelId(Masked::exact(tun.id)));
    }
    if meta.metadata != 0 {
        fields.push(OxmField::Metadata(Masked::exact(meta.metadata)));
    }
    let addr = |reg, a: Ipv4Addr| {
        (!a.is_unspecified()).then(|| NxMatchField {
            reg,
            value: u64::from(u32::from(a)),
            mask: None,
        })
    };
    let addr6 = |dst, a: std::net::Ipv6Addr| {
        (!a.is_unspecified()).then(|| crate::openflow::nx_tun6::halves(dst, a, None))
    };
    let tunnel = [
        addr(Register::TunSrc, tun.src),
        addr(Register::TunDst, tun.dst),
    ];
    let tunnel6 = [addr6(false, tun.ipv6_src), addr6(true, tun.ipv6_dst)];
    let regs = (0u8..)
        .zip(meta.regs)
        .filter(|&(_, v)| v != 0)
        .map(|(i, v)| NxMatchField {
            reg: Register::Reg(i),
            value: u64::from(v),
            mask: None,
        });
    let regs = tunnel
        .into_iter()
        .flatten()
        .chain(tunnel6.into_iter().flatten().flatten())
        .chain(tun_metadata_fields(tun))
        .chain(regs)
        .collect();
    // Valid by construction: one in_port, exact values, each register once.
    Match::from_fields(fields)
        .and_then(|m| m.with_registers(regs))
        .unwrap_or_default()
}

/// The `tun_metadataN` fields a packet has, each with the length its TLV
/// table maps (length-0 options, which have no value to say, are left
/// out).
fn tun_metadata_fields(tun: &TunMeta) -> Vec<NxMatchField> {
    if tun.md_present == 0 {
        return Vec::new();
    }
    let Some(t) = geneve_opts::table(tun.tlv) else {
        return Vec::new();
    };
    (0..64u8)
        .filter(|i| tun.md_present & (1 << i) != 0)
        .filter_map(|idx| {
            let e = t.get(idx)?;
            let (shift, width) = e.bits()?;
            let ones = if width >= 64 {
                u64::MAX
            } else {
                (1 << width) - 1
            };
            Some(NxMatchField {
                reg: Register::TunMetadata { idx, len: e.len },
                value: (tun.md >> shift) & ones,
                mask: None,
            })
        })
        .collect()
}

/// What a packet-out's match gives its packet (OpenFlow 1.5's pipeline
/// fields: tunnel metadata, `metadata`, registers; the codec takes no
/// others but `in_port`). A masked field gives the bits under its mask,
/// the others 0.
pub(super) fn packet_out_start(m: &Match) -> PacketOutStart {
    let mut s = PacketOutStart {
        tun: packet_out_tunnel(m),
        ..PacketOutStart::default()
    };
    for f in m.fields() {
        if let OxmField::Metadata(x) = f {
            s.metadata = x.value & x.mask.unwrap_or(u64::MAX);
        }
    }
    for r in m.registers() {
        if matches!(r.reg, Register::Reg(_) | Register::XReg(_)) {
            let v = r.reg.get(&s.regs) & !r.mask_or_all();
            r.reg.set(&mut s.regs, v | (r.value & r.mask_or_all()));
        }
    }
    s
}

/// The tunnel metadata a packet-out's match gives its packet.
pub(super) fn packet_out_tunnel(m: &Match) -> TunMeta {
    let mut t = TunMeta::NONE;
    for f in m.fields() {
        if let OxmField::TunnelId(x) = f {
            t.id = x.value & x.mask.unwrap_or(u64::MAX);
        }
    }
    for r in m.registers() {
        // 32-bit fields: the codec checked the value's width.
        let a = Ipv4Addr::from((r.value & r.mask_or_all()) as u32);
        match r.reg {
            Register::TunSrc => t.src = a,
            Register::TunDst => t.dst = a,
            _ => {}
        }
    }
    for (dst, to) in [(false, &mut t.ipv6_src), (true, &mut t.ipv6_dst)] {
        if let Some((a, m)) = crate::openflow::nx_tun6::joined(m.registers(), dst) {
            *to = std::net::Ipv6Addr::from_bits(a.to_bits() & m.map_or(u128::MAX, |m| m.to_bits()));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_in_matches_carry_nonzero_pipeline_fields() {
        let mut meta = ControllerMeta::default();
        let m = packet_in_match(3, &meta, &TunMeta::NONE);
        assert_eq!(m.fields(), [OxmField::InPort(PortNo(3))]);
        assert!(m.registers().is_empty());
        meta.metadata = 0x42;
        meta.regs[2] = 5;
        meta.regs[15] = u32::MAX;
        let m = packet_in_match(3, &meta, &TunMeta::NONE);
        assert_eq!(
            m.fields(),
            [
                OxmField::InPort(PortNo(3)),
                OxmField::Metadata(Masked::exact(0x42))
            ]
        );
        let reg = |i, v| NxMatchField {
            reg: Register::Reg(i),
            value: v,
            mask: None,
        };
        assert_eq!(m.registers(), [reg(2, 5), reg(15, 0xffff_ffff)]);
    }

    #[test]
    fn packet_in_matches_carry_the_tun_metadata_fields_present() {
        use crate::openflow::tlv::{TlvCommand, TlvMap, TlvTableMod};
        let reg = geneve_opts::Registration::new();
        let mut t = geneve_opts::TlvTable::default();
        let map = |kind, len, index| TlvMap {
            class: 0x0102,
            kind,
            len,
            index,
        };
        let maps = vec![map(0x80, 4, 0), map(1, 4, 9), map(2, 0, 3)];
        t.apply(
            &TlvTableMod {
                command: TlvCommand::Add,
                maps,
            },
            0,
        )
        .unwrap();
        reg.set(&t);
        let tun = TunMeta {
            id: 7,
            tlv: reg.id(),
            // tun_metadata0 and 3 present; 9 not.
            md_present: 0b1001,
            md: 0x0000_1234_0000_0005,
            ..TunMeta::NONE
        };
        let m = packet_in_match(1, &ControllerMeta::default(), &tun);
        assert_eq!(
            m.registers(),
            [NxMatchField {
                reg: Register::TunMetadata { idx: 0, len: 4 },
                value: 0x1234,
                mask: None,
            }]
        );
    }

    #[test]
    fn packet_in_matches_carry_the_nonzero_tunnel_fields() {
        let meta = ControllerMeta {
            regs: {
                let mut r = [0; crate::openflow::nicira::N_REGS];
                r[0] = 9;
                r
            },
            ..ControllerMeta::default()
        };
        let tun = TunMeta::v4(
            5,
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 2),
        );
        let reg = |reg, value| NxMatchField {
            reg,
            value,
            mask: None,
        };
        let m = packet_in_match(1, &meta, &tun);
        assert_eq!(
            m.fields(),
            [
                OxmField::InPort(PortNo(1)),
                OxmField::TunnelId(Masked::exact(5))
            ]
        );
        assert_eq!(
            m.registers(),
            [
                reg(Register::TunSrc, 0xc0a8_0101),
                reg(Register::TunDst, 0xc0a8_0102),
                reg(Register::Reg(0), 9),
            ]
        );
        // Zero fields are left out, each on its own.
        let only_src = TunMeta {
            id: 0,
            dst: Ipv4Addr::UNSPECIFIED,
            ..tun
        };
        let m = packet_in_match(1, &ControllerMeta::default(), &only_src);
        assert_eq!(m.fields(), [OxmField::InPort(PortNo(1))]);
        assert_eq!(m.registers(), [reg(Register::TunSrc, 0xc0a8_0101)]);
        let m = packet_in_match(1, &ControllerMeta::default(), &TunMeta::NONE);
        assert_eq!(m.fields(), [OxmField::InPort(PortNo(1))]);
        assert!(m.registers().is_empty());
    }

    #[test]
    fn a_packet_out_match_gives_its_tunnel_metadata() {
        let reg = |reg, value, mask| NxMatchField { reg, value, mask };
        let m = Match::from_fields(vec![OxmField::TunnelId(Masked::new(0x15, 0xff))])
            .and_then(|m| {
                m.with_registers(vec![
                    reg(Register::TunDst, 0x0a00_0002, None),
                    reg(Register::TunSrc, 0x0a00_0100, Some(0xffff_ff00)),
                ])
            })
            .unwrap();
        assert_eq!(
            packet_out_tunnel(&m),
            TunMeta::v4(0x15, Ipv4Addr::new(10, 0, 1, 0), Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(packet_out_tunnel(&Match::new()), TunMeta::NONE);
    }

    #[test]
    fn a_packet_out_match_gives_its_metadata_and_registers() {
        let reg = |reg, value, mask| NxMatchField { reg, value, mask };
        let m = Match::from_fields(vec![OxmField::Metadata(Masked::exact(0x42))])
            .and_then(|m| {
                m.with_registers(vec![
                    reg(Register::Reg(3), 7, None),
                    // xreg1 is reg2 (high) and reg3 (low): its low half
                    // masked off keeps reg3's 7.
                    reg(
                        Register::XReg(1),
                        0x5_0000_0000,
                        Some(0xffff_ffff_0000_0000),
                    ),
                    reg(Register::TunDst, 0x0a00_0002, None),
                ])
            })
            .unwrap();
        let s = packet_out_start(&m);
        assert_eq!(s.metadata, 0x42);
        let mut want = [0; crate::openflow::nicira::N_REGS];
        (want[2], want[3]) = (5, 7);
        assert_eq!(s.regs, want);
        assert_eq!(
            s.tun,
            TunMeta::v4(0, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(packet_out_start(&Match::new()), PacketOutStart::default());
    }

    #[test]
    fn ipv6_tunnel_addresses_go_both_ways_as_their_nxm_fields() {
        use crate::openflow::nx_tun6::{halves, joined};
        let (s6, d6): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            ("fd00::2".parse().unwrap(), "fd00::1".parse().unwrap());
        let tun = TunMeta::v6(7, s6, d6);
        let m = packet_in_match(2, &ControllerMeta::default(), &tun);
        assert_eq!(joined(m.registers(), false), Some((s6, None)));
        assert_eq!(joined(m.registers(), true), Some((d6, None)));
        assert_eq!(m.registers().len(), 4);
        // A packet-out's match gives them (masked bits off).
        let out = Match::new()
            .with_registers(
                halves(true, d6, None)
                    .into_iter()
                    .chain(halves(
                        false,
                        "fd00::ff".parse().unwrap(),
                        Some("ffff::".parse().unwrap()),
                    ))
                    .collect(),
            )
            .unwrap();
        assert_eq!(
            packet_out_tunnel(&out),
            TunMeta::v6(0, "fd00::".parse().unwrap(), d6)
        );
    }
}
