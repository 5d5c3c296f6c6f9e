//! Helpers for tests that run things in network namespaces: the root
//! check, a thread inside a namespace, ping and tcpdump from one.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::sh;

pub fn is_root() -> bool {
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

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        #[allow(unsafe_code)]
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// `ping -c 3` (0.2 s apart, 2 s to answer) from namespace `ns`, with
/// `extra` options.
pub fn ping(ns: &str, to: &str, extra: &[&str]) -> Result<String, String> {
    let mut v = vec![
        "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2",
    ];
    v.extend_from_slice(extra);
    v.push(to);
    sh(&v)
}

/// What tcpdump (`-n -l`, with `opts`, e.g. `-e` or a filter) saw on
/// `iface` in namespace `ns` while `during` ran: one line per packet.
/// Waits (bounded) until tcpdump listens before `during`.
pub fn capture(ns: &str, iface: &str, opts: &[&str], during: impl FnOnce()) -> String {
    let mut td = Command::new("ip")
        .args(["netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-l"])
        .args(["-c", "200"])
        .args(opts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // tcpdump says "listening on" on stderr once it captures.
    let mut err = std::io::BufReader::new(td.stderr.take().unwrap());
    let mut said = String::new();
    for _ in 0..5 {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut err, &mut line);
        said += &line;
        if line.contains("listening") || line.is_empty() {
            break;
        }
    }
    if !said.contains("listening") {
        let _ = td.kill();
        let _ = td.wait();
        panic!("tcpdump: {said}");
    }
    during();
    std::thread::sleep(Duration::from_millis(500));
    let _ = td.kill();
    let out = td.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mswitch ctl --ctl CTL ARGS...`: its output, or one line saying how it
/// failed.
pub fn ctl(ctl: &str, args: &[&str]) -> Result<String, String> {
    let mut v = vec![env!("CARGO_BIN_EXE_mswitch"), "ctl", "--ctl", ctl];
    v.extend_from_slice(args);
    sh(&v)
}

/// Spawns `cmd` (an `mswitch run` with control socket `ctl`, perhaps
/// under `ip netns exec`) and waits (at most 10 s) until the socket
/// answers; panics with what it said if it exits first.
pub fn start_switch(mut cmd: Command, ctl_path: &str) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mswitch run");
    let deadline = Instant::now() + Duration::from_secs(10);
    // The socket accepts before the switch is set up: wait for an answer.
    while ctl(ctl_path, &["list"]).is_err() {
        if let Some(st) = child.try_wait().ok().flatten() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("mswitch run exited ({st}): {err}");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mswitch run did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
