//! Pieces shared by the ports that talk to the kernel (AF_PACKET, TAP,
//! AF_XDP): interface lookups, the incoming-ring producer and the
//! outgoing-ring drain that several workers may trigger at once.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::LinkState;
use crate::packet::PortMem;

/// Errors opening a kernel-facing port; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum KernelPortError {
    #[error("no interface named '{0}'")]
    NoSuchInterface(String),
    #[error("not permitted to open '{0}' (needs root or CAP_NET_RAW/CAP_NET_ADMIN)")]
    NotPermitted(String),
    #[error("interface '{name}' has MTU {mtu}, too large for {buf}-byte buffers (use buf=N)")]
    MtuTooLarge { name: String, mtu: u32, buf: u32 },
    #[error("interface '{0}' is already used by another port")]
    Busy(String),
    #[error("bad interface name '{0}'")]
    BadName(String),
    #[error("{what} on '{name}': {err}")]
    Os {
        what: &'static str,
        name: String,
        err: io::Error,
    },
    #[error("port memory: {0}")]
    Mem(#[from] crate::packet::MemError),
    #[error("{0}")]
    Other(String),
}

impl KernelPortError {
    /// Maps an OS error from `what` on interface `name` to the clearest variant.
    pub fn os(what: &'static str, name: &str, err: io::Error) -> KernelPortError {
        match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                KernelPortError::NotPermitted(name.to_owned())
            }
            Some(libc::ENODEV) | Some(libc::ENXIO) => {
                KernelPortError::NoSuchInterface(name.to_owned())
            }
            Some(libc::EBUSY) => KernelPortError::Busy(name.to_owned()),
            _ => KernelPortError::Os {
                what,
                name: name.to_owned(),
                err,
            },
        }
    }
}

/// Checks an interface name the way the kernel would (1 to 15 bytes, no `/`,
/// whitespace or `:`).
pub fn check_ifname(name: &str) -> Result<(), KernelPortError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b',');
    if ok {
        Ok(())
    } else {
        Err(KernelPortError::BadName(name.to_owned()))
    }
}

/// The interface's index.
pub fn ifindex(name: &str) -> Result<u32, KernelPortError> {
    check_ifname(name)?;
    let c = std::ffi::CString::new(name).map_err(|_| KernelPortError::BadName(name.to_owned()))?;
    let idx = crate::sys::if_nametoindex(&c);
    if idx == 0 {
        Err(KernelPortError::NoSuchInterface(name.to_owned()))
    } else {
        Ok(idx)
    }
}

/// The interface's MTU, from sysfs.
pub fn mtu(name: &str) -> Result<u32, KernelPortError> {
    let p = format!("/sys/class/net/{name}/mtu");
    let s = std::fs::read_to_string(&p)
        .map_err(|_| KernelPortError::NoSuchInterface(name.to_owned()))?;
    s.trim()
        .parse()
        .map_err(|_| KernelPortError::NoSuchInterface(name.to_owned()))
}

/// The largest MTU that jumbo-ready ports (a bridge's internal TAPs) take.
pub const JUMBO_MTU: u32 = 9000;

/// The buffer size (a multiple of 64, at least the default) that holds a
/// frame of `mtu` bytes of payload plus an Ethernet header and a VLAN tag.
pub fn buf_for_mtu(mtu: u32) -> u32 {
    mtu.saturating_add(18)
        .next_multiple_of(64)
        .clamp(crate::packet::DEFAULT_BUF_SIZE, crate::packet::MAX_BUF_SIZE)
}

/// Sets the interface's MTU (SIOCSIFMTU), as `ip link set NAME mtu N`.
#[allow(unsafe_code)]
pub fn set_mtu(name: &str, mtu: u32) -> Result<(), KernelPortError> {
    let value = libc::c_int::try_from(mtu)
        .map_err(|_| KernelPortError::Other(format!("MTU {mtu} is out of range")))?;
    if_ioctl(name, libc::SIOCSIFMTU, "setting the MTU", |req| {
        req.ifr_ifru.ifru_mtu = value;
    })?;
    Ok(())
}

/// Whether interface `name` is up and running (`IFF_UP` and
/// `IFF_RUNNING`: set up, with a carrier); an error if there is none.
#[allow(unsafe_code)]
pub fn running(name: &str) -> Result<bool, KernelPortError> {
    let req = if_ioctl(name, libc::SIOCGIFFLAGS, "SIOCGIFFLAGS", |_| {})?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
    let want = libc::IFF_UP | libc::IFF_RUNNING;
    Ok(flags & want == want)
}

