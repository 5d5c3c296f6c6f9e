//! `mswitch vswitchd`: mswitch in ovs-vswitchd's place, configured by Open
//! vSwitch's own `ovsdb-server` (so `ovs-vsctl`, and anything else that
//! writes the database, configures it) and writing back the state
//! ovs-vswitchd writes.
//!
//! One thread follows the database; the switches are the daemon's
//! (`control::daemon`), so `mswitch ctl` works beside it and forwarding
//! never waits on the database. The thread connects (retrying with a 1-8 s
//! backoff), takes the `ovs_vswitchd` lock (a second instance waits for
//! it), monitors the tables it reads ([`db::monitor_requests`]) and, after
//! every change, makes the switches match (`reconcile`) and writes back in
//! one transaction what changed: `Interface.ofport`/`error`,
//! `Bridge.datapath_id`, and `Open_vSwitch.cur_cfg` once `next_cfg` is in
//! force (which is what `ovs-vsctl` without `--no-wait` waits for). It
//! never reacts to its own writes: they change nothing it acts on. When the
//! database goes away the switches keep forwarding; on reconnection the
//! state is read again and written back.
//!
//! Bridges are `flow` switches with the bridge's name; the bridge's own
//! interface is the switch's LOCAL TAP. Interface types: `""`/`system`
//! (AF_XDP, falling back to AF_PACKET), `afxdp`, `internal` and `tap`
//! (TAP), `dpdkvhostuser` (a vhost-user server socket in the run
//! directory), `dpdkvhostuserclient` (`options:vhost-server-path`),
//! `patch` (`options:peer`: a [`crate::port::patch`] link to a patch port
//! of another bridge, in the process), `vxlan` and `geneve` (a
//! [`crate::port::tunnel`] port from `options:remote_ip`, `key`, ...; see
//! [`db::WantedIface::tunnel_spec`]). Others get `ofport` -1 and an
//! `error`; every other port keeps forwarding. A patch port without a
//! `peer` option gets -1 too; one whose peer is missing keeps its number
//! and says so in `error` (as ovs-vswitchd does). A bridge's `mirrors`
//! become the switch's port mirrors ([`mirrors`]), with their
//! `statistics` written back. MTUs follow [`mtu`]; vhost-user `status`
//! and kernel link states are written when they change ([`links`]).
//! `ovs-ofctl BR` reaches a bridge at `$OVS_RUNDIR/BR.mgmt`, `ovs-ofctl
//! snoop BR` its controller traffic at `$OVS_RUNDIR/BR.snoop`, and
//! `ovs-appctl` the daemon through [`unixctl`].

pub mod db;
mod flows;
mod links;
mod linkwatch;
mod mirrors;
mod mtu;
mod ssl;
mod status;
pub mod unixctl;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::daemon::Daemon;
use super::proto::OpenFlowOpts;
use crate::ofproto::default_dpid;
use crate::ovsdb::{Client, OvsdbError, Remote, datum};
use db::{Mirror, Wanted, WantedBridge, WantedIface};

/// The database name and the lock every switch daemon takes.
const DB: &str = "Open_vSwitch";
const LOCK: &str = "ovs_vswitchd";
/// How long one database request may take.
const RPC: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// The longest wait for the database in one turn of the loop: how late a
/// vhost-user connection or a kernel link change may be reported.
const TURN: Duration = Duration::from_millis(100);
/// How often the switches are made to match the database without a change
/// of it (patch peers, controllers' status).
const RECONCILE: Duration = Duration::from_millis(500);

/// `$OVS_RUNDIR`, or Open vSwitch's default.
pub fn run_dir() -> PathBuf {
    std::env::var_os("OVS_RUNDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/run/openvswitch"))
}

/// The default database: `unix:$OVS_RUNDIR/db.sock`.
pub fn default_db() -> String {
    format!("unix:{}", run_dir().join("db.sock").display())
}

/// What was made for one interface.
#[derive(Debug, Clone)]
struct Applied {
    key: db::AttachKey,
    ofport: i64,
    error: Option<String>,
    vlan: String,
}

