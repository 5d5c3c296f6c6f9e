//! OpenFlow 1.0's `STATS_REQUEST` and `STATS_REPLY` to and from the model's
//! [`MultipartRequest`] and [`MultipartReply`]: DESC, FLOW, AGGREGATE,
//! TABLE, PORT, QUEUE and VENDOR.
//!
//! What 1.0 lacks decodes as fixed values: a flow request's out_group is
//! `OFPG_ANY` and its cookie and mask 0; port and queue statistics have no
//! durations (0). A table entry's name, wildcards and max_entries, which the
//! model has not, are written as `table<N>`, [`wildcards::ALL`] and
//! [`TABLE_MAX_ENTRIES`]. A flow statistics entry carries the actions of its
//! flow's apply-actions instruction that 1.0 can say (others are left out:
//! statistics describe a flow as well as 1.0 can). Port statistics for all
//! ports ask with `OFPP_NONE`, queue statistics with `OFPP_ALL`: both are the
//! model's `PortNo::ANY`. Model bodies 1.0 lacks (groups, meters, table
//! features, port descriptions) cannot be encoded.
//!
//! A vendor request or reply must carry a 4-byte subtype after the vendor
//! id (Nicira's do), which is the model's `exp_type`.

use crate::openflow::bytes::{FixedStr, Reader, Res, Writer};
use crate::openflow::error::{BadRequestCode, ErrorCode};
use crate::openflow::group::group_id;
use crate::openflow::multipart::*;
use crate::openflow::port::PortNo;

use super::action10::{Context, decode_actions, encode_actions};
use super::errors::NX_VENDOR_ID;
use super::flow10::{flow_actions, flow_instructions};
use super::match10::{decode_match, encode_match, wildcards};
use super::port10::{decode_phy_port, encode_phy_port};
use super::{Ctx, EncodeError, VERSION, nx, port_from_v10, port_to_v10};

/// `ofp_stats_types` of 1.0.
pub mod stats_type {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT: u16 = 4;
    pub const QUEUE: u16 = 5;
    /// Open vSwitch's extension: 1.3's port descriptions in 1.0 (a port, or
    /// NONE for all, then 6 bytes of padding; 48-byte `ofp_phy_port`s back).
    pub const PORT_DESC: u16 = 13;
    pub const VENDOR: u16 = 0xffff;
}

/// `max_entries` of the table statistics this codec writes: no fixed limit.
pub const TABLE_MAX_ENTRIES: u32 = u32::MAX;

/// 1.0's `OFPP_ALL`, which asks for every port's queues.
const OFPP_ALL: u16 = 0xfffc;

fn inexpressible(what: &'static str) -> EncodeError {
    EncodeError::Unsupported {
        version: VERSION,
        what,
    }
}

fn flow_request(r: &mut Reader<'_>) -> Res<FlowStatsRequest> {
    let match_ = decode_match(r)?;
    let table_id = r.u8()?;
    r.skip(1)?;
    let out_port = port_from_v10(r.u16()?);
    r.finish()?;
    Ok(FlowStatsRequest {
        table_id,
        out_port,
        out_group: group_id::ANY,
        cookie: 0,
        cookie_mask: 0,
        match_,
    })
}

fn encode_flow_request(f: &FlowStatsRequest, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    encode_match(&f.match_, w)?;
    w.u8(f.table_id);
    w.zeros(1);
    w.u16(port_to_v10(f.out_port)?);
    Ok(())
}

pub(crate) fn decode_request(r: &mut Reader<'_>) -> Res<MultipartRequest> {
    use MultipartRequestBody as B;
    use stats_type as T;
    let ty = r.u16()?;
    let flags = r.u16()?;
    let body = match ty {
        T::DESC => r.finish().map(|_| B::Desc)?,
        T::FLOW => B::Flow(flow_request(r)?),
        T::AGGREGATE => B::Aggregate(flow_request(r)?),
        T::TABLE => r.finish().map(|_| B::Table)?,
        T::PORT => {
            let port_no = port_from_v10(r.u16()?);
            r.skip(6)?;
            r.finish()?;
            B::PortStats { port_no }
        }
        T::PORT_DESC => {
            let port_no = if r.is_empty() {
                PortNo::ANY
            } else {
                let p = port_from_v10(r.u16()?);
                r.skip(6)?;
                p
            };
            r.finish()?;
            B::PortDesc { port_no }
        }
        T::QUEUE => {
            let port = r.u16()?;
            r.skip(2)?;
            let queue_id = r.u32()?;
            r.finish()?;
            let port_no = if port == OFPP_ALL {
                PortNo::ANY
            } else {
                port_from_v10(port)
            };
            B::Queue { port_no, queue_id }
        }
        T::VENDOR => {
            let experimenter = r.u32()?;
            let exp_type = r.u32()?;
            match (experimenter, exp_type) {
                (NX_VENDOR_ID, nx::stats_subtype::FLOW) => B::Flow(nx::decode_flow_request(r)?),
                (NX_VENDOR_ID, nx::stats_subtype::AGGREGATE) => {
                    B::Aggregate(nx::decode_flow_request(r)?)
                }
                _ => B::Experimenter {
                    experimenter,
                    exp_type,
                    data: r.rest().to_vec(),
                },
            }
        }
        _ => return Err(ErrorCode::BadRequest(BadRequestCode::BadMultipart)),
    };
    Ok(MultipartRequest { flags, body })
}

