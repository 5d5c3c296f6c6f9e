//! Tests of the NXM codec: matches as `ovs-ofctl` 3.1 (OpenFlow 1.0) sent
//! them in `NXT_FLOW_MOD`s, round trips, and every error.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::openflow::nicira::Register;
use crate::openflow::port::PortNo;
use crate::openflow::v10::fixtures::unhex;
use crate::wire::MacAddr;

fn enc(m: &Match, cookie: Option<Masked<u64>>) -> Vec<u8> {
    let mut v = Vec::new();
    let mut w = Writer::new(&mut v);
    let n = encode(m, cookie, &mut w).unwrap();
    w.finish().unwrap();
    assert_eq!(n, v.len());
    assert_eq!(encoded_len(m, cookie), n);
    v
}

fn dec(hex: &str) -> Res<NxMatch> {
    decode_fields(&unhex(hex))
}

fn bad(c: BadMatchCode) -> Res<NxMatch> {
    Err(ErrorCode::BadMatch(c))
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// The matches of `ovs-ofctl add-flow` (no `-O`) as it sent them, with
/// what they mean in the model; each encodes back to its own bytes.
#[test]
fn ovs_ofctl_matches() {
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let cases: Vec<(&str, Vec<OxmField>, Vec<NxMatchField>)> = vec![
        (
            // ipv6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::/32
            "0000060286dd 0001261020010db8000000000000000000000001
             0001292020010db8000000000000000000000000ffffffff000000000000000000000000",
            vec![
                OxmField::EthType(0x86dd),
                OxmField::Ipv6Src(Masked::exact(v6("2001:db8::1"))),
                OxmField::Ipv6Dst(Masked::new(v6("2001:db8::"), v6("ffff:ffff::"))),
            ],
            vec![],
        ),
        (
            // reg0=5,reg3=0x10/0xf0
            "0001000400000005 0001070800000010000000f0",
            vec![],
            vec![
                NxMatchField {
                    reg: Register::Reg(0),
                    value: 5,
                    mask: None,
                },
                NxMatchField {
                    reg: Register::Reg(3),
                    value: 0x10,
                    mask: Some(0xf0),
                },
            ],
        ),
        (
            // mpls,mpls_label=7,mpls_tc=2,mpls_bos=1
            "0000060288478000460102800048010180004404 00000007",
            vec![
                OxmField::EthType(0x8847),
                OxmField::MplsTc(2),
                OxmField::MplsBos(1),
                OxmField::MplsLabel(7),
            ],
            vec![],
        ),
        (
            // ip,nw_tos=8,nw_ecn=1,in_port=3
            "000000020003 000006020800 00000a0108 0001380101",
            vec![
                OxmField::InPort(PortNo(3)),
                OxmField::EthType(0x0800),
                OxmField::IpDscp(2),
                OxmField::IpEcn(1),
            ],
            vec![],
        ),
        (
            // icmp6,icmp_type=135,nd_target=::1,nd_sll=00:01:02:03:04:05
            "0000060286dd 00000c013a 00012a0187 00012e1000000000000000000000000000000001
             000130060001 02030405",
            vec![
                OxmField::EthType(0x86dd),
                OxmField::IpProto(58),
                OxmField::Icmpv6Type(135),
                OxmField::Ipv6NdTarget(v6("::1")),
                OxmField::Ipv6NdSll(mac("00:01:02:03:04:05")),
            ],
            vec![],
        ),
        (
            // arp,arp_op=1,arp_spa=10.0.0.1,arp_sha=00:01:02:03:04:05
            "000006020806 00001e020001 000020040a000001 000122060001 02030405",
            vec![
                OxmField::EthType(0x0806),
                OxmField::ArpOp(1),
                OxmField::ArpSpa(Masked::exact(Ipv4Addr::new(10, 0, 0, 1))),
                OxmField::ArpSha(Masked::exact(mac("00:01:02:03:04:05"))),
            ],
            vec![],
        ),
        (
            // tun_id=5,tcp,tp_dst=80,dl_src=01:00:00:00:00:00/01:00:00:00:00:00
            "0000050c010000000000010000000000 000006020800 00000c0106 000014020050
             000120080000000000000005",
            vec![
                OxmField::EthSrc(Masked::new(
                    mac("01:00:00:00:00:00"),
                    mac("01:00:00:00:00:00"),
                )),
                OxmField::EthType(0x0800),
                OxmField::IpProto(6),
                OxmField::TcpDst(80),
                OxmField::TunnelId(Masked::exact(5)),
            ],
            vec![],
        ),
        (
            // tun_src=10.0.0.2,tun_dst=10.0.0.0/24
            "00013e040a000002 000141080a000000ffffff00",
            vec![],
            vec![
                NxMatchField {
                    reg: Register::TunSrc,
                    value: 0x0a00_0002,
                    mask: None,
                },
                NxMatchField {
                    reg: Register::TunDst,
                    value: 0x0a00_0000,
                    mask: Some(0xffff_ff00),
                },
            ],
        ),
    ];
    for (hex, fields, regs) in cases {
        let want = Match::from_fields(fields)
            .and_then(|m| m.with_registers(regs))
            .unwrap();
        let got = dec(hex).unwrap();
        assert_eq!(got.match_, want, "{hex}");
        assert_eq!(got.cookie, None);
        assert_eq!(enc(&want, None), unhex(hex), "{hex}");
    }
}

/// `del-flows 'cookie=5/-1,ipv6'`: the cookie travels in the match.
#[test]
fn cookie_is_kept_apart() {
    let hex = "0000060286dd 00013c080000000000000005";
    let m = dec(hex).unwrap();
    assert_eq!(m.cookie, Some(Masked::exact(5)));
    assert_eq!(m.match_.fields(), &[OxmField::EthType(0x86dd)]);
    assert_eq!(enc(&m.match_, m.cookie), unhex(hex));
    let masked = dec("00013d10 0000000000000005 00000000000000ff").unwrap();
    assert_eq!(masked.cookie, Some(Masked::new(5, 0xff)));
    assert_eq!(
        dec("00013c080000000000000005 00013c080000000000000006"),
        bad(BadMatchCode::DupField)
    );
}

#[test]
fn vlan_tci_converts_both_ways() {
    let vid = |value, mask| OxmField::VlanVid(Masked { value, mask });
    // dl_vlan=5,dl_vlan_pcp=3: one TCI, exact.
    let m = dec("000008027005").unwrap().match_;
    assert_eq!(m.fields(), &[vid(0x1005, None), OxmField::VlanPcp(3)]);
    assert_eq!(enc(&m, None), unhex("000008027005"));
    // dl_vlan=5 alone: CFI and VID matched.
    let m = dec("000009041005 1fff").unwrap().match_;
    assert_eq!(m.fields(), &[vid(0x1005, None)]);
    assert_eq!(enc(&m, None), unhex("0000090410051fff"));
    // Any tag: CFI only.
    let m = dec("000009041000 1000").unwrap().match_;
    assert_eq!(m.fields(), &[vid(0x1000, Some(0x1000))]);
    assert_eq!(enc(&m, None), unhex("0000090410001000"));
    // No tag, whatever the rest of the mask says.
    for hex in ["0000080200 00", "00000904 0000 1fff", "00000904 0000 1000"] {
        let m = dec(hex).unwrap().match_;
        assert_eq!(m.fields(), &[vid(OFPVID_NONE, None)], "{hex}");
        assert_eq!(enc(&m, None), unhex("0000090400001fff"));
    }
    // A priority of a frame with no tag, part of a priority, bits outside
    // the mask, a PCP with no tag known.
    assert_eq!(dec("000008022000"), bad(BadMatchCode::BadValue));
    assert_eq!(dec("000009043000 3000"), bad(BadMatchCode::BadMask));
    assert_eq!(dec("000009041005 1000"), bad(BadMatchCode::BadWildcards));
    assert_eq!(dec("000009046000 e000"), bad(BadMatchCode::BadPrereq));
    // The model's VLAN fields from OXM come out as the same TCI.
    let m = Match::from_fields(vec![vid(0x1000 | 7, Some(0x1fff)), OxmField::VlanPcp(1)]).unwrap();
    assert_eq!(enc(&m, None), unhex("000008023007"));
}

#[test]
fn in_port_and_tos_conversions() {
    // LOCAL is 0xfffe in NXM, 0xfffffffe in the model.
    let m = dec("00000002fffe").unwrap().match_;
    assert_eq!(m.in_port(), Some(PortNo::LOCAL));
    assert_eq!(enc(&m, None), unhex("00000002fffe"));
    // The OXM 32-bit in_port is taken too, and a port 1.0 cannot number
    // goes out that way.
    let m = dec("8000000400012345").unwrap().match_;
    assert_eq!(m.in_port(), Some(PortNo(0x12345)));
    assert_eq!(enc(&m, None), unhex("8000000400012345"));
    assert_eq!(dec("00000104 0001 ffff"), Ok(dec("000000020001").unwrap()));
    assert_eq!(dec("00000104 0000 0001"), bad(BadMatchCode::BadMask));
    // ECN bits in NXM_OF_IP_TOS.
    assert_eq!(dec("000006020800 00000a0109"), bad(BadMatchCode::BadValue));
    // OXM's IP_DSCP in an NXM match is written back as NXM_OF_IP_TOS.
    let m = dec("000006020800 80001001 3f").unwrap().match_;
    assert_eq!(m.get(OxmFieldType::IpDscp), Some(&OxmField::IpDscp(0x3f)));
    assert_eq!(enc(&m, None), unhex("000006020800 00000a01fc"));
}

#[test]
fn masks_the_model_cannot_hold() {
    // tp_dst=80/0xffff is exact; tp_dst=0x50/0xf0 cannot be said.
    let exact = dec("000006020800 00000c0106 000015040050ffff").unwrap();
    assert_eq!(
        exact.match_.get(OxmFieldType::TcpDst),
        Some(&OxmField::TcpDst(80))
    );
    assert_eq!(
        dec("000006020800 00000c0106 00001504005000f0"),
        bad(BadMatchCode::BadMask)
    );
    // Unmaskable OXM field with a mask.
    assert_eq!(
        dec("000006020800 80001502 0606"),
        bad(BadMatchCode::BadMask)
    );
}

#[test]
fn conj_id_is_read_like_a_register_and_exact_only() {
    let m = dec("00014a04 00000007").unwrap();
    assert_eq!(
        m.match_.registers(),
        &[NxMatchField {
            reg: Register::ConjId,
            value: 7,
            mask: None,
        }]
    );
    assert_eq!(enc(&m.match_, None), unhex("00014a04 00000007"));
    assert!(dec("00014b08 00000007 ffffffff").is_err());
}

#[test]
fn fields_the_model_lacks_are_refused() {
    for hex in [
        "000006020800 00013401 01",   // NXM_NX_IP_FRAG
        "000006020800 00013a01 40",   // NXM_NX_IP_TTL
        "00014204 00000001",          // NXM_NX_PKT_MARK
        "00013c01 40",                // NXM_NX_MPLS_TTL (field 30, 1 byte)
        "00024004 00000001",          // an unknown class
        "00002404 00000001",          // NXM_OF field 18
        "80005004 00000001",          // OXM field 40
        "ffff0008 00002320 00000000", // an experimenter field
        "80010504 00000001",          // xreg2 with a 32-bit length
    ] {
        let want = if hex.starts_with("8001") {
            bad(BadMatchCode::BadLen)
        } else {
            bad(BadMatchCode::BadField)
        };
        assert_eq!(dec(hex), want, "{hex}");
    }
}

#[test]
fn malformed_matches() {
    // Cut short: in the header, in the payload.
    assert_eq!(dec("000006"), bad(BadMatchCode::BadLen));
    assert_eq!(dec("0000060208"), bad(BadMatchCode::BadLen));
    // A length that is not the field's; an odd masked length.
    assert_eq!(dec("00000603080000"), bad(BadMatchCode::BadLen));
    assert_eq!(dec("00000703 080000"), bad(BadMatchCode::BadLen));
    // Value bits outside the mask.
    assert_eq!(
        dec("000006020800 00000f080a000001ffffff00"),
        bad(BadMatchCode::BadWildcards)
    );
    // Twice the same field, also under two names.
    assert_eq!(
        dec("000006020800 000006020800"),
        bad(BadMatchCode::DupField)
    );
    assert_eq!(
        dec("000000020001 8000000400000001"),
        bad(BadMatchCode::DupField)
    );
    assert_eq!(
        dec("0001000400000005 0001000400000006"),
        bad(BadMatchCode::DupField)
    );
    // Prerequisites, whatever the order.
    assert_eq!(dec("000014020050"), bad(BadMatchCode::BadPrereq));
    assert!(dec("000014020050 00000c0106 000006020800").is_ok());
    // Out of range: an MPLS label above 20 bits.
    assert_eq!(
        dec("000006028847 8000440400100000"),
        bad(BadMatchCode::BadValue)
    );
    // The padding after the match must be there.
    let b = unhex("000006020800");
    let mut r = Reader::new(&b, ErrorCode::BadMatch(BadMatchCode::BadLen));
    assert_eq!(decode(&mut r, 6), bad(BadMatchCode::BadLen));
    let mut padded = b.clone();
    padded.extend_from_slice(&[0, 0]);
    let mut r = Reader::new(&padded, ErrorCode::BadMatch(BadMatchCode::BadLen));
    assert!(decode(&mut r, 6).is_ok());
    assert!(r.is_empty());
}

/// Fields written in any order come out after their prerequisites, as
/// Open vSwitch reads them.
#[test]
fn encoding_puts_prerequisites_first() {
    let m = Match::from_fields(vec![
        OxmField::TcpSrc(1),
        OxmField::Ipv4Dst(Masked::exact(Ipv4Addr::new(1, 2, 3, 4))),
        OxmField::IpProto(6),
        OxmField::EthType(0x0800),
        OxmField::Metadata(Masked::exact(9)),
        OxmField::InPort(PortNo(2)),
    ])
    .unwrap();
    assert_eq!(
        enc(&m, None),
        unhex(
            "000000020002 8000040800000000 00000009 000006020800 00000c0106
             0000100401020304 000012020001"
        )
    );
    let back = dec(&hex(&enc(&m, None))).unwrap().match_;
    assert_eq!(back.fields().len(), 6);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every model field goes out and comes back.
#[test]
fn every_model_field_round_trips() {
    use crate::openflow::oxm::OxmFieldType as T;
    for &ty in T::ALL {
        if matches!(ty, T::InPhyPort | T::VlanPcp) {
            continue;
        }
        // A zero value, with the prerequisites it needs.
        let mut tlv = ty.header(false).to_be_bytes().to_vec();
        tlv.resize(4 + ty.value_len(), 0);
        let mut r = Reader::new(&tlv, ErrorCode::BadMatch(BadMatchCode::BadLen));
        let f = OxmField::decode(&mut r).unwrap();
        let mut fields = vec![f];
        let (eth, proto, icmp): (Option<u16>, Option<u8>, Option<u8>) = match ty {
            T::IpDscp | T::IpEcn | T::IpProto | T::Ipv4Src | T::Ipv4Dst => {
                (Some(0x800), None, None)
            }
            T::TcpSrc | T::TcpDst => (Some(0x800), Some(6), None),
            T::UdpSrc | T::UdpDst => (Some(0x800), Some(17), None),
            T::SctpSrc | T::SctpDst => (Some(0x800), Some(132), None),
            T::Icmpv4Type | T::Icmpv4Code => (Some(0x800), Some(1), None),
            T::ArpOp | T::ArpSpa | T::ArpTpa | T::ArpSha | T::ArpTha => (Some(0x806), None, None),
            T::Ipv6Src | T::Ipv6Dst | T::Ipv6Flabel | T::Ipv6Exthdr => (Some(0x86dd), None, None),
            T::Icmpv6Type | T::Icmpv6Code => (Some(0x86dd), Some(58), None),
            T::Ipv6NdTarget | T::Ipv6NdSll => (Some(0x86dd), Some(58), Some(135)),
            T::Ipv6NdTll => (Some(0x86dd), Some(58), Some(136)),
            T::MplsLabel | T::MplsTc | T::MplsBos => (Some(0x8847), None, None),
            T::PbbIsid => (Some(0x88e7), None, None),
            _ => (None, None, None),
        };
        if ty != T::EthType {
            fields.extend(eth.map(OxmField::EthType));
        }
        if ty != T::IpProto {
            fields.extend(proto.map(OxmField::IpProto));
        }
        if !matches!(ty, T::Icmpv6Type) {
            fields.extend(icmp.map(OxmField::Icmpv6Type));
        }
        let m = Match::from_fields(fields).unwrap();
        let back = decode_fields(&enc(&m, None)).unwrap().match_;
        let mut want: Vec<_> = m.fields().to_vec();
        let mut got: Vec<_> = back.fields().to_vec();
        want.sort_by_key(|f| rank(f.field_type()));
        got.sort_by_key(|f| rank(f.field_type()));
        assert_eq!(got, want, "{ty}");
    }
    // xregs (OXM class 0x8001) too.
    let x = NxMatchField {
        reg: Register::XReg(1),
        value: 1 << 40,
        mask: Some(u64::MAX << 8),
    };
    let m = Match::new().with_registers(vec![x]).unwrap();
    assert_eq!(decode_fields(&enc(&m, None)).unwrap().match_, m);
}

#[test]
fn empty_match() {
    assert_eq!(dec(""), Ok(NxMatch::default()));
    assert!(enc(&Match::new(), None).is_empty());
}

/// `tun_metadataN` (class 1, fields 40..103, the value's length as
/// given): matches both ways, and the lengths this switch cannot hold.
#[test]
fn tun_metadata_fields() {
    let md = |idx, len, value, mask| NxMatchField {
        reg: Register::TunMetadata { idx, len },
        value,
        mask,
    };
    for (hex, want) in [
        // tun_metadata0=0x1234 as ovs-ofctl sends it (2 bytes).
        ("000150021234", md(0, 2, 0x1234, None)),
        ("0001510400100 0f0", md(0, 2, 0x10, Some(0xf0))),
        ("0001ce04deadbeef", md(63, 4, 0xdead_beef, None)),
    ] {
        let hex = hex.replace(' ', "");
        let m = dec(&hex).unwrap().match_;
        assert_eq!(m.registers(), [want], "{hex}");
        assert_eq!(enc(&m, None), unhex(&hex));
    }
    // Nine bytes: more than a field holds here; a value outside its mask.
    assert_eq!(dec("00015009000000000000000001"), bad(BadMatchCode::BadLen));
    assert_eq!(dec("000151040011000f"), bad(BadMatchCode::BadWildcards));
    // Field 104 is no tun_metadata.
    assert_eq!(dec("0001d0021234"), bad(BadMatchCode::BadField));
}

/// `NXAST_REG_LOAD2` (what ovs-ofctl sends for `load` into a
/// variable-length field): masked and not; a zero mask is refused, and no
/// prefix panics.
#[test]
fn reg_load2_into_tun_metadata() {
    use crate::openflow::bytes::Reader;
    use crate::openflow::error::{BadActionCode, BadRequestCode};
    use crate::openflow::nicira::{FieldRef, NxAction};
    let short = ErrorCode::BadRequest(BadRequestCode::BadLen);
    let dec_action = |b: &[u8]| {
        let mut r = Reader::new(&b[4..], short);
        NxAction::decode_experimenter(b.len(), &mut r)
    };
    let load = |len, ofs, n_bits, value| NxAction::RegLoad {
        dst: FieldRef(Register::TunMetadata { idx: 0, len }.header(false)),
        ofs,
        n_bits,
        value,
    };
    // load:0x7->NXM_NX_TUN_METADATA0[0..7]
    let masked = unhex("ffff00100000232000210001510207ff");
    assert_eq!(dec_action(&masked), Ok(load(1, 0, 8, 7)));
    // set_field:0x1234->tun_metadata0 in 1.0
    let whole = unhex("ffff001000002320002100015002123400");
    assert_eq!(dec_action(&whole[..16]), Ok(load(2, 0, 16, 0x1234)));
    let mut zero = masked.clone();
    zero[15] = 0;
    assert_eq!(
        dec_action(&zero),
        Err(ErrorCode::BadAction(BadActionCode::BadSetArgument))
    );
    for n in 4..masked.len() {
        let _ = dec_action(&masked[..n]);
    }
}
