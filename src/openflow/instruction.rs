//! Instructions (`ofp_instruction_*`) of a flow entry.
//!
//! Decoding checks each instruction's length and type, the actions inside
//! WRITE_ACTIONS and APPLY_ACTIONS, and that no type appears twice (OpenFlow
//! 1.3 allows one of each; it names no code for that, so the error is the
//! ONF extension `OFPBIC_DUP_INST`, as Open vSwitch sends).
//! Experimenter instructions are rejected with `OFPBIC_BAD_EXPERIMENTER`.

use super::action::{Action, decode_actions, encode_actions};
use super::bytes::{Reader, Res, Writer};
use super::error::{BadInstructionCode, ErrorCode};

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
        let inst = Instruction::decode_body(ty, len, &mut body)?;
        body.finish()?;
        if out.iter().any(|i| i.instruction_type() == ty) {
            return Err(ErrorCode::DUP_INST);
        }
        out.push(inst);
    }
    Ok(out)
}

pub(crate) fn encode_instructions(insts: &[Instruction], w: &mut Writer<'_>) {
    for i in insts {
        i.encode(w);
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
}
