//! A lab for `mswitch vswitchd` tests: a private ovsdb-server with Open
//! vSwitch's schema, the daemon in ovs-vswitchd's place, and hosts (network
//! namespaces on veth pairs) to plug into its bridges, all driven by Open
//! vSwitch's own tools (`ovs-vsctl` without `--no-wait`, so every command
//! waits for the daemon to apply it; `ovs-ofctl BR`; `ovs-appctl`).
//!
//! Every name is unique to the test, and everything is removed on drop,
//! whether the test passed or not.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, must, sh};

pub const BIN: &str = env!("CARGO_BIN_EXE_mswitch");
pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Whether the machine can run the lab: root and Open vSwitch's tools.
/// Without them the test says so and passes vacuously, except in CI.
pub fn ready() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok());
    if root && tools && Path::new(SCHEMA).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the vswitchd tests must run in CI (root, openvswitch-switch)"
    );
    eprintln!("SKIPPED: needs root and Open vSwitch's tools");
    false
}

pub struct Lab {
    pub tag: String,
    pub dir: PathBuf,
    /// ovsdb-server, then the daemon (stopped in reverse order).
    pub children: Vec<Child>,
    pub netns: Vec<String>,
    pub links: Vec<String>,
    /// When the daemon was started.
    pub started: Instant,
}

/// A host: a namespace whose `eth0` is the inner end of a veth pair; the
/// outer end (`port`) is what a bridge gets.
pub struct Host {
    pub ns: String,
    pub port: String,
    pub ip: String,
}

impl Lab {
    /// A database, ovsdb-server on it and `mswitch vswitchd` following it.
    pub fn start() -> Lab {
        let mut lab = Lab::bare();
        let dir = lab.dir.clone();
        lab.children.push(start_server(&dir));
        lab.vsctl(&["--no-wait", "init"]).unwrap();
        lab.children.push(start_vswitchd(&dir));
        lab.started = Instant::now();
        lab
    }

