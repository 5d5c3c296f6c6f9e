//! Bounds-checked reading and length-patching writing of OpenFlow's
//! big-endian structures, and fixed-size NUL-padded strings.
//!
//! A [`Reader`] carries the error to report when the input runs short, so a
//! decoder for a nested structure says once which `OFPET_*` code a truncation
//! means there (a short match is `OFPBMC_BAD_LEN`, a short action
//! `OFPBAC_BAD_LEN`). A [`Writer`] patches length fields after the fact and
//! remembers the first one that did not fit in 16 bits.

use std::borrow::Cow;
use std::fmt;

use super::error::ErrorCode;

/// Result of the internal decoders: the error is the code to report.
pub(crate) type Res<T> = Result<T, ErrorCode>;

/// A cursor over input bytes; every read is checked.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    short: ErrorCode,
    /// The wire version of the message being read (structures whose layout
    /// changed between versions ask for it).
    version: u8,
}

impl<'a> Reader<'a> {
    /// A reader that reports `short` when a read goes past the end.
    pub fn new(buf: &'a [u8], short: ErrorCode) -> Reader<'a> {
        Reader {
            buf,
            short,
            version: super::header::OFP_VERSION,
        }
    }

    /// The same reader, reading a message of wire version `version`.
    pub fn with_version(mut self, version: u8) -> Reader<'a> {
        self.version = version;
        self
    }

    /// The wire version of the message being read.
    pub fn version(&self) -> u8 {
        self.version
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The code this reader reports for truncation.
    pub fn short(&self) -> ErrorCode {
        self.short
    }

    pub fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.buf.len() {
            return Err(self.short);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| self.short)
    }

    pub fn u8(&mut self) -> Res<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Skips padding (its content is not checked: the spec only says it
    /// should be zero).
    pub fn skip(&mut self, n: usize) -> Res<()> {
        self.take(n).map(|_| ())
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Looks at a big-endian u16 `at` bytes ahead without consuming.
    pub fn peek_u16(&self, at: usize) -> Res<u16> {
        match self.buf.get(at..at.saturating_add(2)) {
            Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
            _ => Err(self.short),
        }
    }

    /// Splits off the next `n` bytes as a reader of their own that reports
    /// `short`; if fewer than `n` bytes are left, this reader's code is the error.
    pub fn sub(&mut self, n: usize, short: ErrorCode) -> Res<Reader<'a>> {
        let version = self.version;
        Ok(Reader::new(self.take(n)?, short).with_version(version))
    }

    /// Fails unless everything was consumed.
    pub fn finish(&self) -> Res<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.short)
        }
    }
}

/// Rounds a length up to the next multiple of 8.
pub(crate) fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Encoding failed: some length does not fit its 16-bit field, or the
/// message cannot be said in the version asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{what} is {len} bytes, more than its 16-bit length field can say")]
    TooLong { what: &'static str, len: usize },
    /// The message needs something the target version of the protocol
    /// cannot say (a group in OpenFlow 1.0, a bundle in 1.0...).
    #[error("{what} cannot be said in OpenFlow wire version {version:#04x}")]
    Unsupported { what: &'static str, version: u8 },
}

/// An output buffer with big-endian writers and length patching.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    error: Option<EncodeError>,
    /// The wire version being written.
    version: u8,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Writer<'a> {
        Writer {
            buf,
            error: None,
            version: super::header::OFP_VERSION,
        }
    }

    /// The same writer, writing wire version `version`.
    pub fn with_version(mut self, version: u8) -> Writer<'a> {
        self.version = version;
        self
    }

    /// The wire version being written.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Records that something cannot be said in this version (the first
    /// such error is what [`Writer::finish`] reports).
    pub fn unsupported(&mut self, what: &'static str) {
        let version = self.version;
        self.error
            .get_or_insert(EncodeError::Unsupported { what, version });
    }

    pub fn pos(&self) -> usize {
        self.buf.len()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Pads with zeros until the bytes written since `start` are a multiple of 8.
    pub fn pad_to_8(&mut self, start: usize) {
        let n = self.pos().saturating_sub(start);
        self.zeros(pad8(n) - n);
    }

    /// Writes the number of bytes from `start` to here into the u16 at `at`
    /// (written earlier as a placeholder).
    pub fn patch_len(&mut self, at: usize, start: usize, what: &'static str) {
        let len = self.pos().saturating_sub(start);
        self.patch_u16(at, len, what);
    }

    /// Writes `len` into the u16 at `at`, recording an error if it does not fit.
    pub fn patch_u16(&mut self, at: usize, len: usize, what: &'static str) {
        let v = match u16::try_from(len) {
            Ok(v) => v,
            Err(_) => {
                self.error.get_or_insert(EncodeError::TooLong { what, len });
                u16::MAX
            }
        };
        if let Some(slot) = self.buf.get_mut(at..at + 2) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// The first length overflow, if any.
    pub fn finish(self) -> Result<(), EncodeError> {
        match self.error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// A fixed-size, NUL-padded string field (port names, table names,
/// descriptions), kept as the raw bytes so that it is echoed exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedStr<N> {
    /// The field holding `s`, cut (on a character boundary) to leave at
    /// least one terminating NUL.
    pub fn new(s: &str) -> FixedStr<N> {
        let mut end = s.len().min(N.saturating_sub(1));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut b = [0u8; N];
        b[..end].copy_from_slice(&s.as_bytes()[..end]);
        FixedStr(b)
    }

    /// The text up to the first NUL (invalid UTF-8 replaced).
    pub fn as_str(&self) -> Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(N);
        String::from_utf8_lossy(&self.0[..end])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Res<FixedStr<N>> {
        Ok(FixedStr(r.array()?))
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.bytes(&self.0);
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr([0; N])
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_str(), f)
    }
}

impl<const N: usize> From<&str> for FixedStr<N> {
    fn from(s: &str) -> Self {
        FixedStr::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    #[test]
    fn reader_checks_every_read() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5], SHORT);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.peek_u16(1), Ok(0x0405));
        assert_eq!(r.peek_u16(2), Err(SHORT));
        assert_eq!(r.u32(), Err(SHORT));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.take(usize::MAX), Err(SHORT));
        assert_eq!(r.peek_u16(usize::MAX), Err(SHORT));
        assert!(r.finish().is_err());
        assert_eq!(r.rest(), &[3, 4, 5]);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn writer_patches_lengths_and_reports_overflow() {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.u16(0);
        w.u8(7);
        w.pad_to_8(0);
        w.patch_len(0, 0, "thing");
        assert!(w.finish().is_ok());
        assert_eq!(v, [0, 8, 7, 0, 0, 0, 0, 0]);

        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.u16(0);
        w.zeros(70_000);
        w.patch_len(0, 0, "thing");
        assert_eq!(
            w.finish(),
            Err(EncodeError::TooLong {
                what: "thing",
                len: 70_002
            })
        );
    }

    #[test]
    fn fixed_str_cuts_and_reads() {
        let s = FixedStr::<4>::new("abcdef");
        assert_eq!(s.0, *b"abc\0");
        assert_eq!(s.as_str(), "abc");
        let s = FixedStr::<4>::new("aé");
        assert_eq!(s.as_str(), "aé");
        let s = FixedStr::<3>::new("aé");
        assert_eq!(s.as_str(), "a");
        assert_eq!(FixedStr::<2>([b'x', b'y']).as_str(), "xy");
    }
}
