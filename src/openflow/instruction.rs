//! Instructions (`ofp_instruction_*`) of a flow entry.
//!
//! Decoding checks each instruction's length and type, the actions inside
//! WRITE_ACTIONS and APPLY_ACTIONS, and that no type appears twice (OpenFlow
//! 1.3 allows one of each; it names no code for that, so the error is the
//! ONF extension `OFPBIC_DUP_INST`, as Open vSwitch sends).
//! Experimenter instructions are rejected with `OFPBIC_BAD_EXPERIMENTER`.
//!
//! OpenFlow 1.5 moved the meter from an instruction to an action
//! (`OFPAT_METER`): in 1.5 a meter action at the head of the apply-actions
//! reads as the model's [`Instruction::Meter`], and that instruction is
//! written back as such an action (elsewhere in a list it is refused as an
//! unknown action: the model meters before any action runs).

use super::action::{Action, decode_actions, encode_actions};
use super::bytes::{Reader, Res, Writer};
use super::error::{BadActionCode, BadInstructionCode, ErrorCode};

wire_enum! {
    /// `ofp_instruction_type`.
    pub enum InstructionType: u16 {
        GotoTable = 1 => "OFPIT_GOTO_TABLE",
        WriteMetadata = 2 => "OFPIT_WRITE_METADATA",
        WriteActions = 3 => "OFPIT_WRITE_ACTIONS",
        ApplyActions = 4 => "OFPIT_APPLY_ACTIONS",
        ClearActions = 5 => "OFPIT_CLEAR_ACTIONS",
        Meter = 6 => "OFPIT_METER",
        Experimenter = 0xffff => "OFPIT_EXPERIMENTER",
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    GotoTable(u8),
    /// Metadata bits to write where `mask` has 1-bits.
    WriteMetadata {
        metadata: u64,
        mask: u64,
    },
    /// Merge into the action set.
    WriteActions(Vec<Action>),
    /// Apply now, in order.
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
}

const fn bad(c: BadInstructionCode) -> ErrorCode {
    ErrorCode::BadInstruction(c)
}

impl Instruction {
    pub fn instruction_type(&self) -> InstructionType {
        match self {
            Instruction::GotoTable(_) => InstructionType::GotoTable,
            Instruction::WriteMetadata { .. } => InstructionType::WriteMetadata,
            Instruction::WriteActions(_) => InstructionType::WriteActions,
            Instruction::ApplyActions(_) => InstructionType::ApplyActions,
            Instruction::ClearActions => InstructionType::ClearActions,
            Instruction::Meter(_) => InstructionType::Meter,
        }
    }

    /// The actions of WRITE_ACTIONS or APPLY_ACTIONS.
    pub fn actions(&self) -> Option<&[Action]> {
        match self {
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => Some(a),
            _ => None,
        }
    }

    /// Reads one instruction; `r` holds exactly its bytes after the header.
    fn decode_body(ty: InstructionType, len: usize, r: &mut Reader<'_>) -> Res<Instruction> {
        let fixed = match ty {
            InstructionType::GotoTable | InstructionType::ClearActions | InstructionType::Meter => {
                Some(8)
            }
            InstructionType::WriteMetadata => Some(24),
            _ => None,
        };
        if fixed.is_some_and(|n| n != len) {
            return Err(bad(BadInstructionCode::BadLen));
        }
        Ok(match ty {
            InstructionType::GotoTable => {
                let t = r.u8()?;
                r.skip(3)?;
                Instruction::GotoTable(t)
            }
            InstructionType::WriteMetadata => {
                r.skip(4)?;
                Instruction::WriteMetadata {
                    metadata: r.u64()?,
                    mask: r.u64()?,
                }
            }
            InstructionType::WriteActions | InstructionType::ApplyActions => {
                r.skip(4)?;
                let actions = decode_actions(r)?;
                if ty == InstructionType::WriteActions {
                    Instruction::WriteActions(actions)
                } else {
                    Instruction::ApplyActions(actions)
                }
            }
            InstructionType::ClearActions => {
                r.skip(4)?;
                Instruction::ClearActions
            }
            InstructionType::Meter => Instruction::Meter(r.u32()?),
            InstructionType::Experimenter => {
                return Err(bad(BadInstructionCode::BadExperimenter));
            }
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        w.u16(self.instruction_type().to_wire());
        w.u16(0);
        match self {
            Instruction::GotoTable(t) => {
                w.u8(*t);
                w.zeros(3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                w.zeros(4);
                w.u64(*metadata);
                w.u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                w.zeros(4);
                encode_actions(a, w);
            }
            Instruction::ClearActions => w.zeros(4),
            Instruction::Meter(m) => w.u32(*m),
        }
        w.patch_len(start + 2, start, "instruction");
    }
}

/// Reads the instructions filling all of `r`.
pub(crate) fn decode_instructions(r: &mut Reader<'_>) -> Res<Vec<Instruction>> {
    let short = bad(BadInstructionCode::BadLen);
    let mut out: Vec<Instruction> = Vec::new();
    while !r.is_empty() {
        let ty = r.peek_u16(0).map_err(|_| short)?;
        let len = usize::from(r.peek_u16(2).map_err(|_| short)?);
        if len < 8 || !len.is_multiple_of(8) {
            return Err(short);
        }
        let mut body = r.sub(len, short).map_err(|_| short)?;
        body.skip(4)?;
        let ty = InstructionType::from_wire(ty).ok_or(bad(BadInstructionCode::UnknownInst))?;
        let insts = if ty == InstructionType::ApplyActions && body.version() >= OF15 {
            apply_actions_15(&mut body)?
        } else {
            vec![Instruction::decode_body(ty, len, &mut body)?]
        };
        body.finish()?;
        for inst in insts {
            if out
                .iter()
                .any(|i| i.instruction_type() == inst.instruction_type())
            {
                return Err(ErrorCode::DUP_INST);
            }
            out.push(inst);
        }
    }
    Ok(out)
}

/// OpenFlow 1.5's wire version, where a meter is an action.
const OF15: u8 = 0x06;

/// `OFPAT_METER` (OpenFlow 1.5): meter the packet, as 1.3's meter
/// instruction did.
pub const OFPAT_METER: u16 = 29;

/// A 1.5 apply-actions, `r` after its header: `OFPAT_METER` at its head is
/// the model's meter instruction (which meters before any action runs); a
/// meter later in the list would meter after earlier actions, which the
/// model cannot say (refused as an unknown action). An apply-actions
/// holding only the meter is that instruction alone.
fn apply_actions_15(r: &mut Reader<'_>) -> Res<Vec<Instruction>> {
    r.skip(4)?;
    let mut out = Vec::new();
    if r.peek_u16(0).ok() == Some(OFPAT_METER) {
        if r.peek_u16(2)? != 8 {
            return Err(ErrorCode::BadAction(BadActionCode::BadLen));
        }
        r.skip(4)?;
        out.push(Instruction::Meter(r.u32()?));
    }
    let actions = decode_actions(r)?;
    if !actions.is_empty() || out.is_empty() {
        out.push(Instruction::ApplyActions(actions));
    }
    Ok(out)
}

pub(crate) fn encode_instructions(insts: &[Instruction], w: &mut Writer<'_>) {
    let meter = insts.iter().find_map(|i| match i {
        Instruction::Meter(m) => Some(*m),
        _ => None,
    });
    let Some(meter) = meter.filter(|_| w.version() >= OF15) else {
        for i in insts {
            i.encode(w);
        }
        return;
    };
    // 1.5: the meter is the first action of the apply-actions (one is made
    // where the meter was if there is none).
    let has_apply = insts
        .iter()
        .any(|i| matches!(i, Instruction::ApplyActions(_)));
    for i in insts {
        let actions: &[Action] = match i {
            Instruction::ApplyActions(a) => a,
            Instruction::Meter(_) if !has_apply => &[],
            Instruction::Meter(_) => continue,
            other => {
                other.encode(w);
                continue;
            }
        };
        let start = w.pos();
        w.u16(InstructionType::ApplyActions.to_wire());
        w.u16(0);
        w.zeros(4);
        w.u16(OFPAT_METER);
        w.u16(8);
        w.u32(meter);
        encode_actions(actions, w);
        w.patch_len(start + 2, start, "instruction");
    }
}

/// An instruction id as listed in table features: its type, and the
/// experimenter id for experimenter instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstructionId {
    pub ty: u16,
    pub experimenter: Option<u32>,
}

impl InstructionId {
    pub fn new(ty: InstructionType) -> InstructionId {
        InstructionId {
            ty: ty.to_wire(),
            experimenter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::error::{BadActionCode, BadRequestCode};
    use crate::openflow::port::PortNo;
    use crate::openflow::v10::fixtures::unhex;

    const SHORT: ErrorCode = ErrorCode::BadRequest(BadRequestCode::BadLen);

    fn enc(insts: &[Instruction]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        encode_instructions(insts, &mut w);
        w.finish().unwrap();
        v
    }

    fn dec(b: &[u8]) -> Res<Vec<Instruction>> {
        decode_instructions(&mut Reader::new(b, SHORT))
    }

    #[test]
    fn round_trip_all() {
        let all = vec![
            Instruction::Meter(5),
            Instruction::ApplyActions(vec![Action::PopVlan, Action::output(PortNo(3))]),
            Instruction::ClearActions,
            Instruction::WriteActions(vec![Action::Group(1)]),
            Instruction::WriteMetadata {
                metadata: 0x10,
                mask: 0xf0,
            },
            Instruction::GotoTable(4),
        ];
        let b = enc(&all);
        assert_eq!(b.len(), 8 + 32 + 8 + 16 + 24 + 8);
        assert_eq!(&b[..8], &[0, 6, 0, 8, 0, 0, 0, 5]);
        assert_eq!(&b[8..12], &[0, 4, 0, 32]);
        assert_eq!(dec(&b).unwrap(), all);
        assert_eq!(
            dec(&enc(&[Instruction::ApplyActions(vec![])]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn errors() {
        let e = |c| Err(ErrorCode::BadInstruction(c));
        assert_eq!(dec(&[0, 1, 0, 8, 1, 0, 0]), e(BadInstructionCode::BadLen));
        assert_eq!(
            dec(&[0, 1, 0, 4, 1, 0, 0, 0]),
            e(BadInstructionCode::BadLen)
        );
        assert_eq!(
            dec(&[0, 1, 0, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            e(BadInstructionCode::BadLen)
        );
        assert_eq!(
            dec(&[0, 9, 0, 8, 1, 0, 0, 0]),
            e(BadInstructionCode::UnknownInst)
        );
        assert_eq!(
            dec(&[0xff, 0xff, 0, 8, 0, 0, 0x23, 0x20]),
            e(BadInstructionCode::BadExperimenter)
        );
        let two_gotos = [0, 1, 0, 8, 1, 0, 0, 0, 0, 1, 0, 8, 2, 0, 0, 0];
        assert_eq!(dec(&two_gotos), Err(ErrorCode::DUP_INST));
        // A bad action inside apply-actions reports the action's error.
        assert_eq!(
            dec(&[0, 4, 0, 16, 0, 0, 0, 0, 0, 99, 0, 8, 0, 0, 0, 0]),
            Err(ErrorCode::BadAction(BadActionCode::BadType))
        );
    }

    fn enc_v(insts: &[Instruction], v: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out).with_version(v);
        encode_instructions(insts, &mut w);
        w.finish().unwrap();
        out
    }

    fn dec_v(b: &[u8], v: u8) -> Res<Vec<Instruction>> {
        decode_instructions(&mut Reader::new(b, SHORT).with_version(v))
    }

    /// `meter:5,output:2` in 1.5 (as `ovs-ofctl -O OpenFlow15` writes it)
    /// is 1.3's meter instruction and apply-actions.
    #[test]
    fn meter_is_an_action_in_1_5() {
        let out2 = Action::Output {
            port: PortNo(2),
            max_len: 0xffff,
        };
        let insts = vec![Instruction::Meter(5), Instruction::ApplyActions(vec![out2])];
        let b15 = unhex("00040020 00000000 001d0008 00000005 00000010 00000002 ffff000000000000");
        assert_eq!(enc_v(&insts, 6), b15);
        assert_eq!(dec_v(&b15, 6), Ok(insts.clone()));
        // 1.3 and 1.4 keep the instruction.
        let b13 = enc_v(&insts, 4);
        assert_eq!(&b13[..8], &unhex("00060008 00000005")[..]);
        assert_eq!(dec_v(&b13, 4), Ok(insts.clone()));
        // A meter alone is an apply-actions of just the meter.
        let alone = unhex("00040010 00000000 001d0008 00000007");
        assert_eq!(enc_v(&[Instruction::Meter(7)], 6), alone);
        assert_eq!(dec_v(&alone, 6), Ok(vec![Instruction::Meter(7)]));
        // The meter stays ahead of other instructions' order.
        let with_goto = vec![Instruction::Meter(7), Instruction::GotoTable(1)];
        assert_eq!(dec_v(&enc_v(&with_goto, 6), 6), Ok(with_goto));
        // Not at the head, a bad length, with the old instruction too, and
        // in 1.3 where the action does not exist.
        let late = unhex("00040020 00000000 00000010 00000002 ffff000000000000 001d0008 00000005");
        assert_eq!(
            dec_v(&late, 6),
            Err(ErrorCode::BadAction(BadActionCode::BadType))
        );
        let long = unhex("00040018 00000000 001d0010 00000005 0000000000000000");
        assert_eq!(
            dec_v(&long, 6),
            Err(ErrorCode::BadAction(BadActionCode::BadLen))
        );
        let mut twice = unhex("00060008 00000009");
        twice.extend_from_slice(&alone);
        assert_eq!(dec_v(&twice, 6), Err(ErrorCode::DUP_INST));
        assert_eq!(
            dec_v(&alone, 4),
            Err(ErrorCode::BadAction(BadActionCode::BadType))
        );
    }
}
