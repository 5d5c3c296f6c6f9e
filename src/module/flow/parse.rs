//! Packet parsing: a frame's headers into a flow [`Key`] and a [`Layout`]
//! (where the headers are, for rewriting), as deep as the frame goes.
//!
//! Ethernet with up to two VLAN tags, then IPv4, IPv6 (with its extension
//! headers, summarised in `IPV6_EXTHDR`), Ethernet/IPv4 ARP, or the top
//! MPLS label stack entry (nothing past it), then TCP,
//! UDP, SCTP, ICMP or ICMPv6 (with neighbour discovery). Every read is
//! bounds-checked: a truncated or malformed frame parses as far as it is
//! whole, with the key's layer flags saying which layers are there, and
//! never panics.

use super::key::*;

/// What kind of network header a frame carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum L3 {
    #[default]
    None,
    Ipv4,
    Ipv6,
    Arp,
    /// MPLS: `l3` is the top label stack entry.
    Mpls,
}

/// Where a frame's headers are: what rewriting needs besides the key. All
/// offsets are from the start of the frame; 0 means "not there".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    /// VLAN tags parsed (0, 1 or 2); the outer one is at bytes 12..16.
    pub vlans: u8,
    pub l3_kind: L3,
    pub l3: u16,
    /// The L4 header (set only with `L4_OK`).
    pub l4: u16,
    pub proto: u8,
    /// End of the IP datagram within the frame (the frame's end if shorter).
    pub ip_end: u16,
    /// The link-layer address of an ND SLL/TLL option.
    pub nd_ll: u16,
}

impl Layout {
    /// Moves every offset past the Ethernet header by `by` bytes (a tag
    /// pushed or popped).
    pub fn shift(&mut self, by: i32) {
        for o in [
            &mut self.l3,
            &mut self.l4,
            &mut self.ip_end,
            &mut self.nd_ll,
        ] {
            if *o != 0 {
                *o = (i32::from(*o) + by).clamp(0, i32::from(u16::MAX)) as u16;
            }
        }
    }
}

/// A parsed frame.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Parsed {
    pub key: Key,
    pub layout: Layout,
    /// The parse looked at no byte at or beyond this offset: a frame of the
    /// same length with the same first `depth` bytes parses the same.
    pub depth: usize,
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    match d.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

#[inline]
fn be32(d: &[u8], at: usize) -> u32 {
    match d.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

#[inline]
fn be48(d: &[u8], at: usize) -> u64 {
    match d.get(at..at + 6) {
        Some(b) => u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]),
        None => 0,
    }
}

