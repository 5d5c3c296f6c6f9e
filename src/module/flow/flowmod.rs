//! `OFPT_FLOW_MOD` applied to the pipeline: ADD, MODIFY, MODIFY_STRICT,
//! DELETE and DELETE_STRICT, with the checks that depend on the switch's
//! state and the errors the spec gives for them.
//!
//! - Tables: 0 to `tables - 1`; `OFPTT_ALL` only for deletes
//!   (`OFPFMFC_BAD_TABLE_ID`). Unknown flag bits: `OFPFMFC_BAD_FLAGS`.
//! - Instructions: goto-table must go forward to an existing table
//!   (`OFPBIC_BAD_TABLE_ID`); a meter must exist (`OFPMMFC_INVALID_METER`:
//!   what Open vSwitch's `ofproto_check_ofpacts` answers).
//! - Actions: outputs to real ports that exist (when the port set is known;
//!   otherwise any number a port can have), IN_PORT, FLOOD, ALL, CONTROLLER
//!   LOCAL and NORMAL; TABLE, ANY and port 0 are `OFPBAC_BAD_OUT_PORT`.
//!   Groups must exist (`OFPBAC_BAD_OUT_GROUP`). MPLS actions need an MPLS
//!   packet (the match's `eth_type`, or a push before them;
//!   `OFPBAC_MATCH_INCONSISTENT`), push_mpls an MPLS ethertype
//!   (`OFPBAC_BAD_ARGUMENT`). PBB and TTL-copy actions are not supported
//!   (`OFPBAC_BAD_TYPE`, as Open vSwitch has none); set-queue is accepted
//!   and ignored (no queues). Set-field works on the fields listed in
//!   [`settable`] (`OFPBAC_BAD_SET_TYPE` otherwise) and must be consistent
//!   with the flow's match (`OFPBAC_MATCH_INCONSISTENT`), counting a VLAN
//!   pushed earlier in the same list.
//! - ADD replaces an entry with an identical match and priority, keeping
//!   its counters unless `OFPFF_RESET_COUNTS` (the duration restarts);
//!   `OFPFF_CHECK_OVERLAP` refuses an entry that a packet could match
//!   together with another of the same priority (`OFPFMFC_OVERLAP`).
//! - MODIFY changes the instructions of the matching entries (non-strict:
//!   every entry at least as specific as the request) and nothing else;
//!   no match is no error and adds nothing.
//! - DELETE filters on cookie/mask, `out_port` and `out_group`; the removed
//!   entries that asked for it come back as `FLOW_REMOVED` (reason DELETE).

use crate::module::Nanos;
use crate::openflow::error::{BadActionCode, BadInstructionCode, ErrorCode, FlowModFailedCode};
use crate::openflow::flow::{flow_mod_flags, flow_removed_reason};
use crate::openflow::group::group_id;
use crate::openflow::nicira::NxAction;
use crate::openflow::oxm::OxmFieldType;
use crate::openflow::{
    Action, FlowMod, FlowModCommand, FlowRemoved, Instruction, InstructionType, Match, PortNo,
    table_id,
};
use crate::port::PortId;

use std::sync::atomic::Ordering::Relaxed;

use super::classifier::Rule;
use super::key::Key;
use super::pipeline::{
    FlowCounters, FlowEntry, Pipeline, Program, check_conjunctions, no_nx_in_write_actions,
    regs_cover, same_regs,
};
use super::stats::removed_msg;

/// A delete of at least this many entries trims the heap.
const TRIM_AFTER: usize = 1024;

fn bad_action(c: BadActionCode) -> ErrorCode {
    ErrorCode::BadAction(c)
}

fn bad_table() -> ErrorCode {
    ErrorCode::FlowModFailed(FlowModFailedCode::BadTableId)
}

/// The fields a set-field action may write.
pub(crate) fn settable(t: OxmFieldType) -> bool {
    use OxmFieldType::*;
    matches!(
        t,
        EthDst
            | EthSrc
            | VlanVid
            | VlanPcp
            | IpDscp
            | IpEcn
            | Ipv4Src
            | Ipv4Dst
            | TcpSrc
            | TcpDst
            | UdpSrc
            | UdpDst
            | SctpSrc
            | SctpDst
            | Icmpv4Type
            | Icmpv4Code
            | ArpOp
            | ArpSpa
            | ArpTpa
            | ArpSha
            | ArpTha
            | Ipv6Src
            | Ipv6Dst
            | Ipv6Flabel
            | Icmpv6Type
            | Icmpv6Code
            | Ipv6NdTarget
            | Ipv6NdSll
            | Ipv6NdTll
            | MplsLabel
            | MplsTc
            | TunnelId
    )
}

