//! Ports: the packet I/O layer.
//!
//! Every port kind (in-process memory, shared-memory virtual ports, AF_XDP,
//! AF_PACKET, TAP, vhost-user and virtio-user) implements one trait, [`Port`],
//! the way every netmap adapter fills one table of callbacks. A port owns a
//! [`PortMem`]: an *incoming* ring (outside world -> switch) and an *outgoing*
//! ring (switch -> outside world) over its own buffer pool. A port knows nothing
//! of other ports or of the switch; backends that talk to the OS move packets
//! between their device and these rings in the two sync callbacks.

pub mod afpacket;
pub mod afxdp;
pub mod driver;
pub mod iflock;
pub mod kernel;
pub mod mem;
pub mod patch;
pub mod socket;
pub mod spec;
pub mod tap;
pub mod tunnel;
pub mod vhost_user;
pub mod virtio_user;
mod xdp_prog;

use std::fmt;
use std::os::fd::RawFd;

use crate::packet::{PacketRef, PortMem, TunMeta, TunMetaSlots};

pub use mem::{MemClient, MemPort, Woken};
pub use spec::{PortKind, PortSpec};

/// What a port that receives directly hands its frames to
/// ([`Port::receive_direct`]): a run of frames, their tunnel metadata, and
/// each frame's Geneve options (one per frame, or empty for none).
pub type DirectSink<'a> = dyn FnMut(&[PacketRef], TunMeta, &[&[u8]]) + 'a;

/// Opens `af_xdp:IFNAME`, falling back to AF_PACKET (with a note saying
/// why) when the kernel or the interface cannot do AF_XDP. Errors that
/// AF_PACKET would hit too (no such interface, not permitted, MTU too large,
/// interface busy) are reported as they are.
pub(crate) fn afxdp_open(
    ifname: &str,
    queue: u32,
    cfg: crate::packet::MemConfig,
) -> Result<(std::sync::Arc<dyn Port>, Option<String>), kernel::KernelPortError> {
    use afxdp::AfXdpError as E;
    let why = match afxdp::AfXdpPort::open(ifname, ifname, queue, cfg) {
        Ok(p) => return Ok((p, None)),
        Err(E::NoSuchInterface(n)) => return Err(kernel::KernelPortError::NoSuchInterface(n)),
        Err(E::NotPermitted(n)) => return Err(kernel::KernelPortError::NotPermitted(n)),
        Err(e @ (E::MtuTooLarge { .. } | E::Busy { .. } | E::NoSuchQueue { .. } | E::Mem(_))) => {
            return Err(kernel::KernelPortError::Other(e.to_string()));
        }
        Err(e) => e.to_string(),
    };
    let p = afpacket::AfPacketPort::open(ifname, ifname, cfg)?;
    Ok((
        p,
        Some(format!("af_xdp:{ifname}: {why}; using af_packet instead")),
    ))
}

/// The state of the device behind a port ([`Port::link_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Carries frames.
    Up,
    /// Exists but carries nothing now: an interface set down, a vhost-user
    /// port without a running frontend.
    Down,
    /// The interface vanished; the port waits, costing nothing, for one of
    /// its name to come back.
    Gone,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Gone => "gone",
        }
    }
}

/// Largest port number plus one: port numbers run from 1 to `MAX_PORTS - 1`.
pub const MAX_PORTS: usize = 4096;

/// A port number on one switch (1-based, as in OpenFlow).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PortId(pub u16);

