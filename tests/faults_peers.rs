//! Issue 19, vanished peers: what happens when the other side of a port
//! goes away. A vport client whose daemon stops or crashes, or whose port is
//! detached, is told and `pkt-gen` exits with one line; an interface deleted
//! under an `af_packet` or `tap` port is reported (`ctl list`/`stats`),
//! costs no CPU, and the port comes back by itself with the interface.
//!
//! Every process, interface and directory is unique to its test and
//! removed on drop, even when the test fails. Tests with interfaces need
//! root (CI runs them as root); without it they say so and pass vacuously.
//! "Costs no CPU" is read from the daemon's threads in
//! `/proc/PID/task/*/stat` over about a second, with a loose bound: it is a
//! resource check, not a timing test.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::netns::is_root;
use common::{must, sh, unique_tag};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");
/// The longest any bounded wait here lasts.
const LONG: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// Most of a core the daemon may use while a port's interface is gone.
const IDLE_CPU: f64 = 0.05;

/// Processes, interfaces and a directory made by one test, removed on drop.
struct Lab {
    dir: PathBuf,
    tag: String,
    children: Vec<Child>,
    links: Vec<String>,
}

impl Lab {
    fn new() -> Lab {
        let tag = unique_tag();
        let dir = std::env::temp_dir().join(format!("mswitch-fp-{tag}"));
        std::fs::create_dir_all(&dir).expect("test directory");
        Lab {
            dir,
            tag,
            children: Vec::new(),
            links: Vec::new(),
        }
    }

    fn sock(&self) -> String {
        self.dir.join("ctl.sock").display().to_string()
    }

    /// Starts `mswitch daemon` and waits (bounded) until it answers; its
    /// index in `children`.
    fn daemon(&mut self) -> usize {
        let sock = self.sock();
        let child = Command::new(BIN)
            .args(["daemon", "--ctl", &sock])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mswitch daemon");
        self.children.push(child);
        let deadline = Instant::now() + LONG;
        while self.ctl(&["list"]).is_err() {
            assert!(Instant::now() < deadline, "the daemon does not answer");
            std::thread::sleep(POLL);
        }
        self.children.len() - 1
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        common::netns::ctl(&self.sock(), args)
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        self.ctl(args)
            .unwrap_or_else(|e| panic!("ctl {args:?}: {e}"))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ctl_ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {out}"))
    }

