//! Pipeline semantics, driven through `process`.

use super::*;

#[test]
fn empty_tables_drop_everything() {
    let m = module();
    assert_eq!(
        run(&m, 1, vec![udp(1, 2, 1, 2), vec![0; 10]]),
        [R::Drop, R::Invalid]
    );
    assert_eq!(counter(&m, "table_miss"), 1);
    let t = m.table_stats();
    assert_eq!(t.len(), 8);
    assert_eq!((t[0].lookup_count, t[0].matched_count), (1, 0));
}

#[test]
fn priorities_masks_and_table_miss() {
    let m = module();
    let net = |a, l| {
        OxmField::Ipv4Dst(Masked::new(
            Ipv4Addr::from(a),
            Ipv4Addr::from(u32::MAX << (32 - l)),
        ))
    };
    add(
        &m,
        flow(
            0,
            10,
            vec![ip4(), net(0x0a00_0100, 24)],
            vec![apply(vec![out(2)])],
        ),
    );
    add(
        &m,
        flow(
            0,
            20,
            vec![ip4(), net(0x0a00_0102, 32)],
            vec![apply(vec![out(3)])],
        ),
    );
    add(
        &m,
        flow(
            0,
            5,
            vec![ip4(), net(0x0a00_0000, 16)],
            vec![apply(vec![out(4)])],
        ),
    );
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(3)]);
    assert_eq!(run(&m, 1, vec![udp(1, 7, 1, 1)]), [R::Port(2)]);
    let mut other = udp(1, 7, 1, 1);
    other[32] = 9; // 10.0.9.7
    assert_eq!(run(&m, 1, vec![other.clone()]), [R::Port(4)]);
    other[31] = 1; // 10.1.9.7: no entry, no table-miss entry
    assert_eq!(run(&m, 1, vec![other.clone()]), [R::Drop]);
    // The table-miss entry: priority 0, matches everything.
    add(
        &m,
        flow(0, 0, vec![], vec![apply(vec![out(PortNo::CONTROLLER.0)])]),
    );
    assert_eq!(run(&m, 1, vec![other]), [R::Controller]);
    let t = &m.table_stats()[0];
    assert_eq!((t.active_count, t.lookup_count, t.matched_count), (4, 5, 4));
}

#[test]
fn goto_chains_and_metadata() {
    let m = module();
    add(
        &m,
        flow(
            0,
            1,
            vec![OxmField::InPort(PortNo(1))],
            vec![
                Instruction::WriteMetadata {
                    metadata: 0x50,
                    mask: 0xf0,
                },
                Instruction::GotoTable(3),
            ],
        ),
    );
    add(
        &m,
        flow(
            0,
            1,
            vec![OxmField::InPort(PortNo(2))],
            vec![
                Instruction::WriteMetadata {
                    metadata: 0x60,
                    mask: 0xff,
                },
                Instruction::GotoTable(3),
            ],
        ),
    );
    let md = |v| OxmField::Metadata(Masked::new(v, 0xf0));
    add(&m, flow(3, 1, vec![md(0x50)], vec![apply(vec![out(7)])]));
    add(
        &m,
        flow(3, 1, vec![md(0x60)], vec![Instruction::GotoTable(5)]),
    );
    add(&m, flow(5, 1, vec![], vec![apply(vec![out(8)])]));
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(7)]);
    assert_eq!(run(&m, 2, vec![udp(1, 2, 1, 1)]), [R::Port(8)]);
    assert_eq!(run(&m, 3, vec![udp(1, 2, 1, 1)]), [R::Drop]);
    let t = m.table_stats();
    assert_eq!(
        [0, 3, 5].map(|i| (t[i].lookup_count, t[i].matched_count)),
        [(3, 2), (2, 2), (1, 1)]
    );
}

