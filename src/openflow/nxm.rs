//! NXM (Nicira Extended Match), Open vSwitch's flexible match for OpenFlow
//! 1.0, to and from the model's [`Match`].
//!
//! An `nx_match` is a list of TLVs laid out as OXM's (class, field,
//! hasmask, length), with no header of its own: its length travels in the
//! message that holds it (`nx_flow_mod`, `nx_flow_stats_request`, ...),
//! and it is padded to 8 bytes there. Three classes are read:
//! `NXM_OF_*` (class `0x0000`, OpenFlow 1.0's fields), `NXM_NX_*` (class
//! `0x0001`, Nicira's: registers, IPv6, ND, tunnel id, ...) and OXM's own
//! `OFPXMC_OPENFLOW_BASIC` (`0x8000`), which NXM also takes (MPLS,
//! metadata and SCTP exist only there), plus `xreg`s (`0x8001`).
//!
//! Where NXM and OXM say a field differently the value is converted:
//! - `NXM_OF_IN_PORT` is 16 bits (1.0's port numbers, reserved ports at
//!   `0xff00` and up); the model's is 32.
//! - `NXM_OF_VLAN_TCI` is the whole TCI (PCP, CFI as "a tag is present",
//!   VID) with one mask; the model has VLAN_VID (with `OFPVID_PRESENT`) and
//!   VLAN_PCP. A TCI of 0 with the CFI bit matched means "no tag"
//!   (`OFPVID_NONE`); a PCP is matched whole or not at all.
//! - `NXM_OF_IP_TOS` holds the DSCP in its high 6 bits (the ECN bits must be
//!   0); the model's IP_DSCP holds it in the low 6.
//! - NXM lets L4 ports and ND fields carry masks, which the model's fields
//!   cannot: an all-ones mask is read as an exact match, another is
//!   `OFPBMC_BAD_MASK`.
//! - `NXM_NX_COOKIE` is not a packet field: it is given back apart
//!   ([`NxMatch::cookie`]), for the messages that take it (flow mods and
//!   flow statistics requests).
//!
//! Fields Open vSwitch has and the model lacks (`NXM_NX_IP_FRAG`,
//! `NXM_NX_IP_TTL`, `NXM_NX_PKT_MARK`, `NXM_NX_TCP_FLAGS`, `NXM_NX_MPLS_TTL`,
//! connection tracking, ...) are `OFPBMC_BAD_FIELD`,
//! as are unknown ones. `NXM_NX_CONJ_ID`, `NXM_NX_TUN_IPV4_SRC` and
//! `NXM_NX_TUN_IPV4_DST` are read like registers, `NXM_NX_TUN_IPV6_SRC`
//! and `_DST` as two 64-bit halves of registers ([`super::nx_tun6`]).
//! Other errors are OXM's: a TLV cut short or of the wrong length
//! `OFPBMC_BAD_LEN`, a value bit outside its mask `OFPBMC_BAD_WILDCARDS`, a
//! value out of range `OFPBMC_BAD_VALUE`, a field twice `OFPBMC_DUP_FIELD`,
//! and prerequisites are checked on the whole match as for OXM
//! (`OFPBMC_BAD_PREREQ`). Decoding never panics.
//!
//! Encoding writes every field in its NXM form when it has one, else in its
//! OXM form, in the order Open vSwitch writes them (a field after its
//! prerequisites), so that Open vSwitch's tools read every field back.

use super::bytes::{EncodeError, Reader, Res, Writer, pad8};
use super::error::{BadMatchCode, ErrorCode};
use super::flow_match::Match;
use super::nicira::{NXM_CLASS_NX, NXM_CLASS_OF, NxMatchField, OXM_CLASS_PACKET_REGS};
use super::oxm::{
    Masked, OFPVID_NONE, OFPVID_PRESENT, OXM_CLASS_OPENFLOW_BASIC, OxmError, OxmField, OxmFieldType,
};
use super::v10::{port_from_v10, port_to_v10};

/// `NXM_NX_COOKIE`'s field number (8 bytes; `NXM_NX_MPLS_TTL` shares the
/// number with length 1).
const NX_COOKIE: u8 = 30;
/// `NXM_NX_CONJ_ID`: a conjunctive flow's id, the model's
/// [`Register::ConjId`](super::nicira::Register::ConjId).
pub const NX_CONJ_ID: u8 = 37;
/// `NXM_OF_IN_PORT`.
const OF_IN_PORT: u8 = 0;
/// `NXM_OF_VLAN_TCI`.
const OF_VLAN_TCI: u8 = 4;
/// `NXM_OF_IP_TOS`.
const OF_IP_TOS: u8 = 5;
/// The TCI's CFI bit, which NXM uses for "a VLAN tag is present".
const TCI_CFI: u16 = 0x1000;
const TCI_PCP: u16 = 0xe000;