    /// A fresh directory with a new database in it, nothing running.
    pub fn bare() -> Lab {
        let tag = common::unique_tag();
        let dir = std::env::temp_dir().join(format!("mswitch-vsd-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("conf.db");
        must(&["ovsdb-tool", "create", db.to_str().unwrap(), SCHEMA]);
        Lab {
            tag,
            dir,
            children: Vec::new(),
            netns: Vec::new(),
            links: Vec::new(),
            started: Instant::now(),
        }
    }

    pub fn db(&self) -> String {
        format!("--db=unix:{}", self.dir.join("db.sock").display())
    }

    /// What the daemon said on standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vswitchd.err")).unwrap_or_default()
    }

    /// `ovs-vsctl` on the lab's database, waiting (at most 10 s) for the
    /// daemon to apply the change.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ovs-vsctl")
            .env("OVS_RUNDIR", &self.dir)
            .args([&self.db(), "--timeout=10"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let so = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() {
            Ok(so)
        } else {
            Err(format!(
                "ovs-vsctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `ovs-vsctl` that must succeed (the daemon's log in the panic).
    pub fn must_vsctl(&self, args: &[&str]) -> String {
        self.vsctl(args)
            .unwrap_or_else(|e| panic!("{e}\nvswitchd said:\n{}", self.log()))
    }

    /// `ovs-ofctl CMD BRIDGE ARGS...`, finding the bridge by name in the
    /// run directory as Open vSwitch's tools do.
    pub fn ofctl(&self, cmd: &str, br: &str, args: &[&str]) -> String {
        let out = Command::new("ovs-ofctl")
            .env("OVS_RUNDIR", &self.dir)
            .args(["--timeout=10", cmd, br])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovs-ofctl {cmd} {br}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ovs-appctl -t ovs-vswitchd ARGS...`: (success, stdout + stderr).
    pub fn appctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ovs-appctl")
            .env("OVS_RUNDIR", &self.dir)
            .args(["--timeout=10", "-t", "ovs-vswitchd"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Statistics every minute (`stats-update-interval`), and back only
    /// once the write due at the old interval (5 s after the daemon
    /// started) is past: from then on, what the daemon writes within a few
    /// seconds it wrote on a change.
    pub fn slow_statistics(&self) {
        self.must_vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "other_config:stats-update-interval=60000",
        ]);
        std::thread::sleep(Duration::from_secs(6).saturating_sub(self.started.elapsed()));
    }

    /// A netdev bridge, its LOCAL interface recorded for removal.
    pub fn add_br(&mut self, br: &str) {
        self.links.push(br.to_owned());
        self.must_vsctl(&[
            "add-br",
            br,
            "--",
            "set",
            "bridge",
            br,
            "datapath_type=netdev",
        ]);
    }

    /// A netdev bridge `PREFIX` + the lab's tag and hosts 1 to `n` at
    /// 10.`net`.0.N, not yet on it.
    pub fn bridge_and_hosts(&mut self, prefix: &str, net: u8, n: usize) -> (String, Vec<Host>) {
        let br = format!("{prefix}{}", self.tag);
        self.add_br(&br);
        let hosts = (1..=n)
            .map(|k| self.host(k, &format!("10.{net}.0.{k}")))
            .collect();
        (br, hosts)
    }

    /// Host `n` of the lab with address `ip` (a /24), not yet on a bridge.
    pub fn host(&mut self, n: usize, ip: &str) -> Host {
        let ns = format!("msv{}n{n}", self.tag);
        let port = format!("mv{}o{n}", self.tag);
        let inner = format!("mv{}i{n}", self.tag);
        common::veth_into_netns(&ns, &port, &inner, &mut self.netns, &mut self.links);
        must(&["ip", "link", "set", &port, "up"]);
        let ex = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend_from_slice(a);
            must(&v)
        };
        ex(&["ip", "link", "set", &inner, "name", "eth0"]);
        ex(&["ip", "link", "set", "lo", "up"]);
        ex(&["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
        ex(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ex(&["ip", "link", "set", "eth0", "up"]);
        let _ = sh(&[
            "ethtool", "-K", &port, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ]);
        let _ = sh(&[
            "ip", "netns", "exec", &ns, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso",
            "off",
        ]);
        Host {
            ns,
            port,
            ip: ip.to_owned(),
        }
    }
}

impl Host {
    /// `count` pings to `to` (0.2 s apart, 2 s to answer).
    pub fn ping(&self, to: &str, count: &str) -> Result<String, String> {
        ping(&self.ns, to, count)
    }

    /// Forgets learned neighbours (so the next ping starts with ARP).
    pub fn flush_neigh(&self) {
        let _ = sh(&[
            "ip", "netns", "exec", &self.ns, "ip", "neigh", "flush", "all",
        ]);
    }
}

impl Host {
    /// What tcpdump (`-e`: with link-level headers and VLAN tags) saw on
    /// `eth0` matching `filter` while `during` ran: one line per frame.
    /// Waits (bounded) until tcpdump listens before `during`.
    pub fn capture(&self, filter: &[&str], during: impl FnOnce()) -> String {
        let mut opts = vec!["-nn", "-e"];
        opts.extend_from_slice(filter);
        common::netns::capture(&self.ns, "eth0", &opts, during)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        while let Some(c) = self.children.pop() {
            stop(c);
        }
        common::remove_lab(&self.links, &self.netns, &self.dir);
    }
}

pub fn ping(ns: &str, to: &str, count: &str) -> Result<String, String> {
    sh(&[
        "ip", "netns", "exec", ns, "ping", "-c", count, "-i", "0.2", "-W", "2", to,
    ])
}

/// ovsdb-server on `dir`'s database and socket, waiting for the socket.
pub fn start_server(dir: &Path) -> Child {
    let _ = std::fs::remove_file(dir.join("db.sock"));
    let c = Command::new("ovsdb-server")
        .arg(dir.join("conf.db"))
        .arg(format!("--remote=punix:{}", dir.join("db.sock").display()))
        .arg(format!("--unixctl={}", dir.join("ovsdb.ctl").display()))
        .arg("--no-chdir")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dir.join("db.sock").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    c
}

/// `mswitch vswitchd` with ovs-ctl's usual options, on `dir`.
pub fn start_vswitchd(dir: &Path) -> Child {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("vswitchd.err"))
        .unwrap();
    Command::new(BIN)
        .env("OVS_RUNDIR", dir)
        .args([
            "vswitchd",
            &format!("unix:{}", dir.join("db.sock").display()),
        ])
        .args(["--pidfile", "--no-chdir", "-vconsole:emer", "--mlockall"])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

/// SIGTERM, then a bounded wait, then SIGKILL.
pub fn stop(mut c: Child) {
    end(&mut c, libc::SIGTERM, Duration::from_secs(5));
}

/// Signal `sig` to child `c`, at most `grace` to exit, then SIGKILL.
pub fn end(c: &mut Child, sig: i32, grace: Duration) {
    // SAFETY: kill(2) of a child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(c.id() as i32, sig);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Polls `f` every 250 ms until it holds; panics with `what` after
/// `secs` seconds.
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
