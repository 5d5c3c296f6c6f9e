//! `mswitch daemon --state FILE`: what the operator configured with `ctl`
//! survives a restart (or a crash).
//!
//! The file records, for each switch, how it was created (module and its
//! arguments, workers, OpenFlow controllers and listeners), the ports
//! attached with `ctl attach` (their specs, numbers and VLAN settings), the
//! module set later with `ctl module`, and the demux tuples bound with `ctl
//! demux` (not those a vport client binds over its own connection: they go
//! with the client). Ports a vport client created, flows and MAC tables are
//! not recorded: flows come back from the controllers, as in Open vSwitch.
//!
//! The file is the list of `ctl` requests that rebuilds that configuration,
//! in order (`{"mswitch_state": 1, "requests": [...]}`): for each switch its
//! `create`, its last `module`, its ports in the order they were attached
//! (so they get the same workers), then its tuples. It is written after
//! every change that succeeded, whole and atomically (a temporary file
//! beside it, fsync, rename, fsync of the directory), so a crash at any
//! moment leaves the old or the new file, never a mix.
//!
//! At start the requests are replayed through the same checks as requests
//! from `ctl`: a port that cannot come back (its interface is gone) is
//! reported in the log and skipped, as is a switch that cannot (and its
//! ports), and the rest come back. The file is trusted no more than a
//! control connection: it must belong to the daemon's user (or root) and
//! not be writable by anyone else, and a file that cannot be read whole
//! (corrupt, unknown version, a request that does not belong there) stops
//! the daemon before it starts, with one line saying why: starting empty
//! would overwrite the configuration with nothing at the first change.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Daemon, Res};
use crate::control::proto::{Request, Response};

/// The format written (and the only one read).
const VERSION: u32 = 1;
/// Largest state file read: far above any real configuration (4,095 ports
/// on each of many switches), well below what would hurt to parse.
const MAX_FILE: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    mswitch_state: u32,
    requests: Vec<Request>,
}

/// What one switch was given.
struct SwitchRec {
    /// The `create` request.
    create: Request,
    /// The last `module` request, if any.
    module: Option<Request>,
    /// `attach` requests with their port numbers (VLAN settings folded
    /// in), in the order the ports were attached: replayed in that order,
    /// ports get the same workers again.
    ports: Vec<(u16, Request)>,
    /// Tuples bound with `ctl demux`, and their ports' numbers.
    demux: BTreeMap<String, u16>,
}

/// The state file and the configuration it holds.
pub(super) struct StateFile {
    path: PathBuf,
    switches: BTreeMap<String, SwitchRec>,
    /// While the file is being replayed: record, do not write.
    holding: bool,
    /// `.FILE.lock`, locked while this daemon uses the file: two daemons
    /// writing one file in turn would each erase the other's changes.
    _lock: Option<std::fs::File>,
}

/// Whether `req` changes what the state file records.
fn changes(req: &Request) -> bool {
    match req {
        Request::Create { .. }
        | Request::Destroy { .. }
        | Request::Attach { .. }
        | Request::Vlan { .. }
        | Request::Detach { .. }
        | Request::Module { .. } => true,
        Request::Demux { op, .. } => op == "bind" || op == "unbind",
        _ => false,
    }
}

fn ofport_of(data: &Value) -> Option<u16> {
    data["ofport"].as_u64().and_then(|n| u16::try_from(n).ok())
}

