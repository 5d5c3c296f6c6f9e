//! Nicira extensions (experimenter 0x00002320) as Open vSwitch's tools send
//! them in OpenFlow 1.3 and later: register match fields and the actions
//! that read and write registers or run more tables.
//!
//! Registers are pipeline state, not packet headers: `reg0`..`reg15` (32
//! bits, NXM class `0x0001`, `NXM_NX_REGn`) and `xreg0`..`xreg7` (64 bits,
//! OXM class `0x8001`, `OFPXMC_PACKET_REGS`), where `xregN` is `reg(2N)`
//! (high half) and `reg(2N+1)` (low half), as in Open vSwitch. In a match
//! they are [`NxMatchField`]s, kept apart from the basic fields in
//! [`Match`](super::Match) and written after them.
//!
//! Actions ([`NxAction`]) are `OFPAT_EXPERIMENTER` actions with a 16-bit
//! subtype: `resubmit` (1 and 14), `reg_move` (6), `reg_load` (7), `note`
//! (8), `output_reg` (15 and 32), plus a SET_FIELD whose field is a
//! register, which Open vSwitch writes for `set_field:5->reg3`. Field
//! references ([`FieldRef`]) keep the NXM/OXM header exactly as received,
//! so every action encodes back to its own bytes. In OpenFlow 1.5, where
//! Open vSwitch takes neither `reg_load` nor `reg_move`, a load travels as
//! a masked SET_FIELD and a move as `OFPAT_COPY_FIELD`, both ways. Decoding checks lengths,
//! bit ranges against the field's width, and padding; it never panics.

use super::bytes::{Reader, Res, Writer, pad8};
use super::error::{BadActionCode, ErrorCode};
use super::oxm::OxmError;

#[path = "nx_learn.rs"]
pub mod learn;
pub use learn::{Conjunction, Learn, LearnDst, LearnSpec, LearnSrc};

/// Nicira's experimenter id.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;
/// NXM class of `NXM_OF_*` fields (OpenFlow 1.0 headers).
pub const NXM_CLASS_OF: u16 = 0x0000;
/// NXM class of `NXM_NX_*` fields (registers among them).
pub const NXM_CLASS_NX: u16 = 0x0001;
/// `OFPXMC_PACKET_REGS`: the 64-bit `xreg`s.
pub const OXM_CLASS_PACKET_REGS: u16 = 0x8001;
/// Number of 32-bit registers.
pub const N_REGS: usize = 16;
/// `OFPAT_COPY_FIELD` (OpenFlow 1.5).
pub const OFPAT_COPY_FIELD: u16 = 28;
/// The longest note kept (bytes after the subtype, padding included).
pub const NOTE_MAX: usize = 64;

/// `NXAST_*` subtypes this switch knows.
pub mod subtype {
    pub const RESUBMIT: u16 = 1;
    pub const SET_TUNNEL: u16 = 2;
    pub const SET_TUNNEL64: u16 = 9;
    pub const REG_MOVE: u16 = 6;
    pub const REG_LOAD: u16 = 7;
    pub const NOTE: u16 = 8;
    pub const RESUBMIT_TABLE: u16 = 14;
    pub const OUTPUT_REG: u16 = 15;
    pub const LEARN: u16 = 16;
    pub const FIN_TIMEOUT: u16 = 19;
    pub const LEARN2: u16 = 45;
    pub const OUTPUT_REG2: u16 = 32;
    pub const REG_LOAD2: u16 = 33;
    pub const CONJUNCTION: u16 = 34;
}

/// `NXM_NX_TUN_IPV4_SRC` and `NXM_NX_TUN_IPV4_DST`'s field numbers (class 1).
pub const NX_TUN_SRC: u8 = 31;
pub const NX_TUN_DST: u8 = 32;

/// `NXM_NX_CONJ_ID` (class 1, field 37, 32 bits, not maskable).
pub const CONJ_ID_HEADER: u32 = 0x0001_4a04;

/// A register, as pipeline state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Register {
    /// `reg0`..`reg15`, 32 bits.
    Reg(u8),
    /// `xreg0`..`xreg7`, 64 bits (`reg(2N)` high, `reg(2N+1)` low).
    XReg(u8),
    /// `conj_id` (`NXM_NX_CONJ_ID`): not a register but pipeline state
    /// matched like one, read-only, exact only. It is 0 for every packet
    /// except in the lookup that follows a conjunctive match.
    ConjId,
    /// `tun_src` and `tun_dst` (`NXM_NX_TUN_IPV4_SRC`/`_DST`, class 1,
    /// fields 31 and 32, 32 bits): not registers but the tunnel's outer
    /// IPv4 addresses, packet metadata the flow module keeps in its key.
    /// They are here because the codec reads and writes them exactly as
    /// registers (32-bit NXM class 1 fields in matches, set-fields, loads
    /// and moves); as registers they read 0 and take no writes.
    TunSrc,
    TunDst,
    /// One 64-bit half (`hi`: bits 64..128) of `tun_ipv6_src` or, when
    /// `dst`, `tun_ipv6_dst` (`NXM_NX_TUN_IPV6_SRC`/`_DST`, class 1, fields
    /// 109 and 110, 128 bits): the tunnel's outer IPv6 addresses, key
    /// metadata as `TunSrc` is. A match keeps one such TLV as its two
    /// halves, which the codec splits and joins ([`super::nx_tun6`]); as
    /// registers they read 0 and take no writes.
    TunIpv6 {
        dst: bool,
        hi: bool,
    },
    /// `tun_metadata<idx>` (`NXM_NX_TUN_METADATAn`, class 1, field 40 +
    /// n): a Geneve option's data, through the switch's TLV table
    /// ([`super::tlv`]). Variable length: `len` is the value's bytes as
    /// received or sent (1 to 8 here: mswitch's tables map at most 8 bytes,
    /// see the README). Like the tunnel addresses it is packet metadata in
    /// the flow module's key, and reads 0 and takes no writes as a
    /// register.
    TunMetadata {
        idx: u8,
        len: u8,
    },
}

