use std::net::{IpAddr, Ipv4Addr};

use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::time::Instant;

use super::*;
use crate::testutil::*;

fn dev(mac: Option<MacAddr>) -> VportDevice<Fake> {
    VportDevice::new(Fake::new(), mac)
}

fn received(d: &mut VportDevice<Fake>) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while d.pull(Instant::from_millis(1)) > 0 {}
    while let Some((rx, _)) = d.receive(Instant::from_millis(1)) {
        v.push(rx.consume(<[u8]>::to_vec));
    }
    v
}

#[test]
fn takes_ipv4_for_its_mac_and_learns_the_sender() {
    let mut d = dev(Some(HOST_MAC));
    let p = udp((PEER_IP, 5000), (HOST_IP, 7777), b"hi");
    // Padded to Ethernet's minimum: the padding is not the stack's.
    let mut padded = eth(HOST_MAC, PEER_MAC, 0x0800, &p);
    padded.resize(60, 0xee);
    let other = Ipv4Addr::new(192, 168, 1, 9);
    let router = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    let link = d.link_mut();
    link.inbox.push_back(padded);
    link.inbox.push_back(eth(
        MacAddr::BROADCAST,
        router,
        0x0800,
        &udp((other, 1), (HOST_IP, 7777), b""),
    ));
    let got = received(&mut d);
    assert_eq!(got, [p, udp((other, 1), (HOST_IP, 7777), b"")]);
    assert_eq!(d.neighbour(IpAddr::V4(PEER_IP)), Some(PEER_MAC));
    assert_eq!(d.neighbour(IpAddr::V4(other)), Some(router));
    assert_eq!(d.counters().rx, 2);
    assert_eq!(d.counters().rx_dropped, 0);
}

#[test]
fn drops_what_is_not_its_ipv4() {
    let mut d = dev(Some(HOST_MAC));
    let p = udp((PEER_IP, 5000), (HOST_IP, 7777), b"hi");
    let mut bad_len = p.clone();
    bad_len[2..4].copy_from_slice(&(p.len() as u16 + 1).to_be_bytes());
    let mut bad_ihl = p.clone();
    bad_ihl[0] = 0x44;
    let mut v6 = p.clone();
    v6[0] = 0x65;
    let mut bcast_src = p.clone();
    bcast_src[12..16].copy_from_slice(&[255; 4]);
    let frames = [
        eth(HOST_MAC, PEER_MAC, 0x0806, &[0; 28]),    // ARP
        eth(PEER_MAC, MacAddr::local(5), 0x0800, &p), // another MAC
        eth(HOST_MAC, MacAddr([0x01, 0, 0x5e, 0, 0, 1]), 0x0800, &p), // multicast source
        eth(HOST_MAC, PEER_MAC, 0x0800, &p[..19]),    // short
        eth(HOST_MAC, PEER_MAC, 0x0800, &bad_len),
        eth(HOST_MAC, PEER_MAC, 0x0800, &bad_ihl),
        eth(HOST_MAC, PEER_MAC, 0x0800, &v6),
        eth(HOST_MAC, PEER_MAC, 0x0800, &bcast_src),
        vec![0; 10],
    ];
    d.link_mut().inbox.extend(frames.iter().cloned());
    assert!(received(&mut d).is_empty());
    assert_eq!(d.counters().rx_dropped, frames.len() as u64);
    assert_eq!(d.counters().rx, 0);
    assert_eq!(d.neighbour(IpAddr::V4(PEER_IP)), None);
}

#[test]
fn adopts_the_mac_of_the_first_good_unicast_frame() {
    let mut d = dev(None);
    let p = udp((PEER_IP, 5000), (HOST_IP, 7777), b"hi");
    let mut bad = p.clone();
    bad[0] = 0x46 + 0x10; // version 5
    let link = d.link_mut();
    link.inbox
        .push_back(eth(MacAddr::BROADCAST, PEER_MAC, 0x0800, &p));
    link.inbox
        .push_back(eth(MacAddr::local(7), PEER_MAC, 0x0800, &bad));
    link.inbox.push_back(eth(HOST_MAC, PEER_MAC, 0x0800, &p));
    link.inbox
        .push_back(eth(MacAddr::local(7), PEER_MAC, 0x0800, &p));
    // Broadcast does not name us, the malformed frame is not taken; then
    // the host's MAC is ours and another MAC is not.
    assert_eq!(received(&mut d).len(), 1);
    assert_eq!(d.mac(), Some(HOST_MAC));
    assert_eq!(d.counters().rx_dropped, 3);
}

