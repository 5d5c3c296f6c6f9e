//! The client side of the control socket: requests for `mswitch ctl`, and the
//! library any program uses to plug into a running switch through a virtual
//! port.
//!
//! ```no_run
//! use mswitch::control::client::VportConn;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut port = VportConn::connect(None, "sw0", "app1")?;
//! port.send([&[0u8; 60][..]]);                       // into the switch
//! if port.wait(Some(std::time::Duration::from_secs(1)))? {
//!     port.recv(256, |frame| println!("{} bytes", frame.len()));
//! }
//! # Ok(()) }
//! ```
//!
//! A port's session ends when the daemon ends it: the port is detached or
//! its switch destroyed (the daemon says so in one line before it closes
//! the connection), or the daemon stops or dies (the connection and the
//! port's doorbell close). [`VportConn::wait`] and [`VportConn::check`]
//! then return [`Disconnected`], and keep returning it. The library does
//! not reconnect by itself: a new session is a new port (fresh rings, and
//! perhaps a new daemon), which only the program can decide to want, so it
//! calls [`VportConn::connect`] again if it does. Sending and receiving
//! never fail: once the switch is gone the outgoing ring stays empty and
//! the incoming ring fills up, so a program that only sends calls
//! [`VportConn::check`] when a send takes nothing (one non-blocking
//! `poll`; nothing is checked per packet).

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::daemon::ctl_path;
use super::proto::{Request, Response, VportInfo, read_answer};
use crate::packet::PortMem;
use crate::port::MemClient;
use crate::sys::{Doorbell, POLL_IN, PollFd, Region};

/// A connection to a daemon's control socket.
pub struct Ctl {
    stream: UnixStream,
}

impl Ctl {
    /// Connects to `path` (or the default socket), with a one-line error that
    /// says what is wrong.
    pub fn connect(path: Option<&Path>) -> Result<Ctl, String> {
        let path = ctl_path(path);
        match UnixStream::connect(&path) {
            Ok(stream) => Ok(Ctl { stream }),
            Err(e) => Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    format!(
                        "no mswitch daemon is running on {} (start one with `mswitch daemon`)",
                        path.display()
                    )
                }
                io::ErrorKind::PermissionDenied => {
                    format!("permission denied on {}", path.display())
                }
                _ => format!("cannot connect to {}: {e}", path.display()),
            }),
        }
    }

    /// The connection, for a request that turns it into a stream.
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Sends a request and returns its answer's data, or the daemon's error.
    pub fn request(&mut self, req: &Request) -> Result<serde_json::Value, String> {
        let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
        line.push('\n');
        let sent = self.stream.write_all(line.as_bytes());
        let answer = read_answer(&self.stream);
        // A daemon that refused the connection (a limit) said why before
        // closing it: that beats "broken pipe".
        let (resp, _) = match (sent, answer) {
            (_, Ok(a)) => a,
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(format!("control socket: {e}")),
        };
        if resp.ok {
            Ok(resp.data)
        } else {
            Err(resp.error.unwrap_or_else(|| "request failed".into()))
        }
    }
}

/// The daemon ended a virtual port's session (see the [module](self)
/// documentation): the port was detached, its switch destroyed, or the
/// daemon stopped or died. `reason` is one line, the daemon's own when it
/// gave one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Disconnected {
    pub reason: String,
}

/// Most bytes of a daemon's parting line kept (it is untrusted).
const MAX_NOTICE: usize = 4096;
/// Longest reason reported from that line.
const MAX_REASON: usize = 200;

/// A program's end of a virtual port: a [`MemClient`] over the port's shared
/// memory, plus the connection whose closing detaches the port.
pub struct VportConn {
    client: MemClient,
    /// Which port this is: its switch, its name, its OpenFlow port number.
    pub info: VportInfo,
    conn: UnixStream,
    /// What the daemon sent unasked: its parting line.
    notice: Vec<u8>,
    /// Set once the session is over.
    gone: Option<Disconnected>,
}

