//! `mswitch bench --tunnel vxlan|geneve`: what encapsulation and
//! decapsulation cost mswitch per packet, beside plain forwarding of the
//! same inner frames in the same run.
//!
//! Three phases, each its own switch with one worker and two ports:
//! - **plain**: generator -> switch -> sink (as `mswitch bench`), counted
//!   at the sink;
//! - **encap**: generator -> switch -> a tunnel port with a fixed remote
//!   and VNI on a bench wire ([`crate::port::tunnel::wire`]), counted as
//!   the datagrams the wire got;
//! - **decap**: the bench wire hands the tunnel port the same frames
//!   encapsulated (from its remote, with its VNI), endlessly -> switch ->
//!   sink, counted at the sink.
//!
//! The bench wire stands in for the kernel's UDP socket: it copies each
//! datagram as the kernel would and nothing more, so the figures are the
//! tunnel port's and the switch's own cost, not the kernel's UDP path
//! (which is far dearer per datagram: BENCHMARKS.md, "Tunnels"). Frames a
//! port drops (ring full) are not counted. The ratio reported is the cost
//! per packet against plain forwarding: plain pps / tunnel pps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{BenchError, BenchPort, Case, Progress, fmt_pps, mac, measure, pair_frame};
use crate::packet::{MemConfig, Slot};
use crate::port::tunnel::header::{HEADER_LEN, encode};
use crate::port::tunnel::wire::{BenchDatagram, BenchWire};
use crate::port::tunnel::{Proto, TunnelConfig, TunnelPort};
use crate::port::{Port, PortId};
use crate::switch::{Switch, SwitchConfig};
use crate::sys;
use crate::wire::ethernet::{MacAddr, udp_frame};

/// Which encapsulation to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tunnel {
    Vxlan,
    Geneve,
}

impl Tunnel {
    pub fn proto(self) -> Proto {
        match self {
            Tunnel::Vxlan => Proto::Vxlan,
            Tunnel::Geneve => Proto::Geneve,
        }
    }
}

/// The tunnel port's side: this host's address, the remote's, the VNI.
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const VNI: u32 = 5001;

/// One tunnel case: `base` gives the module, frame size, batch, duration
/// (per phase), ring and pinning; one worker, two ports.
#[derive(Clone, Debug)]
pub struct TunnelCase {
    pub tunnel: Tunnel,
    pub base: Case,
}

/// What a phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Plain,
    Encap,
    Decap,
}

/// The outcome of one tunnel case.
#[derive(Clone, Debug, Serialize)]
pub struct TunnelResult {
    pub tunnel: Tunnel,
    pub module: String,
    pub size: usize,
    pub batch: usize,
    pub workers: usize,
    /// Seconds each phase was measured.
    pub seconds: f64,
    pub plain_pps: f64,
    pub encap_pps: f64,
    pub decap_pps: f64,
    /// Cost per packet against plain forwarding: plain_pps / encap_pps.
    pub encap_cost: f64,
    /// The same for decapsulation.
    pub decap_cost: f64,
    /// Frames dropped in each phase (the switch's drops and the tunnel
    /// port's counters), not counted as forwarded.
    pub plain_drops: u64,
    pub encap_drops: u64,
    pub decap_drops: u64,
}

/// The suite `--tunnel T` runs: dummy and learn, 60 and 1514 B frames.
pub fn suite(tunnel: Tunnel, base: &Case) -> Vec<TunnelCase> {
    let mut v = Vec::new();
    for module in ["dummy", "learn"] {
        for size in [60, 1514] {
            v.push(TunnelCase {
                tunnel,
                base: Case {
                    module: module.into(),
                    size,
                    ..base.clone()
                },
            });
        }
    }
    v
}

/// `frame` as the remote would send it to us: header, then frame.
fn datagram(proto: Proto, frame: &[u8]) -> BenchDatagram {
    let mut h = [0u8; HEADER_LEN];
    encode(proto, VNI, &mut h);
    BenchDatagram {
        from: SocketAddr::new(IpAddr::V4(REMOTE), proto.default_port()),
        bytes: [&h[..], frame].concat(),
    }
}

