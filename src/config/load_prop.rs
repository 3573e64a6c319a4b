//! Property tests of the zone loader (stable-toolchain counterpart of `fuzz/zone`): generated
//! zone files, valid and invalid in every field (NaN locations, huge weights, bad names,
//! unknown regions, garbage RDATA, broken master files), go through `load_zone` and
//! `compile`. Neither may panic; an error must name the file; and every address any query then
//! gets must be one that the file itself contains (nothing invented, nothing from elsewhere).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use toml::{Table, Value};

use super::load_zone;
use crate::dns::answer::Writer;
use crate::dns::wire;
use crate::geo::GeoDb;
use crate::routing::compile::{AllUp, compile};
use crate::routing::select::Client;

const V4: &[&str] = &["192.0.2.1", "192.0.2.2", "198.51.100.7", "203.0.113.9"];
const V6: &[&str] = &["2001:db8::1", "2001:db8::2"];
const ADDRESSES: &[&str] = &[
    "192.0.2.1",
    "192.0.2.2",
    "198.51.100.7",
    "203.0.113.9",
    "2001:db8::1",
    "2001:db8::2",
];
const BAD_ADDRESSES: &[&str] = &[
    "::ffff:192.0.2.3",
    "0.0.0.0",
    "255.255.255.255",
    "192.0.2.300",
    "not-an-ip",
    "",
];
const NAMES: &[&str] = &["@", "www", "a.b", "*.w", "x.prop.test.", "ns1", "near", "m"];
const BAD_NAMES: &[&str] = &["other.zone.", "-bad", "", "a..b", "x y"];
const REGIONS: &[&str] = &["eu", "us", "ap"];
const BAD_REGIONS: &[&str] = &["Bad Name", "", "nowhere"];

/// Mostly a valid value, sometimes an invalid one: so that a fair share of generated zones
/// load (and reach the compiler and the answer path) while every field still gets bad input.
/// `w` is the weight of invalid values against 12 for valid ones; 0 generates valid only.
fn choose(
    w: u32,
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> BoxedStrategy<String> {
    if w == 0 {
        pick(valid).boxed()
    } else {
        prop_oneof![12 => pick(valid), w => pick(invalid)].boxed()
    }
}

fn geo() -> Arc<GeoDb> {
    static GEO: OnceLock<Arc<GeoDb>> = OnceLock::new();
    Arc::clone(GEO.get_or_init(|| {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/meridian-sample.txt");
        Arc::new(GeoDb::open(&path).unwrap())
    }))
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(items).prop_map(str::to_owned)
}

fn maybe<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.6, s)
}

fn u32_edge(w: u32, valid: Vec<i64>) -> BoxedStrategy<i64> {
    if w == 0 {
        prop::sample::select(valid).boxed()
    } else {
        prop_oneof![
            12 => prop::sample::select(valid),
            w => prop::sample::select(vec![0i64, 1001, i64::from(u32::MAX), -1, 1 << 40]),
            w => any::<u32>().prop_map(i64::from),
        ]
        .boxed()
    }
}

fn rdata(w: u32, rtype: &str) -> BoxedStrategy<String> {
    let valid: &'static [&'static str] = match rtype.to_ascii_uppercase().as_str() {
        "A" => return choose(w, V4, BAD_ADDRESSES),
        "AAAA" => return choose(w, V6, BAD_ADDRESSES),
        "MX" => &["10 mail", "0 .", "10 mail.prop.test."],
        "TXT" => &["\"hello\"", "\"a\" \"b\"", "unquoted"],
        "CNAME" | "NS" | "PTR" => &["www", "target.prop.test.", "other.example."],
        "SRV" => &["10 50 80 www", "0 0 443 target.prop.test."],
        "CAA" => &["0 issue \"letsencrypt.org\"", "128 tbs \"x\""],
        _ => &["", "1 2 3", "\\# 0"],
    };
    if w == 0 {
        pick(valid).boxed()
    } else {
        prop_oneof![12 => pick(valid), w => "[ -~]{0,24}"].boxed()
    }
}

