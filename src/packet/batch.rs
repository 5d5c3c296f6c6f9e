//! A batch: the packets read from one input port in one pass, as seen by a
//! module. The views point straight into the input port's buffers (no copy);
//! the switch owns those slots until it has forwarded the whole batch.
#![allow(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::port::PortId;

/// The tunnel metadata of one packet, as Open vSwitch's `flow_tnl` holds
/// it: the tunnel key (the VNI; 64 bits as OpenFlow's `tunnel_id`) and the
/// outer source and destination addresses, IPv4 (`tun_src`/`tun_dst`) or
/// IPv6 (`tun_ipv6_src`/`tun_ipv6_dst`; a frame from an IPv6 tunnel has
/// the IPv4 pair 0, and one from an IPv4 tunnel the IPv6 pair). On input
/// it is what the packet carried (a tunnel port fills it); on output, what
/// a `key=flow`/`remote_ip=flow` tunnel port sends the frame with (to
/// `dst` if it is not 0, else to `ipv6_dst`, as Open vSwitch's
/// `flow_tnl_dst`). All zero: no tunnel (every packet that did not come
/// from one).
///
/// Geneve options: on input `opts` names the options the frame came with
/// in its port's side storage ([`TunMetaSlots::options`]); the `flow`
/// module reads them through its TLV table into `tun_metadataN` fields:
/// `md_present` (bit N: `tun_metadataN` is there) and `md` (their data,
/// placed by the table), with `tlv` the table's registry id
/// ([`crate::port::tunnel::geneve_opts`]). On output a Geneve port sends
/// the present fields as options, by that table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunMeta {
    pub id: u64,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ipv6_src: Ipv6Addr,
    pub ipv6_dst: Ipv6Addr,
    /// The received options: 1 + their slot in the port's option storage,
    /// 0 if none.
    pub opts: u32,
    /// The TLV table of `md` (0: none).
    pub tlv: u32,
    pub md_present: u64,
    pub md: u64,
}

impl TunMeta {
    /// No tunnel.
    pub const NONE: TunMeta = TunMeta {
        id: 0,
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        ipv6_src: Ipv6Addr::UNSPECIFIED,
        ipv6_dst: Ipv6Addr::UNSPECIFIED,
        opts: 0,
        tlv: 0,
        md_present: 0,
        md: 0,
    };

    /// Metadata of key `id` with IPv4 endpoints.
    pub const fn v4(id: u64, src: Ipv4Addr, dst: Ipv4Addr) -> TunMeta {
        TunMeta {
            id,
            src,
            dst,
            ..TunMeta::NONE
        }
    }

    /// Metadata of key `id` with IPv6 endpoints.
    pub const fn v6(id: u64, src: Ipv6Addr, dst: Ipv6Addr) -> TunMeta {
        TunMeta {
            id,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            ipv6_src: src,
            ipv6_dst: dst,
            ..TunMeta::NONE
        }
    }
}

impl Default for TunMeta {
    fn default() -> TunMeta {
        TunMeta::NONE
    }
}

/// A [`TunMeta`] per slot of a port's incoming ring, beside the ring: the
/// ring's producer stores the metadata of slot `i` before it publishes the
/// slot, and the switch reads it after it saw the slot published (the
/// ring's release/acquire orders the two, so plain relaxed atomics do).
///
/// The IPv6 addresses live in an array of their own, written and read
/// only for slots whose metadata has any (flagged by a marker in `id`): a
/// frame from an IPv4 tunnel costs what it did before IPv6 endpoints
/// existed.
///
/// Geneve options get storage of their own, made the first time the port
/// stores a frame with options ([`TunMetaSlots::store_with_options`]): a
/// port that never sees any pays one check per frame.
pub struct TunMetaSlots {
    id: Box<[AtomicU64]>,
    /// Source in the high 32 bits, destination in the low.
    addrs: Box<[AtomicU64]>,
    /// Per slot: IPv6 source (high, low), destination (high, low) and the
    /// key, valid when the slot's `id` is [`V6_FLAG`].
    addrs6: Box<[[AtomicU64; 5]]>,
    opts: OnceLock<Box<[SlotOptions]>>,
}

/// The Geneve options of one slot: their length in 4-byte words (0:
/// none) and the words.
struct SlotOptions {
    words: AtomicU32,
    data: [AtomicU32; OPTION_WORDS],
}

/// The most 4-byte words of Geneve options a header holds.
const OPTION_WORDS: usize = 63;

/// The most bytes of Geneve options a frame has.
pub const MAX_OPTIONS: usize = OPTION_WORDS * 4;

/// In `id`: the slot's key and IPv6 addresses are in `addrs6`. A received
/// VNI never has this bit; a key that does is stored there too, so every
/// key reads back whole.
const V6_FLAG: u64 = 1 << 63;

