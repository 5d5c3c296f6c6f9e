//! Nicira extensions through `process`: registers set by one table and
//! matched by another via `resubmit`, the caches on the second arrival,
//! the resubmit limit, `move` and `output:reg`.

use super::*;
use crate::openflow::nicira::{FieldRef, NxAction, NxMatchField, Register};

fn reg_flow(table: u8, priority: u16, reg: Register, value: u64, acts: Vec<Action>) -> FlowMod {
    FlowMod {
        table_id: table,
        priority,
        match_: Match::new()
            .with_registers(vec![NxMatchField {
                reg,
                value,
                mask: None,
            }])
            .expect("valid register match"),
        instructions: vec![apply(acts)],
        ..FlowMod::default()
    }
}

fn load(reg: Register, value: u64) -> Action {
    Action::Nx(NxAction::RegLoad {
        dst: FieldRef::reg(reg),
        ofs: 0,
        n_bits: reg.bits(),
        value,
    })
}

/// `move:SRC[0..n_bits]->DST[0..n_bits]`.
fn mov(src: FieldRef, dst: FieldRef, n_bits: u16) -> Action {
    Action::Nx(NxAction::RegMove {
        src,
        dst,
        src_ofs: 0,
        dst_ofs: 0,
        n_bits,
    })
}

/// One table-0 entry matching everything, with these actions.
fn add_catch_all(m: &FlowModule, acts: Vec<Action>) {
    add(m, flow(0, 1, vec![], vec![apply(acts)]));
}

fn resubmit(table: u8) -> Action {
    Action::Nx(NxAction::resubmit_table(table))
}

const R0: Register = Register::Reg(0);

/// `table=0,in_port=1,actions=load:2->reg0,resubmit(,1)`,
/// `table=1,reg0=2,actions=output:2`, `table=1,reg0=3,actions=output:3`.
fn two_tables() -> FlowModule {
    let m = module();
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(1))],
            vec![apply(vec![load(R0, 2), resubmit(1)])],
        ),
    );
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(4))],
            vec![apply(vec![load(R0, 3), resubmit(1)])],
        ),
    );
    add(&m, reg_flow(1, 5, R0, 2, vec![out(2)]));
    add(&m, reg_flow(1, 5, R0, 3, vec![out(3)]));
    m
}

#[test]
fn load_resubmit_and_match_on_a_register() {
    let m = two_tables();
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(2)]);
    assert_eq!(run(&m, 4, vec![udp(1, 2, 1, 1)]), [R::Port(3)]);
    // Another port: no entry in table 0.
    assert_eq!(run(&m, 5, vec![udp(1, 2, 1, 1)]), [R::Drop]);
    // Two rules differing only in their registers are two flows.
    let stats = m
        .flow_stats(
            &FlowStatsRequest {
                table_id: 1,
                ..FlowStatsRequest::default()
            },
            0,
        )
        .expect("stats");
    assert_eq!(stats.len(), 2);
}

#[test]
fn second_arrival_hits_the_megaflow() {
    let m = two_tables();
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(2)]);
    assert_eq!(counter(&m, "upcalls"), 1);
    // Other addresses and ports: table 0 only looked at in_port, and the
    // register is a function of that, so one megaflow serves them all.
    for k in 0..20u8 {
        assert_eq!(run(&m, 1, vec![udp(k, 9, 1000, 2000)]), [R::Port(2)]);
    }
    assert_eq!(counter(&m, "upcalls"), 1);
    assert!(
        counter(&m, "megaflow_hits") + counter(&m, "emc_hits") + counter(&m, "memo_hits") >= 20
    );
}

#[test]
fn resubmit_loops_are_bounded() {
    let m = module();
    // Table 0 resubmits to itself forever.
    add(
        &m,
        flow(0, 1, vec![], vec![apply(vec![out(2), resubmit(0)])]),
    );
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Drop]);
    assert_eq!(counter(&m, "resubmit_drops"), 1);
    // A fan-out (every entry resubmits twice to the next table: 254
    // resubmits, 8 deep) stays within both limits.
    let m = module();
    for t in 0..7u8 {
        add(
            &m,
            flow(
                t,
                1,
                vec![],
                vec![apply(vec![resubmit(t + 1), resubmit(t + 1)])],
            ),
        );
    }
    add(&m, flow(7, 1, vec![], vec![apply(vec![out(2)])]));
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(2)]);
}

#[test]
fn resubmit_with_an_in_port_and_a_missing_entry() {
    let m = module();
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(1))],
            vec![apply(vec![
                Action::Nx(NxAction::Resubmit {
                    in_port: 7,
                    table: None,
                    with_table: false,
                }),
                // Table 3 is empty: nothing happens, the list goes on.
                resubmit(3),
                out(4),
            ])],
        ),
    );
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(7))],
            vec![apply(vec![out(2)])],
        ),
    );
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Ports(vec![2, 4])]);
}

