//! Health endpoints: probe report ingest, `/v1/status`, overrides.
//!
//! Owns: turning health state into JSON and overrides requests into hub calls. Must never:
//! list overrides (targets, reasons) to a request without the admin token.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiState, authorize};
use crate::health::aggregate::VoteStatus;
use crate::health::overrides::NewOverride;
use crate::health::report::RejectReason;

/// `POST /v1/reports`: a signed report from a prober.
pub async fn reports(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // The route's body limit stopped reading a body far beyond MAX_REPORT_BYTES: answer
        // and count it like an oversize body the handler sees, not with axum's plain text.
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            state
                .control
                .hub()
                .metrics()
                .record_report_rejected(RejectReason::Oversize);
            return rejected(RejectReason::Oversize);
        }
        Err(e) => return e.into_response(),
    };
    let body = match crate::health::report::decoded_body(&headers, &body) {
        Ok(body) => body,
        Err(reason) => {
            state.control.hub().metrics().record_report_rejected(reason);
            return rejected(reason);
        }
    };
    match state.control.apply_reports(&headers, &body) {
        Ok(summary) => axum::Json(serde_json::json!({
            "accepted": true,
            "recorded": summary.recorded,
            "unknown_endpoints": summary.unknown_endpoints,
            "outdated": summary.outdated,
        }))
        .into_response(),
        Err(reason) => rejected(reason),
    }
}

fn rejected(reason: RejectReason) -> Response {
    tracing::debug!(reason = reason.label(), "probe report rejected");
    (
        reason.status(),
        axum::Json(serde_json::json!({
            "accepted": false,
            "reason": reason.label(),
        })),
    )
        .into_response()
}

#[derive(Serialize)]
struct EndpointStatusView {
    address: IpAddr,
    weight: u32,
    effective_weight: u32,
    /// What answers use now (health and overrides applied).
    serving: bool,
    /// What the probes decided (`up` when the service has no check).
    decided: String,
    checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_for_ms: Option<u64>,
    /// Load, weight hint, check latency and transition from the fresh votes.
    #[serde(skip_serializing_if = "Option::is_none")]
    signals: Option<crate::health::aggregate::EndpointSignals>,
    /// Under a drain override: when no resolver can hold it any longer, and whether that is
    /// past.
    #[serde(skip_serializing_if = "Option::is_none")]
    drain: Option<DrainView>,
    /// Slow start: the share of its weight a returning endpoint has now (0.1-1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp: Option<f64>,
    /// Load shedding: the share of its weight a loaded endpoint keeps (below 1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    shed: Option<f64>,
    votes: Vec<VoteStatus>,
}

#[derive(Serialize)]
struct DrainView {
    complete: bool,
    complete_at_ms: u64,
}

#[derive(Serialize)]
struct RegionStatusView {
    name: String,
    endpoints: Vec<EndpointStatusView>,
}

#[derive(Serialize)]
struct ServiceStatusView {
    zone: String,
    service: String,
    policy: &'static str,
    regions: Vec<RegionStatusView>,
}

#[derive(Serialize)]
struct ProberView {
    prober_id: String,
    region: String,
    youngest_vote_age_ms: u64,
    endpoints: usize,
}

