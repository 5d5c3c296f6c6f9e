//! Leases on a destination's outgoing ring: how several workers fill one port
//! at once (mSwitch, section 3.2).
//!
//! A sender takes the lock only to reserve `n` slots past the last
//! reservation, copies into them with no lock held, then takes the lock again
//! to report completion. Slots are published to the consumer strictly in
//! reservation order: a lease that completes before an earlier one is parked,
//! and whoever completes the earliest outstanding lease publishes every
//! completed lease that follows it. Nobody waits for anybody: a slow copier
//! delays publication of later leases but never blocks their senders.

use std::sync::{Mutex, MutexGuard};

use crate::packet::RingRef;

/// Reservation state of one outgoing ring. Private to the switch: the
/// consumer (possibly another process) only sees `head` and writes `tail`.
pub struct OutQueue {
    state: Mutex<LeaseState>,
}

struct LeaseState {
    /// End of the last reservation.
    reserved: u32,
    /// End of what has been published to the consumer (the ring's head).
    published: u32,
    /// For a completed but unpublished lease starting at slot `s`, entry
    /// `s & mask` holds `DONE | end`.
    done: Box<[u64]>,
    mask: u32,
}

const DONE: u64 = 1 << 32;

/// Slots `[start, start + n)` reserved by one sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub start: u32,
    pub n: u32,
}

impl OutQueue {
    /// A queue whose ring currently has its head at `head`.
    pub fn new(head: u32, ring_size: u32) -> OutQueue {
        OutQueue {
            state: Mutex::new(LeaseState {
                reserved: head,
                published: head,
                done: vec![0; ring_size as usize].into_boxed_slice(),
                mask: ring_size - 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        // A panic while holding this lock cannot leave the indices torn (they
        // are updated by single stores), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves up to `want` slots; fewer (possibly none) if the ring is short
    /// of room. The caller must `complete` every lease with `n > 0`.
    pub fn reserve(&self, ring: &RingRef<'_>, want: u32) -> Lease {
        let mut st = self.lock();
        let n = want.min(ring.free(st.reserved));
        let start = st.reserved;
        st.reserved = start.wrapping_add(n);
        Lease { start, n }
    }

    /// Marks a lease filled and publishes everything that is now contiguous.
    /// Returns true if the ring's head moved.
    pub fn complete(&self, ring: &RingRef<'_>, lease: Lease) -> bool {
        if lease.n == 0 {
            return false;
        }
        let mut st = self.lock();
        let end = lease.start.wrapping_add(lease.n);
        if lease.start != st.published {
            let i = (lease.start & st.mask) as usize;
            st.done[i] = DONE | u64::from(end);
            return false;
        }
        st.published = end;
        loop {
            let i = (st.published & st.mask) as usize;
            let d = st.done[i];
            if d & DONE == 0 || st.published == st.reserved {
                break;
            }
            st.done[i] = 0;
            st.published = d as u32;
        }
        ring.publish(st.published);
        true
    }

    /// (reserved, published), for tests and diagnostics.
    pub fn indices(&self) -> (u32, u32) {
        let st = self.lock();
        (st.reserved, st.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{MemConfig, PortMem};

    #[test]
    fn out_of_order_completion_publishes_in_order() {
        let m = PortMem::new("t", MemConfig::new(16, 64)).unwrap();
        let ring = m.outgoing();
        let q = OutQueue::new(0, 16);
        let a = q.reserve(&ring, 4);
        let b = q.reserve(&ring, 3);
        let c = q.reserve(&ring, 5);
        assert_eq!((a.start, b.start, c.start), (0, 4, 7));
        assert!(!q.complete(&ring, c));
        assert!(!q.complete(&ring, b));
        assert_eq!(
            ring.available(0),
            0,
            "nothing visible before the first lease completes"
        );
        assert!(q.complete(&ring, a));
        assert_eq!(ring.available(0), 12);
        assert_eq!(q.indices(), (12, 12));
    }

    #[test]
    fn a_full_ring_grants_only_what_is_free() {
        let m = PortMem::new("t", MemConfig::new(8, 64)).unwrap();
        let ring = m.outgoing();
        let q = OutQueue::new(0, 8);
        let a = q.reserve(&ring, 6);
        let b = q.reserve(&ring, 6);
        assert_eq!((a.n, b.n), (6, 2));
        assert_eq!(q.reserve(&ring, 1).n, 0);
        q.complete(&ring, b);
        q.complete(&ring, a);
        ring.release(5); // the consumer took five
        assert_eq!(q.reserve(&ring, 9).n, 5);
    }

    #[test]
    fn wraps_around_the_index_space() {
        let m = PortMem::new("t", MemConfig::new(8, 64)).unwrap();
        let ring = m.outgoing();
        let start = u32::MAX - 2;
        ring.publish(start);
        ring.release(start);
        let q = OutQueue::new(start, 8);
        let a = q.reserve(&ring, 3);
        let b = q.reserve(&ring, 3);
        q.complete(&ring, b);
        q.complete(&ring, a);
        assert_eq!(ring.available(start), 6);
        assert_eq!(q.indices().1, start.wrapping_add(6));
    }
}
