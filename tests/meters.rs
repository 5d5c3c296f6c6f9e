//! Meters end to end: a daemon in this process hosts a `flow` switch with
//! virtual ports, and the real `ovs-ofctl -O OpenFlow13` adds, lists,
//! counts and deletes meters and the flows that use them, while traffic
//! checks that a meter lets through about its rate and no more.

mod common;
mod ofsw;

use std::time::{Duration, Instant};

use common::{MIN_LEN, frame, mac};
use ofsw::{LONG, Sw, drain, have_ofctl, number, send};

#[test]
fn ovs_ofctl_manages_meters_and_their_flows() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("manage", 2);
    let f = sw.ofctl("meter-features", &[]);
    assert!(f.contains("max_meter:65536"), "{f}");
    assert!(f.contains("max_bands:8"), "{f}");
    assert!(f.contains("drop") && f.contains("dscp_remark"), "{f}");
    assert!(f.contains("pktps") && f.contains("burst"), "{f}");

    // A flow naming a meter that does not exist is refused, with Open
    // vSwitch's error.
    let e = sw.ofctl_err("add-flow", &["in_port=1,actions=meter:1,output:2"]);
    assert!(e.contains("OFPMMFC_INVALID_METER"), "{e}");

    sw.ofctl("add-meter", &["meter=1,pktps,band=type=drop,rate=100"]);
    sw.ofctl(
        "add-meter",
        &["meter=2,kbps,burst,stats,band=type=dscp_remark,rate=1000,burst_size=100,prec_level=1"],
    );
    let e = sw.ofctl_err("add-meter", &["meter=1,pktps,band=type=drop,rate=5"]);
    assert!(e.contains("OFPMMFC_METER_EXISTS"), "{e}");
    let e = sw.ofctl_err("mod-meter", &["meter=9,pktps,band=type=drop,rate=5"]);
    assert!(e.contains("OFPMMFC_UNKNOWN_METER"), "{e}");

    let m = sw.ofctl("dump-meters", &[]);
    assert!(m.contains("meter=1 pktps bands="), "{m}");
    assert!(m.contains("type=drop rate=100"), "{m}");
    assert!(m.contains("meter=2 kbps burst stats bands="), "{m}");
    assert!(
        m.contains("type=dscp_remark rate=1000 burst_size=100 prec_level=1"),
        "{m}"
    );

    sw.ofctl("add-flow", &["in_port=1,actions=meter:1,output:2"]);
    sw.ofctl("add-flow", &["priority=5,actions=meter:2,output:1"]);
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(flows.contains("actions=meter:1,output:2"), "{flows}");
    let s = sw.ofctl("meter-stats", &["meter=1"]);
    assert!(s.contains("meter:1 flow_count:1"), "{s}");
    assert!(!s.contains("meter:2"), "{s}");

    // Modifying keeps the flows; deleting a meter deletes its flows.
    sw.ofctl("mod-meter", &["meter=1,pktps,band=type=drop,rate=50"]);
    let m = sw.ofctl("dump-meter", &["meter=1"]);
    assert!(m.contains("type=drop rate=50"), "{m}");
    sw.ofctl("del-meter", &["meter=1"]);
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(!flows.contains("meter:1"), "{flows}");
    assert!(flows.contains("meter:2"), "{flows}");
    sw.ofctl("del-meters", &[]);
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(!flows.contains("meter:"), "{flows}");
    let m = sw.ofctl("dump-meters", &[]);
    assert!(!m.contains("meter="), "{m}");
}

#[test]
fn a_meter_passes_about_its_rate() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("traffic", 2);
    let mut p1 = sw.port(1);
    let mut p2 = sw.port(2);
    sw.ofctl("add-meter", &["meter=1,pktps,band=type=drop,rate=100"]);
    sw.ofctl("add-flow", &["in_port=1,actions=meter:1,output:2"]);
    const N: u32 = 3000;
    let start = Instant::now();
    for seq in 0..N {
        send(&mut p1, &frame(MIN_LEN, 1, mac(2), seq));
    }
    let got = drain(&mut p2, Duration::from_millis(300));
    let secs = start.elapsed().as_secs_f64();
    // The bucket starts with one second's worth (100) and earns 100 a
    // second; generous bounds, since the sending time varies.
    let most = 100.0 + 100.0 * secs + 10.0;
    assert!(got >= 90, "only {got} of {N} passed");
    assert!((got as f64) <= most, "{got} of {N} passed in {secs:.2}s");
    assert!(got < N as usize / 2, "{got} of {N} passed: not metered");
    // Every packet reached the meter; the band counted the rest.
    let deadline = Instant::now() + LONG;
    let s = loop {
        let s = sw.ofctl("meter-stats", &["meter=1"]);
        if number(&s, "packet_in_count:") == Some(u64::from(N)) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(number(&s, "packet_in_count:"), Some(u64::from(N)), "{s}");
    let dropped = number(&s, "0: packet_count:").expect("band stats");
    assert_eq!(dropped + got as u64, u64::from(N), "{s}");
}

#[test]
fn a_dscp_remark_band_raises_the_drop_precedence_of_the_excess() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("remark", 2);
    let mut p1 = sw.port(1);
    let mut p2 = sw.port(2);
    sw.ofctl(
        "add-meter",
        &["meter=3,pktps,burst,band=type=dscp_remark,rate=1,burst_size=2,prec_level=1"],
    );
    sw.ofctl("add-flow", &["in_port=1,ip,actions=meter:3,output:2"]);
    // AF11 (DSCP 10), with its IPv4 header checksum made right.
    let mut f = frame(MIN_LEN, 1, mac(2), 1);
    f[15] = 10 << 2;
    f[24..26].fill(0);
    let sum = !mswitch::wire::ethernet::ones_complement_sum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    const N: usize = 10;
    for _ in 0..N {
        send(&mut p1, &f);
    }
    let got = ofsw::recv_within(&mut p2, N, LONG);
    assert_eq!(got.len(), N, "a remark band drops nothing");
    let remarked: Vec<&Vec<u8>> = got.iter().filter(|g| g[15] >> 2 == 12).collect();
    // The burst of 2 passes as it was, and about all the rest is AF12.
    assert!(remarked.len() >= N - 3, "{} remarked", remarked.len());
    assert!(got.iter().all(|g| g[15] >> 2 == 10 || g[15] >> 2 == 12));
    for g in remarked {
        assert_eq!(
            mswitch::wire::ethernet::ones_complement_sum(&g[14..34]),
            0xffff,
            "the IPv4 checksum follows the DSCP"
        );
    }
    let s = sw.ofctl("meter-stats", &["meter=3"]);
    assert!(s.contains("0: packet_count:"), "{s}");
}
