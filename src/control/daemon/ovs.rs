//! What `mswitch vswitchd` asks of the daemon beyond `mswitch ctl`'s
//! requests: patch ports, mirrors, flow dumps, controller status, and new
//! OpenFlow settings for a switch that keeps its flows.

use std::sync::Arc;

use super::{Agent, Daemon, OpenFlowOpts, Res, ofagent, valid_name};
use crate::module::Module;
use crate::port::PortId;
use crate::switch::mirror::MirrorSpec;
use serde_json::json;

impl Daemon {
    /// Each controller a flow switch dials, in detail.
    pub fn controller_status(&self, switch: &str) -> Res<Vec<ofagent::ControllerStatus>> {
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        Ok(m.agent
            .as_ref()
            .map(Agent::controller_status)
            .unwrap_or_default())
    }

    /// Whether each of ports `ofports` of `switch` has its link up (None:
    /// no such port).
    pub fn links_up(&self, switch: &str, ofports: &[u32]) -> Vec<Option<bool>> {
        let ids: Vec<PortId> = ofports
            .iter()
            .map(|&n| PortId::new(n).unwrap_or(PortId(0)))
            .collect();
        match self.lock().get(switch) {
            Some(m) => m.sw.links_up(&ids),
            None => vec![None; ofports.len()],
        }
    }

    /// Gives a flow switch new OpenFlow settings (controllers, listeners,
    /// fail mode, versions, datapath id) by restarting only its agent: the
    /// switch, its ports and its flows stay (emptied first if `flush`).
    /// Returns the addresses the new agent listens on.
    pub fn set_openflow(&self, switch: &str, of: &OpenFlowOpts, flush: bool) -> Res<Vec<String>> {
        let cfg = self.agent_config(switch, of)?;
        let mut sws = self.lock();
        let m = sws
            .get_mut(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let flow = m
            .flow
            .clone()
            .ok_or_else(|| format!("switch '{switch}' has no flow module"))?;
        // The old agent goes first: it holds the listening sockets, and may
        // have left the switch learning (standalone without controller).
        m.agent = None;
        m.sw.set_module(flow.clone() as Arc<dyn Module>);
        if flush {
            let all = crate::openflow::FlowMod {
                command: crate::openflow::flow::FlowModCommand::Delete,
                table_id: crate::openflow::table_id::ALL,
                ..Default::default()
            };
            flow.flow_mod(&all, m.sw.now()).map_err(|e| e.to_string())?;
        }
        let agent = Agent::start(m.sw.clone(), flow, cfg)?;
        let listening = agent.listening.clone();
        m.agent = Some(agent);
        Ok(listening)
    }

    /// Attaches patch port `name` of `switch`, linked to the patch port
    /// named `peer` (on any switch) once that exists and names it back.
    pub fn attach_patch(
        &self,
        switch: &str,
        name: &str,
        peer: Option<&str>,
        ofport: Option<u32>,
    ) -> Res<serde_json::Value> {
        valid_name("port", name)?;
        let id = ofport.and_then(PortId::new);
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let port = self
            .patches
            .open(name, peer, crate::packet::DEFAULT_BUF_SIZE)
            .map_err(|e| e.to_string())?;
        let id = m.sw.attach(port, id).map_err(|e| e.to_string())?;
        Ok(json!({ "switch": switch, "port": name, "ofport": id.0, "kind": "patch" }))
    }

    /// Every flow of a flow switch, as flow stats (all tables).
    pub fn flows(&self, switch: &str) -> Res<Vec<crate::openflow::multipart::FlowStats>> {
        let flow = self.flow_of(switch)?;
        let now = self.lock().get(switch).map(|m| m.sw.now()).unwrap_or(0);
        flow.flow_stats(&Default::default(), now)
            .map_err(|e| e.to_string())
    }

    /// Replaces the port mirrors of `switch` (`port_vlans`: the ports' VLAN
    /// settings, for mirrors that look at VLANs).
    pub fn set_mirrors(
        &self,
        switch: &str,
        specs: &[MirrorSpec],
        port_vlans: &[(PortId, crate::module::flow::PortVlan)],
    ) -> Res<()> {
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        m.sw.set_mirrors_with_vlans(specs, port_vlans);
        Ok(())
    }

    /// Gives `switch` a new set of workers (`workers` threads, busy-polling
    /// or sleeping when idle, pinned to `cpus`) while its flows, ports
    /// (same numbers, same backends: vhost-user guests and AF_XDP sockets
    /// stay connected) and mirrors stay: a new switch is made and every
    /// port moved to it. A worker's thread cannot take a new CPU set on
    /// its own here (queues, counters and batches are per worker), so the
    /// workers are made again. The ports' counters start again from zero.
    /// Its OpenFlow agent is stopped: the caller starts it again
    /// ([`Daemon::set_openflow`]).
    pub fn set_workers(
        &self,
        switch: &str,
        workers: usize,
        busy_poll: bool,
        cpus: Option<Vec<usize>>,
    ) -> Res<()> {
        let mut sws = self.lock();
        let m = sws
            .get_mut(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let old = m.sw.clone();
        let mut cfg = old.config().clone();
        cfg.workers = workers;
        cfg.cpus = cpus;
        cfg.idle_after = if busy_poll {
            None
        } else {
            crate::switch::SwitchConfig::default().idle_after
        };
        // While ports move, both switches drop what arrives: the ports'
        // own module state (MAC table, port liveness) is not told they left.
        let parked =
            || Arc::new(crate::module::dummy::Dummy::with_map(Vec::new())) as Arc<dyn Module>;
        let new = Arc::new(crate::switch::Switch::new(cfg, parked()).map_err(|e| e.to_string())?);
        m.agent = None;
        let module = match &m.flow {
            Some(f) => f.clone() as Arc<dyn Module>,
            None => old.module(),
        };
        old.set_module(parked());
        new.set_mirrors_from(&old);
        let mut failed = Vec::new();
        for id in old.ports() {
            let port = old.detach(id).map_err(|e| e.to_string())?;
            let name = port.name().to_owned();
            if let Err(e) = new.attach(port, Some(id)) {
                failed.push(format!("{name}: {e}"));
            }
        }
        new.set_module(module);
        m.sw = new;
        m.busy_poll = busy_poll;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "ports lost moving to new workers: {}",
                failed.join("; ")
            ))
        }
    }

    /// Whether patch port `name` is linked to its peer.
    pub fn patch_plugged(&self, name: &str) -> bool {
        self.patches.plugged(name)
    }
}
