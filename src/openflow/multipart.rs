//! `OFPT_MULTIPART_REQUEST` and `OFPT_MULTIPART_REPLY`: statistics and
//! descriptions, one body type per `OFPMP_*`.
//!
//! A request body that the spec defines as empty must be empty
//! (`OFPBRC_BAD_LEN` otherwise); an unknown multipart type is
//! `OFPBRC_BAD_MULTIPART`. Each message carries whole entries: splitting a
//! long reply over several messages (with [`MORE`]) is the sender's job.
//! Entries whose layout changed are read and written in the message's
//! version: ports, port and queue statistics from 1.4 on; flow and aggregate
//! statistics (as OXS), group descriptions and the port and group filters of
//! port and group description requests in 1.5.

use super::bytes::{FixedStr, Reader, Res, Writer};
use super::error::{BadRequestCode, ErrorCode};
use super::flow_match::Match;
use super::group::{GroupDesc, GroupFeatures, GroupStats};
use super::header::version;
use super::instruction::{Instruction, decode_instructions, encode_instructions};
use super::meter::{MeterConfig, MeterFeatures, MeterStats};
use super::oxs::Stats;
use super::port::{Port, PortNo};
use super::table::TableFeatures;

wire_enum! {
    /// `ofp_multipart_type`.
    pub enum MultipartType: u16 {
        Desc = 0 => "OFPMP_DESC",
        Flow = 1 => "OFPMP_FLOW",
        Aggregate = 2 => "OFPMP_AGGREGATE",
        Table = 3 => "OFPMP_TABLE",
        PortStats = 4 => "OFPMP_PORT_STATS",
        Queue = 5 => "OFPMP_QUEUE",
        Group = 6 => "OFPMP_GROUP",
        GroupDesc = 7 => "OFPMP_GROUP_DESC",
        GroupFeatures = 8 => "OFPMP_GROUP_FEATURES",
        Meter = 9 => "OFPMP_METER",
        MeterConfig = 10 => "OFPMP_METER_CONFIG",
        MeterFeatures = 11 => "OFPMP_METER_FEATURES",
        TableFeatures = 12 => "OFPMP_TABLE_FEATURES",
        PortDesc = 13 => "OFPMP_PORT_DESC",
        Experimenter = 0xffff => "OFPMP_EXPERIMENTER",
    }
}

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`: more messages of this
/// request or reply follow.
pub const MORE: u16 = 1;

/// `OFPQ_ALL`: every queue, in queue statistics requests.
pub const OFPQ_ALL: u32 = 0xffff_ffff;

/// `OFPMP_FLOW` and `OFPMP_AGGREGATE` requests: which flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    /// A table, or [`super::table_id::ALL`].
    pub table_id: u8,
    pub out_port: PortNo,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub match_: Match,
}

impl Default for FlowStatsRequest {
    fn default() -> Self {
        FlowStatsRequest {
            table_id: super::table_id::ALL,
            out_port: PortNo::ANY,
            out_group: super::group::group_id::ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::new(),
        }
    }
}

impl FlowStatsRequest {
    fn decode(r: &mut Reader<'_>) -> Res<FlowStatsRequest> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let out_port = PortNo(r.u32()?);
        let out_group = r.u32()?;
        r.skip(4)?;
        let req = FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie: r.u64()?,
            cookie_mask: r.u64()?,
            match_: Match::decode(r)?,
        };
        r.finish()?;
        Ok(req)
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.u8(self.table_id);
        w.zeros(3);
        w.u32(self.out_port.0);
        w.u32(self.out_group);
        w.zeros(4);
        w.u64(self.cookie);
        w.u64(self.cookie_mask);
        self.match_.encode(w);
    }
}

/// The body of a multipart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequestBody {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    /// A port, or [`PortNo::ANY`].
    PortStats {
        port_no: PortNo,
    },
    Queue {
        port_no: PortNo,
        queue_id: u32,
    },
    /// A group, or `OFPG_ALL`.
    Group {
        group_id: u32,
    },
    /// A group, or `OFPG_ALL` (1.3 and 1.4 always ask for all).
    GroupDesc {
        group_id: u32,
    },
    GroupFeatures,
    Meter {
        meter_id: u32,
    },
    MeterConfig {
        meter_id: u32,
    },
    MeterFeatures,
    /// Empty: a query; otherwise the tables to configure.
    TableFeatures(Vec<TableFeatures>),
    /// A port, or [`PortNo::ANY`] (1.3 and 1.4 always ask for all).
    PortDesc {
        port_no: PortNo,
    },
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
}

/// `OFPT_MULTIPART_REQUEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    /// [`MORE`] if further messages complete this request.
    pub flags: u16,
    pub body: MultipartRequestBody,
}

