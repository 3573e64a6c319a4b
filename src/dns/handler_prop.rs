//! Property tests of the packet path (stable-toolchain counterpart of `fuzz/packet`): any bytes,
//! well-formed queries and mutated queries go through `Handler::handle` over UDP and TCP, and
//! every response must parse, echo the id and question, respect the transport's size limit,
//! and carry no records when truncated. `wire::parse` must accept nothing it cannot bound.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType};
use proptest::prelude::*;

use super::{CLASSIC_UDP_SIZE, DEFAULT_MAX_UDP_SIZE, Handler, HandlerConfig, MAX_TCP_MESSAGE};
use crate::dns::metrics::Transport;
use crate::dns::rrl;
use crate::dns::wire::{self, HEADER_LEN};
use crate::routing::publish::{Publisher, load_sources};

/// The fuzz corpus zones: the example GSLB zone, the core fixtures and a master-file zone.
fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (zones, geo) = load_sources(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
        )
        .unwrap();
        let publisher = Publisher::new(zones, geo, Arc::default()).unwrap();
        Handler::new(
            Arc::new(publisher),
            Arc::default(),
            HandlerConfig {
                identity: Some(super::txt_rdata("prop-1")),
                version: Some(super::txt_rdata(&"v".repeat(600))),
                ..HandlerConfig::default()
            },
        )
    })
}

/// Runs `packet` through the handler on both transports and checks every response.
fn check(packet: &[u8], source: IpAddr) -> Result<(), TestCaseError> {
    let h = handler();
    let parsed = wire::parse(packet);
    if let Ok(q) = &parsed {
        prop_assert!(q.question_end <= packet.len() && q.question_end > HEADER_LEN);
    }
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        if !h.handle(packet, source, transport, &mut out) {
            // Only packets without a header, and responses, go unanswered.
            let is_response = packet.get(2).is_some_and(|b| b & 0x80 != 0);
            prop_assert!(packet.len() < HEADER_LEN || is_response);
            continue;
        }
        let limit = match (
            transport,
            parsed.as_ref().map(|q| q.edns.map(|e| e.udp_size)),
        ) {
            (Transport::Tcp, _) => MAX_TCP_MESSAGE,
            (Transport::Udp, Ok(Some(size))) => {
                usize::from(size.clamp(CLASSIC_UDP_SIZE, DEFAULT_MAX_UDP_SIZE))
            }
            (Transport::Udp, _) => usize::from(CLASSIC_UDP_SIZE),
        };
        prop_assert!(out.len() <= limit, "{} > {limit}", out.len());
        let msg = Message::from_vec(&out)
            .map_err(|e| TestCaseError::fail(format!("response does not parse: {e}")))?;
        prop_assert_eq!(msg.metadata.message_type, MessageType::Response);
        prop_assert_eq!(Some(msg.metadata.id), wire::header(packet).map(|h| h.id));
        if let Ok(q) = &parsed {
            // The question is echoed byte for byte (letter case included).
            prop_assert_eq!(
                out.get(HEADER_LEN..q.question_end),
                packet.get(HEADER_LEN..q.question_end)
            );
        }
        if msg.metadata.truncation {
            prop_assert!(msg.answers.is_empty() && msg.authorities.is_empty());
        }
        let mut slipped = out.clone();
        rrl::truncate(&mut slipped);
        let s = Message::from_vec(&slipped)
            .map_err(|e| TestCaseError::fail(format!("slipped response does not parse: {e}")))?;
        prop_assert!(s.metadata.truncation && s.answers.is_empty() && s.additionals.is_empty());
    }
    Ok(())
}

fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            b"www".to_vec(), b"WwW".to_vec(), b"gslb".to_vec(), b"example".to_vec(),
            b"test".to_vec(), b"near".to_vec(), b"static".to_vec(), b"docs".to_vec(),
            b"ns1".to_vec(), b"neg".to_vec(), b"version".to_vec(), b"bind".to_vec(),
            b"_tcp".to_vec(), b"*".to_vec(), b"in-addr".to_vec(), b"arpa".to_vec(),
        ]),
        1 => prop::collection::vec(any::<u8>(), 1..=63),
    ]
}

