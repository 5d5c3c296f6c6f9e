//! The OpenFlow 1.3 codec through its public API: byte fixtures, round trips
//! of every message type, the errors `decode` names, property tests, and
//! cross-checks against Open vSwitch's `ovs-ofctl` (skipped, with a note,
//! when it is not installed): it must decode our encodings without
//! complaint, and what it sends to a fake switch must decode here.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mswitch::openflow::action::{ActionId, ActionType};
use mswitch::openflow::bundle::{BundleAdd, BundleCtrl, BundleCtrlType, RoleStatus, bundle_flags};
use mswitch::openflow::error::{
    BadActionCode, BadInstructionCode, BadMatchCode, BadRequestCode, FlowModFailedCode,
    GroupModFailedCode, HelloFailedCode, MeterModFailedCode, RoleRequestFailedCode,
    TableFeaturesFailedCode,
};
use mswitch::openflow::group::{
    BucketCounter, GroupDesc, GroupFeatures, GroupStats, group_capabilities, group_id,
};
use mswitch::openflow::instruction::{InstructionId, InstructionType};
use mswitch::openflow::message::{
    AsyncConfig, ControllerRole, Experimenter, PacketQueue, QueueGetConfigReply, QueueProp,
    RoleMsg, SwitchConfig, SwitchFeatures, capabilities,
};
use mswitch::openflow::meter::{
    MeterBandStats, MeterConfig, MeterFeatures, MeterModCommand, MeterStats, meter_flags,
};
use mswitch::openflow::multipart::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, MultipartType, PortStats, QueueStats,
    TableStats,
};
use mswitch::openflow::nicira::{FieldRef, NxAction, NxMatchField, Register};
use mswitch::openflow::oxm::{OFPVID_PRESENT, OxmId};
use mswitch::openflow::port::{config, features, state};
use mswitch::openflow::table::TableFeatureProp;
use mswitch::openflow::*;
use mswitch::wire::MacAddr;
use mswitch::wire::ethernet::udp_frame;
use proptest::prelude::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Sample messages.

/// `tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80`
fn tcp_match() -> Match {
    Match::from_fields(vec![
        OxmField::InPort(PortNo(1)),
        OxmField::EthType(0x0800),
        OxmField::IpProto(6),
        OxmField::Ipv4Src(Masked::new(
            Ipv4Addr::new(10, 0, 0, 0),
            Ipv4Addr::new(255, 255, 255, 0),
        )),
        OxmField::TcpDst(80),
    ])
    .unwrap()
}

fn flow_mod() -> FlowMod {
    FlowMod {
        cookie: 0x1234,
        idle_timeout: 30,
        priority: 100,
        match_: tcp_match(),
        instructions: vec![
            Instruction::ApplyActions(vec![
                Action::PushVlan(0x8100),
                Action::SetField(OxmField::VlanVid(Masked::exact(OFPVID_PRESENT | 5))),
                Action::output(PortNo(2)),
            ]),
            Instruction::WriteMetadata {
                metadata: 5,
                mask: 0xff,
            },
            Instruction::GotoTable(1),
        ],
        ..FlowMod::default()
    }
}

fn nx_reg(reg: Register, value: u64, mask: Option<u64>) -> NxMatchField {
    NxMatchField { reg, value, mask }
}

/// `reg0=5/0xff,reg2=0,reg3=7,actions=load:0x5->NXM_NX_REG0[],resubmit(,1),
/// resubmit(3),resubmit(4,2)`, as ovs-ofctl -O OpenFlow13 sends it.
fn nicira_flow_mod() -> FlowMod {
    let r0 = FieldRef::reg(Register::Reg(0));
    FlowMod {
        priority: 0x8000,
        match_: Match::new()
            .with_registers(vec![
                nx_reg(Register::Reg(0), 5, Some(0xff)),
                nx_reg(Register::Reg(2), 0, None),
                nx_reg(Register::Reg(3), 7, None),
            ])
            .unwrap(),
        instructions: vec![Instruction::ApplyActions(vec![
            Action::Nx(NxAction::RegLoad {
                dst: r0,
                ofs: 0,
                n_bits: 32,
                value: 5,
            }),
            Action::Nx(NxAction::resubmit_table(1)),
            Action::Nx(NxAction::Resubmit {
                in_port: 3,
                table: None,
                with_table: true,
            }),
            Action::Nx(NxAction::Resubmit {
                in_port: 4,
                table: Some(2),
                with_table: true,
            }),
        ])],
        ..FlowMod::default()
    }
}

/// `actions=move:NXM_OF_ETH_SRC[0..31]->NXM_NX_REG0[],note:01.02.03,
/// output:NXM_NX_REG1[0..15],set_field:5->reg3,load:0x3->NXM_NX_REG2[4..7],
/// move:NXM_NX_REG0[]->OXM_OF_PKT_REG1[0..31]`, as ovs-ofctl sends it.
fn nicira_flow_mod2() -> FlowMod {
    let reg = |i| FieldRef::reg(Register::Reg(i));
    FlowMod {
        priority: 0x8000,
        instructions: vec![Instruction::ApplyActions(vec![
            Action::Nx(NxAction::RegMove {
                src: FieldRef(0x0000_0406),
                dst: reg(0),
                src_ofs: 0,
                dst_ofs: 0,
                n_bits: 32,
            }),
            Action::Nx(NxAction::note(&[1, 2, 3]).unwrap()),
            Action::Nx(NxAction::OutputReg {
                src: reg(1),
                ofs: 0,
                n_bits: 16,
                max_len: 0xffff,
                v2: false,
            }),
            Action::Nx(NxAction::SetReg {
                reg: Register::Reg(3),
                value: 5,
            }),
            Action::Nx(NxAction::RegLoad {
                dst: reg(2),
                ofs: 4,
                n_bits: 4,
                value: 3,
            }),
            Action::Nx(NxAction::RegMove {
                src: reg(0),
                dst: FieldRef::reg(Register::XReg(1)),
                src_ofs: 0,
                dst_ofs: 0,
                n_bits: 32,
            }),
        ])],
        ..FlowMod::default()
    }
}

fn select_group() -> GroupMod {
    GroupMod {
        command: GroupModCommand::Add,
        group_type: GroupType::Select,
        group_id: 1,
        buckets: vec![
            Bucket {
                weight: 10,
                actions: vec![Action::output(PortNo(1))],
                ..Bucket::default()
            },
            Bucket {
                weight: 20,
                actions: vec![
                    Action::SetField(OxmField::EthDst(Masked::exact(MacAddr::local(9)))),
                    Action::output(PortNo(2)),
                ],
                ..Bucket::default()
            },
        ],
    }
}

fn frame() -> Vec<u8> {
    udp_frame(
        60,
        MacAddr::BROADCAST,
        MacAddr::local(1),
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1000,
        2000,
    )
}

fn port(n: u32) -> Port {
    Port {
        port_no: PortNo(n),
        hw_addr: MacAddr::local(n),
        name: FixedStr::new(&format!("eth{n}")),
        config: 0,
        state: state::LIVE,
        curr: features::F_10GB_FD | features::COPPER,
        advertised: 0,
        supported: features::F_10GB_FD,
        peer: 0,
        curr_speed: 10_000_000,
        max_speed: 10_000_000,
    }
}

fn ports() -> Vec<Port> {
    vec![
        port(1),
        port(2),
        Port {
            port_no: PortNo::LOCAL,
            name: FixedStr::new("br0"),
            config: config::PORT_DOWN,
            state: state::LINK_DOWN,
            ..port(3)
        },
    ]
}

