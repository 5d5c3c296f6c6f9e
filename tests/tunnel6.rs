//! IPv6 tunnel fields and `tos`/`ttl=inherit` end to end, as Open
//! vSwitch's: host A is an `mswitch run` (flow module, flows from
//! `ovs-ofctl`) with a VM-like namespace and one
//! `remote=flow,key=flow` VXLAN port bound to IPv6 (`local=::`), with
//! `tos=inherit,ttl=inherit`; host B is a namespace with a Linux `vxlan`
//! device over an IPv6 underlay veth to A. A flow sends the VM's frames
//! with `set_field:fd00:N::2->tun_ipv6_dst,set_field:42->tun_id`, another
//! takes frames from the tunnel only with `tun_id=42`, the real
//! `tun_ipv6_src` (B) and `tun_ipv6_dst` (A's address the datagram was
//! sent to); ping both ways, flow dumps as `ovs-ofctl` prints them, and
//! the outer IPv6 header's traffic class and hop limit on the underlay
//! those of the VM's packets (`tcpdump -v`). A second test checks
//! `tos`/`ttl=inherit` of a fixed IPv4 port against a Linux `vxlan`
//! device the same way.
//!
//! Needs root (CI runs as root); without it the test passes vacuously.
//! Every namespace has a name unique to the test and is removed on drop.

mod common;

use common::netns::{capture, is_root, ping};
use common::tunnel_lab::{Lab, counter, ex, neigh, ofport};
use common::{hex, ofp_print, ovs_ofctl};
use mswitch::openflow::flow::{PacketIn, PacketOut};
use mswitch::openflow::nx_tun6::halves;
use mswitch::openflow::oxm::{Masked, OxmField};
use mswitch::openflow::v10::{self, Ctx, nx::PacketInFormat};
use mswitch::openflow::{Action, Match, Message, PortNo};

fn encoded(msg: &Message, version: u8) -> Vec<u8> {
    let mut v = Vec::new();
    msg.encode_into_version(version, 1, &mut v).unwrap();
    v
}

/// The IPv6 tunnel fields in every packet-in format with a match, and in
/// a 1.5 packet-out's, as Open vSwitch reads them (its `ofp-print` as the
/// reference decoder); the packet-out reads back as it was written.
#[test]
fn packet_ins_and_outs_carry_the_ipv6_tunnel_fields_as_open_vswitch_reads_them() {
    let (s6, d6) = ("fd00:1::2".parse().unwrap(), "fd00:1::1".parse().unwrap());
    let regs: Vec<_> = halves(false, s6, None)
        .into_iter()
        .chain(halves(true, d6, None))
        .collect();
    let m = Match::from_fields(vec![
        OxmField::InPort(PortNo(1)),
        OxmField::TunnelId(Masked::exact(5)),
    ])
    .and_then(|m| m.with_registers(regs.clone()))
    .unwrap();
    let mut data = vec![0xff; 6];
    data.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    data.resize(60, 0);
    let pin = PacketIn {
        match_: m,
        total_len: 60,
        data: data.clone(),
        ..PacketIn::default()
    };
    let msg = Message::PacketIn(pin.clone());
    let nxt = Ctx {
        packet_in_format: PacketInFormat::Nxt,
        ..Ctx::default()
    };
    let fields = "tun_id=0x5,tun_ipv6_src=fd00:1::2,tun_ipv6_dst=fd00:1::1,in_port=1";
    for (what, bytes) in [
        ("OFPT_PACKET_IN (OF1.3)", encoded(&msg, 4)),
        ("OFPT_PACKET_IN (OF1.5)", encoded(&msg, 6)),
        ("NXT_PACKET_IN ", v10::encode_with(&msg, 1, &nxt).unwrap()),
        (
            "NXT_PACKET_IN2 ",
            v10::nx::packet_in2_message(&pin, 1, 1).unwrap(),
        ),
    ] {
        let said = ofp_print(&bytes);
        assert!(
            said.contains(what) && said.contains(fields),
            "{what}: {said}"
        );
        // NXM_NX_TUN_IPV6_SRC, then _DST, 16 bytes each.
        let h = hex(&bytes);
        assert!(
            h.contains("0001da10fd000001000000000000000000000002"),
            "{h}"
        );
        assert!(
            h.contains("0001dc10fd000001000000000000000000000001"),
            "{h}"
        );
    }
    // A 1.5 packet-out sends its packet from the IPv6 tunnel.
    let po = Message::PacketOut(PacketOut {
        pipeline: Match::new().with_registers(regs).unwrap(),
        actions: vec![Action::output(PortNo(1))],
        data,
        ..PacketOut::default()
    });
    let bytes = encoded(&po, 6);
    let said = ofp_print(&bytes);
    assert!(
        said.contains("tun_ipv6_src=fd00:1::2,tun_ipv6_dst=fd00:1::1,in_port=CONTROLLER"),
        "{said}"
    );
    let (_, back) = mswitch::openflow::decode(&bytes).expect("decodes");
    assert_eq!(back, po);
}

