//! OpenFlow 1.0's `FLOW_MOD`, `FLOW_REMOVED`, `PACKET_IN` and `PACKET_OUT`
//! to and from the model's [`FlowMod`], [`FlowRemoved`], [`PacketIn`] and
//! [`PacketOut`].
//!
//! What 1.0 lacks takes a fixed value on decoding and is dropped on
//! encoding: a flow mod's cookie mask is 0 (1.0 modifies and deletes
//! whatever the cookie), its out_group `OFPG_ANY`; a flow removed has table
//! 0 and hard_timeout 0; a packet-in has table 0 and cookie `u64::MAX` (no
//! flow said), its match holding only in_port (its reason is sent as is:
//! 1.3's INVALID_TTL has no 1.0 value, the agent should not send it). A
//! flow mod's actions become one `ApplyActions` instruction (none for an
//! empty list); its table is 0 for adds and modifies and `OFPTT_ALL` for
//! deletes, or the command's high byte with [`Ctx::flow_mod_table_id`]. The
//! flag EMERG is refused with `OFPFMFC_ALL_TABLES_FULL` (Open vSwitch's
//! answer), unknown flags with `OFPFMFC_BAD_FLAGS`; 1.3's RESET_COUNTS and
//! NO_*_COUNTS flags are not sent.

use crate::openflow::bytes::{Reader, Res, Writer};
use crate::openflow::error::{BadRequestCode, ErrorCode, FlowModFailedCode};
use crate::openflow::flow::{FlowMod, FlowModCommand, FlowRemoved, PacketIn, PacketOut};
use crate::openflow::flow_match::Match;
use crate::openflow::group::group_id;
use crate::openflow::instruction::Instruction;
use crate::openflow::oxm::OxmField;
use crate::openflow::port::PortNo;
use crate::openflow::table_id;

use super::action10::{Context, decode_actions, encode_actions, packet_out_in_port};
use super::match10::{decode_match, encode_match};
use super::{Ctx, EncodeError, VERSION, port_from_v10, port_to_v10};

/// `ofp_flow_mod_flags` of 1.0.
pub mod flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    /// The emergency flow cache, which this switch (like Open vSwitch) has not.
    pub const EMERG: u16 = 1 << 2;
}

/// The 1.0 flags of a model flow mod: those 1.0 has (the others, counters
/// and reset, have no 1.0 form and are dropped).
pub(crate) fn flags_to_v10(f: u16) -> u16 {
    f & (flags::SEND_FLOW_REM | flags::CHECK_OVERLAP)
}

