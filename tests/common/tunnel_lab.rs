//! The lab of the tunnel tests: "hosts" as network namespaces joined by
//! underlay veths, VM-like namespaces, `mswitch run` in them, and checks
//! (TCP with every byte checked both ways, port counters). Everything is
//! named after a tag unique to the test and removed on drop.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::netns::{ctl as ctl_cmd, in_netns};
use super::{must, sh};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

/// The namespaces and switch processes of one test.
pub struct Lab {
    pub tag: String,
    pub netns: Vec<String>,
    pub children: Vec<Child>,
    pub dir: PathBuf,
    /// Third octet of this test's addresses (10.N.0.0/24 underlay,
    /// 192.168.N.0/24 overlay), so parallel tests never share a subnet.
    pub net: u8,
}

/// Runs a command in namespace `ns`; it must succeed.
pub fn ex(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    must(&v)
}

/// A permanent neighbour entry for `ip` at `mac` on `dev` in `ns`.
pub fn neigh(ns: &str, ip: &str, mac: &str, dev: &str) {
    ex(
        ns,
        &[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "nud",
            "permanent",
            "dev",
            dev,
        ],
    );
}

impl Lab {
    pub fn new(net: u8) -> Lab {
        let tag = super::unique_tag();
        let dir = std::env::temp_dir().join(format!("mswitch-tun-{tag}"));
        let _ = std::fs::create_dir_all(&dir);
        Lab {
            tag,
            netns: Vec::new(),
            children: Vec::new(),
            dir,
            net,
        }
    }

    /// A fresh namespace, loopback up, IPv6 off (its chatter would be
    /// counted as traffic).
    pub fn ns(&mut self, what: &str) -> String {
        let ns = format!("mt{}{what}", self.tag);
        must(&["ip", "netns", "add", &ns]);
        self.netns.push(ns.clone());
        ex(&ns, &["ip", "link", "set", "lo", "up"]);
        ex(&ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ex(
            &ns,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        );
        ns
    }

    /// A veth pair `a` in `ns_a` and `b` in `ns_b`, up, checksum and
    /// segmentation offloads off (copy-mode ports see frames as the kernel
    /// hands them over).
    pub fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str, mtu: u32) {
        must(&[
            "ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b,
        ]);
        for (ns, i) in [(ns_a, a), (ns_b, b)] {
            ex(ns, &["ip", "link", "set", i, "mtu", &mtu.to_string(), "up"]);
            let _ = sh(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", i, "tx", "off", "tso", "off", "gso",
                "off", "gro", "off",
            ]);
        }
    }

    /// Two hosts joined by an underlay veth (`u` in each), 10.N.0.1 and
    /// 10.N.0.2.
    pub fn hosts(&mut self) -> (String, String) {
        let (a, b) = (self.ns("a"), self.ns("b"));
        self.veth(&a, "u", &b, "u", 1500);
        let n = self.net;
        ex(
            &a,
            &["ip", "addr", "add", &format!("10.{n}.0.1/24"), "dev", "u"],
        );
        ex(
            &b,
            &["ip", "addr", "add", &format!("10.{n}.0.2/24"), "dev", "u"],
        );
        (a, b)
    }

    /// A VM-like namespace with `eth0` at 192.168.N.`ip` (MTU `mtu`), its
    /// veth's other end (returned) in `host`.
    pub fn vm(&mut self, host: &str, name: &str, ip: u8, mtu: u32) -> (String, String) {
        let vm = self.ns(name);
        let outer = format!("v{name}");
        self.veth(&vm, "eth0", host, &outer, mtu);
        // The host side takes any frame the VM sends.
        ex(host, &["ip", "link", "set", &outer, "mtu", "1500"]);
        let addr = format!("192.168.{}.{ip}/24", self.net);
        ex(&vm, &["ip", "addr", "add", &addr, "dev", "eth0"]);
        (vm, outer)
    }

    /// Starts `mswitch run` (learn) in namespace `host` with `ports`;
    /// returns its control socket once it answers.
    pub fn switch(&mut self, host: &str, ports: &[String]) -> String {
        self.switch_with(host, &["--module", "learn"], ports)
    }

    /// Starts switch `name` with the flow module, secure, no LOCAL port,
    /// also listening for OpenFlow on a Unix socket in the lab's
    /// directory, in namespace `host` with `ports`; returns its control
    /// socket and its `ovs-ofctl` target.
    pub fn flow_switch(&mut self, host: &str, name: &str, ports: &[String]) -> (String, String) {
        let of = self
            .dir
            .join(format!("{name}-{host}.of"))
            .display()
            .to_string();
        let listen = format!("punix:{of}");
        let args = [
            "--name",
            name,
            "--module",
            "flow",
            "--fail-mode",
            "secure",
            "--no-local",
            "--listen",
            &listen,
        ];
        (self.switch_with(host, &args, ports), format!("unix:{of}"))
    }

    /// Starts `mswitch run ARGS` in namespace `host` with `ports`;
    /// returns its control socket once it answers.
    pub fn switch_with(&mut self, host: &str, args: &[&str], ports: &[String]) -> String {
        let ctl = self.dir.join(format!("{host}.sock")).display().to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", host, BIN, "run"])
            .args(args)
            .args(["--ctl", &ctl]);
        for p in ports {
            cmd.args(["--port", p]);
        }
        self.children.push(super::netns::start_switch(cmd, &ctl));
        ctl
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        super::remove_lab(&[], &self.netns, &self.dir);
    }
}

