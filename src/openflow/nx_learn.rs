//! The Nicira `learn` (`NXAST_LEARN`, subtype 16, and `NXAST_LEARN2`,
//! subtype 45, which adds `limit` and `result_dst`), `fin_timeout`
//! (`NXAST_FIN_TIMEOUT`, subtype 19) and `conjunction` (`NXAST_CONJUNCTION`,
//! subtype 34) actions, as Open vSwitch's tools send them.
//!
//! `NXAST_LEARN2` is `NXAST_LEARN`'s 32 bytes, then `limit` (32 bits),
//! `result_dst`'s bit offset (16), two zero bytes, and, with the
//! `write_result` flag, `result_dst`'s 4-byte field header; the specs
//! follow. Open vSwitch sends it when `limit` or `result_dst` is given.
//!
//! `learn` carries the properties of the flow it adds (timeouts, priority,
//! cookie, flags, table, FIN timeouts) and a list of flow-mod specs, each
//! a 16-bit header (source kind in bit 13, destination kind in bits 11-12,
//! `n_bits` in bits 0-9) followed by its source (a field reference and bit
//! offset, or an immediate of `2 * ceil(n_bits / 16)` bytes) and its
//! destination (a field reference and offset for a match or a load, none
//! for an output). The list ends at the action's end or at a zero header;
//! what follows must be zero padding to the next multiple of 8.
//!
//! Decoding refuses what Open vSwitch refuses (unknown flags, table 255, a
//! nonzero pad byte, an immediate output, a bit range outside its field)
//! and, so that every action encodes back to its own bytes, also what it
//! would quietly normalise: reserved header bits, immediate bits above
//! `n_bits`, more zero padding than the alignment needs. It never panics.

use super::FieldRef;
use crate::openflow::bytes::{Reader, Res, Writer, pad8};
use crate::openflow::error::{BadActionCode, ErrorCode};

/// `NX_LEARN_F_SEND_FLOW_REM`: the learned flow has `send_flow_rem`.
pub const LEARN_SEND_FLOW_REM: u16 = 1;
/// `NX_LEARN_F_DELETE_LEARNED`: deleting the learning flow deletes what it
/// learned.
pub const LEARN_DELETE_LEARNED: u16 = 2;
/// `NX_LEARN_F_WRITE_RESULT` (`NXAST_LEARN2` only): `result_dst` gets
/// whether the flow was learned.
pub const LEARN_WRITE_RESULT: u16 = 4;
/// The widest immediate value a spec may carry (the widest field).
pub const MAX_IMMEDIATE_BITS: u16 = 128;

const SRC_IMMEDIATE: u16 = 1 << 13;
const DST_SHIFT: u16 = 11;
const N_BITS_MASK: u16 = 0x3ff;
const RESERVED: u16 = !(SRC_IMMEDIATE | (3 << DST_SHIFT) | N_BITS_MASK);

/// Where a spec's bits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnSrc {
    /// `n_bits` bits of a field of the packet being processed, from `ofs`.
    Field { field: FieldRef, ofs: u16 },
    /// A constant (at most [`MAX_IMMEDIATE_BITS`] bits, none above `n_bits`).
    Immediate(u128),
}

/// Where a spec's bits go in the learned flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnDst {
    /// Matched: `n_bits` bits of `field` from `ofs` in the new flow's match.
    Match { field: FieldRef, ofs: u16 },
    /// A load into `field` at `ofs` among the new flow's actions.
    Load { field: FieldRef, ofs: u16 },
    /// An output to the port in the source's bits (a field source only).
    Output,
}

/// One flow-mod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LearnSpec {
    pub n_bits: u16,
    pub src: LearnSrc,
    pub dst: LearnDst,
}

impl LearnSpec {
    /// `dst=value`: the new flow matches `n_bits` of `dst` on a constant.
    pub fn match_value(n_bits: u16, value: u128, dst: FieldRef) -> LearnSpec {
        LearnSpec {
            n_bits,
            src: LearnSrc::Immediate(value),
            dst: LearnDst::Match { field: dst, ofs: 0 },
        }
    }

