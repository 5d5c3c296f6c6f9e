//! ofproto: the switch as OpenFlow sees it, whatever the version on the
//! wire, with no I/O.
//!
//! Between the control front ends (sockets, in `control/`) and the
//! modules: the protocol engine ([`Engine`]: handshakes and version
//! negotiation, roles, asynchronous-message masks, multipart replies,
//! bundles, keepalives) drives a [`Datapath`], the narrow trait through
//! which it reaches the switch (ports and their facts, the flow tables,
//! packets to and from the controller, counters). Messages are the codec's
//! version-independent model ([`crate::openflow::Message`]); each
//! connection encodes them in the version it negotiated.
//!
//! [`SwitchDatapath`] is the real datapath (a [`crate::switch::Switch`] with
//! the `flow` module); the engine's tests also run against a fake one with
//! no switch and no threads (`engine_tests.rs`), in the way quinn-proto
//! tests a connection.
//!
//! Layout:
//! - [`engine`]: the protocol engine.
//! - [`bundles`]: one connection's open bundles.
//! - [`switch_dp`]: the datapath of a running switch.

pub mod bundles;
pub mod engine;
mod pipeline_fields;
pub mod switch_dp;

pub use engine::Engine;
pub use switch_dp::{SwitchDatapath, default_dpid};

use crate::module::Nanos;
pub use crate::module::flow::Change;
use crate::openflow::group::{GroupDesc, GroupFeatures, GroupStats};
use crate::openflow::message::{SwitchConfig, SwitchFeatures};
use crate::openflow::meter::{MeterConfig, MeterFeatures, MeterMod, MeterStats};
use crate::openflow::multipart::{
    AggregateStats, Desc, FlowStats, FlowStatsRequest, PortStats, TableStats,
};
use crate::openflow::tlv::{TlvTableMod, TlvTableReply};
use crate::openflow::{
    ErrorCode, FlowMod, FlowRemoved, GroupMod, PacketIn, PacketOut, Port, PortMod, PortNo,
    PortStatus, TableFeatures,
};

/// The flow a `standalone` switch with no controller starts with, as Open
/// vSwitch's bridges do: `priority=0 actions=NORMAL` in table 0.
pub fn standalone_flow() -> FlowMod {
    FlowMod {
        priority: 0,
        instructions: vec![crate::openflow::Instruction::ApplyActions(vec![
            crate::openflow::Action::output(PortNo::NORMAL),
        ])],
        ..FlowMod::default()
    }
}

/// What the protocol engine needs of a switch. Every method is called
/// from the engine's one thread; none blocks on the network. Errors are the
/// `OFPET_*` codes to answer the request with.
pub trait Datapath {
    /// Monotonic time, as flow durations and timeouts count it.
    fn now(&self) -> Nanos;

    /// The features reply (datapath id, buffers, tables, capabilities).
    fn features(&self) -> SwitchFeatures;
    /// The description reply (manufacturer, software, datapath name).
    fn desc(&self) -> Desc;
    /// The switch configuration (fragment handling, `miss_send_len`).
    fn config(&self) -> SwitchConfig;
    fn set_config(&mut self, c: SwitchConfig);

    // Ports.

    /// Re-reads the ports (and with `links`, their link state); returns a
    /// PORT_STATUS for every port added, removed or changed since the last
    /// call.
    fn refresh_ports(&mut self, links: bool) -> Vec<PortStatus>;
    /// Every port's description, as of the last refresh.
    fn port_descs(&self) -> Vec<Port>;
    fn has_port(&self, port: u32) -> bool;
    /// Changes a port's configuration bits; the PORT_STATUS to announce if
    /// anything changed.
    fn port_mod(&mut self, pm: &PortMod) -> Result<Option<PortStatus>, ErrorCode>;
    /// Counters of one port, or every port for [`PortNo::ANY`].
    fn port_stats(&self, port: PortNo) -> Result<Vec<PortStats>, ErrorCode>;

    // Tables.

    fn n_tables(&self) -> usize;
    /// Applies a flow mod; once it returns, every packet the switch forwards
    /// sees the change. Returns the flows it removed that asked to be
    /// reported, and the packet-ins its buffered packet (if any) caused.
    fn flow_mod(&mut self, fm: &FlowMod) -> Result<(Vec<FlowRemoved>, Vec<PacketIn>), ErrorCode>;
    /// Applies a group mod; flows removed with a deleted group are reported
    /// through [`Datapath::take_removed`].
    fn group_mod(&mut self, gm: &GroupMod) -> Result<(), ErrorCode>;
    /// Applies a bundle's changes atomically: all or (with the index of the
    /// one that failed) none.
    fn commit(&mut self, changes: &[Change<'_>]) -> Result<Vec<FlowRemoved>, (usize, ErrorCode)>;
    fn flow_stats(&self, req: &FlowStatsRequest) -> Result<Vec<FlowStats>, ErrorCode>;
    fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, ErrorCode>;
    fn table_stats(&self) -> Vec<TableStats>;
    fn table_features(&self) -> Vec<TableFeatures>;
    fn group_stats(&self, group_id: u32) -> Vec<GroupStats>;
    fn group_desc(&self) -> Vec<GroupDesc>;
    fn group_features(&self) -> GroupFeatures;

    // Meters: a datapath without them keeps these defaults (every meter
    // mod refused, no meters listed, features all zero).

    /// Applies a meter mod; flows removed with a deleted meter are
    /// reported through [`Datapath::take_removed`].
    fn meter_mod(&mut self, _mm: &MeterMod) -> Result<(), ErrorCode> {
        Err(ErrorCode::MeterModFailed(
            crate::openflow::error::MeterModFailedCode::OutOfMeters,
        ))
    }
    /// Statistics of one meter, or every meter for `OFPM_ALL`.
    fn meter_stats(&self, _meter_id: u32) -> Vec<MeterStats> {
        Vec::new()
    }
    /// Configuration of one meter, or every meter for `OFPM_ALL`.
    fn meter_config(&self, _meter_id: u32) -> Vec<MeterConfig> {
        Vec::new()
    }
    fn meter_features(&self) -> MeterFeatures {
        MeterFeatures::default()
    }

    // Geneve options (`tun_metadataN`): a datapath without a TLV table
    // refuses every change and maps nothing.

    /// Applies an `NXT_TLV_TABLE_MOD` (all of it or nothing).
    fn tlv_table_mod(&mut self, _m: &TlvTableMod) -> Result<(), ErrorCode> {
        Err(crate::openflow::tlv::code::TABLE_FULL)
    }
    /// The `NXT_TLV_TABLE_REPLY`.
    fn tlv_table(&self) -> TlvTableReply {
        TlvTableReply {
            max_fields: crate::openflow::tlv::MAX_FIELDS,
            ..TlvTableReply::default()
        }
    }

    // Packets.

    /// Runs a packet-out's actions; returns the packet-ins they caused.
    fn packet_out(&mut self, po: &PacketOut) -> Result<Vec<PacketIn>, ErrorCode>;
    /// At most `max` packets the tables sent to the controller.
    fn take_packet_ins(&mut self, max: usize) -> Vec<PacketIn>;
    /// Flows removed on their own (timeouts, group deletions).
    fn take_removed(&mut self) -> Vec<FlowRemoved>;
    /// Whether packets whose TTL cannot be decremented go to the
    /// controller (some connection asked for reason INVALID_TTL).
    fn set_invalid_ttl_to_controller(&mut self, on: bool);
    /// A packet-in no connection could take (all too far behind).
    fn packet_in_dropped(&mut self);
}

#[cfg(test)]
mod fake_tests;
