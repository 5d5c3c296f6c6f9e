//! Open vSwitch's TLV table messages (Nicira experimenter messages, any
//! OpenFlow version): the map from Geneve options (class, type, length)
//! to the match fields `tun_metadata0`..`tun_metadata63`
//! (`NXM_NX_TUN_METADATAn`, NXM class 1, fields 40 to 103, variable
//! length).
//!
//! - `NXT_TLV_TABLE_MOD` (24): `command` (16 bits: `NXTTMC_ADD` 0,
//!   `NXTTMC_DELETE` 1, `NXTTMC_CLEAR` 2), 6 bytes of padding, then 8-byte
//!   `nx_tlv_map`s: `option_class` (16), `option_type` (8), `option_len`
//!   (8, bytes of option data), `index` (16), 2 bytes of padding.
//! - `NXT_TLV_TABLE_REQUEST` (25): no body.
//! - `NXT_TLV_TABLE_REPLY` (26): `max_option_space` (32),
//!   `max_fields` (16), 10 reserved bytes, then the maps.
//!
//! Errors are Nicira's `NXTTMFC_*` (`OFPET_EXPERIMENTER` with Nicira's id
//! from OpenFlow 1.2 on; in 1.0, vendor errors of type 1, see
//! [`super::v10::errors`]). Decoding checks what Open vSwitch's does (a
//! length that is not a multiple of 4 or above 124 is
//! `NXTTMFC_BAD_OPT_LEN`, an index of 64 or more `NXTTMFC_BAD_FIELD_IDX`,
//! an unknown command `NXTTMFC_BAD_COMMAND`, a body that is not whole maps
//! `OFPBRC_BAD_LEN`) and never panics.

use super::error::{BadRequestCode, ErrorCode};
use super::nicira::NX_VENDOR_ID;

/// The experimenter subtypes.
pub const NXT_TLV_TABLE_MOD: u32 = 24;
pub const NXT_TLV_TABLE_REQUEST: u32 = 25;
pub const NXT_TLV_TABLE_REPLY: u32 = 26;

/// `tun_metadata0`..`tun_metadata63`.
pub const MAX_FIELDS: u16 = 64;
/// The longest option data a map may name (Geneve: 5 bits of 4 bytes).
pub const MAX_OPT_LEN: u8 = 124;
/// `NXM_NX_TUN_METADATA0`'s field number (class 1).
pub const NX_TUN_METADATA0: u8 = 40;

/// A Nicira error (`OFPET_EXPERIMENTER`, experimenter 0x2320).
pub const fn nx_error(exp_type: u16) -> ErrorCode {
    ErrorCode::Experimenter {
        exp_type,
        experimenter: NX_VENDOR_ID,
    }
}

/// `NXTTMFC_*`, and `NXFMFC_INVALID_TLV_FIELD` (a flow names a
/// `tun_metadataN` the table does not map).
pub mod code {
    use super::{ErrorCode, nx_error};
    pub const BAD_COMMAND: ErrorCode = nx_error(16);
    pub const BAD_OPT_LEN: ErrorCode = nx_error(17);
    pub const BAD_FIELD_IDX: ErrorCode = nx_error(18);
    pub const TABLE_FULL: ErrorCode = nx_error(19);
    pub const ALREADY_MAPPED: ErrorCode = nx_error(20);
    pub const DUP_ENTRY: ErrorCode = nx_error(21);
    pub const INVALID_TLV_FIELD: ErrorCode = nx_error(37);
    pub const INVALID_TLV_DEL: ErrorCode = nx_error(38);
}

/// Each code's name and its OpenFlow 1.0 vendor error (type, code).
pub const NAMES: [(ErrorCode, &str, (u16, u16)); 8] = [
    (code::BAD_COMMAND, "NXTTMFC_BAD_COMMAND", (1, 527)),
    (code::BAD_OPT_LEN, "NXTTMFC_BAD_OPT_LEN", (1, 528)),
    (code::BAD_FIELD_IDX, "NXTTMFC_BAD_FIELD_IDX", (1, 529)),
    (code::TABLE_FULL, "NXTTMFC_TABLE_FULL", (1, 530)),
    (code::ALREADY_MAPPED, "NXTTMFC_ALREADY_MAPPED", (1, 531)),
    (code::DUP_ENTRY, "NXTTMFC_DUP_ENTRY", (1, 532)),
    (
        code::INVALID_TLV_FIELD,
        "NXFMFC_INVALID_TLV_FIELD",
        (1, 536),
    ),
    (code::INVALID_TLV_DEL, "NXTTMFC_INVALID_TLV_DEL", (1, 537)),
];

/// One `nx_tlv_map`: option (class, type, length of its data) as
/// `tun_metadata<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlvMap {
    pub class: u16,
    pub kind: u8,
    pub len: u8,
    pub index: u16,
}

impl TlvMap {
    fn decode(b: &[u8; 8]) -> Result<TlvMap, ErrorCode> {
        let m = TlvMap {
            class: u16::from_be_bytes([b[0], b[1]]),
            kind: b[2],
            len: b[3],
            index: u16::from_be_bytes([b[4], b[5]]),
        };
        if !m.len.is_multiple_of(4) || m.len > MAX_OPT_LEN {
            return Err(code::BAD_OPT_LEN);
        }
        if m.index >= MAX_FIELDS {
            return Err(code::BAD_FIELD_IDX);
        }
        Ok(m)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.class.to_be_bytes());
        out.extend_from_slice(&[self.kind, self.len]);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
}

