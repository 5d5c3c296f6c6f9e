//! The [`Message`] enum, the small messages (features, config, role, async,
//! queue config, experimenter), and the dispatch of [`decode`] and
//! [`Message::encode`].

use super::bundle::{
    BundleAdd, BundleCtrl, ONFT_BUNDLE_ADD_MESSAGE, ONFT_BUNDLE_CONTROL, RoleStatus,
};
use super::bytes::{EncodeError, Reader, Res, Writer};
use super::error::{BadRequestCode, DecodeError, ErrorCode, ErrorMsg, RoleRequestFailedCode};
use super::flow::{FlowMod, FlowRemoved, PacketIn, PacketOut};
use super::group::GroupMod;
use super::header::{HEADER_LEN, Header, MsgType, OFP_VERSION, version};
use super::hello::Hello;
use super::meter::MeterMod;
use super::multipart::{MultipartReply, MultipartRequest};
use super::port::{PortMod, PortNo, PortStatus};
use super::table::TableMod;

/// One OpenFlow message, in the shape of OpenFlow 1.3's (the model every
/// version is decoded into and encoded from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    Experimenter(Experimenter),
    FeaturesRequest,
    FeaturesReply(SwitchFeatures),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    PortMod(PortMod),
    TableMod(TableMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    /// The port whose queues are asked for (or [`PortNo::ANY`]).
    QueueGetConfigRequest(PortNo),
    QueueGetConfigReply(QueueGetConfigReply),
    RoleRequest(RoleMsg),
    RoleReply(RoleMsg),
    GetAsyncRequest,
    GetAsyncReply(AsyncConfig),
    SetAsync(AsyncConfig),
    /// SET_ASYNC of 1.4 on: only the masks it names change.
    SetAsyncProps(AsyncProps),
    MeterMod(MeterMod),
    /// 1.4 on (and the ONF extension in 1.3).
    BundleControl(BundleCtrl),
    BundleAdd(BundleAdd),
    /// 1.4 on.
    RoleStatus(RoleStatus),
}

/// `OFPT_EXPERIMENTER`: an extension message (this switch knows none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experimenter {
    pub experimenter: u32,
    pub exp_type: u32,
    pub data: Vec<u8>,
}

/// `ofp_capabilities` bits of the features reply.
pub mod capabilities {
    pub const FLOW_STATS: u32 = 1 << 0;
    pub const TABLE_STATS: u32 = 1 << 1;
    pub const PORT_STATS: u32 = 1 << 2;
    pub const GROUP_STATS: u32 = 1 << 3;
    pub const IP_REASM: u32 = 1 << 5;
    pub const QUEUE_STATS: u32 = 1 << 6;
    pub const PORT_BLOCKED: u32 = 1 << 8;
}

/// `OFPT_FEATURES_REPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchFeatures {
    pub datapath_id: u64,
    /// Packets the switch can buffer for the controller.
    pub n_buffers: u32,
    pub n_tables: u8,
    /// 0 on the main connection.
    pub auxiliary_id: u8,
    /// [`capabilities`] bits.
    pub capabilities: u32,
    pub reserved: u32,
}

/// `ofp_config_flags` values (IP fragment handling).
pub mod config_flags {
    pub const FRAG_NORMAL: u16 = 0;
    pub const FRAG_DROP: u16 = 1;
    pub const FRAG_REASM: u16 = 2;
    pub const FRAG_MASK: u16 = 3;
}

/// `OFPCML_*`-style default of `miss_send_len` (`OFP_DEFAULT_MISS_SEND_LEN`).
pub const DEFAULT_MISS_SEND_LEN: u16 = 128;

/// `ofp_switch_config`: GET_CONFIG_REPLY and SET_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// [`config_flags`] value.
    pub flags: u16,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            flags: config_flags::FRAG_NORMAL,
            miss_send_len: DEFAULT_MISS_SEND_LEN,
        }
    }
}

