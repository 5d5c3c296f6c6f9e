//! The `flow` module (OpenFlow 1.3 pipeline) driven through its public API:
//! `process` on byte-array frames, `flow_mod`/`group_mod`, statistics; and a
//! real switch with memory ports for what needs room in the buffers.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mswitch::module::flow::{FlowConfig, FlowModule};
use mswitch::module::{self, Module, Verdict, Verdicts};
use mswitch::openflow::multipart::FlowStatsRequest;
use mswitch::openflow::oxm::{Masked, OxmField};
use mswitch::openflow::{Action, FlowMod, FlowModCommand, Instruction, Match, PortNo};
use mswitch::packet::Batch;
use mswitch::port::PortId;
use mswitch::switch::{Switch, SwitchConfig};
use mswitch::wire::MacAddr;
use proptest::prelude::*;

// ---- Frames, built and checked here independently of the module ----

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum()
}

fn csum(data: &[u8]) -> u16 {
    let mut s = sum16(data);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = MacAddr::local(2).0.to_vec();
    f.extend_from_slice(&MacAddr::local(1).0);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 1, 1,
    ];
    h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    eth(0x0800, &h)
}

fn ipv6(nh: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[nh, 64]);
    h.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    h.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    h.extend_from_slice(l4);
    eth(0x86dd, &h)
}

fn ports(sp: u16, dp: u16, len: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; len];
    l4[0..2].copy_from_slice(&sp.to_be_bytes());
    l4[2..4].copy_from_slice(&dp.to_be_bytes());
    for (i, b) in l4.iter_mut().enumerate().skip(len.min(20)) {
        *b = i as u8 ^ 0x5a;
    }
    l4
}

fn tcp(sp: u16, dp: u16) -> Vec<u8> {
    let mut t = ports(sp, dp, 27);
    t[12] = 0x50;
    t
}

fn udp(sp: u16, dp: u16) -> Vec<u8> {
    let mut u = ports(sp, dp, 19);
    u[4..6].copy_from_slice(&19u16.to_be_bytes());
    u
}

/// Where the IP header and the transport header are, and the protocol.
fn locate(f: &[u8]) -> (usize, u16, Option<(usize, u8)>) {
    let mut off = 12;
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        et = u16::from_be_bytes([f[off], f[off + 1]]);
    }
    let l3 = off + 2;
    match et {
        0x0800 => Some((l3, et, Some((l3 + usize::from(f[l3] & 15) * 4, f[l3 + 9])))),
        0x86dd => Some((l3, et, Some((l3 + 40, f[l3 + 6])))),
        _ => Some((l3, et, None)),
    }
    .unwrap()
}

fn l4_sum_at(proto: u8) -> Option<usize> {
    match proto {
        6 => Some(16),
        17 => Some(6),
        1 | 58 => Some(2),
        _ => None,
    }
}