/// The one action list of a flow's instructions, as 1.0 holds it.
pub(crate) fn flow_actions(
    instructions: &[Instruction],
    lenient: bool,
) -> Result<&[crate::openflow::action::Action], EncodeError> {
    match instructions {
        [] => Ok(&[]),
        [Instruction::ApplyActions(a)] => Ok(a),
        _ if lenient => Ok(instructions
            .iter()
            .find_map(|i| match i {
                Instruction::ApplyActions(a) => Some(a.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])),
        _ => Err(EncodeError::Unsupported {
            version: VERSION,
            what: "instructions other than one apply-actions",
        }),
    }
}

/// The instructions of a 1.0 action list.
pub(crate) fn flow_instructions(actions: Vec<crate::openflow::action::Action>) -> Vec<Instruction> {
    if actions.is_empty() {
        Vec::new()
    } else {
        vec![Instruction::ApplyActions(actions)]
    }
}

/// A 1.0 flow mod's command and table (the command's high byte with
/// `NXT_FLOW_MOD_TABLE_ID`, else 0 or, for deletes, all), its flags
/// checked.
pub(crate) fn command_and_table(
    raw_command: u16,
    raw_flags: u16,
    ctx: &Ctx,
) -> Res<(FlowModCommand, u8)> {
    let (table, command) = if ctx.flow_mod_table_id {
        (Some((raw_command >> 8) as u8), raw_command & 0xff)
    } else {
        (None, raw_command)
    };
    let command = u8::try_from(command)
        .ok()
        .and_then(FlowModCommand::from_wire)
        .ok_or(ErrorCode::FlowModFailed(FlowModFailedCode::BadCommand))?;
    if raw_flags & flags::EMERG != 0 {
        // Open vSwitch's answer: there is no room in an emergency cache.
        return Err(ErrorCode::FlowModFailed(FlowModFailedCode::TableFull));
    }
    if raw_flags & !(flags::SEND_FLOW_REM | flags::CHECK_OVERLAP) != 0 {
        return Err(ErrorCode::FlowModFailed(FlowModFailedCode::BadFlags));
    }
    let table_id = table.unwrap_or(match command {
        FlowModCommand::Delete | FlowModCommand::DeleteStrict => table_id::ALL,
        _ => 0,
    });
    Ok((command, table_id))
}

/// What follows the match in 1.0's `ofp_flow_mod` and comes first in
/// Nicira's `nx_flow_mod` (cookie to flags): read as a model flow mod with
/// no match and no instructions.
pub(crate) fn read_flow_mod_head(r: &mut Reader<'_>, ctx: &Ctx) -> Res<FlowMod> {
    let cookie = r.u64()?;
    let raw_command = r.u16()?;
    let idle_timeout = r.u16()?;
    let hard_timeout = r.u16()?;
    let priority = r.u16()?;
    let buffer_id = r.u32()?;
    let out_port = port_from_v10(r.u16()?);
    let flags = r.u16()?;
    let (command, table_id) = command_and_table(raw_command, flags, ctx)?;
    Ok(FlowMod {
        cookie,
        cookie_mask: 0,
        table_id,
        command,
        idle_timeout,
        hard_timeout,
        priority,
        buffer_id,
        out_port,
        out_group: group_id::ANY,
        flags,
        match_: Match::new(),
        instructions: Vec::new(),
    })
}

/// Writes the part [`read_flow_mod_head`] reads, with this cookie; with
/// `table_in_command` (the peer enabled `NXT_FLOW_MOD_TABLE_ID`) the table
/// goes in the command's high byte, otherwise it is not said.
pub(crate) fn write_flow_mod_head(
    f: &FlowMod,
    cookie: u64,
    table_in_command: bool,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    w.u64(cookie);
    let high = if table_in_command {
        u16::from(f.table_id) << 8
    } else {
        0
    };
    w.u16(high | u16::from(f.command.to_wire()));
    w.u16(f.idle_timeout);
    w.u16(f.hard_timeout);
    w.u16(f.priority);
    w.u32(f.buffer_id);
    w.u16(port_to_v10(f.out_port)?);
    w.u16(flags_to_v10(f.flags));
    Ok(())
}

pub(crate) fn decode_flow_mod(r: &mut Reader<'_>, ctx: &Ctx) -> Res<FlowMod> {
    let match_ = decode_match(r)?;
    let head = read_flow_mod_head(r, ctx)?;
    let actions = decode_actions(r, Context::of(&match_))?;
    Ok(FlowMod {
        match_,
        instructions: flow_instructions(actions),
        ..head
    })
}

/// Writes a flow mod (see [`write_flow_mod_head`] for its table).
pub(crate) fn encode_flow_mod(
    f: &FlowMod,
    table_in_command: bool,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    encode_match(&f.match_, w)?;
    write_flow_mod_head(f, f.cookie, table_in_command, w)?;
    encode_actions(flow_actions(&f.instructions, false)?, false, w)
}

/// `ofp_flow_removed_reason` of 1.0 (the model's GROUP_DELETE is sent as
/// DELETE, the closest).
pub(crate) fn removed_reason_to_v10(reason: u8) -> u8 {
    reason.min(2)
}

pub(crate) fn decode_flow_removed(r: &mut Reader<'_>) -> Res<FlowRemoved> {
    let match_ = decode_match(r)?;
    let cookie = r.u64()?;
    let priority = r.u16()?;
    // 1.0 defines 0..=2; anything else is read as DELETE, as it is sent.
    let reason = removed_reason_to_v10(r.u8()?);
    r.skip(1)?;
    let duration_sec = r.u32()?;
    let duration_nsec = r.u32()?;
    let idle_timeout = r.u16()?;
    r.skip(2)?;
    let m = FlowRemoved {
        cookie,
        priority,
        reason,
        table_id: 0,
        duration_sec,
        duration_nsec,
        idle_timeout,
        hard_timeout: 0,
        packet_count: r.u64()?,
        byte_count: r.u64()?,
        match_,
    };
    r.finish()?;
    Ok(m)
}

pub(crate) fn encode_flow_removed(f: &FlowRemoved, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    encode_match(&f.match_, w)?;
    w.u64(f.cookie);
    w.u16(f.priority);
    w.u8(removed_reason_to_v10(f.reason));
    w.zeros(1);
    w.u32(f.duration_sec);
    w.u32(f.duration_nsec);
    w.u16(f.idle_timeout);
    w.zeros(2);
    w.u64(f.packet_count);
    w.u64(f.byte_count);
    Ok(())
}

pub(crate) fn decode_packet_in(r: &mut Reader<'_>) -> Res<PacketIn> {
    let buffer_id = r.u32()?;
    let total_len = r.u16()?;
    let in_port = port_from_v10(r.u16()?);
    let reason = r.u8()?;
    r.skip(1)?;
    // One field without prerequisites: always a valid match.
    let match_ = Match::from_fields(vec![OxmField::InPort(in_port)])
        .map_err(|_| ErrorCode::BadRequest(BadRequestCode::BadPort))?;
    Ok(PacketIn {
        buffer_id,
        total_len,
        reason,
        table_id: 0,
        cookie: u64::MAX,
        match_,
        data: r.rest().to_vec(),
    })
}

/// Writes a packet-in; its in_port is the match's (`OFPP_NONE` if none).
pub(crate) fn encode_packet_in(p: &PacketIn, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u32(p.buffer_id);
    w.u16(p.total_len);
    w.u16(port_to_v10(p.match_.in_port().unwrap_or(PortNo::ANY))?);
    w.u8(p.reason);
    w.zeros(1);
    w.bytes(&p.data);
    Ok(())
}

pub(crate) fn decode_packet_out(r: &mut Reader<'_>) -> Res<PacketOut> {
    let buffer_id = r.u32()?;
    let in_port = packet_out_in_port(r.u16()?);
    let actions_len = usize::from(r.u16()?);
    let mut a = r.sub(actions_len, ErrorCode::BadRequest(BadRequestCode::BadLen))?;
    // No match: the packet's VLAN and protocol are not known.
    let actions = decode_actions(&mut a, Context::default())?;
    Ok(PacketOut {
        buffer_id,
        in_port,
        pipeline: Match::new(),
        actions,
        data: r.rest().to_vec(),
    })
}

pub(crate) fn encode_packet_out(p: &PacketOut, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u32(p.buffer_id);
    w.u16(port_to_v10(p.in_port)?);
    let len_at = w.pos();
    w.u16(0);
    let start = w.pos();
    encode_actions(&p.actions, false, w)?;
    w.patch_len(len_at, start, "packet-out actions");
    w.bytes(&p.data);
    Ok(())
}
