//! Compiled megaflow masks are sound, and the caches (memo, EMC,
//! megaflows, staged lookup, partial parses) give every packet exactly
//! the treatment the tables give it: property tests.

use super::super::key::{self, Key};
use super::*;
use proptest::prelude::*;

fn field(sel: u8, v: u8) -> Vec<OxmField> {
    match sel % 9 {
        0 => vec![OxmField::InPort(PortNo(u32::from(v % 3) + 1))],
        1 => vec![ip4()],
        2 => vec![
            ip4(),
            OxmField::IpProto(if v.is_multiple_of(2) { 17 } else { 6 }),
        ],
        3 => vec![
            ip4(),
            OxmField::IpProto(17),
            OxmField::UdpDst(u16::from(v % 3)),
        ],
        4 => vec![
            ip4(),
            OxmField::Ipv4Src(Masked::new(
                Ipv4Addr::new(10, 0, 0, v % 4),
                Ipv4Addr::new(255, 255, 255, 252 | (v % 4)),
            )),
        ],
        5 => vec![OxmField::VlanVid(Masked::new(0x1000, 0x1000))],
        6 => vec![OxmField::Metadata(Masked::new(u64::from(v % 4), 3))],
        7 => vec![OxmField::EthSrc(Masked::new(
            MacAddr::local(u32::from(v % 3)),
            MacAddr([0xff; 6]),
        ))],
        _ => vec![],
    }
}

fn action(sel: u8, v: u8) -> Action {
    match sel % 8 {
        0 => Action::output(PortNo(u32::from(v % 6) + 1)),
        1 => Action::SetField(OxmField::EthSrc(Masked::exact(MacAddr::local(u32::from(
            v % 3,
        ))))),
        2 => Action::PushVlan(0x8100),
        3 => Action::PopVlan,
        4 => Action::DecNwTtl,
        5 if v.is_multiple_of(2) => Action::output(PortNo::IN_PORT),
        5 => Action::output(PortNo::CONTROLLER),
        6 => Action::Group(1),
        _ => Action::output(PortNo::FLOOD),
    }
}

prop_compose! {
    /// A flow mod with two of `fields`' matches and up to `acts - 1` actions.
    fn arb_flow_with(fields: fn(u8, u8) -> Vec<OxmField>, acts: usize)
                    (table in 0u8..3, prio in 0u16..4, f in any::<(u8, u8, u8, u8)>(),
                     acts in proptest::collection::vec(any::<(u8, u8)>(), 0..acts),
                     md in any::<Option<u8>>(), goto in any::<bool>()) -> FlowMod {
        let mut fs = fields(f.0, f.1);
        for g in fields(f.2, f.3) {
            if !fs.iter().any(|x| x.field_type() == g.field_type()) {
                fs.push(g);
            }
        }
        let fs = Match::from_fields(fs)
            .unwrap_or_else(|_| Match::from_fields(vec![]).unwrap());
        let mut insts = vec![apply(acts.iter().map(|&(s, v)| action(s, v)).collect())];
        if let Some(v) = md {
            insts.push(Instruction::WriteMetadata { metadata: u64::from(v % 4), mask: 3 });
        }
        if goto && table < 2 {
            insts.push(Instruction::GotoTable(table + 1));
        }
        FlowMod { table_id: table, priority: prio, match_: fs, instructions: insts, ..FlowMod::default() }
    }
}

fn arb_flow() -> impl Strategy<Value = FlowMod> {
    arb_flow_with(field, 4)
}

