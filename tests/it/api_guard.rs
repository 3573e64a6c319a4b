//! The HTTP API against hostile clients: every mutating endpoint needs the admin token and
//! refuses cross-origin requests, `/v1/status` lists overrides only for the token, and one
//! address (or a crowd of them) cannot keep probers and `/health` out.
//!
//! Owns: those end-to-end checks, including the flood clients (tokio sockets bound to
//! 127.0.0.x). Must never: connect anywhere but loopback, or wait without a deadline.

use crate::harness::{ADMIN_TOKEN, Meridian, admin_args, http_request};
use crate::health_support::Lab;

/// A valid override for the lab's zone (`h.test.`), with a reason only operators should read.
const OVERRIDE: &str = r#"{"target":{"zone":"h.test.","service":"www"},"state":"down","expires_in_seconds":600,"reason":"secret maintenance note"}"#;

/// Extra request headers, (name, value).
type Headers<'a> = &'a [(&'a str, &'a str)];

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---- item 2: authenticated, same-origin control ----

#[test]
fn mutating_endpoints_are_refused_without_a_token_file() {
    let ns = Meridian::serve("core/basic");
    let ok = r#"meridian_reloads_total{result="ok"}"#;
    let reloads = ns.metric(ok);
    let cases: [(&str, &str, Headers, &str); 5] = [
        ("POST", "/v1/reload", &[], ""),
        // The browser attack of the issue: a cross-origin "simple" request.
        (
            "POST",
            "/v1/reload",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            "x",
        ),
        // A token the server does not have cannot match anything.
        (
            "POST",
            "/v1/reload",
            &[("Authorization", "Bearer guess")],
            "",
        ),
        (
            "POST",
            "/v1/overrides",
            &[("Content-Type", "application/json")],
            OVERRIDE,
        ),
        ("DELETE", "/v1/overrides/1", &[], ""),
    ];
    for (method, path, headers, body) in cases {
        let r = http_request(ns.api, method, path, headers, body.as_bytes());
        assert_eq!(r.status, 403, "{method} {path} {headers:?}: {}", r.body);
        assert!(
            r.body.contains("meridian ctl") && r.body.contains("--admin-token-file"),
            "the refusal must say how to enable it: {}",
            r.body
        );
    }
    assert_eq!(ns.metric(ok), reloads, "a refused reload ran");
    // Read-only endpoints and report ingest are not admin endpoints.
    assert_eq!(ns.get("/health").status, 200);
    assert_eq!(ns.get("/v1/status").status, 200);
    let r = ns.post("/v1/reports", "{}");
    assert_ne!(
        r.status, 403,
        "report ingest has its own (HMAC) auth: {}",
        r.body
    );
}

#[test]
fn cross_origin_requests_cannot_change_state() {
    let admin = admin_args();
    let ns = Meridian::serve_with("core/basic", &[&admin[0], &admin[1]]);
    let ok = r#"meridian_reloads_total{result="ok"}"#;
    let reloads = ns.metric(ok);
    let auth = bearer(ADMIN_TOKEN);
    let own = format!("http://{}", ns.api);
    let cases: [(Option<String>, u16); 7] = [
        (Some("http://evil.example".into()), 403),
        (Some("null".into()), 403),
        // Same host, other scheme or port: another origin.
        (Some(format!("https://{}", ns.api)), 403),
        (Some(format!("http://127.0.0.1:{}", ns.api.port() ^ 1)), 403),
        (Some(format!("http://{}.evil.example", ns.api.ip())), 403),
        (Some(own.clone()), 200),
        // Not a browser: no Origin at all.
        (None, 200),
    ];
    let mut allowed = 0.0;
    for (origin, want) in &cases {
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "text/plain"),
        ];
        if let Some(o) = origin {
            headers.push(("Origin", o.as_str()));
        }
        let r = http_request(ns.api, "POST", "/v1/reload", &headers, b"");
        assert_eq!(r.status, *want, "Origin {origin:?}: {}", r.body);
        if *want == 200 {
            allowed += 1.0;
        } else {
            assert!(r.body.contains("origin"), "{}", r.body);
        }
    }
    assert_eq!(ns.metric(ok), reloads + allowed, "a refused reload ran");

    // The same for overrides, with the token: refused before the body is looked at.
    for (method, path) in [("POST", "/v1/overrides"), ("DELETE", "/v1/overrides/1")] {
        let r = http_request(
            ns.api,
            method,
            path,
            &[
                ("Authorization", auth.as_str()),
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
            ],
            OVERRIDE.as_bytes(),
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    // Same origin, wrong or missing token: 401.
    for headers in [
        vec![("Origin", own.as_str())],
        vec![
            ("Origin", own.as_str()),
            ("Authorization", "Bearer wrong-token-0123456789"),
        ],
    ] {
        let r = http_request(ns.api, "POST", "/v1/reload", &headers, b"");
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
    }
    assert_eq!(ns.metric(ok), reloads + allowed, "a refused reload ran");
}

// ---- item 4: /v1/status and override details ----

#[test]
fn status_lists_overrides_only_with_the_admin_token() {
    let lab = Lab::new();
    let admin = admin_args();
    let ns = lab.nameserver(&[&admin[0], &admin[1]]);
    let auth = bearer(ADMIN_TOKEN);
    let r = http_request(
        ns.api,
        "POST",
        "/v1/overrides",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        OVERRIDE.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    let open = ns.get("/v1/status");
    assert_eq!(open.status, 200, "{}", open.body);
    assert!(
        !open.body.contains("secret maintenance note"),
        "/v1/status without a token shows an override's reason: {}",
        open.body
    );
    let st = open.json();
    assert!(st.get("overrides").is_none(), "{st:#}");
    assert_eq!(st["overrides_active"], 1, "{st:#}");
    // What the status page needs is still there.
    assert!(
        st["services"].as_array().is_some_and(|s| !s.is_empty()),
        "{st:#}"
    );

    let with = http_request(
        ns.api,
        "GET",
        "/v1/status",
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(with.status, 200, "{}", with.body);
    let st = with.json();
    assert_eq!(st["overrides_active"], 1, "{st:#}");
    assert_eq!(
        st["overrides"][0]["reason"], "secret maintenance note",
        "{st:#}"
    );
    assert_eq!(st["overrides"][0]["target"]["service"], "www", "{st:#}");

    let wrong = http_request(
        ns.api,
        "GET",
        "/v1/status",
        &[("Authorization", "Bearer wrong-token-0123456789")],
        b"",
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(!wrong.body.contains("secret maintenance note"));
}
