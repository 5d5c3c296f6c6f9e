//! Packet formats as zero-copy views, in the manner of smoltcp: a view checks
//! its length once in `new_checked`, after which no getter panics; multi-byte
//! fields are read with `from_be_bytes`.

pub mod ethernet;

pub use ethernet::{EthernetFrame, MacAddr};
