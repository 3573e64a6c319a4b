//! Zone transfers: AXFR over TCP to `--allow-transfer` sources only (RFC 5936).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::knot::{Knot, KnotOptions};
use crate::harness::{
    Meridian, NET_TIMEOUT, Query, Transport, admin_args, frame, rdata_wire, read_frame,
};

const BASIC: &str = "core/basic";

/// Sends an AXFR over TCP to Meridian and reads messages until the closing SOA; returns them,
/// each checked to be an authoritative NOERROR answer to the query.
fn axfr(ns: &Meridian, zone: &str) -> Vec<Message> {
    let messages = axfr_from(ns.dns, zone);
    for msg in &messages {
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{msg:?}");
        assert!(msg.metadata.authoritative);
    }
    messages
}

/// AXFR of `zone` from the server at `addr` (Meridian or Knot): every message up to the
/// closing SOA, each with the query's id.
pub(crate) fn axfr_from(addr: SocketAddr, zone: &str) -> Vec<Message> {
    let mut stream = TcpStream::connect_timeout(&addr, NET_TIMEOUT).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let query = Query::new(zone, RecordType::AXFR).id(0x4242).to_bytes();
    stream.write_all(&frame(&query)).unwrap();
    let mut messages = Vec::new();
    let mut soas = 0;
    while soas < 2 {
        let raw = read_frame(&mut stream).expect("transfer ended before the closing SOA");
        let msg = Message::from_vec(&raw).unwrap();
        assert_eq!(msg.metadata.id, 0x4242);
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

/// The records of a transfer as comparable tuples (owner lowercased, type, TTL, RDATA wire),
/// sorted: two servers' transfers of the same zone compare equal whatever their order.
fn record_set(messages: &[Message]) -> Vec<(String, RecordType, u32, Vec<u8>)> {
    let mut out: Vec<_> = messages
        .iter()
        .flat_map(|m| m.answers.iter())
        .map(|r| {
            (
                r.name.to_ascii().to_ascii_lowercase(),
                r.record_type(),
                r.ttl,
                rdata_wire(&r.data),
            )
        })
        .collect();
    out.sort();
    out
}

/// A zone several times the size of one message: four TXT RRsets of 61,560 bytes (each
/// alone nearly fills a message, so each must start a new one) among 400 small names.
/// Returns the master file's text and the number of records in it.
fn big_zone_master() -> (String, usize) {
    let mut text = String::from(
        "$ORIGIN big.test.\n$TTL 3600\n@ IN SOA ns1 h 7 7200 3600 1209600 300\n@ IN NS ns1\n\
         ns1 IN A 127.0.0.1\n",
    );
    let mut count = 3;
    for i in 0..400 {
        text.push_str(&format!("host{i} 300 IN TXT \"{}\"\n", "s".repeat(200)));
        count += 1;
        if i % 100 == 50 {
            for j in 0..60 {
                text.push_str(&format!(
                    "host{i}-big 600 IN TXT \"{j:04}{}\" \"{1}\" \"{1}\" \"{1}\"\n",
                    "b".repeat(246),
                    "b".repeat(250)
                ));
                count += 1;
            }
        }
    }
    (text, count)
}

/// The big zone of [`big_zone_master`] in `dir`, served by Meridian with transfers allowed
/// from loopback: the server, the master file, and how many records the zone holds.
fn serve_big_zone(dir: &Path) -> (Meridian, PathBuf, usize) {
    let (master, count) = big_zone_master();
    let zone_file = dir.join("big.test.zone");
    std::fs::write(&zone_file, &master).unwrap();
    std::fs::write(
        dir.join("big.test.toml"),
        "origin = \"big.test.\"\nrecords_file = \"big.test.zone\"\n",
    )
    .unwrap();
    let ns = Meridian::serve_dir(dir, &["--allow-transfer", "127.0.0.0/8"], false);
    (ns, zone_file, count)
}

#[test]
fn a_zone_of_several_messages_with_near_full_rrsets_transfers_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _, count) = serve_big_zone(dir.path());

    let messages = axfr(&ns, "big.test.");
    for m in &messages {
        assert!(!m.metadata.truncation, "a transfer message has TC set");
        assert!(!m.answers.is_empty(), "an empty transfer message");
        assert!(m.to_vec().unwrap().len() <= 65_535);
    }
    let records: Vec<_> = messages.iter().flat_map(|m| m.answers.iter()).collect();
    assert_eq!(records.len(), count + 1, "every record, and the SOA twice");
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
    let total: usize = messages.iter().map(|m| m.to_vec().unwrap().len()).sum();
    assert!(
        total > 4 * 65_535,
        "the zone is several messages' worth: {total}"
    );

    // A second opinion: dig completes the transfer and counts the same records.
    if let Some(out) = ns.dig(&["AXFR", "big.test."]) {
        assert!(!out.contains("Transfer failed"), "{out}");
        assert!(
            out.contains(&format!("XFR size: {} records", count + 1)),
            "{}",
            out.lines().rev().take(6).collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
#[ignore = "system test: needs knotd (Debian knot); run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn a_big_zone_transfers_the_same_records_as_knot() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, zone_file, count) = serve_big_zone(dir.path());
    let ours = record_set(&axfr(&ns, "big.test."));
    assert_eq!(ours.len(), count + 1, "meridian sent the whole zone");

    // Knot serves the same master file: the same records.
    let knot = Knot::serve(
        "big.test.",
        &zone_file,
        KnotOptions {
            allow_transfer: true,
            ..KnotOptions::default()
        },
    );
    let theirs = record_set(&axfr_from(knot.addr, "big.test."));
    assert_eq!(theirs.len(), count + 1, "knot sent the whole zone");
    assert_eq!(ours, theirs);
}
