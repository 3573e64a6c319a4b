//! The walk, unit-tested: services from a validated zone, compiled with hand-set endpoint
//! health, against MaxMind's GeoIP2-City test database (`../shared/geoip/`, see its README
//! for which network maps where). Health is set per endpoint by hand here, so every
//! standby, drain, failover and fallback case is covered without probes or reports (the
//! integration tests in `tests/it/health.rs` drive health through `/v1/reports`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Client, OrderReason, Outcome, Selection, Service};
use crate::config::Zone;
use crate::dns::answer::{Owner, Writer};
use crate::dns::wire::{self, ClientSubnet, qtype};
use crate::geo::{Continent, Coords, GeoDb};
use crate::routing::compile::{EndpointHealth, EndpointState, compile_service};

const CITY_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/geoip/GeoIP2-City-Test.mmdb"
);

/// Regions are declared in name order, so "file order" and name order agree (the loader keeps
/// file order: `config::tests::regions_keep_file_order`).
const ZONE: &str = r#"
origin = "s.test."
ns = ["ns1.s.test."]
[soa]
mname = "ns1.s.test."
rname = "hostmaster.s.test."
serial = 1

[region.anycast]
[region.ap-east]        # Hong Kong
location = [22.32, 114.17]
[region.ap-southeast]   # Singapore
location = [1.35, 103.82]
[region.au-east]        # Sydney
location = [-33.87, 151.21]
[region.eu-north]       # Stockholm
location = [59.33, 18.07]
[region.eu-west]        # Dublin
location = [53.35, -6.26]
countries = ["GB"]
[region.us-east]        # Ashburn
location = [39.04, -77.49]
continents = ["NA"]

[service.geo]
[service.geo.geo]
default = ["anycast"]
country = { GB = ["eu-west"], SE = ["eu-north"], CN = ["ap-east"], AU = ["au-east"] }
continent = { NA = ["us-east"], AS = ["ap-southeast"], EU = ["eu-west", "eu-north"] }
subnet = { "81.2.69.160/27" = ["us-east"], "2.2.3.128/25" = ["ap-southeast"] }
[[service.geo.endpoint]]
region = "anycast"
address = "192.0.2.100"
[[service.geo.endpoint]]
region = "ap-east"
address = "192.0.2.5"
[[service.geo.endpoint]]
region = "ap-southeast"
address = "192.0.2.4"
[[service.geo.endpoint]]
region = "au-east"
address = "192.0.2.6"
[[service.geo.endpoint]]
region = "eu-north"
address = "192.0.2.2"
[[service.geo.endpoint]]
region = "eu-west"
address = "192.0.2.1"
[[service.geo.endpoint]]
region = "us-east"
address = "192.0.2.3"

# No geo tables: the regions' home lists (eu-west: GB, us-east: NA), then file order.
[service.home]
policy = "geo"
[[service.home.endpoint]]
region = "ap-east"
address = "192.0.2.45"
[[service.home.endpoint]]
region = "eu-west"
address = "192.0.2.41"
[[service.home.endpoint]]
region = "us-east"
address = "192.0.2.43"

[service.near]
policy = "nearest"
[[service.near.endpoint]]
region = "ap-east"
address = "198.51.100.5"
[[service.near.endpoint]]
region = "ap-southeast"
address = "198.51.100.4"
[[service.near.endpoint]]
region = "au-east"
address = "198.51.100.6"
[[service.near.endpoint]]
region = "eu-north"
address = "198.51.100.2"
[[service.near.endpoint]]
region = "eu-west"
address = "198.51.100.1"
[[service.near.endpoint]]
region = "us-east"
address = "198.51.100.3"

[service.fo]
failover = ["us-east", "eu-west"]
[[service.fo.endpoint]]
region = "ap-southeast"
address = "203.0.113.4"
[[service.fo.endpoint]]
region = "eu-west"
address = "203.0.113.1"
[[service.fo.endpoint]]
region = "us-east"
address = "203.0.113.3"
[[service.fo.endpoint]]
region = "us-east"
address = "203.0.113.33"

[service.wrr]
[[service.wrr.endpoint]]
region = "eu-west"
address = "192.0.2.10"
weight = 100
[[service.wrr.endpoint]]
region = "us-east"
address = "192.0.2.11"
weight = 300
[[service.wrr.endpoint]]
region = "ap-southeast"
address = "192.0.2.12"
weight = 600
[[service.wrr.endpoint]]
region = "eu-west"
address = "192.0.2.13"
weight = 0

[service.standby]
[service.standby.geo]
default = ["eu-west", "us-east"]
[[service.standby.endpoint]]
region = "eu-west"
address = "192.0.2.20"
[[service.standby.endpoint]]
region = "eu-west"
address = "192.0.2.21"
weight = 0
[[service.standby.endpoint]]
region = "us-east"
address = "192.0.2.22"

[service.two]
answers = 2
failover = ["eu-west", "us-east"]
[[service.two.endpoint]]
region = "eu-west"
address = "192.0.2.50"
[[service.two.endpoint]]
region = "eu-west"
address = "192.0.2.51"
weight = 10
[[service.two.endpoint]]
region = "eu-west"
address = "192.0.2.52"
weight = 1000
[[service.two.endpoint]]
region = "us-east"
address = "192.0.2.53"