impl VportConn {
    /// Connects to port `port` of switch `switch` on the daemon at `ctl` (or
    /// the default socket), creating the port if it does not exist.
    pub fn connect(ctl: Option<&Path>, switch: &str, port: &str) -> Result<VportConn, String> {
        let Ctl { mut stream } = Ctl::connect(ctl)?;
        let req = Request::VportConnect {
            switch: switch.to_owned(),
            port: port.to_owned(),
        };
        let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("control socket: {e}"))?;
        let (resp, fds) = read_answer(&stream).map_err(|e| format!("control socket: {e}"))?;
        if !resp.ok {
            return Err(resp.error.unwrap_or_else(|| "vport-connect failed".into()));
        }
        let info: VportInfo = serde_json::from_value(resp.data)
            .map_err(|e| format!("bad answer from daemon: {e}"))?;
        let [memfd, inbell, outbell]: [_; 3] = fds
            .try_into()
            .map_err(|v: Vec<_>| format!("daemon sent {} descriptors, expected 3", v.len()))?;
        let region = Region::map(memfd, info.region_len)
            .map_err(|e| format!("cannot map port memory: {e}"))?;
        let mem = PortMem::from_region(region).map_err(|e| format!("port memory: {e}"))?;
        let bell = |fd| Doorbell::from_owned(fd).map_err(|e| format!("port doorbell: {e}"));
        let (inbell, outbell) = (bell(inbell)?, bell(outbell)?);
        if inbell.write_end().is_none() || outbell.read_end().is_none() {
            return Err("the daemon sent the wrong ends of the port's doorbells".into());
        }
        let client = MemClient::from_parts(Arc::new(mem), Arc::new(inbell), Arc::new(outbell));
        Ok(VportConn {
            client,
            info,
            conn: stream,
            notice: Vec::new(),
            gone: None,
        })
    }

    /// Waits until frames wait on the outgoing ring (`Ok(true)`) or
    /// `timeout` passes (`Ok(false)`), or the session ends
    /// ([`Disconnected`], at once if it already had). Shadows
    /// [`MemClient::wait`], which cannot tell an idle port from a
    /// vanished switch.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, Disconnected> {
        if let Some(d) = &self.gone {
            return Err(d.clone());
        }
        let w = self.client.wait_or(timeout, Some(self.conn.as_raw_fd()));
        if w.other || w.hangup {
            self.check()?;
            if w.hangup {
                // The switch's end of the doorbell closed while the
                // connection still stands: the port is gone all the same.
                return Err(self.end("the switch closed the port".into()));
            }
        }
        Ok(w.frames)
    }

    /// Whether the session still stands: one non-blocking `poll` of the
    /// control connection. For programs that send without waiting: call it
    /// when a send takes nothing, not per packet.
    pub fn check(&mut self) -> Result<(), Disconnected> {
        if let Some(d) = &self.gone {
            return Err(d.clone());
        }
        let mut p = [PollFd {
            fd: self.conn.as_raw_fd(),
            events: POLL_IN,
            revents: 0,
        }];
        if crate::sys::poll(&mut p, Some(Duration::ZERO)) == 0 {
            return Ok(());
        }
        // Readable or hung up: what the daemon says unasked is its parting
        // line, then it closes. Read what is there (bounded), without
        // waiting for more.
        let mut buf = [0u8; 1024];
        let mut closed = false;
        // A whole line, or more than a parting line can be: the daemon
        // sends nothing else unasked.
        let mut ended = false;
        for _ in 0..MAX_NOTICE / buf.len() + 1 {
            match (&self.conn).read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    let keep = n.min(MAX_NOTICE.saturating_sub(self.notice.len()));
                    self.notice.extend_from_slice(&buf[..keep]);
                    ended |= buf[..n].contains(&b'\n');
                }
            }
            p[0].revents = 0;
            if crate::sys::poll(&mut p, Some(Duration::ZERO)) == 0 {
                break;
            }
        }
        if closed || ended || self.notice.len() >= MAX_NOTICE {
            let reason = self.parting_reason();
            return Err(self.end(reason));
        }
        Ok(())
    }

    /// The reason in the daemon's parting line, or what its silence means.
    fn parting_reason(&self) -> String {
        let line = self.notice.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let said = serde_json::from_slice::<Response>(line)
            .ok()
            .and_then(|r| r.error)
            .map(|e| {
                e.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_REASON)
                    .collect::<String>()
            })
            .filter(|e| !e.is_empty());
        said.unwrap_or_else(|| {
            "the mswitch daemon closed the connection (it stopped or died)".into()
        })
    }

    fn end(&mut self, reason: String) -> Disconnected {
        let d = Disconnected { reason };
        self.gone = Some(d.clone());
        d
    }

    /// Binds a `demux` tuple (`udp|tcp:[IP:]PORT`, e.g. `udp:10.0.0.1:53`)
    /// to this port, so the switch delivers its packets here; the binding
    /// lasts until [`VportConn::unbind`] or until this connection closes.
    /// A port binds only for itself. Refused (one line) if the switch does
    /// not run `demux`, or the tuple is held by another port, overlaps
    /// another port's wildcard or is reserved for the host.
    pub fn bind(&mut self, tuple: &str) -> Result<(), String> {
        self.demux_request(tuple, false)
    }

    /// Releases a tuple this connection bound.
    pub fn unbind(&mut self, tuple: &str) -> Result<(), String> {
        self.demux_request(tuple, true)
    }

    fn demux_request(&mut self, tuple: &str, unbind: bool) -> Result<(), String> {
        let req = Request::DemuxBind {
            tuple: tuple.to_owned(),
            unbind,
        };
        let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
        line.push('\n');
        self.conn
            .write_all(line.as_bytes())
            .map_err(|e| format!("control socket: {e}"))?;
        let (resp, _) = read_answer(&self.conn).map_err(|e| format!("control socket: {e}"))?;
        if resp.ok {
            Ok(())
        } else {
            Err(resp.error.unwrap_or_else(|| "demux-bind failed".into()))
        }
    }
}

