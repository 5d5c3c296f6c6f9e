//! AF_XDP ports against real interfaces: each test builds its own network
//! namespace and veth pair (names carry the pid and a per-test tag), opens
//! the port on the root-namespace end and talks to it through a raw
//! AF_PACKET socket on the other end, inside the namespace. Everything is
//! removed afterwards, also when a test fails.
//!
//! The tests need root (they create namespaces and load XDP programs); run
//! as another user they print why and pass without checking anything.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mswitch::packet::{MemConfig, Slot};
use mswitch::port::Port;
use mswitch::port::afxdp::{AfXdpError, AfXdpPort};

/// An EtherType for local experiments: nothing else on the link uses it.
const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 4] = b"MSWX";
const DEADLINE: Duration = Duration::from_secs(5);

fn is_root(test: &str) -> bool {
    let out = Command::new("id").arg("-u").output();
    let uid = out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if uid == "0" {
        true
    } else {
        eprintln!(
            "SKIPPED {test}: AF_XDP tests need root (id -u says {uid:?}); they run as root in CI"
        );
        false
    }
}

/// Runs a command, panicking with its output if it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace holding one end of a veth pair whose other end stays in the
/// root namespace. Dropping it deletes both.
struct Net {
    ns: String,
    /// The root-namespace end (the port's interface).
    host: String,
    /// The namespaced end.
    peer: String,
}

impl Net {
    fn new(tag: char) -> Net {
        Net::with_queues(tag, 1)
    }

    fn with_queues(tag: char, queues: u32) -> Net {
        let q = queues.to_string();
        let pid = std::process::id();
        let net = Net {
            ns: format!("mswx-{pid}-{tag}"),
            host: format!("mx{pid}{tag}h"),
            peer: format!("mx{pid}{tag}p"),
        };
        // Built step by step with the guard alive, so a failure halfway
        // still removes what exists.
        run(&["ip", "netns", "add", &net.ns]);
        // With one queue each way, every frame from the peer lands on queue 0.
        run(&[
            "ip",
            "link",
            "add",
            &net.host,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &net.peer,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ]);
        run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", net.host),
        ]);
        run(&["ip", "link", "set", &net.peer, "netns", &net.ns]);
        net.in_ns(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", net.peer),
        ]);
        run(&["ip", "link", "set", &net.host, "up"]);
        net.in_ns(&["ip", "link", "set", &net.peer, "up"]);
        net
    }

    fn in_ns(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.ns];
        v.extend_from_slice(args);
        run(&v)
    }

    fn set_mtu(&self, mtu: u32) {
        let m = mtu.to_string();
        run(&["ip", "link", "set", &self.host, "mtu", &m]);
        self.in_ns(&["ip", "link", "set", &self.peer, "mtu", &m]);
    }

    /// What `ip -d link show` says about the host end.
    fn host_details(&self) -> String {
        run(&["ip", "-d", "link", "show", "dev", &self.host])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn has_xdp(details: &str) -> bool {
    details.contains("prog/xdp") || details.split_whitespace().any(|w| w.starts_with("xdp"))
}

/// A raw AF_PACKET socket on the namespaced end, seeing only our EtherType.
struct PacketSock {
    fd: OwnedFd,
}

impl PacketSock {
    fn open(net: &Net) -> PacketSock {
        let ns = format!("/run/netns/{}", net.ns);
        let peer = net.peer.clone();
        // setns changes only the calling thread; the socket stays in the
        // namespace it was created in after the thread is gone.
        std::thread::spawn(move || {
            let nsf = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("{ns}: {e}"));
            // SAFETY: a valid namespace fd; affects only this thread.
            let r = unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let proto = ETHERTYPE.to_be();
            // SAFETY: plain syscall.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: just created, owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = std::ffi::CString::new(peer).unwrap();
            // SAFETY: valid C string.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(ifindex > 0, "peer interface not found in its namespace");
            // SAFETY: sockaddr_ll is plain data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: a complete sockaddr_ll of the size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let big: libc::c_int = 16 << 20;
            // SAFETY: an int option of the size passed.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&raw const big).cast(),
                    4,
                );
            }
            PacketSock { fd }
        })
        .join()
        .expect("opening the packet socket in the namespace")
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: sends `frame.len()` bytes from a live slice.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame received (not sent) on the interface, or None at `deadline`.
    fn recv(&self, deadline: Instant) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd.
            unsafe { libc::poll(&raw mut p, 1, left.as_millis().max(1) as i32) };
            // SAFETY: sockaddr_ll is plain data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut sl = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: the kernel writes at most buf.len() bytes and sl bytes.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut sll).cast(),
                    &raw mut sl,
                )
            };
            if n > 0 && sll.sll_pkttype != libc::PACKET_OUTGOING {
                buf.truncate(n as usize);
                return Some(buf);
            }
        }
    }
}

