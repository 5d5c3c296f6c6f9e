//! `mswitch-smolapp` end to end, as root, in network namespaces: a daemon
//! (in this process) with a `demux` switch between a "client" namespace
//! (the wire) and a "host" namespace (the kernel's side); the application
//! on a vport serves UDP 7777 and TCP 7778 on the host's own addresses
//! (IPv4 and IPv6) and MAC. From the client, at the same time: a few
//! hundred KB through the application's TCP echo (bytes checked),
//! datagrams through its UDP echo, the same over IPv6, and ping and iperf3
//! to the host's kernel, on that same IPv4 address.
//!
//! Every interface and namespace has a name unique to the test and is
//! removed afterwards, also on failure, with the processes the test
//! started; every wait is bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mswitch::control::client::Ctl;
use mswitch::control::daemon::{Daemon, bind_ctl};
use mswitch::control::proto::{OpenFlowOpts, Request};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch-smolapp");
const HOST_IP: &str = "10.77.0.2";
const BYTES: usize = 384 * 1024;
const BYTES6: usize = 64 * 1024;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        // CI runs as root: there, a skipped test would hide a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "tests with namespaces must run as root in CI"
        );
        eprintln!("SKIPPED: needs root (CI runs these tests as root)");
    }
    uid == 0
}

