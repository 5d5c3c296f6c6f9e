//! The mSwitch forwarding algorithm for one input batch.
//!
//! 1. Read up to `batch` slots from the input port's incoming ring, validating
//!    each buffer index and length, and build packet views in place (no copy).
//! 2. Lookup: the module answers a verdict per packet.
//! 3. Group: packets are chained per destination through index links in
//!    scratch space allocated once per worker; a list of the destinations
//!    actually used keeps the cost proportional to the destinations touched,
//!    not to the ports attached. Flooded packets go on one broadcast list that
//!    is merged (in input order) into every destination.
//! 4. Per destination: reserve slots under a short lock (a lease), copy with no
//!    lock held, publish in order. What does not fit is dropped and counted.
//!    `send` is that step for any list of packets; `Switch::transmit` uses
//!    it for the agent's packet-outs.
//!
//! Variants ([`Verdicts::add_variant`]: a packet's extra copies with bytes
//! of their own) join the batch as extra packets after the last one,
//! pointing into the verdicts' arena, and are linked right after their
//! packet, so each destination still receives in input order. A batch
//! without variants never looks at them.
//!
//! A packet never goes back out of its input port, except through a
//! hairpin set ([`Verdicts::add_set_with`]); floods never do. Controller
//! copies ([`Verdicts::to_controller`]) are queued while walking the batch,
//! with the bytes as the module left them and their tunnel metadata (the
//! module's for the controller copy, else what the packet came with); a
//! full queue drops and counts (`dest_full` on the input port).
//!
//! Nothing here allocates once the scratch space is warm, and nothing blocks.
#![allow(unsafe_code)]

use crate::module::{Nanos, Verdict, Verdicts};
use crate::packet::{Batch, GrowArena, PacketRef, PortMem, Slot, TunMeta, TunOptions, copy_frame};
use crate::port::{MAX_PORTS, PortId};

use super::capture;
use super::mirror::{CopyAs, Dests, Mirrors};
use super::stats::DropReason;
use super::table::{PacketIns, PortEntry, Table};

const NIL: u16 = u16::MAX;
/// Bytes for one batch's rewritten mirror copies (made on a forwarder's
/// first such copy); past half of it the batch's packets so far are sent.
const COPY_ARENA: usize = 1 << 20;

/// One (packet, destination) link.
#[derive(Clone, Copy)]
struct Link {
    pkt: u16,
    next: u16,
}

/// Per-destination list head within one batch.
#[derive(Clone, Copy, Default)]
struct DstList {
    head: u16,
    tail: u16,
    count: u16,
}

/// A worker's scratch space for forwarding. One per worker thread.
pub struct Forwarder {
    batch: usize,
    /// Index of this worker's copy of every port's counters.
    ctr: usize,
    pkts: Vec<PacketRef>,
    verdicts: Verdicts,
    links: Vec<Link>,
    dst: Vec<DstList>,
    active: Vec<u16>,
    bcast: Vec<u16>,
    /// Per variant (packet `n + k` of `pkts`): the packet it is a copy of.
    origin: Vec<u16>,
    /// Scratch for the mirror output ports of one packet.
    mirror_outs: Vec<(PortId, CopyAs)>,
    /// Mirror copies with bytes of their own (a VLAN tag added, replaced
    /// or removed): the last `copies` packets of `pkts`, each placed
    /// after its packet `copy_origin[k]`, their bytes in `copy_arena`
    /// (made once, never grown: views point into it).
    copies: usize,
    copy_origin: Vec<u16>,
    copy_src: Vec<usize>,
    copy_how: Vec<CopyAs>,
    copy_arena: Box<[u8]>,
    copy_used: usize,
    /// Longest packet of the current batch (after the module ran).
    max_len: u32,
    /// The tunnel metadata of the batch's packets, when its input port
    /// is a tunnel port (`tun_in_valid`).
    tun_in: Vec<TunMeta>,
    tun_in_valid: bool,
    /// What the batch's packets and variants go out with (`tun_active`:
    /// the module set some, or they came with some).
    tun_out: Vec<TunMeta>,
    tun_active: bool,
    /// Where packets of a port's own memory move when they grow
    /// ([`Forwarder::forward_frames`]).
    grow: GrowArena,
    /// Packets forwarded (read from an input ring) by this forwarder.
    pub packets: u64,
}

