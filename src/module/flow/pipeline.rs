//! The OpenFlow pipeline's state (tables, groups, port liveness) and its
//! slow path: running one flow key through the tables to a [`Plan`].
//!
//! A plan is everything the data path needs to treat every packet of a
//! megaflow the same way without looking at a table again: the verdict, the
//! header rewrites to replay, and which flow entries, tables, groups and
//! buckets to credit. While it runs, the pipeline records in a mask every
//! key bit its outcome depended on (the masks of the subtables it probed,
//! and the fields actions looked at), so the plan is valid for every packet
//! that agrees with this one on those bits.
//!
//! Semantics (OpenFlow 1.3, section 5): instructions run in the spec's order
//! whatever their order in the entry (apply-actions, clear-actions,
//! write-actions, write-metadata, goto-table); a table with no matching
//! entry and no table-miss entry drops the packet (and discards the action
//! set); the action set runs when no goto-table follows, in the spec's
//! order (pop, push, decrement TTL, set-field, group, output, with a group
//! taking precedence over an output). Group buckets act on a copy of the
//! packet. A TTL that cannot be decremented (1 or 0) stops processing:
//! copies already output stay output, the rest is dropped (and, if the
//! agent asked, goes to the controller with reason INVALID_TTL).
//!
//! Port configuration (`OFPPC_*`, [`Pipeline::port_config`]): a packet
//! received on a PORT_DOWN or NO_RECV port is dropped before the tables;
//! outputs to a PORT_DOWN or NO_FWD port (explicit, IN_PORT, flood/all,
//! from groups) skip it; FLOOD and NORMAL's flooding also skip a NO_FLOOD
//! port (`floods`); a packet received on a NO_PACKET_IN port is never
//! sent to the controller.
//!
//! The same executor runs packet-out action lists ([`Pipeline::trace_actions`],
//! [`Pipeline::trace_tables`]): there every output keeps its own rewrites.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::module::Nanos;
use crate::openflow::action::CONTROLLER_MAX_LEN_NO_BUFFER;
use crate::openflow::flow::packet_in_reason;
use crate::openflow::group::group_id;
use crate::openflow::oxm::OxmField;
use crate::openflow::port::config;
use crate::openflow::{Action, GroupType, Instruction, Match, PortNo};
use crate::port::PortId;

use super::actions::Op;
use super::classifier::{Classifier, Rule};
use super::group::{Group, GroupCounters};
use super::key::*;
use super::meter::{Meter, Meters};
use super::mpls;
use super::normal::{DEFAULT_VLAN, PortVlan};

#[path = "nicira.rs"]
mod nicira;
pub(crate) use nicira::{no_nx_in_write_actions, regs_cover, same_regs};

#[path = "conj.rs"]
mod conj;
pub(crate) use conj::check_conjunctions;

#[path = "entry.rs"]
mod entry;
pub(crate) use entry::*;

#[path = "learn.rs"]
mod learn;
pub(crate) use learn::{LearnLimits, LearnOutcome, Learned};

#[path = "fin.rs"]
mod fin;
pub(crate) use fin::{FinTimeout, FinTimeouts, fin_or_rst};

#[path = "floods.rs"]
mod floods;
use floods::FloodSets;

#[path = "tun_metadata.rs"]
mod tun_metadata;
pub(crate) use tun_metadata::{put_match, resolve as resolve_tun_metadata};

/// How deep group chaining may go.
pub(crate) const MAX_GROUP_DEPTH: usize = 16;

/// The whole pipeline. Changed only under the module's write lock; the data
/// path reads it (and bumps its atomic counters) under the read lock.
pub(crate) struct Pipeline {
    pub tables: Vec<Table>,
    pub groups: BTreeMap<u32, Group>,
    /// Ports reported down ([`super::FlowModule::set_port_live`]).
    pub dead_ports: BTreeSet<u32>,
    /// The ports that exist, if the agent said ([`super::FlowModule::set_ports`]).
    pub known_ports: Option<BTreeSet<u32>>,
    /// The ports attached to the switch (`port_attached`/`port_detached`):
    /// what a flood expands to when the module must expand it itself.
    pub attached: BTreeSet<u32>,
    /// `OFPPC_*` bits of the ports that have any ([`super::FlowModule::set_port_config`]).
    pub port_config: BTreeMap<u32, u32>,
    /// The ports FLOOD and ALL reach, worked out again by
    /// [`Pipeline::ports_changed`] whenever the four fields above or
    /// `local` change.
    floods: FloodSets,
    /// NORMAL's VLAN configuration of the ports that are not the default
    /// ([`super::FlowModule::set_port_vlan`]).
    pub port_vlans: BTreeMap<u32, PortVlan>,
    /// A TTL that cannot be decremented sends the packet to the controller
    /// (reason INVALID_TTL) before it is dropped.
    pub invalid_ttl_to_controller: bool,
    /// The meters (`meter`), which flow entries name by id.
    pub meters: Meters,
    pub next_seq: u64,
    pub generation: u64,
    pub max_flows: usize,
    pub flow_count: usize,
    /// Table edits whose effect on cached megaflows can be worked out
    /// ([`Edit`]), newest last, numbered up to `edit_seq`. A stripe that
    /// saw them all up to some number drops only the megaflows they
    /// touch; one that missed some (the log is bounded) starts over.
    pub edits: VecDeque<Edit>,
    pub edit_seq: u64,
    /// Bounds on what `learn` installs, and its token bucket.
    pub learn: LearnLimits,
    /// The switch port that is OpenFlow's `LOCAL` (the bridge's own
    /// interface), if any ([`super::FlowModule::set_local_port`]). Its
    /// number is not an OpenFlow port: packets from it have in_port LOCAL.
    pub local: Option<PortId>,
    /// The TLV table: Geneve options as `tun_metadataN`
    /// ([`tun_metadata`]).
    pub tlv: crate::port::tunnel::geneve_opts::TlvTable,
    /// Its id in the process's registry (0: none), which packets' metadata
    /// carries out to Geneve ports.
    pub tlv_id: u32,
}

