//! `mswitch pkt-gen`: a traffic generator and sink in the manner of netmap's
//! pkt-gen, for ports of a running switch (`-i vport:SWITCH:PORT`).
//!
//! Functions: `tx` sends UDP/IPv4 frames (ranges of MACs, addresses, ports
//! and lengths give multi-flow traffic), `rx` counts what arrives, `ping`
//! sends one timestamped frame at a time and measures the round trip, `pong`
//! reflects every frame back to its sender.
//!
//! On a vport, pkt-gen exits non-zero with one line when the daemon ends
//! the port's session (the port detached, its switch destroyed, the daemon
//! stopped or died), after printing its summary so far. It notices while
//! waiting for frames, and while it cannot send, within 100 ms.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::client::VportConn;
use crate::port::PortSpec;
use crate::port::driver::PortDriver;
use crate::wire::ethernet::{MacAddr, ones_complement_sum, udp_frame};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Func {
    Tx,
    Rx,
    Ping,
    Pong,
    /// Send on `-i` and receive on `--rx-interface` from one thread: the
    /// generator and the sink share a core without competing for it.
    Txrx,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PktGenArgs {
    /// Port to use: vport:SWITCH:PORT (created on the switch if missing), or a
    /// kernel interface driven directly: af_xdp:IF, af_packet:IF, tap:IF.
    #[arg(short = 'i', long = "interface")]
    pub iface: String,
    /// What to do.
    #[arg(short = 'f', long = "function", value_enum, default_value = "tx")]
    pub func: Func,
    /// Frame length in bytes without FCS, or a range MIN-MAX (cycled).
    #[arg(short = 'l', long = "length", default_value = "60")]
    pub len: String,
    /// Packets per send or receive call.
    #[arg(short = 'b', long = "batch", default_value_t = 256)]
    pub batch: usize,
    /// Packets per second to send (default: as fast as possible; ping: 1000).
    #[arg(short = 'R', long = "rate")]
    pub rate: Option<f64>,
    /// Stop after this many packets (tx, rx, pong) or round trips (ping).
    #[arg(short = 'n', long = "count")]
    pub count: Option<u64>,
    /// Milliseconds between report lines (0: none).
    #[arg(short = 'T', long = "report-ms", default_value_t = 1000)]
    pub report_ms: u64,
    /// Stop after this many seconds.
    #[arg(short = 'D', long = "duration")]
    pub duration: Option<f64>,
    /// Source MAC, or a range MAC-MAC.
    #[arg(long = "src-mac")]
    pub src_mac: Option<String>,
    /// Destination MAC, or a range MAC-MAC (default broadcast).
    #[arg(long = "dst-mac", default_value = "ff:ff:ff:ff:ff:ff")]
    pub dst_mac: String,
    /// Source IPv4 address[-last][:port[-last]].
    #[arg(short = 's', long = "src-ip", default_value = "10.0.0.1:1234")]
    pub src_ip: String,
    /// Destination IPv4 address[-last][:port[-last]].
    #[arg(short = 'd', long = "dst-ip", default_value = "10.1.0.1:1234")]
    pub dst_ip: String,
    /// With `-f txrx`: the port to receive on (same forms as `-i`).
    #[arg(long = "rx-interface")]
    pub rx_iface: Option<String>,
    /// Control socket of the daemon.
    #[arg(long)]
    pub ctl: Option<PathBuf>,
    /// Spin instead of sleeping while waiting for packets or room.
    #[arg(long)]
    pub busy_poll: bool,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The final summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub function: String,
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub pps: f64,
    pub bps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p50_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p99_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_max_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// With `txrx`: packets sent (`packets` counts those received).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_packets: Option<u64>,
}

/// An inclusive range of `u64` values, cycled through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    lo: u64,
    n: u64,
}

impl Span {
    fn one(v: u64) -> Span {
        Span { lo: v, n: 1 }
    }