impl StateFile {
    /// Notes the effect of `req`, which succeeded with `data`.
    fn record(&mut self, req: &Request, data: &Value) {
        match req {
            Request::Create { switch, .. } => {
                self.switches.insert(
                    switch.clone(),
                    SwitchRec {
                        create: req.clone(),
                        module: None,
                        ports: Vec::new(),
                        demux: BTreeMap::new(),
                    },
                );
            }
            Request::Destroy { switch } => {
                self.switches.remove(switch);
            }
            Request::Attach {
                switch, spec, vlan, ..
            } => {
                if let (Some(s), Some(n)) = (self.switches.get_mut(switch), ofport_of(data)) {
                    let vlan = data["vlan"].as_str().map(str::to_owned).or(vlan.clone());
                    s.ports.retain(|p| p.0 != n);
                    s.ports.push((
                        n,
                        Request::Attach {
                            switch: switch.clone(),
                            spec: spec.clone(),
                            ofport: Some(u32::from(n)),
                            vlan,
                        },
                    ));
                }
            }
            Request::Vlan { switch, .. } => {
                let s = self.switches.get_mut(switch);
                let n = ofport_of(data);
                let p = s.and_then(|s| s.ports.iter_mut().find(|p| Some(p.0) == n));
                if let Some((_, Request::Attach { vlan, .. })) = p {
                    *vlan = data["vlan"].as_str().map(str::to_owned);
                }
            }
            Request::Detach { switch, .. } => {
                if let (Some(s), Some(n)) = (self.switches.get_mut(switch), ofport_of(data)) {
                    s.ports.retain(|p| p.0 != n);
                    s.demux.retain(|_, p| *p != n);
                }
            }
            Request::Module { switch, .. } => {
                if let Some(s) = self.switches.get_mut(switch) {
                    s.module = Some(req.clone());
                    // A new module starts with no tuples.
                    s.demux.clear();
                }
            }
            Request::Demux { switch, op, .. } => {
                let (Some(s), Some(t)) = (self.switches.get_mut(switch), data["tuple"].as_str())
                else {
                    return;
                };
                match (op.as_str(), ofport_of(data)) {
                    ("bind", Some(n)) => {
                        s.demux.insert(t.to_owned(), n);
                    }
                    _ => {
                        s.demux.remove(t);
                    }
                }
            }
            _ => {}
        }
    }

    /// The requests that rebuild the configuration, in order.
    fn requests(&self) -> Vec<Request> {
        let mut out = Vec::new();
        for (name, s) in &self.switches {
            out.push(s.create.clone());
            // The module before the ports: a port's VLAN settings need the
            // flow module a later `module S flow` may have given the switch.
            out.extend(s.module.clone());
            out.extend(s.ports.iter().map(|p| p.1.clone()));
            out.extend(s.demux.iter().map(|(t, p)| Request::Demux {
                switch: name.clone(),
                op: "bind".into(),
                port: Some(p.to_string()),
                tuple: Some(t.clone()),
            }));
        }
        out
    }

    /// Writes the file whole, atomically.
    fn write(&self) -> Result<(), String> {
        let doc = Doc {
            mswitch_state: VERSION,
            requests: self.requests(),
        };
        let mut text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        text.push('\n');
        write_atomically(&self.path, text.as_bytes())
            .map_err(|e| format!("cannot write state file {}: {e}", self.path.display()))
    }
}

/// Replaces `path` with `bytes`: a reader (or a crash) sees the old file or
/// the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.file_name().is_none() {
        return Err(std::io::Error::other("no file name"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = beside(path, ".tmp");
    // Left by a crash in the middle of a write: ours (the directory is
    // checked at start), and never read.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself is durable once the directory is.
    std::fs::File::open(&dir)?.sync_all()
}

/// `path` with its file name made `.NAME{suffix}` (files beside the state
/// file that are never read as state).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    path.with_file_name(name)
}

/// Locks `.FILE.lock` beside the state file `path` for this daemon.
fn lock(path: &Path) -> Result<std::fs::File, String> {
    let at = beside(path, ".lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at)
        .map_err(|e| format!("cannot open {}: {e}", at.display()))?;
    match crate::sys::try_lock_exclusive(&f) {
        Ok(true) => Ok(f),
        Ok(false) => Err("in use by another mswitch daemon".into()),
        Err(e) => Err(format!("cannot lock {}: {e}", at.display())),
    }
}

/// Reads and checks the state file at `path`; `None` if there is none yet.
fn load(path: &Path) -> Result<Option<Vec<Request>>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
        Ok(m) => m,
    };
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    let euid = crate::sys::euid();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(format!(
            "belongs to uid {}, not to this daemon's uid {euid}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "mode {:04o}: group or others may write to it",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("{} bytes, more than {MAX_FILE}", meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse(&text).map(Some)
}

/// The requests of a state file's text, checked to be of the kinds the
/// daemon writes there.
fn parse(text: &str) -> Result<Vec<Request>, String> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| format!("corrupt: {e}"))?;
    if doc.mswitch_state != VERSION {
        return Err(format!(
            "format {} (this mswitch reads format {VERSION})",
            doc.mswitch_state
        ));
    }
    for (i, r) in doc.requests.iter().enumerate() {
        let fits = match r {
            Request::Create { .. } | Request::Attach { .. } | Request::Module { .. } => true,
            Request::Demux { op, .. } => op == "bind",
            _ => false,
        };
        if !fits {
            return Err(format!(
                "request {} is not one a state file holds: {}",
                i + 1,
                serde_json::to_string(r).unwrap_or_default()
            ));
        }
    }
    Ok(doc.requests)
}

