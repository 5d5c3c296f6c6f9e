//! Port specs: the text that names a port to attach (`ctl attach`,
//! `run --port`, `pkt-gen -i`), and opening the kernel-facing kinds.
//!
//! ```text
//! vport:NAME[,ring=N][,buf=N]          shared memory for another process
//! tap:IFNAME[,down][,ring=N][,buf=N]   the host's TCP/IP stack (down: a TAP it creates stays down)
//! af_packet:IFNAME[,ring=N][,buf=N]    any interface, TPACKET_V3
//! af_xdp:IFNAME[,queue=N][,ring=N][,buf=N]
//!                                      AF_XDP, falling back to af_packet
//! vhost-user:PATH[,server|client][,queues=N][,name=NAME][,ring=N][,buf=N]
//!                                      a VM's virtio-net device (default
//!                                      server; NAME defaults to PATH's file name)
//! virtio-user:PATH[,server|client][,name=NAME][,ring=N][,buf=N]
//!                                      the VM's side of a virtio-net device
//!                                      whose backend is a switch (default
//!                                      client, as DPDK's virtio-user)
//! vxlan:NAME,remote=IP|flow[,local=IP][,key=N|flow|in_key=N|flow,out_key=N|flow][,dst_port=N][,tos=N|inherit][,ttl=N|inherit][,csum][,ring=N][,buf=N]
//! geneve:NAME,...                      a tunnel to one remote host (see
//!                                      port::tunnel::config)
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::Port;
use super::afpacket::AfPacketPort;
use super::kernel::{KernelPortError, check_ifname};
use super::tap::TapPort;
use super::tunnel::{Proto, TunnelConfig, TunnelPort};
use super::vhost_user::{Mode as VhostMode, VhostUserPort};
use super::virtio_user::VirtioUserPort;
use crate::packet::{DEFAULT_BUF_SIZE, DEFAULT_RING_SIZE, MemConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    Vport,
    Tap,
    AfPacket,
    AfXdp,
    VhostUser,
    VirtioUser,
    Vxlan,
    Geneve,
}

/// What a `vhost-user:` or `virtio-user:` spec adds: the socket, who
/// listens on it, and (vhost-user) the queue pairs offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhostSpec {
    pub path: PathBuf,
    pub mode: VhostMode,
    pub queues: u16,
}

impl PortKind {
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Vport => "vport",
            PortKind::Tap => "tap",
            PortKind::AfPacket => "af_packet",
            PortKind::AfXdp => "af_xdp",
            PortKind::VhostUser => "vhost-user",
            PortKind::VirtioUser => "virtio-user",
            PortKind::Vxlan => "vxlan",
            PortKind::Geneve => "geneve",
        }
    }

    /// Names a kernel interface.
    pub fn is_kernel(self) -> bool {
        !matches!(
            self,
            PortKind::Vport
                | PortKind::VhostUser
                | PortKind::VirtioUser
                | PortKind::Vxlan
                | PortKind::Geneve
        )
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
    /// The socket of a vhost-user or virtio-user port.
    pub vhost: Option<VhostSpec>,
    /// A TAP this port creates is left down (`tap:NAME,down`), as Open
    /// vSwitch leaves its `internal` interfaces for the user to bring up;
    /// it forwards once it is up.
    pub down: bool,
    /// The tunnel of a `vxlan:` or `geneve:` port.
    pub tunnel: Option<TunnelConfig>,
}

/// Default ring size of a vhost-user port. Its owning worker fills the
/// incoming ring itself, from the guest, just before it forwards, and sends
/// to the guest directly (not through the outgoing ring), so the ring only
/// holds one pass; a small one keeps its buffers in the cache. Measured with
/// the testpmd loop (scripts/compare-vhost.sh, hugepages): 64 slots forward
/// 1518 B frames 1.3x faster than 1024 and 64 B frames 4% faster.
pub const VHOST_RING_SIZE: u32 = 64;

/// Default ring size of a virtio-user port, which is also the size of its
/// two virtqueues (DPDK's virtio-user default).
pub const VIRTIO_RING_SIZE: u32 = 256;

