//! `flow`: an OpenFlow 1.3 pipeline as a module.
//!
//! Up to 255 flow tables (0..=254) of prioritised, masked entries,
//! instructions (apply-actions, write-actions, clear-actions, write-metadata,
//! goto-table), groups of all four types, per-flow, per-table, per-group and
//! per-bucket counters, idle and hard timeouts. The OpenFlow agent drives it
//! through [`FlowModule::flow_mod`], [`FlowModule::group_mod`] and the
//! statistics methods, with the codec's types ([`crate::openflow`]). The
//! agent builds the module itself ([`FlowModule::new`]) and keeps an
//! `Arc<FlowModule>`, handing a clone to the switch as its module.
//!
//! # Data path
//!
//! Per packet: `parse` the headers into a `key` (twelve `u64` words), look
//! it up in the caches (`cache`: the megaflow cache, and in front of it an
//! exact-match cache once there are several megaflow masks), and only on a
//! miss run the `pipeline` (a tuple-space-search `classifier` per table,
//! probed stage by stage) to compile a plan that the caches then hold; the
//! plan's rewrites are replayed on each packet's bytes (`actions`). A hit
//! costs the same whatever the number of rules.
//!
//! The parse goes only as deep as the cached megaflows look (the last
//! lookup stage — metadata, L2, L3, L4 — of any of their masks): with
//! MAC-forwarding rules only the Ethernet header is read. The whole
//! parse is done for an upcall, for a plan that rewrites, and when the
//! EMC (which compares whole keys) is in use.
//!
//! Before all that, a per-batch memo compares the frame's header bytes (up
//! to the end of what the parser read, and its length) with those of the
//! last few distinct frames of the batch: packets already seen in the
//! batch, or differing only in bytes the parser did not need, skip parsing
//! and lookups altogether, and when the plan rewrites nothing they cost a
//! few word compares.
//!
//! Caches are per stripe, one stripe per batch in flight (in practice per
//! worker), so workers share no cache lines on a hit. Flow, table and group
//! counters are added once per batch, summed per counter.
//!
//! Consistency is strict: every change to groups, meters, port liveness or
//! port configuration, and flow modifications, bump the pipeline's
//! generation; `process` reads the pipeline under a read lock held for
//! the whole batch, emptying its cache first if the generation moved.
//! Flow entries added or removed one at a time (ADD, deletes, expiry,
//! `learn`) are logged instead, and the batch first drops only the
//! megaflows they can touch (`cache`). So a batch sees exactly one state of
//! the tables, and a change ([`FlowModule::flow_mod`] takes the write
//! lock) waits for the batches in flight and applies to every later one:
//! once `flow_mod` returns, no packet is treated by the old tables. (A
//! barrier reply can be sent then.)
//!
//! # Tunnel metadata
//!
//! A batch from a tunnel port carries each packet's `tun_id`, `tun_src`
//! and `tun_dst`, `tun_ipv6_src` and `tun_ipv6_dst` ([`Batch::tunnel`]);
//! they are key words 12 to 17 (0 for every other packet, as in Open
//! vSwitch), matched like any field, and the megaflows that do not look at
//! them do not pay for them. Setting one (`set_field`, `set_tunnel`, a
//! load or move; the addresses come from the codec as
//! [`Register::TunSrc`]/`TunDst` and, an IPv6 one, as two 64-bit halves,
//! [`crate::openflow::nx_tun6`]; a load or move writes each half it
//! touches as an op of its own, so a partial write keeps the rest of what
//! the packet came with) is an op that
//! changes no byte: each output's metadata is the packet's as it came with
//! the ops before that output applied ([`Verdicts::set_tunnel`]; outputs
//! with other metadata than the last are versions, as for bytes; the
//! controller output's, when the plan sets metadata, is worked out per
//! packet from ops kept with the plan, [`Verdicts::set_controller_tunnel`],
//! and rides with the packet-in to its match; nothing per packet is
//! interned). In a
//! tunnel batch the memo keeps only megaflows whose mask has no tunnel
//! bits (equal bytes may come with different metadata, which the memo
//! does not compare; a plan that sets metadata works it out per packet on
//! a memo hit too); the batch-wide path stays (its megaflow matches
//! `in_port` alone and its plan sets nothing).
//!
//! Geneve options are the fields `tun_metadata0`..`63` through the
//! module's TLV table (`tlv_table_mod`, `NXT_TLV_TABLE_MOD`): key words
//! 14 (present bits) and 15 (their data, 8 bytes of option space). A
//! tunnel batch whose packets came with options has them read into those
//! fields once, before the lookups (`pipeline/tun_metadata.rs`; a batch
//! without options costs one check per packet); a packet with a critical
//! option the table does not map is dropped (`tun_metadata_drops`). Sets
//! are ops like the other tunnel fields; the metadata names the table, by
//! which a Geneve port encodes the options.
//!
//! # Nicira extensions
//!
//! Registers (`reg0`..`reg15`, `xreg0`..`xreg7`) are pipeline state like
//! the metadata, 0 for every packet, but they are not in the key: a rule's
//! register fields are checked beside the classifier's lookup while a plan
//! is compiled (`nicira`), so keys, caches and hits are unchanged. A
//! register's value only ever comes from a constant a matched rule loaded
//! or from key bits a `move`/`output:reg` read (which are unwildcarded), so
//! it is a function of the bits already in the megaflow's mask, and packets
//! through resubmits and loads are cached like any other. `resubmit` looks
//! a table up with the current registers and metadata (from another
//! `in_port` if asked), runs that entry's apply-actions and metadata write,
//! and continues; at 64 nested or 4096 in all the packet is dropped
//! (`resubmit_drops`). Loads and moves write registers, the metadata, or
//! the Ethernet, IPv4, TCP/UDP port and ARP fields (as a set-field of
//! the whole field; what a partial write keeps is unwildcarded); other
//! fields are refused (`OFPBAC_BAD_ARGUMENT`). Reads of header fields do
//! not check that the header is there (Open vSwitch checks the flow's
//! prerequisites at install; here a missing header reads as 0, or as the
//! field sharing its room in the key).
//!
//! `learn` (`pipeline::learn`) builds its flow when the plan is compiled;
//! the plan carries it, refreshes it from the cache at most every 100 ms
//! while packets come, and the module installs it (again, if it expired or
//! was deleted) after the batch, through the flow-mod path, within
//! `learn_rate` new flows per second and `learn_max` entries per table
//! (past them: `learn_skipped`, the packet still forwarded). Counters:
//! `learned`, `learn_skipped`, `learn_failed` (a packet whose learned
//! match the table refuses). Learned matches may use in_port, Ethernet,
//! VLAN TCI, IPv4, IP protocol, TCP/UDP port and ARP fields, the metadata
//! and registers (not IPv6, not above 64 bits); FIN timeouts are kept but
//! do nothing. Conjunctive matches (`conj`) follow Open vSwitch's
//! classifier; `conj_id` is matched like a register.
//!
//! # The agent's side
//!
//! - Controller outputs: the packet goes to the controller as well as to
//!   its ports ([`Verdicts::to_controller`]), or only there
//!   ([`Verdict::Controller`]), tagged; [`FlowModule::controller_meta`]
//!   turns the tag of a [`crate::switch::PacketIn`] into its
//!   [`ControllerMeta`] (reason NO_MATCH from a table-miss entry, ACTION
//!   otherwise; table, cookie, `max_len`, metadata and registers at the
//!   output, for the packet-in's match), interned when the plan
//!   is compiled, at most [`MAX_CONTROLLER_METAS`] of them (then tag 0:
//!   unknown). The switch queues the whole frame; the agent applies
//!   `max_len`. Several controller outputs in one plan make one copy, with
//!   the first one's metadata.
//! - IN_PORT sends the packet back out of its input port (a hairpin set,
//!   [`Verdicts::add_set_with`]); an explicit output to the input port's
//!   number stays a plain port verdict, which the switch core drops (as the
//!   spec says, counted `no_dest`).
//! - Port configuration ([`FlowModule::set_port_config`], the `OFPPC_*`
//!   bits): PORT_DOWN/NO_RECV drop what the port receives
//!   (`no_recv_drops`), PORT_DOWN/NO_FWD take it out of every output
//!   (floods are then expanded here, over the ports given to
//!   [`FlowModule::set_ports`] or else those attached), NO_FLOOD takes it
//!   out of FLOOD and NORMAL's flooding (not ALL), NO_PACKET_IN keeps its
//!   packets from the controller.
//! - Packet-outs ([`FlowModule::packet_out`]) run an action list on a copy
//!   of a frame and return every output with its own bytes ([`Output`]),
//!   TABLE and NORMAL included; the agent sends them with `Switch::transmit`.
//!
//! # NORMAL
//!
//! Output to `OFPP_NORMAL` is Open vSwitch's MAC-learning switch per VLAN
//! (`normal`): per-port VLAN modes ([`FlowModule::set_port_vlan`],
//! [`PortVlan`]), a MAC table keyed by (VLAN, MAC) shared with the `learn`
//! module ([`crate::module::mactable`]: aging, 8192 entries and half of
//! that per port by default, a flood from one port never evicts another
//! port's hosts), [`FlowModule::fdb`] and [`FlowModule::fdb_flush`] for
//! `fdb/show` and `fdb/flush`, `mac_*` and `normal_*` counters.
//!
//! A plan only records that NORMAL is one of its outputs; learning and
//! the lookup happen per packet after the plan's rewrites (memo, EMC and
//! megaflow hits included), so megaflows never depend on the MAC table
//! and a host that moves is followed by the next packet without touching
//! the caches. Within a batch, as in `learn`, the last source learned and
//! the last destination looked up are remembered, and a memo entry (same
//! header bytes, so same addresses and tag) replays NORMAL's verdict when
//! it was a bare one (no rewrite, no variant), until the batch's own
//! learning changes the MAC table; what other workers learn meanwhile is
//! seen from the next batch. NORMAL's ports are merged with the plan's other outputs; a
//! port that wants the packet in the other form (tagged or untagged) gets
//! it as a [`Verdicts::add_variant`]. When NORMAL is the only output
//! besides the controller, the bytes are rewritten in place to the form of
//! most of its ports (a controller copy then sees them so); otherwise they
//! stay as the plan left them. A FLOOD or ALL in the same list already
//! reaches every port with those bytes, and NORMAL adds nothing to it.
//!
//! # Meters
//!
//! [`FlowModule::meter_mod`] keeps the meters (`meter`: DROP and
//! DSCP_REMARK bands, kbps or pktps, burst, stats). A plan names the
//! meters of the entries it went through; every packet of the plan, memo
//! and cache hits included, takes its tokens from them before its
//! rewrites (lock-free atomic buckets refilled from the batch's `now`), so
//! no meter decision is ever cached. Drops count in `meter_drops` and in
//! the band's counters.
//!
//! # Limitations (of the one-verdict-per-packet module API)
//!
//! - If a packet's actions output it several times with rewrites in
//!   between (counted in `multi_version_outputs`), each output to a port
//!   number gets the bytes it was given, as a [`Verdicts::add_variant`]
//!   made from the frame as received (`output:5,pop_vlan,output:1`, as
//!   Faucet floods, gives port 5 the tagged frame). Other outputs (FLOOD,
//!   ALL, IN_PORT, the controller copy and NORMAL's input) get the bytes
//!   of the *last* output. (Packet-outs have no such limit.)
//! - FLOOD and ALL both mean every port but the input; FLOOD also leaves
//!   out NO_FLOOD ports.
//! - LOCAL is the port [`FlowModule::set_local_port`] named (the agent
//!   attaches the bridge's own TAP as it); without one, that output does
//!   nothing and a packet-out returns it as [`Output::Local`]. TABLE is refused outside packet-outs.
//! - NORMAL: no bonds, no mirrors, no `dot1q-tunnel` mode, no
//!   `priority-tags`; only 802.1Q (TPID 0x8100) tags are VLAN tags. A tag
//!   that must be pushed in place needs 4 bytes of room, as for push-VLAN
//!   (`rewrite_drops`). Changing a port's VLAN configuration keeps the MAC
//!   table (entries in VLANs the port left are never used for it and age
//!   out). NORMAL from a packet-out whose `in_port` is the controller or
//!   LOCAL learns nothing and treats the packet as received on a trunk of
//!   every VLAN.
//! - Pushing a VLAN tag needs 4 bytes of room in the buffer; without it the
//!   packet is dropped (`rewrite_drops`).
//! - A TTL that cannot be decremented drops the packet (`invalid_ttl`); it
//!   goes to the controller first (reason INVALID_TTL) only if the agent
//!   asked ([`FlowModule::set_invalid_ttl_to_controller`]).
//! - Meters act on the packet as received (before any rewrite), and a
//!   meter's drop drops the whole packet, outputs of earlier tables
//!   included (Open vSwitch would have sent those). Packet-outs are not
//!   metered (nor their output to TABLE). No virtual meters (SLOWPATH,
//!   CONTROLLER).
//! - MPLS (`mpls`): only the top label stack entry is parsed, and what a
//!   pop_mpls uncovers is not parsed in the same pass (Open vSwitch
//!   recirculates): later tables and actions see no L3 header. A push
//!   needs 4 bytes of room, as for push-VLAN (`rewrite_drops`). No TTL
//!   copies (nor has Open vSwitch).
//! - No queues (set-queue is accepted and ignored), no PBB.
//! - Staged lookup has no prefix tracking (Open vSwitch's tries): a
//!   subtable whose rules a packet passes up to a stage unwildcards that
//!   stage's bits whole, e.g. a /16 and a /32 rule on `ipv4_dst` make
//!   megaflows exact on the destination address. Results stay exact; only
//!   the number of megaflows grows.
//!
//! # Spec
//!
//! `flow[:tables=N,max_flows=N,l2=N,filler=N,normal=0|1,resubmits=N,learn=0|1|2,learn_churn=N,learn_rate=N,learn_max=N,mac_max=N,mac_port_max=N,mac_aging=SECS]`:
//! `tables` (1..=255, default
//! 255) flow tables, at most `max_flows` entries in all (default 1,000,000).
//! `learn` installs at most `learn_rate` new flows per second (10,000)
//! into tables of at most `learn_max` entries (100,000).
//! NORMAL's MAC table holds `mac_max` entries (8192), `mac_port_max` per
//! port (half of `mac_max`), aged after `mac_aging` seconds (300).
//! `normal=1` installs `priority=0,actions=NORMAL`, as Open vSwitch does
//! on a new bridge.
//! The tables start empty, so everything is dropped until the agent installs
//! entries (OpenFlow 1.3's default; the agent of a `standalone` switch with
//! no controller installs `priority=0 actions=NORMAL` at once). For benchmarks, `l2=N` installs
//! `eth_dst=<MAC of port p>,actions=output:p` for ports 1..=N (the MACs
//! `mswitch bench` uses) and broadcast to FLOOD, and `filler=N` adds N
//! entries of many different masks that match none of that traffic.
//! `resubmits`, `learn` and `learn_churn` put pipelines in front of the
//! `l2` entries (`presets`).