/// Computes the value the L4 checksum field must hold.
fn l4_checksum(f: &[u8], zeroed: bool) -> Option<Vec<u8>> {
    let (l3, et, l4) = locate(f);
    let (l4, proto) = l4?;
    let mut seg = f[l4..].to_vec();
    if proto == 132 {
        seg[8..12].fill(0);
        return Some(crc32c_bitwise(&seg).to_le_bytes().to_vec());
    }
    let at = l4_sum_at(proto)?;
    if zeroed {
        seg[at..at + 2].fill(0);
    }
    let mut p = Vec::new();
    if proto != 1 {
        if et == 0x0800 {
            p.extend_from_slice(&f[l3 + 12..l3 + 20]);
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        } else {
            p.extend_from_slice(&f[l3 + 8..l3 + 40]);
            p.extend_from_slice(&(seg.len() as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p.extend_from_slice(&seg);
    Some(csum(&p).to_be_bytes().to_vec())
}

/// Writes a correct L4 checksum into a frame.
fn fix(mut f: Vec<u8>) -> Vec<u8> {
    let (_, _, l4) = locate(&f);
    if let (Some((l4, proto)), Some(c)) = (l4, l4_checksum(&f, true)) {
        let at = if proto == 132 {
            8
        } else {
            l4_sum_at(proto).unwrap()
        };
        f[l4 + at..l4 + at + c.len()].copy_from_slice(&c);
    }
    f
}

/// Whether the IPv4 header checksum and the L4 checksum are right.
fn checksums_ok(f: &[u8]) -> bool {
    let (l3, et, l4) = locate(f);
    if et == 0x0800 && csum(&f[l3..l3 + usize::from(f[l3] & 15) * 4]) != 0 {
        return false;
    }
    let Some((l4, proto)) = l4 else { return true };
    let Some(want) = l4_checksum(f, true) else {
        return true;
    };
    let at = if proto == 132 {
        8
    } else {
        l4_sum_at(proto).unwrap()
    };
    f[l4 + at..l4 + at + want.len()] == want[..]
}

// ---- Driving the module ----

fn module(tables: usize) -> FlowModule {
    FlowModule::new(FlowConfig {
        tables,
        ..FlowConfig::default()
    })
}

fn flow(fields: Vec<OxmField>, actions: Vec<Action>) -> FlowMod {
    FlowMod {
        priority: 10,
        match_: Match::from_fields(fields).expect("valid match"),
        instructions: vec![Instruction::ApplyActions(actions)],
        ..FlowMod::default()
    }
}

fn set(f: OxmField) -> Action {
    Action::SetField(f)
}

/// Runs frames through `process` (one batch from `in_port`); returns the
/// verdicts (sets expanded) and the frames as rewritten.
/// A verdict, with the members of a port set.
type Outcome = (Verdict, Vec<u16>);

fn run(m: &dyn Module, in_port: u16, frames: &[Vec<u8>]) -> (Vec<Outcome>, Vec<Vec<u8>>) {
    let mut bufs = frames.to_vec();
    let mut refs = Vec::new();
    let mut out = Verdicts::default();
    out.reset(bufs.len());
    let lens: Vec<usize> = {
        let mut b = Batch::from_buffers(&mut bufs, &mut refs, PortId(in_port));
        m.process(&mut b, &mut out, 0);
        (0..b.len()).map(|i| b.data(i).len()).collect()
    };
    for (b, l) in bufs.iter_mut().zip(lens) {
        b.truncate(l);
    }
    let v = (0..frames.len())
        .map(|i| {
            let v = out.get(i);
            let set = match v {
                Verdict::Ports(k) => out.set_members(k).iter().map(|p| p.0).collect(),
                _ => Vec::new(),
            };
            (v, set)
        })
        .collect();
    (v, bufs)
}

fn ip4_proto(p: u8) -> Vec<OxmField> {
    vec![OxmField::EthType(0x0800), OxmField::IpProto(p)]
}

fn ip6_proto(p: u8) -> Vec<OxmField> {
    vec![OxmField::EthType(0x86dd), OxmField::IpProto(p)]
}

#[test]
fn set_field_rewrites_every_header_with_right_checksums() {
    let a4 = |s: &str| Masked::exact(s.parse::<Ipv4Addr>().unwrap());
    let a6 = |s: &str| Masked::exact(s.parse::<Ipv6Addr>().unwrap());
    let mac = |n| Masked::exact(MacAddr::local(n));
    let ns = {
        let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&"2001:db8::99".parse::<Ipv6Addr>().unwrap().octets());
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&MacAddr::local(5).0);
        m
    };
    let na = {
        let mut m = ns.clone();
        m[0] = 136;
        m[24] = 2;
        m
    };
    let arp = {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&MacAddr::local(1).0);
        a.extend_from_slice(&[10, 0, 0, 1]);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&[10, 0, 0, 2]);
        eth(0x0806, &a)
    };
    let mut tagged = fix(ipv4(17, &udp(5, 6)));
    tagged.splice(12..12, [0x81, 0x00, 0x30, 0x07]); // PCP 1, DEI, VID 7
    // (frame, match, actions, (offset, expected bytes) to check)
    type Case = (Vec<u8>, Vec<OxmField>, Vec<Action>, Vec<(usize, Vec<u8>)>);
    let cases: Vec<Case> = vec![
        (
            fix(ipv4(6, &tcp(1000, 80))),
            ip4_proto(6),
            vec![
                set(OxmField::Ipv4Src(a4("192.168.1.10"))),
                set(OxmField::Ipv4Dst(a4("172.16.5.4"))),
                set(OxmField::TcpSrc(4321)),
                set(OxmField::TcpDst(8080)),
                set(OxmField::IpDscp(10)),
                set(OxmField::IpEcn(1)),
                set(OxmField::EthSrc(mac(7))),
                set(OxmField::EthDst(mac(8))),
                Action::DecNwTtl,
            ],
            vec![
                (26, vec![192, 168, 1, 10]),
                (30, vec![172, 16, 5, 4]),
                (34, 4321u16.to_be_bytes().to_vec()),
                (36, 8080u16.to_be_bytes().to_vec()),
                (15, vec![10 << 2 | 1]),
                (22, vec![63]),
                (0, MacAddr::local(8).0.to_vec()),
                (6, MacAddr::local(7).0.to_vec()),
            ],
        ),
        (
            fix(ipv4(17, &udp(1, 2))),
            ip4_proto(17),
            vec![
                set(OxmField::UdpSrc(53)),
                set(OxmField::UdpDst(5353)),
                set(OxmField::Ipv4Dst(a4("8.8.4.4"))),
                Action::SetNwTtl(9),
            ],
            vec![
                (34, vec![0, 53]),
                (36, 5353u16.to_be_bytes().to_vec()),
                (30, vec![8, 8, 4, 4]),
                (22, vec![9]),
            ],
        ),
        (
            fix(ipv4(1, &[8, 0, 0, 0, 0, 1, 0, 2, 9, 9, 9])),
            ip4_proto(1),
            vec![
                set(OxmField::Icmpv4Type(0)),
                set(OxmField::Icmpv4Code(3)),
                set(OxmField::Ipv4Src(a4("1.1.1.1"))),
            ],
            vec![(34, vec![0, 3]), (26, vec![1, 1, 1, 1])],
        ),
        (
            fix(ipv4(132, &ports(7, 9, 28))),
            ip4_proto(132),
            vec![set(OxmField::SctpSrc(1111)), set(OxmField::SctpDst(2222))],
            vec![
                (34, 1111u16.to_be_bytes().to_vec()),
                (36, 2222u16.to_be_bytes().to_vec()),
            ],
        ),
        (
            fix(ipv6(17, &udp(1, 2))),
            ip6_proto(17),
            vec![
                set(OxmField::Ipv6Src(a6("fe80::1234"))),
                set(OxmField::Ipv6Dst(a6("2001:db8:ffff::7"))),
                set(OxmField::Ipv6Flabel(Masked::exact(0xabcde))),
                set(OxmField::IpDscp(46)),
                set(OxmField::UdpDst(9)),
                Action::DecNwTtl,
            ],
            vec![
                (
                    22,
                    "fe80::1234".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                ),
                (14, vec![0x6b, 0x8a, 0xbc, 0xde]),
                (21, vec![63]),
                (56, vec![0, 9]),
            ],
        ),
        (
            fix(ipv6(6, &tcp(1, 2))),
            ip6_proto(6),
            vec![
                set(OxmField::TcpDst(443)),
                set(OxmField::Ipv6Src(a6("::1"))),
            ],
            vec![(56, 443u16.to_be_bytes().to_vec())],
        ),
        (
            fix(ipv6(58, &ns)),
            vec![
                OxmField::EthType(0x86dd),
                OxmField::IpProto(58),
                OxmField::Icmpv6Type(135),
            ],
            vec![
                set(OxmField::Ipv6NdTarget("2001:db8::42".parse().unwrap())),
                set(OxmField::Ipv6NdSll(MacAddr::local(77))),
                set(OxmField::Ipv6Src(a6("2001:db8::77"))),
            ],
            vec![
                (
                    62,
                    "2001:db8::42"
                        .parse::<Ipv6Addr>()
                        .unwrap()
                        .octets()
                        .to_vec(),
                ),
                (80, MacAddr::local(77).0.to_vec()),
            ],
        ),
        (
            fix(ipv6(58, &na)),
            vec![
                OxmField::EthType(0x86dd),
                OxmField::IpProto(58),
                OxmField::Icmpv6Type(136),
            ],
            vec![
                set(OxmField::Ipv6NdTll(MacAddr::local(78))),
                set(OxmField::Icmpv6Code(0)),
            ],
            vec![(80, MacAddr::local(78).0.to_vec())],
        ),
        (
            arp,
            vec![OxmField::EthType(0x0806)],
            vec![
                set(OxmField::ArpOp(2)),
                set(OxmField::ArpSha(mac(9))),
                set(OxmField::ArpSpa(a4("10.0.0.9"))),
                set(OxmField::ArpTha(mac(1))),
                set(OxmField::ArpTpa(a4("10.0.0.1"))),
            ],
            vec![
                (20, vec![0, 2]),
                (22, MacAddr::local(9).0.to_vec()),
                (28, vec![10, 0, 0, 9]),
                (32, MacAddr::local(1).0.to_vec()),
                (38, vec![10, 0, 0, 1]),
            ],
        ),
        (
            tagged,
            vec![OxmField::VlanVid(Masked::exact(0x1007))],
            vec![
                set(OxmField::VlanVid(Masked::exact(0x1000 | 300))),
                set(OxmField::VlanPcp(6)),
            ],
            // The DEI bit (0x1000 of the TCI) survives.
            vec![(14, vec![0xd1, 0x2c])],
        ),
    ];
    for (n, (frame, fields, actions, expect)) in cases.into_iter().enumerate() {
        assert!(checksums_ok(&frame), "case {n}: input checksums");
        let m = module(1);
        let mut acts = actions;
        acts.push(Action::output(PortNo(2)));
        m.flow_mod(&flow(fields, acts), 0)
            .unwrap_or_else(|e| panic!("case {n}: {e}"));
        // Twice: the second batch takes the cached plan and the memo.
        let (v, out) = run(&m, 1, &[frame.clone(), frame.clone()]);
        assert_eq!(v[0].0, Verdict::Port(PortId(2)), "case {n}");
        assert_eq!(out[0], out[1], "case {n}");
        for (at, bytes) in &expect {
            assert_eq!(
                &out[0][*at..*at + bytes.len()],
                &bytes[..],
                "case {n} at {at}"
            );
        }
        assert!(checksums_ok(&out[0]), "case {n}: output checksums");
        assert_eq!(out[0].len(), frame.len());
    }
}

