//! `ovs-ofctl snoop BR`: a switch listens on `BR.snoop` (beside `BR.mgmt`)
//! and copies to each snoop connection every OpenFlow message that passes
//! between it and one of its controllers, in both directions, as
//! ovs-vswitchd does.
//!
//! As Open vSwitch (`connmgr.c` `add_snooper`, `rconn.c` monitors):
//! - a snoop watches one dialled controller, chosen when it connects: the
//!   one whose connection is master, else equal, else slave, else the first
//!   configured; it keeps watching that controller across reconnections.
//!   A switch with no dialled controller closes snoop connections at once
//!   (connections accepted on `ptcp:`/`punix:`, such as ovs-ofctl's, are
//!   never copied);
//! - at most [`MAX_SNOOPS`] snoop connections; each starts with our HELLO
//!   (every version we speak) and gets copies once the peer's HELLO came;
//!   anything else it sends is read and dropped;
//! - messages are copied as they are on the wire, in the version the
//!   controller's connection negotiated (ovs-ofctl snoop reads any
//!   version); the HELLOs of the watched connection are not copied (in
//!   Open vSwitch they never reach the layer that copies).
//!
//! A snoop never slows a controller: copies are whole messages queued on
//! the snoop up to [`QUEUE_LIMIT`] bytes; beyond, they are dropped (and
//! counted), never half-written. Open vSwitch drops too, at a smaller
//! bound (one message waiting in the socket's buffer).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::net::{Listener, Stream};
use crate::openflow::header::MsgType;
use crate::openflow::{HEADER_LEN, Hello, Message, Versions, decode, negotiate};

/// Most snoop connections at once (Open vSwitch's `MAXIMUM_MONITORS`).
pub const MAX_SNOOPS: usize = 8;
/// Most bytes queued on one snoop connection.
pub const QUEUE_LIMIT: usize = 256 << 10;

/// Follows the message boundaries of one direction of a byte stream
/// without copying it, and hands out whole messages while asked to.
#[derive(Default)]
pub struct Framer {
    head: [u8; HEADER_LEN],
    /// Header bytes of the current message seen so far.
    have: usize,
    /// Body bytes of the current message still to come.
    left: usize,
    /// The current message, when it started while capturing.
    frame: Option<Vec<u8>>,
    /// A length below 8 was seen: the stream cannot be cut any more (the
    /// engine closes such a connection).
    broken: bool,
}

impl Framer {
    /// Follows `bytes`, the next part of the stream. Each message whose
    /// header was completed while `capture` was true goes, whole, to `each` once its
    /// last byte is seen.
    pub fn feed(&mut self, bytes: &[u8], capture: bool, each: impl FnMut(&[u8])) {
        self.feed_with(bytes, capture, |_| {}, each);
    }

    /// Like [`Framer::feed`], also handing each message's header to
    /// `head` as soon as it is complete.
    pub fn feed_with(
        &mut self,
        mut bytes: &[u8],
        capture: bool,
        mut head: impl FnMut(&[u8; HEADER_LEN]),
        mut each: impl FnMut(&[u8]),
    ) {
        while !bytes.is_empty() && !self.broken {
            if self.have < HEADER_LEN {
                let n = (HEADER_LEN - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have < HEADER_LEN {
                    return;
                }
                head(&self.head);
                let len = usize::from(u16::from_be_bytes([self.head[2], self.head[3]]));
                if len < HEADER_LEN {
                    self.broken = true;
                    self.frame = None;
                    return;
                }
                self.left = len - HEADER_LEN;
                self.frame = capture.then(|| {
                    let mut f = Vec::with_capacity(len);
                    f.extend_from_slice(&self.head);
                    f
                });
            }
            let n = self.left.min(bytes.len());
            if let Some(f) = &mut self.frame {
                f.extend_from_slice(&bytes[..n]);
            }
            self.left -= n;
            bytes = &bytes[n..];
            if self.left == 0 {
                self.have = 0;
                if let Some(f) = self.frame.take() {
                    each(&f);
                }
            }
        }
    }
}

/// Both directions of one watched controller connection.
#[derive(Default)]
pub struct Tap {
    /// What the controller sent.
    pub rx: Framer,
    /// What the switch sent.
    pub tx: Framer,
}

/// One snoop connection.
struct Snoop {
    stream: Stream,
    out: Vec<u8>,
    /// Its peer's messages, cut to find its HELLO.
    input: Framer,
    /// The peer's HELLO came: copies go out.
    open: bool,
    /// Index of the watched controller among the agent's dialled ones.
    target: usize,
    /// Messages dropped because the queue was full.
    dropped: u64,
    /// Why it must close, once seen by [`Snoops::flush`].
    closing: Option<String>,
}

/// What a poll slot of the snoop side stands for.
#[derive(Clone, Copy, Debug)]
pub enum SnoopSlot {
    Listener(usize),
    Conn(u64),
}

/// A switch's snoop listeners and connections.
#[derive(Default)]
pub struct Snoops {
    listeners: Vec<Listener>,
    conns: BTreeMap<u64, Snoop>,
    next_id: u64,
}

impl Snoops {
    pub fn new(listeners: Vec<Listener>) -> Snoops {
        Snoops {
            listeners,
            ..Default::default()
        }
    }

