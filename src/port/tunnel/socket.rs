//! The kernel UDP socket that carries a tunnel's datagrams: with
//! [`super::rxbatch`] (its receives), the only code of the tunnel ports
//! that calls the OS.
//!
//! The socket is non-blocking and moves datagrams in batches
//! (`recvmmsg`/`sendmmsg`). It never fragments: over IPv4
//! `IP_MTU_DISCOVER` is `IP_PMTUDISC_DO` (the DF bit is set and a datagram
//! larger than the route's MTU fails with `EMSGSIZE`), over IPv6
//! `IPV6_MTU_DISCOVER` is `IPV6_PMTUDISC_DO` and `IPV6_DONTFRAG` is on.
//! The outer TOS (traffic class) and TTL (hop limit) travel with each
//! datagram as ancillary data, so ports that share the socket keep their
//! own. The kernel picks the route, the neighbour and the source address.
//! An IPv6 socket is IPv6-only (an IPv4 socket on the same port can exist
//! beside it) and accepts datagrams with a zero UDP checksum, as RFC 6935
//! allows tunnels.
//!
//! Segmentation offload, both ways, where the kernel has it (Linux 5.0+):
//! consecutive datagrams of a batch to the same remote with the same
//! length, TOS and TTL (a bulk TCP transfer's full-sized frames, a
//! generator's) go down as *one* send with `UDP_SEGMENT`: the kernel's UDP
//! and IP path runs once for up to 64 of them, and the datagrams are cut
//! apart at the device (by the NIC, or in software just before the driver),
//! each a normal datagram on the wire. On receive, `UDP_GRO` lets the kernel
//! hand over runs of datagrams from one sender as one buffer with their
//! size, which [`RxBatch`] cuts apart again. A send the kernel refuses as a
//! whole is retried datagram by datagram, so each is counted as it would
//! be without offload (`EMSGSIZE` for each one too big); a path that
//! cannot take segmentation offload at all (an IPsec policy, an old kernel)
//! turns it off for the socket, and `MSWITCH_TUNNEL_OFFLOAD=0` in the
//! environment turns it off for the process. UDP segmentation needs the UDP checksum,
//! so where it is on, IPv4 datagrams carry one whatever the port's `csum`
//! says (Open vSwitch sends none unless asked; RFC 7348 has receivers accept
//! both, and check a non-zero one). It is filled by the device where it
//! can (`ethtool -k`: tx-checksumming), otherwise by the kernel.
//!
//! Each received datagram also brings the address it was sent to
//! (`IP_PKTINFO`, `IPV6_PKTINFO`): the packet's `tun_dst` or
//! `tun_ipv6_dst`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::header::flow_hash;
use super::rxbatch::RxBatch;
use super::rxbatch::UDP_GRO;

/// Datagrams moved per system call at most.
pub const BATCH: usize = 64;
/// The socket receive buffer asked for, to ride out bursts while the
/// worker is busy elsewhere.
const RCVBUF: libc::c_int = 4 << 20;
/// The TTL (hop limit) the socket sends with when a datagram does not say
/// otherwise (Open vSwitch's default for tunnels); its TOS is 0.
pub const SOCKET_TTL: u8 = 64;
/// `UDP_NO_CHECK6_RX` and `UDP_SEGMENT`
/// (include/uapi/linux/udp.h).
const UDP_NO_CHECK6_RX: libc::c_int = 102;
const UDP_SEGMENT: libc::c_int = 103;
/// Datagrams in one segmentation-offload send at most (the kernel's
/// `UDP_MAX_SEGMENTS` is 64 on older kernels, 128 on newer).
const GSO_SEGMENTS: usize = 64;
/// UDP payload of one segmentation-offload send at most (under the 65,507
/// bytes IPv4 allows).
const GSO_BYTES: usize = 65_000;

