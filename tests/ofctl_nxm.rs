//! Plain `ovs-ofctl` (no `-O`: OpenFlow 1.0 only) against a real `flow`
//! switch, for what 1.0's own match cannot say: it switches to Nicira's
//! NXM flow format, and IPv6, register, MPLS and masked flows go in
//! (`NXT_FLOW_MOD`), come back whole in `dump-flows` (`NXST_FLOW`, the
//! same lines as `-O OpenFlow13` prints), and are modified and deleted by
//! NXM matches; `ovs-ofctl monitor` gets packet-ins in its preferred
//! format (`NXT_PACKET_IN2`). Skipped (with a note) without ovs-ofctl.

mod common;
mod ofsw;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{MIN_LEN, frame, mac};
use ofsw::{LONG, Sw, have_ofctl, send};

/// Plain `ovs-ofctl --timeout=10 OPTS CMD TARGET ARGS`, which must succeed.
fn plain(sw: &Sw, opts: &[&str], cmd: &str, args: &[&str]) -> String {
    let out = Command::new("ovs-ofctl")
        .arg("--timeout=10")
        .args(opts)
        .args([cmd, &sw.target()])
        .args(args)
        .output()
        .expect("run ovs-ofctl");
    assert!(
        out.status.success(),
        "ovs-ofctl {opts:?} {cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flow lines of a dump.
fn flow_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with("OFPST_FLOW") && !l.starts_with("NXST_FLOW"))
        .collect()
}

/// Plain `ovs-ofctl --no-stats --sort dump-flows`.
fn plain_dump(sw: &Sw) -> Vec<String> {
    flow_lines(&plain(sw, &["--no-stats", "--sort"], "dump-flows", &[]))
}

/// The same with `-O OpenFlow13`.
fn of13_dump(sw: &Sw) -> Vec<String> {
    flow_lines(&sw.ofctl_opts(&["--no-stats", "--sort"], "dump-flows", &[]))
}

#[test]
fn plain_ovs_ofctl_uses_nxm_for_every_field() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("nxm", 2);
    sw.plain_ofctl("del-flows", &[]);
    // Flows 1.0's ofp_match cannot hold, through plain ovs-ofctl (NXM)...
    for f in [
        "priority=10,ipv6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::/32,actions=drop",
        "priority=11,reg0=5,reg3=0x10/0xf0,actions=output:2",
        "priority=12,mpls,mpls_label=7,mpls_tc=2,mpls_bos=1,actions=drop",
        "priority=13,tcp6,ipv6_dst=fe80::1,tp_dst=80,actions=output:1",
        "priority=14,dl_src=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop",
        "priority=15,ip,nw_tos=8,nw_ecn=1,in_port=1,actions=output:2",
        "priority=16,icmp6,icmp_type=135,nd_target=fe80::2,actions=drop",
        "priority=17,arp,arp_sha=00:01:02:03:04:05,actions=drop",
        "priority=18,tun_id=0x5,udp,tp_src=53,actions=drop",
        "priority=19,dl_vlan=5,dl_vlan_pcp=3,actions=drop",
        // MPLS and TTL actions, Nicira's in 1.0.
        "priority=21,ip,actions=push_mpls:0x8847,set_mpls_ttl(9),dec_mpls_ttl,output:2",
        "priority=22,mpls,actions=pop_mpls:0x0800,dec_ttl,output:1",
        // A table other than 0 (with NXT_FLOW_MOD_TABLE_ID).
        "table=1,priority=23,ipv6,ipv6_dst=2001:db8::7,actions=drop",
    ] {
        sw.plain_ofctl("add-flow", &[f]);
    }
    // ...and one installed over OpenFlow 1.3.
    sw.ofctl(
        "add-flow",
        &["priority=20,reg1=0x9,ipv6,ipv6_src=2001:db8::9,actions=drop"],
    );

    let of13 = of13_dump(&sw);
    let listed = plain_dump(&sw);
    assert_eq!(listed.len(), 14, "{listed:#?}");
    assert_eq!(listed, of13);
    for want in [
        "priority=10,ipv6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::/32 actions=drop",
        "priority=11,reg0=0x5,reg3=0x10/0xf0 actions=output:2",
        "priority=12,mpls,mpls_label=7,mpls_tc=2,mpls_bos=1 actions=drop",
        "priority=20,ipv6,reg1=0x9,ipv6_src=2001:db8::9 actions=drop",
        "priority=21,ip actions=push_mpls:0x8847,set_mpls_ttl(9),dec_mpls_ttl,output:2",
        "priority=22,mpls actions=pop_mpls:0x0800,dec_ttl,output:1",
        "table=1, priority=23,ipv6,ipv6_dst=2001:db8::7 actions=drop",
    ] {
        assert!(
            listed.iter().any(|l| l == want),
            "{want} not in {listed:#?}"
        );
    }

    // NXST_AGGREGATE, selecting by an NXM match: the five IPv6 flows
    // (ipv6, tcp6, icmp6, with reg1, in table 1).
    let agg = plain(&sw, &[], "dump-aggregate", &["ipv6"]);
    assert!(agg.contains("NXST_AGGREGATE reply"), "{agg}");
    assert!(agg.contains("flow_count=5"), "{agg}");

    // mod-flows and del-flows select by NXM matches.
    sw.plain_ofctl("mod-flows", &["reg0=5,actions=output:1"]);
    sw.plain_ofctl("del-flows", &["ipv6,ipv6_src=2001:db8::1"]);
    let after = plain_dump(&sw);
    assert!(
        after
            .iter()
            .any(|l| l == "priority=11,reg0=0x5,reg3=0x10/0xf0 actions=output:1"),
        "{after:#?}"
    );
    assert!(!after.iter().any(|l| l.contains("ipv6_src=2001:db8::1 ")));
    assert_eq!(after.len(), 13, "{after:#?}");
    // A strict delete of the MPLS flow, by its whole match and priority.
    plain(
        &sw,
        &["--strict"],
        "del-flows",
        &["priority=12,mpls,mpls_label=7,mpls_tc=2,mpls_bos=1"],
    );
    assert_eq!(plain_dump(&sw).len(), 12);
    assert_eq!(plain_dump(&sw), of13_dump(&sw));
}

