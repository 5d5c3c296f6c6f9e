//! `af_packet:IFNAME`: any kernel interface through an AF_PACKET socket, with
//! a TPACKET_V2 memory-mapped receive ring and batched transmit (sendmmsg).
//! The fallback when AF_XDP cannot attach.
//!
//! Why V2, a ring of fixed-size frames, and not V3's blocks of packed
//! frames: V3 hands a block over only when it is full or when its timeout
//! (1 ms at the least) runs out, so under light traffic every frame waited
//! about a millisecond (a ping through two af_packet ports took 1.1 ms
//! instead of 0.1), which also held TCP back. A V2 frame is the reader's as
//! soon as the kernel wrote it.
//!
//! The socket sees every frame on the interface (promiscuous membership,
//! dropped by the kernel when the socket closes), but not the ones it sends
//! itself. VLAN tags the kernel stripped on receive are put back. Frames
//! longer than the port's buffers are dropped and counted, never truncated.
//!
//! An interface that goes down or vanishes leaves an error on the socket
//! (ENETDOWN) that would wake the worker for ever: the worker hands it to
//! the port, which reads it and records the state (`down`, or `gone` once
//! the kernel unbound the socket), drops what it is given to send without
//! a system call per frame (`tx_down`), and looks again each second. A
//! downed interface comes back by itself; for a vanished one the port binds
//! the same socket (same rings, same counters) to the next interface of
//! its name.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::kernel::{
    Health, IncomingFill, KernelPortError, OutgoingDrain, check_mtu, ifindex, state_of,
};
use super::{LinkState, Port};
use crate::packet::{MemConfig, PortMem};

const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const TPACKET_V2: libc::c_int = 1;
const ETH_P_ALL: u16 = 0x0003;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Room before a frame's bytes in a ring frame: the `tpacket2_hdr`, the
/// `sockaddr_ll` and the alignment the kernel adds (it puts the MAC header
/// at about 66-80 bytes); more than enough.
const FRAME_HEADROOM: u32 = 128;
/// The least a ring block is, and about how much memory the ring takes.
const MIN_BLOCK: u32 = 1 << 16;
const RING_BYTES: u32 = 8 << 20;

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// The ring's geometry for buffers of `buf_size` bytes: frames that hold
/// a whole buffer (16-byte aligned, as the kernel wants), blocks of whole
/// pages holding whole frames.
fn geometry(buf_size: u32) -> TpacketReq {
    let frame_size = (buf_size + FRAME_HEADROOM).next_multiple_of(16);
    let block_size = frame_size.next_multiple_of(4096).max(MIN_BLOCK);
    let block_nr = (RING_BYTES / block_size).max(1);
    TpacketReq {
        block_size,
        block_nr,
        frame_size,
        frame_nr: block_size / frame_size * block_nr,
    }
}

/// Offsets inside a frame's `tpacket2_hdr` (linux/if_packet.h).
mod off {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    pub const VLAN_TCI: usize = 24;
    pub const VLAN_TPID: usize = 26;
}

/// The mapped receive ring.
struct RxRing {
    base: NonNull<u8>,
    len: usize,
    block_size: u32,
    frame_size: u32,
    /// Frames per block, and blocks.
    per_block: u32,
    blocks: u32,
}

impl RxRing {
    /// Ring frame `at`: its `tpacket2_hdr`, then the bytes.
    fn frame(&self, at: RxAt) -> *mut u8 {
        let off = at.block as usize * self.block_size as usize
            + at.slot as usize * self.frame_size as usize;
        // SAFETY: `at` comes from `next` (block < blocks, slot <
        // per_block), so the frame lies inside the mapping.
        unsafe { self.base.as_ptr().add(off) }
    }

    /// The frame after `at`, round the ring.
    fn next(&self, at: RxAt) -> RxAt {
        if at.slot + 1 < self.per_block {
            RxAt {
                slot: at.slot + 1,
                ..at
            }
        } else if at.block + 1 < self.blocks {
            RxAt {
                block: at.block + 1,
                slot: 0,
            }
        } else {
            RxAt::default()
        }
    }
}