impl Forwarder {
    /// `batch` is the most packets read from one port per pass (<= 1024);
    /// `ctr` selects which copy of the port counters this forwarder writes.
    pub fn new(batch: usize, ctr: usize) -> Forwarder {
        let batch = batch.clamp(1, 1024);
        Forwarder {
            batch,
            ctr,
            // The batch, and as many variants.
            pkts: Vec::with_capacity(2 * batch),
            verdicts: Verdicts::with_capacity(batch),
            // Room for every packet to reach four ports, plus one full fan-out.
            links: Vec::with_capacity(batch * 4 + MAX_PORTS),
            dst: vec![DstList::default(); MAX_PORTS],
            active: Vec::with_capacity(64),
            bcast: Vec::with_capacity(batch),
            origin: Vec::with_capacity(batch),
            mirror_outs: Vec::new(),
            copies: 0,
            copy_origin: Vec::new(),
            copy_src: Vec::new(),
            copy_how: Vec::new(),
            copy_arena: Box::default(),
            copy_used: 0,
            max_len: 0,
            tun_in: Vec::new(),
            tun_in_valid: false,
            tun_out: Vec::new(),
            tun_active: false,
            grow: GrowArena::default(),
            packets: 0,
        }
    }

    /// Forwards up to one batch from the ring of `input`'s incoming queue
    /// `q`. Only that queue's owning worker may call this for it. Returns
    /// the number of slots consumed.
    pub fn forward(
        &mut self,
        table: &Table,
        input: &PortEntry,
        q: usize,
        now: Nanos,
        packet_in: &PacketIns,
    ) -> usize {
        let Some(rxq) = input.rxq.get(q) else {
            return 0;
        };
        let mem = input.port.incoming_mem(q);
        let ring = mem.incoming();
        let cur = rxq.cursor();
        let n = (ring.available(cur) as usize).min(self.batch);
        if n == 0 {
            return 0;
        }
        let cap = mem.buf_size();
        let ctr = &input.counters[self.ctr];
        self.pkts.clear();
        let (mut bytes, mut bad) = (0u64, 0u64);
        for i in 0..n as u32 {
            match view(mem, ring.slot(cur.wrapping_add(i)), cap) {
                Some(p) => {
                    self.pkts.push(p);
                    bytes += u64::from(p.len);
                }
                None => bad += 1,
            }
        }
        // One branch per batch for ports without tunnels.
        let tun = if input.tun_in {
            input.port.incoming_tunnel_meta(q)
        } else {
            None
        };
        if let Some(t) = tun {
            self.tun_in.clear();
            for i in 0..n as u32 {
                if bad == 0 || view(mem, ring.slot(cur.wrapping_add(i)), cap).is_some() {
                    self.tun_in.push(t.load(cur.wrapping_add(i)));
                }
            }
        }
        self.tun_in_valid = tun.is_some();
        ctr.rx_packets.add(n as u64);
        ctr.rx_bytes.add(bytes);
        ctr.drop(DropReason::BadFrame, bad);
        let opts = tun.map(TunOptions::Slots);
        self.process(table, input, now, packet_in, (tun.is_some(), opts), false);
        let next = cur.wrapping_add(n as u32);
        rxq.set_cursor(next);
        ring.release(next);
        self.packets += n as u64;
        n
    }

    /// Forwards `frames`, which the port `input` holds in memory of its
    /// own (a port that [receives directly](crate::port::Port::receive_direct)),
    /// each with the tunnel metadata `tun` and its Geneve options (`opts`:
    /// one per frame, or none for all); returns how many. A frame that
    /// grows past its buffer (a pushed header) moves to one of the
    /// forwarder's. The frames must stay valid and untouched by anything
    /// else until this returns; they are free again when it has.
    pub(crate) fn forward_frames(
        &mut self,
        table: &Table,
        input: &PortEntry,
        frames: &[PacketRef],
        (tun, opts): (TunMeta, &[&[u8]]),
        now: Nanos,
        packet_in: &PacketIns,
    ) -> usize {
        let ctr = &input.counters[self.ctr];
        for (c, chunk) in frames.chunks(self.batch).enumerate() {
            self.pkts.clear();
            self.pkts.extend_from_slice(chunk);
            let bytes: u64 = chunk.iter().map(|p| u64::from(p.len)).sum();
            self.tun_in.clear();
            self.tun_in.resize(chunk.len(), tun);
            self.tun_in_valid = true;
            // Each frame with options names its slice (1 + its index).
            let chunk_opts = opts
                .get(c * self.batch..)
                .map(|o| &o[..o.len().min(chunk.len())]);
            let chunk_opts = chunk_opts.filter(|o| o.iter().any(|x| !x.is_empty()));
            for (k, (m, o)) in self
                .tun_in
                .iter_mut()
                .zip(chunk_opts.unwrap_or_default())
                .enumerate()
            {
                if !o.is_empty() {
                    m.opts = k as u32 + 1;
                }
            }
            ctr.rx_packets.add(chunk.len() as u64);
            ctr.rx_bytes.add(bytes);
            let opts = chunk_opts.map(TunOptions::Frames);
            self.process(table, input, now, packet_in, (true, opts), true);
            self.packets += chunk.len() as u64;
        }
        frames.len()
    }

