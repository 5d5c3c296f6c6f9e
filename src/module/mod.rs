//! Processing modules: the switch's one extension point.
//!
//! A module sees a batch of packets from one input port and answers a
//! [`Verdict`] per packet: a port, a set of ports, flood, the controller, or
//! drop. It may rewrite packet bytes. It never touches ports or rings, and it
//! does no I/O: time comes in as an argument, so tests drive modules in memory.
//! Modules are chosen by name from one registry: the built-in ones (`dummy`,
//! `learn`, `flow`, `demux`) and those a program [`register`]s.
//!
//! A module is shared by all workers of a switch (`&self`, `Sync`): workers
//! call [`Module::process`] concurrently for batches from different ports.
//!
//! # Writing a module outside mswitch
//!
//! A crate that depends on `mswitch` implements [`Module`], describes it
//! with a [`ModuleInfo`] (name, help line, constructor from its arguments)
//! and hands it to [`crate::cli::main_with`]: its binary then has every
//! mswitch command (`daemon`, `ctl`, `run`, `bench`, `vswitchd`, ...) and
//! module specs name the new module like a built-in one. Arguments come in
//! the spec `NAME:ARGS` when a switch is created (`ctl create SW --module
//! NAME:ARGS`) and when its module is swapped (`ctl module SW NAME:ARGS`,
//! which builds a fresh module and keeps the old one if the arguments are
//! refused); [`parse_args`] splits the usual `KEY=VALUE,...` form. The
//! module's [`Module::counters`] appear in `ctl stats`, in `ctl stats
//! --json` as `module_counters`, and in the Prometheus metrics.
//!
//! `examples/acl` in mswitch's repository is such a crate: a stateless
//! ACL with its own arguments, counters, and a test that runs its binary.
//! A module is tested in memory:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! use mswitch::module::{Batch, Module, ModuleInfo, Nanos, PortId, Verdict, Verdicts};
//! use mswitch::wire::{MacAddr, udp_frame};
//!
//! /// Sends every packet to one port, counting them.
//! struct To {
//!     port: PortId,
//!     seen: AtomicU64,
//! }
//!
//! impl Module for To {
//!     fn name(&self) -> &'static str {
//!         "to"
//!     }
//!     fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
//!         for i in 0..batch.len() {
//!             // Frames too short for Ethernet are counted as bad frames.
//!             let v = if batch.data(i).len() < 14 { Verdict::Invalid } else { Verdict::Port(self.port) };
//!             out.set(i, v);
//!         }
//!         self.seen.fetch_add(batch.len() as u64, Ordering::Relaxed);
//!     }
//!     fn counters(&self) -> Vec<(&'static str, u64)> {
//!         vec![("to_seen", self.seen.load(Ordering::Relaxed))]
//!     }
//! }
//!
//! static TO: ModuleInfo = ModuleInfo {
//!     name: "to",
//!     help: "every packet to one port; to:port=N",
//!     build: |args| {
//!         let mut port = PortId(2);
//!         for (k, v) in mswitch::module::parse_args("to", args)? {
//!             port = match (k.as_str(), v.parse().ok().and_then(PortId::new)) {
//!                 ("port", Some(p)) => p,
//!                 _ => {
//!                     return Err(mswitch::module::ModuleError::BadArgs {
//!                         module: "to",
//!                         msg: format!("bad option {k}={v}"),
//!                     });
//!                 }
//!             };
//!         }
//!         Ok(Arc::new(To { port, seen: AtomicU64::new(0) }))
//!     },
//! };
//!
//! mswitch::module::register(&TO).unwrap();
//! let m = mswitch::module::build("to:port=3").unwrap();
//! let mut bufs = vec![udp_frame(60, MacAddr::BROADCAST, MacAddr::local(1), [10, 0, 0, 1], [10, 0, 0, 2], 1, 2), vec![0; 10]];
//! let mut refs = Vec::new();
//! let mut batch = Batch::from_buffers(&mut bufs, &mut refs, PortId(1));
//! let mut out = Verdicts::with_capacity(2);
//! out.reset(batch.len());
//! m.process(&mut batch, &mut out, 0);
//! assert_eq!(out.as_slice(), &[Verdict::Port(PortId(3)), Verdict::Invalid]);
//! assert_eq!(m.counters(), vec![("to_seen", 2)]);
//! assert!(mswitch::module::build("to:port=0").is_err());
//! ```
//!
//! # What is stable API
//!
//! Meant for code outside mswitch, documented here and changed only with
//! care: this module's [`Module`], [`Verdict`], [`Verdicts`], [`Nanos`],
//! [`ModuleInfo`], [`ModuleError`], [`register`], [`build`], [`all`],
//! [`names`], [`parse_args`] and the re-exported [`Batch`], [`PacketRef`]
//! and [`PortId`]; the packet views of [`crate::wire`]; and
//! [`crate::cli::main`] / [`crate::cli::main_with`]. The command line and
//! the control protocol are the switch's user interface and change as
//! Open vSwitch's tools need.
//!
//! Everything else the crate exports (the switching core, ports, control,
//! OpenFlow, the built-in modules' types) is public only for mswitch's own
//! tests, benchmarks and fuzz targets: hidden from this documentation and
//! free to change between any two commits.

