//! Integration tests of the switching core through its public API: mem ports,
//! the `dummy` and `learn` modules, real worker threads.
//!
//! Every test takes the `serial` lock (they spin worker threads, and one
//! measures process CPU time), and every loop is bounded in count and time.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mswitch::module::dummy::{Dummy, Target};
use mswitch::module::learn::{Learn, LearnConfig};
use mswitch::module::{self, Module, Nanos, Verdict, Verdicts};
use mswitch::packet::{Batch, MemConfig, Slot};
use mswitch::port::{MemClient, MemPort, Port, PortId};
use mswitch::switch::{Switch, SwitchConfig, SwitchError};
use mswitch::wire::MacAddr;

const LONG: Duration = Duration::from_secs(10);

fn switch(cfg: SwitchConfig, m: Arc<dyn Module>) -> Switch {
    Switch::new(cfg, m).expect("switch starts")
}

fn cfg(workers: usize) -> SwitchConfig {
    SwitchConfig {
        workers,
        ..SwitchConfig::default()
    }
}

/// Senders' and receivers' view of tagged streams: what each port must
/// receive from each source, in order, and how much is still in flight.
#[derive(Default)]
struct Streams {
    /// (destination, source) -> (sequence number, destination MAC) still to arrive, in order.
    expected: HashMap<(u16, u16), VecDeque<(u32, MacAddr)>>,
    /// Next sequence number per source.
    next: BTreeMap<u16, u32>,
    /// Copies sent but not yet received.
    inflight: usize,
    /// Copies received per destination.
    received: BTreeMap<u16, u64>,
    /// Frames received that no stream sent (from ports outside the test's streams).
    foreign: u64,
    allow_foreign: bool,
}

impl Streams {
    fn new(sources: &[u16]) -> Streams {
        Streams {
            next: sources.iter().map(|&s| (s, 0)).collect(),
            ..Streams::default()
        }
    }

    /// Sends up to `max` frames from `src`; `route(seq)` gives each frame's
    /// destination MAC and the ports that must get exactly one copy.
    fn send(
        &mut self,
        src: u16,
        c: &mut MemClient,
        max: usize,
        route: impl Fn(u32) -> (MacAddr, Vec<u16>),
    ) -> usize {
        let mut n = 0;
        while n < max {
            let seq = self.next[&src];
            let (dmac, dsts) = route(seq);
            if !c.send_one(&frame(len_for(src, seq), src, dmac, seq)) {
                break;
            }
            for d in dsts {
                self.expected
                    .entry((d, src))
                    .or_default()
                    .push_back((seq, dmac));
                self.inflight += 1;
            }
            *self.next.get_mut(&src).unwrap() += 1;
            n += 1;
        }
        n
    }

    /// Receives everything waiting on port `p` and checks each frame: from a
    /// known source, not back to its input, the next one expected from that
    /// source, and byte for byte what was sent.
    fn recv(&mut self, p: u16, c: &mut MemClient) -> usize {
        let frames = c.recv_all();
        for f in &frames {
            let (src, seq) = tag(f);
            if !self.next.contains_key(&src) {
                assert!(
                    self.allow_foreign,
                    "port {p} got a frame tagged {src}#{seq} that no stream sent"
                );
                self.foreign += 1;
                continue;
            }
            assert_ne!(src, p, "frame {src}#{seq} came back to its input port");
            let q = self.expected.entry((p, src)).or_default();
            let Some((want, dmac)) = q.pop_front() else {
                panic!("port {p} got {src}#{seq}, which it should not get (duplicate or misrouted)")
            };
            assert_eq!(seq, want, "port {p}: frame from {src} out of order or lost");
            assert!(
                *f == frame(len_for(src, seq), src, dmac, seq),
                "port {p}: frame {src}#{seq} corrupted"
            );
            self.inflight -= 1;
            *self.received.entry(p).or_default() += 1;
        }
        frames.len()
    }

    fn sent(&self, src: u16) -> u32 {
        self.next[&src]
    }
}