[service.many]
answers = 16
[[service.many.endpoint]]
region = "eu-west"
address = "192.0.2.60"
[[service.many.endpoint]]
region = "eu-west"
address = "192.0.2.61"
[[service.many.endpoint]]
region = "us-east"
address = "2001:db8::62"

[service.v6]
[service.v6.geo]
default = ["eu-west", "us-east"]
[[service.v6.endpoint]]
region = "eu-west"
address = "192.0.2.30"
[[service.v6.endpoint]]
region = "us-east"
address = "192.0.2.31"
[[service.v6.endpoint]]
region = "us-east"
address = "2001:db8::31"

[service.none]
fallback = "none"
failover = ["eu-west", "us-east"]
[[service.none.endpoint]]
region = "eu-west"
address = "192.0.2.70"
[[service.none.endpoint]]
region = "us-east"
address = "192.0.2.71"

[service.fixed]
fallback = ["198.51.100.250", "198.51.100.251", "2001:db8::250"]
failover = ["eu-west"]
[[service.fixed.endpoint]]
region = "eu-west"
address = "192.0.2.80"

# Nested overrides (issue 11): 10.1/16 and 2001:db8:1::/48 carved out of larger ones. No
# country or continent tables, so GeoIP cannot change the answer outside the overrides.
[service.nest]
[service.nest.geo]
default = ["anycast"]
subnet = { "10.0.0.0/8" = ["us-east"], "10.1.0.0/16" = ["eu-west"], "2001:db8::/32" = ["us-east"], "2001:db8:1::/48" = ["eu-west"] }
[[service.nest.endpoint]]
region = "anycast"
address = "192.0.2.70"
[[service.nest.endpoint]]
region = "eu-west"
address = "192.0.2.71"
[[service.nest.endpoint]]
region = "us-east"
address = "192.0.2.73"

[service.all]
failover = ["us-east", "eu-west"]
[[service.all.endpoint]]
region = "eu-west"
address = "192.0.2.90"
[[service.all.endpoint]]
region = "us-east"
address = "192.0.2.91"
[[service.all.endpoint]]
region = "us-east"
address = "192.0.2.92"
weight = 0
[[service.all.endpoint]]
region = "us-east"
address = "2001:db8::93"
"#;

/// Endpoint states set by hand; anything not listed is up.
#[derive(Default)]
struct Health(HashMap<(String, IpAddr), EndpointState>);

impl Health {
    fn set(mut self, service: &str, addresses: &[&str], state: EndpointState) -> Self {
        for a in addresses {
            self.0
                .insert((service.to_string(), a.parse().unwrap()), state);
        }
        self
    }
}

impl EndpointHealth for Health {
    fn state(&self, _zone: &Name, service: &str, _region: &str, address: IpAddr) -> EndpointState {
        self.0
            .get(&(service.to_string(), address))
            .copied()
            .unwrap_or(EndpointState::Up)
    }
}

fn zone() -> Zone {
    crate::config::testing::zone_from_text(ZONE, &[])
}

fn geo() -> GeoDb {
    GeoDb::open(Path::new(CITY_DB)).unwrap_or_else(|e| panic!("{e}"))
}

fn compiled(zone: &Zone, key: &str, health: &Health) -> Service {
    let svc = zone
        .services
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no service {key}"));
    compile_service(zone, svc, health)
}

fn service(key: &str) -> Service {
    compiled(&zone(), key, &Health::default())
}

/// A resolver on loopback sending ECS `subnet` ("a.b.c.d/len"); `None` sends no ECS.
fn client(subnet: Option<&str>) -> Client {
    Client {
        source: "127.0.0.1".parse().unwrap(),
        subnet: subnet.map(|s| {
            let (addr, len) = s.split_once('/').unwrap();
            ClientSubnet {
                addr: addr.parse().unwrap(),
                source_prefix: len.parse().unwrap(),
            }
        }),
    }
}

fn ecs(subnet: &str) -> Client {
    client(Some(subnet))
}

/// Addresses of a selection, sorted.
fn addresses(svc: &Service, sel: &Selection) -> Vec<String> {
    let mut v: Vec<String> = sel.chosen[..sel.count]
        .iter()
        .map(|&i| svc.endpoints[usize::from(i)].address.to_string())
        .collect();
    v.sort();
    v
}

fn region(svc: &Service, sel: &Selection) -> Option<String> {
    sel.region.map(|i| svc.regions[usize::from(i)].name.clone())
}

/// What `answer()` writes for an `rtype` query: the addresses of the answer section, sorted.
fn written(svc: &Service, rtype: RecordType, client: &Client, geo: &GeoDb) -> (Vec<IpAddr>, u8) {
    let mut packet = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(b"\x03www\x06s-test\x00");
    packet.extend_from_slice(&u16::from(rtype).to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    let q = wire::parse(&packet).unwrap();
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, &packet, &q, 65535);
    let scope = svc.answer::<true, _>(u16::from(rtype), client, geo, &mut w, Owner::Question(0));
    w.finish();
    let msg = Message::from_vec(&out).unwrap();
    let mut addrs: Vec<IpAddr> = msg
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    for r in &msg.answers {
        assert_eq!(r.ttl, svc.ttl, "answers carry the service TTL");
    }
    addrs.sort();
    (addrs, scope)
}

