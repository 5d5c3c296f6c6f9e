//! `ovs-appctl bridge/dump-flows BR`: a bridge's flows in the text style
//! ovs-vswitchd prints (`[table_id=N, ]duration=Ns, n_packets=N,
//! n_bytes=N, priority=N,MATCH,actions=ACTIONS`, table 0 first), with the
//! field and action names of `ovs-fields(7)` and `ovs-actions(7)`.
//!
//! mswitch has no hidden flows (Open vSwitch's in-band and table-254
//! flows), so it prints only the flows controllers and `ovs-ofctl`
//! installed. Actions Open vSwitch would spell in a way not covered here
//! print in a readable form of their own.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::openflow::action::Action;
use crate::openflow::instruction::Instruction;
use crate::openflow::multipart::FlowStats;
use crate::openflow::nicira::{NxAction, Register};
use crate::openflow::nx_tun6;
use crate::openflow::oxm::{Masked, OFPVID_PRESENT, OxmField};
use crate::openflow::port::PortNo;

/// One line per flow, as `bridge/dump-flows` prints it.
pub fn dump(flows: &[FlowStats]) -> String {
    let mut sorted: Vec<&FlowStats> = flows.iter().collect();
    sorted.sort_by_key(|f| (f.table_id, std::cmp::Reverse(f.priority)));
    let mut out = String::new();
    for f in sorted {
        if f.table_id != 0 {
            let _ = write!(out, "table_id={}, ", f.table_id);
        }
        let _ = write!(
            out,
            "duration={}s, n_packets={}, n_bytes={}, priority={}",
            f.duration_sec, f.packet_count, f.byte_count, f.priority
        );
        for m in match_parts(f) {
            out.push(',');
            out.push_str(&m);
        }
        let _ = writeln!(out, ",actions={}", instructions(&f.instructions));
    }
    out
}

/// The match as `ovs-ofctl` writes it: a protocol shorthand (`ip`, `tcp`,
/// `arp`...) in place of the fields it implies, then the fields.
fn match_parts(f: &FlowStats) -> Vec<String> {
    let fields = f.match_.fields();
    let eth_type = fields.iter().find_map(|x| match x {
        OxmField::EthType(t) => Some(*t),
        _ => None,
    });
    let proto = fields.iter().find_map(|x| match x {
        OxmField::IpProto(p) => Some(*p),
        _ => None,
    });
    let short = match (eth_type, proto) {
        (Some(0x0800), Some(1)) => Some(("icmp", true)),
        (Some(0x0800), Some(6)) => Some(("tcp", true)),
        (Some(0x0800), Some(17)) => Some(("udp", true)),
        (Some(0x0800), Some(132)) => Some(("sctp", true)),
        (Some(0x86dd), Some(58)) => Some(("icmp6", true)),
        (Some(0x86dd), Some(6)) => Some(("tcp6", true)),
        (Some(0x86dd), Some(17)) => Some(("udp6", true)),
        (Some(0x0800), _) => Some(("ip", false)),
        (Some(0x86dd), _) => Some(("ipv6", false)),
        (Some(0x0806), _) => Some(("arp", false)),
        (Some(0x8035), _) => Some(("rarp", false)),
        (Some(0x8847), _) => Some(("mpls", false)),
        _ => None,
    };
    let mut parts = Vec::new();
    if let Some((s, _)) = short {
        parts.push(s.to_owned());
    }
    let regs = f.match_.registers();
    for (i, r) in regs.iter().enumerate() {
        let name = match r.reg {
            Register::Reg(n) => format!("reg{n}"),
            Register::XReg(n) => format!("xreg{n}"),
            Register::ConjId => "conj_id".to_owned(),
            Register::TunSrc => "tun_src".to_owned(),
            Register::TunDst => "tun_dst".to_owned(),
            Register::TunMetadata { .. } => r.reg.name(),
            // Both halves at the first.
            Register::TunIpv6 { dst, .. } => {
                let first = !regs[..i]
                    .iter()
                    .any(|q| matches!(q.reg, Register::TunIpv6 { dst: d, .. } if d == dst));
                if let Some((v, m)) = nx_tun6::joined(regs, dst).filter(|_| first) {
                    // A prefix as its length, as Open vSwitch prints it.
                    let bits = m.map(|m| m.to_bits());
                    parts.push(match bits {
                        Some(b) if b.leading_ones() + b.trailing_zeros() == 128 => {
                            format!("{}={v}/{}", nx_tun6::name(dst), b.leading_ones())
                        }
                        Some(b) => format!(
                            "{}={v}/{}",
                            nx_tun6::name(dst),
                            std::net::Ipv6Addr::from_bits(b)
                        ),
                        None => format!("{}={v}", nx_tun6::name(dst)),
                    });
                }
                continue;
            }
        };
        parts.push(format!("{name}={}", hex_masked(r.value, r.mask)));
    }
    for x in fields {
        let p = match x {
            OxmField::EthType(_) if short.is_some() => continue,
            OxmField::IpProto(_) if short.is_some_and(|(_, p)| p) => continue,
            _ => field(x),
        };
        parts.push(p);
    }
    parts
}

