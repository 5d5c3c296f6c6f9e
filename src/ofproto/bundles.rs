//! One connection's open bundles (OpenFlow 1.4's `OFPT_BUNDLE_*`, and the
//! ONF extension that carries them in 1.3): what `ovs-ofctl --bundle`
//! uses to replace a table at once.
//!
//! The state machine of the spec (7.3.9): a bundle is opened explicitly or
//! by its first add, collects flow and group mods, may be closed, and is
//! committed or discarded; every control message is answered with its reply
//! type or the `OFPBFC_*` error naming what was wrong. Adds are decoded and
//! checked when they arrive (a message that cannot be bundled is refused
//! then, and the bundle stays usable), and applied at commit.
//!
//! Every commit is atomic, whatever its flags say (as in Open vSwitch): the
//! changes are applied under one write lock and, if one fails, none stay
//! ([`crate::module::flow::FlowModule::commit`]). Bounded: at most
//! [`MAX_BUNDLES`] open bundles per connection and [`MAX_MESSAGES`] messages
//! per bundle, so a client cannot grow the agent's memory without bound.

use std::collections::BTreeMap;

use crate::openflow::bundle::{
    BundleAdd, BundleCtrl, BundleCtrlType, bundle_error, bundle_failed, bundle_flags,
};
use crate::openflow::{ErrorCode, FlowMod, GroupMod, Message, decode};

/// Open bundles one connection may hold.
pub const MAX_BUNDLES: usize = 64;
/// Messages one bundle may hold.
pub const MAX_MESSAGES: usize = 65_536;

/// A change a bundle holds, decoded.
#[derive(Debug, Clone)]
pub enum Held {
    Flow(FlowMod),
    Group(GroupMod),
}

/// One message of a bundle: its xid (for the error if it fails at commit),
/// its first bytes (for that error's data) and the change.
#[derive(Debug, Clone)]
pub struct Entry {
    pub xid: u32,
    pub raw: Vec<u8>,
    pub change: Held,
}

#[derive(Debug, Default)]
struct Bundle {
    flags: u16,
    closed: bool,
    entries: Vec<Entry>,
}

/// What to do after a control message: reply, or commit these entries and
/// then reply (or send the error of the failing one).
#[derive(Debug)]
pub enum Outcome {
    Reply(BundleCtrl),
    Commit {
        reply: BundleCtrl,
        entries: Vec<Entry>,
    },
}

/// A connection's bundles.
#[derive(Debug, Default)]
pub struct Bundles {
    open: BTreeMap<u32, Bundle>,
}

fn fail(code: u16) -> ErrorCode {
    bundle_error(code)
}

/// Flags this switch accepts (`OFPBF_TIME` needs scheduled commits, which
/// it does not offer).
const KNOWN_FLAGS: u16 = bundle_flags::ATOMIC | bundle_flags::ORDERED;