fn record(w: u32) -> impl Strategy<Value = Value> {
    (
        choose(w, NAMES, BAD_NAMES),
        choose(
            w,
            &[
                "A", "AAAA", "TXT", "MX", "CNAME", "SRV", "CAA", "NS", "PTR", "a",
            ],
            &["SOA", "BOGUS", "OPT"],
        ),
        maybe(u32_edge(w, vec![1, 30, 300, 3600])),
    )
        .prop_flat_map(move |(name, rtype, ttl)| {
            let data = prop::collection::vec(rdata(w, &rtype), 1..4);
            (Just(name), Just(rtype), Just(ttl), data)
        })
        .prop_map(move |(name, rtype, ttl, data)| {
            // Apex NS records go in `ns`; a valid file delegates a child instead.
            let name = if w == 0 && rtype.eq_ignore_ascii_case("NS") && name == "@" {
                "child".to_owned()
            } else {
                name
            };
            let mut t = Table::new();
            t.insert("name".into(), Value::String(name));
            t.insert("type".into(), Value::String(rtype));
            if let Some(ttl) = ttl {
                t.insert("ttl".into(), Value::Integer(ttl));
            }
            t.insert(
                "data".into(),
                Value::Array(data.into_iter().map(Value::String).collect()),
            );
            Value::Table(t)
        })
}

fn region(w: u32) -> impl Strategy<Value = Value> {
    (
        maybe(prop::array::uniform2(if w == 0 {
            (-90.0f64..90.0).boxed()
        } else {
            prop_oneof![
                12 => -90.0f64..90.0,
                w => prop::sample::select(vec![-200.0f64, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
            ]
            .boxed()
        })),
        prop::collection::vec(choose(w, &["GB", "US", "SG", "DE"], &["XX", "gb", ""]), 0..3),
        prop::collection::vec(choose(w, &["EU", "NA", "AS"], &["XX"]), 0..2),
    )
        .prop_map(|(location, countries, continents)| {
            let mut t = Table::new();
            if let Some([a, b]) = location {
                t.insert("location".into(), Value::Array(vec![Value::Float(a), Value::Float(b)]));
            }
            t.insert("countries".into(), strings(countries));
            t.insert("continents".into(), strings(continents));
            Value::Table(t)
        })
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

fn endpoint(w: u32) -> impl Strategy<Value = Value> {
    (
        choose(w, REGIONS, BAD_REGIONS),
        choose(w, ADDRESSES, BAD_ADDRESSES),
        maybe(u32_edge(w, vec![1, 10, 100, 1000])),
    )
        .prop_map(|(region, address, weight)| {
            let mut t = Table::new();
            t.insert("region".into(), Value::String(region));
            t.insert("address".into(), Value::String(address));
            if let Some(w) = weight {
                t.insert("weight".into(), Value::Integer(w));
            }
            Value::Table(t)
        })
}

fn service(w: u32) -> impl Strategy<Value = Value> {
    (
        maybe(choose(
            w,
            &["weighted", "failover", "geo", "nearest"],
            &["bogus"],
        )),
        maybe(u32_edge(w, vec![1, 2, 3, 8])),
        maybe(u32_edge(w, vec![1, 30, 300])),
        maybe(prop_oneof![
            choose(w, &["all", "none"], &["x"]).prop_map(Value::String),
            prop::collection::vec(choose(w, ADDRESSES, BAD_ADDRESSES), 1..3).prop_map(strings),
        ]),
        prop::collection::vec(choose(w, REGIONS, BAD_REGIONS), 0..3),
        maybe((
            prop::collection::vec(choose(w, REGIONS, BAD_REGIONS), 0..3),
            prop::collection::btree_map(
                choose(w, &["GB", "US"], &["XX"]),
                prop::collection::vec(choose(w, REGIONS, BAD_REGIONS), 0..2),
                0..2,
            ),
            prop::collection::btree_map(
                choose(
                    w,
                    &["203.0.113.0/24", "2001:db8::/32"],
                    &["10.0.0.0/33", "x"],
                ),
                prop::collection::vec(choose(w, REGIONS, BAD_REGIONS), 0..2),
                0..2,
            ),
        )),
        prop::collection::vec(endpoint(w), if w == 0 { 1..6 } else { 0..6 }),
    )
        .prop_map(
            move |(policy, answers, ttl, fallback, failover, geo, endpoints)| {
                let (failover, geo, endpoints) = if w == 0 {
                    // Valid files give `failover`/`geo` only with their policy, each address once.
                    let mut seen = BTreeSet::new();
                    let endpoints = endpoints
                        .into_iter()
                        .filter(|e| seen.insert(e.get("address").map(ToString::to_string)))
                        .collect();
                    let failover = if policy.as_deref() == Some("failover") {
                        failover
                    } else {
                        Vec::new()
                    };
                    let geo = if policy.as_deref() == Some("geo") {
                        geo
                    } else {
                        None
                    };
                    (failover, geo, endpoints)
                } else {
                    (failover, geo, endpoints)
                };
                let mut t = Table::new();
                if let Some(p) = policy {
                    t.insert("policy".into(), Value::String(p));
                }
                if let Some(a) = answers {
                    t.insert("answers".into(), Value::Integer(a));
                }
                if let Some(ttl) = ttl {
                    t.insert("ttl".into(), Value::Integer(ttl));
                }
                if let Some(f) = fallback {
                    t.insert("fallback".into(), f);
                }
                t.insert("failover".into(), strings(failover));
                if let Some((default, country, subnet)) = geo {
                    let mut g = Table::new();
                    g.insert("default".into(), strings(default));
                    let map = |m: std::collections::BTreeMap<String, Vec<String>>| {
                        Value::Table(m.into_iter().map(|(k, v)| (k, strings(v))).collect())
                    };
                    g.insert("country".into(), map(country));
                    g.insert("subnet".into(), map(subnet));
                    t.insert("geo".into(), Value::Table(g));
                }
                t.insert("endpoint".into(), Value::Array(endpoints));
                Value::Table(t)
            },
        )
}

fn master_file(w: u32) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            12 => pick(&[
                "$ORIGIN prop.test.",
                "$TTL 60",
                "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300",
                "@ IN NS ns1",
                "ns1 IN A 192.0.2.1",
                "www 300 IN A 192.0.2.2",
                "www IN AAAA 2001:db8::1",
                "x IN TXT \"a\" \"b\"",
                "m IN MX 10 mail",
                "outside.example. IN A 192.0.2.1",
                "( 1 2",
                "a IN TXT \"unterminated",
                "b IN MX",
                "c IN A 192.0.2.300",
                "",
            ]),
            w.max(1) => "[ -~]{0,30}",
        ],
        0..10,
    )
    .prop_map(|lines| format!("$TTL 60\n{}", lines.join("\n")))
}