mod actions;
mod batchwide;
mod cache;
mod classifier;
mod features;
mod flowmod;
mod group;
mod key;
mod meter;
mod mpls;
mod normal;
mod parse;
mod pipeline;
mod presets;
mod stats;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use crate::openflow::error::BadRequestCode;
use crate::openflow::group::{GroupDesc, GroupFeatures, GroupStats};
use crate::openflow::meter::{MeterConfig, MeterFeatures, MeterMod, MeterStats};
use crate::openflow::multipart::{AggregateStats, FlowStats, FlowStatsRequest, TableStats};
use crate::openflow::nicira::{NxAction, NxMatchField, Register};
use crate::openflow::oxm::{Masked, OxmField};
use crate::openflow::port::config;
use crate::openflow::{
    Action, ErrorCode, FlowMod, FlowRemoved, GroupMod, Instruction, Match, PortNo,
};
use crate::packet::{Batch, TunMeta};
use crate::port::{MAX_PORTS, PortId};
use crate::wire::MacAddr;

use super::mactable::{MacLimits, MacTable};
use super::{Module, ModuleError, ModuleInfo, Nanos, Verdict, Verdicts, parse_args};
use cache::{DpCounters, Stripe, ctr};
use key::Layout;
pub use normal::{PortVlan, PortVlanError, VlanMode};
pub use pipeline::ControllerMeta;

/// One entry of NORMAL's MAC table ([`FlowModule::fdb`]), as Open vSwitch's
/// `ovs-appctl fdb/show` lists it.
pub use super::mactable::MacEntry as FdbEntry;
use pipeline::{Out, Pipeline};

pub const INFO: ModuleInfo = ModuleInfo {
    name: "flow",
    help: "OpenFlow 1.3 pipeline (empty: drops all); flow:tables=255,max_flows=N,l2=N,filler=N,normal=0|1,resubmits=N,learn=0|1|2,learn_churn=N,learn_rate=10000,learn_max=100000,mac_max=8192,mac_port_max=4096,mac_aging=300",
    build: |args| Ok(Arc::new(FlowModule::new(FlowConfig::parse(args)?))),
};

