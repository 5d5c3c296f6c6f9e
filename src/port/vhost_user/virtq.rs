//! One split virtqueue in guest memory, from the device's side, written for
//! batches: the caller reads the available index once, pops chains, writes
//! used elements, and publishes the used index once.
//!
//! Everything in guest memory is untrusted and may change under us. The
//! ring addresses are translated and checked once, when the queue starts;
//! every descriptor is checked when it is read: its index against its table,
//! its buffer against guest memory, its direction against the queue's, an
//! indirect table against the negotiated feature, its size and alignment,
//! and nesting. A chain is cut off after as many descriptors as its table
//! holds, so a loop cannot spin. A bad chain is returned to the guest as used
//! with length 0 and counted; an available index more than a ring ahead
//! breaks the queue until the frontend sets it up again. No input can make
//! this code read or write outside guest memory, or panic.
#![allow(unsafe_code)]

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering, fence};

use super::guest_mem::GuestMem;
use crate::sys::{prefetch, prefetch_write};

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;
pub const DESC_F_INDIRECT: u16 = 4;
const USED_F_NO_NOTIFY: u16 = 1;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest split queue (the spec's limit).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Why a chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadChain {
    /// A head or `next` index past the end of its table.
    Index,
    /// More descriptors than the table holds: a loop.
    Loop,
    /// A buffer (or indirect table) outside guest memory.
    Address,
    /// A device-writable buffer where the device reads, or the reverse.
    Direction,
    /// An indirect table not negotiated, nested, combined with NEXT, empty,
    /// misaligned or of a size that is not a whole number of descriptors.
    Indirect,
}

/// Bytes of each chain's first buffer that the batch prefetch fetches (two
/// lines at most): a header and a short frame.
const HEAD_BYTES: usize = 128;

/// What the buffers a prefetch fetches are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Filling receive buffers: from their start, in a state ready to be
    /// written.
    Fill,
    /// Taking packets from transmit buffers, past their first `skip`
    /// bytes: the virtio-net header, which the device never reads (it
    /// offers no offloads) and the driver has just written, so fetching it
    /// would only pull a line from the driver's core for nothing.
    Take(usize),
}

/// Frontend addresses of a queue's three parts, as SET_VRING_ADDR gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingAddrs {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// A started split virtqueue. Holding it keeps guest memory mapped.
pub struct Virtq {
    mem: Arc<GuestMem>,
    desc: *const u8,
    avail: *const u8,
    used: *mut u8,
    size: u16,
    /// Next available entry the device will take.
    pub last_avail: u16,
    /// Next used entry the device will write.
    pub used_idx: u16,
    /// The available index as last read.
    avail_end: u16,
    event_idx: bool,
    indirect: bool,
    /// The frontend wrote an impossible available index.
    pub broken: bool,
    /// `broken` has been reported (see `just_broke`).
    reported: bool,
}

// SAFETY: the pointers point into `mem`, which the queue keeps alive; the
// queue is used by one thread at a time (its owner holds it under a lock).
unsafe impl Send for Virtq {}

impl Virtq {
    /// Whether guest memory faulted (see [`GuestMem::faulted`]).
    #[inline]
    pub fn mem_faulted(&self) -> bool {
        self.mem.faulted()
    }

    /// Checks the ring addresses against guest memory and starts the queue
    /// at `base` (the frontend's SET_VRING_BASE). `None` if a part of the
    /// ring lies outside guest memory or is misaligned, or `size` is bad.
    pub fn new(
        mem: Arc<GuestMem>,
        a: RingAddrs,
        size: u16,
        base: u16,
        event_idx: bool,
        indirect: bool,
    ) -> Option<Virtq> {
        if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() {
            return None;
        }
        let n = u64::from(size);
        let desc = mem.translate_uva(a.desc, 16 * n)?;
        let avail = mem.translate_uva(a.avail, 6 + 2 * n)?;
        let used = mem.translate_uva(a.used, 6 + 8 * n)?;
        if !(desc as usize).is_multiple_of(16)
            || !(avail as usize).is_multiple_of(2)
            || !(used as usize).is_multiple_of(4)
        {
            return None;
        }
        let mut q = Virtq {
            mem,
            desc,
            avail,
            used,
            size,
            last_avail: base,
            used_idx: base,
            avail_end: base,
            event_idx,
            indirect,
            broken: false,
            reported: false,
        };
        // A frontend that reconnects after a backend crash may have seen
        // more used entries than it told us: trust the ring, as DPDK does.
        let u = q.used_idx_atomic().load(Ordering::Acquire);
        if u != base {
            (q.last_avail, q.used_idx, q.avail_end) = (u, u, u);
        }
        Some(q)
    }

