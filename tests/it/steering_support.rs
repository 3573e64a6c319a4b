//! Helpers for the traffic-steering tests: the GeoIP test databases, ECS queries, and reading
//! the answer addresses and the echoed ECS option of a reply.
//!
//! Owns: nothing but conveniences over `harness`. Must never: start processes or open sockets
//! itself (the harness does, with its deadlines).

use std::net::IpAddr;

use hickory_proto::rr::RData;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::harness::{Meridian, Query, Reply, Transport};

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
    let mut v: Vec<IpAddr> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
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
/// are the query's (RFC 7871 §7.2.1) and that the scope is not longer than the source.
pub fn scope(r: &Reply, sent: &str) -> u8 {
    let (addr, len) = subnet(sent);
    let (a, source, scope) = ecs_echo(r).unwrap_or_else(|| panic!("{sent}: no ECS echoed"));
    assert_eq!((a, source), (addr, len), "{sent}: echo");
    assert!(
        scope <= source,
        "{sent}: scope /{scope} longer than the source /{source}"
    );
    scope
}

/// A raw ECS option (code 8) with `data` as its body, for malformed cases.
pub fn raw_ecs(name: &str, data: Vec<u8>) -> Query {
    Query::new(name, RecordType::A).edns_option(EdnsOption::Unknown(8, data))
}
