//! The client side of the control socket: requests for `mswitch ctl`, and the
//! library any program uses to plug into a running switch through a virtual
//! port.
//!
//! ```no_run
//! use mswitch::control::client::VportConn;
//! # fn main() -> Result<(), String> {
//! let mut port = VportConn::connect(None, "sw0", "app1")?;
//! port.send([&[0u8; 60][..]]);                       // into the switch
//! if port.wait(Some(std::time::Duration::from_secs(1))) {
//!     port.recv(256, |frame| println!("{} bytes", frame.len()));
//! }
//! # Ok(()) }
//! ```

use std::io::{self, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use super::daemon::ctl_path;
use super::proto::{Request, VportInfo, read_answer};
use crate::packet::PortMem;
use crate::port::MemClient;
use crate::sys::{Doorbell, Region};

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

/// A program's end of a virtual port: a [`MemClient`] over the port's shared
/// memory, plus the connection whose closing detaches the port.
pub struct VportConn {
    client: MemClient,
    /// Which port this is: its switch, its name, its OpenFlow port number.
    pub info: VportInfo,
    conn: UnixStream,
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
        })
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