impl Pipeline {
    pub fn new(tables: usize, max_flows: usize) -> Pipeline {
        let mut p = Pipeline {
            tables: (0..tables).map(|_| Table::default()).collect(),
            groups: BTreeMap::new(),
            dead_ports: BTreeSet::new(),
            known_ports: None,
            attached: BTreeSet::new(),
            port_config: BTreeMap::new(),
            floods: FloodSets::default(),
            port_vlans: BTreeMap::new(),
            invalid_ttl_to_controller: false,
            meters: Meters::default(),
            next_seq: 0,
            generation: 1,
            max_flows,
            flow_count: 0,
            edits: VecDeque::new(),
            edit_seq: 0,
            learn: LearnLimits::default(),
            local: None,
            tlv: Default::default(),
            tlv_id: 0,
        };
        p.ports_changed();
        p
    }

    /// The OpenFlow number of switch port `id` (LOCAL for the local port).
    pub fn of_port(&self, id: PortId) -> u32 {
        if self.local == Some(id) {
            PortNo::LOCAL.0
        } else {
            u32::from(id.0)
        }
    }

    /// The switch port of OpenFlow port `n` (LOCAL is the local port; the
    /// local port's own number is no OpenFlow port).
    pub fn port_id(&self, n: u32) -> Option<PortId> {
        if n == PortNo::LOCAL.0 {
            return self.local;
        }
        PortId::new(n).filter(|id| self.local != Some(*id))
    }

    /// Marks a change: every cached plan is now stale.
    pub fn bump(&mut self) {
        self.generation += 1;
        self.edits.clear();
    }

    /// Marks a change to the rules of table `t` matching `value`/`mask`
    /// (an entry added, replaced or removed): only cached plans whose
    /// lookup of `t` a packet matching that rule could have made are stale.
    pub fn changed(&mut self, t: usize, value: &Key, mask: &Key) {
        self.edit_seq += 1;
        self.edits.push_back(Edit {
            seq: self.edit_seq,
            table: t as u8,
            value: *value,
            mask: *mask,
        });
        if self.edits.len() > MAX_EDITS {
            self.edits.pop_front();
        }
    }

    /// Live: not reported down, not administratively down, and known.
    pub fn port_live(&self, port: u32) -> bool {
        !self.dead_ports.contains(&port)
            && self.config(port) & config::PORT_DOWN == 0
            && self.known_ports.as_ref().is_none_or(|k| k.contains(&port))
    }

    /// The port's `OFPPC_*` bits.
    pub fn config(&self, port: u32) -> u32 {
        self.port_config.get(&port).copied().unwrap_or(0)
    }

    /// NORMAL's VLAN configuration of `port`.
    #[inline]
    pub fn port_vlan(&self, port: u32) -> &PortVlan {
        if self.port_vlans.is_empty() {
            return &DEFAULT_VLAN;
        }
        self.port_vlans.get(&port).unwrap_or(&DEFAULT_VLAN)
    }

    /// Whether outputs to switch port `id` are refused: [`Pipeline::no_fwd`]
    /// of its OpenFlow number (LOCAL's configuration for the local port).
    #[inline]
    pub fn id_no_fwd(&self, id: PortId) -> bool {
        self.no_fwd(self.of_port(id))
    }

    /// Whether outputs to OpenFlow port `port` are refused (PORT_DOWN or
    /// NO_FWD).
    #[inline]
    pub fn no_fwd(&self, port: u32) -> bool {
        if self.port_config.is_empty() {
            return false;
        }
        self.config(port) & (config::PORT_DOWN | config::NO_FWD) != 0
    }

    pub fn bucket_live(&self, b: &crate::openflow::Bucket, depth: usize) -> bool {
        (b.watch_port == PortNo::ANY || self.port_live(b.watch_port.0))
            && (b.watch_group == group_id::ANY || self.group_live(b.watch_group, depth + 1))
    }

    /// A group is live if one of its buckets is.
    pub fn group_live(&self, id: u32, depth: usize) -> bool {
        depth < MAX_GROUP_DEPTH
            && self
                .groups
                .get(&id)
                .is_some_and(|g| g.buckets.iter().any(|b| self.bucket_live(b, depth)))
    }

    /// Runs `key` (a packet from `in_port`) through the tables. Returns the
    /// plan and the mask of the key bits it depends on.
    pub fn compile(&self, key: &Key) -> (Plan, Key) {
        let in_port = IN_PORT.get(key) as u32;
        if self.config(in_port) & (config::PORT_DOWN | config::NO_RECV) != 0 {
            // Refused at the door: no table sees it.
            let mut mask = Key::default();
            IN_PORT.all(&mut mask);
            let x = Exec::new(self, key);
            let mut plan = x.finish();
            plan.events |= event::NO_RECV;
            return (plan, mask);
        }
        let x = self.run_tables(key);
        let mask = x.mask;
        (x.finish(), mask)
    }

