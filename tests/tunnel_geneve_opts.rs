//! Geneve options as flow fields, end to end: two hosts (namespaces
//! joined by an underlay veth), each an `mswitch run --module flow` with a
//! VM-like namespace and a fixed `geneve:` port, and the TLV map OVN uses
//! (`{class=0x0102,type=0x80,len=4}->tun_metadata0`) added with real
//! `ovs-ofctl add-tlv-map`. Each side's flows set `tun_metadata0` on what
//! its VM sends and take from the tunnel only frames with the other
//! side's value: ping passes both ways, tcpdump on the underlay shows the
//! option (class, type with the critical bit, data) in every datagram,
//! and once one side sets another value its frames are dropped (ping
//! fails, the other side's flow counts nothing more). A frame with an
//! option no TLV table maps as critical is dropped at the port and
//! counted. And the same with Open vSwitch 3.1's own geneve port
//! (userspace datapath) as host B, its map and flows set with the same
//! `ovs-ofctl` commands: each reads the option the other writes.
//!
//! Needs root (CI runs as root) and ovs-ofctl; without root it passes
//! vacuously. Every namespace has a name unique to the test and is
//! removed on drop.

mod common;

use common::netns::{capture, is_root, ping};
use common::ovs_ofctl;
use common::tunnel_lab::{Lab, counter, eventually, inject, ofport, ovs_userspace_host};

/// Third octet of this test's addresses: 10.86.0.0/24 underlay,
/// 192.168.86.0/24 overlay.
const NET: u8 = 86;

/// One host's switch: its OpenFlow target and control socket, and the
/// OpenFlow numbers of its VM port and tunnel port.
struct Side {
    net: u8,
    name: String,
    of: String,
    ctl: String,
    vm: u32,
    tun: u32,
}

fn side(lab: &mut Lab, name: &str, host: &str, vm_port: &str, local: &str, remote: &str) -> Side {
    let (ctl, of) = lab.flow_switch(
        host,
        name,
        &[
            format!("af_packet:{vm_port}"),
            format!("geneve:gn,remote={remote},local={local},key=7"),
        ],
    );
    let show = ovs_ofctl(&[], "show", &of, &[]);
    Side {
        vm: ofport(&show, vm_port),
        tun: ofport(&show, "gn"),
        name: name.to_owned(),
        of,
        ctl,
        net: lab.net,
    }
}

/// Packets the flow of `s` that matches `tun_metadata0=VALUE` counted.
fn packets(s: &Side, value: &str) -> u64 {
    let dump = ovs_ofctl(&[], "dump-flows", &s.of, &[]);
    let line = dump
        .lines()
        .find(|l| l.contains(&format!("tun_metadata0={value}")))
        .unwrap_or_else(|| panic!("no flow on tun_metadata0={value}: {dump}"));
    let n = line
        .split("n_packets=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("no n_packets in {line}"))
}

/// OVN's map.
const MAP: &str = "{class=0x0102,type=0x80,len=4}->tun_metadata0";

/// Adds OVN's map on `s`, and flows that set `send` on what its VM sends
/// and take from the tunnel only frames with `take`: nothing else passes.
fn map_and_flows(s: &Side, send: &str, take: &str) {
    ovs_ofctl(&[], "add-tlv-map", &s.of, &[MAP]);
    let dump = ovs_ofctl(&[], "dump-tlv-map", &s.of, &[]);
    assert!(
        dump.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["0x102", "0x80", "4", "tun_metadata0"]),
        "{dump}"
    );
    ovs_ofctl(&[], "del-flows", &s.of, &[]);
    let flows = [
        format!(
            "in_port={},actions=set_field:{send}->tun_metadata0,output:{}",
            s.vm, s.tun
        ),
        format!(
            "in_port={},tun_metadata0={take},actions=output:{}",
            s.tun, s.vm
        ),
    ];
    for f in &flows {
        ovs_ofctl(&[], "add-flow", &s.of, &[f]);
    }
}

/// With A (an mswitch, VM `va`, underlay namespace `ha`) sending 0x1234
/// and B (VM `vb`) 0x5678, each taking only the other's: ping both ways,
/// the options on the underlay, then A sends 0x9999 and B takes nothing.
fn values_decide(ha: &str, (va, vb): (&str, &str), a: &Side, b: &Side) {
    let (ip_a, ip_b) = (
        format!("192.168.{}.1", a.net),
        format!("192.168.{}.2", a.net),
    );
    // On the underlay: every datagram carries its side's option, critical
    // bit and all (tcpdump prints the option data in hex).
    let seen = capture(ha, "u", &["-vv", "udp", "port", "6081"], || {
        ping(va, &ip_b, &[]).unwrap_or_else(|e| panic!("A to B: {e}"));
    });
    let to_b = seen.matches("data 00001234").count();
    let to_a = seen.matches("data 00005678").count();
    assert!(to_b >= 3 && to_a >= 3, "3 requests and 3 replies: {seen}");
    assert!(seen.contains("type 0x80(C) len 8"), "{seen}");
    ping(vb, &ip_a, &[]).unwrap_or_else(|e| panic!("B to A: {e}"));
    // (Open vSwitch's flow statistics follow its datapath's by up to a
    // second or so.)
    eventually("both flows counted both pings", || {
        packets(b, "0x1234") >= 6 && packets(a, "0x5678") >= 6
    });
    // A now sends another value: B takes none of it.
    let before = settled(b, "0x1234");
    let f = format!(
        "in_port={},actions=set_field:0x9999->tun_metadata0,output:{}",
        a.vm, a.tun
    );
    ovs_ofctl(&[], "mod-flows", &a.of, &[&f]);
    assert!(ping(va, &ip_b, &["-c", "2"]).is_err());
    assert_eq!(settled(b, "0x1234"), before);
}

