//! The `mswitch ctl` commands: parsing (shared with daemon config files, which
//! are lists of the same commands) and printing answers for a person.

use std::fmt::Write as _;

use clap::{Parser, Subcommand};
use serde_json::Value;

use super::proto::{OpenFlowOpts, Request};

/// OpenFlow options of a switch whose module is `flow` (`ctl create`, `run`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OpenFlowArgs {
    /// Connect to an OpenFlow controller: tcp:HOST[:PORT], ssl:HOST[:PORT]
    /// (with the daemon's --private-key, --certificate, --ca-cert) or
    /// unix:PATH (repeat).
    #[arg(long = "controller", value_name = "TARGET")]
    pub controllers: Vec<String>,
    /// Also listen for OpenFlow connections: ptcp:PORT[:IP], pssl:PORT[:IP]
    /// or punix:PATH (repeat);
    /// a Unix socket SWITCH.mgmt beside the control socket is always there
    /// (and SWITCH.snoop, for `ovs-ofctl snoop`).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Datapath id (hex 0x... or decimal; default from the switch name).
    #[arg(long)]
    pub dpid: Option<String>,
    /// What to do with no controller: secure (keep the flow tables) or
    /// standalone (act as a learning bridge; default).
    #[arg(long)]
    pub fail_mode: Option<String>,
    /// OpenFlow versions to allow, as Open vSwitch's Bridge.protocols:
    /// OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15 (default: all of them).
    #[arg(long, value_name = "LIST")]
    pub protocols: Option<String>,
    /// No LOCAL port (by default a TAP named after the switch is OpenFlow
    /// port LOCAL, the bridge's own interface, as in Open vSwitch).
    #[arg(long)]
    pub no_local: bool,
}