#[test]
fn instructions_and_actions_are_checked() {
    let m = module();
    let try_add = |table, insts, fields| m.flow_mod(&flow(table, 1, fields, insts), 0);
    let bi = |c| Err(ErrorCode::BadInstruction(c));
    let ba = |c| Err(ErrorCode::BadAction(c));
    assert_eq!(
        try_add(2, vec![Instruction::GotoTable(2)], vec![]),
        bi(BadInstructionCode::BadTableId)
    );
    assert_eq!(
        try_add(2, vec![Instruction::GotoTable(1)], vec![]),
        bi(BadInstructionCode::BadTableId)
    );
    assert_eq!(
        try_add(2, vec![Instruction::GotoTable(8)], vec![]),
        bi(BadInstructionCode::BadTableId)
    );
    assert_eq!(
        try_add(0, vec![Instruction::Meter(1)], vec![]),
        Err(ErrorCode::MeterModFailed(
            crate::openflow::error::MeterModFailedCode::InvalidMeter
        ))
    );
    assert_eq!(
        try_add(8, vec![], vec![]),
        Err(ErrorCode::FlowModFailed(FlowModFailedCode::BadTableId))
    );
    assert_eq!(
        try_add(0, vec![apply(vec![out(0)])], vec![]),
        ba(BadActionCode::BadOutPort)
    );
    assert!(try_add(0, vec![apply(vec![Action::output(PortNo::NORMAL)])], vec![]).is_ok());
    assert_eq!(
        try_add(0, vec![apply(vec![out(5000)])], vec![]),
        ba(BadActionCode::BadOutPort)
    );
    assert_eq!(
        try_add(0, vec![apply(vec![Action::Group(9)])], vec![]),
        ba(BadActionCode::BadOutGroup)
    );
    assert!(try_add(0, vec![apply(vec![Action::PushMpls(0x8847)])], vec![]).is_ok());
    assert_eq!(
        try_add(0, vec![apply(vec![Action::PushMpls(0x0800)])], vec![]),
        ba(BadActionCode::BadArgument)
    );
    assert_eq!(
        try_add(0, vec![apply(vec![Action::PopMpls(0x0800)])], vec![]),
        ba(BadActionCode::MatchInconsistent)
    );
    assert_eq!(
        try_add(0, vec![apply(vec![Action::DecMplsTtl])], vec![]),
        ba(BadActionCode::MatchInconsistent)
    );
    assert_eq!(
        try_add(0, vec![apply(vec![Action::CopyTtlOut])], vec![]),
        ba(BadActionCode::BadType)
    );
    let set_ip = Action::SetField(OxmField::Ipv4Src(Masked::exact(Ipv4Addr::LOCALHOST)));
    assert_eq!(
        try_add(0, vec![apply(vec![set_ip.clone()])], vec![]),
        ba(BadActionCode::MatchInconsistent)
    );
    assert_eq!(
        try_add(0, vec![apply(vec![set_ip])], vec![ip4()]),
        Ok(vec![])
    );
    let pcp = Action::SetField(OxmField::VlanPcp(3));
    assert_eq!(
        try_add(0, vec![apply(vec![pcp.clone()])], vec![]),
        ba(BadActionCode::MatchInconsistent)
    );
    assert_eq!(
        try_add(0, vec![apply(vec![Action::PushVlan(0x8100), pcp])], vec![]),
        Ok(vec![])
    );
    let meta = Action::SetField(OxmField::Metadata(Masked::exact(1)));
    assert_eq!(
        try_add(0, vec![apply(vec![meta])], vec![]),
        ba(BadActionCode::BadSetType)
    );
    let mut bad_flags = flow(0, 1, vec![], vec![]);
    bad_flags.flags = 1 << 9;
    assert_eq!(
        m.flow_mod(&bad_flags, 0),
        Err(ErrorCode::FlowModFailed(FlowModFailedCode::BadFlags))
    );
    // With a port set, only those ports.
    m.set_ports(&[1, 2, 3]);
    assert_eq!(
        try_add(0, vec![apply(vec![out(4)])], vec![]),
        ba(BadActionCode::BadOutPort)
    );
    assert_eq!(try_add(0, vec![apply(vec![out(3)])], vec![]), Ok(vec![]));
}