    /// The descriptors to poll, with what each stands for.
    pub fn poll_fds(&self, mut add: impl FnMut(RawFd, i16, SnoopSlot)) {
        use crate::sys::{POLL_IN, POLL_OUT};
        if self.conns.len() < MAX_SNOOPS {
            for (i, l) in self.listeners.iter().enumerate() {
                add(l.as_raw_fd(), POLL_IN, SnoopSlot::Listener(i));
            }
        }
        for (&id, s) in &self.conns {
            let ev = if s.out.is_empty() {
                POLL_IN
            } else {
                POLL_IN | POLL_OUT
            };
            add(s.stream.as_raw_fd(), ev, SnoopSlot::Conn(id));
        }
    }

    /// Accepts what waits on listener `i`; `pick` names the controller
    /// each new snoop watches (`None`: there is none, the snoop is closed).
    pub fn accept(&mut self, i: usize, pick: impl Fn() -> Option<usize>) {
        while self.conns.len() < MAX_SNOOPS {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            match l.accept() {
                Ok((stream, _)) => {
                    // Dropping the stream closes it: no controller to snoop.
                    let Some(target) = pick() else { continue };
                    if stream.set_nonblocking().is_err() {
                        continue;
                    }
                    let mut out = Vec::new();
                    let hello = Message::Hello(Hello::offering(Versions::SUPPORTED));
                    let v = Versions::SUPPORTED.highest().unwrap_or(1);
                    if hello.encode_into_version(v, 0, &mut out).is_err() {
                        continue;
                    }
                    self.next_id += 1;
                    self.conns.insert(
                        self.next_id,
                        Snoop {
                            stream,
                            out,
                            input: Framer::default(),
                            open: false,
                            target,
                            dropped: 0,
                            closing: None,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or out of descriptors: next round.
                Err(_) => return,
            }
        }
    }

    /// Reads what snoop `id` sent: its HELLO opens it, the rest is dropped.
    pub fn read(&mut self, id: u64) {
        let Some(s) = self.conns.get_mut(&id) else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match s.stream.read(&mut buf) {
                Ok(0) => {
                    s.closing = Some("closed by peer".into());
                    return;
                }
                Ok(n) => {
                    let (open, out) = (&mut s.open, &mut s.out);
                    let mut why = None;
                    s.input.feed(&buf[..n], !*open, |frame| {
                        if *open {
                            return;
                        }
                        match first_message(frame, out) {
                            Ok(()) => *open = true,
                            Err(e) => why = Some(e),
                        }
                    });
                    if s.input.broken {
                        why = Some("message length below 8".into());
                    }
                    if why.is_some() {
                        s.closing = why;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    s.closing = Some(e.to_string());
                    return;
                }
            }
        }
    }

    /// Whether some open snoop watches controller `target`.
    pub fn watching(&self, target: usize) -> bool {
        self.conns
            .values()
            .any(|s| s.open && s.closing.is_none() && s.target == target)
    }

    /// Copies `frame`, a whole message of controller `target`'s connection,
    /// to each open snoop watching it that has room.
    pub fn copy(&mut self, target: usize, frame: &[u8]) {
        if frame.get(1) == Some(&(MsgType::Hello as u8)) {
            return;
        }
        for s in self.conns.values_mut() {
            if !s.open || s.closing.is_some() || s.target != target {
                continue;
            }
            if s.out.len() + frame.len() > QUEUE_LIMIT {
                s.dropped += 1;
            } else {
                s.out.extend_from_slice(frame);
            }
        }
    }

    /// Follows `bytes` of controller `target`'s stream in one direction,
    /// copying its whole messages to the snoops that watch it.
    pub fn follow(&mut self, framer: &mut Framer, target: usize, bytes: &[u8]) {
        let capture = self.watching(target);
        framer.feed(bytes, capture, |f| self.copy(target, f));
    }

    /// Writes what each snoop has queued; closes the broken ones.
    pub fn flush(&mut self) {
        self.conns.retain(|_, s| {
            if s.closing.is_some() {
                return false;
            }
            let mut written = 0;
            while written < s.out.len() {
                match s.stream.write(&s.out[written..]) {
                    Ok(0) => return false,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            s.out.drain(..written);
            true
        });
    }

    /// Messages dropped so far on each snoop.
    #[cfg(test)]
    fn dropped(&self) -> Vec<u64> {
        self.conns.values().map(|s| s.dropped).collect()
    }
}

/// The first message of a snoop's peer: its HELLO, with a version in
/// common (else an error is queued on `out` and the snoop closes).
fn first_message(frame: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match decode(frame) {
        Ok((h, Message::Hello(hello))) => match negotiate(h.version, &hello, Versions::SUPPORTED) {
            Ok(_) => Ok(()),
            Err(e) => {
                let v = if Versions::SUPPORTED.contains(h.version) {
                    h.version
                } else {
                    Versions::SUPPORTED.highest().unwrap_or(1)
                };
                let _ = Message::Error(e).encode_into_version(v, h.xid, out);
                Err("no common OpenFlow version".into())
            }
        },
        _ => Err("did not start with a hello".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, xid: u8, body: &[u8]) -> Vec<u8> {
        let len = (HEADER_LEN + body.len()) as u16;
        let mut m = vec![4, ty];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, xid]);
        m.extend_from_slice(body);
        m
    }

    fn frames(f: &mut Framer, bytes: &[u8], capture: bool) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        f.feed(bytes, capture, |m| got.push(m.to_vec()));
        got
    }

    #[test]
    fn framer_cuts_messages_split_anywhere() {
        let a = msg(2, 1, b"ping");
        let b = msg(3, 2, b"");
        let c = msg(14, 3, &[7; 60]);
        let stream: Vec<u8> = [a.clone(), b.clone(), c.clone()].concat();
        for step in [1, 3, 7, 8, 9, 13, stream.len()] {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(step) {
                got.extend(frames(&mut f, chunk, true));
            }
            assert_eq!(got, [a.clone(), b.clone(), c.clone()], "chunks of {step}");
        }
    }

    #[test]
    fn framer_captures_only_messages_started_while_asked() {
        let a = msg(2, 1, b"abcdef");
        let b = msg(3, 2, b"xy");
        let mut f = Framer::default();
        // The first message starts before capture is asked for: it is
        // skipped even though its end arrives while capturing.
        assert!(frames(&mut f, &a[..10], false).is_empty());
        assert!(frames(&mut f, &a[10..], true).is_empty());
        assert_eq!(frames(&mut f, &b, true), std::slice::from_ref(&b));
        // Not capturing: boundaries are still followed.
        assert!(frames(&mut f, &a, false).is_empty());
        assert_eq!(frames(&mut f, &b, true), [b]);
    }

    #[test]
    fn framer_stops_at_a_length_below_the_header() {
        let mut f = Framer::default();
        let bad = [4u8, 2, 0, 4, 0, 0, 0, 1];
        assert!(frames(&mut f, &bad, true).is_empty());
        assert!(f.broken);
        assert!(frames(&mut f, &msg(2, 1, b""), true).is_empty());
    }

    fn pair() -> (Snoops, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let stream = Stream::Unix(a);
        stream.set_nonblocking().unwrap();
        let mut s = Snoops::default();
        s.conns.insert(
            1,
            Snoop {
                stream,
                out: Vec::new(),
                input: Framer::default(),
                open: false,
                target: 0,
                dropped: 0,
                closing: None,
            },
        );
        (s, b)
    }

    #[test]
    fn copies_start_after_the_peer_hello_and_are_bounded() {
        let (mut s, mut peer) = pair();
        let echo = msg(2, 9, b"hi");
        s.copy(0, &echo);
        assert!(s.conns[&1].out.is_empty(), "no copies before the hello");
        let hello = Message::Hello(Hello::offering(Versions::SUPPORTED));
        let mut h = Vec::new();
        hello.encode_into_version(4, 1, &mut h).unwrap();
        peer.write_all(&h).unwrap();
        s.read(1);
        assert!(s.watching(0) && !s.watching(1));
        s.copy(0, &echo);
        s.copy(1, &echo);
        s.copy(0, &msg(MsgType::Hello as u8, 1, b""));
        assert_eq!(s.conns[&1].out, echo, "one copy, of the watched controller");
        // A reader that never reads: the queue stops at its bound.
        let big = vec![0u8; 60000];
        let big = msg(2, 3, &big);
        for _ in 0..10 {
            s.copy(0, &big);
        }
        let queued = s.conns[&1].out.len();
        assert!(queued <= QUEUE_LIMIT);
        assert_eq!((queued - echo.len()) % big.len(), 0, "whole messages only");
        assert_eq!(s.dropped(), [10 - (queued / big.len()) as u64]);
        drop(peer);
        s.read(1);
        s.flush();
        assert!(s.conns.is_empty(), "a closed reader is dropped");
    }

    #[test]
    fn a_peer_that_does_not_say_hello_is_closed() {
        let (mut s, mut peer) = pair();
        peer.write_all(&msg(2, 1, b"")).unwrap();
        s.read(1);
        s.flush();
        assert!(s.conns.is_empty());
        let (mut s, mut peer) = pair();
        peer.write_all(&[4, 0, 0, 2, 0, 0, 0, 0]).unwrap();
        s.read(1);
        s.flush();
        assert!(s.conns.is_empty());
    }
}
