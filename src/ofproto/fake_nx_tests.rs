//! The engine's Nicira formats against the fake datapath: NXM flow mods
//! and flow statistics in their request's form, flow removals and
//! packet-ins in each 1.0 connection's chosen format, and the small
//! settings (controller id, async config, flow age), the TLV table
//! messages.

use super::*;
use crate::openflow::message::Experimenter;
use crate::openflow::nicira::{NxMatchField, Register};
use crate::openflow::{Masked, Match, OxmField, v10};
use std::net::Ipv6Addr;

pub(super) const OF10: u32 = 1 << 1;

/// Every whole 1.0 message queued for `id`, with its raw bytes.
pub(super) fn take10(e: &mut Engine<Fake>, id: u64) -> Vec<(Vec<u8>, Message)> {
    let c = e.conn_mut(id).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = frame_len(&c.out[at..]) {
        let raw = c.out[at..at + len].to_vec();
        let (_, m) = v10::decode(&raw, &v10::Ctx::default()).unwrap_or_else(|err| panic!("{err}"));
        out.push((raw, m));
        at += len;
    }
    c.out.drain(..at);
    out
}

fn send10(e: &mut Engine<Fake>, id: u64, m: &Message, ctx: &v10::Ctx) -> Vec<(Vec<u8>, Message)> {
    e.input(id, &v10::encode_with(m, 5, ctx).unwrap(), 0);
    take10(e, id)
}

fn nx_msg(subtype: u32, data: &[u8]) -> Message {
    Message::Experimenter(Experimenter {
        experimenter: 0x2320,
        exp_type: subtype,
        data: data.to_vec(),
    })
}

fn error_of(got: &[(Vec<u8>, Message)]) -> Option<ErrorCode> {
    match got {
        [(_, Message::Error(e))] => Some(e.code),
        _ => None,
    }
}

/// The error code of a lone 1.3 error reply.
fn error13(got: &[(Header, Message)]) -> Option<ErrorCode> {
    match got {
        [(_, Message::Error(e))] => Some(e.code),
        _ => None,
    }
}

fn ipv6_flow() -> FlowMod {
    let m = Match::from_fields(vec![
        OxmField::EthType(0x86dd),
        OxmField::Ipv6Src(Masked::exact(Ipv6Addr::LOCALHOST)),
    ])
    .unwrap()
    .with_registers(vec![NxMatchField {
        reg: Register::Reg(0),
        value: 5,
        mask: None,
    }])
    .unwrap();
    FlowMod {
        priority: 9,
        match_: m,
        ..FlowMod::default()
    }
}

#[test]
fn nxm_flow_mods_and_flow_stats_in_their_requests_form() {
    use v10::nx::FlowFormat;
    let mut e = engine("OpenFlow10,OpenFlow13");
    let a = connect10(&mut e);
    let nxm = v10::Ctx {
        flow_format: FlowFormat::Nxm,
        ..v10::Ctx::default()
    };
    let std = v10::Ctx::default();
    let fmt = |f: u32| nx_msg(v10::nx_subtype::SET_FLOW_FORMAT, &f.to_be_bytes());
    assert!(send10(&mut e, a, &fmt(2), &std).is_empty());
    // An NXT_FLOW_MOD with what 1.0's match cannot hold, whole.
    let fm = Message::FlowMod(ipv6_flow());
    assert!(send10(&mut e, a, &fm, &nxm).is_empty());
    assert_eq!(e.dp.flows[0].match_, ipv6_flow().match_);
    // NXST_FLOW gets NXST_FLOW, with every field.
    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Flow(FlowStatsRequest::default()),
    });
    let got = send10(&mut e, a, &req, &nxm);
    let [(raw, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(&raw[8..10], &[0xff, 0xff], "a vendor reply");
    let R::Flow(flows) = &r.body else { panic!() };
    assert_eq!(flows[0].match_, ipv6_flow().match_);
    // OFPST_FLOW gets OFPST_FLOW (widened to 1.0's match), whatever the
    // connection's flow format.
    let got = send10(&mut e, a, &req, &std);
    let [(raw, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(&raw[8..10], &[0, 1]);
    let R::Flow(flows) = &r.body else { panic!() };
    assert!(flows[0].match_.registers().is_empty());
    // NXST_AGGREGATE too.
    let agg = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Aggregate(FlowStatsRequest::default()),
    });
    let got = send10(&mut e, a, &agg, &nxm);
    assert!(
        matches!(&got[..], [(raw, Message::MultipartReply(r))] if raw[8..10] == [0xff, 0xff] && matches!(r.body, R::Aggregate(AggregateStats { flow_count: 1, .. }))),
        "{got:?}"
    );
    // Formats this switch does not know, a short body, and the 1.0-only
    // message on a 1.3 connection.
    assert_eq!(
        error_of(&send10(&mut e, a, &fmt(1), &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::Eperm))
    );
    let short = nx_msg(v10::nx_subtype::SET_FLOW_FORMAT, &[0, 2]);
    assert_eq!(
        error_of(&send10(&mut e, a, &short, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadLen))
    );
    let b = connect(&mut e, OF13);
    assert_eq!(
        error13(&send(&mut e, b, 4, 1, &fmt(2))),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExpType))
    );
}

