//! `learn` and conjunctive matches through `process`: a MAC-learning
//! switch written with `learn`, refreshes and re-learning from cached
//! plans, the bounds, table edits that leave unrelated megaflows cached,
//! and Open vSwitch's conjunction example.

use super::*;
use crate::openflow::nicira::learn::BAD_CONJUNCTION;
use crate::openflow::nicira::{
    Conjunction, FieldRef, Learn, LearnDst, LearnSpec, LearnSrc, NxAction, NxMatchField, Register,
};

const ETH_SRC: FieldRef = FieldRef(0x0000_0406);
const ETH_DST: FieldRef = FieldRef(0x0000_0206);
const IN_PORT: FieldRef = FieldRef(0x0000_0002);

fn copy(n_bits: u16, from: FieldRef, to: FieldRef) -> LearnSpec {
    LearnSpec::match_field(n_bits, from, to)
}

fn output_from(field: FieldRef) -> LearnSpec {
    LearnSpec::output(16, field)
}

fn learn(l: Learn) -> Action {
    Action::Nx(NxAction::Learn(Box::new(l)))
}

fn resubmit(t: u8) -> Action {
    Action::Nx(NxAction::resubmit_table(t))
}

/// `learn(table=1,hard_timeout=H,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],
/// output:NXM_OF_IN_PORT[])`.
fn mac_learn(hard_timeout: u16) -> Learn {
    Learn {
        hard_timeout,
        specs: vec![copy(48, ETH_SRC, ETH_DST), output_from(IN_PORT)],
        ..Learn::default()
    }
}

/// Table 0 learns and resubmits to 1; table 1 floods what it does not know.
fn learning_switch(m: &FlowModule, hard_timeout: u16) {
    add(
        m,
        flow(
            0,
            1,
            vec![],
            vec![apply(vec![learn(mac_learn(hard_timeout)), resubmit(1)])],
        ),
    );
    add(m, flow(1, 0, vec![], vec![apply(vec![out(0xfffffffb)])]));
}

fn table(m: &FlowModule, t: u8) -> Vec<FlowStats> {
    m.flow_stats(
        &FlowStatsRequest {
            table_id: t,
            ..FlowStatsRequest::default()
        },
        0,
    )
    .expect("flow stats")
}

#[test]
fn a_mac_learning_switch_written_with_learn() {
    let m = module();
    learning_switch(&m, 60);
    // Host 1 speaks first: flooded, and its MAC learned into table 1.
    assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 7)]), [R::Flood]);
    let t1 = table(&m, 1);
    assert_eq!(t1.len(), 2);
    let learned = t1.iter().find(|f| f.priority == 0x8000).expect("learned");
    assert_eq!(learned.hard_timeout, 60);
    assert_eq!(
        learned.match_.fields(),
        [OxmField::EthDst(Masked::exact(MacAddr::local(1)))]
    );
    assert_eq!(learned.instructions, [apply(vec![out(1)])]);
    assert_eq!(counter(&m, "learned"), 1);
    // Host 2 answers: straight to port 1; and is learned in turn.
    assert_eq!(run(&m, 2, vec![udp(2, 1, 7, 7)]), [R::Port(1)]);
    assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 7)]), [R::Port(2)]);
    assert_eq!(counter(&m, "learned"), 2);
    assert_eq!(m.table_stats()[1].active_count, 3);
    // Again: the plans with learns are cached, and learn nothing new.
    let upcalls = counter(&m, "upcalls");
    for _ in 0..3 {
        assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 7); 4]), vec![R::Port(2); 4]);
        assert_eq!(run(&m, 2, vec![udp(2, 1, 7, 7)]), [R::Port(1)]);
    }
    assert_eq!(counter(&m, "upcalls"), upcalls);
    assert_eq!(counter(&m, "learned"), 2);
    assert_eq!(m.flow_count(), 4);
}

