//! Strategies for ports, groups, meters, table features and multipart bodies.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::fields::{actions, instructions, mac, match_, port_no};
use crate::openflow::FixedStr;
use crate::openflow::action::ActionId;
use crate::openflow::group::{
    Bucket, BucketCounter, GroupDesc, GroupFeatures, GroupStats, GroupType,
};
use crate::openflow::instruction::InstructionId;
use crate::openflow::meter::{MeterBand, MeterBandStats, MeterConfig, MeterFeatures, MeterStats};
use crate::openflow::multipart::*;
use crate::openflow::oxm::{OxmFieldType, OxmId};
use crate::openflow::port::Port;
use crate::openflow::table::{TableFeatureProp, TableFeatures};

fn fixed_str<const N: usize>() -> impl Strategy<Value = FixedStr<N>> {
    "[a-z0-9 ._-]{0,12}".prop_map(|s| FixedStr::new(&s))
}

pub(super) fn port() -> impl Strategy<Value = Port> {
    (port_no(), mac(), fixed_str::<16>(), any::<[u32; 8]>()).prop_map(
        |(port_no, hw_addr, name, v)| Port {
            port_no,
            hw_addr,
            name,
            config: v[0],
            state: v[1],
            curr: v[2],
            advertised: v[3],
            supported: v[4],
            peer: v[5],
            curr_speed: v[6],
            max_speed: v[7],
        },
    )
}

pub(super) fn bucket() -> impl Strategy<Value = Bucket> {
    (any::<u16>(), port_no(), any::<u32>(), actions()).prop_map(
        |(weight, watch_port, watch_group, actions)| Bucket {
            weight,
            watch_port,
            watch_group,
            actions,
        },
    )
}

pub(super) fn group_type() -> impl Strategy<Value = GroupType> {
    proptest::sample::select(GroupType::ALL)
}

pub(super) fn meter_band() -> impl Strategy<Value = MeterBand> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(rate, burst_size)| MeterBand::Drop { rate, burst_size }),
        (any::<u32>(), any::<u32>(), any::<u8>()).prop_map(|(rate, burst_size, prec_level)| {
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level,
            }
        }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            vec(any::<u64>(), 0..2)
        )
            .prop_map(|(rate, burst_size, experimenter, d)| {
                MeterBand::Experimenter {
                    rate,
                    burst_size,
                    experimenter,
                    data: d.iter().flat_map(|x| x.to_be_bytes()).collect(),
                }
            }),
    ]
}

fn oxm_id() -> impl Strategy<Value = OxmId> {
    prop_oneof![
        (proptest::sample::select(OxmFieldType::ALL), any::<bool>())
            .prop_map(|(t, m)| OxmId::basic(t, m)),
        (any::<u16>(), any::<u32>()).prop_map(|(h, e)| OxmId {
            header: 0xffff_0000 | u32::from(h),
            experimenter: Some(e)
        }),
    ]
}

fn table_prop() -> impl Strategy<Value = TableFeatureProp> {
    use TableFeatureProp as P;
    let tlv_ids = || vec((0u16..30, option::of(any::<u32>())), 0..5);
    prop_oneof![
        (any::<bool>(), tlv_ids()).prop_map(|(miss, ids)| P::Instructions {
            miss,
            ids: ids
                .into_iter()
                .map(|(ty, e)| match e {
                    Some(e) => InstructionId {
                        ty: 0xffff,
                        experimenter: Some(e)
                    },
                    None => InstructionId {
                        ty,
                        experimenter: None
                    },
                })
                .collect()
        }),
        (any::<bool>(), vec(any::<u8>(), 0..10))
            .prop_map(|(miss, tables)| P::NextTables { miss, tables }),
        (any::<bool>(), any::<bool>(), tlv_ids()).prop_map(|(write, miss, ids)| {
            let ids = ids
                .into_iter()
                .map(|(ty, e)| match e {
                    Some(e) => ActionId {
                        ty: 0xffff,
                        experimenter: Some(e),
                    },
                    None => ActionId {
                        ty,
                        experimenter: None,
                    },
                })
                .collect();
            if write {
                P::WriteActions { miss, ids }
            } else {
                P::ApplyActions { miss, ids }
            }
        }),
        vec(oxm_id(), 0..6).prop_map(P::Match),
        vec(oxm_id(), 0..6).prop_map(P::Wildcards),
        (any::<bool>(), vec(oxm_id(), 0..6)).prop_map(|(miss, ids)| P::WriteSetfield { miss, ids }),
        (any::<bool>(), vec(oxm_id(), 0..6)).prop_map(|(miss, ids)| P::ApplySetfield { miss, ids }),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            vec(any::<u8>(), 0..12)
        )
            .prop_map(|(miss, experimenter, exp_type, data)| {
                P::Experimenter {
                    miss,
                    experimenter,
                    exp_type,
                    data,
                }
            }),
    ]
}