wire_enum! {
    /// `ofp_controller_role`.
    pub enum ControllerRole: u32 {
        NoChange = 0 => "OFPCR_ROLE_NOCHANGE",
        Equal = 1 => "OFPCR_ROLE_EQUAL",
        Master = 2 => "OFPCR_ROLE_MASTER",
        Slave = 3 => "OFPCR_ROLE_SLAVE",
    }
}

/// ROLE_REQUEST and ROLE_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleMsg {
    pub role: ControllerRole,
    pub generation_id: u64,
}

/// GET_ASYNC_REPLY and SET_ASYNC: which asynchronous messages a controller
/// gets, index 0 in the master or equal role, 1 as a slave. Each mask has
/// bit `1 << reason` for the reasons wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncConfig {
    pub packet_in_mask: [u32; 2],
    pub port_status_mask: [u32; 2],
    pub flow_removed_mask: [u32; 2],
}

/// One queue of a QUEUE_GET_CONFIG reply (`ofp_packet_queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketQueue {
    pub queue_id: u32,
    pub port: PortNo,
    pub properties: Vec<QueueProp>,
}

/// A queue property, kept raw: `property` (`OFPQT_MIN_RATE` = 1,
/// `OFPQT_MAX_RATE` = 2, `OFPQT_EXPERIMENTER` = 0xffff) and the bytes after
/// its 8-byte header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProp {
    pub property: u16,
    pub data: Vec<u8>,
}

impl QueueProp {
    /// The properties filling the rest of `r` (each an 8-byte header,
    /// type and length, then its data), as 1.0 and 1.3 lay them out.
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<QueueProp>> {
        let short = r.short();
        let mut properties = Vec::new();
        while !r.is_empty() {
            let property = r.u16()?;
            let plen = usize::from(r.u16()?);
            if plen < 8 {
                return Err(short);
            }
            r.skip(4)?;
            properties.push(QueueProp {
                property,
                data: r.take(plen - 8)?.to_vec(),
            });
        }
        Ok(properties)
    }

    pub(crate) fn encode_list(props: &[QueueProp], w: &mut Writer<'_>) {
        for p in props {
            let pstart = w.pos();
            w.u16(p.property);
            w.u16(0);
            w.zeros(4);
            w.bytes(&p.data);
            w.patch_len(pstart + 2, pstart, "queue property");
        }
    }
}

/// `OFPT_QUEUE_GET_CONFIG_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGetConfigReply {
    pub port: PortNo,
    pub queues: Vec<PacketQueue>,
}

impl QueueGetConfigReply {
    fn decode(r: &mut Reader<'_>) -> Res<QueueGetConfigReply> {
        let short = r.short();
        let port = PortNo(r.u32()?);
        r.skip(4)?;
        let mut queues = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(8)?);
            if len < 16 {
                return Err(short);
            }
            let mut q = r.sub(len, short)?;
            let queue_id = q.u32()?;
            let qport = PortNo(q.u32()?);
            q.skip(8)?;
            queues.push(PacketQueue {
                queue_id,
                port: qport,
                properties: QueueProp::decode_list(&mut q)?,
            });
        }
        Ok(QueueGetConfigReply { port, queues })
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.port.0);
        w.zeros(4);
        for q in &self.queues {
            let start = w.pos();
            w.u32(q.queue_id);
            w.u32(q.port.0);
            w.u16(0);
            w.zeros(6);
            QueueProp::encode_list(&q.properties, w);
            w.patch_len(start + 8, start, "queue");
        }
    }
}

