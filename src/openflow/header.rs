//! The 8-byte header every OpenFlow message starts with, the message types,
//! and [`frame_len`], which cuts messages out of a byte stream.

use super::bytes::Writer;

/// The wire version of OpenFlow 1.3, the codec's reference version.
pub const OFP_VERSION: u8 = 0x04;

/// Wire versions, by name.
pub mod version {
    pub const OF10: u8 = 0x01;
    pub const OF13: u8 = 0x04;
    pub const OF14: u8 = 0x05;
    pub const OF15: u8 = 0x06;
}

/// Size of `ofp_header`.
pub const HEADER_LEN: usize = 8;

/// `ofp_header`: version, type, length (of the whole message), xid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub version: u8,
    pub msg_type: u8,
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Reads the header at the start of `buf`, if it is all there.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        match buf.get(..HEADER_LEN)? {
            &[version, msg_type, l0, l1, x0, x1, x2, x3] => Some(Header {
                version,
                msg_type,
                length: u16::from_be_bytes([l0, l1]),
                xid: u32::from_be_bytes([x0, x1, x2, x3]),
            }),
            _ => None,
        }
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.version);
        w.u8(self.msg_type);
        w.u16(self.length);
        w.u32(self.xid);
    }
}

/// The length of the message at the start of `buf`, for a stream reader:
/// `None` while fewer than 8 bytes are there, and also when the header's
/// length field is below 8, which no message can have. A caller that holds 8
/// bytes or more and gets `None` has a corrupt stream: answer
/// `OFPBRC_BAD_LEN` and close the connection.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let h = Header::parse(buf)?;
    let len = usize::from(h.length);
    (len >= HEADER_LEN).then_some(len)
}

wire_enum! {
    /// `ofp_type`: the message types of OpenFlow 1.3 to 1.5 (the last six
    /// from 1.4 on: see [`MsgType::exists_in`]).
    pub enum MsgType: u8 {
        Hello = 0 => "OFPT_HELLO",
        Error = 1 => "OFPT_ERROR",
        EchoRequest = 2 => "OFPT_ECHO_REQUEST",
        EchoReply = 3 => "OFPT_ECHO_REPLY",
        Experimenter = 4 => "OFPT_EXPERIMENTER",
        FeaturesRequest = 5 => "OFPT_FEATURES_REQUEST",
        FeaturesReply = 6 => "OFPT_FEATURES_REPLY",
        GetConfigRequest = 7 => "OFPT_GET_CONFIG_REQUEST",
        GetConfigReply = 8 => "OFPT_GET_CONFIG_REPLY",
        SetConfig = 9 => "OFPT_SET_CONFIG",
        PacketIn = 10 => "OFPT_PACKET_IN",
        FlowRemoved = 11 => "OFPT_FLOW_REMOVED",
        PortStatus = 12 => "OFPT_PORT_STATUS",
        PacketOut = 13 => "OFPT_PACKET_OUT",
        FlowMod = 14 => "OFPT_FLOW_MOD",
        GroupMod = 15 => "OFPT_GROUP_MOD",
        PortMod = 16 => "OFPT_PORT_MOD",
        TableMod = 17 => "OFPT_TABLE_MOD",
        MultipartRequest = 18 => "OFPT_MULTIPART_REQUEST",
        MultipartReply = 19 => "OFPT_MULTIPART_REPLY",
        BarrierRequest = 20 => "OFPT_BARRIER_REQUEST",
        BarrierReply = 21 => "OFPT_BARRIER_REPLY",
        QueueGetConfigRequest = 22 => "OFPT_QUEUE_GET_CONFIG_REQUEST",
        QueueGetConfigReply = 23 => "OFPT_QUEUE_GET_CONFIG_REPLY",
        RoleRequest = 24 => "OFPT_ROLE_REQUEST",
        RoleReply = 25 => "OFPT_ROLE_REPLY",
        GetAsyncRequest = 26 => "OFPT_GET_ASYNC_REQUEST",
        GetAsyncReply = 27 => "OFPT_GET_ASYNC_REPLY",
        SetAsync = 28 => "OFPT_SET_ASYNC",
        MeterMod = 29 => "OFPT_METER_MOD",
        RoleStatus = 30 => "OFPT_ROLE_STATUS",
        TableStatus = 31 => "OFPT_TABLE_STATUS",
        RequestForward = 32 => "OFPT_REQUESTFORWARD",
        BundleControl = 33 => "OFPT_BUNDLE_CONTROL",
        BundleAddMessage = 34 => "OFPT_BUNDLE_ADD_MESSAGE",
        ControllerStatus = 35 => "OFPT_CONTROLLER_STATUS",
    }
}

impl MsgType {
    /// Whether the type exists in wire version `v` (1.3 to 1.5; 1.0 has
    /// its own numbering, in its own codec).
    pub fn exists_in(self, v: u8) -> bool {
        match self {
            MsgType::QueueGetConfigRequest | MsgType::QueueGetConfigReply => v == version::OF13,
            MsgType::ControllerStatus => v >= version::OF15,
            t if t.to_wire() >= 30 => v >= version::OF14,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parse_and_frame_len() {
        let b = [4, 0, 0, 16, 0xde, 0xad, 0xbe, 0xef, 0xff];
        let h = Header::parse(&b).unwrap();
        assert_eq!(
            h,
            Header {
                version: 4,
                msg_type: 0,
                length: 16,
                xid: 0xdead_beef
            }
        );
        assert_eq!(frame_len(&b), Some(16));
        assert_eq!(frame_len(&b[..7]), None);
        assert_eq!(frame_len(&[4, 0, 0, 7, 0, 0, 0, 0]), None);
        assert_eq!(frame_len(&[4, 0, 0, 8, 0, 0, 0, 0]), Some(8));
        assert_eq!(frame_len(&[4, 0, 0xff, 0xff, 0, 0, 0, 0]), Some(65535));
    }

    #[test]
    fn msg_type_numbers() {
        for (i, t) in MsgType::ALL.iter().enumerate() {
            assert_eq!(usize::from(t.to_wire()), i);
            assert_eq!(MsgType::from_wire(t.to_wire()), Some(*t));
        }
        assert_eq!(MsgType::from_wire(36), None);
        assert!(!MsgType::BundleControl.exists_in(4) && MsgType::BundleControl.exists_in(5));
        assert!(!MsgType::QueueGetConfigRequest.exists_in(5));
    }
}