impl TunMetaSlots {
    /// Metadata for a ring of `n` slots.
    pub fn new(n: u32) -> TunMetaSlots {
        let n = n.max(1) as usize;
        TunMetaSlots {
            id: (0..n).map(|_| AtomicU64::new(0)).collect(),
            addrs: (0..n).map(|_| AtomicU64::new(0)).collect(),
            opts: OnceLock::new(),
            addrs6: (0..n)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    /// [`TunMetaSlots::store`] with the frame's Geneve options (`opts`,
    /// whole 4-byte words; empty: none). A port that never stored options
    /// pays one check here.
    #[inline]
    pub fn store_with_options(&self, pos: u32, m: TunMeta, opts: &[u8]) {
        self.store(pos, m);
        if !opts.is_empty() || self.opts.get().is_some() {
            self.store_options(pos, opts);
        }
    }

    /// Stores a slot's options, making the storage if this is the port's
    /// first frame with options.
    #[inline(never)]
    fn store_options(&self, pos: u32, opts: &[u8]) {
        let storage = self.opts.get_or_init(|| {
            (0..self.id.len())
                .map(|_| SlotOptions {
                    words: AtomicU32::new(0),
                    data: [const { AtomicU32::new(0) }; OPTION_WORDS],
                })
                .collect()
        });
        let s = &storage[pos as usize % self.id.len()];
        let mut n = 0;
        for (w, c) in s.data.iter().zip(opts.chunks_exact(4)) {
            w.store(
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                Ordering::Relaxed,
            );
            n += 1;
        }
        s.words.store(n, Ordering::Relaxed);
    }

    /// Copies the options `m.opts` names (a [`TunMeta`] this storage gave)
    /// into `out`; returns their bytes.
    pub fn options<'o>(&self, m: &TunMeta, out: &'o mut [u8; MAX_OPTIONS]) -> &'o [u8] {
        let Some(s) = (m.opts as usize)
            .checked_sub(1)
            .and_then(|i| self.opts.get()?.get(i))
        else {
            return &[];
        };
        let n = (s.words.load(Ordering::Relaxed) as usize).min(OPTION_WORDS);
        for (o, w) in out.chunks_exact_mut(4).zip(&s.data[..n]) {
            o.copy_from_slice(&w.load(Ordering::Relaxed).to_be_bytes());
        }
        &out[..n * 4]
    }

    /// Stores the metadata of the slot at ring position `pos`.
    #[inline]
    pub fn store(&self, pos: u32, m: TunMeta) {
        let i = pos as usize % self.id.len();
        let a = (u64::from(u32::from(m.src)) << 32) | u64::from(u32::from(m.dst));
        self.addrs[i].store(a, Ordering::Relaxed);
        if m.ipv6_src.is_unspecified() && m.ipv6_dst.is_unspecified() && m.id & V6_FLAG == 0 {
            self.id[i].store(m.id, Ordering::Relaxed);
            return;
        }
        let (s, d) = (m.ipv6_src.to_bits(), m.ipv6_dst.to_bits());
        let words = [(s >> 64) as u64, s as u64, (d >> 64) as u64, d as u64, m.id];
        for (slot, w) in self.addrs6[i].iter().zip(words) {
            slot.store(w, Ordering::Relaxed);
        }
        self.id[i].store(V6_FLAG, Ordering::Relaxed);
    }

    /// The metadata of the slot at ring position `pos`.
    #[inline]
    pub fn load(&self, pos: u32) -> TunMeta {
        let i = pos as usize % self.id.len();
        let a = self.addrs[i].load(Ordering::Relaxed);
        let opts = match self.opts.get() {
            Some(s) if s[i].words.load(Ordering::Relaxed) != 0 => i as u32 + 1,
            _ => 0,
        };
        let id = self.id[i].load(Ordering::Relaxed);
        let (src, dst) = (Ipv4Addr::from((a >> 32) as u32), Ipv4Addr::from(a as u32));
        if id != V6_FLAG {
            return TunMeta {
                opts,
                ..TunMeta::v4(id, src, dst)
            };
        }
        let w: [u64; 5] = std::array::from_fn(|k| self.addrs6[i][k].load(Ordering::Relaxed));
        let wide = |hi: u64, lo: u64| Ipv6Addr::from_bits((u128::from(hi) << 64) | u128::from(lo));
        TunMeta {
            id: w[4],
            src,
            dst,
            ipv6_src: wide(w[0], w[1]),
            ipv6_dst: wide(w[2], w[3]),
            opts,
            ..TunMeta::NONE
        }
    }
}

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

    /// A view of `len` bytes at `ptr` with no room to grow.
    pub(crate) fn new(ptr: *mut u8, len: u32) -> PacketRef {
        PacketRef { ptr, len, cap: len }
    }

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
    /// Per packet, when the input port is a tunnel port.
    tun: Option<&'a [TunMeta]>,
    /// Where their Geneve options are.
    tun_opts: Option<TunOptions<'a>>,
    /// Where a packet moves when it grows past its buffer (packets that
    /// sit in memory with no room after them: a port that receives
    /// directly); `None`: it cannot grow past `cap`.
    grow: Option<&'a mut GrowArena>,
}

