//! Limits on a switch's incoming OpenFlow connections ([`OfLimits`]).
//!
//! Listeners are always polled, full or not, so a new connection never
//! waits in the kernel's backlog behind idle ones. A new connection from
//! a peer (a TCP address, or a Unix socket's user) that already has
//! `per_peer` connections closes that peer's quietest one; when the switch
//! has `conns` connections, the quietest incoming one of any peer goes.
//! Quietest: one that never asked anything (sent only HELLO and echoes:
//! a flood of idle connections), the oldest first; else the one that asked
//! something longest ago (answering keepalives is not using the switch). Dialled controllers are never
//! closed for a newcomer. A passive connection that has not sent its HELLO
//! within `handshake` is closed.

use std::io;
use std::time::{Duration, Instant};

use super::{Link, Loop, OfLimits};
use crate::openflow::HEADER_LEN;
use crate::stream::Stream;

/// Connections taken from one listener per round of the loop.
const ACCEPTS_PER_ROUND: usize = 64;
/// How long listeners rest after accepting failed (out of descriptors).
const LISTEN_PAUSE: Duration = Duration::from_millis(200);

/// OpenFlow's HELLO, ECHO_REQUEST and ECHO_REPLY types (the same in
/// every version): messages that do not use the switch.
const IDLE_TYPES: [u8; 3] = [0, 2, 3];

/// Who a connection counts against for `per_peer`: the IP address of a
/// TCP (or TLS) peer, the user of a Unix socket's peer.
pub fn peer_key(stream: &Stream, peer: &str) -> String {
    match stream {
        Stream::Unix(s) => match crate::sys::res::peer_uid(s) {
            Some(uid) => format!("uid {uid}"),
            None => "unix".to_owned(),
        },
        _ => {
            let addr = peer.split_once(':').map_or(peer, |(_, a)| a);
            match addr.parse::<std::net::SocketAddr>() {
                Ok(a) => a.ip().to_string(),
                Err(_) => addr.to_owned(),
            }
        }
    }
}

/// Notes what `link`'s peer sent: anything but HELLO and echoes counts
/// as use.
pub fn saw_input(link: &mut Link, bytes: &[u8], now: Instant) {
    let mut used = false;
    link.rx.feed_with(
        bytes,
        false,
        |h: &[u8; HEADER_LEN]| used |= !IDLE_TYPES.contains(&h[1]),
        |_| {},
    );
    if used {
        link.used = true;
        link.used_at = now;
    }
}

/// The quietest incoming connection, of `key`'s peer if given.
fn quietest(l: &Loop, key: Option<&str>) -> Option<u64> {
    l.links
        .iter()
        .filter(|(_, k)| k.active.is_none() && key.is_none_or(|key| k.key == key))
        .min_by_key(|(id, k)| (k.used, k.used_at, **id))
        .map(|(id, _)| *id)
}

/// Makes room for a new connection of peer `key` within `lim`; false if
/// there is none to make (only dialled controllers to close).
pub fn make_room(l: &mut Loop, key: &str, lim: &OfLimits) -> bool {
    let mine = l
        .links
        .values()
        .filter(|k| k.active.is_none() && k.key == key)
        .count();
    let victim = if mine >= lim.per_peer {
        quietest(l, Some(key)).map(|id| (id, format!("{} from {key}", lim.per_peer)))
    } else if l.links.len() >= lim.conns {
        quietest(l, None).map(|id| (id, format!("{} in all", lim.conns)))
    } else {
        return true;
    };
    let Some((id, why)) = victim else {
        return false;
    };
    let sw = l.core.dp.sw.name().to_owned();
    let peer = l.links.get(&id).map(|k| k.peer.clone()).unwrap_or_default();
    l.refused.line(
        &sw,
        &format!("closed the quietest OpenFlow connection ({peer}) for a new one: at the limit of {why} (--max-openflow-conns, --max-openflow-conns-per-peer)"),
    );
    l.drop_link(id, "closed for a newer connection (connection limit)");
    true
}