    /// The pipeline from table 0 for `key`, as an executor holding every
    /// output with its own rewrites.
    fn run_tables(&self, key: &Key) -> Exec<'_> {
        self.run_tables_with(key, [0; crate::openflow::nicira::N_REGS])
    }

    /// [`Pipeline::run_tables`] with registers `regs` as the packet starts.
    fn run_tables_with(&self, key: &Key, regs: [u32; crate::openflow::nicira::N_REGS]) -> Exec<'_> {
        let mut x = Exec::new(self, key);
        x.regs = regs;
        IN_PORT.all(&mut x.mask);
        let mut set = ActionSet::default();
        let mut t = 0usize;
        while t < self.tables.len() {
            let hit = x.lookup(t as u8);
            x.tables.push((t as u8, hit.is_some()));
            let Some(rule) = hit else {
                x.events |= event::MISS;
                break;
            };
            let e = &rule.data;
            x.flows.push(e.counters.clone());
            let flow = Some(x.flows.len() - 1);
            // OF1.3 5.7: the meter runs before the entry's actions; the
            // plan names it, the data path applies it per packet.
            if let Some(m) = e.prog.meter.and_then(|id| self.meters.get(id)) {
                x.meters.push(m.clone());
            }
            // OF1.3 5.4: the table-miss entry is the one that wildcards all
            // fields and has priority 0; its packet-ins say NO_MATCH.
            let miss = rule.priority == 0 && rule.mask == Key::default();
            x.entry = EntryInfo {
                table_id: t as u8,
                cookie: e.cookie,
                reason: if miss {
                    packet_in_reason::NO_MATCH
                } else {
                    packet_in_reason::ACTION
                },
                flow,
            };
            if let Some(a) = &e.prog.apply {
                x.exec_list(a, 0);
                if x.stopped {
                    break;
                }
            }
            if e.prog.clear {
                set = ActionSet::default();
            }
            if let Some(w) = &e.prog.write {
                set.merge(w);
            }
            if let Some((v, m)) = e.prog.metadata {
                let md = METADATA.get(&x.key);
                METADATA.set(&mut x.key, (md & !m) | (v & m));
            }
            match e.prog.goto {
                Some(n) if usize::from(n) > t => t = usize::from(n),
                _ => {
                    x.exec_set(&set);
                    break;
                }
            }
        }
        x
    }

    /// A packet-out's action list on `key`: its outputs in order, each with
    /// the rewrites before it, and the group counters it credits. Output
    /// to TABLE is [`Out::Table`] (only at the top of the list).
    /// Its registers start as `regs` (an OpenFlow 1.5 packet-out's match
    /// may give them; else 0).
    pub fn trace_actions(
        &self,
        key: &Key,
        regs: [u32; crate::openflow::nicira::N_REGS],
        actions: &[Action],
    ) -> Trace {
        let mut x = Exec::new(self, key);
        x.regs = regs;
        x.entry = EntryInfo {
            table_id: 0,
            cookie: u64::MAX,
            reason: packet_in_reason::ACTION,
            flow: None,
        };
        x.table_ok = true;
        x.exec_list(actions, 0);
        x.trace()
    }

    /// A packet (`key`) submitted to table 0 by a packet-out: its outputs
    /// in order, each with its own rewrites, and every counter it credits.
    /// Its registers start as `regs`.
    pub fn trace_tables(&self, key: &Key, regs: [u32; crate::openflow::nicira::N_REGS]) -> Trace {
        self.run_tables_with(key, regs).trace()
    }
}

/// Every output of one run of the executor, each with the rewrites that
/// lead to it, and what the run credits.
pub(crate) struct Trace {
    pub outs: Vec<(Out, Vec<Op>)>,
    pub flows: Vec<Arc<FlowCounters>>,
    pub tables: Vec<(u8, bool)>,
    pub groups: Vec<(Arc<GroupCounters>, u32)>,
    /// The flows its `learn`s build, for the module to install.
    pub learns: Vec<Arc<Learned>>,
    /// The `fin_timeout`s it ran in flow entries.
    pub fins: Vec<FinTimeout>,
    /// Per output to TABLE, in order: the registers and `metadata` the
    /// packet had there, which the tables start from (as Open vSwitch's
    /// packet-out carries them into its table lookup).
    pub table_starts: Vec<([u32; crate::openflow::nicira::N_REGS], u64)>,
}

impl Trace {
    /// A TCP FIN or RST in `frame` (its TCP header at `l4`) shortens the
    /// timeouts of the entries whose `fin_timeout` ran, as a cached
    /// plan's packets do.
    pub fn fin(&self, frame: &[u8], l4: u16) {
        if !self.fins.is_empty() && fin_or_rst(frame, l4) {
            for f in &self.fins {
                f.apply();
            }
        }
    }

    /// Counts one packet of `bytes` bytes, as the data path would.
    pub fn credit(&self, pipe: &Pipeline, bytes: u64, now: Nanos) {
        for f in &self.flows {
            f.add(1, bytes, now);
        }
        for &(t, matched) in &self.tables {
            if let Some(t) = pipe.tables.get(usize::from(t)) {
                t.add(1, u64::from(matched));
            }
        }
        for (g, bucket) in &self.groups {
            g.credit(*bucket, 1, bytes);
        }
    }
}