impl PortId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// A valid port number, or `None` for 0 and numbers past `MAX_PORTS - 1`.
    pub fn new(n: u32) -> Option<PortId> {
        (1..MAX_PORTS as u32)
            .contains(&n)
            .then_some(PortId(n as u16))
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The interface every port kind implements. Callbacks document the context
/// they run in; none of them may block.
pub trait Port: Send + Sync {
    /// The port's name, unique on its switch.
    fn name(&self) -> &str;

    /// The backend kind ("mem", "vport", ...), for listings.
    fn kind(&self) -> &'static str;

    /// The port's rings and buffers.
    fn mem(&self) -> &PortMem;

    /// How many incoming queues the port has (default 1). Each is a ring
    /// of its own that the switch polls on its own, so a device with several
    /// receive queues (vhost-user with several queue pairs) can have each
    /// served by a different worker. Queue 0's ring is `mem().incoming()`;
    /// the number must not change while the port is attached.
    fn incoming_queues(&self) -> usize {
        1
    }

    /// The rings and buffers of incoming queue `q` (`q < incoming_queues()`):
    /// the switch reads its `incoming()` ring and buffers.
    fn incoming_mem(&self, _q: usize) -> &PortMem {
        self.mem()
    }

    /// Called by the owning worker of incoming queue `q` before it reads that
    /// queue's ring (netmap's rxsync). Backends that pull packets from a
    /// device fill the ring here. Only one worker calls it for a queue at a
    /// time; no lock is held.
    fn sync_incoming(&self, _q: usize) {}

    /// Whether the port also hands the switch frames that sit in memory
    /// of its own, with [`Port::receive_direct`], besides those on its
    /// incoming rings. Must answer the same for as long as the port is
    /// attached.
    fn receives_directly(&self) -> bool {
        false
    }

    /// For ports that [receive directly](Port::receives_directly): hands
    /// `sink` the frames waiting for incoming queue `q`, in runs that share
    /// one tunnel metadata ([`TunMeta::NONE`] for none), with each frame's
    /// Geneve options (one slice per frame, or none at all), and returns how
    /// many it handed. Each run's frames are the switch's, to read and
    /// rewrite in place, until `sink` returns; then they are the port's
    /// again (the switch copies what it keeps). Called by the queue's
    /// owning worker, in place of [`Port::sync_incoming`], right after it
    /// read the queue's ring, so what the port queued on the ring earlier
    /// goes first; no lock is held.
    fn receive_direct(&self, _q: usize, _sink: &mut DirectSink<'_>) -> usize {
        0
    }

    /// Called after the switch published packets on the outgoing ring
    /// (netmap's txsync and notify). Backends push packets to their device or
    /// wake their consumer here. Several workers may call it at once; no lock
    /// is held.
    fn outgoing_published(&self) {}

    /// Whether the port takes frames straight into its device with
    /// [`Port::transmit`] instead of through its outgoing ring.
    fn transmits_directly(&self) -> bool {
        false
    }

    /// For ports that [transmit directly](Port::transmits_directly)
    /// (vhost-user: the guest's receive buffers): copies `frames`, in order,
    /// into the device and returns how many it took (delivered, or dropped
    /// and counted by the port itself); the switch counts the rest as
    /// dropped (`dest_full`). Still a copy, so the device never sees
    /// another port's memory. Several workers may call it at once; no lock is
    /// held; it must not block. `sender` numbers the calling thread (a
    /// worker's index, or one past the workers for the control path): a
    /// device with several queues uses it to give each sender a queue of
    /// its own, as a NIC has a transmit queue per core, so the frames of
    /// one flow keep their order.
    fn transmit(&self, _frames: &[&[u8]], _sender: usize) -> usize {
        0
    }

    /// The tunnel metadata of incoming queue `q`'s slots, for a port whose
    /// frames come out of tunnels (the switch hands it to the module with
    /// the batch). Must answer the same for as long as the port is attached.
    fn incoming_tunnel_meta(&self, _q: usize) -> Option<&TunMetaSlots> {
        None
    }

    /// Whether the port sends each frame with the tunnel metadata the
    /// module chose for it (a `key=flow`/`remote_ip=flow` tunnel port, a
    /// Geneve port with `tun_metadata` options): such a port [transmits
    /// directly](Port::transmits_directly) and gets frames through
    /// [`Port::transmit_tunnel`] when the module gave their batch metadata,
    /// else through [`Port::transmit`] (frames with none). Must answer the
    /// same for as long as the port is attached.
    fn wants_tunnel_meta(&self) -> bool {
        false
    }

    /// [`Port::transmit`] with each frame's tunnel metadata (`meta[i]` is
    /// `frames[i]`'s), for ports that [want it](Port::wants_tunnel_meta).
    fn transmit_tunnel(&self, frames: &[&[u8]], _meta: &[TunMeta], sender: usize) -> usize {
        self.transmit(frames, sender)
    }

    /// The backend's own counters (what its device or peer did wrong, and
    /// what it lost), by name, for `ctl stats`: the switch's counters cover
    /// what crossed the rings.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Whether the port can carry frames now: false while a virtio-user
    /// port has no backend, or a vhost-user port no running frontend. Generators wait for it before they start.
    fn link_up(&self) -> bool {
        true
    }

    /// The state of the device behind the port, for listings (`ctl list`,
    /// `ctl stats`): a kernel port's interface may be down or gone. May
    /// cost a system call; never called on the data path.
    fn link_state(&self) -> LinkState {
        if self.link_up() {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    /// Called by the owning worker when incoming queue `q`'s descriptor
    /// reported an error or a hang-up (EPOLLERR, EPOLLHUP) rather than
    /// frames, with the descriptor out of the worker's epoll set: the
    /// backend finds out what happened (an interface that went down or
    /// vanished) and quiets the descriptor, so that it does not wake the
    /// worker again for the same thing. On a busy-polling switch, whose
    /// queues never wait in epoll, it is called about once a second to look
    /// for such an error, so it must be cheap when there is none. No lock
    /// is held.
    fn incoming_error(&self, _q: usize) {}

    /// Whether the device needs another look (it is down or gone): a cheap
    /// check the owning worker of queue 0 makes about once a second (an
    /// atomic load; a port whose device never signals, as an AF_XDP
    /// socket whose interface vanished, looks at the interface: a few
    /// system calls), and then calls [`Port::recheck`].
    fn needs_recheck(&self) -> bool {
        false
    }

    /// Looks at the device again and brings the port back when the device
    /// is (an interface of the port's name exists again: rebind to it).
    /// Called by the owning worker of queue 0, with the queue out of its
    /// epoll set: it may change [`Port::incoming_fd`]. No lock is held.
    fn recheck(&self) {}

    /// Whether looking at an incoming queue costs a system call (a TAP's
    /// `read`): such a queue is retired to epoll when idle even on a
    /// busy-polling switch, where an idle TAP polled every round would cost
    /// a syscall a round to the ports that carry traffic.
    fn poll_costs_syscall(&self) -> bool {
        false
    }

    /// A descriptor that becomes readable when packets arrive on incoming
    /// queue `q` while the switch sleeps (see [`Port::arm_incoming`]). `None`
    /// means the queue cannot signal and is polled whenever its worker runs.
    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        None
    }

    /// Asks to be signalled on `incoming_fd(q)` when packets arrive on queue
    /// `q` beyond the switch's index `cur`. Returns false if packets already
    /// wait (do not sleep).
    fn arm_incoming(&self, q: usize, cur: u32) -> bool {
        self.incoming_mem(q).incoming().arm_wakeup(cur)
    }

    /// Undoes `arm_incoming` once the worker polls queue `q` again, and
    /// clears any pending signal.
    fn disarm_incoming(&self, q: usize) {
        self.incoming_mem(q).incoming().disarm_wakeup();
    }
}
