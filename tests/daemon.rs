//! Multi-process tests of the daemon and its clients: `mswitch daemon`,
//! `mswitch run`, `mswitch ctl`, `mswitch pkt-gen` and the virtual-port client
//! library, all talking over a real control socket.
//!
//! Each test has its own directory and control socket, kills and reaps every
//! process it started (also when it fails, through [`Harness`]'s `Drop`), and
//! bounds every loop in count and time.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use mswitch::control::client::{Ctl, VportConn};
use mswitch::control::proto::{self, Request, VportInfo};
use mswitch::packet::{PortMem, Slot};
use mswitch::sys::Region;

/// Upper bound for anything that should take far less.
const LONG: Duration = Duration::from_secs(20);
/// How often polls look again.
const POLL: Duration = Duration::from_millis(5);

/// A process a test started.
struct Proc {
    what: String,
    child: Child,
}

/// A handle on one of a harness's processes.
#[derive(Clone, Copy, Debug)]
struct P(usize);

/// A test's directory, control socket and processes. Dropping it kills and
/// reaps every process still running and removes the directory.
struct Harness {
    dir: PathBuf,
    sock: PathBuf,
    procs: Vec<Option<Proc>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    fn new(test: &str) -> Harness {
        let mut base = std::env::temp_dir();
        // A socket path must fit in sockaddr_un (108 bytes).
        if base.as_os_str().len() > 48 {
            base = PathBuf::from("/tmp");
        }
        let dir = base.join(format!("mswitch-dt-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let sock = dir.join("ctl.sock");
        Harness {
            dir,
            sock,
            procs: Vec::new(),
        }
    }

    fn sock(&self) -> String {
        self.sock.to_str().expect("UTF-8 path").to_owned()
    }

    fn spawn(&mut self, what: &str, args: &[&str]) -> P {
        let child = Command::new(env!("CARGO_BIN_EXE_mswitch"))
            .args(args)
            .env_remove("MSWITCH_CTL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        self.procs.push(Some(Proc {
            what: what.to_owned(),
            child,
        }));
        P(self.procs.len() - 1)
    }

    fn proc(&mut self, p: P) -> &mut Proc {
        self.procs[p.0]
            .as_mut()
            .unwrap_or_else(|| panic!("process {p:?} was already reaped"))
    }

    fn pid(&mut self, p: P) -> libc::pid_t {
        self.proc(p).child.id() as libc::pid_t
    }

    fn running(&mut self, p: P) -> bool {
        let pr = self.proc(p);
        pr.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", pr.what))
            .is_none()
    }