#[test]
fn a_switch_pushes_tags_follows_changes_and_sends_to_the_controller() {
    let _g = common::serial();
    let fm = Arc::new(module(4));
    let sw = Switch::new(
        SwitchConfig {
            workers: 2,
            ..SwitchConfig::default()
        },
        fm.clone(),
    )
    .unwrap();
    let mut clients = Vec::new();
    for p in 1..=3u16 {
        let (port, client) = common::port(&format!("f{p}"), common::default_cfg());
        common::attach(&sw, &port, p);
        clients.push(client);
    }
    let frame = common::frame(100, 1, MacAddr::local(2), 7);
    let push = flow(
        vec![OxmField::InPort(PortNo(1))],
        vec![
            Action::PushVlan(0x8100),
            set(OxmField::VlanVid(Masked::exact(0x1000 | 42))),
            Action::output(PortNo(2)),
        ],
    );
    fm.flow_mod(&push, sw.now()).unwrap();
    let t = Duration::from_secs(5);
    common::send_all(&mut clients[0], std::slice::from_ref(&frame), t);
    let got = common::recv_n(&mut clients[1], 1, t);
    assert_eq!(got[0].len(), frame.len() + 4);
    assert_eq!(&got[0][12..16], &[0x81, 0, 0, 42]);
    assert_eq!(&got[0][16..], &frame[12..]);
    // Change the rule: the very next packet follows it.
    let mut to3 = flow(
        vec![OxmField::InPort(PortNo(1))],
        vec![Action::output(PortNo(3))],
    );
    to3.command = FlowModCommand::ModifyStrict;
    fm.flow_mod(&to3, sw.now()).unwrap();
    common::send_all(&mut clients[0], std::slice::from_ref(&frame), t);
    assert_eq!(common::recv_n(&mut clients[2], 1, t), vec![frame.clone()]);
    let to_ctl = flow(
        vec![OxmField::InPort(PortNo(1))],
        vec![Action::output(PortNo::CONTROLLER)],
    );
    let mut to_ctl = to_ctl;
    to_ctl.command = FlowModCommand::ModifyStrict;
    fm.flow_mod(&to_ctl, sw.now()).unwrap();
    common::send_all(&mut clients[0], std::slice::from_ref(&frame), t);
    common::wait_until("a packet-in", t, || {
        sw.pop_packet_in()
            .is_some_and(|p| p.in_port == PortId(1) && p.data == frame)
    });
    let s = fm
        .flow_stats(&FlowStatsRequest::default(), sw.now())
        .unwrap();
    assert_eq!(s[0].packet_count, 3);
}

