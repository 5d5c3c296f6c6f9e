//! One split virtqueue from the driver's side (the side a guest's virtio-net
//! driver takes), in memory this port allocated and shares with the backend.
//!
//! Each descriptor `i` owns buffer `i` of the queue for good: the table is
//! written once, when the queue is made, and the driver keeps its own record
//! of which descriptors the device holds. Nothing the device can write (the
//! used ring, the used index, the event index, or the table and buffers
//! themselves) is trusted: a used entry is taken only if its id names a
//! descriptor the device holds and the used index never runs ahead of what
//! was given; a length is checked against the buffer before a byte is
//! copied. Bad entries are counted by the caller and skipped; an impossible
//! used index breaks the queue (it stays empty until the port connects
//! again). No value from the device can make this code read or write outside
//! the queue's memory, loop without bound, or panic.
#![allow(unsafe_code)]

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering, fence};

use crate::sys::Region;

const DESC_F_WRITE: u16 = 2;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
const USED_F_NO_NOTIFY: u16 = 1;
/// Largest split queue (the specification's limit).
pub const MAX_SIZE: u32 = 32768;
/// The virtio-net header with VIRTIO_F_VERSION_1 (`num_buffers` included).
pub const NET_HDR: usize = 12;

/// Byte offsets of one queue's parts in the shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub desc: usize,
    pub avail: usize,
    pub used: usize,
    pub bufs: usize,
    /// First byte after the queue (page-aligned).
    pub end: usize,
}

impl Layout {
    /// A queue of `size` descriptors with `buf_len`-byte buffers, starting
    /// at the page-aligned offset `at`. The used ring starts on a page, as
    /// legacy devices expect.
    pub fn new(at: usize, size: u16, buf_len: usize) -> Layout {
        let n = usize::from(size);
        let page = |x: usize| x.next_multiple_of(4096);
        let desc = at;
        let avail = desc + 16 * n;
        let used = page(avail + 6 + 2 * n);
        let bufs = page(used + 6 + 8 * n);
        let end = page(bufs + n * buf_len);
        Layout {
            desc,
            avail,
            used,
            bufs,
            end,
        }
    }
}

/// A used entry that named no descriptor the device holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadUsed;

pub struct Vring {
    /// Keeps the memory mapped while the pointers below are in use.
    _mem: Arc<Region>,
    desc: *mut u8,
    avail: *mut u8,
    used: *mut u8,
    bufs: *mut u8,
    /// The device's address of buffer 0 (guest addresses are ours).
    size: u16,
    buf_len: usize,
    event_idx: bool,
    /// Next available entry we write.
    avail_idx: u16,
    /// The available index when the device was last considered for a kick.
    notified_at: u16,
    /// Next used entry we read, and the used index as last read.
    last_used: u16,
    used_end: u16,
    /// Who holds each descriptor.
    state: Vec<Holder>,
    /// Offered since the last `publish` (the device cannot see them yet).
    unpublished: Vec<u16>,
    /// Descriptors the device holds.
    in_flight: u16,
    /// Descriptors nobody holds.
    free: Vec<u16>,
    broken: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Nobody,
    /// The caller: taken with `take_free` or returned by `pop`.
    Driver,
    /// In the available ring, not yet published.
    Offered,
    Device,
}

// SAFETY: the pointers point into `mem`, which the queue keeps alive; a
// queue is used by one thread at a time (its owner holds it under a lock).
unsafe impl Send for Vring {}