    /// `port`'s entry in `ctl list --json` on switch `sw`.
    fn listed(&self, sw: &str, port: &str) -> Option<Value> {
        let list = self.json(&["list"]);
        list.as_array()?.iter().find(|s| s["switch"] == sw)?["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == port)
            .cloned()
    }

    /// `port`'s entry in `ctl stats --json` on switch `sw`.
    fn stats(&self, sw: &str, port: &str) -> Value {
        let st = self.json(&["stats", sw]);
        st[0]["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == port).cloned())
            .unwrap_or_else(|| panic!("no port {port} in {st}"))
    }

    /// Waits (bounded) until `port` is listed in `state`.
    fn wait_state(&self, sw: &str, port: &str, state: &str) {
        let deadline = Instant::now() + LONG;
        loop {
            let e = self.listed(sw, port);
            if e.as_ref().is_some_and(|e| e["state"] == state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "port {port} never listed as {state}: {e:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Starts `mswitch pkt-gen ARGS` (stdout and stderr piped).
    fn pktgen(&mut self, args: &[&str]) -> usize {
        let child = Command::new(BIN)
            .arg("pkt-gen")
            .args(["--ctl", &self.sock()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pkt-gen");
        self.children.push(child);
        self.children.len() - 1
    }

    fn pid(&self, i: usize) -> i32 {
        self.children[i].id() as i32
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        // SAFETY: kill(2) on a child not reaped yet (the pid is still ours).
        #[allow(unsafe_code)]
        let r = unsafe { libc::kill(self.pid(i), sig) };
        assert_eq!(r, 0, "kill");
    }

    /// Waits (bounded by `t`) for child `i` to exit; kills it and panics
    /// with what it said if it does not.
    fn wait_exit(&mut self, i: usize, t: Duration, what: &str) -> Output {
        let deadline = Instant::now() + t;
        let c = &mut self.children[i];
        while c.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("{what} did not exit within {t:?}; it said: {err}");
            }
            std::thread::sleep(POLL);
        }
        let mut out = Output {
            status: c.wait().expect("wait"),
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_end(&mut out.stdout);
        }
        if let Some(mut e) = c.stderr.take() {
            let _ = e.read_to_end(&mut out.stderr);
        }
        out
    }

    /// Waits (bounded) until vport `port` on `sw` has a client.
    fn wait_client(&self, sw: &str, port: &str) {
        let deadline = Instant::now() + LONG;
        while self.listed(sw, port).is_none_or(|p| p["connected"] != true) {
            assert!(Instant::now() < deadline, "{port} never got its client");
            std::thread::sleep(POLL);
        }
    }

    /// A veth pair `a`/`b`, both up, IPv6 off (its chatter would count).
    fn veth(&mut self, a: &str, b: &str) {
        must(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
        if !self.links.iter().any(|l| l == a) {
            self.links.push(a.to_owned());
        }
        for l in [a, b] {
            no_ipv6(l);
            must(&["ip", "link", "set", l, "up"]);
        }
    }

    /// CPU time (user + system, in seconds) of every thread of child `i`.
    fn cpu_seconds(&self, i: usize) -> f64 {
        let dir = format!("/proc/{}/task", self.pid(i));
        let mut ticks = 0u64;
        for t in std::fs::read_dir(&dir).expect("task dir").flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue; // a thread that just ended
            };
            // Fields after the command name (which may hold spaces).
            let rest = &stat[stat.rfind(')').expect("stat") + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        }
        // SAFETY: sysconf has no preconditions.
        #[allow(unsafe_code)]
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks as f64 / hz
    }

    /// The share of one core child `i` used over about a second.
    fn cpu_share(&self, i: usize) -> f64 {
        let (c0, t0) = (self.cpu_seconds(i), Instant::now());
        std::thread::sleep(Duration::from_millis(1200));
        (self.cpu_seconds(i) - c0) / t0.elapsed().as_secs_f64()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        common::remove_lab(&self.links, &[], &self.dir);
    }
}

/// The one line on stderr of a process that failed.
fn failed_with_one_line(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} exited successfully: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line: {err:?}");
    lines[0].to_owned()
}

/// Reproduction 1: a vport client of a daemon that stops (SIGTERM) or
/// crashes (SIGKILL) exits with one line instead of spinning forever, both
/// while it receives and while it sends into a full ring.
#[test]
fn vport_clients_exit_when_the_daemon_goes() {
    for (sig, func) in [(libc::SIGTERM, "rx"), (libc::SIGKILL, "tx")] {
        let mut lab = Lab::new();
        let d = lab.daemon();
        lab.ctl_ok(&["create", "s"]);
        let g = lab.pktgen(&["-i", "vport:s:c", "-f", func, "-T", "0"]);
        lab.wait_client("s", "c");
        lab.signal(d, sig);
        let out = lab.wait_exit(g, LONG, &format!("pkt-gen -f {func}"));
        let line = failed_with_one_line(&out, "pkt-gen");
        assert!(line.contains("daemon"), "{func}: {line}");
    }
}

/// Reproduction 1, detach: `ctl detach` of a vport in use tells its client,
/// which exits with one line that says so; `ctl destroy` of its switch too.
#[test]
fn detached_vport_clients_are_told() {
    let mut lab = Lab::new();
    lab.daemon();
    lab.ctl_ok(&["create", "s"]);
    let g = lab.pktgen(&["-i", "vport:s:c", "-f", "rx", "-T", "0"]);
    lab.wait_client("s", "c");
    lab.ctl_ok(&["detach", "s", "c"]);
    let out = lab.wait_exit(g, LONG, "pkt-gen after detach");
    let line = failed_with_one_line(&out, "pkt-gen");
    assert!(line.contains("detached"), "{line}");
    // The port is gone from the switch, and its name is free again.
    assert!(lab.listed("s", "c").is_none());

    let g = lab.pktgen(&["-i", "vport:s:c", "-f", "tx", "-T", "0", "-R", "1000"]);
    lab.wait_client("s", "c");
    lab.ctl_ok(&["destroy", "s"]);
    let out = lab.wait_exit(g, LONG, "pkt-gen after destroy");
    let line = failed_with_one_line(&out, "pkt-gen");
    assert!(line.contains("destroyed"), "{line}");
}

/// Sends `n` broadcast frames into interface `iface` from the host side
/// (pkt-gen driving an AF_PACKET socket), so they reach the port across it.
fn inject(lab: &mut Lab, iface: &str, n: u32) {
    let spec = format!("af_packet:{iface}");
    let n = n.to_string();
    let g = lab.pktgen(&["-i", &spec, "-f", "tx", "-n", &n, "-R", "2000", "-T", "0"]);
    let out = lab.wait_exit(g, LONG, "pkt-gen tx");
    assert!(
        out.status.success(),
        "pkt-gen tx: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (bounded) until port `port` has received at least `n` frames.
fn wait_rx(lab: &Lab, sw: &str, port: &str, n: u64) {
    let deadline = Instant::now() + LONG;
    loop {
        let got = lab.stats(sw, port)["rx_packets"].as_u64().unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{port} received {got} of {n}");
        std::thread::sleep(POLL);
    }
}

/// A lab with a veth pair `A`/`B` (names unique to it).
fn veth_lab() -> (Lab, String, String) {
    let mut lab = Lab::new();
    let (a, b) = (format!("fp{}a", lab.tag), format!("fp{}b", lab.tag));
    lab.veth(&a, &b);
    (lab, a, b)
}

/// A daemon (its index) with switch `s` and port `af_packet:A` over a
/// veth pair `A`/`B`.
fn af_packet_lab() -> (Lab, usize, String, String) {
    let (mut lab, a, b) = veth_lab();
    let d = lab.daemon();
    lab.ctl_ok(&["create", "s"]);
    lab.ctl_ok(&["attach", "s", &format!("af_packet:{a}")]);
    (lab, d, a, b)
}

/// Turns IPv6 off on `link` (its chatter would be counted as traffic).
fn no_ipv6(link: &str) {
    let _ = sh(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{link}.disable_ipv6=1"),
    ]);
}

/// Reproduction 4, af_packet: deleting the interface under a port shows
/// the port as `gone` in `ctl list` and `ctl stats`, costs no CPU, and
/// re-creating an interface of that name brings the port back (bound to
/// the new interface) with its counters.
#[test]
fn vanished_af_packet_interface_is_reported_parked_and_rebound() {
    vanished_interface_comes_back("af_packet");
}

/// Reproduction 4, af_xdp: the same for an AF_XDP port, which binds a new
/// socket and XDP program to the re-created interface. (If the kernel
/// refuses AF_XDP on the veth, the port falls back to af_packet, which is
/// then what is checked.)
#[test]
fn vanished_af_xdp_interface_is_reported_parked_and_rebound() {
    vanished_interface_comes_back("af_xdp");
}

/// A daemon with switch `s` and port `KIND:A` over a veth pair `A`/`B`:
/// `A` deleted, the port is `gone` at no CPU cost; `A` made again, it
/// carries frames again, counted on top of those before.
fn vanished_interface_comes_back(kind: &str) {
    if !is_root() {
        return;
    }
    let (mut lab, a, b) = veth_lab();
    let d = lab.daemon();
    lab.ctl_ok(&["create", "s"]);
    lab.ctl_ok(&["attach", "s", &format!("{kind}:{a}")]);
    let listed = lab.ctl_ok(&["list"]);
    if !listed.lines().any(|l| l.contains(&a) && l.contains(kind)) {
        eprintln!("{kind} refused on veth here; checking what it fell back to: {listed}");
    }
    lab.wait_state("s", &a, "up");
    inject(&mut lab, &b, 20);
    wait_rx(&lab, "s", &a, 20);

    must(&["ip", "link", "del", &a]);
    lab.wait_state("s", &a, "gone");
    assert_eq!(lab.stats("s", &a)["state"], "gone");
    let listed = lab.ctl_ok(&["list"]);
    assert!(
        listed.lines().any(|l| l.contains(&a) && l.contains("gone")),
        "{listed}"
    );
    let cpu = lab.cpu_share(d);
    assert!(cpu < IDLE_CPU, "daemon used {:.0}% of a core", cpu * 100.0);

    lab.veth(&a, &b);
    lab.wait_state("s", &a, "up");
    inject(&mut lab, &b, 20);
    // Counters carried over: 20 before, 20 after.
    wait_rx(&lab, "s", &a, 40);
    let cpu = lab.cpu_share(d);
    assert!(cpu < IDLE_CPU, "idle daemon used {:.0}%", cpu * 100.0);
}

/// Reproduction 4, down: an interface set down is listed `down` (and costs
/// nothing), and `up` again when it is.
#[test]
fn down_af_packet_interface_is_reported_and_recovers() {
    if !is_root() {
        return;
    }
    let (mut lab, d, a, b) = af_packet_lab();
    must(&["ip", "link", "set", &a, "down"]);
    lab.wait_state("s", &a, "down");
    let cpu = lab.cpu_share(d);
    assert!(cpu < IDLE_CPU, "daemon used {:.0}% of a core", cpu * 100.0);
    must(&["ip", "link", "set", &a, "up"]);
    lab.wait_state("s", &a, "up");
    inject(&mut lab, &b, 20);
    wait_rx(&lab, "s", &a, 20);
}

/// Reproduction 4, tap: a persistent TAP (made outside the daemon) deleted
/// under its port is `gone` at no CPU cost until a TAP of that name exists
/// again; a TAP the daemon made is its own and is made again at once.
#[test]
fn vanished_tap_is_reported_parked_and_comes_back() {
    if !is_root() {
        return;
    }
    let mut lab = Lab::new();
    let t = format!("fp{}t", lab.tag);
    must(&["ip", "tuntap", "add", "mode", "tap", "name", &t]);
    lab.links.push(t.clone());
    let d = lab.daemon();
    lab.ctl_ok(&["create", "s"]);
    lab.ctl_ok(&["attach", "s", &format!("tap:{t}")]);
    must(&["ip", "link", "set", &t, "up"]);
    lab.wait_state("s", &t, "up");

    must(&["ip", "link", "del", &t]);
    lab.wait_state("s", &t, "gone");
    let cpu = lab.cpu_share(d);
    assert!(cpu < IDLE_CPU, "daemon used {:.0}% of a core", cpu * 100.0);

    must(&["ip", "tuntap", "add", "mode", "tap", "name", &t]);
    must(&["ip", "link", "set", &t, "up"]);
    no_ipv6(&t);
    lab.wait_state("s", &t, "up");
    inject(&mut lab, &t, 20);
    wait_rx(&lab, "s", &t, 20);

    // A TAP the daemon made.
    let own = format!("fp{}o", lab.tag);
    lab.links.push(own.clone());
    lab.ctl_ok(&["attach", "s", &format!("tap:{own}")]);
    lab.wait_state("s", &own, "up");
    must(&["ip", "link", "del", &own]);
    let deadline = Instant::now() + LONG;
    while !std::path::Path::new(&format!("/sys/class/net/{own}")).exists() {
        assert!(Instant::now() < deadline, "{own} was not made again");
        std::thread::sleep(POLL);
    }
    lab.wait_state("s", &own, "up");
    let cpu = lab.cpu_share(d);
    assert!(cpu < IDLE_CPU, "daemon used {:.0}% of a core", cpu * 100.0);
    no_ipv6(&own);
    inject(&mut lab, &own, 20);
    wait_rx(&lab, "s", &own, 20);
}

/// Reproduction 8 (part): a second daemon cannot attach, through
/// `af_packet` (or `af_xdp`), an interface another daemon has attached;
/// the error is one line naming the holder. Once that daemon is gone (even
/// killed), it can.
#[test]
fn one_interface_is_attached_by_one_daemon() {
    if !is_root() {
        return;
    }
    let (mut first, d, a, _b) = af_packet_lab();
    let mut second = Lab::new();
    second.daemon();
    second.ctl_ok(&["create", "s2"]);
    for kind in ["af_packet", "af_xdp"] {
        let e = second
            .ctl(&["attach", "s2", &format!("{kind}:{a}")])
            .unwrap_err();
        let pid = first.pid(d).to_string();
        assert!(
            e.contains("already attached by another mswitch process") && e.contains(&pid),
            "{e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    assert!(second.listed("s2", &a).is_none());
    first.signal(d, libc::SIGKILL);
    first.wait_exit(d, LONG, "killed daemon");
    second.ctl_ok(&["attach", "s2", &format!("af_packet:{a}")]);
    second.wait_state("s2", &a, "up");
}

/// The soak test, bounded (about 15 s of churn): ports attached
/// and detached, vport clients killed, control connections opened and
/// dropped (some mid-line), a veth under an `af_packet` port deleted and
/// re-created, while frames between two untouched vports are counted:
/// every one arrives, in order, and neither port drops anything.
#[test]
fn soak_churn_around_two_ports_loses_nothing() {
    use mswitch::control::client::VportConn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let root = is_root();
    let mut lab = Lab::new();
    lab.daemon();
    lab.ctl_ok(&["create", "s", "--module", "dummy:1=2"]);
    lab.ctl_ok(&["attach", "s", "vport:a", "--ofport", "1"]);
    lab.ctl_ok(&["attach", "s", "vport:b", "--ofport", "2"]);
    let sock = PathBuf::from(lab.sock());
    let mut tx = VportConn::connect(Some(&sock), "s", "a").expect("connect a");
    let mut rx = VportConn::connect(Some(&sock), "s", "b").expect("connect b");
    let ring = u64::from(tx.mem().incoming().size());
    let got = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let receiver = {
        let (stop, got) = (stop_rx.clone(), got.clone());
        std::thread::spawn(move || {
            let mut next = 0u32;
            while !stop.load(Ordering::Relaxed) {
                rx.recv(256, |f| {
                    let (src, seq) = common::tag(f);
                    assert_eq!((src, seq), (1, next), "lost or reordered");
                    next += 1;
                });
                got.store(u64::from(next), Ordering::Relaxed);
                rx.wait(Some(Duration::from_millis(5)))
                    .expect("b's session");
            }
            next
        })
    };
    let sender = {
        let (stop, got) = (stop.clone(), got.clone());
        std::thread::spawn(move || {
            let mut seq = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Bursts of 64, at most half a ring in flight (a full ring
                // would drop), about 30,000 frames a second: traffic all
                // along, not a load test.
                for _ in 0..64 {
                    if u64::from(seq) - got.load(Ordering::Relaxed) >= ring / 2 {
                        break;
                    }
                    if !tx.send_one(&common::frame(60, 1, common::mac(2), seq)) {
                        break;
                    }
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
                tx.check().expect("a's session");
            }
            seq
        })
    };

    let (va, vb) = (format!("fp{}a", lab.tag), format!("fp{}b", lab.tag));
    if root {
        lab.veth(&va, &vb);
        lab.ctl_ok(&["attach", "s", &format!("af_packet:{va}")]);
    }
    let end = Instant::now() + Duration::from_secs(15);
    let mut round = 0;
    while Instant::now() < end && round < 200 {
        round += 1;
        // A port attached and detached.
        let p = format!("vport:c{round}");
        lab.ctl_ok(&["attach", "s", &p]);
        lab.ctl_ok(&["detach", "s", &format!("c{round}")]);
        // A vport client killed.
        let g = lab.pktgen(&["-i", &format!("vport:s:k{round}"), "-f", "rx", "-T", "0"]);
        lab.wait_client("s", &format!("k{round}"));
        lab.signal(g, libc::SIGKILL);
        lab.wait_exit(g, LONG, "killed pkt-gen");
        // Control connections opened and dropped, one in the middle of a line.
        for junk in [&b""[..], b"{\"cmd\":\"li", b"\n\n{}\n"] {
            let mut c = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
            let _ = std::io::Write::write_all(&mut c, junk);
        }
        // The veth under the af_packet port deleted and made again.
        if root && round % 5 == 0 {
            must(&["ip", "link", "del", &va]);
            lab.wait_state("s", &va, "gone");
            lab.veth(&va, &vb);
            lab.wait_state("s", &va, "up");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    // What is still in the rings arrives.
    let deadline = Instant::now() + LONG;
    while got.load(Ordering::Relaxed) < u64::from(sent) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    stop_rx.store(true, Ordering::Relaxed);
    let received = receiver.join().expect("receiver");
    eprintln!("soak: {round} rounds of churn, {sent} frames sent, {received} received");
    assert!(sent > 1000, "only {sent} frames sent in {round} rounds");
    assert_eq!(received, sent, "frames lost");
    for p in ["a", "b"] {
        let st = lab.stats("s", p);
        let drops: u64 = st["drops"]
            .as_object()
            .map(|d| d.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        assert_eq!(drops, 0, "{p} dropped: {st}");
    }
    assert_eq!(lab.stats("s", "b")["tx_packets"], u64::from(sent));
}

/// Reproduction 4 on a busy-polling switch, whose worker never waits in
/// epoll for the socket's error: it still notices the vanished interface
/// by itself (nobody lists the ports here) and rebinds to the new one.
#[test]
fn busy_polling_switch_rebinds_a_vanished_interface_unasked() {
    use mswitch::control::client::VportConn;
    if !is_root() {
        return;
    }
    let (mut lab, a, b) = veth_lab();
    lab.daemon();
    lab.ctl_ok(&["create", "s", "--busy-poll", "--module", "dummy:1=2"]);
    lab.ctl_ok(&["attach", "s", &format!("af_packet:{a}"), "--ofport", "1"]);
    lab.ctl_ok(&["attach", "s", "vport:v", "--ofport", "2"]);
    let mut v = VportConn::connect(Some(&PathBuf::from(lab.sock())), "s", "v").expect("vport");
    must(&["ip", "link", "del", &a]);
    // Long enough for the worker's once-a-second look to find it gone.
    std::thread::sleep(Duration::from_millis(2500));
    lab.veth(&a, &b);
    let deadline = Instant::now() + LONG;
    let mut got = 0;
    while got == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing came through the new {a}"
        );
        inject(&mut lab, &b, 5);
        v.wait(Some(Duration::from_millis(200))).expect("session");
        got += v.recv(64, |_| {});
    }
}