/// `GET /v1/status`: every service, region, endpoint with decided state and each prober's
/// vote and age; table generation and build time; the health digest; how many overrides are
/// active. The overrides themselves (targets, reasons) only with the admin token: a request
/// without `Authorization` gets the count alone, one with a wrong token a 401.
pub async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let admin = headers.contains_key(header::AUTHORIZATION);
    if admin {
        if let Some(denied) = authorize(&state, &headers) {
            return denied;
        }
    }
    let table = state.control.table();
    let view = state.control.hub().view();
    let mut probers: std::collections::BTreeMap<String, ProberView> = Default::default();
    for st in view.status().values() {
        for v in &st.votes {
            let p = probers
                .entry(v.prober_id.as_str().to_string())
                .or_insert_with(|| ProberView {
                    prober_id: v.prober_id.as_str().to_string(),
                    region: v.region.clone(),
                    youngest_vote_age_ms: v.age_ms,
                    endpoints: 0,
                });
            p.youngest_vote_age_ms = p.youngest_vote_age_ms.min(v.age_ms);
            p.endpoints += 1;
        }
    }
    let mut services: Vec<ServiceStatusView> = Vec::new();
    let mut zones: Vec<_> = table.zones().collect();
    zones.sort_by_key(|z| z.origin.to_string());
    for zone in zones {
        let origin = zone.origin.to_string();
        // Every service is listed, with or without endpoints (fixed-fallback services).
        let first = services.len();
        services.extend(zone.services.iter().map(|svc| ServiceStatusView {
            zone: origin.clone(),
            service: svc.key.clone(),
            policy: svc.policy_name(),
            regions: Vec::new(),
        }));
        for e in zone.endpoints() {
            let Some(svc) = services.get_mut(first + e.service_index) else {
                continue;
            };
            // Endpoints come grouped by region, in the service's region order.
            if svc.regions.last().is_none_or(|r| r.name != e.region.name) {
                svc.regions.push(RegionStatusView {
                    name: e.region.name.clone(),
                    endpoints: Vec::new(),
                });
            }
            let st = view.lookup(&origin, &e.service.key, e.endpoint.address);
            let (ramp, shed) = weight_factors(&e, st);
            if let Some(region) = svc.regions.last_mut() {
                region.endpoints.push(EndpointStatusView {
                    address: e.endpoint.address,
                    weight: e.endpoint.configured_weight,
                    effective_weight: e.endpoint.weight,
                    serving: e.endpoint.healthy,
                    decided: st.map_or("up".into(), |s| s.health.to_string()),
                    checked: st.is_some(),
                    decided_for_ms: st.map(|s| s.for_ms),
                    signals: st.map(|s| s.signals),
                    ramp,
                    shed,
                    drain: state
                        .control
                        .hub()
                        .drain_of(&origin, &e.service.key, &e.region.name, e.endpoint.address)
                        .map(|d| DrainView {
                            complete: d.complete,
                            complete_at_ms: d.complete_at_ms,
                        }),
                    votes: st.map(|s| s.votes.clone()).unwrap_or_default(),
                });
            }
        }
    }
    let built_at_ms = table
        .built_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let overrides = state.control.overrides();
    let mut body = serde_json::json!({
        "generation": table.generation,
        "built_at_ms": built_at_ms,
        "health_digest": view.digest(),
        "endpoints_down": view.down_count(),
        "probers": probers.into_values().collect::<Vec<_>>(),
        "services": services,
        "overrides_active": overrides.len(),
        "transitions": state.control.hub().recent(),
    });
    if let (Some(source), Some(fields)) = (state.control.config_source(), body.as_object_mut()) {
        fields.insert(source.name().into(), source.status_json());
    }
    if admin {
        if let Some(fields) = body.as_object_mut() {
            fields.insert("overrides".into(), serde_json::json!(overrides));
        }
    }
    axum::Json(body).into_response()
}

/// The slow-start and shedding factors an endpoint is weighted with now, recomputed from the
/// configuration and the health view as `routing::weights` does when compiling.
fn weight_factors(
    e: &crate::routing::table::EndpointEntry<'_>,
    st: Option<&crate::health::aggregate::EndpointStatus>,
) -> (Option<f64>, Option<f64>) {
    let Some(st) = st.filter(|s| s.health == crate::health::aggregate::Health::Up) else {
        return (None, None);
    };
    let zone = &e.zone.source;
    let Some(svc) = zone.services.iter().find(|s| s.key == e.service.key) else {
        return (None, None);
    };
    let shed = svc
        .check
        .as_ref()
        .and_then(|name| zone.checks.iter().find(|c| &c.name == name))
        .map(|c| c.spec.shed)
        .unwrap_or_default();
    (
        crate::routing::weights::ramp(st.signals.recovered_for, svc.health.slow_start),
        st.signals.load.map(|l| shed.factor(l)).filter(|f| *f < 1.0),
    )
}

/// `GET /v1/overrides`.
pub async fn list_overrides(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&state, &headers) {
        return denied;
    }
    axum::Json(state.control.overrides()).into_response()
}

/// `POST /v1/overrides`; the router's guard has checked the token and origin.
pub async fn add_override(State(state): State<ApiState>, body: Bytes) -> Response {
    let new: NewOverride = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad override: {e}\n")).into_response(),
    };
    match state.control.set_override(new) {
        Ok(o) => (StatusCode::CREATED, axum::Json(o)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// `DELETE /v1/overrides/{id}`; the router's guard has checked the token and origin.
pub async fn delete_override(State(state): State<ApiState>, Path(id): Path<u64>) -> Response {
    if state.control.remove_override(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("no override {id}\n")).into_response()
    }
}
