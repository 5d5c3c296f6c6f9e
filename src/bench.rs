//! `mswitch bench`: the switch measured in one process.
//!
//! Generator and sink ports are built in and cost next to nothing: a
//! generator's incoming ring is filled with frames once, and each time its
//! worker polls it the ring is handed back full (the switch still reads every
//! slot, runs the module and copies every frame into the destination's
//! buffers); a sink frees its outgoing ring as soon as the switch publishes.
//! So the figures are the switch's own cost, and every packet counted was
//! copied into a destination buffer.
//!
//! Each result is paired with a raw-copy baseline run in the same process:
//! the same frames copied slot to slot between two rings, with the same copy
//! routine and batch size, by as many threads as the switch had workers. The
//! ratio says how close the switch comes to the machine's copy limit.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::module::{self, Module, dummy};
use crate::packet::{DEFAULT_BUF_SIZE, MemConfig, MemError, PortMem, Slot, copy_frame};
use crate::port::{Port, PortId};
use crate::switch::{Drops, Switch, SwitchConfig};
use crate::sys::{self, EventFd};
use crate::wire::ethernet::{MacAddr, udp_frame};

pub mod tunnel;

/// Which ports send to which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Pattern {
    /// Pairs: port 1 -> 2, 3 -> 4, ...
    #[value(name = "1to1")]
    #[serde(rename = "1to1")]
    OneToOne,
    /// Ports 1..N-1 all send to port N.
    #[value(name = "nto1")]
    #[serde(rename = "nto1")]
    NToOne,
    /// Every port sends to every other port.
    #[value(name = "nton")]
    #[serde(rename = "nton")]
    NToN,
    /// Port 1 broadcasts to all others.
    #[value(name = "flood")]
    #[serde(rename = "flood")]
    Flood,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::OneToOne => "1to1",
            Pattern::NToOne => "nto1",
            Pattern::NToN => "nton",
            Pattern::Flood => "flood",
        }
    }

    fn senders(self, ports: usize) -> impl Iterator<Item = usize> {
        (1..=ports).filter(move |&p| match self {
            Pattern::OneToOne => p % 2 == 1,
            Pattern::NToOne => p < ports,
            Pattern::NToN => true,
            Pattern::Flood => p == 1,
        })
    }

    /// Destination MAC of slot `j` sent by port `p` of `n`.
    fn dst(self, p: usize, j: usize, n: usize) -> MacAddr {
        match self {
            Pattern::OneToOne => mac(p + 1),
            Pattern::NToOne => mac(n),
            Pattern::NToN => mac((p - 1 + 1 + j % (n - 1)) % n + 1),
            Pattern::Flood => MacAddr::BROADCAST,
        }
    }

    /// The `dummy` map that matches the pattern (`nton` becomes a ring).
    fn dummy_map(self, n: usize) -> dummy::Dummy {
        let id = |p: usize| PortId(p as u16);
        match self {
            Pattern::OneToOne => dummy::Dummy::pairs(),
            Pattern::NToOne => {
                dummy::Dummy::with_map((1..n).map(|p| (id(p), dummy::Target::Port(id(n)))))
            }
            Pattern::NToN => {
                dummy::Dummy::with_map((1..=n).map(|p| (id(p), dummy::Target::Port(id(p % n + 1)))))
            }
            Pattern::Flood => dummy::Dummy::with_map([(id(1), dummy::Target::Flood)]),
        }
    }
}

fn mac(p: usize) -> MacAddr {
    MacAddr::local(p as u32)
}

