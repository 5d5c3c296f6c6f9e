//! The frontend's side of the vhost-user protocol, one connection after
//! another on the port's own thread: find a backend (accept on PATH, or
//! connect to it), set the device up with the `vhost` crate's `Frontend`,
//! hand the queues to the data path, watch the connection, and take the
//! queues back when it ends.
//!
//! Each connection gets fresh memory, so a backend that went away (or
//! misbehaved) can write nothing into the next one's rings. Setting up:
//! SET_OWNER, features (VIRTIO_F_VERSION_1 required; EVENT_IDX and
//! PROTOCOL_FEATURES when offered, with REPLY_ACK so that every refused
//! request is seen), SET_MEM_TABLE with one memfd region, and per queue
//! NUM, BASE, ADDR, CALL, KICK, then ENABLE. The receive buffers are all
//! offered before the backend starts. Replies are awaited at most
//! `REPLY_TIMEOUT`; a backend that refuses or stalls is dropped and tried
//! again after a pause.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vmm_sys_util::eventfd::EventFd as VuEventFd;

use super::vring::{Layout, Vring};
use super::{Queue, Shared, TOKEN_RX_CALL, TOKEN_TX_CALL, VirtioUserError, lock};
use crate::port::socket::accept_or_connect;
use crate::sys::Region;

/// Pause between attempts to connect to a backend that is not there.
const RETRY: Duration = Duration::from_millis(50);
/// Pause after a backend refused the setup or broke a queue.
const REFUSED: Duration = Duration::from_secs(1);
/// How long a reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the connection is looked at while it runs.
const WATCH: Duration = Duration::from_millis(100);
/// How long a port that goes away gives the backend to take the frames it
/// already queued.
const LINGER: Duration = Duration::from_millis(200);

/// Binds PATH, replacing a socket left behind by a process that is gone.
pub(super) fn bind(path: &Path) -> Result<UnixListener, VirtioUserError> {
    use crate::port::socket::{BindError, bind_replacing_stale};
    bind_replacing_stale(path).map_err(|e| match e {
        BindError::NotASocket => VirtioUserError::NotASocket(path.to_owned()),
        BindError::Os { what, err } => VirtioUserError::Os {
            what,
            path: path.to_owned(),
            err,
        },
    })
}

/// The protocol thread: one backend after another until the port goes away.
pub(super) fn serve(sh: &Arc<Shared>, path: &Path, listener: Option<UnixListener>) {
    let mut pause = None;
    while !sh.stop.load(Ordering::SeqCst) {
        if let Some(p) = pause.take() {
            sleep_unless_stopped(sh, p);
            continue;
        }
        let Some(stream) = accept_or_connect(listener.as_ref(), path, RETRY) else {
            if listener.is_none() {
                pause = Some(RETRY);
            }
            continue;
        };
        // A setup that panicked (it should not) costs only this connection.
        let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(sh, stream)))
            .unwrap_or_else(|_| Err("internal error".into()));
        *lock(&sh.conn) = None;
        let conn = match setup {
            Ok(c) => c,
            Err(why) => {
                if !sh.stop.load(Ordering::SeqCst) {
                    tracing::warn!("{}: backend refused: {why}", sh.name);
                }
                pause = Some(REFUSED);
                continue;
            }
        };
        sh.counters.connects.fetch_add(1, Ordering::Relaxed);
        let why = watch(sh, &conn);
        let lost = teardown(sh, conn);
        if !sh.stop.load(Ordering::SeqCst) {
            let lost = if lost > 0 {
                format!("; {lost} frames it had not taken are lost")
            } else {
                String::new()
            };
            tracing::info!("{}: backend gone ({why}){lost}", sh.name);
        }
        if sh.broken.swap(false, Ordering::SeqCst) | sh.blocked.swap(false, Ordering::SeqCst) {
            pause = Some(REFUSED);
        }
    }
}

fn sleep_unless_stopped(sh: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !sh.stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(RETRY.min(end.saturating_duration_since(Instant::now())));
    }
}

