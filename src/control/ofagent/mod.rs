//! The OpenFlow agent of a switch whose module is `flow` (OpenFlow 1.0 and
//! 1.3 to 1.5): what `ovs-ofctl` and controllers (os-ken/Ryu, Faucet,
//! ONOS...) talk to. The protocol is `crate::ofproto`'s engine; this is its
//! sockets.
//!
//! One thread per switch runs a poll loop over its listeners (`ptcp:`,
//! `pssl:`, `punix:`), the controllers it dials (`tcp:`, `ssl:`, `unix:`,
//! reconnecting with a backoff of 1 s doubling to 8 s), every open
//! connection (TLS ones with the keys of [`AgentConfig::tls`], taken
//! afresh for every new connection), and the
//! switch's packet-in queue; the protocol itself is [`core::Core`], which
//! does no I/O. Every `probe` of silence a connection gets an echo request
//! and is dropped if it stays silent as long again. Snoop listeners
//! (`BR.snoop`, for `ovs-ofctl snoop`) get copies of a dialled
//! controller's messages ([`snoop`]).
//!
//! With no controller, a `standalone` switch starts with Open vSwitch's
//! `priority=0 actions=NORMAL` flow, so it forwards from its first packet;
//! a `secure` one starts with empty tables.
//!
//! Fail mode, when controllers are configured (as in Open vSwitch):
//! `secure` keeps forwarding with the flow tables as they are while no
//! controller is connected; `standalone` (the default) turns the switch
//! into a learning bridge after 3 s without any, and gives the tables back
//! when a controller completes its handshake.

mod admit;
pub mod net;
mod snoop;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::module::Module;
use crate::module::flow::FlowModule;
use crate::openflow::Versions;
use crate::stream::{Stream, TlsKeys};
use crate::switch::Switch;
use crate::sys::{self, EventFd, POLL_ERR, POLL_IN, POLL_OUT, PollFd};

pub use crate::control::limits::OfLimits;
pub use crate::ofproto::default_dpid;
use crate::ofproto::{Engine, SwitchDatapath};
pub use net::{Listener, Passive, Remote};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Secure,
    #[default]
    Standalone,
}

impl std::str::FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<FailMode, String> {
        match s {
            "secure" => Ok(FailMode::Secure),
            "standalone" => Ok(FailMode::Standalone),
            _ => Err(format!("bad fail mode '{s}' (secure or standalone)")),
        }
    }
}

/// How a switch's agent connects.
#[derive(Clone, Debug, Default)]
pub struct AgentConfig {
    pub controllers: Vec<Remote>,
    pub listen: Vec<Passive>,
    pub dpid: Option<u64>,
    pub fail_mode: FailMode,
    /// Silence before an echo request (default 5 s).
    pub probe: Option<Duration>,
    /// The OpenFlow versions to negotiate (default: every one supported).
    pub versions: Versions,
    /// Where `ovs-ofctl snoop` connects (`BR.snoop`): see [`snoop`].
    pub snoop: Vec<Passive>,
    /// Keys for `ssl:` and `pssl:` (none by default: those then fail with
    /// a clear error).
    pub tls: Arc<TlsKeys>,
    /// Connections per peer and in all, handshake time.
    pub limits: OfLimits,
}

/// Parses a datapath id: hex with `0x` (or 16 hex digits, as ovs-vsctl
/// writes them), or decimal.
pub fn parse_dpid(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if t.len() == 16 {
        u64::from_str_radix(t, 16)
    } else {
        t.parse()
    };
    r.map_err(|_| format!("bad datapath id '{s}' (hex 0x... or 16 hex digits, or decimal)"))
}

/// How long a standalone switch waits for a controller before it acts as
/// a learning bridge.
const FAIL_OPEN_AFTER: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Reads (of up to 64 KiB) from one connection per round of the loop.
const READS_PER_ROUND: usize = 16;

