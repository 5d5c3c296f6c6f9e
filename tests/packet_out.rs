//! Packet-outs and what the OpenFlow agent needs around them, through the
//! public API: `FlowModule::packet_out` (outputs with their own bytes,
//! TABLE, groups, errors, port configuration), and a real switch with the
//! flow module for hairpins, controller copies with their metadata and
//! `Switch::transmit`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use mswitch::module::flow::{ControllerMeta, FlowConfig, FlowModule, Output};
use mswitch::module::{Module, TunMeta};
use mswitch::openflow::action::CONTROLLER_MAX_LEN_NO_BUFFER;
use mswitch::openflow::error::{BadActionCode, BadRequestCode};
use mswitch::openflow::flow::packet_in_reason as why;
use mswitch::openflow::multipart::FlowStatsRequest;
use mswitch::openflow::oxm::{Masked, OxmField};
use mswitch::openflow::port::config as pc;
use mswitch::openflow::{
    Action, Bucket, ErrorCode, FlowMod, GroupMod, GroupModCommand, GroupType, Instruction, Match,
    PortNo,
};
use mswitch::port::PortId;
use mswitch::switch::{Switch, SwitchConfig};
use mswitch::wire::MacAddr;
use mswitch::wire::ethernet::udp_frame;

const T: Duration = Duration::from_secs(5);

fn module() -> FlowModule {
    FlowModule::new(FlowConfig {
        tables: 4,
        ..FlowConfig::default()
    })
}

fn udp(sport: u16) -> Vec<u8> {
    udp_frame(
        80,
        MacAddr::local(2),
        MacAddr::local(1),
        [10, 0, 0, 1],
        [10, 0, 1, 1],
        sport,
        53,
    )
}

fn out(p: u32) -> Action {
    Action::output(PortNo(p))
}

fn ctl() -> Action {
    Action::output(PortNo::CONTROLLER)
}

fn eth_src(n: u32) -> Action {
    Action::SetField(OxmField::EthSrc(Masked::exact(MacAddr::local(n))))
}

fn flow(table: u8, priority: u16, fields: Vec<OxmField>, actions: Vec<Action>) -> FlowMod {
    FlowMod {
        table_id: table,
        priority,
        cookie: 0x77,
        match_: Match::from_fields(fields).unwrap(),
        instructions: vec![Instruction::ApplyActions(actions)],
        ..FlowMod::default()
    }
}

fn with_src(f: &[u8], n: u32) -> Vec<u8> {
    let mut f = f.to_vec();
    f[6..12].copy_from_slice(&MacAddr::local(n).0);
    f
}

fn packet_out_meta() -> ControllerMeta {
    ControllerMeta {
        reason: why::ACTION,
        table_id: 0,
        cookie: u64::MAX,
        max_len: CONTROLLER_MAX_LEN_NO_BUFFER,
        metadata: 0,
        ..ControllerMeta::default()
    }
}

#[test]
fn every_output_gets_the_bytes_of_its_point_in_the_list() {
    let m = module();
    let f = udp(1);
    let vid = Action::SetField(OxmField::VlanVid(Masked::exact(0x1000 | 42)));
    let acts = [
        out(2),
        eth_src(50),
        out(3),
        Action::PushVlan(0x8100),
        vid,
        out(4),
        ctl(),
        Action::output(PortNo::FLOOD),
        Action::output(PortNo::LOCAL),
    ];
    let got = m.packet_out(PortNo::CONTROLLER.0, &f, &acts, 0).unwrap();
    let src50 = with_src(&f, 50);
    let mut tagged = src50[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0, 0x00, 42]);
    tagged.extend_from_slice(&src50[12..]);
    assert_eq!(
        got,
        [
            Output::Port(PortId(2), f.clone()),
            Output::Port(PortId(3), src50),
            Output::Port(PortId(4), tagged.clone()),
            Output::Controller {
                data: tagged.clone(),
                meta: packet_out_meta(),
                tun: TunMeta::NONE,
            },
            Output::Flood(tagged.clone()),
            Output::Local(tagged),
        ]
    );
}