/// Port 2's host says where it is (a broadcast from its MAC), so that
/// learning modules know the way before the clock starts.
fn announce() -> Vec<u8> {
    udp_frame(
        60,
        MacAddr::BROADCAST,
        mac(2),
        [10, 0, 0, 2],
        [10, 0, 1, 1],
        9,
        9,
    )
}

/// The tunnel port of the bench: fixed remote and VNI, on a bench wire
/// that hands out `incoming` (again and again if `repeat`).
fn tunnel_port(
    proto: Proto,
    mem: MemConfig,
    incoming: Vec<BenchDatagram>,
    repeat: bool,
) -> Result<Arc<TunnelPort>, BenchError> {
    let mut cfg = TunnelConfig::new(proto, IpAddr::V4(REMOTE));
    cfg.local = Some(IpAddr::V4(LOCAL));
    (cfg.in_key, cfg.out_key) = (VNI, VNI);
    let wire = BenchWire::new(cfg.bind_addr(), incoming, repeat)?;
    TunnelPort::open_bench(proto.name(), &cfg, mem, wire)
        .map_err(|e| BenchError::Bad(format!("tunnel port: {e}")))
}

/// One phase's switch and ports, forwarding once started.
pub struct Rig {
    pub sw: Switch,
    /// Port 1 (a generator, or the tunnel port for decap).
    pub source: Arc<dyn Port>,
    /// Port 2 (a sink, or the tunnel port for encap).
    pub dest: Arc<dyn Port>,
    generator: Option<Arc<BenchPort>>,
    sink: Option<Arc<BenchPort>>,
    tunnel: Option<Arc<TunnelPort>>,
}

impl Rig {
    /// Builds `phase` of `case` and warms it up: afterwards packets flow.
    pub fn start(case: &TunnelCase, phase: Phase) -> Result<Rig, BenchError> {
        let base = &case.base;
        let proto = case.tunnel.proto();
        let cfg = SwitchConfig {
            name: "bench".into(),
            workers: 1,
            batch: base.batch,
            cpus: base.pin.then(|| (0..sys::online_cpus()).collect()),
            ..SwitchConfig::default()
        };
        let sw = Switch::new(cfg, base.build_module()?)?;
        let mem = base.mem_config();
        let frame = pair_frame(base.size);
        let bench = |name: &str, frames| BenchPort::new(name.into(), mem, frames).map(Arc::new);
        let (mut generator, mut sink, mut tunnel) = (None, None, None);
        let source: Arc<dyn Port> = if phase == Phase::Decap {
            let t = tunnel_port(proto, mem, vec![datagram(proto, &frame)], true)?;
            tunnel = Some(t.clone());
            t
        } else {
            let g = bench("b1", Some(std::slice::from_ref(&frame)))?;
            generator = Some(g.clone());
            g
        };
        let dest: Arc<dyn Port> = if phase == Phase::Encap {
            let t = tunnel_port(proto, mem, vec![datagram(proto, &announce())], false)?;
            tunnel = Some(t.clone());
            t
        } else {
            let s = bench("b2", None)?;
            sink = Some(s.clone());
            s
        };
        sw.attach_to(dest.clone(), PortId::new(2), Some(0))?;
        if let Some(s) = &sink {
            s.inject(&announce());
        }
        std::thread::sleep(Duration::from_millis(100));
        sw.attach_to(source.clone(), PortId::new(1), Some(0))?;
        if let Some(g) = &generator {
            g.running.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(300)); // warm-up
        Ok(Rig {
            sw,
            source,
            dest,
            generator,
            sink,
            tunnel,
        })
    }

    /// Packets that arrived so far: at the sink, or on the bench wire.
    pub fn arrived(&self) -> u64 {
        match (&self.sink, &self.tunnel) {
            (Some(s), _) => s.received.load(Ordering::Relaxed),
            (None, Some(t)) => t.bench_wire().map_or(0, |w| w.sent().0),
            (None, None) => 0,
        }
    }