/// Whether tunnel sockets use segmentation offload: yes unless the
/// environment has `MSWITCH_TUNNEL_OFFLOAD=0` (for measuring what it
/// brings, and for a path that mishandles it), read once.
fn offload_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("MSWITCH_TUNNEL_OFFLOAD").is_none_or(|v| v != "0"))
}

/// Outer UDP source ports per socket: each frame goes out from the one its
/// inner flow hashes to ([`flow_hash`]).
pub const SOURCE_PORTS: usize = 8;

/// A new non-blocking UDP socket with the send options of the module doc
/// (never fragment, default TTL, checksum), and whether it takes
/// segmentation offload.
fn open_udp(v6: bool, csum: bool) -> io::Result<(OwnedFd, bool)> {
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
    // Kernels without segmentation offload refuse the option.
    let gso = offload_wanted() && setsockopt(raw, libc::IPPROTO_UDP, UDP_SEGMENT, 0).is_ok();
    if v6 {
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        setsockopt(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
    } else {
        setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )?;
        let no_check = !csum && !gso;
        setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            i32::from(no_check),
        )?;
    }
    let (level, ttl) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
    } else {
        (libc::IPPROTO_IP, libc::IP_TTL)
    };
    setsockopt(raw, level, ttl, libc::c_int::from(SOCKET_TTL))?;
    Ok((fd, gso))
}

/// Makes socket `fd` drop whatever arrives for it (a socket filter that
/// accepts nothing), best effort: a sender's port is nobody's address.
fn drop_everything_received(fd: RawFd) {
    let mut nothing = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: nothing.as_mut_ptr(),
    };
    // SAFETY: passes a live filter program and its size; the kernel
    // copies it.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        );
    }
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 0);
}

fn bind_to(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: ss holds a sockaddr of length len.
    check(unsafe { libc::bind(fd, (&raw const ss).cast(), len) }).map(|_| ())
}

