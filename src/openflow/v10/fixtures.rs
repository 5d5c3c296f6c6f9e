//! Sample messages of the OpenFlow 1.0 codec and their bytes, each checked
//! by hand against `ovs-ofctl ofp-print` (3.1), whose output is quoted
//! beside it. `cargo test --lib v10::fixtures -- --ignored --nocapture`
//! prints the encodings, to check again after a change.
use std::net::Ipv4Addr;

use super::*;
use crate::openflow::action::Action;
use crate::openflow::flow::{FlowMod, FlowModCommand, FlowRemoved, PacketIn, PacketOut};
use crate::openflow::flow_match::Match;
use crate::openflow::instruction::Instruction;
use crate::openflow::multipart::*;
use crate::openflow::oxm::{Masked, OxmField as F};
use crate::openflow::port::{PortMod, PortStatus};
use crate::wire::MacAddr;

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn tcp_match() -> Match {
    Match::from_fields(vec![
        F::InPort(PortNo(1)),
        F::EthType(0x0800),
        F::IpProto(6),
        F::Ipv4Src(Masked::new(
            Ipv4Addr::new(10, 0, 0, 0),
            Ipv4Addr::new(255, 255, 255, 0),
        )),
        F::TcpDst(80),
    ])
    .unwrap()
}