#[test]
fn action_set_runs_last_in_spec_order() {
    let m = module();
    let new_dst = MacAddr::local(99);
    add(
        &m,
        flow(
            0,
            1,
            vec![],
            vec![
                Instruction::WriteActions(vec![out(2)]),
                Instruction::GotoTable(1),
            ],
        ),
    );
    add(
        &m,
        flow(
            1,
            1,
            vec![OxmField::InPort(PortNo(1))],
            vec![Instruction::WriteActions(vec![
                // Written after the output, but the set applies set-field first.
                Action::SetField(OxmField::EthDst(Masked::exact(new_dst))),
            ])],
        ),
    );
    add(
        &m,
        flow(
            1,
            1,
            vec![OxmField::InPort(PortNo(3))],
            vec![Instruction::ClearActions],
        ),
    );
    let (v, f) = run_at(&m, 1, vec![udp(1, 2, 1, 1)], 0);
    assert_eq!(v, [R::Port(2)]);
    assert_eq!(&f[0][0..6], &new_dst.0);
    assert_eq!(run(&m, 3, vec![udp(1, 2, 1, 1)]), [R::Drop]);
    // A group in the action set takes precedence over the output.
    let g = GroupMod {
        command: GroupModCommand::Add,
        group_type: GroupType::Indirect,
        group_id: 1,
        buckets: vec![Bucket {
            actions: vec![out(5)],
            ..Bucket::default()
        }],
    };
    m.group_mod(&g, 0).unwrap();
    add(
        &m,
        flow(
            1,
            1,
            vec![OxmField::InPort(PortNo(4))],
            vec![Instruction::WriteActions(vec![Action::Group(1)])],
        ),
    );
    assert_eq!(run(&m, 4, vec![udp(1, 2, 1, 1)]), [R::Port(5)]);
}

#[test]
fn reserved_ports_and_port_sets() {
    let m = module();
    let on = |p: u32, a: Vec<Action>| flow(0, 1, vec![OxmField::InPort(PortNo(p))], vec![apply(a)]);
    add(&m, on(1, vec![Action::output(PortNo::IN_PORT)]));
    add(&m, on(2, vec![Action::output(PortNo::FLOOD)]));
    add(&m, on(3, vec![Action::output(PortNo::ALL)]));
    add(&m, on(4, vec![Action::output(PortNo::LOCAL)]));
    add(&m, on(5, vec![out(7), out(6), out(7)]));
    add(&m, on(6, vec![out(7), Action::output(PortNo::CONTROLLER)]));
    add(&m, on(7, vec![out(7)]));
    add(
        &m,
        on(8, vec![out(2), Action::output(PortNo::IN_PORT), out(8)]),
    );
    add(
        &m,
        on(
            9,
            vec![
                Action::output(PortNo::FLOOD),
                Action::output(PortNo::IN_PORT),
            ],
        ),
    );
    let f = || vec![udp(1, 2, 1, 1)];
    // IN_PORT is a hairpin set: the core sends it back out.
    assert_eq!(run(&m, 1, f()), [R::Hairpin(vec![1])]);
    assert_eq!(run(&m, 2, f()), [R::Flood]);
    assert_eq!(run(&m, 3, f()), [R::Flood]);
    assert_eq!(run(&m, 4, f()), [R::Drop]);
    assert_eq!(run(&m, 5, f()), [R::Ports(vec![6, 7])]);
    // Ports and the controller: both (the controller through a copy).
    let (v, _, c) = run_full(&m, 6, f(), 0);
    assert_eq!(v, [R::Port(7)]);
    assert_eq!(c.len(), 1);
    // An explicit output to the input port stays a plain port verdict,
    // which the core refuses (the spec drops it).
    assert_eq!(run(&m, 7, f()), [R::Port(7)]);
    assert_eq!(run(&m, 8, f()), [R::Hairpin(vec![2, 8])]);
    // FLOOD plus IN_PORT: every port, the input too (expanded here).
    m.set_ports(&[1, 2, 9]);
    assert_eq!(run(&m, 9, f()), [R::Hairpin(vec![1, 2, 9])]);
}

