//! The flow caches in front of the pipeline, as Open vSwitch has them.
//!
//! - Megaflow cache: one hash table per distinct megaflow mask; a packet
//!   key probed under each mask in turn (most-hit mask first) finds the
//!   megaflow. A megaflow's mask is the union of everything the pipeline
//!   looked at for it, so all the packets it covers get the same plan. A
//!   table keeps only the words its mask has bits in, and hashes and
//!   compares only those.
//! - Exact-match cache (EMC): a fixed table of 8192 entries keyed by the
//!   whole flow key, two candidate positions per hash; a hit costs one hash
//!   and one key comparison. It is used only while the stripe has more
//!   than one megaflow mask: with one, the megaflow probe is the cheaper
//!   exact lookup (fewer words, a smaller table). Upcalls and megaflow hits
//!   enter it with probability 1/100, as in Open vSwitch, so that many more
//!   flows than entries leave most entries in place rather than each
//!   evicting the last.
//! - The parse depth a lookup needs ([`Stripe::parse_stage`]): the last
//!   lookup stage any megaflow mask covers, or the whole key with the EMC.
//! - Both store an index into `slots`, which hold the compiled [`Plan`]s
//!   with the packets and bytes they saw in the current batch. Counters go
//!   to the shared flow, table and group counters once per batch
//!   ([`Stripe::flush`]), not once per packet.
//!
//! A cache belongs to a [`Stripe`], one per concurrently running batch (in
//! practice one per worker), so lookups take no lock but the stripe's own,
//! uncontended. Every stripe remembers the pipeline generation it was filled
//! under; a batch that finds another generation empties the stripe first,
//! so no plan outlives a table or group change.
//!
//! Flow entries added or removed one by one (flow mods, expiry, `learn`)
//! do not move the generation: the pipeline logs each such edit with the
//! entry's table, value and mask ([`Pipeline::changed`]), and a batch
//! first drops the megaflows an edit since its last batch may touch
//! ([`Stripe::begin`]): those that looked the table up with a key that
//! agrees with the entry on every bit both masks cover, or with a key an
//! action had rewritten. The others cannot contain a packet that matches
//! the entry, so their plans are still what the tables give. A dropped
//! megaflow leaves its mask table; its slot stays (void) until the cache
//! starts over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::module::{Nanos, Verdict, Verdicts};
use crate::packet::Batch;
use crate::port::PortId;

use super::actions::{self, BatchFrame, Op};
use super::key::{self, Key, Layout, WORDS, Words};
use super::meter;
use super::pipeline::{
    Edit, FlowCounters, Learned, Pipeline, Plan, PlanVerdict, Table, event, fin_or_rst, set_has,
};

const EMC_SIZE: usize = 8192;
/// A megaflow hit or an upcall enters the EMC with probability 1 in this
/// (Open vSwitch's default): many more flows than entries then leave most
/// entries in place instead of each evicting another.
const EMC_INSERT_INV_PROB: u64 = 100;
/// The EMC is consulted only when the megaflow cache has more masks than
/// this: with one mask, the megaflow lookup is a single probe of a smaller
/// table that hashes fewer words.
const EMC_MIN_MASKS: usize = 1;
/// How often a plan's packets refresh (or re-queue) its learned flows:
/// timeouts count in seconds.
const LEARN_TOUCH: Nanos = 100_000_000;
/// Most megaflows a stripe holds; past this it starts over.
pub(crate) const MAX_MEGAFLOWS: usize = 65536;