fn hex_masked(v: u64, mask: Option<u64>) -> String {
    match mask {
        Some(m) => format!("{v:#x}/{m:#x}"),
        None => format!("{v:#x}"),
    }
}

fn mac_masked(m: &Masked<crate::wire::MacAddr>) -> String {
    match m.mask {
        Some(k) => format!("{}/{}", m.value, k),
        None => m.value.to_string(),
    }
}

fn ip_masked(m: &Masked<Ipv4Addr>) -> String {
    match m.mask {
        None => m.value.to_string(),
        Some(k) => {
            let bits = u32::from(k);
            if bits.leading_ones() + bits.trailing_zeros() == 32 {
                format!("{}/{}", m.value, bits.leading_ones())
            } else {
                format!("{}/{}", m.value, k)
            }
        }
    }
}

/// One match field, `name=value`.
fn field(x: &OxmField) -> String {
    use OxmField as F;
    match x {
        F::InPort(p) => format!("in_port={p}"),
        F::InPhyPort(p) => format!("in_phy_port={p}"),
        F::Metadata(m) => format!("metadata={}", hex_masked(m.value, m.mask)),
        F::EthDst(m) => format!("dl_dst={}", mac_masked(m)),
        F::EthSrc(m) => format!("dl_src={}", mac_masked(m)),
        F::EthType(t) => format!("dl_type={t:#06x}"),
        F::VlanVid(m) => match m.mask {
            None if m.value & OFPVID_PRESENT != 0 => {
                format!("dl_vlan={}", m.value & 0xfff)
            }
            None => "vlan_tci=0x0000/0x1fff".to_owned(),
            Some(k) => format!("vlan_tci={:#06x}/{:#06x}", m.value, k),
        },
        F::VlanPcp(p) => format!("dl_vlan_pcp={p}"),
        F::IpDscp(d) => format!("nw_tos={}", u16::from(*d) << 2),
        F::IpEcn(e) => format!("nw_ecn={e}"),
        F::IpProto(p) => format!("nw_proto={p}"),
        F::Ipv4Src(m) => format!("nw_src={}", ip_masked(m)),
        F::Ipv4Dst(m) => format!("nw_dst={}", ip_masked(m)),
        F::TcpSrc(p) | F::UdpSrc(p) | F::SctpSrc(p) => format!("tp_src={p}"),
        F::TcpDst(p) | F::UdpDst(p) | F::SctpDst(p) => format!("tp_dst={p}"),
        F::Icmpv4Type(t) | F::Icmpv6Type(t) => format!("icmp_type={t}"),
        F::Icmpv4Code(c) | F::Icmpv6Code(c) => format!("icmp_code={c}"),
        F::ArpOp(o) => format!("arp_op={o}"),
        F::ArpSpa(m) => format!("arp_spa={}", ip_masked(m)),
        F::ArpTpa(m) => format!("arp_tpa={}", ip_masked(m)),
        F::ArpSha(m) => format!("arp_sha={}", mac_masked(m)),
        F::ArpTha(m) => format!("arp_tha={}", mac_masked(m)),
        F::Ipv6Src(m) => match m.mask {
            Some(k) => format!("ipv6_src={}/{}", m.value, k),
            None => format!("ipv6_src={}", m.value),
        },
        F::Ipv6Dst(m) => match m.mask {
            Some(k) => format!("ipv6_dst={}/{}", m.value, k),
            None => format!("ipv6_dst={}", m.value),
        },
        F::Ipv6Flabel(m) => format!(
            "ipv6_label={}",
            hex_masked(m.value.into(), m.mask.map(u64::from))
        ),
        F::Ipv6NdTarget(a) => format!("nd_target={a}"),
        F::Ipv6NdSll(a) => format!("nd_sll={a}"),
        F::Ipv6NdTll(a) => format!("nd_tll={a}"),
        F::MplsLabel(l) => format!("mpls_label={l}"),
        F::MplsTc(t) => format!("mpls_tc={t}"),
        F::MplsBos(b) => format!("mpls_bos={b}"),
        F::PbbIsid(m) => format!(
            "pbb_isid={}",
            hex_masked(m.value.into(), m.mask.map(u64::from))
        ),
        F::TunnelId(m) => format!("tun_id={}", hex_masked(m.value, m.mask)),
        F::Ipv6Exthdr(m) => format!(
            "ipv6_exthdr={}",
            hex_masked(m.value.into(), m.mask.map(u64::from))
        ),
    }
}

