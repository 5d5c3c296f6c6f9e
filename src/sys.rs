//! The operating-system boundary: shared memory regions, eventfds, doorbell
//! pipes, epoll, CPU affinity and resource limits.
//!
//! Everything that calls the OS through `libc` lives here, so the rest of the
//! crate can deny `unsafe` except where it reads and writes shared packet memory.
//! Each wrapper owns its file descriptor and closes it on drop.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

pub mod res;
pub mod sigbus;
pub mod watchdog;

/// Converts a `-1` return of a libc call into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A page-aligned memory region backed by a memfd, mapped read-write and
/// shared, so the same bytes can later be mapped by another process. The
/// size of a region this process creates is sealed: a process it is shared
/// with cannot truncate it under our mapping (which would make every access
/// past the new end fault with SIGBUS).
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the region is plain shared memory; all concurrent access to its bytes
// goes through atomics or through ring ownership rules documented in `packet`.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself holds no interior state besides the mapping.
unsafe impl Sync for Region {}

impl Region {
    /// Creates a zero-filled region of `len` bytes (rounded up to a page).
    pub fn new(name: &str, len: usize) -> io::Result<Region> {
        let cname = std::ffi::CString::new(format!("mswitch:{name}"))
            .unwrap_or_else(|_| c"mswitch".to_owned());
        // SAFETY: `cname` is a valid NUL-terminated string; flags are constants.
        let fd = check(unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = len.max(1).next_multiple_of(page_size());
        let flen = libc::off_t::try_from(len).map_err(|_| io::Error::other("region too large"))?;
        // SAFETY: `fd` is a valid memfd.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), flen) })?;
        // SAFETY: fcntl on a valid memfd with constant arguments.
        check(unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        })?;
        Self::map(fd, len)
    }

    /// Maps an existing memory file descriptor of `len` bytes.
    pub fn map(fd: OwnedFd, len: usize) -> io::Result<Region> {
        // SAFETY: a fresh shared mapping of a file we hold open; the kernel picks
        // the address, so no existing Rust object is aliased.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region { ptr, len, fd })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd behind the region, to hand to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; no references into
        // the region outlive `self` (they all borrow from it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// A non-blocking eventfd used as a doorbell between threads or processes.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall with constant flags.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: the fd was just created and is owned by nobody else.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wraps an eventfd received from elsewhere.
    pub fn from_owned(fd: OwnedFd) -> EventFd {
        EventFd { fd }
    }

    /// Rings the doorbell. A full counter (EAGAIN) already means "signalled".
    /// Only for eventfds no other process holds (see [`Self::notify_untrusted`]).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own fd.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }

    /// Rings an eventfd another process holds; false if that process made
    /// it block (see [`eventfd_notify_untrusted`]).
    pub fn notify_untrusted(&self) -> bool {
        eventfd_notify_untrusted(self.fd.as_raw_fd())
    }

    /// Clears the doorbell; returns true when it had been rung. Never
    /// blocks, even if another process holding the eventfd made it blocking
    /// (see [`eventfd_drain`]).
    pub fn drain(&self) -> bool {
        eventfd_drain(self.fd.as_raw_fd())
    }

    /// Waits until the doorbell rings or `timeout` passes; returns true if rung.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        poll_readable(self.fd.as_raw_fd(), timeout)
    }
}

