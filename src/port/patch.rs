//! Patch ports: a link between two switches of one process (Open vSwitch's
//! `patch` interfaces, `options:peer`), with no trip through the kernel.
//!
//! A patch port is a memory port whose incoming ring is fed by its peer:
//! the peer [transmits directly](Port::transmits_directly), copying each
//! frame once from the sending switch's buffer into a free slot of this
//! port's incoming ring, and rings this port's doorbell if its worker
//! sleeps. The receiving switch then reads the ring like any other port's.
//! So a frame crossing a patch costs one copy more than a frame between two
//! ports of one switch, and the two switches' workers never wait for each
//! other: a full ring drops what does not fit (the sender counts it as
//! `dest_full`), and nothing is queued anywhere else.
//!
//! Pairs are made by name through a [`PatchPanel`]: a port finds its peer
//! when both exist and each names the other. Each holds only a weak
//! reference to the other, so detaching (and dropping) one side unplugs the
//! pair: the other side's transmits drop and count (`no_peer`) until a new
//! peer of that name is opened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::packet::{MemConfig, MemError, PortMem};

use super::{MemClient, MemPort, Port};

/// Slots of a patch port's incoming ring (its outgoing ring is unused).
const RING: u32 = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// The words Open vSwitch writes to the Interface's `error` column.
    #[error("{0}: patch type requires valid 'peer' argument")]
    NoPeerOption(String),
    #[error("{0}: patch peer must not be self")]
    SelfPeer(String),
    #[error("a patch port named '{0}' already exists")]
    NameTaken(String),
    #[error("patch port memory: {0}")]
    Mem(String),
}

impl From<MemError> for PatchError {
    fn from(e: MemError) -> Self {
        PatchError::Mem(e.to_string())
    }
}

pub struct PatchPort {
    peer_name: String,
    /// This port's rings: the switch reads the incoming one.
    mem: Arc<MemPort>,
    /// The producing end of this port's incoming ring, used by the peer's
    /// senders (several workers of the peer switch may send at once).
    feed: Mutex<MemClient>,
    /// The other end, while it exists.
    peer: Mutex<Weak<PatchPort>>,
    /// Frames sent while the other end was missing.
    no_peer: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PatchPort {
    /// The name of the port this one wants as its peer.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// Whether the other end exists and names this port.
    pub fn has_peer(&self) -> bool {
        lock(&self.peer).strong_count() > 0
    }

    fn plug(&self, other: &Arc<PatchPort>) {
        *lock(&self.peer) = Arc::downgrade(other);
    }
}

impl Port for PatchPort {
    fn name(&self) -> &str {
        self.mem.name()
    }

    fn kind(&self) -> &'static str {
        "patch"
    }

    fn mem(&self) -> &PortMem {
        self.mem.mem()
    }

    fn transmits_directly(&self) -> bool {
        true
    }

    /// Copies `frames` into the peer's incoming ring; what does not fit is
    /// left to the caller to count. Without a peer every frame is taken
    /// and counted as `no_peer` (a cable with nothing at the other end).
    fn transmit(&self, frames: &[&[u8]], _sender: usize) -> usize {
        let peer = lock(&self.peer).upgrade();
        match peer {
            Some(p) => lock(&p.feed).send(frames.iter().copied()),
            None => {
                self.no_peer
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                frames.len()
            }
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("no_peer", self.no_peer.load(Ordering::Relaxed))]
    }

    fn link_up(&self) -> bool {
        self.has_peer()
    }

    fn incoming_fd(&self, q: usize) -> Option<std::os::fd::RawFd> {
        self.mem.incoming_fd(q)
    }

    fn disarm_incoming(&self, q: usize) {
        self.mem.disarm_incoming(q);
    }
}

/// Where patch ports find their peers by name. One per process that hosts
/// switches.
#[derive(Default)]
pub struct PatchPanel {
    ports: Mutex<BTreeMap<String, Weak<PatchPort>>>,
}

impl PatchPanel {
    pub fn new() -> PatchPanel {
        PatchPanel::default()
    }

