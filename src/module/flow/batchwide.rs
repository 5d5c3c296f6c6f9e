//! The rest of a batch whose megaflow matches on the input port alone.
//!
//! Every packet of a batch comes from one port, so once a lookup returns
//! a megaflow whose mask holds nothing but `in_port` (the plan of a
//! bridge's `priority=0 actions=NORMAL`, or of `in_port=1
//! actions=output:2`), every later frame of the batch that parses at all
//! (14 bytes or more) hits that same megaflow: no memo compare, no parse
//! and no lookup is needed to know it. If the plan is also "fast" (it
//! rewrites, meters and reports nothing), a packet costs a length check,
//! its count and its verdict.
//!
//! NORMAL still decides per packet, from the frame's addresses and VLAN
//! (its first 16 bytes) and the MAC table: the last bare decision is
//! replayed for frames with the same 16 bytes. Only a decision can change
//! the MAC table in a batch (by learning a source), and every decision
//! made replaces the one replayed, so a replay never outlives the table
//! it was made on (the memo, which keeps several, needs epochs for that).

use super::cache::Stripe;
use super::pipeline::Pipeline;
use super::{FlowModule, ctr};
use crate::module::{Verdict, Verdicts};
use crate::packet::Batch;

/// The first 16 bytes of `d` (its length is at least 16).
#[inline(always)]
fn head(d: &[u8]) -> Option<(u64, u64)> {
    let b: &[u8; 16] = d.get(..16)?.try_into().ok()?;
    let (a, c) = b.split_at(8);
    Some((
        u64::from_le_bytes(a.try_into().ok()?),
        u64::from_le_bytes(c.try_into().ok()?),
    ))
}

/// NORMAL's last decision in this run, if bare: the frame head it was
/// for, the verdict and its counts.
struct Replay {
    head: (u64, u64),
    verdict: Verdict,
    counts: u8,
}

impl FlowModule {
    /// Forwards packets `from..` of `batch`, all of which hit megaflow
    /// `slot` if they parse: its plan is fast, its mask `in_port` only, its
    /// verdict `v` (NORMAL runs per packet if `normal`). Counts them to the
    /// plan as the memo's hits are counted.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rest_of_batch(
        &self,
        pipe: &Pipeline,
        st: &mut Stripe,
        batch: &mut Batch<'_>,
        from: usize,
        slot: u32,
        v: Verdict,
        normal: bool,
        out: &mut Verdicts,
        now_s: u32,
    ) {
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut last: Option<Replay> = None;
        for i in from..batch.len() {
            let (len, h) = {
                let d = batch.data(i);
                (d.len(), head(d))
            };
            if len < 14 {
                out.set(i, Verdict::Invalid);
                continue;
            }
            packets += 1;
            bytes += len as u64;
            if !normal {
                out.set(i, v);
                continue;
            }
            if let (Some(r), Some(h)) = (&last, h)
                && r.head == h
            {
                st.count_normal(r.counts);
                out.set(i, r.verdict);
                continue;
            }
            let (verdict, counts) = self.normal(pipe, st, batch, i, v, out, now_s);
            out.set(i, verdict);
            last = match (h, counts) {
                (Some(head), Some(counts)) => Some(Replay {
                    head,
                    verdict,
                    counts,
                }),
                _ => None,
            };
        }
        st.account(slot, packets, bytes);
        st.count_n(ctr::MEMO_HITS, packets);
    }
}