/// Packet-in metadata for one controller output: where in the pipeline it
/// came from and what the action asked. The flow module interns it behind
/// a [`crate::switch::PacketIn::tag`] ([`super::FlowModule::controller_meta`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ControllerMeta {
    /// `ofp_packet_in_reason`: NO_MATCH from the table-miss entry
    /// (priority 0, empty match), INVALID_TTL for a TTL that could not be
    /// decremented (when asked), ACTION otherwise.
    pub reason: u8,
    pub table_id: u8,
    /// The flow entry's cookie (`u64::MAX` for a packet-out's own actions).
    pub cookie: u64,
    /// The output action's `max_len`: how many bytes the agent sends up
    /// (`OFPCML_NO_BUFFER`: all). The switch queues the whole frame.
    pub max_len: u16,
    /// The pipeline metadata at the output.
    pub metadata: u64,
    /// The Nicira registers at the output (`reg0`..`reg15`; the `xreg`s
    /// are pairs of them). Like the metadata they are the same for every
    /// packet of a megaflow (see `nicira`), so the cached plan's interned
    /// copy holds them and a packet that never goes to the controller
    /// pays nothing for them.
    pub regs: [u32; crate::openflow::nicira::N_REGS],
}

/// The flow entry whose actions are running.
#[derive(Clone, Copy)]
struct EntryInfo {
    table_id: u8,
    cookie: u64,
    reason: u8,
    /// Its counters' index in [`Exec::flows`] (none for a packet-out's
    /// own actions).
    flow: Option<usize>,
}

/// Things a plan makes the module count, per packet.
pub(crate) mod event {
    /// Output more than once with different bytes (port outputs get
    /// theirs as [`Plan::versions`], the others the last bytes).
    pub const MULTI_VERSION: u8 = 1;
    /// Received on a port that is down or configured NO_RECV: dropped.
    pub const NO_RECV: u8 = 2;
    /// A TTL that could not be decremented.
    pub const INVALID_TTL: u8 = 4;
    /// No entry matched in some table (table miss without a miss entry).
    pub const MISS: u8 = 8;
    /// Too many resubmits, or nested too deep: dropped.
    pub const RESUBMIT_LIMIT: u8 = 16;
    /// A `learn` could not build its flow from this packet (a value its
    /// target table refuses): nothing learned.
    pub const LEARN_FAILED: u8 = 32;
}

/// Where a packet goes, as decided once for its megaflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlanVerdict {
    Drop,
    Port(PortId),
    Flood,
    /// To the controller only (its metadata is [`Plan::controller`]).
    Controller,
    /// To a set of ports; `true`: a hairpin set (it may hold the input).
    Ports(Box<[PortId]>, bool),
}

/// The compiled result of the pipeline for one megaflow.
#[derive(Debug)]
pub(crate) struct Plan {
    pub verdict: PlanVerdict,
    /// Rewrites for the delivered copy (the bytes at the last output).
    pub ops: Box<[Op]>,
    /// Outputs to a port that want other bytes than the delivered copy
    /// (`output:5,pop_vlan,output:1`: port 5 gets the tagged frame): each
    /// with its own rewrites of the frame as received. Their ports are
    /// not in `verdict`.
    pub versions: Box<[(Box<[Op]>, PortId)]>,
    pub flows: Box<[Arc<FlowCounters>]>,
    /// Tables looked up, and whether an entry matched.
    pub tables: Box<[(u8, bool)]>,
    /// Groups (bucket `u32::MAX`) and buckets executed.
    pub groups: Box<[(Arc<GroupCounters>, u32)]>,
    /// [`event`] bits.
    pub events: u8,
    /// The packet also (or, with [`PlanVerdict::Controller`], only) goes
    /// to the controller, with the first controller output's metadata
    /// (boxed: a cache slot holds a plan, and only the interning reads it).
    pub controller: Option<Box<ControllerMeta>>,
    /// The tag interning `controller`, filled in by the module.
    pub ctl_tag: u32,
    /// The packet also goes through NORMAL (per packet, after the rest,
    /// on the bytes the plan delivers).
    pub normal: bool,
    /// The meters of the entries it went through, in order: applied to
    /// each packet before its rewrites.
    pub meters: Box<[Arc<Meter>]>,
    /// The flows its `learn` actions build: refreshed once per batch its
    /// packets come in, installed again if they left their table.
    pub learns: Box<[Arc<Learned>]>,
    /// The entries whose `fin_timeout` its TCP packets with FIN or RST
    /// shorten (`fin.rs`).
    pub fins: Box<[FinTimeout]>,
    /// Tables it looked up with a key some action had changed (their
    /// lookups are not a function of the megaflow's own bits alone, so
    /// any edit of such a table makes the plan stale).
    pub rewritten: TableSet,
    /// Some output's rewrites set tunnel metadata (`tun_id`, `tun_src`,
    /// `tun_dst`): each packet's is worked out from what it came with.
    pub tunnel: bool,
    /// The ops that set tunnel metadata before the first controller
    /// output (the one `controller` describes): the packet-in's tunnel
    /// fields are the packet's own as they change them. Per megaflow, like
    /// `controller`; the values they give are worked out per packet.
    pub ctl_tunnel: Box<[Op]>,
}

/// One output, as the executor records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    /// An explicit port number (the input port's is dropped downstream).
    Port(PortId),
    /// Back out of the input port (`OFPP_IN_PORT`).
    InPort,
    /// FLOOD: every port but the input and NO_FLOOD ones.
    Flood,
    /// ALL: every port but the input.
    All,
    Controller(ControllerMeta),
    /// `OFPP_LOCAL`: there is no local port on the data path yet.
    Local,
    /// `OFPP_TABLE` (packet-out only): through the tables from table 0.
    Table,
    /// `OFPP_NORMAL`: decided per packet (`normal`).
    Normal,
}

