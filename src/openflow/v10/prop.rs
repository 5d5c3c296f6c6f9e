//! Property tests of the OpenFlow 1.0 codec: no input makes [`decode`]
//! panic, whatever decodes encodes back to bytes that decode to the same
//! message, and generated 1.0-expressible model messages survive encode
//! then decode unchanged.

use std::net::Ipv4Addr;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::openflow::action::Action;
use crate::openflow::error::ErrorMsg;
use crate::openflow::flow::{FlowMod, FlowModCommand, PacketIn, PacketOut};
use crate::openflow::flow_match::Match;
use crate::openflow::multipart::*;
use crate::openflow::oxm::{Masked, OxmField as F};
use crate::openflow::port::{PortMod, PortStatus};
use crate::wire::MacAddr;

/// 1.0 port numbers as the model has them.
fn port() -> impl Strategy<Value = PortNo> {
    prop_oneof![
        (1u16..0xff00).prop_map(port_from_v10),
        (0xff00u16..=0xffff).prop_map(port_from_v10),
    ]
}

/// Ports an action may output to.
fn out_port() -> impl Strategy<Value = PortNo> {
    prop_oneof![
        (0u16..0xff00).prop_map(port_from_v10),
        (0xfff8u16..=0xfffe).prop_map(port_from_v10),
    ]
}

/// Any valid model match 1.0 can say: a decoded random `ofp_match`, whose
/// fields are what 1.0 normalisation keeps.
fn match_() -> impl Strategy<Value = Match> {
    (
        any::<u32>(),
        any::<[u8; 36]>(),
        proptest::sample::select(vec![0x0800u16, 0x0806, 0x86dd, 0x1234]),
        proptest::sample::select(vec![1u8, 6, 17, 132, 47]),
    )
        .prop_map(|(wild, mut rest, dl_type, proto)| {
            let mut b = wild.to_be_bytes().to_vec();
            rest[18..20].copy_from_slice(&dl_type.to_be_bytes());
            rest[21] = proto;
            b.extend_from_slice(&rest);
            let mut r = Reader::new(&b, ErrorCode::BadRequest(BadRequestCode::BadLen));
            match10::decode_match(&mut r).unwrap_or_default()
        })
}

/// One step of a 1.0 action list, as the decoder builds it.
#[derive(Debug, Clone)]
enum Op {
    Output(PortNo, u16),
    Vid(u16),
    Pcp(u8),
    Strip,
    Dl(bool, MacAddr),
    Nw(bool, Ipv4Addr),
    Tos(u8),
    Tp(bool, u16),
    Enqueue(u16, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (out_port(), any::<u16>()).prop_map(|(p, l)| Op::Output(p, l)),
        (0u16..0x1000).prop_map(Op::Vid),
        (0u8..8).prop_map(Op::Pcp),
        Just(Op::Strip),
        (any::<bool>(), any::<[u8; 6]>()).prop_map(|(s, m)| Op::Dl(s, MacAddr(m))),
        (any::<bool>(), any::<u32>()).prop_map(|(s, a)| Op::Nw(s, Ipv4Addr::from(a))),
        (0u8..64).prop_map(Op::Tos),
        (any::<bool>(), any::<u16>()).prop_map(|(s, p)| Op::Tp(s, p)),
        (1u16..0xff00, any::<u32>()).prop_map(|(p, q)| Op::Enqueue(p, q)),
    ]
}