    fn signal(&mut self, p: P, sig: libc::c_int) {
        let pid = self.pid(p);
        // SAFETY: kill(2) on a child we have not reaped yet (so the pid is ours).
        #[allow(unsafe_code)]
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig})");
    }

    /// Waits for `p` to exit, failing the test after `timeout` (the harness
    /// then kills it), and returns its output.
    fn wait_exit(&mut self, p: P, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        for _ in 0..=timeout.as_millis() {
            if !self.running(p) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.running(p) {
            panic!("{} did not exit within {timeout:?}", self.proc(p).what);
        }
        let pr = self.procs[p.0].take().expect("process");
        pr.child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("output of {}: {e}", pr.what))
    }

    /// Kills `p` with SIGKILL and reaps it.
    fn kill(&mut self, p: P) {
        let pr = self.proc(p);
        pr.child.kill().expect("kill");
        pr.child.wait().expect("reap");
        self.procs[p.0] = None;
    }

    /// Starts `mswitch pkt-gen -i IFACE -f FUNC -T 0 --ctl SOCK ARGS` (ARGS
    /// split on spaces).
    fn pkt_gen(&mut self, iface: &str, func: &str, args: &str) -> P {
        let sock = self.sock();
        let mut full = vec![
            "pkt-gen", "-i", iface, "-f", func, "-T", "0", "--ctl", &sock,
        ];
        full.extend(args.split_whitespace());
        self.spawn(&format!("pkt-gen -f {func} on {iface}"), &full)
    }

    /// Runs `mswitch ARGS` to completion (bounded) and returns its output.
    fn run(&mut self, args: &[&str]) -> Output {
        let p = self.spawn(&format!("mswitch {}", args.join(" ")), args);
        self.wait_exit(p, LONG)
    }

    /// Runs `mswitch ctl --ctl SOCK ARGS`.
    fn ctl(&mut self, args: &[&str]) -> Output {
        let sock = self.sock();
        let mut full = vec!["ctl", "--ctl", sock.as_str()];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// `mswitch ctl ARGS`, which must succeed; its stdout.
    fn ctl_ok(&mut self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "mswitch ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// `mswitch ctl ARGS`, which must fail with one line on stderr; the line.
    fn ctl_err(&mut self, args: &[&str]) -> String {
        let out = self.ctl(args);
        one_line_error(&out, &format!("mswitch ctl {args:?}"))
    }

    /// `mswitch ctl ARGS --json`, parsed.
    fn ctl_json(&mut self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.ctl_ok(&full);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {out}"))
    }

    /// Starts `mswitch daemon --ctl SOCK EXTRA` and waits until it answers.
    fn daemon(&mut self, extra: &[&str]) -> P {
        let sock = self.sock();
        let mut args = vec!["daemon", "--ctl", sock.as_str()];
        args.extend_from_slice(extra);
        let p = self.spawn("mswitch daemon", &args);
        self.wait_ready(p);
        p
    }

    /// Waits until the daemon (or `mswitch run`) `p` answers on the socket.
    fn wait_ready(&mut self, p: P) {
        let deadline = Instant::now() + LONG;
        for _ in 0..=LONG.as_millis() / POLL.as_millis() {
            if !self.running(p) {
                let out = self.wait_exit(p, POLL);
                panic!(
                    "the daemon exited early ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if self.request(&Request::List).is_ok() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.request(&Request::List)
            .unwrap_or_else(|e| panic!("the daemon does not answer: {e}"));
    }

    /// One request through the client library.
    fn request(&self, r: &Request) -> Result<Value, String> {
        Ctl::connect(Some(&self.sock))?.request(r)
    }

    fn connect(&self, switch: &str, port: &str) -> VportConn {
        VportConn::connect(Some(&self.sock), switch, port)
            .unwrap_or_else(|e| panic!("connecting to {switch}:{port}: {e}"))
    }

    /// The port's entry in `list`, if it is attached.
    fn port_entry(&self, switch: &str, port: &str) -> Option<Value> {
        let list = self.request(&Request::List).expect("list");
        let sw = list
            .as_array()?
            .iter()
            .find(|s| s["switch"] == switch)?
            .clone();
        sw["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == port)
            .cloned()
    }

    /// Waits until the port is attached with `connected == want`, or (for
    /// `None`) no longer attached.
    fn wait_connected(&self, switch: &str, port: &str, want: Option<bool>) {
        let state = || {
            self.port_entry(switch, port)
                .map(|p| p["connected"].as_bool())
        };
        let expect = want.map(Some);
        poll(
            &format!("port {switch}:{port} to be {want:?}"),
            LONG,
            || state() == expect,
        );
    }

    /// One port's counters from `stats`.
    fn port_stats(&self, switch: &str, port: &str) -> Value {
        let st = self
            .request(&Request::Stats {
                switch: Some(switch.into()),
            })
            .expect("stats");
        st[0]["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == port))
            .cloned()
            .unwrap_or_else(|| panic!("no port {port} in the stats of {switch}: {st}"))
    }

    /// A counter of one port: `rx_packets`, `tx_packets`, ... or `drops.REASON`.
    fn counter(&self, switch: &str, port: &str, key: &str) -> u64 {
        let p = self.port_stats(switch, port);
        let v = match key.split_once('.') {
            Some((a, b)) => &p[a][b],
            None => &p[key],
        };
        v.as_u64()
            .unwrap_or_else(|| panic!("no counter {key} in {p}"))
    }

    /// Waits until a counter reaches `want`, then checks it did not pass it.
    fn wait_counter(&self, switch: &str, port: &str, key: &str, want: u64) {
        poll(&format!("{switch}:{port} {key} = {want}"), LONG, || {
            self.counter(switch, port, key) >= want
        });
        assert_eq!(
            self.counter(switch, port, key),
            want,
            "{switch}:{port} {key}"
        );
    }

    fn drops(&self, switch: &str, port: &str) -> Value {
        self.port_stats(switch, port)["drops"].clone()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Polls `f` until it holds; fails the test after `timeout`.
fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    for _ in 0..=timeout.as_millis() / POLL.as_millis() {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    assert!(f(), "timed out after {timeout:?} waiting for {what}");
}

/// The failure of a command: non-zero exit, nothing on stdout, exactly one
/// line on stderr that starts with `mswitch: ` and says something.
fn one_line_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded; stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{what} printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("mswitch: "), "{what}: {:?}", lines[0]);
    assert!(
        lines[0].len() > "mswitch: ".len() + 8,
        "{what}: the message says nothing: {:?}",
        lines[0]
    );
    lines[0].to_owned()
}

/// The single JSON line a `pkt-gen --json` run printed.
fn summary(out: &Output, what: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stdout {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"))
}

fn assert_no_drops(d: &Value, what: &str) {
    for (k, v) in d.as_object().expect("drops object") {
        assert_eq!(v.as_u64(), Some(0), "{what}: {k} drops in {d}");
    }
}

/// Sets the flag when dropped, so a helper thread stops even when the test
/// fails before it says so.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Tagged two-way traffic between two virtual-port clients of a switch that
/// forwards one to the other and back: frames are numbered per direction and
/// checked on arrival (in order, none missing, none extra, byte for byte).
struct Pair {
    ends: [VportConn; 2],
    /// Each end's tag: its port number (also its MAC address, `common::mac`).
    tags: [u16; 2],
    sent: [u32; 2],
    /// Frames from end `i` received at the other end.
    got: [u32; 2],
}

impl Pair {
    fn new(a: VportConn, b: VportConn) -> Pair {
        let tags = [a.info.ofport, b.info.ofport];
        Pair {
            ends: [a, b],
            tags,
            sent: [0; 2],
            got: [0; 2],
        }
    }

    fn frame(&self, from: usize, seq: u32) -> Vec<u8> {
        let (s, d) = (self.tags[from], self.tags[1 - from]);
        common::frame(common::len_for(s, seq), s, common::mac(d), seq)
    }

    fn inflight(&self, i: usize) -> u32 {
        self.sent[i] - self.got[i]
    }

    fn send(&mut self, i: usize, max: u32) -> u32 {
        let frames: Vec<Vec<u8>> = (0..max).map(|k| self.frame(i, self.sent[i] + k)).collect();
        let n = self.ends[i].send(frames.iter().map(|f| f.as_slice())) as u32;
        self.sent[i] += n;
        n
    }

    /// Receives everything waiting at end `j` and checks each frame.
    fn recv(&mut self, j: usize) -> u32 {
        let i = 1 - j;
        let frames = self.ends[j].recv_all();
        for f in &frames {
            let (src, seq) = common::tag(f);
            assert_eq!(
                src, self.tags[i],
                "port {} got a stranger's frame",
                self.tags[j]
            );
            assert_eq!(
                seq, self.got[i],
                "port {}: frame from port {src} lost, duplicated or out of order",
                self.tags[j]
            );
            assert!(*f == self.frame(i, seq), "frame {src}#{seq} corrupted");
            self.got[i] += 1;
        }
        frames.len() as u32
    }

    /// Runs until `stop` is set and each direction carried at least `min`
    /// frames, then drains until nothing is in flight. At most `WINDOW`
    /// frames are in flight per direction, so no ring can overflow.
    /// `progress` counts frames received.
    fn run(&mut self, stop: &AtomicBool, min: u32, progress: &AtomicU64) {
        const WINDOW: u32 = 256;
        let deadline = Instant::now() + LONG;
        for _ in 0..100_000_000u64 {
            let sending = !(stop.load(Ordering::Relaxed) && self.sent.iter().all(|&s| s >= min));
            let mut moved = 0;
            for i in 0..2 {
                let room = WINDOW.saturating_sub(self.inflight(i)).min(64);
                if sending && room > 0 {
                    self.send(i, room);
                }
            }
            for j in 0..2 {
                moved += self.recv(j);
            }
            progress.fetch_add(u64::from(moved), Ordering::Relaxed);
            if !sending && self.inflight(0) == 0 && self.inflight(1) == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "traffic stalled: sent {:?}, received {:?}",
                self.sent,
                self.got
            );
            if moved == 0 {
                let j = if self.inflight(0) > 0 { 1 } else { 0 };
                let _ = self.ends[j].wait(Some(Duration::from_millis(1)));
            }
        }
        panic!("traffic loop ran out of iterations");
    }

    /// After `run`: the switch read every frame sent, delivered every frame
    /// received and dropped nothing on either port.
    fn check_counters(&self, h: &Harness, switch: &str) {
        let names = [
            self.ends[0].info.port.clone(),
            self.ends[1].info.port.clone(),
        ];
        for i in 0..2 {
            h.wait_counter(switch, &names[i], "rx_packets", u64::from(self.sent[i]));
            h.wait_counter(switch, &names[1 - i], "tx_packets", u64::from(self.got[i]));
        }
        for n in &names {
            assert_no_drops(&h.drops(switch, n), &format!("{switch}:{n}"));
        }
    }
}

/// Runs `pair` on a thread while `body` runs, waits for at least `min`
/// frames per direction and for the traffic to drain, and returns the pair.
fn with_traffic<R>(pair: Pair, min: u32, body: impl FnOnce(&AtomicU64) -> R) -> (Pair, R) {
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    std::thread::scope(|s| {
        let mut pair = pair;
        let t = s.spawn(|| {
            pair.run(&stop, min, &progress);
            pair
        });
        let r = {
            let _stop = StopOnDrop(&stop);
            body(&progress)
        };
        (t.join().expect("traffic thread"), r)
    })
}

/// Waits until `progress` moved by `n` from its value now.
fn wait_progress(progress: &AtomicU64, n: u64) {
    let from = progress.load(Ordering::Relaxed);
    poll("traffic to flow", LONG, || {
        progress.load(Ordering::Relaxed) >= from + n
    });
}

#[test]
fn pkt_gen_processes_exchange_every_packet() {
    let mut h = Harness::new("pktgen");
    let sock = h.sock();
    let run = h.spawn(
        "mswitch run",
        &[
            "run",
            "--module",
            "dummy",
            "--port",
            "vport:a",
            "--port",
            "vport:b,ring=4096",
            "--ctl",
            &sock,
        ],
    );
    h.wait_ready(run);

    const N: u64 = 20_000;
    let n = N.to_string();
    let rx = h.pkt_gen("vport:sw0:b", "rx", &format!("-n {n} -D 20 --json"));
    h.wait_connected("sw0", "b", Some(true));
    let list = h.ctl_json(&["list"]);
    let ports = &list[0]["ports"];
    assert_eq!(list[0]["switch"], "sw0");
    assert_eq!(list[0]["module"], "dummy");
    assert_eq!(ports[0]["name"], "a");
    assert_eq!(ports[0]["ofport"], 1);
    assert_eq!(ports[0]["connected"], false);
    assert_eq!(ports[1]["name"], "b");
    assert_eq!(ports[1]["ofport"], 2);
    assert_eq!(ports[1]["connected"], true);

    // 100 kpps: b's 4096-slot ring holds 40 ms of traffic, plenty for a
    // receiver on a busy machine.
    let tx = h.pkt_gen(
        "vport:sw0:a",
        "tx",
        &format!("-n {n} -R 100000 -D 20 --json"),
    );
    let txs = summary(&h.wait_exit(tx, LONG), "pkt-gen tx");
    assert_eq!(txs["function"], "tx");
    assert_eq!(txs["packets"], N);
    assert_eq!(txs["bytes"], N * 60);
    let rxs = summary(&h.wait_exit(rx, LONG), "pkt-gen rx");
    assert_eq!(rxs["function"], "rx");
    assert_eq!(rxs["packets"], N, "rx summary {rxs}");
    assert_eq!(rxs["bytes"], N * 60);

    // Both clients left: their ports are renewed (still attached, no
    // client) and keep their counters, which account for every packet.
    h.wait_connected("sw0", "a", Some(false));
    h.wait_connected("sw0", "b", Some(false));
    h.wait_counter("sw0", "a", "rx_packets", N);
    h.wait_counter("sw0", "b", "tx_packets", N);
    let st = h.ctl_json(&["stats", "sw0"]);
    let ports = st[0]["ports"].as_array().expect("ports");
    let (a, b) = (&ports[0], &ports[1]);
    assert_eq!(
        (a["name"].as_str(), b["name"].as_str()),
        (Some("a"), Some("b"))
    );
    assert_eq!(a["rx_packets"], N);
    assert_eq!(a["rx_bytes"], N * 60);
    assert_eq!(a["tx_packets"], 0);
    assert_eq!(b["tx_packets"], N);
    assert_eq!(b["tx_bytes"], N * 60);
    assert_eq!(b["rx_packets"], 0);
    assert_no_drops(&a["drops"], "port a");
    assert_no_drops(&b["drops"], "port b");
    assert_no_drops(&st[0]["drops"], "switch");

    // Ping-pong: one frame in flight at a time, every one answered.
    let pong = h.pkt_gen("vport:sw0:b", "pong", "-n 200 -D 20 --json");
    h.wait_connected("sw0", "b", Some(true));
    let ping = h.pkt_gen("vport:sw0:a", "ping", "-n 200 -D 20 --json");
    let ps = summary(&h.wait_exit(ping, LONG), "pkt-gen ping");
    assert_eq!(ps["function"], "ping");
    assert_eq!(ps["packets"], 200, "ping summary {ps}");
    assert_eq!(ps["lost"], 0, "ping summary {ps}");
    let rtt = |k: &str| {
        ps[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in ping summary {ps}"))
    };
    let (p50, p99, max) = (rtt("rtt_p50_ns"), rtt("rtt_p99_ns"), rtt("rtt_max_ns"));
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "rtt {p50} {p99} {max}");
    assert!(max < 1_000_000_000, "a round trip took {max} ns");
    let pos = summary(&h.wait_exit(pong, LONG), "pkt-gen pong");
    assert_eq!(pos["function"], "pong");
    assert_eq!(pos["packets"], 200);

    h.signal(run, libc::SIGTERM);
    let out = h.wait_exit(run, LONG);
    assert!(out.status.success(), "mswitch run: {}", out.status);
    assert!(!h.sock.exists(), "the control socket was left behind");
}

#[test]
fn attach_and_detach_from_the_cli_while_traffic_flows() {
    let mut h = Harness::new("attach");
    let d = h.daemon(&[]);
    h.ctl_ok(&["create", "sw", "--module", "learn"]);
    h.ctl_ok(&["attach", "sw", "vport:a"]);
    h.ctl_ok(&["attach", "sw", "vport:b"]);
    let pair = Pair::new(h.connect("sw", "a"), h.connect("sw", "b"));
    let (pair, ()) = with_traffic(pair, 2000, |progress| {
        for i in 1..=8 {
            wait_progress(progress, 100);
            let x = format!("x{i}");
            let out = h.ctl_ok(&["attach", "sw", &format!("vport:{x},ring=64")]);
            assert_eq!(out, format!("attached vport {x} to sw as port 3\n"));
            wait_progress(progress, 100);
            // Alternately by name and by number.
            let by = if i % 2 == 0 { "3" } else { x.as_str() };
            let out = h.ctl_ok(&["detach", "sw", by]);
            assert_eq!(out, format!("detached {x} (port 3) from sw\n"));
        }
    });
    assert!(pair.sent.iter().all(|&s| s >= 2000));
    pair.check_counters(&h, "sw");
    let list = h.ctl_json(&["list"]);
    let names: Vec<&str> = list[0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(h.running(d));
}

#[test]
fn module_swaps_while_traffic_flows_lose_nothing() {
    let mut h = Harness::new("module");
    let d = h.daemon(&[]);
    h.ctl_ok(&["create", "sw", "--module", "dummy"]);
    // Ports created on demand by their clients: numbers 1 and 2.
    let pair = Pair::new(h.connect("sw", "a"), h.connect("sw", "b"));
    assert_eq!(pair.tags, [1, 2]);
    let (pair, ()) = with_traffic(pair, 2000, |progress| {
        for m in ["learn", "dummy", "learn:max=64", "dummy:1=2,2=1", "learn"] {
            wait_progress(progress, 200);
            let out = h.ctl_ok(&["module", "sw", m]);
            assert_eq!(out, format!("switch sw now runs module {m}\n"));
        }
        wait_progress(progress, 200);
    });
    pair.check_counters(&h, "sw");
    let list = h.ctl_json(&["list"]);
    assert_eq!(list[0]["module"], "learn");
    assert!(h.running(d));
}

#[test]
fn killed_client_leaves_a_renewed_port_and_traffic_goes_on() {
    let mut h = Harness::new("kill");
    let d = h.daemon(&[]);
    h.ctl_ok(&["create", "sw", "--module", "dummy"]);
    for spec in ["vport:a", "vport:b,ring=4096", "vport:c", "vport:d"] {
        h.ctl_ok(&["attach", "sw", spec]);
    }
    let pair = Pair::new(h.connect("sw", "c"), h.connect("sw", "d"));
    let (pair, ()) = with_traffic(pair, 2000, |progress| {
        let rx = h.pkt_gen("vport:sw:b", "rx", "-D 20 --json");
        h.wait_connected("sw", "b", Some(true));
        let tx = h.pkt_gen("vport:sw:a", "tx", "-R 50000 -D 20");
        poll("tx to get going", LONG, || {
            h.port_entry("sw", "a")
                .is_some_and(|p| p["connected"] == true)
                && h.counter("sw", "a", "rx_packets") >= 1000
        });
        h.kill(tx);

        // The daemon survives and renews the port; nothing the switch read
        // from the dead client is lost.
        h.wait_connected("sw", "a", Some(false));
        assert!(h.running(d), "the daemon died with its client");
        let from_dead = h.counter("sw", "a", "rx_packets");
        assert!(from_dead >= 1000);
        wait_progress(progress, 200);

        // A new client takes the same port (same number) and is heard.
        let mut a2 = h.connect("sw", "a");
        assert_eq!(a2.info.ofport, 1);
        h.wait_connected("sw", "a", Some(true));
        let frames: Vec<Vec<u8>> = (0..100)
            .map(|s| common::frame(60, 1, common::mac(2), s))
            .collect();
        common::send_all(&mut a2, &frames, LONG);
        h.wait_counter("sw", "a", "rx_packets", from_dead + 100);
        drop(a2);
        h.wait_connected("sw", "a", Some(false));

        // The receiver got exactly what the switch read from port a.
        h.signal(rx, libc::SIGTERM);
        let rxs = summary(&h.wait_exit(rx, LONG), "pkt-gen rx");
        assert_eq!(rxs["packets"], from_dead + 100, "rx summary {rxs}");
        h.wait_counter("sw", "b", "tx_packets", from_dead + 100);
        assert_no_drops(&h.drops("sw", "a"), "port a");
        assert_no_drops(&h.drops("sw", "b"), "port b");

        // Ports created on demand by a client go away with it: a library
        // client that closes, and a pkt-gen that is killed.
        let od = h.connect("sw", "od1");
        let e = h.port_entry("sw", "od1").expect("od1 is listed");
        assert_eq!(e["connected"], true);
        assert_eq!(e["kind"], "vport");
        assert_eq!(e["ofport"], 5);
        drop(od);
        h.wait_connected("sw", "od1", None);
        let od2 = h.pkt_gen("vport:sw:od2", "rx", "-D 20");
        h.wait_connected("sw", "od2", Some(true));
        h.kill(od2);
        h.wait_connected("sw", "od2", None);
        wait_progress(progress, 200);
    });
    pair.check_counters(&h, "sw");
    assert!(h.running(d));
}

/// A client's end of a virtual port built by hand from the protocol, with
/// the raw descriptors, for misbehaving on purpose.
struct RawPort {
    mem: PortMem,
    memfd: RawFd,
    inbell: OwnedFd,
    outbell: OwnedFd,
    info: VportInfo,
    _conn: UnixStream,
}

fn raw_connect(sock: &Path, switch: &str, port: &str) -> RawPort {
    let mut conn = UnixStream::connect(sock).expect("connect");
    let mut line = serde_json::to_string(&Request::VportConnect {
        switch: switch.into(),
        port: port.into(),
    })
    .unwrap();
    line.push('\n');
    conn.write_all(line.as_bytes()).expect("request");
    let (resp, fds) = proto::read_answer(&conn).expect("answer");
    assert!(resp.ok, "vport-connect: {:?}", resp.error);
    let info: VportInfo = serde_json::from_value(resp.data).expect("info");
    let [memfd, inbell, outbell]: [OwnedFd; 3] = fds.try_into().expect("three descriptors");
    let raw = memfd.as_raw_fd();
    let region = Region::map(memfd, info.region_len).expect("map");
    let mem = PortMem::from_region(region).expect("port memory");
    RawPort {
        mem,
        memfd: raw,
        inbell,
        outbell,
        info,
        _conn: conn,
    }
}

/// write(2) of one u64, ignoring the outcome.
#[allow(unsafe_code)]
fn write_u64(fd: RawFd, v: u64) -> isize {
    // SAFETY: writes 8 bytes from a live u64.
    unsafe { libc::write(fd, (&raw const v).cast(), 8) }
}

/// Reads whatever is waiting on a non-blocking descriptor.
#[allow(unsafe_code)]
fn drain_fd(fd: RawFd) {
    let mut buf = [0u8; 256];
    for _ in 0..1000 {
        // SAFETY: reads at most buf.len() bytes into a live buffer.
        if unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } <= 0 {
            break;
        }
    }
}

#[allow(unsafe_code)]
fn set_blocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
    }
}

#[allow(unsafe_code)]
fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

#[test]
fn hostile_client_cannot_hurt_the_daemon_or_other_ports() {
    let mut h = Harness::new("hostile");
    let d = h.daemon(&[]);
    h.ctl_ok(&["create", "sw", "--module", "dummy"]);
    for p in ["a", "b", "h", "g"] {
        h.ctl_ok(&["attach", "sw", &format!("vport:{p}")]);
    }
    // dummy pairs 1<->2 (a, b: well behaved) and 3<->4 (h: hostile, g: its peer).
    let pair = Pair::new(h.connect("sw", "a"), h.connect("sw", "b"));
    let mut g = h.connect("sw", "g");
    let hp = raw_connect(&h.sock, "sw", "h");
    assert_eq!(hp.info.ofport, 3);
    let (pair, ()) = with_traffic(pair, 3000, |progress| {
        let mem = &hp.mem;
        let inc = mem.incoming();
        let out = mem.outgoing();
        let (nbufs, bsize) = (mem.nbufs(), mem.buf_size());
        let ring_bell = || {
            write_u64(hp.inbell.as_raw_fd(), 1);
        };
        let good = |seq: u32| common::frame(60, 3, common::mac(4), seq);
        let put_good = |at: u32, seq: u32| {
            let s = inc.slot(at);
            assert!(mem.write_buf(s.buf, &good(seq)));
            inc.write_slot(
                at,
                Slot {
                    buf: s.buf,
                    len: 60,
                    flags: 0,
                },
            );
        };
        let expect_at_g = |g: &mut VportConn, seq: u32| {
            let got = common::recv_n(g, 1, LONG);
            assert!(got[0] == good(seq), "g got {:?}", common::tag(&got[0]));
        };

        // 1. Garbage slots inside a valid head: each one a bad_frame drop,
        //    and the good frame among them still goes through.
        let head = inc.hdr.head.load(Ordering::Acquire);
        let bad = [
            Slot {
                buf: nbufs,
                len: 60,
                flags: 0,
            },
            Slot {
                buf: u32::MAX,
                len: 60,
                flags: 0,
            },
            Slot {
                buf: 0,
                len: 0,
                flags: 0,
            },
            Slot {
                buf: 1,
                len: (bsize + 1) as u16,
                flags: 0,
            },
            Slot {
                buf: 2,
                len: u16::MAX,
                flags: 0xffff,
            },
        ];
        for (k, s) in bad.iter().enumerate() {
            inc.write_slot(head + k as u32, *s);
        }
        put_good(head + 5, 0);
        inc.publish(head + 6);
        ring_bell();
        h.wait_counter("sw", "h", "rx_packets", 6);
        h.wait_counter("sw", "h", "drops.bad_frame", 5);
        expect_at_g(&mut g, 0);
        let mut cur = head + 6;

        // 2. A head more than a ring ahead, or behind the switch: ignored.
        for garbage in [cur + 100_000, cur.wrapping_sub(1), cur + inc.size() + 1] {
            inc.publish(garbage);
            ring_bell();
            wait_progress(progress, 300);
            assert_eq!(h.counter("sw", "h", "rx_packets"), 6, "head {garbage}");
        }
        // Back to sense: the port works again.
        put_good(cur, 1);
        cur += 1;
        inc.publish(cur);
        ring_bell();
        expect_at_g(&mut g, 1);
        h.wait_counter("sw", "h", "rx_packets", 7);

        // 3. Outgoing ring: a garbage tail (ahead of the switch, or far
        //    behind) leaves no room: what is sent to h is dest_full.
        let ohead = out.hdr.head.load(Ordering::Acquire);
        let gframes = |from: u32, n: u32| -> Vec<Vec<u8>> {
            (from..from + n)
                .map(|s| common::frame(60, 4, common::mac(3), s))
                .collect()
        };
        out.release(ohead + 12_345);
        common::send_all(&mut g, &gframes(0, 10), LONG);
        h.wait_counter("sw", "h", "drops.dest_full", 10);
        out.release(ohead.wrapping_sub(5000));
        common::send_all(&mut g, &gframes(10, 3), LONG);
        h.wait_counter("sw", "h", "drops.dest_full", 13);
        // A sane tail, but slots naming buffers that do not exist: the
        // switch publishes empty slots and counts bad_frame.
        out.release(ohead);
        for i in 0..out.size() {
            out.write_slot(
                i,
                Slot {
                    buf: u32::MAX - i,
                    len: 7,
                    flags: 0,
                },
            );
        }
        common::send_all(&mut g, &gframes(13, 5), LONG);
        h.wait_counter("sw", "h", "drops.bad_frame", 10);
        assert_eq!(h.counter("sw", "h", "tx_packets"), 0);
        poll("empty slots published to h", LONG, || {
            out.hdr.head.load(Ordering::Acquire) == ohead + 5
        });
        for i in 0..5 {
            assert_eq!(out.slot(ohead + i).len, 0);
        }
        h.wait_counter("sw", "g", "rx_packets", 18);

        // 4. Doorbell spam and wake-up flags set where they do not belong.
        for _ in 0..10_000 {
            if write_u64(hp.inbell.as_raw_fd(), 1) != 8 {
                break;
            }
        }
        write_u64(hp.outbell.as_raw_fd(), 1);
        inc.hdr.need_wakeup.store(1, Ordering::Relaxed);
        out.hdr.need_wakeup.store(1, Ordering::Relaxed);
        inc.hdr.tail.store(0xdead_beef, Ordering::Relaxed);
        wait_progress(progress, 300);

        // 5. Doorbells made blocking, and an outgoing doorbell made full: the
        //    switch must never block on them (neither when it rings h nor
        //    when it lets go of h's port).
        let first_out_buf = mem.config().incoming_slots;
        for i in 0..out.size() {
            out.write_slot(
                i,
                Slot {
                    buf: first_out_buf + i,
                    len: 0,
                    flags: 0,
                },
            );
        }
        out.hdr.need_wakeup.store(0, Ordering::Relaxed);
        drain_fd(hp.outbell.as_raw_fd());
        set_blocking(hp.outbell.as_raw_fd());
        set_blocking(hp.inbell.as_raw_fd());
        write_u64(hp.outbell.as_raw_fd(), u64::MAX - 1);
        out.release(out.hdr.head.load(Ordering::Acquire));
        out.hdr.need_wakeup.store(1, Ordering::Relaxed);
        common::send_all(&mut g, &gframes(18, 5), LONG);
        h.wait_counter("sw", "g", "rx_packets", 23);
        h.wait_counter("sw", "h", "tx_packets", 5);
        wait_progress(progress, 300);

        // 6. Shrinking the shared memory under the switch.
        // SAFETY: ftruncate on our own descriptor; this process does not
        // touch the mapping afterwards.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::ftruncate(hp.memfd, 0) };
        wait_progress(progress, 300);
        assert!(
            h.request(&Request::List).is_ok(),
            "the daemon stopped answering"
        );
    });
    // The hostile client leaves; its port is renewed for the next client and
    // keeps its counters.
    set_nonblocking(hp.inbell.as_raw_fd());
    let h_drops = h.drops("sw", "h");
    drop(hp);
    h.wait_connected("sw", "h", Some(false));
    assert!(h.running(d), "the daemon died");
    pair.check_counters(&h, "sw");
    assert_eq!(h_drops["bad_frame"], 10);
    assert_eq!(h.drops("sw", "h")["bad_frame"], 10);
    let mut h2 = h.connect("sw", "h");
    let f = common::frame(60, 3, common::mac(4), 99);
    common::send_all(&mut h2, std::slice::from_ref(&f), LONG);
    let got = common::recv_n(&mut g, 1, LONG);
    assert!(got[0] == f);
    h.wait_counter("sw", "h", "rx_packets", 8);
}

#[test]
fn a_detached_port_s_old_client_leaving_leaves_its_successor_alone() {
    let mut h = Harness::new("successor");
    let d = h.daemon(&[]);
    h.ctl_ok(&["create", "sw", "--module", "dummy"]);
    h.ctl_ok(&["attach", "sw", "vport:p"]);
    h.ctl_ok(&["attach", "sw", "vport:q"]);
    // A port attached by ctl: detached while its client is connected, then
    // attached again and taken by a new client.
    let old_p = h.connect("sw", "p");
    h.ctl_ok(&["detach", "sw", "p"]);
    h.ctl_ok(&["attach", "sw", "vport:p", "--ofport", "1"]);
    let new_p = h.connect("sw", "p");
    // A port created on demand: the same story.
    let old_o = h.connect("sw", "o");
    h.ctl_ok(&["detach", "sw", "o"]);
    let new_o = h.connect("sw", "o");
    assert_eq!(new_o.info.ofport, 3);
    drop(old_p);
    drop(old_o);
    // Give the daemon time to see both connections close.
    std::thread::sleep(Duration::from_millis(300));
    for port in ["p", "o"] {
        let e = h
            .port_entry("sw", port)
            .unwrap_or_else(|| panic!("{port} is gone"));
        assert_eq!(e["connected"], true, "{port}: {e}");
    }
    // And the new client of p is still wired to the switch.
    let q = h.connect("sw", "q");
    let pair = Pair::new(new_p, q);
    let (pair, ()) = with_traffic(pair, 500, |_| ());
    pair.check_counters(&h, "sw");
    drop(new_o);
    h.wait_connected("sw", "o", None);
    assert!(h.running(d));
}

#[test]
fn ctl_errors_are_one_line_and_output_is_readable() {
    let mut h = Harness::new("errors");

    // No daemon.
    for args in [&["list"][..], &["create", "sw"], &["stats", "--json"]] {
        let e = h.ctl_err(args);
        assert!(e.contains("no mswitch daemon"), "{e}");
    }
    let p = h.pkt_gen("vport:sw:p", "rx", "-D 1");
    let e = one_line_error(&h.wait_exit(p, LONG), "pkt-gen without a daemon");
    assert!(e.contains("no mswitch daemon"), "{e}");

    let d = h.daemon(&[]);
    assert_eq!(h.ctl_ok(&["list"]), "no switches\n");
    h.ctl_ok(&["create", "sw", "--module", "dummy"]);
    h.ctl_ok(&["attach", "sw", "vport:a"]);

    let cases: &[(&[&str], &str)] = &[
        (&["attach", "nosuch", "vport:x"], "no switch 'nosuch'"),
        (&["detach", "nosuch", "a"], "no switch 'nosuch'"),
        (&["destroy", "nosuch"], "no switch 'nosuch'"),
        (&["module", "nosuch", "learn"], "no switch 'nosuch'"),
        (&["stats", "nosuch"], "no switch 'nosuch'"),
        (&["create", "sw"], "already exists"),
        (&["create", "a/b"], "bad switch name"),
        (&["attach", "sw", "vport:a"], "already attached"),
        (&["attach", "sw", "bogus"], "bad port spec"),
        (&["attach", "sw", "vport:x,ring=3"], "ring size 3"),
        (&["attach", "sw", "vport:x,buf=100"], "buffer size 100"),
        (&["attach", "sw", "vport:x,foo=1"], "unknown port option"),
        (&["attach", "sw", "bogus:x"], "unknown port kind"),
        (&["attach", "sw", "vport:"], "bad port name"),
        (
            &["attach", "sw", "vport:x", "--ofport", "1"],
            "already in use",
        ),
        (
            &["attach", "sw", "vport:x", "--ofport", "5000"],
            "out of range",
        ),
        (
            &["attach", "sw", "vport:x", "--ofport", "0"],
            "out of range",
        ),
        (
            &["create", "sw2", "--module", "nope"],
            "unknown module 'nope'",
        ),
        (&["create", "sw2", "--workers", "0"], "workers"),
        (&["module", "sw", "nope"], "unknown module 'nope'"),
        (&["module", "sw", "learn:bogus=1"], "learn"),
        (&["detach", "sw", "nosuch"], "no port 'nosuch'"),
        (&["detach", "sw", "99"], "no port '99'"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, want) in cases {
        let e = h.ctl_err(args);
        assert!(
            e.contains(want),
            "ctl {args:?}: {e:?} does not say {want:?}"
        );
    }
    for (iface, want) in [
        ("vport:nosuch:p", "no switch 'nosuch'"),
        ("bogus", "bad port spec"),
        ("vport:sw:bad/name", "bad port name"),
    ] {
        let p = h.pkt_gen(iface, "rx", "-n 1 -D 1");
        let e = one_line_error(&h.wait_exit(p, LONG), &format!("pkt-gen -i {iface}"));
        assert!(e.contains(want), "pkt-gen -i {iface}: {e}");
    }
    let a = h.connect("sw", "a");
    let p = h.pkt_gen("vport:sw:a", "rx", "-n 1 -D 1");
    let e = one_line_error(&h.wait_exit(p, LONG), "pkt-gen on a taken port");
    assert!(e.contains("already has a client"), "{e}");
    assert!(
        VportConn::connect(Some(&h.sock), "sw", "a")
            .err()
            .is_some_and(|e| e.contains("already has a client"))
    );
    drop(a);

    // Nothing the failures touched changed.
    h.wait_connected("sw", "a", Some(false));
    let list = h.ctl_json(&["list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["module"], "dummy");
    assert_eq!(list[0]["ports"].as_array().map(Vec::len), Some(1), "{list}");

    // The daemon answers junk on its socket with an error line and goes on.
    let mut c = UnixStream::connect(&h.sock).expect("connect");
    for (line, want_ok) in [
        ("hello\n", false),
        ("{\"cmd\":\"explode\"}\n", false),
        ("{\"cmd\":\"list\"}\n", true),
    ] {
        c.write_all(line.as_bytes()).expect("write");
        let (r, fds) = proto::read_answer(&c).expect("answer");
        assert_eq!(r.ok, want_ok, "{r:?}");
        assert!(fds.is_empty());
    }
    drop(c);

    // Output for people: names and column headers.
    h.ctl_ok(&["attach", "sw", "vport:bee", "--ofport", "7"]);
    let list = h.ctl_ok(&["list"]);
    assert!(
        list.contains("sw: module dummy, 1 worker(s), 2 port(s)"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains(" a ") && l.contains("vport") && l.contains("no client")),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.contains("7") && l.contains("bee")),
        "{list}"
    );
    let stats = h.ctl_ok(&["stats"]);
    assert!(stats.starts_with("sw: module dummy\n"), "{stats}");
    for col in [
        "port",
        "name",
        "rx packets",
        "rx bytes",
        "tx packets",
        "tx bytes",
        "drops",
    ] {
        assert!(
            stats.lines().nth(1).is_some_and(|l| l.contains(col)),
            "no column {col}: {stats}"
        );
    }
    assert!(stats.contains(" a ") && stats.contains(" bee "), "{stats}");
    assert!(stats.contains("workers: w0"), "{stats}");
    assert!(h.ctl_ok(&["stats", "sw"]).starts_with("sw: module dummy\n"));
    h.ctl_ok(&["destroy", "sw"]);
    assert_eq!(h.ctl_ok(&["list"]), "no switches\n");
    assert_eq!(h.ctl_ok(&["stats"]), "no switches\n");

    // Control connections do not pile up in the daemon.
    let pid = h.pid(d);
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();
    for _ in 0..100 {
        h.request(&Request::List).expect("list");
    }
    poll("the daemon to close finished connections", LONG, || {
        fds() < before + 10
    });
}

#[test]
fn daemon_lifecycle_signals_stale_sockets_and_config_files() {
    let mut h = Harness::new("life");
    let sock = h.sock();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let d = h.daemon(&[]);
        h.ctl_ok(&["create", "sw", "--module", "learn"]);
        h.ctl_ok(&["attach", "sw", "vport:a"]);
        // A client is connected when the signal comes.
        let c = h.connect("sw", "a");
        let start = Instant::now();
        h.signal(d, sig);
        let out = h.wait_exit(d, Duration::from_secs(5));
        assert!(out.status.success(), "signal {sig}: {}", out.status);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(!h.sock.exists(), "signal {sig}: socket left behind");
        drop(c);
    }

    // A daemon killed outright leaves its socket; the next one takes over.
    let d = h.daemon(&[]);
    h.kill(d);
    assert!(h.sock.exists(), "a killed daemon cannot remove its socket");
    let d = h.daemon(&[]);
    assert_eq!(h.ctl_ok(&["list"]), "no switches\n");

    // A second daemon on a live socket fails and leaves the first alone.
    let out = h.run(&["daemon", "--ctl", &sock]);
    let e = one_line_error(&out, "a second daemon");
    assert!(e.contains("another mswitch daemon is running"), "{e}");
    assert!(h.running(d));
    assert_eq!(h.ctl_ok(&["list"]), "no switches\n");
    let out = h.run(&["run", "--port", "vport:a", "--ctl", &sock]);
    one_line_error(&out, "mswitch run on a live socket");
    h.signal(d, libc::SIGTERM);
    assert!(h.wait_exit(d, LONG).status.success());

    // Something that is not a socket is never taken for a stale one.
    let file = h.path("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let out = h.run(&["daemon", "--ctl", file.to_str().unwrap()]);
    one_line_error(&out, "daemon on a regular file");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");

    // A config file sets up switches and ports at start.
    let conf = h.path("good.conf");
    std::fs::write(
        &conf,
        "# two switches\ncreate sw1 --module dummy\n\nattach sw1 vport:p   # first\nattach sw1 vport:q,ring=64 --ofport 7\ncreate sw2 --workers 2\n",
    )
    .unwrap();
    let d = h.daemon(&["--config", conf.to_str().unwrap()]);
    let list = h.ctl_json(&["list"]);
    assert_eq!(list[0]["switch"], "sw1");
    assert_eq!(list[0]["module"], "dummy");
    let ports = &list[0]["ports"];
    assert_eq!(
        (ports[0]["name"].as_str(), ports[0]["ofport"].as_u64()),
        (Some("p"), Some(1))
    );
    assert_eq!(
        (ports[1]["name"].as_str(), ports[1]["ofport"].as_u64()),
        (Some("q"), Some(7))
    );
    assert_eq!(ports[1]["connected"], false);
    assert_eq!(list[1]["switch"], "sw2");
    assert_eq!(list[1]["module"], "learn");
    assert_eq!(list[1]["workers"], 2);
    h.signal(d, libc::SIGTERM);
    assert!(h.wait_exit(d, LONG).status.success());

    // A bad line: one error naming FILE:LINE, and no daemon (nor socket).
    let bad: &[(&str, u32, &str)] = &[
        ("create sw1\n# fine so far\nfrobnicate x\n", 3, "frobnicate"),
        (
            "create sw1\n\nattach sw1 vport:a,ring=3\n",
            3,
            "ring size 3",
        ),
        (
            "create sw1\n\n# comment\nattach nosuch vport:a\n",
            4,
            "no switch 'nosuch'",
        ),
        ("create sw1\ncreate sw1\n", 2, "already exists"),
        ("create sw1 --module nope\n", 1, "unknown module"),
    ];
    for (i, (text, line, want)) in bad.iter().enumerate() {
        let conf = h.path(&format!("bad{i}.conf"));
        std::fs::write(&conf, text).unwrap();
        let out = h.run(&["daemon", "--ctl", &sock, "--config", conf.to_str().unwrap()]);
        let e = one_line_error(&out, &format!("config {text:?}"));
        let at = format!("mswitch: {}:{line}: ", conf.display());
        assert!(e.starts_with(&at), "{e:?} does not start with {at:?}");
        assert!(e.contains(want), "{e:?} does not say {want:?}");
        assert!(!h.sock.exists(), "config {text:?}: socket left behind");
    }
    let missing = h.path("missing.conf");
    let out = h.run(&[
        "daemon",
        "--ctl",
        &sock,
        "--config",
        missing.to_str().unwrap(),
    ]);
    let e = one_line_error(&out, "missing config");
    assert!(e.contains("missing.conf"), "{e}");
}

#[test]
fn frames_a_client_sends_just_before_it_leaves_are_delivered() {
    let mut h = Harness::new("leave");
    let d = h.daemon(&[]);
    h.ctl_ok(&["create", "sw", "--module", "dummy"]);
    h.ctl_ok(&["attach", "sw", "vport:a"]);
    h.ctl_ok(&["attach", "sw", "vport:b,ring=8192"]);
    let mut b = h.connect("sw", "b");
    const ROUNDS: u32 = 20;
    const BURST: u32 = 500;
    let mut seq = 0;
    for round in 0..ROUNDS {
        // Let the switch go idle, so the burst has to wake it up.
        std::thread::sleep(Duration::from_millis(2));
        let mut a = h.connect("sw", "a");
        let frames: Vec<Vec<u8>> = (seq..seq + BURST)
            .map(|s| common::frame(60, 1, common::mac(2), s))
            .collect();
        assert_eq!(a.send(frames.iter().map(|f| f.as_slice())), BURST as usize);
        drop(a); // at once: the frames may not have been read yet
        seq += BURST;
        h.wait_connected("sw", "a", Some(false));
        let got = common::recv_n(&mut b, BURST as usize, LONG);
        for (k, f) in got.iter().enumerate() {
            assert_eq!(common::tag(f), (1, seq - BURST + k as u32), "round {round}");
        }
    }
    h.wait_counter("sw", "a", "rx_packets", u64::from(seq));
    h.wait_counter("sw", "b", "tx_packets", u64::from(seq));
    assert_no_drops(&h.drops("sw", "a"), "port a");
    assert_no_drops(&h.drops("sw", "b"), "port b");
    assert!(h.running(d));
}

#[test]
fn port_memory_with_a_bad_header_is_refused() {
    use mswitch::packet::{MemConfig, MemError};
    let m = PortMem::new("t", MemConfig::new(8, 128)).expect("port memory");
    let len = m.region().len();
    let reopen = || {
        let fd = m.region().fd().try_clone_to_owned().expect("dup");
        PortMem::from_region(Region::map(fd, len).expect("map"))
    };
    assert_eq!(reopen().expect("a good header").config(), m.config());
    // PortHeader: magic u64 at 0, version u32 at 8, incoming slots u32 at 12.
    #[allow(unsafe_code)]
    let poke = |off: usize, v: u32| -> u32 {
        // SAFETY: within the header at the start of the region, which only
        // this test reads or writes.
        unsafe {
            let p = m.region().as_ptr().add(off).cast::<u32>();
            let old = p.read_volatile();
            p.write_volatile(v);
            old
        }
    };
    for (off, bad) in [(0, 0x1234_5678), (8, 2), (12, 3), (12, 1 << 20)] {
        let old = poke(off, bad);
        assert!(
            matches!(
                reopen(),
                Err(MemError::BadHeader(_) | MemError::RingSize(_))
            ),
            "header word at {off} = {bad:#x} was accepted"
        );
        poke(off, old);
    }
    // A region shorter than its layout.
    let fd = m.region().fd().try_clone_to_owned().expect("dup");
    assert!(PortMem::from_region(Region::map(fd, 4096).expect("map")).is_err());
    assert!(reopen().is_ok());
}

/// `pkt-gen -f ping` and `-f pong` with default options work across a
/// learning switch: the pong answers the ping's broadcast from its own
/// address (a learning switch drops frames from a group address).
#[test]
fn default_ping_and_pong_work_across_a_learning_switch() {
    let mut h = Harness::new("pinglearn");
    let sock = h.sock();
    let run = h.spawn(
        "mswitch run",
        &[
            "run", "--module", "learn", "--port", "vport:a", "--port", "vport:b", "--ctl", &sock,
        ],
    );
    h.wait_ready(run);
    let pong = h.pkt_gen("vport:sw0:b", "pong", "-n 8 -D 20 --json");
    h.wait_connected("sw0", "b", Some(true));
    let ping = h.pkt_gen("vport:sw0:a", "ping", "-n 8 -D 20 --json");
    let ps = summary(&h.wait_exit(ping, LONG), "pkt-gen ping");
    assert_eq!(ps["packets"], 8, "ping summary {ps}");
    assert_eq!(ps["lost"], 0, "ping summary {ps}");
    let pos = summary(&h.wait_exit(pong, LONG), "pkt-gen pong");
    assert_eq!(pos["packets"], 8);
    h.signal(run, libc::SIGTERM);
    assert!(h.wait_exit(run, LONG).status.success());
}

/// `mswitch run --listen` opens its OpenFlow listener only once the
/// command line's ports are attached: the first `ovs-ofctl show` that
/// connects lists them.
#[test]
fn run_listens_for_openflow_after_its_ports_are_attached() {
    if Command::new("ovs-ofctl").arg("--version").output().is_err() {
        eprintln!("skipped: no ovs-ofctl (apt-get install openvswitch-common)");
        return;
    }
    let mut h = Harness::new("runlisten");
    let sock = h.sock();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("ptcp:{port}:127.0.0.1");
    let run = h.spawn(
        "mswitch run",
        &[
            "run",
            "--module",
            "flow",
            "--no-local",
            "--listen",
            &listen,
            "--port",
            "vport:a",
            "--port",
            "vport:b",
            "--ctl",
            &sock,
        ],
    );
    let target = format!("tcp:127.0.0.1:{port}");
    let deadline = Instant::now() + LONG;
    let shown = loop {
        assert!(h.running(run), "mswitch run exited early");
        let out = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "show", &target])
            .output()
            .expect("ovs-ofctl");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no OpenFlow listener on {target}"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        shown.contains(" 1(a): ") && shown.contains(" 2(b): "),
        "the first show missed the ports:\n{shown}"
    );
    h.signal(run, libc::SIGTERM);
    assert!(h.wait_exit(run, LONG).status.success());
}

/// `--log-file`: the log goes to the file, with timestamps and levels;
/// after logrotate moves it away, SIGHUP opens a new one at the path.
#[test]
fn log_file_survives_rotation() {
    let mut h = Harness::new("logrot");
    let sock = h.sock();
    let log = h.dir.join("mswitch.log");
    let log_s = log.display().to_string();
    let run = h.spawn(
        "mswitch run",
        &[
            "run",
            "--module",
            "learn",
            "--port",
            "vport:a",
            "--ctl",
            &sock,
            "--log-file",
            &log_s,
        ],
    );
    h.wait_ready(run);
    poll("the log file", LONG, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("running"))
    });
    let rotated = h.dir.join("mswitch.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    h.signal(run, libc::SIGHUP);
    poll("a new log file", LONG, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("reopened"))
    });
    let line = std::fs::read_to_string(&log).unwrap_or_default();
    // 2026-12-04T15:40:00.123456Z  INFO log file ... reopened
    let first = line.lines().next().unwrap_or_default();
    assert!(
        first.len() > 30
            && first.as_bytes()[4] == b'-'
            && first.contains("Z")
            && first.contains("INFO"),
        "{first:?}"
    );
    assert!(h.running(run), "SIGHUP does not stop the daemon");
    h.signal(run, libc::SIGTERM);
    assert!(h.wait_exit(run, LONG).status.success());
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap_or_default()
            .contains("running")
    );
}
