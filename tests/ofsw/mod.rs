//! A `flow` switch in this process driven by the real `ovs-ofctl`, for
//! the end-to-end tests of meters, MPLS and Nicira extensions: a daemon
//! with vports p1..=pN, `ovs-ofctl` on its management socket, and frames
//! in and out of the vports.

#![allow(dead_code)]

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mswitch::control::client::VportConn;
use mswitch::control::daemon::Daemon;
use mswitch::control::proto::OpenFlowOpts;

use super::common;

pub const LONG: Duration = Duration::from_secs(10);

/// A daemon with one `flow` switch and vports p1..=pN.
pub struct Sw {
    d: Arc<Daemon>,
    dir: PathBuf,
    ctl: PathBuf,
    name: String,
    serve: Option<std::thread::JoinHandle<()>>,
}

impl Sw {
    pub fn new(test: &str, ports: u16) -> Sw {
        let dir = PathBuf::from(format!("/tmp/mswitch-sw-{}-{test}", std::process::id()));
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

    pub fn target(&self) -> String {
        format!("unix:{}", self.d.mgmt_path(&self.name).display())
    }

    pub fn port(&self, p: u16) -> VportConn {
        VportConn::connect(Some(&self.ctl), &self.name, &format!("p{p}")).expect("vport")
    }

    /// `ovs-ofctl -O OpenFlow13 CMD TARGET ARGS...`, which must succeed.
    pub fn ofctl(&self, cmd: &str, args: &[&str]) -> String {
        common::ovs_ofctl(&[], cmd, &self.target(), args)
    }

    /// `ovs-ofctl -O OpenFlow13 OPTS CMD TARGET ARGS...` (a later `-O` in
    /// `opts` wins), which must succeed.
    pub fn ofctl_opts(&self, opts: &[&str], cmd: &str, args: &[&str]) -> String {
        common::ovs_ofctl(opts, cmd, &self.target(), args)
    }

    /// `ovs-ofctl CMD TARGET ARGS...` with no `-O` (OpenFlow 1.0 only),
    /// which must succeed.
    pub fn plain_ofctl(&self, cmd: &str, args: &[&str]) -> String {
        let out = Command::new("ovs-ofctl")
            .args(["--timeout=10", cmd, &self.target()])
            .args(args)
            .output()
            .expect("run ovs-ofctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ovs-ofctl {cmd} {args:?}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `dump-flows --no-stats --sort`, one line per flow.
    pub fn flows(&self) -> Vec<String> {
        self.ofctl_opts(&["--no-stats", "--sort"], "dump-flows", &[])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && !l.starts_with("OFPST_FLOW"))
            .collect()
    }

    /// The same, which must fail: its standard error.
    pub fn ofctl_err(&self, cmd: &str, args: &[&str]) -> String {
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
pub fn have_ofctl() -> bool {
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

pub fn send(c: &mut VportConn, f: &[u8]) {
    let deadline = Instant::now() + LONG;
    while !c.send_one(f) {
        assert!(Instant::now() < deadline, "cannot send");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Frames arriving until none has come for `quiet` (or `LONG` passed).
pub fn drain(c: &mut VportConn, quiet: Duration) -> usize {
    let deadline = Instant::now() + LONG;
    let mut n = 0;
    let mut last = Instant::now();
    while Instant::now() < deadline && last.elapsed() < quiet {
        let got = c.recv_all().len();
        if got > 0 {
            n += got;
            last = Instant::now();
        } else {
            let _ = c.wait(Some(Duration::from_millis(5)));
        }
    }
    n
}

/// The number after `key` in `text` (`key` ends with its separator).
pub fn number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// At most `n` frames arriving within `t`.
pub fn recv_within(c: &mut VportConn, n: usize, t: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + t;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(c.recv_all());
        if got.len() < n {
            let _ = c.wait(Some(Duration::from_millis(5)));
        }
    }
    got
}
