//! The datapath of a running switch ([`super::Datapath`]): the flow module's tables, the
//! ports with their OpenFlow descriptions (number, name, MAC, link state,
//! speed, configuration), packets buffered for the controller, and the
//! translation of packet-ins, packet-outs and statistics between the
//! switching core and the codec's types. No sockets here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::module::flow::{ControllerMeta, FlowModule, Output, PacketOutStart};
use crate::module::{Module, Nanos, TunMeta};
use crate::openflow::error::{BadActionCode, BadRequestCode, PortModFailedCode};
use crate::openflow::flow::packet_in_reason;
use crate::openflow::group::{GroupDesc, GroupFeatures, GroupStats};
use crate::openflow::message::{SwitchConfig, SwitchFeatures, capabilities};
use crate::openflow::meter::{MeterConfig, MeterFeatures, MeterMod, MeterStats};
use crate::openflow::multipart::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, PortStats, TableStats,
};
use crate::openflow::port::{self as ofport, PortStatus, config, features, reason, state};
use crate::openflow::{
    Action, ErrorCode, FixedStr, FlowMod, FlowRemoved, GroupMod, NO_BUFFER, PacketIn, PacketOut,
    PortMod, PortNo, TableFeatures,
};

use super::pipeline_fields::{packet_in_match, packet_out_start};
use super::{Change, Datapath};
use crate::port::PortId;
use crate::switch::Switch;
use crate::wire::MacAddr;

/// Packets kept for the controller (`buffer_id`s in flight).
pub const N_BUFFERS: usize = 256;

/// `OFPCML_NO_BUFFER`: send the whole packet, keep nothing.
const NO_BUFFER_LEN: u16 = 0xffff;

/// One port as OpenFlow describes it.
#[derive(Clone, Debug)]
struct PortView {
    desc: ofport::Port,
    since: Instant,
}

/// A packet kept for a later PACKET_OUT or FLOW_MOD that names it.
struct Buffered {
    id: u32,
    in_port: u32,
    tun: TunMeta,
    data: Vec<u8>,
}

/// The datapath of a running switch whose module is `flow`.
pub struct SwitchDatapath {
    pub sw: Arc<Switch>,
    pub flow: Arc<FlowModule>,
    pub dpid: u64,
    pub config: SwitchConfig,
    ports: BTreeMap<u32, PortView>,
    buffers: VecDeque<Buffered>,
    next_buffer: u32,
    /// Packet-ins not sent because every connection was too far behind.
    pub packet_in_dropped: u64,
}

