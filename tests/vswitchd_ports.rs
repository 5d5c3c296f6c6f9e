//! `mswitch vswitchd`'s in-process ports and port features, driven by Open
//! vSwitch's own tools as in `tests/vswitchd.rs`: patch interfaces between
//! two bridges, and mirrors.
//!
//! Needs root (veth, namespaces, TAP) and Open vSwitch's tools; without
//! them it says so and passes vacuously, except in CI.

mod common;
mod vswitchd_lab;

use vswitchd_lab::{Lab, eventually, ready};

/// Two bridges joined by a patch pair, a host on each: they reach each
/// other through the pair, the error column follows the peer's presence,
/// and removing one side stops the traffic cleanly.
#[test]
fn a_patch_pair_joins_two_bridges() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let t = lab.tag.clone();
    let (br_a, br_b) = (format!("msa{t}"), format!("msb{t}"));
    let (pa, pb) = (format!("pa{t}"), format!("pb{t}"));
    lab.add_br(&br_a);
    lab.add_br(&br_b);
    let h1 = lab.host(1, "10.81.0.1");
    let h2 = lab.host(2, "10.81.0.2");
    lab.must_vsctl(&["add-port", &br_a, &h1.port]);
    lab.must_vsctl(&["add-port", &br_b, &h2.port]);

    // No peer option at all: no port, and Open vSwitch's words.
    lab.must_vsctl(&[
        "add-port",
        &br_a,
        "nopeer",
        "--",
        "set",
        "Interface",
        "nopeer",
        "type=patch",
    ]);
    assert_eq!(
        lab.must_vsctl(&["get", "Interface", "nopeer", "ofport"]),
        "-1"
    );
    let err = lab.must_vsctl(&["get", "Interface", "nopeer", "error"]);
    assert!(
        err.contains("patch type requires valid 'peer' argument"),
        "{err}"
    );
    lab.must_vsctl(&["del-port", &br_a, "nopeer"]);

    // One side first: it gets a number and says its peer is missing.
    add_patch(&lab, &br_a, &pa, &pb);
    let of_a = lab.must_vsctl(&["get", "Interface", &pa, "ofport"]);
    assert!(of_a.parse::<u16>().is_ok_and(|n| n > 0), "{of_a}");
    let err = lab.must_vsctl(&["get", "Interface", &pa, "error"]);
    assert!(err.contains(&format!("No usable peer '{pb}'")), "{err}");

    add_patch(&lab, &br_b, &pb, &pa);
    assert_eq!(lab.must_vsctl(&["get", "Interface", &pa, "error"]), "[]");
    assert_eq!(lab.must_vsctl(&["get", "Interface", &pb, "error"]), "[]");
    h1.ping(&h2.ip, "3").expect("across the patch pair");
    let show = lab.ofctl("show", &br_b, &[]);
    assert!(show.contains(&format!("({pb}): addr:")), "{show}");

    // Counters of both ends in the Interface table.
    eventually("no statistics on the patch ports", 12, || {
        [&pa, &pb].iter().all(|p| {
            lab.vsctl(&["get", "Interface", p, "statistics:tx_packets"])
                .is_ok_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
        })
    });

    // One side goes: traffic stops, the other side says so, and comes
    // back when the peer does.
    lab.must_vsctl(&["del-port", &br_b, &pb]);
    let err = lab.must_vsctl(&["get", "Interface", &pa, "error"]);
    assert!(err.contains("No usable peer"), "{err}");
    h1.flush_neigh();
    assert!(
        h1.ping(&h2.ip, "2").is_err(),
        "a ping crossed a removed patch"
    );
    add_patch(&lab, &br_b, &pb, &pa);
    h1.flush_neigh();
    h1.ping(&h2.ip, "3")
        .expect("across the patch pair made again");
}

/// `ovs-vsctl add-port BR NAME -- set Interface NAME type=patch
/// options:peer=PEER`.
fn add_patch(lab: &Lab, br: &str, name: &str, peer: &str) {
    let peer = format!("options:peer={peer}");
    lab.must_vsctl(&[
        "add-port",
        br,
        name,
        "--",
        "set",
        "Interface",
        name,
        "type=patch",
        &peer,
    ]);
}