/// A zone file: TOML text, and the master file it may include.
fn zone_file(w: u32) -> impl Strategy<Value = (String, Option<String>)> {
    (
        choose(
            w,
            &["prop.test.", "Prop.TEST."],
            &["prop.test", "", ".", "a..b."],
        ),
        maybe(u32_edge(w, vec![1, 60, 3600])),
        prop::collection::vec(
            choose(
                w,
                &["ns1", "ns1.prop.test.", "ns.elsewhere."],
                &["", "bad..name"],
            ),
            1..3,
        ),
        {
            let soa = (
                choose(w, &["ns1", "ns1.prop.test."], &[""]),
                pick(&["hostmaster", "h.prop.test."]),
                u32_edge(w, vec![1, 2026112501]),
            );
            if w == 0 {
                soa.prop_map(Some).boxed()
            } else {
                prop::option::weighted(0.9, soa).boxed()
            }
        },
        prop::collection::vec(record(w), 0..6),
        if w == 0 {
            // Valid files declare every region their services may name.
            (region(w), region(w), region(w))
                .prop_map(|(a, b, c)| {
                    [("eu", a), ("us", b), ("ap", c)]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect()
                })
                .boxed()
        } else {
            prop::collection::btree_map(choose(w, REGIONS, BAD_REGIONS), region(w), 0..4).boxed()
        },
        prop::collection::btree_map(
            choose(w, &["www", "near", "api", "a.b"], &["*", "@"]),
            service(w),
            0..3,
        ),
        if w == 0 {
            Just(None).boxed()
        } else {
            prop::option::weighted(0.3, master_file(w)).boxed()
        },
    )
        .prop_map(
            |(origin, ttl, ns, soa, records, regions, services, master)| {
                let mut t = Table::new();
                t.insert("origin".into(), Value::String(origin));
                if let Some(ttl) = ttl {
                    t.insert("ttl".into(), Value::Integer(ttl));
                }
                t.insert("ns".into(), strings(ns));
                if let Some((mname, rname, serial)) = soa {
                    let mut s = Table::new();
                    s.insert("mname".into(), Value::String(mname));
                    s.insert("rname".into(), Value::String(rname));
                    s.insert("serial".into(), Value::Integer(serial));
                    t.insert("soa".into(), Value::Table(s));
                }
                if master.is_some() {
                    t.insert("records_file".into(), Value::String("m.zone".into()));
                }
                t.insert("record".into(), Value::Array(records));
                t.insert("region".into(), Value::Table(regions.into_iter().collect()));
                t.insert(
                    "service".into(),
                    Value::Table(services.into_iter().collect()),
                );
                (t.to_string(), master)
            },
        )
}