// ---- 10,000 rules against a brute-force reference ----

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RefRule {
    in_port: Option<u16>,
    proto: Option<u8>,
    src: Option<(u32, u32)>,
    dst: Option<(u32, u32)>,
    dport: Option<u16>,
    priority: u16,
}

#[derive(Clone, Copy, Debug)]
struct Pkt {
    in_port: u16,
    proto: u8,
    src: u32,
    dst: u32,
    dport: u16,
}

impl RefRule {
    fn matches(&self, p: &Pkt) -> bool {
        self.in_port.is_none_or(|x| x == p.in_port)
            && self.proto.is_none_or(|x| x == p.proto)
            && self.src.is_none_or(|(v, m)| p.src & m == v)
            && self.dst.is_none_or(|(v, m)| p.dst & m == v)
            && self.dport.is_none_or(|x| x == p.dport)
    }

    fn flow_mod(&self, idx: usize) -> FlowMod {
        let mut f = Vec::new();
        if let Some(p) = self.in_port {
            f.push(OxmField::InPort(PortNo(u32::from(p))));
        }
        if self.proto.is_some() || self.src.is_some() || self.dst.is_some() {
            f.push(OxmField::EthType(0x0800));
        }
        if let Some(p) = self.proto {
            f.push(OxmField::IpProto(p));
        }
        let net = |(v, m): (u32, u32)| Masked::new(Ipv4Addr::from(v), Ipv4Addr::from(m));
        if let Some(s) = self.src {
            f.push(OxmField::Ipv4Src(net(s)));
        }
        if let Some(d) = self.dst {
            f.push(OxmField::Ipv4Dst(net(d)));
        }
        if let Some(d) = self.dport {
            f.push(match self.proto {
                Some(6) => OxmField::TcpDst(d),
                _ => OxmField::UdpDst(d),
            });
        }
        FlowMod {
            priority: self.priority,
            cookie: idx as u64,
            ..flow(f, vec![Action::output(PortNo(out_port(idx)))])
        }
    }
}

