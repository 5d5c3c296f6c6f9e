//! `fin_timeout`, learn's FIN timeouts and `NXAST_LEARN2`'s `limit` and
//! `result_dst` through `process`, with cached plans.

use super::*;
use crate::openflow::nicira::{FieldRef, Learn, LearnSpec, NxAction, NxMatchField, Register};

const ETH_SRC: FieldRef = FieldRef(0x0000_0406);
const ETH_DST: FieldRef = FieldRef(0x0000_0206);
const IN_PORT: FieldRef = FieldRef(0x0000_0002);

/// A TCP frame from host `src` with these TCP flags (60 bytes, TCP
/// header at 34).
fn tcp(src: u8, flags: u8) -> Vec<u8> {
    let mut f = udp(src, 9, 1000, 80);
    f[23] = 6; // IP protocol: TCP (checksums are not checked)
    f[46] = 0x50; // data offset: 5 words
    f[47] = flags;
    f
}

const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;

fn fin_timeout(idle: u16, hard: u16) -> Action {
    Action::Nx(NxAction::FinTimeout { idle, hard })
}

/// The (idle, hard) timeouts of table `t`'s entry of priority `prio`.
fn timeouts(m: &FlowModule, t: u8, prio: u16) -> (u16, u16) {
    let s = m.flow_stats(&all_flows(), 0).expect("flow stats");
    let f = s
        .iter()
        .find(|f| f.table_id == t && f.priority == prio)
        .expect("the entry");
    (f.idle_timeout, f.hard_timeout)
}

fn tcp_flow(prio: u16, idle: u16, hard: u16, actions: Vec<Action>) -> FlowMod {
    FlowMod {
        idle_timeout: idle,
        hard_timeout: hard,
        flags: ff::SEND_FLOW_REM,
        ..flow(
            0,
            prio,
            vec![ip4(), OxmField::IpProto(6)],
            vec![apply(actions)],
        )
    }
}

#[test]
fn fin_or_rst_shortens_the_entry_timeouts_from_a_cached_plan() {
    let m = module();
    add(&m, tcp_flow(5, 60, 0, vec![fin_timeout(5, 30), out(2)]));
    add(&m, tcp_flow(4, 3, 0, vec![fin_timeout(10, 0), out(3)]));
    assert_eq!(
        run(&m, 1, vec![tcp(1, ACK), tcp(1, ACK)]),
        vec![R::Port(2); 2]
    );
    assert_eq!(timeouts(&m, 0, 5), (60, 0), "no FIN yet");
    let upcalls = counter(&m, "upcalls");
    // A FIN among other packets of the same plan: no new megaflow.
    assert_eq!(
        run(&m, 1, vec![tcp(1, ACK), tcp(1, FIN_ACK), tcp(1, ACK)]),
        vec![R::Port(2); 3]
    );
    assert_eq!(counter(&m, "upcalls"), upcalls, "FIN shares the plan");
    assert_eq!(timeouts(&m, 0, 5), (5, 30));
    // Never longer again: a later, longer fin_timeout changes nothing.
    // (The priority-4 entry already has a shorter idle timeout.)
    m.flow_mod(
        &FlowMod {
            command: FlowModCommand::Delete,
            table_id: 0,
            ..FlowMod::default()
        },
        0,
    )
    .unwrap();
    add(&m, tcp_flow(4, 3, 0, vec![fin_timeout(10, 0), out(3)]));
    assert_eq!(run(&m, 1, vec![tcp(1, RST)]), [R::Port(3)]);
    assert_eq!(timeouts(&m, 0, 4), (3, 0), "3 s is shorter than 10 s");
}

#[test]
fn the_shortened_idle_timeout_expires_the_entry() {
    let m = module();
    add(&m, tcp_flow(5, 60, 0, vec![fin_timeout(2, 0), out(2)]));
    run_at(&m, 1, vec![tcp(1, FIN_ACK)], SEC);
    assert!(m.expire(2 * SEC).is_empty(), "2 s have not passed");
    let gone = m.expire(3 * SEC + 1);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, why::IDLE_TIMEOUT);
    assert_eq!((gone[0].idle_timeout, gone[0].hard_timeout), (2, 0));
}

#[test]
fn fin_timeout_ignores_other_packets() {
    let m = module();
    add(
        &m,
        flow(0, 1, vec![], vec![apply(vec![fin_timeout(1, 1), out(2)])]),
    );
    // UDP, and a TCP frame too short for its flags.
    let mut short = tcp(1, FIN_ACK);
    short.truncate(40);
    let mut frames = vec![udp(1, 2, 7, 7)];
    frames[0][47] = FIN_ACK;
    assert_eq!(run(&m, 1, frames), [R::Port(2)]);
    assert_eq!(run(&m, 1, vec![short]), [R::Port(2)]);
    assert_eq!(timeouts(&m, 0, 1), (0, 0));
    // A whole TCP FIN does.
    assert_eq!(run(&m, 1, vec![tcp(1, FIN_ACK)]), [R::Port(2)]);
    assert_eq!(timeouts(&m, 0, 1), (1, 1));
}

