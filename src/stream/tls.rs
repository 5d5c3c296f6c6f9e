//! TLS over a TCP socket, blocking or not, behind `Read`/`Write`: rustls's
//! connection state fed by `read_tls`/`write_tls` on the socket.
//!
//! On a non-blocking socket, `read` and `write` return `WouldBlock` as the
//! socket does, and the handshake happens along the way. TLS records that
//! could not be written yet stay inside: [`TlsStream::wants_write`] says so
//! (the caller then waits for the socket to turn writable and calls
//! `flush`). Plaintext already decrypted but not read yet makes no socket
//! readable: [`TlsStream::buffered_input`] says whether some is waiting.
//! On a blocking socket, [`TlsStream::handshake`] completes the handshake
//! at once (bounded by the socket's timeouts).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

pub struct TlsStream {
    sock: TcpStream,
    conn: Connection,
    /// The socket reached end of file.
    eof: bool,
}

/// A TLS failure as an I/O error, one line.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// The name a client gives the server. Open vSwitch does not check the
/// server's name, nor do we: this is only what goes into SNI for a host
/// name (IP addresses send none).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

impl TlsStream {
    pub fn client(
        sock: TcpStream,
        cfg: Arc<ClientConfig>,
        host: &str,
    ) -> Result<TlsStream, rustls::Error> {
        let conn = ClientConnection::new(cfg, server_name(host))?;
        Ok(TlsStream {
            sock,
            conn: conn.into(),
            eof: false,
        })
    }

    pub fn server(sock: TcpStream, cfg: Arc<ServerConfig>) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream {
            sock,
            conn: ServerConnection::new(cfg)?.into(),
            eof: false,
        })
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// TLS records are waiting to be written to the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Decrypted data (or the peer's close) is waiting to be read.
    pub fn buffered_input(&mut self) -> bool {
        match self.conn.process_new_packets() {
            Ok(s) => s.plaintext_bytes_to_read() > 0 || s.peer_has_closed(),
            // Let the next read report it.
            Err(_) => true,
        }
    }

    /// Completes the handshake on a blocking socket.
    pub fn handshake(&mut self) -> io::Result<()> {
        if !self.conn.is_handshaking() {
            return Ok(());
        }
        match self.conn.complete_io(&mut self.sock) {
            Ok(_) if !self.conn.is_handshaking() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the TLS handshake stopped halfway",
            )),
            Err(e) => Err(match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out")
                }
                io::ErrorKind::UnexpectedEof => io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection during the TLS handshake",
                ),
                io::ErrorKind::InvalidData => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS handshake failed: {e}"),
                ),
                _ => e,
            }),
        }
    }

    /// Writes the TLS records waiting, as far as the socket takes them.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// [`Self::push`], where a full socket is no error.
    fn push_some(&mut self) -> io::Result<()> {
        match self.push() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // 0: the peer's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: a close all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // What was received so far (an error stays: every later read
            // reports it again).
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // Tell the peer why (the alert), as far as it goes.
                    let _ = self.push();
                    return Err(tls_error(e));
                }
            };
            // Handshake messages to answer.
            self.push_some()?;
            if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                continue;
            }
            if self.eof {
                return Ok(0);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push()?;
        let n = self.conn.writer().write(buf)?;
        self.push_some()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

impl Drop for TlsStream {
    /// Says goodbye (close_notify) if the socket takes it at once.
    fn drop(&mut self) {
        if self.sock.set_nonblocking(true).is_ok() {
            self.conn.send_close_notify();
            let _ = self.push();
        }
    }
}
