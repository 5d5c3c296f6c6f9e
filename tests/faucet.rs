//! Open vSwitch's Faucet tutorial (docs.openvswitch.org, tutorials/faucet:
//! "Switching" and "VLANs") run for real: Faucet from PyPI as the
//! controller of a bridge made with `ovs-vsctl` against `mswitch vswitchd`
//! (fail_mode secure, datapath id set, OpenFlow 1.3, a `tcp:` controller),
//! the tutorial's `faucet.yaml` with namespaces on veths in place of its
//! dummy ports, and connectivity and isolation checked from the namespaces.
//!
//! Faucet is found at `$MSWITCH_FAUCET`, `/opt/mswitch-faucet/bin/faucet`
//! (where `.ci/run` installs it, in a virtual environment of its own
//! because it pins an os-ken older than the one the other tests use) or on
//! `PATH`. The test skips, saying so, only when no Faucet can be run and
//! not in CI.

mod common;
mod vswitchd_lab;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use vswitchd_lab::{Host, Lab, ready, stop};

/// The Faucet program, if one runs here.
fn faucet() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("MSWITCH_FAUCET").map(PathBuf::from),
        Some(PathBuf::from("/opt/mswitch-faucet/bin/faucet")),
        Some(PathBuf::from("faucet")),
    ];
    let found = candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Faucet must run in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: Faucet is not installed (pip install faucet)");
    }
    found
}

