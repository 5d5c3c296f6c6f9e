use super::*;
use crate::wire::MacAddr;
use crate::wire::ethernet::udp_frame;

const HOST: PortId = PortId(1);
const WIRE: PortId = PortId(9);
const A: PortId = PortId(2);
const B: PortId = PortId(3);

fn demux(args: &str) -> Demux {
    Demux::new(DemuxConfig::parse(args).unwrap()).unwrap()
}

fn udp4(dst: [u8; 4], dport: u16) -> Vec<u8> {
    udp_frame(
        60,
        MacAddr::local(1),
        MacAddr::local(2),
        [10, 0, 0, 9],
        dst,
        5000,
        dport,
    )
}

fn tcp4(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = udp4(dst, dport);
    f[14 + 9] = 6;
    f
}

fn proto4(p: u8) -> Vec<u8> {
    let mut f = udp4([10, 0, 0, 1], 7);
    f[14 + 9] = p;
    f
}

fn l4_v6(proto: u8, dst: [u8; 16], dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 8];
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    f[14] = 0x60;
    f[14 + 6] = proto;
    f[14 + 24..14 + 40].copy_from_slice(&dst);
    f[54 + 2..54 + 4].copy_from_slice(&dport.to_be_bytes());
    f
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[14 + 24..14 + 28].copy_from_slice(&target);
    f
}

fn run_full(m: &Demux, in_port: PortId, frames: Vec<Vec<u8>>) -> (Vec<Verdict>, Verdicts) {
    let mut frames = frames;
    let mut refs = Vec::new();
    let n = frames.len();
    let mut b = Batch::from_buffers(&mut frames, &mut refs, in_port);
    let mut out = Verdicts::default();
    out.reset(n);
    m.process(&mut b, &mut out, 0);
    (out.as_slice().to_vec(), out)
}

fn run(m: &Demux, in_port: PortId, frames: Vec<Vec<u8>>) -> Vec<Verdict> {
    run_full(m, in_port, frames).0
}

fn t(s: &str) -> Tuple {
    s.parse().unwrap()
}

const V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[test]
fn bound_tuples_reach_their_port_and_the_rest_the_host() {
    let m = demux("wire=9");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    m.bind(t("tcp:10.0.0.1:80"), B).unwrap();
    m.bind(t("tcp:[fd00::1]:443"), A).unwrap();
    m.bind(t("udp:[fd00::1]:53"), B).unwrap();
    let v = run(
        &m,
        WIRE,
        vec![
            udp4([10, 0, 0, 1], 53),
            udp4([10, 0, 0, 1], 53),
            tcp4([10, 0, 0, 1], 80),
            udp4([10, 0, 0, 1], 80),
            udp4([10, 0, 0, 2], 53),
            l4_v6(TCP, V6, 443),
            l4_v6(UDP, V6, 53),
            l4_v6(TCP, V6, 53),
        ],
    );
    let (a, b, h) = (Verdict::Port(A), Verdict::Port(B), Verdict::Port(HOST));
    assert_eq!(v, [a, a, b, h, h, a, b, h]);
    // The host's own traffic goes out of the wire, or is claimed.
    assert_eq!(
        run(
            &m,
            HOST,
            vec![udp4([10, 0, 0, 1], 99), udp4([10, 0, 0, 1], 53)]
        ),
        [Verdict::Port(WIRE), a]
    );
    let c = m.counters();
    assert!(c.contains(&("demux_delivered", 6)), "{c:?}");
    assert!(c.contains(&("demux_unclaimed", 4)), "{c:?}");
    assert!(c.contains(&("demux_tuples", 4)), "{c:?}");
}

#[test]
fn without_a_wire_the_host_side_is_the_outside() {
    let m = demux("");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    assert_eq!(
        run(
            &m,
            HOST,
            vec![udp4([10, 0, 0, 1], 53), udp4([10, 0, 0, 1], 54)]
        ),
        [Verdict::Port(A), Verdict::Drop]
    );
    // An application's frames go to the host, whatever they are for.
    assert_eq!(
        run(&m, A, vec![udp4([10, 0, 0, 1], 53), vec![0; 10]]),
        [Verdict::Port(HOST), Verdict::Invalid]
    );
}

#[test]
fn applications_never_reach_each_other() {
    let m = demux("wire=9");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    assert_eq!(
        run(&m, B, vec![udp4([10, 0, 0, 1], 53)]),
        [Verdict::Port(WIRE)]
    );
    assert!(m.counters().contains(&("demux_from_apps", 1)));
}

/// `f` with source address `ip` and source port `port` (IPv4).
fn from4(mut f: Vec<u8>, ip: [u8; 4], port: u16) -> Vec<u8> {
    f[14 + 12..14 + 16].copy_from_slice(&ip);
    f[34..36].copy_from_slice(&port.to_be_bytes());
    f
}