impl Bundles {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// A `BUNDLE_CONTROL` request.
    pub fn control(&mut self, b: &BundleCtrl) -> Result<Outcome, ErrorCode> {
        if b.flags & !KNOWN_FLAGS != 0 {
            return Err(fail(bundle_failed::BAD_FLAGS));
        }
        if !b.properties.is_empty() {
            return Err(ErrorCode::Other { ty: 14, code: 0 }); // OFPBPC_BAD_TYPE
        }
        let reply = |t| BundleCtrl {
            bundle_id: b.bundle_id,
            ctrl_type: t,
            flags: b.flags,
            properties: Vec::new(),
        };
        match b.ctrl_type {
            BundleCtrlType::OpenRequest => {
                if self.open.contains_key(&b.bundle_id) {
                    return Err(fail(bundle_failed::BUNDLE_EXIST));
                }
                if self.open.len() >= MAX_BUNDLES {
                    return Err(fail(bundle_failed::OUT_OF_BUNDLES));
                }
                self.open.insert(
                    b.bundle_id,
                    Bundle {
                        flags: b.flags,
                        ..Bundle::default()
                    },
                );
                Ok(Outcome::Reply(reply(BundleCtrlType::OpenReply)))
            }
            BundleCtrlType::CloseRequest => {
                let bundle = self
                    .open
                    .get_mut(&b.bundle_id)
                    .ok_or(fail(bundle_failed::BAD_ID))?;
                if bundle.closed {
                    return Err(fail(bundle_failed::BUNDLE_CLOSED));
                }
                if bundle.flags != b.flags {
                    return Err(fail(bundle_failed::BAD_FLAGS));
                }
                bundle.closed = true;
                Ok(Outcome::Reply(reply(BundleCtrlType::CloseReply)))
            }
            BundleCtrlType::CommitRequest => {
                let bundle = self
                    .open
                    .get(&b.bundle_id)
                    .ok_or(fail(bundle_failed::BAD_ID))?;
                if bundle.flags != b.flags {
                    return Err(fail(bundle_failed::BAD_FLAGS));
                }
                // Committed or not, the bundle is gone afterwards.
                let bundle = self.open.remove(&b.bundle_id).unwrap_or_default();
                Ok(Outcome::Commit {
                    reply: reply(BundleCtrlType::CommitReply),
                    entries: bundle.entries,
                })
            }
            BundleCtrlType::DiscardRequest => {
                self.open
                    .remove(&b.bundle_id)
                    .ok_or(fail(bundle_failed::BAD_ID))?;
                Ok(Outcome::Reply(reply(BundleCtrlType::DiscardReply)))
            }
            BundleCtrlType::OpenReply
            | BundleCtrlType::CloseReply
            | BundleCtrlType::CommitReply
            | BundleCtrlType::DiscardReply => Err(fail(bundle_failed::BAD_TYPE)),
        }
    }

