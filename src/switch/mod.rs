//! The switching core: a [`Switch`] owns worker threads that move packets
//! between attached ports with the mSwitch algorithm ([`forward`]).
//!
//! The core knows nothing of Ethernet, MACs or flows: it moves buffers where
//! the module says. Control talks to it through the narrow [`Switch`] handle:
//! attach and detach ports, swap the module, read counters. Each change
//! publishes a new immutable [`Table`]; workers switch to it between batches,
//! and a change returns only once every worker has, so after `detach`
//! returns no worker touches the port again. Traffic between the other ports
//! never stops.

pub mod capture;
pub mod forward;
pub mod lease;
pub mod mirror;
pub mod stats;
pub mod table;
mod worker;

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::module::{Module, Nanos};
use crate::packet::{PacketRef, TunMeta};
use crate::port::{LinkState, MAX_PORTS, Port, PortId};

pub use forward::Forwarder;
pub use stats::{DROP_REASONS, DropReason, Drops, PortTotals};
pub use table::{PacketIn, PacketIns, PortEntry, Table};
use worker::WorkerShared;

/// Most packets a worker reads from one port per pass.
pub const MAX_BATCH: usize = 1024;
pub const DEFAULT_BATCH: usize = 512;

#[derive(Clone, Debug)]
pub struct SwitchConfig {
    pub name: String,
    /// Forwarding threads.
    pub workers: usize,
    /// Most packets read from one port per pass (1..=1024).
    pub batch: usize,
    /// Pin worker `i` to `cpus[i % len]`.
    pub cpus: Option<Vec<usize>>,
    /// How long a port must stay empty before its worker stops polling it and
    /// waits for a signal; `None` busy-polls forever.
    pub idle_after: Option<Duration>,
    /// Packets queued for the controller before further ones are dropped.
    pub packet_in_queue: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            name: "sw0".into(),
            workers: 1,
            batch: DEFAULT_BATCH,
            cpus: None,
            idle_after: Some(Duration::from_micros(200)),
            packet_in_queue: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("a port named '{0}' is already attached")]
    NameTaken(String),
    #[error("port number {0} is already in use")]
    PortInUse(PortId),
    #[error("no port {0} on this switch")]
    NoSuchPort(String),
    #[error("switch is full ({} ports)", MAX_PORTS - 1)]
    Full,
    #[error("invalid switch configuration: {0}")]
    BadConfig(String),
    #[error("cannot start switch: {0}")]
    Os(#[from] io::Error),
}

/// State shared by control and the workers.
pub(crate) struct Shared {
    cfg: SwitchConfig,
    table: Mutex<Arc<Table>>,
    /// Generation of the newest table; workers compare it every round.
    generation: AtomicU64,
    stop: AtomicBool,
    workers: Vec<WorkerShared>,
    packet_in: PacketIns,
    epoch: Instant,
}

impl Shared {
    fn table(&self) -> Arc<Table> {
        self.lock_table().clone()
    }

    fn lock_table(&self) -> MutexGuard<'_, Arc<Table>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos(&self, t: Instant) -> Nanos {
        t.saturating_duration_since(self.epoch).as_nanos() as Nanos
    }
}

/// A running switch and the handle that controls it. Dropping it stops the
/// workers.
pub struct Switch {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Serialises control operations (table changes).
    control: Mutex<()>,
    /// Serialises [`Switch::transmit`] callers: they share one copy of the
    /// port counters (index `workers + 1`). Detach and replace take it
    /// after publishing, to wait for a transmit still on the old table.
    tx: Mutex<()>,
}