fn out_port(idx: usize) -> u32 {
    (idx % 4000) as u32 + 1
}

fn pkt_frame(p: &Pkt) -> Vec<u8> {
    let l4 = if p.proto == 6 {
        tcp(1, p.dport)
    } else {
        udp(1, p.dport)
    };
    let mut f = ipv4(p.proto, &l4);
    f[26..30].copy_from_slice(&p.src.to_be_bytes());
    f[30..34].copy_from_slice(&p.dst.to_be_bytes());
    f
}

fn addr(x: u64) -> u32 {
    0x0a00_0000
        | ((x % 4) as u32) << 16
        | ((((x >> 2) % 4) as u32 * 64) << 8)
        | ((x >> 4) % 16) as u32
}

fn gen_rules(seed: u64, n: usize) -> Vec<RefRule> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let prefix = |r: u64, a: u32| {
        let len = [8u32, 16, 18, 24, 28, 32][(r % 6) as usize];
        let m = u32::MAX << (32 - len);
        (a & m, m)
    };
    (0..n)
        .map(|_| {
            let r = next();
            let proto = (r % 3 != 0).then_some(if r & 8 == 0 { 6 } else { 17 });
            let mut rule = RefRule {
                in_port: ((r >> 4) % 3 == 0).then_some(((r >> 6) % 3) as u16 + 1),
                proto,
                src: ((r >> 8) % 2 == 0).then(|| prefix(r >> 9, addr(r >> 12))),
                dst: ((r >> 20) % 2 == 0).then(|| prefix(r >> 21, addr(r >> 24))),
                dport: proto.and(((r >> 32) % 3 == 0).then_some(((r >> 34) % 4) as u16)),
                priority: 0,
            };
            // More specific rules mostly rank higher, as in real rule sets,
            // with enough noise that priorities often disagree.
            let bits = |p: Option<(u32, u32)>| p.map_or(0, |(_, m)| m.count_ones());
            let spec = bits(rule.src)
                + bits(rule.dst)
                + 8 * u32::from(rule.in_port.is_some())
                + 8 * u32::from(rule.proto.is_some())
                + 16 * u32::from(rule.dport.is_some());
            rule.priority = (spec * 4 + ((r >> 40) % 64) as u32) as u16;
            rule
        })
        .collect()
}

