//! The RFC 1034 §4.3.2 lookup, unit-tested: a small zone is loaded from a file and compiled
//! as the server does, each query goes through [`RoutingTable::answer`] into a real
//! [`Writer`], and the response is decoded with hickory and checked section by section.
//! Covers exact matches, NODATA vs NXDOMAIN (RFC 2308), empty non-terminals, wildcards
//! (RFC 4592), delegations with glue, occluded names, DS at a cut (RFC 4035 §3.1.4.1),
//! CNAME chains and their limit, and ANY (RFC 8482).

use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

use super::{MAX_CNAME_CHAIN, RoutingTable};
use crate::dns::answer::Writer;
use crate::dns::wire;
use crate::geo::GeoDb;
use crate::routing::compile::{AllUp, compile, name_wire};
use crate::routing::select::Client;

const CITY_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/geoip/GeoIP2-City-Test.mmdb"
);

/// Apex data, a service, and the master file below with everything the lookup walks.
const ZONE: &str = r#"
origin = "t.test."
ttl = 3600
ns = ["ns1.t.test.", "ns2.t.test."]
records_file = "t.test.zone"

[soa]
mname = "ns1.t.test."
rname = "hostmaster.t.test."
serial = 7
minimum = 300

[region.r1]

[service.svc]
ttl = 30
policy = "weighted"
[[service.svc.endpoint]]
region = "r1"
address = "192.0.2.100"
"#;

const RECORDS: &str = r#"
$TTL 3600
ns1        A      192.0.2.53
ns2        AAAA   2001:db8::53
@          MX     10 mail
mail       A      192.0.2.25
www        A      192.0.2.1
www        A      192.0.2.2
www        TXT    "hello"
a.b.c      A      192.0.2.3
*.wild     A      192.0.2.4
*.wild     TXT    "wild"
host.wild  A      192.0.2.5
sub        NS     ns.sub
sub        NS     ns.elsewhere.test.
ns.sub     A      192.0.2.10
alias      CNAME  www
chain1     CNAME  chain2
chain2     CNAME  www
out        CNAME  target.elsewhere.test.
dangling   CNAME  nothing
toref      CNAME  host.sub
towild     CNAME  x.wild
loop1      CNAME  loop2
loop2      CNAME  loop1
"#;

/// The zone above, loaded and compiled with every endpoint up.
fn table() -> RoutingTable {
    let zone = crate::config::testing::zone_from_text(ZONE, &[("t.test.zone", RECORDS)]);
    let geo = Arc::new(GeoDb::open(Path::new(CITY_DB)).unwrap_or_else(|e| panic!("{e}")));
    compile(&[Arc::new(zone)], geo, &AllUp, 1).unwrap_or_else(|e| panic!("{e}"))
}

/// Asks `table` for `name`/`rtype` (no EDNS, no size limit) and decodes the response.
fn ask(table: &RoutingTable, name: &str, rtype: RecordType) -> Message {
    let qname = Name::from_ascii(name).unwrap();
    let mut packet = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&name_wire(&qname));
    packet.extend_from_slice(&u16::from(rtype).to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    let q = wire::parse(&packet).unwrap();
    let client = Client {
        source: "127.0.0.1".parse().unwrap(),
        subnet: None,
    };
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, &packet, &q, 65_535);
    table.answer(&q, &client, &mut w);
    w.finish();
    Message::from_vec(&out).unwrap()
}

/// `owner TTL TYPE RDATA`; an SOA without its RDATA (the TTL is what negative answers set).
fn rr(r: &Record) -> String {
    match r.record_type() {
        RecordType::SOA => format!("{} {} SOA", r.name, r.ttl),
        t => format!("{} {} {t} {}", r.name, r.ttl, r.data),
    }
}

