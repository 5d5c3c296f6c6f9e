//! Nicira extensions in the pipeline (a child of `pipeline`): registers,
//! `resubmit`, register loads and moves, output to a register's port,
//! notes.
//!
//! Registers are pipeline state, like the metadata, but not in the key:
//! sixteen `u32`s that start at 0 for every packet and live in the
//! executor while a plan is compiled. A rule's register fields are checked
//! beside the classifier's key lookup ([`regs_match`], given to
//! `Classifier::lookup_with`), so the key, the caches and a cache hit are
//! as they were. This is exact for the megaflow cache because a register's
//! value is a function of what the lookups before it read: a constant that
//! a matched rule loaded (the rule was chosen on key bits already in the
//! megaflow's mask), or key bits a `move` or `output:reg` copied (those
//! bits are unwildcarded when read). So a packet that agrees with another
//! under the mask gets the same registers at every lookup, and the same
//! plan; resubmits and loads never need a register in the key.

use crate::openflow::ErrorCode;
use crate::openflow::PortNo;
use crate::openflow::error::BadActionCode;
use crate::openflow::flow::packet_in_reason;
use crate::openflow::nicira::{FieldRef, N_REGS, NxAction, Register};
use crate::openflow::oxm::Masked;
use crate::wire::MacAddr;

use super::*;
use crate::module::flow::key;

/// How deep resubmits may nest, and how many one packet may do in all
/// (Open vSwitch's limits); past either the packet is dropped
/// (`resubmit_drops`).
pub(crate) const MAX_RESUBMIT_DEPTH: u8 = 64;
pub(crate) const MAX_RESUBMITS: u16 = 4096;

/// `OFPP_IN_PORT` in a resubmit's 16-bit port: keep the packet's own.
const RESUBMIT_OWN_PORT: u16 = 0xfff8;

/// Whether the registers satisfy a rule's register fields (the tunnel
/// addresses among them are key bits, matched by the classifier).
#[inline]
pub(crate) fn regs_match(e: &FlowEntry, regs: &[u32; N_REGS]) -> bool {
    e.match_
        .registers()
        .iter()
        .filter(|r| !r.reg.is_tunnel())
        .all(|r| r.reg.get(regs) & r.mask_or_all() == r.value)
}

/// Builds the set-field that writes a whole value of a header field.
type SetWhole = fn(u64) -> OxmField;

/// A header field that loads and moves may write, NXM or OXM: its key
/// bits and the set-field that writes a whole value of it.
fn packet_field(f: FieldRef) -> Option<(Bits, SetWhole)> {
    use OxmField as F;
    fn mac(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
    fn ip(v: u64) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(v as u32)
    }
    Some(match f.0 {
        0x0000_0206 | 0x8000_0606 => (ETH_DST, |v| F::EthDst(Masked::exact(mac(v)))),
        0x0000_0406 | 0x8000_0806 => (ETH_SRC, |v| F::EthSrc(Masked::exact(mac(v)))),
        0x0000_0e04 | 0x8000_1604 => (IPV4_SRC, |v| F::Ipv4Src(Masked::exact(ip(v)))),
        0x0000_1004 | 0x8000_1804 => (IPV4_DST, |v| F::Ipv4Dst(Masked::exact(ip(v)))),
        0x0000_1202 | 0x8000_1a02 => (TP_SRC, |v| F::TcpSrc(v as u16)),
        0x0000_1402 | 0x8000_1c02 => (TP_DST, |v| F::TcpDst(v as u16)),
        0x0000_1602 | 0x8000_1e02 => (TP_SRC, |v| F::UdpSrc(v as u16)),
        0x0000_1802 | 0x8000_2002 => (TP_DST, |v| F::UdpDst(v as u16)),
        0x0000_1e02 | 0x8000_2a02 => (TP_SRC, |v| F::ArpOp(v as u16)),
        0x0000_2004 | 0x8000_2c04 => (IPV4_SRC, |v| F::ArpSpa(Masked::exact(ip(v)))),
        0x0000_2204 | 0x8000_2e04 => (IPV4_DST, |v| F::ArpTpa(Masked::exact(ip(v)))),
        0x0001_2206 | 0x8000_3006 => (ARP_SHA, |v| F::ArpSha(Masked::exact(mac(v)))),
        0x0001_2406 | 0x8000_3206 => (ARP_THA, |v| F::ArpTha(Masked::exact(mac(v)))),
        _ => return None,
    })
}

