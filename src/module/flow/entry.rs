//! What the pipeline keeps per flow entry and per table (a child of
//! `pipeline`): an entry's counters (shared with the cached plans that
//! credit them, and with the `learn`s that refresh them), its program, the
//! table with its classifier, and the log of table edits the caches follow.

use super::*;

/// The table edits a pipeline remembers ([`Pipeline::edits`]).
pub(super) const MAX_EDITS: usize = 4096;

/// One edit of a table ([`Pipeline::changed`]): the rule's value and mask.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Edit {
    pub seq: u64,
    pub table: u8,
    pub value: Key,
    pub mask: Key,
}

/// Tables as a 256-bit set.
pub(crate) type TableSet = [u64; 4];

pub(crate) fn set_has(s: &TableSet, t: u8) -> bool {
    s[usize::from(t / 64)] & (1 << (t % 64)) != 0
}

/// A flow entry's counters, shared with the plans that credit it.
#[derive(Debug, Default)]
pub(crate) struct FlowCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// When a packet last hit the entry (its install time until then).
    pub last_used: AtomicU64,
    /// When the entry was last added or refreshed by a `learn`: where its
    /// hard timeout counts from (as Open vSwitch's `modified`).
    pub modified: AtomicU64,
    /// The entry has left its table (deleted, expired, replaced with new
    /// counters): a `learn` that refreshes it must add it again.
    pub removed: AtomicBool,
    /// Timeouts a `fin_timeout` shortened (`fin.rs`).
    pub fin: FinTimeouts,
}

impl FlowCounters {
    pub fn new(now: Nanos) -> Arc<FlowCounters> {
        Arc::new(FlowCounters {
            last_used: AtomicU64::new(now),
            modified: AtomicU64::new(now),
            ..FlowCounters::default()
        })
    }

    /// A `learn` found the entry again at `now`: both timeouts restart.
    pub fn refresh(&self, now: Nanos) {
        if self.last_used.load(Ordering::Relaxed) < now {
            self.last_used.store(now, Ordering::Relaxed);
        }
        if self.modified.load(Ordering::Relaxed) < now {
            self.modified.store(now, Ordering::Relaxed);
        }
    }

    /// Credits `packets` packets of `bytes` bytes seen at `now`.
    pub fn add(&self, packets: u64, bytes: u64, now: Nanos) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.last_used.load(Ordering::Relaxed) < now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }
}

/// An entry's instructions in execution order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Program {
    pub apply: Option<Vec<Action>>,
    pub clear: bool,
    pub write: Option<Vec<Action>>,
    pub metadata: Option<(u64, u64)>,
    pub goto: Option<u8>,
    /// The meter instruction's meter id.
    pub meter: Option<u32>,
    /// The entry is (a dimension of) a conjunctive match: its actions are
    /// `conjunction`s (and notes), never run.
    pub conj: bool,
}

impl Program {
    pub fn new(insts: &[Instruction]) -> Program {
        let mut p = Program::default();
        for i in insts {
            match i {
                Instruction::ApplyActions(a) => p.apply = Some(a.clone()),
                Instruction::ClearActions => p.clear = true,
                Instruction::WriteActions(a) => p.write = Some(a.clone()),
                Instruction::WriteMetadata { metadata, mask } => {
                    p.metadata = Some((*metadata, *mask))
                }
                Instruction::GotoTable(t) => p.goto = Some(*t),
                Instruction::Meter(m) => p.meter = Some(*m),
            }
        }
        let conj = super::conj::conjunctions(&p).next().is_some();
        p.conj = conj;
        p
    }
}

/// One flow entry, as installed.
#[derive(Debug, Clone)]
pub(crate) struct FlowEntry {
    pub table_id: u8,
    pub match_: Match,
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub instructions: Vec<Instruction>,
    pub prog: Program,
    pub created: Nanos,
    pub counters: Arc<FlowCounters>,
}

impl FlowEntry {
    /// Its idle and hard timeouts now (a `fin_timeout` may have shortened
    /// them).
    pub fn timeouts(&self) -> (u16, u16) {
        self.counters
            .fin
            .effective(self.idle_timeout, self.hard_timeout)
    }

    fn actions(&self) -> impl Iterator<Item = &Action> {
        self.instructions
            .iter()
            .filter_map(Instruction::actions)
            .flatten()
    }

    /// Whether an output action names `port` (the `out_port` filter).
    pub fn outputs_to(&self, port: PortNo) -> bool {
        self.actions()
            .any(|a| matches!(a, Action::Output { port: p, .. } if *p == port))
    }

    /// Whether a group action names `group` (the `out_group` filter).
    pub fn uses_group(&self, group: u32) -> bool {
        self.actions()
            .any(|a| matches!(a, Action::Group(g) if *g == group))
    }
}

/// One flow table.
#[derive(Default)]
pub(crate) struct Table {
    pub cls: Classifier<FlowEntry>,
    pub lookups: AtomicU64,
    pub matched: AtomicU64,
    /// How many of its entries are conjunctive ([`Program::conj`]): a table
    /// without any is looked up the plain way.
    pub conj: usize,
}

impl Clone for Table {
    fn clone(&self) -> Table {
        Table {
            cls: self.cls.clone(),
            lookups: AtomicU64::new(self.lookups.load(Ordering::Relaxed)),
            matched: AtomicU64::new(self.matched.load(Ordering::Relaxed)),
            conj: self.conj,
        }
    }
}

impl Table {
    /// Adds a rule (see [`Classifier::insert`]).
    pub fn insert(&mut self, rule: Rule<FlowEntry>) {
        self.conj += usize::from(rule.data.prog.conj);
        self.cls.insert(rule);
    }

    /// Removes every rule for which `pred` holds; their counters learn
    /// that they are gone (a `learn` refreshing one adds it again).
    pub fn remove_where(
        &mut self,
        pred: impl FnMut(&Rule<FlowEntry>) -> bool,
    ) -> Vec<Rule<FlowEntry>> {
        let gone = self.cls.remove_where(pred);
        for r in &gone {
            r.data.counters.removed.store(true, Ordering::Relaxed);
            self.conj = self.conj.saturating_sub(usize::from(r.data.prog.conj));
        }
        gone
    }

    /// Counts `lookups` lookups of which `matched` found an entry.
    pub fn add(&self, lookups: u64, matched: u64) {
        self.lookups.fetch_add(lookups, Ordering::Relaxed);
        if matched != 0 {
            self.matched.fetch_add(matched, Ordering::Relaxed);
        }
    }
}
