//! Flow tables: `OFPT_TABLE_MOD`, and table features (`ofp_table_features`
//! with every `OFPTFPT_*` property) as carried by `OFPMP_TABLE_FEATURES`.
//!
//! Properties are each padded to 8 bytes, their length excluding the
//! padding. A malformed property is `OFPTFFC_BAD_LEN`, an unknown one
//! `OFPTFFC_BAD_TYPE`; a malformed `ofp_table_features` itself is
//! `OFPBRC_BAD_LEN`.

use super::action::ActionId;
use super::bytes::{FixedStr, Reader, Res, Writer, pad8};
use super::error::{ErrorCode, TableFeaturesFailedCode};
use super::instruction::InstructionId;
use super::oxm::OxmId;

/// `OFPT_TABLE_MOD`. In OpenFlow 1.3 `config` has no defined bits left
/// (`OFPTC_DEPRECATED_MASK` covers the old miss behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableMod {
    pub table_id: u8,
    pub config: u32,
}

/// `OFPTC_DEPRECATED_MASK`.
pub const OFPTC_DEPRECATED_MASK: u32 = 3;

impl TableMod {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<TableMod> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let config = r.u32()?;
        r.finish()?;
        Ok(TableMod { table_id, config })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u8(self.table_id);
        w.zeros(3);
        w.u32(self.config);
    }
}

/// Property type numbers (`ofp_table_feature_prop_type`).
pub mod prop_type {
    pub const INSTRUCTIONS: u16 = 0;
    pub const INSTRUCTIONS_MISS: u16 = 1;
    pub const NEXT_TABLES: u16 = 2;
    pub const NEXT_TABLES_MISS: u16 = 3;
    pub const WRITE_ACTIONS: u16 = 4;
    pub const WRITE_ACTIONS_MISS: u16 = 5;
    pub const APPLY_ACTIONS: u16 = 6;
    pub const APPLY_ACTIONS_MISS: u16 = 7;
    pub const MATCH: u16 = 8;
    pub const WILDCARDS: u16 = 10;
    pub const WRITE_SETFIELD: u16 = 12;
    pub const WRITE_SETFIELD_MISS: u16 = 13;
    pub const APPLY_SETFIELD: u16 = 14;
    pub const APPLY_SETFIELD_MISS: u16 = 15;
    pub const EXPERIMENTER: u16 = 0xfffe;
    pub const EXPERIMENTER_MISS: u16 = 0xffff;
}

/// One table feature property. `miss: true` is the `_MISS` variant of a
/// property: what the table-miss flow entry may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFeatureProp {
    Instructions {
        miss: bool,
        ids: Vec<InstructionId>,
    },
    NextTables {
        miss: bool,
        tables: Vec<u8>,
    },
    WriteActions {
        miss: bool,
        ids: Vec<ActionId>,
    },
    ApplyActions {
        miss: bool,
        ids: Vec<ActionId>,
    },
    /// Fields the table can match on (with mask where the id says so).
    Match(Vec<OxmId>),
    /// Fields the table can wildcard.
    Wildcards(Vec<OxmId>),
    WriteSetfield {
        miss: bool,
        ids: Vec<OxmId>,
    },
    ApplySetfield {
        miss: bool,
        ids: Vec<OxmId>,
    },
    Experimenter {
        miss: bool,
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
}

const fn bad(c: TableFeaturesFailedCode) -> ErrorCode {
    ErrorCode::TableFeaturesFailed(c)
}

/// Reads a list of `{type, len}` ids of 4 bytes (8 with an experimenter id).
fn decode_tlv_ids(r: &mut Reader<'_>) -> Res<Vec<(u16, Option<u32>)>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let ty = r.u16()?;
        let len = r.u16()?;
        let exp = match (ty, len) {
            (_, 4) => None,
            (0xffff, 8) => Some(r.u32()?),
            _ => return Err(bad(TableFeaturesFailedCode::BadLen)),
        };
        out.push((ty, exp));
    }
    Ok(out)
}

fn encode_tlv_id(w: &mut Writer<'_>, ty: u16, exp: Option<u32>) {
    w.u16(ty);
    match exp {
        None => w.u16(4),
        Some(e) => {
            w.u16(8);
            w.u32(e);
        }
    }
}

fn decode_oxm_ids(r: &mut Reader<'_>) -> Res<Vec<OxmId>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(OxmId::decode(r)?);
    }
    Ok(out)
}