/// Test frame `seq` of `len` bytes: broadcast, our EtherType, magic, the
/// sequence number and a pattern that depends on both.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x58, 0x01]);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&seq.to_be_bytes());
    let mut i = 0u32;
    while f.len() < len {
        f.push((seq.wrapping_mul(31).wrapping_add(i * 7)) as u8);
        i += 1;
    }
    f
}

fn len_for(seq: u32) -> usize {
    60 + (seq as usize * 131) % (1514 - 60 + 1)
}

fn is_ours(f: &[u8]) -> bool {
    f.len() >= 22 && f[12..14] == ETHERTYPE.to_be_bytes() && &f[14..18] == MAGIC
}

/// Reads what the port put on its incoming ring, as the switch does.
fn drain_incoming(port: &AfXdpPort, cur: &mut u32, out: &mut Vec<Vec<u8>>) {
    port.sync_incoming(0);
    let mem = port.mem();
    let ring = mem.incoming();
    let n = ring.available(*cur);
    for i in 0..n {
        let s = ring.slot(cur.wrapping_add(i));
        let data = mem.buf(s.buf, usize::from(s.len)).expect("valid slot");
        if is_ours(data) {
            out.push(data.to_vec());
        }
    }
    *cur = cur.wrapping_add(n);
    ring.release(*cur);
}

/// Receives until `want` frames came or the deadline passed.
fn receive(port: &AfXdpPort, cur: &mut u32, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < want && Instant::now() < deadline {
        drain_incoming(port, cur, &mut got);
        if got.len() < want {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

fn poll_readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&raw mut p, 1, timeout.as_millis() as i32) };
    n > 0 && p.revents & libc::POLLIN != 0
}

fn open(net: &Net, buf_size: u32) -> std::sync::Arc<AfXdpPort> {
    let port = AfXdpPort::open("x", &net.host, 0, MemConfig::new(256, buf_size))
        .unwrap_or_else(|e| panic!("open on {}: {e}", net.host));
    eprintln!(
        "afxdp port on {}: {} mode, attached as: {}",
        net.host,
        port.mode(),
        xdp_attach_line(&net.host_details())
    );
    port
}

fn xdp_attach_line(details: &str) -> String {
    details
        .lines()
        .map(str::trim)
        .find(|l| l.contains("prog/xdp"))
        .unwrap_or("(no prog/xdp line)")
        .to_owned()
}

#[test]
fn frames_from_the_wire_arrive_intact() {
    if !is_root("frames_from_the_wire_arrive_intact") {
        return;
    }
    let net = Net::new('r');
    let port = open(&net, 2048);
    assert_eq!(port.kind(), "af_xdp");
    assert_eq!(port.mode(), "copy", "veth has no zero-copy AF_XDP");
    let sock = PacketSock::open(&net);
    let mut cur = port.mem().incoming().hdr.tail.load(Ordering::Acquire);

    // Idle: nothing pending, so the worker may sleep on the socket...
    assert!(port.arm_incoming(0, cur));
    let fd = port.incoming_fd(0).expect("an AF_XDP port can signal");
    assert!(!poll_readable(fd, Duration::ZERO));
    // ...which becomes readable when a frame arrives.
    sock.send(&frame(0, 60));
    assert!(
        poll_readable(fd, DEADLINE),
        "the socket did not become readable"
    );
    assert!(!port.arm_incoming(0, cur), "frames wait: must not sleep");
    port.disarm_incoming(0);
    let got = receive(&port, &mut cur, 1);
    assert_eq!(got, vec![frame(0, 60)]);

    // A burst in several rounds, lengths from 60 to 1514 bytes.
    let mut sent = Vec::new();
    let mut got = Vec::new();
    for round in 0..4u32 {
        for k in 0..100 {
            let seq = 1 + round * 100 + k;
            let f = frame(seq, len_for(seq));
            sock.send(&f);
            sent.push(f);
        }
        got.extend(receive(&port, &mut cur, 100));
    }
    assert_eq!(
        got.len(),
        sent.len(),
        "kernel stats: {:?}",
        port.kernel_stats()
    );
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }
    assert_eq!(port.rx_oversize(), 0);
}