/// A query as bytes: a name from zone-like labels, any type and class, optional EDNS with
/// any payload size, version and ECS option (valid or not).
fn query() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        any::<u16>(),
        prop::collection::vec(label(), 0..8),
        prop_oneof![
            4 => prop::sample::select(vec![1u16, 2, 5, 6, 12, 15, 16, 28, 33, 41, 43, 99, 252, 255]),
            1 => any::<u16>(),
        ],
        prop_oneof![4 => Just(1u16), 1 => Just(3u16), 1 => any::<u16>()],
        prop::option::of((
            any::<u16>(),
            prop_oneof![4 => Just(0u8), 1 => any::<u8>()],
            any::<bool>(),
            prop::option::of((
                prop_oneof![Just(1u16), Just(2u16), any::<u16>()],
                any::<u8>(),
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 0..20),
            )),
        )),
    )
        .prop_map(|(id, flags, labels, qtype, qclass, edns)| {
            let mut p = Vec::new();
            // Keep QR clear and the opcode mostly QUERY so most cases reach the answer path.
            let flags = if flags % 8 == 0 { flags & 0x7fff } else { flags & 0x07ff };
            let ar = u16::from(edns.is_some());
            for v in [id, flags, 1, 0, 0, ar] {
                p.extend_from_slice(&v.to_be_bytes());
            }
            for l in labels {
                p.push(l.len() as u8);
                p.extend_from_slice(&l);
            }
            p.push(0);
            p.extend_from_slice(&qtype.to_be_bytes());
            p.extend_from_slice(&qclass.to_be_bytes());
            if let Some((size, version, dnssec, ecs)) = edns {
                let mut opts = Vec::new();
                if let Some((family, source, scope, addr)) = ecs {
                    opts.extend_from_slice(&8u16.to_be_bytes());
                    opts.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
                    opts.extend_from_slice(&family.to_be_bytes());
                    opts.push(source);
                    opts.push(scope);
                    opts.extend_from_slice(&addr);
                }
                p.push(0);
                p.extend_from_slice(&41u16.to_be_bytes());
                p.extend_from_slice(&size.to_be_bytes());
                p.push(0);
                p.push(version);
                p.extend_from_slice(&(if dnssec { 0x8000u16 } else { 0 }).to_be_bytes());
                p.extend_from_slice(&(opts.len() as u16).to_be_bytes());
                p.extend_from_slice(&opts);
            }
            p
        })
}

fn source() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn any_bytes_get_a_well_formed_answer_or_none(
        packet in prop::collection::vec(any::<u8>(), 0..600),
        src in source(),
    ) {
        check(&packet, src)?;
    }

    #[test]
    fn generated_queries_get_well_formed_answers(packet in query(), src in source()) {
        check(&packet, src)?;
    }

    #[test]
    fn mutated_queries_get_well_formed_answers_or_none(
        packet in query(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        src in source(),
    ) {
        let mut packet = packet;
        for (at, byte) in edits {
            let i = at.index(packet.len());
            packet[i] = byte;
        }
        check(&packet, src)?;
        packet.truncate(cut.index(packet.len() + 1));
        check(&packet, src)?;
    }
}

