//! Open vSwitch's unixctl protocol, so that `ovs-appctl` talks to `mswitch
//! vswitchd`: JSON-RPC requests (`{"method": "fdb/show", "params": ["br0"],
//! "id": 0}`) on a Unix socket (`$OVS_RUNDIR/ovs-vswitchd.PID.ctl`, which
//! `ovs-appctl -t ovs-vswitchd` finds through the pidfile), answered with
//! the text ovs-vswitchd prints, or an error string.
//!
//! Untrusted input with bounded resources: at most [`MAX_CLIENTS`]
//! connections at once, each with a read timeout and the framer's bound on
//! one message; a request that cannot be read closes only its connection.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::control::daemon::Daemon;
use crate::ovsdb::jsonrpc::{Framer, Msg};

/// Connections served at once.
pub const MAX_CLIENTS: usize = 16;

/// The commands served, as `list-commands` prints them.
const COMMANDS: &[(&str, &str)] = &[
    ("bridge/dump-flows", "bridge"),
    ("dpif/show", ""),
    ("dpif-netdev/pmd-stats-show", ""),
    ("exit", "[--cleanup]"),
    ("fdb/flush", "[bridge]"),
    ("fdb/show", "bridge"),
    ("list-commands", ""),
    ("memory/show", ""),
    ("ofproto/list", ""),
    ("version", ""),
    ("vlog/list", ""),
    ("vlog/reopen", ""),
    ("vlog/set", "{spec | PATTERN:destination:pattern}"),
];

/// Binds `path` and serves it on a thread of its own until the daemon stops.
pub fn start(d: Arc<Daemon>, path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    // Fixed mode whatever the umask: `ovs-appctl exit` is for root only.
    let l = crate::control::perms::bind_socket(path)?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("vswitchd-unixctl".into())
        .spawn(move || {
            for s in l.incoming() {
                if d.stopping() {
                    return;
                }
                let Ok(s) = s else { continue };
                if active.load(Ordering::Relaxed) >= MAX_CLIENTS {
                    continue; // dropped: the client sees its connection close
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (d, active) = (d.clone(), active.clone());
                let _ = std::thread::Builder::new()
                    .name("unixctl-client".into())
                    .spawn(move || {
                        serve(&d, s);
                        active.fetch_sub(1, Ordering::Relaxed);
                    });
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Answers one connection's requests until it closes or breaks.
fn serve(d: &Daemon, mut s: UnixStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut framer = Framer::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            let v = match framer.next_value() {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(_) => return,
            };
            let Some(Msg::Request { method, params, id }) = Msg::parse(v) else {
                return;
            };
            let args: Vec<String> = params
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let (result, error) = match command(d, &method, &args) {
                Ok(text) => (Value::String(text), Value::Null),
                Err(e) => (Value::Null, Value::String(e)),
            };
            let reply = Msg::Response { result, error, id }.to_json();
            if s.write_all(reply.to_string().as_bytes()).is_err() {
                return;
            }
            if method == "exit" {
                d.stop();
                return;
            }
        }
    }
}

/// One command's answer (the text `ovs-appctl` prints) or error.
fn command(d: &Daemon, method: &str, args: &[String]) -> Result<String, String> {
    let arg = |i: usize| args.get(i).map(String::as_str);
    match method {
        "version" => Ok(format!(
            "ovs-vswitchd (mswitch) {} (Open vSwitch 3.1 compatible)\n",
            env!("CARGO_PKG_VERSION")
        )),
        "list-commands" => {
            let mut out = String::from("The available commands are:\n");
            for (c, usage) in COMMANDS {
                let _ = writeln!(out, "  {c:<34}{usage}");
            }
            Ok(out)
        }
        "exit" => Ok(String::new()),
        "fdb/show" => {
            let br = arg(0).ok_or("usage: fdb/show bridge")?;
            let v = d.fdb(br, false)?;
            let mut out = String::from(" port  VLAN  MAC                Age\n");
            for e in v["entries"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let _ = writeln!(
                    out,
                    "{:>5}  {:>4}  {}  {:>3}",
                    e["port"].as_u64().unwrap_or(0),
                    e["vlan"].as_u64().unwrap_or(0),
                    e["mac"].as_str().unwrap_or("?"),
                    e["age"].as_u64().unwrap_or(0)
                );
            }
            Ok(out)
        }
        "fdb/flush" => {
            let names: Vec<String> = match arg(0) {
                Some(b) => vec![b.to_owned()],
                None => bridges(d),
            };
            for b in &names {
                d.fdb(b, true)?;
            }
            Ok("table successfully flushed\n".into())
        }
        "bridge/dump-flows" => {
            let br = arg(0).ok_or("usage: bridge/dump-flows bridge")?;
            let flows = d
                .flows(br)
                .map_err(|_| "Unknown bridge".to_owned())?;
            Ok(super::flows::dump(&flows))
        }
        "ofproto/list" => Ok(bridges(d).iter().map(|b| format!("{b}\n")).collect()),
        "dpif/show" => {
            let mut out = String::from("netdev@mswitch: hit:0 missed:0\n");
            for sw in d.list().as_array().map(Vec::as_slice).unwrap_or_default() {
                let _ = writeln!(out, "  {}:", sw["switch"].as_str().unwrap_or("?"));
                for p in sw["ports"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let id = p["ofport"].as_u64().unwrap_or(0);
                    let of = if p["local"] == true { 65534 } else { id };
                    let _ = writeln!(
                        out,
                        "    {} {of}/{id}: ({})",
                        p["name"].as_str().unwrap_or("?"),
                        p["kind"].as_str().unwrap_or("?")
                    );
                }
            }
            Ok(out)
        }
        "dpif-netdev/pmd-stats-show" => {
            let st = d.stats(None)?;
            let mut out = String::new();
            for sw in st.as_array().map(Vec::as_slice).unwrap_or_default() {
                let name = sw["name"].as_str().unwrap_or("?");
                for (i, w) in sw["workers"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
                    let _ = writeln!(out, "worker thread {name}/{i}:");
                    if let Some(o) = w.as_object() {
                        for (k, v) in o {
                            let _ = writeln!(out, "  {k}: {v}");
                        }
                    }
                }
            }
            Ok(out)
        }
        "memory/show" => {
            let rss = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
                })
                .unwrap_or_default();
            Ok(format!("bridges:{} rss:{rss}\n", bridges(d).len()))
        }
        "vlog/list" => Ok("                 console    syslog    file\n                 -------    ------    ------\nmswitch            INFO       INFO      INFO\n".into()),
        // Log levels are accepted; mswitch logs to standard error.
        "vlog/set" => Ok(String::new()),
        // What Debian's logrotate script asks after it moved the log away.
        "vlog/reopen" => crate::log::reopen_file().map(|()| String::new()),
        m => Err(format!("\"{m}\" is not a valid command (use \"list-commands\" to see a list of valid commands)")),
    }
}

/// The bridges (switches) the daemon runs.
fn bridges(d: &Daemon) -> Vec<String> {
    d.list()
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["switch"].as_str().map(str::to_owned))
        .collect()
}
