//! Messages about flows and packets: `OFPT_FLOW_MOD`, `OFPT_FLOW_REMOVED`,
//! `OFPT_PACKET_IN` and `OFPT_PACKET_OUT`.

use super::action::{Action, decode_actions, encode_actions};
use super::bytes::{Reader, Res, Writer};
use super::error::{BadMatchCode, BadRequestCode, ErrorCode, FlowModFailedCode};
use super::flow_match::Match;
use super::header::version;
use super::instruction::{Instruction, decode_instructions, encode_instructions};
use super::oxm::OxmField;
use super::oxs::Stats;
use super::port::PortNo;

wire_enum! {
    /// `ofp_flow_mod_command`.
    pub enum FlowModCommand: u8 {
        Add = 0 => "OFPFC_ADD",
        Modify = 1 => "OFPFC_MODIFY",
        ModifyStrict = 2 => "OFPFC_MODIFY_STRICT",
        Delete = 3 => "OFPFC_DELETE",
        DeleteStrict = 4 => "OFPFC_DELETE_STRICT",
    }
}

/// `ofp_flow_mod_flags` bits.
pub mod flow_mod_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
    pub const ALL: u16 =
        SEND_FLOW_REM | CHECK_OVERLAP | RESET_COUNTS | NO_PKT_COUNTS | NO_BYT_COUNTS;
}

/// `ofp_packet_in_reason` values.
pub mod packet_in_reason {
    pub const NO_MATCH: u8 = 0;
    pub const ACTION: u8 = 1;
    pub const INVALID_TTL: u8 = 2;
}

/// `ofp_flow_removed_reason` values.
pub mod flow_removed_reason {
    pub const IDLE_TIMEOUT: u8 = 0;
    pub const HARD_TIMEOUT: u8 = 1;
    pub const DELETE: u8 = 2;
    pub const GROUP_DELETE: u8 = 3;
    /// OpenFlow 1.4 and later (1.3 says DELETE).
    pub const METER_DELETE: u8 = 4;
}

/// `OFPG_ANY` and friends live in [`super::group::group_id`]; `out_group`
/// of a flow mod that does not filter on groups.
const OFPG_ANY: u32 = 0xffff_ffff;

/// `OFPT_FLOW_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    /// For modify/delete: which cookie bits must match (0: any cookie).
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    /// A buffered packet to apply the flow to, or [`super::NO_BUFFER`].
    pub buffer_id: u32,
    /// For deletes: only flows that output to this port ([`PortNo::ANY`]: all).
    pub out_port: PortNo,
    /// For deletes: only flows that output to this group (`OFPG_ANY`: all).
    pub out_group: u32,
    /// [`flow_mod_flags`] bits.
    pub flags: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl Default for FlowMod {
    fn default() -> Self {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            buffer_id: super::NO_BUFFER,
            out_port: PortNo::ANY,
            out_group: OFPG_ANY,
            flags: 0,
            match_: Match::new(),
            instructions: Vec::new(),
        }
    }
}

impl FlowMod {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<FlowMod> {
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let table_id = r.u8()?;
        let command = FlowModCommand::from_wire(r.u8()?)
            .ok_or(ErrorCode::FlowModFailed(FlowModFailedCode::BadCommand))?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = PortNo(r.u32()?);
        let out_group = r.u32()?;
        let flags = r.u16()?;
        r.skip(2)?;
        let match_ = Match::decode(r)?;
        let instructions = decode_instructions(r)?;
        Ok(FlowMod {
            cookie,
            cookie_mask,
            table_id,
            command,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            match_,
            instructions,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.cookie);
        w.u64(self.cookie_mask);
        w.u8(self.table_id);
        w.u8(self.command.to_wire());
        w.u16(self.idle_timeout);
        w.u16(self.hard_timeout);
        w.u16(self.priority);
        w.u32(self.buffer_id);
        w.u32(self.out_port.0);
        w.u32(self.out_group);
        w.u16(self.flags);
        w.zeros(2);
        self.match_.encode(w);
        encode_instructions(&self.instructions, w);
    }
}

/// `OFPT_FLOW_REMOVED`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    /// A [`flow_removed_reason`] value.
    pub reason: u8,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
}

