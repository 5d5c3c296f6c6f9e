//! `vhost-user:PATH[,server|client]`: the switch as the vhost-user backend
//! (the device side) of a virtio-net device whose frontend is a VM monitor
//! (QEMU, Cloud Hypervisor, Firecracker) or DPDK's virtio-user.
//!
//! Three parts:
//! - [`device`]: the protocol, on a thread of its own per port: the rust-vmm
//!   `vhost` crate decodes the frontend's messages, `Device` keeps its
//!   configuration and starts and stops queues. In server mode the thread
//!   listens on PATH and serves one frontend at a time; in client mode it
//!   connects to PATH, and connects again whenever the frontend goes away.
//! - [`virtq`]: split virtqueues in guest memory, validated descriptor by
//!   descriptor ([`guest_mem`] maps and bounds the guest's memory).
//! - this file: the data path. The owning worker's `sync_incoming` drains
//!   the guest's transmit queues into the port's incoming ring; any worker's
//!   `outgoing_published` fills the guest's receive queue from the outgoing
//!   ring. Frames the guest has no room for wait in the outgoing ring (the
//!   switch drops when that is full), so a slow guest never stalls others.
//!
//! Notifications: while the worker polls, the guest is asked not to kick
//! (and DPDK frontends ask not to be called); when the worker goes to sleep
//! (`arm_incoming`) kicks are turned on and the port's `incoming_fd`, an
//! epoll set of the kick eventfds, wakes it. The guest is called only when
//! it asked (EVENT_IDX or the ring flags).
//!
//! Multiple queue pairs (MQ) are negotiated and all served by the port's
//! one worker (a port has one incoming ring); frames to the guest go to the
//! first running receive queue.
//!
//! Guest memory stays mapped while any queue uses it, so a frontend that
//! dies mid-transfer costs only its port: its queues stop at the next
//! message or when its socket closes.

mod device;
mod guest_mem;
mod virtq;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::{BackendReqHandler, Error as VuError};

use super::Port;
use super::kernel::{IncomingFill, OneAtATime};
use super::socket::{BindError, accept_or_connect, bind_replacing_stale};
use crate::packet::{MemConfig, PortMem};
use crate::sys::{Epoll, EventFd};
use virtq::{Pushed, Virtq};

pub use device::device_features;

/// Chains whose buffers are prefetched at the start of a batch.
const PREFETCH: u16 = 32;

fn prefetch_count(n: usize) -> u16 {
    n.min(usize::from(PREFETCH)) as u16
}

/// Most queue pairs a port offers.
pub const MAX_QUEUE_PAIRS: u16 = 16;

/// Who opens the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The switch listens on PATH; the frontend connects.
    Server,
    /// The frontend listens; the switch connects (and reconnects).
    Client,
}

