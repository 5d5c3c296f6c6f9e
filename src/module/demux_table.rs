//! The `demux` module's table: who holds which (protocol, destination IP,
//! destination port) tuple, with the refusals that keep one application
//! from taking another's traffic.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::port::PortId;

/// IP protocol numbers the table knows.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// The destination address of a wildcard tuple ("any address of this
/// host"): `::` never is a packet's destination.
pub const ANY: u128 = 0;

/// One tuple: protocol, destination address (IPv4 as IPv4-mapped IPv6) and
/// destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub ip: u128,
    pub port: u16,
    pub proto: u8,
}

/// Maps an IPv4 address into the table's address space.
#[inline]
pub fn v4(a: [u8; 4]) -> u128 {
    0xffff_0000_0000 | u128::from(u32::from_be_bytes(a))
}

fn proto_name(p: u8) -> &'static str {
    if p == TCP { "tcp" } else { "udp" }
}

fn parse_proto(s: &str) -> Result<u8, String> {
    match s {
        "tcp" => Ok(TCP),
        "udp" => Ok(UDP),
        _ => Err(format!("protocol '{s}' is not tcp or udp")),
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = proto_name(self.proto);
        if self.ip == ANY {
            return write!(f, "{p}:*:{}", self.port);
        }
        match Ipv6Addr::from(self.ip).to_ipv4_mapped() {
            Some(a) => write!(f, "{p}:{a}:{}", self.port),
            None => write!(f, "{p}:[{}]:{}", Ipv6Addr::from(self.ip), self.port),
        }
    }
}

impl FromStr for Tuple {
    type Err = String;

    /// `udp|tcp:[IP:]PORT`, IP `*` (or left out) for any address, an IPv6
    /// address in brackets: `udp:10.0.0.1:53`, `tcp:[fd00::1]:80`,
    /// `tcp:*:8080`, `udp:4789`.
    fn from_str(s: &str) -> Result<Tuple, String> {
        let bad = || {
            format!(
                "bad tuple '{s}' (udp|tcp:[IP:]PORT, e.g. udp:10.0.0.1:53, tcp:[fd00::1]:80, tcp:*:8080)"
            )
        };
        let (proto, rest) = s.split_once(':').ok_or_else(bad)?;
        let proto = parse_proto(proto)?;
        let (ip, port) = match rest.rsplit_once(':') {
            None => ("*", rest),
            Some((ip, port)) => (ip, port),
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(format!("tuple '{s}': port 0 cannot be bound"));
        }
        let ip = match ip {
            "*" => ANY,
            _ => {
                let inner = ip
                    .strip_prefix('[')
                    .and_then(|x| x.strip_suffix(']'))
                    .unwrap_or(ip);
                match inner.parse::<IpAddr>().map_err(|_| bad())? {
                    IpAddr::V4(a) => v4(a.octets()),
                    IpAddr::V6(a) if a.is_unspecified() => ANY,
                    IpAddr::V6(a) => u128::from(a),
                }
            }
        };
        Ok(Tuple { ip, port, proto })
    }
}

/// A reservation of the host: a protocol and port on every address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reserved {
    pub proto: u8,
    pub port: u16,
}

impl FromStr for Reserved {
    type Err = String;