#[test]
fn controller_copies_carry_their_metadata() {
    use crate::openflow::flow::packet_in_reason as why;
    let m = module();
    let ctl = |max_len| Action::Output {
        port: PortNo::CONTROLLER,
        max_len,
    };
    let with_cookie = |mut f: FlowMod, c| {
        f.cookie = c;
        f
    };
    // Table 0: the table-miss entry, a priority-0 entry that matches
    // something, and a goto with metadata.
    add(
        &m,
        with_cookie(flow(0, 0, vec![], vec![apply(vec![ctl(128)])]), 0xabc),
    );
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(4))],
            vec![Instruction::GotoTable(3)],
        ),
    );
    add(
        &m,
        with_cookie(flow(3, 0, vec![ip4()], vec![apply(vec![ctl(0xffff)])]), 0x4),
    );
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(2))],
            vec![
                Instruction::WriteMetadata {
                    metadata: 5,
                    mask: 0xff,
                },
                Instruction::GotoTable(1),
            ],
        ),
    );
    let eth_src = |n| Action::SetField(OxmField::EthSrc(Masked::exact(MacAddr::local(n))));
    add(
        &m,
        with_cookie(
            flow(
                1,
                5,
                vec![],
                vec![apply(vec![out(3), eth_src(9), ctl(64), ctl(10)])],
            ),
            0x1,
        ),
    );
    let meta = |reason, table_id, cookie, max_len, metadata| ControllerMeta {
        reason,
        table_id,
        cookie,
        max_len,
        metadata,
        ..ControllerMeta::default()
    };
    let (v, _, c) = run_full(&m, 1, vec![udp(1, 2, 1, 1)], 0);
    assert_eq!(v, [R::Controller]);
    assert_eq!(c, [(0, Some(meta(why::NO_MATCH, 0, 0xabc, 128, 0)))]);
    let (v, _, c) = run_full(&m, 4, vec![udp(1, 2, 1, 1)], 0);
    assert_eq!(v, [R::Controller]);
    assert_eq!(c, [(0, Some(meta(why::ACTION, 3, 4, 0xffff, 0)))]);
    // Port and controller; two controller outputs make one copy (the
    // first's metadata) with the last bytes; the port, output before the
    // rewrite, gets the frame as received (a variant).
    // Three packets of one flow in a batch: the memo serves two of them.
    let (v, f, c) = run_full(&m, 2, vec![udp(1, 2, 1, 1); 3], 0);
    assert_eq!(v, vec![R::Controller; 3]);
    let want = Some(meta(why::ACTION, 1, 1, 64, 5));
    assert_eq!(c, [(0, want), (1, want), (2, want)]);
    assert_eq!(&f[2][6..12], &MacAddr::local(9).0);
    let vs = variants(&m, 2, vec![udp(1, 2, 1, 1); 3]);
    assert_eq!(
        vs,
        (0..3).map(|i| (i, 3, udp(1, 2, 1, 1))).collect::<Vec<_>>()
    );
    assert!(counter(&m, "memo_hits") >= 2);
    // The same metadata keeps its tag across batches and cache resets.
    let tag = |m: &FlowModule| {
        let mut out = Verdicts::default();
        let mut frames = vec![udp(1, 2, 1, 1)];
        let mut refs = Vec::new();
        out.reset(1);
        m.process(
            &mut Batch::from_buffers(&mut frames, &mut refs, PortId(2)),
            &mut out,
            0,
        );
        out.controller_copies()[0].1
    };
    let t = tag(&m);
    add(&m, flow(2, 1, vec![], vec![]));
    assert_eq!(tag(&m), t);
    assert_eq!(m.controller_meta(0), None);
    assert_eq!(m.controller_meta(9999), None);
}