#[doc(hidden)]
pub mod demux;
mod demux_table;
#[doc(hidden)]
pub mod dummy;
#[doc(hidden)]
pub mod flow;
#[doc(hidden)]
pub mod learn;
#[doc(hidden)]
pub mod mactable;

use std::sync::{Arc, RwLock};

pub use crate::packet::TunMeta;
pub use crate::packet::batch::{Batch, PacketRef};
pub use crate::port::PortId;

/// Monotonic time in nanoseconds, from an origin fixed by the caller.
pub type Nanos = u64;

/// Where one packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped by the module's decision (counted as a module drop).
    Drop,
    /// Dropped because the frame is malformed (counted as a bad frame).
    Invalid,
    /// To one port. A packet is never sent back to its input port.
    Port(PortId),
    /// To every port but the input.
    Flood,
    /// To a set of ports recorded with [`Verdicts::set_ports`] (or
    /// [`Verdicts::add_set_with`]: only a hairpin set may name the input).
    Ports(u16),
    /// To the controller only (packet-in), with the tag of a
    /// [`Verdicts::to_controller`] call for the packet if there was one,
    /// else tag 0.
    Controller,
}

/// The verdicts for one batch, plus the port sets they refer to and the
/// packets that also go to the controller. Owned by the switch and reused
/// across batches, so answering allocates nothing once warm.
///
/// Controller copies: [`Verdicts::to_controller`] sends a packet to the
/// controller *as well as* wherever its verdict sends it, with a tag the
/// module chooses (the switch hands it back with the packet-in; the flow
/// module interns packet-in metadata behind it). A packet whose verdict is [`Verdict::Controller`]
/// goes up once: with the tag of its `to_controller` entry if it has one,
/// else with tag 0. Each `to_controller` entry is one copy.
///
/// Variants: [`Verdicts::add_variant`] sends a packet to more ports with
/// bytes of its own (the flow module's NORMAL sends a VLAN's packet tagged
/// to trunks and untagged to access ports). The bytes live in an arena
/// reused across batches; the switch copies them to those destinations
/// like any packet, in input order with the others. Only batches that
/// have variants take that path.
///
/// Tunnel metadata ([`Verdicts::set_tunnel`]): what a packet goes out
/// with to a `key=flow`/`remote_ip=flow` tunnel port. A packet the module
/// sets none for goes out with none (such a port drops it, or sends it
/// with VNI 0): what came in on a tunnel goes back out of one only where
/// the module says. The flow module sets every packet of a tunnel batch
/// (what it came with, as Open vSwitch's flows keep it, unless a flow
/// changes it).
///
/// A packet's copies to the controller carry, for the packet-in's match,
/// the metadata [`Verdicts::set_controller_tunnel`] gave them, else the
/// metadata the packet goes out with if the module set some, else what
/// it came with.
#[derive(Default)]
pub struct Verdicts {
    v: Vec<Verdict>,
    sets: Vec<PortId>,
    /// Per set: its range in `sets` and whether it may name the input port.
    ranges: Vec<(u32, u32, bool)>,
    /// (packet, tag) of the controller copies, in the order recorded.
    ctl: Vec<(u16, u32)>,
    variants: Vec<Variant>,
    /// The variants' bytes, back to back.
    arena: Vec<u8>,
    /// Per packet, once `tun_set`.
    tun: Vec<TunMeta>,
    tun_set: bool,
    /// Per packet, for its controller copies, once `ctl_tun_set`.
    ctl_tun: Vec<Option<TunMeta>>,
    ctl_tun_set: bool,
}

