//! OpenFlow 1.0 (wire version 0x01): translation of 1.0 messages to and
//! from the version-independent model of [`crate::openflow`], with no I/O.
//!
//! [`decode`] turns one whole 1.0 message into a [`Header`] and a model
//! [`Message`]; [`encode`] turns a model message into 1.0 bytes, and
//! [`encode_features_reply`] writes 1.0's features reply, which carries the
//! ports; [`split_reply`] cuts long statistics replies to 1.0's sizes.
//! The model is OpenFlow 1.3's, so the translation follows how Open
//! vSwitch maps 1.0 onto its 1.3-shaped internals: each submodule's doc says
//! what is translated how, and what 1.0 cannot say.
//!
//! Guarantees:
//! - Decoding is checked: every read is bounds-checked, every length
//!   validated, nothing panics on any input, and a decoded match is always a
//!   valid model [`Match`](super::Match) (fields lacking their prerequisites
//!   are dropped, as Open vSwitch normalises 1.0 matches). A message that
//!   cannot be decoded gives a [`DecodeError`] with version 1, whose
//!   [`reply`](DecodeError::reply) is the 1.0 `OFPT_ERROR` to send back
//!   (model error codes mapped to 1.0's by [`errors`]).
//! - Encoding never panics: a model message 1.0 cannot express (groups,
//!   meters, roles, async config, table mod, goto-table, TTL copies, a port
//!   number that does not fit 16 bits...) is an
//!   [`EncodeError::Unsupported`]. Two exceptions widen instead of
//!   failing, because they only describe a flow: match fields 1.0 has not
//!   are wildcarded (see [`match10`]), and actions without a 1.0 form are
//!   left out of flow statistics.
//!
//! Nicira's NXM forms ([`nx`]): a vendor `NXT_FLOW_MOD`, `NXT_FLOW_REMOVED`,
//! `NXT_PACKET_IN` or `NXT_PACKET_IN2` decodes as the model's flow mod, flow
//! removed or packet-in, and a vendor statistics `NXST_FLOW` or
//! `NXST_AGGREGATE` as its flow or aggregate multipart, whatever the
//! connection's state; which form a message is encoded in is the [`Ctx`]'s
//! flow and packet-in formats (a flow statistics reply takes its request's
//! form: the caller says which with the `Ctx` it encodes with, see
//! [`is_nx_flow_request`]). Their matches are [`crate::openflow::nxm`]'s, so
//! they say all the model's fields and registers.
//!
//! Message types: 1.0 numbers them 0..=21 (HELLO .. QUEUE_GET_CONFIG_REPLY);
//! `VENDOR` (4) is the model's `Experimenter`, its first u32 after the
//! vendor id the `exp_type` (Nicira's subtype), `STATS_REQUEST`/`REPLY`
//! (16, 17) are the model's multipart messages, see [`stats`]. A vendor
//! message must carry that u32 (`OFPBRC_BAD_LEN` otherwise); Nicira's all
//! do. HELLO's body, empty in 1.0, is read as later versions' elements and
//! never fails. A features reply decodes without its ports (the model's
//! has none); its 1.0-only capabilities and actions bitmap are dropped.
//!
//! Port numbers: 1.0's are 16 bits, its reserved ports 0xff00..=0xffff
//! (MAX, IN_PORT 0xfff8 ... LOCAL 0xfffe, NONE 0xffff) are the model's
//! 0xffffff00..=0xffffffff, 1.0's NONE being the model's `PortNo::ANY`
//! (a packet-out's in_port NONE is the model's CONTROLLER, as in 1.3).
//! Model ports 0xff00..0xffffff00 do not fit: `EncodeError`.

pub mod action10;
pub mod errors;
pub mod flow10;
pub mod match10;
pub mod nx;
pub mod nx_actions;
pub mod port10;
pub mod stats;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod prop;
#[cfg(test)]
mod tests;

pub use super::bytes::EncodeError;
use super::bytes::{Reader, Res, Writer};
use super::error::{BadRequestCode, DecodeError, ErrorCode};
use super::header::{HEADER_LEN, Header, MsgType};
use super::hello::Hello;
use super::message::{Experimenter, Message, SwitchFeatures, capabilities, empty, switch_config};
use super::port::{Port, PortNo};

pub(crate) use errors::encode_error_body;
pub use errors::error_to_v10;
pub use match10::is_exact_in_v10;
pub use stats::{is_nx_flow_request, split_reply, split_reply_with};

