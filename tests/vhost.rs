//! vhost-user ports end to end: dpdk-testpmd's virtio-user as a real
//! frontend on `mswitch run`, a veth in a network namespace on the same
//! switch, frontends killed and restarted, and a hand-written malformed
//! frontend (the vhost crate's frontend side writing bad descriptors).
//!
//! The testpmd tests need root and dpdk-testpmd: without them they say so
//! loudly and pass, except in CI (CI set), where they fail instead. Every
//! process, socket, namespace and link has a name unique to the test and is
//! removed on drop, even when the test fails.

mod common;

use common::{must, sh, unique_tag as tag};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mswitch::module;
use mswitch::packet::MemConfig;
use mswitch::port::vhost_user::{Mode, VhostUserPort};
use mswitch::port::{MemClient, Port, PortId};
use mswitch::switch::{Switch, SwitchConfig};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::geteuid() };
    uid == 0
}

/// Whether the testpmd tests can run here; in CI they must.
fn peers() -> bool {
    // Looked up, not run: even `-v` starts DPDK's EAL, which leaves a run
    // directory (/var/run/dpdk/rte) behind.
    let pmd = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("dpdk-testpmd").is_file()));
    if is_root() && pmd {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "vhost-user tests need root and dpdk-testpmd (package dpdk-dev) in CI"
    );
    eprintln!(
        "\n*** vhost-user test SKIPPED: needs root and dpdk-testpmd (apt-get install dpdk-dev) ***\n"
    );
    false
}

/// What one test started, torn down on drop.
struct Lab {
    tag: String,
    dir: PathBuf,
    switch: Option<Child>,
    netns: Vec<String>,
    links: Vec<String>,
}

impl Lab {
    fn new() -> Lab {
        let tag = tag();
        let dir = std::env::temp_dir().join(format!("msw-vt-{tag}"));
        std::fs::create_dir_all(&dir).expect("test dir");
        Lab {
            tag,
            dir,
            switch: None,
            netns: Vec::new(),
            links: Vec::new(),
        }
    }

    fn sock(&self, n: &str) -> PathBuf {
        self.dir.join(format!("{n}.sock"))
    }

    fn ctl(&self) -> String {
        self.dir.join("ctl.sock").display().to_string()
    }

    fn switch(&mut self, module: &str, ports: &[String]) {
        self.switch_with(module, &[], ports);
    }

    /// `switch` with more options for `mswitch run`.
    fn switch_with(&mut self, module: &str, opts: &[&str], ports: &[String]) {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--module", module, "--ctl", &self.ctl()]);
        cmd.args(opts);
        for p in ports {
            cmd.args(["--port", p]);
        }
        let log = File::create(self.dir.join("switch.log")).expect("log");
        self.switch = Some(
            cmd.stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start mswitch run"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ctl_cmd(&["list"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mswitch run did not start: {}", self.switch_log());
    }

    fn switch_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switch.log")).unwrap_or_default()
    }

    fn ctl_cmd(&self, args: &[&str]) -> Result<String, String> {
        let c = self.ctl();
        let mut v = vec![BIN, "ctl", "--ctl", &c];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// (rx_packets, tx_packets, drops) of every port, by port number.
    fn counters(&self) -> Vec<(u64, u64, u64)> {
        common::port_counters(&self.ctl_cmd(&["stats", "--json"]).expect("stats"))
    }

    /// A namespace with one end of a veth pair (eth0, `addr`); the other
    /// end, returned, stays here, up.
    fn netns_host(&mut self, addr: &str) -> (String, String) {
        let ns = format!("mswvt{}", self.tag);
        let outer = format!("mv{}o", self.tag);
        let inner = format!("mv{}i", self.tag);
        common::veth_into_netns(&ns, &outer, &inner, &mut self.netns, &mut self.links);
        must(&["ip", "link", "set", &outer, "up"]);
        let ex = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend_from_slice(a);
            must(&v)
        };
        ex(&["ip", "link", "set", &inner, "name", "eth0"]);
        ex(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ex(&["ip", "link", "set", "eth0", "up"]);
        ex(&["ip", "addr", "add", addr, "dev", "eth0"]);
        (ns, outer)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = &mut self.switch {
            let _ = c.kill();
            let _ = c.wait();
        }
        common::remove_lab(&self.links, &self.netns, &self.dir);
    }
}

