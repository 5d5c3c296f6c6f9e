//! Issue 19, reproductions 5, 6 and part of 8, and restarts: the daemon's
//! sockets get fixed modes whatever the umask and never land in a
//! directory a stranger prepared; signals stop it cleanly (no XDP program,
//! TAP or socket file left) and SIGHUP does not; `--state FILE` brings back
//! what `ctl` configured after a `kill -9`; `ctl module S flow` on a switch
//! without OpenFlow forwards as a fresh Open vSwitch bridge.
//!
//! Each test has its own directory, interface names and (for the tests
//! that run as another user) uid; every process, interface and directory it
//! makes is removed by its [`Lab`]'s `Drop`, also when it fails. Every wait
//! is bounded.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::netns::{ctl, is_root};
use common::{must, sh, unique_tag};
use mswitch::control::client::VportConn;
use mswitch::wire::ethernet::MacAddr;

/// Upper bound for anything that should take far less.
const LONG: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_mswitch");

/// A test's directory, processes, interfaces and stray paths.
struct Lab {
    dir: PathBuf,
    procs: Vec<Option<Child>>,
    links: Vec<String>,
    /// Paths outside `dir` the test made (another uid's default directory).
    strays: Vec<PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for l in &self.links {
            let _ = sh(&["ip", "link", "del", l]);
        }
        for p in &self.strays {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The mode bits of `p` (not following a symbolic link).
fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn group_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().gid()
}

/// A uid (and gid) that no other test uses: there is no account behind it.
fn test_uid(k: u32) -> u32 {
    40_000 + (std::process::id() % 10_000) * 4 + k
}

/// Polls `f` until it holds, for at most `LONG`.
fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    /// The lab of test `test`, or `None` (the test is skipped) unless root.
    fn for_root(test: &str) -> Option<Lab> {
        is_root().then(|| Lab::new(test))
    }

    /// [`Lab::for_root`] with a daemon running switch `sw`; the daemon's
    /// number.
    fn with_switch(test: &str, sw: &str) -> Option<(Lab, usize)> {
        let mut lab = Lab::for_root(test)?;
        let d = lab.daemon(&[]);
        lab.ctl_ok(&["create", sw]);
        Some((lab, d))
    }

