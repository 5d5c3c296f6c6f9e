//! Ethernet II frames and MAC addresses, plus a builder for the UDP/IPv4 test
//! frames that `bench` and the tests send.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address in the first six bytes of `b`.
    ///
    /// # Panics
    /// If `b` is shorter than six bytes.
    pub fn from_bytes(b: &[u8]) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }

    /// Group (multicast or broadcast) addresses have the low bit of the first octet set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The address as the low 48 bits of a `u64`.
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// A locally administered unicast address derived from a number.
    pub fn local(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<MacAddr, String> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in m.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("bad MAC address '{s}'"))?;
            if p.is_empty() || p.len() > 2 {
                return Err(format!("bad MAC address '{s}'"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC address '{s}'"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC address '{s}'"));
        }
        Ok(MacAddr(m))
    }
}

mod field {
    use super::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// A view of an Ethernet II frame: [`EthernetFrame::new_checked`] refuses
/// a buffer shorter than the header, after which no getter panics.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("truncated Ethernet frame ({0} bytes)")]
pub struct Truncated(pub usize);

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that the buffer holds at least an Ethernet header.
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        let n = buf.as_ref().len();
        if n < HEADER_LEN {
            Err(Truncated(n))
        } else {
            Ok(EthernetFrame { buf })
        }
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buf.as_ref()[field::DST])
    }

    pub fn src(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buf.as_ref()[field::SRC])
    }

    pub fn ethertype(&self) -> u16 {
        let b = &self.buf.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    pub fn set_src(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }
}

/// The 16-bit one's-complement sum of `data` (an odd last byte is padded
/// with zero), as IPv4, TCP and UDP checksums use it. A header whose
/// checksum field is right sums to 0xffff.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Builds a UDP/IPv4 frame of exactly `len` bytes (at least 42; shorter
/// requests are padded up), with a valid IPv4 header checksum and the UDP
/// checksum left at zero ("not computed", which IPv4 allows).
pub fn udp_frame(
    len: usize,
    dst: MacAddr,
    src: MacAddr,
    ip_src: [u8; 4],
    ip_dst: [u8; 4],
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let len = len.max(42);
    let mut f = vec![0u8; len];
    f[field::DST].copy_from_slice(&dst.0);
    f[field::SRC].copy_from_slice(&src.0);
    f[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_len = u16::try_from(len - 14).unwrap_or(u16::MAX);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&ip_src);
    ip[16..20].copy_from_slice(&ip_dst);
    let sum = ones_complement_sum(ip);
    ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&ip_len.saturating_sub(20).to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_fields() {
        let f = udp_frame(
            60,
            MacAddr::BROADCAST,
            MacAddr::local(7),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            2,
        );
        assert_eq!(f.len(), 60);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert!(e.dst().is_broadcast());
        assert_eq!(e.src(), MacAddr::local(7));
        assert_eq!(e.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(e.payload().len(), 46);
        assert_eq!(
            EthernetFrame::new_checked(&f[..13]).unwrap_err(),
            Truncated(13)
        );
    }

    #[test]
    fn ipv4_checksum_verifies() {
        let f = udp_frame(
            100,
            MacAddr::local(1),
            MacAddr::local(2),
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            9,
            9,
        );
        assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
    }

    #[test]
    fn mac_text_and_bits() {
        let m: MacAddr = "02:00:0a:0B:0c:0d".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:0a:0b:0c:0d");
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert!("02:00:0a:0b:0c".parse::<MacAddr>().is_err());
        assert!("02:00:0a:0b:0c:0d:0e".parse::<MacAddr>().is_err());
        assert!("zz:00:0a:0b:0c:0d".parse::<MacAddr>().is_err());
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr::local(3).is_multicast());
    }
}