fn table_features() -> impl Strategy<Value = TableFeatures> {
    (
        any::<u8>(),
        fixed_str::<32>(),
        any::<[u64; 2]>(),
        any::<[u32; 2]>(),
        vec(table_prop(), 0..5),
    )
        .prop_map(|(table_id, name, md, v, properties)| TableFeatures {
            table_id,
            name,
            metadata_match: md[0],
            metadata_write: md[1],
            config: v[0],
            max_entries: v[1],
            properties,
        })
}

fn flow_stats_request() -> impl Strategy<Value = FlowStatsRequest> {
    (
        any::<u8>(),
        port_no(),
        any::<u32>(),
        any::<[u64; 2]>(),
        match_(),
    )
        .prop_map(
            |(table_id, out_port, out_group, c, match_)| FlowStatsRequest {
                table_id,
                out_port,
                out_group,
                cookie: c[0],
                cookie_mask: c[1],
                match_,
            },
        )
}

pub(super) fn multipart_request() -> impl Strategy<Value = MultipartRequest> {
    use MultipartRequestBody as B;
    let body = prop_oneof![
        Just(B::Desc),
        flow_stats_request().prop_map(B::Flow),
        flow_stats_request().prop_map(B::Aggregate),
        Just(B::Table),
        port_no().prop_map(|port_no| B::PortStats { port_no }),
        (port_no(), any::<u32>()).prop_map(|(port_no, queue_id)| B::Queue { port_no, queue_id }),
        any::<u32>().prop_map(|group_id| B::Group { group_id }),
        Just(B::GroupDesc {
            group_id: crate::openflow::group::group_id::ALL
        }),
        Just(B::GroupFeatures),
        any::<u32>().prop_map(|meter_id| B::Meter { meter_id }),
        any::<u32>().prop_map(|meter_id| B::MeterConfig { meter_id }),
        Just(B::MeterFeatures),
        vec(table_features(), 0..3).prop_map(B::TableFeatures),
        Just(B::PortDesc {
            port_no: crate::openflow::PortNo::ANY
        }),
        (any::<u32>(), any::<u32>(), vec(any::<u8>(), 0..16)).prop_map(
            |(experimenter, exp_type, data)| B::Experimenter {
                experimenter,
                exp_type,
                data
            }
        ),
    ];
    (0u16..2, body).prop_map(|(flags, body)| MultipartRequest { flags, body })
}

fn flow_stats() -> impl Strategy<Value = FlowStats> {
    (
        any::<(u8, u32, u32, u16, u16, u16, u16)>(),
        any::<[u64; 3]>(),
        match_(),
        instructions(),
    )
        .prop_map(
            |(
                (
                    table_id,
                    duration_sec,
                    duration_nsec,
                    priority,
                    idle_timeout,
                    hard_timeout,
                    flags,
                ),
                c,
                match_,
                instructions,
            )| {
                FlowStats {
                    table_id,
                    duration_sec,
                    duration_nsec,
                    priority,
                    idle_timeout,
                    hard_timeout,
                    flags,
                    cookie: c[0],
                    packet_count: c[1],
                    byte_count: c[2],
                    match_,
                    instructions,
                }
            },
        )
}

