//! Open vSwitch's NXM messages in OpenFlow 1.0, the form in which plain
//! `ovs-ofctl` (no `-O`) says what 1.0's `ofp_match` cannot (IPv6,
//! registers, MPLS, masks...): `NXT_FLOW_MOD`, `NXT_FLOW_REMOVED`,
//! `NXT_PACKET_IN`, `NXT_PACKET_IN2`, and the vendor statistics `NXST_FLOW`
//! and `NXST_AGGREGATE`, to and from the model's messages. The match is
//! [`crate::openflow::nxm`]'s; actions are 1.0's ([`super::action10`]).
//!
//! Every function here reads or writes what follows the Nicira header
//! (vendor id and subtype, or for statistics vendor id, subtype and 4
//! bytes of padding). Which form a message takes is the connection's
//! choice ([`FlowFormat`], [`PacketInFormat`] in [`super::Ctx`]), as
//! `NXT_SET_FLOW_FORMAT` and `NXT_SET_PACKET_IN_FORMAT` set it.
//!
//! What the model has not: a flow mod's new cookie on MODIFY when the match
//! selects by cookie (the model's cookie is then the selector, as in 1.3),
//! flow statistics' idle and hard ages (sent as 0, "unknown"), a
//! packet-in2's continuation and user data (unknown properties are
//! skipped). A cookie in the match of an ADD is `OFPBMC_BAD_FIELD`.

use crate::openflow::bytes::{Reader, Res, Writer, pad8};
use crate::openflow::error::{BadMatchCode, BadRequestCode, ErrorCode};
use crate::openflow::flow::{FlowMod, FlowModCommand, FlowRemoved, PacketIn};
use crate::openflow::flow_match::Match;
use crate::openflow::group::group_id;
use crate::openflow::multipart::{FlowStats, FlowStatsRequest};
use crate::openflow::nxm::{self, NxMatch};
use crate::openflow::oxm::{Masked, OxmField};

use super::action10::{Context, decode_actions, encode_actions};
use super::flow10::{flow_actions, flow_instructions, read_flow_mod_head, write_flow_mod_head};
use super::{Ctx, EncodeError, port_from_v10, port_to_v10};

/// How flows are said to a 1.0 peer (`NXT_SET_FLOW_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowFormat {
    /// `NXFF_OPENFLOW10`: 1.0's `ofp_match`.
    #[default]
    OpenFlow10,
    /// `NXFF_NXM`: flow removals and flow statistics requests and replies
    /// as Nicira's NXM messages.
    Nxm,
}

impl FlowFormat {
    pub fn from_wire(v: u32) -> Option<FlowFormat> {
        match v {
            0 => Some(FlowFormat::OpenFlow10),
            2 => Some(FlowFormat::Nxm),
            _ => None,
        }
    }
}

/// How packet-ins are said to a 1.0 peer (`NXT_SET_PACKET_IN_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacketInFormat {
    /// `NXPIF_STANDARD`: `OFPT_PACKET_IN`.
    #[default]
    Standard,
    /// `NXPIF_NXT_PACKET_IN`: `nx_packet_in` with an NXM of the metadata.
    Nxt,
    /// `NXPIF_NXT_PACKET_IN2`: properties.
    Nxt2,
}

impl PacketInFormat {
    pub fn from_wire(v: u32) -> Option<PacketInFormat> {
        match v {
            0 => Some(PacketInFormat::Standard),
            1 => Some(PacketInFormat::Nxt),
            2 => Some(PacketInFormat::Nxt2),
            _ => None,
        }
    }
}

/// `NXST_*` subtypes of vendor statistics.
pub mod stats_subtype {
    pub const FLOW: u32 = 0;
    pub const AGGREGATE: u32 = 1;
}

/// `NXPINT_*`: the properties of `NXT_PACKET_IN2`.
pub mod pin2 {
    pub const PACKET: u16 = 0;
    pub const FULL_LEN: u16 = 1;
    pub const BUFFER_ID: u16 = 2;
    pub const TABLE_ID: u16 = 3;
    pub const COOKIE: u16 = 4;
    pub const REASON: u16 = 5;
    pub const METADATA: u16 = 6;
}

/// Reads a match length, then the match and its padding.
fn nx_match_at(r: &mut Reader<'_>, match_len: u16) -> Res<NxMatch> {
    nxm::decode(r, usize::from(match_len))
}

/// Writes a match whose length goes in the u16 at `len_at`, and its padding.
fn put_match(
    m: &Match,
    cookie: Option<Masked<u64>>,
    len_at: usize,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    let start = w.pos();
    let n = nxm::encode(m, cookie, w)?;
    w.patch_u16(len_at, n, "nx_match");
    w.pad_to_8(start);
    Ok(())
}

