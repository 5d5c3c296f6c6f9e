//! `tun_ipv6_src` and `tun_ipv6_dst` (`NXM_NX_TUN_IPV6_SRC`/`_DST`, NXM
//! class `0x0001`, fields 109 and 110, 128 bits, maskable): the outer IPv6
//! addresses of a packet from an IPv6 tunnel, as Open vSwitch has them
//! (`man ovs-fields`, "Tunnel Fields").
//!
//! The model keeps the tunnel's addresses beside the registers
//! ([`Register::TunSrc`]), whose values are 64 bits wide: a 128-bit field
//! is kept there as its two halves ([`Register::TunIpv6`]), both present
//! whenever the TLV is, each with its half of the mask if the TLV has one.
//! This module splits a TLV into its halves on decoding and writes the
//! halves back as the one TLV they came from, so a match echoes byte for
//! byte and everything that handles registers (flow identity, the flow
//! key, packet-ins) handles these too.
//!
//! A SET_FIELD of a whole address is [`NxAction::SetTunIpv6`]; a
//! `load`/`move` names the field by its header ([`header`]), with offsets
//! up to 128 bits (Open vSwitch sends `load:` of a whole address as two
//! 64-bit `reg_load`s).

use std::net::Ipv6Addr;

use super::bytes::Writer;
use super::error::BadActionCode;
use super::nicira::{NXM_CLASS_NX, NxAction, NxMatchField, Register};
use super::oxm::OxmError;

/// `NXM_NX_TUN_IPV6_SRC`'s field number.
pub const NX_TUN_IPV6_SRC: u8 = 109;
/// `NXM_NX_TUN_IPV6_DST`'s field number.
pub const NX_TUN_IPV6_DST: u8 = 110;

/// The field number of `tun_ipv6_dst` (`dst`) or `tun_ipv6_src`.
pub const fn field(dst: bool) -> u8 {
    if dst {
        NX_TUN_IPV6_DST
    } else {
        NX_TUN_IPV6_SRC
    }
}

/// The NXM header of the field, with or without mask.
pub const fn header(dst: bool, hasmask: bool) -> u32 {
    ((NXM_CLASS_NX as u32) << 16)
        | ((field(dst) as u32) << 9)
        | if hasmask { 0x100 | 32 } else { 16 }
}

/// Whether a header (any length, with or without mask) names one of the
/// two fields: `Some(dst)`.
pub fn names(header: u32) -> Option<bool> {
    if (header >> 16) as u16 != NXM_CLASS_NX {
        return None;
    }
    match (header >> 9) as u8 & 0x7f {
        NX_TUN_IPV6_SRC => Some(false),
        NX_TUN_IPV6_DST => Some(true),
        _ => None,
    }
}

/// The two halves of a match on `tun_ipv6_dst` (`dst`) or `tun_ipv6_src`
/// (the value's bits outside the mask cleared).
pub fn halves(dst: bool, value: Ipv6Addr, mask: Option<Ipv6Addr>) -> [NxMatchField; 2] {
    let m = mask.map(Ipv6Addr::to_bits);
    let v = value.to_bits() & m.unwrap_or(u128::MAX);
    let half = |hi: bool| {
        let part = |x: u128| if hi { (x >> 64) as u64 } else { x as u64 };
        NxMatchField {
            reg: Register::TunIpv6 { dst, hi },
            value: part(v),
            mask: m.map(part),
        }
    };
    [half(true), half(false)]
}

/// Reads a match TLV (`header`, then value and mask in `p`) of one of the
/// two fields as its halves; `None` if the header names neither.
pub(crate) fn decode_tlv(header: u32, p: &[u8]) -> Option<Result<[NxMatchField; 2], OxmError>> {
    let dst = names(header)?;
    let hasmask = header & 0x100 != 0;
    let want = if hasmask { 32 } else { 16 };
    if (header & 0xff) as usize != want || p.len() != want {
        return Some(Err(OxmError::Len));
    }
    let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default());
    let value = addr(&p[..16]);
    let mask = hasmask.then(|| addr(&p[16..]));
    if mask.is_some_and(|m| value.to_bits() & !m.to_bits() != 0) {
        return Some(Err(OxmError::Wildcards));
    }
    Some(Ok(halves(dst, value, mask)))
}