    fn new(test: &str) -> Lab {
        let dir = PathBuf::from(format!("/tmp/mswitch-fs-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("test directory");
        // Searchable by the tests' other uids, whatever the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Lab {
            dir,
            procs: Vec::new(),
            links: Vec::new(),
            strays: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sock(&self) -> String {
        self.path("ctl.sock").to_str().unwrap().to_owned()
    }

    /// `mswitch daemon --ctl SOCK ARGS...`.
    fn daemon_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["daemon", "--ctl", &self.sock()]).args(args);
        c
    }

    /// Starts `cmd` (a daemon whose control socket is `sock`), its standard
    /// error to a file, and waits until the socket answers. Panics with what
    /// it said if it exits first.
    fn start(&mut self, mut cmd: Command, sock: &str) -> usize {
        let i = self.procs.len();
        let log = std::fs::File::create(self.path(&format!("daemon{i}.log"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mswitch daemon");
        self.procs.push(Some(child));
        let deadline = Instant::now() + LONG;
        while ctl(sock, &["list"]).is_err() {
            if let Some(st) = self.child(i).try_wait().ok().flatten() {
                panic!("daemon exited ({st}): {}", self.log(i));
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        i
    }

    fn daemon(&mut self, args: &[&str]) -> usize {
        let cmd = self.daemon_cmd(args);
        self.start(cmd, &self.sock())
    }

    fn child(&mut self, i: usize) -> &mut Child {
        self.procs[i].as_mut().expect("process already reaped")
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(&format!("daemon{i}.log"))).unwrap_or_default()
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) {
        let pid = self.child(i).id() as libc::pid_t;
        // SAFETY: kill(2) of a child this lab started and has not reaped.
        #[allow(unsafe_code)]
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits (bounded) for process `i` to exit, and reaps it.
    fn wait_exit(&mut self, i: usize) -> ExitStatus {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(st) = self.child(i).try_wait().expect("wait") {
                self.procs[i] = None;
                return st;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mswitch ctl` on this lab's socket, which must succeed.
    fn ctl_ok(&self, args: &[&str]) -> String {
        ctl(&self.sock(), args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn list(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl_ok(&["list", "--json"])).expect("list --json")
    }

    /// A veth pair with a unique name, removed with the lab; its first end.
    fn veth(&mut self) -> String {
        let t = unique_tag();
        let (a, b) = (format!("fsa{t}"), format!("fsb{t}"));
        must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        self.links.push(a.clone());
        for l in [&a, &b] {
            let _ = sh(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{l}.disable_ipv6=1"),
            ]);
            must(&["ip", "link", "set", l, "up"]);
        }
        a
    }

    /// A TAP name nobody uses, removed with the lab if the daemon leaves it.
    fn tap_name(&mut self) -> String {
        let t = format!("fst{}", unique_tag());
        self.links.push(t.clone());
        t
    }
}

/// Whether interface `name` exists.
fn link_exists(name: &str) -> bool {
    sh(&["ip", "link", "show", "dev", name]).is_ok()
}

fn has_xdp(iface: &str) -> bool {
    let d = sh(&["ip", "-d", "link", "show", "dev", iface]).unwrap_or_default();
    d.contains("prog/xdp") || d.split_whitespace().any(|w| w.starts_with("xdp"))
}

/// The one line a command that failed printed on standard error.
fn one_line_failure(out: &std::process::Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should have failed");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    err
}

/// `cmd` run as uid and gid `uid`, with supplementary groups `groups`
/// (none if empty), without the variables that choose a socket.
fn as_user(uid: u32, groups: &[u32], prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &uid.to_string(), "--regid", &uid.to_string()]);
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        c.args(["--groups", &g.join(",")]);
    }
    c.arg(prog).args(args);
    c.env_remove("MSWITCH_CTL").env_remove("XDG_RUNTIME_DIR");
    c
}

/// Reproduction 5: under umask 000 the control socket was 0777 (anyone
/// could attach the host's interfaces through a root daemon), and a
/// non-root daemon used a `/tmp/mswitch-UID` another user had made.
#[test]
fn sockets_get_fixed_modes_and_strange_directories_are_refused() {
    let Some(mut lab) = Lab::for_root("perms") else {
        return;
    };
    // The daemon makes its directory: 0700, the socket 0600, whatever the
    // umask; the switches' OpenFlow sockets too.
    let run = lab.path("run");
    let sock = run.join("ctl.sock");
    let s = sock.to_str().unwrap().to_owned();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "umask 000; exec \"$0\" \"$@\"",
        BIN,
        "daemon",
        "--ctl",
        &s,
    ]);
    let d = lab.start(cmd, &s);
    assert_eq!(mode(&run), 0o700, "directory made under umask 000");
    assert_eq!(mode(&sock), 0o600, "control socket made under umask 000");
    ctl(&s, &["create", "of", "--module", "flow", "--no-local"]).unwrap();
    assert_eq!(mode(&run.join("of.mgmt")), 0o600, "OpenFlow socket");
    // mswitch's own TCP listeners stay on loopback unless given an address.
    let out = ctl(
        &s,
        &[
            "create",
            "of2",
            "--module",
            "flow",
            "--no-local",
            "--listen",
            "ptcp:0",
        ],
    )
    .unwrap();
    assert!(out.contains(":127.0.0.1"), "{out}");
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success());

    // --group: the directory 0750 and the socket 0660, both the group's,
    // even under a umask that takes the group's bits away. A member of the
    // group gets through; another user does not.
    let (gid, member) = (test_uid(0), test_uid(1));
    let grun = lab.path("grun");
    let gsock = grun.join("ctl.sock");
    let gs = gsock.to_str().unwrap().to_owned();
    let mut cmd = Command::new("sh");
    let g = gid.to_string();
    cmd.args([
        "-c",
        "umask 077; exec \"$0\" \"$@\"",
        BIN,
        "daemon",
        "--ctl",
        &gs,
        "--group",
        &g,
    ]);
    let d = lab.start(cmd, &gs);
    assert_eq!((mode(&grun), group_of(&grun)), (0o750, gid));
    assert_eq!((mode(&gsock), group_of(&gsock)), (0o660, gid));
    let ok = as_user(member, &[gid], BIN, &["ctl", "--ctl", &gs, "list"]).output();
    let ok = ok.unwrap();
    let said = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "group member refused: {said}");
    let no = as_user(member, &[], BIN, &["ctl", "--ctl", &gs, "list"])
        .output()
        .unwrap();
    let e = one_line_failure(&no, "ctl by a user outside the group");
    assert!(e.contains("ermission denied"), "{e}");
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success());

    // A non-root daemon's default directory, made beforehand by someone
    // else (root here), or left open to writers, is refused in one line.
    let uid = test_uid(2);
    let own = PathBuf::from(format!("/tmp/mswitch-{uid}"));
    let _ = std::fs::remove_dir_all(&own);
    lab.strays.push(own.clone());
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = as_user(uid, &[], BIN, &["daemon"]).output().unwrap();
    let e = one_line_failure(&out, "daemon in a stranger's directory");
    assert!(e.contains("belongs to uid 0"), "{e}");
    assert!(!own.join("mswitch.sock").exists());
    std::os::unix::fs::lchown(&own, Some(uid), Some(uid)).unwrap();
    let out = as_user(uid, &[], BIN, &["daemon"]).output().unwrap();
    let e = one_line_failure(&out, "daemon in a directory others may write");
    assert!(e.contains("mode 0777"), "{e}");
    // Its own directory, made by itself, is private.
    std::fs::remove_dir(&own).unwrap();
    let default = own.join("mswitch.sock");
    let d = lab.start(
        as_user(uid, &[], BIN, &["daemon"]),
        default.to_str().unwrap(),
    );
    assert_eq!(
        (mode(&own), std::fs::metadata(&own).unwrap().uid()),
        (0o700, uid)
    );
    assert_eq!(mode(&default), 0o600);
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success());
    assert!(!default.exists(), "socket left behind");
}

/// Reproduction 6: SIGHUP killed the daemon with no cleanup and no log
/// line; other signals that ask a process to go did the same.
#[test]
fn sighup_is_survived_and_logged_and_other_signals_clean_up() {
    let Some((mut lab, d)) = Lab::with_switch("hup", "sw") else {
        return;
    };
    lab.signal(d, libc::SIGHUP);
    poll("a log line about SIGHUP", || lab.log(d).contains("SIGHUP"));
    assert!(
        lab.child(d).try_wait().unwrap().is_none(),
        "SIGHUP killed it"
    );
    assert!(lab.ctl_ok(&["list"]).contains("sw"));
    for sig in [libc::SIGQUIT, libc::SIGUSR1] {
        let d = if sig == libc::SIGQUIT {
            d
        } else {
            lab.daemon(&[])
        };
        lab.signal(d, sig);
        let st = lab.wait_exit(d);
        assert!(st.success(), "signal {sig}: {st} ({})", lab.log(d));
        assert!(
            !Path::new(&lab.sock()).exists(),
            "signal {sig}: socket left"
        );
        assert!(lab.log(d).contains("stopping"), "{}", lab.log(d));
    }
}

/// Reproduction 6, the kernel's side: after SIGTERM no XDP program stays
/// on the af_xdp port's interface, no TAP the daemon made stays, and no
/// socket file.
#[test]
fn sigterm_leaves_no_xdp_program_tap_or_socket() {
    let Some(mut lab) = Lab::for_root("term") else {
        return;
    };
    let veth = lab.veth();
    let tap = lab.tap_name();
    let local = lab.tap_name();
    let d = lab.daemon(&[]);
    lab.ctl_ok(&["create", "sw"]);
    let out = lab.ctl_ok(&["attach", "sw", &format!("af_xdp:{veth}")]);
    assert!(has_xdp(&veth), "no XDP program attached: {out}");
    lab.ctl_ok(&["attach", "sw", &format!("tap:{tap}")]);
    assert!(link_exists(&tap));
    // A flow switch's LOCAL port is a TAP named after it, and its OpenFlow
    // sockets are files beside the control socket.
    lab.ctl_ok(&["create", &local, "--module", "flow"]);
    assert!(link_exists(&local));
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success(), "{}", lab.log(d));
    assert!(!has_xdp(&veth), "XDP program left on {veth}");
    assert!(!link_exists(&tap), "TAP {tap} left behind");
    assert!(!link_exists(&local), "LOCAL TAP {local} left behind");
    let left: Vec<String> = std::fs::read_dir(&lab.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".log"))
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// `ctl list --json` without what a vport client holds (its own ports
/// and whether a port has a client).
fn configured(mut list: serde_json::Value, client_port: &str) -> serde_json::Value {
    for sw in list.as_array_mut().unwrap() {
        let ports = sw["ports"].as_array_mut().unwrap();
        ports.retain(|p| p["name"] != client_port);
        for p in ports {
            p.as_object_mut().unwrap().remove("connected");
        }
    }
    list
}

/// Restarts: `--state FILE` brings back switches, ports (vport, tap,
/// af_packet), modules, OpenFlow listeners and ctl's demux bindings after
/// a `kill -9`; a port that cannot come back is reported and skipped; a
/// corrupt file stops the daemon before it starts.
#[test]
fn state_file_restores_what_ctl_configured_after_kill_9() {
    let Some(mut lab) = Lab::for_root("state") else {
        return;
    };
    let veth = lab.veth();
    let tap = lab.tap_name();
    let state = lab.path("state.json");
    let st = state.to_str().unwrap().to_owned();
    let d = lab.daemon(&["--state", &st]);
    lab.ctl_ok(&["create", "s1", "--workers", "2"]);
    lab.ctl_ok(&["attach", "s1", "vport:v1,ring=64"]);
    lab.ctl_ok(&["attach", "s1", &format!("tap:{tap}"), "--ofport", "5"]);
    lab.ctl_ok(&["attach", "s1", &format!("af_packet:{veth}")]);
    lab.ctl_ok(&["attach", "s1", "vport:gone"]);
    lab.ctl_ok(&["detach", "s1", "gone"]);
    lab.ctl_ok(&["module", "s1", "flow"]);
    // VLAN settings need the flow module the switch got after its ports.
    lab.ctl_ok(&["vlan", "s1", "v1", "tag=7"]);
    lab.ctl_ok(&["create", "s2", "--module", "demux"]);
    // Port 1 of a demux switch is the host's: tuples go to the others.
    lab.ctl_ok(&["attach", "s2", "vport:host"]);
    lab.ctl_ok(&["attach", "s2", "vport:d1"]);
    lab.ctl_ok(&["demux", "s2", "bind", "d1", "udp:10.0.0.1:53"]);
    let of = lab.path("s3.of");
    lab.ctl_ok(&[
        "create",
        "s3",
        "--module",
        "flow",
        "--no-local",
        "--fail-mode",
        "secure",
        "--listen",
        &format!("punix:{}", of.display()),
    ]);
    lab.ctl_ok(&["attach", "s3", "vport:x", "--vlan", "tag=10"]);
    lab.ctl_ok(&["create", "gone"]);
    lab.ctl_ok(&["destroy", "gone"]);
    // A client's own port is the client's: it does not come back.
    let client = VportConn::connect(Some(Path::new(&lab.sock())), "s1", "cl").unwrap();
    assert_eq!(mode(&state), 0o600);
    let before = configured(lab.list(), "cl");
    let demux = lab.ctl_ok(&["demux", "s2", "list"]);

    lab.signal(d, libc::SIGKILL);
    lab.wait_exit(d);
    drop(client);
    let d = lab.daemon(&["--state", &st]);
    assert_eq!(configured(lab.list(), "cl"), before, "{}", lab.log(d));
    assert_eq!(lab.ctl_ok(&["demux", "s2", "list"]), demux);
    assert!(of.exists(), "OpenFlow listener not restored");
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("tag=10") && text.contains("tag=7"), "{text}");
    // A second daemon (on another socket) cannot take the same file.
    let other = lab.path("other.sock");
    let out = Command::new(BIN)
        .args(["daemon", "--ctl", other.to_str().unwrap(), "--state", &st])
        .output()
        .unwrap();
    let e = one_line_failure(&out, "a second daemon on the same state file");
    assert!(e.contains("in use by another mswitch daemon"), "{e}");
    assert!(!other.exists());

    // The interface of the af_packet port vanishes while the daemon is
    // down: that port is reported and skipped, everything else comes back.
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success());
    must(&["ip", "link", "del", &veth]);
    let d = lab.daemon(&["--state", &st]);
    let mut want = before.clone();
    want[0]["ports"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != veth.as_str());
    assert_eq!(configured(lab.list(), "cl"), want);
    let log = lab.log(d);
    assert!(
        log.contains(&format!("af_packet:{veth}")) && log.contains("not restored"),
        "{log}"
    );
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success());

    // A corrupt or foreign file: one line, and no daemon.
    for (text, want) in [
        (
            "{\"mswitch_state\":1,\"requests\":[{\"cmd\":\"cre",
            "corrupt",
        ),
        (
            "{\"mswitch_state\":1,\"requests\":[{\"cmd\":\"list\"}]}",
            "request 1",
        ),
    ] {
        std::fs::write(&state, text).unwrap();
        let out = lab.daemon_cmd(&["--state", &st]).output().unwrap();
        let e = one_line_failure(&out, "daemon with a bad state file");
        assert!(e.contains("refusing to start") && e.contains(want), "{e}");
        assert!(!Path::new(&lab.sock()).exists());
    }
    std::fs::write(&state, "{\"mswitch_state\":1,\"requests\":[]}").unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = lab.daemon_cmd(&["--state", &st]).output().unwrap();
    let e = one_line_failure(&out, "daemon with a state file anyone may write");
    assert!(e.contains("others may write"), "{e}");
}

/// Reproduction 8 (part): `ctl module S flow` on a switch with no OpenFlow
/// listener dropped every packet, with nothing able to add a flow. Now the
/// switch is what a fresh Open vSwitch bridge is: `priority=0
/// actions=NORMAL`, programmable on its `S.mgmt` socket.
#[test]
fn module_flow_on_a_plain_switch_forwards_as_a_fresh_bridge() {
    let Some((lab, _)) = Lab::with_switch("flow", "s") else {
        return;
    };
    let sock = PathBuf::from(lab.sock());
    let mut a = VportConn::connect(Some(&sock), "s", "a").unwrap();
    let mut b = VportConn::connect(Some(&sock), "s", "b").unwrap();
    let out = lab.ctl_ok(&["module", "s", "flow"]);
    assert!(out.contains("OpenFlow on"), "{out}");
    let mgmt = format!("unix:{}", lab.path("s.mgmt").display());
    let flows = common::ovs_ofctl(&[], "dump-flows", &mgmt, &[]);
    assert!(flows.contains("priority=0 actions=NORMAL"), "{flows}");
    // A broadcast from a reaches b (NORMAL floods it).
    let f = common::frame(60, 1, MacAddr::BROADCAST, 7);
    assert!(a.send_one(&f));
    let got = common::recv_n(&mut b, 1, Duration::from_secs(5));
    assert_eq!(got, vec![f]);
    // Its settings are fixed once it has tables.
    let e = ctl(&lab.sock(), &["module", "s", "flow:tables=2"]).unwrap_err();
    assert!(e.contains("already has OpenFlow tables"), "{e}");
}

/// `--config` with `--state`: the config file sets up the first start and
/// is recorded; once the state file exists it wins. A config file that
/// fails leaves no state file behind (the next start runs it again).
#[test]
fn config_sets_up_the_first_start_and_the_state_file_the_others() {
    let Some(mut lab) = Lab::for_root("conf") else {
        return;
    };
    let state = lab.path("state.json");
    let conf = lab.path("switches.conf");
    let (st, cf) = (state.to_str().unwrap(), conf.to_str().unwrap());
    std::fs::write(&conf, "create c1\nattach c1 vport:p\nfrobnicate\n").unwrap();
    let out = lab
        .daemon_cmd(&["--state", st, "--config", cf])
        .output()
        .unwrap();
    let e = one_line_failure(&out, "daemon with a bad config file");
    assert!(e.contains(":3:"), "{e}");
    assert!(!state.exists(), "a failed config was recorded");
    std::fs::write(&conf, "create c1\nattach c1 vport:p\n").unwrap();
    let d = lab.daemon(&["--state", st, "--config", cf]);
    let first = lab.list();
    assert_eq!(first[0]["switch"], "c1");
    assert!(state.exists());
    lab.signal(d, libc::SIGTERM);
    assert!(lab.wait_exit(d).success());
    std::fs::write(&conf, "create c2\n").unwrap();
    let d = lab.daemon(&["--state", st, "--config", cf]);
    assert_eq!(lab.list(), first);
    assert!(lab.log(d).contains("--config not run"), "{}", lab.log(d));
}
