//! The pipeline fields of packet-ins and packet-outs: what a packet-in's
//! match says about the packet beside its port (the tunnel metadata, the
//! OpenFlow metadata, the registers, as Open vSwitch fills it), and the
//! tunnel metadata an OpenFlow 1.5 packet-out's match gives its packet.

use std::net::Ipv4Addr;

use crate::module::TunMeta;
use crate::module::flow::ControllerMeta;
use crate::openflow::nicira::{NxMatchField, Register};
use crate::openflow::oxm::{Masked, OxmField};
use crate::openflow::{Match, PortNo};
use crate::port::tunnel::geneve_opts;

/// A packet-in's match, as Open vSwitch fills it: the input port, and the
/// pipeline fields that are not zero when the packet went to the
/// controller (the tunnel's `tun_id` as `OXM_OF_TUNNEL_ID`, its `tun_src`
/// and `tun_dst` as `NXM_NX_TUN_IPV4_SRC/DST`, the metadata, the registers
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
    let tunnel = [
        addr(Register::TunSrc, tun.src),
        addr(Register::TunDst, tun.dst),
    ];
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

/// The tunnel metadata a packet-out's match gives its packet (OpenFlow
/// 1.5's pipeline fields; the codec takes no others but `in_port`).
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
        let tun = TunMeta {
            id: 5,
            src: Ipv4Addr::new(192, 168, 1, 1),
            dst: Ipv4Addr::new(192, 168, 1, 2),
            ..TunMeta::NONE
        };
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
            TunMeta {
                id: 0x15,
                src: Ipv4Addr::new(10, 0, 1, 0),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                ..TunMeta::NONE
            }
        );
        assert_eq!(packet_out_tunnel(&Match::new()), TunMeta::NONE);
    }
}