/// The wire version of OpenFlow 1.0.
pub const VERSION: u8 = 0x01;

/// Per-connection state the 1.0 decoder needs.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The peer enabled Nicira's `NXT_FLOW_MOD_TABLE_ID`: a flow mod's
    /// command carries its table id in the high byte.
    pub flow_mod_table_id: bool,
    /// `NXT_SET_FLOW_FORMAT`: with NXM, flow removals go out as
    /// `NXT_FLOW_REMOVED` (and this side's flow mods and flow statistics
    /// requests as NXM's). Flow statistics replies take their request's form.
    pub flow_format: nx::FlowFormat,
    /// `NXT_SET_PACKET_IN_FORMAT`.
    pub packet_in_format: nx::PacketInFormat,
}

/// `ofp_type` of OpenFlow 1.0.
pub mod msg_type {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const VENDOR: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const PORT_MOD: u8 = 15;
    pub const STATS_REQUEST: u8 = 16;
    pub const STATS_REPLY: u8 = 17;
    pub const BARRIER_REQUEST: u8 = 18;
    pub const BARRIER_REPLY: u8 = 19;
    pub const QUEUE_GET_CONFIG_REQUEST: u8 = 20;
    pub const QUEUE_GET_CONFIG_REPLY: u8 = 21;
}

/// Subtypes of Nicira's vendor messages (vendor [`errors::NX_VENDOR_ID`])
/// a 1.0 controller may send: the model's `Experimenter::exp_type`. Numbers
/// as `ovs-ofctl ofp-print` names them.
pub mod nx_subtype {
    pub const ROLE_REQUEST: u32 = 10;
    pub const ROLE_REPLY: u32 = 11;
    /// Body: u32 format, 0 = OpenFlow 1.0 matches, 2 = NXM.
    pub const SET_FLOW_FORMAT: u32 = 12;
    pub const FLOW_MOD: u32 = 13;
    pub const FLOW_REMOVED: u32 = 14;
    /// Body: u8 set (1) or clear (0), then 7 bytes of padding; see [`super::Ctx`].
    pub const FLOW_MOD_TABLE_ID: u32 = 15;
    pub const SET_PACKET_IN_FORMAT: u32 = 16;
    pub const PACKET_IN: u32 = 17;
    /// Body empty: the switch keeps flow ages (a no-op here, as in Open vSwitch).
    pub const FLOW_AGE: u32 = 18;
    pub const SET_ASYNC_CONFIG: u32 = 19;
    pub const SET_CONTROLLER_ID: u32 = 20;
    pub const PACKET_IN2: u32 = 30;
}

/// 1.0's `ofp_capabilities` bits that mean what the model's (1.3's) do:
/// FLOW_STATS, TABLE_STATS, PORT_STATS, IP_REASM, QUEUE_STATS.
const SHARED_CAPABILITIES: u32 = capabilities::FLOW_STATS
    | capabilities::TABLE_STATS
    | capabilities::PORT_STATS
    | capabilities::IP_REASM
    | capabilities::QUEUE_STATS;

/// 1.0's `OFPC_ARP_MATCH_IP`: the match's nw_src, nw_dst and nw_proto
/// match ARP's addresses and opcode, which [`match10`] does.
pub const OFPC_ARP_MATCH_IP: u32 = 1 << 7;

/// The model port of a 1.0 port number.
pub fn port_from_v10(p: u16) -> PortNo {
    if p >= 0xff00 {
        PortNo(0xffff_0000 | u32::from(p))
    } else {
        PortNo(u32::from(p))
    }
}

/// The 1.0 port number of a model port, if it has one.
pub fn port_to_v10(p: PortNo) -> Result<u16, EncodeError> {
    match p.0 {
        n if n >= PortNo::MAX.0 => Ok((n & 0xffff) as u16),
        n => u16::try_from(n)
            .ok()
            .filter(|&n| n < 0xff00)
            .ok_or(EncodeError::Unsupported {
                version: VERSION,
                what: "a port number above 0xfeff",
            }),
    }
}

fn inexpressible(what: &'static str) -> EncodeError {
    EncodeError::Unsupported {
        version: VERSION,
        what,
    }
}