/// The most bytes a `tun_metadataN` value may have here.
pub const TUN_METADATA_MAX_LEN: u8 = 8;

impl Register {
    /// The register a 32-bit header (class, field, length) names, if any.
    pub fn from_header(header: u32) -> Option<Register> {
        if header == CONJ_ID_HEADER {
            return Some(Register::ConjId);
        }
        let class = (header >> 16) as u16;
        let field = (header >> 9) as u8 & 0x7f;
        let hasmask = header & 0x100 != 0;
        let len = header & 0xff;
        let (reg, width) = match class {
            NXM_CLASS_NX if usize::from(field) < N_REGS => (Register::Reg(field), 4),
            NXM_CLASS_NX if tun_metadata_field(field) => {
                let n = if hasmask { len / 2 } else { len };
                if n == 0
                    || n > u32::from(TUN_METADATA_MAX_LEN)
                    || (hasmask && !len.is_multiple_of(2))
                {
                    return None;
                }
                let reg = Register::TunMetadata {
                    idx: field - super::tlv::NX_TUN_METADATA0,
                    len: n as u8,
                };
                (reg, n)
            }
            NXM_CLASS_NX if field == NX_TUN_SRC => (Register::TunSrc, 4),
            NXM_CLASS_NX if field == NX_TUN_DST => (Register::TunDst, 4),
            OXM_CLASS_PACKET_REGS if field < 8 => (Register::XReg(field), 8),
            _ => return None,
        };
        (len == width * if hasmask { 2 } else { 1 }).then_some(reg)
    }

    /// Whether this is a tunnel address (`tun_src`, `tun_dst`,
    /// `tun_ipv6_src`, `tun_ipv6_dst`).
    pub fn is_tunnel(self) -> bool {
        matches!(
            self,
            Register::TunSrc
                | Register::TunDst
                | Register::TunIpv6 { .. }
                | Register::TunMetadata { .. }
        )
    }

    /// The name Open vSwitch's tools give it (`reg3`, `tun_metadata0`).
    pub fn name(self) -> String {
        match self {
            Register::Reg(n) => format!("reg{n}"),
            Register::XReg(n) => format!("xreg{n}"),
            Register::ConjId => "conj_id".to_owned(),
            Register::TunSrc => "tun_src".to_owned(),
            Register::TunDst => "tun_dst".to_owned(),
            Register::TunIpv6 { dst: false, .. } => "tun_ipv6_src".to_owned(),
            Register::TunIpv6 { dst: true, .. } => "tun_ipv6_dst".to_owned(),
            Register::TunMetadata { idx, .. } => format!("tun_metadata{idx}"),
        }
    }

    /// Width in bits.
    pub fn bits(self) -> u16 {
        match self {
            Register::Reg(_) | Register::ConjId | Register::TunSrc | Register::TunDst => 32,
            Register::XReg(_) | Register::TunIpv6 { .. } => 64,
            Register::TunMetadata { len, .. } => u16::from(len) * 8,
        }
    }

    /// The header of this register, with or without mask.
    pub fn header(self, hasmask: bool) -> u32 {
        let (class, field, n) = match self {
            Register::Reg(i) => (NXM_CLASS_NX, i, 4u32),
            Register::XReg(i) => (OXM_CLASS_PACKET_REGS, i, 8u32),
            Register::ConjId => (NXM_CLASS_NX, 37, 4u32),
            Register::TunSrc => (NXM_CLASS_NX, NX_TUN_SRC, 4u32),
            Register::TunDst => (NXM_CLASS_NX, NX_TUN_DST, 4u32),
            // The whole field's header.
            Register::TunIpv6 { dst, .. } => (NXM_CLASS_NX, super::nx_tun6::field(dst), 16u32),
            Register::TunMetadata { idx, len } => (
                NXM_CLASS_NX,
                super::tlv::NX_TUN_METADATA0 + idx,
                u32::from(len),
            ),
        };
        (u32::from(class) << 16)
            | (u32::from(field & 0x7f) << 9)
            | (u32::from(hasmask) << 8)
            | if hasmask { 2 * n } else { n }
    }