/// The NXM header of a field whose value is laid out as OXM's, by class:
/// `(class, field, OXM type)`, in the order Open vSwitch writes them.
const SAME_VALUE: &[(u16, u8, OxmFieldType)] = &[
    (NXM_CLASS_OF, 2, OxmFieldType::EthSrc),
    (NXM_CLASS_OF, 1, OxmFieldType::EthDst),
    (NXM_CLASS_OF, 3, OxmFieldType::EthType),
    (NXM_CLASS_OF, 6, OxmFieldType::IpProto),
    (NXM_CLASS_OF, 7, OxmFieldType::Ipv4Src),
    (NXM_CLASS_OF, 8, OxmFieldType::Ipv4Dst),
    (NXM_CLASS_NX, 19, OxmFieldType::Ipv6Src),
    (NXM_CLASS_NX, 20, OxmFieldType::Ipv6Dst),
    (NXM_CLASS_NX, 27, OxmFieldType::Ipv6Flabel),
    (NXM_CLASS_NX, 28, OxmFieldType::IpEcn),
    (NXM_CLASS_OF, 9, OxmFieldType::TcpSrc),
    (NXM_CLASS_OF, 10, OxmFieldType::TcpDst),
    (NXM_CLASS_OF, 11, OxmFieldType::UdpSrc),
    (NXM_CLASS_OF, 12, OxmFieldType::UdpDst),
    (NXM_CLASS_OF, 13, OxmFieldType::Icmpv4Type),
    (NXM_CLASS_OF, 14, OxmFieldType::Icmpv4Code),
    (NXM_CLASS_NX, 21, OxmFieldType::Icmpv6Type),
    (NXM_CLASS_NX, 22, OxmFieldType::Icmpv6Code),
    (NXM_CLASS_NX, 23, OxmFieldType::Ipv6NdTarget),
    (NXM_CLASS_NX, 24, OxmFieldType::Ipv6NdSll),
    (NXM_CLASS_NX, 25, OxmFieldType::Ipv6NdTll),
    (NXM_CLASS_OF, 15, OxmFieldType::ArpOp),
    (NXM_CLASS_OF, 16, OxmFieldType::ArpSpa),
    (NXM_CLASS_OF, 17, OxmFieldType::ArpTpa),
    (NXM_CLASS_NX, 17, OxmFieldType::ArpSha),
    (NXM_CLASS_NX, 18, OxmFieldType::ArpTha),
    (NXM_CLASS_NX, 16, OxmFieldType::TunnelId),
];

/// Where a model field goes when written (lower first): Open vSwitch's
/// order, which puts every field after its prerequisites.
fn rank(ty: OxmFieldType) -> usize {
    use OxmFieldType::*;
    match ty {
        InPort => 0,
        InPhyPort => 1,
        Metadata => 2,
        EthSrc => 3,
        EthDst => 4,
        EthType => 5,
        VlanVid | VlanPcp => 6,
        MplsTc => 7,
        MplsBos => 8,
        MplsLabel => 9,
        PbbIsid => 10,
        IpProto => 11,
        IpDscp => 12,
        IpEcn => 13,
        Ipv4Src => 14,
        Ipv4Dst => 15,
        Ipv6Src => 16,
        Ipv6Dst => 17,
        Ipv6Flabel => 18,
        Ipv6Exthdr => 19,
        TcpSrc => 20,
        TcpDst => 21,
        UdpSrc => 22,
        UdpDst => 23,
        SctpSrc => 24,
        SctpDst => 25,
        Icmpv4Type => 26,
        Icmpv4Code => 27,
        Icmpv6Type => 28,
        Icmpv6Code => 29,
        Ipv6NdTarget => 30,
        Ipv6NdSll => 31,
        Ipv6NdTll => 32,
        ArpOp => 33,
        ArpSpa => 34,
        ArpTpa => 35,
        ArpSha => 36,
        ArpTha => 37,
        TunnelId => 38,
    }
}

/// A decoded `nx_match`: the packet fields, and the flow cookie (value
/// and mask) a request may select by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NxMatch {
    pub match_: Match,
    pub cookie: Option<Masked<u64>>,
}

