//! Groups: `OFPT_GROUP_MOD` applied to the pipeline, and group liveness.
//!
//! All four types are supported: ALL (every bucket, on its own copy),
//! SELECT (one live bucket of nonzero weight, chosen by weight from a hash
//! of the packet's flow fields, so one flow sticks to one bucket), INDIRECT
//! (the one bucket) and FAST_FAILOVER (the first live bucket). A bucket is
//! live when its watch port is live (every port is, unless reported down or
//! unknown to a port set the agent gave) and its watch group has a live
//! bucket. Groups may chain (a bucket's group action); chains that loop are
//! refused (`OFPGMFC_LOOP`), and a group another group forwards to or
//! watches cannot be deleted (`OFPGMFC_CHAINED_GROUP`).
//!
//! Deleting a group removes the flow entries that forward to it (their
//! `FLOW_REMOVED` reason is `OFPRR_GROUP_DELETE`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::module::Nanos;
use crate::openflow::error::{ErrorCode, GroupModFailedCode};
use crate::openflow::flow::{flow_mod_flags, flow_removed_reason};
use crate::openflow::group::group_id;
use crate::openflow::{Action, Bucket, FlowRemoved, GroupMod, GroupModCommand, GroupType, PortNo};

use super::pipeline::Pipeline;

/// Most groups, and most buckets in one group.
pub(crate) const MAX_GROUPS: u32 = 65536;
pub(crate) const MAX_BUCKETS: usize = 1024;

/// One packet/byte counter pair.
#[derive(Debug, Default)]
pub(crate) struct Ctr {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Ctr {
    pub fn add(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// A group's counters and its buckets', shared with the plans that credit them.
#[derive(Debug, Default)]
pub(crate) struct GroupCounters {
    pub group: Ctr,
    pub buckets: Box<[Ctr]>,
}

impl GroupCounters {
    /// Credits bucket `bucket`, or the group itself for `u32::MAX` (any
    /// number past the buckets).
    pub fn credit(&self, bucket: u32, packets: u64, bytes: u64) {
        match self.buckets.get(bucket as usize) {
            Some(c) => c.add(packets, bytes),
            None => self.group.add(packets, bytes),
        }
    }
}

/// One group, as installed.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
    pub counters: Arc<GroupCounters>,
    pub created: Nanos,
}

fn fail(c: GroupModFailedCode) -> ErrorCode {
    ErrorCode::GroupModFailed(c)
}

impl Pipeline {
    /// Applies a group mod; returns the flow entries it removed that asked
    /// for `FLOW_REMOVED`.
    pub fn group_mod(&mut self, gm: &GroupMod, now: Nanos) -> Result<Vec<FlowRemoved>, ErrorCode> {
        let id = gm.group_id;
        match gm.command {
            GroupModCommand::Add | GroupModCommand::Modify => {
                if id > group_id::MAX {
                    return Err(fail(GroupModFailedCode::InvalidGroup));
                }
                let exists = self.groups.contains_key(&id);
                if gm.command == GroupModCommand::Add && exists {
                    return Err(fail(GroupModFailedCode::GroupExists));
                }
                if gm.command == GroupModCommand::Modify && !exists {
                    return Err(fail(GroupModFailedCode::UnknownGroup));
                }
                if !exists && self.groups.len() >= MAX_GROUPS as usize {
                    return Err(fail(GroupModFailedCode::OutOfGroups));
                }
                self.check_group(gm)?;
                let buckets = (0..gm.buckets.len()).map(|_| Ctr::default()).collect();
                let (group, created) = match self.groups.get(&id) {
                    // Modify keeps the group's own counters and lifetime;
                    // its buckets are new.
                    Some(old) => {
                        let c = Ctr::default();
                        let (p, b) = old.counters.group.get();
                        c.add(p, b);
                        (c, old.created)
                    }
                    None => (Ctr::default(), now),
                };
                self.groups.insert(
                    id,
                    Group {
                        group_type: gm.group_type,
                        buckets: gm.buckets.clone(),
                        counters: Arc::new(GroupCounters { group, buckets }),
                        created,
                    },
                );
                self.bump();
                Ok(Vec::new())
            }
            GroupModCommand::Delete => {
                let doomed: BTreeSet<u32> = if id == group_id::ALL {
                    self.groups.keys().copied().collect()
                } else if self.groups.contains_key(&id) {
                    [id].into()
                } else {
                    return Ok(Vec::new());
                };
                let chained = self.groups.iter().any(|(g, grp)| {
                    !doomed.contains(g)
                        && grp
                            .buckets
                            .iter()
                            .any(|b| bucket_refs(b).any(|r| doomed.contains(&r)))
                });
                if chained {
                    return Err(fail(GroupModFailedCode::ChainedGroup));
                }
                for g in &doomed {
                    self.groups.remove(g);
                }
                let mut removed = Vec::new();
                for t in 0..self.tables.len() {
                    let gone = self.tables[t]
                        .remove_where(|r| doomed.iter().any(|&g| r.data.uses_group(g)));
                    self.flow_count -= gone.len();
                    removed.extend(
                        gone.iter()
                            .filter(|r| r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0)
                            .map(|r| {
                                super::stats::removed_msg(r, flow_removed_reason::GROUP_DELETE, now)
                            }),
                    );
                }
                self.bump();
                Ok(removed)
            }
        }
    }

    /// Checks a group's type, buckets, watches and chains.
    fn check_group(&self, gm: &GroupMod) -> Result<(), ErrorCode> {
        if gm.buckets.len() > MAX_BUCKETS {
            return Err(fail(GroupModFailedCode::OutOfBuckets));
        }
        if gm.group_type == GroupType::Indirect && gm.buckets.len() != 1 {
            return Err(fail(GroupModFailedCode::InvalidGroup));
        }
        for b in &gm.buckets {
            if gm.group_type == GroupType::FastFailover
                && b.watch_port == PortNo::ANY
                && b.watch_group == group_id::ANY
            {
                return Err(fail(GroupModFailedCode::BadWatch));
            }
            if b.watch_port != PortNo::ANY && b.watch_port.is_reserved() {
                return Err(fail(GroupModFailedCode::BadWatch));
            }
            if b.watch_group != group_id::ANY {
                if b.watch_group == gm.group_id {
                    return Err(fail(GroupModFailedCode::Loop));
                }
                if !self.groups.contains_key(&b.watch_group) {
                    return Err(fail(GroupModFailedCode::BadWatch));
                }
            }
            for a in &b.actions {
                if *a == Action::Group(gm.group_id) {
                    return Err(fail(GroupModFailedCode::Loop));
                }
            }
            self.check_actions(&b.actions, None)?;
            for r in bucket_refs(b) {
                if self.reaches(r, gm.group_id) {
                    return Err(fail(GroupModFailedCode::Loop));
                }
            }
        }
        Ok(())
    }

    /// Whether group `from` forwards to or watches `to`, directly or not.
    fn reaches(&self, from: u32, to: u32) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(g) = stack.pop() {
            if g == to {
                return true;
            }
            if !seen.insert(g) {
                continue;
            }
            if let Some(grp) = self.groups.get(&g) {
                stack.extend(grp.buckets.iter().flat_map(bucket_refs));
            }
        }
        false
    }
}

/// The groups a bucket forwards to or watches.
pub(crate) fn bucket_refs(b: &Bucket) -> impl Iterator<Item = u32> + '_ {
    b.actions
        .iter()
        .filter_map(|a| match a {
            Action::Group(g) => Some(*g),
            _ => None,
        })
        .chain((b.watch_group != group_id::ANY).then_some(b.watch_group))
}
