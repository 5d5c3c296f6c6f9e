//! Who may reach the daemon's sockets: fixed modes for the control
//! socket's directory and for every Unix socket the daemon creates,
//! whatever the umask, and refusal of a directory someone else could have
//! prepared.
//!
//! By default only the daemon's user reaches its sockets: the daemon's own
//! directory (the default `/run/mswitch`, `$XDG_RUNTIME_DIR/mswitch` or
//! `/tmp/mswitch-UID`) is `0700` and its sockets `0600`. With `--group
//! NAME` (for operators who should not be root) the directory is `0750`
//! and the sockets `0660`, both owned by that group.
//!
//! A directory the daemon did not create is used only if a stranger could
//! not have put something in it: it must be a real directory (not a
//! symbolic link), owned by the daemon's user (or by root when it is not
//! the daemon's own directory), and not writable by group or others unless
//! it has the sticky bit (as `/tmp`). The daemon's own directory must be
//! owned by the daemon's user and not writable by anyone else; looser read
//! or search bits on it are narrowed to the fixed mode.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Mutex;

/// The group given access to the daemon's directory and sockets, if any.
static GROUP: Mutex<Option<u32>> = Mutex::new(None);

/// Gives group `gid` (or nobody but the owner, with `None`) access to the
/// sockets and the directory the daemon makes from now on.
pub fn set_group(gid: Option<u32>) {
    *GROUP.lock().unwrap_or_else(|e| e.into_inner()) = gid;
}

/// Group `name` (a name or a number) as `--group` takes it.
pub fn parse_group(name: &str) -> Result<u32, String> {
    crate::sys::group_id(name).map_err(|e| format!("--group {name}: {e}"))
}

fn group() -> Option<u32> {
    *GROUP.lock().unwrap_or_else(|e| e.into_inner())
}

/// The mode of a socket the daemon creates.
pub fn socket_mode() -> u32 {
    if group().is_some() { 0o660 } else { 0o600 }
}

/// The mode of the daemon's own directory.
pub fn dir_mode() -> u32 {
    if group().is_some() { 0o750 } else { 0o700 }
}

/// Makes sure `dir` is fit to hold the daemon's sockets, creating it (and
/// its missing parents) if it does not exist. `own`: it is the daemon's own
/// directory (the default one), which gets exactly [`dir_mode`] and the
/// group; otherwise an existing directory is only checked.
pub fn prepare_dir(dir: &Path, own: bool) -> Result<(), String> {
    let show = dir.display();
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            match std::fs::create_dir(dir) {
                Ok(()) => return set_mode_and_group(dir),
                // Made meanwhile by someone else: checked below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {show}: {e}")),
            }
        }
        Err(e) => return Err(format!("cannot use {show}: {e}")),
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot use {show}: {e}"))?;
    check_dir(dir, &meta, own, crate::sys::euid())?;
    if own {
        set_mode_and_group(dir)?;
    }
    Ok(())
}

/// Why an existing directory must not hold the daemon's sockets, if it
/// must not (see the module's comment).
fn check_dir(dir: &Path, meta: &std::fs::Metadata, own: bool, euid: u32) -> Result<(), String> {
    let show = dir.display();
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{show} is a symbolic link: refusing to put sockets there"
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{show} exists and is not a directory"));
    }
    let owner = meta.uid();
    if owner != euid && (own || owner != 0) {
        return Err(format!(
            "{show} belongs to uid {owner}, not to this daemon's uid {euid}: refusing to use it (remove it, or choose another path with --ctl)"
        ));
    }
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && (own || !sticky) {
        return Err(format!(
            "{show} has mode {mode:04o}: group or others may write to it; refusing to use it (chmod go-w it, or remove it)"
        ));
    }
    Ok(())
}

/// Gives `dir` exactly [`dir_mode`], and the group if one was given.
fn set_mode_and_group(dir: &Path) -> Result<(), String> {
    if let Some(gid) = group() {
        std::os::unix::fs::lchown(dir, None, Some(gid))
            .map_err(|e| format!("cannot give {} to group {gid}: {e}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode()))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// Binds a Unix socket at `path` with exactly [`socket_mode`] (and the
/// group, if one was given), never more open at any moment.
pub fn bind_socket(path: &Path) -> Result<UnixListener, String> {
    let l = crate::sys::bind_unix_with_mode(path, socket_mode())
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    if let Some(gid) = group() {
        std::os::unix::fs::lchown(path, None, Some(gid))
            .map_err(|e| format!("cannot give {} to group {gid}: {e}", path.display()))?;
    }
    // The umask may have taken bits away (the owner's write bit, which
    // connecting needs): set the mode whole.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode()))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(mode: u32) -> (tempdir::Dir, std::fs::Metadata) {
        let d = tempdir::Dir::new();
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(mode)).unwrap();
        let m = std::fs::symlink_metadata(&d.0).unwrap();
        (d, m)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("mswitch-perms-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let euid = crate::sys::euid();
        let (d, m) = meta_of(0o700);
        // As if the daemon ran as another user than the directory's owner.
        let e = check_dir(&d.0, &m, true, euid + 1).unwrap_err();
        assert!(e.contains("belongs to uid"), "{e}");
        assert!(check_dir(&d.0, &m, true, euid).is_ok());
    }

    #[test]
    fn a_directory_others_may_write_is_refused_unless_sticky_and_shared() {
        let euid = crate::sys::euid();
        let (d, m) = meta_of(0o777);
        let e = check_dir(&d.0, &m, false, euid).unwrap_err();
        assert!(e.contains("mode 0777"), "{e}");
        let (d, m) = meta_of(0o1777);
        // A shared directory such as /tmp may hold a --ctl socket...
        assert!(check_dir(&d.0, &m, false, euid).is_ok());
        // ...but the daemon's own directory must be its own.
        assert!(check_dir(&d.0, &m, true, euid).is_err());
        let (d, m) = meta_of(0o755);
        assert!(check_dir(&d.0, &m, true, euid).is_ok());
    }

    #[test]
    fn groups_are_found_by_name_or_number() {
        assert_eq!(parse_group("root"), Ok(0));
        assert_eq!(parse_group("4242"), Ok(4242));
        let e = parse_group("no-such-group-here").unwrap_err();
        assert!(e.starts_with("--group no-such-group-here: "), "{e}");
        assert!(parse_group("a\0b").is_err());
    }

    #[test]
    fn a_socket_path_too_long_for_sockaddr_un_is_an_error() {
        let d = tempdir::Dir::new();
        let long = d.0.join("x".repeat(120));
        let e = bind_socket(&long).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(!long.exists());
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let d = tempdir::Dir::new();
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&d.0, &link).unwrap();
        let m = std::fs::symlink_metadata(&link).unwrap();
        let e = check_dir(&link, &m, false, crate::sys::euid()).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(prepare_dir(&link, false).is_err());
    }

    #[test]
    fn the_own_directory_and_its_socket_get_fixed_modes() {
        let d = tempdir::Dir::new();
        let own = d.0.join("own");
        prepare_dir(&own, true).unwrap();
        let m = std::fs::symlink_metadata(&own).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        // A looser but not writable mode is narrowed.
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_dir(&own, true).unwrap();
        let m = std::fs::symlink_metadata(&own).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        let sock = own.join("s.sock");
        let _l = bind_socket(&sock).unwrap();
        let m = std::fs::symlink_metadata(&sock).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
    }
}