/// One variant: a packet's extra copy with its own bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Variant {
    pub pkt: u16,
    /// A [`Verdict::Port`] or a [`Verdict::Ports`] set without hairpin.
    pub to: Verdict,
    pub start: u32,
    pub len: u32,
    /// Its own tunnel metadata (else its packet's).
    pub tun: Option<TunMeta>,
}

impl Verdicts {
    /// Variants a batch may have per packet, on average.
    pub const MAX_VARIANTS_PER_PACKET: usize = 4;

    /// Room for batches of `n` packets without allocating (more grows).
    pub fn with_capacity(n: usize) -> Verdicts {
        Verdicts {
            v: Vec::with_capacity(n),
            sets: Vec::with_capacity(n),
            ranges: Vec::with_capacity(n),
            ctl: Vec::new(),
            variants: Vec::new(),
            arena: Vec::new(),
            tun: Vec::new(),
            tun_set: false,
            ctl_tun: Vec::new(),
            ctl_tun_set: false,
        }
    }

    /// Starts a batch of `n` packets, all `Drop` until the module says otherwise.
    pub fn reset(&mut self, n: usize) {
        self.v.clear();
        self.v.resize(n, Verdict::Drop);
        self.sets.clear();
        self.ranges.clear();
        self.ctl.clear();
        self.variants.clear();
        self.arena.clear();
        self.tun_set = false;
        self.ctl_tun_set = false;
    }

    /// Packet `i` goes out with tunnel metadata `m` (see the type).
    #[inline]
    pub fn set_tunnel(&mut self, i: usize, m: TunMeta) {
        if !self.tun_set {
            self.tun.clear();
            self.tun.resize(self.v.len(), TunMeta::NONE);
            self.tun_set = true;
        }
        if let Some(t) = self.tun.get_mut(i) {
            *t = m;
        }
    }

    /// The tunnel metadata the module set, one per packet, if it set any.
    #[inline]
    pub fn tunnel(&self) -> Option<&[TunMeta]> {
        self.tun_set.then_some(self.tun.as_slice())
    }

    /// Packet `i`'s copies to the controller carry tunnel metadata `m`
    /// (the flow module: the metadata at the controller output, which
    /// later actions may change before the packet's other outputs).
    pub fn set_controller_tunnel(&mut self, i: usize, m: TunMeta) {
        if !self.ctl_tun_set {
            self.ctl_tun.clear();
            self.ctl_tun.resize(self.v.len(), None);
            self.ctl_tun_set = true;
        }
        if let Some(t) = self.ctl_tun.get_mut(i) {
            *t = Some(m);
        }
    }

    /// The tunnel metadata of packet `i`'s controller copies, if the
    /// module gave it some ([`Verdicts::set_controller_tunnel`]), else
    /// what it goes out with if the module set that.
    #[inline]
    pub fn controller_tunnel(&self, i: usize) -> Option<TunMeta> {
        let own = self.ctl_tun_set.then(|| self.ctl_tun.get(i)).flatten();
        own.copied()
            .flatten()
            .or_else(|| self.tunnel().and_then(|t| t.get(i)).copied())
    }

    /// Packets in the batch.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// Gives packet `i` its verdict.
    ///
    /// # Panics
    /// If `i` is not a packet of the batch (`i >= len()`).
    #[inline]
    pub fn set(&mut self, i: usize, v: Verdict) {
        self.v[i] = v;
    }

    /// Gives every packet the same verdict.
    pub fn fill(&mut self, v: Verdict) {
        self.v.fill(v);
    }

    /// Packet `i`'s verdict (panics as [`Verdicts::set`]).
    #[inline]
    pub fn get(&self, i: usize) -> Verdict {
        self.v[i]
    }

    /// Every packet's verdict, in batch order.
    pub fn as_slice(&self) -> &[Verdict] {
        &self.v
    }

    /// Records a set of ports and returns the verdict that names it. The
    /// input port, if listed, is skipped (as for [`Verdict::Port`]).
    pub fn add_set(&mut self, ports: &[PortId]) -> Verdict {
        self.add_set_with(ports, false)
    }

