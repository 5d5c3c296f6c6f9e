//! Tests of the OpenFlow 1.0 codec on the fixtures of [`super::fixtures`]
//! and on hand-made bytes: what decoding fills in, normalisation, errors.

use std::net::Ipv4Addr;

use super::fixtures::{FIXTURES, hex, samples, unhex};
use super::*;
use crate::openflow::action::Action;
use crate::openflow::flow::{FlowMod, FlowModCommand, PacketOut};
use crate::openflow::flow_match::Match;
use crate::openflow::instruction::Instruction;
use crate::openflow::multipart::*;
use crate::openflow::oxm::{Masked, OxmField as F};
use crate::wire::MacAddr;

fn dec(b: &[u8]) -> Message {
    decode(b, &Ctx::default()).unwrap().1
}

#[test]
fn fixtures_encode_and_decode() {
    let samples = samples();
    assert_eq!(samples.len(), FIXTURES.len());
    for (m, fx) in samples.iter().zip(FIXTURES) {
        let bytes = unhex(fx);
        assert_eq!(hex(&encode(m, 7).unwrap()), hex(&bytes), "{m:?}");
        let (h, back) = decode(&bytes, &Ctx::default()).unwrap();
        assert_eq!((h.version, h.xid), (VERSION, 7));
        // What decodes encodes to the same bytes.
        assert_eq!(encode(&back, 7).unwrap(), bytes, "{back:?}");
    }
}

#[test]
fn decoding_fills_what_1_0_lacks() {
    let s = samples();
    // The VLAN actions push a tag when the match does not promise one.
    let Message::FlowMod(f) = dec(&unhex(FIXTURES[0])) else {
        panic!()
    };
    assert_eq!(f, {
        let Message::FlowMod(want) = &s[0] else {
            panic!()
        };
        want.clone()
    });
    let Message::FlowMod(f) = dec(&unhex(FIXTURES[2])) else {
        panic!()
    };
    let acts = f.instructions[0].actions().unwrap();
    assert_eq!(&acts[..1], &[Action::PopVlan]);
    // After strip_vlan, mod_vlan_pcp pushes a tag again.
    assert_eq!(
        &acts[4..6],
        &[Action::PushVlan(0x8100), Action::SetField(F::VlanPcp(5))]
    );
    assert_eq!(f.table_id, 0);
    let Message::FlowMod(f) = dec(&unhex(FIXTURES[1])) else {
        panic!()
    };
    assert_eq!(
        (f.table_id, f.out_port, f.instructions.len()),
        (0xff, PortNo(3), 0)
    );
    let Message::PacketIn(p) = dec(&unhex(FIXTURES[3])) else {
        panic!()
    };
    assert_eq!(
        (p.cookie, p.table_id, p.match_.in_port()),
        (u64::MAX, 0, Some(PortNo(3)))
    );
    let Message::PacketOut(p) = dec(&unhex(FIXTURES[4])) else {
        panic!()
    };
    assert_eq!(p.in_port, PortNo::CONTROLLER);
    assert_eq!(p.actions[0], Action::PushVlan(0x8100));
    // Flow stats keep the actions 1.0 can say.
    let Message::MultipartReply(r) = dec(&unhex(FIXTURES[17])) else {
        panic!()
    };
    let MultipartReplyBody::Flow(flows) = r.body else {
        panic!()
    };
    assert_eq!(
        flows[0].instructions,
        [Instruction::ApplyActions(vec![Action::output(PortNo(2))])]
    );
    // Statistics for all ports and all queues are the model's ANY.
    for (i, want) in [(14, PortNo::ANY), (15, PortNo::ANY)] {
        let Message::MultipartRequest(r) = dec(&unhex(FIXTURES[i])) else {
            panic!()
        };
        match r.body {
            MultipartRequestBody::PortStats { port_no } => assert_eq!(port_no, want),
            MultipartRequestBody::Queue { port_no, .. } => assert_eq!(port_no, want),
            b => panic!("{b:?}"),
        }
    }
}

