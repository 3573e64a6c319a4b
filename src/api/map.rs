//! `GET /v1/map`: the traffic map as JSON. Without `service`, the traffic-managed names; with
//! `service=NAME` (either case, trailing dot optional), every country of the built-in table and
//! the region that service answers it from now (`routing::map`), and the service's regions.
//!
//! Owns: the JSON shape. Read-only and open without the admin token: it shows what DNS answers
//! already show. Reads the published table; never counts answers.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use crate::routing::map::{find_service, service_map, services};

/// Query string of `/v1/map`.
#[derive(Deserialize)]
pub struct MapQuery {
    service: Option<String>,
}

#[derive(Serialize)]
struct ServiceList {
    generation: u64,
    services: Vec<String>,
}

#[derive(Serialize)]
struct RegionView {
    name: String,
    /// `[lat, lon]`, or null without a configured location.
    location: Option<[f64; 2]>,
    serving: bool,
    healthy_endpoints: usize,
    endpoints: usize,
    countries: usize,
    /// Per mille of its countries' answers it takes now (below 1000 while it ramps up).
    share: u16,
}

#[derive(Serialize)]
struct CountryView {
    country: String,
    continent: &'static str,
    lat: f64,
    lon: f64,
    /// Region name; null for a weighted pool, fixed fallback addresses or no answer.
    region: Option<String>,
    outcome: &'static str,
}

#[derive(Serialize)]
struct MapView {
    service: String,
    zone: String,
    policy: &'static str,
    generation: u64,
    regions: Vec<RegionView>,
    countries: Vec<CountryView>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// `GET /v1/map[?service=NAME]`.
pub async fn map(State(state): State<ApiState>, Query(q): Query<MapQuery>) -> Response {
    let table = state.control.table();
    let Some(name) = q.service.filter(|s| !s.trim().is_empty()) else {
        let list = ServiceList {
            generation: table.generation,
            services: services(&table)
                .into_iter()
                .map(|(n, _, _)| n.to_string())
                .collect(),
        };
        return axum::Json(list).into_response();
    };
    if hickory_proto::rr::Name::from_ascii(name.trim()).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("service {name:?}: not a domain name"),
        );
    }
    let Some((fqdn, zone, svc)) = find_service(&table, name.trim()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "service {name:?}: no traffic-managed name by that name (GET /v1/map lists them)"
            ),
        );
    };
    let map = service_map(svc);
    let region_name = |i: usize| map.regions.get(i).map(|r| r.name.clone());
    let view = MapView {
        service: fqdn.to_string(),
        zone: zone.origin.to_string(),
        policy: svc.policy_name(),
        generation: table.generation,
        countries: map
            .countries
            .iter()
            .map(|c| CountryView {
                country: c.country.to_string(),
                continent: c.continent.as_str(),
                lat: c.centroid.lat,
                lon: c.centroid.lon,
                region: c.region.and_then(region_name),
                outcome: c.outcome.label(),
            })
            .collect(),
        regions: map
            .regions
            .iter()
            .map(|r| RegionView {
                name: r.name.clone(),
                location: r.location.map(|c| [c.lat, c.lon]),
                serving: r.serving,
                healthy_endpoints: r.healthy_endpoints,
                endpoints: r.endpoints,
                countries: r.countries,
                share: r.share,
            })
            .collect(),
    };
    axum::Json(view).into_response()
}
