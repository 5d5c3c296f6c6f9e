//! The production tunnel path end to end through the kernel's UDP socket on
//! loopback: port `a` encapsulates (VNI 2) and sends through the shared
//! socket, which hears its own datagrams and hands them to port `b` (the
//! port for VNI 2). Every frame must come back whole and in order, whether
//! `a` got it as the switch hands frames over ([`Port::transmit`]) or on
//! its outgoing ring (as `pkt-gen` does).
//!
//! Also the harness for counting the path's instructions per packet with
//! callgrind (BENCHMARKS.md, "Tunnel encapsulation cost in mswitch bench"):
//! `MSWITCH_TUNNEL_FRAMES=200000 valgrind --tool=callgrind <this test>`,
//! then the inclusive counts of `transmit`, `outgoing_published` and
//! `Endpoint::poll`, each divided by the frames that went through it (half
//! the frames each for the first two).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use mswitch::packet::MemConfig;
use mswitch::port::Port;
use mswitch::port::driver::PortDriver;
use mswitch::port::tunnel::{Proto, TunnelConfig, TunnelPort};

fn port(udp: u16, in_key: u32, out_key: u32, name: &str) -> Arc<TunnelPort> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut c = TunnelConfig::new(Proto::Vxlan, lo);
    c.local = Some(lo);
    c.dst_port = udp;
    (c.in_key, c.out_key) = (in_key, out_key);
    TunnelPort::open(name, &c, MemConfig::new(1024, 2048)).unwrap()
}

/// Frame `i`: 60 bytes, its number in the payload.
fn frame(i: u32, buf: &mut [u8]) -> usize {
    buf[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    buf[12..14].copy_from_slice(&[0x88, 0xb5]);
    buf[14..18].copy_from_slice(&i.to_be_bytes());
    buf[18..60].fill(0x5a);
    60
}

#[test]
fn frames_cross_a_loopback_tunnel_whole_and_in_order() {
    let frames: u32 = std::env::var("MSWITCH_TUNNEL_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = port(udp, 1, 2, "cost-a");
    let b = port(udp, 2, 1, "cost-b");
    let mut da = PortDriver::new(a.clone() as Arc<dyn Port>);
    let mut db = PortDriver::new(b.clone() as Arc<dyn Port>);
    let (mut sent, mut got) = (0u32, 0u32);
    let mut want = [0u8; 60];
    let mut bufs = vec![[0u8; 60]; 64];
    // Batches of 64 out, then read them back; each round waits at most 5 s.
    for round in 0.. {
        if got == frames {
            break;
        }
        let n = 64.min(frames - sent);
        let base = sent;
        if round % 2 == 0 {
            sent += da.send_with(n as usize, |i, buf| frame(base + i as u32, buf)) as u32;
        } else {
            for (i, b) in bufs.iter_mut().enumerate().take(n as usize) {
                frame(base + i as u32, b);
            }
            let batch: Vec<&[u8]> = bufs[..n as usize].iter().map(|b| &b[..]).collect();
            sent += a.transmit(&batch, 0) as u32;
        }
        for _ in 0..500 {
            db.recv(64, |f| {
                frame(got, &mut want);
                assert_eq!(f, &want[..], "frame {got}");
                got += 1;
            });
            if got == sent {
                break;
            }
            db.wait(Some(Duration::from_millis(10)));
        }
        assert_eq!(got, sent, "frames lost on loopback");
    }
    let c = |p: &TunnelPort, name: &str| {
        p.counters()
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |c| c.1)
    };
    for name in ["rx_malformed", "rx_bad_vni", "rx_ring_full", "tx_busy"] {
        assert_eq!(c(&a, name) + c(&b, name), 0, "{name}");
    }
}
