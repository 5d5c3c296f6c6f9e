//! MPLS through the module: matches on the top entry, push and pop across
//! tables and switches, TTL handling, and the checks at install time.

use super::*;

/// Verdicts and frames after a batch whose buffers have 64 bytes of room
/// (as the switch's have), so pushes fit.
fn run_room(m: &FlowModule, in_port: u16, frames: Vec<Vec<u8>>) -> (Vec<R>, Vec<Vec<u8>>) {
    let lens: Vec<usize> = frames.iter().map(Vec::len).collect();
    let mut bufs: Vec<Vec<u8>> = frames
        .into_iter()
        .map(|mut f| {
            f.resize(f.len() + 64, 0);
            f
        })
        .collect();
    let mut refs = Vec::new();
    let mut out = Verdicts::default();
    out.reset(lens.len());
    let lens = {
        let mut b = Batch::from_buffers_with_room(&mut bufs, &lens, &mut refs, PortId(in_port));
        m.process(&mut b, &mut out, 0);
        (0..lens.len()).map(|i| b.data(i).len()).collect::<Vec<_>>()
    };
    for (f, l) in bufs.iter_mut().zip(lens) {
        f.truncate(l);
    }
    let rs = (0..bufs.len())
        .map(|i| match out.get(i) {
            Verdict::Drop => R::Drop,
            Verdict::Port(p) => R::Port(p.0),
            v => panic!("unexpected verdict {v:?}"),
        })
        .collect();
    (rs, bufs)
}

fn mpls() -> OxmField {
    OxmField::EthType(0x8847)
}

fn set(f: OxmField) -> Action {
    Action::SetField(f)
}

/// A frame as the first switch sends it: `udp` under label `label`.
fn labelled(label: u32, ttl: u8) -> Vec<u8> {
    let f = udp(1, 2, 5, 6);
    let mut g = f[..12].to_vec();
    g.extend_from_slice(&[0x88, 0x47]);
    g.extend_from_slice(&((label << 12) | (1 << 8) | u32::from(ttl)).to_be_bytes());
    g.extend_from_slice(&f[14..]);
    g
}

#[test]
fn push_then_pop_across_two_switches() {
    // Switch A: push label 10 (ovs-ofctl's
    // `actions=push_mpls:0x8847,set_field:10->mpls_label,output:2`).
    let a = module();
    add(
        &a,
        flow(
            0,
            1,
            vec![ip4()],
            vec![apply(vec![
                Action::PushMpls(0x8847),
                set(OxmField::MplsLabel(10)),
                out(2),
            ])],
        ),
    );
    let f = udp(1, 2, 5, 6);
    let (r, got) = run_room(&a, 1, vec![f.clone(), f.clone()]);
    assert_eq!(r, vec![R::Port(2); 2]);
    assert_eq!(got[0], labelled(10, f[22]));
    assert_eq!(got[1], got[0]);
    // Switch B: `mpls,mpls_label=10,actions=pop_mpls:0x0800,output:1`;
    // other labels go elsewhere.
    let b = module();
    add(
        &b,
        flow(
            0,
            10,
            vec![mpls(), OxmField::MplsLabel(10)],
            vec![apply(vec![Action::PopMpls(0x0800), out(1)])],
        ),
    );
    add(&b, flow(0, 5, vec![mpls()], vec![apply(vec![out(3)])]));
    let (r, back) = run_at(&b, 2, vec![got[0].clone(), labelled(11, 64)], 0);
    assert_eq!(r, vec![R::Port(1), R::Port(3)]);
    assert_eq!(back[0], f);
    assert!(actions::tests::checksums_ok(&back[0]));
}

#[test]
fn matches_on_tc_and_bos_and_push_in_the_action_set() {
    let m = module();
    add(
        &m,
        flow(
            0,
            10,
            vec![mpls(), OxmField::MplsTc(0), OxmField::MplsBos(1)],
            vec![
                Instruction::WriteActions(vec![
                    Action::PushMpls(0x8847),
                    Action::SetMplsTtl(7),
                    out(2),
                ]),
                Instruction::GotoTable(1),
            ],
        ),
    );
    // Table 1 sees the packet as received (the set runs at the end).
    add(
        &m,
        flow(1, 1, vec![mpls(), OxmField::MplsLabel(20)], vec![]),
    );
    let (r, got) = run_room(&m, 1, vec![labelled(20, 64)]);
    assert_eq!(r, vec![R::Port(2)]);
    assert_eq!(got[0].len(), labelled(20, 64).len() + 4);
    // The new top copies the old (not bottom of stack), TTL set to 7.
    assert_eq!(&got[0][14..18], &((20 << 12) | 7u32).to_be_bytes());
    assert_eq!(&got[0][18..22], &labelled(20, 64)[14..18]);
    // Bottom of stack 0 does not match.
    let mut two = got[0].clone();
    two[16] &= !1;
    assert_eq!(run(&m, 1, vec![two]), vec![R::Drop]);
}

#[test]
fn dec_mpls_ttl_drops_or_asks_the_controller_at_one() {
    let m = module();
    add(
        &m,
        flow(
            0,
            10,
            vec![mpls()],
            vec![apply(vec![Action::DecMplsTtl, out(2)])],
        ),
    );
    let (r, got) = run_at(
        &m,
        1,
        vec![labelled(5, 9), labelled(5, 1), labelled(5, 0)],
        0,
    );
    assert_eq!(r, vec![R::Port(2), R::Drop, R::Drop]);
    assert_eq!(got[0][17], 8);
    assert_eq!(counter(&m, "invalid_ttl"), 2);
    m.set_invalid_ttl_to_controller(true);
    let (r, _, copies) = run_full(&m, 1, vec![labelled(5, 1)], 0);
    assert_eq!(r, vec![R::Controller]);
    assert_eq!(
        copies[0].1.map(|c| c.reason),
        Some(crate::openflow::flow::packet_in_reason::INVALID_TTL)
    );
}