#[test]
fn move_and_output_reg() {
    let m = module();
    // Copy the low 16 bits of the destination MAC (00:..:00:02) into reg1
    // and output to the port they name.
    add(
        &m,
        flow(
            0,
            1,
            vec![],
            vec![apply(vec![
                mov(FieldRef(0x0000_0206), FieldRef::reg(Register::Reg(1)), 16),
                Action::Nx(NxAction::OutputReg {
                    src: FieldRef::reg(Register::Reg(1)),
                    ofs: 0,
                    n_bits: 16,
                    max_len: 0,
                    v2: false,
                }),
            ])],
        ),
    );
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(2)]);
    assert_eq!(run(&m, 1, vec![udp(1, 3, 1, 1)]), [R::Port(3)]);
    // The MAC bits read are in the megaflow: two megaflows, not one.
    assert_eq!(counter(&m, "upcalls"), 2);
    assert_eq!(run(&m, 1, vec![udp(5, 3, 9, 9)]), [R::Port(3)]);
    assert_eq!(counter(&m, "upcalls"), 2);
}

#[test]
fn loads_and_moves_rewrite_header_fields() {
    let m = module();
    // eth_dst := eth_src; the low byte of ipv4_dst := 0x63.
    add(
        &m,
        flow(
            0,
            1,
            vec![],
            vec![apply(vec![
                mov(FieldRef(0x0000_0406), FieldRef(0x0000_0206), 48),
                Action::Nx(NxAction::RegLoad {
                    dst: FieldRef(0x0000_1004),
                    ofs: 0,
                    n_bits: 8,
                    value: 0x63,
                }),
                out(2),
            ])],
        ),
    );
    let f = udp(1, 2, 1, 1);
    let (r, frames) = run_at(&m, 1, vec![f.clone()], 0);
    assert_eq!(r, [R::Port(2)]);
    let g = &frames[0];
    assert_eq!(g[0..6], f[6..12], "eth_dst is the source");
    assert_eq!(g[30..34], [10, 0, 1, 0x63]);
    // A write to a field this pipeline cannot set (NXM_NX_IPV6_SRC).
    let bad = flow(
        0,
        1,
        vec![],
        vec![apply(vec![Action::Nx(NxAction::RegLoad {
            dst: FieldRef(0x0001_3410),
            ofs: 0,
            n_bits: 8,
            value: 1,
        })])],
    );
    assert_eq!(
        m.flow_mod(&bad, 0).err(),
        Some(ErrorCode::BadAction(BadActionCode::BadArgument))
    );
}

#[test]
fn nicira_actions_in_write_actions_are_refused() {
    let m = module();
    let f = flow(
        0,
        1,
        vec![],
        vec![Instruction::WriteActions(vec![resubmit(1)])],
    );
    assert_eq!(
        m.flow_mod(&f, 0).err(),
        Some(ErrorCode::BadAction(BadActionCode::UnsupportedOrder))
    );
}

#[test]
fn xregs_alias_regs_and_stats_filter_on_registers() {
    let m = module();
    // xreg1 is reg2 (high) and reg3 (low).
    add_catch_all(
        &m,
        vec![load(Register::XReg(1), 0x0000_0007_0000_0002), resubmit(1)],
    );
    add(&m, reg_flow(1, 9, Register::Reg(2), 7, vec![resubmit(2)]));
    add(&m, reg_flow(2, 9, Register::Reg(3), 2, vec![out(3)]));
    add(&m, reg_flow(2, 5, Register::Reg(3), 9, vec![out(4)]));
    assert_eq!(run(&m, 1, vec![udp(1, 2, 1, 1)]), [R::Port(3)]);
    // A stats request on reg3=2 selects the one flow with it.
    let req = FlowStatsRequest {
        table_id: 2,
        match_: Match::new()
            .with_registers(vec![NxMatchField {
                reg: Register::Reg(3),
                value: 2,
                mask: None,
            }])
            .expect("valid"),
        ..FlowStatsRequest::default()
    };
    let stats = m.flow_stats(&req, 0).expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].priority, 9);
}

#[test]
fn packet_ins_carry_the_registers_at_the_controller_output() {
    let m = module();
    // reg2=5, reg3 = the low 16 bits of the source MAC, then the
    // controller; a later load is not seen by it.
    add_catch_all(
        &m,
        vec![
            load(Register::Reg(2), 5),
            mov(FieldRef(0x0000_0406), FieldRef::reg(Register::Reg(3)), 16),
            Action::output(PortNo::CONTROLLER),
            load(Register::Reg(2), 7),
        ],
    );
    let regs_of = |f: Vec<u8>| {
        let (v, _, c) = run_full(&m, 1, vec![f], 0);
        assert_eq!(v, [R::Controller]);
        c[0].1.expect("interned metadata").regs
    };
    let src_low = |f: &[u8]| u32::from(u16::from_be_bytes([f[10], f[11]]));
    let (a, b) = (udp(1, 2, 1, 1), udp(7, 2, 1, 1));
    let ra = regs_of(a.clone());
    assert_eq!((ra[2], ra[3]), (5, src_low(&a)));
    assert!(
        ra.iter()
            .enumerate()
            .all(|(i, &r)| r == 0 || i == 2 || i == 3)
    );
    // Another source: another megaflow, its own registers.
    let rb = regs_of(b.clone());
    assert_eq!((rb[2], rb[3]), (5, src_low(&b)));
    assert_ne!(ra[3], rb[3]);
    // The first again: a cache hit with the same registers.
    let upcalls = counter(&m, "upcalls");
    assert_eq!(regs_of(a), ra);
    assert_eq!(counter(&m, "upcalls"), upcalls);

    // A packet-out's own actions carry theirs too.
    let got = m
        .packet_out(
            1,
            &udp(1, 2, 1, 1),
            &[
                load(Register::XReg(0), 0x9_0000_0001),
                Action::output(PortNo::CONTROLLER),
            ],
            0,
        )
        .expect("packet-out runs");
    let [Output::Controller { meta, .. }] = &got[..] else {
        panic!("{got:?}");
    };
    assert_eq!(meta.regs[..2], [9, 1]);
}

