//! Helpers shared by the integration tests: tagged frames, ports, bounded
//! waiting and sending.
#![allow(dead_code)]

pub mod netns;
pub mod tunnel_lab;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mswitch::packet::MemConfig;
use mswitch::port::{MemClient, MemPort, Port, PortId};
use mswitch::switch::{PortTotals, Switch};
use mswitch::wire::MacAddr;
use mswitch::wire::ethernet::udp_frame;

/// Where a frame carries its tag: the UDP payload (after 14 + 20 + 8 bytes).
pub const TAG_OFF: usize = 42;
/// Shortest tagged frame (a minimum-size Ethernet frame).
pub const MIN_LEN: usize = 60;

/// Tests of one binary run on threads of one process and several of them
/// measure process CPU time or spin workers: they take this lock to run one
/// at a time. A test that failed (poisoned the lock) does not block the rest.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The MAC address of the host behind port `p` in these tests.
pub fn mac(p: u16) -> MacAddr {
    MacAddr::local(u32::from(p))
}

pub fn pid(p: u16) -> PortId {
    PortId(p)
}

/// A frame length that varies with the tag, from 60 to 1514 bytes.
pub fn len_for(src: u16, seq: u32) -> usize {
    MIN_LEN + ((seq as usize).wrapping_mul(131) + usize::from(src) * 17) % (1514 - MIN_LEN + 1)
}

/// A UDP frame of `len` bytes from the host on port `src` to `dst`, tagged
/// with (`src`, `seq`); every other payload byte is a known pattern, so a
/// received frame can be compared byte for byte with a rebuilt one.
pub fn frame(len: usize, src: u16, dst: MacAddr, seq: u32) -> Vec<u8> {
    assert!(len >= MIN_LEN);
    let mut f = udp_frame(
        len,
        dst,
        mac(src),
        [10, 0, 0, src as u8],
        [10, 0, 1, 1],
        1000,
        2000,
    );
    f[TAG_OFF..TAG_OFF + 4].copy_from_slice(&seq.to_le_bytes());
    f[TAG_OFF + 4..TAG_OFF + 6].copy_from_slice(&src.to_le_bytes());
    f
}

/// The (source port, sequence number) tag of a frame built by [`frame`].
pub fn tag(f: &[u8]) -> (u16, u32) {
    assert!(
        f.len() >= MIN_LEN,
        "frame of {} bytes is too short to carry a tag",
        f.len()
    );
    let seq = u32::from_le_bytes(f[TAG_OFF..TAG_OFF + 4].try_into().unwrap());
    let src = u16::from_le_bytes(f[TAG_OFF + 4..TAG_OFF + 6].try_into().unwrap());
    (src, seq)
}

/// A mem port named `name`.
pub fn port(name: &str, cfg: MemConfig) -> (Arc<MemPort>, MemClient) {
    MemPort::new(name, cfg).unwrap_or_else(|e| panic!("creating port {name}: {e}"))
}

pub fn default_cfg() -> MemConfig {
    MemConfig::new(256, 2048)
}

/// Polls `f` every millisecond until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    // Bounded in count as well as in time.
    for _ in 0..(timeout.as_millis() as usize + 1) * 4 {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(f(), "timed out after {timeout:?} waiting for {what}");
}

