//! Fuzzes the VXLAN and Geneve header decoder: no datagram may panic it,
//! and what it accepts leaves an inner frame of at least an Ethernet
//! header inside the datagram, and its VNI encodes back to the same VNI
//! bytes (and, for VXLAN, whose header has no free bits, the same header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mswitch::port::tunnel::header::{HEADER_LEN, MIN_INNER, Proto, decode, encode};

fuzz_target!(|data: &[u8]| {
    for proto in [Proto::Vxlan, Proto::Geneve] {
        if let Ok(d) = decode(proto, data) {
            assert!(d.inner + MIN_INNER <= data.len());
            let mut h = [0u8; HEADER_LEN];
            encode(proto, d.vni, &mut h);
            assert_eq!(&h[4..7], &data[4..7]);
            if proto == Proto::Vxlan {
                assert_eq!(&h[..], &data[..HEADER_LEN]);
            }
        }
    }
});
