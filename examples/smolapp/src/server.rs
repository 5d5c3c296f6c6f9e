//! The application: smoltcp on a [`VportDevice`], a UDP echo on one port
//! and a TCP echo on another, both on the addresses the host's kernel uses
//! (an IPv4 one, an IPv6 one, or both).
//!
//! UDP: each datagram goes back to its sender as it came (a datagram is
//! taken off the receive queue only once its answer is queued). TCP: a
//! few sockets listen on the port, so that many connections are served at
//! once (one more is refused with a reset, smoltcp's answer when no
//! socket listens); each echoes what it reads as its send buffer has room
//! (the peer's window throttles its own sending), closes when the peer
//! has closed and everything is echoed, and listens again when closed. A
//! connection that hears nothing for a minute (keep-alives go every 20 s)
//! is aborted, so vanished peers do not keep sockets forever.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mswitch::wire::MacAddr;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{HardwareAddress, IpCidr, IpListenEndpoint};

use crate::device::{Counters, Link, VportDevice};

/// What the application serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The host's IPv4 address and prefix length, which the application
    /// shares.
    pub v4: Option<(Ipv4Addr, u8)>,
    /// The host's IPv6 address and prefix length, likewise.
    pub v6: Option<(Ipv6Addr, u8)>,
    /// The host's MAC (`None`: adopted from the first frame, see
    /// [`crate::device`]).
    pub mac: Option<MacAddr>,
    pub udp: Option<u16>,
    pub tcp: Option<u16>,
    /// TCP connections served at once.
    pub tcp_conns: usize,
}

impl Settings {
    /// The addresses served.
    pub fn addrs(&self) -> Vec<IpAddr> {
        let v4 = self.v4.map(|(a, _)| IpAddr::V4(a));
        v4.into_iter()
            .chain(self.v6.map(|(a, _)| IpAddr::V6(a)))
            .collect()
    }

    /// Why these settings cannot be served, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if let Some((a, len)) = self.v4
            && (len > 32 || a.is_unspecified() || a.is_multicast() || a.is_broadcast())
        {
            return Err(format!("{a}/{len} is not a host address"));
        }
        if let Some((a, len)) = self.v6
            && (len > 128 || a.is_unspecified() || a.is_multicast())
        {
            return Err(format!("{a}/{len} is not a host address"));
        }
        if self.v4.is_none() && self.v6.is_none() {
            return Err("no address to serve on".into());
        }
        if self.udp.is_none() && self.tcp.is_none() {
            return Err("nothing to serve: give a UDP port, a TCP port or both".into());
        }
        if self.udp == Some(0) || self.tcp == Some(0) {
            return Err("port 0 cannot be served".into());
        }
        Ok(())
    }
}

const UDP_SLOTS: usize = 64;
const UDP_BYTES: usize = 64 * 1024;
const TCP_BYTES: usize = 64 * 1024;
const TCP_TIMEOUT: u64 = 60;
const TCP_KEEPALIVE: u64 = 20;