impl Vring {
    /// Lays out a queue at `lay` in `mem` and writes its descriptor table:
    /// descriptor `i` is buffer `i`, device-writable if `device_writes`.
    /// `None` if the layout does not fit the region or `size` is not a power
    /// of two up to `MAX_SIZE`.
    pub fn new(
        mem: Arc<Region>,
        lay: Layout,
        size: u16,
        buf_len: usize,
        event_idx: bool,
        device_writes: bool,
    ) -> Option<Vring> {
        if size == 0 || u32::from(size) > MAX_SIZE || !size.is_power_of_two() {
            return None;
        }
        let n = usize::from(size);
        let fits = Layout::new(lay.desc, size, buf_len) == lay
            && lay.desc.is_multiple_of(4096)
            && lay.end <= mem.len()
            && buf_len >= NET_HDR
            && u32::try_from(buf_len).is_ok();
        if !fits {
            return None;
        }
        let base = mem.as_ptr();
        // SAFETY: every offset was checked to lie inside the region above.
        let (desc, avail, used, bufs) = unsafe {
            (
                base.add(lay.desc),
                base.add(lay.avail),
                base.add(lay.used),
                base.add(lay.bufs),
            )
        };
        let q = Vring {
            desc,
            avail,
            used,
            bufs,
            size,
            buf_len,
            event_idx,
            avail_idx: 0,
            notified_at: 0,
            last_used: 0,
            used_end: 0,
            state: vec![Holder::Nobody; n],
            unpublished: Vec::with_capacity(n),
            in_flight: 0,
            free: (0..size).rev().collect(),
            broken: false,
            _mem: mem,
        };
        let flags = if device_writes { DESC_F_WRITE } else { 0 };
        for i in 0..size {
            let addr = q.device_addr(q.buf(i));
            // SAFETY: descriptor `i < size` lies in the table (16 bytes each,
            // 16-aligned: the table starts on a page).
            unsafe {
                let d = q.desc.add(16 * usize::from(i));
                ptr::write_volatile(d.cast::<u64>(), addr);
                ptr::write_volatile(d.add(8).cast::<u32>(), buf_len as u32);
                ptr::write_volatile(d.add(12).cast::<u16>(), flags);
                ptr::write_volatile(d.add(14).cast::<u16>(), 0);
            }
        }
        // Start polled: the device is asked not to call.
        q.disable_calls();
        Some(q)
    }

    /// The address the device uses for `p`: guest addresses are this
    /// process's own (the memory table maps them one to one).
    fn device_addr(&self, p: *const u8) -> u64 {
        p as u64
    }