const N_TABLES: u8 = 4;

fn features_reply() -> SwitchFeatures {
    SwitchFeatures {
        datapath_id: 0xab,
        n_buffers: 0,
        n_tables: N_TABLES,
        auxiliary_id: 0,
        capabilities: capabilities::FLOW_STATS
            | capabilities::TABLE_STATS
            | capabilities::PORT_STATS
            | capabilities::GROUP_STATS,
        reserved: 0,
    }
}

/// A table with every property a switch reports, as controllers expect.
fn table_features(id: u8) -> TableFeatures {
    table_features_of(id, N_TABLES)
}

fn table_features_of(id: u8, n_tables: u8) -> TableFeatures {
    use TableFeatureProp as P;
    let insts: Vec<InstructionId> = InstructionType::ALL
        .iter()
        .filter(|t| **t != InstructionType::Experimenter)
        .map(|t| InstructionId::new(*t))
        .collect();
    let acts: Vec<ActionId> = ActionType::ALL
        .iter()
        .filter(|t| **t != ActionType::Experimenter)
        .map(|t| ActionId::new(*t))
        .collect();
    let matchable: Vec<OxmId> = OxmFieldType::ALL
        .iter()
        .map(|t| OxmId::basic(*t, t.maskable()))
        .collect();
    let exact: Vec<OxmId> = OxmFieldType::ALL
        .iter()
        .map(|t| OxmId::basic(*t, false))
        .collect();
    let next: Vec<u8> = ((id + 1)..n_tables).collect();
    TableFeatures {
        table_id: id,
        name: FixedStr::new(&format!("table{id}")),
        metadata_match: u64::MAX,
        metadata_write: u64::MAX,
        config: 0,
        max_entries: 1_000_000,
        properties: vec![
            P::Instructions {
                miss: false,
                ids: insts.clone(),
            },
            P::Instructions {
                miss: true,
                ids: insts,
            },
            P::NextTables {
                miss: false,
                tables: next.clone(),
            },
            P::NextTables {
                miss: true,
                tables: next,
            },
            P::WriteActions {
                miss: false,
                ids: acts.clone(),
            },
            P::WriteActions {
                miss: true,
                ids: acts.clone(),
            },
            P::ApplyActions {
                miss: false,
                ids: acts.clone(),
            },
            P::ApplyActions {
                miss: true,
                ids: acts,
            },
            P::Match(matchable),
            P::Wildcards(exact.clone()),
            P::WriteSetfield {
                miss: false,
                ids: exact.clone(),
            },
            P::WriteSetfield {
                miss: true,
                ids: exact.clone(),
            },
            P::ApplySetfield {
                miss: false,
                ids: exact.clone(),
            },
            P::ApplySetfield {
                miss: true,
                ids: exact,
            },
        ],
    }
}

fn flow_stats() -> FlowStats {
    FlowStats {
        table_id: 0,
        duration_sec: 5,
        duration_nsec: 500_000_000,
        priority: 100,
        idle_timeout: 30,
        hard_timeout: 0,
        flags: 0,
        cookie: 0x1234,
        packet_count: 5,
        byte_count: 500,
        match_: tcp_match(),
        instructions: vec![Instruction::ApplyActions(vec![Action::output(PortNo(2))])],
    }
}

fn reply(body: MultipartReplyBody) -> Message {
    Message::MultipartReply(MultipartReply { flags: 0, body })
}

fn request(body: MultipartRequestBody) -> Message {
    Message::MultipartRequest(MultipartRequest { flags: 0, body })
}