fn reference(rules: &[(usize, RefRule)], p: &Pkt) -> Option<usize> {
    rules
        .iter()
        .filter(|(_, r)| r.matches(p))
        .max_by_key(|(i, r)| (r.priority, std::cmp::Reverse(*i)))
        .map(|(i, _)| *i)
}

/// Runs packets through the module and checks each verdict against the
/// reference; returns the reference's per-rule packet counts.
fn check_packets(
    m: &FlowModule,
    rules: &[(usize, RefRule)],
    pkts: &[Pkt],
    tally: &mut HashMap<usize, u64>,
) {
    for in_port in 1..=3u16 {
        let mine: Vec<&Pkt> = pkts.iter().filter(|p| p.in_port == in_port).collect();
        let frames: Vec<Vec<u8>> = mine.iter().map(|p| pkt_frame(p)).collect();
        let (v, _) = run(m, in_port, &frames);
        for (p, (got, _)) in mine.iter().zip(v) {
            let want = reference(rules, p);
            if let Some(i) = want {
                *tally.entry(i).or_default() += 1;
            }
            let want_v = match want {
                Some(i) => Verdict::Port(PortId(out_port(i) as u16)),
                None => Verdict::Drop,
            };
            assert_eq!(got, want_v, "{p:?}: reference rule {want:?}");
        }
    }
}

