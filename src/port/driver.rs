//! Driving a port without a switch: the program takes the switch's side of
//! the rings (producer of the outgoing ring, consumer of the incoming rings,
//! all of a port's incoming queues in turn).
//! `pkt-gen` uses it to send and count traffic straight on kernel interfaces.

use std::sync::Arc;
use std::time::Duration;

use super::Port;

pub struct PortDriver {
    port: Arc<dyn Port>,
    /// Our producer index on the outgoing ring.
    out_head: u32,
    /// Our consumer index on each incoming queue's ring.
    in_cur: Vec<u32>,
}

impl PortDriver {
    pub fn new(port: Arc<dyn Port>) -> PortDriver {
        let mem = port.mem();
        let out_head = mem
            .outgoing()
            .hdr
            .head
            .load(std::sync::atomic::Ordering::Acquire);
        let in_cur = (0..port.incoming_queues())
            .map(|q| {
                port.incoming_mem(q)
                    .incoming()
                    .hdr
                    .tail
                    .load(std::sync::atomic::Ordering::Acquire)
            })
            .collect();
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
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        for (q, cur) in self.in_cur.iter_mut().enumerate() {
            self.port.sync_incoming(q);
            let mem = self.port.incoming_mem(q);
            n += mem.consume(mem.incoming(), cur, max - n, &mut f);
        }
        n
    }

    /// Waits until the backend may have frames, or `timeout` passes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        let port = &self.port;
        let cur = &self.in_cur;
        let queues = 0..cur.len();
        if queues
            .clone()
            .any(|q| port.incoming_mem(q).incoming().available(cur[q]) > 0)
        {
            return true;
        }
        let fds: Option<Vec<_>> = queues.clone().map(|q| port.incoming_fd(q)).collect();
        match fds {
            Some(fds) => {
                // Ports whose device signals only when asked (vhost-user,
                // virtio-user) are asked, as a sleeping worker asks them.
                let mut armed = 0;
                while armed < cur.len() && port.arm_incoming(armed, cur[armed]) {
                    armed += 1;
                }
                let woken = armed < cur.len() || crate::sys::poll_any(&fds, timeout) > 0;
                // `arm_incoming` that found frames disarmed its queue itself.
                (0..armed).for_each(|q| port.disarm_incoming(q));
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
