//! A bridge's Mirror rows made into the switch's port mirrors
//! ([`crate::switch::mirror`]), and their `statistics` written back as
//! ovs-vswitchd writes them (`tx_packets`, `tx_bytes`).
//!
//! Ports are named by the Mirror row and resolved to the numbers their
//! interfaces got; a port that has no number (yet) selects nothing. A
//! mirror without a usable output port, or one asking for VLAN selection
//! or a VLAN output (which mswitch's core, knowing nothing of VLANs, does
//! not do), is left out and said so once on standard error.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::control::daemon::Daemon;
use crate::ovsdb::datum;
use crate::port::{MAX_PORTS, PortId};
use crate::switch::mirror::{MirrorCounters, MirrorSpec};

use super::Applied;
use super::db::WantedMirror;

/// One mirror as the switch has it: (row, all, src, dst, out), by port
/// number.
type MirrorKey = (String, bool, Vec<u16>, Vec<u16>, u16);

/// What was made of a bridge's mirrors.
#[derive(Debug, Default)]
pub(super) struct AppliedMirrors {
    /// What the switch has now: (row, all, src, dst, out) with port numbers.
    key: Vec<MirrorKey>,
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
    wanted: &[WantedMirror],
    ifaces: &BTreeMap<String, Applied>,
    a: &mut AppliedMirrors,
) {
    let ports = |names: &[String]| -> Vec<PortId> {
        names.iter().filter_map(|n| port_of(ifaces, n)).collect()
    };
    a.counters
        .retain(|u, _| wanted.iter().any(|m| m.uuid == *u));
    let mut specs = Vec::new();
    for m in wanted {
        let out = ports(&m.out);
        let why = if m.vlans {
            Some("select_vlan and output_vlan are not supported".to_owned())
        } else if out.len() != 1 {
            Some("it needs an output_port that has an OpenFlow port number".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            if a.warned.get(&m.uuid) != Some(&why) {
                eprintln!(
                    "mswitch vswitchd: {bridge}: mirror {}: left out: {why}",
                    m.name
                );
                a.warned.insert(m.uuid.clone(), why);
            }
            continue;
        }
        a.warned.remove(&m.uuid);
        specs.push((
            m.uuid.clone(),
            MirrorSpec {
                all: m.all,
                src: ports(&m.src),
                dst: ports(&m.dst),
                out: out[0],
                counters: a.counters.entry(m.uuid.clone()).or_default().clone(),
            },
        ));
    }
    let nums = |v: &[PortId]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    let key: Vec<MirrorKey> = specs
        .iter()
        .map(|(u, s)| (u.clone(), s.all, nums(&s.src), nums(&s.dst), s.out.0))
        .collect();
    if key != a.key {
        let specs: Vec<MirrorSpec> = specs.into_iter().map(|(_, s)| s).collect();
        match d.set_mirrors(bridge, &specs) {
            Ok(()) => a.key = key,
            Err(e) => eprintln!("mswitch vswitchd: {bridge}: mirrors: {e}"),
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
