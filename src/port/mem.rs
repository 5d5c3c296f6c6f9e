//! Memory ports: the in-process `mem` port (tests, benchmarks, embedding)
//! and the shared-memory `vport` (another process is the client).
//!
//! Both are the same thing seen from the switch: a [`PortMem`] region plus a
//! [`Doorbell`] per direction, so neither side spins while idle. For `mem`,
//! [`MemPort::new`] also returns the [`MemClient`] (the outside world's end).
//! For `vport`, the region's memfd and the client's end of each doorbell are
//! handed to another process ([`MemPort::client_fds`]), which builds its own
//! [`MemClient`] over its mapping with [`MemClient::from_parts`]. Everything
//! that process writes or does with those descriptors is untrusted: the
//! switch validates what it reads (see `packet`), the region's size is
//! sealed, and the switch's ends of the doorbells are its own open files,
//! which the client cannot make blocking.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::packet::{MemConfig, MemError, PortMem};
use crate::sys::{Doorbell, POLL_ERR, POLL_IN, PollFd};

use super::Port;

pub struct MemPort {
    name: String,
    kind: &'static str,
    mem: Arc<PortMem>,
    /// Rung by the client when it publishes packets and the switch sleeps.
    incoming_bell: Arc<Doorbell>,
    /// Rung by the switch when it publishes packets and the client sleeps.
    outgoing_bell: Arc<Doorbell>,
}

impl MemPort {
    /// An in-process port and its client.
    pub fn new(name: &str, cfg: MemConfig) -> Result<(Arc<MemPort>, MemClient), MemError> {
        let port = Arc::new(Self::with_kind(name, "mem", cfg)?);
        let client = MemClient::from_parts(
            port.mem.clone(),
            port.incoming_bell.clone(),
            port.outgoing_bell.clone(),
        );
        Ok((port, client))
    }

    /// A port whose client lives in another process.
    pub fn vport(name: &str, cfg: MemConfig) -> Result<Arc<MemPort>, MemError> {
        Ok(Arc::new(Self::with_kind(name, "vport", cfg)?))
    }

    fn with_kind(name: &str, kind: &'static str, cfg: MemConfig) -> Result<MemPort, MemError> {
        Ok(MemPort {
            name: name.to_owned(),
            kind,
            mem: Arc::new(PortMem::new(name, cfg)?),
            incoming_bell: Arc::new(Doorbell::new()?),
            outgoing_bell: Arc::new(Doorbell::new()?),
        })
    }

    /// What a client process needs: the region's memfd, the ringing end of
    /// the incoming doorbell and the waiting end of the outgoing doorbell.
    pub fn client_fds(&self) -> [BorrowedFd<'_>; 3] {
        const BOTH: &str = "a port's doorbells have both ends";
        [
            self.mem.region().fd(),
            self.incoming_bell.write_end().expect(BOTH),
            self.outgoing_bell.read_end().expect(BOTH),
        ]
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn outgoing_published(&self) {
        if self.mem.outgoing().take_wakeup_request() {
            self.outgoing_bell.notify();
        }
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        self.incoming_bell.read_end().map(|f| f.as_raw_fd())
    }

    fn disarm_incoming(&self, _q: usize) {
        self.mem.incoming().disarm_wakeup();
        self.incoming_bell.drain();
    }
}

/// The outside world's end of a memory port. It produces on the incoming
/// ring and consumes from the outgoing ring; it is single-threaded (`&mut self`).
pub struct MemClient {
    mem: Arc<PortMem>,
    incoming_bell: Arc<Doorbell>,
    outgoing_bell: Arc<Doorbell>,
    /// Our producer index on the incoming ring.
    head: u32,
    /// Our consumer index on the outgoing ring.
    tail: u32,
}

impl MemClient {
    /// A client over a port's memory and doorbells, continuing from the
    /// indices currently in the rings.
    pub fn from_parts(
        mem: Arc<PortMem>,
        incoming_bell: Arc<Doorbell>,
        outgoing_bell: Arc<Doorbell>,
    ) -> MemClient {
        let head = mem
            .incoming()
            .hdr
            .head
            .load(std::sync::atomic::Ordering::Acquire);
        let tail = mem
            .outgoing()
            .hdr
            .tail
            .load(std::sync::atomic::Ordering::Acquire);
        MemClient {
            mem,
            incoming_bell,
            outgoing_bell,
            head,
            tail,
        }
    }

