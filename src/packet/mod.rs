//! Packet memory: a port's region of fixed-size buffers and its two rings of slots.
//!
//! The layout follows netmap. A port owns one memory region holding a header,
//! two rings and a pool of buffers:
//!
//! ```text
//!  +-------------+------------------------+-------------------------+-----------------+
//!  | PortHeader  | incoming ring (hdr +   | outgoing ring (hdr +    | buffers         |
//!  | magic, sizes| slots)  outside->switch| slots)  switch->outside | nbufs * bufsize |
//!  +-------------+------------------------+-------------------------+-----------------+
//! ```
//!
//! Directions are named from the switch's side: the *incoming* ring carries
//! packets from the outside world into the switch, the *outgoing* ring carries
//! them out. A slot is `{buffer index, length, flags}`, never a pointer, so both
//! sides of a ring (possibly in different processes) agree on it.
//!
//! Ownership of a ring is split by two free-running `u32` indices:
//!
//! ```text
//!        tail (consumer)              head (producer)
//!   ------|=== owned by consumer ======|---- owned by producer ----|------
//!          slots [tail, head) hold packets; [head, tail+size) are free
//! ```
//!
//! The producer fills slots at `head` and publishes with a release store of
//! `head`; the consumer reads up to `head` and frees slots with a release store
//! of `tail`. The switch never trusts what the other side wrote: it keeps its
//! own copy of its index, validates every buffer index and length it reads, and
//! reads each slot exactly once.
#![allow(unsafe_code)]

pub mod batch;

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Region;

pub use batch::{
    Batch, GrowArena, MAX_OPTIONS as MAX_TUNNEL_OPTIONS, PacketRef, TunMeta, TunMetaSlots,
    TunOptions,
};

/// Identifies the shared layout ("MSWITCH\0" little-endian-ish).
pub const MAGIC: u64 = 0x4d53_5749_5443_4800;
/// Bumped on any incompatible change of the layout below.
pub const LAYOUT_VERSION: u32 = 1;

/// Default buffer size: a 1514-byte frame plus room, as in netmap.
pub const DEFAULT_BUF_SIZE: u32 = 2048;
/// Largest buffer size accepted (jumbo frames up to 64 KiB).
pub const MAX_BUF_SIZE: u32 = 65536;
/// Default number of slots per ring.
pub const DEFAULT_RING_SIZE: u32 = 1024;
/// Largest ring accepted.
pub const MAX_RING_SIZE: u32 = 32768;

/// One ring entry. `buf` indexes the port's buffer pool.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub buf: u32,
    pub len: u16,
    pub flags: u16,
}

const CACHE_LINE: usize = 64;

/// The shared part of a ring: indices on separate cache lines so producer and
/// consumer do not false-share.
#[repr(C, align(64))]
pub struct RingHeader {
    /// Next slot the producer will fill; written only by the producer.
    pub head: AtomicU32,
    _pad0: [u8; CACHE_LINE - 4],
    /// Next slot the consumer will read; written only by the consumer.
    pub tail: AtomicU32,
    _pad1: [u8; CACHE_LINE - 4],
    /// Set by the consumer before it sleeps: the producer must then ring the
    /// ring's doorbell after publishing.
    pub need_wakeup: AtomicU32,
    _pad2: [u8; CACHE_LINE - 4],
}

/// The region header, written once by the switch when the port is created.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PortHeader {
    pub magic: u64,
    pub version: u32,
    pub incoming_slots: u32,
    pub outgoing_slots: u32,
    pub nbufs: u32,
    pub buf_size: u32,
    pub _reserved: u32,
}

