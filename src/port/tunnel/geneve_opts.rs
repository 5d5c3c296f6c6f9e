//! Geneve options as flow fields: a switch's TLV table (Open vSwitch's
//! `tun_metadata` map, set by `NXT_TLV_TABLE_MOD`), which names option
//! (class, type, length) `tun_metadataN`, and the codec between a frame's
//! options and those fields.
//!
//! A packet's mapped options live in two 64-bit words
//! ([`crate::packet::TunMeta::md_present`] and `md`): bit N of `present`
//! says `tun_metadataN` is there, and `md` holds the option data of all
//! fields, each at the place the table gave it when it was mapped
//! (4-byte units, as Open vSwitch allocates its 256-byte space). So this
//! switch's option space is [`OPTION_SPACE`] bytes, where Open vSwitch's
//! is 256: a map that does not fit is refused with `NXTTMFC_TABLE_FULL`,
//! the error Open vSwitch gives when its space is used up. Options of
//! length 0 (presence only) take no space.
//!
//! Receive ([`TlvTable::parse`]): every option the table maps, with the
//! length it maps, becomes its field; others are ignored, unless critical
//! (the top bit of the type), which makes the frame one this switch cannot
//! interpret (dropped, as Open vSwitch drops it); a mapped option with
//! another length too.
//! Send ([`TlvTable::encode`]): each present field becomes an option with
//! the class, type (critical bit as mapped) and length of its map, in
//! field order.
//!
//! Tunnel ports do not know which switch they are on, but a frame's
//! metadata names its table ([`crate::packet::TunMeta::tlv`]): tables are
//! registered process-wide ([`Registration`]), so a Geneve port encodes a
//! frame's options with the table of the switch that set them, and its
//! receive path drops a datagram with a critical option that no table of
//! the process maps ([`critical_known`]) before it reaches any switch
//! (modules other than `flow` interpret no options); the `flow` module
//! then drops what its own table does not map.

use std::sync::{Arc, Mutex, RwLock};

use crate::openflow::ErrorCode;
use crate::openflow::tlv::{self, TlvCommand, TlvMap, TlvTableMod, TlvTableReply, code};

/// The bytes of option data a packet may carry in mapped fields.
pub const OPTION_SPACE: usize = 8;
/// The most option bytes a Geneve header can hold (6 bits of 4 bytes).
pub const MAX_WIRE: usize = 63 * 4;
/// The critical bit of an option's type.
pub const CRITICAL: u8 = 0x80;

/// One mapped option: its class, type and data length, and where its
/// data sits in the packet's option word (byte offset from the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvEntry {
    pub class: u16,
    pub kind: u8,
    pub len: u8,
    pub ofs: u8,
}

impl TlvEntry {
    /// The entry's bits in the option word (`None` for length 0), as
    /// (shift, width).
    pub fn bits(&self) -> Option<(u32, u32)> {
        let width = u32::from(self.len) * 8;
        let shift = (OPTION_SPACE as u32 * 8).checked_sub(u32::from(self.ofs) * 8 + width)?;
        (width > 0).then_some((shift, width))
    }

    fn mask(&self) -> u64 {
        match self.bits() {
            None => 0,
            Some((s, 64)) => u64::MAX << s,
            Some((s, w)) => ((1u64 << w) - 1) << s,
        }
    }
}

/// A switch's TLV table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvTable {
    entries: [Option<TlvEntry>; tlv::MAX_FIELDS as usize],
}

impl Default for TlvTable {
    fn default() -> TlvTable {
        TlvTable::EMPTY
    }
}

impl TlvTable {
    /// No maps.
    pub const EMPTY: TlvTable = TlvTable {
        entries: [None; tlv::MAX_FIELDS as usize],
    };

    /// The map of `tun_metadata<idx>`, if any.
    pub fn get(&self, idx: u8) -> Option<TlvEntry> {
        self.entries.get(usize::from(idx)).copied().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(Option::is_none)
    }

