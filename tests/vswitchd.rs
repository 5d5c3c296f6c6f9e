//! `mswitch vswitchd` driven by Open vSwitch's own tools: a private
//! ovsdb-server with the vswitch schema, `ovs-vsctl` (without `--no-wait`,
//! so every command waits for the daemon to apply it), `ovs-ofctl BR` by
//! bridge name, and traffic between namespaces through the bridge.
//!
//! Needs root (veth, namespaces, TAP) and Open vSwitch's tools; without
//! them it says so and passes vacuously, except in CI. Every name is unique
//! to the test, and everything is removed on drop.

mod common;
mod vswitchd_lab;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sh;
use vswitchd_lab::{BIN, Lab, ping, ready, start_server, start_vswitchd, stop};

#[test]
fn ovs_vsctl_and_ovs_ofctl_drive_mswitch_vswitchd() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let (tag, dir) = (lab.tag.clone(), lab.dir.clone());

    // A bridge, two namespaces on two system ports (one asking for a number).
    let br = format!("msv{tag}");
    lab.add_br(&br);
    assert_eq!(
        lab.vsctl(&["get", "Interface", &br, "ofport"]).unwrap(),
        "65534"
    );
    let hosts = [lab.host(1, "10.80.0.1"), lab.host(2, "10.80.0.2")];
    let ns: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (h.ns.clone(), h.port.clone()))
        .collect();
    let (v1, v2) = (&ns[0].1, &ns[1].1);
    lab.vsctl(&[
        "add-port",
        &br,
        v1,
        "--",
        "set",
        "Interface",
        v1,
        "ofport_request=5",
    ])
    .unwrap();
    lab.vsctl(&["add-port", &br, v2]).unwrap();
    assert_eq!(lab.vsctl(&["get", "Interface", v1, "ofport"]).unwrap(), "5");
    assert_eq!(lab.vsctl(&["get", "Interface", v2, "ofport"]).unwrap(), "1");
    // Plain ovs-ofctl by bridge name: OpenFlow 1.0, the ports, NORMAL.
    let show = lab.ofctl("show", &br, &[]);
    assert!(show.contains(&format!(" 5({v1}): addr:")), "{show}");
    assert!(show.contains(&format!("LOCAL({br}): addr:")), "{show}");
    let flows = lab.ofctl("dump-flows", &br, &[]);
    assert!(flows.contains("priority=0 actions=NORMAL"), "{flows}");
    ping(&ns[0].0, "10.80.0.2", "3").expect("through the bridge's NORMAL flow");
    let dpid = lab.vsctl(&["get", "Bridge", &br, "datapath_id"]).unwrap();
    assert_eq!(dpid.trim_matches('"').len(), 16, "{dpid}");

    // An interface that cannot be made: ofport -1 and an error; the others
    // keep forwarding.
    let _ = lab.vsctl(&[
        "add-port",
        &br,
        "nope",
        "--",
        "set",
        "Interface",
        "nope",
        "type=stt",
    ]);
    assert_eq!(
        lab.vsctl(&["get", "Interface", "nope", "ofport"]).unwrap(),
        "-1"
    );
    let err = lab.vsctl(&["get", "Interface", "nope", "error"]).unwrap();
    assert!(err.contains("not supported"), "{err}");
    ping(&ns[0].0, "10.80.0.2", "2").expect("other ports unaffected");
    lab.vsctl(&["del-port", &br, "nope"]).unwrap();

    // VLAN tags from the Port table: different VLANs do not meet.
    lab.vsctl(&["set", "port", v1, "tag=10"]).unwrap();
    lab.vsctl(&["set", "port", v2, "tag=20"]).unwrap();
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    assert!(
        ping(&ns[0].0, "10.80.0.2", "2").is_err(),
        "VLAN 10 reached VLAN 20"
    );
    lab.vsctl(&["set", "port", v2, "tag=10"]).unwrap();
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    ping(&ns[0].0, "10.80.0.2", "3").expect("both in VLAN 10");

    // A restart of the daemon: everything rebuilt from the database, with
    // the same port numbers (requested or not), forwarding again.
    stop(lab.children.pop().unwrap());
    lab.children.push(start_vswitchd(&dir));
    lab.vsctl(&["set", "port", v2, "tag=10"]).unwrap();
    assert_eq!(lab.vsctl(&["get", "Interface", v1, "ofport"]).unwrap(), "5");
    assert_eq!(lab.vsctl(&["get", "Interface", v2, "ofport"]).unwrap(), "1");
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    ping(&ns[0].0, "10.80.0.2", "3").expect("after a restart of mswitch");

    // A restart of ovsdb-server: traffic goes on meanwhile, and the daemon
    // comes back to the database.
    let vsd = lab.children.pop().unwrap();
    stop(lab.children.pop().unwrap());
    ping(&ns[0].0, "10.80.0.2", "2").expect("forwarding without the database");
    lab.children.push(start_server(&dir));
    lab.children.push(vsd);
    lab.vsctl(&["set", "port", v1, "tag=10"]).unwrap();
    lab.vsctl(&[
        "set",
        "bridge",
        &br,
        "other-config:datapath-id=00000000000000aa",
    ])
    .unwrap();
    assert_eq!(
        lab.vsctl(&["get", "Bridge", &br, "datapath_id"]).unwrap(),
        "\"00000000000000aa\""
    );

    // ovs-appctl, finding the daemon through its pidfile.
    let appctl = |args: &[&str]| lab.appctl(args);
    let (ok, v) = appctl(&["version"]);
    assert!(ok && v.contains("mswitch"), "{v}");
    let (ok, l) = appctl(&["ofproto/list"]);
    assert!(ok && l.lines().any(|x| x == br), "{l}");
    // (Learning starts afresh: the neighbours are forgotten.)
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    ping(&ns[0].0, "10.80.0.2", "2").expect("after the datapath id changed");
    let (ok, f) = appctl(&["fdb/show", &br]);
    assert!(ok && f.starts_with(" port  VLAN  MAC"), "{f}");
    assert!(
        f.lines().any(|x| x.contains("   10  ")),
        "learned in VLAN 10: {f}"
    );
    let (ok, s) = appctl(&["dpif/show"]);
    assert!(
        ok && s.contains(&format!("{br} 65534/")) && s.contains(&format!("{v1} 5/")),
        "{s}"
    );
    let (ok, _) = appctl(&["fdb/flush", &br]);
    assert!(ok);
    let (ok, c) = appctl(&["list-commands"]);
    assert!(ok && c.contains("fdb/show"), "{c}");
    let (ok, e) = appctl(&["no/such-command"]);
    assert!(!ok && e.contains("not a valid command"), "{e}");

    // Counters and link state in the Interface table, every 5 s.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let rx = lab.vsctl(&["get", "Interface", v1, "statistics:rx_packets"]);
        let link = lab.vsctl(&["get", "Interface", v1, "link_state"]);
        if rx
            .as_deref()
            .is_ok_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
            && link.as_deref() == Ok("up")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no statistics: {rx:?} {link:?}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // A controller from the Controller table: dialled, and reported
    // connected once it has said hello.
    let ctl_sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ctl_sock.local_addr().unwrap().port();
    let target = format!("tcp:127.0.0.1:{port}");
    lab.vsctl(&["set-controller", &br, &target]).unwrap();
    let (mut conn, _) = ctl_sock.accept().unwrap();
    use std::io::Write as _;
    conn.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while lab
        .vsctl(&["get", "Controller", &br, "is_connected"])
        .as_deref()
        != Ok("true")
    {
        assert!(
            Instant::now() < deadline,
            "the controller is never reported connected"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    lab.vsctl(&["del-controller", &br]).unwrap();
    drop(conn);

    // Removing a port and the bridge.
    lab.vsctl(&["del-port", &br, v2]).unwrap();
    let show = lab.ofctl("show", &br, &[]);
    assert!(!show.contains(v2.as_str()), "{show}");
    lab.vsctl(&["del-br", &br]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.join(format!("{br}.mgmt")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !dir.join(format!("{br}.mgmt")).exists(),
        "the bridge's socket is gone"
    );
}

/// Started as `ovs-ctl` starts ovs-vswitchd: `--detach` returns once the
/// daemon is up, the locked pidfile leads `ovs-appctl` to it, the log goes
/// to `--log-file`, and `ovs-appctl exit` stops it, removing the pidfile.
#[test]
fn detach_pidfile_log_file_and_appctl_exit_work_as_ovs_ctl_expects() {
    if Command::new("ovs-appctl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "ovs-appctl missing in CI");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mswitch-vsd-detach-{}", common::unique_tag()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("vswitchd.log");
    // No database yet: the daemon starts anyway and keeps trying it.
    let st = Command::new(BIN)
        .env("OVS_RUNDIR", &dir)
        .args([
            "vswitchd",
            "--pidfile",
            "--detach",
            "--no-chdir",
            "--monitor",
        ])
        .arg(format!("--log-file={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(dir.join("ovs-vswitchd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let appctl = |args: &[&str]| {
        Command::new("ovs-appctl")
            .env("OVS_RUNDIR", &dir)
            .args(["--timeout=10", "-t", "ovs-vswitchd"])
            .args(args)
            .output()
            .unwrap()
    };
    let v = appctl(&["version"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // --monitor: a crash (SIGABRT) brings up a new daemon, with a new pid
    // in the pidfile, that ovs-appctl reaches. (The monitor waits longer
    // after a daemon that crashed within 2 s of starting.)
    std::thread::sleep(Duration::from_millis(2100));
    // SAFETY: signals the daemon this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGABRT);
    }
    let read_pid = || {
        std::fs::read_to_string(dir.join("ovs-vswitchd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_pid().is_none_or(|p| p == pid) || !appctl(&["version"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "the monitor did not restart the daemon"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = read_pid().unwrap();
    // logrotate's way (Debian's openvswitch-switch): move the log away,
    // then `vlog/reopen`; new lines go to a new file at the same path.
    let rotated = dir.join("vswitchd.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let r = appctl(&["vlog/reopen"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let fresh = std::fs::read_to_string(&log).expect("vlog/reopen made a new log file");
    assert!(fresh.contains("reopened"), "{fresh}");
    assert!(appctl(&["exit"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: kill(pid, 0) only asks whether the process exists.
    #[allow(unsafe_code)]
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    #[allow(unsafe_code)]
    // SAFETY: as above.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    if alive {
        // SAFETY: the daemon this test started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    assert!(!alive, "ovs-appctl exit did not stop it");
    assert!(!dir.join("ovs-vswitchd.pid").exists());
    // Before the rotation the log had the daemon's tries at the database.
    let text = std::fs::read_to_string(&rotated).unwrap_or_default();
    assert!(text.contains("retrying in"), "log: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
