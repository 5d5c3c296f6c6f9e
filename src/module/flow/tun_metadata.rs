//! `tun_metadata0`..`tun_metadata63` in the pipeline: Geneve options the
//! switch's TLV table maps ([`crate::port::tunnel::geneve_opts`]).
//!
//! They are key words 14 (bit N: `tun_metadataN` is present) and 15 (the
//! fields' data, where the table placed each). A rule that matches a field
//! matches its presence too, whatever the mask, so an absent option never
//! matches, not even `tun_metadataN=0` (as in Open vSwitch, where the
//! match sets the field's bit in `present.map`); a set-field, load or move
//! into a field makes it present. A field the table does not map is refused
//! in a flow with `NXFMFC_INVALID_TLV_FIELD`; a value wider than the mapped
//! length with `OFPBMC_BAD_LEN` (match) or `OFPBAC_BAD_SET_LEN` (action).
//! The table cannot unmap a field a flow uses (`NXTTMFC_INVALID_TLV_DEL`).
//!
//! Receive: a tunnel batch's packets that came with options get their
//! fields here, once per packet, before the lookup ([`resolve`]); a packet
//! with a critical option the table does not map (or a mapped option of
//! another length) is dropped and counted (`tun_metadata_drops`). A
//! packet without options costs one check.

use super::*;
use crate::module::flow::key::{self, Bits, Key, TUN_MD, TUN_MD_PRESENT};
use crate::openflow::ErrorCode;
use crate::openflow::error::{BadActionCode, BadMatchCode};
use crate::openflow::nicira::{FieldRef, NxAction, NxMatchField, Register};
use crate::openflow::tlv::code;
use crate::packet::{Batch, TunMeta};
use crate::port::tunnel::geneve_opts::TlvTable;

/// Where `tun_metadata<idx>` is in the key: its present bit and its data
/// bits (none for a length-0 option).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub present: Bits,
    pub data: Option<Bits>,
}

impl Field {
    /// The field `idx` as `tlv` maps it (`NXFMFC_INVALID_TLV_FIELD` if it
    /// does not).
    pub fn of(tlv: &TlvTable, idx: u8) -> Result<Field, ErrorCode> {
        let entry = tlv.get(idx).ok_or(code::INVALID_TLV_FIELD)?;
        Ok(Field {
            present: Bits {
                word: TUN_MD_PRESENT.word,
                shift: u32::from(idx),
                width: 1,
            },
            data: entry.bits().map(|(shift, width)| Bits {
                word: TUN_MD.word,
                shift,
                width,
            }),
        })
    }

    /// Whether `v` fits the mapped length.
    pub fn fits(&self, v: u64) -> bool {
        self.data
            .map_or(v == 0, |b| b.width >= 64 || v >> b.width == 0)
    }

    /// The bits of the field in the data word.
    pub fn mask(&self) -> u64 {
        self.data.map_or(0, Bits::mask)
    }
}

/// Adds a `tun_metadataN` match field to a rule's value and mask.
pub(crate) fn put_match(
    v: &mut Key,
    m: &mut Key,
    tlv: &TlvTable,
    r: &NxMatchField,
) -> Result<(), ErrorCode> {
    let Register::TunMetadata { idx, .. } = r.reg else {
        return Ok(());
    };
    let f = Field::of(tlv, idx)?;
    let mask = r.mask.unwrap_or(fit_all(&f));
    if !f.fits(r.value) || !f.fits(mask) {
        return Err(ErrorCode::BadMatch(BadMatchCode::BadLen));
    }
    key::put(v, m, f.present, 1, 1);
    if let Some(b) = f.data {
        key::put(v, m, b, r.value, mask);
    }
    Ok(())
}

/// All the bits a field of `f`'s length holds.
fn fit_all(f: &Field) -> u64 {
    f.data.map_or(0, |b| {
        if b.width >= 64 {
            u64::MAX
        } else {
            (1 << b.width) - 1
        }
    })
}

/// The fields a flow names (matches, sets, loads, moves, reads), as a
/// bit set.
pub(crate) fn used_by(e: &FlowEntry) -> u64 {
    let matched = e.match_.registers().iter().fold(0, |a, r| match r.reg {
        Register::TunMetadata { idx, .. } => a | 1u64 << (idx & 63),
        _ => a,
    });
    let actions = e
        .instructions
        .iter()
        .filter_map(Instruction::actions)
        .flatten();
    matched | used_by_actions(actions)
}

/// The fields actions set, load, move or read, as a bit set.
fn used_by_actions<'a>(actions: impl Iterator<Item = &'a Action>) -> u64 {
    let refs = |f: FieldRef| f.tun_metadata().map_or(0, |i| 1u64 << (i & 63));
    actions.fold(0, |used, a| {
        used | match a {
            Action::Nx(NxAction::SetReg {
                reg: Register::TunMetadata { idx, .. },
                ..
            }) => 1u64 << (idx & 63),
            Action::Nx(NxAction::RegLoad { dst, .. }) => refs(*dst),
            Action::Nx(NxAction::RegMove { src, dst, .. }) => refs(*src) | refs(*dst),
            Action::Nx(NxAction::OutputReg { src, .. }) => refs(*src),
            _ => 0,
        }
    })
}

