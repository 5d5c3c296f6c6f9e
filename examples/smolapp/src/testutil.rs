//! Test helpers: a fake link, and frames built with smoltcp's wire module.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mswitch::wire::MacAddr;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr,
    UdpPacket, UdpRepr,
};

use crate::device::Link;

/// Frames in, frames out, and room for `room` more.
#[derive(Default)]
pub struct Fake {
    pub inbox: VecDeque<Vec<u8>>,
    pub sent: Vec<Vec<u8>>,
    pub room: usize,
}

impl Fake {
    pub fn new() -> Fake {
        Fake {
            room: usize::MAX,
            ..Fake::default()
        }
    }
}

impl Link for Fake {
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let n = max.min(self.inbox.len());
        for p in self.inbox.drain(..n) {
            f(&p);
        }
        n
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        if self.room == 0 {
            return false;
        }
        self.room = self.room.saturating_sub(1);
        self.sent.push(frame.to_vec());
        true
    }

    fn has_room(&self) -> bool {
        self.room > 0
    }

    fn wait(&mut self, _timeout: Option<Duration>) -> Result<(), String> {
        Ok(())
    }
}

pub const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
pub const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const HOST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

/// An Ethernet frame around IPv4 packet `ip`.
pub fn eth(dst: MacAddr, src: MacAddr, ethertype: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, l4_len: usize) -> (Vec<u8>, Ipv4Repr) {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: l4_len,
        hop_limit: 64,
    };
    let mut b = vec![0u8; repr.buffer_len() + l4_len];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut b),
        &ChecksumCapabilities::default(),
    );
    (b, repr)
}

/// An IPv4/UDP packet.
pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let u = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let (mut b, r) = ipv4(src.0, dst.0, IpProtocol::Udp, 8 + payload.len());
    let off = r.buffer_len();
    u.emit(
        &mut UdpPacket::new_unchecked(&mut b[off..]),
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    b
}

/// An IPv6/UDP packet.
pub fn udp6(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), payload: &[u8]) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let mut b = vec![0u8; repr.buffer_len() + 8 + payload.len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut b));
    let u = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    u.emit(
        &mut UdpPacket::new_unchecked(&mut b[repr.buffer_len()..]),
        &IpAddress::Ipv6(src.0),
        &IpAddress::Ipv6(dst.0),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    b
}

/// An IPv4/TCP packet.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, t: &TcpRepr) -> Vec<u8> {
    let (mut b, r) = ipv4(src, dst, IpProtocol::Tcp, t.buffer_len());
    let off = r.buffer_len();
    t.emit(
        &mut TcpPacket::new_unchecked(&mut b[off..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        &ChecksumCapabilities::default(),
    );
    b
}

/// A frame's IPv4 packet, checked (header checksum included).
pub fn parse_ipv4(frame: &[u8]) -> (Ipv4Repr, Vec<u8>) {
    assert_eq!(frame[12..14], [8, 0], "not IPv4");
    let p = Ipv4Packet::new_checked(&frame[14..]).expect("an IPv4 packet");
    let r = Ipv4Repr::parse(&p, &ChecksumCapabilities::default()).expect("a valid IPv4 header");
    (r, p.payload().to_vec())
}