/// Whether a rule is at least as specific as (value, mask): what a
/// non-strict modify, delete or statistics request selects.
pub(crate) fn covered(r: &Rule<FlowEntry>, value: &Key, mask: &Key) -> bool {
    r.mask.covers(mask) && r.value.and(mask) == *value
}

pub(crate) fn cookie_ok(r: &Rule<FlowEntry>, cookie: u64, mask: u64) -> bool {
    r.data.cookie & mask == cookie & mask
}

/// Whether a packet could match both rules.
fn overlaps(r: &Rule<FlowEntry>, value: &Key, mask: &Key) -> bool {
    r.value
        .0
        .iter()
        .zip(value.0)
        .zip(r.mask.0.iter().zip(mask.0))
        .all(|((a, b), (m1, m2))| (a ^ b) & m1 & m2 == 0)
}

impl Pipeline {
    fn table_index(&self, t: u8) -> Result<usize, ErrorCode> {
        let i = usize::from(t);
        if i < self.tables.len() {
            Ok(i)
        } else {
            Err(bad_table())
        }
    }

    /// Checks an action list; `m` is the flow's match (None for a bucket).
    pub(crate) fn check_actions(
        &self,
        actions: &[Action],
        m: Option<&Match>,
    ) -> Result<(), ErrorCode> {
        let mut vlan_pushed = actions.iter().any(|a| matches!(a, Action::PushVlan(_)));
        // Whether the packet is MPLS at this point of the list (a bucket
        // has no match to tell: anything goes, as the data path checks).
        let mut mpls = m.is_none_or(|m| m.prerequisites_met(OxmFieldType::MplsLabel));
        let inconsistent = || Err(bad_action(BadActionCode::MatchInconsistent));
        for a in actions {
            match *a {
                Action::Output { port, .. } => self.check_out_port(port)?,
                Action::Group(g) => {
                    if !self.groups.contains_key(&g) {
                        return Err(bad_action(BadActionCode::BadOutGroup));
                    }
                }
                Action::SetField(f) => {
                    let ty = f.field_type();
                    if !settable(ty) {
                        return Err(bad_action(BadActionCode::BadSetType));
                    }
                    if let Some(m) = m {
                        let ok = match ty {
                            OxmFieldType::VlanPcp => vlan_pushed || m.prerequisites_met(ty),
                            OxmFieldType::MplsLabel | OxmFieldType::MplsTc => mpls,
                            _ => m.prerequisites_met(ty),
                        };
                        if !ok {
                            return Err(bad_action(BadActionCode::MatchInconsistent));
                        }
                    }
                }
                Action::PushVlan(_) => vlan_pushed = true,
                Action::PopVlan | Action::DecNwTtl | Action::SetNwTtl(_) | Action::SetQueue(_) => {}
                Action::PushMpls(t) => {
                    if !super::mpls::is_mpls(t) {
                        return Err(bad_action(BadActionCode::BadArgument));
                    }
                    mpls = true;
                }
                Action::PopMpls(t) => {
                    if !mpls {
                        return inconsistent();
                    }
                    mpls = m.is_none() || super::mpls::is_mpls(t);
                }
                Action::SetMplsTtl(_) | Action::DecMplsTtl if !mpls => return inconsistent(),
                Action::SetMplsTtl(_) | Action::DecMplsTtl => {}
                // Open vSwitch has no TTL copies either.
                Action::CopyTtlOut | Action::CopyTtlIn | Action::PushPbb(_) | Action::PopPbb => {
                    return Err(bad_action(BadActionCode::BadType));
                }

                Action::Nx(NxAction::Learn(ref l)) => self.check_learn(l, m)?,
                // A conjunction is checked with its entry's instructions
                // (`check_conjunctions`); in a bucket or a packet-out it
                // has no place.
                Action::Nx(NxAction::Conjunction(_)) if m.is_none() => {
                    return Err(crate::openflow::nicira::learn::BAD_CONJUNCTION);
                }
                Action::Nx(ref x) => self.check_nx(x)?,
            }
        }
        Ok(())
    }

