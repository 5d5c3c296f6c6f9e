//! Packet capture: copies of the frames a port receives and sends, as pcap
//! records, for `mswitch capture`.
//!
//! Every attached port has a [`Taps`]: with no capture on it, the
//! forwarding path pays one relaxed load and a predictable branch per
//! batch (received) and per destination of a batch (sent). A capture
//! copies frames into a bounded buffer of its own, already in pcap's record
//! format (nanosecond timestamps); the reader swaps the buffer out
//! whole. When the buffer is full (the reader is slow) the frames that do
//! not fit are counted as lost: the switch never waits for a reader and
//! never loses a forwarded frame to one.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which frames of a port a capture copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Frames the port received (as received, before any module saw them).
    In,
    /// Frames the switch sent to the port.
    Out,
    Both,
}

impl Direction {
    fn bits(self) -> u8 {
        match self {
            Direction::In => IN,
            Direction::Out => OUT,
            Direction::Both => IN | OUT,
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Direction, String> {
        match s {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            "both" | "inout" => Ok(Direction::Both),
            _ => Err(format!("direction '{s}': expected in, out or both")),
        }
    }
}

pub(crate) const IN: u8 = 1;
pub(crate) const OUT: u8 = 2;

/// The pcap record header: seconds, nanoseconds, captured and original
/// length, little-endian (the file header says so with its magic).
pub const RECORD_HEADER: usize = 16;
/// The magic of a little-endian pcap file with nanosecond timestamps.
pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The bytes of records a capture holds for its reader, and the largest
/// chunk a capture stream carries.
pub const BUFFER: usize = 4 << 20;

/// A pcap file header for frames of at most `snaplen` bytes.
pub fn pcap_header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// One capture: what it wants and the records waiting for its reader.
pub struct Capture {
    dir: u8,
    snaplen: u32,
    /// Records not yet taken by the reader; never grows past `limit`.
    buf: Mutex<Vec<u8>>,
    limit: usize,
    captured: AtomicU64,
    lost: AtomicU64,
}

impl Capture {
    /// A capture of `dir` frames, each cut to `snaplen` bytes, holding at
    /// most `limit` bytes of records until its reader takes them.
    pub fn new(dir: Direction, snaplen: u32, limit: usize) -> Capture {
        let limit = limit.max(RECORD_HEADER + 64);
        Capture {
            dir: dir.bits(),
            snaplen: snaplen.max(1),
            buf: Mutex::new(Vec::with_capacity(limit)),
            limit,
            captured: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// Appends records for `frames` (at wall-clock time `ts`, nanoseconds
    /// since the epoch); what does not fit is lost and counted.
    fn record<'a>(&self, ts: u64, frames: impl Iterator<Item = &'a [u8]>) {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let (mut taken, mut lost) = (0u64, 0u64);
        let sec = (ts / 1_000_000_000) as u32;
        let nsec = (ts % 1_000_000_000) as u32;
        for f in frames {
            let incl = f.len().min(self.snaplen as usize);
            if b.len() + RECORD_HEADER + incl > self.limit {
                lost += 1;
                continue;
            }
            b.extend_from_slice(&sec.to_le_bytes());
            b.extend_from_slice(&nsec.to_le_bytes());
            b.extend_from_slice(&(incl as u32).to_le_bytes());
            b.extend_from_slice(&(f.len() as u32).to_le_bytes());
            b.extend_from_slice(&f[..incl]);
            taken += 1;
        }
        drop(b);
        self.captured.fetch_add(taken, Ordering::Relaxed);
        if lost != 0 {
            self.lost.fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Takes the records waiting (swapped with `spare`, which must be
    /// empty and comes back holding them).
    pub fn take(&self, spare: &mut Vec<u8>) {
        spare.clear();
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if spare.capacity() < self.limit {
            spare.reserve(self.limit - spare.capacity());
        }
        std::mem::swap(&mut *b, spare);
    }

    /// Frames copied so far.
    pub fn captured(&self) -> u64 {
        self.captured.load(Ordering::Relaxed)
    }

    /// Frames lost so far for lack of room.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The captures of one port. Cheap to ask when there are none.
#[derive(Default)]
pub struct Taps {
    /// The directions some capture wants ([`IN`], [`OUT`]).
    on: AtomicU8,
    list: RwLock<Vec<Arc<Capture>>>,
}

impl Taps {
    /// Whether some capture wants frames of direction `bit`.
    #[inline(always)]
    pub(crate) fn wants(&self, bit: u8) -> bool {
        self.on.load(Ordering::Relaxed) & bit != 0
    }

    /// Copies `frames` (of direction `bit`) to every capture that wants
    /// them.
    pub(crate) fn record<'a>(&self, bit: u8, frames: impl Iterator<Item = &'a [u8]> + Clone) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        for c in list.iter().filter(|c| c.dir & bit != 0) {
            c.record(ts, frames.clone());
        }
    }

    pub fn add(&self, c: Arc<Capture>) {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        list.push(c);
        self.publish(&list);
    }

    /// Removes capture `c`; false if it was not here.
    pub fn remove(&self, c: &Arc<Capture>) -> bool {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, c));
        self.publish(&list);
        list.len() != before
    }

    /// Whether capture `c` is on this port.
    pub fn has(&self, c: &Arc<Capture>) -> bool {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        list.iter().any(|x| Arc::ptr_eq(x, c))
    }

    fn publish(&self, list: &[Arc<Capture>]) {
        let on = list.iter().fold(0, |a, c| a | c.dir);
        self.on.store(on, Ordering::Relaxed);
    }
}

/// One record of a pcap stream: its header fields and captured bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub sec: u32,
    pub nsec: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// The records of `b` (whole records only; a cut-off tail is an error).
pub fn records(mut b: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some(h) = b.get(..RECORD_HEADER) else {
            return Err("a pcap record header is cut off".into());
        };
        let word = |k: usize| u32::from_le_bytes([h[k], h[k + 1], h[k + 2], h[k + 3]]);
        let incl = word(8) as usize;
        let Some(data) = b.get(RECORD_HEADER..RECORD_HEADER + incl) else {
            return Err("a pcap record is cut off".into());
        };
        out.push(Record {
            sec: word(0),
            nsec: word(4),
            orig_len: word(12),
            data,
        });
        b = &b[RECORD_HEADER + incl..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_to_snaplen_and_lost_when_full() {
        let c = Arc::new(Capture::new(Direction::Both, 20, 2 * (RECORD_HEADER + 20)));
        let taps = Taps::default();
        assert!(!taps.wants(IN) && !taps.wants(OUT));
        taps.add(c.clone());
        assert!(taps.wants(IN) && taps.wants(OUT));
        let (a, b) = ([1u8; 60], [2u8; 10]);
        let frames = [&a[..], &b[..], &a[..]];
        taps.record(IN, frames.iter().copied());
        assert_eq!((c.captured(), c.lost()), (2, 1));
        let mut got = Vec::new();
        c.take(&mut got);
        let r = records(&got).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].orig_len, r[0].data), (60, &a[..20]));
        assert_eq!((r[1].orig_len, r[1].data), (10, &b[..]));
        // Taken: room again.
        taps.record(OUT, frames[..1].iter().copied());
        assert_eq!(c.captured(), 3);
        assert!(taps.remove(&c));
        assert!(!taps.wants(IN));
        assert!(!taps.remove(&c));
    }

    #[test]
    fn a_capture_sees_only_its_direction() {
        let c = Arc::new(Capture::new(Direction::In, 1500, 1 << 16));
        let taps = Taps::default();
        taps.add(c.clone());
        assert!(taps.wants(IN) && !taps.wants(OUT));
        taps.record(OUT, [&[0u8; 60][..]].into_iter());
        assert_eq!(c.captured(), 0);
    }

    #[test]
    fn cut_off_records_are_refused() {
        assert!(records(&[0u8; 10]).is_err());
        let mut r = vec![0u8; RECORD_HEADER];
        r[8] = 5;
        r.extend_from_slice(&[1, 2]);
        assert!(records(&r).is_err());
        assert_eq!(pcap_header(65535)[0..4], PCAP_MAGIC_NS.to_le_bytes());
    }
}