/// A frame of the ring: its block, and its place in the block.
#[derive(Clone, Copy, Default)]
struct RxAt {
    block: u32,
    slot: u32,
}

// SAFETY: the mapping is plain memory shared with the kernel; ownership of
// each frame is handed back and forth through its status word.
unsafe impl Send for RxRing {}
// SAFETY: only the owning worker reads frames (under `AfPacketPort::rx`).
unsafe impl Sync for RxRing {}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `open`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Where the reader is in the ring: the next frame to look at.
struct RxState {
    frame: RxAt,
}

pub struct AfPacketPort {
    name: String,
    ifname: String,
    // Field order: the ring is unmapped before the socket closes.
    ring: RxRing,
    fd: OwnedFd,
    rx: Mutex<RxState>,
    mem: PortMem,
    fill: IncomingFill,
    drain: OutgoingDrain,
    rx_oversize: AtomicU64,
    tx_dropped: AtomicU64,
    /// Whether the interface is up, down or gone (see [`Port::recheck`]).
    health: Health,
    /// Frames not sent because the interface was down or gone.
    tx_down: AtomicU64,
}

fn setopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live T and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_PACKET,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Binds packet socket `raw` to interface `index` (named `ifname`) and
/// joins it promiscuously (a membership the kernel drops with the
/// interface).
fn bind_to(raw: RawFd, ifname: &str, index: u32) -> Result<(), KernelPortError> {
    let os = |what: &'static str| move |e: io::Error| KernelPortError::os(what, ifname, e);
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = index as i32;
    // SAFETY: binds to a sockaddr_ll we own, with its exact size.
    let r = unsafe {
        libc::bind(
            raw,
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(os("bind")(io::Error::last_os_error()));
    }
    // SAFETY: packet_mreq is plain data.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = index as i32;
    mreq.mr_type = PACKET_MR_PROMISC;
    setopt(raw, PACKET_ADD_MEMBERSHIP, &mreq).map_err(os("promiscuous mode"))
}

impl AfPacketPort {
    pub fn open(
        name: &str,
        ifname: &str,
        cfg: MemConfig,
    ) -> Result<Arc<AfPacketPort>, KernelPortError> {
        let index = ifindex(ifname)?;
        check_mtu(ifname, cfg.buf_size)?;
        let os = |what: &'static str| move |e: io::Error| KernelPortError::os(what, ifname, e);
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if fd < 0 {
            return Err(os("socket")(io::Error::last_os_error()));
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        setopt(raw, PACKET_VERSION, &TPACKET_V2).map_err(os("PACKET_VERSION"))?;
        setopt(raw, PACKET_IGNORE_OUTGOING, &1i32).map_err(os("PACKET_IGNORE_OUTGOING"))?;
        // Skipping the qdisc is only a speed-up; older kernels may refuse it.
        let _ = setopt(raw, PACKET_QDISC_BYPASS, &1i32);
        let req = geometry(cfg.buf_size);
        setopt(raw, PACKET_RX_RING, &req).map_err(os("PACKET_RX_RING"))?;
        let len = (req.block_size * req.block_nr) as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                raw,
                0,
            )
        };
        let p = if p == libc::MAP_FAILED {
            // MAP_LOCKED can fail under a low memlock limit: map unlocked.
            // SAFETY: as above.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    raw,
                    0,
                )
            }
        } else {
            p
        };
        if p == libc::MAP_FAILED {
            return Err(os("mmap")(io::Error::last_os_error()));
        }
        let ring = RxRing {
            base: NonNull::new(p.cast()).ok_or_else(|| os("mmap")(io::Error::other("null")))?,
            len,
            block_size: req.block_size,
            frame_size: req.frame_size,
            per_block: req.block_size / req.frame_size,
            blocks: req.block_nr,
        };
        bind_to(raw, ifname, index)?;
        let mem = PortMem::new(name, cfg)?;
        Ok(Arc::new(AfPacketPort {
            name: name.to_owned(),
            ifname: ifname.to_owned(),
            ring,
            fd,
            rx: Mutex::new(RxState {
                frame: RxAt::default(),
            }),
            fill: IncomingFill::new(&mem),
            drain: OutgoingDrain::new(&mem),
            mem,
            rx_oversize: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            health: Health::default(),
            tx_down: AtomicU64::new(0),
        }))
    }

    /// The interface index the socket is bound to; 0 once the interface
    /// vanished (the kernel unbinds the socket).
    fn bound_index(&self) -> u32 {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into `sll`.
        let r =
            unsafe { libc::getsockname(self.fd.as_raw_fd(), (&raw mut sll).cast(), &raw mut len) };
        if r < 0 {
            0
        } else {
            u32::try_from(sll.sll_ifindex).unwrap_or(0)
        }
    }

    /// What the interface is now: the socket's, up or down, or gone
    /// (the socket is unbound, or the name belongs to another interface
    /// now, which [`Port::recheck`] binds to).
    fn look(&self) -> LinkState {
        state_of(&self.ifname, self.bound_index())
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Received frames dropped because they did not fit a buffer.
    pub fn rx_oversize(&self) -> u64 {
        self.rx_oversize.load(Ordering::Relaxed)
    }

    /// Frames the kernel would not take on transmit.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped.load(Ordering::Relaxed)
    }

    fn u32_at(p: *const u8, off: usize) -> u32 {
        // SAFETY: callers pass offsets inside the current frame's header;
        // volatile because the kernel writes the ring concurrently.
        unsafe { std::ptr::read_volatile(p.add(off).cast::<u32>()) }
    }

    fn u16_at(p: *const u8, off: usize) -> u16 {
        // SAFETY: as `u32_at`.
        unsafe { std::ptr::read_volatile(p.add(off).cast::<u16>()) }
    }

    fn frame_status(&self, i: RxAt) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: the status word starts frame `i` (16-byte aligned), and
        // the kernel and we hand the frame over through it.
        unsafe {
            &*self
                .ring
                .frame(i)
                .add(off::STATUS)
                .cast::<std::sync::atomic::AtomicU32>()
        }
    }

    /// Whether the kernel has handed over a frame we have not taken.
    fn has_pending(&self) -> bool {
        let st = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        self.frame_status(st.frame).load(Ordering::Acquire) & TP_STATUS_USER != 0
    }
}

