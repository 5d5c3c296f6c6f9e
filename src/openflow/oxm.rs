//! Match fields: OXM TLVs of class `OFPXMC_OPENFLOW_BASIC`.
//!
//! Every basic field of OpenFlow 1.3 is a typed [`OxmField`]; a maskable
//! field holds a [`Masked`] value whose mask is kept exactly as received
//! (even an all-ones mask stays a mask), so that flow statistics echo a
//! flow's match byte for byte. Only maskable fields can hold a mask, by
//! their types. Lists of fields make a [`Match`](super::flow_match::Match).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::MacAddr;

use super::bytes::{Reader, Res, Writer};
use super::error::{BadMatchCode, ErrorCode};
use super::port::PortNo;

/// `OFPXMC_OPENFLOW_BASIC`.
pub const OXM_CLASS_OPENFLOW_BASIC: u16 = 0x8000;
/// `OFPXMC_EXPERIMENTER`.
pub const OXM_CLASS_EXPERIMENTER: u16 = 0xffff;
/// `OFPMT_OXM`, the only match type of OpenFlow 1.3 (`OFPMT_STANDARD` is 0).
pub const OFPMT_OXM: u16 = 1;

/// `OFPVID_PRESENT`: the VLAN_VID bit saying a VLAN tag is there.
pub const OFPVID_PRESENT: u16 = 0x1000;
/// `OFPVID_NONE`: VLAN_VID of a packet without a VLAN tag.
pub const OFPVID_NONE: u16 = 0x0000;

/// `ofp_ipv6exthdr_flags` bits of IPV6_EXTHDR.
pub mod ipv6_exthdr {
    pub const NONEXT: u16 = 1 << 0;
    pub const ESP: u16 = 1 << 1;
    pub const AUTH: u16 = 1 << 2;
    pub const DEST: u16 = 1 << 3;
    pub const FRAG: u16 = 1 << 4;
    pub const ROUTER: u16 = 1 << 5;
    pub const HOP: u16 = 1 << 6;
    pub const UNREP: u16 = 1 << 7;
    pub const UNSEQ: u16 = 1 << 8;
}

wire_enum! {
    /// `oxm_ofb_match_fields`: the basic match fields of OpenFlow 1.3.
    pub enum OxmFieldType: u8 {
        InPort = 0 => "OXM_OF_IN_PORT",
        InPhyPort = 1 => "OXM_OF_IN_PHY_PORT",
        Metadata = 2 => "OXM_OF_METADATA",
        EthDst = 3 => "OXM_OF_ETH_DST",
        EthSrc = 4 => "OXM_OF_ETH_SRC",
        EthType = 5 => "OXM_OF_ETH_TYPE",
        VlanVid = 6 => "OXM_OF_VLAN_VID",
        VlanPcp = 7 => "OXM_OF_VLAN_PCP",
        IpDscp = 8 => "OXM_OF_IP_DSCP",
        IpEcn = 9 => "OXM_OF_IP_ECN",
        IpProto = 10 => "OXM_OF_IP_PROTO",
        Ipv4Src = 11 => "OXM_OF_IPV4_SRC",
        Ipv4Dst = 12 => "OXM_OF_IPV4_DST",
        TcpSrc = 13 => "OXM_OF_TCP_SRC",
        TcpDst = 14 => "OXM_OF_TCP_DST",
        UdpSrc = 15 => "OXM_OF_UDP_SRC",
        UdpDst = 16 => "OXM_OF_UDP_DST",
        SctpSrc = 17 => "OXM_OF_SCTP_SRC",
        SctpDst = 18 => "OXM_OF_SCTP_DST",
        Icmpv4Type = 19 => "OXM_OF_ICMPV4_TYPE",
        Icmpv4Code = 20 => "OXM_OF_ICMPV4_CODE",
        ArpOp = 21 => "OXM_OF_ARP_OP",
        ArpSpa = 22 => "OXM_OF_ARP_SPA",
        ArpTpa = 23 => "OXM_OF_ARP_TPA",
        ArpSha = 24 => "OXM_OF_ARP_SHA",
        ArpTha = 25 => "OXM_OF_ARP_THA",
        Ipv6Src = 26 => "OXM_OF_IPV6_SRC",
        Ipv6Dst = 27 => "OXM_OF_IPV6_DST",
        Ipv6Flabel = 28 => "OXM_OF_IPV6_FLABEL",
        Icmpv6Type = 29 => "OXM_OF_ICMPV6_TYPE",
        Icmpv6Code = 30 => "OXM_OF_ICMPV6_CODE",
        Ipv6NdTarget = 31 => "OXM_OF_IPV6_ND_TARGET",
        Ipv6NdSll = 32 => "OXM_OF_IPV6_ND_SLL",
        Ipv6NdTll = 33 => "OXM_OF_IPV6_ND_TLL",
        MplsLabel = 34 => "OXM_OF_MPLS_LABEL",
        MplsTc = 35 => "OXM_OF_MPLS_TC",
        MplsBos = 36 => "OXM_OF_MPLS_BOS",
        PbbIsid = 37 => "OXM_OF_PBB_ISID",
        TunnelId = 38 => "OXM_OF_TUNNEL_ID",
        Ipv6Exthdr = 39 => "OXM_OF_IPV6_EXTHDR",
    }
}