/// Runs streams until each source sent `count` frames and every copy
/// arrived, keeping at most `window` copies in flight (so no ring can
/// overflow when `window` is at most the smallest ring).
fn run_streams(
    clients: &mut BTreeMap<u16, MemClient>,
    st: &mut Streams,
    count: u32,
    window: usize,
    route: &dyn Fn(u16, u32) -> (MacAddr, Vec<u16>),
) {
    let sources: Vec<u16> = st.next.keys().copied().collect();
    let deadline = Instant::now() + LONG;
    for _ in 0..10_000_000 {
        let mut progress = 0;
        for &s in &sources {
            let room = window.saturating_sub(st.inflight).min(32);
            let left = count.saturating_sub(st.sent(s)) as usize;
            if room > 0 && left > 0 {
                progress += st.send(s, clients.get_mut(&s).unwrap(), room.min(left), |seq| {
                    route(s, seq)
                });
            }
        }
        for (&p, c) in clients.iter_mut() {
            progress += st.recv(p, c);
        }
        if st.inflight == 0 && sources.iter().all(|&s| st.sent(s) >= count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "streams stalled: {} copies in flight",
            st.inflight
        );
        if progress == 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    panic!("streams did not finish");
}

/// After the streams finished: no port got anything more, the switch read
/// every frame sent, sent exactly the copies received, and dropped nothing.
fn check_quiet(sw: &Switch, clients: &mut BTreeMap<u16, MemClient>, st: &Streams) {
    for (&s, &n) in &st.next {
        wait_rx(sw, s, u64::from(n));
    }
    for &p in clients.keys() {
        wait_tx(sw, p, st.received.get(&p).copied().unwrap_or(0));
    }
    std::thread::sleep(Duration::from_millis(10));
    for (&p, c) in clients.iter_mut() {
        assert_eq!(c.pending(), 0, "port {p} got frames it should not get");
        let t = totals(sw, p);
        assert_eq!(
            t.tx_packets,
            st.received.get(&p).copied().unwrap_or(0),
            "copies sent to port {p}"
        );
        assert_eq!(t.drops.total(), 0, "drops on port {p}: {:?}", t.drops);
    }
    assert!(st.expected.values().all(|q| q.is_empty()));
}

/// Makes ports 1..=n with `cfg`, attached under their numbers.
fn make_ports(
    sw: &Switch,
    n: u16,
    mcfg: MemConfig,
) -> (Vec<Arc<MemPort>>, BTreeMap<u16, MemClient>) {
    let mut ports = Vec::new();
    let mut clients = BTreeMap::new();
    for p in 1..=n {
        let (port, c) = common::port(&format!("p{p}"), mcfg);
        attach(sw, &port, p);
        ports.push(port);
        clients.insert(p, c);
    }
    (ports, clients)
}

fn others(p: u16, n: u16) -> Vec<u16> {
    (1..=n).filter(|&q| q != p).collect()
}

// 1. No loss and per-(source, destination) order when there is room.

#[test]
fn dummy_pairs_lose_nothing_and_keep_order() {
    let _g = serial();
    let sw = switch(cfg(1), Arc::new(Dummy::pairs()));
    let (_ports, mut clients) = make_ports(&sw, 4, default_cfg());
    let mut st = Streams::new(&[1, 2, 3, 4]);
    let pair = |p: u16| if p % 2 == 1 { p + 1 } else { p - 1 };
    run_streams(&mut clients, &mut st, 3000, 200, &|s, _| {
        (mac(pair(s)), vec![pair(s)])
    });
    check_quiet(&sw, &mut clients, &st);
    assert_eq!(st.received.values().sum::<u64>(), 4 * 3000);
}

#[test]
fn port_sets_with_small_batches_and_two_workers_lose_nothing() {
    let _g = serial();
    // Sets (one with a duplicate and the input itself), small batches so one
    // input's frames span many passes, two workers sharing destinations.
    let m = module::build("dummy:1=2+3,2=3,3=1+2+4+3,4=1+4").unwrap();
    let sw = switch(
        SwitchConfig {
            workers: 2,
            batch: 7,
            ..SwitchConfig::default()
        },
        m,
    );
    let (_ports, mut clients) = make_ports(&sw, 4, default_cfg());
    let route = |s: u16, _| match s {
        1 => (mac(2), vec![2, 3]),
        2 => (mac(3), vec![3]),
        3 => (mac(1), vec![1, 2, 4]),
        _ => (mac(1), vec![1]),
    };
    let mut st = Streams::new(&[1, 2, 3, 4]);
    run_streams(&mut clients, &mut st, 2000, 200, &route);
    check_quiet(&sw, &mut clients, &st);
    assert_eq!(st.received.values().sum::<u64>(), 2000 * (2 + 1 + 3 + 1));
}

#[test]
fn learn_delivers_known_unicast_exactly_once_in_order() {
    let _g = serial();
    let n = 5;
    let sw = switch(cfg(2), Arc::new(Learn::new(LearnConfig::default())));
    let (_ports, mut clients) = make_ports(&sw, n, default_cfg());
    // Each host announces itself with a broadcast: flooded to every other port.
    let mut hello = Streams::new(&(1..=n).collect::<Vec<_>>());
    run_streams(&mut clients, &mut hello, 1, 200, &|s, _| {
        (MacAddr::BROADCAST, others(s, n))
    });
    check_quiet(&sw, &mut clients, &hello);
    // Now every MAC is known: unicast goes to its port only (a flood would
    // show up as an unexpected frame at a third port).
    let mut st = Streams::new(&(1..=n).collect::<Vec<_>>());
    let route = |s: u16, seq: u32| {
        let d = others(s, n)[seq as usize % (n as usize - 1)];
        (mac(d), vec![d])
    };
    run_streams(&mut clients, &mut st, 2000, 200, &route);
    for (&s, &k) in &st.next {
        wait_rx(&sw, s, u64::from(k) + 1);
    }
    for &p in clients.keys() {
        wait_tx(&sw, p, st.received[&p] + hello.received[&p]);
    }
    std::thread::sleep(Duration::from_millis(10));
    for (&p, c) in clients.iter_mut() {
        assert_eq!(c.pending(), 0, "port {p} got frames it should not get");
        let t = totals(&sw, p);
        assert_eq!(
            t.tx_packets,
            st.received[&p] + hello.received[&p],
            "copies sent to port {p}"
        );
        assert_eq!(t.drops.total(), 0, "drops on port {p}: {:?}", t.drops);
    }
}

// 2. Exact drop counts when a destination is full.

#[test]
fn a_full_destination_drops_exactly_the_excess() {
    let _g = serial();
    let sw = switch(cfg(1), module::build("dummy:1=2,3=4").unwrap());
    let (p1, mut c1) = port("p1", default_cfg());
    let (p2, mut c2) = port("p2", MemConfig::new(16, 2048));
    let (p3, mut c3) = port("p3", default_cfg());
    let (p4, mut c4) = port("p4", default_cfg());
    for (p, id) in [(&p1, 1), (&p2, 2), (&p3, 3), (&p4, 4)] {
        attach(&sw, p, id);
    }
    const N: u32 = 100;
    let to2: Vec<Vec<u8>> = (0..N).map(|s| frame(len_for(1, s), 1, mac(2), s)).collect();
    let to4: Vec<Vec<u8>> = (0..N).map(|s| frame(len_for(3, s), 3, mac(4), s)).collect();
    send_all(&mut c1, &to2, LONG);
    send_all(&mut c3, &to4, LONG);
    wait_rx(&sw, 1, u64::from(N));
    wait_rx(&sw, 3, u64::from(N));
    // Port 2's client reads nothing: its 16-slot ring takes the first 16.
    wait_until("port 2's counters to settle", LONG, || {
        let t = totals(&sw, 2);
        t.tx_packets + t.drops.dest_full == u64::from(N)
    });
    let t2 = totals(&sw, 2);
    assert_eq!(t2.tx_packets, 16);
    assert_eq!(t2.drops.dest_full, u64::from(N) - 16);
    assert_eq!(t2.drops.total(), t2.drops.dest_full);
    assert_eq!(
        totals(&sw, 1).drops.total(),
        0,
        "drops are charged to the destination"
    );
    // The other pair is unaffected.
    let got4 = recv_n(&mut c4, N as usize, LONG);
    assert_eq!(got4, to4);
    wait_tx(&sw, 4, u64::from(N));
    let t4 = totals(&sw, 4);
    assert_eq!((t4.tx_packets, t4.drops.total()), (u64::from(N), 0));
    let s = sw.stats();
    assert_eq!(s.drops.dest_full, u64::from(N) - 16);
    assert_eq!(s.drops.total(), u64::from(N) - 16);
    // What fit is the first 16 frames, in order and intact.
    assert_eq!(c2.recv_all(), to2[..16].to_vec());
    // With room again, the port receives again, and nothing more is dropped.
    let more: Vec<Vec<u8>> = (N..N + 10)
        .map(|s| frame(len_for(1, s), 1, mac(2), s))
        .collect();
    send_all(&mut c1, &more, LONG);
    assert_eq!(recv_n(&mut c2, 10, LONG), more);
    assert_eq!(totals(&sw, 2).drops.dest_full, u64::from(N) - 16);
}

// 3. Flood: one copy to every port but the input.

#[test]
fn dummy_flood_and_sets_copy_once_to_each_port_but_the_input() {
    let _g = serial();
    let sw = switch(cfg(2), module::build("dummy:1=flood,2=3+4+3+2").unwrap());
    let (_ports, mut clients) = make_ports(&sw, 5, default_cfg());
    let mut st = Streams::new(&[1, 2]);
    let route = |s: u16, _| match s {
        1 => (MacAddr::BROADCAST, vec![2, 3, 4, 5]),
        _ => (mac(3), vec![3, 4]),
    };
    run_streams(&mut clients, &mut st, 300, 200, &route);
    check_quiet(&sw, &mut clients, &st);
    assert_eq!(st.received.get(&1), None, "the flooding port got nothing");
    for p in 2..=5 {
        assert_eq!(totals(&sw, p).rx_packets, if p <= 2 { 300 } else { 0 });
    }
    assert_eq!(st.received.values().sum::<u64>(), 300 * 4 + 300 * 2);
}

#[test]
fn learn_floods_broadcast_and_multicast_to_all_but_the_input() {
    let _g = serial();
    let n = 6;
    let sw = switch(cfg(1), Arc::new(Learn::new(LearnConfig::default())));
    let (_ports, mut clients) = make_ports(&sw, n, default_cfg());
    let mut st = Streams::new(&(1..=n).collect::<Vec<_>>());
    let multicast = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x09]);
    let route = |s: u16, seq: u32| {
        (
            if seq.is_multiple_of(2) {
                MacAddr::BROADCAST
            } else {
                multicast
            },
            others(s, n),
        )
    };
    run_streams(&mut clients, &mut st, 50, 200, &route);
    check_quiet(&sw, &mut clients, &st);
    for p in 1..=n {
        assert_eq!(st.received[&p], 50 * u64::from(n - 1), "copies at port {p}");
    }
}