#[test]
fn port_config_drops_skips_and_silences() {
    use crate::openflow::port::config as pc;
    let m = module();
    m.set_ports(&[1, 2, 3, 4]);
    let on = |p: u32, a: Vec<Action>| flow(0, 1, vec![OxmField::InPort(PortNo(p))], vec![apply(a)]);
    add(
        &m,
        flow(
            0,
            0,
            vec![],
            vec![apply(vec![Action::output(PortNo::FLOOD)])],
        ),
    );
    add(&m, on(2, vec![out(3), out(4)]));
    add(
        &m,
        on(
            3,
            vec![
                Action::output(PortNo::IN_PORT),
                Action::output(PortNo::CONTROLLER),
            ],
        ),
    );
    m.group_mod(
        &group(
            GroupType::All,
            1,
            vec![bucket(vec![out(3)]), bucket(vec![out(1)])],
        ),
        0,
    )
    .unwrap();
    add(&m, on(4, vec![Action::Group(1)]));
    let f = || vec![udp(1, 2, 1, 1)];
    assert_eq!(run(&m, 1, f()), [R::Flood]);
    // NO_FWD on 3: floods are expanded without it, outputs skip it.
    let g = m.generation();
    m.set_port_config(3, pc::NO_FWD | 0x8000);
    assert!(m.generation() > g);
    assert_eq!(m.port_config(3), pc::NO_FWD);
    assert_eq!(run(&m, 1, f()), [R::Ports(vec![2, 4])]);
    assert_eq!(m.flood_ports(1), [PortId(2), PortId(4)]);
    assert_eq!(run(&m, 2, f()), [R::Port(4)]);
    assert_eq!(run(&m, 4, f()), [R::Port(1)]);
    // IN_PORT skips a NO_FWD input; the controller copy stays.
    let (v, _, c) = run_full(&m, 3, f(), 0);
    assert_eq!((v, c.len()), (vec![R::Controller], 1));
    // Setting the same bits again changes nothing.
    let g = m.generation();
    m.set_port_config(3, pc::NO_FWD);
    assert_eq!(m.generation(), g);
    // NO_PACKET_IN on 3: nothing goes up.
    m.set_port_config(3, pc::NO_FWD | pc::NO_PACKET_IN);
    let (v, _, c) = run_full(&m, 3, f(), 0);
    assert_eq!((v, c.len()), (vec![R::Drop], 0));
    // NO_RECV on 2: dropped before the tables, counted.
    let lookups = |m: &FlowModule| m.table_stats()[0].lookup_count;
    m.set_port_config(2, pc::NO_RECV);
    let before = lookups(&m);
    assert_eq!(run(&m, 2, vec![udp(1, 2, 1, 1); 3]), vec![R::Drop; 3]);
    assert_eq!(counter(&m, "no_recv_drops"), 3);
    assert_eq!(lookups(&m), before);
    // NO_RECV does not stop outputs to the port.
    assert_eq!(run(&m, 1, f()), [R::Ports(vec![2, 4])]);
    // PORT_DOWN: neither in nor out, and not live.
    m.set_port_config(4, pc::PORT_DOWN);
    assert_eq!(run(&m, 4, f()), [R::Drop]);
    assert_eq!(run(&m, 1, f()), [R::Port(2)]);
    assert!(!m.read().port_live(4));
    // Cleared: floods are the switch's again.
    for p in [2, 3, 4] {
        m.set_port_config(p, 0);
    }
    assert_eq!(run(&m, 1, f()), [R::Flood]);
    assert_eq!(counter(&m, "no_recv_drops"), 4);
}

#[test]
fn floods_expand_to_attached_ports_without_a_port_set() {
    use crate::openflow::port::config as pc;
    let m = module();
    for p in [1, 2, 5, 6] {
        m.port_attached(PortId(p));
    }
    m.port_detached(PortId(6));
    add(
        &m,
        flow(0, 0, vec![], vec![apply(vec![Action::output(PortNo::ALL)])]),
    );
    m.set_port_config(2, pc::PORT_DOWN);
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(5)]);
    assert_eq!(run(&m, 5, vec![udp(1, 2, 1, 1)]), [R::Port(1)]);
}

#[test]
fn no_flood_leaves_a_port_out_of_flood_and_normal_but_not_all() {
    use crate::openflow::port::config as pc;
    let m = module();
    m.set_ports(&[1, 2, 3, 4]);
    let by_port = |p: u32, a: Action| {
        flow(
            0,
            1,
            vec![OxmField::InPort(PortNo(p))],
            vec![apply(vec![a])],
        )
    };
    add(&m, by_port(1, Action::output(PortNo::FLOOD)));
    add(&m, by_port(2, Action::output(PortNo::ALL)));
    add(&m, by_port(3, Action::output(PortNo::NORMAL)));
    add(&m, by_port(4, out(3)));
    // A broadcast, so NORMAL floods too.
    let bcast = || {
        let mut f = udp(1, 2, 1, 1);
        f[..6].copy_from_slice(&[0xff; 6]);
        vec![f]
    };
    assert_eq!(run(&m, 1, bcast()), [R::Flood]);
    assert_eq!(run(&m, 2, bcast()), [R::Flood]);
    assert_eq!(run(&m, 3, bcast()), [R::Ports(vec![1, 2, 4])]);

    // NO_FLOOD on 3: FLOOD and NORMAL leave it out, ALL and an explicit
    // output still reach it; cached plans are dropped.
    let g = m.generation();
    m.set_port_config(3, pc::NO_FLOOD);
    assert!(m.generation() > g);
    assert_eq!(m.port_config(3), pc::NO_FLOOD);
    assert_eq!(run(&m, 1, bcast()), [R::Ports(vec![2, 4])]);
    assert_eq!(run(&m, 2, bcast()), [R::Flood]);
    assert_eq!(run(&m, 4, bcast()), [R::Port(3)]);
    m.set_port_config(4, pc::NO_FLOOD);
    assert_eq!(run(&m, 3, bcast()), [R::Ports(vec![1, 2])]);
    assert_eq!(m.flood_ports(1), [PortId(2)]);
    assert_eq!(m.all_ports(1), [PortId(2), PortId(3), PortId(4)]);

    // With NO_FWD as well, ALL leaves it out too.
    m.set_port_config(3, pc::NO_FLOOD | pc::NO_FWD);
    assert_eq!(run(&m, 2, bcast()), [R::Ports(vec![1, 4])]);
    assert_eq!(m.all_ports(1), [PortId(2), PortId(4)]);

    // Cleared: the switch floods again.
    m.set_port_config(3, 0);
    m.set_port_config(4, 0);
    assert_eq!(run(&m, 1, bcast()), [R::Flood]);
    assert_eq!(m.flood_ports(1), [PortId(2), PortId(3), PortId(4)]);
}

