//! `acl`: a stateless access-control list, as an mswitch module written
//! outside mswitch (it uses only mswitch's public module API).
//!
//! Every frame is checked against the rules in order; the first rule that
//! matches permits or denies it, and a frame no rule matches gets the
//! default action. Permitted frames are forwarded (`forward=flood`: to every
//! other port, so two ports make a bump in the wire; `forward=learn`: by
//! mswitch's learning bridge); denied ones are dropped and counted as
//! module drops. Frames too short for Ethernet are bad frames.
//!
//! Spec: `acl[:rule=ACTION:MATCH[@PORT],...,default=permit|deny,forward=flood|learn]`
//!
//! - ACTION: `permit` or `deny`.
//! - MATCH: `any`; an ethertype `arp`, `ipv4`, `ipv6`, `vlan` or `eth:N`
//!   (`eth:0x88cc`); `ip` (IPv4 or IPv6); `fragment` (any IPv4 fragment);
//!   an IP protocol `icmp`, `icmpv6`, `tcp`, `udp`, `sctp` or `proto:N`;
//!   `tcp:P`, `udp:P-Q`, `sctp:P`: that protocol to destination port P (or
//!   P to Q). IPv4 fragments after the first carry no ports, so no port rule
//!   matches them: deny `fragment` ahead of the port rules to drop them.
//! - `@PORT`: only frames that came in on that port number.
//!
//! `ctl module SW acl:ARGS` swaps in a new list (with fresh counters); the
//! switch keeps its old module if the arguments are refused. Counters in
//! `ctl stats`: `acl_rules`, `acl_permitted`, `acl_denied`, `acl_default`
//! (decided by the default action) and `acl_invalid`.
//!
//! ```
//! mswitch::module::register(&mswitch_acl::INFO).unwrap();
//! let acl = mswitch::module::build("acl:rule=deny:tcp:23,rule=deny:udp:1-1023@2").unwrap();
//! assert_eq!(acl.counters()[0], ("acl_rules", 2));
//! assert!(mswitch::module::build("acl:rule=deny:tcp:0x").is_err());
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mswitch::module::{
    Batch, Module, ModuleError, ModuleInfo, Nanos, PortId, Verdict, Verdicts, parse_args,
};
use mswitch::wire::ip::{
    ETHERTYPE_IPV6, Layers, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};

/// The registry entry: hand it to `mswitch::cli::main_with`.
pub static INFO: ModuleInfo = ModuleInfo {
    name: "acl",
    help: "stateless ACL; acl:rule=deny:tcp:23,rule=permit:udp:53@1,rule=deny:ip,default=permit,forward=flood|learn",
    build: |args| Ok(Arc::new(Acl::new(AclConfig::parse(args)?)?)),
};

/// Rules a list may have (each frame may be checked against all of them).
pub const MAX_RULES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Permit,
    Deny,
}

