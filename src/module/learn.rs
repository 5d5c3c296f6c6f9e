//! `learn`: a learning bridge.
//!
//! Learns each source MAC on its input port, forwards known unicast to the
//! learned port, floods unknown unicast, broadcast and multicast, drops frames
//! whose destination sits on the input port, and ages entries out.
//!
//! The MAC table is [`MacTable`] (shared with the flow module's NORMAL
//! action), every entry in VLAN 0: fixed memory, lock-free lookups, a mutex
//! only for a MAC not yet seen on that port. A MAC flood from one port
//! cannot take over the table: a port may hold at most `port_max` entries,
//! and when a bucket or the table is full a newcomer may only evict an
//! entry of a port that holds more entries than its own.
//!
//! Spec: `learn[:max=N,port_max=N,aging=SECS]` (defaults 8192, max/2, 300).

use std::sync::Arc;

use super::mactable::{self, MacLimits, MacTable, is_group, mac_at};
use super::{Module, ModuleError, ModuleInfo, Nanos, Verdict, Verdicts, parse_args};
use crate::packet::Batch;
use crate::port::PortId;

pub const INFO: ModuleInfo = ModuleInfo {
    name: "learn",
    help: "learning bridge; learn:max=8192,port_max=4096,aging=300",
    build: |args| Ok(Arc::new(Learn::new(LearnConfig::parse(args)?))),
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnConfig {
    /// Most MACs learned at once.
    pub max_entries: usize,
    /// Most MACs learned on one port.
    pub port_max: usize,
    /// Seconds an entry lives without traffic from its MAC.
    pub aging_secs: u32,
}

impl Default for LearnConfig {
    fn default() -> Self {
        let d = MacLimits::default();
        LearnConfig {
            max_entries: d.max_entries,
            port_max: d.port_max,
            aging_secs: d.aging_secs,
        }
    }
}

impl LearnConfig {
    pub fn parse(args: &str) -> Result<LearnConfig, ModuleError> {
        let mut c = LearnConfig::default();
        let mut port_max = None;
        for (k, v) in parse_args("learn", args)? {
            match k.as_str() {
                "max" | "port_max" | "aging" => {}
                _ => {
                    return Err(ModuleError::BadArgs {
                        module: "learn",
                        msg: format!("unknown option '{k}' (max, port_max, aging)"),
                    });
                }
            }
            let n = parse_limit("learn", &k, &v)?;
            match k.as_str() {
                "max" => c.max_entries = n as usize,
                "port_max" => port_max = Some(n as usize),
                _ => c.aging_secs = n as u32,
            }
        }
        c.port_max = port_max
            .unwrap_or(c.max_entries.div_ceil(2))
            .min(c.max_entries);
        Ok(c)
    }

    fn limits(&self) -> MacLimits {
        MacLimits {
            max_entries: self.max_entries,
            port_max: self.port_max,
            aging_secs: self.aging_secs,
        }
    }
}

/// Checks one MAC table bound of a module spec (`max`, `port_max` or
/// `aging`, under whatever name the module gives it) and returns it.
pub(crate) fn parse_limit(module: &'static str, k: &str, v: &str) -> Result<u64, ModuleError> {
    let bad = |msg: String| ModuleError::BadArgs { module, msg };
    let n: u64 = v
        .parse()
        .map_err(|_| bad(format!("{k}: '{v}' is not a number")))?;
    let ok = if k.ends_with("port_max") {
        n >= 1
    } else if k.ends_with("max") {
        (1..=1 << 24).contains(&n)
    } else {
        (1..=1_000_000).contains(&n)
    };
    if ok {
        Ok(n)
    } else {
        Err(bad(format!("{k}={v} is out of range")))
    }
}

pub struct Learn {
    cfg: LearnConfig,
    table: MacTable,
}

impl Learn {
    pub fn new(cfg: LearnConfig) -> Learn {
        Learn {
            cfg,
            table: MacTable::new(cfg.limits()),
        }
    }

    pub fn config(&self) -> LearnConfig {
        self.cfg
    }

    /// The port `mac` was learned on, if its entry is live.
    pub fn lookup(&self, mac: u64, now: Nanos) -> Option<PortId> {
        self.table.lookup(0, mac, now)
    }

    /// Number of live entries as far as the bookkeeping knows (expired entries
    /// count until the next `tick` or until reused).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Entries learned on `port`.
    pub fn port_entries(&self, port: PortId) -> u32 {
        self.table.port_entries(port)
    }
}

impl Module for Learn {
    fn name(&self) -> &'static str {
        "learn"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, now: Nanos) {
        let in_port = batch.in_port();
        let now_s = MacTable::secs(now);
        // Consecutive packets of a batch mostly share addresses: remember the
        // last source learned and the last destination decided.
        let (mut last_src, mut last_dst, mut last_v) = (u64::MAX, u64::MAX, Verdict::Drop);
        for i in 0..batch.len() {
            let d = batch.data(i);
            if d.len() < 14 {
                out.set(i, Verdict::Invalid);
                continue;
            }
            let (dst, src) = (mac_at(&d[0..6]), mac_at(&d[6..12]));
            if src != last_src {
                if is_group(src) {
                    // A group address is never a valid source.
                    out.set(i, Verdict::Invalid);
                    continue;
                }
                self.table.learn(mactable::key(0, src), in_port, now_s);
                last_src = src;
            }
            if dst != last_dst {
                last_v = if is_group(dst) {
                    Verdict::Flood
                } else {
                    match self.table.lookup_secs(mactable::key(0, dst), now_s) {
                        Some(p) if p == in_port => Verdict::Drop,
                        Some(p) => Verdict::Port(p),
                        None => Verdict::Flood,
                    }
                };
                last_dst = dst;
            }
            out.set(i, last_v);
        }
    }

    fn port_detached(&self, port: PortId) {
        self.table.forget_port(port);
    }

    fn tick(&self, now: Nanos) {
        self.table.expire(now);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.table.counters().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;

    const SEC: Nanos = 1_000_000_000;

    fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f
    }

    fn run(m: &Learn, in_port: u16, frames: Vec<Vec<u8>>, now: Nanos) -> Vec<Verdict> {
        let mut frames = frames;
        let mut refs = Vec::new();
        let n = frames.len();
        let mut b = Batch::from_buffers(&mut frames, &mut refs, PortId(in_port));
        let mut out = Verdicts::default();
        out.reset(n);
        m.process(&mut b, &mut out, now);
        out.as_slice().to_vec()
    }

    fn mac(n: u32) -> MacAddr {
        MacAddr::local(n)
    }

    #[test]
    fn floods_unknown_then_forwards_learned() {
        let m = Learn::new(LearnConfig::default());
        assert_eq!(run(&m, 1, vec![frame(mac(2), mac(1))], 0), [Verdict::Flood]);
        assert_eq!(
            run(&m, 2, vec![frame(mac(1), mac(2))], 0),
            [Verdict::Port(PortId(1))]
        );
        assert_eq!(
            run(&m, 1, vec![frame(mac(2), mac(1))], 0),
            [Verdict::Port(PortId(2))]
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn broadcast_and_multicast_flood() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 2, vec![frame(mac(1), mac(2))], 0);
        let v = run(
            &m,
            1,
            vec![
                frame(MacAddr::BROADCAST, mac(1)),
                frame(MacAddr([1, 0, 0x5e, 0, 0, 9]), mac(1)),
            ],
            0,
        );
        assert_eq!(v, [Verdict::Flood, Verdict::Flood]);
    }

    #[test]
    fn bad_frames_and_group_sources_are_invalid() {
        let m = Learn::new(LearnConfig::default());
        let v = run(
            &m,
            1,
            vec![vec![0u8; 13], frame(mac(2), MacAddr::BROADCAST)],
            0,
        );
        assert_eq!(v, [Verdict::Invalid, Verdict::Invalid]);
        assert!(m.is_empty());
    }

    #[test]
    fn destination_on_input_port_is_dropped() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 1, vec![frame(mac(9), mac(2))], 0);
        assert_eq!(run(&m, 1, vec![frame(mac(2), mac(3))], 0), [Verdict::Drop]);
    }

    #[test]
    fn entries_age_out() {
        let m = Learn::new(LearnConfig {
            aging_secs: 10,
            ..LearnConfig::default()
        });
        run(&m, 2, vec![frame(mac(1), mac(2))], 0);
        assert_eq!(m.lookup(mac(2).to_u64(), 9 * SEC), Some(PortId(2)));
        assert_eq!(m.lookup(mac(2).to_u64(), 10 * SEC), None);
        assert_eq!(
            run(&m, 1, vec![frame(mac(2), mac(1))], 10 * SEC),
            [Verdict::Flood]
        );
        // Traffic refreshes an entry.
        run(&m, 1, vec![frame(mac(5), mac(1))], 15 * SEC);
        assert_eq!(m.lookup(mac(1).to_u64(), 24 * SEC), Some(PortId(1)));
        m.tick(30 * SEC);
        assert_eq!(m.len(), 0);
        assert_eq!(m.counters().iter().find(|c| c.0 == "aged").unwrap().1, 2);
    }

    #[test]
    fn a_host_that_moves_is_followed() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 1, vec![frame(mac(9), mac(7))], 0);
        assert_eq!(m.lookup(mac(7).to_u64(), 0), Some(PortId(1)));
        run(&m, 3, vec![frame(mac(9), mac(7))], SEC);
        assert_eq!(m.lookup(mac(7).to_u64(), SEC), Some(PortId(3)));
        assert_eq!(
            (m.port_entries(PortId(1)), m.port_entries(PortId(3))),
            (0, 1)
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_mac_flood_is_bounded_and_evicts_nobody_else() {
        let m = Learn::new(LearnConfig {
            max_entries: 256,
            port_max: 128,
            aging_secs: 300,
        });
        // Ten quiet hosts on ports 2..=11.
        for p in 2..12u16 {
            run(&m, p, vec![frame(MacAddr::BROADCAST, mac(u32::from(p)))], 0);
        }
        // Port 1 sends from 100,000 different source MACs.
        for chunk in 0..100u32 {
            let frames = (0..1000)
                .map(|i| frame(mac(2), mac(1_000_000 + chunk * 1000 + i)))
                .collect();
            run(&m, 1, frames, SEC);
        }
        assert!(m.port_entries(PortId(1)) <= 128);
        assert!(m.len() <= 256);
        for p in 2..12u16 {
            assert_eq!(
                m.lookup(mac(u32::from(p)).to_u64(), SEC),
                Some(PortId(p)),
                "host on port {p} survives"
            );
        }
        assert!(m.counters().iter().any(|&(k, v)| k == "refused" && v > 0));
    }

    #[test]
    fn detaching_a_port_forgets_its_macs() {
        let m = Learn::new(LearnConfig::default());
        run(&m, 1, vec![frame(mac(9), mac(1))], 0);
        run(&m, 2, vec![frame(mac(9), mac(2))], 0);
        m.port_detached(PortId(1));
        assert_eq!(m.lookup(mac(1).to_u64(), 0), None);
        assert_eq!(m.lookup(mac(2).to_u64(), 0), Some(PortId(2)));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn config_parsing() {
        assert_eq!(LearnConfig::parse("").unwrap(), LearnConfig::default());
        let c = LearnConfig::parse("max=100,aging=5").unwrap();
        assert_eq!((c.max_entries, c.port_max, c.aging_secs), (100, 50, 5));
        for bad in ["max=0", "aging=0", "size=3", "max=x", "max"] {
            assert!(LearnConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