/// A running connection. Dropping it closes the socket.
struct Conn {
    _frontend: Frontend,
    /// The same socket, to see the backend go away.
    watch: UnixStream,
}

/// Sets the device up on `stream` and hands its queues to the data path.
fn setup(sh: &Shared, stream: UnixStream) -> Result<Conn, String> {
    let io = |what: &'static str| move |e: io::Error| format!("{what}: {e}");
    stream.set_nonblocking(false).map_err(io("socket"))?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(io("socket"))?;
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .map_err(io("socket"))?;
    let watch = stream.try_clone().map_err(io("socket"))?;
    *lock(&sh.conn) = stream.try_clone().ok();
    if sh.stop.load(Ordering::SeqCst) {
        return Err("port closed".into());
    }
    let v = |what: &'static str| move |e: vhost::Error| format!("{what}: {e}");
    let mut fe = Frontend::from_stream(stream, 2);
    fe.set_owner().map_err(v("SET_OWNER"))?;
    let offered = fe.get_features().map_err(v("GET_FEATURES"))?;
    if offered & (1 << VIRTIO_F_VERSION_1) == 0 {
        return Err("the backend does not offer VIRTIO_F_VERSION_1".into());
    }
    let protocol_bit = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    let features =
        (1 << VIRTIO_F_VERSION_1) | (offered & ((1 << VIRTIO_RING_F_EVENT_IDX) | protocol_bit));
    let protocol = features & protocol_bit != 0;
    if protocol {
        let pf = fe
            .get_protocol_features()
            .map_err(v("GET_PROTOCOL_FEATURES"))?;
        let ours = pf & VhostUserProtocolFeatures::REPLY_ACK;
        fe.set_protocol_features(ours)
            .map_err(v("SET_PROTOCOL_FEATURES"))?;
        if !ours.is_empty() {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
    }
    fe.set_features(features).map_err(v("SET_FEATURES"))?;
    let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;

    // Fresh memory: the receive queue, then the transmit queue.
    let (size, buf_len) = (sh.queue_size(), sh.buf_len());
    let lay_rx = Layout::new(0, size, buf_len);
    let lay_tx = Layout::new(lay_rx.end, size, buf_len);
    let mem = Region::new(&format!("{}-guest", sh.name), lay_tx.end).map_err(io("memfd"))?;
    let mem = Arc::new(mem);
    let bad = || "queue layout".to_string();
    let mut rx = Vring::new(mem.clone(), lay_rx, size, buf_len, event_idx, true).ok_or_else(bad)?;
    let tx = Vring::new(mem.clone(), lay_tx, size, buf_len, event_idx, false).ok_or_else(bad)?;
    while let Some(id) = rx.take_free() {
        rx.offer(id, buf_len);
    }
    rx.publish();
    let addr = mem.as_ptr() as u64;
    let region = VhostUserMemoryRegionInfo {
        guest_phys_addr: addr,
        memory_size: mem.len() as u64,
        userspace_addr: addr,
        mmap_offset: 0,
        mmap_handle: mem.fd().as_raw_fd(),
    };
    fe.set_mem_table(&[region]).map_err(v("SET_MEM_TABLE"))?;
    let efd = || VuEventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(io("eventfd"));
    let mut queues = Vec::new();
    for (i, ring) in [rx, tx].into_iter().enumerate() {
        let (desc, used, avail) = ring.addrs();
        fe.set_vring_num(i, size).map_err(v("SET_VRING_NUM"))?;
        fe.set_vring_base(i, 0).map_err(v("SET_VRING_BASE"))?;
        let cfg = VringConfigData {
            queue_max_size: size,
            queue_size: size,
            flags: 0,
            desc_table_addr: desc,
            used_ring_addr: used,
            avail_ring_addr: avail,
            log_addr: None,
        };
        fe.set_vring_addr(i, &cfg).map_err(v("SET_VRING_ADDR"))?;
        let (kick, call) = (efd()?, efd()?);
        fe.set_vring_call(i, &call).map_err(v("SET_VRING_CALL"))?;
        fe.set_vring_kick(i, &kick).map_err(v("SET_VRING_KICK"))?;
        queues.push(Queue { ring, kick, call });
    }
    if protocol {
        for i in 0..2 {
            fe.set_vring_enable(i, true)
                .map_err(v("SET_VRING_ENABLE"))?;
        }
    }
    let (Some(txq), Some(rxq)) = (queues.pop(), queues.pop()) else {
        return Err("queues".into());
    };
    // The backend may have started to sleep before the buffers were there.
    let _ = rxq.kick();
    install(sh, rxq, txq);
    Ok(Conn {
        _frontend: fe,
        watch,
    })
}

/// Gives the queues to the data path.
fn install(sh: &Shared, rx: Queue, tx: Queue) {
    let _ = sh.epoll.add(rx.call.as_raw_fd(), TOKEN_RX_CALL);
    let _ = sh.epoll.add(tx.call.as_raw_fd(), TOKEN_TX_CALL);
    sh.broken.store(false, Ordering::SeqCst);
    sh.blocked.store(false, Ordering::SeqCst);
    *lock(&sh.rx) = Some(rx);
    sh.tx.lock().q = Some(tx);
    sh.connected.store(true, Ordering::SeqCst);
    // Let a sleeping worker look at the new queues (and frames waiting to
    // be sent).
    sh.tx_stuck.store(true, Ordering::SeqCst);
    sh.wake.notify();
}

/// Waits until the connection ends; returns why.
fn watch(sh: &Shared, conn: &Conn) -> String {
    let fd = conn.watch.as_raw_fd();
    let mut buf = [0u8; 256];
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            linger(sh);
            return "port closed".into();
        }
        if sh.broken.load(Ordering::SeqCst) {
            return "it broke a queue: impossible used index".into();
        }
        if sh.blocked.load(Ordering::SeqCst) {
            return "dropped: its kick eventfd blocked the switch".into();
        }
        let mut p = [crate::sys::PollFd {
            fd,
            events: crate::sys::POLL_IN,
            revents: 0,
        }];
        if crate::sys::poll(&mut p, Some(WATCH)) == 0 {
            continue;
        }
        // The backend sends nothing on its own: readable means closed (or
        // chatter, which is read and ignored).
        match (&conn.watch).read(&mut buf) {
            Ok(0) => return "connection closed".into(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return e.to_string(),
        }
    }
}

