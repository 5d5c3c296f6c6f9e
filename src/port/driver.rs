//! Driving a port without a switch: the program takes the switch's side of
//! the rings (producer of the outgoing ring, consumer of the incoming ring).
//! `pkt-gen` uses it to send and count traffic straight on kernel interfaces.

use std::sync::Arc;
use std::time::Duration;

use super::Port;
use crate::packet::Slot;

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
        let ring = mem.outgoing();
        let n = (ring.free(self.out_head) as usize).min(max);
        let mut done = 0;
        while done < n {
            let slot = ring.slot(self.out_head);
            let Some(buf) = mem.buf_mut(slot.buf) else {
                break;
            };
            let len = fill(done, buf).min(buf.len()).min(usize::from(u16::MAX));
            if len == 0 {
                break;
            }
            ring.write_slot(
                self.out_head,
                Slot {
                    buf: slot.buf,
                    len: len as u16,
                    flags: 0,
                },
            );
            self.out_head = self.out_head.wrapping_add(1);
            done += 1;
        }
        if done > 0 {
            ring.publish(self.out_head);
            self.port.outgoing_published();
        }
        done
    }

    /// Receives up to `max` frames from the backend, calling `f` on each.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        self.port.sync_incoming();
        let mem = self.port.mem();
        let ring = mem.incoming();
        let n = (ring.available(self.in_cur) as usize).min(max);
        for _ in 0..n {
            let s = ring.slot(self.in_cur);
            f(mem.buf(s.buf, usize::from(s.len)).unwrap_or(&[]));
            self.in_cur = self.in_cur.wrapping_add(1);
        }
        if n > 0 {
            ring.release(self.in_cur);
        }
        n
    }

    /// Waits until the backend may have frames, or `timeout` passes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        if self.port.mem().incoming().available(self.in_cur) > 0 {
            return true;
        }
        match self.port.incoming_fd() {
            Some(fd) => crate::sys::poll_any(&[fd], timeout) > 0,
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
