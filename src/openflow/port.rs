//! Ports as OpenFlow sees them: port numbers with the reserved ones named,
//! `ofp_port` (64 bytes; 72 with its Ethernet property from 1.4 on),
//! `OFPT_PORT_STATUS` and `OFPT_PORT_MOD`.

use std::fmt;

use crate::wire::MacAddr;

use super::bytes::{FixedStr, Reader, Res, Writer};
use super::header::version;

/// A port number. Numbers up to [`PortNo::MAX`] are real ports; the ones
/// above are the reserved ports of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PortNo(pub u32);

impl PortNo {
    /// The highest number a real port may have (`OFPP_MAX`).
    pub const MAX: PortNo = PortNo(0xffff_ff00);
    /// Send back out of the port the packet came in on.
    pub const IN_PORT: PortNo = PortNo(0xffff_fff8);
    /// Submit to the first flow table (packet-out only).
    pub const TABLE: PortNo = PortNo(0xffff_fff9);
    /// Forward with the non-OpenFlow pipeline.
    pub const NORMAL: PortNo = PortNo(0xffff_fffa);
    /// Flood along the non-OpenFlow pipeline's spanning tree.
    pub const FLOOD: PortNo = PortNo(0xffff_fffb);
    /// All ports except the input port.
    pub const ALL: PortNo = PortNo(0xffff_fffc);
    /// Send to the controller.
    pub const CONTROLLER: PortNo = PortNo(0xffff_fffd);
    /// The local (host stack) port.
    pub const LOCAL: PortNo = PortNo(0xffff_fffe);
    /// Wildcard ("any port") in requests; not a valid output.
    pub const ANY: PortNo = PortNo(0xffff_ffff);

    /// Whether this is one of the reserved numbers above `MAX`.
    pub fn is_reserved(self) -> bool {
        self.0 > Self::MAX.0
    }

    /// The spec's name for a reserved port.
    pub fn reserved_name(self) -> Option<&'static str> {
        Some(match self {
            Self::IN_PORT => "IN_PORT",
            Self::TABLE => "TABLE",
            Self::NORMAL => "NORMAL",
            Self::FLOOD => "FLOOD",
            Self::ALL => "ALL",
            Self::CONTROLLER => "CONTROLLER",
            Self::LOCAL => "LOCAL",
            Self::ANY => "ANY",
            _ => return None,
        })
    }
}

impl fmt::Display for PortNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reserved_name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl From<u32> for PortNo {
    fn from(v: u32) -> Self {
        PortNo(v)
    }
}

/// `ofp_port_config` bits.
pub mod config {
    pub const PORT_DOWN: u32 = 1 << 0;
    pub const NO_RECV: u32 = 1 << 2;
    /// OpenFlow 1.0's `OFPPC_NO_FLOOD`: FLOOD and NORMAL's flooding skip
    /// the port (ALL does not). Later versions define no such bit; the
    /// model keeps it in the same place for every version.
    pub const NO_FLOOD: u32 = 1 << 4;
    pub const NO_FWD: u32 = 1 << 5;
    pub const NO_PACKET_IN: u32 = 1 << 6;
    /// The bits a switch honours.
    pub const ALL: u32 = PORT_DOWN | NO_RECV | NO_FLOOD | NO_FWD | NO_PACKET_IN;
}

/// `ofp_port_state` bits.
pub mod state {
    pub const LINK_DOWN: u32 = 1 << 0;
    pub const BLOCKED: u32 = 1 << 1;
    pub const LIVE: u32 = 1 << 2;
}

/// `ofp_port_features` bits (curr, advertised, supported, peer).
pub mod features {
    pub const F_10MB_HD: u32 = 1 << 0;
    pub const F_10MB_FD: u32 = 1 << 1;
    pub const F_100MB_HD: u32 = 1 << 2;
    pub const F_100MB_FD: u32 = 1 << 3;
    pub const F_1GB_HD: u32 = 1 << 4;
    pub const F_1GB_FD: u32 = 1 << 5;
    pub const F_10GB_FD: u32 = 1 << 6;
    pub const F_40GB_FD: u32 = 1 << 7;
    pub const F_100GB_FD: u32 = 1 << 8;
    pub const F_1TB_FD: u32 = 1 << 9;
    pub const OTHER: u32 = 1 << 10;
    pub const COPPER: u32 = 1 << 11;
    pub const FIBER: u32 = 1 << 12;
    pub const AUTONEG: u32 = 1 << 13;
    pub const PAUSE: u32 = 1 << 14;
    pub const PAUSE_ASYM: u32 = 1 << 15;
}

