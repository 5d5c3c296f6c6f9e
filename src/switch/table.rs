//! The switch's port table: an immutable snapshot that workers read without
//! locks. Control builds a new snapshot for every change (attach, detach,
//! module swap) and publishes it; workers pick it up between batches.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::module::Module;
use crate::packet::TunMeta;
use crate::port::{MAX_PORTS, Port, PortId};
use crate::sys::EventFd;

use super::lease::OutQueue;
use super::mirror::Mirrors;
use super::stats::PortCounters;

/// One incoming queue of an attached port, as the switch polls it.
pub struct RxQueue {
    /// The worker that polls this queue's ring.
    pub owner: usize,
    /// The switch's consumer index on the ring. Only the owner touches it;
    /// it is never read back from shared memory.
    cur: AtomicU32,
}

impl RxQueue {
    #[inline]
    pub(crate) fn cursor(&self) -> u32 {
        self.cur.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn set_cursor(&self, v: u32) {
        self.cur.store(v, Ordering::Relaxed);
    }
}

/// A port as attached to a switch: the backend plus the switch's private
/// state for it.
pub struct PortEntry {
    pub id: PortId,
    pub port: Arc<dyn Port>,
    /// The port's incoming queues (`port.incoming_queues()` of them), each
    /// with its own owning worker.
    pub rxq: Box<[RxQueue]>,
    /// Reservations on the outgoing ring (any worker may send here).
    pub(crate) out: OutQueue,
    /// One copy per worker, one for the control path (`Switch::replace`)
    /// and one for `Switch::transmit`.
    pub counters: Box<[PortCounters]>,
    /// Captures of the port's frames (`mswitch capture`).
    pub taps: super::capture::Taps,
    /// Its frames come with tunnel metadata
    /// ([`Port::incoming_tunnel_meta`]), asked once here.
    pub tun_in: bool,
    /// It sends with the metadata of each frame
    /// ([`Port::wants_tunnel_meta`]).
    pub tun_out: bool,
}

impl PortEntry {
    /// The switch's state for `port` as number `id`, its incoming queue `q`
    /// polled by worker `owners[q]` (queues past the end of `owners` by its
    /// last), with `writers` copies of its counters (one per forwarder).
    pub fn new(id: PortId, port: Arc<dyn Port>, owners: &[usize], writers: usize) -> PortEntry {
        let mem = port.mem();
        let out = OutQueue::new(
            mem.outgoing().hdr.head.load(Ordering::Acquire),
            mem.outgoing().size(),
        );
        let rxq = (0..port.incoming_queues().max(1))
            .map(|q| RxQueue {
                owner: owners.get(q).or(owners.last()).copied().unwrap_or(0),
                cur: AtomicU32::new(
                    port.incoming_mem(q)
                        .incoming()
                        .hdr
                        .tail
                        .load(Ordering::Acquire),
                ),
            })
            .collect();
        let counters = (0..writers).map(|_| PortCounters::default()).collect();
        let tun_in = port.incoming_tunnel_meta(0).is_some();
        let tun_out = port.wants_tunnel_meta();
        PortEntry {
            id,
            port,
            rxq,
            out,
            counters,
            taps: Default::default(),
            tun_in,
            tun_out,
        }
    }

    /// The worker that polls queue 0.
    pub fn owner(&self) -> usize {
        self.rxq[0].owner
    }

    /// The workers that poll the port's queues, in queue order.
    pub fn owners(&self) -> Vec<usize> {
        self.rxq.iter().map(|q| q.owner).collect()
    }
}

/// One published configuration of a switch.
pub struct Table {
    pub generation: u64,
    ports: Box<[Option<Arc<PortEntry>>]>,
    /// Attached port numbers, ascending (flood order).
    pub attached: Vec<PortId>,
    pub module: Arc<dyn Module>,
    /// The switch's port mirrors, if it has any.
    pub mirrors: Option<Arc<Mirrors>>,
}

impl Table {
    pub fn new(module: Arc<dyn Module>) -> Table {
        Table {
            generation: 0,
            ports: vec![None; MAX_PORTS].into_boxed_slice(),
            attached: Vec::new(),
            module,
            mirrors: None,
        }
    }