/// `learn(table=1,[limit=L,result_dst=reg0[0],]cookie=7,
/// NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])`.
fn mac_learn(limit: u32, fin: (u16, u16)) -> Learn {
    Learn {
        cookie: 7,
        limit,
        result_dst: (limit != 0).then_some((FieldRef::reg(Register::Reg(0)), 0)),
        fin_idle_timeout: fin.0,
        fin_hard_timeout: fin.1,
        specs: vec![
            LearnSpec::match_field(48, ETH_SRC, ETH_DST),
            LearnSpec::output(16, IN_PORT),
        ],
        ..Learn::default()
    }
}

#[test]
fn learned_flows_get_the_fin_timeouts() {
    let m = module();
    let l = Action::Nx(NxAction::Learn(Box::new(mac_learn(0, (4, 8)))));
    add(&m, flow(0, 1, vec![], vec![apply(vec![l, out(9)])]));
    run(&m, 1, vec![tcp(1, ACK)]);
    let s = m.flow_stats(&all_flows(), 0).unwrap();
    let learned = s.iter().find(|f| f.table_id == 1).expect("learned");
    assert_eq!(
        learned.instructions,
        [apply(vec![fin_timeout(4, 8), out(1)])],
        "as Open vSwitch's learn_execute: fin_timeout first"
    );
}

#[test]
fn learn_limit_and_result() {
    let m = module();
    let l = Action::Nx(NxAction::Learn(Box::new(mac_learn(2, (0, 0)))));
    let resubmit = Action::Nx(NxAction::resubmit_table(2));
    add(&m, flow(0, 1, vec![], vec![apply(vec![l, resubmit])]));
    // Table 2 says what the learn did: reg0=1 to port 5, else port 6.
    let learned = Match::new()
        .with_registers(vec![NxMatchField {
            reg: Register::Reg(0),
            value: 1,
            mask: None,
        }])
        .unwrap();
    add(
        &m,
        FlowMod {
            match_: learned,
            ..flow(2, 1, vec![], vec![apply(vec![out(5)])])
        },
    );
    add(&m, flow(2, 0, vec![], vec![apply(vec![out(6)])]));
    let n_learned = || {
        m.flow_stats(&all_flows(), 0)
            .unwrap()
            .iter()
            .filter(|f| f.table_id == 1)
            .count()
    };
    assert_eq!(run(&m, 1, vec![udp(1, 9, 7, 7)]), [R::Port(5)]);
    assert_eq!(run(&m, 2, vec![udp(2, 9, 7, 7)]), [R::Port(5)]);
    assert_eq!(n_learned(), 2);
    // The table holds 2 flows with cookie 7: host 3 is not learned.
    assert_eq!(run(&m, 3, vec![udp(3, 9, 7, 7)]), [R::Port(6)]);
    assert_eq!(run(&m, 3, vec![udp(3, 9, 7, 7)]), [R::Port(6)]);
    assert_eq!(n_learned(), 2);
    // A flow already learned is refreshed, within the limit.
    assert_eq!(run(&m, 1, vec![udp(1, 9, 7, 7)]), [R::Port(5)]);
    // Room again (host 2's flow deleted): the cached plan of host 3 is
    // stale, and host 3 is learned.
    m.flow_mod(
        &FlowMod {
            command: FlowModCommand::DeleteStrict,
            table_id: 1,
            priority: 0x8000,
            match_: Match::from_fields(vec![OxmField::EthDst(Masked::exact(MacAddr::local(2)))])
                .unwrap(),
            ..FlowMod::default()
        },
        0,
    )
    .unwrap();
    assert_eq!(run(&m, 3, vec![udp(3, 9, 7, 7)]), [R::Port(5)]);
    assert_eq!(n_learned(), 2);
}

#[test]
fn learn_result_must_be_writable() {
    let m = module();
    let mut l = mac_learn(1, (0, 0));
    l.result_dst = Some((ETH_DST, 0));
    let bad = flow(
        0,
        1,
        vec![],
        vec![apply(vec![Action::Nx(NxAction::Learn(Box::new(
            l.clone(),
        )))])],
    );
    assert!(m.flow_mod(&bad, 0).is_ok(), "eth_dst can be set");
    l.result_dst = Some((FieldRef(0x0000_0602), 0));
    let bad = flow(
        0,
        2,
        vec![],
        vec![apply(vec![Action::Nx(NxAction::Learn(Box::new(l)))])],
    );
    assert_eq!(
        m.flow_mod(&bad, 0),
        Err(ErrorCode::BadAction(BadActionCode::BadSetArgument)),
        "eth_type cannot"
    );
}

#[test]
fn a_packet_out_through_the_tables_shortens_too() {
    let m = module();
    add(&m, tcp_flow(5, 60, 0, vec![fin_timeout(7, 0), out(2)]));
    let to_table = [Action::output(PortNo::TABLE)];
    m.packet_out(1, &tcp(1, ACK), &to_table, 0).unwrap();
    assert_eq!(timeouts(&m, 0, 5), (60, 0));
    // Its own action list has no entry: nothing to shorten.
    m.packet_out(1, &tcp(1, FIN_ACK), &[fin_timeout(1, 1), out(2)], 0)
        .unwrap();
    assert_eq!(timeouts(&m, 0, 5), (60, 0));
    m.packet_out(1, &tcp(1, FIN_ACK), &to_table, 0).unwrap();
    assert_eq!(timeouts(&m, 0, 5), (7, 0));
}
