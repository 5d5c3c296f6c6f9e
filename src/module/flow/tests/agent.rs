//! The agent's API: flow and group mods, statistics, timeouts, and
//! what the data path makes of changes.

use super::*;

#[test]
fn group_mod_errors_chains_and_deletes() {
    let m = module();
    let e = |c| Err(ErrorCode::GroupModFailed(c));
    m.group_mod(&group(GroupType::All, 1, vec![bucket(vec![out(2)])]), 0)
        .unwrap();
    assert_eq!(
        m.group_mod(&group(GroupType::All, 1, vec![]), 0),
        e(GroupModFailedCode::GroupExists)
    );
    assert_eq!(
        m.group_mod(&group(GroupType::Indirect, 2, vec![]), 0),
        e(GroupModFailedCode::InvalidGroup)
    );
    assert_eq!(
        m.group_mod(
            &group(GroupType::FastFailover, 2, vec![bucket(vec![out(2)])]),
            0
        ),
        e(GroupModFailedCode::BadWatch)
    );
    let mut modify = group(GroupType::All, 7, vec![]);
    modify.command = GroupModCommand::Modify;
    assert_eq!(m.group_mod(&modify, 0), e(GroupModFailedCode::UnknownGroup));
    // Chaining: 2 -> 1; then 1 -> 2 would loop.
    m.group_mod(
        &group(GroupType::All, 2, vec![bucket(vec![Action::Group(1)])]),
        0,
    )
    .unwrap();
    let mut loop_ = group(GroupType::All, 1, vec![bucket(vec![Action::Group(2)])]);
    loop_.command = GroupModCommand::Modify;
    assert_eq!(m.group_mod(&loop_, 0), e(GroupModFailedCode::Loop));
    let mut del = group(GroupType::All, 1, vec![]);
    del.command = GroupModCommand::Delete;
    assert_eq!(m.group_mod(&del, 0), e(GroupModFailedCode::ChainedGroup));
    // Deleting group 2 removes the flows that use it.
    let mut f = flow(0, 1, vec![], vec![apply(vec![Action::Group(2)])]);
    f.flags = ff::SEND_FLOW_REM;
    add(&m, f);
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(2)]);
    del.group_id = 2;
    m.group_mod(&del, 5 * SEC).unwrap();
    assert_eq!(m.flow_count(), 0);
    let r = m.take_removed();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].reason, r[0].packet_count, r[0].duration_sec),
        (why::GROUP_DELETE, 1, 5)
    );
    del.group_id = group_id::ALL;
    m.group_mod(&del, 0).unwrap();
    assert!(m.group_desc().is_empty());
}