/// [`packets`] once two readings 1.5 s apart agree (at most 5 tries).
fn settled(s: &Side, value: &str) -> u64 {
    let mut last = packets(s, value);
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let now = packets(s, value);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Two hosts joined by an underlay (`ua`, `ub`), a VM on each, and host
/// A's mswitch.
struct Hosts {
    lab: Lab,
    ha: String,
    hb: String,
    va: String,
    vb: String,
    /// B's end of its VM's veth.
    pb: String,
    ua: String,
    ub: String,
    a: Side,
}

fn two_hosts(net: u8) -> Hosts {
    let mut lab = Lab::new(net);
    let (ha, hb) = lab.hosts();
    let (va, pa) = lab.vm(&ha, "va", 1, 1400);
    let (vb, pb) = lab.vm(&hb, "vb", 2, 1400);
    let (ua, ub) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    let a = side(&mut lab, "swa", &ha, &pa, &ua, &ub);
    Hosts {
        lab,
        ha,
        hb,
        va,
        vb,
        pb,
        ua,
        ub,
        a,
    }
}

#[test]
fn tun_metadata0_crosses_a_geneve_tunnel_and_decides_what_passes() {
    if !is_root() {
        return;
    }
    let mut h = two_hosts(NET);
    let b = side(&mut h.lab, "swb", &h.hb, &h.pb, &h.ub, &h.ua);
    let dump = ovs_ofctl(&[], "dump-tlv-map", &h.a.of, &[]);
    assert!(dump.contains("max option space=8 max fields=64"), "{dump}");
    map_and_flows(&h.a, "0x1234", "0x5678");
    map_and_flows(&b, "0x5678", "0x1234");
    values_decide(&h.ha, (&h.va, &h.vb), &h.a, &b);

    // The map a flow uses cannot go; a frame with a critical option no
    // table maps is dropped at B's port and counted.
    let del = common::sh(&["ovs-ofctl", "-O", "OpenFlow13", "del-tlv-map", &b.of, MAP]);
    assert!(
        del.as_ref()
            .is_err_and(|e| e.contains("NXTTMFC_INVALID_TLV_DEL")),
        "{del:?}"
    );
    // Geneve with one critical option of class 0x7e57 (no data), then an
    // ARP frame.
    let mut d = vec![1, 0x40, 0x65, 0x58, 0, 0, 7, 0, 0x7e, 0x57, 0x81, 0];
    d.extend([0xffu8; 6]);
    d.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    d.extend([0u8; 28]);
    let before = counter(&b.ctl, &b.name, "gn", "rx_geneve_unsupported");
    inject(&h.ha, &h.ua, &format!("{}:6081", h.ub), d);
    eventually("the critical option counted", || {
        counter(&b.ctl, &b.name, "gn", "rx_geneve_unsupported") == before + 1
    });
}

/// Open vSwitch 3.1's own geneve port (userspace datapath) as host B,
/// with the same map and flows set through its `ovs-ofctl`: it reads the
/// option mswitch sends, and mswitch reads the one it sends.
#[test]
fn open_vswitch_reads_and_writes_the_same_option() {
    const NET: u8 = 87;
    if !is_root()
        || std::process::Command::new("ovs-vswitchd")
            .arg("--version")
            .output()
            .is_err()
    {
        return;
    }
    let mut h = two_hosts(NET);
    let vsctl = ovs_userspace_host(&mut h.lab, &h.hb, &h.pb, &format!("{}/24", h.ub));
    let remote = format!("options:remote_ip={}", h.ua);
    vsctl(&[
        "add-port",
        "brint",
        "gn",
        "--",
        "set",
        "interface",
        "gn",
        "type=geneve",
        &remote,
        "options:key=7",
    ]);
    let of = format!("unix:{}", h.lab.dir.join("ovs/brint.mgmt").display());
    let show = ovs_ofctl(&[], "show", &of, &[]);
    let b = Side {
        vm: ofport(&show, &h.pb),
        tun: ofport(&show, "gn"),
        name: "brint".to_owned(),
        of,
        ctl: String::new(),
        net: NET,
    };
    map_and_flows(&h.a, "0x1234", "0x5678");
    map_and_flows(&b, "0x5678", "0x1234");
    values_decide(&h.ha, (&h.va, &h.vb), &h.a, &b);
}
