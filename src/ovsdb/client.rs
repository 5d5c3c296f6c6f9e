//! A blocking OVSDB client (RFC 7047) over `unix:`, `tcp:` and `ssl:`
//! remotes (the last with the keys of a [`TlsKeys`], its handshake done
//! while connecting).
//!
//! One request at a time: [`Client::call`] sends a request and reads until
//! its answer, meanwhile answering the server's `echo` (so ovsdb-server
//! never drops us for silence) and queueing notifications (`update`,
//! `locked`, `stolen`) for [`Client::take_notifications`]. [`Client::poll`]
//! does the same without a request, for an event loop that sleeps on
//! [`Client::fd`]. Every read is bounded in time and in size; a broken
//! stream, a closed connection or a timeout is an [`OvsdbError`], after
//! which the caller reconnects.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::jsonrpc::{FrameError, Framer, Msg};
use crate::stream::{Stream, TlsKeys, TlsStream};

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// TLS over TCP.
    Ssl(SocketAddr),
}

/// OVSDB's IANA port, what `tcp:IP` and `ssl:IP` mean without one.
pub const OVSDB_PORT: u16 = 6640;

/// `IP:PORT`, `[IPv6]:PORT`, or an address alone (port 6640).
fn addr(a: &str) -> Option<SocketAddr> {
    a.parse().ok().or_else(|| {
        let ip = a.trim_start_matches('[').trim_end_matches(']');
        Some(SocketAddr::new(ip.parse().ok()?, OVSDB_PORT))
    })
}

impl std::str::FromStr for Remote {
    type Err = String;

    /// `unix:PATH`, `tcp:IP[:PORT]` or `ssl:IP[:PORT]` (Open vSwitch's
    /// syntax; the port defaults to 6640).
    fn from_str(s: &str) -> Result<Remote, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(Remote::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            return addr(a)
                .map(Remote::Tcp)
                .ok_or_else(|| format!("bad tcp remote '{s}' (tcp:IP[:PORT])"));
        }
        if let Some(a) = s.strip_prefix("ssl:") {
            return addr(a)
                .map(Remote::Ssl)
                .ok_or_else(|| format!("bad ssl remote '{s}' (ssl:IP[:PORT])"));
        }
        Err(format!(
            "unsupported database remote '{s}' (unix:PATH, tcp:IP[:PORT] or ssl:IP[:PORT])"
        ))
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
            Remote::Tcp(a) => write!(f, "tcp:{a}"),
            Remote::Ssl(a) => write!(f, "ssl:{a}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    #[error("cannot reach the database at {remote}: {source}")]
    Connect { remote: String, source: io::Error },
    #[error("database connection: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the database closed the connection")]
    Closed,
    #[error("no answer from the database within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error object.
    #[error("database error: {0}")]
    Rpc(Value),
    /// A transaction operation failed (its index and error object).
    #[error("database transaction failed at operation {index}: {error}")]
    Op { index: usize, error: Value },
    #[error("unexpected answer from the database: {0}")]
    Bad(String),
}

/// A server notification: its method (`update`, `locked`, ...) and params.
pub type Notification = (String, Value);

/// Notifications kept while nobody takes them: beyond, the client is too
/// far behind and reports it as an error (the caller resyncs).
const MAX_QUEUED: usize = 4096;

pub struct Client {
    stream: Stream,
    framer: Framer,
    next_id: u64,
    queue: VecDeque<Notification>,
    pub remote: Remote,
}

impl Client {
    /// Connects (within `timeout` for TCP), with no keys for `ssl:`.
    pub fn connect(remote: &Remote, timeout: Duration) -> Result<Client, OvsdbError> {
        Client::connect_tls(remote, timeout, &TlsKeys::default())
    }

    /// Connects (within `timeout` for TCP and a TLS handshake), with
    /// `keys` for an `ssl:` remote.
    pub fn connect_tls(
        remote: &Remote,
        timeout: Duration,
        keys: &TlsKeys,
    ) -> Result<Client, OvsdbError> {
        let err = |source| OvsdbError::Connect {
            remote: remote.to_string(),
            source,
        };
        let stream = match remote {
            Remote::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(err)?),
            Remote::Tcp(a) | Remote::Ssl(a) => {
                // Keys first: without them there is no point connecting.
                let tls = match remote {
                    Remote::Ssl(_) => Some(
                        keys.client_config()
                            .map_err(|e| err(io::Error::other(e.to_string())))?,
                    ),
                    _ => None,
                };
                let s = TcpStream::connect_timeout(a, timeout).map_err(err)?;
                let _ = s.set_nodelay(true);
                match tls {
                    Some(cfg) => {
                        let t = TlsStream::client(s, cfg, &a.ip().to_string())
                            .map_err(|e| err(io::Error::other(format!("TLS: {e}"))))?;
                        let mut t = Stream::Tls(Box::new(t));
                        t.set_read_timeout(Some(timeout)).map_err(err)?;
                        t.set_write_timeout(Some(timeout)).map_err(err)?;
                        t.handshake().map_err(err)?;
                        t
                    }
                    None => Stream::Tcp(s),
                }
            }
        };
        Ok(Client {
            stream,
            framer: Framer::new(),
            next_id: 0,
            queue: VecDeque::new(),
            remote: remote.clone(),
        })
    }