/// A port's identity and counters.
#[derive(Clone, Debug, Serialize)]
pub struct PortStats {
    pub id: u16,
    pub name: String,
    pub kind: &'static str,
    /// The worker that polls the port's (first) incoming queue.
    pub worker: usize,
    /// The worker of each incoming queue, in queue order.
    pub queue_workers: Vec<usize>,
    /// The backend's own counters ([`Port::counters`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_counters: Vec<(&'static str, u64)>,
    /// Whether the port can carry frames now: its [`PortStats::state`] is `up`.
    pub link_up: bool,
    /// The state of the device behind the port ([`Port::link_state`]):
    /// `up`, `down`, or `gone` (a vanished interface).
    pub state: LinkState,
    #[serde(flatten)]
    pub totals: PortTotals,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkerStats {
    pub id: usize,
    pub cpu: Option<usize>,
    /// Incoming queues it polls.
    pub queues: usize,
    pub packets: u64,
    pub sleeps: u64,
    /// Nanoseconds spent moving packets (see `top`'s busy share).
    pub busy_ns: u64,
    pub sleeping: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SwitchStats {
    pub name: String,
    pub module: &'static str,
    pub module_counters: Vec<(&'static str, u64)>,
    pub ports: Vec<PortStats>,
    pub workers: Vec<WorkerStats>,
    pub drops: Drops,
    pub packet_in_queued: usize,
}

impl Switch {
    /// Starts the workers with `module` and no ports.
    pub fn new(cfg: SwitchConfig, module: Arc<dyn Module>) -> Result<Switch, SwitchError> {
        if cfg.workers == 0 || cfg.workers > 256 {
            return Err(SwitchError::BadConfig(format!(
                "workers must be 1..=256, not {}",
                cfg.workers
            )));
        }
        if cfg.batch == 0 || cfg.batch > MAX_BATCH {
            return Err(SwitchError::BadConfig(format!(
                "batch must be 1..={MAX_BATCH}, not {}",
                cfg.batch
            )));
        }
        if let Some(c) = &cfg.cpus
            && c.is_empty()
        {
            return Err(SwitchError::BadConfig("empty CPU list".into()));
        }
        let workers = (0..cfg.workers)
            .map(|i| WorkerShared::new(cfg.cpus.as_ref().map(|c| c[i % c.len()])))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            packet_in: PacketIns::new(cfg.packet_in_queue)?,
            table: Mutex::new(Arc::new(Table::new(module))),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            workers,
            epoch: Instant::now(),
            cfg,
        });
        let mut threads = Vec::new();
        for w in 0..shared.cfg.workers {
            let s = shared.clone();
            let name = format!("{}-w{w}", shared.cfg.name);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || worker::run(s, w))?,
            );
        }
        Ok(Switch {
            shared,
            threads,
            control: Mutex::new(()),
            tx: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &SwitchConfig {
        &self.shared.cfg
    }

    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// Nanoseconds since the switch started (the modules' clock).
    pub fn now(&self) -> Nanos {
        self.shared.nanos(Instant::now())
    }

    fn lock_control(&self) -> MutexGuard<'_, ()> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tx(&self) -> MutexGuard<'_, ()> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies of each port's counters: one per worker, one for control
    /// ([`Switch::replace`]), one for [`Switch::transmit`].
    fn counter_copies(&self) -> usize {
        self.shared.workers.len() + 2
    }

    /// Publishes a table and waits until every worker uses it.
    fn publish(&self, t: Table) {
        let generation = t.generation;
        *self.shared.lock_table() = Arc::new(t);
        self.shared.generation.store(generation, Ordering::Release);
        for w in &self.shared.workers {
            w.bell.notify();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .shared
            .workers
            .iter()
            .any(|w| w.seen_gen.load(Ordering::Acquire) < generation)
        {
            if Instant::now() > deadline {
                tracing::error!(
                    "{}: a worker did not acknowledge table {generation} within 5 s",
                    self.name()
                );
                break;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Attaches a port as number `id` (or the lowest free number) and returns
    /// the number. Traffic between other ports goes on meanwhile.
    pub fn attach(&self, port: Arc<dyn Port>, id: Option<PortId>) -> Result<PortId, SwitchError> {
        self.attach_to(port, id, None)
    }

    /// Like `attach`, with the port's incoming ring polled by worker `owner`
    /// (`None`: the worker with the fewest queues). A port with several
    /// incoming queues has each polled by its own worker while there are
    /// workers enough: queue 0 by `owner` (or the least loaded worker), each
    /// further queue by the least loaded worker that polls none of the
    /// port's queues yet.
    pub fn attach_to(
        &self,
        port: Arc<dyn Port>,
        id: Option<PortId>,
        owner: Option<usize>,
    ) -> Result<PortId, SwitchError> {
        let _g = self.lock_control();
        let cur = self.shared.table();
        if cur.entries().any(|e| e.port.name() == port.name()) {
            return Err(SwitchError::NameTaken(port.name().to_owned()));
        }
        let id = match id {
            // Checked before anything is registered: 0 and numbers past the
            // table are not port numbers (the table would panic on them).
            Some(id) if PortId::new(u32::from(id.0)).is_none() => {
                return Err(SwitchError::BadConfig(format!(
                    "port number {id} is not in 1..={}",
                    MAX_PORTS - 1
                )));
            }
            Some(id) if cur.entry(id).is_some() => return Err(SwitchError::PortInUse(id)),
            Some(id) => id,
            None => (1..MAX_PORTS as u32)
                .filter_map(PortId::new)
                .find(|p| cur.entry(*p).is_none())
                .ok_or(SwitchError::Full)?,
        };
        let nworkers = self.shared.workers.len();
        if let Some(o) = owner
            && o >= nworkers
        {
            return Err(SwitchError::BadConfig(format!("no worker {o}")));
        }
        let owners = spread_queues(&cur, nworkers, port.incoming_queues(), owner);
        let entry = Arc::new(PortEntry::new(id, port, &owners, self.counter_copies()));
        cur.module.port_attached(id);
        self.publish(cur.derive(|t| t.insert(entry)));
        Ok(id)
    }

    /// Detaches a port by number. When this returns no worker uses the port.
    pub fn detach(&self, id: PortId) -> Result<Arc<dyn Port>, SwitchError> {
        let _g = self.lock_control();
        let cur = self.shared.table();
        let entry = cur
            .entry(id)
            .cloned()
            .ok_or_else(|| SwitchError::NoSuchPort(id.to_string()))?;
        self.publish(cur.derive(|t| {
            t.remove(id);
        }));
        // A transmit that took the old table finishes before this returns.
        drop(self.lock_tx());
        cur.module.port_detached(id);
        Ok(entry.port.clone())
    }

    /// Replaces the backend of port `id` (same number, same name, counters
    /// carried over) in one step: used to give a virtual port fresh memory
    /// when its client goes away. Returns the old backend.
    pub fn replace(&self, id: PortId, port: Arc<dyn Port>) -> Result<Arc<dyn Port>, SwitchError> {
        let _g = self.lock_control();
        let cur = self.shared.table();
        let old = cur
            .entry(id)
            .cloned()
            .ok_or_else(|| SwitchError::NoSuchPort(id.to_string()))?;
        if old.port.name() != port.name() {
            return Err(SwitchError::BadConfig(
                "a replacement port must keep its name".into(),
            ));
        }
        let nworkers = self.shared.workers.len();
        let owners = if port.incoming_queues() == old.rxq.len() {
            old.owners()
        } else {
            spread_queues(&cur, nworkers, port.incoming_queues(), Some(old.owner()))
        };
        let entry = Arc::new(PortEntry::new(id, port, &owners, self.counter_copies()));
        let carried = PortTotals::sum(&old.counters);
        entry.counters[nworkers].load_totals(&carried);
        self.publish(cur.derive(|t| t.insert(entry.clone())));
        // Workers count on the old entry until they switch tables (a batch
        // read from the port, or sent to it, just before): carry that too.
        // Once `publish` returned no worker touches the old entry, and once
        // the transmit lock is ours no transmit does.
        drop(self.lock_tx());
        let late = PortTotals::sum(&old.counters).since(&carried);
        entry.counters[nworkers].load_totals(&late);
        Ok(old.port.clone())
    }

    /// Detaches a port by name.
    pub fn detach_name(&self, name: &str) -> Result<Arc<dyn Port>, SwitchError> {
        let id = self
            .port_id(name)
            .ok_or_else(|| SwitchError::NoSuchPort(name.to_owned()))?;
        self.detach(id)
    }

    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.shared
            .table()
            .entries()
            .find(|e| e.port.name() == name)
            .map(|e| e.id)
    }

    /// Keeps capture `c` on the port named `name`: puts it there if the
    /// port's entry does not have it yet (a capture just started, or the
    /// port renewed its entry). False once no port has that name, or the
    /// name went to another port number (`id`): the capture is over.
    pub fn keep_capture(&self, id: PortId, name: &str, c: &Arc<capture::Capture>) -> bool {
        let t = self.shared.table();
        match t.entry(id) {
            Some(e) if e.port.name() == name => {
                if !e.taps.has(c) {
                    e.taps.add(c.clone());
                }
                true
            }
            _ => false,
        }
    }

    /// Ends capture `c` on port `id`.
    pub fn end_capture(&self, id: PortId, c: &Arc<capture::Capture>) {
        if let Some(e) = self.shared.table().entry(id) {
            e.taps.remove(c);
        }
    }

    /// Replaces the module while traffic flows. Batches already being
    /// processed finish with the old module.
    pub fn set_module(&self, module: Arc<dyn Module>) {
        let _g = self.lock_control();
        let cur = self.shared.table();
        for p in &cur.attached {
            module.port_attached(*p);
        }
        self.publish(cur.derive(|t| t.module = module));
    }

    /// Takes `other`'s port mirrors (a switch taking over its ports).
    pub fn set_mirrors_from(&self, other: &Switch) {
        let _g = self.lock_control();
        let m = other.shared.table().mirrors.clone();
        let cur = self.shared.table();
        self.publish(cur.derive(|t| t.mirrors = m));
    }

    /// Replaces the port mirrors (an empty list removes them) while
    /// traffic flows.
    pub fn set_mirrors(&self, specs: &[mirror::MirrorSpec]) {
        self.set_mirrors_with_vlans(specs, &[]);
    }

    /// The same, for mirrors that look at VLANs: `port_vlans` are the
    /// ports' VLAN settings (others are trunks of every VLAN).
    pub fn set_mirrors_with_vlans(
        &self,
        specs: &[mirror::MirrorSpec],
        port_vlans: &[(PortId, crate::module::flow::PortVlan)],
    ) {
        let _g = self.lock_control();
        let cur = self.shared.table();
        let m = mirror::Mirrors::new(specs, port_vlans).map(Arc::new);
        self.publish(cur.derive(|t| t.mirrors = m));
    }

    pub fn module(&self) -> Arc<dyn Module> {
        self.shared.table().module.clone()
    }

    /// Bytes of memory (rings and buffers) of every attached port.
    pub fn port_memory(&self) -> u64 {
        self.shared
            .table()
            .entries()
            .map(|e| e.port.mem().region().len() as u64)
            .sum()
    }

    /// Attached port numbers, ascending.
    pub fn ports(&self) -> Vec<PortId> {
        self.shared.table().attached.clone()
    }

    /// Takes the oldest packet queued for the controller.
    pub fn pop_packet_in(&self) -> Option<PacketIn> {
        self.shared.packet_in.pop()
    }

    /// An eventfd readable while packet-ins wait. Poll it, then call
    /// [`Switch::pop_packet_in`] until `None`: the pop that empties the
    /// queue clears the fd (under the queue's lock, so a packet queued
    /// meanwhile sets it again). The switch owns the fd.
    pub fn packet_in_fd(&self) -> RawFd {
        self.shared.packet_in.fd()
    }

    /// Clears the packet-in fd if the queue is empty (a no-op otherwise);
    /// for a reader that woke up and found nothing to pop.
    pub fn ack_packet_in(&self) {
        self.shared.packet_in.ack();
    }

    /// Sends `frames` out of port `dst` from outside the workers (the
    /// OpenFlow agent's packet-outs), through the same reserve, copy and
    /// publish path as forwarded packets, counted on the port (`tx`, and
    /// `dest_full`, `oversize`, `bad_frame` for empty frames). Returns the
    /// frames queued; 0 if `dst` is not attached (nothing is counted).
    pub fn transmit(&self, dst: PortId, frames: &[&[u8]]) -> usize {
        self.transmit_with(dst, frames, None)
    }

    /// [`Switch::transmit`] with each frame's tunnel metadata (`tun[i]`
    /// is `frames[i]`'s), for a port that sends by it (a `remote=flow`
    /// tunnel port); other ports ignore it.
    pub fn transmit_tunnel(&self, dst: PortId, frames: &[&[u8]], tun: &[TunMeta]) -> usize {
        self.transmit_with(dst, frames, Some(tun))
    }

    fn transmit_with(&self, dst: PortId, frames: &[&[u8]], tun: Option<&[TunMeta]>) -> usize {
        let _g = self.lock_tx();
        let t = self.shared.table();
        let Some(e) = t.entry(dst) else {
            return 0;
        };
        let ctr = self.counter_copies() - 1;
        let pkts: Vec<PacketRef> = frames
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| PacketRef::readonly(f))
            .collect();
        let empty = frames.len() - pkts.len();
        e.counters[ctr].drop(DropReason::BadFrame, empty as u64);
        // Indexed like `pkts` (the empty frames left out).
        let tun: Option<Vec<TunMeta>> = tun.map(|t| {
            frames
                .iter()
                .zip(t.iter().copied().chain(std::iter::repeat(TunMeta::NONE)))
                .filter(|(f, _)| !f.is_empty())
                .map(|(_, m)| m)
                .collect()
        });
        let max_len = pkts.iter().map(|p| p.len).max().unwrap_or(0);
        // `send` only reads the frames, which `frames` borrows for the call.
        forward::send(
            e,
            ctr,
            &pkts,
            0..pkts.len(),
            pkts.len() as u32,
            max_len,
            tun.as_deref(),
        ) as usize
    }

    /// Whether each of ports `ids` can carry frames now ([`Port::link_up`]),
    /// if it is attached: a cheap look, for state reported on change.
    pub fn links_up(&self, ids: &[PortId]) -> Vec<Option<bool>> {
        let t = self.shared.table();
        ids.iter()
            .map(|&id| t.entry(id).map(|e| e.port.link_up()))
            .collect()
    }

    /// Counters of one port.
    pub fn port_stats(&self, id: PortId) -> Option<PortTotals> {
        self.shared
            .table()
            .entry(id)
            .map(|e| PortTotals::sum(&e.counters))
    }

    pub fn stats(&self) -> SwitchStats {
        let t = self.shared.table();
        let mut drops = Drops::default();
        let ports: Vec<PortStats> = t
            .entries()
            .map(|e| {
                let totals = PortTotals::sum(&e.counters);
                drops.accumulate(&totals.drops);
                let state = e.port.link_state();
                PortStats {
                    id: e.id.0,
                    name: e.port.name().to_owned(),
                    kind: e.port.kind(),
                    worker: e.owner(),
                    queue_workers: e.owners(),
                    port_counters: e.port.counters(),
                    link_up: state == LinkState::Up,
                    state,
                    totals,
                }
            })
            .collect();
        let workers = self
            .shared
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| WorkerStats {
                id: i,
                cpu: w.cpu,
                queues: t
                    .entries()
                    .map(|e| e.rxq.iter().filter(|q| q.owner == i).count())
                    .sum(),
                packets: w.packets.load(Ordering::Relaxed),
                sleeps: w.sleeps.load(Ordering::Relaxed),
                busy_ns: w.busy_ns.load(Ordering::Relaxed),
                sleeping: w.sleeping.load(Ordering::Relaxed),
            })
            .collect();
        SwitchStats {
            name: self.name().to_owned(),
            module: t.module.name(),
            module_counters: t.module.counters(),
            ports,
            workers,
            drops,
            packet_in_queued: self.shared.packet_in.len(),
        }
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.shared.workers {
            w.bell.notify();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Workers for the `n` incoming queues of a new port: each queue goes to
/// the least loaded worker (counting the queues each already polls) that
/// has none of this port's queues yet, so the port's queues are spread over
/// as many workers as there are; queue 0 goes to `first` if given.
fn spread_queues(t: &Table, nworkers: usize, n: usize, first: Option<usize>) -> Vec<usize> {
    let mut load = vec![0usize; nworkers];
    for e in t.entries() {
        for q in e.rxq.iter() {
            load[q.owner] += 1;
        }
    }
    let mut mine = vec![false; nworkers];
    let mut owners = Vec::with_capacity(n);
    for q in 0..n.max(1) {
        if mine.iter().all(|&m| m) {
            mine.fill(false);
        }
        let w = match first {
            Some(o) if q == 0 => o,
            _ => (0..nworkers)
                .filter(|&w| !mine[w])
                .min_by_key(|&w| load[w])
                .unwrap_or(0),
        };
        mine[w] = true;
        load[w] += 1;
        owners.push(w);
    }
    owners
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.shutdown();
    }
}