/// The address (and mask, if any half has one) the halves in `regs` give
/// `tun_ipv6_dst` (`dst`) or `tun_ipv6_src`; `None` if neither half is
/// there. A missing half is wildcarded.
pub fn joined(regs: &[NxMatchField], dst: bool) -> Option<(Ipv6Addr, Option<Ipv6Addr>)> {
    let find = |hi| regs.iter().find(|r| r.reg == Register::TunIpv6 { dst, hi });
    let (h, l) = (find(true), find(false));
    if h.is_none() && l.is_none() {
        return None;
    }
    let part = |r: Option<&NxMatchField>| {
        r.map_or((0, 0, true), |r| {
            (r.value, r.mask.unwrap_or(u64::MAX), r.mask.is_some())
        })
    };
    let ((hv, hm, hmasked), (lv, lm, lmasked)) = (part(h), part(l));
    let wide = |a: u64, b: u64| Ipv6Addr::from_bits((u128::from(a) << 64) | u128::from(b));
    let masked = hmasked || lmasked || h.is_none() || l.is_none();
    Some((wide(hv, lv), masked.then(|| wide(hm, lm))))
}

/// Writes `regs` as match TLVs: each register as itself, and the halves
/// of an IPv6 tunnel address as the one TLV of that field, where its
/// first half stands.
pub(crate) fn encode_registers(regs: &[NxMatchField], w: &mut Writer<'_>) {
    for (i, r) in regs.iter().enumerate() {
        let Register::TunIpv6 { dst, .. } = r.reg else {
            r.encode(w);
            continue;
        };
        if first_half(regs, i, dst)
            && let Some((v, m)) = joined(regs, dst)
        {
            w.u32(header(dst, m.is_some()));
            w.bytes(&v.octets());
            if let Some(m) = m {
                w.bytes(&m.octets());
            }
        }
    }
}

/// The bytes [`encode_registers`] writes for `regs`.
pub(crate) fn registers_len(regs: &[NxMatchField]) -> usize {
    regs.iter()
        .enumerate()
        .map(|(i, r)| match r.reg {
            Register::TunIpv6 { dst, .. } if first_half(regs, i, dst) => {
                4 + if joined(regs, dst).is_some_and(|(_, m)| m.is_some()) {
                    32
                } else {
                    16
                }
            }
            Register::TunIpv6 { .. } => 0,
            _ => r.encoded_len(),
        })
        .sum()
}

/// Whether `regs[i]` is the first half of its field in `regs`.
fn first_half(regs: &[NxMatchField], i: usize, dst: bool) -> bool {
    !regs[..i]
        .iter()
        .any(|q| matches!(q.reg, Register::TunIpv6 { dst: d, .. } if d == dst))
}

/// Reads the value of an unmasked SET_FIELD of one of the two fields (the
/// 16 bytes after `header`); `None` if the header names neither, an error
/// if the length is not a whole address.
pub(crate) fn decode_set(header: u32, value: &[u8]) -> Option<Result<NxAction, ()>> {
    let dst = names(header)?;
    if header & 0x1ff != 16 || value.len() != 16 {
        return Some(Err(()));
    }
    let addr = Ipv6Addr::from(<[u8; 16]>::try_from(value).unwrap_or_default());
    Some(Ok(NxAction::SetTunIpv6 { dst, addr }))
}