/// The state of interface `name` for a port bound to interface index
/// `bound`: gone unless `name` is still that interface, then up or down.
pub fn state_of(name: &str, bound: u32) -> LinkState {
    if bound == 0 || ifindex(name).ok() != Some(bound) {
        return LinkState::Gone;
    }
    match running(name) {
        Ok(true) => LinkState::Up,
        Ok(false) => LinkState::Down,
        Err(_) => LinkState::Gone,
    }
}

/// An interface ioctl (`request`, on a throwaway datagram socket) with the
/// `ifreq` that names `name` and that `fill` completes; the `ifreq` the
/// kernel gave back.
#[allow(unsafe_code)]
fn if_ioctl(
    name: &str,
    request: libc::c_ulong,
    what: &'static str,
    fill: impl FnOnce(&mut libc::ifreq),
) -> Result<libc::ifreq, KernelPortError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    check_ifname(name)?;
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(KernelPortError::os(
            "socket",
            name,
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    fill(&mut req);
    // SAFETY: the interface ioctls read and write one ifreq we own, whose
    // name is NUL-terminated (shorter than IFNAMSIZ, checked above).
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, &raw mut req) } < 0 {
        return Err(KernelPortError::os(what, name, io::Error::last_os_error()));
    }
    Ok(req)
}

