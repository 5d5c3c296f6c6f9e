use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr};

use super::*;
use crate::testutil::*;

const UDP_PORT: u16 = 7777;
const TCP_PORT: u16 = 7778;

fn settings() -> Settings {
    Settings {
        v4: Some((HOST_IP, 24)),
        v6: Some((HOST_IP6, 64)),
        mac: Some(HOST_MAC),
        udp: Some(UDP_PORT),
        tcp: Some(TCP_PORT),
        tcp_conns: 2,
    }
}

fn app() -> App<Fake> {
    App::new(Fake::new(), &settings(), 7, Instant::from_millis(0)).expect("app")
}

/// Hands `ip` to the app in a frame from the peer, polls at `ms`, and
/// returns the frames it sent.
fn exchange(a: &mut App<Fake>, ip: &[u8], ms: i64) -> Vec<Vec<u8>> {
    a.device_mut()
        .link_mut()
        .inbox
        .push_back(eth(HOST_MAC, PEER_MAC, 0x0800, ip));
    assert!(a.poll(Instant::from_millis(ms)));
    std::mem::take(&mut a.device_mut().link_mut().sent)
}

/// A TCP segment's facts.
#[derive(Debug)]
struct Seg {
    control: TcpControl,
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
    payload: Vec<u8>,
}

/// The TCP segments of `frames`, each checked: MACs, addresses, ports,
/// checksums.
fn segments(frames: &[Vec<u8>], peer_port: u16) -> Vec<Seg> {
    frames
        .iter()
        .map(|f| {
            assert_eq!(f[0..6], PEER_MAC.0);
            assert_eq!(f[6..12], HOST_MAC.0);
            let (ip, l4) = parse_ipv4(f);
            assert_eq!((ip.src_addr, ip.dst_addr), (HOST_IP, PEER_IP));
            let p = TcpPacket::new_checked(&l4[..]).expect("TCP");
            let t = TcpRepr::parse(
                &p,
                &IpAddress::Ipv4(HOST_IP),
                &IpAddress::Ipv4(PEER_IP),
                &ChecksumCapabilities::default(),
            )
            .expect("a valid TCP segment");
            assert_eq!((t.src_port, t.dst_port), (TCP_PORT, peer_port));
            Seg {
                control: t.control,
                seq: t.seq_number,
                ack: t.ack_number,
                payload: t.payload.to_vec(),
            }
        })
        .collect()
}

fn seg<'a>(
    control: TcpControl,
    seq: i32,
    ack: Option<TcpSeqNumber>,
    payload: &'a [u8],
) -> TcpRepr<'a> {
    TcpRepr {
        src_port: 40000,
        dst_port: TCP_PORT,
        control,
        seq_number: TcpSeqNumber(seq),
        ack_number: ack,
        window_len: 65535,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

#[test]
fn udp_datagrams_come_back_to_their_sender() {
    let mut a = app();
    let sent = exchange(
        &mut a,
        &udp((PEER_IP, 5000), (HOST_IP, UDP_PORT), b"hello"),
        1,
    );
    assert_eq!(sent.len(), 1);
    let f = &sent[0];
    assert_eq!((&f[0..6], &f[6..12]), (&PEER_MAC.0[..], &HOST_MAC.0[..]));
    let (ip, l4) = parse_ipv4(f);
    assert_eq!((ip.src_addr, ip.dst_addr), (HOST_IP, PEER_IP));
    let p = UdpPacket::new_checked(&l4[..]).expect("UDP");
    let u = UdpRepr::parse(
        &p,
        &IpAddress::Ipv4(HOST_IP),
        &IpAddress::Ipv4(PEER_IP),
        &ChecksumCapabilities::default(),
    )
    .expect("a valid UDP datagram");
    assert_eq!((u.src_port, u.dst_port), (UDP_PORT, 5000));
    assert_eq!(p.payload(), b"hello");
    assert_eq!(a.echoed.udp_datagrams, 1);
    // A datagram with a bad checksum is not answered.
    let mut bad = udp((PEER_IP, 5000), (HOST_IP, UDP_PORT), b"hello");
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(exchange(&mut a, &bad, 2).is_empty());
    assert_eq!(a.echoed.udp_datagrams, 1);
}

#[test]
fn udp_over_ipv6_comes_back_too() {
    let mut a = app();
    let p = udp6((PEER_IP6, 5000), (HOST_IP6, UDP_PORT), b"over six");
    a.device_mut()
        .link_mut()
        .inbox
        .push_back(eth(HOST_MAC, PEER_MAC, 0x86dd, &p));
    assert!(a.poll(Instant::from_millis(1)));
    let sent = &a.device().link().sent;
    assert_eq!(sent.len(), 1);
    let f = &sent[0];
    assert_eq!(
        (&f[0..6], &f[6..14]),
        (&PEER_MAC.0[..], &[2, 0, 0, 0, 0, 2, 0x86, 0xdd][..])
    );
    let ip = smoltcp::wire::Ipv6Packet::new_checked(&f[14..]).expect("IPv6");
    assert_eq!((ip.src_addr(), ip.dst_addr()), (HOST_IP6, PEER_IP6));
    let u = UdpPacket::new_checked(ip.payload()).expect("UDP");
    assert!(u.verify_checksum(&IpAddress::Ipv6(HOST_IP6), &IpAddress::Ipv6(PEER_IP6)));
    assert_eq!(
        (u.src_port(), u.dst_port(), u.payload()),
        (UDP_PORT, 5000, &b"over six"[..])
    );
}

#[test]
fn a_burst_larger_than_the_socket_buffers_is_answered_whole() {
    let mut a = app();
    let n = 1000;
    for i in 0..n {
        let p = udp(
            (PEER_IP, 5000),
            (HOST_IP, UDP_PORT),
            format!("{i}").as_bytes(),
        );
        a.device_mut()
            .link_mut()
            .inbox
            .push_back(eth(HOST_MAC, PEER_MAC, 0x0800, &p));
    }
    // One call: the stack takes a batch at a time and the echo empties
    // its sockets in between, so none of the 64-slot buffers overflows.
    assert!(a.poll(Instant::from_millis(1)));
    let sent = &a.device().link().sent;
    assert_eq!(sent.len(), n);
    let last = parse_ipv4(&sent[n - 1]).1;
    assert_eq!(&last[8..], format!("{}", n - 1).as_bytes());
    assert_eq!(a.echoed.udp_datagrams, n as u64);
}

#[test]
fn a_tcp_connection_is_echoed_and_closed_after_the_peer() {
    let mut a = app();
    // Handshake.
    let out = segments(
        &exchange(
            &mut a,
            &tcp(PEER_IP, HOST_IP, &seg(TcpControl::Syn, 1000, None, b"")),
            1,
        ),
        40000,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].control, TcpControl::Syn);
    assert_eq!(out[0].ack, Some(TcpSeqNumber(1001)));
    let isn = out[0].seq + 1;
    // Data: echoed (with the ACK for it).
    let msg = b"hello, user-space stack";
    let out = segments(
        &exchange(
            &mut a,
            &tcp(
                PEER_IP,
                HOST_IP,
                &seg(TcpControl::Psh, 1001, Some(isn), msg),
            ),
            2,
        ),
        40000,
    );
    let echoed: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(echoed, msg, "{out:?}");
    assert_eq!(
        out.last().unwrap().ack,
        Some(TcpSeqNumber(1001 + msg.len() as i32))
    );
    assert_eq!(a.echoed.tcp_bytes, msg.len() as u64);
    // The peer closes: the app acknowledges, then closes too.
    let fin_seq = 1001 + msg.len() as i32;
    let mut out = segments(
        &exchange(
            &mut a,
            &tcp(
                PEER_IP,
                HOST_IP,
                &seg(TcpControl::Fin, fin_seq, Some(isn + msg.len()), b""),
            ),
            3,
        ),
        40000,
    );
    // The FIN may come with the ACK or after it, on the next poll.
    a.poll(Instant::from_millis(4));
    out.extend(segments(
        &std::mem::take(&mut a.device_mut().link_mut().sent),
        40000,
    ));
    assert!(
        out.iter()
            .any(|s| s.control == TcpControl::Fin && s.ack == Some(TcpSeqNumber(fin_seq + 1))),
        "{out:?}"
    );
    assert_eq!(a.echoed.tcp_connections, 1);
}