    /// Frames dropped so far: by the switch, and by the tunnel port.
    pub fn drops(&self) -> u64 {
        let port: u64 = self.tunnel.as_ref().map_or(0, |t| {
            t.counters()
                .iter()
                .filter(|(n, _)| *n != "rx_unknown_remote")
                .map(|c| c.1)
                .sum()
        });
        self.sw.stats().drops.total() + port
    }

    /// The tunnel port, if the phase has one.
    pub fn tunnel(&self) -> Option<&Arc<TunnelPort>> {
        self.tunnel.as_ref()
    }

    /// The last frame the sink got (its bytes stay in the sink's buffer
    /// after it is freed).
    pub fn last_at_sink(&self) -> Option<Vec<u8>> {
        let s = self.sink.as_ref()?;
        let ring = s.mem.outgoing();
        let head = ring.hdr.head.load(Ordering::Acquire);
        let Slot { buf, len, .. } = ring.slot(head.wrapping_sub(1));
        s.mem.buf(buf, usize::from(len)).map(<[u8]>::to_vec)
    }

    /// Stops the generator (the wire goes on until the switch stops).
    pub fn stop(&self) {
        if let Some(g) = &self.generator {
            g.running.store(false, Ordering::Relaxed);
        }
    }

    /// Stops the generator and the switch's workers: what the ports hold
    /// stays put.
    pub fn halt(&mut self) {
        self.stop();
        self.sw.shutdown();
    }
}

/// Measures one phase: (packets per second, seconds, drops).
fn run_phase(
    case: &TunnelCase,
    phase: Phase,
    progress: Progress<'_>,
) -> Result<(f64, f64, u64), BenchError> {
    let rig = Rig::start(case, phase)?;
    let d0 = rig.drops();
    let (packets, secs) = measure(
        case.base.duration,
        case.base.size,
        || rig.arrived(),
        progress,
    );
    rig.stop();
    let drops = rig.drops() - d0;
    Ok((packets as f64 / secs, secs, drops))
}

impl TunnelCase {
    pub fn validate(&self) -> Result<(), BenchError> {
        self.base.validate()?;
        if self.base.workers != 1 || self.base.ports != 2 || self.base.idle_ports != 0 {
            return Err(BenchError::Bad(
                "--tunnel runs one worker and two ports".into(),
            ));
        }
        Ok(())
    }
}

/// Runs the three phases of `case`, one after the other.
pub fn run_case(case: &TunnelCase, progress: Progress<'_>) -> Result<TunnelResult, BenchError> {
    case.validate()?;
    sys::raise_fd_limit();
    let mut pps = [0.0; 3];
    let mut drops = [0; 3];
    let mut seconds = 0.0;
    for (i, phase) in [Phase::Plain, Phase::Encap, Phase::Decap]
        .into_iter()
        .enumerate()
    {
        progress(&format!("-- {phase:?}"));
        let (p, s, d) = run_phase(case, phase, progress)?;
        (pps[i], drops[i]) = (p, d);
        seconds = f64::max(seconds, s);
    }
    let cost = |t: f64| if t > 0.0 { pps[0] / t } else { 0.0 };
    Ok(TunnelResult {
        tunnel: case.tunnel,
        module: case.base.module.clone(),
        size: case.base.size,
        batch: case.base.batch,
        workers: 1,
        seconds,
        plain_pps: pps[0],
        encap_pps: pps[1],
        decap_pps: pps[2],
        encap_cost: cost(pps[1]),
        decap_cost: cost(pps[2]),
        plain_drops: drops[0],
        encap_drops: drops[1],
        decap_drops: drops[2],
    })
}

