//! Descriptor validation against fake guest memory (a `Vec`): good chains,
//! and every kind of bad one a frontend can write.

use super::*;
use proptest::prelude::*;

const SIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const BUFS: u64 = 0x4000;
const MEM: u64 = 0x10000;

/// A queue over fake memory, with the driver's side written by hand.
struct Rig {
    mem: Arc<GuestMem>,
    q: Virtq,
    avail_idx: u16,
}

impl Rig {
    fn new(event_idx: bool, indirect: bool) -> Rig {
        let mem = Arc::new(GuestMem::fake(0, (MEM / 8) as usize));
        let a = RingAddrs {
            desc: DESC,
            avail: AVAIL,
            used: USED,
        };
        let q = Virtq::new(mem.clone(), a, SIZE, 0, event_idx, indirect).unwrap();
        Rig {
            mem,
            q,
            avail_idx: 0,
        }
    }

    fn at(&self, gpa: u64) -> *mut u8 {
        self.mem.translate(gpa, 1).unwrap()
    }

    fn w16(&self, gpa: u64, v: u16) {
        // SAFETY: test memory, in bounds (translate checked it).
        unsafe { ptr::write_volatile(self.at(gpa).cast::<u16>(), v) }
    }

    fn r32(&self, gpa: u64) -> u32 {
        // SAFETY: as above.
        unsafe { ptr::read_volatile(self.at(gpa).cast::<u32>()) }
    }

    fn bytes(&self, gpa: u64, data: &[u8]) {
        // SAFETY: as above; the tests keep data inside the fake memory.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.at(gpa), data.len()) }
    }

    fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.at(gpa), len).to_vec() }
    }

    /// Writes descriptor `i` of the table at `table`.
    fn desc_in(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let p = table + 16 * u64::from(i);
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.bytes(p, &d);
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.desc_in(DESC, i, addr, len, flags, next);
    }

    /// Makes chain `head` available.
    fn offer(&mut self, head: u16) {
        self.w16(AVAIL + 4 + 2 * u64::from(self.avail_idx % SIZE), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.w16(AVAIL + 2, self.avail_idx);
    }

    fn used(&self, i: u16) -> (u32, u32) {
        let p = USED + 4 + 8 * u64::from(i % SIZE);
        (self.r32(p), self.r32(p + 4))
    }

    fn used_idx(&self) -> u16 {
        (self.r32(USED) >> 16) as u16
    }

    /// Pops one transmit chain into a 2 KiB buffer, skipping a 12-byte header.
    fn pop(&mut self) -> (Result<Option<usize>, BadChain>, Vec<u8>) {
        assert!(self.q.refresh() > 0);
        let mut buf = vec![0u8; 2048];
        let r = self.q.pop_into(12, &mut buf);
        if let Ok(Some(n)) = r {
            buf.truncate(n);
        }
        (r, buf)
    }
}

