//! OpenFlow 1.0 actions to and from the model's [`Action`]s.
//!
//! | 1.0 | model |
//! |---|---|
//! | `OUTPUT` port, max_len | `Output` |
//! | `SET_VLAN_VID` / `SET_VLAN_PCP` | `SetField(vlan_vid / vlan_pcp)`, after `PushVlan(0x8100)` when no tag is known to be there |
//! | `STRIP_VLAN` | `PopVlan` |
//! | `SET_DL_SRC` / `SET_DL_DST` | `SetField(eth_src / eth_dst)` |
//! | `SET_NW_SRC` / `SET_NW_DST` | `SetField(ipv4_src / ipv4_dst)` |
//! | `SET_NW_TOS` | `SetField(ip_dscp)` (ECN bits set: `OFPBAC_BAD_ARGUMENT`) |
//! | `SET_TP_SRC` / `SET_TP_DST` | `SetField(tcp_*, udp_* or sctp_*)` by the flow's nw_proto; TCP when it is not known |
//! | `ENQUEUE` port, queue | `SetQueue(queue)`, `Output(port)` |
//! | `VENDOR` of Nicira | `Nx` ([`crate::openflow::nicira`], same layout; `SetReg` goes out as `reg_load`); other vendors refused, `OFPBAC_BAD_VENDOR` |
//! | `VENDOR` of Nicira: dec_ttl, MPLS push/pop/TTL/label/TC | `DecNwTtl`, `PushMpls`, `PopMpls`, `SetMplsTtl`, `DecMplsTtl`, `SetField(mpls_label / mpls_tc)` ([`super::nx_actions`]) |
//!
//! 1.0's VLAN actions push a tag when there is none (as Open vSwitch, which
//! translates them to 1.3 the same way); whether one is there is known from
//! the flow's match (a VLAN id matched as present) and from the earlier
//! actions of the list. Encoding folds those pairs back, and a `SetQueue`
//! right before an `Output` into `ENQUEUE` (so in 1.0 a queue applies to
//! that one output only). Other model actions (TTL copies, setting the IP
//! TTL, groups, other set-fields, a lone `PushVlan` or `SetQueue`) have no
//! 1.0 form.

use std::net::Ipv4Addr;

use crate::openflow::action::Action;
use crate::openflow::bytes::{Reader, Res, Writer};
use crate::openflow::error::{BadActionCode, ErrorCode};
use crate::openflow::flow_match::Match;
use crate::openflow::nicira::{FieldRef, NxAction};
use crate::openflow::oxm::{Masked, OFPVID_PRESENT, OxmField};
use crate::openflow::port::PortNo;
use crate::wire::MacAddr;

use super::{EncodeError, VERSION, port_from_v10, port_to_v10};

/// `ofp_action_type` of OpenFlow 1.0.
pub mod action_type {
    pub const OUTPUT: u16 = 0;
    pub const SET_VLAN_VID: u16 = 1;
    pub const SET_VLAN_PCP: u16 = 2;
    pub const STRIP_VLAN: u16 = 3;
    pub const SET_DL_SRC: u16 = 4;
    pub const SET_DL_DST: u16 = 5;
    pub const SET_NW_SRC: u16 = 6;
    pub const SET_NW_DST: u16 = 7;
    pub const SET_NW_TOS: u16 = 8;
    pub const SET_TP_SRC: u16 = 9;
    pub const SET_TP_DST: u16 = 10;
    pub const ENQUEUE: u16 = 11;
    pub const VENDOR: u16 = 0xffff;
}

/// The `actions` bitmap of the features reply: every action type above
/// but VENDOR.
pub const SUPPORTED_ACTIONS: u32 = (1 << 12) - 1;

/// What the decoder knows of the packet the actions apply to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Context {
    /// The flow's match guarantees a VLAN tag.
    vlan: bool,
    /// The flow's exact IP protocol, if any.
    nw_proto: Option<u8>,
}

impl Context {
    /// What a flow's match says (a packet-out has the empty match).
    pub fn of(m: &Match) -> Context {
        let vlan = matches!(
            m.get(crate::openflow::oxm::OxmFieldType::VlanVid),
            Some(OxmField::VlanVid(v)) if v.value & v.mask.unwrap_or(u16::MAX) & OFPVID_PRESENT != 0
        );
        Context {
            vlan,
            nw_proto: m.ip_proto(),
        }
    }
}

const fn bad(c: BadActionCode) -> ErrorCode {
    ErrorCode::BadAction(c)
}

/// Whether a port may be an output (physical ports and the reserved ports
/// a packet can go to; not `OFPP_NONE` nor the numbers between MAX and
/// IN_PORT).
fn valid_output(p: u16) -> bool {
    p < 0xff00 || (0xfff8..=0xfffe).contains(&p)
}