impl Deref for VportConn {
    type Target = MemClient;

    fn deref(&self) -> &MemClient {
        &self.client
    }
}

impl DerefMut for VportConn {
    fn deref_mut(&mut self) -> &mut MemClient {
        &mut self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::MemConfig;
    use crate::port::MemPort;

    /// A session over an in-process port, and the daemon's end of its
    /// connection.
    fn session() -> (VportConn, UnixStream, Arc<MemPort>) {
        let (port, client) = MemPort::new("p", MemConfig::new(64, 2048)).unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let info = VportInfo {
            switch: "s".into(),
            port: "p".into(),
            ofport: 1,
            region_len: 0,
        };
        let conn = VportConn {
            client,
            info,
            conn: ours,
            notice: Vec::new(),
            gone: None,
        };
        (conn, theirs, port)
    }

    #[test]
    fn a_parting_line_ends_the_session_with_its_reason_cleaned() {
        let (mut c, daemon, _port) = session();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.wait(Some(Duration::ZERO)), Ok(false));
        let long = format!("port 'p' was detached\u{7}{}", "x".repeat(1000));
        (&daemon)
            .write_all(Response::err(long).to_line().as_bytes())
            .unwrap();
        let e = c.wait(Some(Duration::from_secs(5))).unwrap_err();
        assert!(e.reason.starts_with("port 'p' was detachedxx"), "{e}");
        assert_eq!(e.reason.chars().count(), MAX_REASON);
        assert!(c.notice.len() <= MAX_NOTICE);
        // Sticky, and `check` says the same without a system call's help.
        assert_eq!(c.check(), Err(e.clone()));
        assert_eq!(c.wait(None), Err(e));
    }

    #[test]
    fn a_silent_close_or_junk_means_the_daemon_went() {
        let (mut c, daemon, _port) = session();
        drop(daemon);
        let e = c.check().unwrap_err();
        assert!(e.reason.contains("daemon"), "{e}");

        let (mut c, daemon, _port) = session();
        (&daemon).write_all(b"\xff\x00not json\n").unwrap();
        let e = c.check().unwrap_err();
        assert!(e.reason.contains("daemon"), "{e}");

        // Endless bytes without a newline: bounded, and the end all the same.
        let (mut c, daemon, _port) = session();
        (&daemon).write_all(&[b'a'; 3 * MAX_NOTICE]).unwrap();
        let e = c.check().unwrap_err();
        assert!(e.reason.contains("daemon"), "{e}");
        assert_eq!(c.notice.len(), MAX_NOTICE);
    }

    #[test]
    fn a_closed_doorbell_ends_the_session_too() {
        let (mut c, _daemon, port) = session();
        // The in-process port holds the doorbell's other end; a vport's
        // client holds only its own: give this one only its end.
        let bell = Arc::new(Doorbell::new().unwrap());
        let rd = bell.read_end().unwrap().try_clone_to_owned().unwrap();
        c.client = MemClient::from_parts(
            Arc::new(PortMem::new("q", MemConfig::new(64, 2048)).unwrap()),
            Arc::new(Doorbell::new().unwrap()),
            Arc::new(Doorbell::from_owned(rd).unwrap()),
        );
        drop(bell);
        drop(port);
        let e = c.wait(Some(Duration::from_secs(5))).unwrap_err();
        assert!(e.reason.contains("switch"), "{e}");
    }
}