    /// Reads the register from the 16 32-bit registers (`conj_id` reads
    /// as 0, its value outside a conjunctive match's lookup).
    pub fn get(self, regs: &[u32; N_REGS]) -> u64 {
        match self {
            Register::ConjId
            | Register::TunSrc
            | Register::TunDst
            | Register::TunIpv6 { .. }
            | Register::TunMetadata { .. } => 0,
            Register::Reg(i) => u64::from(regs[usize::from(i) % N_REGS]),
            Register::XReg(i) => {
                let h = usize::from(i) * 2 % N_REGS;
                (u64::from(regs[h]) << 32) | u64::from(regs[h + 1])
            }
        }
    }

    /// Writes the register into the 16 32-bit registers (`conj_id` is
    /// read-only: nothing).
    pub fn set(self, regs: &mut [u32; N_REGS], v: u64) {
        match self {
            Register::ConjId
            | Register::TunSrc
            | Register::TunDst
            | Register::TunIpv6 { .. }
            | Register::TunMetadata { .. } => {}
            Register::Reg(i) => regs[usize::from(i) % N_REGS] = v as u32,
            Register::XReg(i) => {
                let h = usize::from(i) * 2 % N_REGS;
                regs[h] = (v >> 32) as u32;
                regs[h + 1] = v as u32;
            }
        }
    }
}

/// Whether an NXM class 1 field number is a `tun_metadataN`'s.
pub fn tun_metadata_field(field: u8) -> bool {
    (super::tlv::NX_TUN_METADATA0..super::tlv::NX_TUN_METADATA0 + super::tlv::MAX_FIELDS as u8)
        .contains(&field)
}

/// A register in a match, with an optional mask (1-bits are matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NxMatchField {
    pub reg: Register,
    pub value: u64,
    pub mask: Option<u64>,
}

impl NxMatchField {
    /// Size of the encoded TLV.
    pub fn encoded_len(&self) -> usize {
        let n = usize::from(self.reg.bits() / 8);
        4 + if self.mask.is_some() { 2 * n } else { n }
    }

    /// The bits of the register the match looks at.
    pub fn mask_or_all(&self) -> u64 {
        let bits = self.reg.bits();
        let all = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        self.mask.unwrap_or(all) & all
    }

    /// Reads one register TLV whose header is `header` and payload `p`
    /// (`None`: not a register).
    pub(crate) fn from_tlv(header: u32, p: &[u8]) -> Option<Result<NxMatchField, OxmError>> {
        let class = (header >> 16) as u16;
        if class != NXM_CLASS_NX && class != OXM_CLASS_PACKET_REGS {
            return None;
        }
        let Some(reg) = Register::from_header(header) else {
            let field = (header >> 9) & 0x7f;
            let known_field = match class {
                NXM_CLASS_NX => {
                    field < N_REGS as u32
                        || tun_metadata_field(field as u8)
                        || field == 37
                        || field == u32::from(NX_TUN_SRC)
                        || field == u32::from(NX_TUN_DST)
                }
                _ => field < 8,
            };
            return Some(Err(
                if class == NXM_CLASS_NX && field == 37 && header & 0x100 != 0 {
                    OxmError::Mask
                } else if known_field {
                    OxmError::Len
                } else {
                    OxmError::Field
                },
            ));
        };
        let n = usize::from(reg.bits() / 8);
        let value = be(&p[..n.min(p.len())]);
        let mask = (header & 0x100 != 0).then(|| be(p.get(n..).unwrap_or_default()));
        if mask.is_some_and(|m| value & !m != 0) {
            return Some(Err(OxmError::Wildcards));
        }
        Some(Ok(NxMatchField { reg, value, mask }))
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.reg.header(self.mask.is_some()));
        let n = usize::from(self.reg.bits() / 8);
        w.bytes(&self.value.to_be_bytes()[8 - n..]);
        if let Some(m) = self.mask {
            w.bytes(&m.to_be_bytes()[8 - n..]);
        }
    }
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// A field named by a `reg_move`, `reg_load` or `output_reg`: its NXM/OXM
/// header as received (never an experimenter field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldRef(pub u32);

impl FieldRef {
    pub fn reg(r: Register) -> FieldRef {
        FieldRef(r.header(false))
    }

    /// The field's width in bits, from the header's length.
    pub fn bits(self) -> u16 {
        let len = (self.0 & 0xff) as u16;
        if self.0 & 0x100 != 0 {
            len / 2 * 8
        } else {
            len * 8
        }
    }

    /// The `tun_metadataN` this names, if any, whatever its length (Open
    /// vSwitch's tools name one in a move with its largest, 124 bytes).
    pub fn tun_metadata(self) -> Option<u8> {
        let field = (self.0 >> 9) as u8 & 0x7f;
        ((self.0 >> 16) as u16 == NXM_CLASS_NX && tun_metadata_field(field))
            .then(|| field - super::tlv::NX_TUN_METADATA0)
    }

    /// The register this names, if it is one.
    pub fn register(self) -> Option<Register> {
        if self.0 & 0x100 != 0 {
            return None;
        }
        Register::from_header(self.0)
    }
}