/// One benchmark case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Module spec; a bare `dummy` gets the map that matches the pattern.
    pub module: String,
    pub pattern: Pattern,
    /// Ports that carry traffic.
    pub ports: usize,
    /// Frame length in bytes (without FCS).
    pub size: usize,
    pub batch: usize,
    pub workers: usize,
    pub idle_ports: usize,
    pub duration: Duration,
    pub baseline_duration: Duration,
    pub ring: u32,
    pub pin: bool,
    /// Distinct flows per sender (UDP source ports 1024, 1025, ...); the
    /// generator ring grows to hold one frame of each.
    pub flows: usize,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            module: "dummy".into(),
            pattern: Pattern::OneToOne,
            ports: 2,
            size: 60,
            batch: 512,
            workers: 1,
            idle_ports: 0,
            duration: Duration::from_secs(5),
            baseline_duration: Duration::from_secs(2),
            ring: 1024,
            pin: false,
            flows: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Module(#[from] module::ModuleError),
    #[error(transparent)]
    Switch(#[from] crate::switch::SwitchError),
    #[error("port memory: {0}")]
    Mem(#[from] MemError),
    #[error("{0}")]
    Os(#[from] std::io::Error),
}

impl Case {
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Bad(m));
        if self.ports < 2 || self.ports > 1024 {
            return bad(format!("--ports must be 2..=1024, not {}", self.ports));
        }
        if self.pattern == Pattern::OneToOne && !self.ports.is_multiple_of(2) {
            return bad(format!(
                "--pattern 1to1 needs an even number of ports, not {}",
                self.ports
            ));
        }
        if self.ports + self.idle_ports > 4000 {
            return bad(format!(
                "--ports plus --idle-ports must be at most 4000, not {}",
                self.ports + self.idle_ports
            ));
        }
        if !(42..=65535).contains(&self.size) {
            return bad(format!(
                "--size must be 42..=65535 bytes, not {}",
                self.size
            ));
        }
        if !(1..=1024).contains(&self.batch) {
            return bad(format!("--batch must be 1..=1024, not {}", self.batch));
        }
        if !(1..=64).contains(&self.workers) {
            return bad(format!("--workers must be 1..=64, not {}", self.workers));
        }
        if !(1..=65536).contains(&self.flows) {
            return bad(format!("--flows must be 1..=65536, not {}", self.flows));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(3600) {
            return bad("--duration must be more than 0 and at most 3600 seconds".into());
        }
        module::build(&self.module)?;
        Ok(())
    }

    fn buf_size(&self) -> u32 {
        (self.size as u32)
            .next_multiple_of(64)
            .max(DEFAULT_BUF_SIZE)
    }

    fn mem_config(&self) -> MemConfig {
        let ring = self.ring.max((self.flows as u32).next_power_of_two());
        MemConfig::new(ring, self.buf_size())
    }

    fn build_module(&self) -> Result<Arc<dyn Module>, BenchError> {
        if self.module == "dummy" {
            Ok(Arc::new(self.pattern.dummy_map(self.ports)))
        } else {
            Ok(module::build(&self.module)?)
        }
    }
}

/// The outcome of one case.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub module: String,
    pub pattern: Pattern,
    pub size: usize,
    pub workers: usize,
    pub batch: usize,
    pub ports: usize,
    pub idle_ports: usize,
    pub flows: usize,
    pub seconds: f64,
    pub packets: u64,
    pub pps: f64,
    pub bps: f64,
    pub pps_per_worker: Vec<f64>,
    pub baseline_pps: f64,
    pub baseline_bps: f64,
    pub ratio: f64,
    pub drops: Drops,
    /// Packets the workers forwarded in all, warm-up included (the
    /// denominator for per-packet costs measured over the whole process,
    /// e.g. instruction counts).
    pub total_packets: u64,
    /// The module's own counters at the end of the run
    /// ([`Module::counters`]; for `flow`, its cache hits and upcalls).
    pub module_counters: Vec<(&'static str, u64)>,
}

/// A built-in generator and/or sink port.
struct BenchPort {
    name: String,
    mem: PortMem,
    generate: bool,
    running: AtomicBool,
    /// Producer index for frames injected by the bench (non-generators only).
    inject_head: AtomicU32,
    bell: EventFd,
    received: AtomicU64,
}

impl BenchPort {
    fn new(
        name: String,
        cfg: MemConfig,
        frames: Option<&[Vec<u8>]>,
    ) -> Result<BenchPort, BenchError> {
        let mem = PortMem::new(&name, cfg)?;
        if let Some(frames) = frames {
            let ring = mem.incoming();
            for j in 0..ring.size() {
                let f = &frames[j as usize % frames.len()];
                let s = ring.slot(j);
                mem.write_buf(s.buf, f);
                ring.write_slot(
                    j,
                    Slot {
                        buf: s.buf,
                        len: f.len() as u16,
                        flags: 0,
                    },
                );
            }
        }
        Ok(BenchPort {
            name,
            mem,
            generate: frames.is_some(),
            running: AtomicBool::new(false),
            inject_head: AtomicU32::new(0),
            bell: EventFd::new()?,
            received: AtomicU64::new(0),
        })
    }

    /// Sends one frame into the switch (before generators start).
    fn inject(&self, frame: &[u8]) {
        if self.generate {
            return;
        }
        let ring = self.mem.incoming();
        let mut head = self.inject_head.load(Ordering::Relaxed);
        let mut once = Some(frame);
        self.mem.produce(ring, &mut head, 1, |_, buf| {
            let f = once.take()?;
            buf[..f.len()].copy_from_slice(f);
            Some(f.len())
        });
        self.inject_head.store(head, Ordering::Relaxed);
        if ring.take_wakeup_request() {
            self.bell.notify();
        }
    }
}

impl Port for BenchPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "bench"
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn sync_incoming(&self, _q: usize) {
        if self.generate && self.running.load(Ordering::Relaxed) {
            // Hand back every slot the switch has consumed, frames unchanged.
            let ring = self.mem.incoming();
            let tail = ring.hdr.tail.load(Ordering::Acquire);
            ring.publish(tail.wrapping_add(ring.size()));
        }
    }

    fn outgoing_published(&self) {
        // Free everything published so far; several workers may race here,
        // so only ever move the tail forward.
        let ring = self.mem.outgoing();
        loop {
            let tail = ring.hdr.tail.load(Ordering::Acquire);
            let head = ring.hdr.head.load(Ordering::Acquire);
            let n = head.wrapping_sub(tail);
            if n == 0 || n > ring.size() {
                return;
            }
            if ring
                .hdr
                .tail
                .compare_exchange(tail, head, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.received.fetch_add(u64::from(n), Ordering::Relaxed);
                return;
            }
        }
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        (!self.generate).then(|| self.bell.as_raw_fd())
    }

    fn disarm_incoming(&self, _q: usize) {
        self.mem.incoming().disarm_wakeup();
        self.bell.drain();
    }
}

/// Where progress lines go.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Runs one case and its baseline.
pub fn run_case(case: &Case, progress: Progress<'_>) -> Result<BenchResult, BenchError> {
    case.validate()?;
    sys::raise_fd_limit();
    let n = case.ports;
    let cfg = SwitchConfig {
        name: "bench".into(),
        workers: case.workers,
        batch: case.batch,
        cpus: case.pin.then(|| (0..sys::online_cpus()).collect()),
        ..SwitchConfig::default()
    };
    let sw = Switch::new(cfg, case.build_module()?)?;
    let senders: Vec<usize> = case.pattern.senders(n).collect();
    let mut ports = Vec::new();
    for p in 1..=n + case.idle_ports {
        let frames = if senders.contains(&p) {
            let variants = if case.pattern == Pattern::NToN {
                n - 1
            } else {
                1
            };
            Some(
                (0..variants * case.flows)
                    .map(|k| {
                        let (j, flow) = (k % variants, k / variants);
                        udp_frame(
                            case.size,
                            case.pattern.dst(p, j, n),
                            mac(p),
                            [10, 0, 0, p as u8],
                            [10, 0, 1, 1],
                            1024u16.wrapping_add(flow as u16),
                            1024,
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let port = Arc::new(BenchPort::new(
            format!("b{p}"),
            case.mem_config(),
            frames.as_deref(),
        )?);
        // Spread senders over the workers first, so each worker has traffic.
        let owner = senders
            .iter()
            .position(|&s| s == p)
            .map(|i| i % case.workers);
        sw.attach_to(port.clone(), PortId::new(p as u32), owner)?;
        ports.push(port);
    }
    // Every traffic port announces its MAC once, so learning modules know
    // where the sinks are before the clock starts.
    for p in 1..=n {
        ports[p - 1].inject(&udp_frame(
            60,
            MacAddr::BROADCAST,
            mac(p),
            [10, 0, 0, p as u8],
            [10, 0, 1, 1],
            9,
            9,
        ));
    }
    std::thread::sleep(Duration::from_millis(100));
    for p in &ports {
        p.running.store(true, Ordering::Relaxed);
    }
    std::thread::sleep(Duration::from_millis(300)); // warm-up
    let received = || {
        ports
            .iter()
            .map(|p| p.received.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let worker_packets = |sw: &Switch| {
        sw.stats()
            .workers
            .iter()
            .map(|w| w.packets)
            .collect::<Vec<_>>()
    };
    let w0 = worker_packets(&sw);
    let (packets, secs) = measure(case.duration, case.size, received, progress);
    let w1 = worker_packets(&sw);
    let stats = sw.stats();
    drop(sw);
    let pps = packets as f64 / secs;
    let pps_per_worker = w0
        .iter()
        .zip(&w1)
        .map(|(a, b)| (b - a) as f64 / secs)
        .collect();
    let baseline_pps = raw_copy_baseline(case)?;
    Ok(BenchResult {
        module: case.module.clone(),
        pattern: case.pattern,
        size: case.size,
        workers: case.workers,
        batch: case.batch,
        ports: n,
        idle_ports: case.idle_ports,
        flows: case.flows,
        seconds: secs,
        packets,
        pps,
        bps: pps * case.size as f64 * 8.0,
        pps_per_worker,
        baseline_pps,
        baseline_bps: baseline_pps * case.size as f64 * 8.0,
        ratio: if baseline_pps > 0.0 {
            pps / baseline_pps
        } else {
            0.0
        },
        drops: stats.drops,
        total_packets: stats.workers.iter().map(|w| w.packets).sum(),
        module_counters: stats.module_counters,
    })
}

/// Counts for `duration` what `count` counts (packets that arrived), with
/// a progress line about every second (`size`-byte frames); returns the
/// packets and the seconds they took.
fn measure(
    duration: Duration,
    size: usize,
    count: impl Fn() -> u64,
    progress: Progress<'_>,
) -> (u64, f64) {
    let (t0, rx0) = (Instant::now(), count());
    let (mut t_last, mut rx_last) = (t0, rx0);
    while t0.elapsed() < duration {
        let left = duration.saturating_sub(t0.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(1)));
        let (t, rx) = (Instant::now(), count());
        let dt = t.duration_since(t_last).as_secs_f64();
        let pps = (rx - rx_last) as f64 / dt;
        progress(&format!(
            "{:6.1} s  {:>8} {:>12}",
            t.duration_since(t0).as_secs_f64(),
            fmt_pps(pps),
            fmt_bps(pps * size as f64 * 8.0)
        ));
        (t_last, rx_last) = (t, rx);
    }
    (rx_last - rx0, t_last.duration_since(t0).as_secs_f64())
}

/// A frame of `size` bytes from port 1's host to port 2's.
fn pair_frame(size: usize) -> Vec<u8> {
    udp_frame(
        size,
        mac(2),
        mac(1),
        [10, 0, 0, 1],
        [10, 0, 1, 1],
        1024,
        1024,
    )
}

/// Copies the case's frames slot to slot between two rings, with no
/// switching, on `workers` threads at once; returns packets per second.
pub fn raw_copy_baseline(case: &Case) -> Result<f64, BenchError> {
    let frame = pair_frame(case.size);
    let pairs = (0..case.workers)
        .map(|i| {
            let src = PortMem::new(&format!("base-src{i}"), case.mem_config())?;
            let dst = PortMem::new(&format!("base-dst{i}"), case.mem_config())?;
            let ring = src.incoming();
            for j in 0..ring.size() {
                let s = ring.slot(j);
                src.write_buf(s.buf, &frame);
                ring.write_slot(
                    j,
                    Slot {
                        buf: s.buf,
                        len: frame.len() as u16,
                        flags: 0,
                    },
                );
            }
            Ok((src, dst))
        })
        .collect::<Result<Vec<_>, MemError>>()?;
    let dur = case.baseline_duration;
    let batch = case.batch as u32;
    let pin = case.pin;
    let ncpu = sys::online_cpus();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(i, (src, dst))| {
                s.spawn(move || {
                    if pin {
                        let _ = sys::pin_current_thread(i % ncpu);
                    }
                    copy_loop(src, dst, batch, dur)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    Ok(total as f64 / dur.as_secs_f64())
}

/// The baseline's inner loop: read a slot, copy its frame into the next
/// outgoing slot's buffer, write that slot; publish once per batch.
fn copy_loop(src: &PortMem, dst: &PortMem, batch: u32, dur: Duration) -> u64 {
    let (rin, rout) = (src.incoming(), dst.outgoing());
    let room = src.buf_size().min(dst.buf_size()) as usize;
    let (mut i, mut j, mut n) = (0u32, 0u32, 0u64);
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            for _ in 0..batch {
                let s = rin.slot(i);
                let o = rout.slot(j);
                if let (Some(sp), Some(dp)) = (src.buf_ptr(s.buf), dst.buf_ptr(o.buf)) {
                    #[allow(unsafe_code)]
                    // SAFETY: both buffers are `room` bytes inside their
                    // regions, this thread alone uses the two rings, and the
                    // frame length is at most `room`.
                    unsafe {
                        copy_frame(sp, dp, s.len as usize, room)
                    };
                    rout.write_slot(
                        j,
                        Slot {
                            buf: o.buf,
                            len: s.len,
                            flags: 0,
                        },
                    );
                }
                i = i.wrapping_add(1);
                j = j.wrapping_add(1);
            }
            rin.release(i);
            rout.publish(j);
            n += u64::from(batch);
        }
        if start.elapsed() >= dur {
            return n;
        }
    }
}

pub fn fmt_pps(pps: f64) -> String {
    format!("{:.2} Mpps", pps / 1e6)
}

pub fn fmt_bps(bps: f64) -> String {
    format!("{:.2} Gbit/s", bps / 1e9)
}

/// The standard suite run by a bare `mswitch bench`.
pub fn standard_suite(duration: Duration, pin: bool) -> Vec<Case> {
    let base = Case {
        duration,
        baseline_duration: Duration::from_millis(1500).min(duration),
        pin,
        ..Case::default()
    };
    vec![
        Case { ..base.clone() },
        Case {
            size: 1514,
            ..base.clone()
        },
        Case {
            module: "learn".into(),
            ..base.clone()
        },
        Case {
            pattern: Pattern::NToOne,
            ports: 3,
            ..base.clone()
        },
        Case {
            pattern: Pattern::NToOne,
            ports: 3,
            workers: 2,
            ..base.clone()
        },
        Case {
            idle_ports: 1000,
            ..base
        },
    ]
}

/// A one-line human summary of a result.
pub fn summary(r: &BenchResult) -> String {
    let per_worker: Vec<String> = r
        .pps_per_worker
        .iter()
        .enumerate()
        .map(|(i, p)| format!("w{i} {:.2}", p / 1e6))
        .collect();
    format!(
        "{} {} {} B{}, {} worker(s): {} {} | per worker (Mpps): {} | raw-copy baseline ({} thread(s)): {} {} | ratio {:.3} | drops {}",
        r.module,
        r.pattern.name(),
        r.size,
        if r.flows > 1 {
            format!(", {} flows", r.flows)
        } else {
            String::new()
        },
        r.workers,
        fmt_pps(r.pps),
        fmt_bps(r.bps),
        per_worker.join(", "),
        r.workers,
        fmt_pps(r.baseline_pps),
        fmt_bps(r.baseline_bps),
        r.ratio,
        r.drops.total(),
    )
}