/// One dpdk-testpmd with one virtio-user port.
struct Testpmd {
    child: Option<Child>,
    log: PathBuf,
    prefix: String,
}

#[derive(Debug, Clone, Copy)]
struct PmdStats {
    rx: u64,
    tx: u64,
}

impl Testpmd {
    /// Starts testpmd on `sock` (`server`: testpmd listens) with its
    /// forwarding core on `core`, and waits until it forwards.
    fn start(lab: &Lab, name: &str, sock: &Path, server: bool, core: u32, args: &[&str]) -> Self {
        Testpmd::start_queues(lab, name, sock, server, core, 1, args)
    }

    /// `start` with `queues` queue pairs, all used.
    fn start_queues(
        lab: &Lab,
        name: &str,
        sock: &Path,
        server: bool,
        core: u32,
        queues: u32,
        args: &[&str],
    ) -> Self {
        let prefix = format!("msw{}{name}", lab.tag);
        let log = lab.dir.join(format!("{name}.log"));
        let vdev = format!(
            "net_virtio_user0,path={},queues={queues},queue_size=256{}",
            sock.display(),
            if server { ",server=1" } else { "" }
        );
        let main = 1 - core;
        let mut cmd = Command::new("dpdk-testpmd");
        cmd.args([
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "-l",
            "0,1",
            "--main-lcore",
            &main.to_string(),
            &format!("--file-prefix={prefix}"),
            &format!("--vdev={vdev}"),
            "--",
            "--total-num-mbufs=8192",
            "--stats-period=60",
            &format!("--rxq={queues}"),
            &format!("--txq={queues}"),
        ]);
        cmd.args(args);
        let out = File::create(&log).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start dpdk-testpmd");
        let mut t = Testpmd {
            child: Some(child),
            log,
            prefix,
        };
        t.wait_for("start packet forwarding", Duration::from_secs(20));
        t
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&mut self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let out = self.output();
            assert!(
                !out.contains("No probed ethernet devices"),
                "dpdk-testpmd found no port:\n{out}"
            );
            if out.contains(what) {
                // Let the queues start on the switch's side too.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("dpdk-testpmd exited ({st}):\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("dpdk-testpmd did not get to '{what}':\n{}", self.output());
    }

    /// Stops it with SIGINT and reads the totals it prints.
    fn stop(mut self) -> PmdStats {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(c.id() as i32, libc::SIGINT)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        let out = self.output();
        let acc = out
            .rfind("Accumulated forward statistics")
            .map(|i| &out[i..])
            .unwrap_or_else(|| panic!("no statistics from testpmd:\n{out}"));
        let field = |k: &str| -> u64 {
            let i = acc.find(k).unwrap_or_else(|| panic!("no {k}:\n{out}")) + k.len();
            acc[i..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad {k}:\n{out}"))
        };
        PmdStats {
            rx: field("RX-packets:"),
            tx: field("TX-packets:"),
        }
    }

    /// Kills it outright, as a crashing VM would go.
    fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

const PEER2: &str = "--eth-peer=0,02:00:00:00:00:02";

/// testpmd txonly -> switch -> testpmd rxonly, and every count agrees:
/// what testpmd sent is what the switch read, what the switch sent is what
/// the other testpmd received, and the rest is in the switch's drops.
fn two_testpmds(module: &str) {
    let _g = common::serial();
    if !peers() {
        return;
    }
    two_testpmds_with(module, 1, 1);
}

/// `two_testpmds` on a switch with `workers` workers, with `queues` queue
/// pairs on both ports, all used by both testpmds. Returns the lab (the
/// switch still running) for more checks.
fn two_testpmds_with(module: &str, workers: usize, queues: u32) -> Lab {
    let mut lab = Lab::new();
    let (a, b) = (lab.sock("a"), lab.sock("b"));
    lab.switch_with(
        module,
        &["--workers", &workers.to_string()],
        &[
            format!("vhost-user:{},name=vm1,queues={queues}", a.display()),
            format!("vhost-user:{},name=vm2,queues={queues}", b.display()),
        ],
    );
    let rxonly = ["--forward-mode=rxonly"];
    let rx = Testpmd::start_queues(&lab, "rx", &b, false, 0, queues, &rxonly);
    let txonly = ["--forward-mode=txonly", "--txonly-multi-flow", PEER2];
    let tx = Testpmd::start_queues(&lab, "tx", &a, false, 1, queues, &txonly);
    std::thread::sleep(Duration::from_millis(1000));
    let t = tx.stop();
    // Whatever the switch holds for the receiver gets there meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let r = rx.stop();
    let c = lab.counters();
    let (p1, p2) = (c[0], c[1]);
    eprintln!(
        "{module}, {queues} queue pair(s): testpmd tx {t:?} rx {r:?}; switch port 1 {p1:?} port 2 {p2:?}"
    );
    assert!(t.tx > 1000, "testpmd sent only {} packets", t.tx);
    assert_eq!(p1.0, t.tx, "switch read what testpmd sent");
    assert_eq!(p2.1, r.rx, "testpmd received what the switch sent");
    assert_eq!(
        p1.0,
        p2.1 + p2.2,
        "the switch sent or dropped (and counted)"
    );
    assert!(r.rx > 0);
    lab
}

#[test]
fn testpmd_to_testpmd_with_dummy() {
    two_testpmds("dummy");
}

#[test]
fn testpmd_to_testpmd_with_learn() {
    two_testpmds("learn");
}

#[test]
fn testpmd_to_testpmd_with_flow() {
    two_testpmds("flow:l2=2");
}

/// Two queue pairs on each port and two workers: each of a port's queue
/// pairs is polled by a worker of its own, frames to the guest go out on
/// both of its receive queues, and the counts agree as with one queue.
#[test]
fn two_queue_pairs_two_workers() {
    let _g = common::serial();
    if !peers() {
        return;
    }
    let lab = two_testpmds_with("dummy", 2, 2);
    let stats: serde_json::Value =
        serde_json::from_str(&lab.ctl_cmd(&["stats", "--json"]).expect("stats")).expect("json");
    for p in stats[0]["ports"].as_array().expect("ports") {
        assert_eq!(p["queue_workers"], serde_json::json!([0, 1]), "{p}");
    }
    for w in stats[0]["workers"].as_array().expect("workers") {
        assert_eq!(w["queues"], 2, "{w}");
        assert!(
            w["packets"].as_u64().unwrap_or(0) > 100,
            "every worker forwards: {w}"
        );
    }
    // testpmd prints a block per receive queue when it has several.
    let out = std::fs::read_to_string(lab.dir.join("rx.log")).unwrap_or_default();
    for q in 0..2 {
        let head = format!("RX Port= 0/Queue= {q}");
        let i = out
            .rfind(&head)
            .unwrap_or_else(|| panic!("no stats for {head}:\n{out}"));
        let n: u64 = out[i..]
            .split("RX-packets:")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "receive queue {q} got frames:\n{out}");
    }
}

/// A vhost-user port and a veth (af_packet) port on one switch: frames
/// cross both ways between testpmd and a network namespace.
#[test]
fn vhost_user_and_veth() {
    let _g = common::serial();
    if !peers() {
        return;
    }
    let mut lab = Lab::new();
    let (ns, outer) = lab.netns_host("10.77.0.2/16");
    let a = lab.sock("a");
    lab.switch(
        "learn",
        &[
            format!("vhost-user:{},name=vm1", a.display()),
            format!("af_packet:{outer}"),
        ],
    );
    let rx_count = || -> u64 {
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "cat",
            "/sys/class/net/eth0/statistics/rx_packets",
        ])
        .trim()
        .parse()
        .unwrap()
    };
    // Namespace -> VM: broadcast pings reach testpmd (nobody answers them).
    let pmd = Testpmd::start(&lab, "rx", &a, false, 1, &["--forward-mode=rxonly"]);
    let _ = sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "ping",
        "-b",
        "-q",
        "-c",
        "50",
        "-i",
        "0.002",
        "-w",
        "3",
        "10.77.255.255",
    ]);
    let r = pmd.stop();
    assert!(r.rx >= 50, "testpmd received {} of 50 pings", r.rx);
    // VM -> namespace: broadcast frames from testpmd reach eth0.
    let before = rx_count();
    let pmd = Testpmd::start(
        &lab,
        "tx",
        &a,
        false,
        1,
        &["--forward-mode=txonly", "--eth-peer=0,ff:ff:ff:ff:ff:ff"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let t = pmd.stop();
    std::thread::sleep(Duration::from_millis(200));
    let got = rx_count() - before;
    let c = lab.counters();
    eprintln!(
        "veth: testpmd sent {}, eth0 received {got}; switch {c:?}",
        t.tx
    );
    assert!(got > 1000, "eth0 received only {got} frames");
    assert_eq!(c[0].0, t.tx, "switch read what testpmd sent");
    assert_eq!(c[1].1, got, "eth0 received what the switch sent");
}

/// Client mode: the switch connects to testpmd (server=1) and connects
/// again after testpmd is killed and restarted; server mode: a killed
/// receiver comes back on the same socket.
#[test]
fn frontends_killed_and_restarted() {
    let _g = common::serial();
    if !peers() {
        return;
    }
    let mut lab = Lab::new();
    let (a, b) = (lab.sock("a"), lab.sock("b"));
    lab.switch(
        "dummy",
        &[
            format!("vhost-user:{},client,name=vm1", a.display()),
            format!("vhost-user:{},server,name=vm2", b.display()),
        ],
    );
    let tx_args = ["--forward-mode=txonly", PEER2];
    let rx = Testpmd::start(&lab, "rx", &b, false, 0, &["--forward-mode=rxonly"]);
    let mut total = 0;
    for round in 0..2 {
        // A killed testpmd leaves its listening socket behind.
        let _ = std::fs::remove_file(&a);
        let tx = Testpmd::start(&lab, &format!("tx{round}"), &a, true, 1, &tx_args);
        let before = lab.counters()[0].0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while lab.counters()[0].0 < before + 1000 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the switch read nothing from the restarted sender: {:?}\n{}\n{}",
                lab.counters(),
                lab.switch_log(),
                tx.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tx.kill();
        total = lab.counters()[0].0;
    }
    rx.kill();
    // The receiver, killed, comes back on the switch's socket.
    let rx = Testpmd::start(&lab, "rx2", &b, false, 0, &["--forward-mode=rxonly"]);
    let _ = std::fs::remove_file(&a);
    let tx = Testpmd::start(&lab, "tx2", &a, true, 1, &tx_args);
    std::thread::sleep(Duration::from_millis(500));
    let t = tx.stop();
    std::thread::sleep(Duration::from_millis(300));
    let r = rx.stop();
    eprintln!("restarts: {total} before; last sender {t:?}, receiver {r:?}");
    assert!(t.tx > 1000 && r.rx > 1000, "traffic after restarts");
    let log = lab.switch_log();
    assert!(log.matches("frontend gone").count() >= 3, "{log}");
}

// ---------------------------------------------------------------------------
// A malformed frontend, in process: the vhost crate's frontend side.

mod bad_frontend {
    use super::*;
    use vhost::vhost_user::Frontend;
    use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
    use vmm_sys_util::eventfd::EventFd;

    const SIZE: u16 = 64;
    const DESC: u64 = 0x0;
    const AVAIL: u64 = 0x1000;
    const USED: u64 = 0x2000;
    const BUFS: u64 = 0x4000;
    const MEM: usize = 0x20000;
    const NEXT: u16 = 1;
    const INDIRECT: u16 = 4;

    /// Guest memory in a memfd and the transmit queue (1) in it.
    pub struct Guest {
        pub mem: mswitch::sys::Region,
        /// Dropping it closes the connection.
        pub _fe: Frontend,
        pub kick: EventFd,
        pub call: EventFd,
        avail: u16,
    }

    impl Guest {
        /// Connects and sets up the queue; returns once `port` runs it.
        pub fn connect(path: &Path, port: &VhostUserPort) -> Guest {
            Guest::connect_with(path, port, mswitch::sys::Region::new("guest", MEM).unwrap())
        }

        /// Guest memory in a memfd without seals, which the frontend can
        /// shrink under the switch.
        pub fn unsealed_memory() -> mswitch::sys::Region {
            // SAFETY: plain syscalls on a fresh memfd that we then own.
            #[allow(unsafe_code)]
            let fd = unsafe {
                let fd = libc::memfd_create(c"guest-unsealed".as_ptr(), libc::MFD_CLOEXEC);
                assert!(fd >= 0);
                assert_eq!(libc::ftruncate(fd, MEM as i64), 0);
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
            };
            mswitch::sys::Region::map(fd, MEM).unwrap()
        }

        pub fn connect_with(path: &Path, port: &VhostUserPort, mem: mswitch::sys::Region) -> Guest {
            let fe = Frontend::connect(path, 2).expect("connect");
            fe.set_owner().unwrap();
            let f = fe.get_features().unwrap();
            // VERSION_1 and INDIRECT_DESC, no PROTOCOL_FEATURES: queues start on kick.
            fe.set_features(f & (1 << 32 | 1 << 28)).unwrap();
            let uva = mem.as_ptr() as u64;
            use std::os::fd::AsRawFd;
            let region = VhostUserMemoryRegionInfo {
                guest_phys_addr: 0,
                memory_size: MEM as u64,
                userspace_addr: uva,
                mmap_offset: 0,
                mmap_handle: mem.fd().as_raw_fd(),
            };
            fe.set_mem_table(&[region]).unwrap();
            let (kick, call) = (EventFd::new(0).unwrap(), EventFd::new(0).unwrap());
            let q = 1;
            fe.set_vring_num(q, SIZE).unwrap();
            let cfg = VringConfigData {
                queue_max_size: SIZE,
                queue_size: SIZE,
                flags: 0,
                desc_table_addr: uva + DESC,
                used_ring_addr: uva + USED,
                avail_ring_addr: uva + AVAIL,
                log_addr: None,
            };
            fe.set_vring_addr(q, &cfg).unwrap();
            fe.set_vring_base(q, 0).unwrap();
            fe.set_vring_call(q, &call).unwrap();
            fe.set_vring_kick(q, &kick).unwrap();
            common::wait_until("the queue to start", Duration::from_secs(5), || {
                port.running()
            });
            Guest {
                mem,
                _fe: fe,
                kick,
                call,
                avail: 0,
            }
        }

        fn put(&self, off: u64, b: &[u8]) {
            assert!(off as usize + b.len() <= MEM);
            // SAFETY: inside our own mapping (checked above).
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::copy_nonoverlapping(
                    b.as_ptr(),
                    self.mem.as_ptr().add(off as usize),
                    b.len(),
                )
            };
        }

        pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..].copy_from_slice(&next.to_le_bytes());
            self.put(DESC + 16 * u64::from(i), &d);
        }

        pub fn offer(&mut self, head: u16) {
            self.put(
                AVAIL + 4 + 2 * u64::from(self.avail % SIZE),
                &head.to_le_bytes(),
            );
            self.avail = self.avail.wrapping_add(1);
            self.put(AVAIL + 2, &self.avail.to_le_bytes());
        }

        pub fn set_avail_idx(&self, v: u16) {
            self.put(AVAIL + 2, &v.to_le_bytes());
        }

        /// A good 60-byte frame (after a 12-byte header) in descriptor `i`.
        pub fn good(&self, i: u16, seq: u32) {
            let off = BUFS + 0x800 * u64::from(i);
            let mut b = vec![0u8; 12];
            b.extend(common::frame(60, 1, common::mac(2), seq));
            self.put(off, &b);
            self.desc(i, off, 72, 0, 0);
        }

        /// Writes one of each bad chain and offers them.
        pub fn offer_bad_chains(&mut self) {
            self.desc(10, BUFS, 12, NEXT, 10); // a loop onto itself
            self.desc(11, BUFS, 12, NEXT, 12);
            self.desc(12, BUFS, 12, NEXT, 11); // a loop of two
            self.desc(13, 1 << 40, 100, 0, 0); // outside guest memory
            self.desc(14, BUFS, 0, 0, 0); // zero length: no frame
            self.desc(15, BUFS, u32::MAX, 0, 0); // 4 GiB
            self.desc(16, BUFS, 0x10000, 0, 0); // inside memory, larger than a buffer
            self.desc(17, BUFS, 12, NEXT, 999); // next past the table
            self.desc(18, BUFS + 0x8000, 32, INDIRECT | NEXT, 0); // indirect with NEXT
            self.desc(19, BUFS + 8, 32, INDIRECT, 0); // misaligned table
            self.desc(20, BUFS, 12, 2, 0); // device-writable on a transmit queue
            for h in [10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 9999] {
                self.offer(h);
            }
        }

        pub fn kick(&self) {
            self.kick.write(1).unwrap();
        }

        /// Starts the receive queue (0) too, with rings at the top of guest
        /// memory; returns its kick and call eventfds. Starting a queue
        /// wakes a sleeping worker, which then clears every kick eventfd.
        pub fn start_rx_queue(&self) -> (EventFd, EventFd) {
            let top = self.mem.as_ptr() as u64 + 0x18000;
            let (kick, call) = (EventFd::new(0).unwrap(), EventFd::new(0).unwrap());
            let fe = &self._fe;
            fe.set_vring_num(0, SIZE).unwrap();
            let cfg = VringConfigData {
                queue_max_size: SIZE,
                queue_size: SIZE,
                flags: 0,
                desc_table_addr: top,
                used_ring_addr: top + 0x2000,
                avail_ring_addr: top + 0x1000,
                log_addr: None,
            };
            fe.set_vring_addr(0, &cfg).unwrap();
            fe.set_vring_base(0, 0).unwrap();
            fe.set_vring_call(0, &call).unwrap();
            fe.set_vring_kick(0, &kick).unwrap();
            (kick, call)
        }
    }
}

