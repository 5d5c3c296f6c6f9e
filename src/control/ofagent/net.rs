//! Where OpenFlow connections come from: the `tcp:`/`unix:` targets a
//! switch dials (controllers) and the `ptcp:`/`punix:` addresses it listens
//! on (ovs-ofctl, passive controllers), with the sockets behind them.
//!
//! ```text
//! tcp:HOST:PORT      connect to a controller (PORT defaults to 6653)
//! unix:PATH          connect over a Unix socket
//! ptcp:PORT[:IP]     listen on TCP (IP defaults to 127.0.0.1)
//! punix:PATH         listen on a Unix socket
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// The IANA port for OpenFlow.
pub const OFP_TCP_PORT: u16 = 6653;

/// A controller to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// An address to listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Passive {
    Tcp(SocketAddr),
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
        let Some(rest) = s.strip_prefix("tcp:") else {
            return Err(format!(
                "bad controller '{s}' (expected tcp:HOST[:PORT] or unix:PATH)"
            ));
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
        Ok(Remote::Tcp(host.to_owned(), port))
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
        let Some(rest) = s.strip_prefix("ptcp:") else {
            return Err(format!(
                "bad listen address '{s}' (expected ptcp:PORT[:IP] or punix:PATH)"
            ));
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
        Ok(Passive::Tcp(SocketAddr::new(ip, port_of(port, s)?)))
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Tcp(h, p) if h.contains(':') => write!(f, "tcp:[{h}]:{p}"),
            Remote::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl fmt::Display for Passive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Passive::Tcp(a) => write!(f, "ptcp:{}:{}", a.port(), a.ip()),
            Passive::Unix(p) => write!(f, "punix:{}", p.display()),
        }
    }
}

/// A connected (or connecting) stream of either family.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                s.set_nonblocking(true)
            }
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// Starts connecting to a controller. TCP connects in the background (the
/// stream turns writable when done); a Unix socket connects at once.
pub fn connect(r: &Remote) -> io::Result<Stream> {
    match r {
        Remote::Tcp(host, port) => {
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
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `p`. A stale Unix socket (nobody answers on it) is replaced;
    /// a live one is an error.
    pub fn bind(p: &Passive) -> Result<Listener, String> {
        let l = match p {
            Passive::Tcp(a) => Listener::Tcp(
                TcpListener::bind(a).map_err(|e| format!("cannot listen on {p}: {e}"))?,
            ),
            Passive::Unix(path) => {
                let l = crate::control::bind_unix(path, "another switch is listening on")?;
                Listener::Unix(l, path.clone())
            }
        };
        match &l {
            Listener::Tcp(t) => t.set_nonblocking(true),
            Listener::Unix(u, _) => u.set_nonblocking(true),
        }
        .map_err(|e| format!("{p}: {e}"))?;
        Ok(l)
    }

    /// The next waiting connection, if any, with a name for the peer.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(t) => {
                let (s, a) = t.accept()?;
                Ok((Stream::Tcp(s), format!("tcp:{a}")))
            }
            Listener::Unix(u, p) => {
                let (s, _) = u.accept()?;
                Ok((Stream::Unix(s), format!("unix:{}", p.display())))
            }
        }
    }

    /// The TCP port actually bound (for `ptcp:0`).
    pub fn local_port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(t) => t.local_addr().ok().map(|a| a.port()),
            Listener::Unix(..) => None,
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(t) => t.as_raw_fd(),
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
        assert!("ssl:h:1".parse::<Remote>().is_err());
        assert_eq!(
            "unix:/x/y".parse::<Remote>().unwrap(),
            Remote::Unix("/x/y".into())
        );
        let p: Passive = "ptcp:6634".parse().unwrap();
        assert_eq!(p.to_string(), "ptcp:6634:127.0.0.1");
        let p: Passive = "ptcp:6634:0.0.0.0".parse().unwrap();
        assert_eq!(p, Passive::Tcp("0.0.0.0:6634".parse().unwrap()));
        assert!("ptcp:x".parse::<Passive>().is_err());
        assert!("ptcp:1:nope".parse::<Passive>().is_err());
        assert!("punix:".parse::<Passive>().is_err());
        assert!("tcp:1.2.3.4:1".parse::<Passive>().is_err());
    }
}