/// The model actions the decoder makes of `ops` for a flow with match `m`.
fn actions_for(ops: &[Op], m: &Match) -> Vec<Action> {
    let mut vlan = m
        .fields()
        .iter()
        .any(|f| matches!(f, F::VlanVid(v) if v.value & v.mask.unwrap_or(u16::MAX) & 0x1000 != 0));
    let proto = m.ip_proto();
    let mut out = Vec::new();
    for op in ops {
        match *op {
            Op::Output(port, max_len) => out.push(Action::Output { port, max_len }),
            Op::Vid(_) | Op::Pcp(_) => {
                if !vlan {
                    out.push(Action::PushVlan(0x8100));
                    vlan = true;
                }
                let field = match *op {
                    Op::Pcp(p) => F::VlanPcp(p),
                    Op::Vid(v) => F::VlanVid(Masked::exact(0x1000 | v)),
                    _ => continue,
                };
                out.push(Action::SetField(field));
            }
            Op::Strip => {
                vlan = false;
                out.push(Action::PopVlan);
            }
            Op::Dl(s, mac) => out.push(Action::SetField(if s {
                F::EthSrc(Masked::exact(mac))
            } else {
                F::EthDst(Masked::exact(mac))
            })),
            Op::Nw(s, a) => out.push(Action::SetField(if s {
                F::Ipv4Src(Masked::exact(a))
            } else {
                F::Ipv4Dst(Masked::exact(a))
            })),
            Op::Tos(d) => out.push(Action::SetField(F::IpDscp(d))),
            Op::Tp(s, p) => out.push(Action::SetField(match (proto, s) {
                (Some(17), true) => F::UdpSrc(p),
                (Some(17), false) => F::UdpDst(p),
                (Some(132), true) => F::SctpSrc(p),
                (Some(132), false) => F::SctpDst(p),
                (_, true) => F::TcpSrc(p),
                (_, false) => F::TcpDst(p),
            })),
            Op::Enqueue(p, q) => {
                out.push(Action::SetQueue(q));
                out.push(Action::Output {
                    port: port_from_v10(p),
                    max_len: 0,
                });
            }
        }
    }
    out
}

fn flow_mod() -> impl Strategy<Value = FlowMod> {
    (
        match_(),
        vec(op(), 0..6),
        proptest::sample::select(FlowModCommand::ALL),
        any::<(u64, u16, u16, u16, u32)>(),
        port(),
        0u16..4,
    )
        .prop_map(
            |(match_, ops, command, (cookie, idle, hard, prio, buf), out_port, flags)| {
                let actions = actions_for(&ops, &match_);
                let table_id = match command {
                    FlowModCommand::Delete | FlowModCommand::DeleteStrict => 0xff,
                    _ => 0,
                };
                FlowMod {
                    cookie,
                    table_id,
                    command,
                    idle_timeout: idle,
                    hard_timeout: hard,
                    priority: prio,
                    buffer_id: buf,
                    out_port,
                    flags,
                    instructions: flow10::flow_instructions(actions),
                    match_,
                    ..FlowMod::default()
                }
            },
        )
}

/// Matches only NXM can say (IPv6, registers, MPLS, tunnel id, masked
/// Ethernet), plus what 1.0 can.
fn nx_match() -> impl Strategy<Value = Match> {
    use crate::openflow::nicira::{NxMatchField, Register};
    (
        match_(),
        0usize..4,
        any::<(u32, u32, u64)>(),
        any::<[u8; 16]>(),
        0u32..0x10_0000,
    )
        .prop_map(|(base, kind, (r0, rmask, tun), v6, label)| {
            let regs = vec![NxMatchField {
                reg: Register::Reg(1),
                value: u64::from(r0 & rmask),
                mask: Some(u64::from(rmask)),
            }];
            let fields = match kind {
                0 => base.fields().to_vec(),
                1 => vec![
                    F::EthType(0x86dd),
                    F::Ipv6Src(Masked::new(
                        std::net::Ipv6Addr::from(v6) & std::net::Ipv6Addr::from(u128::MAX << 64),
                        std::net::Ipv6Addr::from(u128::MAX << 64),
                    )),
                ],
                2 => vec![F::EthType(0x8847), F::MplsLabel(label)],
                _ => vec![
                    F::TunnelId(Masked::exact(tun)),
                    F::EthDst(Masked::new(
                        MacAddr([1, 0, 0, 0, 0, 0]),
                        MacAddr([1, 0, 0, 0, 0, 0]),
                    )),
                ],
            };
            Match::from_fields(fields)
                .and_then(|m| m.with_registers(regs))
                .unwrap_or_default()
        })
}