    fn new(lo: u64, hi: u64, what: &str) -> Result<Span, String> {
        if hi < lo {
            return Err(format!("empty {what} range"));
        }
        Ok(Span { lo, n: hi - lo + 1 })
    }

    fn at(&self, k: u64) -> u64 {
        self.lo + k % self.n
    }
}

fn parse_ip(s: &str) -> Result<u64, String> {
    let a: std::net::Ipv4Addr = s.parse().map_err(|_| format!("bad IPv4 address '{s}'"))?;
    Ok(u64::from(u32::from(a)))
}

/// `A.B.C.D[-A.B.C.E][:P[-Q]]`
fn parse_endpoint(s: &str) -> Result<(Span, Span), String> {
    let (ips, ports) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip = match ips.split_once('-') {
        Some((a, b)) => Span::new(parse_ip(a)?, parse_ip(b)?, "address")?,
        None => Span::one(parse_ip(ips)?),
    };
    let port = |p: &str| {
        p.parse::<u16>()
            .map(u64::from)
            .map_err(|_| format!("bad port '{p}' in '{s}'"))
    };
    let port = match ports {
        None => Span::one(1234),
        Some(p) => match p.split_once('-') {
            Some((a, b)) => Span::new(port(a)?, port(b)?, "port")?,
            None => Span::one(port(p)?),
        },
    };
    Ok((ip, port))
}

fn parse_macs(s: &str) -> Result<Span, String> {
    match s.split_once('-') {
        Some((a, b)) => Span::new(
            a.parse::<MacAddr>()?.to_u64(),
            b.parse::<MacAddr>()?.to_u64(),
            "MAC",
        ),
        None => Ok(Span::one(s.parse::<MacAddr>()?.to_u64())),
    }
}

fn parse_len(s: &str) -> Result<Span, String> {
    let l = |v: &str| v.parse::<u64>().map_err(|_| format!("bad length '{v}'"));
    let span = match s.split_once('-') {
        Some((a, b)) => Span::new(l(a)?, l(b)?, "length")?,
        None => Span::one(l(s)?),
    };
    if span.lo < 60 || span.lo + span.n - 1 > 9000 {
        return Err(format!("length {s} out of range (60-9000)"));
    }
    Ok(span)
}

/// Builds frames: one fixed frame copied as is, or a template patched per
/// packet when any field varies.
struct FrameGen {
    template: Vec<u8>,
    fixed: bool,
    len: Span,
    src_mac: Span,
    dst_mac: Span,
    src_ip: Span,
    sport: Span,
    dst_ip: Span,
    dport: Span,
    k: u64,
}

impl FrameGen {
    fn new(a: &PktGenArgs) -> Result<FrameGen, String> {
        let len = parse_len(&a.len)?;
        let src_mac = parse_macs(a.src_mac.as_deref().unwrap_or(&default_mac().to_string()))?;
        let dst_mac = parse_macs(&a.dst_mac)?;
        let (src_ip, sport) = parse_endpoint(&a.src_ip)?;
        let (dst_ip, dport) = parse_endpoint(&a.dst_ip)?;
        let ip = |v: u64| (v as u32).to_be_bytes();
        let template = udp_frame(
            (len.lo + len.n - 1) as usize,
            MacAddr::from_u64(dst_mac.lo),
            MacAddr::from_u64(src_mac.lo),
            ip(src_ip.lo),
            ip(dst_ip.lo),
            sport.lo as u16,
            dport.lo as u16,
        );
        let fixed = [len, src_mac, dst_mac, src_ip, sport, dst_ip, dport]
            .iter()
            .all(|s| s.n == 1);
        Ok(FrameGen {
            template,
            fixed,
            len,
            src_mac,
            dst_mac,
            src_ip,
            sport,
            dst_ip,
            dport,
            k: 0,
        })
    }

