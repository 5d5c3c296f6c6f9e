//! Benchmark presets of the `flow` module ([`FlowConfig`]): MAC
//! forwarding entries (`l2`), a chain of register loads and resubmits in
//! front of them (`resubmits`), a table that learns the reply flow of
//! every UDP packet in front of them (`learn`, with `learn_churn` deleting
//! learned flows every second for traffic to learn again), NORMAL
//! (`normal`), and entries no benchmark traffic matches (`filler`).

use std::net::Ipv4Addr;

use super::*;

impl FlowModule {
    /// Stage `k` of the `resubmits` preset: table k matches reg0=k (all
    /// packets in table 0), loads k+1 into reg0 and resubmits to k+1.
    fn install_resubmit_stage(&self, k: u8, _last: u8) {
        let regs = if k == 0 {
            Vec::new()
        } else {
            vec![NxMatchField {
                reg: Register::Reg(0),
                value: u64::from(k),
                mask: None,
            }]
        };
        let fm = FlowMod {
            table_id: k,
            priority: 1,
            match_: Match::new().with_registers(regs).unwrap_or_default(),
            instructions: vec![Instruction::ApplyActions(vec![
                Action::Nx(NxAction::SetReg {
                    reg: Register::Reg(0),
                    value: u64::from(k) + 1,
                }),
                Action::Nx(NxAction::Resubmit {
                    in_port: 0xfff8,
                    table: Some(k + 1),
                    with_table: true,
                }),
            ])],
            ..FlowMod::default()
        };
        let _ = self.flow_mod(&fm, 0);
    }

    /// Table 0 of the `learn` preset (see [`FlowConfig::learn`]): the
    /// learn, or (`learn=2`) moves that read the same bits.
    fn install_learn_preset(&self) {
        use crate::openflow::nicira::FieldRef as F;
        use crate::openflow::nicira::{Learn, LearnSpec};
        let learn = Learn {
            priority: 200,
            cookie: LEARN_PRESET_COOKIE,
            table_id: 1,
            specs: vec![
                LearnSpec::match_value(16, 0x800, F(0x0000_0602)),
                LearnSpec::match_value(8, 17, F(0x0000_0c01)),
                LearnSpec::match_field(48, F(0x0000_0406), F(0x0000_0206)),
                LearnSpec::match_field(32, F(0x0000_0e04), F(0x0000_1004)),
                LearnSpec::match_field(16, F(0x0000_1602), F(0x0000_1802)),
                LearnSpec::output(16, F(0x0000_0002)),
            ],
            ..Learn::default()
        };
        let fm = FlowMod {
            priority: 1,
            match_: Match::from_fields(vec![OxmField::EthType(0x800), OxmField::IpProto(17)])
                .unwrap_or_default(),
            instructions: vec![Instruction::ApplyActions(if self.cfg.learn == 1 {
                vec![
                    Action::Nx(NxAction::Learn(Box::new(learn))),
                    Action::Nx(NxAction::resubmit_table(1)),
                ]
            } else {
                // learn=2, the baseline: the same reads, into registers.
                let mv = |src: u32, src_ofs: u16, n_bits: u16, reg: u8| {
                    Action::Nx(NxAction::RegMove {
                        src: crate::openflow::nicira::FieldRef(src),
                        dst: crate::openflow::nicira::FieldRef::reg(Register::Reg(reg)),
                        src_ofs,
                        dst_ofs: 0,
                        n_bits,
                    })
                };
                vec![
                    mv(0x0000_0406, 0, 32, 0),
                    mv(0x0000_0406, 32, 16, 1),
                    mv(0x0000_0e04, 0, 32, 2),
                    mv(0x0000_1602, 0, 16, 3),
                    mv(0x0000_0002, 0, 16, 4),
                    Action::Nx(NxAction::resubmit_table(1)),
                ]
            })],
            ..FlowMod::default()
        };
        let _ = self.flow_mod(&fm, 0);
        // Anything else goes straight to the forwarding table.
        let fm = FlowMod {
            priority: 0,
            instructions: vec![Instruction::ApplyActions(vec![Action::Nx(
                NxAction::resubmit_table(1),
            )])],
            ..FlowMod::default()
        };
        let _ = self.flow_mod(&fm, 0);
    }