    /// The device's addresses of the descriptor table, used and available
    /// rings (SET_VRING_ADDR's order).
    pub fn addrs(&self) -> (u64, u64, u64) {
        (
            self.device_addr(self.desc),
            self.device_addr(self.used),
            self.device_addr(self.avail),
        )
    }

    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// Descriptors the device holds.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn buf(&self, id: u16) -> *mut u8 {
        // SAFETY (of later uses): callers pass `id < size`, and buffer
        // `id` lies inside the layout checked in `new`.
        self.bufs.wrapping_add(usize::from(id) * self.buf_len)
    }

    fn avail_idx_atomic(&self) -> &AtomicU16 {
        // SAFETY: `avail + 2` lies in the checked ring and is 2-aligned
        // (the ring follows a table of 16-byte descriptors on a page).
        unsafe { AtomicU16::from_ptr(self.avail.add(2).cast()) }
    }

    fn used_idx_atomic(&self) -> &AtomicU16 {
        // SAFETY: `used + 2` lies in the checked ring, which starts on a page.
        unsafe { AtomicU16::from_ptr(self.used.add(2).cast()) }
    }

    /// A descriptor nobody holds, to fill and `offer`.
    pub fn take_free(&mut self) -> Option<u16> {
        let id = self.free.pop()?;
        self.state[usize::from(id)] = Holder::Driver;
        Some(id)
    }

    /// Hands back a descriptor taken with `take_free` or returned by `pop`.
    pub fn give_back(&mut self, id: u16) {
        if self.state.get(usize::from(id)) == Some(&Holder::Driver) {
            self.state[usize::from(id)] = Holder::Nobody;
            self.free.push(id);
        }
    }

    /// Gives descriptor `id` (from `take_free` or `pop`) to the device with
    /// `len` bytes (a frame to read, or the room to write in). Seen by the
    /// device at the next `publish`. Returns false (and does nothing) for a
    /// descriptor the caller does not hold.
    pub fn offer(&mut self, id: u16, len: usize) -> bool {
        if self.state.get(usize::from(id)) != Some(&Holder::Driver) {
            return false;
        }
        let len = len.min(self.buf_len) as u32;
        let slot = 4 + 2 * usize::from(self.avail_idx & (self.size - 1));
        // SAFETY: descriptor `id < size` is in the table; avail slot
        // `slot + 2 <= 4 + 2 * size` is in the checked ring.
        unsafe {
            ptr::write_volatile(self.desc.add(16 * usize::from(id) + 8).cast::<u32>(), len);
            ptr::write_volatile(self.avail.add(slot).cast::<u16>(), id);
        }
        self.state[usize::from(id)] = Holder::Offered;
        self.unpublished.push(id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        true
    }

    /// Makes the entries offered since the last call visible; returns
    /// whether the device asked to be kicked for them.
    pub fn publish(&mut self) -> bool {
        if self.avail_idx == self.notified_at {
            return false;
        }
        // Only now may the device return them.
        for &id in &self.unpublished {
            self.state[usize::from(id)] = Holder::Device;
        }
        self.in_flight += self.unpublished.len() as u16;
        self.unpublished.clear();
        self.avail_idx_atomic()
            .store(self.avail_idx, Ordering::Release);
        fence(Ordering::SeqCst);
        let (new, old) = (self.avail_idx, self.notified_at);
        self.notified_at = new;
        if self.event_idx {
            let off = 4 + 8 * usize::from(self.size);
            // SAFETY: avail_event follows the used ring, inside the layout.
            let ev = unsafe { ptr::read_volatile(self.used.add(off).cast::<u16>()) };
            need_event(ev, new, old)
        } else {
            // SAFETY: the flags are the used ring's first field.
            let f = unsafe { ptr::read_volatile(self.used.cast::<u16>()) };
            f & USED_F_NO_NOTIFY == 0
        }
    }

    /// Reads the used index; returns how many entries wait. An index that
    /// runs ahead of what the device holds breaks the queue.
    pub fn refresh(&mut self) -> u16 {
        if self.broken {
            return 0;
        }
        let u = self.used_idx_atomic().load(Ordering::Acquire);
        let n = u.wrapping_sub(self.last_used);
        let unread = self.used_end.wrapping_sub(self.last_used);
        // Every entry not yet taken returns a descriptor the device holds,
        // and the index never goes back.
        if n > self.in_flight || n < unread {
            self.broken = true;
            return 0;
        }
        self.used_end = u;
        n
    }

    /// Whether the device has published entries not yet taken (a hint for
    /// sleeping; `refresh` decides).
    pub fn used_waiting(&self) -> bool {
        !self.broken && self.used_idx_atomic().load(Ordering::Acquire) != self.last_used
    }

    /// The next used entry as of the last `refresh`: the descriptor and the
    /// length the device wrote, or `BadUsed` for an id the device does not
    /// hold (skipped). The descriptor is the caller's again.
    pub fn pop(&mut self) -> Option<Result<(u16, u32), BadUsed>> {
        if self.last_used == self.used_end {
            return None;
        }
        let off = 4 + 8 * usize::from(self.last_used & (self.size - 1));
        // SAFETY: `off + 8 <= 4 + 8 * size`, inside the checked used ring.
        let (id, len) = unsafe {
            (
                ptr::read_volatile(self.used.add(off).cast::<u32>()),
                ptr::read_volatile(self.used.add(off + 4).cast::<u32>()),
            )
        };
        self.last_used = self.last_used.wrapping_add(1);
        match u16::try_from(id) {
            Ok(id) if self.state.get(usize::from(id)) == Some(&Holder::Device) => {
                self.state[usize::from(id)] = Holder::Driver;
                self.in_flight -= 1;
                Some(Ok((id, len)))
            }
            _ => Some(Err(BadUsed)),
        }
    }

    /// Copies the frame the device wrote into descriptor `id` (`len` bytes
    /// with the header, as its used entry says) into `dst`; returns its
    /// length, or `None` if `len` is shorter than the header, longer than
    /// the buffer, or the frame does not fit `dst`.
    pub fn read_frame(&self, id: u16, len: u32, dst: &mut [u8]) -> Option<usize> {
        let len = len as usize;
        if id >= self.size || len < NET_HDR || len > self.buf_len || len - NET_HDR > dst.len() {
            return None;
        }
        let n = len - NET_HDR;
        // SAFETY: buffer `id < size` holds `buf_len >= len` bytes of the
        // region; `dst` has room for `n`; the region is never one of our
        // slices. The device may write the bytes meanwhile: they are data.
        unsafe { ptr::copy_nonoverlapping(self.buf(id).add(NET_HDR), dst.as_mut_ptr(), n) };
        Some(n)
    }

    /// Writes a header with no offloads and `frame` into descriptor `id`'s
    /// buffer; returns the bytes to offer, or `None` if it does not fit.
    pub fn write_frame(&self, id: u16, frame: &[u8]) -> Option<usize> {
        let len = NET_HDR + frame.len();
        if id >= self.size || len > self.buf_len {
            return None;
        }
        let p = self.buf(id);
        // SAFETY: buffer `id < size` holds `buf_len >= len` bytes; the
        // frame is our own slice, never inside the region.
        unsafe {
            ptr::write_bytes(p, 0, NET_HDR);
            ptr::copy_nonoverlapping(frame.as_ptr(), p.add(NET_HDR), frame.len());
        }
        Some(len)
    }

    /// Asks the device to call when it uses entries past the ones taken
    /// (the driver is going to sleep). The caller checks `used_waiting`
    /// afterwards: entries used before the device saw this are not called for.
    pub fn enable_calls(&self) {
        // SAFETY: used_event follows the available ring, the flags are its
        // first field; both inside the layout.
        unsafe {
            if self.event_idx {
                let off = 4 + 2 * usize::from(self.size);
                ptr::write_volatile(self.avail.add(off).cast::<u16>(), self.last_used);
            } else {
                ptr::write_volatile(self.avail.cast::<u16>(), 0);
            }
        }
        fence(Ordering::SeqCst);
    }

    /// Asks the device not to call: the driver polls. (With EVENT_IDX the
    /// event index is left behind, as a polling driver does.)
    pub fn disable_calls(&self) {
        if !self.event_idx {
            // SAFETY: as in `enable_calls`.
            unsafe { ptr::write_volatile(self.avail.cast::<u16>(), AVAIL_F_NO_INTERRUPT) };
        }
    }
}