/// Sends every frame, retrying while the incoming ring is full; fails the
/// test if that takes longer than `timeout`.
pub fn send_all(client: &mut MemClient, frames: &[Vec<u8>], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut i = 0;
    for _ in 0..1_000_000 {
        if i == frames.len() {
            return;
        }
        let n = client.send(frames[i..].iter().map(|f| f.as_slice()));
        i += n;
        if n == 0 {
            assert!(
                Instant::now() < deadline,
                "could send only {i} of {} frames in {timeout:?}",
                frames.len()
            );
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    assert_eq!(i, frames.len(), "send loop ran out of iterations");
}

/// Receives until `n` packets have arrived; fails the test after `timeout`.
pub fn recv_n(client: &mut MemClient, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    for _ in 0..1_000_000 {
        got.extend(client.recv_all());
        if got.len() >= n || Instant::now() >= deadline {
            break;
        }
        client.wait(Some(Duration::from_millis(5)));
    }
    assert_eq!(got.len(), n, "expected {n} packets within {timeout:?}");
    got
}

/// The counters of port `p`, which must be attached.
pub fn totals(sw: &Switch, p: u16) -> PortTotals {
    sw.port_stats(PortId(p))
        .unwrap_or_else(|| panic!("port {p} is not attached"))
}

/// Waits until the switch has read `n` packets from port `p`.
pub fn wait_rx(sw: &Switch, p: u16, n: u64) {
    wait_until(
        &format!("the switch to read {n} packets from port {p}"),
        Duration::from_secs(5),
        || totals(sw, p).rx_packets >= n,
    );
    assert_eq!(totals(sw, p).rx_packets, n, "packets read from port {p}");
}

/// Waits until the switch has counted `n` packets sent to port `p`. A
/// client can see packets before they are counted (the switch publishes,
/// then counts), so tests wait for counters instead of reading them at once.
pub fn wait_tx(sw: &Switch, p: u16, n: u64) {
    wait_until(
        &format!("the switch to count {n} packets sent to port {p}"),
        Duration::from_secs(5),
        || totals(sw, p).tx_packets >= n,
    );
    assert_eq!(totals(sw, p).tx_packets, n, "packets sent to port {p}");
}

/// Attaches `port` as number `id` (must succeed).
pub fn attach(sw: &Switch, port: &Arc<MemPort>, id: u16) {
    let got = sw
        .attach(port.clone() as Arc<dyn Port>, Some(PortId(id)))
        .unwrap();
    assert_eq!(got, PortId(id));
}

/// Runs a command; its standard output, or one line saying how it failed.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command that must succeed.
pub fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A unique short tag for names (interface names are limited to 15 bytes).
pub fn unique_tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{:x}{}",
        std::process::id() % 0xfffff,
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Removes what a test lab made: interfaces, namespaces, its directory
/// (each step tried whatever the others did).
pub fn remove_lab(links: &[String], netns: &[String], dir: &std::path::Path) {
    for l in links {
        let _ = sh(&["ip", "link", "del", l]);
    }
    for n in netns {
        let _ = sh(&["ip", "netns", "del", n]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Makes namespace `ns` and a veth pair `outer`/`inner` with `inner` moved
/// into it and IPv6 off on `outer` (kernel IPv6 chatter would be counted
/// as traffic); records both for [`remove_lab`]. Addresses and links are
/// the caller's.
pub fn veth_into_netns(
    ns: &str,
    outer: &str,
    inner: &str,
    netns: &mut Vec<String>,
    links: &mut Vec<String>,
) {
    must(&["ip", "netns", "add", ns]);
    netns.push(ns.to_owned());
    must(&[
        "ip", "link", "add", outer, "type", "veth", "peer", "name", inner,
    ]);
    links.push(outer.to_owned());
    must(&["ip", "link", "set", inner, "netns", ns]);
    let _ = sh(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{outer}.disable_ipv6=1"),
    ]);
}

/// `ovs-ofctl -O OpenFlow13 --timeout=10 OPTS CMD TARGET ARGS...`, which
/// must succeed; its stdout.
pub fn ovs_ofctl(opts: &[&str], cmd: &str, target: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "--timeout=10"])
        .args(opts)
        .args([cmd, target])
        .args(args)
        .output()
        .expect("run ovs-ofctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ovs-ofctl {cmd} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// (rx_packets, tx_packets, drops) of every port of the first switch in
/// `ctl stats --json` output, by port number.
pub fn port_counters(stats_json: &str) -> Vec<(u64, u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(stats_json).expect("stats json");
    let ports = v[0]["ports"].as_array().expect("ports").clone();
    ports
        .iter()
        .map(|p| {
            let d = &p["drops"];
            let drops = ["dest_full", "no_dest", "module", "bad_frame", "oversize"]
                .iter()
                .map(|k| d[k].as_u64().unwrap_or(0))
                .sum();
            (
                p["rx_packets"].as_u64().unwrap_or(0),
                p["tx_packets"].as_u64().unwrap_or(0),
                drops,
            )
        })
        .collect()
}

/// `b` in lower-case hex, two digits a byte.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `ovs-ofctl ofp-print HEX`: Open vSwitch's reading of a message.
pub fn ofp_print(b: &[u8]) -> String {
    let out = std::process::Command::new("ovs-ofctl")
        .args(["ofp-print", &hex(b)])
        .output()
        .expect("run ovs-ofctl ofp-print");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