fn header(class: u16, field: u8, hasmask: bool, len: usize) -> u32 {
    (u32::from(class) << 16) | (u32::from(field) << 9) | (u32::from(hasmask) << 8) | len as u32
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// One TLV, split.
struct Tlv<'a> {
    class: u16,
    field: u8,
    hasmask: bool,
    value: &'a [u8],
    mask: Option<&'a [u8]>,
}

impl Tlv<'_> {
    fn header(&self) -> u32 {
        let n = self.value.len() * if self.hasmask { 2 } else { 1 };
        header(self.class, self.field, self.hasmask, n)
    }

    /// The value and mask as integers of `n` bytes (the length checked).
    fn ints(&self, n: usize) -> Result<(u64, Option<u64>), OxmError> {
        if self.value.len() != n {
            return Err(OxmError::Len);
        }
        let v = be(self.value);
        let m = self.mask.map(be);
        if m.is_some_and(|m| v & !m != 0) {
            return Err(OxmError::Wildcards);
        }
        Ok((v, m))
    }

    /// Reads it as the OXM field `ty` with the same value layout. A mask
    /// on a field the model cannot mask is read as exact if it is all
    /// ones.
    fn as_oxm(&self, ty: OxmFieldType) -> Result<OxmField, OxmError> {
        let mut mask = self.mask;
        if let Some(m) = mask
            && !ty.maskable()
        {
            if m.len() != ty.value_len() || m.iter().any(|&b| b != 0xff) {
                return Err(if m.len() == ty.value_len() {
                    OxmError::Mask
                } else {
                    OxmError::Len
                });
            }
            mask = None;
        }
        let mut tlv = Vec::with_capacity(4 + 2 * self.value.len());
        tlv.extend_from_slice(&ty.header(mask.is_some()).to_be_bytes());
        // Rewrite the length: the OXM decoder checks it is the field's.
        let n = self.value.len() * if mask.is_some() { 2 } else { 1 };
        tlv[3] = u8::try_from(n).map_err(|_| OxmError::Len)?;
        tlv.extend_from_slice(self.value);
        if let Some(m) = mask {
            tlv.extend_from_slice(m);
        }
        let short = ErrorCode::BadMatch(BadMatchCode::BadLen);
        let mut r = Reader::new(&tlv, short);
        OxmField::decode(&mut r)
    }
}

/// What one TLV holds.
enum Entry {
    Fields(Vec<OxmField>),
    Reg(NxMatchField),
    /// The two halves of an IPv6 tunnel address ([`super::nx_tun6`]).
    Regs([NxMatchField; 2]),
    Cookie(Masked<u64>),
}

fn decode_entry(t: &Tlv<'_>) -> Result<Entry, OxmError> {
    let one = |f: OxmField| Ok(Entry::Fields(vec![f]));
    match t.class {
        OXM_CLASS_OPENFLOW_BASIC => {
            let ty = OxmFieldType::from_wire(t.field).ok_or(OxmError::Field)?;
            return one(t.as_oxm(ty)?);
        }
        NXM_CLASS_NX if usize::from(t.field) < super::nicira::N_REGS => return reg(t),
        OXM_CLASS_PACKET_REGS => return reg(t),
        _ => {}
    }
    if t.class == NXM_CLASS_NX
        && ([
            NX_CONJ_ID,
            super::nicira::NX_TUN_SRC,
            super::nicira::NX_TUN_DST,
        ]
        .contains(&t.field)
            || super::nicira::tun_metadata_field(t.field))
    {
        // `conj_id` is pipeline state matched like a register (exact
        // only); the tunnel addresses are read as the codec's registers of
        // those names.
        return reg(t);
    }
    if t.class == NXM_CLASS_NX
        && let Some(halves) = super::nx_tun6::decode_tlv(t.header(), &{
            let mut p = t.value.to_vec();
            p.extend_from_slice(t.mask.unwrap_or_default());
            p
        })
    {
        return halves.map(Entry::Regs);
    }
    if t.class == NXM_CLASS_NX && t.field == NX_COOKIE && t.value.len() == 8 {
        let (v, m) = t.ints(8)?;
        return Ok(Entry::Cookie(Masked { value: v, mask: m }));
    }
    if t.class == NXM_CLASS_OF {
        match t.field {
            OF_IN_PORT => {
                let (v, m) = t.ints(2)?;
                if m.is_some_and(|m| m != 0xffff) {
                    return Err(OxmError::Mask);
                }
                return one(OxmField::InPort(port_from_v10(v as u16)));
            }
            OF_VLAN_TCI => {
                let (v, m) = t.ints(2)?;
                return vlan_from_tci(v as u16, m.unwrap_or(0xffff) as u16).map(Entry::Fields);
            }
            OF_IP_TOS => {
                let (v, m) = t.ints(1)?;
                if m.is_some_and(|m| m != 0xff && m != 0xfc) {
                    return Err(OxmError::Mask);
                }
                if v & 3 != 0 {
                    return Err(OxmError::Value);
                }
                return one(OxmField::IpDscp((v >> 2) as u8));
            }
            _ => {}
        }
    }
    let ty = SAME_VALUE
        .iter()
        .find(|(c, f, _)| *c == t.class && *f == t.field)
        .map(|&(_, _, ty)| ty)
        .ok_or(OxmError::Field)?;
    one(t.as_oxm(ty)?)
}

