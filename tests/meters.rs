//! Meters end to end: a daemon in this process hosts a `flow` switch with
//! virtual ports, and the real `ovs-ofctl -O OpenFlow13` adds, lists,
//! counts and deletes meters and the flows that use them, while traffic
//! checks that a meter lets through about its rate and no more.

mod common;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{MIN_LEN, frame, mac};
use mswitch::control::client::VportConn;
use mswitch::control::daemon::Daemon;
use mswitch::control::proto::OpenFlowOpts;

const LONG: Duration = Duration::from_secs(10);

/// A daemon with one `flow` switch and vports p1..=pN.
struct Sw {
    d: Arc<Daemon>,
    dir: PathBuf,
    ctl: PathBuf,
    name: String,
    serve: Option<std::thread::JoinHandle<()>>,
}

impl Sw {
    fn new(test: &str, ports: u16) -> Sw {
        let dir = PathBuf::from(format!("/tmp/mswitch-mt-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let ctl = dir.join("ctl.sock");
        let d = Daemon::new().expect("daemon");
        d.set_run_dir(&dir);
        let name = "mt0".to_owned();
        d.create(&name, "flow", 1, None, false, &OpenFlowOpts::default())
            .expect("switch");
        for p in 1..=ports {
            d.attach(&name, &format!("vport:p{p}"), Some(u32::from(p)))
                .expect("port");
        }
        let listener = UnixListener::bind(&ctl).expect("control socket");
        let dd = d.clone();
        let serve = std::thread::spawn(move || {
            let _ = dd.serve(listener);
        });
        Sw {
            d,
            dir,
            ctl,
            name,
            serve: Some(serve),
        }
    }

    fn target(&self) -> String {
        format!("unix:{}", self.d.mgmt_path(&self.name).display())
    }

    fn port(&self, p: u16) -> VportConn {
        VportConn::connect(Some(&self.ctl), &self.name, &format!("p{p}")).expect("vport")
    }

    /// `ovs-ofctl -O OpenFlow13 CMD TARGET ARGS...`, which must succeed.
    fn ofctl(&self, cmd: &str, args: &[&str]) -> String {
        common::ovs_ofctl(&[], cmd, &self.target(), args)
    }

    /// The same, which must fail: its standard error.
    fn ofctl_err(&self, cmd: &str, args: &[&str]) -> String {
        let out = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "--timeout=10", cmd, &self.target()])
            .args(args)
            .output()
            .expect("run ovs-ofctl");
        assert!(!out.status.success(), "ovs-ofctl {cmd} {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Sw {
    fn drop(&mut self) {
        self.d.stop();
        if let Some(t) = self.serve.take() {
            let _ = t.join();
        }
        self.d.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether ovs-ofctl is here; in CI it must be.
fn have_ofctl() -> bool {
    let ok = Command::new("ovs-ofctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "ovs-ofctl is missing in CI (.ci/run installs openvswitch-common)"
        );
        eprintln!("SKIPPED: ovs-ofctl not installed");
    }
    ok
}

fn send(c: &mut VportConn, f: &[u8]) {
    let deadline = Instant::now() + LONG;
    while !c.send_one(f) {
        assert!(Instant::now() < deadline, "cannot send");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Frames arriving until none has come for `quiet` (or `LONG` passed).
fn drain(c: &mut VportConn, quiet: Duration) -> usize {
    let deadline = Instant::now() + LONG;
    let mut n = 0;
    let mut last = Instant::now();
    while Instant::now() < deadline && last.elapsed() < quiet {
        let got = c.recv_all().len();
        if got > 0 {
            n += got;
            last = Instant::now();
        } else {
            c.wait(Some(Duration::from_millis(5)));
        }
    }
    n
}

/// The number after `key` in `text` (`key` ends with its separator).
fn number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[test]
fn ovs_ofctl_manages_meters_and_their_flows() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("manage", 2);
    let f = sw.ofctl("meter-features", &[]);
    assert!(f.contains("max_meter:65536"), "{f}");
    assert!(f.contains("max_bands:8"), "{f}");
    assert!(f.contains("drop") && f.contains("dscp_remark"), "{f}");
    assert!(f.contains("pktps") && f.contains("burst"), "{f}");

    // A flow naming a meter that does not exist is refused.
    let e = sw.ofctl_err("add-flow", &["in_port=1,actions=meter:1,output:2"]);
    assert!(e.contains("OFPMMFC_UNKNOWN_METER"), "{e}");

    sw.ofctl("add-meter", &["meter=1,pktps,band=type=drop,rate=100"]);
    sw.ofctl(
        "add-meter",
        &["meter=2,kbps,burst,stats,band=type=dscp_remark,rate=1000,burst_size=100,prec_level=1"],
    );
    let e = sw.ofctl_err("add-meter", &["meter=1,pktps,band=type=drop,rate=5"]);
    assert!(e.contains("OFPMMFC_METER_EXISTS"), "{e}");
    let e = sw.ofctl_err("mod-meter", &["meter=9,pktps,band=type=drop,rate=5"]);
    assert!(e.contains("OFPMMFC_UNKNOWN_METER"), "{e}");

    let m = sw.ofctl("dump-meters", &[]);
    assert!(m.contains("meter=1 pktps bands="), "{m}");
    assert!(m.contains("type=drop rate=100"), "{m}");
    assert!(m.contains("meter=2 kbps burst stats bands="), "{m}");
    assert!(
        m.contains("type=dscp_remark rate=1000 burst_size=100 prec_level=1"),
        "{m}"
    );

    sw.ofctl("add-flow", &["in_port=1,actions=meter:1,output:2"]);
    sw.ofctl("add-flow", &["priority=5,actions=meter:2,output:1"]);
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(flows.contains("actions=meter:1,output:2"), "{flows}");
    let s = sw.ofctl("meter-stats", &["meter=1"]);
    assert!(s.contains("meter:1 flow_count:1"), "{s}");
    assert!(!s.contains("meter:2"), "{s}");

    // Modifying keeps the flows; deleting a meter deletes its flows.
    sw.ofctl("mod-meter", &["meter=1,pktps,band=type=drop,rate=50"]);
    let m = sw.ofctl("dump-meter", &["meter=1"]);
    assert!(m.contains("type=drop rate=50"), "{m}");
    sw.ofctl("del-meter", &["meter=1"]);
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(!flows.contains("meter:1"), "{flows}");
    assert!(flows.contains("meter:2"), "{flows}");
    sw.ofctl("del-meters", &[]);
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(!flows.contains("meter:"), "{flows}");
    let m = sw.ofctl("dump-meters", &[]);
    assert!(!m.contains("meter="), "{m}");
}

#[test]
fn a_meter_passes_about_its_rate() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("traffic", 2);
    let mut p1 = sw.port(1);
    let mut p2 = sw.port(2);
    sw.ofctl("add-meter", &["meter=1,pktps,band=type=drop,rate=100"]);
    sw.ofctl("add-flow", &["in_port=1,actions=meter:1,output:2"]);
    const N: u32 = 3000;
    let start = Instant::now();
    for seq in 0..N {
        send(&mut p1, &frame(MIN_LEN, 1, mac(2), seq));
    }
    let got = drain(&mut p2, Duration::from_millis(300));
    let secs = start.elapsed().as_secs_f64();
    // The bucket starts with one second's worth (100) and earns 100 a
    // second; generous bounds, since the sending time varies.
    let most = 100.0 + 100.0 * secs + 10.0;
    assert!(got >= 90, "only {got} of {N} passed");
    assert!((got as f64) <= most, "{got} of {N} passed in {secs:.2}s");
    assert!(got < N as usize / 2, "{got} of {N} passed: not metered");
    // Every packet reached the meter; the band counted the rest.
    let deadline = Instant::now() + LONG;
    let s = loop {
        let s = sw.ofctl("meter-stats", &["meter=1"]);
        if number(&s, "packet_in_count:") == Some(u64::from(N)) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(number(&s, "packet_in_count:"), Some(u64::from(N)), "{s}");
    let dropped = number(&s, "0: packet_count:").expect("band stats");
    assert_eq!(dropped + got as u64, u64::from(N), "{s}");
}
