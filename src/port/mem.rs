//! The in-process memory port: for tests, benchmarks and embedding.
//!
//! [`MemPort::new`] returns the switch's side (attach it to a switch) and a
//! [`MemClient`], the outside world's side, which sends packets into the switch
//! and receives what the switch forwards to the port. Each direction has an
//! eventfd doorbell, so neither side has to spin while idle.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::packet::{MemConfig, MemError, PortMem, Slot};
use crate::sys::EventFd;

use super::Port;

pub struct MemPort {
    name: String,
    mem: PortMem,
    /// Rung by the client when it publishes packets and the switch sleeps.
    incoming_bell: EventFd,
    /// Rung by the switch when it publishes packets and the client sleeps.
    outgoing_bell: EventFd,
}

impl MemPort {
    pub fn new(name: &str, cfg: MemConfig) -> Result<(Arc<MemPort>, MemClient), MemError> {
        let port = Arc::new(MemPort {
            name: name.to_owned(),
            mem: PortMem::new(name, cfg)?,
            incoming_bell: EventFd::new()?,
            outgoing_bell: EventFd::new()?,
        });
        let client = MemClient { port: port.clone(), head: 0, tail: 0 };
        Ok((port, client))
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mem"
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn outgoing_published(&self) {
        if self.mem.outgoing().take_wakeup_request() {
            self.outgoing_bell.notify();
        }
    }

    fn incoming_fd(&self) -> Option<RawFd> {
        Some(self.incoming_bell.as_raw_fd())
    }

    fn disarm_incoming(&self) {
        self.mem.incoming().disarm_wakeup();
        self.incoming_bell.drain();
    }
}

/// The outside world's end of a [`MemPort`]. It produces on the incoming ring
/// and consumes from the outgoing ring; it is single-threaded (`&mut self`).
pub struct MemClient {
    port: Arc<MemPort>,
    /// Our producer index on the incoming ring.
    head: u32,
    /// Our consumer index on the outgoing ring.
    tail: u32,
}

impl MemClient {
    pub fn port(&self) -> &Arc<MemPort> {
        &self.port
    }

    /// Room for packets on the incoming ring right now.
    pub fn send_room(&self) -> u32 {
        self.port.mem.incoming().free(self.head)
    }

    /// Sends frames into the switch, as many as fit; returns how many frames
    /// were taken from `frames`. A frame longer than a buffer is taken but
    /// not queued (it could never be sent).
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = &'f [u8]>) -> usize {
        let mem = &self.port.mem;
        let ring = mem.incoming();
        let mut room = ring.free(self.head);
        let mut n = 0;
        let mut queued = false;
        for f in frames {
            if room == 0 {
                break;
            }
            let slot = ring.slot(self.head);
            n += 1;
            if !mem.write_buf(slot.buf, f) {
                continue;
            }
            ring.write_slot(self.head, Slot { buf: slot.buf, len: f.len() as u16, flags: 0 });
            self.head = self.head.wrapping_add(1);
            room -= 1;
            queued = true;
        }
        if queued {
            ring.publish(self.head);
            if ring.take_wakeup_request() {
                self.port.incoming_bell.notify();
            }
        }
        n
    }

    /// Sends one frame; false if the ring is full.
    pub fn send_one(&mut self, frame: &[u8]) -> bool {
        self.send([frame]) == 1
    }

    /// Packets waiting on the outgoing ring.
    pub fn pending(&self) -> u32 {
        self.port.mem.outgoing().available(self.tail)
    }

    /// Receives up to `max` packets, calling `f` on each; returns how many.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mem = &self.port.mem;
        let ring = mem.outgoing();
        let n = (ring.available(self.tail) as usize).min(max);
        for _ in 0..n {
            let s = ring.slot(self.tail);
            f(mem.buf(s.buf, s.len as usize).unwrap_or(&[]));
            self.tail = self.tail.wrapping_add(1);
        }
        if n > 0 {
            ring.release(self.tail);
        }
        n
    }

    /// Receives everything waiting into owned vectors.
    pub fn recv_all(&mut self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        self.recv(usize::MAX, |p| v.push(p.to_vec()));
        v
    }

    /// Waits until packets are waiting on the outgoing ring or `timeout`
    /// passes; returns true if packets are waiting.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let ring = self.port.mem.outgoing();
        if !ring.arm_wakeup(self.tail) {
            return true;
        }
        self.port.outgoing_bell.wait(timeout);
        self.port.outgoing_bell.drain();
        ring.disarm_wakeup();
        self.pending() > 0
    }
}
