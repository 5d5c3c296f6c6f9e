//! OpenFlow 1.0 errors: the model's [`ErrorCode`] (OpenFlow 1.3's types and
//! codes) to and from 1.0's `OFPT_ERROR` bodies.
//!
//! 1.0 has six error types: `HELLO_FAILED` 0, `BAD_REQUEST` 1, `BAD_ACTION`
//! 2, `FLOW_MOD_FAILED` 3, `PORT_MOD_FAILED` 4, `QUEUE_OP_FAILED` 5. A model
//! code with a 1.0 equivalent is sent as that type and code. Codes that 1.0
//! lacks are sent as Open vSwitch sends them, as Nicira vendor errors
//! (`NXET_VENDOR` 0xb0c2, `NXVC_VENDOR_ERROR` 0, then `nx_vendor_error`
//! {vendor 0x2320, type, code}) with the numbers of Open vSwitch's
//! `ofp-errors.h` "NX1.0" entries (`OFPBMC_BAD_PREREQ` is NX (1,260), ...).
//! The rest, which neither 1.0 nor Open vSwitch can say in 1.0, become the
//! closest standard code where one is obvious (an `*_EPERM` is
//! `OFPBRC_EPERM`, a `*_BAD_LEN` is `OFPBRC_BAD_LEN`,
//! `OFPBAC_UNSUPPORTED_ORDER` is `OFPFMFC_UNSUPPORTED`, `OFPFMFC_BAD_TIMEOUT`
//! is `OFPFMFC_BAD_EMERG_TIMEOUT`) and otherwise Open vSwitch's
//! `NXBRC_UNENCODABLE_ERROR` (NX (1,521)): groups, meters, roles, table
//! features, experimenter errors.
//!
//! Decoding inverts the table: every 1.0 code and every NX code above comes
//! back as the model code it was sent for. A pair 1.0 does not define, and
//! a vendor error this codec does not know, become [`ErrorCode::Other`] with
//! the pair as received (for a vendor error `{0xb0c2, 0}`, its vendor body
//! left at the front of the data), so they are echoed unchanged.

use crate::openflow::bytes::{Reader, Res, Writer};
use crate::openflow::error::*;

/// `NXET_VENDOR`: the error type of Nicira vendor errors in 1.0.
pub const NXET_VENDOR: u16 = 0xb0c2;
/// `NXVC_VENDOR_ERROR`: the one code of [`NXET_VENDOR`].
pub const NXVC_VENDOR_ERROR: u16 = 0;
/// Nicira's vendor id.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;

/// How a model code is said in 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// A standard 1.0 (type, code).
    Std(u16, u16),
    /// A Nicira vendor error's (type, code).
    Nx(u16, u16),
}

/// `NXBRC_UNENCODABLE_ERROR`.
const UNENCODABLE: Wire = Wire::Nx(1, 521);

