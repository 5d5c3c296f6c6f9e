//! A program's end of a virtual port: the stable client API.
//!
//! [`VportConn::connect`] asks a running daemon (`mswitch daemon`) for port
//! `PORT` of switch `SWITCH` (creating a vport of that name if there is
//! none) and maps the port's shared memory: frames then go both ways
//! through two rings, with no system call per frame, and a doorbell each
//! way for a side that sleeps. The port is detached, and on a `demux`
//! switch its tuples are unbound, when the connection closes (the program
//! exits or drops the [`VportConn`]).
//!
//! A [`VportConn`] is a [`MemClient`] (it dereferences to one) plus that
//! connection: [`MemClient::send`] and [`MemClient::send_with`] queue
//! frames into the switch, [`MemClient::recv`] takes frames out, and
//! [`MemClient::wait`] sleeps until frames arrive (so an idle program uses
//! no CPU). One thread owns a connection (`&mut self`).
//!
//! ```no_run
//! use std::time::Duration;
//! use mswitch::client::VportConn;
//!
//! # fn main() -> Result<(), String> {
//! let mut port = VportConn::connect(None, "sw0", "app1")?;
//! // On a demux switch: the packets of this tuple come here.
//! port.bind("udp:10.0.0.2:7777")?;
//! loop {
//!     port.wait(Some(Duration::from_secs(1)));
//!     let mut answers = Vec::new();
//!     port.recv(64, |frame| answers.push(frame.to_vec()));
//!     port.send(answers.iter().map(Vec::as_slice));
//! }
//! # }
//! ```
//!
//! `examples/smolapp` runs a TCP/IP stack (smoltcp) over one.

pub use crate::control::client::VportConn;
pub use crate::control::proto::VportInfo;
pub use crate::port::MemClient;