/// A message in one of Nicira's forms, and the formats that say it so.
fn nx_message() -> impl Strategy<Value = (Message, Ctx)> {
    use crate::openflow::flow::FlowRemoved;
    let nxm = Ctx {
        flow_format: nx::FlowFormat::Nxm,
        ..Ctx::default()
    };
    let pin = |f| Ctx {
        packet_in_format: f,
        ..Ctx::default()
    };
    prop_oneof![
        (flow_mod(), nx_match()).prop_map(move |(f, m)| {
            let actions = match f.instructions.first() {
                Some(crate::openflow::instruction::Instruction::ApplyActions(a)) => a
                    .iter()
                    .filter(|a| matches!(a, Action::Output { .. }))
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            let f = FlowMod {
                match_: m,
                instructions: flow10::flow_instructions(actions),
                ..f
            };
            (Message::FlowMod(f), nxm)
        }),
        (nx_match(), any::<(u64, u16, u8, u32, u64)>()).prop_map(
            move |(m, (cookie, prio, table, d, n))| {
                let f = FlowRemoved {
                    cookie,
                    priority: prio,
                    reason: table % 3,
                    table_id: table % 0xfe,
                    duration_sec: d,
                    packet_count: n,
                    match_: m,
                    ..FlowRemoved::default()
                };
                (Message::FlowRemoved(f), nxm)
            }
        ),
        (
            nx_match(),
            vec(any::<u8>(), 0..64),
            any::<(u32, u8, u64)>(),
            any::<bool>()
        )
            .prop_map(move |(m, data, (buffer_id, table_id, cookie), two)| {
                let p = PacketIn {
                    buffer_id,
                    total_len: data.len() as u16,
                    reason: table_id % 3,
                    table_id,
                    cookie,
                    match_: m,
                    data,
                };
                let f = if two {
                    nx::PacketInFormat::Nxt2
                } else {
                    nx::PacketInFormat::Nxt
                };
                (Message::PacketIn(p), pin(f))
            }),
        (nx_match(), any::<(u8, u64, bool)>()).prop_map(move |(m, (table_id, cookie, agg))| {
            let req = FlowStatsRequest {
                table_id,
                cookie,
                cookie_mask: if cookie == 0 { 0 } else { u64::MAX },
                match_: m,
                ..FlowStatsRequest::default()
            };
            let body = if agg {
                MultipartRequestBody::Aggregate(req)
            } else {
                MultipartRequestBody::Flow(req)
            };
            (
                Message::MultipartRequest(MultipartRequest { flags: 0, body }),
                nxm,
            )
        }),
        (vec((nx_match(), any::<(u64, u16)>()), 0..4)).prop_map(move |flows| {
            let flows = flows
                .into_iter()
                .map(|(m, (cookie, priority))| FlowStats {
                    cookie,
                    priority,
                    match_: m,
                    ..FlowStats::default()
                })
                .collect();
            let body = MultipartReplyBody::Flow(flows);
            (
                Message::MultipartReply(MultipartReply { flags: 0, body }),
                nxm,
            )
        }),
    ]
}

/// A model error code as decoding a 1.0 error makes it.
fn error_code() -> impl Strategy<Value = ErrorCode> {
    (0u16..6, 0u16..10).prop_map(|(t, c)| {
        let mut v = Vec::new();
        Writer::new(&mut v).u16(t);
        v.extend_from_slice(&c.to_be_bytes());
        let mut r = Reader::new(&v, ErrorCode::BadRequest(BadRequestCode::BadLen));
        errors::decode_error_body(&mut r)
            .map(|e| e.code)
            .unwrap_or(ErrorCode::Other { ty: t, code: c })
    })
}

fn message() -> impl Strategy<Value = Message> {
    use Message as M;
    let bytes = || vec(any::<u8>(), 0..24);
    let counters = || any::<[u64; 12]>();
    prop_oneof![
        bytes().prop_map(M::EchoRequest),
        bytes().prop_map(M::EchoReply),
        Just(M::BarrierRequest),
        Just(M::FeaturesRequest),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(experimenter, exp_type, data)| {
            M::Experimenter(crate::openflow::message::Experimenter {
                experimenter,
                exp_type,
                data,
            })
        }),
        (error_code(), bytes()).prop_map(|(code, data)| M::Error(ErrorMsg { code, data })),
        flow_mod().prop_map(M::FlowMod),
        (any::<(u32, u16, u8)>(), port(), bytes()).prop_map(
            |((buffer_id, total_len, reason), p, data)| {
                M::PacketIn(PacketIn {
                    buffer_id,
                    total_len,
                    reason,
                    cookie: u64::MAX,
                    match_: Match::from_fields(vec![F::InPort(p)]).unwrap(),
                    data,
                    ..PacketIn::default()
                })
            }
        ),
        (any::<u32>(), out_port(), vec(op(), 0..5), bytes()).prop_map(
            |(buffer_id, in_port, ops, data)| {
                M::PacketOut(PacketOut {
                    buffer_id,
                    in_port,
                    pipeline: Match::new(),
                    actions: actions_for(&ops, &Match::new()),
                    data,
                })
            }
        ),
        (port(), any::<[u8; 6]>(), any::<[u32; 2]>(), 0u32..(1 << 12)).prop_map(
            |(port_no, mac, v, adv)| {
                M::PortMod(PortMod {
                    port_no,
                    hw_addr: MacAddr(mac),
                    config: v[0],
                    mask: v[1],
                    advertise: port10::features_from_v10(adv),
                })
            }
        ),
        (
            any::<u8>(),
            port(),
            any::<u32>(),
            any::<bool>(),
            any::<[u16; 4]>()
        )
            .prop_map(|(reason, port_no, config, down, f)| {
                let feat = |x: u16| port10::features_from_v10(u32::from(x) & 0xfff);
                M::PortStatus(PortStatus {
                    reason,
                    desc: Port {
                        port_no,
                        name: "p".into(),
                        config,
                        state: u32::from(down),
                        curr: feat(f[0]),
                        advertised: feat(f[1]),
                        supported: feat(f[2]),
                        peer: feat(f[3]),
                        ..Port::default()
                    },
                })
            }),
        // 1.0 asks for all ports' queues with OFPP_ALL: the model's ANY.
        (
            port().prop_filter("ALL is ANY", |p| *p != PortNo::ALL),
            any::<u32>()
        )
            .prop_map(|(port_no, queue_id)| M::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::Queue { port_no, queue_id },
            })),
        (match_(), any::<u8>(), port()).prop_map(|(match_, table_id, out_port)| {
            M::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::Aggregate(FlowStatsRequest {
                    table_id,
                    out_port,
                    match_,
                    ..FlowStatsRequest::default()
                }),
            })
        }),
        (port(), counters()).prop_map(|(port_no, c)| M::MultipartReply(MultipartReply {
            flags: 1,
            body: MultipartReplyBody::PortStats(vec![PortStats {
                port_no,
                rx_packets: c[0],
                tx_packets: c[1],
                rx_bytes: c[2],
                tx_bytes: c[3],
                rx_dropped: c[4],
                tx_dropped: c[5],
                rx_errors: c[6],
                tx_errors: c[7],
                rx_frame_err: c[8],
                rx_over_err: c[9],
                rx_crc_err: c[10],
                collisions: c[11],
                ..PortStats::default()
            }]),
        })),
        (flow_mod(), any::<(u32, u32, u64, u64)>()).prop_map(|(f, (s, ns, p, b))| {
            M::MultipartReply(MultipartReply {
                flags: 0,
                body: MultipartReplyBody::Flow(vec![FlowStats {
                    table_id: 0,
                    duration_sec: s,
                    duration_nsec: ns,
                    priority: f.priority,
                    idle_timeout: f.idle_timeout,
                    hard_timeout: f.hard_timeout,
                    flags: 0,
                    cookie: f.cookie,
                    packet_count: p,
                    byte_count: b,
                    match_: f.match_,
                    instructions: f.instructions,
                }]),
            })
        }),
        (any::<u8>(), any::<(u32, u64, u64)>()).prop_map(|(table_id, (a, l, m))| {
            M::MultipartReply(MultipartReply {
                flags: 0,
                body: MultipartReplyBody::Table(vec![TableStats {
                    table_id,
                    active_count: a,
                    lookup_count: l,
                    matched_count: m,
                }]),
            })
        }),
        port().prop_map(M::QueueGetConfigRequest),
        (
            match_(),
            any::<(u64, u16, u32, u32, u16, u64, u64)>(),
            0u8..3
        )
            .prop_map(
                |(match_, (cookie, priority, ds, dns, idle, p, b), reason)| {
                    M::FlowRemoved(crate::openflow::flow::FlowRemoved {
                        cookie,
                        priority,
                        reason,
                        table_id: 0,
                        duration_sec: ds,
                        duration_nsec: dns,
                        idle_timeout: idle,
                        hard_timeout: 0,
                        packet_count: p,
                        byte_count: b,
                        match_,
                    })
                }
            ),
        any::<(u16, u16)>().prop_map(|(flags, miss_send_len)| M::SetConfig(
            crate::openflow::message::SwitchConfig {
                flags,
                miss_send_len
            }
        )),
        any::<(u64, u32, u8, u32)>().prop_map(|(datapath_id, n_buffers, n_tables, caps)| {
            M::FeaturesReply(SwitchFeatures {
                datapath_id,
                n_buffers,
                n_tables,
                auxiliary_id: 0,
                capabilities: caps & 0x67,
                reserved: 0,
            })
        }),
        (
            port(),
            vec(
                (
                    any::<u32>(),
                    vec((any::<u16>(), vec(any::<u8>(), 0..9)), 0..3)
                ),
                0..3
            )
        )
            .prop_map(|(port, qs)| {
                use crate::openflow::message::{PacketQueue, QueueGetConfigReply, QueueProp};
                M::QueueGetConfigReply(QueueGetConfigReply {
                    port,
                    queues: qs
                        .into_iter()
                        .map(|(queue_id, props)| PacketQueue {
                            queue_id,
                            port,
                            properties: props
                                .into_iter()
                                .map(|(property, data)| QueueProp { property, data })
                                .collect(),
                        })
                        .collect(),
                })
            }),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(experimenter, exp_type, data)| {
            M::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::Experimenter {
                    experimenter,
                    exp_type,
                    data,
                },
            })
        }),
        Just(M::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Desc(Box::new(Desc {
                mfr_desc: "mswitch".into(),
                dp_desc: "br0".into(),
                ..Desc::default()
            })),
        })),
    ]
}