impl OpenFlowArgs {
    pub fn opts(&self) -> OpenFlowOpts {
        OpenFlowOpts {
            controllers: self.controllers.clone(),
            listen: self.listen.clone(),
            dpid: self.dpid.clone(),
            fail_mode: self.fail_mode.clone(),
            protocols: self.protocols.clone(),
            no_local: self.no_local,
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum CtlCmd {
    /// Create a switch.
    Create {
        switch: String,
        /// Module spec NAME[:ARGS] (see `mswitch modules`).
        #[arg(long, default_value = "learn")]
        module: String,
        /// Forwarding worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Most packets taken from one port per pass (1..=1024).
        #[arg(long)]
        batch: Option<usize>,
        /// Never sleep: workers poll even when idle (lowest latency, one busy core each).
        #[arg(long)]
        busy_poll: bool,
        #[command(flatten)]
        openflow: OpenFlowArgs,
    },
    /// Stop a switch and detach all its ports.
    Destroy { switch: String },
    /// Attach a port: vport:NAME[,ring=N][,buf=N].
    Attach {
        switch: String,
        spec: String,
        /// Port number (default: the lowest free one).
        #[arg(long)]
        ofport: Option<u32>,
        /// VLAN settings for the NORMAL action of a flow switch, as Open
        /// vSwitch's Port table: "tag=10", "vlan_mode=trunk trunks=10,20",
        /// "vlan_mode=native-untagged tag=10 trunks=20".
        #[arg(long, value_name = "SETTINGS")]
        vlan: Option<String>,
    },
    /// Change a port's VLAN settings (see attach --vlan; "" for the default:
    /// a trunk of every VLAN).
    Vlan {
        switch: String,
        port: String,
        settings: String,
    },
    /// Show the MAC table of a flow switch's NORMAL action (or --flush it).
    Fdb {
        switch: String,
        #[arg(long)]
        flush: bool,
        #[arg(long)]
        json: bool,
    },
    /// Detach a port, by name or number.
    Detach { switch: String, port: String },
    /// Swap a switch's module while traffic flows.
    Module { switch: String, module: String },
    /// List switches and their ports.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The tuples of a demux switch: `bind PORT TUPLE`, `unbind PORT
    /// TUPLE`, `list`; TUPLE is udp|tcp:[IP:]PORT (udp:10.0.0.1:53,
    /// tcp:[fd00::1]:80, tcp:*:8080 for any address).
    Demux {
        switch: String,
        #[arg(value_parser = ["bind", "unbind", "list"])]
        op: String,
        port: Option<String>,
        tuple: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print counters.
    Stats {
        switch: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

impl CtlCmd {
    pub fn request(&self) -> Request {
        match self.clone() {
            CtlCmd::Create {
                switch,
                module,
                workers,
                batch,
                busy_poll,
                openflow,
            } => Request::Create {
                switch,
                module: Some(module),
                workers: Some(workers),
                batch,
                busy_poll,
                openflow: openflow.opts(),
            },
            CtlCmd::Destroy { switch } => Request::Destroy { switch },
            CtlCmd::Attach {
                switch,
                spec,
                ofport,
                vlan,
            } => Request::Attach {
                switch,
                spec,
                ofport,
                vlan,
            },
            CtlCmd::Vlan {
                switch,
                port,
                settings,
            } => Request::Vlan {
                switch,
                port,
                vlan: settings,
            },
            CtlCmd::Fdb { switch, flush, .. } => Request::Fdb { switch, flush },
            CtlCmd::Detach { switch, port } => Request::Detach { switch, port },
            CtlCmd::Module { switch, module } => Request::Module { switch, module },
            CtlCmd::List { .. } => Request::List,
            CtlCmd::Stats { switch, .. } => Request::Stats { switch },
            CtlCmd::Demux {
                switch,
                op,
                port,
                tuple,
                ..
            } => Request::Demux {
                switch,
                op,
                port,
                tuple,
            },
        }
    }

    /// The answer as a person (or, with `--json`, a program) wants to read it.
    pub fn render(&self, data: &Value) -> String {
        match self {
            CtlCmd::List { json: true }
            | CtlCmd::Stats { json: true, .. }
            | CtlCmd::Fdb { json: true, .. }
            | CtlCmd::Demux { json: true, .. } => {
                format!("{}\n", serde_json::to_string(data).unwrap_or_default())
            }
            CtlCmd::List { .. } => render_list(data),
            CtlCmd::Stats { .. } => render_stats(data),
            CtlCmd::Create { switch, .. } => {
                let note = data["note"]
                    .as_str()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default();
                match openflow_of(data) {
                    Some(l) => format!("created switch {switch} (OpenFlow on {l}{note})\n"),
                    None => format!("created switch {switch}\n"),
                }
            }
            CtlCmd::Destroy { switch } => format!("destroyed switch {switch}\n"),
            CtlCmd::Attach { switch, .. } => {
                let note = data["note"]
                    .as_str()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                format!(
                    "attached {} {} to {switch} as port {}{note}\n",
                    s(&data["kind"]),
                    s(&data["port"]),
                    data["ofport"]
                )
            }
            CtlCmd::Detach { switch, .. } => {
                format!(
                    "detached {} (port {}) from {switch}\n",
                    s(&data["port"]),
                    data["ofport"]
                )
            }
            CtlCmd::Module { switch, module } => match openflow_of(data) {
                Some(l) => format!(
                    "switch {switch} now runs module {module} (OpenFlow on {l}; priority=0 actions=NORMAL until a controller says otherwise)\n"
                ),
                None => format!("switch {switch} now runs module {module}\n"),
            },
            CtlCmd::Vlan { switch, port, .. } => {
                format!("port {port} of {switch}: {}\n", s(&data["vlan"]))
            }
            CtlCmd::Fdb {
                flush: true,
                switch,
                ..
            } => format!("flushed the MAC table of {switch}\n"),
            CtlCmd::Fdb { .. } => render_fdb(data),
            CtlCmd::Demux { op, switch, .. } => render_demux(op, switch, data),
        }
    }
}

/// A demux answer: the tuples, one a line, or what changed.
fn render_demux(op: &str, switch: &str, data: &Value) -> String {
    if op != "list" {
        let (t, p) = (s(&data["tuple"]), &data["ofport"]);
        let verb = if op == "bind" { "bound" } else { "unbound" };
        return format!("{verb} {t} for port {p} of {switch}\n");
    }
    let mut out = String::from(" port  name             tuple\n");
    for e in data["tuples"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>5}  {:<16} {}",
            e["ofport"],
            s(&e["port"]),
            s(&e["tuple"])
        );
    }
    out
}

/// The MAC table as Open vSwitch's `ovs-appctl fdb/show` prints it.
fn render_fdb(data: &Value) -> String {
    let mut out = String::from(" port  VLAN  MAC                Age\n");
    for e in data["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let _ = writeln!(
            out,
            "{:>5}  {:>4}  {}  {:>3}",
            n(&e["port"]),
            n(&e["vlan"]),
            s(&e["mac"]),
            n(&e["age"])
        );
    }
    out
}

/// The OpenFlow listeners in an answer, joined, if any.
fn openflow_of(data: &Value) -> Option<String> {
    let l: Vec<&str> = data["openflow"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!l.is_empty()).then(|| l.join(", "))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn render_list(data: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let sws = data.as_array().unwrap_or(&empty);
    if sws.is_empty() {
        return "no switches\n".into();
    }
    for sw in sws {
        let ports = sw["ports"].as_array().unwrap_or(&empty);
        let _ = writeln!(
            out,
            "{}: module {}, {} worker(s){}, {} port(s)",
            s(&sw["switch"]),
            s(&sw["module"]),
            n(&sw["workers"]),
            if sw["busy_poll"].as_bool() == Some(true) {
                " busy-polling"
            } else {
                ""
            },
            ports.len()
        );
        if let Some(l) = openflow_of(sw) {
            let _ = writeln!(out, "  OpenFlow: {l}");
        }
        for p in ports {
            let state = match p["connected"].as_bool() {
                Some(true) => "client connected",
                Some(false) => "no client",
                None => "",
            };
            let _ = writeln!(
                out,
                "  {:>4}  {:<16} {:<6} {}",
                n(&p["ofport"]),
                s(&p["name"]),
                s(&p["kind"]),
                state
            );
        }
    }
    out
}

fn render_stats(data: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for sw in data.as_array().unwrap_or(&empty) {
        let _ = writeln!(out, "{}: module {}", s(&sw["name"]), s(&sw["module"]));
        let _ = writeln!(
            out,
            "  {:>4}  {:<16} {:>12} {:>14} {:>12} {:>14} {:>10}",
            "port", "name", "rx packets", "rx bytes", "tx packets", "tx bytes", "drops"
        );
        for p in sw["ports"].as_array().unwrap_or(&empty) {
            let d = &p["drops"];
            let counts: Vec<(&str, u64)> = crate::switch::DROP_REASONS
                .iter()
                .map(|r| (r.name(), n(&d[r.name()])))
                .collect();
            let total: u64 = counts.iter().map(|c| c.1).sum();
            let reasons: Vec<String> = counts
                .iter()
                .filter(|c| c.1 > 0)
                .map(|(r, v)| format!("{r} {v}"))
                .collect();
            let pc: Vec<String> = p["port_counters"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|c| c[1].as_u64().unwrap_or(0) > 0)
                .map(|c| format!("{} {}", s(&c[0]), n(&c[1])))
                .collect();
            let _ = writeln!(
                out,
                "  {:>4}  {:<16} {:>12} {:>14} {:>12} {:>14} {:>10}{}{}",
                n(&p["id"]),
                s(&p["name"]),
                n(&p["rx_packets"]),
                n(&p["rx_bytes"]),
                n(&p["tx_packets"]),
                n(&p["tx_bytes"]),
                total,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", reasons.join(", "))
                },
                if pc.is_empty() {
                    String::new()
                } else {
                    format!("  [{}: {}]", s(&p["kind"]), pc.join(", "))
                }
            );
        }
        let workers: Vec<String> = sw["workers"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|w| {
                format!(
                    "w{} {} packets{}",
                    n(&w["id"]),
                    n(&w["packets"]),
                    if w["sleeping"].as_bool() == Some(true) {
                        " (sleeping)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let _ = writeln!(out, "  workers: {}", workers.join(", "));
        let mc: Vec<String> = sw["module_counters"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|c| format!("{} {}", s(&c[0]), n(&c[1])))
            .collect();
        if !mc.is_empty() {
            let _ = writeln!(out, "  module: {}", mc.join(", "));
        }
    }
    if out.is_empty() {
        "no switches\n".into()
    } else {
        out
    }
}

#[derive(Parser)]
#[command(name = "config", no_binary_name = true, disable_help_subcommand = true)]
struct ConfigLine {
    #[command(subcommand)]
    cmd: CtlCmd,
}

/// Parses a daemon config file: one `ctl` command per line (without the
/// `mswitch ctl` prefix), `#` starts a comment.
pub fn parse_config(text: &str, file: &str) -> Result<Vec<Request>, String> {
    Ok(parse_config_lines(text, file)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Like [`parse_config`], with each request's line number (from 1), so an
/// error carrying it out can name `FILE:LINE`.
pub fn parse_config_lines(text: &str, file: &str) -> Result<Vec<(usize, Request)>, String> {
    let mut reqs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let parsed = ConfigLine::try_parse_from(&words).map_err(|e| {
            let t = e.render().to_string();
            let first = t
                .lines()
                .next()
                .unwrap_or("invalid command")
                .trim_start_matches("error: ")
                .to_owned();
            format!("{file}:{}: {first}", i + 1)
        })?;
        reqs.push((i + 1, parsed.cmd.request()));
    }
    Ok(reqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_are_ctl_commands() {
        let r = parse_config("# two ports\ncreate sw0 --module dummy\nattach sw0 vport:a   # first\n\nattach sw0 vport:b --ofport 7 --vlan vlan_mode=native-untagged;tag=10\n", "f").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[2],
            Request::Attach {
                switch: "sw0".into(),
                spec: "vport:b".into(),
                ofport: Some(7),
                vlan: Some("vlan_mode=native-untagged;tag=10".into()),
            }
        );
        let l = parse_config_lines("# c\n\ncreate sw0\nattach sw0 vport:a\n", "f").unwrap();
        assert_eq!(l.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 4]);
        let e = parse_config("create sw0\nfrobnicate\n", "f.conf").unwrap_err();
        assert!(e.starts_with("f.conf:2: "), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn renders_for_people() {
        let list = serde_json::json!([{"switch":"sw0","module":"learn","workers":1,"busy_poll":false,
            "ports":[{"ofport":1,"name":"a","kind":"vport","connected":true}]}]);
        let t = CtlCmd::List { json: false }.render(&list);
        assert!(
            t.contains("sw0: module learn, 1 worker(s), 1 port(s)"),
            "{t}"
        );
        assert!(t.contains("client connected"));
        assert_eq!(
            CtlCmd::List { json: false }.render(&serde_json::json!([])),
            "no switches\n"
        );
        let stats = serde_json::json!([{"name":"sw0","module":"learn","module_counters":[],
            "workers":[{"id":0,"packets":5,"sleeping":true}],
            "ports":[{"id":1,"name":"vm1","kind":"vhost-user","rx_packets":5,"rx_bytes":320,
                "tx_packets":0,"tx_bytes":0,"drops":{"dest_full":0},
                "port_counters":[["bad_chains",2],["connects",1],["broken",0]]}]}]);
        let t = render_stats(&stats);
        assert!(
            t.contains("[vhost-user: bad_chains 2, connects 1]"),
            "the backend's counters, those above 0: {t}"
        );
    }
}