/// Sizes that define a port's memory; everything else is derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemConfig {
    pub incoming_slots: u32,
    pub outgoing_slots: u32,
    pub nbufs: u32,
    pub buf_size: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("ring size {0} must be a power of two between 2 and {MAX_RING_SIZE}")]
    RingSize(u32),
    #[error("buffer size {0} must be a multiple of 64 between 64 and {MAX_BUF_SIZE}")]
    BufSize(u32),
    #[error("{nbufs} buffers cannot back rings of {need} slots")]
    TooFewBuffers { nbufs: u32, need: u32 },
    #[error("port memory of {0} bytes is too large")]
    TooLarge(u64),
    #[error("bad port memory: {0}")]
    BadHeader(&'static str),
    #[error("shared memory: {0}")]
    Os(#[from] io::Error),
}

impl MemConfig {
    /// Rings of `ring_size` slots each direction and one buffer per slot.
    pub fn new(ring_size: u32, buf_size: u32) -> MemConfig {
        MemConfig {
            incoming_slots: ring_size,
            outgoing_slots: ring_size,
            nbufs: ring_size * 2,
            buf_size,
        }
    }

    pub fn validate(&self) -> Result<(), MemError> {
        for s in [self.incoming_slots, self.outgoing_slots] {
            if !s.is_power_of_two() || !(2..=MAX_RING_SIZE).contains(&s) {
                return Err(MemError::RingSize(s));
            }
        }
        if !self.buf_size.is_multiple_of(64) || !(64..=MAX_BUF_SIZE).contains(&self.buf_size) {
            return Err(MemError::BufSize(self.buf_size));
        }
        let need = self.incoming_slots + self.outgoing_slots;
        if self.nbufs < need {
            return Err(MemError::TooFewBuffers {
                nbufs: self.nbufs,
                need,
            });
        }
        if self.layout().total > (1 << 34) {
            return Err(MemError::TooLarge(self.layout().total as u64));
        }
        Ok(())
    }

    /// Byte offsets of each part of the region.
    pub fn layout(&self) -> Layout {
        let ring_bytes = |slots: u32| size_of::<RingHeader>() + slots as usize * size_of::<Slot>();
        let incoming = size_of::<PortHeader>().next_multiple_of(CACHE_LINE);
        let outgoing = (incoming + ring_bytes(self.incoming_slots)).next_multiple_of(CACHE_LINE);
        let bufs = (outgoing + ring_bytes(self.outgoing_slots)).next_multiple_of(4096);
        let total = bufs + self.nbufs as usize * self.buf_size as usize;
        Layout {
            incoming,
            outgoing,
            bufs,
            total,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub incoming: usize,
    pub outgoing: usize,
    pub bufs: usize,
    pub total: usize,
}

/// A port's memory region with its rings and buffers.
pub struct PortMem {
    region: Region,
    cfg: MemConfig,
    layout: Layout,
}

impl PortMem {
    /// Creates the region and lays out the rings so that slot `i` of the
    /// incoming ring owns buffer `i` and slot `i` of the outgoing ring owns
    /// buffer `incoming_slots + i`.
    pub fn new(name: &str, cfg: MemConfig) -> Result<PortMem, MemError> {
        cfg.validate()?;
        let layout = cfg.layout();
        let region = Region::new(name, layout.total)?;
        let mem = PortMem {
            region,
            cfg,
            layout,
        };
        let hdr = PortHeader {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            incoming_slots: cfg.incoming_slots,
            outgoing_slots: cfg.outgoing_slots,
            nbufs: cfg.nbufs,
            buf_size: cfg.buf_size,
            _reserved: 0,
        };
        // SAFETY: the region is at least `layout.total` bytes, page aligned, and
        // nobody else can see it yet.
        unsafe { ptr::write(mem.region.as_ptr().cast::<PortHeader>(), hdr) };
        for i in 0..cfg.incoming_slots {
            mem.incoming().write_slot(
                i,
                Slot {
                    buf: i,
                    len: 0,
                    flags: 0,
                },
            );
        }
        for i in 0..cfg.outgoing_slots {
            mem.outgoing().write_slot(
                i,
                Slot {
                    buf: cfg.incoming_slots + i,
                    len: 0,
                    flags: 0,
                },
            );
        }
        Ok(mem)
    }

    /// Maps a region created by another process, checking its header.
    pub fn from_region(region: Region) -> Result<PortMem, MemError> {
        if region.len() < size_of::<PortHeader>() {
            return Err(MemError::BadHeader("region smaller than its header"));
        }
        // SAFETY: the region holds at least a header; read it once by value.
        let hdr: PortHeader = unsafe { ptr::read_volatile(region.as_ptr().cast::<PortHeader>()) };
        if hdr.magic != MAGIC {
            return Err(MemError::BadHeader("wrong magic number"));
        }
        if hdr.version != LAYOUT_VERSION {
            return Err(MemError::BadHeader("unsupported layout version"));
        }
        let cfg = MemConfig {
            incoming_slots: hdr.incoming_slots,
            outgoing_slots: hdr.outgoing_slots,
            nbufs: hdr.nbufs,
            buf_size: hdr.buf_size,
        };
        cfg.validate()?;
        let layout = cfg.layout();
        if layout.total > region.len() {
            return Err(MemError::BadHeader("region smaller than its layout"));
        }
        Ok(PortMem {
            region,
            cfg,
            layout,
        })
    }

    pub fn config(&self) -> MemConfig {
        self.cfg
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    pub fn buf_size(&self) -> u32 {
        self.cfg.buf_size
    }

    pub fn nbufs(&self) -> u32 {
        self.cfg.nbufs
    }

    pub fn incoming(&self) -> RingRef<'_> {
        self.ring(self.layout.incoming, self.cfg.incoming_slots)
    }

    pub fn outgoing(&self) -> RingRef<'_> {
        self.ring(self.layout.outgoing, self.cfg.outgoing_slots)
    }

    fn ring(&self, off: usize, size: u32) -> RingRef<'_> {
        // SAFETY: `off` comes from `layout()`, which places a cache-aligned
        // RingHeader followed by `size` slots inside the region.
        unsafe {
            let base = self.region.as_ptr().add(off);
            RingRef {
                hdr: &*base.cast::<RingHeader>(),
                slots: base.add(size_of::<RingHeader>()).cast::<Slot>(),
                mask: size - 1,
            }
        }
    }

    /// Pointer to buffer `idx`, or `None` if the index is out of range.
    /// The pointer is valid for `buf_size()` bytes while `self` lives.
    #[inline]
    pub fn buf_ptr(&self, idx: u32) -> Option<*mut u8> {
        if idx < self.cfg.nbufs {
            // SAFETY: idx < nbufs, so the buffer lies inside the region.
            Some(unsafe {
                self.region
                    .as_ptr()
                    .add(self.layout.bufs + idx as usize * self.cfg.buf_size as usize)
            })
        } else {
            None
        }
    }

    /// Copies `data` into buffer `idx`. Only for the side that owns the slot
    /// pointing at that buffer. Returns false if it does not fit.
    pub fn write_buf(&self, idx: u32, data: &[u8]) -> bool {
        match self.buf_ptr(idx) {
            Some(p) if data.len() <= self.cfg.buf_size as usize => {
                // SAFETY: in bounds (checked above); the caller owns the slot.
                unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
                true
            }
            _ => false,
        }
    }

    /// Borrows buffer `idx` whole, writable. Only for the side that owns the
    /// slot pointing at that buffer (so no one else touches the bytes).
    #[allow(clippy::mut_from_ref)]
    pub fn buf_mut(&self, idx: u32) -> Option<&mut [u8]> {
        let p = self.buf_ptr(idx)?;
        // SAFETY: in bounds; the caller owns the slot, so the borrow is unique.
        Some(unsafe { std::slice::from_raw_parts_mut(p, self.cfg.buf_size as usize) })
    }

    /// The producer's loop over a ring, for the side that owns `head`: fills
    /// up to `max` free slots in place and publishes them once. `fill(i, buf)`
    /// gets the `i`-th slot's whole buffer and answers the frame's length,
    /// `Some(0)` to skip a frame (nothing queued, the next one is asked for),
    /// or `None` to stop. Lengths are clamped to the buffer and to a slot's
    /// 16 bits. Returns how many frames were queued.
    pub fn produce(
        &self,
        ring: RingRef<'_>,
        head: &mut u32,
        max: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> usize {
        let room = (ring.free(*head) as usize).min(max);
        let mut n = 0;
        while n < room {
            let slot = ring.slot(*head);
            let Some(buf) = self.buf_mut(slot.buf) else {
                break;
            };
            let cap = buf.len().min(usize::from(u16::MAX));
            match fill(n, buf) {
                None => break,
                Some(0) => continue,
                Some(len) => {
                    let len = len.min(cap) as u16;
                    ring.write_slot(
                        *head,
                        Slot {
                            buf: slot.buf,
                            len,
                            flags: 0,
                        },
                    );
                    *head = head.wrapping_add(1);
                    n += 1;
                }
            }
        }
        if n > 0 {
            ring.publish(*head);
        }
        n
    }

    /// The consumer's loop over a ring, for the side that owns `tail`: hands
    /// up to `max` waiting frames to `f` in order and releases their slots
    /// once. A slot with a bad buffer index reads as an empty frame.
    pub fn consume(
        &self,
        ring: RingRef<'_>,
        tail: &mut u32,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> usize {
        let n = (ring.available(*tail) as usize).min(max);
        for _ in 0..n {
            let s = ring.slot(*tail);
            f(self.buf(s.buf, usize::from(s.len)).unwrap_or(&[]));
            *tail = tail.wrapping_add(1);
        }
        if n > 0 {
            ring.release(*tail);
        }
        n
    }

    /// Borrows `len` bytes of buffer `idx`. Only for the side that owns the
    /// slot pointing at that buffer; `None` if out of range.
    pub fn buf(&self, idx: u32, len: usize) -> Option<&[u8]> {
        let p = self.buf_ptr(idx)?;
        if len > self.cfg.buf_size as usize {
            return None;
        }
        // SAFETY: in bounds; the caller owns the slot, so the bytes are stable.
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }
}

/// A view of one ring inside a `PortMem`.
#[derive(Clone, Copy)]
pub struct RingRef<'a> {
    pub hdr: &'a RingHeader,
    slots: *mut Slot,
    mask: u32,
}

impl RingRef<'_> {
    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Reads the slot at free-running index `i` exactly once.
    #[inline]
    pub fn slot(&self, i: u32) -> Slot {
        // SAFETY: the index is masked into the ring; volatile because the
        // other side of the ring may be another (untrusted) process.
        unsafe { ptr::read_volatile(self.slots.add((i & self.mask) as usize)) }
    }

    #[inline]
    pub fn write_slot(&self, i: u32, s: Slot) {
        // SAFETY: the index is masked into the ring.
        unsafe { ptr::write_volatile(self.slots.add((i & self.mask) as usize), s) }
    }

    /// Publishes slots up to `head` (producer side).
    #[inline]
    pub fn publish(&self, head: u32) {
        self.hdr.head.store(head, Ordering::Release);
    }

    /// Frees slots up to `tail` (consumer side).
    #[inline]
    pub fn release(&self, tail: u32) {
        self.hdr.tail.store(tail, Ordering::Release);
    }

    /// Slots in `[tail, head)` as seen by the consumer whose own index is `cur`;
    /// a producer that wrote nonsense (more than a ring's worth) yields 0.
    #[inline]
    pub fn available(&self, cur: u32) -> u32 {
        let head = self.hdr.head.load(Ordering::Acquire);
        let n = head.wrapping_sub(cur);
        if n > self.size() { 0 } else { n }
    }

    /// Free slots for a producer whose own head is `head`; a consumer that
    /// wrote nonsense yields 0 (its port just stops receiving).
    #[inline]
    pub fn free(&self, head: u32) -> u32 {
        let tail = self.hdr.tail.load(Ordering::Acquire);
        let used = head.wrapping_sub(tail);
        self.size().saturating_sub(used).min(self.size())
    }

    /// Producer side of the need-wakeup handshake: after publishing, returns
    /// true (and clears the flag) if the consumer asked to be woken.
    #[inline]
    pub fn take_wakeup_request(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.hdr.need_wakeup.load(Ordering::Relaxed) != 0
            && self.hdr.need_wakeup.swap(0, Ordering::Relaxed) != 0
    }

    /// Consumer side: asks to be woken and returns false if packets are
    /// already waiting beyond `cur` (then the caller must not sleep).
    pub fn arm_wakeup(&self, cur: u32) -> bool {
        self.hdr.need_wakeup.store(1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.available(cur) > 0 {
            self.hdr.need_wakeup.store(0, Ordering::Relaxed);
            false
        } else {
            true
        }
    }

    pub fn disarm_wakeup(&self) {
        self.hdr.need_wakeup.store(0, Ordering::Relaxed);
    }
}

/// Copies `len` bytes between packet buffers. Short frames are copied in whole
/// 64-byte blocks when both buffers have room, as VALE does: a fixed-size
/// block copy is cheaper than `memcpy`'s length dispatch for small frames.
///
/// # Safety
/// `src` must be readable for `room` bytes and `dst` writable for `room`
/// bytes, with `len <= room`, and the two must not overlap.
#[inline(always)]
pub unsafe fn copy_frame(src: *const u8, dst: *mut u8, len: usize, room: usize) {
    let rounded = (len + 63) & !63;
    if len <= 256 && rounded <= room {
        let mut off = 0;
        while off < rounded {
            // SAFETY: off + 64 <= rounded <= room for both buffers.
            unsafe { ptr::copy_nonoverlapping(src.add(off), dst.add(off), 64) };
            off += 64;
        }
    } else {
        // SAFETY: len <= room for both buffers (caller's contract).
        unsafe { ptr::copy_nonoverlapping(src, dst, len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_buffers_fit() {
        let cfg = MemConfig::new(1024, 2048);
        cfg.validate().unwrap();
        let l = cfg.layout();
        assert_eq!(l.incoming % 64, 0);
        assert_eq!(l.outgoing % 64, 0);
        assert_eq!(l.bufs % 4096, 0);
        assert!(l.outgoing >= l.incoming + 192 + 1024 * 8);
        assert_eq!(l.total, l.bufs + 2048 * 2048);
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(matches!(
            MemConfig::new(1000, 2048).validate(),
            Err(MemError::RingSize(1000))
        ));
        assert!(matches!(
            MemConfig::new(1024, 100).validate(),
            Err(MemError::BufSize(100))
        ));
        let mut c = MemConfig::new(8, 2048);
        c.nbufs = 15;
        assert!(matches!(c.validate(), Err(MemError::TooFewBuffers { .. })));
    }

    #[test]
    fn slots_start_owning_distinct_buffers() {
        let m = PortMem::new("t", MemConfig::new(8, 128)).unwrap();
        let mut seen: Vec<u32> = (0..8).map(|i| m.incoming().slot(i).buf).collect();
        seen.extend((0..8).map(|i| m.outgoing().slot(i).buf));
        seen.sort();
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
        assert!(m.buf_ptr(16).is_none());
        assert!(m.write_buf(3, &[1, 2, 3]));
        assert_eq!(m.buf(3, 3).unwrap(), &[1, 2, 3]);
        assert!(!m.write_buf(3, &[0; 129]));
    }

    #[test]
    fn indices_from_a_hostile_peer_are_clamped() {
        let m = PortMem::new("t", MemConfig::new(8, 128)).unwrap();
        let r = m.incoming();
        r.publish(5);
        assert_eq!(r.available(0), 5);
        r.publish(1000); // more than a ring's worth: ignored
        assert_eq!(r.available(0), 0);
        r.publish(3u32.wrapping_sub(10)); // behind the consumer
        assert_eq!(r.available(0), 0);
        let o = m.outgoing();
        o.release(0);
        assert_eq!(o.free(0), 8);
        assert_eq!(o.free(6), 2);
        o.release(100); // ahead of the producer
        assert_eq!(o.free(6), 0);
    }

    #[test]
    fn reopened_region_is_checked() {
        let m = PortMem::new("t", MemConfig::new(8, 128)).unwrap();
        let fd = m.region().fd().try_clone_to_owned().unwrap();
        let again = PortMem::from_region(Region::map(fd, m.region().len()).unwrap()).unwrap();
        assert_eq!(again.config(), m.config());
        let bad = Region::new("bad", 4096).unwrap();
        assert!(matches!(
            PortMem::from_region(bad),
            Err(MemError::BadHeader(_))
        ));
    }
}
