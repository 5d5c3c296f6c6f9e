//! smoltcp's `phy::Device` over a vport, with the Ethernet layer done here.
//!
//! Behind `demux` the application shares the host's IP addresses, and
//! address resolution for them (ARP, IPv6 neighbour discovery) is the host
//! kernel's business: `demux` hands those packets to the host port. So the
//! stack runs on `Medium::Ip` and this device adds and strips Ethernet
//! itself:
//!
//! - In: an IPv4 or IPv6 frame addressed to our MAC (the host's; broadcast
//!   too) is handed to the stack without its Ethernet header (and without
//!   any Ethernet padding), and its source IP is remembered with its source
//!   MAC (the sender, or the router it came through). Anything else, or a
//!   frame whose IP header is short or inconsistent, is dropped and
//!   counted.
//! - Out: a packet goes from our MAC to the MAC last seen with its
//!   destination IP. A server only ever answers peers it heard from; a
//!   packet to an address never seen is dropped and counted.
//!
//! Without a configured MAC the device adopts the destination MAC of the
//! first unicast IP frame it receives: `demux` delivers only the
//! application's own tuples, and those frames are addressed to the host's
//! interface, whose MAC is the one to answer from.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mswitch::client::VportConn;
use mswitch::wire::MacAddr;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The largest IP packet sent or received (the Ethernet MTU).
pub const MTU: usize = 1500;
const ETH_LEN: usize = 14;
/// Peers remembered (IP to MAC); past this the longest unheard is forgotten.
pub const MAX_NEIGHBOURS: usize = 1024;
/// Frames taken from the link at a time.
const RX_BATCH: usize = 64;

/// A frame link: what the device needs from a vport (a test's fake too).
pub trait Link {
    /// Hands up to `max` received frames to `f`; returns how many.
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> usize;
    /// Queues one frame; false if there is no room.
    fn send(&mut self, frame: &[u8]) -> bool;
    /// Whether a frame can be queued now.
    fn has_room(&self) -> bool;
    /// Sleeps until frames arrive or `timeout` passes (`None`: until frames
    /// arrive); an error ends the session.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), String>;
}

impl Link for VportConn {
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        (**self).recv(max, f)
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        self.send_one(frame)
    }

    fn has_room(&self) -> bool {
        self.send_room() > 0
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), String> {
        (**self).wait(timeout);
        Ok(())
    }
}

/// What the device counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// IP packets handed to the stack.
    pub rx: u64,
    /// Frames dropped on the way in: not IP, not for our MAC, malformed.
    pub rx_dropped: u64,
    /// Frames queued on the link.
    pub tx: u64,
    /// Packets dropped on the way out: no MAC known for the destination.
    pub tx_no_neighbour: u64,
    /// Packets dropped on the way out: the link had no room.
    pub tx_full: u64,
}

/// The part of the device a transmit token borrows.
struct Out<L> {
    link: L,
    mac: Option<MacAddr>,
    /// Peer IP to (MAC, when last heard, in ms).
    neighbours: HashMap<IpAddr, (MacAddr, i64)>,
    now_ms: i64,
    scratch: Vec<u8>,
    counters: Counters,
}

/// smoltcp's device on a [`Link`] (see the module's documentation).
pub struct VportDevice<L: Link> {
    out: Out<L>,
    /// Received IP packets, Ethernet stripped, for the stack.
    rx: VecDeque<Vec<u8>>,
}

