//! What a tunnel endpoint moves its datagrams over: the kernel's UDP socket
//! ([`UdpTunnelSocket`], what every configured port uses), or an in-memory
//! [`BenchWire`] for `mswitch bench --tunnel`, which measures mswitch's own
//! encapsulation and decapsulation without the kernel's UDP path (which
//! costs far more per datagram than the switch does).
//!
//! The bench wire does what the kernel does for us, at the least: a send
//! copies each datagram's header and frame into a buffer of its own (the
//! kernel copies them into an skb) and counts it; a receive copies
//! datagrams into the [`RxBatch`] (as `recvmmsg` does), here ones built
//! before the run, handed out again and again like the bench's generator.
//!
//! Dispatch is one `match` per batch of up to [`BATCH`] datagrams, so the
//! kernel path costs one predictable branch more per batch.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::rxbatch::{RX_SLOT, RxBatch};
use super::socket::{BATCH, TxMsg, UdpTunnelSocket};
use crate::sys::EventFd;

/// An endpoint's datagram carrier.
pub enum Wire {
    Kernel(UdpTunnelSocket),
    Bench(Box<BenchWire>),
}

impl Wire {
    /// Receives up to [`BATCH`] datagrams into `rx`; 0 when none wait.
    #[inline]
    pub fn recv_batch(&self, rx: &mut RxBatch) -> usize {
        match self {
            Wire::Kernel(s) => s.recv_batch(rx),
            Wire::Bench(b) => b.recv_batch(rx),
        }
    }

    /// Sends `msg(0)`..`msg(n - 1)` (`n` at most [`BATCH`]), one datagram
    /// each; returns how many went; `failed` hears of each that did not.
    #[inline]
    pub fn send_batch<'a>(
        &self,
        n: usize,
        msg: impl Fn(usize) -> TxMsg<'a>,
        failed: impl FnMut(usize, io::Error),
    ) -> usize {
        match self {
            Wire::Kernel(s) => s.send_batch(n, msg, failed),
            Wire::Bench(b) => b.send_batch((0..n.min(BATCH)).map(msg), failed),
        }
    }

    /// The local address: the socket's, or the bench wire's own.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Wire::Kernel(s) => s.local_addr(),
            Wire::Bench(b) => Ok(b.local),
        }
    }

    /// Whether sends use segmentation offload (the kernel socket's; the
    /// bench wire has none).
    pub fn offloads(&self) -> bool {
        match self {
            Wire::Kernel(s) => s.offloads(),
            Wire::Bench(_) => false,
        }
    }

    /// The bench wire, if this is one.
    pub fn bench(&self) -> Option<&BenchWire> {
        match self {
            Wire::Bench(b) => Some(b),
            Wire::Kernel(_) => None,
        }
    }
}

impl AsRawFd for Wire {
    /// What a sleeping worker watches for datagrams.
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Wire::Kernel(s) => s.as_raw_fd(),
            Wire::Bench(b) => b.ready.as_raw_fd(),
        }
    }
}

/// One received datagram of a bench wire: its outer sender and its bytes
/// from the encapsulation header on (header and inner frame).
#[derive(Clone, Debug)]
pub struct BenchDatagram {
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The datagram buffers a bench wire's sends copy into.
struct TxBufs {
    bufs: Vec<u8>,
    /// The slot, length and destination of the last datagram sent.
    last: Option<(usize, usize, SocketAddr)>,
}

/// An in-memory wire: what is sent is copied and counted, what is received
/// comes from a list of datagrams made in advance.
pub struct BenchWire {
    /// The address it pretends to be bound to.
    local: SocketAddr,
    /// Datagrams receives hand out, in order.
    incoming: Vec<BenchDatagram>,
    /// Whether receives start over at the end of `incoming`.
    repeat: bool,
    /// Datagrams handed out so far (only the endpoint's reader, which holds
    /// the endpoint's receive lock, moves it).
    handed: AtomicUsize,
    /// Readable while datagrams wait.
    ready: EventFd,
    tx: Mutex<TxBufs>,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
}

/// A bench datagram (header and frame) larger than this fails as the
/// kernel's would over a 9000-byte MTU underlay (`EMSGSIZE`).
pub const BENCH_MAX_DATAGRAM: usize = 9000 - 20 - 8;

impl BenchWire {
    /// A wire at `local` whose receives hand out `incoming` in order, and
    /// again from the start if `repeat`.
    pub fn new(
        local: SocketAddr,
        incoming: Vec<BenchDatagram>,
        repeat: bool,
    ) -> io::Result<BenchWire> {
        let ready = EventFd::new()?;
        if !incoming.is_empty() {
            // Never read: readable from now on, which is true while
            // datagrams wait (for a wire that runs dry, a worker that
            // sleeps on it finds nothing and goes back to sleep).
            ready.notify();
        }
        Ok(BenchWire {
            local,
            incoming,
            repeat,
            handed: AtomicUsize::new(0),
            ready,
            tx: Mutex::new(TxBufs {
                bufs: vec![0; BATCH * BENCH_MAX_DATAGRAM],
                last: None,
            }),
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
        })
    }