/// At least one of every message type and every multipart body.
fn all_messages() -> Vec<Message> {
    use MultipartReplyBody as R;
    use MultipartRequestBody as Q;
    let ipv6_match = Match::from_fields(vec![
        OxmField::EthType(0x86dd),
        OxmField::Ipv6Src(Masked::new(
            "2001:db8::".parse().unwrap(),
            "ffff:ffff::".parse().unwrap(),
        )),
        OxmField::IpProto(58),
        OxmField::Icmpv6Type(135),
        OxmField::Ipv6NdTarget(Ipv6Addr::LOCALHOST),
        OxmField::Ipv6NdSll(MacAddr::local(4)),
    ])
    .unwrap();
    let mut v = vec![
        Message::BundleControl(BundleCtrl {
            bundle_id: 7,
            ctrl_type: BundleCtrlType::CommitRequest,
            flags: bundle_flags::ATOMIC | bundle_flags::ORDERED,
            properties: vec![],
        }),
        Message::BundleAdd(BundleAdd {
            bundle_id: 7,
            flags: bundle_flags::ATOMIC,
            // The inner xid must be the bundle add's own (ovs-ofctl checks).
            message: Message::FlowMod(flow_mod()).encode(7).unwrap(),
            properties: vec![],
        }),
        Message::Hello(Hello::ours()),
        Message::Hello(Hello {
            elements: vec![
                HelloElement::VersionBitmap(vec![0x52, 1]),
                HelloElement::Unknown {
                    ty: 7,
                    data: vec![1, 2, 3],
                },
            ],
        }),
        Message::Error(ErrorMsg {
            code: ErrorCode::BadMatch(BadMatchCode::BadPrereq),
            data: Message::FlowMod(flow_mod()).encode(1).unwrap()[..64].to_vec(),
        }),
        Message::Error(ErrorMsg {
            code: ErrorCode::HelloFailed(HelloFailedCode::Incompatible),
            data: b"no common version".to_vec(),
        }),
        Message::Error(ErrorMsg {
            code: ErrorCode::DUP_INST,
            data: vec![],
        }),
        Message::EchoRequest(b"ping".to_vec()),
        Message::EchoReply(vec![]),
        Message::Experimenter(Experimenter {
            experimenter: 0x2320,
            exp_type: 16,
            data: vec![0; 8],
        }),
        Message::FeaturesRequest,
        Message::FeaturesReply(features_reply()),
        Message::GetConfigRequest,
        Message::GetConfigReply(SwitchConfig::default()),
        Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 0xffff,
        }),
        Message::PacketIn(PacketIn {
            total_len: 60,
            match_: Match::from_fields(vec![OxmField::InPort(PortNo(1))]).unwrap(),
            data: frame(),
            ..PacketIn::default()
        }),
        Message::FlowRemoved(FlowRemoved {
            cookie: 1,
            priority: 7,
            reason: 2,
            table_id: 1,
            duration_sec: 3,
            duration_nsec: 4,
            idle_timeout: 5,
            hard_timeout: 6,
            packet_count: 8,
            byte_count: 9,
            match_: ipv6_match.clone(),
        }),
        Message::PortStatus(PortStatus {
            reason: port::reason::MODIFY,
            desc: port(1),
        }),
        Message::PacketOut(PacketOut {
            actions: vec![Action::output(PortNo::FLOOD)],
            data: frame(),
            ..PacketOut::default()
        }),
        Message::FlowMod(flow_mod()),
        Message::FlowMod(nicira_flow_mod()),
        Message::FlowMod(nicira_flow_mod2()),
        Message::FlowMod(FlowMod {
            command: FlowModCommand::DeleteStrict,
            table_id: table_id::ALL,
            out_port: PortNo(2),
            out_group: group_id::ANY,
            match_: ipv6_match,
            ..FlowMod::default()
        }),
        Message::GroupMod(select_group()),
        Message::PortMod(PortMod {
            port_no: PortNo(1),
            hw_addr: MacAddr::local(1),
            config: config::PORT_DOWN,
            mask: config::PORT_DOWN,
            advertise: 0,
        }),
        Message::TableMod(TableMod {
            table_id: 1,
            config: 0,
        }),
        Message::BarrierRequest,
        Message::BarrierReply,
        Message::QueueGetConfigRequest(PortNo::ANY),
        Message::QueueGetConfigReply(QueueGetConfigReply {
            port: PortNo(1),
            queues: vec![PacketQueue {
                queue_id: 1,
                port: PortNo(1),
                properties: vec![QueueProp {
                    property: 1,
                    data: vec![0, 100, 0, 0, 0, 0, 0, 0],
                }],
            }],
        }),
        Message::RoleRequest(RoleMsg {
            role: ControllerRole::Master,
            generation_id: 9,
        }),
        Message::RoleReply(RoleMsg {
            role: ControllerRole::Slave,
            generation_id: 9,
        }),
        Message::GetAsyncRequest,
        Message::GetAsyncReply(AsyncConfig {
            packet_in_mask: [3, 1],
            port_status_mask: [7, 7],
            flow_removed_mask: [15, 0],
        }),
        Message::SetAsync(AsyncConfig::default()),
        Message::MeterMod(MeterMod {
            command: MeterModCommand::Add,
            flags: meter_flags::KBPS,
            meter_id: 1,
            bands: vec![MeterBand::Drop {
                rate: 1000,
                burst_size: 0,
            }],
        }),
    ];
    v.extend(
        [
            Q::Desc,
            Q::Flow(FlowStatsRequest::default()),
            Q::Aggregate(FlowStatsRequest {
                table_id: 0,
                match_: tcp_match(),
                ..FlowStatsRequest::default()
            }),
            Q::Table,
            Q::PortStats {
                port_no: PortNo::ANY,
            },
            Q::Queue {
                port_no: PortNo::ANY,
                queue_id: 0xffff_ffff,
            },
            Q::Group {
                group_id: group_id::ALL,
            },
            Q::GroupDesc {
                group_id: mswitch::openflow::group::group_id::ALL,
            },
            Q::GroupFeatures,
            Q::Meter { meter_id: 1 },
            Q::MeterConfig { meter_id: 1 },
            Q::MeterFeatures,
            Q::TableFeatures(vec![]),
            Q::TableFeatures(vec![table_features(0)]),
            Q::PortDesc {
                port_no: PortNo::ANY,
            },
            Q::Experimenter {
                experimenter: 0x2320,
                exp_type: 0,
                data: vec![],
            },
        ]
        .map(request),
    );
    v.extend(
        [
            R::Desc(Box::new(Desc {
                mfr_desc: FixedStr::new("mswitch"),
                hw_desc: FixedStr::new("software"),
                sw_desc: FixedStr::new("0.1.0"),
                serial_num: FixedStr::new("1"),
                dp_desc: FixedStr::new("test"),
            })),
            R::Flow(vec![flow_stats(), flow_stats()]),
            R::Aggregate(AggregateStats {
                packet_count: 5,
                byte_count: 500,
                flow_count: 1,
            }),
            R::Table(vec![TableStats {
                table_id: 0,
                active_count: 1,
                lookup_count: 10,
                matched_count: 5,
            }]),
            R::PortStats(vec![PortStats {
                port_no: PortNo(1),
                rx_packets: 1,
                tx_packets: 2,
                ..PortStats::default()
            }]),
            R::Queue(vec![QueueStats {
                port_no: PortNo(1),
                queue_id: 1,
                ..QueueStats::default()
            }]),
            R::Group(vec![GroupStats {
                group_id: 1,
                ref_count: 1,
                packet_count: 3,
                byte_count: 300,
                duration_sec: 1,
                duration_nsec: 0,
                bucket_stats: vec![BucketCounter {
                    packet_count: 3,
                    byte_count: 300,
                }],
            }]),
            R::GroupDesc(vec![GroupDesc {
                group_type: GroupType::Select,
                group_id: 1,
                buckets: select_group().buckets,
            }]),
            R::GroupFeatures(GroupFeatures {
                types: 0b1111,
                capabilities: group_capabilities::SELECT_WEIGHT,
                max_groups: [16; 4],
                actions: [1; 4],
            }),
            R::Meter(vec![MeterStats {
                meter_id: 1,
                band_stats: vec![MeterBandStats::default()],
                ..MeterStats::default()
            }]),
            R::MeterConfig(vec![MeterConfig {
                flags: meter_flags::KBPS,
                meter_id: 1,
                bands: vec![MeterBand::DscpRemark {
                    rate: 1,
                    burst_size: 2,
                    prec_level: 1,
                }],
            }]),
            R::MeterFeatures(MeterFeatures::default()),
            R::TableFeatures(vec![table_features(0), table_features(1)]),
            R::PortDesc(ports()),
            R::Experimenter {
                experimenter: 0x2320,
                exp_type: 1,
                data: vec![5],
            },
        ]
        .map(reply),
    );
    v
}

// ---------------------------------------------------------------------------
// Round trips and fixtures.

#[test]
fn every_message_type_round_trips() {
    let all = all_messages();
    for t in MsgType::ALL {
        // Messages a switch never receives nor sends.
        let unused = [
            MsgType::TableStatus,
            MsgType::RequestForward,
            MsgType::ControllerStatus,
            MsgType::RoleStatus,
        ];
        assert!(
            unused.contains(t) || all.iter().any(|m| m.msg_type() == *t),
            "no sample of {t}"
        );
    }
    for t in MultipartType::ALL {
        let req = all
            .iter()
            .any(|m| matches!(m, Message::MultipartRequest(r) if r.body.multipart_type() == *t));
        let rep = all
            .iter()
            .any(|m| matches!(m, Message::MultipartReply(r) if r.body.multipart_type() == *t));
        assert!(req && rep, "no sample of {t}");
    }
    for (i, msg) in all.iter().enumerate() {
        let xid = 0x1000 + i as u32;
        let bytes = msg.encode(xid).unwrap();
        assert_eq!(frame_len(&bytes), Some(bytes.len()));
        let (h, back) = decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
        assert_eq!(
            h,
            Header {
                version: OFP_VERSION,
                msg_type: if matches!(msg, Message::BundleControl(_) | Message::BundleAdd(_)) {
                    MsgType::Experimenter.to_wire()
                } else {
                    msg.msg_type().to_wire()
                },
                length: bytes.len() as u16,
                xid
            }
        );
        assert_eq!(&back, msg);
        assert_eq!(back.encode(xid).unwrap(), bytes, "{msg:?}");
    }
    // The same messages in 1.4 and 1.5, where they exist there.
    let mut all = all;
    all.push(Message::RoleStatus(RoleStatus {
        role: ControllerRole::Slave,
        reason: 0,
        generation_id: 99,
    }));
    for v in [0x05, 0x06] {
        for msg in &all {
            let t = msg.msg_type();
            let Ok(bytes) = msg.encode_version(v, 9) else {
                assert!(!t.exists_in(v), "{msg:?} in {v}");
                continue;
            };
            assert!(t.exists_in(v), "{t} encoded in {v}");
            let (h, back) = decode(&bytes).unwrap_or_else(|e| panic!("{v} {msg:?}: {e}"));
            assert_eq!((h.version, h.msg_type), (v, t.to_wire()));
            // 1.5's packet-out keeps only in_port; 1.4's async config and
            // queue properties are not modelled: compare what survives.
            assert_eq!(back.encode_version(v, 9).unwrap(), bytes, "{v} {msg:?}");
        }
    }
}

