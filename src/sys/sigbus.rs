//! A guard against SIGBUS from shared memory whose file another process
//! may shrink.
//!
//! Touching a page of a shared file mapping past the file's end raises
//! SIGBUS, whose default action kills the process. A vhost-user frontend
//! hands its memory over as a file it keeps, and may `ftruncate` it at any
//! time; a file sealed with `F_SEAL_SHRINK` cannot shrink and needs nothing
//! more (see [`can_shrink`]). Other mappings are registered here, in a
//! fixed table of atomics that the SIGBUS handler reads (registration and
//! removal happen in normal code, and take no lock the handler could need).
//! When a fault lies in a registered mapping, the handler maps anonymous
//! zero pages over the mapping from the faulting page to its end (one
//! `mmap(MAP_FIXED)`, which is async-signal-safe), marks the mapping
//! faulted and returns: the interrupted access completes on zeros, and the
//! owner, which checks [`Guard::faulted`], drops the peer. Any other SIGBUS
//! goes to the handler that was installed before ours (Rust's own, which
//! reports stack overflows), or, if there was none, the default action is
//! restored and the fault, repeated on return, kills the process as it
//! would have without us.
#![allow(unsafe_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Mappings that can be guarded at once (a vhost-user frontend has up to 8).
const SLOTS: usize = 1024;

struct Slot {
    /// Owned by a [`Guard`].
    claimed: AtomicBool,
    start: AtomicUsize,
    /// Non-zero while the slot describes a live mapping; written last.
    len: AtomicUsize,
    /// What the zero pages are aligned to (the mapping's page size).
    align: AtomicUsize,
    faulted: AtomicBool,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        claimed: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        align: AtomicUsize::new(4096),
        faulted: AtomicBool::new(false),
    }
}; SLOTS];

/// Handlers running now: removal waits for them, so a handler never maps
/// zeros over an address range that was unmapped (and maybe reused) after
/// it looked at the table.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// The SIGBUS action before ours, written once before ours is installed.
struct Prev(libc::sigaction);
// SAFETY: a plain C struct of integers and function pointers, never
// changed after it is stored.
unsafe impl Sync for Prev {}
// SAFETY: as above.
unsafe impl Send for Prev {}
static PREV: OnceLock<Prev> = OnceLock::new();

/// Whether another holder of `fd` can shrink its file: false if it is
/// sealed against shrinking (as QEMU's memory-backend-memfd is by default).
pub fn can_shrink(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: fcntl on a caller-owned fd with constant arguments; a file
    // that supports no seals (hugetlbfs without memfd, tmpfs) fails.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    seals < 0 || seals & libc::F_SEAL_SHRINK == 0
}

/// A registered mapping; dropping it unregisters it, which must happen
/// before the mapping is unmapped.
#[derive(Debug)]
pub struct Guard {
    slot: usize,
}

impl Guard {
    /// Registers `[start, start + len)`, a mapping made of pages of `align`
    /// bytes (a power of two, at least the system page; `start` aligned to
    /// it). `None` if the table is full.
    pub fn new(start: *mut u8, len: usize, align: usize) -> Option<Guard> {
        install();
        let slot = (0..SLOTS).find(|&i| {
            TABLE[i]
                .claimed
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })?;
        let s = &TABLE[slot];
        s.start.store(start as usize, Ordering::SeqCst);
        s.align
            .store(align.max(super::page_size()), Ordering::SeqCst);
        s.faulted.store(false, Ordering::SeqCst);
        s.len.store(len, Ordering::SeqCst);
        Some(Guard { slot })
    }

