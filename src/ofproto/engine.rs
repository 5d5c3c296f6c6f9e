//! The OpenFlow protocol engine, with no I/O: connections are byte buffers
//! in and out, time is passed in, and the switch is reached through a
//! [`Datapath`]. The agent's socket loop (`control/ofagent`) feeds it; tests
//! drive it in memory.
//!
//! What it guarantees:
//! - Every connection starts with our HELLO, offering the switch's allowed
//!   versions (`--protocols`) in a bitmap; each connection speaks the highest
//!   version both allow (a peer with none in common gets
//!   `OFPET_HELLO_FAILED` and is closed), and every later message of another
//!   version is `OFPBRC_BAD_VERSION`. Replies and asynchronous messages are
//!   encoded in each connection's own version, so what one controller
//!   installs in 1.3 another sees in 1.5.
//! - A message that cannot be decoded or is not supported gets the
//!   `OFPT_ERROR` the spec names, with the offending xid and the first 64
//!   bytes; the connection stays open (only a corrupt stream — a length
//!   below 8 — closes it). Nothing a peer sends can panic the agent or touch
//!   another connection.
//! - Requests are handled in order, and changes to the tables are applied
//!   before the next message is read; so a BARRIER_REPLY is sent only after
//!   every earlier change is in force for every packet the switch forwards
//!   (the flow module's write lock waits for batches in flight).
//! - Roles (OFPCR_ROLE_*) with generation ids; slaves cannot change state;
//!   asynchronous messages (PACKET_IN, FLOW_REMOVED, PORT_STATUS) follow
//!   each connection's role and SET_ASYNC masks.
//! - Connections that fall far behind (a slow controller) stop getting
//!   packet-ins (counted) rather than growing without bound.
//! - A 1.0 peer may ask for Nicira's NXM flow format and packet-in formats,
//!   a later one for `NXT_PACKET_IN2` (`engine_nx.rs`); each connection's
//!   messages then take its formats, and flow statistics the form of their
//!   request.

use std::collections::BTreeMap;

use super::Datapath;
use super::bundles::{Bundles, Held, Outcome};
use crate::module::Nanos;
use crate::module::flow::Change;
use crate::openflow::bundle::{
    BundleCtrl, BundleCtrlType, ROLE_REASON_MASTER_REQUEST, RoleStatus, bundle_error, bundle_failed,
};
use crate::openflow::error::{
    BadRequestCode, ErrorMsg, HelloFailedCode, QueueOpFailedCode, RoleRequestFailedCode,
    TableFeaturesFailedCode, TableModFailedCode,
};
use crate::openflow::flow::{flow_removed_reason, packet_in_reason};
use crate::openflow::header::version;
use crate::openflow::message::{AsyncConfig, ControllerRole, QueueGetConfigReply, RoleMsg};
use crate::openflow::meter::MeterModCommand;
use crate::openflow::multipart::FlowStatsRequest;
use crate::openflow::multipart::{
    MultipartReply, MultipartReplyBody as R, MultipartRequest, MultipartRequestBody as Q,
};
use crate::openflow::port::{Port, PortStatus, config as port_config};
use crate::openflow::{
    EncodeError, ErrorCode, FlowRemoved, HEADER_LEN, Header, Hello, Message, OFP_VERSION, PacketIn,
    PortNo, Versions, decode, frame_len, negotiate,
};
use crate::openflow::{FlowMod, FlowModCommand, v10};

/// The versions the codecs speak: 1.0, and 1.3 to 1.5.
const SPOKEN: Versions = Versions::SUPPORTED;

/// Nicira's vendor (experimenter) id.
const NICIRA: u32 = 0x0000_2320;

/// Output queued beyond this makes a connection skip packet-ins.
const ASYNC_LIMIT: usize = 1 << 20;
/// Output queued beyond this stops reading from the connection until the
/// peer reads its answers.
pub const READ_LIMIT: usize = 4 << 20;
/// Most bytes of one multipart reply message.
const MULTIPART_MAX: usize = 65535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Our HELLO is sent; waiting for the peer's.
    Hello,
    Open,
}