impl Pipeline {
    /// The fields any flow or group bucket uses.
    pub(crate) fn tun_metadata_in_use(&self) -> u64 {
        let flows = self
            .tables
            .iter()
            .flat_map(|t| t.cls.iter())
            .fold(0, |a, r| a | used_by(&r.data));
        let buckets = self.groups.values().flat_map(|g| &g.buckets);
        flows | used_by_actions(buckets.flat_map(|b| &b.actions))
    }

    /// A match as a rule's (value, mask), `tun_metadataN` fields through
    /// this pipeline's TLV table.
    pub(crate) fn match_key(&self, m: &Match) -> Result<(Key, Key), ErrorCode> {
        key::match_key_tlv(m, &self.tlv)
    }

    /// Checks a set-field, load or move of a `tun_metadataN` field: the
    /// field mapped (`NXFMFC_INVALID_TLV_FIELD`), a set's value and a
    /// load's or move's bits within its mapped length
    /// (`OFPBAC_BAD_SET_LEN`).
    pub(crate) fn check_tun_metadata(&self, a: &NxAction) -> Result<(), ErrorCode> {
        let too_long = Err(ErrorCode::BadAction(BadActionCode::BadSetLen));
        let within = |f: FieldRef, ofs: u16, n: u16| -> Result<(), ErrorCode> {
            let Some(idx) = f.tun_metadata() else {
                return Ok(());
            };
            let fd = Field::of(&self.tlv, idx)?;
            let width = fd.data.map_or(0, |b| b.width);
            if u32::from(ofs) + u32::from(n) > width {
                return too_long;
            }
            Ok(())
        };
        match *a {
            NxAction::SetReg {
                reg: Register::TunMetadata { idx, .. },
                value,
            } if !Field::of(&self.tlv, idx)?.fits(value) => return too_long,
            NxAction::RegLoad {
                dst, ofs, n_bits, ..
            } => within(dst, ofs, n_bits)?,
            NxAction::RegMove {
                src,
                dst,
                src_ofs,
                dst_ofs,
                n_bits,
            } => {
                within(src, src_ofs, n_bits)?;
                within(dst, dst_ofs, n_bits)?;
            }
            NxAction::OutputReg {
                src, ofs, n_bits, ..
            } => within(src, ofs, n_bits)?,
            _ => {}
        }
        Ok(())
    }
}

impl Exec<'_> {
    /// Reads `n` bits from `ofs` of `tun_metadata<idx>` (0 if absent or
    /// unmapped); what is read is unwildcarded, presence included.
    pub(super) fn read_tun_metadata(&mut self, idx: u8, ofs: u16, n: u16) -> u64 {
        let Ok(f) = Field::of(&self.p.tlv, idx) else {
            return 0;
        };
        f.present.all(&mut self.mask);
        let Some(b) = f.data else { return 0 };
        let m = (ones(n).checked_shl(u32::from(ofs)).unwrap_or(0)) & (b.mask() >> b.shift);
        self.mask.0[b.word] |= m << b.shift;
        if f.present.get(&self.key) == 0 {
            return 0;
        }
        (b.get(&self.key) & m)
            .checked_shr(u32::from(ofs))
            .unwrap_or(0)
    }

    /// Writes `n` bits of `v` at `ofs` into `tun_metadata<idx>`, which
    /// becomes present (an absent field's other bits are 0); the key
    /// and an op that writes the packet's metadata.
    pub(super) fn write_tun_metadata(&mut self, idx: u8, ofs: u16, n: u16, v: u64) {
        let Ok(f) = Field::of(&self.p.tlv, idx) else {
            return;
        };
        let new = match f.data {
            None => 0,
            Some(b) => {
                let full = b.mask() >> b.shift;
                let m = ones(n).checked_shl(u32::from(ofs)).unwrap_or(0) & full;
                let kept = full & !m;
                let old = if kept == 0 {
                    0
                } else {
                    // What stays depends on the field's bits and presence.
                    f.present.all(&mut self.mask);
                    self.mask.0[b.word] |= kept << b.shift;
                    if f.present.get(&self.key) == 0 {
                        0
                    } else {
                        b.get(&self.key) & kept
                    }
                };
                let new = old | (v.checked_shl(u32::from(ofs)).unwrap_or(0) & m);
                b.set(&mut self.key, new);
                new << b.shift
            }
        };
        f.present.set(&mut self.key, 1);
        self.ops.push(Op::SetTunMd {
            idx,
            mask: f.mask(),
            value: new,
            tlv: self.p.tlv_id,
        });
    }
}