/// A cookie selector as NXM says it: none when the mask is 0.
fn cookie_selector(cookie: u64, mask: u64) -> Option<Masked<u64>> {
    match mask {
        0 => None,
        u64::MAX => Some(Masked::exact(cookie)),
        m => Some(Masked::new(cookie & m, m)),
    }
}

/// No packet field may select by cookie but requests' and changes'.
fn no_cookie(m: NxMatch) -> Res<Match> {
    match m.cookie {
        None => Ok(m.match_),
        Some(_) => Err(ErrorCode::BadMatch(BadMatchCode::BadField)),
    }
}

/// `nx_flow_mod` (32 bytes), its match and its 1.0 actions.
pub(crate) fn decode_flow_mod(r: &mut Reader<'_>, ctx: &Ctx) -> Res<FlowMod> {
    let head = read_flow_mod_head(r, ctx)?;
    let match_len = r.u16()?;
    r.skip(6)?;
    let m = nx_match_at(r, match_len)?;
    // A cookie wildcarded whole selects nothing: as if absent.
    let selector = m.cookie.filter(|c| c.mask != Some(0));
    let (cookie, cookie_mask) = match selector {
        // Open vSwitch's NXBRC_NXM_INVALID: an addition cannot select.
        Some(_) if head.command == FlowModCommand::Add => {
            return Err(ErrorCode::BadMatch(BadMatchCode::BadField));
        }
        Some(c) => (c.value, c.mask.unwrap_or(u64::MAX)),
        None => (head.cookie, 0),
    };
    let actions = decode_actions(r, Context::of(&m.match_))?;
    Ok(FlowMod {
        cookie,
        cookie_mask,
        match_: m.match_,
        instructions: flow_instructions(actions),
        ..head
    })
}

pub(crate) fn encode_flow_mod(
    f: &FlowMod,
    table_in_command: bool,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    let cookie = if f.command == FlowModCommand::Add {
        None
    } else {
        cookie_selector(f.cookie, f.cookie_mask)
    };
    // A cookie that selects travels in the match (the field is then a new
    // cookie, which the model has not: 0, as ovs-ofctl sends).
    let new_cookie = if cookie.is_some() { 0 } else { f.cookie };
    write_flow_mod_head(f, new_cookie, table_in_command, w)?;
    let len_at = w.pos();
    w.u16(0);
    w.zeros(6);
    put_match(&f.match_, cookie, len_at, w)?;
    encode_actions(flow_actions(&f.instructions, false)?, false, w)
}

/// `nx_flow_removed` (40 bytes) and its match. Its table id is one more
/// than the flow's (0: not known).
pub(crate) fn decode_flow_removed(r: &mut Reader<'_>) -> Res<FlowRemoved> {
    let cookie = r.u64()?;
    let priority = r.u16()?;
    let reason = super::flow10::removed_reason_to_v10(r.u8()?);
    let table_id = r.u8()?.saturating_sub(1);
    let duration_sec = r.u32()?;
    let duration_nsec = r.u32()?;
    let idle_timeout = r.u16()?;
    let match_len = r.u16()?;
    let packet_count = r.u64()?;
    let byte_count = r.u64()?;
    let match_ = no_cookie(nx_match_at(r, match_len)?)?;
    r.finish()?;
    Ok(FlowRemoved {
        cookie,
        priority,
        reason,
        table_id,
        duration_sec,
        duration_nsec,
        idle_timeout,
        hard_timeout: 0,
        packet_count,
        byte_count,
        match_,
    })
}

pub(crate) fn encode_flow_removed(f: &FlowRemoved, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u64(f.cookie);
    w.u16(f.priority);
    w.u8(super::flow10::removed_reason_to_v10(f.reason));
    w.u8(f.table_id.saturating_add(1));
    w.u32(f.duration_sec);
    w.u32(f.duration_nsec);
    w.u16(f.idle_timeout);
    let len_at = w.pos();
    w.u16(0);
    w.u64(f.packet_count);
    w.u64(f.byte_count);
    put_match(&f.match_, None, len_at, w)
}

