//! IPv4 and IPv6 headers and the transport ports behind them, as zero-copy
//! views: [`Ipv4Packet`] and [`Ipv6Packet`] check their length once in
//! `new_checked`, after which no getter panics. [`Layers::parse`] reads,
//! from a whole Ethernet frame, what filters and balancers go by.
//!
//! ```
//! use mswitch::wire::ip::{Layers, PROTO_UDP};
//! use mswitch::wire::{MacAddr, udp_frame};
//!
//! let f = udp_frame(60, MacAddr::BROADCAST, MacAddr::local(1), [10, 0, 0, 1], [10, 0, 0, 2], 4000, 53);
//! let l = Layers::parse(&f).unwrap();
//! assert_eq!(l.ethertype, 0x0800);
//! let ip = l.ip.unwrap();
//! assert_eq!((ip.proto, ip.dst.to_string().as_str()), (PROTO_UDP, "10.0.0.2"));
//! assert_eq!(l.ports, Some((4000, 53)));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ethernet::{ETHERTYPE_IPV4, EthernetFrame, Truncated};

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// Why a header view was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Malformed {
    #[error("truncated IPv{version} header ({len} bytes)")]
    Truncated { version: u8, len: usize },
    #[error("IP version {0} where {1} was expected")]
    Version(u8, u8),
    #[error("IPv4 header length {0} (at least 20)")]
    HeaderLen(usize),
}

/// A view of an IPv4 header and what follows it.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks the version, and that the buffer holds the whole header
    /// (options included).
    pub fn new_checked(buf: T) -> Result<Self, Malformed> {
        let b = buf.as_ref();
        let Some(&first) = b.first() else {
            return Err(Malformed::Truncated { version: 4, len: 0 });
        };
        if first >> 4 != 4 {
            return Err(Malformed::Version(first >> 4, 4));
        }
        let ihl = usize::from(first & 0xf) * 4;
        if ihl < 20 {
            return Err(Malformed::HeaderLen(ihl));
        }
        if b.len() < ihl {
            return Err(Malformed::Truncated {
                version: 4,
                len: b.len(),
            });
        }
        Ok(Ipv4Packet { buf })
    }

    /// The header's length in bytes, options included (20 to 60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0xf) * 4
    }

    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }

    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// A fragment (more fragments set, or a non-zero offset): only the
    /// first fragment carries the transport header.
    pub fn is_fragment(&self) -> bool {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[6], b[7]]) & 0x3fff != 0
    }

    /// A fragment other than the first (non-zero offset).
    pub fn is_later_fragment(&self) -> bool {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[6], b[7]]) & 0x1fff != 0
    }

    /// The bytes after the header (up to the buffer's end: link padding
    /// is not trimmed).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
}

/// A view of an IPv6 fixed header and what follows it.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const HEADER_LEN: usize = 40;

    /// Checks the version, and that the buffer holds the fixed header.
    pub fn new_checked(buf: T) -> Result<Self, Malformed> {
        let b = buf.as_ref();
        if b.len() < Self::HEADER_LEN {
            return Err(Malformed::Truncated {
                version: 6,
                len: b.len(),
            });
        }
        if b[0] >> 4 != 6 {
            return Err(Malformed::Version(b[0] >> 4, 6));
        }
        Ok(Ipv6Packet { buf })
    }

    /// The fixed header's next header: the transport protocol unless
    /// extension headers follow.
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr(8))
    }

    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr(24))
    }

    fn addr(&self, at: usize) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buf.as_ref()[at..at + 16]);
        a
    }

    /// The bytes after the fixed header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[Self::HEADER_LEN..]
    }
}

/// Whether `proto` starts with 16-bit source and destination ports.
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

/// The IP layer of a frame, as [`Layers`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    /// The transport protocol (IPv6: the fixed header's next header).
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// An IPv4 fragment (any, the first included).
    pub fragment: bool,
}

/// What a frame carries, as far as a stateless filter needs: the ethertype,
/// the IP layer if it is IPv4 or IPv6, and the transport ports if they can
/// be read (TCP, UDP or SCTP, not a later IPv4 fragment, and for IPv6 with
/// no extension header before them). A VLAN-tagged frame stops at its
/// ethertype (0x8100).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    pub ethertype: u16,
    pub ip: Option<IpInfo>,
    /// (source, destination).
    pub ports: Option<(u16, u16)>,
}

