//! Bundles (`OFPT_BUNDLE_CONTROL`, `OFPT_BUNDLE_ADD_MESSAGE`, OpenFlow 1.4
//! on, and the ONF extension that carries them in 1.3) and
//! `OFPT_ROLE_STATUS`.
//!
//! A bundle add carries a whole inner message, kept here as its bytes: the
//! inner message is decoded by the agent when it is added (to refuse what
//! cannot be bundled at once) and applied at commit. Properties of either
//! message are kept raw; the agent refuses those it does not know.

use super::bytes::{Reader, Res, Writer};
use super::error::{BadRequestCode, ErrorCode};
use super::header::HEADER_LEN;
use super::message::ControllerRole;

/// The ONF extension types of the 1.3 bundle messages
/// (`ONFT_BUNDLE_CONTROL`, `ONFT_BUNDLE_ADD_MESSAGE`).
pub const ONFT_BUNDLE_CONTROL: u32 = 2300;
pub const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

/// The 1.4 error type `OFPET_BUNDLE_FAILED`; in 1.3 its codes travel as
/// ONF experimenter errors `2300 + code`.
pub const OFPET_BUNDLE_FAILED: u16 = 17;

/// `ofp_bundle_failed_code` values.
pub mod bundle_failed {
    pub const UNKNOWN: u16 = 0;
    pub const EPERM: u16 = 1;
    pub const BAD_ID: u16 = 2;
    pub const BUNDLE_EXIST: u16 = 3;
    pub const BUNDLE_CLOSED: u16 = 4;
    pub const OUT_OF_BUNDLES: u16 = 5;
    pub const BAD_TYPE: u16 = 6;
    pub const BAD_FLAGS: u16 = 7;
    pub const MSG_BAD_LEN: u16 = 8;
    pub const MSG_BAD_XID: u16 = 9;
    pub const MSG_UNSUP: u16 = 10;
    pub const MSG_CONFLICT: u16 = 11;
    pub const MSG_TOO_MANY: u16 = 12;
    pub const MSG_FAILED: u16 = 13;
    pub const TIMEOUT: u16 = 14;
    pub const BUNDLE_IN_PROGRESS: u16 = 15;
}

/// The error for a bundle failure `code` ([`bundle_failed`]).
pub fn bundle_error(code: u16) -> ErrorCode {
    ErrorCode::Other {
        ty: OFPET_BUNDLE_FAILED,
        code,
    }
}

wire_enum! {
    /// `ofp_bundle_ctrl_type`.
    pub enum BundleCtrlType: u16 {
        OpenRequest = 0 => "OFPBCT_OPEN_REQUEST",
        OpenReply = 1 => "OFPBCT_OPEN_REPLY",
        CloseRequest = 2 => "OFPBCT_CLOSE_REQUEST",
        CloseReply = 3 => "OFPBCT_CLOSE_REPLY",
        CommitRequest = 4 => "OFPBCT_COMMIT_REQUEST",
        CommitReply = 5 => "OFPBCT_COMMIT_REPLY",
        DiscardRequest = 6 => "OFPBCT_DISCARD_REQUEST",
        DiscardReply = 7 => "OFPBCT_DISCARD_REPLY",
    }
}

/// `ofp_bundle_flags` bits.
pub mod bundle_flags {
    pub const ATOMIC: u16 = 1 << 0;
    pub const ORDERED: u16 = 1 << 1;
    pub const TIME: u16 = 1 << 2;
}

/// `OFPT_BUNDLE_CONTROL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleCtrl {
    pub bundle_id: u32,
    pub ctrl_type: BundleCtrlType,
    /// [`bundle_flags`] bits.
    pub flags: u16,
    /// Properties, raw (type, bytes after the 4-byte property header).
    pub properties: Vec<(u16, Vec<u8>)>,
}

/// `OFPT_BUNDLE_ADD_MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAdd {
    pub bundle_id: u32,
    pub flags: u16,
    /// The whole inner message, header included.
    pub message: Vec<u8>,
    pub properties: Vec<(u16, Vec<u8>)>,
}

/// `OFPT_ROLE_STATUS`: a controller's role changed without its asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleStatus {
    pub role: ControllerRole,
    /// `OFPCRR_MASTER_REQUEST` (0), `OFPCRR_CONFIG` (1), ...
    pub reason: u8,
    pub generation_id: u64,
}

/// `OFPCRR_MASTER_REQUEST`: another controller asked to be master.
pub const ROLE_REASON_MASTER_REQUEST: u8 = 0;

fn bad_len() -> ErrorCode {
    ErrorCode::BadRequest(BadRequestCode::BadLen)
}

/// Properties filling the rest of `r`, each padded to 8 bytes.
fn decode_props(r: &mut Reader<'_>) -> Res<Vec<(u16, Vec<u8>)>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        if len < 4 {
            return Err(bad_len());
        }
        out.push((ty, r.take(len - 4)?.to_vec()));
        let pad = len.next_multiple_of(8) - len;
        r.skip(pad.min(r.remaining()))?;
    }
    Ok(out)
}

fn encode_props(props: &[(u16, Vec<u8>)], w: &mut Writer<'_>) {
    for (ty, data) in props {
        let start = w.pos();
        w.u16(*ty);
        w.u16(0);
        w.bytes(data);
        w.patch_len(start + 2, start, "bundle property");
        w.pad_to_8(start);
    }
}

impl BundleCtrl {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<BundleCtrl> {
        let bundle_id = r.u32()?;
        let t = r.u16()?;
        let ctrl_type =
            BundleCtrlType::from_wire(t).ok_or(bundle_error(bundle_failed::BAD_TYPE))?;
        let flags = r.u16()?;
        Ok(BundleCtrl {
            bundle_id,
            ctrl_type,
            flags,
            properties: decode_props(r)?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.bundle_id);
        w.u16(self.ctrl_type.to_wire());
        w.u16(self.flags);
        encode_props(&self.properties, w);
    }
}

impl BundleAdd {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<BundleAdd> {
        let bundle_id = r.u32()?;
        r.skip(2)?;
        let flags = r.u16()?;
        let len = usize::from(r.peek_u16(2)?);
        if len < HEADER_LEN {
            return Err(bundle_error(bundle_failed::MSG_BAD_LEN));
        }
        let message = r
            .take(len)
            .map_err(|_| bundle_error(bundle_failed::MSG_BAD_LEN))?
            .to_vec();
        // Properties, if any, start on the next multiple of 8 of the whole
        // message (16 bytes of header and fields before the inner one).
        let pad = (16 + len).next_multiple_of(8) - (16 + len);
        if !r.is_empty() {
            r.skip(pad)?;
        }
        Ok(BundleAdd {
            bundle_id,
            flags,
            message,
            properties: decode_props(r)?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.bundle_id);
        w.zeros(2);
        w.u16(self.flags);
        w.bytes(&self.message);
        if !self.properties.is_empty() {
            let n = 16 + self.message.len();
            w.zeros(n.next_multiple_of(8) - n);
            encode_props(&self.properties, w);
        }
    }
}

impl RoleStatus {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<RoleStatus> {
        let role = ControllerRole::from_wire(r.u32()?).ok_or(bad_len())?;
        let reason = r.u8()?;
        r.skip(3)?;
        let generation_id = r.u64()?;
        r.rest();
        Ok(RoleStatus {
            role,
            reason,
            generation_id,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.role.to_wire());
        w.u8(self.reason);
        w.zeros(3);
        w.u64(self.generation_id);
    }
}