/// What a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Any,
    EtherType(u16),
    /// IPv4 or IPv6.
    Ip,
    /// An IPv4 fragment, the first included.
    Fragment,
    IpProto(u8),
    /// A protocol with ports, to a destination port in `lo..=hi`.
    Ports {
        proto: u8,
        lo: u16,
        hi: u16,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub what: Match,
    /// Only frames from this port.
    pub in_port: Option<PortId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    Flood,
    Learn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclConfig {
    pub rules: Vec<Rule>,
    pub default: Action,
    pub forward: Forward,
}

fn bad(msg: String) -> ModuleError {
    ModuleError::BadArgs { module: "acl", msg }
}

fn parse_action(s: &str) -> Result<Action, String> {
    match s {
        "permit" => Ok(Action::Permit),
        "deny" => Ok(Action::Deny),
        _ => Err(format!("'{s}' is not permit or deny")),
    }
}

/// A number in decimal or `0x` hex.
fn number<T: TryFrom<u32>>(s: &str) -> Option<T> {
    let n = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    T::try_from(n).ok()
}

fn parse_match(s: &str) -> Result<Match, String> {
    let (word, arg) = s.split_once(':').unwrap_or((s, ""));
    let proto = match word {
        "tcp" => Some(PROTO_TCP),
        "udp" => Some(PROTO_UDP),
        "sctp" => Some(PROTO_SCTP),
        _ => None,
    };
    if let Some(proto) = proto {
        if arg.is_empty() {
            return Ok(Match::IpProto(proto));
        }
        let (a, b) = arg.split_once('-').unwrap_or((arg, arg));
        let port =
            |p: &str| number::<u16>(p).ok_or_else(|| format!("'{p}' is not a port (0..=65535)"));
        let (lo, hi) = (port(a)?, port(b)?);
        if lo > hi {
            return Err(format!("port range {lo}-{hi} is empty"));
        }
        return Ok(Match::Ports { proto, lo, hi });
    }
    let m = match (word, arg) {
        ("any", "") => Match::Any,
        ("arp", "") => Match::EtherType(0x0806),
        ("ipv4", "") => Match::EtherType(0x0800),
        ("ipv6", "") => Match::EtherType(ETHERTYPE_IPV6),
        ("vlan", "") => Match::EtherType(0x8100),
        ("eth", n) => Match::EtherType(
            number(n).ok_or_else(|| format!("'{n}' is not an ethertype (0..=0xffff)"))?,
        ),
        ("ip", "") => Match::Ip,
        ("fragment", "") => Match::Fragment,
        ("icmp", "") => Match::IpProto(PROTO_ICMP),
        ("icmpv6", "") => Match::IpProto(PROTO_ICMPV6),
        ("proto", n) => Match::IpProto(
            number(n).ok_or_else(|| format!("'{n}' is not an IP protocol (0..=255)"))?,
        ),
        _ => {
            return Err(format!(
                "'{s}' is not a match (any, arp, ipv4, ipv6, vlan, eth:N, ip, fragment, icmp, icmpv6, proto:N, tcp|udp|sctp[:P[-Q]])"
            ));
        }
    };
    Ok(m)
}

impl Rule {
    /// `ACTION:MATCH[@PORT]`.
    pub fn parse(s: &str) -> Result<Rule, String> {
        let (body, port) = match s.rsplit_once('@') {
            Some((b, p)) => {
                let id = p
                    .parse::<u32>()
                    .ok()
                    .and_then(PortId::new)
                    .ok_or_else(|| format!("'@{p}' is not a port number"))?;
                (b, Some(id))
            }
            None => (s, None),
        };
        let (action, what) = body
            .split_once(':')
            .ok_or_else(|| format!("rule '{s}' is not ACTION:MATCH[@PORT]"))?;
        Ok(Rule {
            action: parse_action(action)?,
            what: parse_match(what)?,
            in_port: port,
        })
    }

    fn matches(&self, l: &Layers, in_port: PortId) -> bool {
        if self.in_port.is_some_and(|p| p != in_port) {
            return false;
        }
        match self.what {
            Match::Any => true,
            Match::EtherType(t) => l.ethertype == t,
            Match::Ip => l.ip.is_some(),
            Match::Fragment => l.ip.is_some_and(|ip| ip.fragment),
            Match::IpProto(p) => l.ip.is_some_and(|ip| ip.proto == p),
            Match::Ports { proto, lo, hi } => {
                l.ip.is_some_and(|ip| ip.proto == proto)
                    && l.ports.is_some_and(|(_, d)| (lo..=hi).contains(&d))
            }
        }
    }
}

impl AclConfig {
    pub fn parse(args: &str) -> Result<AclConfig, ModuleError> {
        let mut c = AclConfig {
            rules: Vec::new(),
            default: Action::Permit,
            forward: Forward::Flood,
        };
        for (k, v) in parse_args("acl", args)? {
            match k.as_str() {
                "rule" => {
                    if c.rules.len() == MAX_RULES {
                        return Err(bad(format!("more than {MAX_RULES} rules")));
                    }
                    c.rules.push(Rule::parse(&v).map_err(bad)?);
                }
                "default" => {
                    c.default = parse_action(&v).map_err(|e| bad(format!("default: {e}")))?
                }
                "forward" => {
                    c.forward = match v.as_str() {
                        "flood" => Forward::Flood,
                        "learn" => Forward::Learn,
                        _ => return Err(bad(format!("forward: '{v}' is not flood or learn"))),
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option '{k}' (rule, default, forward)"
                    )));
                }
            }
        }
        Ok(c)
    }
}

