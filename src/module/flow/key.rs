//! Flow keys: every header field the pipeline can match, packed into a
//! fixed array of twenty `u64` words (filled from a frame by `parse`, and
//! the tunnel words from the packet's tunnel metadata), and
//! matches and set-field actions in the same terms.
//!
//! The same layout holds a packet's key, a rule's value and mask, and a
//! megaflow's mask, so matching is `key & mask == value` word by word and
//! the union of the masks a lookup consulted is a word-wise OR.
//!
//! ```text
//!  word  bits 63..                                                   ..0
//!   0    in_port (32)           | eth_type (16)      | vlan_tci (16)
//!   1    metadata (64)
//!   2    eth_dst (48)                                | tp_src (16)
//!   3    eth_src (48)                                | tp_dst (16)
//!   4,5  nw_src (128: IPv6 source; IPv4 source, ARP SPA or the top MPLS
//!        label stack entry in the low 32)
//!   6,7  nw_dst (128: IPv6 destination; IPv4 destination or ARP TPA)
//!   8    proto (8) | tos (8) | ttl (8) | flabel (20) | exthdr (9) | . | flags (4)
//!   9,10 nd_target (128); for ARP: SHA in word 9, THA in word 10 (48 each)
//!   11   nd_sll / nd_tll (48)                        | inner vlan_tci (16)
//!   12   tun_id (64)
//!   13   tun_src (32: outer IPv4 source)             | tun_dst (32)
//!   14,15 tun_ipv6_src (128: outer IPv6 source)
//!   16,17 tun_ipv6_dst (128)
//!   18   tun_metadata present (64: bit N for tun_metadataN)
//!   19   tun_metadata data (64: where the TLV table puts each field)
//! ```
//!
//! The tunnel words are 0 for a packet that did not come from a tunnel
//! port, as in Open vSwitch; a packet from an IPv6 tunnel has its outer
//! addresses in words 14 to 17 and 0 in `tun_src`/`tun_dst`, one from an
//! IPv4 tunnel the other way round. A megaflow lookup hashes and compares only
//! the words its mask has bits in, so they cost only the flows that use
//! them (and the exact-match cache, which hashes whole keys).
//!
//! Fields share room where the spec's prerequisites make them exclusive:
//! TCP/UDP/SCTP ports, ICMP type and code and the ARP opcode share `tp_src`
//! and `tp_dst`; IPv4 and ARP addresses share `nw_src`/`nw_dst`. A rule
//! always matches the `eth_type` (and `ip_proto`) that tell them apart.
//!
//! `vlan_tci` holds OpenFlow's view of the outer tag: PCP in bits 13..16,
//! `OFPVID_PRESENT` in bit 12 and the VID below; an untagged frame has 0.
//!
//! The flag bits say which headers were really there: `L3_OK` (a whole IPv4,
//! IPv6 or Ethernet/IPv4 ARP header), `L4_OK` (a whole TCP, UDP, SCTP or
//! ICMP header, and not a later fragment), `ND_OK` (a whole neighbour
//! discovery message). A rule that matches a field of a layer also matches
//! that layer's flag, so a truncated or malformed frame matches nothing that
//! needs the fields it lacks. `NEVER` is never set in a packet: a rule that
//! can match no packet (an `in_port` that disagrees with `in_phy_port`,
//! say) sets it.

use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::openflow::error::BadMatchCode;
use crate::openflow::nicira::Register;
use crate::openflow::oxm::{Masked, OxmField};
use crate::openflow::{ErrorCode, Match};
use crate::port::tunnel::geneve_opts::TlvTable;

pub(crate) use super::mpls::{MPLS_BOS, MPLS_LABEL, MPLS_LSE, MPLS_TC, MPLS_TTL};
pub(crate) use super::parse::{L3, Layout, Parsed, parse, parse_into, parse_upto};

pub(crate) const WORDS: usize = 20;

/// A flow key (or a mask, or a rule's masked value).
#[derive(Clone, Copy, Default)]
pub struct Key(pub [u64; WORDS]);