#[test]
fn a_malformed_frontend_costs_only_its_port() {
    let _g = common::serial();
    let dir = std::env::temp_dir().join(format!("msw-vt-{}", tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("bad.sock");
    let cfg = SwitchConfig::default();
    let sw = Switch::new(cfg, module::build("dummy:1=2,3=4,4=3").unwrap()).unwrap();
    let vu = VhostUserPort::open("vm", &sock, Mode::Server, 1, MemConfig::new(256, 2048)).unwrap();
    sw.attach(vu.clone() as Arc<dyn Port>, Some(PortId(1)))
        .unwrap();
    let (p2, mut c2) = common::port("p2", common::default_cfg());
    let (p3, mut c3) = common::port("p3", common::default_cfg());
    let (p4, mut c4) = common::port("p4", common::default_cfg());
    common::attach(&sw, &p2, 2);
    common::attach(&sw, &p3, 3);
    common::attach(&sw, &p4, 4);
    // Traffic between two other ports goes on throughout.
    let mut seq = 0;
    let mut others = |n: usize| {
        let frames: Vec<_> = (0..n)
            .map(|i| common::frame(60, 3, common::mac(4), seq + i as u32))
            .collect();
        seq += n as u32;
        common::send_all(&mut c3, &frames, Duration::from_secs(5));
        common::recv_n(&mut c4, n, Duration::from_secs(5));
    };
    others(100);

    let mut g = bad_frontend::Guest::connect(&sock, &vu);
    g.good(0, 0);
    g.offer(0);
    g.offer_bad_chains();
    g.good(1, 1);
    g.offer(1);
    g.kick();
    let got = common::recv_n(&mut c2, 2, Duration::from_secs(5));
    assert_eq!(
        got.iter().map(|f| common::tag(f).1).collect::<Vec<_>>(),
        [0, 1]
    );
    let bad = vu.counters().bad_chains.load(Ordering::Relaxed);
    let len = vu.counters().rx_bad_len.load(Ordering::Relaxed);
    assert_eq!((bad, len), (9, 2), "bad chains and bad lengths counted");
    others(100);

    // An available index far ahead breaks the queue; nothing else.
    g.set_avail_idx(0x8000);
    g.kick();
    common::wait_until("the queue to break", Duration::from_secs(5), || {
        vu.counters().broken.load(Ordering::Relaxed) > 0
    });
    others(100);

    // The frontend vanishes mid-transfer; a new one gets the port back.
    drop(g);
    common::wait_until("the port to stop", Duration::from_secs(5), || !vu.running());
    others(100);
    let mut g = bad_frontend::Guest::connect(&sock, &vu);
    g.good(0, 7);
    g.offer(0);
    g.kick();
    let got = common::recv_n(&mut c2, 1, Duration::from_secs(5));
    assert_eq!(common::tag(&got[0]).1, 7);
    others(100);
    drop(g);
    drop(sw);
    drop(vu);
    assert!(!sock.exists(), "the socket is removed with the port");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A switch with the vhost-user port `vm` (1) and three mem ports; port 3's
/// frames go to 4 and back, to show that the others keep going.
struct Hostile {
    dir: PathBuf,
    sock: PathBuf,
    sw: Option<Switch>,
    vu: Arc<VhostUserPort>,
    c2: MemClient,
    c3: MemClient,
    c4: MemClient,
    seq: u32,
}

impl Hostile {
    fn new() -> Hostile {
        let dir = std::env::temp_dir().join(format!("msw-vt-{}", tag()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("bad.sock");
        let sw = Switch::new(
            SwitchConfig::default(),
            module::build("dummy:1=2,3=4,4=3").unwrap(),
        )
        .unwrap();
        let vu =
            VhostUserPort::open("vm", &sock, Mode::Server, 1, MemConfig::new(256, 2048)).unwrap();
        sw.attach(vu.clone() as Arc<dyn Port>, Some(PortId(1)))
            .unwrap();
        let (p2, c2) = common::port("p2", common::default_cfg());
        let (p3, c3) = common::port("p3", common::default_cfg());
        let (p4, c4) = common::port("p4", common::default_cfg());
        common::attach(&sw, &p2, 2);
        common::attach(&sw, &p3, 3);
        common::attach(&sw, &p4, 4);
        Hostile {
            dir,
            sock,
            sw: Some(sw),
            vu,
            c2,
            c3,
            c4,
            seq: 0,
        }
    }

    /// Traffic between two other ports: it must get through.
    fn others(&mut self, n: usize) {
        let frames: Vec<_> = (0..n)
            .map(|i| common::frame(60, 3, common::mac(4), self.seq + i as u32))
            .collect();
        self.seq += n as u32;
        common::send_all(&mut self.c3, &frames, Duration::from_secs(5));
        common::recv_n(&mut self.c4, n, Duration::from_secs(5));
    }

    /// A well-behaved frontend gets the port back and sends a frame.
    fn a_new_frontend_works(&mut self, seq: u32) {
        let mut g = bad_frontend::Guest::connect(&self.sock, &self.vu);
        g.good(0, seq);
        g.offer(0);
        g.kick();
        let got = common::recv_n(&mut self.c2, 1, Duration::from_secs(5));
        assert_eq!(common::tag(&got[0]).1, seq);
    }

    fn dropped(&self) -> u64 {
        self.vu.counters().dropped.load(Ordering::Relaxed)
    }

    /// The frontend `g` is dropped, once, while the other ports keep
    /// forwarding, and a new frontend works after it (sending `seq`).
    fn dropped_then_replaced(&mut self, g: bad_frontend::Guest, seq: u32) {
        common::wait_until("the frontend to be dropped", Duration::from_secs(5), || {
            self.dropped() == 1 && !self.vu.running()
        });
        self.others(100);
        drop(g);
        self.a_new_frontend_works(seq);
        self.others(100);
        assert_eq!(self.dropped(), 1);
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        drop(self.sw.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A frontend whose memory file has no seals shrinks it under the switch:
/// the switch's next access to the missing part would raise SIGBUS. The
/// guard catches it, the frontend is dropped and counted, and the switch
/// goes on.
#[test]
fn a_frontend_that_shrinks_its_memory_costs_only_its_port() {
    let _g = common::serial();
    let mut h = Hostile::new();
    h.others(100);
    let mem = bad_frontend::Guest::unsealed_memory();
    use std::os::fd::AsRawFd;
    let memfd = mem.fd().as_raw_fd();
    let mut g = bad_frontend::Guest::connect_with(&h.sock, &h.vu, mem);
    g.good(0, 0);
    g.offer(0);
    g.kick();
    let got = common::recv_n(&mut h.c2, 1, Duration::from_secs(5));
    assert_eq!(common::tag(&got[0]).1, 0);
    assert_eq!(h.dropped(), 0);

    // Only the descriptor table (the first page) is left: the rings and
    // buffers are past the file's end. The switch reads the available ring
    // whenever it polls or is kicked.
    // SAFETY: ftruncate on the frontend's own memfd; this test does not
    // touch its own mapping of the lost part again.
    #[allow(unsafe_code)]
    let r = unsafe { libc::ftruncate(memfd, 4096) };
    assert_eq!(r, 0);
    g.kick();
    h.dropped_then_replaced(g, 7);
}

/// A frontend clears O_NONBLOCK on the kick and call eventfds it shares
/// with the switch, leaves the kick counter at 0 (a read would wait) and
/// fills the call counter (a write would wait). The worker must not block:
/// the other ports keep forwarding, and the frontend is dropped when a call
/// would have blocked.
#[test]
fn a_frontend_that_makes_its_eventfds_block_costs_only_its_port() {
    let _g = common::serial();
    let mut h = Hostile::new();
    h.others(100);
    let mut g = bad_frontend::Guest::connect(&h.sock, &h.vu);
    use std::os::fd::AsRawFd;
    for fd in [g.kick.as_raw_fd(), g.call.as_raw_fd()] {
        // SAFETY: fcntl on the frontend's own eventfds.
        #[allow(unsafe_code)]
        let r = unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
        assert_eq!(r, 0);
    }
    // The port's worker goes to sleep; a queue that starts wakes it, and it
    // then clears every kick eventfd, the transmit queue's too, whose
    // counter is 0.
    std::thread::sleep(Duration::from_millis(50));
    let _rx = g.start_rx_queue();
    std::thread::sleep(Duration::from_millis(50));
    h.others(10);
    assert_eq!(h.dropped(), 0, "a well-formed queue is not dropped");
    // A frame the switch takes and then calls the guest for.
    g.call.write(u64::MAX - 1).unwrap();
    g.good(0, 3);
    g.offer(0);
    g.kick();
    let got = common::recv_n(&mut h.c2, 1, Duration::from_secs(5));
    assert_eq!(common::tag(&got[0]).1, 3);
    h.dropped_then_replaced(g, 8);
}
