//! The flow module's NORMAL action (Open vSwitch's MAC-learning switch per
//! VLAN) through the module's public API — `process` on byte frames,
//! `flow_mod`, `packet_out`, `set_port_vlan`, `fdb` — and through a real
//! switch with memory ports, where tagged and untagged versions of one
//! packet leave as the packet and a variant.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mswitch::module::flow::{FlowConfig, FlowModule, Output, PortVlan, VlanMode};
use mswitch::module::mactable::MacLimits;
use mswitch::module::{Module, Nanos, Verdict, Verdicts};
use mswitch::openflow::{Action, FlowMod, Instruction, Match, PortNo};
use mswitch::packet::Batch;
use mswitch::port::PortId;
use mswitch::switch::{Switch, SwitchConfig};
use mswitch::wire::MacAddr;

const SEC: Nanos = 1_000_000_000;

fn mac(n: u32) -> MacAddr {
    MacAddr::local(n)
}

/// An untagged frame of 60 bytes from `src` to `dst`, with `seq` in the
/// payload.
fn frame(dst: MacAddr, src: MacAddr, seq: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[20] = seq;
    f
}

/// `f` with an 802.1Q tag of `tci` after the addresses.
fn tagged(f: &[u8], tci: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00]);
    t.extend_from_slice(&tci.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

fn normal_flow(priority: u16, actions: Vec<Action>) -> FlowMod {
    FlowMod {
        priority,
        match_: Match::default(),
        instructions: vec![Instruction::ApplyActions(actions)],
        ..FlowMod::default()
    }
}

/// A bridge as Open vSwitch makes it: `priority=0,actions=NORMAL`, ports
/// 1..=n attached.
fn bridge(n: u16, macs: MacLimits) -> FlowModule {
    let m = FlowModule::new(FlowConfig {
        normal: true,
        macs,
        ..FlowConfig::default()
    });
    for p in 1..=n {
        m.port_attached(PortId(p));
    }
    m
}

/// What one packet became: port -> bytes (a flood as port 0).
type Sent = BTreeMap<u16, Vec<u8>>;

/// Runs `frames` from `in_port` through `m` at `now`; per packet, where
/// it went with which bytes.
fn run(m: &FlowModule, in_port: u16, frames: &[Vec<u8>], now: Nanos) -> Vec<Sent> {
    // Four spare bytes per buffer, so a tag can be pushed in place.
    let lens: Vec<usize> = frames.iter().map(|f| f.len()).collect();
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = f.clone();
            b.extend_from_slice(&[0; 4]);
            b
        })
        .collect();
    let mut refs = Vec::new();
    let mut b = Batch::from_buffers(&mut bufs, &mut refs, PortId(in_port));
    for (i, &l) in lens.iter().enumerate() {
        assert!(b.set_len(i, l));
    }
    let mut out = Verdicts::default();
    out.reset(frames.len());
    m.process(&mut b, &mut out, now);
    let mut sent = vec![Sent::new(); frames.len()];
    for (i, s) in sent.iter_mut().enumerate() {
        let d = b.data(i).to_vec();
        match out.get(i) {
            Verdict::Port(p) => {
                s.insert(p.0, d);
            }
            Verdict::Ports(k) => {
                for p in out.set_members(k) {
                    s.insert(p.0, d.clone());
                }
            }
            Verdict::Flood => {
                s.insert(0, d);
            }
            _ => {}
        }
    }
    for (i, to, bytes) in out.variants() {
        let ports = match to {
            Verdict::Port(p) => vec![p],
            Verdict::Ports(k) => out.set_members(k).to_vec(),
            v => panic!("variant to {v:?}"),
        };
        for p in ports {
            assert!(
                sent[i].insert(p.0, bytes.to_vec()).is_none(),
                "port {} got packet {i} twice",
                p.0
            );
        }
    }
    sent
}

fn one(m: &FlowModule, in_port: u16, f: &[u8], now: Nanos) -> Sent {
    run(m, in_port, &[f.to_vec()], now).remove(0)
}

fn ports(s: &Sent) -> Vec<u16> {
    s.keys().copied().collect()
}