    /// The fields mapped, as a bit set.
    pub fn mapped(&self) -> u64 {
        (0..64)
            .filter(|&i| self.entries[i].is_some())
            .fold(0, |a, i| a | (1 << i))
    }

    /// Applies a table mod: all of it or (with Open vSwitch's error)
    /// nothing. `in_use`: the fields flows use, which a delete or clear
    /// may not unmap (`NXTTMFC_INVALID_TLV_DEL`).
    pub fn apply(&mut self, m: &TlvTableMod, in_use: u64) -> Result<(), ErrorCode> {
        let mut t = self.clone();
        match m.command {
            TlvCommand::Add => {
                for map in &m.maps {
                    t.add(map)?;
                }
            }
            TlvCommand::Delete => {
                if m.maps.iter().any(|x| in_use & (1 << x.index) != 0) {
                    return Err(code::INVALID_TLV_DEL);
                }
                for map in &m.maps {
                    t.entries[usize::from(map.index)] = None;
                }
            }
            TlvCommand::Clear => {
                if in_use & t.mapped() != 0 {
                    return Err(code::INVALID_TLV_DEL);
                }
                t = TlvTable::default();
            }
        }
        *self = t;
        Ok(())
    }

    fn add(&mut self, m: &TlvMap) -> Result<(), ErrorCode> {
        let i = usize::from(m.index);
        if self.entries.get(i).is_none_or(Option::is_some) {
            return Err(code::ALREADY_MAPPED);
        }
        if self
            .entries
            .iter()
            .flatten()
            .any(|e| (e.class, e.kind) == (m.class, m.kind))
        {
            return Err(code::DUP_ENTRY);
        }
        // First fit, in 4-byte units.
        let used = self
            .entries
            .iter()
            .flatten()
            .fold(0u64, |a, e| a | e.mask());
        let ofs = (0..OPTION_SPACE)
            .step_by(4)
            .find(|&o| {
                let e = TlvEntry {
                    class: 0,
                    kind: 0,
                    len: m.len,
                    ofs: o as u8,
                };
                o + usize::from(m.len) <= OPTION_SPACE && e.mask() & used == 0
            })
            .ok_or(code::TABLE_FULL)?;
        self.entries[i] = Some(TlvEntry {
            class: m.class,
            kind: m.kind,
            len: m.len,
            ofs: ofs as u8,
        });
        Ok(())
    }

    /// The `NXT_TLV_TABLE_REPLY` of this table.
    pub fn reply(&self) -> TlvTableReply {
        TlvTableReply {
            max_option_space: OPTION_SPACE as u32,
            max_fields: tlv::MAX_FIELDS,
            maps: (0u16..)
                .zip(&self.entries)
                .filter_map(|(index, e)| {
                    e.map(|e| TlvMap {
                        class: e.class,
                        kind: e.kind,
                        len: e.len,
                        index,
                    })
                })
                .collect(),
        }
    }

    fn find(&self, class: u16, kind: u8) -> Option<(usize, TlvEntry)> {
        self.entries.iter().enumerate().find_map(|(i, e)| {
            e.filter(|e| (e.class, e.kind) == (class, kind))
                .map(|e| (i, e))
        })
    }

    /// The fields of Geneve options `opts` (whose layout the header
    /// decoder checked): `(present, data)`, or `None` if the frame has a
    /// critical option this table does not map, or a mapped option of
    /// another length.
    pub fn parse(&self, opts: &[u8]) -> Option<(u64, u64)> {
        let (mut present, mut data) = (0u64, 0u64);
        for (class, kind, body) in options(opts) {
            match self.find(class, kind) {
                Some((i, e)) if body.len() == usize::from(e.len) => {
                    present |= 1 << i;
                    if let Some((shift, _)) = e.bits() {
                        let v = body.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
                        data = (data & !e.mask()) | (v << shift);
                    }
                }
                Some(_) => return None,
                None if kind & CRITICAL != 0 => return None,
                None => {}
            }
        }
        Some((present, data))
    }