/// `ofs_nbits`: `ofs << 6 | (n_bits - 1)`.
fn split_ofs_nbits(v: u16) -> (u16, u16) {
    (v >> 6, (v & 0x3f) + 1)
}

fn join_ofs_nbits(ofs: u16, nbits: u16) -> u16 {
    (ofs << 6) | (nbits.saturating_sub(1) & 0x3f)
}

/// One Nicira action (or a SET_FIELD of a register).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NxAction {
    /// Look up `table` (`None`: this one) as if the packet came in on
    /// `in_port` (`0xfff8`, `OFPP_IN_PORT`: its own), run the actions found
    /// and continue. `with_table` says whether it was `NXAST_RESUBMIT_TABLE`.
    Resubmit {
        in_port: u16,
        table: Option<u8>,
        with_table: bool,
    },
    /// `NXAST_NOTE`: opaque bytes, kept for flow stats.
    Note { len: u8, bytes: [u8; NOTE_MAX] },
    /// `NXAST_REG_LOAD`: write `value` into `n_bits` bits of `dst` from `ofs`.
    RegLoad {
        dst: FieldRef,
        ofs: u16,
        n_bits: u16,
        value: u64,
    },
    /// `NXAST_REG_MOVE`: copy `n_bits` bits of `src` from `src_ofs` to `dst`
    /// at `dst_ofs`.
    RegMove {
        src: FieldRef,
        dst: FieldRef,
        src_ofs: u16,
        dst_ofs: u16,
        n_bits: u16,
    },
    /// `NXAST_OUTPUT_REG` (or `OUTPUT_REG2` when `v2`): output to the port
    /// in `n_bits` bits of `src` from `ofs`, read when the action runs.
    OutputReg {
        src: FieldRef,
        ofs: u16,
        n_bits: u16,
        max_len: u16,
        v2: bool,
    },
    /// `OFPAT_SET_FIELD` of a whole register.
    SetReg { reg: Register, value: u64 },
    /// `OFPAT_SET_FIELD` of a whole `tun_ipv6_dst` (`dst`) or
    /// `tun_ipv6_src` ([`super::nx_tun6`]).
    SetTunIpv6 { dst: bool, addr: std::net::Ipv6Addr },
    /// `NXAST_SET_TUNNEL` (32-bit `tun_id`) or, when `wide`,
    /// `NXAST_SET_TUNNEL64`: `set_tunnel:N`, `set_tunnel64:N`.
    SetTunnel { tun_id: u64, wide: bool },
    /// `NXAST_LEARN` (or `NXAST_LEARN2`): add or refresh a flow built from
    /// the packet.
    Learn(Box<Learn>),
    /// `NXAST_FIN_TIMEOUT`: a TCP packet with FIN or RST that passes the
    /// flow shortens its idle and hard timeouts to these (0: unchanged)
    /// if they are longer.
    FinTimeout { idle: u16, hard: u16 },
    /// `NXAST_CONJUNCTION`: one dimension of a conjunctive match.
    Conjunction(Conjunction),
}

impl NxAction {
    /// `resubmit(,table)` as ovs-ofctl sends it.
    pub fn resubmit_table(table: u8) -> NxAction {
        NxAction::Resubmit {
            in_port: 0xfff8,
            table: Some(table),
            with_table: true,
        }
    }

    /// A note of these bytes, if short enough.
    pub fn note(b: &[u8]) -> Option<NxAction> {
        // The note starts 10 bytes into a multiple of 8.
        let len = pad8(10 + b.len()) - 10;
        if len > NOTE_MAX {
            return None;
        }
        let mut bytes = [0; NOTE_MAX];
        bytes[..b.len()].copy_from_slice(b);
        Some(NxAction::Note {
            len: len as u8,
            bytes,
        })
    }

    /// Size of the encoded action.
    pub fn encoded_len(&self) -> usize {
        match self {
            NxAction::Resubmit { .. } => 16,
            NxAction::Note { len, .. } => 10 + usize::from(*len),
            NxAction::RegLoad { .. } | NxAction::RegMove { .. } | NxAction::OutputReg { .. } => 24,
            NxAction::SetReg { reg, .. } => pad8(8 + usize::from(reg.bits() / 8)),
            NxAction::SetTunIpv6 { .. } => 24,
            NxAction::Learn(l) => l.encoded_len(),
            NxAction::Conjunction(_) | NxAction::FinTimeout { .. } => 16,
            NxAction::SetTunnel { wide: false, .. } => 16,
            NxAction::SetTunnel { wide: true, .. } => 24,
        }
    }