    fn avail_idx_atomic(&self) -> &AtomicU16 {
        // SAFETY: `avail + 2` is inside the checked ring and 2-aligned.
        unsafe { AtomicU16::from_ptr(self.avail.add(2).cast_mut().cast()) }
    }

    fn used_idx_atomic(&self) -> &AtomicU16 {
        // SAFETY: `used + 2` is inside the checked ring and 2-aligned.
        unsafe { AtomicU16::from_ptr(self.used.add(2).cast()) }
    }

    /// Re-reads the available index; returns how many chains wait. An index
    /// more than a ring ahead breaks the queue.
    #[inline]
    pub fn refresh(&mut self) -> u16 {
        if self.broken {
            return 0;
        }
        let idx = self.avail_idx_atomic().load(Ordering::Acquire);
        let n = idx.wrapping_sub(self.last_avail);
        if n > self.size {
            self.broken = true;
            return 0;
        }
        self.avail_end = idx;
        n
    }

    /// True once, after the queue broke.
    pub fn just_broke(&mut self) -> bool {
        let b = self.broken && !self.reported;
        self.reported |= b;
        b
    }

    /// Chains known to wait (as of the last `refresh`).
    #[inline]
    pub fn pending(&self) -> u16 {
        self.avail_end.wrapping_sub(self.last_avail)
    }

    #[inline]
    fn avail_ring(&self, i: u16) -> u16 {
        let off = 4 + 2 * usize::from(i & (self.size - 1));
        // SAFETY: `off + 2 <= 4 + 2 * size`, inside the checked ring.
        unsafe { ptr::read_volatile(self.avail.add(off).cast::<u16>()) }
    }

    #[inline]
    fn read_desc(table: *const u8, i: u32) -> Desc {
        // SAFETY: callers check `i` against the table's size; tables are
        // 16-aligned and lie in guest memory (checked when translated).
        unsafe {
            let p = table.add(16 * i as usize);
            Desc {
                addr: ptr::read_volatile(p.cast::<u64>()),
                len: ptr::read_volatile(p.add(8).cast::<u32>()),
                flags: ptr::read_volatile(p.add(12).cast::<u16>()),
                next: ptr::read_volatile(p.add(14).cast::<u16>()),
            }
        }
    }

    /// Walks the chain at `head`, handing each non-empty buffer (host
    /// pointer, length) to `seg`, which answers whether to go on. `write`
    /// is the direction every buffer must have.
    #[inline]
    fn walk(
        &self,
        head: u16,
        write: bool,
        mut seg: impl FnMut(*mut u8, u32) -> bool,
    ) -> Result<(), BadChain> {
        let mut table = self.desc;
        let mut tsize = u32::from(self.size);
        let mut i = u32::from(head);
        let mut budget = tsize;
        let mut nested = false;
        if i >= tsize {
            return Err(BadChain::Index);
        }
        loop {
            let d = Self::read_desc(table, i);
            if d.flags & DESC_F_INDIRECT != 0 {
                if !self.indirect
                    || nested
                    || d.flags & DESC_F_NEXT != 0
                    || d.len == 0
                    || !d.len.is_multiple_of(16)
                    || !d.addr.is_multiple_of(16)
                    || d.len / 16 > 65536
                {
                    return Err(BadChain::Indirect);
                }
                table = self
                    .mem
                    .translate(d.addr, u64::from(d.len))
                    .ok_or(BadChain::Address)?;
                tsize = d.len / 16;
                budget = tsize;
                i = 0;
                nested = true;
                continue;
            }
            if budget == 0 {
                return Err(BadChain::Loop);
            }
            budget -= 1;
            if (d.flags & DESC_F_WRITE != 0) != write {
                return Err(BadChain::Direction);
            }
            if d.len > 0 {
                let p = self
                    .mem
                    .translate(d.addr, u64::from(d.len))
                    .ok_or(BadChain::Address)?;
                if !seg(p, d.len) {
                    return Ok(());
                }
            }
            if d.flags & DESC_F_NEXT == 0 {
                return Ok(());
            }
            i = u32::from(d.next);
            if i >= tsize {
                return Err(BadChain::Index);
            }
        }
    }