#[test]
fn learned_bits_are_in_the_megaflow() {
    let m = module();
    learning_switch(&m, 0);
    // Same port, same destination, two sources: two learned flows, so two
    // plans (the learn read eth_src).
    assert_eq!(run(&m, 1, vec![udp(1, 9, 7, 7)]), [R::Flood]);
    assert_eq!(run(&m, 1, vec![udp(3, 9, 7, 7)]), [R::Flood]);
    assert_eq!(counter(&m, "learned"), 2);
    let outs: Vec<_> = table(&m, 1)
        .into_iter()
        .filter(|f| f.priority == 0x8000)
        .map(|f| f.instructions)
        .collect();
    assert_eq!(outs, [vec![apply(vec![out(1)])], vec![apply(vec![out(1)])]]);
}

#[test]
fn cached_plans_refresh_and_relearn_their_flows() {
    let m = module();
    learning_switch(&m, 10);
    run_at(&m, 1, vec![udp(1, 2, 7, 7)], 0);
    // A packet at 5 s (a cache hit) restarts the hard timeout.
    run_at(&m, 1, vec![udp(1, 2, 7, 7)], 5 * SEC);
    assert!(m.expire(12 * SEC).is_empty());
    assert_eq!(table(&m, 1).len(), 2);
    m.expire(16 * SEC);
    assert_eq!(table(&m, 1).len(), 1, "expired 10 s after the refresh");
    // The next packet through the same cached plan learns it again.
    let upcalls = counter(&m, "upcalls");
    run_at(&m, 1, vec![udp(1, 2, 7, 7)], 17 * SEC);
    assert_eq!(counter(&m, "learned"), 2);
    assert_eq!(counter(&m, "upcalls"), upcalls, "the plan stayed cached");
    assert_eq!(table(&m, 1).len(), 2);
    // Deleted by a controller: learned again too.
    let del = FlowMod {
        command: FlowModCommand::Delete,
        table_id: 1,
        match_: Match::from_fields(vec![OxmField::EthDst(Masked::exact(MacAddr::local(1)))])
            .expect("match"),
        ..FlowMod::default()
    };
    m.flow_mod(&del, 18 * SEC).expect("delete");
    assert_eq!(table(&m, 1).len(), 1);
    run_at(&m, 1, vec![udp(1, 2, 7, 7)], 19 * SEC);
    assert_eq!(table(&m, 1).len(), 2);
    assert_eq!(counter(&m, "learned"), 3);
}

#[test]
fn a_full_table_skips_the_learn_and_still_forwards() {
    let m = FlowModule::new(FlowConfig {
        tables: 4,
        learn_max: 2,
        ..FlowConfig::default()
    });
    learning_switch(&m, 0);
    assert_eq!(run(&m, 1, vec![udp(1, 9, 7, 7)]), [R::Flood]);
    // Table 1 holds the miss entry and one learned flow: full.
    assert_eq!(run(&m, 2, vec![udp(2, 9, 7, 7)]), [R::Flood]);
    assert_eq!(counter(&m, "learned"), 1);
    assert_eq!(counter(&m, "learn_skipped"), 1);
    assert_eq!(table(&m, 1).len(), 2);
    // Still forwarded to what was learned.
    assert_eq!(run(&m, 2, vec![udp(2, 1, 7, 7)]), [R::Port(1)]);
}

#[test]
fn the_learn_rate_is_bounded() {
    let m = FlowModule::new(FlowConfig {
        tables: 4,
        learn_rate: 2,
        ..FlowConfig::default()
    });
    learning_switch(&m, 0);
    for src in 1..=5 {
        run_at(&m, 1, vec![udp(src, 99, 7, 7)], SEC);
    }
    assert_eq!(counter(&m, "learned"), 2);
    assert_eq!(counter(&m, "learn_skipped"), 3);
}