/// The 1.0 form of a model code.
fn to_wire(code: ErrorCode) -> Wire {
    use ErrorCode as E;
    use Wire::{Nx, Std};
    let eperm = Std(1, 5);
    let bad_len = Std(1, 6);
    match code {
        E::HelloFailed(c) => Std(0, c.to_wire()),
        E::BadRequest(c) => match c {
            BadRequestCode::BadTableId => Nx(1, 512),
            BadRequestCode::IsSlave => eperm,
            BadRequestCode::BadPort => Nx(1, 514),
            BadRequestCode::BadPacket | BadRequestCode::MultipartBufferOverflow => UNENCODABLE,
            c => Std(1, c.to_wire()),
        },
        E::BadAction(c) => match c {
            BadActionCode::BadOutGroup | BadActionCode::BadTag => UNENCODABLE,
            BadActionCode::MatchInconsistent => Nx(1, 522),
            BadActionCode::UnsupportedOrder => Std(3, 5),
            BadActionCode::BadSetType => Nx(1, 523),
            BadActionCode::BadSetLen => Nx(1, 524),
            BadActionCode::BadSetArgument => Nx(1, 525),
            c => Std(2, c.to_wire()),
        },
        E::BadInstruction(c) => match c {
            BadInstructionCode::UnsupInst => Nx(2, 257),
            BadInstructionCode::BadLen => bad_len,
            BadInstructionCode::Eperm => eperm,
            _ => UNENCODABLE,
        },
        E::BadMatch(c) => match c {
            BadMatchCode::BadWildcards => Nx(1, 262),
            BadMatchCode::BadField => Nx(0, 263),
            BadMatchCode::BadValue => Nx(1, 258),
            BadMatchCode::BadMask => Nx(1, 259),
            BadMatchCode::BadPrereq => Nx(1, 260),
            BadMatchCode::DupField => Nx(1, 261),
            BadMatchCode::BadLen => bad_len,
            BadMatchCode::Eperm => eperm,
            _ => UNENCODABLE,
        },
        E::FlowModFailed(c) => match c {
            FlowModFailedCode::TableFull => Std(3, 0),
            FlowModFailedCode::Overlap => Std(3, 1),
            FlowModFailedCode::Eperm => Std(3, 2),
            FlowModFailedCode::BadTimeout => Std(3, 3),
            FlowModFailedCode::BadCommand => Std(3, 4),
            // NXFMFC_BAD_TABLE_ID: the table in flow_mod's command byte.
            FlowModFailedCode::BadTableId => Nx(5, 257),
            FlowModFailedCode::BadFlags => Nx(3, 258),
            FlowModFailedCode::Unknown => UNENCODABLE,
        },
        E::PortModFailed(c) => match c {
            PortModFailedCode::BadPort => Std(4, 0),
            PortModFailedCode::BadHwAddr => Std(4, 1),
            PortModFailedCode::Eperm => eperm,
            _ => UNENCODABLE,
        },
        E::QueueOpFailed(c) => Std(5, c.to_wire()),
        E::SwitchConfigFailed(SwitchConfigFailedCode::BadLen) => bad_len,
        E::GroupModFailed(GroupModFailedCode::Eperm)
        | E::TableModFailed(TableModFailedCode::Eperm)
        | E::SwitchConfigFailed(SwitchConfigFailedCode::Eperm)
        | E::TableFeaturesFailed(TableFeaturesFailedCode::Eperm) => eperm,
        E::GroupModFailed(_)
        | E::TableModFailed(_)
        | E::SwitchConfigFailed(_)
        | E::RoleRequestFailed(_)
        | E::MeterModFailed(_)
        | E::TableFeaturesFailed(_) => UNENCODABLE,
        // Nicira's TLV table errors have 1.0 numbers of their own.
        E::Experimenter { .. } => crate::openflow::tlv::NAMES
            .iter()
            .find(|(c, _, _)| *c == code)
            .map_or(UNENCODABLE, |&(_, _, (t, c))| Nx(t, c)),
        E::Other { ty, code } => Std(ty, code),
    }
}

/// The model code of a standard 1.0 pair.
fn from_std(ty: u16, code: u16) -> ErrorCode {
    use ErrorCode as E;
    let known = match (ty, code) {
        (0, c) => HelloFailedCode::from_wire(c).map(E::HelloFailed),
        (1, 0..=8) => BadRequestCode::from_wire(code).map(E::BadRequest),
        (2, 0..=8) => BadActionCode::from_wire(code).map(E::BadAction),
        (3, 0) => Some(E::FlowModFailed(FlowModFailedCode::TableFull)),
        (3, 1) => Some(E::FlowModFailed(FlowModFailedCode::Overlap)),
        (3, 2) => Some(E::FlowModFailed(FlowModFailedCode::Eperm)),
        (3, 3) => Some(E::FlowModFailed(FlowModFailedCode::BadTimeout)),
        (3, 4) => Some(E::FlowModFailed(FlowModFailedCode::BadCommand)),
        (3, 5) => Some(E::BadAction(BadActionCode::UnsupportedOrder)),
        (4, 0) => Some(E::PortModFailed(PortModFailedCode::BadPort)),
        (4, 1) => Some(E::PortModFailed(PortModFailedCode::BadHwAddr)),
        (5, c) => QueueOpFailedCode::from_wire(c).map(E::QueueOpFailed),
        _ => None,
    };
    known.unwrap_or(E::Other { ty, code })
}

