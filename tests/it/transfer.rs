//! Zone transfers: AXFR over TCP to `--allow-transfer` sources only (RFC 5936).

use std::io::Write;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::{Meridian, Query, Transport, admin_args, frame, read_frame};

const BASIC: &str = "core/basic";

/// Sends an AXFR over TCP and reads messages until the closing SOA; returns them.
fn axfr(ns: &Meridian, zone: &str) -> Vec<Message> {
    let mut stream = ns.tcp_connect();
    let query = Query::new(zone, RecordType::AXFR).id(0x4242).to_bytes();
    stream.write_all(&frame(&query)).unwrap();
    let mut messages = Vec::new();
    let mut soas = 0;
    while soas < 2 {
        let raw = read_frame(&mut stream).expect("transfer ended before the closing SOA");
        let msg = Message::from_vec(&raw).unwrap();
        assert_eq!(msg.metadata.id, 0x4242);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{msg:?}");
        assert!(msg.metadata.authoritative);
        soas += msg
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        messages.push(msg);
        assert!(messages.len() < 100, "runaway transfer");
    }
    messages
}

#[test]
fn axfr_sends_the_zone_between_two_soas_to_allowed_sources() {
    let ns = Meridian::serve_with(BASIC, &["--allow-transfer", "127.0.0.1/32"]);
    let messages = axfr(&ns, "example.test.");
    let records: Vec<_> = messages.iter().flat_map(|m| m.answers.iter()).collect();
    assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
    let inner_soas = records[1..records.len() - 1]
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .count();
    assert_eq!(inner_soas, 0);
    // The zone's data is all there: apex NS and a few named records.
    let has = |name: &str, t: RecordType| {
        records
            .iter()
            .any(|r| r.name.to_ascii().eq_ignore_ascii_case(name) && r.record_type() == t)
    };
    assert!(has("example.test.", RecordType::NS));
    assert!(has("ns1.example.test.", RecordType::A));
    assert!(has("example.test.", RecordType::MX));
}

#[test]
fn a_large_zone_is_split_over_several_messages() {
    let admin = admin_args();
    let ns = Meridian::serve_copy(
        BASIC,
        &["--allow-transfer", "127.0.0.0/8", &admin[0], &admin[1]],
    );
    let mut zone = String::from(
        "origin = \"big.test.\"\nns = [\"ns1.big.test.\"]\n[soa]\nmname = \"ns1.big.test.\"\n\
         rname = \"h.big.test.\"\nserial = 7\n[[record]]\nname = \"ns1\"\ntype = \"A\"\n\
         data = [\"192.0.2.1\"]\n",
    );
    for i in 0..400 {
        zone.push_str(&format!(
            "[[record]]\nname = \"host{i}\"\ntype = \"TXT\"\ndata = ['\"{}\"']\n",
            "x".repeat(60)
        ));
    }
    ns.write_zone("big.test.toml", &zone);
    assert_eq!(ns.admin_post("/v1/reload", "").status, 200);
    let messages = axfr(&ns, "big.test.");
    assert!(messages.len() >= 2, "{} message(s)", messages.len());
    let txt = messages
        .iter()
        .flat_map(|m| m.answers.iter())
        .filter(|r| r.record_type() == RecordType::TXT)
        .count();
    assert_eq!(txt, 400);
    for m in &messages {
        assert!(m.to_vec().unwrap().len() < 65_535);
    }
}

#[test]
fn transfers_are_refused_without_permission_and_over_udp() {
    let closed = Meridian::serve(BASIC);
    for transport in Transport::ALL {
        let reply = closed.query("example.test.", RecordType::AXFR, transport);
        assert_eq!(reply.msg.metadata.response_code, ResponseCode::Refused);
    }
    let open = Meridian::serve_with(BASIC, &["--allow-transfer", "10.0.0.0/8"]);
    let reply = open.query("example.test.", RecordType::AXFR, Transport::Tcp);
    assert_eq!(
        reply.msg.metadata.response_code,
        ResponseCode::Refused,
        "source not allowed"
    );
    let allowed = Meridian::serve_with(BASIC, &["--allow-transfer", "127.0.0.1/32"]);
    let reply = allowed.query("example.test.", RecordType::AXFR, Transport::Udp);
    assert_eq!(
        reply.msg.metadata.response_code,
        ResponseCode::Refused,
        "AXFR over UDP"
    );
    let reply = allowed.query("www.example.test.", RecordType::AXFR, Transport::Tcp);
    assert_eq!(
        reply.msg.metadata.response_code,
        ResponseCode::Refused,
        "not a zone apex"
    );
}