/// One query and the whole response expected: RCODE, AA, and each section in order.
struct Case {
    name: &'static str,
    rtype: RecordType,
    rcode: ResponseCode,
    aa: bool,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

const NEG: &[&str] = &["t.test. 300 SOA"];

fn run(cases: &[Case]) {
    let table = table();
    for c in cases {
        let msg = ask(&table, c.name, c.rtype);
        let what = format!("{} {}", c.name, c.rtype);
        assert_eq!(msg.metadata.response_code, c.rcode, "{what}: rcode");
        assert_eq!(msg.metadata.authoritative, c.aa, "{what}: AA");
        let section = |s: &[Record]| s.iter().map(rr).collect::<Vec<_>>();
        assert_eq!(section(&msg.answers), c.answer, "{what}: answer");
        assert_eq!(section(&msg.authorities), c.authority, "{what}: authority");
        assert_eq!(
            section(&msg.additionals),
            c.additional,
            "{what}: additional"
        );
    }
}

fn case(name: &'static str, rtype: RecordType) -> Case {
    Case {
        name,
        rtype,
        rcode: ResponseCode::NoError,
        aa: true,
        answer: &[],
        authority: &[],
        additional: &[],
    }
}

#[test]
fn exact_matches_answer_with_their_rrset_and_additional_data() {
    use RecordType::*;
    run(&[
        Case {
            answer: &[
                "www.t.test. 3600 A 192.0.2.1",
                "www.t.test. 3600 A 192.0.2.2",
            ],
            ..case("www.t.test.", A)
        },
        // The question's letter case is echoed in the owner.
        Case {
            answer: &[
                "WwW.T.test. 3600 A 192.0.2.1",
                "WwW.T.test. 3600 A 192.0.2.2",
            ],
            ..case("WwW.T.test.", A)
        },
        Case {
            answer: &["t.test. 3600 MX 10 mail.t.test."],
            additional: &["mail.t.test. 3600 A 192.0.2.25"],
            ..case("t.test.", MX)
        },
        Case {
            answer: &["t.test. 3600 NS ns1.t.test.", "t.test. 3600 NS ns2.t.test."],
            additional: &[
                "ns1.t.test. 3600 A 192.0.2.53",
                "ns2.t.test. 3600 AAAA 2001:db8::53",
            ],
            ..case("t.test.", NS)
        },
        Case {
            answer: &["t.test. 3600 SOA"],
            ..case("t.test.", SOA)
        },
        Case {
            answer: &["svc.t.test. 30 A 192.0.2.100"],
            ..case("svc.t.test.", A)
        },
    ]);
}

#[test]
fn negative_answers_carry_the_soa_with_the_negative_ttl() {
    use RecordType::*;
    run(&[
        // NODATA: the name exists, the type does not.
        Case {
            authority: NEG,
            ..case("www.t.test.", MX)
        },
        // A service with only IPv4 endpoints has no AAAA: NODATA, not NXDOMAIN.
        Case {
            authority: NEG,
            ..case("svc.t.test.", AAAA)
        },
        Case {
            rcode: ResponseCode::NXDomain,
            authority: NEG,
            ..case("nope.t.test.", A)
        },
        Case {
            rcode: ResponseCode::NXDomain,
            authority: NEG,
            ..case("deeper.nope.t.test.", TXT)
        },
        // Below an existing name that has no wildcard.
        Case {
            rcode: ResponseCode::NXDomain,
            authority: NEG,
            ..case("x.www.t.test.", A)
        },
        // Not our zone: refused, not authoritative.
        Case {
            rcode: ResponseCode::Refused,
            aa: false,
            ..case("www.elsewhere.test.", A)
        },
    ]);
}

#[test]
fn empty_non_terminals_exist_without_data() {
    use RecordType::*;
    run(&[
        // b.c and c exist because a.b.c does (RFC 1034 §3.1, RFC 8020): NODATA.
        Case {
            authority: NEG,
            ..case("b.c.t.test.", A)
        },
        Case {
            authority: NEG,
            ..case("c.t.test.", TXT)
        },
        Case {
            answer: &["a.b.c.t.test. 3600 A 192.0.2.3"],
            ..case("a.b.c.t.test.", A)
        },
        Case {
            rcode: ResponseCode::NXDomain,
            authority: NEG,
            ..case("x.b.c.t.test.", A)
        },
    ]);
}

#[test]
fn wildcards_synthesise_only_where_no_name_exists() {
    use RecordType::*;
    run(&[
        Case {
            answer: &["x.wild.t.test. 3600 A 192.0.2.4"],
            ..case("x.wild.t.test.", A)
        },
        // RFC 4592 §3.3.1: the closest encloser is `wild`, so `*.wild` matches deeper too.
        Case {
            answer: &["y.x.wild.t.test. 3600 TXT wild"],
            ..case("y.x.wild.t.test.", TXT)
        },
        Case {
            authority: NEG,
            ..case("x.wild.t.test.", MX)
        },
        // An existing name is never covered by the wildcard: its own NODATA...
        Case {
            authority: NEG,
            ..case("host.wild.t.test.", TXT)
        },
        Case {
            answer: &["host.wild.t.test. 3600 A 192.0.2.5"],
            ..case("host.wild.t.test.", A)
        },
        // ...and below it the closest encloser is `host.wild`, which has no `*` child.
        Case {
            rcode: ResponseCode::NXDomain,
            authority: NEG,
            ..case("x.host.wild.t.test.", A)
        },
        // The parent of the wildcard is an empty non-terminal.
        Case {
            authority: NEG,
            ..case("wild.t.test.", A)
        },
    ]);
}

const REFERRAL: &[&str] = &[
    "sub.t.test. 3600 NS ns.sub.t.test.",
    "sub.t.test. 3600 NS ns.elsewhere.test.",
];
const GLUE: &[&str] = &["ns.sub.t.test. 3600 A 192.0.2.10"];

#[test]
fn delegations_refer_with_ns_and_glue_without_aa() {
    use RecordType::*;
    run(&[
        Case {
            aa: false,
            authority: REFERRAL,
            additional: GLUE,
            ..case("sub.t.test.", A)
        },
        // NS at the cut is the child's to answer authoritatively: a referral too.
        Case {
            aa: false,
            authority: REFERRAL,
            additional: GLUE,
            ..case("sub.t.test.", NS)
        },
        Case {
            aa: false,
            authority: REFERRAL,
            additional: GLUE,
            ..case("deep.below.sub.t.test.", A)
        },
        // Glue is occluded (RFC 1034 §4.2.1): asked for directly, it is referred away.
        Case {
            aa: false,
            authority: REFERRAL,
            additional: GLUE,
            ..case("ns.sub.t.test.", A)
        },
        Case {
            aa: false,
            authority: REFERRAL,
            additional: GLUE,
            ..case("x.ns.sub.t.test.", A)
        },
        // DS lives on the parent side of the cut (RFC 4035 §3.1.4.1): this zone answers it,
        // authoritatively; with no DS here that is NODATA, not a referral.
        Case {
            authority: NEG,
            ..case("sub.t.test.", DS)
        },
    ]);
}

#[test]
fn cname_chains_are_followed_inside_the_zone_only() {
    use RecordType::*;
    run(&[
        Case {
            answer: &[
                "alias.t.test. 3600 CNAME www.t.test.",
                "www.t.test. 3600 A 192.0.2.1",
                "www.t.test. 3600 A 192.0.2.2",
            ],
            ..case("alias.t.test.", A)
        },
        Case {
            answer: &[
                "chain1.t.test. 3600 CNAME chain2.t.test.",
                "chain2.t.test. 3600 CNAME www.t.test.",
                "www.t.test. 3600 TXT hello",
            ],
            ..case("chain1.t.test.", TXT)
        },
        // Asked for the CNAME itself: no chasing.
        Case {
            answer: &["alias.t.test. 3600 CNAME www.t.test."],
            ..case("alias.t.test.", CNAME)
        },
        // The target's NODATA is the answer's: SOA in authority.
        Case {
            answer: &["alias.t.test. 3600 CNAME www.t.test."],
            authority: NEG,
            ..case("alias.t.test.", MX)
        },
        // RFC 6604: the RCODE is the last name's; a CNAME to nothing is NXDOMAIN.
        Case {
            rcode: ResponseCode::NXDomain,
            answer: &["dangling.t.test. 3600 CNAME nothing.t.test."],
            authority: NEG,
            ..case("dangling.t.test.", A)
        },
        // Out of the zone: the resolver chases the rest.
        Case {
            answer: &["out.t.test. 3600 CNAME target.elsewhere.test."],
            ..case("out.t.test.", A)
        },
        // Into a delegation: the referral follows, and AA stays for the CNAME (RFC 1035 §4.1.1).
        Case {
            answer: &["toref.t.test. 3600 CNAME host.sub.t.test."],
            authority: REFERRAL,
            additional: GLUE,
            ..case("toref.t.test.", A)
        },
        // Onto a wildcard: synthesised with the target as owner.
        Case {
            answer: &[
                "towild.t.test. 3600 CNAME x.wild.t.test.",
                "x.wild.t.test. 3600 A 192.0.2.4",
            ],
            ..case("towild.t.test.", A)
        },
    ]);
}

#[test]
fn a_cname_loop_stops_at_the_chain_limit() {
    let table = table();
    let msg = ask(&table, "loop1.t.test.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    let answer: Vec<String> = msg.answers.iter().map(rr).collect();
    let expected: Vec<String> = (0..MAX_CNAME_CHAIN)
        .map(|i| {
            let (from, to) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
            format!("loop{from}.t.test. 3600 CNAME loop{to}.t.test.")
        })
        .collect();
    assert_eq!(answer, expected);
    assert!(msg.authorities.is_empty());
}

#[test]
fn any_is_answered_with_one_rrset() {
    use RecordType::*;
    run(&[
        // RFC 8482 §4.1: www has A and TXT; one RRset (the first by type) is the answer.
        Case {
            answer: &[
                "www.t.test. 3600 A 192.0.2.1",
                "www.t.test. 3600 A 192.0.2.2",
            ],
            ..case("www.t.test.", ANY)
        },
        Case {
            answer: &["svc.t.test. 30 A 192.0.2.100"],
            ..case("svc.t.test.", ANY)
        },
        Case {
            authority: NEG,
            ..case("b.c.t.test.", ANY)
        },
        Case {
            rcode: ResponseCode::NXDomain,
            authority: NEG,
            ..case("nope.t.test.", ANY)
        },
        Case {
            aa: false,
            authority: REFERRAL,
            additional: GLUE,
            ..case("sub.t.test.", ANY)
        },
    ]);
}
