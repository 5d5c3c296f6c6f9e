//! The part of Open vSwitch's database `mswitch vswitchd` reads, mirrored
//! from `monitor` replies and `update` notifications, and the switch
//! configuration it describes. No I/O: the loop feeds it JSON and asks for
//! the [`Wanted`] state.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::ovsdb::datum;
use crate::port::tunnel::{Proto, TunnelConfig};

/// The tables and columns monitored (what the daemon acts on).
pub fn monitor_requests() -> Value {
    json!({
        "Open_vSwitch": {"columns": ["next_cfg", "cur_cfg", "bridges", "other_config", "ssl"]},
        "Bridge": {"columns": ["name", "datapath_type", "fail_mode", "controller",
                               "protocols", "other_config", "ports", "datapath_id",
                               "mirrors"]},
        "Port": {"columns": ["name", "interfaces", "tag", "trunks", "vlan_mode"]},
        "Interface": {"columns": ["name", "type", "options", "ofport_request",
                                  "ofport", "error", "mtu_request", "mtu"]},
        "Controller": {"columns": ["target"]},
        "SSL": {"columns": super::ssl::COLUMNS},
        "Mirror": {"columns": ["name", "select_all", "select_src_port", "select_dst_port",
                               "output_port", "select_vlan", "output_vlan"]},
    })
}

