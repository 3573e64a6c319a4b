//! Operations, end to end: `/metrics` (per zone, QTYPE, region, latency, health, process),
//! health webhooks against a local receiver, and the status page in a real headless Chromium
//! (a system test: `#[ignore]`d unless run with `--include-ignored`, see `harness::system`).
//!
//! Real processes throughout: the server, two `meridian probe` processes in two regions,
//! local HTTP backends they check, an axum webhook receiver. Loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::harness::{
    HttpResponse, Meridian, Process, Query, Transport, fixture, http_request, probe_args, system,
    wait_for, wait_until,
};

const FIXTURE: &str = "ops/status";
const EU: &str = "192.0.2.10";
const US: &str = "198.51.100.10";
const TOKEN: &str = "ops-test-admin-token-0123456789";

fn secrets(file: &str) -> String {
    fixture("ops/secrets").join(file).display().to_string()
}

/// An HTTP backend that answers 200 to anything until stopped; then its port refuses.
struct Backend {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                        let mut buf = [0u8; 2048];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            // The listener drops here: connections are refused from now on.
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A webhook receiver (axum on its own runtime) that fails the first `fail_first` requests
/// with 500 and records every body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    requests: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        use axum::http::StatusCode;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let (b, r) = (Arc::clone(&bodies), Arc::clone(&requests));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (b, r) = (Arc::clone(&b), Arc::clone(&r));
                async move {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    if n < fail_first {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            bodies,
            requests,
            _runtime: runtime,
        }
    }
}

/// A `meridian probe` process in `region` publishing to `api`; killed on drop.
fn prober(zones: &Path, region: &str, id: &str, api: SocketAddr) -> Process {
    let publish = [format!("http://{api}/v1/reports")];
    let args = probe_args(
        zones,
        region,
        id,
        Path::new(&secrets("probers.keys")),
        &publish,
    );
    Process::meridian(&format!("prober {id}"), &args)
}

