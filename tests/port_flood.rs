//! `OFPPC_NO_FLOOD` end to end: the real `ovs-ofctl mod-port PORT
//! no-flood` / `flood` on a `flow` switch with virtual ports. FLOOD and
//! NORMAL's flooding skip such a port, ALL still reaches it; `show` says
//! `NO_FLOOD` in OpenFlow 1.0 and, as with Open vSwitch, later versions
//! (which have no such bit) neither see nor set it. Skipped (with a note)
//! without ovs-ofctl.

mod common;
mod ofsw;

use std::time::Duration;

use common::{MIN_LEN, frame};
use mswitch::control::client::VportConn;
use mswitch::wire::MacAddr;
use ofsw::{Sw, have_ofctl, recv_within, send};

const WAIT: Duration = Duration::from_secs(5);
/// How long a port that must get nothing is watched.
const QUIET: Duration = Duration::from_millis(300);

/// The `config:` line of port `n` in `ovs-ofctl show` output.
fn port_config(show: &str, n: u16) -> String {
    let head = format!(" {n}(");
    let mut lines = show.lines().skip_while(|l| !l.starts_with(&head));
    assert!(lines.next().is_some(), "no port {n} in {show}");
    lines
        .find(|l| l.trim_start().starts_with("config:"))
        .unwrap_or_else(|| panic!("no config for port {n} in {show}"))
        .trim()
        .to_owned()
}

/// A broadcast from port `src` (sequence `seq`).
fn bcast(src: u16, seq: u32) -> Vec<u8> {
    frame(MIN_LEN, src, MacAddr::BROADCAST, seq)
}

/// Whether `c` gets a frame within `t`.
fn gets(c: &mut VportConn, t: Duration) -> bool {
    !recv_within(c, 1, t).is_empty()
}

#[test]
fn no_flood_through_ovs_ofctl_mod_port() {
    if !have_ofctl() {
        return;
    }
    let sw = Sw::new("noflood", 3);
    sw.plain_ofctl("del-flows", &[]);
    sw.plain_ofctl("add-flow", &["in_port=1,actions=FLOOD"]);
    sw.plain_ofctl("add-flow", &["in_port=2,actions=ALL"]);
    let (mut p1, mut p2, mut p3) = (sw.port(1), sw.port(2), sw.port(3));

    // Before: a flood from 1 reaches 2 and 3.
    send(&mut p1, &bcast(1, 1));
    assert!(gets(&mut p2, WAIT) && gets(&mut p3, WAIT));
    assert_eq!(
        port_config(&sw.plain_ofctl("show", &[]), 3),
        "config:     0"
    );

    sw.plain_ofctl("mod-port", &["3", "no-flood"]);
    assert_eq!(
        port_config(&sw.plain_ofctl("show", &[]), 3),
        "config:     NO_FLOOD"
    );
    // OpenFlow 1.3 has no such bit: not shown there, and a 1.3 port-mod
    // cannot clear it (Open vSwitch ignores the bit after 1.0).
    assert_eq!(port_config(&sw.ofctl("show", &[]), 3), "config:     0");
    sw.ofctl("mod-port", &["3", "flood"]);
    assert!(port_config(&sw.plain_ofctl("show", &[]), 3).contains("NO_FLOOD"));

    // FLOOD leaves port 3 out...
    send(&mut p1, &bcast(1, 2));
    assert!(gets(&mut p2, WAIT));
    assert!(!gets(&mut p3, QUIET), "FLOOD reached a NO_FLOOD port");
    // ...ALL does not...
    send(&mut p2, &bcast(2, 3));
    assert!(gets(&mut p1, WAIT) && gets(&mut p3, WAIT));
    // ...nor does an explicit output (above the FLOOD flow's default
    // priority, 32768).
    sw.plain_ofctl(
        "add-flow",
        &["priority=40000,in_port=1,udp,actions=output:3"],
    );
    send(&mut p1, &bcast(1, 4));
    assert!(gets(&mut p3, WAIT));
    sw.plain_ofctl("del-flows", &["--strict", "priority=40000,in_port=1,udp"]);

    // NORMAL's flooding leaves it out as well.
    sw.plain_ofctl("mod-flows", &["in_port=1,actions=NORMAL"]);
    send(&mut p1, &bcast(1, 5));
    assert!(gets(&mut p2, WAIT));
    assert!(!gets(&mut p3, QUIET), "NORMAL flooded to a NO_FLOOD port");

    // `flood` in 1.0 puts it back.
    sw.plain_ofctl("mod-port", &["3", "flood"]);
    assert_eq!(
        port_config(&sw.plain_ofctl("show", &[]), 3),
        "config:     0"
    );
    send(&mut p1, &bcast(1, 6));
    assert!(gets(&mut p2, WAIT) && gets(&mut p3, WAIT));
}