#[test]
fn sends_from_its_mac_to_the_learned_one() {
    let mut d = dev(Some(HOST_MAC));
    d.link_mut().inbox.push_back(eth(
        HOST_MAC,
        PEER_MAC,
        0x0800,
        &udp((PEER_IP, 5000), (HOST_IP, 7777), b"q"),
    ));
    assert_eq!(received(&mut d).len(), 1);
    let answer = udp((HOST_IP, 7777), (PEER_IP, 5000), b"a");
    let stranger = udp((HOST_IP, 7777), (Ipv4Addr::new(10, 0, 0, 3), 5000), b"a");
    let bcast = udp((HOST_IP, 7777), (Ipv4Addr::BROADCAST, 5000), b"a");
    for p in [&answer, &stranger, &bcast] {
        let tx = d.transmit(Instant::from_millis(2)).expect("room");
        tx.consume(p.len(), |b| b.copy_from_slice(p));
    }
    let sent = &d.link().sent;
    assert_eq!(
        *sent,
        [
            eth(PEER_MAC, HOST_MAC, 0x0800, &answer),
            eth(MacAddr::BROADCAST, HOST_MAC, 0x0800, &bcast)
        ]
    );
    assert_eq!(d.counters().tx, 2);
    assert_eq!(d.counters().tx_no_neighbour, 1);
    // No room: no token to transmit with; the token that comes with a
    // received packet (for a reply) counts the frame it cannot queue.
    d.link_mut().room = 0;
    assert!(d.transmit(Instant::from_millis(3)).is_none());
    d.link_mut().inbox.push_back(eth(
        HOST_MAC,
        PEER_MAC,
        0x0800,
        &udp((PEER_IP, 5000), (HOST_IP, 7777), b"q"),
    ));
    d.pull(Instant::from_millis(4));
    let (_, tx) = d.receive(Instant::from_millis(4)).expect("a packet");
    tx.consume(answer.len(), |b| b.copy_from_slice(&answer));
    assert_eq!(d.counters().tx_full, 1);
    assert_eq!(d.counters().tx, 2);
}

#[test]
fn without_a_mac_nothing_is_sent() {
    let mut d = dev(None);
    let p = udp((HOST_IP, 7777), (Ipv4Addr::BROADCAST, 5000), b"a");
    d.transmit(Instant::from_millis(1))
        .expect("room")
        .consume(p.len(), |b| b.copy_from_slice(&p));
    assert!(d.link().sent.is_empty());
    assert_eq!(d.counters().tx_no_neighbour, 1);
}

#[test]
fn remembers_at_most_max_neighbours_forgetting_the_longest_unheard() {
    let mut n = HashMap::new();
    let ip = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
    for i in 0..MAX_NEIGHBOURS + 10 {
        learn(&mut n, ip(i), MacAddr::local(i as u32), i as i64);
    }
    assert_eq!(n.len(), MAX_NEIGHBOURS);
    assert!(!n.contains_key(&ip(0)) && !n.contains_key(&ip(9)));
    assert!(n.contains_key(&ip(10)) && n.contains_key(&ip(MAX_NEIGHBOURS + 9)));
    // Heard again: kept (updated), someone else goes.
    learn(&mut n, ip(10), MacAddr::local(1), 5000);
    learn(&mut n, ip(20_000), MacAddr::local(2), 5001);
    assert_eq!(n[&ip(10)], (MacAddr::local(1), 5000));
    assert!(!n.contains_key(&ip(11)));
    assert_eq!(n.len(), MAX_NEIGHBOURS);
}

#[test]
fn ipv6_too_in_and_out() {
    let mut d = dev(Some(HOST_MAC));
    let p = udp6((PEER_IP6, 5000), (HOST_IP6, 7777), b"six");
    let mut short = p.clone();
    short[4..6].copy_from_slice(&100u16.to_be_bytes());
    let mut as_v4 = p.clone();
    as_v4[0] = 0x45;
    let link = d.link_mut();
    link.inbox.push_back(eth(HOST_MAC, PEER_MAC, 0x86dd, &p));
    link.inbox
        .push_back(eth(HOST_MAC, PEER_MAC, 0x86dd, &short));
    link.inbox
        .push_back(eth(HOST_MAC, PEER_MAC, 0x86dd, &as_v4));
    link.inbox
        .push_back(eth(HOST_MAC, PEER_MAC, 0x86dd, &p[..39]));
    assert_eq!(received(&mut d), [p]);
    assert_eq!(d.counters().rx_dropped, 3);
    assert_eq!(d.neighbour(IpAddr::V6(PEER_IP6)), Some(PEER_MAC));
    let answer = udp6((HOST_IP6, 7777), (PEER_IP6, 5000), b"six");
    let group = "ff02::1:ff00:1".parse().unwrap();
    let mcast = udp6((HOST_IP6, 7777), (group, 5000), b"");
    for p in [&answer, &mcast] {
        let tx = d.transmit(Instant::from_millis(2)).expect("room");
        tx.consume(p.len(), |b| b.copy_from_slice(p));
    }
    assert_eq!(
        d.link().sent,
        [
            eth(PEER_MAC, HOST_MAC, 0x86dd, &answer),
            eth(
                MacAddr([0x33, 0x33, 0xff, 0, 0, 1]),
                HOST_MAC,
                0x86dd,
                &mcast
            )
        ]
    );
}