#[test]
fn counters_and_flow_stats_echo_entries() {
    let m = module();
    let mut f = flow(
        0,
        33,
        vec![ip4(), OxmField::IpProto(17), OxmField::UdpDst(2)],
        vec![apply(vec![out(2)])],
    );
    f.cookie = 0xabc;
    f.idle_timeout = 10;
    f.hard_timeout = 20;
    f.flags = ff::SEND_FLOW_REM;
    add(&m, f.clone());
    run_at(&m, 1, vec![udp(1, 2, 1, 2); 3], SEC);
    run_at(&m, 1, vec![udp(1, 2, 1, 2), udp(1, 2, 1, 3)], SEC);
    let s = m.flow_stats(&all_flows(), 3 * SEC + 5).unwrap();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!((s.packet_count, s.byte_count), (4, 240));
    assert_eq!((s.duration_sec, s.duration_nsec), (3, 5));
    assert_eq!(
        (
            s.priority,
            s.cookie,
            s.idle_timeout,
            s.hard_timeout,
            s.flags
        ),
        (33, 0xabc, 10, 20, ff::SEND_FLOW_REM)
    );
    assert_eq!((&s.match_, &s.instructions), (&f.match_, &f.instructions));
    let a = m.aggregate_stats(&all_flows()).unwrap();
    assert_eq!((a.packet_count, a.byte_count, a.flow_count), (4, 240, 1));
    let bad = FlowStatsRequest {
        table_id: 9,
        ..all_flows()
    };
    assert_eq!(
        m.flow_stats(&bad, 0),
        Err(ErrorCode::BadRequest(BadRequestCode::BadTableId))
    );
    // Filters: cookie, out_port, match.
    let by_cookie = |c, mask| FlowStatsRequest {
        cookie: c,
        cookie_mask: mask,
        ..all_flows()
    };
    assert_eq!(m.flow_stats(&by_cookie(0xa00, 0xf00), 0).unwrap().len(), 1);
    assert_eq!(m.flow_stats(&by_cookie(0xb00, 0xf00), 0).unwrap().len(), 0);
    let by_port = |p| FlowStatsRequest {
        out_port: PortNo(p),
        ..all_flows()
    };
    assert_eq!(m.flow_stats(&by_port(2), 0).unwrap().len(), 1);
    assert_eq!(m.flow_stats(&by_port(3), 0).unwrap().len(), 0);
    let by_match = |fields| FlowStatsRequest {
        match_: Match::from_fields(fields).unwrap(),
        ..all_flows()
    };
    assert_eq!(m.flow_stats(&by_match(vec![ip4()]), 0).unwrap().len(), 1);
    assert_eq!(
        m.flow_stats(&by_match(vec![OxmField::EthType(0x86dd)]), 0)
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn timeouts_and_removal_reasons() {
    let m = module();
    let mk = |port: u32, idle, hard, flags| {
        let mut f = flow(
            0,
            1,
            vec![OxmField::InPort(PortNo(port))],
            vec![apply(vec![out(9)])],
        );
        (f.idle_timeout, f.hard_timeout, f.flags) = (idle, hard, flags);
        f
    };
    m.flow_mod(&mk(1, 10, 0, ff::SEND_FLOW_REM), 0).unwrap();
    m.flow_mod(&mk(2, 0, 15, ff::SEND_FLOW_REM), 0).unwrap();
    m.flow_mod(&mk(3, 10, 0, 0), 0).unwrap();
    m.flow_mod(&mk(4, 0, 0, ff::SEND_FLOW_REM), 0).unwrap();
    // Traffic keeps flow 1 alive; flow 3 idles out silently.
    run_at(&m, 1, vec![udp(1, 2, 1, 1)], 8 * SEC);
    assert!(m.expire(9 * SEC).is_empty());
    m.tick(10 * SEC);
    assert_eq!(m.flow_count(), 3);
    assert!(m.take_removed().is_empty());
    let r = m.expire(15 * SEC);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].reason, r[0].hard_timeout, r[0].duration_sec),
        (why::HARD_TIMEOUT, 15, 15)
    );
    m.tick(18 * SEC);
    let r = m.take_removed();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].reason, r[0].packet_count, r[0].byte_count),
        (why::IDLE_TIMEOUT, 1, 60)
    );
    // Deletion reports DELETE.
    let del = FlowMod {
        command: FlowModCommand::Delete,
        table_id: crate::openflow::table_id::ALL,
        ..FlowMod::default()
    };
    let r = m.flow_mod(&del, 20 * SEC).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].reason, r[0].match_.in_port()),
        (why::DELETE, Some(PortNo(4)))
    );
    assert_eq!(m.flow_count(), 0);
}

#[test]
fn add_replaces_identical_entries_and_checks_overlap() {
    let m = module();
    let base = flow(0, 5, vec![ip4()], vec![apply(vec![out(2)])]);
    add(&m, base.clone());
    run(&m, 1, vec![udp(1, 2, 1, 1); 2]);
    // Same match and priority: replaced, counters kept.
    add(&m, flow(0, 5, vec![ip4()], vec![apply(vec![out(3)])]));
    assert_eq!(m.flow_count(), 1);
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(3)]);
    assert_eq!(m.flow_stats(&all_flows(), 0).unwrap()[0].packet_count, 3);
    let mut reset = base.clone();
    reset.flags = ff::RESET_COUNTS;
    add(&m, reset);
    assert_eq!(m.flow_stats(&all_flows(), 0).unwrap()[0].packet_count, 0);
    // Overlap: same priority, a packet could match both.
    let mut o = flow(0, 5, vec![OxmField::InPort(PortNo(1))], vec![]);
    o.flags = ff::CHECK_OVERLAP;
    assert_eq!(
        m.flow_mod(&o, 0),
        Err(ErrorCode::FlowModFailed(FlowModFailedCode::Overlap))
    );
    o.match_ = Match::from_fields(vec![OxmField::EthType(0x0806)]).unwrap();
    assert_eq!(m.flow_mod(&o, 0), Ok(vec![]));
    o.priority = 6;
    o.match_ = Match::new();
    assert_eq!(m.flow_mod(&o, 0), Ok(vec![]));
}

