//! One interface, one daemon: an advisory lock per network interface that
//! a daemon holds while a port reads the interface through a socket
//! (`af_packet`, and `af_xdp`, which falls back to it). Two daemons with
//! sockets on one interface would each see, and forward, every frame; the
//! kernel does not stop that (it does for TAPs and XDP programs).
//!
//! The lock is `flock(2)` on `/run/mswitch-ifaces/net<NETNS>-<IFNAME>.lock`,
//! keyed by the network namespace (interface names are per namespace). It
//! goes away with its holder, crash included. The file holds the holder's
//! pid, for the error message. The holder removes the file before it lets
//! go; whoever locked a file meanwhile removed checks that the path still
//! names it, and tries again if not, so two never hold one name. A holder
//! that dies leaves its file, unlocked, for the next one to take. The
//! directory is apart from the control socket's, whose
//! mode is the operator's choice. A daemon that cannot use it (not root, or
//! a directory it does not own or others may write) takes no lock and says
//! so once in its log: the check is a safety net, not a permission.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Once;

use super::kernel::{KernelPortError, check_ifname};

/// Where the locks live.
const DIR: &str = "/run/mswitch-ifaces";

/// A held lock; dropping it removes its file and releases it.
#[derive(Debug)]
pub struct IfaceLock {
    path: PathBuf,
    _file: File,
}

