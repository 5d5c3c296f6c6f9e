//! Open vSwitch's "Open vSwitch with DPDK" guide, vhost-user section, run
//! with `mswitch vswitchd` in ovs-vswitchd's place: `ovs-vsctl add-br br0
//! -- set bridge br0 datapath_type=netdev`, `add-port ... type=dpdkvhostuser`
//! (the sockets appear in `$OVS_RUNDIR`), then the `dpdkvhostuserclient`
//! variant (`options:vhost-server-path`, the guest as server). The guests
//! are dpdk-testpmd with a virtio-user port (`--no-huge --no-pci`), one
//! sending (txonly), the other counting what it receives (rxonly), through
//! the bridge's NORMAL flow. `Interface.status` says what ovs-vswitchd
//! says of such ports (`mode`, `status`, `socket`).
//!
//! Needs root, Open vSwitch's tools and dpdk-testpmd; without them it says
//! so and passes vacuously, except in CI.

mod common;
mod vswitchd_lab;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vswitchd_lab::{Lab, end, eventually, ready};

/// Whether dpdk-testpmd is on the PATH (looked up, not run: even `-v`
/// leaves an EAL run directory behind).
fn testpmd_here() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("dpdk-testpmd").is_file()));
    assert!(
        found || std::env::var_os("CI").is_none(),
        "dpdk-testpmd (dpdk-dev) missing in CI"
    );
    if !found {
        eprintln!("SKIPPED: needs dpdk-testpmd");
    }
    found
}

/// A guest: dpdk-testpmd with one virtio-user port on a vhost-user socket.
struct Guest {
    child: Option<Child>,
    log: PathBuf,
    prefix: String,
}