/// smoltcp's interface, sockets and device, and the echo logic.
pub struct App<L: Link> {
    dev: VportDevice<L>,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: Option<SocketHandle>,
    tcp: Vec<SocketHandle>,
    tcp_port: u16,
    scratch: Vec<u8>,
    /// Bytes and datagrams echoed.
    pub echoed: Echoed,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Echoed {
    pub udp_datagrams: u64,
    pub tcp_bytes: u64,
    pub tcp_connections: u64,
}

impl<L: Link> App<L> {
    /// The stack on `link`, its sockets bound; `seed` makes TCP's initial
    /// sequence numbers (give it something unpredictable).
    pub fn new(link: L, s: &Settings, seed: u64, now: Instant) -> Result<App<L>, String> {
        s.check()?;
        let mut dev = VportDevice::new(link, s.mac);
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, now);
        iface.update_ip_addrs(|a| {
            // At most two addresses (one of each) on a fresh interface:
            // there is room.
            if let Some((ip, len)) = s.v4 {
                let _ = a.push(IpCidr::new(ip.into(), len));
            }
            if let Some((ip, len)) = s.v6 {
                let _ = a.push(IpCidr::new(ip.into(), len));
            }
        });
        // Every destination is "on link": the device sends to the MAC each
        // peer's frames came from (a router's, for a peer beyond one), so
        // the gateways named here are never looked up.
        let full = |_| "route table full".to_owned();
        if let Some((ip, _)) = s.v4 {
            iface
                .routes_mut()
                .add_default_ipv4_route(ip)
                .map_err(full)?;
        }
        if let Some((ip, _)) = s.v6 {
            iface
                .routes_mut()
                .add_default_ipv6_route(ip)
                .map_err(full)?;
        }
        let mut sockets = SocketSet::new(Vec::new());
        // On every address of the interface (which are the host's).
        let endpoint = |port| IpListenEndpoint { addr: None, port };
        let udp = match s.udp {
            Some(port) => {
                let buf = || {
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
                        vec![0; UDP_BYTES],
                    )
                };
                let mut u = udp::Socket::new(buf(), buf());
                u.bind(endpoint(port))
                    .map_err(|e| format!("udp port {port}: {e}"))?;
                Some(sockets.add(u))
            }
            None => None,
        };
        let mut tcp = Vec::new();
        if s.tcp.is_some() {
            for _ in 0..s.tcp_conns.max(1) {
                let t = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_BYTES]),
                    tcp::SocketBuffer::new(vec![0; TCP_BYTES]),
                );
                tcp.push(sockets.add(t));
            }
        }
        let mut app = App {
            dev,
            iface,
            sockets,
            udp,
            tcp,
            tcp_port: s.tcp.unwrap_or(0),
            scratch: vec![0; TCP_BYTES],
            echoed: Echoed::default(),
        };
        app.serve();
        Ok(app)
    }

    pub fn device(&self) -> &VportDevice<L> {
        &self.dev
    }

    pub fn device_mut(&mut self) -> &mut VportDevice<L> {
        &mut self.dev
    }

    pub fn counters(&self) -> Counters {
        self.dev.counters()
    }

    /// Runs the stack and the servers until nothing is left to do now;
    /// returns whether anything was received or sent.
    pub fn poll(&mut self, now: Instant) -> bool {
        let before = self.dev.counters();
        // A batch of frames per round, then the sockets' turn; bounded, so
        // the caller's loop goes on under any load.
        for _ in 0..64 {
            let pulled = self.dev.pull(now);
            let r = self.iface.poll(now, &mut self.dev, &mut self.sockets);
            let served = self.serve();
            if pulled == 0 && r == PollResult::None && !served {
                break;
            }
        }
        let after = self.dev.counters();
        after.rx + after.rx_dropped != before.rx + before.rx_dropped || after.tx != before.tx
    }

    /// How long the stack may sleep from `now` before its next timer.
    pub fn delay(&mut self, now: Instant) -> Option<Duration> {
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    /// Echoes what the sockets hold; returns whether it moved anything or
    /// changed a socket's state.
    fn serve(&mut self) -> bool {
        let mut moved = false;
        if let Some(h) = self.udp {
            let u = self.sockets.get_mut::<udp::Socket>(h);
            // Answer first, then drop the request: nothing is lost when the
            // send queue is full (the rest waits for the next round).
            while let Ok((data, meta)) = u.peek() {
                let meta = *meta;
                let data = data.to_vec();
                if u.send_slice(&data, meta).is_err() {
                    break;
                }
                let _ = u.recv();
                self.echoed.udp_datagrams += 1;
                moved = true;
            }
        }
        for &h in &self.tcp {
            let t = self.sockets.get_mut::<tcp::Socket>(h);
            if !t.is_open() {
                if t.listen(self.tcp_port).is_ok() {
                    t.set_timeout(Some(SmolDuration::from_secs(TCP_TIMEOUT)));
                    t.set_keep_alive(Some(SmolDuration::from_secs(TCP_KEEPALIVE)));
                    // An echo answers in pieces as they come: no waiting
                    // for the peer's (maybe delayed) ACK before each.
                    t.set_nagle_enabled(false);
                    moved = true;
                }
                continue;
            }
            let room = t.send_capacity() - t.send_queue();
            if t.can_recv() && room > 0 {
                let n = t.recv_slice(&mut self.scratch[..room]).unwrap_or(0);
                if n > 0 {
                    // Fits: `room` was free.
                    let sent = t.send_slice(&self.scratch[..n]).unwrap_or(0);
                    debug_assert_eq!(sent, n);
                    self.echoed.tcp_bytes += sent as u64;
                    moved = true;
                }
            }
            if !t.may_recv() && t.recv_queue() == 0 && t.send_queue() == 0 && t.may_send() {
                t.close();
                self.echoed.tcp_connections += 1;
                moved = true;
            }
        }
        moved
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
