//! The VXLAN (RFC 7348) and Geneve (RFC 8926) headers that sit between the
//! outer UDP header and the inner Ethernet frame: decoding of untrusted
//! datagrams (every length checked, never a panic, a [`DecapError`] per
//! reason so the port counts drops by reason) and encoding from per-frame
//! parameters ([`Encap`]), so a later `key=flow` port can pick the VNI and
//! remote frame by frame.
//!
//! ```text
//! VXLAN:  |0x08|  reserved (24) |        VNI (24)        | rsvd (8) |
//! Geneve: |Ver|OptLen|O|C| rsvd | Protocol Type (0x6558) | VNI (24) | rsvd (8) | options (OptLen x 4 bytes)
//! ```
//!
//! What is accepted follows Open vSwitch's userspace datapath: a VXLAN
//! header must be exactly the I flag with every reserved bit zero (Open
//! vSwitch and Linux drop extensions such as GBP they were not asked for);
//! a Geneve header must be version 0, carry Ethernet (Transparent Ethernet
//! Bridging, 0x6558), not be an OAM (O bit) frame, and have options that
//! end where the header says. Which options mean something is the switch's
//! TLV table's business ([`super::geneve_opts`]): the decoder says where
//! they are and whether one is critical (the critical bit of its type; the
//! header's C bit only summarises those), and the receive path drops a
//! frame with a critical option no table maps, as Open vSwitch does.
//! Encoding a Geneve header may add options ([`encode_with_options`]).

use std::net::IpAddr;

use crate::wire::ip::Layers;

/// Bytes of a VXLAN header, and of a Geneve header without options.
pub const HEADER_LEN: usize = 8;
/// The most Geneve option bytes a header can announce (6 bits of 4 bytes).
pub const GENEVE_MAX_OPTIONS: usize = 63 * 4;
/// The smallest inner frame accepted: an Ethernet header.
pub const MIN_INNER: usize = 14;
/// Geneve's protocol type for an Ethernet payload.
pub const ETH_P_TEB: u16 = 0x6558;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// IANA's UDP ports.
pub const VXLAN_PORT: u16 = 4789;
pub const GENEVE_PORT: u16 = 6081;

/// Which encapsulation a port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Vxlan,
    Geneve,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Vxlan => "vxlan",
            Proto::Geneve => "geneve",
        }
    }

    /// The IANA UDP port.
    pub fn default_port(self) -> u16 {
        match self {
            Proto::Vxlan => VXLAN_PORT,
            Proto::Geneve => GENEVE_PORT,
        }
    }

    /// Bytes this encapsulation adds inside the outer UDP header, Geneve
    /// options aside.
    pub fn header_len(self) -> usize {
        HEADER_LEN
    }
}

/// What one frame is sent with: the outer destination and the header's
/// VNI, and the outer IP header's TOS and TTL. Per frame, not per port, so
/// that a module can choose them later (tunnel metadata, `key=flow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encap {
    pub remote: IpAddr,
    pub vni: u32,
    pub tos: u8,
    pub ttl: u8,
}

/// Why a datagram was not a frame for mswitch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    #[error("shorter than the header")]
    Short,
    #[error("VXLAN flags other than the I flag alone, or reserved bits set")]
    VxlanFlags,
    #[error("Geneve version other than 0")]
    GeneveVersion,
    #[error("Geneve options run past the datagram or past their announced length")]
    GeneveOptions,
    #[error("Geneve OAM frame (O bit)")]
    GeneveOam,
    #[error("Geneve protocol type other than Ethernet (0x6558)")]
    GeneveProtocol,
    #[error("inner frame shorter than an Ethernet header")]
    InnerShort,
}

/// A decoded datagram: its VNI and where the inner frame starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap {
    pub vni: u32,
    /// Offset of the inner Ethernet frame in the datagram. Geneve options,
    /// if any, are the bytes from [`HEADER_LEN`] to here.
    pub inner: usize,
    /// Whether an option is critical.
    pub critical: bool,
}

impl Decap {
    /// The Geneve option bytes of datagram `d` this was decoded from.
    pub fn options<'d>(&self, d: &'d [u8]) -> &'d [u8] {
        d.get(HEADER_LEN..self.inner).unwrap_or_default()
    }
}