#[test]
fn features_reply_lists_the_ports() {
    // OFPT_FEATURES_REPLY (xid=0x7): dpid:00000000000000ab
    // n_tables:1, n_buffers:256
    // capabilities: FLOW_STATS TABLE_STATS PORT_STATS QUEUE_STATS ARP_MATCH_IP
    // actions: output enqueue set_vlan_vid set_vlan_pcp strip_vlan mod_dl_src mod_dl_dst
    //          mod_nw_src mod_nw_dst mod_nw_tos mod_tp_src mod_tp_dst
    //  LOCAL(br0): addr:02:00:00:00:00:fe
    let want = "010600500000000700000000000000ab0000010001000000000000c700000fff\
                fffe0200000000fe627230000000000000000000000000000000000000000000\
                00000000000000000000000000000000";
    let local = Port {
        port_no: PortNo::LOCAL,
        hw_addr: MacAddr([2, 0, 0, 0, 0, 0xfe]),
        name: "br0".into(),
        ..Port::default()
    };
    let too_big = Port {
        port_no: PortNo(0x10000),
        ..Port::default()
    };
    let f = SwitchFeatures {
        datapath_id: 0xab,
        n_buffers: 256,
        n_tables: 1,
        capabilities: 0x4f,
        ..SwitchFeatures::default()
    };
    let bytes = encode_features_reply(&f, &[local, too_big], 7);
    assert_eq!(hex(&bytes), hex(&unhex(want)));
    let Message::FeaturesReply(back) = dec(&bytes) else {
        panic!()
    };
    // GROUP_STATS (bit 3) has no 1.0 form.
    assert_eq!(
        back,
        SwitchFeatures {
            capabilities: 0x47,
            ..f
        }
    );
}

#[test]
fn match_normalisation() {
    use match10::wildcards as W;
    let raw = |wildcards: u32, edit: &dyn Fn(&mut [u8])| {
        let mut m = vec![0u8; 40];
        m[..4].copy_from_slice(&wildcards.to_be_bytes());
        edit(&mut m);
        let mut r = Reader::new(&m, ErrorCode::BadRequest(BadRequestCode::BadLen));
        match10::decode_match(&mut r).unwrap().into_fields()
    };
    // tp_dst without nw_proto, nw_src without dl_type: dropped.
    let f = raw(W::ALL & !W::TP_DST & !W::DL_TYPE & !W::NW_SRC_MASK, &|m| {
        m[22..24].copy_from_slice(&[0x08, 0x00]);
        m[39] = 80;
        m[28] = 10;
    });
    assert_eq!(
        f,
        [
            F::EthType(0x0800),
            F::Ipv4Src(Masked::exact(Ipv4Addr::new(10, 0, 0, 0)))
        ]
    );
    let f = raw(W::ALL & !W::TP_DST & !W::NW_SRC_MASK, &|m| m[39] = 80);
    assert!(f.is_empty());
    // A priority with any VLAN: some tag with that priority.
    let f = raw(W::ALL & !W::DL_VLAN_PCP, &|m| m[20] = 5);
    assert_eq!(f, [F::VlanVid(Masked::new(0x1000, 0x1000)), F::VlanPcp(5)]);
    // A priority without a tag: dropped.
    let f = raw(W::ALL & !W::DL_VLAN_PCP & !W::DL_VLAN, &|m| {
        m[18..20].copy_from_slice(&[0xff, 0xff]);
        m[20] = 5;
    });
    assert_eq!(f, [F::VlanVid(Masked::exact(0))]);
    // nw_src with 40 wildcarded bits is all wildcarded, values cut to prefix.
    let f = raw(
        W::ALL & !W::DL_TYPE & !W::NW_DST_MASK | (8 << W::NW_DST_SHIFT),
        &|m| {
            m[22..24].copy_from_slice(&[0x08, 0x06]);
            m[32..36].copy_from_slice(&[10, 1, 2, 3]);
        },
    );
    assert_eq!(
        f,
        [
            F::EthType(0x0806),
            F::ArpTpa(Masked::new(
                Ipv4Addr::new(10, 1, 2, 0),
                Ipv4Addr::new(255, 255, 255, 0)
            ))
        ]
    );
    // What 1.0 cannot say is wildcarded on encoding.
    let v6 = Match::from_fields(vec![F::EthType(0x86dd), F::IpProto(6), F::TcpDst(22)]).unwrap();
    assert!(is_exact_in_v10(&v6));
    let v6 = Match::from_fields(vec![
        F::EthType(0x86dd),
        F::Ipv6Src(Masked::exact(std::net::Ipv6Addr::LOCALHOST)),
    ])
    .unwrap();
    assert!(!is_exact_in_v10(&v6));
    let mut w_out = Vec::new();
    match10::encode_match(&v6, &mut Writer::new(&mut w_out)).unwrap();
    assert_eq!(&w_out[..4], &0x0038_20efu32.to_be_bytes());
}

