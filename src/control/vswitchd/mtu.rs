//! Interface MTUs as ovs-vswitchd 3.1 sets and reports them
//! (`Interface.mtu_request` in, `Interface.mtu` out).
//!
//! - Kernel interfaces (`""`/`system`, `afxdp`): a request sets the
//!   interface's MTU (SIOCSIFMTU, as `ip link set NAME mtu N`) before its
//!   port is opened, with buffers that hold frames of that MTU; a changed
//!   request opens the port again (same OpenFlow number, the interface
//!   keeps its addresses). Without a request the interface keeps its MTU
//!   and the buffers fit it. A `system` interface whose frames outgrow
//!   AF_XDP's 4 KiB chunks is opened with AF_PACKET; an `afxdp` one then
//!   fails with the reason in `error` (Open vSwitch's afxdp has the same
//!   limit). `mtu` is the kernel's.
//! - Internal interfaces (TAPs, the bridge's own one too): set in place,
//!   up to [`JUMBO_MTU`] (their buffers are made for it; a larger request
//!   is refused with a message, where Open vSwitch would take up to 65535).
//!   Without a request they follow the smallest MTU of the bridge's other
//!   interfaces (1500 when there is none), as Open vSwitch's ofproto does:
//!   all of them when that minimum changes, a new one only if it is
//!   larger.
//! - vhost-user interfaces: the request, 1500 without one, is their MTU
//!   (what ovs-vswitchd reports and sizes its mbufs for); the port's
//!   buffers grow to hold it. A guest frame larger than the buffers is
//!   dropped and counted, never truncated.
//! - Patch interfaces have no MTU.
//!
//! The MTUs are looked at again when a bridge's interfaces or requests
//! change, and with the statistics (an MTU changed behind the daemon's
//! back); `mtu` is written in the transaction that reports the change.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::ovsdb::datum;
use crate::port::kernel::{self, JUMBO_MTU, buf_for_mtu};

use super::db::{Mirror, Wanted, WantedBridge, WantedIface};
use super::{Applied, AppliedBridge};

/// Ethernet's MTU, what an interface without one gets.
const ETH_PAYLOAD_MAX: u32 = 1500;
/// The largest frame (MTU plus Ethernet header and tag) an AF_XDP chunk
/// holds after its headroom.
const AFXDP_MAX_FRAME: u32 = 4096 - 256;

fn is_kernel(kind: &str) -> bool {
    matches!(kind, "" | "system" | "afxdp")
}

fn is_vhost(kind: &str) -> bool {
    matches!(kind, "dpdkvhostuser" | "dpdkvhostuserclient")
}

fn is_tap(kind: &str) -> bool {
    matches!(kind, "internal" | "tap")
}

/// The part of an interface's MTU that decides how its port is made (its
/// buffers): the request of kernel and vhost-user interfaces.
pub(super) fn attach_mtu(i: &WantedIface) -> Option<u32> {
    (is_kernel(&i.kind) || is_vhost(&i.kind))
        .then_some(i.mtu_request)
        .flatten()
}

/// `,buf=N` when frames of `mtu` need more than the default buffers.
fn buf_opt(mtu: u32) -> String {
    let buf = buf_for_mtu(mtu);
    if buf > crate::packet::DEFAULT_BUF_SIZE {
        format!(",buf={buf}")
    } else {
        String::new()
    }
}

/// The port spec of a kernel interface, after setting its requested MTU
/// (a failure is logged and the port opened as the interface is, as
/// ovs-vswitchd does).
pub(super) fn kernel_spec(bridge: &str, i: &WantedIface) -> String {
    if let Some(m) = i.mtu_request
        && kernel::mtu(&i.name).is_ok_and(|cur| cur != m)
        && let Err(e) = kernel::set_mtu(&i.name, m)
    {
        tracing::warn!("{bridge}: {}: failed to set MTU {m}: {e}", i.name);
    }
    let mtu = kernel::mtu(&i.name).unwrap_or(ETH_PAYLOAD_MAX);
    let frame = mtu.saturating_add(18);
    match i.kind.as_str() {
        "afxdp" => format!("af_xdp:{}{}", i.name, buf_opt(mtu)),
        _ if frame > AFXDP_MAX_FRAME => format!("af_packet:{}{}", i.name, buf_opt(mtu)),
        _ => format!("af_xdp:{}{}", i.name, buf_opt(mtu)),
    }
}

/// `,buf=N` for a vhost-user interface's port.
pub(super) fn vhost_buf(i: &WantedIface) -> String {
    buf_opt(i.mtu_request.unwrap_or(ETH_PAYLOAD_MAX))
}

/// `,buf=N` for an internal interface's TAP: made for jumbo frames.
pub(super) fn tap_buf() -> String {
    buf_opt(JUMBO_MTU)
}

/// The MTU an interface that was made has (None: it has none).
fn current(i: &WantedIface) -> Option<u32> {
    if is_vhost(&i.kind) {
        Some(i.mtu_request.unwrap_or(ETH_PAYLOAD_MAX))
    } else if i.kind == "patch" {
        None
    } else {
        kernel::mtu(&i.name).ok()
    }
}

