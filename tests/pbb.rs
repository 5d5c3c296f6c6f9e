//! PBB as Open vSwitch 3.1 answers it: it has no PBB, so a 1.3 flow mod
//! with `push_pbb`/`pop_pbb` gets `OFPBAC_BAD_TYPE` (its action table has
//! no entry for types 26 and 27) and one that matches `pbb_isid` or
//! `pbb_uca` gets `OFPBMC_BAD_FIELD` (unknown OXM fields, strict match
//! parsing), whatever else the message holds. mswitch must answer the
//! same. The flow mods are written byte by byte (ovs-ofctl cannot say
//! them) and sent on the switch's `.mgmt` socket.

mod common;
mod ofsw;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ofsw::Sw;

/// Sends a 1.3 HELLO, then `msg` (xid 7), and returns the (type, code)
/// of the OFPT_ERROR answering it, None if none came.
fn error_for(sw: &Sw, msg: &[u8]) -> Option<(u16, u16)> {
    let path = sw.target().trim_start_matches("unix:").to_owned();
    let mut s = UnixStream::connect(path).expect("mgmt socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    s.write_all(msg).unwrap();
    // A barrier after it: its reply says every answer came.
    s.write_all(&[4, 20, 0, 8, 0, 0, 0, 8]).unwrap();
    let mut found = None;
    for _ in 0..16 {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).ok()?;
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let mut body = vec![0u8; len.saturating_sub(8)];
        s.read_exact(&mut body).ok()?;
        let xid = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if h[1] == 1 && xid == 7 {
            found = Some((
                u16::from_be_bytes([body[0], body[1]]),
                u16::from_be_bytes([body[2], body[3]]),
            ));
        }
        if h[1] == 21 && xid == 8 {
            return found;
        }
    }
    found
}

/// An OpenFlow 1.3 FLOW_MOD (ADD, table 0, priority 0x8000) with these
/// OXM match fields and one APPLY_ACTIONS of these actions.
fn flow_mod(oxms: &[u8], actions: &[u8]) -> Vec<u8> {
    let mut m = vec![4, 14, 0, 0, 0, 0, 0, 7];
    m.extend_from_slice(&[0; 16]); // cookie, cookie mask
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x80, 0]); // table, ADD, timeouts, priority
    m.extend_from_slice(&[0xff; 12]); // buffer id, out port, out group
    m.extend_from_slice(&[0; 4]); // flags, pad
    let mlen = 4 + oxms.len();
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(mlen as u16).to_be_bytes());
    m.extend_from_slice(oxms);
    m.resize(m.len() + (8 - mlen % 8) % 8, 0);
    m.extend_from_slice(&[0, 4]);
    m.extend_from_slice(&((8 + actions.len()) as u16).to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(actions);
    let n = m.len() as u16;
    m[2..4].copy_from_slice(&n.to_be_bytes());
    m
}

/// The (type, code) of an error, or none.
type Answer = Option<(u16, u16)>;

const BAD_ACTION: u16 = 2;
const OFPBAC_BAD_TYPE: u16 = 0;
const BAD_MATCH: u16 = 4;
const OFPBMC_BAD_FIELD: u16 = 6;

/// `OXM_OF_ETH_TYPE=0x88e7` (PBB's ethertype, its prerequisite).
const ETH_PBB: [u8; 6] = [0x80, 0x00, 0x0a, 0x02, 0x88, 0xe7];
/// `OXM_OF_PBB_ISID=0x123456`.
const ISID: [u8; 7] = [0x80, 0x00, 0x4a, 0x03, 0x12, 0x34, 0x56];
/// `OXM_OF_PBB_UCA=1` (OpenFlow 1.4's field 41).
const UCA: [u8; 5] = [0x80, 0x00, 0x52, 0x01, 0x01];
/// `output:1`.
const OUTPUT: [u8; 16] = [0, 0, 0, 16, 0, 0, 0, 1, 0xff, 0xe5, 0, 0, 0, 0, 0, 0];

#[test]
fn pbb_gets_the_errors_open_vswitch_sends() {
    let sw = Sw::new("pbb", 2);
    let push = [0, 26, 0, 8, 0x88, 0xe7, 0, 0];
    let pop = [0, 27, 0, 8, 0, 0, 0, 0];
    let bad_type = Some((BAD_ACTION, OFPBAC_BAD_TYPE));
    let bad_field = Some((BAD_MATCH, OFPBMC_BAD_FIELD));
    let cases: [(&str, Vec<u8>, Answer); 8] = [
        ("push_pbb", flow_mod(&[], &push), bad_type),
        (
            "push_pbb:0x8100",
            flow_mod(&[], &[0, 26, 0, 8, 0x81, 0, 0, 0]),
            bad_type,
        ),
        (
            "pop_pbb after output",
            flow_mod(&[], &[&OUTPUT[..], &pop].concat()),
            bad_type,
        ),
        (
            "pbb_isid",
            flow_mod(&[&ETH_PBB[..], &ISID].concat(), &OUTPUT),
            bad_field,
        ),
        (
            "pbb_isid without its ethertype",
            flow_mod(&ISID, &OUTPUT),
            bad_field,
        ),
        ("pbb_uca", flow_mod(&UCA, &OUTPUT), bad_field),
        // The match is read before the actions.
        (
            "pbb_isid and push_pbb",
            flow_mod(&[&ETH_PBB[..], &ISID].concat(), &push),
            bad_field,
        ),
        ("a plain flow", flow_mod(&[], &OUTPUT), None),
    ];
    for (what, msg, want) in cases {
        assert_eq!(error_for(&sw, &msg), want, "{what}");
    }
}