#[test]
fn in_port_outputs_and_the_input_port() {
    let m = module();
    let f = udp(1);
    let in_port = [Action::output(PortNo::IN_PORT)];
    // IN_PORT goes back out; an explicit output to the input is dropped.
    assert_eq!(
        m.packet_out(1, &f, &[out(1), in_port[0].clone(), out(2)], 0)
            .unwrap(),
        [
            Output::InPort(f.clone()),
            Output::Port(PortId(2), f.clone())
        ]
    );
    assert_eq!(
        m.packet_out(PortNo::LOCAL.0, &f, &in_port, 0).unwrap(),
        [Output::Local(f.clone())]
    );
    assert_eq!(
        m.packet_out(PortNo::CONTROLLER.0, &f, &in_port, 0).unwrap(),
        []
    );
    // A TTL that cannot be decremented stops the list.
    let mut low = f.clone();
    low[22] = 1;
    assert_eq!(
        m.packet_out(1, &low, &[out(2), Action::DecNwTtl, out(3)], 0)
            .unwrap(),
        [Output::Port(PortId(2), low.clone())]
    );
}

#[test]
fn table_runs_the_rewritten_packet_through_the_pipeline_and_counts() {
    let m = module();
    // udp_src 7 from port 1: eth_src 9, to 3 and the controller; other
    // packets from port 1: to 2. Table 1 holds the table-miss entry.
    let mut f7 = flow(
        0,
        10,
        vec![
            OxmField::InPort(PortNo(1)),
            OxmField::EthType(0x0800),
            OxmField::IpProto(17),
            OxmField::UdpSrc(7),
        ],
        vec![eth_src(9), out(3), ctl()],
    );
    f7.instructions.push(Instruction::GotoTable(1));
    m.flow_mod(&f7, 0).unwrap();
    m.flow_mod(
        &flow(0, 1, vec![OxmField::InPort(PortNo(1))], vec![out(2)]),
        0,
    )
    .unwrap();
    m.flow_mod(&flow(1, 0, vec![], vec![ctl()]), 0).unwrap();
    let f = udp(1);
    let set7 = Action::SetField(OxmField::UdpSrc(7));
    let got = m
        .packet_out(
            1,
            &f,
            &[
                Action::output(PortNo::TABLE),
                set7,
                Action::output(PortNo::TABLE),
            ],
            5,
        )
        .unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], Output::Port(PortId(2), f.clone()));
    let Output::Port(PortId(3), b) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(&b[6..12], &MacAddr::local(9).0);
    assert_eq!(&b[34..36], &7u16.to_be_bytes());
    let Output::Controller { data, meta, .. } = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(data, b);
    assert_eq!(
        *meta,
        ControllerMeta {
            reason: why::ACTION,
            table_id: 0,
            cookie: 0x77,
            max_len: CONTROLLER_MAX_LEN_NO_BUFFER,
            metadata: 0,
            ..ControllerMeta::default()
        }
    );
    let Output::Controller { meta, .. } = &got[3] else {
        panic!("{got:?}")
    };
    assert_eq!((meta.reason, meta.table_id), (why::NO_MATCH, 1));
    // Counted like packets: each entry once, table 0 twice, table 1 once.
    let stats = m.flow_stats(&FlowStatsRequest::default(), 5).unwrap();
    let counts: Vec<(u8, u16, u64)> = stats
        .iter()
        .map(|s| (s.table_id, s.priority, s.packet_count))
        .collect();
    assert!(counts.contains(&(0, 10, 1)) && counts.contains(&(0, 1, 1)));
    assert!(counts.contains(&(1, 0, 1)));
    let ts = m.table_stats();
    assert_eq!((ts[0].lookup_count, ts[0].matched_count), (2, 2));
    assert_eq!((ts[1].lookup_count, ts[1].matched_count), (1, 1));
}

#[test]
fn groups_run_their_buckets_on_copies_and_count() {
    let m = module();
    let bucket = |actions| Bucket {
        weight: 1,
        actions,
        ..Bucket::default()
    };
    m.group_mod(
        &GroupMod {
            command: GroupModCommand::Add,
            group_type: GroupType::All,
            group_id: 1,
            buckets: vec![bucket(vec![eth_src(5), out(2)]), bucket(vec![out(3)])],
        },
        0,
    )
    .unwrap();
    let f = udp(1);
    let got = m.packet_out(4, &f, &[Action::Group(1), out(5)], 0).unwrap();
    assert_eq!(
        got,
        [
            Output::Port(PortId(2), with_src(&f, 5)),
            Output::Port(PortId(3), f.clone()),
            Output::Port(PortId(5), f.clone()),
        ]
    );
    let g = &m.group_stats(1, 0)[0];
    assert_eq!((g.packet_count, g.byte_count), (1, f.len() as u64));
    assert_eq!(g.bucket_stats[0].packet_count, 1);
    assert_eq!(g.bucket_stats[1].packet_count, 1);
}

