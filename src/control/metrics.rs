//! Prometheus text exposition of every counter (`--metrics ADDR:PORT` on
//! `daemon`, `run` and `vswitchd`): per switch, port, drop reason, worker
//! and module counter, served over plain HTTP at `/metrics`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::switch::{DROP_REASONS, SwitchStats};

/// Where `--metrics` listens: `PORT` (loopback), `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(p) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.parse()
        .map_err(|_| format!("--metrics '{s}': expected PORT or ADDR:PORT"))
}

/// One metric family being written: its HELP and TYPE lines come once.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Every counter of `switches` in Prometheus's text format (0.0.4).
pub fn exposition(switches: &[SwitchStats]) -> String {
    let mut out = String::new();
    type PortValue = fn(&crate::switch::PortTotals) -> u64;
    let port_counters: [(&str, &str, PortValue); 4] = [
        (
            "mswitch_port_rx_packets_total",
            "Frames the port received.",
            |t| t.rx_packets,
        ),
        (
            "mswitch_port_rx_bytes_total",
            "Bytes the port received.",
            |t| t.rx_bytes,
        ),
        (
            "mswitch_port_tx_packets_total",
            "Frames the switch sent out of the port.",
            |t| t.tx_packets,
        ),
        (
            "mswitch_port_tx_bytes_total",
            "Bytes the switch sent out of the port.",
            |t| t.tx_bytes,
        ),
    ];
    for (name, help, get) in port_counters {
        Family::head(&mut out, name, "counter", help);
        let mut f = Family { out: &mut out };
        for s in switches {
            for p in &s.ports {
                let of = p.id.to_string();
                f.sample(
                    name,
                    &[("switch", &s.name), ("port", &p.name), ("ofport", &of)],
                    get(&p.totals),
                );
            }
        }
    }
    let name = "mswitch_port_drops_total";
    Family::head(
        &mut out,
        name,
        "counter",
        "Frames dropped, by port and reason.",
    );
    let mut f = Family { out: &mut out };
    for s in switches {
        for p in &s.ports {
            for r in DROP_REASONS {
                f.sample(
                    name,
                    &[("switch", &s.name), ("port", &p.name), ("reason", r.name())],
                    p.totals.drops.get(r),
                );
            }
        }
    }
    let name = "mswitch_port_link_up";
    Family::head(
        &mut out,
        name,
        "gauge",
        "Whether the port can carry frames (1) or not (0).",
    );
    let mut f = Family { out: &mut out };
    for s in switches {
        for p in &s.ports {
            f.sample(
                name,
                &[("switch", &s.name), ("port", &p.name)],
                u8::from(p.link_up),
            );
        }
    }
    let name = "mswitch_port_backend_total";
    Family::head(
        &mut out,
        name,
        "counter",
        "The port backend's own counters.",
    );
    let mut f = Family { out: &mut out };
    for s in switches {
        for p in &s.ports {
            for (c, v) in &p.port_counters {
                f.sample(
                    name,
                    &[("switch", &s.name), ("port", &p.name), ("counter", c)],
                    v,
                );
            }
        }
    }
    let name = "mswitch_module_events_total";
    Family::head(
        &mut out,
        name,
        "counter",
        "The forwarding module's counters.",
    );
    let mut f = Family { out: &mut out };
    for s in switches {
        for (c, v) in &s.module_counters {
            f.sample(
                name,
                &[("switch", &s.name), ("module", s.module), ("counter", c)],
                v,
            );
        }
    }
    type WorkerValue = fn(&crate::switch::WorkerStats) -> String;
    let worker_counters: [(&str, &str, WorkerValue); 3] = [
        (
            "mswitch_worker_packets_total",
            "Frames the worker read from its ports.",
            |w| w.packets.to_string(),
        ),
        (
            "mswitch_worker_busy_seconds_total",
            "Time the worker spent moving frames.",
            |w| format!("{:.9}", w.busy_ns as f64 / 1e9),
        ),
        (
            "mswitch_worker_sleeps_total",
            "Times the worker slept with nothing to do.",
            |w| w.sleeps.to_string(),
        ),
    ];
    for (name, help, get) in worker_counters {
        Family::head(&mut out, name, "counter", help);
        let mut f = Family { out: &mut out };
        for s in switches {
            for w in &s.workers {
                let id = w.id.to_string();
                f.sample(name, &[("switch", &s.name), ("worker", &id)], get(w));
            }
        }
    }
    let name = "mswitch_packet_in_queued";
    Family::head(
        &mut out,
        name,
        "gauge",
        "Packet-ins waiting for the OpenFlow agent.",
    );
    let mut f = Family { out: &mut out };
    for s in switches {
        f.sample(name, &[("switch", &s.name)], s.packet_in_queued);
    }
    out
}

/// Serves `/metrics` on `addr` from a thread of its own, with what
/// `source` returns at each scrape. Requests are read with a bound and a
/// timeout, one connection at a time: a scraper or a port scanner cannot
/// hold the server, and nothing it sends reaches the switches.
pub fn serve(
    addr: SocketAddr,
    source: Arc<dyn Fn() -> Vec<SwitchStats> + Send + Sync>,
) -> Result<SocketAddr, String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?;
    let local = l.local_addr().map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("mswitch-metrics".into())
        .spawn(move || {
            for c in l.incoming().flatten() {
                answer(c, &*source);
            }
        })
        .map_err(|e| format!("metrics thread: {e}"))?;
    Ok(local)
}

fn answer(mut c: TcpStream, source: &dyn Fn() -> Vec<SwitchStats>) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = req.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            exposition(&source()),
        ),
        ("GET", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">mswitch metrics</a></body></html>\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = c
        .write_all(head.as_bytes())
        .and_then(|()| c.write_all(body.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(
            parse_addr("9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:9100").unwrap(),
            "[::1]:9100".parse().unwrap()
        );
        assert!(parse_addr("nine").unwrap_err().contains("--metrics 'nine'"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