/// The variants of a batch: (packet, port, bytes).
fn variants(m: &FlowModule, in_port: u16, mut frames: Vec<Vec<u8>>) -> Vec<(u16, u16, Vec<u8>)> {
    let mut refs = Vec::new();
    let mut out = Verdicts::default();
    out.reset(frames.len());
    let mut b = Batch::from_buffers(&mut frames, &mut refs, PortId(in_port));
    m.process(&mut b, &mut out, 0);
    out.variants()
        .map(|(i, to, bytes)| match to {
            Verdict::Port(p) => (i as u16, p.0, bytes.to_vec()),
            other => panic!("a variant to {other:?}"),
        })
        .collect()
}

#[test]
fn outputs_between_rewrites_get_the_bytes_they_saw() {
    let m = module();
    let set = |n| Action::SetField(OxmField::EthSrc(Masked::exact(MacAddr::local(n))));
    add(
        &m,
        flow(
            0,
            1,
            vec![],
            vec![apply(vec![out(2), set(50), out(3), set(60)])],
        ),
    );
    let (v, f) = run_at(&m, 1, vec![udp(1, 2, 1, 1), udp(1, 2, 1, 1)], 0);
    assert_eq!(v, [R::Port(3), R::Port(3)]);
    // The last output saw eth_src 50; the rewrite after it changes nothing.
    assert_eq!(&f[0][6..12], &MacAddr::local(50).0);
    assert_eq!(f[0], f[1]);
    assert_eq!(counter(&m, "multi_version_outputs"), 2);
    // Port 2, output before any rewrite, gets the frame as received.
    let vs = variants(&m, 1, vec![udp(1, 2, 1, 1)]);
    assert_eq!(vs, [(0, 2, udp(1, 2, 1, 1))]);
}

#[test]
fn ttl_decrement_and_invalid_ttl() {
    let m = module();
    add(
        &m,
        flow(
            0,
            1,
            vec![ip4()],
            vec![apply(vec![out(4), Action::DecNwTtl, out(2)])],
        ),
    );
    let (v, f) = run_at(&m, 1, vec![udp(1, 2, 1, 1)], 0);
    assert_eq!(v, [R::Port(2)]);
    assert_eq!(f[0][22], 63);
    // Port 4 got it before the decrement.
    let vs = variants(&m, 1, vec![udp(1, 2, 1, 1)]);
    assert_eq!(vs, [(0, 4, udp(1, 2, 1, 1))]);
    assert_eq!(
        crate::wire::ethernet::ones_complement_sum(&f[0][14..34]),
        0xffff
    );
    let mut low = udp(1, 2, 1, 1);
    low[22] = 1;
    // Processing stops at the invalid TTL: only the earlier output stays.
    assert_eq!(run(&m, 1, vec![low.clone()]), [R::Port(4)]);
    assert_eq!(counter(&m, "invalid_ttl"), 1);
    // When asked, the packet goes to the controller too.
    m.set_invalid_ttl_to_controller(true);
    let (v, _, c) = run_full(&m, 1, vec![low.clone()], 0);
    assert_eq!(v, [R::Port(4)]);
    let meta = c[0].1.unwrap();
    assert_eq!(
        (meta.reason, meta.table_id),
        (crate::openflow::flow::packet_in_reason::INVALID_TTL, 0)
    );
    m.set_port_config(1, crate::openflow::port::config::NO_PACKET_IN);
    assert_eq!(run_full(&m, 1, vec![low], 0).2, []);
}

