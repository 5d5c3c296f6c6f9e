//! A tunnel port's fixed configuration, and its text in a port spec:
//!
//! ```text
//! vxlan:NAME,remote=IP|flow[,local=IP][,key=N|flow|in_key=N|flow,out_key=N|flow][,dst_port=N][,tos=N|inherit][,ttl=N|inherit][,csum]
//! geneve:NAME,...                      the same options
//! ```
//!
//! `flow` is Open vSwitch's: `remote=flow` takes datagrams from any sender
//! and sends each frame to the `tun_dst` the flow table gave it (a frame
//! without one is dropped and counted, `tx_no_remote`); `in_key=flow`
//! takes any VNI, `out_key=flow` sends with the frame's `tun_id`, and
//! `key=flow` is both. A `remote=flow` port bound to an IPv4 address (or
//! to none: `0.0.0.0`) sends to `tun_dst`; one bound to an IPv6 address
//! (`local=::` for any) sends to `tun_ipv6_dst`. Which of the two a frame
//! goes to is Open vSwitch's rule: `tun_dst` if it is set, else
//! `tun_ipv6_dst`; a frame whose address is not of the port's family is
//! dropped and counted as one without (`tx_no_remote`).
//!
//! `tos=inherit` and `ttl=inherit` are Open vSwitch's: the outer TOS
//! (traffic class) is the inner IPv4/IPv6 header's DSCP and ECN (a CE mark
//! goes out as ECT(0)), the outer TTL (hop limit) the inner one, frame by
//! frame (behind up to two VLAN tags); a frame that is not IP goes with
//! TOS 0 and TTL 64 ([`super::inherit`]).
//!
//! IPv6 addresses are written plain or in brackets (`remote=[fd00::2]`).
//! Defaults are Open vSwitch's: key 0, the IANA port (4789, 6081), TOS 0,
//! TTL 64, no UDP checksum over IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::header::{MAX_VNI, Proto};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    pub proto: Proto,
    /// The one remote endpoint: frames go to it, and only datagrams from it
    /// are taken (unspecified when `remote_flow`).
    pub remote: IpAddr,
    /// `remote=flow`: any sender, and each frame to its own `tun_dst`.
    pub remote_flow: bool,
    /// `in_key=flow`: datagrams of any VNI are taken.
    pub in_key_flow: bool,
    /// `out_key=flow`: each frame goes with its own `tun_id`.
    pub out_key_flow: bool,
    /// The address the UDP socket is bound to (`None`: any of the host's).
    pub local: Option<IpAddr>,
    /// The VNI datagrams must carry to be taken.
    pub in_key: u32,
    /// The VNI frames are sent with.
    pub out_key: u32,
    pub dst_port: u16,
    pub tos: u8,
    pub ttl: u8,
    /// `tos=inherit`: each frame's outer TOS is its inner one (`tos` is
    /// then 0, what a frame that is not IP goes with).
    pub tos_inherit: bool,
    /// `ttl=inherit`: likewise for the TTL (`ttl` is then the default).
    pub ttl_inherit: bool,
    /// Whether the UDP checksum is filled over IPv4 (over IPv6 it always is).
    pub csum: bool,
}

/// Open vSwitch's default outer TTL (the system default).
pub const DEFAULT_TTL: u8 = super::socket::SOCKET_TTL;

impl TunnelConfig {
    pub fn new(proto: Proto, remote: IpAddr) -> TunnelConfig {
        TunnelConfig {
            proto,
            remote,
            remote_flow: false,
            in_key_flow: false,
            out_key_flow: false,
            local: None,
            in_key: 0,
            out_key: 0,
            dst_port: proto.default_port(),
            tos: 0,
            ttl: DEFAULT_TTL,
            tos_inherit: false,
            ttl_inherit: false,
            csum: false,
        }
    }

    /// Whether frames go out with TOS or TTL of their own (`inherit`).
    #[inline]
    pub fn inherits(&self) -> bool {
        self.tos_inherit || self.ttl_inherit
    }

