//! `tap:NAME`: a TAP device, so the host's own TCP/IP stack is a port of the
//! switch (netmap's "host rings"). Give the TAP an address and the host talks
//! to everything on the switch.
//!
//! The TAP is created if it does not exist (and then vanishes with the port);
//! an existing persistent TAP is attached as it is. A TAP the port created is
//! brought up. Frames move one `read`/`write` each: TAP has no batched I/O.
//!
//! A TAP deleted under the port (`ip link del`) leaves its descriptor
//! signalling an error for ever: the port notices at its next read, parks
//! on a descriptor that never signals (listed `gone`, no CPU, frames sent
//! to it dropped and counted as `tx_down`), and its worker looks again each
//! second. A TAP the port made is the port's own, so it is made again at
//! once (as it was: up, or down for a bridge's LOCAL port); a TAP someone
//! else made is taken back when a TAP of its name exists again.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::kernel::{
    Health, IncomingFill, KernelPortError, OutgoingDrain, check_ifname, check_mtu, replace_fd,
    running,
};
use super::{LinkState, Port};
use crate::packet::{MemConfig, PortMem};
use crate::sys::Doorbell;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

pub struct TapPort {
    name: String,
    ifname: String,
    fd: OwnedFd,
    mem: PortMem,
    fill: IncomingFill,
    drain: OutgoingDrain,
    created: bool,
    rx_oversize: AtomicU64,
    tx_errors: AtomicU64,
    /// While the interface is down (a write failed with EIO), frames are
    /// dropped without a system call until this time (ns since `epoch`),
    /// when one write tries again: a down bridge interface (OpenFlow's
    /// LOCAL before the host configures it) then costs a flood nothing.
    down_until: AtomicU64,
    epoch: std::time::Instant,
    tx_down: AtomicU64,
    /// Up, or gone: the TAP was deleted under the port.
    health: Health,
    /// While gone, `fd` is the read end of this pipe, which never signals
    /// (we hold its write end) and refuses writes: the port costs nothing
    /// until the TAP is back.
    placeholder: Mutex<Option<Doorbell>>,
    /// Whether a TAP the port makes is brought up.
    up: bool,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ifreq(name: &str, flags: libc::c_short) -> IfReq {
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    for (d, s) in r.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    r
}

impl TapPort {
    /// Opens (creating if needed, and then bringing up) TAP `ifname` as
    /// port `name`.
    pub fn open(name: &str, ifname: &str, cfg: MemConfig) -> Result<Arc<TapPort>, KernelPortError> {
        Self::open_with(name, ifname, cfg, true)
    }

    /// The same; a TAP it creates is brought up only with `up` (a bridge's
    /// own interface stays down until the host configures it, as Open
    /// vSwitch's internal ports do, so it sends nothing unasked).
    pub fn open_with(
        name: &str,
        ifname: &str,
        cfg: MemConfig,
        up: bool,
    ) -> Result<Arc<TapPort>, KernelPortError> {
        check_ifname(ifname)?;
        let existed = exists(ifname);
        let fd = attach_tap(ifname, existed)?;
        check_mtu(ifname, cfg.buf_size)?;
        if !existed && up {
            set_up(ifname)?;
        }
        let mem = PortMem::new(name, cfg)?;
        Ok(Arc::new(TapPort {
            name: name.to_owned(),
            ifname: ifname.to_owned(),
            fill: IncomingFill::new(&mem),
            drain: OutgoingDrain::new(&mem),
            mem,
            fd,
            created: !existed,
            rx_oversize: AtomicU64::new(0),
            tx_errors: AtomicU64::new(0),
            down_until: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            tx_down: AtomicU64::new(0),
            health: Health::default(),
            placeholder: Mutex::new(None),
            up,
        }))
    }

    /// The TAP was deleted under the port: park it on a descriptor that
    /// never signals, until [`Port::recheck`] finds a TAP of its name.
    fn park(&self) {
        let mut ph = self.placeholder.lock().unwrap_or_else(|e| e.into_inner());
        if ph.is_some() {
            return;
        }
        let quiet = Doorbell::new().and_then(|d| {
            let rd = d.read_end().map(|f| f.try_clone_to_owned());
            let rd = rd.ok_or_else(|| io::Error::other("a new doorbell has both ends"))??;
            replace_fd(&self.fd, rd)?;
            Ok(d)
        });
        match quiet {
            Ok(d) => *ph = Some(d),
            // Still detached: reads fail and writes are skipped while gone.
            Err(e) => tracing::warn!("port {}: cannot park the TAP: {e}", self.name),
        }
        self.health.note(LinkState::Gone, &self.name, &self.ifname);
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Whether this port created the TAP (it then disappears with the port).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Frames from the host that did not fit a buffer (dropped, never truncated).
    pub fn rx_oversize(&self) -> u64 {
        self.rx_oversize.load(Ordering::Relaxed)
    }

    /// Frames the kernel refused on transmit.
    pub fn tx_errors(&self) -> u64 {
        self.tx_errors.load(Ordering::Relaxed)
    }
}

fn exists(ifname: &str) -> bool {
    std::path::Path::new(&format!("/sys/class/net/{ifname}")).exists()
}

/// A descriptor attached to TAP `ifname`, which is made if it does not
/// exist (`existed` says whether it did, for the error).
fn attach_tap(ifname: &str, existed: bool) -> Result<OwnedFd, KernelPortError> {
    // SAFETY: plain open(2) of a constant path.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(KernelPortError::os(
            "open /dev/net/tun",
            ifname,
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(ifname, IFF_TAP | IFF_NO_PI);
    // SAFETY: TUNSETIFF reads and writes one ifreq-sized struct we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &raw mut req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EBUSY) => KernelPortError::Busy(ifname.to_owned()),
            Some(libc::EINVAL) if existed => KernelPortError::Os {
                what: "attach (not a TAP?)",
                name: ifname.to_owned(),
                err: e,
            },
            _ => KernelPortError::os("TUNSETIFF", ifname, e),
        });
    }
    Ok(fd)
}

