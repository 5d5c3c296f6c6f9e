//! The protocol engine against a fake datapath: no switch, no threads, no
//! time but what the test passes in. The fake keeps flow mods in a list and
//! answers statistics from it, so what the engine does with versions,
//! roles, bundles and asynchronous messages is checked on its own.

use super::engine::Engine;
use super::{Change, Datapath};
use crate::module::Nanos;
use crate::openflow::bundle::{
    BundleAdd, BundleCtrl, BundleCtrlType, bundle_error, bundle_failed, bundle_flags,
};
use crate::openflow::error::{BadActionCode, BadRequestCode, HelloFailedCode, MeterModFailedCode};
use crate::openflow::group::{GroupDesc, GroupFeatures, GroupStats};
use crate::openflow::message::Experimenter;
use crate::openflow::message::{ControllerRole, RoleMsg, SwitchConfig, SwitchFeatures};
use crate::openflow::meter::{
    MeterBand, MeterBandStats, MeterConfig, MeterFeatures, MeterMod, MeterModCommand, MeterStats,
    meter_id,
};
use crate::openflow::multipart::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, MultipartReplyBody as R, MultipartRequest,
    MultipartRequestBody as Q, PortStats, TableStats,
};
use crate::openflow::nicira::{NxMatchField, Register};
use crate::openflow::port::reason;
use crate::openflow::{
    Action, ErrorCode, FlowMod, FlowRemoved, GroupMod, Header, Hello, HelloElement, Instruction,
    Message, PacketIn, PacketOut, Port, PortMod, PortNo, PortStatus, TableFeatures, decode,
    frame_len,
};
use crate::openflow::{Masked, Match, OxmField, v10};
use std::net::Ipv6Addr;

/// A datapath that remembers flow mods (adds only) and ports.
#[derive(Default)]
struct Fake {
    flows: Vec<FlowMod>,
    ports: Vec<Port>,
    /// Port changes to announce at the next refresh.
    pending: Vec<PortStatus>,
    config: SwitchConfig,
    commits: usize,
    /// Meters by id, as added (no buckets: the engine only relays them).
    meters: Vec<MeterMod>,
}

fn bad_group() -> ErrorCode {
    ErrorCode::BadAction(BadActionCode::BadOutGroup)
}

/// The fake refuses flows that use a group (it has none).
fn check(fm: &FlowMod) -> Result<(), ErrorCode> {
    let uses_group = fm
        .instructions
        .iter()
        .filter_map(Instruction::actions)
        .flatten()
        .any(|a| matches!(a, Action::Group(_)));
    if uses_group { Err(bad_group()) } else { Ok(()) }
}