#[test]
fn frames_longer_than_the_buffers_are_dropped_and_counted() {
    if !is_root("frames_longer_than_the_buffers_are_dropped_and_counted") {
        return;
    }
    let net = Net::new('o');
    // MTU 1500: 1518-byte frames fit 1536-byte buffers, so the port opens.
    let port = open(&net, 1536);
    // Then the MTU grows behind the port's back.
    net.set_mtu(1700);
    let sock = PacketSock::open(&net);
    let mut cur = port.mem().incoming().hdr.tail.load(Ordering::Acquire);
    sock.send(&frame(1, 100));
    sock.send(&frame(2, 1600));
    sock.send(&frame(3, 1536));
    sock.send(&frame(4, 200));
    let got = receive(&port, &mut cur, 3);
    assert_eq!(got, vec![frame(1, 100), frame(3, 1536), frame(4, 200)]);
    assert_eq!(port.rx_oversize(), 1);
}

#[test]
fn frames_from_the_switch_reach_the_wire() {
    if !is_root("frames_from_the_switch_reach_the_wire") {
        return;
    }
    let net = Net::new('t');
    let port = open(&net, 2048);
    let sock = PacketSock::open(&net);
    let mem = port.mem();
    let ring = mem.outgoing();
    let mut head = ring.hdr.head.load(Ordering::Acquire);
    let total = 600u32;
    let mut sent = Vec::new();
    let stop = AtomicBool::new(false);
    let received = std::thread::scope(|s| {
        // Other "workers" call outgoing_published at the same time.
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    port.outgoing_published();
                    std::thread::yield_now();
                }
            });
        }
        let rx = s.spawn(|| {
            let mut v = Vec::new();
            let deadline = Instant::now() + DEADLINE;
            while v.len() < total as usize {
                match sock.recv(deadline) {
                    Some(f) if is_ours(&f) => v.push(f),
                    Some(_) => {}
                    None => break,
                }
            }
            v
        });
        let deadline = Instant::now() + DEADLINE;
        let mut seq = 0;
        while seq < total && Instant::now() < deadline {
            // Batches of varied sizes, some larger than what the kernel
            // sends per system call in copy mode (32).
            let batch = [1, 24, 100, 200][(seq / 100 % 4) as usize];
            let n = ring.free(head).min(batch).min(total - seq);
            for _ in 0..n {
                let f = frame(seq, len_for(seq));
                let slot = ring.slot(head);
                assert!(mem.write_buf(slot.buf, &f));
                ring.write_slot(
                    head,
                    Slot {
                        buf: slot.buf,
                        len: f.len() as u16,
                        flags: 0,
                    },
                );
                sent.push(f);
                head = head.wrapping_add(1);
                seq += 1;
            }
            if n > 0 {
                ring.publish(head);
                port.outgoing_published();
            }
            // Leave the receiver time to keep up (the peer's backlog is finite).
            std::thread::sleep(Duration::from_micros(100) * n);
        }
        let received = rx.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        received
    });
    assert_eq!(
        ring.hdr.tail.load(Ordering::Acquire),
        head,
        "the port left packets on the outgoing ring"
    );
    assert_eq!(port.tx_dropped(), 0);
    assert_eq!(
        received.len(),
        sent.len(),
        "kernel stats: {:?}",
        port.kernel_stats()
    );
    for (i, (r, s)) in received.iter().zip(&sent).enumerate() {
        assert_eq!(r, s, "frame {i} differs");
    }
}

#[test]
fn the_program_goes_with_the_port_and_a_second_port_is_refused() {
    if !is_root("the_program_goes_with_the_port_and_a_second_port_is_refused") {
        return;
    }
    let net = Net::with_queues('a', 2);
    assert!(!has_xdp(&net.host_details()));
    let port = open(&net, 2048);
    let details = net.host_details();
    assert!(details.contains("prog/xdp"), "no XDP program: {details}");

    let err = AfXdpPort::open("y", &net.host, 0, MemConfig::new(256, 2048)).unwrap_err();
    assert!(matches!(err, AfXdpError::Busy { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "interface {} (queue 0) is already used by another XDP program (another switch?)",
            net.host
        )
    );
    // Another queue's socket binds, but the interface's XDP hook is taken.
    let err = AfXdpPort::open("z", &net.host, 1, MemConfig::new(256, 2048)).unwrap_err();
    assert!(matches!(err, AfXdpError::Busy { queue: 1, .. }), "{err}");
    // The refused opens changed nothing: the first port's program stays.
    assert!(net.host_details().contains("prog/xdp"));

    drop(port);
    let deadline = Instant::now() + DEADLINE;
    let mut details = net.host_details();
    while has_xdp(&details) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        details = net.host_details();
    }
    assert!(!has_xdp(&details), "program left behind: {details}");

    // The interface is free again.
    let again = open(&net, 2048);
    drop(again);
}

