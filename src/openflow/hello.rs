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

/// A set of OpenFlow wire versions: bit `v` set means version `v`
/// (0x01 is OpenFlow 1.0, 0x04 is 1.3, 0x05 1.4, 0x06 1.5). A switch's
/// `--protocols` (Open vSwitch's `Bridge.protocols`) is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions(u32);

impl Versions {
    /// Every version this switch speaks: 1.0, 1.3, 1.4 and 1.5 (not 1.1 and
    /// 1.2, which no tool or controller we know of needs).
    pub const SUPPORTED: Versions = Versions(1 << 0x01 | 1 << 0x04 | 1 << 0x05 | 1 << 0x06);

    /// The names `--protocols` and Open vSwitch's `Bridge.protocols` use.
    const NAMES: [(&'static str, u8); 6] = [
        ("OpenFlow10", 0x01),
        ("OpenFlow11", 0x02),
        ("OpenFlow12", 0x03),
        ("OpenFlow13", 0x04),
        ("OpenFlow14", 0x05),
        ("OpenFlow15", 0x06),
    ];

    /// The set with just `v`.
    pub fn only(v: u8) -> Versions {
        Versions(if v < 32 { 1 << v } else { 0 })
    }

    pub fn contains(self, v: u8) -> bool {
        v < 32 && self.0 & (1 << v) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// The highest version in the set, if any.
    pub fn highest(self) -> Option<u8> {
        (self.0 != 0).then(|| 31 - self.0.leading_zeros() as u8)
    }

    /// The versions in both sets.
    pub fn and(self, other: Versions) -> Versions {
        Versions(self.0 & other.0)
    }

    /// Every version up to and including `v`.
    fn up_to(v: u8) -> Versions {
        Versions(if v >= 31 { u32::MAX } else { (2u32 << v) - 1 })
    }

    /// The spec's name of a wire version (`OpenFlow13`), or `0xNN`.
    pub fn name(v: u8) -> String {
        Self::NAMES
            .iter()
            .find(|n| n.1 == v)
            .map_or_else(|| format!("{v:#04x}"), |n| n.0.to_owned())
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions::SUPPORTED
    }
}

impl std::str::FromStr for Versions {
    type Err = String;

    /// A comma-separated list of `OpenFlow10`, `OpenFlow13`, `OpenFlow14`,
    /// `OpenFlow15` (as in Open vSwitch's `Bridge.protocols`).
    fn from_str(s: &str) -> Result<Versions, String> {
        let mut set = 0u32;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let v = Self::NAMES
                .iter()
                .find(|n| n.0.eq_ignore_ascii_case(name))
                .map(|n| n.1)
                .ok_or_else(|| {
                    format!("unknown OpenFlow version '{name}' (OpenFlow10, OpenFlow13, OpenFlow14, OpenFlow15)")
                })?;
            if !Versions::SUPPORTED.contains(v) {
                return Err(format!(
                    "{name} is not supported (OpenFlow10, OpenFlow13, OpenFlow14, OpenFlow15)"
                ));
            }
            set |= 1 << v;
        }
        if set == 0 {
            return Err("no OpenFlow version given".into());
        }
        Ok(Versions(set))
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = (0..32u8)
            .filter(|&v| self.contains(v))
            .map(Versions::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

impl Hello {
    /// The hello a switch that allows `ours` sends: its highest version in
    /// the header (the caller writes it) and every version in a bitmap.
    pub fn offering(ours: Versions) -> Hello {
        Hello {
            elements: vec![HelloElement::VersionBitmap(vec![ours.bits()])],
        }
    }
}

/// The version to speak with a peer whose hello had `peer_version` in its
/// header and body `peer`, when this side allows `ours`; or the
/// `OFPT_ERROR` body to send before closing (with the ASCII explanation the
/// spec asks for).
///
/// With a bitmap the answer is the highest version in both. Without one, the
/// peer is taken to speak every version up to its header's (as Open vSwitch
/// does; the spec's "the smaller of the two" would refuse a 1.3 peer to a
/// switch that also allows 1.0 and 1.5 only when 1.3 is off anyway).
pub fn negotiate(peer_version: u8, peer: &Hello, ours: Versions) -> Result<u8, ErrorMsg> {
    let theirs = match peer.version_bitmap() {
        Some(b) => Versions(b.first().copied().unwrap_or(0)),
        None => Versions::up_to(peer_version),
    };
    if let Some(v) = ours.and(theirs).highest() {
        return Ok(v);
    }
    let text = match peer.version_bitmap() {
        Some(b) => format!(
            "We support versions {ours} ({:#x}), peer supports versions in bitmap {b:08x?}",
            ours.bits()
        ),
        None => format!(
            "We support versions {ours} ({:#x}), peer supports version 0x{peer_version:02x}",
            ours.bits()
        ),
    };
    Err(ErrorMsg {
        code: ErrorCode::HelloFailed(HelloFailedCode::Incompatible),
        data: text.into_bytes(),
    })
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
        let of13 = Versions::only(4);
        assert_eq!(negotiate(6, &bitmap(0b111_0010), of13), Ok(4));
        assert_eq!(negotiate(4, &Hello::default(), of13), Ok(4));
        assert_eq!(negotiate(5, &Hello::default(), of13), Ok(4));
        let e = negotiate(1, &Hello::default(), of13).unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::HelloFailed(HelloFailedCode::Incompatible)
        );
        assert!(String::from_utf8(e.data).unwrap().contains("0x01"));
        // A bitmap without 1.3 fails even if the header says a higher version.
        assert!(negotiate(6, &bitmap(0b110_0010), of13).is_err());
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let all = Versions::SUPPORTED;
        let bitmap = |w| Hello {
            elements: vec![HelloElement::VersionBitmap(vec![w])],
        };
        // ovs-ofctl without -O: OpenFlow 1.0 only, said with a bitmap.
        assert_eq!(negotiate(1, &bitmap(0b10), all), Ok(1));
        assert_eq!(negotiate(1, &Hello::default(), all), Ok(1));
        assert_eq!(negotiate(6, &Hello::default(), all), Ok(6));
        // A 1.2 peer without a bitmap gets 1.0, the highest we share.
        assert_eq!(negotiate(3, &Hello::default(), all), Ok(1));
        assert_eq!(negotiate(6, &bitmap(0b111_0010), all), Ok(6));
        let p: Versions = "OpenFlow10,OpenFlow13".parse().unwrap();
        assert_eq!(negotiate(6, &bitmap(0b111_0010), p), Ok(4));
        let e = negotiate(4, &bitmap(0b10000), "OpenFlow10".parse().unwrap()).unwrap_err();
        let text = String::from_utf8(e.data).unwrap();
        assert!(text.contains("OpenFlow10"), "{text}");
        assert!(negotiate(0, &Hello::default(), all).is_err());
    }

    #[test]
    fn versions_parse_and_print() {
        let v: Versions = "OpenFlow10, OpenFlow15".parse().unwrap();
        assert!(v.contains(1) && v.contains(6) && !v.contains(4));
        assert_eq!(v.to_string(), "OpenFlow10,OpenFlow15");
        assert_eq!(v.highest(), Some(6));
        assert_eq!(
            Versions::SUPPORTED.to_string(),
            "OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15"
        );
        assert!(
            "OpenFlow12"
                .parse::<Versions>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            "OpenFlow99"
                .parse::<Versions>()
                .unwrap_err()
                .contains("unknown")
        );
        assert!("".parse::<Versions>().is_err());
    }
}
