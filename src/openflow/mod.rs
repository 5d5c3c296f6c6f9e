//! OpenFlow 1.3, 1.4 and 1.5 (wire versions 0x04 to 0x06): the message
//! codec, with no I/O.
//!
//! The types are OpenFlow 1.3's, and they are the switch's model of every
//! version: a 1.4 or 1.5 message decodes into the same [`Message`], and
//! [`Message::encode_version`] writes any message in the version a
//! connection negotiated ([`negotiate`], with the switch's allowed
//! [`Versions`]). Structures whose layout changed (ports and port
//! statistics with properties in 1.4; OXS statistics, packet-out matches and
//! bucket properties in 1.5) are read and written per version; messages a
//! version does not have fail to encode with [`EncodeError::Unsupported`].
//! Bundles travel as 1.4 messages or, in 1.3, as the ONF extension
//! ([`bundle`]).
//!
//! [`decode`] turns the bytes of one message (as cut from a stream by
//! [`frame_len`]) into a [`Header`] and a typed [`Message`]; [`Message::encode`]
//! turns a message back into bytes. The types keep everything the wire holds
//! (match fields with their masks as installed, unknown hello elements, error
//! data), so decoding a well-formed message and encoding it again gives the
//! same bytes, and a flow's match can be echoed byte for byte in flow stats.
//!
//! Decoding is checked, not trusting: every read is bounds-checked, every
//! length field validated (including the padding to 8 bytes the spec
//! requires), and nothing panics on any input. When a message is malformed,
//! the [`DecodeError`] names the error the spec prescribes for that failure
//! (`OFPET_BAD_REQUEST`/`OFPBRC_BAD_LEN`, `OFPET_BAD_MATCH`/`OFPBMC_BAD_PREREQ`,
//! ...) and keeps the offending message's xid and first 64 bytes, so
//! [`DecodeError::reply`] is the `OFPT_ERROR` to send back.
//!
//! The codec checks what the wire format alone decides: lengths, known types,
//! match field sizes, masks and prerequisites, value ranges, action arguments
//! the spec restricts (the ethertypes of push actions), one instruction of
//! each type. The Nicira extensions Open vSwitch's tools use ([`nicira`]:
//! registers in matches, resubmit, register load/move, output to a
//! register, notes) decode as [`nicira::NxMatchField`]s and
//! [`Action::Nx`]; other experimenter actions, instructions and match
//! fields are rejected (`OFPBAC_BAD_EXPERIMENTER`, `OFPBIC_BAD_EXPERIMENTER`,
//! `OFPBMC_BAD_FIELD`). Experimenter messages and
//! multipart bodies decode, for the agent to refuse. What depends on the
//! switch's state (does port 7 exist, is group 3 defined, may this table go to
//! that one, is a SET_FIELD consistent with its flow's match) is for the
//! pipeline and the agent above it.
//!
//! Layout, by concern:
//! - [`header`]: the 8-byte header, message types, [`frame_len`].
//! - [`error`]: every `OFPET_*` error code, `OFPT_ERROR` bodies, [`DecodeError`].
//! - [`hello`]: `OFPT_HELLO` elements and version negotiation.
//! - [`oxm`]: match fields (OXM TLVs), typed, with their masks.
//! - [`flow_match`]: [`Match`], a list of fields valid by construction.
//! - [`action`] and [`instruction`]: action lists and instructions.
//! - [`port`]: port numbers, `ofp_port`, `PORT_MOD`, `PORT_STATUS`.
//! - [`flow`]: `FLOW_MOD`, `FLOW_REMOVED`, `PACKET_IN`, `PACKET_OUT`.
//! - [`group`] and [`meter`]: group and meter modifications and statistics.
//! - [`table`]: `TABLE_MOD` and table features with all their properties.
//! - [`multipart`]: `MULTIPART_REQUEST`/`REPLY` bodies, and
//!   [`MultipartReply::split`] for replies longer than one message.
//! - [`message`]: the [`Message`] enum, the small messages, the dispatch.
//! - [`nicira`]: Nicira extension match fields and actions.
//! - [`v10`]: OpenFlow 1.0 (wire version 0x01) to and from these types.

/// Declares a `#[repr]` enum for a set of wire values, with `from_wire`
/// (unknown values give `None`), `to_wire` and the spec's name of each value.
macro_rules! wire_enum {
    ($(#[$meta:meta])* pub enum $name:ident: $repr:ty {
        $($(#[$vmeta:meta])* $var:ident = $val:literal => $text:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($repr)]
        pub enum $name {
            $($(#[$vmeta])* $var = $val,)*
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];

            /// The value for a wire number, if the spec defines it.
            pub fn from_wire(v: $repr) -> Option<$name> {
                match v {
                    $($val => Some($name::$var),)*
                    _ => None,
                }
            }

            /// The wire number.
            pub fn to_wire(self) -> $repr {
                self as $repr
            }

            /// The spec's name, e.g. `OFPT_HELLO`.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$var => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

mod bytes;

pub mod action;
pub mod bundle;
pub mod error;
pub mod flow;
pub mod flow_match;
pub mod group;
pub mod header;
pub mod hello;
pub mod instruction;
pub mod message;
pub mod meter;
pub mod multipart;
pub mod nicira;
pub mod nx_tun6;
pub mod nxm;
pub mod oxm;
pub mod oxs;
pub mod port;
pub mod table;
pub mod tlv;
pub mod v10;

#[cfg(test)]
mod testgen;

pub use action::{Action, ActionType};
pub use bytes::{EncodeError, FixedStr};
pub use error::{DecodeError, ErrorCode, ErrorMsg};
pub use flow::{FlowMod, FlowModCommand, FlowRemoved, PacketIn, PacketOut};
pub use flow_match::Match;
pub use group::{Bucket, GroupMod, GroupModCommand, GroupType};
pub use header::{HEADER_LEN, Header, MsgType, OFP_VERSION, frame_len};
pub use hello::{Hello, HelloElement, Versions, negotiate};
pub use instruction::{Instruction, InstructionType};
pub use message::{Message, decode};
pub use meter::{MeterBand, MeterMod};
pub use multipart::{MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody};
pub use oxm::{Masked, OxmField, OxmFieldType};
pub use port::{Port, PortMod, PortNo, PortStatus};
pub use table::{TableFeatureProp, TableFeatures, TableMod};

/// `buffer_id` meaning "the packet is not buffered" (`OFP_NO_BUFFER`).
pub const NO_BUFFER: u32 = 0xffff_ffff;

/// Table ids: the last usable one and the wildcard (`OFPTT_MAX`, `OFPTT_ALL`).
pub mod table_id {
    pub const MAX: u8 = 0xfe;
    pub const ALL: u8 = 0xff;
}

/// The ONF's experimenter id, used by OpenFlow 1.3 extension errors.
pub const ONF_EXPERIMENTER_ID: u32 = 0x4f4e_4600;