/// `nx_packet_in` (24 bytes), the metadata as NXM, 2 bytes of padding, the
/// frame.
pub(crate) fn decode_packet_in(r: &mut Reader<'_>) -> Res<PacketIn> {
    let buffer_id = r.u32()?;
    let total_len = r.u16()?;
    let reason = r.u8()?;
    let table_id = r.u8()?;
    let cookie = r.u64()?;
    let match_len = r.u16()?;
    r.skip(6)?;
    let match_ = no_cookie(nx_match_at(r, match_len)?)?;
    r.skip(2)?;
    Ok(PacketIn {
        buffer_id,
        total_len,
        reason,
        table_id,
        cookie,
        match_,
        data: r.rest().to_vec(),
    })
}

pub(crate) fn encode_packet_in(p: &PacketIn, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u32(p.buffer_id);
    w.u16(p.total_len);
    w.u8(p.reason);
    w.u8(p.table_id);
    w.u64(p.cookie);
    let len_at = w.pos();
    w.u16(0);
    w.zeros(6);
    put_match(&p.match_, None, len_at, w)?;
    w.zeros(2);
    w.bytes(&p.data);
    Ok(())
}

/// Writes one property (`ofp_prop_header`, value, padding to 8).
fn prop(w: &mut Writer<'_>, ty: u16, value: impl FnOnce(&mut Writer<'_>)) {
    let start = w.pos();
    w.u16(ty);
    w.u16(0);
    value(w);
    w.patch_len(start + 2, start, "packet-in2 property");
    w.pad_to_8(start);
}

/// `NXT_PACKET_IN2`'s properties. The metadata are OXM fields (in_port
/// 32 bits) and registers, as Open vSwitch writes them for 1.0.
pub(crate) fn encode_packet_in2(p: &PacketIn, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    prop(w, pin2::PACKET, |w| w.bytes(&p.data));
    if p.data.len() != usize::from(p.total_len) {
        prop(w, pin2::FULL_LEN, |w| w.u32(u32::from(p.total_len)));
    }
    if p.buffer_id != crate::openflow::NO_BUFFER {
        prop(w, pin2::BUFFER_ID, |w| w.u32(p.buffer_id));
    }
    prop(w, pin2::TABLE_ID, |w| w.u8(p.table_id));
    if p.cookie != u64::MAX {
        // A 64-bit value is aligned to 8 in its property.
        prop(w, pin2::COOKIE, |w| {
            w.zeros(4);
            w.u64(p.cookie)
        });
    }
    prop(w, pin2::REASON, |w| w.u8(p.reason));
    // In 1.5, registers as packet registers (as `OFPT_PACKET_IN`'s match).
    let xregs;
    let m = if w.version() >= crate::openflow::header::version::OF15 {
        xregs = p.match_.with_packet_regs();
        &xregs
    } else {
        &p.match_
    };
    // Before 1.3, `tun_id` is NXM's `NXM_NX_TUN_ID` (OXM_OF_TUNNEL_ID came
    // with 1.3), as Open vSwitch picks a field's header by version.
    let nxm_tun_id = w.version() < crate::openflow::header::version::OF13;
    prop(w, pin2::METADATA, |w| {
        for f in m.fields() {
            let nxm = nxm_tun_id && matches!(f, OxmField::TunnelId(_));
            if !(nxm && nxm::encode_same_value(f, w)) {
                f.encode(w);
            }
        }
        crate::openflow::nx_tun6::encode_registers(m.registers(), w);
    });
    Ok(())
}

/// A whole `NXT_PACKET_IN2` in wire version `version` (the message is the
/// same experimenter message in every version; Open vSwitch takes it in
/// all of them).
pub fn packet_in2_message(p: &PacketIn, version: u8, xid: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out).with_version(version);
    crate::openflow::header::Header {
        version,
        msg_type: super::msg_type::VENDOR,
        length: 0,
        xid,
    }
    .write(&mut w);
    w.u32(super::errors::NX_VENDOR_ID);
    w.u32(super::nx_subtype::PACKET_IN2);
    encode_packet_in2(p, &mut w)?;
    w.patch_len(2, 0, "message");
    w.finish()?;
    Ok(out)
}

