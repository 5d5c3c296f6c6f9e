//! The daemon's side of the `demux` module: `ctl demux` requests, and the
//! tuples a vport's client binds over its own connection (for its own port
//! only), released when the connection closes.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use serde_json::json;

use super::{Daemon, Res};
use crate::control::proto::{self, Request, Response};
use crate::module::Module;
use crate::module::demux::{Demux, Tuple};
use crate::port::PortId;

/// Most tuples one vport connection may bind.
const MAX_PER_CONNECTION: usize = 4096;

impl Daemon {
    /// The module of `switch`, if it is a `demux`.
    fn demux_of(&self, switch: &str) -> Res<Arc<dyn Module>> {
        let sws = self.lock();
        let m = sws
            .get(switch)
            .ok_or_else(|| format!("no switch '{switch}'"))?;
        let module = m.sw.module();
        if module.as_any().is_some_and(|a| a.is::<Demux>()) {
            Ok(module)
        } else {
            Err(format!(
                "switch '{switch}' runs module {}, not demux",
                module.name()
            ))
        }
    }

    /// `ctl demux SWITCH bind|unbind PORT TUPLE` and `ctl demux SWITCH list`.
    pub fn demux_ctl(
        &self,
        switch: &str,
        op: &str,
        port: Option<&str>,
        tuple: Option<&str>,
    ) -> Res<serde_json::Value> {
        let module = self.demux_of(switch)?;
        let d = as_demux(&module)?;
        if op == "list" {
            let names = self.port_names(switch);
            let v: Vec<_> = d
                .list()
                .into_iter()
                .map(|(t, p)| {
                    let name = names.iter().find(|n| n.0 == p).map(|n| n.1.as_str());
                    json!({ "tuple": t.to_string(), "ofport": p.0, "port": name.unwrap_or("") })
                })
                .collect();
            return Ok(json!({ "switch": switch, "tuples": v }));
        }
        let (Some(port), Some(tuple)) = (port, tuple) else {
            return Err(format!("demux {op} needs a port and a tuple"));
        };
        let t: Tuple = tuple.parse()?;
        let id = self.port_id(switch, port)?;
        match op {
            "bind" => d.bind(t, id),
            "unbind" => d.unbind(t, id),
            _ => {
                return Err(format!(
                    "unknown demux operation '{op}' (bind, unbind, list)"
                ));
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(json!({ "switch": switch, "port": port, "ofport": id.0, "tuple": t.to_string() }))
    }

    fn port_names(&self, switch: &str) -> Vec<(PortId, String)> {
        let sws = self.lock();
        let Some(m) = sws.get(switch) else {
            return Vec::new();
        };
        m.sw.stats()
            .ports
            .iter()
            .filter_map(|p| Some((PortId::new(u32::from(p.id))?, p.name.clone())))
            .collect()
    }

    /// Serves a vport client's requests on its connection until it closes;
    /// then releases the tuples it bound.
    pub(super) fn vport_requests(&self, conn: &UnixStream, switch: &str, ofport: u16) {
        let port = PortId(ofport);
        let mut bound: Vec<Tuple> = Vec::new();
        if let Ok(rd) = conn.try_clone() {
            let mut reader = BufReader::new(rd);
            let mut w = conn;
            while let Ok(Some(line)) = proto::read_line(&mut reader) {
                let answer = match serde_json::from_str::<Request>(&line) {
                    Ok(Request::DemuxBind { tuple, unbind }) => {
                        self.vport_bind(switch, port, &tuple, unbind, &mut bound)
                    }
                    Ok(_) => Err("a vport connection only takes demux-bind requests".into()),
                    Err(e) => Err(format!("bad request: {e}")),
                };
                let r = match answer {
                    Ok(v) => Response::ok(v),
                    Err(e) => Response::err(e),
                };
                if w.write_all(r.to_line().as_bytes()).is_err() {
                    break;
                }
            }
        }
        // Whatever else the client sends is ignored until it closes.
        let mut sink = [0u8; 256];
        let mut r = conn;
        while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
        if let Ok(m) = self.demux_of(switch)
            && let Ok(d) = as_demux(&m)
        {
            for t in bound {
                let _ = d.unbind(t, port);
            }
        }
    }

    fn vport_bind(
        &self,
        switch: &str,
        port: PortId,
        tuple: &str,
        unbind: bool,
        bound: &mut Vec<Tuple>,
    ) -> Res<serde_json::Value> {
        let module = self.demux_of(switch)?;
        let d = as_demux(&module)?;
        let t: Tuple = tuple.parse()?;
        if unbind {
            d.unbind(t, port).map_err(|e| e.to_string())?;
            bound.retain(|x| *x != t);
        } else {
            if bound.len() >= MAX_PER_CONNECTION && !bound.contains(&t) {
                return Err(format!(
                    "a connection binds at most {MAX_PER_CONNECTION} tuples"
                ));
            }
            d.bind(t, port).map_err(|e| e.to_string())?;
            if !bound.contains(&t) {
                bound.push(t);
            }
        }
        Ok(json!({ "switch": switch, "ofport": port.0, "tuple": t.to_string() }))
    }
}

fn as_demux(m: &Arc<dyn Module>) -> Res<&Demux> {
    m.as_any()
        .and_then(|a| a.downcast_ref::<Demux>())
        .ok_or_else(|| "not a demux switch".to_string())
}