// 4. Concurrent senders into one destination.

#[test]
fn concurrent_senders_into_one_destination_account_for_every_packet() {
    let _g = serial();
    const SOURCES: u16 = 4;
    const DST: u16 = 5;
    const MAX_PER_SOURCE: u32 = 40_000;
    let map = (1..=SOURCES).map(|p| (PortId(p), Target::Port(PortId(DST))));
    let sw = switch(cfg(2), Arc::new(Dummy::with_map(map)));
    let mut sources = Vec::new();
    for p in 1..=SOURCES {
        let (port, c) = port(&format!("src{p}"), MemConfig::new(512, 2048));
        // Sources alternate between the two workers.
        let owner = usize::from(p - 1) % 2;
        assert_eq!(
            sw.attach_to(port.clone(), Some(PortId(p)), Some(owner))
                .unwrap(),
            PortId(p)
        );
        sources.push((p, port, c));
    }
    assert!(sw.stats().workers.iter().all(|w| w.queues == 2));
    let (dport, mut dc) = port("dst", MemConfig::new(256, 2048));
    attach(&sw, &dport, DST);

    let stop = AtomicBool::new(false);
    let received = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let send_until = Instant::now() + Duration::from_millis(1000);
    let templates: Vec<Vec<u8>> = (0..=SOURCES)
        .map(|p| frame(MIN_LEN, p, mac(DST), 0))
        .collect();
    let (sent, got) = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            // Drains continuously, recording (source, sequence) and checking bytes.
            let mut got: Vec<(u16, u32)> = Vec::new();
            let mut bad = 0u64;
            for _ in 0..100_000_000u64 {
                let n = dc.recv(usize::MAX, |f| {
                    let (src, seq) = tag(f);
                    let t = templates.get(usize::from(src));
                    if t.is_none_or(|t| {
                        f.len() != t.len()
                            || f[..TAG_OFF] != t[..TAG_OFF]
                            || f[TAG_OFF + 4..] != t[TAG_OFF + 4..]
                    }) {
                        bad += 1;
                    }
                    got.push((src, seq));
                });
                received.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 {
                    if stop.load(Ordering::Acquire) || Instant::now() > deadline {
                        break;
                    }
                    dc.wait(Some(Duration::from_millis(1)));
                }
            }
            assert_eq!(bad, 0, "corrupted frames at the destination");
            got
        });
        let senders: Vec<_> = sources
            .iter_mut()
            .map(|(p, _, c)| {
                let p = *p;
                let template = &templates[usize::from(p)];
                s.spawn(move || {
                    let mut bufs = vec![template.clone(); 64];
                    let mut seq = 0u32;
                    for _ in 0..100_000_000u64 {
                        if seq >= MAX_PER_SOURCE || Instant::now() > send_until {
                            break;
                        }
                        let k = 64.min(MAX_PER_SOURCE - seq) as usize;
                        for (i, b) in bufs[..k].iter_mut().enumerate() {
                            b[TAG_OFF..TAG_OFF + 4]
                                .copy_from_slice(&(seq + i as u32).to_le_bytes());
                        }
                        let n = c.send(bufs[..k].iter().map(|b| b.as_slice()));
                        seq += n as u32;
                        if n == 0 {
                            std::thread::yield_now();
                        }
                    }
                    (p, seq)
                })
            })
            .collect();
        let sent: BTreeMap<u16, u32> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        let total: u64 = sent.values().map(|&n| u64::from(n)).sum();
        // The switch reads everything sent, then settles every copy.
        for (&p, &n) in &sent {
            wait_rx(&sw, p, u64::from(n));
        }
        wait_until("the destination's counters to settle", LONG, || {
            let t = totals(&sw, DST);
            t.tx_packets + t.drops.dest_full == total
        });
        let tx = totals(&sw, DST).tx_packets;
        wait_until("the receiver to drain the destination", LONG, || {
            received.load(Ordering::Relaxed) >= tx
        });
        stop.store(true, Ordering::Release);
        (sent, rx.join().unwrap())
    });

    let total_sent: u64 = sent.values().map(|&n| u64::from(n)).sum();
    assert!(total_sent > 0);
    let dt = totals(&sw, DST);
    assert_eq!(
        got.len() as u64,
        dt.tx_packets,
        "the destination's tx counter matches what arrived"
    );
    let mut per_src: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
    for (src, seq) in got {
        per_src.entry(src).or_default().push(seq);
    }
    let mut lost = 0u64;
    for (&p, &n) in &sent {
        let seqs = per_src.remove(&p).unwrap_or_default();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "source {p}: order not kept or duplicates"
        );
        assert!(
            seqs.last().is_none_or(|&l| l < n),
            "source {p}: a packet that was never sent arrived"
        );
        lost += u64::from(n) - seqs.len() as u64;
        let t = totals(&sw, p);
        assert_eq!(t.rx_packets, u64::from(n), "source {p}: packets read");
        assert_eq!(
            t.drops.total(),
            0,
            "source {p}: drops charged to the source"
        );
    }
    assert!(
        per_src.is_empty(),
        "frames from unknown sources: {:?}",
        per_src.keys()
    );
    // No fairness is promised under overload (a source polled right after
    // another filled the ring can lose everything), but the destination works.
    assert!(dt.tx_packets > 0, "nothing arrived at all");
    eprintln!(
        "sent {sent:?}, delivered {}, dest_full {}",
        dt.tx_packets, dt.drops.dest_full
    );
    // Every packet sent either arrived or is one of the destination's dest_full drops.
    assert_eq!(dt.drops.dest_full, lost, "received + dest_full == sent");
    assert_eq!(dt.drops.total(), dt.drops.dest_full);
    assert_eq!(sw.stats().drops.total(), lost);
}