fn counter(m: &FlowModule, name: &str) -> u64 {
    m.counters()
        .into_iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

fn set_vlan(m: &FlowModule, p: u16, cfg: &str) {
    m.set_port_vlan(PortId(p), cfg.parse().unwrap());
}

#[test]
fn learns_floods_unknown_and_forwards_known_unicast() {
    let m = bridge(4, MacLimits::default());
    let a = frame(mac(2), mac(1), 1);
    let s = one(&m, 1, &a, 0);
    assert_eq!(ports(&s), [2, 3, 4], "unknown: flooded, not to the input");
    assert!(s.values().all(|b| *b == a));
    let s = one(&m, 2, &frame(mac(1), mac(2), 2), 0);
    assert_eq!(ports(&s), [1], "learned on port 1");
    let s = one(&m, 1, &a, 0);
    assert_eq!(ports(&s), [2]);
    // A destination on the input port goes nowhere.
    assert!(one(&m, 1, &frame(mac(1), mac(9), 3), 0).is_empty());
    // Broadcast and multicast flood.
    assert_eq!(
        ports(&one(&m, 1, &frame(MacAddr::BROADCAST, mac(1), 4), 0)),
        [2, 3, 4]
    );
    let mcast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    assert_eq!(ports(&one(&m, 2, &frame(mcast, mac(2), 5), 0)), [1, 3, 4]);
    // A group source is never learned, but still forwarded.
    let s = one(&m, 3, &frame(mac(1), MacAddr::BROADCAST, 6), 0);
    assert_eq!(ports(&s), [1]);
    let fdb = m.fdb(0);
    assert_eq!(
        fdb.iter()
            .map(|e| (e.port.0, e.vlan, e.mac))
            .collect::<Vec<_>>(),
        [(1, 0, mac(1)), (2, 0, mac(2)), (1, 0, mac(9))]
    );
    assert_eq!(counter(&m, "mac_learned"), 3);
    m.fdb_flush();
    assert!(m.fdb(0).is_empty());
    assert_eq!(
        ports(&one(&m, 1, &a, 0)),
        [2, 3, 4],
        "flushed: flooded again"
    );
}

/// Ports: 1, 2 access VLAN 10; 3 access VLAN 20; 4 trunk of 10 and 20;
/// 5 the default (trunk of all, VLAN 0 untagged); 6 native-untagged 10
/// trunking 20; 7 native-tagged 20 trunking 10.
fn vlan_bridge() -> FlowModule {
    let m = bridge(7, MacLimits::default());
    set_vlan(&m, 1, "tag=10");
    set_vlan(&m, 2, "tag=10");
    set_vlan(&m, 3, "tag=20");
    set_vlan(&m, 4, "trunks=10,20");
    set_vlan(&m, 6, "vlan_mode=native-untagged tag=10 trunks=20");
    set_vlan(&m, 7, "vlan_mode=native-tagged tag=20 trunks=10");
    m
}

#[test]
fn floods_stay_in_their_vlan_tagged_and_untagged_as_each_port_wants() {
    let m = vlan_bridge();
    let b = frame(MacAddr::BROADCAST, mac(1), 1);
    let s = one(&m, 1, &b, 0);
    assert_eq!(ports(&s), [2, 4, 5, 6, 7], "VLAN 10 only: not port 3");
    assert_eq!(s[&2], b, "access: untagged");
    assert_eq!(s[&6], b, "native-untagged in its native VLAN: untagged");
    for p in [4, 5, 7] {
        assert_eq!(s[&p], tagged(&b, 10), "port {p}: tagged 10");
    }
    // A batch of them: every packet gets its own tagged variant, and one
    // that needs a tag pushed in place (trunk only) gets it each time.
    for s in run(&m, 1, &vec![b.clone(); 5], 0) {
        assert_eq!(ports(&s), [2, 4, 5, 6, 7]);
        assert_eq!(s[&4], tagged(&b, 10));
    }
    one(&m, 4, &tagged(&frame(MacAddr::BROADCAST, mac(4), 9), 10), 0);
    let to4 = frame(mac(4), mac(1), 5);
    for s in run(&m, 1, &vec![to4.clone(); 5], 0) {
        assert_eq!(s, Sent::from([(4, tagged(&to4, 10))]));
    }
    // From the trunk, tagged 20 with a priority: to the VLAN 20 ports.
    let t = tagged(&frame(MacAddr::BROADCAST, mac(40), 2), 0x6000 | 20);
    let s = one(&m, 4, &t, 0);
    assert_eq!(ports(&s), [3, 5, 6, 7]);
    assert_eq!(
        s[&3],
        frame(MacAddr::BROADCAST, mac(40), 2),
        "access: untagged"
    );
    assert_eq!(s[&5], t, "trunk: the tag as received, priority kept");
    assert_eq!(s[&6], t);
    assert_eq!(s[&7], t, "native-tagged: its native VLAN tagged");
    // Untagged on the native-tagged port: its native VLAN 20.
    let u = frame(MacAddr::BROADCAST, mac(70), 3);
    let s = one(&m, 7, &u, 0);
    assert_eq!(ports(&s), [3, 4, 5, 6]);
    assert_eq!(s[&3], u);
    assert_eq!(s[&4], tagged(&u, 20));
    // Untagged on the default port: VLAN 0, which only it carries.
    assert!(one(&m, 5, &frame(MacAddr::BROADCAST, mac(50), 4), 0).is_empty());
    assert_eq!(
        m.fdb(0)
            .iter()
            .map(|e| (e.vlan, e.port.0))
            .collect::<Vec<_>>(),
        [(0, 5), (10, 1), (10, 4), (20, 4), (20, 7)]
    );
}

#[test]
fn vlan_10_never_reaches_vlan_20_ports() {
    let m = vlan_bridge();
    // A host of VLAN 20 on port 3, and the same MAC is unknown in VLAN 10.
    one(&m, 3, &frame(MacAddr::BROADCAST, mac(3), 1), 0);
    let s = one(&m, 1, &frame(mac(3), mac(1), 2), 0);
    assert!(!s.contains_key(&3), "learned in VLAN 20 only");
    assert_eq!(ports(&s), [2, 4, 5, 6, 7]);
    // Known unicast in VLAN 20 from the trunk: to port 3, untagged.
    let t = tagged(&frame(mac(3), mac(44), 3), 20);
    let s = one(&m, 4, &t, 0);
    assert_eq!(ports(&s), [3]);
    assert_eq!(s[&3], frame(mac(3), mac(44), 3));
    // And the reply goes back tagged.
    let s = one(&m, 3, &frame(mac(44), mac(3), 4), 0);
    assert_eq!(ports(&s), [4]);
    assert_eq!(s[&4], tagged(&frame(mac(44), mac(3), 4), 20));
    // Many packets of both VLANs in one batch, all kept apart.
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            if i % 2 == 0 {
                frame(MacAddr::BROADCAST, mac(100 + i), i as u8)
            } else {
                tagged(&frame(MacAddr::BROADCAST, mac(100 + i), i as u8), 20)
            }
        })
        .collect();
    for (i, s) in run(&m, 4, &frames, 0).iter().enumerate() {
        if i % 2 == 0 {
            assert!(s.is_empty(), "untagged on a trunk without VLAN 0: dropped");
        } else {
            assert_eq!(ports(s), [3, 5, 6, 7]);
        }
    }
}

