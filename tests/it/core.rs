//! The nameserver core as a client sees it: authoritative answers per RFC 1034/1035, 2181,
//! 2308, 4592, 6891, 7766 and 8482 (answering as Knot DNS and NSD do), zone loading and
//! reloading, the CLI's exit codes. Fixtures: `tests/fixtures/core/` (see its README.md).
//!
//! Owns: expectations written from the RFCs and the spec. Must never: adjust an expectation
//! to what the implementation happens to do.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use crate::harness::{
    Meridian, NET_TIMEOUT, Query, Reply, SILENCE, Transport, a_records, admin_args, fixture, frame,
    header, name, rdata_wire, read_frame, run, run_serve, wire_name,
};

const BASIC: &str = "core/basic";
const SERIAL: u32 = 2026112501;

// ---- helpers ----

/// The single SOA in the authority section, checked to be the apex SOA of `zone`.
fn authority_soa<'a>(r: &'a Reply, zone: &str) -> (&'a Record, &'a SOA) {
    let soas: Vec<&Record> = r
        .authorities
        .iter()
        .filter(|rec| rec.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(soas.len(), 1, "want one SOA in authority: {:?}", r.msg);
    let rec = soas[0];
    assert_eq!(rec.name, name(zone), "SOA owner");
    let RData::SOA(soa) = &rec.data else {
        unreachable!()
    };
    (rec, soa)
}

/// RFC 2308: a negative answer (NXDOMAIN or NODATA) is authoritative, has no answer
/// records (unless a CNAME led there), the zone's SOA in authority, and that SOA's TTL is
/// min(SOA TTL, SOA MINIMUM) (§3, §5).
fn assert_negative(r: &Reply, rcode: ResponseCode, zone: &str, negative_ttl: u32, ctx: &str) {
    assert_eq!(r.metadata.response_code, rcode, "{ctx}: rcode");
    assert!(r.metadata.authoritative, "{ctx}: AA");
    assert!(!r.metadata.recursion_available, "{ctx}: RA");
    assert!(
        r.answers
            .iter()
            .all(|a| a.record_type() == RecordType::CNAME),
        "{ctx}: answer must be empty (or CNAMEs): {:?}",
        r.answers
    );
    let (rec, _) = authority_soa(r, zone);
    assert_eq!(rec.ttl, negative_ttl, "{ctx}: negative TTL on the SOA");
}

/// Sorted (TTL, RDATA wire bytes) of the answer records of `rtype` owned by `owner`.
fn answer_set(r: &Reply, owner: &str, rtype: RecordType) -> Vec<(u32, Vec<u8>)> {
    let mut v: Vec<(u32, Vec<u8>)> = r
        .answers
        .iter()
        .filter(|a| a.record_type() == rtype && a.name == name(owner))
        .map(|a| (a.ttl, rdata_wire(&a.data)))
        .collect();
    v.sort();
    v
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn www_addrs() -> Vec<Ipv4Addr> {
    vec![ip4("192.0.2.10"), ip4("192.0.2.11")]
}

// ---- header bits ----

#[test]
fn authoritative_answers_set_aa_copy_rd_and_never_set_ra() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        for rd in [false, true] {
            let r = ns.exchange(&Query::new("www.example.test.", RecordType::A).rd(rd), t);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t:?}");
            assert!(r.metadata.authoritative, "{t:?} rd={rd}: AA");
            assert!(!r.metadata.recursion_available, "{t:?} rd={rd}: RA");
            assert_eq!(r.metadata.recursion_desired, rd, "{t:?}: RD is copied");
            assert_eq!(a_records(&r), www_addrs(), "{t:?}");
            assert_eq!(r.queries.len(), 1, "{t:?}: question echoed");
        }
    }
}

#[test]
fn out_of_zone_names_are_refused() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        for qname in [
            "www.elsewhere.invalid.",
            "test.",
            ".",
            "example.test.example.",
        ] {
            let r = ns.exchange(&Query::new(qname, RecordType::A).rd(true), t);
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::Refused,
                "{t:?} {qname}"
            );
            assert!(r.answers.is_empty(), "{t:?} {qname}: no answer");
            assert!(!r.metadata.authoritative, "{t:?} {qname}: not AA");
            assert!(!r.metadata.recursion_available, "{t:?} {qname}: RA");
        }
    }
}

// ---- negative answers (RFC 2308) ----

#[test]
fn nxdomain_carries_soa_with_negative_ttl() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("nope.example.test.", RecordType::A, t);
        // SOA TTL 3600 (zone default), minimum 300.
        assert_negative(&r, ResponseCode::NXDomain, "example.test.", 300, "nope A");
        assert!(r.answers.is_empty());
        let (_, soa) = authority_soa(&r, "example.test.");
        assert_eq!(soa.serial, SERIAL);

        let r = ns.query("deep.below.nope.example.test.", RecordType::TXT, t);
        assert_negative(&r, ResponseCode::NXDomain, "example.test.", 300, "deep");

        // SOA TTL 60 (zone default), minimum 900: the lower one wins.
        let r = ns.query("nope.neg.test.", RecordType::A, t);
        assert_negative(&r, ResponseCode::NXDomain, "neg.test.", 60, "nope.neg");
    }
}

#[test]
fn nodata_carries_soa_with_negative_ttl() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("www.example.test.", RecordType::MX, t);
        assert_negative(&r, ResponseCode::NoError, "example.test.", 300, "www MX");
        assert!(r.answers.is_empty());

        let r = ns.query("www.neg.test.", RecordType::AAAA, t);
        assert_negative(&r, ResponseCode::NoError, "neg.test.", 60, "www.neg AAAA");
        assert!(r.answers.is_empty());
    }
}

#[test]
fn empty_non_terminals_are_nodata_not_nxdomain() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        // a.b.ent exists, so b.ent and ent exist too (RFC 4592 §2.2.2, RFC 8020).
        for qname in [
            "b.ent.example.test.",
            "ent.example.test.",
            "wild.example.test.",
        ] {
            let r = ns.query(qname, RecordType::A, t);
            assert_negative(&r, ResponseCode::NoError, "example.test.", 300, qname);
            assert!(r.answers.is_empty(), "{qname}");
        }
        let r = ns.query("a.b.ent.example.test.", RecordType::A, t);
        assert_eq!(a_records(&r), [ip4("192.0.2.70")]);
        let r = ns.query("x.b.ent.example.test.", RecordType::A, t);
        assert_negative(&r, ResponseCode::NXDomain, "example.test.", 300, "x.b.ent");
    }
}