/// A running agent; dropping it stops the thread and closes every socket.
pub struct Agent {
    stop: Arc<AtomicBool>,
    bell: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    /// What it listens on (with the real port of `ptcp:0`).
    pub listening: Vec<String>,
    /// Each dialled controller's connection, as the loop last saw it.
    status: Arc<std::sync::Mutex<Vec<ControllerStatus>>>,
}

/// What is known of the connection to one dialled controller (what
/// ovs-vswitchd writes to the Controller table).
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerStatus {
    pub target: String,
    /// Handshake done and the connection open.
    pub connected: bool,
    /// Open vSwitch's connection states: `ACTIVE`, `CONNECTING`, `BACKOFF`.
    pub state: &'static str,
    /// Its role while connected: `other`, `master` or `slave`.
    pub role: Option<&'static str>,
    pub last_connected: Option<Instant>,
    pub last_disconnected: Option<Instant>,
    pub last_error: Option<String>,
}

/// A controller this switch dials.
struct Active {
    remote: Remote,
    state: ActiveState,
    backoff: Duration,
    last_connected: Option<Instant>,
    last_disconnected: Option<Instant>,
    last_error: Option<String>,
}

enum ActiveState {
    Idle { retry_at: Instant },
    Connecting { stream: Stream, since: Instant },
    Up { conn: u64 },
}

struct Link {
    stream: Stream,
    /// Index into `actives` for a dialled connection.
    active: Option<usize>,
    /// Its message boundaries, for snoops (dialled connections only).
    tap: snoop::Tap,
    /// Who is at the other end (for log lines).
    peer: String,
    /// Who it counts against for the per-peer limit ([`admit::peer_key`]).
    key: String,
    /// When it was opened, whether its peer ever sent something other
    /// than HELLO and echoes, and when it last did (`since` until then).
    since: Instant,
    used: bool,
    used_at: Instant,
    /// The boundaries of what the peer sends (to tell echoes from use).
    rx: snoop::Framer,
}

impl Link {
    fn new(stream: Stream, active: Option<usize>, peer: String, key: String) -> Link {
        let now = Instant::now();
        Link {
            stream,
            active,
            tap: Default::default(),
            peer,
            key,
            since: now,
            used: false,
            used_at: now,
            rx: Default::default(),
        }
    }
}

/// At most one line a second about refused incoming connections (TLS
/// handshakes that fail), however many there are.
#[derive(Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    fn line(&mut self, switch: &str, msg: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        let more = match std::mem::take(&mut self.suppressed) {
            0 => String::new(),
            n => format!(" ({n} similar lines suppressed)"),
        };
        tracing::warn!("{switch}: {msg}{more}");
        self.last = Some(now);
    }
}

struct Loop {
    /// The protocol engine; its datapath holds the switch and the tables.
    core: Engine<SwitchDatapath>,
    listeners: Vec<Listener>,
    snoops: snoop::Snoops,
    actives: Vec<Active>,
    links: std::collections::BTreeMap<u64, Link>,
    fail_mode: FailMode,
    /// Last time some controller had a connection up.
    last_controller: Instant,
    fail_open: bool,
    origin: Instant,
    status: Arc<std::sync::Mutex<Vec<ControllerStatus>>>,
    tls: Arc<TlsKeys>,
    refused: LogLimit,
    limits: OfLimits,
    /// Listeners are not polled until then (accepting failed).
    listen_pause: Option<Instant>,
}

