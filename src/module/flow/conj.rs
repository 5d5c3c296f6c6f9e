//! Conjunctive matches (a child of `pipeline`), as Open vSwitch's
//! classifier has them (`ovs-fields(7)`, "Conjunctive Match Fields").
//!
//! An entry whose actions are `conjunction(id, k/n)` (and notes) is one
//! value of dimension `k` of conjunctive flow `id`; it is never the result
//! of a lookup. A lookup of a table that holds such entries:
//!
//! 1. finds the best ordinary ("hard") entry for the packet;
//! 2. collects every conjunctive ("soft") entry the packet matches at a
//!    priority above it;
//! 3. from the highest of those priorities down, looks for a conjunction
//!    `id` all of whose `n` dimensions have a matching entry at that very
//!    priority (an entry may serve several ids); for each such id (lowest
//!    first: overlapping conjunctive flows are undefined in Open vSwitch),
//!    looks the table up again with `conj_id = id`, ignoring conjunctive
//!    entries, and returns what that finds (which may be an entry that
//!    does not match `conj_id` at all, if it ranks higher);
//! 4. if no conjunction is complete, or no `conj_id` lookup finds
//!    anything, returns the hard entry.
//!
//! `conj_id` is pipeline state matched like a register
//! ([`Register::ConjId`]): 0 outside the lookup of step 3, so an entry
//! that matches a nonzero `conj_id` is found only there.
//!
//! Exact under the caches: every lookup here ORs the masks of the
//! subtables it probed into the megaflow's mask, and step 2 probes every
//! subtable that could hold a soft entry above the hard one, so each step's
//! outcome is a function of the bits in the mask.

use std::cmp::Reverse;

use crate::openflow::ErrorCode;
use crate::openflow::nicira::learn::BAD_CONJUNCTION;
use crate::openflow::nicira::{Conjunction, N_REGS, NxAction, Register};

use super::nicira::regs_match;
use super::*;

/// The `conjunction` actions of an entry's program.
pub(super) fn conjunctions(p: &Program) -> impl Iterator<Item = Conjunction> + '_ {
    p.apply.iter().flatten().filter_map(|a| match a {
        Action::Nx(NxAction::Conjunction(c)) => Some(*c),
        _ => None,
    })
}

/// Open vSwitch's rule: an entry with a `conjunction` action has only
/// `conjunction` and `note` actions, applied (`NXBAC_BAD_CONJUNCTION`).
pub(crate) fn check_conjunctions(insts: &[Instruction]) -> Result<(), ErrorCode> {
    let is_conj = |a: &Action| matches!(a, Action::Nx(NxAction::Conjunction(_)));
    let any = insts
        .iter()
        .filter_map(Instruction::actions)
        .flatten()
        .any(is_conj);
    if !any {
        return Ok(());
    }
    let only = insts.iter().all(|i| match i {
        Instruction::ApplyActions(a) => a
            .iter()
            .all(|a| is_conj(a) || matches!(a, Action::Nx(NxAction::Note { .. }))),
        _ => false,
    });
    if only { Ok(()) } else { Err(BAD_CONJUNCTION) }
}

/// Whether the registers and `conj_id = id` satisfy a rule's register
/// fields.
fn regs_match_conj(e: &FlowEntry, regs: &[u32; N_REGS], id: u32) -> bool {
    e.match_.registers().iter().all(|r| {
        let v = if r.reg.is_tunnel() {
            // Key bits, which the classifier matched.
            return true;
        } else if r.reg == Register::ConjId {
            u64::from(id)
        } else {
            r.reg.get(regs)
        };
        v & r.mask_or_all() == r.value
    })
}

impl<'p> Exec<'p> {
    /// Looks table `t` up with the key and registers as they are now,
    /// conjunctive matches included; notes a lookup with a rewritten key
    /// ([`Plan::rewritten`]).
    pub(super) fn lookup(&mut self, t: u8) -> Option<&'p Rule<FlowEntry>> {
        let p: &'p Pipeline = self.p;
        let table = p.tables.get(usize::from(t))?;
        if self.key != self.orig {
            self.rewritten[usize::from(t / 64)] |= 1 << (t % 64);
        }
        let regs = self.regs;
        if table.conj == 0 {
            return table
                .cls
                .lookup_with(&self.key, &mut self.mask, |e| regs_match(e, &regs));
        }
        lookup_conj(table, &self.key, &mut self.mask, &regs)
    }
}

/// Steps 1-4 of the module doc.
fn lookup_conj<'a>(
    table: &'a Table,
    key: &Key,
    mask: &mut Key,
    regs: &[u32; N_REGS],
) -> Option<&'a Rule<FlowEntry>> {
    let cls = &table.cls;
    let hard = cls.lookup_with(key, mask, |e| !e.prog.conj && regs_match(e, regs));
    let floor = hard.map_or(-1, |r| i32::from(r.priority));
    let mut soft = cls.lookup_all(key, mask, floor, |e| e.prog.conj && regs_match(e, regs));
    if soft.is_empty() {
        return hard;
    }
    soft.sort_by_key(|r| Reverse(r.priority));
    for level in soft.chunk_by(|a, b| a.priority == b.priority) {
        // (id, n) -> the dimensions seen, as bits.
        let mut seen: Vec<(u32, u8, u64)> = Vec::new();
        for r in level {
            for c in conjunctions(&r.data.prog) {
                let bit = 1u64 << (c.clause.saturating_sub(1) % 64);
                match seen
                    .iter_mut()
                    .find(|(id, n, _)| *id == c.id && *n == c.n_clauses)
                {
                    Some(s) => s.2 |= bit,
                    None => seen.push((c.id, c.n_clauses, bit)),
                }
            }
        }
        seen.sort_unstable();
        for (id, n, bits) in seen {
            let all = if n >= 64 { u64::MAX } else { (1 << n) - 1 };
            if bits != all {
                continue;
            }
            let found =
                cls.lookup_with(key, mask, |e| !e.prog.conj && regs_match_conj(e, regs, id));
            if found.is_some() {
                return found;
            }
        }
    }
    hard
}