    /// Writes the next frame into `buf`; returns its length.
    #[inline]
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let len = self.len.at(self.k) as usize;
        buf[..len].copy_from_slice(&self.template[..len]);
        if !self.fixed {
            // Walk the flow space as a mixed-radix counter so every
            // combination of the ranges comes up.
            let mut k = self.k;
            let mut digit = |s: &Span| {
                let v = s.at(k);
                k /= s.n;
                v
            };
            let src_mac = digit(&self.src_mac);
            let dst_mac = digit(&self.dst_mac);
            let src_ip = digit(&self.src_ip);
            let dst_ip = digit(&self.dst_ip);
            let sport = digit(&self.sport);
            let dport = digit(&self.dport);
            buf[0..6].copy_from_slice(&MacAddr::from_u64(dst_mac).0);
            buf[6..12].copy_from_slice(&MacAddr::from_u64(src_mac).0);
            buf[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
            buf[24..26].copy_from_slice(&[0, 0]);
            buf[26..30].copy_from_slice(&(src_ip as u32).to_be_bytes());
            buf[30..34].copy_from_slice(&(dst_ip as u32).to_be_bytes());
            buf[34..36].copy_from_slice(&(sport as u16).to_be_bytes());
            buf[36..38].copy_from_slice(&(dport as u16).to_be_bytes());
            buf[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
            let sum = ones_complement_sum(&buf[14..34]);
            buf[24..26].copy_from_slice(&(!sum).to_be_bytes());
        }
        self.k = self.k.wrapping_add(1);
        len
    }
}

fn default_mac() -> MacAddr {
    MacAddr::local(std::process::id())
}

/// Where pkt-gen sends and receives: a virtual port of a running switch, or
/// a kernel interface driven directly (no switch).
enum Endpoint {
    Vport(VportConn),
    Kernel(PortDriver),
}

impl Endpoint {
    fn open(spec: &str, ctl: Option<&std::path::Path>) -> Result<Endpoint, String> {
        if spec.starts_with("vport:") {
            let (sw, port) = parse_iface(spec)?;
            return Ok(Endpoint::Vport(VportConn::connect(ctl, &sw, &port)?));
        }
        let ps: PortSpec = spec.parse()?;
        let (port, note) = ps.open_kernel().map_err(|e| e.to_string())?;
        if let Some(n) = note {
            eprintln!("mswitch: {n}");
        }
        Ok(Endpoint::Kernel(PortDriver::new(port)))
    }

    fn buf_size(&self) -> u32 {
        match self {
            Endpoint::Vport(c) => c.mem().buf_size(),
            Endpoint::Kernel(d) => d.port().mem().buf_size(),
        }
    }

    fn send_with(&mut self, max: usize, fill: impl FnMut(usize, &mut [u8]) -> usize) -> usize {
        match self {
            Endpoint::Vport(c) => c.send_with(max, fill),
            Endpoint::Kernel(d) => d.send_with(max, fill),
        }
    }

    /// Sends copies of `frames`; returns how many were taken.
    fn send<'f>(&mut self, frames: impl ExactSizeIterator<Item = &'f [u8]>) -> usize {
        match self {
            Endpoint::Vport(c) => c.send(frames),
            Endpoint::Kernel(d) => {
                let mut it = frames;
                d.send_with(it.len(), |_, buf| match it.next() {
                    Some(f) if f.len() <= buf.len() => {
                        buf[..f.len()].copy_from_slice(f);
                        f.len()
                    }
                    _ => 0,
                })
            }
        }
    }

    fn recv(&mut self, max: usize, f: impl FnMut(&[u8])) -> usize {
        match self {
            Endpoint::Vport(c) => c.recv(max, f),
            Endpoint::Kernel(d) => d.recv(max, f),
        }
    }