// ---- wildcards (RFC 4592) ----

#[test]
fn wildcard_synthesizes_records_owned_by_the_qname() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        for qname in ["foo.wild.example.test.", "a.b.wild.example.test."] {
            let r = ns.query(qname, RecordType::A, t);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{qname}");
            assert!(r.metadata.authoritative, "{qname}: AA");
            assert_eq!(r.answers.len(), 1, "{qname}: {:?}", r.answers);
            assert_eq!(r.answers[0].name, name(qname), "owner is the qname");
            assert_eq!(a_records(&r), [ip4("192.0.2.80")]);

            let r = ns.query(qname, RecordType::TXT, t);
            assert_eq!(
                answer_set(&r, qname, RecordType::TXT),
                [(3600, [&[8u8][..], b"wildcard"].concat())],
                "{qname} TXT"
            );
        }
    }
}

#[test]
fn wildcard_does_not_apply_below_or_at_an_existing_name() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("host.wild.example.test.", RecordType::A, t);
        assert_eq!(a_records(&r), [ip4("192.0.2.81")], "the real record, not *");
        // host.wild exists (no TXT): NODATA, not the wildcard's TXT.
        let r = ns.query("host.wild.example.test.", RecordType::TXT, t);
        assert_negative(&r, ResponseCode::NoError, "example.test.", 300, "host TXT");
        // The closest encloser is host.wild, which has no `*` child: NXDOMAIN.
        let r = ns.query("sub.host.wild.example.test.", RecordType::A, t);
        assert_negative(&r, ResponseCode::NXDomain, "example.test.", 300, "sub.host");
    }
}

#[test]
fn wildcard_owner_queried_literally() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("*.wild.example.test.", RecordType::A, t);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].name, name("*.wild.example.test."));
        assert_eq!(a_records(&r), [ip4("192.0.2.80")]);
    }
}

#[test]
fn wildcard_nodata_for_other_types() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("foo.wild.example.test.", RecordType::AAAA, t);
        assert_negative(
            &r,
            ResponseCode::NoError,
            "example.test.",
            300,
            "foo.wild AAAA",
        );
        assert!(r.answers.is_empty());
    }
}

// ---- CNAME (RFC 1034 §3.6.2, §4.3.2; RFC 2308 §2.1; RFC 6604) ----

#[test]
fn cname_chain_is_followed_in_zone() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("alias1.example.test.", RecordType::A, t);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert!(r.metadata.authoritative, "{t:?}: AA");
        let got: Vec<(String, RecordType)> = r
            .answers
            .iter()
            .map(|a| (a.name.to_ascii().to_lowercase(), a.record_type()))
            .collect();
        let cname = |o: &str| (o.to_string(), RecordType::CNAME);
        let a = |o: &str| (o.to_string(), RecordType::A);
        assert_eq!(
            got,
            [
                cname("alias1.example.test."),
                cname("alias2.example.test."),
                a("www.example.test."),
                a("www.example.test.")
            ],
            "{t:?}: CNAMEs in chain order, then the target's RRset"
        );
        assert_eq!(
            answer_set(&r, "alias1.example.test.", RecordType::CNAME)[0].1,
            wire_name("alias2.example.test.")
        );
        assert_eq!(
            answer_set(&r, "alias2.example.test.", RecordType::CNAME)[0].1,
            wire_name("www.example.test.")
        );
        assert_eq!(a_records(&r), www_addrs());

        // The chain ends in NODATA: CNAMEs plus the SOA (RFC 2308 §2.2).
        let r = ns.query("alias1.example.test.", RecordType::MX, t);
        assert_negative(&r, ResponseCode::NoError, "example.test.", 300, "alias1 MX");
        assert_eq!(r.answers.len(), 2, "{t:?}: both CNAMEs: {:?}", r.answers);
    }
}

#[test]
fn cname_to_missing_in_zone_name_is_nxdomain_with_the_cname() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("dangling.example.test.", RecordType::A, t);
        assert_negative(&r, ResponseCode::NXDomain, "example.test.", 300, "dangling");
        assert_eq!(r.answers.len(), 1, "{t:?}: {:?}", r.answers);
        assert_eq!(
            answer_set(&r, "dangling.example.test.", RecordType::CNAME),
            [(3600, wire_name("nowhere.example.test."))]
        );
    }
}

#[test]
fn cname_qtype_returns_only_the_cname() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("alias1.example.test.", RecordType::CNAME, t);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1, "{t:?}: {:?}", r.answers);
        assert_eq!(
            answer_set(&r, "alias1.example.test.", RecordType::CNAME),
            [(3600, wire_name("alias2.example.test."))]
        );
    }
}

#[test]
fn cname_out_of_zone_is_answered_with_just_the_cname() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("external.example.test.", RecordType::A, t);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1, "{t:?}: {:?}", r.answers);
        assert_eq!(
            answer_set(&r, "external.example.test.", RecordType::CNAME),
            [(3600, wire_name("www.elsewhere.invalid."))]
        );
    }
}

// ---- delegation (RFC 1034 §4.3.2 step 3b) ----

#[test]
fn names_at_and_below_a_cut_get_a_referral_with_glue() {
    let ns = Meridian::serve(BASIC);
    let cases = [
        ("sub.example.test.", RecordType::A),
        ("sub.example.test.", RecordType::NS),
        ("www.sub.example.test.", RecordType::A),
        ("deep.www.sub.example.test.", RecordType::AAAA),
        ("ns1.sub.example.test.", RecordType::A),
    ];
    for t in Transport::ALL {
        for (qname, qtype) in cases {
            let ctx = format!("{t:?} {qname} {qtype}");
            let r = ns.query(qname, qtype, t);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
            assert!(!r.metadata.authoritative, "{ctx}: a referral is not AA");
            assert!(r.answers.is_empty(), "{ctx}: {:?}", r.answers);
            let mut ns_targets: Vec<String> = r
                .authorities
                .iter()
                .map(|rec| {
                    assert_eq!(rec.name, name("sub.example.test."), "{ctx}");
                    match &rec.data {
                        RData::NS(n) => n.0.to_ascii().to_lowercase(),
                        other => panic!("{ctx}: unexpected in authority: {other:?}"),
                    }
                })
                .collect();
            ns_targets.sort();
            assert_eq!(
                ns_targets,
                ["ns1.sub.example.test.", "ns2.sub.example.test."],
                "{ctx}"
            );
            let mut glue: Vec<(String, String)> = r
                .additionals
                .iter()
                .map(|rec| (rec.name.to_ascii().to_lowercase(), rec.data.to_string()))
                .collect();
            glue.sort();
            assert_eq!(
                glue,
                [
                    ("ns1.sub.example.test.".into(), "192.0.2.100".into()),
                    ("ns1.sub.example.test.".into(), "2001:db8::100".into()),
                    ("ns2.sub.example.test.".into(), "192.0.2.101".into()),
                ],
                "{ctx}: glue A/AAAA in additional"
            );
        }
    }
}

