//! Actions (`ofp_action_*`) and action lists.
//!
//! Every action of OpenFlow 1.3 is an [`Action`] variant. Decoding checks
//! each action's length (at least 8, a multiple of 8, the exact size of its
//! type), the ethertypes the push actions allow, and that SET_FIELD carries
//! exactly one unmasked basic field (or a register, [`Action::Nx`]), padded
//! to 8 bytes. Nicira experimenter actions decode as [`Action::Nx`]
//! ([`super::nicira`]); other experimenters are rejected with
//! `OFPBAC_BAD_EXPERIMENTER`.

use super::bytes::{Reader, Res, Writer, pad8};
use super::error::{BadActionCode, ErrorCode};
use super::nicira::{NxAction, Register};
use super::oxm::{OxmError, OxmField};
use super::port::PortNo;

wire_enum! {
    /// `ofp_action_type`.
    pub enum ActionType: u16 {
        Output = 0 => "OFPAT_OUTPUT",
        CopyTtlOut = 11 => "OFPAT_COPY_TTL_OUT",
        CopyTtlIn = 12 => "OFPAT_COPY_TTL_IN",
        SetMplsTtl = 15 => "OFPAT_SET_MPLS_TTL",
        DecMplsTtl = 16 => "OFPAT_DEC_MPLS_TTL",
        PushVlan = 17 => "OFPAT_PUSH_VLAN",
        PopVlan = 18 => "OFPAT_POP_VLAN",
        PushMpls = 19 => "OFPAT_PUSH_MPLS",
        PopMpls = 20 => "OFPAT_POP_MPLS",
        SetQueue = 21 => "OFPAT_SET_QUEUE",
        Group = 22 => "OFPAT_GROUP",
        SetNwTtl = 23 => "OFPAT_SET_NW_TTL",
        DecNwTtl = 24 => "OFPAT_DEC_NW_TTL",
        SetField = 25 => "OFPAT_SET_FIELD",
        PushPbb = 26 => "OFPAT_PUSH_PBB",
        PopPbb = 27 => "OFPAT_POP_PBB",
        Experimenter = 0xffff => "OFPAT_EXPERIMENTER",
    }
}

/// `max_len` of an output to the controller: the most that may be sent
/// with the packet buffered (`OFPCML_MAX`).
pub const CONTROLLER_MAX_LEN_MAX: u16 = 0xffe5;
/// `max_len` asking for the whole packet, unbuffered (`OFPCML_NO_BUFFER`).
pub const CONTROLLER_MAX_LEN_NO_BUFFER: u16 = 0xffff;

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Output to a port; `max_len` bytes go to the controller when `port`
    /// is [`PortNo::CONTROLLER`].
    Output {
        port: PortNo,
        max_len: u16,
    },
    CopyTtlOut,
    CopyTtlIn,
    SetMplsTtl(u8),
    DecMplsTtl,
    /// Push a VLAN tag with this ethertype (0x8100 or 0x88a8).
    PushVlan(u16),
    PopVlan,
    /// Push an MPLS label with this ethertype (0x8847 or 0x8848).
    PushMpls(u16),
    /// Pop an MPLS label; the ethertype for the payload.
    PopMpls(u16),
    SetQueue(u32),
    Group(u32),
    SetNwTtl(u8),
    DecNwTtl,
    /// Set one header field (never masked in OpenFlow 1.3).
    SetField(OxmField),
    /// Push a PBB service tag with this ethertype (0x88e7).
    PushPbb(u16),
    PopPbb,
    /// A Nicira extension action, or a SET_FIELD of a register.
    Nx(NxAction),
}

const fn bad(c: BadActionCode) -> ErrorCode {
    ErrorCode::BadAction(c)
}

impl Action {
    pub fn action_type(&self) -> ActionType {
        match self {
            Action::Output { .. } => ActionType::Output,
            Action::CopyTtlOut => ActionType::CopyTtlOut,
            Action::CopyTtlIn => ActionType::CopyTtlIn,
            Action::SetMplsTtl(_) => ActionType::SetMplsTtl,
            Action::DecMplsTtl => ActionType::DecMplsTtl,
            Action::PushVlan(_) => ActionType::PushVlan,
            Action::PopVlan => ActionType::PopVlan,
            Action::PushMpls(_) => ActionType::PushMpls,
            Action::PopMpls(_) => ActionType::PopMpls,
            Action::SetQueue(_) => ActionType::SetQueue,
            Action::Group(_) => ActionType::Group,
            Action::SetNwTtl(_) => ActionType::SetNwTtl,
            Action::DecNwTtl => ActionType::DecNwTtl,
            Action::SetField(_) => ActionType::SetField,
            Action::PushPbb(_) => ActionType::PushPbb,
            Action::PopPbb => ActionType::PopPbb,
            Action::Nx(NxAction::SetReg { .. } | NxAction::SetTunIpv6 { .. }) => {
                ActionType::SetField
            }
            Action::Nx(_) => ActionType::Experimenter,
        }
    }