/// Data-path counters, by index.
pub(crate) mod ctr {
    pub const MEMO_HITS: usize = 0;
    pub const EMC_HITS: usize = 1;
    pub const MEGAFLOW_HITS: usize = 2;
    pub const UPCALLS: usize = 3;
    pub const MULTI_VERSION: usize = 4;
    pub const NO_RECV_DROPS: usize = 5;
    pub const INVALID_TTL: usize = 6;
    pub const TABLE_MISS: usize = 7;
    pub const REWRITE_DROPS: usize = 8;
    pub const CACHE_RESETS: usize = 9;
    pub const NORMAL_PACKETS: usize = 10;
    pub const NORMAL_FLOODS: usize = 11;
    pub const NORMAL_VLAN_DROPS: usize = 12;
    pub const METER_DROPS: usize = 13;
    pub const RESUBMIT_DROPS: usize = 14;
    pub const LEARNED: usize = 15;
    pub const LEARN_SKIPPED: usize = 16;
    pub const LEARN_FAILED: usize = 17;
    /// Geneve options the TLV table cannot take (a critical option it
    /// does not map, a mapped one of another length).
    pub const TUN_METADATA_DROPS: usize = 18;
    pub const N: usize = 19;
    pub const NAMES: [&str; N] = [
        "memo_hits",
        "emc_hits",
        "megaflow_hits",
        "upcalls",
        "multi_version_outputs",
        "no_recv_drops",
        "invalid_ttl",
        "table_miss",
        "rewrite_drops",
        "cache_resets",
        "normal_packets",
        "normal_floods",
        "normal_vlan_drops",
        "meter_drops",
        "resubmit_drops",
        "learned",
        "learn_skipped",
        "learn_failed",
        "tun_metadata_drops",
    ];
}

/// The module's data-path counters.
#[derive(Default)]
pub(crate) struct DpCounters(pub [AtomicU64; ctr::N]);

/// An EMC tag: the hash's high bits and the slot number plus one (0 is
/// an empty entry). Tags sit in their own small array, so a miss touches
/// no key.
const TAG_SLOT_BITS: u32 = 20;
const TAG_SLOT: u64 = (1 << TAG_SLOT_BITS) - 1;

#[inline]
fn tag(h: u64, slot: u32) -> u64 {
    (h & !TAG_SLOT) | (u64::from(slot) + 1)
}

/// The megaflows of one mask: an open-addressing table (linear probing,
/// at most half full) of masked keys, each kept as just the mask's words,
/// so a lookup hashes and compares only what the mask covers.
struct MaskTable {
    mask: Key,
    words: Words,
    /// Per entry: the masked key's hash and its slot plus one (0: empty).
    tags: Vec<(u64, u32)>,
    /// Per entry, `words.len()` words: the masked key.
    values: Vec<u64>,
    len: usize,
    hits: u64,
}

impl MaskTable {
    const MIN_CAP: usize = 8;

    fn new(mask: &Key) -> MaskTable {
        let words = Words::of(mask);
        MaskTable {
            mask: *mask,
            words,
            tags: vec![(0, 0); Self::MIN_CAP],
            values: vec![0; Self::MIN_CAP * words.len()],
            len: 0,
            hits: 0,
        }
    }

    /// The slot of the megaflow `key` falls in, if any.
    #[inline]
    fn get(&self, key: &Key) -> Option<u32> {
        self.position(key).map(|i| self.tags[i].1 - 1)
    }

    /// Where the megaflow `key` falls in is kept, if it is.
    #[inline]
    fn position(&self, key: &Key) -> Option<usize> {
        let h = key.hash_masked(&self.words);
        let (cap, n) = (self.tags.len(), self.words.len());
        let mut i = h as usize & (cap - 1);
        loop {
            let (th, ts) = self.tags[i];
            if ts == 0 {
                return None;
            }
            if th == h && key.eq_masked(&self.words, &self.values[i * n..(i + 1) * n]) {
                return Some(i);
            }
            i = (i + 1) & (cap - 1);
        }
    }

    /// Adds (or repoints) the megaflow that `key` falls in.
    fn insert(&mut self, key: &Key, slot: u32) {
        if 2 * (self.len + 1) > self.tags.len() {
            self.grow();
        }
        let mut v = [0; WORDS];
        self.words.extract(key, &mut v);
        self.put(key.hash_masked(&self.words), &v, slot);
    }

