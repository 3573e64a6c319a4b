//! `GET /v1/openapi.json`: the API described (OpenAPI 3.0), compiled into the binary.
//!
//! Owns: serving `openapi.json` and keeping it in step with the routes: the unit test below
//! reads the router's source and fails when a route or method is missing from the document, or
//! the document names one the router does not serve. Must never: describe the status page's
//! assets (routes handled by `status_page`), which are not API.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`.
pub async fn document() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// (path, method) of every `.route(PATH, HANDLERS)` in `source`, except routes whose
    /// handlers live in `status_page` (the page and its assets).
    fn routes_in(source: &str) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The argument list: up to the matching parenthesis.
            let mut depth = 1usize;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &rest[..end];
            let Some(open) = args.find('"') else { continue };
            let Some(len) = args[open + 1..].find('"') else {
                continue;
            };
            let path = &args[open + 1..open + 1 + len];
            let handlers = &args[open + 1 + len..];
            if handlers.contains("status_page::") {
                continue;
            }
            for method in METHODS {
                let call = format!("{method}(");
                let named = handlers.match_indices(&call).any(|(i, _)| {
                    i == 0
                        || !handlers[..i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if named {
                    routes.insert((path.to_string(), method.to_string()));
                }
            }
        }
        routes
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if METHODS.contains(&method.as_str()) {
                    out.insert((path.clone(), method.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_lists_every_route_and_nothing_else() {
        let served = routes_in(include_str!("mod.rs"));
        assert!(
            served.len() >= 8,
            "the route scan found too little: {served:?}"
        );
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "src/api/openapi.json is out of step with the router in src/api/mod.rs: \
             routes without a description {undocumented:?}; described but not served {unserved:?}"
        );
    }

    #[test]
    fn every_operation_answers_something_and_admin_ones_say_so() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                assert!(op["summary"].is_string(), "{method} {path} has no summary");
                if op.get("security").is_some() {
                    assert!(
                        op["responses"].get("401").is_some(),
                        "{method} {path} needs the token but documents no 401"
                    );
                }
            }
        }
    }

    #[test]
    fn the_route_scan_reads_chained_and_multi_line_routes() {
        let source = r#"
            .route("/", get(status_page::index))
            .route("/a", get(x))
            .route(
                "/b",
                post(h::b).layer(Limit::max(3 + 1)),
            )
            .route("/c", get(h::list).post(h::add))
            .route("/c/{id}", delete(h::del))
        "#;
        let want: BTreeSet<(String, String)> = [
            ("/a", "get"),
            ("/b", "post"),
            ("/c", "get"),
            ("/c", "post"),
            ("/c/{id}", "delete"),
        ]
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
        assert_eq!(routes_in(source), want);
    }
}