#[test]
fn access_ports_drop_tagged_frames_but_take_priority_tags() {
    let m = vlan_bridge();
    let f = frame(MacAddr::BROADCAST, mac(1), 1);
    assert!(
        one(&m, 1, &tagged(&f, 10), 0).is_empty(),
        "even its own VLAN"
    );
    assert!(one(&m, 1, &tagged(&f, 20), 0).is_empty());
    assert_eq!(counter(&m, "normal_vlan_drops"), 2);
    // Priority-tagged (VID 0): in the access VLAN; untagged to access
    // ports, tagged 10 (priority kept) to trunks.
    let s = one(&m, 1, &tagged(&f, 0xa000), 0);
    assert_eq!(ports(&s), [2, 4, 5, 6, 7]);
    assert_eq!(s[&2], f);
    assert_eq!(s[&4], tagged(&f, 0xa000 | 10));
    // A trunk drops VLANs it does not carry.
    assert!(one(&m, 4, &tagged(&f, 30), 0).is_empty());
    assert_eq!(counter(&m, "normal_vlan_drops"), 3);
    // PortVlan round trip through the module.
    assert_eq!(m.port_vlan(PortId(6)).mode(), VlanMode::NativeUntagged);
    assert_eq!(m.port_vlan(PortId(5)), PortVlan::default());
}