impl FlowRemoved {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<FlowRemoved> {
        if r.version() >= version::OF15 {
            return Self::decode15(r);
        }
        let m = FlowRemoved {
            cookie: r.u64()?,
            priority: r.u16()?,
            reason: r.u8()?,
            table_id: r.u8()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
            idle_timeout: r.u16()?,
            hard_timeout: r.u16()?,
            packet_count: r.u64()?,
            byte_count: r.u64()?,
            match_: Match::decode(r)?,
        };
        r.finish()?;
        Ok(m)
    }

    /// OpenFlow 1.5's layout: statistics as OXS after the match.
    fn decode15(r: &mut Reader<'_>) -> Res<FlowRemoved> {
        let table_id = r.u8()?;
        let reason = r.u8()?;
        let priority = r.u16()?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let cookie = r.u64()?;
        let match_ = Match::decode(r)?;
        let st = Stats::decode(r)?;
        r.finish()?;
        let (duration_sec, duration_nsec) = st.duration.unwrap_or_default();
        Ok(FlowRemoved {
            cookie,
            priority,
            reason,
            table_id,
            duration_sec,
            duration_nsec,
            idle_timeout,
            hard_timeout,
            packet_count: st.packet_count.unwrap_or_default(),
            byte_count: st.byte_count.unwrap_or_default(),
            match_,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        if w.version() >= version::OF15 {
            w.u8(self.table_id);
            w.u8(self.reason);
            w.u16(self.priority);
            w.u16(self.idle_timeout);
            w.u16(self.hard_timeout);
            w.u64(self.cookie);
            self.match_.encode(w);
            Stats {
                duration: Some((self.duration_sec, self.duration_nsec)),
                packet_count: Some(self.packet_count),
                byte_count: Some(self.byte_count),
                ..Stats::default()
            }
            .encode(w);
            return;
        }
        w.u64(self.cookie);
        w.u16(self.priority);
        w.u8(self.reason);
        w.u8(self.table_id);
        w.u32(self.duration_sec);
        w.u32(self.duration_nsec);
        w.u16(self.idle_timeout);
        w.u16(self.hard_timeout);
        w.u64(self.packet_count);
        w.u64(self.byte_count);
        self.match_.encode(w);
    }
}

/// `OFPT_PACKET_IN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    /// Where the switch keeps the packet, or [`super::NO_BUFFER`].
    pub buffer_id: u32,
    /// Length of the whole frame (`data` may be cut to `max_len`/`miss_send_len`).
    pub total_len: u16,
    /// A [`packet_in_reason`] value.
    pub reason: u8,
    pub table_id: u8,
    /// Cookie of the flow that sent the packet.
    pub cookie: u64,
    /// Pipeline fields: at least `in_port`.
    pub match_: Match,
    pub data: Vec<u8>,
}

impl Default for PacketIn {
    fn default() -> Self {
        PacketIn {
            buffer_id: super::NO_BUFFER,
            total_len: 0,
            reason: 0,
            table_id: 0,
            cookie: 0,
            match_: Match::new(),
            data: Vec::new(),
        }
    }
}

impl PacketIn {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<PacketIn> {
        let buffer_id = r.u32()?;
        let total_len = r.u16()?;
        let reason = r.u8()?;
        let table_id = r.u8()?;
        let cookie = r.u64()?;
        let match_ = Match::decode(r)?;
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

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.buffer_id);
        w.u16(self.total_len);
        w.u8(self.reason);
        w.u8(self.table_id);
        w.u64(self.cookie);
        if w.version() >= version::OF15 {
            // As Open vSwitch: 1.5's pipeline fields carry the registers as
            // packet registers (`OXM_OF_PKT_REGn`, the xregs).
            self.match_.with_packet_regs().encode(w);
        } else {
            self.match_.encode(w);
        }
        w.zeros(2);
        w.bytes(&self.data);
    }
}