#[test]
fn cname_into_a_cut_gives_the_cname_then_a_referral() {
    // RFC 1034 §4.3.2: after the CNAME, QNAME restarts at the target; a match below a cut
    // is step 3b (NS of the cut in authority, addresses in additional). AA covers the
    // first owner name (RFC 1035 §4.1.1), which is ours.
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("tosub.example.test.", RecordType::A, t);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert!(r.metadata.authoritative, "{t:?}: AA for the CNAME owner");
        assert_eq!(
            answer_set(&r, "tosub.example.test.", RecordType::CNAME),
            [(3600, wire_name("www.sub.example.test."))]
        );
        assert_eq!(r.answers.len(), 1, "{t:?}: {:?}", r.answers);
        let mut ns_targets: Vec<String> = r
            .authorities
            .iter()
            .filter(|rec| rec.record_type() == RecordType::NS)
            .map(|rec| {
                assert_eq!(rec.name, name("sub.example.test."), "{t:?}");
                rec.data.to_string().to_lowercase()
            })
            .collect();
        ns_targets.sort();
        assert_eq!(
            ns_targets,
            ["ns1.sub.example.test.", "ns2.sub.example.test."],
            "{t:?}: the cut's NS in authority: {:?}",
            r.authorities
        );
        assert!(
            r.authorities
                .iter()
                .all(|rec| rec.record_type() == RecordType::NS),
            "{t:?}: no SOA in a referral: {:?}",
            r.authorities
        );
    }
}

// ---- question handling ----

#[test]
fn question_case_is_echoed_byte_for_byte() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let q = Query::new("WwW.ExAmple.TEST.", RecordType::A);
        let sent = q.to_bytes();
        let r = ns.exchange(&q, t);
        assert_eq!(
            &r.raw[12..sent.len()],
            &sent[12..],
            "{t:?}: question section echoed with the client's case"
        );
        assert!(r.metadata.authoritative);
        assert_eq!(a_records(&r), www_addrs());
    }
}

#[test]
fn any_gets_a_minimal_answer() {
    // RFC 8482 §4: answer ANY with a subset (one RRset) or a synthesized HINFO; the apex
    // has six RRsets (SOA, NS, A, MX, TXT, CAA).
    let ns = Meridian::serve(BASIC);
    let r = ns.query("example.test.", RecordType::ANY, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert!(!r.answers.is_empty(), "RFC 8482: not empty");
    let mut types: Vec<RecordType> = r.answers.iter().map(|a| a.record_type()).collect();
    types.sort();
    types.dedup();
    let hinfo_only = types == [RecordType::HINFO];
    assert!(
        hinfo_only || types.len() < 6,
        "want fewer RRsets than exist, or HINFO: {types:?}"
    );
    for a in &r.answers {
        assert_eq!(a.name, name("example.test."));
    }
}

// ---- record types ----

fn txt_wire(strings: &[&[u8]]) -> Vec<u8> {
    strings
        .iter()
        .flat_map(|s| {
            let mut v = vec![u8::try_from(s.len()).unwrap()];
            v.extend_from_slice(s);
            v
        })
        .collect()
}

fn caa_wire(flags: u8, tag: &str, value: &str) -> Vec<u8> {
    let mut v = vec![flags, u8::try_from(tag.len()).unwrap()];
    v.extend_from_slice(tag.as_bytes());
    v.extend_from_slice(value.as_bytes());
    v
}

fn srv_wire(prio: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
    [
        &prio.to_be_bytes()[..],
        &weight.to_be_bytes(),
        &port.to_be_bytes(),
        &wire_name(target),
    ]
    .concat()
}

fn mx_wire(pref: u16, exchange: &str) -> Vec<u8> {
    [&pref.to_be_bytes()[..], &wire_name(exchange)].concat()
}

#[test]
fn each_record_type_round_trips_with_exact_rdata() {
    let long = vec![b'x'; 300];
    let cases: Vec<(&str, RecordType, u32, Vec<Vec<u8>>)> = vec![
        (
            "example.test.",
            RecordType::A,
            600,
            vec![vec![192, 0, 2, 1]],
        ),
        (
            "www.example.test.",
            RecordType::A,
            300,
            vec![vec![192, 0, 2, 10], vec![192, 0, 2, 11]],
        ),
        (
            "www.example.test.",
            RecordType::AAAA,
            300,
            vec![
                "2001:db8::10"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
            ],
        ),
        (
            "alias2.example.test.",
            RecordType::CNAME,
            3600,
            vec![wire_name("www.example.test.")],
        ),
        (
            "example.test.",
            RecordType::MX,
            3600,
            vec![
                mx_wire(10, "mail.example.test."),
                mx_wire(20, "mail2.example.test."),
            ],
        ),
        (
            "example.test.",
            RecordType::TXT,
            3600,
            vec![
                txt_wire(&[b"v=spf1 -all"]),
                txt_wire(&[b"part one", b"part two"]),
            ],
        ),
        (
            // RFC 1035 §3.3: a character-string holds at most 255 octets.
            "long.example.test.",
            RecordType::TXT,
            3600,
            vec![txt_wire(&[&long[..255], &long[255..]])],
        ),
        (
            "_sip._tcp.example.test.",
            RecordType::SRV,
            3600,
            vec![
                srv_wire(10, 60, 5060, "sip.example.test."),
                srv_wire(20, 0, 5061, "sip2.example.test."),
            ],
        ),
        (
            "example.test.",
            RecordType::CAA,
            3600,
            vec![
                caa_wire(0, "issue", "ca.example.net"),
                caa_wire(128, "iodef", "mailto:security@example.test"),
            ],
        ),
        (
            "example.test.",
            RecordType::NS,
            3600,
            vec![
                wire_name("ns1.example.test."),
                wire_name("ns2.example.test."),
            ],
        ),
        (
            "10.2.0.192.in-addr.arpa.",
            RecordType::PTR,
            3600,
            vec![wire_name("www.example.test.")],
        ),
    ];
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        for (owner, rtype, ttl, rdatas) in &cases {
            let r = ns.query(owner, *rtype, t);
            let ctx = format!("{t:?} {owner} {rtype}");
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
            assert!(r.metadata.authoritative, "{ctx}: AA");
            assert!(!r.metadata.truncation, "{ctx}: TC");
            assert_eq!(r.answers.len(), rdatas.len(), "{ctx}: {:?}", r.answers);
            let mut want: Vec<(u32, Vec<u8>)> = rdatas.iter().map(|d| (*ttl, d.clone())).collect();
            want.sort();
            assert_eq!(answer_set(&r, owner, *rtype), want, "{ctx}");
        }
    }
}