impl From<EventFd> for OwnedFd {
    fn from(e: EventFd) -> OwnedFd {
        e.fd
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// Eventfds shared with another process (vhost-user kicks and calls) share
// one open file description with it, so the peer can clear O_NONBLOCK. What
// these two rely on, in Linux's fs/eventfd.c (checked on the 6.18 kernel
// this runs on: the indexed kernel sources were older):
// - eventfd_read is a `read_iter` that returns -EAGAIN on a zero counter
//   when the file is O_NONBLOCK *or* the kiocb has IOCB_NOWAIT, and
//   do_eventfd sets FMODE_NOWAIT, so preadv2(RWF_NOWAIT) never blocks
//   whatever the file's flags (since Linux 5.12; older kernels refuse the
//   flag with EOPNOTSUPP).
// - eventfd_write is a plain `write` (no `write_iter`) that looks only at
//   O_NONBLOCK; pwritev2(RWF_NOWAIT) fails with EOPNOTSUPP. So a write to a
//   counter the peer filled (0xffff_ffff_ffff_fffe) blocks on a file the
//   peer made blocking; polling POLLOUT first or setting O_NONBLOCK again
//   before the write both leave a window the peer can win. Instead the
//   write runs under the watchdog (`watchdog::guarded`), which interrupts
//   it if it blocks, and the caller drops the peer.

/// Rings an eventfd that another process shares; returns false if that
/// process made it block (the write was interrupted after at most a couple
/// of [`watchdog::PERIOD`]s): the caller should drop the peer. A full
/// counter with O_NONBLOCK set (EAGAIN) already means "signalled".
pub fn eventfd_notify_untrusted(fd: RawFd) -> bool {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a caller-owned fd.
    let write = || unsafe { libc::write(fd, (&raw const one).cast(), 8) };
    match watchdog::guarded(write) {
        Some(watchdog::Guarded::Done(_)) => true,
        Some(watchdog::Guarded::Stalled) => false,
        // No watchdog slot for this thread: write only when the counter has
        // room (racy, but only with more than 256 threads calling).
        None => {
            let mut p = PollFd {
                fd,
                events: POLL_OUT,
                revents: 0,
            };
            if poll(std::slice::from_mut(&mut p), Some(Duration::ZERO)) > 0
                && p.revents & POLL_OUT != 0
            {
                write();
            }
            true
        }
    }
}

/// Clears an eventfd (ours or shared with another process); returns true
/// when it had been rung. Never blocks: see the note above.
pub fn eventfd_drain(fd: RawFd) -> bool {
    let mut v: u64 = 0;
    let mut iov = libc::iovec {
        iov_base: (&raw mut v).cast(),
        iov_len: 8,
    };
    // SAFETY: reads at most 8 bytes into a live u64 through one iovec.
    let n = unsafe { libc::preadv2(fd, &raw mut iov, 1, -1, libc::RWF_NOWAIT) };
    if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EOPNOTSUPP) {
        return n == 8;
    }
    // A kernel without RWF_NOWAIT on eventfds: a read that blocks is
    // interrupted.
    // SAFETY: as above, with read(2).
    let mut read = || unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
    match watchdog::guarded(&mut read) {
        Some(watchdog::Guarded::Done(n)) => n == 8,
        Some(watchdog::Guarded::Stalled) => false,
        None => poll_readable(fd, Some(Duration::ZERO)) && read() == 8,
    }
}

/// A doorbell between two processes: a pipe, both ends non-blocking.
///
/// Unlike an [`EventFd`], whose one open file is shared by everyone holding
/// it, each end of a pipe is its own open file: the peer holding the other
/// end cannot make ours blocking (`O_NONBLOCK` belongs to the open file), and
/// cannot fill a counter to make our `notify` block (a full pipe already
/// means "rung"). A doorbell made by [`Doorbell::new`] has both ends; one
/// received from another process has one (see [`Doorbell::from_owned`]).
#[derive(Debug)]
pub struct Doorbell {
    /// Readable while rung; `None` on a ring-only end.
    rd: Option<OwnedFd>,
    /// `None` on a wait-only end.
    wr: Option<OwnedFd>,
}

impl Doorbell {
    pub fn new() -> io::Result<Doorbell> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into a live array.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Doorbell {
            rd: Some(rd),
            wr: Some(wr),
        })
    }

    /// One end received from another process: a write end can only ring, a
    /// read end can only wait and drain. It is made non-blocking.
    pub fn from_owned(fd: OwnedFd) -> io::Result<Doorbell> {
        // SAFETY: fcntl on a descriptor we own, with constant arguments.
        let fl = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
        match fl & libc::O_ACCMODE {
            libc::O_RDONLY => Ok(Doorbell {
                rd: Some(fd),
                wr: None,
            }),
            libc::O_WRONLY => Ok(Doorbell {
                rd: None,
                wr: Some(fd),
            }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a doorbell must be one end of a pipe",
            )),
        }
    }

    /// The end that waits (what epoll watches).
    pub fn read_end(&self) -> Option<BorrowedFd<'_>> {
        self.rd.as_ref().map(|f| f.as_fd())
    }

    /// The end that rings.
    pub fn write_end(&self) -> Option<BorrowedFd<'_>> {
        self.wr.as_ref().map(|f| f.as_fd())
    }

    /// Rings the doorbell. A full pipe (EAGAIN) already means "rung".
    pub fn notify(&self) {
        if let Some(wr) = &self.wr {
            let one = 1u8;
            // SAFETY: writes 1 byte from a live u8 to our own non-blocking fd.
            unsafe {
                libc::write(wr.as_raw_fd(), (&raw const one).cast(), 1);
            }
        }
    }

    /// Clears the doorbell; returns true when it had been rung. Bounded: a
    /// peer that keeps ringing cannot keep us here.
    pub fn drain(&self) -> bool {
        let Some(rd) = &self.rd else { return false };
        let mut buf = [0u8; 512];
        let mut rung = false;
        for _ in 0..128 {
            // SAFETY: reads at most buf.len() bytes into a live buffer from
            // our own non-blocking fd.
            let n = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            rung = true;
            if (n as usize) < buf.len() {
                break;
            }
        }
        rung
    }

    /// Waits until the doorbell rings or `timeout` passes; returns true if
    /// rung (at once false on a ring-only end).
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        match &self.rd {
            Some(rd) => poll_readable(rd.as_raw_fd(), timeout),
            None => false,
        }
    }
}

fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(t) => libc::c_int::try_from(t.as_millis().max(u128::from(t > Duration::ZERO)))
            .unwrap_or(libc::c_int::MAX),
    }
}

/// Makes `fd` non-blocking (best effort: an fd that refuses stays as it was).
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a caller-owned fd with constant arguments; an invalid
    // fd only makes the calls fail.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// Waits for `fd` to become readable; returns true if it did.
pub fn poll_readable(fd: RawFd, timeout: Option<Duration>) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack.
    let n = unsafe { libc::poll(&raw mut p, 1, timeout_ms(timeout)) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// An epoll instance whose events carry a caller-chosen `u64` token.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall with constant flags.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: the fd was just created and is owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for readability, reporting `token` when it fires.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd and event struct; the kernel copies the struct.
        check(unsafe {
            libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &raw mut ev)
        })?;
        Ok(())
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event argument is ignored for DEL.
        check(unsafe {
            libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &raw mut ev)
        })?;
        Ok(())
    }

    /// Waits for events, appending their tokens to `out`.
    pub fn wait(&self, out: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
        self.wait_events(timeout, |e| out.push(e.u64))
    }

    /// Waits for events, appending their tokens to `out` with whether the
    /// descriptor reported an error or a hang-up (EPOLLERR, EPOLLHUP).
    pub fn wait_flagged(
        &self,
        out: &mut Vec<(u64, bool)>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let bad = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        self.wait_events(timeout, |e| out.push((e.u64, e.events & bad != 0)))
    }

    fn wait_events(
        &self,
        timeout: Option<Duration>,
        mut each: impl FnMut(&libc::epoll_event),
    ) -> io::Result<()> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: the kernel writes at most `evs.len()` events into the array.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as libc::c_int,
                timeout_ms(timeout),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        evs[..n as usize].iter().for_each(&mut each);
        Ok(())
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::other(format!("cpu {cpu} out of range")));
        }
        libc::CPU_SET(cpu, &mut set);
        check(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &raw const set,
        ))?;
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Raises the soft open-file limit to the hard limit: every port holds a few
/// descriptors (memory file, doorbells), and a switch has thousands of ports.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write one live struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const r);
        }
    }
}

/// CPU time (user + system) consumed by this process so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage writes one live struct.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut u);
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