    /// Copies the next datagrams into `rx`, as `recvmmsg` would.
    fn recv_batch(&self, rx: &mut RxBatch) -> usize {
        let len = self.incoming.len();
        let mut at = self.handed.load(Ordering::Relaxed);
        let mut n = 0;
        while n < BATCH {
            if at == len {
                if !self.repeat || len == 0 {
                    break;
                }
                at = 0;
            }
            let d = &self.incoming[at];
            rx.put(n, d.from, &d.bytes);
            (at, n) = (at + 1, n + 1);
        }
        self.handed.store(at, Ordering::Relaxed);
        if !self.repeat && at == len && n > 0 {
            self.ready.drain();
        }
        n
    }

    /// Copies each datagram (header, then frame) into a buffer of its own
    /// and counts it; one larger than [`BENCH_MAX_DATAGRAM`] fails with
    /// `EMSGSIZE`.
    fn send_batch<'a>(
        &self,
        msgs: impl Iterator<Item = TxMsg<'a>>,
        mut failed: impl FnMut(usize, io::Error),
    ) -> usize {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let TxBufs { bufs, last } = &mut *tx;
        let (mut sent, mut bytes) = (0, 0);
        let mut end = None;
        let slots = bufs.chunks_exact_mut(BENCH_MAX_DATAGRAM);
        for (i, (slot, m)) in slots.zip(msgs).enumerate() {
            let (h, f) = (m.header.len(), m.frame.len());
            if h + f > BENCH_MAX_DATAGRAM {
                failed(i, io::Error::from_raw_os_error(libc::EMSGSIZE));
                continue;
            }
            slot[..h].copy_from_slice(m.header);
            slot[h..h + f].copy_from_slice(m.frame);
            end = Some((i, h + f, m));
            sent += 1;
            bytes += h + f;
        }
        // Where the batch's last datagram went (kept once per batch).
        if let Some((i, len, m)) = end {
            *last = Some((i, len, m.to));
        }
        drop(tx);
        self.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        sent
    }

    /// Datagrams sent so far, and their bytes (headers and frames).
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.sent_bytes.load(Ordering::Relaxed),
        )
    }

    /// The last datagram sent (header and frame) and where it went.
    pub fn last_sent(&self) -> Option<(SocketAddr, Vec<u8>)> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let (i, len, to) = tx.last?;
        let at = i * BENCH_MAX_DATAGRAM;
        Some((to, tx.bufs[at..at + len].to_vec()))
    }
}

/// A receive slot holds what a port buffer can: the bench's datagrams must
/// fit one.
const _: () = assert!(BENCH_MAX_DATAGRAM <= RX_SLOT);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::tunnel::socket::tests::msg;

    #[test]
    fn a_bench_wire_copies_what_it_sends_and_refuses_what_is_too_big() {
        let to: SocketAddr = "192.0.2.2:4789".parse().unwrap();
        let local = "192.0.2.1:4789".parse().unwrap();
        let wire = Wire::Bench(Box::new(BenchWire::new(local, Vec::new(), true).unwrap()));
        let w = wire.bench().unwrap();
        let (small, big) = (vec![7u8; 60], vec![0u8; BENCH_MAX_DATAGRAM]);
        let frames = [&small[..], &big[..], &small[..]];
        let mut errs = Vec::new();
        let n = wire.send_batch(
            3,
            |i| msg(frames[i], to),
            |i, e| {
                errs.push((i, e.raw_os_error()));
            },
        );
        assert_eq!(n, 2);
        assert_eq!(errs, [(1, Some(libc::EMSGSIZE))]);
        assert_eq!(w.sent(), (2, 2 * 68));
        let (at, d) = w.last_sent().unwrap();
        assert_eq!(at, to);
        assert_eq!(&d[..8], b"HDR-8byt");
        assert_eq!(&d[8..], &small[..]);
        // Nothing to receive: never readable, and receives are empty.
        let mut rx = RxBatch::default();
        assert_eq!(wire.recv_batch(&mut rx), 0);
        assert_eq!(wire.local_addr().unwrap(), local);
        assert!(!crate::sys::poll_readable(
            wire.as_raw_fd(),
            Some(std::time::Duration::ZERO)
        ));
    }

    #[test]
    fn a_bench_wire_hands_out_its_datagrams_once_or_forever() {
        let from: SocketAddr = "192.0.2.2:4789".parse().unwrap();
        let list: Vec<BenchDatagram> = (0..3u8)
            .map(|i| BenchDatagram {
                from,
                bytes: vec![i; 70],
            })
            .collect();
        let local = "192.0.2.1:4789".parse().unwrap();
        let mut rx = RxBatch::default();
        let once = BenchWire::new(local, list.clone(), false).unwrap();
        let fd = once.ready.as_raw_fd();
        assert!(crate::sys::poll_readable(
            fd,
            Some(std::time::Duration::ZERO)
        ));
        assert_eq!(once.recv_batch(&mut rx), 3);
        for d in &list {
            let g = rx.peek().unwrap();
            assert_eq!((g.from, g.bytes), (Some(from.ip()), Some(&d.bytes[..])));
            rx.advance();
        }
        assert!(!rx.pending());
        assert_eq!(once.recv_batch(&mut rx), 0);
        assert!(!crate::sys::poll_readable(
            fd,
            Some(std::time::Duration::ZERO)
        ));
        let forever = BenchWire::new(local, list.clone(), true).unwrap();
        for round in 0..3 {
            assert_eq!(forever.recv_batch(&mut rx), BATCH);
            for i in 0..BATCH {
                let k = (round * BATCH + i) % list.len();
                assert_eq!(rx.peek().unwrap().bytes, Some(&list[k].bytes[..]));
                rx.advance();
            }
        }
    }
}