impl Guest {
    /// Starts testpmd on `sock` (`server`: it listens there, for
    /// `dpdkvhostuserclient`) in forwarding `mode`, its forwarding lcore on
    /// CPU `core`.
    fn start(lab: &Lab, name: &str, sock: &Path, server: bool, core: u32, mode: &[&str]) -> Guest {
        let prefix = format!("msvd{}{name}", lab.tag);
        let log = lab.dir.join(format!("{name}.log"));
        let vdev = format!(
            "--vdev=net_virtio_user0,path={},queue_size=256{}",
            sock.display(),
            if server { ",server=1" } else { "" }
        );
        let out = File::create(&log).unwrap();
        let child = Command::new("dpdk-testpmd")
            .args(["--no-huge", "-m", "512", "--no-pci", "-l", "0,1"])
            .args(["--main-lcore", &(1 - core).to_string()])
            .arg(format!("--file-prefix={prefix}"))
            .arg(vdev)
            .args(["--", "--total-num-mbufs=8192", "--stats-period=60"])
            .args(mode)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("dpdk-testpmd");
        let mut g = Guest {
            child: Some(child),
            log,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !g.output().contains("start packet forwarding") {
            let exited = g.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "testpmd exited:\n{}", g.output());
            assert!(Instant::now() < deadline, "testpmd:\n{}", g.output());
            std::thread::sleep(Duration::from_millis(20));
        }
        g
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it (SIGINT, as Ctrl-C) and returns its total (RX, TX) packets.
    fn stop(mut self) -> (u64, u64) {
        end(
            self.child.as_mut().unwrap(),
            libc::SIGINT,
            Duration::from_secs(10),
        );
        self.child = None;
        let out = self.output();
        let tail = out
            .rfind("Accumulated forward statistics")
            .map(|i| &out[i..])
            .unwrap_or_else(|| panic!("no totals from testpmd:\n{out}"));
        let count = |k: &str| {
            tail.split(k)
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in:\n{out}"))
        };
        (count("RX-packets:"), count("TX-packets:"))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

const RX: &[&str] = &["--forward-mode=rxonly"];
const TX: &[&str] = &["--forward-mode=txonly", "--eth-peer=0,02:00:00:00:00:02"];

/// One guest sends for `secs` seconds; the other must receive through
/// NORMAL (the destination is unknown, so the bridge floods it there).
fn exchange(tx: Guest, rx: Guest, secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
    let (_, sent) = tx.stop();
    std::thread::sleep(Duration::from_millis(300));
    let (got, _) = rx.stop();
    eprintln!("guest 1 sent {sent}, guest 2 received {got}");
    assert!(sent > 1000, "the sending guest sent only {sent}");
    assert!(got > 1000, "guest 2 received only {got} of {sent}");
}

/// Waits (bounded: statistics and status are written every 5 s) until
/// each of `ifaces` reports `status:mode=MODE` and `status:status=STATE`,
/// as ovs-vswitchd writes them for vhost-user interfaces.
fn wait_status(lab: &Lab, ifaces: &[&str], mode: &str, state: &str) {
    eventually(&format!("{ifaces:?} never {mode}, {state}"), 12, || {
        ifaces.iter().all(|i| {
            let get = |k: &str| lab.vsctl(&["get", "Interface", i, &format!("status:{k}")]);
            get("mode").as_deref() == Ok(mode) && get("status").as_deref() == Ok(state)
        })
    });
}

/// `ovs-vsctl add-port BR NAME -- set Interface NAME type=TYPE [OPTION]`.
fn add_vhost(lab: &Lab, br: &str, name: &str, kind: &str, option: Option<&str>) {
    let kind = format!("type={kind}");
    let mut args = vec!["add-port", br, name, "--", "set", "Interface", name, &kind];
    args.extend(option);
    lab.must_vsctl(&args);
    let of = lab.must_vsctl(&["get", "Interface", name, "ofport"]);
    assert!(
        of.parse::<u16>().is_ok_and(|n| n > 0),
        "{name}: ofport {of}"
    );
}

#[test]
fn the_ovs_dpdk_vhost_user_guide_runs_unchanged() {
    if !ready() || !testpmd_here() {
        return;
    }
    let _g = common::serial();
    let mut lab = Lab::start();
    let br = format!("msd{}", lab.tag);
    lab.add_br(&br);
    let (v1, v2) = (format!("vu1{}", lab.tag), format!("vu2{}", lab.tag));

    // dpdkvhostuser: the switch is the server, its sockets in the run
    // directory under the interfaces' names.
    add_vhost(&lab, &br, &v1, "dpdkvhostuser", None);
    add_vhost(&lab, &br, &v2, "dpdkvhostuser", None);
    let (s1, s2) = (lab.dir.join(&v1), lab.dir.join(&v2));
    assert!(s1.exists() && s2.exists(), "no sockets in $OVS_RUNDIR");
    wait_status(&lab, &[&v1, &v2], "server", "disconnected");
    let rx = Guest::start(&lab, "rx", &s2, false, 0, RX);
    let tx = Guest::start(&lab, "tx", &s1, false, 1, TX);
    wait_status(&lab, &[&v1, &v2], "server", "connected");
    let socket = lab.must_vsctl(&["get", "Interface", &v1, "status:socket"]);
    assert_eq!(socket.trim_matches('"'), s1.display().to_string());
    exchange(tx, rx, 1);
    eventually("no statistics for the guests' ports", 12, || {
        lab.vsctl(&["get", "Interface", &v2, "statistics:tx_packets"])
            .is_ok_and(|n| n.parse::<u64>().is_ok_and(|n| n > 1000))
    });
    lab.must_vsctl(&["del-port", &br, &v1]);
    lab.must_vsctl(&["del-port", &br, &v2]);
    eventually("a removed port's socket stays", 5, || {
        !s1.exists() && !s2.exists()
    });

    // dpdkvhostuserclient: the guests listen, the switch connects (and
    // keeps trying until they do).
    let (c1, c2) = (format!("vc1{}", lab.tag), format!("vc2{}", lab.tag));
    let (g1, g2) = (lab.dir.join("guest1.sock"), lab.dir.join("guest2.sock"));
    for (name, sock) in [(&c1, &g1), (&c2, &g2)] {
        let path = format!("options:vhost-server-path={}", sock.display());
        add_vhost(&lab, &br, name, "dpdkvhostuserclient", Some(&path));
    }
    let rx = Guest::start(&lab, "rxc", &g2, true, 0, RX);
    let tx = Guest::start(&lab, "txc", &g1, true, 1, TX);
    wait_status(&lab, &[&c1, &c2], "client", "connected");
    exchange(tx, rx, 1);
}

/// `Interface.status` of a vhost-user port follows its guest when it
/// changes, as ovs-vswitchd's change sequence makes it, not with the
/// statistics: with `stats-update-interval` at a minute, a guest's
/// arrival and departure show within a few seconds.
#[test]
fn vhost_user_status_is_written_when_the_guest_comes_and_goes() {
    if !ready() || !testpmd_here() {
        return;
    }
    let _g = common::serial();
    let mut lab = Lab::start();
    let br = format!("mss{}", lab.tag);
    lab.add_br(&br);
    let v = format!("vus{}", lab.tag);
    add_vhost(&lab, &br, &v, "dpdkvhostuser", None);
    let state = || lab.vsctl(&["get", "Interface", &v, "status:status"]);
    eventually("no status for a new vhost-user port", 3, || {
        state().as_deref() == Ok("disconnected")
    });
    lab.slow_statistics();
    let guest = Guest::start(&lab, "st", &lab.dir.join(&v), false, 0, RX);
    eventually("the guest's connection not in status", 3, || {
        state().as_deref() == Ok("connected")
    });
    guest.stop();
    eventually("the guest's departure not in status", 3, || {
        state().as_deref() == Ok("disconnected")
    });
}
