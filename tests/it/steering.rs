//! Traffic steering end to end: the real binary serving `tests/fixtures/steering` with the
//! GeoIP test databases in `../shared/geoip/`, asked over UDP and TCP with EDNS Client Subnet.
//!
//! Each case checks the answer and the ECS scope (RFC 7871 §7.2.1): the shortest prefix around
//! the client on which the decision is the same for every address (within the GeoIP network
//! for geo and nearest, leaving out any `subnet` override that decides differently, 0 when the
//! client does not matter), longer than the source prefix when the source straddles two
//! decisions.
//! Health is driven with operator overrides; the unit tests in `routing/select_tests.rs`
//! cover the same walk with every combination of states.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::harness::{Transport, fixture, run};
use crate::steering_support::{
    CITY_DB, COUNTRY_DB, FLAT_DB, SAMPLE_SOURCE, addresses, admin, ask, ecs_echo, explain_api,
    explained_health, force, ips, query, raw_ecs, scope, serve, serve_with_admin, wait_for_answer,
    wait_for_explain,
};

const GEO: &str = "geo.steer.test.";
const NEAR: &str = "near.steer.test.";

#[test]
fn geo_clients_get_the_regions_the_zone_says() {
    let ns = serve(CITY_DB);
    // (ECS, endpoint of the expected region, scope)
    let cases = [
        ("2.2.3.0/25", "192.0.2.1", 25), // GB, country -> eu-west (see the carve test)
        ("89.160.20.128/25", "192.0.2.2", 25), // SE, country -> eu-north
        ("214.78.120.0/24", "192.0.2.3", 22), // US, continent NA -> us-east; GeoIP /22
        ("214.0.0.0/24", "192.0.2.4", 24), // SG, continent AS -> ap-southeast
        ("214.0.1.0/24", "192.0.2.6", 24), // AU, country -> au-east
        ("175.16.199.0/24", "192.0.2.5", 24), // CN, country (beats AS) -> ap-east
        ("2.3.3.0/24", "192.0.2.1", 24), // continent EU only -> eu-west
        ("81.2.69.144/28", "192.0.2.1", 28), // London, outside the override -> eu-west
        ("2a02:d3c0:1::/48", "192.0.2.1", 29), // IPv6 client subnet, GB
        ("10.0.0.0/24", "192.0.2.100", 8), // not found: default; empty /8 around it
        ("214.1.1.0/24", "192.0.2.100", 24), // a record without country: default
    ];
    for t in Transport::ALL {
        for (ecs, want, want_scope) in cases {
            let r = ask(&ns, GEO, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&[want]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{ecs} {t:?}: scope");
            assert!(r.metadata.authoritative, "{ecs}: AA");
            assert_eq!(r.answers[0].ttl, 30, "{ecs}: default service TTL");
        }
    }
}

#[test]
fn subnet_override_beats_geoip() {
    let ns = serve(CITY_DB);
    for t in Transport::ALL {
        // 81.2.69.160/27 is London in GeoIP; the zone sends it to us-east. The override holds
        // for its whole /27, so a /28 client gets scope 27.
        for (ecs, want_scope) in [("81.2.69.160/27", 27), ("81.2.69.176/28", 27)] {
            let r = ask(&ns, GEO, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&["192.0.2.3"]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{ecs} {t:?}");
        }
        // 2.2.3.128/25 is carved out of GeoIP's GB /24: that half goes to ap-southeast, the
        // other half stays eu-west, and both answers are scoped /25, not /24.
        let r = ask(&ns, GEO, RecordType::A, Some("2.2.3.128/25"), t);
        assert_eq!(addresses(&r), ips(&["192.0.2.4"]), "{t:?}");
        assert_eq!(scope(&r, "2.2.3.128/25"), 25);
        let r = ask(&ns, GEO, RecordType::A, Some("2.2.3.0/25"), t);
        assert_eq!(addresses(&r), ips(&["192.0.2.1"]), "{t:?}");
        assert_eq!(scope(&r, "2.2.3.0/25"), 25);
        // A /24 source covers both halves: see scopes_longer_than_the_source_reach_the_wire.
    }
}

/// Issue 11: with `10.0.0.0/8` -> us-east and `10.1.0.0/16` -> eu-west, an answer decided by
/// the /8 must not claim the /16 (a resolver would cache us-east for the eu-west clients).
#[test]
fn nested_overrides_get_scopes_that_leave_out_the_inner_override() {
    let ns = serve(CITY_DB);
    // (ECS, endpoint of the expected region, scope)
    let cases = [
        // The largest prefix around 10.2.3.0 that misses 10.1/16 is 10.2.0.0/15 (not /8).
        ("10.2.3.0/24", "192.0.2.113", 15),
        ("10.128.0.0/9", "192.0.2.113", 9),
        ("10.1.0.0/16", "192.0.2.111", 16),
        ("10.1.2.0/24", "192.0.2.111", 16),
        // The same in IPv6: 2001:db8:2::/47 misses 2001:db8:1::/48.
        ("2001:db8:2::/48", "192.0.2.113", 47),
        ("2001:db8:1:5::/64", "192.0.2.111", 48),
        // Outside the overrides only the default can answer, whatever GeoIP says (2.2.3.0 is
        // GB in a /24): the scope reaches to the nearest override.
        ("11.0.0.0/24", "192.0.2.110", 8),
        ("2.2.3.0/24", "192.0.2.110", 5),
    ];
    for t in Transport::ALL {
        for (ecs, want, want_scope) in cases {
            let r = ask(&ns, "nest.steer.test.", RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&[want]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{ecs} {t:?}: scope");
        }
    }
}

/// RFC 7871 §7.2.1: when the source prefix straddles two decisions, the scope is longer than
/// the source, so the resolver caches the answer only for the part it holds for.
#[test]
fn scopes_longer_than_the_source_reach_the_wire() {
    let ns = serve(CITY_DB);
    // (name, ECS, endpoint of the expected region, scope)
    let cases = [
        // 10.0.0.0/15 spans 10.0/16 (us-east) and 10.1/16 (eu-west): 10.0.0.0 decides, /16.
        ("nest.steer.test.", "10.0.0.0/15", "192.0.2.113", 16),
        ("nest.steer.test.", "2001:db8::/47", "192.0.2.113", 48),
        // 2.2.2.0/23: 2.2.2.0/24 is in no GeoIP network, 2.2.3.0/24 is GB.
        (GEO, "2.2.2.0/23", "192.0.2.100", 24),
        // 2.2.3.0/24: GB, but 2.2.3.128/25 is an override to ap-southeast.
        (GEO, "2.2.3.0/24", "192.0.2.1", 25),
    ];
    for t in Transport::ALL {
        for (name, ecs, want, want_scope) in cases {
            let r = ask(&ns, name, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&[want]), "{name} {ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{name} {ecs} {t:?}: scope");
        }
    }
}

#[test]
fn without_usable_client_information_the_default_answers() {
    let ns = serve(CITY_DB);
    for t in Transport::ALL {
        // No ECS: the packet's source (127.0.0.1, in no database) decides, and no ECS option
        // comes back (RFC 7871 §7.2.2).
        let r = ask(&ns, GEO, RecordType::A, None, t);
        assert_eq!(addresses(&r), ips(&["192.0.2.100"]), "{t:?}");
        assert_eq!(ecs_echo(&r), None, "{t:?}");
        // Source prefix 0: "no client information" -> default, scope 0 (RFC 7871 §7.1.2).
        for ecs in ["0.0.0.0/0", "::/0"] {
            let r = ask(&ns, GEO, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&["192.0.2.100"]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), 0, "{ecs} {t:?}");
        }
    }
}

#[test]
fn nearest_picks_the_closest_region() {
    let ns = serve(CITY_DB);
    let cases = [
        ("2.2.3.0/24", "198.51.100.1", 24),       // Boxford -> Dublin
        ("89.160.20.128/25", "198.51.100.2", 25), // Linköping -> Stockholm
        ("214.78.120.0/24", "198.51.100.3", 22),  // San Diego -> Ashburn
        ("214.0.0.0/24", "198.51.100.4", 24),     // Singapore -> Singapore
        ("175.16.199.0/24", "198.51.100.5", 24),  // Changchun -> Hong Kong
        ("214.0.1.0/24", "198.51.100.6", 24),     // Melbourne -> Sydney
        // No coordinates: every region in file order (ap-east first).
        ("10.0.0.0/24", "198.51.100.5", 8),
        ("0.0.0.0/0", "198.51.100.5", 0),
    ];
    for t in Transport::ALL {
        for (ecs, want, want_scope) in cases {
            let r = ask(&ns, NEAR, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&[want]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{ecs} {t:?}");
            assert_eq!(r.answers[0].ttl, 20, "{ecs}: the service's ttl");
        }
    }
}

#[test]
fn failover_answers_the_first_region_for_everyone_with_scope_zero() {
    let ns = serve(CITY_DB);
    for t in Transport::ALL {
        for ecs in [
            "2.2.3.0/24",
            "214.0.1.0/24",
            "10.0.0.0/24",
            "2a02:d3c0::/32",
        ] {
            let r = ask(&ns, "fo.steer.test.", RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&["203.0.113.3"]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), 0, "{ecs} {t:?}");
        }
    }
}

#[test]
fn static_and_negative_answers_have_scope_zero() {
    let ns = serve(CITY_DB);
    for t in Transport::ALL {
        let r = ask(
            &ns,
            "static.steer.test.",
            RecordType::A,
            Some("2.2.3.0/24"),
            t,
        );
        assert_eq!(addresses(&r), ips(&["192.0.2.200"]));
        assert_eq!(scope(&r, "2.2.3.0/24"), 0, "{t:?}");

        let r = ns.exchange(
            &query("nothing.steer.test.", RecordType::A, Some("2.2.3.0/24")),
            t,
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(scope(&r, "2.2.3.0/24"), 0, "{t:?}: NXDOMAIN");
    }
}

#[test]
fn weighted_splits_answers_by_weight_and_never_answers_the_standby() {
    let ns = serve(CITY_DB);
    const N: usize = 10_000;
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for i in 0..N {
        let ecs = if i % 2 == 0 {
            "2.2.3.0/24"
        } else {
            "214.0.1.0/24"
        };
        let r = ask(
            &ns,
            "wrr.steer.test.",
            RecordType::A,
            Some(ecs),
            Transport::Udp,
        );
        let a = addresses(&r);
        assert_eq!(a.len(), 1, "{a:?}");
        if i < 10 {
            assert_eq!(
                scope(&r, ecs),
                0,
                "weighted answers do not depend on the client"
            );
        }
        *counts.entry(a[0]).or_default() += 1;
    }
    let standby: IpAddr = "192.0.2.13".parse().unwrap();
    assert_eq!(
        counts.get(&standby),
        None,
        "the standby answered: {counts:?}"
    );
    // 10,000 answers: one standard deviation of a 60% share is 0.5 points; 3 points is far
    // outside chance.
    for (addr, share) in [
        ("192.0.2.10", 0.1),
        ("192.0.2.11", 0.3),
        ("192.0.2.12", 0.6),
    ] {
        let got = counts.get(&addr.parse().unwrap()).copied().unwrap_or(0) as f64 / N as f64;
        assert!(
            (got - share).abs() <= 0.03,
            "{addr}: {got:.3} of answers, configured {share} ({counts:?})"
        );
    }
}

#[test]
fn answers_two_gives_two_distinct_addresses() {
    let ns = serve(CITY_DB);
    let region: Vec<IpAddr> = ips(&["192.0.2.50", "192.0.2.51", "192.0.2.52"]);
    let mut seen = std::collections::BTreeSet::new();
    for t in Transport::ALL {
        for _ in 0..60 {
            let r = ask(&ns, "two.steer.test.", RecordType::A, None, t);
            let a = addresses(&r);
            assert_eq!(a.len(), 2, "{a:?}");
            assert_ne!(a[0], a[1], "{a:?}");
            assert!(a.iter().all(|x| region.contains(x)), "{a:?}: eu-west only");
            seen.extend(a);
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "all three eu-west endpoints take turns: {seen:?}"
    );
}

#[test]
fn ipv6_endpoints_answer_aaaa() {
    let ns = serve(CITY_DB);
    for t in Transport::ALL {
        let r = ask(&ns, "dual.steer.test.", RecordType::A, None, t);
        assert_eq!(addresses(&r), ips(&["192.0.2.30"]), "{t:?}");
        // eu-west has no IPv6 endpoint: AAAA comes from the next region.
        let r = ask(&ns, "dual.steer.test.", RecordType::AAAA, None, t);
        assert_eq!(addresses(&r), ips(&["2001:db8:31::1"]), "{t:?}");
        assert_eq!(r.answers[0].record_type(), RecordType::AAAA);
        // A service with no IPv6 endpoint: NODATA (NOERROR, no answer, the SOA).
        let r = ask(&ns, GEO, RecordType::AAAA, Some("2.2.3.0/24"), t);
        assert!(r.answers.is_empty(), "{t:?}: {:?}", r.answers);
        assert_eq!(
            r.authorities
                .iter()
                .map(|rec| rec.record_type())
                .collect::<Vec<_>>(),
            [RecordType::SOA],
            "{t:?}"
        );
    }
}

#[test]
fn invalid_client_subnet_options_get_formerr() {
    let ns = serve(CITY_DB);
    let cases: [(&str, Vec<u8>); 8] = [
        ("family 3", vec![0, 3, 24, 0, 2, 2, 3]),
        ("family 0", vec![0, 0, 0, 0]),
        ("IPv4 source prefix 33", vec![0, 1, 33, 0, 2, 2, 3, 0, 0]),
        ("IPv6 source prefix 129", {
            let mut v = vec![0, 2, 129, 0];
            v.extend([0x2a, 0x02, 0xd3, 0xc0]);
            v.extend([0; 13]);
            v
        }),
        // 2.2.3.1/24 sent as four bytes: the address must be truncated to the prefix.
        (
            "address longer than the prefix",
            vec![0, 1, 24, 0, 2, 2, 3, 1],
        ),
        // 2.2.3.0/23: bit 24 is set.
        ("bits past the prefix", vec![0, 1, 23, 0, 2, 2, 3]),
        ("address shorter than the prefix", vec![0, 1, 24, 0, 2, 2]),
        ("source prefix 0 with an address byte", vec![0, 1, 0, 0, 2]),
    ];
    for t in Transport::ALL {
        for (label, body) in &cases {
            let r = ns.exchange(&raw_ecs(GEO, body.clone()), t);
            assert_eq!(r.rcode(), 1, "{label} {t:?}: FORMERR");
            assert!(r.answers.is_empty(), "{label} {t:?}");
        }
        // Two ECS options in one OPT (RFC 7871 §6: at most one).
        let twice = raw_ecs(GEO, vec![0, 1, 24, 0, 2, 2, 3])
            .edns_option(EdnsOption::Unknown(8, vec![0, 1, 24, 0, 214, 0, 1]));
        let r = ns.exchange(&twice, t);
        assert_eq!(r.rcode(), 1, "two ECS options {t:?}: FORMERR");
        // The well-formed version of the same option is answered.
        let r = ns.exchange(&raw_ecs(GEO, vec![0, 1, 24, 0, 2, 2, 3]), t);
        assert_eq!(r.rcode(), 0, "{t:?}");
        assert_eq!(addresses(&r), ips(&["192.0.2.1"]), "{t:?}");
    }
}

#[test]
fn a_flat_schema_country_database_works() {
    // geo-whois-asn-country.mmdb records are `{"country_code": "US"}`: the continent and the
    // coordinates come from the built-in country table.
    let ns = serve(FLAT_DB);
    for t in Transport::ALL {
        // 8.8.8.0/24 -> US -> continent NA -> us-east; the database's network is a /15.
        let r = ask(&ns, GEO, RecordType::A, Some("8.8.8.0/24"), t);
        assert_eq!(addresses(&r), ips(&["192.0.2.3"]), "{t:?}");
        assert_eq!(scope(&r, "8.8.8.0/24"), 15, "{t:?}");
        // The US centroid is nearest to Ashburn.
        let r = ask(&ns, NEAR, RecordType::A, Some("8.8.8.0/24"), t);
        assert_eq!(addresses(&r), ips(&["198.51.100.3"]), "{t:?}");
        // 81.2.69.142 is GB in this database too.
        let r = ask(&ns, GEO, RecordType::A, Some("81.2.69.142/32"), t);
        assert_eq!(addresses(&r), ips(&["192.0.2.1"]), "{t:?}");
    }
}

#[test]
fn a_country_only_database_uses_the_country_centroid_for_nearest() {
    let ns = serve(COUNTRY_DB);
    let cases = [
        ("89.160.20.128/25", "198.51.100.2", 25), // SE centroid -> Stockholm
        ("81.2.69.144/28", "198.51.100.1", 28),   // GB centroid -> Dublin
        ("50.114.0.0/22", "198.51.100.3", 22),    // US centroid -> Ashburn (Country DB only)
        ("111.235.160.0/22", "198.51.100.5", 22), // CN centroid -> Hong Kong (Country DB only)
    ];
    for t in Transport::ALL {
        for (ecs, want, want_scope) in cases {
            let r = ask(&ns, NEAR, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&[want]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{ecs} {t:?}");
        }
        // geo still works by country: 111.235.160.0/22 is CN -> ap-east.
        let r = ask(&ns, GEO, RecordType::A, Some("111.235.160.0/22"), t);
        assert_eq!(addresses(&r), ips(&["192.0.2.5"]), "{t:?}");
        // 2.2.3.0/24 is City-only: not found here, so the default.
        let r = ask(&ns, GEO, RecordType::A, Some("2.2.3.0/24"), t);
        assert_eq!(addresses(&r), ips(&["192.0.2.100"]), "{t:?}");
    }
}

#[test]
fn a_cname_into_a_service_keeps_the_services_scope() {
    let ns = serve(CITY_DB);
    for t in Transport::ALL {
        // Letter case of the name does not matter either.
        let r = ask(
            &ns,
            "Alias.STEER.test.",
            RecordType::A,
            Some("89.160.20.128/25"),
            t,
        );
        let types: Vec<RecordType> = r.answers.iter().map(|a| a.record_type()).collect();
        assert_eq!(types, [RecordType::CNAME, RecordType::A], "{t:?}");
        assert_eq!(addresses(&r), ips(&["192.0.2.2"]), "{t:?}");
        assert_eq!(scope(&r, "89.160.20.128/25"), 25, "{t:?}");
        // Other types at a service name: NODATA, and nothing about the client was used.
        let r = ask(&ns, GEO, RecordType::TXT, Some("89.160.20.128/25"), t);
        assert!(r.answers.is_empty(), "{t:?}");
        assert_eq!(scope(&r, "89.160.20.128/25"), 0, "{t:?}");
    }
}

#[test]
fn the_text_source_database_works() {
    // geoip/meridian-sample.txt: the documentation ranges have one continent each.
    let ns = serve(SAMPLE_SOURCE);
    let cases = [
        ("192.0.2.0/24", "192.0.2.1", 24),    // DE, continent EU -> eu-west
        ("203.0.113.0/24", "192.0.2.4", 24),  // JP, continent AS -> ap-southeast
        ("2001:db8:4::/48", "192.0.2.6", 48), // AU, country -> au-east
        ("214.0.1.0/24", "192.0.2.6", 24),    // the City test networks are in it too
        ("10.0.0.0/24", "192.0.2.100", 5),    // nothing in 8.0.0.0/5: default, scope 5
    ];
    for t in Transport::ALL {
        for (ecs, want, want_scope) in cases {
            let r = ask(&ns, GEO, RecordType::A, Some(ecs), t);
            assert_eq!(addresses(&r), ips(&[want]), "{ecs} {t:?}");
            assert_eq!(scope(&r, ecs), want_scope, "{ecs} {t:?}");
        }
    }
}

#[test]
fn the_geoip_database_is_swapped_on_reload() {
    // A text source the test rewrites: 10.0.0.0/24 moves from Sweden to Australia.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.txt");
    std::fs::write(&db, "10.0.0.0/24 SE\n").unwrap();
    let ns = serve(db.to_str().unwrap());
    let r = ask(&ns, GEO, RecordType::A, Some("10.0.0.0/24"), Transport::Udp);
    assert_eq!(addresses(&r), ips(&["192.0.2.2"]), "SE -> eu-north");
    assert_eq!(scope(&r, "10.0.0.0/24"), 24);

    std::fs::write(&db, "10.0.0.0/24 AU\n").unwrap();
    ns.signal("HUP");
    ns.wait_for_generation(2);
    let r = ask(&ns, GEO, RecordType::A, Some("10.0.0.0/24"), Transport::Udp);
    assert_eq!(
        addresses(&r),
        ips(&["192.0.2.6"]),
        "AU -> au-east after the reload"
    );

    // A broken database on reload: logged with its path, the previous one keeps serving.
    std::fs::write(&db, "10.0.0.0/33 AU\n").unwrap();
    ns.signal("HUP");
    ns.wait_for_generation(3);
    let r = ask(&ns, GEO, RecordType::A, Some("10.0.0.0/24"), Transport::Udp);
    assert_eq!(
        addresses(&r),
        ips(&["192.0.2.6"]),
        "the previous database still answers"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let named = |log: &str| {
        log.lines()
            .any(|l| l.contains("geo.txt") && l.contains("10.0.0.0/33"))
    };
    while !named(&ns.log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload error does not name the database:\n{}",
            ns.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

#[test]
fn check_config_and_serve_reject_a_bad_service_naming_file_and_key() {
    let out = run(&[
        "check-config",
        "--zones",
        fixture("steering").to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("ok steer.test."), "{out:?}");

    // The fixture with one endpoint weight out of range.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("steering").join("steer.test.toml")).unwrap();
    let bad = text.replacen("weight = 300", "weight = 3000", 1);
    assert_ne!(bad, text);
    let file = dir.path().join("steer.test.toml");
    std::fs::write(&file, bad).unwrap();
    let want = format!(
        "{}: service.wrr.endpoint[1].weight: 3000 is not between 0 and 1000",
        file.display()
    );
    let out = run(&["check-config", "--zones", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(&want), "{out:?}");
    let out = crate::harness::run_serve(dir.path(), &["--geoip", CITY_DB]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(&want), "{out:?}");
}

// ---- Health, driven by operator overrides ----

#[test]
fn standby_answers_only_when_every_weighted_endpoint_is_out() {
    let (ns, _token) = serve_with_admin(CITY_DB);
    let wrr = "wrr.steer.test.";
    let explain = "name=wrr.steer.test.&client=127.0.0.1";
    let ids: Vec<u64> = ["192.0.2.10", "192.0.2.11"]
        .iter()
        .map(|a| force(&ns, "wrr", None, Some(a), "down"))
        .collect();
    wait_for_explain(&ns, explain, |e| {
        explained_health(e, "192.0.2.10") == Some(false)
            && explained_health(e, "192.0.2.11") == Some(false)
    });
    // One weighted endpoint left: it answers, the standby does not.
    for _ in 0..100 {
        let r = ask(&ns, wrr, RecordType::A, None, Transport::Udp);
        assert_eq!(addresses(&r), ips(&["192.0.2.12"]));
    }
    // The last one drained (healthy, weight 0): it and the standby share, uniformly.
    let drained = force(&ns, "wrr", None, Some("192.0.2.12"), "drain");
    let e = wait_for_explain(&ns, explain, |e| e["service"]["outcome"] == "standby");
    assert_eq!(
        e["service"]["chosen_region"],
        serde_json::Value::Null,
        "pooled: {e}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let r = ask(&ns, wrr, RecordType::A, None, Transport::Udp);
        seen.extend(addresses(&r));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ips(&["192.0.2.12", "192.0.2.13"])
    );
    // Down instead: only the standby.
    force(&ns, "wrr", None, Some("192.0.2.12"), "down");
    wait_for_explain(&ns, explain, |e| {
        explained_health(e, "192.0.2.12") == Some(false)
    });
    for _ in 0..50 {
        let r = ask(&ns, wrr, RecordType::A, None, Transport::Udp);
        assert_eq!(addresses(&r), ips(&["192.0.2.13"]));
    }
    // Overrides removed: the weighted endpoints are back and the standby is idle again.
    let (status, list) = admin(&ns, "GET", "/v1/overrides", "");
    assert_eq!(status, 200, "{list}");
    for id in &ids {
        let (status, body) = admin(&ns, "DELETE", &format!("/v1/overrides/{id}"), "");
        assert_eq!(status, 204, "{body}");
    }
    let (status, body) = admin(&ns, "DELETE", &format!("/v1/overrides/{drained}"), "");
    assert_eq!(status, 204, "{body}");
    // The newest override on 192.0.2.12 (down) is still there: the other two answer.
    wait_for_explain(&ns, explain, |e| e["service"]["outcome"] == "healthy");
    for _ in 0..100 {
        let r = ask(&ns, wrr, RecordType::A, None, Transport::Udp);
        let a = addresses(&r);
        assert!(
            a == ips(&["192.0.2.10"]) || a == ips(&["192.0.2.11"]),
            "{a:?}"
        );
    }
}

#[test]
fn failover_moves_to_the_next_region_and_fails_open_when_all_are_down() {
    let (ns, _token) = serve_with_admin(CITY_DB);
    let fo = "fo.steer.test.";
    force(&ns, "fo", Some("us-east"), None, "down");
    let r = wait_for_answer(&ns, fo, RecordType::A, &ips(&["203.0.113.1"]));
    assert!(r.metadata.authoritative);
    // Everything down: fallback "all" (the default) answers the first region's endpoints
    // rather than nothing.
    force(&ns, "fo", Some("eu-west"), None, "down");
    wait_for_answer(&ns, fo, RecordType::A, &ips(&["203.0.113.3"]));
    let r = explain_api(&ns, "name=fo.steer.test.&ecs=2.2.3.0/24");
    assert_eq!(r["service"]["outcome"], "fallback", "{r}");
    assert_eq!(r["service"]["chosen_region"], "us-east", "{r}");
    assert_eq!(r["ecs_scope"], 0, "{r}");
}

#[test]
fn fallback_none_gives_nodata_and_fallback_addresses_answer_when_all_are_down() {
    let (ns, _token) = serve_with_admin(CITY_DB);
    // Up: the endpoints.
    let r = ask(&ns, "nofb.steer.test.", RecordType::A, None, Transport::Udp);
    assert_eq!(addresses(&r), ips(&["192.0.2.40"]));
    let r = ask(
        &ns,
        "fixed.steer.test.",
        RecordType::A,
        None,
        Transport::Udp,
    );
    assert_eq!(addresses(&r), ips(&["192.0.2.41"]));

    force(&ns, "nofb", None, None, "down");
    force(&ns, "fixed", None, None, "down");
    wait_for_answer(
        &ns,
        "fixed.steer.test.",
        RecordType::A,
        &ips(&["198.51.100.250"]),
    );
    for t in Transport::ALL {
        // fallback = "none": NODATA, with the SOA for negative caching.
        let r = ask(&ns, "nofb.steer.test.", RecordType::A, None, t);
        assert!(r.answers.is_empty(), "{t:?}: {:?}", r.answers);
        let auth: Vec<RecordType> = r.authorities.iter().map(|a| a.record_type()).collect();
        assert_eq!(auth, [RecordType::SOA], "{t:?}");
        // fallback = [addresses]: per family.
        let r = ask(&ns, "fixed.steer.test.", RecordType::A, None, t);
        assert_eq!(addresses(&r), ips(&["198.51.100.250"]), "{t:?}");
        let r = ask(&ns, "fixed.steer.test.", RecordType::AAAA, None, t);
        assert_eq!(addresses(&r), ips(&["2001:db8::250"]), "{t:?}");
    }
}

// ---- Explain ----

/// The answer addresses and ECS scope `GET /v1/explain` reports must be what DNS returns.
#[test]
fn explain_agrees_with_the_dns_answer() {
    let ns = serve(CITY_DB);
    let cases = [
        ("geo.steer.test.", "89.160.20.128/25"),
        ("geo.steer.test.", "214.78.120.0/24"),
        ("geo.steer.test.", "81.2.69.176/28"),
        ("geo.steer.test.", "2.2.3.0/24"),
        ("geo.steer.test.", "10.0.0.0/24"),
        ("geo.steer.test.", "0.0.0.0/0"),
        ("near.steer.test.", "175.16.199.0/24"),
        ("fo.steer.test.", "2.2.3.0/24"),
        ("static.steer.test.", "2.2.3.0/24"),
        ("alias.steer.test.", "214.0.1.0/24"),
    ];
    for (name, ecs) in cases {
        let dns = ask(&ns, name, RecordType::A, Some(ecs), Transport::Udp);
        let e = explain_api(&ns, &format!("name={name}&ecs={ecs}&type=A"));
        let explained: Vec<IpAddr> = {
            let mut v: Vec<IpAddr> = e["answer"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|rr| {
                    let rr = rr.as_str().unwrap();
                    let mut f = rr.split_whitespace();
                    (f.nth(3) == Some("A")).then(|| f.next().unwrap().parse().unwrap())
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(explained, addresses(&dns), "{name} {ecs}: {e}");
        assert_eq!(
            e["ecs_scope"],
            u64::from(scope(&dns, ecs)),
            "{name} {ecs}: {e}"
        );
        assert_eq!(e["rcode"], "NOERROR", "{name} {ecs}");
    }
}

#[test]
fn explain_shows_location_order_and_decision() {
    let ns = serve(CITY_DB);
    let e = explain_api(&ns, "name=geo.steer.test.&ecs=89.160.20.128/25");
    let client = &e["client"];
    assert_eq!(client["located_by"], "ecs", "{e}");
    assert_eq!(client["source_prefix"], 25);
    assert_eq!(client["geoip_network"], "89.160.20.128/25");
    assert_eq!(
        (&client["country"], &client["continent"]),
        (&"SE".into(), &"EU".into())
    );
    let svc = &e["service"];
    assert_eq!(svc["policy"], "geo");
    assert!(svc["order_reason"].as_str().unwrap().contains("SE"), "{e}");
    assert_eq!(svc["regions"][0]["name"], "eu-north", "{e}");
    assert_eq!(
        svc["regions"].as_array().unwrap().len(),
        7,
        "every region is walkable"
    );
    assert_eq!(
        (&svc["outcome"], &svc["chosen_region"]),
        (&"healthy".into(), &"eu-north".into())
    );

    // Nearest lists regions by increasing distance, the nearest first.
    let e = explain_api(&ns, "name=near.steer.test.&ecs=2.2.3.0/24");
    let regions = e["service"]["regions"].as_array().unwrap();
    let d: Vec<f64> = regions
        .iter()
        .map(|r| r["distance_km"].as_f64().unwrap())
        .collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    assert_eq!(regions[0]["name"], "eu-west");
    assert!(
        (d[0] - 382.0).abs() < 5.0,
        "Boxford to Dublin is about 380 km: {d:?}"
    );

    // No ECS: the source address; ECS /0: nobody to locate.
    let e = explain_api(&ns, "name=geo.steer.test.&client=127.0.0.1");
    assert_eq!(e["client"]["located_by"], "source address", "{e}");
    assert_eq!(e["client"]["geoip_found"], false);
    assert_eq!(e["service"]["chosen_region"], "anycast");
    let e = explain_api(&ns, "name=geo.steer.test.&ecs=0.0.0.0/0");
    assert_eq!(e["client"]["located_by"], "none", "{e}");
    assert_eq!(e["ecs_scope"], 0);

    // A malformed ECS prefix is a client error.
    let r = ns.get("/v1/explain?name=geo.steer.test.&ecs=2.2.3.1/24");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("2.2.3.0/24"),
        "suggests the prefix: {}",
        r.body
    );
}

#[test]
fn explain_on_the_command_line_works_offline() {
    let zones = fixture("steering");
    let zones = zones.to_str().unwrap();
    let out = run(&[
        "explain",
        "geo.steer.test",
        "--ecs",
        "214.0.1.0/24",
        "--zones",
        zones,
        "--geoip",
        CITY_DB,
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    for line in [
        "client    located by ecs: 214.0.1.0/24",
        "order     geo.country AU matched",
        "decision  healthy from au-east",
        "answer    geo.steer.test. 30 IN A 192.0.2.6",
        "ecs scope /24",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in\n{}",
            out.stdout
        );
    }
    let out = run(&[
        "explain",
        "dual.steer.test",
        "--type",
        "AAAA",
        "--json",
        "--zones",
        zones,
        "--geoip",
        CITY_DB,
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let e: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["service"]["chosen_region"], "us-east", "{e}");
    assert_eq!(e["answer"][0], "dual.steer.test. 30 IN AAAA 2001:db8:31::1");
    let out = run(&[
        "explain",
        "geo.steer.test",
        "--ecs",
        "2.2.3.1/24",
        "--zones",
        zones,
        "--geoip",
        CITY_DB,
    ]);
    assert_eq!(out.code, Some(2), "{out:?}");
}
