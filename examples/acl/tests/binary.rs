//! The `mswitch-acl` binary end to end, as a user runs it: a daemon, a
//! switch created with the `acl` module, two ports attached by `pkt-gen`
//! (vports), UDP traffic through it, and the module's counters in `ctl
//! stats`; then the list swapped with `ctl module` while the switch runs.
//!
//! The daemon's socket is in a directory of this test's own, removed
//! afterwards with the daemon stopped, also on failure. No root needed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch-acl");

/// The daemon and its directory, both gone on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
    sock: String,
}

impl Daemon {
    fn start(test: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("mswitch-acl-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let sock = dir.join("ctl.sock").display().to_string();
        let child = Command::new(BIN)
            .args(["daemon", "--ctl", &sock])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mswitch-acl daemon");
        let d = Daemon { child, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.ctl(&["list"]).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// `mswitch-acl ctl ARGS`: standard output, or standard error's line.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ctl", "--ctl", &self.sock];
        v.extend_from_slice(args);
        run(&v)
    }

    /// `pkt-gen` from vport `a` to vport `b` of sw0 (both created on first
    /// use): `n` UDP frames to 10.0.0.2 with destination ports cycled
    /// through `dports`; returns (sent, received). It stops when all `n`
    /// came back or after `secs` (when the list drops some).
    fn txrx(&self, n: u64, dports: &str, secs: u32) -> (u64, u64) {
        let out = run(&[
            "pkt-gen",
            "--ctl",
            &self.sock,
            "-i",
            "vport:sw0:a",
            "--rx-interface",
            "vport:sw0:b",
            "-f",
            "txrx",
            "-n",
            &n.to_string(),
            "-R",
            "5000",
            "-D",
            &secs.to_string(),
            "-d",
            &format!("10.0.0.2:{dports}"),
            "-T",
            "0",
            "--json",
        ])
        .expect("pkt-gen");
        let line = out.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(line).expect("pkt-gen's JSON summary");
        (
            v["tx_packets"].as_u64().expect("tx_packets"),
            v["packets"].as_u64().expect("packets"),
        )
    }

    /// The `acl_*` counters of sw0, from `ctl stats --json`.
    fn counters(&self) -> Vec<(String, u64)> {
        let s = self.ctl(&["stats", "sw0", "--json"]).expect("stats");
        let v: serde_json::Value = serde_json::from_str(&s).expect("stats JSON");
        v[0]["module_counters"]
            .as_array()
            .expect("module_counters")
            .iter()
            .map(|c| {
                (
                    c[0].as_str().unwrap_or("").to_owned(),
                    c[1].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect()
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters()
            .into_iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no counter {name}"))
            .1
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[test]
fn modules_lists_acl_beside_the_built_in_ones() {
    let out = run(&["modules"]).expect("modules");
    for m in ["dummy", "learn", "flow", "demux", "acl"] {
        assert!(
            out.lines().any(|l| l.split_whitespace().next() == Some(m)),
            "{m} missing from: {out}"
        );
    }
    // A bad spec is one line from the binary's own parser.
    let e = run(&[
        "bench",
        "--module",
        "acl:rule=deny:gre",
        "--duration",
        "0.1",
    ])
    .unwrap_err();
    assert!(
        e.starts_with("mswitch: module acl: 'gre' is not a match"),
        "{e}"
    );
}

#[test]
fn filters_traffic_between_two_ports_and_swaps_its_rules() {
    let d = Daemon::start("filter");
    d.ctl(&[
        "create",
        "sw0",
        "--module",
        "acl:rule=deny:udp:9,rule=deny:tcp,default=permit",
    ])
    .expect("create with acl");
    // Destination ports 5..=12: one in eight is port 9, denied.
    let (sent, got) = d.txrx(800, "5-12", 5);
    assert_eq!(sent, 800);
    assert_eq!(got, 700, "{:?}", d.counters());
    assert_eq!(d.counter("acl_rules"), 2);
    assert_eq!(d.counter("acl_permitted"), 700);
    assert_eq!(d.counter("acl_denied"), 100);
    assert_eq!(d.counter("acl_default"), 700);
    assert_eq!(d.counter("acl_invalid"), 0);
    let text = d.ctl(&["stats", "sw0"]).expect("stats");
    assert!(text.contains("acl_denied 100"), "{text}");

    // Refused arguments: one line, and the switch keeps its list.
    let e = d
        .ctl(&["module", "sw0", "acl:rule=deny:udp:9-1"])
        .unwrap_err();
    assert_eq!(e, "mswitch: module acl: port range 9-1 is empty");
    assert_eq!(d.counter("acl_denied"), 100);

    // A new list while the ports stay attached: only udp 53 passes.
    d.ctl(&["module", "sw0", "acl:rule=permit:udp:53,default=deny"])
        .expect("swap");
    let (sent, got) = d.txrx(200, "52-53", 3);
    assert_eq!((sent, got), (200, 100), "{:?}", d.counters());
    assert_eq!(d.counter("acl_permitted"), 100);
    assert_eq!(d.counter("acl_denied"), 100);
    assert_eq!(d.counter("acl_default"), 100);
}