#[test]
fn vlan_pop_and_push_without_room() {
    let m = module();
    add(
        &m,
        flow(
            0,
            1,
            vec![OxmField::VlanVid(Masked::new(0x1000, 0x1000))],
            vec![apply(vec![Action::PopVlan, out(2)])],
        ),
    );
    add(
        &m,
        flow(
            0,
            1,
            vec![OxmField::VlanVid(Masked::exact(0))],
            vec![apply(vec![Action::PushVlan(0x8100), out(3)])],
        ),
    );
    let plain = udp(1, 2, 1, 1);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0, 0, 10]);
    tagged.extend_from_slice(&plain[12..]);
    let (v, f) = run_at(&m, 1, vec![tagged], 0);
    assert_eq!(v, [R::Port(2)]);
    assert_eq!(f[0], plain);
    // `Batch::from_buffers` leaves no room to grow: the push drops.
    assert_eq!(run(&m, 1, vec![plain]), [R::Drop]);
    assert_eq!(counter(&m, "rewrite_drops"), 1);
}

#[test]
fn group_types() {
    let m = module();
    let tag = |n| Action::SetField(OxmField::UdpSrc(n));
    m.group_mod(
        &group(
            GroupType::All,
            1,
            vec![bucket(vec![out(2)]), bucket(vec![out(3)])],
        ),
        0,
    )
    .unwrap();
    m.group_mod(
        &group(GroupType::Indirect, 2, vec![bucket(vec![tag(7), out(4)])]),
        0,
    )
    .unwrap();
    m.group_mod(
        &group(
            GroupType::Select,
            3,
            (5..9).map(|p| bucket(vec![out(p)])).collect(),
        ),
        0,
    )
    .unwrap();
    let ff = |port: u32, act| Bucket {
        watch_port: PortNo(port),
        ..bucket(vec![act])
    };
    m.group_mod(
        &group(
            GroupType::FastFailover,
            4,
            vec![ff(10, out(10)), ff(11, out(11))],
        ),
        0,
    )
    .unwrap();
    for (port, g) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        add(
            &m,
            flow(
                0,
                1,
                vec![OxmField::InPort(PortNo(port))],
                vec![apply(vec![Action::Group(g)])],
            ),
        );
    }
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Ports(vec![2, 3])]);
    let (v, f) = run_at(&m, 2, vec![udp(1, 2, 1, 1)], 0);
    assert_eq!(v, [R::Port(4)]);
    assert_eq!(&f[0][34..36], &7u16.to_be_bytes());
    // Select: a flow sticks to one bucket; flows spread over all of them.
    let mut seen = std::collections::BTreeSet::new();
    for sport in 0..64 {
        let a = run(&m, 3, vec![udp(1, 2, sport, 9)]);
        assert_eq!(run(&m, 3, vec![udp(1, 2, sport, 9)]), a);
        seen.insert(format!("{a:?}"));
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    // Fast failover follows liveness, from the next batch on.
    assert_eq!(run(&m, 4, vec![udp(1, 2, 1, 1)]), [R::Port(10)]);
    m.set_port_live(10, false);
    assert_eq!(run(&m, 4, vec![udp(1, 2, 1, 1)]), [R::Port(11)]);
    m.set_port_live(11, false);
    assert_eq!(run(&m, 4, vec![udp(1, 2, 1, 1)]), [R::Drop]);
    m.set_port_live(10, true);
    assert_eq!(run(&m, 4, vec![udp(1, 2, 1, 1)]), [R::Port(10)]);
    // Counters: group 4 ran 4 times, bucket 0 twice (before and after
    // the outage), bucket 1 once, and once no bucket was live.
    let s = &m.group_stats(4, 0)[0];
    assert_eq!((s.packet_count, s.ref_count), (4, 1));
    assert_eq!(
        s.bucket_stats
            .iter()
            .map(|b| b.packet_count)
            .collect::<Vec<_>>(),
        [2, 1]
    );
    let s = &m.group_stats(group_id::ALL, 0);
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].bucket_stats[1].byte_count, 60);
    assert_eq!(m.group_desc().len(), 4);
    assert_eq!(m.group_features().types, 0xf);
}
