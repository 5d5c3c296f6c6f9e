//! Statistics the agent reports (flow, aggregate, table, group, group
//! description and features) and flow expiry.
//!
//! Flow statistics echo each entry's match, cookie, priority, timeouts,
//! flags and instructions exactly as installed. Counters are exact up to
//! the last finished batch: the data path adds its counts once per batch.

use std::sync::atomic::Ordering;

use crate::module::Nanos;
use crate::openflow::error::{BadRequestCode, ErrorCode};
use crate::openflow::flow::{flow_mod_flags, flow_removed_reason};
use crate::openflow::group::{
    BucketCounter, GroupDesc, GroupFeatures, GroupStats, group_capabilities, group_id,
};
use crate::openflow::multipart::{AggregateStats, FlowStats, FlowStatsRequest, TableStats};
use crate::openflow::{ActionType, FlowRemoved, GroupType, PortNo, table_id};

use super::classifier::Rule;
use super::flowmod::{cookie_ok, covered};
use super::group::{MAX_GROUPS, bucket_refs};
use super::key::Key;
use super::pipeline::{FlowEntry, Pipeline, regs_cover};

const NS: u64 = 1_000_000_000;

fn duration(since: Nanos, now: Nanos) -> (u32, u32) {
    let d = now.saturating_sub(since);
    ((d / NS).min(u64::from(u32::MAX)) as u32, (d % NS) as u32)
}

/// The `FLOW_REMOVED` message for a rule leaving the table.
pub(crate) fn removed_msg(r: &Rule<FlowEntry>, reason: u8, now: Nanos) -> FlowRemoved {
    let e = &r.data;
    let (duration_sec, duration_nsec) = duration(e.created, now);
    let (idle_timeout, hard_timeout) = e.timeouts();
    FlowRemoved {
        cookie: e.cookie,
        priority: r.priority,
        reason,
        table_id: e.table_id,
        duration_sec,
        duration_nsec,
        idle_timeout,
        hard_timeout,
        packet_count: e.counters.packets.load(Ordering::Relaxed),
        byte_count: e.counters.bytes.load(Ordering::Relaxed),
        match_: e.match_.clone(),
    }
}

/// Why a flow has timed out at `now`, if it has (hard before idle).
pub(crate) fn expiry(r: &Rule<FlowEntry>, now: Nanos) -> Option<u8> {
    let e = &r.data;
    let secs = |t: u16| u64::from(t) * NS;
    let (idle_timeout, hard_timeout) = e.timeouts();
    // A learn that found the entry again restarted its hard timeout.
    let base = e.counters.modified.load(Ordering::Relaxed).max(e.created);
    if hard_timeout != 0 && now >= base.saturating_add(secs(hard_timeout)) {
        return Some(flow_removed_reason::HARD_TIMEOUT);
    }
    let last = e.counters.last_used.load(Ordering::Relaxed).max(e.created);
    if idle_timeout != 0 && now >= last.saturating_add(secs(idle_timeout)) {
        return Some(flow_removed_reason::IDLE_TIMEOUT);
    }
    None
}

/// The rules a flow statistics request selects.
struct Filter {
    value: Key,
    mask: Key,
    tables: std::ops::Range<usize>,
    out_port: PortNo,
    out_group: u32,
    cookie: u64,
    cookie_mask: u64,
    /// The request's match, for its register fields.
    regs: crate::openflow::Match,
}

impl Filter {
    fn selects(&self, r: &Rule<FlowEntry>) -> bool {
        covered(r, &self.value, &self.mask)
            && regs_cover(&r.data.match_, &self.regs)
            && cookie_ok(r, self.cookie, self.cookie_mask)
            && (self.out_port == PortNo::ANY || r.data.outputs_to(self.out_port))
            && (self.out_group == group_id::ANY || r.data.uses_group(self.out_group))
    }
}

impl Pipeline {
    fn filter(&self, req: &FlowStatsRequest) -> Result<Filter, ErrorCode> {
        let n = self.tables.len();
        let tables = match usize::from(req.table_id) {
            _ if req.table_id == table_id::ALL => 0..n,
            t if t < n => t..t + 1,
            _ => return Err(ErrorCode::BadRequest(BadRequestCode::BadTableId)),
        };
        let (value, mask) = self.match_key(&req.match_)?;
        Ok(Filter {
            value,
            mask,
            tables,
            out_port: req.out_port,
            out_group: req.out_group,
            cookie: req.cookie,
            cookie_mask: req.cookie_mask,
            regs: req.match_.clone(),
        })
    }

