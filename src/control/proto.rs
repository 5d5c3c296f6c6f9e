//! The control protocol: one JSON object per line over a Unix stream socket.
//!
//! A request is `{"cmd": "...", ...}`; the answer is `{"ok": true, "data": ...}`
//! or `{"ok": false, "error": "one line"}`. A `vport-connect` answer also
//! carries three descriptors (SCM_RIGHTS): the port's memfd, the write end of
//! its incoming doorbell and the read end of its outgoing doorbell (pipes);
//! the connection then stays open for as long as the client uses the port,
//! and closing it (or dying) detaches it.

use std::io::{self, BufRead, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

/// Longest request line the daemon accepts (from any client).
pub const MAX_LINE: usize = 1 << 20;
/// Longest answer line a client accepts (`stats` of thousands of ports
/// takes megabytes; the daemon is trusted further than its clients).
pub const MAX_ANSWER: usize = 1 << 30;
/// Longest error message sent: untrusted text quoted in it (a name, a
/// spec) is cut there.
pub const MAX_ERROR: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Create {
        switch: String,
        #[serde(default)]
        module: Option<String>,
        #[serde(default)]
        workers: Option<usize>,
        #[serde(default)]
        batch: Option<usize>,
        #[serde(default)]
        busy_poll: bool,
        #[serde(default)]
        openflow: OpenFlowOpts,
    },
    Destroy {
        switch: String,
    },
    Attach {
        switch: String,
        spec: String,
        #[serde(default)]
        ofport: Option<u32>,
        /// VLAN settings for NORMAL (`tag=10`, `vlan_mode=trunk trunks=10,20`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vlan: Option<String>,
    },
    /// Changes a port's VLAN settings (flow switches: NORMAL).
    Vlan {
        switch: String,
        port: String,
        vlan: String,
    },
    /// NORMAL's MAC table of a flow switch (`flush`: empty it).
    Fdb {
        switch: String,
        #[serde(default)]
        flush: bool,
    },
    Detach {
        switch: String,
        port: String,
    },
    Module {
        switch: String,
        module: String,
    },
    List,
    Stats {
        #[serde(default)]
        switch: Option<String>,
    },
    VportConnect {
        switch: String,
        port: String,
    },
    /// Turns the connection into a stream of the port's frames as pcap
    /// records (see `daemon/capture.rs`).
    Capture {
        switch: String,
        port: String,
        /// `in`, `out` or `both`.
        direction: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
    },
    /// The tuples of a `demux` switch: `op` is `bind` or `unbind` (with
    /// `port` and `tuple`) or `list`.
    Demux {
        switch: String,
        op: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tuple: Option<String>,
    },
    /// On a vport connection only: binds (or with `unbind`, releases) a
    /// tuple for the connection's own port.
    DemuxBind {
        tuple: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unbind: bool,
    },
}

/// The OpenFlow options of a switch with the `flow` module, as given on the
/// command line (checked by the daemon).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OpenFlowOpts {
    /// Controllers to connect to: `tcp:HOST[:PORT]`, `ssl:HOST[:PORT]`,
    /// `unix:PATH`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
    /// More addresses to listen on: `ptcp:PORT[:IP]`, `pssl:PORT[:IP]`,
    /// `punix:PATH`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpid: Option<String>,
    /// `secure` or `standalone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_mode: Option<String>,
    /// OpenFlow versions allowed: `OpenFlow10,OpenFlow13,...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<String>,
    /// No LOCAL port (the TAP named after the switch).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_local: bool,
}

impl OpenFlowOpts {
    pub fn is_empty(&self) -> bool {
        *self == OpenFlowOpts::default()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        // Keep errors to one line, and short, whatever produced them.
        let mut msg: String = msg.into();
        if msg.len() > MAX_ERROR {
            let len = msg.len();
            let mut at = MAX_ERROR;
            while !msg.is_char_boundary(at) {
                at -= 1;
            }
            msg.truncate(at);
            msg.push_str(&format!("... (error of {len} bytes cut)"));
        }
        Response {
            ok: false,
            error: Some(msg.replace('\n', " ")),
            data: serde_json::Value::Null,
        }
    }

    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"ok":false,"error":"encoding"}"#.into());
        s.push('\n');
        s
    }
}

/// The answer to `vport-connect` (its descriptors travel alongside).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VportInfo {
    pub switch: String,
    pub port: String,
    pub ofport: u16,
    pub region_len: usize,
}

/// Reads one line of at most `MAX_LINE` bytes; `None` at end of stream.
pub fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control message too long",
            ));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "control message cut short",
        ));
    }
    buf.pop();
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "control message is not UTF-8"))
}

/// Reads one answer line from a stream, collecting descriptors sent with it.
pub fn read_answer(sock: &UnixStream) -> io::Result<(Response, Vec<OwnedFd>)> {
    let fd: RawFd = sock.as_raw_fd();
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut byte = vec![0u8; 64 << 10];
    loop {
        // Peek-free approach: read one chunk at a time; the daemon sends
        // exactly one answer per request, so nothing past the newline is lost.
        let (n, mut got) = crate::sys::recv_with_fds(fd, &mut byte[..])?;
        fds.append(&mut got);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            ));
        }
        line.extend_from_slice(&byte[..n]);
        if line.last() == Some(&b'\n') {
            break;
        }
        if line.len() > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("answer longer than {MAX_ANSWER} bytes"),
            ));
        }
    }
    line.pop();
    let r: Response =
        serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((r, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_reject_junk() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"create","switch":"sw0","module":"learn"}"#).unwrap();
        assert_eq!(
            r,
            Request::Create {
                switch: "sw0".into(),
                module: Some("learn".into()),
                workers: None,
                batch: None,
                busy_poll: false,
                openflow: OpenFlowOpts::default(),
            }
        );
        let r: Request = serde_json::from_str(
            r#"{"cmd":"create","switch":"s","module":"flow","openflow":{"controllers":["tcp:127.0.0.1:6653"],"fail_mode":"secure"}}"#,
        )
        .unwrap();
        let Request::Create { openflow, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(openflow.controllers, ["tcp:127.0.0.1:6653"]);
        assert_eq!(openflow.fail_mode.as_deref(), Some("secure"));
        let s = serde_json::to_string(&Request::List).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), Request::List);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"explode"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"destroy","switch":"a","x":1}"#).is_err()
        );
    }

    #[test]
    fn lines_are_bounded() {
        let mut r = io::Cursor::new(b"abc\ndef".to_vec());
        assert_eq!(read_line(&mut r).unwrap().as_deref(), Some("abc"));
        assert!(read_line(&mut r).is_err());
        let big = vec![b'x'; MAX_LINE + 10];
        assert!(read_line(&mut io::Cursor::new(big)).is_err());
        assert_eq!(read_line(&mut io::Cursor::new(Vec::new())).unwrap(), None);
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(
            Response::err("a\nb").to_line(),
            "{\"ok\":false,\"error\":\"a b\"}\n"
        );
    }

    #[test]
    fn errors_stay_short() {
        let e = Response::err(format!("bad name '{}'", "ü".repeat(1_000_000)));
        let text = e.error.unwrap();
        assert!(text.len() < MAX_ERROR + 64, "{}", text.len());
        assert!(text.ends_with("... (error of 2000011 bytes cut)"), "{text}");
    }
}