// 5. Attach, detach and module swaps while traffic flows.

#[test]
fn attach_detach_and_module_swap_during_traffic_lose_nothing() {
    let _g = serial();
    let sw = switch(cfg(2), Arc::new(Dummy::pairs()));
    let (p1, c1) = port("p1", default_cfg());
    let (p2, c2) = port("p2", default_cfg());
    sw.attach_to(p1.clone(), Some(PortId(1)), Some(0)).unwrap();
    sw.attach_to(p2.clone(), Some(PortId(2)), Some(1)).unwrap();
    let mut clients = BTreeMap::from([(1, c1), (2, c2)]);
    const CHURN: u32 = 150;
    let churned = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(20);

    let (iterations, swaps, during) = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            let mut live: VecDeque<(PortId, Arc<MemPort>, MemClient)> = VecDeque::new();
            let (mut i, mut swaps) = (0u32, 0u32);
            while i < CHURN && Instant::now() < deadline {
                let (p, mut c) = port(&format!("t{i}"), MemConfig::new(16, 2048));
                let id = sw.attach(p.clone(), None).unwrap();
                assert!(id.0 >= 3, "port number {id} was taken");
                // Transient ports talk too, to an unknown MAC (flooded by
                // learn) and to whatever dummy pairs them with.
                c.send_one(&frame(MIN_LEN, 100, mac(999), i));
                live.push_back((id, p, c));
                if live.len() > 3 || i % 3 == 0 {
                    let (id, p, mut c) = live.pop_front().unwrap();
                    let back = sw.detach(id).unwrap();
                    assert_eq!(back.name(), p.name());
                    assert!(sw.port_stats(id).is_none());
                    c.recv_all();
                }
                if i % 10 == 9 {
                    if swaps % 2 == 0 {
                        sw.set_module(module::build("learn").unwrap());
                    } else {
                        sw.set_module(Arc::new(Dummy::pairs()));
                    }
                    swaps += 1;
                }
                i += 1;
            }
            for (id, _, _) in live {
                sw.detach(id).unwrap();
            }
            churned.store(true, Ordering::Release);
            (i, swaps)
        });

        // Ports 1 and 2 talk the whole time, with at most 128 frames in flight.
        let mut st = Streams::new(&[1, 2]);
        st.allow_foreign = true;
        let mut during = 0;
        for _ in 0..10_000_000 {
            if !churned.load(Ordering::Acquire) {
                during = st.sent(1).min(st.sent(2));
            }
            let mut progress = 0;
            for s in [1u16, 2] {
                let room = 128usize.saturating_sub(st.inflight).min(16);
                let d = 3 - s;
                progress += st.send(s, clients.get_mut(&s).unwrap(), room, |_| (mac(d), vec![d]));
            }
            for (&p, c) in clients.iter_mut() {
                progress += st.recv(p, c);
            }
            if churned.load(Ordering::Acquire) && st.sent(1) >= 2000 && st.sent(2) >= 2000 {
                break;
            }
            assert!(Instant::now() < deadline, "traffic or churn stalled");
            if progress == 0 {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        // Drain what is still in flight.
        let drain_until = Instant::now() + LONG;
        while st.inflight > 0 && Instant::now() < drain_until {
            for (&p, c) in clients.iter_mut() {
                st.recv(p, c);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        assert_eq!(st.inflight, 0, "ports 1 and 2 lost frames");
        for p in [1, 2] {
            wait_rx(&sw, p, u64::from(st.sent(p)));
            assert_eq!(
                totals(&sw, p).drops.total(),
                0,
                "drops on port {p}: {:?}",
                totals(&sw, p).drops
            );
        }
        let (i, swaps) = churn.join().unwrap();
        (i, swaps, during)
    });
    eprintln!(
        "churn: {iterations} attach/detach cycles, {swaps} module swaps, {during} frames each way meanwhile"
    );
    assert_eq!(
        iterations, CHURN,
        "the churn thread finished its attach/detach cycles"
    );
    assert!(swaps >= 10);
    assert!(during > 0, "traffic flowed while ports came and went");
    assert_eq!(sw.ports(), vec![PortId(1), PortId(2)]);
}

// 6. Port numbers and control errors.

#[test]
fn over_a_thousand_ports_attach_and_control_errors_are_exact() {
    let _g = serial();
    mswitch::sys::raise_fd_limit();
    const N: u16 = 1100;
    let map = [(1, 4095), (4095, N), (N, 1)].map(|(a, b)| (PortId(a), Target::Port(PortId(b))));
    let sw = switch(cfg(1), Arc::new(Dummy::with_map(map)));
    let small = MemConfig::new(8, 256);
    let mut ports = BTreeMap::new();
    for i in 1..=N {
        let (p, c) = port(&format!("p{i}"), small);
        let id = sw
            .attach(p.clone(), None)
            .unwrap_or_else(|e| panic!("attaching port {i}: {e}"));
        assert_eq!(id, PortId(i), "the lowest free number is used");
        ports.insert(i, (p, c));
    }
    let (p, c) = port("top", small);
    assert_eq!(
        sw.attach(p.clone(), Some(PortId(4095))).unwrap(),
        PortId(4095)
    );
    ports.insert(4095, (p, c));
    assert_eq!(sw.ports().len(), usize::from(N) + 1);
    assert_eq!(sw.stats().ports.len(), usize::from(N) + 1);

    // Traffic around 1 -> 4095 -> N -> 1.
    for (src, dst) in [(1u16, 4095u16), (4095, N), (N, 1)] {
        let frames: Vec<Vec<u8>> = (0..6)
            .map(|s| frame(len_for(src, s).min(256), src, mac(dst), s))
            .collect();
        send_all(&mut ports.get_mut(&src).unwrap().1, &frames, LONG);
        let got = recv_n(&mut ports.get_mut(&dst).unwrap().1, 6, LONG);
        assert_eq!(got, frames, "{src} -> {dst}");
    }

    // Errors.
    let (dup, _dc) = port("p5", small);
    assert!(matches!(sw.attach(dup, None), Err(SwitchError::NameTaken(n)) if n == "p5"));
    let (fresh, _fc) = port("fresh", small);
    assert!(matches!(
        sw.attach(fresh.clone(), Some(PortId(10))),
        Err(SwitchError::PortInUse(PortId(10)))
    ));
    assert!(matches!(
        sw.attach_to(fresh.clone(), None, Some(1)),
        Err(SwitchError::BadConfig(_))
    ));
    for bad in [0u16, 4096, 5000, u16::MAX] {
        assert!(
            matches!(
                sw.attach(fresh.clone(), Some(PortId(bad))),
                Err(SwitchError::BadConfig(_))
            ),
            "port number {bad} must be refused"
        );
    }
    assert!(matches!(sw.detach(PortId(3000)), Err(SwitchError::NoSuchPort(n)) if n == "3000"));
    assert!(matches!(
        sw.detach(PortId(0)),
        Err(SwitchError::NoSuchPort(_))
    ));
    assert!(matches!(sw.detach_name("nope"), Err(SwitchError::NoSuchPort(n)) if n == "nope"));
    assert_eq!(
        sw.ports().len(),
        usize::from(N) + 1,
        "failed calls changed nothing"
    );
    // A freed number is reused, and a refused port can still be attached.
    assert_eq!(sw.detach_name("p500").unwrap().name(), "p500");
    assert!(matches!(
        sw.detach(PortId(500)),
        Err(SwitchError::NoSuchPort(_))
    ));
    assert_eq!(sw.attach(fresh, None).unwrap(), PortId(500));
    assert_eq!(sw.port_id("fresh"), Some(PortId(500)));
    // Traffic still flows after all that.
    let f = frame(MIN_LEN, 1, mac(4095), 99);
    send_all(
        &mut ports.get_mut(&1).unwrap().1,
        std::slice::from_ref(&f),
        LONG,
    );
    assert_eq!(
        recv_n(&mut ports.get_mut(&4095).unwrap().1, 1, LONG),
        vec![f]
    );
}

#[test]
fn bad_switch_configs_are_refused() {
    let _g = serial();
    for c in [
        SwitchConfig {
            workers: 0,
            ..SwitchConfig::default()
        },
        SwitchConfig {
            workers: 257,
            ..SwitchConfig::default()
        },
        SwitchConfig {
            batch: 0,
            ..SwitchConfig::default()
        },
        SwitchConfig {
            batch: 1025,
            ..SwitchConfig::default()
        },
        SwitchConfig {
            cpus: Some(vec![]),
            ..SwitchConfig::default()
        },
    ] {
        assert!(
            matches!(
                Switch::new(c.clone(), Arc::new(Dummy::pairs())),
                Err(SwitchError::BadConfig(_))
            ),
            "{c:?}"
        );
    }
}

// 7. An idle switch sleeps, and wakes for the next packet.

#[test]
fn idle_workers_sleep_and_wake_for_the_next_packet() {
    let _g = serial();
    let sw = switch(cfg(2), Arc::new(Dummy::pairs()));
    let (p1, c1) = port("p1", default_cfg());
    let (p2, c2) = port("p2", default_cfg());
    sw.attach_to(p1.clone(), Some(PortId(1)), Some(0)).unwrap();
    sw.attach_to(p2.clone(), Some(PortId(2)), Some(1)).unwrap();
    let mut clients = BTreeMap::from([(1, c1), (2, c2)]);
    let mut st = Streams::new(&[1, 2]);
    run_streams(&mut clients, &mut st, 500, 200, &|s, _| {
        (mac(3 - s), vec![3 - s])
    });
    check_quiet(&sw, &mut clients, &st);

    let all_asleep = || sw.stats().workers.iter().all(|w| w.sleeping);
    wait_until("every worker to sleep", Duration::from_secs(3), all_asleep);
    let sleeps0: Vec<u64> = sw.stats().workers.iter().map(|w| w.sleeps).collect();
    let (cpu0, t0) = (mswitch::sys::process_cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_millis(300));
    let (cpu1, t1) = (mswitch::sys::process_cpu_time(), Instant::now());
    let (cpu, wall) = (cpu1.saturating_sub(cpu0), t1 - t0);
    assert!(
        cpu.as_secs_f64() < 0.3 * wall.as_secs_f64(),
        "idle switch used {cpu:?} of CPU in {wall:?}"
    );
    eprintln!("idle: {cpu:?} of CPU in {wall:?}");
    wait_until(
        "every worker to be asleep still",
        Duration::from_secs(3),
        all_asleep,
    );
    let sleeps1: Vec<u64> = sw.stats().workers.iter().map(|w| w.sleeps).collect();
    for (w, (a, b)) in sleeps0.iter().zip(&sleeps1).enumerate() {
        // Asleep means blocked: at most the odd timeout or spurious wake-up.
        assert!(
            b - a <= 5,
            "worker {w} went to sleep {} times in 300 ms",
            b - a
        );
    }
    let packets0: u64 = sw.stats().workers.iter().map(|w| w.packets).sum();

    // The next packet wakes the worker and is delivered.
    let f = frame(MIN_LEN, 1, mac(2), 12345);
    assert!(clients.get_mut(&1).unwrap().send_one(&f));
    assert_eq!(
        recv_n(clients.get_mut(&2).unwrap(), 1, Duration::from_secs(5)),
        vec![f]
    );
    let f = frame(MIN_LEN, 2, mac(1), 54321);
    assert!(clients.get_mut(&2).unwrap().send_one(&f));
    assert_eq!(
        recv_n(clients.get_mut(&1).unwrap(), 1, Duration::from_secs(5)),
        vec![f]
    );
    wait_until("the workers to count both packets", LONG, || {
        sw.stats().workers.iter().map(|w| w.packets).sum::<u64>() == packets0 + 2
    });
    wait_until(
        "every worker to sleep again",
        Duration::from_secs(3),
        all_asleep,
    );
}

// 8. Bad frames and oversize frames.

/// Writes slots straight into a port's incoming ring, as a buggy or hostile
/// client in another process could.
struct RawWriter {
    port: Arc<MemPort>,
    head: u32,
}

impl RawWriter {
    fn push(&mut self, buf: Option<u32>, len: u16, data: &[u8]) {
        let mem = self.port.mem();
        let ring = mem.incoming();
        assert!(ring.free(self.head) > 0);
        let s = ring.slot(self.head);
        assert!(mem.write_buf(s.buf, data));
        ring.write_slot(
            self.head,
            Slot {
                buf: buf.unwrap_or(s.buf),
                len,
                flags: 0,
            },
        );
        self.head = self.head.wrapping_add(1);
    }

    fn frame(&mut self, f: &[u8]) {
        self.push(None, f.len() as u16, f);
    }

    fn publish(&self) {
        self.port.mem().incoming().publish(self.head);
    }
}

#[test]
fn bad_slots_are_counted_on_their_port_and_oversize_frames_are_dropped_whole() {
    let _g = serial();
    // This test writes rings without ringing doorbells: workers must poll.
    let sw = switch(
        SwitchConfig {
            idle_after: None,
            ..SwitchConfig::default()
        },
        module::build("dummy:1=2,3=4,5=6,7=flood").unwrap(),
    );
    let mut ports = BTreeMap::new();
    for p in 1..=7u16 {
        let mcfg = if p == 6 {
            MemConfig::new(64, 256)
        } else {
            default_cfg()
        };
        let (port, c) = port(&format!("p{p}"), mcfg);
        attach(&sw, &port, p);
        ports.insert(p, (port, c));
    }
    let nbufs = ports[&1].0.mem().nbufs();

    // Port 1 writes good frames between bad slots: a buffer index out of
    // range, length 0, a length past the buffer, an absurd buffer index.
    let good: Vec<Vec<u8>> = (0..5).map(|s| frame(len_for(1, s), 1, mac(2), s)).collect();
    let mut w = RawWriter {
        port: ports[&1].0.clone(),
        head: 0,
    };
    w.frame(&good[0]);
    w.push(Some(nbufs + 7), 60, &good[1]);
    w.frame(&good[1]);
    w.push(None, 0, &[]);
    w.frame(&good[2]);
    w.push(None, 2049, &good[2]);
    w.frame(&good[3]);
    w.push(Some(u32::MAX), 60, &good[3]);
    w.frame(&good[4]);
    w.publish();
    // Meanwhile 3 -> 4 goes on.
    let to4: Vec<Vec<u8>> = (0..50)
        .map(|s| frame(len_for(3, s), 3, mac(4), s))
        .collect();
    send_all(&mut ports.get_mut(&3).unwrap().1, &to4, LONG);

    assert_eq!(
        recv_n(&mut ports.get_mut(&2).unwrap().1, 5, LONG),
        good,
        "good frames arrive intact and in order"
    );
    assert_eq!(recv_n(&mut ports.get_mut(&4).unwrap().1, 50, LONG), to4);
    wait_rx(&sw, 1, 9);
    let t1 = totals(&sw, 1);
    assert_eq!(t1.drops.bad_frame, 4);
    assert_eq!(t1.drops.total(), 4);
    assert_eq!(
        t1.rx_bytes,
        good.iter().map(|f| f.len() as u64).sum::<u64>(),
        "bad slots carry no bytes"
    );
    wait_tx(&sw, 2, 5);
    wait_tx(&sw, 4, 50);
    for p in 2..=4 {
        assert_eq!(totals(&sw, p).drops.total(), 0, "port {p}");
    }

    // Port 5 -> port 6, whose buffers are 256 bytes: longer frames are dropped, never cut.
    let lens = [60usize, 200, 256, 257, 300, 1514, 64, 255];
    let frames: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(s, &l)| frame(l, 5, mac(6), s as u32))
        .collect();
    send_all(&mut ports.get_mut(&5).unwrap().1, &frames, LONG);
    let fit: Vec<Vec<u8>> = frames.iter().filter(|f| f.len() <= 256).cloned().collect();
    assert_eq!(
        recv_n(&mut ports.get_mut(&6).unwrap().1, fit.len(), LONG),
        fit
    );
    wait_tx(&sw, 6, 5);
    let t6 = totals(&sw, 6);
    assert_eq!(
        (t6.tx_packets, t6.drops.oversize, t6.drops.total()),
        (5, 3, 3)
    );
    assert_eq!(
        totals(&sw, 5).drops.total(),
        0,
        "oversize is charged to the destination"
    );

    // A flood of one long and one short frame: port 6 gets the short one only.
    let flood = [
        frame(1000, 7, MacAddr::BROADCAST, 0),
        frame(100, 7, MacAddr::BROADCAST, 1),
    ];
    send_all(&mut ports.get_mut(&7).unwrap().1, &flood, LONG);
    for p in 1..=6u16 {
        let want: Vec<Vec<u8>> = if p == 6 {
            flood[1..].to_vec()
        } else {
            flood.to_vec()
        };
        assert_eq!(
            recv_n(&mut ports.get_mut(&p).unwrap().1, want.len(), LONG),
            want,
            "flood at port {p}"
        );
    }
    for p in 1..=6u16 {
        wait_tx(
            &sw,
            p,
            [0, 5, 0, 50, 0, 5][usize::from(p) - 1] + if p == 6 { 1 } else { 2 },
        );
    }
    assert_eq!(totals(&sw, 6).drops.oversize, 4);
    std::thread::sleep(Duration::from_millis(10));
    for (&p, (_, c)) in ports.iter_mut() {
        assert_eq!(c.pending(), 0, "port {p} got more");
    }
    assert_eq!(totals(&sw, 7).tx_packets, 0);
    assert_eq!(sw.stats().drops.total(), 4 + 4, "bad_frame 4 + oversize 4");
}

