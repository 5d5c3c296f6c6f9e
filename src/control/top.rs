//! `mswitch top [SWITCH]`: live per-port packet and bit rates in and out,
//! drops by reason and each worker's busy share, refreshed in place
//! (`--once --json` for scripts).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::Ctl;
use super::proto::Request;
use crate::switch::DROP_REASONS;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Only this switch (default: every switch of the daemon).
    pub switch: Option<String>,
    /// Seconds between readings.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// One reading (over one interval), then exit.
    #[arg(long)]
    pub once: bool,
    /// Print the rates as JSON (one object per reading).
    #[arg(long)]
    pub json: bool,
    /// Control socket path.
    #[arg(long)]
    pub ctl: Option<PathBuf>,
}

pub fn run(a: &TopArgs) -> Result<(), String> {
    if !(a.interval.is_finite() && (0.05..=3600.0).contains(&a.interval)) {
        return Err(format!(
            "--interval {}: expected 0.05 to 3600 seconds",
            a.interval
        ));
    }
    let mut ctl = Ctl::connect(a.ctl.as_deref())?;
    let req = Request::Stats {
        switch: a.switch.clone(),
    };
    let mut before = ctl.request(&req)?;
    let mut t0 = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs_f64(a.interval));
        // An interval past the daemon's --ctl-idle-timeout finds the
        // connection closed: one new connection, then errors are errors.
        let after = match ctl.request(&req) {
            Ok(v) => v,
            Err(_) => {
                ctl = Ctl::connect(a.ctl.as_deref())?;
                ctl.request(&req)?
            }
        };
        let t1 = Instant::now();
        let r = rates(&before, &after, t1.duration_since(t0).as_secs_f64());
        let text = if a.json { format!("{r}\n") } else { render(&r) };
        let mut o = std::io::stdout().lock();
        if !a.once && !a.json {
            // Home and clear: the table refreshes in place.
            let _ = o.write_all(b"\x1b[H\x1b[2J");
        }
        if o.write_all(text.as_bytes())
            .and_then(|()| o.flush())
            .is_err()
            || a.once
        {
            return Ok(());
        }
        (before, t0) = (after, t1);
    }
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Per-second rates between two `stats` answers `dt` seconds apart.
/// Ports and workers are matched by name and number; one that came or
/// went in between is shown from the later reading with no rates.
pub fn rates(before: &Value, after: &Value, dt: f64) -> Value {
    let empty = Vec::new();
    let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt;
    let mut out = Vec::new();
    for sw in after.as_array().unwrap_or(&empty) {
        let name = sw["name"].as_str().unwrap_or("?");
        let old = before
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .find(|s| s["name"].as_str() == Some(name))
            .unwrap_or(&Value::Null);
        let old_ports = old["ports"].as_array().unwrap_or(&empty);
        let ports: Vec<Value> = sw["ports"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|p| {
                let o = old_ports
                    .iter()
                    .find(|q| q["name"] == p["name"] && q["id"] == p["id"])
                    .unwrap_or(p);
                let mut drops = serde_json::Map::new();
                for r in DROP_REASONS {
                    let k = r.name();
                    let d = per_s(num(&o["drops"][k]), num(&p["drops"][k]));
                    if d > 0.0 {
                        drops.insert(k.into(), json!(d));
                    }
                }
                json!({
                    "port": p["name"],
                    "ofport": p["id"],
                    "link_up": p["link_up"],
                    "rx_pps": per_s(num(&o["rx_packets"]), num(&p["rx_packets"])),
                    "rx_bps": 8.0 * per_s(num(&o["rx_bytes"]), num(&p["rx_bytes"])),
                    "tx_pps": per_s(num(&o["tx_packets"]), num(&p["tx_packets"])),
                    "tx_bps": 8.0 * per_s(num(&o["tx_bytes"]), num(&p["tx_bytes"])),
                    "drops_per_s": drops,
                })
            })
            .collect();
        let old_workers = old["workers"].as_array().unwrap_or(&empty);
        let workers: Vec<Value> = sw["workers"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|w| {
                let o = old_workers.iter().find(|q| q["id"] == w["id"]).unwrap_or(w);
                let busy = per_s(num(&o["busy_ns"]), num(&w["busy_ns"])) / 1e9;
                json!({
                    "worker": w["id"],
                    "cpu": w["cpu"],
                    "busy": busy.min(1.0),
                    "pps": per_s(num(&o["packets"]), num(&w["packets"])),
                })
            })
            .collect();
        out.push(json!({
            "switch": name,
            "module": sw["module"],
            "seconds": dt,
            "ports": ports,
            "workers": workers,
        }));
    }
    Value::Array(out)
}

