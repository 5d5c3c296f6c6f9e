//! Tunnel metadata through `process`: `tun_id`, `tun_src` and `tun_dst`
//! matched from a tunnel port's batch (0 for every other packet), set by
//! set-field, `set_tunnel` and loads, per output.

use super::*;
use crate::module::Variant;
use crate::openflow::nicira::{FieldRef, NxAction, NxMatchField, Register};

fn meta(id: u64, src: [u8; 4], dst: [u8; 4]) -> TunMeta {
    TunMeta::v4(id, src.into(), dst.into())
}

fn ip(a: [u8; 4]) -> u64 {
    u64::from(u32::from(Ipv4Addr::from(a)))
}

fn tun_match(id: u64, src: Option<[u8; 4]>, dst: Option<[u8; 4]>) -> Match {
    let mut regs = Vec::new();
    for (reg, a) in [(Register::TunSrc, src), (Register::TunDst, dst)] {
        if let Some(a) = a {
            regs.push(NxMatchField {
                reg,
                value: ip(a),
                mask: None,
            });
        }
    }
    Match::from_fields(vec![OxmField::TunnelId(Masked::exact(id))])
        .unwrap()
        .with_registers(regs)
        .unwrap()
}

/// The verdicts of one batch of `frames` from `in_port` (with tunnel
/// metadata `tun`, one per frame).
fn process(
    m: &FlowModule,
    in_port: u16,
    frames: &mut [Vec<u8>],
    tun: Option<&[TunMeta]>,
) -> Verdicts {
    let mut refs = Vec::new();
    let mut out = Verdicts::default();
    out.reset(frames.len());
    let mut b = Batch::from_buffers(frames, &mut refs, PortId(in_port));
    if let Some(t) = tun {
        b = b.with_tunnel(t);
    }
    m.process(&mut b, &mut out, 0);
    out
}

/// What one batch from `in_port` (with tunnel metadata `tun`, one per
/// frame) gives: the verdicts, the metadata the packets go out with
/// (`None`: as they came) and the variants (packet, port, metadata). A
/// port set comes back as `Ports` of the sum of its port numbers.
#[allow(clippy::type_complexity)]
pub(super) fn run_tun(
    m: &FlowModule,
    in_port: u16,
    mut frames: Vec<Vec<u8>>,
    tun: Option<&[TunMeta]>,
) -> (
    Vec<Verdict>,
    Option<Vec<TunMeta>>,
    Vec<(u16, Verdict, Option<TunMeta>)>,
) {
    let n = frames.len();
    let mut out = process(m, in_port, &mut frames, tun);
    let vs = (0..n)
        .map(|i| match out.get(i) {
            // A set as its ports, for comparing.
            Verdict::Ports(k) => {
                let ps = out.set_members(k).iter().map(|p| p.0).sum();
                Verdict::Ports(ps)
            }
            v => v,
        })
        .collect();
    let t = out.tunnel().map(<[TunMeta]>::to_vec);
    let variants = out
        .sorted_variants()
        .0
        .iter()
        .map(|v: &Variant| (v.pkt, v.to, v.tun))
        .collect();
    (vs, t, variants)
}

const P2: Verdict = Verdict::Port(PortId(2));
const P3: Verdict = Verdict::Port(PortId(3));

#[test]
fn tunnel_fields_match_what_the_packet_came_with_and_zero_otherwise() {
    let m = module();
    let to = |p| vec![apply(vec![out(p)])];
    let mut f = flow(0, 10, vec![], to(2));
    f.match_ = tun_match(5, Some([10, 9, 0, 2]), None);
    add(&m, f);
    let mut f = flow(0, 9, vec![], to(2));
    f.match_ = tun_match(6, None, Some([10, 9, 0, 1]));
    add(&m, f);
    add(&m, flow(0, 0, vec![], to(3)));
    let frames = vec![udp(1, 2, 1, 1); 4];
    let tun = [
        meta(5, [10, 9, 0, 2], [10, 9, 0, 1]),
        meta(5, [10, 9, 0, 3], [10, 9, 0, 1]),
        meta(6, [10, 9, 0, 3], [10, 9, 0, 1]),
        meta(6, [10, 9, 0, 3], [10, 9, 0, 7]),
    ];
    // Twice: the upcall, then the caches.
    for _ in 0..2 {
        let (v, t, _) = run_tun(&m, 1, frames.clone(), Some(&tun));
        assert_eq!(v, [P2, P3, P2, P3]);
        // Nothing set: each goes out as it came.
        assert_eq!(t.as_deref(), Some(&tun[..]));
    }
    // Not from a tunnel: every tunnel field is 0.
    let (v, t, _) = run_tun(&m, 1, frames.clone(), None);
    assert_eq!(v, [P3; 4]);
    assert_eq!(t, None);
    let mut z = flow(0, 20, vec![], to(2));
    z.match_ = tun_match(0, Some([0, 0, 0, 0]), Some([0, 0, 0, 0]));
    add(&m, z);
    assert_eq!(run_tun(&m, 1, frames, None).0, [P2; 4]);
}

