//! `virtio-user:PATH[,server|client]`: the port as the vhost-user FRONTEND
//! (the driver side, where a VM's virtio-net driver sits) of a virtio-net
//! device whose backend is a switch: Open vSwitch's `dpdkvhostuserclient`,
//! `mswitch`'s own `vhost-user:` ports, or any vhost-user net backend. With
//! `pkt-gen -i virtio-user:...` it is a traffic source or sink that plugs
//! into a switch the way a VM does (and `-R` makes its rate fixed).
//!
//! Three parts:
//! - [`vring`]: the driver's side of a split virtqueue, validating every
//!   value the backend writes.
//! - [`session`]: the protocol, on a thread of its own: it listens on PATH
//!   (server) or connects to it (client, connecting again whenever the
//!   backend goes away), negotiates with the rust-vmm `vhost` crate's
//!   `Frontend`, shares fresh memory (one memfd: rings and buffers) with
//!   each backend, and watches the connection.
//! - this file: the data path. The owning worker's `sync_incoming` takes
//!   frames from the receive queue (0) into the incoming ring and gives the
//!   buffers back; `outgoing_published` copies frames from the outgoing
//!   ring into the transmit queue (1). Frames the transmit queue has no room
//!   for, or that come while no backend is connected, wait in the outgoing
//!   ring (the switch drops what does not fit and counts it).
//!
//! Notifications: while the port is polled, the backend is asked not to
//! call (ring flags, or a stale event index); when its worker goes to sleep
//! (`arm_incoming`) calls are asked for and the port's `incoming_fd`, an
//! epoll set of the call eventfds, wakes it. The backend is kicked only when
//! it asked (its used-ring flags or event index).

mod session;
mod vring;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd as VuEventFd;

use super::Port;
use super::kernel::{IncomingFill, OneAtATime};
use super::vhost_user::Mode;
use crate::packet::{MemConfig, PortMem};
use crate::sys::{Epoll, EventFd};
use vring::{NET_HDR, Vring};

/// Frames moved per queue per call, at most.
const BATCH: usize = 256;