/// The action set: at most one action of each kind (one set-field per
/// field), run in the spec's order.
#[derive(Default, Clone)]
struct ActionSet {
    pop_vlan: bool,
    push_vlan: Option<u16>,
    pop_mpls: Option<u16>,
    push_mpls: Option<u16>,
    dec_ttl: bool,
    dec_mpls_ttl: bool,
    set_mpls_ttl: Option<u8>,
    fields: Vec<OxmField>,
    set_ttl: Option<u8>,
    group: Option<u32>,
    /// Port and `max_len`.
    output: Option<(PortNo, u16)>,
}

impl ActionSet {
    fn merge(&mut self, actions: &[Action]) {
        for a in actions {
            match *a {
                Action::PopVlan => self.pop_vlan = true,
                Action::PushVlan(t) => self.push_vlan = Some(t),
                Action::DecNwTtl => self.dec_ttl = true,
                Action::SetNwTtl(t) => self.set_ttl = Some(t),
                Action::PopMpls(t) => self.pop_mpls = Some(t),
                Action::PushMpls(t) => self.push_mpls = Some(t),
                Action::DecMplsTtl => self.dec_mpls_ttl = true,
                Action::SetMplsTtl(t) => self.set_mpls_ttl = Some(t),
                Action::SetField(f) => {
                    self.fields.retain(|g| g.field_type() != f.field_type());
                    self.fields.push(f);
                }
                Action::Group(g) => self.group = Some(g),
                Action::Output { port, max_len } => self.output = Some((port, max_len)),
                // No queues here; other actions are refused at install.
                _ => {}
            }
        }
    }
}

struct Exec<'p> {
    p: &'p Pipeline,
    key: Key,
    mask: Key,
    ops: Vec<Op>,
    outs: Vec<(Out, Vec<Op>)>,
    flows: Vec<Arc<FlowCounters>>,
    tables: Vec<(u8, bool)>,
    groups: Vec<(Arc<GroupCounters>, u32)>,
    meters: Vec<Arc<Meter>>,
    events: u8,
    stopped: bool,
    /// The entry whose actions run (for packet-in metadata).
    entry: EntryInfo,
    /// Output to TABLE is allowed (a packet-out's own list, not in groups).
    table_ok: bool,
    /// Nicira registers: pipeline state, 0 for every packet (`nicira`).
    regs: [u32; crate::openflow::nicira::N_REGS],
    /// Resubmits nested now, and done in all.
    nest: u8,
    resubmits: u16,
    /// The key as the packet came ([`Plan::rewritten`]).
    orig: Key,
    rewritten: TableSet,
    learns: Vec<Arc<Learned>>,
    fins: Vec<FinTimeout>,
    /// See [`Trace::table_starts`].
    table_starts: Vec<([u32; crate::openflow::nicira::N_REGS], u64)>,
}

