//! Driving a port without a switch: the program takes the switch's side of
//! the rings (producer of the outgoing ring, consumer of the incoming ring;
//! of a port with several incoming queues, queue 0).
//! `pkt-gen` uses it to send and count traffic straight on kernel interfaces.

use std::sync::Arc;
use std::time::Duration;

use super::Port;

pub struct PortDriver {
    port: Arc<dyn Port>,
    /// Our producer index on the outgoing ring.
    out_head: u32,
    /// Our consumer index on the incoming ring.
    in_cur: u32,
}

impl PortDriver {
    pub fn new(port: Arc<dyn Port>) -> PortDriver {
        let mem = port.mem();
        let out_head = mem
            .outgoing()
            .hdr
            .head
            .load(std::sync::atomic::Ordering::Acquire);
        let in_cur = mem
            .incoming()
            .hdr
            .tail
            .load(std::sync::atomic::Ordering::Acquire);
        PortDriver {
            port,
            out_head,
            in_cur,
        }
    }

    pub fn port(&self) -> &Arc<dyn Port> {
        &self.port
    }

    /// Fills up to `max` outgoing slots in place (`fill` returns a frame's
    /// length, 0 to stop) and hands them to the backend; returns how many.
    pub fn send_with(
        &mut self,
        max: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> usize,
    ) -> usize {
        let mem = self.port.mem();
        let n = mem.produce(mem.outgoing(), &mut self.out_head, max, |i, buf| {
            Some(fill(i, buf)).filter(|&l| l > 0)
        });
        // A full ring is handed over again too: a backend that could not
        // push everything last time (a device or guest out of room) gets
        // another chance, or a full ring would never drain.
        if max > 0 {
            self.port.outgoing_published();
        }
        n
    }

    /// Receives up to `max` frames from the backend, calling `f` on each.
    pub fn recv(&mut self, max: usize, f: impl FnMut(&[u8])) -> usize {
        self.port.sync_incoming(0);
        let mem = self.port.mem();
        mem.consume(mem.incoming(), &mut self.in_cur, max, f)
    }

    /// Waits until the backend may have frames, or `timeout` passes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        if self.port.mem().incoming().available(self.in_cur) > 0 {
            return true;
        }
        match self.port.incoming_fd(0) {
            Some(fd) => {
                // Ports whose device signals only when asked (vhost-user,
                // virtio-user) are asked, as a sleeping worker asks them.
                if !self.port.arm_incoming(0, self.in_cur) {
                    return true;
                }
                let woken = crate::sys::poll_any(&[fd], timeout) > 0;
                self.port.disarm_incoming(0);
                woken
            }
            None => {
                std::thread::sleep(
                    timeout
                        .unwrap_or(Duration::from_millis(1))
                        .min(Duration::from_millis(1)),
                );
                false
            }
        }
    }
}
