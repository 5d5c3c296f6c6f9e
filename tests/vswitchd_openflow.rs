//! `mswitch vswitchd`'s OpenFlow side driven by Open vSwitch's tools, as
//! in `tests/vswitchd.rs`: `ovs-appctl bridge/dump-flows`, flows kept
//! across controller, fail mode, version and datapath id changes (and
//! flushed where ovs-vswitchd flushes them), and the Controller table's
//! `is_connected`/`role`/`status`.
//!
//! Needs root and Open vSwitch's tools; without them it says so and passes
//! vacuously, except in CI.

mod common;
mod vswitchd_lab;

use std::io::Write as _;

use vswitchd_lab::{Lab, eventually, ready};

/// Whether `bridge/dump-flows` lists a flow with exactly this text after
/// its counters.
fn has_flow(lab: &Lab, br: &str, flow: &str) -> bool {
    let (ok, out) = lab.appctl(&["bridge/dump-flows", br]);
    assert!(ok, "{out}");
    out.lines()
        .any(|l| l.ends_with(flow) && l.contains("duration="))
}

#[test]
fn flows_stay_when_the_openflow_settings_change() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let br = format!("mso{}", lab.tag);
    lab.add_br(&br);
    let (ok, out) = lab.appctl(&["bridge/dump-flows", &br]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["duration=0s, n_packets=0, n_bytes=0, priority=0,actions=NORMAL"],
        "a fresh bridge"
    );
    let (ok, out) = lab.appctl(&["bridge/dump-flows", "nosuchbr"]);
    assert!(!ok && out.contains("Unknown bridge"), "{out}");

    // A first controller flushes the flows, as in Open vSwitch (nobody
    // listens on port 1: the connection is refused).
    lab.must_vsctl(&["set-controller", &br, "tcp:127.0.0.1:1"]);
    assert!(!has_flow(&lab, &br, "priority=0,actions=NORMAL"));
    lab.ofctl(
        "add-flow",
        &br,
        &["table=3,priority=5,ip,nw_src=10.1.2.3,actions=output:1"],
    );
    let flow = "table_id=3, ";
    let text = "priority=5,ip,nw_src=10.1.2.3,actions=output:1";
    assert!(has_flow(&lab, &br, text));
    let (_, out) = lab.appctl(&["bridge/dump-flows", &br]);
    assert!(out.starts_with(flow), "{out}");

    // Then nothing of these loses it.
    for change in [
        &["set-controller", &br, "tcp:127.0.0.1:2"][..],
        &["set-controller", &br, "tcp:127.0.0.1:2"],
        &[
            "set",
            "bridge",
            &br,
            "other-config:datapath-id=00000000000000ab",
        ],
        &["set-fail-mode", &br, "secure"],
        &["set", "bridge", &br, "protocols=OpenFlow10,OpenFlow13"],
    ] {
        lab.must_vsctl(change);
        assert!(has_flow(&lab, &br, text), "lost after {change:?}");
    }
    assert_eq!(
        lab.must_vsctl(&["get", "Bridge", &br, "datapath_id"]),
        "\"00000000000000ab\""
    );

    // A controller that cannot be reached: BACKOFF and why, no role.
    eventually("no status for the unreachable controller", 12, || {
        let st = lab.vsctl(&["get", "Controller", &br, "status"]);
        st.as_deref()
            .is_ok_and(|s| s.contains("state=BACKOFF") && s.contains("last_error="))
    });
    assert_eq!(lab.must_vsctl(&["get", "Controller", &br, "role"]), "[]");

    // One that answers: connected, role "other", ACTIVE, seconds counted.
    let ctl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp:127.0.0.1:{}", ctl.local_addr().unwrap().port());
    lab.must_vsctl(&["set-controller", &br, &target]);
    let (mut conn, _) = ctl.accept().unwrap();
    conn.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    eventually("the controller is never reported connected", 12, || {
        lab.vsctl(&["get", "Controller", &br, "is_connected"])
            .as_deref()
            == Ok("true")
    });
    assert_eq!(lab.must_vsctl(&["get", "Controller", &br, "role"]), "other");
    let st = lab.must_vsctl(&["get", "Controller", &br, "status"]);
    assert!(st.contains("state=ACTIVE"), "{st}");
    eventually("no sec_since_connect", 12, || {
        lab.vsctl(&["get", "Controller", &br, "status:sec_since_connect"])
            .is_ok()
    });
    assert!(has_flow(&lab, &br, text), "lost with the new controller");

    // The last controller gone: flushed, and standalone's NORMAL flow
    // back once the fail mode is standalone again.
    lab.must_vsctl(&["del-controller", &br]);
    lab.must_vsctl(&["set-fail-mode", &br, "standalone"]);
    assert!(!has_flow(&lab, &br, text));
    assert!(has_flow(&lab, &br, "priority=0,actions=NORMAL"));
    drop(conn);

    // Only a new datapath type makes the bridge again (flows gone).
    lab.ofctl("add-flow", &br, &["priority=9,actions=drop"]);
    assert!(has_flow(&lab, &br, "priority=9,actions=drop"));
    lab.must_vsctl(&["set", "bridge", &br, "datapath_type=system"]);
    assert!(!has_flow(&lab, &br, "priority=9,actions=drop"));
    assert!(has_flow(&lab, &br, "priority=0,actions=NORMAL"));
}
