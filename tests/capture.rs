//! `mswitch capture`: a port's frames as pcap while traffic flows, read
//! back by our own parser and by tcpdump; a capture whose reader stalls
//! costs the forwarded traffic nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

/// A test's directory and the processes it started (killed on drop).
struct Lab {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn new(test: &str) -> Lab {
        let dir = PathBuf::from(format!("/tmp/mswitch-cap-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        Lab {
            dir,
            children: Vec::new(),
        }
    }

    fn ctl(&self) -> String {
        self.dir.join("ctl.sock").display().to_string()
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    fn spawn(&mut self, args: &[&str], stdout: Stdio) -> usize {
        let c = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mswitch");
        self.children.push(c);
        self.children.len() - 1
    }

    /// A `learn` switch `sw0` with vports a and b (b's ring holds 40 ms
    /// of 100 kpps, for a receiver on a busy machine).
    fn switch(&mut self) {
        let ctl = self.ctl();
        self.spawn(
            &[
                "run",
                "--module",
                "learn",
                "--port",
                "vport:a",
                "--port",
                "vport:b,ring=4096",
                "--ctl",
                &ctl,
            ],
            Stdio::null(),
        );
        wait("the daemon", || {
            Command::new(BIN)
                .args(["ctl", "--ctl", &ctl, "list"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    fn pkt_gen(&mut self, port: &str, func: &str, extra: &[&str]) -> usize {
        let ctl = self.ctl();
        let iface = format!("vport:sw0:{port}");
        let mut args = vec![
            "pkt-gen", "-i", &iface, "-f", func, "-T", "0", "--ctl", &ctl,
        ];
        args.extend_from_slice(extra);
        self.spawn(&args, Stdio::piped())
    }

    fn wait_exit(&mut self, k: usize) -> Output {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.children[k].try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "process {k} did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        let c = &mut self.children[k];
        let mut out = Output {
            status: c.wait().expect("wait"),
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        use std::io::Read;
        if let Some(mut s) = c.stdout.take() {
            let _ = s.read_to_end(&mut out.stdout);
        }
        if let Some(mut s) = c.stderr.take() {
            let _ = s.read_to_end(&mut out.stderr);
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The records of pcap file `p` (nanosecond, little-endian): (original
/// length, bytes).
fn read_pcap(p: &Path) -> Vec<(u32, Vec<u8>)> {
    let b = std::fs::read(p).expect("capture file");
    assert!(b.len() >= 24, "no pcap header");
    assert_eq!(&b[0..4], &0xa1b2_3c4du32.to_le_bytes(), "pcap magic");
    assert_eq!(
        u32::from_le_bytes(b[20..24].try_into().unwrap()),
        1,
        "linktype"
    );
    let mut out = Vec::new();
    let mut r = &b[24..];
    while !r.is_empty() {
        let incl = u32::from_le_bytes(r[8..12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(r[12..16].try_into().unwrap());
        out.push((orig, r[16..16 + incl].to_vec()));
        r = &r[16 + incl..];
    }
    out
}

fn has(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[test]
fn a_capture_writes_the_frames_a_port_sends_and_receives() {
    let mut lab = Lab::new("frames");
    lab.switch();
    let ctl = lab.ctl();
    let (out_file, in_file) = (lab.path("b-out.pcap"), lab.path("a-in.pcap"));
    let cap_out = lab.spawn(
        &[
            "capture",
            "sw0",
            "b",
            "--direction",
            "out",
            "-c",
            "50",
            "-s",
            "42",
            "-w",
            &out_file,
            "--ctl",
            &ctl,
        ],
        Stdio::null(),
    );
    let cap_in = lab.spawn(
        &[
            "capture",
            "sw0",
            "a",
            "--direction",
            "in",
            "-c",
            "50",
            "-w",
            &in_file,
            "--ctl",
            &ctl,
        ],
        Stdio::null(),
    );
    // Until both captures are on, frames may pass uncaptured: send until
    // both have their fifty.
    let rx = lab.pkt_gen("b", "rx", &["-D", "30"]);
    let tx = lab.pkt_gen("a", "tx", &["-R", "2000", "-D", "30", "-l", "60"]);
    let (o, i) = (lab.wait_exit(cap_out), lab.wait_exit(cap_in));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(i.status.success(), "{}", String::from_utf8_lossy(&i.stderr));
    if has("tcpdump") {
        // As the README shows it: straight into tcpdump.
        let t = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{BIN} capture sw0 b -w - -c 20 --ctl {ctl} | tcpdump -n -r -"
            ))
            .output()
            .expect("sh");
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
        let lines = String::from_utf8_lossy(&t.stdout);
        assert_eq!(
            lines.lines().filter(|l| l.contains("UDP")).count(),
            20,
            "{lines}"
        );
    }
    let _ = lab.children[tx].kill();
    let _ = lab.children[rx].kill();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("50 frame(s) captured, 0 lost"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = read_pcap(Path::new(&out_file));
    let inn = read_pcap(Path::new(&in_file));
    assert_eq!((out.len(), inn.len()), (50, 50));
    for (orig, bytes) in &out {
        assert_eq!((*orig, bytes.len()), (60, 42), "cut to the snap length");
        assert_eq!(&bytes[12..14], &[0x08, 0x00], "pkt-gen's UDP/IPv4 frames");
    }
    for (orig, bytes) in &inn {
        assert_eq!((*orig, bytes.len()), (60, 60));
    }
    if has("tcpdump") {
        let t = Command::new("tcpdump")
            .args(["-n", "-r", &in_file])
            .output()
            .expect("tcpdump");
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
        let lines = String::from_utf8_lossy(&t.stdout);
        assert_eq!(
            lines.lines().filter(|l| l.contains("UDP")).count(),
            50,
            "{lines}"
        );
    }
}

#[test]
fn a_stalled_capture_reader_costs_the_traffic_nothing() {
    let mut lab = Lab::new("stall");
    lab.switch();
    let ctl = lab.ctl();
    // Its standard output is a pipe nobody reads: the client blocks, then
    // the daemon's end, then the capture's buffer fills and loses frames.
    let stalled = lab.spawn(
        &["capture", "sw0", "b", "-w", "-", "--ctl", &ctl],
        Stdio::piped(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // 7.6 MB of records: more than the capture's buffer and the socket's.
    const N: u64 = 100_000;
    let n = N.to_string();
    let rx = lab.pkt_gen("b", "rx", &["-n", &n, "-D", "40", "--json"]);
    std::thread::sleep(Duration::from_millis(300));
    let tx = lab.pkt_gen("a", "tx", &["-n", &n, "-R", "100000", "-D", "40", "--json"]);
    let t = lab.wait_exit(tx);
    let r = lab.wait_exit(rx);
    assert!(t.status.success() && r.status.success());
    let rx_json = String::from_utf8_lossy(&r.stdout);
    assert!(
        rx_json.contains(&format!("\"packets\":{N}")),
        "every frame forwarded despite the stalled capture: {rx_json}"
    );
    assert!(
        lab.children[stalled].try_wait().expect("wait").is_none(),
        "still capturing"
    );
    let l = Command::new(BIN)
        .args(["ctl", "--ctl", &ctl, "stats", "sw0"])
        .output()
        .expect("ctl");
    assert!(l.status.success());
}

#[test]
fn bad_captures_get_one_line_errors() {
    let mut lab = Lab::new("errors");
    lab.switch();
    let ctl = lab.ctl();
    for (args, want) in [
        (vec!["capture", "sw0", "zz"], "no port 'zz' on switch 'sw0'"),
        (vec!["capture", "nosw", "a"], "no switch 'nosw'"),
        (
            vec!["capture", "sw0", "a", "--direction", "up"],
            "direction 'up'",
        ),
        (vec!["capture", "sw0", "a", "-s", "0"], "snap length 0"),
    ] {
        let mut a = args.clone();
        a.extend_from_slice(&["--ctl", &ctl]);
        let k = lab.spawn(&a, Stdio::null());
        let o = lab.wait_exit(k);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