/// Decodes one whole 1.0 message: `buf` must be exactly the bytes
/// [`frame_len`](super::frame_len) announced. HELLO is accepted in any
/// version (that is how versions are negotiated); every other message must
/// be version 1.
pub fn decode(buf: &[u8], ctx: &Ctx) -> Result<(Header, Message), DecodeError> {
    let short = ErrorCode::BadRequest(BadRequestCode::BadLen);
    let err = |code| DecodeError {
        version: VERSION,
        ..DecodeError::new(code, buf)
    };
    let header = Header::parse(buf).ok_or_else(|| err(short))?;
    if usize::from(header.length) != buf.len() {
        return Err(err(short));
    }
    if header.version != VERSION && header.msg_type != msg_type::HELLO {
        return Err(err(ErrorCode::BadRequest(BadRequestCode::BadVersion)));
    }
    let mut r = Reader::new(buf.get(HEADER_LEN..).unwrap_or_default(), short);
    let msg = decode_body(header.msg_type, &mut r, ctx).map_err(err)?;
    Ok((header, msg))
}

fn decode_body(ty: u8, r: &mut Reader<'_>, ctx: &Ctx) -> Res<Message> {
    use Message as M;
    use msg_type as T;
    Ok(match ty {
        // 1.0 hellos have no body, but later versions' do; never fails.
        T::HELLO => M::Hello(Hello::decode(r)?),
        T::ERROR => M::Error(errors::decode_error_body(r)?),
        T::ECHO_REQUEST => M::EchoRequest(r.rest().to_vec()),
        T::ECHO_REPLY => M::EchoReply(r.rest().to_vec()),
        T::VENDOR => {
            let experimenter = r.u32()?;
            let exp_type = r.u32()?;
            if experimenter == errors::NX_VENDOR_ID {
                match exp_type {
                    nx_subtype::FLOW_MOD => return Ok(M::FlowMod(nx::decode_flow_mod(r, ctx)?)),
                    nx_subtype::FLOW_REMOVED => {
                        return Ok(M::FlowRemoved(nx::decode_flow_removed(r)?));
                    }
                    nx_subtype::PACKET_IN => return Ok(M::PacketIn(nx::decode_packet_in(r)?)),
                    nx_subtype::PACKET_IN2 => return Ok(M::PacketIn(nx::decode_packet_in2(r)?)),
                    _ => {}
                }
            }
            M::Experimenter(Experimenter {
                experimenter,
                exp_type,
                data: r.rest().to_vec(),
            })
        }
        T::FEATURES_REQUEST => return empty(r, M::FeaturesRequest),
        T::FEATURES_REPLY => {
            let datapath_id = r.u64()?;
            let n_buffers = r.u32()?;
            let n_tables = r.u8()?;
            r.skip(3)?;
            let capabilities = r.u32()? & SHARED_CAPABILITIES;
            r.skip(4)?;
            // The ports: checked, but the model's features have no room.
            if !r.remaining().is_multiple_of(port10::PHY_PORT_LEN) {
                return Err(r.short());
            }
            while !r.is_empty() {
                port10::decode_phy_port(r)?;
            }
            M::FeaturesReply(SwitchFeatures {
                datapath_id,
                n_buffers,
                n_tables,
                auxiliary_id: 0,
                capabilities,
                reserved: 0,
            })
        }
        T::GET_CONFIG_REQUEST => return empty(r, M::GetConfigRequest),
        T::GET_CONFIG_REPLY => M::GetConfigReply(switch_config(r)?),
        T::SET_CONFIG => M::SetConfig(switch_config(r)?),
        T::PACKET_IN => M::PacketIn(flow10::decode_packet_in(r)?),
        T::FLOW_REMOVED => M::FlowRemoved(flow10::decode_flow_removed(r)?),
        T::PORT_STATUS => M::PortStatus(port10::decode_port_status(r)?),
        T::PACKET_OUT => M::PacketOut(flow10::decode_packet_out(r)?),
        T::FLOW_MOD => M::FlowMod(flow10::decode_flow_mod(r, ctx)?),
        T::PORT_MOD => M::PortMod(port10::decode_port_mod(r)?),
        T::STATS_REQUEST => M::MultipartRequest(stats::decode_request(r)?),
        T::STATS_REPLY => M::MultipartReply(stats::decode_reply(r)?),
        T::BARRIER_REQUEST => return empty(r, M::BarrierRequest),
        T::BARRIER_REPLY => return empty(r, M::BarrierReply),
        T::QUEUE_GET_CONFIG_REQUEST => {
            let port = port_from_v10(r.u16()?);
            r.skip(2)?;
            return empty(r, M::QueueGetConfigRequest(port));
        }
        T::QUEUE_GET_CONFIG_REPLY => M::QueueGetConfigReply(port10::decode_queue_reply(r)?),
        _ => return Err(ErrorCode::BadRequest(BadRequestCode::BadType)),
    })
}

