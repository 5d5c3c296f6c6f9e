//! MPLS (RFC 3032) as the pipeline sees it: the top label stack entry in
//! the flow key, and the byte rewrites of push_mpls, pop_mpls,
//! set_mpls_ttl, dec_mpls_ttl and set-field on `mpls_label`/`mpls_tc`.
//!
//! As in Open vSwitch, the parser reads only the top entry of an MPLS
//! frame (ethertypes 0x8847 and 0x8848): label, TC, bottom-of-stack and
//! TTL. A label is pushed after any VLAN tags; a pushed entry copies the
//! top one (bottom-of-stack cleared) or, on a frame without MPLS, is
//! built from its IP header as Open vSwitch builds it: label 0 (IPv4
//! explicit null) or 2 (IPv6 explicit null), TC from the low bits of the
//! DSCP, the IP TTL (64 without IP), bottom of stack set. Every byte
//! access is bounds-checked.

use super::actions::Frame;
use super::key::{Bits, ETH_IPV6, L3, Layout};

/// The MPLS ethertypes (unicast, multicast).
pub(crate) const ETH_MPLS: u16 = 0x8847;
pub(crate) const ETH_MPLS_MC: u16 = 0x8848;

/// The top label stack entry in the key: `nw_src`'s low 32 bits, free in
/// an MPLS frame, whose payload the key does not describe.
pub(crate) const MPLS_LSE: Bits = Bits {
    word: 5,
    shift: 0,
    width: 32,
};
pub(crate) const MPLS_LABEL: Bits = Bits {
    word: 5,
    shift: 12,
    width: 20,
};
pub(crate) const MPLS_TC: Bits = Bits {
    word: 5,
    shift: 9,
    width: 3,
};
pub(crate) const MPLS_BOS: Bits = Bits {
    word: 5,
    shift: 8,
    width: 1,
};
pub(crate) const MPLS_TTL: Bits = Bits {
    word: 5,
    shift: 0,
    width: 8,
};

/// The bottom-of-stack bit within an entry.
pub(crate) const BOS: u32 = 1 << 8;

pub(crate) fn is_mpls(eth_type: u16) -> bool {
    eth_type == ETH_MPLS || eth_type == ETH_MPLS_MC
}