#[test]
fn removals_and_packet_ins_follow_each_connections_formats() {
    let mut e = engine("OpenFlow10,OpenFlow13");
    let a = connect10(&mut e);
    let b = connect(&mut e, OF13);
    let std = v10::Ctx::default();
    let removed = FlowRemoved {
        match_: ipv6_flow().match_,
        ..FlowRemoved::default()
    };
    // Standard until NXM is asked for.
    e.broadcast_removed(vec![removed.clone()]);
    let got = take10(&mut e, a);
    assert_eq!(got[0].0[1], v10::msg_type::FLOW_REMOVED);
    let fmt = nx_msg(v10::nx_subtype::SET_FLOW_FORMAT, &2u32.to_be_bytes());
    assert!(send10(&mut e, a, &fmt, &std).is_empty());
    take(&mut e, b);
    e.broadcast_removed(vec![removed.clone()]);
    let got = take10(&mut e, a);
    assert_eq!(got[0].0[1], v10::msg_type::VENDOR);
    assert_eq!(got[0].1, Message::FlowRemoved(removed.clone()));
    assert!(matches!(
        &take(&mut e, b)[..],
        [(_, Message::FlowRemoved(_))]
    ));

    // With a register, as a flow `load:5->NXM_NX_REG2[],controller` makes.
    let reg2 = crate::openflow::nicira::NxMatchField {
        reg: crate::openflow::nicira::Register::Reg(2),
        value: 5,
        mask: None,
    };
    let pin = PacketIn {
        match_: Match::from_fields(vec![OxmField::InPort(PortNo(3))])
            .and_then(|m| m.with_registers(vec![reg2]))
            .unwrap(),
        data: vec![1; 14],
        total_len: 14,
        ..PacketIn::default()
    };
    for (format, subtype) in [
        (1u32, Some(v10::nx_subtype::PACKET_IN)),
        (2, Some(v10::nx_subtype::PACKET_IN2)),
        (0, None),
    ] {
        let m = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &format.to_be_bytes());
        assert!(send10(&mut e, a, &m, &std).is_empty());
        e.broadcast_packet_ins(vec![pin.clone()]);
        let got = take10(&mut e, a);
        let [(raw, Message::PacketIn(p))] = &got[..] else {
            panic!("{got:?}")
        };
        let sub = u32::from_be_bytes([raw[12], raw[13], raw[14], raw[15]]);
        match subtype {
            Some(s) => assert_eq!((raw[1], sub), (v10::msg_type::VENDOR, s)),
            None => assert_eq!(raw[1], v10::msg_type::PACKET_IN),
        }
        assert_eq!(p.match_.in_port(), Some(PortNo(3)));
        assert_eq!(p.data, pin.data);
        // 1.0's own packet-in has no match to carry the register in.
        let regs: &[_] = if subtype.is_some() { &[reg2] } else { &[] };
        assert_eq!(p.match_.registers(), regs);
    }
    let bad = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &3u32.to_be_bytes());
    assert_eq!(
        error_of(&send10(&mut e, a, &bad, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::Eperm))
    );
    let got = take(&mut e, b);
    assert_eq!(got.len(), 3, "the 1.3 peer got each standard");
    for (_, m) in got {
        let Message::PacketIn(p) = m else {
            panic!("{m:?}")
        };
        assert_eq!(p.match_, pin.match_, "1.3's OXM match holds the register");
    }
    // A 1.3 connection may ask for NXT_PACKET_IN2 (not NXT_PACKET_IN).
    let m = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &1u32.to_be_bytes());
    assert_eq!(
        error13(&send(&mut e, b, 4, 1, &m)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExpType))
    );
    let m = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &2u32.to_be_bytes());
    assert!(send(&mut e, b, 4, 2, &m).is_empty());
    take10(&mut e, a);
    e.broadcast_packet_ins(vec![pin.clone()]);
    let got = take(&mut e, b);
    let [(h, Message::Experimenter(x))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((h.version, x.exp_type), (4, v10::nx_subtype::PACKET_IN2));
    // The same experimenter message as 1.0's, but for the version.
    let raw = v10::nx::packet_in2_message(&pin, 4, 0).unwrap();
    let mut as10 = raw.clone();
    as10[0] = v10::VERSION;
    let (_, back) = v10::decode(&as10, &v10::Ctx::default()).unwrap();
    assert_eq!(back, Message::PacketIn(pin.clone()));
}