/// A flow mod's bytes with `command` and `flags` and these actions.
fn flow_mod_bytes(command: u16, flags: u16, actions: &[u8]) -> Vec<u8> {
    let mut b = unhex(FIXTURES[1]);
    b.truncate(72);
    b[56..58].copy_from_slice(&command.to_be_bytes());
    b[70..72].copy_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(actions);
    let n = b.len() as u16;
    b[2..4].copy_from_slice(&n.to_be_bytes());
    b
}

#[test]
fn flow_mod_table_id_emerg_and_bad_actions() {
    use crate::openflow::error::{BadActionCode as A, FlowModFailedCode};
    let ctx = Ctx {
        flow_mod_table_id: true,
        ..Ctx::default()
    };
    let (_, m) = decode(&flow_mod_bytes(0x0300, 0, &[]), &ctx).unwrap();
    let Message::FlowMod(f) = &m else { panic!() };
    assert_eq!((f.table_id, f.command), (3, FlowModCommand::Add));
    assert_eq!(
        encode_with(&m, 7, &ctx).unwrap(),
        flow_mod_bytes(0x0300, 0, &[])
    );
    let err = |b: &[u8]| decode(b, &Ctx::default()).unwrap_err();
    // Without the extension, 0x0300 is no command.
    assert_eq!(
        err(&flow_mod_bytes(0x0300, 0, &[])).code,
        ErrorCode::FlowModFailed(FlowModFailedCode::BadCommand)
    );
    let e = err(&flow_mod_bytes(0, flow10::flags::EMERG, &[]));
    assert_eq!(
        e.code,
        ErrorCode::FlowModFailed(FlowModFailedCode::TableFull)
    );
    // The reply is a 1.0 error: OFPT_ERROR (xid=0x0): OFPFMFC_ALL_TABLES_FULL.
    let reply = e.reply();
    assert_eq!(&reply[..4], &[1, 1, 0, 76]);
    assert_eq!(&reply[8..12], &[0, 3, 0, 0]);
    let bad = |a: &[u8]| err(&flow_mod_bytes(0, 0, a)).code;
    assert_eq!(
        bad(&[0, 0, 0, 8, 0xff, 0xff, 0, 0]),
        ErrorCode::BadAction(A::BadOutPort)
    );
    assert_eq!(
        bad(&[0, 1, 0, 8, 0x10, 0, 0, 0]),
        ErrorCode::BadAction(A::BadArgument)
    );
    assert_eq!(
        bad(&[0, 2, 0, 8, 8, 0, 0, 0]),
        ErrorCode::BadAction(A::BadArgument)
    );
    assert_eq!(
        bad(&[0, 8, 0, 8, 1, 0, 0, 0]),
        ErrorCode::BadAction(A::BadArgument)
    );
    assert_eq!(
        bad(&[0, 12, 0, 8, 0, 0, 0, 0]),
        ErrorCode::BadAction(A::BadType)
    );
    assert_eq!(
        bad(&[0, 4, 0, 8, 0, 0, 0, 0]),
        ErrorCode::BadAction(A::BadLen)
    );
    assert_eq!(bad(&[0, 0, 0, 4]), ErrorCode::BadAction(A::BadLen));
    assert_eq!(
        bad(&[0xff, 0xff, 0, 8, 0, 0, 0x23, 0x21]),
        ErrorCode::BadAction(A::BadExperimenter)
    );
    // OFPT_ERROR: OFPBAC_BAD_VENDOR.
    assert_eq!(
        error_to_v10(ErrorCode::BadAction(A::BadExperimenter)),
        (2, 2, false)
    );
}