#[test]
fn applications_cannot_send_as_another_or_the_host() {
    let m = demux("wire=9,reserve=tcp:22");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    m.bind(t("tcp:*:80"), A).unwrap();
    m.bind(t("udp:10.0.0.2:5353"), B).unwrap();
    let (w, d) = (Verdict::Port(WIRE), Verdict::Drop);
    let to = [10, 0, 0, 99];
    let mut v6 = l4_v6(UDP, V6, 7);
    v6[14 + 8..14 + 24].copy_from_slice(&V6); // from fd00::1
    v6[54..56].copy_from_slice(&443u16.to_be_bytes());
    let frames = || {
        vec![
            from4(udp4(to, 1), [10, 0, 0, 1], 53),   // A's own tuple
            from4(tcp4(to, 1), [10, 0, 0, 7], 80),   // A's wildcard
            from4(udp4(to, 1), [10, 0, 0, 2], 5353), // B's tuple
            from4(tcp4(to, 1), [10, 0, 0, 3], 22),   // the host's
            from4(udp4(to, 1), [10, 0, 0, 2], 5354), // nobody's
            from4(proto4(1), [10, 0, 0, 2], 5353),   // ICMP: no ports
            v6.clone(),                              // nobody's (IPv6)
        ]
    };
    assert_eq!(run(&m, A, frames()), [w, w, d, d, w, w, w]);
    // From B: A's tuple and A's wildcard are A's.
    assert_eq!(run(&m, B, frames()), [d, d, w, d, w, w, w]);
    assert!(m.counters().contains(&("demux_spoofed", 5)));
    // Strict: only the tuples a port holds (and what has no ports).
    let s = demux("wire=9,src=strict");
    s.bind(t("udp:10.0.0.1:53"), A).unwrap();
    s.bind(t("tcp:*:80"), A).unwrap();
    assert_eq!(run(&s, A, frames()), [w, w, d, d, d, w, d]);
    // The memo of the last source never carries a verdict to another.
    let same = from4(udp4(to, 1), [10, 0, 0, 1], 53);
    assert_eq!(
        run(
            &s,
            A,
            vec![same.clone(), from4(udp4(to, 1), [10, 0, 0, 1], 54), same]
        ),
        [w, d, w]
    );
}

#[test]
fn wildcards_and_exact_tuples() {
    let m = demux("wire=9");
    m.bind(t("udp:*:4789"), A).unwrap();
    m.bind(t("udp:10.0.0.1:4789"), A).unwrap();
    m.bind(t("tcp:[::]:80"), B).unwrap();
    let v = run(
        &m,
        WIRE,
        vec![
            udp4([10, 0, 0, 7], 4789),
            udp4([10, 0, 0, 1], 4789),
            l4_v6(TCP, V6, 80),
            tcp4([1, 2, 3, 4], 80),
            tcp4([1, 2, 3, 4], 81),
        ],
    );
    let (a, b) = (Verdict::Port(A), Verdict::Port(B));
    assert_eq!(v, [a, a, b, b, Verdict::Port(HOST)]);
}

#[test]
fn arp_icmp_fragments_and_others_go_to_the_host() {
    let m = demux("wire=9");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    let mut frag = udp4([10, 0, 0, 1], 53);
    frag[14 + 6] = 0x20; // MF
    let mut later = udp4([10, 0, 0, 1], 53);
    later[14 + 7] = 0x10; // offset
    let mut vlan = udp4([10, 0, 0, 1], 53);
    vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    let mut v6ext = l4_v6(UDP, V6, 53);
    v6ext[14 + 6] = 0; // hop-by-hop options first
    let v = run(
        &m,
        WIRE,
        vec![
            arp_request([10, 0, 0, 1]),
            proto4(1),
            l4_v6(58, V6, 0),
            frag,
            later,
            vlan,
            v6ext,
        ],
    );
    assert!(v.iter().all(|&x| x == Verdict::Port(HOST)), "{v:?}");
}

#[test]
fn arp_all_floods_requests_to_the_holders_of_the_address() {
    let m = demux("wire=9,arp=all");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    m.bind(t("tcp:10.0.0.1:80"), B).unwrap();
    m.bind(t("tcp:10.0.0.1:81"), B).unwrap();
    m.bind(t("tcp:10.0.0.2:81"), PortId(4)).unwrap();
    let mut reply = arp_request([10, 0, 0, 1]);
    reply[21] = 2;
    let (v, out) = run_full(
        &m,
        WIRE,
        vec![
            arp_request([10, 0, 0, 1]),
            arp_request([10, 0, 0, 3]),
            reply,
        ],
    );
    let Verdict::Ports(k) = v[0] else {
        panic!("{v:?}")
    };
    assert_eq!(out.set_members(k), &[HOST, A, B]);
    assert_eq!(v[1..], [Verdict::Port(HOST), Verdict::Port(HOST)]);
}

