//! Meters: `OFPT_METER_MOD` with its bands, and the meter multipart bodies
//! (`OFPMP_METER`, `OFPMP_METER_CONFIG`, `OFPMP_METER_FEATURES`). A switch
//! without meters still decodes these fully, to answer them precisely.

use super::bytes::{Reader, Res, Writer};
use super::error::{ErrorCode, MeterModFailedCode};

wire_enum! {
    /// `ofp_meter_mod_command`.
    pub enum MeterModCommand: u16 {
        Add = 0 => "OFPMC_ADD",
        Modify = 1 => "OFPMC_MODIFY",
        Delete = 2 => "OFPMC_DELETE",
    }
}

/// `ofp_meter_flags` bits.
pub mod meter_flags {
    pub const KBPS: u16 = 1 << 0;
    pub const PKTPS: u16 = 1 << 1;
    pub const BURST: u16 = 1 << 2;
    pub const STATS: u16 = 1 << 3;
}

/// Meter ids: the last usable one and the virtual meters.
pub mod meter_id {
    pub const MAX: u32 = 0xffff_0000;
    pub const SLOWPATH: u32 = 0xffff_fffd;
    pub const CONTROLLER: u32 = 0xffff_fffe;
    pub const ALL: u32 = 0xffff_ffff;
}

const BAND_DROP: u16 = 1;
const BAND_DSCP_REMARK: u16 = 2;
const BAND_EXPERIMENTER: u16 = 0xffff;
const BAND_LEN: usize = 16;

/// One meter band (`ofp_meter_band_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterBand {
    Drop {
        rate: u32,
        burst_size: u32,
    },
    DscpRemark {
        rate: u32,
        burst_size: u32,
        prec_level: u8,
    },
    Experimenter {
        rate: u32,
        burst_size: u32,
        experimenter: u32,
        /// Anything after the experimenter id (a multiple of 8 bytes).
        data: Vec<u8>,
    },
}

impl MeterBand {
    /// Reads the bands filling all of `r`.
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<MeterBand>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let ty = r.peek_u16(0)?;
            let len = usize::from(r.peek_u16(2)?);
            if len < BAND_LEN || !len.is_multiple_of(8) {
                return Err(short);
            }
            let mut b = r.sub(len, short)?;
            b.skip(4)?;
            let rate = b.u32()?;
            let burst_size = b.u32()?;
            out.push(match ty {
                BAND_DROP if len == BAND_LEN => MeterBand::Drop { rate, burst_size },
                BAND_DSCP_REMARK if len == BAND_LEN => MeterBand::DscpRemark {
                    rate,
                    burst_size,
                    prec_level: b.u8()?,
                },
                BAND_DROP | BAND_DSCP_REMARK => return Err(short),
                BAND_EXPERIMENTER => MeterBand::Experimenter {
                    rate,
                    burst_size,
                    experimenter: b.u32()?,
                    data: b.rest().to_vec(),
                },
                _ => return Err(ErrorCode::MeterModFailed(MeterModFailedCode::BadBand)),
            });
        }
        Ok(out)
    }

    pub(crate) fn encode_list(bands: &[MeterBand], w: &mut Writer<'_>) {
        for b in bands {
            let start = w.pos();
            let (ty, rate, burst) = match b {
                MeterBand::Drop { rate, burst_size } => (BAND_DROP, rate, burst_size),
                MeterBand::DscpRemark {
                    rate, burst_size, ..
                } => (BAND_DSCP_REMARK, rate, burst_size),
                MeterBand::Experimenter {
                    rate, burst_size, ..
                } => (BAND_EXPERIMENTER, rate, burst_size),
            };
            w.u16(ty);
            w.u16(0);
            w.u32(*rate);
            w.u32(*burst);
            match b {
                MeterBand::Drop { .. } => w.zeros(4),
                MeterBand::DscpRemark { prec_level, .. } => {
                    w.u8(*prec_level);
                    w.zeros(3);
                }
                MeterBand::Experimenter {
                    experimenter, data, ..
                } => {
                    w.u32(*experimenter);
                    w.bytes(data);
                }
            }
            w.pad_to_8(start);
            w.patch_len(start + 2, start, "meter band");
        }
    }
}

/// `OFPT_METER_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    pub command: MeterModCommand,
    /// [`meter_flags`] bits.
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterMod {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<MeterMod> {
        let command = MeterModCommand::from_wire(r.u16()?)
            .ok_or(ErrorCode::MeterModFailed(MeterModFailedCode::BadCommand))?;
        Ok(MeterMod {
            command,
            flags: r.u16()?,
            meter_id: r.u32()?,
            bands: MeterBand::decode_list(r)?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.command.to_wire());
        w.u16(self.flags);
        w.u32(self.meter_id);
        MeterBand::encode_list(&self.bands, w);
    }
}

/// Counters of one band (`ofp_meter_band_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterBandStats {
    pub packet_band_count: u64,
    pub byte_band_count: u64,
}