pub(super) fn samples() -> Vec<Message> {
    let fm = FlowMod {
        cookie: 0x1234,
        idle_timeout: 30,
        priority: 100,
        flags: flow10::flags::SEND_FLOW_REM,
        match_: tcp_match(),
        instructions: vec![Instruction::ApplyActions(vec![
            Action::PushVlan(0x8100),
            Action::SetField(F::VlanVid(Masked::exact(0x1005))),
            Action::output(PortNo(2)),
            Action::SetQueue(3),
            Action::Output {
                port: PortNo(1),
                max_len: 0,
            },
            Action::SetField(F::TcpDst(8080)),
            Action::output(PortNo::CONTROLLER),
        ])],
        ..FlowMod::default()
    };
    let arp = Match::from_fields(vec![
        F::EthType(0x0806),
        F::ArpOp(2),
        F::ArpSpa(Masked::exact(Ipv4Addr::new(10, 0, 0, 1))),
    ])
    .unwrap();
    let vlan_icmp = Match::from_fields(vec![
        F::EthSrc(Masked::exact(MacAddr([2, 0, 0, 0, 0, 1]))),
        F::VlanVid(Masked::exact(0x1000 | 10)),
        F::VlanPcp(3),
        F::EthType(0x0800),
        F::IpDscp(46),
        F::IpProto(1),
        F::Icmpv4Type(8),
        F::Icmpv4Code(0),
    ])
    .unwrap();
    let untagged = Match::from_fields(vec![F::VlanVid(Masked::exact(0))]).unwrap();
    let del = FlowMod {
        command: FlowModCommand::DeleteStrict,
        table_id: 0xff,
        priority: 7,
        out_port: PortNo(3),
        match_: arp.clone(),
        ..FlowMod::default()
    };
    let edit = FlowMod {
        command: FlowModCommand::Modify,
        match_: vlan_icmp.clone(),
        instructions: vec![Instruction::ApplyActions(vec![
            Action::PopVlan,
            Action::SetField(F::EthDst(Masked::exact(MacAddr([2, 0, 0, 0, 0, 9])))),
            Action::SetField(F::Ipv4Src(Masked::exact(Ipv4Addr::new(192, 168, 0, 1)))),
            Action::SetField(F::IpDscp(10)),
            Action::SetField(F::VlanPcp(5)),
            Action::output(PortNo::IN_PORT),
        ])],
        ..FlowMod::default()
    };
    let port = Port {
        port_no: PortNo(1),
        hw_addr: MacAddr([2, 0, 0, 0, 0, 1]),
        name: "eth1".into(),
        config: crate::openflow::port::config::NO_PACKET_IN,
        state: crate::openflow::port::state::LINK_DOWN,
        curr: crate::openflow::port::features::F_10GB_FD | crate::openflow::port::features::COPPER,
        supported: crate::openflow::port::features::F_1GB_FD
            | crate::openflow::port::features::AUTONEG,
        ..Port::default()
    };
    let fs = FlowStats {
        duration_sec: 5,
        duration_nsec: 500_000_000,
        priority: 100,
        idle_timeout: 30,
        cookie: 0x1234,
        packet_count: 5,
        byte_count: 500,
        match_: tcp_match(),
        instructions: vec![
            Instruction::ApplyActions(vec![Action::CopyTtlOut, Action::output(PortNo(2))]),
            Instruction::GotoTable(1),
        ],
        ..FlowStats::default()
    };
    let reply = |body| Message::MultipartReply(MultipartReply { flags: 0, body });
    let request = |body| Message::MultipartRequest(MultipartRequest { flags: 0, body });
    vec![
        Message::FlowMod(fm),
        Message::FlowMod(del),
        Message::FlowMod(edit),
        Message::PacketIn(PacketIn {
            buffer_id: 0x100,
            total_len: 60,
            reason: 1,
            match_: Match::from_fields(vec![F::InPort(PortNo(3))]).unwrap(),
            data: vec![
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
            ],
            ..PacketIn::default()
        }),
        Message::PacketOut(PacketOut {
            actions: vec![
                Action::SetField(F::VlanVid(Masked::exact(0x1000 | 9))),
                Action::output(PortNo::FLOOD),
            ],
            data: vec![
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
            ],
            ..PacketOut::default()
        }),
        Message::FlowRemoved(FlowRemoved {
            cookie: 9,
            priority: 5,
            reason: 0,
            duration_sec: 61,
            idle_timeout: 60,
            packet_count: 3,
            byte_count: 180,
            match_: untagged,
            ..FlowRemoved::default()
        }),
        Message::PortStatus(PortStatus {
            reason: 2,
            desc: port.clone(),
        }),
        Message::PortMod(PortMod {
            port_no: PortNo(1),
            hw_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            config: crate::openflow::port::config::PORT_DOWN,
            mask: crate::openflow::port::config::PORT_DOWN,
            advertise: 0,
        }),
        Message::SetConfig(crate::openflow::message::SwitchConfig::default()),
        Message::Experimenter(crate::openflow::message::Experimenter {
            experimenter: 0x2320,
            exp_type: 15,
            data: vec![1, 0, 0, 0, 0, 0, 0, 0],
        }),
        Message::Error(crate::openflow::error::ErrorMsg {
            code: ErrorCode::BadMatch(crate::openflow::error::BadMatchCode::BadPrereq),
            data: vec![1, 5, 0, 8, 0, 0, 0, 1],
        }),
        Message::QueueGetConfigRequest(PortNo(1)),
        Message::QueueGetConfigReply(crate::openflow::message::QueueGetConfigReply {
            port: PortNo(1),
            queues: vec![crate::openflow::message::PacketQueue {
                queue_id: 3,
                port: PortNo(1),
                properties: vec![crate::openflow::message::QueueProp {
                    property: 1,
                    data: vec![0, 100, 0, 0, 0, 0, 0, 0],
                }],
            }],
        }),
        request(MultipartRequestBody::Flow(FlowStatsRequest {
            match_: arp,
            ..FlowStatsRequest::default()
        })),
        request(MultipartRequestBody::PortStats {
            port_no: PortNo::ANY,
        }),
        request(MultipartRequestBody::Queue {
            port_no: PortNo::ANY,
            queue_id: 0xffff_ffff,
        }),
        request(MultipartRequestBody::Table),
        reply(MultipartReplyBody::Flow(vec![fs])),
        reply(MultipartReplyBody::Table(vec![TableStats {
            table_id: 0,
            active_count: 4,
            lookup_count: 100,
            matched_count: 90,
        }])),
        reply(MultipartReplyBody::PortStats(vec![PortStats {
            port_no: PortNo(1),
            rx_packets: 11,
            tx_packets: 22,
            rx_bytes: 1100,
            tx_bytes: 2200,
            ..PortStats::default()
        }])),
        reply(MultipartReplyBody::Queue(vec![QueueStats {
            port_no: PortNo(1),
            queue_id: 3,
            tx_bytes: 1000,
            tx_packets: 10,
            ..QueueStats::default()
        }])),
        reply(MultipartReplyBody::Aggregate(AggregateStats {
            packet_count: 5,
            byte_count: 500,
            flow_count: 2,
        })),
    ]
}