/// The 1.0 message type of a model message, if 1.0 has it.
pub fn msg_type_of(m: &Message) -> Option<u8> {
    use Message as M;
    use msg_type as T;
    Some(match m {
        M::Hello(_) => T::HELLO,
        M::Error(_) => T::ERROR,
        M::EchoRequest(_) => T::ECHO_REQUEST,
        M::EchoReply(_) => T::ECHO_REPLY,
        M::Experimenter(_) => T::VENDOR,
        M::FeaturesRequest => T::FEATURES_REQUEST,
        M::FeaturesReply(_) => T::FEATURES_REPLY,
        M::GetConfigRequest => T::GET_CONFIG_REQUEST,
        M::GetConfigReply(_) => T::GET_CONFIG_REPLY,
        M::SetConfig(_) => T::SET_CONFIG,
        M::PacketIn(_) => T::PACKET_IN,
        M::FlowRemoved(_) => T::FLOW_REMOVED,
        M::PortStatus(_) => T::PORT_STATUS,
        M::PacketOut(_) => T::PACKET_OUT,
        M::FlowMod(_) => T::FLOW_MOD,
        M::PortMod(_) => T::PORT_MOD,
        M::MultipartRequest(_) => T::STATS_REQUEST,
        M::MultipartReply(_) => T::STATS_REPLY,
        M::BarrierRequest => T::BARRIER_REQUEST,
        M::BarrierReply => T::BARRIER_REPLY,
        M::QueueGetConfigRequest(_) => T::QUEUE_GET_CONFIG_REQUEST,
        M::QueueGetConfigReply(_) => T::QUEUE_GET_CONFIG_REPLY,
        M::GroupMod(_)
        | M::TableMod(_)
        | M::RoleRequest(_)
        | M::RoleReply(_)
        | M::GetAsyncRequest
        | M::GetAsyncReply(_)
        | M::SetAsync(_)
        | M::SetAsyncProps(_)
        | M::BundleControl(_)
        | M::BundleAdd(_)
        | M::RoleStatus(_)
        | M::MeterMod(_) => return None,
    })
}

/// Encodes a model message as 1.0 bytes with this xid (version 1). A flow
/// mod's table id is not said (see [`encode_with`]).
pub fn encode(msg: &Message, xid: u32) -> Result<Vec<u8>, EncodeError> {
    encode_with(msg, xid, &Ctx::default())
}

/// [`encode`] for a peer with this connection state: with
/// `flow_mod_table_id`, a flow mod's table id goes in its command's high byte.
pub fn encode_with(msg: &Message, xid: u32, ctx: &Ctx) -> Result<Vec<u8>, EncodeError> {
    let nx = nx_subtype_of(msg, ctx);
    let ty = nx
        .map(|_| msg_type::VENDOR)
        .or_else(|| msg_type_of(msg))
        .ok_or_else(|| match msg.msg_type() {
            MsgType::GroupMod => inexpressible("groups"),
            MsgType::MeterMod => inexpressible("meters"),
            MsgType::TableMod => inexpressible("table mods"),
            MsgType::RoleRequest | MsgType::RoleReply => inexpressible("controller roles"),
            _ => inexpressible("asynchronous message configuration"),
        })?;
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    Header {
        version: VERSION,
        msg_type: ty,
        length: 0,
        xid,
    }
    .write(&mut w);
    match nx {
        Some(subtype) => {
            w.u32(errors::NX_VENDOR_ID);
            w.u32(subtype);
            match msg {
                Message::FlowMod(f) => nx::encode_flow_mod(f, ctx.flow_mod_table_id, &mut w)?,
                Message::FlowRemoved(f) => nx::encode_flow_removed(f, &mut w)?,
                Message::PacketIn(p) if subtype == nx_subtype::PACKET_IN => {
                    nx::encode_packet_in(p, &mut w)?
                }
                Message::PacketIn(p) => nx::encode_packet_in2(p, &mut w)?,
                _ => return Err(inexpressible("this Nicira message")),
            }
        }
        None => encode_body(msg, ctx, &mut w)?,
    }
    w.patch_len(2, 0, "message");
    w.finish()?;
    Ok(out)
}