    /// Runs the module over the batch in `pkts` (`tunnel`: with the
    /// metadata in `tun_in`, and `opts` where their Geneve options are;
    /// `grow`: its packets may move to the grow arena) and sends what it
    /// decided.
    fn process(
        &mut self,
        table: &Table,
        input: &PortEntry,
        now: Nanos,
        packet_in: &PacketIns,
        (tunnel, opts): (bool, Option<TunOptions<'_>>),
        grow: bool,
    ) {
        if input.taps.wants(capture::IN) {
            // As received: before the module rewrites anything.
            input
                .taps
                .record(capture::IN, frames(&self.pkts, 0..self.pkts.len()));
        }
        if self.pkts.is_empty() {
            return;
        }
        self.verdicts.reset(self.pkts.len());
        // SAFETY: the views point at frames this worker alone owns until
        // it returns: buffers of its slots of the input's incoming ring
        // (`forward`: released after this), or a port's own memory that
        // the port holds for it (`forward_frames`); lengths were checked
        // against `cap`.
        let mut batch = unsafe { Batch::new(&mut self.pkts, input.id) };
        if tunnel {
            batch = batch.with_tunnel(&self.tun_in);
            match opts {
                Some(TunOptions::Slots(s)) => batch = batch.with_tunnel_options(s),
                Some(TunOptions::Frames(f)) => batch = batch.with_frame_options(f),
                None => {}
            }
        }
        if grow {
            self.grow.reset();
            batch = batch.with_grow_arena(&mut self.grow);
        }
        table.module.process(&mut batch, &mut self.verdicts, now);
        self.tunnel_out();
        self.dispatch(table, input, packet_in);
    }

    /// What the packets go out with: the tunnel metadata the module set,
    /// else none (so a port that sends by metadata never sends what came
    /// in on a tunnel back out of one unless the module, a flow, said
    /// where).
    #[inline]
    fn tunnel_out(&mut self) {
        self.tun_active = false;
        let Some(src) = self.verdicts.tunnel() else {
            return;
        };
        self.tun_out.clear();
        self.tun_out.extend_from_slice(src);
        self.tun_active = true;
    }

    /// The tunnel metadata packet `i`'s copies to the controller carry:
    /// what the module gave them, else what the packet came with.
    fn controller_tun(&self, i: usize) -> TunMeta {
        self.verdicts
            .controller_tunnel(i)
            .or_else(|| {
                self.tun_in_valid
                    .then(|| self.tun_in.get(i).copied())
                    .flatten()
            })
            .unwrap_or(TunMeta::NONE)
    }

    /// The metadata `send` gives ports that want it.
    #[inline]
    fn tun(&self) -> Option<&[TunMeta]> {
        self.tun_active.then_some(self.tun_out.as_slice())
    }

    /// Phases 3 and 4: group by destination and send. A switch with
    /// mirrors takes the variant that copies to them (one branch here per
    /// batch; the variant without mirrors has no mirror code at all).
    fn dispatch(&mut self, table: &Table, input: &PortEntry, packet_in: &PacketIns) {
        match table.mirrors.as_deref() {
            None => self.dispatch_with::<false>(table, input, packet_in, None),
            // A mirror's output port is reserved: what it receives is dropped.
            Some(m) if m.reserved(input.id) => {
                input.counters[self.ctr].drop(DropReason::Module, self.pkts.len() as u64);
            }
            Some(m) => self.dispatch_with::<true>(table, input, packet_in, Some(m)),
        }
    }

    fn dispatch_with<const M: bool>(
        &mut self,
        table: &Table,
        input: &PortEntry,
        packet_in: &PacketIns,
        mirrors: Option<&Mirrors>,
    ) {
        let in_id = input.id;
        let ctr = &input.counters[self.ctr];
        let (mut no_dest, mut module, mut bad, mut ctl_full) = (0u64, 0u64, 0u64, 0u64);
        let room = self.batch * 4;
        self.max_len = self.pkts.iter().map(|p| p.len).max().unwrap_or(0);
        // The common case, a whole batch to one other port (a port pair, a
        // single MAC or flow) and nothing for the controller: it goes out
        // in input order as is, without linking packet by packet.
        // (`flush` leaves no destination lists behind.)
        debug_assert!(self.active.is_empty() && self.bcast.is_empty());
        if !M
            && let Some(&Verdict::Port(p)) = self.verdicts.as_slice().first()
            && self.verdicts.controller_copies().is_empty()
            && !self.verdicts.has_variants()
            && p != in_id
            && self
                .verdicts
                .as_slice()
                .iter()
                .all(|v| *v == Verdict::Port(p))
        {
            match table.port(p.index()) {
                Some(dst) => {
                    let n = self.pkts.len();
                    let tun = self.tun();
                    send(dst, self.ctr, &self.pkts, 0..n, n as u32, self.max_len, tun);
                }
                None => ctr.drop(DropReason::NoDest, self.pkts.len() as u64),
            }
            return;
        }
        // Controller copies and variants are walked with the packets, in
        // packet order.
        self.verdicts.sort_controller_copies();
        let n = self.pkts.len();
        self.origin.clear();
        if self.verdicts.has_variants() {
            let (vs, arena) = self.verdicts.sorted_variants();
            for v in vs {
                let b = &arena[v.start as usize..(v.start + v.len) as usize];
                // Read-only views of the arena, which stays put until the
                // next batch's `reset` (the verdicts are not touched before).
                self.pkts.push(PacketRef::readonly(b));
                self.origin.push(v.pkt);
                if self.tun_active {
                    let own = self.tun_out.get(usize::from(v.pkt)).copied();
                    self.tun_out.push(v.tun.or(own).unwrap_or_default());
                }
                self.max_len = self.max_len.max(v.len);
            }
        }
        let (mut c, mut var) = (0, 0);
        for i in 0..n {
            let mut copied = false;
            while let Some(&(k, tag)) = self.verdicts.controller_copies().get(c)
                && usize::from(k) == i
            {
                if !packet_in.push(in_id, tag, self.controller_tun(i), self.packet(i)) {
                    ctl_full += 1;
                }
                copied = true;
                c += 1;
            }
            match self.verdicts.get(i) {
                Verdict::Port(p) => {
                    if !self.link::<M>(table, p, in_id, i, false, mirrors) {
                        no_dest += 1;
                    }
                }
                Verdict::Flood => self.bcast.push(i as u16),
                Verdict::Ports(k) => {
                    let hairpin = self.verdicts.set_hairpin(k);
                    let mut any = false;
                    for j in 0..self.verdicts.set_members(k).len() {
                        let p = self.verdicts.set_members(k)[j];
                        any |= self.link::<M>(table, p, in_id, i, hairpin, mirrors);
                    }
                    if !any {
                        no_dest += 1;
                    }
                }
                Verdict::Controller => {
                    if !copied && !packet_in.push(in_id, 0, self.controller_tun(i), self.packet(i))
                    {
                        ctl_full += 1;
                    }
                }
                Verdict::Drop => module += 1,
                Verdict::Invalid => bad += 1,
            }
            if M && let Some(m) = mirrors {
                self.mirror(table, m, in_id, i);
            }
            while let Some(&pkt) = self.origin.get(var)
                && usize::from(pkt) == i
            {
                if !self.link_variant::<M>(table, in_id, n + var, mirrors) {
                    no_dest += 1;
                }
                if M && let Some(m) = mirrors {
                    self.mirror_variant(table, m, in_id, n + var);
                }
                var += 1;
            }
            if self.links.len() > room || self.copy_used > COPY_ARENA / 2 {
                self.flush(table, input, mirrors);
            }
        }
        self.flush(table, input, mirrors);
        ctr.drop(DropReason::NoDest, no_dest);
        ctr.drop(DropReason::Module, module);
        ctr.drop(DropReason::BadFrame, bad);
        ctr.drop(DropReason::DestFull, ctl_full);
    }

    /// Chains packet `i` onto destination `p`'s list. False if `p` cannot be
    /// a destination (not attached, or the input port itself unless
    /// `hairpin`): a packet that reaches no destination is one `NoDest`
    /// drop, however many ports its verdict named.
    /// With mirrors (`M`), their output ports are no destinations.
    #[inline]
    fn link<const M: bool>(
        &mut self,
        table: &Table,
        p: PortId,
        in_id: PortId,
        i: usize,
        hairpin: bool,
        mirrors: Option<&Mirrors>,
    ) -> bool {
        let d = p.index();
        if (p == in_id && !hairpin) || d == 0 || table.port(d).is_none() {
            return false;
        }
        if M && mirrors.is_some_and(|m| m.reserved(p)) {
            return false;
        }
        let idx = self.links.len() as u16;
        let l = &mut self.dst[d];
        if l.count == 0 {
            self.active.push(d as u16);
            l.head = idx;
        } else {
            // A port listed twice in one set gets the packet once.
            if self.links[l.tail as usize].pkt == i as u16 {
                return true;
            }
            self.links[l.tail as usize].next = idx;
        }
        l.tail = idx;
        l.count += 1;
        self.links.push(Link {
            pkt: i as u16,
            next: NIL,
        });
        true
    }

    /// Chains variant packet `j` (index into `pkts`) to its destinations.
    /// False if it reaches none.
    #[cold]
    fn link_variant<const M: bool>(
        &mut self,
        table: &Table,
        in_id: PortId,
        j: usize,
        mirrors: Option<&Mirrors>,
    ) -> bool {
        let Some(to) = self.verdicts.variant_to(j - self.origin_base()) else {
            return false;
        };
        match to {
            Verdict::Port(p) => self.link::<M>(table, p, in_id, j, false, mirrors),
            Verdict::Ports(k) => {
                let mut any = false;
                for m in 0..self.verdicts.set_members(k).len() {
                    let p = self.verdicts.set_members(k)[m];
                    any |= self.link::<M>(table, p, in_id, j, false, mirrors);
                }
                any
            }
            _ => false,
        }
    }

    /// Copies packet `i` to the output port of every mirror that selects
    /// it, by its input port or by where the module sent it.
    #[cold]
    fn mirror(&mut self, table: &Table, m: &Mirrors, in_id: PortId, i: usize) {
        let v = self.verdicts.get(i);
        self.mirror_to(table, m, in_id, i, v, false);
    }

    /// Copies variant `j` (a rewritten copy of a packet, index into `pkts`)
    /// to the output port of every mirror that selects it by where it goes
    /// and did not already take its packet.
    #[cold]
    fn mirror_variant(&mut self, table: &Table, m: &Mirrors, in_id: PortId, j: usize) {
        if let Some(v) = self.verdicts.variant_to(j - self.origin_base()) {
            self.mirror_to(table, m, in_id, j, v, true);
        }
    }

    fn mirror_to(
        &mut self,
        table: &Table,
        m: &Mirrors,
        in_id: PortId,
        i: usize,
        v: Verdict,
        variant: bool,
    ) {
        let mut outs = std::mem::take(&mut self.mirror_outs);
        outs.clear();
        let one;
        let dests = match v {
            Verdict::Port(p) => {
                one = [p];
                Dests::Ports(&one)
            }
            Verdict::Ports(k) => Dests::Ports(self.verdicts.set_members(k)),
            Verdict::Flood => Dests::Flood,
            _ => Dests::None,
        };
        // A variant is in the VLAN of the packet it is a version of.
        let received = match i.checked_sub(self.origin_base()) {
            Some(k) => self.origin.get(k).map_or(i, |&o| usize::from(o)),
            None => i,
        };
        let view = |k: usize| {
            let p = self.pkts[k];
            // SAFETY: as `packet`: the frames stay put during the call.
            unsafe { std::slice::from_raw_parts(p.ptr, p.len as usize) }
        };
        m.select(
            in_id,
            dests,
            &table.attached,
            view(i),
            view(received),
            variant,
            |o, how| outs.push((o, how)),
        );
        for &(o, how) in &outs {
            if how == CopyAs::AsIs {
                // The output port is reserved, so only a mirror copy goes there.
                self.link::<false>(table, o, in_id, i, false, None);
            } else if let Some(c) = self.copy_as(i, how) {
                // An RSPAN copy may go back out of its input port.
                self.link::<false>(table, o, in_id, c, true, None);
            }
        }
        self.mirror_outs = outs;
    }

    /// A copy of packet `i` rewritten as `how` (one copy for every port
    /// that takes it this way), as an index into `pkts`; `None` if the
    /// arena has no room for it (only a packet with many large copies).
    #[cold]
    fn copy_as(&mut self, i: usize, how: CopyAs) -> Option<usize> {
        let base = self.pkts.len() - self.copies;
        if let Some(k) = (0..self.copies)
            .rev()
            .find(|&k| self.copy_src[k] == i && self.copy_how[k] == how)
        {
            return Some(base + k);
        }
        if self.copy_arena.is_empty() {
            self.copy_arena = vec![0; COPY_ARENA].into_boxed_slice();
        }
        let need = self.pkts[i].len as usize + 4;
        let at = self.copy_used;
        if at + need > self.copy_arena.len() {
            return None;
        }
        // SAFETY: as `packet`.
        let frame =
            unsafe { std::slice::from_raw_parts(self.pkts[i].ptr, self.pkts[i].len as usize) };
        let n = super::mirror::rewrite(frame, how, &mut self.copy_arena[at..at + need]);
        // A view into the arena, which is never grown or written again
        // before `flush` drops the copies.
        self.pkts
            .push(PacketRef::readonly(&self.copy_arena[at..at + n]));
        self.copy_used = (at + n).next_multiple_of(64);
        self.max_len = self.max_len.max(n as u32);
        // It goes out where its packet does (a variant: where its own
        // packet does).
        let vbase = self.origin_base();
        let pos = match i.checked_sub(vbase) {
            Some(k) => self.origin.get(k).copied().unwrap_or(i as u16),
            None => i as u16,
        };
        self.copies += 1;
        self.copy_src.push(i);
        self.copy_how.push(how);
        self.copy_origin.push(pos);
        Some(self.pkts.len() - 1)
    }

    /// Index in `pkts` of the first variant.
    #[inline]
    fn origin_base(&self) -> usize {
        self.pkts.len() - self.copies - self.origin.len()
    }

    fn packet(&self, i: usize) -> &[u8] {
        let p = &self.pkts[i];
        // SAFETY: same ownership argument as in `forward`; len <= cap.
        unsafe { std::slice::from_raw_parts(p.ptr, p.len as usize) }
    }

    /// Sends every grouped packet and clears the groups.
    fn flush(&mut self, table: &Table, input: &PortEntry, mirrors: Option<&Mirrors>) {
        let in_idx = input.id.index();
        for k in 0..self.active.len() {
            let d = self.active[k] as usize;
            let list = self.dst[d];
            // `link` only chains ports attached in this same table. The
            // input is active only for hairpin sets: floods skip it, and
            // a mirror's output port.
            if let Some(dst) = table.port(d) {
                let flood = d != in_idx && !mirrors.is_some_and(|m| m.reserved(dst.id));
                self.deliver(dst, list, flood);
            }
        }
        if !self.bcast.is_empty() {
            for &p in &table.attached {
                let d = p.index();
                if p == input.id || self.dst[d].count > 0 || mirrors.is_some_and(|m| m.reserved(p))
                {
                    continue;
                }
                if let Some(dst) = table.port(d) {
                    self.deliver(
                        dst,
                        DstList {
                            head: NIL,
                            tail: NIL,
                            count: 0,
                        },
                        true,
                    );
                }
            }
        }
        for &d in &self.active {
            self.dst[d as usize].count = 0;
        }
        self.active.clear();
        self.bcast.clear();
        self.links.clear();
        if self.copies > 0 {
            self.pkts.truncate(self.pkts.len() - self.copies);
            self.copies = 0;
            self.copy_origin.clear();
            self.copy_src.clear();
            self.copy_how.clear();
            self.copy_used = 0;
        }
    }

    /// Sends the packets of `list`, merged in input order with the broadcast
    /// list when `with_bcast`, to one destination.
    fn deliver(&self, dst: &PortEntry, list: DstList, with_bcast: bool) {
        let bcast: &[u16] = if with_bcast { &self.bcast } else { &[] };
        let total = u32::from(list.count) + bcast.len() as u32;
        if total == 0 {
            return;
        }
        let merged = Merge {
            links: &self.links,
            next: list.head,
            bcast,
            b: 0,
            base: self.origin_base(),
            origin: &self.origin,
            copy_origin: &self.copy_origin,
        };
        send(
            dst,
            self.ctr,
            &self.pkts,
            merged,
            total,
            self.max_len,
            self.tun(),
        );
    }
}

/// Phase 4 for one destination: reserves slots for `total` packets (the
/// indices `order` yields into `pkts`, at most `max_len` bytes long) on
/// `dst`'s outgoing ring, copies them with no lock held and publishes,
/// counting on copy `ctr` of `dst`'s counters. What does not fit the ring
/// is dropped (`dest_full`); frames longer than the destination's buffers
/// are dropped (`oversize`), never truncated. Returns the packets queued.
///
/// The packets must stay readable for their `cap` bytes during the call
/// (the caller owns their buffers). `tun`, indexed like `pkts`, is their
/// tunnel metadata for a port that sends with it (a packet past its end
/// has none).
pub(crate) fn send(
    dst: &PortEntry,
    ctr: usize,
    pkts: &[PacketRef],
    order: impl Iterator<Item = usize> + Clone,
    total: u32,
    max_len: u32,
    tun: Option<&[TunMeta]>,
) -> u32 {
    let mem = dst.port.mem();
    // A slot's length is 16 bits: longer frames do not fit whatever the
    // buffer size (only `Switch::transmit` could hand one in).
    let cap = mem.buf_size().min(u32::from(u16::MAX));
    let sender = ctr;
    let ctr = &dst.counters[ctr];
    let oversize = if max_len <= cap {
        0
    } else {
        order.clone().filter(|&i| pkts[i].len > cap).count() as u32
    };
    let want = total - oversize;
    ctr.drop(DropReason::Oversize, u64::from(oversize));
    if dst.port.transmits_directly() {
        return send_direct(
            dst,
            sender,
            ctr,
            pkts,
            order.filter(|&i| pkts[i].len <= cap),
            want,
            tun,
        );
    }
    let ring = mem.outgoing();
    let lease = dst.out.reserve(&ring, want);
    ctr.drop(DropReason::DestFull, u64::from(want - lease.n));
    if lease.n == 0 {
        return 0;
    }
    let (mut sent, mut bytes, mut bad) = (0u32, 0u64, 0u64);
    if dst.taps.wants(capture::OUT) {
        let fit = order.clone().filter(|&i| pkts[i].len <= cap);
        dst.taps
            .record(capture::OUT, frames(pkts, fit.take(lease.n as usize)));
    }
    for i in order.filter(|&i| pkts[i].len <= cap).take(lease.n as usize) {
        let src = pkts[i];
        let at = lease.start.wrapping_add(sent);
        let slot = ring.slot(at);
        match mem.buf_ptr(slot.buf) {
            Some(dp) => {
                let room = src.cap.min(cap) as usize;
                let (s, d) = (src.ptr as usize, dp as usize);
                if s < d + room && d < s + room {
                    // Only a hairpin copies within one port's memory, and
                    // only a client that put one buffer in both of its
                    // rings makes the two overlap: its own bytes get mixed.
                    // SAFETY: both are valid for `room >= len` bytes (as
                    // below); `ptr::copy` allows overlap.
                    unsafe { std::ptr::copy(src.ptr, dp, src.len as usize) };
                } else {
                    // SAFETY: `src` is readable for src.cap bytes (the
                    // caller owns its buffer); `dp` is a buffer of a slot
                    // inside our lease, writable for `cap` bytes; len <=
                    // both caps, and the two do not overlap (checked above).
                    unsafe { copy_frame(src.ptr, dp, src.len as usize, room) };
                }
                ring.write_slot(
                    at,
                    Slot {
                        buf: slot.buf,
                        len: src.len as u16,
                        flags: 0,
                    },
                );
                bytes += u64::from(src.len);
            }
            None => {
                // The consumer left a bad buffer index in its slot: it
                // gets an empty slot, and only its own packet is lost.
                ring.write_slot(
                    at,
                    Slot {
                        buf: slot.buf,
                        len: 0,
                        flags: 0,
                    },
                );
                bad += 1;
            }
        }
        sent += 1;
    }
    debug_assert_eq!(sent, lease.n);
    dst.out.complete(&ring, lease);
    dst.port.outgoing_published();
    ctr.tx_packets.add(u64::from(sent) - bad);
    ctr.tx_bytes.add(bytes);
    ctr.drop(DropReason::BadFrame, bad);
    sent - bad as u32
}

/// A view of the frame in slot `s` of `mem`'s incoming ring, if its
/// buffer index and length are valid.
#[inline(always)]
fn view(mem: &PortMem, s: Slot, cap: u32) -> Option<PacketRef> {
    let len = u32::from(s.len);
    match mem.buf_ptr(s.buf) {
        Some(ptr) if len > 0 && len <= cap => Some(PacketRef { ptr, len, cap }),
        _ => None,
    }
}

/// The bytes of packets `order` of `pkts`, for a capture.
fn frames<'a>(
    pkts: &'a [PacketRef],
    order: impl Iterator<Item = usize> + Clone + 'a,
) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
    // SAFETY: the callers (`forward`, `send`) keep every packet readable
    // for its `cap >= len` bytes while the iterator lives.
    order.map(move |i| unsafe { std::slice::from_raw_parts(pkts[i].ptr, pkts[i].len as usize) })
}