/// Decodes one whole message of OpenFlow 1.3, 1.4 or 1.5: `buf` must be
/// exactly the bytes [`frame_len`](super::frame_len) announced. Any version
/// is accepted for HELLO (that is how versions are negotiated); other
/// messages of another version are `OFPBRC_BAD_VERSION`. Structures whose
/// layout changed between 1.3 and 1.5 are read in the message's version.
pub fn decode(buf: &[u8]) -> Result<(Header, Message), DecodeError> {
    let short = ErrorCode::BadRequest(BadRequestCode::BadLen);
    let err = |code| DecodeError::new(code, buf);
    let header = Header::parse(buf).ok_or_else(|| err(short))?;
    if usize::from(header.length) != buf.len() {
        return Err(err(short));
    }
    let v = header.version;
    let ty = MsgType::from_wire(header.msg_type);
    if !(version::OF13..=version::OF15).contains(&v) && ty != Some(MsgType::Hello) {
        return Err(err(ErrorCode::BadRequest(BadRequestCode::BadVersion)));
    }
    let ty = ty
        .filter(|t| *t == MsgType::Hello || t.exists_in(v))
        .ok_or_else(|| err(ErrorCode::BadRequest(BadRequestCode::BadType)))?;
    let mut r = Reader::new(buf.get(HEADER_LEN..).unwrap_or_default(), short).with_version(v);
    let msg = Message::decode_body(ty, &mut r).map_err(err)?;
    Ok((header, msg))
}

/// A message whose body must be empty.
pub(crate) fn empty(r: &mut Reader<'_>, m: Message) -> Res<Message> {
    r.finish()?;
    Ok(m)
}

/// The asynchronous-message masks of 1.4 on, as properties
/// (`OFPACPT_*`: type `2k` is message kind `k` as a slave, `2k + 1` as
/// master or equal; 0-1 packet-in, 2-3 port status, 4-5 flow removed).
/// Kinds this switch does not send (role status, table status, request
/// forward) are accepted and have no effect.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsyncProps(pub Vec<(u16, u32)>);

impl AsyncProps {
    fn decode(r: &mut Reader<'_>) -> Res<AsyncProps> {
        let bad_len = ErrorCode::BadRequest(BadRequestCode::BadLen);
        let mut props = Vec::new();
        while !r.is_empty() {
            let ty = r.u16()?;
            let len = usize::from(r.u16()?);
            if len < 4 {
                return Err(bad_len);
            }
            let mut body = r.sub(len - 4, bad_len)?;
            r.skip((len.next_multiple_of(8) - len).min(r.remaining()))?;
            if ty >= 0xfffe {
                continue; // experimenter properties: none known
            }
            if len != 8 {
                return Err(bad_len);
            }
            props.push((ty, body.u32()?));
        }
        Ok(AsyncProps(props))
    }

    fn encode(&self, w: &mut Writer<'_>) {
        for &(ty, mask) in &self.0 {
            w.u16(ty);
            w.u16(8);
            w.u32(mask);
        }
    }

    /// Every mask of `a`, as properties.
    pub fn from_config(a: &AsyncConfig) -> AsyncProps {
        let mut props = Vec::with_capacity(6);
        for (k, masks) in [a.packet_in_mask, a.port_status_mask, a.flow_removed_mask]
            .iter()
            .enumerate()
        {
            props.push((2 * k as u16, masks[1]));
            props.push((2 * k as u16 + 1, masks[0]));
        }
        AsyncProps(props)
    }

    /// `a` with the masks these properties name replaced.
    pub fn applied_to(&self, mut a: AsyncConfig) -> AsyncConfig {
        for &(ty, mask) in &self.0 {
            let slot = usize::from(ty % 2 == 0);
            match ty / 2 {
                0 => a.packet_in_mask[slot] = mask,
                1 => a.port_status_mask[slot] = mask,
                2 => a.flow_removed_mask[slot] = mask,
                _ => {}
            }
        }
        a
    }
}

fn async_config(r: &mut Reader<'_>) -> Res<AsyncConfig> {
    let a = AsyncConfig {
        packet_in_mask: [r.u32()?, r.u32()?],
        port_status_mask: [r.u32()?, r.u32()?],
        flow_removed_mask: [r.u32()?, r.u32()?],
    };
    r.finish()?;
    Ok(a)
}

/// `ofp_switch_config`, the same in every version.
pub(crate) fn switch_config(r: &mut Reader<'_>) -> Res<SwitchConfig> {
    let c = SwitchConfig {
        flags: r.u16()?,
        miss_send_len: r.u16()?,
    };
    r.finish()?;
    Ok(c)
}

