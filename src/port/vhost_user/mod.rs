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
//! - this file: the data path. Each queue pair `k` is an incoming queue of
//!   the port: its owning worker's `sync_incoming(k)` drains the guest's
//!   transmit queue `2k + 1` into a ring of its own, so with several queue
//!   pairs (MQ) and several workers each pair is served by its own worker.
//!   Workers copy frames for the guest straight into its receive queues
//!   (`transmit`), worker `w` into pair `w mod pairs` (the next running one
//!   if that one is not), so a flow keeps its order. Frames a
//!   [`PortDriver`](super::driver::PortDriver) puts on the outgoing ring go
//!   to the first running receive queue; those the guest has no room for
//!   wait there.
//!
//! Notifications: while a queue's worker polls, the guest is asked not to
//! kick it (and DPDK frontends ask not to be called); when the worker goes
//! to sleep (`arm_incoming`) kicks are turned on and the queue's
//! `incoming_fd`, an epoll set of its kick eventfd, wakes it. The guest is
//! called only when it asked (EVENT_IDX or the ring flags).
//!
//! Guest memory stays mapped while any queue uses it, so a frontend that
//! dies mid-transfer costs only its port: its queues stop at the next
//! message or when its socket closes. A frontend that shrinks its memory
//! file under the switch (caught by the SIGBUS guard, see [`guest_mem`])
//! or makes a call eventfd block (see [`crate::sys::eventfd_notify_untrusted`])
//! is dropped: the data path stops using its queues at once and shuts its
//! socket, and the protocol thread then stops them as for a disconnect.

mod device;
mod guest_mem;
mod virtq;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::{BackendReqHandler, Error as VuError};

use super::Port;
use super::kernel::{IncomingFill, OneAtATime};
use super::socket::{BindError, accept_or_connect, bind_replacing_stale};
use crate::packet::{MemConfig, PortMem};
use crate::sys::{Epoll, EventFd};
use virtq::{Pushed, Touch, Virtq};

pub use device::device_features;

/// Chains whose buffers are prefetched at the start of a batch.
const PREFETCH: u16 = 32;

/// How many frames ahead of the copy the rest of a long frame's receive
/// buffer is prefetched (`Virtq::prefetch_fill_rest`): at 1518 bytes, 4
/// keeps about 100 lines in flight. (In-process A/B at 1518 B: +14-27%, the
/// most when the machine was slow; 2 to 4 ahead all gained, 8 did not. See
/// docs/lab-notes.md.)
const FILL_AHEAD: u16 = 4;

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
    /// Frontends dropped for what they did to shared resources: memory
    /// files shrunk under the switch, eventfds made to block.
    pub dropped: AtomicU64,
}

/// Why the data path dropped a frontend (`Shared::failed`).
const FAIL_NONE: u8 = 0;
const FAIL_MEMORY: u8 = 1;
const FAIL_CALL: u8 = 2;

/// A running virtqueue as the data path sees it.
pub(crate) struct Live {
    q: Virtq,
    kick: Option<EventFd>,
    call: Option<EventFd>,
    hdr_len: usize,
    merge: bool,
}

impl Live {
    /// Calls the guest; false if the frontend made the call eventfd block.
    fn call(&self) -> bool {
        self.call.as_ref().is_none_or(|c| c.notify_untrusted())
    }
}

/// One incoming queue of the port: queue pair `k`'s transmit virtqueue
/// (`2k + 1`), drained by its worker into a ring of its own.
struct InQueue {
    /// Its ring and buffers (queue 0's also hold the port's outgoing ring).
    mem: PortMem,
    fill: IncomingFill,
    /// Its worker sleeps: the guest must kick.
    armed: AtomicBool,
    /// The virtqueue's kick eventfd (token: virtqueue index), for queue 0
    /// also the receive queues' (frames wait in the outgoing ring for
    /// guest buffers), and `wake` (token: u64::MAX).
    epoll: Epoll,
    wake: EventFd,
}

impl InQueue {
    /// Its memory is named `name`; errors name the port's socket, `path`.
    fn new(name: &str, path: &Path, cfg: MemConfig) -> Result<InQueue, VhostUserError> {
        let os = |what| os_error(what, path);
        let mem = PortMem::new(name, cfg)?;
        let epoll = Epoll::new().map_err(os("epoll"))?;
        let wake = EventFd::new().map_err(os("eventfd"))?;
        epoll.add(wake.as_raw_fd(), u64::MAX).map_err(os("epoll"))?;
        Ok(InQueue {
            fill: IncomingFill::new(&mem),
            mem,
            armed: AtomicBool::new(false),
            epoll,
            wake,
        })
    }
}

