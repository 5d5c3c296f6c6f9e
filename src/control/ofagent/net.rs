//! Where OpenFlow connections come from: the `tcp:`/`ssl:`/`unix:` targets
//! a switch dials (controllers) and the `ptcp:`/`pssl:`/`punix:` addresses
//! it listens on (ovs-ofctl, passive controllers), with the sockets behind
//! them. The streams are [`crate::stream::Stream`]s; TLS is put on a TCP
//! socket by the agent, with its keys, once the socket is connected.
//!
//! ```text
//! tcp:HOST:PORT      connect to a controller (PORT defaults to 6653)
//! ssl:HOST:PORT      the same over TLS
//! unix:PATH          connect over a Unix socket
//! ptcp:PORT[:IP]     listen on TCP (IP defaults to 127.0.0.1)
//! pssl:PORT[:IP]     the same over TLS
//! punix:PATH         listen on a Unix socket
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

pub use crate::stream::Stream;

/// The IANA port for OpenFlow.
pub const OFP_TCP_PORT: u16 = 6653;

/// A controller to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Tcp(String, u16),
    /// TLS over TCP.
    Ssl(String, u16),
    Unix(PathBuf),
}

/// An address to listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passive {
    Tcp(SocketAddr),
    /// TLS over TCP.
    Ssl(SocketAddr),
    Unix(PathBuf),
}

fn port_of(s: &str, what: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("bad port '{s}' in {what}"))
}

impl std::str::FromStr for Remote {
    type Err = String;

    fn from_str(s: &str) -> Result<Remote, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("'{s}': empty path"));
            }
            return Ok(Remote::Unix(PathBuf::from(p)));
        }
        let (rest, ssl) = match (s.strip_prefix("tcp:"), s.strip_prefix("ssl:")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => {
                return Err(format!(
                    "bad controller '{s}' (expected tcp:HOST[:PORT], ssl:HOST[:PORT] or unix:PATH)"
                ));
            }
        };
        // [v6]:port, host:port or host.
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r
                .split_once(']')
                .ok_or_else(|| format!("'{s}': unclosed ["))?;
            match tail.strip_prefix(':') {
                Some(p) => (h, port_of(p, s)?),
                None if tail.is_empty() => (h, OFP_TCP_PORT),
                None => return Err(format!("'{s}': junk after ]")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, port_of(p, s)?),
                None => (rest, OFP_TCP_PORT),
            }
        };
        if host.is_empty() {
            return Err(format!("'{s}': empty host"));
        }
        Ok(if ssl {
            Remote::Ssl(host.to_owned(), port)
        } else {
            Remote::Tcp(host.to_owned(), port)
        })
    }
}

impl std::str::FromStr for Passive {
    type Err = String;

    fn from_str(s: &str) -> Result<Passive, String> {
        if let Some(p) = s.strip_prefix("punix:") {
            if p.is_empty() {
                return Err(format!("'{s}': empty path"));
            }
            return Ok(Passive::Unix(PathBuf::from(p)));
        }
        let (rest, ssl) = match (s.strip_prefix("ptcp:"), s.strip_prefix("pssl:")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => {
                return Err(format!(
                    "bad listen address '{s}' (expected ptcp:PORT[:IP], pssl:PORT[:IP] or punix:PATH)"
                ));
            }
        };
        let (port, ip) = match rest.split_once(':') {
            Some((p, ip)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("bad address '{ip}' in {s}"))?;
                (p, ip)
            }
            None => (rest, IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let a = SocketAddr::new(ip, port_of(port, s)?);
        Ok(if ssl {
            Passive::Ssl(a)
        } else {
            Passive::Tcp(a)
        })
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Tcp(h, p) if h.contains(':') => write!(f, "tcp:[{h}]:{p}"),
            Remote::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
            Remote::Ssl(h, p) if h.contains(':') => write!(f, "ssl:[{h}]:{p}"),
            Remote::Ssl(h, p) => write!(f, "ssl:{h}:{p}"),
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl fmt::Display for Passive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Passive::Tcp(a) => write!(f, "ptcp:{}:{}", a.port(), a.ip()),
            Passive::Ssl(a) => write!(f, "pssl:{}:{}", a.port(), a.ip()),
            Passive::Unix(p) => write!(f, "punix:{}", p.display()),
        }
    }
}