impl Datapath for Fake {
    fn now(&self) -> Nanos {
        0
    }
    fn features(&self) -> SwitchFeatures {
        SwitchFeatures {
            datapath_id: 0x42,
            n_tables: 1,
            ..SwitchFeatures::default()
        }
    }
    fn desc(&self) -> Desc {
        Desc::default()
    }
    fn config(&self) -> SwitchConfig {
        self.config
    }
    fn set_config(&mut self, c: SwitchConfig) {
        self.config = c;
    }
    fn refresh_ports(&mut self, _links: bool) -> Vec<PortStatus> {
        std::mem::take(&mut self.pending)
    }
    fn port_descs(&self) -> Vec<Port> {
        self.ports.clone()
    }
    fn has_port(&self, port: u32) -> bool {
        self.ports.iter().any(|p| p.port_no.0 == port)
    }
    fn port_mod(&mut self, _pm: &PortMod) -> Result<Option<PortStatus>, ErrorCode> {
        Ok(None)
    }
    fn port_stats(&self, _port: PortNo) -> Result<Vec<PortStats>, ErrorCode> {
        Ok(Vec::new())
    }
    fn n_tables(&self) -> usize {
        1
    }
    fn flow_mod(&mut self, fm: &FlowMod) -> Result<(Vec<FlowRemoved>, Vec<PacketIn>), ErrorCode> {
        check(fm)?;
        self.flows.push(fm.clone());
        Ok((Vec::new(), Vec::new()))
    }
    fn group_mod(&mut self, _gm: &GroupMod) -> Result<(), ErrorCode> {
        Ok(())
    }
    fn commit(&mut self, changes: &[Change<'_>]) -> Result<Vec<FlowRemoved>, (usize, ErrorCode)> {
        for (i, c) in changes.iter().enumerate() {
            if let Change::Flow(fm) = c {
                check(fm).map_err(|e| (i, e))?;
            }
        }
        for c in changes {
            if let Change::Flow(fm) = c {
                self.flows.push((*fm).clone());
            }
        }
        self.commits += 1;
        Ok(Vec::new())
    }
    fn flow_stats(&self, _req: &FlowStatsRequest) -> Result<Vec<FlowStats>, ErrorCode> {
        Ok(self
            .flows
            .iter()
            .map(|f| FlowStats {
                priority: f.priority,
                cookie: f.cookie,
                match_: f.match_.clone(),
                instructions: f.instructions.clone(),
                ..FlowStats::default()
            })
            .collect())
    }
    fn aggregate_stats(&self, _req: &FlowStatsRequest) -> Result<AggregateStats, ErrorCode> {
        Ok(AggregateStats {
            flow_count: self.flows.len() as u32,
            ..AggregateStats::default()
        })
    }
    fn table_stats(&self) -> Vec<TableStats> {
        Vec::new()
    }
    fn table_features(&self) -> Vec<TableFeatures> {
        Vec::new()
    }
    fn group_stats(&self, _group_id: u32) -> Vec<GroupStats> {
        Vec::new()
    }
    fn group_desc(&self) -> Vec<GroupDesc> {
        Vec::new()
    }
    fn group_features(&self) -> GroupFeatures {
        GroupFeatures::default()
    }
    fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), ErrorCode> {
        let known = self.meters.iter().position(|m| m.meter_id == mm.meter_id);
        match (mm.command, known) {
            (MeterModCommand::Add, Some(_)) => {
                Err(ErrorCode::MeterModFailed(MeterModFailedCode::MeterExists))
            }
            (MeterModCommand::Add, None) => {
                self.meters.push(mm.clone());
                Ok(())
            }
            (MeterModCommand::Delete, _) => {
                self.meters
                    .retain(|m| mm.meter_id != meter_id::ALL && m.meter_id != mm.meter_id);
                Ok(())
            }
            (MeterModCommand::Modify, Some(i)) => {
                self.meters[i] = mm.clone();
                Ok(())
            }
            (MeterModCommand::Modify, None) => {
                Err(ErrorCode::MeterModFailed(MeterModFailedCode::UnknownMeter))
            }
        }
    }
    fn meter_stats(&self, id: u32) -> Vec<MeterStats> {
        self.selected(id)
            .map(|m| MeterStats {
                meter_id: m.meter_id,
                band_stats: vec![MeterBandStats::default(); m.bands.len()],
                ..MeterStats::default()
            })
            .collect()
    }
    fn meter_config(&self, id: u32) -> Vec<MeterConfig> {
        self.selected(id)
            .map(|m| MeterConfig {
                flags: m.flags,
                meter_id: m.meter_id,
                bands: m.bands.clone(),
            })
            .collect()
    }
    fn meter_features(&self) -> MeterFeatures {
        MeterFeatures {
            max_meter: 4,
            ..MeterFeatures::default()
        }
    }
    fn packet_out(&mut self, _po: &PacketOut) -> Result<Vec<PacketIn>, ErrorCode> {
        Ok(Vec::new())
    }
    fn take_packet_ins(&mut self, _max: usize) -> Vec<PacketIn> {
        Vec::new()
    }
    fn take_removed(&mut self) -> Vec<FlowRemoved> {
        Vec::new()
    }
    fn set_invalid_ttl_to_controller(&mut self, _on: bool) {}
    fn packet_in_dropped(&mut self) {}
}

impl Fake {
    fn selected(&self, id: u32) -> impl Iterator<Item = &MeterMod> {
        self.meters
            .iter()
            .filter(move |m| id == meter_id::ALL || m.meter_id == id)
    }
}