    #[inline]
    fn put_used(&mut self, id: u16, len: u32) {
        let off = 4 + 8 * usize::from(self.used_idx & (self.size - 1));
        // SAFETY: `off + 8 <= 4 + 8 * size`, inside the checked ring.
        unsafe {
            ptr::write_volatile(self.used.add(off).cast::<u32>(), u32::from(id));
            ptr::write_volatile(self.used.add(off + 4).cast::<u32>(), len);
        }
        self.used_idx = self.used_idx.wrapping_add(1);
    }

    /// Rewrites the length of used entry `i` (not yet published).
    #[inline]
    fn set_used_len(&mut self, i: u16, len: u32) {
        let off = 4 + 8 * usize::from(i & (self.size - 1)) + 4;
        // SAFETY: `off + 4 <= 4 + 8 * size`, inside the checked ring.
        unsafe { ptr::write_volatile(self.used.add(off).cast::<u32>(), len) };
    }

    /// Publishes used entries written since `since` (the used index before
    /// the batch); returns whether the guest asked to be told.
    #[inline]
    pub fn publish(&mut self, since: u16) -> bool {
        if self.used_idx == since {
            return false;
        }
        self.used_idx_atomic()
            .store(self.used_idx, Ordering::Release);
        fence(Ordering::SeqCst);
        if self.event_idx {
            let off = 4 + 2 * usize::from(self.size);
            // SAFETY: used_event sits right after the available ring, which
            // was checked to hold 6 + 2 * size bytes.
            let ev = unsafe { ptr::read_volatile(self.avail.add(off).cast::<u16>()) };
            self.used_idx.wrapping_sub(ev).wrapping_sub(1) < self.used_idx.wrapping_sub(since)
        } else {
            // SAFETY: the flags are the first field of the checked ring.
            let f = unsafe { ptr::read_volatile(self.avail.cast::<u16>()) };
            f & AVAIL_F_NO_INTERRUPT == 0
        }
    }

    /// Asks the guest to kick when it adds buffers (the device is going to
    /// sleep). The caller must `refresh` afterwards: buffers added before
    /// the guest saw this are not kicked for.
    pub fn enable_kicks(&self) {
        // SAFETY: avail_event follows the used ring (checked to hold 6 + 8 *
        // size bytes); the flags are its first field.
        unsafe {
            if self.event_idx {
                let off = 4 + 8 * usize::from(self.size);
                ptr::write_volatile(self.used.add(off).cast::<u16>(), self.last_avail);
            } else {
                ptr::write_volatile(self.used.cast::<u16>(), 0);
            }
        }
        fence(Ordering::SeqCst);
    }

    /// Asks the guest not to kick: the device polls. (With EVENT_IDX the
    /// event index is simply left behind.)
    pub fn disable_kicks(&self) {
        if !self.event_idx {
            // SAFETY: as in `enable_kicks`.
            unsafe { ptr::write_volatile(self.used.cast::<u16>(), USED_F_NO_NOTIFY) };
        }
    }

    /// Starts fetching the first buffers of the next `n` waiting chains (at
    /// most as many as wait), all at once, so that their cache misses
    /// overlap instead of being paid one after the other: a guest's buffers
    /// were last touched on the guest's core. `touch` says which bytes the
    /// device will use and how (see [`Touch`]). Only a hint: anything
    /// unexpected is left to `walk`.
    ///
    /// It goes in two passes: first the descriptors of all `n` chains (and
    /// the used entries the batch will write), then their buffers. A
    /// buffer's address is in its descriptor, so prefetching chain by chain
    /// waits for each descriptor's miss in turn (only as many overlap as
    /// the out-of-order window holds); in two passes they all overlap.
    #[inline]
    pub fn prefetch_batch(&self, n: u16, touch: Touch) {
        let n = n.min(self.pending());
        let mask = self.size - 1;
        for k in 0..n {
            let head = self.avail_ring(self.last_avail.wrapping_add(k));
            if head < self.size {
                // Hint only: `head` is checked, so this stays in the table.
                prefetch(self.desc.wrapping_add(16 * usize::from(head)));
            }
        }
        // Used entries are 8 bytes: every fourth one touches each line the
        // batch writes (and the last one, which may start a new line).
        for k in (0..n).step_by(4).chain(n.checked_sub(1)) {
            let off = 4 + 8 * usize::from(self.used_idx.wrapping_add(k) & mask);
            prefetch_write(self.used.wrapping_add(off));
        }
        for k in 0..n {
            self.prefetch_chain(k, touch);
        }
    }

