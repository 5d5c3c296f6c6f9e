//! `dummy`: a fixed port-to-port map. It looks at no packet bytes, so it
//! measures the bare switch.
//!
//! Spec: `dummy` pairs ports 1<->2, 3<->4, ...; `dummy:1=2,2=flood,3=4+5,4=drop`
//! sets the map explicitly (`PORT=PORT`, `PORT=P+Q+...`, `flood`, `drop`,
//! `controller`). Ports the map does not name drop their packets.

use std::sync::Arc;

use super::{Module, ModuleError, ModuleInfo, Nanos, Verdict, Verdicts, parse_args};
use crate::packet::Batch;
use crate::port::{MAX_PORTS, PortId};

pub const INFO: ModuleInfo = ModuleInfo {
    name: "dummy",
    help: "fixed port-to-port map (default pairs 1<->2, 3<->4, ...); dummy:1=2,2=flood,3=4+5",
    build: |args| Ok(Arc::new(Dummy::parse(args)?)),
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Drop,
    Port(PortId),
    Ports(Vec<PortId>),
    Flood,
    Controller,
}

pub struct Dummy {
    map: Vec<Target>,
}

impl Dummy {
    /// The default map: odd ports send to the next port, even to the previous.
    pub fn pairs() -> Dummy {
        let map = (0..MAX_PORTS)
            .map(|p| match p {
                0 => Target::Drop,
                p if p % 2 == 1 && p + 1 < MAX_PORTS => Target::Port(PortId((p + 1) as u16)),
                p if p % 2 == 0 => Target::Port(PortId((p - 1) as u16)),
                _ => Target::Drop,
            })
            .collect();
        Dummy { map }
    }

    /// A map that drops everything except what `entries` names.
    pub fn with_map(entries: impl IntoIterator<Item = (PortId, Target)>) -> Dummy {
        let mut map = vec![Target::Drop; MAX_PORTS];
        for (p, t) in entries {
            map[p.index()] = t;
        }
        Dummy { map }
    }

    pub fn parse(args: &str) -> Result<Dummy, ModuleError> {
        let kv = parse_args("dummy", args)?;
        if kv.is_empty() {
            return Ok(Dummy::pairs());
        }
        let bad = |msg: String| ModuleError::BadArgs {
            module: "dummy",
            msg,
        };
        let port = |s: &str| {
            s.parse::<u32>()
                .ok()
                .and_then(PortId::new)
                .ok_or_else(|| bad(format!("bad port number '{s}'")))
        };
        let mut entries = Vec::new();
        for (k, v) in kv {
            let from = port(&k)?;
            let t = match v.as_str() {
                "drop" => Target::Drop,
                "flood" => Target::Flood,
                "controller" => Target::Controller,
                v if v.contains('+') => {
                    Target::Ports(v.split('+').map(port).collect::<Result<_, _>>()?)
                }
                v => Target::Port(port(v)?),
            };
            entries.push((from, t));
        }
        Ok(Dummy::with_map(entries))
    }
}

impl Module for Dummy {
    fn name(&self) -> &'static str {
        "dummy"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        let v = match self
            .map
            .get(batch.in_port().index())
            .unwrap_or(&Target::Drop)
        {
            Target::Drop => Verdict::Drop,
            Target::Port(p) => Verdict::Port(*p),
            Target::Flood => Verdict::Flood,
            Target::Controller => Verdict::Controller,
            Target::Ports(ps) => out.add_set(ps),
        };
        out.fill(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(m: &Dummy, in_port: u16, n: usize) -> Verdicts {
        let mut bufs = vec![vec![0u8; 60]; n];
        let mut refs = Vec::new();
        let mut b = Batch::from_buffers(&mut bufs, &mut refs, PortId(in_port));
        let mut out = Verdicts::default();
        out.reset(n);
        m.process(&mut b, &mut out, 0);
        out
    }

    #[test]
    fn default_map_pairs_ports() {
        let m = Dummy::pairs();
        assert_eq!(
            verdicts(&m, 1, 3).as_slice(),
            &[Verdict::Port(PortId(2)); 3]
        );
        assert_eq!(verdicts(&m, 2, 1).as_slice(), &[Verdict::Port(PortId(1))]);
        assert_eq!(
            verdicts(&m, 1024, 1).as_slice(),
            &[Verdict::Port(PortId(1023))]
        );
    }

    #[test]
    fn explicit_map() {
        let m = Dummy::parse("1=3, 2=flood,3=1+2,4=controller").unwrap();
        assert_eq!(verdicts(&m, 1, 1).get(0), Verdict::Port(PortId(3)));
        assert_eq!(verdicts(&m, 2, 1).get(0), Verdict::Flood);
        let v = verdicts(&m, 3, 2);
        let Verdict::Ports(k) = v.get(1) else {
            panic!()
        };
        assert_eq!(v.set_members(k), &[PortId(1), PortId(2)]);
        assert_eq!(verdicts(&m, 4, 1).get(0), Verdict::Controller);
        assert_eq!(verdicts(&m, 5, 1).get(0), Verdict::Drop);
    }

    #[test]
    fn bad_specs_are_rejected() {
        for s in ["1", "0=2", "1=4096", "x=1", "1=2+y"] {
            assert!(Dummy::parse(s).is_err(), "{s}");
        }
    }
}