#[test]
fn entries_age_out_with_the_configured_time() {
    let m = bridge(
        3,
        MacLimits {
            aging_secs: 10,
            ..MacLimits::default()
        },
    );
    one(&m, 2, &frame(MacAddr::BROADCAST, mac(2), 1), 0);
    assert_eq!(ports(&one(&m, 1, &frame(mac(2), mac(1), 2), 9 * SEC)), [2]);
    assert_eq!(m.fdb(9 * SEC)[1].age_secs, 9);
    // Ten seconds without traffic from mac(2): forgotten, flooded.
    assert_eq!(
        ports(&one(&m, 1, &frame(mac(2), mac(1), 3), 10 * SEC)),
        [2, 3]
    );
    assert_eq!(m.fdb(10 * SEC).len(), 1);
    m.tick(30 * SEC);
    assert!(m.fdb(30 * SEC).is_empty());
    assert_eq!(counter(&m, "mac_aged"), 2);
    // The default is Open vSwitch's 300 s.
    assert_eq!(FlowConfig::default().macs.aging_secs, 300);
    assert_eq!(FlowConfig::default().macs.max_entries, 8192);
}

#[test]
fn a_host_that_moves_is_followed_with_a_warm_cache() {
    let m = bridge(3, MacLimits::default());
    let to_h = |seq| frame(mac(7), mac(1), seq);
    one(&m, 2, &frame(MacAddr::BROADCAST, mac(7), 0), 0);
    // Warm the caches: many batches of the same flows.
    for k in 0..50 {
        let s = run(&m, 1, &vec![to_h(k); 32], SEC);
        assert!(s.iter().all(|s| ports(s) == [2]));
    }
    assert!(counter(&m, "memo_hits") + counter(&m, "megaflow_hits") > 1000);
    let (upcalls, generation) = (counter(&m, "upcalls"), m.generation());
    // The host shows up on port 3: the next packets follow it.
    let s = one(&m, 3, &frame(mac(1), mac(7), 9), 2 * SEC);
    assert_eq!(ports(&s), [1]);
    let s = run(&m, 1, &vec![to_h(2); 8], 2 * SEC);
    assert!(s.iter().all(|s| ports(s) == [3]), "followed: {s:?}");
    // Only port 3's first packet (a new in_port) made a megaflow; the
    // caches were never emptied.
    assert_eq!(counter(&m, "upcalls"), upcalls + 1);
    assert_eq!(
        (m.generation(), counter(&m, "cache_resets")),
        (generation, 0)
    );
    assert_eq!(counter(&m, "mac_moved"), 1);
    assert_eq!(
        m.fdb(2 * SEC)
            .iter()
            .find(|e| e.mac == mac(7))
            .unwrap()
            .port,
        PortId(3)
    );
}

#[test]
fn a_mac_flood_from_one_port_evicts_nobody_else() {
    let m = bridge(
        12,
        MacLimits {
            max_entries: 256,
            port_max: 128,
            aging_secs: 300,
        },
    );
    for p in 2..12u16 {
        one(&m, p, &frame(MacAddr::BROADCAST, mac(u32::from(p)), 0), 0);
    }
    for chunk in 0..40u32 {
        let frames: Vec<Vec<u8>> = (0..250)
            .map(|i| frame(mac(2), mac(1_000_000 + chunk * 250 + i), 0))
            .collect();
        run(&m, 1, &frames, SEC);
    }
    let fdb = m.fdb(SEC);
    assert!(fdb.len() <= 256);
    assert!(fdb.iter().filter(|e| e.port == PortId(1)).count() <= 128);
    for p in 2..12u16 {
        assert!(
            fdb.iter()
                .any(|e| e.port == PortId(p) && e.mac == mac(u32::from(p))),
            "host on port {p} survives"
        );
        // And is still reached directly.
        assert_eq!(
            ports(&one(&m, 1, &frame(mac(u32::from(p)), mac(1), 1), SEC)),
            [p]
        );
    }
    assert!(counter(&m, "mac_refused") > 0);
    // A new quiet host still finds room.
    one(&m, 12, &frame(MacAddr::BROADCAST, mac(12), 0), SEC);
    assert!(m.fdb(SEC).iter().any(|e| e.port == PortId(12)));
}