#[test]
fn soa_query_returns_the_soa_with_defaults_filled_in() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.query("example.test.", RecordType::SOA, t);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1, "{t:?}: {:?}", r.answers);
        let rec = &r.answers[0];
        assert_eq!(rec.ttl, 3600, "zone default TTL");
        let RData::SOA(soa) = &rec.data else {
            panic!("not an SOA: {rec:?}")
        };
        assert_eq!(soa.mname, name("ns1.example.test."));
        assert_eq!(soa.rname, name("hostmaster.example.test."));
        assert_eq!(
            (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            (SERIAL, 7200, 3600, 1209600, 300)
        );
    }
}

// ---- EDNS (RFC 6891) ----

#[test]
fn opt_is_echoed_only_when_the_query_had_one() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.exchange(
            &Query::new("www.example.test.", RecordType::A).edns(1232),
            t,
        );
        let edns = r.edns.as_ref().expect("OPT in response to an EDNS query");
        assert_eq!(edns.version(), 0, "{t:?}");
        assert_eq!(a_records(&r), www_addrs());

        let r = ns.query("www.example.test.", RecordType::A, t);
        assert!(
            r.edns.is_none(),
            "{t:?}: no OPT without one in the query (§7)"
        );
    }
}

#[test]
fn unknown_edns_version_gets_badvers() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.exchange(
            &Query::new("www.example.test.", RecordType::A)
                .edns(1232)
                .edns_version(1),
            t,
        );
        assert_eq!(r.rcode(), 16, "{t:?}: BADVERS (extended rcode 16)");
        let edns = r.edns.as_ref().expect("BADVERS needs an OPT");
        assert_eq!(edns.version(), 0, "{t:?}: responder's version");
        assert!(r.answers.is_empty(), "{t:?}: {:?}", r.answers);
    }
}

#[test]
fn unknown_edns_options_are_ignored() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        let r = ns.exchange(
            &Query::new("www.example.test.", RecordType::A)
                .edns(1232)
                .edns_option(EdnsOption::Unknown(65001, vec![1, 2, 3])),
            t,
        );
        assert_eq!(r.rcode(), 0, "{t:?}");
        assert!(r.edns.is_some(), "{t:?}: OPT");
        assert_eq!(a_records(&r), www_addrs(), "{t:?}");
    }
}

#[test]
fn client_subnet_option_is_accepted() {
    let ns = Meridian::serve(BASIC);
    let client: IpAddr = "198.51.100.0".parse().unwrap();
    for t in Transport::ALL {
        let r = ns.exchange(
            &Query::new("www.example.test.", RecordType::A)
                .edns(1232)
                .ecs(client, 24),
            t,
        );
        assert_eq!(r.rcode(), 0, "{t:?}");
        assert_eq!(a_records(&r), www_addrs(), "{t:?}");
        let edns = r.edns.as_ref().expect("OPT");
        // RFC 7871 §7.2.1: if echoed, family, source prefix and address are the query's.
        if let Some(EdnsOption::Subnet(s)) = edns.option(EdnsCode::Subnet) {
            assert_eq!((s.addr(), s.source_prefix()), (client, 24), "{t:?}");
        }
    }
}

#[test]
fn udp_without_edns_is_limited_to_512_bytes() {
    let ns = Meridian::serve(BASIC);
    // 60 A records (~1000 bytes) do not fit: TC, and the datagram stays within 512.
    let r = ns.query("big.example.test.", RecordType::A, Transport::Udp);
    assert!(r.metadata.truncation, "TC");
    assert!(r.raw.len() <= 512, "{} bytes", r.raw.len());
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // 25 A records (~450 bytes) fit.
    let r = ns.query("mid.example.test.", RecordType::A, Transport::Udp);
    assert!(!r.metadata.truncation, "mid: no TC");
    assert_eq!(r.answers.len(), 25);
    assert!(r.raw.len() <= 512);
}

#[test]
fn udp_with_edns_honours_the_client_size_within_512_and_1232() {
    let ns = Meridian::serve(BASIC);
    let q =
        |n: &str, size: u16| ns.exchange(&Query::new(n, RecordType::A).edns(size), Transport::Udp);
    // 4096 asked, 1232 is the server's cap: 60 records (~1000 bytes) fit.
    let r = q("big.example.test.", 4096);
    assert!(!r.metadata.truncation, "big@4096: no TC");
    assert_eq!(r.answers.len(), 60);
    assert!(r.raw.len() <= 1232, "{} bytes", r.raw.len());
    // 100 records (~1640 bytes) do not.
    let r = q("huge.example.test.", 4096);
    assert!(r.metadata.truncation, "huge@4096: TC");
    assert!(r.raw.len() <= 1232, "{} bytes", r.raw.len());
    assert!(
        r.edns.is_some(),
        "a truncated EDNS answer still carries OPT"
    );
    // The client's smaller size is honoured.
    let r = q("big.example.test.", 512);
    assert!(r.metadata.truncation, "big@512: TC");
    assert!(r.raw.len() <= 512, "{} bytes", r.raw.len());
    // Sizes below 512 count as 512 (RFC 6891 §6.2.5).
    let r = q("mid.example.test.", 100);
    assert!(!r.metadata.truncation, "mid@100: no TC");
    assert_eq!(r.answers.len(), 25);
}