/// Reads a 1.0 action list filling all of `r`.
pub(crate) fn decode_actions(r: &mut Reader<'_>, ctx: Context) -> Res<Vec<Action>> {
    use OxmField as F;
    use action_type as T;
    let mut out = Vec::new();
    let mut vlan = ctx.vlan;
    let short = bad(BadActionCode::BadLen);
    while !r.is_empty() {
        let ty = r.peek_u16(0).map_err(|_| short)?;
        let len = usize::from(r.peek_u16(2).map_err(|_| short)?);
        if len < 8 || !len.is_multiple_of(8) {
            return Err(short);
        }
        let mut a = r.sub(len, short).map_err(|_| short)?;
        a.skip(4)?;
        let want = match ty {
            T::SET_DL_SRC | T::SET_DL_DST | T::ENQUEUE => Some(16),
            T::VENDOR => None,
            0..=T::ENQUEUE => Some(8),
            _ => return Err(bad(BadActionCode::BadType)),
        };
        if want.is_some_and(|n| n != len) {
            return Err(short);
        }
        let push = |out: &mut Vec<Action>, vlan: &mut bool| {
            if !*vlan {
                out.push(Action::PushVlan(0x8100));
                *vlan = true;
            }
        };
        match ty {
            T::OUTPUT => {
                let port = a.u16()?;
                let max_len = a.u16()?;
                if !valid_output(port) {
                    return Err(bad(BadActionCode::BadOutPort));
                }
                out.push(Action::Output {
                    port: port_from_v10(port),
                    max_len,
                });
            }
            T::SET_VLAN_VID => {
                let vid = a.u16()?;
                if vid > 0x0fff {
                    return Err(bad(BadActionCode::BadArgument));
                }
                push(&mut out, &mut vlan);
                out.push(Action::SetField(F::VlanVid(Masked::exact(
                    OFPVID_PRESENT | vid,
                ))));
            }
            T::SET_VLAN_PCP => {
                let pcp = a.u8()?;
                if pcp > 7 {
                    return Err(bad(BadActionCode::BadArgument));
                }
                push(&mut out, &mut vlan);
                out.push(Action::SetField(F::VlanPcp(pcp)));
            }
            T::STRIP_VLAN => {
                vlan = false;
                out.push(Action::PopVlan);
            }
            T::SET_DL_SRC | T::SET_DL_DST => {
                let mac = Masked::exact(MacAddr(a.array()?));
                out.push(Action::SetField(if ty == T::SET_DL_SRC {
                    F::EthSrc(mac)
                } else {
                    F::EthDst(mac)
                }));
            }
            T::SET_NW_SRC | T::SET_NW_DST => {
                let ip = Masked::exact(Ipv4Addr::from(a.u32()?));
                out.push(Action::SetField(if ty == T::SET_NW_SRC {
                    F::Ipv4Src(ip)
                } else {
                    F::Ipv4Dst(ip)
                }));
            }
            T::SET_NW_TOS => {
                let tos = a.u8()?;
                if tos & 3 != 0 {
                    return Err(bad(BadActionCode::BadArgument));
                }
                out.push(Action::SetField(F::IpDscp(tos >> 2)));
            }
            T::SET_TP_SRC | T::SET_TP_DST => {
                let p = a.u16()?;
                let src = ty == T::SET_TP_SRC;
                out.push(Action::SetField(match (ctx.nw_proto, src) {
                    (Some(17), true) => F::UdpSrc(p),
                    (Some(17), false) => F::UdpDst(p),
                    (Some(132), true) => F::SctpSrc(p),
                    (Some(132), false) => F::SctpDst(p),
                    (_, true) => F::TcpSrc(p),
                    (_, false) => F::TcpDst(p),
                }));
            }
            T::ENQUEUE => {
                let port = a.u16()?;
                a.skip(6)?;
                let queue = a.u32()?;
                // Queues belong to physical ports, the input port and LOCAL.
                if port >= 0xff00 && port != 0xfff8 && port != 0xfffe {
                    return Err(bad(BadActionCode::BadOutPort));
                }
                out.push(Action::SetQueue(queue));
                out.push(Action::Output {
                    port: port_from_v10(port),
                    max_len: 0,
                });
            }
            // Standard actions of later versions, as Nicira's.
            T::VENDOR if super::nx_actions::is_ours(&a) => {
                out.push(super::nx_actions::decode(len, &mut a)?)
            }
            // Nicira's vendor actions have the same layout in every version.
            T::VENDOR => out.push(Action::Nx(NxAction::decode_experimenter(len, &mut a)?)),
            _ => return Err(bad(BadActionCode::BadExperimenter)),
        }
    }
    Ok(out)
}

fn inexpressible(what: &'static str) -> EncodeError {
    EncodeError::Unsupported {
        version: VERSION,
        what,
    }
}