    /// Waits for frames (see [`PortDriver::wait`]); an error once a vport's
    /// daemon ended its session.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, String> {
        match self {
            Endpoint::Vport(c) => c.wait(timeout).map_err(|e| e.reason),
            Endpoint::Kernel(d) => Ok(d.wait(timeout)),
        }
    }

    /// An error once a vport's daemon ended its session (one `poll`).
    fn check(&mut self) -> Result<(), String> {
        match self {
            Endpoint::Vport(c) => c.check().map_err(|e| e.reason),
            Endpoint::Kernel(_) => Ok(()),
        }
    }

    /// Waits until the port can carry frames (a virtio-user port's backend
    /// has connected) or pkt-gen is stopped, so that counts and rates start
    /// with the traffic.
    fn wait_link(&self, spec: &str, stop: &AtomicBool) {
        let Endpoint::Kernel(d) = self else {
            return;
        };
        if d.port().link_up() {
            return;
        }
        eprintln!("mswitch: {spec}: waiting for the peer");
        while !d.port().link_up() && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if d.port().link_up() {
            eprintln!("mswitch: {spec}: peer connected");
        }
    }
}

/// Parses `vport:SWITCH:PORT`.
fn parse_iface(s: &str) -> Result<(String, String), String> {
    let mut it = s.splitn(3, ':');
    match (it.next(), it.next(), it.next()) {
        (Some("vport"), Some(sw), Some(p)) if !sw.is_empty() && !p.is_empty() => {
            Ok((sw.to_owned(), p.to_owned()))
        }
        _ => Err(format!("bad interface '{s}' (expected vport:SWITCH:PORT)")),
    }
}

/// Stops the run on SIGINT/SIGTERM (so the summary still prints).
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    crate::sys::block_stop_signals();
    let s = stop.clone();
    let _ = std::thread::Builder::new()
        .name("pkt-gen-signals".into())
        .spawn(move || {
            crate::sys::wait_signal();
            s.store(true, Ordering::Relaxed);
        });
    stop
}

struct Limits {
    count: u64,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    /// Why the run ended early: a port's daemon ended its session.
    lost: RefCell<Option<String>>,
    /// When an idle loop next looks whether the ports' sessions stand.
    next_check: Cell<Instant>,
}

/// How often an idle loop looks whether a vport's session still stands: a
/// sender facing a full ring learns the daemon is gone this late at most,
/// and a busy loop costs no system call per pass.
const CHECK_EVERY: Duration = Duration::from_millis(100);

impl Limits {
    fn done(&self, n: u64) -> bool {
        n >= self.count || self.stopped()
    }

    /// Past the deadline, asked to stop, or a port is gone.
    fn stopped(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self.stop.load(Ordering::Relaxed)
            || self.lost.borrow().is_some()
    }

    /// Ends the run: `why` is the error pkt-gen exits with.
    fn lose(&self, why: String) {
        self.lost.borrow_mut().get_or_insert(why);
    }

    /// From an idle path: every [`CHECK_EVERY`], whether `conn`'s session
    /// still stands (ends the run if not).
    fn check(&self, conn: &mut Endpoint) {
        let now = Instant::now();
        if now >= self.next_check.get() {
            self.next_check.set(now + CHECK_EVERY);
            if let Err(e) = conn.check() {
                self.lose(e);
            }
        }
    }

    /// Waits for frames on `conn`, ending the run if its session ended.
    fn wait(&self, conn: &mut Endpoint, timeout: Duration) {
        if let Err(e) = conn.wait(Some(timeout)) {
            self.lose(e);
        }
    }
}

/// Periodic report lines.
struct Reporter {
    every: Option<Duration>,
    next: Instant,
    last_t: Instant,
    last_pkts: u64,
    last_bytes: u64,
    calls: u64,
    last_calls: u64,
    quiet: bool,
}

impl Reporter {
    fn new(ms: u64, quiet: bool) -> Reporter {
        let now = Instant::now();
        let every = (ms > 0).then(|| Duration::from_millis(ms));
        Reporter {
            every,
            next: now + every.unwrap_or_default(),
            last_t: now,
            last_pkts: 0,
            last_bytes: 0,
            calls: 0,
            last_calls: 0,
            quiet,
        }
    }