#[test]
fn normal_with_other_outputs_in_one_action_list() {
    let m = FlowModule::new(FlowConfig::default());
    for p in 1..=4 {
        m.port_attached(PortId(p));
    }
    m.set_port_vlan(PortId(4), PortVlan::trunk(&[10]).unwrap());
    m.set_port_vlan(PortId(1), PortVlan::access(10).unwrap());
    m.set_port_vlan(PortId(2), PortVlan::access(10).unwrap());
    m.set_port_vlan(PortId(3), PortVlan::access(20).unwrap());
    m.flow_mod(
        &normal_flow(
            0,
            vec![Action::output(PortNo(3)), Action::output(PortNo::NORMAL)],
        ),
        0,
    )
    .unwrap();
    let b = frame(MacAddr::BROADCAST, mac(1), 1);
    let s = one(&m, 1, &b, 0);
    // Port 3 (VLAN 20) from output:3 as is, 2 and 4 from NORMAL.
    assert_eq!(ports(&s), [2, 3, 4]);
    assert_eq!(s[&3], b);
    assert_eq!(s[&2], b);
    assert_eq!(s[&4], tagged(&b, 10));
    // Known unicast: output:3 plus the learned port.
    one(&m, 2, &frame(MacAddr::BROADCAST, mac(2), 2), 0);
    let s = one(&m, 1, &frame(mac(2), mac(1), 3), 0);
    assert_eq!(ports(&s), [2, 3]);
    // NORMAL then CONTROLLER: the packet goes to both.
    let m2 = bridge(2, MacLimits::default());
    m2.flow_mod(
        &normal_flow(
            0,
            vec![
                Action::output(PortNo::NORMAL),
                Action::output(PortNo::CONTROLLER),
            ],
        ),
        0,
    )
    .unwrap();
    let mut bufs = vec![frame(MacAddr::BROADCAST, mac(1), 1)];
    let mut refs = Vec::new();
    let mut batch = Batch::from_buffers(&mut bufs, &mut refs, PortId(1));
    let mut out = Verdicts::default();
    out.reset(1);
    m2.process(&mut batch, &mut out, 0);
    assert_eq!(out.get(0), Verdict::Port(PortId(2)));
    assert_eq!(out.controller_copies().len(), 1);
}