    /// The socket address to bind: `local`, or any address of the remote's
    /// family, at `dst_port`.
    pub fn bind_addr(&self) -> SocketAddr {
        let ip = self.local.unwrap_or(match self.remote {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        SocketAddr::new(ip, self.dst_port)
    }

    /// Where frames go.
    pub fn remote_addr(&self) -> SocketAddr {
        SocketAddr::new(self.remote, self.dst_port)
    }

    /// Whether frames go out with their own tunnel metadata (a flow-based
    /// remote or key).
    pub fn sends_by_flow(&self) -> bool {
        self.remote_flow || self.out_key_flow
    }

    /// The senders the port takes datagrams from (`None`: any).
    pub fn rx_remote(&self) -> Option<IpAddr> {
        (!self.remote_flow).then_some(self.remote)
    }

    /// The VNI the port takes (`None`: any).
    pub fn rx_key(&self) -> Option<u32> {
        (!self.in_key_flow).then_some(self.in_key)
    }

    /// Sets option `k` to `v` (one of the options above, as Open vSwitch
    /// names them), or says why not in one line.
    pub fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        match k {
            "remote" | "remote_ip" if v == "flow" => {
                self.remote = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                self.remote_flow = true;
            }
            "remote" | "remote_ip" => {
                self.remote = parse_ip(k, v)?;
                self.remote_flow = false;
            }
            "local" | "local_ip" => self.local = Some(parse_ip(k, v)?),
            "key" => {
                let n = parse_key(k, v)?;
                (self.in_key, self.out_key) = (n.unwrap_or(0), n.unwrap_or(0));
                (self.in_key_flow, self.out_key_flow) = (n.is_none(), n.is_none());
            }
            "in_key" => {
                let n = parse_key(k, v)?;
                (self.in_key, self.in_key_flow) = (n.unwrap_or(0), n.is_none());
            }
            "out_key" => {
                let n = parse_key(k, v)?;
                (self.out_key, self.out_key_flow) = (n.unwrap_or(0), n.is_none());
            }
            "dst_port" => {
                self.dst_port = v
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("bad dst_port '{v}' (1-65535)"))?;
            }
            "tos" if v == "inherit" => (self.tos, self.tos_inherit) = (0, true),
            "ttl" if v == "inherit" => (self.ttl, self.ttl_inherit) = (DEFAULT_TTL, true),
            "tos" => {
                let t: u8 = parse_number(k, v)?;
                if t & 3 != 0 {
                    return Err(format!(
                        "bad tos '{v}': its ECN bits (the low two) must be zero"
                    ));
                }
                (self.tos, self.tos_inherit) = (t, false);
            }
            "ttl" => {
                let t = parse_number::<u8>(k, v)?;
                if t == 0 {
                    return Err("bad ttl '0' (1-255)".into());
                }
                (self.ttl, self.ttl_inherit) = (t, false);
            }
            "csum" => {
                self.csum = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("bad csum '{v}' (true or false)")),
                }
            }
            _ => return Err(format!("unknown tunnel option '{k}'")),
        }
        Ok(())
    }

    /// Checks what single options cannot: the addresses' families agree
    /// and the remote is a unicast address.
    pub fn validate(&self) -> Result<(), String> {
        if self.remote_flow {
            // Any local address: its family is the remotes'.
            return Ok(());
        }
        if self.remote.is_unspecified() || self.remote.is_multicast() {
            return Err(format!(
                "remote {} is not a unicast address (only unicast remotes are supported)",
                self.remote
            ));
        }
        if let Some(l) = self.local
            && l.is_ipv4() != self.remote.is_ipv4()
        {
            return Err(format!(
                "local {l} and remote {} are of different address families",
                self.remote
            ));
        }
        Ok(())
    }
}

fn parse_ip(k: &str, v: &str) -> Result<IpAddr, String> {
    if v == "flow" {
        return Err(format!("{k}=flow is not supported (give an address)"));
    }
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse()
        .map_err(|_| format!("bad {k} '{v}' (an IPv4 or IPv6 address)"))
}

/// A VNI, or `None` for `flow`.
fn parse_key(k: &str, v: &str) -> Result<Option<u32>, String> {
    if v == "flow" {
        return Ok(None);
    }
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse::<u64>().ok(),
    };
    n.filter(|&n| n <= u64::from(MAX_VNI))
        .map(|n| Some(n as u32))
        .ok_or_else(|| format!("bad {k} '{v}' (a VNI, 0-16777215)"))
}

fn parse_number<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("bad {k} '{v}' (a number, 0-255, or inherit)"))
}

