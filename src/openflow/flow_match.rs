//! `ofp_match` (type `OFPMT_OXM`): a list of match fields that is valid by
//! construction.
//!
//! A [`Match`] can only be built valid: no duplicate field, every value
//! within its field's width, no value bit outside its mask, every
//! prerequisite present (Table 12 of the spec, transitively). Prerequisites
//! are checked against the whole match, whatever the order of its fields;
//! the fields keep the order and masks they were given, so a flow's match is
//! echoed byte for byte. Nicira register fields
//! ([`NxMatchField`](super::nicira::NxMatchField)) are kept apart, in their
//! own order, and written after the basic fields.

use super::bytes::{Reader, Res, Writer, pad8};
use super::error::{BadMatchCode, ErrorCode};
use super::nicira::{NxMatchField, Register};
use super::oxm::{OFPMT_OXM, OFPVID_PRESENT, OxmError, OxmField, OxmFieldType};
use super::port::PortNo;

/// `ofp_match` of type `OFPMT_OXM`: a valid list of match fields, in the
/// order they were given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    fields: Vec<OxmField>,
    /// Registers (Nicira extension fields), in the order given.
    regs: Vec<NxMatchField>,
}

impl Match {
    /// The match-everything match.
    pub fn new() -> Match {
        Match::default()
    }

    /// A match of these fields, if they make a valid one; the error is the
    /// `OFPBMC_*` code the spec gives for the first problem.
    pub fn from_fields(fields: Vec<OxmField>) -> Result<Match, BadMatchCode> {
        for (i, f) in fields.iter().enumerate() {
            f.check().map_err(OxmError::bad_match)?;
            if fields[..i].iter().any(|g| g.field_type() == f.field_type()) {
                return Err(BadMatchCode::DupField);
            }
        }
        let m = Match {
            fields,
            regs: Vec::new(),
        };
        if m.fields.iter().all(|f| m.prerequisites_met(f.field_type())) {
            Ok(m)
        } else {
            Err(BadMatchCode::BadPrereq)
        }
    }

    /// This match with register fields too (a register at most once, no
    /// value bit outside its mask).
    pub fn with_registers(mut self, regs: Vec<NxMatchField>) -> Result<Match, BadMatchCode> {
        for (i, r) in regs.iter().enumerate() {
            if r.mask.is_some_and(|m| r.value & !m != 0) || r.value & !r.mask_or_all() != 0 {
                return Err(BadMatchCode::BadWildcards);
            }
            if regs[..i].iter().any(|q| q.reg == r.reg) {
                return Err(BadMatchCode::DupField);
            }
        }
        self.regs = regs;
        Ok(self)
    }

    /// This match with its 32-bit registers as the 64-bit packet registers
    /// that hold them (`reg(2N)` the high half of `xreg(N)`), as Open
    /// vSwitch writes OpenFlow 1.5 matches: an xreg with both halves
    /// matched whole is exact, otherwise masked. `conj_id`, `tun_src` and
    /// `tun_dst` stay as they are.
    pub fn with_packet_regs(&self) -> Match {
        let mut x = [(0u64, 0u64); 8];
        let mut used = [false; 8];
        let mut other = Vec::new();
        for r in &self.regs {
            let (i, shift) = match r.reg {
                Register::Reg(i) => (usize::from(i / 2), if i % 2 == 0 { 32 } else { 0 }),
                Register::XReg(i) => (usize::from(i), 0),
                Register::ConjId
                | Register::TunSrc
                | Register::TunDst
                | Register::TunIpv6 { .. }
                | Register::TunMetadata { .. } => {
                    other.push(*r);
                    continue;
                }
            };
            let Some(slot) = x.get_mut(i) else { continue };
            slot.0 |= (r.value & r.mask_or_all()) << shift;
            slot.1 |= r.mask_or_all() << shift;
            used[i] = true;
        }
        let mut regs: Vec<NxMatchField> = (0u8..)
            .zip(x)
            .filter(|&(i, _)| used[usize::from(i)])
            .map(|(i, (value, mask))| NxMatchField {
                reg: Register::XReg(i),
                value,
                mask: (mask != u64::MAX).then_some(mask),
            })
            .collect();
        regs.extend(other);
        Match {
            fields: self.fields.clone(),
            regs,
        }
    }