    /// `dst=src`: the new flow matches `n_bits` of `dst` on the packet's
    /// `src`.
    pub fn match_field(n_bits: u16, src: FieldRef, dst: FieldRef) -> LearnSpec {
        LearnSpec {
            n_bits,
            src: LearnSrc::Field { field: src, ofs: 0 },
            dst: LearnDst::Match { field: dst, ofs: 0 },
        }
    }

    /// `output:src`: the new flow outputs to the port in `n_bits` of
    /// the packet's `src`.
    pub fn output(n_bits: u16, src: FieldRef) -> LearnSpec {
        LearnSpec {
            n_bits,
            src: LearnSrc::Field { field: src, ofs: 0 },
            dst: LearnDst::Output,
        }
    }

    fn header(&self) -> u16 {
        let src = match self.src {
            LearnSrc::Field { .. } => 0,
            LearnSrc::Immediate(_) => SRC_IMMEDIATE,
        };
        let dst = match self.dst {
            LearnDst::Match { .. } => 0,
            LearnDst::Load { .. } => 1,
            LearnDst::Output => 2,
        };
        src | (dst << DST_SHIFT) | (self.n_bits & N_BITS_MASK)
    }

    /// Bytes of an immediate on the wire.
    fn imm_len(n_bits: u16) -> usize {
        2 * usize::from(n_bits.div_ceil(16))
    }

    fn encoded_len(&self) -> usize {
        2 + match self.src {
            LearnSrc::Field { .. } => 6,
            LearnSrc::Immediate(_) => Self::imm_len(self.n_bits),
        } + match self.dst {
            LearnDst::Match { .. } | LearnDst::Load { .. } => 6,
            LearnDst::Output => 0,
        }
    }
}

/// An `NXAST_LEARN` action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Learn {
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub cookie: u64,
    /// `LEARN_*` bits.
    pub flags: u16,
    pub table_id: u8,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    /// Most flows of the new flow's table and cookie for this learn to add
    /// one (0: no limit).
    pub limit: u32,
    /// The bit (field, offset) that gets 1 if the flow was learned, 0 if
    /// the limit stopped it (the `write_result` flag).
    pub result_dst: Option<(FieldRef, u16)>,
    /// Sent as `NXAST_LEARN2` (as Open vSwitch does when `limit` or
    /// `result_dst` is set; a decoded one keeps its form).
    pub v2: bool,
    pub specs: Vec<LearnSpec>,
}

impl Default for Learn {
    /// What `learn()` means to ovs-ofctl: table 1, priority 0x8000.
    fn default() -> Self {
        Learn {
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            cookie: 0,
            flags: 0,
            table_id: 1,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            limit: 0,
            result_dst: None,
            v2: false,
            specs: Vec::new(),
        }
    }
}

/// Fixed part: type, length, vendor, subtype, then 22 bytes of properties.
const FIXED: usize = 32;
/// `NXAST_LEARN2`'s fixed part: limit, result offset, two zero bytes.
const FIXED2: usize = 40;

/// Open vSwitch's `NXBAC_MUST_BE_ZERO` (`NX1.2+(5)`): a reserved field is
/// not zero.
pub const MUST_BE_ZERO: ErrorCode = ErrorCode::Experimenter {
    exp_type: 5,
    experimenter: super::NX_VENDOR_ID,
};

fn bad<T>(c: BadActionCode) -> Res<T> {
    Err(ErrorCode::BadAction(c))
}

/// Whether `n` bits from `ofs` fit in the field `f` names (an unmasked,
/// nonempty field).
fn fits(f: FieldRef, ofs: u16, n: u16) -> bool {
    f.0 & 0x100 == 0 && f.bits() != 0 && u32::from(ofs) + u32::from(n) <= u32::from(f.bits())
}

impl Learn {
    /// Whether it goes on the wire as `NXAST_LEARN2`.
    pub fn is_v2(&self) -> bool {
        self.v2 || self.limit != 0 || self.result_dst.is_some()
    }