    /// Starts fetching the available index and the available entries of
    /// the next `n` chains, which `refresh` and `prefetch_batch` read
    /// first: a hint, for a queue about to be drained, so that those two
    /// misses are not paid in turn at the start of the batch.
    #[inline]
    pub fn prefetch_avail(&self, n: u16) {
        prefetch(self.avail.wrapping_add(2));
        let mask = self.size - 1;
        for k in [0, n.saturating_sub(1)] {
            let off = 4 + 2 * usize::from(self.last_avail.wrapping_add(k) & mask);
            prefetch(self.avail.wrapping_add(off));
        }
    }

    /// Like `prefetch_batch`, for the one chain `ahead` places past the
    /// next: called once per chain taken, it keeps `ahead` chains in flight
    /// through a batch longer than the first prefetch.
    #[inline]
    pub fn prefetch(&self, ahead: u16, touch: Touch) {
        if ahead < self.pending() {
            self.prefetch_chain(ahead, touch);
        }
    }

    /// Starts fetching, ready to be written, the rest of the receive buffer
    /// that a frame of `bytes` (header included) will fill in the chain
    /// `ahead` places past the next: the lines past the first
    /// [`HEAD_BYTES`], which `prefetch_batch` fetches. Called once per frame a few
    /// chains ahead, so that only a few frames' lines are in flight at
    /// once. A long frame spans many lines the driver last wrote long ago,
    /// often out of the cache; without this, the copy stalls on each line
    /// in turn. Only a hint, for the chain's first buffer.
    #[inline]
    pub fn prefetch_fill_rest(&self, ahead: u16, bytes: usize) {
        if bytes <= HEAD_BYTES || ahead >= self.pending() {
            return;
        }
        let Some(d) = self.first_desc(ahead) else {
            return;
        };
        let span = bytes.min(d.len as usize);
        let Some(p) = self.mem.translate(d.addr, span as u64) else {
            return;
        };
        // From the first line boundary at or past HEAD_BYTES to the end.
        let first = ((p as usize + HEAD_BYTES) & !63) - p as usize;
        for off in (first..span).step_by(64) {
            prefetch_write(p.wrapping_add(off));
        }
    }

    /// The head descriptor of the chain `k` places past the next, for the
    /// prefetch hints: none if its index is out of range or it is indirect.
    #[inline(always)]
    fn first_desc(&self, k: u16) -> Option<Desc> {
        let head = self.avail_ring(self.last_avail.wrapping_add(k));
        if head >= self.size {
            return None;
        }
        let d = Self::read_desc(self.desc, u32::from(head));
        (d.flags & DESC_F_INDIRECT == 0).then_some(d)
    }

    #[inline(always)]
    fn prefetch_chain(&self, k: u16, touch: Touch) {
        let Some(d) = self.first_desc(k) else {
            return;
        };
        let (from, write) = match touch {
            Touch::Fill => (0, true),
            Touch::Take(skip) => (skip, false),
        };
        let len = d.len as usize;
        if len <= from {
            return;
        }
        // The first HEAD_BYTES past `from`, in at most two lines: a header
        // and a short frame usually straddle two; a short frame alone
        // often fits one.
        let span = len.min(from + HEAD_BYTES);
        let Some(p) = self.mem.translate(d.addr, span as u64) else {
            return;
        };
        let (start, last) = (p.wrapping_add(from), p.wrapping_add(span - 1));
        let two = (start as usize ^ last as usize) >> 6 != 0;
        for p in [start, start.wrapping_add(64)]
            .into_iter()
            .take(1 + usize::from(two))
        {
            if write {
                prefetch_write(p);
            } else {
                prefetch(p);
            }
        }
    }

