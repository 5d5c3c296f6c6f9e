//! Fuzzes the OpenFlow 1.3 decoder: no input may panic it, a message it
//! accepts must encode again, and that encoding must decode to the same
//! message; a message it rejects must still yield an error reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mswitch::openflow::{decode, frame_len};

fuzz_target!(|data: &[u8]| {
    let _ = frame_len(data);
    match decode(data) {
        Ok((header, msg)) => {
            // Re-encoding never grows a message, so it always fits.
            let bytes = msg.encode(header.xid).expect("a decoded message encodes");
            let (_, again) = decode(&bytes).expect("our own encoding decodes");
            assert_eq!(again, msg);
        }
        Err(e) => {
            let reply = e.reply();
            assert!(decode(&reply).is_ok(), "error replies decode");
        }
    }
});
