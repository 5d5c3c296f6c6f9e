//! Groups: `OFPT_GROUP_MOD` with its buckets, and the group multipart
//! bodies (`OFPMP_GROUP`, `OFPMP_GROUP_DESC`, `OFPMP_GROUP_FEATURES`).

use super::action::{Action, decode_actions, encode_actions};
use super::bytes::{Reader, Res, Writer};
use super::error::{ErrorCode, GroupModFailedCode};
use super::header::version;
use super::port::PortNo;

wire_enum! {
    /// `ofp_group_mod_command`.
    pub enum GroupModCommand: u16 {
        Add = 0 => "OFPGC_ADD",
        Modify = 1 => "OFPGC_MODIFY",
        Delete = 2 => "OFPGC_DELETE",
    }
}

wire_enum! {
    /// `ofp_group_type`.
    pub enum GroupType: u8 {
        /// Every bucket (multicast, flooding).
        All = 0 => "OFPGT_ALL",
        /// One bucket chosen by the switch (weights).
        Select = 1 => "OFPGT_SELECT",
        /// The single bucket.
        Indirect = 2 => "OFPGT_INDIRECT",
        /// The first live bucket (fast failover, watch port/group).
        FastFailover = 3 => "OFPGT_FF",
    }
}

/// Group ids: the last usable one, and the wildcards.
pub mod group_id {
    /// `OFPG_MAX`.
    pub const MAX: u32 = 0xffff_ff00;
    /// `OFPG_ALL`: all groups (group delete, stats).
    pub const ALL: u32 = 0xffff_fffc;
    /// `OFPG_ANY`: no group (watch_group, flow filters).
    pub const ANY: u32 = 0xffff_ffff;
}

/// `ofp_group_capabilities` bits of group features.
pub mod group_capabilities {
    pub const SELECT_WEIGHT: u32 = 1 << 0;
    pub const SELECT_LIVENESS: u32 = 1 << 1;
    pub const CHAINING: u32 = 1 << 2;
    pub const CHAINING_CHECKS: u32 = 1 << 3;
}

/// `ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// For select groups: the share of traffic.
    pub weight: u16,
    /// For fast failover: the port and group whose liveness this bucket
    /// follows ([`PortNo::ANY`] and [`group_id::ANY`] when unused).
    pub watch_port: PortNo,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            weight: 0,
            watch_port: PortNo::ANY,
            watch_group: group_id::ANY,
            actions: Vec::new(),
        }
    }
}

const BUCKET_LEN: usize = 16;

/// `OFPG_BUCKET_ALL`: a 1.5 group mod about every bucket.
const BUCKET_ALL: u32 = 0xffff_ffff;

impl Bucket {
    /// Reads the buckets filling all of `r`.
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<Bucket>> {
        let bad = ErrorCode::GroupModFailed(GroupModFailedCode::BadBucket);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0).map_err(|_| bad)?);
            if len < BUCKET_LEN || !len.is_multiple_of(8) {
                return Err(bad);
            }
            let mut b = r.sub(len, bad).map_err(|_| bad)?;
            b.skip(2)?;
            let weight = b.u16()?;
            let watch_port = PortNo(b.u32()?);
            let watch_group = b.u32()?;
            b.skip(4)?;
            out.push(Bucket {
                weight,
                watch_port,
                watch_group,
                actions: decode_actions(&mut b)?,
            });
        }
        Ok(out)
    }

    /// 1.5's buckets: a bucket id, the actions' length, and weight and
    /// watches as properties (bucket ids are not kept: buckets are numbered
    /// in order when written).
    fn decode_list15(r: &mut Reader<'_>) -> Res<Vec<Bucket>> {
        let bad = ErrorCode::GroupModFailed(GroupModFailedCode::BadBucket);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0).map_err(|_| bad)?);
            if len < 8 {
                return Err(bad);
            }
            let mut b = r.sub(len, bad).map_err(|_| bad)?;
            b.skip(2)?;
            let actions_len = usize::from(b.u16()?);
            b.skip(4)?;
            let mut acts = b.sub(actions_len, bad).map_err(|_| bad)?;
            let mut bucket = Bucket {
                actions: decode_actions(&mut acts)?,
                ..Bucket::default()
            };
            while !b.is_empty() {
                let ty = b.u16()?;
                let plen = usize::from(b.u16()?);
                if plen < 4 {
                    return Err(bad);
                }
                let mut p = b.sub(plen - 4, bad).map_err(|_| bad)?;
                match ty {
                    0 => bucket.weight = p.u16()?,
                    1 => bucket.watch_port = PortNo(p.u32()?),
                    2 => bucket.watch_group = p.u32()?,
                    _ => return Err(bad),
                }
            }
            out.push(bucket);
        }
        Ok(out)
    }

    fn encode_list15(buckets: &[Bucket], select: bool, w: &mut Writer<'_>) {
        for (id, b) in buckets.iter().enumerate() {
            let start = w.pos();
            w.u16(0);
            let alen_at = w.pos();
            w.u16(0);
            w.u32(id as u32);
            let astart = w.pos();
            encode_actions(&b.actions, w);
            w.patch_len(alen_at, astart, "bucket actions");
            if select || b.weight != 0 {
                w.u16(0);
                w.u16(8);
                w.u16(b.weight);
                w.zeros(2);
            }
            if b.watch_port != PortNo::ANY {
                w.u16(1);
                w.u16(8);
                w.u32(b.watch_port.0);
            }
            if b.watch_group != group_id::ANY {
                w.u16(2);
                w.u16(8);
                w.u32(b.watch_group);
            }
            w.patch_len(start, start, "bucket");
        }
    }

    pub(crate) fn encode_list(buckets: &[Bucket], w: &mut Writer<'_>) {
        for b in buckets {
            let start = w.pos();
            w.u16(0);
            w.u16(b.weight);
            w.u32(b.watch_port.0);
            w.u32(b.watch_group);
            w.zeros(4);
            encode_actions(&b.actions, w);
            w.patch_len(start, start, "bucket");
        }
    }
}