    /// A `BUNDLE_ADD_MESSAGE` of wire version `version` and xid `xid`: the
    /// inner message must be of the same version and xid, and a flow or
    /// group mod. Opens the bundle if it is not open yet.
    pub fn add(&mut self, version: u8, xid: u32, a: &BundleAdd) -> Result<(), ErrorCode> {
        if a.flags & !KNOWN_FLAGS != 0 {
            return Err(fail(bundle_failed::BAD_FLAGS));
        }
        let (h, msg) = decode(&a.message).map_err(|e| {
            // A malformed inner message: the spec's own code for it.
            if e.code == ErrorCode::BadRequest(crate::openflow::error::BadRequestCode::BadLen) {
                fail(bundle_failed::MSG_BAD_LEN)
            } else {
                e.code
            }
        })?;
        if h.version != version {
            return Err(fail(bundle_failed::MSG_BAD_LEN));
        }
        if h.xid != xid {
            return Err(fail(bundle_failed::MSG_BAD_XID));
        }
        let change = match msg {
            // A buffered packet would be released at commit, long after
            // the flow mod that names it: refused, as a message this
            // switch cannot bundle.
            Message::FlowMod(f) if f.buffer_id != crate::openflow::NO_BUFFER => {
                return Err(fail(bundle_failed::MSG_UNSUP));
            }
            Message::FlowMod(f) => Held::Flow(f),
            Message::GroupMod(g) => Held::Group(g),
            _ => return Err(fail(bundle_failed::MSG_UNSUP)),
        };
        if !self.open.contains_key(&a.bundle_id) && self.open.len() >= MAX_BUNDLES {
            return Err(fail(bundle_failed::OUT_OF_BUNDLES));
        }
        let bundle = self.open.entry(a.bundle_id).or_insert_with(|| Bundle {
            flags: a.flags,
            ..Bundle::default()
        });
        if bundle.closed {
            return Err(fail(bundle_failed::BUNDLE_CLOSED));
        }
        if bundle.flags != a.flags {
            return Err(fail(bundle_failed::BAD_FLAGS));
        }
        if bundle.entries.len() >= MAX_MESSAGES {
            return Err(fail(bundle_failed::MSG_TOO_MANY));
        }
        let raw = a.message[..a.message.len().min(crate::openflow::error::ERROR_DATA_LEN)].to_vec();
        bundle.entries.push(Entry { xid, raw, change });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::FlowModCommand;

    fn ctrl(id: u32, t: BundleCtrlType, flags: u16) -> BundleCtrl {
        BundleCtrl {
            bundle_id: id,
            ctrl_type: t,
            flags,
            properties: Vec::new(),
        }
    }

    fn add(id: u32, xid: u32, msg: &Message) -> BundleAdd {
        BundleAdd {
            bundle_id: id,
            flags: bundle_flags::ATOMIC,
            message: msg.encode_version(5, xid).unwrap(),
            properties: Vec::new(),
        }
    }

    fn flow() -> Message {
        Message::FlowMod(FlowMod {
            command: FlowModCommand::Add,
            ..FlowMod::default()
        })
    }

    #[test]
    fn the_state_machine_answers_each_step() {
        let mut b = Bundles::default();
        let a = bundle_flags::ATOMIC;
        let Outcome::Reply(r) = b.control(&ctrl(1, BundleCtrlType::OpenRequest, a)).unwrap() else {
            panic!()
        };
        assert_eq!(r.ctrl_type, BundleCtrlType::OpenReply);
        assert_eq!(
            b.control(&ctrl(1, BundleCtrlType::OpenRequest, a))
                .unwrap_err(),
            fail(bundle_failed::BUNDLE_EXIST)
        );
        b.add(5, 9, &add(1, 9, &flow())).unwrap();
        // The inner message must carry the add's own xid and version.
        assert_eq!(
            b.add(5, 10, &add(1, 9, &flow())),
            Err(fail(bundle_failed::MSG_BAD_XID))
        );
        assert_eq!(
            b.add(4, 9, &add(1, 9, &flow())),
            Err(fail(bundle_failed::MSG_BAD_LEN))
        );
        let echo = add(1, 11, &Message::EchoRequest(vec![]));
        assert_eq!(b.add(5, 11, &echo), Err(fail(bundle_failed::MSG_UNSUP)));
        assert_eq!(
            b.control(&ctrl(1, BundleCtrlType::CloseRequest, 0))
                .unwrap_err(),
            fail(bundle_failed::BAD_FLAGS)
        );
        b.control(&ctrl(1, BundleCtrlType::CloseRequest, a))
            .unwrap();
        assert_eq!(
            b.add(5, 12, &add(1, 12, &flow())),
            Err(fail(bundle_failed::BUNDLE_CLOSED))
        );
        let Outcome::Commit { reply, entries } = b
            .control(&ctrl(1, BundleCtrlType::CommitRequest, a))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(reply.ctrl_type, BundleCtrlType::CommitReply);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].xid, 9);
        assert!(b.is_empty());
        assert_eq!(
            b.control(&ctrl(1, BundleCtrlType::DiscardRequest, a))
                .unwrap_err(),
            fail(bundle_failed::BAD_ID)
        );
        // An add opens a bundle; discard drops it.
        b.add(5, 3, &add(2, 3, &flow())).unwrap();
        assert_eq!(b.len(), 1);
        b.control(&ctrl(2, BundleCtrlType::DiscardRequest, a))
            .unwrap();
        assert!(b.is_empty());
        assert_eq!(
            b.control(&ctrl(3, BundleCtrlType::OpenRequest, bundle_flags::TIME))
                .unwrap_err(),
            fail(bundle_failed::BAD_FLAGS)
        );
    }

    #[test]
    fn bundles_are_bounded() {
        let mut b = Bundles::default();
        for id in 0..MAX_BUNDLES as u32 {
            b.control(&ctrl(id, BundleCtrlType::OpenRequest, 0))
                .unwrap();
        }
        assert_eq!(
            b.control(&ctrl(999, BundleCtrlType::OpenRequest, 0))
                .unwrap_err(),
            fail(bundle_failed::OUT_OF_BUNDLES)
        );
        let mut one = add(999, 1, &flow());
        one.flags = 0;
        assert_eq!(b.add(5, 1, &one), Err(fail(bundle_failed::OUT_OF_BUNDLES)));
    }
}