#[test]
fn learn_loads_immediates_and_delete_learned() {
    let m = module();
    let reg1 = FieldRef::reg(Register::Reg(1));
    let l = Learn {
        table_id: 2,
        priority: 9,
        cookie: 0x77,
        flags: crate::openflow::nicira::learn::LEARN_DELETE_LEARNED,
        specs: vec![
            LearnSpec::match_value(16, 0x800, FieldRef(0x0000_0602)),
            copy(32, FieldRef(0x0000_0e04), FieldRef(0x0000_1004)),
            LearnSpec {
                n_bits: 8,
                src: LearnSrc::Immediate(5),
                dst: LearnDst::Load {
                    field: reg1,
                    ofs: 8,
                },
            },
        ],
        ..Learn::default()
    };
    add(
        &m,
        flow(0, 1, vec![ip4()], vec![apply(vec![learn(l), out(3)])]),
    );
    assert_eq!(run(&m, 1, vec![udp(4, 2, 7, 7)]), [R::Port(3)]);
    let t2 = table(&m, 2);
    assert_eq!(t2.len(), 1);
    assert_eq!(t2[0].cookie, 0x77);
    assert_eq!(
        t2[0].match_.fields(),
        [
            OxmField::EthType(0x800),
            OxmField::Ipv4Dst(Masked::exact(Ipv4Addr::new(10, 0, 0, 4)))
        ]
    );
    assert_eq!(
        t2[0].instructions,
        [apply(vec![Action::Nx(NxAction::RegLoad {
            dst: reg1,
            ofs: 8,
            n_bits: 8,
            value: 5
        })])]
    );
    // Deleting the learning flow deletes what it learned.
    let del = FlowMod {
        command: FlowModCommand::Delete,
        table_id: 0,
        ..FlowMod::default()
    };
    m.flow_mod(&del, 0).expect("delete");
    assert!(table(&m, 2).is_empty());
    assert_eq!(m.flow_count(), 0);
}

#[test]
fn bad_learns_and_conjunctions_are_refused() {
    let m = module();
    let try_add = |f: FlowMod| m.flow_mod(&f, 0).map(|_| ());
    let ba = |c| Err(ErrorCode::BadAction(c));
    // A table that does not exist.
    let far = Learn {
        table_id: 99,
        ..mac_learn(0)
    };
    assert_eq!(
        try_add(flow(0, 1, vec![], vec![apply(vec![learn(far)])])),
        ba(BadActionCode::BadArgument)
    );
    // Matching ip_dst in the new flow needs dl_type=0x800 there.
    let noprereq = Learn {
        specs: vec![copy(32, FieldRef(0x0000_0e04), FieldRef(0x0000_1004))],
        ..Learn::default()
    };
    assert_eq!(
        try_add(flow(0, 1, vec![ip4()], vec![apply(vec![learn(noprereq)])])),
        Err(ErrorCode::BadMatch(
            crate::openflow::error::BadMatchCode::BadPrereq
        ))
    );
    // Reading ip_src needs an IP match in the learning flow.
    let from_ip = Learn {
        specs: vec![copy(
            32,
            FieldRef(0x0000_0e04),
            FieldRef::reg(Register::Reg(0)),
        )],
        ..Learn::default()
    };
    assert_eq!(
        try_add(flow(0, 1, vec![], vec![apply(vec![learn(from_ip)])])),
        Err(ErrorCode::BadMatch(
            crate::openflow::error::BadMatchCode::BadPrereq
        ))
    );
    // A conjunction beside an output, or in a bucket.
    let conj = Action::Nx(NxAction::Conjunction(Conjunction {
        id: 1,
        clause: 1,
        n_clauses: 2,
    }));
    assert_eq!(
        try_add(flow(0, 1, vec![], vec![apply(vec![conj.clone(), out(1)])])),
        Err(BAD_CONJUNCTION)
    );
    assert_eq!(
        m.group_mod(
            &group(GroupType::All, 1, vec![bucket(vec![conj.clone()])]),
            0
        ),
        Err(BAD_CONJUNCTION)
    );
    assert!(try_add(flow(0, 1, vec![], vec![apply(vec![conj])])).is_ok());
}