    fn check_out_port(&self, port: PortNo) -> Result<(), ErrorCode> {
        let ok = match port {
            PortNo::IN_PORT
            | PortNo::FLOOD
            | PortNo::ALL
            | PortNo::CONTROLLER
            | PortNo::LOCAL
            | PortNo::NORMAL => true,
            p if p.is_reserved() => false,
            p => match &self.known_ports {
                Some(k) => k.contains(&p.0),
                None => PortId::new(p.0).is_some(),
            },
        };
        if ok {
            Ok(())
        } else {
            Err(bad_action(BadActionCode::BadOutPort))
        }
    }

    fn check_instructions(
        &self,
        table: usize,
        insts: &[Instruction],
        m: &Match,
    ) -> Result<Program, ErrorCode> {
        let bad = |c| ErrorCode::BadInstruction(c);
        for (i, inst) in insts.iter().enumerate() {
            let ty = inst.instruction_type();
            if insts[..i].iter().any(|j| j.instruction_type() == ty) {
                return Err(ErrorCode::DUP_INST);
            }
            match inst {
                Instruction::GotoTable(t) => {
                    let t = usize::from(*t);
                    if t <= table || t >= self.tables.len() {
                        return Err(bad(BadInstructionCode::BadTableId));
                    }
                }
                Instruction::Meter(id) => {
                    if !self.meters.contains(*id) {
                        return Err(ErrorCode::MeterModFailed(
                            crate::openflow::error::MeterModFailedCode::InvalidMeter,
                        ));
                    }
                }
                Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                    self.check_actions(a, Some(m))?
                }
                Instruction::WriteMetadata { .. } | Instruction::ClearActions => {}
            }
            debug_assert_ne!(ty, InstructionType::Experimenter);
        }
        Ok(Program::new(insts))
    }

    /// Applies a flow mod; returns the removed entries that asked for
    /// `FLOW_REMOVED`.
    pub fn flow_mod(&mut self, fm: &FlowMod, now: Nanos) -> Result<Vec<FlowRemoved>, ErrorCode> {
        if fm.flags & !flow_mod_flags::ALL != 0 {
            return Err(ErrorCode::FlowModFailed(FlowModFailedCode::BadFlags));
        }
        match fm.command {
            FlowModCommand::Add => self.add(fm, now).map(|()| Vec::new()),
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                self.modify(fm, now).map(|()| Vec::new())
            }
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => self.delete(fm, now),
        }
    }

    fn add(&mut self, fm: &FlowMod, now: Nanos) -> Result<(), ErrorCode> {
        let t = self.table_index(fm.table_id)?;
        let (value, mask) = self.match_key(&fm.match_)?;
        let prog = self.check_instructions(t, &fm.instructions, &fm.match_)?;
        no_nx_in_write_actions(&fm.instructions)?;
        check_conjunctions(&fm.instructions)?;
        let reset = fm.flags & flow_mod_flags::RESET_COUNTS != 0;
        let cls = &mut self.tables[t].cls;
        if fm.flags & flow_mod_flags::CHECK_OVERLAP != 0
            && cls
                .iter()
                .any(|r| r.priority == fm.priority && overlaps(r, &value, &mask))
        {
            return Err(ErrorCode::FlowModFailed(FlowModFailedCode::Overlap));
        }
        let entry = |counters| FlowEntry {
            table_id: fm.table_id,
            match_: fm.match_.clone(),
            cookie: fm.cookie,
            idle_timeout: fm.idle_timeout,
            hard_timeout: fm.hard_timeout,
            flags: fm.flags,
            instructions: fm.instructions.clone(),
            prog,
            created: now,
            counters,
        };
        if let Some(r) = cls.find_strict_mut(&value, &mask, fm.priority, |d| {
            same_regs(&d.match_, &fm.match_)
        }) {
            let counters = if reset {
                r.data.counters.removed.store(true, Relaxed);
                FlowCounters::new(now)
            } else {
                let c = r.data.counters.clone();
                c.last_used.store(now, Relaxed);
                c.modified.store(now, Relaxed);
                c.removed.store(false, Relaxed);
                c
            };
            let was_conj = r.data.prog.conj;
            r.data = entry(counters);
            let is_conj = r.data.prog.conj;
            let table = &mut self.tables[t];
            table.conj = (table.conj + usize::from(is_conj)).saturating_sub(usize::from(was_conj));
        } else {
            if self.flow_count >= self.max_flows {
                return Err(ErrorCode::FlowModFailed(FlowModFailedCode::TableFull));
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.tables[t].insert(Rule {
                priority: fm.priority,
                seq,
                value,
                mask,
                data: entry(FlowCounters::new(now)),
            });
            self.flow_count += 1;
        }
        // Only plans whose lookup of this table a packet matching the
        // entry could have made change.
        self.changed(t, &value, &mask);
        Ok(())
    }

    fn modify(&mut self, fm: &FlowMod, _now: Nanos) -> Result<(), ErrorCode> {
        let t = self.table_index(fm.table_id)?;
        let (value, mask) = self.match_key(&fm.match_)?;
        let prog = self.check_instructions(t, &fm.instructions, &fm.match_)?;
        no_nx_in_write_actions(&fm.instructions)?;
        check_conjunctions(&fm.instructions)?;
        let strict = fm.command == FlowModCommand::ModifyStrict;
        let reset = fm.flags & flow_mod_flags::RESET_COUNTS != 0;
        let mut changed = false;
        let mut conj = self.tables[t].conj;
        for r in self.tables[t].cls.iter_mut() {
            let selected = if strict {
                r.value == value
                    && r.mask == mask
                    && r.priority == fm.priority
                    && same_regs(&r.data.match_, &fm.match_)
            } else {
                covered(r, &value, &mask) && regs_cover(&r.data.match_, &fm.match_)
            };
            if !selected || !cookie_ok(r, fm.cookie, fm.cookie_mask) {
                continue;
            }
            r.data.instructions = fm.instructions.clone();
            conj = (conj + usize::from(prog.conj)).saturating_sub(usize::from(r.data.prog.conj));
            r.data.prog = prog.clone();
            if reset {
                let c = &r.data.counters;
                c.packets.store(0, std::sync::atomic::Ordering::Relaxed);
                c.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            changed = true;
        }
        self.tables[t].conj = conj;
        if changed {
            self.bump();
        }
        Ok(())
    }

    fn delete(&mut self, fm: &FlowMod, now: Nanos) -> Result<Vec<FlowRemoved>, ErrorCode> {
        let tables = if fm.table_id == table_id::ALL {
            0..self.tables.len()
        } else {
            let t = self.table_index(fm.table_id)?;
            t..t + 1
        };
        let (value, mask) = self.match_key(&fm.match_)?;
        let strict = fm.command == FlowModCommand::DeleteStrict;
        let mut removed = Vec::new();
        let mut n = 0;
        let mut gone_all = Vec::new();
        for t in tables {
            let gone = self.tables[t].remove_where(|r| {
                let selected = if strict {
                    r.value == value
                        && r.mask == mask
                        && r.priority == fm.priority
                        && same_regs(&r.data.match_, &fm.match_)
                } else {
                    covered(r, &value, &mask) && regs_cover(&r.data.match_, &fm.match_)
                };
                selected
                    && cookie_ok(r, fm.cookie, fm.cookie_mask)
                    && (fm.out_port == PortNo::ANY || r.data.outputs_to(fm.out_port))
                    && (fm.out_group == group_id::ANY || r.data.uses_group(fm.out_group))
            });
            n += gone.len();
            removed.extend(
                gone.iter()
                    .filter(|r| r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0)
                    .map(|r| removed_msg(r, flow_removed_reason::DELETE, now)),
            );
            gone_all.push((t, gone));
        }
        if n > 0 {
            self.flow_count -= n;
            self.forget(&gone_all);
            removed.extend(self.delete_learned(&gone_all, now));
        }
        drop(gone_all);
        if n >= TRIM_AFTER {
            // The entries' memory goes back to the system, not only to
            // this thread's heap.
            crate::sys::res::trim();
        }
        Ok(removed)
    }
}