#[test]
fn opening_errors_say_what_is_wrong() {
    let missing = format!("nosuch{}", std::process::id());
    let err = AfXdpPort::open("x", &missing, 0, MemConfig::new(256, 2048)).unwrap_err();
    assert!(matches!(err, AfXdpError::NoSuchInterface(_)), "{err}");
    assert_eq!(err.to_string(), format!("no such interface: {missing}"));
    let err = AfXdpPort::open("x", "", 0, MemConfig::new(256, 2048)).unwrap_err();
    assert_eq!(err.to_string(), "no such interface: ");

    if !is_root("opening_errors_say_what_is_wrong (root part)") {
        return;
    }
    let net = Net::new('e');
    let err = AfXdpPort::open("x", &net.host, 3, MemConfig::new(256, 2048)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("interface {} has no queue 3 (it has 1)", net.host)
    );
    net.set_mtu(3000);
    let err = AfXdpPort::open("x", &net.host, 0, MemConfig::new(256, 2048)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "interface {} MTU 3000 is larger than the port's buffers allow (MTU + 18 must fit in 2048 bytes)",
            net.host
        )
    );
    let err = AfXdpPort::open("x", &net.host, 0, MemConfig::new(100, 2048)).unwrap_err();
    assert!(matches!(
        err,
        AfXdpError::MtuTooLarge { .. } | AfXdpError::Mem(_)
    ));
    // Nothing was attached by the failed attempts.
    assert!(!has_xdp(&net.host_details()));
    // Bad port memory is reported as such.
    net.set_mtu(1500);
    let err = AfXdpPort::open("x", &net.host, 0, MemConfig::new(100, 2048)).unwrap_err();
    assert!(matches!(err, AfXdpError::Mem(_)), "{err}");
    assert!(err.to_string().starts_with("port memory: "), "{err}");
}

#[test]
fn a_switch_forwards_between_the_wire_and_a_mem_port() {
    use mswitch::module::dummy::Dummy;
    use mswitch::port::{MemPort, PortId};
    use mswitch::switch::{Switch, SwitchConfig};

    if !is_root("a_switch_forwards_between_the_wire_and_a_mem_port") {
        return;
    }
    let net = Net::new('s');
    let xdp = open(&net, 2048);
    let sock = PacketSock::open(&net);
    let (mem, mut client) = MemPort::new("m", MemConfig::new(256, 2048)).unwrap();
    // Port 1 <-> port 2; idle ports are retired quickly, so the worker
    // sleeps in epoll on the AF_XDP socket between bursts.
    let sw = Switch::new(SwitchConfig::default(), std::sync::Arc::new(Dummy::pairs())).unwrap();
    sw.attach(xdp.clone(), Some(PortId(1))).unwrap();
    sw.attach(mem, Some(PortId(2))).unwrap();

    let asleep = || {
        let deadline = Instant::now() + DEADLINE;
        while !sw.stats().workers[0].sleeping {
            assert!(Instant::now() < deadline, "the worker never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for round in 0..3u32 {
        // The frames must wake the sleeping worker through the socket.
        asleep();
        // Wire -> switch -> mem port.
        let sent: Vec<Vec<u8>> = (0..50)
            .map(|k| {
                let seq = round * 1000 + k;
                frame(seq, len_for(seq))
            })
            .collect();
        for f in &sent {
            sock.send(f);
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while got.len() < sent.len() && Instant::now() < deadline {
            client.wait(Some(Duration::from_millis(10)));
            got.extend(client.recv_all().into_iter().filter(|f| is_ours(f)));
        }
        assert_eq!(got, sent, "round {round}: wire to mem port");

        asleep();
        // Mem port -> switch -> wire.
        let sent: Vec<Vec<u8>> = (0..50)
            .map(|k| {
                let seq = round * 1000 + 500 + k;
                frame(seq, len_for(seq))
            })
            .collect();
        assert_eq!(client.send(sent.iter().map(Vec::as_slice)), sent.len());
        let mut got = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while got.len() < sent.len() {
            match sock.recv(deadline) {
                Some(f) if is_ours(&f) => got.push(f),
                Some(_) => {}
                None => break,
            }
        }
        assert_eq!(got, sent, "round {round}: mem port to wire");
    }
    assert_eq!(xdp.tx_dropped(), 0);
    assert_eq!(xdp.rx_oversize(), 0);
}
