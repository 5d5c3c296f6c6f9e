//! Which interface the kernel routes a tunnel's datagrams out of, for the
//! `tunnel_egress_iface` status Open vSwitch reports: the longest-prefix
//! match (then the lowest metric) among the up routes of the main table
//! (`/proc/net/route`, `/proc/net/ipv6_route`, of the caller's network
//! namespace). Policy routing is not followed.

use std::net::IpAddr;

const RTF_UP: u32 = 0x1;
const RTF_REJECT: u32 = 0x200;

/// The interface a datagram to `remote` leaves by, if a route says.
pub fn egress_iface(remote: IpAddr) -> Option<String> {
    match remote {
        IpAddr::V4(_) => lookup(remote, &std::fs::read_to_string("/proc/net/route").ok()?),
        IpAddr::V6(_) => lookup(
            remote,
            &std::fs::read_to_string("/proc/net/ipv6_route").ok()?,
        ),
    }
}

/// One route: prefix bits matched against the address, prefix length,
/// metric, interface.
struct Route<'a> {
    prefix: u128,
    len: u32,
    metric: u32,
    iface: &'a str,
}

/// The best route for `ip` in a routing table's text (IPv4 tables for
/// IPv4 addresses, IPv6 ones for IPv6).
fn lookup(ip: IpAddr, table: &str) -> Option<String> {
    let (addr, routes): (u128, Vec<Route>) = match ip {
        IpAddr::V4(a) => (
            u128::from(u32::from_be_bytes(a.octets())),
            table.lines().skip(1).filter_map(v4_route).collect(),
        ),
        IpAddr::V6(a) => (
            u128::from_be_bytes(a.octets()),
            table.lines().filter_map(v6_route).collect(),
        ),
    };
    let width = if ip.is_ipv4() { 32 } else { 128 };
    routes
        .into_iter()
        .filter(|r| {
            let shift = width - r.len;
            r.len == 0 || (addr >> shift) == (r.prefix >> shift)
        })
        .min_by_key(|r| (std::cmp::Reverse(r.len), r.metric))
        .map(|r| r.iface.to_owned())
}

fn hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

/// The fields of a route table line whose flags (field `flags`) say it
/// is up and not a reject route.
fn usable(line: &str, flags: usize) -> Option<Vec<&str>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let fl = hex(f.get(flags)?)?;
    (fl & RTF_UP != 0 && fl & RTF_REJECT == 0).then_some(f)
}

/// A line of `/proc/net/route`: Iface Destination Gateway Flags RefCnt Use
/// Metric Mask ... (addresses as the kernel's in-memory u32, in hex).
fn v4_route(line: &str) -> Option<Route<'_>> {
    let f = usable(line, 3)?;
    let be = |s: &str| hex(s).map(|v| u32::from_be_bytes(v.to_ne_bytes()));
    let mask = be(f.get(7)?)?;
    Some(Route {
        prefix: u128::from(be(f.get(1)?)? & mask),
        len: mask.leading_ones(),
        metric: f.get(6)?.parse().ok()?,
        iface: f.first()?,
    })
}

/// A line of `/proc/net/ipv6_route`: dest plen src plen nexthop metric
/// refcnt use flags iface (hex).
fn v6_route(line: &str) -> Option<Route<'_>> {
    let f = usable(line, 8)?;
    let len = hex(f.get(1)?)?.min(128);
    let prefix = u128::from_str_radix(f.first()?, 16).ok()?;
    let prefix = if len == 0 {
        0
    } else {
        prefix >> (128 - len) << (128 - len)
    };
    Some(Route {
        prefix,
        len,
        metric: hex(f.get(5)?)?,
        iface: f.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_then_the_lowest_metric_wins() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth1\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            eth2\t0001000A\t00000000\t0001\t0\t0\t5\t00FFFFFF\t0\t0\t0\n\
            eth3\t0001000A\t00000000\t0001\t0\t0\t1\t00FFFFFF\t0\t0\t0\n\
            down0\t0201000A\t00000000\t0000\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
        let at = |ip: &str| lookup(ip.parse().unwrap(), v4);
        assert_eq!(at("10.0.1.2").as_deref(), Some("eth3"));
        assert_eq!(at("10.0.7.1").as_deref(), Some("eth1"));
        assert_eq!(at("192.0.2.1").as_deref(), Some("eth0"));
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   veth0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert_eq!(
            lookup("fd00::2".parse().unwrap(), v6).as_deref(),
            Some("veth0")
        );
        assert_eq!(lookup("2001:db8::1".parse().unwrap(), v6), None);
        assert_eq!(lookup("10.0.0.1".parse().unwrap(), "garbage\n1 2 3"), None);
    }
}
