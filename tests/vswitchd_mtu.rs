//! `Interface.mtu_request` and `Interface.mtu` with `mswitch vswitchd`,
//! driven by Open vSwitch's own tools as in `tests/vswitchd.rs`.
//!
//! Needs root (veth, namespaces, TAP) and Open vSwitch's tools; without
//! them it says so and passes vacuously, except in CI.

mod common;
mod vswitchd_lab;

use common::must;
use vswitchd_lab::{Lab, eventually, ready};

/// The MTU the kernel gives interface `name` (in namespace `ns`, if any).
fn kernel_mtu(ns: Option<&str>, name: &str) -> String {
    let mut cmd = Vec::new();
    if let Some(ns) = ns {
        cmd.extend(["ip", "netns", "exec", ns]);
    }
    cmd.extend(["ip", "-o", "link", "show", name]);
    let out = must(&cmd);
    out.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Jumbo frames between two veth-backed ports: `mtu_request=9000` sets
/// the interfaces' MTU (and `mtu` says so), a `ping -s 8000 -M do`
/// crosses the bridge, and back at 1500 it does not. The bridge's own
/// (internal) interface follows the smallest MTU of the others, as Open
/// vSwitch's do, unless it has a request of its own.
#[test]
fn mtu_request_sets_kernel_ports_and_internal_ones_follow() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let (br, h) = lab.bridge_and_hosts("msj", 83, 2);
    for x in &h {
        lab.must_vsctl(&["add-port", &br, &x.port]);
    }
    assert_eq!(lab.must_vsctl(&["get", "interface", &br, "mtu"]), "1500");
    h[0].ping(&h[1].ip, "1").expect("at 1500");

    for x in &h {
        lab.must_vsctl(&["set", "interface", &x.port, "mtu_request=9000"]);
        assert_eq!(kernel_mtu(None, &x.port), "9000");
        assert_eq!(
            lab.must_vsctl(&["get", "interface", &x.port, "mtu"]),
            "9000"
        );
        // The port keeps its number.
        assert_ne!(
            lab.must_vsctl(&["get", "interface", &x.port, "ofport"]),
            "-1"
        );
        // The hosts' own end takes jumbo frames too (not before: a veth
        // whose peer has an XDP program, AF_XDP's, is held to 4 KiB).
        must(&[
            "ip", "netns", "exec", &x.ns, "ip", "link", "set", "eth0", "mtu", "9000",
        ]);
    }
    assert_eq!(kernel_mtu(Some(&h[0].ns), "eth0"), "9000");
    let big = [
        "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000", "-M", "do",
    ];
    let jumbo = |from: &vswitchd_lab::Host, to: &str| {
        let mut v = vec!["ip", "netns", "exec", from.ns.as_str()];
        v.extend(big);
        v.push(to);
        common::sh(&v)
    };
    jumbo(&h[0], &h[1].ip).expect("a jumbo ping at MTU 9000");
    // The bridge's interface follows its ports up, in the same transaction.
    assert_eq!(lab.must_vsctl(&["get", "interface", &br, "mtu"]), "9000");
    assert_eq!(kernel_mtu(None, &br), "9000");

    // One port back at 1500: no jumbo frame crosses, ordinary ones do,
    // and the bridge's interface follows it down.
    lab.must_vsctl(&["set", "interface", &h[1].port, "mtu_request=1500"]);
    assert_eq!(kernel_mtu(None, &h[1].port), "1500");
    assert_eq!(
        lab.must_vsctl(&["get", "interface", &h[1].port, "mtu"]),
        "1500"
    );
    assert!(
        jumbo(&h[0], &h[1].ip).is_err(),
        "a jumbo ping crossed a 1500 port"
    );
    h[0].ping(&h[1].ip, "2").expect("ordinary frames at 1500");
    // Dropped by the switch, too large for the port's buffers, and
    // counted (never truncated).
    eventually("no tx_dropped on the 1500 port", 12, || {
        lab.vsctl(&["get", "interface", &h[1].port, "statistics:tx_dropped"])
            .is_ok_and(|n| n.parse::<u64>().is_ok_and(|n| n >= 3))
    });
    assert_eq!(kernel_mtu(None, &br), "1500");

    // A request of its own holds the bridge's interface where it is put.
    lab.must_vsctl(&["set", "interface", &br, "mtu_request=4000"]);
    assert_eq!(kernel_mtu(None, &br), "4000");
    assert_eq!(lab.must_vsctl(&["get", "interface", &br, "mtu"]), "4000");

    // A vhost-user interface reports what it was asked for (1500 without).
    let vh = format!("vhm{}", lab.tag);
    lab.must_vsctl(&[
        "add-port",
        &br,
        &vh,
        "--",
        "set",
        "interface",
        &vh,
        "type=dpdkvhostuser",
        "mtu_request=9000",
    ]);
    assert_eq!(lab.must_vsctl(&["get", "interface", &vh, "mtu"]), "9000");
    lab.must_vsctl(&["clear", "interface", &vh, "mtu_request"]);
    eventually("the vhost-user MTU back at 1500", 5, || {
        lab.vsctl(&["get", "interface", &vh, "mtu"])
            .is_ok_and(|m| m == "1500")
    });
}
