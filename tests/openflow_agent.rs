//! The OpenFlow agent, end to end: a daemon in this process hosts a switch
//! with the `flow` module and virtual ports; the tests drive it with the
//! real `ovs-ofctl -O OpenFlow13` and with a raw OpenFlow client built on
//! the codec, and check what the ports receive.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{MIN_LEN, frame, mac, must, tag};
use mswitch::control::client::VportConn;
use mswitch::control::daemon::Daemon;
use mswitch::control::proto::OpenFlowOpts;
use mswitch::openflow::flow::{flow_mod_flags, flow_removed_reason, packet_in_reason};
use mswitch::openflow::hello::{Hello, HelloElement};
use mswitch::openflow::message::{ControllerRole, RoleMsg};
use mswitch::openflow::multipart::{
    MultipartReplyBody as R, MultipartRequest, MultipartRequestBody as Q,
};
use mswitch::openflow::oxm::OxmField;
use mswitch::openflow::port::reason as port_reason;
use mswitch::openflow::{
    Action, ErrorCode, FlowMod, FlowModCommand, HEADER_LEN, Header, Instruction, Match, Message,
    NO_BUFFER, PacketOut, PortNo, decode, frame_len,
};
use mswitch::wire::MacAddr;

const LONG: Duration = Duration::from_secs(10);

/// A daemon in this process with one `flow` switch and vports p1..=pN.
struct Sw {
    d: Arc<Daemon>,
    dir: PathBuf,
    ctl: PathBuf,
    name: String,
    serve: Option<std::thread::JoinHandle<()>>,
}