fn engine(versions: &str) -> Engine<Fake> {
    Engine::with_versions(Fake::default(), 5_000_000_000, versions.parse().unwrap())
}

/// A peer's hello offering `bitmap` (with the header's version the highest).
fn hello(bitmap: u32) -> Vec<u8> {
    let v = 31 - bitmap.leading_zeros() as u8;
    let h = Message::Hello(Hello {
        elements: vec![HelloElement::VersionBitmap(vec![bitmap])],
    });
    let mut b = h.encode(1).unwrap();
    b[0] = v;
    b
}

/// Every whole message queued for connection `id`, taken out.
fn take(e: &mut Engine<Fake>, id: u64) -> Vec<(Header, Message)> {
    let c = e.conn_mut(id).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = frame_len(&c.out[at..]) {
        out.push(decode(&c.out[at..at + len]).unwrap_or_else(|err| panic!("{err}")));
        at += len;
    }
    c.out.drain(..at);
    out
}

/// A connection that negotiated with a peer offering `bitmap`.
fn connect(e: &mut Engine<Fake>, bitmap: u32) -> u64 {
    let id = e.open("peer".into(), 0);
    e.input(id, &hello(bitmap), 0);
    let got = take(e, id);
    assert!(matches!(got[..], [(_, Message::Hello(_))]), "{got:?}");
    id
}

fn send(e: &mut Engine<Fake>, id: u64, v: u8, xid: u32, m: &Message) -> Vec<(Header, Message)> {
    e.input(id, &m.encode_version(v, xid).unwrap(), 0);
    take(e, id)
}

const OF13: u32 = 1 << 4;
const OF14: u32 = 1 << 5;
const OF15: u32 = 1 << 6;