#[test]
fn geo_sends_each_country_to_its_region_with_the_network_as_scope() {
    let (svc, db) = (service("geo"), geo());
    let gb: crate::geo::CountryCode = "GB".parse().unwrap();
    let cases: &[(&str, &str, OrderReason, u8)] = &[
        (
            "89.160.20.128/25",
            "eu-north",
            OrderReason::Country("SE".parse().unwrap()),
            25,
        ),
        (
            "175.16.199.0/24",
            "ap-east",
            OrderReason::Country("CN".parse().unwrap()),
            24,
        ),
        (
            "214.0.1.0/24",
            "au-east",
            OrderReason::Country("AU".parse().unwrap()),
            24,
        ),
        // US and SG have no country entry: their continents decide. 214.78.120.0 sits in a
        // /22, so a /24 client gets the shorter scope.
        (
            "214.78.120.0/24",
            "us-east",
            OrderReason::Continent(Continent::NA),
            22,
        ),
        (
            "214.0.0.0/24",
            "ap-southeast",
            OrderReason::Continent(Continent::AS),
            24,
        ),
        // A network with a continent and no country.
        (
            "2.3.3.0/24",
            "eu-west",
            OrderReason::Continent(Continent::EU),
            24,
        ),
        // An IPv6 client subnet (2a02:d3c0::/29 is GB).
        ("2a02:d3c0:1::/48", "eu-west", OrderReason::Country(gb), 29),
        // Not in the database: default; the scope is the empty network around it (10/8).
        ("10.0.0.0/24", "anycast", OrderReason::Default, 8),
        // A record with no country and no continent.
        ("214.1.1.0/24", "anycast", OrderReason::Default, 24),
    ];
    for &(subnet, want, reason, scope) in cases {
        let sel = svc.select(qtype::A, &ecs(subnet), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some(want), "{subnet}");
        assert_eq!(sel.reason, reason, "{subnet}");
        assert_eq!(sel.scope, scope, "{subnet}");
        assert_eq!(sel.outcome, Outcome::Healthy, "{subnet}");
        assert_eq!(sel.count, 1, "{subnet}");
    }
}

