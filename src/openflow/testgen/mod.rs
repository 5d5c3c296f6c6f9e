//! Proptest strategies for OpenFlow messages, and the property tests that
//! use them: every generated message survives encode then decode unchanged,
//! its bytes survive decode then encode unchanged, and no corruption of
//! those bytes makes the decoder panic.

mod bodies;
mod fields;
mod nicira;

use proptest::collection::vec;
use proptest::prelude::*;

use self::bodies::{bucket, group_type, meter_band, multipart_reply, multipart_request, port};
use self::fields::{actions, instructions, mac, match_, port_no};
use super::decode;
use super::error::{ErrorCode, ErrorMsg};
use super::flow::{FlowMod, FlowModCommand, FlowRemoved, PacketIn, PacketOut};
use super::group::{GroupMod, GroupModCommand};
use super::hello::{Hello, HelloElement};
use super::message::*;
use super::meter::{MeterMod, MeterModCommand};
use super::port::{PortMod, PortStatus};
use super::table::TableMod;

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        (0u16..16, 0u16..20).prop_map(|(t, c)| ErrorCode::from_type_code(t, c)),
        (any::<u16>(), any::<u32>()).prop_map(|(exp_type, experimenter)| ErrorCode::Experimenter {
            exp_type,
            experimenter
        }),
    ]
}

fn flow_mod() -> impl Strategy<Value = FlowMod> {
    (
        any::<[u64; 2]>(),
        any::<u8>(),
        proptest::sample::select(FlowModCommand::ALL),
        any::<[u16; 3]>(),
        any::<u32>(),
        port_no(),
        any::<u32>(),
        any::<u16>(),
        match_(),
        instructions(),
    )
        .prop_map(
            |(
                c,
                table_id,
                command,
                t,
                buffer_id,
                out_port,
                out_group,
                flags,
                match_,
                instructions,
            )| FlowMod {
                cookie: c[0],
                cookie_mask: c[1],
                table_id,
                command,
                idle_timeout: t[0],
                hard_timeout: t[1],
                priority: t[2],
                buffer_id,
                out_port,
                out_group,
                flags,
                match_,
                instructions,
            },
        )
}