impl OxmFieldType {
    /// Size of the field's value on the wire.
    pub fn value_len(self) -> usize {
        use OxmFieldType::*;
        match self {
            VlanPcp | IpDscp | IpEcn | IpProto | Icmpv4Type | Icmpv4Code | Icmpv6Type
            | Icmpv6Code | MplsTc | MplsBos => 1,
            EthType | VlanVid | TcpSrc | TcpDst | UdpSrc | UdpDst | SctpSrc | SctpDst | ArpOp
            | Ipv6Exthdr => 2,
            PbbIsid => 3,
            InPort | InPhyPort | Ipv4Src | Ipv4Dst | ArpSpa | ArpTpa | Ipv6Flabel | MplsLabel => 4,
            EthDst | EthSrc | ArpSha | ArpTha | Ipv6NdSll | Ipv6NdTll => 6,
            Metadata | TunnelId => 8,
            Ipv6Src | Ipv6Dst | Ipv6NdTarget => 16,
        }
    }

    /// Whether the spec lets this field carry a mask.
    pub fn maskable(self) -> bool {
        use OxmFieldType::*;
        matches!(
            self,
            Metadata
                | EthDst
                | EthSrc
                | VlanVid
                | Ipv4Src
                | Ipv4Dst
                | ArpSpa
                | ArpTpa
                | ArpSha
                | ArpTha
                | Ipv6Src
                | Ipv6Dst
                | Ipv6Flabel
                | PbbIsid
                | TunnelId
                | Ipv6Exthdr
        )
    }

    /// The largest value, for fields narrower than their bytes.
    fn max_value(self) -> Option<u64> {
        use OxmFieldType::*;
        Some(match self {
            VlanVid => 0x1fff,
            VlanPcp | MplsTc => 7,
            IpDscp => 0x3f,
            IpEcn => 3,
            MplsBos => 1,
            Ipv6Flabel | MplsLabel => 0xf_ffff,
            Ipv6Exthdr => 0x1ff,
            _ => return None,
        })
    }

    /// The 32-bit OXM header of this field (class, field, hasmask, length).
    pub fn header(self, hasmask: bool) -> u32 {
        let len = self.value_len() * if hasmask { 2 } else { 1 };
        (u32::from(OXM_CLASS_OPENFLOW_BASIC) << 16)
            | (u32::from(self.to_wire()) << 9)
            | (u32::from(hasmask) << 8)
            | len as u32
    }
}

/// A value and, for maskable fields, an optional mask (1-bits are matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Masked<T> {
    pub value: T,
    pub mask: Option<T>,
}

impl<T> Masked<T> {
    pub fn exact(value: T) -> Masked<T> {
        Masked { value, mask: None }
    }