fn frame(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

#[test]
fn a_simple_chain_is_copied_without_its_header() {
    let mut r = Rig::new(false, false);
    let mut pkt = vec![0xee; 12];
    pkt.extend(frame(60));
    r.bytes(BUFS, &pkt);
    r.desc(3, BUFS, 72, 0, 0);
    r.offer(3);
    let (res, buf) = r.pop();
    assert_eq!(res, Ok(Some(60)));
    assert_eq!(buf, frame(60));
    let since = 0;
    r.q.publish(since);
    assert_eq!(r.used_idx(), 1);
    assert_eq!(r.used(0), (3, 0));
}

#[test]
fn a_header_split_from_the_data_and_zero_length_pieces() {
    let mut r = Rig::new(false, false);
    r.bytes(BUFS, &[0; 12]);
    r.bytes(BUFS + 0x100, &frame(100));
    r.desc(0, BUFS, 12, DESC_F_NEXT, 1);
    r.desc(1, BUFS + 0x800, 0, DESC_F_NEXT, 2); // empty: skipped
    r.desc(2, BUFS + 0x100, 40, DESC_F_NEXT, 5);
    r.desc(5, BUFS + 0x100 + 40, 60, 0, 0);
    r.offer(0);
    assert_eq!(r.pop(), (Ok(Some(100)), frame(100)));
}

#[test]
fn loops_are_cut_off() {
    let mut r = Rig::new(false, false);
    r.desc(0, BUFS, 12, DESC_F_NEXT, 1);
    r.desc(1, BUFS, 1, DESC_F_NEXT, 0);
    r.offer(0);
    r.desc(4, BUFS, 1, DESC_F_NEXT, 4); // points at itself
    r.offer(4);
    assert_eq!(r.pop().0, Err(BadChain::Loop));
    assert_eq!(r.pop().0, Err(BadChain::Loop));
    // Both chains still go back to the guest.
    r.q.publish(0);
    assert_eq!(r.used_idx(), 2);
}

#[test]
fn indices_and_addresses_out_of_range_are_refused() {
    let mut r = Rig::new(false, false);
    r.offer(SIZE); // head past the table
    assert_eq!(r.pop().0, Err(BadChain::Index));
    r.desc(0, BUFS, 12, DESC_F_NEXT, 99);
    r.offer(0);
    assert_eq!(r.pop().0, Err(BadChain::Index));
    r.desc(1, MEM - 8, 16, 0, 0); // runs past the end of guest memory
    r.offer(1);
    assert_eq!(r.pop().0, Err(BadChain::Address));
    r.desc(2, u64::MAX - 4, 100, 0, 0); // wraps around
    r.offer(2);
    assert_eq!(r.pop().0, Err(BadChain::Address));
    r.desc(3, BUFS, 100, DESC_F_WRITE, 0); // wrong direction
    r.offer(3);
    assert_eq!(r.pop().0, Err(BadChain::Direction));
}

#[test]
fn huge_and_tiny_packets_are_dropped() {
    let mut r = Rig::new(false, false);
    r.desc(0, BUFS, 0xc000, 0, 0); // 48 KiB: inside memory, larger than a buffer
    r.offer(0);
    assert_eq!(r.pop().0, Ok(None));
    r.desc(1, BUFS, 8, 0, 0); // shorter than the header
    r.offer(1);
    assert_eq!(r.pop().0, Ok(None));
    r.desc(2, BUFS, u32::MAX, 0, 0); // 4 GiB: outside memory
    r.offer(2);
    assert_eq!(r.pop().0, Err(BadChain::Address));
}

#[test]
fn an_available_index_too_far_ahead_breaks_the_queue() {
    let mut r = Rig::new(false, false);
    r.w16(AVAIL + 2, SIZE + 1);
    assert_eq!(r.q.refresh(), 0);
    assert!(r.q.broken);
    r.w16(AVAIL + 2, 1);
    assert_eq!(r.q.refresh(), 0, "stays broken until set up again");
}

#[test]
fn indirect_tables_are_followed_and_checked() {
    let table = BUFS + 0x2000;
    let mut r = Rig::new(false, true);
    r.bytes(BUFS, &[0; 12]);
    r.bytes(BUFS + 12, &frame(50));
    r.desc_in(table, 0, BUFS, 12, DESC_F_NEXT, 1);
    r.desc_in(table, 1, BUFS + 12, 50, 0, 0);
    r.desc(0, table, 32, DESC_F_INDIRECT, 0);
    r.offer(0);
    assert_eq!(r.pop(), (Ok(Some(50)), frame(50)));
    // Nested, with NEXT, empty, ragged, misaligned, outside memory, looping.
    r.desc_in(table + 0x100, 0, table, 32, DESC_F_INDIRECT, 0);
    r.desc(1, table + 0x100, 16, DESC_F_INDIRECT, 0);
    r.desc(2, table, 32, DESC_F_INDIRECT | DESC_F_NEXT, 3);
    r.desc(3, table, 0, DESC_F_INDIRECT, 0);
    r.desc(4, table, 24, DESC_F_INDIRECT, 0);
    r.desc(5, table + 8, 32, DESC_F_INDIRECT, 0);
    r.desc(6, MEM - 16, 32, DESC_F_INDIRECT, 0);
    r.desc_in(table + 0x200, 0, BUFS, 12, DESC_F_NEXT, 1);
    r.desc_in(table + 0x200, 1, BUFS, 12, DESC_F_NEXT, 0);
    r.desc(7, table + 0x200, 32, DESC_F_INDIRECT, 0);
    r.desc_in(table + 0x300, 0, BUFS, 12, DESC_F_NEXT, 2);
    r.desc(8, table + 0x300, 16, DESC_F_INDIRECT, 0);
    for h in 1..=8 {
        r.offer(h);
    }
    let want = [
        BadChain::Indirect,
        BadChain::Indirect,
        BadChain::Indirect,
        BadChain::Indirect,
        BadChain::Indirect,
        BadChain::Address,
        BadChain::Loop,
        BadChain::Index,
    ];
    for w in want {
        assert_eq!(r.pop().0, Err(w));
    }
    // Without the feature, a good indirect chain is refused too.
    let mut r = Rig::new(false, false);
    r.desc_in(table, 0, BUFS, 62, 0, 0);
    r.desc(0, table, 16, DESC_F_INDIRECT, 0);
    r.offer(0);
    assert_eq!(r.pop().0, Err(BadChain::Indirect));
}

#[test]
fn receive_fills_one_chain_or_merges_several() {
    let mut r = Rig::new(false, false);
    let hdr = [0u8; 12];
    r.desc(0, BUFS, 2048, DESC_F_WRITE, 0);
    r.offer(0);
    r.q.refresh();
    assert_eq!(r.q.push(&hdr, &frame(64), true), Ok(Pushed::Done));
    r.q.publish(0);
    assert_eq!(r.used(0), (0, 76));
    assert_eq!(r.read(BUFS + 10, 2), [1, 0], "num_buffers");
    assert_eq!(r.read(BUFS + 12, 64), frame(64));
    // 1000 bytes into 3 chains of 400: num_buffers 3, in the first chain.
    for (i, d) in [1u16, 2, 3].iter().enumerate() {
        r.desc(*d, BUFS + 0x1000 * (i as u64 + 1), 400, DESC_F_WRITE, 0);
        r.offer(*d);
    }
    assert_eq!(r.q.push(&hdr, &frame(1000), true), Ok(Pushed::Done));
    r.q.publish(1);
    assert_eq!(
        [r.used(1), r.used(2), r.used(3)],
        [(1, 400), (2, 400), (3, 212)]
    );
    assert_eq!(r.read(BUFS + 0x1000 + 10, 2), [3, 0]);
    // No room: nothing consumed.
    assert_eq!(r.q.push(&hdr, &frame(64), true), Ok(Pushed::NoRoom));
    assert_eq!(r.q.used_idx, 4);
    // Without merging, a chain too small is left alone and the frame refused.
    r.desc(4, BUFS, 100, DESC_F_WRITE, 0);
    r.offer(4);
    r.q.refresh();
    assert_eq!(r.q.push(&hdr, &frame(1000), false), Ok(Pushed::TooBig));
    assert_eq!(r.q.pending(), 1);
    assert_eq!(r.q.push(&hdr, &frame(64), false), Ok(Pushed::Done));
    // A read-only chain on the receive queue is bad.
    r.desc(5, BUFS, 100, 0, 0);
    r.offer(5);
    r.q.refresh();
    assert_eq!(r.q.push(&hdr, &frame(64), true), Err(BadChain::Direction));
    // A bad chain in the middle of a merge: the chains already filled go
    // back empty with it, so no part of the frame looks like a whole one.
    let at = r.q.used_idx;
    r.desc(6, BUFS, 400, DESC_F_WRITE, 0);
    r.desc(7, BUFS + 0x1000, 400, 0, 0);
    r.offer(6);
    r.offer(7);
    r.q.refresh();
    assert_eq!(r.q.push(&hdr, &frame(1000), true), Err(BadChain::Direction));
    r.q.publish(at);
    assert_eq!([r.used(at), r.used(at + 1)], [(6, 0), (7, 0)]);
    assert_eq!(r.q.used_idx, at + 2);
}

#[test]
fn notifications_follow_event_idx() {
    let mut r = Rig::new(true, false);
    r.desc(0, BUFS, 76, 0, 0);
    for _ in 0..4 {
        r.offer(0);
    }
    // used_event = 0: the guest wants to hear when entry 0 is used.
    for _ in 0..2 {
        assert!(r.pop().0.is_ok());
    }
    assert!(r.q.publish(0));
    assert!(r.pop().0.is_ok());
    assert!(!r.q.publish(2), "already told about entry 0");
    r.w16(AVAIL + 4 + 2 * u64::from(SIZE), 3); // used_event = 3
    assert!(r.pop().0.is_ok());
    assert!(r.q.publish(3));
    // Kicks: enable writes avail_event = last_avail.
    r.q.enable_kicks();
    assert_eq!(r.r32(USED + 4 + 8 * u64::from(SIZE)) as u16, 4);
    // Without EVENT_IDX the flags decide.
    let mut r = Rig::new(false, false);
    r.desc(0, BUFS, 76, 0, 0);
    r.offer(0);
    assert!(r.pop().0.is_ok());
    r.w16(AVAIL, AVAIL_F_NO_INTERRUPT);
    assert!(!r.q.publish(0));
    r.q.disable_kicks();
    assert_eq!(r.r32(USED) as u16, USED_F_NO_NOTIFY);
    r.q.enable_kicks();
    assert_eq!(r.r32(USED) as u16, 0);
}

#[test]
fn rings_outside_memory_or_misaligned_do_not_start() {
    let mem = Arc::new(GuestMem::fake(0, (MEM / 8) as usize));
    let ok = RingAddrs {
        desc: DESC,
        avail: AVAIL,
        used: USED,
    };
    let new = |a: RingAddrs, size| Virtq::new(mem.clone(), a, size, 0, false, false);
    assert!(new(ok, SIZE).is_some());
    assert!(new(ok, 3).is_none());
    assert!(new(ok, 0).is_none());
    assert!(new(RingAddrs { desc: 8, ..ok }, SIZE).is_none());
    assert!(
        new(
            RingAddrs {
                used: USED + 2,
                ..ok
            },
            SIZE
        )
        .is_none()
    );
    assert!(
        new(
            RingAddrs {
                used: MEM - 8,
                ..ok
            },
            SIZE
        )
        .is_none()
    );
    assert!(new(RingAddrs { avail: MEM, ..ok }, SIZE).is_none());
}

#[test]
fn short_copies_copy_exactly_their_bytes() {
    for n in 0..200 {
        let src: Vec<u8> = (0..n as u8).map(|b| b.wrapping_add(1)).collect();
        let mut dst = vec![0u8; n + 16];
        // SAFETY: both hold at least `n` bytes and do not overlap.
        unsafe { copy_bytes(src.as_ptr(), dst.as_mut_ptr(), n) };
        assert_eq!(&dst[..n], &src[..], "{n}");
        assert!(dst[n..].iter().all(|&b| b == 0), "{n}: wrote past the end");
    }
}

/// Where the property test puts an indirect table.
const IND: u64 = 0x8000;

/// A descriptor as a hostile driver might write it: (addr, len, flags,
/// next), mostly plausible (addresses in the buffers or at the indirect
/// table, small lengths, the three flags, indices in range), sometimes
/// anything at all.
fn hostile_desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    let addr = prop_oneof![
        6 => BUFS..MEM,
        2 => Just(IND),
        1 => 0..MEM,
        1 => any::<u64>(),
    ];
    let len = prop_oneof![
        4 => 0u32..3000,
        2 => (0u32..9).prop_map(|n| 16 * n),
        1 => any::<u32>(),
    ];
    let flags = prop_oneof![4 => 0u16..8, 1 => any::<u16>()];
    let next = prop_oneof![4 => 0..SIZE, 1 => any::<u16>()];
    (addr, len, flags, next)
}

