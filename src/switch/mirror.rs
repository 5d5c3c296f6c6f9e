//! Port mirroring (SPAN, Open vSwitch's Mirror table): every frame received
//! on a selected source port, or sent to a selected destination port, is
//! also copied to the mirror's output port, whatever the module decided.
//! A copy the module rewrote for some port (a variant) is mirrored as that
//! port gets it, by the mirrors that select that port as a destination.
//!
//! A switch without mirrors pays one predictable branch per batch: the
//! forwarder picks its mirroring variant only when the published table
//! carries [`Mirrors`]. As in Open vSwitch, an output port is reserved for
//! its mirrors: nothing else is forwarded to it (the module's verdicts and
//! floods skip it), and what it receives is dropped.
//!
//! The core knows nothing of VLANs, so `select_vlan`/`output_vlan` are not
//! served here (vswitchd reports them unsupported).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::port::{MAX_PORTS, PortId};

/// A set of port numbers as a bitmap (512 bytes for 4096 ports).
#[derive(Clone)]
struct PortSet(Box<[u64; MAX_PORTS / 64]>);

impl PortSet {
    fn new(ports: &[PortId]) -> PortSet {
        let mut s = PortSet(Box::new([0; MAX_PORTS / 64]));
        for p in ports {
            s.0[p.index() / 64] |= 1 << (p.index() % 64);
        }
        s
    }

    #[inline]
    fn has(&self, p: PortId) -> bool {
        self.0[p.index() / 64] & (1 << (p.index() % 64)) != 0
    }
}

/// What one mirror has copied (Open vSwitch's `Mirror.statistics`
/// `tx_packets`/`tx_bytes`). Shared with control, which keeps it across
/// reconfigurations of the same mirror.
#[derive(Debug, Default)]
pub struct MirrorCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl MirrorCounters {
    pub fn read(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// One mirror as control describes it.
#[derive(Clone, Debug)]
pub struct MirrorSpec {
    /// Every frame the switch forwards (`select_all`).
    pub all: bool,
    /// Frames received on these ports (`select_src_port`).
    pub src: Vec<PortId>,
    /// Frames sent to these ports (`select_dst_port`).
    pub dst: Vec<PortId>,
    /// Where the copies go (`output_port`).
    pub out: PortId,
    pub counters: Arc<MirrorCounters>,
}

struct Compiled {
    all: bool,
    src: PortSet,
    dst: PortSet,
    dst_list: Vec<PortId>,
    out: PortId,
    counters: Arc<MirrorCounters>,
}

/// A switch's mirrors, compiled for the forwarders.
pub struct Mirrors {
    mirrors: Vec<Compiled>,
    reserved: PortSet,
}

impl Mirrors {
    /// `None` for an empty list: a switch without mirrors carries none.
    pub fn new(specs: &[MirrorSpec]) -> Option<Mirrors> {
        if specs.is_empty() {
            return None;
        }
        let outs: Vec<PortId> = specs.iter().map(|m| m.out).collect();
        Some(Mirrors {
            reserved: PortSet::new(&outs),
            mirrors: specs
                .iter()
                .map(|m| Compiled {
                    all: m.all,
                    src: PortSet::new(&m.src),
                    dst: PortSet::new(&m.dst),
                    dst_list: m.dst.clone(),
                    out: m.out,
                    counters: m.counters.clone(),
                })
                .collect(),
        })
    }

    /// Whether `p` is a mirror's output port (nothing else goes there).
    #[inline]
    pub fn reserved(&self, p: PortId) -> bool {
        self.reserved.has(p)
    }

    /// The output ports that want a frame received on `input` whose
    /// destinations are `dst` (a flood reaches every attached port but the
    /// input, `attached`), each counted with the frame's `len` bytes.
    /// Calls `to(out)` once per mirror that selects the frame. For a
    /// `variant` (another version of a frame already offered) only the
    /// mirrors that select by destination and did not take the frame itself
    /// count.
    pub fn select(
        &self,
        input: PortId,
        dst: Dests<'_>,
        attached: &[PortId],
        len: u32,
        variant: bool,
        mut to: impl FnMut(PortId),
    ) {
        for m in &self.mirrors {
            let took_frame = m.all || m.src.has(input);
            let hit = (took_frame && !variant)
                || !took_frame
                    && match dst {
                        Dests::None => false,
                        Dests::Ports(ps) => ps.iter().any(|p| *p != input && m.dst.has(*p)),
                        Dests::Flood => m
                            .dst_list
                            .iter()
                            .any(|p| *p != input && !self.reserved(*p) && attached.contains(p)),
                    };
            if hit {
                m.counters.packets.fetch_add(1, Ordering::Relaxed);
                m.counters
                    .bytes
                    .fetch_add(u64::from(len), Ordering::Relaxed);
                to(m.out);
            }
        }
    }
}

/// Where the module sent a frame, as mirrors look at it.
#[derive(Clone, Copy)]
pub enum Dests<'a> {
    None,
    Ports(&'a [PortId]),
    Flood,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u16) -> PortId {
        PortId(n)
    }

    #[test]
    fn mirrors_select_by_source_destination_or_all_and_count() {
        let c0 = Arc::new(MirrorCounters::default());
        let c1 = Arc::new(MirrorCounters::default());
        assert!(Mirrors::new(&[]).is_none());
        let m = Mirrors::new(&[
            MirrorSpec {
                all: false,
                src: vec![p(1)],
                dst: vec![p(2)],
                out: p(9),
                counters: c0.clone(),
            },
            MirrorSpec {
                all: true,
                src: vec![],
                dst: vec![],
                out: p(4095),
                counters: c1.clone(),
            },
        ])
        .unwrap();
        assert!(m.reserved(p(9)) && m.reserved(p(4095)) && !m.reserved(p(1)));
        let attached = [p(1), p(2), p(3), p(9), p(4095)];
        let (to1, to2) = ([p(1)], [p(2)]);
        let outs = |input, d| {
            let mut v = Vec::new();
            m.select(p(input), d, &attached, 100, false, |o| v.push(o.0));
            v
        };
        assert_eq!(outs(1, Dests::None), vec![9, 4095], "received on 1");
        assert_eq!(outs(3, Dests::Ports(&to2)), vec![9, 4095], "sent to 2");
        assert_eq!(outs(3, Dests::Ports(&to1)), vec![4095]);
        assert_eq!(outs(3, Dests::Flood), vec![9, 4095], "a flood reaches 2");
        assert_eq!(outs(2, Dests::Flood), vec![4095], "not back to its input");
        assert_eq!(c0.read(), (3, 300));
        assert_eq!(c1.read(), (5, 500));
        // A rewritten copy sent to 2: only mirror 0 (selecting by
        // destination, not by the input) wants it; from 1 mirror 0 took
        // the frame itself already.
        let mut v = Vec::new();
        m.select(p(3), Dests::Ports(&to2), &attached, 50, true, |o| {
            v.push(o.0)
        });
        m.select(p(1), Dests::Ports(&to2), &attached, 50, true, |o| {
            v.push(o.0)
        });
        assert_eq!(v, vec![9]);
    }
}