    /// Makes patch port `name` wanting `peer` (`None`: the `peer` option is
    /// missing) and plugs it into its peer if that exists and names it.
    pub fn open(
        &self,
        name: &str,
        peer: Option<&str>,
        buf_size: u32,
    ) -> Result<Arc<PatchPort>, PatchError> {
        let peer = match peer {
            Some(p) if !p.is_empty() => p,
            _ => return Err(PatchError::NoPeerOption(name.to_owned())),
        };
        if peer == name {
            return Err(PatchError::SelfPeer(name.to_owned()));
        }
        let mut ports = lock(&self.ports);
        ports.retain(|_, w| w.strong_count() > 0);
        if ports.contains_key(name) {
            return Err(PatchError::NameTaken(name.to_owned()));
        }
        let cfg = MemConfig {
            incoming_slots: RING,
            outgoing_slots: 2,
            nbufs: RING + 2,
            buf_size,
        };
        let (mem, feed) = MemPort::new(name, cfg)?;
        let port = Arc::new(PatchPort {
            peer_name: peer.to_owned(),
            mem,
            feed: Mutex::new(feed),
            peer: Mutex::new(Weak::new()),
            no_peer: AtomicU64::new(0),
        });
        if let Some(other) = ports.get(peer).and_then(Weak::upgrade)
            && other.peer_name == name
        {
            port.plug(&other);
            other.plug(&port);
        }
        ports.insert(name.to_owned(), Arc::downgrade(&port));
        Ok(port)
    }

    /// Whether patch port `name` exists and is plugged into its peer.
    pub fn plugged(&self, name: &str) -> bool {
        lock(&self.ports)
            .get(name)
            .and_then(Weak::upgrade)
            .is_some_and(|p| p.has_peer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::DEFAULT_BUF_SIZE;

    fn recv_all(p: &PatchPort) -> Vec<Vec<u8>> {
        let mem = p.mem();
        let ring = mem.incoming();
        let mut tail = ring.hdr.tail.load(Ordering::Acquire);
        let mut got = Vec::new();
        mem.consume(ring, &mut tail, usize::MAX, |f| got.push(f.to_vec()));
        got
    }

    #[test]
    fn a_pair_carries_frames_both_ways_and_unplugs_when_one_side_goes() {
        let panel = PatchPanel::new();
        let a = panel.open("pa", Some("pb"), DEFAULT_BUF_SIZE).unwrap();
        assert!(!a.has_peer() && !panel.plugged("pa"));
        assert_eq!(a.transmit(&[b"lost"], 0), 1, "taken, and counted");
        assert_eq!(a.counters(), vec![("no_peer", 1)]);
        let b = panel.open("pb", Some("pa"), DEFAULT_BUF_SIZE).unwrap();
        assert!(a.has_peer() && b.has_peer() && panel.plugged("pb"));
        assert_eq!(a.transmit(&[b"one", b"two"], 0), 2);
        assert_eq!(b.transmit(&[b"back"], 1), 1);
        assert_eq!(recv_all(&b), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(recv_all(&a), vec![b"back".to_vec()]);
        drop(b);
        assert!(!a.has_peer());
        assert_eq!(a.transmit(&[b"x"], 0), 1);
        assert_eq!(a.counters(), vec![("no_peer", 2)]);
        // A new port of the peer's name plugs in again.
        let b2 = panel.open("pb", Some("pa"), DEFAULT_BUF_SIZE).unwrap();
        assert!(a.has_peer());
        assert_eq!(a.transmit(&[b"again"], 0), 1);
        assert_eq!(recv_all(&b2), vec![b"again".to_vec()]);
    }

    #[test]
    fn a_full_ring_takes_what_fits_and_bad_options_are_refused() {
        let panel = PatchPanel::new();
        let a = panel.open("fa", Some("fb"), DEFAULT_BUF_SIZE).unwrap();
        let b = panel.open("fb", Some("fa"), DEFAULT_BUF_SIZE).unwrap();
        let frame = [0u8; 60];
        let frames = vec![&frame[..]; RING as usize + 10];
        assert_eq!(a.transmit(&frames, 0), RING as usize);
        assert_eq!(a.transmit(&frames[..1], 0), 0, "full: nothing taken");
        assert_eq!(recv_all(&b).len(), RING as usize);
        assert_eq!(
            panel.open("x", None, DEFAULT_BUF_SIZE).err(),
            Some(PatchError::NoPeerOption("x".into()))
        );
        assert_eq!(
            panel.open("x", Some("x"), DEFAULT_BUF_SIZE).err(),
            Some(PatchError::SelfPeer("x".into()))
        );
        assert_eq!(
            panel.open("fa", Some("fb"), DEFAULT_BUF_SIZE).err(),
            Some(PatchError::NameTaken("fa".into()))
        );
        // A third port naming fa does not steal it from fb.
        let c = panel.open("fc", Some("fa"), DEFAULT_BUF_SIZE).unwrap();
        assert!(!c.has_peer() && a.has_peer());
    }
}
