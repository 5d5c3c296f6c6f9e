//! The ACL in memory: rule parsing, decisions on crafted frames, the
//! verdicts of a batch and the counters.

use mswitch::wire::{MacAddr, udp_frame};

use super::*;

fn udp(dport: u16) -> Vec<u8> {
    udp_frame(
        60,
        MacAddr::BROADCAST,
        MacAddr::local(1),
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        5000,
        dport,
    )
}

/// A UDP frame turned into another IP protocol (same header otherwise).
fn ip_proto(proto: u8, dport: u16) -> Vec<u8> {
    let mut f = udp(dport);
    f[14 + 9] = proto;
    f
}

fn with_ethertype(t: u16) -> Vec<u8> {
    let mut f = udp(1);
    f[12..14].copy_from_slice(&t.to_be_bytes());
    f
}

fn ipv6_tcp(dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 20];
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    f[14] = 0x60;
    f[14 + 6] = PROTO_TCP;
    f[54 + 2..54 + 4].copy_from_slice(&dport.to_be_bytes());
    f
}

/// Runs one batch from `in_port` through `acl`; returns the verdicts.
fn run(acl: &Acl, in_port: u16, frames: &[Vec<u8>]) -> Vec<Verdict> {
    let mut bufs = frames.to_vec();
    let mut refs = Vec::new();
    let mut batch = Batch::from_buffers(&mut bufs, &mut refs, PortId(in_port));
    let mut out = Verdicts::with_capacity(frames.len());
    out.reset(batch.len());
    acl.process(&mut batch, &mut out, 0);
    out.as_slice().to_vec()
}

fn acl(args: &str) -> Acl {
    Acl::new(AclConfig::parse(args).unwrap()).unwrap()
}

fn counter(m: &dyn Module, name: &str) -> u64 {
    m.counters()
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.1)
        .unwrap()
}

#[test]
fn rules_parse_and_refuse() {
    let c = AclConfig::parse(
        "rule=deny:tcp:23, rule=permit:udp:53-54@2, rule=deny:eth:0x88cc, rule=deny:proto:47, default=deny, forward=learn",
    )
    .unwrap();
    assert_eq!(
        c.rules,
        [
            Rule {
                action: Action::Deny,
                what: Match::Ports {
                    proto: PROTO_TCP,
                    lo: 23,
                    hi: 23
                },
                in_port: None
            },
            Rule {
                action: Action::Permit,
                what: Match::Ports {
                    proto: PROTO_UDP,
                    lo: 53,
                    hi: 54
                },
                in_port: Some(PortId(2))
            },
            Rule {
                action: Action::Deny,
                what: Match::EtherType(0x88cc),
                in_port: None
            },
            Rule {
                action: Action::Deny,
                what: Match::IpProto(47),
                in_port: None
            },
        ]
    );
    assert_eq!((c.default, c.forward), (Action::Deny, Forward::Learn));
    assert_eq!(AclConfig::parse("").unwrap().rules, []);
    for (args, why) in [
        ("rule=deny", "rule 'deny' is not ACTION:MATCH[@PORT]"),
        ("rule=drop:any", "'drop' is not permit or deny"),
        ("rule=deny:tcp:9-1", "port range 9-1 is empty"),
        ("rule=deny:udp:65536", "'65536' is not a port (0..=65535)"),
        (
            "rule=deny:eth:0x10000",
            "'0x10000' is not an ethertype (0..=0xffff)",
        ),
        ("rule=deny:proto:", "'' is not an IP protocol (0..=255)"),
        ("rule=deny:any@0", "'@0' is not a port number"),
        ("rule=deny:any@x", "'@x' is not a port number"),
        ("rule=deny:gre", "'gre' is not a match"),
        ("rule=deny:arp:1", "'arp:1' is not a match"),
        ("default=maybe", "default: 'maybe' is not permit or deny"),
        ("forward=drop", "forward: 'drop' is not flood or learn"),
        (
            "colour=red",
            "unknown option 'colour' (rule, default, forward)",
        ),
        ("rule", "expected KEY=VALUE, got 'rule'"),
    ] {
        let e = AclConfig::parse(args).err().unwrap().to_string();
        assert!(e.starts_with(&format!("module acl: {why}")), "{args}: {e}");
    }
    let many = vec!["rule=deny:any"; MAX_RULES + 1].join(",");
    assert!(AclConfig::parse(&many).is_err());
    assert_eq!(
        AclConfig::parse(&many[..many.len() - ",rule=deny:any".len()])
            .unwrap()
            .rules
            .len(),
        MAX_RULES
    );
}

