//! `--metrics`: every counter in Prometheus's text format, scraped by hand
//! and by a real Prometheus server; `mswitch top --once --json` on live
//! traffic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

struct Procs(Vec<Child>, PathBuf);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// GET `path` from 127.0.0.1:`port`; the body, if the answer is 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut b = Vec::new();
    s.read_to_end(&mut b).ok()?;
    let t = String::from_utf8_lossy(&b).into_owned();
    let (head, body) = t.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(p: &mut Procs, args: &[&str]) -> usize {
    let c = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mswitch");
    p.0.push(c);
    p.0.len() - 1
}

/// `mswitch pkt-gen` function `func` on port `port` of switch sw0.
fn pkt_gen(p: &mut Procs, ctl: &str, port: &str, func: &str, extra: &str) -> usize {
    let iface = format!("vport:sw0:{port}");
    let mut args = vec!["pkt-gen", "-i", &iface, "-f", func, "-T", "0", "--ctl", ctl];
    args.extend(extra.split_whitespace());
    spawn(p, &args)
}

#[test]
fn counters_reach_prometheus_and_top() {
    let dir = PathBuf::from(format!("/tmp/mswitch-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test directory");
    let mut p = Procs(Vec::new(), dir.clone());
    let ctl = dir.join("ctl.sock").display().to_string();
    let mport = free_port();
    let maddr = mport.to_string();
    spawn(
        &mut p,
        &[
            "run",
            "--module",
            "learn",
            "--port",
            "vport:a",
            "--port",
            "vport:b,ring=4096",
            "--ctl",
            &ctl,
            "--metrics",
            &maddr,
        ],
    );
    wait("the metrics endpoint", 20, || {
        get(mport, "/metrics").is_some()
    });

    const N: u64 = 1000;
    let rx = pkt_gen(&mut p, &ctl, "b", "rx", &format!("-n {N} -D 30"));
    std::thread::sleep(Duration::from_millis(200));
    let tx = pkt_gen(&mut p, &ctl, "a", "tx", &format!("-n {N} -R 10000 -D 30"));
    assert!(p.0[tx].wait().expect("tx").success());
    assert!(p.0[rx].wait().expect("rx").success());

    let want_rx =
        format!("mswitch_port_rx_packets_total{{switch=\"sw0\",port=\"a\",ofport=\"1\"}} {N}");
    let want_tx =
        format!("mswitch_port_tx_packets_total{{switch=\"sw0\",port=\"b\",ofport=\"2\"}} {N}");
    let mut body = String::new();
    wait("the counters", 10, || {
        body = get(mport, "/metrics").unwrap_or_default();
        body.contains(&want_rx) && body.contains(&want_tx)
    });
    for family in [
        "# TYPE mswitch_port_drops_total counter",
        "mswitch_port_drops_total{switch=\"sw0\",port=\"b\",reason=\"dest_full\"} 0",
        "# TYPE mswitch_worker_busy_seconds_total counter",
        "mswitch_module_events_total{switch=\"sw0\",module=\"learn\"",
        "mswitch_port_link_up{switch=\"sw0\",port=\"a\"} 1",
    ] {
        assert!(body.contains(family), "no {family} in:\n{body}");
    }
    assert!(get(mport, "/nothing").is_none(), "unknown paths are 404");

    // top: one reading over live traffic.
    let tx = pkt_gen(&mut p, &ctl, "a", "tx", "-R 20000 -D 30");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(BIN)
        .args([
            "top",
            "sw0",
            "--once",
            "--json",
            "--interval",
            "0.5",
            "--ctl",
            &ctl,
        ])
        .output()
        .expect("top");
    let _ = p.0[tx].kill();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("top's JSON");
    let a = &v[0]["ports"][0];
    assert_eq!(a["port"], "a");
    let pps = a["rx_pps"].as_f64().unwrap_or(0.0);
    assert!(pps > 1000.0, "rx rate of a: {pps} ({v})");
    assert!(v[0]["workers"][0]["busy"].as_f64().is_some(), "{v}");

    // A real Prometheus scraping the endpoint.
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped the Prometheus part: no prometheus (apt-get install prometheus)");
        return;
    }
    let pport = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mswitch\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .expect("prometheus.yml");
    let prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    p.0.push(prom);
    let query = "/api/v1/query?query=mswitch_port_tx_packets_total%7Bport%3D%22b%22%7D";
    let mut answer = String::new();
    wait("Prometheus to scrape mswitch", 60, || {
        answer = get(pport, query).unwrap_or_default();
        answer.contains("\"status\":\"success\"") && answer.contains("\"job\":\"mswitch\"")
    });
    let v: serde_json::Value = serde_json::from_str(&answer).expect("Prometheus's JSON");
    let val = v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(val >= N, "Prometheus saw tx_packets {val} on b: {answer}");
}
