//! Packet-ins from a tunnel carry its metadata, as Open vSwitch's do: the
//! packet's `tun_id`, `tun_src` and `tun_dst` in the packet-in's match
//! (zero ones left out) beside `in_port`, in every packet-in format that
//! has a match. And an OpenFlow 1.5 packet-out gives its packet tunnel
//! metadata through its match (`ovs-ofctl packet-out
//! "in_port=controller,tun_id=5 packet=... actions=..."`).
//!
//! The encoding is checked with `ovs-ofctl ofp-print` as the reference
//! decoder. End to end: host A is an `mswitch run --module flow` with one
//! `vxlan:...,key=flow` port; host B, the remote, a namespace with a Linux
//! `vxlan` device of VNI 5, over an underlay veth. A flow
//! `tun_id=5,actions=controller` sends what B sends to the controller:
//! real `ovs-ofctl monitor` shows the VNI and B's address in each format.
//! A packet-out with `tun_id=5` reaches B (whose ARP reply comes back as
//! a packet-in).
//!
//! And a packet-in with a `tun_metadata0` field, as ovs-ofctl reads it.
//!
//! Needs root (CI runs as root) and ovs-ofctl; without root the end-to-end
//! test passes vacuously. Every namespace has a name unique to the test
//! and is removed on drop.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::{in_netns, is_root};
use common::tunnel_lab::{Lab, ex};
use common::{hex, ofp_print, ovs_ofctl};
use mswitch::openflow::flow::PacketIn;
use mswitch::openflow::nicira::{NxMatchField, Register};
use mswitch::openflow::oxm::{Masked, OxmField};
use mswitch::openflow::v10::{self, Ctx, nx::PacketInFormat};
use mswitch::openflow::{Match, Message, PortNo};

/// Third octet of this test's addresses: 10.83.0.0/24 underlay,
/// 192.168.83.0/24 overlay.
const NET: u8 = 83;

/// How long to wait for a packet-in.
const WAIT: Duration = Duration::from_secs(15);

/// A packet-in from port 1 of a packet that came with VNI 5 from
/// 192.168.1.1 to 192.168.1.2 (the metadata `switch_dp` puts in).
fn tunnel_packet_in() -> PacketIn {
    let addr = |reg, a: [u8; 4]| NxMatchField {
        reg,
        value: u64::from(u32::from(Ipv4Addr::from(a))),
        mask: None,
    };
    let m = Match::from_fields(vec![
        OxmField::InPort(PortNo(1)),
        OxmField::TunnelId(Masked::exact(5)),
    ])
    .and_then(|m| {
        m.with_registers(vec![
            addr(Register::TunSrc, [192, 168, 1, 1]),
            addr(Register::TunDst, [192, 168, 1, 2]),
        ])
    })
    .unwrap();
    let mut data = vec![0xff; 6];
    data.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    data.resize(60, 0);
    PacketIn {
        match_: m,
        total_len: 60,
        data,
        ..PacketIn::default()
    }
}

/// Each packet-in format with a match says the tunnel fields as Open
/// vSwitch reads them; `tun_id` has the header Open vSwitch gives it in
/// that version (NXM's before 1.3, OXM's from 1.3).
#[test]
fn every_packet_in_format_with_a_match_carries_the_tunnel_fields() {
    let pin = tunnel_packet_in();
    let msg = Message::PacketIn(pin.clone());
    let nxt = |format| Ctx {
        packet_in_format: format,
        ..Ctx::default()
    };
    let nxm_tun_id = "00012008";
    let oxm_tun_id = "80004c08";
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("OFPT_PACKET_IN (OF1.3)", encoded(&msg, 4), Some(oxm_tun_id)),
        ("OFPT_PACKET_IN (OF1.5)", encoded(&msg, 6), Some(oxm_tun_id)),
        (
            "NXT_PACKET_IN ",
            v10::encode_with(&msg, 1, &nxt(PacketInFormat::Nxt)).unwrap(),
            Some(nxm_tun_id),
        ),
        (
            "NXT_PACKET_IN2 ",
            v10::nx::packet_in2_message(&pin, 1, 1).unwrap(),
            Some(nxm_tun_id),
        ),
        (
            "NXT_PACKET_IN2 (OF1.3)",
            v10::nx::packet_in2_message(&pin, 4, 1).unwrap(),
            Some(oxm_tun_id),
        ),
        // 1.0's own packet-in has no match: the port only.
        (
            "OFPT_PACKET_IN ",
            v10::encode_with(&msg, 1, &Ctx::default()).unwrap(),
            None,
        ),
    ];
    for (what, bytes, header) in cases {
        let said = ofp_print(&bytes);
        assert!(said.contains(what), "{what}: {said}");
        let fields = "tun_id=0x5,tun_src=192.168.1.1,tun_dst=192.168.1.2,in_port=1";
        match header {
            Some(h) => {
                assert!(said.contains(fields), "{what}: {said}");
                assert!(hex(&bytes).contains(h), "{what}: {}", hex(&bytes));
            }
            None => {
                assert!(!said.contains("tun_"), "{what}: {said}");
                assert!(said.contains("in_port=1"), "{what}: {said}");
            }
        }
    }
}