/// The datapath id of a switch that was given none: from its name, with
/// the top 16 bits clear (as Open vSwitch derives one from a MAC).
pub fn default_dpid(switch: &str) -> u64 {
    let mac = name_mac(switch);
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// A stable, locally administered unicast MAC made from a name.
fn name_mac(name: &str) -> [u8; 6] {
    // FNV-1a: stable across runs and builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Spread the last bytes' effect over all bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    let b = h.to_be_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// What the kernel says of an interface: MAC, carrier, speed in Mbit/s.
fn kernel_link(name: &str) -> (Option<MacAddr>, bool, Option<u32>) {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let mac = read("address").and_then(|s| s.trim().parse::<MacAddr>().ok());
    let carrier = read("carrier").is_some_and(|s| s.trim() == "1");
    let speed = read("speed")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| u32::try_from(s).ok())
        .filter(|&s| s > 0);
    (mac, carrier, speed)
}

fn speed_feature(mbps: u32) -> u32 {
    match mbps {
        10 => features::F_10MB_FD,
        100 => features::F_100MB_FD,
        1000 => features::F_1GB_FD,
        10_000 => features::F_10GB_FD,
        40_000 => features::F_40GB_FD,
        100_000 => features::F_100GB_FD,
        1_000_000 => features::F_1TB_FD,
        _ => features::OTHER,
    }
}

fn bad_request(c: BadRequestCode) -> ErrorCode {
    ErrorCode::BadRequest(c)
}

impl SwitchDatapath {
    pub fn new(sw: Arc<Switch>, flow: Arc<FlowModule>, dpid: u64) -> SwitchDatapath {
        let mut dp = SwitchDatapath {
            sw,
            flow,
            dpid,
            config: SwitchConfig::default(),
            ports: BTreeMap::new(),
            buffers: VecDeque::with_capacity(N_BUFFERS),
            next_buffer: 0,
            packet_in_dropped: 0,
        };
        dp.refresh_ports(true);
        dp
    }

    pub fn now(&self) -> Nanos {
        self.sw.now()
    }

    pub fn features(&self) -> SwitchFeatures {
        SwitchFeatures {
            datapath_id: self.dpid,
            n_buffers: N_BUFFERS as u32,
            n_tables: self.flow.tables() as u8,
            auxiliary_id: 0,
            capabilities: capabilities::FLOW_STATS
                | capabilities::TABLE_STATS
                | capabilities::PORT_STATS
                | capabilities::GROUP_STATS,
            reserved: 0,
        }
    }

    pub fn desc(&self) -> Desc {
        Desc {
            mfr_desc: FixedStr::new("mswitch"),
            hw_desc: FixedStr::new("mswitch user-space datapath"),
            sw_desc: FixedStr::new(env!("CARGO_PKG_VERSION")),
            serial_num: FixedStr::new("None"),
            dp_desc: FixedStr::new(self.sw.name()),
        }
    }

    pub fn port_descs(&self) -> Vec<ofport::Port> {
        self.ports.values().map(|p| p.desc.clone()).collect()
    }

    /// Whether OpenFlow port `n` is a port of the switch.
    pub fn has_port(&self, n: u32) -> bool {
        self.ports.contains_key(&n)
    }

    /// Brings the port view up to date with the switch: ports attached and
    /// detached, and (with `links`) link state read from the kernel.
    /// Returns the PORT_STATUS messages the changes call for.
    pub fn refresh_ports(&mut self, links: bool) -> Vec<PortStatus> {
        let mut out = Vec::new();
        let now = Instant::now();
        let stats = self.sw.stats();
        // Keyed by OpenFlow number: the local port is LOCAL.
        let current: BTreeMap<u32, (&str, &'static str)> = stats
            .ports
            .iter()
            .filter_map(|p| {
                Some((
                    self.flow.of_port(PortId::new(u32::from(p.id))?),
                    (p.name.as_str(), p.kind),
                ))
            })
            .collect();
        let gone: Vec<u32> = self
            .ports
            .iter()
            .filter(|(n, v)| {
                current
                    .get(n)
                    .is_none_or(|(name, _)| v.desc.name.as_str() != *name)
            })
            .map(|(n, _)| *n)
            .collect();
        for n in gone {
            if let Some(v) = self.ports.remove(&n) {
                self.flow.set_port_config(n, 0);
                out.push(PortStatus {
                    reason: reason::DELETE,
                    desc: v.desc,
                });
            }
        }
        for (&n, &(name, kind)) in &current {
            let fresh = !self.ports.contains_key(&n);
            if !fresh && !links {
                continue;
            }
            let desc = self.describe(n, name, kind);
            match self.ports.get_mut(&n) {
                None => {
                    self.ports.insert(
                        n,
                        PortView {
                            desc: desc.clone(),
                            since: now,
                        },
                    );
                    out.push(PortStatus {
                        reason: reason::ADD,
                        desc,
                    });
                }
                Some(v) => {
                    let d = ofport::Port {
                        config: v.desc.config,
                        state: (desc.state & !state::LIVE)
                            | if v.desc.config & config::PORT_DOWN == 0
                                && desc.state & state::LINK_DOWN == 0
                            {
                                state::LIVE
                            } else {
                                0
                            },
                        ..desc
                    };
                    if d != v.desc {
                        let live_changed = (d.state ^ v.desc.state) & state::LIVE != 0;
                        v.desc = d.clone();
                        if live_changed {
                            self.flow.set_port_live(n, d.state & state::LIVE != 0);
                        }
                        out.push(PortStatus {
                            reason: reason::MODIFY,
                            desc: d,
                        });
                    }
                }
            }
        }
        out
    }

    /// A fresh description of port `n` (configuration bits cleared).
    fn describe(&self, n: u32, name: &str, kind: &'static str) -> ofport::Port {
        let kernel = matches!(kind, "af_packet" | "af_xdp" | "tap");
        let (mac, carrier, speed) = if kernel {
            kernel_link(name)
        } else {
            (None, true, None)
        };
        let hw_addr =
            mac.unwrap_or_else(|| MacAddr(name_mac(&format!("{}/{name}", self.sw.name()))));
        let (curr, speed_kbps) = match speed {
            Some(s) => (speed_feature(s) | features::COPPER, s.saturating_mul(1000)),
            None => (0, 0),
        };
        ofport::Port {
            port_no: PortNo(n),
            hw_addr,
            name: FixedStr::new(name),
            config: 0,
            state: if carrier {
                state::LIVE
            } else {
                state::LINK_DOWN
            },
            curr,
            advertised: 0,
            supported: curr & !features::COPPER,
            peer: 0,
            curr_speed: speed_kbps,
            max_speed: speed_kbps,
        }
    }

    /// `OFPT_PORT_MOD`: returns the PORT_STATUS to send if anything changed.
    pub fn port_mod(&mut self, pm: &PortMod) -> Result<Option<PortStatus>, ErrorCode> {
        let fail = ErrorCode::PortModFailed;
        let v = self
            .ports
            .get_mut(&pm.port_no.0)
            .ok_or(fail(PortModFailedCode::BadPort))?;
        if v.desc.hw_addr != pm.hw_addr {
            return Err(fail(PortModFailedCode::BadHwAddr));
        }
        if (pm.config | pm.mask) & !config::ALL != 0 {
            return Err(fail(PortModFailedCode::BadConfig));
        }
        if pm.advertise & !v.desc.supported != 0 {
            return Err(fail(PortModFailedCode::BadAdvertise));
        }
        let cfg = (v.desc.config & !pm.mask) | (pm.config & pm.mask);
        if pm.advertise != 0 {
            v.desc.advertised = pm.advertise;
        }
        if cfg == v.desc.config {
            return Ok(None);
        }
        v.desc.config = cfg;
        let link_up = v.desc.state & state::LINK_DOWN == 0;
        let live = link_up && cfg & config::PORT_DOWN == 0;
        v.desc.state = (v.desc.state & !state::LIVE) | if live { state::LIVE } else { 0 };
        let desc = v.desc.clone();
        self.flow.set_port_config(pm.port_no.0, cfg);
        self.flow.set_port_live(pm.port_no.0, live);
        Ok(Some(PortStatus {
            reason: reason::MODIFY,
            desc,
        }))
    }

    /// `OFPMP_PORT_STATS` for one port or [`PortNo::ANY`].
    pub fn port_stats(&self, port: PortNo) -> Result<Vec<PortStats>, ErrorCode> {
        if port != PortNo::ANY && !self.ports.contains_key(&port.0) {
            return Err(bad_request(BadRequestCode::BadPort));
        }
        let now = Instant::now();
        let stats = self.sw.stats();
        Ok(stats
            .ports
            .iter()
            .filter_map(|p| Some((self.flow.of_port(PortId::new(u32::from(p.id))?), p)))
            .filter(|(n, _)| port == PortNo::ANY || *n == port.0)
            .map(|(n, p)| {
                let t = &p.totals;
                let d = self
                    .ports
                    .get(&n)
                    .map(|v| now.saturating_duration_since(v.since))
                    .unwrap_or_default();
                PortStats {
                    port_no: PortNo(n),
                    rx_packets: t.rx_packets,
                    tx_packets: t.tx_packets,
                    rx_bytes: t.rx_bytes,
                    tx_bytes: t.tx_bytes,
                    rx_dropped: t.drops.no_dest,
                    tx_dropped: t.drops.dest_full + t.drops.oversize,
                    rx_errors: t.drops.bad_frame,
                    duration_sec: d.as_secs() as u32,
                    duration_nsec: d.subsec_nanos(),
                    ..PortStats::default()
                }
            })
            .collect())
    }

    /// Keeps a packet for the controller; returns its buffer id.
    fn buffer(&mut self, in_port: u32, tun: TunMeta, data: &[u8]) -> u32 {
        if self.buffers.len() >= N_BUFFERS {
            self.buffers.pop_front();
        }
        // Ids cycle through 0..2^31 so none is ever NO_BUFFER.
        let id = self.next_buffer;
        self.next_buffer = (self.next_buffer + 1) & 0x7fff_ffff;
        self.buffers.push_back(Buffered {
            id,
            in_port,
            tun,
            data: data.to_vec(),
        });
        id
    }

    /// Takes a buffered packet.
    fn unbuffer(&mut self, id: u32) -> Result<Buffered, ErrorCode> {
        let i = self
            .buffers
            .iter()
            .position(|b| b.id == id)
            .ok_or(bad_request(BadRequestCode::BufferUnknown))?;
        Ok(self.buffers.remove(i).expect("index from position"))
    }

    /// A packet-in for the controller: cut to `max_len` (and buffered) unless
    /// the controller wants the whole packet. `tun`: the packet's tunnel
    /// metadata ([`TunMeta::NONE`] for none).
    pub fn packet_in(
        &mut self,
        in_port: u32,
        data: &[u8],
        meta: &ControllerMeta,
        tun: &TunMeta,
    ) -> PacketIn {
        // TTL failures carry no max_len of their own: miss_send_len applies.
        let max_len = if meta.reason == packet_in_reason::INVALID_TTL {
            self.config.miss_send_len
        } else {
            meta.max_len
        };
        let (buffer_id, cut) = if max_len == NO_BUFFER_LEN || usize::from(max_len) >= data.len() {
            (NO_BUFFER, data.len())
        } else {
            (self.buffer(in_port, *tun, data), usize::from(max_len))
        };
        PacketIn {
            buffer_id,
            total_len: u16::try_from(data.len()).unwrap_or(u16::MAX),
            reason: meta.reason,
            table_id: meta.table_id,
            cookie: meta.cookie,
            match_: packet_in_match(in_port, meta, tun),
            data: data[..cut].to_vec(),
        }
    }

    /// The packets the switch queued for the controller (at most `max`).
    pub fn take_packet_ins(&mut self, max: usize) -> Vec<PacketIn> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(p) = self.sw.pop_packet_in() else {
                break;
            };
            let meta = self.flow.controller_meta(p.tag).unwrap_or(ControllerMeta {
                reason: packet_in_reason::ACTION,
                table_id: 0,
                cookie: u64::MAX,
                max_len: NO_BUFFER_LEN,
                ..ControllerMeta::default()
            });
            let in_port = self.flow.of_port(p.in_port);
            out.push(self.packet_in(in_port, &p.data, &meta, &p.tun));
        }
        out
    }

    /// `OFPT_FLOW_MOD`, then the buffered packet it names (if any) through
    /// the tables. Returns the removed flows to report and packet-ins.
    pub fn flow_mod(
        &mut self,
        fm: &FlowMod,
    ) -> Result<(Vec<FlowRemoved>, Vec<PacketIn>), ErrorCode> {
        let now = self.now();
        let removed = self.flow.flow_mod(fm, now)?;
        let mut ins = Vec::new();
        if fm.buffer_id != NO_BUFFER {
            let b = self.unbuffer(fm.buffer_id)?;
            let start = PacketOutStart {
                tun: b.tun,
                ..PacketOutStart::default()
            };
            ins = self.execute(b.in_port, &start, &b.data, &[Action::output(PortNo::TABLE)])?;
        }
        Ok((removed, ins))
    }

    /// `OFPT_PACKET_OUT`; returns the packet-ins its actions make.
    pub fn packet_out(&mut self, po: &PacketOut) -> Result<Vec<PacketIn>, ErrorCode> {
        // Reserved in_ports are checked by the module; real ones must exist.
        let in_port = po.in_port;
        if !in_port.is_reserved() && !self.ports.contains_key(&in_port.0) {
            return Err(bad_request(BadRequestCode::BadPort));
        }
        for a in &po.actions {
            if let Action::Output { port, .. } = a
                && !port.is_reserved()
                && !self.ports.contains_key(&port.0)
            {
                return Err(ErrorCode::BadAction(BadActionCode::BadOutPort));
            }
        }
        let data = if po.buffer_id == NO_BUFFER {
            po.data.clone()
        } else {
            self.unbuffer(po.buffer_id)?.data
        };
        if data.len() < 14 {
            return Err(bad_request(BadRequestCode::BadPacket));
        }
        let start = packet_out_start(&po.pipeline);
        self.execute(in_port.0, &start, &data, &po.actions)
    }

    /// Runs `actions` on a frame from `in_port` with pipeline fields
    /// `start` (tunnel metadata, `metadata`, registers) and sends what
    /// they output.
    fn execute(
        &mut self,
        in_port: u32,
        start: &PacketOutStart,
        frame: &[u8],
        actions: &[Action],
    ) -> Result<Vec<PacketIn>, ErrorCode> {
        let now = self.now();
        let outs = self
            .flow
            .packet_out_with(in_port, start, frame, actions, now)?;
        let mut ins = Vec::new();
        for o in outs {
            match o {
                // Never the input port: the module drops an explicit output to it.
                Output::Port(p, bytes) => {
                    self.sw.transmit(p, &[&bytes]);
                }
                Output::PortTunnel(p, bytes, tun) => {
                    self.sw.transmit_tunnel(p, &[&bytes], &[tun]);
                }
                Output::InPort(bytes) => {
                    if let Some(p) = self.flow.port_id(in_port) {
                        self.sw.transmit(p, &[&bytes]);
                    }
                }
                Output::Flood(bytes) => {
                    for p in self.flow.flood_ports(in_port) {
                        self.sw.transmit(p, &[&bytes]);
                    }
                }
                Output::All(bytes) => {
                    for p in self.flow.all_ports(in_port) {
                        self.sw.transmit(p, &[&bytes]);
                    }
                }
                Output::Controller { data, meta, tun } => {
                    ins.push(self.packet_in(in_port, &data, &meta, &tun));
                }
                // Only without a local port: nowhere to send it.
                Output::Local(bytes) => {
                    if let Some(p) = self.flow.local_port() {
                        self.sw.transmit(p, &[&bytes]);
                    }
                }
            }
        }
        Ok(ins)
    }

    /// Flow entries removed by timeouts or group deletions since last asked.
    pub fn take_removed(&self) -> Vec<FlowRemoved> {
        self.flow.take_removed()
    }

    /// Lets the flow module age entries now (timeouts are also run by the
    /// workers about once a second).
    pub fn expire(&self) {
        let now = self.now();
        self.flow.tick(now);
    }
}

