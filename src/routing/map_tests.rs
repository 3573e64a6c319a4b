//! The traffic map, unit-tested: services of a small zone compiled with hand-set endpoint
//! health; each case names countries and the region (and pass) they must be answered from.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::{ServiceMap, service_map};
use crate::config::Zone;
use crate::routing::compile::{EndpointHealth, EndpointState, compile_service};
use crate::routing::select::{Outcome, Service};

/// Regions: eu (Frankfurt), us (Ashburn), ap (Singapore).
const ZONE: &str = r#"
origin = "m.test."
ns = ["ns1.m.test."]
[soa]
mname = "ns1.m.test."
rname = "hostmaster.m.test."
serial = 1

[region.eu]
location = [50.11, 8.68]
[region.us]
location = [39.04, -77.49]
[region.ap]
location = [1.35, 103.82]

[service.geo.geo]
default = ["eu"]
country = { GB = ["eu"], JP = ["ap"], BR = ["us"] }
continent = { NA = ["us"], AS = ["ap", "eu"], OC = ["ap"] }
[[service.geo.endpoint]]
region = "eu"
address = "192.0.2.1"
[[service.geo.endpoint]]
region = "us"
address = "192.0.2.2"
[[service.geo.endpoint]]
region = "ap"
address = "192.0.2.3"
[[service.geo.endpoint]]
region = "ap"
address = "192.0.2.4"
weight = 0

[service.near]
policy = "nearest"
[[service.near.endpoint]]
region = "eu"
address = "198.51.100.1"
[[service.near.endpoint]]
region = "us"
address = "198.51.100.2"
[[service.near.endpoint]]
region = "ap"
address = "2001:db8::3"

[service.fo]
failover = ["us", "eu"]
[[service.fo.endpoint]]
region = "eu"
address = "203.0.113.1"
[[service.fo.endpoint]]
region = "us"
address = "203.0.113.2"

[service.none]
fallback = "none"
failover = ["us", "eu"]
[[service.none.endpoint]]
region = "eu"
address = "203.0.113.11"
[[service.none.endpoint]]
region = "us"
address = "203.0.113.12"

[service.fixed]
fallback = ["198.51.100.250"]
failover = ["eu"]
[[service.fixed.endpoint]]
region = "eu"
address = "203.0.113.21"

[service.wrr]
[[service.wrr.endpoint]]
region = "eu"
address = "203.0.113.31"
weight = 100
[[service.wrr.endpoint]]
region = "us"
address = "203.0.113.32"
weight = 300
"#;

/// Endpoint states set by hand; anything not listed is up.
#[derive(Default)]
struct Health(HashMap<IpAddr, EndpointState>);

impl Health {
    fn set(mut self, addresses: &[&str], state: EndpointState) -> Self {
        for a in addresses {
            self.0.insert(a.parse().unwrap(), state);
        }
        self
    }
}

impl EndpointHealth for Health {
    fn state(&self, _zone: &Name, _svc: &str, _region: &str, address: IpAddr) -> EndpointState {
        self.0.get(&address).copied().unwrap_or(EndpointState::Up)
    }
}

fn zone() -> Zone {
    crate::config::testing::zone_from_text(ZONE, &[])
}

fn compiled(key: &str, health: &Health) -> Service {
    let zone = zone();
    let svc = zone.services.iter().find(|s| s.key == key).unwrap();
    compile_service(&zone, svc, health)
}

fn map(key: &str, health: &Health) -> ServiceMap {
    service_map(&compiled(key, health))
}

/// Region name (or "-") and outcome of `country` on `map`.
fn route(map: &ServiceMap, country: &str) -> (String, Outcome) {
    let c = map
        .countries
        .iter()
        .find(|c| c.country.as_str() == country)
        .unwrap_or_else(|| panic!("{country} not on the map"));
    let region = c
        .region
        .map_or("-".to_string(), |i| map.regions[i].name.clone());
    (region, c.outcome)
}

fn check(map: &ServiceMap, cases: &[(&str, &str, Outcome)]) {
    for &(country, region, outcome) in cases {
        assert_eq!(
            route(map, country),
            (region.to_string(), outcome),
            "{country}"
        );
    }
}

#[test]
fn every_country_of_the_table_is_on_the_map_once() {
    let m = map("geo", &Health::default());
    assert_eq!(m.countries.len(), crate::geo::countries().count());
    assert!(m.countries.windows(2).all(|w| w[0].country < w[1].country));
    let names: Vec<_> = m.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["eu", "us", "ap"]);
    assert_eq!(m.regions[0].location.unwrap().lat, 50.11);
    // Each country is counted for the region it goes to.
    let total: usize = m.regions.iter().map(|r| r.countries).sum();
    assert_eq!(total, m.countries.len());
}