    /// Takes the next waiting chain (the caller checked `pending() > 0`) and
    /// copies its packet, less the first `skip` bytes (the virtio-net
    /// header), into `buf`. Returns the packet's length, or why it was not
    /// taken: `Ok(None)` for a packet longer than `buf` (or shorter than
    /// the header). The chain is returned as used either way.
    #[inline]
    pub fn pop_into(&mut self, skip: usize, buf: &mut [u8]) -> Result<Option<usize>, BadChain> {
        let head = self.avail_ring(self.last_avail);
        self.last_avail = self.last_avail.wrapping_add(1);
        // The usual case first: one readable buffer, header and frame.
        if head < self.size {
            let d = Self::read_desc(self.desc, u32::from(head));
            let len = d.len as usize;
            if d.flags == 0
                && len > skip
                && len - skip <= buf.len()
                && let Some(p) = self.mem.translate(d.addr, u64::from(d.len))
            {
                // SAFETY: `p` is valid for `len` bytes of guest memory
                // (translated above), `buf` for `len - skip`; guest memory
                // is never one of our buffers.
                unsafe { copy_bytes(p.add(skip), buf.as_mut_ptr(), len - skip) };
                self.put_used(head, 0);
                return Ok(Some(len - skip));
            }
        }
        let (mut seen, mut out, mut fits) = (0usize, 0usize, true);
        let cap = buf.len();
        let dst = buf.as_mut_ptr();
        let r = self.walk(head, false, |p, len| {
            let len = len as usize;
            let from = skip.saturating_sub(seen).min(len);
            seen += len;
            let n = len - from;
            if out + n > cap {
                fits = false;
                return false;
            }
            // SAFETY: `p` is valid for `len` bytes of guest memory (checked
            // by `walk`); `out + n <= cap` bytes of `buf`. Guest memory is
            // never one of our buffers, so the two cannot overlap.
            unsafe { copy_bytes(p.add(from), dst.add(out), n) };
            out += n;
            true
        });
        self.put_used(head, 0);
        r?;
        Ok((fits && seen >= skip).then_some(out))
    }