/// The key bits a field reference reads, for fields a `move`,
/// `output:reg` or `learn` may read from the packet (registers aside).
pub(super) fn key_bits(f: FieldRef) -> Option<Bits> {
    if let Some(b) = packet_field(f).map(|(b, _)| b).or_else(|| tunnel_bits(f)) {
        return Some(b);
    }
    Some(match f.0 {
        // NXM_OF_IN_PORT (16 bits) and OXM_OF_IN_PORT (32).
        0x0000_0002 => Bits {
            word: IN_PORT.word,
            shift: IN_PORT.shift,
            width: 16,
        },
        0x8000_0004 => IN_PORT,
        0x8000_0408 => METADATA,
        0x0000_0602 | 0x8000_0a02 => ETH_TYPE,
        // NXM_OF_VLAN_TCI: the key keeps OpenFlow's view of the tag, which
        // is NXM's (PCP, CFI as "present", VID).
        0x0000_0802 => VLAN_TCI,
        0x0000_0c01 | 0x8000_1401 => NW_PROTO,
        // IPv6 flow label; the top MPLS label stack entry's fields.
        0x0001_3604 | 0x8000_3804 => FLABEL,
        0x8000_4404 => MPLS_LABEL,
        0x8000_4601 => MPLS_TC,
        0x8000_4801 => MPLS_BOS,
        // ICMP and ICMPv6 type and code share the port bits (low 8).
        0x0000_1a01 | 0x8000_2601 | 0x0001_2a01 | 0x8000_3a01 => Bits {
            word: TP_SRC.word,
            shift: TP_SRC.shift,
            width: 8,
        },
        0x0000_1c01 | 0x8000_2801 | 0x0001_2c01 | 0x8000_3c01 => Bits {
            word: TP_DST.word,
            shift: TP_DST.shift,
            width: 8,
        },
        0x8000_2202 => TP_SRC,
        0x8000_2402 => TP_DST,
        // ND's link-layer addresses.
        0x0001_3006 | 0x8000_4006 | 0x0001_3206 | 0x8000_4206 => ND_LL,
        _ => return None,
    })
}

/// The two key words (high, low) of a 128-bit field a `learn` may read:
/// IPv6 source, destination and ND target.
pub(super) fn wide_bits(f: FieldRef) -> Option<(Bits, Bits)> {
    Some(match f.0 {
        0x0001_2610 | 0x8000_3410 => (NW_SRC_HI, NW_SRC),
        0x0001_2810 | 0x8000_3610 => (NW_DST_HI, NW_DST),
        0x0001_2e10 | 0x8000_3e10 => (ND_HI, ND_LO),
        _ => return None,
    })
}

/// The tunnel fields (`tun_id`, NXM and OXM; `tun_src`, `tun_dst`): key
/// bits a load or move writes as tunnel metadata (the codec names the
/// addresses as registers, [`Register::TunSrc`]).
fn tunnel_bits(f: FieldRef) -> Option<Bits> {
    match f.0 {
        0x0001_2008 | 0x8000_4c08 => Some(TUN_ID),
        0x0001_3e04 => Some(TUN_SRC),
        0x0001_4004 => Some(TUN_DST),
        _ => None,
    }
}

/// `tun_ipv6_dst` (`Some(true)`) or `tun_ipv6_src` (`Some(false)`), named
/// whole (128 bits, no mask) by a load or move.
fn tun_ipv6_field(f: FieldRef) -> Option<bool> {
    crate::openflow::nx_tun6::names(f.0).filter(|_| f.0 & 0x1ff == 16)
}