    #[inline]
    pub fn port(&self, idx: usize) -> Option<&PortEntry> {
        self.ports.get(idx).and_then(|p| p.as_deref())
    }

    pub fn entry(&self, id: PortId) -> Option<&Arc<PortEntry>> {
        self.ports.get(id.index()).and_then(|p| p.as_ref())
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<PortEntry>> {
        self.attached.iter().filter_map(|p| self.entry(*p))
    }

    /// A copy with `f` applied, one generation later.
    pub(crate) fn derive(&self, f: impl FnOnce(&mut Table)) -> Table {
        let mut t = Table {
            generation: self.generation + 1,
            ports: self.ports.clone(),
            attached: self.attached.clone(),
            module: self.module.clone(),
            mirrors: self.mirrors.clone(),
        };
        f(&mut t);
        t
    }

    /// Adds (or replaces) a port. For building a table by hand (tests,
    /// embedding); a switch's published tables are never mutated.
    pub fn insert(&mut self, e: Arc<PortEntry>) {
        let id = e.id;
        self.ports[id.index()] = Some(e);
        if let Err(pos) = self.attached.binary_search(&id) {
            self.attached.insert(pos, id);
        }
    }

    pub fn remove(&mut self, id: PortId) -> Option<Arc<PortEntry>> {
        let e = self.ports.get_mut(id.index())?.take();
        self.attached.retain(|p| *p != id);
        e
    }
}

/// A packet sent to the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketIn {
    pub in_port: PortId,
    /// The module's tag ([`crate::module::Verdicts::to_controller`]); 0
    /// when it gave none.
    pub tag: u32,
    /// The packet's tunnel metadata at its output to the controller (what
    /// it came with as the module changed it; [`TunMeta::NONE`] for a
    /// packet that came from no tunnel and was given none), for the
    /// packet-in's match.
    pub tun: TunMeta,
    /// The frame as the module left it (its rewrites applied).
    pub data: Vec<u8>,
}

/// A bounded queue of packets for the controller. The slow path: it copies
/// and allocates, and drops (counted by the caller) when full.
///
/// An eventfd is readable while packets wait: it is signalled when a push
/// finds the queue empty and cleared when a pop empties it, both under the
/// queue's lock, so a reader that polls the fd and then pops until `None`
/// never misses a packet and never spins on a stale signal.
pub struct PacketIns {
    q: Mutex<VecDeque<PacketIn>>,
    cap: usize,
    bell: EventFd,
}

impl PacketIns {
    pub fn new(cap: usize) -> io::Result<PacketIns> {
        Ok(PacketIns {
            q: Mutex::new(VecDeque::new()),
            cap,
            bell: EventFd::new()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<PacketIn>> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a copy of `data`, with its tunnel metadata `tun`; false
    /// (nothing queued) when full.
    pub fn push(&self, in_port: PortId, tag: u32, tun: TunMeta, data: &[u8]) -> bool {
        let mut q = self.lock();
        if q.len() >= self.cap {
            return false;
        }
        if q.is_empty() {
            self.bell.notify();
        }
        q.push_back(PacketIn {
            in_port,
            tag,
            tun,
            data: data.to_vec(),
        });
        true
    }

    pub fn pop(&self) -> Option<PacketIn> {
        let mut q = self.lock();
        let p = q.pop_front();
        if p.is_some() && q.is_empty() {
            self.bell.drain();
        }
        p
    }

    /// Clears the fd's signal if nothing waits (it stays set otherwise).
    pub fn ack(&self) {
        let q = self.lock();
        if q.is_empty() {
            self.bell.drain();
        }
    }

    /// Readable while packets wait.
    pub fn fd(&self) -> RawFd {
        self.bell.as_raw_fd()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
