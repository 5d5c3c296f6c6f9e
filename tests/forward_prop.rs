//! Property tests of the forwarding algorithm, driven directly in one thread:
//! a hand-built `Table`, one `Forwarder`, and a module that reads each
//! packet's verdict from its first bytes. For random batches, verdicts,
//! destination rings (sizes, buffer sizes, occupancy, index wrap-around) and
//! forwarder batch sizes, the outcome must equal a simple sequential model.
//! Packets may also carry a controller copy (`Verdicts::to_controller`),
//! and sets may be hairpin sets (allowed to name the input port).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mswitch::module::{Module, Nanos, Verdict, Verdicts};
use mswitch::packet::{Batch, MemConfig, Slot};
use mswitch::port::{MAX_PORTS, MemPort, Port, PortId};
use mswitch::switch::{Forwarder, PacketIns, PortEntry, PortTotals, Table};
use proptest::prelude::*;

/// What the test asks for one packet.
#[derive(Clone, Debug)]
enum Ask {
    Drop,
    Invalid,
    Port(u16),
    Flood,
    Set(Vec<u16>),
    /// A hairpin set: the input port may be one of its members.
    Hairpin(Vec<u16>),
    Controller,
    /// A slot the switch must refuse before any module sees it:
    /// 0 = length 0, 1 = buffer index out of range, 2 = longer than the buffer.
    BadSlot(u8),
}

/// Byte 15 set: the packet also goes to the controller, tagged with its
/// sequence number plus one.
const CTL_OFF: usize = 15;
const SEQ_OFF: usize = 16;
const MIN_LEN: usize = 24;
const INPUT_BUF: u32 = 2048;

/// Reads the verdict from the frame: byte 0 the kind, then a port (u16 LE)
/// or a count and that many ports.
struct ByteModule;

impl Module for ByteModule {
    fn name(&self) -> &'static str {
        "bytes"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        for i in 0..batch.len() {
            let d = batch.data(i);
            let port = |k: usize| PortId(u16::from_le_bytes([d[k], d[k + 1]]));
            let v = match d[0] {
                0 => Verdict::Drop,
                1 => Verdict::Port(port(1)),
                2 => Verdict::Flood,
                3 | 5 => {
                    let ports: Vec<PortId> =
                        (0..usize::from(d[1])).map(|j| port(2 + 2 * j)).collect();
                    out.add_set_with(&ports, d[0] == 5)
                }
                4 => Verdict::Controller,
                _ => Verdict::Invalid,
            };
            let seq =
                u32::from_le_bytes([d[SEQ_OFF], d[SEQ_OFF + 1], d[SEQ_OFF + 2], d[SEQ_OFF + 3]]);
            if d[CTL_OFF] == 1 {
                out.to_controller(i, seq + 1);
            }
            out.set(i, v);
        }
    }
}

fn encode(ask: &Ask, len: usize, seq: u32, ctl: bool) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(7).wrapping_add(seq) as u8)
        .collect();
    match ask {
        Ask::Drop => f[0] = 0,
        Ask::Port(p) => {
            f[0] = 1;
            f[1..3].copy_from_slice(&p.to_le_bytes());
        }
        Ask::Flood => f[0] = 2,
        Ask::Set(ps) | Ask::Hairpin(ps) => {
            f[0] = if matches!(ask, Ask::Set(_)) { 3 } else { 5 };
            f[1] = ps.len() as u8;
            for (j, p) in ps.iter().enumerate() {
                f[2 + 2 * j..4 + 2 * j].copy_from_slice(&p.to_le_bytes());
            }
        }
        Ask::Controller => f[0] = 4,
        Ask::Invalid => f[0] = 9,
        Ask::BadSlot(_) => {}
    }
    f[CTL_OFF] = u8::from(ctl);
    f[SEQ_OFF..SEQ_OFF + 4].copy_from_slice(&seq.to_le_bytes());
    f
}