/// A bound tunnel socket.
pub struct UdpTunnelSocket {
    fd: OwnedFd,
    /// The sockets frames go out from, one per outer source port (empty:
    /// from `fd`).
    senders: Vec<OwnedFd>,
    v6: bool,
    /// Sends go down with `UDP_SEGMENT` where they can.
    gso: AtomicBool,
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
pub(super) fn ip_of(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
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
    /// Binds a non-blocking UDP socket to `local` with the options above.
    /// Over IPv4 it sends a zero UDP checksum unless `csum` (Open vSwitch's
    /// default for tunnels is no checksum) or segmentation offload is on.
    pub fn bind(local: SocketAddr, csum: bool) -> io::Result<UdpTunnelSocket> {
        let v6 = local.is_ipv6();
        let (fd, gso) = open_udp(v6, csum)?;
        let raw = fd.as_raw_fd();
        if gso {
            // Best effort: without it, datagrams come one by one.
            let _ = setsockopt(raw, libc::IPPROTO_UDP, UDP_GRO, 1);
        }
        if v6 {
            // Best effort: without it, zero-checksum senders are not heard.
            let _ = setsockopt(raw, libc::IPPROTO_UDP, UDP_NO_CHECK6_RX, 1);
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        } else {
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        }
        // Root may exceed rmem_max; others get what the sysctl allows.
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
        }
        bind_to(raw, local)?;
        // The senders: same options, ports the kernel picks from its
        // ephemeral range, reading nothing. Without them (out of
        // descriptors) the socket sends from its own port.
        let any = SocketAddr::new(local.ip(), 0);
        let senders = (0..SOURCE_PORTS)
            .map(|_| {
                let (fd, _) = open_udp(v6, csum)?;
                bind_to(fd.as_raw_fd(), any)?;
                drop_everything_received(fd.as_raw_fd());
                Ok(fd)
            })
            .collect::<io::Result<Vec<OwnedFd>>>()
            .unwrap_or_default();
        Ok(UdpTunnelSocket {
            fd,
            senders,
            v6,
            gso: AtomicBool::new(gso),
        })
    }

    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// Whether sends use segmentation offload.
    pub fn offloads(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
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

    /// Receives up to `BATCH` messages into `rx` without waiting (each may
    /// hold several datagrams, see [`RxBatch`]); returns how many messages
    /// (0 when none wait). Datagrams `rx` still held are forgotten.
    pub fn recv_batch(&self, rx: &mut RxBatch) -> usize {
        rx.receive(self.fd.as_raw_fd())
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
        let gso = self.offloads();
        let mut msgs = [TxMsg::EMPTY; BATCH];
        let mut orig = [0u8; BATCH];
        let ns = self.senders.len();
        if ns == 0 {
            for i in 0..n {
                (msgs[i], orig[i]) = (msg(i), i as u8);
            }
            return self.send_msgs(
                self.fd.as_raw_fd(),
                &msgs[..n],
                &orig[..n],
                gso,
                &mut failed,
            );
        }
        // Grouped by sender (a counting sort; a flow's frames keep their
        // order), then one sendmmsg per sender that has any.
        let mut which = [0u8; BATCH];
        let mut start = [0usize; SOURCE_PORTS + 1];
        for (i, w) in which.iter_mut().enumerate().take(n) {
            *w = (flow_hash(msg(i).frame) as usize % ns) as u8;
            start[usize::from(*w) + 1] += 1;
        }
        for k in 0..ns {
            start[k + 1] += start[k];
        }
        let mut at = start;
        for (i, &w) in which.iter().enumerate().take(n) {
            let p = &mut at[usize::from(w)];
            (msgs[*p], orig[*p]) = (msg(i), i as u8);
            *p += 1;
        }
        let mut sent = 0;
        for (k, sock) in self.senders.iter().enumerate() {
            let r = start[k]..start[k + 1];
            if !r.is_empty() {
                sent += self.send_msgs(
                    sock.as_raw_fd(),
                    &msgs[r.clone()],
                    &orig[r],
                    gso,
                    &mut failed,
                );
            }
        }
        sent
    }

    /// Sends `msgs` (at most `BATCH`) through socket `fd`, runs of them as
    /// one segmentation-offload send each if `gso`; `failed` gets the
    /// caller's index of a message, `orig[i]` for `msgs[i]`.
    fn send_msgs(
        &self,
        fd: RawFd,
        msgs: &[TxMsg<'_>],
        orig: &[u8],
        gso: bool,
        failed: &mut dyn FnMut(usize, io::Error),
    ) -> usize {
        let n = msgs.len();
        // Runs of datagrams that go down as one send: [start, end).
        let mut runs = [(0usize, 0usize); BATCH];
        let mut nruns = 0;
        let mut i = 0;
        while i < n {
            let j = if gso { run_end(msgs, i) } else { i + 1 };
            runs[nruns] = (i, j);
            nruns += 1;
            i = j;
        }
        // Only what is sent is written (the arrays are ~19 KB; zeroing
        // them was most of a send's cost).
        let mut iov: [MaybeUninit<[libc::iovec; 2]>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        for (v, m) in iov.iter_mut().zip(msgs) {
            v.write([
                libc::iovec {
                    iov_base: m.header.as_ptr().cast_mut().cast(),
                    iov_len: m.header.len(),
                },
                libc::iovec {
                    iov_base: m.frame.as_ptr().cast_mut().cast(),
                    iov_len: m.frame.len(),
                },
            ]);
        }
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let mut names: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let mut cmsgs: [MaybeUninit<CmsgBuf>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
        // One pointer to all the iovecs, pairs in a row: a run's message
        // gathers the pairs of its datagrams.
        let iov_base = iov.as_mut_ptr().cast::<libc::iovec>();
        for (r, &(a, b)) in runs[..nruns].iter().enumerate() {
            let m = &msgs[a];
            let (ss, len) = sockaddr(m.to);
            // SAFETY: all-zero is a valid mmsghdr.
            let mut hdr: libc::mmsghdr = unsafe { zeroed() };
            let h = &mut hdr.msg_hdr;
            h.msg_name = (&raw mut *names[r].write(ss)).cast();
            h.msg_namelen = len;
            // SAFETY: pair a starts at iovec 2a of the 2 * BATCH, and the
            // pairs a..b were written above.
            h.msg_iov = unsafe { iov_base.add(2 * a) };
            h.msg_iovlen = 2 * (b - a);
            // The socket's own TOS and TTL are the defaults: only other
            // values cost control messages.
            let seg = (b - a > 1).then_some(m.len() as u16);
            if (m.tos, m.ttl) != (0, SOCKET_TTL) || seg.is_some() {
                let c = cmsgs[r].write(CmsgBuf([0; CMSG_SPACE]));
                h.msg_control = c.0.as_mut_ptr().cast();
                h.msg_controllen = CMSG_SPACE;
                fill_tx_cmsgs(h, self.v6, (m.tos, m.ttl) != (0, SOCKET_TTL), m, seg);
            }
            hdrs[r].write(hdr);
        }
        // Headers 0..nruns are written; MaybeUninit<T> is laid out as T.
        let hdrs = hdrs.as_mut_ptr().cast::<libc::mmsghdr>();
        let mut r = 0;
        let mut sent = 0;
        while r < nruns {
            // SAFETY: headers r..nruns were written above and point at live
            // iovecs, names and control buffers; the kernel only reads them
            // (and writes msg_len).
            let k = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.add(r),
                    (nruns - r) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if k > 0 {
                let k = k as usize;
                sent += runs[r..r + k].iter().map(|(a, b)| b - a).sum::<usize>();
                r += k;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let (a, b) = runs[r];
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) {
                // The send buffer is full: the rest would fail the same
                // way, one system call each.
                let code = e.raw_os_error().unwrap_or(libc::EAGAIN);
                (a..n)
                    .for_each(|k| failed(usize::from(orig[k]), io::Error::from_raw_os_error(code)));
                break;
            }
            if b - a > 1 {
                // Refused as a whole: one by one, each counted as it would
                // be without offload. Anything but "too big" says the path
                // cannot take offload at all.
                if e.raw_os_error() != Some(libc::EMSGSIZE) {
                    self.gso.store(false, Ordering::Relaxed);
                }
                sent += self.send_msgs(fd, &msgs[a..b], &orig[a..b], false, failed);
            } else {
                failed(usize::from(orig[a]), e);
            }
            r += 1;
        }
        sent
    }
}

/// The end of the run of datagrams from `i` that can go down as one
/// segmentation-offload send: the same destination, TOS and TTL, the same
/// length as the first (the last may be shorter), within the kernel's
/// limits.
fn run_end(msgs: &[TxMsg<'_>], i: usize) -> usize {
    let m = &msgs[i];
    let seg = m.len();
    let mut bytes = seg;
    let mut j = i + 1;
    while j < msgs.len() && j - i < GSO_SEGMENTS {
        let o = &msgs[j];
        let len = o.len();
        if len > seg || bytes + len > GSO_BYTES || (o.to, o.tos, o.ttl) != (m.to, m.tos, m.ttl) {
            break;
        }
        bytes += len;
        j += 1;
        if len < seg {
            break;
        }
    }
    j
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

impl TxMsg<'_> {
    const EMPTY: TxMsg<'static> = TxMsg {
        header: &[],
        frame: &[],
        to: SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        tos: 0,
        ttl: SOCKET_TTL,
    };

    /// The UDP payload's length.
    fn len(&self) -> usize {
        self.header.len() + self.frame.len()
    }
}

/// Room for three control messages (TOS, TTL and segment size on send,
/// 3 x 24 bytes; segment size and packet info on receive, 24 and up to
/// 40 for IPv6's).
pub(super) const CMSG_SPACE: usize = 80;

#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct CmsgBuf(pub(super) [u8; CMSG_SPACE]);

/// Writes the control messages of a send into the buffer `h` points at:
/// TOS/traffic class and TTL/hop limit (if `tos_ttl`), and the segment
/// size of a segmentation-offload send; sets the length to what they take.
fn fill_tx_cmsgs(h: &mut libc::msghdr, v6: bool, tos_ttl: bool, m: &TxMsg<'_>, seg: Option<u16>) {
    let (level, tos_name, ttl_name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS, libc::IPV6_HOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_TOS, libc::IP_TTL)
    };
    let int = |v: u8| (libc::c_int::from(v).to_ne_bytes(), size_of::<libc::c_int>());
    let mut list: [(libc::c_int, libc::c_int, ([u8; 4], usize)); 3] = [(0, 0, ([0; 4], 0)); 3];
    let mut k = 0;
    if tos_ttl {
        list[0] = (level, tos_name, int(m.tos));
        list[1] = (level, ttl_name, int(m.ttl));
        k = 2;
    }
    if let Some(s) = seg {
        let b = s.to_ne_bytes();
        list[k] = (libc::IPPROTO_UDP, UDP_SEGMENT, ([b[0], b[1], 0, 0], 2));
        k += 1;
    }
    let mut used = 0;
    // SAFETY: the control buffer is CMSG_SPACE bytes, aligned, and holds
    // three CMSG_SPACE(4) messages (3 x 24 bytes); CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        for &(lvl, name, (bytes, len)) in &list[..k] {
            if c.is_null() {
                break;
            }
            (*c).cmsg_level = lvl;
            (*c).cmsg_type = name;
            (*c).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), libc::CMSG_DATA(c), len);
            used += libc::CMSG_SPACE(len as u32) as usize;
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    h.msg_controllen = used;
}

#[cfg(test)]
pub(super) mod tests {
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
                    tos: 0x10,
                    ttl: 7,
                    ..msg(f, to)
                })
                .collect();
            let mut rx = RxBatch::default();
            let got = send_and_receive(&a, &b, &msgs, &mut rx);
            for (from, dst, _) in &got {
                assert_eq!(*from, Some(a.local_addr().unwrap().ip()));
                assert_eq!(*dst, Some(to.ip()));
            }
            assert_came_whole(&got, &frames);
            // Nothing more waits: an empty receive is 0, not an error.
            assert_eq!(b.recv_batch(&mut rx), 0);
        }
    }

    /// A datagram of `frame` to `to` with the test header and the
    /// socket's TOS and TTL.
    pub(in crate::port::tunnel) fn msg<'a>(frame: &'a [u8], to: SocketAddr) -> TxMsg<'a> {
        TxMsg {
            header: b"HDR-8byt",
            frame,
            to,
            tos: 0,
            ttl: SOCKET_TTL,
        }
    }

    /// What a datagram came as: sender, destination, bytes.
    type Received = (Option<IpAddr>, Option<IpAddr>, Vec<u8>);

    /// Sends `msgs` from `a` (all must go) and receives on `b` until as
    /// many datagrams came, or 100 waits of up to 5 s passed.
    fn send_and_receive(
        a: &UdpTunnelSocket,
        b: &UdpTunnelSocket,
        msgs: &[TxMsg<'_>],
        rx: &mut RxBatch,
    ) -> Vec<Received> {
        let mut errs = Vec::new();
        let n = msgs.len();
        assert_eq!(
            a.send_batch(n, |i| msgs[i], |i, e| errs.push((i, e))),
            n,
            "{errs:?}"
        );
        let mut got = Vec::new();
        for _ in 0..100 {
            wait_readable(b);
            b.recv_batch(rx);
            while let Some(d) = rx.peek() {
                got.push((d.from, d.to, d.bytes.unwrap().to_vec()));
                rx.advance();
            }
            if got.len() >= n {
                break;
            }
        }
        got
    }

    /// Each of `got` is the test header and the frame of `frames` in turn.
    fn assert_came_whole(got: &[Received], frames: &[Vec<u8>]) {
        assert_eq!(got.len(), frames.len());
        for ((_, _, g), f) in got.iter().zip(frames) {
            assert_eq!(&g[..8], b"HDR-8byt");
            assert_eq!(&g[8..], &f[..]);
        }
    }

    #[test]
    fn runs_of_equal_datagrams_to_one_place_go_down_together() {
        let to = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let (f60, f50, f1400) = (vec![0u8; 60], vec![0u8; 50], vec![0u8; 1400]);
        let mut m = vec![msg(&f60, to(1)); 5];
        m.push(msg(&f50, to(1))); // a shorter one ends a run
        m.push(msg(&f60, to(1)));
        m.push(msg(&f60, to(2))); // another destination
        m.push(TxMsg {
            ttl: 3,
            ..msg(&f60, to(2))
        }); // another TTL
        m.extend(std::iter::repeat_n(msg(&f1400, to(2)), 50)); // 65,000 bytes at most
        let mut runs = Vec::new();
        let mut i = 0;
        while i < m.len() {
            let j = run_end(&m, i);
            runs.push(j - i);
            i = j;
        }
        // 46 x 1408 = 64,768; one more would pass 65,000.
        assert_eq!(runs, [6, 1, 1, 1, 46, 4]);
    }

    #[test]
    fn offloaded_runs_arrive_as_the_datagrams_they_were() {
        let (a, b) = pair(false);
        let to = b.local_addr().unwrap();
        // One flow (same addresses and EtherType): one source port, in order.
        let frames: Vec<Vec<u8>> = (0..41u8)
            .map(|i| {
                let mut f = vec![i; if i == 40 { 700 } else { 1000 }];
                f[..14].fill(0x88);
                f
            })
            .collect();
        let msgs: Vec<TxMsg> = frames.iter().map(|f| msg(f, to)).collect();
        let got = send_and_receive(&a, &b, &msgs, &mut RxBatch::default());
        assert!(
            got.iter()
                .all(|(_, dst, _)| *dst == Some(Ipv4Addr::LOCALHOST.into()))
        );
        assert_came_whole(&got, &frames);
        // Loopback takes offloaded sends: nothing turned it off.
        let probe = UdpTunnelSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false).unwrap();
        assert_eq!(a.offloads(), probe.offloads());
    }

    #[test]
    fn each_flow_goes_out_from_its_own_source_port() {
        use crate::wire::ethernet::{MacAddr, udp_frame};
        let (a, _) = pair(false);
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = peer.local_addr().unwrap();
        // 32 flows, twice each.
        let frames: Vec<Vec<u8>> = (0..64u16)
            .map(|i| {
                let (d, s) = (MacAddr::local(2), MacAddr::local(1));
                udp_frame(60, d, s, [10, 0, 0, 1], [10, 0, 0, 2], 1000 + i % 32, 80)
            })
            .collect();
        let msgs: Vec<TxMsg> = frames.iter().map(|f| msg(f, to)).collect();
        assert_eq!(a.send_batch(64, |i| msgs[i], |_, e| panic!("{e}")), 64);
        let mut port_of = std::collections::HashMap::new();
        let mut buf = [0u8; 2048];
        for _ in 0..64 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(n, 68);
            assert_eq!(from.ip(), a.local_addr().unwrap().ip());
            let flow = u16::from_be_bytes([buf[8 + 34], buf[8 + 35]]);
            let p = *port_of.entry(flow).or_insert(from.port());
            assert_eq!(p, from.port(), "flow {flow} left from two ports");
        }
        assert_eq!(port_of.len(), 32);
        let ports: std::collections::HashSet<u16> = port_of.values().copied().collect();
        assert!(ports.len() >= 4, "32 flows left from {ports:?}");
        assert!(!ports.contains(&a.local_addr().unwrap().port()));
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
