//! The HTTP API: the status page `/`, `/health`, `/metrics`, `/v1/reload`, `/v1/explain`,
//! report ingest, `/v1/status`, `/v1/map`, `/v1/history` and overrides, described in
//! `/v1/openapi.json` (`openapi`).
//!
//! Owns: routing and who may call what. Every request that can change state needs the admin
//! token and must not come from a foreign browser origin, except signed report ingest
//! ([`router`]). Must never: serve a mutating route without that guard, or show override
//! details without the token. Control plane only: handlers may lock, allocate and format.
//! Nothing here is on the DNS query path.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use crate::control::ControlPlane;
use crate::health::report::MAX_REPORT_BYTES;
use crate::metrics::Metrics;

mod health;
pub mod history;
pub mod limits;
mod map;
mod openapi;
mod status_page;
pub mod tls;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The control plane: table, health, overrides, reload.
    pub control: Arc<ControlPlane>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Bearer token for admin endpoints; None = every admin endpoint refused (403).
    pub admin_token: Option<Arc<str>>,
    /// The last 15 minutes of query and answer rates (`/v1/history`).
    pub history: Arc<history::History>,
}

/// How the API was reached; `api::tls` puts it in every request's extensions so that the
/// origin check knows the API's own origin. A request without it counts as plain HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP inside TLS.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The refusal of every admin request when no token is configured.
const ADMIN_DISABLED: &str = "admin endpoints are disabled without a token: use `meridian ctl` \
                              or start with --admin-token-file\n";

/// Checks `Authorization: Bearer <token>` against the configured admin token. Returns the
/// refusal when the request may not use an admin endpoint: 403 when no token is configured
/// (nothing can match), 401 when the token is missing or wrong.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.admin_token else {
        return Some((StatusCode::FORBIDDEN, ADMIN_DISABLED).into_response());
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
    (!same).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong admin token\n",
        )
            .into_response()
    })
}

/// Routes that change state yet are not admin endpoints: probe reports carry their own HMAC
/// signature (`health::report`), so probers need no admin token.
const SIGNED_ROUTES: &[&str] = &["/v1/reports"];

/// Every request with a method that can change state (anything but GET, HEAD, OPTIONS) to a
/// route other than [`SIGNED_ROUTES`] must come from no browser origin or from the API's own,
/// and carry the admin token. Applied to every route, so a new mutating route is guarded
/// without anyone remembering to.
async fn guard_mutations(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || SIGNED_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    if state.admin_token.is_none() {
        // Nothing can pass: say so (and how to enable it) whatever the origin.
        return (StatusCode::FORBIDDEN, ADMIN_DISABLED).into_response();
    }
    let scheme = req
        .extensions()
        .get::<Scheme>()
        .copied()
        .unwrap_or_default();
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let origin = origin.to_str().unwrap_or("");
        if !same_origin(origin, host, scheme) {
            tracing::debug!(origin, method = %req.method(), path = req.uri().path(), "cross-origin api request refused");
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request refused: origin {origin:?} is not this API's origin\n"
                ),
            )
                .into_response();
        }
    }
    if let Some(denied) = authorize(&state, req.headers()) {
        return denied;
    }
    next.run(req).await
}

/// True when the `Origin` header value names the API itself: the scheme it was served over and
/// the request's `Host` (host and port, the scheme's default port when absent). An opaque
/// origin (`null`) or a missing Host is never the same origin.
fn same_origin(origin: &str, host: Option<&str>, scheme: Scheme) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Some((origin_scheme, origin_authority)) = origin.split_once("://") else {
        return false;
    };
    if !origin_scheme.eq_ignore_ascii_case(scheme.as_str()) {
        return false;
    }
    // An origin is scheme://host[:port] and nothing else (RFC 6454 §6.1).
    if origin_authority.contains(['/', '?', '#', '@']) {
        return false;
    }
    let port = scheme.default_port();
    match (
        split_authority(origin_authority, port),
        split_authority(host, port),
    ) {
        (Some((oh, op)), Some((hh, hp))) => op == hp && oh.eq_ignore_ascii_case(hh),
        _ => false,
    }
}

/// `host[:port]` or `[v6]:port` -> (host, port); `None` when the port is not a number.
fn split_authority(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host, port))
}

/// The routes. Every mutating route needs the admin token and the API's own origin (see
/// `guard_mutations`), except signed report ingest.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(status_page::index))
        .route("/status.js", get(status_page::script))
        .route("/status.css", get(status_page::style))
        .route("/map.js", get(status_page::map_script))
        .route("/map.css", get(status_page::map_style))
        .route("/v1/map", get(map::map))
        .route("/v1/history", get(history::history))
        .route("/charts.js", get(status_page::charts_script))
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
        .route("/v1/openapi.json", get(openapi::document))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard_mutations,
        ))
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
    /// How long ago the newest probe report was accepted, when any prober has reported.
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
        .newest_report_age()
        .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
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

/// `POST /v1/reload`; [`guard_mutations`] has checked the token and origin.
async fn reload(State(state): State<ApiState>) -> Response {
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
    use crate::dns::explain::explain;
    use crate::routing::explain::{Asker, parse_ecs};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_only_the_served_scheme_host_and_port() {
        use Scheme::{Http, Https};
        let cases: &[(&str, Option<&str>, Scheme, bool)] = &[
            ("http://127.0.0.1:5380", Some("127.0.0.1:5380"), Http, true),
            ("HTTP://LocalHost:5380", Some("localhost:5380"), Http, true),
            (
                "http://ns1.example.net",
                Some("ns1.example.net:80"),
                Http,
                true,
            ),
            (
                "https://ns1.example.net",
                Some("ns1.example.net"),
                Https,
                true,
            ),
            ("http://[::1]:5380", Some("[::1]:5380"), Http, true),
            ("http://evil.example", Some("127.0.0.1:5380"), Http, false),
            ("null", Some("127.0.0.1:5380"), Http, false),
            ("", Some("127.0.0.1:5380"), Http, false),
            (
                "https://127.0.0.1:5380",
                Some("127.0.0.1:5380"),
                Http,
                false,
            ),
            (
                "http://127.0.0.1:5380",
                Some("127.0.0.1:5380"),
                Https,
                false,
            ),
            ("http://127.0.0.1:5381", Some("127.0.0.1:5380"), Http, false),
            ("http://127.0.0.1", Some("127.0.0.1:5380"), Http, false),
            ("http://127.0.0.1:5380", None, Http, false),
            (
                "http://127.0.0.1:5380/",
                Some("127.0.0.1:5380"),
                Http,
                false,
            ),
            (
                "http://x@127.0.0.1:5380",
                Some("127.0.0.1:5380"),
                Http,
                false,
            ),
            (
                "http://127.0.0.1.evil.example:5380",
                Some("127.0.0.1:5380"),
                Http,
                false,
            ),
            ("http://[::1]:5380", Some("[::2]:5380"), Http, false),
            ("http://:5380", Some(":5380"), Http, false),
            ("http://127.0.0.1:port", Some("127.0.0.1:port"), Http, false),
        ];
        for (origin, host, scheme, want) in cases {
            assert_eq!(
                same_origin(origin, *host, *scheme),
                *want,
                "{origin} vs {host:?} over {scheme:?}"
            );
        }
    }
}