/// Rows by table and UUID, each as the monitor last sent it.
#[derive(Debug, Default)]
pub struct Mirror {
    pub tables: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Mirror {
    /// Applies a `table-updates` object (the monitor's reply, or the second
    /// parameter of an `update`): a row with `new` is (re)placed, one with
    /// only `old` deleted. Anything malformed is skipped.
    pub fn apply(&mut self, updates: &Value) {
        let Some(tables) = updates.as_object() else {
            return;
        };
        for (table, rows) in tables {
            let Some(rows) = rows.as_object() else {
                continue;
            };
            let t = self.tables.entry(table.clone()).or_default();
            for (uuid, change) in rows {
                match change.get("new") {
                    Some(new) if new.is_object() => {
                        t.insert(uuid.clone(), new.clone());
                    }
                    _ => {
                        t.remove(uuid);
                    }
                }
            }
        }
    }

    pub fn row(&self, table: &str, uuid: &str) -> Option<&Value> {
        self.tables.get(table)?.get(uuid)
    }

    /// The one Open_vSwitch row: (UUID, row).
    pub fn root(&self) -> Option<(&str, &Value)> {
        self.tables
            .get("Open_vSwitch")?
            .iter()
            .next()
            .map(|(u, r)| (u.as_str(), r))
    }

    /// `next_cfg` of the root row (0 without one).
    pub fn next_cfg(&self) -> i64 {
        self.root()
            .and_then(|(_, r)| r["next_cfg"].as_i64())
            .unwrap_or(0)
    }

    /// `other_config:stats-update-interval` (ms, at least 5000 as Open
    /// vSwitch enforces), 5 s by default.
    pub fn stats_interval(&self) -> std::time::Duration {
        let ms = self
            .root()
            .and_then(|(_, r)| datum::map_get(&r["other_config"], "stats-update-interval"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(5000)
            .max(5000);
        std::time::Duration::from_millis(ms)
    }

    pub fn cur_cfg(&self) -> i64 {
        self.root()
            .and_then(|(_, r)| r["cur_cfg"].as_i64())
            .unwrap_or(0)
    }

    /// The configuration the database asks for.
    pub fn wanted(&self) -> Wanted {
        let mut w = Wanted::default();
        let Some((_, root)) = self.root() else {
            return w;
        };
        let ncpus = std::thread::available_parallelism().map_or(1, usize::from);
        w.pmd_cpus = datum::map_get(&root["other_config"], "pmd-cpu-mask")
            .and_then(Value::as_str)
            .and_then(|m| pmd_cpus(m, ncpus));
        for bu in datum::uuids(&root["bridges"]) {
            let Some(b) = self.row("Bridge", bu) else {
                continue;
            };
            let Some(name) = b["name"].as_str() else {
                continue;
            };
            let str_of = |v: &Value| {
                datum::optional(v)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let mut bridge = WantedBridge {
                uuid: bu.to_owned(),
                datapath_type: b["datapath_type"].as_str().unwrap_or("").to_owned(),
                fail_mode: str_of(&b["fail_mode"]),
                controllers: datum::uuids(&b["controller"])
                    .into_iter()
                    .filter_map(|c| self.row("Controller", c))
                    .filter_map(|c| c["target"].as_str().map(str::to_owned))
                    .collect(),
                controller_rows: datum::uuids(&b["controller"])
                    .into_iter()
                    .filter_map(|c| {
                        let t = self.row("Controller", c)?["target"].as_str()?;
                        Some((c.to_owned(), t.to_owned()))
                    })
                    .collect(),
                protocols: datum::set(&b["protocols"])
                    .into_iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect(),
                datapath_id: datum::map_get(&b["other_config"], "datapath-id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                ifaces: Vec::new(),
                mirrors: Vec::new(),
            };
            bridge.controllers.sort();
            for pu in datum::uuids(&b["ports"]) {
                let Some(p) = self.row("Port", pu) else {
                    continue;
                };
                let vlan = port_vlan(p);
                for iu in datum::uuids(&p["interfaces"]) {
                    let Some(i) = self.row("Interface", iu) else {
                        continue;
                    };
                    let Some(iname) = i["name"].as_str() else {
                        continue;
                    };
                    bridge.ifaces.push(WantedIface {
                        uuid: iu.to_owned(),
                        name: iname.to_owned(),
                        kind: i["type"].as_str().unwrap_or("").to_owned(),
                        options: datum::map(&i["options"])
                            .into_iter()
                            .filter_map(|(k, v)| {
                                Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))
                            })
                            .collect(),
                        ofport_request: datum::optional(&i["ofport_request"])
                            .and_then(Value::as_i64),
                        ofport: datum::optional(&i["ofport"]).and_then(Value::as_i64),
                        vlan: vlan.clone(),
                        mtu_request: datum::optional(&i["mtu_request"])
                            .and_then(Value::as_i64)
                            .and_then(|m| u32::try_from(m).ok()),
                    });
                }
            }
            bridge.ifaces.sort_by(|a, b| a.name.cmp(&b.name));
            bridge.mirrors = datum::uuids(&b["mirrors"])
                .into_iter()
                .filter_map(|mu| self.wanted_mirror(mu))
                .collect();
            w.bridges.insert(name.to_owned(), bridge);
        }
        w
    }
}

impl Mirror {
    /// Mirror row `uuid`, its ports as the names of their interfaces.
    fn wanted_mirror(&self, uuid: &str) -> Option<WantedMirror> {
        let m = self.row("Mirror", uuid)?;
        let ifaces = |col: &Value| -> Vec<String> {
            datum::uuids(col)
                .into_iter()
                .filter_map(|pu| self.row("Port", pu))
                .flat_map(|p| datum::uuids(&p["interfaces"]))
                .filter_map(|iu| self.row("Interface", iu)?["name"].as_str())
                .map(str::to_owned)
                .collect()
        };
        Some(WantedMirror {
            uuid: uuid.to_owned(),
            name: m["name"].as_str().unwrap_or("").to_owned(),
            all: m["select_all"].as_bool().unwrap_or(false),
            src: ifaces(&m["select_src_port"]),
            dst: ifaces(&m["select_dst_port"]),
            out: ifaces(&m["output_port"]),
            select_vlan: datum::set(&m["select_vlan"])
                .into_iter()
                .filter_map(Value::as_u64)
                .filter_map(|v| u16::try_from(v).ok())
                .collect(),
            output_vlan: datum::optional(&m["output_vlan"])
                .and_then(Value::as_u64)
                .and_then(|v| u16::try_from(v).ok()),
        })
    }
}

/// One row of the Mirror table, as a bridge's `mirrors` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedMirror {
    pub uuid: String,
    pub name: String,
    pub all: bool,
    /// Interfaces of the `select_src_port`/`select_dst_port`/`output_port`
    /// ports.
    pub src: Vec<String>,
    pub dst: Vec<String>,
    pub out: Vec<String>,
    /// `select_vlan` (empty: every VLAN).
    pub select_vlan: Vec<u16>,
    /// `output_vlan` (RSPAN).
    pub output_vlan: Option<u16>,
}

/// A Port's VLAN columns as the settings text `mswitch` takes (empty: the
/// default, a trunk of every VLAN).
fn port_vlan(p: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = datum::optional(&p["vlan_mode"]).and_then(Value::as_str) {
        parts.push(format!("vlan_mode={m}"));
    }
    if let Some(t) = datum::optional(&p["tag"]).and_then(Value::as_i64) {
        parts.push(format!("tag={t}"));
    }
    let trunks: Vec<String> = datum::set(&p["trunks"])
        .into_iter()
        .filter_map(Value::as_i64)
        .map(|t| t.to_string())
        .collect();
    if !trunks.is_empty() {
        parts.push(format!("trunks={}", trunks.join(",")));
    }
    parts.join(" ")
}

/// The switches the database asks for, by bridge name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Wanted {
    pub bridges: BTreeMap<String, WantedBridge>,
    /// `Open_vSwitch:other_config:pmd-cpu-mask`: the CPUs whose busy-polling
    /// workers a new bridge gets (see [`pmd_cpus`]).
    pub pmd_cpus: Option<Vec<usize>>,
}

/// The CPUs of a `pmd-cpu-mask` (hexadecimal, with or without `0x`), if it
/// names at least one CPU below `ncpus`; CPUs past `ncpus` are left out.
pub fn pmd_cpus(mask: &str, ncpus: usize) -> Option<Vec<usize>> {
    let hex = mask.trim();
    let hex = hex
        .strip_prefix("0x")
        .or_else(|| hex.strip_prefix("0X"))
        .unwrap_or(hex);
    if hex.is_empty() || hex.len() > 32 {
        return None;
    }
    let bits = u128::from_str_radix(hex, 16).ok()?;
    let cpus: Vec<usize> = (0..ncpus.min(128))
        .filter(|&c| bits >> c & 1 == 1)
        .collect();
    (!cpus.is_empty()).then_some(cpus)
}

#[derive(Debug, Clone, PartialEq)]
pub struct WantedBridge {
    pub uuid: String,
    pub datapath_type: String,
    pub fail_mode: Option<String>,
    pub controllers: Vec<String>,
    /// The Controller rows: (UUID, target).
    pub controller_rows: Vec<(String, String)>,
    pub protocols: Vec<String>,
    pub datapath_id: Option<String>,
    pub ifaces: Vec<WantedIface>,
    pub mirrors: Vec<WantedMirror>,
}

impl WantedBridge {
    /// What decides how the switch and its agent are made: a change
    /// rebuilds the agent.
    pub fn openflow_key(&self) -> (Option<String>, Vec<String>, Vec<String>, Option<String>) {
        (
            self.fail_mode.clone(),
            self.controllers.clone(),
            self.protocols.clone(),
            self.datapath_id.clone(),
        )
    }
}

/// See [`WantedIface::attach_key`]: type, options, `ofport_request`, MTU.
pub type AttachKey = (String, BTreeMap<String, String>, Option<i64>, Option<u32>);

#[derive(Debug, Clone, PartialEq)]
pub struct WantedIface {
    pub uuid: String,
    pub name: String,
    /// The Interface's `type` ("" is a system interface).
    pub kind: String,
    pub options: BTreeMap<String, String>,
    pub ofport_request: Option<i64>,
    /// The number it had (written by a daemon before this one), kept on
    /// restart when no number is requested, as ovs-vswitchd does.
    pub ofport: Option<i64>,
    /// Its Port's VLAN settings.
    pub vlan: String,
    /// `mtu_request` ([`super::mtu`]).
    pub mtu_request: Option<u32>,
}

impl WantedIface {
    /// What decides how the port is attached: a change re-attaches it
    /// (an MTU that sizes the port's buffers among it).
    pub fn attach_key(&self) -> AttachKey {
        (
            self.kind.clone(),
            self.options.clone(),
            self.ofport_request,
            super::mtu::attach_mtu(self),
        )
    }

