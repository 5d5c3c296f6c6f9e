//! Resources and their limits: the heap's free memory, the open-file
//! limit, and the peer of a Unix socket.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// Returns the free memory of the allocator's heaps (every thread's arena)
/// to the system. Called after large frees (a destroyed switch, a flushed
/// flow table): glibc keeps freed memory of other threads' arenas
/// otherwise, so a daemon's resident size would stay at its peak.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), if it can be read.
pub fn fd_limit() -> Option<u64> {
    // SAFETY: getrlimit writes one live struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut r) == 0).then_some(r.rlim_cur)
    }
}

/// The uid of the process at the other end of `s` (`SO_PEERCRED`).
pub fn peer_uid(s: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

/// Sends what of `data` fits into `fd`'s socket buffer now, without
/// blocking and without SIGPIPE; the bytes sent, if any.
pub fn send_now(fd: &impl AsRawFd, data: &[u8]) -> Option<usize> {
    // SAFETY: sends from a live buffer of its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_limits_are_read() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a), Some(crate::sys::euid()));
        assert_eq!(send_now(&a, b"hi"), Some(2));
        drop(b);
        assert_eq!(send_now(&a, b"hi"), None, "no SIGPIPE, an error");
        assert!(fd_limit().is_some_and(|n| n > 0));
        trim();
    }
}