/// `send` for a port that copies frames into its device itself: hands them
/// over in chunks, in order; what it does not take is `dest_full`. A port
/// that wants tunnel metadata gets each frame's (from `tun`).
fn send_direct(
    dst: &PortEntry,
    sender: usize,
    ctr: &super::stats::PortCounters,
    pkts: &[PacketRef],
    order: impl Iterator<Item = usize>,
    want: u32,
    tun: Option<&[TunMeta]>,
) -> u32 {
    const CHUNK: usize = 64;
    let mut frames: [&[u8]; CHUNK] = [&[]; CHUNK];
    let mut idx = [0usize; CHUNK];
    // Only a port that wants metadata, when the module gave some, gets it
    // (frame by frame); otherwise `transmit`, which sends a metadata port's
    // frames as with none, without an array of it per call.
    let tun = tun.filter(|_| dst.tun_out);
    let (mut sent, mut bytes) = (0u32, 0u64);
    let mut order = order.take(want as usize).peekable();
    while order.peek().is_some() {
        let mut k = 0;
        for i in order.by_ref().take(CHUNK) {
            let p = pkts[i];
            // SAFETY: the caller keeps every packet readable for its `cap >=
            // len` bytes during the call (see `send`).
            frames[k] = unsafe { std::slice::from_raw_parts(p.ptr, p.len as usize) };
            idx[k] = i;
            k += 1;
        }
        let n = match tun {
            Some(t) => {
                let meta: [TunMeta; CHUNK] = std::array::from_fn(|j| {
                    idx.get(j)
                        .filter(|_| j < k)
                        .and_then(|&i| t.get(i))
                        .copied()
                        .unwrap_or_default()
                });
                dst.port.transmit_tunnel(&frames[..k], &meta[..k], sender)
            }
            None => dst.port.transmit(&frames[..k], sender),
        }
        .min(k);
        if dst.taps.wants(capture::OUT) {
            dst.taps.record(capture::OUT, frames[..n].iter().copied());
        }
        sent += n as u32;
        bytes += frames[..n].iter().map(|f| f.len() as u64).sum::<u64>();
        if n < k {
            break;
        }
    }
    ctr.drop(DropReason::DestFull, u64::from(want - sent));
    ctr.tx_packets.add(u64::from(sent));
    ctr.tx_bytes.add(bytes);
    sent
}