/// One line naming what a replayed request was about.
fn describe(req: &Request) -> String {
    match req {
        Request::Create { switch, .. } => format!("switch '{switch}'"),
        Request::Attach { switch, spec, .. } => format!("port {spec} of switch '{switch}'"),
        Request::Module { switch, module } => format!("module {module} of switch '{switch}'"),
        Request::Demux {
            switch,
            port,
            tuple,
            ..
        } => format!(
            "demux tuple {} for port {} of switch '{switch}'",
            tuple.as_deref().unwrap_or(""),
            port.as_deref().unwrap_or("")
        ),
        _ => "request".into(),
    }
}

fn switch_of(req: &Request) -> &str {
    match req {
        Request::Create { switch, .. }
        | Request::Attach { switch, .. }
        | Request::Module { switch, .. }
        | Request::Demux { switch, .. } => switch,
        _ => "",
    }
}

/// What restoring a state file did.
#[derive(Debug, Default)]
pub struct Restored {
    /// Requests replayed with success.
    pub done: usize,
    /// One line for each thing that could not come back.
    pub skipped: Vec<String>,
    /// Whether there was a file to restore.
    pub found: bool,
}

impl Daemon {
    fn lock_state(&self) -> MutexGuard<'_, Option<StateFile>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Restores the configuration recorded in `path` (if the file exists),
    /// then records every change there from now on. A file that cannot be
    /// read whole, or cannot be written, is an error: the daemon should
    /// not start. Without a file, nothing is written until the first
    /// change or the end of a [`Daemon::state_batch`].
    pub fn use_state(&self, path: &Path) -> Res<Restored> {
        let show = path.display();
        if path.file_name().is_none() {
            return Err(format!("state file {show}: not a file name"));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::control::perms::prepare_dir(dir, false)
                .map_err(|e| format!("state file {show}: {e}"))?;
        }
        let lock = lock(path).map_err(|e| format!("state file {show}: {e}"))?;
        let requests = load(path)
            .map_err(|e| format!("state file {show}: {e}; refusing to start (fix or remove it)"))?;
        *self.lock_state() = Some(StateFile {
            path: path.to_path_buf(),
            switches: BTreeMap::new(),
            holding: true,
            _lock: Some(lock),
        });
        let mut r = Restored {
            found: requests.is_some(),
            ..Restored::default()
        };
        let mut lost_switches: Vec<String> = Vec::new();
        for req in requests.unwrap_or_default() {
            let sw = switch_of(&req).to_owned();
            if lost_switches.contains(&sw) {
                continue;
            }
            let what = describe(&req);
            let is_create = matches!(req, Request::Create { .. });
            let resp = self.handle(req);
            if resp.ok {
                r.done += 1;
                continue;
            }
            let e = resp.error.unwrap_or_default();
            if is_create {
                r.skipped
                    .push(format!("{what} not restored: {e}; its ports skipped"));
                lost_switches.push(sw);
            } else {
                r.skipped.push(format!("{what} not restored: {e}"));
            }
        }
        if r.found {
            // Rewritten now: without what could not come back, and known
            // to be writable.
            self.hold_state(false)?;
        } else if let Some(s) = self.lock_state().as_mut() {
            s.holding = false;
        }
        Ok(r)
    }

    /// Runs `f` (which makes many changes, such as the lines of a config
    /// file) recording its changes in the state file, if one is in use, but
    /// writing the file once, at the end, rather than after each change;
    /// not at all if `f` fails (the daemon is not to start half set up, nor
    /// to restore that next time).
    pub fn state_batch<T>(&self, f: impl FnOnce() -> Res<T>) -> Res<T> {
        self.hold_state(true)?;
        let r = f()?;
        self.hold_state(false)?;
        Ok(r)
    }

    /// Stops (`true`) or resumes writing the state file; resuming writes it.
    fn hold_state(&self, hold: bool) -> Res<()> {
        let mut st = self.lock_state();
        match st.as_mut() {
            Some(s) => {
                s.holding = hold;
                if hold { Ok(()) } else { s.write() }
            }
            None => Ok(()),
        }
    }