/// Makes descriptor `target` refer to what `with` refers to, in one step
/// (dup3): a thread using `target` meanwhile uses the old file or the new
/// one, never a closed or reused number. `with` is closed.
#[allow(unsafe_code)]
pub fn replace_fd(
    target: &impl std::os::fd::AsRawFd,
    with: std::os::fd::OwnedFd,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open and owned (by `target`'s owner and
    // by us); dup3 closes the old file of `target` atomically.
    let r = unsafe { libc::dup3(with.as_raw_fd(), target.as_raw_fd(), libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A kernel port's view of its interface, kept in an atomic so the data
/// path reads it with one load: the backend sets it when the interface
/// went down or vanished, and when it is back.
pub struct Health(AtomicU8);

impl Default for Health {
    fn default() -> Self {
        Health(AtomicU8::new(LinkState::Up as u8))
    }
}

impl Health {
    pub fn get(&self) -> LinkState {
        match self.0.load(Ordering::Relaxed) {
            0 => LinkState::Up,
            1 => LinkState::Down,
            _ => LinkState::Gone,
        }
    }

    /// Records `s`; returns the state it replaces.
    pub fn set(&self, s: LinkState) -> LinkState {
        let old = self.get();
        self.0.store(s as u8, Ordering::Relaxed);
        old
    }

    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed) == LinkState::Up as u8
    }

    /// Records `s` and says so in the log when it is a change.
    pub fn note(&self, s: LinkState, port: &str, ifname: &str) {
        let old = self.set(s);
        if old != s {
            match s {
                LinkState::Up => tracing::info!("port {port}: interface {ifname} is back"),
                LinkState::Down => tracing::info!("port {port}: interface {ifname} is down"),
                LinkState::Gone => tracing::warn!(
                    "port {port}: interface {ifname} vanished; the port waits for it"
                ),
            }
        }
    }
}

/// Fails if frames of the interface's MTU (plus Ethernet header and one VLAN
/// tag) would not fit the buffers.
pub fn check_mtu(name: &str, buf_size: u32) -> Result<(), KernelPortError> {
    let m = mtu(name)?;
    if m + 18 > buf_size {
        return Err(KernelPortError::MtuTooLarge {
            name: name.to_owned(),
            mtu: m,
            buf: buf_size,
        });
    }
    Ok(())
}

/// The producer side of a port's incoming ring, for a backend that fills it
/// from the kernel. Only the owning worker calls `sync_incoming`, so the
/// private head needs no lock.
pub struct IncomingFill {
    head: AtomicU32,
}

impl IncomingFill {
    pub fn new(mem: &PortMem) -> IncomingFill {
        IncomingFill {
            head: AtomicU32::new(mem.incoming().hdr.head.load(Ordering::Acquire)),
        }
    }

    /// Fills up to the ring's free room with frames produced by `next`,
    /// which writes one frame into the buffer it is given and returns its
    /// length, `Some(0)` to skip a frame, or `None` when the source is empty.
    /// Publishes once; returns the number of frames queued.
    pub fn fill(
        &self,
        mem: &PortMem,
        max: usize,
        mut next: impl FnMut(&mut [u8]) -> Option<usize>,
    ) -> usize {
        let mut head = self.head.load(Ordering::Relaxed);
        let n = mem.produce(mem.incoming(), &mut head, max, |_, buf| next(buf));
        self.head.store(head, Ordering::Relaxed);
        n
    }

    /// The ring position the next frame goes to.
    pub fn head(&self) -> u32 {
        self.head.load(Ordering::Relaxed)
    }

    /// Free slots on the incoming ring.
    pub fn room(&self, mem: &PortMem) -> u32 {
        mem.incoming().free(self.head.load(Ordering::Relaxed))
    }
}

/// A value that several threads want to work on and none may wait for: a
/// caller that finds it busy leaves a note and returns at once, and the
/// holder goes round again before it lets go, so every call's work is done
/// by someone, never twice at the same time. (Outgoing rings: any worker
/// may publish, one moves frames to the device.)
pub struct OneAtATime<T> {
    pending: AtomicBool,
    inner: Mutex<T>,
}

impl<T> OneAtATime<T> {
    pub fn new(v: T) -> OneAtATime<T> {
        OneAtATime {
            pending: AtomicBool::new(false),
            inner: Mutex::new(v),
        }
    }

    /// Runs `f` on the value now, or leaves it to the thread that holds it.
    pub fn run(&self, mut f: impl FnMut(&mut T)) {
        self.pending.store(true, Ordering::SeqCst);
        loop {
            let Some(mut v) = self.try_lock() else {
                return;
            };
            while self.pending.swap(false, Ordering::SeqCst) {
                f(&mut v);
            }
            drop(v);
            if !self.pending.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// The value, waiting for it (for work that must not be left to others).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value if nobody holds it.
    /// The value, once its holder lets go (soon: holders never block).
    /// What a holder that panicked left is taken as it is.
    pub fn lock_wait(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value, when nobody else can reach it.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.inner.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// The consumer side of a port's outgoing ring for a backend that sends to
/// the kernel. Any worker may call `drain` after publishing; exactly one
/// drains at a time and nobody waits (see [`OneAtATime`]).
pub struct OutgoingDrain {
    tail: OneAtATime<u32>,
}

impl OutgoingDrain {
    pub fn new(mem: &PortMem) -> OutgoingDrain {
        OutgoingDrain {
            tail: OneAtATime::new(mem.outgoing().hdr.tail.load(Ordering::Acquire)),
        }
    }

    /// Hands every published packet to `send`, in order, in batches:
    /// `send(frames)` gets up to 64 frames and returns how many it took
    /// (the rest are counted as dropped by the caller of `send`, since the
    /// switch never blocks). Slots are released after each batch.
    pub fn drain(&self, mem: &PortMem, mut send: impl FnMut(&[&[u8]])) {
        self.tail.run(|tail| {
            let ring = mem.outgoing();
            loop {
                let n = ring.available(*tail).min(64);
                if n == 0 {
                    break;
                }
                let mut frames: [&[u8]; 64] = [&[]; 64];
                for (k, f) in frames.iter_mut().enumerate().take(n as usize) {
                    let s = ring.slot(tail.wrapping_add(k as u32));
                    *f = mem.buf(s.buf, usize::from(s.len)).unwrap_or(&[]);
                }
                send(&frames[..n as usize]);
                *tail = tail.wrapping_add(n);
                ring.release(*tail);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn interface_states_and_their_record() {
        // Loopback is up in any namespace a test runs in.
        let lo = ifindex("lo").unwrap();
        assert_eq!(state_of("lo", lo), LinkState::Up);
        // A port bound to another index than the name's, or to none, or
        // named after nothing: the interface it had is gone.
        assert_eq!(state_of("lo", lo + 1000), LinkState::Gone);
        assert_eq!(state_of("lo", 0), LinkState::Gone);
        assert_eq!(state_of("nosuchif0", lo), LinkState::Gone);
        assert!(running("nosuchif0").is_err());
        let h = Health::default();
        assert!(h.is_up());
        assert_eq!(h.set(LinkState::Gone), LinkState::Up);
        assert_eq!(h.get(), LinkState::Gone);
        h.note(LinkState::Down, "p", "eth0");
        assert_eq!((h.get(), h.is_up()), (LinkState::Down, false));
    }

    #[test]
    fn one_at_a_time_does_every_call_and_never_two_at_once() {
        let v = Arc::new(OneAtATime::new((0u64, false)));
        let calls = 4 * 20_000;
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        v.run(|(n, busy)| {
                            assert!(!*busy);
                            *busy = true;
                            *n += 1;
                            *busy = false;
                        });
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        // Notes coalesce: at most one run per call, and the last call's
        // work was done (the value was run after it).
        let (n, _) = *v.lock();
        assert!(n >= 1 && n <= calls, "{n}");
        let mut after = false;
        v.run(|_| after = true);
        assert!(after, "a free value runs at once");
    }
}
