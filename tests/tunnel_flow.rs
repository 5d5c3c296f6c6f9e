//! One `remote=flow,key=flow` VXLAN port driven by OpenFlow flows to three
//! remote hosts, as Open vSwitch's flow-based tunnels are used: host A is
//! an `mswitch run` (flow module, flows from `ovs-ofctl`) with a VM-like
//! namespace and the one tunnel port; hosts 1..3 are namespaces with a
//! Linux `vxlan` device each, of its own VNI, over an underlay veth of its
//! own to A. The same with Geneve, where each remote host is a Linux
//! `geneve` device if the kernel has them, else an mswitch with a fixed
//! geneve port and a VM-like namespace. Flows pick each frame's remote and VNI by its destination MAC
//! (`set_field:IP->tun_dst,set_field:N->tun_id`) and take frames from a
//! tunnel by (`tun_id`, `tun_src`); ping both ways with every remote, TCP
//! with its bytes checked, tcpdump on the underlay showing the VNI, flow
//! dumps as `ovs-ofctl` prints them, and a frame with no `tun_dst`
//! dropped and counted.
//!
//! Needs root (CI runs as root); without it the test passes vacuously.
//! Every namespace has a name unique to the test and is removed on drop.

mod common;

use common::netns::{capture, is_root, ping};
use common::ovs_ofctl;
use common::tunnel_lab::{Lab, counter, ex, kernel_has_geneve, neigh, ofport, tcp_echo};

fn vm_mac(net: u8) -> String {
    format!("02:00:00:{net:02x}:00:01")
}

/// The MAC, VNI, underlay address and overlay address of remote host `k`
/// of the test whose addresses have third octet `net` (10.NET.K.0/24
/// underlays, 192.168.NET.0/24 overlay).
fn remote(net: u8, k: u8) -> (String, u32, String, String) {
    (
        format!("02:00:00:{net:02x}:01:0{k}"),
        100 + u32::from(k),
        format!("10.{net}.{k}.2"),
        format!("192.168.{net}.{}", 10 + k),
    )
}

#[test]
fn one_flow_based_vxlan_port_reaches_three_hosts_by_flows() {
    three_hosts("vxlan", 89);
}

/// The remote hosts are Linux geneve devices where the kernel has them,
/// else each an mswitch with a fixed geneve port and a VM-like namespace.
#[test]
fn one_flow_based_geneve_port_reaches_three_hosts_by_flows() {
    three_hosts("geneve", 88);
}