/// The options part of a spec (after the name), in a form `set` reads back.
impl fmt::Display for TunnelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = |ip: IpAddr| match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        if self.remote_flow {
            f.write_str(",remote=flow")?;
        } else {
            write!(f, ",remote={}", ip(self.remote))?;
        }
        if let Some(l) = self.local {
            write!(f, ",local={}", ip(l))?;
        }
        let key = |flow: bool, n: u32| {
            if flow {
                "flow".to_owned()
            } else {
                n.to_string()
            }
        };
        let (i, o) = (
            key(self.in_key_flow, self.in_key),
            key(self.out_key_flow, self.out_key),
        );
        if i == o {
            if i != "0" {
                write!(f, ",key={i}")?;
            }
        } else {
            write!(f, ",in_key={i},out_key={o}")?;
        }
        if self.dst_port != self.proto.default_port() {
            write!(f, ",dst_port={}", self.dst_port)?;
        }
        if self.tos_inherit {
            f.write_str(",tos=inherit")?;
        } else if self.tos != 0 {
            write!(f, ",tos={}", self.tos)?;
        }
        if self.ttl_inherit {
            f.write_str(",ttl=inherit")?;
        } else if self.ttl != DEFAULT_TTL {
            write!(f, ",ttl={}", self.ttl)?;
        }
        if self.csum {
            f.write_str(",csum")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_set_and_refuse_as_open_vswitch_documents() {
        let mut c = TunnelConfig::new(Proto::Vxlan, "10.0.0.2".parse().unwrap());
        assert_eq!(c.dst_port, 4789);
        c.set("key", "0x2a").unwrap();
        assert_eq!((c.in_key, c.out_key), (42, 42));
        c.set("out_key", "7").unwrap();
        c.set("tos", "184").unwrap(); // DSCP 46 (EF)
        c.set("ttl", "5").unwrap();
        c.set("local", "10.0.0.1").unwrap();
        c.set("csum", "true").unwrap();
        assert_eq!(
            c.to_string(),
            ",remote=10.0.0.2,local=10.0.0.1,in_key=42,out_key=7,tos=184,ttl=5,csum"
        );
        c.validate().unwrap();
        assert_eq!(c.bind_addr().to_string(), "10.0.0.1:4789");
        let mut g = TunnelConfig::new(Proto::Geneve, "10.0.0.2".parse().unwrap());
        g.set("remote", "[fd00::2]").unwrap();
        assert_eq!(g.bind_addr().to_string(), "[::]:6081");
        g.set("local", "10.0.0.1").unwrap();
        assert!(g.validate().unwrap_err().contains("families"));
        for (k, v, why) in [
            ("local", "flow", "not supported"),
            ("key", "16777216", "0-16777215"),
            ("key", "-1", "VNI"),
            ("tos", "1", "ECN"),
            ("tos", "256", "0-255"),
            ("ttl", "0", "1-255"),
            ("dst_port", "0", "1-65535"),
            ("dst_port", "65536", "1-65535"),
            ("remote", "host.example", "IPv4 or IPv6"),
            ("csum", "yes", "true or false"),
            ("exts", "gbp", "unknown"),
        ] {
            let e = c.clone().set(k, v).unwrap_err();
            assert!(e.contains(why) && !e.contains('\n'), "{k}={v}: {e}");
        }
        for bad in ["0.0.0.0", "224.0.0.1", "::"] {
            let mut m = c.clone();
            m.local = None;
            m.set("remote", bad).unwrap();
            assert!(m.validate().unwrap_err().contains("unicast"), "{bad}");
        }
    }

    #[test]
    fn flow_remotes_and_keys_read_and_print_back() {
        let mut c = TunnelConfig::new(Proto::Vxlan, "10.0.0.2".parse().unwrap());
        c.set("remote_ip", "flow").unwrap();
        c.set("key", "flow").unwrap();
        c.validate().unwrap();
        assert!(c.sends_by_flow());
        assert_eq!((c.rx_remote(), c.rx_key()), (None, None));
        assert_eq!(c.to_string(), ",remote=flow,key=flow");
        assert_eq!(c.bind_addr().to_string(), "0.0.0.0:4789");
        // A fixed remote with flow-based keys, one way only.
        let mut m = TunnelConfig::new(Proto::Geneve, "10.0.0.2".parse().unwrap());
        m.set("in_key", "7").unwrap();
        m.set("out_key", "flow").unwrap();
        assert_eq!(m.to_string(), ",remote=10.0.0.2,in_key=7,out_key=flow");
        assert!(m.sends_by_flow());
        assert_eq!(m.rx_key(), Some(7));
        m.set("out_key", "7").unwrap();
        assert!(!m.sends_by_flow());
        assert_eq!(m.to_string(), ",remote=10.0.0.2,key=7");
        // An IPv6 local address: an IPv6 socket, sending to tun_ipv6_dst.
        c.set("local", "::").unwrap();
        c.validate().unwrap();
        assert_eq!(c.bind_addr().to_string(), "[::]:4789");
        assert_eq!(c.to_string(), ",remote=flow,local=[::],key=flow");
    }

    #[test]
    fn tos_and_ttl_inherit_as_open_vswitch() {
        let mut c = TunnelConfig::new(Proto::Vxlan, "10.0.0.2".parse().unwrap());
        assert!(!c.inherits());
        c.set("tos", "inherit").unwrap();
        assert!(c.tos_inherit && !c.ttl_inherit && c.inherits());
        assert_eq!(c.to_string(), ",remote=10.0.0.2,tos=inherit");
        c.set("ttl", "inherit").unwrap();
        assert_eq!((c.tos, c.ttl), (0, DEFAULT_TTL));
        assert_eq!(c.to_string(), ",remote=10.0.0.2,tos=inherit,ttl=inherit");
        // A number after inherit replaces it.
        c.set("ttl", "9").unwrap();
        assert!(!c.ttl_inherit);
        assert_eq!(c.to_string(), ",remote=10.0.0.2,tos=inherit,ttl=9");
        let e = c.clone().set("ttl", "inherits").unwrap_err();
        assert!(e.contains("or inherit"), "{e}");
    }
}