    /// Writes the options of the present fields into `out`; returns their
    /// length (a multiple of 4). Fields this table does not map are left
    /// out, and so is what would not fit a Geneve header.
    pub fn encode(&self, present: u64, data: u64, out: &mut [u8; MAX_WIRE]) -> usize {
        let mut n = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(e) = e.filter(|_| present & (1 << i) != 0) else {
                continue;
            };
            let len = usize::from(e.len);
            let Some(o) = out.get_mut(n..n + 4 + len) else {
                break;
            };
            o[..2].copy_from_slice(&e.class.to_be_bytes());
            o[2] = e.kind;
            o[3] = e.len / 4;
            if let Some((shift, _)) = e.bits() {
                let v = (data & e.mask()) >> shift;
                o[4..].copy_from_slice(&v.to_be_bytes()[8 - len..]);
            }
            n += 4 + len;
        }
        n
    }
}

/// The options of a Geneve header's option bytes, as (class, type, data);
/// stops at the first that does not fit.
pub fn options(mut opts: &[u8]) -> impl Iterator<Item = (u16, u8, &[u8])> {
    std::iter::from_fn(move || {
        let h = opts.get(..4)?;
        let len = 4 + usize::from(h[3] & 0x1f) * 4;
        let o = opts.get(..len)?;
        opts = &opts[len..];
        Some((u16::from_be_bytes([o[0], o[1]]), o[2], &o[4..]))
    })
}

/// The process's TLV tables, by id (a switch's `flow` module registers
/// its own).
static TABLES: RwLock<Vec<Option<Arc<TlvTable>>>> = RwLock::new(Vec::new());
/// Serialises registrations (ids are handed out under it).
static REGISTER: Mutex<()> = Mutex::new(());

/// A table's place in the process registry; it leaves with the handle.
#[derive(Debug)]
pub struct Registration(u32);

impl Registration {
    /// Registers an empty table.
    pub fn new() -> Registration {
        let _g = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = TABLES.write().unwrap_or_else(|e| e.into_inner());
        let i = match t.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                t.push(None);
                t.len() - 1
            }
        };
        t[i] = Some(Arc::new(TlvTable::default()));
        Registration(i as u32 + 1)
    }

    /// The id frames' metadata names the table by (never 0).
    pub fn id(&self) -> u32 {
        self.0
    }

    /// Replaces the registered table.
    pub fn set(&self, table: &TlvTable) {
        let mut t = TABLES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = t.get_mut(self.0 as usize - 1) {
            *slot = Some(Arc::new(table.clone()));
        }
    }
}

impl Default for Registration {
    fn default() -> Registration {
        Registration::new()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut t = TABLES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = t.get_mut(self.0 as usize - 1) {
            *slot = None;
        }
    }
}

/// The registered table `id` (0: none).
pub fn table(id: u32) -> Option<Arc<TlvTable>> {
    let t = TABLES.read().unwrap_or_else(|e| e.into_inner());
    t.get((id as usize).checked_sub(1)?).cloned().flatten()
}