/// Only megaflows an edit can touch leave the cache.
#[test]
fn table_edits_drop_only_the_megaflows_they_touch() {
    let m = module();
    let to = |d: u32, p: u32| {
        flow(
            0,
            10,
            vec![OxmField::EthDst(Masked::exact(MacAddr::local(d)))],
            vec![apply(vec![out(p)])],
        )
    };
    add(&m, to(2, 2));
    add(&m, to(3, 3));
    assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 7)]), [R::Port(2)]);
    assert_eq!(run(&m, 1, vec![udp(1, 3, 7, 7)]), [R::Port(3)]);
    let upcalls = counter(&m, "upcalls");
    // A flow for another destination leaves both cached.
    add(&m, to(4, 4));
    assert_eq!(
        run(&m, 1, vec![udp(1, 2, 7, 7), udp(1, 3, 7, 7)]),
        [R::Port(2), R::Port(3)]
    );
    assert_eq!(counter(&m, "upcalls"), upcalls);
    // One that takes over destination 2 is seen at once, and costs only
    // its own megaflow.
    add(&m, to(2, 5));
    assert_eq!(
        run(&m, 1, vec![udp(1, 2, 7, 7), udp(1, 3, 7, 7)]),
        [R::Port(5), R::Port(3)]
    );
    assert_eq!(counter(&m, "upcalls"), upcalls + 1);
    // Its removal too.
    let del = FlowMod {
        command: FlowModCommand::DeleteStrict,
        priority: 10,
        match_: Match::from_fields(vec![OxmField::EthDst(Masked::exact(MacAddr::local(3)))])
            .expect("match"),
        ..FlowMod::default()
    };
    m.flow_mod(&del, 0).expect("delete");
    assert_eq!(
        run(&m, 1, vec![udp(1, 2, 7, 7), udp(1, 3, 7, 7)]),
        [R::Port(5), R::Drop]
    );
    assert_eq!(counter(&m, "upcalls"), upcalls + 2);
}

fn tcp(src: u8, dst: u8, dport: u16) -> Vec<u8> {
    let mut f = udp(src, dst, 1000, dport);
    f[23] = 6; // IP protocol: TCP (checksums are not checked)
    f[46] = 0x50; // TCP data offset: 5 words
    f
}

fn conj(id: u32, k: u8, n: u8) -> Action {
    Action::Nx(NxAction::Conjunction(Conjunction {
        id,
        clause: k,
        n_clauses: n,
    }))
}

/// `ovs-fields(7)`'s example, with tcp_dst as the second dimension:
/// `conj_id=1234 actions=output:2`, ip_src in {10.0.0.1, 10.0.0.4} (1/2),
/// tcp_dst in {80, 443} (2/2), and a priority-0 entry to port 3.
fn conj_table() -> FlowModule {
    let m = module();
    let conj_id = Match::new()
        .with_registers(vec![NxMatchField {
            reg: Register::ConjId,
            value: 1234,
            mask: None,
        }])
        .expect("conj_id match");
    add(
        &m,
        FlowMod {
            priority: 5,
            match_: conj_id,
            instructions: vec![apply(vec![out(2)])],
            ..FlowMod::default()
        },
    );
    for a in [1, 4] {
        let src = OxmField::Ipv4Src(Masked::exact(Ipv4Addr::new(10, 0, 0, a)));
        add(
            &m,
            flow(0, 10, vec![ip4(), src], vec![apply(vec![conj(1234, 1, 2)])]),
        );
    }
    for p in [80, 443] {
        let f = vec![ip4(), OxmField::IpProto(6), OxmField::TcpDst(p)];
        add(&m, flow(0, 10, f, vec![apply(vec![conj(1234, 2, 2)])]));
    }
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(3)])]));
    m
}