/// Sends `data` and the descriptors `fds` over a Unix stream socket (SCM_RIGHTS).
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if data.is_empty() || fds.len() > 8 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "need data and at most 8 fds",
        ));
    }
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below refers to live
    // buffers (`iov`, `cbuf`) that outlive the sendmsg call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&raw const msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<RawFd>(),
                fds.len(),
            );
        }
        let n = libc::sendmsg(sock, &raw const msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < data.len() {
            // Only the first byte needs to carry the descriptors.
            let rest = &data[n as usize..];
            let m = libc::send(sock, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL);
            if m < 0 || (m as usize) < rest.len() {
                return Err(io::Error::other("short write on control socket"));
            }
        }
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and any descriptors sent with them.
/// Returns (bytes read, descriptors); 0 bytes means the peer closed.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cbuf = [0u64; 32];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in `send_with_fds`; the kernel writes at most the lengths
    // given, and we only read cmsgs it reports, with CMSG_* bounds.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = libc::recvmsg(sock, &raw mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fds = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for k in 0..len / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(k));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other("descriptors truncated on control socket"));
        }
        Ok((n as usize, fds))
    }
}

/// The signals a daemon's signal thread waits for: SIGHUP (reopen the log
/// file), and every signal whose default action would end the process
/// without cleaning up but that asks it to go: SIGINT, SIGTERM, SIGQUIT,
/// SIGUSR1, SIGUSR2 and SIGALRM stop it cleanly (XDP programs, TAPs and
/// socket files removed). Signals of a crash (SIGSEGV, SIGBUS...) are not
/// among them, and SIGKILL cannot be: what the kernel holds (XDP links,
/// TAP queues) goes with the process's descriptors, and the next daemon
/// replaces a stale socket file.
pub const DAEMON_SIGNALS: [i32; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

fn daemon_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for s in DAEMON_SIGNALS {
            libc::sigaddset(&raw mut set, s);
        }
        set
    }
}

/// The name of signal `sig` (`SIGTERM`), for log lines.
pub fn signal_name(sig: i32) -> String {
    let known = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGALRM, "SIGALRM"),
    ];
    known
        .iter()
        .find(|k| k.0 == sig)
        .map_or_else(|| format!("signal {sig}"), |k| k.1.to_owned())
}