/// A mirror of one host's port to a third host's port: tcpdump there sees
/// what the mirror selects and nothing else, the mirror counts what it
/// copied, and the output port carries no other traffic.
#[test]
fn a_mirror_copies_to_its_output_port() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let br = format!("msm{}", lab.tag);
    lab.add_br(&br);
    let h: Vec<_> = (1..=3)
        .map(|n| lab.host(n, &format!("10.82.0.{n}")))
        .collect();
    for x in &h {
        lab.must_vsctl(&["add-port", &br, &x.port]);
    }
    h[0].ping(&h[1].ip, "1").expect("before any mirror");
    let p2 = format!("@p{}", 2);
    let id2 = format!("--id={p2}");
    let out = format!("output-port={p2}");
    create_mirror(
        &lab,
        &br,
        &[
            "--id=@p", "get", "port", &h[0].port, "--", &id2, "get", "port", &h[2].port, "--",
        ],
        &["name=m0", "select-src-port=@p", &out],
    );
    // Only what host 1 sends: echo requests, no replies.
    let seen = h[2].capture(&["icmp"], || {
        h[0].ping(&h[1].ip, "3").expect("while mirrored");
    });
    let requests = seen.lines().filter(|l| l.contains("echo request")).count();
    assert!(requests >= 3, "{seen}");
    assert!(!seen.contains("echo reply"), "{seen}");
    // The output port is reserved for the mirror.
    h[2].flush_neigh();
    assert!(
        h[2].ping(&h[0].ip, "2").is_err(),
        "the output port forwarded"
    );

    // select_all: both directions.
    lab.must_vsctl(&["set", "mirror", "m0", "select_all=true"]);
    let seen = h[2].capture(&["icmp"], || {
        h[1].ping(&h[0].ip, "2")
            .expect("while mirroring everything");
    });
    assert!(
        seen.contains("echo request") && seen.contains("echo reply"),
        "{seen}"
    );
    eventually("no Mirror statistics", 12, || {
        lab.vsctl(&["get", "mirror", "m0", "statistics:tx_packets"])
            .is_ok_and(|n| n.parse::<u64>().is_ok_and(|n| n >= 7))
    });

    // Mirror removed: the third host is an ordinary host again.
    lab.must_vsctl(&["clear", "bridge", &br, "mirrors"]);
    h[2].flush_neigh();
    h[2].ping(&h[0].ip, "2").expect("after the mirror went");
}

/// `link_state` and `link_resets` of a kernel interface follow its
/// carrier when it changes (the kernel's link notifications), not with
/// the statistics: with `stats-update-interval` at a minute, the far end
/// going down and up again shows within a few seconds.
#[test]
fn link_state_is_written_when_the_carrier_changes() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let br = format!("msl{}", lab.tag);
    lab.add_br(&br);
    let h = lab.host(1, "10.84.0.1");
    lab.must_vsctl(&["add-port", &br, &h.port]);
    let get = |col: &str| lab.vsctl(&["get", "Interface", &h.port, col]);
    eventually("no link_state for a new port", 3, || {
        get("link_state").as_deref() == Ok("up")
    });
    let resets: u64 = get("link_resets").unwrap().parse().unwrap();
    lab.slow_statistics();
    let inner = |updown: &str| {
        common::must(&[
            "ip", "netns", "exec", &h.ns, "ip", "link", "set", "eth0", updown,
        ]);
    };
    inner("down");
    eventually("the carrier loss not in link_state", 3, || {
        get("link_state").as_deref() == Ok("down")
    });
    assert_eq!(get("admin_state").as_deref(), Ok("up"));
    inner("up");
    eventually("the carrier not back in link_state", 3, || {
        get("link_state").as_deref() == Ok("up")
    });
    let now: u64 = get("link_resets").unwrap().parse().unwrap();
    assert_eq!(now, resets + 2, "link_resets counts both changes");
}

/// The CPUs the daemon's threads for bridge `br` may run on, one line
/// per worker thread (named `BR-wN`, cut to 15 bytes by the kernel).
fn worker_cpus(pid: u32, br: &str) -> Vec<String> {
    let want = format!("{br}-w");
    let prefix = &want[..want.len().min(15)];
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            out.push(l["Cpus_allowed_list:".len()..].trim().to_owned());
        }
    }
    out.sort();
    out
}