    /// The register fields.
    pub fn registers(&self) -> &[NxMatchField] {
        &self.regs
    }

    pub fn fields(&self) -> &[OxmField] {
        &self.fields
    }

    pub fn into_fields(self) -> Vec<OxmField> {
        self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, ty: OxmFieldType) -> Option<&OxmField> {
        self.fields.iter().find(|f| f.field_type() == ty)
    }

    pub fn in_port(&self) -> Option<PortNo> {
        match self.get(OxmFieldType::InPort) {
            Some(OxmField::InPort(p)) => Some(*p),
            _ => None,
        }
    }

    pub fn eth_type(&self) -> Option<u16> {
        match self.get(OxmFieldType::EthType) {
            Some(OxmField::EthType(t)) => Some(*t),
            _ => None,
        }
    }

    pub fn ip_proto(&self) -> Option<u8> {
        match self.get(OxmFieldType::IpProto) {
            Some(OxmField::IpProto(p)) => Some(*p),
            _ => None,
        }
    }

    fn icmpv6_type(&self) -> Option<u8> {
        match self.get(OxmFieldType::Icmpv6Type) {
            Some(OxmField::Icmpv6Type(t)) => Some(*t),
            _ => None,
        }
    }

    /// Whether this match guarantees a VLAN tag (VLAN_VID with the present
    /// bit matched as 1), the prerequisite of VLAN_PCP.
    fn has_vlan(&self) -> bool {
        match self.get(OxmFieldType::VlanVid) {
            Some(OxmField::VlanVid(m)) => {
                m.value & m.mask.unwrap_or(u16::MAX) & OFPVID_PRESENT != 0
            }
            _ => false,
        }
    }

    /// Whether this match satisfies the prerequisites of a field (Table 12 of
    /// the spec, transitively). A pipeline also uses it to check that a
    /// SET_FIELD action is consistent with its flow's match.
    pub fn prerequisites_met(&self, ty: OxmFieldType) -> bool {
        use OxmFieldType::*;
        let eth = self.eth_type();
        let ipv4 = eth == Some(0x0800);
        let ipv6 = eth == Some(0x86dd);
        let proto = self.ip_proto();
        let icmpv6 = ipv6 && proto == Some(58);
        match ty {
            InPort | Metadata | EthDst | EthSrc | EthType | VlanVid | TunnelId => true,
            InPhyPort => self.in_port().is_some(),
            VlanPcp => self.has_vlan(),
            IpDscp | IpEcn | IpProto => ipv4 || ipv6,
            Ipv4Src | Ipv4Dst => ipv4,
            TcpSrc | TcpDst => (ipv4 || ipv6) && proto == Some(6),
            UdpSrc | UdpDst => (ipv4 || ipv6) && proto == Some(17),
            SctpSrc | SctpDst => (ipv4 || ipv6) && proto == Some(132),
            Icmpv4Type | Icmpv4Code => ipv4 && proto == Some(1),
            ArpOp | ArpSpa | ArpTpa | ArpSha | ArpTha => eth == Some(0x0806),
            Ipv6Src | Ipv6Dst | Ipv6Flabel | Ipv6Exthdr => ipv6,
            Icmpv6Type | Icmpv6Code => icmpv6,
            Ipv6NdTarget => icmpv6 && matches!(self.icmpv6_type(), Some(135 | 136)),
            Ipv6NdSll => icmpv6 && self.icmpv6_type() == Some(135),
            Ipv6NdTll => icmpv6 && self.icmpv6_type() == Some(136),
            MplsLabel | MplsTc | MplsBos => matches!(eth, Some(0x8847 | 0x8848)),
            PbbIsid => eth == Some(0x88e7),
        }
    }

    /// Size of the encoded `ofp_match`, padding included.
    pub fn encoded_len(&self) -> usize {
        pad8(
            4 + self.fields.iter().map(OxmField::encoded_len).sum::<usize>()
                + super::nx_tun6::registers_len(&self.regs),
        )
    }