/// The field name of a set_field (`ovs-fields(7)`, OpenFlow 1.3 names).
fn set_field(x: &OxmField) -> String {
    use OxmField as F;
    let v = field(x);
    let (name, value) = v.split_once('=').unwrap_or((&v, ""));
    let name = match x {
        F::EthDst(_) => "eth_dst",
        F::EthSrc(_) => "eth_src",
        F::VlanVid(m) => return format!("set_field:{}->vlan_vid", m.value),
        F::Ipv4Src(_) => "ip_src",
        F::Ipv4Dst(_) => "ip_dst",
        F::TcpSrc(_) => "tcp_src",
        F::TcpDst(_) => "tcp_dst",
        F::UdpSrc(_) => "udp_src",
        F::UdpDst(_) => "udp_dst",
        _ => name,
    };
    format!("set_field:{value}->{name}")
}

fn port(p: PortNo) -> String {
    match p.reserved_name() {
        Some("CONTROLLER") => "CONTROLLER:65535".to_owned(),
        Some(n) => n.to_owned(),
        None => format!("output:{}", p.0),
    }
}

fn action(a: &Action) -> String {
    match a {
        Action::Output { port: p, max_len } if *p == PortNo::CONTROLLER => {
            format!("CONTROLLER:{max_len}")
        }
        Action::Output { port: p, .. } => port(*p),
        Action::CopyTtlOut => "copy_ttl_out".into(),
        Action::CopyTtlIn => "copy_ttl_in".into(),
        Action::SetMplsTtl(t) => format!("set_mpls_ttl({t})"),
        Action::DecMplsTtl => "dec_mpls_ttl".into(),
        Action::PushVlan(t) => format!("push_vlan:{t:#06x}"),
        Action::PopVlan => "pop_vlan".into(),
        Action::PushMpls(t) => format!("push_mpls:{t:#06x}"),
        Action::PopMpls(t) => format!("pop_mpls:{t:#06x}"),
        Action::SetQueue(q) => format!("set_queue:{q}"),
        Action::Group(g) => format!("group:{g}"),
        Action::SetNwTtl(t) => format!("mod_nw_ttl:{t}"),
        Action::DecNwTtl => "dec_ttl".into(),
        Action::SetField(f) => set_field(f),
        Action::PushPbb(t) => format!("push_pbb:{t:#06x}"),
        Action::PopPbb => "pop_pbb".into(),
        Action::Nx(NxAction::Resubmit { in_port, table, .. }) => {
            let ip = if *in_port == 0xfff8 {
                String::new()
            } else {
                PortNo(u32::from(*in_port)).to_string()
            };
            match table {
                Some(t) => format!("resubmit({ip},{t})"),
                None => format!("resubmit:{ip}"),
            }
        }
        Action::Nx(NxAction::SetReg { reg, value }) => {
            let name = match reg {
                Register::Reg(n) => format!("reg{n}"),
                Register::XReg(n) => format!("xreg{n}"),
                Register::ConjId => "conj_id".to_owned(),
                Register::TunSrc => "tun_src".to_owned(),
                Register::TunDst => "tun_dst".to_owned(),
                Register::TunIpv6 { dst, .. } => nx_tun6::name(*dst).to_owned(),
                Register::TunMetadata { .. } => reg.name(),
            };
            format!("set_field:{value:#x}->{name}")
        }
        Action::Nx(NxAction::SetTunIpv6 { dst, addr }) => {
            format!("set_field:{addr}->{}", nx_tun6::name(*dst))
        }
        Action::Nx(other) => format!("{other:?}"),
    }
}