/// The entry Open vSwitch pushes on a frame without MPLS, from its IP
/// header (`tos`, `ttl`) if it has one.
pub(crate) fn new_lse(eth_type: u16, ip: Option<(u8, u8)>) -> u32 {
    let label: u32 = if eth_type == ETH_IPV6 { 2 } else { 0 };
    let (tc, ttl) = match ip {
        Some((tos, ttl)) => (u32::from(tos >> 2) & 7, if ttl == 0 { 64 } else { ttl }),
        None => (0, 64),
    };
    (label << 12) | (tc << 9) | BOS | u32::from(ttl)
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn put32(d: &mut [u8], at: usize, v: u32) {
    if let Some(b) = d.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Where the ethertype of a frame with `vlans` tags is.
fn eth_type_at(lay: &Layout) -> usize {
    12 + 4 * usize::from(lay.vlans)
}

/// The entry to push on the frame as it is now.
fn lse_to_push(d: &[u8], lay: &Layout) -> u32 {
    let at = eth_type_at(lay);
    let et = d
        .get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let l3 = usize::from(lay.l3);
    match lay.l3_kind {
        L3::Mpls => be32(d, l3).map_or(new_lse(et, None), |top| top & !BOS),
        L3::Ipv4 => new_lse(et, d.get(l3 + 1).zip(d.get(l3 + 8)).map(|(a, b)| (*a, *b))),
        L3::Ipv6 => {
            let ip = d
                .get(l3..l3 + 8)
                .map(|b| (((b[0] & 0x0f) << 4) | (b[1] >> 4), b[7]));
            new_lse(et, ip)
        }
        _ => new_lse(et, None),
    }
}

/// Pushes an entry after the VLAN tags and sets the ethertype; false if
/// the buffer has no room for 4 more bytes (the packet is dropped).
pub(crate) fn push(f: &mut dyn Frame, lay: &mut Layout, eth_type: u16) -> bool {
    let len = f.bytes().len();
    let at = eth_type_at(lay) + 2;
    if len < at {
        return false;
    }
    let lse = lse_to_push(f.bytes(), lay);
    if !f.resize(len + 4) {
        return false;
    }
    let d = f.bytes();
    d.copy_within(at..len, at + 4);
    put32(d, at, lse);
    if let Some(b) = d.get_mut(at - 2..at) {
        b.copy_from_slice(&eth_type.to_be_bytes());
    }
    // What follows the label is no longer parsed: only the top entry.
    *lay = Layout {
        vlans: lay.vlans,
        l3_kind: L3::Mpls,
        l3: at as u16,
        ..Layout::default()
    };
    true
}

/// Pops the top entry and sets the ethertype; nothing on a frame without
/// MPLS. The next entry, if the ethertype says MPLS, is the new top.
pub(crate) fn pop(f: &mut dyn Frame, lay: &mut Layout, eth_type: u16) {
    let len = f.bytes().len();
    let at = usize::from(lay.l3);
    if lay.l3_kind != L3::Mpls || len < at + 4 {
        return;
    }
    let d = f.bytes();
    d.copy_within(at + 4..len, at);
    if let Some(b) = d.get_mut(at - 2..at) {
        b.copy_from_slice(&eth_type.to_be_bytes());
    }
    f.resize(len - 4);
    // An IP payload is not parsed in this pass (Open vSwitch recirculates
    // to see it): only L2 rewrites may follow.
    let kind = if is_mpls(eth_type) && len - 4 >= at + 4 {
        L3::Mpls
    } else {
        L3::None
    };
    *lay = Layout {
        vlans: lay.vlans,
        l3_kind: kind,
        l3: if kind == L3::Mpls { at as u16 } else { 0 },
        ..Layout::default()
    };
}

/// Sets (`to`) or decrements (None) the top entry's TTL; false if a TTL
/// of 0 or 1 cannot be decremented (the packet is dropped).
pub(crate) fn set_ttl(d: &mut [u8], lay: &Layout, to: Option<u8>) -> bool {
    if lay.l3_kind != L3::Mpls {
        return true;
    }
    let Some(ttl) = d.get_mut(usize::from(lay.l3) + 3) else {
        return true;
    };
    match to {
        Some(t) => *ttl = t,
        None if *ttl <= 1 => return false,
        None => *ttl -= 1,
    }
    true
}

/// Sets the top entry's label (`tc` None) or TC.
pub(crate) fn set_label_tc(d: &mut [u8], lay: &Layout, label: Option<u32>, tc: Option<u8>) {
    let at = usize::from(lay.l3);
    if lay.l3_kind != L3::Mpls {
        return;
    }
    let Some(mut lse) = be32(d, at) else {
        return;
    };
    if let Some(l) = label {
        lse = (lse & 0xfff) | ((l & 0xf_ffff) << 12);
    }
    if let Some(t) = tc {
        lse = (lse & !(7 << 9)) | (u32::from(t & 7) << 9);
    }
    put32(d, at, lse);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::flow::actions::{Op, VecFrame, apply};
    use crate::module::flow::key::{ETH_TYPE, L3_OK, parse};
    use crate::openflow::oxm::OxmField;
    use crate::wire::MacAddr;
    use crate::wire::ethernet::udp_frame;

    fn udp4() -> Vec<u8> {
        let mut f = udp_frame(
            60,
            MacAddr::local(2),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 1, 1],
            1000,
            2000,
        );
        f[15] = 46 << 2; // EF: TC 6 from its low bits.
        f
    }

    fn run(f: &[u8], ops: &[Op]) -> Option<Vec<u8>> {
        let p = parse(f, 1)?;
        let mut v = VecFrame::new(f, 8);
        apply(&mut v, p.layout, ops).then(|| v.into_vec())
    }

    #[test]
    fn push_builds_the_entry_from_ip_and_parses_back() {
        let f = udp4();
        let g = run(&f, &[Op::PushMpls(ETH_MPLS)]).expect("room");
        assert_eq!(g.len(), f.len() + 4);
        assert_eq!(&g[12..14], &[0x88, 0x47]);
        // Label 0, TC 6, bottom of stack, TTL 64 (the frame's).
        assert_eq!(be32(&g, 14), Some((6 << 9) | BOS | u32::from(f[22])));
        assert_eq!(&g[18..], &f[14..]);
        let p = parse(&g, 1).expect("parses");
        assert_eq!(ETH_TYPE.get(&p.key), 0x8847);
        assert_eq!(L3_OK.get(&p.key), 1);
        assert_eq!(MPLS_LABEL.get(&p.key), 0);
        assert_eq!(MPLS_TC.get(&p.key), 6);
        assert_eq!(MPLS_BOS.get(&p.key), 1);
        assert_eq!(MPLS_TTL.get(&p.key), u64::from(f[22]));
        assert_eq!(p.layout.l3_kind, L3::Mpls);
    }

    #[test]
    fn a_second_push_copies_the_top_and_pops_undo_them() {
        let f = udp4();
        let ops = [
            Op::PushMpls(ETH_MPLS),
            Op::Set(OxmField::MplsLabel(10)),
            Op::Set(OxmField::MplsTc(3)),
            Op::DecMplsTtl,
        ];
        let g = run(&f, &ops).expect("room");
        let top = (10 << 12) | (3 << 9) | BOS | (u32::from(f[22]) - 1);
        assert_eq!(be32(&g, 14), Some(top));
        let h = run(&g, &[Op::PushMpls(ETH_MPLS), Op::SetMplsTtl(9)]).expect("room");
        assert_eq!(be32(&h, 14), Some((top & !BOS & !0xff) | 9));
        assert_eq!(be32(&h, 18), Some(top));
        let i = run(&h, &[Op::PopMpls(ETH_MPLS)]).expect("pops");
        assert_eq!(i, g);
        // Back to the frame as it was: an MPLS TTL is not the IP TTL.
        let j = run(&i, &[Op::PopMpls(0x0800)]).expect("pops");
        assert_eq!(j, f);
    }

    #[test]
    fn ttl_that_cannot_be_decremented_drops() {
        let f = udp4();
        let g = run(&f, &[Op::PushMpls(ETH_MPLS), Op::SetMplsTtl(1)]).expect("room");
        assert_eq!(run(&g, &[Op::DecMplsTtl]), None);
        // On a frame without MPLS, MPLS ops change nothing.
        assert_eq!(run(&f, &[Op::DecMplsTtl, Op::PopMpls(0x0800)]), Some(f));
    }

    #[test]
    fn push_after_vlan_tags_and_without_ip() {
        let mut f = vec![0u8; 64];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[14..16].copy_from_slice(&[0x00, 0x05]);
        f[16..18].copy_from_slice(&[0x88, 0xb5]);
        let g = run(&f, &[Op::PushMpls(ETH_MPLS_MC)]).expect("room");
        // The tag stays in front; the ethertype after it is MPLS's.
        assert_eq!(&g[12..16], &f[12..16]);
        assert_eq!(&g[16..18], &[0x88, 0x48]);
        assert_eq!(be32(&g, 18), Some(BOS | 64));
        // No room: dropped.
        let p = parse(&f, 1).expect("parses");
        let mut v = VecFrame::new(&f, 0);
        assert!(!apply(&mut v, p.layout, &[Op::PushMpls(ETH_MPLS)]));
    }
}