/// Every NX code [`to_wire`] uses, with its model code (the decoding table).
const NX_CODES: &[((u16, u16), ErrorCode)] = &[
    ((1, 512), ErrorCode::BadRequest(BadRequestCode::BadTableId)),
    ((1, 514), ErrorCode::BadRequest(BadRequestCode::BadPort)),
    (
        (1, 522),
        ErrorCode::BadAction(BadActionCode::MatchInconsistent),
    ),
    ((1, 523), ErrorCode::BadAction(BadActionCode::BadSetType)),
    ((1, 524), ErrorCode::BadAction(BadActionCode::BadSetLen)),
    (
        (1, 525),
        ErrorCode::BadAction(BadActionCode::BadSetArgument),
    ),
    (
        (2, 257),
        ErrorCode::BadInstruction(BadInstructionCode::UnsupInst),
    ),
    ((1, 262), ErrorCode::BadMatch(BadMatchCode::BadWildcards)),
    ((0, 263), ErrorCode::BadMatch(BadMatchCode::BadField)),
    ((1, 258), ErrorCode::BadMatch(BadMatchCode::BadValue)),
    ((1, 259), ErrorCode::BadMatch(BadMatchCode::BadMask)),
    ((1, 260), ErrorCode::BadMatch(BadMatchCode::BadPrereq)),
    ((1, 261), ErrorCode::BadMatch(BadMatchCode::DupField)),
    (
        (5, 257),
        ErrorCode::FlowModFailed(FlowModFailedCode::BadTableId),
    ),
    (
        (3, 258),
        ErrorCode::FlowModFailed(FlowModFailedCode::BadFlags),
    ),
];

/// The 1.0 (type, code) a model code is sent as, and whether it is a
/// Nicira vendor error's pair rather than a standard one.
pub fn error_to_v10(code: ErrorCode) -> (u16, u16, bool) {
    match to_wire(code) {
        Wire::Std(t, c) => (t, c, false),
        Wire::Nx(t, c) => (t, c, true),
    }
}

/// Writes the body of a 1.0 `OFPT_ERROR` for `msg`.
pub(crate) fn encode_error_body(msg: &ErrorMsg, w: &mut Writer<'_>) {
    match to_wire(msg.code) {
        Wire::Std(ty, code) => {
            w.u16(ty);
            w.u16(code);
        }
        Wire::Nx(ty, code) => {
            w.u16(NXET_VENDOR);
            w.u16(NXVC_VENDOR_ERROR);
            w.u32(NX_VENDOR_ID);
            w.u16(ty);
            w.u16(code);
        }
    }
    w.bytes(&msg.data);
}

