//! `ovs-ofctl snoop BR` against `mswitch vswitchd`: the bridge's
//! `BR.snoop` socket shows the traffic between the bridge and its
//! controller (here Open vSwitch's own `ovs-testcontroller`), in the
//! version that connection negotiated, and nothing of other connections.
//!
//! Needs root and Open vSwitch's tools; without them it says so and passes
//! vacuously, except in CI.

mod common;
mod vswitchd_lab;

use std::process::{Child, Command, Stdio};

use vswitchd_lab::{Lab, end, eventually, ready};

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        end(
            &mut self.0,
            libc::SIGTERM,
            std::time::Duration::from_secs(5),
        );
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn snoop_shows_the_controller_conversation() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let br = format!("msn{}", lab.tag);
    lab.add_br(&br);
    let port = free_port();
    // The controller is configured but not there yet, so the snoop is in
    // place before its first message.
    lab.must_vsctl(&["set-controller", &br, &format!("tcp:127.0.0.1:{port}")]);

    let out = lab.dir.join("snoop.out");
    let ctl = lab.dir.join("snoop.ctl");
    let snoop = Proc(
        Command::new("ovs-ofctl")
            .env("OVS_RUNDIR", &lab.dir)
            .args(["snoop", &br, &format!("--unixctl={}", ctl.display())])
            // ovs-ofctl monitor and snoop print on standard error.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&out).unwrap())
            .spawn()
            .unwrap(),
    );
    // ovs-ofctl opens its control socket once its HELLO exchange is done.
    eventually("ovs-ofctl snoop connects", 10, || ctl.exists());

    let flows = lab.dir.join("flows.txt");
    std::fs::write(&flows, "priority=7,ip,nw_dst=10.9.8.7,actions=drop\n").unwrap();
    let _controller = Proc(
        Command::new("ovs-testcontroller")
            .args(["-O", "OpenFlow10", "--no-chdir", "-vconsole:off"])
            .arg(format!("--with-flows={}", flows.display()))
            .arg(format!("--unixctl={}", lab.dir.join("tc.ctl").display()))
            .arg(format!("ptcp:{port}:127.0.0.1"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the bridge connects to its controller", 20, || {
        lab.vsctl(&["get", "Controller", &br, "is_connected"])
            .is_ok_and(|s| s == "true")
    });
    // A service connection (ovs-ofctl on BR.mgmt) is not copied.
    lab.ofctl("dump-flows", &br, &[]);

    let said = || std::fs::read_to_string(&out).unwrap_or_default();
    // Both directions: the controller's requests and flows, the bridge's
    // replies, and the keep-alive echoes (every 5 s of silence).
    let wanted = [
        "OFPT_FEATURES_REQUEST",
        "OFPT_FEATURES_REPLY",
        "OFPT_FLOW_MOD",
        "OFPT_ECHO_REQUEST",
        "OFPT_ECHO_REPLY",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !wanted.iter().all(|w| said().contains(w)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    drop(snoop);
    let s = said();
    for w in wanted {
        assert!(
            s.contains(w),
            "{w} missing from the snoop's output:\n{s}\nvswitchd: {}",
            lab.log()
        );
    }
    assert!(
        s.contains("priority=7,ip,nw_dst=10.9.8.7 actions=drop"),
        "the controller's flow: {s}"
    );
    // In OpenFlow 1.0, the version the controller negotiated: ofp-print
    // marks any other version with "(OF1.x)".
    assert!(!s.contains("(OF1."), "1.0 only: {s}");
    // The HELLOs of that connection stay out (as in Open vSwitch), and so
    // does the dump-flows of the service connection.
    assert!(!s.contains("OFPT_HELLO"), "{s}");
    assert!(
        !s.contains("NXST_FLOW") && !s.contains("OFPST_FLOW"),
        "a service connection's messages: {s}"
    );
}

#[test]
fn snoop_on_a_bridge_without_controller_is_refused() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let br = format!("msm{}", lab.tag);
    lab.add_br(&br);
    assert!(lab.dir.join(format!("{br}.snoop")).exists());
    // As ovs-vswitchd: no controller to snoop on, the connection is closed
    // at once.
    let out = Command::new("ovs-ofctl")
        .env("OVS_RUNDIR", &lab.dir)
        .args(["--timeout=10", "snoop", &br])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // (Which step fails depends on when the close is seen: sending the
    // HELLO or waiting for ours.)
    assert!(
        err.contains(&format!("{br}.snoop: failed to"))
            || err.contains(&format!("{br}: failed to connect")),
        "{err}"
    );
}
