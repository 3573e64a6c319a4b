//! `GET /`: the status page. A static HTML page, its scripts and stylesheets, compiled into
//! the binary with `include_str!`; `status.js` reads `/health`, `/v1/status` and
//! `/v1/explain`, `map.js` (the traffic map, styled by `map.css`) reads `/v1/map`, `charts.js` reads
//! `/v1/history`.
//!
//! Owns: serving those files with a strict Content-Security-Policy (no inline script,
//! no third-party origin). Must never: render server state into HTML on the server side (the
//! script builds the DOM with `textContent`, so names from zone files cannot inject markup),
//! or load anything from outside this server.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("status/index.html");
const STATUS_JS: &str = include_str!("status/status.js");
const STATUS_CSS: &str = include_str!("status/status.css");
const MAP_JS: &str = include_str!("status/map.js");
const MAP_CSS: &str = include_str!("status/map.css");
const CHARTS_JS: &str = include_str!("status/charts.js");

/// Same-origin only: the page, its script and style, and `fetch` to this API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /status.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", STATUS_JS)
}

/// `GET /status.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STATUS_CSS)
}

/// `GET /map.js`: the traffic map (reads `/v1/map`).
pub async fn map_script() -> Response {
    asset("text/javascript; charset=utf-8", MAP_JS)
}

/// `GET /map.css`.
pub async fn map_style() -> Response {
    asset("text/css; charset=utf-8", MAP_CSS)
}

/// `GET /charts.js`: the query and answer charts (reads `/v1/history`).
pub async fn charts_script() -> Response {
    asset("text/javascript; charset=utf-8", CHARTS_JS)
}