    /// Writes `hdr` then `frame` into the guest's next chain(s): with
    /// `merge`, as many chains as the packet needs (and `hdr`'s last two
    /// bytes, num_buffers, set to their count); otherwise one chain that
    /// must hold it all. A bad chain is consumed (used, length 0, and so
    /// are the chains the frame had filled before it) and the frame is to
    /// be dropped.
    #[inline]
    pub fn push(&mut self, hdr: &[u8], frame: &[u8], merge: bool) -> Result<Pushed, BadChain> {
        let need = hdr.len() + frame.len();
        // The usual case first: one writable buffer that holds it all, and
        // a header that already says one buffer (as `walk`'s path writes).
        let one = hdr.len() < 2 || hdr[hdr.len() - 2..] == [1, 0];
        if one && self.pending() > 0 {
            let head = self.avail_ring(self.last_avail);
            if head < self.size {
                let d = Self::read_desc(self.desc, u32::from(head));
                if d.flags == DESC_F_WRITE
                    && d.len as usize >= need
                    && let Some(p) = self.mem.translate(d.addr, u64::from(d.len))
                {
                    // SAFETY: `p` is valid for `d.len >= need` bytes of
                    // guest memory (translated above); the sources are our
                    // own slices.
                    unsafe {
                        copy_bytes(hdr.as_ptr(), p, hdr.len());
                        copy_bytes(frame.as_ptr(), p.add(hdr.len()), frame.len());
                    }
                    self.last_avail = self.last_avail.wrapping_add(1);
                    self.put_used(head, need as u32);
                    return Ok(Pushed::Done);
                }
            }
        }
        let (save_avail, save_used) = (self.last_avail, self.used_idx);
        let mut done = 0usize;
        let mut nbufs: u16 = 0;
        // Where num_buffers (the header's last two bytes) landed.
        let mut nb_at: [*mut u8; 2] = [ptr::null_mut(); 2];
        while done < need {
            if self.pending() == 0 && (!merge || self.refresh() == 0) {
                (self.last_avail, self.used_idx) = (save_avail, save_used);
                return Ok(Pushed::NoRoom);
            }
            let head = self.avail_ring(self.last_avail);
            self.last_avail = self.last_avail.wrapping_add(1);
            let mut chain = 0usize;
            let r = self.walk(head, true, |p, len| {
                let mut len = len as usize;
                if done == 0 && len >= need {
                    // The usual case: header and frame fit the first buffer.
                    // SAFETY: `p` is valid for `len >= need` bytes of guest
                    // memory; the sources are our own slices.
                    unsafe {
                        copy_bytes(hdr.as_ptr(), p, hdr.len());
                        copy_bytes(frame.as_ptr(), p.add(hdr.len()), frame.len());
                    }
                    if hdr.len() >= 2 {
                        let at = p.wrapping_add(hdr.len() - 2);
                        nb_at = [at, at.wrapping_add(1)];
                    }
                    done = need;
                    chain = need;
                    return false;
                }
                let mut p = p;
                while len > 0 && done < need {
                    let (src, n) = if done < hdr.len() {
                        let k = hdr.len() - done;
                        for (j, at) in nb_at.iter_mut().enumerate() {
                            let pos = hdr.len() - 2 + j;
                            if (done..done + k.min(len)).contains(&pos) {
                                *at = p.wrapping_add(pos - done);
                            }
                        }
                        (&hdr[done..], k.min(len))
                    } else {
                        let k = need - done;
                        (&frame[done - hdr.len()..], k.min(len))
                    };
                    // SAFETY: `p` is valid for `len >= n` bytes of guest
                    // memory (checked by `walk`); `src` has `n` bytes.
                    unsafe { copy_bytes(src.as_ptr(), p, n) };
                    p = p.wrapping_add(n);
                    len -= n;
                    done += n;
                    chain += n;
                }
                done < need
            });
            if let Err(e) = r {
                // The packet's chains before the bad one are returned empty
                // too: the guest must not take part of a frame for a whole
                // one (a used length shorter than the header is dropped).
                for i in save_used..self.used_idx {
                    self.set_used_len(i, 0);
                }
                self.put_used(head, 0);
                return Err(e);
            }
            if done < need && !merge {
                // Too small for the packet: leave the chain for a smaller one.
                (self.last_avail, self.used_idx) = (save_avail, save_used);
                return Ok(Pushed::TooBig);
            }
            self.put_used(head, chain as u32);
            nbufs = nbufs.wrapping_add(1);
        }
        if hdr.len() >= 2 {
            for (j, at) in nb_at.iter().enumerate() {
                if !at.is_null() {
                    // SAFETY: recorded above inside a checked guest buffer.
                    unsafe { ptr::write_volatile(*at, nbufs.to_le_bytes()[j]) };
                }
            }
        }
        Ok(Pushed::Done)
    }
}

/// Copies `n` bytes. Short copies (headers, minimum-size frames) are done
/// inline with overlapping 16- or 8-byte moves, which is cheaper than a call
/// to `memcpy` that dispatches on the length.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes, not overlapping.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY (all blocks): every move of `w` bytes is at an offset `o` with
    // `o + w <= n` (the last moves are placed against the end, overlapping
    // the first ones). No loops: LLVM would turn one back into `memcpy`.
    unsafe {
        let c16 = |o: usize| {
            let v = ptr::read_unaligned(src.add(o).cast::<[u8; 16]>());
            ptr::write_unaligned(dst.add(o).cast::<[u8; 16]>(), v);
        };
        match n {
            16..=32 => {
                c16(0);
                c16(n - 16);
            }
            33..=64 => {
                c16(0);
                c16(16);
                c16(n - 32);
                c16(n - 16);
            }
            65..=128 => {
                for o in [0, 16, 32, 48] {
                    c16(o);
                }
                for o in [64, 48, 32, 16] {
                    c16(n - o);
                }
            }
            8..=15 => {
                let a = ptr::read_unaligned(src.cast::<u64>());
                let b = ptr::read_unaligned(src.add(n - 8).cast::<u64>());
                ptr::write_unaligned(dst.cast::<u64>(), a);
                ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), b);
            }
            _ => ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

/// What became of a frame offered to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Done,
    /// No buffers available: nothing consumed, try again later.
    NoRoom,
    /// Without mergeable buffers, the next chain is too small: drop it.
    TooBig,
}

#[cfg(test)]
mod tests;