fn decode_type(r: &mut Reader<'_>) -> Res<(MultipartType, u16)> {
    let ty = MultipartType::from_wire(r.u16()?)
        .ok_or(ErrorCode::BadRequest(BadRequestCode::BadMultipart))?;
    let flags = r.u16()?;
    r.skip(4)?;
    Ok((ty, flags))
}

fn encode_type(w: &mut Writer<'_>, ty: MultipartType, flags: u16) {
    w.u16(ty.to_wire());
    w.u16(flags);
    w.zeros(4);
}

impl MultipartRequestBody {
    pub fn multipart_type(&self) -> MultipartType {
        use MultipartRequestBody as B;
        match self {
            B::Desc => MultipartType::Desc,
            B::Flow(_) => MultipartType::Flow,
            B::Aggregate(_) => MultipartType::Aggregate,
            B::Table => MultipartType::Table,
            B::PortStats { .. } => MultipartType::PortStats,
            B::Queue { .. } => MultipartType::Queue,
            B::Group { .. } => MultipartType::Group,
            B::GroupDesc { .. } => MultipartType::GroupDesc,
            B::GroupFeatures => MultipartType::GroupFeatures,
            B::Meter { .. } => MultipartType::Meter,
            B::MeterConfig { .. } => MultipartType::MeterConfig,
            B::MeterFeatures => MultipartType::MeterFeatures,
            B::TableFeatures(_) => MultipartType::TableFeatures,
            B::PortDesc { .. } => MultipartType::PortDesc,
            B::Experimenter { .. } => MultipartType::Experimenter,
        }
    }
}

/// Reads a `{u32 id, 4 bytes pad}` request body.
fn id_and_pad(r: &mut Reader<'_>) -> Res<u32> {
    let id = r.u32()?;
    r.skip(4)?;
    r.finish()?;
    Ok(id)
}