/// Reads the 32 bytes (value, mask) of an OpenFlow 1.5 masked SET_FIELD of
/// `tun_ipv6_dst` (`dst`) or `tun_ipv6_src`, Open vSwitch's `load` there:
/// the mask must be one run of bits, of at most 64 (a load) or all 128 (a
/// whole address).
pub(crate) fn decode_masked_set(dst: bool, body: &[u8]) -> Result<NxAction, BadActionCode> {
    let word = |b: &[u8]| u128::from_be_bytes(<[u8; 16]>::try_from(b).unwrap_or_default());
    let (Some(v), Some(m)) = (body.get(..16), body.get(16..32)) else {
        return Err(BadActionCode::BadSetLen);
    };
    let (value, mask) = (word(v), word(m));
    if mask == u128::MAX {
        return Ok(NxAction::SetTunIpv6 {
            dst,
            addr: Ipv6Addr::from_bits(value),
        });
    }
    let ofs = mask.trailing_zeros() as u16;
    let n_bits = mask.count_ones() as u16;
    let run = ((1u128 << n_bits) - 1) << ofs;
    if mask == 0 || n_bits > 64 || run != mask || value & !mask != 0 {
        return Err(BadActionCode::BadSetArgument);
    }
    Ok(NxAction::RegLoad {
        dst: super::nicira::FieldRef(header(dst, false)),
        ofs,
        n_bits,
        value: (value >> ofs) as u64,
    })
}

/// Writes a `load` of `n_bits` (at most 64) of `value` at `ofs` into
/// `tun_ipv6_dst` (`dst`) or `tun_ipv6_src` as OpenFlow 1.5's masked
/// SET_FIELD (type, the caller patches the length, then the field and its
/// 32 bytes).
pub(crate) fn encode_masked_set(dst: bool, ofs: u16, n_bits: u16, value: u64, w: &mut Writer<'_>) {
    let ones = if n_bits >= 64 {
        u128::from(u64::MAX)
    } else {
        (1u128 << n_bits) - 1
    };
    let mask = ones.checked_shl(u32::from(ofs)).unwrap_or(0);
    let v = (u128::from(value) & ones)
        .checked_shl(u32::from(ofs))
        .unwrap_or(0)
        & mask;
    w.u16(25); // OFPAT_SET_FIELD
    w.u16(0);
    w.u32(header(dst, true));
    w.bytes(&v.to_be_bytes());
    w.bytes(&mask.to_be_bytes());
}