/// `ofp_port_reason` values of `OFPT_PORT_STATUS`.
pub mod reason {
    pub const ADD: u8 = 0;
    pub const DELETE: u8 = 1;
    pub const MODIFY: u8 = 2;
}

/// Size of `ofp_port`.
pub const PORT_LEN: usize = 64;

/// `ofp_port`: a port's description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Port {
    pub port_no: PortNo,
    pub hw_addr: MacAddr,
    pub name: FixedStr<16>,
    /// [`config`] bits.
    pub config: u32,
    /// [`state`] bits.
    pub state: u32,
    /// [`features`] bits: current, advertised, supported, and the peer's.
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// Speeds in kbit/s.
    pub curr_speed: u32,
    pub max_speed: u32,
}

/// Size of 1.4's `ofp_port` with its one Ethernet property.
pub const PORT_LEN_14: usize = 72;

/// `OFPPDPT_ETHERNET`, the port description property of 1.4 on.
const PROP_ETHERNET: u16 = 0;

impl Port {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<Port> {
        if r.version() >= version::OF14 {
            return Self::decode14(r);
        }
        let port_no = PortNo(r.u32()?);
        r.skip(4)?;
        let hw_addr = MacAddr(r.array()?);
        r.skip(2)?;
        Ok(Port {
            port_no,
            hw_addr,
            name: FixedStr::read(r)?,
            config: r.u32()?,
            state: r.u32()?,
            curr: r.u32()?,
            advertised: r.u32()?,
            supported: r.u32()?,
            peer: r.u32()?,
            curr_speed: r.u32()?,
            max_speed: r.u32()?,
        })
    }

    /// 1.4's layout: a length, and the Ethernet facts as a property
    /// (other properties are skipped).
    fn decode14(r: &mut Reader<'_>) -> Res<Port> {
        let short = r.short();
        let port_no = PortNo(r.u32()?);
        let len = usize::from(r.u16()?);
        if len < 40 {
            return Err(short);
        }
        r.skip(2)?;
        let hw_addr = MacAddr(r.array()?);
        r.skip(2)?;
        let mut p = Port {
            port_no,
            hw_addr,
            name: FixedStr::read(r)?,
            config: r.u32()?,
            state: r.u32()?,
            ..Port::default()
        };
        let mut props = r.sub(len - 40, short)?;
        while !props.is_empty() {
            let ty = props.u16()?;
            let plen = usize::from(props.u16()?);
            if plen < 4 {
                return Err(short);
            }
            let mut body = props.sub(plen - 4, short)?;
            if ty == PROP_ETHERNET {
                body.skip(4)?;
                p.curr = body.u32()?;
                p.advertised = body.u32()?;
                p.supported = body.u32()?;
                p.peer = body.u32()?;
                p.curr_speed = body.u32()?;
                p.max_speed = body.u32()?;
            }
        }
        Ok(p)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        if w.version() >= version::OF14 {
            w.u32(self.port_no.0);
            w.u16(PORT_LEN_14 as u16);
            w.zeros(2);
            w.bytes(&self.hw_addr.0);
            w.zeros(2);
            self.name.write(w);
            w.u32(self.config);
            w.u32(self.state);
            w.u16(PROP_ETHERNET);
            w.u16(32);
            w.zeros(4);
            for v in [
                self.curr,
                self.advertised,
                self.supported,
                self.peer,
                self.curr_speed,
                self.max_speed,
            ] {
                w.u32(v);
            }
            return;
        }
        w.u32(self.port_no.0);
        w.zeros(4);
        w.bytes(&self.hw_addr.0);
        w.zeros(2);
        self.name.write(w);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            w.u32(v);
        }
    }

    /// A list of ports filling the rest of `r` (a `PORT_DESC` reply).
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<Port>> {
        if r.version() >= version::OF14 {
            let mut ports = Vec::new();
            while !r.is_empty() {
                ports.push(Port::decode(r)?);
            }
            return Ok(ports);
        }
        if !r.remaining().is_multiple_of(PORT_LEN) {
            return Err(r.short());
        }
        let mut ports = Vec::with_capacity(r.remaining() / PORT_LEN);
        while !r.is_empty() {
            ports.push(Port::decode(r)?);
        }
        Ok(ports)
    }
}

