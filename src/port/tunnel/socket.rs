//! The kernel UDP socket that carries a tunnel's datagrams: the only code of
//! the tunnel ports that calls the OS.
//!
//! The socket is non-blocking and moves datagrams in batches
//! (`recvmmsg`/`sendmmsg`). It never fragments: over IPv4
//! `IP_MTU_DISCOVER` is `IP_PMTUDISC_DO` (the DF bit is set and a datagram
//! larger than the route's MTU fails with `EMSGSIZE` at `sendmmsg`), over
//! IPv6 `IPV6_MTU_DISCOVER` is `IPV6_PMTUDISC_DO` and `IPV6_DONTFRAG` is
//! on. The outer TOS (traffic class) and TTL (hop limit) travel with each
//! datagram as ancillary data, so ports that share the socket keep their
//! own. The kernel picks the route, the neighbour and the source address,
//! and fills the UDP checksum (always, over IPv4 too). An IPv6 socket is
//! IPv6-only (an IPv4 socket on the same port can exist beside it) and
//! accepts datagrams with a zero UDP checksum, as RFC 6935 allows tunnels.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Datagrams moved per system call at most.
pub const BATCH: usize = 64;
/// Receive buffer per datagram: any inner frame a port buffer can hold
/// (up to 9216-byte jumbo buffers) plus the largest Geneve header; a
/// larger datagram is cut by the kernel, flagged, and dropped.
pub const RX_SLOT: usize = 9216 + 8 + 252 + 64;
/// The socket receive buffer asked for, to ride out bursts while the
/// worker is busy elsewhere.
const RCVBUF: libc::c_int = 4 << 20;
/// The TTL (hop limit) the socket sends with when a datagram does not say
/// otherwise (Open vSwitch's default for tunnels); its TOS is 0.
pub const SOCKET_TTL: u8 = 64;
/// `UDP_NO_CHECK6_RX` (include/uapi/linux/udp.h).
const UDP_NO_CHECK6_RX: libc::c_int = 102;

/// A bound tunnel socket.
pub struct UdpTunnelSocket {
    fd: OwnedFd,
    v6: bool,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a live int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `addr` as a sockaddr the kernel reads, and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address in a sockaddr the kernel wrote, if it is IPv4 or IPv6.
fn ip_of(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const *ss).cast()) };
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const *ss).cast()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

