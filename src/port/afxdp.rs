//! AF_XDP ports: a kernel network interface (one of its queues) as a switch port.
//!
//! The port binds an AF_XDP socket to `ifname`/`queue` and attaches a tiny
//! XDP program (see `xdp_prog`, assembled in Rust and loaded through bpf(2),
//! no BPF toolchain) that redirects every frame received on that queue to
//! the socket. Frames on other queues, or arriving while no socket is bound,
//! continue into the kernel stack (`XDP_PASS`).
//!
//! Packets move between two memories:
//!
//! ```text
//!   NIC/veth --XDP redirect--> RX ring --copy--> incoming ring --> switch
//!   NIC/veth <--- TX ring <----------- copy <--- outgoing ring <-- switch
//!                (UMEM frames; fill and completion rings recycle them)
//! ```
//!
//! The UMEM (the frames the kernel reads and writes) is separate from the
//! port's [`PortMem`] and frames are copied in both directions: the switch's
//! ring discipline (slots that keep their buffers, any worker producing on the
//! outgoing ring) stays exactly as for every other port, and the kernel never
//! sees the switch's memory. The first half of the UMEM's frames serve
//! reception (they cycle fill ring -> RX ring -> fill ring), the second half
//! transmission (free list -> TX ring -> completion ring -> free list).
//!
//! The socket is bound in zero-copy mode when the driver supports it and in
//! copy mode otherwise (veth, for one); [`AfXdpPort::mode`] says which. Either
//! way, `need_wakeup` is used: the kernel is kicked only when it asks.
//!
//! Ownership: the program is attached through a BPF link, so it is detached
//! when the port is dropped or the process dies; nothing else about the
//! interface is changed. A vanished interface takes the program and the
//! socket's binding with it: the port keeps its memory and counters, and
//! binds a new socket and program to an interface of its name when there
//! is one again (a `Binding`, swapped whole; see [`Port::recheck`]). An interface's XDP hook holds one program, so one
//! interface serves one port (one queue): a second port on the same
//! interface, from this switch or another, is refused with
//! [`AfXdpError::Busy`].
//!
//! Checksums: XDP sees frames as they are on the wire, and AF_XDP carries no
//! checksum state. A frame sent by a local stack over a veth whose TX
//! checksum offload is on (the default) reaches XDP with its TCP/UDP
//! checksum unfinished (only the pseudo-header sum), and the stack that
//! finally receives it drops it. Stacks behind veth pairs attached through
//! AF_XDP need `ethtool -K IF tx off` on their end; real NICs compute
//! checksums before the wire and are not affected.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};
use std::time::{Duration, Instant};

use crate::packet::{MemConfig, MemError, PortMem, Slot};

use super::kernel::{Health, OneAtATime};
use super::{LinkState, Port, xdp_prog};

/// Ethernet header plus one VLAN tag: a frame is at most MTU + this.
pub const FRAME_OVERHEAD: u32 = 14 + 4;
/// Room the kernel leaves before received data in each UMEM chunk.
const XDP_PACKET_HEADROOM: u32 = 256;
/// Largest UMEM chunk used (aligned chunks are at most a page).
const MAX_CHUNK: u32 = 4096;
/// Smallest XDP ring created, whatever the port's rings.
const MIN_XDP_RING: u32 = 64;
/// How long `open` retries while the queue or the interface's XDP hook is
/// still held by a socket or link that is being torn down (the kernel
/// releases them asynchronously).
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// Why an AF_XDP port could not be opened. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    #[error("interface {ifname} has no queue {queue} (it has {queues})")]
    NoSuchQueue {
        ifname: String,
        queue: u32,
        queues: u32,
    },
    #[error(
        "not permitted to use AF_XDP on {0}: run as root (or with CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF)"
    )]
    NotPermitted(String),
    #[error(
        "interface {ifname} MTU {mtu} is larger than the port's buffers allow (MTU + {FRAME_OVERHEAD} must fit in {limit} bytes)"
    )]
    MtuTooLarge {
        ifname: String,
        mtu: u32,
        limit: u32,
    },
    #[error(
        "interface {ifname} (queue {queue}) is already used by another XDP program (another switch?)"
    )]
    Busy { ifname: String, queue: u32 },
    #[error("this kernel lacks AF_XDP support: {0}")]
    Unsupported(String),
    #[error(
        "cannot attach XDP to {ifname} through a BPF link (Linux 5.9 or later is needed): {err}"
    )]
    NoXdpLink { ifname: String, err: io::Error },
    #[error("the kernel rejected the XDP program: {0}")]
    ProgramRejected(String),
    #[error("port memory: {0}")]
    Mem(#[from] MemError),
    #[error("{what} on {ifname}: {err}")]
    Os {
        ifname: String,
        what: &'static str,
        err: io::Error,
    },
}

