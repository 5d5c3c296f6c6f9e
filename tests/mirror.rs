//! Port mirrors in the switching core, with mem ports and the `learn`
//! module: copies of what a selected port receives and is sent go to the
//! output port whatever the module decided, the output port gets nothing
//! else, what it sends is dropped, and the mirror counts what it copied.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mswitch::module::learn::{Learn, LearnConfig};
use mswitch::port::PortId;
use mswitch::switch::mirror::{MirrorCounters, MirrorOut, MirrorSpec};
use mswitch::switch::{Switch, SwitchConfig};
use mswitch::wire::MacAddr;

const T: Duration = Duration::from_secs(5);

#[test]
fn a_mirror_copies_a_ports_traffic_to_its_reserved_output() {
    let _g = serial();
    let sw = Switch::new(
        SwitchConfig::default(),
        Arc::new(Learn::new(LearnConfig::default())),
    )
    .unwrap();
    let mut clients = Vec::new();
    for p in 1..=4u16 {
        let (port, client) = port(&format!("m{p}"), default_cfg());
        attach(&sw, &port, p);
        clients.push(client);
    }
    let counters = Arc::new(MirrorCounters::default());
    sw.set_mirrors(&[MirrorSpec {
        all: false,
        src: vec![PortId(1)],
        dst: vec![PortId(1)],
        out: MirrorOut::Port(PortId(4)),
        select_vlan: None,
        counters: counters.clone(),
    }]);
    let bcast = MacAddr([0xff; 6]);
    // Received on 1 (a flood): 2 and 3 get it, 4 only as the mirror copy.
    let f1 = frame(100, 1, bcast, 0);
    send_all(&mut clients[0], std::slice::from_ref(&f1), T);
    wait_rx(&sw, 1, 1);
    for c in [1, 2] {
        assert_eq!(recv_n(&mut clients[c], 1, T), vec![f1.clone()]);
    }
    assert_eq!(recv_n(&mut clients[3], 1, T), vec![f1.clone()]);
    // Sent to 1 (learned there) from 2: mirrored.
    let f2 = frame(200, 2, mac(1), 1);
    send_all(&mut clients[1], std::slice::from_ref(&f2), T);
    assert_eq!(recv_n(&mut clients[0], 1, T), vec![f2.clone()]);
    assert_eq!(recv_n(&mut clients[3], 1, T), vec![f2.clone()]);
    // From 3 to 2 (learned): not selected. A flood from 3 reaches 1, so it
    // is mirrored, but 4 never gets it as a flood member.
    let f3 = frame(300, 3, mac(2), 2);
    let f4 = frame(120, 3, bcast, 3);
    send_all(&mut clients[2], &[f3.clone(), f4.clone()], T);
    wait_rx(&sw, 3, 2);
    assert_eq!(recv_n(&mut clients[1], 2, T), vec![f3, f4.clone()]);
    assert_eq!(recv_n(&mut clients[0], 1, T), vec![f4.clone()]);
    assert_eq!(recv_n(&mut clients[3], 1, T), vec![f4.clone()]);
    // What the output port sends goes nowhere; nor does learning see it.
    let f5 = frame(80, 4, bcast, 4);
    send_all(&mut clients[3], std::slice::from_ref(&f5), T);
    wait_rx(&sw, 4, 1);
    assert_eq!(counters.read(), (3, 100 + 200 + 120));
    wait_tx(&sw, 4, 3);
    for (c, client) in clients.iter_mut().take(3).enumerate() {
        assert!(client.recv_all().is_empty(), "port {} got more", c + 1);
    }

    // Mirrors removed: port 4 is an ordinary port again.
    sw.set_mirrors(&[]);
    let f6 = frame(90, 1, bcast, 5);
    send_all(&mut clients[0], std::slice::from_ref(&f6), T);
    for c in [1, 2, 3] {
        assert_eq!(recv_n(&mut clients[c], 1, T), vec![f6.clone()]);
    }
    assert_eq!(counters.read().0, 3);
}

/// RSPAN in the core: a mirror selecting VLAN 10 with output VLAN 99
/// sends each selected frame, after the module's own copies, tagged 99 to
/// the trunk carrying 99 (back out of it when it came in there) and
/// untagged to the access port of 99; frames of other VLANs are not
/// copied, and the mirror counts what it took.
#[test]
fn an_output_vlan_mirror_tags_its_copies_for_the_ports_carrying_it() {
    let _g = serial();
    let sw = Switch::new(
        SwitchConfig::default(),
        Arc::new(Learn::new(LearnConfig::default())),
    )
    .unwrap();
    let mut cl = Vec::new();
    for p in 1..=4u16 {
        let (port, client) = port(&format!("v{p}"), default_cfg());
        attach(&sw, &port, p);
        cl.push(client);
    }
    let vl = |s: &str| s.parse::<mswitch::module::flow::PortVlan>().unwrap();
    let counters = Arc::new(MirrorCounters::default());
    sw.set_mirrors_with_vlans(
        &[MirrorSpec {
            all: true,
            src: vec![],
            dst: vec![],
            out: MirrorOut::Vlan(99),
            select_vlan: Some(vec![10]),
            counters: counters.clone(),
        }],
        &[
            (PortId(1), vl("tag=10")),
            (PortId(2), vl("tag=20")),
            (PortId(3), vl("trunks=10,99")),
            (PortId(4), vl("tag=99")),
        ],
    );
    let tag = |f: &[u8], vid: u16| {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00]);
        t.extend_from_slice(&vid.to_be_bytes());
        t.extend_from_slice(&f[12..]);
        t
    };
    let bcast = MacAddr([0xff; 6]);
    // VLAN 10 from the access port: the flood, then the copies.
    let f1 = frame(100, 1, bcast, 0);
    send_all(&mut cl[0], std::slice::from_ref(&f1), T);
    assert_eq!(recv_n(&mut cl[1], 1, T), vec![f1.clone()]);
    assert_eq!(recv_n(&mut cl[2], 2, T), vec![f1.clone(), tag(&f1, 99)]);
    assert_eq!(recv_n(&mut cl[3], 2, T), vec![f1.clone(), f1.clone()]);
    // VLAN 10 tagged on the trunk: its tag replaced, and back out of it.
    let f2 = tag(&frame(120, 3, bcast, 1), 10);
    send_all(&mut cl[2], std::slice::from_ref(&f2), T);
    let untagged = [&f2[..12], &f2[16..]].concat();
    assert_eq!(recv_n(&mut cl[2], 1, T), vec![tag(&untagged, 99)]);
    assert_eq!(recv_n(&mut cl[3], 2, T), vec![f2.clone(), untagged]);
    for c in [0, 1] {
        assert_eq!(recv_n(&mut cl[c], 1, T), vec![f2.clone()]);
    }
    // VLAN 20: nothing mirrored.
    let f3 = frame(90, 2, bcast, 2);
    send_all(&mut cl[1], std::slice::from_ref(&f3), T);
    for c in [0, 2, 3] {
        assert_eq!(recv_n(&mut cl[c], 1, T), vec![f3.clone()]);
    }
    assert_eq!(counters.read(), (2, 100 + 124));
    for (c, client) in cl.iter_mut().enumerate() {
        assert!(client.recv_all().is_empty(), "port {} got more", c + 1);
    }
}