#[test]
fn refuses_settings_it_cannot_serve() {
    let bad = [
        Settings {
            v4: Some((std::net::Ipv4Addr::UNSPECIFIED, 24)),
            ..settings()
        },
        Settings {
            v4: Some((HOST_IP, 33)),
            ..settings()
        },
        Settings {
            v6: Some(("ff02::1".parse().unwrap(), 64)),
            ..settings()
        },
        Settings {
            v4: None,
            v6: None,
            ..settings()
        },
        Settings {
            udp: None,
            tcp: None,
            ..settings()
        },
        Settings {
            udp: Some(0),
            ..settings()
        },
    ];
    for s in bad {
        assert!(
            App::new(Fake::new(), &s, 1, Instant::from_millis(0)).is_err(),
            "{s:?}"
        );
    }
}

#[test]
fn garbage_from_the_wire_is_counted_not_fatal() {
    let mut a = app();
    // xorshift: the same frames every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let n = 5000;
    for i in 0..n {
        let len = (next() % 1600) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Most look like IP for us, so the stack's parsers get them.
        if len >= 15 && i % 8 != 0 {
            f[0..6].copy_from_slice(&HOST_MAC.0);
            f[6..12].copy_from_slice(&PEER_MAC.0);
            let v6 = i % 2 == 0;
            f[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[8, 0] });
            f[14] = if v6 { 0x60 } else { 0x45 };
            if !v6 && len >= 34 {
                f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
                f[30..34].copy_from_slice(&HOST_IP.octets());
            }
        }
        a.device_mut().link_mut().inbox.push_back(f);
    }
    for ms in 1..=100 {
        a.poll(Instant::from_millis(ms));
    }
    let c = a.counters();
    assert_eq!(c.rx + c.rx_dropped, n);
    assert!(c.rx > 0, "{c:?}");
    // Still serving.
    let sent = exchange(
        &mut a,
        &udp((PEER_IP, 5000), (HOST_IP, UDP_PORT), b"ok?"),
        200,
    );
    assert_eq!(parse_ipv4(sent.last().expect("an answer")).1[8..], *b"ok?");
}

#[test]
fn a_connection_beyond_the_sockets_is_reset() {
    let mut a = app(); // two TCP sockets
    for (i, port) in [40001u16, 40002, 40003].into_iter().enumerate() {
        let syn = TcpRepr {
            src_port: port,
            ..seg(TcpControl::Syn, 1000, None, b"")
        };
        let out = segments(
            &exchange(&mut a, &tcp(PEER_IP, HOST_IP, &syn), 1 + i as i64),
            port,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let want = if i < 2 {
            TcpControl::Syn
        } else {
            TcpControl::Rst
        };
        assert_eq!(out[0].control, want, "connection {i}");
    }
}