fn frame(v: (u8, u8, u8, u8, bool)) -> Vec<u8> {
    let mut f = udp(v.0 % 3, 2, 1, u16::from(v.1 % 3));
    f[29] = v.2 % 6; // source address 10.0.0.x
    f[22] = v.3 % 3; // TTL 0..2
    if v.4 {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0, 0, 5]);
        t.extend_from_slice(&f[12..]);
        f = t;
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any pipeline and packet, every key that agrees with the
    /// packet's key on the compiled mask compiles to the same plan.
    #[test]
    fn compiled_masks_are_sound(
        flows in proptest::collection::vec(arb_flow(), 1..25),
        pkts in proptest::collection::vec((any::<(u8, u8, u8, u8, bool)>(), any::<(u8, u8, u8, u8, bool)>(), 1u16..4, 1u16..4), 1..20),
    ) {
        let m = FlowModule::new(FlowConfig { tables: 3, ..FlowConfig::default() });
        m.group_mod(&group(GroupType::Select, 1, vec![bucket(vec![out(1)]), bucket(vec![out(2)])]), 0).unwrap();
        for f in &flows {
            let _ = m.flow_mod(f, 0);
        }
        let p = m.read();
        for (a, b, pa, pb) in pkts {
            let ka = key::parse(&frame(a), u32::from(pa)).unwrap().key;
            let kb = key::parse(&frame(b), u32::from(pb)).unwrap().key;
            let (plan, mask) = p.compile(&ka);
            let mut mixed = ka.and(&mask);
            let rest = Key(kb.0.map(|w| w)).and(&Key(mask.0.map(|w| !w)));
            mixed.or_assign(&rest);
            let (plan2, _) = p.compile(&mixed);
            prop_assert_eq!(&plan.verdict, &plan2.verdict);
            prop_assert_eq!(&plan.ops, &plan2.ops);
            prop_assert_eq!(&plan.tables, &plan2.tables);
            prop_assert_eq!(plan.events, plan2.events);
            prop_assert_eq!(plan.controller, plan2.controller);
            prop_assert_eq!(plan.flows.len(), plan2.flows.len());
            for (x, y) in plan.flows.iter().zip(plan2.flows.iter()) {
                prop_assert!(Arc::ptr_eq(x, y));
            }
            prop_assert_eq!(plan.groups.len(), plan2.groups.len());
            for (x, y) in plan.groups.iter().zip(plan2.groups.iter()) {
                prop_assert_eq!(x.1, y.1);
            }
        }
    }
}

/// Fields for the cache test: [`field`]'s, plus the kinds of rules that
/// make staged lookup and partial parses matter (prefixes, transport
/// ports, MAC destinations).
fn cache_field(sel: u8, v: u8) -> Vec<OxmField> {
    match sel % 14 {
        9 => vec![
            ip4(),
            OxmField::IpProto(17),
            OxmField::UdpSrc(u16::from(v % 4)),
        ],
        10 => vec![
            ip4(),
            OxmField::IpProto(6),
            OxmField::TcpDst(u16::from(v % 3)),
        ],
        11 => vec![
            ip4(),
            OxmField::Ipv4Dst(Masked::new(
                Ipv4Addr::new(10, 0, 1, v % 4),
                Ipv4Addr::new(255, 255, 255, [0, 252, 254, 255][usize::from(v % 4)]),
            )),
        ],
        12 => vec![OxmField::EthDst(Masked::exact(MacAddr::local(u32::from(
            v % 3,
        ))))],
        13 => vec![ip4(), OxmField::IpEcn(v % 2)],
        _ => field(sel, v),
    }
}

pub(super) fn arb_cache_flow() -> impl Strategy<Value = FlowMod> {
    arb_flow_with(cache_field, 3)
}

/// A frame from a small space, so that packets share flows and megaflows:
/// MACs (broadcast too), source address, UDP/TCP/ICMP ports, TTL, ECN, a
/// VLAN tag, and now and then a truncation or a non-IP ethertype.
pub(super) fn cache_frame(v: (u8, u8, u8, u8), w: (u8, u8, u8)) -> Vec<u8> {
    let dst = if v.0 % 7 == 6 {
        MacAddr::BROADCAST
    } else {
        MacAddr::local(u32::from(v.0 % 3))
    };
    let mut f = udp_frame(
        60,
        dst,
        MacAddr::local(u32::from(v.1 % 3)),
        [10, 0, 0, v.1 % 4],
        [10, 0, 1, v.2 % 5],
        u16::from(v.3 % 5),
        u16::from(v.3 / 5 % 3),
    );
    f[23] = [17, 17, 6, 1][usize::from(w.0 % 4)]; // protocol
    f[22] = w.1 % 3; // TTL 0..2
    f[15] = w.1 / 3 % 2; // ECN
    match w.2 % 8 {
        0 => {
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0, 0, 5]);
            t.extend_from_slice(&f[12..]);
            f = t;
        }
        1 => f.truncate(14 + usize::from(w.1 % 30)),
        2 => f[12..14].copy_from_slice(&[0x88, 0xb5]),
        _ => {}
    }
    f
}

/// The arguments of one [`cache_frame`].
pub(super) type CachePkt = ((u8, u8, u8, u8), (u8, u8, u8));