    /// An output action to a port, `max_len` 0 (or everything, unbuffered,
    /// for the controller port).
    pub fn output(port: PortNo) -> Action {
        let max_len = if port == PortNo::CONTROLLER {
            CONTROLLER_MAX_LEN_NO_BUFFER
        } else {
            0
        };
        Action::Output { port, max_len }
    }

    /// Size of the encoded action.
    pub fn encoded_len(&self) -> usize {
        match self {
            Action::Output { .. } => 16,
            Action::SetField(f) => pad8(4 + f.encoded_len()),
            Action::Nx(a) => a.encoded_len(),
            _ => 8,
        }
    }

    /// Reads one action of `len` bytes (already checked to be there, at
    /// least 8 and a multiple of 8); `r` is positioned after its header.
    fn decode_body(ty: u16, len: usize, r: &mut Reader<'_>) -> Res<Action> {
        if ty == super::nicira::OFPAT_COPY_FIELD && r.version() >= 0x06 {
            return Ok(Action::Nx(NxAction::decode_copy_field(len, r)?));
        }
        let ty = ActionType::from_wire(ty).ok_or(bad(BadActionCode::BadType))?;
        let fixed = match ty {
            ActionType::Output => Some(16),
            ActionType::SetField | ActionType::Experimenter => None,
            _ => Some(8),
        };
        if fixed.is_some_and(|n| n != len) {
            return Err(bad(BadActionCode::BadLen));
        }
        let ethertype = |r: &mut Reader<'_>, allowed: &[u16]| -> Res<u16> {
            let t = r.u16()?;
            r.skip(2)?;
            if allowed.is_empty() || allowed.contains(&t) {
                Ok(t)
            } else {
                Err(bad(BadActionCode::BadArgument))
            }
        };
        let ttl = |r: &mut Reader<'_>| -> Res<u8> {
            let t = r.u8()?;
            r.skip(3)?;
            Ok(t)
        };
        Ok(match ty {
            ActionType::Output => {
                let port = PortNo(r.u32()?);
                let max_len = r.u16()?;
                r.skip(6)?;
                Action::Output { port, max_len }
            }
            ActionType::CopyTtlOut => Action::CopyTtlOut,
            ActionType::CopyTtlIn => Action::CopyTtlIn,
            ActionType::SetMplsTtl => Action::SetMplsTtl(ttl(r)?),
            ActionType::DecMplsTtl => Action::DecMplsTtl,
            ActionType::PushVlan => Action::PushVlan(ethertype(r, &[0x8100, 0x88a8])?),
            ActionType::PopVlan => Action::PopVlan,
            ActionType::PushMpls => Action::PushMpls(ethertype(r, &[0x8847, 0x8848])?),
            ActionType::PopMpls => Action::PopMpls(ethertype(r, &[])?),
            ActionType::SetQueue => Action::SetQueue(r.u32()?),
            ActionType::Group => Action::Group(r.u32()?),
            ActionType::SetNwTtl => Action::SetNwTtl(ttl(r)?),
            ActionType::DecNwTtl => Action::DecNwTtl,
            // Any ethertype: Open vSwitch has no PBB and refuses every
            // push_pbb with OFPBAC_BAD_TYPE, which the switch answers.
            ActionType::PushPbb => Action::PushPbb(ethertype(r, &[])?),
            ActionType::PopPbb => Action::PopPbb,
            ActionType::SetField
                if r.peek_u16(0)
                    .ok()
                    .zip(r.peek_u16(2).ok())
                    .and_then(|(hi, lo)| {
                        super::nx_tun6::names((u32::from(hi) << 16) | u32::from(lo))
                    })
                    .is_some() =>
            {
                // A whole IPv6 tunnel address (`set_field:fd00::2->tun_ipv6_dst`).
                let header = r.u32()?;
                let value = r.take(16).map_err(|_| bad(BadActionCode::BadSetLen))?;
                let act = match super::nx_tun6::decode_set(header, value) {
                    Some(Ok(a)) => a,
                    _ => return Err(bad(BadActionCode::BadSetArgument)),
                };
                if len != pad8(8 + 16) {
                    return Err(bad(BadActionCode::BadSetLen));
                }
                r.rest();
                Action::Nx(act)
            }
            ActionType::SetField if r.peek_u16(0).is_ok_and(is_register_class) => {
                if r.peek_u16(2).is_ok_and(|h| h & 0x100 != 0) && r.version() >= 0x06 {
                    return Ok(Action::Nx(NxAction::decode_masked_set(len, r)?));
                }
                let header = r.u32()?;
                let reg = Register::from_header(header)
                    .filter(|_| header & 0x100 == 0)
                    .ok_or(bad(BadActionCode::BadSetArgument))?;
                let n = usize::from(reg.bits() / 8);
                let value = r
                    .take(n)
                    .map_err(|_| bad(BadActionCode::BadSetLen))?
                    .iter()
                    .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                if len != pad8(8 + n) {
                    return Err(bad(BadActionCode::BadSetLen));
                }
                r.rest();
                Action::Nx(NxAction::SetReg { reg, value })
            }
            ActionType::SetField => {
                let field = OxmField::decode(r).map_err(|e| {
                    bad(match e {
                        OxmError::Len => BadActionCode::BadSetLen,
                        OxmError::Field => BadActionCode::BadSetType,
                        OxmError::Mask | OxmError::Value | OxmError::Wildcards => {
                            BadActionCode::BadSetArgument
                        }
                    })
                })?;
                if field.is_masked() {
                    return Err(bad(BadActionCode::BadSetArgument));
                }
                if len != pad8(4 + field.encoded_len()) {
                    return Err(bad(BadActionCode::BadSetLen));
                }
                r.rest();
                Action::SetField(field)
            }
            ActionType::Experimenter => Action::Nx(NxAction::decode_experimenter(len, r)?),
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        if let Action::Nx(a) = self {
            a.encode(w);
            return;
        }
        let start = w.pos();
        w.u16(self.action_type().to_wire());
        w.u16(0);
        let ethertype = |w: &mut Writer<'_>, t: u16| {
            w.u16(t);
            w.zeros(2);
        };
        let ttl = |w: &mut Writer<'_>, t: u8| {
            w.u8(t);
            w.zeros(3);
        };
        match *self {
            Action::Output { port, max_len } => {
                w.u32(port.0);
                w.u16(max_len);
                w.zeros(6);
            }
            Action::SetMplsTtl(t) | Action::SetNwTtl(t) => ttl(w, t),
            Action::PushVlan(t) | Action::PushMpls(t) | Action::PopMpls(t) | Action::PushPbb(t) => {
                ethertype(w, t)
            }
            Action::SetQueue(v) | Action::Group(v) => w.u32(v),
            Action::SetField(f) => f.encode(w),
            Action::CopyTtlOut
            | Action::CopyTtlIn
            | Action::DecMplsTtl
            | Action::PopVlan
            | Action::DecNwTtl
            | Action::PopPbb => w.zeros(4),
            Action::Nx(_) => {}
        }
        w.pad_to_8(start);
        w.patch_len(start + 2, start, "action");
    }
}