/// Starts connecting to a controller. TCP connects in the background (the
/// stream turns writable when done); a Unix socket connects at once. For
/// `ssl:` this is the TCP connection, which the caller then wraps in TLS.
pub fn connect(r: &Remote) -> io::Result<Stream> {
    match r {
        Remote::Tcp(host, port) | Remote::Ssl(host, port) => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{host}: no address")))?;
            Ok(Stream::Tcp(crate::sys::tcp_connect_start(&addr)?))
        }
        Remote::Unix(p) => {
            let s = UnixStream::connect(p)?;
            s.set_nonblocking(true)?;
            Ok(Stream::Unix(s))
        }
    }
}

/// A listening socket; a Unix one removes its path when dropped.
pub enum Listener {
    /// TCP, with TLS on the accepted connections when `true` (`pssl:`).
    Tcp(TcpListener, bool),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `p`. A stale Unix socket (nobody answers on it) is replaced;
    /// a live one is an error.
    pub fn bind(p: &Passive) -> Result<Listener, String> {
        let l = match p {
            Passive::Tcp(a) | Passive::Ssl(a) => Listener::Tcp(
                TcpListener::bind(a).map_err(|e| format!("cannot listen on {p}: {e}"))?,
                matches!(p, Passive::Ssl(_)),
            ),
            Passive::Unix(path) => {
                let l = crate::control::bind_unix(path, "another switch is listening on")?;
                Listener::Unix(l, path.clone())
            }
        };
        match &l {
            Listener::Tcp(t, _) => t.set_nonblocking(true),
            Listener::Unix(u, _) => u.set_nonblocking(true),
        }
        .map_err(|e| format!("{p}: {e}"))?;
        Ok(l)
    }

    /// The next waiting connection, if any, with a name for the peer. On
    /// a `pssl:` listener it is the TCP connection, to be wrapped in TLS.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(t, tls) => {
                let (s, a) = t.accept()?;
                let scheme = if *tls { "ssl" } else { "tcp" };
                Ok((Stream::Tcp(s), format!("{scheme}:{a}")))
            }
            Listener::Unix(u, p) => {
                let (s, _) = u.accept()?;
                Ok((Stream::Unix(s), format!("unix:{}", p.display())))
            }
        }
    }

    /// Accepted connections are to be wrapped in TLS (`pssl:`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Listener::Tcp(_, true))
    }

    /// The TCP port actually bound (for `ptcp:0`).
    pub fn local_port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(t, _) => t.local_addr().ok().map(|a| a.port()),
            Listener::Unix(..) => None,
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(t, _) => t.as_raw_fd(),
            Listener::Unix(u, _) => u.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        let r: Remote = "tcp:127.0.0.1:6633".parse().unwrap();
        assert_eq!(r, Remote::Tcp("127.0.0.1".into(), 6633));
        assert_eq!(r.to_string(), "tcp:127.0.0.1:6633");
        let r: Remote = "tcp:ctl.example".parse().unwrap();
        assert_eq!(r, Remote::Tcp("ctl.example".into(), OFP_TCP_PORT));
        let r: Remote = "tcp:[::1]:7".parse().unwrap();
        assert_eq!(r.to_string(), "tcp:[::1]:7");
        assert!("tcp:".parse::<Remote>().is_err());
        assert!("tcp:h:99999".parse::<Remote>().is_err());
        assert!("ssl:".parse::<Remote>().is_err());
        let r: Remote = "ssl:10.0.0.1".parse().unwrap();
        assert_eq!(r, Remote::Ssl("10.0.0.1".into(), OFP_TCP_PORT));
        assert_eq!(r.to_string(), "ssl:10.0.0.1:6653");
        assert!("tls:h:1".parse::<Remote>().is_err());
        assert_eq!(
            "unix:/x/y".parse::<Remote>().unwrap(),
            Remote::Unix("/x/y".into())
        );
        let p: Passive = "ptcp:6634".parse().unwrap();
        assert_eq!(p.to_string(), "ptcp:6634:127.0.0.1");
        let p: Passive = "ptcp:6634:0.0.0.0".parse().unwrap();
        assert_eq!(p, Passive::Tcp("0.0.0.0:6634".parse().unwrap()));
        let p: Passive = "pssl:6634".parse().unwrap();
        assert_eq!(p, Passive::Ssl("127.0.0.1:6634".parse().unwrap()));
        assert_eq!(p.to_string(), "pssl:6634:127.0.0.1");
        assert!("pssl:x".parse::<Passive>().is_err());
        assert!("ptcp:x".parse::<Passive>().is_err());
        assert!("ptcp:1:nope".parse::<Passive>().is_err());
        assert!("punix:".parse::<Passive>().is_err());
        assert!("tcp:1.2.3.4:1".parse::<Passive>().is_err());
    }
}
