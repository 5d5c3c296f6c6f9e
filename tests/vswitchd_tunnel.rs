//! Tunnel interfaces configured through `ovs-vsctl` against `mswitch
//! vswitchd`, as in Open vSwitch's "Connecting VMs using tunnels" how-to:
//! a bridge with a VM-like host and a `type=vxlan` interface
//! (`options:remote_ip`, `options:key`) to a second host, which is a
//! namespace with Linux's own vxlan device on an underlay veth.
//!
//! Needs root and Open vSwitch's tools; without them it says so and passes
//! vacuously, except in CI.

mod common;
mod vswitchd_lab;

use common::must;
use vswitchd_lab::{Lab, eventually, ready};

#[test]
fn ovs_vsctl_makes_a_vxlan_port_that_carries_traffic() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let t = lab.tag.clone();
    // The daemon runs in this namespace, so its UDP socket does: a port
    // number of this test's own keeps parallel runs apart.
    let udp = (4790 + std::process::id() % 1000).to_string();
    // The remote host: a namespace on an underlay veth, with a Linux
    // vxlan device carrying 192.168.96.2.
    let (ns, under) = (format!("msr{t}"), format!("mu{t}"));
    common::veth_into_netns(
        &ns,
        &under,
        &format!("mr{t}"),
        &mut lab.netns,
        &mut lab.links,
    );
    let ex = |a: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", &ns];
        v.extend_from_slice(a);
        must(&v)
    };
    must(&["ip", "addr", "add", "10.96.0.1/24", "dev", &under]);
    must(&["ip", "link", "set", &under, "up"]);
    ex(&["ip", "link", "set", &format!("mr{t}"), "name", "u"]);
    ex(&["ip", "addr", "add", "10.96.0.2/24", "dev", "u"]);
    ex(&["ip", "link", "set", "u", "up"]);
    ex(&["ip", "link", "set", "lo", "up"]);
    ex(&[
        "ip",
        "link",
        "add",
        "tun",
        "type",
        "vxlan",
        "id",
        "42",
        "remote",
        "10.96.0.1",
        "dstport",
        &udp,
    ]);
    ex(&["ip", "addr", "add", "192.168.96.2/24", "dev", "tun"]);
    ex(&["ip", "link", "set", "tun", "mtu", "1450", "up"]);

    let br = format!("msb{t}");
    lab.add_br(&br);
    let h1 = lab.host(1, "192.168.96.1");
    must(&[
        "ip", "netns", "exec", &h1.ns, "ip", "link", "set", "eth0", "mtu", "1450",
    ]);
    lab.must_vsctl(&["add-port", &br, &h1.port]);
    let vx = format!("vx{t}");
    lab.must_vsctl(&[
        "add-port",
        &br,
        &vx,
        "--",
        "set",
        "interface",
        &vx,
        "type=vxlan",
        "options:remote_ip=10.96.0.2",
        "options:key=42",
        &format!("options:dst_port={udp}"),
    ]);
    assert_eq!(lab.must_vsctl(&["get", "interface", &vx, "error"]), "[]");
    let of: i64 = lab
        .must_vsctl(&["get", "interface", &vx, "ofport"])
        .parse()
        .unwrap();
    assert!(of > 0, "ofport {of}\n{}", lab.log());
    h1.ping("192.168.96.2", "3")
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.log()));
    // What ovs-vswitchd reports of a tunnel: the interface the route to
    // the remote leaves by, and its carrier.
    eventually("no tunnel_egress_iface status", 12, || {
        lab.vsctl(&["get", "interface", &vx, "status:tunnel_egress_iface"])
            .is_ok_and(|s| s.trim_matches('"') == under)
    });
    let carrier = lab.must_vsctl(&[
        "get",
        "interface",
        &vx,
        "status:tunnel_egress_iface_carrier",
    ]);
    assert_eq!(carrier, "up");
    assert_eq!(
        lab.must_vsctl(&["get", "interface", &vx, "link_state"]),
        "up"
    );
    let types = lab.must_vsctl(&["get", "Open_vSwitch", ".", "iface_types"]);
    assert!(
        types.contains("vxlan") && types.contains("geneve"),
        "{types}"
    );

    // local_ip=flow is refused in `error`, the bridge's other ports
    // untouched.
    lab.must_vsctl(&["set", "interface", &vx, "options:local_ip=flow"]);
    assert_eq!(lab.must_vsctl(&["get", "interface", &vx, "ofport"]), "-1");
    let err = lab.must_vsctl(&["get", "interface", &vx, "error"]);
    assert!(err.contains("not supported"), "{err}");
    lab.must_vsctl(&["remove", "interface", &vx, "options", "local_ip"]);
    h1.ping("192.168.96.2", "2").expect("back after the fix");

    // The same port flow-based (remote_ip=flow, key=flow): flows, given
    // with ovs-ofctl's default OpenFlow 1.0 and NXM, choose the remote
    // and key, and take what comes back by tun_id and tun_src.
    lab.must_vsctl(&[
        "set",
        "interface",
        &vx,
        "options:remote_ip=flow",
        "options:key=flow",
    ]);
    eventually("the flow-based port is up", 12, || {
        lab.vsctl(&["get", "interface", &vx, "ofport"])
            .is_ok_and(|o| o.parse::<i64>().is_ok_and(|n| n > 0))
    });
    assert_eq!(lab.must_vsctl(&["get", "interface", &vx, "error"]), "[]");
    let p_vx = lab.must_vsctl(&["get", "interface", &vx, "ofport"]);
    let p_h1 = lab.must_vsctl(&["get", "interface", &h1.port, "ofport"]);
    lab.ofctl(
        "add-flow",
        &br,
        &[&format!(
            "priority=100,in_port={p_h1},actions=set_field:10.96.0.2->tun_dst,set_tunnel:42,output:{p_vx}"
        )],
    );
    lab.ofctl(
        "add-flow",
        &br,
        &[&format!(
            "priority=100,in_port={p_vx},tun_id=42,tun_src=10.96.0.2,actions=output:{p_h1}"
        )],
    );
    h1.flush_neigh();
    h1.ping("192.168.96.2", "3")
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.log()));
    let dump = lab.ofctl("dump-flows", &br, &[]);
    assert!(dump.contains("tun_id=0x2a,tun_src=10.96.0.2"), "{dump}");
    // (In OpenFlow 1.0 the set-field travels as a load, and reads back so.)
    assert!(
        dump.contains("actions=load:0xa600002->NXM_NX_TUN_IPV4_DST[],set_tunnel:0x2a"),
        "{dump}"
    );
    // The bridge's TLV table, as `ovs-ofctl add-tlv-map BRIDGE` sets it.
    lab.ofctl(
        "add-tlv-map",
        &br,
        &["{class=0x0102,type=0x80,len=4}->tun_metadata0"],
    );
    let map = lab.ofctl("dump-tlv-map", &br, &[]);
    assert!(
        map.contains("max option space=8") && map.contains("0x80       4  tun_metadata0"),
        "{map}"
    );
}
