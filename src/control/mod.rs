//! Control: the daemon that hosts switches, its Unix-socket protocol, the
//! `mswitch ctl` commands and the client library that attaches other
//! programs to virtual ports.

pub mod cli;
pub mod client;
pub mod daemon;
pub mod proto;

use std::path::PathBuf;

/// Where the control socket lives unless `--ctl` or `MSWITCH_CTL` says otherwise:
/// `/run/mswitch/mswitch.sock` for root, else under `$XDG_RUNTIME_DIR` or `/tmp`.
pub fn default_ctl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MSWITCH_CTL") {
        return PathBuf::from(p);
    }
    if crate::sys::euid() == 0 {
        return PathBuf::from("/run/mswitch/mswitch.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("mswitch/mswitch.sock"),
        None => PathBuf::from(format!("/tmp/mswitch-{}/mswitch.sock", crate::sys::euid())),
    }
}

pub use crate::port::spec::{PortKind, PortSpec, valid_name};