    pub fn new(value: T, mask: T) -> Masked<T> {
        Masked {
            value,
            mask: Some(mask),
        }
    }
}

/// A field value in wire form: at most 16 bytes, on the stack.
#[derive(Clone, Copy)]
struct Raw {
    buf: [u8; 16],
    len: usize,
}

impl Raw {
    fn from_slice(s: &[u8]) -> Raw {
        let mut buf = [0u8; 16];
        let len = s.len().min(16);
        buf[..len].copy_from_slice(&s[..len]);
        Raw { buf, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Conversion between a value type and its big-endian bytes.
trait OxmBytes: Sized + Copy {
    /// `n` is the field's wire length (integers can be narrower than their type).
    fn to_raw(self, n: usize) -> Raw;
    /// `b` has the field's wire length (checked by the caller).
    fn from_raw(b: &[u8]) -> Self;
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

fn raw_u64(v: u64, n: usize) -> Raw {
    let b = v.to_be_bytes();
    Raw::from_slice(&b[8usize.saturating_sub(n)..])
}

macro_rules! oxm_int {
    ($($t:ty),*) => {$(
        impl OxmBytes for $t {
            fn to_raw(self, n: usize) -> Raw {
                raw_u64(u64::from(self), n)
            }
            fn from_raw(b: &[u8]) -> Self {
                // The caller passes at most size_of::<$t>() bytes.
                be_u64(b) as $t
            }
        }
    )*};
}
oxm_int!(u8, u16, u32, u64);

impl OxmBytes for PortNo {
    fn to_raw(self, n: usize) -> Raw {
        self.0.to_raw(n)
    }
    fn from_raw(b: &[u8]) -> Self {
        PortNo(u32::from_raw(b))
    }
}

impl OxmBytes for MacAddr {
    fn to_raw(self, _: usize) -> Raw {
        Raw::from_slice(&self.0)
    }
    fn from_raw(b: &[u8]) -> Self {
        MacAddr(b.try_into().unwrap_or_default())
    }
}

impl OxmBytes for Ipv4Addr {
    fn to_raw(self, _: usize) -> Raw {
        Raw::from_slice(&self.octets())
    }
    fn from_raw(b: &[u8]) -> Self {
        Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap_or_default())
    }
}

impl OxmBytes for Ipv6Addr {
    fn to_raw(self, _: usize) -> Raw {
        Raw::from_slice(&self.octets())
    }
    fn from_raw(b: &[u8]) -> Self {
        Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default())
    }
}

/// How a variant's payload maps to wire value and mask.
trait FieldRepr: Sized {
    fn to_parts(&self, n: usize) -> (Raw, Option<Raw>);
    fn from_parts(value: &[u8], mask: Option<&[u8]>) -> Self;
}

impl<T: OxmBytes> FieldRepr for T {
    fn to_parts(&self, n: usize) -> (Raw, Option<Raw>) {
        (self.to_raw(n), None)
    }
    fn from_parts(value: &[u8], _: Option<&[u8]>) -> Self {
        T::from_raw(value)
    }
}

impl<T: OxmBytes> FieldRepr for Masked<T> {
    fn to_parts(&self, n: usize) -> (Raw, Option<Raw>) {
        (self.value.to_raw(n), self.mask.map(|m| m.to_raw(n)))
    }
    fn from_parts(value: &[u8], mask: Option<&[u8]>) -> Self {
        Masked {
            value: T::from_raw(value),
            mask: mask.map(T::from_raw),
        }
    }
}

macro_rules! oxm_fields {
    ($($(#[$m:meta])* $var:ident($t:ty),)*) => {
        /// One match field (or, in a SET_FIELD action, one field to set).
        /// Variants are named as [`OxmFieldType`]'s.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum OxmField {
            $($(#[$m])* $var($t),)*
        }

        impl OxmField {
            pub fn field_type(&self) -> OxmFieldType {
                match self {
                    $(OxmField::$var(_) => OxmFieldType::$var,)*
                }
            }

            fn parts(&self) -> (Raw, Option<Raw>) {
                let n = self.field_type().value_len();
                match self {
                    $(OxmField::$var(v) => v.to_parts(n),)*
                }
            }

            fn from_parts(ty: OxmFieldType, value: &[u8], mask: Option<&[u8]>) -> OxmField {
                match ty {
                    $(OxmFieldType::$var => OxmField::$var(<$t>::from_parts(value, mask)),)*
                }
            }
        }
    };
}

oxm_fields! {
    InPort(PortNo),
    InPhyPort(PortNo),
    Metadata(Masked<u64>),
    EthDst(Masked<MacAddr>),
    EthSrc(Masked<MacAddr>),
    EthType(u16),
    /// VLAN id with [`OFPVID_PRESENT`], or [`OFPVID_NONE`].
    VlanVid(Masked<u16>),
    VlanPcp(u8),
    /// The DSCP, in the low 6 bits.
    IpDscp(u8),
    IpEcn(u8),
    IpProto(u8),
    Ipv4Src(Masked<Ipv4Addr>),
    Ipv4Dst(Masked<Ipv4Addr>),
    TcpSrc(u16),
    TcpDst(u16),
    UdpSrc(u16),
    UdpDst(u16),
    SctpSrc(u16),
    SctpDst(u16),
    Icmpv4Type(u8),
    Icmpv4Code(u8),
    ArpOp(u16),
    ArpSpa(Masked<Ipv4Addr>),
    ArpTpa(Masked<Ipv4Addr>),
    ArpSha(Masked<MacAddr>),
    ArpTha(Masked<MacAddr>),
    Ipv6Src(Masked<Ipv6Addr>),
    Ipv6Dst(Masked<Ipv6Addr>),
    /// 20 bits.
    Ipv6Flabel(Masked<u32>),
    Icmpv6Type(u8),
    Icmpv6Code(u8),
    Ipv6NdTarget(Ipv6Addr),
    Ipv6NdSll(MacAddr),
    Ipv6NdTll(MacAddr),
    /// 20 bits.
    MplsLabel(u32),
    MplsTc(u8),
    MplsBos(u8),
    /// 24 bits.
    PbbIsid(Masked<u32>),
    TunnelId(Masked<u64>),
    /// [`ipv6_exthdr`] bits (9 of them).
    Ipv6Exthdr(Masked<u16>),
}

/// Why one OXM entry is rejected. A match reports these as `OFPBMC_*`, a
/// SET_FIELD action as `OFPBAC_BAD_SET_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OxmError {
    /// Truncated, or a length that is not the field's.
    Len,
    /// Not a basic field of OpenFlow 1.3 (other classes, experimenters).
    Field,
    /// A mask on a field the spec does not allow to be masked.
    Mask,
    /// A value wider than the field.
    Value,
    /// A value bit set where the mask is 0.
    Wildcards,
}

impl OxmError {
    pub(crate) fn bad_match(self) -> BadMatchCode {
        match self {
            OxmError::Len => BadMatchCode::BadLen,
            OxmError::Field => BadMatchCode::BadField,
            OxmError::Mask => BadMatchCode::BadMask,
            OxmError::Value => BadMatchCode::BadValue,
            OxmError::Wildcards => BadMatchCode::BadWildcards,
        }
    }

    pub(crate) fn match_code(self) -> ErrorCode {
        ErrorCode::BadMatch(self.bad_match())
    }
}

/// Checks a value (and mask) of the right length against the field's rules.
fn check_parts(ty: OxmFieldType, value: &[u8], mask: Option<&[u8]>) -> Result<(), OxmError> {
    if let Some(max) = ty.max_value()
        && be_u64(value) > max
    {
        return Err(OxmError::Value);
    }
    if let Some(mask) = mask
        && value.iter().zip(mask).any(|(v, m)| v & !m != 0)
    {
        return Err(OxmError::Wildcards);
    }
    Ok(())
}

impl OxmField {
    /// Whether the field carries a mask.
    pub fn is_masked(&self) -> bool {
        self.parts().1.is_some()
    }

    /// The value as big-endian bytes of the field's wire length.
    pub fn value_bytes(&self) -> Vec<u8> {
        self.parts().0.as_slice().to_vec()
    }

    /// The mask as big-endian bytes, if there is one.
    pub fn mask_bytes(&self) -> Option<Vec<u8>> {
        self.parts().1.map(|m| m.as_slice().to_vec())
    }

    /// The 32-bit OXM header this field is encoded with.
    pub fn header(&self) -> u32 {
        self.field_type().header(self.is_masked())
    }

    /// Size of the encoded TLV (4-byte header included).
    pub fn encoded_len(&self) -> usize {
        let n = self.field_type().value_len();
        4 + if self.is_masked() { 2 * n } else { n }
    }

    /// Checks the field on its own: value in range, no value bit outside
    /// the mask. (Only maskable fields can hold a mask, by their types.)
    pub(crate) fn check(&self) -> Result<(), OxmError> {
        let (value, mask) = self.parts();
        check_parts(
            self.field_type(),
            value.as_slice(),
            mask.as_ref().map(Raw::as_slice),
        )
    }

    /// Reads one OXM TLV.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<OxmField, OxmError> {
        let header = r.u32().map_err(|_| OxmError::Len)?;
        let len = (header & 0xff) as usize;
        let payload = r.take(len).map_err(|_| OxmError::Len)?;
        let class = (header >> 16) as u16;
        let hasmask = header & 0x100 != 0;
        if class != OXM_CLASS_OPENFLOW_BASIC {
            // Experimenter fields carry their experimenter id first.
            if class == OXM_CLASS_EXPERIMENTER && len < 4 {
                return Err(OxmError::Len);
            }
            return Err(OxmError::Field);
        }
        let ty = OxmFieldType::from_wire((header >> 9) as u8 & 0x7f).ok_or(OxmError::Field)?;
        if hasmask && !ty.maskable() {
            return Err(OxmError::Mask);
        }
        let n = ty.value_len();
        if len != if hasmask { 2 * n } else { n } {
            return Err(OxmError::Len);
        }
        let (value, mask) = payload.split_at(n);
        let mask = hasmask.then_some(mask);
        check_parts(ty, value, mask)?;
        Ok(OxmField::from_parts(ty, value, mask))
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let (value, mask) = self.parts();
        w.u32(self.header());
        w.bytes(value.as_slice());
        if let Some(m) = mask {
            w.bytes(m.as_slice());
        }
    }
}

/// An OXM header as listed in table features (`OFPTFPT_MATCH`, ...); an
/// experimenter field's id carries the experimenter id too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OxmId {
    pub header: u32,
    pub experimenter: Option<u32>,
}

impl OxmId {
    /// The id of a basic field, with or without mask.
    pub fn basic(ty: OxmFieldType, hasmask: bool) -> OxmId {
        OxmId {
            header: ty.header(hasmask),
            experimenter: None,
        }
    }

    pub fn class(&self) -> u16 {
        (self.header >> 16) as u16
    }

    pub fn hasmask(&self) -> bool {
        self.header & 0x100 != 0
    }

    /// The basic field this id names, if it is one.
    pub fn field_type(&self) -> Option<OxmFieldType> {
        if self.class() != OXM_CLASS_OPENFLOW_BASIC {
            return None;
        }
        OxmFieldType::from_wire((self.header >> 9) as u8 & 0x7f)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<OxmId> {
        let header = r.u32()?;
        let experimenter = if (header >> 16) as u16 == OXM_CLASS_EXPERIMENTER {
            Some(r.u32()?)
        } else {
            None
        };
        Ok(OxmId {
            header,
            experimenter,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.header);
        if let Some(e) = self.experimenter {
            w.u32(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    #[test]
    fn every_field_round_trips_with_and_without_mask() {
        for &ty in OxmFieldType::ALL {
            let n = ty.value_len();
            let value = vec![0u8; n];
            let mut tlv = Vec::new();
            tlv.extend_from_slice(&ty.header(false).to_be_bytes());
            tlv.extend_from_slice(&value);
            let mut r = Reader::new(&tlv, SHORT);
            let f = OxmField::decode(&mut r).unwrap();
            assert_eq!(f.field_type(), ty);
            let mut out = Vec::new();
            f.encode(&mut Writer::new(&mut out));
            assert_eq!(out, tlv, "{ty}");

            let mut tlv = Vec::new();
            tlv.extend_from_slice(&ty.header(true).to_be_bytes());
            tlv.extend_from_slice(&value);
            tlv.extend_from_slice(&vec![0xff; n]);
            let mut r = Reader::new(&tlv, SHORT);
            match OxmField::decode(&mut r) {
                Ok(f) => {
                    assert!(ty.maskable(), "{ty}");
                    assert!(f.is_masked());
                    let mut out = Vec::new();
                    f.encode(&mut Writer::new(&mut out));
                    assert_eq!(out, tlv, "{ty}");
                }
                Err(e) => {
                    assert!(!ty.maskable(), "{ty}");
                    assert_eq!(e, OxmError::Mask);
                }
            }
        }
    }

    #[test]
    fn field_errors() {
        let tlv = |h: u32, p: &[u8]| {
            let mut v = h.to_be_bytes().to_vec();
            v.extend_from_slice(p);
            let mut r = Reader::new(&v, SHORT);
            OxmField::decode(&mut r)
        };
        use OxmFieldType as T;
        // Length that is not the field's.
        assert_eq!(
            tlv(T::TcpDst.header(false) + 1, &[0, 80, 0]),
            Err(OxmError::Len)
        );
        // Truncated payload.
        assert_eq!(tlv(T::InPort.header(false), &[0, 0]), Err(OxmError::Len));
        // Unknown basic field, NXM class, experimenter class.
        assert_eq!(tlv(0x8000_5002, &[0, 0]), Err(OxmError::Field));
        assert_eq!(tlv(0x0001_0002, &[0, 0]), Err(OxmError::Field));
        assert_eq!(tlv(0xffff_0004, &[0, 0, 0x23, 0x20]), Err(OxmError::Field));
        assert_eq!(tlv(0xffff_0002, &[0, 0]), Err(OxmError::Len));
        // Out of range values.
        assert_eq!(tlv(T::VlanPcp.header(false), &[8]), Err(OxmError::Value));
        assert_eq!(tlv(T::IpDscp.header(false), &[64]), Err(OxmError::Value));
        assert_eq!(
            tlv(T::VlanVid.header(false), &[0x20, 0]),
            Err(OxmError::Value)
        );
        assert_eq!(
            tlv(T::MplsLabel.header(false), &[0, 0x10, 0, 0]),
            Err(OxmError::Value)
        );
        // Value bit outside its mask.
        assert_eq!(
            tlv(T::Ipv4Src.header(true), &[10, 0, 0, 1, 255, 255, 255, 0]),
            Err(OxmError::Wildcards)
        );
        // A mask on a field that cannot have one.
        assert_eq!(
            tlv(T::TcpDst.header(true), &[0, 80, 0xff, 0xff]),
            Err(OxmError::Mask)
        );
    }

    #[test]
    fn oxm_ids() {
        let id = OxmId::basic(OxmFieldType::Ipv4Src, true);
        assert_eq!(id.header, 0x8000_1708);
        assert_eq!(id.field_type(), Some(OxmFieldType::Ipv4Src));
        let b = [0xff, 0xff, 0x00, 0x08, 0x00, 0x00, 0x23, 0x20];
        let mut r = Reader::new(&b, SHORT);
        let id = OxmId::decode(&mut r).unwrap();
        assert_eq!(id.experimenter, Some(0x2320));
        assert_eq!(id.field_type(), None);
        let mut out = Vec::new();
        id.encode(&mut Writer::new(&mut out));
        assert_eq!(out, b);
    }
}
