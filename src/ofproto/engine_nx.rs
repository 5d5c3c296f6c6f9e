//! The engine's Nicira (vendor) messages: the per-connection settings
//! Open vSwitch's tools ask for, which decide how later messages are said.
//!
//! - `NXT_FLOW_MOD_TABLE_ID` (1.0): a flow mod's command carries its table.
//! - `NXT_SET_FLOW_FORMAT` (1.0): `NXFF_OPENFLOW10` or `NXFF_NXM`; with NXM
//!   flow removals go out as `NXT_FLOW_REMOVED`. (`NXT_FLOW_MOD` and
//!   `NXST_FLOW`/`NXST_AGGREGATE` are read whatever the format, and flow
//!   statistics are answered in their request's form, as Open vSwitch does.)
//! - `NXT_SET_PACKET_IN_FORMAT`: standard, `NXT_PACKET_IN` (1.0 only) or
//!   `NXT_PACKET_IN2` (any version, as Open vSwitch; `ovs-ofctl monitor`
//!   asks for it first).
//! - `NXT_SET_CONTROLLER_ID`: the connection's id (kept; no action reads it
//!   yet).
//! - `NXT_SET_ASYNC_CONFIG`: the same masks as 1.3's SET_ASYNC.
//! - `NXT_FLOW_AGE`: nothing to do.
//! - `NXT_TLV_TABLE_MOD` / `NXT_TLV_TABLE_REQUEST` (any version): the
//!   switch's map of Geneve options to `tun_metadataN`
//!   ([`crate::openflow::tlv`]), changed through the datapath (refused to a
//!   slave with `OFPBRC_IS_SLAVE`) and answered with `NXT_TLV_TABLE_REPLY`.
//!
//! A format this switch does not know is `OFPBRC_EPERM` (Open vSwitch's
//! answer); a body of the wrong size `OFPBRC_BAD_LEN`; other subtypes
//! `OFPBRC_BAD_EXP_TYPE` (1.0's BAD_SUBTYPE), other vendors
//! `OFPBRC_BAD_EXPERIMENTER`.

use super::{Datapath, Engine, NICIRA};
use crate::openflow::Message;
use crate::openflow::error::BadRequestCode;
use crate::openflow::message::{AsyncConfig, Experimenter};
use crate::openflow::tlv::{self, TlvTableMod};
use crate::openflow::v10::nx::{FlowFormat, PacketInFormat};
use crate::openflow::{ErrorCode, v10};

/// The body of a 24-byte `nx_async_config`.
fn async_config(d: &[u8]) -> Option<AsyncConfig> {
    if d.len() != 24 {
        return None;
    }
    let w = |i: usize| u32::from_be_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]);
    Some(AsyncConfig {
        packet_in_mask: [w(0), w(1)],
        port_status_mask: [w(2), w(3)],
        flow_removed_mask: [w(4), w(5)],
    })
}

/// A body that is exactly one u32.
fn word(d: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(d).ok().map(u32::from_be_bytes)
}

impl<D: Datapath> Engine<D> {
    /// An experimenter (1.0: vendor) message.
    pub(super) fn experimenter(&mut self, id: u64, xid: u32, e: &Experimenter, raw: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let err = |c: BadRequestCode| ErrorCode::BadRequest(c);
        if e.experimenter != NICIRA {
            return c.error(xid, err(BadRequestCode::BadExperimenter), raw);
        }
        let v10 = c.version == v10::VERSION;
        let slave = c.role == crate::openflow::message::ControllerRole::Slave;
        let d = &e.data[..];
        match e.exp_type {
            tlv::NXT_TLV_TABLE_MOD if slave => {
                return self.error(id, xid, err(BadRequestCode::IsSlave), raw);
            }
            tlv::NXT_TLV_TABLE_MOD => {
                if let Err(code) = TlvTableMod::decode(d).and_then(|m| self.dp.tlv_table_mod(&m)) {
                    self.error(id, xid, code, raw);
                }
                return;
            }
            tlv::NXT_TLV_TABLE_REQUEST if !d.is_empty() => {
                return self.error(id, xid, err(BadRequestCode::BadLen), raw);
            }
            tlv::NXT_TLV_TABLE_REQUEST => {
                let reply = Experimenter {
                    experimenter: NICIRA,
                    exp_type: tlv::NXT_TLV_TABLE_REPLY,
                    data: self.dp.tlv_table().encode(),
                };
                return self.reply(id, xid, Message::Experimenter(reply));
            }
            _ => {}
        }
        let outcome: Result<(), BadRequestCode> = match e.exp_type {
            v10::nx_subtype::FLOW_MOD_TABLE_ID if v10 => match d {
                [set, ..] if d.len() == 8 => {
                    c.v10.flow_mod_table_id = *set != 0;
                    Ok(())
                }
                _ => Err(BadRequestCode::BadLen),
            },
            v10::nx_subtype::SET_FLOW_FORMAT if v10 => match word(d) {
                None => Err(BadRequestCode::BadLen),
                Some(f) => FlowFormat::from_wire(f)
                    .map(|f| c.v10.flow_format = f)
                    .ok_or(BadRequestCode::Eperm),
            },
            v10::nx_subtype::SET_PACKET_IN_FORMAT => match word(d) {
                None => Err(BadRequestCode::BadLen),
                Some(f) => match PacketInFormat::from_wire(f) {
                    // NXT_PACKET_IN is 1.0's; later versions have their
                    // own packet-in with a match (ovs-ofctl asks only 1.0).
                    Some(PacketInFormat::Nxt) if !v10 => Err(BadRequestCode::BadExpType),
                    Some(f) => {
                        c.v10.packet_in_format = f;
                        Ok(())
                    }
                    None => Err(BadRequestCode::Eperm),
                },
            },
            v10::nx_subtype::SET_CONTROLLER_ID => match d {
                [0, 0, 0, 0, 0, 0, hi, lo] => {
                    c.controller_id = u16::from_be_bytes([*hi, *lo]);
                    Ok(())
                }
                _ if d.len() == 8 => Err(BadRequestCode::Eperm),
                _ => Err(BadRequestCode::BadLen),
            },
            v10::nx_subtype::SET_ASYNC_CONFIG => match async_config(d) {
                Some(a) => {
                    c.async_cfg = a;
                    Ok(())
                }
                None => Err(BadRequestCode::BadLen),
            },
            v10::nx_subtype::FLOW_AGE if d.is_empty() => Ok(()),
            v10::nx_subtype::FLOW_AGE => Err(BadRequestCode::BadLen),
            _ => Err(BadRequestCode::BadExpType),
        };
        match outcome {
            Err(code) => self.error(id, xid, err(code), raw),
            Ok(()) if e.exp_type == v10::nx_subtype::SET_ASYNC_CONFIG => self.async_changed(),
            Ok(()) => {}
        }
    }
}