mod prop {
    //! Megaflow soundness with registers: for pipelines of loads, moves
    //! from header bits, register matches, resubmits and `output:reg`,
    //! every key that agrees with a packet's key on the compiled mask
    //! compiles to the same plan.

    use super::super::super::key::{self, Key};
    use super::*;
    use proptest::prelude::*;

    fn reg_of(v: u8) -> Register {
        if v.is_multiple_of(4) {
            Register::XReg(0)
        } else {
            Register::Reg(v % 3)
        }
    }

    fn nx(sel: u8, v: u8) -> Action {
        match sel % 7 {
            0 => load(reg_of(v), u64::from(v % 3)),
            1 => Action::Nx(NxAction::RegMove {
                // Two low bits of the IPv4 source, or of the source MAC.
                src: FieldRef(if v.is_multiple_of(2) {
                    0x0000_0e04
                } else {
                    0x0000_0406
                }),
                dst: FieldRef::reg(reg_of(v / 2)),
                src_ofs: 0,
                dst_ofs: 0,
                n_bits: 2,
            }),
            2 => resubmit(v % 3),
            3 => Action::Nx(NxAction::OutputReg {
                src: FieldRef::reg(reg_of(v)),
                ofs: 0,
                n_bits: 3,
                max_len: 0,
                v2: false,
            }),
            4 => Action::Nx(NxAction::Resubmit {
                in_port: u16::from(v % 3) + 1,
                table: Some(v % 3),
                with_table: true,
            }),
            5 => Action::output(PortNo::CONTROLLER),
            _ => out(u32::from(v % 4) + 1),
        }
    }

    prop_compose! {
        fn arb_flow()(table in 0u8..3, prio in 0u16..4, inp in any::<Option<u8>>(),
                      regs in proptest::collection::vec((any::<u8>(), 0u64..3, any::<bool>()), 0..2),
                      acts in proptest::collection::vec(any::<(u8, u8)>(), 0..4)) -> FlowMod {
            let mut rs: Vec<NxMatchField> = Vec::new();
            for (r, v, masked) in regs {
                let reg = reg_of(r);
                if !rs.iter().any(|x| x.reg == reg) {
                    let value = if masked { v & 1 } else { v };
                    rs.push(NxMatchField { reg, value, mask: masked.then_some(1) });
                }
            }
            let fields = inp.map(|p| vec![OxmField::InPort(PortNo(u32::from(p % 3) + 1))]).unwrap_or_default();
            let m = Match::from_fields(fields).and_then(|m| m.with_registers(rs)).unwrap_or_default();
            FlowMod {
                table_id: table,
                priority: prio,
                match_: m,
                instructions: vec![apply(acts.iter().map(|&(s, v)| nx(s, v)).collect())],
                ..FlowMod::default()
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn register_pipelines_compile_sound_masks(
            flows in proptest::collection::vec(arb_flow(), 1..20),
            pkts in proptest::collection::vec((any::<(u8, u8)>(), any::<(u8, u8)>(), 1u16..4, 1u16..4), 1..16),
        ) {
            let m = FlowModule::new(FlowConfig { tables: 3, ..FlowConfig::default() });
            for f in &flows {
                let _ = m.flow_mod(f, 0);
            }
            let p = m.read();
            for (a, b, pa, pb) in pkts {
                let fa = udp(a.0 % 4, a.1 % 4, 1, 1);
                let fb = udp(b.0 % 4, b.1 % 4, 1, 1);
                let ka = key::parse(&fa, u32::from(pa)).expect("parses").key;
                let kb = key::parse(&fb, u32::from(pb)).expect("parses").key;
                let (plan, mask) = p.compile(&ka);
                let mut mixed = ka.and(&mask);
                mixed.or_assign(&kb.and(&Key(mask.0.map(|w| !w))));
                let (plan2, _) = p.compile(&mixed);
                prop_assert_eq!(&plan.verdict, &plan2.verdict);
                prop_assert_eq!(&plan.ops, &plan2.ops);
                prop_assert_eq!(&plan.tables, &plan2.tables);
                prop_assert_eq!(plan.events, plan2.events);
                prop_assert_eq!(plan.flows.len(), plan2.flows.len());
                // Packet-in metadata, registers included.
                prop_assert_eq!(plan.controller, plan2.controller);
            }
        }
    }
}
