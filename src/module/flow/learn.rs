//! The `learn` action in the pipeline (a child of `pipeline`).
//!
//! # What it does
//!
//! As in Open vSwitch: a `learn` builds a flow from the packet (its match
//! from the packet's fields, registers and immediates; its actions the
//! spec's loads and outputs) and adds it to the named table, or, if a flow
//! with that match and priority is there already, refreshes it (both its
//! idle and hard timeouts restart, as Open vSwitch's `modified` time does)
//! or, if it differs, replaces it (`--strict mod-flows`). The flow's
//! `send_flow_rem` comes from the learn's flags; `delete_learned` makes
//! the removal of the last flow holding such a learn delete every flow of
//! its table and cookie. With `fin_idle_timeout`/`fin_hard_timeout` the
//! new flow's actions start with a `fin_timeout` of those (`fin.rs`).
//!
//! `NXAST_LEARN2`'s `limit=N`: a flow that is not there yet is added only
//! while its table holds fewer than N flows with its cookie (a refresh is
//! always allowed); `result_dst=field[bit]` gets 1 if the flow is (or will
//! be) there, 0 if the limit stopped it, for the actions after the learn.
//! The executor decides it from the table as it is; the plan then depends
//! on how many flows that table holds, so the learn's table counts as one
//! it looked up with a rewritten key ([`Plan::rewritten`]): any edit of
//! that table makes the plan stale, and the next packet decides again.
//! The install checks the limit again (another plan may have filled the
//! table in between).
//!
//! # How it stays inside the flow caches
//!
//! A plan is compiled under the pipeline's read lock, which cannot add a
//! flow. So the executor only *builds* the flow ([`Learned`]: the flow mod,
//! and the installed flow's counters once known) and the plan carries it.
//! Once per batch in which a plan's packets come (`cache::Stripe::flush`),
//! and at most every 100 ms (the slot keeps the time), each of its learned
//! flows is touched: if installed and still in its table, its timeouts
//! restart with two atomic stores (no table change: a cached plan with a
//! learn costs its packets one compare per batch);
//! otherwise it is queued, and after the batch, with the read lock
//! released, the module installs what was queued under the write lock
//! ([`Pipeline::learn_install`]), through the same path as an
//! `OFPT_FLOW_MOD` ADD. That edit makes stale only the cached plans whose
//! lookup of that table a packet matching the new flow could have made
//! ([`Pipeline::changed`]); the others, the learning plan often among
//! them, stay. A learned flow that expires or is deleted marks its
//! counters removed, so the next batch through a plan that learns it
//! installs it again.
//!
//! The bits a learn reads from the packet are unwildcarded like any read
//! (`Exec::read_bits`), so packets that would learn something else never
//! share the plan; registers read are functions of the mask's bits (see
//! `nicira`).
//!
//! # Bounds
//!
//! New flows are installed at most `learn_rate` per second (a token
//! bucket with a second's worth of burst) and up to `learn_max` entries in
//! the target table; past either, the learn is skipped (counted
//! `learn_skipped`, retried at most every 100 ms or 1 s) and the packet
//! is forwarded as usual. A flow learned from a packet is in its table
//! from the next batch on (Open vSwitch installs it after the upcall too).

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;

use crate::openflow::error::BadActionCode::BadSetArgument;
use crate::openflow::error::{BadActionCode, BadMatchCode};
use crate::openflow::flow::{flow_mod_flags, flow_removed_reason};
use crate::openflow::nicira::learn::{LEARN_DELETE_LEARNED, LEARN_SEND_FLOW_REM};
use crate::openflow::nicira::{
    FieldRef, Learn, LearnDst, LearnSrc, NxAction, NxMatchField, Register,
};
use crate::openflow::oxm::{Masked, OxmFieldType};
use crate::openflow::{ErrorCode, FlowMod, FlowRemoved};
use crate::wire::MacAddr;

use super::nicira::{readable, writable};
use super::*;

/// Edits past which a removal makes every cached plan stale instead of
/// naming each removed entry ([`Pipeline::forget`]).
const MAX_FINE_EDITS: usize = 1024;
const SEC: Nanos = 1_000_000_000;

/// What bounds `learn` ([`Pipeline::learn`]), and its token bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LearnLimits {
    /// New flows per second.
    pub rate: u32,
    /// Entries a table may hold for `learn` to add one.
    pub per_table: usize,
    tokens: f64,
    last: Nanos,
}

impl Default for LearnLimits {
    fn default() -> Self {
        LearnLimits::new(10_000, 100_000)
    }
}

impl LearnLimits {
    pub fn new(rate: u32, per_table: usize) -> LearnLimits {
        LearnLimits {
            rate,
            per_table,
            tokens: f64::from(rate),
            last: 0,
        }
    }