/// Faucet on `port` with `config`, logging into `dir`.
fn start_faucet(bin: &Path, dir: &Path, config: &Path, port: u16) -> Child {
    let log = |n: &str| dir.join(n).display().to_string();
    // Faucet runs `osken-manager`, found on PATH: its own first.
    let mut path = std::ffi::OsString::new();
    if let Some(d) = bin.parent().filter(|d| !d.as_os_str().is_empty()) {
        path.push(d);
        path.push(":");
    }
    path.push(std::env::var_os("PATH").unwrap_or_default());
    Command::new(bin)
        .env("PATH", path)
        .env("FAUCET_CONFIG", config)
        .env("FAUCET_LOG", log("faucet.log"))
        .env("FAUCET_EXCEPTION_LOG", log("faucet-exception.log"))
        .env("FAUCET_PROMETHEUS_ADDR", "127.0.0.1")
        .env("FAUCET_PROMETHEUS_PORT", free_port().to_string())
        .args([
            "--ryu-ofp-listen-host=127.0.0.1",
            &format!("--ryu-ofp-tcp-listen-port={port}"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("faucet.err")).unwrap())
        .spawn()
        .expect("start faucet")
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Everything worth reading when the test fails.
fn diagnostics(lab: &Lab, br: &str) -> String {
    let read = |n: &str| std::fs::read_to_string(lab.dir.join(n)).unwrap_or_default();
    let flows = Command::new("ovs-ofctl")
        .env("OVS_RUNDIR", &lab.dir)
        .args(["-O", "OpenFlow13", "dump-flows", br])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!(
        "--- flows\n{flows}--- faucet.log\n{}--- faucet.err\n{}--- faucet-exception.log\n{}--- vswitchd\n{}",
        read("faucet.log"),
        read("faucet.err"),
        read("faucet-exception.log"),
        lab.log()
    )
}

/// The tutorial's `faucet.yaml` for "Switching" (one VLAN, `office`) or
/// "VLANs" (`office` and `guest`, plus a trunk carrying both tagged).
fn config(vlans: bool) -> String {
    let mut c =
        String::from("vlans:\n  office:\n    vid: 100\n    description: \"office network\"\n");
    if vlans {
        c += "  guest:\n    vid: 200\n    description: \"guest network\"\n";
    }
    c += "dps:\n  sw1:\n    dp_id: 0x1\n    hardware: \"Open vSwitch\"\n    interfaces:\n";
    for p in 1..=5 {
        let vlan = if vlans && p >= 3 { "guest" } else { "office" };
        c += &format!("      {p}:\n        name: \"p{p}\"\n");
        if vlans && p == 5 {
            c += "        tagged_vlans: [office, guest]\n";
        } else {
            c += &format!("        native_vlan: {vlan}\n");
        }
    }
    c
}

/// Pings `to` from `from` until one gets through (Faucet learns hosts
/// from their first packets), bounded.
fn reaches(from: &Host, to: &str) -> bool {
    (0..5).any(|_| from.ping(to, "2").is_ok())
}

#[test]
fn the_faucet_tutorial_switching_and_vlans() {
    if !ready() {
        return;
    }
    let Some(bin) = faucet() else { return };
    let mut lab = Lab::start();
    let br = format!("msf{}", lab.tag);
    lab.add_br(&br);
    let port = free_port();
    let yaml = lab.dir.join("faucet.yaml");
    std::fs::write(&yaml, config(false)).unwrap();
    let f = start_faucet(&bin, &lab.dir, &yaml, port);
    // Faucet first, so it outlives nothing it would be stopped before.
    lab.children.insert(0, f);

    // The tutorial's bridge: secure, its datapath id, OpenFlow 1.3 to Faucet.
    let target = format!("tcp:127.0.0.1:{port}");
    lab.must_vsctl(&[
        "set",
        "bridge",
        &br,
        "fail_mode=secure",
        "protocols=OpenFlow13",
        "other-config:datapath-id=0000000000000001",
    ]);
    let hosts: Vec<Host> = (1..=4)
        .map(|n| lab.host(n, &format!("10.83.0.{n}")))
        .collect();
    // The trunk of the VLANs section, plugged in then.
    let h5 = lab.host(5, "10.83.0.5");
    for (n, h) in hosts.iter().enumerate() {
        let req = format!("ofport_request={}", n + 1);
        lab.must_vsctl(&[
            "add-port",
            &br,
            &h.port,
            "--",
            "set",
            "Interface",
            &h.port,
            &req,
        ]);
    }
    lab.must_vsctl(&["set-controller", &br, &target]);
    let d = || diagnostics(&lab, &br);
    let connected = (0..120).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(250));
        lab.vsctl(&["get", "Controller", &br, "is_connected"])
            .as_deref()
            == Ok("true")
    });
    assert!(connected, "Faucet never connected\n{}", d());

    // Switching: every host in VLAN office reaches the others.
    assert!(reaches(&hosts[0], &hosts[1].ip), "1 -> 2\n{}", d());
    assert!(reaches(&hosts[2], &hosts[3].ip), "3 -> 4\n{}", d());
    assert!(reaches(&hosts[1], &hosts[3].ip), "2 -> 4\n{}", d());

    // VLANs: hosts 3 and 4 move to guest, port 5 trunks both tagged.
    // Faucet reloads its configuration on SIGHUP. (This kernel has no
    // VLAN interfaces: the trunk's tags are checked with tcpdump.)
    lab.must_vsctl(&[
        "add-port",
        &br,
        &h5.port,
        "--",
        "set",
        "Interface",
        &h5.port,
        "ofport_request=5",
    ]);
    std::fs::write(&yaml, config(true)).unwrap();
    let faucet_pid = lab.children[0].id() as i32;
    // SAFETY: signals the Faucet this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(faucet_pid, libc::SIGHUP);
    }
    for h in &hosts {
        h.flush_neigh();
    }
    let met = (0..15).any(|_| hosts[2].ping(&hosts[3].ip, "1").is_ok());
    assert!(met, "guest hosts never met\n{}", d());
    assert!(reaches(&hosts[0], &hosts[1].ip), "office 1 -> 2\n{}", d());
    // Isolation: office and guest do not meet.
    for (a, b) in [(0, 2), (1, 3), (3, 0)] {
        hosts[a].flush_neigh();
        assert!(
            hosts[a].ping(&hosts[b].ip, "2").is_err(),
            "host {} reached host {} across VLANs\n{}",
            a + 1,
            b + 1,
            d()
        );
    }
    // The trunk: office's broadcasts arrive tagged 100, guest's tagged 200.
    let seen = h5.capture(&["arp"], || {
        hosts[0].flush_neigh();
        let _ = hosts[0].ping("10.83.0.99", "1");
        hosts[2].flush_neigh();
        let _ = hosts[2].ping("10.83.0.98", "1");
    });
    let tagged = |vid: u16, ip: &str| {
        seen.lines()
            .any(|l| l.contains(&format!("vlan {vid},")) && l.contains(&format!("who-has {ip}")))
    };
    assert!(
        tagged(100, "10.83.0.99") && tagged(200, "10.83.0.98"),
        "{seen}\n{}",
        d()
    );
    assert!(
        !tagged(200, "10.83.0.99") && !tagged(100, "10.83.0.98"),
        "{seen}"
    );

    let f = lab.children.remove(0);
    stop(f);
}
