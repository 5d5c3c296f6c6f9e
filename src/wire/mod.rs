//! Packet formats as zero-copy views, in the manner of smoltcp: a view checks
//! its length once in `new_checked`, after which no getter panics; multi-byte
//! fields are read with `from_be_bytes`.
//!
//! Part of the stable API for modules (see [`crate::module`]):
//! [`ethernet`] (frames, MAC addresses, a UDP test-frame builder) and [`ip`]
//! (IPv4/IPv6 headers, transport ports, [`ip::Layers`]).

pub mod ethernet;
pub mod ip;

pub use ethernet::{EthernetFrame, MacAddr, udp_frame};