/// `OFPT_GROUP_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupMod {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<GroupMod> {
        let command = GroupModCommand::from_wire(r.u16()?)
            .ok_or(ErrorCode::GroupModFailed(GroupModFailedCode::BadCommand))?;
        let group_type = GroupType::from_wire(r.u8()?)
            .ok_or(ErrorCode::GroupModFailed(GroupModFailedCode::BadType))?;
        r.skip(1)?;
        let group_id = r.u32()?;
        if r.version() >= version::OF15 {
            // The bucket array's length and the bucket a command is about
            // (only whole-group commands are supported: every bucket);
            // group properties after the buckets are ignored.
            let bad = ErrorCode::GroupModFailed(GroupModFailedCode::BadBucket);
            let len = usize::from(r.u16()?);
            r.skip(2)?;
            let _command_bucket = r.u32()?;
            let mut b = r.sub(len, bad).map_err(|_| bad)?;
            r.rest();
            return Ok(GroupMod {
                command,
                group_type,
                group_id,
                buckets: Bucket::decode_list15(&mut b)?,
            });
        }
        Ok(GroupMod {
            command,
            group_type,
            group_id,
            buckets: Bucket::decode_list(r)?,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.command.to_wire());
        w.u8(self.group_type.to_wire());
        w.zeros(1);
        w.u32(self.group_id);
        if w.version() >= version::OF15 {
            let len_at = w.pos();
            w.u16(0);
            w.zeros(2);
            w.u32(BUCKET_ALL);
            let start = w.pos();
            Bucket::encode_list15(&self.buckets, self.group_type == GroupType::Select, w);
            w.patch_len(len_at, start, "buckets");
            return;
        }
        Bucket::encode_list(&self.buckets, w);
    }
}

/// `ofp_group_desc`: one group of an `OFPMP_GROUP_DESC` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupDesc {
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<GroupDesc>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0)?);
            if len < 8 {
                return Err(short);
            }
            let mut e = r.sub(len, short)?;
            e.skip(2)?;
            let group_type = GroupType::from_wire(e.u8()?)
                .ok_or(ErrorCode::GroupModFailed(GroupModFailedCode::BadType))?;
            e.skip(1)?;
            let group_id = e.u32()?;
            if e.version() >= version::OF15 {
                let blen = usize::from(e.u16()?);
                e.skip(6)?;
                let mut b = e.sub(blen, short)?;
                out.push(GroupDesc {
                    group_type,
                    group_id,
                    buckets: Bucket::decode_list15(&mut b)?,
                });
                continue;
            }
            out.push(GroupDesc {
                group_type,
                group_id,
                buckets: Bucket::decode_list(&mut e)?,
            });
        }
        Ok(out)
    }

    pub(crate) fn encode_list(list: &[GroupDesc], w: &mut Writer<'_>) {
        for g in list {
            let start = w.pos();
            w.u16(0);
            w.u8(g.group_type.to_wire());
            w.zeros(1);
            w.u32(g.group_id);
            if w.version() >= version::OF15 {
                let len_at = w.pos();
                w.u16(0);
                w.zeros(6);
                let bstart = w.pos();
                Bucket::encode_list15(&g.buckets, g.group_type == GroupType::Select, w);
                w.patch_len(len_at, bstart, "buckets");
            } else {
                Bucket::encode_list(&g.buckets, w);
            }
            w.patch_len(start, start, "group description");
        }
    }
}

/// Counters of one bucket (`ofp_bucket_counter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketCounter {
    pub packet_count: u64,
    pub byte_count: u64,
}

/// `ofp_group_stats`: one group of an `OFPMP_GROUP` reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStats {
    pub group_id: u32,
    /// Number of flows or groups that forward to this group.
    pub ref_count: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub bucket_stats: Vec<BucketCounter>,
}

const GROUP_STATS_LEN: usize = 40;