impl UdpTunnelSocket {
    /// Binds a non-blocking UDP socket to `local` with the options above;
    /// over IPv4 it sends a zero UDP checksum unless `csum` (Open vSwitch's
    /// default for tunnels is no checksum).
    pub fn bind(local: SocketAddr, csum: bool) -> io::Result<UdpTunnelSocket> {
        let v6 = local.is_ipv6();
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain syscall with constant arguments.
        let fd = check(unsafe {
            libc::socket(
                family,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: the fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        if v6 {
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            setsockopt(
                raw,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            )?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
            // Best effort: without it, zero-checksum senders are not heard.
            let _ = setsockopt(raw, libc::IPPROTO_UDP, UDP_NO_CHECK6_RX, 1);
        } else {
            setsockopt(
                raw,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )?;
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_NO_CHECK, i32::from(!csum))?;
        }
        let (level, ttl) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
        } else {
            (libc::IPPROTO_IP, libc::IP_TTL)
        };
        setsockopt(raw, level, ttl, libc::c_int::from(SOCKET_TTL))?;
        // Root may exceed rmem_max; others get what the sysctl allows.
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
        }
        let (ss, len) = sockaddr(local);
        // SAFETY: ss holds a sockaddr of length len.
        check(unsafe { libc::bind(raw, (&raw const ss).cast(), len) })?;
        Ok(UdpTunnelSocket { fd, v6 })
    }

    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: sockaddr_storage is plain data.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the kernel writes at most len bytes into ss.
        check(unsafe { libc::getsockname(self.fd.as_raw_fd(), (&raw mut ss).cast(), &mut len) })?;
        let port = u16::from_be(match i32::from(ss.ss_family) {
            // SAFETY: the family says which struct the storage holds; both
            // start with the family and then the port.
            libc::AF_INET => unsafe { (*(&raw const ss).cast::<libc::sockaddr_in>()).sin_port },
            _ => unsafe { (*(&raw const ss).cast::<libc::sockaddr_in6>()).sin6_port },
        });
        let ip = ip_of(&ss).ok_or_else(|| io::Error::other("unknown address family"))?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Receives up to `BATCH` datagrams into `rx` without waiting; returns
    /// how many (0 when none wait).
    pub fn recv_batch(&self, rx: &mut RxBatch) -> usize {
        let mut iov: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain data; zero is a valid empty header.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let base = rx.bufs.as_mut_ptr();
        for (i, (m, v)) in msgs.iter_mut().zip(iov.iter_mut()).enumerate() {
            // SAFETY: slot i of the buffer lies within bufs (BATCH slots).
            v.iov_base = unsafe { base.add(i * RX_SLOT) }.cast();
            v.iov_len = RX_SLOT;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (&raw mut rx.from[i]).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at live buffers of the sizes given.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        for (i, m) in msgs.iter().enumerate().take(n) {
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            rx.lens[i] = if truncated {
                None
            } else {
                Some((m.msg_len as usize).min(RX_SLOT))
            };
        }
        n
    }

    /// Sends `msg(0)`..`msg(n - 1)` (header, inner frame, destination, TOS,
    /// TTL; `n` at most `BATCH`) as one datagram each, without waiting.
    /// Returns how many went out; `failed` is called with the index and
    /// error of each that did not.
    pub fn send_batch<'a>(
        &self,
        n: usize,
        msg: impl Fn(usize) -> TxMsg<'a>,
        mut failed: impl FnMut(usize, io::Error),
    ) -> usize {
        let n = n.min(BATCH);
        let mut iov: [[libc::iovec; 2]; BATCH] = [[libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2]; BATCH];
        // SAFETY: all plain data; zero is a valid initial value.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut cmsgs = [CmsgBuf([0; CMSG_SPACE]); BATCH];
        for i in 0..n {
            let m = msg(i);
            let (ss, len) = sockaddr(m.to);
            names[i] = ss;
            iov[i][0] = libc::iovec {
                iov_base: m.header.as_ptr().cast_mut().cast(),
                iov_len: m.header.len(),
            };
            iov[i][1] = libc::iovec {
                iov_base: m.frame.as_ptr().cast_mut().cast(),
                iov_len: m.frame.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&raw mut names[i]).cast();
            h.msg_namelen = len;
            h.msg_iov = iov[i].as_mut_ptr();
            h.msg_iovlen = 2;
            // The socket's own TOS and TTL are the defaults: only other
            // values cost control messages.
            if (m.tos, m.ttl) != (0, SOCKET_TTL) {
                h.msg_control = cmsgs[i].0.as_mut_ptr().cast();
                h.msg_controllen = CMSG_SPACE;
                fill_cmsgs(h, self.v6, m.tos, m.ttl);
            }
        }
        let mut i = 0;
        let mut sent = 0;
        while i < n {
            // SAFETY: headers i..n point at live iovecs, names and control
            // buffers; the kernel only reads them (and writes msg_len).
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs[i..].as_mut_ptr(),
                    (n - i) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                i += r as usize;
                sent += r as usize;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) {
                    // The send buffer is full: the rest would fail the
                    // same way, one system call each.
                    let code = e.raw_os_error().unwrap_or(libc::EAGAIN);
                    (i..n).for_each(|k| failed(k, io::Error::from_raw_os_error(code)));
                    break;
                }
                failed(i, e);
                i += 1;
            }
        }
        sent
    }
}

impl AsRawFd for UdpTunnelSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One datagram to send.
#[derive(Clone, Copy)]
pub struct TxMsg<'a> {
    pub header: &'a [u8],
    pub frame: &'a [u8],
    pub to: SocketAddr,
    pub tos: u8,
    pub ttl: u8,
}

/// Room for two int-sized control messages (TOS and TTL).
const CMSG_SPACE: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_SPACE]);

/// Writes the TOS/traffic class and TTL/hop limit control messages into the
/// control buffer `h` points at, and sets its length to what they take.
fn fill_cmsgs(h: &mut libc::msghdr, v6: bool, tos: u8, ttl: u8) {
    let (level, tos_name, ttl_name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS, libc::IPV6_HOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_TOS, libc::IP_TTL)
    };
    let mut used = 0;
    // SAFETY: the control buffer is CMSG_SPACE bytes, aligned, and holds
    // two CMSG_SPACE(sizeof int) messages (2 x 24 bytes); CMSG_FIRSTHDR
    // and CMSG_NXTHDR stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        for (name, v) in [
            (tos_name, libc::c_int::from(tos)),
            (ttl_name, libc::c_int::from(ttl)),
        ] {
            if c.is_null() {
                break;
            }
            (*c).cmsg_level = level;
            (*c).cmsg_type = name;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), v);
            used += libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize;
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    h.msg_controllen = used;
}

/// Scratch space for one `recv_batch`: `BATCH` datagram buffers, their
/// lengths (`None`: cut short by the kernel) and senders.
pub struct RxBatch {
    bufs: Vec<u8>,
    lens: [Option<usize>; BATCH],
    from: [libc::sockaddr_storage; BATCH],
}