/// The engine's view: the inherent methods above, and the flow module's
/// tables, groups and statistics at the datapath's clock.
impl Datapath for SwitchDatapath {
    fn now(&self) -> Nanos {
        SwitchDatapath::now(self)
    }
    fn features(&self) -> SwitchFeatures {
        SwitchDatapath::features(self)
    }
    fn desc(&self) -> Desc {
        SwitchDatapath::desc(self)
    }
    fn config(&self) -> SwitchConfig {
        self.config
    }
    fn set_config(&mut self, c: SwitchConfig) {
        self.config = c;
    }
    fn refresh_ports(&mut self, links: bool) -> Vec<PortStatus> {
        SwitchDatapath::refresh_ports(self, links)
    }
    fn port_descs(&self) -> Vec<ofport::Port> {
        SwitchDatapath::port_descs(self)
    }
    fn has_port(&self, port: u32) -> bool {
        SwitchDatapath::has_port(self, port)
    }
    fn port_mod(&mut self, pm: &PortMod) -> Result<Option<PortStatus>, ErrorCode> {
        SwitchDatapath::port_mod(self, pm)
    }
    fn port_stats(&self, port: PortNo) -> Result<Vec<PortStats>, ErrorCode> {
        SwitchDatapath::port_stats(self, port)
    }
    fn n_tables(&self) -> usize {
        self.flow.tables()
    }
    fn flow_mod(&mut self, fm: &FlowMod) -> Result<(Vec<FlowRemoved>, Vec<PacketIn>), ErrorCode> {
        SwitchDatapath::flow_mod(self, fm)
    }
    fn group_mod(&mut self, gm: &GroupMod) -> Result<(), ErrorCode> {
        self.flow.group_mod(gm, self.now())
    }
    fn tlv_table_mod(&mut self, m: &crate::openflow::tlv::TlvTableMod) -> Result<(), ErrorCode> {
        self.flow.tlv_table_mod(m)
    }
    fn tlv_table(&self) -> crate::openflow::tlv::TlvTableReply {
        self.flow.tlv_table()
    }
    fn commit(&mut self, changes: &[Change<'_>]) -> Result<Vec<FlowRemoved>, (usize, ErrorCode)> {
        self.flow.commit(changes, self.now())
    }
    fn flow_stats(&self, req: &FlowStatsRequest) -> Result<Vec<FlowStats>, ErrorCode> {
        self.flow.flow_stats(req, self.now())
    }
    fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, ErrorCode> {
        self.flow.aggregate_stats(req)
    }
    fn table_stats(&self) -> Vec<TableStats> {
        self.flow.table_stats()
    }
    fn table_features(&self) -> Vec<TableFeatures> {
        self.flow.table_features()
    }
    fn group_stats(&self, group_id: u32) -> Vec<GroupStats> {
        self.flow.group_stats(group_id, self.now())
    }
    fn group_desc(&self) -> Vec<GroupDesc> {
        self.flow.group_desc()
    }
    fn group_features(&self) -> GroupFeatures {
        self.flow.group_features()
    }
    fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), ErrorCode> {
        self.flow.meter_mod(mm, self.now())
    }
    fn meter_stats(&self, meter_id: u32) -> Vec<MeterStats> {
        self.flow.meter_stats(meter_id, self.now())
    }
    fn meter_config(&self, meter_id: u32) -> Vec<MeterConfig> {
        self.flow.meter_config(meter_id)
    }
    fn meter_features(&self) -> MeterFeatures {
        self.flow.meter_features()
    }
    fn packet_out(&mut self, po: &PacketOut) -> Result<Vec<PacketIn>, ErrorCode> {
        SwitchDatapath::packet_out(self, po)
    }
    fn take_packet_ins(&mut self, max: usize) -> Vec<PacketIn> {
        SwitchDatapath::take_packet_ins(self, max)
    }
    fn take_removed(&mut self) -> Vec<FlowRemoved> {
        SwitchDatapath::take_removed(self)
    }
    fn set_invalid_ttl_to_controller(&mut self, on: bool) {
        self.flow.set_invalid_ttl_to_controller(on);
    }
    fn packet_in_dropped(&mut self) {
        self.packet_in_dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_stable_local_unicast_macs() {
        let a = name_mac("sw0/p1");
        assert_eq!(a, name_mac("sw0/p1"));
        assert_ne!(a, name_mac("sw0/p2"));
        assert_eq!(a[0] & 0x03, 0x02);
        assert_eq!(default_dpid("sw0") >> 48, 0);
        assert_ne!(default_dpid("sw0"), default_dpid("sw1"));
    }

    #[test]
    fn speeds_map_to_feature_bits() {
        assert_eq!(speed_feature(10_000), features::F_10GB_FD);
        assert_eq!(speed_feature(25_000), features::OTHER);
    }
}