    /// Reads an `ofp_match` and its padding.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<Match> {
        let bad = |c| ErrorCode::BadMatch(c);
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        if ty != OFPMT_OXM {
            return Err(bad(BadMatchCode::BadType));
        }
        if len < 4 {
            return Err(bad(BadMatchCode::BadLen));
        }
        let mut body = r
            .sub(len - 4, bad(BadMatchCode::BadLen))
            .map_err(|_| bad(BadMatchCode::BadLen))?;
        r.skip(pad8(len) - len)
            .map_err(|_| bad(BadMatchCode::BadLen))?;
        let mut fields: Vec<OxmField> = Vec::new();
        let mut regs: Vec<NxMatchField> = Vec::new();
        while !body.is_empty() {
            let found = decode_register(&mut body)?;
            if !found.is_empty() {
                for reg in found {
                    if regs.iter().any(|q| q.reg == reg.reg) {
                        return Err(bad(BadMatchCode::DupField));
                    }
                    regs.push(reg);
                }
                continue;
            }
            let f = OxmField::decode(&mut body).map_err(OxmError::match_code)?;
            if fields.iter().any(|g| g.field_type() == f.field_type()) {
                return Err(bad(BadMatchCode::DupField));
            }
            fields.push(f);
        }
        let m = Match { fields, regs };
        match m
            .fields
            .iter()
            .find(|f| !m.prerequisites_met(f.field_type()))
        {
            None => Ok(m),
            // Open vSwitch has no PBB: to it, PBB_ISID is an unknown field
            // whatever the rest of the match, and that error comes first.
            Some(f) if f.field_type() == OxmFieldType::PbbIsid => Err(bad(BadMatchCode::BadField)),
            Some(_) => Err(bad(BadMatchCode::BadPrereq)),
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        w.u16(OFPMT_OXM);
        w.u16(0);
        for f in &self.fields {
            f.encode(w);
        }
        super::nx_tun6::encode_registers(&self.regs, w);
        w.patch_len(start + 2, start, "ofp_match");
        w.pad_to_8(start);
    }
}