#[test]
fn packet_out_to_normal() {
    let m = vlan_bridge();
    let normal = [Action::output(PortNo::NORMAL)];
    // From the controller: a trunk of all VLANs that learns nothing.
    let t = tagged(&frame(MacAddr::BROADCAST, mac(99), 1), 10);
    let outs = m.packet_out(PortNo::CONTROLLER.0, &t, &normal, 0).unwrap();
    let got: Vec<(u16, Vec<u8>)> = outs
        .into_iter()
        .map(|o| match o {
            Output::Port(p, d) => (p.0, d),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        [1, 2, 4, 5, 6, 7]
    );
    assert_eq!(got[0].1, frame(MacAddr::BROADCAST, mac(99), 1));
    assert_eq!(got[2].1, t);
    assert!(m.fdb(0).is_empty());
    // As received on port 1: learns, and excludes the input.
    let f = frame(mac(99), mac(1), 2);
    let outs = m.packet_out(1, &f, &normal, 0).unwrap();
    assert_eq!(outs.len(), 5);
    assert_eq!(m.fdb(0).len(), 1);
    let outs = m
        .packet_out(2, &frame(mac(1), mac(2), 3), &normal, 0)
        .unwrap();
    assert_eq!(outs, [Output::Port(PortId(1), frame(mac(1), mac(2), 3))]);
}

/// Through a real switch: one packet of VLAN 10 from an access port
/// leaves untagged on the other access port and tagged on the trunk, in
/// order with the rest, and the reply comes back.
#[test]
fn a_switch_sends_both_versions_of_a_packet() {
    let _g = common::serial();
    let fm = Arc::new(bridge(0, MacLimits::default()));
    let sw = Switch::new(
        SwitchConfig {
            workers: 1,
            ..SwitchConfig::default()
        },
        fm.clone(),
    )
    .unwrap();
    let mut clients = Vec::new();
    for p in 1..=4u16 {
        let (port, client) = common::port(&format!("n{p}"), common::default_cfg());
        common::attach(&sw, &port, p);
        clients.push(client);
    }
    set_vlan(&fm, 1, "tag=10");
    set_vlan(&fm, 2, "tag=10");
    set_vlan(&fm, 3, "tag=20");
    set_vlan(&fm, 4, "trunks=10,20");
    let t = Duration::from_secs(5);
    let frames: Vec<Vec<u8>> = (0..100)
        .map(|s| common::frame(common::len_for(1, s), 1, MacAddr::BROADCAST, s))
        .collect();
    common::send_all(&mut clients[0], &frames, t);
    assert_eq!(common::recv_n(&mut clients[1], 100, t), frames);
    let on_trunk = common::recv_n(&mut clients[3], 100, t);
    for (got, f) in on_trunk.iter().zip(&frames) {
        assert_eq!(*got, tagged(f, 10));
    }
    // The reply from the trunk, tagged 10, reaches port 1 untagged only.
    let reply = common::frame(100, 4, common::mac(1), 7);
    common::send_all(&mut clients[3], &[tagged(&reply, 10)], t);
    assert_eq!(common::recv_n(&mut clients[0], 1, t), vec![reply]);
    common::wait_tx(&sw, 1, 1);
    assert!(clients[2].recv_all().is_empty(), "nothing for VLAN 20");
    assert!(clients[1].recv_all().is_empty());
    assert_eq!(common::totals(&sw, 1).drops.no_dest, 0);
}

#[test]
fn a_vlan_change_applies_to_the_next_batch_with_warm_caches() {
    let m = bridge(3, MacLimits::default());
    let b = frame(MacAddr::BROADCAST, mac(1), 1);
    for _ in 0..10 {
        assert!(
            run(&m, 1, &vec![b.clone(); 16], 0)
                .iter()
                .all(|s| ports(s) == [2, 3])
        );
    }
    one(&m, 3, &frame(mac(1), mac(3), 2), 0);
    let upcalls = counter(&m, "upcalls");
    set_vlan(&m, 2, "tag=10");
    assert_eq!(ports(&one(&m, 1, &b, 0)), [3], "port 2 left VLAN 0");
    // A known host behind a port that left the VLAN: nowhere.
    set_vlan(&m, 3, "tag=20");
    assert!(one(&m, 1, &frame(mac(3), mac(1), 3), 0).is_empty());
    set_vlan(&m, 3, "");
    assert_eq!(ports(&one(&m, 1, &frame(mac(3), mac(1), 4), 0)), [3]);
    assert_eq!(counter(&m, "upcalls"), upcalls, "no plan depends on VLANs");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Arbitrary bytes, tagged or not, from any port of the VLAN bridge:
    /// nothing panics, frames of VLAN 20 (port 3's) never reach the VLAN
    /// 10 access ports and the reverse, and an access port only ever gets
    /// frames without the tag of the VLAN it is in (a tag needs 18 bytes:
    /// a shorter frame with TPID 0x8100 is untagged, as Open vSwitch reads it).
    #[test]
    fn arbitrary_frames_keep_vlans_apart(
        frames in proptest::collection::vec(
            (1u16..=7, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), 0u8..4),
            1..40,
        )
    ) {
        let m = vlan_bridge();
        for (port, mut bytes, shape) in frames {
            if bytes.len() >= 18 && shape > 0 {
                bytes[12..14].copy_from_slice(&[0x81, 0x00]);
                let vid: u16 = [0, 10, 20][usize::from(shape - 1)];
                bytes[14] = (bytes[14] & 0xf0) | (vid >> 8) as u8;
                bytes[15] = vid as u8;
            }
            let s = one(&m, port, &bytes, 0);
            if port == 3 {
                proptest::prop_assert!(!s.contains_key(&1) && !s.contains_key(&2));
            }
            if port == 1 || port == 2 {
                proptest::prop_assert!(!s.contains_key(&3));
            }
            for p in [1u16, 2, 3] {
                if let Some(b) = s.get(&p).filter(|b| b.len() >= 18) {
                    let vid = u16::from_be_bytes([b[14], b[15]]) & 0xfff;
                    let own = if p == 3 { 20 } else { 10 };
                    proptest::prop_assert!(
                        !(b[12..14] == [0x81, 0x00] && vid == own),
                        "port {} got its own VLAN's tag", p
                    );
                }
            }
        }
    }
}