    /// The socket, for an event loop to wait on.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn send(&mut self, m: &Msg) -> Result<(), OvsdbError> {
        let mut text =
            serde_json::to_vec(&m.to_json()).map_err(|e| OvsdbError::Bad(e.to_string()))?;
        text.push(b'\n');
        self.stream.write_all(&text)?;
        Ok(())
    }

    /// Reads what is there (waiting at most until `deadline`) and handles
    /// every whole message: echo answered, notifications queued, responses
    /// returned.
    fn read_some(&mut self, deadline: Instant) -> Result<Vec<(Value, Value, Value)>, OvsdbError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let mut buf = [0u8; 65536];
        let n = match self.stream.read(&mut buf) {
            Ok(0) => return Err(OvsdbError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e.into()),
        };
        self.framer.push(&buf[..n]);
        let mut responses = Vec::new();
        while let Some(v) = self.framer.next_value()? {
            match Msg::parse(v) {
                Some(Msg::Request { method, params, id }) if method == "echo" => {
                    self.send(&Msg::echo_reply(params, id))?;
                }
                Some(Msg::Request { method, params, .. }) => {
                    if self.queue.len() >= MAX_QUEUED {
                        return Err(OvsdbError::Bad("too many unread notifications".into()));
                    }
                    self.queue.push_back((method, params));
                }
                Some(Msg::Response { result, error, id }) => responses.push((id, result, error)),
                None => {
                    return Err(OvsdbError::Bad(
                        "a message that is neither request nor response".into(),
                    ));
                }
            }
        }
        Ok(responses)
    }

    /// Sends `method(params)` and waits (at most `timeout`) for its answer.
    pub fn call(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, OvsdbError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&Msg::request(method, params, id))?;
        let deadline = Instant::now() + timeout;
        loop {
            for (rid, result, error) in self.read_some(deadline)? {
                if rid != json!(id) {
                    continue; // an answer to a request given up on
                }
                if !error.is_null() {
                    return Err(OvsdbError::Rpc(error));
                }
                return Ok(result);
            }
            if Instant::now() >= deadline {
                return Err(OvsdbError::Timeout(timeout));
            }
        }
    }

    /// Reads and handles what arrives within `timeout` (echo answered,
    /// notifications queued). Returns whether anything was queued.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, OvsdbError> {
        let before = self.queue.len();
        self.read_some(Instant::now() + timeout)?;
        Ok(self.queue.len() > before)
    }

    /// The notifications received so far, oldest first.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        self.queue.drain(..).collect()
    }

    /// `transact`: runs `ops` on `db` atomically. Every operation's result
    /// in order, or the first failing operation's error.
    pub fn transact(
        &mut self,
        db: &str,
        ops: &[Value],
        timeout: Duration,
    ) -> Result<Vec<Value>, OvsdbError> {
        let mut params = vec![json!(db)];
        params.extend(ops.iter().cloned());
        let r = self.call("transact", Value::Array(params), timeout)?;
        let results = r
            .as_array()
            .ok_or_else(|| OvsdbError::Bad(format!("transact answered {r}")))?;
        for (index, res) in results.iter().enumerate() {
            if let Some(e) = res.get("error").filter(|e| !e.is_null()) {
                return Err(OvsdbError::Op {
                    index,
                    error: json!({ "error": e, "details": res.get("details") }),
                });
            }
        }
        Ok(results.clone())
    }

    /// `monitor`: the tables' current contents (as `table-updates`); later
    /// changes arrive as `update` notifications with `monitor_id`.
    pub fn monitor(
        &mut self,
        db: &str,
        monitor_id: &str,
        requests: Value,
        timeout: Duration,
    ) -> Result<Value, OvsdbError> {
        self.call("monitor", json!([db, monitor_id, requests]), timeout)
    }

    /// `lock`: whether the lock was granted at once (otherwise a `locked`
    /// notification says when it is).
    pub fn lock(&mut self, id: &str, timeout: Duration) -> Result<bool, OvsdbError> {
        let r = self.call("lock", json!([id]), timeout)?;
        Ok(r["locked"].as_bool().unwrap_or(false))
    }
}