impl<L: Link> VportDevice<L> {
    /// A device sending from `mac` (`None`: adopt it, see above).
    pub fn new(link: L, mac: Option<MacAddr>) -> VportDevice<L> {
        VportDevice {
            out: Out {
                link,
                mac,
                neighbours: HashMap::new(),
                now_ms: 0,
                scratch: Vec::with_capacity(ETH_LEN + MTU),
                counters: Counters::default(),
            },
            rx: VecDeque::new(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.out.counters
    }

    /// The MAC we send from, once known.
    pub fn mac(&self) -> Option<MacAddr> {
        self.out.mac
    }

    /// The MAC last seen with `ip` as its source.
    pub fn neighbour(&self, ip: IpAddr) -> Option<MacAddr> {
        self.out.neighbours.get(&ip).map(|&(m, _)| m)
    }

    pub fn link(&self) -> &L {
        &self.out.link
    }

    pub fn link_mut(&mut self) -> &mut L {
        &mut self.out.link
    }

    /// Takes up to a batch of frames from the link for the stack (which
    /// takes only what was pulled: a flood cannot keep it from its
    /// sockets); returns how many frames it read (kept or dropped).
    pub fn pull(&mut self, now: Instant) -> usize {
        let Self { out, rx } = self;
        out.now_ms = now.total_millis();
        let now = out.now_ms;
        let Out {
            link,
            mac,
            neighbours,
            counters,
            ..
        } = out;
        link.recv(RX_BATCH, &mut |f| match accept(f, mac) {
            Some((src_ip, src_mac, ip)) => {
                learn(neighbours, src_ip, src_mac, now);
                rx.push_back(ip.to_vec());
                counters.rx += 1;
            }
            None => counters.rx_dropped += 1,
        })
    }
}

/// The IP packet of frame `f` if it is for us (adopting the MAC when we
/// have none), with its source IP and source MAC.
fn accept<'f>(f: &'f [u8], mac: &mut Option<MacAddr>) -> Option<(IpAddr, MacAddr, &'f [u8])> {
    if f.len() < ETH_LEN {
        return None;
    }
    let (dst, src) = (
        MacAddr::from_bytes(&f[0..6]),
        MacAddr::from_bytes(&f[6..12]),
    );
    let for_us = match *mac {
        Some(m) => dst == m || dst.is_broadcast(),
        None => !dst.is_multicast(),
    };
    if !for_us || src.is_multicast() {
        return None;
    }
    let ip = &f[ETH_LEN..];
    let (src_ip, total) = match (u16::from_be_bytes([f[12], f[13]]), ip.first()? >> 4) {
        (0x0800, 4) if ip.len() >= 20 => {
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if usize::from(ip[0] & 0xf) * 4 < 20 || total < 20 {
                return None;
            }
            let a = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                return None;
            }
            (IpAddr::V4(a), total)
        }
        (0x86dd, 6) if ip.len() >= 40 => {
            let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            if a.is_unspecified() || a.is_multicast() {
                return None;
            }
            (IpAddr::V6(a), total)
        }
        _ => return None,
    };
    if total > ip.len() {
        return None;
    }
    mac.get_or_insert(dst);
    Some((src_ip, src, &ip[..total]))
}

/// Remembers `mac` for `ip`, forgetting the longest unheard peer when full.
fn learn(n: &mut HashMap<IpAddr, (MacAddr, i64)>, ip: IpAddr, mac: MacAddr, now: i64) {
    if n.len() >= MAX_NEIGHBOURS && !n.contains_key(&ip) {
        let oldest = n.iter().min_by_key(|&(_, &(_, t))| t).map(|(&k, _)| k);
        if let Some(k) = oldest {
            n.remove(&k);
        }
    }
    n.insert(ip, (mac, now));
}

impl<L: Link> Out<L> {
    /// Sends IP packet `len` bytes long, written by `f`, in a frame.
    fn send<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.scratch.clear();
        self.scratch.resize(ETH_LEN + len, 0);
        let r = f(&mut self.scratch[ETH_LEN..]);
        let ip = &self.scratch[ETH_LEN..];
        let (to, ethertype) = match ip.first().map(|b| b >> 4) {
            Some(4) if ip.len() >= 20 => {
                let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                let to = if d.is_broadcast() {
                    Some(MacAddr::BROADCAST)
                } else {
                    self.neighbours.get(&IpAddr::V4(d)).map(|&(m, _)| m)
                };
                (to, 0x0800u16)
            }
            Some(6) if ip.len() >= 40 => {
                let d: [u8; 16] = ip[24..40].try_into().unwrap_or_default();
                let to = if d[0] == 0xff {
                    // IPv6 multicast: 33:33 and the group's last 32 bits.
                    Some(MacAddr([0x33, 0x33, d[12], d[13], d[14], d[15]]))
                } else {
                    let d = IpAddr::V6(Ipv6Addr::from(d));
                    self.neighbours.get(&d).map(|&(m, _)| m)
                };
                (to, 0x86dd)
            }
            _ => (None, 0),
        };
        let (Some(to), Some(from)) = (to, self.mac) else {
            self.counters.tx_no_neighbour += 1;
            return r;
        };
        self.scratch[0..6].copy_from_slice(&to.0);
        self.scratch[6..12].copy_from_slice(&from.0);
        self.scratch[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if self.link.send(&self.scratch) {
            self.counters.tx += 1;
        } else {
            self.counters.tx_full += 1;
        }
        r
    }
}

pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct TxToken<'a, L>(&'a mut Out<L>);

impl<L: Link> phy::TxToken for TxToken<'_, L> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.0.send(len, f)
    }
}

impl<L: Link> phy::Device for VportDevice<L> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, L>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(RxToken, TxToken<'_, L>)> {
        self.out.now_ms = now.total_millis();
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.out)))
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_, L>> {
        self.out.now_ms = now.total_millis();
        self.out.link.has_room().then_some(TxToken(&mut self.out))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = MTU;
        c
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
