//! The daemon: hosts named switches and serves the control socket.
//!
//! One thread accepts connections; each connection gets a thread that
//! answers requests line by line. A `vport-connect` turns its connection into
//! the lease of a virtual port: the daemon hands over the port's memfd and
//! doorbells and then only waits for the connection to close. When it does
//! (the client exits or dies), the switch first reads what the client had
//! already sent, then the port is detached and its memory freed; a port
//! created with `attach` is then re-created empty under the same number,
//! ready for the next client, while one created by the client goes away.
//! (Only if the port still is the one leased: it may have been detached, and
//! its name reused, while the client was connected.)

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use super::limits::Limits;
use super::ofagent::{self, Agent, AgentConfig};
use super::proto::{self, OpenFlowOpts, Request, Response, VportInfo};
use super::{PortKind, PortSpec, valid_name};
use crate::module::flow::{FlowConfig, FlowModule, PortVlan, PortVlanError};
use crate::module::{self, Module};
use crate::port::iflock::IfaceLock;
use crate::port::patch::PatchPanel;
use crate::port::{MemPort, Port, PortId};
use crate::stream::TlsKeys;
use crate::switch::{Switch, SwitchConfig};
use crate::sys::{self, EventFd};

/// A switch the daemon hosts.
struct Managed {
    /// Stopped before the switch (fields drop in order).
    agent: Option<Agent>,
    /// The agent's tables, when the switch was made with the flow module.
    flow: Option<Arc<FlowModule>>,
    sw: Arc<Switch>,
    busy_poll: bool,
    /// Virtual ports by name.
    vports: BTreeMap<String, Vport>,
    /// The interface locks of its socket ports, by port name (released
    /// after the switch and its ports are gone).
    iface_locks: BTreeMap<String, IfaceLock>,
}

struct Vport {
    port: Arc<MemPort>,
    spec: PortSpec,
    /// Created by `attach` (survives its clients) rather than by a client.
    persistent: bool,
    connected: bool,
    /// The connected client's control connection.
    session: Option<UnixStream>,
}