/// The formats a message's own bytes were said in (Nicira's NXM forms
/// or 1.0's), to say it again the same way.
fn ctx_of(bytes: &[u8]) -> Ctx {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut ctx = Ctx::default();
    let nx = word(8) == Some(errors::NX_VENDOR_ID);
    match (bytes.get(1).copied(), word(12)) {
        (Some(msg_type::VENDOR), Some(st)) if nx => match st {
            nx_subtype::PACKET_IN => ctx.packet_in_format = nx::PacketInFormat::Nxt,
            nx_subtype::PACKET_IN2 => ctx.packet_in_format = nx::PacketInFormat::Nxt2,
            _ => ctx.flow_format = nx::FlowFormat::Nxm,
        },
        (Some(msg_type::STATS_REQUEST | msg_type::STATS_REPLY), _)
            if word(12) == Some(errors::NX_VENDOR_ID) =>
        {
            ctx.flow_format = nx::FlowFormat::Nxm
        }
        _ => {}
    }
    ctx
}

/// Decoding must not panic; what decodes must encode (in the form it came
/// in), and decode again to the same message.
fn check_stable(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ctx = ctx_of(bytes);
    match decode(bytes, &Ctx::default()) {
        Ok((h, msg)) => {
            let again = encode_with(&msg, h.xid, &ctx)
                .map_err(|e| TestCaseError::fail(format!("{e}: {msg:?}")))?;
            let (_, back) = decode(&again, &Ctx::default())
                .map_err(|e| TestCaseError::fail(format!("{e}: {msg:?}")))?;
            if ctx == Ctx::default() {
                prop_assert_eq!(back, msg);
            } else {
                // NXM writes a match's fields in one order: the same
                // fields, and from then on the same bytes.
                prop_assert_eq!(encode_with(&back, h.xid, &ctx).ok(), Some(again));
            }
        }
        Err(e) => {
            prop_assert_eq!(e.version, VERSION);
            prop_assert!(e.data.len() <= 64);
            let reply = e.reply();
            prop_assert_eq!(reply[0], VERSION);
            prop_assert_eq!(
                usize::from(u16::from_be_bytes([reply[2], reply[3]])),
                reply.len()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(msg in message(), xid in any::<u32>()) {
        let bytes = encode(&msg, xid).map_err(|e| TestCaseError::fail(format!("{e}: {msg:?}")))?;
        let (h, back) = decode(&bytes, &Ctx::default())
            .map_err(|e| TestCaseError::fail(format!("{e}: {bytes:02x?}")))?;
        prop_assert_eq!((h.version, h.xid), (VERSION, xid));
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(encode(&back, xid).unwrap(), bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(
        msg in message(),
        edits in vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = encode(&msg, 1).unwrap();
        for (at, v) in edits {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        // Keep the header honest half the time so decoding goes deep.
        if cut % 2 == 0 {
            let n = bytes.len() as u16;
            bytes[0] = VERSION;
            bytes[2..4].copy_from_slice(&n.to_be_bytes());
        }
        check_stable(&bytes)?;
        let cut = cut % (bytes.len() + 1);
        check_stable(&bytes[..cut])?;
    }

    #[test]
    fn nxm_messages_survive_and_corruptions_never_panic(
        (msg, ctx) in nx_message(),
        edits in vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let bytes = encode_with(&msg, 3, &ctx).map_err(|e| TestCaseError::fail(format!("{e}: {msg:?}")))?;
        let (_, back) = decode(&bytes, &Ctx::default())
            .map_err(|e| TestCaseError::fail(format!("{e}: {bytes:02x?}")))?;
        // The same message, but for the order of its match's fields (NXM
        // writes them in one order): it says the same bytes.
        prop_assert_eq!(back.msg_type(), msg.msg_type());
        prop_assert_eq!(encode_with(&back, 3, &ctx).ok(), Some(bytes.clone()));
        let mut bytes = bytes;
        for (at, v) in edits {
            let n = bytes.len();
            // Keep the vendor header so the corruption reaches the body.
            let at = 16 + at % (n - 16).max(1);
            if at < n {
                bytes[at] = v;
            }
        }
        check_stable(&bytes)?;
        let cut = cut % (bytes.len() + 1);
        let mut short = bytes[..cut].to_vec();
        if short.len() >= 4 {
            let n = short.len() as u16;
            short[2..4].copy_from_slice(&n.to_be_bytes());
        }
        check_stable(&short)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in vec(any::<u8>(), 0..300), ty in 0u8..24, fix in any::<bool>()) {
        if fix && bytes.len() >= 8 {
            let n = bytes.len() as u16;
            bytes[0] = VERSION;
            bytes[1] = ty;
            bytes[2..4].copy_from_slice(&n.to_be_bytes());
        }
        check_stable(&bytes)?;
    }
}
