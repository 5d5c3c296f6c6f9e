//! `demux`: the L4 3-tuple filter that lets user-space network stacks share
//! an interface with the host's kernel stack.
//!
//! Roles: the *host* port is the kernel stack's side (a TAP, or the kernel
//! end of a veth), the optional *wire* port the NIC; every other port is an
//! application (a vport with a user-space stack, usually).
//!
//! - From the host or the wire, a TCP or UDP packet goes to the port that
//!   bound its (protocol, destination IP, destination port), or to a port
//!   that bound the protocol and port on any address (`*`); an exact tuple
//!   wins over a wildcard. Everything else is *unclaimed* and goes to the
//!   other uplink: wire to host, host to wire (dropped if there is no wire
//!   port). Unclaimed are also: ARP (unless `arp=all`), ICMP, ICMPv6
//!   (neighbour discovery included), IPv4 fragments (offset != 0 or MF set:
//!   only the first carries the ports, so none is delivered to an
//!   application), IPv6 packets with extension headers before TCP/UDP,
//!   VLAN-tagged frames, and anything not IP.
//! - With `arp=all`, an ARP request from the wire or the host for an address
//!   some application holds a tuple on goes to those applications too.
//! - From an application, every frame goes to the wire (or to the host
//!   when there is no wire port): applications never see each other's
//!   packets, and cannot reach one another through the switch.
//! - An application cannot send as another: a TCP or UDP frame from it
//!   whose source (protocol, address, port) another port holds (exactly,
//!   or the port on every address), or whose protocol and source port the
//!   host reserved, is dropped and counted (`demux_spoofed`). With
//!   `src=strict` an application sends TCP and UDP only from tuples it
//!   holds itself (the replies to anything else would not reach it
//!   anyway); its other frames (ARP, ICMP) pass either way.
//!
//! Tuples are bound with `mswitch ctl demux SWITCH bind PORT TUPLE` or by
//! the application itself over its vport connection
//! ([`crate::control::client::VportConn::bind`]); they go away with the
//! connection or the port. A tuple another port holds, one that overlaps
//! another port's wildcard, or one the host reserved is refused.
//!
//! Lookups are one hash probe (two for a miss when wildcards exist), and
//! consecutive packets of a batch with the same tuple reuse the first's
//! verdict. Swapping the module (`ctl module`) starts with an empty table.
//!
//! Spec: `demux[:host=N,wire=N,arp=host|all,reserve=tcp:22/udp:53,src=check|strict,tuples=N]`:
//! ports by number (host defaults to port 1, no wire port by default);
//! `tuples=N` is the bench preset: port 2 binds `udp:10.0.1.1:1024` (the
//! bench's traffic) and N-1 other tuples.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::demux_table::{ANY, MAX_TUPLES, TCP, Table, UDP, v4};
pub use super::demux_table::{BindError, Reserved, Tuple};
use super::{Module, ModuleError, ModuleInfo, Nanos, Verdict, Verdicts, parse_args};
use crate::packet::Batch;
use crate::port::PortId;
use crate::wire::ip::Layers;