    /// The `learn_churn` preset: deletes that many learned entries from
    /// table 1 (see [`FlowConfig::learn_churn`]).
    pub(super) fn churn_learned(&self) {
        let mut left = self.cfg.learn_churn;
        if left == 0 {
            return;
        }
        let mut p = self.write();
        let Some(t) = p.tables.get_mut(1) else { return };
        let gone = t.remove_where(|r| {
            let take = left > 0 && r.data.cookie == LEARN_PRESET_COOKIE;
            left -= u32::from(take);
            take
        });
        p.flow_count -= gone.len();
        p.forget(&[(1, gone)]);
    }

    pub(super) fn install_presets(&self) {
        let add = |priority, fields: Vec<OxmField>, port: PortNo| {
            let fm = FlowMod {
                priority,
                match_: Match::from_fields(fields).unwrap_or_default(),
                instructions: vec![Instruction::ApplyActions(vec![Action::output(port)])],
                ..FlowMod::default()
            };
            let _ = self.flow_mod(&fm, 0);
        };
        if self.cfg.l2 > 0 {
            // With resubmits=N, the forwarding entries sit in table N-1,
            // behind a chain of register loads and resubmits; with learn,
            // in table 1 behind table 0's learn.
            let last = if self.cfg.learn > 0 {
                self.install_learn_preset();
                1
            } else {
                self.cfg.resubmits.saturating_sub(1)
            };
            let chain = self.cfg.learn == 0;
            for k in 0..last {
                if chain {
                    self.install_resubmit_stage(k, last);
                }
            }
            let gate = |last: u8| -> Vec<NxMatchField> {
                if last == 0 || !chain {
                    Vec::new()
                } else {
                    vec![NxMatchField {
                        reg: Register::Reg(0),
                        value: u64::from(last),
                        mask: None,
                    }]
                }
            };
            let add_in = |fields: Vec<OxmField>, port: PortNo| {
                let fm = FlowMod {
                    table_id: last,
                    priority: 100,
                    match_: Match::from_fields(fields)
                        .and_then(|m| m.with_registers(gate(last)))
                        .unwrap_or_default(),
                    instructions: vec![Instruction::ApplyActions(vec![Action::output(port)])],
                    ..FlowMod::default()
                };
                let _ = self.flow_mod(&fm, 0);
            };
            for p in 1..=u32::from(self.cfg.l2) {
                let dst = OxmField::EthDst(Masked::exact(MacAddr::local(p)));
                add_in(vec![dst], PortNo(p));
            }
            let bcast = OxmField::EthDst(Masked::exact(MacAddr::BROADCAST));
            add_in(vec![bcast], PortNo::FLOOD);
        }
        if self.cfg.normal {
            add(0, vec![], PortNo::NORMAL);
        }
        for i in 0..self.cfg.filler as u32 {
            // 172.16.0.0/12 with prefixes of /16 to /32, with and without
            // transport ports, at priorities around the l2 entries'.
            let plen = 16 + i % 17;
            let addr = 0xac10_0000 | (i.wrapping_mul(2_654_435_761) & 0x000f_ffff);
            let mask = u32::MAX << (32 - plen);
            let mut f = vec![
                OxmField::EthType(0x0800),
                OxmField::Ipv4Dst(Masked::new(
                    Ipv4Addr::from(addr & mask),
                    Ipv4Addr::from(mask),
                )),
            ];
            match (i / 17) % 3 {
                1 => f.extend([OxmField::IpProto(6), OxmField::TcpDst((i % 60000) as u16)]),
                2 => f.extend([OxmField::IpProto(17), OxmField::UdpSrc((i % 60000) as u16)]),
                _ => {}
            }
            add(50 + (i % 100) as u16, f, PortNo(1 + i % 8));
        }
    }
}