#[test]
fn malformed_frames_are_invalid_not_panics() {
    let m = demux("wire=9");
    let mut bad_ihl = udp4([10, 0, 0, 1], 53);
    bad_ihl[14] = 0x4f; // 60-byte header past the frame's end
    let mut v4_short = udp4([10, 0, 0, 1], 53);
    v4_short.truncate(14 + 19);
    let mut v6_short = l4_v6(UDP, V6, 53);
    v6_short.truncate(14 + 42);
    let mut wrong_version = udp4([10, 0, 0, 1], 53);
    wrong_version[14] = 0x65;
    let v = run(
        &m,
        WIRE,
        vec![vec![0; 13], v4_short, wrong_version, bad_ihl, v6_short],
    );
    let i = Verdict::Invalid;
    assert_eq!(v, [i, i, i, Verdict::Port(HOST), Verdict::Port(HOST)]);
    for len in 0..70 {
        let mut f = l4_v6(UDP, V6, 53);
        f.truncate(len.min(f.len()));
        let mut g = arp_request([10, 0, 0, 1]);
        g.truncate(len.min(g.len()));
        run(&m, WIRE, vec![f, g]);
    }
}

#[test]
fn refusals_and_detach() {
    let m = demux("wire=9,reserve=tcp:22/udp:53");
    assert_eq!(
        m.bind(t("tcp:10.0.0.1:22"), A),
        Err(BindError::Reserved(t("tcp:10.0.0.1:22")))
    );
    assert_eq!(
        m.bind(t("udp:*:53"), A),
        Err(BindError::Reserved(t("udp:*:53")))
    );
    assert_eq!(
        m.bind(t("udp:*:54"), HOST),
        Err(BindError::Uplink(1, "host"))
    );
    assert_eq!(
        m.bind(t("udp:*:54"), WIRE),
        Err(BindError::Uplink(9, "wire"))
    );
    m.bind(t("udp:*:54"), A).unwrap();
    assert_eq!(
        m.bind(t("udp:*:54"), B),
        Err(BindError::Held(t("udp:*:54"), 2))
    );
    assert!(m.counters().contains(&("demux_refused", 5)));
    m.port_detached(A);
    assert!(m.list().is_empty());
    m.bind(t("udp:*:54"), B).unwrap();
    assert_eq!(m.list(), [(t("udp:*:54"), B)]);
}

#[test]
fn spec_arguments() {
    let c = DemuxConfig::parse("host=3,wire=4,arp=all,reserve=tcp:22/udp:53").unwrap();
    assert_eq!(
        (c.host, c.wire, c.arp_all, c.reserved.len()),
        (PortId(3), Some(PortId(4)), true, 2)
    );
    assert_eq!(DemuxConfig::parse("").unwrap(), DemuxConfig::default());
    for bad in [
        "host=0",
        "host=x",
        "wire=1",
        "arp=some",
        "reserve=tcp",
        "src=none",
        "tuples=0",
        "tuples=70000",
        "nope=1",
        "host",
    ] {
        assert!(DemuxConfig::parse(bad).is_err(), "{bad}");
    }
    let m = demux("tuples=100");
    assert_eq!(m.list().len(), 100);
    assert_eq!(
        run(&m, HOST, vec![udp4([10, 0, 1, 1], 1024)]),
        [Verdict::Port(A)]
    );
    assert_eq!(
        crate::module::build("demux:tuples=3").unwrap().name(),
        "demux"
    );
}

#[test]
fn the_batch_memo_never_mixes_up_packets() {
    let m = demux("wire=9");
    m.bind(t("udp:10.0.0.1:53"), A).unwrap();
    let mut frag = udp4([10, 0, 0, 1], 53);
    frag[14 + 6] = 0x20;
    let mut opts = udp4([10, 0, 0, 1], 53);
    opts[14] = 0x46; // a 24-byte header: the port sits 4 bytes later
    let (a, h) = (Verdict::Port(A), Verdict::Port(HOST));
    let v = run(
        &m,
        WIRE,
        vec![
            udp4([10, 0, 0, 1], 53),
            frag,
            udp4([10, 0, 0, 1], 53),
            tcp4([10, 0, 0, 1], 53),
            opts,
            udp4([10, 0, 0, 1], 53),
            vec![1; 12],
        ],
    );
    assert_eq!(v, [a, h, a, h, h, a, Verdict::Invalid]);
    let c = m.counters();
    assert!(c.contains(&("demux_delivered", 3)), "{c:?}");
    assert!(c.contains(&("demux_unclaimed", 3)), "{c:?}");
}
