//! Nicira extensions end to end: a daemon in this process hosts a `flow`
//! switch with virtual ports, the real `ovs-ofctl -O OpenFlow13` installs
//! flows with registers, `load`, `move`, `resubmit`, `note` and
//! `output:reg`, `dump-flows` must print them back as given, and traffic
//! must go where they say. Skipped (with a note) without ovs-ofctl.

mod common;
mod ofsw;

use std::time::Duration;

use common::{MIN_LEN, frame, mac};
use ofsw::{Sw, have_ofctl, recv_within, send};

#[test]
fn registers_and_resubmit_with_ovs_ofctl() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("regs", 4);
    let given = [
        "priority=10,in_port=1 actions=load:0x2->NXM_NX_REG0[],resubmit(,1)",
        "priority=10,in_port=3 actions=set_field:0x4->reg0,note:01.02.03.00.00.00,resubmit(,1)",
        "priority=10,in_port=4 actions=move:NXM_OF_ETH_DST[0..15]->NXM_NX_REG1[0..15],output:NXM_NX_REG1[0..15]",
        "table=1, priority=5,reg0=0x2 actions=output:2",
        "table=1, priority=5,reg0=0x4/0xff actions=resubmit(2,2)",
        "table=2, priority=1,in_port=2 actions=output:1",
    ];
    // A standalone switch starts with NORMAL: start from nothing.
    sw.ofctl_opts(&[], "del-flows", &[]);
    for f in given {
        // ovs-ofctl's input syntax: commas where dump-flows has spaces.
        let f = f.replace(", ", ",").replace(" actions", ",actions");
        sw.ofctl_opts(&[], "add-flow", &[&f]);
    }
    let mut want: Vec<String> = given.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut got = sw.flows();
    got.sort();
    assert_eq!(got, want);
    // The same in OpenFlow 1.4 and 1.5 (where loads and moves travel as
    // masked SET_FIELD and COPY_FIELD).
    for v in ["OpenFlow14", "OpenFlow15"] {
        let mut got: Vec<String> = sw
            .ofctl_opts(&["-O", v, "--no-stats", "--sort"], "dump-flows", &[])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && !l.starts_with("OFPST_FLOW"))
            .collect();
        got.sort();
        // 1.5 has no reg_load: a whole-register load is a SET_FIELD, and
        // ovs-ofctl says so (as it does with Open vSwitch's own switch).
        let want: Vec<String> = want
            .iter()
            .map(|f| match v {
                "OpenFlow15" => f.replace("load:0x2->NXM_NX_REG0[]", "set_field:0x2->reg0"),
                _ => f.clone(),
            })
            .collect();
        assert_eq!(got, want, "{v}");
    }

    let (mut p1, mut p2, mut p3, mut p4) = (sw.port(1), sw.port(2), sw.port(3), sw.port(4));
    let t = Duration::from_millis(500);
    // Port 1: reg0=2 then table 1 sends it to port 2.
    send(&mut p1, &frame(MIN_LEN, 1, mac(9), 1));
    assert_eq!(recv_within(&mut p2, 1, Duration::from_secs(5)).len(), 1);
    // Twice more: the same megaflow, the same way.
    for seq in 2..4 {
        send(&mut p1, &frame(MIN_LEN, 1, mac(9), seq));
    }
    assert_eq!(recv_within(&mut p2, 2, Duration::from_secs(5)).len(), 2);
    // Port 3: reg0=4, table 1 resubmits to table 2 as from port 2: port 1.
    send(&mut p3, &frame(MIN_LEN, 3, mac(9), 4));
    assert_eq!(recv_within(&mut p1, 1, Duration::from_secs(5)).len(), 1);
    assert!(recv_within(&mut p2, 1, t).is_empty());
    // Port 4: the port is the low 16 bits of the destination MAC.
    send(&mut p4, &frame(MIN_LEN, 4, mac(3), 5));
    assert_eq!(recv_within(&mut p3, 1, Duration::from_secs(5)).len(), 1);
    assert!(recv_within(&mut p2, 1, t).is_empty());

    // A packet-out runs the same actions: load, then table 1 sends it on.
    let hex: String = frame(MIN_LEN, 7, mac(9), 6)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sw.ofctl_opts(
        &[],
        "packet-out",
        &[&format!(
            "in_port=controller,packet={hex},actions=load:0x2->NXM_NX_REG0[],resubmit(,1)"
        )],
    );
    assert_eq!(recv_within(&mut p2, 1, Duration::from_secs(5)).len(), 1);

    // Deleting by register selects only the flows with that register.
    sw.ofctl_opts(&[], "del-flows", &["--strict", "table=1,priority=5,reg0=2"]);
    assert_eq!(sw.flows().len(), 5);
}

#[test]
fn nicira_actions_in_openflow_1_0() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("of10", 3);
    sw.plain_ofctl("del-flows", &[]);
    sw.plain_ofctl(
        "add-flow",
        &["priority=10,in_port=1,actions=load:0x3->NXM_NX_REG0[0..15],note:aa.bb,resubmit(,1)"],
    );
    sw.plain_ofctl(
        "add-flow",
        &["table=1,priority=5,actions=output:NXM_NX_REG0[0..15]"],
    );
    let dump = sw.plain_ofctl("dump-flows", &["--no-stats"]);
    assert!(
        dump.contains(
            "priority=10,in_port=1 actions=load:0x3->NXM_NX_REG0[0..15],note:aa.bb.00.00.00.00,resubmit(,1)"
        ),
        "{dump}"
    );
    assert!(
        dump.contains("table=1, priority=5 actions=output:NXM_NX_REG0[0..15]"),
        "{dump}"
    );
    let (mut p1, mut p3) = (sw.port(1), sw.port(3));
    send(&mut p1, &frame(MIN_LEN, 1, mac(9), 1));
    assert_eq!(recv_within(&mut p3, 1, Duration::from_secs(5)).len(), 1);
}
