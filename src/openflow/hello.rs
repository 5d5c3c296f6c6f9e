//! `OFPT_HELLO` with its elements, and version negotiation.
//!
//! Negotiation follows section 7.5.1 of the spec: when both hellos carry a
//! version bitmap, the version is the highest in both; otherwise it is the
//! smaller of the two header versions. This codec speaks only 1.3, so the
//! answer is 0x04 or `OFPET_HELLO_FAILED`/`OFPHFC_INCOMPATIBLE`.

use super::bytes::{Reader, Res, Writer};
use super::error::{ErrorCode, ErrorMsg, HelloFailedCode};
use super::header::OFP_VERSION;

/// `OFPHET_VERSIONBITMAP`.
pub const HELLO_ELEM_VERSIONBITMAP: u16 = 1;

/// One hello element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloElement {
    /// Bit `v % 32` of word `v / 32` set: version `v` is supported.
    VersionBitmap(Vec<u32>),
    /// An element type this codec does not know (to be ignored, says the spec).
    Unknown { ty: u16, data: Vec<u8> },
}

/// The body of `OFPT_HELLO`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub elements: Vec<HelloElement>,
}

impl Hello {
    /// The hello this switch sends: version 1.3 only, said with a bitmap.
    pub fn ours() -> Hello {
        Hello {
            elements: vec![HelloElement::VersionBitmap(vec![1 << OFP_VERSION])],
        }
    }

    /// The first version bitmap, if any.
    pub fn version_bitmap(&self) -> Option<&[u32]> {
        self.elements.iter().find_map(|e| match e {
            HelloElement::VersionBitmap(b) => Some(b.as_slice()),
            HelloElement::Unknown { .. } => None,
        })
    }

    /// Whether the bitmap (if any) has version `v`.
    pub fn bitmap_has(&self, v: u8) -> Option<bool> {
        let b = self.version_bitmap()?;
        let word = b.get(usize::from(v / 32)).copied().unwrap_or(0);
        Some(word & (1 << (v % 32)) != 0)
    }

    /// Elements are each padded to 8 bytes; their length excludes the
    /// padding. Like Open vSwitch, a malformed element ends the list and the
    /// rest of the body is ignored: a peer whose hello cannot be read is
    /// negotiated with by its header version. So this never fails.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<Hello> {
        let mut elements = Vec::new();
        while !r.is_empty() {
            match Self::decode_element(r) {
                Ok(e) => elements.push(e),
                Err(_) => break,
            }
        }
        r.rest();
        Ok(Hello { elements })
    }

    fn decode_element(r: &mut Reader<'_>) -> Res<HelloElement> {
        let short = r.short();
        let ty = r.u16()?;
        let len = usize::from(r.u16()?);
        if len < 4 {
            return Err(short);
        }
        let mut body = r.sub(len - 4, short)?;
        r.skip(len.next_multiple_of(8) - len)?;
        if ty != HELLO_ELEM_VERSIONBITMAP {
            return Ok(HelloElement::Unknown {
                ty,
                data: body.rest().to_vec(),
            });
        }
        if !body.remaining().is_multiple_of(4) {
            return Err(short);
        }
        let mut words = Vec::with_capacity(body.remaining() / 4);
        while !body.is_empty() {
            words.push(body.u32()?);
        }
        Ok(HelloElement::VersionBitmap(words))
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        for e in &self.elements {
            let start = w.pos();
            match e {
                HelloElement::VersionBitmap(words) => {
                    w.u16(HELLO_ELEM_VERSIONBITMAP);
                    w.u16(0);
                    for x in words {
                        w.u32(*x);
                    }
                }
                HelloElement::Unknown { ty, data } => {
                    w.u16(*ty);
                    w.u16(0);
                    w.bytes(data);
                }
            }
            w.patch_len(start + 2, start, "hello element");
            w.pad_to_8(start);
        }
    }
}

/// The version to speak with a peer whose hello had `peer_version` in its
/// header and body `peer`, or the `OFPT_ERROR` body to send before closing
/// (with the ASCII explanation the spec asks for).
pub fn negotiate(peer_version: u8, peer: &Hello) -> Result<u8, ErrorMsg> {
    let ok = match peer.bitmap_has(OFP_VERSION) {
        Some(has) => has,
        None => peer_version >= OFP_VERSION,
    };
    if ok {
        Ok(OFP_VERSION)
    } else {
        let text = match peer.version_bitmap() {
            Some(b) => format!(
                "We support version 0x{OFP_VERSION:02x}, peer supports versions in bitmap {b:08x?}"
            ),
            None => format!(
                "We support version 0x{OFP_VERSION:02x}, peer supports version 0x{peer_version:02x}"
            ),
        };
        Err(ErrorMsg {
            code: ErrorCode::HelloFailed(HelloFailedCode::Incompatible),
            data: text.into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    fn dec(b: &[u8]) -> Res<Hello> {
        Hello::decode(&mut Reader::new(b, SHORT))
    }

    #[test]
    fn our_hello_bytes() {
        let mut v = Vec::new();
        Hello::ours().encode(&mut Writer::new(&mut v));
        assert_eq!(v, [0, 1, 0, 8, 0, 0, 0, 0x10]);
        assert_eq!(dec(&v).unwrap(), Hello::ours());
    }

    #[test]
    fn elements_with_padding() {
        // Bitmap of two words (length 12, padded to 16) and an unknown element.
        let b = [
            0, 1, 0, 12, 0, 0, 0, 0x12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 9, 0, 5, 0xaa, 0, 0, 0,
        ];
        let h = dec(&b).unwrap();
        assert_eq!(
            h.elements,
            vec![
                HelloElement::VersionBitmap(vec![0x12, 1]),
                HelloElement::Unknown {
                    ty: 9,
                    data: vec![0xaa]
                }
            ]
        );
        assert_eq!(h.bitmap_has(4), Some(true));
        assert_eq!(h.bitmap_has(32), Some(true));
        assert_eq!(h.bitmap_has(5), Some(false));
        assert_eq!(h.bitmap_has(200), Some(false));
        let mut v = Vec::new();
        h.encode(&mut Writer::new(&mut v));
        assert_eq!(v, b);
        // Malformed elements end the list.
        assert_eq!(dec(&b[..20]).unwrap().elements, h.elements[..1]);
        assert_eq!(dec(&[0, 1, 0, 3, 0, 0, 0, 0]), Ok(Hello::default()));
        assert_eq!(dec(&[0, 1, 0, 6, 0, 0, 0, 0]), Ok(Hello::default()));
        assert_eq!(dec(&[0, 1, 0, 8, 0, 0, 0]), Ok(Hello::default()));
    }

    #[test]
    fn negotiation() {
        let bitmap = |w| Hello {
            elements: vec![HelloElement::VersionBitmap(vec![w])],
        };
        assert_eq!(negotiate(6, &bitmap(0b111_0010)), Ok(4));
        assert_eq!(negotiate(4, &Hello::default()), Ok(4));
        assert_eq!(negotiate(5, &Hello::default()), Ok(4));
        let e = negotiate(1, &Hello::default()).unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::HelloFailed(HelloFailedCode::Incompatible)
        );
        assert!(String::from_utf8(e.data).unwrap().contains("0x01"));
        // A bitmap without 1.3 fails even if the header says a higher version.
        assert!(negotiate(6, &bitmap(0b110_0010)).is_err());
    }
}