impl Vport {
    /// Ends the client's session, telling it why in one line first (the
    /// library reports it as `Disconnected`). Never blocks.
    fn hang_up(&mut self, why: &str) {
        if let Some(c) = self.session.take() {
            if c.set_nonblocking(true).is_ok() {
                let _ = (&c).write_all(Response::err(why.to_owned()).to_line().as_bytes());
            }
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Vport {
    fn drop(&mut self) {
        self.hang_up("the port was removed");
    }
}

pub struct Daemon {
    switches: Mutex<BTreeMap<String, Managed>>,
    stop: AtomicBool,
    stop_bell: EventFd,
    /// Open control connections, within `limits`; shut down when the
    /// daemon stops.
    conns: conns::Conns,
    limits: Mutex<Limits>,
    /// Where switches' OpenFlow sockets (`SWITCH.mgmt`, `SWITCH.snoop`) go: beside the
    /// control socket.
    run_dir: Mutex<PathBuf>,
    /// Where patch ports find their peers (on any of the switches).
    patches: PatchPanel,
    /// The keys of `ssl:`/`pssl:` OpenFlow connections (and of the
    /// vswitchd database connection), one set for the process.
    tls: Arc<TlsKeys>,
    /// The `--state` file, once in use.
    state: Mutex<Option<state::StateFile>>,
}

type Res<T> = Result<T, String>;

mod capture;
mod conns;
mod demux;
mod limits;
mod modules;
mod ovs;
mod serve;
mod state;

pub use state::Restored;

/// Attaches a TAP named after the switch as its LOCAL port (the highest
/// port number, out of the way of ports numbered from 1).
fn attach_local(name: &str, sw: &Switch, flow: &FlowModule) -> Res<()> {
    // Buffers for jumbo frames: Open vSwitch users set a bridge's MTU up
    // to 9000 on its interface (`mtu_request`) without re-making it.
    let buf = crate::port::kernel::buf_for_mtu(crate::port::kernel::JUMBO_MTU);
    let spec: PortSpec = format!("tap:{name},buf={buf}").parse()?;
    let port = crate::port::tap::TapPort::open_with(name, name, spec.mem_config(), false)
        .map_err(|e| e.to_string())?;
    let id = sw
        .attach(port, PortId::new(crate::port::MAX_PORTS as u32 - 1))
        .map_err(|e| e.to_string())?;
    flow.set_local_port(Some(id));
    Ok(())
}

impl Daemon {
    pub fn new() -> io::Result<Arc<Daemon>> {
        sys::raise_fd_limit();
        Ok(Arc::new(Daemon {
            switches: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            stop_bell: EventFd::new()?,
            conns: conns::Conns::default(),
            limits: Mutex::new(Limits::default()),
            patches: PatchPanel::new(),
            tls: Arc::default(),
            state: Mutex::new(None),
            run_dir: Mutex::new(
                super::default_ctl_path()
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            ),
        }))
    }

    /// Sets the daemon's limits (for switches and connections made from
    /// now on).
    pub fn set_limits(&self, l: Limits) {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = l;
    }

    /// The daemon's limits.
    pub fn limits(&self) -> Limits {
        self.limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The keys of TLS connections: set their files with
    /// [`TlsKeys::set`]; new connections use them.
    pub fn tls(&self) -> &Arc<TlsKeys> {
        &self.tls
    }

    /// Puts the switches' OpenFlow sockets in `dir`.
    pub fn set_run_dir(&self, dir: &Path) {
        *self.run_dir.lock().unwrap_or_else(|e| e.into_inner()) = dir.to_path_buf();
    }

    /// The default OpenFlow socket of switch `name`.
    pub fn mgmt_path(&self, name: &str) -> PathBuf {
        self.run_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join(format!("{name}.mgmt"))
    }

    /// Where `ovs-ofctl snoop` finds switch `name`'s controller traffic.
    pub fn snoop_path(&self, name: &str) -> PathBuf {
        self.mgmt_path(name).with_extension("snoop")
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Managed>> {
        self.switches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers one request (anything but `vport-connect`), and records a
    /// change in the state file if one is in use.
    pub fn handle(&self, req: Request) -> Response {
        self.handle_recorded(req)
    }

    /// Answers one request.
    fn answer(&self, req: Request) -> Response {
        let r = match req {
            Request::Create {
                switch,
                module,
                workers,
                batch,
                busy_poll,
                openflow,
            } => self.create(
                &switch,
                module.as_deref().unwrap_or("learn"),
                workers.unwrap_or(1),
                batch,
                busy_poll,
                &openflow,
            ),
            Request::Destroy { switch } => self.destroy(&switch),
            Request::Attach {
                switch,
                spec,
                ofport,
                vlan,
            } => self.attach_with_vlan(&switch, &spec, ofport, vlan.as_deref()),
            Request::Vlan { switch, port, vlan } => self.set_vlan(&switch, &port, &vlan),
            Request::Fdb { switch, flush } => self.fdb(&switch, flush),
            Request::Detach { switch, port } => self.detach(&switch, &port),
            Request::Module { switch, module } => self.set_module(&switch, &module),
            Request::List => Ok(self.list()),
            Request::Stats { switch } => self.stats(switch.as_deref()),
            Request::VportConnect { .. } => Err("vport-connect needs its own connection".into()),
            Request::Capture { .. } => Err("capture needs its own connection".into()),
            Request::Demux {
                switch,
                op,
                port,
                tuple,
            } => self.demux_ctl(&switch, &op, port.as_deref(), tuple.as_deref()),
            Request::DemuxBind { .. } => {
                Err("demux-bind is only for a vport's own connection".into())
            }
        };
        match r {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    pub fn create(
        &self,
        name: &str,
        module: &str,
        workers: usize,
        batch: Option<usize>,
        busy_poll: bool,
        of: &OpenFlowOpts,
    ) -> Res<serde_json::Value> {
        self.create_on(name, module, workers, batch, busy_poll, None, of)
    }

    /// Like `create`, with worker `i` pinned to `cpus[i]` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn create_on(
        &self,
        name: &str,
        module: &str,
        workers: usize,
        batch: Option<usize>,
        busy_poll: bool,
        cpus: Option<Vec<usize>>,
        of: &OpenFlowOpts,
    ) -> Res<serde_json::Value> {
        valid_name("switch", name)?;
        let max = self.limits().switches;
        let mut sws = self.lock();
        if sws.contains_key(name) {
            return Err(format!("switch '{name}' already exists"));
        }
        if sws.len() >= max {
            return Err(format!(
                "too many switches (at most {max}, --max-switches): destroy one first"
            ));
        }
        let (mname, margs) = module.split_once(':').unwrap_or((module, ""));
        let (m, flow): (Arc<dyn Module>, _) = if mname == "flow" {
            let f = Arc::new(FlowModule::new(
                FlowConfig::parse(margs).map_err(|e| e.to_string())?,
            ));
            (f.clone(), Some(f))
        } else {
            if !of.is_empty() {
                return Err(
                    "--controller, --listen, --dpid and --fail-mode need --module flow".into(),
                );
            }
            (module::build(module).map_err(|e| e.to_string())?, None)
        };
        let agent_cfg = match &flow {
            Some(_) => Some(self.agent_config(name, of)?),
            None => None,
        };
        let cfg = SwitchConfig {
            name: name.to_owned(),
            workers,
            batch: batch.unwrap_or(crate::switch::DEFAULT_BATCH),
            cpus,
            idle_after: if busy_poll {
                None
            } else {
                SwitchConfig::default().idle_after
            },
            ..SwitchConfig::default()
        };
        let sw = Arc::new(Switch::new(cfg, m).map_err(|e| e.to_string())?);
        // The bridge's own interface, OpenFlow's LOCAL, before the agent
        // first reads the ports (as Open vSwitch's bridges have one).
        let mut note = None;
        if let Some(f) = flow.as_ref().filter(|_| !of.no_local)
            && let Err(e) = attach_local(name, &sw, f)
        {
            note = Some(format!("no LOCAL port: {e}"));
        }
        let (agent, listening) = match (&flow, agent_cfg) {
            (Some(f), Some(c)) => {
                let a = Agent::start(sw.clone(), f.clone(), c)?;
                let l = a.listening.clone();
                (Some(a), l)
            }
            _ => (None, Vec::new()),
        };
        sws.insert(
            name.to_owned(),
            Managed {
                agent,
                flow,
                sw,
                busy_poll,
                vports: BTreeMap::new(),
                iface_locks: BTreeMap::new(),
            },
        );
        let mut r = json!({ "switch": name, "openflow": listening });
        if let Some(n) = note {
            r["note"] = json!(n);
        }
        Ok(r)
    }

    /// The agent configuration `of` asks for, with the switch's own Unix
    /// socket always among the listeners.
    fn agent_config(&self, name: &str, of: &OpenFlowOpts) -> Res<AgentConfig> {
        let mut listen = vec![ofagent::Passive::Unix(self.mgmt_path(name))];
        for l in &of.listen {
            listen.push(l.parse()?);
        }
        Ok(AgentConfig {
            controllers: of
                .controllers
                .iter()
                .map(|c| c.parse())
                .collect::<Res<Vec<_>>>()?,
            listen,
            snoop: vec![ofagent::Passive::Unix(self.snoop_path(name))],
            dpid: of.dpid.as_deref().map(ofagent::parse_dpid).transpose()?,
            fail_mode: of
                .fail_mode
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            probe: None,
            tls: self.tls.clone(),
            limits: self.limits().openflow,
            versions: of
                .protocols
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    pub fn destroy(&self, name: &str) -> Res<serde_json::Value> {
        let mut m = self
            .lock()
            .remove(name)
            .ok_or_else(|| format!("no switch '{name}'"))?;
        for v in m.vports.values_mut() {
            v.hang_up(&format!("switch '{name}' was destroyed"));
        }
        drop(m); // stops the workers
        // The freed memory of its threads' heaps goes back to the system.
        sys::res::trim();
        Ok(json!({ "switch": name }))
    }

    /// [`Daemon::attach`], then the port's VLAN settings (checked first, so
    /// bad settings attach nothing).
    pub fn attach_with_vlan(
        &self,
        switch: &str,
        spec: &str,
        ofport: Option<u32>,
        vlan: Option<&str>,
    ) -> Res<serde_json::Value> {
        let Some(vlan) = vlan else {
            return self.attach(switch, spec, ofport);
        };
        let v: PortVlan = vlan.parse().map_err(|e: PortVlanError| e.to_string())?;
        self.flow_of(switch)?;
        let mut r = self.attach(switch, spec, ofport)?;
        let id = r["ofport"].as_u64().and_then(|n| PortId::new(n as u32));
        if let (Some(id), Ok(flow)) = (id, self.flow_of(switch)) {
            flow.set_port_vlan(id, v.clone());
        }
        r["vlan"] = json!(v.to_string());
        Ok(r)
    }

    /// Each controller a flow switch dials, and whether it is connected.
    pub fn controllers(&self, switch: &str) -> Res<Vec<(String, bool)>> {
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        Ok(m.agent.as_ref().map(Agent::controllers).unwrap_or_default())
    }

    /// The flow module of a flow switch (VLAN settings and the MAC table
    /// belong to its NORMAL action).
    fn flow_of(&self, switch: &str) -> Res<Arc<FlowModule>> {
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        m.flow.clone().ok_or_else(|| {
            format!("switch '{switch}' has no flow module: VLAN settings and the MAC table belong to NORMAL")
        })
    }

    /// Sets a port's VLAN settings (by port name or number).
    pub fn set_vlan(&self, switch: &str, port: &str, vlan: &str) -> Res<serde_json::Value> {
        let v: PortVlan = vlan.parse().map_err(|e: PortVlanError| e.to_string())?;
        let flow = self.flow_of(switch)?;
        let id = self.port_id(switch, port)?;
        flow.set_port_vlan(id, v.clone());
        Ok(json!({ "switch": switch, "port": port, "ofport": id.0, "vlan": v.to_string() }))
    }

    /// NORMAL's MAC table, or empties it.
    pub fn fdb(&self, switch: &str, flush: bool) -> Res<serde_json::Value> {
        let flow = self.flow_of(switch)?;
        if flush {
            flow.fdb_flush();
            return Ok(json!({ "switch": switch }));
        }
        let now = self.lock().get(switch).map(|m| m.sw.now()).unwrap_or(0);
        let entries: Vec<serde_json::Value> = flow
            .fdb(now)
            .iter()
            .map(|e| json!({ "port": e.port.0, "vlan": e.vlan, "mac": e.mac.to_string(), "age": e.age_secs }))
            .collect();
        Ok(json!({ "switch": switch, "entries": entries }))
    }

    /// A port of `switch` by name or number.
    fn port_id(&self, switch: &str, port: &str) -> Res<PortId> {
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let st = m.sw.stats();
        st.ports
            .iter()
            .find(|p| p.name == port || p.id.to_string() == port)
            .and_then(|p| PortId::new(u32::from(p.id)))
            .ok_or_else(|| format!("no port '{port}' on switch '{switch}'"))
    }

    pub fn attach(&self, switch: &str, spec: &str, ofport: Option<u32>) -> Res<serde_json::Value> {
        let spec: PortSpec = spec.parse()?;
        let id = match ofport {
            Some(n) => Some(
                PortId::new(n).ok_or_else(|| format!("port number {n} out of range (1..=4095)"))?,
            ),
            None => None,
        };
        let mut sws = self.lock();
        if !sws.contains_key(switch) {
            return Err(format!("no switch '{switch}'"));
        }
        if spec.kind != PortKind::Vport {
            // One interface (or vhost-user port name), one switch: two
            // sockets on an interface would each see (and forward) every frame.
            for (other, m) in sws.iter() {
                if m.sw
                    .stats()
                    .ports
                    .iter()
                    .any(|p| p.name == spec.name && p.kind != "vport")
                {
                    return Err(format!(
                        "interface '{}' is already attached to switch '{other}'",
                        spec.name
                    ));
                }
            }
            shm_budget(&sws, &spec, self.limits().shm)?;
            let m = sws.get_mut(switch).ok_or("switch vanished")?;
            // And one daemon: another process with a socket on it would
            // forward every frame too.
            let lock = match spec.kind {
                PortKind::AfPacket | PortKind::AfXdp => {
                    IfaceLock::take(&spec.name).map_err(|e| e.to_string())?
                }
                _ => None,
            };
            let (port, note) = spec.open_kernel().map_err(|e| e.to_string())?;
            let kind = port.kind();
            let id = m.sw.attach(port, id).map_err(|e| e.to_string())?;
            if let Some(l) = lock {
                m.iface_locks.insert(spec.name.clone(), l);
            }
            return Ok(
                json!({ "switch": switch, "port": spec.name(), "ofport": id.0, "kind": kind, "note": note }),
            );
        }
        shm_budget(&sws, &spec, self.limits().shm)?;
        let m = sws.get_mut(switch).ok_or("switch vanished")?;
        let id = attach_spec(m, &spec, id, true)?;
        Ok(json!({ "switch": switch, "port": spec.name(), "ofport": id.0, "kind": "vport" }))
    }

    pub fn detach(&self, switch: &str, port: &str) -> Res<serde_json::Value> {
        let mut sws = self.lock();
        let m = sws
            .get_mut(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let id = match port.parse::<u32>() {
            Ok(n) => PortId::new(n).filter(|id| m.sw.ports().contains(id)),
            Err(_) => m.sw.port_id(port),
        }
        .ok_or_else(|| format!("no port '{port}' on switch '{switch}'"))?;
        let p = m.sw.detach(id).map_err(|e| e.to_string())?;
        // Released once the port (its socket) is closed, below.
        let lock = m.iface_locks.remove(p.name());
        if let Some(mut v) = m.vports.remove(p.name()) {
            v.hang_up(&format!(
                "port '{}' was detached from switch '{switch}'",
                p.name()
            ));
        }
        if let Some(f) = m.flow.as_ref().filter(|f| f.local_port() == Some(id)) {
            f.set_local_port(None);
        }
        let done = json!({ "switch": switch, "port": p.name(), "ofport": id.0 });
        drop(p);
        drop(lock);
        Ok(done)
    }

    pub fn list(&self) -> serde_json::Value {
        let sws = self.lock();
        let v: Vec<_> = sws
            .iter()
            .map(|(name, m)| {
                let st = m.sw.stats();
                let ports: Vec<_> = st
                    .ports
                    .iter()
                    .map(|p| {
                        let connected = m.vports.get(&p.name).map(|v| v.connected);
                        let local = m.flow.as_ref().and_then(|f| f.local_port()).map(|l| l.0) == Some(p.id);
                        json!({ "ofport": p.id, "name": p.name, "kind": p.kind, "worker": p.worker, "queue_workers": p.queue_workers, "connected": connected, "local": local, "state": p.state })
                    })
                    .collect();
                let openflow = m.agent.as_ref().map(|a| a.listening.clone());
                json!({
                    "switch": name, "module": st.module, "workers": st.workers.len(),
                    "busy_poll": m.busy_poll, "ports": ports, "openflow": openflow,
                })
            })
            .collect();
        serde_json::Value::Array(v)
    }

    pub fn stats(&self, switch: Option<&str>) -> Res<serde_json::Value> {
        let sws = self.lock();
        if let Some(s) = switch
            && !sws.contains_key(s)
        {
            return Err(format!("no switch '{s}'"));
        }
        let v: Vec<_> = sws
            .iter()
            .filter(|(n, _)| switch.is_none_or(|s| s == n.as_str()))
            .map(|(_, m)| serde_json::to_value(m.sw.stats()).unwrap_or_default())
            .collect();
        Ok(serde_json::Value::Array(v))
    }

    /// Every switch's counters, by switch name.
    pub fn switch_stats(&self) -> Vec<crate::switch::SwitchStats> {
        self.lock().values().map(|m| m.sw.stats()).collect()
    }

    /// Serves every switch's counters in Prometheus's text format on
    /// `addr` (`PORT` for loopback, or `ADDR:PORT`); returns where.
    pub fn start_metrics(self: &Arc<Self>, addr: &str) -> Res<std::net::SocketAddr> {
        let at = super::metrics::parse_addr(addr)?;
        let d = Arc::downgrade(self);
        super::metrics::serve(
            at,
            Arc::new(move || d.upgrade().map(|d| d.switch_stats()).unwrap_or_default()),
        )
    }

    /// Serves a `vport-connect` on `conn` until the client goes away.
    fn vport_session(&self, conn: &UnixStream, switch: &str, port: &str) -> Res<()> {
        let spec = PortSpec::vport(port);
        let (info, handle) = {
            let mut sws = self.lock();
            let m = sws
                .get_mut(switch)
                .ok_or_else(|| format!("no switch '{switch}'"))?;
            if let Some(v) = m.vports.get(port) {
                if v.connected {
                    return Err(format!(
                        "port '{port}' on switch '{switch}' already has a client"
                    ));
                }
            } else if m.sw.port_id(port).is_some() {
                return Err(format!(
                    "port '{port}' on switch '{switch}' is not a virtual port"
                ));
            } else {
                valid_name("port", &spec.name)?;
                shm_budget(&sws, &spec, self.limits().shm)?;
                let m = sws.get_mut(switch).ok_or("switch vanished")?;
                attach_spec(m, &spec, None, false)?;
            }
            let m = sws.get_mut(switch).ok_or("switch vanished")?;
            let id = m.sw.port_id(port).ok_or("port vanished")?;
            let v = m.vports.get_mut(port).ok_or("port vanished")?;
            v.connected = true;
            v.session = conn.try_clone().ok();
            let handle = v.port.clone();
            let info = VportInfo {
                switch: switch.to_owned(),
                port: port.to_owned(),
                ofport: id.0,
                region_len: handle.mem().region().len(),
            };
            (info, handle)
        };
        let fds: Vec<RawFd> = handle.client_fds().iter().map(|f| f.as_raw_fd()).collect();
        let line = Response::ok(serde_json::to_value(&info).unwrap_or_default()).to_line();
        let sent = sys::send_with_fds(conn.as_raw_fd(), line.as_bytes(), &fds);
        if sent.is_ok() {
            // The client keeps the connection open while it uses the port,
            // and may bind demux tuples for it over it.
            self.vport_requests(conn, switch, info.ofport);
        }
        self.vport_closed(switch, port, &handle);
        Ok(())
    }

    /// Whether `lease` is still the memory of vport `port` on `switch` (the
    /// port may have been detached, and its name reused, meanwhile).
    fn is_current(m: &Managed, port: &str, lease: &Arc<MemPort>) -> bool {
        m.vports
            .get(port)
            .is_some_and(|v| Arc::ptr_eq(&v.port, lease))
    }

    /// A vport's client went away: free its memory. A port configured by
    /// `attach` gets fresh memory under the same number (counters kept);
    /// one its client created goes away. `lease` is the memory the client
    /// had: a port that no longer uses it is someone else's and left alone.
    fn vport_closed(&self, switch: &str, port: &str, lease: &Arc<MemPort>) {
        let current = {
            let sws = self.lock();
            sws.get(switch)
                .is_some_and(|m| Self::is_current(m, port, lease))
        };
        if !current {
            return;
        }
        if !self.stop.load(Ordering::Relaxed) {
            // Packets the client published before it went are delivered,
            // as data written to a socket before close is.
            drain_incoming(lease);
        }
        let mut sws = self.lock();
        let Some(m) = sws.get_mut(switch) else { return };
        if !Self::is_current(m, port, lease) {
            return;
        }
        let Some(id) = m.sw.port_id(port) else { return };
        let Some(v) = m.vports.get_mut(port) else {
            return;
        };
        if !v.persistent || self.stop.load(Ordering::Relaxed) {
            m.vports.remove(port);
            let _ = m.sw.detach(id);
            return;
        }
        match MemPort::vport(port, v.spec.mem_config()) {
            Ok(fresh) => {
                v.port = fresh.clone();
                v.connected = false;
                v.session = None;
                if let Err(e) = m.sw.replace(id, fresh) {
                    tracing::warn!("cannot renew port '{port}' on '{switch}': {e}");
                }
            }
            Err(e) => {
                tracing::warn!("cannot renew port '{port}' on '{switch}': {e}; detaching it");
                m.vports.remove(port);
                let _ = m.sw.detach(id);
            }
        }
    }

    /// Asks `serve` to return and closes every connection.
    /// Whether the daemon was asked to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_bell.notify();
        self.conns.shutdown_all();
    }

    /// Stops every switch (detaching their ports and freeing their memory).
    pub fn shutdown(&self) {
        for m in self.lock().values_mut() {
            for v in m.vports.values_mut() {
                v.hang_up("the mswitch daemon is stopping");
            }
        }
        self.stop();
        let sws = std::mem::take(&mut *self.lock());
        drop(sws);
    }
}

/// Attaches the port `spec` describes.
fn attach_spec(
    m: &mut Managed,
    spec: &PortSpec,
    id: Option<PortId>,
    persistent: bool,
) -> Res<PortId> {
    let name = spec.name();
    if m.sw.port_id(name).is_some() {
        return Err(format!("a port named '{name}' is already attached"));
    }
    if spec.kind != PortKind::Vport {
        return Err(format!("'{spec}' is not a virtual port"));
    }
    let port = MemPort::vport(name, spec.mem_config()).map_err(limits::port_error)?;
    let id =
        m.sw.attach(port.clone() as Arc<dyn Port>, id)
            .map_err(|e| e.to_string())?;
    m.vports.insert(
        name.to_owned(),
        Vport {
            port,
            spec: spec.clone(),
            persistent,
            connected: false,
            session: None,
        },
    );
    Ok(id)
}

/// Refuses a port `spec` whose rings and buffers would take the memory of
/// every switch's ports past `max` bytes (`--max-shm`).
fn shm_budget(sws: &BTreeMap<String, Managed>, spec: &PortSpec, max: u64) -> Res<()> {
    let need = spec.mem_config().layout().total as u64;
    let used: u64 = sws.values().map(|m| m.sw.port_memory()).sum();
    if used.saturating_add(need) > max {
        use super::limits::show_size;
        return Err(format!(
            "port '{}' needs {} of memory and ports use {} already: over the limit of {} (--max-shm)",
            spec.name(),
            show_size(need),
            show_size(used),
            show_size(max)
        ));
    }
    Ok(())
}

/// Waits (at most 500 ms) until the switch has read every packet published
/// on `port`'s incoming ring, whose client has gone.
fn drain_incoming(port: &MemPort) {
    let ring = port.mem().incoming();
    let deadline = Instant::now() + Duration::from_millis(500);
    for _ in 0..1000 {
        // The switch releases up to what it read; a head more than a ring
        // ahead is garbage it ignores.
        let left = ring
            .hdr
            .head
            .load(Ordering::Acquire)
            .wrapping_sub(ring.hdr.tail.load(Ordering::Acquire));
        if left == 0 || left > ring.size() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Binds the control socket at `path`, replacing a stale socket left by a
/// daemon that was killed, but never one a live daemon still answers on.
pub fn bind_ctl(path: &Path) -> Res<UnixListener> {
    super::bind_unix(path, "another mswitch daemon is running on")
}

/// Runs a daemon in the foreground until a signal asks it to stop (SIGINT,
/// SIGTERM and the others of [`sys::DAEMON_SIGNALS`]; SIGHUP reopens the
/// log): binds `ctl`, lets `setup` configure it, serves, then stops every
/// switch (XDP programs detached, TAPs it made removed) and removes the
/// socket.
pub fn run_foreground(ctl: &Path, setup: impl FnOnce(&Arc<Daemon>) -> Res<()>) -> Res<()> {
    sys::block_stop_signals();
    let listener = bind_ctl(ctl)?;
    let d = Daemon::new().map_err(|e| e.to_string())?;
    if let Some(dir) = ctl.parent() {
        d.set_run_dir(dir);
    }
    let result = setup(&d).and_then(|()| {
        let sig = d.clone();
        std::thread::Builder::new()
            .name("mswitch-signals".into())
            .spawn(move || {
                let stop_by = loop {
                    let s = sys::wait_signal();
                    if s != libc::SIGHUP {
                        break s;
                    }
                    // A line in the old file (logrotate has moved it), then
                    // the new one says it was opened.
                    tracing::info!("SIGHUP: reopening the log file (if logging to one)");
                    crate::log::reopen();
                };
                tracing::info!("{}: stopping", sys::signal_name(stop_by));
                sig.stop();
            })
            .map_err(|e| e.to_string())?;
        d.serve(listener).map_err(|e| e.to_string())
    });
    d.shutdown();
    let _ = std::fs::remove_file(ctl);
    if result.is_ok() {
        tracing::info!("stopped: switches, ports and sockets removed");
    }
    result
}

/// The path given, or the default control socket path.
pub fn ctl_path(p: Option<&Path>) -> PathBuf {
    p.map(Path::to_path_buf)
        .unwrap_or_else(super::default_ctl_path)
}
