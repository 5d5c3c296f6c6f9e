//! mswitch: a fast, modular software switch.
//!
//! The crate is laid out as the layers of the mSwitch design, dependencies
//! pointing down only:
//!
//! - [`ofproto`]: the switch as OpenFlow sees it, version-independent: the
//!   protocol engine over a `Datapath` trait (no I/O).
//! - [`openflow`]: the OpenFlow codec (1.3 to 1.5), no I/O.
//! - [`module`]: processing modules (`dummy`, `learn`) behind one trait and
//!   one registry; they answer a verdict per packet and do no I/O.
//! - [`switch`]: the switching core: workers, the two-phase batched forwarding
//!   algorithm, leases on destination rings, counters, the control handle.
//! - [`port`]: packet I/O: one trait for every port kind; the in-process
//!   `mem` port.
//! - [`packet`]: port memory: rings of `{buffer, length, flags}` slots and
//!   pools of fixed-size buffers; batches of packet views.
//! - [`wire`]: packet formats as zero-copy views (Ethernet).
//! - [`stream`]: the control plane's byte streams (TCP, Unix, TLS) and
//!   their keys.
//! - [`log`]: `tracing` set-up: levels, timestamps, a log file that
//!   survives rotation.
//! - [`sys`]: the only code that calls the OS (memfd, mmap, eventfd, epoll).
//! - [`bench`]: the in-process benchmark behind `mswitch bench`.
//! - [`ab`]: in-process A/B of a change (feature `ab`; nothing without it).
//!
//! `unsafe` is denied everywhere except in the modules that touch shared
//! packet memory or the OS, and every block there says why it is sound.
#![deny(unsafe_code)]

pub mod ab;
pub mod bench;
pub mod cli;
pub mod control;
pub mod log;
pub mod module;
pub mod ofproto;
pub mod openflow;
pub mod ovsdb;
pub mod packet;
pub mod pktgen;
pub mod port;
pub mod stream;
pub mod switch;
pub mod sys;
pub mod wire;
