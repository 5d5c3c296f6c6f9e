//! Bounded waits on descriptors another process controls.
//!
//! An eventfd shares one open file description with every process that
//! holds it, so a peer can clear `O_NONBLOCK` on it (`fcntl(F_SETFL)`), and
//! then fill its counter: our next `write` would block until the peer
//! reads. Linux offers no per-call "do not block" for eventfd writes (see
//! [`super::EventFd::notify_untrusted`]), so instead a write that blocks is
//! interrupted: the calling thread marks itself busy in a slot of a fixed
//! table (two atomic stores around the syscall, nothing else on the common
//! path), and a watchdog thread that looks every [`PERIOD`] sends a thread
//! that stayed in the same call for a whole period a signal whose handler
//! does nothing and is installed without `SA_RESTART`. The syscall then
//! fails with `EINTR`, and the caller learns that its peer made it block.
//!
//! A call that does not block is never interrupted (eventfd checks for a
//! pending signal only while it waits), so a late signal is harmless: at
//! worst it makes a later blocking call (`epoll_wait`, `poll`) return early,
//! which every caller handles. Signals go by kernel thread id with `tgkill`,
//! so they can only reach threads of this process.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// How often the watchdog looks while guarded calls are being made: a
/// blocked call lasts at most two periods.
pub const PERIOD: Duration = Duration::from_millis(10);

/// How often it looks once no guarded call was made for [`IDLE_AFTER`]
/// periods (an idle switch makes none), so an idle process is not woken a
/// hundred times a second. A call that blocks then may last two of these.
const IDLE_PERIOD: Duration = Duration::from_millis(100);
const IDLE_AFTER: u32 = 100;

/// Threads that may be in a guarded call at once; more fall back to an
/// unguarded call (the caller checks readiness first).
const SLOTS: usize = 256;

/// The interrupting signal. Its default action is to ignore it, so one
/// that arrives before the handler is installed does no harm.
const SIGNAL: libc::c_int = libc::SIGURG;

struct Slot {
    /// Kernel thread id of the owner, 0 when free.
    tid: AtomicI32,
    /// An odd sequence number while the owner is in a guarded call, the
    /// next even one after it (0 before the first): the watchdog sees both
    /// a call that lasts and that calls are being made.
    busy: AtomicU64,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        tid: AtomicI32::new(0),
        busy: AtomicU64::new(0),
    }
}; SLOTS];

/// This thread's slot; released when the thread exits.
struct Mine {
    slot: Option<usize>,
    seq: Cell<u64>,
}

impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TABLE[i].busy.store(0, Ordering::SeqCst);
            TABLE[i].tid.store(0, Ordering::SeqCst);
        }
    }
}

thread_local! {
    static MINE: Mine = Mine { slot: claim(), seq: Cell::new(0) };
}

fn claim() -> Option<usize> {
    start();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    (0..SLOTS).find(|&i| {
        TABLE[i]
            .tid
            .compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

extern "C" fn interrupted(_: libc::c_int) {}

/// Installs the handler and starts the watchdog, once per process.
fn start() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // action; the handler is a plain function that touches nothing.
        // No SA_RESTART: the point is that the interrupted call fails.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = interrupted as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&raw mut sa.sa_mask);
            libc::sigaction(SIGNAL, &raw const sa, std::ptr::null_mut());
        }
        let _ = std::thread::Builder::new()
            .name("mswitch-watchdog".into())
            .spawn(watch);
    });
}

fn watch() {
    let mut seen = vec![0u64; SLOTS];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut quiet = 0u32;
    loop {
        std::thread::sleep(if quiet >= IDLE_AFTER {
            IDLE_PERIOD
        } else {
            PERIOD
        });
        quiet = quiet.saturating_add(1);
        for (i, s) in TABLE.iter().enumerate() {
            let busy = s.busy.load(Ordering::SeqCst);
            let tid = s.tid.load(Ordering::SeqCst);
            if busy != seen[i] {
                quiet = 0;
            }
            if busy % 2 == 1 && busy == seen[i] && tid != 0 {
                // SAFETY: tgkill only sends a signal; restricted to our own
                // thread group, a stale id reaches at most one of our threads
                // (whose handler does nothing).
                unsafe {
                    libc::syscall(libc::SYS_tgkill, pid, tid, SIGNAL);
                }
            }
            seen[i] = busy;
        }
    }
}

/// The outcome of a guarded call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// The call returned this (a syscall's return value, `-1` on error with
    /// `errno` set).
    Done(isize),
    /// The call blocked and was interrupted.
    Stalled,
}

/// Runs `call`, a syscall on a descriptor a peer may have made blocking,
/// interrupting it if it blocks for more than a [`PERIOD`] or two (or,
/// the first call after a quiet second, up to two idle periods). Returns
/// `None` if this thread has no slot (the caller then must not make a
/// call that can block).
pub fn guarded(call: impl FnOnce() -> isize) -> Option<Guarded> {
    MINE.try_with(|m| {
        let i = m.slot?;
        let seq = m.seq.get().wrapping_add(2) | 1;
        m.seq.set(seq);
        TABLE[i].busy.store(seq, Ordering::SeqCst);
        let r = call();
        let err = std::io::Error::last_os_error().raw_os_error();
        TABLE[i].busy.store(seq.wrapping_add(1), Ordering::Release);
        Some(if r < 0 && err == Some(libc::EINTR) {
            Guarded::Stalled
        } else {
            Guarded::Done(r)
        })
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn a_blocked_eventfd_write_is_interrupted() {
        // SAFETY: plain syscall; a blocking eventfd, as a peer would leave it.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: the fd was just created and is owned by nobody else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let w = |v: u64| {
            guarded(|| {
                // SAFETY: writes 8 bytes from a live u64 to our own fd.
                unsafe { libc::write(fd.as_raw_fd(), (&raw const v).cast(), 8) }
            })
        };
        assert_eq!(w(u64::MAX - 1), Some(Guarded::Done(8)));
        let t = Instant::now();
        assert_eq!(w(1), Some(Guarded::Stalled));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