#[test]
fn tcp_gets_the_full_answer() {
    let ns = Meridian::serve(BASIC);
    for (n, count) in [("big.example.test.", 60), ("huge.example.test.", 100)] {
        let r = ns.query(n, RecordType::A, Transport::Tcp);
        assert!(!r.metadata.truncation, "{n}: no TC over TCP");
        assert_eq!(r.answers.len(), count, "{n}");
        let r = ns.exchange(&Query::new(n, RecordType::A).edns(1232), Transport::Tcp);
        assert!(!r.metadata.truncation, "{n}: EDNS size is a UDP limit");
        assert_eq!(r.answers.len(), count, "{n}");
    }
}

// ---- TCP (RFC 7766) ----

#[test]
fn pipelined_tcp_queries_are_all_answered() {
    let ns = Meridian::serve(BASIC);
    let queries = [
        Query::new("www.example.test.", RecordType::A),
        Query::new("mail.example.test.", RecordType::A),
        Query::new("nope.example.test.", RecordType::A),
        Query::new("alias1.example.test.", RecordType::A),
        Query::new("ns1.example.test.", RecordType::A),
    ];
    let mut batch = Vec::new();
    for q in &queries {
        batch.extend(frame(&q.to_bytes()));
    }
    let mut s = ns.tcp_connect();
    s.write_all(&batch).unwrap();
    let mut replies: HashMap<u16, Reply> = HashMap::new();
    for _ in 0..queries.len() {
        let raw = read_frame(&mut s).expect("one reply per pipelined query");
        let id = u16::from_be_bytes([raw[0], raw[1]]);
        replies.insert(id, Reply::decode(raw, id));
    }
    // RFC 7766 §7: replies may come in any order; match them by id.
    let by = |i: usize| &replies[&queries[i].id];
    assert_eq!(a_records(by(0)), www_addrs());
    assert_eq!(a_records(by(1)), [ip4("192.0.2.25")]);
    assert_eq!(by(2).metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(a_records(by(3)), www_addrs());
    assert_eq!(a_records(by(4)), [ip4("192.0.2.53")]);
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(by(i).queries[0].name(), &name(&q.name));
    }
}

/// Waits (bounded) for the server to close `s`; returns how long that took.
fn wait_closed(s: &mut std::net::TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => start.elapsed(),
        Ok(n) => panic!("unexpected {n} bytes on an idle connection"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => start.elapsed(),
        Err(e) => panic!("idle connection not closed within {within:?}: {e}"),
    }
}

#[test]
fn idle_tcp_connections_are_closed_without_blocking_others() {
    let ns = Meridian::serve_with(BASIC, &["--tcp-idle-timeout", "1"]);
    let opened = Instant::now();
    let mut idle = ns.tcp_connect();

    // While `idle` is held, other clients are served promptly.
    let t0 = Instant::now();
    let r = ns.query("www.example.test.", RecordType::A, Transport::Udp);
    assert_eq!(a_records(&r), www_addrs());
    let mut used = ns.tcp_connect();
    let q = Query::new("mail.example.test.", RecordType::A);
    used.write_all(&frame(&q.to_bytes())).unwrap();
    let r = Reply::decode(read_frame(&mut used).expect("tcp reply"), q.id);
    assert_eq!(a_records(&r), [ip4("192.0.2.25")]);
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "answers took {:?} while a connection was idle",
        t0.elapsed()
    );

    wait_closed(&mut idle, Duration::from_secs(5));
    assert!(
        opened.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before the 1 s idle timeout",
        opened.elapsed()
    );
    // A connection that asked something and then went quiet is closed too.
    wait_closed(&mut used, Duration::from_secs(5));
}

// ---- robustness ----

fn question(qname: &str, qtype: u16) -> Vec<u8> {
    [wire_name(qname), qtype.to_be_bytes().to_vec(), vec![0, 1]].concat()
}

/// Malformed messages: (what, bytes). None of them may crash the server or get anything
/// but FORMERR (or silence).
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let long_label = [vec![64u8], vec![b'a'; 64], vec![0, 0, 1, 0, 1]].concat();
    let too_long_name: Vec<u8> = (0..5)
        .flat_map(|_| [vec![63u8], vec![b'b'; 63]].concat())
        .chain([0, 0, 1, 0, 1])
        .collect();
    vec![
        (
            "question cut short",
            [header(0x1001, 0, 1, 0, 0, 0), vec![3, b'w', b'w']].concat(),
        ),
        (
            "garbage question",
            [header(0x1002, 0, 1, 0, 0, 0), vec![0xff; 12]].concat(),
        ),
        (
            "qdcount 2",
            [
                header(0x1003, 0, 2, 0, 0, 0),
                question("www.example.test.", 1),
                question("mail.example.test.", 1),
            ]
            .concat(),
        ),
        (
            "label longer than 63",
            [header(0x1004, 0, 1, 0, 0, 0), long_label].concat(),
        ),
        (
            "name longer than 255",
            [header(0x1005, 0, 1, 0, 0, 0), too_long_name].concat(),
        ),
        (
            "compression loop",
            [header(0x1006, 0, 1, 0, 0, 0), vec![0xc0, 12, 0, 1, 0, 1]].concat(),
        ),
        (
            "counts past the end",
            [
                header(0x1007, 0, 1, 3, 0, 0),
                question("www.example.test.", 1),
            ]
            .concat(),
        ),
    ]
}

fn assert_formerr_or_silence(what: &str, sent: &[u8], reply: Option<Vec<u8>>) {
    let Some(raw) = reply else { return };
    assert!(raw.len() >= 12, "{what}: short reply {raw:02x?}");
    assert_eq!(raw[..2], sent[..2], "{what}: id echoed");
    assert_eq!(raw[2] & 0x80, 0x80, "{what}: QR");
    assert_eq!(
        raw[3] & 0x0f,
        1,
        "{what}: FORMERR, got rcode {}",
        raw[3] & 0x0f
    );
}

#[test]
fn malformed_packets_get_formerr_or_are_dropped() {
    let ns = Meridian::serve(BASIC);
    for (what, bytes) in malformed() {
        let reply = ns.send_raw_udp(&bytes, SILENCE);
        assert_formerr_or_silence(&format!("udp {what}"), &bytes, reply);
        assert_eq!(ns.a("www.example.test."), www_addrs(), "after udp {what}");

        let reply = ns.send_raw_tcp(&bytes, SILENCE);
        assert_formerr_or_silence(&format!("tcp {what}"), &bytes, reply);
        let r = ns.query("www.example.test.", RecordType::A, Transport::Tcp);
        assert_eq!(a_records(&r), www_addrs(), "after tcp {what}");
    }
}