/// Whether `frame` (one whole 1.0 message) is a Nicira vendor statistics
/// request, whose flow statistics are answered as NXST replies.
pub fn is_nx_flow_request(frame: &[u8]) -> bool {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let be32 = |at: usize| {
        frame
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    frame.first() == Some(&VERSION)
        && frame.get(1) == Some(&super::msg_type::STATS_REQUEST)
        && be16(8) == Some(stats_type::VENDOR)
        && be32(12) == Some(NX_VENDOR_ID)
        && matches!(
            be32(16),
            Some(nx::stats_subtype::FLOW | nx::stats_subtype::AGGREGATE)
        )
}

/// Whether a flow or aggregate statistics body goes out as NXM's.
fn nx_flows(ctx: &Ctx) -> bool {
    ctx.flow_format == nx::FlowFormat::Nxm
}

/// Writes the vendor statistics header's vendor, subtype and padding.
fn nx_header(subtype: u32, w: &mut Writer<'_>) {
    w.u32(NX_VENDOR_ID);
    w.u32(subtype);
    w.zeros(4);
}

pub(crate) fn encode_request(
    m: &MultipartRequest,
    ctx: &Ctx,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    use MultipartRequestBody as B;
    use stats_type as T;
    if let (B::Flow(f) | B::Aggregate(f), true) = (&m.body, nx_flows(ctx)) {
        w.u16(T::VENDOR);
        w.u16(m.flags);
        let subtype = match m.body {
            B::Flow(_) => nx::stats_subtype::FLOW,
            _ => nx::stats_subtype::AGGREGATE,
        };
        nx_header(subtype, w);
        return nx::encode_flow_request(f, w);
    }
    let ty = match &m.body {
        B::Desc => T::DESC,
        B::Flow(_) => T::FLOW,
        B::Aggregate(_) => T::AGGREGATE,
        B::Table => T::TABLE,
        B::PortStats { .. } => T::PORT,
        B::Queue { .. } => T::QUEUE,
        B::PortDesc { .. } => T::PORT_DESC,
        B::Experimenter { .. } => T::VENDOR,
        _ => return Err(inexpressible("this statistics request")),
    };
    w.u16(ty);
    w.u16(m.flags);
    match &m.body {
        B::Flow(f) | B::Aggregate(f) => encode_flow_request(f, w)?,
        B::PortStats { port_no } | B::PortDesc { port_no } => {
            w.u16(port_to_v10(*port_no)?);
            w.zeros(6);
        }
        B::Queue { port_no, queue_id } => {
            w.u16(if *port_no == PortNo::ANY {
                OFPP_ALL
            } else {
                port_to_v10(*port_no)?
            });
            w.zeros(2);
            w.u32(*queue_id);
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
        _ => {}
    }
    Ok(())
}

/// Size of a 1.0 flow statistics entry before its actions.
const FLOW_STATS_LEN: usize = 88;

fn decode_flows(r: &mut Reader<'_>) -> Res<Vec<FlowStats>> {
    flow_entries(r, FLOW_STATS_LEN, |e| {
        e.skip(2)?;
        let table_id = e.u8()?;
        e.skip(1)?;
        let match_ = decode_match(e)?;
        let duration_sec = e.u32()?;
        let duration_nsec = e.u32()?;
        let priority = e.u16()?;
        let idle_timeout = e.u16()?;
        let hard_timeout = e.u16()?;
        e.skip(6)?;
        let cookie = e.u64()?;
        let packet_count = e.u64()?;
        let byte_count = e.u64()?;
        let actions = decode_actions(e, Context::of(&match_))?;
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags: 0,
            cookie,
            packet_count,
            byte_count,
            match_,
            instructions: flow_instructions(actions),
        })
    })
}