/// Epoll tokens of the port's `incoming_fd`.
const TOKEN_RX_CALL: u64 = 0;
const TOKEN_TX_CALL: u64 = 1;
const TOKEN_WAKE: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum VirtioUserError {
    #[error("'{0}' exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("no directory for socket '{0}'")]
    NoDirectory(PathBuf),
    #[error("{what} '{path}': {err}")]
    Os {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("port memory: {0}")]
    Mem(#[from] crate::packet::MemError),
}

/// What the backend did wrong, and what was lost to it.
#[derive(Default, Debug)]
pub struct Counters {
    /// Used entries naming no descriptor the backend held (skipped).
    pub bad_used: AtomicU64,
    /// Frames from the backend shorter than an Ethernet header (after the
    /// virtio-net header) or longer than their buffer.
    pub rx_bad_len: AtomicU64,
    /// Queues broken by an impossible used index, or kick eventfds the
    /// backend made to block (the connection is then dropped and made
    /// again).
    pub broken: AtomicU64,
    /// Frames given to a backend that went away before it took them.
    pub tx_lost: AtomicU64,
    /// Connections that completed the handshake.
    pub connects: AtomicU64,
}

/// A running virtqueue, as the data path sees it.
struct Queue {
    ring: Vring,
    kick: VuEventFd,
    call: VuEventFd,
}

impl Queue {
    /// Kicks the backend; false if it made the kick eventfd block (then
    /// the write was interrupted: see `sys::eventfd_notify_untrusted`). A
    /// full counter already means "kicked".
    fn kick(&self) -> bool {
        crate::sys::eventfd_notify_untrusted(self.kick.as_raw_fd())
    }

    /// Clears the call eventfd. The backend shares its file and may have
    /// made it blocking: `sys::eventfd_drain` never waits.
    fn drain_call(&self) {
        crate::sys::eventfd_drain(self.call.as_raw_fd());
    }
}

/// The transmit side: our consumer index on the outgoing ring and the
/// transmit queue, under one lock.
struct TxSide {
    tail: u32,
    q: Option<Queue>,
}

/// State shared by the port (data path) and its protocol thread.
pub(crate) struct Shared {
    name: String,
    mem: PortMem,
    fill: IncomingFill,
    /// The receive queue. Filling the incoming ring happens only under
    /// this lock (the owning worker, or the protocol thread's last look).
    rx: Mutex<Option<Queue>>,
    /// Any worker may flush; one at a time.
    tx: OneAtATime<TxSide>,
    /// Frames wait in the outgoing ring for transmit descriptors.
    tx_stuck: AtomicBool,
    /// A queue broke: the protocol thread drops the connection.
    broken: AtomicBool,
    /// The backend made a kick eventfd block: the data path kicks no more,
    /// and the protocol thread drops the connection.
    blocked: AtomicBool,
    /// A backend has both queues running.
    connected: AtomicBool,
    /// Call eventfds (tokens TOKEN_*_CALL) and `wake` (TOKEN_WAKE).
    epoll: Epoll,
    wake: EventFd,
    counters: Counters,
    stop: AtomicBool,
    /// The connection while it is being set up, to shut down if the port
    /// goes away meanwhile.
    conn: Mutex<Option<UnixStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Buffer bytes per descriptor: the virtio-net header and a port buffer.
    fn buf_len(&self) -> usize {
        (NET_HDR + self.mem.buf_size() as usize).next_multiple_of(64)
    }

    /// Queue size: the port's ring size (a power of two up to 32768).
    fn queue_size(&self) -> u16 {
        self.mem.incoming().size().min(vring::MAX_SIZE) as u16
    }

    fn kick(&self, q: &Queue) {
        if !self.blocked.load(Ordering::Relaxed)
            && !q.kick()
            && !self.blocked.swap(true, Ordering::SeqCst)
        {
            self.counters.broken.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn note_broken(&self, q: &Vring) {
        if q.is_broken() && !self.broken.swap(true, Ordering::SeqCst) {
            self.counters.broken.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes what the backend delivered on the receive queue into the
    /// incoming ring (as much as it has room for), gives the buffers back,
    /// and kicks the backend if it asked.
    fn drain_rx(&self, q: &mut Queue) {
        let waiting = q.ring.refresh();
        self.note_broken(&q.ring);
        if waiting == 0 {
            return;
        }
        let c = &self.counters;
        let buf_len = q.ring.buf_len();
        let ring = &mut q.ring;
        self.fill.fill(&self.mem, BATCH, |buf| {
            let (id, len) = match ring.pop()? {
                Ok(e) => e,
                Err(_) => {
                    c.bad_used.fetch_add(1, Ordering::Relaxed);
                    return Some(0);
                }
            };
            let got = ring.read_frame(id, len, buf);
            ring.offer(id, buf_len);
            match got {
                Some(n) if n >= 14 => Some(n),
                _ => {
                    c.rx_bad_len.fetch_add(1, Ordering::Relaxed);
                    Some(0)
                }
            }
        });
        if q.ring.publish() {
            self.kick(q);
        }
    }

    /// Moves frames from the outgoing ring into the transmit queue. Any
    /// worker may call it; one moves at a time, the others leave a note.
    fn flush_tx(&self) {
        self.tx.run(|side| self.drain_tx(side));
    }

    fn drain_tx(&self, side: &mut TxSide) {
        let ring = self.mem.outgoing();
        let Some(q) = side.q.as_mut() else {
            self.tx_stuck
                .store(ring.available(side.tail) > 0, Ordering::SeqCst);
            return;
        };
        // Descriptors the backend is done with are ours again.
        q.ring.refresh();
        self.note_broken(&q.ring);
        while let Some(e) = q.ring.pop() {
            match e {
                Ok((id, _)) => q.ring.give_back(id),
                Err(_) => {
                    self.counters.bad_used.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut left = ring.available(side.tail);
        while left > 0 {
            let mut k = 0;
            while k < left.min(BATCH as u32) {
                let Some(id) = q.ring.take_free() else {
                    break;
                };
                let s = ring.slot(side.tail.wrapping_add(k));
                let frame = self.mem.buf(s.buf, usize::from(s.len)).unwrap_or(&[]);
                // Frames always fit (buffers are a port buffer plus the
                // header); an empty slot is skipped.
                match q.ring.write_frame(id, frame) {
                    Some(len) if !frame.is_empty() => {
                        q.ring.offer(id, len);
                    }
                    _ => q.ring.give_back(id),
                }
                k += 1;
            }
            if k == 0 {
                break;
            }
            side.tail = side.tail.wrapping_add(k);
            ring.release(side.tail);
            left -= k;
            if q.ring.publish() {
                self.kick(q);
            }
        }
        self.tx_stuck.store(left > 0, Ordering::SeqCst);
    }
}

/// A virtio-user port.
pub struct VirtioUserPort {
    name: String,
    path: PathBuf,
    mode: Mode,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl VirtioUserPort {
    /// Opens the port: in server mode binds PATH now (replacing a stale
    /// socket), in client mode starts connecting in the background. The
    /// queues have as many descriptors as the port's rings have slots.
    pub fn open(
        name: &str,
        path: &Path,
        mode: Mode,
        cfg: MemConfig,
    ) -> Result<Arc<VirtioUserPort>, VirtioUserError> {
        let os = |what: &'static str| {
            move |err: io::Error| VirtioUserError::Os {
                what,
                path: path.to_owned(),
                err,
            }
        };
        let listener = match mode {
            Mode::Server => Some(session::bind(path)?),
            Mode::Client => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if !dir.is_dir() {
                    return Err(VirtioUserError::NoDirectory(path.to_owned()));
                }
                None
            }
        };
        let mem = PortMem::new(name, cfg)?;
        let epoll = Epoll::new().map_err(os("epoll"))?;
        let wake = EventFd::new().map_err(os("eventfd"))?;
        epoll
            .add(wake.as_raw_fd(), TOKEN_WAKE)
            .map_err(os("epoll"))?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            fill: IncomingFill::new(&mem),
            tx: OneAtATime::new(TxSide {
                tail: mem.outgoing().hdr.tail.load(Ordering::Acquire),
                q: None,
            }),
            mem,
            rx: Mutex::new(None),
            tx_stuck: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            epoll,
            wake,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            conn: Mutex::new(None),
        });
        let sh = shared.clone();
        let p = path.to_owned();
        let t = std::thread::Builder::new()
            .name(format!("vio-{name}"))
            .spawn(move || session::serve(&sh, &p, listener))
            .map_err(os("thread"))?;
        Ok(Arc::new(VirtioUserPort {
            name: name.to_owned(),
            path: path.to_owned(),
            mode,
            shared,
            thread: Mutex::new(Some(t)),
        }))
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

    /// Whether a backend is connected with both queues running.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }
}

impl Port for VirtioUserPort {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counters();
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("bad_used", v(&c.bad_used)),
            ("rx_bad_len", v(&c.rx_bad_len)),
            ("broken", v(&c.broken)),
            ("tx_lost", v(&c.tx_lost)),
            ("connects", v(&c.connects)),
        ]
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "virtio-user"
    }

    fn mem(&self) -> &PortMem {
        &self.shared.mem
    }

    fn sync_incoming(&self, _q: usize) {
        let sh = &self.shared;
        if let Ok(mut g) = sh.rx.try_lock()
            && let Some(q) = g.as_mut()
        {
            sh.drain_rx(q);
        }
        if sh.tx_stuck.load(Ordering::Relaxed) {
            sh.flush_tx();
        }
    }

    fn outgoing_published(&self) {
        self.shared.flush_tx();
    }

    fn link_up(&self) -> bool {
        self.connected()
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        Some(self.shared.epoll.as_raw_fd())
    }

    fn arm_incoming(&self, _q: usize, cur: u32) -> bool {
        let sh = &self.shared;
        if sh.mem.incoming().available(cur) > 0 {
            return false;
        }
        // A new connection rings `wake` after installing its queues, so
        // once it is cleared the looks below see them.
        sh.wake.drain();
        if sh.tx_stuck.load(Ordering::SeqCst) {
            sh.flush_tx();
        }
        // Calls on, then a last look: entries used before the backend saw
        // the request are not called for.
        let mut ready = match sh.rx.try_lock() {
            Ok(g) => g.as_ref().is_some_and(|q| {
                q.ring.enable_calls();
                q.drain_call();
                q.ring.used_waiting()
            }),
            Err(_) => true,
        };
        if sh.tx_stuck.load(Ordering::SeqCst) {
            ready |= match sh.tx.try_lock() {
                Some(side) => side.q.as_ref().is_some_and(|q| {
                    q.ring.enable_calls();
                    q.drain_call();
                    q.ring.used_waiting()
                }),
                None => true,
            };
        }
        if ready {
            self.disarm_incoming(0);
        }
        !ready
    }

    fn disarm_incoming(&self, _q: usize) {
        let sh = &self.shared;
        if let Ok(g) = sh.rx.try_lock()
            && let Some(q) = g.as_ref()
        {
            q.ring.disable_calls();
            q.drain_call();
        }
        if let Some(side) = sh.tx.try_lock()
            && let Some(q) = side.q.as_ref()
        {
            q.ring.disable_calls();
            q.drain_call();
        }
        sh.wake.drain();
    }
}

impl Drop for VirtioUserPort {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // First the name, so that a backend that reconnects at once finds
        // nothing instead of a listener about to close.
        if self.mode == Mode::Server {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(c) = lock(&self.shared.conn).as_ref() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}