/// `OFPT_PORT_STATUS`: a port was added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortStatus {
    /// A [`reason`] value.
    pub reason: u8,
    pub desc: Port,
}

impl PortStatus {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<PortStatus> {
        let reason = r.u8()?;
        r.skip(7)?;
        let desc = Port::decode(r)?;
        r.finish()?;
        Ok(PortStatus { reason, desc })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u8(self.reason);
        w.zeros(7);
        self.desc.encode(w);
    }
}

/// `OFPT_PORT_MOD`: change a port's configuration bits selected by `mask`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortMod {
    pub port_no: PortNo,
    /// Must be the port's address (guards against renumbered ports).
    pub hw_addr: MacAddr,
    pub config: u32,
    pub mask: u32,
    /// [`features`] bits to advertise; 0 leaves them unchanged.
    pub advertise: u32,
}

impl PortMod {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<PortMod> {
        let port_no = PortNo(r.u32()?);
        r.skip(4)?;
        let hw_addr = MacAddr(r.array()?);
        r.skip(2)?;
        if r.version() >= version::OF14 {
            // 1.4: what to advertise is an Ethernet property.
            let short = r.short();
            let mut m = PortMod {
                port_no,
                hw_addr,
                config: r.u32()?,
                mask: r.u32()?,
                advertise: 0,
            };
            while !r.is_empty() {
                let ty = r.u16()?;
                let plen = usize::from(r.u16()?);
                if plen < 4 {
                    return Err(short);
                }
                let mut body = r.sub(plen - 4, short)?;
                if ty == PROP_ETHERNET {
                    m.advertise = body.u32()?;
                }
            }
            return Ok(m);
        }
        let m = PortMod {
            port_no,
            hw_addr,
            config: r.u32()?,
            mask: r.u32()?,
            advertise: r.u32()?,
        };
        r.skip(4)?;
        r.finish()?;
        Ok(m)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.port_no.0);
        w.zeros(4);
        w.bytes(&self.hw_addr.0);
        w.zeros(2);
        w.u32(self.config);
        w.u32(self.mask);
        if w.version() >= version::OF14 {
            w.u16(PROP_ETHERNET);
            w.u16(8);
            w.u32(self.advertise);
            return;
        }
        w.u32(self.advertise);
        w.zeros(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::{BadRequestCode, ErrorCode};

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    #[test]
    fn reserved_ports() {
        assert!(PortNo::CONTROLLER.is_reserved());
        assert!(!PortNo::MAX.is_reserved());
        assert_eq!(PortNo::LOCAL.to_string(), "LOCAL");
        assert_eq!(PortNo(7).to_string(), "7");
        assert_eq!(PortNo::ANY.0, 0xffff_ffff);
        assert_eq!(PortNo::IN_PORT.0, 0xffff_fff8);
    }

    #[test]
    fn port_is_64_bytes_and_round_trips() {
        let p = Port {
            port_no: PortNo(3),
            hw_addr: MacAddr([2, 0, 0, 0, 0, 3]),
            name: FixedStr::new("eth3"),
            config: config::NO_PACKET_IN,
            state: state::LIVE,
            curr: features::F_10GB_FD | features::COPPER,
            advertised: 0,
            supported: features::F_10GB_FD,
            peer: 0,
            curr_speed: 10_000_000,
            max_speed: 10_000_000,
        };
        let mut v = Vec::new();
        p.encode(&mut Writer::new(&mut v));
        assert_eq!(v.len(), PORT_LEN);
        assert_eq!(&v[..4], &[0, 0, 0, 3]);
        assert_eq!(&v[8..14], &[2, 0, 0, 0, 0, 3]);
        assert_eq!(&v[16..21], b"eth3\0");
        let mut r = Reader::new(&v, SHORT);
        assert_eq!(Port::decode(&mut r).unwrap(), p);
        let mut r = Reader::new(&v[..63], SHORT);
        assert_eq!(Port::decode(&mut r), Err(SHORT));
        let mut r = Reader::new(&v[..63], SHORT);
        assert_eq!(Port::decode_list(&mut r), Err(SHORT));
    }
}