#[test]
fn bad_packet_outs_get_the_spec_errors() {
    let m = module();
    let f = udp(1);
    let bad_port = Err(ErrorCode::BadRequest(BadRequestCode::BadPort));
    for p in [
        0,
        PortNo::ANY.0,
        PortNo::TABLE.0,
        PortNo::FLOOD.0,
        PortNo::IN_PORT.0,
    ] {
        assert_eq!(
            m.packet_out(p, &f, &[out(2)], 0),
            bad_port,
            "in_port {p:#x}"
        );
    }
    assert_eq!(
        m.packet_out(1, &f, &[Action::Group(9)], 0),
        Err(ErrorCode::BadAction(BadActionCode::BadOutGroup))
    );
    let bad_out = Err(ErrorCode::BadAction(BadActionCode::BadOutPort));
    // NORMAL is accepted (tests/normal.rs has what it does).
    assert!(
        m.packet_out(1, &f, &[Action::output(PortNo::NORMAL)], 0)
            .is_ok()
    );
    assert_eq!(m.packet_out(1, &f, &[out(0)], 0), bad_out);
    m.set_ports(&[1, 2]);
    assert_eq!(m.packet_out(1, &f, &[out(9)], 0), bad_out);
    assert!(m.packet_out(1, &f, &[out(2)], 0).is_ok());
    assert_eq!(
        m.packet_out(1, &f, &[Action::CopyTtlOut], 0),
        Err(ErrorCode::BadAction(BadActionCode::BadType))
    );
    // A pushed label goes out with the bytes it was pushed on.
    let pushed = m
        .packet_out(1, &f, &[Action::PushMpls(0x8847), out(2)], 0)
        .expect("push_mpls is accepted");
    let [Output::Port(_, g)] = &pushed[..] else {
        panic!("{pushed:?}")
    };
    assert_eq!((g.len(), &g[12..14]), (f.len() + 4, &[0x88, 0x47][..]));
    assert_eq!(
        m.packet_out(1, &f[..10], &[out(2)], 0),
        Err(ErrorCode::BadRequest(BadRequestCode::BadLen))
    );
}

#[test]
fn packet_outs_follow_port_config() {
    let m = module();
    m.set_ports(&[1, 2, 3, 4]);
    m.set_port_config(3, pc::NO_FWD);
    m.set_port_config(4, pc::NO_PACKET_IN);
    let f = udp(1);
    assert_eq!(
        m.packet_out(1, &f, &[out(3), out(2)], 0).unwrap(),
        [Output::Port(PortId(2), f.clone())]
    );
    assert_eq!(m.flood_ports(1), [PortId(2), PortId(4)]);
    assert_eq!(
        m.flood_ports(PortNo::CONTROLLER.0),
        [PortId(1), PortId(2), PortId(4)]
    );
    assert_eq!(m.packet_out(4, &f, &[ctl()], 0).unwrap(), []);
    assert_eq!(
        m.packet_out(3, &f, &[Action::output(PortNo::IN_PORT)], 0)
            .unwrap(),
        []
    );
}

fn switch_with(fm: &Arc<FlowModule>, ports: u16) -> (Switch, Vec<mswitch::port::MemClient>) {
    let sw = Switch::new(
        SwitchConfig {
            workers: 1,
            ..SwitchConfig::default()
        },
        fm.clone(),
    )
    .unwrap();
    let mut clients = Vec::new();
    for p in 1..=ports {
        let (port, client) = common::port(&format!("po{p}"), common::default_cfg());
        common::attach(&sw, &port, p);
        clients.push(client);
    }
    (sw, clients)
}