/// A destination named by a verdict: attached numbers, unattached ones,
/// 0, the top number, and numbers past the table.
fn target() -> impl Strategy<Value = u16> {
    prop_oneof![
        8 => 0u16..=9,
        1 => Just(4095u16),
        1 => Just(MAX_PORTS as u16),
        1 => Just(5000u16),
        1 => Just(u16::MAX),
    ]
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        2 => Just(Ask::Drop),
        1 => Just(Ask::Invalid),
        8 => target().prop_map(Ask::Port),
        3 => Just(Ask::Flood),
        4 => prop::collection::vec(target(), 0..=6).prop_map(Ask::Set),
        2 => prop::collection::vec(target(), 0..=6).prop_map(Ask::Hairpin),
        1 => Just(Ask::Controller),
        1 => (0u8..3).prop_map(Ask::BadSlot),
    ]
}

/// A ring start index: zero, anywhere, or just before the u32 wrap.
fn start() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), any::<u32>(), (u32::MAX - 40)..=u32::MAX]
}

#[derive(Clone, Debug)]
struct PortSpec {
    ring_exp: u32,
    buf_size: u32,
    /// Slots already waiting for the consumer, as a share of the ring (0..=100 %).
    fill_pct: u32,
    start: u32,
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    (
        1u32..=5,
        prop::sample::select(vec![64u32, 128, 256, 2048]),
        0u32..=100,
        start(),
    )
        .prop_map(|(ring_exp, buf_size, fill_pct, start)| PortSpec {
            ring_exp,
            buf_size,
            fill_pct,
            start,
        })
}

#[derive(Clone, Debug)]
struct Case {
    ports: Vec<(u16, PortSpec)>,
    input: usize,
    input_start: u32,
    /// (what, length, with a controller copy)
    packets: Vec<(Ask, usize, bool)>,
    batch: usize,
    packet_in_cap: usize,
}

fn case() -> impl Strategy<Value = Case> {
    let ids = prop::collection::btree_set(prop_oneof![8 => 1u16..=8, 1 => Just(4095u16)], 1..=6);
    (
        ids,
        prop::collection::vec(port_spec(), 6),
        any::<prop::sample::Index>(),
        start(),
        prop::collection::vec(
            (ask(), MIN_LEN..=300usize, prop::bool::weighted(0.15)),
            0..=100,
        ),
        1usize..=80,
        0usize..=8,
    )
        .prop_map(
            |(ids, specs, input, input_start, packets, batch, packet_in_cap)| {
                let ports: Vec<(u16, PortSpec)> = ids.into_iter().zip(specs).collect();
                let input = input.index(ports.len());
                Case {
                    ports,
                    input,
                    input_start,
                    packets,
                    batch,
                    packet_in_cap,
                }
            },
        )
}

/// What the model expects.
#[derive(Default, Debug)]
struct Expect {
    /// Per destination: the packet indices it receives, in order.
    delivered: BTreeMap<u16, Vec<usize>>,
    dest_full: BTreeMap<u16, u64>,
    oversize: BTreeMap<u16, u64>,
    no_dest: u64,
    module: u64,
    bad_frame: u64,
    /// (packet, tag) in the order queued.
    controller: Vec<(usize, u32)>,
    controller_full: u64,
}