/// Switch and port names: 1 to 32 of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad {what} name '{}' (1-32 of A-Z a-z 0-9 _ . -)",
            crate::control::limits::clip(s)
        ))
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
            vhost: None,
            down: false,
            tunnel: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mem_config(&self) -> MemConfig {
        let ring = match self.kind {
            PortKind::VhostUser => VHOST_RING_SIZE,
            PortKind::VirtioUser => VIRTIO_RING_SIZE,
            _ => DEFAULT_RING_SIZE,
        };
        MemConfig::new(
            self.ring.unwrap_or(ring),
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
                TapPort::open_with(&self.name, &self.name, cfg, !self.down)? as Arc<dyn Port>,
                None,
            )),
            PortKind::AfPacket => Ok((
                AfPacketPort::open(&self.name, &self.name, cfg)? as Arc<dyn Port>,
                None,
            )),
            PortKind::AfXdp => super::afxdp_open(&self.name, self.queue.unwrap_or(0), cfg),
            PortKind::VhostUser => {
                let v = self
                    .vhost
                    .as_ref()
                    .ok_or_else(|| KernelPortError::BadName(self.name.clone()))?;
                let p = VhostUserPort::open(&self.name, &v.path, v.mode, v.queues, cfg)
                    .map_err(|e| KernelPortError::Other(e.to_string()))?;
                Ok((p as Arc<dyn Port>, None))
            }
            PortKind::VirtioUser => {
                let v = self
                    .vhost
                    .as_ref()
                    .ok_or_else(|| KernelPortError::BadName(self.name.clone()))?;
                let p = VirtioUserPort::open(&self.name, &v.path, v.mode, cfg)
                    .map_err(|e| KernelPortError::Other(e.to_string()))?;
                Ok((p as Arc<dyn Port>, None))
            }
            PortKind::Vxlan | PortKind::Geneve => {
                let t = self
                    .tunnel
                    .as_ref()
                    .ok_or_else(|| KernelPortError::BadName(self.name.clone()))?;
                let p = TunnelPort::open(&self.name, t, cfg)
                    .map_err(|e| KernelPortError::Other(format!("{}: {e}", self.name)))?;
                Ok((p as Arc<dyn Port>, None))
            }
        }
    }
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("bad port spec '{s}' (expected KIND:NAME, KIND one of vport, tap, af_packet, af_xdp, vhost-user, virtio-user, vxlan, geneve)"))?;
        let kind = match kind {
            "vport" => PortKind::Vport,
            "tap" => PortKind::Tap,
            "af_packet" => PortKind::AfPacket,
            "af_xdp" => PortKind::AfXdp,
            "vhost-user" => return parse_socket(PortKind::VhostUser, s, rest),
            "virtio-user" => return parse_socket(PortKind::VirtioUser, s, rest),
            "vxlan" => return parse_tunnel(Proto::Vxlan, s, rest),
            "geneve" => return parse_tunnel(Proto::Geneve, s, rest),
            _ => {
                return Err(format!(
                    "unknown port kind '{kind}' in '{s}' (vport, tap, af_packet, af_xdp, vhost-user, virtio-user, vxlan, geneve)"
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
            vhost: None,
            down: false,
            tunnel: None,
        };
        for kv in parts {
            if kv == "down" && kind == PortKind::Tap {
                spec.down = true;
                continue;
            }
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
                    let opts = match kind {
                        PortKind::AfXdp => "queue, ring, buf",
                        PortKind::Tap => "down, ring, buf",
                        _ => "ring, buf",
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

/// `vhost-user:PATH[,server|client][,queues=N][,name=NAME][,ring=N][,buf=N]`
/// and `virtio-user:PATH[,server|client][,name=NAME][,ring=N][,buf=N]`.
fn parse_socket(kind: PortKind, s: &str, rest: &str) -> Result<PortSpec, String> {
    let vhost = kind == PortKind::VhostUser;
    let mut parts = rest.split(',');
    let p = parts.next().unwrap_or("");
    let path = PathBuf::from(p);
    if path.file_name().is_none() || p.ends_with('/') {
        return Err(format!("bad socket path in '{s}'"));
    }
    let mut v = VhostSpec {
        path,
        // As in DPDK: a virtio-user port connects unless told to listen.
        mode: if vhost {
            VhostMode::Server
        } else {
            VhostMode::Client
        },
        queues: 1,
    };
    let mut name = None;
    let (mut ring, mut buf) = (None, None);
    for opt in parts {
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("bad number '{v}' in '{s}'"))
        };
        match opt.split_once('=') {
            None if opt == "server" => v.mode = VhostMode::Server,
            None if opt == "client" => v.mode = VhostMode::Client,
            Some(("queues", n)) if vhost => {
                v.queues = u16::try_from(num(n)?)
                    .ok()
                    .filter(|q| (1..=super::vhost_user::MAX_QUEUE_PAIRS).contains(q))
                    .ok_or_else(|| format!("queues must be 1..=16 in '{s}'"))?;
            }
            Some(("name", n)) => name = Some(n.to_owned()),
            Some(("ring", n)) => ring = Some(num(n)?),
            Some(("buf", n)) => buf = Some(num(n)?),
            _ => {
                let queues = if vhost { "queues, " } else { "" };
                return Err(format!(
                    "unknown port option '{opt}' in '{s}' (server, client, {queues}name, ring, buf)"
                ));
            }
        }
    }
    let name = name.unwrap_or_else(|| {
        let f = v.path.file_name().unwrap_or_default().to_string_lossy();
        f.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
            .take(32)
            .collect()
    });
    valid_name("port", &name)?;
    let spec = PortSpec {
        kind,
        name,
        ring,
        buf,
        queue: None,
        vhost: Some(v),
        down: false,
        tunnel: None,
    };
    spec.mem_config()
        .validate()
        .map_err(|e| format!("port '{s}': {e}"))?;
    Ok(spec)
}

/// `vxlan:NAME,remote=IP[,OPTION=VALUE...]` and `geneve:...` (options of
/// [`TunnelConfig::set`], `csum` alone, `ring`, `buf`).
fn parse_tunnel(proto: Proto, s: &str, rest: &str) -> Result<PortSpec, String> {
    let mut parts = rest.split(',');
    let name = parts.next().unwrap_or("");
    valid_name("port", name)?;
    let mut t = TunnelConfig::new(proto, std::net::Ipv4Addr::UNSPECIFIED.into());
    let (mut ring, mut buf, mut remote) = (None, None, false);
    for opt in parts {
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("bad number '{v}' in '{s}'"))
        };
        match opt.split_once('=') {
            None if opt == "csum" => t.csum = true,
            Some(("ring", n)) => ring = Some(num(n)?),
            Some(("buf", n)) => buf = Some(num(n)?),
            Some((k @ ("csum" | "remote_ip" | "local_ip"), _)) => {
                return Err(format!("unknown port option '{k}' in '{s}'"));
            }
            Some((k, v)) => {
                t.set(k, v).map_err(|e| format!("port '{s}': {e}"))?;
                remote |= k == "remote";
            }
            None => {
                return Err(format!(
                    "unknown port option '{opt}' in '{s}' (remote, local, key, in_key, out_key, dst_port, tos, ttl, csum, ring, buf)"
                ));
            }
        }
    }
    if !remote {
        return Err(format!("port '{s}': remote=IP is required"));
    }
    t.validate().map_err(|e| format!("port '{s}': {e}"))?;
    let spec = PortSpec {
        kind: match proto {
            Proto::Vxlan => PortKind::Vxlan,
            Proto::Geneve => PortKind::Geneve,
        },
        name: name.to_owned(),
        ring,
        buf,
        queue: None,
        vhost: None,
        down: false,
        tunnel: Some(t),
    };
    spec.mem_config()
        .validate()
        .map_err(|e| format!("port '{s}': {e}"))?;
    Ok(spec)
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = &self.vhost {
            let mode = match v.mode {
                VhostMode::Server => "server",
                VhostMode::Client => "client",
            };
            write!(
                f,
                "{}:{},{mode},name={}",
                self.kind.name(),
                v.path.display(),
                self.name
            )?;
            if v.queues != 1 {
                write!(f, ",queues={}", v.queues)?;
            }
        } else {
            write!(f, "{}:{}", self.kind.name(), self.name)?;
        }
        if let Some(t) = &self.tunnel {
            write!(f, "{t}")?;
        }
        if self.down {
            f.write_str(",down")?;
        }
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
        let t: PortSpec = "tap:tap0,down,ring=64".parse().unwrap();
        assert!(t.down);
        assert_eq!(t.to_string(), "tap:tap0,down,ring=64");
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
            "af_packet:eth0,down",
            "tap:",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn vhost_user_specs() {
        let s: PortSpec = "vhost-user:/run/vm1.sock".parse().unwrap();
        assert_eq!((s.kind, s.name()), (PortKind::VhostUser, "vm1.sock"));
        let v = s.vhost.as_ref().unwrap();
        assert_eq!((v.mode, v.queues), (VhostMode::Server, 1));
        assert_eq!(
            s.to_string(),
            "vhost-user:/run/vm1.sock,server,name=vm1.sock"
        );
        let c: PortSpec = "vhost-user:/tmp/a b/x,client,queues=4,name=vm2,ring=256"
            .parse()
            .unwrap();
        assert_eq!(c.name(), "vm2");
        assert_eq!(c.vhost.as_ref().unwrap().mode, VhostMode::Client);
        assert_eq!(c.to_string().parse::<PortSpec>().unwrap(), c);
        for bad in [
            "vhost-user:",
            "vhost-user:/tmp/x,queues=0",
            "vhost-user:/tmp/x,queues=17",
            "vhost-user:/tmp/x,both",
            "vhost-user:/tmp/x,name=a/b",
            "vhost-user:/tmp/x,ring=3",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn virtio_user_specs() {
        let s: PortSpec = "virtio-user:/tmp/sw.sock".parse().unwrap();
        assert_eq!((s.kind, s.name()), (PortKind::VirtioUser, "sw.sock"));
        assert_eq!(s.vhost.as_ref().unwrap().mode, VhostMode::Client);
        assert_eq!(s.mem_config().incoming_slots, VIRTIO_RING_SIZE);
        assert_eq!(
            s.to_string(),
            "virtio-user:/tmp/sw.sock,client,name=sw.sock"
        );
        let t: PortSpec = "virtio-user:/tmp/a,server,name=gen1,ring=1024,buf=4096"
            .parse()
            .unwrap();
        assert_eq!(t.vhost.as_ref().unwrap().mode, VhostMode::Server);
        assert_eq!(t.mem_config().incoming_slots, 1024);
        assert_eq!(t.to_string().parse::<PortSpec>().unwrap(), t);
        assert!(!t.kind.is_kernel());
        for bad in [
            "virtio-user:",
            "virtio-user:/tmp/",
            "virtio-user:/tmp/x,queues=2",
            "virtio-user:/tmp/x,ring=100",
            "virtio-user:/tmp/x,ring=65536",
            "virtio-user:/tmp/x,name=",
            "virtio-user:/tmp/x,bogus",
        ] {
            let e = bad.parse::<PortSpec>().unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn tunnel_specs() {
        let s: PortSpec = "vxlan:vx0,remote=10.0.0.2,key=42".parse().unwrap();
        assert_eq!((s.kind, s.name()), (PortKind::Vxlan, "vx0"));
        assert!(!s.kind.is_kernel());
        let t = s.tunnel.as_ref().unwrap();
        assert_eq!((t.in_key, t.out_key, t.dst_port), (42, 42, 4789));
        assert_eq!(s.to_string(), "vxlan:vx0,remote=10.0.0.2,key=42");
        let g: PortSpec = "geneve:gn-1,remote=[fd00::2],local=fd00::1,in_key=1,out_key=2,dst_port=7000,tos=8,ttl=9,csum,ring=256"
            .parse()
            .unwrap();
        assert_eq!(g.kind, PortKind::Geneve);
        assert_eq!(
            g.to_string(),
            "geneve:gn-1,remote=[fd00::2],local=[fd00::1],in_key=1,out_key=2,dst_port=7000,tos=8,ttl=9,csum,ring=256"
        );
        assert_eq!(g.to_string().parse::<PortSpec>().unwrap(), g);
        // Flow-based remote and key read back as written.
        for spec in [
            "vxlan:vx0,remote=flow,key=flow",
            "vxlan:vx0,remote=10.0.0.2,key=flow",
            "geneve:g,remote=flow,in_key=5,out_key=flow",
            "vxlan:vx6,remote=flow,local=[fd00::1],key=flow",
            "geneve:g,remote=10.0.0.2,tos=inherit,ttl=inherit",
        ] {
            let f: PortSpec = spec.parse().unwrap();
            assert_eq!(f.to_string(), spec);
        }
        for (bad, why) in [
            ("vxlan:vx0", "remote=IP is required"),
            ("vxlan:vx0,key=1", "remote=IP is required"),
            ("vxlan:,remote=10.0.0.2", "bad port name"),
            ("vxlan:vx0,remote=flow,local=flow", "not supported"),
            ("vxlan:vx0,remote=10.0.0.2,local=fd00::1", "families"),
            ("vxlan:vx0,remote=10.0.0.2,bogus", "unknown port option"),
            ("vxlan:vx0,remote=10.0.0.2,csum=true", "unknown port option"),
            ("vxlan:vx0,remote=10.0.0.2,ring=3", "ring"),
            ("geneve:g,remote=10.0.0.2,tos=inherits", "or inherit"),
        ] {
            let e = bad.parse::<PortSpec>().unwrap_err();
            assert!(e.contains(why) && !e.contains('\n'), "{bad}: {e}");
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