/// What was last made of a bridge's MTUs.
#[derive(Debug, Default)]
pub(super) struct BridgeMtu {
    /// (interface, OpenFlow number, request) of every interface.
    key: Vec<(String, i64, Option<u32>)>,
    /// The minimum internal interfaces follow.
    min: Option<u32>,
}

/// Sets one TAP's MTU, saying why not when it cannot be.
fn set_tap(bridge: &str, name: &str, mtu: u32, requested: bool) {
    if kernel::mtu(name).is_ok_and(|cur| cur == mtu) {
        return;
    }
    let r = if requested && mtu > JUMBO_MTU {
        Err(format!(
            "larger than internal interfaces take ({JUMBO_MTU})"
        ))
    } else {
        kernel::set_mtu(name, mtu).map_err(|e| e.to_string())
    };
    if let Err(e) = r {
        tracing::warn!("{bridge}: {name}: failed to set MTU {mtu}: {e}");
    }
}

/// Sets the MTUs of one bridge's internal interfaces (see the module
/// documentation).
fn follow(bridge: &str, b: &WantedBridge, ifaces: &BTreeMap<String, Applied>, st: &mut BridgeMtu) {
    let made = |i: &&WantedIface| ifaces.get(&i.name).is_some_and(|a| a.ofport > 0);
    for i in b.ifaces.iter().filter(made) {
        if let (true, Some(m)) = (is_tap(&i.kind), i.mtu_request) {
            set_tap(bridge, &i.name, m, true);
        }
    }
    // Internal interfaces without a request follow the others.
    let follows = |i: &WantedIface| i.kind == "internal" && i.mtu_request.is_none();
    let min = b
        .ifaces
        .iter()
        .filter(made)
        .filter(|i| !follows(i))
        .filter_map(current)
        .min()
        .unwrap_or(ETH_PAYLOAD_MAX);
    let changed = st.min != Some(min);
    for i in b.ifaces.iter().filter(made).filter(|i| follows(i)) {
        if changed || kernel::mtu(&i.name).is_ok_and(|cur| cur > min) {
            set_tap(bridge, &i.name, min, false);
        }
    }
    st.min = Some(min);
}

/// Brings the internal interfaces' MTUs up to date where a bridge changed
/// (every bridge with `all`), and the `Interface.mtu` writes that report
/// what changed.
pub(super) fn sync(
    mirror: &Mirror,
    wanted: &Wanted,
    applied: &mut BTreeMap<String, AppliedBridge>,
    all: bool,
) -> Vec<Value> {
    let mut ops = Vec::new();
    for (name, b) in &wanted.bridges {
        let Some(a) = applied.get_mut(name) else {
            continue;
        };
        let key: Vec<(String, i64, Option<u32>)> = b
            .ifaces
            .iter()
            .map(|i| {
                let of = a.ifaces.get(&i.name).map_or(-1, |ap| ap.ofport);
                (i.name.clone(), of, i.mtu_request)
            })
            .collect();
        if !all && key == a.mtu.key {
            continue;
        }
        follow(name, b, &a.ifaces, &mut a.mtu);
        a.mtu.key = key;
        for i in &b.ifaces {
            if a.ifaces.get(&i.name).is_none_or(|ap| ap.ofport <= 0) {
                continue;
            }
            let Some(mtu) = current(i) else { continue };
            let have = mirror
                .row("Interface", &i.uuid)
                .and_then(|r| datum::optional(&r["mtu"]).and_then(Value::as_i64));
            if have != Some(i64::from(mtu)) {
                ops.push(json!({"op": "update", "table": "Interface",
                    "where": [["_uuid", "==", datum::to_uuid(&i.uuid)]],
                    "row": {"mtu": mtu}}));
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(kind: &str, mtu_request: Option<u32>) -> WantedIface {
        WantedIface {
            uuid: "u".into(),
            name: "mtu-test-none".into(),
            kind: kind.into(),
            options: BTreeMap::new(),
            ofport_request: None,
            ofport: None,
            vlan: String::new(),
            mtu_request,
        }
    }

    #[test]
    fn requests_size_the_ports_that_need_them() {
        // Kernel and vhost-user ports are made again for a new MTU;
        // internal ones are set in place.
        assert_eq!(attach_mtu(&iface("", Some(9000))), Some(9000));
        assert_eq!(attach_mtu(&iface("afxdp", Some(9000))), Some(9000));
        assert_eq!(attach_mtu(&iface("dpdkvhostuser", Some(9000))), Some(9000));
        assert_eq!(attach_mtu(&iface("internal", Some(9000))), None);
        assert_eq!(attach_mtu(&iface("patch", Some(9000))), None);
        assert_eq!(vhost_buf(&iface("dpdkvhostuser", None)), "");
        assert_eq!(vhost_buf(&iface("dpdkvhostuser", Some(9000))), ",buf=9024");
        assert_eq!(tap_buf(), ",buf=9024");
        // vhost-user reports what was asked for; patch ports have no MTU.
        assert_eq!(current(&iface("dpdkvhostuserclient", None)), Some(1500));
        assert_eq!(current(&iface("dpdkvhostuser", Some(4000))), Some(4000));
        assert_eq!(current(&iface("patch", None)), None);
    }
}
