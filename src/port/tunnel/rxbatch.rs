//! The receive side of the tunnel socket: [`RxBatch`], one `recvmmsg`'s
//! messages and a cursor over the datagrams in them.
//!
//! With receive offload (`UDP_GRO`) one message can hold a run of
//! datagrams of one sender, all of one size but the last; the cursor cuts
//! them apart. A reader that cannot take everything stops at a place
//! ([`RxPos`]) and goes on from there at its next poll. Each message also
//! brings the address it was sent to (`IP_PKTINFO`, `IPV6_PKTINFO`).
#![allow(unsafe_code)]

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use super::socket::{BATCH, CMSG_SPACE, CmsgBuf, ip_of};
use crate::packet::PacketRef;

/// Receive buffer per message: with `UDP_GRO` the kernel may hand over up
/// to 64 KiB of datagrams from one sender in one; without, any inner frame
/// a port buffer can hold (up to 9216-byte jumbo buffers) and its header
/// fit many times over. Only what arrives touches the pages.
pub const RX_SLOT: usize = 65_536;
/// Where slot `i` starts: `i * RX_STRIDE`. Three cache lines more than a
/// slot, so that the starts of the slots (where the headers are read) do
/// not all fall into one cache set, as 64 KiB apart they would.
const RX_STRIDE: usize = RX_SLOT + 3 * 64;
/// `UDP_GRO` (include/uapi/linux/udp.h).
pub(super) const UDP_GRO: libc::c_int = 104;

/// One received message: `len` bytes holding datagrams of `seg` bytes
/// each (the last may be shorter), all from one sender to `to`.
#[derive(Clone, Copy, Default)]
struct RxMsg {
    len: usize,
    seg: usize,
    /// Cut short by the kernel: dropped whole.
    truncated: bool,
    /// The sender; `None` for an address family that is not IP.
    from: Option<IpAddr>,
    to: Option<IpAddr>,
}

/// One received datagram.
pub struct Datagram<'a> {
    /// The sender; `None` for an address family that is not IP.
    pub from: Option<IpAddr>,
    /// The address it was sent to.
    pub to: Option<IpAddr>,
    /// `None` if it was too large for the receive buffer.
    pub bytes: Option<&'a [u8]>,
}

/// Scratch space for one `recvmmsg`, and a cursor over the datagrams it
/// holds: [`RxBatch::peek`] the next, [`RxBatch::advance`] past it.
pub struct RxBatch {
    /// `BATCH` slots, `RX_STRIDE` apart. Reached only through raw
    /// pointers, so the frames a reader hands out ([`RxBatch::frame_ref`])
    /// may be written in place while the batch is read.
    bufs: RawBuf,
    msgs: [RxMsg; BATCH],
    /// Where the kernel writes each message's sender.
    names: [libc::sockaddr_storage; BATCH],
    cmsgs: [CmsgBuf; BATCH],
    /// Messages received.
    n: usize,
    /// The next datagram.
    at: RxPos,
}

impl Default for RxBatch {
    fn default() -> RxBatch {
        RxBatch {
            // Zeroed allocation: pages are touched only by what arrives.
            bufs: RawBuf::zeroed(BATCH * RX_STRIDE),
            msgs: [RxMsg::default(); BATCH],
            // SAFETY: plain data; zero is a valid (unspecified) address.
            names: unsafe { zeroed() },
            cmsgs: [CmsgBuf([0; CMSG_SPACE]); BATCH],
            n: 0,
            at: RxPos(0, 0),
        }
    }
}

/// A place in an [`RxBatch`]: a message and an offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPos(usize, usize);