#[test]
fn packets_shorter_than_a_header_are_dropped() {
    let ns = Meridian::serve(BASIC);
    for bytes in [
        vec![],
        vec![0x12],
        vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    ] {
        assert_eq!(ns.send_raw_udp(&bytes, SILENCE), None, "{bytes:02x?}");
        assert_eq!(ns.a("www.example.test."), www_addrs());
    }
}

#[test]
fn two_opt_records_get_formerr() {
    // RFC 6891 §6.1.1: more than one OPT RR in a query MUST get FORMERR.
    let ns = Meridian::serve(BASIC);
    let opt = [
        vec![0u8],
        41u16.to_be_bytes().to_vec(),
        vec![0x04, 0xd0, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    let bytes = [
        header(0x2001, 0, 1, 0, 0, 2),
        question("www.example.test.", 1),
        opt.clone(),
        opt,
    ]
    .concat();
    for t in Transport::ALL {
        let raw = match t {
            Transport::Udp => ns.send_raw_udp(&bytes, NET_TIMEOUT),
            Transport::Tcp => ns.send_raw_tcp(&bytes, NET_TIMEOUT),
        }
        .unwrap_or_else(|| panic!("{t:?}: no reply to a query with two OPTs"));
        assert_eq!(raw[..2], bytes[..2], "{t:?}: id");
        assert_eq!(
            raw[3] & 0x0f,
            1,
            "{t:?}: FORMERR, got rcode {}",
            raw[3] & 0x0f
        );
    }
}

#[test]
fn broken_tcp_framing_does_not_hurt_the_server() {
    let ns = Meridian::serve(BASIC);
    // A zero-length frame (shorter than a header): no reply.
    let mut s = ns.tcp_connect();
    s.write_all(&[0, 0]).unwrap();
    s.set_read_timeout(Some(SILENCE)).unwrap();
    assert!(read_frame(&mut s).is_none(), "no reply to an empty frame");
    // A frame announcing 300 bytes, cut off after 5, then the client goes away.
    let mut s = ns.tcp_connect();
    s.write_all(&[1, 44, 0x12, 0x34, 0, 0, 0]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    assert!(read_frame(&mut s).is_none(), "no reply to half a message");
    drop(s);
    let r = ns.query("www.example.test.", RecordType::A, Transport::Tcp);
    assert_eq!(a_records(&r), www_addrs());
    assert_eq!(ns.a("www.example.test."), www_addrs());
}

#[test]
fn responses_sent_to_the_server_are_dropped() {
    let ns = Meridian::serve(BASIC);
    let mut bytes = Query::new("www.example.test.", RecordType::A).to_bytes();
    bytes[2] |= 0x80; // QR=1
    assert_eq!(
        ns.send_raw_udp(&bytes, SILENCE),
        None,
        "no reply to a response"
    );
    assert_eq!(ns.a("www.example.test."), www_addrs());
}

#[test]
fn unsupported_opcodes_get_notimp() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        // STATUS (2), and UPDATE (5) with example.test. SOA as its zone section.
        for (op, qname, qtype) in [
            (OpCode::Status, "www.example.test.", RecordType::A),
            (OpCode::Update, "example.test.", RecordType::SOA),
        ] {
            let q = Query::new(qname, qtype).op_code(op);
            let r = ns.exchange(&q, t);
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NotImp,
                "{t:?} {op:?}"
            );
            assert_eq!(r.metadata.op_code, op, "{t:?}: opcode echoed");
            assert!(r.answers.is_empty());
        }
    }
}

#[test]
fn zone_transfers_are_refused() {
    let ns = Meridian::serve(BASIC);
    let r = ns.query("example.test.", RecordType::AXFR, Transport::Tcp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused, "AXFR");
    assert!(r.answers.is_empty(), "AXFR: no records");
    for t in Transport::ALL {
        // RFC 1995 §3: IXFR carries the client's SOA in the authority section.
        let q = Query::new("example.test.", RecordType::IXFR);
        let mut m = q.to_message();
        m.add_authority(Record::from_rdata(
            name("example.test."),
            0,
            RData::SOA(SOA::new(
                name("ns1.example.test."),
                name("hostmaster.example.test."),
                SERIAL - 1,
                0,
                0,
                0,
                0,
            )),
        ));
        let bytes = m.to_vec().unwrap();
        let raw = match t {
            Transport::Udp => ns.send_raw_udp(&bytes, NET_TIMEOUT),
            Transport::Tcp => ns.send_raw_tcp(&bytes, NET_TIMEOUT),
        }
        .expect("IXFR gets an answer");
        let r = Reply::decode(raw, q.id);
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::Refused,
            "{t:?} IXFR"
        );
        assert!(r.answers.is_empty(), "{t:?} IXFR: no records");
    }
}

#[test]
fn chaos_identity_queries_are_refused() {
    let ns = Meridian::serve(BASIC);
    for t in Transport::ALL {
        for qname in [
            "version.bind.",
            "id.server.",
            "hostname.bind.",
            "version.server.",
        ] {
            let r = ns.exchange(&Query::new(qname, RecordType::TXT).class(DNSClass::CH), t);
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::Refused,
                "{t:?} CH TXT {qname}"
            );
            let leaked: Vec<&Record> = r
                .answers
                .iter()
                .chain(&r.authorities)
                .chain(&r.additionals)
                .collect();
            assert!(leaked.is_empty(), "{t:?} {qname}: {leaked:?}");
        }
    }
}

// ---- zones from a master file ----