fn check_counts(m: &FlowModule, tally: &HashMap<usize, u64>) {
    let stats = m.flow_stats(&FlowStatsRequest::default(), 0).unwrap();
    for s in &stats {
        let want = tally.get(&(s.cookie as usize)).copied().unwrap_or(0);
        assert_eq!(s.packet_count, want, "rule {}", s.cookie);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn ten_thousand_rules_match_a_brute_force_reference(
        seed in any::<u64>(),
        raw in proptest::collection::vec(any::<u64>(), 400),
        cut in 0u64..8,
    ) {
        let m = module(1);
        // Distinct (match, priority) pairs: an identical one would replace
        // the first (tested elsewhere).
        let mut seen = std::collections::HashSet::new();
        let rules: Vec<(usize, RefRule)> = gen_rules(seed, 40_000)
            .into_iter()
            .filter(|r| seen.insert(r.clone()))
            .take(10_000)
            .enumerate()
            .collect();
        prop_assert_eq!(rules.len(), 10_000);
        for (i, r) in &rules {
            m.flow_mod(&r.flow_mod(*i), 0).unwrap();
        }
        prop_assert_eq!(m.flow_count(), 10_000);
        let pkts: Vec<Pkt> = raw
            .iter()
            .map(|&r| Pkt {
                in_port: (r % 3) as u16 + 1,
                proto: if r & 4 == 0 { 6 } else { 17 },
                src: addr(r >> 3),
                dst: addr(r >> 11),
                dport: ((r >> 20) % 4) as u16,
            })
            .collect();
        let mut tally = HashMap::new();
        check_packets(&m, &rules, &pkts, &mut tally);
        check_packets(&m, &rules, &pkts, &mut tally);
        check_counts(&m, &tally);
        // The packets exercise many rules, not one catch-all.
        prop_assert!(tally.len() >= 50, "only {} rules hit", tally.len());
        // Delete an eighth of the rules by cookie; the next batches follow.
        let del = FlowMod {
            command: FlowModCommand::Delete,
            cookie: cut,
            cookie_mask: 7,
            ..FlowMod::default()
        };
        m.flow_mod(&del, 0).unwrap();
        let rest: Vec<(usize, RefRule)> = rules.into_iter().filter(|(i, _)| *i as u64 & 7 != cut).collect();
        prop_assert_eq!(m.flow_count(), rest.len());
        check_packets(&m, &rest, &pkts, &mut tally);
        check_counts(&m, &tally);
    }
}

// ---- Malformed frames ----

fn rewriting_module() -> FlowModule {
    let m = module(2);
    let a4 = Masked::exact(Ipv4Addr::new(1, 2, 3, 4));
    let a6 = Masked::exact(Ipv6Addr::LOCALHOST);
    let rules: Vec<(Vec<OxmField>, Vec<Action>)> = vec![
        (
            ip4_proto(6),
            vec![
                set(OxmField::TcpSrc(1)),
                set(OxmField::Ipv4Src(a4)),
                Action::DecNwTtl,
            ],
        ),
        (
            ip4_proto(17),
            vec![set(OxmField::UdpDst(2)), set(OxmField::IpDscp(3))],
        ),
        (ip4_proto(132), vec![set(OxmField::SctpDst(2))]),
        (ip4_proto(1), vec![set(OxmField::Icmpv4Code(2))]),
        (
            ip6_proto(6),
            vec![set(OxmField::Ipv6Dst(a6)), set(OxmField::TcpDst(5))],
        ),
        (
            ip6_proto(17),
            vec![
                set(OxmField::Ipv6Flabel(Masked::exact(5))),
                Action::DecNwTtl,
            ],
        ),
        (
            vec![
                OxmField::EthType(0x86dd),
                OxmField::IpProto(58),
                OxmField::Icmpv6Type(135),
            ],
            vec![
                set(OxmField::Ipv6NdSll(MacAddr::local(3))),
                set(OxmField::Ipv6NdTarget(Ipv6Addr::LOCALHOST)),
            ],
        ),
        (
            vec![OxmField::EthType(0x0806)],
            vec![set(OxmField::ArpTpa(a4))],
        ),
        (
            vec![OxmField::VlanVid(Masked::new(0x1000, 0x1000))],
            vec![Action::PopVlan, Action::PushVlan(0x88a8)],
        ),
    ];
    for (f, mut a) in rules {
        a.push(Action::output(PortNo(2)));
        m.flow_mod(&flow(f, a), 0).unwrap();
    }
    m.flow_mod(
        &FlowMod {
            priority: 0,
            instructions: vec![Instruction::GotoTable(1)],
            ..FlowMod::default()
        },
        0,
    )
    .unwrap();
    m
}

fn samples() -> Vec<Vec<u8>> {
    let mut v = vec![
        fix(ipv4(6, &tcp(1, 2))),
        fix(ipv4(17, &udp(1, 2))),
        fix(ipv4(132, &ports(1, 2, 16))),
        fix(ipv4(1, &[8, 0, 0, 0])),
        fix(ipv6(6, &tcp(1, 2))),
        fix(ipv6(17, &udp(1, 2))),
        fix(ipv6(
            58,
            &[
                135, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1,
                1, 1, 2, 3, 4, 5, 6,
            ],
        )),
        eth(
            0x0806,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 1, 2, 3, 4, 5, 6, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0,
                2,
            ],
        ),
        // IPv6 with hop-by-hop and fragment headers before UDP.
        fix(ipv6(
            0,
            &[
                44, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 2, 0, 8, 0, 0,
            ],
        )),
    ];
    let mut tagged = v[1].clone();
    tagged.splice(12..12, [0x81, 0, 0, 5, 0x81, 0, 0, 6]);
    v.push(tagged);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn malformed_frames_never_panic(
        which in 0usize..10,
        cut in 0usize..120,
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..6),
        junk in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let m = rewriting_module();
        let mut f = samples()[which].clone();
        for (at, x) in flips {
            if let Some(b) = f.get_mut(at) {
                *b ^= x;
            }
        }
        f.truncate(cut.max(1));
        let frames = vec![f.clone(), f, junk.clone(), junk];
        let (v, _) = run(&m, 1, &frames);
        prop_assert_eq!(v.len(), 4);
        let (w, _) = run(&m, 1, &frames);
        prop_assert_eq!(v, w);
    }
}

