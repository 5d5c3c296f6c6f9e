//! The Controller table's `is_connected`, `role` and `status` columns, as
//! ovs-vswitchd writes them: `status` has `state` (`ACTIVE`, `CONNECTING`,
//! `BACKOFF`), `sec_since_connect`, `sec_since_disconnect` and
//! `last_error` when there is one; `role` (`other`, `master`, `slave`)
//! only while connected.
//!
//! A row is written as soon as its connection, role, state or error
//! changes; the seconds alone are refreshed with the statistics (every
//! `stats-update-interval`), so an idle daemon does not write every second.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::control::daemon::Daemon;
use crate::control::ofagent::ControllerStatus;
use crate::ovsdb::datum;

use super::db::Wanted;

/// The Controller row for one controller's status: (the part whose change
/// is written at once, the whole row).
fn row(c: &ControllerStatus, now: Instant) -> (Value, Value) {
    let mut status = vec![json!(["state", c.state])];
    if let Some(e) = &c.last_error {
        status.push(json!(["last_error", e]));
    }
    let key = json!({
        "is_connected": c.connected,
        "role": datum::to_set(c.role.iter().map(|r| json!(r)).collect()),
        "status": ["map", status.clone()],
    });
    let secs = |t: Instant| now.saturating_duration_since(t).as_secs().to_string();
    if let Some(t) = c.last_connected {
        status.push(json!(["sec_since_connect", secs(t)]));
    }
    if let Some(t) = c.last_disconnected {
        status.push(json!(["sec_since_disconnect", secs(t)]));
    }
    // ovsdb maps are sets of pairs: the server wants them sorted by key.
    status.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    let mut full = key.clone();
    full["status"] = json!(["map", status]);
    (key, full)
}

/// The Controller writes due now. `written` holds, per row, the part last
/// written; `refresh` also writes rows whose seconds alone changed.
pub(super) fn controller_ops(
    d: &Daemon,
    wanted: &Wanted,
    written: &mut BTreeMap<String, Value>,
    refresh: bool,
) -> Vec<Value> {
    let now = Instant::now();
    let mut ops = Vec::new();
    let mut seen = Vec::new();
    for (name, b) in &wanted.bridges {
        let up = d.controller_status(name).unwrap_or_default();
        for (uuid, target) in &b.controller_rows {
            let Some(c) = up.iter().find(|c| &c.target == target) else {
                continue;
            };
            seen.push(uuid.clone());
            let (key, full) = row(c, now);
            if refresh || written.get(uuid) != Some(&key) {
                ops.push(json!({"op": "update", "table": "Controller",
                    "where": [["_uuid", "==", datum::to_uuid(uuid)]], "row": full}));
                written.insert(uuid.clone(), key);
            }
        }
    }
    written.retain(|u, _| seen.contains(u));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_controller_row_says_what_ovs_vswitchd_says() {
        let now = Instant::now();
        let c = ControllerStatus {
            target: "tcp:127.0.0.1:6653".into(),
            connected: true,
            state: "ACTIVE",
            role: Some("master"),
            last_connected: now.checked_sub(Duration::from_secs(3)),
            last_disconnected: None,
            last_error: Some("Connection refused".into()),
        };
        let (key, full) = row(&c, now);
        assert_eq!(key["is_connected"], true);
        assert_eq!(key["role"], json!(["set", ["master"]]));
        assert_eq!(
            full["status"],
            json!([
                "map",
                [
                    ["last_error", "Connection refused"],
                    ["sec_since_connect", "3"],
                    ["state", "ACTIVE"]
                ]
            ])
        );
        let idle = ControllerStatus {
            connected: false,
            state: "BACKOFF",
            role: None,
            ..c
        };
        assert_eq!(row(&idle, now).0["role"], json!(["set", []]));
    }
}