/// The event-index test of the virtio specification: whether moving an
/// index from `old` to `new` passed `event`.
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device in the test's hands: reads what the driver offered and
    /// writes used entries, good or bad, straight into the rings.
    struct Dev {
        base: *mut u8,
        size: u16,
        lay: Layout,
        last_avail: u16,
        used: u16,
    }

    impl Dev {
        fn new(q: &Vring, lay: Layout) -> Dev {
            Dev {
                base: q.desc.wrapping_sub(lay.desc),
                size: q.size,
                lay,
                last_avail: 0,
                used: 0,
            }
        }

        fn at<T: Copy>(&self, off: usize) -> T {
            // SAFETY: tests pass offsets inside the queue's layout, whose
            // region outlives the device.
            unsafe { ptr::read_volatile(self.base.add(off).cast::<T>()) }
        }

        fn put<T: Copy>(&self, off: usize, v: T) {
            // SAFETY: as in `at`.
            unsafe { ptr::write_volatile(self.base.add(off).cast::<T>(), v) }
        }

        /// The next offered descriptor: (id, its address, its length).
        fn take(&mut self) -> Option<(u16, u64, u32)> {
            let idx: u16 = self.at(self.lay.avail + 2);
            if idx == self.last_avail {
                return None;
            }
            let slot = usize::from(self.last_avail % self.size);
            let id: u16 = self.at(self.lay.avail + 4 + 2 * slot);
            self.last_avail = self.last_avail.wrapping_add(1);
            let d = self.lay.desc + 16 * usize::from(id);
            Some((id, self.at(d), self.at(d + 8)))
        }

        fn used(&mut self, id: u32, len: u32) {
            let off = self.lay.used + 4 + 8 * usize::from(self.used % self.size);
            self.put(off, id);
            self.put(off + 4, len);
            self.used = self.used.wrapping_add(1);
            self.put(self.lay.used + 2, self.used);
        }
    }

    fn queue(size: u16, event_idx: bool, writes: bool) -> (Vring, Layout) {
        let lay = Layout::new(0, size, 2112);
        let mem = Arc::new(Region::new("vring-test", lay.end).unwrap());
        (
            Vring::new(mem, lay, size, 2112, event_idx, writes).unwrap(),
            lay,
        )
    }

    #[test]
    fn layout_is_aligned_and_refused_when_it_does_not_fit() {
        let l = Layout::new(4096, 256, 2112);
        assert_eq!((l.desc, l.avail), (4096, 4096 + 4096));
        assert!(l.used.is_multiple_of(4096) && l.bufs.is_multiple_of(4096));
        assert!(l.end >= l.bufs + 256 * 2112);
        let mem = Arc::new(Region::new("vring-test", 4096).unwrap());
        assert!(Vring::new(mem.clone(), l, 256, 2112, false, true).is_none());
        let l0 = Layout::new(0, 3, 2112);
        assert!(Vring::new(mem, l0, 3, 2112, false, true).is_none());
    }

    #[test]
    fn frames_go_round_and_indices_wrap() {
        let (mut q, lay) = queue(8, false, false);
        let mut d = Dev::new(&q, lay);
        for round in 0..20_000u32 {
            let frame = [round as u8; 60];
            let id = q.take_free().expect("a free descriptor");
            let len = q.write_frame(id, &frame).unwrap();
            assert!(q.offer(id, len));
            assert!(!q.offer(id, len), "offered twice");
            // The used flags say nothing: the device wants kicks.
            assert!(q.publish());
            let (got, addr, l) = d.take().unwrap();
            assert_eq!((got, l as usize), (id, NET_HDR + 60));
            assert_eq!(addr, q.buf(id) as u64);
            assert_eq!(
                d.at::<u8>(lay.bufs + 2112 * usize::from(id) + NET_HDR + 59),
                round as u8
            );
            d.used(u32::from(id), 0);
            assert_eq!(q.refresh(), 1);
            assert_eq!(q.pop(), Some(Ok((id, 0))));
            assert_eq!(q.pop(), None);
            q.give_back(id);
            q.give_back(id);
        }
        assert_eq!((q.in_flight(), q.free.len()), (0, 8));
        assert!(!q.is_broken());
    }

    #[test]
    fn received_frames_are_bounded_by_their_buffers() {
        let (mut q, lay) = queue(4, false, true);
        while let Some(id) = q.take_free() {
            q.offer(id, 2112);
        }
        q.publish();
        let mut d = Dev::new(&q, lay);
        let (a, _, l) = d.take().unwrap();
        assert_eq!(l, 2112);
        let (b, _, _) = d.take().unwrap();
        let (c, _, _) = d.take().unwrap();
        d.used(u32::from(a), (NET_HDR + 64) as u32);
        d.used(u32::from(b), 5000); // longer than the buffer
        d.used(u32::from(c), 4); // shorter than the header
        let mut dst = [0u8; 2048];
        assert_eq!(q.refresh(), 3);
        let mut lens = Vec::new();
        while let Some(Ok((id, len))) = q.pop() {
            lens.push(q.read_frame(id, len, &mut dst));
        }
        assert_eq!(lens, [Some(64), None, None]);
        // A frame longer than the destination is refused too.
        assert_eq!(
            q.read_frame(a, (NET_HDR + 100) as u32, &mut dst[..50]),
            None
        );
    }

    #[test]
    fn a_lying_device_is_counted_not_believed() {
        let (mut q, lay) = queue(8, false, false);
        for _ in 0..2 {
            let id = q.take_free().unwrap();
            q.offer(id, 60);
        }
        q.publish();
        let mut d = Dev::new(&q, lay);
        let (a, _, _) = d.take().unwrap();
        d.used(7, 0); // never offered
        d.used(u32::MAX, 0); // out of range
        d.used(u32::from(a), 0);
        // Three entries for two descriptors held: impossible, the queue breaks.
        assert_eq!(q.refresh(), 0);
        assert!(q.is_broken());
        assert_eq!(q.pop(), None);
        assert!(!q.used_waiting());

        let (mut q, lay) = queue(8, false, false);
        for _ in 0..3 {
            let id = q.take_free().unwrap();
            q.offer(id, 60);
        }
        q.publish();
        let mut d = Dev::new(&q, lay);
        let (a, _, _) = d.take().unwrap();
        d.used(u32::from(a), 0);
        d.used(u32::from(a), 0); // twice
        d.used(1 << 20, 0);
        assert_eq!(q.refresh(), 3);
        assert_eq!(q.pop(), Some(Ok((a, 0))));
        assert_eq!(q.pop(), Some(Err(BadUsed)));
        assert_eq!(q.pop(), Some(Err(BadUsed)));
        assert_eq!(q.pop(), None);
        assert_eq!(q.in_flight(), 2);
        // Handing back or offering a descriptor the device holds does nothing.
        let before = q.free.len();
        q.give_back(1);
        q.give_back(u16::MAX);
        assert!(!q.offer(1, 60) && !q.offer(u16::MAX, 60));
        assert_eq!(q.free.len(), before);
        // A descriptor taken back and offered again is not the device's
        // until it is published.
        assert!(q.offer(a, 60));
        d.used(u32::from(a), 0);
        assert_eq!(q.refresh(), 1);
        assert_eq!(q.pop(), Some(Err(BadUsed)));
        q.publish();
        // A used index that goes backwards breaks the queue.
        d.put(lay.used + 2, 1u16);
        assert_eq!(q.refresh(), 0);
        assert!(q.is_broken());
    }

    #[test]
    fn notifications_follow_flags_and_event_indices() {
        // Flags: the device says NO_NOTIFY, so no kick; calls off by default.
        let (mut q, lay) = queue(8, false, false);
        let d = Dev::new(&q, lay);
        assert_eq!(d.at::<u16>(lay.avail), AVAIL_F_NO_INTERRUPT);
        d.put(lay.used, USED_F_NO_NOTIFY);
        let id = q.take_free().unwrap();
        q.offer(id, 60);
        assert!(!q.publish());
        assert!(!q.publish(), "nothing new: no kick");
        q.enable_calls();
        assert_eq!(d.at::<u16>(lay.avail), 0);
        q.disable_calls();
        assert_eq!(d.at::<u16>(lay.avail), AVAIL_F_NO_INTERRUPT);

        // Event index: kick only when the index passes avail_event.
        let (mut q, lay) = queue(8, true, false);
        let mut d = Dev::new(&q, lay);
        d.put(lay.used + 4 + 8 * 8, 2u16); // avail_event
        let mut kicks = Vec::new();
        for _ in 0..4 {
            let id = q.take_free().unwrap();
            q.offer(id, 60);
            kicks.push(q.publish());
        }
        assert_eq!(kicks, [false, false, true, false]);
        // Calls: used_event is where the driver will read next.
        let (id, _, _) = d.take().unwrap();
        d.used(u32::from(id), 0);
        assert!(q.used_waiting());
        assert_eq!(q.refresh(), 1);
        assert!(q.pop().is_some());
        q.enable_calls();
        assert_eq!(d.at::<u16>(lay.avail + 4 + 2 * 8), 1);
        assert!(!q.used_waiting());
        assert!(need_event(0, 1, 0) && !need_event(5, 3, 0) && need_event(u16::MAX, 0, 65530));
    }
}
