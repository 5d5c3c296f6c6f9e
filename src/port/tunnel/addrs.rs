//! Outer addresses as tunnel metadata: what a received datagram's frame
//! carries ([`rx_meta`]: `tun_src`/`tun_dst` over IPv4,
//! `tun_ipv6_src`/`tun_ipv6_dst` over IPv6, as Open vSwitch fills
//! `flow_tnl`), where a flow-based port sends a frame ([`remote_of`],
//! Open vSwitch's `flow_tnl_dst` rule), and the IPv6 addresses of this host
//! that datagrams arrived at ([`note_local6`], [`is_local_addr6`]), which a
//! flow-based port never sends to (the IPv4 ones are
//! [`super::endpoint::is_local_addr`]'s).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::packet::TunMeta;

/// The metadata of a frame that came in a datagram with VNI `vni` from
/// `from` to `to` (the address the kernel says it was sent to; `None`:
/// it did not say, then the receiving port's local address of that
/// family, `local4`/`local6`, stands in). An IPv4 sender that reached an
/// IPv6 socket as a mapped address is IPv4.
pub(super) fn rx_meta(
    vni: u32,
    from: IpAddr,
    to: Option<IpAddr>,
    local4: Ipv4Addr,
    local6: Ipv6Addr,
) -> TunMeta {
    let id = u64::from(vni);
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    match (v4(from), from) {
        (Some(src), _) => TunMeta::v4(id, src, to.and_then(v4).unwrap_or(local4)),
        (None, IpAddr::V6(src)) => {
            let dst = match to {
                Some(IpAddr::V6(d)) => d,
                _ => local6,
            };
            TunMeta::v6(id, src, dst)
        }
        (None, IpAddr::V4(_)) => TunMeta::NONE,
    }
}

/// Where a `remote=flow` port sends a frame with metadata `m`, as Open
/// vSwitch's `flow_tnl_dst`: `tun_dst` if it is set, else `tun_ipv6_dst`
/// (`None`: neither is).
pub(super) fn remote_of(m: &TunMeta) -> Option<IpAddr> {
    if !m.dst.is_unspecified() {
        Some(IpAddr::V4(m.dst))
    } else if !m.ipv6_dst.is_unspecified() {
        Some(IpAddr::V6(m.ipv6_dst))
    } else {
        None
    }
}

/// IPv6 addresses of this host that tunnel datagrams arrived at (each
/// two words, high then low), as the IPv4 set: small, the oldest replaced
/// beyond its room. Writers take [`WRITER`] and bump [`SEQ`] to odd while
/// they write; a reader that saw it change (or odd) reads again, so no
/// reader ever sees half an address.
static LOCAL6: [[AtomicU64; 2]; 8] = [const { [const { AtomicU64::new(0) }; 2] }; 8];
static SEQ: AtomicU32 = AtomicU32::new(0);
static WRITER: Mutex<usize> = Mutex::new(0);

/// Records `a` as an IPv6 address of this host (a datagram arrived for it).
pub(super) fn note_local6(a: Ipv6Addr) {
    if a.is_unspecified() || is_local_addr6(a) {
        return;
    }
    let mut next = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    if is_local_addr6(a) {
        return;
    }
    let v = a.to_bits();
    let slot = &LOCAL6[*next % LOCAL6.len()];
    SEQ.fetch_add(1, Ordering::Relaxed);
    fence(Ordering::Release);
    slot[0].store((v >> 64) as u64, Ordering::Relaxed);
    slot[1].store(v as u64, Ordering::Relaxed);
    SEQ.fetch_add(1, Ordering::Release);
    *next += 1;
}

/// Whether tunnel datagrams have arrived at `a`.
pub fn is_local_addr6(a: Ipv6Addr) -> bool {
    let v = a.to_bits();
    let (hi, lo) = ((v >> 64) as u64, v as u64);
    let scan = || {
        LOCAL6
            .iter()
            .any(|w| w[0].load(Ordering::Relaxed) == hi && w[1].load(Ordering::Relaxed) == lo)
    };
    for _ in 0..64 {
        let s1 = SEQ.load(Ordering::Acquire);
        let hit = scan();
        fence(Ordering::Acquire);
        if s1.is_multiple_of(2) && SEQ.load(Ordering::Relaxed) == s1 {
            return hit;
        }
        std::hint::spin_loop();
    }
    // A writer was held up mid-write: wait for it.
    let _w = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    scan()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_metadata_has_the_datagrams_family() {
        let (l4, l6): (Ipv4Addr, Ipv6Addr) = ([10, 0, 0, 1].into(), "fd00::1".parse().unwrap());
        let s6: Ipv6Addr = "fd00::2".parse().unwrap();
        let to6: Ipv6Addr = "fd00::9".parse().unwrap();
        assert_eq!(
            rx_meta(5, s6.into(), Some(to6.into()), l4, l6),
            TunMeta::v6(5, s6, to6)
        );
        // The kernel did not say: the port's own address.
        assert_eq!(rx_meta(5, s6.into(), None, l4, l6), TunMeta::v6(5, s6, l6));
        let s4 = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(
            rx_meta(
                7,
                s4.into(),
                Some(Ipv4Addr::new(10, 0, 0, 3).into()),
                l4,
                l6
            ),
            TunMeta::v4(7, s4, [10, 0, 0, 3].into())
        );
        // A mapped sender is IPv4.
        let mapped = IpAddr::V6(s4.to_ipv6_mapped());
        assert_eq!(rx_meta(7, mapped, None, l4, l6), TunMeta::v4(7, s4, l4));
    }

    #[test]
    fn sends_go_to_tun_dst_first_then_tun_ipv6_dst() {
        let d6: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut m = TunMeta::v6(1, Ipv6Addr::UNSPECIFIED, d6);
        assert_eq!(remote_of(&m), Some(IpAddr::V6(d6)));
        m.dst = [10, 0, 0, 2].into();
        assert_eq!(remote_of(&m), Some(IpAddr::V4(m.dst)));
        assert_eq!(remote_of(&TunMeta::NONE), None);
    }

    #[test]
    fn local_ipv6_addresses_are_remembered() {
        let a: Ipv6Addr = "fd00:77::1".parse().unwrap();
        assert!(!is_local_addr6(a));
        note_local6(a);
        note_local6(a);
        assert!(is_local_addr6(a));
        assert!(!is_local_addr6("fd00:77::2".parse().unwrap()));
        note_local6(Ipv6Addr::UNSPECIFIED);
    }
}