/// A flow entry that left its table, as the agent sends it
/// (`OFPT_FLOW_REMOVED`).
pub type Removed = FlowRemoved;

/// One change of an atomic commit ([`FlowModule::commit`]).
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    Flow(&'a FlowMod),
    Group(&'a GroupMod),
}

/// How many removals [`FlowModule::tick`](Module::tick) queues at most for
/// the agent; older ones are dropped (and counted) past that.
const REMOVED_QUEUE: usize = 65536;

/// Concurrent caches (one per running batch; workers rarely exceed this).
const STRIPES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Number of flow tables (1..=255).
    pub tables: usize,
    /// Most flow entries, all tables together.
    pub max_flows: usize,
    /// Benchmark preset: MAC forwarding entries for ports 1..=l2.
    pub l2: u16,
    /// Benchmark preset: entries that match no benchmark traffic.
    pub filler: usize,
    /// Preset: `priority=0,actions=NORMAL` in table 0 (a fresh Open
    /// vSwitch bridge).
    pub normal: bool,
    /// Benchmark preset (with `l2`): the MAC forwarding entries move to
    /// table N-1, and tables 0..N-1 each load a register and resubmit to
    /// the next, which matches on it (`load:k->reg0,resubmit(,k)`;
    /// `reg0=k,...`): an N-table Nicira pipeline. 0 or 1: none.
    pub resubmits: u8,
    /// NORMAL's MAC table bounds and aging (Open vSwitch's
    /// `mac-table-size` and `mac-aging-time`; the per-port bound is ours).
    pub macs: MacLimits,
    /// New flows `learn` may install per second, and the entries a
    /// table may hold for it to add one (`pipeline::learn`).
    pub learn_rate: u32,
    pub learn_max: usize,
    /// Benchmark preset (with `l2`): table 0 learns, for each UDP packet,
    /// the flow of its reply into table 1 (`learn(table=1,priority=200,
    /// eth_type=0x800,ip_proto=17,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],
    /// NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],NXM_OF_UDP_DST[]=NXM_OF_UDP_SRC[],
    /// output:NXM_OF_IN_PORT[]),resubmit(,1)`), where the `l2` entries
    /// forward. 2: its baseline, the same bits read by moves into
    /// registers instead (the same megaflows, nothing learned). 0: none.
    pub learn: u8,
    /// Benchmark preset (with `learn`): every second, this many learned
    /// entries are deleted from table 1, for traffic to learn again: that
    /// many new learned flows per second.
    pub learn_churn: u32,
}

/// The cookie of the `learn` preset's learned flows.
const LEARN_PRESET_COOKIE: u64 = 0x1ea4;

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tables: 255,
            max_flows: 1_000_000,
            l2: 0,
            filler: 0,
            normal: false,
            resubmits: 0,
            macs: MacLimits::default(),
            learn_rate: 10_000,
            learn_max: 100_000,
            learn: 0,
            learn_churn: 0,
        }
    }
}

impl FlowConfig {
    pub fn parse(args: &str) -> Result<FlowConfig, ModuleError> {
        let bad = |msg: String| ModuleError::BadArgs {
            module: "flow",
            msg,
        };
        let mut c = FlowConfig::default();
        let mut port_max = None;
        for (k, v) in parse_args("flow", args)? {
            if k.starts_with("mac_") {
                let n = super::learn::parse_limit("flow", &k, &v)?;
                match k.as_str() {
                    "mac_max" => c.macs.max_entries = n as usize,
                    "mac_port_max" => port_max = Some(n as usize),
                    "mac_aging" => c.macs.aging_secs = n as u32,
                    _ => {
                        return Err(bad(format!(
                            "unknown option '{k}' (mac_max, mac_port_max, mac_aging)"
                        )));
                    }
                }
                continue;
            }
            let n: u64 = v
                .parse()
                .map_err(|_| bad(format!("{k}: '{v}' is not a number")))?;
            match k.as_str() {
                "tables" if (1..=255).contains(&n) => c.tables = n as usize,
                "max_flows" if (1..=100_000_000).contains(&n) => c.max_flows = n as usize,
                "l2" if n < MAX_PORTS as u64 => c.l2 = n as u16,
                "filler" if n <= 1_000_000 => c.filler = n as usize,
                "normal" if n <= 1 => c.normal = n == 1,
                "resubmits" if n <= 64 => c.resubmits = n as u8,
                "learn_rate" if (1..=10_000_000).contains(&n) => c.learn_rate = n as u32,
                "learn_max" if (1..=100_000_000).contains(&n) => c.learn_max = n as usize,
                "learn" if n <= 2 => c.learn = n as u8,
                "learn_churn" if n <= 1_000_000 => c.learn_churn = n as u32,
                "tables" | "max_flows" | "l2" | "filler" | "normal" | "resubmits"
                | "learn_rate" | "learn_max" | "learn" | "learn_churn" => {
                    return Err(bad(format!("{k}={v} is out of range")));
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option '{k}' (tables, max_flows, l2, filler, normal, resubmits, learn, learn_rate, learn_max, learn_churn, mac_max, mac_port_max, mac_aging)"
                    )));
                }
            }
        }
        c.macs.port_max = port_max
            .unwrap_or(c.macs.max_entries.div_ceil(2))
            .min(c.macs.max_entries);
        if c.learn > 0 && (c.resubmits > 1 || c.tables < 2) {
            return Err(bad("learn needs tables>=2 and no resubmits".into()));
        }
        Ok(c)
    }
}

/// The OpenFlow pipeline module. Shared by all workers (`&self`); the
/// agent's calls may come from any thread.
pub struct FlowModule {
    cfg: FlowConfig,
    pipe: RwLock<Pipeline>,
    stripes: Box<[Mutex<Stripe>]>,
    dp: DpCounters,
    removed: Mutex<VecDeque<Removed>>,
    removed_overflow: std::sync::atomic::AtomicU64,
    metas: Mutex<Metas>,
    /// NORMAL's MAC table, shared by all workers.
    macs: MacTable,
    /// The TLV table's place in the process registry (Geneve ports encode
    /// options by it).
    tlv_reg: crate::port::tunnel::geneve_opts::Registration,
}

/// Most distinct packet-in metadata interned ([`FlowModule::controller_meta`]);
/// past that, controller outputs get tag 0 (unknown).
pub const MAX_CONTROLLER_METAS: usize = 65536;

/// Interned [`ControllerMeta`]s: tag `n` is `list[n - 1]`. Entries are
/// never forgotten (a tag may sit in the packet-in queue or a cached
/// plan), so the table is bounded instead.
#[derive(Default)]
struct Metas {
    list: Vec<ControllerMeta>,
    index: HashMap<ControllerMeta, u32>,
}

/// What an OpenFlow 1.5 packet-out's match gives its packet before the
/// actions run (Open vSwitch's pipeline fields): tunnel metadata, the
/// OpenFlow `metadata` and the registers. All zero by default, as for a
/// packet-out of an earlier version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketOutStart {
    pub tun: TunMeta,
    pub metadata: u64,
    pub regs: [u32; crate::openflow::nicira::N_REGS],
}

/// One packet a packet-out sends ([`FlowModule::packet_out`]), with its
/// bytes as the actions left them at that output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Out of a port (never the packet-out's `in_port`: an explicit output
    /// to the input port is dropped, as the spec says).
    Port(PortId, Vec<u8>),
    /// [`Output::Port`] with the tunnel metadata the actions set before it
    /// (for a `remote=flow`/`key=flow` tunnel port).
    PortTunnel(PortId, Vec<u8>, TunMeta),
    /// Back out of the packet-out's `in_port` (output to `OFPP_IN_PORT`
    /// with a real port as `in_port`).
    InPort(Vec<u8>),
    /// FLOOD: out of [`FlowModule::flood_ports`] of the `in_port`.
    Flood(Vec<u8>),
    /// ALL: out of [`FlowModule::all_ports`] of the `in_port`.
    All(Vec<u8>),
    /// A packet-in. For the packet-out's own actions: reason ACTION, table
    /// 0, cookie `u64::MAX`; from the tables (output to TABLE): the
    /// entry's. `tun`: the packet's tunnel metadata at the output (none:
    /// [`TunMeta::NONE`]), for the packet-in's match.
    Controller {
        data: Vec<u8>,
        meta: ControllerMeta,
        tun: TunMeta,
    },
    /// To `OFPP_LOCAL` (also IN_PORT when `in_port` is LOCAL).
    Local(Vec<u8>),
}