#[test]
fn records_file_zone_loads_and_serves() {
    let ns = Meridian::serve("core/master-file");
    for t in Transport::ALL {
        let r = ns.query("gslb.test.", RecordType::SOA, t);
        assert!(r.metadata.authoritative, "{t:?}");
        let RData::SOA(soa) = &r.answers[0].data else {
            panic!("{t:?}: no SOA: {:?}", r.answers)
        };
        assert_eq!(r.answers[0].ttl, 1800, "$TTL");
        assert_eq!(soa.serial, 2026112599);
        assert_eq!(soa.mname, name("ns1.gslb.test."));

        let r = ns.query("gslb.test.", RecordType::NS, t);
        assert_eq!(
            answer_set(&r, "gslb.test.", RecordType::NS),
            [
                (1800, wire_name("ns1.gslb.test.")),
                (1800, wire_name("ns2.gslb.test."))
            ]
        );
        let r = ns.query("www.gslb.test.", RecordType::A, t);
        assert_eq!(
            answer_set(&r, "www.gslb.test.", RecordType::A),
            [(300, vec![192, 0, 2, 150])]
        );
        let r = ns.query("www.gslb.test.", RecordType::AAAA, t);
        assert_eq!(r.answers.len(), 1, "{t:?}: AAAA with the previous owner");
        assert_eq!(r.answers[0].ttl, 1800);
        let r = ns.query("gslb.test.", RecordType::MX, t);
        assert_eq!(
            answer_set(&r, "gslb.test.", RecordType::MX),
            [(1800, mx_wire(5, "mail.gslb.test."))]
        );
        let r = ns.query("info.gslb.test.", RecordType::TXT, t);
        assert_eq!(
            answer_set(&r, "info.gslb.test.", RecordType::TXT),
            [(1800, txt_wire(&[b"hello from a master file"]))]
        );
        let r = ns.query("ns1.gslb.test.", RecordType::A, t);
        assert_eq!(a_records(&r), [ip4("192.0.2.153")]);
        let r = ns.query("nope.gslb.test.", RecordType::A, t);
        assert_negative(&r, ResponseCode::NXDomain, "gslb.test.", 120, "nope.gslb");
    }
    let health = ns.health();
    let zones = health["zones"].as_array().unwrap();
    assert!(
        zones
            .iter()
            .any(|z| z["origin"] == "gslb.test." && z["serial"] == 2026112599),
        "{health}"
    );
}

// ---- dig as a second opinion ----

#[test]
fn dig_agrees_on_answers_and_flags() {
    let ns = Meridian::serve(BASIC);
    // What hickory reads; dig (where installed) must read the same.
    assert_eq!(ns.a("www.example.test."), www_addrs());
    let Some(out) = ns.dig(&["www.example.test.", "A", "+short"]) else {
        return;
    };
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let want: Vec<String> = www_addrs().iter().map(|a| a.to_string()).collect();
    assert_eq!(lines, want);

    let out = ns.dig(&["nope.example.test.", "A"]).unwrap();
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("flags: qr aa;"), "AA, no RA, no RD: {out}");
    assert!(
        out.contains(
            "example.test.\t\t300\tIN\tSOA\tns1.example.test. hostmaster.example.test. 2026112501"
        ),
        "{out}"
    );

    let out = ns.dig(&["long.example.test.", "TXT", "+short"]).unwrap();
    let want = format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45));
    assert_eq!(out.trim(), want);

    let out = ns
        .dig(&["big.example.test.", "A", "+tcp", "+short"])
        .unwrap();
    assert_eq!(out.lines().count(), 60);
}

// ---- HTTP API, reload, metrics ----

#[test]
fn health_lists_zones_and_serials() {
    let ns = Meridian::serve(BASIC);
    let h = ns.health();
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h["generation"].as_u64().unwrap() >= 1, "{h}");
    assert!(h["uptime_seconds"].is_number(), "{h}");
    let mut zones: Vec<(String, u64)> = h["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            assert!(z["file"].is_string(), "{z}");
            (
                z["origin"].as_str().unwrap().to_string(),
                z["serial"].as_u64().unwrap(),
            )
        })
        .collect();
    zones.sort();
    assert_eq!(
        zones,
        [
            ("2.0.192.in-addr.arpa.".to_string(), 1),
            ("example.test.".to_string(), u64::from(SERIAL)),
            ("neg.test.".to_string(), 7),
        ]
    );
}

#[test]
fn queries_are_counted_by_transport_and_rcode() {
    let ns = Meridian::serve(BASIC);
    let udp_ok = r#"meridian_queries_total{transport="udp",rcode="NOERROR"}"#;
    let tcp_nx = r#"meridian_queries_total{transport="tcp",rcode="NXDOMAIN"}"#;
    let (u0, t0) = (ns.metric(udp_ok), ns.metric(tcp_nx));
    ns.query("www.example.test.", RecordType::A, Transport::Udp);
    ns.query("nope.example.test.", RecordType::A, Transport::Tcp);
    assert_eq!(ns.metric(udp_ok), u0 + 1.0);
    assert_eq!(ns.metric(tcp_nx), t0 + 1.0);
}

fn example_zone() -> String {
    std::fs::read_to_string(fixture(BASIC).join("example.test.toml")).unwrap()
}

/// example.test. with serial +1 and www moved to 192.0.2.99.
fn edited_example_zone() -> String {
    let z = example_zone();
    let edited = z
        .replace(
            &format!("serial = {SERIAL}"),
            &format!("serial = {}", SERIAL + 1),
        )
        .replace(
            r#"data = ["192.0.2.10", "192.0.2.11"]"#,
            r#"data = ["192.0.2.99"]"#,
        );
    assert_ne!(edited, z);
    edited
}

fn serial_of(ns: &Meridian, zone: &str) -> u32 {
    let r = ns.query(zone, RecordType::SOA, Transport::Udp);
    match &r.answers[0].data {
        RData::SOA(soa) => soa.serial,
        other => panic!("not an SOA: {other:?}"),
    }
}

