//! Tests of the whole module: pipeline semantics through `process`
//! ([`pipeline`]), the agent's API ([`agent`]), and the soundness of
//! compiled megaflows ([`megaflows`]).

use std::net::Ipv4Addr;

use super::*;
use crate::openflow::error::{
    BadActionCode, BadInstructionCode, BadRequestCode, FlowModFailedCode, GroupModFailedCode,
};
use crate::openflow::flow::{flow_mod_flags as ff, flow_removed_reason as why};
use crate::openflow::group::group_id;
use crate::openflow::{Bucket, FlowModCommand, GroupModCommand, GroupType};
use crate::wire::ethernet::udp_frame;

const SEC: Nanos = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum R {
    Drop,
    Invalid,
    Port(u16),
    Ports(Vec<u16>),
    /// A hairpin set (may hold the input port).
    Hairpin(Vec<u16>),
    Flood,
    Controller,
}

fn module() -> FlowModule {
    FlowModule::new(FlowConfig {
        tables: 8,
        ..FlowConfig::default()
    })
}

fn udp(src: u8, dst: u8, sport: u16, dport: u16) -> Vec<u8> {
    udp_frame(
        60,
        MacAddr::local(u32::from(dst)),
        MacAddr::local(u32::from(src)),
        [10, 0, 0, src],
        [10, 0, 1, dst],
        sport,
        dport,
    )
}

fn flow(table: u8, priority: u16, fields: Vec<OxmField>, insts: Vec<Instruction>) -> FlowMod {
    FlowMod {
        table_id: table,
        priority,
        match_: Match::from_fields(fields).expect("valid test match"),
        instructions: insts,
        ..FlowMod::default()
    }
}

fn apply(a: Vec<Action>) -> Instruction {
    Instruction::ApplyActions(a)
}

fn out(p: u32) -> Action {
    Action::output(PortNo(p))
}

fn add(m: &FlowModule, f: FlowMod) {
    m.flow_mod(&f, 0).expect("flow mod accepted");
}

fn ip4() -> OxmField {
    OxmField::EthType(0x0800)
}

fn run_at(
    m: &FlowModule,
    in_port: u16,
    frames: Vec<Vec<u8>>,
    now: Nanos,
) -> (Vec<R>, Vec<Vec<u8>>) {
    let (r, f, _) = run_full(m, in_port, frames, now);
    (r, f)
}

/// Verdicts, frames after the batch, and the controller copies (packet,
/// metadata; None for tag 0).
#[allow(clippy::type_complexity)]
fn run_full(
    m: &FlowModule,
    in_port: u16,
    mut frames: Vec<Vec<u8>>,
    now: Nanos,
) -> (Vec<R>, Vec<Vec<u8>>, Vec<(u16, Option<ControllerMeta>)>) {
    let n = frames.len();
    let mut refs = Vec::new();
    let mut out = Verdicts::default();
    out.reset(n);
    let lens = {
        let mut b = Batch::from_buffers(&mut frames, &mut refs, PortId(in_port));
        m.process(&mut b, &mut out, now);
        (0..n).map(|i| b.data(i).len()).collect::<Vec<_>>()
    };
    for (f, l) in frames.iter_mut().zip(lens) {
        f.truncate(l);
    }
    let rs = (0..n)
        .map(|i| match out.get(i) {
            Verdict::Drop => R::Drop,
            Verdict::Invalid => R::Invalid,
            Verdict::Port(p) => R::Port(p.0),
            Verdict::Flood => R::Flood,
            Verdict::Controller => R::Controller,
            Verdict::Ports(k) => {
                let ps = out.set_members(k).iter().map(|p| p.0).collect();
                if out.set_hairpin(k) {
                    R::Hairpin(ps)
                } else {
                    R::Ports(ps)
                }
            }
        })
        .collect();
    let copies = out
        .controller_copies()
        .iter()
        .map(|&(i, tag)| {
            assert_ne!(tag, 0, "the flow module always tags");
            (i, m.controller_meta(tag))
        })
        .collect();
    (rs, frames, copies)
}

fn run(m: &FlowModule, in_port: u16, frames: Vec<Vec<u8>>) -> Vec<R> {
    run_at(m, in_port, frames, 0).0
}

fn counter(m: &FlowModule, name: &str) -> u64 {
    m.counters()
        .into_iter()
        .find(|c| c.0 == name)
        .map(|c| c.1)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

fn all_flows() -> FlowStatsRequest {
    FlowStatsRequest::default()
}

fn group(ty: GroupType, id: u32, buckets: Vec<Bucket>) -> GroupMod {
    GroupMod {
        command: GroupModCommand::Add,
        group_type: ty,
        group_id: id,
        buckets,
    }
}

fn bucket(actions: Vec<Action>) -> Bucket {
    Bucket {
        weight: 1,
        actions,
        ..Bucket::default()
    }
}

mod agent;
mod fin;
mod learn;
mod learn_fields;
mod megaflows;
mod meters;
mod mpls;
mod nicira;
mod pipeline;
mod tun_metadata;
mod tunnel;
mod tunnel6;