#[test]
fn decisions_replayed_within_a_batch_follow_what_the_batch_learns() {
    let m = bridge(3, MacLimits::default());
    let x_to_y = frame(mac(2), mac(1), 0);
    let mut frames = vec![x_to_y.clone(); 3];
    // Y shows up behind the input port itself in the same batch.
    frames.push(frame(mac(9), mac(2), 1));
    frames.extend(vec![x_to_y.clone(); 3]);
    let s = run(&m, 1, &frames, 0);
    for (i, s) in s.iter().enumerate() {
        let want: &[u16] = if i < 4 { &[2, 3] } else { &[] };
        assert_eq!(ports(s), want, "packet {i}");
    }
    assert_eq!(counter(&m, "normal_packets"), 7);
    assert_eq!(counter(&m, "normal_floods"), 4);
    // Replayed decisions count like made ones.
    run(&m, 2, &vec![frame(mac(1), mac(5), 0); 10], 0);
    assert_eq!(counter(&m, "normal_packets"), 17);
    assert_eq!(counter(&m, "normal_floods"), 4);
}

/// Frame `k` of a small pool: few addresses (so hosts are learned and
/// decisions replayed), some tagged, some too short to parse or to tag.
fn pool_frame(k: u8, seq: u8) -> Vec<u8> {
    let f = frame(
        mac(u32::from(k % 5) + 1),
        mac(u32::from(k / 5 % 5) + 1),
        seq,
    );
    match k % 7 {
        0 => f[..13].to_vec(),
        1 => f[..15].to_vec(),
        2 => tagged(&f, 10),
        3 => tagged(&f, 20),
        _ => f,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// A batch forwards exactly as its packets one at a time: the rest of
    /// a batch whose megaflow matches on the input port alone skips the
    /// memo, parse and lookup, and replays NORMAL's decisions, and none of
    /// that may change where a packet goes, its bytes or what is counted.
    #[test]
    fn a_batch_forwards_as_its_packets_one_by_one(
        batches in proptest::collection::vec(
            (1u16..=7, proptest::collection::vec(0u8..175, 1..24)),
            1..12,
        )
    ) {
        let (whole, single) = (vlan_bridge(), vlan_bridge());
        for (n, (port, ks)) in batches.iter().enumerate() {
            let frames: Vec<Vec<u8>> =
                ks.iter().map(|&k| pool_frame(k, n as u8)).collect();
            let got = run(&whole, *port, &frames, 0);
            let want: Vec<Sent> = frames.iter().map(|f| one(&single, *port, f, 0)).collect();
            proptest::prop_assert_eq!(got, want, "batch {} from port {}", n, port);
        }
        for c in ["normal_packets", "normal_floods", "normal_vlan_drops"] {
            proptest::prop_assert_eq!(counter(&whole, c), counter(&single, c), "{}", c);
        }
        let req = mswitch::openflow::multipart::FlowStatsRequest::default();
        let packets = |m: &FlowModule| {
            m.flow_stats(&req, 0).unwrap().iter().map(|s| s.packet_count).sum::<u64>()
        };
        proptest::prop_assert_eq!(packets(&whole), packets(&single));
    }
}