/// `OFPT_PACKET_OUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    /// A buffered packet, or [`super::NO_BUFFER`] with the frame in `data`.
    pub buffer_id: u32,
    /// The packet's ingress port for the actions ([`PortNo::CONTROLLER`] if none).
    pub in_port: PortNo,
    /// The packet's other pipeline fields (OpenFlow 1.5's match, as
    /// `ovs-ofctl packet-out "in_port=controller,tun_id=5 ..."` sends it):
    /// the tunnel metadata `tun_id` (`OXM_OF_TUNNEL_ID`), `tun_src` and
    /// `tun_dst` (`NXM_NX_TUN_IPV4_SRC/DST`), `tun_ipv6_src` and
    /// `tun_ipv6_dst` (`NXM_NX_TUN_IPV6_SRC/DST`), `metadata` and the
    /// registers (`reg0`-`reg15`, `xreg0`-`xreg7`), as Open vSwitch takes
    /// them; anything else is `OFPBMC_BAD_FIELD`. Earlier
    /// versions cannot say them: they are left out there, as Open vSwitch
    /// leaves them out.
    pub pipeline: Match,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

impl Default for PacketOut {
    fn default() -> Self {
        PacketOut {
            buffer_id: super::NO_BUFFER,
            in_port: PortNo::CONTROLLER,
            pipeline: Match::new(),
            actions: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl PacketOut {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<PacketOut> {
        if r.version() >= version::OF15 {
            return Self::decode15(r);
        }
        let buffer_id = r.u32()?;
        let in_port = PortNo(r.u32()?);
        let actions_len = usize::from(r.u16()?);
        r.skip(6)?;
        let mut actions = r.sub(actions_len, ErrorCode::BadRequest(BadRequestCode::BadLen))?;
        let actions = decode_actions(&mut actions)?;
        Ok(PacketOut {
            buffer_id,
            in_port,
            pipeline: Match::new(),
            actions,
            data: r.rest().to_vec(),
        })
    }

    /// OpenFlow 1.5's layout: the pipeline fields as a match (`in_port`,
    /// the tunnel metadata, `metadata` and the registers are kept; others
    /// are refused as Open vSwitch does for fields it cannot set).
    fn decode15(r: &mut Reader<'_>) -> Res<PacketOut> {
        let buffer_id = r.u32()?;
        let actions_len = usize::from(r.u16()?);
        r.skip(2)?;
        let m = Match::decode(r)?;
        let bad_field = ErrorCode::BadMatch(BadMatchCode::BadField);
        if m.fields().iter().any(|f| {
            !matches!(
                f,
                OxmField::InPort(_) | OxmField::TunnelId(_) | OxmField::Metadata(_)
            )
        }) || m.registers().iter().any(|x| {
            // (tun_metadata is not taken here yet.)
            matches!(
                x.reg,
                super::nicira::Register::ConjId | super::nicira::Register::TunMetadata { .. }
            )
        }) {
            return Err(bad_field);
        }
        let in_port = m.in_port().unwrap_or(PortNo::CONTROLLER);
        let pipeline = Match::from_fields(
            m.fields()
                .iter()
                .filter(|f| !matches!(f, OxmField::InPort(_)))
                .cloned()
                .collect(),
        )
        .and_then(|p| p.with_registers(m.registers().to_vec()))
        .map_err(ErrorCode::BadMatch)?;
        let mut actions = r.sub(actions_len, ErrorCode::BadRequest(BadRequestCode::BadLen))?;
        let actions = decode_actions(&mut actions)?;
        Ok(PacketOut {
            buffer_id,
            in_port,
            pipeline,
            actions,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        if w.version() >= version::OF15 {
            w.u32(self.buffer_id);
            let len_at = w.pos();
            w.u16(0);
            w.zeros(2);
            let fields = std::iter::once(OxmField::InPort(self.in_port))
                .chain(
                    self.pipeline
                        .fields()
                        .iter()
                        .filter(|f| !matches!(f, OxmField::InPort(_)))
                        .cloned(),
                )
                .collect();
            // Valid unless `pipeline` was: then in_port alone.
            Match::from_fields(fields)
                .and_then(|m| m.with_registers(self.pipeline.registers().to_vec()))
                .or_else(|_| Match::from_fields(vec![OxmField::InPort(self.in_port)]))
                .unwrap_or_default()
                .encode(w);
            let start = w.pos();
            encode_actions(&self.actions, w);
            w.patch_len(len_at, start, "packet-out actions");
            w.bytes(&self.data);
            return;
        }
        w.u32(self.buffer_id);
        w.u32(self.in_port.0);
        let len_at = w.pos();
        w.u16(0);
        w.zeros(6);
        let start = w.pos();
        encode_actions(&self.actions, w);
        w.patch_len(len_at, start, "packet-out actions");
        w.bytes(&self.data);
    }
}