#[test]
fn modify_and_delete_select_entries() {
    let m = module();
    let on = |p: u32, prio, cookie, port| {
        let mut f = flow(
            0,
            prio,
            vec![OxmField::InPort(PortNo(p)), ip4()],
            vec![apply(vec![out(port)])],
        );
        f.cookie = cookie;
        f
    };
    add(&m, on(1, 10, 0x11, 5));
    add(&m, on(2, 10, 0x22, 5));
    add(&m, on(3, 20, 0x21, 6));
    add(&m, flow(1, 10, vec![], vec![apply(vec![out(5)])]));
    // Non-strict modify of everything with cookie 0x2?: ports 2 and 3.
    let modify = FlowMod {
        command: FlowModCommand::Modify,
        cookie: 0x20,
        cookie_mask: 0xf0,
        instructions: vec![apply(vec![out(9)])],
        ..FlowMod::default()
    };
    m.flow_mod(&modify, 0).unwrap();
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(5)]);
    assert_eq!(run(&m, 2, vec![udp(1, 2, 1, 1)]), [R::Port(9)]);
    assert_eq!(run(&m, 3, vec![udp(1, 2, 1, 1)]), [R::Port(9)]);
    // Strict modify needs the exact match and priority.
    let mut strict = on(1, 11, 0, 7);
    strict.command = FlowModCommand::ModifyStrict;
    m.flow_mod(&strict, 0).unwrap();
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(5)]);
    strict.priority = 10;
    m.flow_mod(&strict, 0).unwrap();
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(7)]);
    // Delete by out_port across all tables: the table-1 entry and port 1's are left.
    let del = FlowMod {
        command: FlowModCommand::Delete,
        table_id: crate::openflow::table_id::ALL,
        out_port: PortNo(9),
        ..FlowMod::default()
    };
    m.flow_mod(&del, 0).unwrap();
    assert_eq!(m.flow_count(), 2);
    let mut ds = on(1, 10, 0, 0);
    ds.command = FlowModCommand::DeleteStrict;
    ds.priority = 9;
    m.flow_mod(&ds, 0).unwrap();
    assert_eq!(m.flow_count(), 2);
    ds.priority = 10;
    m.flow_mod(&ds, 0).unwrap();
    assert_eq!(m.flow_count(), 1);
}

#[test]
fn the_next_batch_follows_every_change() {
    let m = module();
    add(&m, flow(0, 1, vec![], vec![apply(vec![out(2)])]));
    let frames = || vec![udp(1, 2, 1, 1); 4];
    assert_eq!(run(&m, 1, frames()), vec![R::Port(2); 4]);
    assert_eq!(run(&m, 1, frames()), vec![R::Port(2); 4]);
    let g0 = m.generation();
    add(&m, flow(0, 1, vec![], vec![apply(vec![out(3)])]));
    assert!(m.generation() > g0);
    assert_eq!(run(&m, 1, frames()), vec![R::Port(3); 4]);
    add(&m, flow(0, 2, vec![OxmField::InPort(PortNo(1))], vec![]));
    assert_eq!(run(&m, 1, frames()), vec![R::Drop; 4]);
    m.flow_mod(
        &FlowMod {
            command: FlowModCommand::Delete,
            ..FlowMod::default()
        },
        0,
    )
    .unwrap();
    assert_eq!(run(&m, 1, frames()), vec![R::Drop; 4]);
    assert_eq!(counter(&m, "memo_hits"), 15);
    assert!(counter(&m, "upcalls") >= 4);
}

#[test]
fn presets_and_config() {
    assert_eq!(FlowConfig::parse("").unwrap(), FlowConfig::default());
    let c = FlowConfig::parse("tables=4,l2=3,filler=100").unwrap();
    assert_eq!((c.tables, c.l2, c.filler), (4, 3, 100));
    for bad in [
        "tables=0",
        "tables=256",
        "l2=4096",
        "x=1",
        "tables",
        "normal=2",
        "mac_max=0",
        "mac_aging=0",
        "mac_size=3",
    ] {
        assert!(FlowConfig::parse(bad).is_err(), "{bad}");
    }
    let n = FlowConfig::parse("normal=1,mac_max=100,mac_aging=5").unwrap();
    assert!(n.normal);
    assert_eq!(
        (n.macs.max_entries, n.macs.port_max, n.macs.aging_secs),
        (100, 50, 5)
    );
    let n = FlowConfig::parse("mac_port_max=10").unwrap();
    assert_eq!((n.macs.max_entries, n.macs.port_max), (8192, 10));
    let nm = FlowModule::new(FlowConfig::parse("normal=1").unwrap());
    assert_eq!(nm.flow_count(), 1, "priority=0,actions=NORMAL");
    let m = FlowModule::new(c);
    assert_eq!(m.flow_count(), 104);
    assert_eq!(
        run(&m, 1, vec![udp(1, 2, 1024, 1024), udp(1, 3, 1024, 1024)]),
        [R::Port(2), R::Port(3)]
    );
    let mut b = udp(1, 2, 9, 9);
    b[0..6].fill(0xff);
    assert_eq!(run(&m, 1, vec![b]), [R::Flood]);
    assert_eq!(
        crate::module::build("flow:tables=2").unwrap().name(),
        "flow"
    );
}