/// The sequential model: packets in input order; a destination takes a
/// packet if it fits its buffers and its ring has room; the input receives
/// only from hairpin sets; a verdict naming no attached port (other than
/// the input, but for a hairpin set) is one no_dest drop. A packet goes to
/// the controller once per copy, or once with tag 0 for a controller
/// verdict without one.
fn model(c: &Case, lens: &[usize], room: &BTreeMap<u16, u32>) -> Expect {
    let input = c.ports[c.input].0;
    let bufs: BTreeMap<u16, u32> = c
        .ports
        .iter()
        .map(|(p, s)| (*p, if *p == input { INPUT_BUF } else { s.buf_size }))
        .collect();
    let mut room = room.clone();
    let mut e = Expect::default();
    let mut deliver = |e: &mut Expect, p: u16, i: usize| {
        if lens[i] > bufs[&p] as usize {
            *e.oversize.entry(p).or_default() += 1;
        } else if room[&p] > 0 {
            *room.get_mut(&p).unwrap() -= 1;
            e.delivered.entry(p).or_default().push(i);
        } else {
            *e.dest_full.entry(p).or_default() += 1;
        }
    };
    let valid = |p: u16| p != input && bufs.contains_key(&p);
    for (i, (ask, _, ctl)) in c.packets.iter().enumerate() {
        let up = |e: &mut Expect, tag: u32| {
            if e.controller.len() < c.packet_in_cap {
                e.controller.push((i, tag));
            } else {
                e.controller_full += 1;
            }
        };
        let copied = *ctl && !matches!(ask, Ask::BadSlot(_));
        if copied {
            up(&mut e, i as u32 + 1);
        }
        match ask {
            Ask::Drop => e.module += 1,
            Ask::Invalid | Ask::BadSlot(_) => e.bad_frame += 1,
            Ask::Port(p) if valid(*p) => deliver(&mut e, *p, i),
            Ask::Port(_) => e.no_dest += 1,
            Ask::Flood => {
                for &p in bufs.keys().filter(|&&p| p != input) {
                    deliver(&mut e, p, i);
                }
            }
            Ask::Set(ps) => {
                let dsts: BTreeSet<u16> = ps.iter().copied().filter(|&p| valid(p)).collect();
                if dsts.is_empty() {
                    e.no_dest += 1;
                }
                for p in dsts {
                    deliver(&mut e, p, i);
                }
            }
            Ask::Hairpin(ps) => {
                let dsts: BTreeSet<u16> = ps
                    .iter()
                    .copied()
                    .filter(|p| bufs.contains_key(p))
                    .collect();
                if dsts.is_empty() {
                    e.no_dest += 1;
                }
                for p in dsts {
                    deliver(&mut e, p, i);
                }
            }
            Ask::Controller if !copied => up(&mut e, 0),
            Ask::Controller => {}
        }
    }
    e
}

