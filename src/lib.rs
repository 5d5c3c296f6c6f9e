//! mswitch: a fast, modular software switch.
//!
//! The crate is laid out as the layers of the mSwitch design, dependencies
//! pointing down only:
//!
//! - `control`: the front ends: `mswitch daemon`/`ctl` over a Unix socket,
//!   the OpenFlow agent's sockets, `vswitchd` (Open vSwitch's database and
//!   unixctl), metrics, capture. `ovsdb`: the OVSDB client.
//! - `ofproto`: the switch as OpenFlow sees it, version-independent: the
//!   protocol engine over a `Datapath` trait (no I/O).
//! - `openflow`: the OpenFlow codec (1.0, 1.3 to 1.5), no I/O.
//! - [`module`]: processing modules (`dummy`, `learn`, `flow`, `demux`,
//!   and any a program registers) behind one trait and one registry; they
//!   answer a verdict per packet and do no I/O.
//! - `switch`: the switching core: workers, the two-phase batched forwarding
//!   algorithm, leases on destination rings, counters, the control handle.
//! - `port`: packet I/O: one trait for every port kind.
//! - `packet`: port memory: rings of `{buffer, length, flags}` slots and
//!   pools of fixed-size buffers; batches of packet views.
//! - [`wire`]: packet formats as zero-copy views (Ethernet, IPv4, IPv6).
//! - `stream`: the control plane's byte streams (TCP, Unix, TLS) and
//!   their keys.
//! - `log`: `tracing` set-up: levels, timestamps, a log file that
//!   survives rotation.
//! - `sys`: the only code that calls the OS (memfd, mmap, eventfd, epoll).
//! - [`cli`]: the `mswitch` command; `bench` and `pktgen` behind two of
//!   its subcommands; `ab`: in-process A/B of a change (feature `ab`).
//!
//! `unsafe` is denied everywhere except in the modules that touch shared
//! packet memory or the OS, and every block there says why it is sound.
//!
//! # Public API
//!
//! What is meant for code outside mswitch, and documented here: the module
//! API ([`module`]: the `Module` trait, `Verdicts`, `Batch`, the registry),
//! the packet views a module reads ([`wire`]) and the command line as a
//! library entry ([`cli`]), so that a crate with its own modules builds a
//! switch binary with all of mswitch's commands; and the vport client
//! ([`client`]), through which a program of its own (a user-space network
//! stack, a traffic source) plugs into a running switch. [`module`] says what is
//! stable and shows a module end to end. The other modules are public for
//! mswitch's own tests, benchmarks and fuzz targets only: hidden from this
//! documentation, and free to change.
#![deny(unsafe_code)]

// Hidden modules' doc comments are not rendered, and in these three many
// are clap help text where brackets mean "optional" (`NAME[:ARGS]`), not
// links (escaping them would show in `--help`).

#[doc(hidden)]
pub mod ab;
#[doc(hidden)]
pub mod bench;
pub mod cli;
pub mod client;
#[doc(hidden)]
#[allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]
pub mod control;
#[doc(hidden)]
pub mod log;
pub mod module;
#[doc(hidden)]
pub mod ofproto;
#[doc(hidden)]
pub mod openflow;
#[doc(hidden)]
pub mod ovsdb;
#[doc(hidden)]
pub mod packet;
#[doc(hidden)]
pub mod pktgen;
#[doc(hidden)]
#[allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]
pub mod port;
#[doc(hidden)]
#[allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]
pub mod stream;
#[doc(hidden)]
pub mod switch;
#[doc(hidden)]
pub mod sys;
pub mod wire;
