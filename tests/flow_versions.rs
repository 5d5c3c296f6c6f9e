//! The flow module gives each output the bytes the action list had at
//! that point (`output:5,pop_vlan,output:1`, Faucet's flood rules): the
//! first port gets the tagged frame, the others the untagged one, whether
//! the packet took the upcall, a memo hit in its batch or a cache hit;
//! and a port mirror sees such a copy as its port does.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mswitch::module::flow::{FlowConfig, FlowModule};
use mswitch::openflow::oxm::{Masked, OxmField};
use mswitch::openflow::{Action, FlowMod, Instruction, Match, PortNo};
use mswitch::port::{MemClient, PortId};
use mswitch::switch::mirror::{MirrorCounters, MirrorOut, MirrorSpec};
use mswitch::switch::{Switch, SwitchConfig};
use mswitch::wire::MacAddr;

const T: Duration = Duration::from_secs(5);

/// A switch on the flow module with mem ports 1..=`ports` and Faucet's
/// kind of flood rule for port 1: push VLAN `vid`, output to `tagged`,
/// pop it, output to each of `untagged`.
fn switch(ports: u16, vid: u16, tagged: u32, untagged: &[u32]) -> (Switch, Vec<MemClient>) {
    let f = Arc::new(FlowModule::new(FlowConfig::default()));
    let sw = Switch::new(SwitchConfig::default(), f.clone()).unwrap();
    let mut cl = Vec::new();
    for p in 1..=ports {
        let (port, c) = port(&format!("fv{vid}p{p}"), default_cfg());
        attach(&sw, &port, p);
        cl.push(c);
    }
    let mut actions = vec![
        Action::PushVlan(0x8100),
        Action::SetField(OxmField::VlanVid(Masked::exact(0x1000 | vid))),
        Action::output(PortNo(tagged)),
        Action::PopVlan,
    ];
    actions.extend(untagged.iter().map(|&p| Action::output(PortNo(p))));
    let fm = FlowMod {
        priority: 10,
        match_: Match::from_fields(vec![OxmField::InPort(PortNo(1))]).unwrap(),
        instructions: vec![Instruction::ApplyActions(actions)],
        ..FlowMod::default()
    };
    f.flow_mod(&fm, 0).unwrap();
    (sw, cl)
}

#[test]
fn each_output_gets_the_bytes_it_was_given() {
    let _g = serial();
    let (sw, mut cl) = switch(5, 100, 5, &[2, 3]);
    let bcast = MacAddr([0xff; 6]);
    let tagged = |f: &[u8]| {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0, 0, 100]);
        t.extend_from_slice(&f[12..]);
        t
    };
    // Two in one batch (upcall, then memo), then one more (cache hit).
    let frames = [frame(100, 1, bcast, 0), frame(100, 1, bcast, 1)];
    send_all(&mut cl[0], &frames, T);
    wait_rx(&sw, 1, 2);
    let later = frame(120, 1, bcast, 2);
    send_all(&mut cl[0], std::slice::from_ref(&later), T);
    let all = [frames[0].clone(), frames[1].clone(), later];
    let want_tagged: Vec<Vec<u8>> = all.iter().map(|f| tagged(f)).collect();
    assert_eq!(recv_n(&mut cl[4], 3, T), want_tagged);
    for c in [1, 2] {
        assert_eq!(recv_n(&mut cl[c], 3, T), all.to_vec());
    }
    assert!(cl[3].recv_all().is_empty());
}

/// A mirror of a destination sees the copy rewritten for it.
#[test]
fn a_mirror_of_a_destination_sees_its_rewritten_copy() {
    let _g = serial();
    let (sw, mut cl) = switch(4, 7, 3, &[2]);
    let counters = Arc::new(MirrorCounters::default());
    sw.set_mirrors(&[MirrorSpec {
        all: false,
        src: vec![],
        dst: vec![PortId(3)],
        out: MirrorOut::Port(PortId(4)),
        select_vlan: None,
        counters: counters.clone(),
    }]);
    let fr = frame(100, 1, mac(2), 0);
    send_all(&mut cl[0], std::slice::from_ref(&fr), T);
    let tagged = recv_n(&mut cl[2], 1, T);
    assert_eq!(tagged[0].len(), 104);
    assert_eq!(recv_n(&mut cl[1], 1, T), vec![fr]);
    assert_eq!(recv_n(&mut cl[3], 1, T), tagged);
    assert_eq!(counters.read(), (1, 104));
}