impl Port for AfPacketPort {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_oversize", self.rx_oversize()),
            ("tx_dropped", self.tx_dropped()),
            ("tx_down", self.tx_down.load(Ordering::Relaxed)),
        ]
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "af_packet"
    }

    fn mem(&self) -> &PortMem {
        &self.mem
    }

    fn sync_incoming(&self, _q: usize) {
        let mut st = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        let cap = self.mem.buf_size() as usize;
        let mut i = st.frame;
        self.fill.fill(&self.mem, 256, |buf| {
            let status = self.frame_status(i);
            let s = status.load(Ordering::Acquire);
            if s & TP_STATUS_USER == 0 {
                return None;
            }
            let h = self.ring.frame(i);
            let snap = Self::u32_at(h, off::SNAPLEN) as usize;
            let len = Self::u32_at(h, off::LEN) as usize;
            let mac = usize::from(Self::u16_at(h, off::MAC));
            let vlan = s & TP_STATUS_VLAN_VALID != 0;
            let out_len = len + if vlan { 4 } else { 0 };
            let got = if snap != len
                || out_len > cap
                || len < 14
                || mac + snap > self.ring.frame_size as usize
            {
                self.rx_oversize.fetch_add(1, Ordering::Relaxed);
                0
            } else {
                // SAFETY: the frame's bytes lie inside its ring frame
                // (checked above), which is ours until its status says
                // the kernel's again.
                let frame = unsafe { std::slice::from_raw_parts(h.add(mac), snap) };
                if vlan {
                    let tci = Self::u16_at(h, off::VLAN_TCI);
                    let tpid = if s & TP_STATUS_VLAN_TPID_VALID != 0 {
                        Self::u16_at(h, off::VLAN_TPID)
                    } else {
                        0x8100
                    };
                    buf[..12].copy_from_slice(&frame[..12]);
                    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                    buf[14..16].copy_from_slice(&tci.to_be_bytes());
                    buf[16..len + 4].copy_from_slice(&frame[12..]);
                } else {
                    buf[..len].copy_from_slice(frame);
                }
                out_len
            };
            // Copied: the frame is the kernel's again.
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            i = self.ring.next(i);
            Some(got)
        });
        st.frame = i;
    }

    fn outgoing_published(&self) {
        let fd = self.fd.as_raw_fd();
        self.drain.drain(&self.mem, |frames| {
            if !self.health.is_up() {
                // No system call per frame into a socket that cannot send.
                self.tx_down
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                return;
            }
            // SAFETY: iovec/mmsghdr are plain data; pointers refer to `frames`,
            // which outlive the sendmmsg call.
            let mut iov: [libc::iovec; 64] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
            for (k, f) in frames.iter().enumerate() {
                iov[k] = libc::iovec {
                    iov_base: f.as_ptr() as *mut _,
                    iov_len: f.len(),
                };
                msgs[k].msg_hdr.msg_iov = &raw mut iov[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            let mut sent = 0usize;
            while sent < frames.len() {
                // SAFETY: msgs[sent..] are initialised above.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        msgs.as_mut_ptr().add(sent),
                        (frames.len() - sent) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    // A full queue or a refused frame: drop it and go on.
                    self.tx_dropped.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                } else {
                    sent += n as usize;
                }
            }
        });
    }

    fn incoming_fd(&self, _q: usize) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn arm_incoming(&self, _q: usize, _cur: u32) -> bool {
        // epoll reports the socket readable while a block is handed over.
        !self.has_pending()
    }

    fn disarm_incoming(&self, _q: usize) {}

    fn link_state(&self) -> LinkState {
        if self.health.get() == LinkState::Gone {
            return LinkState::Gone;
        }
        let now = self.look();
        if now != LinkState::Up {
            // The worker looks again each second, and rebinds.
            self.health.note(now, &self.name, &self.ifname);
        }
        now
    }

    /// Also called once a second on a busy-polling switch: a healthy
    /// socket then costs two system calls.
    fn incoming_error(&self, _q: usize) {
        // The kernel reports a downed or vanished interface as a socket
        // error (ENETDOWN) that stays until read: read it, so the socket
        // is quiet again, and see which it was.
        let had_error = crate::sys::socket_error(self.fd.as_raw_fd()).is_err();
        if had_error || self.bound_index() == 0 || !self.health.is_up() {
            self.health.note(self.look(), &self.name, &self.ifname);
        }
    }

    fn needs_recheck(&self) -> bool {
        !self.health.is_up()
    }

    fn recheck(&self) {
        let mut now = self.look();
        if now == LinkState::Gone
            && let Ok(index) = ifindex(&self.ifname)
        {
            // An interface of our name is back: take it, if its frames fit.
            match check_mtu(&self.ifname, self.mem.buf_size())
                .and_then(|()| bind_to(self.fd.as_raw_fd(), &self.ifname, index))
            {
                Ok(()) => now = self.look(),
                Err(e) => {
                    tracing::debug!("port {}: cannot take {} back: {e}", self.name, self.ifname)
                }
            }
        }
        self.health.note(now, &self.name, &self.ifname);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_frames_hold_a_whole_buffer_in_whole_pages() {
        for buf in [2048, 4096, 9216, 65_535] {
            let g = geometry(buf);
            assert!(g.frame_size >= buf + FRAME_HEADROOM, "{buf}");
            assert_eq!(g.frame_size % 16, 0);
            assert_eq!(g.block_size % 4096, 0);
            assert!(g.block_size >= g.frame_size);
            assert_eq!(g.frame_nr, g.block_size / g.frame_size * g.block_nr);
            assert!(g.frame_nr >= 64, "{buf}: {} frames", g.frame_nr);
            assert!(
                u64::from(g.block_size) * u64::from(g.block_nr)
                    <= u64::from(RING_BYTES).max(u64::from(g.block_size))
            );
        }
    }
}