impl PartialEq for Key {
    /// Branch-free: every word is compared (no early exit, no `memcmp`).
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        let mut d = 0;
        for (a, b) in self.0.iter().zip(other.0) {
            d |= a ^ b;
        }
        d == 0
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key[")?;
        for (i, w) in self.0.iter().enumerate() {
            if *w != 0 {
                write!(f, " {i}:{w:#x}")?;
            }
        }
        write!(f, " ]")
    }
}

/// A run of bits within one word.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bits {
    pub word: usize,
    pub shift: u32,
    pub width: u32,
}

impl Bits {
    const fn new(word: usize, shift: u32, width: u32) -> Bits {
        Bits { word, shift, width }
    }

    /// The field's bits in place.
    #[inline]
    pub const fn mask(self) -> u64 {
        let ones = if self.width == 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        };
        ones << self.shift
    }

    #[inline]
    pub fn get(self, k: &Key) -> u64 {
        (k.0[self.word] & self.mask()) >> self.shift
    }

    #[inline]
    pub fn set(self, k: &mut Key, v: u64) {
        let m = self.mask();
        k.0[self.word] = (k.0[self.word] & !m) | ((v << self.shift) & m);
    }

    /// Sets every bit of the field in a mask.
    #[inline]
    pub fn all(self, m: &mut Key) {
        m.0[self.word] |= self.mask();
    }
}

pub(crate) const IN_PORT: Bits = Bits::new(0, 32, 32);
pub(crate) const ETH_TYPE: Bits = Bits::new(0, 16, 16);
pub(crate) const VLAN_TCI: Bits = Bits::new(0, 0, 16);
pub(crate) const METADATA: Bits = Bits::new(1, 0, 64);
pub(crate) const ETH_DST: Bits = Bits::new(2, 16, 48);
pub(crate) const TP_SRC: Bits = Bits::new(2, 0, 16);
pub(crate) const ETH_SRC: Bits = Bits::new(3, 16, 48);
pub(crate) const TP_DST: Bits = Bits::new(3, 0, 16);
pub(crate) const NW_SRC_HI: Bits = Bits::new(4, 0, 64);
pub(crate) const NW_SRC: Bits = Bits::new(5, 0, 64);
pub(crate) const NW_DST_HI: Bits = Bits::new(6, 0, 64);
pub(crate) const NW_DST: Bits = Bits::new(7, 0, 64);
pub(crate) const IPV4_SRC: Bits = Bits::new(5, 0, 32);
pub(crate) const IPV4_DST: Bits = Bits::new(7, 0, 32);
pub(crate) const NW_PROTO: Bits = Bits::new(8, 56, 8);
pub(crate) const NW_TOS: Bits = Bits::new(8, 48, 8);
pub(crate) const NW_TTL: Bits = Bits::new(8, 40, 8);
pub(crate) const FLABEL: Bits = Bits::new(8, 20, 20);
pub(crate) const EXTHDR: Bits = Bits::new(8, 11, 9);
pub(crate) const ND_HI: Bits = Bits::new(9, 0, 64);
pub(crate) const ND_LO: Bits = Bits::new(10, 0, 64);
pub(crate) const ARP_SHA: Bits = Bits::new(9, 0, 48);
pub(crate) const ARP_THA: Bits = Bits::new(10, 0, 48);
pub(crate) const ND_LL: Bits = Bits::new(11, 16, 48);
pub(crate) const INNER_TCI: Bits = Bits::new(11, 0, 16);
pub(crate) const TUN_ID: Bits = Bits::new(12, 0, 64);
pub(crate) const TUN_SRC: Bits = Bits::new(13, 32, 32);
pub(crate) const TUN_DST: Bits = Bits::new(13, 0, 32);
/// Geneve options mapped to `tun_metadataN` ([`super::tun_metadata`]).
pub(crate) const TUN_MD_PRESENT: Bits = Bits::new(18, 0, 64);
pub(crate) const TUN_MD: Bits = Bits::new(19, 0, 64);
pub(crate) const TUN_IPV6_SRC_HI: Bits = Bits::new(14, 0, 64);
pub(crate) const TUN_IPV6_SRC: Bits = Bits::new(15, 0, 64);
pub(crate) const TUN_IPV6_DST_HI: Bits = Bits::new(16, 0, 64);
pub(crate) const TUN_IPV6_DST: Bits = Bits::new(17, 0, 64);