/// The kernel's counters for one AF_XDP socket (`struct xdp_statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames dropped for reasons other than the ones below.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// A kernel interface queue attached through AF_XDP.
pub struct AfXdpPort {
    name: String,
    ifname: String,
    queue: u32,
    cfg: MemConfig,
    /// The socket and program on the interface; replaced whole when an
    /// interface of the port's name comes back after it vanished
    /// ([`Port::recheck`]). Dropped before the port's memory.
    b: RwLock<Arc<Binding>>,
    health: Health,
    mem: PortMem,
    /// Copy mode: descriptors the kernel has not taken yet are left on the
    /// TX ring (the device pushed back, or is down); `sync_incoming` retries.
    tx_backlog: AtomicBool,
    rx_oversize: AtomicU64,
    tx_dropped: AtomicU64,
}

/// What ties a port to one interface: the AF_XDP socket with its rings and
/// UMEM, and the XDP program attached to the interface.
struct Binding {
    ifindex: u32,
    zero_copy: bool,
    /// Replaced: its interface is gone, and nothing may move frames
    /// through it any more (a worker that took it before the swap finds
    /// this under the state's lock and leaves the port's rings alone).
    retired: AtomicBool,
    // Fields drop in declaration order: first the link (detaching the
    // program from the interface), then the program and map, then the
    // rings, the socket, and only then the UMEM the socket registered.
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    rx: Mutex<RxState>,
    /// Any worker may publish; one moves frames to the TX ring at a time.
    tx: OneAtATime<TxState>,
    sock: OwnedFd,
    umem: Umem,
}

/// Reception state: touched by the owning worker only (the lock is never
/// contended; it makes that contract checked rather than assumed).
struct RxState {
    rx: XskRing,
    fill: XskRing,
    /// Our consumer index on the RX ring.
    rx_cons: u32,
    /// Our producer index on the fill ring.
    fill_prod: u32,
    /// Our producer index on the port's incoming ring.
    head: u32,
}

/// Transmission state: held by whichever worker drains the outgoing ring.
struct TxState {
    tx: XskRing,
    comp: XskRing,
    /// Our producer index on the TX ring.
    tx_prod: u32,
    /// Our consumer index on the completion ring.
    comp_cons: u32,
    /// UMEM addresses of TX frames not in the kernel's hands.
    free: Vec<u64>,
    /// Our consumer index on the port's outgoing ring.
    tail: u32,
}

impl AfXdpPort {
    /// Attaches queue `queue` of interface `ifname` as a port named `name`,
    /// with port memory `cfg`. Needs root (or CAP_NET_ADMIN, CAP_NET_RAW
    /// and CAP_BPF). The interface is left as found when the port is dropped.
    pub fn open(
        name: &str,
        ifname: &str,
        queue: u32,
        cfg: MemConfig,
    ) -> Result<Arc<AfXdpPort>, AfXdpError> {
        // Checked before the memory is made: the usual errors come first.
        if_index(ifname)?;
        let mem = PortMem::new(name, cfg)?;
        let head = mem.incoming().hdr.head.load(Ordering::Acquire);
        let tail = mem.outgoing().hdr.tail.load(Ordering::Acquire);
        let b = Binding::open(ifname, queue, cfg, head, tail)?;
        Ok(Arc::new(AfXdpPort {
            name: name.to_owned(),
            ifname: ifname.to_owned(),
            queue,
            cfg,
            b: RwLock::new(Arc::new(b)),
            health: Health::default(),
            mem,
            tx_backlog: AtomicBool::new(false),
            rx_oversize: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
        }))
    }

    /// The binding in use now.
    fn binding(&self) -> Arc<Binding> {
        self.b.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The index of the interface the port is bound to now.
    pub fn ifindex(&self) -> u32 {
        self.binding().ifindex
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// "zero-copy" when the driver DMAs straight into the UMEM, "copy" when
    /// the kernel copies frames in and out of it (e.g. veth).
    pub fn mode(&self) -> &'static str {
        if self.is_zero_copy() {
            "zero-copy"
        } else {
            "copy"
        }
    }

    pub fn is_zero_copy(&self) -> bool {
        self.binding().zero_copy
    }

    /// Received frames dropped because they were longer than the port's buffers.
    pub fn rx_oversize(&self) -> u64 {
        self.rx_oversize.load(Ordering::Relaxed)
    }

    /// Outgoing packets dropped: no free TX frame, longer than a UMEM frame,
    /// or a slot with a bad buffer index.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped.load(Ordering::Relaxed)
    }