#[test]
fn geo_subnet_overrides_beat_geoip() {
    let (svc, db) = (service("geo"), geo());
    // 81.2.69.160/27 is London (GB) in GeoIP, but the zone sends it to us-east.
    let net = |s: &str| OrderReason::Subnet(s.parse().unwrap());
    for (subnet, scope) in [("81.2.69.160/27", 27), ("81.2.69.176/28", 27)] {
        let sel = svc.select(qtype::A, &ecs(subnet), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some("us-east"), "{subnet}");
        assert_eq!(sel.reason, net("81.2.69.160/27"), "{subnet}");
        // The override holds for its whole /27: no longer scope is needed.
        assert_eq!(sel.scope, scope, "{subnet}");
    }
    // 81.2.69.144/28 is London too, outside the override: GeoIP decides.
    let sel = svc.select(qtype::A, &ecs("81.2.69.144/28"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-west"));
    assert_eq!(sel.reason, OrderReason::Country("GB".parse().unwrap()));
    assert_eq!(sel.scope, 28);
}

#[test]
fn an_override_inside_a_geoip_network_lengthens_the_scope() {
    let (svc, db) = (service("geo"), geo());
    // 2.2.3.0/24 is GB in GeoIP; the zone carves 2.2.3.128/25 out of it for ap-southeast.
    let sel = svc.select(qtype::A, &ecs("2.2.3.128/25"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("ap-southeast"));
    assert_eq!(sel.scope, 25);
    // The lower half is GB, but only for the /25: a /24 scope would claim the override's
    // half gets eu-west as well.
    let sel = svc.select(qtype::A, &ecs("2.2.3.0/25"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-west"));
    assert_eq!(sel.scope, 25);
    // A /24 source covers both halves: 2.2.3.0 decides, and the scope is longer than the
    // source (RFC 7871 §7.2.1: the source was not specific enough), not capped at it.
    let sel = svc.select(qtype::A, &ecs("2.2.3.0/24"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-west"));
    assert_eq!(sel.scope, 25);
    let (_, scope) = written(&svc, RecordType::A, &ecs("2.2.3.0/24"), &db);
    assert_eq!(scope, 25, "answer() returns the decided scope");
}

#[test]
fn a_source_wider_than_the_geoip_network_gets_the_networks_scope() {
    let (svc, db) = (service("geo"), geo());
    // 2.2.2.0/23 spans 2.2.2.0/24 (not in GeoIP) and 2.2.3.0/24 (GB): 2.2.2.0 decides, and
    // the answer only holds for its /24.
    let sel = svc.select(qtype::A, &ecs("2.2.2.0/23"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("anycast"));
    assert_eq!((sel.reason, sel.scope), (OrderReason::Default, 24));
}

/// Issue 11: with `10.0.0.0/8` -> us-east and `10.1.0.0/16` -> eu-west, an answer from the
/// /8 must not claim the /16 (and the same in IPv6).
#[test]
fn nested_overrides_scope_leaves_out_what_decides_differently() {
    let (svc, db) = (service("nest"), geo());
    let net = |s: &str| OrderReason::Subnet(s.parse().unwrap());
    // (ECS, region, deciding override, scope)
    let cases = [
        // The largest prefix around 10.2.3.0 that misses 10.1/16 is 10.2.0.0/15.
        ("10.2.3.0/24", "us-east", "10.0.0.0/8", 15),
        ("10.2.0.0/15", "us-east", "10.0.0.0/8", 15),
        ("10.128.0.0/9", "us-east", "10.0.0.0/8", 9),
        // A /15 source straddles 10.0/16 (us-east) and 10.1/16 (eu-west): 10.0.0.0 decides,
        // for its /16 only, a scope longer than the source.
        ("10.0.0.0/15", "us-east", "10.0.0.0/8", 16),
        ("10.0.0.0/8", "us-east", "10.0.0.0/8", 16),
        ("10.1.0.0/16", "eu-west", "10.1.0.0/16", 16),
        ("10.1.2.0/24", "eu-west", "10.1.0.0/16", 16),
        ("2001:db8:2::/48", "us-east", "2001:db8::/32", 47),
        ("2001:db8::/32", "us-east", "2001:db8::/32", 48),
        ("2001:db8:1:5::/64", "eu-west", "2001:db8:1::/48", 48),
        ("2001:db8:8000::/33", "us-east", "2001:db8::/32", 33),
    ];
    for (subnet, want, by, scope) in cases {
        let sel = svc.select(qtype::A, &ecs(subnet), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some(want), "{subnet}");
        assert_eq!(sel.reason, net(by), "{subnet}");
        assert_eq!(sel.scope, scope, "{subnet}: scope");
        let (_, written_scope) = written(&svc, RecordType::A, &ecs(subnet), &db);
        assert_eq!(written_scope, scope, "{subnet}: answer() returns the scope");
    }
}

#[test]
fn where_geoip_cannot_change_the_answer_its_networks_do_not_bound_the_scope() {
    let (svc, db) = (service("nest"), geo());
    // Outside the overrides only `default` can answer, so the scope reaches the nearest
    // override whatever GeoIP's networks are: 2.2.3.0 is GB in a /24, yet all of 0.0.0.0/5
    // gets anycast; 11.0.0.0/8 is the largest prefix that misses 10/8.
    for (subnet, scope) in [
        ("2.2.3.0/24", 5),
        ("11.0.0.0/24", 8),
        ("9.0.0.0/8", 7),
        ("200.0.0.0/8", 1),
        ("2a02:d3c0::/32", 5),
        ("2001:db9::/32", 32),
    ] {
        let sel = svc.select(qtype::A, &ecs(subnet), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some("anycast"), "{subnet}");
        assert_eq!(
            (sel.reason, sel.scope),
            (OrderReason::Default, scope),
            "{subnet}"
        );
    }
}

#[test]
fn without_client_information_the_default_answers() {
    let (svc, db) = (service("geo"), geo());
    // ECS source prefix 0: "no client information" (RFC 7871 §7.1.2); default, scope 0.
    let sel = svc.select(qtype::A, &ecs("0.0.0.0/0"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("anycast"));
    assert_eq!((sel.reason, sel.scope), (OrderReason::Default, 0));
    // No ECS: the packet's source (127.0.0.1, not in the database) decides.
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("anycast"));
    assert_eq!(sel.reason, OrderReason::Default);
    // No ECS, source in the database: the source decides.
    let from_se = Client {
        source: "89.160.20.130".parse().unwrap(),
        subnet: None,
    };
    let sel = svc.select(qtype::A, &from_se, &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-north"));
}

#[test]
fn geo_without_tables_uses_the_regions_home_lists() {
    let (svc, db) = (service("home"), geo());
    for (subnet, want) in [
        ("2.2.3.0/24", "eu-west"),       // GB: eu-west's country
        ("214.78.120.0/24", "us-east"),  // NA: us-east's continent
        ("89.160.20.128/25", "ap-east"), // SE: nobody's; every region in file order
        ("10.0.0.0/24", "ap-east"),
    ] {
        let sel = svc.select(qtype::A, &ecs(subnet), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some(want), "{subnet}");
    }
    // A home region down: the others follow in file order.
    let zone = zone();
    let health = Health::default().set("home", &["192.0.2.41"], EndpointState::Down);
    let svc = compiled(&zone, "home", &health);
    let sel = svc.select(qtype::A, &ecs("2.2.3.0/24"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("ap-east"));
}

#[test]
fn geo_fails_over_to_the_next_listed_region_then_the_rest() {
    let zone = zone();
    let db = geo();
    // GB's list is [eu-west]; EU's would be [eu-west, eu-north], but the country wins, and
    // after eu-west come the unlisted regions in file order.
    let health = Health::default().set("geo", &["192.0.2.1"], EndpointState::Down);
    let svc = compiled(&zone, "geo", &health);
    let sel = svc.select(qtype::A, &ecs("2.2.3.0/25"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("anycast"));
    // 2.3.3.0 (continent EU, list [eu-west, eu-north]).
    let sel = svc.select(qtype::A, &ecs("2.3.3.0/24"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-north"));
    assert_eq!(sel.outcome, Outcome::Healthy);
}

/// Great-circle distance, written independently of `geo::distance_km`.
fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = p2 - p1;
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

#[test]
fn nearest_picks_by_distance_and_walks_outwards() {
    let zone = zone();
    let db = geo();
    let svc = compiled(&zone, "near", &Health::default());
    let cases = [
        ("2.2.3.0/24", "eu-west", (51.75, -1.25), 24),
        ("89.160.20.128/25", "eu-north", (58.4167, 15.6167), 25),
        ("214.78.120.0/24", "us-east", (32.7405, -117.0935), 22),
        ("214.0.0.0/24", "ap-southeast", (1.336, 103.7716), 24),
        ("175.16.199.0/24", "ap-east", (43.88, 125.3228), 24),
        ("214.0.1.0/24", "au-east", (-37.8159, 144.9669), 24),
    ];
    for (subnet, want, (lat, lon), scope) in cases {
        let sel = svc.select(qtype::A, &ecs(subnet), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some(want), "{subnet}");
        assert_eq!(
            sel.reason,
            OrderReason::Distance(Coords { lat, lon }),
            "{subnet}"
        );
        assert_eq!(sel.scope, scope, "{subnet}");

        // Take regions down nearest-first: each time the next-nearest answers.
        let near = zone.services.iter().find(|s| s.key == "near").unwrap();
        let mut by_distance: Vec<(f64, String, String)> = near
            .endpoints
            .iter()
            .map(|ep| {
                let r = &zone.regions[ep.region];
                let c = r.location.unwrap();
                let d = km((lat, lon), (c.lat, c.lon));
                (d, r.name.clone(), ep.address.to_string())
            })
            .collect();
        by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(by_distance.len(), 6);
        assert_eq!(by_distance[0].1, want, "{subnet}: the table above agrees");
        let mut down: Vec<&str> = Vec::new();
        for (_, name, address) in &by_distance {
            let health = Health::default().set("near", &down, EndpointState::Down);
            let svc = compiled(&zone, "near", &health);
            let sel = svc.select(qtype::A, &ecs(subnet), &db);
            assert_eq!(
                region(&svc, &sel).as_deref(),
                Some(name.as_str()),
                "{subnet} with {down:?} down"
            );
            down.push(address);
        }
    }
}

#[test]
fn nearest_without_coordinates_uses_file_order() {
    let (svc, db) = (service("near"), geo());
    for c in [ecs("10.0.0.0/24"), ecs("0.0.0.0/0"), client(None)] {
        let sel = svc.select(qtype::A, &c, &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some("ap-east"), "{c:?}");
        assert_eq!(sel.reason, OrderReason::Default);
    }
    let sel = svc.select(qtype::A, &ecs("0.0.0.0/0"), &db);
    assert_eq!(sel.scope, 0);
}

#[test]
fn failover_follows_the_list_then_the_unlisted_regions() {
    let zone = zone();
    let db = geo();
    let steps: [(&[&str], &str, &[&str]); 3] = [
        (&[], "us-east", &["203.0.113.3", "203.0.113.33"]),
        (
            &["203.0.113.3", "203.0.113.33"],
            "eu-west",
            &["203.0.113.1"],
        ),
        (
            &["203.0.113.3", "203.0.113.33", "203.0.113.1"],
            "ap-southeast",
            &["203.0.113.4"],
        ),
    ];
    for (down, want, addrs) in steps {
        let health = Health::default().set("fo", down, EndpointState::Down);
        let svc = compiled(&zone, "fo", &health);
        // The client's location does not matter, and the scope says so.
        for c in [ecs("2.2.3.0/24"), ecs("214.0.1.0/24"), client(None)] {
            let sel = svc.select(qtype::A, &c, &db);
            assert_eq!(region(&svc, &sel).as_deref(), Some(want), "{down:?}");
            assert!(
                addrs.contains(&addresses(&svc, &sel)[0].as_str()),
                "{down:?}"
            );
            assert_eq!((sel.reason, sel.scope), (OrderReason::Failover, 0));
        }
    }
    // One of two us-east endpoints down: the other one, still us-east.
    let health = Health::default().set("fo", &["203.0.113.3"], EndpointState::Down);
    let svc = compiled(&zone, "fo", &health);
    for _ in 0..50 {
        let sel = svc.select(qtype::A, &client(None), &db);
        assert_eq!(addresses(&svc, &sel), ["203.0.113.33"]);
    }
}

/// Counts how often each address is drawn in `n` single-answer selections.
fn shares(svc: &Service, n: usize, db: &GeoDb) -> HashMap<String, f64> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        let sel = svc.select(qtype::A, &ecs("2.2.3.0/24"), db);
        assert_eq!(sel.count, 1);
        assert_eq!(
            (sel.region, sel.reason, sel.scope),
            (None, OrderReason::Pooled, 0)
        );
        for a in addresses(svc, &sel) {
            *counts.entry(a).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(a, c)| (a, c as f64 / n as f64))
        .collect()
}

fn assert_shares(got: &HashMap<String, f64>, want: &[(&str, f64)]) {
    for (addr, share) in want {
        let g = got.get(*addr).copied().unwrap_or(0.0);
        assert!(
            (g - share).abs() <= 0.03,
            "{addr}: {g:.3} of answers, configured {share:.3} ({got:?})"
        );
    }
    let listed: f64 = want.iter().map(|(_, s)| s).sum();
    assert!((listed - 1.0).abs() < 1e-9);
    assert_eq!(
        got.len(),
        want.iter().filter(|(_, s)| *s > 0.0).count(),
        "{got:?}"
    );
}

#[test]
fn weighted_splits_answers_by_weight() {
    let zone = zone();
    let db = geo();
    let svc = compiled(&zone, "wrr", &Health::default());
    let got = shares(&svc, 10_000, &db);
    assert_shares(
        &got,
        &[
            ("192.0.2.10", 0.1),
            ("192.0.2.11", 0.3),
            ("192.0.2.12", 0.6),
        ],
    );
    assert!(!got.contains_key("192.0.2.13"), "the standby never answers");

    // Draining the heaviest: its share goes to the others, in their ratio.
    let health = Health::default().set("wrr", &["192.0.2.12"], EndpointState::Drain);
    let svc = compiled(&zone, "wrr", &health);
    assert_eq!(
        svc.endpoints
            .iter()
            .find(|e| e.address.to_string() == "192.0.2.12")
            .unwrap()
            .configured_weight,
        600
    );
    let got = shares(&svc, 10_000, &db);
    assert_shares(&got, &[("192.0.2.10", 0.25), ("192.0.2.11", 0.75)]);

    // Down is the same for the weighted pool.
    let health = Health::default().set("wrr", &["192.0.2.11"], EndpointState::Down);
    let svc = compiled(&zone, "wrr", &health);
    let got = shares(&svc, 10_000, &db);
    assert_shares(
        &got,
        &[("192.0.2.10", 1.0 / 7.0), ("192.0.2.12", 6.0 / 7.0)],
    );
}

#[test]
fn standby_answers_only_when_nothing_weighted_is_up() {
    let zone = zone();
    let db = geo();
    // Weighted endpoints up: the standby never answers.
    let svc = compiled(&zone, "standby", &Health::default());
    for _ in 0..500 {
        let sel = svc.select(qtype::A, &client(None), &db);
        assert_eq!(addresses(&svc, &sel), ["192.0.2.20"]);
        assert_eq!(sel.outcome, Outcome::Healthy);
    }
    // The local weighted endpoint down: a weighted endpoint in the next region beats the
    // local standby.
    let health = Health::default().set("standby", &["192.0.2.20"], EndpointState::Down);
    let svc = compiled(&zone, "standby", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.22"]);
    assert_eq!(sel.outcome, Outcome::Healthy);
    // Every weighted endpoint down: the standby.
    let health = Health::default().set(
        "standby",
        &["192.0.2.20", "192.0.2.22"],
        EndpointState::Down,
    );
    let svc = compiled(&zone, "standby", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.21"]);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-west"));
    assert_eq!(sel.outcome, Outcome::Standby);
    // Drained endpoints count as standbys: with both weighted ones draining, all three
    // answer, uniformly.
    let health = Health::default().set(
        "standby",
        &["192.0.2.20", "192.0.2.22"],
        EndpointState::Drain,
    );
    let svc = compiled(&zone, "standby", &health);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let sel = svc.select(qtype::A, &client(None), &db);
        assert_eq!(sel.outcome, Outcome::Standby);
        assert_eq!(region(&svc, &sel).as_deref(), Some("eu-west"));
        seen.extend(addresses(&svc, &sel));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["192.0.2.20", "192.0.2.21"]
    );
    // The weighted pool's standby answers when every weighted endpoint is out.
    let health = Health::default().set(
        "wrr",
        &["192.0.2.10", "192.0.2.11", "192.0.2.12"],
        EndpointState::Down,
    );
    let svc = compiled(&zone, "wrr", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.13"]);
    assert_eq!(sel.outcome, Outcome::Standby);
}

#[test]
fn answers_two_gives_two_distinct_addresses_of_one_region() {
    let zone = zone();
    let db = geo();
    let svc = compiled(&zone, "two", &Health::default());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let sel = svc.select(qtype::A, &client(None), &db);
        let a = addresses(&svc, &sel);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_ne!(a[0], a[1]);
        assert_eq!(region(&svc, &sel).as_deref(), Some("eu-west"));
        seen.extend(a);
    }
    // Each of the three (even weight 10 of 1110) shows up in 300 two-address answers.
    assert_eq!(seen.len(), 3, "{seen:?}");
    // One left in the region: one address, not one from the next region.
    let health = Health::default().set("two", &["192.0.2.50", "192.0.2.51"], EndpointState::Down);
    let svc = compiled(&zone, "two", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.52"]);
    // The response carries exactly those.
    let svc = compiled(&zone, "two", &Health::default());
    let (addrs, _) = written(&svc, RecordType::A, &client(None), &db);
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    // answers = 16 with two IPv4 endpoints in the pool: both, once each.
    let svc = compiled(&zone, "many", &Health::default());
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.60", "192.0.2.61"]);
    let sel = svc.select(qtype::AAAA, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["2001:db8::62"]);
}

#[test]
fn each_family_answers_from_the_first_region_that_has_it() {
    let zone = zone();
    let db = geo();
    let svc = compiled(&zone, "v6", &Health::default());
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.30"]);
    // eu-west has no IPv6 endpoint: AAAA comes from us-east.
    let sel = svc.select(qtype::AAAA, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["2001:db8::31"]);
    assert_eq!(region(&svc, &sel).as_deref(), Some("us-east"));
    let (addrs, _) = written(&svc, RecordType::AAAA, &client(None), &db);
    assert_eq!(addrs, ["2001:db8::31".parse::<IpAddr>().unwrap()]);
    // A service with no IPv6 endpoint at all: NODATA for AAAA.
    let svc = compiled(&zone, "geo", &Health::default());
    let sel = svc.select(qtype::AAAA, &ecs("2.2.3.0/24"), &db);
    assert_eq!((sel.outcome, sel.count), (Outcome::NoData, 0));
    let (addrs, _) = written(&svc, RecordType::AAAA, &ecs("2.2.3.0/24"), &db);
    assert!(addrs.is_empty());
}

#[test]
fn fallback_none_answers_nothing_when_all_are_down() {
    let zone = zone();
    let db = geo();
    let health = Health::default().set("none", &["192.0.2.70"], EndpointState::Down);
    let svc = compiled(&zone, "none", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["192.0.2.71"], "one up: it answers");
    let health = Health::default().set("none", &["192.0.2.70", "192.0.2.71"], EndpointState::Down);
    let svc = compiled(&zone, "none", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!((sel.outcome, sel.count), (Outcome::NoData, 0));
    let (addrs, _) = written(&svc, RecordType::A, &client(None), &db);
    assert!(addrs.is_empty(), "{addrs:?}");
}

#[test]
fn fallback_addresses_answer_when_all_are_down() {
    let zone = zone();
    let db = geo();
    let health = Health::default().set("fixed", &["192.0.2.80"], EndpointState::Down);
    let svc = compiled(&zone, "fixed", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(sel.outcome, Outcome::Fallback);
    let (addrs, _) = written(&svc, RecordType::A, &client(None), &db);
    let want: Vec<IpAddr> = ["198.51.100.250", "198.51.100.251"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(addrs, want);
    let (addrs, _) = written(&svc, RecordType::AAAA, &client(None), &db);
    assert_eq!(addrs, ["2001:db8::250".parse::<IpAddr>().unwrap()]);
    // Up again: the endpoint, not the fallback.
    let svc = compiled(&zone, "fixed", &Health::default());
    let (addrs, _) = written(&svc, RecordType::A, &client(None), &db);
    assert_eq!(addrs, ["192.0.2.80".parse::<IpAddr>().unwrap()]);
}

#[test]
fn fallback_all_fails_open_with_every_endpoint_of_the_best_region() {
    let zone = zone();
    let db = geo();
    let all = ["192.0.2.90", "192.0.2.91", "192.0.2.92", "2001:db8::93"];
    let health = Health::default().set("all", &all, EndpointState::Down);
    let svc = compiled(&zone, "all", &health);
    let sel = svc.select(qtype::A, &client(None), &db);
    assert_eq!(sel.outcome, Outcome::Fallback);
    assert_eq!(region(&svc, &sel).as_deref(), Some("us-east"));
    // Every IPv4 endpoint of us-east, the standby included.
    assert_eq!(addresses(&svc, &sel), ["192.0.2.91", "192.0.2.92"]);
    let sel = svc.select(qtype::AAAA, &client(None), &db);
    assert_eq!(addresses(&svc, &sel), ["2001:db8::93"]);
    assert_eq!(sel.outcome, Outcome::Fallback);
}

/// Slow start of a region coming back: it takes its share of what it would take, the rest
/// goes where it went while it was down; with nowhere else to go it takes everything.
#[test]
fn a_ramping_region_takes_its_share_and_the_rest_fails_over() {
    let zone = zone();
    let db = geo();
    let ramped = |down: &[&str]| {
        let health = Health::default().set("fo", down, EndpointState::Down);
        let mut svc = compiled(&zone, "fo", &health);
        let us = svc
            .regions
            .iter()
            .position(|r| r.name == "us-east")
            .unwrap();
        svc.regions.make_mut()[us].share = 300;
        svc
    };
    let svc = ramped(&[]);
    let mut by_region: HashMap<String, usize> = HashMap::new();
    for _ in 0..10_000 {
        let sel = svc.select(qtype::A, &client(None), &db);
        *by_region.entry(region(&svc, &sel).unwrap()).or_default() += 1;
    }
    let us = by_region.get("us-east").copied().unwrap_or(0) as f64 / 10_000.0;
    assert!((us - 0.3).abs() < 0.03, "{by_region:?}");
    assert_eq!(
        by_region.get("us-east").copied().unwrap_or(0)
            + by_region.get("eu-west").copied().unwrap_or(0),
        10_000,
        "the rest goes to the next region of the failover list: {by_region:?}"
    );
    // Nothing else healthy: the ramping region answers every time (no standby, no fallback).
    let svc = ramped(&["203.0.113.1", "203.0.113.4"]);
    for _ in 0..200 {
        let sel = svc.select(qtype::A, &client(None), &db);
        assert_eq!(region(&svc, &sel).as_deref(), Some("us-east"));
        assert_eq!(sel.outcome, Outcome::Healthy);
    }
}

/// Regions visited by `walk`, in order (by the start of their endpoint range), every one.
fn visits(svc: &Service, walk: super::RegionWalk<'_>) -> Vec<usize> {
    let mut seen = Vec::new();
    let _ = svc.walk(walk, false, |range| {
        seen.push(range.start);
        None
    });
    seen
}

/// The orders `nearest` precomputes per country are exactly what the distance walk gives a
/// client at the country's centroid (the walk without them), for every country of the
/// built-in table; ties in distance go by region order in both.
#[test]
fn precomputed_nearest_orders_are_the_distance_walk_for_every_country() {
    // Two regions at one place (a tie), one at the antipode of another.
    let tied = crate::config::testing::zone_from_text(
        r#"
origin = "t.test."
ns = ["ns1.t.test."]
[soa]
mname = "ns1.t.test."
rname = "hostmaster.t.test."
serial = 1
[region.z-fra]
location = [50.11, 8.68]
[region.a-fra]
location = [50.11, 8.68]
[region.nz]
location = [-50.11, -171.32]
[region.sg]
location = [1.35, 103.82]
[service.n]
policy = "nearest"
[[service.n.endpoint]]
region = "nz"
address = "192.0.2.1"
[[service.n.endpoint]]
region = "z-fra"
address = "192.0.2.2"
[[service.n.endpoint]]
region = "a-fra"
address = "192.0.2.3"
[[service.n.endpoint]]
region = "sg"
address = "192.0.2.4"
"#,
        &[],
    );
    let zone = zone();
    let health = Health::default();
    for svc in [
        compiled(&zone, "near", &health),
        compiled(&tied, "n", &health),
    ] {
        let mut countries = 0;
        for (code, continent, centroid) in crate::geo::countries() {
            let at_centroid = crate::geo::Location::at_centroid(code, continent, centroid);
            let (ready, reason) = svc.order_at(&at_centroid);
            assert!(matches!(ready, super::RegionWalk::List(_)), "{code}");
            assert_eq!(reason, OrderReason::Distance(centroid), "{code}");
            // The same point as coordinates of its own: the walk measures every region.
            let measured = crate::geo::Location {
                coords_from_centroid: false,
                ..at_centroid
            };
            let (walk, reason) = svc.order_at(&measured);
            assert!(matches!(walk, super::RegionWalk::Nearest(_)), "{code}");
            assert_eq!(reason, OrderReason::Distance(centroid), "{code}");
            let order = visits(&svc, ready);
            assert_eq!(order.len(), svc.regions.len(), "{code}");
            assert_eq!(order, visits(&svc, walk), "{code}");
            countries += 1;
        }
        assert_eq!(countries, 250);
    }
}

/// A client GeoIP places by coordinates of its own (the City database) still gets the exact
/// distance order, and one that only has a country gets its country's precomputed order.
#[test]
fn nearest_answers_by_the_precomputed_order_only_for_a_country_centroid() {
    let (svc, db) = (service("near"), geo());
    let super::CompiledPolicy::Nearest(orders) = &svc.policy else {
        panic!("near is a nearest service");
    };
    // Six regions with locations: several countries share an order, none has a missing one.
    assert!(orders.distinct() >= 2 && orders.distinct() <= 250);
    let se: crate::geo::CountryCode = "SE".parse().unwrap();
    let names = |order: &[u16]| -> Vec<String> {
        order
            .iter()
            .map(|&i| svc.regions[usize::from(i)].name.clone())
            .collect()
    };
    assert_eq!(names(orders.for_country(se).unwrap())[0], "eu-north");
    // 89.160.20.128/25 is Linköping with coordinates: the walk, from the city.
    let (walk, reason, _, loc) = svc.order(&ecs("89.160.20.128/25"), &db);
    assert!(!loc.unwrap().coords_from_centroid);
    assert!(matches!(walk, super::RegionWalk::Nearest(_)));
    assert!(matches!(reason, OrderReason::Distance(_)));
    let sel = svc.select(qtype::A, &ecs("89.160.20.128/25"), &db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("eu-north"));
    // A Country database has no coordinates: 50.114.0.0/22 is the US at its centroid.
    let country_db = GeoDb::open(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/geoip/GeoLite2-Country-Test.mmdb"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let (walk, reason, scope, loc) = svc.order(&ecs("50.114.0.0/24"), &country_db);
    assert!(loc.unwrap().coords_from_centroid);
    let us: crate::geo::CountryCode = "US".parse().unwrap();
    let super::RegionWalk::List(order) = walk else {
        panic!("a country centroid gets the precomputed order");
    };
    assert_eq!(Some(order), orders.for_country(us));
    assert_eq!(
        reason,
        OrderReason::Distance(Coords {
            lat: 38.0,
            lon: -97.0
        })
    );
    assert_eq!(scope, 22);
    let sel = svc.select(qtype::A, &ecs("50.114.0.0/24"), &country_db);
    assert_eq!(region(&svc, &sel).as_deref(), Some("us-east"));
}