/// Turns IPv6 on in namespace `ns` (the lab turns it off everywhere).
fn ipv6_on(ns: &str) {
    for k in ["all", "default"] {
        ex(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{k}.disable_ipv6=0"),
            ],
        );
    }
}

/// The outer headers of a `tcpdump -v` capture (UDP datagrams) sent by
/// `from`: each with the line after it, where tcpdump puts the addresses
/// of an IPv4 header (an IPv6 one has them on its own line).
fn outer_lines(seen: &str, from: &str) -> Vec<String> {
    let lines: Vec<&str> = seen.lines().collect();
    (0..lines.len())
        .filter(|&i| lines[i].contains("UDP (17)"))
        .map(|i| format!("{} {}", lines[i], lines.get(i + 1).unwrap_or(&"")))
        .filter(|t| t.split(" > ").next().is_some_and(|s| s.contains(from)))
        .collect()
}

#[test]
fn an_ipv6_flow_port_sends_by_tun_ipv6_dst_and_matches_tun_ipv6_src() {
    if !is_root() {
        return;
    }
    const NET: u8 = 76;
    let mut lab = Lab::new(NET);
    let (ha, hb) = (lab.ns("a"), lab.ns("b"));
    ipv6_on(&ha);
    ipv6_on(&hb);
    lab.veth(&ha, "u", &hb, "u", 1500);
    let (a6, b6) = (format!("fd00:{NET}::1"), format!("fd00:{NET}::2"));
    for (ns, a) in [(&ha, &a6), (&hb, &b6)] {
        ex(
            ns,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                "u",
                "nodad",
            ],
        );
    }
    let (vm, pvm) = lab.vm(&ha, "vm", 1, 1400);
    let vm_mac = "02:00:00:4c:00:01";
    ex(&vm, &["ip", "link", "set", "eth0", "address", vm_mac]);
    // Host B: a Linux vxlan device, VNI 42, to A over IPv6.
    let b_mac = "02:00:00:4c:01:02";
    ex(
        &hb,
        &[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", &a6, "local", &b6,
            "dstport", "4789", "dev", "u",
        ],
    );
    ex(
        &hb,
        &["ip", "link", "set", "vx0", "address", b_mac, "mtu", "1400"],
    );
    ex(&hb, &["ip", "link", "set", "vx0", "up"]);
    let (vm_ip, b_ip) = (format!("192.168.{NET}.1"), format!("192.168.{NET}.2"));
    ex(
        &hb,
        &["ip", "addr", "add", &format!("{b_ip}/24"), "dev", "vx0"],
    );
    neigh(&hb, &vm_ip, vm_mac, "vx0");
    neigh(&vm, &b_ip, b_mac, "eth0");

    let (ctl, target) = lab.flow_switch(
        &ha,
        "sw0",
        &[
            format!("af_packet:{pvm}"),
            "vxlan:vx,remote=flow,key=flow,local=::,tos=inherit,ttl=inherit".to_owned(),
        ],
    );
    let show = ovs_ofctl(&[], "show", &target, &[]);
    let (p_vm, p_vx) = (ofport(&show, &pvm), ofport(&show, "vx"));
    let flows = [
        format!(
            "in_port={p_vm},actions=set_field:{b6}->tun_ipv6_dst,set_field:42->tun_id,output:{p_vx}"
        ),
        format!(
            "in_port={p_vx},tun_id=42,tun_ipv6_src={b6},tun_ipv6_dst={a6},actions=output:{p_vm}"
        ),
    ];
    // Only these flows: nothing else takes frames from the tunnel.
    ovs_ofctl(&[], "del-flows", &target, &[]);
    for f in &flows {
        ovs_ofctl(&[], "add-flow", &target, &[f]);
    }
    // ovs-ofctl reads the fields back as it wrote them.
    let dump = ovs_ofctl(&[], "dump-flows", &target, &[]);
    assert!(
        dump.contains(&format!("tun_id=0x2a,tun_ipv6_src={b6},tun_ipv6_dst={a6}")),
        "{dump}"
    );
    assert!(
        dump.contains(&format!(
            "actions=set_field:{b6}->tun_ipv6_dst,set_field:0x2a->tun_id,output:{p_vx}"
        )),
        "{dump}"
    );

    ping(&vm, &b_ip, &[]).unwrap_or_else(|e| panic!("VM to host B: {e}"));
    ping(&hb, &vm_ip, &[]).unwrap_or_else(|e| panic!("host B to VM: {e}"));
    // The replies came through the flow on the tunnel fields.
    let dump = ovs_ofctl(&[], "dump-flows", &target, &[]);
    let rx_flow = dump
        .lines()
        .find(|l| l.contains("tun_ipv6_src"))
        .unwrap_or_else(|| panic!("{dump}"));
    assert!(!rx_flow.contains("n_packets=0,"), "{dump}");
    assert_eq!(counter(&ctl, "sw0", "vx", "rx_unknown_remote"), 0);
    assert_eq!(counter(&ctl, "sw0", "vx", "tx_no_remote"), 0);

    // The outer traffic class and hop limit are the VM's packets' own:
    // DSCP 46 (EF) and TTL 33.
    let seen = capture(&hb, "u", &["-v", "udp", "port", "4789"], || {
        ping(&vm, &b_ip, &["-Q", "0xb8", "-t", "33"]).expect("VM to host B, EF, TTL 33");
    });
    let from_a = outer_lines(&seen, &format!("{a6}."));
    assert!(from_a.len() >= 3, "3 datagrams from A expected: {seen}");
    for l in &from_a {
        // (The kernel adds a flow label between the two.)
        assert!(
            l.contains("(class 0xb8, ") && l.contains(" hlim 33, "),
            "{l}\n{seen}"
        );
    }
    // A frame that matches no receive flow's tun_ipv6_src is not taken:
    // the flow on B's address, changed to another, lets nothing through.
    ovs_ofctl(
        &["--strict"],
        "del-flows",
        &target,
        &[&format!(
            "in_port={p_vx},tun_id=42,tun_ipv6_src={b6},tun_ipv6_dst={a6}"
        )],
    );
    ovs_ofctl(
        &[],
        "add-flow",
        &target,
        &[&format!(
            "in_port={p_vx},tun_id=42,tun_ipv6_src=fd00:{NET}::99,actions=output:{p_vm}"
        )],
    );
    let dump = ovs_ofctl(&[], "dump-flows", &target, &[]);
    assert!(ping(&vm, &b_ip, &["-c", "2"]).is_err(), "{dump}");
}