pub const INFO: ModuleInfo = ModuleInfo {
    name: "demux",
    help: "L4 3-tuple filter for user-space stacks; demux:host=1,wire=N,arp=host|all,reserve=tcp:22/udp:53,src=check|strict",
    build: |args| Ok(Arc::new(Demux::new(DemuxConfig::parse(args)?)?)),
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemuxConfig {
    pub host: PortId,
    pub wire: Option<PortId>,
    /// ARP requests also to the applications on their target address.
    pub arp_all: bool,
    pub reserved: Vec<Reserved>,
    /// Applications send TCP and UDP only from tuples they hold.
    pub strict_src: bool,
    /// Bench preset: tuples bound on port 2 at start.
    pub preset_tuples: usize,
}

impl Default for DemuxConfig {
    fn default() -> Self {
        DemuxConfig {
            host: PortId(1),
            wire: None,
            arp_all: false,
            reserved: Vec::new(),
            strict_src: false,
            preset_tuples: 0,
        }
    }
}

impl DemuxConfig {
    pub fn parse(args: &str) -> Result<DemuxConfig, ModuleError> {
        let bad = |msg: String| ModuleError::BadArgs {
            module: "demux",
            msg,
        };
        let port = |k: &str, v: &str| {
            v.parse::<u32>()
                .ok()
                .and_then(PortId::new)
                .ok_or_else(|| bad(format!("{k}: '{v}' is not a port number (1..=4095)")))
        };
        let mut c = DemuxConfig::default();
        for (k, v) in parse_args("demux", args)? {
            match k.as_str() {
                "host" => c.host = port(&k, &v)?,
                "wire" => c.wire = Some(port(&k, &v)?),
                "arp" => {
                    c.arp_all = match v.as_str() {
                        "all" => true,
                        "host" => false,
                        _ => return Err(bad(format!("arp: '{v}' is not all or host"))),
                    }
                }
                "src" => {
                    c.strict_src = match v.as_str() {
                        "strict" => true,
                        "check" => false,
                        _ => return Err(bad(format!("src: '{v}' is not check or strict"))),
                    }
                }
                "reserve" => {
                    for r in v.split('/').filter(|s| !s.is_empty()) {
                        c.reserved.push(r.parse().map_err(bad)?);
                    }
                }
                "tuples" => {
                    c.preset_tuples = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_TUPLES.min(60_000)).contains(n))
                        .ok_or_else(|| bad(format!("tuples: '{v}' is not 1..=60000")))?;
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option '{k}' (host, wire, arp, reserve, src, tuples)"
                    )));
                }
            }
        }
        if c.wire == Some(c.host) {
            return Err(bad("host and wire must be different ports".into()));
        }
        Ok(c)
    }
}

/// Per-batch counters, added once per batch.
#[derive(Default)]
struct Counts {
    delivered: u64,
    unclaimed: u64,
}

pub struct Demux {
    cfg: DemuxConfig,
    table: RwLock<Table>,
    delivered: AtomicU64,
    unclaimed: AtomicU64,
    from_apps: AtomicU64,
    refused: AtomicU64,
    spoofed: AtomicU64,
}

/// The L3/L4 facts a verdict depends on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    /// To the other uplink.
    Unclaimed,
    /// An ARP request for this address (`arp=all` only).
    Arp(u128),
    L4(Tuple),
}

/// No signature: not a plain IPv4 frame.
const NO_SIG: u64 = u64::MAX;

/// The bytes a verdict depends on for an unfragmented IPv4 frame with a
/// 20-byte header: protocol, destination port and destination address
/// (56 bits, so never [`NO_SIG`]); `NO_SIG` for anything else.
#[inline]
fn sig4(d: &[u8]) -> u64 {
    if d.len() < 38 || d[12] != 8 || d[13] != 0 || d[14] != 0x45 || d[20] & 0x3f != 0 || d[21] != 0
    {
        return NO_SIG;
    }
    u64::from(d[23]) << 48
        | u64::from(u16::from_be_bytes([d[36], d[37]])) << 32
        | u64::from(u32::from_be_bytes([d[30], d[31], d[32], d[33]]))
}

impl Demux {
    pub fn new(cfg: DemuxConfig) -> Result<Demux, ModuleError> {
        let d = Demux {
            table: RwLock::new(Table::default()),
            delivered: AtomicU64::new(0),
            unclaimed: AtomicU64::new(0),
            from_apps: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            spoofed: AtomicU64::new(0),
            cfg,
        };
        if d.cfg.preset_tuples > 0 {
            let app = PortId(2);
            let bad = |e: BindError| ModuleError::BadArgs {
                module: "demux",
                msg: format!("tuples: {e}"),
            };
            let hit = Tuple {
                ip: v4([10, 0, 1, 1]),
                port: 1024,
                proto: UDP,
            };
            d.bind(hit, app).map_err(bad)?;
            for k in 1..d.cfg.preset_tuples {
                // Other addresses and ports, so the table really holds N.
                let t = Tuple {
                    ip: v4([10, 1, (k >> 8) as u8, k as u8]),
                    port: 2000 + (k % 1000) as u16,
                    proto: if k % 2 == 0 { UDP } else { TCP },
                };
                d.bind(t, app).map_err(bad)?;
            }
        }
        Ok(d)
    }