    /// Reads the body of an experimenter action of `len` bytes; `r` is
    /// after the 4-byte action header.
    pub(crate) fn decode_experimenter(len: usize, r: &mut Reader<'_>) -> Res<NxAction> {
        let bad = |c| ErrorCode::BadAction(c);
        let vendor = r.u32()?;
        if vendor != NX_VENDOR_ID {
            return Err(bad(BadActionCode::BadExperimenter));
        }
        let st = r.u16()?;
        let fixed = match st {
            subtype::RESUBMIT
            | subtype::RESUBMIT_TABLE
            | subtype::CONJUNCTION
            | subtype::FIN_TIMEOUT
            | subtype::SET_TUNNEL => Some(16),
            subtype::SET_TUNNEL64 => Some(24),
            subtype::REG_MOVE | subtype::REG_LOAD | subtype::OUTPUT_REG | subtype::OUTPUT_REG2 => {
                Some(24)
            }
            subtype::NOTE | subtype::LEARN | subtype::LEARN2 | subtype::REG_LOAD2 => None,
            _ => return Err(bad(BadActionCode::BadExpType)),
        };
        if fixed.is_some_and(|n| n != len) {
            return Err(bad(BadActionCode::BadLen));
        }
        let range = |f: FieldRef, ofs: u16, n: u16| -> Res<()> {
            if f.0 & 0x100 != 0
                || f.bits() == 0
                || u32::from(ofs) + u32::from(n) > u32::from(f.bits())
            {
                Err(bad(BadActionCode::BadArgument))
            } else {
                Ok(())
            }
        };
        Ok(match st {
            subtype::LEARN | subtype::LEARN2 => {
                NxAction::Learn(Box::new(Learn::decode(len, r, st == subtype::LEARN2)?))
            }
            subtype::FIN_TIMEOUT => {
                let idle = r.u16()?;
                let hard = r.u16()?;
                // Open vSwitch ignores the pad; refusing it keeps every
                // action encoding back to its own bytes.
                if r.u16()? != 0 {
                    return Err(learn::MUST_BE_ZERO);
                }
                NxAction::FinTimeout { idle, hard }
            }
            subtype::CONJUNCTION => NxAction::Conjunction(Conjunction::decode(r)?),
            subtype::SET_TUNNEL | subtype::SET_TUNNEL64 => {
                let wide = st == subtype::SET_TUNNEL64;
                // Padding, then the key (Open vSwitch ignores the pad;
                // refusing it keeps the action encoding back to its bytes).
                if r.take(if wide { 6 } else { 2 })?.iter().any(|&b| b != 0) {
                    return Err(learn::MUST_BE_ZERO);
                }
                let tun_id = if wide { r.u64()? } else { u64::from(r.u32()?) };
                NxAction::SetTunnel { tun_id, wide }
            }
            subtype::RESUBMIT | subtype::RESUBMIT_TABLE => {
                let in_port = r.u16()?;
                let table = r.u8()?;
                r.skip(3)?;
                let with_table = st == subtype::RESUBMIT_TABLE;
                NxAction::Resubmit {
                    in_port,
                    table: (with_table && table != 0xff).then_some(table),
                    with_table,
                }
            }
            subtype::NOTE => {
                let b = r.rest();
                if b.len() > NOTE_MAX {
                    return Err(bad(BadActionCode::BadLen));
                }
                let mut bytes = [0; NOTE_MAX];
                bytes[..b.len()].copy_from_slice(b);
                NxAction::Note {
                    len: b.len() as u8,
                    bytes,
                }
            }
            // A set-field (masked or not) in an NXM entry: what Open
            // vSwitch's tools send for `load` into a variable-length
            // field (`tun_metadataN`).
            subtype::REG_LOAD2 => NxAction::decode_set_entry(10, len, r)?,
            subtype::REG_LOAD => {
                let (ofs, n_bits) = split_ofs_nbits(r.u16()?);
                let dst = FieldRef(r.u32()?);
                let value = r.u64()?;
                range(dst, ofs, n_bits)?;
                if n_bits < 64 && value >> n_bits != 0 {
                    return Err(bad(BadActionCode::BadArgument));
                }
                NxAction::RegLoad {
                    dst,
                    ofs,
                    n_bits,
                    value,
                }
            }
            subtype::REG_MOVE => {
                let n_bits = r.u16()?;
                let src_ofs = r.u16()?;
                let dst_ofs = r.u16()?;
                let src = FieldRef(r.u32()?);
                let dst = FieldRef(r.u32()?);
                if n_bits == 0 {
                    return Err(bad(BadActionCode::BadArgument));
                }
                range(src, src_ofs, n_bits)?;
                range(dst, dst_ofs, n_bits)?;
                NxAction::RegMove {
                    src,
                    dst,
                    src_ofs,
                    dst_ofs,
                    n_bits,
                }
            }
            _ => {
                let (ofs, n_bits) = split_ofs_nbits(r.u16()?);
                let v2 = st == subtype::OUTPUT_REG2;
                let (src, max_len) = if v2 {
                    let m = r.u16()?;
                    (FieldRef(r.u32()?), m)
                } else {
                    (FieldRef(r.u32()?), r.u16()?)
                };
                if r.rest().iter().any(|&b| b != 0) {
                    return Err(bad(BadActionCode::BadArgument));
                }
                range(src, ofs, n_bits)?;
                NxAction::OutputReg {
                    src,
                    ofs,
                    n_bits,
                    max_len,
                    v2,
                }
            }
        })
    }

