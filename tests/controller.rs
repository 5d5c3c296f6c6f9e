//! End-to-end with a real OpenFlow controller: an os-ken application
//! (`tests/controller/l2_learning.py`, L2 learning through PACKET_IN,
//! PACKET_OUT and FLOW_MOD) drives `mswitch run --module flow` in secure fail
//! mode while three network namespaces on its af_packet ports ping each other
//! and move data over TCP through it. The test checks that the controller
//! saw the packet-ins and sent the flow-mods, that the learned flows (read
//! back with `ovs-ofctl dump-flows` on the switch's `.mgmt` socket) carried
//! the traffic, that they keep carrying it when the controller goes away,
//! and that a controller coming back finds the switch again; once with
//! whole packets sent to the controller, once with packets buffered in the
//! switch and released by buffer_id.
//!
//! Needs root, python3 with os-ken (`pip install os-ken==4.2.2`), iproute2,
//! ping, ethtool and ovs-ofctl. Without them the test says so and passes
//! vacuously, except in CI (`CI` set), where it fails instead. Every
//! namespace, interface, process and file it makes has a name unique to the
//! test and is removed on drop, even when the test fails.

mod common;

use common::{must, sh};

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

/// The controller application and its launcher (one file).
fn app_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controller/l2_learning.py")
}

/// Root and every tool the test needs, or a reason why not. In CI a missing
/// prerequisite is a failure: a skipped test there would hide one.
fn ready() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::geteuid() };
    let mut missing = Vec::new();
    if uid != 0 {
        missing.push("root".to_owned());
    } else {
        for tool in [
            &["ip", "-V"][..],
            &["ping", "-V"],
            &["ethtool", "--version"],
            &["ovs-ofctl", "--version"],
            &["python3", "-c", "import os_ken.base.app_manager"],
        ] {
            if let Err(e) = sh(tool) {
                missing.push(e);
            }
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the controller test must run in CI; missing: {missing:?}"
    );
    eprintln!("controller test skipped; missing: {missing:?}");
    false
}

/// A unique short tag for names (interface names are limited to 15 bytes).
fn tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{}",
        std::process::id() % 0xfffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every 50 ms until it is true or `secs` pass.
fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits at most `secs` for `child` to exit.
fn wait_exit(child: &mut Child, secs: u64) -> Option<ExitStatus> {
    let mut st = None;
    wait_until(secs, || {
        st = child.try_wait().ok().flatten();
        st.is_some()
    });
    st
}