/// Decodes the header at the start of UDP payload `d`.
pub fn decode(proto: Proto, d: &[u8]) -> Result<Decap, DecapError> {
    let hdr: &[u8; HEADER_LEN] = d
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecapError::Short)?;
    let vni = u32::from_be_bytes([0, hdr[4], hdr[5], hdr[6]]);
    let mut critical = false;
    let inner = match proto {
        Proto::Vxlan => {
            if u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) != 0x0800_0000 || hdr[7] != 0 {
                return Err(DecapError::VxlanFlags);
            }
            HEADER_LEN
        }
        Proto::Geneve => {
            if hdr[0] >> 6 != 0 {
                return Err(DecapError::GeneveVersion);
            }
            let opt_len = usize::from(hdr[0] & 0x3f) * 4;
            let opts = d
                .get(HEADER_LEN..HEADER_LEN + opt_len)
                .ok_or(DecapError::GeneveOptions)?;
            if hdr[1] & 0x80 != 0 {
                return Err(DecapError::GeneveOam);
            }
            if u16::from_be_bytes([hdr[2], hdr[3]]) != ETH_P_TEB {
                return Err(DecapError::GeneveProtocol);
            }
            critical = check_geneve_options(opts)?;
            HEADER_LEN + opt_len
        }
    };
    if d.len() - inner < MIN_INNER {
        return Err(DecapError::InnerShort);
    }
    Ok(Decap {
        vni,
        inner,
        critical,
    })
}

/// Walks Geneve options (class 16 bits, type 8 with the critical bit on
/// top, 3 reserved bits, length 5 bits in 4-byte words, then the data):
/// each must end within `opts`. Returns whether one is critical.
fn check_geneve_options(mut opts: &[u8]) -> Result<bool, DecapError> {
    let mut critical = false;
    while !opts.is_empty() {
        let h = opts.get(..4).ok_or(DecapError::GeneveOptions)?;
        critical |= h[2] & 0x80 != 0;
        let len = 4 + usize::from(h[3] & 0x1f) * 4;
        opts = opts.get(len..).ok_or(DecapError::GeneveOptions)?;
    }
    Ok(critical)
}

/// Writes the header for VNI `vni` (its low 24 bits) into `out` and
/// returns its length.
pub fn encode(proto: Proto, vni: u32, out: &mut [u8; HEADER_LEN]) -> usize {
    let v = (vni & MAX_VNI).to_be_bytes();
    *out = match proto {
        Proto::Vxlan => [0x08, 0, 0, 0, v[1], v[2], v[3], 0],
        Proto::Geneve => {
            let t = ETH_P_TEB.to_be_bytes();
            [0, 0, t[0], t[1], v[1], v[2], v[3], 0]
        }
    };
    HEADER_LEN
}

/// The longest header [`encode_with_options`] writes.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + GENEVE_MAX_OPTIONS;

/// Writes the header for VNI `vni` with Geneve options `opts` (whole
/// options, at most [`GENEVE_MAX_OPTIONS`] bytes; VXLAN has none and
/// ignores them) into `out`, and returns its length.
pub fn encode_with_options(
    proto: Proto,
    vni: u32,
    opts: &[u8],
    out: &mut [u8; MAX_HEADER_LEN],
) -> usize {
    let mut h = [0u8; HEADER_LEN];
    encode(proto, vni, &mut h);
    out[..HEADER_LEN].copy_from_slice(&h);
    if proto == Proto::Vxlan || opts.is_empty() {
        return HEADER_LEN;
    }
    let n = opts.len().min(GENEVE_MAX_OPTIONS) / 4 * 4;
    out[0] = (n / 4) as u8;
    if super::geneve_opts::options(&opts[..n]).any(|(_, kind, _)| kind & 0x80 != 0) {
        out[1] |= 0x40;
    }
    out[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&opts[..n]);
    HEADER_LEN + n
}