impl TableFeatureProp {
    pub fn prop_type(&self) -> u16 {
        use TableFeatureProp::*;
        use prop_type::*;
        let (base, miss) = match self {
            Instructions { miss, .. } => (INSTRUCTIONS, *miss),
            NextTables { miss, .. } => (NEXT_TABLES, *miss),
            WriteActions { miss, .. } => (WRITE_ACTIONS, *miss),
            ApplyActions { miss, .. } => (APPLY_ACTIONS, *miss),
            Match(_) => (MATCH, false),
            Wildcards(_) => (WILDCARDS, false),
            WriteSetfield { miss, .. } => (WRITE_SETFIELD, *miss),
            ApplySetfield { miss, .. } => (APPLY_SETFIELD, *miss),
            Experimenter { miss, .. } => (EXPERIMENTER, *miss),
        };
        base + u16::from(miss)
    }

    /// Reads the properties filling all of `r`.
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<TableFeatureProp>> {
        use prop_type::*;
        let short = bad(TableFeaturesFailedCode::BadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let ty = r.u16().map_err(|_| short)?;
            let len = usize::from(r.u16().map_err(|_| short)?);
            if len < 4 {
                return Err(short);
            }
            let mut b = r.sub(len - 4, short).map_err(|_| short)?;
            r.skip(pad8(len) - len).map_err(|_| short)?;
            let miss = ty & 1 == 1;
            let prop = match ty {
                INSTRUCTIONS | INSTRUCTIONS_MISS => TableFeatureProp::Instructions {
                    miss,
                    ids: decode_tlv_ids(&mut b)?
                        .into_iter()
                        .map(|(ty, experimenter)| InstructionId { ty, experimenter })
                        .collect(),
                },
                NEXT_TABLES | NEXT_TABLES_MISS => TableFeatureProp::NextTables {
                    miss,
                    tables: b.rest().to_vec(),
                },
                WRITE_ACTIONS | WRITE_ACTIONS_MISS | APPLY_ACTIONS | APPLY_ACTIONS_MISS => {
                    let ids = decode_tlv_ids(&mut b)?
                        .into_iter()
                        .map(|(ty, experimenter)| ActionId { ty, experimenter })
                        .collect();
                    if ty <= WRITE_ACTIONS_MISS {
                        TableFeatureProp::WriteActions { miss, ids }
                    } else {
                        TableFeatureProp::ApplyActions { miss, ids }
                    }
                }
                MATCH => TableFeatureProp::Match(decode_oxm_ids(&mut b)?),
                WILDCARDS => TableFeatureProp::Wildcards(decode_oxm_ids(&mut b)?),
                WRITE_SETFIELD | WRITE_SETFIELD_MISS => TableFeatureProp::WriteSetfield {
                    miss,
                    ids: decode_oxm_ids(&mut b)?,
                },
                APPLY_SETFIELD | APPLY_SETFIELD_MISS => TableFeatureProp::ApplySetfield {
                    miss,
                    ids: decode_oxm_ids(&mut b)?,
                },
                EXPERIMENTER | EXPERIMENTER_MISS => TableFeatureProp::Experimenter {
                    miss,
                    experimenter: b.u32()?,
                    exp_type: b.u32()?,
                    data: b.rest().to_vec(),
                },
                _ => return Err(bad(TableFeaturesFailedCode::BadType)),
            };
            out.push(prop);
        }
        Ok(out)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        use TableFeatureProp::*;
        let start = w.pos();
        w.u16(self.prop_type());
        w.u16(0);
        match self {
            Instructions { ids, .. } => {
                for id in ids {
                    encode_tlv_id(w, id.ty, id.experimenter);
                }
            }
            WriteActions { ids, .. } | ApplyActions { ids, .. } => {
                for id in ids {
                    encode_tlv_id(w, id.ty, id.experimenter);
                }
            }
            NextTables { tables, .. } => w.bytes(tables),
            Match(ids) | Wildcards(ids) | WriteSetfield { ids, .. } | ApplySetfield { ids, .. } => {
                for id in ids {
                    id.encode(w);
                }
            }
            Experimenter {
                experimenter,
                exp_type,
                data,
                ..
            } => {
                w.u32(*experimenter);
                w.u32(*exp_type);
                w.bytes(data);
            }
        }
        w.patch_len(start + 2, start, "table feature property");
        w.pad_to_8(start);
    }
}

/// `ofp_table_features`: one table's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFeatures {
    pub table_id: u8,
    pub name: FixedStr<32>,
    /// Metadata bits the table can match.
    pub metadata_match: u64,
    /// Metadata bits the table can write.
    pub metadata_write: u64,
    pub config: u32,
    pub max_entries: u32,
    pub properties: Vec<TableFeatureProp>,
}

const TABLE_FEATURES_LEN: usize = 64;

