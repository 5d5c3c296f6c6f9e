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
//! counted.
//!
//! Needs root (CI runs as root) and ovs-ofctl; without root it passes
//! vacuously. Every namespace has a name unique to the test and is
//! removed on drop.

mod common;

use std::net::UdpSocket;

use common::netns::{capture, in_netns, is_root, ping};
use common::ovs_ofctl;
use common::tunnel_lab::{Lab, counter, eventually, ofport};

/// Third octet of this test's addresses: 10.86.0.0/24 underlay,
/// 192.168.86.0/24 overlay.
const NET: u8 = 86;

/// One host's switch: its OpenFlow target and control socket, and the
/// OpenFlow numbers of its VM port and tunnel port.
struct Side {
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

#[test]
fn tun_metadata0_crosses_a_geneve_tunnel_and_decides_what_passes() {
    if !is_root() {
        return;
    }
    let mut lab = Lab::new(NET);
    let (ha, hb) = lab.hosts();
    let (va, pa) = lab.vm(&ha, "va", 1, 1400);
    let (vb, pb) = lab.vm(&hb, "vb", 2, 1400);
    let (ua, ub) = (format!("10.{NET}.0.1"), format!("10.{NET}.0.2"));
    let a = side(&mut lab, "swa", &ha, &pa, &ua, &ub);
    let b = side(&mut lab, "swb", &hb, &pb, &ub, &ua);
    let map = "{class=0x0102,type=0x80,len=4}->tun_metadata0";
    for s in [&a, &b] {
        ovs_ofctl(&[], "add-tlv-map", &s.of, &[map]);
        let dump = ovs_ofctl(&[], "dump-tlv-map", &s.of, &[]);
        assert!(dump.contains("max option space=8 max fields=64"), "{dump}");
        assert!(
            dump.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["0x102", "0x80", "4", "tun_metadata0"]),
            "{dump}"
        );
    }
    // A sends 0x1234 and takes 0x5678; B the other way round; nothing
    // else passes.
    for (s, send, take) in [(&a, "0x1234", "0x5678"), (&b, "0x5678", "0x1234")] {
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
    let (ip_a, ip_b) = (format!("192.168.{NET}.1"), format!("192.168.{NET}.2"));
    // On the underlay: every datagram carries its side's option, critical
    // bit and all (tcpdump prints the option data in hex).
    let seen = capture(&ha, "u", &["-vv", "udp", "port", "6081"], || {
        ping(&va, &ip_b, &[]).unwrap_or_else(|e| panic!("A to B: {e}"));
    });
    let to_b = seen.matches("data 00001234").count();
    let to_a = seen.matches("data 00005678").count();
    assert!(to_b >= 3 && to_a >= 3, "3 requests and 3 replies: {seen}");
    assert!(seen.contains("type 0x80(C) len 8"), "{seen}");
    ping(&vb, &ip_a, &[]).unwrap_or_else(|e| panic!("B to A: {e}"));
    assert!(packets(&b, "0x1234") >= 6 && packets(&a, "0x5678") >= 6);

    // A now sends another value: B takes none of it.
    let before = packets(&b, "0x1234");
    ovs_ofctl(
        &["-O", "OpenFlow13"],
        "mod-flows",
        &a.of,
        &[&format!(
            "in_port={},actions=set_field:0x9999->tun_metadata0,output:{}",
            a.vm, a.tun
        )],
    );
    assert!(ping(&va, &ip_b, &["-c", "2"]).is_err());
    assert_eq!(packets(&b, "0x1234"), before);

    // The map a flow uses cannot go; a frame with a critical option no
    // table maps is dropped at B's port and counted.
    let del = common::sh(&["ovs-ofctl", "-O", "OpenFlow13", "del-tlv-map", &b.of, map]);
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
    let send = |d: Vec<u8>| {
        let (ua, ub) = (ua.clone(), ub.clone());
        in_netns(&ha, move || {
            let s = UdpSocket::bind((ua.as_str(), 0)).expect("bind");
            s.send_to(&d, (ub.as_str(), 6081)).expect("send");
        })
        .join()
        .expect("sender");
    };
    let before = counter(&b.ctl, &b.name, "gn", "rx_geneve_unsupported");
    send(d);
    eventually("the critical option counted", || {
        counter(&b.ctl, &b.name, "gn", "rx_geneve_unsupported") == before + 1
    });
}