pub(super) fn multipart_reply() -> impl Strategy<Value = MultipartReply> {
    use MultipartReplyBody as B;
    let body = prop_oneof![
        (
            fixed_str::<256>(),
            fixed_str::<256>(),
            fixed_str::<256>(),
            fixed_str::<32>(),
            fixed_str::<256>()
        )
            .prop_map(|(mfr_desc, hw_desc, sw_desc, serial_num, dp_desc)| B::Desc(
                Box::new(Desc {
                    mfr_desc,
                    hw_desc,
                    sw_desc,
                    serial_num,
                    dp_desc
                })
            )),
        vec(flow_stats(), 0..3).prop_map(B::Flow),
        any::<(u64, u64, u32)>().prop_map(|(packet_count, byte_count, flow_count)| B::Aggregate(
            AggregateStats {
                packet_count,
                byte_count,
                flow_count
            }
        )),
        vec(any::<(u8, u32, u64, u64)>(), 0..4).prop_map(|v| B::Table(
            v.into_iter()
                .map(
                    |(table_id, active_count, lookup_count, matched_count)| TableStats {
                        table_id,
                        active_count,
                        lookup_count,
                        matched_count
                    }
                )
                .collect()
        )),
        vec((port_no(), any::<[u64; 12]>(), any::<[u32; 2]>()), 0..3).prop_map(|v| B::PortStats(
            v.into_iter()
                .map(|(port_no, c, d)| PortStats {
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
                    duration_sec: d[0],
                    duration_nsec: d[1],
                })
                .collect()
        )),
        vec((port_no(), any::<(u32, u64, u64, u64, u32, u32)>()), 0..3).prop_map(|v| B::Queue(
            v.into_iter()
                .map(
                    |(
                        port_no,
                        (queue_id, tx_bytes, tx_packets, tx_errors, duration_sec, duration_nsec),
                    )| QueueStats {
                        port_no,
                        queue_id,
                        tx_bytes,
                        tx_packets,
                        tx_errors,
                        duration_sec,
                        duration_nsec
                    }
                )
                .collect()
        )),
        vec(
            (
                any::<(u32, u32, u64, u64, u32, u32)>(),
                vec(any::<(u64, u64)>(), 0..3)
            ),
            0..3
        )
        .prop_map(|v| B::Group(
            v.into_iter()
                .map(
                    |(
                        (
                            group_id,
                            ref_count,
                            packet_count,
                            byte_count,
                            duration_sec,
                            duration_nsec,
                        ),
                        b,
                    )| GroupStats {
                        group_id,
                        ref_count,
                        packet_count,
                        byte_count,
                        duration_sec,
                        duration_nsec,
                        bucket_stats: b
                            .into_iter()
                            .map(|(packet_count, byte_count)| BucketCounter {
                                packet_count,
                                byte_count
                            })
                            .collect(),
                    }
                )
                .collect()
        )),
        vec((group_type(), any::<u32>(), vec(bucket(), 0..3)), 0..3).prop_map(|v| B::GroupDesc(
            v.into_iter()
                .map(|(group_type, group_id, buckets)| GroupDesc {
                    group_type,
                    group_id,
                    buckets
                })
                .collect()
        )),
        any::<([u32; 2], [u32; 4], [u32; 4])>().prop_map(|(a, max_groups, actions)| {
            B::GroupFeatures(GroupFeatures {
                types: a[0],
                capabilities: a[1],
                max_groups,
                actions,
            })
        }),
        vec(
            (
                any::<(u32, u32, u64, u64, u32, u32)>(),
                vec(any::<(u64, u64)>(), 0..3)
            ),
            0..3
        )
        .prop_map(|v| B::Meter(
            v.into_iter()
                .map(
                    |(
                        (
                            meter_id,
                            flow_count,
                            packet_in_count,
                            byte_in_count,
                            duration_sec,
                            duration_nsec,
                        ),
                        b,
                    )| MeterStats {
                        meter_id,
                        flow_count,
                        packet_in_count,
                        byte_in_count,
                        duration_sec,
                        duration_nsec,
                        band_stats: b
                            .into_iter()
                            .map(|(packet_band_count, byte_band_count)| MeterBandStats {
                                packet_band_count,
                                byte_band_count
                            })
                            .collect(),
                    }
                )
                .collect()
        )),
        vec((any::<u16>(), any::<u32>(), vec(meter_band(), 0..3)), 0..3).prop_map(|v| {
            B::MeterConfig(
                v.into_iter()
                    .map(|(flags, meter_id, bands)| MeterConfig {
                        flags,
                        meter_id,
                        bands,
                    })
                    .collect(),
            )
        }),
        any::<(u32, u32, u32, u8, u8)>().prop_map(
            |(max_meter, band_types, capabilities, max_bands, max_color)| {
                B::MeterFeatures(MeterFeatures {
                    max_meter,
                    band_types,
                    capabilities,
                    max_bands,
                    max_color,
                })
            }
        ),
        vec(table_features(), 0..3).prop_map(B::TableFeatures),
        vec(port(), 0..4).prop_map(B::PortDesc),
        (any::<u32>(), any::<u32>(), vec(any::<u8>(), 0..16)).prop_map(
            |(experimenter, exp_type, data)| B::Experimenter {
                experimenter,
                exp_type,
                data
            }
        ),
    ];
    (0u16..2, body).prop_map(|(flags, body)| MultipartReply { flags, body })
}