/// Whether some registered table maps every critical option of `opts`.
/// Only frames with a critical option pay for the look.
pub fn critical_known(opts: &[u8]) -> bool {
    let t = TABLES.read().unwrap_or_else(|e| e.into_inner());
    options(opts)
        .filter(|(_, kind, _)| kind & CRITICAL != 0)
        .all(|(class, kind, _)| t.iter().flatten().any(|tb| tb.find(class, kind).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(t: &mut TlvTable, class: u16, kind: u8, len: u8, index: u16) -> Result<(), ErrorCode> {
        let m = TlvTableMod {
            command: TlvCommand::Add,
            maps: vec![TlvMap {
                class,
                kind,
                len,
                index,
            }],
        };
        t.apply(&m, 0)
    }

    #[test]
    fn maps_are_checked_as_open_vswitch_checks_them() {
        let mut t = TlvTable::default();
        add(&mut t, 0x0102, 0x80, 4, 0).unwrap();
        assert_eq!(add(&mut t, 0xffff, 0, 4, 0), Err(code::ALREADY_MAPPED));
        assert_eq!(add(&mut t, 0x0102, 0x80, 4, 1), Err(code::DUP_ENTRY));
        // 8 bytes of space: 4 are left.
        assert_eq!(add(&mut t, 0xffff, 1, 8, 1), Err(code::TABLE_FULL));
        assert_eq!(add(&mut t, 0xffff, 1, 124, 1), Err(code::TABLE_FULL));
        add(&mut t, 0xffff, 1, 4, 1).unwrap();
        add(&mut t, 0xffff, 2, 0, 63).unwrap();
        assert_eq!(t.get(1).unwrap().ofs, 4);
        // An add of several maps is all or nothing.
        let two = TlvTableMod {
            command: TlvCommand::Add,
            maps: vec![
                TlvMap {
                    class: 7,
                    kind: 7,
                    len: 0,
                    index: 5,
                },
                TlvMap {
                    class: 7,
                    kind: 8,
                    len: 4,
                    index: 6,
                },
            ],
        };
        assert_eq!(t.apply(&two, 0), Err(code::TABLE_FULL));
        assert_eq!(t.get(5), None);
        let del = |idx| TlvTableMod {
            command: TlvCommand::Delete,
            maps: vec![TlvMap {
                class: 0,
                kind: 0,
                len: 0,
                index: idx,
            }],
        };
        // A map a flow uses stays.
        assert_eq!(t.apply(&del(0), 1), Err(code::INVALID_TLV_DEL));
        let clear = TlvTableMod {
            command: TlvCommand::Clear,
            maps: vec![],
        };
        assert_eq!(t.apply(&clear, 1 << 63), Err(code::INVALID_TLV_DEL));
        t.apply(&del(0), 2).unwrap();
        assert_eq!(t.reply().maps.len(), 2);
        // Its space is free again.
        add(&mut t, 0xffff, 3, 4, 2).unwrap();
        t.apply(&clear, 1 << 9).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.reply().max_option_space, 8);
    }

    #[test]
    fn options_become_fields_and_fields_options() {
        let mut t = TlvTable::default();
        add(&mut t, 0x0102, 0x80, 4, 0).unwrap();
        add(&mut t, 0xffff, 0x01, 0, 3).unwrap();
        let mut opts = vec![0x01, 0x02, 0x80, 1, 0xde, 0xad, 0xbe, 0xef];
        // Unmapped and not critical: ignored.
        opts.extend([0x00, 0x09, 0x05, 1, 1, 2, 3, 4]);
        opts.extend([0xff, 0xff, 0x01, 0]);
        let (present, data) = t.parse(&opts).unwrap();
        assert_eq!(present, 0b1001);
        assert_eq!(data, 0xdead_beef_0000_0000);
        let mut out = [0u8; MAX_WIRE];
        let n = t.encode(present, data, &mut out);
        assert_eq!(
            &out[..n],
            [
                0x01, 0x02, 0x80, 1, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0x01, 0
            ]
        );
        // An unmapped critical option, or a mapped one of another length.
        let mut c = opts.clone();
        c[10] = 0x85;
        assert_eq!(t.parse(&c), None);
        let wrong = [0x01, 0x02, 0x80, 2, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(t.parse(&wrong), None);
        assert_eq!(t.parse(&[]), Some((0, 0)));
        // Cut options end the walk, never panic.
        for k in 0..opts.len() {
            let _ = t.parse(&opts[..k]);
        }
    }

    #[test]
    fn the_registry_knows_critical_options_while_a_table_maps_them() {
        let opts = [0x7e, 0x57, 0x81, 0];
        assert!(!critical_known(&opts));
        let r = Registration::new();
        let mut t = TlvTable::default();
        add(&mut t, 0x7e57, 0x81, 0, 9).unwrap();
        r.set(&t);
        assert!(critical_known(&opts));
        assert_eq!(table(r.id()).as_deref(), Some(&t));
        let id = r.id();
        drop(r);
        assert!(!critical_known(&opts));
        assert!(table(id).is_none_or(|x| x.get(9).is_none()));
        assert!(table(0).is_none());
    }
}