#[test]
fn set_field_set_tunnel_and_loads_choose_what_each_output_goes_with() {
    let m = module();
    let set_dst = |a: [u8; 4]| {
        Action::Nx(NxAction::SetReg {
            reg: Register::TunDst,
            value: ip(a),
        })
    };
    let load_src = Action::Nx(NxAction::RegLoad {
        dst: FieldRef::reg(Register::TunSrc),
        ofs: 0,
        n_bits: 32,
        value: ip([10, 9, 0, 1]),
    });
    let from = |p: u32, acts: Vec<Action>| {
        let f = flow(0, 10, vec![OxmField::InPort(PortNo(p))], vec![apply(acts)]);
        add(&m, f);
    };
    let set_tunnel = |tun_id, wide| Action::Nx(NxAction::SetTunnel { tun_id, wide });
    // in_port=1: tun_id 7 (set_field), tun_dst .2 (set_field), out 2.
    let id7 = Action::SetField(OxmField::TunnelId(Masked::exact(7)));
    from(1, vec![id7, set_dst([10, 9, 0, 2]), out(2)]);
    // in_port=4: two copies to port 2 with different remotes and keys
    // (set_tunnel, set_tunnel64, a load), then one to port 3.
    from(
        4,
        vec![
            set_tunnel(1, false),
            load_src,
            set_dst([10, 9, 0, 2]),
            out(2),
            set_tunnel(1 << 40, true),
            set_dst([10, 9, 0, 3]),
            out(2),
            out(3),
        ],
    );
    let frames = vec![udp(1, 2, 1, 1); 2];
    for _ in 0..2 {
        let (v, t, vars) = run_tun(&m, 1, frames.clone(), None);
        assert_eq!(v, [P2; 2]);
        assert_eq!(t.unwrap(), [meta(7, [0; 4], [10, 9, 0, 2]); 2]);
        assert!(vars.is_empty());
        // From a tunnel: what is not set stays as it came.
        let came = [meta(5, [10, 9, 0, 8], [10, 9, 0, 1]); 2];
        let (_, t, _) = run_tun(&m, 1, frames.clone(), Some(&came));
        assert_eq!(t.unwrap(), [meta(7, [10, 9, 0, 8], [10, 9, 0, 2]); 2]);
    }
    let (v, t, vars) = run_tun(&m, 4, frames.clone(), None);
    let last = meta(1 << 40, [10, 9, 0, 1], [10, 9, 0, 3]);
    let first = meta(1, [10, 9, 0, 1], [10, 9, 0, 2]);
    // Ports 2 and 3 get the last remote and key, the first copy to port
    // 2 the earlier ones.
    assert_eq!(v, [Verdict::Ports(2 + 3); 2]);
    assert_eq!(t.unwrap(), [last; 2]);
    assert_eq!(vars, [(0, P2, Some(first)), (1, P2, Some(first))]);
}

#[test]
fn a_masked_tun_id_matches_under_its_mask() {
    let m = module();
    // A masked tun_id matches under its mask.
    let mut f = flow(0, 10, vec![], vec![apply(vec![out(2)])]);
    f.match_ = Match::from_fields(vec![OxmField::TunnelId(Masked::new(0x100, 0xff00))]).unwrap();
    add(&m, f);
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(3)])]));
    let tun = [meta(0x1ff, [1; 4], [2; 4]), meta(0x2ff, [1; 4], [2; 4])];
    let (v, _, _) = run_tun(&m, 1, vec![udp(1, 2, 1, 1); 2], Some(&tun));
    assert_eq!(v, [P2, P3]);
}