impl MultipartRequest {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<MultipartRequest> {
        use MultipartRequestBody as B;
        let (ty, flags) = decode_type(r)?;
        let body = match ty {
            MultipartType::Desc => r.finish().map(|_| B::Desc)?,
            MultipartType::Flow => B::Flow(FlowStatsRequest::decode(r)?),
            MultipartType::Aggregate => B::Aggregate(FlowStatsRequest::decode(r)?),
            MultipartType::Table => r.finish().map(|_| B::Table)?,
            MultipartType::PortStats => B::PortStats {
                port_no: PortNo(id_and_pad(r)?),
            },
            MultipartType::Queue => {
                let q = B::Queue {
                    port_no: PortNo(r.u32()?),
                    queue_id: r.u32()?,
                };
                r.finish()?;
                q
            }
            MultipartType::Group => B::Group {
                group_id: id_and_pad(r)?,
            },
            MultipartType::GroupDesc if r.version() >= version::OF15 => B::GroupDesc {
                group_id: id_and_pad(r)?,
            },
            MultipartType::GroupDesc => r.finish().map(|_| B::GroupDesc {
                group_id: super::group::group_id::ALL,
            })?,
            MultipartType::GroupFeatures => r.finish().map(|_| B::GroupFeatures)?,
            MultipartType::Meter => B::Meter {
                meter_id: id_and_pad(r)?,
            },
            MultipartType::MeterConfig => B::MeterConfig {
                meter_id: id_and_pad(r)?,
            },
            MultipartType::MeterFeatures => r.finish().map(|_| B::MeterFeatures)?,
            MultipartType::TableFeatures => B::TableFeatures(TableFeatures::decode_list(r)?),
            MultipartType::PortDesc if r.version() >= version::OF15 => B::PortDesc {
                port_no: PortNo(id_and_pad(r)?),
            },
            MultipartType::PortDesc => r.finish().map(|_| B::PortDesc {
                port_no: PortNo::ANY,
            })?,
            MultipartType::Experimenter => B::Experimenter {
                experimenter: r.u32()?,
                exp_type: r.u32()?,
                data: r.rest().to_vec(),
            },
        };
        Ok(MultipartRequest { flags, body })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        use MultipartRequestBody as B;
        encode_type(w, self.body.multipart_type(), self.flags);
        match &self.body {
            B::GroupDesc { group_id: id }
            | B::PortDesc {
                port_no: PortNo(id),
            } if w.version() >= version::OF15 => {
                w.u32(*id);
                w.zeros(4);
            }
            B::Desc
            | B::Table
            | B::GroupDesc { .. }
            | B::GroupFeatures
            | B::MeterFeatures
            | B::PortDesc { .. } => {}
            B::Flow(f) | B::Aggregate(f) => f.encode(w),
            B::PortStats { port_no } => {
                w.u32(port_no.0);
                w.zeros(4);
            }
            B::Queue { port_no, queue_id } => {
                w.u32(port_no.0);
                w.u32(*queue_id);
            }
            B::Group { group_id: id }
            | B::Meter { meter_id: id }
            | B::MeterConfig { meter_id: id } => {
                w.u32(*id);
                w.zeros(4);
            }
            B::TableFeatures(tables) => {
                for t in tables {
                    t.encode(w);
                }
            }
            B::Experimenter {
                experimenter,
                exp_type,
                data,
            } => {
                w.u32(*experimenter);
                w.u32(*exp_type);
                w.bytes(data);
            }
        }
    }
}

/// `ofp_desc`: the switch's description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desc {
    pub mfr_desc: FixedStr<256>,
    pub hw_desc: FixedStr<256>,
    pub sw_desc: FixedStr<256>,
    pub serial_num: FixedStr<32>,
    pub dp_desc: FixedStr<256>,
}

/// `ofp_flow_stats`: one flow of an `OFPMP_FLOW` reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

const FLOW_STATS_LEN: usize = 48;

