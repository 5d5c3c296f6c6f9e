//! Control: the daemon that hosts switches, its Unix-socket protocol, the
//! `mswitch ctl` commands and the client library that attaches other
//! programs to virtual ports.

pub mod capture;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod limits;
pub mod metrics;
pub mod ofagent;
pub mod perms;
pub mod proto;
pub mod top;
pub mod vswitchd;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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

/// Whether `dir` is the daemon's own default directory (not one chosen
/// with `--ctl` or `MSWITCH_CTL`), which it keeps private.
fn is_own_dir(dir: &Path) -> bool {
    std::env::var_os("MSWITCH_CTL").is_none() && default_ctl_path().parent() == Some(dir)
}

/// Binds a Unix socket at `path`, replacing a stale socket nobody answers
/// on; a live one is an error `busy PATH`. Its directory is made, or
/// checked, and the socket gets fixed modes as [`perms`] says.
pub fn bind_unix(path: &Path, busy: &str) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        perms::prepare_dir(dir, is_own_dir(dir))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        match UnixStream::connect(path) {
            Ok(_) => return Err(format!("{busy} {}", path.display())),
            Err(_) => std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?,
        }
    }
    perms::bind_socket(path)
}