/// State shared by the port (data path) and its protocol thread.
pub(crate) struct Shared {
    name: String,
    queue_pairs: u16,
    /// Virtqueue `2k` receives (switch -> guest), `2k + 1` transmits.
    queues: Vec<Mutex<Option<Live>>>,
    /// Incoming queue `k`: virtqueue `2k + 1`'s.
    inq: Vec<InQueue>,
    counters: Counters,
    stop: AtomicBool,
    /// The protocol connection, to shut down when the port goes away.
    conn: Mutex<Option<UnixStream>>,
    /// The data path dropped this connection's frontend (a `FAIL_*`).
    failed: AtomicU8,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The incoming queue whose worker virtqueue `i` wakes: its own pair's
    /// for a transmit queue, queue 0's for a receive queue.
    fn waker(&self, i: usize) -> &InQueue {
        &self.inq[if i % 2 == 1 { i / 2 } else { 0 }]
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) != FAIL_NONE
    }

    /// Drops the frontend (once per connection): the data path leaves its
    /// queues alone from now on, and the protocol thread, whose socket
    /// this shuts, stops them.
    fn fail(&self, why: u8) {
        if self
            .failed
            .compare_exchange(FAIL_NONE, why, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = lock(&self.conn).as_ref() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Checks a queue after the data path used it.
    fn check(&self, live: &Live, called: bool) {
        if !called {
            self.fail(FAIL_CALL);
        }
        if live.q.mem_faulted() {
            self.fail(FAIL_MEMORY);
        }
    }

    /// Before transmit queue `i` stops: gives the data path until
    /// `deadline` to take what the guest already queued, as data written to
    /// a socket before it closes is delivered.
    fn settle(&self, i: usize, deadline: Instant) {
        if i.is_multiple_of(2) {
            return;
        }
        while Instant::now() < deadline && !self.failed() {
            let waiting = lock(&self.queues[i])
                .as_mut()
                .is_some_and(|l| l.q.refresh() > 0);
            if !waiting {
                return;
            }
            self.waker(i).wake.notify();
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Puts `live` in place of queue `i`'s running state; returns the old.
    fn install(&self, i: usize, live: Option<Live>) -> Option<Live> {
        let w = self.waker(i);
        let mut g = lock(&self.queues[i]);
        if let Some(k) = g.as_ref().and_then(|l| l.kick.as_ref()) {
            let _ = w.epoll.delete(k.as_raw_fd());
        }
        if let Some(l) = &live {
            if let Some(k) = &l.kick {
                crate::sys::set_nonblocking(k.as_raw_fd());
                let _ = w.epoll.add(k.as_raw_fd(), i as u64);
            }
            if w.armed.load(Ordering::SeqCst) {
                l.q.enable_kicks();
            } else {
                l.q.disable_kicks();
            }
        }
        let old = std::mem::replace(&mut *g, live);
        drop(g);
        // Let a sleeping worker look at the new queue.
        w.wake.notify();
        old
    }
}

/// A vhost-user port.
pub struct VhostUserPort {
    name: String,
    path: PathBuf,
    mode: Mode,
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
        let inq = (0..queue_pairs)
            .map(|k| match k {
                0 => InQueue::new(name, path, cfg),
                k => InQueue::new(&format!("{name}-q{k}"), path, cfg),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listener = match mode {
            Mode::Server => Some(bind(path)?),
            Mode::Client => None,
        };
        let out_tail = inq[0].mem.outgoing().hdr.tail.load(Ordering::Acquire);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            queue_pairs,
            queues: (0..2 * queue_pairs).map(|_| Mutex::new(None)).collect(),
            inq,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            conn: Mutex::new(None),
            failed: AtomicU8::new(FAIL_NONE),
        });
        let port = Arc::new(VhostUserPort {
            name: name.to_owned(),
            path: path.to_owned(),
            mode,
            out_tail: OneAtATime::new(out_tail),
            shared: shared.clone(),
            out_stuck: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let p = path.to_owned();
        let t = std::thread::Builder::new()
            .name(format!("vhu-{name}"))
            .spawn(move || serve(&shared, &p, listener))
            .map_err(os_error("thread", path))?;
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
        let mem = self.mem();
        let ring = mem.outgoing();
        let n = ring.available(*tail);
        if n == 0 {
            return;
        }
        let frames = (0..n).map(|k| {
            let s = ring.slot(tail.wrapping_add(k));
            mem.buf(s.buf, usize::from(s.len)).unwrap_or(&[])
        });
        let (k, stuck) = self.to_guest(frames, 0, true);
        *tail = tail.wrapping_add(k as u32);
        ring.release(*tail);
        self.out_stuck.store(stuck, Ordering::SeqCst);
    }

    /// Copies `frames` into a running receive queue of the guest, in order
    /// (queue pair `sender mod pairs`, or the next running one), and tells
    /// the guest if it asked. Returns how many frames were
    /// taken (delivered, or dropped and counted: too big for the guest's
    /// buffers, a bad chain, no frontend) and whether the guest ran out of
    /// buffers before the end. With `wait`, running out asks the guest to
    /// kick when it adds buffers (the caller keeps the rest and retries);
    /// without, the rest is the caller's to drop.
    fn to_guest<'a>(
        &self,
        frames: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
        sender: usize,
        wait: bool,
    ) -> (usize, bool) {
        let c = &self.shared.counters;
        let mut guard = None;
        // A dropped frontend's queues are left alone.
        let pairs = if self.shared.failed() {
            0
        } else {
            usize::from(self.shared.queue_pairs)
        };
        let mut pair = 0;
        for k in (0..pairs).map(|k| (k + sender) % pairs) {
            let g = lock(&self.shared.queues[2 * k]);
            if g.is_some() {
                guard = Some(g);
                pair = k;
                break;
            }
        }
        // The same pair's transmit queue is often drained soon after (its
        // worker polls it next, or the guest answers what it gets): start
        // fetching the head of its available ring now, while the frames are
        // copied.
        if let Ok(tx) = self.shared.queues[2 * pair + 1].try_lock()
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
        live.q.prefetch_batch(prefetch_count(count), Touch::Fill);
        // The rest of long frames' buffers: the first FILL_AHEAD now, then
        // each frame's as the copy gets FILL_AHEAD frames before it.
        for (j, f) in frames.clone().take(usize::from(FILL_AHEAD)).enumerate() {
            live.q.prefetch_fill_rest(j as u16, hdr.len() + f.len());
        }
        let mut ahead = frames.clone().skip(usize::from(FILL_AHEAD)).peekable();
        let mut frames = frames.peekable();
        while let Some(frame) = frames.peek() {
            if k + usize::from(PREFETCH) < count {
                live.q.prefetch(PREFETCH, Touch::Fill);
            }
            if let Some(f) = ahead.peek() {
                live.q.prefetch_fill_rest(FILL_AHEAD, hdr.len() + f.len());
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
            ahead.next();
            k += 1;
        }
        let called = !live.q.publish(since) || live.call();
        self.shared.check(live, called);
        if live.q.just_broke() {
            c.broken.fetch_add(1, Ordering::Relaxed);
        }
        if wait && !stuck && self.out_stuck.load(Ordering::Relaxed) {
            live.q.disable_kicks();
        }
        (k, stuck)
    }

    /// Drains one transmit queue into its incoming queue's ring.
    fn drain_from_guest(&self, live: &mut Live, inq: &InQueue) {
        let c = &self.shared.counters;
        let mut left = live.q.refresh();
        if live.q.mem_faulted() {
            self.shared.fail(FAIL_MEMORY);
            return;
        }
        if live.q.just_broke() {
            c.broken.fetch_add(1, Ordering::Relaxed);
        }
        if left == 0 {
            return;
        }
        let since = live.q.used_idx;
        let skip = live.hdr_len;
        // As many chains as this batch takes, the first PREFETCH at once.
        let take = u32::from(left).min(inq.fill.room(&inq.mem)).min(256);
        let mut ahead = take.saturating_sub(u32::from(PREFETCH));
        live.q
            .prefetch_batch(prefetch_count(take as usize), Touch::Take(skip));
        inq.fill.fill(&inq.mem, 256, |buf| {
            if left == 0 {
                return None;
            }
            left -= 1;
            if ahead > 0 {
                ahead -= 1;
                live.q.prefetch(PREFETCH, Touch::Take(skip));
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
        let called = !live.q.publish(since) || live.call();
        self.shared.check(live, called);
    }
}

impl Port for VhostUserPort {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.shared.counters;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("bad_chains", v(&c.bad_chains)),
            ("rx_bad_len", v(&c.rx_bad_len)),
            ("tx_dropped", v(&c.tx_dropped)),
            ("broken", v(&c.broken)),
            ("connects", v(&c.connects)),
            ("dropped", v(&c.dropped)),
        ]
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Up while a frontend has a queue running (what Open vSwitch reports
    /// as `status:status=connected`).
    fn link_up(&self) -> bool {
        self.running()
    }

    fn kind(&self) -> &'static str {
        "vhost-user"
    }

    fn mem(&self) -> &PortMem {
        &self.shared.inq[0].mem
    }

    fn incoming_queues(&self) -> usize {
        self.shared.inq.len()
    }

    fn incoming_mem(&self, q: usize) -> &PortMem {
        &self.shared.inq[q].mem
    }

    fn sync_incoming(&self, q: usize) {
        if self.shared.failed() {
            return;
        }
        if let Ok(mut g) = self.shared.queues[2 * q + 1].try_lock()
            && let Some(live) = g.as_mut()
        {
            self.drain_from_guest(live, &self.shared.inq[q]);
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

    fn transmit(&self, frames: &[&[u8]], sender: usize) -> usize {
        self.to_guest(frames.iter().copied(), sender, false).0
    }

    fn incoming_fd(&self, q: usize) -> Option<RawFd> {
        Some(self.shared.inq[q].epoll.as_raw_fd())
    }

    fn arm_incoming(&self, q: usize, cur: u32) -> bool {
        let sh = &self.shared;
        let inq = &sh.inq[q];
        inq.armed.store(true, Ordering::SeqCst);
        let mut ready = inq.mem.incoming().available(cur) > 0;
        // Queue 0's worker also waits for receive buffers when frames are
        // stuck in the outgoing ring.
        let stuck = q == 0 && self.out_stuck.load(Ordering::SeqCst);
        for i in self.kicked_by(q, stuck) {
            if let Some(live) = lock(&sh.queues[i]).as_mut() {
                live.q.enable_kicks();
                // A fault is looked at by sync_incoming.
                ready |= live.q.refresh() > 0 || live.q.mem_faulted();
            }
        }
        if ready {
            self.disarm_incoming(q);
        }
        !ready
    }

    fn disarm_incoming(&self, q: usize) {
        let sh = &self.shared;
        let inq = &sh.inq[q];
        inq.armed.store(false, Ordering::SeqCst);
        for i in self.kicked_by(q, q == 0) {
            if let Ok(g) = sh.queues[i].try_lock()
                && let Some(live) = g.as_ref()
            {
                live.q.disable_kicks();
                if let Some(k) = &live.kick {
                    k.drain();
                }
            }
        }
        inq.wake.drain();
    }
}

impl VhostUserPort {
    /// The virtqueues whose kicks wake incoming queue `q`'s worker: its
    /// transmit queue, and with `rx` (queue 0 only) the receive queues.
    fn kicked_by(&self, q: usize, rx: bool) -> impl Iterator<Item = usize> {
        let pairs = usize::from(self.shared.queue_pairs);
        std::iter::once(2 * q + 1).chain((0..pairs).map(|k| 2 * k).filter(move |_| rx))
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

/// Maps an OS error while setting up the port on `path` into its error type.
fn os_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> VhostUserError + 'a {
    move |err| VhostUserError::Os {
        what,
        path: path.to_owned(),
        err,
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

/// The pause before taking a frontend after one was dropped: from the
/// first to the last as drops follow one another.
const PENALTY_MIN: Duration = Duration::from_millis(500);
const PENALTY_MAX: Duration = Duration::from_secs(30);

/// The protocol thread: one frontend connection after another until the
/// port goes away.
fn serve(shared: &Arc<Shared>, path: &Path, listener: Option<UnixListener>) {
    // After a frontend was dropped, the next is taken only after a pause
    // that doubles while they keep getting dropped: one that reconnects to
    // repeat what cost the worker a stall cannot make a habit of it.
    let mut penalty = Duration::ZERO;
    while !shared.stop.load(Ordering::SeqCst) {
        let until = Instant::now() + penalty;
        while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(RETRY);
        }
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
        shared.failed.store(FAIL_NONE, Ordering::SeqCst);
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
        let failed = shared.failed.load(Ordering::SeqCst);
        penalty = match failed {
            FAIL_NONE => Duration::ZERO,
            _ => (penalty * 2).clamp(PENALTY_MIN, PENALTY_MAX),
        };
        let why = match failed {
            FAIL_MEMORY => "dropped: it shrank its guest memory file under the switch".into(),
            FAIL_CALL => "dropped: its call eventfd blocked the switch".into(),
            _ => why,
        };
        if !shared.stop.load(Ordering::SeqCst) {
            tracing::info!("{}: frontend gone ({why})", shared.name);
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
