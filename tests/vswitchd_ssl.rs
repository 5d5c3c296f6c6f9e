//! `mswitch vswitchd` over SSL/TLS with Open vSwitch's own tools and
//! certificates made by Open vSwitch's `ovs-pki` (its two-CA layout:
//! switches' certificates signed by `switchca`, controllers' and the
//! database's by `controllerca`; each side trusts the other's CA):
//!
//! - the database reached at `ssl:` (ovsdb-server with `--remote=pssl:`),
//!   configured by `ovs-vsctl --db=ssl:...` with its own certificate;
//! - a bridge's `ssl:` controller (`ovs-testcontroller pssl:` with
//!   `--with-flows`) with the keys of the SSL table (`ovs-vsctl set-ssl`);
//! - a controller whose certificate comes from another CA is refused with
//!   a log line while the bridge forwards (standalone) between two hosts;
//! - a `pssl:` target reached by `ovs-ofctl ssl:...`, and refused to an
//!   `ovs-ofctl` with a certificate from another CA;
//! - `--bootstrap-ca-cert` of `mswitch run`: the CA certificate taken
//!   from a controller that sends it (`--peer-ca-cert`), then used.
//!
//! Needs root and Open vSwitch's tools (and `ovs-testcontroller`); without
//! them it says so and passes vacuously, except in CI.

mod common;
mod vswitchd_lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vswitchd_lab::{BIN, Lab, eventually, ready};

/// A private PKI made by `ovs-pki`, and a second one whose certificates
/// nobody here trusts.
struct Pki {
    dir: PathBuf,
}

/// A private key and its certificate.
struct Id {
    key: String,
    cert: String,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        for p in ["pki", "rogue"] {
            ovs_pki(dir, &["init", &format!("--dir={}", dir.join(p).display())]);
        }
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// A certificate for `name` signed by the `switch` or `controller` CA
    /// of the trusted PKI, or of the rogue one.
    fn sign(&self, name: &str, kind: &str, rogue: bool) -> Id {
        let pki = self.dir.join(if rogue { "rogue" } else { "pki" });
        ovs_pki(
            &self.dir,
            &[&format!("--dir={}", pki.display()), "req+sign", name, kind],
        );
        let f = |s: &str| {
            self.dir
                .join(format!("{name}-{s}.pem"))
                .display()
                .to_string()
        };
        Id {
            key: f("privkey"),
            cert: f("cert"),
        }
    }

    /// The certificate of the trusted PKI's `switch` or `controller` CA.
    fn ca(&self, kind: &str) -> String {
        self.dir
            .join(format!("pki/{kind}ca/cacert.pem"))
            .display()
            .to_string()
    }
}

