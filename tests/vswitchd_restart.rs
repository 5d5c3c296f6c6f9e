//! Faults (issue 15): `kill -9` of `mswitch vswitchd` with internal,
//! vhost-user and system (veth) ports on a controller-less NORMAL bridge,
//! a restart of ovsdb-server while traffic flows, and `kill -9` of
//! ovsdb-server. Nothing left behind stops the next start, the same
//! ofports come back, and forwarding never waits on the database.
//!
//! Needs root (veth, namespaces, TAP) and Open vSwitch's tools; without
//! them it says so and passes vacuously, except in CI.

mod common;
mod vswitchd_lab;

use std::process::Child;
use std::time::Duration;

use vswitchd_lab::{Host, Lab, end, eventually, ready, start_server, start_vswitchd};

/// The ofport of each of `names`, as ovs-vsctl reads it.
fn ofports(lab: &Lab, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| lab.must_vsctl(&["get", "Interface", n, "ofport"]))
        .collect()
}

/// `ovs-appctl dpif/show`'s port lines: name, numbers and kind.
fn port_kinds(lab: &Lab) -> Vec<String> {
    let (ok, out) = lab.appctl(&["dpif/show"]);
    assert!(ok, "{out}");
    out.lines()
        .filter(|l| l.ends_with(')'))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// `kill -9`, and the wait for it.
fn kill9(mut c: Child) {
    end(&mut c, libc::SIGKILL, Duration::from_secs(5));
}

/// Pings from `h` to `to` in a thread while `during` runs: how many of
/// `count` (0.2 s apart) were answered.
fn pings_during(h: &Host, to: &str, count: u32, during: impl FnOnce()) -> u32 {
    let (ns, to) = (h.ns.clone(), to.to_owned());
    let pinger = std::thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-c", &count.to_string()])
            .args(["-i", "0.2", "-W", "1", &to])
            .output()
            .expect("ping");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split(" received")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("ping said: {text}"))
    });
    during();
    pinger.join().unwrap()
}

#[test]
fn kill_9_of_either_daemon_loses_nothing() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let t = lab.tag.clone();
    let br = format!("msr{t}");
    lab.add_br(&br);
    let h1 = lab.host(1, "10.83.0.1");
    let h2 = lab.host(2, "10.83.0.2");
    let h3 = lab.host(3, "10.83.0.3");
    let (int, vu) = (format!("ri{t}"), format!("rv{t}"));
    lab.links.push(int.clone());
    lab.must_vsctl(&["add-port", &br, &h1.port]);
    lab.must_vsctl(&[
        "add-port",
        &br,
        &int,
        "--",
        "set",
        "Interface",
        &int,
        "type=internal",
    ]);
    lab.must_vsctl(&[
        "add-port",
        &br,
        &vu,
        "--",
        "set",
        "Interface",
        &vu,
        "type=dpdkvhostuser",
    ]);
    lab.must_vsctl(&["add-port", &br, &h2.port]);
    let names = [br.as_str(), &h1.port, &int, &vu, &h2.port];
    let before = ofports(&lab, &names);
    assert!(
        before.iter().all(|n| n.parse::<u16>().is_ok_and(|n| n > 0)),
        "{before:?}"
    );
    h1.ping(&h2.ip, "2").expect("before any fault");
    let kinds = port_kinds(&lab);

    // (a) kill -9 of mswitch vswitchd: its TAPs go with it, its
    // vhost-user socket and XDP programs stay behind; a new daemon must
    // start over them and rebuild the same ports.
    kill9(lab.children.pop().unwrap());
    assert!(lab.dir.join(&vu).exists(), "the killed daemon's socket");
    lab.children.push(start_vswitchd(&lab.dir));
    eventually("the new daemon never rebuilt the ports", 15, || {
        ofports(&lab, &names) == before
            && names
                .iter()
                .all(|n| lab.vsctl(&["get", "Interface", n, "error"]).as_deref() == Ok("[]"))
    });
    h1.flush_neigh();
    eventually("no traffic after the restart", 15, || {
        h1.ping(&h2.ip, "1").is_ok()
    });
    let log = lab.log();
    assert!(!log.contains("already in use"), "{log}");
    // The same kinds of port as before (an XDP program left on a veth
    // would have pushed it down to AF_PACKET).
    assert_eq!(port_kinds(&lab), kinds, "{log}");

    // (b) ovsdb-server restarts while pings flow: none is lost, and the
    // next change is applied (ovs-vsctl waits for cur_cfg).
    let dir = lab.dir.clone();
    let vsd = lab.children.pop().unwrap();
    let server = lab.children.pop().unwrap();
    let answered = pings_during(&h1, &h2.ip, 15, || {
        std::thread::sleep(Duration::from_millis(500));
        vswitchd_lab::stop(server);
        std::thread::sleep(Duration::from_millis(1500));
        lab.children.push(start_server(&dir));
    });
    lab.children.push(vsd);
    assert_eq!(answered, 15, "pings lost while ovsdb-server restarted");
    lab.must_vsctl(&["add-port", &br, &h3.port]);
    let of3 = lab.must_vsctl(&["get", "Interface", &h3.port, "ofport"]);
    assert!(of3.parse::<u16>().is_ok_and(|n| n > 0), "{of3}");
    h3.ping(&h1.ip, "2").expect("through the port added after");

    // (c) kill -9 of ovsdb-server: forwarding goes on, and the daemon
    // says it is trying to reconnect.
    let tries = lab.log().matches("retrying in").count();
    let vsd = lab.children.pop().unwrap();
    kill9(lab.children.pop().unwrap());
    let answered = pings_during(&h2, &h3.ip, 10, || {});
    assert_eq!(answered, 10, "pings lost without ovsdb-server");
    eventually("no reconnect attempts logged", 10, || {
        lab.log().matches("retrying in").count() >= tries + 2
    });
    // Back again, and caught up.
    lab.children.push(start_server(&dir));
    lab.children.push(vsd);
    lab.must_vsctl(&["del-port", &br, &h3.port]);
    assert_eq!(ofports(&lab, &names), before);
}