fn encoded(msg: &Message, version: u8) -> Vec<u8> {
    let mut v = Vec::new();
    msg.encode_into_version(version, 1, &mut v).unwrap();
    v
}

/// What `ovs-ofctl -O OpenFlow15 packet-out SWITCH "in_port=controller,
/// tun_id=5,tun_dst=10.0.0.2 packet=ffffffffffff0000000000010800
/// actions=output:1"` sends (Open vSwitch 3.1; in 1.0 and 1.3 it leaves
/// the tunnel fields out and sends a plain packet-out).
const OVS_PACKET_OUT15: &str = "060d004e00000002ffffffff0010000000010020\
    80000004fffffffd80004c080000000000000005000140040a000002000000100000\
    00010000000000000000ffffffffffff0000000000010800";

/// A 1.5 packet-out's match gives its packet tunnel metadata: read from
/// what ovs-ofctl sends and written back byte for byte; other pipeline
/// fields are refused, as before; 1.3 cannot say them.
#[test]
fn packet_out_matches_carry_tunnel_metadata_in_1_5() {
    let raw: Vec<u8> = (0..OVS_PACKET_OUT15.len() / 2)
        .map(|i| u8::from_str_radix(&OVS_PACKET_OUT15[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let (_, msg) = mswitch::openflow::decode(&raw).expect("decodes");
    let Message::PacketOut(po) = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(po.in_port, PortNo::CONTROLLER);
    assert_eq!(po.pipeline.fields(), [OxmField::TunnelId(Masked::exact(5))]);
    let dst = NxMatchField {
        reg: Register::TunDst,
        value: 0x0a00_0002,
        mask: None,
    };
    assert_eq!(po.pipeline.registers(), [dst]);
    assert_eq!(po.data, raw[raw.len() - 14..]);
    let mut back = Vec::new();
    msg.encode_into_version(6, 2, &mut back).unwrap();
    assert_eq!(hex(&back), hex(&raw));
    // 1.3 has no room for them: a plain packet-out, as Open vSwitch's.
    let said = ofp_print(&encoded(&msg, 4));
    assert!(
        said.contains("in_port=CONTROLLER actions=output:1"),
        "{said}"
    );
    assert!(!said.contains("tun_"), "{said}");
    // A register and the metadata are pipeline fields too (Open vSwitch
    // takes them); a packet header field is not: refused.
    let mut reg0 = po.clone();
    reg0.pipeline = Match::from_fields(vec![OxmField::Metadata(Masked::exact(9))])
        .and_then(|m| {
            m.with_registers(vec![NxMatchField {
                reg: Register::Reg(0),
                ..dst
            }])
        })
        .unwrap();
    let bytes = encoded(&Message::PacketOut(reg0.clone()), 6);
    let (_, back) = mswitch::openflow::decode(&bytes).expect("a register and metadata");
    assert_eq!(back, Message::PacketOut(reg0));
    let said = ofp_print(&bytes);
    assert!(
        said.contains("metadata=0x9") && said.contains("reg0=0xa000002"),
        "{said}"
    );
    let mut eth = po.clone();
    eth.pipeline = Match::from_fields(vec![OxmField::EthType(0x0800)]).unwrap();
    let err = mswitch::openflow::decode(&encoded(&Message::PacketOut(eth), 6))
        .expect_err("a header field");
    assert_eq!(
        err.code,
        mswitch::openflow::ErrorCode::BadMatch(mswitch::openflow::error::BadMatchCode::BadField)
    );
}

/// An `ovs-ofctl monitor`, killed (and reaped) when dropped, however the
/// test ends; its stdout lines come through `lines`.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Monitor {
    fn start(target: &str, opts: &[&str], run_dir: &std::path::Path) -> Monitor {
        let mut child = Command::new("ovs-ofctl")
            .args(opts)
            .args(["--no-names", "monitor", target, "65534"])
            .env("OVS_RUNDIR", run_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ovs-ofctl monitor");
        // It prints what it receives on stdout or, with its log, stderr.
        let (tx, lines) = mpsc::channel();
        forward_lines(child.stdout.take().expect("monitor stdout"), tx.clone());
        forward_lines(child.stderr.take().expect("monitor stderr"), tx);
        Monitor { child, lines }
    }

    /// The first packet-in the monitor prints (its line and the packet's
    /// description after it) for which `want` holds, calling `poke` (which
    /// makes traffic) every 200 ms until one comes.
    fn packet_in(&self, want: impl Fn(&str) -> bool, mut poke: impl FnMut()) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let mut head: Option<String> = None;
        while Instant::now() < deadline {
            poke();
            let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(h) = head.take() {
                let both = format!("{h}\n{l}");
                if want(&both) {
                    return both;
                }
                seen.push(both);
            }
            if l.contains("PACKET_IN") {
                head = Some(l);
            } else {
                seen.push(l);
            }
        }
        panic!("no such packet-in in {WAIT:?}: {seen:#?}");
    }
}

/// Sends each line of `r` to `tx`, on a thread of its own, until either
/// end closes.
fn forward_lines(r: impl std::io::Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let mut lines = BufReader::new(r).lines();
        while let Some(Ok(l)) = lines.next() {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn packet_ins_from_a_linux_vxlan_host_carry_its_vni_and_address() {
    if !is_root() {
        return;
    }
    let mut lab = Lab::new(NET);
    let (a, b) = lab.hosts();
    let (a_ip, b_ip) = (format!("10.{NET}.0.1"), format!("10.{NET}.0.2"));
    let (a_mac, b_mac) = ("02:00:00:53:00:01", "02:00:00:53:00:02");
    let (a_over, b_over) = (format!("192.168.{NET}.1"), format!("192.168.{NET}.2"));
    ex(
        &b,
        &[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "5", "remote", &a_ip, "local",
            &b_ip, "dstport", "4789", "dev", "u",
        ],
    );
    ex(&b, &["ip", "link", "set", "vx0", "address", b_mac, "up"]);
    ex(
        &b,
        &["ip", "addr", "add", &format!("{b_over}/24"), "dev", "vx0"],
    );
    // B sends to A's overlay address without asking for it first.
    ex(
        &b,
        &[
            "ip",
            "neigh",
            "replace",
            &a_over,
            "lladdr",
            a_mac,
            "nud",
            "permanent",
            "dev",
            "vx0",
        ],
    );
    let of = lab.dir.join("a.of").display().to_string();
    let listen = format!("punix:{of}");
    // The flow module, flows from the controller only, no local port.
    let args: Vec<&str> = "--module flow --fail-mode secure --no-local --listen"
        .split(' ')
        .chain([listen.as_str()])
        .collect();
    let port = format!("vxlan:vx,remote={b_ip},local={a_ip},key=flow");
    lab.switch_with(&a, &args, &[port]);
    let target = format!("unix:{of}");
    ovs_ofctl(&[], "add-flow", &target, &["tun_id=5,actions=controller"]);
    // The port's OpenFlow number, as `show` gives it.
    let show = ovs_ofctl(&["--no-names"], "show", &target, &[]);
    let vx = show
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once('(')?;
            rest.starts_with("vx)").then(|| n.to_owned())
        })
        .unwrap_or_else(|| panic!("no port vx in {show}"));
    let fields = format!("tun_id=0x5,tun_src={b_ip},tun_dst={a_ip},in_port={vx}");

    // B's datagrams to A's overlay address, one per poke.
    let over = a_over.clone();
    let sock = in_netns(&b, || UdpSocket::bind("0.0.0.0:0").expect("bind in B"))
        .join()
        .unwrap();
    let poke = || {
        let _ = sock.send_to(b"tunnel packet-in", (over.as_str(), 9));
    };
    for (opts, what) in [
        (
            &["-O", "OpenFlow13", "-P", "standard"][..],
            "OFPT_PACKET_IN (OF1.3)",
        ),
        (
            &["-O", "OpenFlow15", "-P", "standard"][..],
            "OFPT_PACKET_IN (OF1.5)",
        ),
        (&["-P", "nxt_packet_in"][..], "NXT_PACKET_IN "),
        (&["-P", "nxt_packet_in2"][..], "NXT_PACKET_IN2 "),
        (&["-O", "OpenFlow13"][..], "NXT_PACKET_IN2 (OF1.3)"),
        (
            &["-O", "OpenFlow14", "-P", "standard"][..],
            "OFPT_PACKET_IN (OF1.4)",
        ),
        (&["-O", "OpenFlow15"][..], "NXT_PACKET_IN2 (OF1.5)"),
    ] {
        let mon = Monitor::start(&target, opts, &lab.dir);
        let got = mon.packet_in(|p| p.contains(what), poke);
        assert!(got.contains(&fields), "{opts:?}: {got}");
        // B's datagram, as B sent it.
        assert!(
            got.contains(&format!("nw_src={b_over},nw_dst={a_over}")) && got.contains("tp_dst=9"),
            "{opts:?}: {got}"
        );
    }

    // What the actions before the controller output set is what the
    // packet-in says (here a new VNI; the addresses stay as they came).
    let set = "tun_id=5,actions=set_field:9->tun_id,controller,set_field:7->tun_id";
    ovs_ofctl(&[], "add-flow", &target, &[set]);
    let mon = Monitor::start(&target, &["-O", "OpenFlow13", "-P", "standard"], &lab.dir);
    let got = mon.packet_in(|p| p.contains("tun_id=0x9"), poke);
    let nine = format!("tun_id=0x9,tun_src={b_ip},tun_dst={a_ip},in_port={vx}");
    assert!(got.contains(&nine), "{got}");
    drop(mon);
    ovs_ofctl(&[], "add-flow", &target, &["tun_id=5,actions=controller"]);

    // A packet-out with tun_id=5 reaches B (VNI 5); B's ARP reply comes
    // back through the tunnel to the controller with its metadata.
    let mon = Monitor::start(&target, &["-O", "OpenFlow13", "-P", "standard"], &lab.dir);
    let spa: String = [192u8, 168, NET, 1]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    let tpa: String = [192u8, 168, NET, 2]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    let sha = a_mac.replace(':', "");
    let arp = format!("ffffffffffff{sha}0806000108000604 0001{sha}{spa}000000000000{tpa}")
        .replace(' ', "");
    let po = format!("in_port=controller,tun_id=5 packet={arp} actions=output:{vx}");
    let reply = mon.packet_in(
        |p| p.contains("arp_op=2"),
        || {
            ovs_ofctl(&["-O", "OpenFlow15"], "packet-out", &target, &[&po]);
        },
    );
    assert!(reply.contains(&fields), "{reply}");
    assert!(
        reply.contains(&format!("arp_spa={b_over},arp_tpa={a_over},arp_op=2")),
        "{reply}"
    );
}

/// A packet-in of a packet that came with a Geneve option mapped to
/// `tun_metadata0` carries the field (4 bytes, the mapped length) as Open
/// vSwitch reads it, in NXM (1.0) and OXM-era (1.3) formats.
#[test]
fn packet_ins_carry_tun_metadata_fields() {
    let mut pin = tunnel_packet_in();
    let mut regs = pin.match_.registers().to_vec();
    regs.push(NxMatchField {
        reg: Register::TunMetadata { idx: 0, len: 4 },
        value: 0x1234,
        mask: None,
    });
    pin.match_ = Match::from_fields(pin.match_.fields().to_vec())
        .and_then(|m| m.with_registers(regs))
        .unwrap();
    let msg = Message::PacketIn(pin.clone());
    for bytes in [
        v10::nx::packet_in2_message(&pin, 1, 1).unwrap(),
        v10::nx::packet_in2_message(&pin, 4, 1).unwrap(),
        encoded(&msg, 4),
    ] {
        let said = ofp_print(&bytes);
        assert!(said.contains("tun_metadata0=0x1234"), "{said}");
        // class 1, field 40, 4 bytes.
        assert!(hex(&bytes).contains("0001500400001234"), "{}", hex(&bytes));
    }
}