/// Closes the incoming connections that did not say HELLO in time.
pub fn expire_handshakes(l: &mut Loop, lim: &OfLimits, now: Instant) {
    let late: Vec<u64> = l
        .links
        .iter()
        .filter(|(id, k)| {
            k.active.is_none()
                && now.saturating_duration_since(k.since) >= lim.handshake
                && l.core
                    .conn(**id)
                    .is_some_and(|c| !c.is_open() && c.closing.is_none())
        })
        .map(|(id, _)| *id)
        .collect();
    for id in late {
        let peer = l.links.get(&id).map(|k| k.peer.clone()).unwrap_or_default();
        let sw = l.core.dp.sw.name().to_owned();
        l.refused.line(
            &sw,
            &format!(
                "closed {peer}: no OpenFlow HELLO within {:?} (--openflow-handshake-timeout)",
                lim.handshake
            ),
        );
        l.drop_link(id, "no hello in time");
    }
}

impl Loop {
    /// Takes the connections waiting on listener `i`, within the limits.
    pub(super) fn accept(&mut self, i: usize) {
        // Bounded: a flood of connects cannot keep the loop from the
        // connections it already has.
        for _ in 0..ACCEPTS_PER_ROUND {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let tls = l.is_tls();
            match l.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking().is_err() {
                        continue;
                    }
                    let stream = match (stream, tls) {
                        (Stream::Tcp(s), true) => match Stream::tls_server(s, &self.tls) {
                            Ok(t) => t,
                            Err(e) => {
                                let sw = self.core.dp.sw.name().to_owned();
                                self.refused.line(&sw, &format!("refused {peer}: {e}"));
                                continue;
                            }
                        },
                        (s, _) => s,
                    };
                    let key = peer_key(&stream, &peer);
                    let lim = self.limits.clone();
                    if !make_room(self, &key, &lim) {
                        let sw = self.core.dp.sw.name().to_owned();
                        self.refused.line(
                            &sw,
                            &format!("refused {peer}: {} OpenFlow connections, all to controllers (--max-openflow-conns)", lim.conns),
                        );
                        continue;
                    }
                    let now = self.nanos();
                    let id = self.core.open(peer.clone(), now);
                    self.links.insert(id, Link::new(stream, None, peer, key));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors and the like: the listeners rest a
                // while (polling them would spin), and the log says why.
                Err(e) => {
                    self.listen_pause = Some(Instant::now() + LISTEN_PAUSE);
                    let sw = self.core.dp.sw.name().to_owned();
                    let hint = match e.raw_os_error() {
                        Some(libc::EMFILE | libc::ENFILE) => {
                            " (out of file descriptors: RLIMIT_NOFILE)"
                        }
                        _ => "",
                    };
                    self.refused.line(
                        &sw,
                        &format!("cannot accept OpenFlow connections: {e}{hint}"),
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_counted_by_address_or_user() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let unix = Stream::Unix(a);
        assert_eq!(
            peer_key(&unix, "unix:/run/x.mgmt"),
            format!("uid {}", crate::sys::euid())
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Stream::Tcp(std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap());
        assert_eq!(peer_key(&t, "tcp:127.0.0.1:40000"), "127.0.0.1");
        assert_eq!(peer_key(&t, "ssl:[::1]:40000"), "::1");
    }

    #[test]
    fn echoes_are_not_use() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Stream::Tcp(std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let mut link = Link::new(t, None, "tcp:x".into(), "x".into());
        let t0 = link.used_at;
        let later = t0 + std::time::Duration::from_secs(5);
        // A HELLO and an echo reply cut in two: not use.
        let msgs = [4u8, 0, 0, 8, 0, 0, 0, 1, 4, 3, 0, 8, 0, 0, 0, 1];
        saw_input(&mut link, &msgs[..11], later);
        saw_input(&mut link, &msgs[11..], later);
        assert_eq!((link.used, link.used_at), (false, t0));
        // A flow stats request (multipart, type 18) is.
        saw_input(&mut link, &[4, 18, 0, 8, 0, 0, 0, 2], later);
        assert_eq!((link.used, link.used_at), (true, later));
    }
}