/// The masks a connection starts with (OpenFlow 1.3.x, 7.3.10): as master
/// or equal, packet-ins for table misses and actions (INVALID_TTL only when
/// asked for) and every flow removal; as a slave only port status.
fn default_async() -> AsyncConfig {
    let pin = (1 << packet_in_reason::NO_MATCH) | (1 << packet_in_reason::ACTION);
    let fr = (1 << flow_removed_reason::IDLE_TIMEOUT)
        | (1 << flow_removed_reason::HARD_TIMEOUT)
        | (1 << flow_removed_reason::DELETE)
        | (1 << flow_removed_reason::GROUP_DELETE)
        | (1 << flow_removed_reason::METER_DELETE);
    AsyncConfig {
        packet_in_mask: [pin, 0],
        port_status_mask: [0x7, 0x7],
        flow_removed_mask: [fr, 0],
    }
}

/// One OpenFlow connection.
pub struct Conn {
    /// Bytes to send, in order.
    pub out: Vec<u8>,
    inbuf: Vec<u8>,
    phase: Phase,
    role: ControllerRole,
    async_cfg: AsyncConfig,
    /// Last time anything arrived, and when an echo request went out
    /// unanswered.
    last_rx: Nanos,
    echo_sent: Option<Nanos>,
    /// Set when the connection must close once `out` is sent.
    pub closing: Option<String>,
    pub peer: String,
    /// Packet-ins skipped because `out` was too full.
    pub skipped: u64,
    next_xid: u32,
    /// The negotiated wire version (our highest until the peer's hello).
    pub version: u8,
    bundles: Bundles,
    /// OpenFlow 1.0's per-connection Nicira state (table ids in flow
    /// mods, flow and packet-in formats).
    v10: v10::Ctx,
    /// `NXT_SET_CONTROLLER_ID`'s connection id (0 until set).
    pub controller_id: u16,
}

impl Conn {
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open && self.closing.is_none()
    }

    /// The role the controller asked for (`Equal` until it asks).
    pub fn role(&self) -> ControllerRole {
        self.role
    }

    /// Whether to read more from the peer now.
    pub fn wants_read(&self) -> bool {
        self.closing.is_none() && self.out.len() < READ_LIMIT
    }

    fn slot(&self) -> usize {
        usize::from(self.role == ControllerRole::Slave)
    }

    /// Appends `msg` encoded in the connection's version.
    fn encode(&mut self, msg: &Message, xid: u32) -> Result<(), EncodeError> {
        let ctx = self.v10;
        self.encode_with(msg, xid, &ctx)
    }

    /// [`Conn::encode`], with these Nicira formats (in later versions only
    /// the packet-in format, and only `NXT_PACKET_IN2`).
    fn encode_with(&mut self, msg: &Message, xid: u32, ctx: &v10::Ctx) -> Result<(), EncodeError> {
        if self.version == v10::VERSION {
            let b = v10::encode_with(msg, xid, ctx)?;
            self.out.extend_from_slice(&b);
            Ok(())
        } else if let (Message::PacketIn(p), v10::nx::PacketInFormat::Nxt2) =
            (msg, ctx.packet_in_format)
        {
            let b = v10::nx::packet_in2_message(p, self.version, xid)?;
            self.out.extend_from_slice(&b);
            Ok(())
        } else {
            msg.encode_into_version(self.version, xid, &mut self.out)
        }
    }

    fn send(&mut self, msg: &Message, xid: u32) {
        let ctx = self.v10;
        self.send_with(msg, xid, &ctx);
    }

    /// [`Conn::send`], in 1.0 with these Nicira formats.
    fn send_with(&mut self, msg: &Message, xid: u32, ctx: &v10::Ctx) {
        match self.encode_with(msg, xid, ctx) {
            Ok(()) => {}
            // An over-long message, or one this version cannot say: say so
            // rather than send something truncated.
            Err(e) => {
                let code = match e {
                    EncodeError::TooLong { .. } => BadRequestCode::BadLen,
                    EncodeError::Unsupported { .. } => BadRequestCode::BadType,
                };
                self.error(xid, ErrorCode::BadRequest(code), e.to_string().as_bytes())
            }
        }
    }

    fn error(&mut self, xid: u32, code: ErrorCode, raw: &[u8]) {
        let data = raw[..raw.len().min(crate::openflow::error::ERROR_DATA_LEN)].to_vec();
        let m = Message::Error(ErrorMsg { code, data });
        let _ = self.encode(&m, xid);
    }

    fn xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1);
        self.next_xid
    }

    /// Asynchronous messages carry xid 0, so a client waiting for the
    /// answer to one of its requests never mistakes one for it.
    fn send_async(&mut self, msg: &Message) {
        self.send(msg, 0);
    }
}