/// The key bits of one half of an IPv6 tunnel address.
pub(crate) const fn tun_ipv6_half(dst: bool, hi: bool) -> Bits {
    match (dst, hi) {
        (false, true) => TUN_IPV6_SRC_HI,
        (false, false) => TUN_IPV6_SRC,
        (true, true) => TUN_IPV6_DST_HI,
        (true, false) => TUN_IPV6_DST,
    }
}

/// Whether a mask has bits in the tunnel words.
#[inline]
pub(crate) fn reads_tunnel(mask: &Key) -> bool {
    (mask.0[TUN_ID.word]
        | mask.0[TUN_SRC.word]
        | mask.0[TUN_IPV6_SRC_HI.word]
        | mask.0[TUN_IPV6_SRC.word]
        | mask.0[TUN_IPV6_DST_HI.word]
        | mask.0[TUN_IPV6_DST.word]
        | mask.0[TUN_MD_PRESENT.word]
        | mask.0[TUN_MD.word])
        != 0
}

pub(crate) const L3_OK: Bits = Bits::new(8, 0, 1);
pub(crate) const L4_OK: Bits = Bits::new(8, 1, 1);
pub(crate) const ND_OK: Bits = Bits::new(8, 2, 1);
pub(crate) const NEVER: Bits = Bits::new(8, 3, 1);

/// The lookup stages, a partition of the key's bits in the order a
/// packet's headers come: metadata (`in_port`, `metadata`, the tunnel
/// fields, `NEVER`), L2
/// (Ethernet and VLAN fields), L3 (network fields and `L3_OK`), L4
/// (transport ports, ICMP, ARP opcode and hardware addresses, ND fields,
/// `L4_OK`, `ND_OK`). The classifier checks a subtable stage by stage and
/// the parser can stop after a stage ([`super::parse::parse_upto`]).
pub(crate) const STAGES: [Key; 4] = {
    let mut s = [Key([0; WORDS]); 4];
    let flags_l4 = (1 << 1) | (1 << 2);
    let never = 1 << 3;
    s[0].0[0] = 0xffff_ffff_0000_0000;
    s[0].0[1] = u64::MAX;
    s[0].0[8] = never;
    s[0].0[12] = u64::MAX;
    s[0].0[13] = u64::MAX;
    s[0].0[14] = u64::MAX;
    s[0].0[15] = u64::MAX;
    s[0].0[16] = u64::MAX;
    s[0].0[17] = u64::MAX;
    s[0].0[18] = u64::MAX;
    s[0].0[19] = u64::MAX;
    s[1].0[0] = 0x0000_0000_ffff_ffff;
    s[1].0[2] = 0xffff_ffff_ffff_0000;
    s[1].0[3] = 0xffff_ffff_ffff_0000;
    s[1].0[11] = 0xffff;
    s[2].0[4] = u64::MAX;
    s[2].0[5] = u64::MAX;
    s[2].0[6] = u64::MAX;
    s[2].0[7] = u64::MAX;
    s[2].0[8] = !(flags_l4 | never);
    s[3].0[2] = 0xffff;
    s[3].0[3] = 0xffff;
    s[3].0[8] = flags_l4;
    s[3].0[9] = u64::MAX;
    s[3].0[10] = u64::MAX;
    s[3].0[11] = 0xffff_ffff_ffff_0000;
    s
};

/// The L4 stage: a parse that stops before it ([`STAGES`]).
pub(crate) const STAGE_L3: usize = 2;
pub(crate) const STAGE_L4: usize = 3;

/// The last stage in which `mask` has bits (0 for an empty mask).
pub(crate) fn last_stage(mask: &Key) -> usize {
    (0..STAGES.len())
        .rev()
        .find(|&s| mask.0.iter().zip(STAGES[s].0).any(|(m, b)| m & b != 0))
        .unwrap_or(0)
}

/// `OFPVID_PRESENT` within `vlan_tci`.
pub(crate) const VID_PRESENT: u64 = 0x1000;

/// Ethertype of frames that carry none (802.3 length field), as Open vSwitch.
pub(crate) const ETH_TYPE_NONE: u16 = 0x05ff;
pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
pub(crate) const ETH_ARP: u16 = 0x0806;