/// Flow statistics entries filling `r`, each led by its u16 length (at
/// least `min`) and read whole by `one`.
pub(crate) fn flow_entries(
    r: &mut Reader<'_>,
    min: usize,
    one: impl Fn(&mut Reader<'_>) -> Res<FlowStats>,
) -> Res<Vec<FlowStats>> {
    let short = r.short();
    let mut out = Vec::new();
    while !r.is_empty() {
        let len = usize::from(r.peek_u16(0)?);
        if len < min {
            return Err(short);
        }
        let mut e = r.sub(len, short)?;
        out.push(one(&mut e)?);
    }
    Ok(out)
}

fn encode_flow(f: &FlowStats, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    let start = w.pos();
    w.u16(0);
    w.u8(f.table_id);
    w.zeros(1);
    encode_match(&f.match_, w)?;
    w.u32(f.duration_sec);
    w.u32(f.duration_nsec);
    w.u16(f.priority);
    w.u16(f.idle_timeout);
    w.u16(f.hard_timeout);
    w.zeros(6);
    w.u64(f.cookie);
    w.u64(f.packet_count);
    w.u64(f.byte_count);
    encode_actions(flow_actions(&f.instructions, true)?, true, w)?;
    w.patch_len(start, start, "flow stats");
    Ok(())
}

/// Splits a reply into replies that each encode in 1.0 to at most
/// `max_len` bytes, all but the last flagged `OFPSF_REPLY_MORE`, like
/// [`MultipartReply::split`] but measuring flow statistics by their 1.0
/// size (an entry with a small match is larger in 1.0 than in 1.3). Other
/// bodies are no larger in 1.0 than in 1.3 for the sizes a switch has (at
/// most 255 tables), so the model's split serves.
pub fn split_reply(reply: MultipartReply, max_len: usize) -> Vec<MultipartReply> {
    split_reply_with(reply, max_len, &Ctx::default())
}

/// [`split_reply`] for a reply in the form `ctx` says (NXM's flow
/// statistics entries are measured as such).
pub fn split_reply_with(reply: MultipartReply, max_len: usize, ctx: &Ctx) -> Vec<MultipartReply> {
    let MultipartReplyBody::Flow(flows) = reply.body else {
        return reply.split(max_len);
    };
    let nxm = nx_flows(ctx);
    // Header and stats header (with NXM's vendor header) before the entries.
    let max_body = max_len.saturating_sub(if nxm { 24 } else { 12 });
    let mut bodies: Vec<Vec<FlowStats>> = Vec::new();
    let mut chunk = Vec::new();
    let mut used = 0;
    for f in flows {
        let mut v = Vec::new();
        // An entry 1.0 cannot say at all (a port above 16 bits) counts as
        // empty here; encoding the reply reports it.
        let put = if nxm { nx::encode_flow } else { encode_flow };
        let n = match put(&f, &mut Writer::new(&mut v)) {
            Ok(()) => v.len(),
            Err(_) => 0,
        };
        if !chunk.is_empty() && used + n > max_body {
            bodies.push(std::mem::take(&mut chunk));
            used = 0;
        }
        used += n;
        chunk.push(f);
    }
    if !chunk.is_empty() || bodies.is_empty() {
        bodies.push(chunk);
    }
    let last = bodies.len() - 1;
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| MultipartReply {
            flags: if i == last {
                reply.flags
            } else {
                reply.flags | MORE
            },
            body: MultipartReplyBody::Flow(b),
        })
        .collect()
}

/// Reads fixed-size entries filling all of `r`.
fn fixed<T>(
    r: &mut Reader<'_>,
    size: usize,
    one: impl Fn(&mut Reader<'_>) -> Res<T>,
) -> Res<Vec<T>> {
    if !r.remaining().is_multiple_of(size) {
        return Err(r.short());
    }
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(one(r)?);
    }
    Ok(out)
}

