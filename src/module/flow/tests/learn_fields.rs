//! `learn` into and from the fields beyond Ethernet/IPv4/ARP: IPv6
//! addresses (128 bits, both key words) and flow label, the top MPLS
//! entry's label, TC and bottom-of-stack bit, and `tun_id` (always 0
//! here: no packet carries a tunnel key).

use super::*;
use crate::openflow::nicira::{FieldRef, Learn, LearnSpec, NxAction};
use std::net::Ipv6Addr;

const IN_PORT: FieldRef = FieldRef(0x0000_0002);
const ETH_TYPE: FieldRef = FieldRef(0x0000_0602);
const IPV6_SRC: FieldRef = FieldRef(0x0001_2610);
const IPV6_DST: FieldRef = FieldRef(0x0001_2810);
const IPV6_LABEL: FieldRef = FieldRef(0x0001_3604);
const MPLS_LABEL: FieldRef = FieldRef(0x8000_4404);
const MPLS_TC: FieldRef = FieldRef(0x8000_4601);
const MPLS_BOS: FieldRef = FieldRef(0x8000_4801);
const TUN_ID: FieldRef = FieldRef(0x0001_2008);

/// A UDP/IPv6 frame from `src` (the last byte of fd00::) with this flow
/// label.
fn udp6(src: u8, label: u32) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 8];
    f[..6].copy_from_slice(&MacAddr::local(2).0);
    f[6..12].copy_from_slice(&MacAddr::local(1).0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip[..4].copy_from_slice(&((6u32 << 28) | label).to_be_bytes());
    ip[4..6].copy_from_slice(&8u16.to_be_bytes());
    ip[6] = 17;
    ip[7] = 64;
    ip[8] = 0xfd;
    ip[23] = src;
    ip[24] = 0xfd;
    ip[39] = 9;
    f[54..56].copy_from_slice(&5u16.to_be_bytes());
    f[56..58].copy_from_slice(&6u16.to_be_bytes());
    f[58..60].copy_from_slice(&8u16.to_be_bytes());
    f
}

fn fd(last: u8) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[15] = last;
    Ipv6Addr::from(b)
}

/// A frame with one MPLS entry of this label, TC 5, bottom of stack.
fn labelled(label: u32) -> Vec<u8> {
    let f = udp(1, 2, 5, 6);
    let mut g = f[..12].to_vec();
    g.extend_from_slice(&[0x88, 0x47]);
    g.extend_from_slice(&((label << 12) | (5 << 9) | (1 << 8) | 64).to_be_bytes());
    g.extend_from_slice(&f[14..]);
    g
}

/// Table 0 (matching `eth_type`) learns `specs` into table 1, then
/// outputs to port 9.
fn learner(eth_type: u16, specs: Vec<LearnSpec>) -> FlowModule {
    let m = module();
    let l = Learn {
        specs,
        ..Learn::default()
    };
    let a = vec![Action::Nx(NxAction::Learn(Box::new(l))), out(9)];
    add(
        &m,
        flow(0, 1, vec![OxmField::EthType(eth_type)], vec![apply(a)]),
    );
    m
}

/// The matches of table 1's flows, sorted by their debug text.
fn learned(m: &FlowModule) -> Vec<Vec<OxmField>> {
    let mut v: Vec<Vec<OxmField>> = m
        .flow_stats(&all_flows(), 0)
        .unwrap()
        .into_iter()
        .filter(|f| f.table_id == 1)
        .map(|f| f.match_.fields().to_vec())
        .collect();
    v.sort_by_key(|f| format!("{f:?}"));
    v
}

