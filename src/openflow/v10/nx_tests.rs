//! Tests of the NXM messages: `ovs-ofctl`'s own bytes, messages Open
//! vSwitch's `ofp-print` reads as meant (checked when the fixtures were
//! made), round trips and errors.

use std::net::Ipv6Addr;

use super::super::{Ctx, decode, encode_with, split_reply_with};
use super::*;
use crate::openflow::action::Action;
use crate::openflow::error::{BadRequestCode, FlowModFailedCode};
use crate::openflow::instruction::Instruction;
use crate::openflow::message::Message;
use crate::openflow::multipart::{
    AggregateStats, MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
};
use crate::openflow::nicira::{NxMatchField, Register};
use crate::openflow::oxm::OxmField;
use crate::openflow::port::PortNo;
use crate::openflow::v10::fixtures::unhex;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn nxm_ctx() -> Ctx {
    Ctx {
        flow_format: FlowFormat::Nxm,
        ..Ctx::default()
    }
}

fn round_trip(msg: &Message, ctx: &Ctx) -> Vec<u8> {
    let b = encode_with(msg, 7, ctx).unwrap();
    let (h, back) = decode(&b, ctx).unwrap();
    assert_eq!(h.xid, 7);
    assert_eq!(&back, msg, "{}", hex(&b));
    b
}

/// `ovs-ofctl add-flow` (3.1, no `-O`) of
/// `reg0=5,reg3=0x10/0xf0,actions=output:2`.
const REG_FLOW_MOD: &str = "0104005000000008 00002320 0000000d
    0000000000000000 0000 0000 0000 8000 ffffffff ffff 0000 0014 000000000000
    0001000400000005 0001070800000010000000f0 00000000
    0000000800020000";

/// `ovs-ofctl del-flows 'cookie=5/-1,ipv6'`.
const DEL_COOKIE: &str = "0104004800000008 00002320 0000000d
    0000000000000000 0003 0000 0000 8000 ffffffff ffff 0000 0012 000000000000
    0000060286dd 00013c080000000000000005 000000000000";

#[test]
fn ovs_ofctl_flow_mods() {
    let b = unhex(REG_FLOW_MOD);
    let (h, msg) = decode(&b, &Ctx::default()).unwrap();
    assert_eq!(h.xid, 8);
    let Message::FlowMod(fm) = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(fm.command, FlowModCommand::Add);
    assert_eq!(fm.table_id, 0);
    assert_eq!(fm.priority, 0x8000);
    assert_eq!(
        fm.match_.registers(),
        &[
            NxMatchField {
                reg: Register::Reg(0),
                value: 5,
                mask: None
            },
            NxMatchField {
                reg: Register::Reg(3),
                value: 0x10,
                mask: Some(0xf0)
            },
        ]
    );
    assert_eq!(
        fm.instructions,
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: PortNo(2),
            max_len: 0
        }])]
    );
    // The table-id extension and NXM format are per connection, but a
    // flow mod of either form is read in any.
    assert_eq!(encode_with(&msg, 8, &nxm_ctx()).unwrap(), b);

    let b = unhex(DEL_COOKIE);
    let (_, msg) = decode(&b, &Ctx::default()).unwrap();
    let Message::FlowMod(fm) = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(fm.command, FlowModCommand::Delete);
    assert_eq!(fm.table_id, crate::openflow::table_id::ALL);
    assert_eq!((fm.cookie, fm.cookie_mask), (5, u64::MAX));
    assert_eq!(fm.match_.eth_type(), Some(0x86dd));
    assert_eq!(encode_with(&msg, 8, &nxm_ctx()).unwrap(), b);
}

