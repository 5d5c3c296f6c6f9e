//! The `demux` module end to end: a daemon in this process, tuples bound
//! with `ctl demux` and by vport clients, and (as root) a lab in namespaces
//! where an application on a vport answers its UDP port while the host's
//! kernel stack, behind the same switch, answers ping and another UDP port.
//!
//! Every interface and namespace has a name unique to the test and is
//! removed afterwards, also on failure; loops are bounded.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns::{ctl, in_netns, is_root, ping};
use common::{must, remove_lab, unique_tag, veth_into_netns};
use mswitch::control::client::{Ctl, VportConn};
use mswitch::control::daemon::{Daemon, bind_ctl};
use mswitch::control::proto::{OpenFlowOpts, Request};
use mswitch::wire::{MacAddr, udp_frame};

/// A daemon serving a socket in a directory of its own, stopped (and the
/// directory removed) on drop.
struct Served {
    d: Arc<Daemon>,
    dir: PathBuf,
    sock: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    fn new(test: &str) -> Served {
        let dir = PathBuf::from(format!("/tmp/mswitch-demux-{}-{test}", unique_tag()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let sock = dir.join("ctl.sock");
        let d = Daemon::new().expect("daemon");
        d.set_run_dir(&dir);
        let l = bind_ctl(&sock).expect("control socket");
        let d2 = d.clone();
        let thread = std::thread::spawn(move || {
            let _ = d2.serve(l);
        });
        Served {
            d,
            dir,
            sock,
            thread: Some(thread),
        }
    }

    fn sock(&self) -> &Path {
        &self.sock
    }

    fn req(&self, r: Request) -> Result<serde_json::Value, String> {
        Ctl::connect(Some(self.sock()))?.request(&r)
    }

    fn demux(&self, op: &str, port: Option<&str>, tuple: Option<&str>) -> Result<String, String> {
        self.req(Request::Demux {
            switch: "dx".into(),
            op: op.into(),
            port: port.map(Into::into),
            tuple: tuple.map(Into::into),
        })
        .map(|v| v.to_string())
    }

    fn create(&self, module: &str) {
        self.req(Request::Create {
            switch: "dx".into(),
            module: Some(module.into()),
            workers: Some(1),
            batch: None,
            busy_poll: false,
            openflow: OpenFlowOpts::default(),
        })
        .expect("create");
    }

    fn attach(&self, spec: &str) -> u64 {
        let v = self
            .req(Request::Attach {
                switch: "dx".into(),
                spec: spec.into(),
                ofport: None,
                vlan: None,
            })
            .unwrap_or_else(|e| panic!("attach {spec}: {e}"));
        v["ofport"].as_u64().expect("ofport")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.d.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tuples(s: &Served) -> Vec<(u64, String)> {
    let v = s
        .req(Request::Demux {
            switch: "dx".into(),
            op: "list".into(),
            port: None,
            tuple: None,
        })
        .expect("list");
    v["tuples"]
        .as_array()
        .expect("tuples")
        .iter()
        .map(|e| {
            (
                e["ofport"].as_u64().unwrap_or(0),
                e["tuple"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ctl_and_vport_bindings_with_their_refusals() {
    let s = Served::new("bind");
    s.create("demux:host=1,reserve=tcp:22/udp:53");
    assert_eq!(s.attach("vport:host0"), 1);
    assert_eq!(s.attach("vport:ctlapp"), 2);
    s.demux("bind", Some("ctlapp"), Some("udp:10.0.0.1:7000"))
        .unwrap();
    let e = s
        .demux("bind", Some("host0"), Some("udp:10.0.0.1:7001"))
        .unwrap_err();
    assert!(e.contains("host port"), "{e}");
    let e = s
        .demux("bind", Some("ctlapp"), Some("tcp:*:22"))
        .unwrap_err();
    assert_eq!(e, "tcp:*:22 is reserved for the host");
    let e = s
        .demux("bind", Some("nope"), Some("udp:1.2.3.4:5"))
        .unwrap_err();
    assert!(e.contains("no port 'nope'"), "{e}");
    let e = s
        .demux("bind", Some("ctlapp"), Some("udp:bad"))
        .unwrap_err();
    assert!(e.contains("bad tuple"), "{e}");
    let e = s.demux("bind", Some("ctlapp"), None).unwrap_err();
    assert!(e.contains("needs a port and a tuple"), "{e}");

    // An application binds for its own port only; another cannot take it.
    let mut a = VportConn::connect(Some(s.sock()), "dx", "appa").unwrap();
    let mut b = VportConn::connect(Some(s.sock()), "dx", "appb").unwrap();
    a.bind("udp:10.0.0.1:9000").unwrap();
    a.bind("tcp:[fd00::1]:80").unwrap();
    let e = b.bind("udp:10.0.0.1:9000").unwrap_err();
    assert_eq!(e, "udp:10.0.0.1:9000 is held by port 3");
    let e = b.bind("udp:*:9000").unwrap_err();
    assert!(e.contains("overlaps udp:10.0.0.1:9000 of port 3"), "{e}");
    let e = b.bind("udp:10.0.0.1:7000").unwrap_err();
    assert_eq!(e, "udp:10.0.0.1:7000 is held by port 2");
    let e = b.bind("udp:*:53").unwrap_err();
    assert_eq!(e, "udp:*:53 is reserved for the host");
    let e = b.unbind("udp:10.0.0.1:9000").unwrap_err();
    assert_eq!(e, "udp:10.0.0.1:9000 is not bound by port 4");
    b.bind("udp:*:9001").unwrap();
    b.unbind("udp:*:9001").unwrap();
    assert_eq!(
        tuples(&s),
        [
            (2, "udp:10.0.0.1:7000".to_owned()),
            (3, "udp:10.0.0.1:9000".to_owned()),
            (3, "tcp:[fd00::1]:80".to_owned()),
        ]
    );
    // Gone with the connection.
    drop(a);
    wait_for("a's tuples to go", || tuples(&s).len() == 1);
    b.bind("udp:10.0.0.1:9000").unwrap();
    assert_eq!(tuples(&s)[1], (4, "udp:10.0.0.1:9000".to_owned()));
    // The command line says the same.
    let sock = s.sock().to_str().unwrap().to_owned();
    let out = ctl(&sock, &["demux", "dx", "list"]).unwrap();
    assert!(
        out.contains("udp:10.0.0.1:7000") && out.contains("appb"),
        "{out}"
    );
    let out = ctl(&sock, &["demux", "dx", "unbind", "2", "udp:10.0.0.1:7000"]).unwrap();
    assert_eq!(out.trim(), "unbound udp:10.0.0.1:7000 for port 2 of dx");
    let e = ctl(&sock, &["demux", "dx", "bind", "appb", "tcp:*:22"]).unwrap_err();
    assert!(e.contains("tcp:*:22 is reserved for the host"), "{e}");
    assert_eq!(tuples(&s).len(), 1);
    // Another module: refused with one line.
    s.req(Request::Module {
        switch: "dx".into(),
        module: "learn".into(),
    })
    .unwrap();
    let e = s.demux("list", None, None).unwrap_err();
    assert_eq!(e, "switch 'dx' runs module learn, not demux");
    assert!(b.bind("udp:10.0.0.1:9002").is_err());
}

#[test]
fn a_hostile_application_cannot_send_as_another() {
    let s = Served::new("spoof");
    s.create("demux:host=1");
    let mut host = VportConn::connect(Some(s.sock()), "dx", "host0").unwrap();
    let mut a = VportConn::connect(Some(s.sock()), "dx", "appa").unwrap();
    let mut b = VportConn::connect(Some(s.sock()), "dx", "appb").unwrap();
    a.bind("udp:10.0.0.1:9000").unwrap();
    let from = |ip: [u8; 4], port: u16, payload_len: usize| {
        udp_frame(
            42 + payload_len,
            MacAddr::local(100),
            MacAddr::local(3),
            ip,
            [10, 0, 0, 100],
            port,
            53,
        )
    };
    // B claims A's tuple as its source (dropped), then sends as itself;
    // A sends as itself. The lengths tell the frames apart.
    b.send(
        [
            from([10, 0, 0, 1], 9000, 10),
            from([10, 0, 0, 2], 40000, 11),
        ]
        .iter()
        .map(Vec::as_slice),
    );
    a.send([from([10, 0, 0, 1], 9000, 12)].iter().map(Vec::as_slice));
    let mut got = Vec::new();
    wait_for("the host to get two frames", || {
        host.recv(64, |f| got.push(f.len()));
        got.len() >= 2
    });
    got.sort_unstable();
    assert_eq!(got, [53, 54]);
    let st = s
        .req(Request::Stats {
            switch: Some("dx".into()),
        })
        .expect("stats")
        .to_string();
    assert!(st.contains(r#"["demux_spoofed",1]"#), "{st}");
    // Nothing else arrives (the spoofed frame was dropped, not delayed).
    host.wait(Some(Duration::from_millis(50)));
    assert_eq!(host.recv(64, |_| {}), 0);
}

/// Interfaces and namespaces of the lab, removed on drop.
struct Lab {
    links: Vec<String>,
    netns: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        remove_lab(&self.links, &self.netns, Path::new("/nonexistent"));
    }
}

/// Answers UDP to `port` on `conn` by sending the datagram back (MACs, IPv4
/// addresses and ports swapped: both checksums stay right), until `stop`.
fn echo_app(mut conn: VportConn, port: u16, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut answered = 0u64;
        while !stop.load(Ordering::Relaxed) {
            conn.wait(Some(Duration::from_millis(50)));
            let mut replies = Vec::new();
            conn.recv(64, |f| {
                let ok = f.len() >= 42
                    && f[12..14] == [8, 0]
                    && f[14] == 0x45
                    && f[23] == 17
                    && u16::from_be_bytes([f[36], f[37]]) == port;
                if ok {
                    let mut r = f.to_vec();
                    r[0..6].copy_from_slice(&f[6..12]);
                    r[6..12].copy_from_slice(&f[0..6]);
                    r[26..30].copy_from_slice(&f[30..34]);
                    r[30..34].copy_from_slice(&f[26..30]);
                    r[34..36].copy_from_slice(&f[36..38]);
                    r[36..38].copy_from_slice(&f[34..36]);
                    replies.push(r);
                }
            });
            if !replies.is_empty() {
                answered += replies.len() as u64;
                conn.send(replies.iter().map(Vec::as_slice));
            }
        }
        answered
    })
}

/// Sends `msg` to `to` from namespace `ns` and returns the answer's text
/// (empty if none came within a second).
fn udp_ask(ns: &str, to: &'static str, msg: &'static str) -> String {
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        for _ in 0..3 {
            s.send_to(msg.as_bytes(), to).expect("send");
            let mut buf = [0u8; 256];
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
        String::new()
    })
    .join()
    .expect("udp thread")
}

#[test]
fn app_port_from_the_vport_the_rest_from_the_kernel() {
    if !is_root() {
        return;
    }
    let tag = unique_tag();
    let (hns, cns) = (format!("dxh{tag}"), format!("dxc{tag}"));
    let (hout, cout) = (format!("dxh{tag}o"), format!("dxc{tag}o"));
    let mut lab = Lab {
        links: Vec::new(),
        netns: Vec::new(),
    };
    // The host's kernel stack: a namespace behind veth `hout`; the client
    // on the wire: a namespace behind veth `cout`.
    let (hin, cin) = (format!("dxh{tag}i"), format!("dxc{tag}i"));
    veth_into_netns(&hns, &hout, &hin, &mut lab.netns, &mut lab.links);
    veth_into_netns(&cns, &cout, &cin, &mut lab.netns, &mut lab.links);
    for (ns, dev, ip) in [(&hns, &hin, "10.77.0.2/24"), (&cns, &cin, "10.77.0.1/24")] {
        must(&["ip", "-n", ns, "addr", "add", ip, "dev", dev]);
        must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        // Copy-mode ports see what the kernel hands over: no checksum or
        // segmentation offload on the senders.
        must(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso",
            "off",
        ]);
    }
    must(&["ip", "link", "set", &hout, "up"]);
    must(&["ip", "link", "set", &cout, "up"]);

    let s = Served::new("lab");
    s.create("demux:host=1,wire=2");
    assert_eq!(s.attach(&format!("af_packet:{hout}")), 1);
    assert_eq!(s.attach(&format!("af_packet:{cout}")), 2);
    let mut app = VportConn::connect(Some(s.sock()), "dx", "app").unwrap();
    app.bind("udp:10.77.0.2:7777").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let app_thread = echo_app(app, 7777, stop.clone());

    // The kernel answers UDP on 8888 in the host namespace.
    let host_udp = in_netns(&hns, || {
        let s = UdpSocket::bind("10.77.0.2:8888").expect("bind 8888");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        let (n, from) = s.recv_from(&mut buf).expect("a datagram on 8888");
        let mut reply = b"kernel:".to_vec();
        reply.extend_from_slice(&buf[..n]);
        s.send_to(&reply, from).expect("reply");
    });
    std::thread::sleep(Duration::from_millis(100));

    let r = ping(&cns, "10.77.0.2", &[]);
    assert!(r.is_ok(), "ping to the host through demux: {r:?}");
    let got = udp_ask(&cns, "10.77.0.2:7777", "hi app");
    let st = s.req(Request::Stats {
        switch: Some("dx".into()),
    });
    assert_eq!(got, "hi app", "{st:?}");
    assert_eq!(udp_ask(&cns, "10.77.0.2:8888", "hi"), "kernel:hi");
    host_udp.join().expect("host udp");
    stop.store(true, Ordering::Relaxed);
    let answered = app_thread.join().expect("app");
    assert!(answered >= 1, "the app answered {answered}");
    let st = s.req(Request::Stats {
        switch: Some("dx".into()),
    });
    let st = st.map(|v| v.to_string()).unwrap_or_default();
    assert!(st.contains("demux_delivered"), "{st}");
    drop(s);
    drop(lab);
}