impl<'p> Exec<'p> {
    fn new(p: &'p Pipeline, key: &Key) -> Exec<'p> {
        Exec {
            p,
            key: *key,
            mask: Key::default(),
            ops: Vec::new(),
            outs: Vec::new(),
            flows: Vec::new(),
            tables: Vec::new(),
            groups: Vec::new(),
            meters: Vec::new(),
            events: 0,
            stopped: false,
            entry: EntryInfo {
                table_id: 0,
                cookie: 0,
                reason: packet_in_reason::ACTION,
                flow: None,
            },
            table_ok: false,
            regs: [0; crate::openflow::nicira::N_REGS],
            nest: 0,
            resubmits: 0,
            orig: *key,
            rewritten: [0; 4],
            learns: Vec::new(),
            fins: Vec::new(),
            table_starts: Vec::new(),
        }
    }

    fn trace(self) -> Trace {
        Trace {
            outs: self.outs,
            flows: self.flows,
            tables: self.tables,
            groups: self.groups,
            learns: self.learns,
            fins: self.fins,
            table_starts: self.table_starts,
        }
    }

    fn exec_list(&mut self, actions: &[Action], depth: usize) {
        for a in actions {
            if self.stopped {
                return;
            }
            match *a {
                Action::Output { port, max_len } => self.output(port, max_len, depth),
                Action::Group(g) => self.group(g, depth),
                Action::SetField(f) => self.set_field(&f),
                Action::PushVlan(t) => self.push_vlan(t),
                Action::PopVlan => self.pop_vlan(),
                Action::DecNwTtl => self.dec_ttl(),
                Action::SetNwTtl(t) => self.set_ttl(t),
                Action::PushMpls(t) => self.push_mpls(t),
                Action::PopMpls(t) => self.pop_mpls(t),
                Action::DecMplsTtl => self.dec_mpls_ttl(),
                Action::SetMplsTtl(t) => self.set_mpls_ttl(t),
                Action::Nx(ref x) => self.nx(x, depth),
                _ => {}
            }
        }
    }

    fn exec_set(&mut self, set: &ActionSet) {
        // OF1.3 5.10: pops, MPLS push, VLAN push, TTL decrements, sets.
        if set.pop_vlan {
            self.pop_vlan();
        }
        if let Some(t) = set.pop_mpls {
            self.pop_mpls(t);
        }
        if let Some(t) = set.push_mpls {
            self.push_mpls(t);
        }
        if let Some(t) = set.push_vlan {
            self.push_vlan(t);
        }
        if set.dec_ttl {
            self.dec_ttl();
        }
        if set.dec_mpls_ttl && !self.stopped {
            self.dec_mpls_ttl();
        }
        if self.stopped {
            return;
        }
        for f in &set.fields {
            self.set_field(f);
        }
        if let Some(t) = set.set_ttl {
            self.set_ttl(t);
        }
        if let Some(t) = set.set_mpls_ttl {
            self.set_mpls_ttl(t);
        }
        if let Some(g) = set.group {
            self.group(g, 0);
        } else if let Some((p, max_len)) = set.output {
            self.output(p, max_len, 0);
        }
    }

    fn output(&mut self, port: PortNo, max_len: u16, depth: usize) {
        let in_port = IN_PORT.get(&self.key) as u32;
        let o = match port {
            PortNo::IN_PORT if self.p.no_fwd(in_port) => return,
            PortNo::IN_PORT => Out::InPort,
            PortNo::FLOOD => Out::Flood,
            PortNo::ALL => Out::All,
            PortNo::CONTROLLER if self.p.config(in_port) & config::NO_PACKET_IN != 0 => return,
            PortNo::CONTROLLER => {
                // Metadata rides along: the plan depends on it (it is the
                // same for every packet of a path through the tables, but
                // say so anyway).
                METADATA.all(&mut self.mask);
                Out::Controller(ControllerMeta {
                    reason: self.entry.reason,
                    table_id: self.entry.table_id,
                    cookie: self.entry.cookie,
                    max_len,
                    metadata: METADATA.get(&self.key),
                    regs: self.regs,
                })
            }
            PortNo::LOCAL => match self.p.local {
                Some(_) if self.p.no_fwd(PortNo::LOCAL.0) => return,
                Some(id) => Out::Port(id),
                None => Out::Local,
            },
            PortNo::NORMAL => Out::Normal,
            PortNo::TABLE if self.table_ok && depth == 0 => {
                self.table_starts.push((self.regs, METADATA.get(&self.key)));
                Out::Table
            }
            p if !p.is_reserved() && !self.p.no_fwd(p.0) => match self.p.port_id(p.0) {
                Some(id) => Out::Port(id),
                None => return,
            },
            // ANY, TABLE from a flow entry, refused ports: nowhere.
            _ => return,
        };
        self.outs.push((o, self.ops.clone()));
    }

    fn eth_is(&mut self, t: u16) -> bool {
        ETH_TYPE.all(&mut self.mask);
        ETH_TYPE.get(&self.key) == u64::from(t)
    }

    fn flag(&mut self, b: Bits) -> bool {
        b.all(&mut self.mask);
        b.get(&self.key) == 1
    }

    fn proto_is(&mut self, p: u8) -> bool {
        NW_PROTO.all(&mut self.mask);
        NW_PROTO.get(&self.key) == u64::from(p)
    }

    fn is_ip(&mut self) -> bool {
        (self.eth_is(ETH_IPV4) || self.eth_is(ETH_IPV6)) && self.flag(L3_OK)
    }

    /// Whether the packet (as rewritten so far) has an MPLS entry on top.
    fn is_mpls(&mut self) -> bool {
        (self.eth_is(mpls::ETH_MPLS) || self.eth_is(mpls::ETH_MPLS_MC)) && self.flag(L3_OK)
    }

    fn l4_is(&mut self, proto: u8) -> bool {
        self.is_ip() && self.proto_is(proto) && self.flag(L4_OK)
    }

    /// Whether the header a set-field writes is in the packet, as the data
    /// path will see it (mirrors the checks in `actions::set`).
    fn field_present(&mut self, f: &OxmField) -> bool {
        use OxmField as F;
        match f {
            F::EthDst(_) | F::EthSrc(_) => true,
            F::MplsLabel(_) | F::MplsTc(_) => self.is_mpls(),
            F::VlanVid(_) | F::VlanPcp(_) => {
                self.mask.0[VLAN_TCI.word] |= VID_PRESENT;
                VLAN_TCI.get(&self.key) & VID_PRESENT != 0
            }
            F::IpDscp(_) | F::IpEcn(_) => self.is_ip(),
            F::Ipv4Src(_) | F::Ipv4Dst(_) => self.eth_is(ETH_IPV4) && self.flag(L3_OK),
            F::Ipv6Src(_) | F::Ipv6Dst(_) | F::Ipv6Flabel(_) => {
                self.eth_is(ETH_IPV6) && self.flag(L3_OK)
            }
            F::TcpSrc(_) | F::TcpDst(_) => self.l4_is(IP_TCP),
            F::UdpSrc(_) | F::UdpDst(_) => self.l4_is(IP_UDP),
            F::SctpSrc(_) | F::SctpDst(_) => self.l4_is(IP_SCTP),
            F::Icmpv4Type(_) | F::Icmpv4Code(_) => self.eth_is(ETH_IPV4) && self.l4_is(IP_ICMP),
            F::Icmpv6Type(_) | F::Icmpv6Code(_) => self.eth_is(ETH_IPV6) && self.l4_is(IP_ICMPV6),
            F::ArpOp(_) | F::ArpSpa(_) | F::ArpTpa(_) | F::ArpSha(_) | F::ArpTha(_) => {
                self.eth_is(ETH_ARP) && self.flag(L3_OK)
            }
            F::Ipv6NdTarget(_) => self.l4_is(IP_ICMPV6) && self.flag(ND_OK),
            // Metadata: always there.
            F::TunnelId(_) => true,
            F::Ipv6NdSll(_) | F::Ipv6NdTll(_) => {
                let want = if matches!(f, F::Ipv6NdSll(_)) {
                    135
                } else {
                    136
                };
                if !(self.l4_is(IP_ICMPV6) && self.flag(ND_OK)) {
                    return false;
                }
                TP_SRC.all(&mut self.mask);
                TP_SRC.get(&self.key) == want
            }
            _ => false,
        }
    }

    fn set_field(&mut self, f: &OxmField) {
        if self.field_present(f) {
            set_field(&mut self.key, f);
            self.ops.push(Op::Set(*f));
        }
    }

    fn push_vlan(&mut self, tpid: u16) {
        VLAN_TCI.all(&mut self.mask);
        INNER_TCI.all(&mut self.mask);
        let t = VLAN_TCI.get(&self.key);
        let new = if t & VID_PRESENT != 0 { t } else { VID_PRESENT };
        INNER_TCI.set(&mut self.key, t);
        VLAN_TCI.set(&mut self.key, new);
        self.ops.push(Op::PushVlan(tpid));
    }

    fn pop_vlan(&mut self) {
        VLAN_TCI.all(&mut self.mask);
        INNER_TCI.all(&mut self.mask);
        if VLAN_TCI.get(&self.key) & VID_PRESENT == 0 {
            return;
        }
        let inner = INNER_TCI.get(&self.key);
        VLAN_TCI.set(&mut self.key, inner);
        INNER_TCI.set(&mut self.key, 0);
        self.ops.push(Op::PopVlan);
    }

    fn dec_ttl(&mut self) {
        if !self.is_ip() {
            return;
        }
        NW_TTL.all(&mut self.mask);
        let ttl = NW_TTL.get(&self.key);
        if ttl <= 1 {
            self.invalid_ttl();
            return;
        }
        NW_TTL.set(&mut self.key, ttl - 1);
        self.ops.push(Op::DecTtl);
    }

    /// A TTL that cannot be decremented: processing stops, and the packet
    /// goes to the controller first if the agent asked.
    fn invalid_ttl(&mut self) {
        self.events |= event::INVALID_TTL;
        self.stopped = true;
        if self.p.invalid_ttl_to_controller {
            let e = self.entry;
            self.entry.reason = packet_in_reason::INVALID_TTL;
            self.output(PortNo::CONTROLLER, CONTROLLER_MAX_LEN_NO_BUFFER, 0);
            self.entry = e;
        }
    }

    /// Pushes an MPLS entry (see `mpls` for what it holds): the packet is
    /// MPLS from now on, its IP fields out of reach.
    fn push_mpls(&mut self, eth_type: u16) {
        let lse = if self.is_mpls() {
            MPLS_LSE.all(&mut self.mask);
            MPLS_LSE.get(&self.key) & !u64::from(mpls::BOS)
        } else {
            let et = ETH_TYPE.get(&self.key) as u16;
            let ip = if self.is_ip() {
                NW_TOS.all(&mut self.mask);
                NW_TTL.all(&mut self.mask);
                Some((NW_TOS.get(&self.key) as u8, NW_TTL.get(&self.key) as u8))
            } else {
                None
            };
            u64::from(mpls::new_lse(et, ip))
        };
        ETH_TYPE.set(&mut self.key, u64::from(eth_type));
        MPLS_LSE.set(&mut self.key, lse);
        L3_OK.set(&mut self.key, 1);
        L4_OK.set(&mut self.key, 0);
        ND_OK.set(&mut self.key, 0);
        self.ops.push(Op::PushMpls(eth_type));
    }

    /// Pops the top MPLS entry. What it uncovers is not parsed in this
    /// pass (Open vSwitch recirculates for that): later tables and actions
    /// see no L3 header.
    fn pop_mpls(&mut self, eth_type: u16) {
        if !self.is_mpls() {
            return;
        }
        ETH_TYPE.set(&mut self.key, u64::from(eth_type));
        MPLS_LSE.set(&mut self.key, 0);
        L3_OK.set(&mut self.key, 0);
        L4_OK.set(&mut self.key, 0);
        ND_OK.set(&mut self.key, 0);
        self.ops.push(Op::PopMpls(eth_type));
    }

    fn dec_mpls_ttl(&mut self) {
        if !self.is_mpls() {
            return;
        }
        MPLS_TTL.all(&mut self.mask);
        let ttl = MPLS_TTL.get(&self.key);
        if ttl <= 1 {
            self.invalid_ttl();
            return;
        }
        MPLS_TTL.set(&mut self.key, ttl - 1);
        self.ops.push(Op::DecMplsTtl);
    }

    fn set_mpls_ttl(&mut self, t: u8) {
        if self.is_mpls() {
            MPLS_TTL.set(&mut self.key, u64::from(t));
            self.ops.push(Op::SetMplsTtl(t));
        }
    }

    fn set_ttl(&mut self, t: u8) {
        if self.is_ip() {
            NW_TTL.set(&mut self.key, u64::from(t));
            self.ops.push(Op::SetTtl(t));
        }
    }

    fn group(&mut self, id: u32, depth: usize) {
        if depth >= MAX_GROUP_DEPTH {
            return;
        }
        let p = self.p;
        let Some(g) = p.groups.get(&id) else {
            return;
        };
        self.groups.push((g.counters.clone(), u32::MAX));
        match g.group_type {
            GroupType::All => {
                for i in 0..g.buckets.len() {
                    self.bucket(g, i, depth);
                }
            }
            GroupType::Indirect => {
                if !g.buckets.is_empty() {
                    self.bucket(g, 0, depth);
                }
            }
            GroupType::FastFailover => {
                if let Some(i) = g.buckets.iter().position(|b| p.bucket_live(b, depth)) {
                    self.bucket(g, i, depth);
                }
            }
            GroupType::Select => {
                let live: Vec<(usize, u64)> = g
                    .buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.weight > 0 && p.bucket_live(b, depth))
                    .map(|(i, b)| (i, u64::from(b.weight)))
                    .collect();
                let total: u64 = live.iter().map(|&(_, w)| w).sum();
                if total == 0 {
                    return;
                }
                let mut r = self.select_hash() % total;
                for (i, w) in live {
                    if r < w {
                        self.bucket(g, i, depth);
                        break;
                    }
                    r -= w;
                }
            }
        }
    }