fn run(c: &Case) -> Result<(), TestCaseError> {
    let input = c.ports[c.input].0;
    let mut table = Table::new(Arc::new(ByteModule));
    let mut ports: BTreeMap<u16, Arc<MemPort>> = BTreeMap::new();
    let mut room = BTreeMap::new();
    let mut out_start = BTreeMap::new();
    for (id, spec) in &c.ports {
        let ring = 1u32 << spec.ring_exp;
        let mcfg = if *id == input {
            MemConfig::new(128, INPUT_BUF)
        } else {
            MemConfig::new(ring, spec.buf_size)
        };
        let (port, _client) = MemPort::new(&format!("p{id}"), mcfg).unwrap();
        let out = port.mem().outgoing();
        let size = out.size();
        // The consumer has `fill` unread slots starting at `start`.
        let fill = if *id == input {
            0
        } else {
            size * spec.fill_pct / 100
        };
        out.release(spec.start);
        out.publish(spec.start.wrapping_add(fill));
        room.insert(*id, size - fill);
        out_start.insert(*id, spec.start.wrapping_add(fill));
        ports.insert(*id, port);
    }
    // The input's client writes every packet (bad slots included) from `input_start`.
    let inp = ports[&input].clone();
    let mem = inp.mem();
    let ring = mem.incoming();
    ring.release(c.input_start);
    ring.publish(c.input_start);
    for (id, port) in &ports {
        table.insert(Arc::new(PortEntry::new(
            PortId(*id),
            port.clone() as Arc<dyn Port>,
            &[0],
            1,
        )));
    }
    let mut lens = Vec::new();
    let mut frames = Vec::new();
    for (i, (ask, len, ctl)) in c.packets.iter().enumerate() {
        let at = c.input_start.wrapping_add(i as u32);
        let s = ring.slot(at);
        let f = encode(ask, *len, i as u32, *ctl);
        prop_assert!(mem.write_buf(s.buf, &f));
        let slot = match ask {
            Ask::BadSlot(0) => Slot {
                buf: s.buf,
                len: 0,
                flags: 0,
            },
            Ask::BadSlot(1) => Slot {
                buf: mem.nbufs() + i as u32,
                len: *len as u16,
                flags: 0,
            },
            Ask::BadSlot(_) => Slot {
                buf: s.buf,
                len: INPUT_BUF as u16 + 1,
                flags: 0,
            },
            _ => Slot {
                buf: s.buf,
                len: *len as u16,
                flags: 0,
            },
        };
        ring.write_slot(at, slot);
        lens.push(*len);
        frames.push(f);
    }
    ring.publish(c.input_start.wrapping_add(c.packets.len() as u32));
    let input_out_head = inp
        .mem()
        .outgoing()
        .hdr
        .head
        .load(std::sync::atomic::Ordering::Acquire);

    let e = model(c, &lens, &room);

    let packet_in = PacketIns::new(c.packet_in_cap).unwrap();
    let mut fwd = Forwarder::new(c.batch, 0);
    let entry = table.entry(PortId(input)).unwrap().clone();
    let mut consumed = 0;
    for _ in 0..=c.packets.len() {
        let n = fwd.forward(&table, &entry, 0, 0, &packet_in);
        prop_assert!(n <= c.batch);
        if n == 0 {
            break;
        }
        consumed += n;
    }
    prop_assert_eq!(consumed, c.packets.len());
    prop_assert_eq!(fwd.forward(&table, &entry, 0, 0, &packet_in), 0);
    prop_assert_eq!(
        ring.hdr.tail.load(std::sync::atomic::Ordering::Acquire),
        c.input_start.wrapping_add(consumed as u32)
    );

    // (a) each destination got exactly its packets, in input order, intact;
    // (d) the input got only its hairpin packets.
    let totals = |id: u16| PortTotals::sum(&table.entry(PortId(id)).unwrap().counters);
    for (&id, port) in &ports {
        let out = port.mem().outgoing();
        let from = out_start[&id];
        let head = out.hdr.head.load(std::sync::atomic::Ordering::Acquire);
        let got: Vec<Vec<u8>> = (0..head.wrapping_sub(from))
            .map(|k| {
                let s = out.slot(from.wrapping_add(k));
                port.mem().buf(s.buf, usize::from(s.len)).unwrap().to_vec()
            })
            .collect();
        let want: Vec<Vec<u8>> = e
            .delivered
            .get(&id)
            .map(|v| v.iter().map(|&i| frames[i].clone()).collect())
            .unwrap_or_default();
        if id == input {
            prop_assert_eq!(from, input_out_head);
        }
        prop_assert_eq!(got.len(), want.len(), "packets delivered to port {}", id);
        prop_assert!(got == want, "port {} got the wrong packets or order", id);
        // (b) destination drops are exact.
        let t = totals(id);
        prop_assert_eq!(t.tx_packets, want.len() as u64, "tx on port {}", id);
        prop_assert_eq!(t.tx_bytes, want.iter().map(|f| f.len() as u64).sum::<u64>());
        prop_assert_eq!(
            t.drops.oversize,
            e.oversize.get(&id).copied().unwrap_or(0),
            "oversize on port {}",
            id
        );
        let full = e.dest_full.get(&id).copied().unwrap_or(0)
            + if id == input { e.controller_full } else { 0 };
        prop_assert_eq!(t.drops.dest_full, full, "dest_full on port {}", id);
        if id != input {
            prop_assert_eq!(t.rx_packets, 0);
            prop_assert_eq!(t.drops.no_dest + t.drops.module + t.drops.bad_frame, 0);
        }
    }
    // (c) drops charged to the input are exact.
    let t = totals(input);
    prop_assert_eq!(t.rx_packets, c.packets.len() as u64);
    let good_bytes: u64 = c
        .packets
        .iter()
        .filter(|(a, _, _)| !matches!(a, Ask::BadSlot(_)))
        .map(|(_, l, _)| *l as u64)
        .sum();
    prop_assert_eq!(t.rx_bytes, good_bytes);
    prop_assert_eq!(t.drops.no_dest, e.no_dest, "no_dest");
    prop_assert_eq!(t.drops.module, e.module, "module drops");
    prop_assert_eq!(t.drops.bad_frame, e.bad_frame, "bad frames");
    prop_assert_eq!(t.drops.oversize, 0);
    // The controller got its packets in order.
    let mut pins = Vec::new();
    while let Some(p) = packet_in.pop() {
        prop_assert_eq!(p.in_port, PortId(input));
        pins.push((p.tag, p.data));
    }
    let want: Vec<(u32, Vec<u8>)> = e
        .controller
        .iter()
        .map(|&(i, tag)| (tag, frames[i].clone()))
        .collect();
    prop_assert!(pins == want, "packets to the controller");
    Ok(())
}

