//! Meters through the module: flows that name them, per-packet policing
//! behind the caches, DSCP remarking, statistics, and deletion.

use super::*;
use crate::openflow::error::MeterModFailedCode;
use crate::openflow::meter::{MeterBand, MeterModCommand, meter_flags, meter_id};

fn meter(command: MeterModCommand, id: u32, flags: u16, bands: Vec<MeterBand>) -> MeterMod {
    MeterMod {
        command,
        flags,
        meter_id: id,
        bands,
    }
}

/// Meter `id`: `rate` packets per second, dropping the excess.
fn pktps(m: &FlowModule, id: u32, rate: u32) {
    let band = MeterBand::Drop {
        rate,
        burst_size: 0,
    };
    m.meter_mod(
        &meter(MeterModCommand::Add, id, meter_flags::PKTPS, vec![band]),
        0,
    )
    .expect("meter accepted");
}

fn metered(id: u32, port: u32) -> FlowMod {
    flow(
        0,
        10,
        vec![],
        vec![Instruction::Meter(id), apply(vec![out(port)])],
    )
}

fn passed(r: &[R]) -> usize {
    r.iter().filter(|r| **r != R::Drop).count()
}

#[test]
fn a_flow_naming_a_missing_meter_is_refused() {
    let m = module();
    assert_eq!(
        m.flow_mod(&metered(1, 2), 0),
        Err(ErrorCode::MeterModFailed(MeterModFailedCode::InvalidMeter))
    );
    pktps(&m, 1, 10);
    m.flow_mod(&metered(1, 2), 0).expect("the meter exists now");
}

#[test]
fn a_meter_limits_every_packet_even_on_cache_hits() {
    let m = module();
    pktps(&m, 1, 100);
    add(&m, metered(1, 2));
    // Batches of identical frames: memo and megaflow hits after the first.
    let frames = || vec![udp(1, 2, 5, 6); 64];
    let mut through = 0;
    for _ in 0..10 {
        through += passed(&run_at(&m, 1, frames(), SEC).0);
    }
    // One second's burst (100) of 640.
    assert_eq!(through, 100);
    // A second later, a second's worth again.
    let r = run_at(&m, 1, frames(), 2 * SEC).0;
    assert_eq!(passed(&r), 64);
    let r = run_at(&m, 1, frames(), 2 * SEC).0;
    assert_eq!(passed(&r), 36);
    assert_eq!(counter(&m, "meter_drops"), 640 - 100 + 128 - 100);
    let s = m.meter_stats(1, 3 * SEC);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].flow_count, s[0].packet_in_count), (1, 768));
    assert_eq!(s[0].band_stats[0].packet_band_count, 768 - 200);
    assert_eq!(s[0].duration_sec, 3);
    // Flow counters count what matched, metered or not.
    let f = m.flow_stats(&all_flows(), 3 * SEC).expect("stats");
    assert_eq!(f[0].packet_count, 768);
}

#[test]
fn meters_in_two_tables_both_apply() {
    let m = module();
    pktps(&m, 1, 100);
    pktps(&m, 2, 10);
    add(
        &m,
        flow(
            0,
            10,
            vec![],
            vec![Instruction::Meter(1), Instruction::GotoTable(1)],
        ),
    );
    add(
        &m,
        flow(
            1,
            10,
            vec![],
            vec![Instruction::Meter(2), apply(vec![out(2)])],
        ),
    );
    let r = run_at(&m, 1, vec![udp(1, 2, 5, 6); 50], 0).0;
    assert_eq!(passed(&r), 10);
}

#[test]
fn dscp_remark_raises_the_drop_precedence() {
    let m = module();
    let remark = MeterBand::DscpRemark {
        rate: 2,
        burst_size: 0,
        prec_level: 1,
    };
    m.meter_mod(
        &meter(MeterModCommand::Add, 1, meter_flags::PKTPS, vec![remark]),
        0,
    )
    .expect("meter accepted");
    add(&m, metered(1, 2));
    let mut f = udp(1, 2, 5, 6);
    // AF11 (DSCP 10), with the header checksum fixed for it.
    f[15] = 10 << 2;
    f[24..26].fill(0);
    let c = !crate::wire::ethernet::ones_complement_sum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert!(crate::module::flow::actions::tests::checksums_ok(&f));
    let (r, out) = run_at(&m, 1, vec![f.clone(); 3], 0);
    assert_eq!(r, vec![R::Port(2); 3]);
    assert_eq!(out[0][15] >> 2, 10);
    assert_eq!(out[1][15] >> 2, 10);
    // The third exceeds the rate: AF12, checksums still right.
    assert_eq!(out[2][15] >> 2, 12);
    assert!(crate::module::flow::actions::tests::checksums_ok(&out[2]));
    assert_eq!(counter(&m, "meter_drops"), 0);
}

#[test]
fn deleting_a_meter_removes_its_flows() {
    let m = module();
    pktps(&m, 1, 10);
    pktps(&m, 2, 10);
    let mut f = metered(1, 2);
    f.flags = ff::SEND_FLOW_REM;
    add(&m, f);
    add(&m, flow(0, 5, vec![ip4()], vec![Instruction::Meter(2)]));
    add(&m, flow(0, 1, vec![], vec![apply(vec![out(3)])]));
    let del = |id| meter(MeterModCommand::Delete, id, 0, vec![]);
    m.meter_mod(&del(1), SEC).expect("deleted");
    assert_eq!(m.flow_count(), 2);
    let removed = m.take_removed();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].reason, why::DELETE);
    // Packets now fall to the meter-2 flow (no outputs: dropped).
    assert_eq!(run(&m, 1, vec![udp(1, 2, 5, 6)]), vec![R::Drop]);
    m.meter_mod(&del(meter_id::ALL), SEC).expect("deleted");
    assert_eq!(m.flow_count(), 1);
    assert_eq!(run(&m, 1, vec![udp(1, 2, 5, 6)]), vec![R::Port(3)]);
    assert!(m.meter_config(meter_id::ALL).is_empty());
}

#[test]
fn modifying_a_meter_applies_to_cached_flows() {
    let m = module();
    pktps(&m, 1, 1);
    add(&m, metered(1, 2));
    assert_eq!(passed(&run(&m, 1, vec![udp(1, 2, 5, 6); 10])), 1);
    let band = MeterBand::Drop {
        rate: 5,
        burst_size: 0,
    };
    m.meter_mod(
        &meter(MeterModCommand::Modify, 1, meter_flags::PKTPS, vec![band]),
        0,
    )
    .expect("modified");
    assert_eq!(passed(&run(&m, 1, vec![udp(1, 2, 5, 6); 10])), 5);
}