    /// `tcp:22`, `udp:53`.
    fn from_str(s: &str) -> Result<Reserved, String> {
        let (proto, port) = s
            .split_once(':')
            .ok_or_else(|| format!("bad reservation '{s}' (tcp:PORT or udp:PORT)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("bad reservation '{s}' (tcp:PORT or udp:PORT)"))?;
        Ok(Reserved {
            proto: parse_proto(proto)?,
            port,
        })
    }
}

/// A multiply-and-fold hasher for tuples: the keys are not chosen by the
/// senders of packets (only bound tuples are stored; a packet's key is
/// only looked up), so flooding attacks on the hash do not apply.
#[derive(Clone, Copy, Default)]
pub struct TupleHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for TupleHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

#[derive(Clone, Copy, Default)]
pub struct BuildTupleHasher;

impl BuildHasher for BuildTupleHasher {
    type Hasher = TupleHasher;
    fn build_hasher(&self) -> TupleHasher {
        TupleHasher::default()
    }
}

/// Why a binding was refused (one line each).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindError {
    #[error("{0} is held by port {1}")]
    Held(Tuple, u16),
    #[error("{0} is reserved for the host")]
    Reserved(Tuple),
    #[error("{0} overlaps {1} of port {2}")]
    Overlaps(Tuple, Tuple, u16),
    #[error("port {0} is the switch's {1} port and cannot bind tuples")]
    Uplink(u16, &'static str),
    #[error("{0} is not bound by port {1}")]
    NotBound(Tuple, u16),
    #[error("the table is full ({0} tuples)")]
    Full(usize),
}

/// The most tuples a switch holds.
pub const MAX_TUPLES: usize = 1 << 20;

/// The bindings.
#[derive(Default)]
pub(crate) struct Table {
    /// Tuple to port.
    pub(crate) map: HashMap<Tuple, PortId, BuildTupleHasher>,
    /// Per (protocol, port): the holders of its tuples (a port once per
    /// tuple), to refuse a wildcard over another port's address and the
    /// reverse.
    by_port: HashMap<(u8, u16), Vec<(u128, PortId)>>,
    /// Per address: the ports holding a tuple on it, once per tuple (ARP
    /// requests for it go to them with `arp=all`).
    by_ip: HashMap<u128, Vec<PortId>>,
    /// Whether any wildcard tuple exists (a miss then needs a second lookup).
    pub(crate) wildcards: usize,
}

impl Table {
    /// Binds `t` for `port`; binding a tuple the port already holds is fine.
    pub fn bind(&mut self, t: Tuple, port: PortId, reserved: &[Reserved]) -> Result<(), BindError> {
        if reserved
            .iter()
            .any(|r| r.proto == t.proto && r.port == t.port)
        {
            return Err(BindError::Reserved(t));
        }
        match self.map.get(&t) {
            Some(&p) if p == port => return Ok(()),
            Some(&p) => return Err(BindError::Held(t, p.0)),
            None => {}
        }
        if let Some(holders) = self.by_port.get(&(t.proto, t.port)) {
            // A wildcard may not cover another port's address, nor an
            // address take traffic from another port's wildcard.
            if let Some(&(ip, p)) = holders
                .iter()
                .find(|&&(ip, p)| p != port && (ip == ANY || t.ip == ANY))
            {
                let other = Tuple { ip, ..t };
                return Err(BindError::Overlaps(t, other, p.0));
            }
        }
        if self.map.len() >= MAX_TUPLES {
            return Err(BindError::Full(MAX_TUPLES));
        }
        self.map.insert(t, port);
        self.by_port
            .entry((t.proto, t.port))
            .or_default()
            .push((t.ip, port));
        if t.ip == ANY {
            self.wildcards += 1;
        } else {
            self.by_ip.entry(t.ip).or_default().push(port);
        }
        Ok(())
    }

    /// Removes `t` if `port` holds it.
    pub fn unbind(&mut self, t: Tuple, port: PortId) -> Result<(), BindError> {
        if self.map.get(&t) != Some(&port) {
            return Err(BindError::NotBound(t, port.0));
        }
        self.map.remove(&t);
        remove_one(&mut self.by_port, (t.proto, t.port), &(t.ip, port));
        if t.ip == ANY {
            self.wildcards -= 1;
        } else {
            remove_one(&mut self.by_ip, t.ip, &port);
        }
        Ok(())
    }

    /// Removes every tuple of `port`; returns how many.
    pub fn unbind_port(&mut self, port: PortId) -> usize {
        let mine: Vec<Tuple> = self
            .map
            .iter()
            .filter(|&(_, &p)| p == port)
            .map(|(t, _)| *t)
            .collect();
        for t in &mine {
            let _ = self.unbind(*t, port);
        }
        mine.len()
    }

    /// Whether `port` may send from source tuple `src` (its protocol,
    /// source address and source port): not if the host reserved the
    /// protocol and port, nor if another port holds the tuple or the
    /// port on every address; with `strict`, only if `port` holds one of
    /// those itself.
    pub fn may_send(&self, src: Tuple, port: PortId, reserved: &[Reserved], strict: bool) -> bool {
        if reserved
            .iter()
            .any(|r| r.proto == src.proto && r.port == src.port)
        {
            return false;
        }
        let wild = (self.wildcards > 0)
            .then(|| self.map.get(&Tuple { ip: ANY, ..src }))
            .flatten();
        let holders = [self.map.get(&src), wild];
        if holders.iter().all(Option::is_none) {
            return !strict;
        }
        holders.into_iter().flatten().all(|&p| p == port)
    }

    /// The ports holding a tuple on address `ip` (with repeats).
    #[inline]
    pub fn ports_on(&self, ip: u128) -> &[PortId] {
        self.by_ip.get(&ip).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every binding, sorted.
    pub fn list(&self) -> Vec<(Tuple, PortId)> {
        let mut v: Vec<_> = self.map.iter().map(|(t, p)| (*t, *p)).collect();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

fn remove_one<K: std::hash::Hash + Eq, V: PartialEq>(m: &mut HashMap<K, Vec<V>>, k: K, v: &V) {
    if let Some(list) = m.get_mut(&k) {
        if let Some(i) = list.iter().position(|x| x == v) {
            list.swap_remove(i);
        }
        if list.is_empty() {
            m.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tuple {
        s.parse().unwrap()
    }

    #[test]
    fn tuples_parse_and_print() {
        for s in ["udp:10.0.0.1:53", "tcp:[fd00::1]:80", "tcp:*:8080"] {
            assert_eq!(t(s).to_string(), s);
        }
        assert_eq!(t("udp:4789").to_string(), "udp:*:4789");
        assert_eq!(t("udp:[::]:9").ip, ANY);
        assert_eq!(t("udp:10.0.0.1:53").ip, v4([10, 0, 0, 1]));
        for bad in [
            "sctp:1.2.3.4:5",
            "udp",
            "udp:1.2.3.4:x",
            "udp:1.2.3.4:70000",
            "udp:1.2.3:5",
            "udp:1.2.3.4:0",
            "tcp:[fd00::1:80",
        ] {
            assert!(bad.parse::<Tuple>().is_err(), "{bad}");
        }
        assert_eq!(
            "tcp:22".parse::<Reserved>(),
            Ok(Reserved {
                proto: TCP,
                port: 22
            })
        );
        assert!("tcp".parse::<Reserved>().is_err());
        assert!("icmp:1".parse::<Reserved>().is_err());
    }

    #[test]
    fn every_refusal() {
        let (a, b) = (PortId(2), PortId(3));
        let res = ["tcp:22".parse().unwrap()];
        let mut tb = Table::default();
        tb.bind(t("udp:10.0.0.1:53"), a, &res).unwrap();
        // Idempotent for its holder.
        tb.bind(t("udp:10.0.0.1:53"), a, &res).unwrap();
        assert_eq!(
            tb.bind(t("udp:10.0.0.1:53"), b, &res),
            Err(BindError::Held(t("udp:10.0.0.1:53"), 2))
        );
        assert_eq!(
            tb.bind(t("tcp:10.0.0.1:22"), b, &res),
            Err(BindError::Reserved(t("tcp:10.0.0.1:22")))
        );
        assert_eq!(
            tb.bind(t("udp:*:53"), b, &res),
            Err(BindError::Overlaps(t("udp:*:53"), t("udp:10.0.0.1:53"), 2))
        );
        // The same port may hold both; another address is free.
        tb.bind(t("udp:*:53"), a, &res).unwrap();
        assert!(matches!(
            tb.bind(t("udp:10.0.0.2:53"), b, &res),
            Err(BindError::Overlaps(..))
        ));
        tb.bind(t("udp:10.0.0.2:54"), b, &res).unwrap();
        assert_eq!(
            tb.unbind(t("udp:10.0.0.2:54"), a),
            Err(BindError::NotBound(t("udp:10.0.0.2:54"), 2))
        );
        assert_eq!(tb.len(), 3);
        assert_eq!(tb.wildcards, 1);
        assert_eq!(tb.ports_on(v4([10, 0, 0, 1])), &[a]);
        assert_eq!(tb.unbind_port(a), 2);
        assert_eq!(tb.wildcards, 0);
        assert!(tb.ports_on(v4([10, 0, 0, 1])).is_empty());
        tb.bind(t("udp:*:53"), b, &res).unwrap();
        tb.unbind(t("udp:10.0.0.2:54"), b).unwrap();
        assert_eq!(tb.list(), [(t("udp:*:53"), b)]);
    }
}