pub(crate) const IP_TCP: u8 = 6;
pub(crate) const IP_UDP: u8 = 17;
pub(crate) const IP_SCTP: u8 = 132;
pub(crate) const IP_ICMP: u8 = 1;
pub(crate) const IP_ICMPV6: u8 = 58;

/// The hash's seeds: random per process, so that senders cannot aim
/// collisions at the caches' and classifier's hash tables.
fn seeds() -> &'static [u64; WORDS] {
    static SEEDS: std::sync::OnceLock<[u64; WORDS]> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        use std::hash::BuildHasher;
        let r = std::collections::hash_map::RandomState::new();
        std::array::from_fn(|i| r.hash_one(0x6d73_7769_7463_6800_u64 + i as u64))
    })
}

impl Key {
    /// A 64-bit hash of every word: NH (pairs of seeded words multiplied
    /// to 128 bits and summed, six independent multiplies), then one
    /// multiply to mix the halves.
    #[inline]
    pub fn hash64(&self) -> u64 {
        let s = seeds();
        let mut acc: u128 = 0;
        for i in 0..WORDS / 2 {
            let a = self.0[2 * i].wrapping_add(s[2 * i]);
            let b = self.0[2 * i + 1].wrapping_add(s[2 * i + 1]);
            acc = acc.wrapping_add(u128::from(a) * u128::from(b));
        }
        let h = (acc as u64) ^ ((acc >> 64) as u64);
        let h = (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    /// The hash of `self` under a mask, over the mask's words only (see
    /// [`Words`]). Two keys that agree under the mask hash the same.
    #[inline]
    pub fn hash_masked(&self, w: &Words) -> u64 {
        let n = usize::from(w.n);
        let at = |j: usize| (self.0[usize::from(w.idx[j])] & w.mask[j]).wrapping_add(w.seed[j]);
        let mut acc: u128 = 0;
        let mut j = 0;
        while j + 1 < n {
            acc = acc.wrapping_add(u128::from(at(j)) * u128::from(at(j + 1)));
            j += 2;
        }
        if j < n {
            acc = acc.wrapping_add(u128::from(at(j)) * u128::from(w.odd));
        }
        let h = (acc as u64) ^ ((acc >> 64) as u64);
        let h = (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    /// Whether `self` under the mask equals `value`, the mask's words of a
    /// masked key.
    #[inline]
    pub fn eq_masked(&self, w: &Words, value: &[u64]) -> bool {
        let mut d = 0;
        for (j, v) in value.iter().enumerate().take(usize::from(w.n)) {
            d |= (self.0[usize::from(w.idx[j])] & w.mask[j]) ^ v;
        }
        d == 0
    }

    #[inline]
    pub fn and(&self, m: &Key) -> Key {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(m.0) {
            *a &= b;
        }
        r
    }

    #[inline]
    pub fn or_assign(&mut self, m: &Key) {
        for (a, b) in self.0.iter_mut().zip(m.0) {
            *a |= b;
        }
    }

    /// Whether `self` (a packet key) matches `value` under `mask`.
    #[cfg(test)]
    pub fn matches(&self, value: &Key, mask: &Key) -> bool {
        self.0
            .iter()
            .zip(value.0.iter().zip(mask.0))
            .all(|(k, (v, m))| k & m == *v)
    }

    /// Whether every bit of `other` is set in `self` (for masks).
    pub fn covers(&self, other: &Key) -> bool {
        self.0.iter().zip(other.0).all(|(a, b)| b & !a == 0)
    }
}

/// A mask as a masked lookup uses it: the words in which it has bits, in
/// order, with their mask bits and hash seeds side by side, so hashing and
/// comparing a key under the mask touches only those words (NH as in
/// [`Key::hash64`], each word with its own seed; an odd word out is
/// multiplied by an odd seed-derived constant).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Words {
    n: u8,
    idx: [u8; WORDS],
    mask: [u64; WORDS],
    seed: [u64; WORDS],
    odd: u64,
}

impl Words {
    pub fn of(mask: &Key) -> Words {
        let s = seeds();
        let mut w = Words {
            n: 0,
            idx: [0; WORDS],
            mask: [0; WORDS],
            seed: [0; WORDS],
            odd: 1,
        };
        for (i, m) in mask.0.iter().enumerate() {
            if *m != 0 {
                let j = usize::from(w.n);
                (w.idx[j], w.mask[j], w.seed[j]) = (i as u8, *m, s[i]);
                w.odd = s[(i + 1) % WORDS] | 1;
                w.n += 1;
            }
        }
        w
    }

    pub fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// The mask's words of `key & mask`, into `out` (`len()` of them).
    pub fn extract(&self, key: &Key, out: &mut [u64]) {
        for (j, o) in out.iter_mut().enumerate().take(self.len()) {
            *o = key.0[usize::from(self.idx[j])] & self.mask[j];
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

/// A hasher that passes through the one `u64` a [`Key`] writes.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(crate) type KeyHasher = BuildHasherDefault<PassThrough>;
pub(crate) type KeyMap<V> = std::collections::HashMap<Key, V, KeyHasher>;

/// Puts a (value, mask) pair into a rule, refusing to overlap a field set
/// before with a different value (then the rule can never match).
pub(crate) fn put(v: &mut Key, m: &mut Key, b: Bits, value: u64, mask: u64) {
    let fm = b.mask();
    let (val, msk) = ((value << b.shift) & fm, (mask << b.shift) & fm);
    let both = m.0[b.word] & msk;
    if (v.0[b.word] ^ val) & both != 0 {
        NEVER.set(v, 1);
        NEVER.set(m, 1);
    }
    m.0[b.word] |= msk;
    v.0[b.word] |= val & msk;
}

fn put_masked<T: Copy>(v: &mut Key, m: &mut Key, b: Bits, f: Masked<T>, conv: impl Fn(T) -> u64) {
    let mask = f.mask.map_or(u64::MAX, &conv);
    put(v, m, b, conv(f.value), mask);
}

fn put128(v: &mut Key, m: &mut Key, hi: Bits, lo: Bits, f: Masked<std::net::Ipv6Addr>) {
    let val = u128::from(f.value);
    let msk = f.mask.map_or(u128::MAX, u128::from);
    put(v, m, hi, (val >> 64) as u64, (msk >> 64) as u64);
    put(v, m, lo, val as u64, msk as u64);
}

fn mac(a: crate::wire::MacAddr) -> u64 {
    a.to_u64()
}

/// A match as a rule's (value, mask): every field, plus the flag bits of
/// the layers the fields need. MPLS fields are the top entry's
/// (`mpls`); PBB fields are not supported
/// (`OFPBMC_BAD_FIELD`). `tun_src`/`tun_dst` come as the match's
/// "registers" of those names (the codec's
/// [`Register::TunSrc`](crate::openflow::nicira::Register)).
#[cfg(test)]
pub(crate) fn match_key(m: &Match) -> Result<(Key, Key), ErrorCode> {
    match_key_tlv(m, &TlvTable::EMPTY)
}

/// [`match_key`] with `tun_metadataN` fields, which `tlv` maps
/// ([`super::tun_metadata`]; with no table they are refused).
pub(crate) fn match_key_tlv(m: &Match, tlv: &TlvTable) -> Result<(Key, Key), ErrorCode> {
    let (mut v, mut k) = (Key::default(), Key::default());
    let (v, k) = (&mut v, &mut k);
    for f in m.fields() {
        match *f {
            OxmField::InPort(p) | OxmField::InPhyPort(p) => put(v, k, IN_PORT, p.0.into(), !0),
            OxmField::Metadata(x) => put_masked(v, k, METADATA, x, |a| a),
            OxmField::EthDst(x) => put_masked(v, k, ETH_DST, x, mac),
            OxmField::EthSrc(x) => put_masked(v, k, ETH_SRC, x, mac),
            OxmField::EthType(t) => put(v, k, ETH_TYPE, t.into(), !0),
            OxmField::VlanVid(x) => {
                let mask = x.mask.map_or(0x1fff, |mk| mk & 0x1fff);
                put(v, k, VLAN_TCI, u64::from(x.value & 0x1fff), u64::from(mask));
            }
            OxmField::VlanPcp(p) => put(v, k, VLAN_TCI, u64::from(p) << 13, 0xe000),
            OxmField::IpDscp(x) => {
                put(v, k, NW_TOS, u64::from(x) << 2, 0xfc);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::IpEcn(x) => {
                put(v, k, NW_TOS, u64::from(x), 0x03);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::IpProto(x) => {
                put(v, k, NW_PROTO, x.into(), !0);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv4Src(x) | OxmField::ArpSpa(x) => {
                put_masked(v, k, IPV4_SRC, x, |a| u32::from(a).into());
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv4Dst(x) | OxmField::ArpTpa(x) => {
                put_masked(v, k, IPV4_DST, x, |a| u32::from(a).into());
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::TcpSrc(x) | OxmField::UdpSrc(x) | OxmField::SctpSrc(x) => {
                put(v, k, TP_SRC, x.into(), !0);
                put(v, k, L4_OK, 1, 1);
            }
            OxmField::TcpDst(x) | OxmField::UdpDst(x) | OxmField::SctpDst(x) => {
                put(v, k, TP_DST, x.into(), !0);
                put(v, k, L4_OK, 1, 1);
            }
            OxmField::Icmpv4Type(x) | OxmField::Icmpv6Type(x) => {
                put(v, k, TP_SRC, x.into(), !0);
                put(v, k, L4_OK, 1, 1);
            }
            OxmField::Icmpv4Code(x) | OxmField::Icmpv6Code(x) => {
                put(v, k, TP_DST, x.into(), !0);
                put(v, k, L4_OK, 1, 1);
            }
            OxmField::ArpOp(x) => {
                put(v, k, TP_SRC, x.into(), !0);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::ArpSha(x) => {
                put_masked(v, k, ARP_SHA, x, mac);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::ArpTha(x) => {
                put_masked(v, k, ARP_THA, x, mac);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv6Src(x) => {
                put128(v, k, NW_SRC_HI, NW_SRC, x);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv6Dst(x) => {
                put128(v, k, NW_DST_HI, NW_DST, x);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv6Flabel(x) => {
                put_masked(v, k, FLABEL, x, u64::from);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv6Exthdr(x) => {
                put_masked(v, k, EXTHDR, x, u64::from);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::Ipv6NdTarget(a) => {
                put128(v, k, ND_HI, ND_LO, Masked::exact(a));
                put(v, k, ND_OK, 1, 1);
            }
            OxmField::Ipv6NdSll(a) | OxmField::Ipv6NdTll(a) => {
                put(v, k, ND_LL, mac(a), !0);
                put(v, k, ND_OK, 1, 1);
            }
            OxmField::TunnelId(x) => put_masked(v, k, TUN_ID, x, |a| a),
            OxmField::MplsLabel(x) => {
                put(v, k, MPLS_LABEL, u64::from(x & 0xf_ffff), !0);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::MplsTc(x) => {
                put(v, k, MPLS_TC, u64::from(x & 7), !0);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::MplsBos(x) => {
                put(v, k, MPLS_BOS, u64::from(x & 1), !0);
                put(v, k, L3_OK, 1, 1);
            }
            OxmField::PbbIsid(_) => return Err(ErrorCode::BadMatch(BadMatchCode::BadField)),
        }
    }
    for r in m.registers() {
        let b = match r.reg {
            Register::TunSrc => TUN_SRC,
            Register::TunDst => TUN_DST,
            Register::TunIpv6 { dst, hi } => tun_ipv6_half(dst, hi),
            Register::TunMetadata { .. } => {
                super::pipeline::put_match(v, k, tlv, r)?;
                continue;
            }
            _ => continue,
        };
        put(v, k, b, r.value, r.mask_or_all());
    }
    Ok((*v, *k))
}

/// Writes a packet's tunnel metadata into its key.
#[inline]
pub(crate) fn set_tunnel(k: &mut Key, m: &crate::packet::TunMeta) {
    TUN_ID.set(k, m.id);
    TUN_SRC.set(k, u32::from(m.src).into());
    TUN_DST.set(k, u32::from(m.dst).into());
    let (s, d) = (m.ipv6_src.to_bits(), m.ipv6_dst.to_bits());
    TUN_IPV6_SRC_HI.set(k, (s >> 64) as u64);
    TUN_IPV6_SRC.set(k, s as u64);
    TUN_IPV6_DST_HI.set(k, (d >> 64) as u64);
    TUN_IPV6_DST.set(k, d as u64);
    TUN_MD_PRESENT.set(k, m.md_present);
    TUN_MD.set(k, m.md);
}

/// Writes a set-field's value into a key (the pipeline's view of the packet
/// after the action). VLAN fields change only a present tag.
pub(crate) fn set_field(k: &mut Key, f: &OxmField) {
    match *f {
        OxmField::EthDst(x) => ETH_DST.set(k, mac(x.value)),
        OxmField::EthSrc(x) => ETH_SRC.set(k, mac(x.value)),
        OxmField::VlanVid(x) => {
            let t = VLAN_TCI.get(k);
            if t & VID_PRESENT != 0 {
                VLAN_TCI.set(k, (t & !0x0fff) | u64::from(x.value & 0x0fff));
            }
        }
        OxmField::VlanPcp(p) => {
            let t = VLAN_TCI.get(k);
            if t & VID_PRESENT != 0 {
                VLAN_TCI.set(k, (t & 0x1fff) | (u64::from(p & 7) << 13));
            }
        }
        OxmField::IpDscp(x) => {
            let t = NW_TOS.get(k);
            NW_TOS.set(k, (t & 0x03) | (u64::from(x & 0x3f) << 2));
        }
        OxmField::IpEcn(x) => {
            let t = NW_TOS.get(k);
            NW_TOS.set(k, (t & 0xfc) | u64::from(x & 3));
        }
        OxmField::Ipv4Src(x) | OxmField::ArpSpa(x) => IPV4_SRC.set(k, u32::from(x.value).into()),
        OxmField::Ipv4Dst(x) | OxmField::ArpTpa(x) => IPV4_DST.set(k, u32::from(x.value).into()),
        OxmField::TcpSrc(x) | OxmField::UdpSrc(x) | OxmField::SctpSrc(x) | OxmField::ArpOp(x) => {
            TP_SRC.set(k, x.into())
        }
        OxmField::TcpDst(x) | OxmField::UdpDst(x) | OxmField::SctpDst(x) => TP_DST.set(k, x.into()),
        OxmField::Icmpv4Type(x) | OxmField::Icmpv6Type(x) => TP_SRC.set(k, x.into()),
        OxmField::Icmpv4Code(x) | OxmField::Icmpv6Code(x) => TP_DST.set(k, x.into()),
        OxmField::ArpSha(x) => ARP_SHA.set(k, mac(x.value)),
        OxmField::ArpTha(x) => ARP_THA.set(k, mac(x.value)),
        OxmField::Ipv6Src(x) => {
            let a = u128::from(x.value);
            NW_SRC_HI.set(k, (a >> 64) as u64);
            NW_SRC.set(k, a as u64);
        }
        OxmField::Ipv6Dst(x) => {
            let a = u128::from(x.value);
            NW_DST_HI.set(k, (a >> 64) as u64);
            NW_DST.set(k, a as u64);
        }
        OxmField::Ipv6Flabel(x) => FLABEL.set(k, x.value.into()),
        OxmField::Ipv6NdTarget(a) => {
            let a = u128::from(a);
            ND_HI.set(k, (a >> 64) as u64);
            ND_LO.set(k, a as u64);
        }
        OxmField::Ipv6NdSll(a) | OxmField::Ipv6NdTll(a) => ND_LL.set(k, mac(a)),
        OxmField::MplsLabel(x) => MPLS_LABEL.set(k, u64::from(x)),
        OxmField::MplsTc(x) => MPLS_TC.set(k, u64::from(x)),
        OxmField::TunnelId(x) => TUN_ID.set(k, x.value),
        // Refused when the flow is installed.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::PortNo;
    use crate::wire::MacAddr;
    use crate::wire::ethernet::udp_frame;
    use std::net::Ipv4Addr;

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
    fn match_keys() {
        let m = Match::from_fields(vec![
            OxmField::InPort(PortNo(3)),
            OxmField::EthType(0x0800),
            OxmField::Ipv4Dst(Masked::new(
                Ipv4Addr::new(10, 0, 1, 0),
                Ipv4Addr::new(255, 255, 255, 0),
            )),
        ])
        .unwrap();
        let (v, mk) = match_key(&m).unwrap();
        assert!(parse(&udp(), 3).unwrap().key.matches(&v, &mk));
        assert!(!parse(&udp(), 4).unwrap().key.matches(&v, &mk));
        // in_phy_port disagreeing with in_port can never match.
        let m = Match::from_fields(vec![
            OxmField::InPort(PortNo(3)),
            OxmField::InPhyPort(PortNo(4)),
        ])
        .unwrap();
        let (v, mk) = match_key(&m).unwrap();
        assert_eq!(NEVER.get(&v), 1);
        assert!(!parse(&udp(), 3).unwrap().key.matches(&v, &mk));
        // MPLS fields are the top entry's, and need a whole one.
        let m = Match::from_fields(vec![OxmField::EthType(0x8847), OxmField::MplsBos(1)]).unwrap();
        let (v, mk) = match_key(&m).unwrap();
        assert_eq!((MPLS_BOS.get(&v), L3_OK.get(&v)), (1, 1));
        assert_eq!(MPLS_BOS.get(&mk), 1);
        let mut f = udp();
        f[12..14].copy_from_slice(&[0x88, 0x47]);
        f[14..18].copy_from_slice(&[0x00, 0x00, 0xa1, 0x40]);
        let p = parse(&f, 1).unwrap();
        assert!(p.key.matches(&v, &mk));
        assert_eq!(MPLS_LABEL.get(&p.key), 10);
        assert_eq!(p.depth, 18);
        f[16] = 0xa0;
        assert!(!parse(&f, 1).unwrap().key.matches(&v, &mk));
        assert!(!parse(&f[..16], 1).unwrap().key.matches(&v, &mk));
        let pbb = Match::from_fields(vec![
            OxmField::EthType(0x88e7),
            OxmField::PbbIsid(Masked::exact(1)),
        ])
        .unwrap();
        assert_eq!(
            match_key(&pbb),
            Err(ErrorCode::BadMatch(BadMatchCode::BadField))
        );
    }

    #[test]
    fn stages_partition_the_key() {
        for w in 0..WORDS {
            let mut seen = 0u64;
            for s in &STAGES {
                assert_eq!(seen & s.0[w], 0, "word {w}: stages overlap");
                seen |= s.0[w];
            }
            assert_eq!(seen, u64::MAX, "word {w}: bits in no stage");
        }
        let mut m = Key::default();
        assert_eq!(last_stage(&m), 0);
        ETH_DST.all(&mut m);
        assert_eq!(last_stage(&m), 1);
        L3_OK.all(&mut m);
        assert_eq!(last_stage(&m), STAGE_L3);
        TP_SRC.all(&mut m);
        assert_eq!(last_stage(&m), STAGE_L4);
    }

    #[test]
    fn masked_hash_and_compare_see_only_the_mask() {
        let mut mask = Key::default();
        ETH_DST.all(&mut mask);
        IN_PORT.all(&mut mask);
        IPV4_DST.all(&mut mask);
        let w = Words::of(&mask);
        assert_eq!(w.len(), 3);
        let a = parse(&udp(), 3).unwrap().key;
        let mut b = a;
        TP_SRC.set(&mut b, 7);
        NW_TTL.set(&mut b, 1);
        assert_eq!(a.hash_masked(&w), b.hash_masked(&w));
        let mut v = [0; WORDS];
        w.extract(&a, &mut v);
        assert!(b.eq_masked(&w, &v));
        IPV4_DST.set(&mut b, 9);
        assert!(!b.eq_masked(&w, &v));
        assert_ne!(a.hash_masked(&w), b.hash_masked(&w));
    }

    #[test]
    fn hash_spreads_single_bits() {
        let mut seen = std::collections::HashSet::new();
        for w in 0..WORDS {
            for b in 0..64 {
                let mut k = Key::default();
                k.0[w] = 1 << b;
                assert!(seen.insert(k.hash64() & 0xffff_ffff), "{w}/{b}");
            }
        }
    }
}