impl GroupStats {
    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Res<Vec<GroupStats>> {
        let short = r.short();
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.peek_u16(0)?);
            if len < GROUP_STATS_LEN || !(len - GROUP_STATS_LEN).is_multiple_of(16) {
                return Err(short);
            }
            let mut e = r.sub(len, short)?;
            e.skip(4)?;
            let group_id = e.u32()?;
            let ref_count = e.u32()?;
            e.skip(4)?;
            let mut g = GroupStats {
                group_id,
                ref_count,
                packet_count: e.u64()?,
                byte_count: e.u64()?,
                duration_sec: e.u32()?,
                duration_nsec: e.u32()?,
                bucket_stats: Vec::new(),
            };
            while !e.is_empty() {
                g.bucket_stats.push(BucketCounter {
                    packet_count: e.u64()?,
                    byte_count: e.u64()?,
                });
            }
            out.push(g);
        }
        Ok(out)
    }

    pub(crate) fn encode_list(list: &[GroupStats], w: &mut Writer<'_>) {
        for g in list {
            let start = w.pos();
            w.u16(0);
            w.zeros(2);
            w.u32(g.group_id);
            w.u32(g.ref_count);
            w.zeros(4);
            w.u64(g.packet_count);
            w.u64(g.byte_count);
            w.u32(g.duration_sec);
            w.u32(g.duration_nsec);
            for b in &g.bucket_stats {
                w.u64(b.packet_count);
                w.u64(b.byte_count);
            }
            w.patch_len(start, start, "group stats");
        }
    }
}

/// `ofp_group_features`: the body of an `OFPMP_GROUP_FEATURES` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupFeatures {
    /// Bit `1 << t` for each supported [`GroupType`] `t`.
    pub types: u32,
    /// [`group_capabilities`] bits.
    pub capabilities: u32,
    /// Maximum number of groups of each type, indexed by type.
    pub max_groups: [u32; 4],
    /// Bit `1 << a` for each supported action type `a`, per group type.
    pub actions: [u32; 4],
}

impl GroupFeatures {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<GroupFeatures> {
        let mut f = GroupFeatures {
            types: r.u32()?,
            capabilities: r.u32()?,
            ..GroupFeatures::default()
        };
        for m in &mut f.max_groups {
            *m = r.u32()?;
        }
        for a in &mut f.actions {
            *a = r.u32()?;
        }
        r.finish()?;
        Ok(f)
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.types);
        w.u32(self.capabilities);
        for v in self.max_groups.iter().chain(&self.actions) {
            w.u32(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::BadRequestCode;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    #[test]
    fn group_mod_fixture() {
        let g = GroupMod {
            command: GroupModCommand::Add,
            group_type: GroupType::Select,
            group_id: 1,
            buckets: vec![
                Bucket {
                    weight: 10,
                    actions: vec![Action::output(PortNo(1))],
                    ..Bucket::default()
                },
                Bucket {
                    weight: 20,
                    ..Bucket::default()
                },
            ],
        };
        let mut v = Vec::new();
        g.encode(&mut Writer::new(&mut v));
        let expect: &[u8] = &[
            0, 0, 1, 0, 0, 0, 0, 1, // command, type, pad, group_id
            0, 32, 0, 10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0,
            0, // bucket 1
            0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, // output:1
            0, 16, 0, 20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0,
            0, // bucket 2
        ];
        assert_eq!(v, expect);
        assert_eq!(GroupMod::decode(&mut Reader::new(&v, SHORT)).unwrap(), g);
    }

    #[test]
    fn group_mod_errors() {
        let e = |c| Err(ErrorCode::GroupModFailed(c));
        let dec = |b: &[u8]| GroupMod::decode(&mut Reader::new(b, SHORT));
        assert_eq!(
            dec(&[0, 3, 0, 0, 0, 0, 0, 1]),
            e(GroupModFailedCode::BadCommand)
        );
        assert_eq!(
            dec(&[0, 0, 4, 0, 0, 0, 0, 1]),
            e(GroupModFailedCode::BadType)
        );
        assert_eq!(dec(&[0, 0, 0, 0, 0, 0, 0]), Err(SHORT));
        let mut short_bucket = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 0];
        assert_eq!(dec(&short_bucket), e(GroupModFailedCode::BadBucket));
        short_bucket[9] = 16;
        assert_eq!(dec(&short_bucket), e(GroupModFailedCode::BadBucket));
    }

    #[test]
    fn stats_round_trip() {
        let s = vec![GroupStats {
            group_id: 3,
            ref_count: 2,
            packet_count: 5,
            byte_count: 500,
            duration_sec: 1,
            duration_nsec: 2,
            bucket_stats: vec![BucketCounter {
                packet_count: 5,
                byte_count: 500,
            }],
        }];
        let mut v = Vec::new();
        GroupStats::encode_list(&s, &mut Writer::new(&mut v));
        assert_eq!(v.len(), 56);
        assert_eq!(
            GroupStats::decode_list(&mut Reader::new(&v, SHORT)).unwrap(),
            s
        );
        v[1] = 48;
        assert!(GroupStats::decode_list(&mut Reader::new(&v, SHORT)).is_err());
    }
}
