//! Tests of the protocol engine, driven in memory.

use super::*;
use crate::module::flow::{FlowConfig, FlowModule};
use crate::ofproto::SwitchDatapath;
use crate::switch::{Switch, SwitchConfig};
use std::sync::Arc;

const SEC: Nanos = 1_000_000_000;

type Core = Engine<SwitchDatapath>;

fn core() -> Core {
    let flow = Arc::new(FlowModule::new(FlowConfig {
        tables: 4,
        ..FlowConfig::default()
    }));
    let sw = Arc::new(Switch::new(SwitchConfig::default(), flow.clone()).unwrap());
    Engine::new(SwitchDatapath::new(sw, flow, 7), 5 * SEC)
}

/// Every whole message in `c`'s output, taken out.
fn take(core: &mut Core, id: u64) -> Vec<(Header, Message)> {
    let c = core.conn_mut(id).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = frame_len(&c.out[at..]) {
        out.push(decode(&c.out[at..at + len]).unwrap());
        at += len;
    }
    c.out.drain(..at);
    out
}

fn opened(core: &mut Core) -> u64 {
    let id = core.open("test".into(), 0);
    let hello = Message::Hello(Hello::ours()).encode(1).unwrap();
    core.input(id, &hello, 0);
    assert!(core.is_open(id));
    assert!(matches!(take(core, id)[..], [(_, Message::Hello(_))]));
    id
}

#[test]
fn messages_cut_anywhere_in_the_stream_are_answered_in_order() {
    let mut c = core();
    let id = opened(&mut c);
    let mut bytes = Message::EchoRequest(b"a".to_vec()).encode(10).unwrap();
    bytes.extend(Message::FeaturesRequest.encode(11).unwrap());
    bytes.extend(Message::BarrierRequest.encode(12).unwrap());
    for b in &bytes {
        c.input(id, std::slice::from_ref(b), SEC);
    }
    let got = take(&mut c, id);
    let xids: Vec<u32> = got.iter().map(|(h, _)| h.xid).collect();
    assert_eq!(xids, [10, 11, 12]);
    assert!(
        matches!(&got[1].1, Message::FeaturesReply(f) if f.datapath_id == 7 && f.n_tables == 4)
    );
    assert_eq!(got[2].1, Message::BarrierReply);
}

#[test]
fn silence_gets_an_echo_then_the_connection_is_given_up() {
    let mut c = core();
    let id = opened(&mut c);
    assert!(c.tick(4 * SEC).is_empty());
    assert!(take(&mut c, id).is_empty());
    assert!(c.tick(5 * SEC).is_empty());
    assert!(matches!(
        take(&mut c, id)[..],
        [(_, Message::EchoRequest(_))]
    ));
    // An answer (anything) keeps it alive.
    let reply = Message::EchoReply(Vec::new()).encode(1).unwrap();
    c.input(id, &reply, 6 * SEC);
    assert!(c.tick(9 * SEC).is_empty());
    assert!(c.tick(11 * SEC).is_empty());
    assert_eq!(take(&mut c, id).len(), 1);
    assert_eq!(c.tick(16 * SEC), vec![id]);
    assert!(c.conn(id).unwrap().closing.is_some());
}

#[test]
fn a_corrupt_length_closes_only_that_connection() {
    let mut c = core();
    let a = opened(&mut c);
    let b = opened(&mut c);
    c.input(a, &[4, 2, 0, 3, 0, 0, 0, 9], SEC);
    assert!(matches!(&take(&mut c, a)[..], [(h, Message::Error(_))] if h.xid == 9));
    assert!(c.conn(a).unwrap().closing.is_some());
    let echo = Message::EchoRequest(Vec::new()).encode(3).unwrap();
    c.input(b, &echo, SEC);
    assert!(matches!(take(&mut c, b)[..], [(_, Message::EchoReply(_))]));
}

