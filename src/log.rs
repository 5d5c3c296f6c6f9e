//! Logging: `tracing` events with a level and a UTC timestamp, on standard
//! error. `-v` (debug) and `-vv` (trace) raise the level, `RUST_LOG`
//! (e.g. `RUST_LOG=mswitch=debug`) overrides it; `--log-file FILE` points
//! standard error at FILE, reopened on SIGHUP so that `logrotate` can move
//! the file away (its `postrotate` sends the signal, as for Open vSwitch).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The file standard error goes to, if any (for [`reopen`]).
static FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Starts logging at `verbose` (0 info, 1 debug, 2 or more trace) unless
/// `RUST_LOG` says otherwise. Later calls change nothing.
pub fn init(verbose: u8) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        })
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 0)
        .with_ansi(false)
        .try_init();
}

/// Sends standard error (and so the log) to `path`, appending.
pub fn to_file(path: &Path) -> Result<(), String> {
    crate::sys::redirect_stdio(Some(path), false)
        .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
    remember_file(path);
    Ok(())
}

/// Remembers `path` as the log file that [`reopen`] opens again, when
/// standard error was pointed there some other way.
pub fn remember_file(path: &Path) {
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
}

/// Opens the log file again (after SIGHUP): a rotated file is left to
/// `logrotate`, new lines go to a new file at the same path.
pub fn reopen() {
    let _ = reopen_file();
}

/// As [`reopen`], for `ovs-appctl vlog/reopen`: says whether a log file is
/// configured and whether it could be opened again.
pub fn reopen_file() -> Result<(), String> {
    let f = FILE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(p) = f else {
        return Err("Logging to file not configured".into());
    };
    match crate::sys::redirect_stdio(Some(&p), false) {
        Ok(()) => {
            tracing::info!("log file {} reopened", p.display());
            Ok(())
        }
        Err(e) => {
            tracing::warn!("cannot reopen log file {}: {e}", p.display());
            Err(format!("cannot reopen {}: {e}", p.display()))
        }
    }
}
