//! OpenFlow 1.0's port structures: `ofp_phy_port` (48 bytes) in
//! `PORT_STATUS` and the features reply, `PORT_MOD`, and the queue
//! configuration messages, to and from the model's [`Port`], [`PortMod`],
//! [`QueueGetConfigReply`].
//!
//! Bits: 1.0's port config bits sit where 1.3's do (PORT_DOWN, NO_RECV,
//! NO_FWD, NO_PACKET_IN); 1.0's own NO_STP, NO_RECV_STP and NO_FLOOD pass
//! through in their 1.0 positions, for the agent to honour or refuse. Of the
//! state, only LINK_DOWN exists in both (1.0's STP state is sent as 0,
//! "listening", and 1.3's BLOCKED and LIVE are dropped). Port features
//! share bits 0..=6 (10M to 10G); 1.3's COPPER..PAUSE_ASYM (bits 11..=15)
//! are 1.0's bits 7..=11, and 1.3's 40G, 100G, 1T and OTHER have no 1.0 bit.
//! 1.0 has no port speeds: they decode as 0.

use crate::openflow::bytes::{FixedStr, Reader, Res, Writer};
use crate::openflow::message::{PacketQueue, QueueGetConfigReply, QueueProp};
use crate::openflow::port::{Port, PortMod, PortStatus, state};
use crate::wire::MacAddr;

use super::{EncodeError, port_from_v10, port_to_v10};

/// Size of `ofp_phy_port`.
pub const PHY_PORT_LEN: usize = 48;

/// 1.3 feature bits 0..=6, shared with 1.0.
const SHARED_FEATURES: u32 = (1 << 7) - 1;

/// Model (1.3) port features to 1.0's.
pub fn features_to_v10(f: u32) -> u32 {
    (f & SHARED_FEATURES) | ((f >> 4) & (0x1f << 7))
}

/// 1.0 port features to the model's.
pub fn features_from_v10(f: u32) -> u32 {
    (f & SHARED_FEATURES) | ((f & (0x1f << 7)) << 4)
}

pub(crate) fn decode_phy_port(r: &mut Reader<'_>) -> Res<Port> {
    let port_no = port_from_v10(r.u16()?);
    let hw_addr = MacAddr(r.array()?);
    let name = FixedStr::read(r)?;
    let config = r.u32()?;
    let state = r.u32()? & state::LINK_DOWN;
    Ok(Port {
        port_no,
        hw_addr,
        name,
        config,
        state,
        curr: features_from_v10(r.u32()?),
        advertised: features_from_v10(r.u32()?),
        supported: features_from_v10(r.u32()?),
        peer: features_from_v10(r.u32()?),
        curr_speed: 0,
        max_speed: 0,
    })
}

pub(crate) fn encode_phy_port(p: &Port, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u16(port_to_v10(p.port_no)?);
    w.bytes(&p.hw_addr.0);
    p.name.write(w);
    w.u32(p.config);
    w.u32(p.state & state::LINK_DOWN);
    for f in [p.curr, p.advertised, p.supported, p.peer] {
        w.u32(features_to_v10(f));
    }
    Ok(())
}

pub(crate) fn decode_port_status(r: &mut Reader<'_>) -> Res<PortStatus> {
    let reason = r.u8()?;
    r.skip(7)?;
    let desc = decode_phy_port(r)?;
    r.finish()?;
    Ok(PortStatus { reason, desc })
}

pub(crate) fn encode_port_status(p: &PortStatus, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u8(p.reason);
    w.zeros(7);
    encode_phy_port(&p.desc, w)
}

pub(crate) fn decode_port_mod(r: &mut Reader<'_>) -> Res<PortMod> {
    let port_no = port_from_v10(r.u16()?);
    let hw_addr = MacAddr(r.array()?);
    let m = PortMod {
        port_no,
        hw_addr,
        config: r.u32()?,
        mask: r.u32()?,
        advertise: features_from_v10(r.u32()?),
    };
    r.skip(4)?;
    r.finish()?;
    Ok(m)
}

pub(crate) fn encode_port_mod(p: &PortMod, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.u16(port_to_v10(p.port_no)?);
    w.bytes(&p.hw_addr.0);
    w.u32(p.config);
    w.u32(p.mask);
    w.u32(features_to_v10(p.advertise));
    w.zeros(4);
    Ok(())
}

/// `QUEUE_GET_CONFIG_REPLY`: 1.0's queues carry no port (each decodes with
/// the reply's) and properties `{u16 property, u16 len, pad[4]}` then data.
pub(crate) fn decode_queue_reply(r: &mut Reader<'_>) -> Res<QueueGetConfigReply> {
    let short = r.short();
    let port = port_from_v10(r.u16()?);
    r.skip(6)?;
    let mut queues = Vec::new();
    while !r.is_empty() {
        let len = usize::from(r.peek_u16(4)?);
        if len < 8 {
            return Err(short);
        }
        let mut q = r.sub(len, short)?;
        let queue_id = q.u32()?;
        q.skip(4)?;
        let properties = QueueProp::decode_list(&mut q)?;
        queues.push(PacketQueue {
            queue_id,
            port,
            properties,
        });
    }
    Ok(QueueGetConfigReply { port, queues })
}

pub(crate) fn encode_queue_reply(
    q: &QueueGetConfigReply,
    w: &mut Writer<'_>,
) -> Result<(), EncodeError> {
    w.u16(port_to_v10(q.port)?);
    w.zeros(6);
    for queue in &q.queues {
        let start = w.pos();
        w.u32(queue.queue_id);
        w.u16(0);
        w.zeros(2);
        QueueProp::encode_list(&queue.properties, w);
        w.patch_len(start + 4, start, "queue");
    }
    Ok(())
}