/// Reads the next TLV if it is a register, or both halves of an IPv6
/// tunnel address (nothing, reading nothing, if it is not).
fn decode_register(r: &mut Reader<'_>) -> Res<Vec<NxMatchField>> {
    let err = |e: OxmError| e.match_code();
    let class = match r.peek_u16(0) {
        Ok(c) => c,
        Err(_) => return Ok(Vec::new()),
    };
    if class != super::nicira::NXM_CLASS_NX && class != super::nicira::OXM_CLASS_PACKET_REGS {
        return Ok(Vec::new());
    }
    let header = r.u32().map_err(|_| err(OxmError::Len))?;
    let payload = r
        .take((header & 0xff) as usize)
        .map_err(|_| err(OxmError::Len))?;
    if let Some(halves) = super::nx_tun6::decode_tlv(header, payload) {
        return halves.map(Vec::from).map_err(err);
    }
    match NxMatchField::from_tlv(header, payload) {
        Some(Ok(f)) => Ok(vec![f]),
        Some(Err(e)) => Err(err(e)),
        None => Err(err(OxmError::Field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;
    use crate::openflow::oxm::{Masked, OFPVID_NONE};
    use crate::wire::MacAddr;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    fn encode(m: &Match) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        m.encode(&mut w);
        w.finish().unwrap();
        v
    }

    fn decode(b: &[u8]) -> Res<Match> {
        let mut r = Reader::new(b, SHORT);
        let m = Match::decode(&mut r)?;
        r.finish()?;
        Ok(m)
    }

    fn bad(c: BadMatchCode) -> Res<Match> {
        Err(ErrorCode::BadMatch(c))
    }

    #[test]
    fn tcp_match_fixture() {
        // tcp,in_port=1,nw_src=10.0.0.0/24,tp_dst=80
        let bytes = [
            0x00, 0x01, 0x00, 0x29, // OXM match, length 41
            0x80, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, // in_port=1
            0x80, 0x00, 0x0a, 0x02, 0x08, 0x00, // eth_type=0x0800
            0x80, 0x00, 0x14, 0x01, 0x06, // ip_proto=6
            0x80, 0x00, 0x17, 0x08, 10, 0, 0, 0, 255, 255, 255, 0, // ipv4_src/mask
            0x80, 0x00, 0x1c, 0x02, 0x00, 0x50, // tcp_dst=80
            0, 0, 0, 0, 0, 0, 0, // padding to 48
        ];
        let m = decode(&bytes).unwrap();
        assert_eq!(
            m.fields(),
            &[
                OxmField::InPort(PortNo(1)),
                OxmField::EthType(0x0800),
                OxmField::IpProto(6),
                OxmField::Ipv4Src(Masked::new(
                    Ipv4Addr::new(10, 0, 0, 0),
                    Ipv4Addr::new(255, 255, 255, 0)
                )),
                OxmField::TcpDst(80),
            ]
        );
        assert_eq!(encode(&m), bytes);
        assert_eq!(m.encoded_len(), bytes.len());
        // Missing padding.
        assert_eq!(decode(&bytes[..44]), bad(BadMatchCode::BadLen));
    }

    #[test]
    fn ipv6_tunnel_addresses_round_trip_as_one_tlv_each() {
        // tun_ipv6_src=fd00::2,tun_ipv6_dst=fd00::/16,reg1=5 (OXM, as
        // ovs-ofctl -O OpenFlow13 writes it).
        let mut body = vec![0x00, 0x01, 0xda, 0x10];
        body.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        body.extend([0x00, 0x01, 0xdd, 0x20]);
        body.extend("fd00::".parse::<Ipv6Addr>().unwrap().octets());
        body.extend("ffff::".parse::<Ipv6Addr>().unwrap().octets());
        body.extend([0x00, 0x01, 0x02, 0x04, 0, 0, 0, 5]);
        let len = 4 + body.len();
        let mut bytes = vec![0, 1];
        bytes.extend((len as u16).to_be_bytes());
        bytes.extend(&body);
        bytes.resize(pad8(len), 0);
        let m = decode(&bytes).unwrap();
        assert_eq!(m.registers().len(), 5);
        assert_eq!(
            super::super::nx_tun6::joined(m.registers(), true),
            Some(("fd00::".parse().unwrap(), Some("ffff::".parse().unwrap())))
        );
        assert_eq!(encode(&m), bytes);
        assert_eq!(m.encoded_len(), bytes.len());
        // Twice the same field; a cut-short one.
        let mut twice = body[..20].to_vec();
        twice.extend(&body[..20]);
        let l = 4 + twice.len();
        let mut b = vec![0, 1];
        b.extend((l as u16).to_be_bytes());
        b.extend(&twice);
        b.resize(pad8(l), 0);
        assert_eq!(decode(&b), bad(BadMatchCode::DupField));
        let mut short = vec![0, 1, 0, 16, 0x00, 0x01, 0xda, 0x0c];
        short.extend([0u8; 12]);
        short.resize(24, 0);
        assert_eq!(decode(&short), bad(BadMatchCode::BadLen));
    }

    #[test]
    fn match_errors() {
        let with = |fields: &[&[u8]]| {
            let body: Vec<u8> = fields.concat();
            let len = 4 + body.len();
            let mut v = vec![0, 1];
            v.extend_from_slice(&(len as u16).to_be_bytes());
            v.extend_from_slice(&body);
            v.resize(pad8(len), 0);
            decode(&v)
        };
        let eth_ip: &[u8] = &[0x80, 0, 0x0a, 2, 0x08, 0x00];
        let eth_arp: &[u8] = &[0x80, 0, 0x0a, 2, 0x08, 0x06];
        let tcp: &[u8] = &[0x80, 0, 0x14, 1, 6];
        let tp_dst: &[u8] = &[0x80, 0, 0x1c, 2, 0, 80];
        assert!(with(&[eth_ip, tcp, tp_dst]).is_ok());
        // Order does not matter for prerequisites.
        assert!(with(&[tp_dst, tcp, eth_ip]).is_ok());
        assert_eq!(with(&[tcp, tp_dst]), bad(BadMatchCode::BadPrereq));
        assert_eq!(with(&[eth_arp, tcp, tp_dst]), bad(BadMatchCode::BadPrereq));
        assert_eq!(with(&[eth_ip, tp_dst]), bad(BadMatchCode::BadPrereq));
        assert_eq!(with(&[eth_ip, eth_ip]), bad(BadMatchCode::DupField));
        // Standard (OF1.0/1.1 style) match type.
        assert_eq!(
            decode(&[0, 0, 0, 4, 0, 0, 0, 0]),
            bad(BadMatchCode::BadType)
        );
        assert_eq!(decode(&[0, 1, 0, 3, 0, 0, 0, 0]), bad(BadMatchCode::BadLen));
        assert_eq!(
            decode(&[0, 1, 0, 12, 0, 0, 0, 0]),
            bad(BadMatchCode::BadLen)
        );
        // A truncated TLV inside the match.
        assert_eq!(
            decode(&[0, 1, 0, 8, 0x80, 0, 0, 4, 0, 0, 0, 0]),
            bad(BadMatchCode::BadLen)
        );
        assert_eq!(decode(&[0, 1, 0, 4, 0, 0, 0, 0]), Ok(Match::new()));
        // The header itself cut short is the message's problem.
        assert_eq!(decode(&[0, 1, 0]), Err(SHORT));
    }

    #[test]
    fn vlan_pcp_needs_a_present_vlan() {
        let vid = |value, mask| OxmField::VlanVid(Masked { value, mask });
        let pcp = OxmField::VlanPcp(3);
        assert!(Match::from_fields(vec![vid(OFPVID_PRESENT | 10, None), pcp]).is_ok());
        assert!(Match::from_fields(vec![vid(OFPVID_PRESENT, Some(OFPVID_PRESENT)), pcp]).is_ok());
        assert_eq!(
            Match::from_fields(vec![vid(OFPVID_NONE, None), pcp]),
            Err(BadMatchCode::BadPrereq)
        );
        assert_eq!(
            Match::from_fields(vec![vid(OFPVID_PRESENT | 10, Some(0x0fff)), pcp]),
            Err(BadMatchCode::BadWildcards)
        );
        assert_eq!(Match::from_fields(vec![pcp]), Err(BadMatchCode::BadPrereq));
    }

    #[test]
    fn nd_and_mpls_prerequisites() {
        let base = vec![
            OxmField::EthType(0x86dd),
            OxmField::IpProto(58),
            OxmField::Icmpv6Type(135),
        ];
        let mut ok = base.clone();
        ok.push(OxmField::Ipv6NdSll(MacAddr::local(1)));
        ok.push(OxmField::Ipv6NdTarget(Ipv6Addr::LOCALHOST));
        assert!(Match::from_fields(ok).is_ok());
        let mut bad_tll = base;
        bad_tll.push(OxmField::Ipv6NdTll(MacAddr::local(1)));
        assert_eq!(Match::from_fields(bad_tll), Err(BadMatchCode::BadPrereq));
        assert!(Match::from_fields(vec![OxmField::EthType(0x8847), OxmField::MplsBos(1)]).is_ok());
        assert_eq!(
            Match::from_fields(vec![OxmField::EthType(0x8847), OxmField::MplsBos(2)]),
            Err(BadMatchCode::BadValue)
        );
    }

    #[test]
    fn registers_as_packet_registers() {
        let r = |reg, value, mask| NxMatchField { reg, value, mask };
        let m = Match::from_fields(vec![OxmField::InPort(PortNo(1))])
            .unwrap()
            .with_registers(vec![
                r(Register::Reg(1), 7, None),
                r(Register::Reg(0), 5, None),
                r(Register::Reg(3), 9, None),
                r(Register::Reg(4), 0x10, Some(0xf0)),
                r(Register::ConjId, 3, None),
            ])
            .unwrap();
        let x = m.with_packet_regs();
        assert_eq!(x.fields(), m.fields());
        assert_eq!(
            x.registers(),
            [
                r(Register::XReg(0), 0x5_0000_0007, None),
                r(Register::XReg(1), 9, Some(0xffff_ffff)),
                r(Register::XReg(2), 0x10 << 32, Some(0xf0 << 32)),
                r(Register::ConjId, 3, None),
            ]
        );
        // On the wire: class 0x8001 (OXM_OF_PKT_REGn), 8 or 16 bytes.
        let b = encode(&x);
        assert_eq!(&b[12..16], [0x80, 0x01, 0x00, 0x08]);
        assert_eq!(&b[24..28], [0x80, 0x01, 0x03, 0x10]);
        assert_eq!(
            decode(&b).map(|d| d.registers().to_vec()),
            Ok(x.registers().to_vec())
        );
    }
}