/// Kills the monitor when the test ends, however it ends.
struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn plain_ovs_ofctl_monitor_sees_packet_ins() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("nxmmon", 2);
    sw.plain_ofctl("del-flows", &[]);
    sw.plain_ofctl("add-flow", &["in_port=1,actions=controller"]);
    let mut p1 = sw.port(1);
    // Unasked, ovs-ofctl asks for NXT_PACKET_IN2 first and gets it (in 1.0
    // or 1.3); asked, it gets the format it names.
    for (opt, want) in [
        (&[][..], "NXT_PACKET_IN2 "),
        (&["--packet-in-format=nxt_packet_in"], "NXT_PACKET_IN "),
        (&["--packet-in-format=standard"], "OFPT_PACKET_IN "),
        // NXT_PACKET_IN2 exists in every version.
        (&["--protocols=OpenFlow13"], "NXT_PACKET_IN2 (OF1.3)"),
        (&["--protocols=OpenFlow15"], "NXT_PACKET_IN2 (OF1.5)"),
    ] {
        let found = first_packet_in(&sw, opt, &mut p1);
        assert!(found.starts_with(want), "{opt:?}: {found}");
        // With the port the packet came in on.
        assert!(found.contains("total_len=60"), "{found}");
        assert!(found.contains("in_port=1"), "{found}");
        assert!(found.contains("(via action)"), "{found}");
    }
}