    /// Reads an OpenFlow 1.5 `OFPAT_COPY_FIELD` (Open vSwitch's `move`
    /// there) of `len` bytes, `r` after the action header.
    pub(crate) fn decode_copy_field(len: usize, r: &mut Reader<'_>) -> Res<NxAction> {
        let bad = |c| ErrorCode::BadAction(c);
        if len != 24 {
            return Err(bad(BadActionCode::BadLen));
        }
        let n_bits = r.u16()?;
        let src_ofs = r.u16()?;
        let dst_ofs = r.u16()?;
        r.skip(2)?;
        let src = FieldRef(r.u32()?);
        let dst = FieldRef(r.u32()?);
        if r.rest().iter().any(|&b| b != 0) {
            return Err(bad(BadActionCode::BadArgument));
        }
        let fits = |f: FieldRef, ofs: u16| {
            f.0 & 0x100 == 0 && u32::from(ofs) + u32::from(n_bits) <= u32::from(f.bits())
        };
        if n_bits == 0 || !fits(src, src_ofs) || !fits(dst, dst_ofs) {
            return Err(bad(BadActionCode::BadArgument));
        }
        Ok(NxAction::RegMove {
            src,
            dst,
            src_ofs,
            dst_ofs,
            n_bits,
        })
    }

    /// Reads a masked SET_FIELD of a register (OpenFlow 1.5's form of
    /// `reg_load`), `r` after the action header; the mask must be one run
    /// of bits.
    pub(crate) fn decode_masked_set(len: usize, r: &mut Reader<'_>) -> Res<NxAction> {
        NxAction::decode_set_entry(4, len, r)
    }

    /// A register entry (header, value, and mask if it has one) after
    /// `before` bytes of an action of `len` bytes, as a load.
    fn decode_set_entry(before: usize, len: usize, r: &mut Reader<'_>) -> Res<NxAction> {
        let bad = |c| ErrorCode::BadAction(c);
        let header = r.u32()?;
        if let Some(dst) = super::nx_tun6::names(header) {
            let body = r.take(32).map_err(|_| bad(BadActionCode::BadSetLen))?;
            if len != pad8(4 + 4 + 32) || header & 0x1ff != 0x100 | 32 {
                return Err(bad(BadActionCode::BadSetLen));
            }
            r.rest();
            return super::nx_tun6::decode_masked_set(dst, body).map_err(bad);
        }
        let reg = Register::from_header(header).ok_or(bad(BadActionCode::BadSetArgument))?;
        let n = usize::from(reg.bits() / 8);
        let masked = header & 0x100 != 0;
        let body = r
            .take(if masked { 2 * n } else { n })
            .map_err(|_| bad(BadActionCode::BadSetLen))?;
        if len != pad8(before + 4 + body.len()) {
            return Err(bad(BadActionCode::BadSetLen));
        }
        r.rest();
        let all = if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        let value = be(&body[..n]);
        let mask = if masked { be(&body[n..]) } else { all };
        if mask == 0 {
            // (An all-zero mask writes nothing, and has no bit range.)
            return Err(bad(BadActionCode::BadSetArgument));
        }
        let ofs = mask.trailing_zeros() as u16;
        let n_bits = mask.count_ones() as u16;
        let run = if n_bits >= 64 {
            u64::MAX
        } else {
            ((1u64 << n_bits) - 1) << ofs
        };
        if run != mask || value & !mask != 0 {
            return Err(bad(BadActionCode::BadSetArgument));
        }
        Ok(NxAction::RegLoad {
            dst: FieldRef::reg(reg),
            ofs,
            n_bits,
            value: value >> ofs,
        })
    }