pub(crate) fn message() -> impl Strategy<Value = Message> {
    use Message as M;
    let bytes = || vec(any::<u8>(), 0..32);
    let async_cfg = || {
        any::<[u32; 6]>().prop_map(|v| AsyncConfig {
            packet_in_mask: [v[0], v[1]],
            port_status_mask: [v[2], v[3]],
            flow_removed_mask: [v[4], v[5]],
        })
    };
    let role = || {
        (proptest::sample::select(ControllerRole::ALL), any::<u64>()).prop_map(
            |(role, generation_id)| RoleMsg {
                role,
                generation_id,
            },
        )
    };
    let config = || {
        any::<(u16, u16)>().prop_map(|(flags, miss_send_len)| SwitchConfig {
            flags,
            miss_send_len,
        })
    };
    prop_oneof![
        vec(
            prop_oneof![
                vec(any::<u32>(), 0..3).prop_map(HelloElement::VersionBitmap),
                ((2u16..), bytes()).prop_map(|(ty, data)| HelloElement::Unknown { ty, data }),
            ],
            0..3
        )
        .prop_map(|elements| M::Hello(Hello { elements })),
        (error_code(), bytes()).prop_map(|(code, data)| M::Error(ErrorMsg { code, data })),
        bytes().prop_map(M::EchoRequest),
        bytes().prop_map(M::EchoReply),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(experimenter, exp_type, data)| {
            M::Experimenter(Experimenter {
                experimenter,
                exp_type,
                data,
            })
        }),
        Just(M::FeaturesRequest),
        any::<(u64, u32, u8, u8, u32, u32)>().prop_map(
            |(datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved)| {
                M::FeaturesReply(SwitchFeatures {
                    datapath_id,
                    n_buffers,
                    n_tables,
                    auxiliary_id,
                    capabilities,
                    reserved,
                })
            }
        ),
        Just(M::GetConfigRequest),
        config().prop_map(M::GetConfigReply),
        config().prop_map(M::SetConfig),
        (any::<(u32, u16, u8, u8, u64)>(), match_(), bytes()).prop_map(
            |((buffer_id, total_len, reason, table_id, cookie), match_, data)| M::PacketIn(
                PacketIn {
                    buffer_id,
                    total_len,
                    reason,
                    table_id,
                    cookie,
                    match_,
                    data
                }
            )
        ),
        (
            any::<(u64, u16, u8, u8, u32, u32)>(),
            any::<(u16, u16, u64, u64)>(),
            match_()
        )
            .prop_map(
                |(
                    (cookie, priority, reason, table_id, duration_sec, duration_nsec),
                    (idle_timeout, hard_timeout, packet_count, byte_count),
                    match_,
                )| {
                    M::FlowRemoved(FlowRemoved {
                        cookie,
                        priority,
                        reason,
                        table_id,
                        duration_sec,
                        duration_nsec,
                        idle_timeout,
                        hard_timeout,
                        packet_count,
                        byte_count,
                        match_,
                    })
                }
            ),
        (any::<u8>(), port()).prop_map(|(reason, desc)| M::PortStatus(PortStatus { reason, desc })),
        (any::<u32>(), port_no(), actions(), bytes()).prop_map(
            |(buffer_id, in_port, actions, data)| M::PacketOut(PacketOut {
                buffer_id,
                in_port,
                pipeline: crate::openflow::Match::new(),
                actions,
                data
            })
        ),
        flow_mod().prop_map(M::FlowMod),
        (
            proptest::sample::select(GroupModCommand::ALL),
            group_type(),
            any::<u32>(),
            vec(bucket(), 0..4)
        )
            .prop_map(
                |(command, group_type, group_id, buckets)| M::GroupMod(GroupMod {
                    command,
                    group_type,
                    group_id,
                    buckets
                })
            ),
        (port_no(), mac(), any::<[u32; 3]>()).prop_map(|(port_no, hw_addr, v)| M::PortMod(
            PortMod {
                port_no,
                hw_addr,
                config: v[0],
                mask: v[1],
                advertise: v[2]
            }
        )),
        (any::<u8>(), any::<u32>())
            .prop_map(|(table_id, config)| M::TableMod(TableMod { table_id, config })),
        multipart_request().prop_map(M::MultipartRequest),
        multipart_reply().prop_map(M::MultipartReply),
        Just(M::BarrierRequest),
        Just(M::BarrierReply),
        port_no().prop_map(M::QueueGetConfigRequest),
        (
            port_no(),
            vec(
                (
                    any::<u32>(),
                    port_no(),
                    vec((any::<u16>(), vec(any::<u8>(), 0..9)), 0..3)
                ),
                0..3
            )
        )
            .prop_map(|(port, qs)| {
                M::QueueGetConfigReply(QueueGetConfigReply {
                    port,
                    queues: qs
                        .into_iter()
                        .map(|(queue_id, port, props)| PacketQueue {
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
        role().prop_map(M::RoleRequest),
        role().prop_map(M::RoleReply),
        Just(M::GetAsyncRequest),
        async_cfg().prop_map(M::GetAsyncReply),
        async_cfg().prop_map(M::SetAsync),
        (
            proptest::sample::select(MeterModCommand::ALL),
            any::<u16>(),
            any::<u32>(),
            vec(meter_band(), 0..3)
        )
            .prop_map(|(command, flags, meter_id, bands)| M::MeterMod(MeterMod {
                command,
                flags,
                meter_id,
                bands
            })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(msg in message(), xid in any::<u32>()) {
        let bytes = msg.encode(xid).expect("generated messages fit");
        prop_assert_eq!(super::frame_len(&bytes), Some(bytes.len()));
        let (h, back) = decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {bytes:02x?}")))?;
        prop_assert_eq!(h.xid, xid);
        prop_assert_eq!(h.version, super::OFP_VERSION);
        prop_assert_eq!(h.msg_type, msg.msg_type().to_wire());
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(back.encode(xid).unwrap(), bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(
        msg in message(),
        edits in vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = msg.encode(1).unwrap();
        for (at, v) in edits {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        // Keep the length field honest half the time so decoding goes deep.
        if cut % 2 == 0 {
            let n = bytes.len() as u16;
            bytes[2..4].copy_from_slice(&n.to_be_bytes());
        }
        check_stable(&bytes)?;
        let cut = cut % (bytes.len() + 1);
        check_stable(&bytes[..cut])?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in vec(any::<u8>(), 0..300), fix_len in any::<bool>()) {
        if fix_len && bytes.len() >= 4 {
            let n = bytes.len() as u16;
            bytes[0] = super::OFP_VERSION;
            bytes[2..4].copy_from_slice(&n.to_be_bytes());
        }
        check_stable(&bytes)?;
    }
}

/// Decoding must not panic; what decodes must re-encode to something that
/// decodes to the same message.
fn check_stable(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok((h, msg)) => {
            let again = msg
                .encode(h.xid)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (_, back) = decode(&again).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(back, msg);
        }
        Err(e) => {
            prop_assert!(e.data.len() <= 64);
            prop_assert!(!e.reply().is_empty());
        }
    }
    Ok(())
}