/// The first packet-in line `ovs-ofctl OPTS monitor TARGET 65534` prints,
/// sending a frame into `p1` until one comes.
fn first_packet_in(sw: &Sw, opts: &[&str], p1: &mut mswitch::control::client::VportConn) -> String {
    // The monitor's control socket goes beside the switch's, in the
    // test's own directory.
    let target = sw.target();
    let run_dir = std::path::Path::new(target.trim_start_matches("unix:"))
        .parent()
        .expect("management socket directory")
        .to_owned();
    let mut mon = Monitor(
        Command::new("ovs-ofctl")
            .args(opts)
            .args(["monitor", &target, "65534"])
            .env("OVS_RUNDIR", &run_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ovs-ofctl monitor"),
    );
    // What it prints may come on either stream (it keeps stderr for its
    // log and, daemonizing, may print there).
    let (tx, rx) = mpsc::channel();
    let out: Box<dyn std::io::Read + Send> = Box::new(mon.0.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(mon.0.stderr.take().unwrap());
    for stream in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    // The monitor connects in its own time: send until a packet-in shows.
    let f = frame(MIN_LEN, 1, mac(2), 1);
    let deadline = Instant::now() + LONG;
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no packet-in: {seen:#?}");
        send(p1, &f);
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if l.contains("PACKET_IN") {
                return l;
            }
            seen.push(l);
        }
    }
}

/// The registers and metadata at the output to the controller ride in
/// the packet-in's match, as Open vSwitch sends them, in every format
/// that has one (1.0's own `OFPT_PACKET_IN` has none).
#[test]
fn packet_ins_carry_registers_and_metadata() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("nxmregs", 2);
    sw.plain_ofctl("del-flows", &[]);
    sw.plain_ofctl(
        "add-flow",
        &["in_port=1,actions=load:5->NXM_NX_REG2[],load:0x1234->OXM_OF_METADATA[],controller"],
    );
    let mut p1 = sw.port(1);
    for (opts, want) in [
        (
            &["-O", "OpenFlow13", "--packet-in-format=standard"][..],
            "OFPT_PACKET_IN (OF1.3)",
        ),
        (&["-O", "OpenFlow13"], "NXT_PACKET_IN2 (OF1.3)"),
        (&["-O", "OpenFlow15"], "NXT_PACKET_IN2 (OF1.5)"),
        (&["--packet-in-format=nxt_packet_in"], "NXT_PACKET_IN "),
        (&[], "NXT_PACKET_IN2 "),
    ] {
        let found = first_packet_in(&sw, opts, &mut p1);
        assert!(found.starts_with(want), "{opts:?}: {found}");
        assert!(found.contains("reg2=0x5"), "{opts:?}: {found}");
        assert!(found.contains("metadata=0x1234"), "{opts:?}: {found}");
        assert!(found.contains("in_port=1"), "{opts:?}: {found}");
    }
}

/// In OpenFlow 1.5 the registers go as packet registers (the xregs,
/// `OXM_OF_PKT_REGn`, as Open vSwitch sends them): ovs-ofctl must show
/// the same 32-bit registers as in 1.3, halves of one xreg (reg0, reg1),
/// a lone half (reg3) and none of a zero register (reg2).
#[test]
fn openflow15_packet_ins_carry_registers_as_xregs() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("nxmxregs", 2);
    sw.plain_ofctl("del-flows", &[]);
    sw.plain_ofctl(
        "add-flow",
        &["in_port=1,actions=load:5->NXM_NX_REG0[],load:7->NXM_NX_REG1[],load:9->NXM_NX_REG3[],controller"],
    );
    let mut p1 = sw.port(1);
    for (opts, want) in [
        (
            &["-O", "OpenFlow15", "--packet-in-format=standard"][..],
            "OFPT_PACKET_IN (OF1.5)",
        ),
        (&["-O", "OpenFlow15"], "NXT_PACKET_IN2 (OF1.5)"),
        (
            &["-O", "OpenFlow13", "--packet-in-format=standard"][..],
            "OFPT_PACKET_IN (OF1.3)",
        ),
    ] {
        let found = first_packet_in(&sw, opts, &mut p1);
        assert!(found.starts_with(want), "{opts:?}: {found}");
        assert!(
            found.contains("reg0=0x5,reg1=0x7,reg3=0x9,in_port=1"),
            "{opts:?}: {found}"
        );
    }
}

/// OpenFlow 1.5 says a meter as an action (`OFPAT_METER`), 1.3 as an
/// instruction: a metered flow added in either reads the same in both.
#[test]
fn meter_action_in_openflow15() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("nxmmeter", 2);
    sw.plain_ofctl("del-flows", &[]);
    sw.ofctl("add-meter", &["meter=1,kbps,band=type=drop,rate=1000"]);
    sw.ofctl(
        "add-flow",
        &["priority=5,in_port=1,actions=meter:1,output:2"],
    );
    let of15 = ["-O", "OpenFlow15"];
    sw.ofctl_opts(
        &of15,
        "add-flow",
        &["priority=6,in_port=2,actions=meter:1,output:1"],
    );
    let want = [
        "priority=5,in_port=1 actions=meter:1,output:2",
        "priority=6,in_port=2 actions=meter:1,output:1",
    ];
    assert_eq!(of13_dump(&sw), want);
    let listed = flow_lines(&sw.ofctl_opts(
        &["-O", "OpenFlow15", "--no-stats", "--sort"],
        "dump-flows",
        &[],
    ));
    assert_eq!(listed, want);
}
