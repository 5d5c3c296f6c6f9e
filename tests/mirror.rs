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
use mswitch::switch::mirror::{MirrorCounters, MirrorSpec};
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
        out: PortId(4),
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
