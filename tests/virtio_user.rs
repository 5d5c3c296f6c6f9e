//! virtio-user ports end to end: `mswitch pkt-gen` as the frontend (the
//! VM's side) of vhost-user ports of `mswitch run`, at a fixed rate:
//!
//!   pkt-gen -f tx  virtio-user:A,server  ==  vhost-user:A,client [switch]
//!   pkt-gen -f rx  virtio-user:B,server  ==  vhost-user:B,client [switch]
//!
//! Every frame sent arrives and every count agrees; the switch killed and
//! started again mid-stream costs the frames in flight and nothing else; a
//! virtio-user port attached to a running switch with `ctl attach` carries
//! traffic to a vhost-user pkt-gen; bad specs and paths fail with one line.
//! Each test has its own directory of sockets, removed on drop with every
//! process it started.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

/// Processes and sockets of one test.
struct Lab {
    dir: PathBuf,
    switch: Option<Child>,
    gens: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        let dir = std::env::temp_dir().join(format!("msw-vio-{}", common::unique_tag()));
        std::fs::create_dir_all(&dir).expect("test dir");
        Lab {
            dir,
            switch: None,
            gens: Vec::new(),
        }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
    }

    /// `mswitch run` with `ports`, logging to `switch.log` (appended to, so
    /// a restarted switch's lines follow the first one's).
    fn switch(&mut self, module: &str, ports: &[String]) {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--module", module, "--ctl", &self.path("ctl.sock")]);
        for p in ports {
            cmd.args(["--port", p]);
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("switch.log"))
            .expect("log");
        self.switch = Some(
            cmd.stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start mswitch run"),
        );
        common::wait_until("mswitch run to start", Duration::from_secs(10), || {
            self.ctl(&["list"]).is_ok()
        });
    }

    fn kill_switch(&mut self) {
        if let Some(mut c) = self.switch.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let c = self.path("ctl.sock");
        let mut v = vec![BIN, "ctl", "--ctl", &c];
        v.extend_from_slice(args);
        common::sh(&v)
    }

    /// (rx_packets, tx_packets, drops) of every port, by port number.
    fn counters(&self) -> Vec<(u64, u64, u64)> {
        let s = self.ctl(&["stats", "--json"]).expect("stats");
        let v: serde_json::Value = serde_json::from_str(&s).expect("stats json");
        let ports = v[0]["ports"].as_array().expect("ports").clone();
        ports
            .iter()
            .map(|p| {
                let d = &p["drops"];
                let drops = ["dest_full", "no_dest", "module", "bad_frame", "oversize"]
                    .iter()
                    .map(|k| d[k].as_u64().unwrap_or(0))
                    .sum();
                (
                    p["rx_packets"].as_u64().unwrap_or(0),
                    p["tx_packets"].as_u64().unwrap_or(0),
                    drops,
                )
            })
            .collect()
    }

    /// Starts `mswitch pkt-gen ARGS --json`; its stdout goes to NAME.out,
    /// its stderr to NAME.err. Returns its index for `finish`.
    fn pktgen(&mut self, name: &str, args: &[&str]) -> usize {
        let out = File::create(self.dir.join(format!("{name}.out"))).expect("out");
        let err = File::create(self.dir.join(format!("{name}.err"))).expect("err");
        let child = Command::new(BIN)
            .arg("pkt-gen")
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pkt-gen");
        self.gens.push(child);
        self.gens.len() - 1
    }

    /// Waits (at most `timeout`) for pkt-gen `i` to exit successfully and
    /// returns its summary.
    fn finish(&mut self, i: usize, name: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = self.gens[i].try_wait().expect("wait") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "pkt-gen {name} did not finish in {timeout:?}:\n{}\nswitch:\n{}",
                self.log(&format!("{name}.err")),
                self.log("switch.log")
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let err = self.log(&format!("{name}.err"));
        assert!(st.success(), "pkt-gen {name} failed ({st}):\n{err}");
        let out = self.log(&format!("{name}.out"));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {out}"))
    }

    fn wait_log(&self, f: &str, what: &str, timeout: Duration) {
        common::wait_until(&format!("'{what}' in {f}"), timeout, || {
            self.log(f).contains(what)
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.gens.iter_mut().chain(self.switch.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RATE: &str = "20000";

/// The receiver, then the switch (connecting to both sockets), then the
/// sender; the sender starts once the receiver's backend is there.
fn loop_up(lab: &mut Lab, n: u64, len: usize, rx_secs: u32) -> (usize, usize) {
    let (a, b) = (lab.path("a.sock"), lab.path("b.sock"));
    let n = n.to_string();
    let rx = lab.pktgen(
        "rx",
        &[
            "-i",
            &format!("virtio-user:{b},server"),
            "-f",
            "rx",
            "-n",
            &n,
            "-D",
            &rx_secs.to_string(),
        ],
    );
    lab.switch(
        "learn",
        &[
            format!("vhost-user:{a},client,name=vm1"),
            format!("vhost-user:{b},client,name=vm2"),
        ],
    );
    lab.wait_log("rx.err", "peer connected", Duration::from_secs(5));
    let tx = lab.pktgen(
        "tx",
        &[
            "-i",
            &format!("virtio-user:{a},server"),
            "-f",
            "tx",
            "-n",
            &n,
            "-R",
            RATE,
            "-l",
            &len.to_string(),
        ],
    );
    (rx, tx)
}

/// N frames of `len` bytes at a fixed rate: all of them arrive, and the
/// sender's, the switch's and the receiver's counts agree.
fn all_arrive(len: usize) {
    let _g = common::serial();
    let mut lab = Lab::new();
    let n = 20_000u64;
    let (rx, tx) = loop_up(&mut lab, n, len, 10);
    let t = lab.finish(tx, "tx", Duration::from_secs(10));
    let r = lab.finish(rx, "rx", Duration::from_secs(12));
    let c = lab.counters();
    eprintln!("{len} B: tx {t}\nrx {r}\nswitch {c:?}");
    assert_eq!(t["packets"], n, "the sender sent them all");
    assert_eq!(r["packets"], n, "the receiver got them all");
    assert_eq!(r["bytes"], n * len as u64, "at their length");
    assert_eq!(c[0], (n, 0, 0), "the switch read them from port 1");
    assert_eq!(c[1], (0, n, 0), "and sent them to port 2");
    // About 20000 frames/s: the rate limit holds through the switch.
    let pps = r["pps"].as_f64().unwrap();
    assert!((15_000.0..25_000.0).contains(&pps), "received at {pps} pps");
}

#[test]
fn frames_of_64_bytes_all_arrive_at_a_fixed_rate() {
    all_arrive(64);
}

#[test]
fn frames_of_1518_bytes_all_arrive_at_a_fixed_rate() {
    all_arrive(1518);
}

/// The switch (the backend of both pkt-gens) killed and started again
/// mid-stream: both frontends notice, take the new backend, and traffic
/// goes on; only what was in flight is lost.
#[test]
fn the_backend_killed_and_restarted_mid_stream() {
    let _g = common::serial();
    let mut lab = Lab::new();
    let n = 60_000u64; // 3 s at 20000/s
    let (rx, tx) = loop_up(&mut lab, n, 64, 5);
    std::thread::sleep(Duration::from_millis(1000));
    let before = lab.counters();
    lab.kill_switch();
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (lab.path("a.sock"), lab.path("b.sock"));
    lab.switch(
        "learn",
        &[
            format!("vhost-user:{a},client,name=vm1"),
            format!("vhost-user:{b},client,name=vm2"),
        ],
    );
    let t = lab.finish(tx, "tx", Duration::from_secs(10));
    let r = lab.finish(rx, "rx", Duration::from_secs(10));
    let after = lab.counters();
    eprintln!("restart: tx {t}\nrx {r}\nfirst switch {before:?}\nsecond {after:?}");
    assert_eq!(t["packets"], n, "the sender kept going to the end");
    for g in ["tx.err", "rx.err"] {
        assert!(lab.log(g).contains("backend gone"), "{g}: {}", lab.log(g));
    }
    // The second switch carried the rest of the stream (some of its first
    // burst, as the sender catches up with its rate, may not fit the
    // receiver's queue).
    let got = r["packets"].as_u64().unwrap();
    assert!(before[0].0 >= 10_000, "traffic before the kill: {before:?}");
    assert!(after[0].0 >= 30_000, "traffic after the restart: {after:?}");
    assert!(after[1].1 + after[1].2 >= after[0].0 - 512, "{after:?}");
    assert!(
        got >= before[1].1 + after[1].1 - 512 && got <= n,
        "received {got}: {before:?} then {after:?}"
    );
}

/// `ctl attach` of a virtio-user port to a running switch; its backend is
/// a vhost-user pkt-gen, so frames cross the switch into a virtio-user
/// port and out to a vhost-user one.
#[test]
fn a_virtio_user_port_attached_to_a_running_switch() {
    let _g = common::serial();
    let mut lab = Lab::new();
    let (a, b) = (lab.path("a.sock"), lab.path("b.sock"));
    let n = 5_000u64;
    let ns = n.to_string();
    let rx = lab.pktgen(
        "rx",
        &[
            "-i",
            &format!("vhost-user:{b}"),
            "-f",
            "rx",
            "-n",
            &ns,
            "-D",
            "8",
        ],
    );
    lab.switch("learn", &[format!("vhost-user:{a},client,name=vm1")]);
    let out = lab
        .ctl(&["attach", "sw0", &format!("virtio-user:{b},name=sw-b")])
        .expect("attach");
    assert!(out.contains("virtio-user"), "{out}");
    // Bad specs and paths are refused in one line; the switch goes on.
    File::create(lab.dir.join("plain")).unwrap();
    for (spec, want) in [
        (
            "virtio-user:/nonexistent-dir/x.sock".to_string(),
            "no directory",
        ),
        (
            format!("virtio-user:{},server", lab.path("plain")),
            "not a socket",
        ),
        (format!("virtio-user:{b},ring=100"), "power of two"),
        (format!("virtio-user:{b},queues=2"), "unknown port option"),
    ] {
        let e = lab.ctl(&["attach", "sw0", &spec]).unwrap_err();
        assert!(e.contains(want) && !e.trim().contains('\n'), "{spec}: {e}");
    }
    // The port has connected when the receiving pkt-gen's port runs.
    std::thread::sleep(Duration::from_millis(300));
    let tx = lab.pktgen(
        "tx",
        &[
            "-i",
            &format!("virtio-user:{a},server"),
            "-f",
            "tx",
            "-n",
            &ns,
            "-R",
            RATE,
            "-l",
            "128",
        ],
    );
    let t = lab.finish(tx, "tx", Duration::from_secs(10));
    let r = lab.finish(rx, "rx", Duration::from_secs(10));
    let c = lab.counters();
    eprintln!("attach: tx {t}\nrx {r}\nswitch {c:?}");
    assert_eq!(t["packets"], n);
    assert_eq!(r["packets"], n, "{}", lab.log("switch.log"));
    assert_eq!(c[0], (n, 0, 0));
    assert_eq!(c[1], (0, n, 0));
}

/// pkt-gen refuses bad virtio-user specs and paths with one line.
#[test]
fn pkt_gen_refuses_bad_specs_in_one_line() {
    let lab = Lab::new();
    let file = lab.path("plain");
    File::create(&file).unwrap();
    for (spec, want) in [
        (
            "virtio-user:/nonexistent-dir/x.sock,server".to_string(),
            "bind",
        ),
        (format!("virtio-user:{file},server"), "not a socket"),
        ("virtio-user:/tmp/".to_string(), "bad socket path"),
        ("virtio-user:/tmp/x,ring=3".to_string(), "power of two"),
        (
            "virtio-user:/tmp/x,client,server,bogus".to_string(),
            "unknown port option",
        ),
    ] {
        let e = common::sh(&[BIN, "pkt-gen", "-i", &spec, "-f", "rx", "-D", "1"]).unwrap_err();
        assert!(e.contains(want), "{spec}: {e}");
        let msg = e.split("failed: ").nth(1).unwrap_or(&e);
        assert!(!msg.contains('\n'), "{spec}: {e}");
    }
}