/// The maps after a fixed header of `skip` bytes.
fn decode_maps(d: &[u8], skip: usize) -> Result<Vec<TlvMap>, ErrorCode> {
    let body = d
        .get(skip..)
        .filter(|b| b.len().is_multiple_of(8))
        .ok_or(ErrorCode::BadRequest(BadRequestCode::BadLen))?;
    body.chunks_exact(8)
        .map(|c| TlvMap::decode(c.try_into().expect("chunks of 8")))
        .collect()
}

/// What a table mod does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvCommand {
    /// Adds the maps (all or none).
    Add,
    /// Deletes the maps of these indexes (unmapped ones are ignored).
    Delete,
    /// Deletes every map.
    Clear,
}

/// `NXT_TLV_TABLE_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvTableMod {
    pub command: TlvCommand,
    pub maps: Vec<TlvMap>,
}

impl TlvTableMod {
    /// Reads the body (after the experimenter header).
    pub fn decode(d: &[u8]) -> Result<TlvTableMod, ErrorCode> {
        let cmd = d
            .get(..2)
            .ok_or(ErrorCode::BadRequest(BadRequestCode::BadLen))?;
        let command = match u16::from_be_bytes([cmd[0], cmd[1]]) {
            0 => TlvCommand::Add,
            1 => TlvCommand::Delete,
            2 => TlvCommand::Clear,
            _ => return Err(code::BAD_COMMAND),
        };
        if d.len() < 8 {
            return Err(ErrorCode::BadRequest(BadRequestCode::BadLen));
        }
        Ok(TlvTableMod {
            command,
            maps: decode_maps(d, 8)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let c: u16 = match self.command {
            TlvCommand::Add => 0,
            TlvCommand::Delete => 1,
            TlvCommand::Clear => 2,
        };
        let mut out = c.to_be_bytes().to_vec();
        out.extend_from_slice(&[0; 6]);
        for m in &self.maps {
            m.encode(&mut out);
        }
        out
    }
}

/// `NXT_TLV_TABLE_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlvTableReply {
    /// The most option data all maps together may name, in bytes.
    pub max_option_space: u32,
    /// Indexes below this may be mapped.
    pub max_fields: u16,
    pub maps: Vec<TlvMap>,
}

impl TlvTableReply {
    pub fn decode(d: &[u8]) -> Result<TlvTableReply, ErrorCode> {
        let h = d
            .get(..16)
            .ok_or(ErrorCode::BadRequest(BadRequestCode::BadLen))?;
        Ok(TlvTableReply {
            max_option_space: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            max_fields: u16::from_be_bytes([h[4], h[5]]),
            maps: decode_maps(d, 16)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.max_option_space.to_be_bytes().to_vec();
        out.extend_from_slice(&self.max_fields.to_be_bytes());
        out.extend_from_slice(&[0; 10]);
        for m in &self.maps {
            m.encode(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(class: u16, kind: u8, len: u8, index: u16) -> TlvMap {
        TlvMap {
            class,
            kind,
            len,
            index,
        }
    }

    #[test]
    fn table_mod_is_open_vswitchs_layout_both_ways() {
        let m = TlvTableMod {
            command: TlvCommand::Add,
            maps: vec![map(0xffff, 0, 4, 0), map(0x0102, 0x80, 8, 63)],
        };
        let b = m.encode();
        assert_eq!(
            b,
            [
                0, 0, 0, 0, 0, 0, 0, 0, //
                0xff, 0xff, 0, 4, 0, 0, 0, 0, //
                0x01, 0x02, 0x80, 8, 0, 63, 0, 0
            ]
        );
        assert_eq!(TlvTableMod::decode(&b), Ok(m));
        let c = TlvTableMod::decode(&[0, 2, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((c.command, c.maps.len()), (TlvCommand::Clear, 0));
    }

    #[test]
    fn bad_table_mods_get_open_vswitchs_errors() {
        let with = |len: u8, index: u16| {
            let mut b = vec![0u8; 8];
            map(1, 2, len, index).encode(&mut b);
            TlvTableMod::decode(&b)
        };
        assert_eq!(with(5, 0), Err(code::BAD_OPT_LEN));
        assert_eq!(with(128, 0), Err(code::BAD_OPT_LEN));
        assert!(with(124, 0).is_ok() && with(0, 63).is_ok());
        assert_eq!(with(4, 64), Err(code::BAD_FIELD_IDX));
        let bad_len = Err(ErrorCode::BadRequest(BadRequestCode::BadLen));
        assert_eq!(
            TlvTableMod::decode(&[0, 3, 0, 0, 0, 0, 0, 0]),
            Err(code::BAD_COMMAND)
        );
        assert_eq!(TlvTableMod::decode(&[0, 0, 0]), bad_len);
        assert_eq!(TlvTableMod::decode(&[0; 12]), bad_len);
        // Every prefix of a good message decodes or fails, never panics.
        let b = TlvTableMod {
            command: TlvCommand::Delete,
            maps: vec![map(1, 1, 4, 1), map(2, 2, 8, 2)],
        }
        .encode();
        for n in 0..b.len() {
            let _ = TlvTableMod::decode(&b[..n]);
            let _ = TlvTableReply::decode(&b[..n]);
        }
    }

    #[test]
    fn reply_round_trips() {
        let r = TlvTableReply {
            max_option_space: 256,
            max_fields: 64,
            maps: vec![map(0x0102, 0x80, 4, 0)],
        };
        let b = r.encode();
        assert_eq!(&b[..6], &[0, 0, 1, 0, 0, 64]);
        assert_eq!(b.len(), 24);
        assert_eq!(TlvTableReply::decode(&b), Ok(r));
        assert!(TlvTableReply::decode(&b[..20]).is_err());
    }
}
