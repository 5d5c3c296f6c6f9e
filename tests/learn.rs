//! `learn` and conjunctive matches end to end: a daemon in this process
//! hosts a `flow` switch with virtual ports, the real `ovs-ofctl`
//! (OpenFlow 1.3, and 1.5 for one case) installs a MAC-learning switch
//! written with `learn` and Open vSwitch's conjunction example, and
//! traffic must go where they say. Skipped (with a note) without ovs-ofctl.

mod common;
mod ofsw;

use std::time::Duration;

use common::{MIN_LEN, frame, mac};
use mswitch::wire::ethernet::udp_frame;
use ofsw::{Sw, have_ofctl, recv_within, send};

const LEARN: &str =
    "learn(table=1,hard_timeout=60,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])";

/// A switch with no flows (a standalone one starts with NORMAL), if
/// ovs-ofctl is here.
fn empty_switch(test: &str, ports: u16) -> Option<Sw> {
    if !have_ofctl() {
        return None;
    }
    let sw = Sw::new(test, ports);
    sw.ofctl("del-flows", &[]);
    Some(sw)
}

fn mac_text(p: u16) -> String {
    mac(p).to_string()
}

#[test]
fn a_mac_learning_switch_with_learn() {
    let Some(sw) = empty_switch("learn", 3) else {
        return;
    };
    sw.ofctl(
        "add-flow",
        &[&format!("table=0,priority=1,actions={LEARN},resubmit(,1)")],
    );
    sw.ofctl("add-flow", &["table=1,priority=0,actions=FLOOD"]);
    let mut flows = sw.flows();
    flows.sort();
    assert_eq!(
        flows,
        [
            format!("priority=1 actions={LEARN},resubmit(,1)"),
            "table=1, priority=0 actions=FLOOD".to_owned()
        ]
    );
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    let long = Duration::from_secs(5);
    let quiet = Duration::from_millis(300);
    // Host 1 speaks first: nobody knows host 2, flooded.
    send(&mut p1, &frame(MIN_LEN, 1, mac(2), 1));
    assert_eq!(recv_within(&mut p2, 1, long).len(), 1);
    assert_eq!(recv_within(&mut p3, 1, long).len(), 1);
    // Host 1 was learned into table 1, with its hard timeout.
    let learned = format!(
        "table=1, hard_timeout=60, dl_dst={} actions=output:1",
        mac_text(1)
    );
    let flows = sw.flows();
    assert!(flows.contains(&learned), "{flows:?}");
    // Host 2 answers: to port 1 only, and is learned in turn.
    send(&mut p2, &frame(MIN_LEN, 2, mac(1), 2));
    assert_eq!(recv_within(&mut p1, 1, long).len(), 1);
    assert!(recv_within(&mut p3, 1, quiet).is_empty());
    // The second packet to host 2 goes out one port only, and so do the
    // next ones (a cached plan that keeps refreshing its learned flow).
    for seq in 3..6 {
        send(&mut p1, &frame(MIN_LEN, 1, mac(2), seq));
    }
    assert_eq!(recv_within(&mut p2, 3, long).len(), 3);
    assert!(recv_within(&mut p3, 1, quiet).is_empty());
    assert!(recv_within(&mut p1, 1, quiet).is_empty());
    let tables = sw.ofctl("dump-tables", &[]);
    assert!(tables.contains("active=3"), "{tables}");
    // OpenFlow 1.5 shows the same flows.
    let dump = sw.ofctl_opts(&["-O", "OpenFlow15", "--no-stats"], "dump-flows", &[]);
    assert!(dump.contains(LEARN), "{dump}");
    assert!(
        dump.contains(&format!(
            "hard_timeout=60, dl_dst={} actions=output:1",
            mac_text(1)
        )),
        "{dump}"
    );
}

