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