/// Buffers for packets of a batch that grow past their own (see
/// [`Batch::with_grow_arena`]): blocks that live as long as the arena,
/// handed out anew for each batch ([`GrowArena::reset`]), so a packet's
/// new buffer stays put while the batch lives.
#[derive(Default)]
pub struct GrowArena {
    /// Each block, and where it starts (taken once, when it was made: the
    /// arena hands out raw pointers into it and never borrows it again).
    blocks: Vec<(Box<[u8]>, *mut u8)>,
    /// The block being handed out, and how much of it is.
    block: usize,
    used: usize,
}

// SAFETY: the pointers point into the arena's own blocks.
unsafe impl Send for GrowArena {}

/// A block of a [`GrowArena`]: room for several frames of any size a port
/// buffer holds; a larger request gets a block of its own size.
const GROW_BLOCK: usize = 64 * 1024;

impl GrowArena {
    /// Hands out every block again (the previous batch is done with them).
    pub fn reset(&mut self) {
        self.block = 0;
        self.used = 0;
    }

    /// `n` bytes that nothing handed out since the last reset uses.
    fn take(&mut self, n: usize) -> *mut u8 {
        // Cache-line aligned starts, as port buffers are.
        let n = n.next_multiple_of(64);
        while let Some((b, base)) = self.blocks.get(self.block) {
            if b.len() - self.used >= n {
                // SAFETY: `used + n <= len`: within the block.
                let p = unsafe { base.add(self.used) };
                self.used += n;
                return p;
            }
            self.block += 1;
            self.used = 0;
        }
        let mut b = vec![0u8; n.max(GROW_BLOCK)].into_boxed_slice();
        let base = b.as_mut_ptr();
        self.blocks.push((b, base));
        self.block = self.blocks.len() - 1;
        self.used = n;
        base
    }
}

/// Where a tunnel batch's Geneve options are ([`TunMeta::opts`] is 1 +
/// the index): the input port's ring side storage, or, for frames the port
/// handed over from memory of its own, one slice per frame.
#[derive(Clone, Copy)]
pub enum TunOptions<'a> {
    Slots(&'a TunMetaSlots),
    Frames(&'a [&'a [u8]]),
}

impl<'a> Batch<'a> {
    /// # Safety
    /// Every `PacketRef` must point to `cap` bytes that nobody else reads or
    /// writes while the batch lives, with `len <= cap`.
    pub(crate) unsafe fn new(pkts: &'a mut [PacketRef], in_port: PortId) -> Batch<'a> {
        Batch {
            pkts,
            in_port,
            tun: None,
            tun_opts: None,
            grow: None,
        }
    }

    /// The batch with `arena` to move packets into that grow past their
    /// buffer ([`Batch::set_len`]).
    pub(crate) fn with_grow_arena(mut self, arena: &'a mut GrowArena) -> Batch<'a> {
        self.grow = Some(arena);
        self
    }

    /// The batch with tunnel metadata `tun`, one per packet (it came in
    /// on a tunnel port). Ignored unless there is one per packet.
    pub fn with_tunnel(mut self, tun: &'a [TunMeta]) -> Batch<'a> {
        if tun.len() == self.pkts.len() {
            self.tun = Some(tun);
        }
        self
    }

    /// The batch whose tunnel metadata's Geneve options are in `slots`
    /// (the input port's).
    pub fn with_tunnel_options(mut self, slots: &'a TunMetaSlots) -> Batch<'a> {
        self.tun_opts = Some(TunOptions::Slots(slots));
        self
    }

    /// The batch whose packets' Geneve options are `opts`, one per packet
    /// (frames a port handed over from its own memory).
    pub fn with_frame_options(mut self, opts: &'a [&'a [u8]]) -> Batch<'a> {
        self.tun_opts = Some(TunOptions::Frames(opts));
        self
    }

    /// The Geneve options packet `i` came with (`tun`: its metadata),
    /// copied into `out`; empty if none.
    pub fn tunnel_options<'o>(&self, tun: &TunMeta, out: &'o mut [u8; MAX_OPTIONS]) -> &'o [u8] {
        match self.tun_opts {
            _ if tun.opts == 0 => &[],
            Some(TunOptions::Slots(s)) => s.options(tun, out),
            Some(TunOptions::Frames(f)) => {
                let o = f.get(tun.opts as usize - 1).copied().unwrap_or_default();
                let n = o.len().min(MAX_OPTIONS);
                out[..n].copy_from_slice(&o[..n]);
                &out[..n]
            }
            None => &[],
        }
    }

