//! virtio-user ports end to end: `mswitch pkt-gen` as the frontend (the
//! VM's side) of vhost-user ports of `mswitch run`, at a fixed rate:
//!
//!   pkt-gen -f tx  virtio-user:A,server  ==  vhost-user:A,client [switch]
//!   pkt-gen -f rx  virtio-user:B,server  ==  vhost-user:B,client [switch]
//!
//! Every frame sent arrives and every count agrees; the switch killed and
//! started again mid-stream costs the frames in flight and nothing else; a
//! virtio-user port attached to a running switch with `ctl attach` carries
//! traffic to a vhost-user pkt-gen; bad specs and paths fail with one line.
//! Each test has its own directory of sockets, removed on drop with every
//! process it started.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

/// Processes and sockets of one test.
struct Lab {
    dir: PathBuf,
    switch: Option<Child>,
    gens: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        let dir = std::env::temp_dir().join(format!("msw-vio-{}", common::unique_tag()));
        std::fs::create_dir_all(&dir).expect("test dir");
        Lab {
            dir,
            switch: None,
            gens: Vec::new(),
        }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
    }

    /// `mswitch run` with `ports`, logging to `switch.log` (appended to, so
    /// a restarted switch's lines follow the first one's).
    fn switch(&mut self, module: &str, ports: &[String]) {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--module", module, "--ctl", &self.path("ctl.sock")]);
        for p in ports {
            cmd.args(["--port", p]);
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("switch.log"))
            .expect("log");
        self.switch = Some(
            cmd.stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start mswitch run"),
        );
        common::wait_until("mswitch run to start", Duration::from_secs(10), || {
            self.ctl(&["list"]).is_ok()
        });
    }

    fn kill_switch(&mut self) {
        if let Some(mut c) = self.switch.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let c = self.path("ctl.sock");
        let mut v = vec![BIN, "ctl", "--ctl", &c];
        v.extend_from_slice(args);
        common::sh(&v)
    }

    /// (rx_packets, tx_packets, drops) of every port, by port number.
    fn counters(&self) -> Vec<(u64, u64, u64)> {
        common::port_counters(&self.ctl(&["stats", "--json"]).expect("stats"))
    }

    /// The counters once they stop changing (for up to 3 s): a worker still
    /// forwarding the last frames of a stream has counted them as read but
    /// not yet as sent.
    fn settled_counters(&self) -> Vec<(u64, u64, u64)> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = self.counters();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.counters();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Starts `mswitch pkt-gen ARGS --json`; its stdout goes to NAME.out,
    /// its stderr to NAME.err. Returns its index for `finish`.
    fn pktgen(&mut self, name: &str, args: &[&str]) -> usize {
        let out = File::create(self.dir.join(format!("{name}.out"))).expect("out");
        let err = File::create(self.dir.join(format!("{name}.err"))).expect("err");
        let child = Command::new(BIN)
            .arg("pkt-gen")
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pkt-gen");
        self.gens.push(child);
        self.gens.len() - 1
    }

    /// Waits (at most `timeout`) for pkt-gen `i` to exit successfully and
    /// returns its summary.
    fn finish(&mut self, i: usize, name: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = self.gens[i].try_wait().expect("wait") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "pkt-gen {name} did not finish in {timeout:?}:\n{}\nswitch:\n{}",
                self.log(&format!("{name}.err")),
                self.log("switch.log")
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let err = self.log(&format!("{name}.err"));
        assert!(st.success(), "pkt-gen {name} failed ({st}):\n{err}");
        let out = self.log(&format!("{name}.out"));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {out}"))
    }

    fn wait_log(&self, f: &str, what: &str, timeout: Duration) {
        common::wait_until(&format!("'{what}' in {f}"), timeout, || {
            self.log(f).contains(what)
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.gens.iter_mut().chain(self.switch.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RATE: &str = "20000";

/// The receiver, then the switch (connecting to both sockets), then the
/// sender; the sender starts once the receiver's backend is there.
fn loop_up(lab: &mut Lab, n: u64, len: usize, rx_secs: u32) -> (usize, usize) {
    let (a, b) = (lab.path("a.sock"), lab.path("b.sock"));
    let n = n.to_string();
    let rx = lab.pktgen(
        "rx",
        &[
            "-i",
            // Room for the sender's catch-up after a scheduling hiccup.
            &format!("virtio-user:{b},server,ring=1024"),
            "-f",
            "rx",
            "-n",
            &n,
            "-D",
            &rx_secs.to_string(),
        ],
    );
    lab.switch(
        "learn",
        &[
            format!("vhost-user:{a},client,name=vm1"),
            format!("vhost-user:{b},client,name=vm2"),
        ],
    );
    lab.wait_log("rx.err", "peer connected", Duration::from_secs(5));
    let tx = lab.pktgen(
        "tx",
        &[
            "-i",
            &format!("virtio-user:{a},server"),
            "-f",
            "tx",
            "-n",
            &n,
            "-R",
            RATE,
            "-l",
            &len.to_string(),
        ],
    );
    (rx, tx)
}

/// N frames of `len` bytes at a fixed rate: all of them arrive, and the
/// sender's, the switch's and the receiver's counts agree.
fn all_arrive(len: usize) {
    let _g = common::serial();
    let mut lab = Lab::new();
    let n = 20_000u64;
    let (rx, tx) = loop_up(&mut lab, n, len, 10);
    let t = lab.finish(tx, "tx", Duration::from_secs(10));
    let r = lab.finish(rx, "rx", Duration::from_secs(12));
    let c = lab.counters();
    eprintln!("{len} B: tx {t}\nrx {r}\nswitch {c:?}");
    assert_eq!(t["packets"], n, "the sender sent them all");
    assert_eq!(r["packets"], n, "the receiver got them all; switch {c:?}");
    assert_eq!(r["bytes"], n * len as u64, "at their length");
    assert_eq!(c[0], (n, 0, 0), "the switch read them from port 1");
    assert_eq!(c[1], (0, n, 0), "and sent them to port 2");
    // About 20000 frames/s: the rate limit holds through the switch.
    let pps = r["pps"].as_f64().unwrap();
    assert!((15_000.0..25_000.0).contains(&pps), "received at {pps} pps");
}

#[test]
fn frames_of_64_bytes_all_arrive_at_a_fixed_rate() {
    all_arrive(64);
}

#[test]
fn frames_of_1518_bytes_all_arrive_at_a_fixed_rate() {
    all_arrive(1518);
}

/// The switch (the backend of both pkt-gens) killed and started again
/// mid-stream: both frontends notice, take the new backend, and traffic
/// goes on; only what was in flight is lost.
#[test]
fn the_backend_killed_and_restarted_mid_stream() {
    let _g = common::serial();
    let mut lab = Lab::new();
    let n = 60_000u64; // 3 s at 20000/s
    let (rx, tx) = loop_up(&mut lab, n, 64, 5);
    std::thread::sleep(Duration::from_millis(1000));
    let before = lab.counters();
    lab.kill_switch();
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (lab.path("a.sock"), lab.path("b.sock"));
    lab.switch(
        "learn",
        &[
            format!("vhost-user:{a},client,name=vm1"),
            format!("vhost-user:{b},client,name=vm2"),
        ],
    );
    let t = lab.finish(tx, "tx", Duration::from_secs(10));
    let r = lab.finish(rx, "rx", Duration::from_secs(10));
    let after = lab.settled_counters();
    eprintln!("restart: tx {t}\nrx {r}\nfirst switch {before:?}\nsecond {after:?}");
    assert_eq!(t["packets"], n, "the sender kept going to the end");
    for g in ["tx.err", "rx.err"] {
        assert!(lab.log(g).contains("backend gone"), "{g}: {}", lab.log(g));
    }
    // The second switch carried the rest of the stream (some of its first
    // burst, as the sender catches up with its rate, may not fit the
    // receiver's queue).
    let got = r["packets"].as_u64().unwrap();
    assert!(before[0].0 >= 10_000, "traffic before the kill: {before:?}");
    assert!(after[0].0 >= 30_000, "traffic after the restart: {after:?}");
    assert!(after[1].1 + after[1].2 >= after[0].0 - 512, "{after:?}");
    assert!(
        got >= before[1].1 + after[1].1 - 512 && got <= n,
        "received {got}: {before:?} then {after:?}"
    );
}

/// `ctl attach` of a virtio-user port to a running switch; its backend is
/// a vhost-user pkt-gen, so frames cross the switch into a virtio-user
/// port and out to a vhost-user one.
#[test]
fn a_virtio_user_port_attached_to_a_running_switch() {
    let _g = common::serial();
    let mut lab = Lab::new();
    let (a, b) = (lab.path("a.sock"), lab.path("b.sock"));
    let n = 5_000u64;
    let ns = n.to_string();
    let rx = lab.pktgen(
        "rx",
        &[
            "-i",
            &format!("vhost-user:{b}"),
            "-f",
            "rx",
            "-n",
            &ns,
            "-D",
            "8",
        ],
    );
    lab.switch("learn", &[format!("vhost-user:{a},client,name=vm1")]);
    let out = lab
        .ctl(&["attach", "sw0", &format!("virtio-user:{b},name=sw-b")])
        .expect("attach");
    assert!(out.contains("virtio-user"), "{out}");
    // Bad specs and paths are refused in one line; the switch goes on.
    File::create(lab.dir.join("plain")).unwrap();
    for (spec, want) in [
        (
            "virtio-user:/nonexistent-dir/x.sock".to_string(),
            "no directory",
        ),
        (
            format!("virtio-user:{},server", lab.path("plain")),
            "not a socket",
        ),
        (format!("virtio-user:{b},ring=100"), "power of two"),
        (format!("virtio-user:{b},queues=2"), "unknown port option"),
    ] {
        let e = lab.ctl(&["attach", "sw0", &spec]).unwrap_err();
        assert!(e.contains(want) && !e.trim().contains('\n'), "{spec}: {e}");
    }
    // The port has connected when the receiving pkt-gen's port runs.
    std::thread::sleep(Duration::from_millis(300));
    let tx = lab.pktgen(
        "tx",
        &[
            "-i",
            &format!("virtio-user:{a},server"),
            "-f",
            "tx",
            "-n",
            &ns,
            "-R",
            RATE,
            "-l",
            "128",
        ],
    );
    let t = lab.finish(tx, "tx", Duration::from_secs(10));
    let r = lab.finish(rx, "rx", Duration::from_secs(10));
    let c = lab.counters();
    eprintln!("attach: tx {t}\nrx {r}\nswitch {c:?}");
    assert_eq!(t["packets"], n);
    assert_eq!(r["packets"], n, "{}", lab.log("switch.log"));
    assert_eq!(c[0], (n, 0, 0));
    assert_eq!(c[1], (0, n, 0));
}

/// pkt-gen refuses bad virtio-user specs and paths with one line.
#[test]
fn pkt_gen_refuses_bad_specs_in_one_line() {
    let lab = Lab::new();
    let file = lab.path("plain");
    File::create(&file).unwrap();
    for (spec, want) in [
        (
            "virtio-user:/nonexistent-dir/x.sock,server".to_string(),
            "bind",
        ),
        (format!("virtio-user:{file},server"), "not a socket"),
        ("virtio-user:/tmp/".to_string(), "bad socket path"),
        ("virtio-user:/tmp/x,ring=3".to_string(), "power of two"),
        (
            "virtio-user:/tmp/x,client,server,bogus".to_string(),
            "unknown port option",
        ),
    ] {
        let e = common::sh(&[BIN, "pkt-gen", "-i", &spec, "-f", "rx", "-D", "1"]).unwrap_err();
        assert!(e.contains(want), "{spec}: {e}");
        let msg = e.split("failed: ").nth(1).unwrap_or(&e);
        assert!(!msg.contains('\n'), "{spec}: {e}");
    }
}

// ---------------------------------------------------------------------------
// A lying backend, in process: the vhost-user protocol spoken by hand, so
// that it can write whatever it likes into the rings.

mod bad_backend {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::net::{UnixListener, UnixStream};

    use mswitch::sys::Region;

    pub const SIZE: u16 = 8;

    #[derive(Default, Clone, Copy)]
    pub struct Ring {
        pub desc: u64,
        pub used: u64,
        pub avail: u64,
    }

    /// One connection from a virtio-user port, set up.
    pub struct Backend {
        pub sock: UnixStream,
        mem: Region,
        uva: u64,
        pub rings: [Ring; 2],
        calls: Vec<File>,
        pub kicks: Vec<File>,
        used: [u16; 2],
        last_avail: [u16; 2],
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    impl Backend {
        /// Accepts the port's connection and answers until both queues
        /// have their kick eventfds (no protocol features: the setup ends
        /// there).
        pub fn accept(l: &UnixListener) -> Backend {
            let waited = std::time::Duration::from_secs(5);
            assert!(
                mswitch::sys::poll_readable(l.as_raw_fd(), Some(waited)),
                "the port did not connect within {waited:?}"
            );
            let (sock, _) = l.accept().expect("accept");
            sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let (mut mem, mut uva) = (None, 0);
            let mut rings = [Ring::default(); 2];
            let (mut calls, mut kicks) = (Vec::new(), Vec::new());
            while kicks.len() < 2 {
                let mut hdr = [0u8; 12];
                let (n, fds) = mswitch::sys::recv_with_fds(sock.as_raw_fd(), &mut hdr).unwrap();
                assert_eq!(n, 12, "a whole header");
                let (req, size) = (u32_at(&hdr, 0), u32_at(&hdr, 8) as usize);
                let mut body = vec![0u8; size];
                (&sock).read_exact(&mut body).unwrap();
                let mut fds: Vec<OwnedFd> = fds;
                match req {
                    1 => {
                        // GET_FEATURES: VIRTIO_F_VERSION_1 only.
                        let mut r = Vec::new();
                        r.extend_from_slice(&1u32.to_le_bytes());
                        r.extend_from_slice(&5u32.to_le_bytes());
                        r.extend_from_slice(&8u32.to_le_bytes());
                        r.extend_from_slice(&(1u64 << 32).to_le_bytes());
                        (&sock).write_all(&r).unwrap();
                    }
                    2 | 3 | 8 | 10 => {}
                    5 => {
                        // SET_MEM_TABLE: one region.
                        assert_eq!(u32_at(&body, 0), 1);
                        let (gpa, len, u) =
                            (u64_at(&body, 8), u64_at(&body, 16), u64_at(&body, 24));
                        assert_eq!(gpa, u, "guest addresses are the frontend's");
                        uva = u;
                        mem = Some(Region::map(fds.remove(0), len as usize).unwrap());
                    }
                    9 => {
                        let i = u32_at(&body, 0) as usize;
                        rings[i] = Ring {
                            desc: u64_at(&body, 8),
                            used: u64_at(&body, 16),
                            avail: u64_at(&body, 24),
                        };
                    }
                    12 | 13 => {
                        let f = File::from(fds.remove(0));
                        if req == 12 {
                            kicks.push(f)
                        } else {
                            calls.push(f)
                        }
                    }
                    r => panic!("unexpected request {r}"),
                }
            }
            Backend {
                sock,
                mem: mem.expect("a memory table"),
                uva,
                rings,
                calls,
                kicks,
                used: [0; 2],
                last_avail: [0; 2],
            }
        }

        fn ptr(&self, addr: u64, len: usize) -> *mut u8 {
            let off = addr.checked_sub(self.uva).expect("inside the region") as usize;
            assert!(off + len <= self.mem.len(), "inside the region");
            self.mem.as_ptr().wrapping_add(off)
        }

        pub fn get<T: Copy>(&self, addr: u64) -> T {
            let p = self.ptr(addr, size_of::<T>());
            // SAFETY: inside the mapping (checked by `ptr`).
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::read_volatile(p.cast::<T>())
            }
        }

        pub fn put<T: Copy>(&self, addr: u64, v: T) {
            let p = self.ptr(addr, size_of::<T>());
            // SAFETY: as in `get`.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write_volatile(p.cast::<T>(), v)
            }
        }

        pub fn put_bytes(&self, addr: u64, b: &[u8]) {
            let p = self.ptr(addr, b.len());
            // SAFETY: as in `get`.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::copy_nonoverlapping(b.as_ptr(), p, b.len())
            }
        }

        pub fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
            (0..len as u64).map(|k| self.get::<u8>(addr + k)).collect()
        }

        pub fn avail_idx(&self, q: usize) -> u16 {
            self.get(self.rings[q].avail + 2)
        }

        /// The next descriptor offered on queue `q`: (id, address, length).
        pub fn take(&mut self, q: usize) -> Option<(u16, u64, u32)> {
            if self.avail_idx(q) == self.last_avail[q] {
                return None;
            }
            let slot = u64::from(self.last_avail[q] % SIZE);
            let id: u16 = self.get(self.rings[q].avail + 4 + 2 * slot);
            self.last_avail[q] = self.last_avail[q].wrapping_add(1);
            let d = self.rings[q].desc + 16 * u64::from(id % SIZE);
            Some((id, self.get(d), self.get(d + 8)))
        }

        /// Writes a used entry, good or bad, and publishes it.
        pub fn used(&mut self, q: usize, id: u32, len: u32) {
            let slot = u64::from(self.used[q] % SIZE);
            let e = self.rings[q].used + 4 + 8 * slot;
            self.put(e, id);
            self.put(e + 4, len);
            self.used[q] = self.used[q].wrapping_add(1);
            self.put(self.rings[q].used + 2, self.used[q]);
        }

        pub fn set_used_idx(&mut self, q: usize, v: u16) {
            self.put(self.rings[q].used + 2, v);
        }

        /// Asks not to be kicked on queue `q` (VRING_USED_F_NO_NOTIFY).
        pub fn no_kicks(&self, q: usize) {
            self.put(self.rings[q].used, 1u16);
        }

        pub fn call(&self, q: usize) {
            (&self.calls[q]).write_all(&1u64.to_ne_bytes()).unwrap();
        }

        pub fn kicked(&self, q: usize) -> bool {
            let fd = self.kicks[q].as_raw_fd();
            let r = mswitch::sys::poll_readable(fd, Some(std::time::Duration::ZERO));
            if r {
                let mut b = [0u8; 8];
                let _ = (&self.kicks[q]).read(&mut b);
            }
            r
        }
    }
}

/// A backend that returns descriptors it does not hold, lengths past their
/// buffers and finally an impossible used index: its lies are counted and
/// skipped, good frames still pass both ways, kicks and calls follow the
/// rings' flags, and the port drops the connection and connects again.
#[test]
fn a_lying_backend_is_counted_and_dropped() {
    use mswitch::packet::MemConfig;
    use mswitch::port::Port;
    use mswitch::port::driver::PortDriver;
    use mswitch::port::vhost_user::Mode;
    use mswitch::port::virtio_user::VirtioUserPort;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::Ordering;

    let _g = common::serial();
    let lab = Lab::new();
    let sock = lab.dir.join("bad.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let cfg = MemConfig::new(u32::from(bad_backend::SIZE), 2048);
    let port = VirtioUserPort::open("vio", &sock, Mode::Client, cfg).unwrap();
    let mut drv = PortDriver::new(port.clone());
    let mut be = bad_backend::Backend::accept(&l);
    common::wait_until("the port to run", Duration::from_secs(5), || {
        port.connected()
    });
    assert!(port.link_up());

    // Receive queue: every buffer offered, 12 + 2048 bytes each.
    assert_eq!(be.avail_idx(0), bad_backend::SIZE);
    let mut bufs = Vec::new();
    while let Some((id, addr, len)) = be.take(0) {
        assert!(len >= 12 + 1518, "buffer of {len} bytes");
        bufs.push((id, addr));
    }
    let f = common::frame(64, 1, common::mac(2), 7);
    be.put_bytes(bufs[0].1 + 12, &f);
    be.used(0, u32::from(bufs[0].0), 12 + 64); // good
    be.used(0, 99, 12 + 64); // no such descriptor
    be.used(0, u32::from(bufs[1].0), 5000); // past its buffer
    be.used(0, u32::from(bufs[2].0), 4); // shorter than the header
    be.used(0, u32::from(bufs[0].0), 12 + 64); // again, before it came back
    let mut got = Vec::new();
    drv.recv(64, |fr| got.push(fr.to_vec()));
    assert_eq!(got, std::slice::from_ref(&f), "only the good frame");
    let c = port.counters();
    assert_eq!(c.bad_used.load(Ordering::Relaxed), 2);
    assert_eq!(c.rx_bad_len.load(Ordering::Relaxed), 2);
    // The three buffers came back (the good one and the two bad lengths).
    assert_eq!(be.avail_idx(0), bad_backend::SIZE + 3);

    // Transmit: a frame reaches the backend, kicked since it asked.
    let out = common::frame(100, 2, common::mac(1), 9);
    assert_eq!(
        drv.send_with(1, |_, b| {
            b[..100].copy_from_slice(&out);
            100
        }),
        1
    );
    let (id, addr, len) = be.take(1).expect("a frame offered");
    assert_eq!(len, 12 + 100);
    assert_eq!(be.bytes(addr + 12, 100), out);
    assert!(be.kicked(1), "kicked: the backend did not say otherwise");
    be.used(1, u32::from(id), 0);
    be.no_kicks(1);
    assert_eq!(
        drv.send_with(1, |_, b| {
            b[..100].copy_from_slice(&out);
            100
        }),
        1
    );
    assert!(be.take(1).is_some());
    assert!(!be.kicked(1), "not kicked once the backend said so");

    // Sleeping: armed, the port is woken by the backend's call.
    let fd = port.incoming_fd(0).unwrap();
    assert!(port.arm_incoming(0, drv_cursor(&port)));
    assert!(!mswitch::sys::poll_readable(
        fd,
        Some(Duration::from_millis(20))
    ));
    let (id, addr, _) = {
        // A buffer given back above.
        be.take(0).expect("a buffer")
    };
    be.put_bytes(addr + 12, &f);
    be.used(0, u32::from(id), 12 + 64);
    be.call(0);
    assert!(mswitch::sys::poll_readable(
        fd,
        Some(Duration::from_secs(2))
    ));
    port.disarm_incoming(0);
    got.clear();
    drv.recv(64, |fr| got.push(fr.to_vec()));
    assert_eq!(got.len(), 1);

    // An impossible used index: the queue breaks, the connection is dropped.
    be.set_used_idx(0, 1000);
    drv.recv(64, |_| {});
    assert_eq!(c.broken.load(Ordering::Relaxed), 1);
    let mut b = [0u8; 1];
    use std::io::Read;
    be.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!((&be.sock).read(&mut b).unwrap(), 0, "the port hung up");
    common::wait_until("the port to stop", Duration::from_secs(2), || {
        !port.link_up()
    });
    drop(be);

    // It connects again, to fresh memory, and frames pass.
    let mut be = bad_backend::Backend::accept(&l);
    common::wait_until("the port to run again", Duration::from_secs(5), || {
        port.connected()
    });
    let (id, addr, _) = be.take(0).expect("buffers again");
    be.put_bytes(addr + 12, &f);
    be.used(0, u32::from(id), 12 + 64);
    got.clear();
    drv.recv(64, |fr| got.push(fr.to_vec()));
    assert_eq!(got, [f]);
    assert_eq!(c.connects.load(Ordering::Relaxed), 2);
    drop(drv);
    drop(port);
}

/// Where a `PortDriver` made just now would read the incoming ring.
fn drv_cursor(port: &std::sync::Arc<mswitch::port::virtio_user::VirtioUserPort>) -> u32 {
    use mswitch::port::Port;
    port.mem()
        .incoming()
        .hdr
        .tail
        .load(std::sync::atomic::Ordering::Acquire)
}
