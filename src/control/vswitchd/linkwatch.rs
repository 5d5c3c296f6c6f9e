//! The kernel's link notifications (rtnetlink, `RTMGRP_LINK`): which
//! interfaces changed (up/down, carrier, MTU, address) since the last
//! look, without reading sysfs for every interface, the way ovs-vswitchd
//! learns of them (its netdev change sequence).
//!
//! The socket is non-blocking and only read: a look drains what queued.
//! Messages are checked against their lengths; anything malformed ends
//! the look (the periodic refresh catches up). If the queue overflowed
//! (ENOBUFS), every interface is reported as changed.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// What a look found.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Interfaces named in a link message.
    pub names: Vec<String>,
    /// Messages were lost: treat every interface as changed.
    pub overflow: bool,
}

pub struct LinkWatch {
    fd: OwnedFd,
}

impl LinkWatch {
    /// A socket subscribed to link notifications.
    pub fn open() -> io::Result<LinkWatch> {
        // SAFETY: plain syscall with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_LINK;
        // SAFETY: `sa` is a sockaddr_nl of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkWatch { fd })
    }

    /// Drains the queued notifications.
    pub fn changes(&self) -> Changes {
        let mut out = Changes::default();
        let mut buf = [0u8; 16384];
        // Bounded: a look reads what is queued now, not a flood forever.
        for _ in 0..256 {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    out.overflow = true;
                    continue;
                }
                break;
            }
            if n == 0 {
                break;
            }
            parse(&buf[..n as usize], &mut out.names);
        }
        out.names.sort();
        out.names.dedup();
        out
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The interface names of the link messages in one datagram.
fn parse(mut b: &[u8], names: &mut Vec<String>) {
    while b.len() >= NLMSG_HDR {
        let Some(len) = u32_at(b, 0).map(|l| l as usize) else {
            return;
        };
        let Some(kind) = u16_at(b, 4) else { return };
        if len < NLMSG_HDR || len > b.len() {
            return;
        }
        let msg = &b[NLMSG_HDR..len];
        if matches!(kind, RTM_NEWLINK | RTM_DELLINK)
            && let Some(name) = msg.get(IFINFOMSG..).and_then(ifname)
        {
            names.push(name);
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
}

/// The IFLA_IFNAME attribute among `attrs`.
fn ifname(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0)?);
        let kind = u16_at(attrs, 2)?;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == IFLA_IFNAME {
            let v = &attrs[4..len];
            let v = v.split(|&c| c == 0).next().unwrap_or(v);
            return std::str::from_utf8(v).ok().map(str::to_owned);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One link message naming `name` (header, ifinfomsg, one attribute
    /// before the name).
    fn msg(kind: u16, name: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&4u16.to_ne_bytes()); // IFLA_MTU
        attrs.extend_from_slice(&1500u32.to_ne_bytes());
        let alen = 4 + name.len() + 1;
        attrs.extend_from_slice(&(alen as u16).to_ne_bytes());
        attrs.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attrs.extend_from_slice(name.as_bytes());
        attrs.push(0);
        attrs.resize(attrs.len().next_multiple_of(4), 0);
        let len = NLMSG_HDR + IFINFOMSG + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0; IFINFOMSG]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn link_messages_name_their_interfaces_and_bad_ones_stop_the_look() {
        let mut d = msg(RTM_NEWLINK, "veth0");
        d.extend(msg(24, "route")); // RTM_NEWROUTE: not a link
        d.extend(msg(RTM_DELLINK, "tap1"));
        let mut names = Vec::new();
        parse(&d, &mut names);
        assert_eq!(names, ["veth0", "tap1"]);
        // Truncated, overlong, zero-length: nothing read past them, no panic.
        for cut in [3, 15, 20, 33, d.len() - 1] {
            let mut n = Vec::new();
            parse(&d[..cut], &mut n);
            assert!(n.len() <= 1, "{cut}: {n:?}");
        }
        let mut bad = msg(RTM_NEWLINK, "x");
        bad[0..4].copy_from_slice(&0u32.to_ne_bytes());
        let mut n = Vec::new();
        parse(&bad, &mut n);
        assert!(n.is_empty());
        let mut bad_attr = msg(RTM_NEWLINK, "y");
        bad_attr[NLMSG_HDR + IFINFOMSG..][..2].copy_from_slice(&500u16.to_ne_bytes());
        parse(&bad_attr, &mut n);
        assert!(n.is_empty());
    }
}
