//! The byte streams of the control plane: the OpenFlow agent's
//! connections and the OVSDB client's both go through [`Stream`], so both
//! speak `tcp:`, `unix:` and `ssl:` (TLS over TCP) alike.
//!
//! - [`Stream`]: plain TCP, a Unix socket, or TLS over TCP, behind `Read`,
//!   `Write` and `AsRawFd`, blocking or not as the socket is set.
//! - [`tls`]: the TLS stream (rustls, ring's crypto).
//! - [`keys`]: the private key, certificate and CA certificate files
//!   (Open vSwitch's `--private-key`, `--certificate`, `--ca-cert`,
//!   `--bootstrap-ca-cert` and SSL table) and the rustls configurations
//!   made of them, with Open vSwitch's peer verification (mutual, chain
//!   only, no name check).

mod bootstrap;
pub mod keys;
#[cfg(test)]
mod tests;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub use keys::{TlsArgs, TlsError, TlsFiles, TlsKeys};
pub use tls::TlsStream;

/// A connected (or connecting) stream.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// TLS as a client over `sock`, with the keys' current configuration.
    pub fn tls_client(sock: TcpStream, keys: &TlsKeys, host: &str) -> Result<Stream, String> {
        let cfg = keys.client_config().map_err(|e| e.to_string())?;
        let t = TlsStream::client(sock, cfg, host).map_err(|e| format!("TLS: {e}"))?;
        Ok(Stream::Tls(Box::new(t)))
    }

    /// TLS as a server over an accepted `sock`.
    pub fn tls_server(sock: TcpStream, keys: &TlsKeys) -> Result<Stream, String> {
        let cfg = keys.server_config().map_err(|e| e.to_string())?;
        let t = TlsStream::server(sock, cfg).map_err(|e| format!("TLS: {e}"))?;
        Ok(Stream::Tls(Box::new(t)))
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(t) => Some(t.socket()),
            Stream::Unix(_) => None,
        }
    }

    /// Non-blocking, and for TCP without Nagle's delay.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        match (self, self.tcp()) {
            (_, Some(s)) => {
                let _ = s.set_nodelay(true);
                s.set_nonblocking(true)
            }
            (Stream::Unix(s), None) => s.set_nonblocking(true),
            _ => Ok(()),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match (self, self.tcp()) {
            (_, Some(s)) => s.set_read_timeout(t),
            (Stream::Unix(s), None) => s.set_read_timeout(t),
            _ => Ok(()),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match (self, self.tcp()) {
            (_, Some(s)) => s.set_write_timeout(t),
            (Stream::Unix(s), None) => s.set_write_timeout(t),
            _ => Ok(()),
        }
    }

    /// Bytes are waiting inside to be written (TLS records the socket did
    /// not take yet): wait for the socket to be writable, then `flush`.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(t) => t.wants_write(),
            _ => false,
        }
    }

    /// Input is waiting inside (decrypted TLS data), which no readable
    /// socket will announce.
    pub fn buffered_input(&mut self) -> bool {
        match self {
            Stream::Tls(t) => t.buffered_input(),
            _ => false,
        }
    }

    /// Completes a TLS handshake on a blocking stream (nothing to do for
    /// the others).
    pub fn handshake(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(t) => t.handshake(),
            _ => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(t) => t.flush(),
            _ => Ok(()),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.socket().as_raw_fd(),
        }
    }
}