#[test]
fn what_1_0_cannot_say_is_an_encode_error() {
    use crate::openflow::message::{ControllerRole, RoleMsg};
    let no = |m: Message| {
        assert!(
            matches!(
                encode(&m, 1),
                Err(EncodeError::Unsupported { version: 1, .. })
            ),
            "{m:?}"
        )
    };
    no(Message::RoleRequest(RoleMsg {
        role: ControllerRole::Master,
        generation_id: 0,
    }));
    no(Message::GetAsyncRequest);
    no(Message::TableMod(crate::openflow::table::TableMod {
        table_id: 0,
        config: 0,
    }));
    no(Message::FlowMod(FlowMod {
        instructions: vec![Instruction::GotoTable(1)],
        ..FlowMod::default()
    }));
    no(Message::PacketOut(PacketOut {
        actions: vec![Action::Group(1)],
        ..PacketOut::default()
    }));
    no(Message::PacketOut(PacketOut {
        actions: vec![Action::output(PortNo(0x1_0000))],
        ..PacketOut::default()
    }));
    no(Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: MultipartRequestBody::GroupFeatures,
    }));
    assert_eq!(port_to_v10(PortNo(0xff00)).ok(), None);
    assert_eq!(port_to_v10(PortNo::MAX).ok(), Some(0xff00));
    assert_eq!(port_to_v10(PortNo::ANY).ok(), Some(0xffff));
    assert_eq!(port_from_v10(0xfffd), PortNo::CONTROLLER);
}

#[test]
fn header_errors() {
    let e = decode(&[1, 2, 0, 9, 0, 0, 0, 5], &Ctx::default()).unwrap_err();
    assert_eq!(
        (e.code, e.xid, e.version),
        (ErrorCode::BadRequest(BadRequestCode::BadLen), 5, 1)
    );
    let e = decode(&[4, 2, 0, 8, 0, 0, 0, 5], &Ctx::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest(BadRequestCode::BadVersion));
    let e = decode(&[1, 22, 0, 8, 0, 0, 0, 5], &Ctx::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest(BadRequestCode::BadType));
    // OFPT_ERROR (xid=0x5): OFPBRC_BAD_TYPE
    assert_eq!(hex(&e.reply()), "0101001400000005000100010116000800000005");
    // Hellos of any version decode.
    assert!(decode(&[4, 0, 0, 8, 0, 0, 0, 1], &Ctx::default()).is_ok());
}

#[test]
fn split_reply_measures_flows_in_1_0() {
    let flow = FlowStats {
        instructions: vec![Instruction::ApplyActions(vec![Action::output(PortNo(1))])],
        ..FlowStats::default()
    };
    // 96 bytes each in 1.0 (88 in 1.3): ten per 12 + 960 bytes.
    let replies = stats::split_reply(
        MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Flow(vec![flow; 25]),
        },
        12 + 960,
    );
    let sizes: Vec<usize> = replies
        .iter()
        .map(|r| {
            encode(&Message::MultipartReply(r.clone()), 1)
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, [972, 972, 12 + 5 * 96]);
    let flags: Vec<u16> = replies.iter().map(|r| r.flags).collect();
    assert_eq!(flags, [MORE, MORE, 0]);
}