    /// The kernel's counters for the socket.
    pub fn kernel_stats(&self) -> io::Result<XdpStats> {
        // SAFETY: xdp_statistics is plain data; all-zero is a valid value.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        getsockopt(&self.binding().sock, libc::XDP_STATISTICS, &mut s)?;
        Ok(XdpStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Moves received frames from the RX ring into the incoming ring.
    fn rx_sync(&self, b: &Binding, st: &mut RxState) {
        let ring = self.mem.incoming();
        let room = ring.free(st.head);
        let avail = st
            .rx
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(st.rx_cons)
            .min(st.rx.size());
        let fill_used = st
            .fill_prod
            .wrapping_sub(st.fill.consumer().load(Ordering::Acquire));
        let fill_room = st.fill.size().saturating_sub(fill_used);
        let n = room.min(avail).min(fill_room);
        if n > 0 {
            let cap = (self.mem.buf_size() as usize).min(usize::from(u16::MAX));
            let mut head = st.head;
            let mut oversize = 0;
            // The kernel wrote these frames, often on the other core: ask
            // for all of them first, so their cache misses overlap.
            for k in 0..n {
                let d = st.rx.desc(st.rx_cons.wrapping_add(k));
                b.umem.prefetch(d.addr, d.len);
            }
            for k in 0..n {
                let d = st.rx.desc(st.rx_cons.wrapping_add(k));
                // SAFETY: this frame was handed to us on the RX ring; the
                // kernel does not touch it until we give it back on the fill
                // ring below, after the copy.
                match unsafe { b.umem.frame(d.addr, d.len as usize) } {
                    Some(data) if data.len() > cap => oversize += 1,
                    Some(data) if !data.is_empty() => {
                        let slot = ring.slot(head);
                        if self.mem.write_buf(slot.buf, data) {
                            ring.write_slot(
                                head,
                                Slot {
                                    buf: slot.buf,
                                    len: data.len() as u16,
                                    flags: 0,
                                },
                            );
                            head = head.wrapping_add(1);
                        }
                    }
                    _ => {}
                }
                st.fill.set_addr(st.fill_prod, b.umem.chunk_base(d.addr));
                st.fill_prod = st.fill_prod.wrapping_add(1);
            }
            st.rx_cons = st.rx_cons.wrapping_add(n);
            // Release: the copies above are done before the kernel may
            // reuse the descriptors and the frames.
            st.rx.consumer().store(st.rx_cons, Ordering::Release);
            st.fill.producer().store(st.fill_prod, Ordering::Release);
            if head != st.head {
                st.head = head;
                ring.publish(head);
            }
            if oversize > 0 {
                self.rx_oversize.fetch_add(oversize, Ordering::Relaxed);
            }
        }
        if st.fill.needs_wakeup() {
            b.kick_rx();
        }
    }

    /// Drains the outgoing ring into TX frames and descriptors.
    fn tx_drain(&self, b: &Binding, st: &mut TxState) {
        Self::reclaim(b, st);
        let ring = self.mem.outgoing();
        let n = ring.available(st.tail);
        let chunk = b.umem.chunk as usize;
        let mut dropped = 0;
        for k in 0..n {
            let s = ring.slot(st.tail.wrapping_add(k));
            if s.len == 0 {
                // The switch already counted why this slot is empty.
                continue;
            }
            let data = match self.mem.buf(s.buf, usize::from(s.len)) {
                Some(d) if d.len() <= chunk => d,
                _ => {
                    dropped += 1;
                    continue;
                }
            };
            let Some(addr) = self.tx_frame(b, st) else {
                dropped += 1;
                continue;
            };
            // SAFETY: `addr` came off the free list, so neither the kernel
            // nor anyone else uses that frame; `data.len() <= chunk` and the
            // frame is a whole chunk inside the UMEM.
            unsafe { b.umem.write(addr, data) };
            st.tx.set_desc(
                st.tx_prod,
                libc::xdp_desc {
                    addr,
                    len: data.len() as u32,
                    options: 0,
                },
            );
            st.tx_prod = st.tx_prod.wrapping_add(1);
        }
        if n > 0 {
            st.tail = st.tail.wrapping_add(n);
            // Release: descriptors and frame contents before the producer.
            st.tx.producer().store(st.tx_prod, Ordering::Release);
            ring.release(st.tail);
        }
        self.kick_tx(b, st);
        if dropped > 0 {
            self.tx_dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// A free TX frame: from the free list, else from completions, else
    /// after pushing what is queued and reaping again. Never waits.
    fn tx_frame(&self, b: &Binding, st: &mut TxState) -> Option<u64> {
        if let Some(a) = st.free.pop() {
            return Some(a);
        }
        Self::reclaim(b, st);
        if st.free.is_empty() {
            st.tx.producer().store(st.tx_prod, Ordering::Release);
            self.kick_tx(b, st);
            Self::reclaim(b, st);
        }
        st.free.pop()
    }

    /// Moves completed TX frames back to the free list.
    fn reclaim(b: &Binding, st: &mut TxState) {
        let n = st
            .comp
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(st.comp_cons)
            .min(st.comp.size());
        if n == 0 {
            return;
        }
        for k in 0..n {
            let a = st.comp.addr(st.comp_cons.wrapping_add(k));
            // Only addresses of TX frames we produced come back; anything
            // else would be a kernel bug, and is not trusted.
            if b.umem.is_tx_frame(a) && st.free.len() < b.umem.tx_frames as usize {
                st.free.push(b.umem.chunk_base(a));
            }
        }
        st.comp_cons = st.comp_cons.wrapping_add(n);
        st.comp.consumer().store(st.comp_cons, Ordering::Release);
    }

    /// Makes the kernel transmit what is on the TX ring.
    fn kick_tx(&self, b: &Binding, st: &TxState) {
        let send = || {
            // SAFETY: a zero-length, non-blocking send on our own socket with
            // no buffers: the kernel reads nothing from us.
            unsafe {
                libc::sendto(
                    b.sock.as_raw_fd(),
                    ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            }
        };
        if b.zero_copy {
            // The driver transmits on its own unless it asked for a kick.
            if st.tx.needs_wakeup() {
                send();
            }
            return;
        }
        // Copy mode: the kernel transmits inside sendto, a small batch per
        // call, so call again while it makes progress. When it makes none
        // (device busy or down) the rest stays queued for a later kick.
        loop {
            let before = st.tx.consumer().load(Ordering::Acquire);
            if before == st.tx_prod {
                self.tx_backlog.store(false, Ordering::Relaxed);
                return;
            }
            send();
            if st.tx.consumer().load(Ordering::Acquire) == before {
                self.tx_backlog.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    fn lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
        match m.try_lock() {
            Ok(g) => Some(g),
            // Indices are only advanced after the work they cover, so state
            // left by a panicking holder is still consistent.
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl Binding {
    /// Asks the driver to refill its RX queue from the fill ring.
    fn kick_rx(&self) {
        // SAFETY: a zero-length, non-blocking receive on our own socket with
        // no buffers: the kernel writes nothing.
        unsafe {
            libc::recvfrom(
                self.sock.as_raw_fd(),
                ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
                ptr::null_mut(),
            );
        }
    }

    /// Binds queue `queue` of interface `ifname` for a port with memory
    /// `cfg`, whose incoming ring's next slot is `head` and whose outgoing
    /// ring's next unsent slot is `tail`.
    fn open(
        ifname: &str,
        queue: u32,
        cfg: MemConfig,
        head: u32,
        tail: u32,
    ) -> Result<Binding, AfXdpError> {
        let os = |what: &'static str| {
            let ifname = ifname.to_owned();
            move |err: io::Error| AfXdpError::Os { ifname, what, err }
        };
        let ifindex = if_index(ifname)?;
        let mtu = if_mtu(ifname).map_err(os("reading the MTU"))?;
        let limit = cfg.buf_size.min(MAX_CHUNK - XDP_PACKET_HEADROOM);
        if mtu.saturating_add(FRAME_OVERHEAD) > limit {
            return Err(AfXdpError::MtuTooLarge {
                ifname: ifname.to_owned(),
                mtu,
                limit,
            });
        }
        let queues = rx_queue_count(ifname);
        if let Some(n) = queues
            && queue >= n
        {
            return Err(AfXdpError::NoSuchQueue {
                ifname: ifname.to_owned(),
                queue,
                queues: n,
            });
        }

        // RX frames cycle fill -> RX -> fill; TX frames free -> TX ->
        // completion -> free. With as many frames as ring entries on each
        // side, no ring can ever overflow.
        let rx_n = cfg.incoming_slots.max(MIN_XDP_RING);
        let tx_n = cfg.outgoing_slots.max(MIN_XDP_RING);
        let chunk = if cfg.buf_size.max(mtu + FRAME_OVERHEAD + XDP_PACKET_HEADROOM) <= 2048 {
            2048
        } else {
            MAX_CHUNK
        };
        let umem = Umem::new(chunk, rx_n, tx_n).map_err(os("allocating the UMEM"))?;

        let deadline = Instant::now() + BUSY_RETRY;
        let busy = || AfXdpError::Busy {
            ifname: ifname.to_owned(),
            queue,
        };
        // Zero-copy first; any refusal other than "queue busy" means the
        // driver cannot do it, so a fresh socket is bound in copy mode.
        let xsk = loop {
            let zc = Xsk::new(&umem, rx_n, tx_n, ifname)?;
            let zc_err = match zc.bind(
                ifindex,
                queue,
                libc::XDP_ZEROCOPY | libc::XDP_USE_NEED_WAKEUP,
            ) {
                Ok(()) => break zc,
                Err(e) => e,
            };
            drop(zc);
            let err = if zc_err.raw_os_error() == Some(libc::EBUSY) {
                zc_err
            } else {
                let copy = Xsk::new(&umem, rx_n, tx_n, ifname)?;
                match copy.bind(ifindex, queue, libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP) {
                    Ok(()) => break copy,
                    Err(e) => e,
                }
            };
            match err.raw_os_error() {
                Some(libc::EBUSY) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some(libc::EBUSY) => return Err(busy()),
                Some(libc::EPERM | libc::EACCES) => {
                    return Err(AfXdpError::NotPermitted(ifname.to_owned()));
                }
                _ => return Err(os("binding the AF_XDP socket")(err)),
            }
        };
        let zero_copy = xsk.zero_copy().map_err(os("reading the socket mode"))?;

        let bpf_err = |what: &'static str| {
            let ifname = ifname.to_owned();
            move |err: io::Error| match err.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => AfXdpError::NotPermitted(ifname),
                Some(libc::ENOSYS) => {
                    AfXdpError::Unsupported(format!("the bpf(2) system call is missing ({err})"))
                }
                _ => AfXdpError::Os { ifname, what, err },
            }
        };
        let entries = queues.unwrap_or(0).max(queue.saturating_add(1));
        let map = xdp_prog::create_xskmap(entries).map_err(|err| {
            if err.raw_os_error() == Some(libc::EINVAL) {
                AfXdpError::Unsupported(format!("cannot create an XSKMAP ({err})"))
            } else {
                bpf_err("creating the XSKMAP")(err)
            }
        })?;
        xdp_prog::map_update(map.as_fd(), queue, xsk.sock.as_fd())
            .map_err(bpf_err("adding the socket to the XSKMAP"))?;
        let prog =
            xdp_prog::load_redirect_prog(map.as_fd()).map_err(|e| match e.err.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => AfXdpError::NotPermitted(ifname.to_owned()),
                _ if e.log.is_empty() => AfXdpError::ProgramRejected(e.err.to_string()),
                _ => AfXdpError::ProgramRejected(format!("{} ({})", e.log, e.err)),
            })?;
        let link = loop {
            match xdp_prog::link_create(prog.as_fd(), ifindex) {
                Ok(l) => break l,
                Err(err) => match err.raw_os_error() {
                    Some(libc::EBUSY | libc::EEXIST) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Some(libc::EBUSY | libc::EEXIST) => return Err(busy()),
                    Some(libc::EINVAL) => {
                        return Err(AfXdpError::NoXdpLink {
                            ifname: ifname.to_owned(),
                            err,
                        });
                    }
                    _ => return Err(bpf_err("attaching the XDP program")(err)),
                },
            }
        };

        let mut free: Vec<u64> = (rx_n..rx_n + tx_n).map(|f| umem.frame_addr(f)).collect();
        free.reverse();
        let Xsk {
            sock,
            rx,
            tx,
            fill,
            comp,
            fill_prod,
        } = xsk;
        Ok(Binding {
            ifindex,
            zero_copy,
            retired: AtomicBool::new(false),
            _link: link,
            _prog: prog,
            _map: map,
            rx: Mutex::new(RxState {
                rx,
                fill,
                rx_cons: 0,
                fill_prod,
                head,
            }),
            tx: OneAtATime::new(TxState {
                tx,
                comp,
                tx_prod: 0,
                comp_cons: 0,
                free,
                tail,
            }),
            sock,
            umem,
        })
    }
}

impl fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Port for AfXdpPort {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_oversize", self.rx_oversize()),
            ("tx_dropped", self.tx_dropped()),
        ]
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "af_xdp"
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn sync_incoming(&self, _q: usize) {
        let b = self.binding();
        if let Some(mut st) = Self::lock(&b.rx)
            && !b.retired.load(Ordering::Acquire)
        {
            self.rx_sync(&b, &mut st);
        }
        if self.tx_backlog.load(Ordering::Relaxed) {
            self.outgoing_published();
        }
    }

    fn outgoing_published(&self) {
        let b = self.binding();
        b.tx.run(|st| {
            if !b.retired.load(Ordering::Acquire) {
                self.tx_drain(&b, st);
            }
        });
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        Some(self.binding().sock.as_raw_fd())
    }

    /// A vanished interface takes the XDP program and the socket's binding
    /// with it, and an unbound socket never signals (no spinning): the
    /// port looks once a second ([`Port::needs_recheck`]) and binds anew
    /// to an interface of its name when there is one again.
    fn link_state(&self) -> LinkState {
        super::kernel::state_of(&self.ifname, self.binding().ifindex)
    }

    /// Looks at the interface (a few system calls; the worker asks once a
    /// second): gone means there is something to do.
    fn needs_recheck(&self) -> bool {
        let now = self.link_state();
        self.health.note(now, &self.name, &self.ifname);
        now == LinkState::Gone
    }

    /// Binds to the interface of the port's name, if there is one again
    /// (a new socket and program; the port's rings, counters and number
    /// stay). Frames the old socket held are lost with its interface.
    fn recheck(&self) {
        let old = self.binding();
        if super::kernel::state_of(&self.ifname, old.ifindex) != LinkState::Gone
            || if_index(&self.ifname).is_err()
        {
            return;
        }
        // Made before anything is locked: binding may wait a while for
        // the kernel to let go of the queue.
        let mut b = match Binding::open(&self.ifname, self.queue, self.cfg, 0, 0) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("port {}: cannot take {} back: {e}", self.name, self.ifname);
                return;
            }
        };
        let now = super::kernel::state_of(&self.ifname, b.ifindex);
        {
            let mut slot = self.b.write().unwrap_or_else(|e| e.into_inner());
            // The old binding's state, locked (a worker in it finishes
            // first), says where the port's rings stand; it is marked
            // retired before the locks go, so nothing moves frames through
            // it again.
            let rx = slot.rx.lock().unwrap_or_else(|e| e.into_inner());
            let tx = slot.tx.lock_wait();
            b.rx.get_mut().unwrap_or_else(|e| e.into_inner()).head = rx.head;
            b.tx.get_mut().tail = tx.tail;
            slot.retired.store(true, Ordering::Release);
            drop((rx, tx));
            *slot = Arc::new(b);
        }
        self.tx_backlog.store(false, Ordering::Relaxed);
        self.health.note(now, &self.name, &self.ifname);
    }

    fn arm_incoming(&self, _q: usize, cur: u32) -> bool {
        // A TX backlog does not keep the worker awake: it is retried while
        // the worker polls, and by the next `outgoing_published` otherwise
        // (a link that is down must not make the worker spin).
        if self.mem.incoming().available(cur) > 0 {
            return false;
        }
        let b = self.binding();
        let Some(st) = Self::lock(&b.rx) else {
            return false;
        };
        // A driver waiting for fill-ring buffers must be told before we sleep.
        if st.fill.needs_wakeup() {
            b.kick_rx();
        }
        fence(Ordering::SeqCst);
        // The socket polls readable while its RX ring holds descriptors, so
        // anything arriving after this check wakes the worker's epoll.
        st.rx.producer().load(Ordering::Acquire) == st.rx_cons
    }

    fn disarm_incoming(&self, _q: usize) {
        // Nothing to undo: the socket's readability is the signal, and it
        // clears as `sync_incoming` empties the RX ring.
    }
}

/// An AF_XDP socket with its four rings mapped, not yet part of a port.
struct Xsk {
    sock: OwnedFd,
    rx: XskRing,
    tx: XskRing,
    fill: XskRing,
    comp: XskRing,
    /// Fill ring producer index after pre-filling it with every RX frame.
    fill_prod: u32,
}

impl Xsk {
    /// Creates the socket, registers `umem`, creates and maps the rings
    /// (`rx_n` RX and fill entries, `tx_n` TX and completion entries) and
    /// gives the first `rx_n` frames to the fill ring.
    fn new(umem: &Umem, rx_n: u32, tx_n: u32, ifname: &str) -> Result<Xsk, AfXdpError> {
        let os = |what: &'static str| {
            let ifname = ifname.to_owned();
            move |err: io::Error| AfXdpError::Os { ifname, what, err }
        };
        // SAFETY: plain syscall with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => {
                    AfXdpError::Unsupported(format!("socket(AF_XDP): {err}"))
                }
                Some(libc::EPERM | libc::EACCES) => AfXdpError::NotPermitted(ifname.to_owned()),
                _ => os("creating the AF_XDP socket")(err),
            });
        }
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };

        let reg = libc::xdp_umem_reg {
            addr: umem.map.ptr.as_ptr() as u64,
            len: umem.map.len as u64,
            chunk_size: umem.chunk,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&sock, libc::XDP_UMEM_REG, &reg).map_err(|err| match err.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => AfXdpError::NotPermitted(ifname.to_owned()),
            _ => os("registering the UMEM (RLIMIT_MEMLOCK too low?)")(err),
        })?;
        for (opt, n) in [
            (libc::XDP_UMEM_FILL_RING, rx_n),
            (libc::XDP_UMEM_COMPLETION_RING, tx_n),
            (libc::XDP_RX_RING, rx_n),
            (libc::XDP_TX_RING, tx_n),
        ] {
            setsockopt(&sock, opt, &n).map_err(os("sizing the AF_XDP rings"))?;
        }
        // SAFETY: xdp_mmap_offsets is plain data; all-zero is a valid value.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let len = getsockopt(&sock, libc::XDP_MMAP_OFFSETS, &mut off)
            .map_err(os("reading the ring offsets"))?;
        if len != size_of::<libc::xdp_mmap_offsets>() {
            return Err(AfXdpError::Unsupported(
                "no ring flags (need-wakeup needs Linux 5.4 or later)".into(),
            ));
        }
        let desc = size_of::<libc::xdp_desc>();
        let map = |o, n, size, pgoff: u64| {
            XskRing::new(&sock, o, n, size, pgoff).map_err(os("mapping the AF_XDP rings"))
        };
        let rx = map(&off.rx, rx_n, desc, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = map(&off.tx, tx_n, desc, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = map(&off.fr, rx_n, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = map(&off.cr, tx_n, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        for f in 0..rx_n {
            fill.set_addr(f, umem.frame_addr(f));
        }
        fill.producer().store(rx_n, Ordering::Release);
        Ok(Xsk {
            sock,
            rx,
            tx,
            fill,
            comp,
            fill_prod: rx_n,
        })
    }

    fn bind(&self, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a complete sockaddr_xdp and its exact size is passed.
        let r = unsafe {
            libc::bind(
                self.sock.as_raw_fd(),
                (&raw const sa).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether the bound socket runs in zero-copy mode.
    fn zero_copy(&self) -> io::Result<bool> {
        let mut o = libc::xdp_options { flags: 0 };
        getsockopt(&self.sock, libc::XDP_OPTIONS, &mut o)?;
        Ok(o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }
}

fn setsockopt<T>(sock: &OwnedFd, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live plain-data value of exactly the length passed;
    // the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            ptr::from_ref(val).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads a socket option into `val`; returns the length the kernel wrote.
fn getsockopt<T>(sock: &OwnedFd, opt: libc::c_int, val: &mut T) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a live plain-data value (every bit pattern valid) of
    // `len` bytes; the kernel writes at most `len` bytes into it.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            ptr::from_mut(val).cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

/// A memory mapping we own (UMEM or a ring).
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory; who may touch which bytes is governed by
// the ring protocols, whose state lives behind the port's locks.
unsafe impl Send for Mmap {}
// SAFETY: as above; `Mmap` has no interior state besides the mapping.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn new(len: usize, flags: libc::c_int, fd: RawFd, off: libc::off_t) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping at an address the kernel picks, so no
        // existing Rust object is aliased.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: exactly what mmap returned; nothing borrowed from the
        // mapping outlives its owner.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The frames the kernel reads and writes: `frames` aligned chunks of `chunk`
/// bytes; frames `[0, rx_frames)` are for reception, the rest for transmission.
struct Umem {
    map: Mmap,
    chunk: u32,
    rx_frames: u32,
    tx_frames: u32,
}

impl Umem {
    fn new(chunk: u32, rx_frames: u32, tx_frames: u32) -> io::Result<Umem> {
        let len = (rx_frames as usize + tx_frames as usize) * chunk as usize;
        let map = Mmap::new(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )?;
        Ok(Umem {
            map,
            chunk,
            rx_frames,
            tx_frames,
        })
    }

    fn frame_addr(&self, f: u32) -> u64 {
        u64::from(f) * u64::from(self.chunk)
    }

    fn chunk_base(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.chunk) - 1)
    }

    fn is_tx_frame(&self, addr: u64) -> bool {
        addr < self.map.len as u64 && addr >= self.frame_addr(self.rx_frames)
    }

    /// The `len` bytes at UMEM offset `addr`, if they lie inside one chunk.
    ///
    /// # Safety
    /// The caller must own the frame (the kernel gave it back and nobody
    /// else writes it) for as long as the slice lives.
    unsafe fn frame(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if end > self.map.len as u64
            || (len > 0 && self.chunk_base(addr) != self.chunk_base(end - 1))
        {
            return None;
        }
        // SAFETY: in bounds (checked above); the caller owns the frame.
        Some(unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(addr as usize), len) })
    }

    /// Starts fetching the first two cache lines of the frame at `addr` (a
    /// hint: nothing is read, whatever `addr` is).
    fn prefetch(&self, addr: u64, len: u32) {
        let p = self.map.ptr.as_ptr().wrapping_add(addr as usize);
        crate::sys::prefetch(p);
        if len > 64 {
            crate::sys::prefetch(p.wrapping_add(64));
        }
    }

    /// Copies `data` to the frame at chunk address `addr`.
    ///
    /// # Safety
    /// The caller must own the frame; `addr` must be a chunk address inside
    /// the UMEM and `data.len() <= chunk`.
    unsafe fn write(&self, addr: u64, data: &[u8]) {
        debug_assert!(addr + data.len() as u64 <= self.map.len as u64);
        // SAFETY: in bounds per the caller's contract; `data` lives in the
        // port's memory, which never overlaps the UMEM.
        unsafe {
            ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.ptr.as_ptr().add(addr as usize),
                data.len(),
            )
        };
    }
}

/// One of a socket's four rings, mapped from the kernel. RX and TX rings
/// hold `xdp_desc`s, fill and completion rings hold UMEM addresses (`u64`).
struct XskRing {
    map: Mmap,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
}

impl XskRing {
    fn new(
        sock: &OwnedFd,
        off: &libc::xdp_ring_offset,
        entries: u32,
        desc_size: usize,
        pgoff: u64,
    ) -> io::Result<XskRing> {
        let desc = off.desc as usize;
        let len = desc + entries as usize * desc_size;
        let fits = |o: u64, size: usize, align: usize| {
            (o as usize).is_multiple_of(align) && o as usize + size <= len
        };
        if !entries.is_power_of_two()
            || !fits(off.producer, 4, 4)
            || !fits(off.consumer, 4, 4)
            || !fits(off.flags, 4, 4)
            || !desc.is_multiple_of(8)
        {
            return Err(io::Error::other("unexpected AF_XDP ring layout"));
        }
        let map = Mmap::new(
            len,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            sock.as_raw_fd(),
            pgoff as libc::off_t,
        )?;
        Ok(XskRing {
            map,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            desc,
            mask: entries - 1,
        })
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` was checked in `new` to be a 4-aligned u32 inside the
        // mapping, which lives as long as `self`; the kernel accesses it
        // atomically too.
        unsafe { &*self.map.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    fn producer(&self) -> &AtomicU32 {
        self.word(self.producer)
    }

    fn consumer(&self) -> &AtomicU32 {
        self.word(self.consumer)
    }

    /// Whether the kernel asked to be kicked (XDP_RING_NEED_WAKEUP).
    fn needs_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        self.word(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn entry<T>(&self, i: u32) -> *mut T {
        debug_assert!(size_of::<T>() == 8 || size_of::<T>() == 16);
        // SAFETY: the index is masked into the ring, whose `size()` entries
        // of `T` follow `desc` inside the mapping (checked in `new`; `T` is
        // the entry type the ring was created with).
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add(self.desc + (i & self.mask) as usize * size_of::<T>())
                .cast::<T>()
        }
    }

    /// Reads RX descriptor `i` (consumer side, below the producer).
    fn desc(&self, i: u32) -> libc::xdp_desc {
        // SAFETY: an in-ring, 8-aligned entry (see `entry`); volatile because
        // the kernel wrote it.
        unsafe { ptr::read_volatile(self.entry::<libc::xdp_desc>(i)) }
    }

    /// Writes TX descriptor `i` (producer side, not yet published).
    fn set_desc(&self, i: u32, d: libc::xdp_desc) {
        // SAFETY: as in `desc`; the kernel does not read past the producer.
        unsafe { ptr::write_volatile(self.entry::<libc::xdp_desc>(i), d) }
    }

    /// Reads completion entry `i`.
    fn addr(&self, i: u32) -> u64 {
        // SAFETY: as in `desc`.
        unsafe { ptr::read_volatile(self.entry::<u64>(i)) }
    }

    /// Writes fill entry `i`.
    fn set_addr(&self, i: u32, a: u64) {
        // SAFETY: as in `set_desc`.
        unsafe { ptr::write_volatile(self.entry::<u64>(i), a) }
    }
}

/// The interface's index in this network namespace.
fn if_index(ifname: &str) -> Result<u32, AfXdpError> {
    let missing = || AfXdpError::NoSuchInterface(ifname.to_owned());
    if !valid_ifname(ifname) {
        return Err(missing());
    }
    let c = CString::new(ifname).map_err(|_| missing())?;
    // SAFETY: `c` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(missing()),
        i => Ok(i),
    }
}

fn valid_ifname(s: &str) -> bool {
    (1..libc::IFNAMSIZ).contains(&s.len())
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
}

fn if_mtu(ifname: &str) -> io::Result<u32> {
    match std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu")) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("bad MTU {:?} in sysfs", s.trim()))),
        // sysfs may show another namespace's interfaces: ask the kernel.
        Err(_) => if_mtu_ioctl(ifname),
    }
}

fn if_mtu_ioctl(ifname: &str) -> io::Result<u32> {
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (the name is shorter
    // than IFNAMSIZ, checked by the caller) and writes the MTU into `req`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &raw mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFMTU the union holds the MTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other("negative MTU"))
}

/// The interface's number of RX queues, when sysfs shows it.
fn rx_queue_count(ifname: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues")).ok()?;
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_before_use() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("../x"));
        assert!(!valid_ifname("abcdefghijklmnop"));
        let e = AfXdpPort::open("p", "no/such", 0, MemConfig::new(64, 2048)).unwrap_err();
        assert_eq!(e.to_string(), "no such interface: no/such");
    }

    #[test]
    fn umem_frames_are_bounds_checked() {
        let u = Umem::new(2048, 2, 2).unwrap();
        assert_eq!(u.chunk_base(2048 + 256), 2048);
        // SAFETY: nobody else uses this UMEM.
        unsafe {
            assert_eq!(u.frame(256, 100).map(<[u8]>::len), Some(100));
            assert!(u.frame(2000, 100).is_none()); // crosses a chunk
            assert!(u.frame(4 * 2048 - 10, 20).is_none()); // past the end
            assert!(u.frame(u64::MAX - 2, 10).is_none());
        }
    }
}