/// `n` one bits.
fn ones(n: u16) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The tunnel metadata of a tunnel batch with every packet's Geneve
/// options read into its fields, if any packet has options (else `None`:
/// use the batch's own). A packet whose options the table cannot take
/// gets `drop[i]`.
pub(crate) fn resolve(
    tlv: &TlvTable,
    tlv_id: u32,
    batch: &Batch<'_>,
    tun: &[TunMeta],
    drop: &mut Vec<bool>,
) -> Option<Vec<TunMeta>> {
    tun.iter().position(|m| m.opts != 0)?;
    let mut out = tun.to_vec();
    drop.clear();
    drop.resize(tun.len(), false);
    let mut buf = [0u8; crate::packet::MAX_TUNNEL_OPTIONS];
    for (m, d) in out.iter_mut().zip(drop.iter_mut()) {
        if m.opts == 0 {
            continue;
        }
        match tlv.parse(batch.tunnel_options(m, &mut buf)) {
            Some((present, md)) => {
                (m.md_present, m.md) = (present, md);
                m.tlv = if present != 0 { tlv_id } else { 0 };
            }
            None => *d = true,
        }
        m.opts = 0;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::tlv::{TlvCommand, TlvMap, TlvTableMod};

    fn table() -> TlvTable {
        let mut t = TlvTable::default();
        let m = |class, kind, len, index| TlvMap {
            class,
            kind,
            len,
            index,
        };
        t.apply(
            &TlvTableMod {
                command: TlvCommand::Add,
                maps: vec![
                    m(0x0102, 0x80, 4, 0),
                    m(0xffff, 1, 0, 5),
                    m(0xffff, 2, 4, 7),
                ],
            },
            0,
        )
        .unwrap();
        t
    }

    fn reg(idx: u8, len: u8, value: u64, mask: Option<u64>) -> NxMatchField {
        NxMatchField {
            reg: Register::TunMetadata { idx, len },
            value,
            mask,
        }
    }

    #[test]
    fn a_match_needs_the_field_mapped_present_and_within_its_length() {
        let t = table();
        let m = |r| Match::new().with_registers(vec![r]).unwrap();
        let (v, k) = key::match_key_tlv(&m(reg(0, 2, 0x1234, None)), &t).unwrap();
        assert_eq!(TUN_MD_PRESENT.get(&k), 1);
        assert_eq!(TUN_MD_PRESENT.get(&v), 1);
        assert_eq!(TUN_MD.get(&v), 0x1234 << 32);
        assert_eq!(TUN_MD.get(&k), 0xffff_ffff << 32);
        // tun_metadata7 sits after it; masked.
        let (v, k) = key::match_key_tlv(&m(reg(7, 4, 0x10, Some(0xf0))), &t).unwrap();
        assert_eq!((TUN_MD.get(&v), TUN_MD.get(&k)), (0x10, 0xf0));
        assert_eq!(TUN_MD_PRESENT.get(&k), 1 << 7);
        // A length-0 option matches its presence alone.
        let (_, k) = key::match_key_tlv(&m(reg(5, 1, 0, None)), &t).unwrap();
        assert_eq!((TUN_MD_PRESENT.get(&k), TUN_MD.get(&k)), (1 << 5, 0));
        // Unmapped, or wider than mapped.
        assert_eq!(
            key::match_key_tlv(&m(reg(1, 4, 1, None)), &t),
            Err(code::INVALID_TLV_FIELD)
        );
        assert_eq!(
            key::match_key(&m(reg(0, 4, 1, None))),
            Err(code::INVALID_TLV_FIELD)
        );
        assert_eq!(
            key::match_key_tlv(&m(reg(0, 8, 1 << 40, None)), &t),
            Err(ErrorCode::BadMatch(BadMatchCode::BadLen))
        );
        // An 8-byte value whose high bytes are 0 fits a 4-byte field.
        assert!(key::match_key_tlv(&m(reg(0, 8, 0xffff_ffff, None)), &t).is_ok());
    }

    #[test]
    fn a_packet_without_the_option_never_matches_it() {
        let t = table();
        let m = Match::new()
            .with_registers(vec![reg(0, 4, 0, None)])
            .unwrap();
        let (v, k) = key::match_key_tlv(&m, &t).unwrap();
        let mut with = Key::default();
        let absent = with;
        TUN_MD_PRESENT.set(&mut with, 1);
        assert!(with.matches(&v, &k));
        assert!(!absent.matches(&v, &k));
    }

    #[test]
    fn actions_on_fields_need_them_mapped() {
        let p = {
            let mut p = Pipeline::new(1, 100);
            p.tlv = table();
            p
        };
        let set = |idx, value| NxAction::SetReg {
            reg: Register::TunMetadata { idx, len: 4 },
            value,
        };
        assert!(p.check_tun_metadata(&set(0, 0xffff_ffff)).is_ok());
        assert_eq!(
            p.check_tun_metadata(&set(0, 1 << 32)),
            Err(ErrorCode::BadAction(BadActionCode::BadSetLen))
        );
        assert_eq!(
            p.check_tun_metadata(&set(3, 1)),
            Err(code::INVALID_TLV_FIELD)
        );
        let load = NxAction::RegLoad {
            dst: FieldRef(Register::TunMetadata { idx: 9, len: 4 }.header(false)),
            ofs: 0,
            n_bits: 8,
            value: 1,
        };
        assert_eq!(p.check_tun_metadata(&load), Err(code::INVALID_TLV_FIELD));
    }
}
