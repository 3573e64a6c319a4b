//! The traffic map: for one service, the region every country of the built-in country table is
//! answered from right now, and the outcome (healthy, standby, fallback, nodata).
//!
//! Owns: turning a compiled [`Service`] into a country -> region view. It asks the query path's
//! own code ([`Service::order_at`] with the country's location, then [`Service::route`]), so the
//! map shows what DNS answers show: health and overrides are compiled into the endpoints'
//! `healthy` and `weight`. Pure and control plane only (allocates); must never count answers
//! or draw random numbers. A country stands for a client GeoIP places there with no more
//! precise coordinates (the centroid); `geo.subnet` overrides need an address and are not shown.

use hickory_proto::rr::Name;

use super::select::{Outcome, Service};
use super::table::{RoutingTable, ZoneTable};
use crate::geo::{Continent, Coords, CountryCode, Location, countries};

/// One region of a service on the map.
#[derive(Clone, Debug, PartialEq)]
pub struct MapRegion {
    /// Region name.
    pub name: String,
    /// Its `location`, when configured.
    pub location: Option<Coords>,
    /// True when it has a healthy endpoint with weight: the healthy pass can answer from it.
    pub serving: bool,
    /// Healthy endpoints (weighted or standby) of all it has.
    pub healthy_endpoints: usize,
    /// Endpoints it has.
    pub endpoints: usize,
    /// Countries answered from it now.
    pub countries: usize,
    /// Slow start: per mille of its countries' answers it takes now (1000 when not ramping;
    /// the rest go to the next region of each country's walk).
    pub share: u16,
}

/// Where clients of one country go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountryRoute {
    /// The country.
    pub country: CountryCode,
    /// Its continent.
    pub continent: Continent,
    /// Its approximate centroid.
    pub centroid: Coords,
    /// Index into [`ServiceMap::regions`] of the answering region; `None` for a weighted
    /// pool, fixed fallback addresses or no answer.
    pub region: Option<usize>,
    /// Which pass answers.
    pub outcome: Outcome,
}

/// A service's traffic map.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceMap {
    /// The regions that have endpoints of the service, in the service's order (the status
    /// page colours by this index).
    pub regions: Vec<MapRegion>,
    /// Every country of the built-in table, by code.
    pub countries: Vec<CountryRoute>,
}

/// The map of `svc` as its compiled table has it now.
pub fn service_map(svc: &Service) -> ServiceMap {
    let mut regions: Vec<MapRegion> = svc
        .regions
        .iter()
        .map(|r| {
            let eps = svc.endpoints.get(r.endpoints.clone()).unwrap_or(&[]);
            MapRegion {
                name: r.name.clone(),
                location: r.coords,
                serving: eps.iter().any(|e| e.healthy && e.weight > 0),
                healthy_endpoints: eps.iter().filter(|e| e.healthy).count(),
                endpoints: eps.len(),
                countries: 0,
                share: r.share,
            }
        })
        .collect();
    let countries = countries()
        .map(|(country, continent, centroid)| {
            let loc = Location::at_centroid(country, continent, centroid);
            let (walk, _) = svc.order_at(&loc);
            let (region, outcome) = svc.route(walk);
            let region = region.map(usize::from);
            if let Some(r) = region.and_then(|i| regions.get_mut(i)) {
                r.countries += 1;
            }
            CountryRoute {
                country,
                continent,
                centroid,
                region,
                outcome,
            }
        })
        .collect();
    ServiceMap { regions, countries }
}

/// The absolute name of a service of `zone` (its key is relative to the origin, `@` or
/// absolute, as configured).
pub fn service_name(zone: &ZoneTable, svc: &Service) -> Option<Name> {
    if svc.key == "@" {
        return Some(zone.origin.clone());
    }
    Name::parse(&svc.key, Some(&zone.origin)).ok()
}

/// Every traffic-managed name of `table` with its zone and service, sorted by name text.
pub fn services(table: &RoutingTable) -> Vec<(Name, &ZoneTable, &Service)> {
    let mut all: Vec<_> = table
        .zones()
        .flat_map(|zone| {
            zone.services
                .iter()
                .filter_map(move |svc| Some((service_name(zone, svc)?, zone, svc)))
        })
        .collect();
    all.sort_by_key(|(name, _, _)| name.to_ascii());
    all
}

/// The service named `name` (either case, trailing dot optional), with its zone.
pub fn find_service<'t>(
    table: &'t RoutingTable,
    name: &str,
) -> Option<(Name, &'t ZoneTable, &'t Service)> {
    let mut wanted = Name::from_ascii(name).ok()?;
    wanted.set_fqdn(true);
    services(table).into_iter().find(|(n, _, _)| *n == wanted)
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