    /// Whether an access past the file's end was caught: the mapping's
    /// tail now reads as zeros.
    #[inline]
    pub fn faulted(&self) -> bool {
        TABLE[self.slot].faulted.load(Ordering::Relaxed)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let s = &TABLE[self.slot];
        s.len.store(0, Ordering::SeqCst);
        // A handler that saw the slot before the store above has counted
        // itself in before we look (both sides are SeqCst).
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        s.claimed.store(false, Ordering::SeqCst);
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction reads and writes live structs; a zeroed
        // sigaction is a valid empty one. The previous action is stored
        // before ours can run.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &raw mut old);
            let _ = PREV.set(Prev(old));
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&raw mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &raw const sa, std::ptr::null_mut());
        }
    });
}

/// The handler: only atomics, `mmap` and `sigaction` (async-signal-safe).
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    // Only faults the kernel raised (si_code > 0) carry an address.
    let addr = unsafe { ((*info).si_code > 0).then(|| (*info).si_addr() as usize) };
    let mut handled = false;
    if let Some(addr) = addr {
        for s in &TABLE {
            let len = s.len.load(Ordering::SeqCst);
            if len == 0 {
                continue;
            }
            let start = s.start.load(Ordering::SeqCst);
            if addr < start || addr - start >= len {
                continue;
            }
            let align = s.align.load(Ordering::SeqCst);
            let from = start + (addr - start) / align * align;
            // SAFETY: replaces pages of a registered mapping, which its
            // owner keeps mapped until it unregisters (and removal waits
            // for this handler); nothing else lives in that range.
            let r = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    start + len - from,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                s.faulted.store(true, Ordering::SeqCst);
                handled = true;
            }
            break;
        }
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    if !handled {
        chain(sig, info, ctx);
    }
}

/// Passes a fault that is not ours on to the previous handler, or restores
/// the default action so that the fault, repeated on return, is fatal.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
    type Handler = extern "C" fn(libc::c_int);
    if let Some(Prev(p)) = PREV.get()
        && p.sa_sigaction != libc::SIG_DFL
        && p.sa_sigaction != libc::SIG_IGN
    {
        // SAFETY: the previous action was installed by sigaction with these
        // flags, so its handler has the signature they say.
        unsafe {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                std::mem::transmute::<libc::sighandler_t, Action>(p.sa_sigaction)(sig, info, ctx);
            } else {
                std::mem::transmute::<libc::sighandler_t, Handler>(p.sa_sigaction)(sig);
            }
        }
        return;
    }
    // SAFETY: resets SIGBUS to its default action; sigaction is
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &raw const sa, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn memfd(len: i64) -> OwnedFd {
        // SAFETY: plain syscalls on a fresh memfd.
        unsafe {
            let fd = libc::memfd_create(c"sigbus-test".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, len), 0);
            OwnedFd::from_raw_fd(fd)
        }
    }

    #[test]
    fn a_truncated_mapping_reads_zeros_and_is_marked() {
        let page = super::super::page_size();
        let fd = memfd(4 * page as i64);
        assert!(can_shrink(fd.as_raw_fd()));
        let m = crate::sys::Region::map(fd.try_clone().unwrap(), 4 * page).unwrap();
        let p = m.as_ptr();
        // SAFETY: inside the mapping, while the file is whole.
        unsafe {
            p.write_volatile(7);
            p.add(3 * page).write_volatile(9);
        }
        let g = Guard::new(p, m.len(), page).unwrap();
        assert!(!g.faulted());
        // SAFETY: plain syscall on our memfd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), page as i64) }, 0);
        // SAFETY: inside the mapping; the page past the file's end faults
        // and the guard maps zeros there.
        let (first, tail) = unsafe { (p.read_volatile(), p.add(3 * page).read_volatile()) };
        assert_eq!((first, tail), (7, 0));
        assert!(g.faulted());
        // SAFETY: the zero pages are ours to write.
        unsafe {
            p.add(2 * page).write_volatile(5);
            assert_eq!(p.add(2 * page).read_volatile(), 5);
        }
        drop(g);
        drop(m);
    }

    #[test]
    fn sealed_files_cannot_shrink() {
        let r = crate::sys::Region::new("sealed", 4096).unwrap();
        assert!(!can_shrink(r.fd().as_raw_fd()));
    }
}