/// The last few distinct header prefixes seen in a batch, with the plan
/// each led to: a frame of the same length whose first `depth` bytes are
/// the same parses to the same key, so it skips parsing and lookups. An
/// entry whose plan rewrites nothing also keeps its verdict and counts its
/// packets itself (credited to the plan when the entry goes, before any
/// upcall, and at the end of the batch): such a hit is a few compares.
pub(crate) struct Memo {
    e: [MemoEntry; Memo::WAYS],
    /// The entry that hit last (tried first) and the one before (second).
    last: usize,
    prev: usize,
    next: usize,
    /// Lookups that hit and missed this batch: a memo that does not pay
    /// is skipped.
    hits: usize,
    misses: usize,
}

#[derive(Clone, Copy)]
struct MemoEntry {
    len: usize,
    /// Whole words compared; 0 marks an unused entry.
    words: usize,
    /// The first `depth` bytes as little-endian words, the last masked.
    hdr: [u64; Memo::WORDS],
    /// Which bytes of the last word are within `depth`.
    tail: u64,
    slot: u32,
    layout: Layout,
    verdict: Verdict,
    /// The plan rewrites nothing: hits only count.
    fast: bool,
    /// The plan outputs to NORMAL, which still runs per packet...
    normal: bool,
    /// ...unless it made a bare verdict (no rewrite, no variant) for this
    /// entry's addresses at the MAC table epoch `nv_epoch` (0: none) of
    /// this batch: then that verdict is replayed, with the `NV_*` counts.
    nv: Verdict,
    nv_epoch: u32,
    nv_counts: u8,
    /// Fast hits not yet credited to the plan.
    packets: u64,
    bytes: u64,
}

/// The 8 bytes of `d` at `at` (the caller knows they are there).
#[inline(always)]
fn load(d: &[u8], at: usize) -> u64 {
    match d.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        None => 0,
    }
}

impl MemoEntry {
    const EMPTY: MemoEntry = MemoEntry {
        len: 0,
        words: 0,
        hdr: [0; Memo::WORDS],
        tail: 0,
        slot: 0,
        layout: Layout {
            vlans: 0,
            l3_kind: key::L3::None,
            l3: 0,
            l4: 0,
            proto: 0,
            ip_end: 0,
            nd_ll: 0,
        },
        verdict: Verdict::Drop,
        fast: false,
        normal: false,
        nv: Verdict::Drop,
        nv_epoch: 0,
        nv_counts: 0,
        packets: 0,
        bytes: 0,
    };

    #[inline(always)]
    fn matches(&self, d: &[u8]) -> bool {
        if d.len() != self.len || self.words == 0 {
            return false;
        }
        // One bounds check for the whole prefix, then word compares.
        let n = self.words;
        let Some(b) = d.get(..8 * n) else {
            return false;
        };
        // Branch-free: hits are the common case (a memo that misses is
        // soon skipped), so every word is compared.
        let mut d = (load(b, 8 * (n - 1)) & self.tail) ^ self.hdr[n - 1];
        for (c, h) in b.chunks_exact(8).zip(&self.hdr[..n - 1]) {
            d |= u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) ^ h;
        }
        d == 0
    }

    /// Credits the fast hits to the plan.
    fn settle(&mut self, st: &mut Stripe) {
        if self.packets != 0 {
            st.account(self.slot, self.packets, self.bytes);
            st.count_n(ctr::MEMO_HITS, self.packets);
            self.packets = 0;
            self.bytes = 0;
        }
    }
}

impl Memo {
    const WAYS: usize = 8;
    const WORDS: usize = 16;