#[test]
fn geo_goes_by_country_then_continent_then_default() {
    use Outcome::Healthy;
    let m = map("geo", &Health::default());
    check(
        &m,
        &[
            ("GB", "eu", Healthy), // geo.country
            ("JP", "ap", Healthy), // geo.country
            ("BR", "us", Healthy), // geo.country beats the default
            ("US", "us", Healthy), // geo.continent NA
            ("MX", "us", Healthy),
            ("IN", "ap", Healthy), // geo.continent AS
            ("AU", "ap", Healthy), // geo.continent OC
            ("FR", "eu", Healthy), // default
            ("ZA", "eu", Healthy),
        ],
    );
    let ap = m.regions.iter().find(|r| r.name == "ap").unwrap();
    assert!(ap.serving);
    assert_eq!((ap.healthy_endpoints, ap.endpoints), (2, 2));
}

#[test]
fn nearest_goes_by_centroid_distance() {
    use Outcome::Healthy;
    let m = map("near", &Health::default());
    check(
        &m,
        &[
            ("GB", "eu", Healthy),
            ("DE", "eu", Healthy),
            ("US", "us", Healthy),
            ("BR", "us", Healthy),
            ("JP", "ap", Healthy), // its only endpoint is IPv6: either family counts
            ("AU", "ap", Healthy),
        ],
    );
}

#[test]
fn a_region_down_moves_its_countries_to_the_next_region() {
    use Outcome::Healthy;
    let eu_down = Health::default().set(&["192.0.2.1"], EndpointState::Down);
    let m = map("geo", &eu_down);
    check(
        &m,
        &[
            ("GB", "us", Healthy), // [eu] then the rest in file order: us
            ("FR", "us", Healthy),
            ("US", "us", Healthy),
            ("IN", "ap", Healthy),
        ],
    );
    let eu = &m.regions[0];
    assert!(!eu.serving);
    assert_eq!((eu.healthy_endpoints, eu.countries), (0, 0));

    // Nearest: Europe goes to the next nearest region.
    let m = map(
        "near",
        &Health::default().set(&["198.51.100.1"], EndpointState::Down),
    );
    check(&m, &[("DE", "us", Healthy), ("IN", "ap", Healthy)]);

    // A drained region serves no one while another region is healthy.
    let m = map(
        "fo",
        &Health::default().set(&["203.0.113.2"], EndpointState::Drain),
    );
    check(&m, &[("US", "eu", Healthy), ("JP", "eu", Healthy)]);
    assert!(!m.regions[1].serving);
}

#[test]
fn failover_sends_everyone_to_the_first_healthy_region() {
    use Outcome::Healthy;
    let m = map("fo", &Health::default());
    check(&m, &[("GB", "us", Healthy), ("JP", "us", Healthy)]);
    assert!(m.countries.iter().all(|c| c.region == Some(1)));
    let m = map(
        "fo",
        &Health::default().set(&["203.0.113.2"], EndpointState::Down),
    );
    check(&m, &[("GB", "eu", Healthy), ("US", "eu", Healthy)]);
}

#[test]
fn standby_answers_when_nothing_weighted_is_healthy() {
    let weighted_down = Health::default().set(
        &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        EndpointState::Down,
    );
    let m = map("geo", &weighted_down);
    check(
        &m,
        &[
            ("GB", "ap", Outcome::Standby),
            ("US", "ap", Outcome::Standby),
        ],
    );
    let ap = &m.regions[2];
    assert!(!ap.serving, "a standby alone is not serving");
    assert_eq!(ap.healthy_endpoints, 1);
}

#[test]
fn everything_down_falls_back() {
    let down = |addrs: &[&str]| Health::default().set(addrs, EndpointState::Down);
    // fallback all: the first region of the order, marked as the fallback.
    let m = map("fo", &down(&["203.0.113.1", "203.0.113.2"]));
    check(
        &m,
        &[
            ("GB", "us", Outcome::Fallback),
            ("JP", "us", Outcome::Fallback),
        ],
    );
    assert!(m.regions.iter().all(|r| !r.serving));
    // fallback none: no answer.
    let m = map("none", &down(&["203.0.113.11", "203.0.113.12"]));
    assert!(
        m.countries
            .iter()
            .all(|c| c.region.is_none() && c.outcome == Outcome::NoData)
    );
    // Fixed fallback addresses: no region.
    let m = map("fixed", &down(&["203.0.113.21"]));
    check(&m, &[("GB", "-", Outcome::Fallback)]);
}

#[test]
fn weighted_pools_every_country() {
    let m = map("wrr", &Health::default());
    assert!(
        m.countries
            .iter()
            .all(|c| c.region.is_none() && c.outcome == Outcome::Healthy)
    );
    assert!(m.regions.iter().all(|r| r.serving && r.countries == 0));
}
