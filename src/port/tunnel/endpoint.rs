//! One UDP socket shared by every tunnel port of the process with the same
//! encapsulation, local address and UDP port (as Open vSwitch lets several
//! vxlan ports with different `remote_ip` or `key` share port 4789), and
//! the demultiplexing of what it receives to those ports.
//!
//! Which worker reads a shared socket: any of its ports' workers, one at a
//! time. A port's `sync_incoming` takes the socket's receive lock if it is
//! free (`try_lock`: nobody ever waits for it), reads a batch, hands its
//! own port's frames to the switch where they are (the worker's `sink`,
//! while the batch stays locked) and copies each other inner frame into
//! the incoming ring of the port its (sender, VNI) names. So every port's
//! incoming ring has one producer at a time, the
//! holder of that lock, and each ring is its own bounded queue: a frame for
//! a port whose ring is full is dropped and counted on that port
//! (`rx_ring_full`), and nobody blocks. A port woken by a sibling's read
//! learns of it through its ring's wakeup request and an eventfd; its
//! worker watches an epoll set of the socket and that eventfd, so a
//! sleeping worker wakes both for datagrams on the socket and for frames a
//! sibling queued for it. Datagrams stay in the kernel's socket buffer
//! while the reader's own ring has no room for a whole batch.
//!
//! Which port a datagram is for, as Open vSwitch's tunnel port lookup
//! orders it (`ofproto/tunnel.c`: a fixed key before `in_key=flow`, then a
//! fixed remote before `remote_ip=flow`): the port of (sender, VNI), else
//! the `remote=flow` port of that VNI, else the `key=flow` port of that
//! sender, else the port with both flow-based. Every frame is queued with
//! its tunnel metadata (VNI, outer source, and the address the datagram was
//! sent to as outer destination: `IP_PKTINFO`/`IPV6_PKTINFO`, else the
//! port's local address; IPv6 ones as `tun_ipv6_src`/`tun_ipv6_dst`,
//! [`super::addrs::rx_meta`]) in the slot's [`TunMetaSlots`] entry.
//!
//! With receive offload a batch may hold more datagrams than the reader's
//! own ring has room for: the rest stays in the batch for the reader's
//! next poll, before anything new is read.
//!
//! The socket is opened with its first port and closed with its last
//! (the registry holds it weakly; a port's drop removes it from the
//! registry under the registry's lock, so a port opened at the same time
//! never binds beside a socket that is about to close).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use super::addrs::{note_local6, rx_meta};
use super::geneve_opts::critical_known;
use super::header::{DecapError, Proto, decode};
use super::rxbatch::{RxBatch, RxPos};
use super::socket::{BATCH, UdpTunnelSocket};
use super::wire::Wire;
use crate::packet::{PacketRef, PortMem, TunMeta, TunMetaSlots};
use crate::port::kernel::IncomingFill;
use crate::sys::EventFd;

/// Drop counters of one port's receive side, by reason.
#[derive(Default)]
pub struct RxDrops {
    /// Malformed header or inner frame (see [`DecapError`]).
    pub malformed: AtomicU64,
    /// Geneve OAM frames and critical options.
    pub geneve_unsupported: AtomicU64,
    /// From this port's remote, with a VNI no port takes.
    pub bad_vni: AtomicU64,
    /// Inner frame larger than the port's buffers, or datagram larger
    /// than the receive buffer.
    pub oversize: AtomicU64,
    /// The port's incoming ring was full.
    pub ring_full: AtomicU64,
}

/// One of the [`RxDrops`] counters.
type Counter = fn(&RxDrops) -> &AtomicU64;

impl RxDrops {
    fn malformed(&self) -> &AtomicU64 {
        &self.malformed
    }

    fn geneve_unsupported(&self) -> &AtomicU64 {
        &self.geneve_unsupported
    }

    fn bad_vni(&self) -> &AtomicU64 {
        &self.bad_vni
    }

    fn oversize(&self) -> &AtomicU64 {
        &self.oversize
    }
}

/// The part of a tunnel port the socket's reader fills.
pub struct Receiver {
    pub mem: PortMem,
    pub fill: IncomingFill,
    pub wake: EventFd,
    pub drops: RxDrops,
    /// The tunnel metadata of the incoming ring's slots.
    pub meta: TunMetaSlots,
    /// The outer destination its frames are recorded with (`tun_dst`,
    /// `tun_ipv6_dst`) when the datagram does not say: the port's local
    /// address of that family, else 0.
    pub local: Ipv4Addr,
    pub local6: Ipv6Addr,
}