impl TableFeatures {
    /// Reads the table features filling all of `r`.
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<TableFeatures>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0)?);
            if len < TABLE_FEATURES_LEN || !len.is_multiple_of(8) {
                return Err(short);
            }
            let mut e = r.sub(len, short)?;
            e.skip(2)?;
            let table_id = e.u8()?;
            e.skip(5)?;
            out.push(TableFeatures {
                table_id,
                name: FixedStr::read(&mut e)?,
                metadata_match: e.u64()?,
                metadata_write: e.u64()?,
                config: e.u32()?,
                max_entries: e.u32()?,
                properties: TableFeatureProp::decode_list(&mut e)?,
            });
        }
        Ok(out)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        w.u16(0);
        w.u8(self.table_id);
        w.zeros(5);
        self.name.write(w);
        w.u64(self.metadata_match);
        w.u64(self.metadata_write);
        w.u32(self.config);
        w.u32(self.max_entries);
        for p in &self.properties {
            p.encode(w);
        }
        w.patch_len(start, start, "table features");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::action::ActionType;
    use crate::openflow::error::BadRequestCode;
    use crate::openflow::instruction::InstructionType;
    use crate::openflow::oxm::OxmFieldType;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    fn sample() -> TableFeatures {
        TableFeatures {
            table_id: 0,
            name: FixedStr::new("classifier"),
            metadata_match: u64::MAX,
            metadata_write: u64::MAX,
            config: 0,
            max_entries: 1_000_000,
            properties: vec![
                TableFeatureProp::Instructions {
                    miss: false,
                    ids: vec![
                        InstructionId::new(InstructionType::GotoTable),
                        InstructionId::new(InstructionType::ApplyActions),
                    ],
                },
                TableFeatureProp::NextTables {
                    miss: true,
                    tables: vec![1, 2, 3],
                },
                TableFeatureProp::ApplyActions {
                    miss: false,
                    ids: vec![
                        ActionId::new(ActionType::Output),
                        ActionId {
                            ty: 0xffff,
                            experimenter: Some(0x2320),
                        },
                    ],
                },
                TableFeatureProp::Match(vec![
                    OxmId::basic(OxmFieldType::InPort, false),
                    OxmId::basic(OxmFieldType::Ipv4Src, true),
                ]),
                TableFeatureProp::ApplySetfield {
                    miss: true,
                    ids: vec![OxmId::basic(OxmFieldType::EthDst, false)],
                },
                TableFeatureProp::Experimenter {
                    miss: false,
                    experimenter: 1,
                    exp_type: 2,
                    data: vec![9, 9, 9, 9],
                },
            ],
        }
    }

    #[test]
    fn round_trip_with_padding() {
        let t = sample();
        let mut v = Vec::new();
        t.encode(&mut Writer::new(&mut v));
        assert_eq!(v.len() % 8, 0);
        assert_eq!(usize::from(u16::from_be_bytes([v[0], v[1]])), v.len());
        // Instructions property: 4 + 2*4 = 12, padded to 16.
        assert_eq!(&v[64..68], &[0, 0, 0, 12]);
        assert_eq!(&v[80..84], &[0, 3, 0, 7]);
        let back = TableFeatures::decode_list(&mut Reader::new(&v, SHORT)).unwrap();
        assert_eq!(back, vec![t]);
    }

    #[test]
    fn property_errors() {
        let mut v = Vec::new();
        sample().encode(&mut Writer::new(&mut v));
        let dec = |v: &[u8]| TableFeatures::decode_list(&mut Reader::new(v, SHORT));
        let mut unknown = v.clone();
        unknown[64..66].copy_from_slice(&[0, 9]);
        assert_eq!(dec(&unknown), Err(bad(TableFeaturesFailedCode::BadType)));
        let mut long = v.clone();
        long[66..68].copy_from_slice(&[0x10, 0]);
        assert_eq!(dec(&long), Err(bad(TableFeaturesFailedCode::BadLen)));
        let mut odd_id = v.clone();
        odd_id[70..72].copy_from_slice(&[0, 5]);
        assert_eq!(dec(&odd_id), Err(bad(TableFeaturesFailedCode::BadLen)));
        let mut short_entry = v.clone();
        short_entry[0..2].copy_from_slice(&[0, 56]);
        assert_eq!(dec(&short_entry), Err(SHORT));
        assert_eq!(dec(&v[..v.len() - 8]), Err(SHORT));
    }

    #[test]
    fn table_mod() {
        let mut v = Vec::new();
        TableMod {
            table_id: 3,
            config: 3,
        }
        .encode(&mut Writer::new(&mut v));
        assert_eq!(v, [3, 0, 0, 0, 0, 0, 0, 3]);
    }
}
