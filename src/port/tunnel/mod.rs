//! VXLAN and Geneve tunnel ports: L2 frames carried between hosts in UDP.
//!
//! A tunnel port is a [`crate::port::Port`] like any other; its outside
//! world is one remote tunnel endpoint. Layout: [`header`] (the wire codec,
//! no I/O), [`socket`] (the kernel UDP socket and its sends) and
//! [`rxbatch`] (its receives and the cursor over them): the only OS code,
//! [`endpoint`] (one socket shared by the ports that use the same local
//! address and UDP port, and the demultiplexing to them), [`port`] (the
//! port), [`geneve_opts`] (Geneve options as `tun_metadataN` fields:
//! a switch's TLV table, and the process registry of tables),
//! [`config`] (its options and their text), [`route`] (the egress
//! interface of a remote, for status), [`wire`] (what an endpoint moves
//! datagrams over: the socket, or an in-memory wire for `mswitch bench`).
//!
//! Why a kernel UDP socket, when Open vSwitch's userspace datapath builds
//! the outer Ethernet/IP/UDP headers itself and sends through the bridge
//! port that owns `local_ip`: the kernel then does the underlay route,
//! neighbour resolution, the source address and path MTU, for any
//! underlay interface (not only one attached to the switch), with no ARP
//! or route cache to keep in step with the host's. It costs a system call
//! per batch (`sendmmsg`/`recvmmsg`, up to 64 datagrams each) and the
//! kernel's UDP path per datagram, or, with UDP segmentation offload, per
//! run of equal datagrams to one remote; BENCHMARKS.md measures it.
//!
//! The outer UDP source port is one of [`socket::SOURCE_PORTS`] per
//! socket, picked by a hash of the inner flow ([`header::flow_hash`]), so
//! an ECMP underlay spreads a tunnel's flows and keeps each in order.
//!
//! Known differences from Open vSwitch: it hashes into its whole source
//! port range, mswitch into those few ports; `df_default=false` and
//! `local_ip=flow` are refused; over IPv6 the UDP checksum is always
//! sent, and over IPv4 too where segmentation offload is on (it needs the
//! checksum: see [`socket`]); a port with a fixed `tos` does not copy the
//! inner ECN bits ([`inherit`]); a `remote=flow` port sends over one
//! family, its socket's ([`addrs`]).
//!
//! Receiving: the worker that reads a socket hands its own port's frames
//! to the switch where the socket received them, in the receive batch
//! ([`crate::port::Port::receive_direct`]: no copy besides the kernel's),
//! each run of one sender and VNI with its tunnel metadata
//! ([`crate::packet::TunMeta`]; IPv4 or IPv6 addresses, [`addrs`]). Frames for sibling ports on the same
//! socket are copied into their incoming rings, with their metadata in a
//! side array beside the ring ([`crate::packet::TunMetaSlots`], filled
//! before the slot is published), which the switch hands to the module
//! with the batch; a port reads its ring before the socket, so a flow's
//! frames keep their order. A
//! port with `remote=flow` or `out_key=flow` takes frames straight from
//! the switch with the metadata the module chose for each
//! ([`crate::port::Port::transmit_tunnel`]); a fixed port takes them
//! straight too ([`crate::port::Port::transmit`]), sent with its own
//! remote and key.
//! A packet the module sends to the controller takes its metadata along
//! ([`crate::switch::PacketIn::tun`]) into the packet-in's match.
//!
//! Geneve options: the receive path hands a frame's options to the switch
//! with the frame (one slice per frame beside a direct run; for a frame
//! queued on a ring, kept beside its slot in storage made the first time
//! the port sees options:
//! [`crate::packet::TunMetaSlots::store_with_options`]) and drops a frame
//! with a critical option that no switch's TLV table maps; the `flow`
//! module reads the rest into `tun_metadataN`. A Geneve port gets every
//! frame's metadata ([`crate::port::Port::wants_tunnel_meta`]) and sends
//! the fields a frame has as options; a fixed port's frames without any
//! still share one header per batch.

pub mod addrs;
pub mod config;
pub mod endpoint;
pub mod geneve_opts;
pub mod header;
pub mod inherit;
pub mod port;
pub mod route;
pub mod rxbatch;
pub mod socket;
pub mod wire;

pub use config::TunnelConfig;
pub use header::{Encap, Proto};
pub use port::{TunnelError, TunnelPort};
