//! MPLS end to end with the real `ovs-ofctl -O OpenFlow13`: flows that
//! push a label on one port's traffic and pop it on the way back, or push
//! and pop across two tables, with the frames checked byte for byte.

mod common;
mod ofsw;

use std::time::Duration;

use common::{MIN_LEN, frame, mac};
use ofsw::{LONG, Sw, have_ofctl, recv_within, send};

/// `f` with the MPLS entry `lse` pushed (no VLAN tags).
fn pushed(f: &[u8], lse: u32) -> Vec<u8> {
    let mut g = f[..12].to_vec();
    g.extend_from_slice(&[0x88, 0x47]);
    g.extend_from_slice(&lse.to_be_bytes());
    g.extend_from_slice(&f[14..]);
    g
}

#[test]
fn ovs_ofctl_pushes_and_pops_labels() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("mpls", 3);
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));
    // Without the standalone bridge's NORMAL flow, what no flow matches
    // goes nowhere.
    sw.ofctl("del-flows", &[]);
    sw.ofctl(
        "add-flow",
        &["in_port=1,ip,actions=push_mpls:0x8847,set_field:10->mpls_label,set_mpls_ttl(5),dec_mpls_ttl,output:2"],
    );
    sw.ofctl(
        "add-flow",
        &["in_port=2,mpls,mpls_label=10,actions=pop_mpls:0x0800,output:1"],
    );
    sw.ofctl(
        "add-flow",
        &["table=0,in_port=3,actions=push_mpls:0x8848,set_field:20->mpls_label,goto_table:1"],
    );
    sw.ofctl(
        "add-flow",
        &["table=1,mplsm,mpls_label=20,mpls_bos=1,actions=pop_mpls:0x0800,output:1"],
    );
    let flows = sw.ofctl("dump-flows", &[]);
    assert!(
        flows.contains(
            "push_mpls:0x8847,set_field:10->mpls_label,set_mpls_ttl(5),dec_mpls_ttl,output:2"
        ),
        "{flows}"
    );
    assert!(flows.contains("mpls,in_port=2,mpls_label=10"), "{flows}");
    assert!(flows.contains("mpls_label=20,mpls_bos=1"), "{flows}");
    // MPLS actions need MPLS packets.
    let e = sw.ofctl_err(
        "add-flow",
        &["in_port=2,ip,actions=pop_mpls:0x0800,output:1"],
    );
    assert!(!e.is_empty());

    let f = frame(MIN_LEN + 4, 1, mac(2), 7);
    send(&mut p1, &f);
    let got = recv_within(&mut p2, 1, LONG);
    assert_eq!(got.len(), 1);
    // Label 10, TC 0 (DSCP 0), bottom of stack, TTL 5 - 1.
    let labelled = pushed(&f, (10 << 12) | (1 << 8) | 4);
    assert_eq!(got[0], labelled);
    // Back from port 2: popped to the original frame on port 1.
    send(&mut p2, &labelled);
    let back = recv_within(&mut p1, 1, LONG);
    assert_eq!(back, vec![f.clone()]);
    // Push and pop across two tables.
    let g = frame(MIN_LEN + 8, 3, mac(1), 8);
    send(&mut p3, &g);
    let back = recv_within(&mut p1, 1, LONG);
    assert_eq!(back, vec![g]);
    // Another label is matched by nothing.
    send(&mut p2, &pushed(&f, (11 << 12) | (1 << 8) | 4));
    assert!(recv_within(&mut p1, 1, Duration::from_millis(200)).is_empty());
    let s = sw.ofctl("dump-flows", &["table=1"]);
    assert!(s.contains("n_packets=1"), "{s}");
}