/// A hash of the inner frame's flow, for the outer UDP source port (so an
/// ECMP underlay spreads a tunnel's flows, and keeps each on one path):
/// the MAC addresses and EtherType, and what [`Layers::parse`] reads
/// behind them (IP addresses, protocol, TCP/UDP/SCTP ports; a VLAN-tagged
/// frame adds its tag instead). What the frame lacks is left out.
pub fn flow_hash(f: &[u8]) -> u32 {
    let mut h = Mix::default();
    let Ok(l) = Layers::parse(f) else {
        return h.finish();
    };
    h.bytes(&f[..12]);
    h.word(u64::from(l.ethertype));
    if matches!(l.ethertype, 0x8100 | 0x88a8)
        && let Some(tci) = f.get(14..16)
    {
        h.bytes(tci);
    }
    if let Some(ip) = l.ip {
        h.word(u64::from(ip.proto));
        for a in [ip.src, ip.dst] {
            match a {
                IpAddr::V4(a) => h.word(u64::from(u32::from(a))),
                IpAddr::V6(a) => h.bytes(&a.octets()),
            }
        }
    }
    if let Some((sp, dp)) = l.ports {
        h.word((u64::from(sp) << 16) | u64::from(dp));
    }
    h.finish()
}

/// A small multiply-xor hash: cheap per frame, and every input bit moves
/// the high bits of the result.
#[derive(Default)]
struct Mix(u64);

impl Mix {
    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    fn bytes(&mut self, b: &[u8]) {
        for c in b.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
    }