/// Where bits `ofs..` of a field read from the key lie: its key bits and
/// the offset in them (an IPv6 tunnel address's half for `ofs`; a move
/// or load never crosses its halves, see [`chunks`]).
fn key_place(f: FieldRef, ofs: u16) -> Option<(Bits, u16)> {
    match tun_ipv6_field(f) {
        Some(dst) => Some((key::tun_ipv6_half(dst, ofs >= 64), ofs % 64)),
        None => key_bits(f).map(|b| (b, ofs)),
    }
}

/// Splits `n` bits from `a` (in one field) and `b` (in another) into
/// pieces of at most 64 bits that cross no 64-bit boundary of either:
/// (offset from the start, bits). A field of 64 bits or fewer is one
/// piece.
fn chunks(a: u16, b: u16, n: u16) -> impl Iterator<Item = (u16, u16)> {
    let mut done = 0u16;
    std::iter::from_fn(move || {
        if done >= n {
            return None;
        }
        let k = (n - done)
            .min(64 - (a + done) % 64)
            .min(64 - (b + done) % 64);
        let piece = (done, k);
        done += k;
        Some(piece)
    })
}

/// A register that really is one (not tunnel metadata).
fn pipeline_register(f: FieldRef) -> Option<Register> {
    f.register().filter(|r| !r.is_tunnel())
}

/// Whether a load or move may write the field: a register (not
/// `conj_id`), the metadata, or a header field of [`packet_field`].
pub(super) fn writable(f: FieldRef) -> bool {
    f.tun_metadata().is_some()
        || f.register().is_some_and(|r| r != Register::ConjId)
        || tunnel_bits(f).is_some()
        || tun_ipv6_field(f).is_some()
        || f.0 == 0x8000_0408
        || packet_field(f).is_some()
}

/// Whether a field may be read: a register or key bits.
pub(super) fn readable(f: FieldRef) -> bool {
    f.tun_metadata().is_some()
        || f.register().is_some()
        || key_bits(f).is_some()
        || tun_ipv6_field(f).is_some()
}