    /// Selected rules, by table, then priority (highest first), then age.
    fn selected(&self, f: &Filter) -> Vec<&Rule<FlowEntry>> {
        let mut out = Vec::new();
        for t in f.tables.clone() {
            let mut rules: Vec<_> = self.tables[t].cls.iter().filter(|r| f.selects(r)).collect();
            rules.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.seq));
            out.extend(rules);
        }
        out
    }

    pub fn flow_stats(
        &self,
        req: &FlowStatsRequest,
        now: Nanos,
    ) -> Result<Vec<FlowStats>, ErrorCode> {
        let f = self.filter(req)?;
        Ok(self
            .selected(&f)
            .into_iter()
            .map(|r| {
                let e = &r.data;
                let (duration_sec, duration_nsec) = duration(e.created, now);
                let (idle_timeout, hard_timeout) = e.timeouts();
                FlowStats {
                    table_id: e.table_id,
                    duration_sec,
                    duration_nsec,
                    priority: r.priority,
                    idle_timeout,
                    hard_timeout,
                    flags: e.flags,
                    cookie: e.cookie,
                    packet_count: e.counters.packets.load(Ordering::Relaxed),
                    byte_count: e.counters.bytes.load(Ordering::Relaxed),
                    match_: e.match_.clone(),
                    instructions: e.instructions.clone(),
                }
            })
            .collect())
    }

    pub fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, ErrorCode> {
        let f = self.filter(req)?;
        let mut a = AggregateStats::default();
        for t in f.tables.clone() {
            for r in self.tables[t].cls.iter().filter(|r| f.selects(r)) {
                a.packet_count += r.data.counters.packets.load(Ordering::Relaxed);
                a.byte_count += r.data.counters.bytes.load(Ordering::Relaxed);
                a.flow_count += 1;
            }
        }
        Ok(a)
    }

    pub fn table_stats(&self) -> Vec<TableStats> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| TableStats {
                table_id: i as u8,
                active_count: t.cls.len() as u32,
                lookup_count: t.lookups.load(Ordering::Relaxed),
                matched_count: t.matched.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Flow entries and groups that forward to group `id`.
    fn ref_count(&self, id: u32) -> u32 {
        let flows = self
            .tables
            .iter()
            .flat_map(|t| t.cls.iter())
            .filter(|r| r.data.uses_group(id))
            .count();
        let groups = self
            .groups
            .values()
            .filter(|g| g.buckets.iter().any(|b| bucket_refs(b).any(|r| r == id)))
            .count();
        (flows + groups) as u32
    }

    /// Statistics of group `id`, or of every group for `OFPG_ALL`.
    pub fn group_stats(&self, id: u32, now: Nanos) -> Vec<GroupStats> {
        self.groups
            .iter()
            .filter(|&(&g, _)| id == group_id::ALL || g == id)
            .map(|(&g, grp)| {
                let (packet_count, byte_count) = grp.counters.group.get();
                let (duration_sec, duration_nsec) = duration(grp.created, now);
                GroupStats {
                    group_id: g,
                    ref_count: self.ref_count(g),
                    packet_count,
                    byte_count,
                    duration_sec,
                    duration_nsec,
                    bucket_stats: grp
                        .counters
                        .buckets
                        .iter()
                        .map(|c| {
                            let (packet_count, byte_count) = c.get();
                            BucketCounter {
                                packet_count,
                                byte_count,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub fn group_desc(&self) -> Vec<GroupDesc> {
        self.groups
            .iter()
            .map(|(&g, grp)| GroupDesc {
                group_type: grp.group_type,
                group_id: g,
                buckets: grp.buckets.clone(),
            })
            .collect()
    }

    /// Whether some rule has timed out at `now`.
    pub fn any_expired(&self, now: Nanos) -> bool {
        self.tables
            .iter()
            .any(|t| t.cls.iter().any(|r| expiry(r, now).is_some()))
    }

    /// Removes every timed-out rule; returns those that asked for
    /// `FLOW_REMOVED`.
    pub fn remove_expired(&mut self, now: Nanos) -> Vec<FlowRemoved> {
        let mut removed = Vec::new();
        let mut n = 0;
        let mut gone_all = Vec::new();
        for (t, table) in self.tables.iter_mut().enumerate() {
            let gone = table.remove_where(|r| expiry(r, now).is_some());
            n += gone.len();
            for r in &gone {
                if r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0
                    && let Some(reason) = expiry(r, now)
                {
                    removed.push(removed_msg(r, reason, now));
                }
            }
            if !gone.is_empty() {
                gone_all.push((t, gone));
            }
        }
        if n > 0 {
            self.flow_count -= n;
            self.forget(&gone_all);
            removed.extend(self.delete_learned(&gone_all, now));
        }
        removed
    }
}

/// What this pipeline's groups support.
pub(crate) fn group_features() -> GroupFeatures {
    let types = [
        GroupType::All,
        GroupType::Select,
        GroupType::Indirect,
        GroupType::FastFailover,
    ]
    .iter()
    .fold(0, |acc, t| acc | 1 << t.to_wire());
    let actions = [
        ActionType::Output,
        ActionType::PushVlan,
        ActionType::PopVlan,
        ActionType::SetQueue,
        ActionType::Group,
        ActionType::SetNwTtl,
        ActionType::DecNwTtl,
        ActionType::SetField,
    ]
    .iter()
    .fold(0u32, |acc, a| acc | 1 << a.to_wire());
    GroupFeatures {
        types,
        capabilities: group_capabilities::SELECT_WEIGHT
            | group_capabilities::SELECT_LIVENESS
            | group_capabilities::CHAINING
            | group_capabilities::CHAINING_CHECKS,
        max_groups: [MAX_GROUPS; 4],
        actions: [actions; 4],
    }
}