    pub fn mem(&self) -> &PortMem {
        &self.mem
    }

    /// Room for packets on the incoming ring right now.
    pub fn send_room(&self) -> u32 {
        self.mem.incoming().free(self.head)
    }

    /// Fills up to `max` packets in place: `fill(i, buf)` writes packet `i`
    /// into `buf` (the whole buffer) and returns its length (0 stops early).
    /// Publishes them and returns how many were queued.
    pub fn send_with(
        &mut self,
        max: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> usize,
    ) -> usize {
        let n = self
            .mem
            .produce(self.mem.incoming(), &mut self.head, max, |i, buf| {
                Some(fill(i, buf)).filter(|&l| l > 0)
            });
        if n > 0 {
            self.ring_incoming_bell();
        }
        n
    }

    /// After publishing: wake the switch if it asked to be woken.
    fn ring_incoming_bell(&self) {
        if self.mem.incoming().take_wakeup_request() {
            self.incoming_bell.notify();
        }
    }

    /// Sends frames into the switch, as many as fit; returns how many frames
    /// were taken from `frames`. An empty frame, or one longer than a buffer,
    /// is taken but not queued (it could never be delivered).
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = &'f [u8]>) -> usize {
        let mut frames = frames.into_iter();
        let mut taken = 0;
        let n = self
            .mem
            .produce(self.mem.incoming(), &mut self.head, usize::MAX, |_, buf| {
                let f = frames.next()?;
                taken += 1;
                // A slot's length is 16 bits: a 64 KiB buffer holds one byte more
                // than a slot can describe. Such frames are taken, not queued.
                if f.len() > buf.len() || f.len() > usize::from(u16::MAX) {
                    return Some(0);
                }
                buf[..f.len()].copy_from_slice(f);
                Some(f.len())
            });
        if n > 0 {
            self.ring_incoming_bell();
        }
        taken
    }

    /// Sends one frame; false if the ring is full.
    pub fn send_one(&mut self, frame: &[u8]) -> bool {
        self.send([frame]) == 1
    }

    /// Packets waiting on the outgoing ring.
    pub fn pending(&self) -> u32 {
        self.mem.outgoing().available(self.tail)
    }

    /// Receives up to `max` packets, calling `f` on each; returns how many.
    pub fn recv(&mut self, max: usize, f: impl FnMut(&[u8])) -> usize {
        self.mem
            .consume(self.mem.outgoing(), &mut self.tail, max, f)
    }

    /// Receives everything waiting into owned vectors.
    pub fn recv_all(&mut self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        self.recv(usize::MAX, |p| v.push(p.to_vec()));
        v
    }

    /// Waits until packets are waiting on the outgoing ring or `timeout`
    /// passes; returns true if packets are waiting. A switch that went away
    /// (its end of the doorbell closed) makes this return at once: a
    /// client in another process watches for that with
    /// [`MemClient::wait_or`] (the vport library does).
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.wait_or(timeout, None).frames
    }

    /// [`MemClient::wait`] that also wakes when `other` (a descriptor the
    /// caller watches, such as its control connection) becomes readable
    /// or hangs up, and says what woke it.
    pub fn wait_or(&self, timeout: Option<Duration>, other: Option<RawFd>) -> Woken {
        let ring = self.mem.outgoing();
        if !ring.arm_wakeup(self.tail) {
            return Woken {
                frames: true,
                ..Woken::default()
            };
        }
        let bell = self.outgoing_bell.read_end().map_or(-1, |f| f.as_raw_fd());
        // poll(2) skips negative descriptors.
        let mut fds = [bell, other.unwrap_or(-1)].map(|fd| PollFd {
            fd,
            events: POLL_IN,
            revents: 0,
        });
        crate::sys::poll(&mut fds, timeout);
        self.outgoing_bell.drain();
        ring.disarm_wakeup();
        Woken {
            frames: self.pending() > 0,
            // Every writer of the doorbell closed it: the switch's end is gone.
            hangup: fds[0].revents & POLL_ERR != 0,
            other: fds[1].revents != 0,
        }
    }
}

/// What ended a [`MemClient::wait_or`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Woken {
    /// Packets wait on the outgoing ring.
    pub frames: bool,
    /// The switch's end of the outgoing doorbell is closed: nothing will
    /// ever arrive (the port's switch is gone).
    pub hangup: bool,
    /// The other descriptor is readable or hung up.
    pub other: bool,
}