/// A register TLV.
fn reg(t: &Tlv<'_>) -> Result<Entry, OxmError> {
    let mut p = t.value.to_vec();
    p.extend_from_slice(t.mask.unwrap_or_default());
    match NxMatchField::from_tlv(t.header(), &p) {
        Some(r) => r.map(Entry::Reg),
        None => Err(OxmError::Field),
    }
}

/// The model's VLAN fields for a TCI match (see the module doc).
fn vlan_from_tci(v: u16, m: u16) -> Result<Vec<OxmField>, OxmError> {
    let mut out = Vec::new();
    if m & TCI_CFI != 0 && v & TCI_CFI == 0 {
        // No tag: nothing else of the TCI can match.
        if v != 0 {
            return Err(OxmError::Value);
        }
        out.push(OxmField::VlanVid(Masked::exact(OFPVID_NONE)));
        return Ok(out);
    }
    let vid_mask = m & (TCI_CFI | 0x0fff);
    if vid_mask != 0 {
        let value = v & vid_mask;
        out.push(OxmField::VlanVid(if vid_mask == TCI_CFI | 0x0fff {
            Masked::exact(value)
        } else {
            Masked::new(value, vid_mask)
        }));
    }
    match m & TCI_PCP {
        0 => {}
        TCI_PCP => out.push(OxmField::VlanPcp((v >> 13) as u8)),
        _ => return Err(OxmError::Mask),
    }
    Ok(out)
}

/// Reads an `nx_match` of `match_len` bytes and its padding to 8.
pub(crate) fn decode(r: &mut Reader<'_>, match_len: usize) -> Res<NxMatch> {
    let bad = |c| ErrorCode::BadMatch(c);
    let body = r.take(match_len).map_err(|_| bad(BadMatchCode::BadLen))?;
    r.skip(pad8(match_len) - match_len)
        .map_err(|_| bad(BadMatchCode::BadLen))?;
    decode_fields(body)
}

/// Reads the TLVs of an `nx_match` filling all of `body` (no padding).
pub fn decode_fields(body: &[u8]) -> Res<NxMatch> {
    let code = |e: OxmError| e.match_code();
    let short = ErrorCode::BadMatch(BadMatchCode::BadLen);
    let mut r = Reader::new(body, short);
    let mut fields: Vec<OxmField> = Vec::new();
    let mut regs: Vec<NxMatchField> = Vec::new();
    let mut cookie = None;
    while !r.is_empty() {
        let h = r.u32()?;
        let len = (h & 0xff) as usize;
        let hasmask = h & 0x100 != 0;
        let payload = r.take(len)?;
        if hasmask && !len.is_multiple_of(2) {
            return Err(short);
        }
        let (value, mask) = if hasmask {
            let (v, m) = payload.split_at(len / 2);
            (v, Some(m))
        } else {
            (payload, None)
        };
        let class = (h >> 16) as u16;
        if class == 0xffff {
            // Experimenter OXM fields: none known.
            return Err(code(OxmError::Field));
        }
        let tlv = Tlv {
            class,
            field: (h >> 9) as u8 & 0x7f,
            hasmask,
            value,
            mask,
        };
        match decode_entry(&tlv).map_err(code)? {
            Entry::Fields(fs) => {
                for f in fs {
                    if fields.iter().any(|g| g.field_type() == f.field_type()) {
                        return Err(ErrorCode::BadMatch(BadMatchCode::DupField));
                    }
                    fields.push(f);
                }
            }
            Entry::Reg(reg) => {
                if regs.iter().any(|q| q.reg == reg.reg) {
                    return Err(ErrorCode::BadMatch(BadMatchCode::DupField));
                }
                regs.push(reg);
            }
            Entry::Regs(halves) => {
                for reg in halves {
                    if regs.iter().any(|q| q.reg == reg.reg) {
                        return Err(ErrorCode::BadMatch(BadMatchCode::DupField));
                    }
                    regs.push(reg);
                }
            }
            Entry::Cookie(c) => {
                if cookie.replace(c).is_some() {
                    return Err(ErrorCode::BadMatch(BadMatchCode::DupField));
                }
            }
        }
    }
    let match_ = Match::from_fields(fields)
        .and_then(|m| m.with_registers(regs))
        .map_err(ErrorCode::BadMatch)?;
    Ok(NxMatch { match_, cookie })
}