/// Brings an interface up (SIOCSIFFLAGS with IFF_UP).
fn set_up(ifname: &str) -> Result<(), KernelPortError> {
    // SAFETY: a throwaway datagram socket for interface ioctls.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(KernelPortError::os(
            "socket",
            ifname,
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: s is ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = ifreq(ifname, 0);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read/write one ifreq we own.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &raw mut req) < 0 {
            return Err(KernelPortError::os(
                "SIOCGIFFLAGS",
                ifname,
                io::Error::last_os_error(),
            ));
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &raw mut req) < 0 {
            return Err(KernelPortError::os(
                "SIOCSIFFLAGS",
                ifname,
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

impl Port for TapPort {
    fn poll_costs_syscall(&self) -> bool {
        true
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_oversize", self.rx_oversize()),
            ("tx_errors", self.tx_errors()),
            ("tx_down", self.tx_down.load(Ordering::Relaxed)),
        ]
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "tap"
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn sync_incoming(&self, _q: usize) {
        let fd = self.fd.as_raw_fd();
        let cap = self.mem.buf_size() as usize;
        let mut gone = false;
        self.fill.fill(&self.mem, 256, |buf| {
            // SAFETY: reads at most buf.len() bytes into the slot's buffer.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EBADFD) {
                    gone = true; // the TAP was deleted under us
                }
                return None; // EAGAIN: nothing more; other errors: try later
            }
            let n = n as usize;
            if n >= cap {
                // The frame filled the buffer, so the kernel may have cut it
                // (frames of the checked MTU are shorter): drop, never truncate.
                self.rx_oversize.fetch_add(1, Ordering::Relaxed);
                return Some(0);
            }
            Some(n)
        });
        if gone {
            // Only the owning worker polls: the descriptor is in no epoll
            // set now, so it may change.
            self.park();
        }
    }

    fn outgoing_published(&self) {
        let fd = self.fd.as_raw_fd();
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut down = now < self.down_until.load(Ordering::Relaxed) || !self.health.is_up();
        self.drain.drain(&self.mem, |frames| {
            for f in frames {
                if down {
                    self.tx_down.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // SAFETY: writes f.len() bytes from a live slice.
                let n = unsafe { libc::write(fd, f.as_ptr().cast(), f.len()) };
                if n < 0 {
                    if io::Error::last_os_error().raw_os_error() == Some(libc::EIO) {
                        // Down: look again in 100 ms.
                        self.down_until.store(now + 100_000_000, Ordering::Relaxed);
                        down = true;
                        self.tx_down.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.tx_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn arm_incoming(&self, _q: usize, _cur: u32) -> bool {
        // The worker's epoll watches the TAP fd level-triggered: if frames
        // are waiting, it wakes at once, so there is nothing to arm.
        true
    }

    fn disarm_incoming(&self, _q: usize) {}

    fn link_state(&self) -> LinkState {
        match self.health.get() {
            LinkState::Gone => LinkState::Gone,
            _ => match running(&self.ifname) {
                Ok(true) => LinkState::Up,
                Ok(false) => LinkState::Down,
                // Deleted; the worker sees it at its next read.
                Err(_) => LinkState::Gone,
            },
        }
    }

    // An error on the TAP's descriptor (EPOLLERR: deleted) is seen by the
    // read that follows in `sync_incoming`, which parks the port.

    fn needs_recheck(&self) -> bool {
        self.health.get() == LinkState::Gone
    }

    fn recheck(&self) {
        // A TAP the port made is the port's: make it again. One made by
        // someone else is taken back when a TAP of its name exists again.
        let existed = exists(&self.ifname);
        if !existed && !self.created {
            return;
        }
        let fd = attach_tap(&self.ifname, existed).and_then(|fd| {
            check_mtu(&self.ifname, self.mem.buf_size())?;
            if !existed && self.up {
                set_up(&self.ifname)?;
            }
            Ok(fd)
        });
        match fd.map(|fd| replace_fd(&self.fd, fd)) {
            Ok(Ok(())) => {
                *self.placeholder.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.down_until.store(0, Ordering::Relaxed);
                self.health.note(LinkState::Up, &self.name, &self.ifname);
            }
            Ok(Err(e)) => tracing::debug!("port {}: cannot take the TAP back: {e}", self.name),
            Err(e) => tracing::debug!("port {}: cannot take the TAP back: {e}", self.name),
        }
    }
}