/// Bytes written out by hand from the spec (or sent by ovs-ofctl), with the
/// message they are.
fn fixtures() -> Vec<(&'static str, Message)> {
    vec![
        // What ovs-ofctl -O OpenFlow13 says first.
        (
            "04 00 00 10 00 00 00 01  00 01 00 08 00 00 00 10",
            Message::Hello(Hello::ours()),
        ),
        ("04 02 00 0c 00 00 00 02  61 62 63 64", Message::EchoRequest(b"abcd".to_vec())),
        ("04 05 00 08 00 00 00 03", Message::FeaturesRequest),
        (
            "04 06 00 20 00 00 00 03  00 00 00 00 00 00 00 ab  00 00 00 00 04 00 00 00  00 00 00 0f 00 00 00 00",
            Message::FeaturesReply(features_reply()),
        ),
        (
            "04 09 00 0c 00 00 00 04  00 00 ff ff",
            Message::SetConfig(SwitchConfig {
                flags: 0,
                miss_send_len: 0xffff,
            }),
        ),
        ("04 14 00 08 00 00 00 05", Message::BarrierRequest),
        (
            "04 18 00 18 00 00 00 06  00 00 00 02 00 00 00 00  00 00 00 00 00 00 00 09",
            Message::RoleRequest(RoleMsg {
                role: ControllerRole::Master,
                generation_id: 9,
            }),
        ),
        (
            "04 12 00 10 00 00 00 07  00 0d 00 00 00 00 00 00",
            request(MultipartRequestBody::PortDesc {
                port_no: PortNo::ANY,
            }),
        ),
        (
            "04 01 00 14 00 00 00 08  ff ff 0a 28 4f 4e 46 00  04 0e 00 08",
            Message::Error(ErrorMsg {
                code: ErrorCode::DUP_INST,
                data: vec![4, 14, 0, 8],
            }),
        ),
        // FLOW_MOD: add priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80
        // cookie:0x1234 idle:30 actions=push_vlan:0x8100,set_field:4101->vlan_vid,
        // output:2,write_metadata:0x5/0xff,goto_table:1
        (
            "04 0e 00 b0 00 00 00 09  00 00 00 00 00 00 12 34  00 00 00 00 00 00 00 00
             00 00 00 1e 00 00 00 64  ff ff ff ff ff ff ff ff  ff ff ff ff 00 00 00 00
             00 01 00 29 80 00 00 04  00 00 00 01 80 00 0a 02  08 00 80 00 14 01 06 80
             00 17 08 0a 00 00 00 ff  ff ff 00 80 00 1c 02 00  50 00 00 00 00 00 00 00
             00 04 00 30 00 00 00 00  00 11 00 08 81 00 00 00  00 19 00 10 80 00 0c 02
             10 05 00 00 00 00 00 00  00 00 00 10 00 00 00 02  00 00 00 00 00 00 00 00
             00 02 00 18 00 00 00 00  00 00 00 00 00 00 00 05  00 00 00 00 00 00 00 ff
             00 01 00 08 01 00 00 00",
            Message::FlowMod(flow_mod()),
        ),
        (
            "04 0f 00 60 00 00 00 0a  00 00 01 00 00 00 00 01
             00 20 00 0a ff ff ff ff  ff ff ff ff 00 00 00 00  00 00 00 10 00 00 00 01 00 00 00 00 00 00 00 00
             00 30 00 14 ff ff ff ff  ff ff ff ff 00 00 00 00  00 19 00 10 80 00 06 06 02 00 00 00 00 09 00 00
             00 00 00 10 00 00 00 02 00 00 00 00 00 00 00 00",
            Message::GroupMod(select_group()),
        ),
    ]
}

/// Bytes that `ovs-ofctl -O OpenFlow13` (3.1) sent to the fake switch below,
/// with the message they are.
fn captured_from_ovs_ofctl() -> Vec<(&'static str, Message)> {
    let nd_match = Match::from_fields(vec![
        OxmField::EthType(0x86dd),
        OxmField::Ipv6Src(Masked::new(
            "2001:db8::".parse().unwrap(),
            "ffff:ffff::".parse().unwrap(),
        )),
        OxmField::IpProto(58),
        OxmField::Icmpv6Type(135),
        OxmField::Ipv6NdTarget(Ipv6Addr::LOCALHOST),
    ])
    .unwrap();
    // Open vSwitch puts ipv4_src before ip_proto: the order is kept.
    let mut fields = tcp_match().into_fields();
    fields.swap(2, 3);
    let ovs_tcp_match = Match::from_fields(fields).unwrap();
    let mut tcp_mod = flow_mod();
    tcp_mod.cookie = 0;
    tcp_mod.idle_timeout = 0;
    tcp_mod.instructions.truncate(1);
    tcp_mod.match_ = ovs_tcp_match.clone();
    vec![
        (
            "040e00a000000006000000000000000000000000000000000000000000008000ffffffffffffffffffffffff00000000000100200001010800000005000000ff000104040000000000010604000000070004005000000000ffff0018000023200007001f000100040000000000000005ffff001000002320000efff801000000ffff001000002320000e0003ff000000ffff001000002320000e000402000000",
            Message::FlowMod(nicira_flow_mod()),
        ),
        (
            "040e00c000000006000000000000000000000000000000000000000000008000ffffffffffffffffffffffff0000000000010004000000000004008800000000ffff00180000232000060020000000000000040600010004ffff0010000023200008010203000000ffff001800002320000f000f00010204ffff00000000000000190010000106040000000500000000ffff00180000232000070103000104040000000000000003ffff00180000232000060020000000000001000480010208",
            Message::FlowMod(nicira_flow_mod2()),
        ),
        // add-flow priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80,
        // actions=mod_vlan_vid:5,output:2
        (
            "040e009000000006000000000000000000000000000000000000000000000064ffffffffffffffffffffffff0000000000010029800000040000000180000a020800800017080a000000ffffff00800014010680001c02005000000000000000000400300000000000110008810000000019001080000c02100500000000000000000010000000020000000000000000",
            Message::FlowMod(tcp_mod),
        ),
        // add-flow table=1,priority=7,ipv6,ipv6_src=2001:db8::/32,icmp6,
        // icmp_type=135,nd_target=::1,cookie=0x99,hard_timeout=60,
        // actions=write_metadata:0x5/0xff,goto_table:2
        (
            "040e00a0000000060000000000000099000000000000000001000000003c0007ffffffffffffffffffffffff000000000001004c80000a0286dd8000352020010db8000000000000000000000000ffffffff000000000000000000000000800014013a80003a018780003e1000000000000000000000000000000001000000000002001800000000000000000000000500000000000000ff0001000802000000",
            Message::FlowMod(FlowMod {
                cookie: 0x99,
                table_id: 1,
                hard_timeout: 60,
                priority: 7,
                match_: nd_match,
                instructions: vec![
                    Instruction::WriteMetadata {
                        metadata: 5,
                        mask: 0xff,
                    },
                    Instruction::GotoTable(2),
                ],
                ..FlowMod::default()
            }),
        ),
        // del-flows --strict priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80
        (
            "040e00600000000600000000000000000000000000000000ff04000000000064ffffffffffffffffffffffff0000000000010029800000040000000180000a020800800017080a000000ffffff00800014010680001c02005000000000000000",
            Message::FlowMod(FlowMod {
                command: FlowModCommand::DeleteStrict,
                table_id: table_id::ALL,
                priority: 100,
                match_: ovs_tcp_match,
                ..FlowMod::default()
            }),
        ),
        // mod-port eth1 down
        (
            "04100028000000040000000100000000020000000001000000000001000000010000000000000000",
            Message::PortMod(PortMod {
                port_no: PortNo(1),
                hw_addr: MacAddr::local(1),
                config: config::PORT_DOWN,
                mask: config::PORT_DOWN,
                advertise: 0,
            }),
        ),
        // dump-flows
        (
            "04120038000000020001000000000000ff000000ffffffffffffffff00000000000000000000000000000000000000000001000400000000",
            request(MultipartRequestBody::Flow(FlowStatsRequest::default())),
        ),
        // dump-ports
        (
            "04120018000000020004000000000000ffffffff00000000",
            request(MultipartRequestBody::PortStats {
                port_no: PortNo::ANY,
            }),
        ),
        // add-group group_id=1,type=select,bucket=weight:10,output:1,
        // bucket=weight:20,mod_dl_dst:02:00:00:00:00:09,output:2
        (
            "040f00600000000600000100000000010020000affffffffffffffff000000000000001000000001000000000000000000300014ffffffffffffffff000000000019001080000606020000000009000000000010000000020000000000000000",
            Message::GroupMod(select_group()),
        ),
        (
            "0412001000000002000c000000000000",
            request(MultipartRequestBody::TableFeatures(vec![])),
        ),
    ]
}