impl Sw {
    fn new(test: &str, ports: u16) -> Sw {
        let dir = PathBuf::from(format!("/tmp/mswitch-of-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ctl = dir.join("ctl.sock");
        let d = Daemon::new().unwrap();
        d.set_run_dir(&dir);
        let name = "of0".to_owned();
        d.create(&name, "flow", 1, None, false, &OpenFlowOpts::default())
            .unwrap();
        for p in 1..=ports {
            d.attach(&name, &format!("vport:p{p}"), Some(u32::from(p)))
                .unwrap();
        }
        let listener = UnixListener::bind(&ctl).unwrap();
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

    fn mgmt(&self) -> PathBuf {
        self.d.mgmt_path(&self.name)
    }

    fn target(&self) -> String {
        format!("unix:{}", self.mgmt().display())
    }

    fn port(&self, p: u16) -> VportConn {
        VportConn::connect(Some(&self.ctl), &self.name, &format!("p{p}")).unwrap()
    }

    fn of(&self) -> Of {
        Of::connect(&self.mgmt())
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

/// `ovs-ofctl -O OpenFlow13 CMD TARGET ARGS...`, which must succeed.
fn ofctl(sw: &Sw, cmd: &str, args: &[&str]) -> String {
    ofctl_opts(sw, &[], cmd, args)
}

fn ofctl_opts(sw: &Sw, opts: &[&str], cmd: &str, args: &[&str]) -> String {
    common::ovs_ofctl(opts, cmd, &sw.target(), args)
}

/// The flows as `ovs-ofctl --no-stats --sort dump-flows` prints them, one
/// string per flow, without the leading space.
fn flows(sw: &Sw) -> Vec<String> {
    ofctl_opts(sw, &["--no-stats", "--sort"], "dump-flows", &[])
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with("OFPST_FLOW"))
        .collect()
}

/// Receives at most `n` frames arriving within `t`.
fn recv_within(c: &mut VportConn, n: usize, t: Duration) -> Vec<Vec<u8>> {
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

fn send(c: &mut VportConn, f: &[u8]) {
    let deadline = Instant::now() + LONG;
    while !c.send_one(f) {
        assert!(Instant::now() < deadline, "cannot send");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A raw OpenFlow connection, past the hello exchange.
struct Of {
    s: UnixStream,
    buf: Vec<u8>,
    xid: u32,
}

impl Of {
    fn connect(path: &std::path::Path) -> Of {
        let mut of = Of::raw(path);
        let (_, m) = of.recv_raw().expect("switch hello");
        assert!(matches!(m, Message::Hello(_)), "first message {m:?}");
        of.send(&Message::Hello(Hello::ours()));
        of
    }

    /// Connected, with nothing sent or read yet.
    fn raw(path: &std::path::Path) -> Of {
        let s = UnixStream::connect(path).expect("connect to the OpenFlow socket");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Of {
            s,
            buf: Vec::new(),
            xid: 100,
        }
    }

    fn send(&mut self, m: &Message) -> u32 {
        self.xid += 1;
        let b = m.encode(self.xid).unwrap();
        self.s.write_all(&b).unwrap();
        self.xid
    }

    fn send_bytes(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// The next message, or None if none comes within LONG (or the switch
    /// closed the connection).
    fn recv_raw(&mut self) -> Option<(Header, Message)> {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(len) = frame_len(&self.buf).filter(|&l| l <= self.buf.len()) {
                let f: Vec<u8> = self.buf.drain(..len).collect();
                return Some(decode(&f).expect("the switch sends valid messages"));
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// The next message answering `xid` (asynchronous messages between
    /// are skipped).
    fn answer(&mut self, xid: u32) -> Message {
        for _ in 0..10_000 {
            let (h, m) = self.recv_raw().expect("an answer");
            if h.xid == xid
                && !matches!(
                    m,
                    Message::PacketIn(_)
                        | Message::PortStatus(_)
                        | Message::FlowRemoved(_)
                        | Message::EchoRequest(_)
                )
            {
                return m;
            }
        }
        panic!("no answer to xid {xid}");
    }

    /// Sends `m` then a barrier; returns the error `m` caused, if any.
    fn request(&mut self, m: &Message) -> Option<ErrorCode> {
        let x = self.send(m);
        let b = self.send(&Message::BarrierRequest);
        let mut err = None;
        for _ in 0..10_000 {
            let (h, r) = self.recv_raw().expect("barrier reply");
            match r {
                Message::Error(e) if h.xid == x => err = Some(e.code),
                Message::BarrierReply if h.xid == b => return err,
                _ => {}
            }
        }
        panic!("no barrier reply");
    }

    /// The next asynchronous message matching `f` within LONG.
    fn wait_for<T>(&mut self, mut f: impl FnMut(&Message) -> Option<T>) -> T {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            if let Some((_, m)) = self.recv_raw()
                && let Some(t) = f(&m)
            {
                return t;
            }
        }
        panic!("timed out waiting for an asynchronous message");
    }
}

fn output(port: u32) -> Vec<Instruction> {
    vec![Instruction::ApplyActions(vec![Action::output(PortNo(
        port,
    ))])]
}

fn flow_to(in_port: u32, out: u32, priority: u16) -> FlowMod {
    FlowMod {
        priority,
        match_: Match::from_fields(vec![OxmField::InPort(PortNo(in_port))]).unwrap(),
        instructions: output(out),
        ..FlowMod::default()
    }
}

fn udp(src: u16, seq: u32) -> Vec<u8> {
    frame(MIN_LEN + 4, src, mac(9), seq)
}

#[test]
fn ovs_ofctl_show_describes_the_switch_and_its_ports() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("show", 2);
    let out = ofctl(&sw, "show", &[]);
    let dpid = format!(
        "dpid:{:016x}",
        mswitch::control::ofagent::default_dpid("of0")
    );
    assert!(out.contains(&dpid), "{out}");
    assert!(out.contains("n_tables:255, n_buffers:256"), "{out}");
    assert!(out.contains(" 1(p1): addr:"), "{out}");
    assert!(out.contains(" 2(p2): addr:"), "{out}");
    assert!(out.contains("OFPT_GET_CONFIG_REPLY"), "{out}");
    let t = ofctl(&sw, "dump-tables", &[]);
    assert!(t.contains("table 0:") || t.contains("  0:"), "{t}");
    let f = ofctl(&sw, "dump-table-features", &[]);
    assert!(f.contains("table 0"), "{f}");
    assert!(f.contains("max_entries=1000000"), "{f}");
    let d = ofctl(&sw, "dump-desc", &[]);
    assert!(d.contains("Manufacturer: mswitch"), "{d}");
    assert!(d.contains("DP Description: of0"), "{d}");
}

#[test]
fn ovs_ofctl_flows_are_echoed_exactly_and_edited() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("flows", 3);
    ofctl(
        &sw,
        "add-flow",
        &[
            "table=0,priority=100,cookie=0x42,idle_timeout=30,hard_timeout=60,tcp,nw_src=10.0.0.0/24,tp_dst=80,actions=output:2",
        ],
    );
    let file = sw.dir.join("flows.txt");
    std::fs::write(
        &file,
        "priority=200,in_port=1,dl_dst=02:00:00:00:00:07/ff:ff:ff:00:00:00,actions=output:3\n\
         table=1,priority=5,udp6,ipv6_dst=2001:db8::/32,udp_dst=53,actions=set_field:00:11:22:33:44:55->eth_src,output:1\n\
         priority=1,arp,arp_tpa=10.0.0.1,actions=goto_table:1\n\
         priority=0,actions=CONTROLLER:65535\n",
    )
    .unwrap();
    ofctl(&sw, "add-flows", &[file.to_str().unwrap()]);
    let want = [
        "cookie=0x42, idle_timeout=30, hard_timeout=60, priority=100,tcp,nw_src=10.0.0.0/24,tp_dst=80 actions=output:2",
        "priority=200,in_port=1,dl_dst=02:00:00:00:00:00/ff:ff:ff:00:00:00 actions=output:3",
        "priority=1,arp,arp_tpa=10.0.0.1 actions=goto_table:1",
        "priority=0 actions=CONTROLLER:65535",
        "table=1, priority=5,udp6,ipv6_dst=2001:db8::/32,tp_dst=53 actions=set_field:00:11:22:33:44:55->eth_src,output:1",
    ];
    let mut got = flows(&sw);
    got.sort();
    let mut w: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    w.sort();
    assert_eq!(got, w);
    // Modify (non-strict: every flow with tcp) and check.
    ofctl(&sw, "mod-flows", &["tcp,actions=output:3"]);
    assert!(
        flows(&sw)
            .iter()
            .any(|f| f.contains("tp_dst=80 actions=output:3"))
    );
    // Strict delete needs the exact priority and match.
    ofctl(
        &sw,
        "del-flows",
        &[
            "--strict",
            "priority=199,in_port=1,dl_dst=02:00:00:00:00:00/ff:ff:ff:00:00:00",
        ],
    );
    assert_eq!(flows(&sw).len(), 5);
    ofctl(
        &sw,
        "del-flows",
        &[
            "--strict",
            "priority=200,in_port=1,dl_dst=02:00:00:00:00:00/ff:ff:ff:00:00:00",
        ],
    );
    assert_eq!(flows(&sw).len(), 4);
    // Non-strict delete of a table; then of everything.
    ofctl(&sw, "del-flows", &["table=1"]);
    assert_eq!(flows(&sw).len(), 3);
    ofctl(&sw, "del-flows", &[]);
    assert!(flows(&sw).is_empty());
    // A flow the switch cannot take is refused with the spec's error.
    let bad = Command::new("ovs-ofctl")
        .args([
            "-O",
            "OpenFlow13",
            "add-flow",
            &sw.target(),
            "actions=group:77",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("OFPBAC_BAD_OUT_GROUP"), "{e}");
}

#[test]
fn ovs_ofctl_traffic_groups_ports_and_packet_out() {
    if !have_ofctl() {
        return;
    }
    for v in ["OpenFlow13", "OpenFlow14", "OpenFlow15"] {
        traffic_groups_ports_and_packet_out(v);
    }
}

/// The same commands, and their effect on traffic, in OpenFlow version `v`.
fn traffic_groups_ports_and_packet_out(v: &str) {
    let sw = Sw::new(&format!("traffic{v}"), 3);
    let ofctl = |sw: &Sw, cmd: &str, args: &[&str]| ofctl_opts(sw, &["-O", v], cmd, args);
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    ofctl(&sw, "add-flow", &["in_port=1,actions=output:2"]);
    send(&mut p1, &udp(1, 1));
    let got = recv_within(&mut p2, 1, LONG);
    assert_eq!(got.len(), 1);
    assert_eq!(tag(&got[0]), (1, 1));
    // Groups: all buckets get a copy.
    ofctl(
        &sw,
        "add-group",
        &["group_id=1,type=all,bucket=output:2,bucket=output:3"],
    );
    ofctl(&sw, "mod-flows", &["in_port=1,actions=group:1"]);
    send(&mut p1, &udp(1, 2));
    assert_eq!(recv_within(&mut p2, 1, LONG).len(), 1);
    assert_eq!(recv_within(&mut p3, 1, LONG).len(), 1);
    let g = ofctl(&sw, "dump-groups", &[]);
    // 1.5 numbers buckets.
    let want = if v == "OpenFlow15" {
        "group_id=1,type=all,bucket=bucket_id:0,actions=output:2,bucket=bucket_id:1,actions=output:3"
    } else {
        "group_id=1,type=all,bucket=actions=output:2,bucket=actions=output:3"
    };
    assert!(g.contains(want), "{v}: {g}");
    let f = ofctl(&sw, "dump-flows", &[]);
    assert!(f.contains("in_port=1 actions=group:1"), "{v}: {f}");
    // mod-flows keeps the counters: one packet before it, one after.
    assert!(f.contains("n_packets=2,"), "{v}: {f}");
    let show = ofctl(&sw, "show", &[]);
    assert!(show.contains(" 3(p3): addr:"), "{v}: {show}");
    let gs = ofctl(&sw, "dump-group-stats", &[]);
    assert!(
        gs.contains("group_id=1") && gs.contains("packet_count=1"),
        "{gs}"
    );
    // Port stats count what went through.
    let ps = ofctl(&sw, "dump-ports", &["1"]);
    assert!(ps.contains("rx pkts=2"), "{ps}");
    // mod-port: no-forward on p3 keeps the group from sending there.
    ofctl(&sw, "mod-port", &["p3", "no-forward"]);
    let desc = ofctl(&sw, "dump-ports-desc", &[]);
    assert!(desc.contains("NO_FWD"), "{desc}");
    send(&mut p1, &udp(1, 3));
    assert_eq!(recv_within(&mut p2, 1, LONG).len(), 1);
    assert!(recv_within(&mut p3, 1, Duration::from_millis(200)).is_empty());
    ofctl(&sw, "mod-port", &["p3", "forward"]);
    // packet-out from the controller to port 3.
    let hex: String = udp(7, 9).iter().map(|b| format!("{b:02x}")).collect();
    ofctl(
        &sw,
        "packet-out",
        &[&format!("in_port=controller,packet={hex},actions=output:3")],
    );
    let got = recv_within(&mut p3, 1, LONG);
    assert_eq!(got.len(), 1);
    assert_eq!(tag(&got[0]), (7, 9));
}

#[test]
fn barrier_means_every_later_packet_follows_the_new_table() {
    let sw = Sw::new("barrier", 3);
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    let mut of = sw.of();
    let mut wrong = 0;
    for i in 0..200u32 {
        let out = 2 + (i % 2);
        let mut fm = flow_to(1, out, 10);
        fm.command = if i == 0 {
            FlowModCommand::Add
        } else {
            FlowModCommand::ModifyStrict
        };
        assert_eq!(of.request(&Message::FlowMod(fm)), None);
        send(&mut p1, &udp(1, i));
        let (right, other) = if out == 2 {
            (&mut p2, &mut p3)
        } else {
            (&mut p3, &mut p2)
        };
        let got = recv_within(right, 1, LONG);
        assert_eq!(got.len(), 1, "packet {i} did not reach port {out}");
        assert_eq!(tag(&got[0]), (1, i));
        wrong += other.recv_all().len();
    }
    assert_eq!(
        wrong, 0,
        "packets sent after a barrier followed an old table"
    );
}

#[test]
fn packet_in_packet_out_buffers_and_flow_removed() {
    let sw = Sw::new("pktin", 2);
    let (mut p1, mut p2) = (sw.port(1), sw.port(2));
    let mut of = sw.of();
    // Table miss to the controller, cut to 32 bytes (so buffered).
    let miss = FlowMod {
        priority: 0,
        cookie: 0x77,
        instructions: vec![Instruction::ApplyActions(vec![Action::Output {
            port: PortNo::CONTROLLER,
            max_len: 32,
        }])],
        ..FlowMod::default()
    };
    assert_eq!(of.request(&Message::FlowMod(miss)), None);
    let f = udp(1, 5);
    send(&mut p1, &f);
    let pi = of.wait_for(|m| match m {
        Message::PacketIn(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(pi.reason, packet_in_reason::NO_MATCH);
    assert_eq!(pi.cookie, 0x77);
    assert_eq!(pi.table_id, 0);
    assert_eq!(usize::from(pi.total_len), f.len());
    assert_eq!(pi.data, f[..32]);
    assert_ne!(pi.buffer_id, NO_BUFFER);
    assert!(pi.match_.fields().contains(&OxmField::InPort(PortNo(1))));
    // The buffered packet goes out whole.
    let po = PacketOut {
        buffer_id: pi.buffer_id,
        in_port: PortNo(1),
        actions: vec![Action::output(PortNo(2))],
        data: Vec::new(),
        ..PacketOut::default()
    };
    assert_eq!(of.request(&Message::PacketOut(po.clone())), None);
    let got = recv_within(&mut p2, 1, LONG);
    assert_eq!(got, vec![f.clone()]);
    // A buffer is used once.
    assert_eq!(
        of.request(&Message::PacketOut(po)),
        Some(ErrorCode::BadRequest(
            mswitch::openflow::error::BadRequestCode::BufferUnknown
        ))
    );
    // A flow with a hard timeout and SEND_FLOW_REM is reported removed.
    let mut fm = flow_to(2, 1, 5);
    fm.hard_timeout = 1;
    fm.cookie = 0xabc;
    fm.flags = flow_mod_flags::SEND_FLOW_REM;
    assert_eq!(of.request(&Message::FlowMod(fm)), None);
    let fr = of.wait_for(|m| match m {
        Message::FlowRemoved(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(fr.cookie, 0xabc);
    assert_eq!(fr.reason, flow_removed_reason::HARD_TIMEOUT);
    // Output to controller and to a port: both get the packet.
    let both = FlowMod {
        priority: 9,
        match_: Match::from_fields(vec![OxmField::InPort(PortNo(1))]).unwrap(),
        instructions: vec![Instruction::ApplyActions(vec![
            Action::output(PortNo(2)),
            Action::output(PortNo::CONTROLLER),
        ])],
        ..FlowMod::default()
    };
    assert_eq!(of.request(&Message::FlowMod(both)), None);
    send(&mut p1, &udp(1, 6));
    let pi = of.wait_for(|m| match m {
        Message::PacketIn(p) if p.reason == packet_in_reason::ACTION => Some(p.clone()),
        _ => None,
    });
    assert_eq!(pi.buffer_id, NO_BUFFER);
    assert_eq!(tag(&pi.data), (1, 6));
    assert_eq!(recv_within(&mut p2, 1, LONG).len(), 1);
}

#[test]
fn errors_roles_and_negotiation_keep_connections_apart() {
    let sw = Sw::new("errors", 2);
    // No common version (a 1.1-only peer): HELLO_FAILED, then closed.
    let mut old = Of::raw(&sw.mgmt());
    let _ = old.recv_raw();
    let hello = Hello {
        elements: vec![HelloElement::VersionBitmap(vec![1 << 2])],
    };
    let mut b = Message::Hello(hello).encode(1).unwrap();
    b[0] = 0x02;
    old.send_bytes(&b);
    match old.recv_raw() {
        Some((_, Message::Error(e))) => assert!(matches!(e.code, ErrorCode::HelloFailed(_))),
        other => panic!("expected HELLO_FAILED, got {other:?}"),
    }
    assert!(old.recv_raw().is_none(), "the connection stays open");
    // Malformed messages get errors; the connection survives.
    let mut a = sw.of();
    let mut c = sw.of();
    let mut junk = Message::FeaturesRequest.encode(5).unwrap();
    junk[1] = 99; // no such type
    a.send_bytes(&junk);
    match a.answer(5) {
        Message::Error(e) => assert_eq!(
            e.code,
            ErrorCode::BadRequest(mswitch::openflow::error::BadRequestCode::BadType)
        ),
        m => panic!("{m:?}"),
    }
    let mut short = Message::FlowMod(flow_to(1, 2, 1)).encode(6).unwrap();
    short.truncate(HEADER_LEN + 20);
    let n = short.len() as u16;
    short[2..4].copy_from_slice(&n.to_be_bytes());
    a.send_bytes(&short);
    assert!(matches!(a.answer(6), Message::Error(_)));
    let x = a.send(&Message::EchoRequest(b"hi".to_vec()));
    assert_eq!(a.answer(x), Message::EchoReply(b"hi".to_vec()));
    // Roles: a becomes master, c then slave and cannot change tables.
    let x = a.send(&Message::RoleRequest(RoleMsg {
        role: ControllerRole::Master,
        generation_id: 10,
    }));
    assert!(matches!(a.answer(x), Message::RoleReply(r) if r.role == ControllerRole::Master));
    let x = c.send(&Message::RoleRequest(RoleMsg {
        role: ControllerRole::Slave,
        generation_id: 11,
    }));
    assert!(matches!(c.answer(x), Message::RoleReply(r) if r.role == ControllerRole::Slave));
    assert_eq!(
        c.request(&Message::FlowMod(flow_to(1, 2, 1))),
        Some(ErrorCode::BadRequest(
            mswitch::openflow::error::BadRequestCode::IsSlave
        ))
    );
    let x = c.send(&Message::RoleRequest(RoleMsg {
        role: ControllerRole::Master,
        generation_id: 3,
    }));
    assert!(
        matches!(c.answer(x), Message::Error(e) if matches!(e.code, ErrorCode::RoleRequestFailed(_)))
    );
    assert_eq!(a.request(&Message::FlowMod(flow_to(1, 2, 1))), None);
    // Statistics answer on the master; a corrupt stream closes only itself.
    let x = a.send(&Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Flow(Default::default()),
    }));
    match a.answer(x) {
        Message::MultipartReply(r) => match r.body {
            // The flow added, and the standalone switch's own NORMAL flow.
            R::Flow(f) => assert_eq!(f.len(), 2),
            b => panic!("{b:?}"),
        },
        m => panic!("{m:?}"),
    }
    c.send_bytes(&[4, 0, 0, 2, 0, 0, 0, 1]);
    let _ = c.recv_raw();
    assert!(c.recv_raw().is_none());
    let x = a.send(&Message::BarrierRequest);
    assert_eq!(a.answer(x), Message::BarrierReply);
}

#[test]
fn port_status_follows_attach_and_detach() {
    let sw = Sw::new("portstatus", 1);
    let mut of = sw.of();
    sw.d.attach(&sw.name, "vport:late", Some(9)).unwrap();
    let st = of.wait_for(|m| match m {
        Message::PortStatus(s) if s.desc.port_no == PortNo(9) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(st.reason, port_reason::ADD);
    assert_eq!(st.desc.port_no, PortNo(9));
    assert_eq!(st.desc.name.as_str(), "late");
    assert_ne!(st.desc.hw_addr, MacAddr([0; 6]));
    sw.d.detach(&sw.name, "late").unwrap();
    let st = of.wait_for(|m| match m {
        Message::PortStatus(s) if s.reason == port_reason::DELETE => Some(s.clone()),
        _ => None,
    });
    assert_eq!(st.desc.port_no, PortNo(9));
}

/// A controller socket the switch dials: accepts, and speaks raw OpenFlow.
fn accept_within(l: &std::net::TcpListener, t: Duration) -> Option<std::net::TcpStream> {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        match l.accept() {
            Ok((s, _)) => return Some(s),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

fn read_msg(s: &mut std::net::TcpStream) -> Option<(Header, Message)> {
    let mut hdr = [0u8; HEADER_LEN];
    s.read_exact(&mut hdr).ok()?;
    let len = frame_len(&hdr)?;
    let mut all = hdr.to_vec();
    all.resize(len, 0);
    s.read_exact(&mut all[HEADER_LEN..]).ok()?;
    decode(&all).ok()
}

#[test]
fn controllers_are_dialled_again_and_standalone_fails_open() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = PathBuf::from(format!("/tmp/mswitch-of-{}-dial", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = Daemon::new().unwrap();
    d.set_run_dir(&dir);
    let of = OpenFlowOpts {
        controllers: vec![format!("tcp:127.0.0.1:{port}")],
        listen: vec!["ptcp:0".into()],
        dpid: Some("0xabc".into()),
        fail_mode: Some("standalone".into()),
        protocols: None,
        no_local: false,
    };
    let made = d.create("dial", "flow", 1, None, false, &of).unwrap();
    let listening: Vec<String> = made["openflow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listening.len(), 2, "{listening:?}");
    assert!(listening[1].starts_with("ptcp:") && !listening[1].starts_with("ptcp:0:"));
    let module = |d: &Daemon| d.list()[0]["module"].as_str().unwrap().to_owned();
    // The switch dials in and says hello; we answer and ask for features.
    let mut c = accept_within(&l, LONG).expect("the switch connects");
    c.set_read_timeout(Some(LONG)).unwrap();
    assert!(matches!(read_msg(&mut c), Some((_, Message::Hello(_)))));
    c.write_all(&Message::Hello(Hello::ours()).encode(1).unwrap())
        .unwrap();
    c.write_all(&Message::FeaturesRequest.encode(2).unwrap())
        .unwrap();
    match read_msg(&mut c) {
        Some((h, Message::FeaturesReply(f))) => {
            assert_eq!((h.xid, f.datapath_id), (2, 0xabc));
        }
        m => panic!("{m:?}"),
    }
    assert_eq!(module(&d), "flow");
    // The controller goes away: the switch dials again after its backoff,
    // and meanwhile (3 s without a controller) acts as a learning bridge.
    drop(c);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(module(&d), "learn", "standalone fails open");
    let mut c = accept_within(&l, LONG).expect("the switch reconnects");
    assert!(t0.elapsed() >= Duration::from_millis(900), "backoff");
    c.set_read_timeout(Some(LONG)).unwrap();
    assert!(matches!(read_msg(&mut c), Some((_, Message::Hello(_)))));
    c.write_all(&Message::Hello(Hello::ours()).encode(1).unwrap())
        .unwrap();
    let deadline = Instant::now() + LONG;
    while module(&d) != "flow" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(module(&d), "flow", "the tables are back with a controller");
    // Keepalive: the switch asks for an echo after 5 s of silence.
    let t1 = Instant::now();
    match read_msg(&mut c) {
        Some((_, Message::EchoRequest(_))) => {}
        m => panic!("{m:?}"),
    }
    assert!(t1.elapsed() >= Duration::from_secs(4));
    d.destroy("dial").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A veth pair whose far end sits in a namespace of the test's own.
struct Veth {
    ns: String,
    near: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.near])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

#[test]
fn port_status_follows_the_link_of_a_kernel_port() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(std::env::var_os("CI").is_none(), "CI runs this as root");
        eprintln!("SKIPPED: needs root");
        return;
    }
    let id = std::process::id() % 100_000;
    let v = Veth {
        ns: format!("msof-{id}"),
        near: format!("msofa{id}"),
    };
    let far = format!("msofb{id}");
    // Veth's Drop removes them; the lists are only the helper's bookkeeping.
    common::veth_into_netns(&v.ns, &v.near, &far, &mut Vec::new(), &mut Vec::new());
    must(&["ip", "link", "set", &v.near, "up"]);
    must(&["ip", "-n", &v.ns, "link", "set", &far, "up"]);
    let sw = Sw::new("link", 0);
    sw.d.attach(&sw.name, &format!("af_packet:{}", v.near), Some(3))
        .unwrap();
    let mut of = sw.of();
    let x = of.send(&Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::PortDesc {
            port_no: PortNo::ANY,
        },
    }));
    let mac: MacAddr = std::fs::read_to_string(format!("/sys/class/net/{}/address", v.near))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    match of.answer(x) {
        Message::MultipartReply(r) => match r.body {
            R::PortDesc(p) => {
                // Port 3, and the switch's LOCAL port if its TAP could be made.
                let p: Vec<_> = p.iter().filter(|p| p.port_no != PortNo::LOCAL).collect();
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].hw_addr, mac, "the interface's own MAC");
                assert_eq!(p[0].curr_speed, 10_000_000, "veth says 10 Gbit/s");
            }
            b => panic!("{b:?}"),
        },
        m => panic!("{m:?}"),
    }
    // The far end goes down: the near end loses its carrier.
    must(&["ip", "-n", &v.ns, "link", "set", &far, "down"]);
    let st = of.wait_for(|m| match m {
        Message::PortStatus(s) if s.reason == port_reason::MODIFY => Some(s.clone()),
        _ => None,
    });
    assert_eq!(st.desc.port_no, PortNo(3));
    assert_ne!(st.desc.state & mswitch::openflow::port::state::LINK_DOWN, 0);
    must(&["ip", "-n", &v.ns, "link", "set", &far, "up"]);
    let st = of.wait_for(|m| match m {
        Message::PortStatus(s) if s.reason == port_reason::MODIFY => Some(s.clone()),
        _ => None,
    });
    assert_ne!(st.desc.state & mswitch::openflow::port::state::LIVE, 0);
}

#[test]
fn ovs_ofctl_bundles_replace_a_table_at_once_or_not_at_all() {
    if !have_ofctl() {
        return;
    }
    // 1.4's bundle messages, and 1.3's ONF extension.
    for v in ["OpenFlow14", "OpenFlow13"] {
        let sw = Sw::new(&format!("bundle{v}"), 3);
        let o = ["-O", v, "--bundle"];
        ofctl_opts(
            &sw,
            &o,
            "add-flow",
            &["priority=10,in_port=1,actions=output:2"],
        );
        let file = sw.dir.join("flows.txt");
        std::fs::write(
            &file,
            "priority=20,in_port=1,actions=output:3\npriority=30,in_port=2,actions=output:1\n",
        )
        .unwrap();
        ofctl_opts(&sw, &o, "replace-flows", &[file.to_str().unwrap()]);
        assert_eq!(
            flows(&sw),
            [
                "priority=20,in_port=1 actions=output:3",
                "priority=30,in_port=2 actions=output:1",
            ],
            "{v}"
        );
        // One bad flow (a group that does not exist): nothing changes.
        std::fs::write(
            &file,
            "priority=40,in_port=3,actions=output:1\npriority=50,actions=group:9\n",
        )
        .unwrap();
        let out = Command::new("ovs-ofctl")
            .args(["-O", v, "--bundle", "add-flows", &sw.target()])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{v}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("OFPBAC_BAD_OUT_GROUP"), "{v}: {e}");
        assert_eq!(flows(&sw).len(), 2, "{v}");
        assert!(!flows(&sw).iter().any(|f| f.contains("priority=40")), "{v}");
        // Traffic follows the replaced table.
        let (mut p1, mut p3) = (sw.port(1), sw.port(3));
        send(&mut p1, &udp(1, 1));
        assert_eq!(recv_within(&mut p3, 1, LONG).len(), 1, "{v}");
    }
}

/// `ovs-ofctl CMD TARGET ARGS...` with no `-O`: OpenFlow 1.0 only.
fn plain_ofctl(sw: &Sw, cmd: &str, args: &[&str]) -> String {
    let out = Command::new("ovs-ofctl")
        .args(["--timeout=10", cmd, &sw.target()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ovs-ofctl {cmd} {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn plain_ovs_ofctl_speaks_openflow_1_0() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("of10", 3);
    let show = plain_ofctl(&sw, "show", &[]);
    assert!(show.contains("OFPT_FEATURES_REPLY (xid="), "{show}");
    assert!(show.contains(" 2(p2): addr:"), "{show}");
    assert!(show.contains("OFPT_GET_CONFIG_REPLY"), "{show}");
    plain_ofctl(&sw, "add-flow", &["priority=5,in_port=1,actions=output:2"]);
    // A table other than 0 takes Nicira's table-id extension.
    plain_ofctl(
        &sw,
        "add-flow",
        &["table=1,priority=7,udp,tp_dst=53,actions=drop"],
    );
    let f = plain_ofctl(&sw, "dump-flows", &[]);
    assert!(f.contains("priority=5,in_port=1 actions=output:2"), "{f}");
    assert!(f.contains("table=1,"), "{f}");
    assert!(f.contains("priority=7,udp,tp_dst=53 actions=drop"), "{f}");
    // What 1.0 installed, 1.3 sees.
    assert!(
        flows(&sw).contains(&"priority=5,in_port=1 actions=output:2".to_owned()),
        "{:?}",
        flows(&sw)
    );
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    send(&mut p1, &udp(1, 1));
    assert_eq!(recv_within(&mut p2, 1, LONG).len(), 1);
    // 1.0's MODIFY adds a flow when none matches.
    plain_ofctl(&sw, "mod-flows", &["in_port=3,actions=output:1"]);
    plain_ofctl(&sw, "mod-flows", &["in_port=1,actions=output:3"]);
    send(&mut p1, &udp(1, 2));
    assert_eq!(recv_within(&mut p3, 1, LONG).len(), 1);
    let f = plain_ofctl(&sw, "dump-flows", &[]);
    assert!(f.contains("in_port=3 actions=output:1"), "{f}");
    assert!(f.contains("n_packets=2"), "{f}");
    let ps = plain_ofctl(&sw, "dump-ports", &["1"]);
    assert!(ps.contains("rx pkts=2"), "{ps}");
    plain_ofctl(&sw, "mod-port", &["p3", "no-forward"]);
    let desc = plain_ofctl(&sw, "dump-ports-desc", &[]);
    assert!(desc.contains("NO_FWD"), "{desc}");
    plain_ofctl(&sw, "mod-port", &["p3", "forward"]);
    let hex: String = udp(7, 9).iter().map(|b| format!("{b:02x}")).collect();
    plain_ofctl(
        &sw,
        "packet-out",
        &[&format!("in_port=controller,packet={hex},actions=output:2")],
    );
    let got = recv_within(&mut p2, 1, LONG);
    assert_eq!(got.len(), 1);
    assert_eq!(tag(&got[0]), (7, 9));
    plain_ofctl(&sw, "del-flows", &["in_port=1"]);
    let f = plain_ofctl(&sw, "dump-flows", &[]);
    assert!(!f.contains("in_port=1 "), "{f}");
    plain_ofctl(&sw, "del-flows", &[]);
    assert!(flows(&sw).is_empty());
}

#[test]
fn a_standalone_switch_forwards_from_its_first_packet_and_a_secure_one_does_not() {
    if !have_ofctl() {
        return;
    }
    // Standalone (the default) with no controller: Open vSwitch's flow.
    let sw = Sw::new("standalone", 3);
    assert_eq!(flows(&sw), ["priority=0 actions=NORMAL"]);
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    // Unknown destination: flooded; the answer goes only to the learned port.
    send(&mut p1, &udp(1, 1));
    assert_eq!(recv_within(&mut p2, 1, LONG).len(), 1);
    assert_eq!(recv_within(&mut p3, 1, LONG).len(), 1);
    let reply = frame(MIN_LEN, 2, mac(1), 2);
    send(&mut p2, &reply);
    assert_eq!(recv_within(&mut p1, 1, LONG).len(), 1);
    assert!(recv_within(&mut p3, 1, Duration::from_millis(200)).is_empty());
    drop((p1, p2, p3));
    drop(sw);
    // Secure: empty tables, nothing forwarded.
    let dir = PathBuf::from(format!("/tmp/mswitch-of-{}-secure", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = Daemon::new().unwrap();
    d.set_run_dir(&dir);
    let of = OpenFlowOpts {
        fail_mode: Some("secure".into()),
        ..OpenFlowOpts::default()
    };
    d.create("sec", "flow", 1, None, false, &of).unwrap();
    let target = format!("unix:{}", d.mgmt_path("sec").display());
    let out = common::ovs_ofctl(&["--no-stats"], "dump-flows", &target, &[]);
    assert!(!out.contains("actions="), "{out}");
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