impl FlowStats {
    fn decode_list(r: &mut Reader<'_>) -> Res<Vec<FlowStats>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0)?);
            if len < FLOW_STATS_LEN + 8 {
                return Err(short);
            }
            let mut e = r.sub(len, short)?;
            if e.version() >= version::OF15 {
                out.push(Self::decode15(&mut e)?);
                continue;
            }
            e.skip(2)?;
            let table_id = e.u8()?;
            e.skip(1)?;
            let duration_sec = e.u32()?;
            let duration_nsec = e.u32()?;
            let priority = e.u16()?;
            let idle_timeout = e.u16()?;
            let hard_timeout = e.u16()?;
            let flags = e.u16()?;
            e.skip(4)?;
            out.push(FlowStats {
                table_id,
                duration_sec,
                duration_nsec,
                priority,
                idle_timeout,
                hard_timeout,
                flags,
                cookie: e.u64()?,
                packet_count: e.u64()?,
                byte_count: e.u64()?,
                match_: Match::decode(&mut e)?,
                instructions: decode_instructions(&mut e)?,
            });
        }
        Ok(out)
    }

    /// 1.5's layout: no counters in the fixed part, OXS after the match.
    fn decode15(e: &mut Reader<'_>) -> Res<FlowStats> {
        e.skip(4)?;
        let table_id = e.u8()?;
        e.skip(1)?;
        let priority = e.u16()?;
        let idle_timeout = e.u16()?;
        let hard_timeout = e.u16()?;
        let flags = e.u16()?;
        e.skip(2)?;
        let cookie = e.u64()?;
        let match_ = Match::decode(e)?;
        let st = Stats::decode(e)?;
        let (duration_sec, duration_nsec) = st.duration.unwrap_or_default();
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            cookie,
            packet_count: st.packet_count.unwrap_or_default(),
            byte_count: st.byte_count.unwrap_or_default(),
            match_,
            instructions: decode_instructions(e)?,
        })
    }

    fn encode(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        if w.version() >= version::OF15 {
            w.u16(0);
            w.zeros(2);
            w.u8(self.table_id);
            w.u8(0);
            w.u16(self.priority);
            w.u16(self.idle_timeout);
            w.u16(self.hard_timeout);
            w.u16(self.flags);
            w.u16(0);
            w.u64(self.cookie);
            self.match_.encode(w);
            Stats {
                duration: Some((self.duration_sec, self.duration_nsec)),
                packet_count: Some(self.packet_count),
                byte_count: Some(self.byte_count),
                ..Stats::default()
            }
            .encode(w);
            encode_instructions(&self.instructions, w);
            w.patch_len(start, start, "flow stats");
            return;
        }
        w.u16(0);
        w.u8(self.table_id);
        w.zeros(1);
        w.u32(self.duration_sec);
        w.u32(self.duration_nsec);
        w.u16(self.priority);
        w.u16(self.idle_timeout);
        w.u16(self.hard_timeout);
        w.u16(self.flags);
        w.zeros(4);
        w.u64(self.cookie);
        w.u64(self.packet_count);
        w.u64(self.byte_count);
        self.match_.encode(w);
        encode_instructions(&self.instructions, w);
        w.patch_len(start, start, "flow stats");
    }
}

/// `ofp_aggregate_stats_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

/// `ofp_table_stats`: one table of an `OFPMP_TABLE` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// `ofp_port_stats`: one port of an `OFPMP_PORT_STATS` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    pub port_no: PortNo,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

impl AggregateStats {
    /// The fixed layout of 1.0 to 1.4 (1.5's is OXS).
    pub(crate) fn read(r: &mut Reader<'_>) -> Res<AggregateStats> {
        let a = AggregateStats {
            packet_count: r.u64()?,
            byte_count: r.u64()?,
            flow_count: r.u32()?,
        };
        r.skip(4)?;
        r.finish()?;
        Ok(a)
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.packet_count);
        w.u64(self.byte_count);
        w.u32(self.flow_count);
        w.zeros(4);
    }
}

impl Desc {
    /// The five strings, as every version lays them out.
    pub(crate) fn read(r: &mut Reader<'_>) -> Res<Desc> {
        let d = Desc {
            mfr_desc: FixedStr::read(r)?,
            hw_desc: FixedStr::read(r)?,
            sw_desc: FixedStr::read(r)?,
            serial_num: FixedStr::read(r)?,
            dp_desc: FixedStr::read(r)?,
        };
        r.finish()?;
        Ok(d)
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        self.mfr_desc.write(w);
        self.hw_desc.write(w);
        self.sw_desc.write(w);
        self.serial_num.write(w);
        self.dp_desc.write(w);
    }
}

impl PortStats {
    /// The twelve counters 1.0 and 1.3 lay out in this order.
    pub(crate) fn counters(&self) -> [u64; 12] {
        [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ]
    }