/// Port `port`'s entry in `ctl stats` of switch `sw`.
pub fn port_stats(ctl: &str, sw: &str, port: &str) -> serde_json::Value {
    let s = ctl_cmd(ctl, &["stats", "--json"]).expect("stats");
    let v: serde_json::Value = serde_json::from_str(&s).expect("stats json");
    v.as_array()
        .and_then(|sws| sws.iter().find(|s| s["name"] == sw))
        .and_then(|s| s["ports"].as_array())
        .and_then(|ps| ps.iter().find(|p| p["name"] == port))
        .cloned()
        .unwrap_or_else(|| panic!("no port {port} on {sw}: {v}"))
}

/// One of a port's own counters (`port_counters`).
pub fn counter(ctl: &str, sw: &str, port: &str, name: &str) -> u64 {
    let p = port_stats(ctl, sw, port);
    p["port_counters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c[0] == name))
        .and_then(|c| c[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {name}: {p}"))
}

/// The OpenFlow port number of port `name` in `ovs-ofctl show`'s output.
pub fn ofport(show: &str, name: &str) -> u32 {
    show.lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once('(')?;
            rest.starts_with(&format!("{name})"))
                .then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no port {name} in {show}"))
}

/// The pseudo-random byte `i` of a stream.
pub fn byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// `len` bytes over TCP from namespace `client` to an echo server at
/// `server_ip` in namespace `server`; the server checks what it gets and
/// the client what comes back, so both directions are checked.
pub fn tcp_echo(client: &str, server: &str, server_ip: &str, len: usize) {
    let ip = server_ip.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = in_netns(server, move || {
        let l = TcpListener::bind((ip.as_str(), 0)).expect("bind");
        tx.send(l.local_addr().unwrap().port()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 32768];
        let mut got = 0;
        while got < len {
            let n = s.read(&mut buf).expect("server read");
            assert!(n > 0, "closed after {got} bytes");
            for (k, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, byte(got + k), "server: byte {} corrupted", got + k);
            }
            s.write_all(&buf[..n]).expect("echo");
            got += n;
        }
        got
    });
    let port = rx.recv_timeout(Duration::from_secs(5)).expect("server up");
    let to = format!("{server_ip}:{port}");
    let cli = in_netns(client, move || {
        let mut s = TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(5))
            .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let data: Vec<u8> = (0..len).map(byte).collect();
            for c in data.chunks(8192) {
                w.write_all(c).expect("client write");
            }
        });
        let mut buf = vec![0u8; 32768];
        let mut got = 0;
        while got < len {
            let n = s.read(&mut buf).expect("client read");
            assert!(n > 0, "echo closed after {got} bytes");
            for (k, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, byte(got + k), "client: byte {} corrupted", got + k);
            }
            got += n;
        }
        writer.join().unwrap();
        got
    });
    assert_eq!(cli.join().expect("client"), len);
    assert_eq!(srv.join().expect("server"), len);
}