impl Receiver {
    /// Copies `frames` into the incoming ring, each with the metadata
    /// `meta` and its Geneve options (`opts`, one per frame), and publishes
    /// them once; returns how many fit.
    fn push(&self, frames: &[&[u8]], opts: &[&[u8]], meta: TunMeta) -> usize {
        // Only the holder of the socket's receive lock produces here, so
        // `head` is the slot `fill` takes first, and the metadata is
        // stored before `fill` publishes the slots.
        let head = self.fill.head();
        let mut k = 0;
        self.fill.fill(&self.mem, frames.len(), |buf| {
            let f = frames.get(k)?;
            let o = opts.get(k).copied().unwrap_or_default();
            self.meta
                .store_with_options(head.wrapping_add(k as u32), meta, o);
            buf[..f.len()].copy_from_slice(f);
            k += 1;
            Some(f.len())
        })
    }
}

/// A run of datagrams from one sender with one VNI to one address: that
/// key, its port (`None`: no port takes it) and the metadata its frames
/// are queued with.
type Run<'m> = (
    (IpAddr, u32, Option<IpAddr>),
    Option<&'m Arc<Receiver>>,
    TunMeta,
);

/// The ports to wake after a delivery (each once).
struct Wake<'m> {
    ports: [Option<&'m Arc<Receiver>>; BATCH],
    n: usize,
}

impl<'m> Wake<'m> {
    /// Queues the frames of `run` on its port and notes the port for
    /// waking unless it is `own`. What does not fit is dropped and counted,
    /// except on `own`: then returns how many were queued (the caller
    /// leaves the rest for `own`'s next poll).
    fn queue(
        &mut self,
        run: Option<Run<'m>>,
        frames: &[&[u8]],
        opts: &[&[u8]],
        own: &Receiver,
    ) -> Option<usize> {
        let Some((_, Some(p), meta)) = run else {
            return None;
        };
        let queued = p.push(frames, opts, meta);
        let mine = std::ptr::eq(&**p, own);
        if queued < frames.len() {
            if mine {
                return Some(queued);
            }
            let full = (frames.len() - queued) as u64;
            p.drops.ring_full.fetch_add(full, Ordering::Relaxed);
        }
        if queued > 0
            && !mine
            && !self.ports[..self.n]
                .iter()
                .flatten()
                .any(|w| Arc::ptr_eq(w, p))
        {
            self.ports[self.n] = Some(p);
            self.n += 1;
        }
        None
    }
}

/// Where a port that receives directly takes its frames: the switch's
/// forwarder (see [`crate::port::Port::receive_direct`]).
/// Besides the frames and their run's metadata, each frame's Geneve
/// options (empty: none).
pub type Sink<'a> = dyn FnMut(&[PacketRef], TunMeta, &[&[u8]]) + 'a;

/// Hands the frames of `run` to `sink` if the run is `own`'s and there is
/// a sink; returns whether it did. The frames are views into `rx`, which
/// the switch may rewrite while `sink` runs: nothing reads them after.
fn hand(
    rx: &RxBatch,
    run: Option<Run<'_>>,
    (frames, opts): (&[&[u8]], &[&[u8]]),
    own: &Receiver,
    sink: Option<&mut Sink<'_>>,
) -> bool {
    let (Some((_, Some(p), meta)), Some(sink)) = (run, sink) else {
        return false;
    };
    if !std::ptr::eq(&**p, own) {
        return false;
    }
    if !frames.is_empty() {
        let mut refs = [PacketRef::EMPTY; BATCH];
        for (r, f) in refs.iter_mut().zip(frames) {
            *r = rx.frame_ref(f);
        }
        sink(&refs[..frames.len()], meta, opts);
    }
    true
}

/// Which datagrams a port takes: from this sender (`None`: any, a
/// `remote=flow` port) with this VNI (`None`: any, `in_key=flow`).
pub type MemberKey = (Option<IpAddr>, Option<u32>);

/// Where a socket is bound: encapsulation, local address and UDP port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EndpointKey {
    pub proto: Proto,
    pub local: SocketAddr,
}