/// `n` one bits.
fn ones(n: u16) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Shifts that give 0 past the word instead of overflowing (a field
/// reference's offset is checked against its field, not against 64).
fn shl(v: u64, s: u16) -> u64 {
    v.checked_shl(u32::from(s)).unwrap_or(0)
}

fn shr(v: u64, s: u16) -> u64 {
    v.checked_shr(u32::from(s)).unwrap_or(0)
}

impl Pipeline {
    /// Checks one Nicira action of a flow or bucket: what it writes must be
    /// a register, the metadata or a header field of [`packet_field`],
    /// what it reads one of those or a field this pipeline keeps (the
    /// codec checked the bit ranges).
    pub(crate) fn check_nx(&self, a: &NxAction) -> Result<(), ErrorCode> {
        self.check_tun_metadata(a)?;
        let bad = Err(ErrorCode::BadAction(BadActionCode::BadArgument));
        match *a {
            NxAction::SetReg {
                reg: Register::ConjId,
                ..
            } => Err(ErrorCode::BadAction(BadActionCode::BadSetArgument)),
            NxAction::RegLoad { dst, .. } if !writable(dst) => bad,
            NxAction::Learn(ref l) => self.check_learn(l, None),
            NxAction::RegMove { src, dst, .. } if !writable(dst) || !readable(src) => bad,
            NxAction::OutputReg { src, .. } if !readable(src) => bad,
            _ => Ok(()),
        }
    }
}

impl Exec<'_> {
    /// Runs one Nicira action; `depth` is the group depth.
    pub(super) fn nx(&mut self, a: &NxAction, depth: usize) {
        match *a {
            NxAction::Resubmit { in_port, table, .. } => self.resubmit(in_port, table, depth),
            NxAction::Learn(ref l) => self.learn(l),
            NxAction::FinTimeout { idle, hard } => self.fin_timeout(idle, hard),
            // Conjunctive entries are never run (`conj`): nothing to do.
            NxAction::Note { .. } | NxAction::Conjunction(_) => {}
            NxAction::SetReg {
                reg: reg @ (Register::TunSrc | Register::TunDst | Register::TunMetadata { .. }),
                value,
            } => self.write_bits(FieldRef::reg(reg), 0, reg.bits(), value),
            NxAction::SetTunIpv6 { dst, addr } => {
                let v = addr.to_bits();
                for (hi, word) in [(true, (v >> 64) as u64), (false, v as u64)] {
                    key::tun_ipv6_half(dst, hi).set(&mut self.key, word);
                    self.ops.push(Op::SetTunIpv6 { dst, hi, word });
                }
            }
            NxAction::SetReg { reg, value } => reg.set(&mut self.regs, value),
            NxAction::SetTunnel { tun_id, .. } => {
                self.set_field(&OxmField::TunnelId(Masked::exact(tun_id)));
            }
            NxAction::RegLoad {
                dst,
                ofs,
                n_bits,
                value,
            } => {
                for (at, k) in chunks(ofs, ofs, n_bits) {
                    self.write_bits(dst, ofs + at, k, shr(value, at) & ones(k));
                }
            }
            NxAction::RegMove {
                src,
                dst,
                src_ofs,
                dst_ofs,
                n_bits,
            } => {
                for (at, k) in chunks(src_ofs, dst_ofs, n_bits) {
                    let v = self.read_bits(src, src_ofs + at, k);
                    self.write_bits(dst, dst_ofs + at, k, v);
                }
            }
            NxAction::OutputReg {
                src,
                ofs,
                n_bits,
                max_len,
                ..
            } => {
                let port = self.read_bits(src, ofs, n_bits);
                // A 16-bit value names an OpenFlow 1.0 port: its reserved
                // ports are the high ones of 1.3.
                let port = if n_bits <= 16 && port >= 0xff00 {
                    0xffff_0000 | port as u32
                } else {
                    port as u32
                };
                self.output(PortNo(port), max_len, depth);
            }
        }
    }

    /// Reads `n` bits of a field from `ofs`; key bits read are unwildcarded.
    pub(super) fn read_bits(&mut self, f: FieldRef, ofs: u16, n: u16) -> u64 {
        if let Some(idx) = f.tun_metadata() {
            return self.read_tun_metadata(idx, ofs, n);
        }
        if let Some(r) = pipeline_register(f) {
            return shr(r.get(&self.regs), ofs) & ones(n);
        }
        let Some((b, ofs)) = key_place(f, ofs) else {
            return 0;
        };
        let m = shl(ones(n), ofs) & (b.mask() >> b.shift);
        self.mask.0[b.word] |= m << b.shift;
        shr(b.get(&self.key) & m, ofs)
    }

    /// Writes `n` bits of `v` into a register, the metadata or a header
    /// field at `ofs`. A header field is rewritten whole by a set-field
    /// (none if the packet lacks that header); the bits kept from a
    /// partial write are read, so unwildcarded.
    pub(super) fn write_bits(&mut self, f: FieldRef, ofs: u16, n: u16, v: u64) {
        if let Some(idx) = f.tun_metadata() {
            return self.write_tun_metadata(idx, ofs, n, v);
        }
        let m = shl(ones(n), ofs);
        if let Some((b, make)) = packet_field(f) {
            let full = b.mask() >> b.shift;
            let kept = full & !m;
            let old = if kept == 0 {
                0
            } else {
                self.mask.0[b.word] |= kept << b.shift;
                b.get(&self.key) & kept
            };
            self.set_field(&make(old | (shl(v, ofs) & m & full)));
        } else if let Some(b) = tunnel_bits(f) {
            // Tunnel metadata: the packet's key and an op that writes it
            // (the bits a partial write keeps were read).
            let full = b.mask() >> b.shift;
            let kept = full & !m;
            if kept != 0 {
                self.mask.0[b.word] |= kept << b.shift;
            }
            let new = (b.get(&self.key) & kept) | (shl(v, ofs) & m & full);
            b.set(&mut self.key, new);
            self.ops.push(match f.register() {
                Some(Register::TunSrc) => Op::SetTunSrc(std::net::Ipv4Addr::from(new as u32)),
                Some(Register::TunDst) => Op::SetTunDst(std::net::Ipv4Addr::from(new as u32)),
                _ => Op::Set(OxmField::TunnelId(Masked::exact(new))),
            });
        } else if let Some(dst) = tun_ipv6_field(f) {
            // One half of an IPv6 tunnel address (a piece of at most 64
            // bits, see `chunks`), and an op that writes that half.
            let hi = ofs >= 64;
            let (b, at) = (key::tun_ipv6_half(dst, hi), ofs % 64);
            let m = shl(ones(n), at);
            let kept = !m;
            if kept != 0 {
                self.mask.0[b.word] |= kept;
            }
            let new = (b.get(&self.key) & kept) | (shl(v, at) & m);
            b.set(&mut self.key, new);
            self.ops.push(Op::SetTunIpv6 { dst, hi, word: new });
        } else if let Some(r) = f.register() {
            let old = r.get(&self.regs);
            r.set(&mut self.regs, (old & !m) | (shl(v, ofs) & m));
        } else if f.0 == 0x8000_0408 {
            let old = METADATA.get(&self.key);
            METADATA.set(&mut self.key, (old & !m) | (shl(v, ofs) & m));
        }
    }

    /// Looks `table` (this one if `None`) up with the packet as it is now
    /// (registers and metadata included), from `in_port` if given, runs
    /// the apply-actions and metadata write of the entry found, and comes
    /// back. The entry's other instructions do not apply (Open vSwitch
    /// runs only its actions).
    fn resubmit(&mut self, in_port: u16, table: Option<u8>, depth: usize) {
        self.resubmits += 1;
        if self.nest >= MAX_RESUBMIT_DEPTH || self.resubmits > MAX_RESUBMITS {
            // Open vSwitch drops a packet whose translation goes too deep.
            self.outs.clear();
            self.stopped = true;
            self.events |= event::RESUBMIT_LIMIT;
            return;
        }
        let t = table.unwrap_or(self.entry.table_id);
        let own = IN_PORT.get(&self.key);
        if in_port != RESUBMIT_OWN_PORT {
            let p = if in_port >= 0xff00 {
                0xffff_0000 | u32::from(in_port)
            } else {
                u32::from(in_port)
            };
            IN_PORT.set(&mut self.key, p.into());
        }
        let hit = self.lookup(t);
        self.tables.push((t, hit.is_some()));
        if let Some(rule) = hit {
            let e = &rule.data;
            self.flows.push(e.counters.clone());
            let caller = self.entry;
            self.entry = EntryInfo {
                table_id: t,
                cookie: e.cookie,
                reason: packet_in_reason::ACTION,
                flow: Some(self.flows.len() - 1),
            };
            self.nest += 1;
            if let Some(a) = &e.prog.apply {
                self.exec_list(a, depth);
            }
            self.nest -= 1;
            if let Some((v, m)) = e.prog.metadata {
                let md = METADATA.get(&self.key);
                METADATA.set(&mut self.key, (md & !m) | (v & m));
            }
            self.entry = caller;
        }
        IN_PORT.set(&mut self.key, own);
    }
}

/// Whether two matches have the same register fields (in any order): part
/// of a flow's identity for ADD and the strict commands.
pub(crate) fn same_regs(a: &Match, b: &Match) -> bool {
    let (a, b) = (a.registers(), b.registers());
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Whether a rule's register fields are at least as specific as a
/// request's (what a non-strict modify or delete selects).
pub(crate) fn regs_cover(rule: &Match, req: &Match) -> bool {
    req.registers().iter().all(|q| {
        rule.registers().iter().any(|r| {
            r.reg == q.reg
                && r.mask_or_all() & q.mask_or_all() == q.mask_or_all()
                && r.value & q.mask_or_all() == q.value
        })
    })
}

/// Nicira actions run only where they are applied: the action set has no
/// place for them (`OFPBAC_UNSUPPORTED_ORDER` in write-actions).
pub(crate) fn no_nx_in_write_actions(insts: &[Instruction]) -> Result<(), ErrorCode> {
    let in_set = insts.iter().any(|i| {
        matches!(i, Instruction::WriteActions(a) if a.iter().any(|x| matches!(x, Action::Nx(_))))
    });
    if in_set {
        Err(ErrorCode::BadAction(BadActionCode::UnsupportedOrder))
    } else {
        Ok(())
    }
}