    /// Records a set of ports; a `hairpin` set may send the packet back out
    /// of its input port (OpenFlow's output to `IN_PORT`) if it lists it.
    pub fn add_set_with(&mut self, ports: &[PortId], hairpin: bool) -> Verdict {
        let start = self.sets.len() as u32;
        self.sets.extend_from_slice(ports);
        self.ranges.push((start, self.sets.len() as u32, hairpin));
        Verdict::Ports((self.ranges.len() - 1) as u16)
    }

    /// Whether set `k` is a hairpin set (false if `k` was never recorded).
    #[inline]
    pub fn set_hairpin(&self, k: u16) -> bool {
        self.ranges.get(k as usize).is_some_and(|r| r.2)
    }

    /// Sends packet `i` to the controller too, whatever its verdict, with
    /// `tag` (see the type's documentation).
    pub fn to_controller(&mut self, i: usize, tag: u32) {
        debug_assert!(i < self.v.len());
        self.ctl.push((i as u16, tag));
    }

    /// The controller copies: (packet index, tag), in the order recorded.
    pub fn controller_copies(&self) -> &[(u16, u32)] {
        &self.ctl
    }

    /// Orders the controller copies by packet (stable: one packet's copies
    /// keep their order), for the forwarder's walk in packet order.
    pub(crate) fn sort_controller_copies(&mut self) {
        if !self.ctl.is_sorted_by_key(|c| c.0) {
            self.ctl.sort_by_key(|c| c.0);
        }
    }

    /// Sends packet `i` also to `to` (a [`Verdict::Port`], or a
    /// [`Verdict::Ports`] set of this batch that is not a hairpin set) with
    /// bytes of its own: `parts` put end to end. The destinations should
    /// not overlap the packet's verdict (a port named by both gets both
    /// copies); the input port is skipped. Returns false, recording
    /// nothing, for another kind of verdict, bytes longer than a slot can
    /// describe (65535), or past [`Verdicts::MAX_VARIANTS_PER_PACKET`]
    /// variants per packet of the batch on average (the switch numbers
    /// them in 16 bits with the packets).
    pub fn add_variant(&mut self, i: usize, to: Verdict, parts: &[&[u8]]) -> bool {
        self.add_variant_with(i, to, parts, None)
    }

    /// [`Verdicts::add_variant`] with tunnel metadata of its own (`None`:
    /// its packet's).
    pub fn add_variant_with(
        &mut self,
        i: usize,
        to: Verdict,
        parts: &[&[u8]],
        tun: Option<TunMeta>,
    ) -> bool {
        let ok = match to {
            Verdict::Port(_) => true,
            Verdict::Ports(k) => self.ranges.get(usize::from(k)).is_some_and(|r| !r.2),
            _ => false,
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if !ok
            || len > usize::from(u16::MAX)
            || i >= self.v.len()
            || self.variants.len() >= Self::MAX_VARIANTS_PER_PACKET * self.v.len()
        {
            return false;
        }
        let start = self.arena.len() as u32;
        for p in parts {
            self.arena.extend_from_slice(p);
        }
        self.variants.push(Variant {
            pkt: i as u16,
            to,
            start,
            len: len as u32,
            tun,
        });
        true
    }

    /// The variants recorded: (packet, destinations, bytes), in the order
    /// recorded (in packet order once the switch sorted them).
    pub fn variants(&self) -> impl Iterator<Item = (usize, Verdict, &[u8])> {
        self.variants.iter().map(|v| {
            let b = &self.arena[v.start as usize..(v.start + v.len) as usize];
            (usize::from(v.pkt), v.to, b)
        })
    }

    /// Where variant `k` goes (in the order of [`Verdicts::sorted_variants`]).
    #[inline]
    pub(crate) fn variant_to(&self, k: usize) -> Option<Verdict> {
        self.variants.get(k).map(|v| v.to)
    }

    #[inline]
    pub fn has_variants(&self) -> bool {
        !self.variants.is_empty()
    }

    /// The variants, ordered by packet (stable), and their arena.
    pub(crate) fn sorted_variants(&mut self) -> (&[Variant], &[u8]) {
        if !self.variants.is_sorted_by_key(|v| v.pkt) {
            self.variants.sort_by_key(|v| v.pkt);
        }
        (&self.variants, &self.arena)
    }

    /// Sends packet `i` to a set of ports.
    pub fn set_ports(&mut self, i: usize, ports: &[PortId]) {
        let v = self.add_set(ports);
        self.v[i] = v;
    }

    /// The ports of set `k` (empty if `k` was never recorded).
    pub fn set_members(&self, k: u16) -> &[PortId] {
        match self.ranges.get(k as usize) {
            Some(&(a, b, _)) => &self.sets[a as usize..b as usize],
            None => &[],
        }
    }
}

/// A packet-processing module.
///
/// Only [`Module::name`] and [`Module::process`] are required; the hooks
/// have empty defaults. A module is shared by the switch's workers and its
/// control thread (`Send + Sync`, `&self`): state that changes goes behind
/// atomics or locks, and nothing here may block for long, as packets wait.
pub trait Module: Send + Sync {
    /// The registry name this module was built from.
    fn name(&self) -> &'static str;