#[derive(Debug, thiserror::Error)]
pub enum VhostUserError {
    #[error("'{0}' exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("{what} '{path}': {err}")]
    Os {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("port memory: {0}")]
    Mem(#[from] crate::packet::MemError),
    #[error("queue pairs must be 1..={MAX_QUEUE_PAIRS}, not {0}")]
    QueuePairs(u16),
}

/// Counters of what the guest did wrong or had no room for.
#[derive(Default, Debug)]
pub struct Counters {
    /// Chains refused (bad index, loop, address, direction, indirect table).
    pub bad_chains: AtomicU64,
    /// Frames from the guest larger than a port buffer, or shorter than an
    /// Ethernet header.
    pub rx_bad_len: AtomicU64,
    /// Frames to the guest dropped: no frontend, or too big for its buffers.
    pub tx_dropped: AtomicU64,
    /// Queues broken by an impossible available index.
    pub broken: AtomicU64,
    /// Frontends that connected.
    pub connects: AtomicU64,
}

/// A running virtqueue as the data path sees it.
pub(crate) struct Live {
    q: Virtq,
    kick: Option<EventFd>,
    call: Option<EventFd>,
    hdr_len: usize,
    merge: bool,
}

impl Live {
    fn call(&self) {
        if let Some(c) = &self.call {
            c.notify();
        }
    }
}

/// State shared by the port (data path) and its protocol thread.
pub(crate) struct Shared {
    name: String,
    queue_pairs: u16,
    /// Virtqueue `2k` receives (switch -> guest), `2k + 1` transmits.
    queues: Vec<Mutex<Option<Live>>>,
    /// The worker sleeps: queues must be kicked.
    armed: AtomicBool,
    /// Kick eventfds (token: queue index) and `wake` (token: u64::MAX).
    epoll: Epoll,
    wake: EventFd,
    counters: Counters,
    stop: AtomicBool,
    /// The protocol connection, to shut down when the port goes away.
    conn: Mutex<Option<UnixStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Before transmit queue `i` stops: gives the data path until
    /// `deadline` to take what the guest already queued, as data written to
    /// a socket before it closes is delivered.
    fn settle(&self, i: usize, deadline: Instant) {
        if i.is_multiple_of(2) {
            return;
        }
        while Instant::now() < deadline {
            let waiting = lock(&self.queues[i])
                .as_mut()
                .is_some_and(|l| l.q.refresh() > 0);
            if !waiting {
                return;
            }
            self.wake.notify();
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Puts `live` in place of queue `i`'s running state; returns the old.
    fn install(&self, i: usize, live: Option<Live>) -> Option<Live> {
        let mut g = lock(&self.queues[i]);
        if let Some(k) = g.as_ref().and_then(|l| l.kick.as_ref()) {
            let _ = self.epoll.delete(k.as_raw_fd());
        }
        if let Some(l) = &live {
            if let Some(k) = &l.kick {
                crate::sys::set_nonblocking(k.as_raw_fd());
                let _ = self.epoll.add(k.as_raw_fd(), i as u64);
            }
            if self.armed.load(Ordering::SeqCst) {
                l.q.enable_kicks();
            } else {
                l.q.disable_kicks();
            }
        }
        let old = std::mem::replace(&mut *g, live);
        drop(g);
        // Let a sleeping worker look at the new queue.
        self.wake.notify();
        old
    }
}

/// A vhost-user port.
pub struct VhostUserPort {
    name: String,
    path: PathBuf,
    mode: Mode,
    mem: PortMem,
    fill: IncomingFill,
    shared: Arc<Shared>,
    /// Our consumer index on the outgoing ring, for whoever drains it.
    out_tail: OneAtATime<u32>,
    /// Frames wait in the outgoing ring for guest buffers.
    out_stuck: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl VhostUserPort {
    /// Opens the port: in server mode binds PATH now (replacing a stale
    /// socket), in client mode starts connecting in the background.
    pub fn open(
        name: &str,
        path: &Path,
        mode: Mode,
        queue_pairs: u16,
        cfg: MemConfig,
    ) -> Result<Arc<VhostUserPort>, VhostUserError> {
        if !(1..=MAX_QUEUE_PAIRS).contains(&queue_pairs) {
            return Err(VhostUserError::QueuePairs(queue_pairs));
        }
        let os = |what: &'static str| {
            move |err: io::Error| VhostUserError::Os {
                what,
                path: path.to_owned(),
                err,
            }
        };
        let listener = match mode {
            Mode::Server => Some(bind(path)?),
            Mode::Client => None,
        };
        let mem = PortMem::new(name, cfg)?;
        let epoll = Epoll::new().map_err(os("epoll"))?;
        let wake = EventFd::new().map_err(os("eventfd"))?;
        epoll.add(wake.as_raw_fd(), u64::MAX).map_err(os("epoll"))?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            queue_pairs,
            queues: (0..2 * queue_pairs).map(|_| Mutex::new(None)).collect(),
            armed: AtomicBool::new(false),
            epoll,
            wake,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            conn: Mutex::new(None),
        });
        let port = Arc::new(VhostUserPort {
            name: name.to_owned(),
            path: path.to_owned(),
            mode,
            fill: IncomingFill::new(&mem),
            out_tail: OneAtATime::new(mem.outgoing().hdr.tail.load(Ordering::Acquire)),
            mem,
            shared: shared.clone(),
            out_stuck: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let p = path.to_owned();
        let t = std::thread::Builder::new()
            .name(format!("vhu-{name}"))
            .spawn(move || serve(&shared, &p, listener))
            .map_err(os("thread"))?;
        *lock(&port.thread) = Some(t);
        Ok(port)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Whether a frontend has at least one queue running.
    pub fn running(&self) -> bool {
        self.shared.queues.iter().any(|q| lock(q).is_some())
    }

    /// Moves frames from the outgoing ring into the guest's receive queue.
    /// Any worker may call it; one drains at a time, the others leave a note.
    fn flush_outgoing(&self) {
        self.out_tail.run(|tail| self.drain_to_guest(tail));
    }

    fn drain_to_guest(&self, tail: &mut u32) {
        let ring = self.mem.outgoing();
        let n = ring.available(*tail);
        if n == 0 {
            return;
        }
        let frames = (0..n).map(|k| {
            let s = ring.slot(tail.wrapping_add(k));
            self.mem.buf(s.buf, usize::from(s.len)).unwrap_or(&[])
        });
        let (k, stuck) = self.to_guest(frames, true);
        *tail = tail.wrapping_add(k as u32);
        ring.release(*tail);
        self.out_stuck.store(stuck, Ordering::SeqCst);
    }

    /// Copies `frames` into the guest's first running receive queue, in
    /// order, and tells the guest if it asked. Returns how many frames were
    /// taken (delivered, or dropped and counted: too big for the guest's
    /// buffers, a bad chain, no frontend) and whether the guest ran out of
    /// buffers before the end. With `wait`, running out asks the guest to
    /// kick when it adds buffers (the caller keeps the rest and retries);
    /// without, the rest is the caller's to drop.
    fn to_guest<'a>(
        &self,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
        wait: bool,
    ) -> (usize, bool) {
        let c = &self.shared.counters;
        let mut guard = None;
        for k in 0..usize::from(self.shared.queue_pairs) {
            let g = lock(&self.shared.queues[2 * k]);
            if g.is_some() {
                guard = Some(g);
                break;
            }
        }
        // This port's transmit queue is often drained soon after (its worker
        // polls it next, or the guest answers what it gets): start fetching
        // the head of its available ring now, while the frames are copied.
        if let Ok(tx) = self.shared.queues[1].try_lock()
            && let Some(t) = tx.as_ref()
        {
            t.q.prefetch_avail(PREFETCH);
        }
        let Some(live) = guard.as_mut().and_then(|g| g.as_mut()) else {
            // No frontend: the frames have nowhere to go. Those of the
            // outgoing ring are dropped here; the switch counts the others.
            if !wait {
                return (0, false);
            }
            let n = frames.count();
            c.tx_dropped.fetch_add(n as u64, Ordering::Relaxed);
            return (n, false);
        };
        live.q.refresh();
        let since = live.q.used_idx;
        let mut hdr = [0u8; 12];
        hdr[10] = 1; // num_buffers, patched by `push` when merging
        let hdr = &hdr[..live.hdr_len];
        let (mut k, mut stuck, mut retried) = (0, false, false);
        let count = frames.len();
        let mut frames = frames.peekable();
        live.q.prefetch_batch(prefetch_count(count), true);
        while let Some(frame) = frames.peek() {
            if k + usize::from(PREFETCH) < count {
                live.q.prefetch(PREFETCH, true);
            }
            match live.q.push(hdr, frame, live.merge) {
                Ok(Pushed::Done) => {}
                Ok(Pushed::NoRoom) => {
                    // Buffers the guest added since the last look are found
                    // by looking once more.
                    if wait {
                        // Ask the guest to kick when it adds buffers: that
                        // wakes a sleeping worker, whose sync_incoming retries.
                        live.q.enable_kicks();
                    }
                    if !retried && live.q.refresh() > 0 {
                        retried = true;
                        continue;
                    }
                    stuck = true;
                    break;
                }
                Ok(Pushed::TooBig) => {
                    c.tx_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    c.bad_chains.fetch_add(1, Ordering::Relaxed);
                }
            }
            frames.next();
            k += 1;
        }
        if live.q.publish(since) {
            live.call();
        }
        if live.q.just_broke() {
            c.broken.fetch_add(1, Ordering::Relaxed);
        }
        if wait && !stuck && self.out_stuck.load(Ordering::Relaxed) {
            live.q.disable_kicks();
        }
        (k, stuck)
    }

    /// Drains one transmit queue into the incoming ring.
    fn drain_from_guest(&self, live: &mut Live) {
        let c = &self.shared.counters;
        let mut left = live.q.refresh();
        if live.q.just_broke() {
            c.broken.fetch_add(1, Ordering::Relaxed);
        }
        if left == 0 {
            return;
        }
        let since = live.q.used_idx;
        let skip = live.hdr_len;
        // As many chains as this batch takes, the first PREFETCH at once.
        let take = u32::from(left).min(self.fill.room(&self.mem)).min(256);
        let mut ahead = take.saturating_sub(u32::from(PREFETCH));
        live.q.prefetch_batch(prefetch_count(take as usize), false);
        self.fill.fill(&self.mem, 256, |buf| {
            if left == 0 {
                return None;
            }
            left -= 1;
            if ahead > 0 {
                ahead -= 1;
                live.q.prefetch(PREFETCH, false);
            }
            match live.q.pop_into(skip, buf) {
                Ok(Some(len)) if len >= 14 => Some(len),
                Ok(_) => {
                    c.rx_bad_len.fetch_add(1, Ordering::Relaxed);
                    Some(0)
                }
                Err(_) => {
                    c.bad_chains.fetch_add(1, Ordering::Relaxed);
                    Some(0)
                }
            }
        });
        if live.q.publish(since) {
            live.call();
        }
    }
}

impl Port for VhostUserPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "vhost-user"
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn sync_incoming(&self) {
        for k in 0..self.shared.queue_pairs as usize {
            let Ok(mut g) = self.shared.queues[2 * k + 1].try_lock() else {
                continue;
            };
            if let Some(live) = g.as_mut() {
                self.drain_from_guest(live);
            }
        }
        if self.out_stuck.load(Ordering::Relaxed) {
            self.flush_outgoing();
        }
    }

    fn outgoing_published(&self) {
        self.flush_outgoing();
    }

    fn transmits_directly(&self) -> bool {
        true
    }

    fn transmit(&self, frames: &[&[u8]]) -> usize {
        self.to_guest(frames.iter().copied(), false).0
    }

    fn incoming_fd(&self) -> Option<RawFd> {
        Some(self.shared.epoll.as_raw_fd())
    }

    fn arm_incoming(&self, cur: u32) -> bool {
        let sh = &self.shared;
        sh.armed.store(true, Ordering::SeqCst);
        let mut ready = self.mem.incoming().available(cur) > 0;
        let stuck = self.out_stuck.load(Ordering::SeqCst);
        for (i, q) in sh.queues.iter().enumerate() {
            if i.is_multiple_of(2) && !stuck {
                continue;
            }
            if let Some(live) = lock(q).as_mut() {
                live.q.enable_kicks();
                ready |= live.q.refresh() > 0;
            }
        }
        if ready {
            self.disarm_incoming();
        }
        !ready
    }

    fn disarm_incoming(&self) {
        let sh = &self.shared;
        sh.armed.store(false, Ordering::SeqCst);
        for q in &sh.queues {
            if let Ok(g) = q.try_lock()
                && let Some(live) = g.as_ref()
            {
                live.q.disable_kicks();
                if let Some(k) = &live.kick {
                    k.drain();
                }
            }
        }
        sh.wake.drain();
    }
}

impl Drop for VhostUserPort {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(c) = lock(&self.shared.conn).as_ref() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        if self.mode == Mode::Server {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds PATH (see [`bind_replacing_stale`]), in this port's error type.
fn bind(path: &Path) -> Result<UnixListener, VhostUserError> {
    bind_replacing_stale(path).map_err(|e| match e {
        BindError::NotASocket => VhostUserError::NotASocket(path.to_owned()),
        BindError::Os { what, err } => VhostUserError::Os {
            what,
            path: path.to_owned(),
            err,
        },
    })
}

const RETRY: Duration = Duration::from_millis(50);

/// The protocol thread: one frontend connection after another until the
/// port goes away.
fn serve(shared: &Arc<Shared>, path: &Path, listener: Option<UnixListener>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(stream) = accept_or_connect(listener.as_ref(), path, RETRY) else {
            if listener.is_none() {
                std::thread::sleep(RETRY);
            }
            continue;
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        shared.counters.connects.fetch_add(1, Ordering::Relaxed);
        *lock(&shared.conn) = stream.try_clone().ok();
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let dev = Arc::new(Mutex::new(device::Device::new(shared.clone())));
        let mut h = BackendReqHandler::from_stream(stream, dev.clone());
        // A handler that panicked (it should not) costs only this connection.
        let why = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session(&mut h)))
            .unwrap_or_else(|_| "internal error".into());
        lock(&dev).reset();
        *lock(&shared.conn) = None;
        if !shared.stop.load(Ordering::SeqCst) {
            eprintln!("mswitch: {}: frontend gone ({why})", shared.name);
        }
    }
}

/// Serves one connection; returns why it ended.
fn session(h: &mut BackendReqHandler<Mutex<device::Device>>) -> String {
    let mut errors = 0;
    loop {
        match h.handle_request() {
            Ok(()) => errors = 0,
            Err(
                e @ (VuError::Disconnected
                | VuError::PartialMessage
                | VuError::SocketBroken(_)
                | VuError::SocketError(_)
                | VuError::OversizedMsg
                | VuError::IncorrectFds),
            ) => return e.to_string(),
            // A refused request (already answered when the frontend asked
            // for a reply): go on, unless the frontend only talks nonsense.
            Err(e) => {
                errors += 1;
                if errors > 64 {
                    return format!("too many bad requests ({e})");
                }
            }
        }
    }
}
