//! `vxlan:`/`geneve:` ports: a [`Port`] whose outside world is one remote
//! tunnel endpoint, reached through a shared kernel UDP socket
//! ([`super::endpoint`]).
//!
//! Outgoing: the port takes frames straight from the switch
//! ([`Port::transmit`], no copy into its outgoing ring first: the kernel's
//! copy into the datagram is the only one) and each becomes one datagram,
//! the encapsulation header ([`super::header::encode`]) and the frame
//! gathered by `sendmmsg` from the frame's own buffer. A port with a fixed
//! remote and key encodes one header per batch, which every datagram of
//! the batch shares. Frames a program puts on the outgoing ring itself
//! (`PortDriver`) go the same way when it publishes them. A datagram that
//! does not fit the route's MTU is dropped and counted as `too_big` (never
//! fragmented). A port with a flow-based remote or key (`remote=flow`,
//! `out_key=flow`) gets frames with their tunnel metadata
//! ([`Port::transmit_tunnel`]) and sends each to its `tun_dst` (else its
//! `tun_ipv6_dst`, on an IPv6 socket) with its `tun_id` as VNI; a frame
//! without one the port can send to is dropped and counted
//! (`tx_no_remote`). With `tos=inherit`/`ttl=inherit` each frame's outer
//! TOS and TTL are its inner ones ([`super::inherit`]). Incoming: see the endpoint;
//! every frame carries its tunnel metadata. The port never
//! sends anything of its own accord: what came in on it goes only where the
//! switch's module sends it (flooding excludes the input port, as for every
//! port).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::addrs::{is_local_addr6, remote_of};
use super::config::TunnelConfig;
use super::endpoint::{Endpoint, EndpointKey, JoinError, Receiver, RxDrops, is_local_addr};
use super::geneve_opts;
use super::header::{
    Encap, HEADER_LEN, MAX_HEADER_LEN, MAX_VNI, Proto, encode, encode_with_options,
};
use super::inherit::outer_tos_ttl;
use super::socket::{BATCH, TxMsg};
use super::wire::{BenchWire, Wire};
use crate::packet::{MemConfig, MemError, PortMem, TunMeta, TunMetaSlots};
use crate::port::Port;
use crate::port::kernel::{IncomingFill, OutgoingDrain};
use crate::sys::{Epoll, EventFd};