#[test]
fn a_client_cannot_queue_a_frame_its_slots_cannot_describe() {
    let _g = serial();
    let sw = switch(cfg(1), module::build("dummy:1=2").unwrap());
    let big = MemConfig::new(4, 65536);
    let (p1, mut c1) = port("p1", big);
    let (p2, mut c2) = port("p2", big);
    attach(&sw, &p1, 1);
    attach(&sw, &p2, 2);
    // A slot's length is 16 bits: 65536 bytes fit the buffer but not the slot.
    let too_long = frame(65536, 1, mac(2), 0);
    assert_eq!(c1.send([too_long.as_slice()]), 1, "taken");
    assert_eq!(
        p1.mem().incoming().hdr.head.load(Ordering::Acquire),
        0,
        "but not queued"
    );
    let longest = frame(65535, 1, mac(2), 1);
    assert!(c1.send_one(&longest));
    assert_eq!(recv_n(&mut c2, 1, LONG), vec![longest]);
    wait_rx(&sw, 1, 1);
    assert_eq!(totals(&sw, 1).drops.total(), 0);
}

/// Grows every packet to its whole buffer (or one byte less if refused) and
/// sends it to port 2.
struct Grow;

impl Module for Grow {
    fn name(&self) -> &'static str {
        "grow"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        for i in 0..batch.len() {
            let cap = batch.capacity(i);
            let _ = batch.set_len(i, cap) || batch.set_len(i, cap - 1);
            out.set(i, Verdict::Port(PortId(2)));
        }
    }
}