/// Reads the body of a 1.0 `OFPT_ERROR`.
pub(crate) fn decode_error_body(r: &mut Reader<'_>) -> Res<ErrorMsg> {
    let ty = r.u16()?;
    let code = r.u16()?;
    if (ty, code) == (NXET_VENDOR, NXVC_VENDOR_ERROR) {
        let rest = r.rest();
        let nx = match rest {
            [v0, v1, v2, v3, t0, t1, c0, c1, ..]
                if u32::from_be_bytes([*v0, *v1, *v2, *v3]) == NX_VENDOR_ID =>
            {
                let pair = (
                    u16::from_be_bytes([*t0, *t1]),
                    u16::from_be_bytes([*c0, *c1]),
                );
                NX_CODES
                    .iter()
                    .find(|(p, _)| *p == pair)
                    .map(|(_, c)| *c)
                    .or_else(|| {
                        let tlv = crate::openflow::tlv::NAMES.iter();
                        tlv.clone().find(|e| e.2 == pair).map(|e| e.0)
                    })
            }
            _ => None,
        };
        return Ok(match nx {
            Some(code) => ErrorMsg {
                code,
                data: rest.get(8..).unwrap_or_default().to_vec(),
            },
            None => ErrorMsg {
                code: ErrorCode::Other { ty, code },
                data: rest.to_vec(),
            },
        });
    }
    Ok(ErrorMsg {
        code: from_std(ty, code),
        data: r.rest().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    fn round(code: ErrorCode) -> ErrorCode {
        let mut v = Vec::new();
        encode_error_body(
            &ErrorMsg {
                code,
                data: vec![1, 2, 3],
            },
            &mut Writer::new(&mut v),
        );
        let m = decode_error_body(&mut Reader::new(&v, SHORT)).unwrap();
        // An unencodable error keeps its vendor body at the front.
        assert!(m.data.ends_with(&[1, 2, 3]), "{code}");
        m.code
    }

    #[test]
    fn every_model_code_has_a_1_0_form_that_decodes_sensibly() {
        for ty in 0..=14u16 {
            for c in 0..=20u16 {
                let code = ErrorCode::from_type_code(ty, c);
                if matches!(code, ErrorCode::Other { .. }) {
                    continue;
                }
                let back = round(code);
                let (t, c10, nx) = error_to_v10(code);
                if nx && (t, c10) == (1, 521) {
                    // Unencodable: echoed as the raw vendor error.
                    assert_eq!(
                        back,
                        ErrorCode::Other {
                            ty: NXET_VENDOR,
                            code: 0
                        }
                    );
                } else if !nx && [(1, 5), (1, 6), (3, 5)].contains(&(t, c10)) {
                    // Folded into a shared 1.0 code.
                    assert_eq!(error_to_v10(back), (t, c10, false));
                } else {
                    assert_eq!(back, code, "{code} sent as {t},{c10},{nx}");
                }
            }
        }
    }

    #[test]
    fn fixtures() {
        // ovs-ofctl ofp-print 0101001400000001 00010006 0100000800000002:
        // "OFPT_ERROR (xid=0x1): OFPBRC_BAD_LEN"
        let mut v = Vec::new();
        let bad_len = ErrorMsg {
            code: ErrorCode::BadRequest(BadRequestCode::BadLen),
            data: vec![],
        };
        encode_error_body(&bad_len, &mut Writer::new(&mut v));
        assert_eq!(v, [0, 1, 0, 6]);
        // ovs-ofctl ofp-print 0101001c00000001 b0c20000 00002320 00010104
        // 0100000800000002: "OFPT_ERROR (xid=0x1): OFPBMC_BAD_PREREQ"
        let mut v = Vec::new();
        let prereq = ErrorMsg {
            code: ErrorCode::BadMatch(BadMatchCode::BadPrereq),
            data: vec![],
        };
        encode_error_body(&prereq, &mut Writer::new(&mut v));
        assert_eq!(v, [0xb0, 0xc2, 0, 0, 0, 0, 0x23, 0x20, 0, 1, 1, 4]);
        // "...: OFPFMFC_UNSUPPORTED" for 00030005.
        assert_eq!(
            from_std(3, 5),
            ErrorCode::BadAction(BadActionCode::UnsupportedOrder)
        );
        assert_eq!(from_std(4, 2), ErrorCode::Other { ty: 4, code: 2 });
        // A short vendor error is kept raw.
        let raw = [0xb0, 0xc2, 0, 0, 0, 0];
        let m = decode_error_body(&mut Reader::new(&raw, SHORT)).unwrap();
        assert_eq!(
            m.code,
            ErrorCode::Other {
                ty: 0xb0c2,
                code: 0
            }
        );
        assert_eq!(m.data, [0, 0]);
    }
}