pub struct Endpoint {
    key: EndpointKey,
    /// Whether the socket fills UDP checksums over IPv4 (one setting per
    /// socket: its ports must agree).
    csum: bool,
    /// The kernel's socket, or a bench wire (an endpoint of its own, never
    /// in the registry).
    wire: Wire,
    /// Ports by the datagrams they take.
    members: RwLock<HashMap<MemberKey, Arc<Receiver>>>,
    rx: Mutex<RxBatch>,
    /// Datagrams from a sender no port names (or not IP at all).
    pub unknown_remote: AtomicU64,
    /// The destination of the last datagram delivered (see
    /// [`is_local_addr`]).
    last_to: AtomicU32,
}

/// Receive batches one `poll` reads at most.
const MAX_BATCHES_PER_POLL: usize = 4;

/// The open endpoints.
static ENDPOINTS: Mutex<Vec<Weak<Endpoint>>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<Weak<Endpoint>>> {
    ENDPOINTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a tunnel port could not join an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("UDP {local} ({proto}): {err}")]
    Bind {
        proto: &'static str,
        local: SocketAddr,
        err: io::Error,
    },
    #[error("tunnel ports on UDP {local} must agree on csum (this one asks for {csum})")]
    Csum { local: SocketAddr, csum: bool },
    #[error("another tunnel port already takes VNI {} from {} on UDP {local}",
        vni.map_or("flow".to_owned(), |v| v.to_string()),
        remote.map_or("flow".to_owned(), |r| r.to_string()))]
    Duplicate {
        remote: Option<IpAddr>,
        vni: Option<u32>,
        local: SocketAddr,
    },
}

impl Endpoint {
    /// Joins `rx` as the port for (remote, VNI) to the endpoint `key`
    /// names, opening its socket if no port has it open.
    pub fn join(
        key: EndpointKey,
        remote: Option<IpAddr>,
        vni: Option<u32>,
        csum: bool,
        rx: Arc<Receiver>,
    ) -> Result<Arc<Endpoint>, JoinError> {
        let mut reg = registry();
        reg.retain(|w| w.strong_count() > 0);
        let found = reg.iter().filter_map(Weak::upgrade).find(|e| e.key == key);
        let ep = match found {
            // (With segmentation offload every datagram has a checksum.)
            Some(e) if e.csum != csum && key.local.is_ipv4() && !e.wire.offloads() => {
                return Err(JoinError::Csum {
                    local: key.local,
                    csum,
                });
            }
            Some(e) => e,
            None => {
                let sock =
                    UdpTunnelSocket::bind(key.local, csum).map_err(|err| JoinError::Bind {
                        proto: key.proto.name(),
                        local: key.local,
                        err,
                    })?;
                let e = Arc::new(Endpoint::new(key, csum, Wire::Kernel(sock)));
                reg.push(Arc::downgrade(&e));
                e
            }
        };
        ep.add(remote, vni, rx)?;
        Ok(ep)
    }

    /// An endpoint of its own on `wire` (a bench wire), for the port `rx`
    /// of (remote, VNI); other ports never share it.
    pub fn private(
        key: EndpointKey,
        wire: Wire,
        remote: Option<IpAddr>,
        vni: Option<u32>,
        csum: bool,
        rx: Arc<Receiver>,
    ) -> Arc<Endpoint> {
        let ep = Arc::new(Endpoint::new(key, csum, wire));
        // A new endpoint has no members: nothing to clash with.
        let _ = ep.add(remote, vni, rx);
        ep
    }

    fn new(key: EndpointKey, csum: bool, wire: Wire) -> Endpoint {
        Endpoint {
            key,
            csum,
            wire,
            members: RwLock::new(HashMap::new()),
            rx: Mutex::new(RxBatch::default()),
            unknown_remote: AtomicU64::new(0),
            last_to: AtomicU32::new(0),
        }
    }

    /// Adds `rx` as the port for (remote, VNI).
    fn add(
        &self,
        remote: Option<IpAddr>,
        vni: Option<u32>,
        rx: Arc<Receiver>,
    ) -> Result<(), JoinError> {
        let mut m = self.members.write().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(&(remote, vni)) {
            return Err(JoinError::Duplicate {
                remote,
                vni,
                local: self.key.local,
            });
        }
        m.insert((remote, vni), rx);
        Ok(())
    }