/// The port is going away: sends what waits in the outgoing ring and gives
/// the backend a moment to take what it was given.
fn linger(sh: &Shared) {
    let end = Instant::now() + LINGER;
    while Instant::now() < end {
        sh.flush_tx();
        let side = sh.tx.lock();
        let done = side
            .q
            .as_ref()
            .is_none_or(|q| q.ring.in_flight() == 0 || q.ring.is_broken());
        let waiting = sh.mem.outgoing().available(side.tail) > 0;
        drop(side);
        if done && !waiting {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes the queues back from the data path, first taking what the backend
/// had delivered; returns how many frames it was given and never took.
fn teardown(sh: &Shared, conn: Conn) -> u64 {
    sh.connected.store(false, Ordering::SeqCst);
    let rx = {
        let mut g = lock(&sh.rx);
        if let Some(q) = g.as_mut() {
            sh.drain_rx(q);
        }
        g.take()
    };
    let tx = {
        let mut side = sh.tx.lock();
        if let Some(q) = side.q.as_mut() {
            q.ring.refresh();
            while q.ring.pop().is_some() {}
        }
        side.q.take()
    };
    let lost = tx.as_ref().map_or(0, |q| u64::from(q.ring.in_flight()));
    sh.counters.tx_lost.fetch_add(lost, Ordering::Relaxed);
    for q in rx.iter().chain(tx.iter()) {
        let _ = sh.epoll.delete(q.call.as_raw_fd());
    }
    drop(conn);
    sh.wake.notify();
    lost
}