#[test]
fn a_module_cannot_make_a_frame_longer_than_a_slot_describes() {
    let _g = serial();
    let sw = switch(cfg(1), Arc::new(Grow));
    let big = MemConfig::new(4, 65536);
    let (p1, mut c1) = port("p1", big);
    let (p2, mut c2) = port("p2", big);
    attach(&sw, &p1, 1);
    attach(&sw, &p2, 2);
    let f = frame(100, 1, mac(2), 7);
    assert!(c1.send_one(&f));
    let got = recv_n(&mut c2, 1, LONG);
    assert_eq!(
        got[0].len(),
        65535,
        "grown to the longest length a slot holds"
    );
    assert_eq!(got[0][..100], f[..]);
    wait_tx(&sw, 2, 1);
    assert_eq!(totals(&sw, 2).tx_bytes, 65535);
}

// Packet-outs and packet-ins: the agent's side of the core.

#[test]
fn transmit_sends_from_outside_the_workers_and_counts_on_the_port() {
    let _g = serial();
    let sw = switch(cfg(1), module::build("dummy").unwrap());
    let (p1, mut c1) = port("p1", MemConfig::new(16, 256));
    attach(&sw, &p1, 1);
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|s| frame(60 + s as usize, 9, mac(1), s))
        .collect();
    let big = frame(257, 9, mac(1), 99);
    let mut refs: Vec<&[u8]> = vec![&big, &[]];
    refs.extend(frames.iter().map(|f| f.as_slice()));
    // 16 slots: the oversize and the empty frame are dropped, 4 do not fit.
    assert_eq!(sw.transmit(pid(1), &refs), 16);
    assert_eq!(c1.recv_all(), frames[..16].to_vec());
    let t = totals(&sw, 1);
    assert_eq!(t.tx_packets, 16);
    assert_eq!(
        t.tx_bytes,
        frames[..16].iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(t.drops.dest_full, 4);
    assert_eq!(t.drops.oversize, 1);
    assert_eq!(t.drops.bad_frame, 1);
    assert_eq!(t.rx_packets, 0);
    // Room again: the longest frame that fits goes whole.
    let fits = frame(256, 9, mac(1), 100);
    assert_eq!(sw.transmit(pid(1), &[&fits]), 1);
    assert_eq!(c1.recv_all(), vec![fits]);
    // No such port: nothing sent, nothing counted anywhere.
    assert_eq!(sw.transmit(pid(7), &[&frames[0]]), 0);
    assert_eq!(totals(&sw, 1).tx_packets, 17);
    // The counters survive a replace (the transmit copy is carried over).
    let (p1b, mut c1b) = port("p1", MemConfig::new(16, 256));
    sw.replace(pid(1), p1b as Arc<dyn Port>).unwrap();
    assert_eq!(sw.transmit(pid(1), &[&frames[1]]), 1);
    assert_eq!(c1b.recv_all(), vec![frames[1].clone()]);
    assert_eq!(totals(&sw, 1).tx_packets, 18);
    assert_eq!(totals(&sw, 1).drops.oversize, 1);
}