    /// A hash of the packet's flow fields for select groups (the fields are
    /// unwildcarded: the choice depends on them).
    fn select_hash(&mut self) -> u64 {
        let mut m = Key::default();
        for b in [
            ETH_DST, ETH_SRC, ETH_TYPE, VLAN_TCI, NW_PROTO, NW_SRC_HI, NW_SRC, NW_DST_HI, NW_DST,
            TP_SRC, TP_DST,
        ] {
            b.all(&mut m);
        }
        self.mask.or_assign(&m);
        self.key.and(&m).hash64()
    }

    /// Runs bucket `i` of `g` on a copy of the packet.
    fn bucket(&mut self, g: &Group, i: usize, depth: usize) {
        let Some(b) = g.buckets.get(i) else { return };
        self.groups.push((g.counters.clone(), i as u32));
        let (key, ops, stopped) = (self.key, self.ops.clone(), self.stopped);
        self.exec_list(&b.actions, depth + 1);
        self.key = key;
        self.ops = ops;
        self.stopped = stopped;
    }

    fn finish(self) -> Plan {
        let in_port = IN_PORT.get(&self.key) as u32;
        // The bytes delivered are those of the last output the data path
        // acts on (LOCAL goes nowhere yet); a port output that saw other
        // bytes gets a version of its own.
        let last: Option<&Vec<Op>> = self
            .outs
            .iter()
            .rfind(|(o, _)| !matches!(o, Out::Local | Out::Table))
            .map(|(_, ops)| ops);
        let mut versions: Vec<(Box<[Op]>, PortId)> = Vec::new();
        let mut ports: Vec<PortId> = Vec::new();
        let (mut flood, mut all, mut hairpin) = (false, false, false);
        let (mut ctl, mut normal) = (None, false);
        let mut ctl_tunnel: Vec<Op> = Vec::new();
        for (o, ops) in &self.outs {
            match *o {
                Out::Port(p) if last.is_some_and(|l| l != ops) => {
                    if !versions.iter().any(|(v, q)| *q == p && **v == **ops) {
                        versions.push((ops.clone().into_boxed_slice(), p));
                    }
                }
                Out::Port(p) => ports.push(p),
                Out::InPort => hairpin = true,
                Out::Flood => flood = true,
                Out::All => all = true,
                Out::Controller(m) if ctl.is_none() => {
                    ctl = Some(m);
                    ctl_tunnel = ops.iter().filter(|op| op.is_tunnel()).cloned().collect();
                }
                Out::Controller(_) => {}
                Out::Normal => normal = true,
                Out::Local | Out::Table => {}
            }
        }
        let in_id = self.p.port_id(in_port);
        let hairpin = hairpin && in_id.is_some();
        // The switch's own flood stands for the wider of the two when no
        // port is left out of it.
        let wide = if all {
            Some(self.p.floods.all_whole)
        } else if flood {
            Some(self.p.floods.flood_whole)
        } else {
            None
        };
        let verdict = if wide == Some(true) && !hairpin {
            PlanVerdict::Flood
        } else {
            if wide.is_some() {
                ports.extend(self.p.flood_ports(in_port, all));
            }
            if hairpin {
                ports.extend(in_id);
            }
            ports.sort_unstable();
            ports.dedup();
            match ports.len() {
                0 if ctl.is_some() => PlanVerdict::Controller,
                0 => PlanVerdict::Drop,
                1 if !hairpin => PlanVerdict::Port(ports[0]),
                _ => PlanVerdict::Ports(ports.into_boxed_slice(), hairpin),
            }
        };
        let mut events = self.events;
        // The bytes delivered are those of the last output the data path
        // acts on (LOCAL goes nowhere yet).
        let mut acted = self
            .outs
            .iter()
            .filter(|(o, _)| !matches!(o, Out::Local | Out::Table));
        let ops: Vec<Op> = match (&verdict, acted.clone().next_back()) {
            (PlanVerdict::Drop, _) if !normal => Vec::new(),
            (_, None) => Vec::new(),
            (_, Some((_, last))) => {
                if acted.any(|(_, o)| o != last) {
                    events |= event::MULTI_VERSION;
                }
                last.clone()
            }
        };
        let tunnel = ops.iter().any(Op::is_tunnel)
            || versions.iter().any(|(v, _)| v.iter().any(Op::is_tunnel))
            || !ctl_tunnel.is_empty();
        Plan {
            tunnel,
            ctl_tunnel: ctl_tunnel.into_boxed_slice(),
            verdict,
            ops: ops.into_boxed_slice(),
            versions: versions.into_boxed_slice(),
            flows: self.flows.into_boxed_slice(),
            tables: self.tables.into_boxed_slice(),
            groups: self.groups.into_boxed_slice(),
            events,
            controller: ctl.map(Box::new),
            ctl_tag: 0,
            normal,
            meters: self.meters.into_boxed_slice(),
            learns: self.learns.into_boxed_slice(),
            fins: self.fins.into_boxed_slice(),
            rewritten: self.rewritten,
        }
    }
}