#[test]
fn learn_added_in_openflow_1_5() {
    let Some(sw) = empty_switch("learn15", 2) else {
        return;
    };
    let f = "priority=1,actions=learn(table=2,idle_timeout=30,priority=7,cookie=0x9,\
             NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0x5->NXM_NX_REG1[0..7]),output:2";
    sw.ofctl_opts(&["-O", "OpenFlow15"], "add-flow", &[f]);
    let (mut p1, mut p2) = (sw.port(1), sw.port(2));
    send(&mut p1, &frame(MIN_LEN, 1, mac(2), 1));
    assert_eq!(recv_within(&mut p2, 1, Duration::from_secs(5)).len(), 1);
    let dump = sw.ofctl_opts(&["-O", "OpenFlow15", "--no-stats"], "dump-flows", &[]);
    assert!(
        dump.contains(
            "learn(table=2,idle_timeout=30,priority=7,cookie=0x9,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0x5->NXM_NX_REG1[0..7])"
        ),
        "{dump}"
    );
    assert!(
        dump.contains(&format!(
            "cookie=0x9, table=2, idle_timeout=30, priority=7,dl_dst={} actions=set_field:0x5/0xff->reg1",
            mac_text(1)
        )),
        "{dump}"
    );
}

/// A UDP frame from 10.0.0.`src` on port 1 to UDP port `dport`.
fn udp_to(src: u8, dport: u16) -> Vec<u8> {
    udp_frame(
        MIN_LEN,
        mac(9),
        mac(1),
        [10, 0, 0, src],
        [10, 0, 1, 1],
        1000,
        dport,
    )
}

#[test]
fn conjunctive_match_allows_and_denies() {
    let Some(sw) = empty_switch("conj", 3) else {
        return;
    };
    for f in [
        "priority=5,conj_id=1234,actions=output:2",
        "priority=10,ip,nw_src=10.0.0.1,actions=conjunction(1234,1/2)",
        "priority=10,ip,nw_src=10.0.0.4,actions=conjunction(1234,1/2)",
        "priority=10,udp,tp_dst=80,actions=conjunction(1234,2/2)",
        "priority=10,udp,tp_dst=443,actions=conjunction(1234,2/2)",
        "priority=0,actions=output:3",
    ] {
        sw.ofctl("add-flow", &[f]);
    }
    let flows = sw.flows();
    assert!(
        flows.contains(&"priority=5,conj_id=1234 actions=output:2".to_owned()),
        "{flows:?}"
    );
    assert!(
        flows.contains(&"priority=10,udp,tp_dst=80 actions=conjunction(1234,2/2)".to_owned()),
        "{flows:?}"
    );
    // Conjunction with anything else is refused, as Open vSwitch does.
    let err = sw.ofctl_err(
        "add-flow",
        &["priority=10,ip,actions=conjunction(7,1/2),output:1"],
    );
    assert!(!err.is_empty());

    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    let long = Duration::from_secs(5);
    let quiet = Duration::from_millis(300);
    // (source, port, allowed), twice: the second round is cached.
    let cases = [
        (1, 80, true),
        (4, 443, true),
        (1, 22, false),
        (2, 80, false),
        (4, 80, true),
    ];
    for _ in 0..2 {
        for (src, dport, allowed) in cases {
            send(&mut p1, &udp_to(src, dport));
            let (yes, no) = if allowed {
                (&mut p2, &mut p3)
            } else {
                (&mut p3, &mut p2)
            };
            assert_eq!(recv_within(yes, 1, long).len(), 1, "{src} {dport}");
            assert!(recv_within(no, 1, quiet).is_empty(), "{src} {dport}");
        }
    }
    let stats = sw.ofctl("dump-flows", &["conj_id=1234"]);
    assert!(stats.contains("n_packets=6"), "{stats}");
}

/// The action of `ovs-actions(7)`'s example, as ovs-ofctl sends it.
#[test]
fn the_vlan_learn_of_the_man_page() {
    let Some(sw) = empty_switch("learnvlan", 2) else {
        return;
    };
    let learn = "learn(table=1,hard_timeout=60,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15])";
    sw.ofctl("add-flow", &[&format!("actions={learn},resubmit(,1)")]);
    sw.ofctl("add-flow", &["table=1,priority=0,actions=output:2"]);
    let flows = sw.flows();
    assert!(
        flows.contains(&format!("actions={learn},resubmit(,1)")),
        "{flows:?}"
    );
    let (mut p1, mut p2) = (sw.port(1), sw.port(2));
    send(&mut p1, &frame(MIN_LEN, 1, mac(2), 1));
    assert_eq!(recv_within(&mut p2, 1, Duration::from_secs(5)).len(), 1);
    let learned = format!(
        "table=1, hard_timeout=60, vlan_tci=0x0000/0x0fff,dl_dst={} actions=load:0x1->NXM_NX_REG0[0..15]",
        mac_text(1)
    );
    let flows = sw.flows();
    assert!(flows.contains(&learned), "{flows:?}");
}