#[test]
fn a_packet_out_sends_with_the_tunnel_metadata_its_actions_set() {
    let m = module();
    let f = udp(1, 2, 1, 1);
    let acts = vec![
        Action::SetField(OxmField::TunnelId(Masked::exact(9))),
        Action::Nx(NxAction::SetReg {
            reg: Register::TunDst,
            value: ip([10, 9, 0, 4]),
        }),
        out(2),
    ];
    let outs = m.packet_out(PortNo::CONTROLLER.0, &f, &acts, 0).unwrap();
    let want = meta(9, [0; 4], [10, 9, 0, 4]);
    assert!(
        matches!(&outs[..], [Output::PortTunnel(PortId(2), d, t)] if *d == f && *t == want),
        "{outs:?}"
    );
    // Without a tunnel action: a plain output.
    let outs = m
        .packet_out(PortNo::CONTROLLER.0, &f, &[out(2)], 0)
        .unwrap();
    assert!(
        matches!(&outs[..], [Output::Port(PortId(2), _)]),
        "{outs:?}"
    );
    // Through the tables: what the actions set before TABLE is in the key
    // there, and goes out with what the tables add.
    let mut t = flow(0, 10, vec![], vec![apply(vec![out(3)])]);
    t.match_ = tun_match(9, None, Some([10, 9, 0, 4]));
    add(&m, t);
    let mut acts = acts;
    acts[2] = Action::output(PortNo::TABLE);
    let outs = m.packet_out(PortNo::CONTROLLER.0, &f, &acts, 0).unwrap();
    assert!(
        matches!(&outs[..], [Output::PortTunnel(PortId(3), _, t)] if *t == want),
        "{outs:?}"
    );
}

#[test]
fn equal_frames_from_a_tunnel_keep_their_own_metadata_through_the_memo() {
    let m = module();
    // A rule blind to the tunnel (the memo may serve it) that sets tun_dst
    // (worked out per packet from what each came with), and one that
    // matches tun_id (the memo must not serve it across packets).
    let set_dst = Action::Nx(NxAction::SetReg {
        reg: Register::TunDst,
        value: ip([10, 9, 0, 5]),
    });
    add(
        &m,
        flow(
            0,
            10,
            vec![OxmField::InPort(PortNo(1))],
            vec![apply(vec![set_dst, out(2)])],
        ),
    );
    let mut f = flow(
        0,
        10,
        vec![OxmField::InPort(PortNo(4))],
        vec![apply(vec![out(2)])],
    );
    f.match_ = Match::from_fields(vec![
        OxmField::InPort(PortNo(4)),
        OxmField::TunnelId(Masked::exact(7)),
    ])
    .unwrap();
    add(&m, f);
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(3)])]));
    let tun: Vec<TunMeta> = (0..8)
        .map(|k| meta(k % 3 + 6, [10, 9, 0, k as u8], [0; 4]))
        .collect();
    let frames = vec![udp(1, 2, 1, 1); 8];
    for _ in 0..2 {
        let (v, t, _) = run_tun(&m, 1, frames.clone(), Some(&tun));
        assert_eq!(v, [P2; 8]);
        let want: Vec<TunMeta> = tun
            .iter()
            .map(|c| TunMeta {
                dst: [10, 9, 0, 5].into(),
                ..*c
            })
            .collect();
        assert_eq!(t.unwrap(), want);
        let (v, t, _) = run_tun(&m, 4, frames.clone(), Some(&tun));
        let want: Vec<Verdict> = tun
            .iter()
            .map(|c| if c.id == 7 { P2 } else { P3 })
            .collect();
        assert_eq!(v, want);
        assert_eq!(t.unwrap(), tun);
    }
}

/// The controller copies of one batch: (packet, the tunnel metadata they
/// carry; `None`: the module gave none, the switch uses what came in).
fn run_ctl(
    m: &FlowModule,
    in_port: u16,
    mut frames: Vec<Vec<u8>>,
    tun: Option<&[TunMeta]>,
) -> Vec<(u16, Option<TunMeta>)> {
    let out = process(m, in_port, &mut frames, tun);
    out.controller_copies()
        .iter()
        .map(|&(i, _)| (i, out.controller_tunnel(usize::from(i))))
        .collect()
}