/// Errors opening a tunnel port; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("port memory: {0}")]
    Mem(#[from] MemError),
    #[error("{what}: {err}")]
    Os { what: &'static str, err: io::Error },
}

/// Send-side counters.
#[derive(Default)]
struct TxDrops {
    /// Larger than the route's MTU allows (`EMSGSIZE`).
    too_big: AtomicU64,
    /// No route or the remote is unreachable.
    no_route: AtomicU64,
    /// The socket's send buffer was full.
    busy: AtomicU64,
    /// Anything else the kernel refused.
    errors: AtomicU64,
    /// `remote=flow`, and the frame had no `tun_dst`.
    no_remote: AtomicU64,
}

pub struct TunnelPort {
    name: String,
    cfg: TunnelConfig,
    rx: Arc<Receiver>,
    /// Always `Some` until the port drops (then it leaves the endpoint
    /// under the registry's lock).
    ep: Option<Arc<Endpoint>>,
    drain: OutgoingDrain,
    /// The socket and the wake eventfd: what a sleeping worker watches.
    epoll: Epoll,
    tx: TxDrops,
    /// The socket is IPv6 (a `remote=flow` port sends to `tun_ipv6_dst`).
    v6: bool,
}

impl TunnelPort {
    /// Opens port `name` for the tunnel `cfg` describes.
    pub fn open(
        name: &str,
        cfg: &TunnelConfig,
        mem: MemConfig,
    ) -> Result<Arc<TunnelPort>, TunnelError> {
        TunnelPort::open_on(name, cfg, mem, None)
    }

    /// Opens port `name` on an endpoint of its own on the bench wire `wire`
    /// instead of the kernel's socket (`mswitch bench --tunnel`).
    pub fn open_bench(
        name: &str,
        cfg: &TunnelConfig,
        mem: MemConfig,
        wire: BenchWire,
    ) -> Result<Arc<TunnelPort>, TunnelError> {
        TunnelPort::open_on(name, cfg, mem, Some(Wire::Bench(Box::new(wire))))
    }

    fn open_on(
        name: &str,
        cfg: &TunnelConfig,
        mem: MemConfig,
        wire: Option<Wire>,
    ) -> Result<Arc<TunnelPort>, TunnelError> {
        cfg.validate().map_err(TunnelError::Config)?;
        let os = |what| move |err| TunnelError::Os { what, err };
        let mem = PortMem::new(name, mem)?;
        let rx = Arc::new(Receiver {
            fill: IncomingFill::new(&mem),
            meta: TunMetaSlots::new(mem.incoming().size()),
            local: match cfg.local {
                Some(IpAddr::V4(a)) => a,
                _ => Ipv4Addr::UNSPECIFIED,
            },
            local6: match cfg.local {
                Some(IpAddr::V6(a)) => a,
                _ => Ipv6Addr::UNSPECIFIED,
            },
            mem,
            wake: EventFd::new().map_err(os("eventfd"))?,
            drops: RxDrops::default(),
        });
        let drain = OutgoingDrain::new(&rx.mem);
        let key = EndpointKey {
            proto: cfg.proto,
            local: cfg.bind_addr(),
        };
        let (remote, vni) = (cfg.rx_remote(), cfg.rx_key());
        let ep = match wire {
            None => Endpoint::join(key, remote, vni, cfg.csum, rx.clone())?,
            Some(w) => Endpoint::private(key, w, remote, vni, cfg.csum, rx.clone()),
        };
        let port = TunnelPort {
            name: name.to_owned(),
            cfg: cfg.clone(),
            rx,
            ep: Some(ep),
            drain,
            epoll: Epoll::new().map_err(os("epoll"))?,
            tx: TxDrops::default(),
            v6: key.local.is_ipv6(),
        };
        // (Dropping `port` on an error here leaves the endpoint again.)
        port.epoll
            .add(port.endpoint().fd(), 0)
            .map_err(os("epoll"))?;
        port.epoll
            .add(port.rx.wake.as_raw_fd(), 1)
            .map_err(os("epoll"))?;
        Ok(Arc::new(port))
    }

    fn endpoint(&self) -> &Endpoint {
        // `ep` is taken only in `drop`.
        self.ep
            .as_deref()
            .expect("tunnel port has its endpoint until dropped")
    }

    pub fn config(&self) -> &TunnelConfig {
        &self.cfg
    }

    /// The local address of the UDP socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint().wire().local_addr()
    }

    /// The bench wire the port sends and receives on, if it is on one.
    pub fn bench_wire(&self) -> Option<&BenchWire> {
        self.endpoint().wire().bench()
    }

    /// What frames of this port are sent with.
    fn encap(&self) -> Encap {
        Encap {
            remote: self.cfg.remote,
            vni: self.cfg.out_key,
            tos: self.cfg.tos,
            ttl: self.cfg.ttl,
        }
    }

    /// Sends `frames` with the port's own remote, VNI, TOS and TTL: one
    /// header for all of them (TOS and TTL per frame where the port
    /// inherits them). Counts what the kernel refused.
    fn send_fixed(&self, frames: &[&[u8]]) -> usize {
        let e = self.encap();
        let mut header = [0u8; HEADER_LEN];
        encode(self.cfg.proto, e.vni, &mut header);
        let to = SocketAddr::new(e.remote, self.cfg.dst_port);
        let wire = self.endpoint().wire();
        let inherits = self.cfg.inherits();
        frames
            .chunks(BATCH)
            .map(|chunk| {
                // Each frame's own, worked out once (a send reads a
                // message more than once).
                let mut tt = [(e.tos, e.ttl); BATCH];
                if inherits {
                    for (t, f) in tt.iter_mut().zip(chunk) {
                        *t = self.tos_ttl(f, e);
                    }
                }
                wire.send_batch(
                    chunk.len(),
                    |i| TxMsg {
                        header: &header,
                        frame: chunk[i],
                        to,
                        tos: tt[i].0,
                        ttl: tt[i].1,
                    },
                    |_, err| self.count_tx_error(&err),
                )
            })
            .sum()
    }

    /// The outer TOS and TTL of `frame` sent with `e` by a port that
    /// inherits one of them ([`super::inherit`]).
    fn tos_ttl(&self, frame: &[u8], e: Encap) -> (u8, u8) {
        let c = &self.cfg;
        outer_tos_ttl(frame, c.tos_inherit, c.ttl_inherit, e.tos, e.ttl)
    }

    /// Sends `frames`, each with its own [`Encap`] (`encap(i)`), through
    /// the port's socket; counts what the kernel refused (per-frame tunnel
    /// metadata: `key=flow`, `remote=flow`).
    pub fn send_encapsulated(&self, frames: &[&[u8]], encap: impl Fn(usize) -> Encap) -> usize {
        let mut sent = 0;
        for (c, chunk) in frames.chunks(BATCH).enumerate() {
            let mut hdrs = [[0u8; HEADER_LEN]; BATCH];
            let mut encs = [self.encap(); BATCH];
            for (i, (h, e)) in hdrs.iter_mut().zip(&mut encs).enumerate().take(chunk.len()) {
                *e = encap(c * BATCH + i);
                encode(self.cfg.proto, e.vni, h);
            }
            let (hdrs, encs) = (&hdrs, &encs);
            sent += self.endpoint().wire().send_batch(
                chunk.len(),
                |i| TxMsg {
                    header: &hdrs[i],
                    frame: chunk[i],
                    to: SocketAddr::new(encs[i].remote, self.cfg.dst_port),
                    tos: encs[i].tos,
                    ttl: encs[i].ttl,
                },
                |_, e| self.count_tx_error(&e),
            );
        }
        sent
    }

    /// What a frame with tunnel metadata `m` is sent with: its `tun_dst`
    /// (else `tun_ipv6_dst`, Open vSwitch's rule) and `tun_id` where the
    /// port's remote and key are flow-based; `None` if it has no remote,
    /// one of another family than the port's socket, or an address of
    /// this host (the port's own local address, or one tunnel datagrams
    /// arrived at: what a frame from a tunnel carries as `tun_dst` until a
    /// flow sets another; it would come straight back in).
    fn encap_of(&self, m: &TunMeta) -> Option<Encap> {
        let mut e = self.encap();
        if self.cfg.remote_flow {
            let to = remote_of(m)?;
            let ours = match to {
                IpAddr::V4(a) if !self.v6 => a == self.rx.local || is_local_addr(a),
                IpAddr::V6(a) if self.v6 => a == self.rx.local6 || is_local_addr6(a),
                _ => true,
            };
            if ours {
                return None;
            }
            e.remote = to;
        }
        if self.cfg.out_key_flow {
            e.vni = (m.id & u64::from(MAX_VNI)) as u32;
        }
        Some(e)
    }

    /// Sends Geneve `frames` (at most [`BATCH`]), each with its
    /// [`Encap`] and the options of its `tun_metadata` fields, encoded by
    /// the TLV table its metadata names ([`geneve_opts`]).
    fn send_with_options(&self, frames: &[&[u8]], encs: &[Encap], md: &[TunMeta]) -> usize {
        let mut table: Option<(u32, Option<Arc<geneve_opts::TlvTable>>)> = None;
        let mut hdrs = vec![[0u8; MAX_HEADER_LEN]; frames.len()];
        let mut lens = [0usize; BATCH];
        let mut opts = [0u8; geneve_opts::MAX_WIRE];
        for (i, h) in hdrs.iter_mut().enumerate() {
            let m = &md[i];
            if table.as_ref().is_none_or(|(id, _)| *id != m.tlv) {
                table = Some((m.tlv, geneve_opts::table(m.tlv)));
            }
            let t = table.as_ref().and_then(|(_, t)| t.as_deref());
            let n = match t {
                Some(t) if m.md_present != 0 => t.encode(m.md_present, m.md, &mut opts),
                _ => 0,
            };
            lens[i] = encode_with_options(self.cfg.proto, encs[i].vni, &opts[..n], h);
        }
        let hdrs = &hdrs;
        self.endpoint().wire().send_batch(
            frames.len().min(BATCH),
            |i| TxMsg {
                header: &hdrs[i][..lens[i]],
                frame: frames[i],
                to: SocketAddr::new(encs[i].remote, self.cfg.dst_port),
                tos: encs[i].tos,
                ttl: encs[i].ttl,
            },
            |_, e| self.count_tx_error(&e),
        )
    }

    fn count_tx_error(&self, e: &io::Error) {
        let c = match e.raw_os_error() {
            Some(libc::EMSGSIZE) => &self.tx.too_big,
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN | libc::EHOSTDOWN) => {
                &self.tx.no_route
            }
            Some(libc::EAGAIN | libc::ENOBUFS) => &self.tx.busy,
            _ => &self.tx.errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for TunnelPort {
    fn drop(&mut self) {
        if let Some(ep) = self.ep.take() {
            Endpoint::leave(ep, self.cfg.rx_remote(), self.cfg.rx_key());
        }
    }
}

impl Port for TunnelPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.cfg.proto.name()
    }

    fn mem(&self) -> &PortMem {
        &self.rx.mem
    }

    /// Reads the socket and queues this port's frames on its ring (for
    /// readers other than the switch, which takes them directly).
    fn sync_incoming(&self, _q: usize) {
        self.endpoint().poll(&self.rx, None);
    }

    /// The switch takes frames from the receive batch straight
    /// ([`Port::receive_direct`]); the ring holds what a sibling port's
    /// worker read for this one.
    fn receives_directly(&self) -> bool {
        true
    }

    fn receive_direct(&self, _q: usize, sink: &mut crate::port::DirectSink<'_>) -> usize {
        self.endpoint().poll(&self.rx, Some(sink))
    }

    /// Always: the datagram is the one copy a frame needs.
    fn transmits_directly(&self) -> bool {
        true
    }

    /// A port that sends by flow, and a Geneve port (a frame's
    /// `tun_metadata` fields become its options).
    fn wants_tunnel_meta(&self) -> bool {
        self.cfg.sends_by_flow() || self.cfg.proto == Proto::Geneve
    }

    fn incoming_tunnel_meta(&self, _q: usize) -> Option<&TunMetaSlots> {
        Some(&self.rx.meta)
    }

    /// Without metadata (the switch calls a port that does not send by
    /// flow so): the port's own remote and key. Every frame is taken:
    /// sent, or dropped and counted here.
    fn transmit(&self, frames: &[&[u8]], sender: usize) -> usize {
        if !self.cfg.sends_by_flow() {
            self.send_fixed(frames);
            return frames.len();
        }
        let none = [TunMeta::NONE; BATCH];
        frames
            .chunks(BATCH)
            .map(|c| self.transmit_tunnel(c, &none[..c.len()], sender))
            .sum()
    }

    /// Every frame is taken: sent, or dropped and counted here. A fixed
    /// port's frames without `tun_metadata` fields share one header.
    fn transmit_tunnel(&self, frames: &[&[u8]], meta: &[TunMeta], _sender: usize) -> usize {
        let by_flow = self.cfg.sends_by_flow();
        for (fs, ms) in frames.chunks(BATCH).zip(meta.chunks(BATCH)) {
            let opts = self.cfg.proto == Proto::Geneve && ms.iter().any(|m| m.md_present != 0);
            if !by_flow && !opts {
                self.send_fixed(fs);
                continue;
            }
            let mut go: [&[u8]; BATCH] = [&[]; BATCH];
            let mut enc = [self.encap(); BATCH];
            let mut md = [TunMeta::NONE; BATCH];
            let mut n = 0;
            let inherits = self.cfg.inherits();
            for (f, m) in fs.iter().zip(ms) {
                match self.encap_of(m) {
                    Some(mut e) => {
                        if inherits {
                            (e.tos, e.ttl) = self.tos_ttl(f, e);
                        }
                        (go[n], enc[n], md[n]) = (f, e, *m);
                        n += 1;
                    }
                    None => {
                        self.tx.no_remote.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if n > 0 && opts {
                self.send_with_options(&go[..n], &enc[..n], &md[..n]);
            } else if n > 0 {
                self.send_encapsulated(&go[..n], |i| enc[i]);
            }
        }
        frames.len()
    }

    fn outgoing_published(&self) {
        self.drain.drain(&self.rx.mem, |frames| {
            self.send_fixed(frames);
        });
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let d = &self.rx.drops;
        vec![
            ("too_big", r(&self.tx.too_big)),
            ("tx_no_route", r(&self.tx.no_route)),
            ("tx_busy", r(&self.tx.busy)),
            ("tx_errors", r(&self.tx.errors)),
            ("tx_no_remote", r(&self.tx.no_remote)),
            ("rx_malformed", r(&d.malformed)),
            ("rx_geneve_unsupported", r(&d.geneve_unsupported)),
            ("rx_bad_vni", r(&d.bad_vni)),
            ("rx_oversize", r(&d.oversize)),
            ("rx_ring_full", r(&d.ring_full)),
            // Shared by the ports of one socket.
            ("rx_unknown_remote", r(&self.endpoint().unknown_remote)),
        ]
    }

    fn poll_costs_syscall(&self) -> bool {
        true
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn arm_incoming(&self, _q: usize, cur: u32) -> bool {
        // Frames a sibling port queued for us ring the eventfd once this
        // is armed; datagrams on the socket make it readable by themselves.
        self.rx.mem.incoming().arm_wakeup(cur)
    }

    fn disarm_incoming(&self, _q: usize) {
        self.rx.mem.incoming().disarm_wakeup();
        self.rx.wake.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::driver::PortDriver;
    use std::time::Duration;

    fn free_udp_port() -> u16 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    }

    fn cfg(port: u16, in_key: u32, out_key: u32) -> TunnelConfig {
        let lo = std::net::Ipv4Addr::LOCALHOST.into();
        let mut c = TunnelConfig::new(Proto::Vxlan, lo);
        c.local = Some(lo);
        c.dst_port = port;
        (c.in_key, c.out_key) = (in_key, out_key);
        c
    }

    fn counter(p: &TunnelPort, name: &str) -> u64 {
        p.counters().iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        // One flow (the socket keeps a flow's frames in order).
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    /// Receives on `d` until `n` frames came or 5 s passed.
    fn recv(d: &mut PortDriver, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..500 {
            d.recv(64, |f| got.push(f.to_vec()));
            if got.len() >= n {
                break;
            }
            d.wait(Some(Duration::from_millis(10)));
        }
        got
    }

    #[test]
    fn ports_sharing_a_socket_get_their_own_vni_and_nothing_else() {
        let udp = free_udp_port();
        let mem = MemConfig::new(256, 2048);
        // a sends VNI 2, which b takes; b sends VNI 1, which a takes.
        let a = TunnelPort::open("a", &cfg(udp, 1, 2), mem).unwrap();
        let b = TunnelPort::open("b", &cfg(udp, 2, 1), mem).unwrap();
        assert!(Arc::ptr_eq(a.ep.as_ref().unwrap(), b.ep.as_ref().unwrap()));
        let e = TunnelPort::open("c", &cfg(udp, 2, 9), mem)
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("already takes VNI 2"), "{e}");
        let (mut da, mut db) = (
            PortDriver::new(a.clone() as Arc<dyn Port>),
            PortDriver::new(b.clone() as Arc<dyn Port>),
        );
        let frames: Vec<Vec<u8>> = (0..10).map(|i| frame(i, 60 + usize::from(i))).collect();
        assert_eq!(
            da.send_with(10, |i, buf| {
                buf[..frames[i].len()].copy_from_slice(&frames[i]);
                frames[i].len()
            }),
            10
        );
        // Whoever reads the socket, b's frames land in b's ring, in order.
        let got = recv(&mut db, 10);
        assert_eq!(got, frames);
        // (The datagrams were read, so anything misdelivered to a is there.)
        let mut to_a = 0;
        da.recv(64, |_| to_a += 1);
        assert_eq!(to_a, 0, "a must not hear VNI 2");
        // A VNI nobody takes, from a known remote: one drop, counted on a
        // port of that remote.
        let c = TunnelPort::open("c", &cfg(udp, 7, 3), mem).unwrap();
        let mut dc = PortDriver::new(c.clone() as Arc<dyn Port>);
        dc.send_with(1, |_, buf| {
            buf[..60].copy_from_slice(&frame(9, 60));
            60
        });
        for _ in 0..100 {
            da.recv(64, |_| {});
            db.recv(64, |_| {});
            if [&a, &b, &c]
                .iter()
                .map(|p| counter(p, "rx_bad_vni"))
                .sum::<u64>()
                == 1
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let bad: u64 = [&a, &b, &c].iter().map(|p| counter(p, "rx_bad_vni")).sum();
        assert_eq!(bad, 1);
        // The socket closes with its last port, so the port can be bound again.
        drop((da, db, dc, a, b, c));
        std::net::UdpSocket::bind(("127.0.0.1", udp)).expect("socket closed with its last port");
    }

    /// Has `a`'s worker read the socket until `n` frames wait on `b`'s
    /// ring (within 5 s).
    fn sibling_reads(a: &TunnelPort, b: &TunnelPort, n: u32) {
        for _ in 0..500 {
            a.sync_incoming(0);
            if b.mem().incoming().available(0) == n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(b.mem().incoming().available(0), n);
    }

    #[test]
    fn a_sleeping_port_is_woken_when_a_sibling_reads_its_frames() {
        let udp = free_udp_port();
        let mem = MemConfig::new(256, 2048);
        let a = TunnelPort::open("a", &cfg(udp, 1, 1), mem).unwrap();
        let b = TunnelPort::open("b", &cfg(udp, 2, 2), mem).unwrap();
        let fd = b.incoming_fd(0).unwrap();
        // b's worker goes to sleep on its descriptor.
        assert!(b.arm_incoming(0, 0));
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 2, 0];
        d.extend(frame(3, 60));
        s.send_to(&d, ("127.0.0.1", udp)).unwrap();
        // a's worker reads the socket first and queues b's frame...
        sibling_reads(&a, &b, 1);
        // ...and b's descriptor says so, though the socket is empty now.
        assert!(crate::sys::poll_readable(fd, Some(Duration::from_secs(5))));
        b.disarm_incoming(0);
        assert!(!crate::sys::poll_readable(fd, Some(Duration::ZERO)));
        let mut db = PortDriver::new(b.clone() as Arc<dyn Port>);
        assert_eq!(recv(&mut db, 1), [frame(3, 60)]);
    }

    #[test]
    fn garbage_and_strangers_are_counted_not_delivered() {
        let udp = free_udp_port();
        let mem = MemConfig::new(256, 2048);
        let mut c = cfg(udp, 5, 5);
        // Only 127.0.0.2 is this port's remote: 127.0.0.1 is a stranger.
        c.remote = "127.0.0.2".parse().unwrap();
        c.local = None;
        let p = TunnelPort::open("p", &c, mem).unwrap();
        let mut d = PortDriver::new(p.clone() as Arc<dyn Port>);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut good = vec![0x08, 0, 0, 0, 0, 0, 5, 0];
        good.extend(frame(1, 60));
        s.send_to(&good, ("127.0.0.1", udp)).unwrap();
        let s2 = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        let mut short = good.clone();
        short.truncate(8 + 13);
        let mut flags = good.clone();
        flags[0] = 0x0c;
        let mut huge = good[..8].to_vec();
        huge.extend(vec![0u8; 4000]); // larger than a 2048-byte buffer
        for dgram in [&short, &flags, &huge, &good] {
            s2.send_to(dgram, ("127.0.0.1", udp)).unwrap();
        }
        let got = recv(&mut d, 1);
        assert_eq!(got, [frame(1, 60)]);
        assert_eq!(counter(&p, "rx_unknown_remote"), 1);
        assert_eq!(counter(&p, "rx_malformed"), 2);
        assert_eq!(counter(&p, "rx_oversize"), 1);
    }

    /// The metadata of the frames waiting on `p`'s incoming ring (at most
    /// `n`, waiting up to 5 s for them), by VNI.
    fn waiting_meta(p: &TunnelPort, n: u32) -> Vec<TunMeta> {
        for _ in 0..500 {
            p.sync_incoming(0);
            if p.mem().incoming().available(0) >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = p.incoming_tunnel_meta(0).unwrap();
        let ring = p.mem().incoming();
        let tail = ring.hdr.tail.load(Ordering::Acquire);
        let got = ring.available(tail);
        let mut v: Vec<TunMeta> = (0..got).map(|i| t.load(tail.wrapping_add(i))).collect();
        v.sort_by_key(|m| (m.id, u32::from(m.src)));
        v
    }

    #[test]
    fn a_flow_port_takes_what_no_fixed_port_does_and_sends_by_metadata() {
        let udp = free_udp_port();
        let mem = MemConfig::new(256, 2048);
        let lo = std::net::Ipv4Addr::LOCALHOST;
        let fixed = TunnelPort::open("f", &cfg(udp, 5, 5), mem).unwrap();
        let mut fc = cfg(udp, 0, 0);
        fc.set("remote", "flow").unwrap();
        fc.set("key", "flow").unwrap();
        let flow = TunnelPort::open("fl", &fc, mem).unwrap();
        assert!(flow.wants_tunnel_meta() && flow.transmits_directly());
        assert!(!fixed.wants_tunnel_meta() && fixed.transmits_directly());
        // A second port with both flow-based is the same match: refused.
        let e = TunnelPort::open("fl2", &fc, mem).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("VNI flow from flow"), "{e}");
        let dgram = |vni: u8| {
            let mut d = vec![0x08, 0, 0, 0, 0, 0, vni, 0];
            d.extend(frame(vni, 60));
            d
        };
        let s1 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s2 = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        // (127.0.0.1, 5) is the fixed port's; the others the flow port's.
        s1.send_to(&dgram(5), ("127.0.0.1", udp)).unwrap();
        s1.send_to(&dgram(9), ("127.0.0.1", udp)).unwrap();
        s2.send_to(&dgram(5), ("127.0.0.1", udp)).unwrap();
        let m = |id, src: [u8; 4]| TunMeta::v4(id, src.into(), lo);
        assert_eq!(
            waiting_meta(&flow, 2),
            [m(5, [127, 0, 0, 2]), m(9, [127, 0, 0, 1])]
        );
        assert_eq!(waiting_meta(&fixed, 1), [m(5, [127, 0, 0, 1])]);
        let mut d = PortDriver::new(flow.clone() as Arc<dyn Port>);
        let mut got = recv(&mut d, 2);
        got.sort();
        assert_eq!(got, [frame(5, 60), frame(9, 60)]);
        // Out: to the frame's tun_dst with its tun_id; a frame without a
        // tun_dst, or with the port's own local address as tun_dst (as a
        // frame from a tunnel comes in), is dropped and counted.
        let peer = std::net::UdpSocket::bind(("127.0.0.2", udp)).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let f = frame(7, 70);
        let to = |id, dst| TunMeta::v4(id, std::net::Ipv4Addr::UNSPECIFIED, dst);
        let out = [to(77, [127, 0, 0, 2].into()), TunMeta::NONE, to(78, lo)];
        assert_eq!(flow.transmit_tunnel(&[&f, &f, &f], &out, 0), 3);
        assert_eq!(counter(&flow, "tx_no_remote"), 2);
        let mut buf = [0u8; 2048];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        // From the port's address; the source port is one of the socket's
        // per-flow ports.
        assert_eq!(from.ip(), std::net::IpAddr::from(lo));
        assert_eq!(buf[..8], [0x08, 0, 0, 0, 0, 0, 77, 0]);
        assert_eq!(&buf[8..n], &f[..]);
    }

    #[test]
    fn tun_dst_is_where_a_datagram_went_and_is_never_a_remote() {
        // Bound to any address: each frame's tun_dst is the address its
        // datagram was sent to, and such an address is never sent to.
        let udp = free_udp_port();
        let mut c = TunnelConfig::new(Proto::Vxlan, std::net::Ipv4Addr::LOCALHOST.into());
        c.dst_port = udp;
        c.set("remote", "flow").unwrap();
        c.set("key", "flow").unwrap();
        let p = TunnelPort::open("any", &c, MemConfig::new(256, 2048)).unwrap();
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 4, 0];
        d.extend(frame(4, 60));
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(&d, ("127.0.0.3", udp)).unwrap();
        let meta = waiting_meta(&p, 1);
        assert_eq!(meta.len(), 1);
        assert_eq!(meta[0].dst, std::net::Ipv4Addr::new(127, 0, 0, 3));
        let f = frame(7, 70);
        assert_eq!(p.transmit_tunnel(&[&f], &meta, 0), 1);
        assert_eq!(counter(&p, "tx_no_remote"), 1);
    }

    #[test]
    fn an_ipv6_flow_port_records_ipv6_endpoints_and_never_sends_to_its_own() {
        if !std::path::Path::new("/proc/net/if_inet6").exists() {
            return;
        }
        let lo6 = std::net::Ipv6Addr::LOCALHOST;
        let udp = std::net::UdpSocket::bind("[::1]:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = TunnelConfig::new(Proto::Vxlan, lo6.into());
        c.dst_port = udp;
        c.set("remote", "flow").unwrap();
        c.set("key", "flow").unwrap();
        c.set("local", "::1").unwrap();
        let p = TunnelPort::open("v6", &c, MemConfig::new(256, 2048)).unwrap();
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 4, 0];
        d.extend(frame(4, 60));
        s.send_to(&d, ("::1", udp)).unwrap();
        // tun_ipv6_src/dst, from the sender and IPV6_PKTINFO; tun_src/dst 0.
        let meta = waiting_meta(&p, 1);
        assert_eq!(meta, [TunMeta::v6(4, lo6, lo6)]);
        // Back to where it came from (this host): dropped and counted; so
        // is an IPv4 tun_dst (not this socket's family), and nothing.
        let f = frame(7, 70);
        let v4 = TunMeta::v4(4, Ipv4Addr::UNSPECIFIED, [192, 0, 2, 1].into());
        let out = [meta[0], v4, TunMeta::NONE];
        assert_eq!(p.transmit_tunnel(&[&f, &f, &f], &out, 0), 3);
        assert_eq!(counter(&p, "tx_no_remote"), 3);
        assert!(is_local_addr6(lo6));
    }

    #[test]
    fn what_the_own_ring_has_no_room_for_waits_for_the_next_poll() {
        // 40 datagrams at once for a port whose ring holds 8: each poll
        // queues what fits, the rest waits in the receive batch, and none
        // is dropped.
        let udp = free_udp_port();
        let p = TunnelPort::open("small", &cfg(udp, 3, 3), MemConfig::new(8, 2048)).unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i, 60)).collect();
        for f in &frames {
            let mut d = vec![0x08, 0, 0, 0, 0, 0, 3, 0];
            d.extend(f);
            s.send_to(&d, ("127.0.0.1", udp)).unwrap();
        }
        let mut d = PortDriver::new(p.clone() as Arc<dyn Port>);
        assert_eq!(recv(&mut d, 40), frames);
        assert_eq!(counter(&p, "rx_ring_full"), 0);
    }

    /// What `receive_direct` hands `p`'s switch within 5 s (until `n`
    /// frames came): each frame with its metadata.
    #[allow(unsafe_code)]
    fn direct(p: &TunnelPort, n: usize) -> Vec<(Vec<u8>, TunMeta)> {
        let mut got = Vec::new();
        for _ in 0..500 {
            p.receive_direct(0, &mut |frames, meta, _| {
                for f in frames {
                    // SAFETY: the port holds the frame for the sink's call.
                    let b = unsafe { std::slice::from_raw_parts(f.ptr, f.len()) };
                    got.push((b.to_vec(), meta));
                }
            });
            if got.len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        got
    }

    #[test]
    fn the_switch_takes_frames_straight_from_the_receive_batch_with_their_metadata() {
        let udp = free_udp_port();
        let p = TunnelPort::open("d", &cfg(udp, 6, 6), MemConfig::new(256, 2048)).unwrap();
        assert!(p.receives_directly());
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 60 + usize::from(i))).collect();
        for f in &frames {
            let mut d = vec![0x08, 0, 0, 0, 0, 0, 6, 0];
            d.extend(f);
            s.send_to(&d, ("127.0.0.1", udp)).unwrap();
        }
        let got = direct(&p, 5);
        let want: Vec<_> = frames
            .iter()
            .map(|f| {
                let lo = std::net::Ipv4Addr::LOCALHOST;
                (f.clone(), TunMeta::v4(6, lo, lo))
            })
            .collect();
        assert_eq!(got, want);
        // Nothing went through the ring.
        assert_eq!(p.mem().incoming().hdr.head.load(Ordering::Acquire), 0);
    }

    #[test]
    fn frames_a_sibling_queued_go_before_what_the_port_reads_itself() {
        // a and b share the socket. a's worker reads b's first frame into
        // b's ring; b's next frame must not overtake it: while b's ring
        // holds frames, b's own reads queue behind them.
        let udp = free_udp_port();
        let [a, b] = [1, 2].map(|k| {
            TunnelPort::open(&k.to_string(), &cfg(udp, k, k), MemConfig::new(256, 2048)).unwrap()
        });
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let send = |f: &[u8]| {
            let mut d = vec![0x08, 0, 0, 0, 0, 0, 2, 0];
            d.extend(f);
            s.send_to(&d, ("127.0.0.1", udp)).unwrap();
        };
        send(&frame(1, 60));
        sibling_reads(&a, &b, 1);
        // (A loopback datagram is in the socket when send_to returns.)
        send(&frame(2, 60));
        // b's worker has not read its ring yet: nothing is handed over,
        // the new frame queues behind the first.
        let mut handed = 0;
        b.receive_direct(0, &mut |f, _, _| handed += f.len());
        assert_eq!(handed, 0);
        assert_eq!(b.mem().incoming().available(0), 2);
        let mut db = PortDriver::new(b.clone() as Arc<dyn Port>);
        assert_eq!(recv(&mut db, 2), [frame(1, 60), frame(2, 60)]);
    }
}