/// A 3-table module with select group 1 and `flows`.
pub(super) fn cache_module(flows: &[FlowMod]) -> FlowModule {
    let m = FlowModule::new(FlowConfig {
        tables: 3,
        ..FlowConfig::default()
    });
    m.group_mod(
        &group(
            GroupType::Select,
            1,
            vec![bucket(vec![out(1)]), bucket(vec![out(2)])],
        ),
        0,
    )
    .unwrap();
    for f in flows {
        let _ = m.flow_mod(f, 0);
    }
    m
}

/// Runs the [`cache_frame`]s of `pkts` through `cached` as one batch and
/// through `bare` one by one with empty caches: the same verdicts, bytes
/// and controller copies.
pub(super) fn same_as_uncached(
    cached: &FlowModule,
    bare: &FlowModule,
    in_port: u16,
    pkts: &[CachePkt],
) -> Result<(), TestCaseError> {
    let frames: Vec<Vec<u8>> = pkts.iter().map(|&(v, w)| cache_frame(v, w)).collect();
    let (rs, fs, cs) = run_full(cached, in_port, frames.clone(), 0);
    for (i, f) in frames.into_iter().enumerate() {
        bare.drop_caches();
        let (r1, f1, c1) = run_full(bare, in_port, vec![f], 0);
        prop_assert_eq!(&rs[i], &r1[0], "packet {} verdict", i);
        prop_assert_eq!(&fs[i], &f1[0], "packet {} bytes", i);
        let copy: Vec<_> = cs
            .iter()
            .filter(|c| usize::from(c.0) == i)
            .map(|c| c.1)
            .collect();
        let copy1: Vec<_> = c1.iter().map(|c| c.1).collect();
        prop_assert_eq!(copy, copy1, "packet {} controller copy", i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same packets through a module whose caches persist across
    /// batches and through one that looks up every packet alone with empty
    /// caches: the same verdicts, bytes, controller copies and counters.
    /// No packet ever gets another packet's plan.
    #[test]
    fn cached_lookups_match_uncached_ones(
        flows in proptest::collection::vec(arb_cache_flow(), 1..30),
        batches in proptest::collection::vec(
            (1u16..4, proptest::collection::vec((any::<(u8, u8, u8, u8)>(), any::<(u8, u8, u8)>()), 1..40)),
            1..12),
    ) {
        let (cached, bare) = (cache_module(&flows), cache_module(&flows));
        for (in_port, pkts) in batches {
            same_as_uncached(&cached, &bare, in_port, &pkts)?;
        }
        let stats = |m: &FlowModule| {
            let mut v: Vec<_> = m.flow_stats(&all_flows(), 0).unwrap().into_iter()
                .map(|s| (s.table_id, s.priority, format!("{:?}", s.match_), s.packet_count, s.byte_count))
                .collect();
            v.sort();
            v
        };
        prop_assert_eq!(stats(&cached), stats(&bare));
        let tables = |m: &FlowModule| m.table_stats().iter().map(|t| (t.lookup_count, t.matched_count)).collect::<Vec<_>>();
        prop_assert_eq!(tables(&cached), tables(&bare));
    }
}

/// Rules on transport ports that the traffic already fails at L3 leave
/// its ports out of the megaflow: the benchmark's 1,000 UDP flows through
/// MAC forwarding plus filler rules are one megaflow, not 1,000.
#[test]
fn staged_lookup_keeps_ports_out_of_megaflows() {
    let m = FlowModule::new(FlowConfig {
        tables: 1,
        l2: 2,
        filler: 100,
        ..FlowConfig::default()
    });
    let frames: Vec<Vec<u8>> = (0..1000u16).map(|k| udp(1, 2, 1024 + k, 1024)).collect();
    for chunk in frames.chunks(256) {
        assert!(run(&m, 1, chunk.to_vec()).iter().all(|r| *r == R::Port(2)));
    }
    assert_eq!(counter(&m, "upcalls"), 1);
    // Filler entry 51 (priority 101, 172.16.x.y/16 to port 4) beats the
    // MAC entry: a packet it matches gets its own megaflow and plan.
    let mut hit = udp(1, 2, 1024, 1024);
    let addr = 0xac10_0000u32 | (51u32.wrapping_mul(2_654_435_761) & 0x000f_ffff);
    hit[30..34].copy_from_slice(&addr.to_be_bytes());
    assert_eq!(run(&m, 1, vec![hit]), [R::Port(4)]);
    assert_eq!(counter(&m, "upcalls"), 2);
}