fn role(r: &mut Reader<'_>) -> Res<RoleMsg> {
    let role = ControllerRole::from_wire(r.u32()?)
        .ok_or(ErrorCode::RoleRequestFailed(RoleRequestFailedCode::BadRole))?;
    r.skip(4)?;
    let generation_id = r.u64()?;
    r.finish()?;
    Ok(RoleMsg {
        role,
        generation_id,
    })
}

impl Message {
    pub fn msg_type(&self) -> MsgType {
        use Message as M;
        match self {
            M::Hello(_) => MsgType::Hello,
            M::Error(_) => MsgType::Error,
            M::EchoRequest(_) => MsgType::EchoRequest,
            M::EchoReply(_) => MsgType::EchoReply,
            M::Experimenter(_) => MsgType::Experimenter,
            M::FeaturesRequest => MsgType::FeaturesRequest,
            M::FeaturesReply(_) => MsgType::FeaturesReply,
            M::GetConfigRequest => MsgType::GetConfigRequest,
            M::GetConfigReply(_) => MsgType::GetConfigReply,
            M::SetConfig(_) => MsgType::SetConfig,
            M::PacketIn(_) => MsgType::PacketIn,
            M::FlowRemoved(_) => MsgType::FlowRemoved,
            M::PortStatus(_) => MsgType::PortStatus,
            M::PacketOut(_) => MsgType::PacketOut,
            M::FlowMod(_) => MsgType::FlowMod,
            M::GroupMod(_) => MsgType::GroupMod,
            M::PortMod(_) => MsgType::PortMod,
            M::TableMod(_) => MsgType::TableMod,
            M::MultipartRequest(_) => MsgType::MultipartRequest,
            M::MultipartReply(_) => MsgType::MultipartReply,
            M::BarrierRequest => MsgType::BarrierRequest,
            M::BarrierReply => MsgType::BarrierReply,
            M::QueueGetConfigRequest(_) => MsgType::QueueGetConfigRequest,
            M::QueueGetConfigReply(_) => MsgType::QueueGetConfigReply,
            M::RoleRequest(_) => MsgType::RoleRequest,
            M::RoleReply(_) => MsgType::RoleReply,
            M::GetAsyncRequest => MsgType::GetAsyncRequest,
            M::GetAsyncReply(_) => MsgType::GetAsyncReply,
            M::SetAsync(_) | M::SetAsyncProps(_) => MsgType::SetAsync,
            M::MeterMod(_) => MsgType::MeterMod,
            M::BundleControl(_) => MsgType::BundleControl,
            M::BundleAdd(_) => MsgType::BundleAddMessage,
            M::RoleStatus(_) => MsgType::RoleStatus,
        }
    }

