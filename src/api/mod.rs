//! The HTTP API: the status page `/`, `/health`, `/metrics`, `/v1/reload`, `/v1/table`.
//!
//! Control plane only: handlers may lock, allocate and format. Nothing here is on the DNS
//! query path.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use crate::control::ControlPlane;
use crate::health::report::MAX_REPORT_BYTES;
use crate::metrics::Metrics;

mod health;
mod status_page;
pub mod tls;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The control plane: table, health, overrides, reload.
    pub control: Arc<ControlPlane>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Bearer token for admin endpoints; None = overrides disabled, reload open.
    pub admin_token: Option<Arc<str>>,
}

/// Checks `Authorization: Bearer <token>`; `required` makes a missing configured token a 403.
/// Returns the refusal when the request may not use an admin endpoint.
fn authorize(state: &ApiState, headers: &HeaderMap, required: bool) -> Option<Response> {
    let Some(token) = &state.admin_token else {
        return required.then(|| {
            (
                StatusCode::FORBIDDEN,
                "admin endpoints are disabled: start the server with --admin-token-file\n",
            )
                .into_response()
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the token's length: no early exit on the first differing byte.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    (!same).then(|| (StatusCode::UNAUTHORIZED, "missing or wrong admin token\n").into_response())
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(status_page::index))
        .route("/status.js", get(status_page::script))
        .route("/status.css", get(status_page::style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/reload", post(reload))
        .route("/v1/explain", get(explain))
        .route(
            "/v1/reports",
            post(health::reports).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES + 1)),
        )
        .route("/v1/status", get(health::status))
        .route(
            "/v1/overrides",
            get(health::list_overrides).post(health::add_override),
        )
        .route("/v1/overrides/{id}", delete(health::delete_override))
        .with_state(state)
}

#[derive(Serialize)]
struct ZoneHealth {
    origin: String,
    serial: u32,
    file: String,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    generation: u64,
    uptime_seconds: u64,
    zone_count: usize,
    /// Age of the newest probe vote held, when any prober has reported.
    newest_report_age_ms: Option<u64>,
    zones: Vec<ZoneHealth>,
}

/// `GET /health`: 503 with the reason until the first table serves and while draining (load
/// balancers and orchestrators take the process out), 200 otherwise.
async fn health(State(state): State<ApiState>) -> Response {
    let table = state.control.table();
    let mut zones: Vec<ZoneHealth> = table
        .zones()
        .map(|z| ZoneHealth {
            origin: z.origin.to_string(),
            serial: z.serial,
            file: z.source.file.display().to_string(),
        })
        .collect();
    zones.sort_by(|a, b| a.origin.cmp(&b.origin));
    let newest_report_age_ms = state
        .control
        .hub()
        .view()
        .status()
        .values()
        .flat_map(|s| s.votes.iter().map(|v| v.age_ms))
        .min();
    let reason = state.control.not_ready();
    let code = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status: if reason.is_some() {
            "unavailable"
        } else {
            "ok"
        },
        reason,
        generation: table.generation,
        uptime_seconds: state.metrics.uptime_seconds(),
        zone_count: zones.len(),
        newest_report_age_ms,
        zones,
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    // OpenMetrics for scrapers that ask for it, the classic text format otherwise.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render_openmetrics(),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        )
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn reload(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorize(&state, &headers, false) {
        return denied;
    }
    let control = Arc::clone(&state.control);
    let report = match tokio::task::spawn_blocking(move || control.reload()).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload task failed: {e}"),
            )
                .into_response();
        }
    };
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, axum::Json(report)).into_response()
}

/// Query string of `/v1/explain`.
#[derive(Deserialize)]
struct ExplainQuery {
    name: String,
    client: Option<std::net::IpAddr>,
    ecs: Option<String>,
    #[serde(rename = "type")]
    qtype: Option<String>,
    format: Option<String>,
}

async fn explain(State(state): State<ApiState>, Query(q): Query<ExplainQuery>) -> Response {
    use crate::routing::explain::{Asker, explain, parse_ecs};
    let asker = match (&q.ecs, q.client) {
        (Some(text), _) if !text.is_empty() => match parse_ecs(text) {
            Ok(net) => Asker::Subnet(net),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        (_, Some(ip)) => Asker::Address(ip),
        _ => Asker::Address(std::net::IpAddr::from([127, 0, 0, 1])),
    };
    let table = state.control.table();
    match explain(&table, &q.name, q.qtype.as_deref().unwrap_or("A"), asker) {
        Ok(x) if q.format.as_deref() == Some("text") => x.to_string().into_response(),
        Ok(x) => axum::Json(x).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