impl Layers {
    /// Reads a frame. Only a frame shorter than an Ethernet header is an
    /// error; a malformed or truncated IP header leaves `ip` empty, and a
    /// transport header cut short leaves `ports` empty.
    pub fn parse(frame: &[u8]) -> Result<Layers, Truncated> {
        let eth = EthernetFrame::new_checked(frame)?;
        let mut l = Layers {
            ethertype: eth.ethertype(),
            ip: None,
            ports: None,
        };
        let (info, ip_len, later) = match l.ethertype {
            ETHERTYPE_IPV4 => match Ipv4Packet::new_checked(eth.payload()) {
                Ok(p) => {
                    let info = IpInfo {
                        proto: p.protocol(),
                        src: p.src().into(),
                        dst: p.dst().into(),
                        fragment: p.is_fragment(),
                    };
                    (info, p.header_len(), p.is_later_fragment())
                }
                Err(_) => return Ok(l),
            },
            ETHERTYPE_IPV6 => match Ipv6Packet::new_checked(eth.payload()) {
                Ok(p) => {
                    let info = IpInfo {
                        proto: p.next_header(),
                        src: p.src().into(),
                        dst: p.dst().into(),
                        fragment: false,
                    };
                    (info, Ipv6Packet::<&[u8]>::HEADER_LEN, false)
                }
                Err(_) => return Ok(l),
            },
            _ => return Ok(l),
        };
        l.ip = Some(info);
        if has_ports(info.proto) && !later {
            let l4 = super::ethernet::HEADER_LEN + ip_len;
            l.ports = frame.get(l4..l4 + 4).map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                )
            });
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MacAddr, udp_frame};

    fn v4_frame(proto: u8, flags_frag: u16, ihl: u8) -> Vec<u8> {
        let mut f = udp_frame(
            80,
            MacAddr::BROADCAST,
            MacAddr::local(1),
            [1, 2, 3, 4],
            [5, 6, 7, 8],
            10,
            20,
        );
        f[14] = 0x40 | ihl;
        f[14 + 6..14 + 8].copy_from_slice(&flags_frag.to_be_bytes());
        f[14 + 9] = proto;
        f
    }

    #[test]
    fn ipv4_views_and_ports() {
        let f = v4_frame(PROTO_TCP, 0x4000, 5); // DF: not a fragment
        let l = Layers::parse(&f).unwrap();
        let ip = l.ip.unwrap();
        assert_eq!(ip.proto, PROTO_TCP);
        assert_eq!(ip.src, IpAddr::from([1, 2, 3, 4]));
        assert_eq!(ip.dst, IpAddr::from([5, 6, 7, 8]));
        assert!(!ip.fragment);
        assert_eq!(l.ports, Some((10, 20)));
        // Options: the ports move behind them.
        let mut o = v4_frame(PROTO_UDP, 0, 6);
        o[38..42].copy_from_slice(&[0, 7, 0, 9]);
        assert_eq!(Layers::parse(&o).unwrap().ports, Some((7, 9)));
        let p = Ipv4Packet::new_checked(&o[14..]).unwrap();
        assert_eq!(
            (p.header_len(), p.ttl(), p.payload().len()),
            (24, 64, 80 - 14 - 24)
        );
    }

    #[test]
    fn fragments_and_portless_protocols() {
        let first = Layers::parse(&v4_frame(PROTO_UDP, 0x2000, 5)).unwrap();
        assert!(first.ip.unwrap().fragment);
        assert_eq!(first.ports, Some((10, 20)));
        let later = Layers::parse(&v4_frame(PROTO_UDP, 0x0010, 5)).unwrap();
        assert!(later.ip.unwrap().fragment);
        assert_eq!(later.ports, None);
        let icmp = Layers::parse(&v4_frame(PROTO_ICMP, 0, 5)).unwrap();
        assert_eq!((icmp.ip.unwrap().proto, icmp.ports), (PROTO_ICMP, None));
    }

    #[test]
    fn malformed_headers_never_panic() {
        assert!(Layers::parse(&[0; 13]).is_err());
        // Bad version, IHL under 5, IHL past the end, cut short anywhere.
        for (ihl, cut) in [(5, 80), (4, 80), (15, 50), (5, 34 + 2), (5, 20)] {
            let mut f = v4_frame(PROTO_TCP, 0, ihl);
            f.truncate(cut);
            let l = Layers::parse(&f).unwrap();
            assert_eq!(l.ethertype, 0x0800);
            if ihl == 5 && cut == 80 {
                assert!(l.ports.is_some());
            } else {
                assert_eq!(l.ports, None, "ihl {ihl} cut {cut}");
            }
        }
        let mut v = v4_frame(PROTO_TCP, 0, 5);
        v[14] = 0x65;
        assert_eq!(Layers::parse(&v).unwrap().ip, None);
        assert_eq!(
            Ipv4Packet::new_checked(&v[14..]).err(),
            Some(Malformed::Version(6, 4))
        );
        assert_eq!(
            Ipv6Packet::new_checked(&v[14..20]).err(),
            Some(Malformed::Truncated { version: 6, len: 6 })
        );
        for n in 0..80 {
            let f = v4_frame(PROTO_UDP, 0, 5);
            let _ = Layers::parse(&f[..n]);
            let _ = Ipv4Packet::new_checked(&f[14.min(n)..n]).map(|p| (p.src(), p.payload().len()));
        }
    }

    #[test]
    fn ipv6_views_and_ports() {
        let mut f = vec![0u8; 14 + 40 + 8];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[14 + 6] = PROTO_UDP;
        f[14 + 7] = 255;
        f[14 + 8 + 15] = 1; // src ::1
        f[14 + 24] = 0xfe;
        f[14 + 24 + 1] = 0x80;
        f[54..58].copy_from_slice(&[0x12, 0x34, 0, 53]);
        let l = Layers::parse(&f).unwrap();
        let ip = l.ip.unwrap();
        assert_eq!(ip.src, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(ip.dst, "fe80::".parse::<IpAddr>().unwrap());
        assert_eq!(l.ports, Some((0x1234, 53)));
        let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((p.hop_limit(), p.payload().len()), (255, 8));
        // An extension header (hop-by-hop) hides the ports.
        f[14 + 6] = 0;
        assert_eq!(Layers::parse(&f).unwrap().ports, None);
        f.truncate(14 + 39);
        assert_eq!(Layers::parse(&f).unwrap().ip, None);
    }
}