proptest! {
    // 1000 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn forwarding_matches_the_sequential_model(c in case()) {
        run(&c)?;
    }
}

/// A few cases spelled out, so the properties' corners are covered on every run.
#[test]
fn fixed_cases() {
    let spec = |ring_exp, buf_size, fill_pct| PortSpec {
        ring_exp,
        buf_size,
        fill_pct,
        start: u32::MAX - 3,
    };
    let cases = [
        // A set naming two unattached ports, the input, 0 and a number past the table: one no_dest.
        Case {
            ports: vec![(1, spec(3, 2048, 0)), (2, spec(3, 2048, 0))],
            input: 0,
            input_start: 0,
            packets: vec![
                (Ask::Set(vec![5, 6, 1, 0, 5000]), 60, false),
                (Ask::Set(vec![2, 5]), 60, false),
                (Ask::Port(7), 60, false),
            ],
            batch: 16,
            packet_in_cap: 0,
        },
        // Floods into a nearly full ring and a small-buffer ring, across batches.
        Case {
            ports: vec![
                (1, spec(2, 2048, 50)),
                (2, spec(5, 128, 0)),
                (3, spec(4, 2048, 0)),
            ],
            input: 2,
            input_start: u32::MAX - 5,
            packets: (0..40)
                .map(|i| {
                    (
                        if i % 3 == 0 { Ask::Flood } else { Ask::Port(1) },
                        60 + i * 4,
                        false,
                    )
                })
                .collect(),
            batch: 7,
            packet_in_cap: 0,
        },
        // Many links per packet force mid-batch flushes.
        Case {
            ports: (1..=6).map(|p| (p, spec(5, 2048, 0))).collect(),
            input: 0,
            input_start: 7,
            packets: (0..30)
                .map(|_| (Ask::Set(vec![2, 3, 4, 5, 6, 3]), 100, false))
                .collect(),
            batch: 8,
            packet_in_cap: 2,
        },
        // Hairpin sets next to floods (which must still skip the input),
        // controller copies with and without a controller verdict, and a
        // queue that fills up.
        Case {
            ports: vec![(1, spec(3, 2048, 0)), (2, spec(3, 2048, 0))],
            input: 0,
            input_start: 0,
            packets: vec![
                (Ask::Hairpin(vec![1]), 60, false),
                (Ask::Flood, 60, true),
                (Ask::Hairpin(vec![1, 2, 1]), 60, false),
                (Ask::Controller, 60, true),
                (Ask::Controller, 60, false),
                (Ask::Set(vec![1]), 60, true),
                (Ask::Hairpin(vec![7]), 60, false),
            ],
            batch: 16,
            packet_in_cap: 3,
        },
    ];
    for c in &cases {
        run(c).unwrap_or_else(|e| panic!("{e}\n{c:?}"));
    }
}