#[test]
fn learned_flows_match_ipv6_addresses_and_flow_label() {
    let m = learner(
        0x86dd,
        vec![
            LearnSpec::match_value(16, 0x86dd, ETH_TYPE),
            LearnSpec::match_field(128, IPV6_SRC, IPV6_DST),
            LearnSpec::match_field(20, IPV6_LABEL, IPV6_LABEL),
            LearnSpec::output(16, IN_PORT),
        ],
    );
    assert_eq!(run(&m, 1, vec![udp6(1, 0x12345)]), [R::Port(9)]);
    // Hosts that differ only in the last bit of the low word, or only in
    // the label, learn flows of their own: the plan read every bit.
    assert_eq!(
        run(&m, 1, vec![udp6(3, 0x12345), udp6(1, 7)]),
        vec![R::Port(9); 2]
    );
    let want = |src, label| {
        vec![
            OxmField::EthType(0x86dd),
            OxmField::Ipv6Dst(Masked::exact(fd(src))),
            OxmField::Ipv6Flabel(Masked::exact(label)),
        ]
    };
    let mut w = vec![want(1, 0x12345), want(3, 0x12345), want(1, 7)];
    w.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(learned(&m), w);
}

#[test]
fn learned_flows_match_the_mpls_entry() {
    let m = learner(
        0x8847,
        vec![
            LearnSpec::match_value(16, 0x8847, ETH_TYPE),
            LearnSpec::match_field(20, MPLS_LABEL, MPLS_LABEL),
            LearnSpec::match_field(3, MPLS_TC, MPLS_TC),
            LearnSpec::match_field(1, MPLS_BOS, MPLS_BOS),
        ],
    );
    assert_eq!(
        run(&m, 1, vec![labelled(1000), labelled(77)]),
        vec![R::Port(9); 2]
    );
    let want = |label| {
        vec![
            OxmField::EthType(0x8847),
            OxmField::MplsLabel(label),
            OxmField::MplsTc(5),
            OxmField::MplsBos(1),
        ]
    };
    let mut w = vec![want(1000), want(77)];
    w.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(learned(&m), w);
}

#[test]
fn learned_flows_match_tun_id() {
    let m = learner(
        0x0800,
        vec![
            LearnSpec::match_field(64, TUN_ID, TUN_ID),
            LearnSpec::match_value(16, 0x800, ETH_TYPE),
        ],
    );
    assert_eq!(run(&m, 1, vec![udp(1, 2, 5, 6)]), [R::Port(9)]);
    assert_eq!(
        learned(&m),
        [vec![
            OxmField::TunnelId(Masked::exact(0)),
            OxmField::EthType(0x800)
        ]]
    );
}

#[test]
fn learns_of_these_fields_are_checked() {
    let m = module();
    let try_learn = |match_: Vec<OxmField>, specs: Vec<LearnSpec>| {
        let l = Learn {
            specs,
            ..Learn::default()
        };
        m.flow_mod(
            &flow(
                0,
                1,
                match_,
                vec![apply(vec![Action::Nx(NxAction::Learn(Box::new(l)))])],
            ),
            0,
        )
    };
    let prereq = Err(ErrorCode::BadMatch(
        crate::openflow::error::BadMatchCode::BadPrereq,
    ));
    // Reading an IPv6 source needs IPv6 in the learning flow's match.
    assert_eq!(
        try_learn(
            vec![ip4()],
            vec![LearnSpec::match_field(128, IPV6_SRC, IPV6_DST)]
        ),
        prereq
    );
    // The learned flow needs its own prerequisites.
    assert_eq!(
        try_learn(
            vec![OxmField::EthType(0x86dd)],
            vec![LearnSpec::match_field(128, IPV6_SRC, IPV6_DST)]
        ),
        prereq
    );
    // 128 bits only between 128-bit fields.
    assert_eq!(
        try_learn(
            vec![OxmField::EthType(0x86dd)],
            vec![
                LearnSpec::match_value(16, 0x86dd, ETH_TYPE),
                LearnSpec::output(128, IPV6_SRC)
            ]
        ),
        Err(ErrorCode::BadAction(BadActionCode::BadArgument))
    );
    assert!(
        try_learn(
            vec![OxmField::EthType(0x86dd)],
            vec![
                LearnSpec::match_value(16, 0x86dd, ETH_TYPE),
                LearnSpec::match_field(128, IPV6_SRC, IPV6_DST)
            ]
        )
        .is_ok()
    );
}