#[test]
fn fixtures_decode_and_encode_exactly() {
    for (text, msg) in fixtures().into_iter().chain(captured_from_ovs_ofctl()) {
        let bytes = unhex(text);
        let (h, back) = decode(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back, msg, "{text}");
        assert_eq!(msg.encode(h.xid).unwrap(), bytes, "{msg:?}");
    }
}

#[test]
fn frame_len_cuts_a_stream() {
    let mut stream = Vec::new();
    let msgs = all_messages();
    for (i, m) in msgs.iter().enumerate() {
        m.encode_into(i as u32, &mut stream).unwrap();
    }
    let mut rest = &stream[..];
    let mut n = 0;
    while let Some(len) = frame_len(rest) {
        let (one, tail) = rest.split_at(len);
        let (h, m) = decode(one).unwrap();
        assert_eq!((h.xid, &m), (n as u32, &msgs[n]));
        rest = tail;
        n += 1;
    }
    assert_eq!((n, rest.len()), (msgs.len(), 0));
}

#[test]
fn encoding_too_long_is_an_error_not_a_panic() {
    let m = Message::EchoRequest(vec![0; 70_000]);
    assert!(matches!(m.encode(1), Err(EncodeError::TooLong { .. })));
    let mut out = vec![1, 2, 3];
    assert!(m.encode_into(1, &mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
}

// ---------------------------------------------------------------------------
// Errors.

/// Encodes a flow mod, then lets `edit` break its bytes.
fn broken_flow_mod(fm: FlowMod, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Message::FlowMod(fm).encode(0x77).unwrap();
    edit(&mut b);
    let n = b.len() as u16;
    b[2..4].copy_from_slice(&n.to_be_bytes());
    b
}

#[test]
fn decode_names_the_spec_error() {
    use ErrorCode as E;
    let fm_bytes = Message::FlowMod(flow_mod()).encode(0x77).unwrap();
    let match_at = 48;
    let insts_at = match_at + tcp_match().encoded_len();
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![4, 0, 0], E::BadRequest(BadRequestCode::BadLen)),
        (
            unhex("04 05 00 10 00 00 00 77"),
            E::BadRequest(BadRequestCode::BadLen),
        ),
        (
            unhex("04 05 00 07 00 00 00 77"),
            E::BadRequest(BadRequestCode::BadLen),
        ),
        (
            unhex("04 05 00 0c 00 00 00 77 00 00 00 00"),
            E::BadRequest(BadRequestCode::BadLen),
        ),
        (
            unhex("01 05 00 08 00 00 00 77"),
            E::BadRequest(BadRequestCode::BadVersion),
        ),
        (
            unhex("02 0e 00 08 00 00 00 77"),
            E::BadRequest(BadRequestCode::BadVersion),
        ),
        (
            unhex("05 16 00 10 00 00 00 77 00 00 00 01 00 00 00 00"),
            E::BadRequest(BadRequestCode::BadType),
        ),
        (
            unhex("04 1e 00 08 00 00 00 77"),
            E::BadRequest(BadRequestCode::BadType),
        ),
        (
            unhex("04 12 00 10 00 00 00 77 00 63 00 00 00 00 00 00"),
            E::BadRequest(BadRequestCode::BadMultipart),
        ),
        (
            unhex("04 12 00 14 00 00 00 77 00 0d 00 00 00 00 00 00 00 00 00 00"),
            E::BadRequest(BadRequestCode::BadLen),
        ),
        (
            fm_bytes[..40].to_vec(),
            E::BadRequest(BadRequestCode::BadLen),
        ),
        (
            broken_flow_mod(flow_mod(), |b| b[25] = 9),
            E::FlowModFailed(FlowModFailedCode::BadCommand),
        ),
        // ip_proto=6 -> ip_proto=17 leaves tp_dst without its prerequisite.
        (
            broken_flow_mod(flow_mod(), |b| b[match_at + 22] = 17),
            E::BadMatch(BadMatchCode::BadPrereq),
        ),
        // The nw_src mask 255.255.255.0 -> 255.0.0.0 leaves value bits outside it.
        (
            broken_flow_mod(flow_mod(), |b| {
                let m = Match::from_fields(vec![
                    OxmField::EthType(0x0800),
                    OxmField::Ipv4Src(Masked::new(
                        Ipv4Addr::new(10, 1, 0, 0),
                        Ipv4Addr::new(255, 255, 0, 0),
                    )),
                ])
                .unwrap();
                let fm = Message::FlowMod(FlowMod {
                    match_: m,
                    ..FlowMod::default()
                })
                .encode(0x77)
                .unwrap();
                *b = fm;
                let n = b.len();
                b[n - 5] = 0;
            }),
            E::BadMatch(BadMatchCode::BadWildcards),
        ),
        (
            broken_flow_mod(flow_mod(), |b| b[match_at + 1] = 0),
            E::BadMatch(BadMatchCode::BadType),
        ),
        // tcp_dst with the hasmask bit: not maskable in OpenFlow 1.3.
        (
            broken_flow_mod(flow_mod(), |b| {
                b[match_at + 3] += 2; // match length, into the padding
                b[match_at + 37] |= 1;
                b[match_at + 38] = 4;
            }),
            E::BadMatch(BadMatchCode::BadMask),
        ),
        (
            broken_flow_mod(flow_mod(), |b| b[match_at + 4] = 0xff),
            E::BadMatch(BadMatchCode::BadField),
        ),
        (
            broken_flow_mod(flow_mod(), |b| b[insts_at + 1] = 9),
            E::BadInstruction(BadInstructionCode::UnknownInst),
        ),
        (
            broken_flow_mod(flow_mod(), |b| b[insts_at + 9] = 0x63),
            E::BadAction(BadActionCode::BadType),
        ),
        (
            broken_flow_mod(flow_mod(), |b| b[insts_at + 12] = 0x08),
            E::BadAction(BadActionCode::BadArgument),
        ),
        (
            broken_flow_mod(flow_mod(), |b| {
                b.extend_from_slice(&[0, 1, 0, 8, 2, 0, 0, 0])
            }),
            E::DUP_INST,
        ),
        (
            broken_flow_mod(flow_mod(), |b| {
                b.extend_from_slice(&[0xff, 0xff, 0, 8, 0, 0, 0x23, 0x20])
            }),
            E::BadInstruction(BadInstructionCode::BadExperimenter),
        ),
        (
            broken_flow_mod(FlowMod::default(), |b| {
                b.extend_from_slice(&unhex(
                    "0004 0018 00000000 ffff 0010 00002321 0000000000000000",
                ))
            }),
            E::BadAction(BadActionCode::BadExperimenter),
        ),
        (
            // Nicira's, with a subtype this switch does not know.
            broken_flow_mod(FlowMod::default(), |b| {
                b.extend_from_slice(&unhex(
                    "0004 0018 00000000 ffff 0010 00002320 0000000000000000",
                ))
            }),
            E::BadAction(BadActionCode::BadExpType),
        ),
        (
            unhex("04 0f 00 10 00 00 00 77 00 00 07 00 00 00 00 01"),
            E::GroupModFailed(GroupModFailedCode::BadType),
        ),
        (
            unhex("04 18 00 18 00 00 00 77 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00 00"),
            E::RoleRequestFailed(RoleRequestFailedCode::BadRole),
        ),
        (
            unhex("04 1d 00 10 00 00 00 77 00 09 00 00 00 00 00 01"),
            E::MeterModFailed(MeterModFailedCode::BadCommand),
        ),
        (
            {
                let mut b = request(MultipartRequestBody::TableFeatures(vec![table_features(0)]))
                    .encode(0x77)
                    .unwrap();
                b[16 + 64 + 1] = 9; // first property: an unknown type
                b
            },
            E::TableFeaturesFailed(TableFeaturesFailedCode::BadType),
        ),
    ];
    for (bytes, code) in cases {
        let e = decode(&bytes).expect_err(&hex(&bytes));
        assert_eq!(e.code, code, "{}", hex(&bytes));
        if bytes.len() >= 8 {
            assert_eq!(e.xid, 0x77);
        }
        assert_eq!(e.data, bytes[..bytes.len().min(64)]);
        // The reply is a well-formed OFPT_ERROR echoing the request.
        let reply = e.reply();
        let (h, m) = decode(&reply).unwrap();
        assert_eq!(h.xid, e.xid);
        assert_eq!(
            m,
            Message::Error(ErrorMsg {
                code,
                data: e.data.clone()
            })
        );
        assert!(e.wants_reply());
    }
}