#[test]
fn a_message_before_hello_fails_the_handshake() {
    let mut c = core();
    let id = c.open("x".into(), 0);
    take(&mut c, id);
    c.input(id, &Message::FeaturesRequest.encode(4).unwrap(), 0);
    assert!(
        matches!(&take(&mut c, id)[..], [(_, Message::Error(e))] if matches!(e.code, ErrorCode::HelloFailed(_)))
    );
    assert!(!c.is_open(id));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a peer sends, valid messages with fields flipped or
    /// bytes of noise, the agent answers without panicking and every
    /// other connection goes on.
    #[test]
    fn no_input_panics_or_disturbs_another_connection(
        flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..8),
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        which in 0usize..6,
    ) {
        let mut c = core();
        let a = opened(&mut c);
        let b = opened(&mut c);
        let fm = crate::openflow::FlowMod {
            match_: crate::openflow::Match::from_fields(vec![
                crate::openflow::oxm::OxmField::InPort(PortNo(1)),
            ]).unwrap(),
            instructions: vec![crate::openflow::Instruction::ApplyActions(vec![
                crate::openflow::Action::output(PortNo(2)),
            ])],
            ..Default::default()
        };
        let msgs = [
            Message::FlowMod(fm),
            Message::FeaturesRequest,
            Message::MultipartRequest(MultipartRequest { flags: 0, body: Q::Flow(Default::default()) }),
            Message::RoleRequest(RoleMsg { role: ControllerRole::Master, generation_id: 1 }),
            Message::PacketOut(crate::openflow::PacketOut {
                in_port: PortNo::CONTROLLER,
                actions: vec![crate::openflow::Action::output(PortNo::FLOOD)],
                data: vec![0xff; 60],
                ..Default::default()
            }),
            Message::SetAsync(AsyncConfig::default()),
        ];
        let mut bytes = msgs[which].encode(7).unwrap();
        for (at, v) in flips {
            if let Some(x) = bytes.get_mut(at) {
                *x = v;
            }
        }
        bytes.extend(noise);
        c.input(a, &bytes, SEC);
        let _ = take(&mut c, a);
        let echo = Message::EchoRequest(b"ok".to_vec()).encode(3).unwrap();
        c.input(b, &echo, SEC);
        let got = take(&mut c, b);
        proptest::prop_assert!(got.iter().any(|(h, m)| h.xid == 3 && *m == Message::EchoReply(b"ok".to_vec())));
    }
}

/// Through the real flow module: an NXM flow from a plain 1.0 peer (IPv6
/// and a register), listed whole by NXST_FLOW, and its removal told as
/// NXT_FLOW_REMOVED with the whole match.
#[test]
fn nxm_flows_through_the_flow_module() {
    use crate::openflow::nicira::{NxMatchField, Register};
    use crate::openflow::oxm::{Masked, OxmField};
    use crate::openflow::v10;
    let mut c = core();
    let id = c.open("plain".into(), 0);
    let hello = v10::encode(&Message::Hello(Hello::default()), 1).unwrap();
    c.input(id, &hello, 0);
    assert_eq!(c.conn(id).unwrap().version, v10::VERSION);
    c.conn_mut(id).unwrap().out.clear();
    let nxm = v10::Ctx {
        flow_format: v10::nx::FlowFormat::Nxm,
        ..v10::Ctx::default()
    };
    let take10 = |c: &mut Core| -> Vec<Message> {
        let conn = c.conn_mut(id).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(len) = frame_len(&conn.out[at..]) {
            out.push(v10::decode(&conn.out[at..at + len], &nxm).unwrap().1);
            at += len;
        }
        conn.out.drain(..at);
        out
    };
    let set_format = Message::Experimenter(crate::openflow::message::Experimenter {
        experimenter: 0x2320,
        exp_type: v10::nx_subtype::SET_FLOW_FORMAT,
        data: 2u32.to_be_bytes().to_vec(),
    });
    c.input(id, &v10::encode(&set_format, 2).unwrap(), SEC);
    let m = crate::openflow::Match::from_fields(vec![
        OxmField::EthType(0x86dd),
        OxmField::Ipv6Src(Masked::exact(std::net::Ipv6Addr::LOCALHOST)),
    ])
    .unwrap()
    .with_registers(vec![NxMatchField {
        reg: Register::Reg(2),
        value: 7,
        mask: None,
    }])
    .unwrap();
    let add = crate::openflow::FlowMod {
        priority: 5,
        flags: crate::openflow::v10::flow10::flags::SEND_FLOW_REM,
        match_: m.clone(),
        ..Default::default()
    };
    c.input(
        id,
        &v10::encode_with(&Message::FlowMod(add), 3, &nxm).unwrap(),
        SEC,
    );
    assert!(take10(&mut c).is_empty(), "the flow is taken");
    let req = Message::MultipartRequest(MultipartRequest {
        flags: 0,
        body: Q::Flow(Default::default()),
    });
    c.input(id, &v10::encode_with(&req, 4, &nxm).unwrap(), SEC);
    let got = take10(&mut c);
    let [Message::MultipartReply(r)] = &got[..] else {
        panic!("{got:?}")
    };
    let crate::openflow::multipart::MultipartReplyBody::Flow(flows) = &r.body else {
        panic!("{r:?}")
    };
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].match_, m);
    let del = crate::openflow::FlowMod {
        command: crate::openflow::FlowModCommand::Delete,
        table_id: crate::openflow::table_id::ALL,
        match_: crate::openflow::Match::from_fields(vec![OxmField::EthType(0x86dd)]).unwrap(),
        ..Default::default()
    };
    c.input(
        id,
        &v10::encode_with(&Message::FlowMod(del), 5, &nxm).unwrap(),
        SEC,
    );
    let raw = c.conn(id).unwrap().out.clone();
    assert_eq!(raw[1], v10::msg_type::VENDOR, "NXT_FLOW_REMOVED");
    let got = take10(&mut c);
    let [Message::FlowRemoved(fr)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((fr.priority, &fr.match_), (5, &m));
}
