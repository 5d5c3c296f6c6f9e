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