    /// Port `port_no` with the twelve counters read in that order.
    pub(crate) fn read_counters(port_no: PortNo, r: &mut Reader<'_>) -> Res<PortStats> {
        let mut c = [0u64; 12];
        for v in &mut c {
            *v = r.u64()?;
        }
        let [
            rx_packets,
            tx_packets,
            rx_bytes,
            tx_bytes,
            rx_dropped,
            tx_dropped,
            rx_errors,
            tx_errors,
            rx_frame_err,
            rx_over_err,
            rx_crc_err,
            collisions,
        ] = c;
        Ok(PortStats {
            port_no,
            rx_packets,
            tx_packets,
            rx_bytes,
            tx_bytes,
            rx_dropped,
            tx_dropped,
            rx_errors,
            tx_errors,
            rx_frame_err,
            rx_over_err,
            rx_crc_err,
            collisions,
            duration_sec: 0,
            duration_nsec: 0,
        })
    }
}

/// `ofp_queue_stats`: one queue of an `OFPMP_QUEUE` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub port_no: PortNo,
    pub queue_id: u32,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

/// `ofp_port_stats` of 1.4 on: a length, the counters common to every port
/// kind, and the Ethernet ones as a property (others skipped).
fn decode_port_stats14(r: &mut Reader<'_>) -> Res<PortStats> {
    let short = r.short();
    let len = usize::from(r.peek_u16(0)?);
    if len < 80 {
        return Err(short);
    }
    let mut e = r.sub(len, short)?;
    e.skip(4)?;
    let mut p = PortStats {
        port_no: PortNo(e.u32()?),
        duration_sec: e.u32()?,
        duration_nsec: e.u32()?,
        rx_packets: e.u64()?,
        tx_packets: e.u64()?,
        rx_bytes: e.u64()?,
        tx_bytes: e.u64()?,
        rx_dropped: e.u64()?,
        tx_dropped: e.u64()?,
        rx_errors: e.u64()?,
        tx_errors: e.u64()?,
        ..PortStats::default()
    };
    while !e.is_empty() {
        let ty = e.u16()?;
        let plen = usize::from(e.u16()?);
        if plen < 4 {
            return Err(short);
        }
        let mut body = e.sub(plen - 4, short)?;
        if ty == 0 {
            body.skip(4)?;
            p.rx_frame_err = body.u64()?;
            p.rx_over_err = body.u64()?;
            p.rx_crc_err = body.u64()?;
            p.collisions = body.u64()?;
        }
    }
    Ok(p)
}

fn encode_port_stats14(p: &PortStats, w: &mut Writer<'_>) {
    w.u16(120);
    w.zeros(2);
    w.u32(p.port_no.0);
    w.u32(p.duration_sec);
    w.u32(p.duration_nsec);
    for v in [
        p.rx_packets,
        p.tx_packets,
        p.rx_bytes,
        p.tx_bytes,
        p.rx_dropped,
        p.tx_dropped,
        p.rx_errors,
        p.tx_errors,
    ] {
        w.u64(v);
    }
    // OFPPSPT_ETHERNET.
    w.u16(0);
    w.u16(40);
    w.zeros(4);
    for v in [p.rx_frame_err, p.rx_over_err, p.rx_crc_err, p.collisions] {
        w.u64(v);
    }
}

/// Reads fixed-size entries filling all of `r`.
fn fixed_list<T>(
    r: &mut Reader<'_>,
    size: usize,
    one: impl Fn(&mut Reader<'_>) -> Res<T>,
) -> Res<Vec<T>> {
    if !r.remaining().is_multiple_of(size) {
        return Err(r.short());
    }
    let mut out = Vec::with_capacity(r.remaining() / size);
    while !r.is_empty() {
        out.push(one(r)?);
    }
    Ok(out)
}

/// The body of a multipart reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReplyBody {
    Desc(Box<Desc>),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    Queue(Vec<QueueStats>),
    Group(Vec<GroupStats>),
    GroupDesc(Vec<GroupDesc>),
    GroupFeatures(GroupFeatures),
    Meter(Vec<MeterStats>),
    MeterConfig(Vec<MeterConfig>),
    MeterFeatures(MeterFeatures),
    TableFeatures(Vec<TableFeatures>),
    PortDesc(Vec<Port>),
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
}