    /// The flags on the wire (`write_result` with `result_dst`).
    fn wire_flags(&self) -> u16 {
        if self.result_dst.is_some() {
            self.flags | LEARN_WRITE_RESULT
        } else {
            self.flags & !LEARN_WRITE_RESULT
        }
    }

    /// Size of the encoded action (a multiple of 8).
    pub fn encoded_len(&self) -> usize {
        let fixed = match (self.is_v2(), self.result_dst) {
            (false, _) => FIXED,
            (true, None) => FIXED2,
            (true, Some(_)) => FIXED2 + 4,
        };
        pad8(fixed + self.specs.iter().map(LearnSpec::encoded_len).sum::<usize>())
    }

    /// Reads the body after the subtype of an `NXAST_LEARN` (or, with
    /// `v2`, `NXAST_LEARN2`) action of `len` bytes.
    pub(crate) fn decode(len: usize, r: &mut Reader<'_>, v2: bool) -> Res<Learn> {
        if len < if v2 { FIXED2 } else { FIXED } {
            return bad(BadActionCode::BadLen);
        }
        let mut l = Learn {
            idle_timeout: r.u16()?,
            hard_timeout: r.u16()?,
            priority: r.u16()?,
            cookie: r.u64()?,
            flags: r.u16()?,
            table_id: r.u8()?,
            ..Learn::default()
        };
        let pad = r.u8()?;
        l.fin_idle_timeout = r.u16()?;
        l.fin_hard_timeout = r.u16()?;
        let known =
            LEARN_SEND_FLOW_REM | LEARN_DELETE_LEARNED | if v2 { LEARN_WRITE_RESULT } else { 0 };
        if pad != 0 || l.flags & !known != 0 || l.table_id == 0xff {
            return bad(BadActionCode::BadArgument);
        }
        let mut used = FIXED;
        if v2 {
            l.v2 = true;
            l.limit = r.u32()?;
            let ofs = r.u16()?;
            if r.u16()? != 0 {
                return Err(MUST_BE_ZERO);
            }
            used = FIXED2;
            if l.flags & LEARN_WRITE_RESULT != 0 {
                if len < FIXED2 + 4 {
                    return bad(BadActionCode::BadLen);
                }
                let field = FieldRef(r.u32()?);
                // One bit of an unmasked field (the module checks that it
                // is writable).
                if !fits(field, ofs, 1) {
                    return bad(BadActionCode::BadSetArgument);
                }
                l.result_dst = Some((field, ofs));
                l.flags &= !LEARN_WRITE_RESULT;
                used += 4;
            } else if ofs != 0 {
                return bad(BadActionCode::BadArgument);
            }
        }
        while r.remaining() >= 2 {
            let h = r.u16()?;
            if h == 0 {
                break;
            }
            used += 2;
            let n_bits = h & N_BITS_MASK;
            let immediate = h & SRC_IMMEDIATE != 0;
            let dst_kind = (h >> DST_SHIFT) & 3;
            if h & RESERVED != 0 || n_bits == 0 || dst_kind == 3 || (immediate && dst_kind == 2) {
                return bad(BadActionCode::BadArgument);
            }
            let spec_len =
                2 + if immediate {
                    LearnSpec::imm_len(n_bits)
                } else {
                    6
                } + if dst_kind == 2 { 0 } else { 6 };
            if r.remaining() < spec_len - 2 {
                return bad(BadActionCode::BadLen);
            }
            let src = if immediate {
                if n_bits > MAX_IMMEDIATE_BITS {
                    return bad(BadActionCode::BadArgument);
                }
                let b = r.take(LearnSpec::imm_len(n_bits))?;
                let v = b.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x));
                if n_bits < 128 && v >> n_bits != 0 {
                    return bad(BadActionCode::BadArgument);
                }
                LearnSrc::Immediate(v)
            } else {
                let field = FieldRef(r.u32()?);
                let ofs = r.u16()?;
                if !fits(field, ofs, n_bits) {
                    return bad(BadActionCode::BadArgument);
                }
                LearnSrc::Field { field, ofs }
            };
            let dst = if dst_kind == 2 {
                LearnDst::Output
            } else {
                let field = FieldRef(r.u32()?);
                let ofs = r.u16()?;
                if !fits(field, ofs, n_bits) {
                    return bad(BadActionCode::BadArgument);
                }
                if dst_kind == 0 {
                    LearnDst::Match { field, ofs }
                } else {
                    LearnDst::Load { field, ofs }
                }
            };
            used += spec_len - 2;
            l.specs.push(LearnSpec { n_bits, src, dst });
        }
        let rest = r.rest();
        if rest.iter().any(|&b| b != 0) {
            return bad(BadActionCode::BadArgument);
        }
        // Only the padding to 8 may follow the specs: anything longer
        // would not encode back to the same bytes.
        if pad8(used) != len {
            return bad(BadActionCode::BadLen);
        }
        Ok(l)
    }

    /// Writes the body after the subtype ([`Learn::is_v2`] says which).
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.idle_timeout);
        w.u16(self.hard_timeout);
        w.u16(self.priority);
        w.u64(self.cookie);
        w.u16(self.wire_flags());
        w.u8(self.table_id);
        w.u8(0);
        w.u16(self.fin_idle_timeout);
        w.u16(self.fin_hard_timeout);
        if self.is_v2() {
            w.u32(self.limit);
            w.u16(self.result_dst.map_or(0, |(_, ofs)| ofs));
            w.u16(0);
            if let Some((field, _)) = self.result_dst {
                w.u32(field.0);
            }
        }
        for s in &self.specs {
            w.u16(s.header());
            match s.src {
                LearnSrc::Field { field, ofs } => {
                    w.u32(field.0);
                    w.u16(ofs);
                }
                LearnSrc::Immediate(v) => {
                    // Wider than 128 bits only if built so: zeros first.
                    let n = LearnSpec::imm_len(s.n_bits);
                    w.zeros(n.saturating_sub(16));
                    w.bytes(&v.to_be_bytes()[16 - n.min(16)..]);
                }
            }
            match s.dst {
                LearnDst::Match { field, ofs } | LearnDst::Load { field, ofs } => {
                    w.u32(field.0);
                    w.u16(ofs);
                }
                LearnDst::Output => {}
            }
        }
    }
}