    /// The tunnel metadata of every packet, if the batch came in on a
    /// tunnel port (else every packet's is all zero). One branch per
    /// batch for modules that care.
    #[inline]
    pub fn tunnel(&self) -> Option<&'a [TunMeta]> {
        self.tun
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
            tun: None,
            tun_opts: None,
            grow: None,
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
            tun: None,
            tun_opts: None,
            grow: None,
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
    /// slot could not describe the length (more than 65535 bytes). In a
    /// batch with a [grow arena](Batch::with_grow_arena), a packet that
    /// outgrows its buffer moves into one of the arena's first, its bytes
    /// with it.
    pub fn set_len(&mut self, i: usize, len: usize) -> bool {
        let p = &mut self.pkts[i];
        if len > usize::from(u16::MAX) {
            return false;
        }
        if len > p.cap as usize {
            let Some(arena) = self.grow.as_deref_mut() else {
                return false;
            };
            // Room for a few more headers after this one.
            let cap = len + 64;
            let to = arena.take(cap);
            // SAFETY: `p` points at `len <= cap` readable bytes (`new`'s
            // contract); `to` at `cap` bytes of the arena that no other
            // packet uses while the batch lives (handed out once per reset).
            unsafe { std::ptr::copy_nonoverlapping(p.ptr, to, p.len as usize) };
            p.ptr = to;
            p.cap = cap as u32;
        }
        p.len = len as u32;
        true
    }

    /// Room in packet `i`'s buffer.
    pub fn capacity(&self, i: usize) -> usize {
        self.pkts[i].cap as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_grows_into_the_arena_with_its_bytes_and_only_with_one() {
        let mut bufs = vec![vec![1u8, 2, 3, 4], vec![5u8, 6]];
        let mut refs = Vec::new();
        let mut b = Batch::from_buffers(&mut bufs, &mut refs, PortId(1));
        // No arena: no room past the buffer; shrinking is in place.
        assert!(!b.set_len(0, 5));
        assert!(b.set_len(0, 3));
        assert_eq!(b.data(0), [1, 2, 3]);
        let mut arena = GrowArena::default();
        let mut b = b.with_grow_arena(&mut arena);
        assert!(b.set_len(0, 100));
        assert_eq!(b.data(0)[..3], [1, 2, 3]);
        assert!(b.capacity(0) >= 100);
        b.data_mut(0)[99] = 9;
        // A second packet gets bytes of its own, after the first's.
        assert!(b.set_len(1, 3000));
        assert_eq!(b.data(1)[..2], [5, 6]);
        b.data_mut(1)[2999] = 7;
        assert_eq!(b.data(0)[99], 9);
        // Larger than a block: a block of its own.
        assert!(b.set_len(1, 65_000));
        assert_eq!(b.data(1)[2999], 7);
        assert!(!b.set_len(1, 70_000), "beyond what a slot can say");
        // The original buffers were never written past their ends.
        assert_eq!(bufs, [vec![1, 2, 3, 4], vec![5, 6]]);
    }

    #[test]
    fn the_arena_hands_its_blocks_out_again_after_a_reset() {
        let mut a = GrowArena::default();
        let p = a.take(100);
        let q = a.take(100);
        assert_eq!(q as usize - p as usize, 128);
        let big = a.take(100_000);
        assert_eq!(a.blocks.len(), 2);
        a.reset();
        assert_eq!(a.take(10), p);
        let _ = big;
        assert_eq!(a.blocks.len(), 2);
    }

    #[test]
    fn tunnel_metadata_slots_give_back_what_was_stored() {
        let slots = TunMetaSlots::new(4);
        let v6 = TunMeta::v6(7, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let v4 = TunMeta::v4(5, [10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        // A 64-bit key with the marker's bit, and one with both families.
        let wide = TunMeta::v4(V6_FLAG | 3, [10, 0, 0, 1].into(), Ipv4Addr::UNSPECIFIED);
        let both = TunMeta { id: 9, ..v6 }.with_v4(v4);
        for (pos, m) in [v6, v4, wide, both, TunMeta::NONE, v6]
            .into_iter()
            .enumerate()
        {
            slots.store(pos as u32, m);
            assert_eq!(slots.load(pos as u32), m, "{m:?}");
        }
        // A slot reused by an IPv4 frame forgets the IPv6 addresses.
        slots.store(0, v4);
        assert_eq!(slots.load(4), v4);
    }

    impl TunMeta {
        fn with_v4(mut self, o: TunMeta) -> TunMeta {
            (self.src, self.dst) = (o.src, o.dst);
            self
        }
    }
}
