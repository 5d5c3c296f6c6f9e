//! Strategies for Nicira actions, valid as the decoder wants them (bit
//! ranges within their registers, loaded values within their bits, notes
//! padded), so that round trips hold.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::openflow::nicira::{FieldRef, NxAction, Register};

fn register() -> impl Strategy<Value = Register> {
    prop_oneof![
        (0u8..16).prop_map(Register::Reg),
        (0u8..8).prop_map(Register::XReg)
    ]
}

/// A register and a bit range within it: (register, offset, bits).
fn range() -> impl Strategy<Value = (Register, u16, u16)> {
    register().prop_flat_map(|r| {
        (0..r.bits()).prop_flat_map(move |ofs| (Just(r), Just(ofs), 1..=r.bits() - ofs))
    })
}

fn low_bits(v: u64, n: u16) -> u64 {
    if n >= 64 { v } else { v & ((1 << n) - 1) }
}

pub(crate) fn nx_action() -> impl Strategy<Value = NxAction> {
    prop_oneof![
        (any::<u16>(), prop::option::of(0u8..0xff), any::<bool>()).prop_map(
            |(in_port, table, with_table)| NxAction::Resubmit {
                in_port,
                table: table.filter(|_| with_table),
                with_table,
            }
        ),
        vec(any::<u8>(), 0..30).prop_filter_map("note", |b| NxAction::note(&b)),
        (range(), any::<u64>()).prop_map(|((r, ofs, n_bits), v)| NxAction::RegLoad {
            dst: FieldRef::reg(r),
            ofs,
            n_bits,
            value: low_bits(v, n_bits),
        }),
        (range(), register()).prop_map(|((src, src_ofs, n_bits), dst)| NxAction::RegMove {
            src: FieldRef::reg(src),
            dst: FieldRef::reg(dst),
            src_ofs,
            // The same bits fit at 0 of any register as wide as `src`.
            dst_ofs: 0,
            n_bits: n_bits.min(dst.bits()),
        }),
        (range(), any::<u16>(), any::<bool>()).prop_map(|((r, ofs, n_bits), max_len, v2)| {
            NxAction::OutputReg {
                src: FieldRef::reg(r),
                ofs,
                n_bits,
                max_len,
                v2,
            }
        }),
        (register(), any::<u64>()).prop_map(|(reg, v)| NxAction::SetReg {
            reg,
            value: low_bits(v, reg.bits()),
        }),
    ]
}