#[test]
fn registry_spec_and_presets() {
    let m = module::build("flow:tables=3,l2=2").unwrap();
    assert_eq!(m.name(), "flow");
    let f = common::frame(60, 1, MacAddr::local(2), 0);
    assert_eq!(run(&*m, 1, &[f]).0[0].0, Verdict::Port(PortId(2)));
    assert!(module::build("flow:tables=0").is_err());
    assert!(module::build("flow:bogus=1").is_err());
}

// ---- Per-packet cost, by hand: cargo test --release --test flow_module -- --ignored --nocapture ----

fn ns_per_packet(m: &dyn Module, frames: &[Vec<u8>]) -> f64 {
    let mut bufs = frames.to_vec();
    let mut refs = Vec::new();
    let mut out = Verdicts::with_capacity(bufs.len());
    let mut n = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(700) {
        for _ in 0..100 {
            out.reset(bufs.len());
            let mut b = Batch::from_buffers(&mut bufs, &mut refs, PortId(1));
            m.process(&mut b, &mut out, 0);
            n += bufs.len() as u64;
        }
    }
    t0.elapsed().as_nanos() as f64 / n as f64
}

#[test]
#[ignore = "timing, run by hand with --release"]
fn per_packet_cost() {
    let same: Vec<Vec<u8>> = vec![common::frame(60, 1, MacAddr::local(2), 0); 256];
    let mixed: Vec<Vec<u8>> = (0..256)
        .map(|i| common::frame(60, 1, MacAddr::local(2 + (i % 2) as u32), 0))
        .collect();
    let many: Vec<Vec<u8>> = (0..256)
        .map(|i| {
            let mut f = common::frame(60, 1, MacAddr::local(2 + (i % 3) as u32), 0);
            f[36..38].copy_from_slice(&(i as u16).to_be_bytes());
            f
        })
        .collect();
    let learn = module::build("learn").unwrap();
    for p in 1..=4u16 {
        let hello = common::frame(60, p, MacAddr::BROADCAST, 0);
        run(&*learn, p, &[hello]);
    }
    println!(
        "learn      same {:6.2} ns  alternating {:6.2} ns",
        ns_per_packet(&*learn, &same),
        ns_per_packet(&*learn, &mixed)
    );
    for spec in ["flow:l2=4", "flow:l2=4,filler=10000"] {
        let m = module::build(spec).unwrap();
        println!(
            "{spec:24} same {:6.2} ns  alternating {:6.2} ns  256 flows {:6.2} ns",
            ns_per_packet(&*m, &same),
            ns_per_packet(&*m, &mixed),
            ns_per_packet(&*m, &many)
        );
        println!("    {:?}", m.counters());
    }
}

#[test]
#[ignore = "profiling aid: FLOW_PROFILE=same|many, run under perf"]
fn profile_one_case() {
    let spec = std::env::var("FLOW_SPEC").unwrap_or_else(|_| "flow:l2=4".into());
    let m = module::build(&spec).unwrap();
    let frames: Vec<Vec<u8>> = match std::env::var("FLOW_PROFILE").as_deref() {
        Ok("many") => (0..256)
            .map(|i| {
                let mut f = common::frame(60, 1, MacAddr::local(2 + (i % 3) as u32), 0);
                f[36..38].copy_from_slice(&(i as u16).to_be_bytes());
                f
            })
            .collect(),
        _ => vec![common::frame(60, 1, MacAddr::local(2), 0); 256],
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        ns_per_packet(&*m, &frames);
    }
}