/// `OFPT_MULTIPART_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    /// [`MORE`] if further messages complete this reply.
    pub flags: u16,
    pub body: MultipartReplyBody,
}

impl MultipartReplyBody {
    pub fn multipart_type(&self) -> MultipartType {
        use MultipartReplyBody as B;
        match self {
            B::Desc(_) => MultipartType::Desc,
            B::Flow(_) => MultipartType::Flow,
            B::Aggregate(_) => MultipartType::Aggregate,
            B::Table(_) => MultipartType::Table,
            B::PortStats(_) => MultipartType::PortStats,
            B::Queue(_) => MultipartType::Queue,
            B::Group(_) => MultipartType::Group,
            B::GroupDesc(_) => MultipartType::GroupDesc,
            B::GroupFeatures(_) => MultipartType::GroupFeatures,
            B::Meter(_) => MultipartType::Meter,
            B::MeterConfig(_) => MultipartType::MeterConfig,
            B::MeterFeatures(_) => MultipartType::MeterFeatures,
            B::TableFeatures(_) => MultipartType::TableFeatures,
            B::PortDesc(_) => MultipartType::PortDesc,
            B::Experimenter { .. } => MultipartType::Experimenter,
        }
    }
}

/// Bytes of `ofp_header` and the multipart header before a body.
const MULTIPART_HEADER_LEN: usize = 16;

/// Greedily packs `items` into bodies of at most `max_body` bytes each.
fn pack<T: Clone>(
    items: Vec<T>,
    max_body: usize,
    version: u8,
    wrap: impl Fn(Vec<T>) -> MultipartReplyBody,
) -> Vec<MultipartReplyBody> {
    let size = |item: &T| {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v).with_version(version);
        MultipartReply {
            flags: 0,
            body: wrap(vec![item.clone()]),
        }
        .encode(&mut w);
        v.len()
            .saturating_sub(MULTIPART_HEADER_LEN - super::HEADER_LEN)
    };
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        if !chunk.is_empty() && used + n > max_body {
            out.push(wrap(std::mem::take(&mut chunk)));
            used = 0;
        }
        used += n;
        chunk.push(item);
    }
    if !chunk.is_empty() || out.is_empty() {
        out.push(wrap(chunk));
    }
    out
}

impl MultipartReply {
    /// Splits a reply whose body is a list (flows, ports, tables, groups,
    /// meters...) into replies that each encode to at most `max_len` bytes
    /// (65535 at most on the wire), all but the last flagged [`MORE`].
    /// Entries are never cut; one entry longer than `max_len` goes alone in
    /// its reply (which then fails to encode if over 65535 bytes). Other
    /// bodies come back whole.
    pub fn split(self, max_len: usize) -> Vec<MultipartReply> {
        self.split_version(super::OFP_VERSION, max_len)
    }