impl Drop for IfaceLock {
    fn drop(&mut self) {
        // Still held: anyone who locks this file after us finds it gone
        // from the path, and makes a new one.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Tries at taking a lock whose file keeps being removed under us.
const ATTEMPTS: usize = 8;

impl IfaceLock {
    /// Takes the lock of interface `ifname` in the calling thread's network
    /// namespace. `Ok(None)` when locks cannot be used here (see the module
    /// documentation); an error naming the holder when another process
    /// holds it.
    pub fn take(ifname: &str) -> Result<Option<IfaceLock>, KernelPortError> {
        check_ifname(ifname)?;
        let Some(dir) = usable_dir(Path::new(DIR)) else {
            return Ok(None);
        };
        let Ok(ns) = std::fs::metadata("/proc/thread-self/ns/net") else {
            return Ok(None);
        };
        Self::take_in(&dir, ns.ino(), ifname)
    }

    fn take_in(dir: &Path, netns: u64, ifname: &str) -> Result<Option<IfaceLock>, KernelPortError> {
        let path = dir.join(format!("net{netns}-{ifname}.lock"));
        sweep(dir, &path);
        for _ in 0..ATTEMPTS {
            if let Some(l) = Self::try_take(&path, ifname)? {
                return Ok(l);
            }
        }
        warn_once(&format!(
            "cannot lock {}: it keeps changing",
            path.display()
        ));
        Ok(None)
    }

    /// One try: `None` if the file we locked was removed meanwhile.
    #[allow(clippy::option_option)]
    fn try_take(path: &Path, ifname: &str) -> Result<Option<Option<IfaceLock>>, KernelPortError> {
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                warn_once(&format!("cannot use {}: {e}", path.display()));
                return Ok(Some(None));
            }
        };
        match file.try_lock() {
            Ok(()) => {
                let same = match (file.metadata(), std::fs::symlink_metadata(path)) {
                    (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                    _ => false,
                };
                if !same {
                    return Ok(None); // its holder removed it as it let go
                }
                // Who holds it, for the next one's error message.
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                Ok(Some(Some(IfaceLock {
                    path: path.to_path_buf(),
                    _file: file,
                })))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = Read::by_ref(&mut file).take(16).read_to_string(&mut pid);
                let by = match pid.trim().parse::<u32>() {
                    Ok(p) => format!(" (pid {p})"),
                    Err(_) => String::new(),
                };
                Err(KernelPortError::Other(format!(
                    "interface '{ifname}' is already attached by another mswitch process{by}"
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                warn_once(&format!("cannot lock {}: {e}", path.display()));
                Ok(Some(None))
            }
        }
    }
}

/// Most stale files one take removes (each costs an open and a lock).
const SWEEP_MAX: usize = 64;

/// Removes lock files of holders that died (unlocked files), other than
/// `keep`, so that killed daemons do not fill the directory with names of
/// interfaces that never come back. Safe by the same rule as a release: a
/// file is removed while locked, and whoever locks it afterwards finds the
/// path gone and makes a new one.
fn sweep(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stale = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p != keep && p.extension().is_some_and(|x| x == "lock"));
    for p in stale.take(SWEEP_MAX) {
        let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p)
        else {
            continue; // gone meanwhile, or a symlink: not ours to touch
        };
        if f.try_lock().is_err() {
            continue; // held: a live daemon's
        }
        let same = match (f.metadata(), std::fs::symlink_metadata(&p)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        if same {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// `dir`, made if missing (mode 0755), if it is ours and only we may
/// write it; `None` (said once in the log) otherwise.
fn usable_dir(dir: &Path) -> Option<PathBuf> {
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir);
    let why = match std::fs::symlink_metadata(dir) {
        Err(e) => format!("{e}"),
        Ok(m) if !m.is_dir() => "not a directory".into(),
        Ok(m) if m.uid() != crate::sys::euid() => "owned by another user".into(),
        Ok(m) if m.mode() & 0o022 != 0 => "writable by others".into(),
        Ok(_) => return Some(dir.to_path_buf()),
    };
    warn_once(&format!(
        "interface locks off ({}: {why}): another daemon may attach the same interfaces",
        dir.display()
    ));
    None
}

fn warn_once(msg: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| tracing::warn!("{msg}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = std::env::temp_dir().join(format!("mswitch-iflock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = IfaceLock::take_in(&dir, 7, "veth0").unwrap().unwrap();
        let e = IfaceLock::take_in(&dir, 7, "veth0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'veth0'"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        // Another namespace, another interface: other locks.
        let _other_ns = IfaceLock::take_in(&dir, 8, "veth0").unwrap().unwrap();
        let _other_if = IfaceLock::take_in(&dir, 7, "veth1").unwrap().unwrap();
        // A contender that opened the file before the holder let go.
        let stale = File::open(dir.join("net7-veth0.lock")).unwrap();
        drop(first);
        assert!(!dir.join("net7-veth0.lock").exists(), "removed on release");
        stale.try_lock().unwrap(); // locks a file no path names any more
        let again = IfaceLock::take_in(&dir, 7, "veth0").unwrap();
        assert!(again.is_some(), "a new file, not the stale one");
        drop(again);
        // A symlink planted as a lock file is not followed.
        let target = dir.join("target");
        std::fs::write(&target, b"x").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("net9-eth9.lock")).unwrap();
        assert!(IfaceLock::take_in(&dir, 9, "eth9").unwrap().is_none());
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_of_dead_holders_are_swept_and_held_ones_kept() {
        let dir = std::env::temp_dir().join(format!("mswitch-iflock-s{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A killed daemon's file: there, unlocked.
        std::fs::write(dir.join("net7-dead0.lock"), b"1").unwrap();
        let held = IfaceLock::take_in(&dir, 7, "live0").unwrap().unwrap();
        let target = dir.join("target");
        std::fs::write(&target, b"x").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("net7-link0.lock")).unwrap();
        let _new = IfaceLock::take_in(&dir, 7, "veth5").unwrap().unwrap();
        assert!(!dir.join("net7-dead0.lock").exists(), "stale file swept");
        assert!(dir.join("net7-live0.lock").exists(), "held file kept");
        assert!(
            std::fs::symlink_metadata(dir.join("net7-link0.lock")).is_ok(),
            "symlinks are not touched"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mswitch-iflock-w{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(usable_dir(&dir).is_none());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(usable_dir(&dir).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