#[test]
fn controller_copies_carry_the_metadata_at_the_controller_output() {
    let m = module();
    let ctl = Action::output(PortNo::CONTROLLER);
    let set_id = |id| Action::SetField(OxmField::TunnelId(Masked::exact(id)));
    let set_dst = Action::Nx(NxAction::SetReg {
        reg: Register::TunDst,
        value: ip([10, 9, 0, 9]),
    });
    let on = |id: u64, acts: Vec<Action>| {
        let mut f = flow(0, 10, vec![], vec![apply(acts)]);
        f.match_ = tun_match(id, None, None);
        f
    };
    // Set after the controller output: the copy has what came.
    add(&m, on(5, vec![ctl.clone(), set_id(9), out(2)]));
    // Set before it: the copy has it.
    add(&m, on(6, vec![set_dst, ctl.clone(), out(2)]));
    // Nothing set: as it came.
    add(&m, on(7, vec![ctl.clone()]));
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(3)])]));
    let came = |id| meta(id, [10, 9, 0, 2], [10, 9, 0, 1]);
    let tun = [came(5), came(6), came(7), came(8)];
    let frames = vec![udp(1, 2, 1, 1); 4];
    // The upcalls, then the caches.
    for _ in 0..2 {
        let got = run_ctl(&m, 1, frames.clone(), Some(&tun));
        let want = [
            (0, Some(came(5))),
            (1, Some(meta(6, [10, 9, 0, 2], [10, 9, 0, 9]))),
            (2, Some(came(7))),
        ];
        assert_eq!(got, want);
        // The other outputs keep what the later actions set.
        let (v, t, _) = run_tun(&m, 1, frames.clone(), Some(&tun));
        assert_eq!(v, [P2, P2, Verdict::Controller, P3]);
        assert_eq!(t.unwrap()[0], meta(9, [10, 9, 0, 2], [10, 9, 0, 1]));
    }
    // Not from a tunnel: what a flow sets, else nothing.
    let mut f = flow(
        0,
        20,
        vec![OxmField::InPort(PortNo(4))],
        vec![apply(vec![set_id(3), ctl.clone()])],
    );
    f.match_ = Match::from_fields(vec![OxmField::InPort(PortNo(4))]).unwrap();
    add(&m, f);
    add(
        &m,
        flow(
            0,
            20,
            vec![OxmField::InPort(PortNo(5))],
            vec![apply(vec![ctl])],
        ),
    );
    for _ in 0..2 {
        let got = run_ctl(&m, 4, vec![udp(1, 2, 1, 1); 2], None);
        assert_eq!(
            got,
            [
                (0, Some(meta(3, [0; 4], [0; 4]))),
                (1, Some(meta(3, [0; 4], [0; 4])))
            ]
        );
        let got = run_ctl(&m, 5, vec![udp(1, 2, 1, 1); 2], None);
        assert_eq!(got, [(0, None), (1, None)]);
    }
}

#[test]
fn a_packet_out_starts_from_the_metadata_and_registers_its_match_gives() {
    use crate::module::flow::PacketOutStart;
    let m = module();
    // Table 0 sends on by reg0 and metadata, as they came.
    let mut t = flow(
        0,
        10,
        vec![OxmField::Metadata(Masked::exact(0x42))],
        vec![apply(vec![out(3)])],
    );
    t.match_ = t
        .match_
        .clone()
        .with_registers(vec![NxMatchField {
            reg: Register::Reg(0),
            value: 5,
            mask: None,
        }])
        .unwrap();
    add(&m, t);
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(2)])]));
    let f = udp(1, 2, 1, 1);
    let mut start = PacketOutStart {
        metadata: 0x42,
        ..PacketOutStart::default()
    };
    start.regs[0] = 5;
    let table = [Action::output(PortNo::TABLE)];
    let to = |start: &PacketOutStart| {
        let outs = m
            .packet_out_with(PortNo::CONTROLLER.0, start, &f, &table, 0)
            .unwrap();
        match &outs[..] {
            [Output::Port(p, _)] => p.0,
            o => panic!("{o:?}"),
        }
    };
    assert_eq!(to(&start), 3);
    // Either missing: the table-miss flow.
    assert_eq!(
        to(&PacketOutStart {
            metadata: 0,
            ..start
        }),
        2
    );
    assert_eq!(to(&PacketOutStart::default()), 2);
    // The actions see them too: output:reg0 goes to port 5's number.
    let outs = m
        .packet_out_with(
            PortNo::CONTROLLER.0,
            &PacketOutStart {
                regs: [2; 16],
                ..start
            },
            &f,
            &[Action::Nx(NxAction::OutputReg {
                src: FieldRef::reg(Register::Reg(1)),
                ofs: 0,
                n_bits: 32,
                max_len: 0,
                v2: false,
            })],
            0,
        )
        .unwrap();
    assert!(
        matches!(&outs[..], [Output::Port(PortId(2), _)]),
        "{outs:?}"
    );
    // What the actions write before output:TABLE is where the tables
    // start: reg0 and metadata loaded by the actions reach the flow on
    // them, from a packet-out that gave neither.
    let load = |dst: FieldRef, value| {
        Action::Nx(NxAction::RegLoad {
            dst,
            ofs: 0,
            n_bits: if dst.0 == 0x8000_0408 { 64 } else { 32 },
            value,
        })
    };
    let acts = [
        load(FieldRef::reg(Register::Reg(0)), 5),
        load(FieldRef(0x8000_0408), 0x42),
        Action::output(PortNo::TABLE),
    ];
    let outs = m
        .packet_out_with(
            PortNo::CONTROLLER.0,
            &PacketOutStart::default(),
            &f,
            &acts,
            0,
        )
        .unwrap();
    assert!(
        matches!(&outs[..], [Output::Port(PortId(3), _)]),
        "{outs:?}"
    );
}