/// Walks a destination's linked list and the broadcast list together,
/// yielding packet indices in input order (a variant, index `base + k`,
/// sits at the place of its packet `origin[k]`, after it).
#[derive(Clone)]
struct Merge<'a> {
    links: &'a [Link],
    next: u16,
    bcast: &'a [u16],
    b: usize,
    base: usize,
    origin: &'a [u16],
    copy_origin: &'a [u16],
}

impl Merge<'_> {
    /// The input position packet `u` goes out at.
    #[inline]
    fn pos(&self, u: u16) -> u16 {
        match usize::from(u).checked_sub(self.base) {
            Some(k) => match self.origin.get(k) {
                Some(&o) => o,
                None => self
                    .copy_origin
                    .get(k - self.origin.len())
                    .copied()
                    .unwrap_or(u),
            },
            None => u,
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let u = (self.next != NIL).then(|| self.links[self.next as usize].pkt);
        let b = self.bcast.get(self.b).copied();
        match (u, b) {
            (Some(u), Some(b)) if b < self.pos(u) || (b == self.pos(u) && b != u) => {
                self.b += 1;
                Some(b as usize)
            }
            (Some(u), _) => {
                self.next = self.links[self.next as usize].next;
                Some(u as usize)
            }
            (None, Some(b)) => {
                self.b += 1;
                Some(b as usize)
            }
            (None, None) => None,
        }
    }
}