#[inline]
fn be64(d: &[u8], at: usize) -> u64 {
    match d.get(at..at + 8) {
        Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

#[inline]
fn is_vlan_tpid(t: u16) -> bool {
    t == 0x8100 || t == 0x88a8
}

/// Parses a frame into its key and layout. Frames shorter than an Ethernet
/// header give `None`; anything else parses, as deep as its bytes allow.
pub(crate) fn parse(d: &[u8], in_port: u32) -> Option<Parsed> {
    let mut p = Parsed::default();
    parse_into(d, in_port, &mut p).then_some(p)
}

/// `N` bytes of `d` at `at`, as an array (one bounds check; then constant
/// indices need none).
#[inline(always)]
fn arr<const N: usize>(d: &[u8], at: usize) -> Option<&[u8; N]> {
    d.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[inline(always)]
fn tci_key(hi: u8, lo: u8) -> u64 {
    let tci = u64::from(u16::from_be_bytes([hi, lo]));
    (tci & 0xe000) | VID_PRESENT | (tci & 0x0fff)
}

/// Parses a frame into `p` (reused across packets: no large moves). False for a
/// frame shorter than an Ethernet header.
#[inline]
pub(crate) fn parse_into(d: &[u8], in_port: u32, p: &mut Parsed) -> bool {
    parse_upto(d, in_port, p, STAGE_L4)
}

/// [`parse_into`], but only as far as lookup stage `stage` ([`STAGES`]):
/// the key's bits of that stage and the ones before are those of the
/// whole parse; bits of later stages may be missing, and `layout` and
/// `depth` describe only what was parsed. Stage 0 and 1 parse Ethernet
/// and VLAN tags, 2 adds the network header, 3 is the whole parse.
#[inline]
pub(crate) fn parse_upto(d: &[u8], in_port: u32, p: &mut Parsed, stage: usize) -> bool {
    let Some(e) = arr::<14>(d, 0) else {
        return false;
    };
    let dst = u64::from_be_bytes([0, 0, e[0], e[1], e[2], e[3], e[4], e[5]]);
    let src = u64::from_be_bytes([0, 0, e[6], e[7], e[8], e[9], e[10], e[11]]);
    let mut et = u16::from_be_bytes([e[12], e[13]]);
    let (mut tci, mut inner, mut vlans, mut off) = (0, 0, 0, 14);
    if is_vlan_tpid(et)
        && let Some(t) = arr::<4>(d, 14)
    {
        tci = tci_key(t[0], t[1]);
        et = u16::from_be_bytes([t[2], t[3]]);
        (vlans, off) = (1, 18);
        if is_vlan_tpid(et)
            && let Some(t) = arr::<4>(d, 18)
        {
            inner = tci_key(t[0], t[1]);
            et = u16::from_be_bytes([t[2], t[3]]);
            (vlans, off) = (2, 22);
        }
    }
    if et < 0x0600 {
        et = ETH_TYPE_NONE;
    }
    let mut k = [0u64; WORDS];
    k[0] = u64::from(in_port) << 32 | u64::from(et) << 16 | tci;
    k[2] = dst << 16;
    k[3] = src << 16;
    k[11] = inner;
    p.key = Key(k);
    p.layout = Layout {
        vlans,
        ..Layout::default()
    };
    p.depth = off;
    if stage < STAGE_L3 {
        return true;
    }
    let l4 = stage >= STAGE_L4;
    match et {
        ETH_IPV4 => parse_ipv4(d, off, l4, p),
        ETH_IPV6 => parse_ipv6(d, off, l4, p),
        ETH_ARP => parse_arp(d, off, p),
        super::mpls::ETH_MPLS | super::mpls::ETH_MPLS_MC => parse_mpls(d, off, p),
        _ => {}
    }
    true
}

/// The top label stack entry only (as Open vSwitch matches it).
fn parse_mpls(d: &[u8], l3: usize, p: &mut Parsed) {
    let Some(e) = arr::<4>(d, l3) else {
        return;
    };
    p.depth = l3 + 4;
    super::mpls::MPLS_LSE.set(&mut p.key, u64::from(u32::from_be_bytes(*e)));
    L3_OK.set(&mut p.key, 1);
    p.layout.l3_kind = L3::Mpls;
    p.layout.l3 = l3 as u16;
}

fn parse_arp(d: &[u8], l3: usize, p: &mut Parsed) {
    let Some(a) = arr::<28>(d, l3) else {
        return;
    };
    p.depth = l3 + 28;
    // Only Ethernet/IPv4 ARP has the fields OpenFlow names.
    if a[0..6] != [0, 1, 8, 0, 6, 4] {
        return;
    }
    let k = &mut p.key;
    TP_SRC.set(k, u64::from(be16(a, 6)));
    ARP_SHA.set(k, be48(a, 8));
    IPV4_SRC.set(k, u64::from(be32(a, 14)));
    ARP_THA.set(k, be48(a, 18));
    IPV4_DST.set(k, u64::from(be32(a, 24)));
    L3_OK.set(k, 1);
    p.layout.l3_kind = L3::Arp;
    p.layout.l3 = l3 as u16;
}

#[inline]
fn parse_ipv4(d: &[u8], l3: usize, l4: bool, p: &mut Parsed) {
    let len = d.len();
    let Some(h) = arr::<20>(d, l3) else {
        return;
    };
    p.depth = l3 + 20;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 || len < l3 + ihl {
        return;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let proto = h[9];
    let k = &mut p.key.0;
    k[5] = u64::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
    k[7] = u64::from(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
    k[8] = u64::from(proto) << 56 | u64::from(h[1]) << 48 | u64::from(h[8]) << 40 | 1;
    let end = (l3 + total.max(ihl)).min(len);
    p.layout.l3_kind = L3::Ipv4;
    p.layout.l3 = l3 as u16;
    p.layout.ip_end = end as u16;
    p.layout.proto = proto;
    // A later fragment carries no L4 header; a datagram shorter than its
    // own header is malformed and has none either.
    if frag & 0x1fff != 0 || total < ihl || !l4 {
        return;
    }
    parse_l4(d, l3 + ihl, end, proto, false, p);
}

/// IPv6 extension header ranks in the order RFC 8200 recommends.
fn ext_rank(nh: u8, seen_later: bool) -> u8 {
    match nh {
        0 => 0,
        60 if !seen_later => 1,
        43 => 2,
        44 => 3,
        51 => 4,
        50 => 5,
        _ => 6, // a destination options header after the routing header
    }
}

fn parse_ipv6(d: &[u8], l3: usize, l4: bool, p: &mut Parsed) {
    use crate::openflow::oxm::ipv6_exthdr as x;
    let len = d.len();
    let Some(h) = arr::<40>(d, l3) else {
        return;
    };
    p.depth = l3 + 40;
    if h[0] >> 4 != 6 {
        return;
    }
    let first = be32(h, 0);
    let tc = (first >> 20) & 0xff;
    let payload = usize::from(be16(h, 4));
    let end = if payload == 0 {
        len
    } else {
        (l3 + 40 + payload).min(len)
    };
    let k = &mut p.key;
    NW_TOS.set(k, u64::from(tc));
    FLABEL.set(k, u64::from(first & 0x000f_ffff));
    NW_TTL.set(k, u64::from(h[7]));
    NW_SRC_HI.set(k, be64(h, 8));
    NW_SRC.set(k, be64(h, 16));
    NW_DST_HI.set(k, be64(h, 24));
    NW_DST.set(k, be64(h, 32));
    L3_OK.set(k, 1);
    p.layout.l3_kind = L3::Ipv6;
    p.layout.l3 = l3 as u16;
    p.layout.ip_end = end as u16;

    let mut nh = h[6];
    let mut off = l3 + 40;
    let mut flags: u16 = 0;
    let (mut last_rank, mut seen_later, mut dest_seen) = (0u8, false, 0u8);
    let mut upper = true;
    let mut first_hdr = true;
    for _ in 0..16 {
        let bit = match nh {
            0 => x::HOP,
            60 => x::DEST,
            43 => x::ROUTER,
            44 => x::FRAG,
            51 => x::AUTH,
            50 => x::ESP,
            59 => x::NONEXT,
            _ => break,
        };
        if nh == 59 {
            flags |= bit;
            upper = false;
            break;
        }
        let repeat = if nh == 60 {
            dest_seen += 1;
            dest_seen > 2
        } else {
            flags & bit != 0
        };
        if repeat {
            flags |= x::UNREP;
        }
        let rank = ext_rank(nh, seen_later);
        if (nh == 0 && !first_hdr) || rank < last_rank {
            flags |= x::UNSEQ;
        }
        last_rank = last_rank.max(rank);
        seen_later |= matches!(nh, 43 | 44 | 51 | 50);
        first_hdr = false;
        flags |= bit;
        if nh == 50 {
            // Everything after ESP is encrypted.
            upper = false;
            break;
        }
        let Some(e) = arr::<8>(d, off).filter(|_| off + 8 <= end) else {
            upper = false;
            break;
        };
        p.depth = p.depth.max(off + 8);
        let next = e[0];
        let hlen = match nh {
            44 => {
                if be16(e, 2) & 0xfff8 != 0 {
                    // A later fragment: no upper-layer header here.
                    upper = false;
                    nh = next;
                    break;
                }
                8
            }
            51 => (usize::from(e[1]) + 2) * 4,
            _ => (usize::from(e[1]) + 1) * 8,
        };
        nh = next;
        off += hlen;
    }
    let k = &mut p.key;
    EXTHDR.set(k, u64::from(flags));
    NW_PROTO.set(k, u64::from(nh));
    p.layout.proto = nh;
    if upper && off <= end && l4 {
        parse_l4(d, off, end, nh, true, p);
    }
}

#[inline]
fn parse_l4(d: &[u8], l4: usize, end: usize, proto: u8, v6: bool, p: &mut Parsed) {
    let need = match proto {
        IP_TCP => 20,
        IP_UDP => 8,
        IP_SCTP => 12,
        IP_ICMP if !v6 => 4,
        IP_ICMPV6 if v6 => 4,
        _ => return,
    };
    let icmp = matches!(proto, IP_ICMP | IP_ICMPV6);
    let read = if icmp { 2 } else { 4 };
    p.depth = p.depth.max((l4 + read).min(end));
    let Some(t) = arr::<4>(d, l4) else {
        return;
    };
    if l4 + need > end {
        return;
    }
    let (src, dst) = if icmp {
        (u64::from(t[0]), u64::from(t[1]))
    } else {
        (
            u64::from(u16::from_be_bytes([t[0], t[1]])),
            u64::from(u16::from_be_bytes([t[2], t[3]])),
        )
    };
    let k = &mut p.key;
    k.0[2] |= src;
    k.0[3] |= dst;
    k.0[8] |= L4_OK.mask();
    p.layout.l4 = l4 as u16;
    if proto != IP_ICMPV6 {
        return;
    }
    let ty = t[0];
    if matches!(ty, 135 | 136) && t[1] == 0 && l4 + 24 <= end {
        p.depth = p.depth.max(l4 + 24);
        ND_HI.set(k, be64(d, l4 + 8));
        ND_LO.set(k, be64(d, l4 + 16));
        // The options, each a multiple of 8 bytes; the first link-layer
        // address option of the right kind is the one matched.
        let want = if ty == 135 { 1 } else { 2 };
        let mut o = l4 + 24;
        let mut ok = true;
        while o + 2 <= end {
            let Some(&[otype, olen]) = arr::<2>(d, o) else {
                break;
            };
            let olen = usize::from(olen) * 8;
            p.depth = p.depth.max(o + 2);
            if olen == 0 || o + olen > end {
                ok = false;
                break;
            }
            if otype == want && olen == 8 && p.layout.nd_ll == 0 {
                p.depth = p.depth.max(o + 8);
                ND_LL.set(k, be48(d, o + 2));
                p.layout.nd_ll = (o + 2) as u16;
            }
            o += olen;
        }
        if ok {
            ND_OK.set(k, 1);
        } else {
            ND_LL.set(k, 0);
            ND_HI.set(k, 0);
            ND_LO.set(k, 0);
            p.layout.nd_ll = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::Match;
    use crate::openflow::oxm::OxmField;
    use crate::wire::MacAddr;
    use crate::wire::ethernet::udp_frame;

    fn udp() -> Vec<u8> {
        udp_frame(
            60,
            MacAddr::local(2),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 1, 1],
            1000,
            2000,
        )
    }

    #[test]
    fn parses_udp_over_ipv4() {
        let p = parse(&udp(), 7).unwrap();
        let k = &p.key;
        assert_eq!(IN_PORT.get(k), 7);
        assert_eq!(ETH_TYPE.get(k), 0x0800);
        assert_eq!(ETH_DST.get(k), MacAddr::local(2).to_u64());
        assert_eq!(IPV4_SRC.get(k), 0x0a00_0001);
        assert_eq!(NW_PROTO.get(k), 17);
        assert_eq!((TP_SRC.get(k), TP_DST.get(k)), (1000, 2000));
        assert_eq!((L3_OK.get(k), L4_OK.get(k)), (1, 1));
        assert_eq!(p.layout.l3, 14);
        assert_eq!(p.layout.l4, 34);
        assert_eq!(p.depth, 38);
        assert_eq!(VLAN_TCI.get(k), 0);
    }

    #[test]
    fn vlan_tags_are_parsed() {
        let f = udp();
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0, 0xa0, 0x05, 0x81, 0, 0, 7]);
        t.extend_from_slice(&f[12..]);
        let p = parse(&t, 1).unwrap();
        assert_eq!(VLAN_TCI.get(&p.key), 0xa000 | 0x1000 | 5);
        assert_eq!(INNER_TCI.get(&p.key), 0x1007);
        assert_eq!(ETH_TYPE.get(&p.key), 0x0800);
        assert_eq!(p.layout.l3, 22);
        assert_eq!(TP_DST.get(&p.key), 2000);
    }

    #[test]
    fn truncation_clears_layer_flags() {
        let f = udp();
        assert!(parse(&f[..13], 1).is_none());
        let p = parse(&f[..14], 1).unwrap();
        assert_eq!((ETH_TYPE.get(&p.key), L3_OK.get(&p.key)), (0x0800, 0));
        let p = parse(&f[..40], 1).unwrap();
        assert_eq!((L3_OK.get(&p.key), L4_OK.get(&p.key)), (1, 0));
        // A rule on udp_dst does not match the truncated frame.
        let m = Match::from_fields(vec![
            OxmField::EthType(0x0800),
            OxmField::IpProto(17),
            OxmField::UdpDst(0),
        ])
        .unwrap();
        let (v, mk) = match_key(&m).unwrap();
        assert!(!p.key.matches(&v, &mk));
    }

    /// Frames of every kind parsed will do: IPv4/UDP, IPv6/ICMPv6 ND,
    /// ARP, with and without a VLAN tag.
    fn templates() -> Vec<Vec<u8>> {
        let v4 = udp();
        let mut v6 = vec![0u8; 14 + 40 + 32];
        v6[..12].copy_from_slice(&v4[..12]);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14] = 0x60;
        v6[19] = 32; // payload length
        v6[20] = 58; // ICMPv6
        v6[54] = 135; // neighbour solicitation
        v6[78..80].copy_from_slice(&[1, 1]); // SLL option
        let mut arp = v4[..14].to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[7; 20]);
        let mut tagged = v4[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0, 0x20, 5]);
        tagged.extend_from_slice(&v4[12..]);
        vec![v4, v6, arp, tagged]
    }

    proptest::proptest! {
        /// A parse stopped after a stage agrees with the whole parse on
        /// that stage and every one before it, and reads no further.
        #[test]
        fn partial_parses_agree_with_the_whole_parse(
            t in 0usize..4,
            edits in proptest::collection::vec((0usize..90, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..100,
        ) {
            let mut f = templates()[t].clone();
            for (at, b) in edits {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            f.truncate(cut.max(14));
            let whole = parse(&f, 5).unwrap();
            let mut cum = Key::default();
            for (stage, bits) in STAGES.iter().enumerate() {
                cum.or_assign(bits);
                let mut p = Parsed::default();
                proptest::prop_assert!(parse_upto(&f, 5, &mut p, stage));
                proptest::prop_assert_eq!(p.key.and(&cum), whole.key.and(&cum), "stage {}", stage);
                proptest::prop_assert!(p.depth <= whole.depth);
            }
        }
    }
}