#[test]
fn controller_id_async_config_and_flow_age() {
    let mut e = engine("OpenFlow10");
    let a = connect10(&mut e);
    let std = v10::Ctx::default();
    let id = nx_msg(
        v10::nx_subtype::SET_CONTROLLER_ID,
        &[0, 0, 0, 0, 0, 0, 0x12, 0x34],
    );
    assert!(send10(&mut e, a, &id, &std).is_empty());
    assert_eq!(e.conn(a).unwrap().controller_id, 0x1234);
    for (data, code) in [
        (&[0, 0, 0, 0, 0, 1, 0, 1][..], BadRequestCode::Eperm),
        (&[0, 1][..], BadRequestCode::BadLen),
    ] {
        let m = nx_msg(v10::nx_subtype::SET_CONTROLLER_ID, data);
        assert_eq!(
            error_of(&send10(&mut e, a, &m, &std)),
            Some(ErrorCode::BadRequest(code))
        );
    }
    // NXT_SET_ASYNC_CONFIG: no flow removals wanted any more.
    let mut masks = Vec::new();
    for w in [3u32, 0, 7, 7, 0, 0] {
        masks.extend_from_slice(&w.to_be_bytes());
    }
    let m = nx_msg(v10::nx_subtype::SET_ASYNC_CONFIG, &masks);
    assert!(send10(&mut e, a, &m, &std).is_empty());
    e.broadcast_removed(vec![FlowRemoved::default()]);
    assert!(take10(&mut e, a).is_empty());
    let m = nx_msg(v10::nx_subtype::SET_ASYNC_CONFIG, &masks[..20]);
    assert_eq!(
        error_of(&send10(&mut e, a, &m, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadLen))
    );
    assert!(send10(&mut e, a, &nx_msg(v10::nx_subtype::FLOW_AGE, &[]), &std).is_empty());
    assert_eq!(
        error_of(&send10(&mut e, a, &nx_msg(99, &[]), &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExpType))
    );
    let other = Message::Experimenter(Experimenter {
        experimenter: 0x4f4e_4600,
        exp_type: 1,
        data: Vec::new(),
    });
    assert_eq!(
        error_of(&send10(&mut e, a, &other, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExperimenter))
    );
}

/// A 1.0 connection.
pub(super) fn connect10(e: &mut Engine<Fake>) -> u64 {
    let id = e.open("peer10".into(), 0);
    e.input(id, &hello(OF10), 0);
    assert_eq!(e.conn(id).unwrap().version, v10::VERSION);
    e.conn_mut(id).unwrap().out.clear();
    id
}

#[test]
fn tlv_table_messages_in_1_0_and_1_3() {
    use crate::openflow::message::{ControllerRole, RoleMsg};
    use crate::openflow::tlv::{
        NXT_TLV_TABLE_MOD, NXT_TLV_TABLE_REPLY, NXT_TLV_TABLE_REQUEST, TlvCommand, TlvMap,
        TlvTableMod, TlvTableReply, code,
    };
    let add = |class, index| {
        let m = TlvTableMod {
            command: TlvCommand::Add,
            maps: vec![TlvMap {
                class,
                kind: 0x80,
                len: 4,
                index,
            }],
        };
        nx_msg(NXT_TLV_TABLE_MOD, &m.encode())
    };
    let std = v10::Ctx::default();
    let mut e = engine("OpenFlow10,OpenFlow13");
    let a = connect10(&mut e);
    assert!(send10(&mut e, a, &add(0x0102, 0), &std).is_empty());
    // Errors in 1.0 are Nicira vendor errors, read back as sent.
    assert_eq!(
        error_of(&send10(&mut e, a, &add(0x0103, 0), &std)),
        Some(code::ALREADY_MAPPED)
    );
    let got = send10(&mut e, a, &nx_msg(NXT_TLV_TABLE_REQUEST, &[]), &std);
    let [(_, Message::Experimenter(x))] = &got[..] else {
        panic!("{got:?}");
    };
    assert_eq!(x.exp_type, NXT_TLV_TABLE_REPLY);
    let r = TlvTableReply::decode(&x.data).unwrap();
    assert_eq!((r.max_option_space, r.max_fields, r.maps.len()), (8, 64, 1));
    // 1.3: experimenter errors; a body on a request; a slave may not
    // change the table.
    let b = connect(&mut e, OF13);
    let got = send(&mut e, b, 4, 2, &add(0x0102, 1));
    assert_eq!(error13(&got), Some(code::DUP_ENTRY));
    let got = send(&mut e, b, 4, 3, &nx_msg(NXT_TLV_TABLE_REQUEST, &[0; 8]));
    assert_eq!(
        error13(&got),
        Some(ErrorCode::BadRequest(
            crate::openflow::error::BadRequestCode::BadLen
        ))
    );
    let slave = Message::RoleRequest(RoleMsg {
        role: ControllerRole::Slave,
        generation_id: 1,
    });
    send(&mut e, b, 4, 4, &slave);
    let got = send(&mut e, b, 4, 5, &add(0x0104, 2));
    assert_eq!(
        error13(&got),
        Some(ErrorCode::BadRequest(
            crate::openflow::error::BadRequestCode::IsSlave
        ))
    );
    // Malformed: a cut map is OFPBRC_BAD_LEN, never a panic.
    let mut cut = TlvTableMod {
        command: TlvCommand::Add,
        maps: vec![],
    }
    .encode();
    cut.extend([1, 2, 3]);
    let got = send10(&mut e, a, &nx_msg(NXT_TLV_TABLE_MOD, &cut), &std);
    assert_eq!(
        error_of(&got),
        Some(ErrorCode::BadRequest(
            crate::openflow::error::BadRequestCode::BadLen
        ))
    );
}