/// `other_config:pmd-cpu-mask` set after the bridge exists: its workers
/// follow the mask (one busy-polling worker pinned to each CPU of it, as
/// Open vSwitch's PMD threads), and back to one unpinned worker without
/// it, while the bridge keeps its ports, their numbers and its flows.
#[test]
fn pmd_cpu_mask_moves_the_workers_of_existing_bridges() {
    if !ready() {
        return;
    }
    let ncpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut lab = Lab::start();
    let pid = lab.children[1].id();
    let (br, h) = lab.bridge_and_hosts("msc", 85, 2);
    for x in &h {
        lab.must_vsctl(&["add-port", &br, &x.port]);
    }
    lab.ofctl("add-flow", &br, &["priority=5,arp,actions=NORMAL"]);
    let of = lab.must_vsctl(&["get", "interface", &h[1].port, "ofport"]);
    let all = format!("0-{}", ncpus - 1);
    let unpinned = if ncpus == 1 { "0".to_owned() } else { all };
    assert_eq!(worker_cpus(pid, &br), std::slice::from_ref(&unpinned));

    let last = ncpus - 1;
    let mask = format!("other_config:pmd-cpu-mask={:x}", 1u64 << last);
    lab.must_vsctl(&["set", "Open_vSwitch", ".", &mask]);
    assert_eq!(worker_cpus(pid, &br), [last.to_string()]);
    h[0].flush_neigh();
    h[0].ping(&h[1].ip, "2").expect("on the moved worker");
    assert_eq!(
        lab.must_vsctl(&["get", "interface", &h[1].port, "ofport"]),
        of
    );
    let flows = lab.ofctl("dump-flows", &br, &[]);
    assert!(flows.contains("priority=5,arp"), "{flows}");

    if ncpus > 1 {
        // Both CPUs: two workers, one on each.
        lab.must_vsctl(&["set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=3"]);
        assert_eq!(worker_cpus(pid, &br), ["0", "1"]);
        h[0].ping(&h[1].ip, "2").expect("on two workers");
    }
    lab.must_vsctl(&[
        "remove",
        "Open_vSwitch",
        ".",
        "other_config",
        "pmd-cpu-mask",
    ]);
    assert_eq!(worker_cpus(pid, &br), [unpinned]);
    h[0].ping(&h[1].ip, "2").expect("back on one worker");
    let flows = lab.ofctl("dump-flows", &br, &[]);
    assert!(flows.contains("priority=5,arp"), "{flows}");
}

/// RSPAN through ovs-vsctl, as in ovs-vswitchd.conf.db(5): a mirror
/// selecting VLAN 10 with `output_vlan=99` copies the VLAN's traffic to
/// the access port of VLAN 99 untagged and to a trunk of 99 tagged 99
/// (tcpdump in their namespaces); selecting another VLAN copies nothing.
#[test]
fn an_output_vlan_mirror_reaches_the_ports_of_its_vlan() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let (br, h) = lab.bridge_and_hosts("msr", 86, 4);
    for (x, vlan) in h.iter().zip(["tag=10", "tag=10", "tag=99", "trunks=99"]) {
        lab.must_vsctl(&["add-port", &br, &x.port, "--", "set", "port", &x.port, vlan]);
    }
    create_mirror(
        &lab,
        &br,
        &[],
        &[
            "name=rspan",
            "select_all=true",
            "select_vlan=10",
            "output_vlan=99",
        ],
    );
    let seen = h[2].capture(&["icmp"], || {
        h[0].ping(&h[1].ip, "3").expect("in VLAN 10");
    });
    let count = |s: &str, what: &str| s.lines().filter(|l| l.contains(what)).count();
    assert!(count(&seen, "echo request") >= 3, "{seen}");
    assert!(count(&seen, "echo reply") >= 3, "{seen}");
    assert!(!seen.contains("vlan"), "tagged on an access port: {seen}");
    let seen = h[3].capture(&["vlan", "99", "and", "icmp"], || {
        h[0].ping(&h[1].ip, "2").expect("in VLAN 10");
    });
    assert!(count(&seen, "vlan 99") >= 4, "{seen}");
    eventually("no Mirror statistics", 12, || {
        lab.vsctl(&["get", "mirror", "rspan", "statistics:tx_packets"])
            .is_ok_and(|n| n.parse::<u64>().is_ok_and(|n| n >= 10))
    });

    // Another VLAN selected: VLAN 10's traffic is no longer copied.
    lab.must_vsctl(&["set", "mirror", "rspan", "select_vlan=20"]);
    let seen = h[2].capture(&["icmp"], || {
        h[0].ping(&h[1].ip, "2").expect("in VLAN 10");
    });
    assert!(!seen.contains("echo"), "{seen}");

    // SPAN to the trunk: copies leave it in their VLAN, tagged 10.
    lab.must_vsctl(&[
        "--",
        "--id=@p",
        "get",
        "port",
        &h[3].port,
        "--",
        "set",
        "mirror",
        "rspan",
        "output_port=@p",
        "select_vlan=10",
        "--",
        "clear",
        "mirror",
        "rspan",
        "output_vlan",
    ]);
    let seen = h[3].capture(&["vlan", "10", "and", "icmp"], || {
        h[0].ping(&h[1].ip, "2").expect("in VLAN 10");
    });
    assert!(count(&seen, "vlan 10") >= 4, "{seen}");
}

/// `ovs-vsctl -- PRE... --id=@m create mirror COLUMNS... -- set bridge BR
/// mirrors=@m`, as Open vSwitch's documentation makes mirrors.
fn create_mirror(lab: &Lab, br: &str, pre: &[&str], columns: &[&str]) {
    let mut args = vec!["--"];
    args.extend_from_slice(pre);
    args.extend(["--id=@m", "create", "mirror"]);
    args.extend_from_slice(columns);
    args.extend(["--", "set", "bridge", br, "mirrors=@m"]);
    lab.must_vsctl(&args);
}