impl Agent {
    /// Binds the listeners (errors are returned, nothing is left running)
    /// and starts the agent thread.
    pub fn start(
        sw: Arc<Switch>,
        flow: Arc<FlowModule>,
        cfg: AgentConfig,
    ) -> Result<Agent, String> {
        let mut listeners = Vec::new();
        let mut listening = Vec::new();
        for p in &cfg.listen {
            let l = Listener::bind(p)?;
            listening.push(match (p, l.local_port()) {
                (Passive::Tcp(a), Some(port)) => format!("ptcp:{port}:{}", a.ip()),
                (Passive::Ssl(a), Some(port)) => format!("pssl:{port}:{}", a.ip()),
                _ => p.to_string(),
            });
            listeners.push(l);
        }
        let snoops = snoop::Snoops::new(
            cfg.snoop
                .iter()
                .map(Listener::bind)
                .collect::<Result<_, _>>()?,
        );
        if cfg.controllers.is_empty() && cfg.fail_mode == FailMode::Standalone {
            // As Open vSwitch: a standalone bridge with no controller
            // forwards from its first packet.
            flow.flow_mod(&crate::ofproto::standalone_flow(), sw.now())
                .map_err(|e| format!("cannot install the standalone NORMAL flow: {e}"))?;
        }
        let dpid = cfg.dpid.unwrap_or_else(|| default_dpid(sw.name()));
        let probe = cfg.probe.unwrap_or(Duration::from_secs(5));
        let dp = SwitchDatapath::new(sw.clone(), flow, dpid);
        let status = Arc::new(std::sync::Mutex::new(Vec::new()));
        let now = Instant::now();
        let lp = Loop {
            core: Engine::with_versions(dp, probe.as_nanos() as u64, cfg.versions),
            listeners,
            snoops,
            actives: cfg
                .controllers
                .iter()
                .map(|r| Active {
                    remote: r.clone(),
                    state: ActiveState::Idle { retry_at: now },
                    backoff: BACKOFF_MIN,
                    last_connected: None,
                    last_disconnected: None,
                    last_error: None,
                })
                .collect(),
            links: Default::default(),
            fail_mode: cfg.fail_mode,
            last_controller: now,
            fail_open: false,
            origin: now,
            status: status.clone(),
            tls: cfg.tls.clone(),
            refused: LogLimit::default(),
            limits: cfg.limits.clone(),
            listen_pause: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let bell = Arc::new(EventFd::new().map_err(|e| e.to_string())?);
        let (s, b) = (stop.clone(), bell.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{}-ofp", sw.name()))
            .spawn(move || lp.run(&s, &b))
            .map_err(|e| format!("cannot start the OpenFlow agent: {e}"))?;
        Ok(Agent {
            stop,
            bell,
            thread: Some(thread),
            listening,
            status,
        })
    }

    /// Each controller this agent dials, and whether it is connected now
    /// (handshake done).
    pub fn controllers(&self) -> Vec<(String, bool)> {
        self.controller_status()
            .into_iter()
            .map(|c| (c.target, c.connected))
            .collect()
    }

    /// Each controller this agent dials, in detail.
    pub fn controller_status(&self) -> Vec<ControllerStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.bell.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A controller role as the Controller table spells it.
fn role_name(r: crate::openflow::message::ControllerRole) -> &'static str {
    use crate::openflow::message::ControllerRole as R;
    match r {
        R::Master => "master",
        R::Slave => "slave",
        R::Equal | R::NoChange => "other",
    }
}

/// What a poll slot stands for.
#[derive(Clone, Copy)]
enum Slot {
    Bell,
    PacketIn,
    Listener(usize),
    Link(u64),
    Connecting(usize),
    Snoop(snoop::SnoopSlot),
}

impl Loop {
    fn nanos(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn run(mut self, stop: &AtomicBool, bell: &EventFd) {
        let mut last_ports = Instant::now();
        let mut last_links = Instant::now();
        let mut fds: Vec<PollFd> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        while !stop.load(Ordering::Acquire) {
            fds.clear();
            slots.clear();
            let mut add = |fd, events, s| {
                fds.push(PollFd {
                    fd,
                    events,
                    revents: 0,
                });
                slots.push(s);
            };
            add(bell.as_raw_fd(), POLL_IN, Slot::Bell);
            add(self.core.dp.sw.packet_in_fd(), POLL_IN, Slot::PacketIn);
            // Always (a full switch makes room for a newcomer, admit.rs),
            // unless accepting failed a moment ago.
            if self.listen_pause.is_none_or(|t| Instant::now() >= t) {
                for (i, l) in self.listeners.iter().enumerate() {
                    add(l.as_raw_fd(), POLL_IN, Slot::Listener(i));
                }
            }
            // Decrypted input already inside a TLS stream wakes no poll.
            let mut buffered = Vec::new();
            for (&id, l) in &mut self.links {
                let c = self.core.conn(id);
                let mut ev = 0;
                if c.is_some_and(|c| c.wants_read()) {
                    ev |= POLL_IN;
                    if l.stream.buffered_input() {
                        buffered.push(id);
                    }
                }
                if c.is_some_and(|c| !c.out.is_empty()) || l.stream.wants_write() {
                    ev |= POLL_OUT;
                }
                add(l.stream.as_raw_fd(), ev, Slot::Link(id));
            }
            for (i, a) in self.actives.iter().enumerate() {
                if let ActiveState::Connecting { stream, .. } = &a.state {
                    add(stream.as_raw_fd(), POLL_OUT, Slot::Connecting(i));
                }
            }
            self.snoops
                .poll_fds(|fd, ev, s| add(fd, ev, Slot::Snoop(s)));
            let wait = if buffered.is_empty() { 100 } else { 0 };
            sys::poll(&mut fds, Some(Duration::from_millis(wait)));
            for id in buffered {
                self.read(id);
            }
            let mut ready = Vec::new();
            for k in 0..fds.len() {
                let r = fds[k].revents;
                if r == 0 {
                    continue;
                }
                match slots[k] {
                    Slot::Bell => {
                        bell.drain();
                    }
                    Slot::PacketIn => {}
                    // After the connections' input (below): a connection
                    // that asked something is no longer the quietest.
                    Slot::Listener(i) => ready.push(i),
                    Slot::Link(id) => {
                        if r & (POLL_IN | POLL_ERR) != 0 {
                            self.read(id);
                        }
                    }
                    Slot::Connecting(i) => self.connected(i),
                    Slot::Snoop(snoop::SnoopSlot::Listener(i)) => {
                        let (actives, core) = (&self.actives, &self.core);
                        self.snoops.accept(i, || snoop_target(actives, core));
                    }
                    Slot::Snoop(snoop::SnoopSlot::Conn(id)) => self.snoops.read(id),
                }
            }
            for i in ready {
                self.accept(i);
            }
            // Packet-ins: drained every round (the fd only wakes us).
            self.core.dp.sw.ack_packet_in();
            let ports = last_ports.elapsed() >= Duration::from_millis(100);
            let links = last_links.elapsed() >= Duration::from_secs(1);
            if ports {
                last_ports = Instant::now();
                let lim = self.limits.clone();
                admit::expire_handshakes(&mut self, &lim, last_ports);
            }
            if links {
                last_links = Instant::now();
                self.core.dp.expire();
            }
            self.core.poll_datapath(4096, ports, links);
            let now = self.nanos();
            self.core.tick(now);
            self.dial();
            self.fail_mode_step();
            self.flush_all();
        }
    }

    fn read(&mut self, id: u64) {
        let mut buf = [0u8; 65536];
        // Bounded: one busy peer cannot keep the loop from the others.
        for _ in 0..READS_PER_ROUND {
            if !self.core.conn(id).is_some_and(|c| c.wants_read()) {
                return;
            }
            let Some(l) = self.links.get_mut(&id) else {
                return;
            };
            match l.stream.read(&mut buf) {
                Ok(0) => return self.drop_link(id, "closed by peer"),
                Ok(n) => {
                    if let Some(i) = l.active {
                        self.snoops.follow(&mut l.tap.rx, i, &buf[..n]);
                    }
                    admit::saw_input(l, &buf[..n], Instant::now());
                    let now = self.nanos();
                    self.core.input(id, &buf[..n], now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.drop_link(id, &e.to_string()),
            }
        }
    }

    /// Writes what each connection has queued; closes those that are done
    /// or broken.
    fn flush_all(&mut self) {
        let ids: Vec<u64> = self.links.keys().copied().collect();
        for id in ids {
            let Some(c) = self.core.conn_mut(id) else {
                self.drop_link(id, "gone");
                continue;
            };
            let Some(l) = self.links.get_mut(&id) else {
                continue;
            };
            let mut written = 0;
            let mut broken = None;
            while written < c.out.len() {
                match l.stream.write(&c.out[written..]) {
                    Ok(0) => {
                        broken = Some("write returned 0".to_owned());
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(i) = l.active {
                self.snoops.follow(&mut l.tap.tx, i, &c.out[..written]);
            }
            c.out.drain(..written);
            if broken.is_none() && l.stream.wants_write() {
                match l.stream.flush() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                        broken = Some(e.to_string());
                    }
                    _ => {}
                }
            }
            if let Some(why) = broken {
                self.drop_link(id, &why);
            } else if c.out.is_empty()
                && let Some(why) = c.closing.clone()
            {
                self.drop_link(id, &why);
            }
        }
        self.snoops.flush();
    }

    fn drop_link(&mut self, id: u64, why: &str) {
        self.core.close(id);
        let Some(l) = self.links.remove(&id) else {
            return;
        };
        if l.active.is_none() && why.starts_with("TLS") {
            // A peer refused in the handshake (its certificate, most
            // likely): worth a line, unlike ovs-ofctl's short connections.
            let sw = self.core.dp.sw.name().to_owned();
            self.refused.line(
                &sw,
                &format!("TLS connection from {} failed: {why}", l.peer),
            );
        }
        if let Some(i) = l.active
            && let Some(a) = self.actives.get_mut(i)
        {
            // Controllers come and go rarely: say so (ovs-ofctl's many
            // short connections are not worth a line each).
            tracing::warn!(
                "{}: controller {} disconnected ({why}); retrying in {:?}",
                self.core.dp.sw.name(),
                a.remote,
                a.backoff
            );
            a.state = ActiveState::Idle {
                retry_at: Instant::now() + a.backoff,
            };
            a.backoff = (a.backoff * 2).min(BACKOFF_MAX);
            a.last_disconnected = Some(Instant::now());
            a.last_error = Some(why.to_owned());
        }
    }

    /// Starts connections to controllers whose retry time has come.
    fn dial(&mut self) {
        let now = Instant::now();
        for i in 0..self.actives.len() {
            let a = &mut self.actives[i];
            match &a.state {
                ActiveState::Idle { retry_at } if *retry_at <= now => {
                    // Without usable keys there is no point connecting.
                    if let Remote::Ssl(..) = a.remote
                        && let Err(e) = self.tls.client_config()
                    {
                        let e = e.to_string();
                        if a.last_error.as_ref() != Some(&e) {
                            tracing::warn!(
                                "{}: controller {}: {e}",
                                self.core.dp.sw.name(),
                                a.remote
                            );
                        }
                        a.last_error = Some(e);
                        a.state = ActiveState::Idle {
                            retry_at: now + a.backoff,
                        };
                        a.backoff = (a.backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                    match net::connect(&a.remote) {
                        Ok(stream @ Stream::Tcp(_)) => {
                            a.state = ActiveState::Connecting { stream, since: now };
                        }
                        Ok(stream) => self.up(i, stream),
                        Err(e) => {
                            a.last_error = Some(e.to_string());
                            a.state = ActiveState::Idle {
                                retry_at: now + a.backoff,
                            };
                            a.backoff = (a.backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
                ActiveState::Connecting { since, .. }
                    if now.duration_since(*since) > a.backoff.max(BACKOFF_MIN) * 2 =>
                {
                    a.state = ActiveState::Idle {
                        retry_at: now + a.backoff,
                    };
                    a.backoff = (a.backoff * 2).min(BACKOFF_MAX);
                }
                // A connection that completed its handshake resets the
                // backoff.
                ActiveState::Up { conn } if self.core.is_open(*conn) => a.backoff = BACKOFF_MIN,
                _ => {}
            }
        }
    }

    /// A TCP connect finished (or failed).
    fn connected(&mut self, i: usize) {
        let a = &mut self.actives[i];
        let state = std::mem::replace(
            &mut a.state,
            ActiveState::Idle {
                retry_at: Instant::now() + a.backoff,
            },
        );
        let ActiveState::Connecting { stream, .. } = state else {
            a.state = state;
            return;
        };
        let r = sys::socket_error(stream.as_raw_fd()).and_then(|()| stream.set_nonblocking());
        let stream = match (r, stream, &a.remote) {
            (Ok(()), Stream::Tcp(s), Remote::Ssl(host, _)) => {
                Stream::tls_client(s, &self.tls, host).map_err(io::Error::other)
            }
            (Ok(()), s, _) => Ok(s),
            (Err(e), ..) => Err(e),
        };
        match stream {
            Ok(stream) => self.up(i, stream),
            Err(e) => {
                a.last_error = Some(e.to_string());
                a.backoff = (a.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn up(&mut self, i: usize, stream: Stream) {
        let tls = if matches!(stream, Stream::Tls(_)) {
            " (TLS handshake under way)"
        } else {
            ""
        };
        tracing::info!(
            "{}: connected to controller {}{tls}",
            self.core.dp.sw.name(),
            self.actives[i].remote
        );
        let now = self.nanos();
        let peer = self.actives[i].remote.to_string();
        let id = self.core.open(peer.clone(), now);
        self.links
            .insert(id, Link::new(stream, Some(i), peer.clone(), peer));
        self.actives[i].state = ActiveState::Up { conn: id };
        self.actives[i].last_connected = Some(Instant::now());
    }

    /// Standalone fail mode: learn while no controller is there. Also
    /// publishes which controllers are connected.
    fn fail_mode_step(&mut self) {
        let now: Vec<ControllerStatus> = self
            .actives
            .iter()
            .map(|a| {
                let conn = match a.state {
                    ActiveState::Up { conn } => self.core.conn(conn).filter(|c| c.is_open()),
                    _ => None,
                };
                ControllerStatus {
                    target: a.remote.to_string(),
                    connected: conn.is_some(),
                    state: match (&a.state, conn) {
                        (_, Some(_)) | (ActiveState::Up { .. }, None) => "ACTIVE",
                        (ActiveState::Connecting { .. }, _) => "CONNECTING",
                        (ActiveState::Idle { .. }, _) => "BACKOFF",
                    },
                    role: conn.map(|c| role_name(c.role())),
                    last_connected: a.last_connected,
                    last_disconnected: a.last_disconnected,
                    last_error: a.last_error.clone(),
                }
            })
            .collect();
        {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            if *st != now {
                *st = now;
            }
        }
        if self.actives.is_empty() || self.fail_mode != FailMode::Standalone {
            return;
        }
        let any_up = self
            .actives
            .iter()
            .any(|a| matches!(a.state, ActiveState::Up { conn } if self.core.is_open(conn)));
        if any_up {
            self.last_controller = Instant::now();
            if self.fail_open {
                self.fail_open = false;
                let dp = &self.core.dp;
                dp.sw.set_module(dp.flow.clone() as Arc<dyn Module>);
            }
        } else if !self.fail_open
            && self.last_controller.elapsed() >= FAIL_OPEN_AFTER
            && let Ok(m) = crate::module::build("learn")
        {
            self.fail_open = true;
            self.core.dp.sw.set_module(m);
        }
    }
}

/// The dialled controller a new snoop watches, as Open vSwitch picks it:
/// the first whose connection is master, else equal, else slave, else
/// the first configured; none without dialled controllers.
fn snoop_target(actives: &[Active], core: &Engine<SwitchDatapath>) -> Option<usize> {
    use crate::openflow::message::ControllerRole as R;
    let preference = |a: &Active| match a.state {
        ActiveState::Up { conn } => match core.conn(conn).filter(|c| c.is_open()) {
            Some(c) => match c.role() {
                R::Master => 3,
                R::Equal | R::NoChange => 2,
                R::Slave => 1,
            },
            None => 0,
        },
        _ => 0,
    };
    // The first of the best: `max_by_key` keeps the last of equals.
    (0..actives.len())
        .rev()
        .max_by_key(|&i| preference(&actives[i]))
}