/// Every address written anywhere in the input.
fn addresses_in(texts: &[&str]) -> BTreeSet<IpAddr> {
    texts
        .iter()
        .flat_map(|t| t.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')))
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn query_packet(name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        p.push(u8::try_from(label.len()).ok().filter(|n| *n <= 63)?);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    Some(p)
}

fn check_zone(toml_text: &str, master: Option<&str>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.toml");
    std::fs::write(&path, toml_text).unwrap();
    if let Some(m) = master {
        std::fs::write(dir.path().join("m.zone"), m).unwrap();
    }
    let zone = match load_zone(&path) {
        Ok(z) => z,
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.contains("z.toml") || msg.contains("m.zone"),
                "error names no file: {msg}"
            );
            return Ok(());
        }
    };
    let zone = Arc::new(zone);
    let Ok(table) = compile(&[Arc::clone(&zone)], geo(), &AllUp, 1) else {
        return Ok(());
    };
    let allowed = addresses_in(&[toml_text, master.unwrap_or("")]);
    let mut names: BTreeSet<String> = zone.records.iter().map(|r| r.name.to_ascii()).collect();
    names.extend(zone.services.iter().map(|s| s.name.to_ascii()));
    names.insert(zone.origin.to_ascii());
    let mut out = Vec::new();
    for name in names.iter().take(20) {
        for qtype in [wire::qtype::A, wire::qtype::AAAA, wire::qtype::ANY] {
            let Some(packet) = query_packet(name, qtype) else {
                continue;
            };
            let Ok(q) = wire::parse(&packet) else {
                continue;
            };
            for source in ["81.2.69.160", "203.0.113.9", "2001:db8::7", "10.1.2.3"] {
                let client = Client {
                    source: source.parse().unwrap(),
                    subnet: None,
                };
                let mut w = Writer::new(&mut out, &packet, &q, 65_535);
                table.answer(&q, &client, &mut w);
                w.finish();
                let msg = hickory_proto::op::Message::from_vec(&out).map_err(|e| {
                    TestCaseError::fail(format!("{name}: answer does not parse: {e}"))
                })?;
                for r in msg.answers.iter().chain(&msg.additionals) {
                    let ip = match &r.data {
                        hickory_proto::rr::RData::A(a) => IpAddr::V4(a.0),
                        hickory_proto::rr::RData::AAAA(a) => IpAddr::V6(a.0),
                        _ => continue,
                    };
                    prop_assert!(
                        allowed.contains(&ip),
                        "{name} answered {ip}, which the file does not contain"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Regression (fuzz/zone, 2026-11-25): hickory's text parser accepts the CAA tag `issu%`,
/// its wire decoder rejects it, so every response with that RRset failed to decode at clients.
#[test]
fn records_whose_wire_form_does_not_decode_are_rejected() {
    let zone = |extra: &str| {
        format!(
            "origin = \"example.test.\"\nns = [\"ns1.example.test.\"]\n{extra}\n\
             [soa]\nmname = \"ns1.example.test.\"\nrname = \"h.example.test.\"\nserial = 1\n\n\
             [[record]]\nname = \"@\"\ntype = \"CAA\"\n\
             data = ['0 issu% \"ca.example.net\"', '128 iodef \"mailto:security@example.test\"']\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.toml");
    std::fs::write(&path, zone("")).unwrap();
    let err = load_zone(&path).unwrap_err().to_string();
    assert!(
        err.contains("record[0].data[0]") && err.contains("CAA"),
        "{err}"
    );

    // The same record in a master file.
    std::fs::write(
        dir.path().join("m.zone"),
        "@ 300 IN CAA 0 issu% \"ca.example.net\"\n",
    )
    .unwrap();
    let text = zone("records_file = \"m.zone\"").replace("'0 issu% ", "'0 issue ");
    std::fs::write(&path, text).unwrap();
    let err = load_zone(&path).unwrap_err().to_string();
    assert!(err.contains("m.zone") && err.contains("CAA"), "{err}");

    // A good tag loads.
    std::fs::write(&path, zone("").replace("'0 issu% ", "'0 issue ")).unwrap();
    load_zone(&path).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn generated_zone_files_load_or_fail_cleanly_and_answer_only_their_own_addresses(
        (toml_text, master) in prop_oneof![zone_file(0), zone_file(1)],
    ) {
        check_zone(&toml_text, master.as_deref())?;
    }

    #[test]
    fn arbitrary_text_never_panics_the_loader(text in ".{0,300}", master in maybe(".{0,200}")) {
        let toml_text = format!("origin = \"prop.test.\"\nrecords_file = \"m.zone\"\n{text}");
        check_zone(&toml_text, master.as_deref().or(Some("")))?;
        check_zone(&text, None)?;
    }
}