/// Protocol corners, answered as Knot or the RFCs say (see the cases), over UDP and TCP.
#[test]
fn protocol_corners_get_the_right_rcode_question_and_opt() {
    fn name(n: &str) -> Vec<u8> {
        let mut p = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p
    }
    fn header(flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
        [0xbeefu16, flags, qd, an, ns, ar]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }
    fn question(qtype: u16) -> Vec<u8> {
        let mut q = name("www.example.test.");
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }
    fn opt(version: u8, rdata: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, version, 0, 0];
        o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        o.extend_from_slice(rdata);
        o
    }
    fn ecs(scope: u8) -> Vec<u8> {
        vec![0, 8, 0, 7, 0, 1, 24, scope, 10, 1, 2]
    }
    let q = question(1);
    // (what, packet, rcode with extended bits, question echoed, OPT in the response)
    let cases: Vec<(&str, Vec<u8>, u16, bool, bool)> = vec![
        (
            "EDNS version 1 with a malformed option: BADVERS, not FORMERR",
            [
                header(0x0100, 1, 0, 0, 1),
                q.clone(),
                opt(1, &[0, 8, 0, 16, 0]),
            ]
            .concat(),
            16,
            true,
            true,
        ),
        (
            "OPT in the answer section: FORMERR with question and OPT",
            [
                header(0x0100, 1, 1, 0, 1),
                q.clone(),
                opt(0, &[]),
                opt(0, &[]),
            ]
            .concat(),
            1,
            true,
            true,
        ),
        (
            "OPT in the authority section: FORMERR with question",
            [header(0x0100, 1, 0, 1, 0), q.clone(), opt(0, &[])].concat(),
            1,
            true,
            false,
        ),
        (
            "TSIG qtype: NOTIMP, not NODATA",
            [header(0x0100, 1, 0, 0, 1), question(250), opt(0, &[])].concat(),
            4,
            true,
            true,
        ),
        (
            "TKEY qtype: NOTIMP, not NODATA",
            [header(0x0100, 1, 0, 0, 0), question(249)].concat(),
            4,
            true,
            false,
        ),
        (
            "ECS with a non-zero scope: FORMERR with question and OPT",
            [header(0x0100, 1, 0, 0, 1), q.clone(), opt(0, &ecs(8))].concat(),
            1,
            true,
            true,
        ),
        (
            "ECS with a zero scope: answered",
            [header(0x0100, 1, 0, 0, 1), q.clone(), opt(0, &ecs(0))].concat(),
            0,
            true,
            true,
        ),
        (
            "two OPT records: FORMERR with question and OPT",
            [
                header(0x0100, 1, 0, 0, 2),
                q.clone(),
                opt(0, &[]),
                opt(0, &[]),
            ]
            .concat(),
            1,
            true,
            true,
        ),
        (
            "STATUS opcode: NOTIMP with question",
            [header(2 << 11, 1, 0, 0, 0), q.clone()].concat(),
            4,
            true,
            false,
        ),
        (
            "UPDATE opcode with OPT: NOTIMP with question and OPT",
            [header(5 << 11, 1, 0, 0, 1), q.clone(), opt(0, &[])].concat(),
            4,
            true,
            true,
        ),
        (
            "no question, OPT: FORMERR with OPT",
            [header(0x0100, 0, 0, 0, 1), opt(0, &[])].concat(),
            1,
            false,
            true,
        ),
        (
            "trailing bytes: FORMERR with question",
            [header(0x0100, 1, 0, 0, 0), q.clone(), vec![1, 2]].concat(),
            1,
            true,
            false,
        ),
    ];
    let h = handler();
    let mut out = Vec::new();
    for (what, packet, rcode, with_question, with_opt) in cases {
        for transport in [Transport::Udp, Transport::Tcp] {
            assert!(h.handle(&packet, "192.0.2.1".parse().unwrap(), transport, &mut out));
            let msg = Message::from_vec(&out)
                .unwrap_or_else(|e| panic!("{what}: response does not parse: {e}"));
            let got_opt = msg.edns.is_some();
            let ext = msg.edns.as_ref().map_or(0, |e| u16::from(e.rcode_high()));
            let got_rcode = (ext << 4) | u16::from(out[3] & 0x0F);
            assert_eq!(got_rcode, rcode, "{what} over {transport:?}");
            assert_eq!(msg.queries.len(), usize::from(with_question), "{what}");
            if with_question {
                assert_eq!(
                    &out[HEADER_LEN..HEADER_LEN + q.len()],
                    &packet[HEADER_LEN..HEADER_LEN + q.len()],
                    "{what}"
                );
            }
            assert_eq!(got_opt, with_opt, "{what} over {transport:?}");
            assert_eq!(out[0..2], [0xbe, 0xef], "{what}");
        }
    }
}