#[test]
fn flow_mod_errors() {
    let b = unhex(REG_FLOW_MOD);
    // A match longer than the message; a cut match.
    let mut long = b.clone();
    long[16 + 24 + 1] = 0x60;
    assert_eq!(
        decode(&long, &Ctx::default()).unwrap_err().code,
        ErrorCode::BadMatch(BadMatchCode::BadLen)
    );
    let mut cut = b.clone();
    cut[16 + 24 + 1] = 0x13;
    assert!(decode(&cut, &Ctx::default()).is_err());
    // Cut inside the fixed part.
    let mut short = b[..30].to_vec();
    short[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(
        decode(&short, &Ctx::default()).unwrap_err().code,
        ErrorCode::BadRequest(BadRequestCode::BadLen)
    );
    // Selecting by cookie when adding.
    let mut add = unhex(DEL_COOKIE);
    add[16 + 9] = 0;
    assert_eq!(
        decode(&add, &Ctx::default()).unwrap_err().code,
        ErrorCode::BadMatch(BadMatchCode::BadField)
    );
    // A cookie wildcarded whole is no selector, even when adding.
    let add0 = unhex(
        "0104005000000008 00002320 0000000d
         0000000000000009 0000 0000 0000 8000 ffffffff ffff 0000 001a 000000000000
         0000060286dd 00013d10 0000000000000000 0000000000000000 000000000000",
    );
    let (_, Message::FlowMod(fm)) = decode(&add0, &Ctx::default()).unwrap() else {
        panic!()
    };
    assert_eq!(
        (fm.command, fm.cookie, fm.cookie_mask),
        (FlowModCommand::Add, 9, 0)
    );
    // An unknown command, the EMERG flag.
    let mut cmd = b.clone();
    cmd[16 + 9] = 9;
    assert_eq!(
        decode(&cmd, &Ctx::default()).unwrap_err().code,
        ErrorCode::FlowModFailed(FlowModFailedCode::BadCommand)
    );
    let mut emerg = b.clone();
    emerg[16 + 23] = 4;
    assert_eq!(
        decode(&emerg, &Ctx::default()).unwrap_err().code,
        ErrorCode::FlowModFailed(FlowModFailedCode::TableFull)
    );
    // The table id in the command's high byte, with the extension.
    let mut t = b;
    t[16 + 8] = 3;
    let ctx = Ctx {
        flow_mod_table_id: true,
        ..Ctx::default()
    };
    let (_, Message::FlowMod(fm)) = decode(&t, &ctx).unwrap() else {
        panic!()
    };
    assert_eq!(fm.table_id, 3);
}

fn ipv6_match() -> Match {
    Match::from_fields(vec![
        OxmField::EthType(0x86dd),
        OxmField::Ipv6Src(Masked::exact("2001:db8::1".parse::<Ipv6Addr>().unwrap())),
    ])
    .unwrap()
    .with_registers(vec![NxMatchField {
        reg: Register::Reg(1),
        value: 9,
        mask: None,
    }])
    .unwrap()
}

/// NXT_FLOW_REMOVED as `ovs-ofctl ofp-print` reads it:
/// `priority=100,ipv6,reg1=0x9,ipv6_src=2001:db8::1 reason=idle
/// table_id=2 cookie:0x2a duration3.000000004s idle5 pkts6 bytes7`.
const FLOW_REMOVED: &str = "0104006000000000 00002320 0000000e
    000000000000002a 0064 00 03 00000003 00000004 0005 0022
    0000000000000006 0000000000000007
    0000060286dd 0001261020010db8000000000000000000000001 0001020400000009
    000000000000";

#[test]
fn flow_removed() {
    let fr = FlowRemoved {
        cookie: 42,
        priority: 100,
        reason: 0,
        table_id: 2,
        duration_sec: 3,
        duration_nsec: 4,
        idle_timeout: 5,
        hard_timeout: 0,
        packet_count: 6,
        byte_count: 7,
        match_: ipv6_match(),
    };
    let msg = Message::FlowRemoved(fr);
    let b = encode_with(&msg, 0, &nxm_ctx()).unwrap();
    assert_eq!(hex(&b), hex(&unhex(FLOW_REMOVED)));
    assert_eq!(b.len(), 16 + 40 + 40);
    let (_, back) = decode(&b, &Ctx::default()).unwrap();
    assert_eq!(back, msg);
    // In 1.0's own format the same removal is an OFPT_FLOW_REMOVED.
    let std = encode_with(&msg, 0, &Ctx::default()).unwrap();
    assert_eq!(std[1], super::super::msg_type::FLOW_REMOVED);
    // A reason 1.0 has not is sent as DELETE.
    let Message::FlowRemoved(mut fr) = msg else {
        unreachable!()
    };
    fr.reason = crate::openflow::flow::flow_removed_reason::GROUP_DELETE;
    let b = encode_with(&Message::FlowRemoved(fr), 0, &nxm_ctx()).unwrap();
    assert_eq!(b[16 + 10], 2);
    // Cut short, trailing bytes.
    let good = unhex(FLOW_REMOVED);
    let mut cut = good[..good.len() - 8].to_vec();
    let n = cut.len() as u16;
    cut[2..4].copy_from_slice(&n.to_be_bytes());
    assert!(decode(&cut, &Ctx::default()).is_err());
    let mut long = good.clone();
    long.extend_from_slice(&[0; 8]);
    let n = long.len() as u16;
    long[2..4].copy_from_slice(&n.to_be_bytes());
    assert!(decode(&long, &Ctx::default()).is_err());
}

fn packet_in() -> PacketIn {
    PacketIn {
        buffer_id: crate::openflow::NO_BUFFER,
        total_len: 64,
        reason: 1,
        table_id: 0,
        cookie: 0x77,
        match_: Match::from_fields(vec![OxmField::InPort(PortNo(3))])
            .unwrap()
            .with_registers(vec![NxMatchField {
                reg: Register::Reg(0),
                value: 5,
                mask: None,
            }])
            .unwrap(),
        data: vec![0xab; 20],
    }
}

/// NXT_PACKET_IN (xid 7): `cookie=0x77 total_len=64 reg0=0x5,in_port=3
/// (via action) data_len=20 (unbuffered)`.
const PACKET_IN: &str = "0104004e00000007 00002320 00000011
    ffffffff 0040 01 00 0000000000000077 000e 000000000000
    000000020003 0001000400000005 0000 0000
    abababababababababababababababababababab";

/// NXT_PACKET_IN2 of the same packet-in (metadata as OXM, as Open vSwitch
/// writes them for 1.0).
const PACKET_IN2: &str = "0104006800000000 00002320 0000001e
    00000018 abababababababababababababababababababab
    0001000800000040 0003000500000000 0004001000000000 0000000000000077
    0005000501000000 0006001480000004000000030001000400000005 00000000";

#[test]
fn packet_ins() {
    let p = Message::PacketIn(packet_in());
    let nxt = Ctx {
        packet_in_format: PacketInFormat::Nxt,
        ..Ctx::default()
    };
    assert_eq!(hex(&round_trip(&p, &nxt)), hex(&unhex(PACKET_IN)));
    let nxt2 = Ctx {
        packet_in_format: PacketInFormat::Nxt2,
        ..Ctx::default()
    };
    let b = encode_with(&p, 0, &nxt2).unwrap();
    assert_eq!(hex(&b), hex(&unhex(PACKET_IN2)));
    assert_eq!(decode(&b, &Ctx::default()).unwrap().1, p);
    // A whole, unbuffered packet of a table miss: no FULL_LEN, no cookie.
    let mut whole = packet_in();
    whole.total_len = 20;
    whole.cookie = u64::MAX;
    whole.buffer_id = 9;
    let whole = Message::PacketIn(whole);
    let b = encode_with(&whole, 0, &nxt2).unwrap();
    assert_eq!(decode(&b, &Ctx::default()).unwrap().1, whole);
    // Properties: too short a length, a value of the wrong size, unknown
    // ones skipped.
    let mut bad = unhex(PACKET_IN2);
    bad[16 + 2..16 + 4].copy_from_slice(&[0, 3]);
    assert!(decode(&bad, &Ctx::default()).is_err());
    let mut bad = unhex(PACKET_IN2);
    let at = 16 + 24 + 8 + 3; // TABLE_ID's length
    bad[at] = 6;
    assert!(decode(&bad, &Ctx::default()).is_err());
    let mut more = unhex(PACKET_IN2);
    more.extend_from_slice(&unhex("0007000501000000"));
    let n = more.len() as u16;
    more[2..4].copy_from_slice(&n.to_be_bytes());
    assert_eq!(decode(&more, &Ctx::default()).unwrap().1, p);
}

fn flow_stats() -> FlowStats {
    FlowStats {
        table_id: 1,
        duration_sec: 2,
        duration_nsec: 3,
        priority: 4,
        idle_timeout: 5,
        hard_timeout: 6,
        flags: 0,
        cookie: 7,
        packet_count: 8,
        byte_count: 9,
        match_: ipv6_match(),
        instructions: vec![Instruction::ApplyActions(vec![Action::Output {
            port: PortNo(2),
            max_len: 0,
        }])],
    }
}

/// NXST_FLOW reply: `cookie=0x7, duration=2.000000003s, table=1,
/// n_packets=8, n_bytes=9, idle_timeout=5, hard_timeout=6,
/// priority=4,ipv6,reg1=0x9,ipv6_src=2001:db8::1 actions=output:2`.
const FLOW_STATS: &str = "0111007800000005 ffff 0000 00002320 00000000 00000000
    0060 01 00 00000002 00000003 0004 0005 0006 0022 00000000
    0000000000000007 0000000000000008 0000000000000009
    0000060286dd 0001261020010db8000000000000000000000001 0001020400000009
    000000000000 0000000800020000";

#[test]
fn flow_statistics() {
    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: MultipartRequestBody::Flow(FlowStatsRequest {
            table_id: 0xff,
            out_port: PortNo::ANY,
            out_group: group_id::ANY,
            cookie: 0x10,
            cookie_mask: 0xf0,
            match_: ipv6_match(),
        }),
    });
    let b = round_trip(&req, &nxm_ctx());
    assert_eq!(&b[8..24], &unhex("ffff0000 00002320 00000000 00000000")[..]);
    let agg = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: MultipartRequestBody::Aggregate(FlowStatsRequest::default()),
    });
    let b = round_trip(&agg, &nxm_ctx());
    assert_eq!(hex(&b[16..20]), "00000001");

    let reply = Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Flow(vec![flow_stats()]),
    });
    let b = encode_with(&reply, 5, &nxm_ctx()).unwrap();
    assert_eq!(hex(&b), hex(&unhex(FLOW_STATS)));
    assert_eq!(decode(&b, &Ctx::default()).unwrap().1, reply);
    let agg = Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Aggregate(AggregateStats {
            packet_count: 1,
            byte_count: 2,
            flow_count: 3,
        }),
    });
    let b = round_trip(&agg, &nxm_ctx());
    assert_eq!(b.len(), 24 + 24);
    // A request whose match does not fill the message exactly.
    let mut b = encode_with(&req, 1, &nxm_ctx()).unwrap();
    b.extend_from_slice(&[0; 8]);
    let n = b.len() as u16;
    b[2..4].copy_from_slice(&n.to_be_bytes());
    assert!(decode(&b, &Ctx::default()).is_err());
    // An entry shorter than its fixed part.
    let mut short = unhex(FLOW_STATS);
    short[24..26].copy_from_slice(&[0, 40]);
    assert!(decode(&short, &Ctx::default()).is_err());
}

#[test]
fn long_replies_split_by_nxm_size() {
    let flows: Vec<FlowStats> = (0..2000).map(|_| flow_stats()).collect();
    let reply = MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Flow(flows),
    };
    let parts = split_reply_with(reply, 65535, &nxm_ctx());
    assert!(parts.len() > 1);
    let mut total = 0;
    for p in &parts {
        let b = encode_with(&Message::MultipartReply(p.clone()), 1, &nxm_ctx()).unwrap();
        assert!(b.len() <= 65535);
        if let MultipartReplyBody::Flow(f) = &p.body {
            total += f.len();
        }
    }
    assert_eq!(total, 2000);
}

#[test]
fn formats_from_the_wire() {
    assert_eq!(FlowFormat::from_wire(0), Some(FlowFormat::OpenFlow10));
    assert_eq!(FlowFormat::from_wire(2), Some(FlowFormat::Nxm));
    assert_eq!(FlowFormat::from_wire(1), None);
    assert_eq!(PacketInFormat::from_wire(2), Some(PacketInFormat::Nxt2));
    assert_eq!(PacketInFormat::from_wire(3), None);
}