#[test]
fn conjunctive_matches_as_open_vswitch() {
    let m = conj_table();
    // Both dimensions: the conj_id flow.
    assert_eq!(run(&m, 1, vec![tcp(1, 9, 80)]), [R::Port(2)]);
    assert_eq!(run(&m, 1, vec![tcp(4, 9, 443)]), [R::Port(2)]);
    // One dimension only: the hard match below.
    assert_eq!(run(&m, 1, vec![tcp(1, 9, 22)]), [R::Port(3)]);
    assert_eq!(run(&m, 1, vec![tcp(2, 9, 80)]), [R::Port(3)]);
    // The same packets again, cached, and interleaved: exact.
    for _ in 0..2 {
        assert_eq!(
            run(
                &m,
                1,
                vec![tcp(1, 9, 80), tcp(1, 9, 22), tcp(4, 9, 443), tcp(2, 9, 443)]
            ),
            [R::Port(2), R::Port(3), R::Port(2), R::Port(3)]
        );
    }
    // Conjunctive entries get no counts; the conj_id entry does.
    let stats = table(&m, 0);
    let c = |p: u16| -> u64 {
        stats
            .iter()
            .filter(|f| f.priority == p)
            .map(|f| f.packet_count)
            .sum()
    };
    assert_eq!(c(10), 0);
    assert_eq!(c(5), 6);
    // A hard entry above the conjunction wins; one below does not.
    add(
        &m,
        flow(
            0,
            20,
            vec![ip4(), OxmField::IpProto(6), OxmField::TcpDst(443)],
            vec![apply(vec![out(4)])],
        ),
    );
    assert_eq!(
        run(&m, 1, vec![tcp(4, 9, 443), tcp(1, 9, 80)]),
        [R::Port(4), R::Port(2)]
    );
    // Without its conj_id entry a complete conjunction matches nothing.
    let del = FlowMod {
        command: FlowModCommand::DeleteStrict,
        priority: 5,
        match_: Match::new()
            .with_registers(vec![NxMatchField {
                reg: Register::ConjId,
                value: 1234,
                mask: None,
            }])
            .expect("conj_id match"),
        ..FlowMod::default()
    };
    m.flow_mod(&del, 0).expect("delete");
    assert_eq!(run(&m, 1, vec![tcp(1, 9, 80)]), [R::Port(3)]);
}

#[test]
fn the_learn_benchmark_preset() {
    let c = FlowConfig::parse("l2=2,learn=1,learn_churn=5,learn_rate=7,learn_max=9").unwrap();
    assert_eq!(c.learn, 1);
    assert!(FlowConfig::parse("learn=3").is_err());
    assert_eq!((c.learn_churn, c.learn_rate, c.learn_max), (5, 7, 9));
    assert!(FlowConfig::parse("learn=1,tables=1").is_err());
    assert!(FlowConfig::parse("learn=1,resubmits=3").is_err());
    assert!(FlowConfig::parse("learn_rate=0").is_err());
    let m = FlowModule::new(FlowConfig::parse("tables=2,l2=2,learn=1,learn_churn=1").unwrap());
    // Forwarded by the l2 entries in table 1, and the reply flow learned.
    assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 9)]), [R::Port(2)]);
    assert_eq!(run(&m, 1, vec![udp(1, 2, 8, 9)]), [R::Port(2)]);
    assert_eq!(counter(&m, "learned"), 2);
    assert_eq!(m.table_stats()[1].active_count, 3 + 2);
    // The reply of the first comes back on the learned flow (and learns
    // its own reply).
    assert_eq!(run(&m, 2, vec![udp(2, 1, 9, 7)]), [R::Port(1)]);
    assert_eq!(m.table_stats()[1].active_count, 3 + 3);
    // Churn deletes one learned flow a second; traffic learns it again.
    m.tick(SEC);
    assert_eq!(m.table_stats()[1].active_count, 3 + 2);
    run(&m, 1, vec![udp(1, 2, 7, 9), udp(1, 2, 8, 9)]);
    run(&m, 2, vec![udp(2, 1, 9, 7)]);
    assert_eq!(m.table_stats()[1].active_count, 3 + 3);
    assert_eq!(counter(&m, "learned"), 4);
    // Its baseline reads the same bits and learns nothing.
    let b = FlowModule::new(FlowConfig::parse("tables=2,l2=2,learn=2").unwrap());
    assert_eq!(
        run(&b, 1, vec![udp(1, 2, 7, 9), udp(1, 2, 8, 9)]),
        vec![R::Port(2); 2]
    );
    assert_eq!(counter(&b, "upcalls"), 2, "a megaflow per UDP source port");
    assert_eq!(counter(&b, "learned"), 0);
}

mod edits {
    use super::super::megaflows::{CachePkt, arb_cache_flow, cache_module, same_as_uncached};
    use super::*;
    use proptest::prelude::*;

