//! A tuple-space-search classifier: one flow table's rules.
//!
//! Rules are grouped into subtables, one per distinct mask; within a
//! subtable, rules are hashed by their masked value. A lookup visits the
//! subtables in decreasing order of the highest priority each holds and
//! stops as soon as no remaining subtable could beat the best match so far,
//! so a high-priority hit costs one or two probes whatever the table size.
//!
//! Every subtable a lookup probes adds its mask to the caller's
//! "unwildcard" mask: the lookup's result depends on exactly those bits, so
//! any packet that agrees with this one on them gets the same answer. That
//! is what makes a megaflow (see `cache`) correct.
//!
//! The probe is staged, as in Open vSwitch: a subtable keeps, for each
//! lookup stage of its mask but the last (metadata, L2, L3, L4:
//! [`key::STAGES`]), the set of its rules' values under the mask up to that
//! stage, and checks a key against them in order. The first stage no rule
//! agrees with ends the probe, and only the stages up to it are
//! unwildcarded: a subtable of rules on transport ports that a packet
//! already fails at L3 leaves the packet's ports out of its megaflow.
//!
//! Ties between overlapping rules of the same priority, which OpenFlow
//! leaves undefined, go to the rule installed first (lowest `seq`).

use std::collections::BTreeMap;

use super::key::{self, Key, KeyMap};

/// One rule: a masked match, a priority and what the table keeps with it.
#[derive(Debug, Clone)]
pub(crate) struct Rule<T> {
    pub priority: u16,
    /// Installation order, for ties.
    pub seq: u64,
    /// The match's value, already masked.
    pub value: Key,
    pub mask: Key,
    pub data: T,
}

impl<T> Rule<T> {
    /// Whether `self` wins over `other` (higher priority, then older).
    #[inline]
    fn beats(&self, other: &Rule<T>) -> bool {
        self.priority > other.priority || (self.priority == other.priority && self.seq < other.seq)
    }
}

/// One step of a subtable's staged lookup: the subtable's mask up to the
/// end of a stage, and how many rules have each value under it.
#[derive(Clone)]
struct Stage {
    mask: Key,
    values: KeyMap<u32>,
}

#[derive(Clone)]
struct Subtable<T> {
    mask: Key,
    /// The stages before the last one the mask has bits in, each with its
    /// mask cumulated ([`key::STAGES`]); stages that add no bit are left
    /// out.
    stages: Vec<Stage>,
    /// Rules by masked value, each list best first.
    rules: KeyMap<Vec<Rule<T>>>,
    /// How many rules of each priority, to keep `max_priority` exact.
    priorities: BTreeMap<u16, usize>,
    max_priority: u16,
}

impl<T> Subtable<T> {
    fn new(mask: Key) -> Subtable<T> {
        let mut stages = Vec::new();
        let mut cum = Key::default();
        for s in &key::STAGES[..key::last_stage(&mask)] {
            let add = mask.and(s);
            if add != Key::default() {
                cum.or_assign(&add);
                stages.push(Stage {
                    mask: cum,
                    values: KeyMap::default(),
                });
            }
        }
        Subtable {
            mask,
            stages,
            rules: KeyMap::default(),
            priorities: BTreeMap::new(),
            max_priority: 0,
        }
    }

    /// Counts a rule's value in (or, `add` false, out of) every stage.
    fn count(&mut self, value: &Key, add: bool) {
        for st in &mut self.stages {
            let v = value.and(&st.mask);
            if add {
                *st.values.entry(v).or_insert(0) += 1;
            } else if let Some(n) = st.values.get_mut(&v) {
                *n -= 1;
                if *n == 0 {
                    st.values.remove(&v);
                }
            }
        }
    }

