//! The Unix sockets that vhost-user and virtio-user ports listen on.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("exists and is not a socket")]
    NotASocket,
    #[error("{what}: {err}")]
    Os { what: &'static str, err: io::Error },
}

/// Binds PATH, non-blocking, replacing a socket left behind by a process
/// that is gone (nobody accepts on it). A live socket or any other file at
/// PATH is left alone and refused.
pub fn bind_replacing_stale(path: &Path) -> Result<UnixListener, BindError> {
    let os = |what: &'static str| move |err: io::Error| BindError::Os { what, err };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BindError::NotASocket);
        }
        if UnixStream::connect(path).is_ok() {
            return Err(os("bind")(io::Error::from(io::ErrorKind::AddrInUse)));
        }
        std::fs::remove_file(path).map_err(os("remove stale socket"))?;
    }
    let l = UnixListener::bind(path).map_err(os("bind"))?;
    l.set_nonblocking(true).map_err(os("bind"))?;
    Ok(l)
}

/// The next protocol connection: accepted on `listener` (server mode,
/// waiting up to `wait` for one) or made to `path` (client mode, at once).
/// `None` if there was none yet; a client should pause before it retries.
pub fn accept_or_connect(
    listener: Option<&UnixListener>,
    path: &Path,
    wait: Duration,
) -> Option<UnixStream> {
    match listener {
        Some(l) => l.accept().map(|(s, _)| s).ok().or_else(|| {
            crate::sys::poll_readable(l.as_raw_fd(), Some(wait));
            None
        }),
        None => UnixStream::connect(path).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_are_replaced_and_live_ones_and_files_refused() {
        let dir = std::env::temp_dir().join(format!("msw-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        let l = bind_replacing_stale(&p).unwrap();
        assert!(matches!(
            bind_replacing_stale(&p),
            Err(BindError::Os { .. })
        ));
        drop(l); // the file stays, nobody listens: stale
        let l = bind_replacing_stale(&p).unwrap();
        drop(l);
        let f = dir.join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            bind_replacing_stale(&f),
            Err(BindError::NotASocket)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