/// `ovs-pki ARGS...` in `dir`, logging there; it must succeed.
fn ovs_pki(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("ovs-pki")
        .args(args)
        .arg(format!("--log={}", dir.join("pki.log").display()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ovs-pki: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits (bounded) until something accepts TCP connections on `port`.
fn wait_listening(port: u16) {
    eventually(&format!("a listener on port {port}"), 10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// `ovs-testcontroller pssl:PORT` with `id`, trusting `ca`, pushing the
/// flows of `flows` (if any) to every switch that connects; its log goes to
/// `NAME.log` in the lab.
fn testcontroller(lab: &mut Lab, name: &str, port: u16, id: &Id, ca: &str, extra: &[&str]) {
    let d = &lab.dir;
    let c = Command::new("ovs-testcontroller")
        .arg(format!("pssl:{port}:127.0.0.1"))
        .args(["-p", &id.key, "-c", &id.cert, "-C", ca])
        .args(extra)
        .arg(format!(
            "--unixctl={}",
            d.join(format!("{name}.ctl")).display()
        ))
        .arg(format!(
            "--log-file={}",
            d.join(format!("{name}.log")).display()
        ))
        .args(["--no-chdir", "-vconsole:emer"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ovs-testcontroller (package openvswitch-testcontroller)");
    lab.children.push(c);
    wait_listening(port);
}

/// `ovs-ofctl ARGS...` with a key, certificate and CA: (success, output).
fn ofctl_ssl(id: &Id, ca: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ovs-ofctl")
        .args(["--timeout=10", "-p", &id.key, "-c", &id.cert, "-C", ca])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn log_has(lab: &Lab, what: &str) -> bool {
    lab.log().contains(what)
}

#[test]
fn the_database_over_ssl() {
    if !ready() {
        return;
    }
    let mut lab = Lab::bare();
    let pki = Pki::new(&lab.dir);
    let db = pki.sign("db", "controller", false);
    let sw = pki.sign("sw", "switch", false);
    let vsctl = pki.sign("vsctl", "switch", false);
    let port = free_port();
    let d = lab.dir.clone();
    let server = Command::new("ovsdb-server")
        .arg(d.join("conf.db"))
        .arg(format!("--remote=punix:{}", d.join("db.sock").display()))
        .arg(format!("--remote=pssl:{port}:127.0.0.1"))
        .args(["--private-key", &db.key, "--certificate", &db.cert])
        .args(["--ca-cert", &pki.ca("switch")])
        .arg(format!("--unixctl={}", d.join("ovsdb.ctl").display()))
        .arg("--no-chdir")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(server);
    wait_listening(port);
    lab.vsctl(&["--no-wait", "init"]).unwrap();

    // mswitch vswitchd as ovs-ctl would start ovs-vswitchd on an ssl:
    // database, with ovs-vswitchd's short options.
    let err = std::fs::File::create(d.join("vswitchd.err")).unwrap();
    let vswitchd = Command::new(BIN)
        .env("OVS_RUNDIR", &d)
        .args(["vswitchd", &format!("ssl:127.0.0.1:{port}")])
        .args(["-p", &sw.key, "-c", &sw.cert, "-C", &pki.ca("controller")])
        .args(["--pidfile", "--no-chdir", "-vconsole:emer"])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    lab.children.push(vswitchd);

    let br = format!("mst{}", lab.tag);
    let tap = format!("mst{}p", lab.tag);
    lab.links.push(br.clone());
    lab.links.push(tap.clone());
    // ovs-vsctl over SSL with its own certificate, waiting for the daemon
    // (no --no-wait): it returns once cur_cfg has caught up.
    let out = Command::new("ovs-vsctl")
        .args([
            &format!("--db=ssl:127.0.0.1:{port}"),
            "-p",
            &vsctl.key,
            "-c",
            &vsctl.cert,
            "-C",
            &pki.ca("controller"),
            "--timeout=20",
        ])
        .args([
            "add-br",
            &br,
            "--",
            "set",
            "bridge",
            &br,
            "datapath_type=netdev",
        ])
        .args(["--", "add-port", &br, &tap, "--", "set", "interface", &tap])
        .args(["type=internal", "ofport_request=7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ovs-vsctl over ssl: {}\nvswitchd said:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.log()
    );
    let show = lab.ofctl("show", &br, &[]);
    assert!(show.contains(&format!(" 7({tap}): addr:")), "{show}");
    let cur = lab.must_vsctl(&["get", "Open_vSwitch", ".", "cur_cfg"]);
    let next = lab.must_vsctl(&["get", "Open_vSwitch", ".", "next_cfg"]);
    assert_eq!(cur, next);
    assert!(cur.parse::<u64>().unwrap() >= 1, "{cur}");
    assert_eq!(lab.must_vsctl(&["get", "Interface", &tap, "ofport"]), "7");
    assert!(
        log_has(&lab, &format!("connected to ssl:127.0.0.1:{port}")),
        "{}",
        lab.log()
    );
}

/// The flows ovs-testcontroller pushes (`--with-flows`), as it writes them.
const PUSHED: &str = "priority=7,ip,nw_dst=10.9.8.7 actions=drop\n";

#[test]
fn controllers_over_ssl_with_the_keys_of_the_ssl_table() {
    if !ready() {
        return;
    }
    let mut lab = Lab::start();
    let pki = Pki::new(&lab.dir);
    let sw = pki.sign("sw", "switch", false);
    let ctl = pki.sign("ctl", "controller", false);
    let rogue = pki.sign("rogue", "controller", true);
    let flows = lab.dir.join("flows.txt");
    std::fs::write(&flows, PUSHED).unwrap();
    let (good, bad) = (free_port(), free_port());
    let switch_ca = pki.ca("switch");
    testcontroller(
        &mut lab,
        "good",
        good,
        &ctl,
        &switch_ca,
        &["--with-flows", flows.to_str().unwrap()],
    );
    // The rogue controller trusts the switch: only the switch refuses.
    testcontroller(&mut lab, "bad", bad, &rogue, &switch_ca, &[]);

    lab.must_vsctl(&["set-ssl", &sw.key, &sw.cert, &pki.ca("controller")]);
    let (a, b) = (format!("msa{}", lab.tag), format!("msb{}", lab.tag));
    lab.add_br(&a);
    lab.add_br(&b);
    let listen = free_port();
    lab.must_vsctl(&[
        "set-controller",
        &a,
        &format!("ssl:127.0.0.1:{good}"),
        &format!("pssl:{listen}:127.0.0.1"),
    ]);
    lab.must_vsctl(&["set-controller", &b, &format!("ssl:127.0.0.1:{bad}")]);

    // The good controller connects and its flow is in the table.
    let target = format!("ssl:127.0.0.1:{good}");
    eventually("the ssl: controller connected", 20, || {
        lab.vsctl(&[
            "--columns=is_connected",
            "find",
            "controller",
            &format!("target=\"{target}\""),
        ])
        .is_ok_and(|o| o.contains("true"))
    });
    eventually("the controller's flow installed", 10, || {
        let (_, out) = lab.appctl(&["bridge/dump-flows", &a]);
        out.contains("priority=7,ip,nw_dst=10.9.8.7")
    });

    // The rogue one is refused, says the log, and never counts as connected.
    eventually("the rogue controller refused in the log", 20, || {
        lab.log().lines().any(|l| {
            l.contains(&format!("controller ssl:127.0.0.1:{bad} disconnected"))
                && l.contains("invalid peer certificate")
        })
    });
    let rogue_row = lab.must_vsctl(&[
        "--columns=is_connected",
        "find",
        "controller",
        &format!("target=\"ssl:127.0.0.1:{bad}\""),
    ]);
    assert!(rogue_row.contains("false"), "{rogue_row}");
    // ... and its bridge forwards all the same (standalone: NORMAL).
    let h1 = lab.host(1, "10.77.0.1");
    let h2 = lab.host(2, "10.77.0.2");
    lab.must_vsctl(&["add-port", &b, &h1.port]);
    lab.must_vsctl(&["add-port", &b, &h2.port]);
    let mut pinged = Err(String::new());
    for _ in 0..5 {
        pinged = h1.ping(&h2.ip, "3");
        if pinged.is_ok() {
            break;
        }
    }
    pinged.unwrap_or_else(|e| panic!("no forwarding beside a refused controller: {e}"));

    // The pssl: target: ovs-ofctl with a certificate of the controllers' CA.
    let at = format!("ssl:127.0.0.1:{listen}");
    let (ok, out) = ofctl_ssl(&ctl, &switch_ca, &["-O", "OpenFlow13", "show", &at]);
    assert!(
        ok,
        "ovs-ofctl show {at}: {out}\nvswitchd said:\n{}",
        lab.log()
    );
    assert!(out.contains("OFPT_FEATURES_REPLY (OF1.3)"), "{out}");
    let (ok, out) = ofctl_ssl(&ctl, &switch_ca, &["dump-flows", &at]);
    assert!(ok && out.contains("nw_dst=10.9.8.7"), "{out}");
    // Bulk both ways (more than a socket buffer holds): 5,000 flows in,
    // all of them listed back.
    let many = lab.dir.join("many.txt");
    let text: String = (0..5000)
        .map(|i| {
            format!(
                "priority=9,ip,nw_dst=10.{}.{}.1,actions=drop\n",
                i >> 8,
                i & 255
            )
        })
        .collect();
    std::fs::write(&many, text).unwrap();
    let (ok, out) = ofctl_ssl(
        &ctl,
        &switch_ca,
        &["add-flows", &at, many.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let (ok, out) = ofctl_ssl(&ctl, &switch_ca, &["-O", "OpenFlow13", "dump-flows", &at]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("priority=9,ip,").count(), 5000);
    // One from another CA is refused, with a log line.
    let (ok, out) = ofctl_ssl(&rogue, &switch_ca, &["-O", "OpenFlow13", "show", &at]);
    assert!(!ok, "a rogue ovs-ofctl got in: {out}");
    eventually("the rogue ovs-ofctl refused in the log", 10, || {
        lab.log().lines().any(|l| {
            l.contains("TLS connection from ssl:127.0.0.1:")
                && l.contains("invalid peer certificate")
        })
    });
    // The good controller stayed connected through all this.
    let rows = |lab: &Lab| {
        lab.must_vsctl(&[
            "--columns=is_connected",
            "find",
            "controller",
            &format!("target=\"{target}\""),
        ])
    };
    let row = rows(&lab);
    assert!(row.contains("true"), "{row}");

    // New keys apply to new connections only: with a key file that is not
    // there, the other bridge cannot reach the good controller (and says
    // why), while the connection made with the old keys stays.
    lab.must_vsctl(&[
        "set-ssl",
        "/nonexistent/key.pem",
        &sw.cert,
        &pki.ca("controller"),
    ]);
    lab.must_vsctl(&["set-controller", &b, &target]);
    eventually("the missing key file in the log", 10, || {
        lab.log().contains(&format!(
            "{b}: controller {target}: cannot read private key /nonexistent/key.pem"
        ))
    });
    eventually("two rows, one connected", 10, || {
        let r = rows(&lab);
        (r.matches("true").count(), r.matches("false").count()) == (1, 1)
    });
    std::thread::sleep(Duration::from_secs(1));
    let r = rows(&lab);
    assert_eq!(
        (r.matches("true").count(), r.matches("false").count()),
        (1, 1),
        "{r}"
    );
}

#[test]
fn the_ca_certificate_is_bootstrapped_from_the_controller() {
    if !ready() {
        return;
    }
    let mut lab = Lab::bare();
    let pki = Pki::new(&lab.dir);
    let sw = pki.sign("sw", "switch", false);
    let ctl = pki.sign("ctl", "controller", false);
    let port = free_port();
    let flows = lab.dir.join("flows.txt");
    std::fs::write(&flows, PUSHED).unwrap();
    // The controller sends its CA's certificate after its own.
    testcontroller(
        &mut lab,
        "boot",
        port,
        &ctl,
        &pki.ca("switch"),
        &[
            "--peer-ca-cert",
            &pki.ca("controller"),
            "--with-flows",
            flows.to_str().unwrap(),
        ],
    );
    let ca_file = lab.dir.join("bootstrapped-ca.pem");
    let br = format!("msk{}", lab.tag);
    lab.links.push(br.clone());
    let err = std::fs::File::create(lab.dir.join("vswitchd.err")).unwrap();
    let c = Command::new(BIN)
        .args(["run", "--module", "flow", "--name", &br])
        .arg(format!("--ctl={}", lab.dir.join("run.sock").display()))
        .arg(format!("--controller=ssl:127.0.0.1:{port}"))
        .args(["--private-key", &sw.key, "--certificate", &sw.cert])
        .arg(format!("--bootstrap-ca-cert={}", ca_file.display()))
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    lab.children.push(c);
    eventually("the CA certificate bootstrapped", 20, || ca_file.exists());
    let got = std::fs::read_to_string(&ca_file).unwrap();
    let want = std::fs::read_to_string(pki.ca("controller")).unwrap();
    let pem = |s: &str| {
        let b = s.find("-----BEGIN CERTIFICATE-----").unwrap();
        let e = s.find("-----END CERTIFICATE-----").unwrap();
        s[b..e].split_whitespace().collect::<String>()
    };
    assert_eq!(pem(&got), pem(&want), "the file holds the controller's CA");
    // Then the switch reconnects, verifying the controller with it: the
    // controller's flow arrives.
    let mgmt = format!("unix:{}", lab.dir.join(format!("{br}.mgmt")).display());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("ovs-ofctl")
            .args(["--timeout=10", "dump-flows", &mgmt])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("nw_dst=10.9.8.7") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no flow from the controller after the bootstrap:\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = lab.log();
    assert!(log.contains("bootstrapped the CA certificate to"), "{log}");
}