impl Default for RxBatch {
    fn default() -> RxBatch {
        RxBatch {
            bufs: vec![0; BATCH * RX_SLOT],
            lens: [None; BATCH],
            // SAFETY: plain data; zero is a valid (unspecified) address.
            from: unsafe { zeroed() },
        }
    }
}

impl RxBatch {
    /// Datagram `i` of the last receive: its sender (`None` for an address
    /// family that is not IP) and bytes (`None` if it was too large).
    pub fn datagram(&self, i: usize) -> (Option<IpAddr>, Option<&[u8]>) {
        let Some(from) = self.from.get(i) else {
            return (None, None);
        };
        let bytes = self.lens[i].map(|n| &self.bufs[i * RX_SLOT..i * RX_SLOT + n]);
        (ip_of(from), bytes)
    }

    /// Puts datagram `i` as a receive would: `bytes` from `from` (flagged
    /// too large, as the kernel's cut, when they exceed a slot). For wires
    /// other than the kernel's (the bench's, [`super::wire`]).
    pub fn put(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        self.from[i] = sockaddr(from).0;
        let slot = &mut self.bufs[i * RX_SLOT..(i + 1) * RX_SLOT];
        self.lens[i] = slot.get_mut(..bytes.len()).map(|s| {
            s.copy_from_slice(bytes);
            bytes.len()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(v6: bool) -> (UdpTunnelSocket, UdpTunnelSocket) {
        let lo: IpAddr = if v6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        let a = UdpTunnelSocket::bind(SocketAddr::new(lo, 0), false).unwrap();
        let b = UdpTunnelSocket::bind(SocketAddr::new(lo, 0), true).unwrap();
        (a, b)
    }

    fn wait_readable(s: &UdpTunnelSocket) {
        crate::sys::poll_readable(s.as_raw_fd(), Some(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn batches_go_out_with_header_and_frame_and_come_back_with_the_sender() {
        for v6 in [false, true] {
            if v6 && !std::path::Path::new("/proc/net/if_inet6").exists() {
                continue;
            }
            let (a, b) = pair(v6);
            let to = b.local_addr().unwrap();
            let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 60 + usize::from(i)]).collect();
            let msgs: Vec<TxMsg> = frames
                .iter()
                .map(|f| TxMsg {
                    header: b"HDR-8byt",
                    frame: f,
                    to,
                    tos: 0x10,
                    ttl: 7,
                })
                .collect();
            let mut errs = Vec::new();
            assert_eq!(
                a.send_batch(3, |i| msgs[i], |i, e| errs.push((i, e))),
                3,
                "{errs:?}"
            );
            let mut rx = RxBatch::default();
            let mut got = Vec::new();
            for _ in 0..100 {
                wait_readable(&b);
                let n = b.recv_batch(&mut rx);
                for i in 0..n {
                    let (from, d) = rx.datagram(i);
                    assert_eq!(from, Some(a.local_addr().unwrap().ip()));
                    got.push(d.unwrap().to_vec());
                }
                if got.len() == 3 {
                    break;
                }
            }
            for (g, f) in got.iter().zip(&frames) {
                assert_eq!(&g[..8], b"HDR-8byt");
                assert_eq!(&g[8..], &f[..]);
            }
            assert_eq!(got.len(), 3);
            // Nothing more waits: an empty receive is 0, not an error.
            assert_eq!(b.recv_batch(&mut rx), 0);
        }
    }

    fn sockopt(s: &UdpTunnelSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes at most len bytes into v.
        let r =
            unsafe { libc::getsockopt(s.as_raw_fd(), level, name, (&raw mut v).cast(), &mut len) };
        assert_eq!(r, 0);
        v
    }

    #[test]
    fn sockets_never_fragment() {
        let (a, _) = pair(false);
        assert_eq!(
            sockopt(&a, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            libc::IP_PMTUDISC_DO
        );
        // More than UDP can carry is refused, never sent in pieces.
        let big = vec![0u8; 65_535];
        let to = a.local_addr().unwrap();
        let mut errs = Vec::new();
        let m = TxMsg {
            header: &[0; 8],
            frame: &big,
            to,
            tos: 0,
            ttl: 64,
        };
        assert_eq!(
            a.send_batch(1, |_| m, |_, e| errs.push(e.raw_os_error())),
            0
        );
        assert_eq!(errs, [Some(libc::EMSGSIZE)]);
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            let (b, _) = pair(true);
            assert_eq!(
                sockopt(&b, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
                libc::IPV6_PMTUDISC_DO
            );
            assert_eq!(sockopt(&b, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG), 1);
            assert_eq!(sockopt(&b, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), 1);
        }
    }
}