fn actions(list: &[Action]) -> Vec<String> {
    list.iter().map(action).collect()
}

/// The instructions as one action list (`drop` when there is none).
fn instructions(list: &[Instruction]) -> String {
    let mut parts = Vec::new();
    for i in list {
        match i {
            Instruction::ApplyActions(a) => parts.extend(actions(a)),
            Instruction::WriteActions(a) => {
                parts.push(format!("write_actions({})", actions(a).join(",")));
            }
            Instruction::ClearActions => parts.push("clear_actions".into()),
            Instruction::WriteMetadata { metadata, mask } => {
                parts.push(format!("write_metadata:{metadata:#x}/{mask:#x}"));
            }
            Instruction::Meter(m) => parts.push(format!("meter:{m}")),
            Instruction::GotoTable(t) => parts.push(format!("goto_table:{t}")),
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::flow_match::Match;

    fn stats(
        table_id: u8,
        priority: u16,
        fields: Vec<OxmField>,
        ins: Vec<Instruction>,
    ) -> FlowStats {
        FlowStats {
            table_id,
            duration_sec: 3,
            duration_nsec: 0,
            priority,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            cookie: 0,
            packet_count: 2,
            byte_count: 120,
            match_: Match::from_fields(fields).unwrap(),
            instructions: ins,
        }
    }

    #[test]
    fn flows_print_as_ovs_vswitchd_prints_them() {
        let flows = vec![
            stats(
                3,
                5,
                vec![
                    OxmField::EthType(0x0800),
                    OxmField::Ipv4Src(Masked::exact(Ipv4Addr::new(1, 2, 3, 4))),
                ],
                vec![Instruction::ApplyActions(vec![Action::output(PortNo(1))])],
            ),
            stats(
                0,
                0,
                vec![],
                vec![Instruction::ApplyActions(vec![Action::output(
                    PortNo::NORMAL,
                )])],
            ),
            stats(
                0,
                9,
                vec![
                    OxmField::InPort(PortNo(2)),
                    OxmField::VlanVid(Masked::exact(OFPVID_PRESENT | 100)),
                    OxmField::EthType(0x0800),
                    OxmField::IpProto(6),
                    OxmField::TcpDst(80),
                ],
                vec![
                    Instruction::ApplyActions(vec![Action::PopVlan]),
                    Instruction::GotoTable(1),
                ],
            ),
            stats(1, 1, vec![], vec![]),
        ];
        assert_eq!(
            dump(&flows),
            "duration=3s, n_packets=2, n_bytes=120, priority=9,tcp,in_port=2,dl_vlan=100,tp_dst=80,actions=pop_vlan,goto_table:1\n\
             duration=3s, n_packets=2, n_bytes=120, priority=0,actions=NORMAL\n\
             table_id=1, duration=3s, n_packets=2, n_bytes=120, priority=1,actions=drop\n\
             table_id=3, duration=3s, n_packets=2, n_bytes=120, priority=5,ip,nw_src=1.2.3.4,actions=output:1\n"
        );
    }

    #[test]
    fn ipv6_tunnel_fields_print_as_ovs_vswitchd_prints_them() {
        use crate::openflow::nicira::NxAction;
        let mut f = stats(0, 7, vec![], vec![]);
        let regs: Vec<_> = nx_tun6::halves(false, "fd00::2".parse().unwrap(), None)
            .into_iter()
            .chain(nx_tun6::halves(
                true,
                "fd00::".parse().unwrap(),
                Some("ffff::".parse().unwrap()),
            ))
            .collect();
        f.match_ = Match::new().with_registers(regs).unwrap();
        f.instructions = vec![Instruction::ApplyActions(vec![
            Action::Nx(NxAction::SetTunIpv6 {
                dst: true,
                addr: "fd00::3".parse().unwrap(),
            }),
            Action::output(PortNo(2)),
        ])];
        assert_eq!(
            dump(&[f]),
            "duration=3s, n_packets=2, n_bytes=120, priority=7,tun_ipv6_src=fd00::2,tun_ipv6_dst=fd00::/16,actions=set_field:fd00::3->tun_ipv6_dst,output:2\n"
        );
    }
}