/// Writes `f` with its NXM header if it has one whose value is OXM's
/// (`NXM_NX_TUN_ID` for `tunnel_id`, ...); false, writing nothing, if not.
pub(crate) fn encode_same_value(f: &OxmField, w: &mut Writer<'_>) -> bool {
    let ty = f.field_type();
    let Some(&(class, field, _)) = SAME_VALUE.iter().find(|e| e.2 == ty) else {
        return false;
    };
    let value = f.value_bytes();
    let mask = f.mask_bytes();
    let n = value.len() * if mask.is_some() { 2 } else { 1 };
    w.u32(header(class, field, mask.is_some(), n));
    w.bytes(&value);
    if let Some(mask) = mask {
        w.bytes(&mask);
    }
    true
}

/// Writes `m` (and a cookie to select by, if any) as an `nx_match`, with no
/// padding; returns its length.
pub(crate) fn encode(
    m: &Match,
    cookie: Option<Masked<u64>>,
    w: &mut Writer<'_>,
) -> Result<usize, EncodeError> {
    let start = w.pos();
    let mut fields: Vec<&OxmField> = m.fields().iter().collect();
    fields.sort_by_key(|f| rank(f.field_type()));
    let mut vlan_done = false;
    for f in fields {
        match *f {
            OxmField::InPort(p) => match port_to_v10(p) {
                Ok(p) => {
                    w.u32(header(NXM_CLASS_OF, OF_IN_PORT, false, 2));
                    w.u16(p);
                }
                // 1.0 cannot number it: NXM takes OXM's 32-bit in_port.
                Err(_) => f.encode(w),
            },
            OxmField::VlanVid(_) | OxmField::VlanPcp(_) => {
                if !vlan_done {
                    vlan_done = true;
                    let (v, mask) = tci_of(m);
                    if mask == 0xffff {
                        w.u32(header(NXM_CLASS_OF, OF_VLAN_TCI, false, 2));
                        w.u16(v);
                    } else {
                        w.u32(header(NXM_CLASS_OF, OF_VLAN_TCI, true, 4));
                        w.u16(v);
                        w.u16(mask);
                    }
                }
            }
            OxmField::IpDscp(d) => {
                w.u32(header(NXM_CLASS_OF, OF_IP_TOS, false, 1));
                w.u8(d << 2);
            }
            _ => {
                if !encode_same_value(f, w) {
                    f.encode(w);
                }
            }
        }
    }
    super::nx_tun6::encode_registers(m.registers(), w);
    if let Some(c) = cookie {
        w.u32(header(
            NXM_CLASS_NX,
            NX_COOKIE,
            c.mask.is_some(),
            8 * if c.mask.is_some() { 2 } else { 1 },
        ));
        w.u64(c.value);
        if let Some(mask) = c.mask {
            w.u64(mask);
        }
    }
    Ok(w.pos() - start)
}

/// Size of `m` as an `nx_match` (no padding).
pub fn encoded_len(m: &Match, cookie: Option<Masked<u64>>) -> usize {
    let mut v = Vec::new();
    encode(m, cookie, &mut Writer::new(&mut v)).map_or(0, |n| n)
}

/// The TCI value and mask of the model's VLAN fields.
fn tci_of(m: &Match) -> (u16, u16) {
    let (mut v, mut mask) = (0u16, 0u16);
    if let Some(OxmField::VlanVid(vid)) = m.get(OxmFieldType::VlanVid) {
        let vm = vid.mask.unwrap_or(OFPVID_PRESENT | 0x0fff) & (OFPVID_PRESENT | 0x0fff);
        if vid.value == OFPVID_NONE && vm == (OFPVID_PRESENT | 0x0fff) {
            // No tag: CFI and VID 0, as Open vSwitch writes VLAN_VID=NONE.
            return (0, TCI_CFI | 0x0fff);
        }
        v |= vid.value & vm;
        mask |= vm;
    }
    if let Some(OxmField::VlanPcp(p)) = m.get(OxmFieldType::VlanPcp) {
        v |= u16::from(*p) << 13;
        mask |= TCI_PCP;
    }
    (v, mask)
}

#[cfg(test)]
#[path = "nxm_tests.rs"]
mod tests;
