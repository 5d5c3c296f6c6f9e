//! Nicira vendor actions that say in OpenFlow 1.0 what 1.1 and later have
//! as standard actions, as Open vSwitch's tools send them to a 1.0 switch:
//!
//! | Nicira (1.0) | model |
//! |---|---|
//! | `NXAST_DEC_TTL` (18) | `DecNwTtl` |
//! | `NXAST_PUSH_MPLS` (23) ethertype | `PushMpls` (0x8847 or 0x8848) |
//! | `NXAST_POP_MPLS` (24) ethertype | `PopMpls` |
//! | `NXAST_SET_MPLS_TTL` (25) ttl | `SetMplsTtl` |
//! | `NXAST_DEC_MPLS_TTL` (26) | `DecMplsTtl` |
//! | `NXAST_SET_MPLS_LABEL` (30) label | `SetField(mpls_label)` (20 bits) |
//! | `NXAST_SET_MPLS_TC` (31) tc | `SetField(mpls_tc)` (3 bits) |
//!
//! Each is 16 bytes: the vendor action header (type, length, vendor,
//! subtype) and 6 bytes of arguments and padding. Other Nicira actions are
//! [`crate::openflow::nicira`]'s.

use crate::openflow::action::Action;
use crate::openflow::bytes::{Reader, Res, Writer};
use crate::openflow::error::{BadActionCode, ErrorCode};
use crate::openflow::oxm::OxmField;

use super::errors::NX_VENDOR_ID;

/// The `NXAST_*` subtypes of this module.
pub mod nxast {
    pub const DEC_TTL: u16 = 18;
    pub const PUSH_MPLS: u16 = 23;
    pub const POP_MPLS: u16 = 24;
    pub const SET_MPLS_TTL: u16 = 25;
    pub const DEC_MPLS_TTL: u16 = 26;
    pub const SET_MPLS_LABEL: u16 = 30;
    pub const SET_MPLS_TC: u16 = 31;
}

const LEN: usize = 16;

/// Whether the vendor action `a` holds (positioned after the 4-byte action
/// header) is one of this module's.
pub(crate) fn is_ours(a: &Reader<'_>) -> bool {
    let vendor = match (a.peek_u16(0), a.peek_u16(2)) {
        (Ok(h), Ok(l)) => (u32::from(h) << 16) | u32::from(l),
        _ => return false,
    };
    vendor == NX_VENDOR_ID
        && matches!(
            a.peek_u16(4),
            Ok(nxast::DEC_TTL
                | nxast::PUSH_MPLS
                | nxast::POP_MPLS
                | nxast::SET_MPLS_TTL
                | nxast::DEC_MPLS_TTL
                | nxast::SET_MPLS_LABEL
                | nxast::SET_MPLS_TC)
        )
}

/// Reads one of this module's actions of `len` bytes (see [`is_ours`]).
pub(crate) fn decode(len: usize, a: &mut Reader<'_>) -> Res<Action> {
    let bad = |c| ErrorCode::BadAction(c);
    if len != LEN {
        return Err(bad(BadActionCode::BadLen));
    }
    a.skip(4)?;
    let subtype = a.u16()?;
    let u8_arg = |a: &mut Reader<'_>| -> Res<u8> {
        let v = a.u8()?;
        a.skip(5)?;
        Ok(v)
    };
    Ok(match subtype {
        nxast::DEC_TTL => Action::DecNwTtl,
        nxast::DEC_MPLS_TTL => Action::DecMplsTtl,
        nxast::PUSH_MPLS | nxast::POP_MPLS => {
            let ethertype = a.u16()?;
            a.skip(4)?;
            if subtype == nxast::POP_MPLS {
                Action::PopMpls(ethertype)
            } else if matches!(ethertype, 0x8847 | 0x8848) {
                Action::PushMpls(ethertype)
            } else {
                return Err(bad(BadActionCode::BadArgument));
            }
        }
        nxast::SET_MPLS_TTL => Action::SetMplsTtl(u8_arg(a)?),
        nxast::SET_MPLS_TC => {
            let tc = u8_arg(a)?;
            if tc > 7 {
                return Err(bad(BadActionCode::BadArgument));
            }
            Action::SetField(OxmField::MplsTc(tc))
        }
        nxast::SET_MPLS_LABEL => {
            a.skip(2)?;
            let label = a.u32()?;
            if label > 0xf_ffff {
                return Err(bad(BadActionCode::BadArgument));
            }
            Action::SetField(OxmField::MplsLabel(label))
        }
        _ => return Err(bad(BadActionCode::BadExpType)),
    })
}