/// `conjunction(id, k/n)`: this flow is dimension `clause` (1-based, the
/// `k`) of `n_clauses` of conjunctive flow `id` (`NXAST_CONJUNCTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conjunction {
    pub id: u32,
    pub clause: u8,
    pub n_clauses: u8,
}

/// Open vSwitch's `NXBAC_BAD_CONJUNCTION` (`NX1.2+(15)`): a conjunction
/// with k or n out of range, or beside other actions.
pub const BAD_CONJUNCTION: ErrorCode = ErrorCode::Experimenter {
    exp_type: 15,
    experimenter: super::NX_VENDOR_ID,
};

impl Conjunction {
    /// Reads the body after the subtype (the action is 16 bytes); the wire
    /// has `k - 1`.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<Conjunction> {
        let clause = r.u8()?;
        let n_clauses = r.u8()?;
        let id = r.u32()?;
        if !(2..=64).contains(&n_clauses) || clause >= n_clauses {
            return Err(BAD_CONJUNCTION);
        }
        Ok(Conjunction {
            id,
            clause: clause + 1,
            n_clauses,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u8(self.clause.saturating_sub(1));
        w.u8(self.n_clauses);
        w.u32(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dec, enc, unhex};
    use super::super::{NxAction, Register};
    use super::*;

    /// `learn(table=1,hard_timeout=60,NXM_OF_VLAN_TCI[0..11],
    /// NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15])`,
    /// as `ovs-ofctl parse-actions OpenFlow13` (3.1) prints these bytes.
    const MAN_PAGE: &str = "ffff00500000232000100000003c80000000000000000000000001000000000000\
        0c00000802000000000802000000300000040600000000020600000810000000020000000100040000\
        000000000000";

    fn man_page() -> Learn {
        let vlan = FieldRef(0x0000_0802);
        Learn {
            hard_timeout: 60,
            specs: vec![
                LearnSpec::match_field(12, vlan, vlan),
                LearnSpec::match_field(48, FieldRef(0x0000_0406), FieldRef(0x0000_0206)),
                LearnSpec {
                    n_bits: 16,
                    src: LearnSrc::Field {
                        field: FieldRef(0x0000_0002),
                        ofs: 0,
                    },
                    dst: LearnDst::Load {
                        field: FieldRef::reg(Register::Reg(0)),
                        ofs: 0,
                    },
                },
            ],
            ..Learn::default()
        }
    }

    #[test]
    fn man_page_learn_round_trips() {
        let b = unhex(MAN_PAGE);
        let want = NxAction::Learn(Box::new(man_page()));
        assert_eq!(dec(&b), Ok(want.clone()));
        assert_eq!(enc(&want), b);
        assert_eq!(want.encoded_len(), b.len());
    }

    /// Immediates (ovs-ofctl's `learn(table=2,idle_timeout=10,priority=7,
    /// cookie=0x5,send_flow_rem,delete_learned,fin_idle_timeout=3,
    /// fin_hard_timeout=4,dl_type=0x800,load:0x1234->NXM_NX_REG1[],
    /// output:NXM_NX_REG2[0..15])`) and the padding after them.
    #[test]
    fn immediates_flags_and_output_round_trip() {
        let l = Learn {
            idle_timeout: 10,
            priority: 7,
            cookie: 5,
            flags: LEARN_SEND_FLOW_REM | LEARN_DELETE_LEARNED,
            table_id: 2,
            fin_idle_timeout: 3,
            fin_hard_timeout: 4,
            specs: vec![
                LearnSpec::match_value(16, 0x800, FieldRef(0x0000_0602)),
                LearnSpec {
                    n_bits: 32,
                    src: LearnSrc::Immediate(0x1234),
                    dst: LearnDst::Load {
                        field: FieldRef::reg(Register::Reg(1)),
                        ofs: 0,
                    },
                },
                LearnSpec::output(16, FieldRef::reg(Register::Reg(2))),
            ],
            ..Learn::default()
        };
        let a = NxAction::Learn(Box::new(l));
        let b = enc(&a);
        assert_eq!(b.len() % 8, 0);
        assert_eq!(b.len(), a.encoded_len());
        assert_eq!(
            hex(&b),
            "ffff0040000023200010000a000000070000000000000005000302000003000420100800\
             00000602000028200000123400010204000010100001040400000000"
        );
        assert_eq!(dec(&b), Ok(a));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn bad_learns_are_refused() {
        let e = |c| Err(ErrorCode::BadAction(c));
        let good = unhex(MAN_PAGE);
        let patch = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            b
        };
        // Unknown flag, table 255, nonzero pad.
        assert_eq!(dec(&patch(25, 4)), e(BadActionCode::BadArgument));
        assert_eq!(dec(&patch(26, 0xff)), e(BadActionCode::BadArgument));
        assert_eq!(dec(&patch(27, 1)), e(BadActionCode::BadArgument));
        // A reserved header bit; an immediate output (src bit with dst 2).
        assert_eq!(dec(&patch(32, 0x40)), e(BadActionCode::BadArgument));
        assert_eq!(dec(&patch(32, 0x30)), e(BadActionCode::BadArgument));
        // 12 bits from offset 8 of a 16-bit field; a masked field header.
        assert_eq!(dec(&patch(39, 8)), e(BadActionCode::BadArgument));
        assert_eq!(dec(&patch(36, 0x09)), e(BadActionCode::BadArgument));
        // Garbage in the padding.
        assert_eq!(dec(&patch(79, 1)), e(BadActionCode::BadArgument));
        // Cut inside the last spec (length still a multiple of 8).
        let mut short = good[..72].to_vec();
        short[3] = 72;
        assert_eq!(dec(&short), e(BadActionCode::BadLen));
        // Extra zero padding beyond the alignment.
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        long[3] = 88;
        assert_eq!(dec(&long), e(BadActionCode::BadLen));
        // Fixed part cut.
        let mut tiny = good[..24].to_vec();
        tiny[3] = 24;
        assert_eq!(dec(&tiny), e(BadActionCode::BadLen));
    }

    /// `learn(table=2,limit=10,result_dst=reg3[5],fin_idle_timeout=5,
    /// fin_hard_timeout=9,hard_timeout=60,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],
    /// output:NXM_OF_IN_PORT[])` and `learn(table=2,limit=3,
    /// NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[])`: the `NXAST_LEARN2` actions of
    /// the flow mods `ovs-ofctl -O OpenFlow13 add-flow` (3.1) sends.
    const LEARN2_RESULT: &str = "ffff004800002320002d0000003c800000000000000000000004020000050009\
        0000000a000500000001060400300000040600000000020600001010000000020000000000000000";
    const LEARN2_LIMIT: &str = "ffff003800002320002d000000008000000000000000000000000200000000000\
        00000030000000000300000040600000000020600000000";

    #[test]
    fn learn2_round_trips() {
        let mac = LearnSpec::match_field(48, FieldRef(0x0000_0406), FieldRef(0x0000_0206));
        let full = Learn {
            hard_timeout: 60,
            table_id: 2,
            fin_idle_timeout: 5,
            fin_hard_timeout: 9,
            limit: 10,
            result_dst: Some((FieldRef::reg(Register::Reg(3)), 5)),
            v2: true,
            specs: vec![mac, LearnSpec::output(16, FieldRef(0x0000_0002))],
            ..Learn::default()
        };
        let limit = Learn {
            table_id: 2,
            limit: 3,
            v2: true,
            specs: vec![mac],
            ..Learn::default()
        };
        for (h, l) in [(LEARN2_RESULT, full), (LEARN2_LIMIT, limit)] {
            let b = unhex(h);
            let want = NxAction::Learn(Box::new(l.clone()));
            assert_eq!(dec(&b), Ok(want.clone()), "{h}");
            assert_eq!(enc(&want), b);
            assert_eq!(want.encoded_len(), b.len());
            // Built without saying `v2`, a limit or result makes it LEARN2.
            let built = NxAction::Learn(Box::new(Learn { v2: false, ..l }));
            assert_eq!(enc(&built), b);
        }
        // A learn2 with neither stays one, as decoded.
        let mut plain = unhex(LEARN2_LIMIT);
        plain[35] = 0;
        let Ok(NxAction::Learn(l)) = dec(&plain) else {
            panic!("limit 0 decodes")
        };
        assert!(l.v2 && l.limit == 0);
        assert_eq!(enc(&NxAction::Learn(l)), plain);
    }

    #[test]
    fn bad_learn2s_are_refused() {
        let e = |c| Err(ErrorCode::BadAction(c));
        let good = unhex(LEARN2_RESULT);
        let patch = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            b
        };
        // Nonzero pad2 is NXBAC_MUST_BE_ZERO; an unknown flag.
        assert_eq!(dec(&patch(39, 1)), Err(MUST_BE_ZERO));
        assert_eq!(dec(&patch(25, 0x0c)), e(BadActionCode::BadArgument));
        // result_dst's bit outside its field (reg3 has 32 bits).
        assert_eq!(dec(&patch(37, 32)), e(BadActionCode::BadSetArgument));
        // An offset without write_result.
        let mut b = unhex(LEARN2_LIMIT);
        b[37] = 1;
        assert_eq!(dec(&b), e(BadActionCode::BadArgument));
        // Cut inside the fixed part.
        let mut tiny = good[..32].to_vec();
        tiny[3] = 32;
        assert_eq!(dec(&tiny), e(BadActionCode::BadLen));
        // NXAST_LEARN does not take write_result.
        let mut v1 = unhex(MAN_PAGE);
        v1[25] = 4;
        assert_eq!(dec(&v1), e(BadActionCode::BadArgument));
    }

    /// `tcp,actions=fin_timeout(idle_timeout=10,hard_timeout=20)` from
    /// `ovs-ofctl -O OpenFlow13 add-flow` (3.1).
    #[test]
    fn fin_timeout_round_trips() {
        let b = unhex("ffff0010000023200013000a00140000");
        let want = NxAction::FinTimeout { idle: 10, hard: 20 };
        assert_eq!(dec(&b), Ok(want.clone()));
        assert_eq!(enc(&want), b);
        assert_eq!(want.encoded_len(), 16);
        let mut pad = b.clone();
        pad[15] = 1;
        assert_eq!(dec(&pad), Err(MUST_BE_ZERO));
        let mut long = b.clone();
        long.extend_from_slice(&[0; 8]);
        long[3] = 24;
        assert_eq!(dec(&long), Err(ErrorCode::BadAction(BadActionCode::BadLen)));
    }

    /// `conjunction(1234,2/2)` as ovs-ofctl sends it; k and n checked.
    #[test]
    fn conjunction_round_trips_and_checks_k_and_n() {
        let b = unhex("ffff00100000232000220102000004d2");
        let want = NxAction::Conjunction(Conjunction {
            id: 1234,
            clause: 2,
            n_clauses: 2,
        });
        assert_eq!(dec(&b), Ok(want.clone()));
        assert_eq!(enc(&want), b);
        for bad in [
            "ffff00100000232000220201000004d2",
            "ffff00100000232000220202000004d2",
            "ffff00100000232000220041000004d2",
        ] {
            assert_eq!(dec(&unhex(bad)), Err(BAD_CONJUNCTION), "{bad}");
        }
        assert_eq!(
            dec(&unhex("ffff0018000023200022010200000000000004d200000000")),
            Err(ErrorCode::BadAction(BadActionCode::BadLen))
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = (FieldRef, u16)> {
            prop_oneof![
                Just((FieldRef(0x0000_0206), 48)),
                Just((FieldRef(0x0000_0802), 16)),
                Just((FieldRef(0x0001_0004), 32)),
                Just((FieldRef(0x8001_0208), 64)),
                Just((FieldRef(0x0000_0e04), 32)),
            ]
        }

        fn spec() -> impl Strategy<Value = LearnSpec> {
            (field(), field(), 0u8..3, any::<u128>(), any::<u16>()).prop_map(
                |((sf, sw), (df, dw), kind, imm, r)| {
                    let n = 1 + r % sw.min(dw);
                    let sofs = (r >> 7) % (sw - n + 1);
                    let dofs = (r >> 3) % (dw - n + 1);
                    let src = if kind == 2 {
                        LearnSrc::Field {
                            field: sf,
                            ofs: sofs,
                        }
                    } else if r & 1 == 0 {
                        LearnSrc::Immediate(imm & ((1u128 << n) - 1))
                    } else {
                        LearnSrc::Field {
                            field: sf,
                            ofs: sofs,
                        }
                    };
                    let dst = match kind {
                        0 => LearnDst::Match {
                            field: df,
                            ofs: dofs,
                        },
                        1 => LearnDst::Load {
                            field: df,
                            ofs: dofs,
                        },
                        _ => LearnDst::Output,
                    };
                    LearnSpec {
                        n_bits: n,
                        src,
                        dst,
                    }
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn learn_round_trips(
                specs in proptest::collection::vec(spec(), 0..8),
                t in any::<(u16, u16, u16, u64, u8, u16, u16)>(),
                flags in 0u16..4,
                v2 in any::<(bool, u32, Option<(u8, u16)>)>(),
            ) {
                let (two, limit, result) = v2;
                let result_dst = result.map(|(r, ofs)| (FieldRef::reg(Register::Reg(r % 16)), ofs % 32));
                let l = Learn {
                    idle_timeout: t.0,
                    hard_timeout: t.1,
                    priority: t.2,
                    cookie: t.3,
                    flags,
                    table_id: t.4 % 255,
                    fin_idle_timeout: t.5,
                    fin_hard_timeout: t.6,
                    limit,
                    result_dst,
                    v2: two || limit != 0 || result_dst.is_some(),
                    specs,
                };
                let a = NxAction::Learn(Box::new(l));
                let b = enc(&a);
                prop_assert_eq!(b.len(), a.encoded_len());
                prop_assert_eq!(dec(&b), Ok(a));
            }
        }
    }
}