/// A one-line human summary of a tunnel result.
pub fn summary(r: &TunnelResult) -> String {
    format!(
        "{} {} {} B, 1 worker: plain {} | encap {} (cost {:.2}x plain) | decap {} (cost {:.2}x plain) | drops {}/{}/{}",
        r.tunnel.proto().name(),
        r.module,
        r.size,
        fmt_pps(r.plain_pps),
        fmt_pps(r.encap_pps),
        r.encap_cost,
        fmt_pps(r.decap_pps),
        r.decap_cost,
        r.plain_drops,
        r.encap_drops,
        r.decap_drops,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(tunnel: Tunnel, module: &str, size: usize) -> TunnelCase {
        TunnelCase {
            tunnel,
            base: Case {
                module: module.into(),
                size,
                duration: Duration::from_millis(100),
                ..Case::default()
            },
        }
    }

    /// Waits (at most 5 s) until `n` packets arrived.
    fn arrive(rig: &Rig, n: u64) {
        for _ in 0..500 {
            if rig.arrived() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("only {} of {n} packets arrived", rig.arrived());
    }

    #[test]
    fn encap_sends_the_frames_to_the_remote_with_the_vni_and_decap_brings_them_to_the_sink() {
        for tunnel in [Tunnel::Vxlan, Tunnel::Geneve] {
            let proto = tunnel.proto();
            let c = case(tunnel, "learn", 150);
            let frame = pair_frame(150);
            let mut hdr = [0u8; HEADER_LEN];
            encode(proto, VNI, &mut hdr);
            // Encap: what the wire got is header + frame, to the remote.
            let mut rig = Rig::start(&c, Phase::Encap).unwrap();
            arrive(&rig, 1000);
            rig.halt();
            let wire = rig.tunnel().unwrap().bench_wire().unwrap();
            let (to, d) = wire.last_sent().unwrap();
            assert_eq!(to, SocketAddr::new(REMOTE.into(), proto.default_port()));
            assert_eq!(d[..HEADER_LEN], hdr, "{tunnel:?}");
            assert_eq!(&d[HEADER_LEN..], &frame[..], "{tunnel:?}");
            assert_eq!(wire.sent().1, wire.sent().0 * d.len() as u64);
            // Learned, so never flooded: the sink's announcement came in
            // on the tunnel (and went nowhere else: the generator is no
            // sink), and nothing was dropped for being malformed.
            let t = rig.tunnel().unwrap();
            let count = |n: &str| t.counters().iter().find(|c| c.0 == n).unwrap().1;
            assert_eq!(count("rx_malformed") + count("rx_bad_vni"), 0);
            drop(rig);
            // Decap: the sink gets the inner frame, straight from the
            // receive batch (the port's ring is never used). (The port's
            // tests check the metadata the switch gets with it.)
            let mut rig = Rig::start(&c, Phase::Decap).unwrap();
            arrive(&rig, 1000);
            rig.halt();
            assert_eq!(rig.last_at_sink().unwrap(), frame, "{tunnel:?}");
            let t = rig.tunnel().unwrap();
            assert_eq!(t.mem().incoming().hdr.head.load(Ordering::Acquire), 0);
        }
    }

    #[test]
    fn a_tunnel_case_reports_all_three_phases_and_their_cost() {
        let r = run_case(&case(Tunnel::Vxlan, "dummy", 60), &mut |_| {}).unwrap();
        assert!(
            r.plain_pps > 0.0 && r.encap_pps > 0.0 && r.decap_pps > 0.0,
            "{r:?}"
        );
        assert_eq!(r.encap_cost, r.plain_pps / r.encap_pps);
        assert_eq!(r.decap_cost, r.plain_pps / r.decap_pps);
        let line = summary(&r);
        assert!(line.starts_with("vxlan dummy 60 B"), "{line}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["tunnel"], "vxlan");
        assert!(json["encap_cost"].as_f64().is_some());
        // One worker, two ports: others are refused.
        let mut bad = case(Tunnel::Geneve, "dummy", 60);
        bad.base.workers = 2;
        assert!(run_case(&bad, &mut |_| {}).is_err());
    }
}