/// Writes `a` as one of this module's actions, if it is one (`false`:
/// nothing written).
pub(crate) fn encode(a: &Action, w: &mut Writer<'_>) -> bool {
    let head = |w: &mut Writer<'_>, subtype: u16| {
        w.u16(0xffff);
        w.u16(LEN as u16);
        w.u32(NX_VENDOR_ID);
        w.u16(subtype);
    };
    match *a {
        Action::DecNwTtl | Action::DecMplsTtl => {
            let st = if *a == Action::DecNwTtl {
                nxast::DEC_TTL
            } else {
                nxast::DEC_MPLS_TTL
            };
            head(w, st);
            w.zeros(6);
        }
        Action::PushMpls(e) | Action::PopMpls(e) => {
            let st = if matches!(a, Action::PushMpls(_)) {
                nxast::PUSH_MPLS
            } else {
                nxast::POP_MPLS
            };
            head(w, st);
            w.u16(e);
            w.zeros(4);
        }
        Action::SetMplsTtl(v) | Action::SetField(OxmField::MplsTc(v)) => {
            let st = if matches!(a, Action::SetMplsTtl(_)) {
                nxast::SET_MPLS_TTL
            } else {
                nxast::SET_MPLS_TC
            };
            head(w, st);
            w.u8(v);
            w.zeros(5);
        }
        Action::SetField(OxmField::MplsLabel(label)) => {
            head(w, nxast::SET_MPLS_LABEL);
            w.zeros(2);
            w.u32(label);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;
    use crate::openflow::v10::fixtures::unhex;

    fn dec(b: &[u8]) -> Res<Action> {
        let mut r = Reader::new(&b[4..], ErrorCode::BadRequest(BadRequestCode::BadLen));
        assert!(is_ours(&r));
        decode(b.len(), &mut r)
    }

    /// Each as `ovs-ofctl ofp-print` reads it (in a 1.0 flow mod):
    /// `dec_ttl, push_mpls:0x8847, pop_mpls:0x0800, set_mpls_ttl(9),
    /// dec_mpls_ttl, set_mpls_label(5), set_mpls_tc(3)`.
    #[test]
    fn round_trips() {
        for (hex, want) in [
            ("ffff0010 00002320 0012 000000000000", Action::DecNwTtl),
            (
                "ffff0010 00002320 0017 8847 00000000",
                Action::PushMpls(0x8847),
            ),
            (
                "ffff0010 00002320 0018 0800 00000000",
                Action::PopMpls(0x0800),
            ),
            (
                "ffff0010 00002320 0019 09 0000000000",
                Action::SetMplsTtl(9),
            ),
            ("ffff0010 00002320 001a 000000000000", Action::DecMplsTtl),
            (
                "ffff0010 00002320 001e 0000 00000005",
                Action::SetField(OxmField::MplsLabel(5)),
            ),
            (
                "ffff0010 00002320 001f 03 0000000000",
                Action::SetField(OxmField::MplsTc(3)),
            ),
        ] {
            let b = unhex(hex);
            assert_eq!(dec(&b), Ok(want.clone()), "{hex}");
            let mut out = Vec::new();
            assert!(encode(&want, &mut Writer::new(&mut out)));
            assert_eq!(out, b, "{hex}");
        }
        let mut out = Vec::new();
        assert!(!encode(&Action::PopVlan, &mut Writer::new(&mut out)));
        assert!(out.is_empty());
    }

    #[test]
    fn errors() {
        let e = |c| Err(ErrorCode::BadAction(c));
        assert_eq!(
            dec(&unhex("ffff0010 00002320 0017 0800 00000000")),
            e(BadActionCode::BadArgument)
        );
        assert_eq!(
            dec(&unhex("ffff0010 00002320 001e 0000 00100000")),
            e(BadActionCode::BadArgument)
        );
        assert_eq!(
            dec(&unhex("ffff0010 00002320 001f 08 0000000000")),
            e(BadActionCode::BadArgument)
        );
        assert_eq!(
            dec(&unhex(
                "ffff0018 00002320 0012 000000000000 0000000000000000"
            )),
            e(BadActionCode::BadLen)
        );
        // Not ours: another vendor, another subtype.
        let short = ErrorCode::BadRequest(BadRequestCode::BadLen);
        let other = unhex("00002321 0012 000000000000");
        assert!(!is_ours(&Reader::new(&other, short)));
        let resubmit = unhex("00002320 0001 000000000000");
        assert!(!is_ours(&Reader::new(&resubmit, short)));
        assert!(!is_ours(&Reader::new(&[0, 0], short)));
    }
}