    fn finish(&self) -> u32 {
        let x = self.0.wrapping_mul(0xff51_afd7_ed55_8ccd);
        (x >> 32) as u32 ^ x as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_hash_follows_the_flow_and_never_panics() {
        use crate::wire::ethernet::{MacAddr, udp_frame};
        let f = |sport: u16, ip: u8| {
            udp_frame(
                60,
                MacAddr::local(2),
                MacAddr::local(1),
                [10, 0, 0, ip],
                [10, 0, 1, 1],
                sport,
                80,
            )
        };
        // Same flow, same hash, whatever the payload.
        let mut g = f(1000, 1);
        g[50] ^= 0xff;
        assert_eq!(flow_hash(&f(1000, 1)), flow_hash(&g));
        // Ports and addresses change it, and spread it.
        let hs: std::collections::HashSet<u32> =
            (0..64).map(|p| flow_hash(&f(1000 + p, 1)) % 8).collect();
        assert!(hs.len() >= 6, "{hs:?}");
        assert_ne!(flow_hash(&f(1000, 1)), flow_hash(&f(1000, 2)));
        // Any prefix of a frame hashes without a panic.
        for n in 0..g.len() {
            flow_hash(&g[..n]);
        }
    }

    fn frame(hdr: &[u8], inner: usize) -> Vec<u8> {
        let mut d = hdr.to_vec();
        d.extend((0..inner).map(|i| i as u8));
        d
    }

    #[test]
    fn encoded_headers_are_the_rfc_layouts_and_decode_back() {
        let mut h = [0u8; HEADER_LEN];
        assert_eq!(encode(Proto::Vxlan, 42, &mut h), 8);
        assert_eq!(h, [0x08, 0, 0, 0, 0, 0, 42, 0]);
        let d = frame(&h, 60);
        assert_eq!(
            decode(Proto::Vxlan, &d),
            Ok(Decap {
                vni: 42,
                inner: 8,
                critical: false
            })
        );
        encode(Proto::Geneve, 0x12_3456, &mut h);
        assert_eq!(h, [0, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0]);
        let d = frame(&h, 14);
        assert_eq!(
            decode(Proto::Geneve, &d),
            Ok(Decap {
                vni: 0x12_3456,
                inner: 8,
                critical: false
            })
        );
        // Only 24 bits of a VNI exist.
        encode(Proto::Vxlan, 0xff00_0001, &mut h);
        assert_eq!(&h[4..], &[0, 0, 1, 0]);
    }

    #[test]
    fn every_malformed_vxlan_header_is_refused() {
        let good = [0x08, 0, 0, 0, 0, 0, 7, 0];
        for n in 0..HEADER_LEN {
            assert_eq!(decode(Proto::Vxlan, &good[..n]), Err(DecapError::Short));
        }
        assert_eq!(
            decode(Proto::Vxlan, &frame(&good, 13)),
            Err(DecapError::InnerShort)
        );
        assert!(decode(Proto::Vxlan, &frame(&good, 14)).is_ok());
        // No I flag, an extra flag (GBP's G bit), reserved bits, the
        // reserved byte after the VNI.
        for (i, b) in [(0, 0x00), (0, 0x88), (1, 0x01), (3, 0x80), (7, 0x01)] {
            let mut h = good;
            h[i] = b;
            assert_eq!(
                decode(Proto::Vxlan, &frame(&h, 60)),
                Err(DecapError::VxlanFlags),
                "byte {i} = {b:#x}"
            );
        }
    }

    #[test]
    fn every_malformed_geneve_header_is_refused() {
        let good = [0, 0, 0x65, 0x58, 0, 0, 9, 0];
        let g = |h: &[u8], inner| decode(Proto::Geneve, &frame(h, inner));
        assert_eq!(decode(Proto::Geneve, &good[..7]), Err(DecapError::Short));
        assert_eq!(g(&good, 13), Err(DecapError::InnerShort));
        let mut h = good;
        h[0] = 0x40; // version 1
        assert_eq!(g(&h, 60), Err(DecapError::GeneveVersion));
        let mut h = good;
        h[1] = 0x80;
        assert_eq!(g(&h, 60), Err(DecapError::GeneveOam));
        // The C bit alone is only a summary of the options.
        let mut h = good;
        h[1] = 0x40;
        assert!(g(&h, 60).is_ok());
        let mut h = good;
        h[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4 payload
        assert_eq!(g(&h, 60), Err(DecapError::GeneveProtocol));
        // Options announced but not there.
        let mut h = good;
        h[0] = 63;
        assert_eq!(g(&h, 100), Err(DecapError::GeneveOptions));
    }

    #[test]
    fn geneve_options_are_checked_and_located() {
        // Two options: 4 bytes of data, then none (3 words announced).
        let mut d = vec![3, 0, 0x65, 0x58, 0, 1, 0, 0];
        d.extend([0x01, 0x02, 0x03, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
        d.extend([0xff, 0xff, 0x7f, 0]);
        d.extend([0u8; 14]);
        assert_eq!(
            decode(Proto::Geneve, &d),
            Ok(Decap {
                vni: 256,
                inner: 20,
                critical: false
            })
        );
        assert_eq!(decode(Proto::Geneve, &d).unwrap().options(&d), &d[8..20]);
        // The inner frame must still be whole after the options.
        assert_eq!(
            decode(Proto::Geneve, &d[..d.len() - 1]),
            Err(DecapError::InnerShort)
        );
        // An option with its critical bit set is said to be.
        let mut c = d.clone();
        c[18] = 0x80;
        assert!(decode(Proto::Geneve, &c).unwrap().critical);
        // An option whose length runs past the announced options.
        let mut l = d.clone();
        l[11] = 3;
        assert_eq!(decode(Proto::Geneve, &l), Err(DecapError::GeneveOptions));
        // One word of options holding an option header that announces data.
        let mut s = vec![1, 0, 0x65, 0x58, 0, 1, 0, 0, 0, 0, 0, 1];
        s.extend([0u8; 14]);
        assert_eq!(decode(Proto::Geneve, &s), Err(DecapError::GeneveOptions));
    }

    #[test]
    fn options_are_encoded_after_the_geneve_header_and_decode_back() {
        let opts = [0x01, 0x02, 0x80, 1, 0xde, 0xad, 0xbe, 0xef];
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_with_options(Proto::Geneve, 5, &opts, &mut h);
        assert_eq!(n, 16);
        // Two words of options, the C bit for the critical one.
        assert_eq!(&h[..8], [2, 0x40, 0x65, 0x58, 0, 0, 5, 0]);
        let d = frame(&h[..n], 14);
        let dec = decode(Proto::Geneve, &d).unwrap();
        assert_eq!((dec.vni, dec.inner, dec.critical), (5, 16, true));
        assert_eq!(dec.options(&d), opts);
        // VXLAN has no options; none is the plain header.
        assert_eq!(encode_with_options(Proto::Vxlan, 5, &opts, &mut h), 8);
        assert_eq!(h[..8], [0x08, 0, 0, 0, 0, 0, 5, 0]);
        assert_eq!(encode_with_options(Proto::Geneve, 5, &[], &mut h), 8);
        assert_eq!(h[..2], [0, 0]);
    }

    #[test]
    fn decoding_never_panics_on_any_short_input() {
        // Every prefix of every byte pattern in the first two header bytes.
        for a in 0..=255u8 {
            for b in [0u8, 0x40, 0x80, 0xff] {
                let mut d = vec![a, b, 0x65, 0x58, 0, 0, 1, 0];
                d.extend([0xffu8; 40]);
                for n in 0..d.len() {
                    let _ = decode(Proto::Geneve, &d[..n]);
                    let _ = decode(Proto::Vxlan, &d[..n]);
                }
            }
        }
    }
}