/// What was made for one bridge.
#[derive(Debug)]
struct AppliedBridge {
    key: (Option<String>, Vec<String>, Vec<String>, Option<String>),
    datapath_type: String,
    dpid: u64,
    /// Why the bridge has no LOCAL port, if it has none.
    no_local: Option<String>,
    error: Option<String>,
    ifaces: BTreeMap<String, Applied>,
    mirrors: mirrors::AppliedMirrors,
    mtu: mtu::BridgeMtu,
    /// The `pmd-cpu-mask` CPUs its workers were made for.
    pmd_cpus: Option<Vec<usize>>,
}

/// Follows the database until the daemon stops.
pub fn follow(d: Arc<Daemon>, remote: Remote, run_dir: PathBuf) {
    let mut applied: BTreeMap<String, AppliedBridge> = BTreeMap::new();
    let mut backoff = BACKOFF_MIN;
    while !d.stopping() {
        match session(&d, &remote, &run_dir, &mut applied, &mut backoff) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("{e}; retrying in {}s", backoff.as_secs());
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !d.stopping() {
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: lock, monitor, reconcile after every change. Returns
/// `Ok` when the daemon stops, an error when the connection is lost.
fn session(
    d: &Arc<Daemon>,
    remote: &Remote,
    run_dir: &Path,
    applied: &mut BTreeMap<String, AppliedBridge>,
    backoff: &mut Duration,
) -> Result<(), OvsdbError> {
    let mut c = Client::connect_tls(remote, RPC, d.tls())?;
    // Connected: a later loss starts the backoff from its minimum again.
    *backoff = BACKOFF_MIN;
    if !c.lock(LOCK, RPC)? {
        tracing::warn!("another daemon holds the {LOCK} lock; waiting for it");
        loop {
            if d.stopping() {
                return Ok(());
            }
            c.poll(Duration::from_millis(500))?;
            if c.take_notifications().iter().any(|(m, _)| m == "locked") {
                break;
            }
        }
    }
    tracing::info!("connected to {remote}");
    let mut mirror = Mirror::default();
    mirror.apply(&c.monitor(DB, "mswitch", db::monitor_requests(), RPC)?);
    let mut types_written = false;
    let mut stats_due = Instant::now();
    let mut ctl_written = BTreeMap::new();
    let mut links = links::Links::new();
    // Everything is made again after a change of the database, and at
    // least every RECONCILE; the state that changes under the daemon
    // (vhost-user frontends, kernel links) is looked at every turn.
    let mut wanted = Wanted::default();
    let mut reconcile_due = Instant::now();
    loop {
        if d.stopping() {
            return Ok(());
        }
        let now = Instant::now();
        let stats_now = now >= stats_due;
        let mut ops = Vec::new();
        if now >= reconcile_due || stats_now {
            ssl::apply(d.tls(), &mirror);
            wanted = mirror.wanted();
            reconcile(d, &wanted, run_dir, applied);
            ops = write_back(&mirror, &wanted, applied);
            ops.extend(mtu::sync(&mirror, &wanted, applied, stats_now));
            if !types_written && let Some((root, _)) = mirror.root() {
                ops.push(json!({"op": "update", "table": "Open_vSwitch",
                    "where": [["_uuid", "==", datum::to_uuid(root)]],
                    "row": {"datapath_types": datum::to_set(vec![json!("netdev"), json!("system")]),
                            "iface_types": datum::to_set(IFACE_TYPES.iter().map(|t| json!(t)).collect())}}));
                types_written = true;
            }
            ops.extend(status::controller_ops(
                d,
                &wanted,
                &mut ctl_written,
                stats_now,
            ));
            reconcile_due = now + RECONCILE;
        }
        if stats_now {
            ops.extend(state_ops(d, &wanted, applied, run_dir));
            stats_due = Instant::now() + mirror.stats_interval();
        }
        ops.extend(links.ops(d, &wanted, applied, run_dir, stats_now));
        if !ops.is_empty() {
            c.transact(DB, &ops, RPC)?;
        }
        c.poll(TURN)?;
        for (method, params) in c.take_notifications() {
            match method.as_str() {
                "update" => {
                    mirror.apply(&params[1]);
                    reconcile_due = Instant::now();
                }
                "stolen" => {
                    return Err(OvsdbError::Bad(format!("the {LOCK} lock was taken away")));
                }
                _ => {}
            }
        }
    }
}

/// The interface types this daemon makes (written to `iface_types`).
const IFACE_TYPES: &[&str] = &[
    "",
    "system",
    "internal",
    "tap",
    "afxdp",
    "dpdkvhostuser",
    "dpdkvhostuserclient",
    "patch",
    "vxlan",
    "geneve",
];

/// The port spec for an interface of `bridge`, or why it cannot be made
/// (a kernel interface gets its requested MTU here: [`mtu`]).
fn spec_for(bridge: &str, i: &WantedIface, run_dir: &Path) -> Result<String, String> {
    Ok(match i.kind.as_str() {
        "" | "system" | "afxdp" => mtu::kernel_spec(bridge, i),
        // As Open vSwitch: the TAP of an internal interface is left down
        // until its user brings it up (it forwards from then on).
        "internal" | "tap" => format!("tap:{},down{}", i.name, mtu::tap_buf()),
        "dpdkvhostuser" => format!(
            "vhost-user:{},server,name={}{}",
            run_dir.join(&i.name).display(),
            i.name,
            mtu::vhost_buf(i)
        ),
        "dpdkvhostuserclient" => {
            let path = i
                .options
                .get("vhost-server-path")
                .ok_or("dpdkvhostuserclient needs options:vhost-server-path")?;
            format!(
                "vhost-user:{path},client,name={}{}",
                i.name,
                mtu::vhost_buf(i)
            )
        }
        "vxlan" | "geneve" => i.tunnel_spec()?,
        t => return Err(format!("interface type '{t}' is not supported")),
    })
}

/// The OpenFlow options of a bridge.
fn openflow_opts(b: &WantedBridge) -> OpenFlowOpts {
    let (active, passive): (Vec<String>, Vec<String>) = b
        .controllers
        .iter()
        .cloned()
        .partition(|t| !t.starts_with('p'));
    OpenFlowOpts {
        controllers: active,
        listen: passive.iter().map(|t| ovs_passive(t)).collect(),
        dpid: b.datapath_id.clone(),
        fail_mode: b.fail_mode.clone(),
        protocols: (!b.protocols.is_empty()).then(|| b.protocols.join(",")),
        no_local: false,
    }
}

/// A passive target as ovs-vswitchd reads it: `ptcp:`/`pssl:` without an
/// address listen on every IPv4 address (Open vSwitch 3.1 binds
/// `0.0.0.0:PORT`), and without a port on 6653. mswitch's own commands
/// (`run`, `daemon`) listen on loopback unless given an address.
fn ovs_passive(t: &str) -> String {
    for scheme in ["ptcp:", "pssl:"] {
        if let Some(rest) = t.strip_prefix(scheme) {
            return match rest.split_once(':') {
                Some(_) => t.to_owned(),
                None if rest.is_empty() => format!("{scheme}6653:0.0.0.0"),
                None => format!("{scheme}{rest}:0.0.0.0"),
            };
        }
    }
    t.to_owned()
}

/// The datapath id a bridge gets.
fn dpid_of(opts: &OpenFlowOpts, bridge: &str) -> u64 {
    opts.dpid
        .as_deref()
        .and_then(|s| super::ofagent::parse_dpid(s).ok())
        .unwrap_or_else(|| default_dpid(bridge))
}

/// New controllers, fail mode, versions or datapath id for a bridge that
/// stays, with its flows where ovs-vswitchd keeps them: they are flushed
/// only when the bridge gains its first controller or loses its last, or
/// when its fail mode changes while it has none (what Open vSwitch's
/// connection manager does).
fn set_openflow(d: &Daemon, name: &str, a: &mut AppliedBridge, b: &WantedBridge) {
    let active = |ctls: &[String]| ctls.iter().any(|t| !t.starts_with('p'));
    let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "standalone".into());
    let (had, has) = (active(&a.key.1), active(&b.controllers));
    let flush = had != has || (!has && mode(&a.key.0) != mode(&b.fail_mode));
    let opts = openflow_opts(b);
    if let Err(e) = d.set_openflow(name, &opts, flush) {
        tracing::warn!("bridge {name}: {e}");
    }
    a.key = b.openflow_key();
    a.dpid = dpid_of(&opts, name);
}

/// As Open vSwitch's PMD threads: with `pmd-cpu-mask`, one busy-polling
/// worker on each CPU of the mask; without, one worker that sleeps when
/// idle. A bridge made before the mask changed gets new workers
/// ([`Daemon::set_workers`]: flows, ports and mirrors stay) and its OpenFlow
/// agent back (controllers reconnect).
fn set_workers(d: &Daemon, name: &str, cpus: &Option<Vec<usize>>, b: &WantedBridge) {
    let r = match cpus {
        Some(c) => d.set_workers(name, c.len(), true, Some(c.clone())),
        None => d.set_workers(name, 1, false, None),
    };
    if let Err(e) = r {
        tracing::warn!("bridge {name}: new workers: {e}");
    }
    if let Err(e) = d.set_openflow(name, &openflow_opts(b), false) {
        tracing::warn!("bridge {name}: {e}");
    }
}

/// Makes the daemon's switches what the database asks for.
fn reconcile(
    d: &Daemon,
    wanted: &Wanted,
    run_dir: &Path,
    applied: &mut BTreeMap<String, AppliedBridge>,
) {
    let gone: Vec<String> = applied
        .keys()
        .filter(|n| !wanted.bridges.contains_key(*n))
        .cloned()
        .collect();
    for name in gone {
        let _ = d.destroy(&name);
        applied.remove(&name);
    }
    for (name, b) in &wanted.bridges {
        if let Some(a) = applied.get_mut(name) {
            let changed = a.key != b.openflow_key();
            if a.datapath_type != b.datapath_type || (changed && a.error.is_some()) {
                // As ovs-vswitchd: a new datapath type makes the bridge
                // again (and a bridge that could not be made is tried
                // again when its settings change).
                let _ = d.destroy(name);
                applied.remove(name);
            } else {
                if a.error.is_none() && a.pmd_cpus != wanted.pmd_cpus {
                    set_workers(d, name, &wanted.pmd_cpus, b);
                    a.pmd_cpus = wanted.pmd_cpus.clone();
                }
                if changed {
                    set_openflow(d, name, a, b);
                }
            }
        }
        if !applied.contains_key(name) {
            let opts = openflow_opts(b);
            // As Open vSwitch's PMD threads: with `pmd-cpu-mask`, one
            // busy-polling worker on each CPU of the mask; without, one
            // worker that sleeps when idle.
            let made = match &wanted.pmd_cpus {
                Some(cpus) => d.create_on(
                    name,
                    "flow",
                    cpus.len(),
                    None,
                    true,
                    Some(cpus.clone()),
                    &opts,
                ),
                None => d.create(name, "flow", 1, None, false, &opts),
            };
            let (error, no_local) = match &made {
                Ok(v) => (None, v["note"].as_str().map(str::to_owned)),
                Err(e) => (Some(e.clone()), None),
            };
            if let Some(e) = &error {
                tracing::warn!("bridge {name}: {e}");
            }
            applied.insert(
                name.clone(),
                AppliedBridge {
                    key: b.openflow_key(),
                    datapath_type: b.datapath_type.clone(),
                    dpid: dpid_of(&opts, name),
                    no_local,
                    error,
                    ifaces: BTreeMap::new(),
                    mirrors: Default::default(),
                    mtu: Default::default(),
                    pmd_cpus: wanted.pmd_cpus.clone(),
                },
            );
        }
        let Some(a) = applied.get_mut(name) else {
            continue;
        };
        let want: BTreeMap<&str, &WantedIface> =
            b.ifaces.iter().map(|i| (i.name.as_str(), i)).collect();
        let stale: Vec<String> = a
            .ifaces
            .iter()
            .filter(|(n, ap)| {
                want.get(n.as_str())
                    .is_none_or(|w| w.attach_key() != ap.key)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            if let Some(ap) = a.ifaces.remove(&n)
                && ap.ofport > 0
                && n != *name
            {
                let _ = d.detach(name, &n);
            }
        }
        for i in &b.ifaces {
            if !a.ifaces.contains_key(&i.name) {
                let (ofport, error) = attach(d, name, a, i, run_dir);
                a.ifaces.insert(
                    i.name.clone(),
                    Applied {
                        key: i.attach_key(),
                        ofport,
                        error,
                        vlan: String::new(),
                    },
                );
            }
            if let Some(ap) = a.ifaces.get_mut(&i.name)
                && ap.ofport > 0
                && ap.vlan != i.vlan
            {
                match d.set_vlan(name, &i.name, &i.vlan) {
                    Ok(_) => ap.vlan = i.vlan.clone(),
                    Err(e) => ap.error = Some(e),
                }
            }
        }
        if a.error.is_none() {
            mirrors::apply(d, name, b, &a.ifaces, &mut a.mirrors);
        }
    }
    patch_errors(d, applied);
}

/// A patch port whose peer is missing (or names another port) keeps its
/// number and reports it in `error`, as ovs-vswitchd does.
fn patch_errors(d: &Daemon, applied: &mut BTreeMap<String, AppliedBridge>) {
    for a in applied.values_mut() {
        for (name, ap) in &mut a.ifaces {
            if ap.key.0 != "patch" || ap.ofport <= 0 {
                continue;
            }
            ap.error = (!d.patch_plugged(name)).then(|| {
                let peer = ap.key.1.get("peer").map_or("", String::as_str);
                format!("No usable peer '{peer}' exists in 'netdev' datapath.")
            });
        }
    }
}

/// Attaches one interface: its OpenFlow port number (-1 if it could not
/// be made) and the error to report.
fn attach(
    d: &Daemon,
    bridge: &str,
    a: &AppliedBridge,
    i: &WantedIface,
    run_dir: &Path,
) -> (i64, Option<String>) {
    if let Some(e) = &a.error {
        return (-1, Some(e.clone()));
    }
    // The bridge's own interface is its LOCAL port.
    if i.name == bridge && matches!(i.kind.as_str(), "internal" | "") {
        return match &a.no_local {
            None => (65534, None),
            Some(e) => (-1, Some(e.clone())),
        };
    }
    let make = |n: Option<u32>| {
        if i.kind == "patch" {
            let peer = i.options.get("peer").map(String::as_str);
            return d.attach_patch(bridge, &i.name, peer, n);
        }
        d.attach(bridge, &spec_for(bridge, i, run_dir)?, n)
    };
    let usable = |n: &i64| (1..0xff00).contains(n);
    let requested = i.ofport_request.filter(usable).map(|n| n as u32);
    // Without a request, the number it had before a restart, if free.
    let before = i.ofport.filter(usable).map(|n| n as u32);
    let r = match (requested, before) {
        (Some(n), _) => make(Some(n)),
        (None, Some(n)) => make(Some(n)).or_else(|_| make(None)),
        (None, None) => make(None),
    };
    match r {
        Ok(v) => (v["ofport"].as_i64().unwrap_or(-1), None),
        Err(e) => {
            tracing::warn!("{bridge}: {}: {e}", i.name);
            (-1, Some(e))
        }
    }
}

/// The writes that bring the database up to date with what was made:
/// interface numbers and errors, datapath ids, and `cur_cfg`.
fn write_back(
    mirror: &Mirror,
    wanted: &Wanted,
    applied: &BTreeMap<String, AppliedBridge>,
) -> Vec<Value> {
    let mut ops = Vec::new();
    let update = |table: &str, uuid: &str, row: Value| {
        json!({"op": "update", "table": table,
               "where": [["_uuid", "==", datum::to_uuid(uuid)]], "row": row})
    };
    for (name, b) in &wanted.bridges {
        let Some(a) = applied.get(name) else { continue };
        let dpid = format!("{:016x}", a.dpid);
        let cur = mirror.row("Bridge", &b.uuid);
        if cur.is_some_and(|r| {
            datum::optional(&r["datapath_id"]).and_then(Value::as_str) != Some(&dpid)
        }) {
            ops.push(update("Bridge", &b.uuid, json!({"datapath_id": dpid})));
        }
        for i in &b.ifaces {
            let Some(ap) = a.ifaces.get(&i.name) else {
                continue;
            };
            let Some(row) = mirror.row("Interface", &i.uuid) else {
                continue;
            };
            let have_of = datum::optional(&row["ofport"]).and_then(Value::as_i64);
            let have_err = datum::optional(&row["error"]).and_then(Value::as_str);
            if have_of != Some(ap.ofport) || have_err != ap.error.as_deref() {
                let err = match &ap.error {
                    Some(e) => datum::to_set(vec![json!(e)]),
                    None => datum::to_set(Vec::new()),
                };
                ops.push(update(
                    "Interface",
                    &i.uuid,
                    json!({"ofport": ap.ofport, "error": err}),
                ));
            }
        }
    }
    if let Some((root, _)) = mirror.root()
        && mirror.cur_cfg() != mirror.next_cfg()
    {
        ops.push(update(
            "Open_vSwitch",
            root,
            json!({"cur_cfg": mirror.next_cfg()}),
        ));
    }
    ops
}

/// What the kernel says of interface `name`: (admin up, link up, MAC, MTU,
/// ifindex), if it is one.
fn kernel_state(name: &str) -> Option<(bool, bool, String, i64, i64)> {
    let dir = Path::new("/sys/class/net").join(name);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let flags = u32::from_str_radix(read("flags")?.trim_start_matches("0x"), 16).ok()?;
    let admin = flags & 1 != 0;
    let link = admin && read("carrier").is_some_and(|c| c == "1");
    let mac = read("address").unwrap_or_default();
    let mtu = read("mtu").and_then(|m| m.parse().ok()).unwrap_or(0);
    let ifindex = read("ifindex").and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((admin, link, mac, mtu, ifindex))
}

/// The `status` column of a vhost-user interface, with ovs-vswitchd's
/// keys: `mode` (`server` for `dpdkvhostuser`, `client` for
/// `dpdkvhostuserclient`), `status` (`connected` while a guest has its
/// queues running, else `disconnected`) and, when connected, `socket`.
/// (ovs-vswitchd also reports DPDK's `features`, `numa` and vring sizes.)
fn vhost_status(i: &WantedIface, run_dir: &Path, connected: bool) -> Option<Value> {
    let (mode, socket) = match i.kind.as_str() {
        "dpdkvhostuser" => ("server", run_dir.join(&i.name).display().to_string()),
        "dpdkvhostuserclient" => ("client", i.options.get("vhost-server-path")?.clone()),
        _ => return None,
    };
    let mut pairs = vec![json!(["mode", mode])];
    if connected {
        pairs.push(json!(["socket", socket]));
    }
    let state = if connected {
        "connected"
    } else {
        "disconnected"
    };
    pairs.push(json!(["status", state]));
    // (Sorted by key, as ovsdb-server wants its maps.)
    Some(json!(["map", pairs]))
}

/// The `status` column of a tunnel interface, with ovs-vswitchd's keys:
/// `tunnel_egress_iface` (the interface the route to `remote_ip` leaves
/// by) and `tunnel_egress_iface_carrier` (`up` or `down`), when there is
/// such a route.
fn tunnel_status(i: &WantedIface) -> Option<Value> {
    if !matches!(i.kind.as_str(), "vxlan" | "geneve") {
        return None;
    }
    let remote = i.options.get("remote_ip")?;
    let remote = remote.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
    let pairs = match crate::port::tunnel::route::egress_iface(remote) {
        Some(iface) => {
            let up = kernel_state(&iface).is_some_and(|(_, link, ..)| link);
            let carrier = if up { "up" } else { "down" };
            vec![
                json!(["tunnel_egress_iface", iface]),
                json!(["tunnel_egress_iface_carrier", carrier]),
            ]
        }
        None => Vec::new(),
    };
    Some(json!(["map", pairs]))
}

/// The periodic writes of what ovs-vswitchd reports about each
/// interface: counters (`statistics`), `status` of vhost-user and tunnel
/// interfaces,
/// `admin_state`, `link_state`, `mac_in_use`, `mtu` and `ifindex` of
/// kernel interfaces.
fn state_ops(
    d: &Daemon,
    wanted: &Wanted,
    applied: &BTreeMap<String, AppliedBridge>,
    run_dir: &Path,
) -> Vec<Value> {
    let mut ops = Vec::new();
    for (name, b) in &wanted.bridges {
        let Some(a) = applied.get(name) else { continue };
        ops.extend(mirrors::stats_ops(&a.mirrors));
        let Ok(st) = d.stats(Some(name)) else {
            continue;
        };
        let ports = st[0]["ports"].as_array().cloned().unwrap_or_default();
        for i in &b.ifaces {
            if a.ifaces.get(&i.name).is_none_or(|ap| ap.ofport <= 0) {
                continue;
            }
            let Some(p) = ports.iter().find(|p| p["name"] == i.name.as_str()) else {
                continue;
            };
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            let dr = |k: &str| p["drops"][k].as_u64().unwrap_or(0);
            let stats: Vec<Value> = [
                ("rx_packets", n("rx_packets")),
                ("rx_bytes", n("rx_bytes")),
                ("tx_packets", n("tx_packets")),
                ("tx_bytes", n("tx_bytes")),
                ("rx_dropped", dr("no_dest") + dr("module")),
                ("tx_dropped", dr("dest_full") + dr("oversize")),
                ("rx_errors", dr("bad_frame")),
            ]
            .iter()
            .map(|(k, v)| json!([k, v]))
            .collect();
            let mut row = json!({"statistics": ["map", stats]});
            if let Some(status) = vhost_status(i, run_dir, p["link_up"] == true) {
                row["status"] = status;
            }
            if let Some(status) = tunnel_status(i) {
                row["status"] = status;
                // A tunnel has no carrier of its own: ovs-vswitchd shows
                // it up.
                row["admin_state"] = json!("up");
                row["link_state"] = json!("up");
            }
            if let Some((admin, link, mac, mtu, ifindex)) = kernel_state(&i.name) {
                let updown = |b: bool| if b { "up" } else { "down" };
                row["admin_state"] = json!(updown(admin));
                row["link_state"] = json!(updown(link));
                row["mac_in_use"] = json!(mac);
                row["mtu"] = json!(mtu);
                row["ifindex"] = json!(ifindex);
            }
            ops.push(json!({"op": "update", "table": "Interface",
                "where": [["_uuid", "==", datum::to_uuid(&i.uuid)]], "row": row}));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::ovs_passive;

    #[test]
    fn passive_targets_default_to_every_address_as_in_open_vswitch() {
        assert_eq!(ovs_passive("ptcp:6653"), "ptcp:6653:0.0.0.0");
        assert_eq!(ovs_passive("ptcp:"), "ptcp:6653:0.0.0.0");
        assert_eq!(ovs_passive("pssl:6654"), "pssl:6654:0.0.0.0");
        assert_eq!(ovs_passive("ptcp:6653:127.0.0.1"), "ptcp:6653:127.0.0.1");
        assert_eq!(ovs_passive("ptcp:6653:[::1]"), "ptcp:6653:[::1]");
        assert_eq!(ovs_passive("punix:/x"), "punix:/x");
    }
}