/// Whether an OXM class is that of a register (SET_FIELD of a register).
fn is_register_class(class: u16) -> bool {
    class == super::nicira::NXM_CLASS_NX || class == super::nicira::OXM_CLASS_PACKET_REGS
}

/// Reads a list of actions filling all of `r`.
pub(crate) fn decode_actions(r: &mut Reader<'_>) -> Res<Vec<Action>> {
    let mut actions = Vec::new();
    while !r.is_empty() {
        let short = bad(BadActionCode::BadLen);
        let ty = r.peek_u16(0).map_err(|_| short)?;
        let len = usize::from(r.peek_u16(2).map_err(|_| short)?);
        if len < 8 || !len.is_multiple_of(8) {
            return Err(short);
        }
        let mut body = r.sub(len, short).map_err(|_| short)?;
        body.skip(4)?;
        actions.push(Action::decode_body(ty, len, &mut body)?);
    }
    Ok(actions)
}

pub(crate) fn encode_actions(actions: &[Action], w: &mut Writer<'_>) {
    for a in actions {
        a.encode(w);
    }
}

/// An action id as listed in table features: its type, and the
/// experimenter id for experimenter actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionId {
    pub ty: u16,
    pub experimenter: Option<u32>,
}

impl ActionId {
    pub fn new(ty: ActionType) -> ActionId {
        ActionId {
            ty: ty.to_wire(),
            experimenter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;
    use crate::openflow::oxm::Masked;
    use crate::wire::MacAddr;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    fn enc(actions: &[Action]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        encode_actions(actions, &mut w);
        w.finish().unwrap();
        v
    }

    fn dec(b: &[u8]) -> Res<Vec<Action>> {
        decode_actions(&mut Reader::new(b, SHORT))
    }

    #[test]
    fn fixtures() {
        let out = enc(&[Action::output(PortNo(2))]);
        assert_eq!(out, [0, 0, 0, 16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        let ctl = enc(&[Action::output(PortNo::CONTROLLER)]);
        assert_eq!(&ctl[4..10], &[0xff, 0xff, 0xff, 0xfd, 0xff, 0xff]);
        let vlan = enc(&[Action::PushVlan(0x8100)]);
        assert_eq!(vlan, [0, 17, 0, 8, 0x81, 0, 0, 0]);
        // set_field eth_dst: 4 + 10 = 14, padded to 16.
        let sf = enc(&[Action::SetField(OxmField::EthDst(Masked::exact(MacAddr(
            [0, 1, 2, 3, 4, 5],
        ))))]);
        assert_eq!(sf, [0, 25, 0, 16, 0x80, 0, 6, 6, 0, 1, 2, 3, 4, 5, 0, 0]);
    }

    #[test]
    fn every_action_round_trips() {
        let all = vec![
            Action::Output {
                port: PortNo::CONTROLLER,
                max_len: 128,
            },
            Action::CopyTtlOut,
            Action::CopyTtlIn,
            Action::SetMplsTtl(9),
            Action::DecMplsTtl,
            Action::PushVlan(0x88a8),
            Action::PopVlan,
            Action::PushMpls(0x8847),
            Action::PopMpls(0x0800),
            Action::SetQueue(3),
            Action::Group(7),
            Action::SetNwTtl(1),
            Action::DecNwTtl,
            Action::SetField(OxmField::VlanVid(Masked::exact(0x1005))),
            Action::SetField(OxmField::Ipv6Src(Masked::exact(
                std::net::Ipv6Addr::LOCALHOST,
            ))),
            Action::PushPbb(0x88e7),
            Action::PopPbb,
        ];
        let b = enc(&all);
        assert_eq!(b.len(), all.iter().map(Action::encoded_len).sum::<usize>());
        assert_eq!(dec(&b).unwrap(), all);
        let covered: Vec<ActionType> = all.iter().map(Action::action_type).collect();
        for t in ActionType::ALL {
            assert!(*t == ActionType::Experimenter || covered.contains(t), "{t}");
        }
    }

    #[test]
    fn errors() {
        let e = |c| Err(ErrorCode::BadAction(c));
        assert_eq!(dec(&[0, 0, 0, 16, 0, 0, 0, 2]), e(BadActionCode::BadLen));
        assert_eq!(dec(&[0, 0, 0, 8, 0, 0, 0, 2]), e(BadActionCode::BadLen));
        assert_eq!(dec(&[0, 11, 0, 4]), e(BadActionCode::BadLen));
        assert_eq!(
            dec(&[0, 11, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]),
            e(BadActionCode::BadLen)
        );
        assert_eq!(dec(&[0, 11, 0]), e(BadActionCode::BadLen));
        assert_eq!(dec(&[0, 99, 0, 8, 0, 0, 0, 0]), e(BadActionCode::BadType));
        assert_eq!(
            dec(&[0xff, 0xff, 0, 8, 0, 0, 0x23, 0x21]),
            e(BadActionCode::BadExperimenter)
        );
        assert_eq!(
            dec(&[0, 17, 0, 8, 0x08, 0, 0, 0]),
            e(BadActionCode::BadArgument)
        );
        assert_eq!(
            dec(&[0, 19, 0, 8, 0x81, 0, 0, 0]),
            e(BadActionCode::BadArgument)
        );
        // set_field: masked, unknown field, bad length, wrong padding.
        assert_eq!(
            dec(&[0, 25, 0, 16, 0x80, 0, 0x17, 8, 10, 0, 0, 0, 255, 0, 0, 0]),
            e(BadActionCode::BadSetArgument)
        );
        assert_eq!(
            dec(&[0, 25, 0, 8, 0x80, 0, 0x60, 0]),
            e(BadActionCode::BadSetType)
        );
        assert_eq!(
            dec(&[0, 25, 0, 8, 0x80, 0, 0x1c, 2]),
            e(BadActionCode::BadSetLen)
        );
        let mut too_padded = vec![0, 25, 0, 24, 0x80, 0, 0x1c, 2, 0, 80];
        too_padded.resize(24, 0);
        assert_eq!(dec(&too_padded), e(BadActionCode::BadSetLen));
        too_padded[3] = 16;
        too_padded.truncate(16);
        assert_eq!(
            dec(&too_padded),
            Ok(vec![Action::SetField(OxmField::TcpDst(80))])
        );
        // The field's value runs past the action.
        assert_eq!(
            dec(&[0, 25, 0, 8, 0x80, 0, 0x0e, 1, 8, 0, 0, 0]),
            e(BadActionCode::BadSetLen)
        );
        // vlan_pcp=8 is out of range.
        assert_eq!(
            dec(&[0, 25, 0, 16, 0x80, 0, 0x0e, 1, 8, 0, 0, 0, 0, 0, 0, 0]),
            e(BadActionCode::BadSetArgument)
        );
    }
}