    /// Takes a token at `now`, if there is one.
    fn take(&mut self, now: Nanos) -> bool {
        let dt = now.saturating_sub(self.last) as f64 / SEC as f64;
        self.last = self.last.max(now);
        let cap = f64::from(self.rate.max(1));
        self.tokens = (self.tokens + dt * f64::from(self.rate)).min(cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A flow a plan's `learn` builds, shared by the plan and the module.
#[derive(Debug)]
pub(crate) struct Learned {
    pub fm: FlowMod,
    /// `limit`: most flows of the table with the flow's cookie (0: none).
    limit: u32,
    /// The installed flow's counters, once it is known to be installed.
    flow: Mutex<Option<Arc<FlowCounters>>>,
    /// Waiting in a stripe's queue for the module.
    queued: AtomicBool,
    /// Not to be queued again before this time (after a skip).
    retry_at: AtomicU64,
}

/// What installing a learned flow did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LearnOutcome {
    /// Added, or replaced one with the same match and priority.
    Added,
    /// It was there already: refreshed.
    Refreshed,
    /// Not installed: the table is full, the rate is exceeded, or the
    /// table refused it.
    Skipped,
}

impl Learned {
    fn new(fm: FlowMod, limit: u32, flow: Option<Arc<FlowCounters>>) -> Learned {
        Learned {
            fm,
            limit,
            flow: Mutex::new(flow),
            queued: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
        }
    }

    fn flow(&self) -> std::sync::MutexGuard<'_, Option<Arc<FlowCounters>>> {
        self.flow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks this queued (for a packet-out's learn, installed at once);
    /// false if it already was.
    pub fn claim(&self) -> bool {
        !self.queued.swap(true, Relaxed)
    }

    /// Packets of a plan that learns this came in at `now`: refreshes the
    /// installed flow, or queues this for installation into `pending`.
    pub fn touch(self: &Arc<Self>, now: Nanos, pending: &mut Vec<Arc<Learned>>) {
        if let Some(c) = self.flow().as_ref()
            && !c.removed.load(Relaxed)
        {
            c.refresh(now);
            return;
        }
        if now < self.retry_at.load(Relaxed) {
            return;
        }
        if !self.queued.swap(true, Relaxed) {
            pending.push(self.clone());
        }
    }
}

#[path = "learn_match.rs"]
mod learn_match;
use learn_match::{Acc, Kind, MatchError, accumulate, learned_match, ones128, port16, shl};

/// The port of a learned output, as Open vSwitch takes it: a 16-bit
/// number, a real port or IN_PORT, FLOOD, ALL or LOCAL.
fn learned_port(v: u64, n_bits: u16) -> Option<PortNo> {
    if n_bits > 16 && v > 0xffff {
        return None;
    }
    let p = v as u16;
    (p < 0xff00 || matches!(p, 0xfff8 | 0xfffb | 0xfffc | 0xfffe)).then(|| port16(v))
}

/// Whether an installed entry is the flow `fm` would install.
fn same_learned(e: &FlowEntry, fm: &FlowMod) -> bool {
    e.instructions == fm.instructions
        && e.cookie == fm.cookie
        && e.idle_timeout == fm.idle_timeout
        && e.hard_timeout == fm.hard_timeout
        && e.flags == fm.flags
}

impl Exec<'_> {
    /// Builds the flow `l` learns from the packet as it is now, for the
    /// plan to carry ([`Plan::learns`]).
    pub(super) fn learn(&mut self, l: &Learn) {
        let mut accs: Vec<Acc> = Vec::new();
        let mut actions = Vec::new();
        for s in &l.specs {
            let n = s.n_bits;
            let v = match s.src {
                LearnSrc::Field { field, ofs } => self.learn_read(field, ofs, n),
                LearnSrc::Immediate(v) => v & ones128(n),
            };
            match s.dst {
                LearnDst::Match { field, ofs } => accumulate(&mut accs, field, ofs, n, v),
                // The install check keeps loads and outputs within 64 bits.
                LearnDst::Load { field, ofs } => actions.push(Action::Nx(NxAction::RegLoad {
                    dst: field,
                    ofs,
                    n_bits: n,
                    value: v as u64,
                })),
                LearnDst::Output => {
                    if let Some(port) = learned_port(v as u64, n) {
                        actions.push(Action::Output { port, max_len: 0 });
                    }
                }
            }
        }
        let Ok(match_) = learned_match(&accs) else {
            self.events |= event::LEARN_FAILED;
            self.learn_result(l, false);
            return;
        };
        if l.fin_idle_timeout != 0 || l.fin_hard_timeout != 0 {
            actions.insert(
                0,
                Action::Nx(NxAction::FinTimeout {
                    idle: l.fin_idle_timeout,
                    hard: l.fin_hard_timeout,
                }),
            );
        }
        let fm = FlowMod {
            cookie: l.cookie,
            table_id: l.table_id,
            idle_timeout: l.idle_timeout,
            hard_timeout: l.hard_timeout,
            priority: l.priority,
            flags: if l.flags & LEARN_SEND_FLOW_REM != 0 {
                flow_mod_flags::SEND_FLOW_REM
            } else {
                0
            },
            match_,
            instructions: if actions.is_empty() {
                Vec::new()
            } else {
                vec![Instruction::ApplyActions(actions)]
            },
            ..FlowMod::default()
        };
        let flow = self.p.installed(&fm).map(|r| r.data.counters.clone());
        if l.limit != 0 {
            let t = fm.table_id;
            self.rewritten[usize::from(t / 64)] |= 1 << (t % 64);
            if flow.is_none() && !self.p.below_limit(&fm, l.limit) {
                self.learn_result(l, false);
                return;
            }
        }
        self.learn_result(l, true);
        self.learns.push(Arc::new(Learned::new(fm, l.limit, flow)));
    }

    /// `n` bits of `field` from `ofs` as the packet has them now: a
    /// 128-bit field from its two key words (the bits read unwildcarded),
    /// any other as a move reads it (`tun_id` and the tunnel addresses
    /// are key bits like the others).
    fn learn_read(&mut self, field: FieldRef, ofs: u16, n: u16) -> u128 {
        if let Some((hi, lo)) = super::nicira::wide_bits(field) {
            let m = shl(ones128(n), ofs);
            self.mask.0[hi.word] |= (m >> 64) as u64;
            self.mask.0[lo.word] |= m as u64;
            let v = (u128::from(hi.get(&self.key)) << 64) | u128::from(lo.get(&self.key));
            return (v & m) >> ofs;
        }
        u128::from(self.read_bits(field, ofs, n))
    }

    /// `result_dst`: whether the flow was learned.
    fn learn_result(&mut self, l: &Learn, learned: bool) {
        if let Some((field, ofs)) = l.result_dst {
            self.write_bits(field, ofs, 1, u64::from(learned));
        }
    }
}

impl Pipeline {
    /// Whether `fm`'s table holds fewer than `limit` flows with its cookie.
    fn below_limit(&self, fm: &FlowMod, limit: u32) -> bool {
        let Some(table) = self.tables.get(usize::from(fm.table_id)) else {
            return false;
        };
        let mut n = 0u32;
        for r in table.cls.iter() {
            n += u32::from(r.data.cookie == fm.cookie);
            if n >= limit {
                return false;
            }
        }
        true
    }

    /// The entry with the match and priority of `fm` in its table, if it
    /// is the very flow `fm` would install.
    fn installed(&self, fm: &FlowMod) -> Option<&Rule<FlowEntry>> {
        let table = self.tables.get(usize::from(fm.table_id))?;
        let (value, mask) = self.match_key(&fm.match_).ok()?;
        table
            .cls
            .find_strict(&value, &mask, fm.priority, |d| {
                same_regs(&d.match_, &fm.match_)
            })
            .filter(|r| same_learned(&r.data, fm))
    }

    /// Checks a `learn` of a flow whose match is `m` (None: a bucket or a
    /// packet-out): the table exists; every field read is one the pipeline
    /// keeps, at most 64 bits, with its prerequisites in `m`
    /// (`OFPBMC_BAD_PREREQ`); every load writes a writable field; the new
    /// flow's match can be built and meets its own prerequisites from the
    /// learn's immediates, as Open vSwitch's `learn_check` asks.
    pub(crate) fn check_learn(&self, l: &Learn, m: Option<&Match>) -> Result<(), ErrorCode> {
        let bad = Err(ErrorCode::BadAction(BadActionCode::BadArgument));
        if usize::from(l.table_id) >= self.tables.len() {
            return bad;
        }
        if let Some((field, _)) = l.result_dst
            && !writable(field)
        {
            return Err(ErrorCode::BadAction(BadSetArgument));
        }
        let mut accs = Vec::new();
        for s in &l.specs {
            // Wider values only between 128-bit fields (and immediates).
            let wide = |f: FieldRef| super::nicira::wide_bits(f).is_some();
            let wide_ok = match (s.src, s.dst) {
                (LearnSrc::Field { field, .. }, LearnDst::Match { field: d, .. }) => {
                    wide(field) && wide(d)
                }
                (LearnSrc::Immediate(_), LearnDst::Match { field, .. }) => wide(field),
                _ => false,
            };
            if s.n_bits > 64 && !wide_ok {
                return bad;
            }
            let v = match s.src {
                LearnSrc::Field { field, .. } => {
                    let known = readable(field) || wide(field);
                    if !known {
                        return bad;
                    }
                    let ty = Kind::of(field).and_then(Kind::oxm);
                    if let (Some(m), Some(ty)) = (m, ty)
                        && !m.prerequisites_met(ty)
                    {
                        return Err(ErrorCode::BadMatch(BadMatchCode::BadPrereq));
                    }
                    0
                }
                LearnSrc::Immediate(v) => v,
            };
            match s.dst {
                LearnDst::Match { field, ofs } => accumulate(&mut accs, field, ofs, s.n_bits, v),
                LearnDst::Load { field, .. } if !writable(field) => return bad,
                LearnDst::Load { .. } | LearnDst::Output => {}
            }
        }
        match learned_match(&accs) {
            Ok(_) => Ok(()),
            Err(MatchError::Prereq) => Err(ErrorCode::BadMatch(BadMatchCode::BadPrereq)),
            Err(MatchError::Unsupported) => bad,
        }
    }

    /// Installs a learned flow (see the module doc): refreshes it if it is
    /// there, replaces one with its match and priority that differs, or
    /// adds it within the bounds.
    pub(crate) fn learn_install(&mut self, l: &Learned, now: Nanos) -> LearnOutcome {
        l.queued.store(false, Relaxed);
        let skip = |after: Nanos| {
            l.retry_at.store(now.saturating_add(after), Relaxed);
            LearnOutcome::Skipped
        };
        let fm = &l.fm;
        if let Some(r) = self.installed(fm) {
            let c = r.data.counters.clone();
            c.removed.store(false, Relaxed);
            c.refresh(now);
            *l.flow() = Some(c);
            return LearnOutcome::Refreshed;
        }
        let t = usize::from(fm.table_id);
        let Ok((value, mask)) = self.match_key(&fm.match_) else {
            return skip(SEC);
        };
        let Some(table) = self.tables.get(t) else {
            return skip(SEC);
        };
        let exists = table
            .cls
            .find_strict(&value, &mask, fm.priority, |d| {
                same_regs(&d.match_, &fm.match_)
            })
            .is_some();
        if !exists {
            if table.cls.len() >= self.learn.per_table {
                return skip(SEC);
            }
            if l.limit != 0 && !self.below_limit(fm, l.limit) {
                return skip(SEC / 10);
            }
            if !self.learn.take(now) {
                return skip(SEC / 10);
            }
        }
        if self.flow_mod(fm, now).is_err() {
            return skip(SEC);
        }
        match self.installed(fm) {
            Some(r) => {
                *l.flow() = Some(r.data.counters.clone());
                LearnOutcome::Added
            }
            None => skip(SEC),
        }
    }

    /// Entries left their tables: the cached plans that may have used them
    /// are stale (all of them, past [`MAX_FINE_EDITS`] entries).
    pub(crate) fn forget(&mut self, gone: &[(usize, Vec<Rule<FlowEntry>>)]) {
        let n: usize = gone.iter().map(|(_, g)| g.len()).sum();
        if n > MAX_FINE_EDITS {
            self.bump();
            return;
        }
        for (t, g) in gone {
            for r in g {
                self.changed(*t, &r.value, &r.mask);
            }
        }
    }

    /// `delete_learned`: for each (table, cookie) that a removed entry's
    /// learn with that flag names, and no remaining entry's does, deletes
    /// the entries of that table with that cookie. Returns their
    /// `FLOW_REMOVED`s (reason DELETE) for those that asked.
    pub(crate) fn delete_learned(
        &mut self,
        gone: &[(usize, Vec<Rule<FlowEntry>>)],
        now: Nanos,
    ) -> Vec<FlowRemoved> {
        fn keys(e: &FlowEntry) -> impl Iterator<Item = (u8, u64)> + '_ {
            e.prog.apply.iter().flatten().filter_map(|a| match a {
                Action::Nx(NxAction::Learn(l)) if l.flags & LEARN_DELETE_LEARNED != 0 => {
                    Some((l.table_id, l.cookie))
                }
                _ => None,
            })
        }
        let mut doomed: Vec<(u8, u64)> = gone
            .iter()
            .flat_map(|(_, g)| g.iter().flat_map(|r| keys(&r.data)))
            .collect();
        if doomed.is_empty() {
            return Vec::new();
        }
        doomed.sort_unstable();
        doomed.dedup();
        for t in &self.tables {
            for r in t.cls.iter() {
                for k in keys(&r.data) {
                    doomed.retain(|d| *d != k);
                }
            }
        }
        let mut removed = Vec::new();
        let mut all = Vec::new();
        for (t, cookie) in doomed {
            let t = usize::from(t);
            let Some(table) = self.tables.get_mut(t) else {
                continue;
            };
            let g = table.remove_where(|r| r.data.cookie == cookie);
            self.flow_count -= g.len();
            removed.extend(
                g.iter()
                    .filter(|r| r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0)
                    .map(|r| super::super::stats::removed_msg(r, flow_removed_reason::DELETE, now)),
            );
            all.push((t, g));
        }
        self.forget(&all);
        removed
    }
}