/// A rate with a unit prefix: 1.23M, 456k, 12.
fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The rates as a terminal table.
pub fn render(r: &Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for sw in r.as_array().map(Vec::as_slice).unwrap_or_default() {
        let _ = writeln!(
            s,
            "switch {} (module {}), over {:.1} s",
            sw["switch"].as_str().unwrap_or("?"),
            sw["module"].as_str().unwrap_or("?"),
            f(&sw["seconds"])
        );
        let _ = writeln!(
            s,
            "{:<16} {:>9} {:>10} {:>9} {:>10}  drops/s",
            "port", "rx pkt/s", "rx bit/s", "tx pkt/s", "tx bit/s"
        );
        for p in sw["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let drops: Vec<String> = p["drops_per_s"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k} {}", si(f(v)))).collect())
                .unwrap_or_default();
            let link = if p["link_up"] == json!(false) {
                " (down)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>10} {:>9} {:>10}  {}{link}",
                format!("{} {}", p["ofport"], p["port"].as_str().unwrap_or("?")),
                si(f(&p["rx_pps"])),
                si(f(&p["rx_bps"])),
                si(f(&p["tx_pps"])),
                si(f(&p["tx_bps"])),
                if drops.is_empty() {
                    "-".into()
                } else {
                    drops.join(", ")
                },
            );
        }
        for w in sw["workers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let cpu = w["cpu"]
                .as_u64()
                .map(|c| format!(" on CPU {c}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "worker {}{cpu}: {:.0}% busy, {} pkt/s",
                w["worker"],
                100.0 * f(&w["busy"]),
                si(f(&w["pps"]))
            );
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(rx: u64, busy: u64, dest_full: u64) -> Value {
        json!([{
            "name": "sw0", "module": "learn",
            "ports": [{"id": 1, "name": "a", "link_up": true, "rx_packets": rx, "rx_bytes": rx * 60,
                       "tx_packets": 0, "tx_bytes": 0,
                       "drops": {"dest_full": dest_full, "no_dest": 0, "module": 0, "bad_frame": 0, "oversize": 0}}],
            "workers": [{"id": 0, "cpu": null, "packets": rx, "busy_ns": busy}],
        }])
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let r = rates(&reading(1000, 0, 0), &reading(3000, 500_000_000, 10), 2.0);
        let p = &r[0]["ports"][0];
        assert_eq!(f(&p["rx_pps"]), 1000.0);
        assert_eq!(f(&p["rx_bps"]), 1000.0 * 60.0 * 8.0);
        assert_eq!(f(&p["drops_per_s"]["dest_full"]), 5.0);
        assert_eq!(f(&r[0]["workers"][0]["busy"]), 0.25);
        let t = render(&r);
        assert!(t.contains("1 a"), "{t}");
        assert!(t.contains("dest_full 5"), "{t}");
        assert!(t.contains("worker 0: 25% busy, 1.0k pkt/s"), "{t}");
    }

    #[test]
    fn a_port_that_came_meanwhile_has_no_rates_yet() {
        let before = json!([{"name": "sw0", "ports": [], "workers": []}]);
        let r = rates(&before, &reading(5000, 0, 0), 1.0);
        assert_eq!(f(&r[0]["ports"][0]["rx_pps"]), 0.0);
    }
}