pub(crate) fn decode_packet_in2(r: &mut Reader<'_>) -> Res<PacketIn> {
    let bad_len = ErrorCode::BadRequest(BadRequestCode::BadLen);
    // What an absent property means.
    let mut p = PacketIn {
        buffer_id: crate::openflow::NO_BUFFER,
        cookie: u64::MAX,
        ..PacketIn::default()
    };
    let mut full_len = None;
    while !r.is_empty() {
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        if len < 4 {
            return Err(bad_len);
        }
        let mut v = r.sub(len - 4, bad_len)?;
        r.skip(pad8(len) - len)?;
        let exact = |v: &Reader<'_>, n: usize| {
            if v.remaining() == n {
                Ok(())
            } else {
                Err(bad_len)
            }
        };
        match ty {
            pin2::PACKET => p.data = v.rest().to_vec(),
            pin2::FULL_LEN => {
                exact(&v, 4)?;
                full_len = Some(v.u32()?);
            }
            pin2::BUFFER_ID => {
                exact(&v, 4)?;
                p.buffer_id = v.u32()?;
            }
            pin2::TABLE_ID => {
                exact(&v, 1)?;
                p.table_id = v.u8()?;
            }
            pin2::COOKIE => {
                exact(&v, 12)?;
                v.skip(4)?;
                p.cookie = v.u64()?;
            }
            pin2::REASON => {
                exact(&v, 1)?;
                p.reason = v.u8()?;
            }
            pin2::METADATA => p.match_ = no_cookie(nxm::decode_fields(v.rest())?)?,
            // Continuations, user data, later properties: not kept.
            _ => {}
        }
    }
    let total = full_len.unwrap_or(p.data.len() as u32);
    p.total_len = u16::try_from(total).unwrap_or(u16::MAX);
    Ok(p)
}

/// `nx_flow_stats_request` (also NXST_AGGREGATE's), `r` after the vendor
/// and subtype (the 4 bytes of padding are skipped here). Written after
/// the whole vendor header.
pub(crate) fn decode_flow_request(r: &mut Reader<'_>) -> Res<FlowStatsRequest> {
    r.skip(4)?;
    let out_port = port_from_v10(r.u16()?);
    let match_len = r.u16()?;
    let table_id = r.u8()?;
    r.skip(3)?;
    let m = nx_match_at(r, match_len)?;
    r.finish()?;
    let (cookie, cookie_mask) = m
        .cookie
        .map_or((0, 0), |c| (c.value, c.mask.unwrap_or(u64::MAX)));
    Ok(FlowStatsRequest {
        table_id,
        out_port,
        out_group: group_id::ANY,
        cookie,
        cookie_mask,
        match_: m.match_,
    })
}

pub(crate) fn encode_flow_request(
    f: &FlowStatsRequest,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    w.u16(port_to_v10(f.out_port)?);
    let len_at = w.pos();
    w.u16(0);
    w.u8(f.table_id);
    w.zeros(3);
    put_match(
        &f.match_,
        cookie_selector(f.cookie, f.cookie_mask),
        len_at,
        w,
    )
}

/// Size of `nx_flow_stats` before its match.
const FLOW_STATS_LEN: usize = 48;

/// The entries of an NXST_FLOW reply, `r` after the vendor and subtype.
pub(crate) fn decode_flows(r: &mut Reader<'_>) -> Res<Vec<FlowStats>> {
    r.skip(4)?;
    super::stats::flow_entries(r, FLOW_STATS_LEN, decode_flow)
}

/// One `nx_flow_stats` entry filling `e`.
fn decode_flow(e: &mut Reader<'_>) -> Res<FlowStats> {
    e.skip(2)?;
    let mut f = FlowStats {
        table_id: e.u8()?,
        ..FlowStats::default()
    };
    e.skip(1)?;
    f.duration_sec = e.u32()?;
    f.duration_nsec = e.u32()?;
    f.priority = e.u16()?;
    f.idle_timeout = e.u16()?;
    f.hard_timeout = e.u16()?;
    let match_len = e.u16()?;
    // idle_age, hard_age: the model keeps no ages.
    e.skip(4)?;
    f.cookie = e.u64()?;
    f.packet_count = e.u64()?;
    f.byte_count = e.u64()?;
    f.match_ = no_cookie(nx_match_at(e, match_len)?)?;
    f.instructions = flow_instructions(decode_actions(e, Context::of(&f.match_))?);
    Ok(f)
}

/// One `nx_flow_stats` entry, with the actions 1.0 can say.
pub(crate) fn encode_flow(f: &FlowStats, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    let start = w.pos();
    w.u16(0);
    w.u8(f.table_id);
    w.zeros(1);
    w.u32(f.duration_sec);
    w.u32(f.duration_nsec);
    w.u16(f.priority);
    w.u16(f.idle_timeout);
    w.u16(f.hard_timeout);
    let len_at = w.pos();
    w.u16(0);
    w.zeros(4);
    w.u64(f.cookie);
    w.u64(f.packet_count);
    w.u64(f.byte_count);
    put_match(&f.match_, None, len_at, w)?;
    encode_actions(flow_actions(&f.instructions, true)?, true, w)?;
    w.patch_len(start, start, "flow stats");
    Ok(())
}

#[cfg(test)]
#[path = "nx_tests.rs"]
mod tests;