/// `ofp_meter_stats`: one meter of an `OFPMP_METER` reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub band_stats: Vec<MeterBandStats>,
}

const METER_STATS_LEN: usize = 40;

impl MeterStats {
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<MeterStats>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(4)?);
            if len < METER_STATS_LEN || !(len - METER_STATS_LEN).is_multiple_of(16) {
                return Err(short);
            }
            let mut e = r.sub(len, short)?;
            let meter_id = e.u32()?;
            e.skip(8)?;
            let mut m = MeterStats {
                meter_id,
                flow_count: e.u32()?,
                packet_in_count: e.u64()?,
                byte_in_count: e.u64()?,
                duration_sec: e.u32()?,
                duration_nsec: e.u32()?,
                band_stats: Vec::new(),
            };
            while !e.is_empty() {
                m.band_stats.push(MeterBandStats {
                    packet_band_count: e.u64()?,
                    byte_band_count: e.u64()?,
                });
            }
            out.push(m);
        }
        Ok(out)
    }

    pub(crate) fn encode_list(list: &[MeterStats], w: &mut Writer<'_>) {
        for m in list {
            let start = w.pos();
            w.u32(m.meter_id);
            w.u16(0);
            w.zeros(6);
            w.u32(m.flow_count);
            w.u64(m.packet_in_count);
            w.u64(m.byte_in_count);
            w.u32(m.duration_sec);
            w.u32(m.duration_nsec);
            for b in &m.band_stats {
                w.u64(b.packet_band_count);
                w.u64(b.byte_band_count);
            }
            w.patch_len(start + 4, start, "meter stats");
        }
    }
}

/// `ofp_meter_config`: one meter of an `OFPMP_METER_CONFIG` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

impl MeterConfig {
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<MeterConfig>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0)?);
            if len < 8 {
                return Err(short);
            }
            let mut e = r.sub(len, short)?;
            e.skip(2)?;
            out.push(MeterConfig {
                flags: e.u16()?,
                meter_id: e.u32()?,
                bands: MeterBand::decode_list(&mut e)?,
            });
        }
        Ok(out)
    }

    pub(crate) fn encode_list(list: &[MeterConfig], w: &mut Writer<'_>) {
        for m in list {
            let start = w.pos();
            w.u16(0);
            w.u16(m.flags);
            w.u32(m.meter_id);
            MeterBand::encode_list(&m.bands, w);
            w.patch_len(start, start, "meter config");
        }
    }
}

/// `ofp_meter_features`: the body of an `OFPMP_METER_FEATURES` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterFeatures {
    /// The largest meter id; 0 for a switch without meters.
    pub max_meter: u32,
    /// Bit `1 << t` for each band type `t`.
    pub band_types: u32,
    /// [`meter_flags`] bits.
    pub capabilities: u32,
    pub max_bands: u8,
    pub max_color: u8,
}

impl MeterFeatures {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<MeterFeatures> {
        let f = MeterFeatures {
            max_meter: r.u32()?,
            band_types: r.u32()?,
            capabilities: r.u32()?,
            max_bands: r.u8()?,
            max_color: r.u8()?,
        };
        r.skip(2)?;
        r.finish()?;
        Ok(f)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.max_meter);
        w.u32(self.band_types);
        w.u32(self.capabilities);
        w.u8(self.max_bands);
        w.u8(self.max_color);
        w.zeros(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    #[test]
    fn meter_mod_round_trip_and_errors() {
        let m = MeterMod {
            command: MeterModCommand::Add,
            flags: meter_flags::KBPS | meter_flags::STATS,
            meter_id: 1,
            bands: vec![
                MeterBand::Drop {
                    rate: 1000,
                    burst_size: 0,
                },
                MeterBand::DscpRemark {
                    rate: 500,
                    burst_size: 10,
                    prec_level: 1,
                },
                MeterBand::Experimenter {
                    rate: 1,
                    burst_size: 2,
                    experimenter: 0x2320,
                    data: vec![0; 8],
                },
            ],
        };
        let mut v = Vec::new();
        m.encode(&mut Writer::new(&mut v));
        assert_eq!(v.len(), 8 + 16 + 16 + 24);
        assert_eq!(&v[8..12], &[0, 1, 0, 16]);
        assert_eq!(MeterMod::decode(&mut Reader::new(&v, SHORT)).unwrap(), m);
        v[0..2].copy_from_slice(&[0, 3]);
        assert_eq!(
            MeterMod::decode(&mut Reader::new(&v, SHORT)),
            Err(ErrorCode::MeterModFailed(MeterModFailedCode::BadCommand))
        );
        v[0..2].copy_from_slice(&[0, 0]);
        v[9] = 7;
        assert_eq!(
            MeterMod::decode(&mut Reader::new(&v, SHORT)),
            Err(ErrorCode::MeterModFailed(MeterModFailedCode::BadBand))
        );
        v[9] = 1;
        v[11] = 24;
        assert_eq!(MeterMod::decode(&mut Reader::new(&v, SHORT)), Err(SHORT));
    }
}