fn health_serial(ns: &Meridian, zone: &str) -> u64 {
    let h = ns.health();
    h["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["origin"] == zone)
        .unwrap_or_else(|| panic!("{zone} not in /health: {h}"))["serial"]
        .as_u64()
        .unwrap()
}

#[test]
fn reload_api_serves_the_edited_zone() {
    let admin = admin_args();
    let ns = Meridian::serve_copy(BASIC, &[&admin[0], &admin[1]]);
    let ok = r#"meridian_reloads_total{result="ok"}"#;
    let ok0 = ns.metric(ok);
    let g0 = ns.health()["generation"].as_u64().unwrap();

    ns.write_zone("example.test.toml", &edited_example_zone());
    let r = ns.admin_post("/v1/reload", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["errors"], serde_json::json!([]), "{body}");
    let g1 = body["generation"].as_u64().unwrap();
    assert!(g1 > g0, "generation {g0} -> {g1}");

    assert_eq!(ns.a("www.example.test."), [ip4("192.0.2.99")]);
    assert_eq!(serial_of(&ns, "example.test."), SERIAL + 1);
    assert_eq!(health_serial(&ns, "example.test."), u64::from(SERIAL + 1));
    assert_eq!(ns.metric(ok), ok0 + 1.0);
    assert_eq!(ns.metric("meridian_table_generation"), g1 as f64);
}

/// Breaks example.test.toml with `broken`, edits neg.test.toml in the same reload, and
/// checks: 422 naming the file, example.test. unchanged, neg.test. updated, failure counted.
fn check_failed_reload(broken: &str, error_mentions: &str) {
    let admin = admin_args();
    let ns = Meridian::serve_copy(BASIC, &[&admin[0], &admin[1]]);
    let failed = r#"meridian_reloads_total{result="failed"}"#;
    let failed0 = ns.metric(failed);

    ns.write_zone("example.test.toml", broken);
    let neg = std::fs::read_to_string(fixture(BASIC).join("neg.test.toml"))
        .unwrap()
        .replace("serial = 7", "serial = 8")
        .replace("192.0.2.90", "192.0.2.91");
    ns.write_zone("neg.test.toml", &neg);

    let r = ns.admin_post("/v1/reload", "");
    assert_eq!(r.status, 422, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ok"], false, "{body}");
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("example.test.toml") && e.contains(error_mentions)),
        "errors must name the file and {error_mentions:?}: {errors:?}"
    );
    assert!(
        errors.iter().all(|e| !e.contains("neg.test.toml")),
        "{errors:?}"
    );

    // The broken zone keeps serving its previous version...
    assert_eq!(ns.a("www.example.test."), www_addrs());
    assert_eq!(serial_of(&ns, "example.test."), SERIAL);
    assert_eq!(health_serial(&ns, "example.test."), u64::from(SERIAL));
    // ...while the good one is updated.
    assert_eq!(ns.a("www.neg.test."), [ip4("192.0.2.91")]);
    assert_eq!(serial_of(&ns, "neg.test."), 8);
    assert_eq!(ns.metric(failed), failed0 + 1.0);
}

#[test]
fn reload_with_a_syntax_error_keeps_the_old_zone() {
    let broken = format!("{}\n[[record]\nname = \"x\"\n", edited_example_zone());
    check_failed_reload(&broken, "");
}

#[test]
fn reload_with_an_unknown_key_keeps_the_old_zone() {
    let broken = format!("colour = \"blue\"\n{}", edited_example_zone());
    check_failed_reload(&broken, "colour");
}

#[test]
fn sighup_reloads() {
    let ns = Meridian::serve_copy(BASIC, &[]);
    let g0 = ns.health()["generation"].as_u64().unwrap();
    let ok0 = ns.metric(r#"meridian_reloads_total{result="ok"}"#);
    ns.write_zone("example.test.toml", &edited_example_zone());
    ns.signal("HUP");
    ns.wait_for_generation(g0 + 1);
    assert_eq!(ns.a("www.example.test."), [ip4("192.0.2.99")]);
    assert_eq!(serial_of(&ns, "example.test."), SERIAL + 1);
    assert_eq!(
        ns.metric(r#"meridian_reloads_total{result="ok"}"#),
        ok0 + 1.0
    );
}

#[test]
fn sigterm_exits_zero_promptly() {
    let mut ns = Meridian::serve(BASIC);
    assert_eq!(ns.a("www.example.test."), www_addrs());
    ns.signal("TERM");
    let status = ns
        .wait_exit(Duration::from_secs(5))
        .expect("exit within 5 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn signals_are_handled_as_soon_as_ready_is_printed() {
    // The ready line promises a fully started server: a SIGTERM right after it must be a
    // clean shutdown, not the default action (death by signal). A few rounds, because a
    // late handler only loses the race some of the time.
    for round in 0..10 {
        let mut ns = Meridian::serve(BASIC);
        ns.signal("TERM");
        let status = ns
            .wait_exit(Duration::from_secs(5))
            .expect("exit within 5 s of SIGTERM");
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}");
    }
}

// ---- CLI ----

#[test]
fn broken_zone_at_start_up_exits_2_naming_the_file() {
    for (dir, mentions) in [
        ("core/broken-syntax", "example.test.toml"),
        ("core/bad-record-type", "record[1].type"),
    ] {
        let out = run_serve(&fixture(dir), &[]);
        assert_eq!(out.code, Some(2), "{dir}: {out:?}");
        assert!(
            out.stderr.contains("example.test.toml") && out.stderr.contains(mentions),
            "{dir}: stderr must name the file and {mentions:?}: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("ready"), "{dir}: {}", out.stdout);
    }
}

#[test]
fn check_config_prints_one_line_per_zone() {
    let basic = fixture(BASIC);
    let out = run(&["check-config", "--zones", basic.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // One line per zone, then what serve also checks: the database and the compiled table.
    let (mut lines, rest): (Vec<&str>, Vec<&str>) = out
        .stdout
        .lines()
        .partition(|l| !l.starts_with("ok geoip: ") && !l.starts_with("ok table: "));
    assert_eq!(rest.len(), 2, "{}", out.stdout);
    lines.sort();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    for (line, origin, file, serial) in [
        (lines[0], "2.0.192.in-addr.arpa.", "reverse.toml", 1),
        (lines[1], "example.test.", "example.test.toml", SERIAL),
        (lines[2], "neg.test.", "neg.test.toml", 7),
    ] {
        assert!(line.starts_with(&format!("ok {origin} (")), "{line}");
        assert!(line.contains(file), "{line}");
        assert!(line.contains(&format!("serial {serial},")), "{line}");
    }

    let mf = fixture("core/master-file");
    let out = run(&["check-config", "--zones", mf.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("ok gslb.test. (") && out.stdout.contains("serial 2026112599"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_config_names_file_and_key_of_a_bad_zone() {
    let bad = fixture("core/bad-record-type");
    let out = run(&["check-config", "--zones", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("example.test.toml") && out.stderr.contains("record[1].type"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("ok "), "{}", out.stdout);

    let broken = fixture("core/broken-syntax");
    let out = run(&["check-config", "--zones", broken.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("example.test.toml") && out.stderr.contains("line 8"),
        "file and line: {}",
        out.stderr
    );
}