#[test]
fn mpls_actions_are_checked_against_the_match() {
    let m = module();
    let try_add = |fields, actions| m.flow_mod(&flow(0, 1, fields, vec![apply(actions)]), 0);
    let inconsistent = Err(ErrorCode::BadAction(BadActionCode::MatchInconsistent));
    assert_eq!(
        try_add(vec![ip4()], vec![set(OxmField::MplsLabel(3))]),
        inconsistent
    );
    assert_eq!(
        try_add(vec![ip4()], vec![Action::SetMplsTtl(3)]),
        inconsistent
    );
    // After a push, or on an MPLS match, they are fine.
    assert!(
        try_add(
            vec![ip4()],
            vec![Action::PushMpls(0x8848), Action::DecMplsTtl]
        )
        .is_ok()
    );
    assert!(try_add(vec![mpls()], vec![set(OxmField::MplsTc(3))]).is_ok());
    // Popping to IP leaves no MPLS to change.
    assert_eq!(
        try_add(
            vec![mpls()],
            vec![Action::PopMpls(0x0800), Action::DecMplsTtl]
        ),
        inconsistent
    );
    assert!(
        try_add(
            vec![mpls()],
            vec![Action::PopMpls(0x8847), Action::DecMplsTtl]
        )
        .is_ok()
    );
}

mod property {
    //! Compiled masks stay sound with MPLS matches and actions: every key
    //! that agrees with a packet's on the mask compiles to the same plan.

    use super::super::super::key::{self, Key};
    use super::*;
    use proptest::prelude::*;

    fn field(sel: u8, v: u8) -> Vec<OxmField> {
        match sel % 6 {
            0 => vec![OxmField::InPort(PortNo(u32::from(v % 3) + 1))],
            1 => vec![ip4()],
            2 => vec![mpls(), OxmField::MplsLabel(u32::from(v % 3))],
            3 => vec![mpls(), OxmField::MplsTc(v % 2)],
            4 => vec![mpls(), OxmField::MplsBos(v % 2)],
            _ => vec![],
        }
    }

    fn action(sel: u8, v: u8) -> Action {
        match sel % 9 {
            0 => Action::PushMpls(0x8847),
            1 => Action::PopMpls(if v.is_multiple_of(2) { 0x0800 } else { 0x8847 }),
            2 => Action::DecMplsTtl,
            3 => Action::SetMplsTtl(v % 3),
            4 => set(OxmField::MplsLabel(u32::from(v % 3))),
            5 => Action::DecNwTtl,
            6 => Action::PushVlan(0x8100),
            _ => out(u32::from(v % 3) + 1),
        }
    }

    prop_compose! {
        fn arb_flow()(table in 0u8..2, prio in 0u16..4, f in any::<(u8, u8)>(),
                      acts in proptest::collection::vec(any::<(u8, u8)>(), 0..5),
                      write in any::<bool>(), goto in any::<bool>()) -> FlowMod {
            let fs = Match::from_fields(field(f.0, f.1)).unwrap_or_default();
            let list: Vec<Action> = acts.iter().map(|&(s, v)| action(s, v)).collect();
            let mut insts = vec![if write {
                Instruction::WriteActions(list)
            } else {
                apply(list)
            }];
            if goto && table == 0 {
                insts.push(Instruction::GotoTable(1));
            }
            FlowMod { table_id: table, priority: prio, match_: fs, instructions: insts, ..FlowMod::default() }
        }
    }

    /// An IP frame, or the same under one or two labels.
    fn frame(v: (u8, u8, u8, u8)) -> Vec<u8> {
        let mut f = udp(1, 2, 5, 6);
        f[22] = v.0 % 3;
        for depth in 0..v.1 % 3 {
            let bos = u32::from(depth == 0);
            let lse = (u32::from(v.2 % 3) << 12) | (u32::from(v.3 % 2) << 9) | (bos << 8);
            let lse = lse | u32::from(v.0 % 3);
            let mut g = f[..12].to_vec();
            g.extend_from_slice(&[0x88, 0x47]);
            g.extend_from_slice(&lse.to_be_bytes());
            g.extend_from_slice(&f[14..]);
            f = g;
        }
        f
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn compiled_masks_are_sound_with_mpls(
            flows in proptest::collection::vec(arb_flow(), 1..16),
            pkts in proptest::collection::vec((any::<(u8, u8, u8, u8)>(), any::<(u8, u8, u8, u8)>()), 1..16),
        ) {
            let m = FlowModule::new(FlowConfig { tables: 2, ..FlowConfig::default() });
            for f in &flows {
                let _ = m.flow_mod(f, 0);
            }
            let p = m.read();
            for (a, b) in pkts {
                let ka = key::parse(&frame(a), 1).expect("parses").key;
                let kb = key::parse(&frame(b), 1).expect("parses").key;
                let (plan, mask) = p.compile(&ka);
                let mut mixed = ka.and(&mask);
                mixed.or_assign(&kb.and(&Key(mask.0.map(|w| !w))));
                let (plan2, _) = p.compile(&mixed);
                prop_assert_eq!(&plan.verdict, &plan2.verdict);
                prop_assert_eq!(&plan.ops, &plan2.ops);
                prop_assert_eq!(&plan.tables, &plan2.tables);
                prop_assert_eq!(plan.events, plan2.events);
            }
        }
    }
}
