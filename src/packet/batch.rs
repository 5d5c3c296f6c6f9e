//! A batch: the packets read from one input port in one pass, as seen by a
//! module. The views point straight into the input port's buffers (no copy);
//! the switch owns those slots until it has forwarded the whole batch.
#![allow(unsafe_code)]

use crate::port::PortId;

/// One packet of a batch: where its bytes are, how long it is and how much
/// room its buffer has. Plain data, filled by the switch, reused across batches.
#[derive(Clone, Copy, Debug)]
pub struct PacketRef {
    pub(crate) ptr: *mut u8,
    pub(crate) len: u32,
    pub(crate) cap: u32,
}

impl PacketRef {
    /// No bytes (a placeholder for unused entries).
    pub const EMPTY: PacketRef = PacketRef {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// A view of bytes that are only ever read through it (the source of
    /// a copy, as in [`crate::switch::Switch::transmit`]): `cap` is the
    /// length, so no copy reads past the slice.
    pub(crate) fn readonly(f: &[u8]) -> PacketRef {
        PacketRef {
            ptr: f.as_ptr().cast_mut(),
            len: f.len() as u32,
            cap: f.len() as u32,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// SAFETY: a PacketRef is only dereferenced through `Batch`, whose creator
// guarantees exclusive access to the bytes for the batch's lifetime.
unsafe impl Send for PacketRef {}

/// The packets of one input batch, handed to a module.
pub struct Batch<'a> {
    pkts: &'a mut [PacketRef],
    in_port: PortId,
}

impl<'a> Batch<'a> {
    /// # Safety
    /// Every `PacketRef` must point to `cap` bytes that nobody else reads or
    /// writes while the batch lives, with `len <= cap`.
    pub(crate) unsafe fn new(pkts: &'a mut [PacketRef], in_port: PortId) -> Batch<'a> {
        Batch { pkts, in_port }
    }

    /// Builds a batch over ordinary byte buffers (tests, embedding).
    pub fn from_buffers(
        bufs: &'a mut [Vec<u8>],
        refs: &'a mut Vec<PacketRef>,
        in_port: PortId,
    ) -> Batch<'a> {
        refs.clear();
        refs.extend(bufs.iter_mut().map(|b| PacketRef {
            ptr: b.as_mut_ptr(),
            len: b.len() as u32,
            cap: b.len() as u32,
        }));
        Batch {
            pkts: refs.as_mut_slice(),
            in_port,
        }
    }

    /// [`Batch::from_buffers`] with room to grow: packet `i` is the first
    /// `lens[i]` bytes of `bufs[i]` (at most all of them), and may grow to
    /// the whole buffer (tests of pushed headers).
    pub fn from_buffers_with_room(
        bufs: &'a mut [Vec<u8>],
        lens: &[usize],
        refs: &'a mut Vec<PacketRef>,
        in_port: PortId,
    ) -> Batch<'a> {
        refs.clear();
        refs.extend(bufs.iter_mut().zip(lens).map(|(b, &len)| PacketRef {
            ptr: b.as_mut_ptr(),
            len: len.min(b.len()) as u32,
            cap: b.len() as u32,
        }));
        Batch {
            pkts: refs.as_mut_slice(),
            in_port,
        }
    }

    /// Packets in the batch.
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// The port every packet of this batch came in on.
    pub fn in_port(&self) -> PortId {
        self.in_port
    }

    /// The bytes of packet `i`.
    ///
    /// # Panics
    /// If `i` is not a packet of the batch (`i >= len()`).
    #[inline]
    pub fn data(&self, i: usize) -> &[u8] {
        let p = &self.pkts[i];
        // SAFETY: guaranteed by `Batch::new`'s contract (len <= cap, exclusive).
        unsafe { std::slice::from_raw_parts(p.ptr, p.len as usize) }
    }

    /// The bytes of packet `i`, writable (modules may rewrite headers).
    #[inline]
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        let p = &self.pkts[i];
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(p.ptr, p.len as usize) }
    }

    /// Changes the length of packet `i` within its buffer (for pushing or
    /// popping headers). Returns false if the buffer has no room, or if a
    /// slot could not describe the length (more than 65535 bytes).
    pub fn set_len(&mut self, i: usize, len: usize) -> bool {
        let p = &mut self.pkts[i];
        if len > p.cap as usize || len > usize::from(u16::MAX) {
            return false;
        }
        p.len = len as u32;
        true
    }

    /// Room in packet `i`'s buffer.
    pub fn capacity(&self, i: usize) -> usize {
        self.pkts[i].cap as usize
    }
}