    /// Decides a verdict for every packet of `batch` (`out` has one `Drop`
    /// entry per packet on entry). Called by the worker that read the
    /// batch, concurrently with other workers' batches from other ports;
    /// `now` is monotonic nanoseconds (the same clock for every call).
    /// Frames too short to read are best answered [`Verdict::Invalid`]
    /// (counted as bad frames); the bytes are untrusted and may be anything.
    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, now: Nanos);

    /// A port was attached to the switch (by the control thread, before
    /// packets from it arrive). A module swapped in while ports are
    /// attached hears of each of them before it gets its first batch.
    fn port_attached(&self, _port: PortId) {}

    /// A port was detached (called once it has left the switch's port
    /// table): forget anything that points at it.
    fn port_detached(&self, _port: PortId) {}

    /// Housekeeping (aging), called about once a second by each worker
    /// (so several times a second with several workers, maybe at once).
    fn tick(&self, _now: Nanos) {}

    /// Module-specific counters for `ctl stats`, its JSON and the metrics,
    /// as (name, value); prefix the names with the module's name.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The module as `Any`, for control commands that belong to one kind
    /// of module (`ctl demux` finds the `Demux` of a switch), and for tests
    /// that look inside a module built from a spec.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// Why a module could not be built or registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModuleError {
    /// No module of that name (built in or [registered](register)).
    #[error("unknown module '{0}' (available: {list})", list = names().join(", "))]
    Unknown(String),
    /// The module refused its arguments; `msg` says why, in one line.
    #[error("module {module}: {msg}")]
    BadArgs { module: &'static str, msg: String },
    /// [`register`] was given a name that is taken or cannot be typed in a
    /// module spec.
    #[error("cannot register module '{name}': {msg}")]
    Register { name: String, msg: &'static str },
}

/// One entry of the registry: a name, a line of help and a constructor that
/// takes the text after `NAME:` in a module spec (empty for a bare `NAME`).
///
/// The constructor runs whenever a switch is created with the module
/// (`ctl create SW --module NAME:ARGS`, `run --module`) and whenever a
/// switch's module is swapped (`ctl module SW NAME:ARGS`): each time it
/// builds a fresh module from its arguments, or refuses them with
/// [`ModuleError::BadArgs`] (the control command then fails with that
/// line and the switch keeps its module).
pub struct ModuleInfo {
    /// The name in module specs: letters, digits, `_` and `-`.
    pub name: &'static str,
    /// One line for `mswitch modules`: what it does and its arguments.
    pub help: &'static str,
    pub build: fn(&str) -> Result<Arc<dyn Module>, ModuleError>,
}

/// The modules built into mswitch, by name.
pub(crate) const REGISTRY: &[ModuleInfo] = &[dummy::INFO, learn::INFO, flow::INFO, demux::INFO];

/// Modules the program added with [`register`], after the built-in ones.
static ADDED: RwLock<Vec<&'static ModuleInfo>> = RwLock::new(Vec::new());

/// Adds a module to this process's registry, so module specs (`ctl create
/// --module`, `ctl module`, `run --module`, `bench --module`) can name it.
/// [`crate::cli::main_with`] calls it for the modules it is given.
///
/// Refused for a name that is empty, holds anything but ASCII letters,
/// digits, `_` and `-`, or is already taken (by a built-in or another
/// registered module); registering the same entry twice is fine.
pub fn register(info: &'static ModuleInfo) -> Result<(), ModuleError> {
    let refuse = |msg| {
        Err(ModuleError::Register {
            name: info.name.to_owned(),
            msg,
        })
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if info.name.is_empty() || !info.name.chars().all(valid) {
        return refuse("a module name is letters, digits, '_' and '-'");
    }
    let mut added = ADDED.write().unwrap_or_else(|e| e.into_inner());
    if added.iter().any(|m| std::ptr::eq(*m, info)) {
        return Ok(());
    }
    if REGISTRY
        .iter()
        .chain(added.iter().copied())
        .any(|m| m.name == info.name)
    {
        return refuse("the name is taken");
    }
    added.push(info);
    Ok(())
}

/// Every module this process knows: the built-in ones, then the registered.
pub fn all() -> Vec<&'static ModuleInfo> {
    let added = ADDED.read().unwrap_or_else(|e| e.into_inner());
    REGISTRY.iter().chain(added.iter().copied()).collect()
}

/// The names of [`all`] the modules.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|m| m.name).collect()
}

/// Builds a module from a spec `NAME[:ARGS]`.
///
/// ```
/// let m = mswitch::module::build("learn").unwrap();
/// assert_eq!(m.name(), "learn");
/// assert!(mswitch::module::build("no-such-module").is_err());
/// ```
pub fn build(spec: &str) -> Result<Arc<dyn Module>, ModuleError> {
    let (name, args) = spec.split_once(':').unwrap_or((spec, ""));
    let info = all()
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModuleError::Unknown(name.to_owned()))?;
    (info.build)(args)
}