    /// Puts an entry for the masked key whose words are `v` (hash `h`).
    fn put(&mut self, h: u64, v: &[u64], slot: u32) {
        let (cap, n) = (self.tags.len(), self.words.len());
        let v = &v[..n];
        let mut i = h as usize & (cap - 1);
        loop {
            let (th, ts) = self.tags[i];
            let here = &mut self.values[i * n..(i + 1) * n];
            if ts == 0 {
                here.copy_from_slice(v);
                self.tags[i] = (h, slot + 1);
                self.len += 1;
                return;
            }
            if th == h && here == v {
                self.tags[i].1 = slot + 1;
                return;
            }
            i = (i + 1) & (cap - 1);
        }
    }

    /// Removes the megaflow that `key` falls in, if there (backward-shift
    /// deletion: later entries of its probe run move up).
    fn remove(&mut self, key: &Key) {
        let Some(mut i) = self.position(key) else {
            return;
        };
        let (cap, n) = (self.tags.len(), self.words.len());
        self.tags[i] = (0, 0);
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & (cap - 1);
            let (th, ts) = self.tags[j];
            if ts == 0 {
                return;
            }
            let home = th as usize & (cap - 1);
            // Entry j may fill the hole at i unless its home lies
            // cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.tags[i] = self.tags[j];
                self.values.copy_within(j * n..(j + 1) * n, i * n);
                self.tags[j] = (0, 0);
                i = j;
            }
        }
    }

    fn grow(&mut self) {
        let n = self.words.len();
        let cap = 2 * self.tags.len();
        let tags = std::mem::replace(&mut self.tags, vec![(0, 0); cap]);
        let values = std::mem::replace(&mut self.values, vec![0; cap * n]);
        self.len = 0;
        for (i, (h, s)) in tags.into_iter().enumerate() {
            if s != 0 {
                self.put(h, &values[i * n..(i + 1) * n], s - 1);
            }
        }
    }
}

/// A plan and what it saw this batch.
struct Slot {
    plan: Plan,
    /// The megaflow: a key (masked) and the mask.
    key: Key,
    mask: Key,
    /// The mask holds nothing but `in_port` (see [`Stripe::port_only`]).
    port_only: bool,
    /// Dropped by a table edit: no lookup returns it any more.
    stale: bool,
    /// When its learned flows were last touched.
    learn_touched: Nanos,
    packets: u64,
    bytes: u64,
    /// A TCP packet with FIN or RST came this batch (plans with
    /// [`Plan::fins`] only).
    fin: bool,
    dirty: bool,
    /// The batch in which `set` was recorded in the verdicts.
    batch: u64,
    set: Verdict,
}

/// One cache and its batch bookkeeping.
pub(crate) struct Stripe {
    generation: u64,
    batch: u64,
    emc_tags: Vec<u64>,
    emc_keys: Vec<Key>,
    masks: Vec<MaskTable>,
    /// The last lookup stage any mask has bits in ([`key::STAGES`]).
    stage: usize,
    slots: Vec<Slot>,
    dirty: Vec<u32>,
    local: [u64; ctr::N],
    /// State of the generator that draws EMC insertions.
    rng: u64,
    /// The per-batch memo, kept here between batches (see `process`).
    pub memo: Option<Box<super::Memo>>,
    /// NORMAL's scratch, kept here between batches.
    pub normal: super::normal::Dests,
    /// The batch's time, for meters.
    now: Nanos,
    /// The last table edit applied ([`Pipeline::edit_seq`]).
    edit_seq: u64,
    /// Learned flows to install after the batch ([`Learned::touch`]).
    pub pending: Vec<Arc<Learned>>,
}

impl Default for Stripe {
    fn default() -> Self {
        Stripe {
            generation: 0,
            batch: 0,
            emc_tags: Vec::new(),
            emc_keys: Vec::new(),
            masks: Vec::new(),
            stage: 0,
            slots: Vec::new(),
            dirty: Vec::new(),
            local: [0; ctr::N],
            rng: 0x2545_f491_4f6c_dd1d,
            memo: None,
            normal: Default::default(),
            now: 0,
            edit_seq: 0,
            pending: Vec::new(),
        }
    }
}

