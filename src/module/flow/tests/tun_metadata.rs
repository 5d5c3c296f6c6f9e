//! Geneve options through `process`: a tunnel batch's options read by the
//! TLV table into `tun_metadataN`, matched (present only), set for the
//! output, and a frame with a critical option the table does not map
//! dropped and counted.

use super::*;
use crate::openflow::nicira::{NxAction, NxMatchField, Register};
use crate::openflow::tlv::{TlvCommand, TlvMap, TlvTableMod};
use crate::packet::TunMetaSlots;

/// `tun_metadata0` with data `v`, as OVN's option (class 0x0102, type
/// 0x80 critical, 4 bytes).
fn ovn(v: u32) -> Vec<u8> {
    let mut o = vec![0x01, 0x02, 0x80, 1];
    o.extend(v.to_be_bytes());
    o
}

#[test]
fn options_are_matched_set_and_checked_per_packet() {
    let m = module();
    let map = TlvTableMod {
        command: TlvCommand::Add,
        maps: vec![TlvMap {
            class: 0x0102,
            kind: 0x80,
            len: 4,
            index: 0,
        }],
    };
    m.tlv_table_mod(&map).unwrap();
    let field = |value| NxMatchField {
        reg: Register::TunMetadata { idx: 0, len: 4 },
        value,
        mask: None,
    };
    let set = Action::Nx(NxAction::SetReg {
        reg: Register::TunMetadata { idx: 0, len: 2 },
        value: 0x5678,
    });
    let mut f = flow(0, 10, vec![], vec![apply(vec![set, out(2)])]);
    f.match_ = Match::new().with_registers(vec![field(0x1234)]).unwrap();
    add(&m, f);
    // tun_metadata0=0 matches a present option of value 0 only.
    let mut z = flow(0, 9, vec![], vec![apply(vec![out(4)])]);
    z.match_ = Match::new().with_registers(vec![field(0)]).unwrap();
    add(&m, z);
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(3)])]));
    // The map a flow uses stays.
    let del = TlvTableMod {
        command: TlvCommand::Clear,
        maps: vec![],
    };
    assert_eq!(
        m.tlv_table_mod(&del),
        Err(crate::openflow::tlv::code::INVALID_TLV_DEL)
    );

    // The port's slots: OVN's option with 0x1234, with 0x9999, none, an
    // unknown critical option, an unknown optional one beside 0x1234, 0.
    let slots = TunMetaSlots::new(8);
    let mut unknown = ovn(0x1234);
    unknown.extend([0x7e, 0x57, 0x01, 0]);
    let opts = [
        ovn(0x1234),
        ovn(0x9999),
        vec![],
        vec![0x7e, 0x57, 0x81, 0],
        unknown,
        ovn(0),
    ];
    let base = TunMeta {
        id: 7,
        ..TunMeta::NONE
    };
    for (i, o) in opts.iter().enumerate() {
        slots.store_with_options(i as u32, base, o);
    }
    let tun: Vec<TunMeta> = (0..opts.len() as u32).map(|i| slots.load(i)).collect();
    assert_eq!(tun[2].opts, 0);
    assert!(tun[0].opts != 0);
    // Twice: the upcall, then the caches.
    for round in 1..=2 {
        let mut frames = vec![udp(1, 2, 1, 1); opts.len()];
        let mut refs = Vec::new();
        let mut out = Verdicts::default();
        out.reset(frames.len());
        let mut b = Batch::from_buffers(&mut frames, &mut refs, PortId(1))
            .with_tunnel(&tun)
            .with_tunnel_options(&slots);
        m.process(&mut b, &mut out, 0);
        let vs: Vec<Verdict> = (0..opts.len()).map(|i| out.get(i)).collect();
        let p = |n| Verdict::Port(PortId(n));
        assert_eq!(vs, [p(2), p(3), p(3), Verdict::Drop, p(2), p(4)]);
        assert_eq!(counter(&m, "tun_metadata_drops"), round);
        let t = out.tunnel().expect("tunnel metadata out");
        // Set: present, the new value, by the module's table.
        assert_eq!((t[0].md_present, t[0].md >> 32), (1, 0x5678));
        assert!(t[0].tlv != 0);
        // As it came otherwise (the fields read from its options).
        assert_eq!((t[1].md_present, t[1].md >> 32), (1, 0x9999));
        assert_eq!((t[2].md_present, t[2].md), (0, 0));
        assert_eq!(t[5].md_present, 1);
    }
}

#[test]
fn a_group_bucket_that_sets_a_field_keeps_its_map() {
    let m = module();
    let map = |command, class| TlvTableMod {
        command,
        maps: vec![TlvMap {
            class,
            kind: 0,
            len: 8,
            index: 2,
        }],
    };
    m.tlv_table_mod(&map(TlvCommand::Add, 0xffff)).unwrap();
    let set = Action::Nx(NxAction::SetReg {
        reg: Register::TunMetadata { idx: 2, len: 8 },
        value: u64::MAX,
    });
    let bucket = Bucket {
        actions: vec![set, out(2)],
        ..Bucket::default()
    };
    m.group_mod(&group(GroupType::Indirect, 1, vec![bucket]), 0)
        .unwrap();
    assert_eq!(
        m.tlv_table_mod(&map(TlvCommand::Delete, 0)),
        Err(crate::openflow::tlv::code::INVALID_TLV_DEL)
    );
    // A bucket may not name a field the table does not map.
    let unmapped = Bucket {
        actions: vec![Action::Nx(NxAction::SetReg {
            reg: Register::TunMetadata { idx: 3, len: 4 },
            value: 1,
        })],
        ..Bucket::default()
    };
    assert_eq!(
        m.group_mod(&group(GroupType::Indirect, 2, vec![unmapped]), 0),
        Err(crate::openflow::tlv::code::INVALID_TLV_FIELD)
    );
    assert_eq!(m.tlv_table().maps.len(), 1);
}