/// The one 1.0 action for `a` (with `next`, the action after it, when the
/// pair makes one 1.0 action), and how many model actions it used.
fn encode_one(a: &Action, next: Option<&Action>, w: &mut Writer<'_>) -> Result<usize, EncodeError> {
    use OxmField as F;
    use action_type as T;
    let head = |w: &mut Writer<'_>, ty: u16, len: u16| {
        w.u16(ty);
        w.u16(len);
    };
    let u16_pad = |w: &mut Writer<'_>, ty: u16, v: u16| {
        head(w, ty, 8);
        w.u16(v);
        w.zeros(2);
    };
    let u8_pad = |w: &mut Writer<'_>, ty: u16, v: u8| {
        head(w, ty, 8);
        w.u8(v);
        w.zeros(3);
    };
    match (a, next) {
        (Action::PushVlan(0x8100), Some(Action::SetField(f @ (F::VlanVid(_) | F::VlanPcp(_))))) => {
            encode_one(&Action::SetField(*f), None, w)?;
            return Ok(2);
        }
        (Action::SetQueue(q), Some(Action::Output { port, .. })) => {
            let port = port_to_v10(*port)?;
            head(w, T::ENQUEUE, 16);
            w.u16(port);
            w.zeros(6);
            w.u32(*q);
            return Ok(2);
        }
        _ => {}
    }
    if super::nx_actions::encode(a, w) {
        return Ok(1);
    }
    match *a {
        Action::Output { port, max_len } => {
            let port = port_to_v10(port)?;
            head(w, T::OUTPUT, 8);
            w.u16(port);
            w.u16(max_len);
        }
        Action::PopVlan => {
            head(w, T::STRIP_VLAN, 8);
            w.zeros(4);
        }
        Action::SetField(f) => match f {
            F::VlanVid(Masked { value, mask: None }) if value & OFPVID_PRESENT != 0 => {
                u16_pad(w, T::SET_VLAN_VID, value & 0x0fff)
            }
            F::VlanPcp(p) => u8_pad(w, T::SET_VLAN_PCP, p),
            F::EthSrc(Masked { value, mask: None }) | F::EthDst(Masked { value, mask: None }) => {
                let ty = if matches!(f, F::EthSrc(_)) {
                    T::SET_DL_SRC
                } else {
                    T::SET_DL_DST
                };
                head(w, ty, 16);
                w.bytes(&value.0);
                w.zeros(6);
            }
            F::Ipv4Src(Masked { value, mask: None }) | F::Ipv4Dst(Masked { value, mask: None }) => {
                let ty = if matches!(f, F::Ipv4Src(_)) {
                    T::SET_NW_SRC
                } else {
                    T::SET_NW_DST
                };
                head(w, ty, 8);
                w.u32(u32::from(value));
            }
            F::IpDscp(d) => u8_pad(w, T::SET_NW_TOS, d << 2),
            F::TcpSrc(p) | F::UdpSrc(p) | F::SctpSrc(p) => u16_pad(w, T::SET_TP_SRC, p),
            F::TcpDst(p) | F::UdpDst(p) | F::SctpDst(p) => u16_pad(w, T::SET_TP_DST, p),
            _ => return Err(inexpressible("this set-field action")),
        },
        // 1.0 has no SET_FIELD: a register is set with reg_load.
        Action::Nx(NxAction::SetReg { reg, value }) => NxAction::RegLoad {
            dst: FieldRef::reg(reg),
            ofs: 0,
            n_bits: reg.bits(),
            value,
        }
        .encode(w),
        // ... and an IPv6 tunnel address with two (as Open vSwitch sends
        // it in 1.0).
        Action::Nx(NxAction::SetTunIpv6 { dst, addr }) => {
            let v = addr.to_bits();
            for (ofs, part) in [(0, v as u64), (64, (v >> 64) as u64)] {
                NxAction::RegLoad {
                    dst: FieldRef(crate::openflow::nx_tun6::header(dst, false)),
                    ofs,
                    n_bits: 64,
                    value: part,
                }
                .encode(w);
            }
        }
        Action::Nx(ref x) => x.encode(w),
        _ => return Err(inexpressible("this action")),
    }
    Ok(1)
}

/// Writes a model action list as 1.0 actions. With `lenient`, actions
/// without a 1.0 form are left out (flow statistics describe a flow as well
/// as 1.0 can); otherwise they are an error.
pub(crate) fn encode_actions(
    actions: &[Action],
    lenient: bool,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    let mut i = 0;
    while let Some(a) = actions.get(i) {
        let mut scratch = Vec::new();
        let used = {
            let mut sw = Writer::new(&mut scratch);
            encode_one(a, actions.get(i + 1), &mut sw)
        };
        match used {
            Ok(n) => {
                w.bytes(&scratch);
                i += n;
            }
            Err(_) if lenient => i += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The 1.0 in_port of a packet-out: 1.0 says "none" with `OFPP_NONE`,
/// which the model (as 1.3) says with `CONTROLLER`.
pub(crate) fn packet_out_in_port(p: u16) -> PortNo {
    match port_from_v10(p) {
        PortNo::ANY => PortNo::CONTROLLER,
        p => p,
    }
}
