//! `tos=inherit` and `ttl=inherit`: the outer TOS (traffic class) and TTL
//! (hop limit) a frame goes out with, from its inner IPv4 or IPv6 header,
//! as Open vSwitch's `tnl_port_send` computes them:
//!
//! - `tos=inherit`: the inner DSCP; ECN is inherited too (Open vSwitch
//!   copies it whatever `tos` says; mswitch only where `tos=inherit`, see
//!   the README), a CE mark going out as ECT(0) (RFC 6040's normal mode:
//!   the underlay may mark it CE again).
//! - `ttl=inherit`: the inner TTL or hop limit, as the frame has it when it
//!   is sent (after any `dec_ttl`).
//! - A frame that is not IP (or too short to say) goes with the port's
//!   values: TOS 0 and TTL 64 unless a number was configured for the one
//!   not inherited.
//!
//! The inner header is found behind up to two VLAN tags (802.1Q,
//! 802.1ad), as Open vSwitch's flow parse does. Only the bytes needed are
//! read, every length checked: the frame is untrusted.

/// ECN bits of a TOS byte, and their values.
const ECN_MASK: u8 = 0x03;
const ECN_CE: u8 = 0x03;
const ECN_ECT0: u8 = 0x02;

/// The outer (TOS, TTL) of `frame` for a port whose configured values are
/// `tos` and `ttl`, each replaced by the inner header's where the port
/// inherits it.
#[inline]
pub fn outer_tos_ttl(
    frame: &[u8],
    tos_inherit: bool,
    ttl_inherit: bool,
    tos: u8,
    ttl: u8,
) -> (u8, u8) {
    match inner_tos_ttl(frame) {
        Some((t, h)) => (
            if tos_inherit { ecn_out(t) } else { tos },
            if ttl_inherit { h } else { ttl },
        ),
        None => (tos, ttl),
    }
}

/// The inner TOS with its ECN as the outer header carries it.
fn ecn_out(t: u8) -> u8 {
    if t & ECN_MASK == ECN_CE {
        (t & !ECN_MASK) | ECN_ECT0
    } else {
        t
    }
}

/// The inner IP header's TOS (traffic class) and TTL (hop limit), if the
/// frame carries IPv4 or IPv6.
fn inner_tos_ttl(f: &[u8]) -> Option<(u8, u8)> {
    let mut at = 12;
    let mut ty = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
    for _ in 0..2 {
        if ty != 0x8100 && ty != 0x88a8 {
            break;
        }
        at += 4;
        ty = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
    }
    let ip = f.get(at + 2..)?;
    match ty {
        // Version 4, and a whole fixed header (TOS at 1, TTL at 8).
        0x0800 if ip.len() >= 20 && ip[0] >> 4 == 4 => Some((ip[1], ip[8])),
        // Version 6: traffic class across bytes 0 and 1, hop limit at 7.
        0x86dd if ip.len() >= 40 && ip[0] >> 4 == 6 => Some(((ip[0] << 4) | (ip[1] >> 4), ip[7])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;
    use crate::wire::ethernet::udp_frame;

    fn v4(tos: u8, ttl: u8) -> Vec<u8> {
        let mut f = udp_frame(
            60,
            MacAddr::local(2),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            2,
        );
        (f[15], f[22]) = (tos, ttl);
        f
    }

    fn v6(tc: u8, hlim: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60 | (tc >> 4);
        f[15] = tc << 4;
        f[14 + 7] = hlim;
        f
    }

    #[test]
    fn ipv4_and_ipv6_give_their_dscp_ecn_and_ttl() {
        // DSCP 46 (EF), ECT(1); TTL 17.
        assert_eq!(outer_tos_ttl(&v4(0xb9, 17), true, true, 0, 64), (0xb9, 17));
        // CE goes out as ECT(0).
        assert_eq!(outer_tos_ttl(&v4(0xbb, 17), true, false, 0, 64), (0xba, 64));
        assert_eq!(outer_tos_ttl(&v6(0x28, 3), true, true, 0, 64), (0x28, 3));
        // Only what is inherited: the rest is the port's.
        assert_eq!(
            outer_tos_ttl(&v6(0x28, 3), false, true, 0x10, 64),
            (0x10, 3)
        );
        assert_eq!(
            outer_tos_ttl(&v4(0x28, 3), false, false, 0x10, 9),
            (0x10, 9)
        );
    }

    #[test]
    fn tagged_frames_are_read_behind_their_tags() {
        let mut f = v4(0x20, 5);
        // Two tags (802.1ad, then 802.1Q) before the IPv4 header.
        let tags = [0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2];
        f.splice(12..12, tags);
        assert_eq!(outer_tos_ttl(&f, true, true, 0, 64), (0x20, 5));
        // A third tag hides it: not IP.
        f.splice(12..12, [0x81, 0x00, 0, 3]);
        assert_eq!(outer_tos_ttl(&f, true, true, 0, 64), (0, 64));
    }

    #[test]
    fn anything_else_goes_with_the_ports_values() {
        let arp = {
            let mut f = v4(0x20, 5);
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f
        };
        assert_eq!(outer_tos_ttl(&arp, true, true, 0, 64), (0, 64));
        // Cut short anywhere, or the wrong version: never a panic.
        let f = v4(0x20, 5);
        for n in 0..f.len() {
            let want = if n >= 14 + 20 { (0x20, 5) } else { (0, 64) };
            assert_eq!(outer_tos_ttl(&f[..n], true, true, 0, 64), want, "{n}");
        }
        let mut bad = v6(0x28, 3);
        bad[14] = 0x40;
        assert_eq!(outer_tos_ttl(&bad, true, true, 0, 64), (0, 64));
    }
}