/// The test, with `kind` ports and devices, addresses of third octet `NET`.
#[allow(non_snake_case)]
fn three_hosts(kind: &str, NET: u8) {
    if !is_root() {
        return;
    }
    let vm_mac = || vm_mac(NET);
    let remote = |k| remote(NET, k);
    let udp = if kind == "vxlan" { "4789" } else { "6081" };
    let mut lab = Lab::new(NET);
    let ha = lab.ns("a");
    let (vm, pvm) = lab.vm(&ha, "vm", 1, 1400);
    ex(&vm, &["ip", "link", "set", "eth0", "address", &vm_mac()]);
    let (mut hosts, mut overs) = (Vec::new(), Vec::new());
    for k in 1..=3u8 {
        let h = lab.ns(&format!("r{k}"));
        let (mac, vni, under, over) = remote(k);
        let a_side = format!("u{k}");
        lab.veth(&ha, &a_side, &h, "u", 1500);
        let a_addr = format!("10.{NET}.{k}.1");
        ex(
            &ha,
            &["ip", "addr", "add", &format!("{a_addr}/24"), "dev", &a_side],
        );
        ex(
            &h,
            &["ip", "addr", "add", &format!("{under}/24"), "dev", "u"],
        );
        // Where the remote's overlay address lives, and its device: a
        // Linux tunnel device on the host, or (no Linux geneve here) a
        // VM-like namespace behind the host's own mswitch.
        let (over_ns, over_dev) = if kind == "vxlan" || kernel_has_geneve().is_ok() {
            let vni_s = vni.to_string();
            let mut dev = vec![
                "ip", "link", "add", "vx0", "type", kind, "id", &vni_s, "remote", &a_addr,
            ];
            if kind == "vxlan" {
                dev.extend(["local", &under, "dstport", "4789", "dev", "u"]);
            }
            ex(&h, &dev);
            ex(
                &h,
                &["ip", "link", "set", "vx0", "address", &mac, "mtu", "1400"],
            );
            ex(&h, &["ip", "link", "set", "vx0", "up"]);
            ex(
                &h,
                &["ip", "addr", "add", &format!("{over}/24"), "dev", "vx0"],
            );
            (h.clone(), "vx0")
        } else {
            let (v, outer) = lab.vm(&h, &format!("v{k}"), 10 + k, 1400);
            ex(&v, &["ip", "link", "set", "eth0", "address", &mac]);
            lab.switch(
                &h,
                &[
                    format!("af_packet:{outer}"),
                    format!("{kind}:tun,remote={a_addr},local={under},key={vni}"),
                ],
            );
            (v, "eth0")
        };
        // Static neighbours: no ARP flooding to route.
        let vm_ip = format!("192.168.{NET}.1");
        for (ns, ip, lladdr, dev) in [
            (&over_ns, &vm_ip, &vm_mac(), over_dev),
            (&vm, &over, &mac, "eth0"),
        ] {
            neigh(ns, ip, lladdr, dev);
        }
        hosts.push(h);
        overs.push(over_ns);
    }
    let (ctl, target) = lab.flow_switch(
        &ha,
        "sw0",
        &[
            format!("af_packet:{pvm}"),
            format!("{kind}:vx,remote=flow,key=flow"),
        ],
    );
    let show = ovs_ofctl(&[], "show", &target, &[]);
    let (p_vm, p_vx) = (ofport(&show, &pvm), ofport(&show, "vx"));
    let mut flows = Vec::new();
    for k in 1..=3u8 {
        let (mac, vni, under, _) = remote(k);
        flows.push(format!(
            "in_port={p_vm},dl_dst={mac},actions=set_field:{under}->tun_dst,set_field:{vni}->tun_id,output:{p_vx}"
        ));
        // tun_dst: the address of A's that the datagram was sent to (the
        // port binds any address; each remote reaches another of A's).
        flows.push(format!(
            "in_port={p_vx},tun_id={vni},tun_src={under},tun_dst=10.{NET}.{k}.1,actions=output:{p_vm}"
        ));
    }
    // A MAC no flow gives a remote.
    flows.push(format!(
        "in_port={p_vm},dl_dst=02:00:00:59:02:99,actions=output:{p_vx}"
    ));
    for f in &flows {
        ovs_ofctl(&[], "add-flow", &target, &[f]);
    }
    // ovs-ofctl reads the tunnel fields back as it wrote them.
    let dump = ovs_ofctl(&[], "dump-flows", &target, &[]);
    assert!(
        dump.contains(&format!(
            "tun_id=0x66,tun_src=10.{NET}.2.2,tun_dst=10.{NET}.2.1,in_port={p_vx}"
        )) || dump.contains(&format!(
            "tun_id=0x66,tun_src=10.{NET}.2.2,tun_dst=10.{NET}.2.1,in_port=\"{p_vx}\""
        )),
        "{dump}"
    );
    assert!(
        dump.contains(&format!(
            "actions=set_field:10.{NET}.1.2->tun_dst,set_field:0x65->tun_id,output:{p_vx}"
        )),
        "{dump}"
    );

    for (k, h) in (1..=3u8).zip(&overs) {
        let (_, _, _, over) = remote(k);
        ping(&vm, &over, &[]).unwrap_or_else(|e| panic!("VM to host {k}: {e}"));
        ping(h, &format!("192.168.{NET}.1"), &[]).unwrap_or_else(|e| panic!("host {k} to VM: {e}"));
    }
    tcp_echo(&vm, &overs[1], &remote(2).3, 200_000);
    tcp_echo(&overs[2], &vm, &format!("192.168.{NET}.1"), 100_000);
    // On host 3's underlay: VNI 103 on the tunnel's port, both ways
    // (tcpdump prints a Geneve VNI in hex).
    let seen = capture(&hosts[2], "u", &["udp", "port", udp], || {
        ping(&vm, &remote(3).3, &[]).expect("VM to host 3 while capturing");
    });
    let vni = |n: u32| {
        if kind == "vxlan" {
            format!("vni {n}")
        } else {
            format!("vni {n:#x}")
        }
    };
    let n = seen.lines().filter(|l| l.contains(&vni(103))).count();
    assert!(
        n >= 6,
        "expected 3 pings and 3 replies with VNI 103: {seen}"
    );
    assert!(
        !seen.contains(&vni(101)) && !seen.contains(&vni(102)),
        "{seen}"
    );

    // A frame the flows give no remote is dropped and counted.
    ex(
        &vm,
        &[
            "ip",
            "neigh",
            "replace",
            &format!("192.168.{NET}.99"),
            "lladdr",
            "02:00:00:59:02:99",
            "nud",
            "permanent",
            "dev",
            "eth0",
        ],
    );
    assert!(ping(&vm, &format!("192.168.{NET}.99"), &["-c", "2"]).is_err());
    assert_eq!(counter(&ctl, "sw0", "vx", "tx_no_remote"), 2);
    // And nothing of it reached a host's underlay as anything but what
    // the flows said: every datagram came from a known remote.
    assert_eq!(counter(&ctl, "sw0", "vx", "rx_unknown_remote"), 0);
}
