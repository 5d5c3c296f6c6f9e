//! OpenFlow 1.5's `ofp_stats` (OXS): the flow statistics of flow stats,
//! aggregate stats and flow removed, as TLVs instead of fixed fields.
//!
//! Decoding keeps the fields this codec knows (duration, idle time, flow,
//! packet and byte counts) and skips others; encoding writes the fields a
//! message needs, in the order the spec lists them.

use super::bytes::{Reader, Res, Writer};

/// `OFPXSC_OPENFLOW_BASIC`.
const CLASS: u16 = 0x8002;

/// `oxs_ofb_stat_fields`.
mod field {
    pub const DURATION: u8 = 0;
    pub const IDLE_TIME: u8 = 1;
    pub const FLOW_COUNT: u8 = 3;
    pub const PACKET_COUNT: u8 = 4;
    pub const BYTE_COUNT: u8 = 5;
}

/// The statistics an `ofp_stats` can carry; `None` where absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// (seconds, nanoseconds).
    pub duration: Option<(u32, u32)>,
    pub idle_time: Option<(u32, u32)>,
    pub flow_count: Option<u32>,
    pub packet_count: Option<u64>,
    pub byte_count: Option<u64>,
}

impl Stats {
    /// Reads an `ofp_stats` (with its padding to 8 bytes).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<Stats> {
        let short = r.short();
        r.skip(2)?;
        let len = usize::from(r.u16()?);
        if len < 4 {
            return Err(short);
        }
        let mut f = r.sub(len - 4, short)?;
        r.skip(len.next_multiple_of(8) - len)?;
        let mut s = Stats::default();
        while !f.is_empty() {
            let class = f.u16()?;
            let fb = f.u8()?;
            let flen = usize::from(f.u8()?);
            let mut v = f.sub(flen, short)?;
            if class != CLASS {
                continue;
            }
            let pair = |v: &mut Reader<'_>| -> Res<(u32, u32)> { Ok((v.u32()?, v.u32()?)) };
            match (fb >> 1, flen) {
                (field::DURATION, 8) => s.duration = Some(pair(&mut v)?),
                (field::IDLE_TIME, 8) => s.idle_time = Some(pair(&mut v)?),
                (field::FLOW_COUNT, 4) => s.flow_count = Some(v.u32()?),
                (field::PACKET_COUNT, 8) => s.packet_count = Some(v.u64()?),
                (field::BYTE_COUNT, 8) => s.byte_count = Some(v.u64()?),
                _ => {}
            }
        }
        Ok(s)
    }

    /// Writes an `ofp_stats` (padded to 8 bytes).
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        w.u16(0);
        w.u16(0);
        let head = |w: &mut Writer<'_>, f: u8, len: u8| {
            w.u16(CLASS);
            w.u8(f << 1);
            w.u8(len);
        };
        if let Some((s, ns)) = self.duration {
            head(w, field::DURATION, 8);
            w.u32(s);
            w.u32(ns);
        }
        if let Some((s, ns)) = self.idle_time {
            head(w, field::IDLE_TIME, 8);
            w.u32(s);
            w.u32(ns);
        }
        if let Some(n) = self.flow_count {
            head(w, field::FLOW_COUNT, 4);
            w.u32(n);
        }
        if let Some(n) = self.packet_count {
            head(w, field::PACKET_COUNT, 8);
            w.u64(n);
        }
        if let Some(n) = self.byte_count {
            head(w, field::BYTE_COUNT, 8);
            w.u64(n);
        }
        w.patch_len(start + 2, start, "ofp_stats");
        w.pad_to_8(start);
    }
}
