//! Interface state written when it changes, as ovs-vswitchd does through
//! its netdevs' change sequence, not only with the statistics:
//!
//! - the `status` of vhost-user interfaces (`connected`/`disconnected`
//!   as a frontend comes and goes), looked at on every turn of the
//!   database loop (at most 100 ms apart; a look is an atomic load per
//!   interface);
//! - `admin_state`, `link_state`, `link_resets` (changes of `link_state`
//!   seen since the daemon started), `mtu`, `mac_in_use` and `ifindex` of
//!   kernel and internal interfaces, looked at when the kernel announces a
//!   change of the interface ([`linkwatch`]), and all of them with the
//!   statistics, and as soon as the interface is added. Without the
//!   notification socket they follow only the statistics (every
//!   `stats-update-interval`, 5 s by default).
//!
//! A row is written only when what it says changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::control::daemon::Daemon;
use crate::ovsdb::datum;

use super::db::{Wanted, WantedIface};
use super::linkwatch::LinkWatch;
use super::{AppliedBridge, kernel_state, vhost_status};

/// Interface types whose state is the kernel's.
fn is_kernel(i: &WantedIface) -> bool {
    matches!(
        i.kind.as_str(),
        "" | "system" | "afxdp" | "internal" | "tap"
    )
}

pub(super) struct Links {
    watch: Option<LinkWatch>,
    /// The columns last written, by Interface row.
    written: BTreeMap<String, Value>,
    /// By interface name: (link up when last seen, changes seen).
    resets: BTreeMap<String, (bool, u64)>,
    /// By Interface row: a vhost-user port's link when last written.
    vhost_up: BTreeMap<String, bool>,
}

impl Links {
    pub(super) fn new() -> Links {
        let watch = LinkWatch::open()
            .map_err(|e| {
                tracing::warn!("no link notifications ({e}): link states follow the statistics");
            })
            .ok();
        Links {
            watch,
            written: BTreeMap::new(),
            resets: BTreeMap::new(),
            vhost_up: BTreeMap::new(),
        }
    }

    /// The writes of what changed; with `all`, every kernel interface is
    /// looked at.
    pub(super) fn ops(
        &mut self,
        d: &Daemon,
        wanted: &Wanted,
        applied: &BTreeMap<String, AppliedBridge>,
        run_dir: &Path,
        all: bool,
    ) -> Vec<Value> {
        let changes = self
            .watch
            .as_ref()
            .map(LinkWatch::changes)
            .unwrap_or_default();
        let every = all || changes.overflow;
        let mut ops = Vec::new();
        let mut seen = BTreeSet::new();
        for (bridge, b) in &wanted.bridges {
            let Some(a) = applied.get(bridge) else {
                continue;
            };
            let made: Vec<(&WantedIface, u32)> = b
                .ifaces
                .iter()
                .filter_map(|i| {
                    let of = a.ifaces.get(&i.name)?.ofport;
                    Some((i, u32::try_from(of).ok().filter(|&n| n > 0)?))
                })
                .collect();
            // The vhost-user ports' links, in one look at the switch.
            let vhost = |i: &WantedIface| i.kind.starts_with("dpdkvhostuser");
            let vports: Vec<u32> = made
                .iter()
                .filter(|(i, _)| vhost(i))
                .map(|&(_, of)| of)
                .collect();
            let mut ups = d.links_up(bridge, &vports).into_iter();
            for (i, _) in made {
                seen.insert(i.uuid.as_str());
                let row = if vhost(i)
                    && let Some(up) = ups.next().flatten()
                {
                    // Unchanged (the common case): nothing to build.
                    if self.vhost_up.get(&i.uuid) == Some(&up) {
                        continue;
                    }
                    self.vhost_up.insert(i.uuid.clone(), up);
                    let Some(status) = vhost_status(i, run_dir, up) else {
                        continue;
                    };
                    json!({ "status": status })
                } else if is_kernel(i)
                    && (every
                        || !self.written.contains_key(&i.uuid)
                        || changes.names.binary_search(&i.name).is_ok())
                    && let Some((admin, link, mac, mtu, ifindex)) = kernel_state(&i.name)
                {
                    let r = self.resets.entry(i.name.clone()).or_insert((link, 0));
                    if r.0 != link {
                        *r = (link, r.1 + 1);
                    }
                    let updown = |b: bool| if b { "up" } else { "down" };
                    json!({"admin_state": updown(admin), "link_state": updown(link),
                           "link_resets": r.1, "mtu": mtu, "mac_in_use": mac,
                           "ifindex": ifindex})
                } else {
                    continue;
                };
                if self.written.get(&i.uuid) != Some(&row) {
                    ops.push(json!({"op": "update", "table": "Interface",
                        "where": [["_uuid", "==", datum::to_uuid(&i.uuid)]], "row": row}));
                    self.written.insert(i.uuid.clone(), row);
                }
            }
        }
        self.written.retain(|u, _| seen.contains(u.as_str()));
        self.vhost_up.retain(|u, _| seen.contains(u.as_str()));
        ops
    }
}