    pub fn config(&self) -> &DemuxConfig {
        &self.cfg
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    fn is_uplink(&self, p: PortId) -> bool {
        p == self.cfg.host || Some(p) == self.cfg.wire
    }

    /// Binds `t` for `port` (refused for the uplinks, a reserved or held
    /// tuple, or one overlapping another port's wildcard).
    pub fn bind(&self, t: Tuple, port: PortId) -> Result<(), BindError> {
        let r = if port == self.cfg.host {
            Err(BindError::Uplink(port.0, "host"))
        } else if Some(port) == self.cfg.wire {
            Err(BindError::Uplink(port.0, "wire"))
        } else {
            self.write().bind(t, port, &self.cfg.reserved)
        };
        if r.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    pub fn unbind(&self, t: Tuple, port: PortId) -> Result<(), BindError> {
        self.write().unbind(t, port)
    }

    /// Drops every tuple of `port` (its client went away); returns how many.
    pub fn unbind_port(&self, port: PortId) -> usize {
        self.write().unbind_port(port)
    }

    /// Every binding, sorted by tuple.
    pub fn list(&self) -> Vec<(Tuple, PortId)> {
        self.read().list()
    }

    /// Where an unclaimed packet from `in_port` goes.
    #[inline]
    fn other_uplink(&self, in_port: PortId) -> Verdict {
        if in_port == self.cfg.host {
            self.cfg.wire.map_or(Verdict::Drop, Verdict::Port)
        } else {
            Verdict::Port(self.cfg.host)
        }
    }

    /// Reads the key of frame `d` (from an uplink).
    #[inline]
    fn key(&self, d: &[u8]) -> Result<Key, ()> {
        if d.len() < 14 {
            return Err(());
        }
        match u16::from_be_bytes([d[12], d[13]]) {
            0x0800 => {
                let ip = &d[14..];
                if ip.len() < 20 || ip[0] >> 4 != 4 {
                    return Err(());
                }
                let ihl = usize::from(ip[0] & 0xf) * 4;
                let proto = ip[9];
                // MF or a fragment offset: no ports to go by.
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
                if ihl < 20 || frag || (proto != TCP && proto != UDP) {
                    return Ok(Key::Unclaimed);
                }
                let Some(l4) = ip.get(ihl..ihl + 4) else {
                    return Ok(Key::Unclaimed);
                };
                Ok(Key::L4(Tuple {
                    ip: v4([ip[16], ip[17], ip[18], ip[19]]),
                    port: u16::from_be_bytes([l4[2], l4[3]]),
                    proto,
                }))
            }
            0x86dd => {
                let ip = &d[14..];
                if ip.len() < 40 || ip[0] >> 4 != 6 {
                    return Err(());
                }
                let proto = ip[6];
                if proto != TCP && proto != UDP {
                    return Ok(Key::Unclaimed);
                }
                let Some(l4) = ip.get(40..44) else {
                    return Ok(Key::Unclaimed);
                };
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[24..40]);
                Ok(Key::L4(Tuple {
                    ip: u128::from_be_bytes(a),
                    port: u16::from_be_bytes([l4[2], l4[3]]),
                    proto,
                }))
            }
            // An Ethernet/IPv4 ARP request: its target address.
            0x0806 if self.cfg.arp_all => match d.get(14..42) {
                Some(a) if a[0..8] == [0, 1, 8, 0, 6, 4, 0, 1] => {
                    Ok(Key::Arp(v4([a[24], a[25], a[26], a[27]])))
                }
                _ => Ok(Key::Unclaimed),
            },
            _ => Ok(Key::Unclaimed),
        }
    }

    /// An application's batch: everything to the outside, but frames
    /// with another's source tuple.
    fn app_batch(&self, batch: &Batch<'_>, out: &mut Verdicts) {
        let in_port = batch.in_port();
        let to = self
            .cfg
            .wire
            .map_or(Verdict::Port(self.cfg.host), Verdict::Port);
        let tb = self.read();
        // Consecutive frames mostly share their source: remember the last.
        let mut last: Option<(Tuple, bool)> = None;
        let mut spoofed = 0u64;
        for i in 0..batch.len() {
            let d = batch.data(i);
            if d.len() < 14 {
                out.set(i, Verdict::Invalid);
                continue;
            }
            let ok = match src_tuple(d) {
                None => true,
                Some(s) => match last {
                    Some((t, ok)) if t == s => ok,
                    _ => {
                        let ok = tb.may_send(s, in_port, &self.cfg.reserved, self.cfg.strict_src);
                        last = Some((s, ok));
                        ok
                    }
                },
            };
            if ok {
                out.set(i, to);
            } else {
                out.set(i, Verdict::Drop);
                spoofed += 1;
            }
        }
        drop(tb);
        self.from_apps
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if spoofed > 0 {
            self.spoofed.fetch_add(spoofed, Ordering::Relaxed);
        }
    }

    fn decide(&self, tb: &Table, key: Key, in_port: PortId, out: &mut Verdicts) -> (Verdict, bool) {
        let up = self.other_uplink(in_port);
        match key {
            Key::Unclaimed => {}
            Key::L4(t) => {
                let hit = tb.map.get(&t).or_else(|| {
                    (tb.wildcards > 0)
                        .then(|| tb.map.get(&Tuple { ip: ANY, ..t }))
                        .flatten()
                });
                if let Some(&p) = hit {
                    return (Verdict::Port(p), true);
                }
            }
            Key::Arp(ip) => {
                let apps = tb.ports_on(ip);
                if !apps.is_empty() {
                    let mut set: Vec<PortId> = apps.to_vec();
                    if let Verdict::Port(u) = up {
                        set.push(u);
                    }
                    set.sort_unstable();
                    set.dedup();
                    return (out.add_set(&set), true);
                }
            }
        }
        (up, false)
    }
}

/// The source tuple of a TCP or UDP frame (IPv4, the first fragment
/// included; IPv6 with the transport header first), if it has one.
#[inline]
fn src_tuple(d: &[u8]) -> Option<Tuple> {
    let l = Layers::parse(d).ok()?;
    let ip = l.ip.filter(|ip| ip.proto == TCP || ip.proto == UDP)?;
    let (port, _) = l.ports?;
    let addr = match ip.src {
        IpAddr::V4(a) => v4(a.octets()),
        IpAddr::V6(a) => u128::from(a),
    };
    Some(Tuple {
        ip: addr,
        port,
        proto: ip.proto,
    })
}

impl Module for Demux {
    fn name(&self) -> &'static str {
        "demux"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        let in_port = batch.in_port();
        let mut n = Counts::default();
        if !self.is_uplink(in_port) {
            self.app_batch(batch, out);
            return;
        }
        let tb = self.read();
        // Consecutive packets mostly share their tuple: remember the last,
        // by a signature of the plain IPv4 header's bytes when there is one
        // (no parse), else by its key.
        let (mut last_sig, mut last_sv) = (NO_SIG, (Verdict::Drop, false));
        let mut last: Option<(Key, Verdict, bool)> = None;
        let mut seen = 0u64;
        for i in 0..batch.len() {
            let d = batch.data(i);
            let sig = sig4(d);
            let (v, to_app) = if sig != NO_SIG && sig == last_sig {
                last_sv
            } else {
                let Ok(key) = self.key(d) else {
                    out.set(i, Verdict::Invalid);
                    continue;
                };
                let va = match last {
                    // A set verdict names this batch's set: reuse is fine.
                    Some((k, v, a)) if k == key => (v, a),
                    _ => {
                        let (v, a) = self.decide(&tb, key, in_port, out);
                        last = Some((key, v, a));
                        (v, a)
                    }
                };
                if sig != NO_SIG {
                    (last_sig, last_sv) = (sig, va);
                }
                va
            };
            seen += 1;
            n.delivered += u64::from(to_app);
            out.set(i, v);
        }
        n.unclaimed = seen - n.delivered;
        drop(tb);
        self.delivered.fetch_add(n.delivered, Ordering::Relaxed);
        self.unclaimed.fetch_add(n.unclaimed, Ordering::Relaxed);
    }

    fn port_detached(&self, port: PortId) {
        self.unbind_port(port);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("demux_tuples", self.read().len() as u64),
            ("demux_delivered", self.delivered.load(Ordering::Relaxed)),
            ("demux_unclaimed", self.unclaimed.load(Ordering::Relaxed)),
            ("demux_from_apps", self.from_apps.load(Ordering::Relaxed)),
            ("demux_refused", self.refused.load(Ordering::Relaxed)),
            ("demux_spoofed", self.spoofed.load(Ordering::Relaxed)),
        ]
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
#[path = "demux_tests.rs"]
mod tests;