    /// The best rule for `key`, stage by stage: the first stage no rule
    /// agrees with ends the search, having unwildcarded only the stages
    /// up to it.
    #[inline]
    fn find(&self, key: &Key, unwildcard: &mut Key, pred: impl Fn(&T) -> bool) -> Option<&Rule<T>> {
        self.probe(key, unwildcard)
            .and_then(|l| l.iter().find(|r| pred(&r.data)))
    }

    /// The rules (best first) whose value `key` has under the mask, if
    /// any, checked stage by stage as [`Subtable::find`] says.
    #[inline]
    fn probe(&self, key: &Key, unwildcard: &mut Key) -> Option<&Vec<Rule<T>>> {
        for st in &self.stages {
            let k = key.and(&st.mask);
            if !st.values.contains_key(&k) {
                unwildcard.or_assign(&st.mask);
                return None;
            }
        }
        unwildcard.or_assign(&self.mask);
        self.rules.get(&key.and(&self.mask))
    }

    fn refresh_max(&mut self) {
        self.max_priority = self.priorities.keys().next_back().copied().unwrap_or(0);
    }
}

/// The rules of one table (cloned whole to snapshot a table before an
/// atomic bundle commit).
#[derive(Clone)]
pub(crate) struct Classifier<T> {
    subtables: Vec<Option<Subtable<T>>>,
    free: Vec<usize>,
    by_mask: KeyMap<usize>,
    /// Subtable indices, highest `max_priority` first.
    order: Vec<usize>,
    len: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Self {
        Classifier {
            subtables: Vec::new(),
            free: Vec::new(),
            by_mask: KeyMap::default(),
            order: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Classifier<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of subtables (distinct masks).
    #[cfg(test)]
    pub fn subtable_count(&self) -> usize {
        self.order.len()
    }

    fn st(&self, i: usize) -> &Subtable<T> {
        // `order` and `by_mask` only ever name live subtables.
        self.subtables[i]
            .as_ref()
            .expect("classifier index names a live subtable")
    }

    fn st_mut(&mut self, i: usize) -> &mut Subtable<T> {
        self.subtables[i]
            .as_mut()
            .expect("classifier index names a live subtable")
    }

    /// Puts subtable `i` (not in `order`) at its place in `order`.
    fn place(&mut self, i: usize) {
        let p = self.st(i).max_priority;
        let at = self
            .order
            .partition_point(|&j| self.st(j).max_priority >= p);
        self.order.insert(at, i);
    }

    fn unplace(&mut self, i: usize) {
        if let Some(at) = self.order.iter().position(|&j| j == i) {
            self.order.remove(at);
        }
    }

    /// Adds a rule. The caller has removed any rule with the same value,
    /// mask and priority it means to replace.
    pub fn insert(&mut self, rule: Rule<T>) {
        let idx = match self.by_mask.get(&rule.mask) {
            Some(&i) => i,
            None => {
                let st = Subtable::new(rule.mask);
                let i = match self.free.pop() {
                    Some(i) => {
                        self.subtables[i] = Some(st);
                        i
                    }
                    None => {
                        self.subtables.push(Some(st));
                        self.subtables.len() - 1
                    }
                };
                self.by_mask.insert(rule.mask, i);
                self.place(i);
                i
            }
        };
        let st = self.st_mut(idx);
        *st.priorities.entry(rule.priority).or_insert(0) += 1;
        let old_max = st.max_priority;
        st.refresh_max();
        let moved = st.max_priority != old_max;
        st.count(&rule.value, true);
        let list = st.rules.entry(rule.value).or_default();
        let at = list.partition_point(|r| r.beats(&rule));
        // Most lists hold one rule: short ones grow one rule at a time (a
        // Vec's first allocation would hold four, 1.2 KB of empty rules
        // per flow entry).
        if list.len() < SHORT_LIST {
            list.reserve_exact(1);
        }
        list.insert(at, rule);
        self.len += 1;
        if moved {
            self.unplace(idx);
            self.place(idx);
        }
    }

    /// The best rule matching `key`; ORs every probed subtable's mask into
    /// `unwildcard`.
    #[cfg(test)]
    #[inline]
    pub fn lookup(&self, key: &Key, unwildcard: &mut Key) -> Option<&Rule<T>> {
        self.lookup_with(key, unwildcard, |_| true)
    }

    /// [`Classifier::lookup`] among the rules whose data satisfies `pred`
    /// (the pipeline's register fields, checked beside the key).
    #[inline]
    pub fn lookup_with(
        &self,
        key: &Key,
        unwildcard: &mut Key,
        pred: impl Fn(&T) -> bool,
    ) -> Option<&Rule<T>> {
        let mut best: Option<&Rule<T>> = None;
        for &i in &self.order {
            let st = self.st(i);
            if let Some(b) = best
                && st.max_priority < b.priority
            {
                break;
            }
            if let Some(r) = st.find(key, unwildcard, &pred)
                && best.is_none_or(|b| r.beats(b))
            {
                best = Some(r);
            }
        }
        best
    }

    /// Every rule matching `key` whose priority is above `floor` and whose
    /// data satisfies `pred`, in no particular order; ORs into `unwildcard`
    /// the masks of every subtable that could hold one (conjunctive
    /// matches need all of them, not just the best).
    pub fn lookup_all(
        &self,
        key: &Key,
        unwildcard: &mut Key,
        floor: i32,
        pred: impl Fn(&T) -> bool,
    ) -> Vec<&Rule<T>> {
        let mut out = Vec::new();
        for &i in &self.order {
            let st = self.st(i);
            if i32::from(st.max_priority) <= floor {
                break;
            }
            if let Some(l) = st.probe(key, unwildcard) {
                out.extend(
                    l.iter()
                        .filter(|r| i32::from(r.priority) > floor && pred(&r.data)),
                );
            }
        }
        out
    }

    /// The rule with exactly this value, mask and priority.
    pub fn find_strict(
        &self,
        value: &Key,
        mask: &Key,
        priority: u16,
        pred: impl Fn(&T) -> bool,
    ) -> Option<&Rule<T>> {
        let &i = self.by_mask.get(mask)?;
        self.st(i)
            .rules
            .get(value)?
            .iter()
            .find(|r| r.priority == priority && pred(&r.data))
    }

    pub fn find_strict_mut(
        &mut self,
        value: &Key,
        mask: &Key,
        priority: u16,
        pred: impl Fn(&T) -> bool,
    ) -> Option<&mut Rule<T>> {
        let &i = self.by_mask.get(mask)?;
        self.st_mut(i)
            .rules
            .get_mut(value)?
            .iter_mut()
            .find(|r| r.priority == priority && pred(&r.data))
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule<T>> {
        self.subtables
            .iter()
            .flatten()
            .flat_map(|st| st.rules.values().flatten())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Rule<T>> {
        self.subtables
            .iter_mut()
            .flatten()
            .flat_map(|st| st.rules.values_mut().flatten())
    }

    /// Removes and returns every rule for which `pred` holds.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Rule<T>) -> bool) -> Vec<Rule<T>> {
        let mut out = Vec::new();
        for i in 0..self.subtables.len() {
            let Some(st) = self.subtables[i].as_mut() else {
                continue;
            };
            let old_max = st.max_priority;
            let mut removed_any = false;
            let first = out.len();
            st.rules.retain(|_, list| {
                let mut k = 0;
                let before = list.len();
                while k < list.len() {
                    if pred(&list[k]) {
                        out.push(list.remove(k));
                        removed_any = true;
                    } else {
                        k += 1;
                    }
                }
                if list.len() < before && list.capacity() > 2 * list.len() {
                    list.shrink_to_fit();
                }
                !list.is_empty()
            });
            if !removed_any {
                continue;
            }
            for r in &out[first..] {
                st.count(&r.value, false);
            }
            // A table flushed or thinned gives its memory back.
            shrink_map(&mut st.rules);
            for stage in &mut st.stages {
                shrink_map(&mut stage.values);
            }
            st.priorities.clear();
            for r in st.rules.values().flatten() {
                *st.priorities.entry(r.priority).or_insert(0) += 1;
            }
            st.refresh_max();
            let (empty, moved, mask) = (st.rules.is_empty(), st.max_priority != old_max, st.mask);
            if empty {
                self.unplace(i);
                self.by_mask.remove(&mask);
                self.subtables[i] = None;
                self.free.push(i);
            } else if moved {
                self.unplace(i);
                self.place(i);
            }
        }
        self.len -= out.len();
        if !out.is_empty() {
            shrink_map(&mut self.by_mask);
            if self.free.len() == self.subtables.len() {
                self.subtables = Vec::new();
                self.free = Vec::new();
                self.order = Vec::new();
            }
        }
        out
    }
}

/// Rule lists up to this long grow one rule at a time.
const SHORT_LIST: usize = 4;

/// Gives back most of a hash map's room once it is less than a quarter
/// full (its table never shrinks by itself).
fn shrink_map<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    m: &mut std::collections::HashMap<K, V, S>,
) {
    if m.capacity() > 64 && m.len() * 4 < m.capacity() {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u16, seq: u64, word0: (u64, u64)) -> Rule<u32> {
        let mut value = Key::default();
        let mut mask = Key::default();
        value.0[0] = word0.0 & word0.1;
        mask.0[0] = word0.1;
        Rule {
            priority,
            seq,
            value,
            mask,
            data: seq as u32,
        }
    }

    fn key(w: u64) -> Key {
        let mut k = Key::default();
        k.0[0] = w;
        k
    }

    #[test]
    fn storage_is_tight_and_given_back() {
        let mut c = Classifier::default();
        for i in 0..5000u64 {
            c.insert(rule(100, i, (i, 0xffff)));
        }
        // One rule per value: lists of capacity one, not four.
        let st = c.subtables[0].as_ref().unwrap();
        assert!(st.rules.values().all(|l| l.capacity() == 1));
        let big = st.rules.capacity();
        let gone = c.remove_where(|r| r.seq >= 100);
        assert_eq!(gone.len(), 4900);
        let st = c.subtables[0].as_ref().unwrap();
        assert!(
            st.rules.capacity() < big / 4,
            "{} of {big}",
            st.rules.capacity()
        );
        assert_eq!(c.remove_where(|_| true).len(), 100);
        assert!(c.subtables.is_empty() && c.free.is_empty() && c.order.is_empty());
        c.insert(rule(1, 1, (1, 0xff)));
        assert!(
            c.lookup(&key(1), &mut Key::default()).is_some(),
            "usable again"
        );
    }

    #[test]
    fn priorities_masks_and_unwildcarding() {
        let mut c = Classifier::default();
        c.insert(rule(10, 1, (0x12, 0xff)));
        c.insert(rule(20, 2, (0x10, 0xf0)));
        c.insert(rule(0, 3, (0, 0)));
        assert_eq!(c.subtable_count(), 3);
        let mut u = Key::default();
        assert_eq!(c.lookup(&key(0x12), &mut u).unwrap().data, 2);
        // The 0xf0 subtable was probed first and matched at priority 20:
        // nothing else could beat it.
        assert_eq!(u.0[0], 0xf0);
        let mut u = Key::default();
        assert_eq!(c.lookup(&key(0x22), &mut u).unwrap().data, 3);
        assert_eq!(u.0[0], 0xff);
        // Remove the priority-20 rule: the exact one wins.
        let gone = c.remove_where(|r| r.priority == 20);
        assert_eq!(gone.len(), 1);
        assert_eq!(c.lookup(&key(0x12), &mut Key::default()).unwrap().data, 1);
        assert_eq!(c.subtable_count(), 2);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn equal_priority_goes_to_the_older_rule() {
        let mut c = Classifier::default();
        c.insert(rule(5, 9, (0x1, 0x0f)));
        c.insert(rule(5, 4, (0x11, 0xff)));
        c.insert(rule(5, 2, (0x11, 0xff)));
        assert_eq!(c.lookup(&key(0x11), &mut Key::default()).unwrap().data, 2);
        assert!(c.find_strict(&key(0x11), &key(0xff), 5, |_| true).is_some());
        assert!(c.find_strict(&key(0x11), &key(0xff), 6, |_| true).is_none());
    }
}

#[cfg(test)]
mod property {
    use super::*;
    use proptest::prelude::*;

    /// Masks drawn from a small vocabulary over three words, as real rule
    /// sets have few distinct masks.
    fn mask_of(i: u8) -> Key {
        let mut m = Key::default();
        let words = [
            [0xffff_0000_0000_0000, 0, 0],
            [0xffff_ffff_0000_0000, 0, 0],
            [0, 0xff00, 0],
            [0xffff_0000_0000_0000, 0xffff, 0],
            [0, 0, u64::MAX],
            [0, 0xf0f0, 0xff],
            [0xffff_ff00_0000_0000, 0, 0xffff_0000],
            [0, 0, 0],
        ];
        let w = words[usize::from(i) % words.len()];
        m.0[0] = w[0];
        m.0[5] = w[1];
        m.0[9] = w[2];
        m
    }

    /// Keys from a small value space, so that rules and packets collide.
    fn key_of(a: u8, b: u8, c: u8) -> Key {
        let mut k = Key::default();
        k.0[0] = u64::from(a % 4) << 56 | u64::from(a % 3) << 40;
        k.0[5] = u64::from(b % 4) << 8 | u64::from(b % 5);
        k.0[9] = u64::from(c % 3) << 16 | u64::from(c % 2);
        k
    }

    fn reference<'a>(rules: &'a [Rule<u32>], k: &Key) -> Option<&'a Rule<u32>> {
        rules
            .iter()
            .filter(|r| k.and(&r.mask) == r.value)
            .max_by_key(|r| (r.priority, std::cmp::Reverse(r.seq)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// 10,000 rules: the classifier agrees with a brute-force scan, and
        /// every key that agrees with a probe on the unwildcarded bits gets
        /// the same answer (what makes megaflows correct).
        #[test]
        fn agrees_with_brute_force_and_unwildcards_soundly(
            seed in any::<u64>(),
            probes in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 200),
            deletes in 0usize..3000,
        ) {
            let mut rng = seed | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut c = Classifier::default();
            let mut all = Vec::new();
            for seq in 0..10_000u64 {
                let r = next();
                let mask = mask_of(r as u8);
                let value = key_of((r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8).and(&mask);
                let rule = Rule { priority: ((r >> 32) % 64) as u16, seq, value, mask, data: seq as u32 };
                c.insert(rule.clone());
                all.push(rule);
            }
            // Delete some, by a predicate the reference applies too.
            let cut = deletes as u64;
            c.remove_where(|r| r.seq % 7 == 3 && r.seq < cut * 3);
            all.retain(|r| !(r.seq % 7 == 3 && r.seq < cut * 3));
            prop_assert_eq!(c.len(), all.len());
            for (a, b, d) in probes {
                let k = key_of(a, b, d);
                let mut u = Key::default();
                let got = c.lookup(&k, &mut u).map(|r| r.seq);
                prop_assert_eq!(got, reference(&all, &k).map(|r| r.seq));
                // Any key equal on the unwildcarded bits: same answer.
                let other = key_of(b, d, a);
                let mut mixed = k.and(&u);
                for (w, (o, m)) in mixed.0.iter_mut().zip(other.0.iter().zip(u.0)) {
                    *w |= o & !m;
                }
                let mut u2 = Key::default();
                prop_assert_eq!(c.lookup(&mixed, &mut u2).map(|r| r.seq), got);
            }
        }
    }
}