    fn new() -> Memo {
        Memo {
            e: [MemoEntry::EMPTY; Memo::WAYS],
            last: 0,
            prev: 0,
            next: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Starts a batch: entries hold one batch's verdicts and in-port.
    fn reset(&mut self) {
        self.clear();
        (self.last, self.prev, self.next, self.hits, self.misses) = (0, 0, 0, 0, 0);
    }

    /// Credits every entry's fast hits to its plan.
    fn settle(&mut self, st: &mut Stripe) {
        for e in &mut self.e {
            e.settle(st);
        }
    }

    /// Forgets every entry (their slots are void); settle first.
    fn clear(&mut self) {
        for e in &mut self.e {
            e.words = 0;
        }
    }

    /// Whether the memo is worth consulting beyond its last entry: always
    /// at first, then while at least a quarter of lookups hit.
    #[inline(always)]
    fn useful(&self) -> bool {
        self.hits + self.misses < 32 || self.hits * 3 >= self.misses
    }

    /// The entry for `d`, if a recent frame parsed the same.
    #[inline(always)]
    fn get(&mut self, d: &[u8]) -> Option<&mut MemoEntry> {
        if self.e[self.last].matches(d) {
            self.hits += 1;
            return Some(&mut self.e[self.last]);
        }
        if !self.useful() {
            return None;
        }
        let at = if self.e[self.prev].matches(d) {
            std::mem::swap(&mut self.last, &mut self.prev);
            self.last
        } else {
            let (l, p) = (self.last, self.prev);
            let Some(at) = (0..Memo::WAYS).find(|&k| k != l && k != p && self.e[k].matches(d))
            else {
                self.misses += 1;
                return None;
            };
            (self.prev, self.last) = (self.last, at);
            at
        };
        self.hits += 1;
        Some(&mut self.e[at])
    }

    /// Remembers `d`'s first `depth` bytes and what they led to, if whole
    /// words of them fit in the frame and the memo.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        st: &mut Stripe,
        d: &[u8],
        depth: usize,
        slot: u32,
        layout: Layout,
        verdict: Verdict,
        fast: bool,
        normal: bool,
    ) {
        let words = depth.div_ceil(8);
        if words == 0 || words > Memo::WORDS || 8 * words > d.len() || !self.useful() {
            return;
        }
        let at = self.next % Memo::WAYS;
        self.next += 1;
        let e = &mut self.e[at];
        e.settle(st);
        let rem = depth % 8;
        e.tail = if rem == 0 {
            u64::MAX
        } else {
            (1u64 << (8 * rem)) - 1
        };
        for k in 0..words {
            e.hdr[k] = load(d, 8 * k);
        }
        e.hdr[words - 1] &= e.tail;
        (e.len, e.words, e.slot, e.layout) = (d.len(), words, slot, layout);
        (e.verdict, e.fast, e.normal, e.nv_epoch) = (verdict, fast, normal, 0);
        (self.prev, self.last) = (self.last, at);
    }
}

impl FlowModule {
    pub fn new(cfg: FlowConfig) -> FlowModule {
        let cfg = FlowConfig {
            tables: cfg.tables.clamp(1, 255),
            ..cfg
        };
        let m = FlowModule {
            cfg,
            pipe: RwLock::new({
                let mut p = Pipeline::new(cfg.tables, cfg.max_flows);
                p.learn = pipeline::LearnLimits::new(cfg.learn_rate, cfg.learn_max);
                p
            }),
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Stripe::default()))
                .collect(),
            dp: DpCounters::default(),
            removed: Mutex::new(VecDeque::new()),
            removed_overflow: Default::default(),
            metas: Mutex::new(Metas::default()),
            macs: MacTable::new(cfg.macs),
            tlv_reg: Default::default(),
        };
        m.write().tlv_id = m.tlv_reg.id();
        m.install_presets();
        m
    }

    pub fn config(&self) -> FlowConfig {
        self.cfg
    }

    fn read(&self) -> RwLockReadGuard<'_, Pipeline> {
        self.pipe.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Pipeline> {
        self.pipe.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A stripe no other batch is using, preferring the one `port` maps to
    /// (a worker owns its ports, so it mostly finds its own cache warm).
    fn stripe(&self, port: PortId) -> MutexGuard<'_, Stripe> {
        let n = self.stripes.len();
        let start = port.index() % n;
        for k in 0..n {
            match self.stripes[(start + k) % n].try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(e)) => {
                    let mut g = e.into_inner();
                    g.invalidate();
                    return g;
                }
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.stripes[start].lock().unwrap_or_else(|e| {
            let mut g = e.into_inner();
            g.invalidate();
            g
        })
    }

    /// Empties every stripe's caches (tests: a lookup without caches).
    #[cfg(test)]
    fn drop_caches(&self) {
        for s in &self.stripes {
            s.lock().unwrap_or_else(|e| e.into_inner()).invalidate();
        }
    }

    /// Applies an `OFPT_FLOW_MOD`. Returns the entries it removed that had
    /// `OFPFF_SEND_FLOW_REM` (DELETE, DELETE_STRICT), for the agent to send.
    /// When it returns, every later batch sees the change.
    pub fn flow_mod(&self, fm: &FlowMod, now: Nanos) -> Result<Vec<Removed>, ErrorCode> {
        self.write().flow_mod(fm, now)
    }

    /// Applies an `NXT_TLV_TABLE_MOD`: all of it or nothing, with Open
    /// vSwitch's errors; a map a flow uses is not deleted. Later batches
    /// read Geneve options through the new table.
    pub fn tlv_table_mod(&self, m: &crate::openflow::tlv::TlvTableMod) -> Result<(), ErrorCode> {
        let mut p = self.write();
        let in_use = p.tun_metadata_in_use();
        p.tlv.apply(m, in_use)?;
        self.tlv_reg.set(&p.tlv);
        Ok(())
    }

    /// The TLV table, as `NXT_TLV_TABLE_REPLY` says it.
    pub fn tlv_table(&self) -> crate::openflow::tlv::TlvTableReply {
        self.read().tlv.reply()
    }

    /// Applies an `OFPT_GROUP_MOD`. Flow entries removed because they used a
    /// deleted group are queued for [`FlowModule::take_removed`].
    pub fn group_mod(&self, gm: &GroupMod, now: Nanos) -> Result<(), ErrorCode> {
        let removed = self.write().group_mod(gm, now)?;
        self.queue_removed(removed);
        Ok(())
    }

    /// Applies a bundle's changes as one (OpenFlow 1.4's atomic commit): in
    /// order, under one write lock, so no batch sees part of them; if one
    /// fails, the tables and groups it could have touched are put back as
    /// they were and its index and error are returned. Only the tables the
    /// flow mods name are copied beforehand (every table for `OFPTT_ALL`),
    /// and the groups only if a group mod is among the changes. Flows that
    /// group deletions removed come back with the commit's own removals.
    pub fn commit(
        &self,
        changes: &[Change<'_>],
        now: Nanos,
    ) -> Result<Vec<Removed>, (usize, ErrorCode)> {
        let mut p = self.write();
        let n = p.tables.len();
        let mut tables: Vec<usize> = Vec::new();
        let mut groups = false;
        for c in changes {
            match c {
                Change::Flow(fm) if fm.table_id == crate::openflow::table_id::ALL => {
                    tables = (0..n).collect();
                }
                Change::Flow(fm) => tables.push(usize::from(fm.table_id)),
                // A group deletion removes flows from any table.
                Change::Group(_) => {
                    groups = true;
                    tables = (0..n).collect();
                }
            }
        }
        tables.sort_unstable();
        tables.dedup();
        tables.retain(|&t| t < n);
        let saved_tables: Vec<(usize, pipeline::Table)> =
            tables.iter().map(|&t| (t, p.tables[t].clone())).collect();
        let saved_groups = groups.then(|| p.groups.clone());
        let (flow_count, next_seq) = (p.flow_count, p.next_seq);
        let mut removed = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let r = match c {
                Change::Flow(fm) => p.flow_mod(fm, now),
                Change::Group(gm) => p.group_mod(gm, now),
            };
            match r {
                Ok(mut r) => removed.append(&mut r),
                Err(code) => {
                    for (t, table) in saved_tables {
                        p.tables[t] = table;
                    }
                    if let Some(g) = saved_groups {
                        p.groups = g;
                    }
                    p.flow_count = flow_count;
                    p.next_seq = next_seq;
                    p.bump();
                    return Err((i, code));
                }
            }
        }
        Ok(removed)
    }

    /// Removes the flow entries whose idle or hard timeout has passed at
    /// `now`; returns those that had `OFPFF_SEND_FLOW_REM`.
    pub fn expire(&self, now: Nanos) -> Vec<Removed> {
        if !self.read().any_expired(now) {
            return Vec::new();
        }
        self.write().remove_expired(now)
    }

    /// Installs flows that `learn` actions built (see `pipeline::learn`),
    /// under one write lock, counting what was added and skipped.
    fn install_learned(&self, pending: &[Arc<pipeline::Learned>], now: Nanos) {
        let (mut added, mut skipped) = (0, 0);
        {
            let mut p = self.write();
            for l in pending {
                match p.learn_install(l, now) {
                    pipeline::LearnOutcome::Added => added += 1,
                    pipeline::LearnOutcome::Skipped => skipped += 1,
                    pipeline::LearnOutcome::Refreshed => {}
                }
            }
        }
        self.dp.0[ctr::LEARNED].fetch_add(added, Ordering::Relaxed);
        self.dp.0[ctr::LEARN_SKIPPED].fetch_add(skipped, Ordering::Relaxed);
    }

    /// Takes the removals queued by [`Module::tick`] and group deletions.
    pub fn take_removed(&self) -> Vec<Removed> {
        let mut q = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }

    fn queue_removed(&self, removed: Vec<Removed>) {
        if removed.is_empty() {
            return;
        }
        let mut q = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        for r in removed {
            if q.len() >= REMOVED_QUEUE {
                q.pop_front();
                self.removed_overflow.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(r);
        }
    }

    /// The pipeline's change count: it moves with every change to tables,
    /// groups or port liveness (whether the change empties the caches, a
    /// new generation, or drops only the megaflows it touches, a table
    /// edit).
    pub fn generation(&self) -> u64 {
        let p = self.read();
        p.generation + p.edit_seq
    }

    /// Declares the ports that exist (OpenFlow port numbers): outputs to
    /// other ports are then refused (`OFPBAC_BAD_OUT_PORT`) and they count
    /// as not live. Without it, any number a port can have is accepted.
    pub fn set_ports(&self, ports: &[u32]) {
        let mut p = self.write();
        p.known_ports = Some(ports.iter().copied().collect());
        p.ports_changed();
        p.bump();
    }

    /// Forgets the port set given to [`FlowModule::set_ports`].
    pub fn clear_ports(&self) {
        let mut p = self.write();
        p.known_ports = None;
        p.ports_changed();
        p.bump();
    }

    /// Reports a port up or down, for fast-failover and select groups.
    /// Every port is live until reported otherwise; detaching a port from
    /// the switch reports it down, attaching it reports it up.
    pub fn set_port_live(&self, port: u32, live: bool) {
        let mut p = self.write();
        let changed = if live {
            p.dead_ports.remove(&port)
        } else {
            p.dead_ports.insert(port)
        };
        if changed {
            p.bump();
        }
    }

    fn attached(&self, port: u32, attached: bool) {
        let mut p = self.write();
        let changed = if attached {
            p.dead_ports.remove(&port) | p.attached.insert(port)
        } else {
            p.dead_ports.insert(port) | p.attached.remove(&port)
        };
        if changed {
            p.ports_changed();
            p.bump();
        }
    }

    /// Sets a port's `OFPPC_*` bits ([`crate::openflow::port::config`]; the
    /// others are ignored): PORT_DOWN or NO_RECV drop what the port
    /// receives (`no_recv_drops`), PORT_DOWN or NO_FWD make every output
    /// skip it (explicit, IN_PORT, flood/all, groups; a PORT_DOWN port is
    /// not live for fast-failover and select), NO_FLOOD makes FLOOD and
    /// NORMAL's flooding skip it (ALL and explicit outputs still reach
    /// it), NO_PACKET_IN keeps what it receives from the controller. A
    /// change applies to every later batch.
    pub fn set_port_config(&self, port: u32, config: u32) {
        let config = config & config::ALL;
        let mut p = self.write();
        let old = if config == 0 {
            p.port_config.remove(&port)
        } else {
            p.port_config.insert(port, config)
        };
        if old.unwrap_or(0) != config {
            p.ports_changed();
            p.bump();
        }
    }

    /// Whether a packet whose TTL cannot be decremented goes to the
    /// controller (reason INVALID_TTL, the entry's table and cookie,
    /// `max_len` NO_BUFFER: the agent cuts it to its `miss_send_len`)
    /// before it is dropped. Off by default; the agent turns it on when a
    /// controller's asynchronous configuration asks for INVALID_TTL.
    pub fn set_invalid_ttl_to_controller(&self, on: bool) {
        let mut p = self.write();
        if p.invalid_ttl_to_controller != on {
            p.invalid_ttl_to_controller = on;
            p.bump();
        }
    }

    /// A port's `OFPPC_*` bits as set by [`FlowModule::set_port_config`].
    pub fn port_config(&self, port: u32) -> u32 {
        self.read().config(port)
    }

    /// The ports a FLOOD output from `in_port` goes to: the ports given
    /// to [`FlowModule::set_ports`] (or else those attached to the
    /// switch), but `in_port` and those PORT_DOWN, NO_FWD or NO_FLOOD.
    pub fn flood_ports(&self, in_port: u32) -> Vec<PortId> {
        self.read().flood_ports(in_port, false)
    }

    /// The ports an ALL output from `in_port` goes to: as
    /// [`FlowModule::flood_ports`], NO_FLOOD ports included.
    pub fn all_ports(&self, in_port: u32) -> Vec<PortId> {
        self.read().flood_ports(in_port, true)
    }

    /// The packet-in metadata behind a [`crate::switch::PacketIn::tag`].
    /// None for tag 0 (a module that gave no tag, or this module's table
    /// was full): send such a packet-in with reason ACTION, table 0, the
    /// cookie `u64::MAX` and the whole frame.
    pub fn controller_meta(&self, tag: u32) -> Option<ControllerMeta> {
        let m = self.metas.lock().unwrap_or_else(|e| e.into_inner());
        let i = usize::try_from(tag).ok()?.checked_sub(1)?;
        m.list.get(i).copied()
    }

    /// The tag for `meta` (0 once the table is full).
    fn intern(&self, meta: ControllerMeta) -> u32 {
        let mut m = self.metas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&t) = m.index.get(&meta) {
            return t;
        }
        if m.list.len() >= MAX_CONTROLLER_METAS {
            return 0;
        }
        m.list.push(meta);
        let t = m.list.len() as u32;
        m.index.insert(meta, t);
        t
    }

    /// Runs an `OFPT_PACKET_OUT`: `actions` on a copy of `frame`, in order,
    /// as received on `in_port` (a port number, `OFPP_CONTROLLER` or
    /// `OFPP_LOCAL`). Returns what to send, in order, each output with the
    /// bytes as rewritten up to it (so no one-version limit here). Group
    /// buckets run on copies, as in the pipeline, and count in the group
    /// counters. Output to `OFPP_TABLE` runs the packet as rewritten so
    /// far through the tables from table 0 (counted in flow, table and
    /// group counters like any packet; a NO_RECV `in_port` does not stop
    /// it) and adds what the pipeline outputs, each with its own bytes.
    /// Port configuration applies as in the data path. Output to NORMAL
    /// returns a [`Output::Port`] per port it reaches, each in the form
    /// (tagged or untagged) that port wants.
    ///
    /// Errors: `OFPBRC_BAD_PORT` for another `in_port` (0, ANY, other
    /// reserved numbers), `OFPBRC_BAD_LEN` for a frame shorter than an
    /// Ethernet header, and the action checks of a flow mod without a
    /// match (`OFPBAC_BAD_OUT_PORT` for unknown ports once
    /// [`FlowModule::set_ports`] declared them, and ANY;
    /// `OFPBAC_BAD_OUT_GROUP`, `OFPBAC_BAD_TYPE`, `OFPBAC_BAD_SET_TYPE`).
    pub fn packet_out(
        &self,
        in_port: u32,
        frame: &[u8],
        actions: &[Action],
        now: Nanos,
    ) -> Result<Vec<Output>, ErrorCode> {
        self.packet_out_with(in_port, &PacketOutStart::default(), frame, actions, now)
    }

    /// [`FlowModule::packet_out`] of a packet that comes with pipeline
    /// fields `start` (an OpenFlow 1.5 packet-out's match): its tunnel
    /// metadata (`tun_id`, `tun_src`, `tun_dst`, `tun_ipv6_*`) and
    /// `metadata` are in the key for the actions and the tables, its
    /// registers start as given there too (Open vSwitch's pipeline fields),
    /// and the packet goes out with its tunnel metadata (as the actions
    /// change it) as a packet from a tunnel port does. An output to TABLE
    /// starts the tables from the packet as the actions before it left
    /// it: its rewrites, registers and `metadata`.
    pub fn packet_out_with(
        &self,
        in_port: u32,
        start: &PacketOutStart,
        frame: &[u8],
        actions: &[Action],
        now: Nanos,
    ) -> Result<Vec<Output>, ErrorCode> {
        let came = start.tun;
        let pn = PortNo(in_port);
        if !(pn == PortNo::CONTROLLER || pn == PortNo::LOCAL || (in_port != 0 && !pn.is_reserved()))
        {
            return Err(ErrorCode::BadRequest(BadRequestCode::BadPort));
        }
        let pipe = self.read();
        let direct: Vec<Action> = actions
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    Action::Output {
                        port: PortNo::TABLE,
                        ..
                    }
                )
            })
            .cloned()
            .collect();
        pipe.check_actions(&direct, None)?;
        let mut p =
            key::parse(frame, in_port).ok_or(ErrorCode::BadRequest(BadRequestCode::BadLen))?;
        key::set_tunnel(&mut p.key, &came);
        key::METADATA.set(&mut p.key, start.metadata);
        let trace = pipe.trace_actions(&p.key, start.regs, actions);
        trace.credit(&pipe, frame.len() as u64, now);
        let mut outs = Vec::new();
        let mut learns = trace.learns;
        let mut table_starts = trace.table_starts.into_iter();
        // NORMAL from the controller (or LOCAL without a local port)
        // learns nothing and may go to every port of the packet's VLAN.
        let in_id = pipe.port_id(in_port);
        let normal = |data: &[u8], outs: &mut Vec<Output>| {
            let (o, _) = normal::packet_out(&pipe, &self.macs, in_id, data, MacTable::secs(now));
            outs.extend(o.into_iter().map(|(p, d)| Output::Port(p, d)));
        };
        // The metadata at an output: what the packet came with as the ops
        // before it changed it; none (a plain output) if it came with
        // none and no op set any.
        let tun = |came: TunMeta, ops: &[actions::Op]| {
            (came != TunMeta::NONE || ops.iter().any(actions::Op::is_tunnel))
                .then(|| actions::tunnel(came, ops))
        };
        for (o, ops) in trace.outs {
            let Some(data) = actions::rewritten(frame, p.layout, &ops) else {
                continue;
            };
            if o == Out::Normal {
                normal(&data, &mut outs);
                continue;
            }
            let set = tun(came, &ops);
            if o != Out::Table {
                outs.extend(output(o, in_port, in_id, data, set));
                continue;
            }
            let Some(mut q) = key::parse(&data, in_port) else {
                continue;
            };
            let came = set.unwrap_or(TunMeta::NONE);
            key::set_tunnel(&mut q.key, &came);
            let (regs, metadata) = table_starts.next().unwrap_or((start.regs, start.metadata));
            key::METADATA.set(&mut q.key, metadata);
            let mut t = pipe.trace_tables(&q.key, regs);
            t.credit(&pipe, data.len() as u64, now);
            t.fin(&data, q.layout.l4);
            learns.append(&mut t.learns);
            for (o, ops) in t.outs {
                if let Some(d) = actions::rewritten(&data, q.layout, &ops) {
                    if o == Out::Normal {
                        normal(&d, &mut outs);
                    } else {
                        outs.extend(output(o, in_port, in_id, d, tun(came, &ops)));
                    }
                }
            }
        }
        drop(pipe);
        // What the actions learned goes in as the data path's does.
        let learns: Vec<_> = learns.into_iter().filter(|l| l.claim()).collect();
        if !learns.is_empty() {
            self.install_learned(&learns, now);
        }
        Ok(outs)
    }

    /// `OFPMP_FLOW`: the entries a request selects, echoed as installed.
    pub fn flow_stats(
        &self,
        req: &FlowStatsRequest,
        now: Nanos,
    ) -> Result<Vec<FlowStats>, ErrorCode> {
        self.read().flow_stats(req, now)
    }

    /// `OFPMP_AGGREGATE`.
    pub fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, ErrorCode> {
        self.read().aggregate_stats(req)
    }

    /// `OFPMP_TABLE`: one entry per table.
    pub fn table_stats(&self) -> Vec<TableStats> {
        self.read().table_stats()
    }

    /// `OFPMP_GROUP` for one group or `OFPG_ALL`.
    pub fn group_stats(&self, group_id: u32, now: Nanos) -> Vec<GroupStats> {
        self.read().group_stats(group_id, now)
    }

    /// `OFPMP_GROUP_DESC`.
    pub fn group_desc(&self) -> Vec<GroupDesc> {
        self.read().group_desc()
    }

    /// `OFPMP_GROUP_FEATURES`.
    pub fn group_features(&self) -> GroupFeatures {
        stats::group_features()
    }

    /// Applies an `OFPT_METER_MOD` (see `meter`). Flow entries removed
    /// with a deleted meter are queued for [`FlowModule::take_removed`].
    pub fn meter_mod(&self, mm: &MeterMod, now: Nanos) -> Result<(), ErrorCode> {
        let removed = self.write().meter_mod(mm, now)?;
        self.queue_removed(removed);
        Ok(())
    }

    /// `OFPMP_METER` for one meter or `OFPM_ALL` (an unknown one: none).
    pub fn meter_stats(&self, meter_id: u32, now: Nanos) -> Vec<MeterStats> {
        self.read().meter_stats(meter_id, now)
    }

    /// `OFPMP_METER_CONFIG` for one meter or `OFPM_ALL`.
    pub fn meter_config(&self, meter_id: u32) -> Vec<MeterConfig> {
        self.read().meters.config(meter_id)
    }

    /// `OFPMP_METER_FEATURES`.
    pub fn meter_features(&self) -> MeterFeatures {
        meter::features()
    }

    /// Flow entries in all tables.
    pub fn flow_count(&self) -> usize {
        self.read().flow_count
    }

    /// Number of flow tables.
    pub fn tables(&self) -> usize {
        self.cfg.tables
    }

    /// `OFPMP_TABLE_FEATURES`: what every table accepts.
    pub fn table_features(&self) -> Vec<crate::openflow::table::TableFeatures> {
        let n = self.cfg.tables as u8;
        let max = u32::try_from(self.cfg.max_flows).unwrap_or(u32::MAX);
        (0..n)
            .map(|t| features::table_features(t, n, max))
            .collect()
    }

    /// NORMAL for packet `i` of a batch whose plan gave it verdict `v`
    /// (see [`normal::apply`]); returns its verdict, and the counts to
    /// replay with it if it is a bare verdict that any packet with the
    /// same addresses gets until the MAC table changes.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn normal(
        &self,
        pipe: &Pipeline,
        st: &mut Stripe,
        batch: &mut Batch<'_>,
        i: usize,
        v: Verdict,
        out: &mut Verdicts,
        now_s: u32,
    ) -> (Verdict, Option<u8>) {
        let Some(f) = normal::Frame::read(batch.data(i)) else {
            st.count(ctr::NORMAL_PACKETS);
            return (v, None);
        };
        let mut o = normal::Outcome::default();
        let dests = &mut st.normal;
        let in_port = Some(batch.in_port());
        let (r, flooded, no_room) =
            match normal::decide(pipe, &self.macs, in_port, &f, now_s, dests, &mut o) {
                // Refused by the input port's VLAN configuration: the
                // plan's other outputs stand.
                None => (v, false, false),
                Some(vlan) => match normal::apply(batch, i, &f, vlan, v, dests, out) {
                    Some(r) => (r, dests.flooded, false),
                    None => (Verdict::Drop, dests.flooded, true),
                },
            };
        let counts = (u8::from(flooded) * NV_FLOOD) | (u8::from(o.vlan_drop) * NV_VLAN_DROP);
        st.count_normal(counts);
        if no_room {
            st.count(ctr::REWRITE_DROPS);
        }
        let bare = !no_room && !st.normal.reshaped;
        (r, bare.then_some(counts))
    }

    /// Sets a port's VLAN configuration for NORMAL (Open vSwitch's
    /// `vlan_mode`, `tag`, `trunks`); the default is a trunk of every
    /// VLAN. Applies to every later batch (it waits for those in flight);
    /// no cached plan depends on it, so the caches stay. The MAC table is
    /// kept: entries in VLANs the port no longer carries are not used for
    /// it (a packet to such a MAC goes nowhere) and age out.
    /// Makes switch port `port` OpenFlow's `LOCAL` (the bridge's own
    /// interface), or none. Packets from it have in_port LOCAL, outputs to
    /// LOCAL go to it, and its own number is no OpenFlow port.
    pub fn set_local_port(&self, port: Option<PortId>) {
        let mut p = self.write();
        p.local = port;
        p.ports_changed();
        p.bump();
    }

    /// The switch port that is `LOCAL`, if any.
    pub fn local_port(&self) -> Option<PortId> {
        self.read().local
    }

    /// The OpenFlow number of switch port `id` (LOCAL for the local port).
    pub fn of_port(&self, id: PortId) -> u32 {
        self.read().of_port(id)
    }

    /// The switch port of OpenFlow port `n`, if it is one.
    pub fn port_id(&self, n: u32) -> Option<PortId> {
        self.read().port_id(n)
    }

    pub fn set_port_vlan(&self, port: PortId, vlan: PortVlan) {
        let mut p = self.write();
        let key = u32::from(port.0);
        if vlan == PortVlan::default() {
            p.port_vlans.remove(&key);
        } else {
            p.port_vlans.insert(key, vlan);
        }
    }

    /// A port's VLAN configuration for NORMAL.
    pub fn port_vlan(&self, port: PortId) -> PortVlan {
        self.read().port_vlan(u32::from(port.0)).clone()
    }

    /// NORMAL's MAC table at `now` (`ovs-appctl fdb/show`): the live
    /// entries, by VLAN and MAC, with their age in seconds.
    pub fn fdb(&self, now: Nanos) -> Vec<FdbEntry> {
        self.macs.entries(now)
    }

    /// Empties NORMAL's MAC table (`ovs-appctl fdb/flush`).
    pub fn fdb_flush(&self) {
        self.macs.flush();
    }
}

