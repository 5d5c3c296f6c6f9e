//! OpenFlow 1.3 errors: every `OFPET_*` type with its codes, the body of
//! `OFPT_ERROR`, and [`DecodeError`], which says which error to send back for
//! a message that could not be decoded.

use std::fmt;

use super::bytes::{Reader, Res, Writer};
use super::header::{HEADER_LEN, MsgType, OFP_VERSION};
use super::message::Message;

wire_enum! {
    /// `OFPET_HELLO_FAILED` codes.
    pub enum HelloFailedCode: u16 {
        Incompatible = 0 => "OFPHFC_INCOMPATIBLE",
        Eperm = 1 => "OFPHFC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_BAD_REQUEST` codes.
    pub enum BadRequestCode: u16 {
        BadVersion = 0 => "OFPBRC_BAD_VERSION",
        BadType = 1 => "OFPBRC_BAD_TYPE",
        BadMultipart = 2 => "OFPBRC_BAD_MULTIPART",
        BadExperimenter = 3 => "OFPBRC_BAD_EXPERIMENTER",
        BadExpType = 4 => "OFPBRC_BAD_EXP_TYPE",
        Eperm = 5 => "OFPBRC_EPERM",
        BadLen = 6 => "OFPBRC_BAD_LEN",
        BufferEmpty = 7 => "OFPBRC_BUFFER_EMPTY",
        BufferUnknown = 8 => "OFPBRC_BUFFER_UNKNOWN",
        BadTableId = 9 => "OFPBRC_BAD_TABLE_ID",
        IsSlave = 10 => "OFPBRC_IS_SLAVE",
        BadPort = 11 => "OFPBRC_BAD_PORT",
        BadPacket = 12 => "OFPBRC_BAD_PACKET",
        MultipartBufferOverflow = 13 => "OFPBRC_MULTIPART_BUFFER_OVERFLOW",
    }
}

wire_enum! {
    /// `OFPET_BAD_ACTION` codes.
    pub enum BadActionCode: u16 {
        BadType = 0 => "OFPBAC_BAD_TYPE",
        BadLen = 1 => "OFPBAC_BAD_LEN",
        BadExperimenter = 2 => "OFPBAC_BAD_EXPERIMENTER",
        BadExpType = 3 => "OFPBAC_BAD_EXP_TYPE",
        BadOutPort = 4 => "OFPBAC_BAD_OUT_PORT",
        BadArgument = 5 => "OFPBAC_BAD_ARGUMENT",
        Eperm = 6 => "OFPBAC_EPERM",
        TooMany = 7 => "OFPBAC_TOO_MANY",
        BadQueue = 8 => "OFPBAC_BAD_QUEUE",
        BadOutGroup = 9 => "OFPBAC_BAD_OUT_GROUP",
        MatchInconsistent = 10 => "OFPBAC_MATCH_INCONSISTENT",
        UnsupportedOrder = 11 => "OFPBAC_UNSUPPORTED_ORDER",
        BadTag = 12 => "OFPBAC_BAD_TAG",
        BadSetType = 13 => "OFPBAC_BAD_SET_TYPE",
        BadSetLen = 14 => "OFPBAC_BAD_SET_LEN",
        BadSetArgument = 15 => "OFPBAC_BAD_SET_ARGUMENT",
    }
}

wire_enum! {
    /// `OFPET_BAD_INSTRUCTION` codes.
    pub enum BadInstructionCode: u16 {
        UnknownInst = 0 => "OFPBIC_UNKNOWN_INST",
        UnsupInst = 1 => "OFPBIC_UNSUP_INST",
        BadTableId = 2 => "OFPBIC_BAD_TABLE_ID",
        UnsupMetadata = 3 => "OFPBIC_UNSUP_METADATA",
        UnsupMetadataMask = 4 => "OFPBIC_UNSUP_METADATA_MASK",
        BadExperimenter = 5 => "OFPBIC_BAD_EXPERIMENTER",
        BadExpType = 6 => "OFPBIC_BAD_EXP_TYPE",
        BadLen = 7 => "OFPBIC_BAD_LEN",
        Eperm = 8 => "OFPBIC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_BAD_MATCH` codes.
    pub enum BadMatchCode: u16 {
        BadType = 0 => "OFPBMC_BAD_TYPE",
        BadLen = 1 => "OFPBMC_BAD_LEN",
        BadTag = 2 => "OFPBMC_BAD_TAG",
        BadDlAddrMask = 3 => "OFPBMC_BAD_DL_ADDR_MASK",
        BadNwAddrMask = 4 => "OFPBMC_BAD_NW_ADDR_MASK",
        BadWildcards = 5 => "OFPBMC_BAD_WILDCARDS",
        BadField = 6 => "OFPBMC_BAD_FIELD",
        BadValue = 7 => "OFPBMC_BAD_VALUE",
        BadMask = 8 => "OFPBMC_BAD_MASK",
        BadPrereq = 9 => "OFPBMC_BAD_PREREQ",
        DupField = 10 => "OFPBMC_DUP_FIELD",
        Eperm = 11 => "OFPBMC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_FLOW_MOD_FAILED` codes.
    pub enum FlowModFailedCode: u16 {
        Unknown = 0 => "OFPFMFC_UNKNOWN",
        TableFull = 1 => "OFPFMFC_TABLE_FULL",
        BadTableId = 2 => "OFPFMFC_BAD_TABLE_ID",
        Overlap = 3 => "OFPFMFC_OVERLAP",
        Eperm = 4 => "OFPFMFC_EPERM",
        BadTimeout = 5 => "OFPFMFC_BAD_TIMEOUT",
        BadCommand = 6 => "OFPFMFC_BAD_COMMAND",
        BadFlags = 7 => "OFPFMFC_BAD_FLAGS",
    }
}

wire_enum! {
    /// `OFPET_GROUP_MOD_FAILED` codes.
    pub enum GroupModFailedCode: u16 {
        GroupExists = 0 => "OFPGMFC_GROUP_EXISTS",
        InvalidGroup = 1 => "OFPGMFC_INVALID_GROUP",
        WeightUnsupported = 2 => "OFPGMFC_WEIGHT_UNSUPPORTED",
        OutOfGroups = 3 => "OFPGMFC_OUT_OF_GROUPS",
        OutOfBuckets = 4 => "OFPGMFC_OUT_OF_BUCKETS",
        ChainingUnsupported = 5 => "OFPGMFC_CHAINING_UNSUPPORTED",
        WatchUnsupported = 6 => "OFPGMFC_WATCH_UNSUPPORTED",
        Loop = 7 => "OFPGMFC_LOOP",
        UnknownGroup = 8 => "OFPGMFC_UNKNOWN_GROUP",
        ChainedGroup = 9 => "OFPGMFC_CHAINED_GROUP",
        BadType = 10 => "OFPGMFC_BAD_TYPE",
        BadCommand = 11 => "OFPGMFC_BAD_COMMAND",
        BadBucket = 12 => "OFPGMFC_BAD_BUCKET",
        BadWatch = 13 => "OFPGMFC_BAD_WATCH",
        Eperm = 14 => "OFPGMFC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_PORT_MOD_FAILED` codes.
    pub enum PortModFailedCode: u16 {
        BadPort = 0 => "OFPPMFC_BAD_PORT",
        BadHwAddr = 1 => "OFPPMFC_BAD_HW_ADDR",
        BadConfig = 2 => "OFPPMFC_BAD_CONFIG",
        BadAdvertise = 3 => "OFPPMFC_BAD_ADVERTISE",
        Eperm = 4 => "OFPPMFC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_TABLE_MOD_FAILED` codes.
    pub enum TableModFailedCode: u16 {
        BadTable = 0 => "OFPTMFC_BAD_TABLE",
        BadConfig = 1 => "OFPTMFC_BAD_CONFIG",
        Eperm = 2 => "OFPTMFC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_QUEUE_OP_FAILED` codes.
    pub enum QueueOpFailedCode: u16 {
        BadPort = 0 => "OFPQOFC_BAD_PORT",
        BadQueue = 1 => "OFPQOFC_BAD_QUEUE",
        Eperm = 2 => "OFPQOFC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_SWITCH_CONFIG_FAILED` codes.
    pub enum SwitchConfigFailedCode: u16 {
        BadFlags = 0 => "OFPSCFC_BAD_FLAGS",
        BadLen = 1 => "OFPSCFC_BAD_LEN",
        Eperm = 2 => "OFPSCFC_EPERM",
    }
}

wire_enum! {
    /// `OFPET_ROLE_REQUEST_FAILED` codes.
    pub enum RoleRequestFailedCode: u16 {
        Stale = 0 => "OFPRRFC_STALE",
        Unsup = 1 => "OFPRRFC_UNSUP",
        BadRole = 2 => "OFPRRFC_BAD_ROLE",
    }
}

wire_enum! {
    /// `OFPET_METER_MOD_FAILED` codes.
    pub enum MeterModFailedCode: u16 {
        Unknown = 0 => "OFPMMFC_UNKNOWN",
        MeterExists = 1 => "OFPMMFC_METER_EXISTS",
        InvalidMeter = 2 => "OFPMMFC_INVALID_METER",
        UnknownMeter = 3 => "OFPMMFC_UNKNOWN_METER",
        BadCommand = 4 => "OFPMMFC_BAD_COMMAND",
        BadFlags = 5 => "OFPMMFC_BAD_FLAGS",
        BadRate = 6 => "OFPMMFC_BAD_RATE",
        BadBurst = 7 => "OFPMMFC_BAD_BURST",
        BadBand = 8 => "OFPMMFC_BAD_BAND",
        BadBandValue = 9 => "OFPMMFC_BAD_BAND_VALUE",
        OutOfMeters = 10 => "OFPMMFC_OUT_OF_METERS",
        OutOfBands = 11 => "OFPMMFC_OUT_OF_BANDS",
    }
}

wire_enum! {
    /// `OFPET_TABLE_FEATURES_FAILED` codes.
    pub enum TableFeaturesFailedCode: u16 {
        BadTable = 0 => "OFPTFFC_BAD_TABLE",
        BadMetadata = 1 => "OFPTFFC_BAD_METADATA",
        BadType = 2 => "OFPTFFC_BAD_TYPE",
        BadLen = 3 => "OFPTFFC_BAD_LEN",
        BadArgument = 4 => "OFPTFFC_BAD_ARGUMENT",
        Eperm = 5 => "OFPTFFC_EPERM",
    }
}

/// `OFPET_EXPERIMENTER`: the type of experimenter errors.
pub const OFPET_EXPERIMENTER: u16 = 0xffff;

/// One error: a type and a code of the spec, an experimenter's error, or a
/// pair the spec does not define (kept as received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    HelloFailed(HelloFailedCode),
    BadRequest(BadRequestCode),
    BadAction(BadActionCode),
    BadInstruction(BadInstructionCode),
    BadMatch(BadMatchCode),
    FlowModFailed(FlowModFailedCode),
    GroupModFailed(GroupModFailedCode),
    PortModFailed(PortModFailedCode),
    TableModFailed(TableModFailedCode),
    QueueOpFailed(QueueOpFailedCode),
    SwitchConfigFailed(SwitchConfigFailedCode),
    RoleRequestFailed(RoleRequestFailedCode),
    MeterModFailed(MeterModFailedCode),
    TableFeaturesFailed(TableFeaturesFailedCode),
    /// `OFPET_EXPERIMENTER` with its `exp_type` and experimenter id.
    Experimenter {
        exp_type: u16,
        experimenter: u32,
    },
    /// A (type, code) pair that OpenFlow 1.3 does not define.
    Other {
        ty: u16,
        code: u16,
    },
}

impl ErrorCode {
    /// Duplicate instruction in a flow entry. OpenFlow 1.3 has no code for
    /// it; like Open vSwitch, this is the ONF extension error 2600
    /// (`OFPBIC_DUP_INST` from 1.4 on).
    pub const DUP_INST: ErrorCode = ErrorCode::Experimenter {
        exp_type: 2600,
        experimenter: super::ONF_EXPERIMENTER_ID,
    };

    /// The wire pair: `(type, code)`, or `(OFPET_EXPERIMENTER, exp_type)`.
    pub fn type_code(self) -> (u16, u16) {
        use ErrorCode::*;
        match self {
            HelloFailed(c) => (0, c.to_wire()),
            BadRequest(c) => (1, c.to_wire()),
            BadAction(c) => (2, c.to_wire()),
            BadInstruction(c) => (3, c.to_wire()),
            BadMatch(c) => (4, c.to_wire()),
            FlowModFailed(c) => (5, c.to_wire()),
            GroupModFailed(c) => (6, c.to_wire()),
            PortModFailed(c) => (7, c.to_wire()),
            TableModFailed(c) => (8, c.to_wire()),
            QueueOpFailed(c) => (9, c.to_wire()),
            SwitchConfigFailed(c) => (10, c.to_wire()),
            RoleRequestFailed(c) => (11, c.to_wire()),
            MeterModFailed(c) => (12, c.to_wire()),
            TableFeaturesFailed(c) => (13, c.to_wire()),
            Experimenter { exp_type, .. } => (OFPET_EXPERIMENTER, exp_type),
            Other { ty, code } => (ty, code),
        }
    }

    /// The code for a standard (non-experimenter) wire pair.
    pub fn from_type_code(ty: u16, code: u16) -> ErrorCode {
        use ErrorCode::*;
        let known = match ty {
            0 => HelloFailedCode::from_wire(code).map(HelloFailed),
            1 => BadRequestCode::from_wire(code).map(BadRequest),
            2 => BadActionCode::from_wire(code).map(BadAction),
            3 => BadInstructionCode::from_wire(code).map(BadInstruction),
            4 => BadMatchCode::from_wire(code).map(BadMatch),
            5 => FlowModFailedCode::from_wire(code).map(FlowModFailed),
            6 => GroupModFailedCode::from_wire(code).map(GroupModFailed),
            7 => PortModFailedCode::from_wire(code).map(PortModFailed),
            8 => TableModFailedCode::from_wire(code).map(TableModFailed),
            9 => QueueOpFailedCode::from_wire(code).map(QueueOpFailed),
            10 => SwitchConfigFailedCode::from_wire(code).map(SwitchConfigFailed),
            11 => RoleRequestFailedCode::from_wire(code).map(RoleRequestFailed),
            12 => MeterModFailedCode::from_wire(code).map(MeterModFailed),
            13 => TableFeaturesFailedCode::from_wire(code).map(TableFeaturesFailed),
            _ => None,
        };
        known.unwrap_or(Other { ty, code })
    }

    /// The spec's name of the code, if it has one.
    pub fn name(self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            HelloFailed(c) => c.name(),
            BadRequest(c) => c.name(),
            BadAction(c) => c.name(),
            BadInstruction(c) => c.name(),
            BadMatch(c) => c.name(),
            FlowModFailed(c) => c.name(),
            GroupModFailed(c) => c.name(),
            PortModFailed(c) => c.name(),
            TableModFailed(c) => c.name(),
            QueueOpFailed(c) => c.name(),
            SwitchConfigFailed(c) => c.name(),
            RoleRequestFailed(c) => c.name(),
            MeterModFailed(c) => c.name(),
            TableFeaturesFailed(c) => c.name(),
            _ if self == Self::DUP_INST => "OFPBIC_DUP_INST",
            Experimenter { .. } if let Some(e) = super::tlv::NAMES.iter().find(|e| e.0 == self) => {
                e.1
            }
            Experimenter { .. } | Other { .. } => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), *self) {
            (Some(n), _) => f.write_str(n),
            (
                None,
                ErrorCode::Experimenter {
                    exp_type,
                    experimenter,
                },
            ) => {
                write!(f, "experimenter {experimenter:#x} error type {exp_type}")
            }
            (None, _) => {
                let (ty, code) = self.type_code();
                write!(f, "error type {ty} code {code}")
            }
        }
    }
}

/// The body of `OFPT_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    /// For most errors at least the first 64 bytes of the failed request;
    /// ASCII text for `OFPET_HELLO_FAILED`.
    pub data: Vec<u8>,
}

impl ErrorMsg {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Res<ErrorMsg> {
        let ty = r.u16()?;
        let code = if ty == OFPET_EXPERIMENTER {
            let exp_type = r.u16()?;
            let experimenter = r.u32()?;
            ErrorCode::Experimenter {
                exp_type,
                experimenter,
            }
        } else {
            ErrorCode::from_type_code(ty, r.u16()?)
        };
        Ok(ErrorMsg {
            code,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        let (ty, code) = match self.code {
            // 1.4's bundle errors are ONF extension errors in 1.3.
            ErrorCode::Other { ty: 17, code } if w.version() == OFP_VERSION => {
                (OFPET_EXPERIMENTER, 2300 + code)
            }
            // ...and 1.3's ONF duplicate-instruction error is standard in 1.4.
            c if c == ErrorCode::DUP_INST && w.version() > OFP_VERSION => (3, 9),
            c => c.type_code(),
        };
        if ty == OFPET_EXPERIMENTER && !matches!(self.code, ErrorCode::Experimenter { .. }) {
            w.u16(ty);
            w.u16(code);
            w.u32(super::ONF_EXPERIMENTER_ID);
            w.bytes(&self.data);
            return;
        }
        w.u16(ty);
        w.u16(code);
        if let ErrorCode::Experimenter { experimenter, .. } = self.code {
            w.u32(experimenter);
        }
        w.bytes(&self.data);
    }
}

/// A message that could not be decoded, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad OpenFlow message (xid {xid:#x}): {code}")]
pub struct DecodeError {
    /// The error the spec names for this failure.
    pub code: ErrorCode,
    /// The offending message's xid (0 if not even its header was complete).
    pub xid: u32,
    /// The offending message's type byte, if its header was complete.
    pub msg_type: Option<u8>,
    /// The first 64 bytes of the offending message (all of it if shorter).
    pub data: Vec<u8>,
    /// The OpenFlow version to answer in: [`OFP_VERSION`], or
    /// [`super::v10::VERSION`] for errors of the OpenFlow 1.0 decoder, whose
    /// [`reply`](Self::reply) translates `code` to 1.0's errors.
    pub version: u8,
}

/// How much of a failed request an error message carries.
pub const ERROR_DATA_LEN: usize = 64;

impl DecodeError {
    pub(crate) fn new(code: ErrorCode, buf: &[u8]) -> DecodeError {
        let (xid, msg_type) = match buf.get(..HEADER_LEN) {
            Some(&[_, t, _, _, a, b, c, d]) => (u32::from_be_bytes([a, b, c, d]), Some(t)),
            _ => (0, None),
        };
        DecodeError {
            code,
            xid,
            msg_type,
            data: buf[..buf.len().min(ERROR_DATA_LEN)].to_vec(),
            // Answered in the message's own version where the codec speaks it.
            version: buf
                .first()
                .copied()
                .filter(|v| {
                    (super::header::version::OF13..=super::header::version::OF15).contains(v)
                })
                .unwrap_or(OFP_VERSION),
        }
    }

    /// The `OFPT_ERROR` message answering the failure.
    pub fn to_message(&self) -> Message {
        Message::Error(ErrorMsg {
            code: self.code,
            data: self.data.clone(),
        })
    }

    /// Whether an error should be sent at all: errors are not answered with
    /// errors (that could loop between two peers).
    pub fn wants_reply(&self) -> bool {
        self.msg_type != Some(MsgType::Error.to_wire())
    }

    /// The encoded `OFPT_ERROR` answering the failure, with the offending
    /// xid, in the version of the message that failed (1.3 for versions
    /// this codec does not speak).
    pub fn reply(&self) -> Vec<u8> {
        let v = if self.version == super::v10::VERSION
            || (super::header::version::OF13..=super::header::version::OF15).contains(&self.version)
        {
            self.version
        } else {
            OFP_VERSION
        };
        self.reply_version(v)
    }

    /// The same in wire version `v` (1.0, or 1.3 to 1.5).
    pub fn reply_version(&self, v: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 16 + self.data.len());
        let mut w = Writer::new(&mut out).with_version(v);
        let v10 = v == super::v10::VERSION;
        w.u8(v);
        w.u8(MsgType::Error.to_wire());
        w.u16(0);
        w.u32(self.xid);
        let msg = ErrorMsg {
            code: self.code,
            data: self.data.clone(),
        };
        if v10 {
            super::v10::encode_error_body(&msg, &mut w);
        } else {
            msg.encode(&mut w);
        }
        // The data is at most 64 bytes, so the length always fits.
        w.patch_len(2, 0, "OFPT_ERROR");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_code_round_trips_for_every_known_code() {
        for ty in 0..=14u16 {
            for code in 0..=20u16 {
                let c = ErrorCode::from_type_code(ty, code);
                assert_eq!(c.type_code(), (ty, code));
                assert_eq!(c.name().is_some(), !matches!(c, ErrorCode::Other { .. }));
            }
        }
        assert_eq!(
            ErrorCode::from_type_code(4, 9),
            ErrorCode::BadMatch(BadMatchCode::BadPrereq)
        );
        assert_eq!(ErrorCode::DUP_INST.to_string(), "OFPBIC_DUP_INST");
        assert_eq!(
            ErrorCode::from_type_code(99, 1).to_string(),
            "error type 99 code 1"
        );
    }

    #[test]
    fn decode_error_keeps_xid_and_64_bytes() {
        let mut buf = vec![4, 14, 0, 100, 0, 0, 0x12, 0x34];
        buf.resize(100, 0xaa);
        let e = DecodeError::new(ErrorCode::BadMatch(BadMatchCode::BadLen), &buf);
        assert_eq!(e.xid, 0x1234);
        assert_eq!(e.msg_type, Some(14));
        assert_eq!(e.data.len(), 64);
        let reply = e.reply();
        assert_eq!(&reply[..12], &[4, 1, 0, 76, 0, 0, 0x12, 0x34, 0, 4, 0, 1]);
        assert_eq!(&reply[12..], &buf[..64]);

        let e = DecodeError::new(ErrorCode::BadRequest(BadRequestCode::BadLen), &[4, 0]);
        assert_eq!((e.xid, e.msg_type, e.data.len()), (0, None, 2));
    }

    #[test]
    fn experimenter_error_layout() {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        ErrorMsg {
            code: ErrorCode::DUP_INST,
            data: vec![1, 2],
        }
        .encode(&mut w);
        assert_eq!(v, [0xff, 0xff, 0x0a, 0x28, 0x4f, 0x4e, 0x46, 0x00, 1, 2]);
        let mut r = Reader::new(&v, ErrorCode::BadRequest(BadRequestCode::BadLen));
        let m = ErrorMsg::decode(&mut r).unwrap();
        assert_eq!(m.code, ErrorCode::DUP_INST);
        assert_eq!(m.data, [1, 2]);
    }
}