    /// Writes the action, header included.
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        if let NxAction::RegMove {
            src,
            dst,
            src_ofs,
            dst_ofs,
            n_bits,
        } = *self
            && w.version() >= 0x06
        {
            // OpenFlow 1.5 has its own copy action; Open vSwitch takes no
            // reg_move there.
            w.u16(OFPAT_COPY_FIELD);
            w.u16(0);
            w.u16(n_bits);
            w.u16(src_ofs);
            w.u16(dst_ofs);
            w.zeros(2);
            w.u32(src.0);
            w.u32(dst.0);
            w.pad_to_8(start);
            w.patch_len(start + 2, start, "action");
            return;
        }
        if let NxAction::RegLoad {
            dst,
            ofs,
            n_bits,
            value,
        } = *self
            && w.version() >= 0x06
            && let Some(d) = super::nx_tun6::names(dst.0)
        {
            // Part of an IPv6 tunnel address: a masked SET_FIELD of it.
            super::nx_tun6::encode_masked_set(d, ofs, n_bits, value, w);
            w.patch_len(start + 2, start, "action");
            return;
        }
        if let NxAction::RegLoad {
            dst,
            ofs,
            n_bits,
            value,
        } = *self
            && w.version() >= 0x06
            && let Some(reg) = dst.register()
        {
            // OpenFlow 1.5 sets masked fields, and Open vSwitch takes no
            // reg_load there.
            let n = usize::from(reg.bits() / 8);
            let shl = |v: u64| v.checked_shl(u32::from(ofs)).unwrap_or(0);
            let mask = shl(if n_bits >= 64 {
                u64::MAX
            } else {
                (1u64 << n_bits) - 1
            });
            w.u16(25); // OFPAT_SET_FIELD
            w.u16(0);
            w.u32(reg.header(true));
            w.bytes(&(shl(value) & mask).to_be_bytes()[8 - n..]);
            w.bytes(&mask.to_be_bytes()[8 - n..]);
            w.pad_to_8(start);
            w.patch_len(start + 2, start, "action");
            return;
        }
        if let NxAction::SetTunIpv6 { dst, addr } = *self {
            w.u16(25); // OFPAT_SET_FIELD
            w.u16(0);
            w.u32(super::nx_tun6::header(dst, false));
            w.bytes(&addr.octets());
            w.patch_len(start + 2, start, "action");
            return;
        }
        if let NxAction::SetReg { reg, value } = *self {
            w.u16(25); // OFPAT_SET_FIELD
            w.u16(0);
            w.u32(reg.header(false));
            let n = usize::from(reg.bits() / 8);
            w.bytes(&value.to_be_bytes()[8 - n..]);
            w.pad_to_8(start);
            w.patch_len(start + 2, start, "action");
            return;
        }
        w.u16(0xffff);
        w.u16(0);
        w.u32(NX_VENDOR_ID);
        match *self {
            NxAction::Learn(ref l) => {
                w.u16(if l.is_v2() {
                    subtype::LEARN2
                } else {
                    subtype::LEARN
                });
                l.encode(w);
            }
            NxAction::FinTimeout { idle, hard } => {
                w.u16(subtype::FIN_TIMEOUT);
                w.u16(idle);
                w.u16(hard);
                w.u16(0);
            }
            NxAction::Conjunction(c) => {
                w.u16(subtype::CONJUNCTION);
                c.encode(w);
            }
            NxAction::Resubmit {
                in_port,
                table,
                with_table,
            } => {
                w.u16(if with_table {
                    subtype::RESUBMIT_TABLE
                } else {
                    subtype::RESUBMIT
                });
                w.u16(in_port);
                w.u8(table.unwrap_or(0xff));
                w.zeros(3);
            }
            NxAction::Note { len, bytes } => {
                w.u16(subtype::NOTE);
                w.bytes(&bytes[..usize::from(len)]);
            }
            NxAction::RegLoad {
                dst,
                ofs,
                n_bits,
                value,
            } => {
                w.u16(subtype::REG_LOAD);
                w.u16(join_ofs_nbits(ofs, n_bits));
                w.u32(dst.0);
                w.u64(value);
            }
            NxAction::RegMove {
                src,
                dst,
                src_ofs,
                dst_ofs,
                n_bits,
            } => {
                w.u16(subtype::REG_MOVE);
                w.u16(n_bits);
                w.u16(src_ofs);
                w.u16(dst_ofs);
                w.u32(src.0);
                w.u32(dst.0);
            }
            NxAction::OutputReg {
                src,
                ofs,
                n_bits,
                max_len,
                v2,
            } => {
                if v2 {
                    w.u16(subtype::OUTPUT_REG2);
                    w.u16(join_ofs_nbits(ofs, n_bits));
                    w.u16(max_len);
                    w.u32(src.0);
                } else {
                    w.u16(subtype::OUTPUT_REG);
                    w.u16(join_ofs_nbits(ofs, n_bits));
                    w.u32(src.0);
                    w.u16(max_len);
                }
            }
            NxAction::SetTunnel { tun_id, wide } => {
                if wide {
                    w.u16(subtype::SET_TUNNEL64);
                    w.zeros(6);
                    w.u64(tun_id);
                } else {
                    w.u16(subtype::SET_TUNNEL);
                    w.zeros(2);
                    w.u32(tun_id as u32);
                }
            }
            NxAction::SetReg { .. } | NxAction::SetTunIpv6 { .. } => {}
        }
        w.pad_to_8(start);
        w.patch_len(start + 2, start, "action");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    pub(super) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(super) fn dec(b: &[u8]) -> Res<NxAction> {
        let mut r = Reader::new(&b[4..], SHORT);
        NxAction::decode_experimenter(b.len(), &mut r)
    }

