//! The `fin_timeout` action in the pipeline (a child of `pipeline`), and
//! the timeouts it shortens.
//!
//! # What it does
//!
//! As in Open vSwitch: when a TCP packet with FIN or RST passes a flow
//! entry whose actions hold `fin_timeout(idle_timeout=I,hard_timeout=H)`,
//! the entry's idle timeout becomes I and its hard timeout H, each only if
//! nonzero and shorter than the entry's (none counts as infinite). The
//! entry keeps the shorter timeouts for the rest of its life; flow stats
//! and flow-removed messages show them, and it expires by them. A `learn`
//! with `fin_idle_timeout`/`fin_hard_timeout` gives the flows it adds such
//! an action first. A packet-out sent through the tables (`output:TABLE`)
//! shortens them as a packet does; its own action list has no entry,
//! nothing to shorten.
//!
//! # How it stays inside the flow caches
//!
//! Like `learn` (see `learn.rs`): a plan-time action with a per-batch
//! effect. When the executor runs `fin_timeout`, it reads the packet's
//! `eth_type`, `ip_proto` and `L4_OK` (so the megaflow is TCP or not as a
//! whole) and, for a TCP megaflow, the plan carries the entry's counters
//! with the two timeouts ([`Plan::fins`]). The data path looks at the TCP
//! flags of each packet of such a plan only (one byte at the L4 offset it
//! already knows); once per batch in which one of them had FIN or RST,
//! the timeouts are shortened with two atomic updates. The flags stay out
//! of the megaflow: packets with and without FIN share the plan.

use std::sync::atomic::AtomicU16;
use std::sync::atomic::Ordering::Relaxed;

use super::*;

/// TCP's FIN and RST flags, in the 14th byte of its header.
const TCP_FIN_RST: u8 = 0x01 | 0x04;
const ETH_IPV4: u64 = 0x0800;
const ETH_IPV6: u64 = 0x86dd;
const IP_TCP: u64 = 6;

/// What a plan's `fin_timeout` shortens: an entry's timeouts.
#[derive(Debug)]
pub(crate) struct FinTimeout {
    pub flow: Arc<FlowCounters>,
    pub idle: u16,
    pub hard: u16,
}

impl FinTimeout {
    /// A FIN or RST passed: shortens the entry's timeouts.
    pub fn apply(&self) {
        self.flow.fin.shorten(self.idle, self.hard);
    }
}

/// Whether the TCP header at `l4` in `frame` (0: none) has FIN or RST.
#[inline]
pub(crate) fn fin_or_rst(frame: &[u8], l4: u16) -> bool {
    l4 != 0
        && frame
            .get(usize::from(l4) + 13)
            .is_some_and(|f| f & TCP_FIN_RST != 0)
}

/// The timeouts a `fin_timeout` gave an entry (0: none given).
#[derive(Debug, Default)]
pub(crate) struct FinTimeouts {
    idle: AtomicU16,
    hard: AtomicU16,
}

/// `timeout` as `max` shortens it (0 is infinite on both sides).
fn shortened(timeout: u16, max: u16) -> u16 {
    if max != 0 && (timeout == 0 || timeout > max) {
        max
    } else {
        timeout
    }
}

impl FinTimeouts {
    fn shorten(&self, idle: u16, hard: u16) {
        for (a, v) in [(&self.idle, idle), (&self.hard, hard)] {
            if v != 0 {
                let _ = a.fetch_update(Relaxed, Relaxed, |cur| (cur == 0 || cur > v).then_some(v));
            }
        }
    }

    /// An entry's (idle, hard) timeouts given as these, once shortened.
    pub fn effective(&self, idle: u16, hard: u16) -> (u16, u16) {
        (
            shortened(idle, self.idle.load(Relaxed)),
            shortened(hard, self.hard.load(Relaxed)),
        )
    }
}

impl Exec<'_> {
    /// `fin_timeout(idle_timeout=idle,hard_timeout=hard)` in the entry
    /// whose actions run (see the module doc).
    pub(super) fn fin_timeout(&mut self, idle: u16, hard: u16) {
        if idle == 0 && hard == 0 {
            return;
        }
        let Some(flow) = self.entry.flow.and_then(|i| self.flows.get(i)) else {
            return;
        };
        ETH_TYPE.all(&mut self.mask);
        NW_PROTO.all(&mut self.mask);
        L4_OK.all(&mut self.mask);
        let eth = ETH_TYPE.get(&self.key);
        let tcp = (eth == ETH_IPV4 || eth == ETH_IPV6)
            && NW_PROTO.get(&self.key) == IP_TCP
            && L4_OK.get(&self.key) == 1;
        if tcp {
            let flow = flow.clone();
            self.fins.push(FinTimeout { flow, idle, hard });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_only_shorten() {
        let f = FinTimeouts::default();
        assert_eq!(f.effective(30, 0), (30, 0));
        f.shorten(10, 0);
        assert_eq!(f.effective(30, 0), (10, 0));
        assert_eq!(f.effective(5, 0), (5, 0), "a shorter timeout stays");
        f.shorten(20, 40);
        assert_eq!(f.effective(30, 0), (10, 40), "never longer again");
        f.shorten(0, 15);
        assert_eq!(f.effective(30, 0), (10, 15));
        assert_eq!(f.effective(30, 12), (10, 12));
    }

    #[test]
    fn fin_and_rst_are_read_at_the_tcp_header() {
        let mut frame = vec![0u8; 54];
        assert!(!fin_or_rst(&frame, 34));
        frame[34 + 13] = 0x11; // FIN|ACK
        assert!(fin_or_rst(&frame, 34));
        frame[34 + 13] = 0x04; // RST
        assert!(fin_or_rst(&frame, 34));
        frame[34 + 13] = 0x12; // SYN|ACK
        assert!(!fin_or_rst(&frame, 34));
        assert!(!fin_or_rst(&frame, 0), "no L4 header");
        assert!(!fin_or_rst(&frame[..40], 34), "truncated");
    }
}