    /// Up to `n` steps: an edit (by the first number) with a flow, then a
    /// batch from a port.
    fn arb_steps(
        flow: impl Strategy<Value = FlowMod>,
        n: usize,
    ) -> impl Strategy<Value = Vec<(u8, FlowMod, u16, Vec<CachePkt>)>> {
        let pkt = (any::<(u8, u8, u8, u8)>(), any::<(u8, u8, u8)>());
        proptest::collection::vec(
            (
                any::<u8>(),
                flow,
                1u16..4,
                proptest::collection::vec(pkt, 1..20),
            ),
            1..n,
        )
    }

    /// One of [`arb_cache_flow`]'s, or made a dimension of conjunction 1
    /// (or 2) of two, or the `conj_id` entry of one.
    fn arb_conj_flow() -> impl Strategy<Value = FlowMod> {
        (arb_cache_flow(), 0u8..8).prop_map(|(mut f, kind)| {
            let id = u32::from(kind % 2) + 1;
            match kind {
                0..=3 => {
                    f.instructions = vec![apply(vec![conj(id, kind / 2 + 1, 2)])];
                    f.priority = 10;
                }
                4 | 5 => {
                    f.priority = 5;
                    let fields = f.match_.clone().into_fields();
                    f.match_ = Match::from_fields(fields)
                        .and_then(|m| {
                            m.with_registers(vec![NxMatchField {
                                reg: Register::ConjId,
                                value: u64::from(id),
                                mask: None,
                            }])
                        })
                        .expect("a match with conj_id");
                }
                _ => {}
            }
            f
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Flows added and deleted one at a time between batches drop only
        /// the megaflows they touch: a module whose caches persist gives
        /// every packet what one with empty caches gives it.
        #[test]
        fn cached_lookups_follow_table_edits(
            flows in proptest::collection::vec(arb_cache_flow(), 1..20),
            steps in arb_steps(arb_cache_flow(), 10),
        ) {
            let (cached, bare) = (cache_module(&flows), cache_module(&flows));
            for (op, f, in_port, pkts) in steps {
                let edit = match op % 3 {
                    0 => Some(f),
                    1 => Some(FlowMod {
                        command: FlowModCommand::DeleteStrict,
                        ..flows[usize::from(op) % flows.len()].clone()
                    }),
                    _ => None,
                };
                if let Some(e) = edit {
                    prop_assert_eq!(cached.flow_mod(&e, 0).is_ok(), bare.flow_mod(&e, 0).is_ok());
                }
                same_as_uncached(&cached, &bare, in_port, &pkts)?;
            }
        }

        /// The same with conjunctive entries and `conj_id` entries among
        /// the flows and the edits.
        #[test]
        fn conjunctions_are_exact_under_the_caches(
            flows in proptest::collection::vec(arb_conj_flow(), 4..32),
            steps in arb_steps(arb_conj_flow(), 8),
        ) {
            let (cached, bare) = (cache_module(&flows), cache_module(&flows));
            for (op, f, in_port, pkts) in steps {
                if op % 2 == 0 {
                    prop_assert_eq!(cached.flow_mod(&f, 0).is_ok(), bare.flow_mod(&f, 0).is_ok());
                }
                same_as_uncached(&cached, &bare, in_port, &pkts)?;
            }
        }
    }
}

/// A table looked up with a key an action changed (here the metadata)
/// cannot be judged by the packet's own bits: any edit of it drops the
/// megaflow.
#[test]
fn edits_of_tables_reached_with_rewritten_keys_drop_the_megaflow() {
    let m = module();
    let md = |v: u64| OxmField::Metadata(Masked::exact(v));
    add(
        &m,
        flow(
            0,
            1,
            vec![],
            vec![
                Instruction::WriteMetadata {
                    metadata: 5,
                    mask: u64::MAX,
                },
                Instruction::GotoTable(1),
            ],
        ),
    );
    add(&m, flow(1, 0, vec![], vec![apply(vec![out(2)])]));
    add(&m, flow(1, 9, vec![md(7)], vec![apply(vec![out(4)])]));
    assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 7)]), [R::Port(2)]);
    add(&m, flow(1, 9, vec![md(5)], vec![apply(vec![out(3)])]));
    assert_eq!(run(&m, 1, vec![udp(1, 2, 7, 7)]), [R::Port(3)]);
}