#[test]
fn errors_are_not_answered() {
    let e = decode(&unhex("04 01 00 09 00 00 00 01 00")).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest(BadRequestCode::BadLen));
    assert!(!e.wants_reply());
}

#[test]
fn hello_of_any_version_negotiates() {
    // OpenFlow 1.0 hello, no elements.
    let (h, m) = decode(&unhex("01 00 00 08 00 00 00 01")).unwrap();
    let Message::Hello(hello) = m else { panic!() };
    let of13 = Versions::only(4);
    let err = negotiate(h.version, &hello, of13).unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::HelloFailed(HelloFailedCode::Incompatible)
    );
    assert_eq!(negotiate(h.version, &hello, Versions::SUPPORTED), Ok(1));
    // OpenFlow 1.5 hello offering 1.0, 1.3 and 1.5.
    let (h, m) = decode(&unhex("06 00 00 10 00 00 00 01 00 01 00 08 00 00 00 52")).unwrap();
    let Message::Hello(hello) = m else { panic!() };
    assert_eq!(negotiate(h.version, &hello, of13), Ok(4));
    assert_eq!(negotiate(h.version, &hello, Versions::SUPPORTED), Ok(6));
    // OpenFlow 1.4 hello offering only 1.4.
    let (h, m) = decode(&unhex("05 00 00 10 00 00 00 01 00 01 00 08 00 00 00 20")).unwrap();
    let Message::Hello(hello) = m else { panic!() };
    assert!(negotiate(h.version, &hello, of13).is_err());
    assert_eq!(negotiate(h.version, &hello, Versions::SUPPORTED), Ok(5));
}