#[test]
fn a_switch_delivers_hairpins_controller_copies_and_packet_outs() {
    let _g = common::serial();
    let fm = Arc::new(module());
    let (sw, mut c) = switch_with(&fm, 3);
    let on = |p: u32, a| flow(0, 5, vec![OxmField::InPort(PortNo(p))], a);
    let ctl64 = Action::Output {
        port: PortNo::CONTROLLER,
        max_len: 64,
    };
    fm.flow_mod(
        &on(
            1,
            vec![Action::output(PortNo::IN_PORT), out(2), eth_src(7), ctl64],
        ),
        0,
    )
    .unwrap();
    fm.flow_mod(&on(2, vec![out(2)]), 0).unwrap();
    fm.flow_mod(&flow(0, 0, vec![], vec![ctl()]), 0).unwrap();
    let f = common::frame(100, 1, MacAddr::local(2), 1);
    common::send_all(&mut c[0], std::slice::from_ref(&f), T);
    // Back out of port 1 with the bytes of the last output (IN_PORT is
    // not a port number: no version of its own), and out of 2 as it was
    // when output there.
    let want = with_src(&f, 7);
    assert_eq!(common::recv_n(&mut c[0], 1, T), vec![want.clone()]);
    assert_eq!(common::recv_n(&mut c[1], 1, T), vec![f.clone()]);
    assert!(mswitch::sys::poll_readable(sw.packet_in_fd(), Some(T)));
    let p = sw.pop_packet_in().unwrap();
    assert_eq!((p.in_port, &p.data), (PortId(1), &want));
    let meta = fm.controller_meta(p.tag).unwrap();
    assert_eq!(
        (meta.reason, meta.cookie, meta.max_len),
        (why::ACTION, 0x77, 64)
    );
    // An explicit output to the input port is dropped (no_dest).
    common::send_all(&mut c[1], std::slice::from_ref(&f), T);
    common::wait_until("the drop", T, || common::totals(&sw, 2).drops.no_dest == 1);
    assert_eq!(c[1].recv_all(), Vec::<Vec<u8>>::new());
    // Port 3: the table-miss entry; then NO_PACKET_IN silences it.
    common::send_all(&mut c[2], std::slice::from_ref(&f), T);
    let mut pin = None;
    common::wait_until("a packet-in from 3", T, || {
        pin = sw.pop_packet_in();
        pin.is_some()
    });
    let meta = fm.controller_meta(pin.unwrap().tag).unwrap();
    assert_eq!((meta.reason, meta.table_id), (why::NO_MATCH, 0));
    // NO_RECV on 3: dropped, counted by the module.
    fm.set_port_config(3, pc::NO_RECV);
    common::send_all(&mut c[2], std::slice::from_ref(&f), T);
    common::wait_rx(&sw, 3, 2);
    common::wait_until("no_recv_drops", T, || {
        fm.counters().contains(&("no_recv_drops", 1))
    });
    assert!(sw.pop_packet_in().is_none());
    // A packet-out, transmitted by the agent's path.
    let outs = fm
        .packet_out(
            PortNo::CONTROLLER.0,
            &f,
            &[out(3), eth_src(8), out(1)],
            sw.now(),
        )
        .unwrap();
    for o in &outs {
        let Output::Port(p, data) = o else {
            panic!("{o:?}")
        };
        assert_eq!(sw.transmit(*p, &[data]), 1);
    }
    assert_eq!(common::recv_n(&mut c[2], 1, T), vec![f.clone()]);
    assert_eq!(common::recv_n(&mut c[0], 1, T), vec![with_src(&f, 8)]);
}

#[test]
fn a_switch_floods_around_ports_that_refuse_outputs() {
    let _g = common::serial();
    let fm = Arc::new(module());
    let (sw, mut c) = switch_with(&fm, 4);
    fm.flow_mod(&flow(0, 0, vec![], vec![Action::output(PortNo::ALL)]), 0)
        .unwrap();
    let f = common::frame(100, 1, MacAddr::BROADCAST, 1);
    fm.set_port_config(2, pc::NO_FWD);
    fm.set_port_config(4, pc::PORT_DOWN);
    common::send_all(&mut c[0], std::slice::from_ref(&f), T);
    assert_eq!(common::recv_n(&mut c[2], 1, T), vec![f.clone()]);
    // Port 4 is down: what it receives is dropped too.
    common::send_all(&mut c[3], std::slice::from_ref(&f), T);
    common::wait_rx(&sw, 4, 1);
    fm.set_port_config(2, 0);
    fm.set_port_config(4, 0);
    common::send_all(&mut c[0], std::slice::from_ref(&f), T);
    for k in [1, 2, 3] {
        assert_eq!(
            common::recv_n(&mut c[k], 1, T),
            vec![f.clone()],
            "port {}",
            k + 1
        );
    }
    assert_eq!(c[0].recv_all(), Vec::<Vec<u8>>::new());
    assert_eq!(
        c[1].recv_all(),
        Vec::<Vec<u8>>::new(),
        "nothing while NO_FWD"
    );
    assert_eq!(c[2].recv_all(), Vec::<Vec<u8>>::new());
    assert_eq!(c[3].recv_all(), Vec::<Vec<u8>>::new(), "nothing while down");
}