#[test]
fn transmit_from_several_threads_while_workers_forward_loses_no_count() {
    let _g = serial();
    let sw = Arc::new(switch(cfg(2), module::build("dummy:1=3").unwrap()));
    let (p1, mut c1) = port("p1", default_cfg());
    let (p3, mut c3) = port("p3", MemConfig::new(4096, 2048));
    attach(&sw, &p1, 1);
    attach(&sw, &p3, 3);
    const N: u32 = 1000;
    let fwd: Vec<Vec<u8>> = (0..N).map(|s| frame(60, 1, mac(3), s)).collect();
    let threads: Vec<_> = (0..2u16)
        .map(|t| {
            let sw = sw.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                for s in 0..N / 2 {
                    let f = frame(60, 10 + t, mac(3), s);
                    sent += sw.transmit(pid(3), &[&f]);
                }
                sent
            })
        })
        .collect();
    send_all(&mut c1, &fwd, LONG);
    let sent: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(sent, N as usize);
    let got = recv_n(&mut c3, 2 * N as usize, LONG);
    let from1: Vec<Vec<u8>> = got.iter().filter(|f| tag(f).0 == 1).cloned().collect();
    assert_eq!(from1, fwd, "forwarded frames arrive in order");
    wait_tx(&sw, 3, 2 * u64::from(N));
    assert_eq!(totals(&sw, 3).drops.total(), 0);
}

/// Sends every packet to port 2 and to the controller (tag 42), and
/// packets from port 3 to the controller only (no tag).
struct Mirror;

impl Module for Mirror {
    fn name(&self) -> &'static str {
        "mirror"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        for i in 0..batch.len() {
            if batch.in_port() == PortId(3) {
                out.set(i, Verdict::Controller);
            } else {
                out.set(i, Verdict::Port(PortId(2)));
                out.to_controller(i, 42);
            }
        }
    }
}

#[test]
fn packet_ins_carry_tags_and_wake_the_reader_through_an_fd() {
    let _g = serial();
    let sw = switch(cfg(1), Arc::new(Mirror));
    let (p1, mut c1) = port("p1", default_cfg());
    let (p2, mut c2) = port("p2", default_cfg());
    let (p3, mut c3) = port("p3", default_cfg());
    for (p, id) in [(&p1, 1), (&p2, 2), (&p3, 3)] {
        attach(&sw, p, id);
    }
    let fd = sw.packet_in_fd();
    assert!(!mswitch::sys::poll_readable(fd, Some(Duration::ZERO)));
    sw.ack_packet_in();
    let f = frame(80, 1, mac(2), 1);
    assert!(c1.send_one(&f));
    assert!(mswitch::sys::poll_readable(fd, Some(LONG)), "fd readable");
    assert_eq!(recv_n(&mut c2, 1, LONG), vec![f.clone()]);
    let g = frame(90, 3, mac(2), 2);
    assert!(c3.send_one(&g));
    wait_rx(&sw, 3, 1);
    let mut got = Vec::new();
    wait_until("two packet-ins", LONG, || {
        while let Some(p) = sw.pop_packet_in() {
            got.push(p);
        }
        got.len() == 2
    });
    assert_eq!((got[0].in_port, got[0].tag, &got[0].data), (pid(1), 42, &f));
    assert_eq!((got[1].in_port, got[1].tag, &got[1].data), (pid(3), 0, &g));
    // Popped empty: the fd is clear until the next packet-in.
    assert!(!mswitch::sys::poll_readable(fd, Some(Duration::ZERO)));
    assert!(c1.send_one(&f));
    assert!(mswitch::sys::poll_readable(fd, Some(LONG)));
    // ack leaves a waiting packet's signal alone.
    sw.ack_packet_in();
    assert!(mswitch::sys::poll_readable(fd, Some(Duration::ZERO)));
    assert!(sw.pop_packet_in().is_some());
    assert!(!mswitch::sys::poll_readable(fd, Some(Duration::ZERO)));
    wait_tx(&sw, 2, 2);
}