fn signal(child: &Child, sig: i32) {
    let pid = child.id() as i32;
    // SAFETY: kill has no memory preconditions; the pid is our own child,
    // not yet reaped (so not reused).
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A port nobody listens on now (the controller binds it a moment later).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// Namespaces, links, processes and files made by the test, torn down on drop.
struct Lab {
    tag: String,
    netns: Vec<String>,
    links: Vec<String>,
    /// Processes, each with a name for the failure report.
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let tag = tag();
        let dir = std::env::temp_dir().join(format!("mswitch-of-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Lab {
            tag,
            netns: Vec::new(),
            links: Vec::new(),
            children: Vec::new(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Starts `args` with stdout and stderr in `DIR/<name>.out` and `.err`.
    fn spawn(&mut self, name: &str, args: &[&str]) -> usize {
        let out = File::create(self.dir.join(format!("{name}.out"))).unwrap();
        let err = File::create(self.dir.join(format!("{name}.err"))).unwrap();
        let child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", args[0]));
        self.children.push((name.to_owned(), child));
        self.children.len() - 1
    }

    /// Waits at most `secs` for process `i` to exit; panics if it does not.
    fn finish(&mut self, i: usize, secs: u64) -> ExitStatus {
        let (name, child) = &mut self.children[i];
        match wait_exit(child, secs) {
            Some(st) => st,
            None => panic!("{name} did not finish within {secs} s"),
        }
    }

    /// Panics if process `i` has exited, with its stderr.
    fn alive(&mut self, i: usize) {
        let (name, child) = &mut self.children[i];
        if let Some(st) = child.try_wait().ok().flatten() {
            let name = name.clone();
            panic!(
                "{name} exited ({st}): {}",
                self.read(&format!("{name}.err"))
            );
        }
    }

    /// Starts the controller application as `name` on 127.0.0.1:`port`,
    /// waiting until it listens.
    fn controller(&mut self, name: &str, app: &str, port: u16, miss_len: u16, of: &str) -> usize {
        let i = self.spawn(
            name,
            &[
                "python3",
                "-u",
                app,
                "--port",
                &port.to_string(),
                "--miss-len",
                &miss_len.to_string(),
                "--of",
                of,
            ],
        );
        let out = format!("{name}.out");
        let listening = wait_until(15, || {
            self.read(&out).contains("listening 127.0.0.1")
                || self.children[i].1.try_wait().ok().flatten().is_some()
        });
        self.alive(i);
        assert!(listening, "{name} did not start listening");
        i
    }

    /// A namespace holding one end of a fresh veth pair (named `eth0` inside,
    /// with `addr`, IPv6 and transmit offloads off), the other end (returned)
    /// in the root namespace, up. Also returns the MAC of `eth0`.
    fn host(&mut self, n: usize, addr: &str) -> (String, String, String) {
        let ns = format!("msw{}c{n}", self.tag);
        let outer = format!("m{}o{n}", self.tag);
        let inner = format!("m{}j{n}", self.tag);
        common::veth_into_netns(&ns, &outer, &inner, &mut self.netns, &mut self.links);
        must(&["ip", "link", "set", &outer, "up"]);
        let ex = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend_from_slice(a);
            must(&v)
        };
        ex(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ex(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ex(&["ip", "link", "set", &inner, "name", "eth0"]);
        ex(&["ip", "link", "set", "lo", "up"]);
        ex(&["ip", "link", "set", "eth0", "up"]);
        ex(&["ip", "addr", "add", addr, "dev", "eth0"]);
        // The af_packet ports copy what the kernel hands over: no checksum
        // or segmentation offload on the senders (see tests/kernel.rs).
        ex(&[
            "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
        ]);
        let _ = sh(&[
            "ethtool", "-K", &outer, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ]);
        let mac = ex(&["cat", "/sys/class/net/eth0/address"])
            .trim()
            .to_owned();
        (ns, outer, mac)
    }

    /// What the controller and the switch said, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["controller.out", "controller.err", "mswitch.err"] {
            let text = self.read(f);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            s += &format!("--- {f} (last {} lines)\n", lines.len() - from);
            for l in &lines[from..] {
                s += l;
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // SIGTERM first (mswitch closes its ports, the controller prints its
        // summary), then SIGKILL whatever is left.
        for (_, c) in &mut self.children {
            if c.try_wait().ok().flatten().is_none() {
                signal(c, libc::SIGTERM);
            }
        }
        for (_, c) in &mut self.children {
            if wait_exit(c, 2).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        common::remove_lab(&self.links, &self.netns, &self.dir);
    }
}

/// A flow from `ovs-ofctl dump-flows`: its fields and packet count.
#[derive(Debug)]
struct Flow {
    line: String,
    priority: u32,
    n_packets: u64,
}

impl Flow {
    fn has(&self, field: &str) -> bool {
        self.line.split([',', ' ']).any(|f| f == field)
    }
}

fn dump_flows(mgmt: &str) -> Result<Vec<Flow>, String> {
    let out = sh(&[
        "ovs-ofctl",
        "-O",
        "OpenFlow13",
        "--no-names",
        "dump-flows",
        &format!("unix:{mgmt}"),
    ])?;
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split([',', ' '])
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    Ok(out
        .lines()
        .filter(|l| l.contains("priority="))
        .map(|l| Flow {
            line: l.trim().to_owned(),
            priority: field(l, "priority=").unwrap_or(0x8000) as u32,
            n_packets: field(l, "n_packets=").unwrap_or(0),
        })
        .collect())
}

/// Three pings, every one answered: the first echo of a new pair reaches
/// its destination only through the controller's PACKET_OUT.
fn ping(ns: &str, to: &str) -> Result<String, String> {
    let out = sh(&[
        "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", to,
    ])?;
    if !out.contains(" 0% packet loss") {
        return Err(format!("ping {to} from {ns} lost packets: {out}"));
    }
    Ok(out)
}

/// Reads everything from one connection and prints `LENGTH SHA256`.
const TCP_SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(15)
c, _ = s.accept()
c.settimeout(15)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
c.sendall(b"k")
c.close()
print(n, h.hexdigest(), flush=True)
"#;

/// Sends LENGTH deterministic pseudo-random bytes (seeded) to the server,
/// waits for its acknowledgement, and prints `LENGTH SHA256` of what it sent.
const TCP_CLIENT: &str = r#"
import hashlib, random, socket, sys, time
data = random.Random(int(sys.argv[3])).randbytes(int(sys.argv[4]))
deadline = time.monotonic() + 5
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
assert s.recv(1) == b"k", "no acknowledgement"
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"#;

/// Sends `len` bytes over TCP from namespace `from` to `to_addr` (served in
/// `to_ns`) and checks that the server received exactly what was sent.
fn tcp_transfer(lab: &mut Lab, from: &str, to_ns: &str, to_addr: &str, len: usize, seed: u32) {
    let tag = format!("tcp{seed}");
    let server = lab.spawn(
        &format!("{tag}-server"),
        &[
            "ip", "netns", "exec", to_ns, "timeout", "25", "python3", "-c", TCP_SERVER, to_addr,
            "5201",
        ],
    );
    let client = lab.spawn(
        &format!("{tag}-client"),
        &[
            "ip",
            "netns",
            "exec",
            from,
            "timeout",
            "25",
            "python3",
            "-c",
            TCP_CLIENT,
            to_addr,
            "5201",
            &seed.to_string(),
            &len.to_string(),
        ],
    );
    let started = Instant::now();
    let cst = lab.finish(client, 26);
    let sst = lab.finish(server, 5);
    let sent = lab.read(&format!("{tag}-client.out"));
    let got = lab.read(&format!("{tag}-server.out"));
    assert!(
        cst.success() && sst.success(),
        "TCP {from} -> {to_addr}: client {cst}: {} {}; server {sst}: {} {}",
        sent.trim(),
        lab.read(&format!("{tag}-client.err")).trim(),
        got.trim(),
        lab.read(&format!("{tag}-server.err")).trim()
    );
    assert!(sent.starts_with(&format!("{len} ")), "client sent {sent}");
    assert_eq!(got, sent, "TCP {from} -> {to_addr}: data differs");
    eprintln!(
        "TCP {from} -> {to_addr}: {len} bytes verified in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// One priority-1 flow per ordered pair of hosts (`macs[i]` behind port
/// i + 1), each with packets, and the TCP transfers carried by their flows
/// rather than by the controller. Returns the packets the learned flows
/// carried.
fn check_learned(flows: &[Flow], macs: &[String]) -> Result<u64, String> {
    let listing = || {
        flows
            .iter()
            .map(|f| format!("\n  {}", f.line))
            .collect::<String>()
    };
    for (a, mac_a) in macs.iter().enumerate() {
        for (b, mac_b) in macs.iter().enumerate() {
            if a == b {
                continue;
            }
            let want = [
                format!("in_port={}", a + 1),
                format!("dl_src={mac_a}"),
                format!("dl_dst={mac_b}"),
                format!("actions=output:{}", b + 1),
            ];
            let f = flows
                .iter()
                .find(|f| f.priority == 1 && want.iter().all(|w| f.has(w)))
                .ok_or_else(|| format!("no learned flow {want:?} in:{}", listing()))?;
            // The TCP transfers, 4 MiB from host 1 to host 2 and 2 MiB
            // from host 3 to host 1, in segments of at most 1448 bytes.
            let least = match (a, b) {
                (0, 1) => 2000,
                (2, 0) => 1000,
                _ => 1,
            };
            if f.n_packets < least {
                return Err(format!(
                    "flow {want:?} carried {} packets, expected at least {least}:{}",
                    f.n_packets,
                    listing()
                ));
            }
        }
    }
    Ok(flows
        .iter()
        .filter(|f| f.priority == 1)
        .map(|f| f.n_packets)
        .sum())
}

/// OFPCML_NO_BUFFER: table-miss packets go to the controller whole.
const NO_BUFFER: u16 = 0xffff;

#[test]
fn os_ken_l2_learning_drives_the_flow_module() {
    l2_learning(NO_BUFFER, "1.3");
}

/// The same controller speaking OpenFlow 1.0 (its own match, actions in the
/// flow mod, in_port in the packet-in header).
#[test]
fn os_ken_l2_learning_in_openflow_1_0() {
    l2_learning(NO_BUFFER, "1.0");
}

/// The same controller speaking OpenFlow 1.5 (packet-outs carry a match).
#[test]
fn os_ken_l2_learning_in_openflow_1_5() {
    l2_learning(NO_BUFFER, "1.5");
}

/// The table-miss flow sends only the first 64 bytes: the switch buffers
/// longer packets (ICMP echoes) and the controller releases them by
/// buffer_id in its PACKET_OUTs.
#[test]
fn os_ken_l2_learning_with_buffered_packet_ins() {
    l2_learning(64, "1.3");
}

/// The whole scenario, with table-miss packets cut to `miss_len` bytes, the
/// controller speaking OpenFlow version `of` ("1.0", "1.3", "1.5").
fn l2_learning(miss_len: u16, of: &str) {
    if !ready() {
        return;
    }
    // One at a time: each moves megabytes through a user-space switch and
    // a Python controller on a small machine.
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let mut lab = Lab::new();
    let hosts: Vec<(String, String, String)> = (1..=3)
        .map(|n| lab.host(n, &format!("10.82.0.{n}/24")))
        .collect();

    // The controller, on a loopback port of its own.
    let port = free_port();
    let app = app_path().display().to_string();
    let ctl_proc = lab.controller("controller", &app, port, miss_len, of);

    // The switch: flow module, secure fail mode, the three outer veth ends
    // as OpenFlow ports 1, 2, 3.
    let name = format!("of{}", lab.tag);
    let ctl = lab.path("ctl.sock");
    let mgmt = lab.path(&format!("{name}.mgmt"));
    let controller = format!("tcp:127.0.0.1:{port}");
    let mut args = vec![
        BIN,
        "run",
        "--module",
        "flow",
        "--name",
        &name,
        "--ctl",
        &ctl,
        "--controller",
        &controller,
        "--fail-mode",
        "secure",
    ];
    let specs: Vec<String> = hosts
        .iter()
        .map(|(_, outer, _)| format!("af_packet:{outer}"))
        .collect();
    for s in &specs {
        args.extend_from_slice(&["--port", s]);
    }
    let sw = lab.spawn("mswitch", &args);

    // The controller saw the switch's features, installed the table-miss
    // flow and got the barrier after it answered.
    let confirmed = wait_until(15, || {
        lab.read("controller.out").contains("table_miss_confirmed")
            || lab.children[sw].1.try_wait().ok().flatten().is_some()
            || lab.children[ctl_proc].1.try_wait().ok().flatten().is_some()
    });
    lab.alive(sw);
    lab.alive(ctl_proc);
    assert!(
        confirmed,
        "the controller did not install its table-miss flow"
    );
    // It speaks the version asked for.
    let wire = match of {
        "1.0" => "0x01",
        "1.5" => "0x06",
        _ => "0x04",
    };
    let out = lab.read("controller.out");
    assert!(out.contains(&format!("version={wire}")), "{out}");
    let mut flows = Vec::new();
    let miss = wait_until(5, || {
        flows = dump_flows(&mgmt).unwrap_or_default();
        flows
            .iter()
            .any(|f| f.priority == 0 && f.line.contains(&format!("actions=CONTROLLER:{miss_len}")))
    });
    assert!(
        miss,
        "no table-miss flow on {mgmt}: {flows:#?} {:?}",
        dump_flows(&mgmt).err()
    );
    eprintln!("switch up, table-miss in place after {:?}", t0.elapsed());

    // Every host reaches every other one.
    for (a, (ns_a, _, _)) in hosts.iter().enumerate() {
        for (b, _) in hosts.iter().enumerate() {
            if a != b {
                let to = format!("10.82.0.{}", b + 1);
                ping(ns_a, &to).unwrap_or_else(|e| panic!("ping {} -> {}: {e}", a + 1, b + 1));
            }
        }
    }
    eprintln!("all pings passed after {:?}", t0.elapsed());

    // TCP both ways across different pairs, every byte checked.
    let (ns1, ns2, ns3) = (hosts[0].0.clone(), hosts[1].0.clone(), hosts[2].0.clone());
    tcp_transfer(&mut lab, &ns1, &ns2, "10.82.0.2", 4 << 20, 1);
    tcp_transfer(&mut lab, &ns3, &ns1, "10.82.0.1", 2 << 20, 2);

    // The learned flows are in the switch and carried the traffic (their
    // counters may be published a moment later: poll a little).
    let macs: Vec<String> = hosts.iter().map(|h| h.2.clone()).collect();
    let mut verdict = Err(String::new());
    let mut flows = Vec::new();
    wait_until(5, || {
        verdict = dump_flows(&mgmt).and_then(|f| {
            flows = f;
            check_learned(&flows, &macs)
        });
        verdict.is_ok()
    });
    let learned = verdict.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("flows:");
    for f in &flows {
        eprintln!("  {}", f.line);
    }

    // The controller really drove the switch: it saw packet-ins, sent
    // flow-mods, and the switch sent it no errors.
    let ctl_child = &lab.children[ctl_proc].1;
    signal(ctl_child, libc::SIGTERM);
    let st = lab.finish(ctl_proc, 5);
    assert!(st.success(), "controller exited {st}");
    let log = lab.read("controller.out");
    let count = |kind: &str| log.lines().filter(|l| l.starts_with(kind)).count();
    let (packet_ins, flow_mods) = (count("packet_in "), count("flow_mod "));
    let summary = log
        .lines()
        .find(|l| l.starts_with("summary "))
        .unwrap_or_else(|| panic!("no summary from the controller:\n{log}"));
    eprintln!("controller log:\n{log}");
    eprintln!("controller: {summary}; learned flows carried {learned} packets");
    assert!(
        summary.contains(&format!("packet_in={packet_ins} "))
            && summary.contains(&format!("flow_mod={flow_mods} ")),
        "{summary}"
    );
    assert!(
        summary.ends_with(" errors=0"),
        "the switch sent errors:\n{log}"
    );
    assert!(packet_ins >= 6, "{packet_ins} packet-ins:\n{log}");
    // Packets longer than miss_len were buffered in the switch, cut to
    // miss_len, and released by the PACKET_OUTs that named their buffer;
    // the rest came whole. Of each pair of hosts the first echo request
    // (98 bytes) misses; the ARP frames (42 bytes) fit.
    let buffered: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("packet_in ") && !l.contains("buffer_id=0xffffffff"))
        .collect();
    if miss_len == NO_BUFFER {
        assert!(buffered.is_empty(), "buffered packet-ins: {buffered:#?}");
    } else {
        assert!(buffered.len() >= 3, "too few buffered packet-ins:\n{log}");
        let cut = format!("data_len={miss_len} ");
        assert!(buffered.iter().all(|l| l.contains(&cut)), "{buffered:#?}");
    }
    // The table-miss flow and one learned flow per ordered pair.
    assert!(flow_mods >= 7, "{flow_mods} flow-mods:\n{log}");
    assert!(
        learned > 20 * packet_ins as u64,
        "flows carried {learned} packets, the controller saw {packet_ins}"
    );

    // Secure fail mode: with the controller gone the switch keeps its flow
    // table, and the learned flows still carry traffic between known hosts.
    lab.alive(sw);
    let before = dump_flows(&mgmt).unwrap_or_else(|e| panic!("dump-flows: {e}"));
    ping(&hosts[0].0, "10.82.0.2")
        .unwrap_or_else(|e| panic!("ping after the controller left: {e}"));
    ping(&hosts[1].0, "10.82.0.1")
        .unwrap_or_else(|e| panic!("ping after the controller left: {e}"));
    let carried = |flows: &[Flow]| -> u64 {
        flows
            .iter()
            .filter(|f| f.priority == 1)
            .map(|f| f.n_packets)
            .sum()
    };
    let mut after = Vec::new();
    let kept = wait_until(3, || {
        after = dump_flows(&mgmt).unwrap_or_default();
        after.len() == before.len() && carried(&after) >= carried(&before) + 6
    });
    assert!(
        kept,
        "flows lost, or the learned flows did not carry the pings: {before:#?} {after:#?}"
    );

    // A controller that comes back finds the switch again (it redials with
    // a backoff of at most 8 s) and puts its table-miss flow back in place
    // of the old one, beside the flows that stayed.
    let again = lab.controller("controller2", &app, port, miss_len, of);
    let back = wait_until(15, || {
        lab.read("controller2.out").contains("table_miss_confirmed")
            || lab.children[sw].1.try_wait().ok().flatten().is_some()
    });
    lab.alive(sw);
    lab.alive(again);
    assert!(back, "the switch did not reconnect to the controller");
    let flows = dump_flows(&mgmt).unwrap_or_else(|e| panic!("dump-flows: {e}"));
    assert_eq!(flows.len(), after.len(), "{flows:#?}");
    eprintln!("controller reconnected after {:?}", t0.elapsed());
    eprintln!("mswitch stderr:\n{}", lab.read("mswitch.err"));
    eprintln!("done in {:?}", t0.elapsed());
}