proptest! {
    /// Whatever a driver writes in its rings, taking chains from a transmit
    /// queue and filling a receive queue end, never panic, never report more
    /// bytes than the buffer holds or more used entries than were offered,
    /// taking from a transmit queue writes nothing but the used ring, and
    /// it uses chains in the order they were offered. The prefetch hints
    /// go along.
    #[test]
    fn hostile_rings_are_survived(
        descs in proptest::collection::vec(hostile_desc(), SIZE as usize),
        indirect in proptest::collection::vec(hostile_desc(), 0..9),
        avail in proptest::collection::vec(prop_oneof![4 => 0..SIZE, 1 => any::<u16>()], SIZE as usize),
        avail_idx in prop_oneof![4 => 0..=SIZE, 1 => any::<u16>()],
        event_idx: bool,
        merge: bool,
        frame_len in prop_oneof![Just(60usize), Just(1514), 0usize..4000],
    ) {
        for transmit in [true, false] {
            let mut r = Rig::new(event_idx, true);
            for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
                r.desc(i as u16, addr, len, flags, next);
            }
            for (i, &(addr, len, flags, next)) in indirect.iter().enumerate() {
                r.desc_in(IND, i as u16, addr, len, flags, next);
            }
            for (i, &head) in avail.iter().enumerate() {
                r.w16(AVAIL + 4 + 2 * i as u64, head);
            }
            r.w16(AVAIL + 2, avail_idx);
            let before = r.read(0, MEM as usize);
            let offered = r.q.refresh();
            let hdr = [0u8; 12];
            let pkt = frame(frame_len);
            // The prefetch hints read the same hostile rings (and must not
            // write to them).
            let touch = if transmit { Touch::Take(12) } else { Touch::Fill };
            r.q.prefetch_batch(SIZE, touch);
            for _ in 0..2 * SIZE {
                if r.q.pending() == 0 {
                    break;
                }
                r.q.prefetch(3, touch);
                for ahead in [0, 1, 4, SIZE - 1, SIZE, u16::MAX] {
                    r.q.prefetch_fill_rest(ahead, hdr.len() + pkt.len());
                }
                if transmit {
                    let mut buf = vec![0u8; 2048];
                    if let Ok(Some(n)) = r.q.pop_into(12, &mut buf) {
                        prop_assert!(n <= buf.len());
                    }
                } else if r.q.push(&hdr, &pkt, merge) == Ok(Pushed::NoRoom) {
                    break;
                }
            }
            r.q.publish(0);
            prop_assert!(r.q.used_idx <= offered, "used {} of {offered}", r.q.used_idx);
            // (The used index in memory may be anything: a driver may point
            // a receive buffer over its own used ring.)
            // In order (VIRTIO_F_IN_ORDER): used entry k is chain k, unless
            // a receive buffer lies over the rings (below BUFS) and changed
            // the available entries or hid the used ids.
            let over_rings = descs
                .iter()
                .chain(&indirect)
                .any(|&(addr, len, _, _)| addr < BUFS && len > 0);
            if transmit || !over_rings {
                for k in 0..r.q.used_idx {
                    let head = avail[usize::from(k % SIZE)];
                    prop_assert_eq!(r.used(k).0, u32::from(head), "used entry {} out of order", k);
                }
            }
            if transmit {
                let after = r.read(0, MEM as usize);
                let used = USED as usize..USED as usize + 6 + 8 * SIZE as usize;
                for (i, (a, b)) in before.iter().zip(&after).enumerate() {
                    prop_assert!(a == b || used.contains(&i), "byte {i:#x} written");
                }
            }
        }
    }
}