// N. Ports with several incoming queues.

/// A port with several incoming queues, each a ring of its own that the
/// test fills directly (as a device's receive queues); polled, no signals.
struct MultiQueue {
    name: String,
    queues: Vec<mswitch::packet::PortMem>,
}

impl Port for MultiQueue {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "test-mq"
    }
    fn mem(&self) -> &mswitch::packet::PortMem {
        &self.queues[0]
    }
    fn incoming_queues(&self) -> usize {
        self.queues.len()
    }
    fn incoming_mem(&self, q: usize) -> &mswitch::packet::PortMem {
        &self.queues[q]
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("queues", self.queues.len() as u64)]
    }
}

#[test]
fn incoming_queues_are_spread_over_workers_and_all_forwarded() {
    let _g = serial();
    let sw = switch(cfg(2), Arc::new(Dummy::pairs()));
    let queues = (0..3)
        .map(|q| mswitch::packet::PortMem::new(&format!("mq{q}"), default_cfg()).unwrap())
        .collect();
    let mq = Arc::new(MultiQueue {
        name: "mq".into(),
        queues,
    });
    sw.attach(mq.clone(), Some(pid(1))).unwrap();
    let (sink, mut client) = port("sink", default_cfg());
    attach(&sw, &sink, 2);
    let st = sw.stats();
    // Spread: queue 0 and 1 on different workers, queue 2 on the less loaded.
    assert_eq!(st.ports[0].queue_workers, vec![0, 1, 0]);
    assert_eq!(st.ports[1].queue_workers, vec![1]);
    assert_eq!(
        st.ports[0].port_counters,
        vec![("queues", 3)],
        "the backend's own"
    );
    assert_eq!(
        st.workers.iter().map(|w| w.queues).collect::<Vec<_>>(),
        vec![2, 2]
    );
    // Each queue carries its own numbered stream; all of it arrives, and
    // each stream in order.
    const PER_QUEUE: u32 = 2000;
    let mut heads: Vec<u32> = mq
        .queues
        .iter()
        .map(|m| m.incoming().hdr.head.load(Ordering::Acquire))
        .collect();
    let mut sent = [0u32; 3];
    let mut got = Vec::new();
    let deadline = Instant::now() + LONG;
    while got.len() < 3 * PER_QUEUE as usize && Instant::now() < deadline {
        for (q, m) in mq.queues.iter().enumerate() {
            // No more in flight than the sink's ring holds: a full
            // destination drops (and counts), as it should.
            let inflight = sent.iter().sum::<u32>() as usize - got.len();
            let left = (PER_QUEUE - sent[q]) as usize;
            let left = left.min(192usize.saturating_sub(inflight));
            sent[q] += m.produce(m.incoming(), &mut heads[q], left.min(64), |i, buf| {
                let f = frame(64, q as u16, mac(2), sent[q] + i as u32);
                buf[..f.len()].copy_from_slice(&f);
                Some(f.len())
            }) as u32;
        }
        client.recv(256, |f| got.push(tag(f)));
    }
    assert_eq!(
        got.len(),
        3 * PER_QUEUE as usize,
        "all frames of all queues: {:?} {:?}",
        totals(&sw, 1),
        totals(&sw, 2)
    );
    for q in 0..3u16 {
        let seqs: Vec<u32> = got.iter().filter(|t| t.0 == q).map(|t| t.1).collect();
        assert_eq!(
            seqs,
            (0..PER_QUEUE).collect::<Vec<_>>(),
            "queue {q} in order"
        );
    }
    assert_eq!(totals(&sw, 1).rx_packets, u64::from(3 * PER_QUEUE));
    let st = sw.stats();
    assert!(
        st.workers.iter().all(|w| w.packets > 0),
        "both workers forwarded"
    );
}

// Variants: extra copies of a packet with bytes of their own.

/// Even sequence numbers: the frame as is to port 2, and a variant (the
/// frame with one byte appended) to ports 3 and 4, and another to port 9
/// (not attached). Odd ones flood as they are.
struct Variants;

impl Module for Variants {
    fn name(&self) -> &'static str {
        "variants"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        let set = out.add_set(&[PortId(3), PortId(4)]);
        for i in 0..batch.len() {
            let d = batch.data(i);
            if tag(d).1.is_multiple_of(2) {
                out.set(i, Verdict::Port(PortId(2)));
                assert!(out.add_variant(i, set, &[d, &[0xaa]]));
                assert!(out.add_variant(i, Verdict::Port(PortId(9)), &[d]));
            } else {
                out.set(i, Verdict::Flood);
            }
        }
    }
}

#[test]
fn variants_reach_their_ports_with_their_bytes_in_input_order() {
    let _g = serial();
    let sw = switch(cfg(1), Arc::new(Variants));
    let (_ports, mut clients) = make_ports(&sw, 4, default_cfg());
    let frames: Vec<Vec<u8>> = (0..200)
        .map(|s| frame(len_for(1, s), 1, mac(2), s))
        .collect();
    let c1 = clients.get_mut(&1).unwrap();
    send_all(c1, &frames, LONG);
    let got2 = recv_n(clients.get_mut(&2).unwrap(), 200, LONG);
    assert_eq!(got2, frames, "port 2: every frame as sent, in order");
    for p in [3, 4] {
        let got = recv_n(clients.get_mut(&p).unwrap(), 200, LONG);
        let want: Vec<Vec<u8>> = frames
            .iter()
            .enumerate()
            .map(|(s, f)| {
                let mut f = f.clone();
                if s % 2 == 0 {
                    f.push(0xaa);
                }
                f
            })
            .collect();
        assert_eq!(
            got, want,
            "port {p}: variants in the place of their packets"
        );
    }
    wait_tx(&sw, 4, 200);
    let t = totals(&sw, 1);
    assert_eq!(t.drops.no_dest, 100, "the variants to port 9 are counted");
    assert_eq!(t.drops.module, 0);
    assert_eq!(
        totals(&sw, 3).tx_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>() + 100
    );
}
