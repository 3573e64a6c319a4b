use super::*;
use axum::Router;
use axum::http::{HeaderMap as AxHeaders, StatusCode};
use axum::routing::get;
use std::net::Ipv4Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An axum backend on an ephemeral loopback port.
async fn http_backend() -> u16 {
    http_backend_on(&[LOCAL]).await
}

/// The same backend on several loopback addresses, all on one port.
async fn http_backend_on(ips: &[IpAddr]) -> u16 {
    let app = Router::new()
        .route("/ok", get(|| async { "hello meridian" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
        )
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
        .route(
            "/redirect",
            get(|| async { (StatusCode::FOUND, [("location", "/elsewhere")]) }),
        )
        .route(
            "/big",
            get(|| async {
                let mut body = "a".repeat(MAX_BODY_BYTES);
                body.push_str("needle");
                body
            }),
        )
        .route(
            "/echo",
            get(|headers: AxHeaders| async move {
                let get = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                format!("host={} token={}", get("host"), get("x-token"))
            }),
        );
    let mut port = 0;
    for ip in ips {
        let listener = TcpListener::bind((*ip, port)).await.unwrap();
        port = listener.local_addr().unwrap().port();
        tokio::spawn(axum::serve(listener, app.clone()).into_future());
    }
    port
}

/// A port with nothing listening (bound, then released).
async fn closed_port() -> u16 {
    let l = TcpListener::bind((LOCAL, 0)).await.unwrap();
    l.local_addr().unwrap().port()
}

/// Accepts connections and never answers.
async fn silent_backend() -> u16 {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    port
}

fn spec(kind: CheckKind, port: u16, path: &str) -> CheckSpec {
    CheckSpec {
        path: path.to_owned(),
        timeout: Duration::from_secs(2),
        ..CheckSpec::new(kind, port)
    }
}

async fn run(spec: CheckSpec) -> CheckOutcome {
    Checker::new(spec).unwrap().check(LOCAL).await
}

#[tokio::test]
async fn http_cases() {
    let port = http_backend().await;
    let closed = closed_port().await;
    type Case = (&'static str, CheckSpec, &'static str);
    let cases: Vec<Case> = vec![
        ("status ok", spec(CheckKind::Http, port, "/ok"), "ok"),
        (
            "status bad",
            spec(CheckKind::Http, port, "/fail"),
            "status 503",
        ),
        (
            "404 not in default",
            spec(CheckKind::Http, port, "/nope"),
            "status 404",
        ),
        (
            "redirect not followed, passes",
            spec(CheckKind::Http, port, "/redirect"),
            "ok",
        ),
        (
            "custom status list",
            CheckSpec {
                expect_status: vec![200..=200, 418..=418],
                ..spec(CheckKind::Http, port, "/teapot")
            },
            "ok",
        ),
        (
            "302 outside custom list",
            CheckSpec {
                expect_status: vec![200..=299],
                ..spec(CheckKind::Http, port, "/redirect")
            },
            "status 302",
        ),
        (
            "body match",
            CheckSpec {
                expect_body: Some("meridian".into()),
                ..spec(CheckKind::Http, port, "/ok")
            },
            "ok",
        ),
        (
            "body mismatch",
            CheckSpec {
                expect_body: Some("goodbye".into()),
                ..spec(CheckKind::Http, port, "/ok")
            },
            "body mismatch",
        ),
        (
            "needle beyond 64 KiB is not seen",
            CheckSpec {
                expect_body: Some("needle".into()),
                ..spec(CheckKind::Http, port, "/big")
            },
            "body mismatch",
        ),
        (
            "host and headers are sent",
            CheckSpec {
                host: Some("www.shop.test".into()),
                headers: vec![("X-Token".into(), "t1".into())],
                expect_body: Some(format!("host=www.shop.test:{port} token=t1")),
                ..spec(CheckKind::Http, port, "/echo")
            },
            "ok",
        ),
        (
            "connect refused",
            spec(CheckKind::Http, closed, "/"),
            "connect refused",
        ),
        ("tcp open", spec(CheckKind::Tcp, port, "/"), "ok"),
        (
            "tcp closed",
            spec(CheckKind::Tcp, closed, "/"),
            "connect refused",
        ),
    ];
    for (name, spec, want) in cases {
        let out = run(spec).await;
        assert_eq!(out.reason.to_string(), want, "{name}");
        assert_eq!(out.ok, want == "ok", "{name}");
    }
}

#[tokio::test]
async fn silent_server_times_out() {
    let port = silent_backend().await;
    let out = run(CheckSpec {
        timeout: Duration::from_millis(300),
        ..spec(CheckKind::Http, port, "/")
    })
    .await;
    assert_eq!(out.reason, CheckReason::Timeout);
    assert!(!out.ok);
    assert!(
        out.latency >= Duration::from_millis(300),
        "{:?}",
        out.latency
    );
    assert!(out.latency < Duration::from_secs(2), "{:?}", out.latency);
}

#[tokio::test]
async fn one_checker_serves_many_checks_and_endpoints() {
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let port = http_backend_on(&[LOCAL, other]).await;
    let checker = Arc::new(
        Checker::new(CheckSpec {
            host: Some("www.shop.test".into()),
            ..spec(CheckKind::Http, port, "/ok")
        })
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for ip in [LOCAL, other, LOCAL] {
        let c = checker.clone();
        tasks.push(tokio::spawn(async move { c.check(ip).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().reason, CheckReason::Ok);
    }
}

/// Every check is one fresh connection that asks for no reuse and ends with an RST
/// (`SO_LINGER` 0), as HAProxy's health checks do: no FIN exchange, no `TIME_WAIT`.
#[tokio::test]
async fn each_check_is_one_connection_closed_with_a_reset() {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "request cut short");
                head.extend_from_slice(&buf[..n]);
            }
            // Answer and keep the connection open: the prober closes it.
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            let after = s.read(&mut buf).await;
            seen.push((
                String::from_utf8_lossy(&head).to_lowercase(),
                after.map_err(|e| e.kind()),
            ));
        }
        seen
    });
    let checker = Checker::new(spec(CheckKind::Http, port, "/health")).unwrap();
    for _ in 0..2 {
        assert_eq!(checker.check(LOCAL).await.reason, CheckReason::Ok);
    }
    let seen = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("two connections within 5 s")
        .unwrap();
    for (head, after) in seen {
        assert!(head.starts_with("get /health http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert_eq!(after, Err(std::io::ErrorKind::ConnectionReset), "{head}");
    }
}

#[test]
fn invalid_specs_are_rejected() {
    let cases: Vec<(CheckSpec, &str)> = vec![
        (spec(CheckKind::Http, 80, "ok"), "path `ok`"),
        (
            CheckSpec {
                headers: vec![("Host".into(), "x".into())],
                ..spec(CheckKind::Http, 80, "/")
            },
            "set `host` instead",
        ),
        (
            CheckSpec {
                headers: vec![("bad header".into(), "x".into())],
                ..spec(CheckKind::Http, 80, "/")
            },
            "header `bad header`",
        ),
        (
            CheckSpec {
                host: Some("bad host!".into()),
                ..spec(CheckKind::Http, 80, "/")
            },
            "host `bad host!`",
        ),
        (
            CheckSpec {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..spec(CheckKind::Https, 443, "/")
            },
            "/nonexistent/ca.pem: ",
        ),
    ];
    for (spec, want) in cases {
        let err = Checker::new(spec).unwrap_err().to_string();
        assert!(err.contains(want), "{err} should contain {want}");
    }
}

// ---- HTTPS: a CA and a server certificate generated per test run ----

struct Pki {
    ca_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

fn pki(ca_name: &str, names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // Distinct CA names, as real CAs have: a verifier then reports "unknown issuer"
    // rather than a signature mismatch against a same-named CA.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("test ca {ca_name}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key_der)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(server_config),
    }
}

/// A minimal HTTPS server answering `sni=<server name>` to every request.
async fn https_backend(config: Arc<rustls::ServerConfig>) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("sni={sni}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test]
async fn https_cases() {
    let good = pki("good", &["backend.test"]);
    let other = pki("other", &["backend.test"]);
    let port = https_backend(good.server_config.clone()).await;
    let http_port = http_backend().await;
    let dir = std::env::temp_dir().join(format!("meridian-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good_ca = write_pem(&dir, "good.pem", &good.ca_pem);
    let wrong_ca = write_pem(&dir, "wrong.pem", &other.ca_pem);

    let https = |host: Option<&str>, verify: bool, ca: Option<&PathBuf>| CheckSpec {
        host: host.map(str::to_owned),
        tls_verify: verify,
        ca_file: ca.cloned(),
        expect_body: host.map(|h| format!("sni={h}")),
        ..spec(CheckKind::Https, port, "/")
    };
    let cases: Vec<(&str, CheckSpec, &str)> = vec![
        (
            "verified with ca_file, sni = host",
            https(Some("backend.test"), true, Some(&good_ca)),
            "ok",
        ),
        (
            "wrong ca",
            https(Some("backend.test"), true, Some(&wrong_ca)),
            "tls: unknown issuer",
        ),
        (
            "wrong name",
            https(Some("other.test"), true, Some(&good_ca)),
            "tls: name mismatch",
        ),
        (
            "no verification",
            https(Some("other.test"), false, None),
            "ok",
        ),
        ("no verification, no host", https(None, false, None), "ok"),
        (
            "ip is not in the certificate",
            https(None, true, Some(&good_ca)),
            "tls: name mismatch",
        ),
        (
            "plain http server",
            CheckSpec {
                port: http_port,
                ..https(Some("backend.test"), true, Some(&good_ca))
            },
            "tls: not a tls server",
        ),
    ];
    for (name, spec, want) in cases {
        let out = run(spec).await;
        assert_eq!(out.reason.to_string(), want, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ca_file_without_certificates_is_rejected() {
    let dir = std::env::temp_dir().join(format!("meridian-ca-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = write_pem(&dir, "empty.pem", "not a pem file\n");
    let err = Checker::new(CheckSpec {
        ca_file: Some(path),
        ..spec(CheckKind::Https, 443, "/")
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("no usable CA certificate"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A backend answering 200 with JSON health bodies, and one that answers slowly.
async fn app_backend() -> u16 {
    let app = Router::new()
        .route(
            "/healthy",
            get(|| async {
                r#"{"status": "healthy", "database": {"state": "connected"}, "load": 0.42, "replicas": 3, "ready": true, "a/b": {"m~n": 1}}"#
            }),
        )
        .route(
            "/unhealthy",
            get(|| async { r#"{"status": "unhealthy", "load": 1.7}"# }),
        )
        .route("/text", get(|| async { "healthy" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                r#"{"status": "healthy"}"#
            }),
        );
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(axum::serve(listener, app).into_future());
    port
}

#[tokio::test]
async fn application_checks() {
    use crate::config::check::Expected;
    let port = app_backend().await;
    let json = |path: &str, pairs: &[(&str, Expected)]| CheckSpec {
        expect_json: pairs
            .iter()
            .map(|(p, v)| ((*p).to_owned(), v.clone()))
            .collect(),
        ..spec(CheckKind::Http, port, path)
    };
    let text = |s: &str| Expected::Text(s.to_owned());
    // (name, spec, reason, load)
    let cases: Vec<(&str, CheckSpec, &str, Option<f64>)> = vec![
        (
            "every pointer matches",
            json(
                "/healthy",
                &[
                    ("/status", text("healthy")),
                    ("/database/state", text("connected")),
                    ("/replicas", Expected::Number(3.0)),
                    ("/ready", Expected::Bool(true)),
                    // RFC 6901 escapes: ~1 is `/`, ~0 is `~`.
                    ("/a~1b/m~0n", Expected::Number(1.0)),
                ],
            ),
            "ok",
            None,
        ),
        (
            "a 200 saying unhealthy fails",
            json("/unhealthy", &[("/status", text("healthy"))]),
            r#"json /status: "unhealthy", want "healthy""#,
            None,
        ),
        (
            "a missing pointer fails",
            json("/healthy", &[("/database/latency", Expected::Number(1.0))]),
            "json /database/latency: missing, want 1",
            None,
        ),
        (
            "types must match",
            json("/healthy", &[("/replicas", text("3"))]),
            r#"json /replicas: 3, want "3""#,
            None,
        ),
        (
            "a body that is not json fails",
            json("/text", &[("/status", text("healthy"))]),
            "json body is not json",
            None,
        ),
        (
            "load read and clamped",
            CheckSpec {
                load_pointer: Some("/load".into()),
                ..spec(CheckKind::Http, port, "/unhealthy")
            },
            "ok",
            Some(1.0),
        ),
        (
            "load read",
            CheckSpec {
                load_pointer: Some("/load".into()),
                ..spec(CheckKind::Http, port, "/healthy")
            },
            "ok",
            Some(0.42),
        ),
        (
            "a missing load is no load, not a failure",
            CheckSpec {
                load_pointer: Some("/nope".into()),
                ..spec(CheckKind::Http, port, "/healthy")
            },
            "ok",
            None,
        ),
        (
            "fast enough",
            CheckSpec {
                max_latency: Some(Duration::from_millis(1500)),
                ..spec(CheckKind::Http, port, "/slow")
            },
            "ok",
            None,
        ),
    ];
    for (name, spec, reason, load) in cases {
        let o = run(spec).await;
        assert_eq!(o.reason.to_string(), reason, "{name}");
        assert_eq!(o.ok, reason == "ok", "{name}");
        assert_eq!(o.load, load, "{name}");
    }
    let slow = run(CheckSpec {
        max_latency: Some(Duration::from_millis(100)),
        ..spec(CheckKind::Http, port, "/slow")
    })
    .await;
    assert!(!slow.ok);
    assert!(
        slow.reason.to_string().starts_with("slow: ")
            && slow.reason.to_string().ends_with("ms > 100ms"),
        "{}",
        slow.reason
    );
}