    /// The port spec of a `vxlan` or `geneve` interface, from Open
    /// vSwitch's tunnel options, or why it cannot be made (the text of
    /// `Interface.error`). Options mswitch does not know are ignored, as
    /// ovs-vswitchd ignores them (with a log line); ones it knows but does
    /// not do are refused.
    pub fn tunnel_spec(&self) -> Result<String, String> {
        let proto = match self.kind.as_str() {
            "vxlan" => Proto::Vxlan,
            "geneve" => Proto::Geneve,
            t => return Err(format!("interface type '{t}' is not a tunnel")),
        };
        let remote = self.options.get("remote_ip").ok_or_else(|| {
            format!(
                "{}: {} type requires 'remote_ip' argument",
                self.name, self.kind
            )
        })?;
        let mut t = TunnelConfig::new(proto, std::net::Ipv4Addr::UNSPECIFIED.into());
        t.set("remote_ip", remote)?;
        // `key` first: `in_key`/`out_key` override it, as in Open vSwitch.
        let order = [
            "key", "local_ip", "in_key", "out_key", "dst_port", "tos", "ttl", "csum",
        ];
        for k in order {
            if let Some(v) = self.options.get(k) {
                t.set(k, v)?;
            }
        }
        match self.options.get("df_default").map(String::as_str) {
            None | Some("true") => {}
            Some("false") => {
                return Err(
                    "df_default=false is not supported: mswitch never fragments tunnel packets"
                        .into(),
                );
            }
            Some(v) => return Err(format!("bad df_default '{v}' (true or false)")),
        }
        for k in [
            "exts",
            "egress_pkt_mark",
            "remote_cert",
            "psk",
            "remote_name",
        ] {
            if self.options.contains_key(k) {
                return Err(format!(
                    "options:{k} is not supported on {} ports",
                    self.kind
                ));
            }
        }
        if self
            .options
            .get("packet_type")
            .is_some_and(|p| p != "legacy_l2")
        {
            return Err("only packet_type=legacy_l2 (Ethernet) is supported".into());
        }
        t.validate()?;
        Ok(format!("{}:{}{t}", proto.name(), self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmd_cpu_masks_read_as_open_vswitch_writes_them() {
        assert_eq!(pmd_cpus("0x2", 2), Some(vec![1]));
        assert_eq!(pmd_cpus("6", 8), Some(vec![1, 2]));
        assert_eq!(pmd_cpus("0X5", 8), Some(vec![0, 2]));
        // CPUs the machine lacks are left out; none left is no mask.
        assert_eq!(pmd_cpus("0x6", 2), Some(vec![1]));
        assert_eq!(pmd_cpus("0x4", 2), None);
        for bad in ["", "0x", "zz", "-1", "0x1 2", &"f".repeat(33)] {
            assert_eq!(pmd_cpus(bad, 8), None, "{bad}");
        }
    }

    #[test]
    fn tunnel_interfaces_become_tunnel_specs() {
        let iface = |kind: &str, opts: &[(&str, &str)]| WantedIface {
            uuid: "u".into(),
            name: "vx0".into(),
            kind: kind.into(),
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ofport_request: None,
            ofport: None,
            vlan: String::new(),
            mtu_request: None,
        };
        let spec = |kind: &str, opts: &[(&str, &str)]| iface(kind, opts).tunnel_spec();
        assert_eq!(
            spec("vxlan", &[("remote_ip", "10.0.0.2"), ("key", "42")]).unwrap(),
            "vxlan:vx0,remote=10.0.0.2,key=42"
        );
        assert_eq!(
            spec(
                "geneve",
                &[
                    ("remote_ip", "10.0.0.2"),
                    ("local_ip", "10.0.0.1"),
                    ("key", "5"),
                    ("out_key", "6"),
                    ("dst_port", "7000"),
                    ("tos", "32"),
                    ("ttl", "10"),
                    ("csum", "true"),
                    ("df_default", "true"),
                    ("unknown_option", "x"),
                ]
            )
            .unwrap(),
            "geneve:vx0,remote=10.0.0.2,local=10.0.0.1,in_key=5,out_key=6,dst_port=7000,tos=32,ttl=10,csum"
        );
        // Flow-based remotes and keys, as Open vSwitch takes them.
        assert_eq!(
            spec("vxlan", &[("remote_ip", "flow"), ("key", "flow")]).unwrap(),
            "vxlan:vx0,remote=flow,key=flow"
        );
        assert_eq!(
            spec("geneve", &[("remote_ip", "10.0.0.2"), ("out_key", "flow")]).unwrap(),
            "geneve:vx0,remote=10.0.0.2,in_key=0,out_key=flow"
        );
        // tos/ttl=inherit, and a flow-based port on IPv6, as Open vSwitch's.
        assert_eq!(
            spec(
                "vxlan",
                &[
                    ("remote_ip", "flow"),
                    ("local_ip", "::"),
                    ("tos", "inherit"),
                    ("ttl", "inherit")
                ]
            )
            .unwrap(),
            "vxlan:vx0,remote=flow,local=[::],tos=inherit,ttl=inherit"
        );
        // What the spec says must parse back into a port spec.
        let s = spec("vxlan", &[("remote_ip", "fd00::2"), ("in_key", "1")]).unwrap();
        assert!(s.parse::<crate::port::PortSpec>().is_ok(), "{s}");
        for (opts, why) in [
            (vec![("key", "1")], "requires 'remote_ip'"),
            (
                vec![("remote_ip", "flow"), ("local_ip", "flow")],
                "not supported",
            ),
            (
                vec![("remote_ip", "10.0.0.2"), ("df_default", "false")],
                "never fragments",
            ),
            (
                vec![("remote_ip", "10.0.0.2"), ("exts", "gbp")],
                "not supported",
            ),
            (
                vec![("remote_ip", "10.0.0.2"), ("packet_type", "ptap")],
                "legacy_l2",
            ),
            (
                vec![("remote_ip", "10.0.0.2"), ("local_ip", "fd00::1")],
                "families",
            ),
        ] {
            let e = spec("vxlan", &opts).unwrap_err();
            assert!(e.contains(why), "{opts:?}: {e}");
        }
    }

    #[test]
    fn the_mirror_follows_updates_and_yields_the_wanted_switches() {
        let mut m = Mirror::default();
        m.apply(&json!({
            "Open_vSwitch": {"r": {"new": {"next_cfg": 3, "cur_cfg": 2, "bridges": ["uuid", "b"]}}},
            "Bridge": {"b": {"new": {"name": "br0", "datapath_type": "netdev",
                "fail_mode": ["set", []], "controller": ["set", [["uuid", "c"]]],
                "protocols": ["set", ["OpenFlow13", "OpenFlow10"]],
                "other_config": ["map", [["datapath-id", "0000000000000001"]]],
                "ports": ["set", [["uuid", "p"]]]}}},
            "Controller": {"c": {"new": {"target": "tcp:127.0.0.1:6653"}}},
            "Port": {"p": {"new": {"name": "v1", "interfaces": ["uuid", "i"], "tag": 10,
                "trunks": ["set", []], "vlan_mode": ["set", []]}}},
            "Interface": {"i": {"new": {"name": "v1", "type": "", "options": ["map", []],
                "ofport_request": 5, "ofport": ["set", []], "error": ["set", []]}}},
        }));
        assert_eq!((m.next_cfg(), m.cur_cfg()), (3, 2));
        let w = m.wanted();
        let b = &w.bridges["br0"];
        assert_eq!(b.controllers, ["tcp:127.0.0.1:6653"]);
        assert_eq!(b.datapath_id.as_deref(), Some("0000000000000001"));
        assert_eq!(b.fail_mode, None);
        assert_eq!(b.ifaces.len(), 1);
        assert_eq!(b.ifaces[0].ofport_request, Some(5));
        assert_eq!(b.ifaces[0].vlan, "tag=10");
        assert!(b.mirrors.is_empty());
        m.apply(&json!({
            "Bridge": {"b": {"new": {"name": "br0", "ports": ["set", [["uuid", "p"]]],
                "mirrors": ["uuid", "m"]}}},
            "Mirror": {"m": {"new": {"name": "m0", "select_all": false,
                "select_src_port": ["uuid", "p"], "select_dst_port": ["set", []],
                "output_port": ["uuid", "p"], "select_vlan": ["set", []],
                "output_vlan": ["set", []]}}},
        }));
        let ms = &m.wanted().bridges["br0"].mirrors;
        assert_eq!(ms.len(), 1);
        assert_eq!(
            (ms[0].src.as_slice(), ms[0].out.as_slice()),
            (&["v1".to_owned()][..], &["v1".to_owned()][..])
        );
        assert!(ms[0].dst.is_empty() && !ms[0].all);
        assert!(ms[0].select_vlan.is_empty() && ms[0].output_vlan.is_none());
        // A deleted port leaves the bridge; odd input changes nothing.
        m.apply(&json!({"Port": {"p": {"old": {}}}}));
        assert!(m.wanted().bridges["br0"].ifaces.is_empty());
        m.apply(&json!([1, 2]));
        m.apply(&json!({"Bridge": 7}));
        assert_eq!(m.wanted().bridges.len(), 1);
    }
}