/// The field's name as Open vSwitch prints it.
pub fn name(dst: bool) -> &'static str {
    if dst { "tun_ipv6_dst" } else { "tun_ipv6_src" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(regs: &[NxMatchField]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        encode_registers(regs, &mut w);
        w.finish().unwrap();
        v
    }

    #[test]
    fn headers_are_open_vswitchs() {
        // As ovs-ofctl writes tun_ipv6_src=... and tun_ipv6_dst=.../64.
        assert_eq!(header(false, false), 0x0001_da10);
        assert_eq!(header(true, true), 0x0001_dd20);
        assert_eq!(names(0x0001_dc10), Some(true));
        assert_eq!(names(0x0001_da20), Some(false));
        assert_eq!(names(0x0001_3e04), None);
        assert_eq!(names(0x8000_da10), None);
    }

    #[test]
    fn a_tlv_splits_into_halves_and_joins_back_byte_for_byte() {
        let a: Ipv6Addr = "fd00::1:2".parse().unwrap();
        let mut tlv = a.octets().to_vec();
        let [h, l] = decode_tlv(header(false, false), &tlv).unwrap().unwrap();
        assert_eq!((h.value, l.value), (0xfd00_0000_0000_0000, 0x1_0002));
        assert_eq!((h.mask, l.mask), (None, None));
        let regs = [h, l];
        assert_eq!(joined(&regs, false), Some((a, None)));
        assert_eq!(joined(&regs, true), None);
        let mut want = 0x0001_da10u32.to_be_bytes().to_vec();
        want.extend(a.octets());
        assert_eq!(enc(&regs), want);
        assert_eq!(registers_len(&regs), want.len());
        // fd00::/16 on the destination, between two registers.
        let m: Ipv6Addr = "ffff::".parse().unwrap();
        let p: Ipv6Addr = "fd00::".parse().unwrap();
        tlv = p.octets().to_vec();
        tlv.extend(m.octets());
        let [h, l] = decode_tlv(header(true, true), &tlv).unwrap().unwrap();
        assert_eq!((l.value, l.mask), (0, Some(0)));
        let r1 = NxMatchField {
            reg: Register::Reg(1),
            value: 5,
            mask: None,
        };
        let regs = [r1, h, r1, l];
        let mut want = r1
            .reg
            .header(false)
            .to_be_bytes()
            .iter()
            .chain(&5u32.to_be_bytes())
            .copied()
            .collect::<Vec<u8>>();
        let one = want.clone();
        want.extend(0x0001_dd20u32.to_be_bytes());
        want.extend(&tlv);
        want.extend(one);
        assert_eq!(enc(&regs), want);
        assert_eq!(registers_len(&regs), want.len());
    }

    #[test]
    fn openflow15_loads_are_masked_set_fields_both_ways() {
        let load = NxAction::RegLoad {
            dst: super::super::nicira::FieldRef(header(true, false)),
            ofs: 64,
            n_bits: 64,
            value: 0xfd00_0000_0000_0000,
        };
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        encode_masked_set(true, 64, 64, 0xfd00_0000_0000_0000, &mut w);
        w.finish().unwrap();
        assert_eq!(v.len(), 4 + 4 + 32);
        assert_eq!(v[4..8], 0x0001_dd20u32.to_be_bytes());
        assert_eq!(decode_masked_set(true, &v[8..]), Ok(load));
        // All 128 bits: a whole address.
        let mut all = [0u8; 32];
        all[..16].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        all[16..].fill(0xff);
        assert_eq!(
            decode_masked_set(false, &all),
            Ok(NxAction::SetTunIpv6 {
                dst: false,
                addr: "fd00::2".parse().unwrap()
            })
        );
        // Not one run, more than 64 bits, a value outside the mask, short.
        let mut bad = [0u8; 32];
        bad[16] = 0x80;
        bad[31] = 1;
        assert_eq!(
            decode_masked_set(false, &bad),
            Err(BadActionCode::BadSetArgument)
        );
        bad[16..28].fill(0xff);
        bad[28..].fill(0xff);
        bad[16] = 0x7f;
        assert_eq!(
            decode_masked_set(false, &bad),
            Err(BadActionCode::BadSetArgument)
        );
        let mut outside = [0u8; 32];
        outside[0] = 1;
        outside[31] = 1;
        assert_eq!(
            decode_masked_set(false, &outside),
            Err(BadActionCode::BadSetArgument)
        );
        assert_eq!(
            decode_masked_set(false, &outside[..20]),
            Err(BadActionCode::BadSetLen)
        );
    }

    #[test]
    fn bad_tlvs_are_refused() {
        let a = [0u8; 16];
        assert_eq!(
            decode_tlv(0x0001_da0f, &a[..15]).unwrap(),
            Err(OxmError::Len)
        );
        assert_eq!(decode_tlv(0x0001_da20, &a).unwrap(), Err(OxmError::Len));
        // A value bit outside the mask.
        let mut vm = [0u8; 32];
        vm[15] = 1;
        assert_eq!(
            decode_tlv(0x0001_db20, &vm).unwrap(),
            Err(OxmError::Wildcards)
        );
        vm[31] = 1;
        assert!(decode_tlv(0x0001_db20, &vm).unwrap().is_ok());
        assert!(decode_tlv(0x0001_0004, &a[..4]).is_none());
        assert_eq!(decode_set(0x0001_dc10, &a[..8]), Some(Err(())));
        assert_eq!(
            decode_set(0x0001_dc10, &a),
            Some(Ok(NxAction::SetTunIpv6 {
                dst: true,
                addr: Ipv6Addr::UNSPECIFIED
            }))
        );
        assert_eq!(decode_set(0x0001_dd20, &vm), Some(Err(())));
    }
}