/// Counts a NORMAL decision adds per packet (besides `normal_packets`).
pub(crate) const NV_FLOOD: u8 = 1;
pub(crate) const NV_VLAN_DROP: u8 = 2;

/// What a packet-out sends for one executor output (`in_id`: the switch
/// port of `in_port`, if it is one).
fn output(
    o: Out,
    in_port: u32,
    in_id: Option<PortId>,
    data: Vec<u8>,
    tun: Option<TunMeta>,
) -> Option<Output> {
    Some(match o {
        Out::Port(p) if Some(p) == in_id => return None,
        Out::Port(p) => match tun {
            Some(t) => Output::PortTunnel(p, data, t),
            None => Output::Port(p, data),
        },
        Out::InPort if in_id.is_some() => Output::InPort(data),
        Out::InPort if in_port == PortNo::LOCAL.0 => Output::Local(data),
        // Back to the controller it came from: nowhere.
        Out::InPort if PortNo(in_port).is_reserved() => return None,
        Out::InPort => Output::InPort(data),
        Out::Flood => Output::Flood(data),
        Out::All => Output::All(data),
        Out::Controller(meta) => Output::Controller {
            data,
            meta,
            tun: tun.unwrap_or(TunMeta::NONE),
        },
        Out::Local => Output::Local(data),
        Out::Table | Out::Normal => return None,
    })
}