// ---------------------------------------------------------------------------
// Property tests (the generated-message round trips live with the codec's
// own unit tests, which can see its generators).

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = frame_len(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        keep_len in any::<bool>(),
    ) {
        let all = all_messages();
        let mut bytes = which.get(&all).encode(1).unwrap();
        for (at, v) in edits {
            *at.get_mut(&mut bytes) = v;
        }
        if keep_len {
            let n = bytes.len() as u16;
            bytes[2..4].copy_from_slice(&n.to_be_bytes());
        }
        for b in [&bytes[..], &bytes[..cut.index(bytes.len() + 1)]] {
            if let Ok((h, m)) = decode(b) {
                // Whatever decodes re-encodes to the same message.
                let again = m.encode(h.xid).unwrap();
                prop_assert_eq!(decode(&again).unwrap().1, m);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cross-checks with ovs-ofctl.

fn have_ovs_ofctl() -> bool {
    let ok = Command::new("ovs-ofctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "ovs-ofctl not found: skipping the cross-check (apt-get install openvswitch-common)"
        );
    }
    ok
}

/// What `ovs-ofctl ofp-print` says about `bytes`, failing on any complaint.
fn ofp_print(bytes: &[u8]) -> String {
    let out = Command::new("ovs-ofctl")
        .args(["ofp-print", &hex(bytes)])
        .output()
        .expect("run ovs-ofctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ovs-ofctl failed: {stderr}");
    for bad in ["decode error", "bad ", "invalid", "unknown"] {
        assert!(
            !stdout.to_lowercase().contains(bad),
            "ovs-ofctl complains ({bad}):\n{stdout}"
        );
    }
    assert!(
        !stderr.contains("WARN"),
        "ovs-ofctl warns: {stderr}\n{stdout}"
    );
    stdout
}

#[test]
fn ovs_ofctl_decodes_our_encodings() {
    if !have_ovs_ofctl() {
        return;
    }
    let err = DecodeError {
        code: ErrorCode::BadMatch(BadMatchCode::BadPrereq),
        xid: 7,
        msg_type: Some(14),
        data: Message::FlowMod(flow_mod()).encode(7).unwrap()[..64].to_vec(),
        version: OFP_VERSION,
    };
    let cases: Vec<(Message, Vec<&str>)> = vec![
        (
            Message::FlowMod(flow_mod()),
            vec![
                "OFPT_FLOW_MOD (OF1.3) (xid=0x7): ADD",
                "priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80",
                "cookie:0x1234 idle:30",
                "actions=push_vlan:0x8100,set_field:4101->vlan_vid,output:2,write_metadata:0x5/0xff,goto_table:1",
            ],
        ),
        (
            Message::FlowMod(nicira_flow_mod()),
            vec![
                "reg0=0x5/0xff,reg2=0,reg3=0x7",
                "actions=load:0x5->NXM_NX_REG0[],resubmit(,1),resubmit:3,resubmit(4,2)",
            ],
        ),
        (
            Message::FlowMod(nicira_flow_mod2()),
            vec![
                "actions=move:NXM_OF_ETH_SRC[0..31]->NXM_NX_REG0[],note:01.02.03.00.00.00,output:NXM_NX_REG1[0..15],set_field:0x5->reg3,load:0x3->NXM_NX_REG2[4..7],move:NXM_NX_REG0[]->OXM_OF_PKT_REG1[0..31]",
            ],
        ),
        (
            Message::GroupMod(select_group()),
            vec![
                "OFPT_GROUP_MOD (OF1.3)",
                "ADD group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=weight:20,actions=set_field:02:00:00:00:00:09->eth_dst,output:2",
            ],
        ),
        (
            Message::GroupMod(GroupMod {
                command: GroupModCommand::Add,
                group_type: GroupType::FastFailover,
                group_id: 2,
                buckets: (1..3)
                    .map(|p| Bucket {
                        watch_port: PortNo(p),
                        actions: vec![Action::output(PortNo(p))],
                        ..Bucket::default()
                    })
                    .collect(),
            }),
            vec![
                "ADD group_id=2,type=ff,bucket=watch_port:1,actions=output:1,bucket=watch_port:2,actions=output:2",
            ],
        ),
        (
            Message::PacketOut(PacketOut {
                actions: vec![Action::output(PortNo::FLOOD)],
                data: frame(),
                ..PacketOut::default()
            }),
            vec![
                "OFPT_PACKET_OUT (OF1.3) (xid=0x7): in_port=CONTROLLER actions=FLOOD data_len=60",
                "udp,vlan_tci=0x0000,dl_src=02:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=10.0.0.1,nw_dst=10.0.0.2",
            ],
        ),
        (
            Message::PortMod(PortMod {
                port_no: PortNo(1),
                hw_addr: MacAddr::local(1),
                config: config::PORT_DOWN,
                mask: config::PORT_DOWN,
                advertise: 0,
            }),
            vec![
                "port: 1: addr:02:00:00:00:00:01",
                "config: PORT_DOWN",
                "mask:   PORT_DOWN",
            ],
        ),
        (
            Message::FeaturesReply(features_reply()),
            vec![
                "dpid:00000000000000ab",
                "n_tables:4, n_buffers:0",
                "capabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS",
            ],
        ),
        (
            reply(MultipartReplyBody::PortDesc(ports())),
            vec![
                "OFPST_PORT_DESC reply (OF1.3)",
                " 1(eth1): addr:02:00:00:00:00:01",
                " 2(eth2): addr:02:00:00:00:00:02",
                " LOCAL(br0): addr:02:00:00:00:00:03",
                "config:     PORT_DOWN",
                "state:      LINK_DOWN",
                "current:    10GB-FD COPPER",
                "speed: 10000 Mbps now, 10000 Mbps max",
            ],
        ),
        (
            reply(MultipartReplyBody::TableFeatures(vec![
                table_features(0),
                table_features(1),
            ])),
            vec![
                "OFPST_TABLE_FEATURES reply (OF1.3)",
                "table 0 (\"table0\")",
                "max_entries=1000000",
                "next tables: 1-3",
                "instructions: meter apply_actions clear_actions write_actions write_metadata goto_table",
                "arbitrary mask: tun_id metadata eth_{src,dst} vlan_vid ip_{src,dst} ipv6_{src,dst,label} arp_{spa,tpa,sha,tha}",
                "table 1 (\"table1\")",
            ],
        ),
        (
            reply(MultipartReplyBody::Flow(vec![flow_stats()])),
            vec![
                "OFPST_FLOW reply (OF1.3)",
                "cookie=0x1234, duration=5.500s, table=0, n_packets=5, n_bytes=500, idle_timeout=30, priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80 actions=output:2",
            ],
        ),
        (
            err.to_message(),
            vec![
                "OFPT_ERROR (OF1.3) (xid=0x7): OFPBMC_BAD_PREREQ",
                "OFPT_FLOW_MOD (OF1.3) (xid=0x7)",
                "truncated to 64 bytes from 176",
            ],
        ),
        (
            Message::Error(ErrorMsg {
                code: ErrorCode::DUP_INST,
                data: vec![],
            }),
            vec!["OFPBIC_DUP_INST"],
        ),
        (
            Message::PacketIn(PacketIn {
                total_len: 60,
                match_: Match::from_fields(vec![OxmField::InPort(PortNo(1))]).unwrap(),
                data: frame(),
                ..PacketIn::default()
            }),
            vec![
                "OFPT_PACKET_IN (OF1.3)",
                "total_len=60 in_port=1 (via no_match) data_len=60 (unbuffered)",
            ],
        ),
        (
            Message::Hello(Hello::ours()),
            vec!["OFPT_HELLO (OF1.3)", "version bitmap: 0x04"],
        ),
    ];
    let mut printed = 0;
    for (msg, expect) in cases {
        let out = ofp_print(&msg.encode(7).unwrap());
        for e in expect {
            assert!(out.contains(e), "missing {e:?} in:\n{out}");
        }
        printed += 1;
    }
    // Everything else decodes without complaint too.
    for msg in all_messages() {
        if matches!(
            &msg,
            Message::Experimenter(_)
                | Message::MultipartRequest(MultipartRequest {
                    body: MultipartRequestBody::Experimenter { .. },
                    ..
                })
                | Message::MultipartReply(MultipartReply {
                    body: MultipartReplyBody::Experimenter { .. },
                    ..
                })
        ) {
            continue; // ovs-ofctl knows only its own experimenters.
        }
        if let Message::Hello(h) = &msg
            && h.elements
                .iter()
                .any(|e| matches!(e, HelloElement::Unknown { .. }))
        {
            // The spec says to skip unknown elements; ovs-ofctl flags them.
            continue;
        }
        ofp_print(&msg.encode(7).unwrap());
        printed += 1;
        // And in 1.4 and 1.5, where the message exists (a bundle add's
        // inner message is 1.3's: ovs-ofctl wants the versions alike).
        for v in [0x05, 0x06] {
            if matches!(msg, Message::BundleAdd(_)) {
                continue;
            }
            if let Ok(b) = msg.encode_version(v, 7) {
                let out = ofp_print(&b);
                let tag = if v == 5 { "(OF1.4)" } else { "(OF1.5)" };
                assert!(out.contains(tag), "{out}");
                printed += 1;
            }
        }
    }
    eprintln!("ovs-ofctl decoded {printed} of our messages");
}

/// Messages a fake switch received, each with its bytes.
type Received = Vec<(Vec<u8>, Message)>;

/// A switch that answers what ovs-ofctl asks before it acts, from our
/// encoder, and records every message it gets.
struct FakeSwitch {
    path: PathBuf,
    dir: PathBuf,
    /// Every message received, with its bytes.
    got: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeSwitch {
    fn start(name: &str) -> FakeSwitch {
        let dir = std::env::temp_dir().join(format!("mswitch-of-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switch.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let g = g.clone();
                        thread::spawn(move || serve(conn, &g));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeSwitch {
            path,
            dir,
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Runs `ovs-ofctl -O OpenFlow13 CMD unix:SOCK ARGS...`; its stdout.
    fn ofctl(&self, cmd: &str, args: &[&str]) -> String {
        common::ovs_ofctl(&[], cmd, &format!("unix:{}", self.path.display()), args)
    }

    fn received(&self) -> Received {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for FakeSwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fake switch has the most tables OpenFlow allows.
const FAKE_TABLES: u8 = 254;

fn serve(mut conn: UnixStream, got: &Mutex<Received>) {
    use MultipartReplyBody as R;
    use MultipartRequestBody as Q;
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(len) = frame_len(&buf).filter(|&l| l <= buf.len()) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let (h, msg) = match decode(&frame) {
                Ok(x) => x,
                Err(e) => {
                    got.lock().unwrap().push((frame, e.to_message()));
                    let _ = conn.write_all(&e.reply());
                    continue;
                }
            };
            let answer = match &msg {
                Message::Hello(_) => Some(Message::Hello(Hello::ours())),
                Message::EchoRequest(d) => Some(Message::EchoReply(d.clone())),
                Message::FeaturesRequest => Some(Message::FeaturesReply(SwitchFeatures {
                    n_tables: FAKE_TABLES,
                    ..features_reply()
                })),
                Message::GetConfigRequest => Some(Message::GetConfigReply(SwitchConfig::default())),
                Message::BarrierRequest => Some(Message::BarrierReply),
                Message::MultipartRequest(r) => match &r.body {
                    Q::PortDesc { .. } => Some(reply(R::PortDesc(ports()))),
                    Q::TableFeatures(t) if t.is_empty() => {
                        // Far more than one message holds: sent in parts.
                        let all = MultipartReply {
                            flags: 0,
                            body: R::TableFeatures(
                                (0..FAKE_TABLES)
                                    .map(|t| table_features_of(t, FAKE_TABLES))
                                    .collect(),
                            ),
                        };
                        let parts = all.split(usize::from(u16::MAX));
                        assert!(parts.len() > 1);
                        for part in parts {
                            let bytes = Message::MultipartReply(part).encode(h.xid).unwrap();
                            let _ = conn.write_all(&bytes);
                        }
                        None
                    }
                    Q::Flow(_) => Some(reply(R::Flow(vec![flow_stats()]))),
                    Q::GroupDesc { .. } => Some(reply(R::GroupDesc(vec![GroupDesc {
                        group_type: GroupType::Select,
                        group_id: 1,
                        buckets: select_group().buckets,
                    }]))),
                    Q::PortStats { .. } => Some(reply(R::PortStats(vec![PortStats {
                        port_no: PortNo(1),
                        rx_packets: 11,
                        tx_packets: 22,
                        rx_bytes: 1100,
                        tx_bytes: 2200,
                        ..PortStats::default()
                    }]))),
                    _ => None,
                },
                _ => None,
            };
            got.lock().unwrap().push((frame, msg));
            if let Some(a) = answer {
                let _ = conn.write_all(&a.encode(h.xid).unwrap());
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn sock_name(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn ovs_ofctl_talks_to_a_fake_switch() {
    if !have_ovs_ofctl() {
        return;
    }
    let sw = FakeSwitch::start("talk");
    eprintln!("fake switch at {}", sock_name(&sw.path));

    sw.ofctl(
        "add-flow",
        &["priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80,actions=mod_vlan_vid:5,output:2"],
    );
    sw.ofctl(
        "add-flow",
        &["table=1,priority=7,ipv6,ipv6_src=2001:db8::/32,icmp6,icmp_type=135,nd_target=::1,cookie=0x99,hard_timeout=60,actions=write_metadata:0x5/0xff,goto_table:2"],
    );
    sw.ofctl(
        "del-flows",
        &[
            "--strict",
            "priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80",
        ],
    );
    sw.ofctl(
        "add-group",
        &["group_id=1,type=select,bucket=weight:10,output:1,bucket=weight:20,mod_dl_dst:02:00:00:00:00:09,output:2"],
    );
    sw.ofctl("mod-port", &["eth1", "down"]);
    let flows = sw.ofctl("dump-flows", &[]);
    let show = sw.ofctl("show", &[]);
    let groups = sw.ofctl("dump-groups", &[]);
    let port_stats = sw.ofctl("dump-ports", &[]);
    let tables = sw.ofctl("dump-table-features", &[]);

    // What ovs-ofctl prints from our replies.
    assert!(
        flows.contains("cookie=0x1234, duration=5.500s, table=0, n_packets=5, n_bytes=500, idle_timeout=30, priority=100,tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80 actions=output:2"),
        "{flows}"
    );
    for e in [
        "dpid:00000000000000ab",
        "n_tables:254",
        " 1(eth1): addr:02:00:00:00:00:01",
        " LOCAL(br0)",
        "OFPT_GET_CONFIG_REPLY",
    ] {
        assert!(show.contains(e), "missing {e:?} in:\n{show}");
    }
    assert!(
        groups.contains("group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=weight:20,actions=set_field:02:00:00:00:00:09->eth_dst,output:2"),
        "{groups}"
    );
    assert!(
        port_stats.contains("port  1: rx pkts=11, bytes=1100"),
        "{port_stats}"
    );
    // All 254 tables arrived, through several messages.
    for e in [
        "table 0 (\"table0\")",
        "table 253 (\"table253\")",
        "next tables: 1-253",
    ] {
        assert!(tables.contains(e), "missing {e:?} in:\n{tables}");
    }

    // What ovs-ofctl sent, as decoded here: every message encodes back to
    // the very bytes that came in.
    let received = sw.received();
    for (bytes, m) in &received {
        let xid = Header::parse(bytes).unwrap().xid;
        assert_eq!(&m.encode(xid).unwrap(), bytes, "{m:?}");
    }
    let got: Vec<Message> = received.into_iter().map(|(_, m)| m).collect();
    let errors: Vec<&Message> = got
        .iter()
        .filter(|m| matches!(m, Message::Error(_)))
        .collect();
    assert!(
        errors.is_empty(),
        "undecodable messages from ovs-ofctl: {errors:?}"
    );
    let flow_mods: Vec<&FlowMod> = got
        .iter()
        .filter_map(|m| match m {
            Message::FlowMod(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(flow_mods.len(), 3, "{got:?}");
    let add = flow_mods[0];
    assert_eq!(add.command, FlowModCommand::Add);
    assert_eq!(add.priority, 100);
    assert_eq!(add.table_id, 0);
    assert_eq!(add.buffer_id, NO_BUFFER);
    let mut want = tcp_match().into_fields();
    want.sort_by_key(|f| f.field_type());
    let mut have = add.match_.fields().to_vec();
    have.sort_by_key(|f| f.field_type());
    assert_eq!(have, want);
    assert_eq!(
        add.instructions,
        vec![Instruction::ApplyActions(vec![
            Action::PushVlan(0x8100),
            Action::SetField(OxmField::VlanVid(Masked::exact(OFPVID_PRESENT | 5))),
            Action::output(PortNo(2)),
        ])]
    );
    let nd = flow_mods[1];
    assert_eq!(
        (nd.table_id, nd.priority, nd.cookie, nd.hard_timeout),
        (1, 7, 0x99, 60)
    );
    assert_eq!(
        nd.match_.get(OxmFieldType::Ipv6NdTarget),
        Some(&OxmField::Ipv6NdTarget(Ipv6Addr::LOCALHOST))
    );
    assert_eq!(
        nd.instructions,
        vec![
            Instruction::WriteMetadata {
                metadata: 5,
                mask: 0xff
            },
            Instruction::GotoTable(2)
        ]
    );
    let del = flow_mods[2];
    assert_eq!(del.command, FlowModCommand::DeleteStrict);
    assert_eq!((del.out_port, del.out_group), (PortNo::ANY, group_id::ANY));
    assert_eq!(del.table_id, table_id::ALL);

    let group_mod = got.iter().find_map(|m| match m {
        Message::GroupMod(g) => Some(g),
        _ => None,
    });
    assert_eq!(group_mod, Some(&select_group()));
    let port_mod = got.iter().find_map(|m| match m {
        Message::PortMod(p) => Some(p),
        _ => None,
    });
    assert_eq!(
        port_mod,
        Some(&PortMod {
            port_no: PortNo(1),
            hw_addr: MacAddr::local(1),
            config: config::PORT_DOWN,
            mask: config::PORT_DOWN,
            advertise: 0,
        })
    );
}