/// The Nicira message a model message goes out as on a connection with
/// these formats, if not its 1.0 one.
fn nx_subtype_of(msg: &Message, ctx: &Ctx) -> Option<u32> {
    use nx::{FlowFormat, PacketInFormat};
    match (msg, ctx.flow_format, ctx.packet_in_format) {
        (Message::FlowMod(_), FlowFormat::Nxm, _) => Some(nx_subtype::FLOW_MOD),
        (Message::FlowRemoved(_), FlowFormat::Nxm, _) => Some(nx_subtype::FLOW_REMOVED),
        (Message::PacketIn(_), _, PacketInFormat::Nxt) => Some(nx_subtype::PACKET_IN),
        (Message::PacketIn(_), _, PacketInFormat::Nxt2) => Some(nx_subtype::PACKET_IN2),
        _ => None,
    }
}

fn encode_body(msg: &Message, ctx: &Ctx, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    use Message as M;
    match msg {
        M::Hello(h) => h.encode(w),
        M::Error(e) => encode_error_body(e, w),
        M::EchoRequest(d) | M::EchoReply(d) => w.bytes(d),
        M::Experimenter(e) => {
            w.u32(e.experimenter);
            w.u32(e.exp_type);
            w.bytes(&e.data);
        }
        M::FeaturesRequest | M::GetConfigRequest | M::BarrierRequest | M::BarrierReply => {}
        M::FeaturesReply(f) => features_body(f, &[], w)?,
        M::GetConfigReply(c) | M::SetConfig(c) => {
            w.u16(c.flags);
            w.u16(c.miss_send_len);
        }
        M::PacketIn(p) => flow10::encode_packet_in(p, w)?,
        M::FlowRemoved(f) => flow10::encode_flow_removed(f, w)?,
        M::PortStatus(p) => port10::encode_port_status(p, w)?,
        M::PacketOut(p) => flow10::encode_packet_out(p, w)?,
        M::FlowMod(f) => flow10::encode_flow_mod(f, ctx.flow_mod_table_id, w)?,
        M::PortMod(p) => port10::encode_port_mod(p, w)?,
        M::MultipartRequest(m) => stats::encode_request(m, ctx, w)?,
        M::MultipartReply(m) => stats::encode_reply(m, ctx, w)?,
        M::QueueGetConfigRequest(p) => {
            w.u16(port_to_v10(*p)?);
            w.zeros(2);
        }
        M::QueueGetConfigReply(q) => port10::encode_queue_reply(q, w)?,
        // msg_type_of refused these already.
        M::GroupMod(_)
        | M::TableMod(_)
        | M::RoleRequest(_)
        | M::RoleReply(_)
        | M::GetAsyncRequest
        | M::GetAsyncReply(_)
        | M::SetAsync(_)
        | M::SetAsyncProps(_)
        | M::BundleControl(_)
        | M::BundleAdd(_)
        | M::RoleStatus(_)
        | M::MeterMod(_) => return Err(inexpressible("this message")),
    }
    Ok(())
}

fn features_body(
    f: &SwitchFeatures,
    ports: &[Port],
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    w.u64(f.datapath_id);
    w.u32(f.n_buffers);
    w.u8(f.n_tables);
    w.zeros(3);
    w.u32((f.capabilities & SHARED_CAPABILITIES) | OFPC_ARP_MATCH_IP);
    w.u32(action10::SUPPORTED_ACTIONS);
    for p in ports {
        port10::encode_phy_port(p, w)?;
    }
    Ok(())
}

/// 1.0's `OFPT_FEATURES_REPLY`, which lists the switch's ports (a model
/// features reply has none). The capabilities are the model's that 1.0 has,
/// plus `OFPC_ARP_MATCH_IP`; the actions bitmap has every 1.0 action but
/// VENDOR. Ports whose numbers do not fit 16 bits are left out (1.0 cannot
/// name them), as are ports past what one message holds (about 1360).
pub fn encode_features_reply(f: &SwitchFeatures, ports: &[Port], xid: u32) -> Vec<u8> {
    const MAX_PORTS: usize = (u16::MAX as usize - HEADER_LEN - 24) / port10::PHY_PORT_LEN;
    let ports: Vec<Port> = ports
        .iter()
        .filter(|p| port_to_v10(p.port_no).is_ok())
        .take(MAX_PORTS)
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    Header {
        version: VERSION,
        msg_type: msg_type::FEATURES_REPLY,
        length: 0,
        xid,
    }
    .write(&mut w);
    // Every port fits and the count is bounded: this cannot fail.
    let _ = features_body(f, &ports, &mut w);
    w.patch_len(2, 0, "features reply");
    out
}