pub(crate) fn decode_reply(r: &mut Reader<'_>) -> Res<MultipartReply> {
    use MultipartReplyBody as B;
    use stats_type as T;
    let ty = r.u16()?;
    let flags = r.u16()?;
    let body = match ty {
        T::DESC => B::Desc(Box::new(Desc::read(r)?)),
        T::FLOW => B::Flow(decode_flows(r)?),
        T::AGGREGATE => B::Aggregate(AggregateStats::read(r)?),
        T::TABLE => B::Table(fixed(r, 64, |r| {
            let table_id = r.u8()?;
            r.skip(3 + 32 + 4 + 4)?;
            Ok(TableStats {
                table_id,
                active_count: r.u32()?,
                lookup_count: r.u64()?,
                matched_count: r.u64()?,
            })
        })?),
        T::PORT => B::PortStats(fixed(r, 104, |r| {
            let port_no = port_from_v10(r.u16()?);
            r.skip(6)?;
            PortStats::read_counters(port_no, r)
        })?),
        T::QUEUE => B::Queue(fixed(r, 32, |r| {
            let port_no = port_from_v10(r.u16()?);
            r.skip(2)?;
            Ok(QueueStats {
                port_no,
                queue_id: r.u32()?,
                tx_bytes: r.u64()?,
                tx_packets: r.u64()?,
                tx_errors: r.u64()?,
                duration_sec: 0,
                duration_nsec: 0,
            })
        })?),
        T::PORT_DESC => B::PortDesc(fixed(r, 48, decode_phy_port)?),
        T::VENDOR => {
            let experimenter = r.u32()?;
            let exp_type = r.u32()?;
            match (experimenter, exp_type) {
                (NX_VENDOR_ID, nx::stats_subtype::FLOW) => B::Flow(nx::decode_flows(r)?),
                (NX_VENDOR_ID, nx::stats_subtype::AGGREGATE) => {
                    r.skip(4)?;
                    B::Aggregate(AggregateStats::read(r)?)
                }
                _ => B::Experimenter {
                    experimenter,
                    exp_type,
                    data: r.rest().to_vec(),
                },
            }
        }
        _ => return Err(ErrorCode::BadRequest(BadRequestCode::BadMultipart)),
    };
    Ok(MultipartReply { flags, body })
}

pub(crate) fn encode_reply(
    m: &MultipartReply,
    ctx: &Ctx,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    use MultipartReplyBody as B;
    use stats_type as T;
    if nx_flows(ctx) {
        match &m.body {
            B::Flow(flows) => {
                w.u16(T::VENDOR);
                w.u16(m.flags);
                nx_header(nx::stats_subtype::FLOW, w);
                for f in flows {
                    nx::encode_flow(f, w)?;
                }
                return Ok(());
            }
            B::Aggregate(a) => {
                w.u16(T::VENDOR);
                w.u16(m.flags);
                nx_header(nx::stats_subtype::AGGREGATE, w);
                a.write(w);
                return Ok(());
            }
            _ => {}
        }
    }
    let ty = match &m.body {
        B::Desc(_) => T::DESC,
        B::Flow(_) => T::FLOW,
        B::Aggregate(_) => T::AGGREGATE,
        B::Table(_) => T::TABLE,
        B::PortStats(_) => T::PORT,
        B::Queue(_) => T::QUEUE,
        B::PortDesc(_) => T::PORT_DESC,
        B::Experimenter { .. } => T::VENDOR,
        _ => return Err(inexpressible("this statistics reply")),
    };
    w.u16(ty);
    w.u16(m.flags);
    match &m.body {
        B::Desc(d) => d.write(w),
        B::Flow(flows) => {
            for f in flows {
                encode_flow(f, w)?;
            }
        }
        B::Aggregate(a) => a.write(w),
        B::Table(tables) => {
            for t in tables {
                w.u8(t.table_id);
                w.zeros(3);
                FixedStr::<32>::new(&format!("table{}", t.table_id)).write(w);
                w.u32(wildcards::ALL);
                w.u32(TABLE_MAX_ENTRIES);
                w.u32(t.active_count);
                w.u64(t.lookup_count);
                w.u64(t.matched_count);
            }
        }
        B::PortStats(ports) => {
            for p in ports {
                w.u16(port_to_v10(p.port_no)?);
                w.zeros(6);
                p.counters().iter().for_each(|v| w.u64(*v));
            }
        }
        B::PortDesc(ports) => {
            for p in ports {
                encode_phy_port(p, w)?;
            }
        }
        B::Queue(queues) => {
            for q in queues {
                w.u16(port_to_v10(q.port_no)?);
                w.zeros(2);
                w.u32(q.queue_id);
                w.u64(q.tx_bytes);
                w.u64(q.tx_packets);
                w.u64(q.tx_errors);
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
        _ => {}
    }
    Ok(())
}