impl Stripe {
    /// Starts a batch seen at `now` with the pipeline as it is: empties
    /// the cache if its generation moved, else drops the megaflows the
    /// table edits since the last batch touch.
    pub fn begin(&mut self, pipe: &Pipeline, now: Nanos) {
        self.now = now;
        if self.emc_tags.is_empty() {
            self.emc_tags = vec![0; EMC_SIZE];
            self.emc_keys = vec![Key::default(); EMC_SIZE];
        }
        if self.generation != pipe.generation {
            self.clear();
            self.generation = pipe.generation;
        } else if self.edit_seq != pipe.edit_seq {
            let missed = pipe.edits.front().is_none_or(|e| e.seq > self.edit_seq + 1);
            if missed {
                self.clear();
            } else {
                let seen = self.edit_seq;
                for e in pipe.edits.iter().filter(|e| e.seq > seen) {
                    self.drop_touched(e);
                }
            }
        }
        self.edit_seq = pipe.edit_seq;
        self.batch += 1;
    }

    /// Drops the megaflows `e` may change (see the module doc).
    fn drop_touched(&mut self, e: &Edit) {
        let mut emptied = false;
        for s in &mut self.slots {
            // A table in `rewritten` may be one the plan only learns into
            // (a `learn` with a limit): not among its lookups.
            if s.stale
                || !(set_has(&s.plan.rewritten, e.table)
                    || s.plan.tables.iter().any(|&(t, _)| t == e.table))
            {
                continue;
            }
            let touched = set_has(&s.plan.rewritten, e.table)
                || (0..key::WORDS)
                    .all(|w| (s.key.0[w] ^ e.value.0[w]) & s.mask.0[w] & e.mask.0[w] == 0);
            if !touched {
                continue;
            }
            s.stale = true;
            if let Some(mt) = self.masks.iter_mut().find(|m| m.mask == s.mask) {
                mt.remove(&s.key);
                emptied |= mt.len == 0;
            }
        }
        if emptied {
            self.masks.retain(|m| m.len > 0);
            self.stage = self
                .masks
                .iter()
                .map(|m| key::last_stage(&m.mask))
                .max()
                .unwrap_or(0);
        }
    }

    /// Forgets everything (the next batch starts empty).
    pub fn invalidate(&mut self) {
        self.clear();
        self.generation = 0;
    }

    fn clear(&mut self) {
        self.emc_tags.fill(0);
        self.masks.clear();
        self.stage = 0;
        self.slots.clear();
        self.dirty.clear();
    }

    pub fn count(&mut self, c: usize) {
        self.local[c] += 1;
    }

    /// Counts one packet through NORMAL, with `counts` ([`super::NV_FLOOD`],
    /// [`super::NV_VLAN_DROP`]).
    #[inline]
    pub fn count_normal(&mut self, counts: u8) {
        self.local[ctr::NORMAL_PACKETS] += 1;
        if counts != 0 {
            self.local[ctr::NORMAL_FLOODS] += u64::from(counts & super::NV_FLOOD);
            self.local[ctr::NORMAL_VLAN_DROPS] += u64::from(counts & super::NV_VLAN_DROP != 0);
        }
    }

    pub fn count_n(&mut self, c: usize, n: u64) {
        self.local[c] += n;
    }

    #[inline]
    fn emc_pos(h: u64) -> [usize; 2] {
        [
            h as usize & (EMC_SIZE - 1),
            (h >> 32) as usize & (EMC_SIZE - 1),
        ]
    }

    /// How far a packet must be parsed for [`Stripe::lookup`]
    /// ([`key::parse_upto`]): to the last stage any megaflow mask covers,
    /// or all the way when the EMC (which compares whole keys) is in use.
    #[inline]
    pub fn parse_stage(&self) -> usize {
        if self.emc_on() {
            key::STAGE_L4
        } else {
            self.stage
        }
    }