/// OpenFlow 1.0 (ovs-ofctl's default) carries the same actions.
#[test]
fn learn_and_conjunction_in_openflow_1_0() {
    let Some(sw) = empty_switch("learn10", 2) else {
        return;
    };
    sw.plain_ofctl(
        "add-flow",
        &[&format!("priority=1,actions={LEARN},output:2")],
    );
    sw.plain_ofctl("add-flow", &["priority=9,ip,actions=conjunction(5,1/2)"]);
    let dump = sw.plain_ofctl("dump-flows", &["--no-stats"]);
    assert!(
        dump.contains(&format!("priority=1 actions={LEARN},output:2")),
        "{dump}"
    );
    assert!(
        dump.contains("priority=9,ip actions=conjunction(5,1/2)"),
        "{dump}"
    );
    let (mut p1, mut p2) = (sw.port(1), sw.port(2));
    send(&mut p1, &frame(MIN_LEN, 1, mac(2), 1));
    assert_eq!(recv_within(&mut p2, 1, Duration::from_secs(5)).len(), 1);
    let dump = sw.plain_ofctl("dump-flows", &["--no-stats"]);
    assert!(
        dump.contains(&format!(
            "table=1, hard_timeout=60, dl_dst={} actions=output:1",
            mac_text(1)
        )),
        "{dump}"
    );
}

/// `NXAST_LEARN2` (`limit`, `result_dst`) and `fin_timeout` as ovs-ofctl
/// sends them: dump-flows prints them back as given, the limit holds
/// (the second host is not learned, and the result register says so),
/// and the learned flow starts with the learn's `fin_timeout`.
#[test]
fn learn_limit_result_and_fin_timeout() {
    let Some(sw) = empty_switch("learn2", 3) else {
        return;
    };
    let learn = "learn(table=1,hard_timeout=60,fin_idle_timeout=5,limit=1,\
                 result_dst=NXM_NX_REG0[0],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],\
                 output:NXM_OF_IN_PORT[])";
    for f in [
        format!("priority=1,in_port=1,actions={learn},resubmit(,2)"),
        "table=2,priority=1,reg0=0x1,actions=output:2".to_owned(),
        "table=2,priority=0,actions=output:3".to_owned(),
        "table=5,priority=1,tcp,actions=fin_timeout(idle_timeout=10,hard_timeout=20),output:2"
            .to_owned(),
    ] {
        sw.ofctl("add-flow", &[&f]);
    }
    let dump = sw.flows().join("\n");
    assert!(
        dump.contains(&format!("in_port=1 actions={learn},resubmit(,2)")),
        "{dump}"
    );
    assert!(
        dump.contains(
            "table=5, priority=1,tcp actions=fin_timeout(idle_timeout=10,hard_timeout=20),output:2"
        ),
        "{dump}"
    );
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    let long = Duration::from_secs(5);
    // Host 1 is learned (result 1: port 2); the learn then holds its one
    // flow, so host 4 is not (result 0: port 3).
    send(&mut p1, &frame(MIN_LEN, 1, mac(2), 1));
    assert_eq!(recv_within(&mut p2, 1, long).len(), 1);
    let learned = |sw: &Sw| {
        sw.flows()
            .into_iter()
            .filter(|l| l.starts_with("table=1,"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        learned(&sw),
        [format!(
            "table=1, hard_timeout=60, dl_dst={} actions=fin_timeout(idle_timeout=5),output:1",
            mac_text(1)
        )]
    );
    send(&mut p1, &frame(MIN_LEN, 4, mac(2), 2));
    assert_eq!(recv_within(&mut p3, 1, long).len(), 1);
    assert_eq!(learned(&sw).len(), 1, "the limit holds");
}