#[test]
fn each_connection_speaks_its_own_version() {
    let mut e = engine("OpenFlow13,OpenFlow14,OpenFlow15");
    let a = connect(&mut e, OF13);
    let b = connect(&mut e, OF13 | OF15);
    assert_eq!(e.conn(a).unwrap().version, 4);
    assert_eq!(e.conn(b).unwrap().version, 6);
    // A flow installed in 1.3 is listed to the 1.5 connection in 1.5.
    let fm = FlowMod {
        priority: 7,
        cookie: 9,
        instructions: vec![Instruction::ApplyActions(vec![Action::output(PortNo(2))])],
        ..FlowMod::default()
    };
    assert!(send(&mut e, a, 4, 1, &Message::FlowMod(fm)).is_empty());
    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Flow(FlowStatsRequest::default()),
    });
    let got = send(&mut e, b, 6, 2, &req);
    let [(h, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(h.version, 6);
    let R::Flow(flows) = &r.body else { panic!() };
    assert_eq!((flows[0].priority, flows[0].cookie), (7, 9));
    // A message of another version than the one agreed is refused.
    let got = send(&mut e, b, 4, 3, &Message::BarrierRequest);
    assert!(
        matches!(&got[..], [(h, Message::Error(m))] if h.version == 6 && m.code == ErrorCode::BadRequest(BadRequestCode::BadVersion)),
        "{got:?}"
    );
}

#[test]
fn protocols_limit_what_is_negotiated() {
    let mut e = engine("OpenFlow13");
    let id = e.open("peer".into(), 0);
    // Our hello offers exactly what is allowed.
    let got = take(&mut e, id);
    let [(h, Message::Hello(ours))] = &got[..] else {
        panic!()
    };
    assert_eq!(h.version, 4);
    assert_eq!(ours.version_bitmap(), Some(&[OF13][..]));
    e.input(id, &hello(OF14 | OF15), 0);
    let got = take(&mut e, id);
    assert!(
        matches!(&got[..], [(_, Message::Error(m))] if m.code == ErrorCode::HelloFailed(HelloFailedCode::Incompatible)),
        "{got:?}"
    );
    assert!(e.conn(id).unwrap().closing.is_some());
}

#[test]
fn a_new_master_demotes_the_old_one_and_tells_it_from_1_4_on() {
    let mut e = engine("OpenFlow13,OpenFlow14");
    let old = connect(&mut e, OF14);
    let new = connect(&mut e, OF13);
    let role = |r| {
        Message::RoleRequest(RoleMsg {
            role: r,
            generation_id: 1,
        })
    };
    send(&mut e, old, 5, 1, &role(ControllerRole::Master));
    let got = send(&mut e, new, 4, 2, &role(ControllerRole::Master));
    assert!(matches!(&got[..], [(_, Message::RoleReply(_))]));
    let told = take(&mut e, old);
    assert!(
        matches!(&told[..], [(h, Message::RoleStatus(s))] if h.version == 5 && s.role == ControllerRole::Slave && s.generation_id == 1),
        "{told:?}"
    );
    // The demoted controller may not change the tables any more.
    let got = send(&mut e, old, 5, 3, &Message::FlowMod(FlowMod::default()));
    assert!(
        matches!(&got[..], [(_, Message::Error(m))] if m.code == ErrorCode::BadRequest(BadRequestCode::IsSlave))
    );
}

#[test]
fn a_bundle_commits_whole_or_reports_its_failing_message() {
    let mut e = engine("OpenFlow14");
    let id = connect(&mut e, OF14);
    let flags = bundle_flags::ATOMIC;
    let ctrl = |t| {
        Message::BundleControl(BundleCtrl {
            bundle_id: 1,
            ctrl_type: t,
            flags,
            properties: Vec::new(),
        })
    };
    let add = |xid, fm: FlowMod| {
        Message::BundleAdd(BundleAdd {
            bundle_id: 1,
            flags,
            message: Message::FlowMod(fm).encode_version(5, xid).unwrap(),
            properties: Vec::new(),
        })
    };
    let good = FlowMod::default();
    let bad = FlowMod {
        instructions: vec![Instruction::ApplyActions(vec![Action::Group(3)])],
        ..FlowMod::default()
    };
    send(&mut e, id, 5, 1, &ctrl(BundleCtrlType::OpenRequest));
    assert!(send(&mut e, id, 5, 2, &add(2, good.clone())).is_empty());
    assert!(send(&mut e, id, 5, 3, &add(3, bad)).is_empty());
    let got = send(&mut e, id, 5, 4, &ctrl(BundleCtrlType::CommitRequest));
    let codes: Vec<(u32, ErrorCode)> = got
        .iter()
        .map(|(h, m)| match m {
            Message::Error(err) => (h.xid, err.code),
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            (3, bad_group()),
            (4, bundle_error(bundle_failed::MSG_FAILED))
        ]
    );
    assert!(e.dp.flows.is_empty());
    // Again without the bad flow: committed, answered with COMMIT_REPLY.
    send(&mut e, id, 5, 5, &add(5, good));
    let got = send(&mut e, id, 5, 6, &ctrl(BundleCtrlType::CommitRequest));
    assert!(
        matches!(&got[..], [(_, Message::BundleControl(b))] if b.ctrl_type == BundleCtrlType::CommitReply),
        "{got:?}"
    );
    assert_eq!((e.dp.flows.len(), e.dp.commits), (1, 1));
}

#[test]
fn port_status_reaches_each_connection_in_its_version() {
    let mut e = engine("OpenFlow13,OpenFlow14,OpenFlow15");
    let a = connect(&mut e, OF13);
    let b = connect(&mut e, OF15);
    let port = Port {
        port_no: PortNo(3),
        name: "p3".into(),
        ..Port::default()
    };
    e.dp.ports.push(port.clone());
    e.dp.pending.push(PortStatus {
        reason: reason::ADD,
        desc: port.clone(),
    });
    e.poll_datapath(16, true, false);
    for (id, v) in [(a, 4), (b, 6)] {
        let got = take(&mut e, id);
        assert!(
            matches!(&got[..], [(h, Message::PortStatus(s))] if h.version == v && s.desc == port),
            "{got:?}"
        );
    }
}

#[test]
fn meter_mods_and_meter_multiparts_go_to_the_datapath() {
    let mut e = engine("OpenFlow13");
    let id = connect(&mut e, OF13);
    let mm = |command| {
        Message::MeterMod(MeterMod {
            command,
            flags: 0,
            meter_id: 1,
            bands: vec![MeterBand::Drop {
                rate: 10,
                burst_size: 0,
            }],
        })
    };
    assert!(send(&mut e, id, 4, 1, &mm(MeterModCommand::Add)).is_empty());
    let got = send(&mut e, id, 4, 2, &mm(MeterModCommand::Add));
    assert!(
        matches!(&got[..], [(h, Message::Error(m))] if h.xid == 2 && m.code == ErrorCode::MeterModFailed(MeterModFailedCode::MeterExists)),
        "{got:?}"
    );
    let ask = |body| Message::MultipartRequest(MultipartRequest { flags: 0, body });
    let got = send(
        &mut e,
        id,
        4,
        3,
        &ask(Q::MeterConfig {
            meter_id: meter_id::ALL,
        }),
    );
    let [(_, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert!(matches!(&r.body, R::MeterConfig(c) if c.len() == 1 && c[0].meter_id == 1));
    let got = send(&mut e, id, 4, 4, &ask(Q::Meter { meter_id: 1 }));
    let [(_, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert!(matches!(&r.body, R::Meter(s) if s.len() == 1 && s[0].band_stats.len() == 1));
    let got = send(&mut e, id, 4, 5, &ask(Q::MeterFeatures));
    let [(_, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert!(matches!(&r.body, R::MeterFeatures(f) if f.max_meter == 4));
    // A slave may look but not change.
    let role = Message::RoleRequest(RoleMsg {
        role: ControllerRole::Slave,
        generation_id: 1,
    });
    send(&mut e, id, 4, 6, &role);
    let got = send(&mut e, id, 4, 7, &mm(MeterModCommand::Delete));
    assert!(
        matches!(&got[..], [(_, Message::Error(m))] if m.code == ErrorCode::BadRequest(BadRequestCode::IsSlave)),
        "{got:?}"
    );
    assert_eq!(e.dp.meters.len(), 1);
}

const OF10: u32 = 1 << 1;

/// Every whole 1.0 message queued for `id`, with its raw bytes.
fn take10(e: &mut Engine<Fake>, id: u64) -> Vec<(Vec<u8>, Message)> {
    let c = e.conn_mut(id).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = frame_len(&c.out[at..]) {
        let raw = c.out[at..at + len].to_vec();
        let (_, m) = v10::decode(&raw, &v10::Ctx::default()).unwrap_or_else(|err| panic!("{err}"));
        out.push((raw, m));
        at += len;
    }
    c.out.drain(..at);
    out
}

fn send10(e: &mut Engine<Fake>, id: u64, m: &Message, ctx: &v10::Ctx) -> Vec<(Vec<u8>, Message)> {
    e.input(id, &v10::encode_with(m, 5, ctx).unwrap(), 0);
    take10(e, id)
}

fn nx_msg(subtype: u32, data: &[u8]) -> Message {
    Message::Experimenter(Experimenter {
        experimenter: 0x2320,
        exp_type: subtype,
        data: data.to_vec(),
    })
}

fn error_of(got: &[(Vec<u8>, Message)]) -> Option<ErrorCode> {
    match got {
        [(_, Message::Error(e))] => Some(e.code),
        _ => None,
    }
}

/// The error code of a lone 1.3 error reply.
fn error13(got: &[(Header, Message)]) -> Option<ErrorCode> {
    match got {
        [(_, Message::Error(e))] => Some(e.code),
        _ => None,
    }
}

fn ipv6_flow() -> FlowMod {
    let m = Match::from_fields(vec![
        OxmField::EthType(0x86dd),
        OxmField::Ipv6Src(Masked::exact(Ipv6Addr::LOCALHOST)),
    ])
    .unwrap()
    .with_registers(vec![NxMatchField {
        reg: Register::Reg(0),
        value: 5,
        mask: None,
    }])
    .unwrap();
    FlowMod {
        priority: 9,
        match_: m,
        ..FlowMod::default()
    }
}

#[test]
fn nxm_flow_mods_and_flow_stats_in_their_requests_form() {
    use v10::nx::FlowFormat;
    let mut e = engine("OpenFlow10,OpenFlow13");
    let a = connect10(&mut e);
    let nxm = v10::Ctx {
        flow_format: FlowFormat::Nxm,
        ..v10::Ctx::default()
    };
    let std = v10::Ctx::default();
    let fmt = |f: u32| nx_msg(v10::nx_subtype::SET_FLOW_FORMAT, &f.to_be_bytes());
    assert!(send10(&mut e, a, &fmt(2), &std).is_empty());
    // An NXT_FLOW_MOD with what 1.0's match cannot hold, whole.
    let fm = Message::FlowMod(ipv6_flow());
    assert!(send10(&mut e, a, &fm, &nxm).is_empty());
    assert_eq!(e.dp.flows[0].match_, ipv6_flow().match_);
    // NXST_FLOW gets NXST_FLOW, with every field.
    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Flow(FlowStatsRequest::default()),
    });
    let got = send10(&mut e, a, &req, &nxm);
    let [(raw, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(&raw[8..10], &[0xff, 0xff], "a vendor reply");
    let R::Flow(flows) = &r.body else { panic!() };
    assert_eq!(flows[0].match_, ipv6_flow().match_);
    // OFPST_FLOW gets OFPST_FLOW (widened to 1.0's match), whatever the
    // connection's flow format.
    let got = send10(&mut e, a, &req, &std);
    let [(raw, Message::MultipartReply(r))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(&raw[8..10], &[0, 1]);
    let R::Flow(flows) = &r.body else { panic!() };
    assert!(flows[0].match_.registers().is_empty());
    // NXST_AGGREGATE too.
    let agg = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Aggregate(FlowStatsRequest::default()),
    });
    let got = send10(&mut e, a, &agg, &nxm);
    assert!(
        matches!(&got[..], [(raw, Message::MultipartReply(r))] if raw[8..10] == [0xff, 0xff] && matches!(r.body, R::Aggregate(AggregateStats { flow_count: 1, .. }))),
        "{got:?}"
    );
    // Formats this switch does not know, a short body, and the 1.0-only
    // message on a 1.3 connection.
    assert_eq!(
        error_of(&send10(&mut e, a, &fmt(1), &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::Eperm))
    );
    let short = nx_msg(v10::nx_subtype::SET_FLOW_FORMAT, &[0, 2]);
    assert_eq!(
        error_of(&send10(&mut e, a, &short, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadLen))
    );
    let b = connect(&mut e, OF13);
    assert_eq!(
        error13(&send(&mut e, b, 4, 1, &fmt(2))),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExpType))
    );
}

#[test]
fn removals_and_packet_ins_follow_each_connections_formats() {
    let mut e = engine("OpenFlow10,OpenFlow13");
    let a = connect10(&mut e);
    let b = connect(&mut e, OF13);
    let std = v10::Ctx::default();
    let removed = FlowRemoved {
        match_: ipv6_flow().match_,
        ..FlowRemoved::default()
    };
    // Standard until NXM is asked for.
    e.broadcast_removed(vec![removed.clone()]);
    let got = take10(&mut e, a);
    assert_eq!(got[0].0[1], v10::msg_type::FLOW_REMOVED);
    let fmt = nx_msg(v10::nx_subtype::SET_FLOW_FORMAT, &2u32.to_be_bytes());
    assert!(send10(&mut e, a, &fmt, &std).is_empty());
    take(&mut e, b);
    e.broadcast_removed(vec![removed.clone()]);
    let got = take10(&mut e, a);
    assert_eq!(got[0].0[1], v10::msg_type::VENDOR);
    assert_eq!(got[0].1, Message::FlowRemoved(removed.clone()));
    assert!(matches!(
        &take(&mut e, b)[..],
        [(_, Message::FlowRemoved(_))]
    ));

    let pin = PacketIn {
        match_: Match::from_fields(vec![OxmField::InPort(PortNo(3))]).unwrap(),
        data: vec![1; 14],
        total_len: 14,
        ..PacketIn::default()
    };
    for (format, subtype) in [
        (1u32, Some(v10::nx_subtype::PACKET_IN)),
        (2, Some(v10::nx_subtype::PACKET_IN2)),
        (0, None),
    ] {
        let m = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &format.to_be_bytes());
        assert!(send10(&mut e, a, &m, &std).is_empty());
        e.broadcast_packet_ins(vec![pin.clone()]);
        let got = take10(&mut e, a);
        let [(raw, Message::PacketIn(p))] = &got[..] else {
            panic!("{got:?}")
        };
        let sub = u32::from_be_bytes([raw[12], raw[13], raw[14], raw[15]]);
        match subtype {
            Some(s) => assert_eq!((raw[1], sub), (v10::msg_type::VENDOR, s)),
            None => assert_eq!(raw[1], v10::msg_type::PACKET_IN),
        }
        assert_eq!(p.match_.in_port(), Some(PortNo(3)));
        assert_eq!(p.data, pin.data);
    }
    let bad = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &3u32.to_be_bytes());
    assert_eq!(
        error_of(&send10(&mut e, a, &bad, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::Eperm))
    );
    // A 1.3 connection keeps its own packet-in (ovs-ofctl falls back).
    assert_eq!(take(&mut e, b).len(), 3, "the 1.3 peer got each standard");
    let m = nx_msg(v10::nx_subtype::SET_PACKET_IN_FORMAT, &2u32.to_be_bytes());
    assert_eq!(
        error13(&send(&mut e, b, 4, 1, &m)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExpType))
    );
}

#[test]
fn controller_id_async_config_and_flow_age() {
    let mut e = engine("OpenFlow10");
    let a = connect10(&mut e);
    let std = v10::Ctx::default();
    let id = nx_msg(
        v10::nx_subtype::SET_CONTROLLER_ID,
        &[0, 0, 0, 0, 0, 0, 0x12, 0x34],
    );
    assert!(send10(&mut e, a, &id, &std).is_empty());
    assert_eq!(e.conn(a).unwrap().controller_id, 0x1234);
    for (data, code) in [
        (&[0, 0, 0, 0, 0, 1, 0, 1][..], BadRequestCode::Eperm),
        (&[0, 1][..], BadRequestCode::BadLen),
    ] {
        let m = nx_msg(v10::nx_subtype::SET_CONTROLLER_ID, data);
        assert_eq!(
            error_of(&send10(&mut e, a, &m, &std)),
            Some(ErrorCode::BadRequest(code))
        );
    }
    // NXT_SET_ASYNC_CONFIG: no flow removals wanted any more.
    let mut masks = Vec::new();
    for w in [3u32, 0, 7, 7, 0, 0] {
        masks.extend_from_slice(&w.to_be_bytes());
    }
    let m = nx_msg(v10::nx_subtype::SET_ASYNC_CONFIG, &masks);
    assert!(send10(&mut e, a, &m, &std).is_empty());
    e.broadcast_removed(vec![FlowRemoved::default()]);
    assert!(take10(&mut e, a).is_empty());
    let m = nx_msg(v10::nx_subtype::SET_ASYNC_CONFIG, &masks[..20]);
    assert_eq!(
        error_of(&send10(&mut e, a, &m, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadLen))
    );
    assert!(send10(&mut e, a, &nx_msg(v10::nx_subtype::FLOW_AGE, &[]), &std).is_empty());
    assert_eq!(
        error_of(&send10(&mut e, a, &nx_msg(99, &[]), &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExpType))
    );
    let other = Message::Experimenter(Experimenter {
        experimenter: 0x4f4e_4600,
        exp_type: 1,
        data: Vec::new(),
    });
    assert_eq!(
        error_of(&send10(&mut e, a, &other, &std)),
        Some(ErrorCode::BadRequest(BadRequestCode::BadExperimenter))
    );
}

/// A 1.0 connection.
fn connect10(e: &mut Engine<Fake>) -> u64 {
    let id = e.open("peer10".into(), 0);
    e.input(id, &hello(OF10), 0);
    assert_eq!(e.conn(id).unwrap().version, v10::VERSION);
    e.conn_mut(id).unwrap().out.clear();
    id
}