    pub(super) fn enc(a: &NxAction) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        a.encode(&mut w);
        w.finish().unwrap();
        v
    }

    #[test]
    fn set_tunnel_and_tunnel_addresses() {
        // nx_action_set_tunnel (16 bytes) and nx_action_set_tunnel64 (24).
        for (hex, want) in [
            (
                "ffff00100000232000020000000001c8",
                NxAction::SetTunnel {
                    tun_id: 456,
                    wide: false,
                },
            ),
            (
                "ffff0018000023200009000000000000000001000000002a",
                NxAction::SetTunnel {
                    tun_id: (1 << 40) | 42,
                    wide: true,
                },
            ),
        ] {
            let b = unhex(hex);
            assert_eq!(enc(&want), b);
            assert_eq!(want.encoded_len(), b.len());
            assert_eq!(dec(&b), Ok(want), "{hex}");
        }
        // Nonzero padding, a short action.
        assert!(dec(&unhex("ffff00100000232000020100000001c8")).is_err());
        assert!(dec(&unhex("ffff0010000023200009000000000000")).is_err());
        // NXM_NX_TUN_IPV4_SRC/DST read as the tunnel "registers", 32 bits,
        // masked or not; another length is not them.
        assert_eq!(Register::from_header(0x0001_3e04), Some(Register::TunSrc));
        assert_eq!(Register::from_header(0x0001_4108), Some(Register::TunDst));
        assert_eq!(Register::from_header(0x0001_3e08), None);
        assert_eq!(Register::TunDst.header(false), 0x0001_4004);
        assert!(Register::TunSrc.is_tunnel() && !Register::Reg(1).is_tunnel());
    }

    /// Actions as `ovs-ofctl -O OpenFlow13 add-flow` (3.1) sent them.
    #[test]
    fn ovs_ofctl_bytes_round_trip() {
        let reg0 = FieldRef::reg(Register::Reg(0));
        for (hex, want) in [
            (
                "ffff0018000023200007001f000100040000000000000005",
                NxAction::RegLoad {
                    dst: reg0,
                    ofs: 0,
                    n_bits: 32,
                    value: 5,
                },
            ),
            (
                "ffff001000002320000efff801000000",
                NxAction::resubmit_table(1),
            ),
            (
                "ffff001000002320000e0003ff000000",
                NxAction::Resubmit {
                    in_port: 3,
                    table: None,
                    with_table: true,
                },
            ),
            (
                "ffff001800002320000600200000000000000406", /* eth_src -> reg0 */
                NxAction::RegMove {
                    src: FieldRef(0x0000_0406),
                    dst: reg0,
                    src_ofs: 0,
                    dst_ofs: 0,
                    n_bits: 32,
                },
            ),
            (
                "ffff001800002320000f000f00010204ffff000000000000",
                NxAction::OutputReg {
                    src: FieldRef::reg(Register::Reg(1)),
                    ofs: 0,
                    n_bits: 16,
                    max_len: 0xffff,
                    v2: false,
                },
            ),
            (
                "ffff00180000232000070103000104040000000000000003",
                NxAction::RegLoad {
                    dst: FieldRef::reg(Register::Reg(2)),
                    ofs: 4,
                    n_bits: 4,
                    value: 3,
                },
            ),
        ] {
            let mut b = unhex(hex);
            if b.len() == 20 {
                b.extend_from_slice(&[0, 1, 0, 4]);
            }
            assert_eq!(dec(&b), Ok(want.clone()), "{hex}");
            assert_eq!(enc(&want), b, "{hex}");
        }
        let note = unhex("ffff0010000023200008010203000000");
        let n = dec(&note).unwrap();
        assert_eq!(n, NxAction::note(&[1, 2, 3]).unwrap());
        assert_eq!(enc(&n), note);
        let set = NxAction::SetReg {
            reg: Register::Reg(3),
            value: 5,
        };
        assert_eq!(enc(&set), unhex("00190010000106040000000500000000"));
        let xset = NxAction::SetReg {
            reg: Register::XReg(3),
            value: 7,
        };
        assert_eq!(enc(&xset), unhex("00190010800106080000000000000007"));
    }

    #[test]
    fn bad_actions_are_refused() {
        let e = |c| Err(ErrorCode::BadAction(c));
        // Another vendor, an unknown subtype, a short resubmit.
        assert_eq!(
            dec(&unhex("ffff001000002321000efff801000000")),
            e(BadActionCode::BadExperimenter)
        );
        assert_eq!(
            dec(&unhex("ffff0010000023200063000000000000")),
            e(BadActionCode::BadExpType)
        );
        assert_eq!(
            dec(&unhex("ffff001800002320000efff8010000000000000000000000")),
            e(BadActionCode::BadLen)
        );
        // load of 8 bits past a 32-bit register; a value wider than n_bits.
        assert_eq!(
            dec(&unhex("ffff00180000232000070647000100040000000000000005")),
            e(BadActionCode::BadArgument)
        );
        assert_eq!(
            dec(&unhex("ffff0018000023200007000000010004000000000000000f")),
            e(BadActionCode::BadArgument)
        );
    }

    #[test]
    fn registers_alias_as_in_open_vswitch() {
        let mut regs = [0; N_REGS];
        Register::XReg(1).set(&mut regs, 0x1_0000_0002);
        assert_eq!(regs[2], 1);
        assert_eq!(regs[3], 2);
        assert_eq!(Register::Reg(3).get(&regs), 2);
        assert_eq!(Register::from_header(0x0001_0108), Some(Register::Reg(0)));
        assert_eq!(Register::from_header(0x8001_0208), Some(Register::XReg(1)));
        assert_eq!(Register::from_header(0x0001_2004), None);
        assert_eq!(FieldRef(0x8001_0208).register(), Some(Register::XReg(1)));
    }
}