/// Blocks the [`DAEMON_SIGNALS`] in the calling thread (and threads it
/// spawns afterwards) so that one thread can wait for them with
/// [`wait_signal`].
pub fn block_stop_signals() {
    let set = daemon_signals();
    // SAFETY: blocks signals of a valid set in this thread.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// Waits for one of the [`DAEMON_SIGNALS`] (which must be blocked);
/// returns its number.
pub fn wait_signal() -> i32 {
    let set = daemon_signals();
    // SAFETY: sigwait on a valid set of blocked signals.
    unsafe {
        let mut sig = 0;
        libc::sigwait(&raw const set, &raw mut sig);
        sig
    }
}

/// Effective user id.
/// Writes this process's id to `path` and holds a write lock on the file
/// for as long as the returned file is open, as Open vSwitch's daemons do
/// (`ovs-appctl` finds a daemon's pid as the lock's holder, so a stale
/// file from a dead process is recognised as such).
pub fn lock_pidfile(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: a zeroed flock is a valid argument; l_type etc. set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_SETLK with a flock we own, on a file descriptor we own.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is locked by another process", path.display()),
        ));
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// Sends standard error (and with `quiet`, standard input and output) to
/// `log` (appending) or to /dev/null.
pub fn redirect_stdio(log: Option<&std::path::Path>, quiet: bool) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let err = match log {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?,
        None => null.try_clone()?,
    };
    let targets: &[(RawFd, &std::fs::File)] = if quiet {
        &[(0, &null), (1, &null), (2, &err)]
    } else {
        &[(2, &err)]
    };
    for (fd, f) in targets {
        // SAFETY: dup2 onto a standard descriptor from a file we own.
        if unsafe { libc::dup2(f.as_raw_fd(), *fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Goes to the background as Open vSwitch's `--detach` does: forks; the
/// parent waits until the child calls [`Detached::ready`] (or exits) and
/// exits with 0 (or 1); the child starts a new session. Call it before any
/// thread is started: only the calling thread survives a fork.
pub fn detach() -> io::Result<Detached> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork in a process that has started no other thread (the
    // caller's contract); the child continues with its own copies.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        drop(wr);
        let mut b = [0u8; 1];
        // SAFETY: read of one byte into a buffer we own.
        let n = unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        std::process::exit(if n == 1 { 0 } else { 1 });
    }
    drop(rd);
    // SAFETY: setsid has no preconditions in a fresh child.
    unsafe { libc::setsid() };
    Ok(Detached { ready: Some(wr) })
}

/// Runs the rest of the program in a child process, again whenever it
/// dies of a signal that means a crash (as Open vSwitch's `--monitor`:
/// SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGXCPU, SIGXFSZ); the
/// monitor exits as the child does otherwise (an exit, SIGTERM, SIGKILL).
/// Returns in the child only. Restarts are 1 s after the crash (10 s when
/// the run lasted under 2 s), so a daemon that crashes at once does not
/// spin. Call it before any thread is started, as [`detach`].
pub fn monitor() -> io::Result<()> {
    const CRASH: [libc::c_int; 7] = [
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGSEGV,
        libc::SIGXCPU,
        libc::SIGXFSZ,
    ];
    loop {
        let started = std::time::Instant::now();
        // SAFETY: fork in a process that has started no other thread (the
        // caller's contract); the child continues with its own copies.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            return Ok(());
        }
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waits for our own child; `status` is ours to fill.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::WIFEXITED(status) {
            std::process::exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        if !CRASH.contains(&sig) {
            std::process::exit(128 + sig);
        }
        let pause = if started.elapsed() < Duration::from_secs(2) {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        eprintln!(
            "mswitch monitor: daemon {pid} died of signal {sig}; starting it again in {}s",
            pause.as_secs()
        );
        std::thread::sleep(pause);
    }
}

/// The child's end of [`detach`].
pub struct Detached {
    ready: Option<OwnedFd>,
}

impl Detached {
    /// Tells the waiting parent the daemon is up (it then exits).
    pub fn ready(&mut self) {
        if let Some(fd) = self.ready.take() {
            // SAFETY: write of one byte from a constant to a pipe we own.
            unsafe { libc::write(fd.as_raw_fd(), b"r".as_ptr().cast(), 1) };
        }
    }
}

/// Binds a listening Unix stream socket at `path` whose file is created
/// with at most `mode` (less if the umask takes more away): on Linux a
/// socket file takes the mode of its descriptor, so setting that before
/// `bind` leaves no moment when the file is more open than asked.
pub fn bind_unix_with_mode(
    path: &std::path::Path,
    mode: u32,
) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: a zeroed sockaddr_un is valid; the path is copied in below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path empty, too long or containing NUL",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments.
    let fd =
        check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fchmod of a descriptor we own.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) })?;
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` within its size.
    check(unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    })?;
    // SAFETY: listen(2) on a bound socket we own.
    check(unsafe { libc::listen(fd, 128) })?;
    Ok(std::os::unix::net::UnixListener::from(owned))
}

/// Takes an exclusive lock on `f` (flock) without waiting: `false` if
/// another open file description holds it. Released when `f` closes.
pub fn try_lock_exclusive(f: &std::fs::File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor `f` owns.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The id of group `name` (or a number given as such), from the system's
/// group database.
pub fn group_id(name: &str) -> io::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in group name"))?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: a zeroed group struct is a valid out-parameter.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives it and
    // only `gr_gid` (a plain number) is read afterwards.
    let r = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &raw mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut found,
        )
    };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    if found.is_null() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such group"));
    }
    Ok(grp.gr_gid)
}

pub fn euid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }
}

/// Waits until any of `fds` is readable or `timeout` passes; returns how
/// many are readable.
pub fn poll_any(fds: &[RawFd], timeout: Option<Duration>) -> usize {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a live array of `p.len()` pollfds.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms(timeout)) };
    usize::try_from(n).unwrap_or(0)
}

/// The index of a network interface, or 0 if there is none by that name.
pub fn if_nametoindex(name: &std::ffi::CStr) -> u32 {
    // SAFETY: `name` is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// Sets the calling thread's timer slack (how late the kernel may wake it
/// from a sleep to batch wake-ups).
pub fn set_timer_slack(slack: Duration) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            slack.as_nanos().max(1) as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

/// Readiness interest and result for [`poll`].
pub const POLL_IN: i16 = libc::POLLIN;
pub const POLL_OUT: i16 = libc::POLLOUT;
/// Error or hang-up (always reported).
pub const POLL_ERR: i16 = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;

/// One descriptor of a [`poll`] call.
#[derive(Clone, Copy, Debug)]
pub struct PollFd {
    pub fd: RawFd,
    pub events: i16,
    pub revents: i16,
}

/// Waits until one of `fds` is ready as asked (or fails), at most
/// `timeout`; fills in each `revents`. Returns how many are ready.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> usize {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.fd,
            events: f.events,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a live array of `p.len()` pollfds.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms(timeout)) };
    for (f, q) in fds.iter_mut().zip(&p) {
        f.revents = q.revents;
    }
    usize::try_from(n).unwrap_or(0)
}

/// Starts a non-blocking TCP connection to `addr`: the stream is returned
/// at once, and becomes writable when the connection is made or has failed
/// (then [`socket_error`] says why).
pub fn tcp_connect_start(addr: &std::net::SocketAddr) -> io::Result<std::net::TcpStream> {
    use std::net::SocketAddr;
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with constant arguments.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the sockaddr structs are plain data, zeroed then filled in;
    // the length passed is the size of the struct used.
    let r = unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                libc::connect(
                    fd,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            SocketAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_port = a.port().to_be();
                sa.sin6_addr.s6_addr = a.ip().octets();
                sa.sin6_scope_id = a.scope_id();
                libc::connect(
                    fd,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(std::net::TcpStream::from(owned))
}

/// The pending error of a socket (`SO_ERROR`), e.g. of a finished
/// non-blocking connect: `Ok` if there is none.
pub fn socket_error(fd: RawFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes of their sizes.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &raw mut len,
        )
    })?;
    if err == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(err))
    }
}

/// Starts fetching the cache line at `p` for reading. Only a hint: it never
/// faults and reads no data, even for an address that is not mapped. Used
/// to overlap the cache misses of a batch (frames another core wrote).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Like [`prefetch`], asking for the line ready to be written (PREFETCHW;
/// a NOP on processors without it).
#[inline(always)]
pub fn prefetch_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as for `prefetch`.
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_says_which_descriptors_hung_up() {
        let ep = Epoll::new().unwrap();
        let (quiet, rung, hung) = (Doorbell::new().unwrap(), Doorbell::new().unwrap(), {
            let d = Doorbell::new().unwrap();
            let rd = d.read_end().unwrap().try_clone_to_owned().unwrap();
            drop(d); // the only writer closes: the read end hangs up
            Doorbell::from_owned(rd).unwrap()
        });
        for (d, tok) in [(&quiet, 1), (&rung, 2), (&hung, 3)] {
            ep.add(d.read_end().unwrap().as_raw_fd(), tok).unwrap();
        }
        rung.notify();
        let mut out = Vec::new();
        ep.wait_flagged(&mut out, Some(Duration::ZERO)).unwrap();
        out.sort_unstable();
        assert_eq!(out, [(2, false), (3, true)]);
    }

    /// What a hostile peer does to an eventfd it shares: clears
    /// O_NONBLOCK, then empties or fills the counter.
    #[test]
    fn shared_eventfds_never_block() {
        let e = EventFd::new().unwrap();
        // SAFETY: fcntl on our own fd.
        assert_eq!(unsafe { libc::fcntl(e.as_raw_fd(), libc::F_SETFL, 0) }, 0);
        assert!(!e.drain(), "an empty counter reads as not rung, at once");
        assert!(e.notify_untrusted());
        assert!(e.drain());
        let full = u64::MAX - 1;
        // SAFETY: writes 8 bytes from a live u64 to our own fd.
        assert_eq!(
            unsafe { libc::write(e.as_raw_fd(), (&raw const full).cast(), 8) },
            8
        );
        let t = std::time::Instant::now();
        assert!(!e.notify_untrusted(), "a full counter on a blocking file");
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(e.drain());
        assert!(e.notify_untrusted());
    }
}