    /// Takes the port for (remote, VNI) off the endpoint and drops the
    /// caller's reference to it, closing the socket with its last port.
    pub fn leave(ep: Arc<Endpoint>, remote: Option<IpAddr>, vni: Option<u32>) {
        let reg = registry();
        ep.members
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(remote, vni));
        drop(ep);
        drop(reg);
    }

    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.wire.as_raw_fd()
    }

    /// Reads what waits on the socket (if no other worker is reading it)
    /// and queues each frame on its port, while `own` has room. With a
    /// `sink` (the switch's, for a port that receives directly), `own`'s
    /// frames go to it instead, straight from the receive batch, unless
    /// `own`'s ring still holds frames a sibling queued (they go first, so
    /// this poll queues behind them). Returns the frames `sink` got.
    pub fn poll(&self, own: &Receiver, mut sink: Option<&mut Sink<'_>>) -> usize {
        let Ok(mut rx) = self.rx.try_lock() else {
            return 0;
        };
        if own.fill.room(&own.mem) < own.mem.incoming().size() {
            sink = None;
        }
        let mut handed = 0;
        // Bounded: datagrams for sibling ports do not use up this port's
        // room, and the worker has other ports to serve.
        for _ in 0..MAX_BATCHES_PER_POLL {
            if !rx.pending() {
                if sink.is_none() && own.fill.room(&own.mem) == 0 {
                    break;
                }
                if self.wire.recv_batch(&mut rx) == 0 {
                    break;
                }
            }
            let (pos, done, n) = self.deliver_from(&rx, own, sink.as_deref_mut());
            rx.seek(pos);
            handed += n;
            // Own ring full: the rest waits in `rx` for the next poll.
            if !done {
                break;
            }
        }
        handed
    }

    /// The port that takes datagrams from `from` with VNI `vni`, in Open
    /// vSwitch's order: fixed key first, then fixed remote.
    fn member(
        members: &HashMap<MemberKey, Arc<Receiver>>,
        from: IpAddr,
        vni: u32,
    ) -> Option<&Arc<Receiver>> {
        let (r, v) = (Some(from), Some(vni));
        [(r, v), (None, v), (r, None), (None, None)]
            .iter()
            .find_map(|k| members.get(k))
    }

    /// Hands the datagrams `rx` holds from its place on to their ports,
    /// waking the ports (other than `own`) whose workers asked to be
    /// woken. Datagrams come in runs from one sender with one VNI: a run's
    /// port is looked up once, and its frames are queued and published
    /// together (or, `own`'s with a `sink`, handed to it). Stops when
    /// `own`'s ring is full; a sibling's full ring drops the frame
    /// (counted). Returns where it stopped, whether it passed everything,
    /// and how many frames `sink` got.
    fn deliver_from(
        &self,
        rx: &RxBatch,
        own: &Receiver,
        mut sink: Option<&mut Sink<'_>>,
    ) -> (RxPos, bool, usize) {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        let mut wake = Wake {
            ports: [None; BATCH],
            n: 0,
        };
        // The run: its key, port (`None`: no port takes it) and metadata,
        // and its frames not yet queued with the place of each.
        let mut run: Option<Run<'_>> = None;
        let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
        // Each frame's Geneve options (empty: none).
        let mut opts: [&[u8]; BATCH] = [&[]; BATCH];
        let mut places = [rx.pos(); BATCH];
        let mut nframes = 0;
        let mut pos = rx.pos();
        let mut done = true;
        let mut handed = 0;
        // Queues the run's frames (or hands them to `sink`); if `own` is
        // full, stops at the first frame that did not fit. Done before
        // every drop is counted, so that what is read again after a stop
        // was never counted.
        macro_rules! flush {
            () => {
                let (fs, os) = (&frames[..nframes], &opts[..nframes]);
                if hand(rx, run, (fs, os), own, sink.as_deref_mut()) {
                    handed += nframes;
                } else if let Some(k) = wake.queue(run, fs, os, own) {
                    pos = places[k];
                    done = false;
                    break;
                }
                nframes = 0;
            };
        }
        // The port charged with a drop: the first that names the sender,
        // else one that takes any sender.
        let of_remote = |ip: IpAddr| {
            let named = members.iter().find(|((r, _), _)| *r == Some(ip));
            named
                .or_else(|| members.iter().find(|((r, _), _)| r.is_none()))
                .map(|(_, p)| p)
        };
        while let Some((dg, next)) = rx.at(pos) {
            let here = pos;
            let charge = |f: Counter, from: Option<IpAddr>| {
                match from.and_then(of_remote) {
                    Some(p) => f(&p.drops).fetch_add(1, Ordering::Relaxed),
                    None => self.unknown_remote.fetch_add(1, Ordering::Relaxed),
                };
            };
            let decoded = match (dg.from, dg.bytes) {
                (None, _) => Err(None),
                (Some(_), None) => Err(Some(RxDrops::oversize as Counter)),
                (Some(from), Some(bytes)) => match decode(self.key.proto, bytes) {
                    // A critical option no switch's TLV table maps: Open
                    // vSwitch drops the frame too.
                    Ok(d) if d.critical && !critical_known(d.options(bytes)) => {
                        Err(Some(RxDrops::geneve_unsupported as Counter))
                    }
                    Ok(d) => Ok((from, bytes, d)),
                    Err(DecapError::GeneveOam) => Err(Some(RxDrops::geneve_unsupported as Counter)),
                    Err(_) => Err(Some(RxDrops::malformed as Counter)),
                },
            };
            let (from, bytes, d) = match decoded {
                Ok(x) => x,
                Err(why) => {
                    flush!();
                    match why {
                        Some(f) => charge(f, dg.from),
                        None => charge(RxDrops::malformed, None),
                    }
                    pos = next;
                    continue;
                }
            };
            let key = (from, d.vni, dg.to);
            if run.is_none_or(|(k, _, _)| k != key) || nframes == BATCH {
                flush!();
                if run.is_none_or(|(k, _, _)| k != key) {
                    let p = Endpoint::member(&members, from, d.vni);
                    if let Some(to) = dg.to {
                        self.note_local(to);
                    }
                    let (l4, l6) = p.map_or((Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED), |p| {
                        (p.local, p.local6)
                    });
                    let meta = rx_meta(d.vni, from, dg.to, l4, l6);
                    run = Some((key, p, meta));
                }
            }
            let Some((_, Some(p), _)) = run else {
                charge(RxDrops::bad_vni, Some(from));
                pos = next;
                continue;
            };
            let inner = &bytes[d.inner..];
            if inner.len() > p.mem.buf_size() as usize {
                flush!();
                p.drops.oversize.fetch_add(1, Ordering::Relaxed);
            } else {
                frames[nframes] = inner;
                opts[nframes] = d.options(bytes);
                places[nframes] = here;
                nframes += 1;
            }
            pos = next;
        }
        if done {
            let (fs, os) = (&frames[..nframes], &opts[..nframes]);
            if hand(rx, run, (fs, os), own, sink) {
                handed += nframes;
            } else if let Some(k) = wake.queue(run, fs, os, own) {
                pos = places[k];
                done = false;
            }
        }
        for p in wake.ports[..wake.n].iter().flatten() {
            if p.mem.incoming().take_wakeup_request() {
                p.wake.notify();
            }
        }
        (pos, done, handed)
    }

    /// Records `a` as an address of this host (a datagram arrived for
    /// it), if it is not the last one recorded here.
    fn note_local(&self, a: IpAddr) {
        let a = match a {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => a,
                None => return note_local6(a),
            },
        };
        let v = u32::from(a);
        if self.last_to.swap(v, Ordering::Relaxed) != v {
            note_local_addr(a);
        }
    }
}

/// Addresses of this host that tunnel datagrams arrived at (their
/// `tun_dst`), so that a flow-based port never sends a frame to one: it
/// would come straight back in. The kernel delivers only to addresses of
/// the host, so the set stays small; beyond its room, the oldest is
/// replaced.
static LOCAL_ADDRS: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
static LOCAL_NEXT: AtomicU32 = AtomicU32::new(0);

fn note_local_addr(a: Ipv4Addr) {
    let v = u32::from(a);
    if v == 0 || is_local_addr(a) {
        return;
    }
    let i = LOCAL_NEXT.fetch_add(1, Ordering::Relaxed) as usize % LOCAL_ADDRS.len();
    LOCAL_ADDRS[i].store(v, Ordering::Relaxed);
}

/// Whether tunnel datagrams have arrived at `a` (see [`LOCAL_ADDRS`]).
pub fn is_local_addr(a: Ipv4Addr) -> bool {
    let v = u32::from(a);
    LOCAL_ADDRS.iter().any(|s| s.load(Ordering::Relaxed) == v)
}