    /// Whether the EMC is in use (see [`EMC_MIN_MASKS`]).
    #[inline]
    fn emc_on(&self) -> bool {
        self.masks.len() > EMC_MIN_MASKS
    }

    /// Puts `key` in the EMC, 1 time in [`EMC_INSERT_INV_PROB`].
    #[inline]
    fn emc_maybe_insert(&mut self, key: &Key, slot: u32) {
        // xorshift64: cheap, and independent of the traffic (a counter
        // would pick the same few flows of a cyclic pattern every time).
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        if x.is_multiple_of(EMC_INSERT_INV_PROB) {
            self.emc_insert(key, key.hash64(), slot);
        }
    }

    fn emc_insert(&mut self, key: &Key, h: u64, slot: u32) {
        let [a, b] = Self::emc_pos(h);
        let at = if self.emc_tags[a] == 0 {
            a
        } else if self.emc_tags[b] == 0 || (h >> 20) & 1 == 1 {
            b
        } else {
            a
        };
        self.emc_tags[at] = tag(h, slot);
        self.emc_keys[at] = *key;
    }

    /// The EMC's plan for `key`, if it has one. Out of line: the whole-key
    /// hash and compare would otherwise sit in every caller's packet loop.
    #[inline(never)]
    fn emc_lookup(&mut self, key: &Key) -> Option<u32> {
        let h = key.hash64();
        for at in Self::emc_pos(h) {
            let t = self.emc_tags[at];
            if t != 0 && (t ^ h) & !TAG_SLOT == 0 && self.emc_keys[at] == *key {
                let s = ((t & TAG_SLOT) - 1) as u32;
                if self.slots.get(s as usize).is_some_and(|s| s.stale) {
                    self.emc_tags[at] = 0;
                    continue;
                }
                self.local[ctr::EMC_HITS] += 1;
                return Some(s);
            }
        }
        None
    }

    /// Finds the plan for `key` in the EMC (if in use), then the
    /// megaflows. `key` need only be parsed to [`Stripe::parse_stage`].
    #[inline]
    pub fn lookup(&mut self, key: &Key) -> Option<u32> {
        let emc = self.emc_on();
        if emc && let Some(s) = self.emc_lookup(key) {
            return Some(s);
        }
        for i in 0..self.masks.len() {
            let mt = &mut self.masks[i];
            if let Some(s) = mt.get(key) {
                mt.hits += 1;
                if i > 0 && mt.hits > self.masks[i - 1].hits {
                    self.masks.swap(i, i - 1);
                }
                self.local[ctr::MEGAFLOW_HITS] += 1;
                if emc {
                    self.emc_maybe_insert(key, s);
                }
                return Some(s);
            }
        }
        None
    }

    /// Adds the megaflow (`key` under `mask`) compiled to `plan`. Returns
    /// its slot, and whether the cache had to start over (so earlier slot
    /// numbers are void).
    pub fn insert(
        &mut self,
        pipe: &Pipeline,
        now: Nanos,
        dp: &DpCounters,
        key: &Key,
        mask: &Key,
        plan: Plan,
    ) -> (u32, bool) {
        self.local[ctr::UPCALLS] += 1;
        let mut reset = false;
        if self.slots.len() >= MAX_MEGAFLOWS {
            self.flush(pipe, now, dp);
            self.clear();
            self.local[ctr::CACHE_RESETS] += 1;
            reset = true;
        }
        let s = self.slots.len() as u32;
        self.slots.push(Slot {
            plan,
            key: key.and(mask),
            mask: *mask,
            port_only: {
                let mut k = *mask;
                key::IN_PORT.set(&mut k, 0);
                k.0.iter().all(|&w| w == 0)
            },
            stale: false,
            learn_touched: 0,
            packets: 0,
            bytes: 0,
            fin: false,
            dirty: false,
            batch: 0,
            set: Verdict::Drop,
        });
        match self.masks.iter_mut().find(|m| m.mask == *mask) {
            Some(mt) => mt.insert(key, s),
            None => {
                let mut mt = MaskTable::new(mask);
                mt.insert(key, s);
                self.masks.push(mt);
                self.stage = self.stage.max(key::last_stage(mask));
            }
        }
        if self.emc_on() {
            self.emc_maybe_insert(key, s);
        }
        (s, reset)
    }