/// Runs a command; its standard output, or one line saying how it failed.
fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns moves this thread only, with a valid namespace fd.
        #[allow(unsafe_code)]
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// What the test made: namespaces, interfaces, processes, a directory
/// with the daemon's socket; all gone on drop (the daemon stopped first).
struct Lab {
    dir: PathBuf,
    links: Vec<String>,
    netns: Vec<String>,
    children: Vec<Child>,
    daemon: Option<(Arc<Daemon>, JoinHandle<()>)>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((d, t)) = self.daemon.take() {
            d.shutdown();
            let _ = t.join();
        }
        for l in &self.links {
            let _ = sh(&["ip", "link", "del", l]);
        }
        for n in &self.netns {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn sock(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    fn req(&self, r: Request) -> Result<serde_json::Value, String> {
        Ctl::connect(Some(&self.sock()))?.request(&r)
    }

    /// Namespace `ns` with veth `outer` (here) / `inner` (there, addresses
    /// `ip` and `ip6`, offloads off: copy-mode ports see what the kernel
    /// hands over).
    fn namespace(&mut self, ns: &str, outer: &str, inner: &str, ip: &str, ip6: &str) {
        must(&["ip", "netns", "add", ns]);
        self.netns.push(ns.to_owned());
        must(&[
            "ip", "link", "add", outer, "type", "veth", "peer", "name", inner,
        ]);
        self.links.push(outer.to_owned());
        must(&["ip", "link", "set", inner, "netns", ns]);
        let _ = sh(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{outer}.disable_ipv6=1"),
        ]);
        must(&["ip", "-n", ns, "addr", "add", ip, "dev", inner]);
        must(&["ip", "-n", ns, "addr", "add", ip6, "dev", inner, "nodad"]);
        must(&["ip", "-n", ns, "link", "set", inner, "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        must(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", inner, "tx", "off", "tso", "off", "gso",
            "off",
        ]);
        must(&["ip", "link", "set", outer, "up"]);
    }

    fn tuples(&self) -> Vec<String> {
        let v = self
            .req(Request::Demux {
                switch: "dx".into(),
                op: "list".into(),
                port: None,
                tuple: None,
            })
            .expect("demux list");
        v["tuples"]
            .as_array()
            .expect("tuples")
            .iter()
            .map(|e| e["tuple"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn stats(&self) -> String {
        self.req(Request::Stats {
            switch: Some("dx".into()),
        })
        .map(|v| v.to_string())
        .unwrap_or_else(|e| e)
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The byte at offset `i` of the TCP test stream.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) >> 3) as u8 ^ (i >> 11) as u8
}

/// From namespace `ns`: `bytes` bytes through the echo at `to`, written
/// while the answer is read; returns what came back.
fn tcp_echo(ns: &str, to: &'static str, bytes: usize) -> JoinHandle<Result<Vec<u8>, String>> {
    in_netns(ns, move || {
        let s = TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(5))
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let writer = std::thread::spawn(move || -> Result<(), String> {
            let data: Vec<u8> = (0..bytes).map(pattern).collect();
            for chunk in data.chunks(10_000) {
                w.write_all(chunk).map_err(|e| format!("write: {e}"))?;
            }
            w.shutdown(Shutdown::Write).map_err(|e| e.to_string())
        });
        let mut got = Vec::with_capacity(bytes);
        let r = (&s).take(bytes as u64 + 1).read_to_end(&mut got);
        writer.join().map_err(|_| "writer panicked")??;
        r.map_err(|e| format!("read after {} bytes: {e}", got.len()))?;
        Ok(got)
    })
}

/// From namespace `ns`: `n` datagrams to `to`, each answered (three tries
/// each); returns the answers.
fn udp_echo(ns: &str, to: &'static str, n: usize) -> JoinHandle<Vec<String>> {
    in_netns(ns, move || {
        let any = if to.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let s = UdpSocket::bind(any).expect("udp socket");
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut answers = Vec::new();
        for i in 0..n {
            let msg = format!("datagram {i}");
            for _ in 0..3 {
                s.send_to(msg.as_bytes(), to).expect("send");
                let mut buf = [0u8; 256];
                if let Ok((k, _)) = s.recv_from(&mut buf) {
                    answers.push(String::from_utf8_lossy(&buf[..k]).into_owned());
                    break;
                }
            }
        }
        answers
    })
}

/// CPU time (user + system, in clock ticks) process `pid` used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command (which may hold spaces): state is field 3,
    // utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn start_daemon(dir: &Path) -> (Arc<Daemon>, JoinHandle<()>) {
    let d = Daemon::new().expect("daemon");
    d.set_run_dir(dir);
    let l = bind_ctl(&dir.join("ctl.sock")).expect("control socket");
    let d2 = d.clone();
    (d, std::thread::spawn(move || d2.serve(l).unwrap_or(())))
}

#[test]
fn app_serves_its_ports_while_the_kernel_serves_the_rest() {
    if !is_root() {
        return;
    }
    let tag = format!("{:x}", std::process::id() % 0xfffff);
    let (hns, cns) = (format!("sah{tag}"), format!("sac{tag}"));
    let mut lab = Lab {
        dir: PathBuf::from(format!("/tmp/mswitch-smolapp-{tag}")),
        links: Vec::new(),
        netns: Vec::new(),
        children: Vec::new(),
        daemon: None,
    };
    let _ = std::fs::remove_dir_all(&lab.dir);
    std::fs::create_dir_all(&lab.dir).expect("test directory");
    let (hout, hin) = (format!("sah{tag}o"), format!("sah{tag}i"));
    let (cout, cin) = (format!("sac{tag}o"), format!("sac{tag}i"));
    lab.namespace(&hns, &hout, &hin, "10.77.0.2/24", "fd77::2/64");
    lab.namespace(&cns, &cout, &cin, "10.77.0.1/24", "fd77::1/64");
    let host_mac = must(&[
        "ip",
        "netns",
        "exec",
        &hns,
        "cat",
        &format!("/sys/class/net/{hin}/address"),
    ]);

    lab.daemon = Some(start_daemon(&lab.dir));
    lab.req(Request::Create {
        switch: "dx".into(),
        module: Some("demux:host=1,wire=2".into()),
        workers: Some(1),
        batch: None,
        busy_poll: false,
        openflow: OpenFlowOpts::default(),
    })
    .expect("create");
    for (spec, want) in [(&hout, 1), (&cout, 2)] {
        let v = lab
            .req(Request::Attach {
                switch: "dx".into(),
                spec: format!("af_packet:{spec}"),
                ofport: None,
                vlan: None,
            })
            .expect("attach");
        assert_eq!(v["ofport"], want);
    }

    // The application: the host's addresses and MAC, its own two ports.
    let log = lab.dir.join("smolapp.log");
    let app = Command::new(BIN)
        .args(["--ctl", lab.sock().to_str().unwrap(), "--switch", "dx"])
        .args([
            "--port",
            "app",
            "--ip",
            "10.77.0.2/24",
            "--ip",
            "fd77::2/64",
        ])
        .args(["--mac", host_mac.trim()])
        .args(["--udp", "7777", "--tcp", "7778"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start mswitch-smolapp");
    let app_pid = app.id();
    lab.children.push(app);
    let app_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lab.tuples().len() < 4 {
        let exited = lab.children[0].try_wait().ok().flatten();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "the application did not bind its tuples ({exited:?}): {}",
            app_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut tuples = lab.tuples();
    tuples.sort();
    assert_eq!(
        tuples,
        [
            "tcp:10.77.0.2:7778",
            "tcp:[fd77::2]:7778",
            "udp:10.77.0.2:7777",
            "udp:[fd77::2]:7777"
        ],
        "{}",
        app_log()
    );

    // Idle, it sleeps: well under a tenth of a CPU over a second.
    let t0 = cpu_ticks(app_pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle = cpu_ticks(app_pid) - t0;
    assert!(idle <= 10, "the idle application used {idle} ticks in 1 s");

    // The host's kernel runs an iperf3 server on the same address.
    let iperf_server = Command::new("ip")
        .args(["netns", "exec", &hns, "iperf3", "-s", "-B", HOST_IP])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    lab.children.push(iperf_server);

    // All at once: the application's TCP echo, the kernel's iperf3 (retried
    // while its server starts), the application's UDP echo, ping.
    let started = Instant::now();
    let tcp = tcp_echo(&cns, "10.77.0.2:7778", BYTES);
    let tcp6 = tcp_echo(&cns, "[fd77::2]:7778", BYTES6);
    let cns2 = cns.clone();
    let iperf = std::thread::spawn(move || {
        let mut last = String::new();
        for _ in 0..25 {
            // iperf3 3.12 says "connection refused" (its server is not
            // listening yet) in its JSON, exiting 0.
            let r = sh(&[
                "ip", "netns", "exec", &cns2, "iperf3", "-c", HOST_IP, "-t", "1", "--json",
            ]);
            match r.and_then(|out| {
                let v: serde_json::Value =
                    serde_json::from_str(&out).map_err(|e| format!("iperf3's JSON: {e}"))?;
                match v["error"].as_str() {
                    Some(e) => Err(e.to_owned()),
                    None => Ok(v),
                }
            }) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(last)
    });
    let udp = udp_echo(&cns, "10.77.0.2:7777", 20);
    let udp6 = udp_echo(&cns, "[fd77::2]:7777", 5);
    let ping = sh(&[
        "ip", "netns", "exec", &cns, "ping", "-c", "3", "-i", "0.2", "-W", "2", HOST_IP,
    ]);

    let answers = udp.join().expect("udp thread");
    let want: Vec<String> = (0..20).map(|i| format!("datagram {i}")).collect();
    assert_eq!(answers, want, "{}\n{}", lab.stats(), app_log());
    assert!(ping.is_ok(), "ping to the host's kernel: {ping:?}");
    let answers = udp6.join().expect("udp6 thread");
    assert_eq!(answers, want[..5], "{}\n{}", lab.stats(), app_log());
    let got = tcp6.join().expect("tcp6 thread");
    let got = got.unwrap_or_else(|e| panic!("tcp echo over IPv6: {e}\n{}", app_log()));
    assert_eq!(got.len(), BYTES6);
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "the IPv6 echo differs"
    );
    let got = tcp.join().expect("tcp thread");
    eprintln!(
        "tcp echo of {BYTES} bytes done after {:?} (with iperf3 beside it); idle app: {idle} ticks/s",
        started.elapsed()
    );
    let got = got.unwrap_or_else(|e| panic!("tcp echo: {e}\n{}\n{}", lab.stats(), app_log()));
    assert_eq!(got.len(), BYTES, "{}", lab.stats());
    let first_bad = got.iter().enumerate().position(|(i, &b)| b != pattern(i));
    assert_eq!(first_bad, None, "the echo differs");
    let v = iperf
        .join()
        .expect("iperf thread")
        .unwrap_or_else(|e| panic!("iperf3 to the host's kernel: {e}"));
    let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 0, "iperf3 moved nothing: {v}");

    eprintln!("iperf3 to the kernel: {received} bytes");
    // Both sides were used: the app's tuples delivered, the rest unclaimed.
    let st = lab.stats();
    let counter = |name: &str| {
        let key = format!("[\"{name}\",");
        st.find(&key)
            .and_then(|i| st[i + key.len()..].split(']').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {st}"))
    };
    assert!(counter("demux_delivered") >= (BYTES / 1500) as u64, "{st}");
    assert!(counter("demux_unclaimed") > 0, "{st}");
    assert_eq!(counter("demux_spoofed"), 0, "{st}");

    // A second application, told no MAC: it answers from the one its first
    // frame was sent to (the host's).
    let log2 = lab.dir.join("smolapp2.log");
    let app2 = Command::new(BIN)
        .args(["--ctl", lab.sock().to_str().unwrap(), "--switch", "dx"])
        .args(["--port", "app2", "--ip", "10.77.0.2/24", "--udp", "7779"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log2).expect("log"))
        .spawn()
        .expect("start mswitch-smolapp");
    lab.children.push(app2);
    wait_for("the second application's tuple", || lab.tuples().len() == 5);
    let answers = udp_echo(&cns, "10.77.0.2:7779", 3).join().expect("udp");
    assert_eq!(
        answers,
        want[..3],
        "{}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );

    // The applications gone, their tuples go with their connections.
    // (Children: the application, iperf3's server, the second application.)
    for mut app in [lab.children.remove(2), lab.children.remove(0)] {
        app.kill().expect("kill an application");
        let _ = app.wait();
    }
    wait_for("the tuples to go", || lab.tuples().is_empty());
    drop(lab);
}