impl RxBatch {
    /// Receives up to `BATCH` messages from socket `fd` without waiting;
    /// returns how many (0 when none wait). What the batch still held is
    /// forgotten.
    pub(super) fn receive(&mut self, fd: RawFd) -> usize {
        let mut iov: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data; zero is a valid empty header.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let base = self.bufs.ptr;
        for (i, (m, v)) in msgs.iter_mut().zip(iov.iter_mut()).enumerate() {
            // SAFETY: slot i of the buffer lies within bufs (BATCH slots).
            v.iov_base = unsafe { base.add(i * RX_STRIDE) }.cast();
            v.iov_len = RX_SLOT;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (&raw mut self.names[i]).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = CMSG_SPACE;
        }
        // SAFETY: every header points at live buffers of the sizes given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        for (i, m) in msgs.iter().enumerate().take(n) {
            let h = &m.msg_hdr;
            let len = (m.msg_len as usize).min(RX_SLOT);
            let (seg, to) = read_rx_cmsgs(h);
            self.msgs[i] = RxMsg {
                len,
                seg: seg.filter(|&s| s > 0).unwrap_or(len),
                truncated: h.msg_flags & libc::MSG_TRUNC != 0,
                from: ip_of(&self.names[i]),
                to,
            };
        }
        self.n = n;
        self.at = RxPos(0, 0);
        n
    }

    /// Where the datagrams not yet passed start.
    pub fn pos(&self) -> RxPos {
        self.at
    }

    /// The datagram at `p`, if any, and the place after it (past its whole
    /// message if that was cut short).
    pub fn at(&self, p: RxPos) -> Option<(Datagram<'_>, RxPos)> {
        let RxPos(i, off) = p;
        if i >= self.n {
            return None;
        }
        let m = &self.msgs[i];
        let end = (off + m.seg.max(1)).min(m.len);
        let bytes = (!m.truncated).then(|| self.bufs.get(i * RX_STRIDE + off..i * RX_STRIDE + end));
        let next = if m.truncated || end >= m.len {
            RxPos(i + 1, 0)
        } else {
            RxPos(i, end)
        };
        let d = Datagram {
            from: m.from,
            to: m.to,
            bytes,
        };
        Some((d, next))
    }

    /// Passes everything before `p`.
    pub fn seek(&mut self, p: RxPos) {
        self.at = p;
    }

    /// The next datagram not yet passed, if any.
    pub fn peek(&self) -> Option<Datagram<'_>> {
        self.at(self.at).map(|(d, _)| d)
    }

    /// Passes the datagram [`RxBatch::peek`] shows.
    pub fn advance(&mut self) {
        if let Some((_, next)) = self.at(self.at) {
            self.at = next;
        }
    }

    /// Whether datagrams wait to be passed.
    pub fn pending(&self) -> bool {
        self.at.0 < self.n
    }

    /// Puts message `i` as a receive would: one datagram, `bytes` from
    /// `from` (flagged too large, as the kernel's cut, when they exceed a
    /// slot), and makes the batch hold messages 0..=i from the start. For
    /// wires other than the kernel's (the bench's, [`super::wire`]).
    pub fn put(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        let fits = (bytes.len() <= RX_SLOT).then(|| {
            // SAFETY: slot i lies within the buffer and holds `bytes`; the
            // caller's `&mut self` means no frame of the batch is in use.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.bufs.ptr.add(i * RX_STRIDE),
                    bytes.len(),
                )
            }
        });
        self.msgs[i] = RxMsg {
            len: bytes.len().min(RX_SLOT),
            seg: bytes.len().min(RX_SLOT),
            truncated: fits.is_none(),
            from: Some(from.ip()),
            to: None,
        };
        self.n = i + 1;
        self.at = RxPos(0, 0);
    }
}

impl RxBatch {
    /// A view of `f`, the bytes of a datagram [`RxBatch::at`] gave (or a
    /// part of them), that the switch may rewrite in place: `cap` is the
    /// length (a frame that grows moves; see `Batch::set_len`). Until the
    /// batch receives again, nothing but that view may touch those bytes.
    pub fn frame_ref(&self, f: &[u8]) -> PacketRef {
        let off = (f.as_ptr() as usize).wrapping_sub(self.bufs.ptr as usize);
        assert!(
            off <= self.bufs.len && f.len() <= self.bufs.len - off,
            "frame_ref: not the batch's bytes"
        );
        // SAFETY: within the buffer (checked), and derived from its own
        // pointer, which may write.
        PacketRef::new(unsafe { self.bufs.ptr.add(off) }, f.len() as u32)
    }
}

/// A zeroed heap buffer reached through its raw pointer only (see
/// [`RxBatch::bufs`]). Zeroed allocation: pages are touched only by what
/// arrives.
struct RawBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: owned memory, used by one thread at a time (the batch is behind
// the endpoint's lock).
unsafe impl Send for RawBuf {}

impl RawBuf {
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len.max(1), 64).expect("receive buffer layout")
    }

    fn zeroed(len: usize) -> RawBuf {
        let layout = RawBuf::layout(len);
        // SAFETY: a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        RawBuf { ptr, len }
    }

    /// Bytes `r` of the buffer.
    fn get(&self, r: std::ops::Range<usize>) -> &[u8] {
        assert!(r.start <= r.end && r.end <= self.len);
        // SAFETY: within the buffer (checked); initialised (zeroed at
        // first).
        unsafe { std::slice::from_raw_parts(self.ptr.add(r.start), r.end - r.start) }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, RawBuf::layout(self.len)) }
    }
}

/// The segment size (`UDP_GRO`) and destination address (`IP_PKTINFO`,
/// `IPV6_PKTINFO`) of a received message, from its control messages.
fn read_rx_cmsgs(h: &libc::msghdr) -> (Option<usize>, Option<IpAddr>) {
    let (mut seg, mut to) = (None, None);
    // SAFETY: the kernel wrote msg_controllen bytes of well-formed control
    // messages into the buffer; each payload read is checked against its
    // cmsg_len first, and read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let data = libc::CMSG_DATA(c);
            let have = len.saturating_sub(libc::CMSG_LEN(0) as usize);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_UDP, UDP_GRO) if have >= size_of::<libc::c_int>() => {
                    let v = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    seg = usize::try_from(v).ok();
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) if have >= size_of::<libc::in_pktinfo>() => {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    to = Some(IpAddr::V4(Ipv4Addr::from(p.ipi_addr.s_addr.to_ne_bytes())));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if have >= size_of::<libc::in6_pktinfo>() =>
                {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    to = Some(IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (seg, to)
}
