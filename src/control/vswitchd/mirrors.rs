//! A bridge's Mirror rows made into the switch's port mirrors
//! ([`crate::switch::mirror`]), and their `statistics` written back as
//! ovs-vswitchd writes them (`tx_packets`, `tx_bytes`).
//!
//! Ports are named by the Mirror row and resolved to the numbers their
//! interfaces got; a port that has no number (yet) selects nothing.
//! `select_vlan` and `output_vlan` (RSPAN) are served with the ports' VLAN
//! settings (their Port rows' `tag`/`trunks`/`vlan_mode`). As in
//! ovs-vswitchd, an `output_port` wins over an `output_vlan`. A mirror
//! without a usable output port or VLAN is left out and said so once on
//! standard error.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::control::daemon::Daemon;
use crate::module::flow::PortVlan;
use crate::ovsdb::datum;
use crate::port::{MAX_PORTS, PortId};
use crate::switch::mirror::{MirrorCounters, MirrorOut, MirrorSpec};

use super::Applied;
use super::db::WantedBridge;

/// One mirror as the switch has it: (row, all, src, dst, out, VLANs), by
/// port number.
type MirrorKey = (String, bool, Vec<u16>, Vec<u16>, MirrorOut, Vec<u16>);

/// What was made of a bridge's mirrors.
#[derive(Debug, Default)]
pub(super) struct AppliedMirrors {
    /// What the switch has now: its mirrors by port number, and the ports'
    /// VLAN settings when a mirror looks at VLANs.
    key: (Vec<MirrorKey>, Vec<(u16, String)>),
    /// Each mirror's counters by row, kept while the row exists.
    counters: BTreeMap<String, Arc<MirrorCounters>>,
    /// Rows already reported as left out.
    warned: BTreeMap<String, String>,
}

/// The switch's port number of an interface that was made.
fn port_of(ifaces: &BTreeMap<String, Applied>, name: &str) -> Option<PortId> {
    match ifaces.get(name)?.ofport {
        // LOCAL is the switch's highest port number.
        65534 => PortId::new(MAX_PORTS as u32 - 1),
        n if n > 0 => PortId::new(u32::try_from(n).ok()?),
        _ => None,
    }
}

/// Makes `bridge`'s mirrors what `wanted` asks for (publishing only on a
/// change).
pub(super) fn apply(
    d: &Daemon,
    bridge: &str,
    b: &WantedBridge,
    ifaces: &BTreeMap<String, Applied>,
    a: &mut AppliedMirrors,
) {
    let wanted = &b.mirrors;
    let ports = |names: &[String]| -> Vec<PortId> {
        names.iter().filter_map(|n| port_of(ifaces, n)).collect()
    };
    a.counters
        .retain(|u, _| wanted.iter().any(|m| m.uuid == *u));
    let mut specs = Vec::new();
    for m in wanted {
        let out_ports = ports(&m.out);
        let out = match (out_ports.as_slice(), m.output_vlan) {
            ([p], _) => Some(MirrorOut::Port(*p)),
            ([], Some(v)) if m.out.is_empty() && (1..4096).contains(&v) => Some(MirrorOut::Vlan(v)),
            _ => None,
        };
        let Some(out) = out else {
            let why = "it needs an output_port that has an OpenFlow port number, or an output_vlan"
                .to_owned();
            if a.warned.get(&m.uuid) != Some(&why) {
                tracing::warn!("{bridge}: mirror {}: left out: {why}", m.name);
                a.warned.insert(m.uuid.clone(), why);
            }
            continue;
        };
        a.warned.remove(&m.uuid);
        specs.push((
            m.uuid.clone(),
            MirrorSpec {
                all: m.all,
                src: ports(&m.src),
                dst: ports(&m.dst),
                out,
                select_vlan: (!m.select_vlan.is_empty()).then(|| m.select_vlan.clone()),
                counters: a.counters.entry(m.uuid.clone()).or_default().clone(),
            },
        ));
    }
    let nums = |v: &[PortId]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    let mirrors: Vec<MirrorKey> = specs
        .iter()
        .map(|(u, s)| {
            let vlans = s.select_vlan.clone().unwrap_or_default();
            (u.clone(), s.all, nums(&s.src), nums(&s.dst), s.out, vlans)
        })
        .collect();
    // The ports' VLAN settings (what VLAN a frame is in, how a copy
    // leaves a port), when there are mirrors.
    let vlans: Vec<(u16, String)> = b
        .ifaces
        .iter()
        .filter(|_| !specs.is_empty())
        .filter_map(|i| Some((port_of(ifaces, &i.name)?.0, i.vlan.clone())))
        .collect();
    let key = (mirrors, vlans);
    if key != a.key {
        let specs: Vec<MirrorSpec> = specs.into_iter().map(|(_, s)| s).collect();
        // Settings NORMAL refused (reported there) count as its default.
        let port_vlans: Vec<(PortId, PortVlan)> = key
            .1
            .iter()
            .map(|(p, v)| (PortId(*p), v.parse().unwrap_or_default()))
            .collect();
        match d.set_mirrors(bridge, &specs, &port_vlans) {
            Ok(()) => a.key = key,
            Err(e) => tracing::warn!("{bridge}: mirrors: {e}"),
        }
    }
}

/// The `Mirror.statistics` writes of a bridge's mirrors.
pub(super) fn stats_ops(a: &AppliedMirrors) -> Vec<Value> {
    a.counters
        .iter()
        .map(|(uuid, c)| {
            let (packets, bytes) = c.read();
            json!({"op": "update", "table": "Mirror",
                "where": [["_uuid", "==", datum::to_uuid(uuid)]],
                "row": {"statistics": ["map", [["tx_bytes", bytes], ["tx_packets", packets]]]}})
        })
        .collect()
}