    /// Answers `req` and, when it changed the configuration and a state
    /// file is in use, records the change there. Changes are answered one
    /// at a time while a state file is in use, so the file follows them in
    /// the order they were made.
    pub(super) fn handle_recorded(&self, req: Request) -> Response {
        if !changes(&req) {
            return self.answer(req);
        }
        let mut st = self.lock_state();
        let Some(s) = st.as_mut() else {
            drop(st);
            return self.answer(req);
        };
        let resp = self.answer(req.clone());
        if !resp.ok {
            return resp;
        }
        s.record(&req, &resp.data);
        if s.holding {
            return resp;
        }
        match s.write() {
            Ok(()) => resp,
            Err(e) => {
                tracing::error!("{e}");
                Response::err(format!(
                    "done, but {e}: this change will not survive a restart"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(s: &str) -> Request {
        Request::Create {
            switch: s.into(),
            module: Some("learn".into()),
            workers: None,
            batch: None,
            busy_poll: false,
            openflow: Default::default(),
        }
    }

    fn attach(s: &str, spec: &str) -> Request {
        Request::Attach {
            switch: s.into(),
            spec: spec.into(),
            ofport: None,
            vlan: None,
        }
    }

    fn state() -> StateFile {
        StateFile {
            path: PathBuf::from("/nonexistent/state.json"),
            switches: BTreeMap::new(),
            holding: true,
            _lock: None,
        }
    }

    #[test]
    fn changes_fold_into_the_requests_that_rebuild_them() {
        let mut st = state();
        st.record(&create("s"), &serde_json::json!({"switch": "s"}));
        st.record(&attach("s", "vport:a"), &serde_json::json!({"ofport": 1}));
        st.record(&attach("s", "vport:b"), &serde_json::json!({"ofport": 2}));
        st.record(
            &Request::Vlan {
                switch: "s".into(),
                port: "b".into(),
                vlan: "tag=10".into(),
            },
            &serde_json::json!({"ofport": 2, "vlan": "tag=10"}),
        );
        st.record(
            &Request::Module {
                switch: "s".into(),
                module: "demux".into(),
            },
            &serde_json::json!({}),
        );
        st.record(
            &Request::Demux {
                switch: "s".into(),
                op: "bind".into(),
                port: Some("a".into()),
                tuple: Some("udp:10.0.0.1:53".into()),
            },
            &serde_json::json!({"ofport": 1, "tuple": "udp:10.0.0.1:53"}),
        );
        st.record(
            &Request::Detach {
                switch: "s".into(),
                port: "a".into(),
            },
            &serde_json::json!({"ofport": 1}),
        );
        st.record(&create("t"), &serde_json::json!({"switch": "t"}));
        st.record(
            &Request::Destroy { switch: "t".into() },
            &serde_json::json!({}),
        );
        let r = st.requests();
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0], create("s"));
        assert!(matches!(&r[1], Request::Module { module, .. } if module == "demux"));
        assert_eq!(
            r[2],
            Request::Attach {
                switch: "s".into(),
                spec: "vport:b".into(),
                ofport: Some(2),
                vlan: Some("tag=10".into()),
            }
        );
    }

    #[test]
    fn a_file_round_trips_and_bad_files_are_refused() {
        let mut st = state();
        st.record(&create("s"), &serde_json::json!({}));
        st.record(&attach("s", "tap:t0"), &serde_json::json!({"ofport": 3}));
        let text = serde_json::to_string(&Doc {
            mswitch_state: VERSION,
            requests: st.requests(),
        })
        .unwrap();
        assert_eq!(parse(&text).unwrap(), st.requests());
        assert!(parse("").unwrap_err().contains("corrupt"));
        assert!(
            parse(&text[..text.len() / 2])
                .unwrap_err()
                .contains("corrupt")
        );
        let v2 = text.replace("\"mswitch_state\":1", "\"mswitch_state\":2");
        assert!(parse(&v2).unwrap_err().contains("format 2"));
        let destroy = r#"{"mswitch_state":1,"requests":[{"cmd":"destroy","switch":"s"}]}"#;
        assert!(parse(destroy).unwrap_err().contains("request 1"));
        let extra = r#"{"mswitch_state":1,"requests":[],"x":1}"#;
        assert!(parse(extra).is_err());
    }

    #[test]
    fn writes_replace_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("mswitch-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("state.json");
        let mut st = state();
        st.path = path.clone();
        st.record(&create("s"), &serde_json::json!({}));
        st.write().unwrap();
        st.record(&create("u"), &serde_json::json!({}));
        st.write().unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back, vec![create("s"), create("u")]);
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary file left: {names:?}");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        assert!(load(&path).unwrap_err().contains("others may write"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
