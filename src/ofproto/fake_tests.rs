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
use crate::openflow::message::{ControllerRole, RoleMsg, SwitchConfig, SwitchFeatures};
use crate::openflow::meter::{
    MeterBand, MeterBandStats, MeterConfig, MeterFeatures, MeterMod, MeterModCommand, MeterStats,
    meter_id,
};
use crate::openflow::multipart::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, MultipartReplyBody as R, MultipartRequest,
    MultipartRequestBody as Q, PortStats, TableStats,
};
use crate::openflow::port::reason;
use crate::openflow::{
    Action, ErrorCode, FlowMod, FlowRemoved, GroupMod, Header, Hello, HelloElement, Instruction,
    Message, PacketIn, PacketOut, Port, PortMod, PortNo, PortStatus, TableFeatures, decode,
    frame_len,
};
use nx::{connect10, take10};

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
    /// Removals for the next `take_removed`.
    removed: Vec<FlowRemoved>,
    /// The TLV table (no flow uses it).
    tlv: crate::port::tunnel::geneve_opts::TlvTable,
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
                // Flows that use the meter go, with reason DELETE (the
                // model's, as the flow module reports them).
                let uses = |f: &FlowMod| f.instructions.contains(&Instruction::Meter(mm.meter_id));
                for f in self.flows.iter().filter(|f| uses(f)) {
                    self.removed.push(FlowRemoved {
                        priority: f.priority,
                        reason: crate::openflow::flow::flow_removed_reason::DELETE,
                        match_: f.match_.clone(),
                        ..FlowRemoved::default()
                    });
                }
                self.flows.retain(|f| !uses(f));
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
    fn tlv_table_mod(&mut self, m: &crate::openflow::tlv::TlvTableMod) -> Result<(), ErrorCode> {
        self.tlv.apply(m, 0)
    }
    fn tlv_table(&self) -> crate::openflow::tlv::TlvTableReply {
        self.tlv.reply()
    }
    fn packet_out(&mut self, _po: &PacketOut) -> Result<Vec<PacketIn>, ErrorCode> {
        Ok(Vec::new())
    }
    fn take_packet_ins(&mut self, _max: usize) -> Vec<PacketIn> {
        Vec::new()
    }
    fn take_removed(&mut self) -> Vec<FlowRemoved> {
        std::mem::take(&mut self.removed)
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

/// Deleting a meter removes its flows: 1.4 and later hear METER_DELETE,
/// 1.3 (which has no such reason) DELETE, 1.0 DELETE.
#[test]
fn meter_delete_is_its_own_reason_from_1_4_on() {
    use crate::openflow::flow::flow_removed_reason as why;
    let mut e = engine("OpenFlow10,OpenFlow13,OpenFlow14");
    let old = connect(&mut e, OF13);
    let new = connect(&mut e, OF14);
    let v10c = connect10(&mut e);
    let meter = MeterMod {
        command: MeterModCommand::Add,
        flags: 0,
        meter_id: 3,
        bands: Vec::new(),
    };
    assert!(send(&mut e, new, 5, 1, &Message::MeterMod(meter.clone())).is_empty());
    let fm = FlowMod {
        priority: 4,
        instructions: vec![Instruction::Meter(3)],
        ..FlowMod::default()
    };
    assert!(send(&mut e, new, 5, 2, &Message::FlowMod(fm)).is_empty());
    let del = MeterMod {
        command: MeterModCommand::Delete,
        ..meter
    };
    let reason = |got: &[(Header, Message)]| match got {
        [(_, Message::FlowRemoved(f))] => Some(f.reason),
        _ => None,
    };
    let got = send(&mut e, new, 5, 3, &Message::MeterMod(del));
    assert_eq!(reason(&got), Some(why::METER_DELETE));
    assert_eq!(reason(&take(&mut e, old)), Some(why::DELETE));
    let got = take10(&mut e, v10c);
    assert!(
        matches!(&got[..], [(_, Message::FlowRemoved(f))] if f.reason == why::DELETE),
        "{got:?}"
    );
    // A 1.4 controller that unasks METER_DELETE hears nothing.
    let masks = crate::openflow::message::AsyncConfig {
        flow_removed_mask: [1 << why::DELETE, 0],
        ..Default::default()
    };
    assert!(send(&mut e, new, 5, 4, &Message::SetAsync(masks)).is_empty());
    e.broadcast_removed(vec![FlowRemoved {
        reason: why::METER_DELETE,
        ..FlowRemoved::default()
    }]);
    assert!(take(&mut e, new).is_empty());
    assert_eq!(reason(&take(&mut e, old)), Some(why::DELETE));
}

#[path = "fake_nx_tests.rs"]
mod nx;
