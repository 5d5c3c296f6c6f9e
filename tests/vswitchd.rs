//! `mswitch vswitchd` driven by Open vSwitch's own tools: a private
//! ovsdb-server with the vswitch schema, `ovs-vsctl` (without `--no-wait`,
//! so every command waits for the daemon to apply it), `ovs-ofctl BR` by
//! bridge name, and traffic between namespaces through the bridge.
//!
//! Needs root (veth, namespaces, TAP) and Open vSwitch's tools; without
//! them it says so and passes vacuously, except in CI. Every name is unique
//! to the test, and everything is removed on drop.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{must, sh};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

fn ready() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ovsdb-server", "ovs-vsctl", "ovs-ofctl"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok());
    if root && tools && std::path::Path::new(SCHEMA).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the vswitchd test must run in CI (root, openvswitch-switch)"
    );
    eprintln!("SKIPPED: needs root and Open vSwitch's tools");
    false
}

struct Lab {
    dir: PathBuf,
    children: Vec<Child>,
    netns: Vec<String>,
    links: Vec<String>,
}

impl Lab {
    fn db(&self) -> String {
        format!("--db=unix:{}", self.dir.join("db.sock").display())
    }

    /// `ovs-vsctl` on the lab's database, waiting (at most 10 s) for the
    /// daemon to apply the change.
    fn vsctl(&self, args: &[&str]) -> Result<String, String> {
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

    /// `ovs-ofctl CMD BRIDGE ARGS...`, finding the bridge by name in the
    /// run directory as Open vSwitch's tools do.
    fn ofctl(&self, cmd: &str, br: &str, args: &[&str]) -> String {
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        while let Some(c) = self.children.pop() {
            stop(c);
        }
        common::remove_lab(&self.links, &self.netns, &self.dir);
    }
}

fn ping(ns: &str, to: &str, count: &str) -> Result<String, String> {
    sh(&[
        "ip", "netns", "exec", ns, "ping", "-c", count, "-i", "0.2", "-W", "2", to,
    ])
}

/// ovsdb-server on `dir`'s database and socket, waiting for the socket.
fn start_server(dir: &std::path::Path) -> Child {
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
fn start_vswitchd(dir: &std::path::Path) -> Child {
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
fn stop(mut c: Child) {
    // SAFETY: kill(2) of a child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn ovs_vsctl_and_ovs_ofctl_drive_mswitch_vswitchd() {
    if !ready() {
        return;
    }
    let tag = common::unique_tag();
    let dir = std::env::temp_dir().join(format!("mswitch-vsd-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab {
        dir: dir.clone(),
        children: Vec::new(),
        netns: Vec::new(),
        links: Vec::new(),
    };
    // The database, as Open vSwitch's own set-up makes it.
    let db = dir.join("conf.db");
    must(&["ovsdb-tool", "create", db.to_str().unwrap(), SCHEMA]);
    let server = Command::new("ovsdb-server")
        .arg(&db)
        .arg(format!("--remote=punix:{}", dir.join("db.sock").display()))
        .arg(format!("--unixctl={}", dir.join("ovsdb.ctl").display()))
        .arg("--no-chdir")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dir.join("db.sock").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.vsctl(&["--no-wait", "init"]).unwrap();
    // mswitch in ovs-vswitchd's place, with ovs-ctl's usual options.
    let vsd = Command::new(BIN)
        .env("OVS_RUNDIR", &dir)
        .args([
            "vswitchd",
            &format!("unix:{}", dir.join("db.sock").display()),
        ])
        .args(["--pidfile", "--no-chdir", "-vconsole:emer", "--mlockall"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vswitchd.err")).unwrap())
        .spawn()
        .unwrap();
    lab.children.push(vsd);

    // A bridge, two namespaces on two system ports (one asking for a number).
    let br = format!("msv{tag}");
    lab.links.push(br.clone());
    lab.vsctl(&[
        "add-br",
        &br,
        "--",
        "set",
        "bridge",
        &br,
        "datapath_type=netdev",
    ])
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(dir.join("vswitchd.err")).unwrap_or_default()
        )
    });
    assert_eq!(
        lab.vsctl(&["get", "Interface", &br, "ofport"]).unwrap(),
        "65534"
    );
    let mut ns = Vec::new();
    for n in 1..=2 {
        let name = format!("msv{tag}n{n}");
        let outer = format!("mv{tag}o{n}");
        let inner = format!("mv{tag}i{n}");
        common::veth_into_netns(&name, &outer, &inner, &mut lab.netns, &mut lab.links);
        must(&["ip", "link", "set", &outer, "up"]);
        let ex = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &name];
            v.extend_from_slice(a);
            must(&v)
        };
        ex(&["ip", "link", "set", &inner, "name", "eth0"]);
        ex(&["ip", "link", "set", "lo", "up"]);
        ex(&[
            "ip",
            "addr",
            "add",
            &format!("10.80.0.{n}/24"),
            "dev",
            "eth0",
        ]);
        ex(&["ip", "link", "set", "eth0", "up"]);
        let _ = sh(&[
            "ethtool", "-K", &outer, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ]);
        let _ = sh(&[
            "ip", "netns", "exec", &name, "ethtool", "-K", "eth0", "tx", "off", "tso", "off",
            "gso", "off",
        ]);
        ns.push((name, outer));
    }
    let (v1, v2) = (&ns[0].1, &ns[1].1);
    lab.vsctl(&[
        "add-port",
        &br,
        v1,
        "--",
        "set",
        "Interface",
        v1,
        "ofport_request=5",
    ])
    .unwrap();
    lab.vsctl(&["add-port", &br, v2]).unwrap();
    assert_eq!(lab.vsctl(&["get", "Interface", v1, "ofport"]).unwrap(), "5");
    assert_eq!(lab.vsctl(&["get", "Interface", v2, "ofport"]).unwrap(), "1");
    // Plain ovs-ofctl by bridge name: OpenFlow 1.0, the ports, NORMAL.
    let show = lab.ofctl("show", &br, &[]);
    assert!(show.contains(&format!(" 5({v1}): addr:")), "{show}");
    assert!(show.contains(&format!("LOCAL({br}): addr:")), "{show}");
    let flows = lab.ofctl("dump-flows", &br, &[]);
    assert!(flows.contains("priority=0 actions=NORMAL"), "{flows}");
    ping(&ns[0].0, "10.80.0.2", "3").expect("through the bridge's NORMAL flow");
    let dpid = lab.vsctl(&["get", "Bridge", &br, "datapath_id"]).unwrap();
    assert_eq!(dpid.trim_matches('"').len(), 16, "{dpid}");

    // An interface that cannot be made: ofport -1 and an error; the others
    // keep forwarding.
    let _ = lab.vsctl(&[
        "add-port",
        &br,
        "nope",
        "--",
        "set",
        "Interface",
        "nope",
        "type=patch",
    ]);
    assert_eq!(
        lab.vsctl(&["get", "Interface", "nope", "ofport"]).unwrap(),
        "-1"
    );
    let err = lab.vsctl(&["get", "Interface", "nope", "error"]).unwrap();
    assert!(err.contains("not supported"), "{err}");
    ping(&ns[0].0, "10.80.0.2", "2").expect("other ports unaffected");
    lab.vsctl(&["del-port", &br, "nope"]).unwrap();

    // VLAN tags from the Port table: different VLANs do not meet.
    lab.vsctl(&["set", "port", v1, "tag=10"]).unwrap();
    lab.vsctl(&["set", "port", v2, "tag=20"]).unwrap();
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    assert!(
        ping(&ns[0].0, "10.80.0.2", "2").is_err(),
        "VLAN 10 reached VLAN 20"
    );
    lab.vsctl(&["set", "port", v2, "tag=10"]).unwrap();
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    ping(&ns[0].0, "10.80.0.2", "3").expect("both in VLAN 10");

    // A restart of the daemon: everything rebuilt from the database, with
    // the same port numbers (requested or not), forwarding again.
    stop(lab.children.pop().unwrap());
    lab.children.push(start_vswitchd(&dir));
    lab.vsctl(&["set", "port", v2, "tag=10"]).unwrap();
    assert_eq!(lab.vsctl(&["get", "Interface", v1, "ofport"]).unwrap(), "5");
    assert_eq!(lab.vsctl(&["get", "Interface", v2, "ofport"]).unwrap(), "1");
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    ping(&ns[0].0, "10.80.0.2", "3").expect("after a restart of mswitch");

    // A restart of ovsdb-server: traffic goes on meanwhile, and the daemon
    // comes back to the database.
    let vsd = lab.children.pop().unwrap();
    stop(lab.children.pop().unwrap());
    ping(&ns[0].0, "10.80.0.2", "2").expect("forwarding without the database");
    lab.children.push(start_server(&dir));
    lab.children.push(vsd);
    lab.vsctl(&["set", "port", v1, "tag=10"]).unwrap();
    lab.vsctl(&[
        "set",
        "bridge",
        &br,
        "other-config:datapath-id=00000000000000aa",
    ])
    .unwrap();
    assert_eq!(
        lab.vsctl(&["get", "Bridge", &br, "datapath_id"]).unwrap(),
        "\"00000000000000aa\""
    );

    // ovs-appctl, finding the daemon through its pidfile.
    let appctl = |args: &[&str]| {
        let out = Command::new("ovs-appctl")
            .env("OVS_RUNDIR", &dir)
            .args(["--timeout=10", "-t", "ovs-vswitchd"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, v) = appctl(&["version"]);
    assert!(ok && v.contains("mswitch"), "{v}");
    let (ok, l) = appctl(&["ofproto/list"]);
    assert!(ok && l.lines().any(|x| x == br), "{l}");
    // (The datapath-id change made the bridge again: new traffic to learn.)
    let _ = sh(&[
        "ip", "netns", "exec", &ns[0].0, "ip", "neigh", "flush", "all",
    ]);
    ping(&ns[0].0, "10.80.0.2", "2").expect("through the remade bridge");
    let (ok, f) = appctl(&["fdb/show", &br]);
    assert!(ok && f.starts_with(" port  VLAN  MAC"), "{f}");
    assert!(
        f.lines().any(|x| x.contains("   10  ")),
        "learned in VLAN 10: {f}"
    );
    let (ok, s) = appctl(&["dpif/show"]);
    assert!(
        ok && s.contains(&format!("{br} 65534/")) && s.contains(&format!("{v1} 5/")),
        "{s}"
    );
    let (ok, _) = appctl(&["fdb/flush", &br]);
    assert!(ok);
    let (ok, c) = appctl(&["list-commands"]);
    assert!(ok && c.contains("fdb/show"), "{c}");
    let (ok, e) = appctl(&["no/such-command"]);
    assert!(!ok && e.contains("not a valid command"), "{e}");

    // Removing a port and the bridge.
    lab.vsctl(&["del-port", &br, v2]).unwrap();
    let show = lab.ofctl("show", &br, &[]);
    assert!(!show.contains(v2.as_str()), "{show}");
    lab.vsctl(&["del-br", &br]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.join(format!("{br}.mgmt")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !dir.join(format!("{br}.mgmt")).exists(),
        "the bridge's socket is gone"
    );
}

/// Started as `ovs-ctl` starts ovs-vswitchd: `--detach` returns once the
/// daemon is up, the locked pidfile leads `ovs-appctl` to it, the log goes
/// to `--log-file`, and `ovs-appctl exit` stops it, removing the pidfile.
#[test]
fn detach_pidfile_log_file_and_appctl_exit_work_as_ovs_ctl_expects() {
    if Command::new("ovs-appctl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "ovs-appctl missing in CI");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mswitch-vsd-detach-{}", common::unique_tag()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("vswitchd.log");
    // No database yet: the daemon starts anyway and keeps trying it.
    let st = Command::new(BIN)
        .env("OVS_RUNDIR", &dir)
        .args([
            "vswitchd",
            "--pidfile",
            "--detach",
            "--no-chdir",
            "--monitor",
        ])
        .arg(format!("--log-file={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(dir.join("ovs-vswitchd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let appctl = |args: &[&str]| {
        Command::new("ovs-appctl")
            .env("OVS_RUNDIR", &dir)
            .args(["--timeout=10", "-t", "ovs-vswitchd"])
            .args(args)
            .output()
            .unwrap()
    };
    let v = appctl(&["version"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(appctl(&["exit"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: kill(pid, 0) only asks whether the process exists.
    #[allow(unsafe_code)]
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    #[allow(unsafe_code)]
    // SAFETY: as above.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    if alive {
        // SAFETY: the daemon this test started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    assert!(!alive, "ovs-appctl exit did not stop it");
    assert!(!dir.join("ovs-vswitchd.pid").exists());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("mswitch vswitchd"), "log: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