#[test]
fn a_fixed_ipv4_port_inherits_tos_and_ttl_and_keeps_them_for_non_ip() {
    if !is_root() {
        return;
    }
    const NET: u8 = 79;
    let mut lab = Lab::new(NET);
    let (ha, hb) = lab.hosts();
    let (a4, b4) = (format!("10.{NET}.0.1"), format!("10.{NET}.0.2"));
    let (vm, pvm) = lab.vm(&ha, "vm", 1, 1400);
    ex(
        &hb,
        &[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "remote", &a4, "local", &b4,
            "dstport", "4789", "dev", "u",
        ],
    );
    ex(&hb, &["ip", "link", "set", "vx0", "mtu", "1400", "up"]);
    let b_ip = format!("192.168.{NET}.2");
    ex(
        &hb,
        &["ip", "addr", "add", &format!("{b_ip}/24"), "dev", "vx0"],
    );
    lab.switch(
        &ha,
        &[
            format!("af_packet:{pvm}"),
            format!("vxlan:vx,remote={b4},local={a4},key=7,tos=inherit,ttl=inherit"),
        ],
    );
    // The first ping resolves B's MAC (ARP: not IP, the port's TOS 0 and
    // TTL 64); then the echo requests are the VM's own.
    let seen = capture(&hb, "u", &["-v", "udp", "port", "4789"], || {
        ping(&vm, &b_ip, &["-Q", "0x28", "-t", "9"]).expect("VM to host B, AF11, TTL 9");
    });
    let from_a = outer_lines(&seen, &format!("{a4}."));
    // tcpdump -v: "IP (tos 0x28, ttl 9, id ..." for the outer header.
    let outer_of = |l: &str| l.split(", id").next().unwrap_or("").to_owned();
    let own = from_a
        .iter()
        .filter(|l| outer_of(l).contains("tos 0x28, ttl 9"))
        .count();
    assert!(
        own >= 3,
        "3 echo requests with the VM's TOS and TTL: {seen}"
    );
    for l in &from_a {
        let o = outer_of(l);
        assert!(
            o.contains("tos 0x28, ttl 9") || o.contains("tos 0x0, ttl 64"),
            "{l}\n{seen}"
        );
    }
}
