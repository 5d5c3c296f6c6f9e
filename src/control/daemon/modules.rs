//! `ctl module`: swapping a switch's module while traffic flows, and what
//! `flow` means on a switch that was made without OpenFlow.

use std::sync::Arc;

use serde_json::json;

use super::{Agent, Daemon, OpenFlowOpts, Res};
use crate::module::flow::{FlowConfig, FlowModule};
use crate::module::{self, Module};

impl Daemon {
    /// Swaps the module of `switch`. `flow` on a switch made with the flow
    /// module gives back its tables (and their OpenFlow agent); on any
    /// other switch it makes the switch what a fresh Open vSwitch bridge
    /// is: OpenFlow tables holding `priority=0 actions=NORMAL` (fail mode
    /// standalone, no controller), programmable on the switch's socket
    /// `SWITCH.mgmt` — rather than empty tables that drop every packet
    /// with nothing able to fill them.
    pub fn set_module(&self, switch: &str, spec: &str) -> Res<serde_json::Value> {
        let mut sws = self.lock();
        let s = sws
            .get_mut(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let (mname, margs) = spec.split_once(':').unwrap_or((spec, ""));
        let m = match &s.flow {
            Some(f) if spec == "flow" => f.clone() as Arc<dyn Module>,
            Some(_) if mname == "flow" => {
                return Err(format!(
                    "switch '{switch}' already has OpenFlow tables: `module {switch} flow` gives them back; their settings are fixed when it is created"
                ));
            }
            None if mname == "flow" => {
                let f = Arc::new(FlowModule::new(
                    FlowConfig::parse(margs).map_err(|e| e.to_string())?,
                ));
                let of = OpenFlowOpts {
                    no_local: true,
                    ..OpenFlowOpts::default()
                };
                let agent = Agent::start(s.sw.clone(), f.clone(), self.agent_config(switch, &of)?)?;
                let listening = agent.listening.clone();
                s.sw.set_module(f.clone());
                s.flow = Some(f);
                s.agent = Some(agent);
                return Ok(json!({ "switch": switch, "module": spec, "openflow": listening }));
            }
            _ => module::build(spec).map_err(|e| e.to_string())?,
        };
        s.sw.set_module(m);
        Ok(json!({ "switch": switch, "module": spec }))
    }
}