#[test]
fn first_matching_rule_decides() {
    let a = acl(
        "rule=deny:fragment,rule=permit:udp:53,rule=deny:udp:1-1023,rule=deny:tcp:22@2,rule=deny:arp,rule=deny:icmp,rule=permit:ipv6,default=deny",
    );
    let mut frag = udp(53);
    frag[14 + 6] = 0x20; // more fragments
    let frames = [
        udp(53),                 // permit:udp:53
        udp(80),                 // deny:udp:1-1023
        udp(8080),               // default deny
        ip_proto(PROTO_TCP, 22), // tcp 22 from port 1: not @2, default deny
        with_ethertype(0x0806),  // arp
        ip_proto(PROTO_ICMP, 0), // icmp
        ipv6_tcp(22),            // permit:ipv6
        frag,                    // deny:fragment, ahead of permit:udp:53
        vec![0; 10],             // too short: invalid
    ];
    let v = run(&a, 1, &frames);
    use Verdict::*;
    assert_eq!(
        v,
        [Flood, Drop, Drop, Drop, Drop, Drop, Flood, Drop, Invalid]
    );
    assert_eq!(counter(&a, "acl_permitted"), 2);
    assert_eq!(counter(&a, "acl_denied"), 6);
    assert_eq!(counter(&a, "acl_default"), 2);
    assert_eq!(counter(&a, "acl_invalid"), 1);
    assert_eq!(counter(&a, "acl_rules"), 7);
    // From port 2, the tcp:22 rule applies (and the default would too).
    let b = acl("rule=deny:tcp:22@2");
    assert_eq!(run(&b, 2, &[ip_proto(PROTO_TCP, 22)]), [Drop]);
    assert_eq!(run(&b, 1, &[ip_proto(PROTO_TCP, 22)]), [Flood]);
    assert_eq!(counter(&b, "acl_default"), 1);
}

#[test]
fn no_rules_is_the_default_for_every_frame() {
    let deny = acl("default=deny");
    assert_eq!(
        run(&deny, 1, &[udp(1), vec![0; 13]]),
        [Verdict::Drop, Verdict::Invalid]
    );
    assert_eq!(counter(&deny, "acl_default"), 1);
    assert_eq!(
        run(&acl(""), 1, &[with_ethertype(0x88cc)]),
        [Verdict::Flood]
    );
}

#[test]
fn later_fragments_match_no_port_rule() {
    let a = acl("rule=permit:udp:53,default=deny");
    let mut later = udp(53);
    later[14 + 7] = 0x10; // offset 16 bytes: no UDP header here
    assert_eq!(
        run(&a, 1, &[later, udp(53)]),
        [Verdict::Drop, Verdict::Flood]
    );
}

#[test]
fn learn_forwards_what_the_list_permits() {
    let a = acl("rule=deny:udp:9,forward=learn");
    a.port_attached(PortId(1));
    a.port_attached(PortId(2));
    // The bridge floods what it does not know yet; the list drops udp:9.
    assert_eq!(
        run(&a, 1, &[udp(7), udp(9)]),
        [Verdict::Flood, Verdict::Drop]
    );
    // A reply to local(1) from port 2: the bridge learnt it on port 1.
    let mut reply = udp(7);
    reply[0..6].copy_from_slice(&MacAddr::local(1).0);
    reply[6..12].copy_from_slice(&MacAddr::local(2).0);
    assert_eq!(run(&a, 2, &[reply]), [Verdict::Port(PortId(1))]);
    a.port_detached(PortId(1));
    a.tick(1);
    assert_eq!(counter(&a, "acl_denied"), 1);
}

#[test]
fn registered_and_built_by_spec() {
    mswitch::module::register(&INFO).unwrap();
    assert!(mswitch::module::names().contains(&"acl"));
    let m = mswitch::module::build("acl:rule=deny:any").unwrap();
    assert_eq!(m.name(), "acl");
    let inner = m.as_any().and_then(|a| a.downcast_ref::<Acl>()).unwrap();
    assert_eq!(inner.config().rules.len(), 1);
    assert!(mswitch::module::build("acl:rule=deny:nothing").is_err());
}