    /// Counts `packets` packets of `bytes` bytes for the plan in `slot`.
    #[inline]
    pub fn account(&mut self, slot: u32, packets: u64, bytes: u64) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.packets += packets;
            s.bytes += bytes;
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// The controller tag of the plan in `slot`, if its packets go to the
    /// controller.
    #[inline]
    pub fn controller_tag(&self, slot: u32) -> Option<u32> {
        self.slots
            .get(slot as usize)
            .and_then(|s| s.plan.controller.as_ref().map(|_| s.plan.ctl_tag))
    }

    /// Whether the plan in `slot` neither rewrites packets, nor meters
    /// them, nor sends them to the controller: its packets only count (the
    /// memo's fast hits; NORMAL, if the plan has it, still runs per packet).
    #[inline]
    pub fn fast(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).is_none_or(|s| {
            s.plan.ops.is_empty()
                && s.plan.controller.is_none()
                && s.plan.meters.is_empty()
                && s.plan.versions.is_empty()
                && s.plan.fins.is_empty()
        })
    }

    /// Notes whether packet `frame` of the plan in `slot` is a TCP packet
    /// with FIN or RST, if the plan has a `fin_timeout` (`l4`: its TCP
    /// header's offset).
    #[inline]
    pub fn tcp_flags(&mut self, slot: u32, frame: &[u8], l4: u16) {
        if let Some(s) = self.slots.get_mut(slot as usize)
            && !s.plan.fins.is_empty()
            && fin_or_rst(frame, l4)
        {
            s.fin = true;
        }
    }

    /// The rewrites of the plan in `slot`, if some output of it sets
    /// tunnel metadata.
    #[inline]
    pub fn tunnel_ops(&self, slot: u32) -> Option<&[Op]> {
        self.slots
            .get(slot as usize)
            .filter(|s| s.plan.tunnel)
            .map(|s| &*s.plan.ops)
    }

    /// For a plan in `slot` that sets tunnel metadata and sends to the
    /// controller: the ops that set it before the controller output
    /// ([`super::pipeline::Plan::ctl_tunnel`]; maybe none).
    #[inline]
    pub fn controller_tunnel_ops(&self, slot: u32) -> Option<&[Op]> {
        self.slots
            .get(slot as usize)
            .filter(|s| s.plan.tunnel && s.plan.controller.is_some())
            .map(|s| &*s.plan.ctl_tunnel)
    }

    /// The outputs of the plan in `slot` that want bytes of their own
    /// ([`Plan::versions`]).
    #[inline]
    pub fn versions(&self, slot: u32) -> &[(Box<[Op]>, PortId)] {
        self.slots
            .get(slot as usize)
            .map_or(&[], |s| &s.plan.versions)
    }

    /// Whether the plan in `slot` rewrites or meters packets (and so needs
    /// their whole layout: a meter may remark the DSCP).
    #[inline]
    pub fn rewrites(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| {
            !s.plan.ops.is_empty() || !s.plan.meters.is_empty() || !s.plan.versions.is_empty()
        })
    }

    /// Whether the megaflow in `slot` matches on the input port alone:
    /// every frame of a batch that parses hits it once one has.
    #[inline]
    pub fn port_only(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| s.port_only)
    }

    /// Whether the megaflow in `slot` looks at tunnel metadata (its mask
    /// has bits in the tunnel words): then packets with the same bytes
    /// may not share it.
    #[inline]
    pub fn reads_tunnel(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_none_or(|s| key::reads_tunnel(&s.mask))
    }

    /// Whether the plan in `slot` outputs to NORMAL (decided per packet).
    #[inline]
    pub fn normal(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| s.plan.normal)
    }

    /// Applies the plan's meters, then its rewrites, to packet `i`; false
    /// if it must drop. A meter's decision is never cached: it is taken
    /// here for every packet, hits included.
    #[inline]
    pub fn rewrite(&mut self, batch: &mut Batch<'_>, i: usize, slot: u32, layout: Layout) -> bool {
        let Some(s) = self.slots.get(slot as usize) else {
            return false;
        };
        if !s.plan.meters.is_empty()
            && !meter::police(
                &s.plan.meters,
                &mut BatchFrame { batch, i },
                layout,
                self.now,
            )
        {
            self.local[ctr::METER_DROPS] += 1;
            return false;
        }
        if s.plan.ops.is_empty()
            || actions::apply(&mut BatchFrame { batch, i }, layout, &s.plan.ops)
        {
            return true;
        }
        self.local[ctr::REWRITE_DROPS] += 1;
        false
    }

    /// The verdict of the plan in `slot` (a port set is recorded in `out`
    /// once per batch).
    #[inline]
    pub fn verdict(&mut self, slot: u32, out: &mut Verdicts) -> Verdict {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return Verdict::Drop;
        };
        match &s.plan.verdict {
            PlanVerdict::Drop => Verdict::Drop,
            PlanVerdict::Port(p) => Verdict::Port(*p),
            PlanVerdict::Flood => Verdict::Flood,
            PlanVerdict::Controller => Verdict::Controller,
            PlanVerdict::Ports(set, hairpin) => {
                if s.batch != self.batch {
                    s.set = out.add_set_with(set, *hairpin);
                    s.batch = self.batch;
                }
                s.set
            }
        }
    }

    /// Adds this batch's counts to the flow, table, group and module
    /// counters. Credits to one counter from several megaflows are summed
    /// first, so a busy entry costs one atomic add per batch.
    pub fn flush(&mut self, pipe: &Pipeline, now: Nanos, dp: &DpCounters) {
        let mut flows: Acc<'_, FlowCounters> = Acc::new();
        let mut tables: Acc<'_, Table> = Acc::new();
        let put_flow = |f: &FlowCounters, p: u64, b: u64| f.add(p, b, now);
        // For tables, the pair is (lookups, matches).
        let put_table = |t: &Table, l: u64, m: u64| t.add(l, m);
        for &s in &self.dirty {
            let Some(slot) = self.slots.get(s as usize) else {
                continue;
            };
            let (p, b, plan) = (slot.packets, slot.bytes, &slot.plan);
            for f in &plan.flows {
                flows.add(f, p, b, put_flow);
            }
            for &(t, matched) in &plan.tables {
                if let Some(t) = pipe.tables.get(usize::from(t)) {
                    tables.add(t, p, if matched { p } else { 0 }, put_table);
                }
            }
            for (g, bucket) in &plan.groups {
                g.credit(*bucket, p, b);
            }
            for m in &plan.meters {
                m.credit(p, b);
            }
            for (bit, c) in [
                (event::MULTI_VERSION, ctr::MULTI_VERSION),
                (event::NO_RECV, ctr::NO_RECV_DROPS),
                (event::INVALID_TTL, ctr::INVALID_TTL),
                (event::MISS, ctr::TABLE_MISS),
                (event::RESUBMIT_LIMIT, ctr::RESUBMIT_DROPS),
                (event::LEARN_FAILED, ctr::LEARN_FAILED),
            ] {
                if plan.events & bit != 0 {
                    self.local[c] += p;
                }
            }
        }
        flows.finish(put_flow);
        tables.finish(put_table);
        // Learned flows, at most every LEARN_TOUCH per plan: a busy plan
        // then costs nothing but this check.
        for &s in &self.dirty {
            if let Some(slot) = self.slots.get_mut(s as usize)
                && !slot.plan.learns.is_empty()
                && (slot.learn_touched == 0
                    || now.saturating_sub(slot.learn_touched) >= LEARN_TOUCH)
            {
                slot.learn_touched = now;
                for l in &slot.plan.learns {
                    l.touch(now, &mut self.pending);
                }
            }
        }
        for &s in &self.dirty {
            if let Some(slot) = self.slots.get_mut(s as usize) {
                if slot.fin {
                    slot.fin = false;
                    for f in &slot.plan.fins {
                        f.apply();
                    }
                }
                slot.packets = 0;
                slot.bytes = 0;
                slot.dirty = false;
            }
        }
        self.dirty.clear();
        for (c, n) in dp.0.iter().zip(&mut self.local) {
            if *n != 0 {
                c.fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
    }
}

/// Sums pairs of counts per target (compared by address) before they go
/// to shared atomics: a few targets take most credits.
struct Acc<'a, T> {
    e: [(Option<&'a T>, u64, u64); 8],
    next: usize,
}

impl<'a, T> Acc<'a, T> {
    fn new() -> Self {
        Acc {
            e: [(None, 0, 0); 8],
            next: 0,
        }
    }

    #[inline]
    fn add(&mut self, t: &'a T, x: u64, y: u64, put: impl Fn(&T, u64, u64)) {
        for e in &mut self.e {
            if let Some(u) = e.0
                && std::ptr::eq(u, t)
            {
                e.1 += x;
                e.2 += y;
                return;
            }
        }
        let e = &mut self.e[self.next % 8];
        self.next += 1;
        if let Some(u) = e.0 {
            put(u, e.1, e.2);
        }
        *e = (Some(t), x, y);
    }

    fn finish(self, put: impl Fn(&T, u64, u64)) {
        for (t, x, y) in self.e {
            if let Some(t) = t {
                put(t, x, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::flow::key::{ETH_DST, IN_PORT, IPV4_DST, TP_SRC};

    /// A megaflow table finds each of many masked keys' own slot, the same
    /// one for keys that differ outside the mask, and none for others.
    #[test]
    fn mask_tables_grow_and_stay_exact() {
        let mut mask = Key::default();
        IN_PORT.all(&mut mask);
        IPV4_DST.all(&mut mask);
        let mut t = MaskTable::new(&mask);
        let key = |port: u64, dst: u64, sport: u64| {
            let mut k = Key::default();
            IN_PORT.set(&mut k, port);
            IPV4_DST.set(&mut k, dst);
            TP_SRC.set(&mut k, sport);
            ETH_DST.set(&mut k, dst ^ port);
            k
        };
        for i in 0..5000u64 {
            t.insert(&key(i % 3, i, 0), i as u32);
        }
        assert_eq!(t.len, 5000);
        assert!(t.tags.len() >= 10_000);
        for i in 0..5000u64 {
            assert_eq!(t.get(&key(i % 3, i, 7)), Some(i as u32));
            assert_eq!(t.get(&key(i % 3 + 1, i, 0)), None);
        }
        assert_eq!(t.get(&key(0, 5001, 0)), None);
        // Repointing an existing megaflow keeps one entry.
        t.insert(&key(0, 0, 9), 77);
        assert_eq!((t.get(&key(0, 0, 0)), t.len), (Some(77), 5000));
        // Removing every third leaves the others findable (the probe runs
        // close up behind a removed entry).
        for i in (0..5000u64).step_by(3) {
            t.remove(&key(i % 3, i, 0));
        }
        assert_eq!(t.len, 5000 - 1667);
        for i in 1..5000u64 {
            let want = (i % 3 != 0).then_some(i as u32);
            assert_eq!(t.get(&key(i % 3, i, 5)), want, "{i}");
        }
        t.remove(&key(0, 0, 0));
        assert_eq!(t.len, 5000 - 1667);
    }
}
