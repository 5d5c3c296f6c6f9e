//! OVSDB (RFC 7047): the database protocol of Open vSwitch's
//! `ovsdb-server`, which keeps the switch's configuration (`ovs-vsctl`
//! writes it; the switch daemon reads it and writes back state).
//!
//! Written here on serde_json: ovsdb-server speaks JSON-RPC 1.0 and closes
//! connections whose messages carry JSON-RPC 2.0's members, and no kept Rust
//! crate fits.
//!
//! - [`jsonrpc`]: framing of back-to-back JSON values and the message
//!   shapes, no I/O.
//! - [`client`]: a blocking client (requests, echo, notifications,
//!   transact, monitor, lock).
//! - [`datum`]: reading OVSDB's JSON encoding of values (atoms, sets, maps,
//!   UUIDs).

pub mod client;
pub mod datum;
pub mod jsonrpc;

pub use client::{Client, Notification, OvsdbError, Remote};