    fn tick(&mut self, pkts: u64, bytes: u64) {
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if now < self.next {
            return;
        }
        let dt = now.duration_since(self.last_t).as_secs_f64();
        let (dp, db, dc) = (
            pkts - self.last_pkts,
            bytes - self.last_bytes,
            self.calls - self.last_calls,
        );
        let line = format!(
            "{:>10.3} Mpps {:>9.3} Gbit/s  avg batch {:.1}",
            dp as f64 / dt / 1e6,
            db as f64 * 8.0 / dt / 1e9,
            if dc > 0 { dp as f64 / dc as f64 } else { 0.0 }
        );
        // With --json, stdout carries only the summary.
        if self.quiet {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
        (
            self.last_t,
            self.last_pkts,
            self.last_bytes,
            self.last_calls,
        ) = (now, pkts, bytes, self.calls);
        self.next = now + every;
    }
}

/// Runs pkt-gen; returns the summary (already printed).
pub fn run(a: &PktGenArgs) -> Result<Summary, String> {
    if !(1..=1024).contains(&a.batch) {
        return Err(format!("-b must be 1..=1024, not {}", a.batch));
    }
    if let Some(r) = a.rate
        && !(r > 0.0 && r.is_finite())
    {
        return Err(format!("-R must be a positive rate, not {r}"));
    }
    let duration = match a.duration {
        Some(d) if !(d > 0.0 && d <= 86400.0) => {
            return Err("-D must be more than 0 and at most 86400 seconds".into());
        }
        d => d.map(Duration::from_secs_f64),
    };
    let mut frames = FrameGen::new(a)?;
    let stop = stop_flag();
    let rx_conn = match (a.func, &a.rx_iface) {
        (Func::Txrx, Some(ri)) => Some(Endpoint::open(ri, a.ctl.as_deref())?),
        (Func::Txrx, None) => return Err("-f txrx needs --rx-interface".into()),
        (_, Some(_)) => return Err("--rx-interface is only for -f txrx".into()),
        _ => None,
    };
    let mut conn = Endpoint::open(&a.iface, a.ctl.as_deref())?;
    if let (Some(rc), Some(ri)) = (&rx_conn, &a.rx_iface) {
        rc.wait_link(ri, &stop);
    }
    conn.wait_link(&a.iface, &stop);
    if a.len
        .split('-')
        .filter_map(|v| v.parse::<u64>().ok())
        .any(|l| l > u64::from(conn.buf_size()))
    {
        return Err(format!(
            "length {} does not fit the port's {}-byte buffers",
            a.len,
            conn.buf_size()
        ));
    }
    let limits = Limits {
        count: a.count.unwrap_or(u64::MAX),
        deadline: duration.map(|d| Instant::now() + d),
        stop,
        lost: RefCell::new(None),
        next_check: Cell::new(Instant::now() + CHECK_EVERY),
    };
    let mut rep = Reporter::new(a.report_ms, a.json);
    let start = Instant::now();
    let mut s = match a.func {
        Func::Tx => tx(&mut conn, &mut frames, a, &limits, &mut rep),
        Func::Rx => rx(&mut conn, a, &limits, &mut rep, false),
        Func::Pong => rx(&mut conn, a, &limits, &mut rep, true),
        Func::Ping => ping(&mut conn, &mut frames, a, &limits),
        Func::Txrx => match rx_conn {
            Some(mut rc) => txrx(&mut conn, &mut rc, &mut frames, a, &limits, &mut rep),
            None => unreachable!("checked above"),
        },
    };
    if s.seconds == 0.0 {
        s.seconds = start.elapsed().as_secs_f64();
    }
    if s.seconds > 0.0 {
        s.pps = s.packets as f64 / s.seconds;
        s.bps = s.bytes as f64 * 8.0 / s.seconds;
    }
    if a.json {
        println!("{}", serde_json::to_string(&s).unwrap_or_default());
    } else {
        let mut line = format!(
            "{}: {} packets, {} bytes in {:.3} s: {:.3} Mpps, {:.3} Gbit/s",
            s.function,
            s.packets,
            s.bytes,
            s.seconds,
            s.pps / 1e6,
            s.bps / 1e9
        );
        if let (Some(p50), Some(p99), Some(max)) = (s.rtt_p50_ns, s.rtt_p99_ns, s.rtt_max_ns) {
            line += &format!(
                "; rtt p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                p50 as f64 / 1e3,
                p99 as f64 / 1e3,
                max as f64 / 1e3
            );
        }
        if let Some(l) = s.lost {
            line += &format!("; {l} lost");
        }
        println!("{line}");
    }
    match limits.lost.into_inner() {
        Some(why) => Err(format!("{}: {why}", a.iface)),
        None => Ok(s),
    }
}

fn idle(busy: bool) {
    if busy {
        std::hint::spin_loop();
    } else {
        std::thread::sleep(Duration::from_micros(20));
    }
}

fn tx(
    conn: &mut Endpoint,
    frames: &mut FrameGen,
    a: &PktGenArgs,
    lim: &Limits,
    rep: &mut Reporter,
) -> Summary {
    let (mut pkts, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    while !lim.done(pkts) {
        let mut want = (a.batch as u64).min(lim.count - pkts);
        if let Some(rate) = a.rate {
            let allowed = (start.elapsed().as_secs_f64() * rate) as u64;
            let credit = allowed.saturating_sub(pkts);
            if credit == 0 {
                let wait = Duration::from_secs_f64(
                    ((pkts + 1) as f64 / rate - start.elapsed().as_secs_f64()).max(0.0),
                );
                // Sleeping (rather than spinning) while ahead of the rate
                // leaves the CPU to the switch and the receiver.
                if a.busy_poll {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(
                        wait.clamp(Duration::from_micros(1), Duration::from_millis(10)),
                    );
                }
                lim.check(conn);
                rep.tick(pkts, bytes);
                continue;
            }
            want = want.min(credit);
        }
        let mut b = 0u64;
        let n = conn.send_with(want as usize, |_, buf| {
            let l = frames.fill(buf);
            b += l as u64;
            l
        });
        if n == 0 {
            idle(a.busy_poll);
            lim.check(conn);
        } else {
            pkts += n as u64;
            bytes += b;
            rep.calls += 1;
        }
        rep.tick(pkts, bytes);
    }
    Summary {
        function: "tx".into(),
        packets: pkts,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        ..Summary::default()
    }
}

/// Sends on `tx` and drains `rx` in turns, from one thread.
fn txrx(
    tx: &mut Endpoint,
    rx: &mut Endpoint,
    frames: &mut FrameGen,
    a: &PktGenArgs,
    lim: &Limits,
    rep: &mut Reporter,
) -> Summary {
    let (mut sent, mut got, mut bytes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while !lim.done(got) {
        let mut want = (a.batch as u64).min(lim.count.saturating_sub(sent));
        if let Some(rate) = a.rate {
            want = want.min(((start.elapsed().as_secs_f64() * rate) as u64).saturating_sub(sent));
        }
        let n = if want > 0 {
            tx.send_with(want as usize, |_, buf| frames.fill(buf))
        } else {
            0
        };
        sent += n as u64;
        let mut b = 0u64;
        let m = rx.recv(a.batch, |f| b += f.len() as u64);
        got += m as u64;
        bytes += b;
        if m > 0 {
            rep.calls += 1;
        }
        if n == 0 && m == 0 {
            if sent >= lim.count && !a.busy_poll {
                // Everything is sent: wait for the rest (or the deadline).
                lim.wait(rx, Duration::from_millis(10));
            } else {
                idle(a.busy_poll);
            }
            lim.check(tx);
            lim.check(rx);
        }
        rep.tick(got, bytes);
    }
    Summary {
        function: "txrx".into(),
        packets: got,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        tx_packets: Some(sent),
        ..Summary::default()
    }
}

/// Receives (and with `reflect`, sends every frame back with addresses swapped).
fn rx(
    conn: &mut Endpoint,
    a: &PktGenArgs,
    lim: &Limits,
    rep: &mut Reporter,
    reflect: bool,
) -> Summary {
    let (mut pkts, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut back: Vec<Vec<u8>> = Vec::with_capacity(a.batch);
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let own = a
        .src_mac
        .as_deref()
        .and_then(|m| parse_macs(m).ok())
        .map_or_else(default_mac, |m| MacAddr::from_u64(m.lo));
    while !lim.done(pkts) {
        let max = (a.batch as u64).min(lim.count - pkts) as usize;
        let mut b = 0u64;
        let n = conn.recv(max, |f| {
            b += f.len() as u64;
            if reflect {
                let mut v = spare.pop().unwrap_or_default();
                v.clear();
                v.extend_from_slice(f);
                reply_addresses(&mut v, own);
                back.push(v);
            }
        });
        if n > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            pkts += n as u64;
            bytes += b;
            rep.calls += 1;
            if reflect {
                let mut sent = 0;
                // Bounded by -D too: a switch that stopped reading this
                // port (it was detached) must not keep us here.
                while sent < back.len() && !lim.stopped() {
                    sent += conn.send(back[sent..].iter().map(|v| v.as_slice()));
                    if sent < back.len() {
                        idle(a.busy_poll);
                        lim.check(conn);
                    }
                }
                spare.append(&mut back);
            }
        } else if a.busy_poll {
            std::hint::spin_loop();
            lim.check(conn);
        } else {
            lim.wait(conn, Duration::from_millis(50));
        }
        rep.tick(pkts, bytes);
    }
    let seconds = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    Summary {
        function: if reflect { "pong" } else { "rx" }.into(),
        packets: pkts,
        bytes,
        seconds: if seconds > 0.0 { seconds } else { 0.0 },
        ..Summary::default()
    }
}

/// Turns frame `f` into its reply: the MAC, IPv4 and UDP/TCP port ends
/// swapped. A frame sent to a group address (the broadcast of a default
/// ping) is answered from `own`, as a host answers: a group address is
/// never a source, and a learning switch drops frames that claim one.
fn reply_addresses(f: &mut [u8], own: MacAddr) {
    if f.len() >= 12 {
        let (d, s) = f.split_at_mut(6);
        d[..6].swap_with_slice(&mut s[..6]);
        if s[0] & 1 != 0 {
            s[..6].copy_from_slice(&own.0);
        }
    }
    if f.len() >= 42 && f[12..14] == [0x08, 0x00] {
        let (a, b) = f[26..34].split_at_mut(4);
        a.swap_with_slice(b);
        let (a, b) = f[34..38].split_at_mut(2);
        a.swap_with_slice(b);
    }
}

const PING_MAGIC: [u8; 2] = *b"mP";
/// Where ping puts its magic and sequence number (after the UDP header; it
/// fits a minimum-size frame). One ping is outstanding at a time, so the
/// send time stays with the sender.
const PING_OFF: usize = 42;
const PING_LEN: usize = 6;

fn ping(conn: &mut Endpoint, frames: &mut FrameGen, a: &PktGenArgs, lim: &Limits) -> Summary {
    let clock = Instant::now();
    let rate = a.rate.unwrap_or(1000.0);
    let mut rtts: Vec<u64> = Vec::new();
    let (mut seq, mut lost, mut bytes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while !lim.done(rtts.len() as u64) {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        while Instant::now() < due {
            idle(a.busy_poll);
        }
        let sent_at = clock.elapsed().as_nanos() as u64;
        let mut len = 0;
        let n = conn.send_with(1, |_, buf| {
            len = frames.fill(buf);
            buf[PING_OFF..PING_OFF + 2].copy_from_slice(&PING_MAGIC);
            buf[PING_OFF + 2..PING_OFF + PING_LEN].copy_from_slice(&(seq as u32).to_be_bytes());
            len
        });
        if n == 0 {
            idle(a.busy_poll);
            lim.check(conn);
            continue;
        }
        bytes += len as u64;
        // Wait up to a second for this ping's reply; stale replies are skipped.
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut got = false;
        while !got
            && Instant::now() < give_up
            && !lim.stop.load(Ordering::Relaxed)
            && lim.lost.borrow().is_none()
        {
            conn.recv(a.batch, |f| {
                if f.len() >= PING_OFF + PING_LEN
                    && f[PING_OFF..PING_OFF + 2] == PING_MAGIC
                    && f[PING_OFF + 2..PING_OFF + PING_LEN] == (seq as u32).to_be_bytes()
                {
                    got = true;
                }
            });
            if !got {
                if a.busy_poll {
                    std::hint::spin_loop();
                    lim.check(conn);
                } else {
                    lim.wait(conn, Duration::from_millis(10));
                }
            }
        }
        if got {
            rtts.push(clock.elapsed().as_nanos() as u64 - sent_at);
        } else {
            lost += 1;
            if lost >= 3 && rtts.is_empty() && lim.count == u64::MAX && lim.deadline.is_none() {
                break; // nobody answers and nothing else would stop us
            }
        }
        seq += 1;
    }
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(
            ((rtts.len() as f64 * p).ceil() as usize)
                .saturating_sub(1)
                .min(rtts.len().saturating_sub(1)),
        )
        .copied()
    };
    Summary {
        function: "ping".into(),
        packets: rtts.len() as u64,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        rtt_p50_ns: pct(0.5),
        rtt_p99_ns: pct(0.99),
        rtt_max_ns: rtts.last().copied(),
        lost: Some(lost),
        ..Summary::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> PktGenArgs {
        #[derive(clap::Parser)]
        struct W {
            #[command(flatten)]
            a: PktGenArgs,
        }
        let mut v = vec!["pkt-gen", "-i", "vport:sw0:p"];
        v.extend_from_slice(extra);
        <W as clap::Parser>::try_parse_from(v).unwrap().a
    }

    #[test]
    fn ranges_parse() {
        let (ip, port) = parse_endpoint("10.0.0.1-10.0.0.4:100-103").unwrap();
        assert_eq!((ip.n, port.lo, port.n), (4, 100, 4));
        assert!(parse_endpoint("10.0.0.5-10.0.0.4").is_err());
        assert!(parse_endpoint("10.0.0.x").is_err());
        assert!(parse_len("59").is_err());
        assert_eq!(parse_len("60-64").unwrap().n, 5);
        assert_eq!(
            parse_macs("02:00:00:00:00:01-02:00:00:00:00:03").unwrap().n,
            3
        );
        assert_eq!(
            parse_iface("vport:sw:p1").unwrap(),
            ("sw".into(), "p1".into())
        );
        assert!(parse_iface("tap:x").is_err());
    }

    #[test]
    fn multi_flow_frames_cover_the_space_with_valid_checksums() {
        let a = args(&["-s", "10.0.0.1-10.0.0.2:1-2", "-l", "60-61"]);
        let mut g = FrameGen::new(&a).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let mut buf = vec![0u8; 2048];
            let len = g.fill(&mut buf);
            let f = &buf[..len];
            assert_eq!(ones_complement_sum(&f[14..34]), 0xffff);
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, len - 14);
            seen.insert((f[29], f[35]));
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn pong_answers_a_broadcast_from_its_own_address() {
        let mut f = udp_frame(
            60,
            MacAddr([0xff; 6]),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            5,
            6,
        );
        reply_addresses(&mut f, MacAddr::local(9));
        assert_eq!(&f[0..6], &MacAddr::local(1).0);
        assert_eq!(&f[6..12], &MacAddr::local(9).0);
    }

    #[test]
    fn pong_swaps_both_ends() {
        let mut f = udp_frame(
            60,
            MacAddr::local(2),
            MacAddr::local(1),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            5,
            6,
        );
        reply_addresses(&mut f, MacAddr::local(9));
        assert_eq!(&f[0..6], &MacAddr::local(1).0);
        assert_eq!(&f[6..12], &MacAddr::local(2).0);
        assert_eq!(&f[26..30], &[10, 0, 0, 2]);
        assert_eq!(&f[34..36], &6u16.to_be_bytes());
    }
}