    /// [`MultipartReply::split`] for replies encoded in wire version `v`
    /// (1.3 to 1.5), whose entries' sizes differ.
    pub fn split_version(self, v: u8, max_len: usize) -> Vec<MultipartReply> {
        use MultipartReplyBody as B;
        let max_body = max_len.saturating_sub(MULTIPART_HEADER_LEN);
        let v_ = v;
        let bodies = match self.body {
            B::Flow(v) => pack(v, max_body, v_, B::Flow),
            B::Table(v) => pack(v, max_body, v_, B::Table),
            B::PortStats(v) => pack(v, max_body, v_, B::PortStats),
            B::Queue(v) => pack(v, max_body, v_, B::Queue),
            B::Group(v) => pack(v, max_body, v_, B::Group),
            B::GroupDesc(v) => pack(v, max_body, v_, B::GroupDesc),
            B::Meter(v) => pack(v, max_body, v_, B::Meter),
            B::MeterConfig(v) => pack(v, max_body, v_, B::MeterConfig),
            B::TableFeatures(v) => pack(v, max_body, v_, B::TableFeatures),
            B::PortDesc(v) => pack(v, max_body, v_, B::PortDesc),
            body => vec![body],
        };
        let last = bodies.len() - 1;
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| MultipartReply {
                flags: if i == last {
                    self.flags
                } else {
                    self.flags | MORE
                },
                body,
            })
            .collect()
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<MultipartReply> {
        use MultipartReplyBody as B;
        let (ty, flags) = decode_type(r)?;
        let body = match ty {
            MultipartType::Desc => B::Desc(Box::new(Desc::read(r)?)),
            MultipartType::Flow => B::Flow(FlowStats::decode_list(r)?),
            MultipartType::Aggregate if r.version() >= version::OF15 => {
                let st = Stats::decode(r)?;
                r.finish()?;
                B::Aggregate(AggregateStats {
                    packet_count: st.packet_count.unwrap_or_default(),
                    byte_count: st.byte_count.unwrap_or_default(),
                    flow_count: st.flow_count.unwrap_or_default(),
                })
            }
            MultipartType::Aggregate => B::Aggregate(AggregateStats::read(r)?),
            MultipartType::Table => B::Table(fixed_list(r, 24, |r| {
                let table_id = r.u8()?;
                r.skip(3)?;
                Ok(TableStats {
                    table_id,
                    active_count: r.u32()?,
                    lookup_count: r.u64()?,
                    matched_count: r.u64()?,
                })
            })?),
            MultipartType::PortStats if r.version() >= version::OF14 => {
                let mut out = Vec::new();
                while !r.is_empty() {
                    out.push(decode_port_stats14(r)?);
                }
                B::PortStats(out)
            }
            MultipartType::PortStats => B::PortStats(fixed_list(r, 112, |r| {
                let port_no = PortNo(r.u32()?);
                r.skip(4)?;
                let mut p = PortStats::read_counters(port_no, r)?;
                p.duration_sec = r.u32()?;
                p.duration_nsec = r.u32()?;
                Ok(p)
            })?),
            MultipartType::Queue if r.version() >= version::OF14 => {
                let short = r.short();
                let mut out = Vec::new();
                while !r.is_empty() {
                    let len = usize::from(r.peek_u16(0)?);
                    if len < 48 {
                        return Err(short);
                    }
                    let mut q = r.sub(len, short)?;
                    q.skip(8)?;
                    out.push(QueueStats {
                        port_no: PortNo(q.u32()?),
                        queue_id: q.u32()?,
                        tx_bytes: q.u64()?,
                        tx_packets: q.u64()?,
                        tx_errors: q.u64()?,
                        duration_sec: q.u32()?,
                        duration_nsec: q.u32()?,
                    });
                }
                B::Queue(out)
            }
            MultipartType::Queue => B::Queue(fixed_list(r, 40, |r| {
                Ok(QueueStats {
                    port_no: PortNo(r.u32()?),
                    queue_id: r.u32()?,
                    tx_bytes: r.u64()?,
                    tx_packets: r.u64()?,
                    tx_errors: r.u64()?,
                    duration_sec: r.u32()?,
                    duration_nsec: r.u32()?,
                })
            })?),
            MultipartType::Group => B::Group(GroupStats::decode_list(r)?),
            MultipartType::GroupDesc => B::GroupDesc(GroupDesc::decode_list(r)?),
            MultipartType::GroupFeatures => B::GroupFeatures(GroupFeatures::decode(r)?),
            MultipartType::Meter => B::Meter(MeterStats::decode_list(r)?),
            MultipartType::MeterConfig => B::MeterConfig(MeterConfig::decode_list(r)?),
            MultipartType::MeterFeatures => B::MeterFeatures(MeterFeatures::decode(r)?),
            MultipartType::TableFeatures => B::TableFeatures(TableFeatures::decode_list(r)?),
            MultipartType::PortDesc => B::PortDesc(Port::decode_list(r)?),
            MultipartType::Experimenter => B::Experimenter {
                experimenter: r.u32()?,
                exp_type: r.u32()?,
                data: r.rest().to_vec(),
            },
        };
        Ok(MultipartReply { flags, body })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        use MultipartReplyBody as B;
        encode_type(w, self.body.multipart_type(), self.flags);
        match &self.body {
            B::Desc(d) => d.write(w),
            B::Flow(flows) => flows.iter().for_each(|f| f.encode(w)),
            B::Aggregate(a) if w.version() >= version::OF15 => Stats {
                flow_count: Some(a.flow_count),
                packet_count: Some(a.packet_count),
                byte_count: Some(a.byte_count),
                ..Stats::default()
            }
            .encode(w),
            B::Aggregate(a) => a.write(w),
            B::Table(tables) => {
                for t in tables {
                    w.u8(t.table_id);
                    w.zeros(3);
                    w.u32(t.active_count);
                    w.u64(t.lookup_count);
                    w.u64(t.matched_count);
                }
            }
            B::PortStats(ports) if w.version() >= version::OF14 => {
                ports.iter().for_each(|p| encode_port_stats14(p, w));
            }
            B::PortStats(ports) => {
                for p in ports {
                    w.u32(p.port_no.0);
                    w.zeros(4);
                    p.counters().iter().for_each(|v| w.u64(*v));
                    w.u32(p.duration_sec);
                    w.u32(p.duration_nsec);
                }
            }
            B::Queue(queues) => {
                for q in queues {
                    if w.version() >= version::OF14 {
                        w.u16(48);
                        w.zeros(6);
                    }
                    w.u32(q.port_no.0);
                    w.u32(q.queue_id);
                    w.u64(q.tx_bytes);
                    w.u64(q.tx_packets);
                    w.u64(q.tx_errors);
                    w.u32(q.duration_sec);
                    w.u32(q.duration_nsec);
                }
            }
            B::Group(g) => GroupStats::encode_list(g, w),
            B::GroupDesc(g) => GroupDesc::encode_list(g, w),
            B::GroupFeatures(f) => f.encode(w),
            B::Meter(m) => MeterStats::encode_list(m, w),
            B::MeterConfig(m) => MeterConfig::encode_list(m, w),
            B::MeterFeatures(f) => f.encode(w),
            B::TableFeatures(tables) => tables.iter().for_each(|t| t.encode(w)),
            B::PortDesc(ports) => ports.iter().for_each(|p| p.encode(w)),
            B::Experimenter {
                experimenter,
                exp_type,
                data,
            } => {
                w.u32(*experimenter);
                w.u32(*exp_type);
                w.bytes(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::message::Message;

    #[test]
    fn split_keeps_entries_whole_and_flags_more() {
        let ports: Vec<Port> = (1..=100)
            .map(|n| Port {
                port_no: PortNo(n),
                ..Port::default()
            })
            .collect();
        let replies = MultipartReply {
            flags: 0,
            body: MultipartReplyBody::PortDesc(ports.clone()),
        }
        .split(16 + 64 * 30 + 10);
        assert_eq!(replies.len(), 4);
        let mut back = Vec::new();
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(r.flags, if i == 3 { 0 } else { MORE });
            let bytes = Message::MultipartReply(r.clone()).encode(1).unwrap();
            assert!(bytes.len() <= 16 + 64 * 30 + 10);
            let MultipartReplyBody::PortDesc(p) = &r.body else {
                panic!()
            };
            back.extend(p.iter().cloned());
        }
        assert_eq!(back, ports);

        let empty = MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Flow(vec![]),
        };
        assert_eq!(empty.clone().split(100), vec![empty]);
        let whole = MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Aggregate(AggregateStats::default()),
        };
        assert_eq!(whole.clone().split(10), vec![whole]);
    }
}