    fn decode_body(ty: MsgType, r: &mut Reader<'_>) -> Res<Message> {
        use Message as M;
        Ok(match ty {
            MsgType::Hello => M::Hello(Hello::decode(r)?),
            MsgType::Error => M::Error(ErrorMsg::decode(r)?),
            MsgType::EchoRequest => M::EchoRequest(r.rest().to_vec()),
            MsgType::EchoReply => M::EchoReply(r.rest().to_vec()),
            MsgType::Experimenter => {
                let experimenter = r.u32()?;
                let exp_type = r.u32()?;
                // OpenFlow 1.3 carries bundles as an ONF extension. It is
                // read in every version, so that any message that decodes
                // encodes back (in 1.3, as the extension) to itself.
                match (experimenter, exp_type) {
                    (super::ONF_EXPERIMENTER_ID, ONFT_BUNDLE_CONTROL) => {
                        M::BundleControl(BundleCtrl::decode(r)?)
                    }
                    (super::ONF_EXPERIMENTER_ID, ONFT_BUNDLE_ADD_MESSAGE) => {
                        M::BundleAdd(BundleAdd::decode(r)?)
                    }
                    _ => M::Experimenter(Experimenter {
                        experimenter,
                        exp_type,
                        data: r.rest().to_vec(),
                    }),
                }
            }
            MsgType::FeaturesRequest => return empty(r, M::FeaturesRequest),
            MsgType::FeaturesReply => {
                let datapath_id = r.u64()?;
                let n_buffers = r.u32()?;
                let n_tables = r.u8()?;
                let auxiliary_id = r.u8()?;
                r.skip(2)?;
                let f = SwitchFeatures {
                    datapath_id,
                    n_buffers,
                    n_tables,
                    auxiliary_id,
                    capabilities: r.u32()?,
                    reserved: r.u32()?,
                };
                r.finish()?;
                M::FeaturesReply(f)
            }
            MsgType::GetConfigRequest => return empty(r, M::GetConfigRequest),
            MsgType::GetConfigReply => M::GetConfigReply(switch_config(r)?),
            MsgType::SetConfig => M::SetConfig(switch_config(r)?),
            MsgType::PacketIn => M::PacketIn(PacketIn::decode(r)?),
            MsgType::FlowRemoved => M::FlowRemoved(FlowRemoved::decode(r)?),
            MsgType::PortStatus => M::PortStatus(PortStatus::decode(r)?),
            MsgType::PacketOut => M::PacketOut(PacketOut::decode(r)?),
            MsgType::FlowMod => M::FlowMod(FlowMod::decode(r)?),
            MsgType::GroupMod => M::GroupMod(GroupMod::decode(r)?),
            MsgType::PortMod => M::PortMod(PortMod::decode(r)?),
            MsgType::TableMod => M::TableMod(TableMod::decode(r)?),
            MsgType::MultipartRequest => M::MultipartRequest(MultipartRequest::decode(r)?),
            MsgType::MultipartReply => M::MultipartReply(MultipartReply::decode(r)?),
            MsgType::BarrierRequest => return empty(r, M::BarrierRequest),
            MsgType::BarrierReply => return empty(r, M::BarrierReply),
            MsgType::QueueGetConfigRequest => {
                let port = PortNo(r.u32()?);
                r.skip(4)?;
                return empty(r, M::QueueGetConfigRequest(port));
            }
            MsgType::QueueGetConfigReply => M::QueueGetConfigReply(QueueGetConfigReply::decode(r)?),
            MsgType::RoleRequest => M::RoleRequest(role(r)?),
            MsgType::RoleReply => M::RoleReply(role(r)?),
            MsgType::GetAsyncRequest => return empty(r, M::GetAsyncRequest),
            MsgType::GetAsyncReply if r.version() >= version::OF14 => {
                M::GetAsyncReply(AsyncProps::decode(r)?.applied_to(AsyncConfig::default()))
            }
            MsgType::SetAsync if r.version() >= version::OF14 => {
                M::SetAsyncProps(AsyncProps::decode(r)?)
            }
            MsgType::GetAsyncReply => M::GetAsyncReply(async_config(r)?),
            MsgType::SetAsync => M::SetAsync(async_config(r)?),
            MsgType::MeterMod => M::MeterMod(MeterMod::decode(r)?),
            MsgType::BundleControl => M::BundleControl(BundleCtrl::decode(r)?),
            MsgType::BundleAddMessage => M::BundleAdd(BundleAdd::decode(r)?),
            MsgType::RoleStatus => M::RoleStatus(RoleStatus::decode(r)?),
            MsgType::TableStatus | MsgType::RequestForward | MsgType::ControllerStatus => {
                return Err(ErrorCode::BadRequest(BadRequestCode::BadType));
            }
        })
    }

    /// The message as bytes, with this xid and version 0x04.
    pub fn encode(&self, xid: u32) -> Result<Vec<u8>, EncodeError> {
        self.encode_version(OFP_VERSION, xid)
    }