fn zone_with_ports(eu: u16, us: u16) -> String {
    let text = std::fs::read_to_string(fixture(FIXTURE).join("ops.test.toml")).unwrap();
    let mut ports = [eu, us].into_iter();
    text.lines()
        .map(|l| {
            if l.starts_with("probe_port") {
                format!("probe_port = {}", ports.next().unwrap())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn answers_a(ns: &Meridian) -> Vec<String> {
    ns.a("www.ops.test.")
        .iter()
        .map(|a| a.to_string())
        .collect()
}

#[test]
fn metrics_count_by_zone_qtype_region_ecs_and_latency() {
    let ns = Meridian::serve(FIXTURE);
    let zone_a = r#"meridian_zone_queries_total{zone="ops.test.",qtype="A"}"#;
    let zone_other = r#"meridian_zone_queries_total{zone="ops.test.",qtype="other"}"#;
    let no_zone = r#"meridian_zone_queries_total{zone="none",qtype="A"}"#;
    let eu_healthy = r#"meridian_service_answers_total{zone="ops.test.",service="www",region="eu",outcome="healthy"}"#;
    let nodata = r#"meridian_service_answers_total{zone="ops.test.",service="www",region="eu",outcome="nodata"}"#;
    let latency = "meridian_answer_latency_seconds_count";
    let before: Vec<f64> = [zone_a, zone_other, no_zone, eu_healthy, latency]
        .iter()
        .map(|m| ns.metric(m))
        .collect();
    let ecs0 = ns.metric("meridian_ecs_queries_total");

    assert_eq!(answers_a(&ns), [EU]);
    let q = Query::new("www.ops.test.", RecordType::A)
        .edns(1232)
        .ecs("2.2.3.0".parse().unwrap(), 24);
    ns.exchange(&q, Transport::Tcp);
    ns.query("www.ops.test.", RecordType::Unknown(99), Transport::Udp);
    ns.query("www.elsewhere.test.", RecordType::A, Transport::Udp);

    assert_eq!(ns.metric(zone_a), before[0] + 2.0);
    assert_eq!(ns.metric(zone_other), before[1] + 1.0);
    assert_eq!(ns.metric(no_zone), before[2] + 1.0);
    assert_eq!(ns.metric(eu_healthy), before[3] + 2.0);
    assert_eq!(ns.metric(nodata), 0.0, "pre-created at zero");
    assert_eq!(ns.metric(latency), before[4] + 4.0);
    assert_eq!(ns.metric("meridian_ecs_queries_total"), ecs0 + 1.0);
    assert_eq!(
        ns.metric(r#"meridian_queries_total{transport="udp",rcode="REFUSED"}"#),
        1.0
    );

    // Control plane and process series exist and are plausible.
    assert!(ns.metric("meridian_table_compile_seconds_count") >= 1.0);
    assert!(ns.metric("meridian_table_built_timestamp_seconds") > 1.7e9);
    assert!(ns.metric("process_resident_memory_bytes") > 1e6);
    assert!(ns.metric("process_open_fds") >= 5.0);
    assert!(ns.metric("process_start_time_seconds") > 1.7e9);
    assert_eq!(
        ns.metric(r#"meridian_endpoint_up{zone="ops.test.",service="www",region="us",address="198.51.100.10"}"#),
        1.0,
        "endpoints start up"
    );

    // Scrapers that ask for OpenMetrics get it.
    let HttpResponse { status, body } = http_request(
        ns.api,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    );
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE meridian_queries counter"), "{body}");
}

/// `serve --answer-metrics zone --metrics-skip-zero --endpoint-metrics service` (catalogues
/// of many services): answers summed per zone with an empty `service` label, no series until
/// it counts, endpoints counted per service and region instead of one series each.
#[test]
fn large_catalogue_flags_sum_answers_per_zone_and_leave_zeros_out() {
    let ns = Meridian::serve_with(
        FIXTURE,
        &[
            "--answer-metrics",
            "zone",
            "--metrics-skip-zero",
            "--endpoint-metrics",
            "service",
        ],
    );
    let body = ns.get("/metrics").body;
    assert!(
        body.lines().any(|l| l.starts_with(
            r#"meridian_service_endpoints{zone="ops.test.",service="www",region="eu",state="up"} "#
        )),
        "{body}"
    );
    for per_endpoint in ["meridian_endpoint_up{", "meridian_endpoint_serving{"] {
        assert!(!body.contains(per_endpoint), "{body}");
    }
    assert!(
        body.contains("# TYPE meridian_service_answers_total counter"),
        "{body}"
    );
    assert!(!body.contains("meridian_service_answers_total{"), "{body}");
    assert!(
        !body.contains(r#"meridian_zone_queries_total{zone="ops.test.""#),
        "{body}"
    );

    assert_eq!(answers_a(&ns), [EU]);
    let body = ns.get("/metrics").body;
    let has = |line: &str| body.lines().any(|l| l == line);
    assert!(
        has(
            r#"meridian_service_answers_total{zone="ops.test.",service="",region="eu",outcome="healthy"} 1"#
        ),
        "{body}"
    );
    assert!(
        has(r#"meridian_zone_queries_total{zone="ops.test.",qtype="A"} 1"#),
        "{body}"
    );
    assert!(
        !body.contains(r#"meridian_service_answers_total{zone="ops.test.",service="www""#),
        "{body}"
    );
    assert!(!body.contains(r#"qtype="AAAA""#), "{body}");
}

/// `GET /v1/map?service=` as JSON (200 checked).
fn traffic_map(ns: &Meridian, service: &str) -> serde_json::Value {
    let r = ns.get(&format!("/v1/map?service={service}"));
    assert_eq!(r.status, 200, "/v1/map: {}", r.body);
    r.json()
}

/// Region and outcome of `country` on a `/v1/map` answer.
fn country_route(map: &serde_json::Value, country: &str) -> (String, String) {
    let c = map["countries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["country"] == country)
        .unwrap_or_else(|| panic!("{country} not on the map: {map}"));
    (
        c["region"].as_str().unwrap_or("-").to_string(),
        c["outcome"].as_str().unwrap().to_string(),
    )
}

fn routes(map: &serde_json::Value, countries: &[&str]) -> Vec<(String, String)> {
    countries.iter().map(|c| country_route(map, c)).collect()
}

fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect()
}

fn region_serving(map: &serde_json::Value, region: &str) -> bool {
    map["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == region)
        .unwrap_or_else(|| panic!("no region {region}: {map}"))["serving"]
        .as_bool()
        .unwrap()
}

fn set_override(ns: &Meridian, region: &str, state: &str) {
    let body = format!(
        r#"{{"target":{{"zone":"ops.test.","service":"www","region":"{region}"}},"state":"{state}","expires_in_seconds":600,"reason":"traffic map test"}}"#
    );
    let HttpResponse { status, body } = http_request(
        ns.api,
        "POST",
        "/v1/overrides",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn traffic_map_follows_overrides_without_counting_answers() {
    let ns = Meridian::serve_with(FIXTURE, &["--admin-token-file", &secrets("admin.token")]);
    let countries = ["GB", "FR", "JP", "US", "CA"];

    // Without a service: the names to choose from (no token needed).
    let list = ns.get("/v1/map");
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.json()["services"],
        serde_json::json!(["www.ops.test."])
    );
    // Unknown and malformed names are JSON errors.
    let r = ns.get("/v1/map?service=nothing.ops.test.");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("nothing.ops.test.")
    );
    let r = ns.get("/v1/map?service=a..b");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("a..b"));

    let answers = r#"meridian_service_answers_total{zone="ops.test.",service="www",region="eu",outcome="healthy"}"#;
    let counted = ns.metric(answers);
    // Either case, no trailing dot.
    let map = traffic_map(&ns, "WWW.ops.test");
    assert_eq!(map["service"], "www.ops.test.");
    assert_eq!(map["policy"], "geo");
    assert_eq!(map["countries"].as_array().unwrap().len(), 250);
    assert_eq!(map["regions"][0]["name"], "eu");
    assert_eq!(
        map["regions"][0]["location"],
        serde_json::json!([50.11, 8.68])
    );
    assert_eq!(
        routes(&map, &countries),
        want(&[
            ("eu", "healthy"),
            ("eu", "healthy"),
            ("eu", "healthy"),
            ("us", "healthy"),
            ("us", "healthy"),
        ])
    );
    assert!(region_serving(&map, "eu") && region_serving(&map, "us"));
    assert_eq!(ns.metric(answers), counted, "the map counted answers");

    // eu forced down: its countries move to us, as DNS answers do.
    set_override(&ns, "eu", "down");
    let map = wait_for(Duration::from_secs(5), "GB to move to us", || {
        let map = traffic_map(&ns, "www.ops.test.");
        (country_route(&map, "GB").0 == "us").then_some(map)
    });
    assert_eq!(routes(&map, &countries), want(&[("us", "healthy"); 5]));
    assert!(!region_serving(&map, "eu"));
    assert_eq!(map["regions"][0]["countries"], 0);
    assert_eq!(answers_a(&ns), [US]);

    // Everything down: the fallback (every endpoint of the first region in the order).
    set_override(&ns, "us", "down");
    let map = wait_for(Duration::from_secs(5), "the fallback", || {
        let map = traffic_map(&ns, "www.ops.test.");
        (country_route(&map, "GB").1 == "fallback").then_some(map)
    });
    assert_eq!(
        routes(&map, &countries),
        want(&[
            ("eu", "fallback"),
            ("eu", "fallback"),
            ("eu", "fallback"),
            ("us", "fallback"),
            ("us", "fallback"),
        ])
    );
    assert!(!region_serving(&map, "us"));
}

#[test]
fn history_fills_with_query_and_answer_rates() {
    // Sample every 200 ms (hidden flag) instead of every 10 s.
    let ns = Meridian::serve_with(FIXTURE, &["--history-interval-ms", "200"]);
    let r = ns.get("/v1/history");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["interval_seconds"], 0.2);
    // The first sample is taken before the server is up, so every query below follows it.
    assert!(r.json()["samples"].as_u64() >= Some(1), "{}", r.body);
    for _ in 0..20 {
        assert_eq!(answers_a(&ns), [EU]);
    }
    ns.query("nothing.ops.test.", RecordType::A, Transport::Udp);
    // Answers in total: rate x interval, summed.
    let total = |series: &serde_json::Value, label: &str| -> f64 {
        let at: Vec<u64> = std::iter::once(&series["from_ms"])
            .chain(series["at_ms"].as_array().unwrap())
            .map(|t| t.as_u64().unwrap())
            .collect();
        let Some(rates) = series["rates"][label].as_array() else {
            return 0.0;
        };
        rates
            .iter()
            .enumerate()
            .map(|(i, r)| r.as_f64().unwrap() * (at[i + 1] - at[i]) as f64 / 1000.0)
            .sum()
    };
    // Once a sample after the queries is in, the rates account for every one of them.
    let h = wait_for(Duration::from_secs(10), "rates in /v1/history", || {
        let h = ns.get("/v1/history").json();
        (total(&h["answers_per_second"], "eu") > 19.5
            && total(&h["queries_per_second"], "NXDOMAIN") > 0.5)
            .then_some(h)
    });
    let q = &h["queries_per_second"];
    let intervals = q["at_ms"].as_array().unwrap().len();
    assert!((1..=90).contains(&intervals), "{h}");
    assert_eq!(h["samples"].as_u64().unwrap() as usize, intervals + 1);
    assert_eq!(q["rates"]["NOERROR"].as_array().unwrap().len(), intervals);
    let eu = total(&h["answers_per_second"], "eu");
    assert!((eu - 20.0).abs() < 0.5, "eu answers {eu}: {h}");
    let nx = total(q, "NXDOMAIN");
    assert!((nx - 1.0).abs() < 0.5, "NXDOMAIN {nx}: {h}");
    assert!(total(q, "NOERROR") > 19.5, "{h}");
    assert!(h["answers_per_second"]["rates"]["us"].is_array(), "{h}");
}

#[test]
fn probe_votes_drive_answers_metrics_webhook_and_status_api() {
    probe_votes_scenario(|_| {}, |_| {});
}

#[test]
#[ignore = "system test: needs chromium; run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn status_page_renders_votes_transition_override_and_explain_in_chromium() {
    let chromium = system::require_any_tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "chromium",
    );
    let profile = tempfile::tempdir().unwrap();
    let browser = Chromium {
        path: chromium,
        profile: profile.path(),
    };
    probe_votes_scenario(
        |ns| traffic_map_before_failover_in_chromium(ns, &browser),
        |ns| status_page_in_chromium(ns, &browser),
    );
}

/// Two probers vote an endpoint down; answers, metrics, the webhook and the status API follow;
/// then an override is set. `before` looks at the server while every endpoint is up, `then` in
/// that final state.
fn probe_votes_scenario(before: impl FnOnce(&Meridian), then: impl FnOnce(&Meridian)) {
    let mut eu = Backend::start();
    let us = Backend::start();
    let hook = Receiver::start(1);
    let ns = Meridian::serve_copy(
        FIXTURE,
        &[
            "--keys",
            &secrets("probers.keys"),
            "--admin-token-file",
            &secrets("admin.token"),
            "--notify-url",
            &hook.url,
            // Charts with samples every half second (hidden flag; 10 s by default).
            "--history-interval-ms",
            "500",
        ],
    );
    // Only the probers connect to endpoints: they read the real ports from the zone file.
    ns.write_zone("ops.test.toml", &zone_with_ports(eu.port, us.port));
    let _probers = [
        prober(ns.zones_dir(), "eu", "p-eu", ns.api),
        prober(ns.zones_dir(), "us", "p-us", ns.api),
    ];
    let vote = |prober: &str, addr: &str| {
        format!(
            r#"meridian_probe_vote{{zone="ops.test.",service="www",address="{addr}",prober="{prober}"}}"#
        )
    };
    wait_for(Duration::from_secs(15), "four up votes", || {
        let all = ["p-eu", "p-us"]
            .iter()
            .flat_map(|p| [EU, US].map(|a| vote(p, a)))
            .all(|m| ns.metric(&m) == 1.0);
        all.then_some(())
    });
    assert_eq!(answers_a(&ns), [EU]);
    before(&ns);

    eu.stop();
    wait_for(Duration::from_secs(15), "answers to move to us", || {
        (answers_a(&ns) == [US]).then_some(())
    });
    let endpoint = |addr: &str, region: &str| {
        format!(
            r#"meridian_endpoint_up{{zone="ops.test.",service="www",region="{region}",address="{addr}"}}"#
        )
    };
    assert_eq!(ns.metric(&endpoint(EU, "eu")), 0.0);
    assert_eq!(ns.metric(&endpoint(US, "us")), 1.0);
    assert_eq!(ns.metric(&vote("p-eu", EU)), 0.0);
    assert_eq!(ns.metric(&vote("p-us", EU)), 0.0);
    assert!(ns.metric("meridian_health_transitions_total") >= 1.0);
    assert!(
        ns.metric(r#"meridian_service_answers_total{zone="ops.test.",service="www",region="us",outcome="healthy"}"#)
            >= 1.0
    );
    assert!(ns.metric(r#"meridian_reports_accepted_total"#) >= 2.0);

    // The webhook got the transition, after one retry (the receiver failed the first POST).
    let event = wait_for(Duration::from_secs(10), "the webhook event", || {
        hook.bodies.lock().unwrap().first().cloned()
    });
    assert_eq!(event["event"], "endpoint_health_changed");
    assert_eq!(event["zone"], "ops.test.");
    assert_eq!(event["service"], "www");
    assert_eq!(event["region"], "eu");
    assert_eq!(event["endpoint"], EU);
    assert_eq!(event["from"], "up");
    assert_eq!(event["to"], "down");
    assert_eq!(event["cause"], "votes");
    assert_eq!(event["votes"]["down_regions"], 2);
    assert!(event["time"].as_str().unwrap().ends_with('Z'), "{event}");
    assert!(hook.requests.load(Ordering::SeqCst) >= 2);
    // The notifier counts a delivery once it has read the hook's response, which can come a
    // moment after the hook counted the request.
    wait_until(Duration::from_secs(5), "the delivery is counted", || {
        ns.metric(r#"meridian_notifications_total{result="sent"}"#) >= 1.0
    });

    // An override, to see it on the page and in the gauge.
    let HttpResponse { status, body } = http_request(
        ns.api,
        "POST",
        "/v1/overrides",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"target":{"zone":"ops.test.","service":"www","region":"us"},"state":"up","expires_in_seconds":600,"reason":"pinned for the ops test"}"#,
    );
    assert_eq!(status, 201, "{body}");
    wait_for(Duration::from_secs(5), "the overrides gauge", || {
        (ns.metric("meridian_overrides_active") == 1.0).then_some(())
    });

    then(&ns);
}

/// Headless Chromium with one profile directory for every run of a test.
struct Chromium<'a> {
    path: &'a str,
    profile: &'a Path,
}

impl Chromium<'_> {
    /// Loads `url` (its scripts run for 8 s of virtual time) with `extra` flags.
    fn run(&self, url: &str, extra: &[&str]) -> std::process::Output {
        let out = Command::new(self.path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=8000",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The DOM after the scripts ran.
    fn dom(&self, url: &str) -> String {
        String::from_utf8(self.run(url, &["--dump-dom"]).stdout).unwrap()
    }

    /// The DOM once every one of `loaded` (the `data-*-loaded` marks the page's scripts set
    /// when their fetches are done) is in it, loading the page up to three times: on a
    /// 2-core machine running the whole suite, one fetch of a debug build's API once
    /// outlasted Chromium's budget (the map was still "loading…"). The last DOM is returned
    /// either way; the caller's assertions say what is missing.
    fn dom_loaded(&self, url: &str, loaded: &[&str]) -> String {
        let mut dom = String::new();
        for _ in 0..3 {
            dom = self.dom(url);
            if loaded.iter().all(|mark| dom.contains(mark)) {
                break;
            }
        }
        dom
    }

    /// Saves a screenshot of `url` as `name` in the temporary directory; checks it is a PNG
    /// of some substance and returns its path.
    fn screenshot(&self, url: &str, name: &str) -> PathBuf {
        let shot: PathBuf = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&shot);
        self.run(url, &[&format!("--screenshot={}", shot.display())]);
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        assert!(
            png.len() > 20_000,
            "screenshot suspiciously small: {} bytes",
            png.len()
        );
        eprintln!("screenshot: {}", shot.display());
        shot
    }
}

/// Colours of the traffic map's first two regions (map.js `PALETTE`: eu, us in zone order).
const EU_COLOUR: &str = "#2b6cb0";
const US_COLOUR: &str = "#d97706";

/// The `<circle ...>` tag of `country`'s dot on the traffic map in a dumped DOM.
fn map_dot<'d>(dom: &'d str, country: &str) -> &'d str {
    let at = dom
        .find(&format!(r#"data-country="{country}""#))
        .unwrap_or_else(|| panic!("no dot for {country} on the map:\n{dom}"));
    let start = dom[..at].rfind("<circle").unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

/// Checks the dots of `countries` on the map: answering region and fill colour.
fn check_dots(dom: &str, countries: &[(&str, &str, &str)]) {
    assert!(
        dom.contains(r#"data-map-loaded="true""#),
        "map not drawn:\n{dom}"
    );
    for (country, region, colour) in countries {
        let dot = map_dot(dom, country);
        assert!(
            dot.contains(&format!(r#"data-region="{region}""#))
                && dot.contains(&format!(r#"fill="{colour}""#)),
            "{country}: want region {region} in {colour}, got {dot}"
        );
    }
}

/// Every endpoint up: Europe and the rest on eu's colour, North America on us's; both region
/// markers filled (serving).
fn traffic_map_before_failover_in_chromium(ns: &Meridian, browser: &Chromium<'_>) {
    let url = format!("http://{}/?map=www.ops.test.", ns.api);
    let dom = browser.dom_loaded(&url, &[r#"data-map-loaded="true""#]);
    check_dots(
        &dom,
        &[
            ("GB", "eu", EU_COLOUR),
            ("DE", "eu", EU_COLOUR),
            ("JP", "eu", EU_COLOUR),
            ("US", "us", US_COLOUR),
            ("CA", "us", US_COLOUR),
        ],
    );
    assert!(dom.matches("<circle").count() >= 250, "{dom}");
    for region in ["eu", "us"] {
        assert!(
            dom.contains(&format!(
                r#"data-region-marker="{region}" data-serving="true""#
            )),
            "{region} marker:\n{dom}"
        );
    }
    // 41 countries of the built-in table are in North America.
    assert!(dom.contains("eu · 209 countries"), "legend:\n{dom}");
    assert!(dom.contains("us · 41 countries"), "legend:\n{dom}");
    browser.screenshot(&url, "meridian-status-map-before.png");
}

/// Loads the status page in headless Chromium (its script fetches the API) and checks what a
/// person would see: zones, services, endpoints with decided state, votes, the transition,
/// the override and the answer of the explain form (filled from the URL).
fn status_page_in_chromium(ns: &Meridian, browser: &Chromium<'_>) {
    let url = format!(
        "http://{}/?name=www.ops.test.&client=2.2.3.4&type=A",
        ns.api
    );
    let dom = browser.dom_loaded(
        &url,
        &[
            r#"data-loaded="true""#,
            r#"data-explained="true""#,
            r#"data-map-loaded="true""#,
            r#"data-charts-loaded="true""#,
        ],
    );
    for want in [
        r#"data-loaded="true""#,
        r#"data-explained="true""#,
        "ops.test.",
        "www.ops.test.",
        "policy geo",
        EU,
        US,
        "p-eu (eu)",
        "p-us (us)",
        r#"<span class="state down">down</span>"#,
        // Without the admin token the page shows how many overrides are active, not their
        // reasons (GET /v1/status lists them only for the token).
        "1 active override",
        "ops.test/www/192.0.2.10",
        "generation ",
    ] {
        assert!(dom.contains(want), "status page lacks {want:?}:\n{dom}");
    }
    // The explain form answered from the live table: the eu endpoint is down, so us.
    let explained = dom
        .split(r#"id="explain-result""#)
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap();
    assert!(explained.contains(US), "explain result: {explained}");

    // The traffic map after the failover: every country on us's colour, eu hollow.
    check_dots(
        &dom,
        &[
            ("GB", "us", US_COLOUR),
            ("DE", "us", US_COLOUR),
            ("JP", "us", US_COLOUR),
            ("US", "us", US_COLOUR),
        ],
    );
    assert!(
        dom.contains(r#"data-region-marker="eu" data-serving="false""#),
        "eu marker:\n{dom}"
    );
    assert!(dom.contains("eu (down)"), "eu label:\n{dom}");
    // The charts drew the NOERROR queries and the answers of the scenario.
    for want in [
        r#"data-charts-loaded="true""#,
        r#"data-series="NOERROR""#,
        r#"data-series="us""#,
        "Queries per second by rcode",
    ] {
        assert!(dom.contains(want), "charts lack {want:?}:\n{dom}");
    }
    browser.screenshot(&url, "meridian-status-page.png");
}