/// Splits `k=v,k=v` module arguments, in order (a key may repeat), with
/// spaces around keys and values trimmed and empty items skipped; anything
/// that is not `KEY=VALUE` is refused as [`ModuleError::BadArgs`].
///
/// ```
/// use mswitch::module::parse_args;
/// let kv = parse_args("acl", "default=deny, rule=permit:udp:53").unwrap();
/// assert_eq!(kv[0], ("default".to_string(), "deny".to_string()));
/// assert_eq!(kv[1].1, "permit:udp:53");
/// assert!(parse_args("acl", "oops").is_err());
/// ```
pub fn parse_args(module: &'static str, args: &str) -> Result<Vec<(String, String)>, ModuleError> {
    args.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| ModuleError::BadArgs {
                    module,
                    msg: format!("expected KEY=VALUE, got '{kv}'"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_by_name() {
        assert_eq!(build("dummy").unwrap().name(), "dummy");
        assert_eq!(build("learn").unwrap().name(), "learn");
        let e = build("nope").err().unwrap();
        // Other tests of this process may have registered more modules.
        assert!(
            e.to_string()
                .starts_with("unknown module 'nope' (available: dummy, learn, flow, demux"),
            "{e}"
        );
        assert!(build("learn:bogus").is_err());
    }

    /// A module of this test only: floods, and keeps its arguments.
    struct Echo(String);

    impl Module for Echo {
        fn name(&self) -> &'static str {
            "test-echo"
        }
        fn process(&self, _: &mut Batch<'_>, out: &mut Verdicts, _: Nanos) {
            out.fill(Verdict::Flood);
        }
        fn as_any(&self) -> Option<&dyn std::any::Any> {
            Some(self)
        }
    }

    static ECHO: ModuleInfo = ModuleInfo {
        name: "test-echo",
        help: "floods",
        build: |args| {
            if args == "bad" {
                return Err(ModuleError::BadArgs {
                    module: "test-echo",
                    msg: "bad".into(),
                });
            }
            Ok(Arc::new(Echo(args.to_owned())))
        },
    };

    #[test]
    fn registered_modules_build_by_spec() {
        register(&ECHO).unwrap();
        register(&ECHO).unwrap();
        assert!(names().contains(&"test-echo"));
        let m = build("test-echo:a=1,b=2").unwrap();
        let echo = m.as_any().and_then(|a| a.downcast_ref::<Echo>()).unwrap();
        assert_eq!(echo.0, "a=1,b=2");
        assert_eq!(
            build("test-echo:bad").err().unwrap().to_string(),
            "module test-echo: bad"
        );
        static CLASH: ModuleInfo = ModuleInfo {
            name: "learn",
            help: "",
            build: |_| Ok(Arc::new(Echo(String::new()))),
        };
        static CLASH2: ModuleInfo = ModuleInfo {
            name: "test-echo",
            ..CLASH
        };
        static BAD_NAME: ModuleInfo = ModuleInfo {
            name: "a:b",
            ..CLASH
        };
        for (info, why) in [
            (&CLASH, "the name is taken"),
            (&CLASH2, "the name is taken"),
            (&BAD_NAME, "a module name is letters, digits, '_' and '-'"),
        ] {
            let e = register(info).err().unwrap();
            assert_eq!(
                e.to_string(),
                format!("cannot register module '{}': {why}", info.name)
            );
        }
        assert_eq!(build("learn").unwrap().name(), "learn");
    }

    #[test]
    fn verdict_sets_round_trip() {
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        v.set_ports(1, &[PortId(2), PortId(5)]);
        v.set(2, Verdict::Flood);
        assert_eq!(v.get(0), Verdict::Drop);
        let Verdict::Ports(k) = v.get(1) else {
            panic!()
        };
        assert_eq!(v.set_members(k), &[PortId(2), PortId(5)]);
        assert_eq!(v.set_members(9), &[] as &[PortId]);
        assert!(!v.set_hairpin(k) && !v.set_hairpin(9));
        let h = v.add_set_with(&[PortId(1)], true);
        let Verdict::Ports(h) = h else { panic!() };
        assert!(v.set_hairpin(h));
        assert_eq!(v.set_members(h), &[PortId(1)]);
    }

    #[test]
    fn controller_copies_are_a_side_list() {
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        v.set(0, Verdict::Port(PortId(2)));
        v.to_controller(0, 7);
        v.to_controller(2, 9);
        assert_eq!(v.get(0), Verdict::Port(PortId(2)));
        assert_eq!(v.controller_copies(), &[(0, 7), (2, 9)]);
        v.reset(2);
        assert!(v.controller_copies().is_empty());
    }

    #[test]
    fn controller_copies_carry_their_own_tunnel_metadata() {
        let m = |id: u64| {
            TunMeta::v4(
                id,
                std::net::Ipv4Addr::new(192, 168, 1, 1),
                std::net::Ipv4Addr::new(192, 168, 1, 2),
            )
        };
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        // Nothing set: nothing to say (the switch uses what came in).
        assert_eq!(v.controller_tunnel(0), None);
        // What the packets go out with...
        v.set_tunnel(0, m(5));
        v.set_tunnel(1, m(6));
        assert_eq!(v.controller_tunnel(1), Some(m(6)));
        // ...unless the controller copies have their own.
        v.set_controller_tunnel(1, m(7));
        assert_eq!(v.controller_tunnel(1), Some(m(7)));
        assert_eq!(v.controller_tunnel(0), Some(m(5)));
        assert_eq!(v.controller_tunnel(2), Some(TunMeta::NONE));
        assert_eq!(v.controller_tunnel(3), None);
        // A new batch starts with none of either.
        v.reset(3);
        assert_eq!(v.controller_tunnel(1), None);
        v.set_tunnel(2, m(8));
        assert_eq!(v.controller_tunnel(1), Some(TunMeta::NONE));
        assert_eq!(v.controller_tunnel(2), Some(m(8)));
    }

    #[test]
    fn variants_carry_their_own_bytes() {
        let mut v = Verdicts::with_capacity(4);
        v.reset(3);
        let set = v.add_set(&[PortId(3), PortId(4)]);
        let hp = v.add_set_with(&[PortId(1)], true);
        assert!(v.add_variant(2, set, &[b"ab", b"", b"cd"]));
        assert!(v.add_variant(0, Verdict::Port(PortId(5)), &[b"x"]));
        assert!(!v.add_variant(0, Verdict::Flood, &[b"x"]));
        assert!(!v.add_variant(0, hp, &[b"x"]));
        assert!(!v.add_variant(7, Verdict::Port(PortId(5)), &[b"x"]));
        assert!(!v.add_variant(0, Verdict::Port(PortId(5)), &[&[0; 70000]]));
        let mut full = 0;
        while v.add_variant(1, Verdict::Port(PortId(6)), &[b"y"]) {
            full += 1;
        }
        assert_eq!(full, 3 * Verdicts::MAX_VARIANTS_PER_PACKET - 2);
        let got: Vec<_> = v
            .variants()
            .filter(|&(i, _, _)| i != 1)
            .map(|(i, t, b)| (i, t, b.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (2, set, b"abcd".to_vec()),
                (0, Verdict::Port(PortId(5)), b"x".to_vec())
            ]
        );
        let (sorted, _) = v.sorted_variants();
        assert_eq!(sorted.first().map(|x| x.pkt), Some(0));
        assert_eq!(sorted.last().map(|x| x.pkt), Some(2));
        v.reset(1);
        assert!(!v.has_variants());
    }
}
