//! IPv6 tunnel addresses through `process`: `tun_ipv6_src` and
//! `tun_ipv6_dst` matched (exact and by prefix) from a tunnel port's
//! batch (0 for every other packet), set by set-field, by loads of 64-bit
//! halves (as Open vSwitch sends `load:` of a whole address) and by a
//! 128-bit move, per output.

use super::tunnel::run_tun;
use super::*;
use crate::openflow::nicira::{FieldRef, NxAction};
use crate::openflow::nx_tun6::{halves, header};
use std::net::Ipv6Addr;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn v6(id: u64, src: &str, dst: &str) -> TunMeta {
    TunMeta::v6(id, a6(src), a6(dst))
}

/// A flow on `tun_ipv6_src` (`dst`: `tun_ipv6_dst`) under `mask` that
/// outputs to `port`.
fn on6(priority: u16, dst: bool, addr: &str, mask: Option<&str>, port: u32) -> FlowMod {
    let mut f = flow(0, priority, vec![], vec![apply(vec![out(port)])]);
    f.match_ = Match::new()
        .with_registers(halves(dst, a6(addr), mask.map(a6)).to_vec())
        .unwrap();
    f
}

const P2: Verdict = Verdict::Port(PortId(2));
const P3: Verdict = Verdict::Port(PortId(3));
const P4: Verdict = Verdict::Port(PortId(4));

#[test]
fn ipv6_tunnel_addresses_match_exactly_by_prefix_and_zero_otherwise() {
    let m = module();
    add(&m, on6(30, false, "fd00::2", None, 2));
    add(&m, on6(20, true, "fd00:1::", Some("ffff:ffff::"), 3));
    // `tun_ipv6_src=::`: every packet that did not come from IPv6.
    add(&m, on6(10, false, "::", None, 4));
    add(&m, flow(0, 0, vec![], vec![apply(vec![out(5)])]));
    let frames = vec![udp(1, 2, 1, 1); 4];
    let tun = [
        v6(5, "fd00::2", "fd00::1"),
        v6(5, "fd00::3", "fd00:1::9"),
        v6(5, "fd00::3", "fd00:2::9"),
        TunMeta::v4(5, [10, 0, 0, 2].into(), [10, 0, 0, 1].into()),
    ];
    for _ in 0..2 {
        let (v, t, _) = run_tun(&m, 1, frames.clone(), Some(&tun));
        assert_eq!(v, [P2, P3, Verdict::Port(PortId(5)), P4]);
        assert_eq!(t.as_deref(), Some(&tun[..]));
    }
    assert_eq!(run_tun(&m, 1, frames, None).0, [P4; 4]);
}

#[test]
fn set_field_loads_and_moves_set_the_ipv6_remote_of_each_output() {
    let m = module();
    let set = |dst, s: &str| Action::Nx(NxAction::SetTunIpv6 { dst, addr: a6(s) });
    let load = |ofs, value| {
        Action::Nx(NxAction::RegLoad {
            dst: FieldRef(header(true, false)),
            ofs,
            n_bits: 64,
            value,
        })
    };
    let mv = Action::Nx(NxAction::RegMove {
        src: FieldRef(header(false, false)),
        dst: FieldRef(header(true, false)),
        src_ofs: 0,
        dst_ofs: 0,
        n_bits: 128,
    });
    let from = |p: u32, acts: Vec<Action>| {
        add(
            &m,
            flow(0, 10, vec![OxmField::InPort(PortNo(p))], vec![apply(acts)]),
        );
    };
    // in_port=1: set_field:fd00::2->tun_ipv6_dst, output:2.
    from(1, vec![set(true, "fd00::2"), out(2)]);
    // in_port=4: the same address as two loads (low half, then high),
    // out to 2; then tun_ipv6_dst from tun_ipv6_src (a 128-bit move) out
    // to 3.
    from(
        4,
        vec![
            load(0, 2),
            load(64, 0xfd00_0000_0000_0000),
            out(2),
            mv,
            out(3),
        ],
    );
    let frames = vec![udp(1, 2, 1, 1); 2];
    let want = TunMeta::v6(0, Ipv6Addr::UNSPECIFIED, a6("fd00::2"));
    for _ in 0..2 {
        let (v, t, _) = run_tun(&m, 1, frames.clone(), None);
        assert_eq!(v, [P2; 2]);
        assert_eq!(t.unwrap(), [want; 2]);
    }
    // From an IPv6 tunnel: the source stays, the move copies it.
    let came = [v6(9, "fd00::7", "fd00::1"); 2];
    for _ in 0..2 {
        let (v, t, vars) = run_tun(&m, 4, frames.clone(), Some(&came));
        // Port 3 with the last metadata; the copy to port 2 (a variant)
        // with what was set before it.
        assert_eq!(v, [P3; 2]);
        assert_eq!(t.unwrap(), [v6(9, "fd00::7", "fd00::7"); 2]);
        let first = v6(9, "fd00::7", "fd00::2");
        assert_eq!(vars, [(0, P2, Some(first)), (1, P2, Some(first))]);
    }
}

#[test]
fn a_partial_load_keeps_the_other_bits_and_matches_on_them() {
    // load:0x5->tun_ipv6_dst[0..15] keeps the rest of what the packet
    // came with, so those bits are part of the megaflow: packets that
    // differ there get their own result.
    let m = module();
    let load = Action::Nx(NxAction::RegLoad {
        dst: FieldRef(header(true, false)),
        ofs: 0,
        n_bits: 16,
        value: 5,
    });
    add(&m, flow(0, 10, vec![], vec![apply(vec![load, out(2)])]));
    let frames = vec![udp(1, 2, 1, 1); 2];
    let came = [v6(1, "fd00::7", "fd00::1"), v6(1, "fd00::7", "fd01::1")];
    for _ in 0..2 {
        let (_, t, _) = run_tun(&m, 1, frames.clone(), Some(&came));
        assert_eq!(
            t.unwrap(),
            [v6(1, "fd00::7", "fd00::5"), v6(1, "fd00::7", "fd01::5")]
        );
    }
}