/// The protocol engine's state: the datapath and every connection.
pub struct Engine<D: Datapath> {
    pub dp: D,
    /// The OpenFlow versions this switch allows (`--protocols`).
    versions: Versions,
    conns: BTreeMap<u64, Conn>,
    next_id: u64,
    /// The highest generation id a master or slave request has carried.
    generation: Option<u64>,
    /// Idle time before an echo request, and again before giving up.
    pub probe: Nanos,
}

impl<D: Datapath> Engine<D> {
    pub fn new(dp: D, probe: Nanos) -> Engine<D> {
        Engine::with_versions(dp, probe, Versions::SUPPORTED)
    }

    /// An engine that negotiates only `versions` (those the codec speaks).
    pub fn with_versions(dp: D, probe: Nanos, versions: Versions) -> Engine<D> {
        Engine {
            versions: versions.and(SPOKEN),
            dp,
            conns: BTreeMap::new(),
            next_id: 1,
            generation: None,
            probe,
        }
    }

    /// A new connection; our HELLO is queued at once.
    pub fn open(&mut self, peer: String, now: Nanos) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut c = Conn {
            out: Vec::new(),
            inbuf: Vec::new(),
            phase: Phase::Hello,
            role: ControllerRole::Equal,
            async_cfg: default_async(),
            last_rx: now,
            echo_sent: None,
            closing: None,
            peer,
            skipped: 0,
            next_xid: 0,
            version: self.versions.highest().unwrap_or(OFP_VERSION),
            bundles: Bundles::default(),
            v10: v10::Ctx::default(),
            controller_id: 0,
        };
        c.send(&Message::Hello(Hello::offering(self.versions)), 0);
        self.conns.insert(id, c);
        id
    }

    pub fn close(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id);
        self.async_changed();
        c
    }

    /// The flow module sends packets whose TTL cannot be decremented to the
    /// controller only while some connection wants them.
    fn async_changed(&mut self) {
        let bit = 1 << packet_in_reason::INVALID_TTL;
        let want = self
            .conns
            .values()
            .any(|c| c.async_cfg.packet_in_mask[c.slot()] & bit != 0);
        self.dp.set_invalid_ttl_to_controller(want);
    }

    pub fn conn(&self, id: u64) -> Option<&Conn> {
        self.conns.get(&id)
    }

    pub fn conn_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.conns.keys().copied().collect()
    }

    /// Whether connection `id` finished its handshake.
    pub fn is_open(&self, id: u64) -> bool {
        self.conns.get(&id).is_some_and(Conn::is_open)
    }

    /// Bytes from connection `id`'s peer: every whole message is handled.
    pub fn input(&mut self, id: u64, bytes: &[u8], now: Nanos) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.last_rx = now;
        c.echo_sent = None;
        c.inbuf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.closing.is_some() {
                c.inbuf.clear();
                return;
            }
            let rest = &c.inbuf[at..];
            if rest.len() < HEADER_LEN {
                break;
            }
            let Some(len) = frame_len(rest) else {
                // A length below 8: the stream cannot be cut any more.
                let raw = rest[..HEADER_LEN].to_vec();
                let xid = Header::parse(&raw).map_or(0, |h| h.xid);
                c.error(xid, ErrorCode::BadRequest(BadRequestCode::BadLen), &raw);
                c.closing = Some("message length below 8".into());
                return;
            };
            if rest.len() < len {
                break;
            }
            let frame = rest[..len].to_vec();
            at += len;
            self.message(id, &frame);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.inbuf.drain(..at.min(c.inbuf.len()));
        }
    }

    /// One whole message from connection `id`.
    fn message(&mut self, id: u64, frame: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let decoded = if c.phase == Phase::Open && c.version == v10::VERSION {
            v10::decode(frame, &c.v10)
        } else {
            decode(frame)
        };
        if c.phase == Phase::Hello {
            match &decoded {
                Ok((h, Message::Hello(hello))) => {
                    match negotiate(h.version, hello, self.versions) {
                        Ok(v) => {
                            c.version = v;
                            c.phase = Phase::Open;
                        }
                        Err(e) => {
                            // Said in the peer's version when we speak it, so
                            // that it can read why.
                            if self.versions.contains(h.version) {
                                c.version = h.version;
                            }
                            let m = Message::Error(e);
                            let _ = m.encode_into_version(c.version, h.xid, &mut c.out);
                            c.closing = Some("no common OpenFlow version".into());
                            return;
                        }
                    }
                }
                _ => {
                    // Anything but a hello first: the peer does not speak
                    // OpenFlow as we do.
                    let xid = Header::parse(frame).map_or(0, |h| h.xid);
                    c.error(
                        xid,
                        ErrorCode::HelloFailed(HelloFailedCode::Incompatible),
                        b"expected OFPT_HELLO first",
                    );
                    c.closing = Some("did not start with a hello".into());
                    return;
                }
            }
            return;
        }
        match decoded {
            Ok((h, _)) if h.version != c.version => {
                // Every message after the hello speaks the version agreed.
                c.error(
                    h.xid,
                    ErrorCode::BadRequest(BadRequestCode::BadVersion),
                    frame,
                );
            }
            Ok((h, msg)) => self.handle(id, h, msg, frame),
            Err(e) => {
                if e.wants_reply() {
                    c.out.extend_from_slice(&e.reply_version(c.version));
                }
            }
        }
    }

    fn reply(&mut self, id: u64, xid: u32, msg: Message) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.send(&msg, xid);
        }
    }

    fn error(&mut self, id: u64, xid: u32, code: ErrorCode, raw: &[u8]) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.error(xid, code, raw);
        }
    }

    /// A multipart reply, cut to size; in 1.0 flow statistics take the
    /// form of their request (`nx`: Nicira's NXST), whatever the
    /// connection's flow format.
    fn multipart(&mut self, id: u64, xid: u32, body: R, nx: bool) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let reply = MultipartReply { flags: 0, body };
        let ctx = v10::Ctx {
            flow_format: if nx {
                v10::nx::FlowFormat::Nxm
            } else {
                v10::nx::FlowFormat::OpenFlow10
            },
            ..c.v10
        };
        let parts = if c.version == v10::VERSION {
            v10::split_reply_with(reply, MULTIPART_MAX, &ctx)
        } else {
            reply.split_version(c.version, MULTIPART_MAX)
        };
        for p in parts {
            c.send_with(&Message::MultipartReply(p), xid, &ctx);
        }
    }

    fn handle(&mut self, id: u64, h: Header, msg: Message, raw: &[u8]) {
        let xid = h.xid;
        let slave = self
            .conns
            .get(&id)
            .is_some_and(|c| c.role == ControllerRole::Slave);
        let modifies = match &msg {
            Message::PacketOut(_)
            | Message::FlowMod(_)
            | Message::GroupMod(_)
            | Message::PortMod(_)
            | Message::TableMod(_)
            | Message::MeterMod(_)
            | Message::BundleAdd(_) => true,
            Message::BundleControl(b) => b.ctrl_type == BundleCtrlType::CommitRequest,
            Message::MultipartRequest(r) => matches!(&r.body, Q::TableFeatures(t) if !t.is_empty()),
            _ => false,
        };
        if slave && modifies {
            return self.error(id, xid, ErrorCode::BadRequest(BadRequestCode::IsSlave), raw);
        }
        let bad_type = ErrorCode::BadRequest(BadRequestCode::BadType);
        let about_ports = match &msg {
            Message::FeaturesRequest | Message::PacketOut(_) | Message::PortMod(_) => true,
            Message::MultipartRequest(r) => {
                matches!(r.body, Q::PortDesc { .. } | Q::PortStats { .. })
            }
            _ => false,
        };
        if about_ports {
            // Answer from the ports as they are now, not as last polled
            // (announcing any change first).
            let st = self.dp.refresh_ports(false);
            self.broadcast_port_status(st);
        }
        match msg {
            Message::Hello(_) => {}
            Message::Error(_) => {}
            Message::EchoRequest(d) => self.reply(id, xid, Message::EchoReply(d)),
            Message::EchoReply(_) => {}
            Message::Experimenter(e) => self.experimenter(id, xid, &e, raw),
            Message::FeaturesRequest => {
                let f = self.dp.features();
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                if c.version == v10::VERSION {
                    // 1.0's features reply lists the ports.
                    let ports = self.dp.port_descs();
                    let b = v10::encode_features_reply(&f, &ports, xid);
                    c.out.extend_from_slice(&b);
                } else {
                    c.send(&Message::FeaturesReply(f), xid);
                }
            }
            Message::GetConfigRequest => {
                let c = self.dp.config();
                self.reply(id, xid, Message::GetConfigReply(c));
            }
            Message::SetConfig(c) => self.dp.set_config(c),
            Message::PacketOut(po) => match self.dp.packet_out(&po) {
                Ok(ins) => self.broadcast_packet_ins(ins),
                Err(code) => self.error(id, xid, code, raw),
            },
            Message::FlowMod(fm) => match self.dp.flow_mod(&self.modify_may_add(id, fm)) {
                Ok((removed, ins)) => {
                    self.broadcast_removed(removed);
                    self.broadcast_packet_ins(ins);
                }
                Err(code) => self.error(id, xid, code, raw),
            },
            Message::GroupMod(gm) => match self.dp.group_mod(&gm) {
                Ok(()) => {
                    let removed = self.dp.take_removed();
                    self.broadcast_removed(removed);
                }
                Err(code) => self.error(id, xid, code, raw),
            },
            Message::PortMod(mut pm) => {
                if h.version != v10::VERSION {
                    // As Open vSwitch: later versions have no NO_FLOOD bit.
                    pm.config &= !port_config::NO_FLOOD;
                    pm.mask &= !port_config::NO_FLOOD;
                }
                match self.dp.port_mod(&pm) {
                    Ok(Some(st)) => self.broadcast_port_status(vec![st]),
                    Ok(None) => {}
                    Err(code) => self.error(id, xid, code, raw),
                }
            }
            Message::TableMod(tm) => {
                let n = self.dp.n_tables();
                if tm.table_id != crate::openflow::table_id::ALL && usize::from(tm.table_id) >= n {
                    self.error(
                        id,
                        xid,
                        ErrorCode::TableModFailed(TableModFailedCode::BadTable),
                        raw,
                    );
                }
                // Table config bits are deprecated in 1.3: nothing to change.
            }
            Message::MultipartRequest(r) => self.multipart_request(id, xid, r, raw),
            Message::BarrierRequest => self.reply(id, xid, Message::BarrierReply),
            Message::QueueGetConfigRequest(port) => {
                if port != PortNo::ANY && !self.dp.has_port(port.0) {
                    self.error(
                        id,
                        xid,
                        ErrorCode::QueueOpFailed(QueueOpFailedCode::BadPort),
                        raw,
                    );
                } else {
                    self.reply(
                        id,
                        xid,
                        Message::QueueGetConfigReply(QueueGetConfigReply {
                            port,
                            queues: Vec::new(),
                        }),
                    );
                }
            }
            Message::RoleRequest(r) => self.role_request(id, xid, r, raw),
            Message::GetAsyncRequest => {
                let a = self.conns.get(&id).map(|c| c.async_cfg).unwrap_or_default();
                self.reply(id, xid, Message::GetAsyncReply(a));
            }
            Message::SetAsync(a) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.async_cfg = a;
                }
                self.async_changed();
            }
            Message::SetAsyncProps(p) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.async_cfg = p.applied_to(c.async_cfg);
                }
                self.async_changed();
            }
            Message::MeterMod(mm) => match self.dp.meter_mod(&mm) {
                Ok(()) => {
                    let mut removed = self.dp.take_removed();
                    if mm.command == MeterModCommand::Delete {
                        // The deletions pending now are the meter's (a flow
                        // mod's are sent as they happen, timeouts have
                        // their own reasons).
                        for r in &mut removed {
                            if r.reason == flow_removed_reason::DELETE {
                                r.reason = flow_removed_reason::METER_DELETE;
                            }
                        }
                    }
                    self.broadcast_removed(removed);
                }
                Err(code) => self.error(id, xid, code, raw),
            },
            // Messages only a switch sends.
            Message::FeaturesReply(_)
            | Message::GetConfigReply(_)
            | Message::PacketIn(_)
            | Message::FlowRemoved(_)
            | Message::PortStatus(_)
            | Message::MultipartReply(_)
            | Message::BarrierReply
            | Message::QueueGetConfigReply(_)
            | Message::RoleReply(_)
            | Message::GetAsyncReply(_)
            | Message::RoleStatus(_) => self.error(id, xid, bad_type, raw),
            Message::BundleControl(b) => self.bundle_control(id, xid, &b, raw),
            Message::BundleAdd(a) => {
                let r = match self.conns.get_mut(&id) {
                    Some(c) => c.bundles.add(c.version, xid, &a),
                    None => return,
                };
                if let Err(code) = r {
                    self.error(id, xid, code, raw);
                }
            }
        }
    }

    fn multipart_request(&mut self, id: u64, xid: u32, r: MultipartRequest, raw: &[u8]) {
        if r.flags & crate::openflow::multipart::MORE != 0 {
            // Only table features may span messages, and setting them is
            // refused anyway.
            return self.error(
                id,
                xid,
                ErrorCode::BadRequest(BadRequestCode::MultipartBufferOverflow),
                raw,
            );
        }
        let body = match r.body {
            Q::Desc => Ok(R::Desc(Box::new(self.dp.desc()))),
            Q::Flow(req) => self.dp.flow_stats(&req).map(R::Flow),
            Q::Aggregate(req) => self.dp.aggregate_stats(&req).map(R::Aggregate),
            Q::Table => Ok(R::Table(self.dp.table_stats())),
            Q::PortStats { port_no } => self.dp.port_stats(port_no).map(R::PortStats),
            Q::Queue { port_no, .. } => {
                if port_no != PortNo::ANY && !self.dp.has_port(port_no.0) {
                    Err(ErrorCode::QueueOpFailed(QueueOpFailedCode::BadPort))
                } else {
                    Ok(R::Queue(Vec::new()))
                }
            }
            Q::Group { group_id } => Ok(R::Group(self.dp.group_stats(group_id))),
            Q::GroupDesc { group_id } => {
                let mut groups = self.dp.group_desc();
                if group_id != crate::openflow::group::group_id::ALL {
                    groups.retain(|g| g.group_id == group_id);
                }
                Ok(R::GroupDesc(groups))
            }
            Q::GroupFeatures => Ok(R::GroupFeatures(self.dp.group_features())),
            Q::Meter { meter_id } => Ok(R::Meter(self.dp.meter_stats(meter_id))),
            Q::MeterConfig { meter_id } => Ok(R::MeterConfig(self.dp.meter_config(meter_id))),
            Q::MeterFeatures => Ok(R::MeterFeatures(self.dp.meter_features())),
            Q::TableFeatures(t) if t.is_empty() => Ok(R::TableFeatures(self.dp.table_features())),
            Q::TableFeatures(_) => Err(ErrorCode::TableFeaturesFailed(
                TableFeaturesFailedCode::Eperm,
            )),
            Q::PortDesc { port_no } => {
                let mut ports = self.dp.port_descs();
                if port_no != PortNo::ANY {
                    ports.retain(|p| p.port_no == port_no);
                }
                let v = self.conns.get(&id).map_or(v10::VERSION, |c| c.version);
                ports.iter_mut().for_each(|p| port_in(v, p));
                Ok(R::PortDesc(ports))
            }
            Q::Experimenter { .. } => Err(ErrorCode::BadRequest(BadRequestCode::BadExperimenter)),
        };
        let nx = self
            .conns
            .get(&id)
            .is_some_and(|c| c.version == v10::VERSION && v10::is_nx_flow_request(raw));
        match body {
            Ok(b) => self.multipart(id, xid, b, nx),
            Err(code) => self.error(id, xid, code, raw),
        }
    }

    /// OpenFlow 1.0's MODIFY adds the flow when no entry matches (1.2 and
    /// later leave the table alone), as Open vSwitch does for 1.0 peers.
    /// Whether any entry matches is asked non-strictly, so a strict modify
    /// that only a wider entry overlaps changes nothing and adds nothing.
    fn modify_may_add(&self, id: u64, fm: FlowMod) -> FlowMod {
        let is_v10 = self
            .conns
            .get(&id)
            .is_some_and(|c| c.version == v10::VERSION);
        if !is_v10
            || !matches!(
                fm.command,
                FlowModCommand::Modify | FlowModCommand::ModifyStrict
            )
        {
            return fm;
        }
        let req = FlowStatsRequest {
            table_id: fm.table_id,
            match_: fm.match_.clone(),
            cookie: fm.cookie,
            cookie_mask: fm.cookie_mask,
            ..FlowStatsRequest::default()
        };
        match self.dp.aggregate_stats(&req) {
            Ok(a) if a.flow_count == 0 => FlowMod {
                command: FlowModCommand::Add,
                table_id: if fm.table_id == crate::openflow::table_id::ALL {
                    0
                } else {
                    fm.table_id
                },
                ..fm
            },
            _ => fm,
        }
    }

    /// A bundle control request; a commit applies the bundle atomically
    /// and answers with the failing message's error and `OFPBFC_MSG_FAILED`
    /// if any change is refused (none then stays).
    fn bundle_control(&mut self, id: u64, xid: u32, b: &BundleCtrl, raw: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let (reply, entries) = match c.bundles.control(b) {
            Ok(Outcome::Reply(r)) => (r, Vec::new()),
            Ok(Outcome::Commit { reply, entries }) => (reply, entries),
            Err(code) => return self.error(id, xid, code, raw),
        };
        if !entries.is_empty() {
            let changes: Vec<Change<'_>> = entries
                .iter()
                .map(|e| match &e.change {
                    Held::Flow(f) => Change::Flow(f),
                    Held::Group(g) => Change::Group(g),
                })
                .collect();
            match self.dp.commit(&changes) {
                Ok(removed) => self.broadcast_removed(removed),
                Err((i, code)) => {
                    let failed = &entries[i];
                    self.error(id, failed.xid, code, &failed.raw);
                    return self.error(id, xid, bundle_error(bundle_failed::MSG_FAILED), raw);
                }
            }
        }
        self.reply(id, xid, Message::BundleControl(reply));
    }

    fn role_request(&mut self, id: u64, xid: u32, r: RoleMsg, raw: &[u8]) {
        let fail = |c| ErrorCode::RoleRequestFailed(c);
        match r.role {
            ControllerRole::NoChange => {}
            ControllerRole::Equal => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.role = ControllerRole::Equal;
                }
            }
            ControllerRole::Master | ControllerRole::Slave => {
                if let Some(g) = self.generation
                    && (r.generation_id.wrapping_sub(g) as i64) < 0
                {
                    return self.error(id, xid, fail(RoleRequestFailedCode::Stale), raw);
                }
                self.generation = Some(r.generation_id);
                if r.role == ControllerRole::Master {
                    let generation_id = r.generation_id;
                    for (other, c) in self.conns.iter_mut() {
                        if *other != id && c.role == ControllerRole::Master {
                            c.role = ControllerRole::Slave;
                            // From 1.4 on the demoted controller is told.
                            if c.version >= version::OF14 && c.is_open() {
                                c.send_async(&Message::RoleStatus(RoleStatus {
                                    role: ControllerRole::Slave,
                                    reason: ROLE_REASON_MASTER_REQUEST,
                                    generation_id,
                                }));
                            }
                        }
                    }
                }
                if let Some(c) = self.conns.get_mut(&id) {
                    c.role = r.role;
                }
            }
        }
        self.async_changed();
        let role = self
            .conns
            .get(&id)
            .map_or(ControllerRole::Equal, |c| c.role);
        self.reply(
            id,
            xid,
            Message::RoleReply(RoleMsg {
                role,
                generation_id: self.generation.unwrap_or(0),
            }),
        );
    }

    /// Sends packet-ins to every open connection that wants their reason.
    pub fn broadcast_packet_ins(&mut self, ins: Vec<PacketIn>) {
        for p in ins {
            let reason = u32::from(p.reason);
            let msg = Message::PacketIn(p);
            let mut sent = false;
            for c in self.conns.values_mut() {
                if !c.is_open() || c.async_cfg.packet_in_mask[c.slot()] & (1 << reason) == 0 {
                    continue;
                }
                if c.out.len() > ASYNC_LIMIT {
                    c.skipped += 1;
                    continue;
                }
                c.send_async(&msg);
                sent = true;
            }
            if !sent {
                self.dp.packet_in_dropped();
            }
        }
    }

    /// Sends flow removals to every open connection that wants their
    /// reason. METER_DELETE exists from 1.4 on: earlier versions are told
    /// DELETE (and asked about it by that bit of their mask).
    pub fn broadcast_removed(&mut self, removed: Vec<FlowRemoved>) {
        let delete = flow_removed_reason::DELETE;
        for r in removed {
            let reason = r.reason;
            let older = (reason == flow_removed_reason::METER_DELETE).then(|| {
                Message::FlowRemoved(FlowRemoved {
                    reason: delete,
                    ..r.clone()
                })
            });
            let msg = Message::FlowRemoved(r);
            for c in self.conns.values_mut() {
                let (m, reason) = match &older {
                    Some(o) if c.version < version::OF14 => (o, delete),
                    _ => (&msg, reason),
                };
                let bit = 1u32.checked_shl(u32::from(reason)).unwrap_or(0);
                if c.is_open() && c.async_cfg.flow_removed_mask[c.slot()] & bit != 0 {
                    c.send_async(m);
                }
            }
        }
    }

    pub fn broadcast_port_status(&mut self, st: Vec<PortStatus>) {
        for s in st {
            let reason = u32::from(s.reason);
            // What versions after 1.0 are told (see `port_in`).
            let mut later = s.clone();
            later.desc.config &= !port_config::NO_FLOOD;
            let (msg, later) = (Message::PortStatus(s), Message::PortStatus(later));
            for c in self.conns.values_mut() {
                if c.is_open() && c.async_cfg.port_status_mask[c.slot()] & (1 << reason) != 0 {
                    c.send_async(if c.version == v10::VERSION {
                        &msg
                    } else {
                        &later
                    });
                }
            }
        }
    }

    /// Moves what the datapath produced on its own to the controllers:
    /// packet-ins (at most `max`), removed flows and, with `ports`, port
    /// changes (`links`: re-read link state too).
    pub fn poll_datapath(&mut self, max: usize, ports: bool, links: bool) {
        let ins = self.dp.take_packet_ins(max);
        self.broadcast_packet_ins(ins);
        let removed = self.dp.take_removed();
        self.broadcast_removed(removed);
        if ports {
            let st = self.dp.refresh_ports(links);
            self.broadcast_port_status(st);
        }
    }

    /// Keepalive: an echo request after `probe` of silence, and the
    /// connection given up after another `probe`. Returns the connections
    /// that timed out (marked closing).
    pub fn tick(&mut self, now: Nanos) -> Vec<u64> {
        let mut dead = Vec::new();
        let probe = self.probe;
        for (&id, c) in self.conns.iter_mut() {
            if c.closing.is_some() {
                continue;
            }
            match c.echo_sent {
                Some(t) if now.saturating_sub(t) >= probe => {
                    c.closing = Some("no answer to echo request".into());
                    dead.push(id);
                }
                Some(_) => {}
                None if now.saturating_sub(c.last_rx) >= probe => {
                    let x = c.xid();
                    c.send(&Message::EchoRequest(Vec::new()), x);
                    c.echo_sent = Some(now);
                }
                None => {}
            }
        }
        dead
    }
}

/// A port as a connection of `version` is told it: NO_FLOOD is OpenFlow
/// 1.0's alone (Open vSwitch leaves it out of later versions' messages).
fn port_in(version: u8, p: &mut Port) {
    if version != v10::VERSION {
        p.config &= !port_config::NO_FLOOD;
    }
}

#[path = "engine_nx.rs"]
mod nx;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