/// Polls `f` every 100 ms for at most 5 s.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the kernel makes `geneve` devices (CONFIG_GENEVE), found by
/// making one (named after a unique tag) and removing it; why not if not.
pub fn kernel_has_geneve() -> Result<(), String> {
    let probe = format!("mtg{}", super::unique_tag());
    sh(&[
        "ip", "link", "add", &probe, "type", "geneve", "id", "1", "remote", "10.0.0.1",
    ])?;
    let _ = sh(&["ip", "link", "del", &probe]);
    Ok(())
}

/// Sends one UDP datagram `d` from `from` (an address of namespace `ns`)
/// to `to`.
pub fn inject(ns: &str, from: &str, to: &str, d: Vec<u8>) {
    let (from, to) = (from.to_owned(), to.to_owned());
    in_netns(ns, move || {
        let s = UdpSocket::bind((from.as_str(), 0)).expect("bind");
        s.send_to(&d, to.as_str()).expect("send");
    })
    .join()
    .unwrap();
}

/// Open vSwitch (userspace datapath, as PEERS.md finds it here) in
/// namespace `host`, its state in `dir`: ovsdb-server and ovs-vswitchd as
/// children of the lab (they and their taps go with the namespace).
/// Returns an `ovs-vsctl` that waits for ovs-vswitchd.
pub fn start_ovs(lab: &mut Lab, host: &str) -> impl Fn(&[&str]) -> String + use<> {
    let dir = lab.dir.join("ovs");
    std::fs::create_dir_all(&dir).unwrap();
    let d = |f: &str| dir.join(f).display().to_string();
    let schema = "/usr/share/openvswitch/vswitch.ovsschema";
    must(&["ovsdb-tool", "create", &d("conf.db"), schema]);
    let db = format!("unix:{}", d("db.sock"));
    let spawn = |args: &[String]| {
        Command::new("ip")
            .args(["netns", "exec", host])
            .args(args)
            .env("OVS_RUNDIR", &dir)
            .env("OVS_DBDIR", &dir)
            .env("OVS_LOGDIR", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start Open vSwitch")
    };
    lab.children.push(spawn(&[
        "ovsdb-server".into(),
        d("conf.db"),
        format!("--remote=punix:{}", d("db.sock")),
        format!("--unixctl={}", d("ovsdb.ctl")),
    ]));
    eventually("ovsdb-server socket", || dir.join("db.sock").exists());
    let vsctl = move |args: &[&str]| {
        let mut v = vec!["ovs-vsctl", "--timeout=20"];
        let dbarg = format!("--db={db}");
        v.push(&dbarg);
        v.extend_from_slice(args);
        must(&v)
    };
    vsctl(&["--no-wait", "init"]);
    lab.children.push(spawn(&[
        "ovs-vswitchd".into(),
        format!("unix:{}", d("db.sock")),
        format!("--unixctl={}", d("vsd.ctl")),
        format!("--log-file={}", d("vsd.log")),
    ]));
    vsctl
}

/// Open vSwitch as a host, set up as its userspace-tunneling guide says:
/// a `brphy` bridge (userspace datapath) owning the underlay interface `u`
/// and its address `addr`, and an integration bridge `brint` with the VM
/// port `vm_port`. Returns its `ovs-vsctl`; `ovs-ofctl` reaches a bridge
/// at `unix:DIR/ovs/BRIDGE.mgmt`.
pub fn ovs_userspace_host(
    lab: &mut Lab,
    host: &str,
    vm_port: &str,
    addr: &str,
) -> impl Fn(&[&str]) -> String + use<> {
    let vsctl = start_ovs(lab, host);
    let mac = ex(host, &["cat", "/sys/class/net/u/address"]);
    let hw = format!("other_config:hwaddr={}", mac.trim());
    vsctl(&[
        "add-br",
        "brphy",
        "--",
        "set",
        "bridge",
        "brphy",
        "datapath_type=netdev",
        &hw,
    ]);
    vsctl(&["add-port", "brphy", "u"]);
    ex(host, &["ip", "addr", "del", addr, "dev", "u"]);
    ex(host, &["ip", "addr", "add", addr, "dev", "brphy"]);
    ex(host, &["ip", "link", "set", "brphy", "up"]);
    vsctl(&[
        "add-br",
        "brint",
        "--",
        "set",
        "bridge",
        "brint",
        "datapath_type=netdev",
    ]);
    vsctl(&["add-port", "brint", vm_port]);
    vsctl
}