    /// The message as bytes of wire version `v` (1.3 to 1.5), with this xid.
    pub fn encode_version(&self, v: u8, xid: u32) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into_version(v, xid, &mut out)?;
        Ok(out)
    }

    /// Appends the encoded message to `out` (left as it was on error).
    pub fn encode_into(&self, xid: u32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_into_version(OFP_VERSION, xid, out)
    }

    /// Appends the message encoded in wire version `v` (1.3 to 1.5) to `out`
    /// (left as it was on error, e.g. for a message `v` does not have).
    pub fn encode_into_version(
        &self,
        v: u8,
        xid: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        let mut w = Writer::new(out).with_version(v);
        let ty = self.msg_type();
        let onf_bundle =
            v == version::OF13 && matches!(self, Message::BundleControl(_) | Message::BundleAdd(_));
        let wire_type = if onf_bundle {
            MsgType::Experimenter
        } else {
            ty
        };
        Header {
            version: v,
            msg_type: wire_type.to_wire(),
            length: 0,
            xid,
        }
        .write(&mut w);
        if !(version::OF13..=version::OF15).contains(&v) || !(onf_bundle || ty.exists_in(v)) {
            w.unsupported(ty.name());
        }
        if onf_bundle {
            w.u32(super::ONF_EXPERIMENTER_ID);
            w.u32(match self {
                Message::BundleControl(_) => ONFT_BUNDLE_CONTROL,
                _ => ONFT_BUNDLE_ADD_MESSAGE,
            });
        }
        self.encode_body(&mut w);
        w.patch_len(start + 2, start, "message");
        let result = w.finish();
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_body(&self, w: &mut Writer<'_>) {
        use Message as M;
        match self {
            M::Hello(h) => h.encode(w),
            M::Error(e) => e.encode(w),
            M::EchoRequest(d) | M::EchoReply(d) => w.bytes(d),
            M::Experimenter(e) => {
                w.u32(e.experimenter);
                w.u32(e.exp_type);
                w.bytes(&e.data);
            }
            M::FeaturesRequest
            | M::GetConfigRequest
            | M::BarrierRequest
            | M::BarrierReply
            | M::GetAsyncRequest => {}
            M::FeaturesReply(f) => {
                w.u64(f.datapath_id);
                w.u32(f.n_buffers);
                w.u8(f.n_tables);
                w.u8(f.auxiliary_id);
                w.zeros(2);
                w.u32(f.capabilities);
                w.u32(f.reserved);
            }
            M::GetConfigReply(c) | M::SetConfig(c) => {
                w.u16(c.flags);
                w.u16(c.miss_send_len);
            }
            M::PacketIn(p) => p.encode(w),
            M::FlowRemoved(f) => f.encode(w),
            M::PortStatus(p) => p.encode(w),
            M::PacketOut(p) => p.encode(w),
            M::FlowMod(f) => f.encode(w),
            M::GroupMod(g) => g.encode(w),
            M::PortMod(p) => p.encode(w),
            M::TableMod(t) => t.encode(w),
            M::MultipartRequest(m) => m.encode(w),
            M::MultipartReply(m) => m.encode(w),
            M::QueueGetConfigRequest(port) => {
                w.u32(port.0);
                w.zeros(4);
            }
            M::QueueGetConfigReply(q) => q.encode(w),
            M::RoleRequest(r) | M::RoleReply(r) => {
                w.u32(r.role.to_wire());
                w.zeros(4);
                w.u64(r.generation_id);
            }
            M::SetAsyncProps(p) => p.encode(w),
            M::GetAsyncReply(a) | M::SetAsync(a) if w.version() >= version::OF14 => {
                AsyncProps::from_config(a).encode(w)
            }
            M::GetAsyncReply(a) | M::SetAsync(a) => {
                for v in a
                    .packet_in_mask
                    .iter()
                    .chain(&a.port_status_mask)
                    .chain(&a.flow_removed_mask)
                {
                    w.u32(*v);
                }
            }
            M::MeterMod(m) => m.encode(w),
            M::BundleControl(b) => b.encode(w),
            M::BundleAdd(b) => b.encode(w),
            M::RoleStatus(r) => r.encode(w),
        }
    }
}