/// The copies of one packet that outputs of its plan want with bytes of
/// their own (`output:5,pop_vlan,output:1`), made from the frame as
/// received, before the plan's own rewrites change it in place. One per
/// batch, its buffers reused from packet to packet.
#[derive(Default)]
struct Versions {
    /// The copies end to end, and where each ends, with its port.
    bytes: Vec<u8>,
    ends: Vec<(PortId, usize)>,
    scratch: Vec<u8>,
    /// When the plan sets tunnel metadata: the packet's own, each
    /// copy's, and its controller copy's (its metadata at the controller
    /// output, which may differ from what it goes out with).
    tun: Option<TunMeta>,
    tuns: Vec<TunMeta>,
    ctl_tun: Option<TunMeta>,
}

impl Versions {
    /// Makes the copies of packet `i` for the plan in `slot`.
    fn make(
        &mut self,
        st: &Stripe,
        batch: &Batch<'_>,
        i: usize,
        tun: Option<&[TunMeta]>,
        (slot, layout): (u32, Layout),
    ) {
        let came = tun.map_or(TunMeta::NONE, |t| t[i]);
        self.bytes.clear();
        self.ends.clear();
        self.tuns.clear();
        let tun_ops = st.tunnel_ops(slot);
        self.tun = tun_ops.map(|ops| actions::tunnel(came, ops));
        self.ctl_tun = tun_ops
            .and_then(|_| st.controller_tunnel_ops(slot))
            .map(|ops| actions::tunnel(came, ops));
        let vs = st.versions(slot);
        if vs.is_empty() {
            return;
        }
        let d = batch.data(i);
        for (ops, p) in vs {
            if actions::rewritten_into(d, layout, ops, &mut self.scratch) {
                self.bytes.extend_from_slice(&self.scratch);
                self.ends.push((*p, self.bytes.len()));
                if tun_ops.is_some() {
                    self.tuns.push(actions::tunnel(came, ops));
                }
            }
        }
    }

