//! What the pipeline supports, as `OFPMP_TABLE_FEATURES` describes it:
//! the instructions, actions, match fields and set-fields every table
//! accepts. Controllers and ovs-ofctl read this before they install
//! anything, so it must say exactly what `flow_mod` takes.

use crate::openflow::FixedStr;
use crate::openflow::action::{ActionId, ActionType};
use crate::openflow::instruction::{InstructionId, InstructionType};
use crate::openflow::oxm::{OxmFieldType, OxmId};
use crate::openflow::table::{TableFeatureProp, TableFeatures};

use super::flowmod::settable;

/// Match fields the pipeline cannot parse (no PBB).
fn matchable(t: OxmFieldType) -> bool {
    t != OxmFieldType::PbbIsid
}

/// Actions `flow_mod` accepts (PBB and TTL copies are refused).
fn supported_action(t: ActionType) -> bool {
    use ActionType as A;
    matches!(
        t,
        A::Output
            | A::PushVlan
            | A::PopVlan
            | A::SetQueue
            | A::Group
            | A::SetNwTtl
            | A::DecNwTtl
            | A::PushMpls
            | A::PopMpls
            | A::SetMplsTtl
            | A::DecMplsTtl
            | A::SetField
    )
}

/// The features of table `id` of `n_tables`, each holding at most
/// `max_entries` (the module's limit, shared by all tables).
pub(crate) fn table_features(id: u8, n_tables: u8, max_entries: u32) -> TableFeatures {
    use TableFeatureProp as P;
    let insts: Vec<InstructionId> = InstructionType::ALL
        .iter()
        .filter(|t| **t != InstructionType::Experimenter)
        .filter(|t| id + 1 < n_tables || **t != InstructionType::GotoTable)
        .map(|t| InstructionId::new(*t))
        .collect();
    let acts: Vec<ActionId> = ActionType::ALL
        .iter()
        .filter(|t| supported_action(**t))
        .map(|t| ActionId::new(*t))
        .collect();
    let fields = OxmFieldType::ALL.iter().filter(|t| matchable(**t));
    let matches: Vec<OxmId> = fields
        .clone()
        .map(|t| OxmId::basic(*t, t.maskable()))
        .collect();
    let wildcards: Vec<OxmId> = fields.map(|t| OxmId::basic(*t, false)).collect();
    let sets: Vec<OxmId> = OxmFieldType::ALL
        .iter()
        .filter(|t| settable(**t))
        .map(|t| OxmId::basic(*t, false))
        .collect();
    let next: Vec<u8> = ((id + 1)..n_tables).collect();
    let both = |f: &dyn Fn(bool) -> P| [f(false), f(true)];
    let mut properties = Vec::new();
    properties.extend(both(&|miss| P::Instructions {
        miss,
        ids: insts.clone(),
    }));
    properties.extend(both(&|miss| P::NextTables {
        miss,
        tables: next.clone(),
    }));
    properties.extend(both(&|miss| P::WriteActions {
        miss,
        ids: acts.clone(),
    }));
    properties.extend(both(&|miss| P::ApplyActions {
        miss,
        ids: acts.clone(),
    }));
    properties.push(P::Match(matches));
    properties.push(P::Wildcards(wildcards));
    properties.extend(both(&|miss| P::WriteSetfield {
        miss,
        ids: sets.clone(),
    }));
    properties.extend(both(&|miss| P::ApplySetfield {
        miss,
        ids: sets.clone(),
    }));
    TableFeatures {
        table_id: id,
        name: FixedStr::new(&format!("table{id}")),
        metadata_match: u64::MAX,
        metadata_write: u64::MAX,
        config: 0,
        max_entries,
        properties,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_table_has_no_goto_and_no_next_tables() {
        let t = table_features(3, 4, 100);
        assert_eq!(t.max_entries, 100);
        for p in &t.properties {
            match p {
                TableFeatureProp::NextTables { tables, .. } => assert!(tables.is_empty()),
                TableFeatureProp::Instructions { ids, .. } => {
                    assert!(!ids.contains(&InstructionId::new(InstructionType::GotoTable)))
                }
                _ => {}
            }
        }
        let t0 = table_features(0, 4, 100);
        assert!(t0.properties.contains(&TableFeatureProp::NextTables {
            miss: false,
            tables: vec![1, 2, 3]
        }));
    }
}