/// Hex of `samples()`, in order, with what `ovs-ofctl ofp-print` says.
pub(super) const FIXTURES: &[&str] = &[
    // OFPT_FLOW_MOD (xid=0x7): ADD priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80
    // cookie:0x1234 idle:30 send_flow_rem
    // actions=mod_vlan_vid:5,output:2,enqueue:1:3,mod_tp_dst:8080,CONTROLLER:65535
    "010e0078000000070038084e0001000000000000000000000000000000000800000600000a00000000000000\
     0000005000000000000012340000001e00000064ffffffffffff000100010008000500000000000800020000\
     000b0010000100000000000000000003000a00081f90000000000008fffdffff",
    // OFPT_FLOW_MOD (xid=0x7): DEL_STRICT priority=7,arp,arp_spa=10.0.0.1,arp_op=2 out_port:3
    // actions=drop
    "010e004800000007003800cf0000000000000000000000000000000000000806000200000a00000100000000\
     0000000000000000000000000004000000000007ffffffff00030000",
    // OFPT_FLOW_MOD (xid=0x7): MOD icmp,dl_vlan=10,dl_vlan_pcp=3,dl_src=02:00:00:00:00:01,
    // nw_tos=184,icmp_type=8,icmp_code=0 actions=strip_vlan,mod_dl_dst:02:00:00:00:00:09,
    // mod_nw_src:192.168.0.1,mod_nw_tos:40,mod_vlan_pcp:5,IN_PORT
    "010e008000000007000820090000020000000001000000000000000a03000800b80100000000000000000000\
     0008000000000000000000000001000000008000ffffffffffff0000000300080000000000050010020000000\
     00900000000000000060008c0a800010008000828000000000200080500000000000008fff80000",
    // OFPT_PACKET_IN (xid=0x7): total_len=60 in_port=3 (via action) data_len=14 buffer=0x00000100
    "010a00200000000700000100003c00030100ffffffffffff0200000000010806",
    // OFPT_PACKET_OUT (xid=0x7): in_port=CONTROLLER actions=mod_vlan_vid:9,FLOOD data_len=14
    "010d002e00000007fffffffffffd0010000100080009000000000008fffb0000ffffffffffff020000000001\
     0806",
    // OFPT_FLOW_REMOVED (xid=0x7): priority=5,vlan_tci=0x0000 reason=idle cookie:0x9
    // duration61s idle60 pkts3 bytes180
    "010b005800000007003820fd0000000000000000000000000000ffff00000000000000000000000000000000\
     000000000000000000000009000500000000003d00000000003c0000000000000000000300000000000000b4",
    // OFPT_PORT_STATUS (xid=0x7): MOD: 1(eth1): addr:02:00:00:00:00:01
    //      config: NO_PACKET_IN  state: LINK_DOWN  current: 10GB-FD COPPER
    //      supported: 1GB-FD AUTO_NEG
    "010c00400000000702000000000000000001020000000001657468310000000000000000000000000000004\
     000000001000000c0000000000000022000000000",
    // OFPT_PORT_MOD (xid=0x7): port: 1: addr:02:00:00:00:00:01
    //      config: PORT_DOWN  mask: PORT_DOWN  advertise: UNCHANGED
    "010f002000000007000102000000000100000001000000010000000000000000",
    // OFPT_SET_CONFIG (xid=0x7): frags=normal miss_send_len=128
    "0109000c0000000700000080",
    // NXT_FLOW_MOD_TABLE_ID (xid=0x7): enable
    "0104001800000007000023200000000f0100000000000000",
    // OFPT_ERROR (xid=0x7): OFPBMC_BAD_PREREQ  (then the request: OFPT_FEATURES_REQUEST)
    "0101001c00000007b0c2000000002320000101040105000800000001",
    // OFPT_QUEUE_GET_CONFIG_REQUEST (xid=0x7): port=1
    "0114000c0000000700010000",
    // OFPT_QUEUE_GET_CONFIG_REPLY (xid=0x7): port=1 / queue 3: min_rate:10.0%
    "01150028000000070001000000000000000000030018000000010010000000000064000000000000",
    // OFPST_FLOW request (xid=0x7): arp,arp_spa=10.0.0.1,arp_op=2
    "011000380000000700010000003800cf0000000000000000000000000000000000000806000200000a000001\
     0000000000000000ff00ffff",
    // OFPST_PORT request (xid=0x7): port_no=ANY
    "011000140000000700040000ffff000000000000",
    // OFPST_QUEUE request (xid=0x7): port=ANY queue=ALL
    "011000140000000700050000fffc0000ffffffff",
    // OFPST_TABLE request (xid=0x7):
    "0110000c0000000700030000",
    // OFPST_FLOW reply (xid=0x7): cookie=0x1234, duration=5.500s, table=0, n_packets=5,
    // n_bytes=500, idle_timeout=30, priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80
    // actions=output:2
    "0111006c0000000700010000006000000038084e000100000000000000000000000000000000080000060000\
     0a0000000000000000000050000000051dcd65000064001e0000000000000000000000000000123400000000\
     0000000500000000000001f40000000800020000",
    // OFPST_TABLE reply (xid=0x7): table 0 ("table0"): active=4, lookup=100, matched=90
    //     max_entries=4294967295
    "0111004c0000000700030000000000007461626c6530000000000000000000000000000000000000000000000\
     0000000003fffffffffffff000000040000000000000064000000000000005a",
    // OFPST_PORT reply (xid=0x7): 1 ports
    //   port  1: rx pkts=11, bytes=1100, drop=0, errs=0, frame=0, over=0, crc=0
    //            tx pkts=22, bytes=2200, drop=0, errs=0, coll=0
    "0111007400000007000400000001000000000000000000000000000b0000000000000016000000000000044c\
     0000000000000898000000000000000000000000000000000000000000000000000000000000000000000000\
     00000000000000000000000000000000000000000000000000000000",
    // OFPST_QUEUE reply (xid=0x7): 1 queues
    //   port 1 queue 3: bytes=1000, pkts=10, errors=0, duration=?
    "0111002c0000000700050000000100000000000300000000000003e8000000000000000a0000000000000000",
    // OFPST_AGGREGATE reply (xid=0x7): packet_count=5 byte_count=500 flow_count=2
    "011100240000000700020000000000000000000500000000000001f40000000200000000",
];

/// Bytes of a hex string (anything but hex digits, such as spaces, is
/// skipped).
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
#[ignore]
fn print_samples() {
    for m in samples() {
        println!("{}", hex(&encode(&m, 7).unwrap()));
    }
    let port = Port {
        port_no: PortNo::LOCAL,
        hw_addr: MacAddr([2, 0, 0, 0, 0, 0xfe]),
        name: "br0".into(),
        ..Port::default()
    };
    let f = SwitchFeatures {
        datapath_id: 0xab,
        n_buffers: 256,
        n_tables: 1,
        capabilities: 0x4f,
        ..SwitchFeatures::default()
    };
    println!("{}", hex(&encode_features_reply(&f, &[port], 7)));
}
