//! Helpers for the traffic-steering tests: the GeoIP test databases, ECS queries, and reading
//! the answer addresses and the echoed ECS option of a reply.
//!
//! Owns: nothing but conveniences over `harness`. Must never: start processes or open sockets
//! itself (the harness does, with its deadlines).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::harness::{Meridian, Query, Reply, Transport, http_request};

/// MaxMind's GeoIP2-City test database (country, continent, coordinates).
pub const CITY_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/geoip/GeoIP2-City-Test.mmdb"
);
/// MaxMind's GeoLite2-Country test database (no coordinates: nearest uses country centroids).
pub const COUNTRY_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/geoip/GeoLite2-Country-Test.mmdb"
);
/// ip-location-db's worldwide country database, flat schema (`{"country_code": "US"}`).
pub const FLAT_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/geoip/geo-whois-asn-country.mmdb"
);

/// Meridian's committed text source (built in memory by the server).
pub const SAMPLE_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/meridian-sample.txt");

/// Serves `tests/fixtures/steering` with `db` as the GeoIP database.
pub fn serve(db: &str) -> Meridian {
    Meridian::serve_with("steering", &["--geoip", db])
}

/// `"a.b.c.d/len"` as an address and prefix length.
pub fn subnet(s: &str) -> (IpAddr, u8) {
    let (addr, len) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("{s}: not a/len"));
    (addr.parse().unwrap(), len.parse().unwrap())
}

/// A query for `name` with EDNS and, when given, an ECS option for `ecs` ("a.b.c.d/len").
pub fn query(name: &str, rtype: RecordType, ecs: Option<&str>) -> Query {
    let q = Query::new(name, rtype).edns(1232);
    match ecs {
        Some(s) => {
            let (addr, len) = subnet(s);
            q.ecs(addr, len)
        }
        None => q,
    }
}

/// Asks `name` over `transport` with the ECS option `ecs`; checks NOERROR.
pub fn ask(
    ns: &Meridian,
    name: &str,
    rtype: RecordType,
    ecs: Option<&str>,
    transport: Transport,
) -> Reply {
    let r = ns.exchange(&query(name, rtype, ecs), transport);
    assert_eq!(
        r.rcode(),
        0,
        "{name} {rtype} ecs={ecs:?} {transport:?}: rcode"
    );
    r
}

/// The A and AAAA addresses of the answer section, sorted.
pub fn addresses(r: &Reply) -> Vec<IpAddr> {
    crate::harness::addresses(r)
}

/// Parses a list of addresses (test input).
pub fn ips(list: &[&str]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = list.iter().map(|a| a.parse().unwrap()).collect();
    v.sort();
    v
}

/// The echoed ECS option: (address, source prefix, scope prefix).
pub fn ecs_echo(r: &Reply) -> Option<(IpAddr, u8, u8)> {
    match r.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// The scope of the echoed ECS option, after checking that family, source prefix and address
/// are the query's (RFC 7871 §7.2.1) and that the scope fits the family. It may be longer than
/// the source: the source was then not specific enough for one answer.
pub fn scope(r: &Reply, sent: &str) -> u8 {
    let (addr, len) = subnet(sent);
    let (a, source, scope) = ecs_echo(r).unwrap_or_else(|| panic!("{sent}: no ECS echoed"));
    assert_eq!((a, source), (addr, len), "{sent}: echo");
    let width = if addr.is_ipv4() { 32 } else { 128 };
    assert!(scope <= width, "{sent}: scope /{scope} beyond the family");
    scope
}

/// A raw ECS option (code 8) with `data` as its body, for malformed cases.
pub fn raw_ecs(name: &str, data: Vec<u8>) -> Query {
    Query::new(name, RecordType::A).edns_option(EdnsOption::Unknown(8, data))
}

/// The admin token written for [`serve_with_admin`].
pub const ADMIN_TOKEN: &str = "steering-test-token";

/// A server with the admin API enabled; the token file lives as long as the returned dir.
pub fn serve_with_admin(db: &str) -> (Meridian, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let ns = Meridian::serve_with(
        "steering",
        &["--geoip", db, "--admin-token-file", token.to_str().unwrap()],
    );
    (ns, dir)
}

/// One HTTP/1.1 request to the API with the admin token; returns (status, body).
pub fn admin(ns: &Meridian, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http_request(
        ns.api,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    (r.status, r.body)
}

/// Forces `state` (`up`, `down`, `drain`) on a service of `steer.test.`, optionally narrowed
/// to a region or one address; returns the override's id.
pub fn force(
    ns: &Meridian,
    service: &str,
    region: Option<&str>,
    address: Option<&str>,
    state: &str,
) -> u64 {
    let mut target = serde_json::json!({"zone": "steer.test.", "service": service});
    if let Some(r) = region {
        target["region"] = r.into();
    }
    if let Some(a) = address {
        target["address"] = a.into();
    }
    let body = serde_json::json!({
        "target": target,
        "state": state,
        "expires_in_seconds": 600,
        "reason": "steering integration test",
    });
    let (status, text) = admin(ns, "POST", "/v1/overrides", &body.to_string());
    assert_eq!(status, 201, "override {body}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {text}"))
}

/// Asks until the answer's addresses are `want` (5 s deadline): health changes are applied
/// by a batched recompile, not synchronously with the API call.
pub fn wait_for_answer(ns: &Meridian, name: &str, rtype: RecordType, want: &[IpAddr]) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = ns.exchange(&query(name, rtype, None), Transport::Udp);
        if addresses(&r) == want {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {rtype}: still {:?}, want {want:?}\n{}",
            addresses(&r),
            ns.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `GET /v1/explain?QUERY` as JSON (checked for 200).
pub fn explain_api(ns: &Meridian, query: &str) -> serde_json::Value {
    let r = ns.get(&format!("/v1/explain?{query}"));
    assert_eq!(r.status, 200, "/v1/explain?{query}: {}", r.body);
    r.json()
}

/// Polls `GET /v1/explain?QUERY` until `done` accepts it (5 s deadline): the live table is
/// recompiled after a health change, shortly after the API call returns.
pub fn wait_for_explain(
    ns: &Meridian,
    query: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let e = explain_api(ns, query);
        if done(&e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "/v1/explain?{query} stayed at {e}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The `healthy` flag of `address` in an explanation's service view.
pub fn explained_health(e: &serde_json::Value, address: &str) -> Option<bool> {
    e["service"]["regions"]
        .as_array()?
        .iter()
        .flat_map(|r| r["endpoints"].as_array().into_iter().flatten())
        .find(|ep| ep["address"] == address)?["healthy"]
        .as_bool()
}