/// The module: the rules, what forwards permitted frames, and counters.
pub struct Acl {
    cfg: AclConfig,
    /// `forward=learn`: mswitch's learning bridge decides first.
    inner: Option<Arc<dyn Module>>,
    permitted: AtomicU64,
    denied: AtomicU64,
    by_default: AtomicU64,
    invalid: AtomicU64,
}

impl Acl {
    pub fn new(cfg: AclConfig) -> Result<Acl, ModuleError> {
        let inner = match cfg.forward {
            Forward::Flood => None,
            Forward::Learn => Some(mswitch::module::build("learn")?),
        };
        Ok(Acl {
            cfg,
            inner,
            permitted: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            by_default: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &AclConfig {
        &self.cfg
    }

    /// The action for a frame, and whether the default decided it.
    pub fn decide(&self, l: &Layers, in_port: PortId) -> (Action, bool) {
        match self.cfg.rules.iter().find(|r| r.matches(l, in_port)) {
            Some(r) => (r.action, false),
            None => (self.cfg.default, true),
        }
    }
}

impl Module for Acl {
    fn name(&self) -> &'static str {
        "acl"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, now: Nanos) {
        if let Some(inner) = &self.inner {
            // The bridge answers for every frame; the list then drops the
            // denied ones (the bridge has learnt their source addresses:
            // harmless, as no frame of theirs goes anywhere).
            inner.process(batch, out, now);
        }
        let in_port = batch.in_port();
        let (mut permitted, mut denied, mut by_default, mut invalid) = (0, 0, 0, 0);
        for i in 0..batch.len() {
            let d = batch.data(i);
            let (action, default) = if self.cfg.rules.is_empty() && d.len() >= 14 {
                (self.cfg.default, true)
            } else if let Ok(l) = Layers::parse(d) {
                self.decide(&l, in_port)
            } else {
                out.set(i, Verdict::Invalid);
                invalid += 1;
                continue;
            };
            by_default += u64::from(default);
            match action {
                Action::Deny => {
                    out.set(i, Verdict::Drop);
                    denied += 1;
                }
                Action::Permit => {
                    if self.inner.is_none() {
                        out.set(i, Verdict::Flood);
                    }
                    permitted += 1;
                }
            }
        }
        // Once per batch: the counters are shared by every worker.
        for (c, n) in [
            (&self.permitted, permitted),
            (&self.denied, denied),
            (&self.by_default, by_default),
            (&self.invalid, invalid),
        ] {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn port_attached(&self, port: PortId) {
        if let Some(m) = &self.inner {
            m.port_attached(port);
        }
    }

    fn port_detached(&self, port: PortId) {
        if let Some(m) = &self.inner {
            m.port_detached(port);
        }
    }

    fn tick(&self, now: Nanos) {
        if let Some(m) = &self.inner {
            m.tick(now);
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("acl_rules", self.cfg.rules.len() as u64),
            ("acl_permitted", self.permitted.load(Ordering::Relaxed)),
            ("acl_denied", self.denied.load(Ordering::Relaxed)),
            ("acl_default", self.by_default.load(Ordering::Relaxed)),
            ("acl_invalid", self.invalid.load(Ordering::Relaxed)),
        ]
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
