//! Compiled megaflow masks are sound: a property test.

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
    fn arb_flow()(table in 0u8..3, prio in 0u16..4, f in any::<(u8, u8, u8, u8)>(),
                  acts in proptest::collection::vec(any::<(u8, u8)>(), 0..4),
                  md in any::<Option<u8>>(), goto in any::<bool>()) -> FlowMod {
        let mut fields = field(f.0, f.1);
        for g in field(f.2, f.3) {
            if !fields.iter().any(|x| x.field_type() == g.field_type()) {
                fields.push(g);
            }
        }
        let fields = Match::from_fields(fields.clone())
            .unwrap_or_else(|_| Match::from_fields(vec![]).unwrap());
        let mut insts = vec![apply(acts.iter().map(|&(s, v)| action(s, v)).collect())];
        if let Some(v) = md {
            insts.push(Instruction::WriteMetadata { metadata: u64::from(v % 4), mask: 3 });
        }
        if goto && table < 2 {
            insts.push(Instruction::GotoTable(table + 1));
        }
        FlowMod { table_id: table, priority: prio, match_: fields, instructions: insts, ..FlowMod::default() }
    }
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