    /// Makes the copies of packet `i`, then applies the plan's rewrites to
    /// it in place ([`Stripe::rewrite`]; false: the packet is dropped).
    fn rewrite(
        &mut self,
        st: &mut Stripe,
        batch: &mut Batch<'_>,
        i: usize,
        tun: Option<&[TunMeta]>,
        (slot, layout): (u32, Layout),
    ) -> bool {
        self.make(st, batch, i, tun, (slot, layout));
        st.rewrite(batch, i, slot, layout)
    }

    /// Records the copies as variants of packet `i`. Past the per-batch
    /// limit of variants a copy is lost (as a full port would lose it).
    fn add(&self, out: &mut Verdicts, i: usize) {
        if let Some(m) = self.tun {
            out.set_tunnel(i, m);
        }
        if let Some(m) = self.ctl_tun {
            out.set_controller_tunnel(i, m);
        }
        let mut start = 0;
        for (k, &(p, end)) in self.ends.iter().enumerate() {
            let tun = self.tuns.get(k).copied();
            out.add_variant_with(i, Verdict::Port(p), &[&self.bytes[start..end]], tun);
            start = end;
        }
    }
}

impl Module for FlowModule {
    fn name(&self) -> &'static str {
        "flow"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, now: Nanos) {
        // One generation per batch: the read lock is held to the end, and
        // the counters are flushed under it too.
        let pipe = self.read();
        let mut st = self.stripe(batch.in_port());
        st.begin(&pipe, now);
        let in_port = pipe.of_port(batch.in_port());
        let now_s = MacTable::secs(now);
        // The memo lives with the stripe (no per-batch initialisation of
        // its entries) but only ever serves one batch.
        let mut memo = st.memo.take().unwrap_or_else(|| Box::new(Memo::new()));
        let mut versions = Versions::default();
        memo.reset();
        // A tunnel port's packets: their metadata is in the key, and goes
        // out as it came unless a plan sets some.
        // Geneve options become their `tun_metadata` fields first (a
        // batch without options keeps its own metadata).
        let mut tun_drop = Vec::new();
        let resolved = batch.tunnel().and_then(|t| {
            pipeline::resolve_tun_metadata(&pipe.tlv, pipe.tlv_id, batch, t, &mut tun_drop)
        });
        let tun = resolved.as_deref().or(batch.tunnel());
        if let Some(t) = tun {
            for (j, m) in t.iter().enumerate() {
                out.set_tunnel(j, *m);
            }
        }
        let some_drop = tun_drop.contains(&true);
        st.normal.begin();
        let mut p = key::Parsed::default();
        for i in 0..batch.len() {
            if some_drop && tun_drop[i] {
                out.set(i, Verdict::Drop);
                st.count(ctr::TUN_METADATA_DROPS);
                continue;
            }
            let d = batch.data(i);
            let len = d.len() as u64;
            if let Some(e) = memo.get(d) {
                if e.fast {
                    e.packets += 1;
                    e.bytes += len;
                    let v = if !e.normal {
                        e.verdict
                    } else if e.nv_epoch == st.normal.epoch {
                        st.count_normal(e.nv_counts);
                        e.nv
                    } else {
                        let (v, counts) =
                            self.normal(&pipe, &mut st, batch, i, e.verdict, out, now_s);
                        if let Some(c) = counts {
                            (e.nv, e.nv_epoch, e.nv_counts) = (v, st.normal.epoch, c);
                        }
                        v
                    };
                    out.set(i, v);
                    continue;
                }
                let (slot, layout, v) = (e.slot, e.layout, e.verdict);
                st.count(ctr::MEMO_HITS);
                st.account(slot, 1, len);
                st.tcp_flags(slot, d, layout.l4);
                if versions.rewrite(&mut st, batch, i, tun, (slot, layout)) {
                    versions.add(out, i);
                    let v = if st.normal(slot) {
                        self.normal(&pipe, &mut st, batch, i, v, out, now_s).0
                    } else {
                        v
                    };
                    out.set(i, v);
                    if let Some(tag) = st.controller_tag(slot) {
                        out.to_controller(i, tag);
                    }
                }
                continue;
            }
            // Only as deep as the cached megaflows look; the whole
            // parse waits for an upcall or a plan that rewrites.
            let stage = st.parse_stage();
            if !key::parse_upto(d, in_port, &mut p, stage) {
                out.set(i, Verdict::Invalid);
                continue;
            }
            if let Some(t) = tun {
                key::set_tunnel(&mut p.key, &t[i]);
            }
            let mut whole = stage == key::STAGE_L4;
            let slot = match st.lookup(&p.key) {
                Some(s) => s,
                None => {
                    // The upcall: settle the memo first, since the insert
                    // may empty the cache (and void the memo's slots).
                    memo.settle(&mut st);
                    if !whole {
                        key::parse_into(d, in_port, &mut p);
                        if let Some(t) = tun {
                            key::set_tunnel(&mut p.key, &t[i]);
                        }
                        whole = true;
                    }
                    let (mut plan, mask) = pipe.compile(&p.key);
                    if let Some(m) = &plan.controller {
                        plan.ctl_tag = self.intern(**m);
                    }
                    let (s, reset) = st.insert(&pipe, now, &self.dp, &p.key, &mask, plan);
                    if reset {
                        memo.clear();
                    }
                    s
                }
            };
            let v = st.verdict(slot, out);
            let fast = st.fast(slot);
            if !fast && !whole && st.rewrites(slot) {
                // Rewrites need the whole layout.
                key::parse_into(d, in_port, &mut p);
            }
            let normal = st.normal(slot);
            // Packets of a tunnel port with the same bytes may differ in
            // their metadata, which the memo does not compare: only a
            // megaflow that does not look at it is remembered.
            if tun.is_none() || !st.reads_tunnel(slot) {
                memo.put(&mut st, d, p.depth, slot, p.layout, v, fast, normal);
            }
            st.account(slot, 1, len);
            st.tcp_flags(slot, d, p.layout.l4);
            if fast {
                let v1 = if normal {
                    self.normal(&pipe, &mut st, batch, i, v, out, now_s).0
                } else {
                    v
                };
                out.set(i, v1);
                if st.port_only(slot) {
                    // Every later frame that parses hits this megaflow.
                    self.rest_of_batch(&pipe, &mut st, batch, i + 1, slot, v, normal, out, now_s);
                    break;
                }
            } else if versions.rewrite(&mut st, batch, i, tun, (slot, p.layout)) {
                versions.add(out, i);
                let v = if normal {
                    self.normal(&pipe, &mut st, batch, i, v, out, now_s).0
                } else {
                    v
                };
                out.set(i, v);
                if let Some(tag) = st.controller_tag(slot) {
                    out.to_controller(i, tag);
                }
            }
        }
        memo.settle(&mut st);
        st.memo = Some(memo);
        st.flush(&pipe, now, &self.dp);
        if !st.pending.is_empty() {
            // Learned flows go in with the read lock released.
            let pending = std::mem::take(&mut st.pending);
            drop(st);
            drop(pipe);
            self.install_learned(&pending, now);
        }
    }

    fn port_attached(&self, port: PortId) {
        self.attached(u32::from(port.0), true);
    }

    fn port_detached(&self, port: PortId) {
        self.attached(u32::from(port.0), false);
        self.macs.forget_port(port);
    }

    fn tick(&self, now: Nanos) {
        self.churn_learned();
        let removed = self.expire(now);
        self.queue_removed(removed);
        self.macs.expire(now);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let (flows, groups, generation) = {
            let p = self.read();
            (p.flow_count, p.groups.len(), p.generation + p.edit_seq)
        };
        let mut v = vec![
            ("flows", flows as u64),
            ("groups", groups as u64),
            ("generation", generation),
        ];
        v.extend(
            ctr::NAMES
                .iter()
                .zip(&self.dp.0)
                .map(|(n, c)| (*n, c.load(Ordering::Relaxed))),
        );
        v.push((
            "removed_overflow",
            self.removed_overflow.load(Ordering::Relaxed),
        ));
        for (k, n) in self.macs.counters() {
            let name = match k {
                "entries" => "mac_entries",
                "learned" => "mac_learned",
                "moved" => "mac_moved",
                "refused" => "mac_refused",
                _ => "mac_aged",
            };
            v.push((name, n));
        }
        v
    }
}

#[cfg(test)]
mod tests;
