//! OVSDB's JSON-RPC (RFC 7047, section 4): JSON-RPC 1.0 messages sent back
//! to back on a stream, with no I/O here.
//!
//! [`Framer`] cuts whole JSON values out of the bytes received so far (no
//! delimiter: a value ends where its closing bracket is), keeping what is
//! incomplete for the next read, with a bound on one message's size, since
//! the peer is not trusted. [`Msg`] is one message classified: a request or
//! notification (`method`, `params`, `id`, the latter `null` for a
//! notification) or a response (`result`, `error`, `id`). Messages carry
//! exactly those members: ovsdb-server closes connections that send
//! JSON-RPC 2.0's `"jsonrpc"`.

use serde_json::{Value, json};

/// The largest message accepted (ovsdb-server's own default limit for a
/// received message is of the same order); a peer sending more is dropped.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Why the byte stream cannot be read on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("OVSDB peer sent invalid JSON: {0}")]
    Syntax(String),
    #[error("OVSDB peer sent a message over {MAX_MESSAGE} bytes")]
    TooLong,
    #[error("OVSDB peer sent a JSON value that is not an object")]
    NotObject,
}

/// Accumulates received bytes and yields whole JSON values.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Bytes as received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole value, if one has arrived. An error means the
    /// stream is broken and the connection must be dropped.
    pub fn next_value(&mut self) -> Result<Option<Value>, FrameError> {
        let start = self
            .buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.buf.len());
        if start == self.buf.len() {
            self.buf.clear();
            return Ok(None);
        }
        let mut it = serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let end = start + it.byte_offset();
                self.buf.drain(..end);
                if !v.is_object() {
                    return Err(FrameError::NotObject);
                }
                Ok(Some(v))
            }
            Some(Err(e)) if e.is_eof() => {
                if self.buf.len() - start > MAX_MESSAGE {
                    return Err(FrameError::TooLong);
                }
                Ok(None)
            }
            Some(Err(e)) => Err(FrameError::Syntax(e.to_string())),
            None => Ok(None),
        }
    }
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// A request (`id` not null) or a notification (`id` null).
    Request {
        method: String,
        params: Value,
        id: Value,
    },
    /// The answer to a request: `error` is null on success.
    Response {
        result: Value,
        error: Value,
        id: Value,
    },
}

impl Msg {
    /// Classifies a JSON object; `None` for one that is neither a request
    /// nor a response.
    pub fn parse(v: Value) -> Option<Msg> {
        let Value::Object(mut o) = v else { return None };
        let id = o.remove("id").unwrap_or(Value::Null);
        if let Some(Value::String(method)) = o.remove("method") {
            return Some(Msg::Request {
                method,
                params: o.remove("params").unwrap_or(Value::Array(Vec::new())),
                id,
            });
        }
        if o.contains_key("result") || o.contains_key("error") {
            return Some(Msg::Response {
                result: o.remove("result").unwrap_or(Value::Null),
                error: o.remove("error").unwrap_or(Value::Null),
                id,
            });
        }
        None
    }

    /// The message as JSON text (members in the order the RFC lists them).
    pub fn to_json(&self) -> Value {
        match self {
            Msg::Request { method, params, id } => {
                json!({ "method": method, "params": params, "id": id })
            }
            Msg::Response { result, error, id } => {
                json!({ "result": result, "error": error, "id": id })
            }
        }
    }

    /// A request with a numeric id.
    pub fn request(method: &str, params: Value, id: u64) -> Msg {
        Msg::Request {
            method: method.to_owned(),
            params,
            id: json!(id),
        }
    }

    /// The answer to the server's `echo`: its params back.
    pub fn echo_reply(params: Value, id: Value) -> Msg {
        Msg::Response {
            result: params,
            error: Value::Null,
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_where_they_end_and_kept_when_incomplete() {
        let mut f = Framer::new();
        f.push(br#" {"id":1,"result":[]}{"method":"echo","params":[],"id":"echo"}{"id""#);
        let a = f.next_value().unwrap().unwrap();
        assert_eq!(a["id"], 1);
        let b = f.next_value().unwrap().unwrap();
        assert_eq!(
            Msg::parse(b.clone()).unwrap(),
            Msg::Request {
                method: "echo".into(),
                params: json!([]),
                id: json!("echo"),
            }
        );
        assert_eq!(f.next_value().unwrap(), None);
        f.push(br#":2,"result":{"a":"}"}}"#);
        let c = f.next_value().unwrap().unwrap();
        assert_eq!(c["result"]["a"], "}");
        assert_eq!(f.next_value().unwrap(), None);
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        let mut f = Framer::new();
        f.push(b"{\"id\":1,]");
        assert!(matches!(f.next_value(), Err(FrameError::Syntax(_))));
        let mut f = Framer::new();
        f.push(b"[1,2]");
        assert_eq!(f.next_value(), Err(FrameError::NotObject));
        let mut f = Framer::new();
        f.push(b"{\"x\":\"");
        f.push(&vec![b'a'; MAX_MESSAGE + 1]);
        assert_eq!(f.next_value(), Err(FrameError::TooLong));
    }

    #[test]
    fn messages_are_classified() {
        let r = Msg::parse(json!({"id": 3, "result": null, "error": {"error": "x"}})).unwrap();
        assert!(matches!(r, Msg::Response { ref error, .. } if error["error"] == "x"));
        let n = Msg::parse(json!({"method": "update", "params": [1, {}], "id": null})).unwrap();
        assert!(
            matches!(n, Msg::Request { ref method, ref id, .. } if method == "update" && id.is_null())
        );
        assert_eq!(Msg::parse(json!({"foo": 1})), None);
        // No "jsonrpc" member ever goes out.
        let out = Msg::request("list_dbs", json!([]), 1).to_json();
        assert_eq!(out.as_object().unwrap().len(), 3);
    }
}
