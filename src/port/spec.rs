//! Port specs: the text that names a port to attach (`ctl attach`,
//! `run --port`, `pkt-gen -i`), and opening the kernel-facing kinds.
//!
//! ```text
//! vport:NAME[,ring=N][,buf=N]          shared memory for another process
//! tap:IFNAME[,ring=N][,buf=N]          the host's TCP/IP stack
//! af_packet:IFNAME[,ring=N][,buf=N]    any interface, TPACKET_V3
//! af_xdp:IFNAME[,queue=N][,ring=N][,buf=N]
//!                                      AF_XDP, falling back to af_packet
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::Port;
use super::afpacket::AfPacketPort;
use super::kernel::{KernelPortError, check_ifname};
use super::tap::TapPort;
use crate::packet::{DEFAULT_BUF_SIZE, DEFAULT_RING_SIZE, MemConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    Vport,
    Tap,
    AfPacket,
    AfXdp,
}

impl PortKind {
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Vport => "vport",
            PortKind::Tap => "tap",
            PortKind::AfPacket => "af_packet",
            PortKind::AfXdp => "af_xdp",
        }
    }

    pub fn is_kernel(self) -> bool {
        self != PortKind::Vport
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub kind: PortKind,
    /// The port's name: the vport name or the interface name.
    pub name: String,
    pub ring: Option<u32>,
    pub buf: Option<u32>,
    /// AF_XDP queue.
    pub queue: Option<u32>,
}

/// Switch and port names: 1 to 32 of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("bad {what} name '{s}' (1-32 of A-Z a-z 0-9 _ . -)"))
    }
}

impl PortSpec {
    pub fn vport(name: &str) -> PortSpec {
        PortSpec {
            kind: PortKind::Vport,
            name: name.to_owned(),
            ring: None,
            buf: None,
            queue: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mem_config(&self) -> MemConfig {
        MemConfig::new(
            self.ring.unwrap_or(DEFAULT_RING_SIZE),
            self.buf.unwrap_or(DEFAULT_BUF_SIZE),
        )
    }

    /// Opens a kernel-facing port. Returns the port and, when AF_XDP could
    /// not be used and AF_PACKET was, a note saying why.
    pub fn open_kernel(&self) -> Result<(Arc<dyn Port>, Option<String>), KernelPortError> {
        let cfg = self.mem_config();
        match self.kind {
            PortKind::Vport => Err(KernelPortError::BadName(self.name.clone())),
            PortKind::Tap => Ok((
                TapPort::open(&self.name, &self.name, cfg)? as Arc<dyn Port>,
                None,
            )),
            PortKind::AfPacket => Ok((
                AfPacketPort::open(&self.name, &self.name, cfg)? as Arc<dyn Port>,
                None,
            )),
            PortKind::AfXdp => super::afxdp_open(&self.name, self.queue.unwrap_or(0), cfg),
        }
    }
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("bad port spec '{s}' (expected KIND:NAME, KIND one of vport, tap, af_packet, af_xdp)"))?;
        let kind = match kind {
            "vport" => PortKind::Vport,
            "tap" => PortKind::Tap,
            "af_packet" => PortKind::AfPacket,
            "af_xdp" => PortKind::AfXdp,
            _ => {
                return Err(format!(
                    "unknown port kind '{kind}' in '{s}' (vport, tap, af_packet, af_xdp)"
                ));
            }
        };
        let mut parts = rest.split(',');
        let name = parts.next().unwrap_or("").to_owned();
        if kind.is_kernel() {
            check_ifname(&name).map_err(|e| e.to_string())?;
        } else {
            valid_name("port", &name)?;
        }
        let mut spec = PortSpec {
            kind,
            name,
            ring: None,
            buf: None,
            queue: None,
        };
        for kv in parts {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("bad port option '{kv}' in '{s}'"))?;
            let n: u32 = v
                .parse()
                .map_err(|_| format!("bad number '{v}' in '{s}'"))?;
            match k {
                "ring" => spec.ring = Some(n),
                "buf" => spec.buf = Some(n),
                "queue" if kind == PortKind::AfXdp => spec.queue = Some(n),
                _ => {
                    let opts = if kind == PortKind::AfXdp {
                        "queue, ring, buf"
                    } else {
                        "ring, buf"
                    };
                    return Err(format!("unknown port option '{k}' in '{s}' ({opts})"));
                }
            }
        }
        spec.mem_config()
            .validate()
            .map_err(|e| format!("port '{s}': {e}"))?;
        Ok(spec)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.name)?;
        if let Some(q) = self.queue {
            write!(f, ",queue={q}")?;
        }
        if let Some(r) = self.ring {
            write!(f, ",ring={r}")?;
        }
        if let Some(b) = self.buf {
            write!(f, ",buf={b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!("vport:a".parse::<PortSpec>().unwrap(), PortSpec::vport("a"));
        let s: PortSpec = "vport:p-1,ring=256,buf=9216".parse().unwrap();
        assert_eq!(s.to_string(), "vport:p-1,ring=256,buf=9216");
        assert_eq!(s.mem_config().buf_size, 9216);
        let x: PortSpec = "af_xdp:veth0,queue=1".parse().unwrap();
        assert_eq!((x.kind, x.queue), (PortKind::AfXdp, Some(1)));
        assert_eq!("tap:tap0".parse::<PortSpec>().unwrap().kind, PortKind::Tap);
        assert_eq!(
            "af_packet:eth0,buf=9216"
                .parse::<PortSpec>()
                .unwrap()
                .to_string(),
            "af_packet:eth0,buf=9216"
        );
        for bad in [
            "a",
            "tapx:x",
            "vport:",
            "vport:a b",
            "vport:a,ring=3",
            "vport:a,buf=x",
            "vport:a,foo=1",
            "af_packet:a/b",
            "af_packet:abcdefghijklmnop",
            "af_packet:eth0,queue=1",
            "tap:",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("switch", "sw0.a_b-c").is_ok());
        assert!(valid_name("switch", "").is_err());
        assert!(valid_name("switch", "a/b").is_err());
        assert!(valid_name("switch", &"x".repeat(33)).is_err());
    }
}
