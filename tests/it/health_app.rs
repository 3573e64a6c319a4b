//! Health beyond up/down (issue 16), end to end: one nameserver, one real `meridian probe`,
//! programmable HTTP backends (`harness::backend`) and exec-check scripts in a temp dir.
//!
//! - application checks: a 200 whose JSON body says unhealthy, and a slow answer, fail;
//! - load shedding: a loaded backend's share falls as configured (within 3 % over 10,000
//!   answers), and dynamic TTL shortens answers meanwhile;
//! - slow start: a returning endpoint's share ramps (3 s) and converges, and while it ramps
//!   its share is that of the ramped weight `/v1/status` reports (within 3 % over 10,000);
//! - exec checks: exit status and weight hint; a program outside `--allow-exec` is a config
//!   error of that prober and never runs;
//! - drains that finish (`/v1/status`, webhook) and alert severities (webhook, metrics).
//!
//! Loopback only (127.0.0.4x-6x); every wait has a deadline.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::harness::backend::AppBackend;
use crate::harness::{
    Meridian, Process, Query, a_records, admin_args, meridian_command, probe_args, run, wait_until,
};
use crate::health_support::endpoint_status;

const HEALTHY: &str = r#"{"status": "healthy", "load": 0.1}"#;

/// The zone, with `{{name}}` for each backend's port and `{{dir}}` for the scripts.
const ZONE: &str = r#"
origin = "app.test."
ns = ["ns1.app.test."]
[soa]
mname = "ns1.app.test."
rname = "hostmaster.app.test."
serial = 1
[[record]]
name = "ns1"
type = "A"
data = ["127.0.0.53"]

[region.a]

[check.json]
type = "http"
path = "/health"
expect_json = { "/status" = "healthy" }
load_pointer = "/load"
max_latency = "400ms"
interval = 1
timeout = "900ms"
rise = 1
fall = 1

[check.script]
type = "exec"
command = ["{{dir}}/check.sh", "{address}"]
interval = 1
timeout = "900ms"
rise = 1
fall = 1

[service.app]
policy = "weighted"
ttl = 4
dynamic_ttl = true
min_ttl = 1
check = "json"
[[service.app.endpoint]]
region = "a"
address = "127.0.0.41"
probe_port = {{app41}}
[[service.app.endpoint]]
region = "a"
address = "127.0.0.42"
probe_port = {{app42}}

[service.ramp]
policy = "weighted"
slow_start = "3s"
check = "json"
[[service.ramp.endpoint]]
region = "a"
address = "127.0.0.51"
probe_port = {{ramp51}}
[[service.ramp.endpoint]]
region = "a"
address = "127.0.0.52"
probe_port = {{ramp52}}

[service.job]
policy = "weighted"
check = "script"
[[service.job.endpoint]]
region = "a"
address = "127.0.0.61"
[[service.job.endpoint]]
region = "a"
address = "127.0.0.62"
"#;

/// An exec check: down while `down-ADDRESS` exists; prints `hint-ADDRESS` (JSON) if present.
const SCRIPT: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo "$1" >> "$dir/ran.log"
[ -f "$dir/hint-$1" ] && cat "$dir/hint-$1"
[ ! -f "$dir/down-$1" ]
"#;

fn write_script(dir: &Path, name: &str) {
    let path = dir.join(name);
    std::fs::write(&path, SCRIPT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    let secret: [u8; 32] = rand::random();
    let path = dir.join("keys.txt");
    let line = format!("p1-k1 p1 {}\n", data_encoding::HEXLOWER.encode(&secret));
    std::fs::write(&path, line).unwrap();
    path
}

/// `count` A answers for `NAME.app.test.` over one UDP socket: answers per address, and
/// the TTL of the last answer.
fn shares(ns: &Meridian, service: &str, count: usize) -> (BTreeMap<Ipv4Addr, usize>, u32) {
    shares_of(ns, &format!("{service}.app.test."), count)
}

/// As [`shares`], for any name.
fn shares_of(ns: &Meridian, qname: &str, count: usize) -> (BTreeMap<Ipv4Addr, usize>, u32) {
    let socket = crate::harness::udp_from(Ipv4Addr::LOCALHOST, ns.dns);
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut seen = BTreeMap::new();
    let mut ttl = 0;
    let mut buf = [0u8; 1500];
    for i in 0..count {
        let q = Query::new(qname, RecordType::A).id(u16::try_from(i % 65_000).unwrap());
        socket.send(&q.to_bytes()).unwrap();
        let n = socket.recv(&mut buf).expect("an answer within 2 s");
        let msg = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        if let Some(r) = msg.answers.first() {
            ttl = r.ttl;
        }
        for a in a_records(&msg) {
            *seen.entry(a).or_insert(0) += 1;
        }
    }
    (seen, ttl)
}

fn share_of(seen: &BTreeMap<Ipv4Addr, usize>, ip: &str) -> f64 {
    let total: usize = seen.values().sum();
    let n = seen.get(&ip.parse().unwrap()).copied().unwrap_or(0);
    n as f64 / total.max(1) as f64
}

fn status_of(ns: &Meridian, service: &str, address: &str) -> serde_json::Value {
    let r = ns.get("/v1/status");
    assert_eq!(r.status, 200, "/v1/status: {}", r.body);
    endpoint_status(&r.json(), service, address)
}

#[test]
#[allow(clippy::too_many_lines)]
fn application_checks_shedding_slow_start_exec_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("checks");
    std::fs::create_dir_all(&scripts).unwrap();
    write_script(&scripts, "check.sh");
    let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
    let backends: BTreeMap<&str, AppBackend> = [
        ("app41", "127.0.0.41"),
        ("app42", "127.0.0.42"),
        ("ramp51", "127.0.0.51"),
        ("ramp52", "127.0.0.52"),
    ]
    .into_iter()
    .map(|(name, addr)| {
        let b = AppBackend::start(ip(addr));
        b.set(200, HEALTHY, Duration::ZERO);
        (name, b)
    })
    .collect();
    let hook = AppBackend::start(ip("127.0.0.49"));
    let mut zone = ZONE.replace("{{dir}}", &scripts.display().to_string());
    for (name, b) in &backends {
        zone = zone.replace(&format!("{{{{{name}}}}}"), &b.addr.port().to_string());
    }
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(zones.join("app.test.toml"), zone).unwrap();
    let keys = key_file(dir.path());

    let hook_url = format!("http://{}/hook", hook.addr);
    let socket = dir.path().join("ctl.sock").display().to_string();
    let admin = admin_args();
    let scripts_arg = scripts.display().to_string();
    let (ns, _prober) = serve_and_probe(
        &zones,
        &keys,
        &[
            "--notify-url",
            &hook_url,
            "--control-socket",
            &socket,
            &admin[0],
            &admin[1],
        ],
        &["--allow-exec", &scripts_arg],
    );

    // Warm-up: the loads of the application check reach /v1/status.
    wait_until(Duration::from_secs(8), "loads reported", || {
        ["127.0.0.41", "127.0.0.42"]
            .iter()
            .all(|a| status_of(&ns, "app", a)["signals"]["load"] == 0.1)
    });
    let (seen, ttl) = shares(&ns, "app", 200);
    assert_eq!(seen.len(), 2, "both endpoints answered: {seen:?}");
    assert_eq!(ttl, 4, "steady state: the full TTL");

    // A 200 whose body says unhealthy is a failed check.
    backends["app41"].set(
        200,
        r#"{"status": "unhealthy", "load": 0.1}"#,
        Duration::ZERO,
    );
    wait_until(Duration::from_secs(6), "41 out of the table", || {
        status_of(&ns, "app", "127.0.0.41")["serving"] == false
    });
    let st = status_of(&ns, "app", "127.0.0.41");
    assert_eq!(
        st["votes"][0]["reason"], r#"json /status: "unhealthy", want "healthy""#,
        "{st:#}"
    );
    let (seen, _) = shares(&ns, "app", 100);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [ip("127.0.0.42")]);
    // 42 still serves in the region: an endpoint alert, P3.
    let down = hook.wait_post(Duration::from_secs(5), "41 down", |e| {
        e["endpoint"] == "127.0.0.41" && e["to"] == "down"
    });
    assert_eq!(down["severity"], "P3", "{down:#}");

    // Back, but loaded: 0.875 sheds half its weight (0.8 -> 0.95 linear), so 1/3 of the
    // answers; shedding is a transition, so answers carry min_ttl.
    backends["app41"].set(
        200,
        r#"{"status": "healthy", "load": 0.875}"#,
        Duration::ZERO,
    );
    wait_until(Duration::from_secs(6), "41 shed to weight 50", || {
        status_of(&ns, "app", "127.0.0.41")["effective_weight"] == 50
    });
    let (seen, ttl) = shares(&ns, "app", 10_000);
    let got = share_of(&seen, "127.0.0.41");
    assert!((got - 1.0 / 3.0).abs() < 0.03, "41's share {got}: {seen:?}");
    assert_eq!(ttl, 1, "dynamic TTL while shedding");
    let up = hook.wait_post(Duration::from_secs(5), "41 up", |e| {
        e["endpoint"] == "127.0.0.41" && e["to"] == "up"
    });
    assert_eq!(up["severity"], "P4", "{up:#}");

    // A slow answer (600 ms > max_latency 400 ms) fails too.
    backends["app42"].set(200, HEALTHY, Duration::from_millis(600));
    wait_until(
        Duration::from_secs(6),
        "42 decided down for slowness",
        || status_of(&ns, "app", "127.0.0.42")["decided"] == "down",
    );
    let reason = status_of(&ns, "app", "127.0.0.42")["votes"][0]["reason"].clone();
    assert!(
        reason.as_str().unwrap().starts_with("slow: "),
        "reason {reason}"
    );
    backends["app42"].set(200, HEALTHY, Duration::ZERO);
    backends["app41"].set(200, HEALTHY, Duration::ZERO);

    // Slow start: 51 goes down and comes back; its share ramps from 10 % over 3 s.
    backends["ramp51"].set(503, HEALTHY, Duration::ZERO);
    wait_until(Duration::from_secs(6), "51 down", || {
        status_of(&ns, "ramp", "127.0.0.51")["decided"] == "down"
    });
    backends["ramp51"].set(200, HEALTHY, Duration::ZERO);
    wait_until(Duration::from_secs(6), "51 back in the table", || {
        status_of(&ns, "ramp", "127.0.0.51")["serving"] == true
    });
    let st = status_of(&ns, "ramp", "127.0.0.51");
    let early = st["effective_weight"].as_u64().unwrap();
    assert!(st["ramp"].as_f64().is_some_and(|r| r < 1.0), "{st:#}");
    let (seen, _) = shares(&ns, "ramp", 1_000);
    let early_share = share_of(&seen, "127.0.0.51");
    assert!(early < 60, "ramping weight {early}");
    assert!(early_share < 0.4, "early share {early_share}: {seen:?}");
    wait_until(Duration::from_secs(8), "ramp over", || {
        status_of(&ns, "ramp", "127.0.0.51")["effective_weight"] == 100
    });
    let (seen, _) = shares(&ns, "ramp", 10_000);
    let late = share_of(&seen, "127.0.0.51");
    assert!(
        (late - 0.5).abs() < 0.03,
        "converged share {late}: {seen:?}"
    );

    // Exec checks: exit status decides, the weight hint replaces the configured weight.
    std::fs::write(scripts.join("down-127.0.0.61"), "").unwrap();
    std::fs::write(scripts.join("hint-127.0.0.62"), r#"{"weight": 300}"#).unwrap();
    wait_until(
        Duration::from_secs(6),
        "exec: 61 down, 62 weighted 300",
        || {
            status_of(&ns, "job", "127.0.0.61")["decided"] == "down"
                && status_of(&ns, "job", "127.0.0.62")["effective_weight"] == 300
        },
    );
    assert_eq!(
        status_of(&ns, "job", "127.0.0.61")["votes"][0]["reason"],
        "exit 1"
    );

    // A drain completes once the longest TTL it was answered with (4 s) has passed.
    let drain = serde_json::json!({
        "target": {"zone": "app.test.", "service": "app", "address": "127.0.0.42"},
        "state": "drain",
        "expires_in_seconds": 600,
        "reason": "maintenance",
    });
    let r = ns.admin_post("/v1/overrides", &drain.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["drain"]["complete"], false, "{}", r.body);
    let st = status_of(&ns, "app", "127.0.0.42");
    assert_eq!(st["drain"]["complete"], false, "{st:#}");
    wait_until(
        Duration::from_secs(10),
        "drain complete in /v1/status",
        || status_of(&ns, "app", "127.0.0.42")["drain"]["complete"] == true,
    );
    let event = hook.wait_post(Duration::from_secs(5), "drain_complete", |e| {
        e["event"] == "drain_complete"
    });
    assert_eq!(event["severity"], "P4", "{event:#}");
    assert_eq!(event["endpoint"], "127.0.0.42");
    assert_eq!(event["max_ttl"], 4, "{event:#}");
    let done = event["time_ms"].as_u64().unwrap();
    assert_eq!(done, event["last_answer_ms"].as_u64().unwrap() + 4_000);
    let (seen, _) = shares(&ns, "app", 100);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [ip("127.0.0.41")]);
    let out = run(&["ctl", "--socket", &socket, "--json", "status"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let ctl: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let drain = &ctl["result"]["overrides"][0]["drain"];
    assert_eq!(drain["complete"], true, "{ctl:#}");
    assert_eq!(drain["complete_at_ms"].as_u64(), Some(done), "{ctl:#}");

    // No ramp runs and nothing changes: no recompiles (the ramp timer only runs while a ramp
    // does). Observed over a window, so this one waits.
    let generation = ns.metric("meridian_table_generation");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ns.metric("meridian_table_generation"), generation);

    // What Prometheus sees.
    assert!(ns.metric(r#"meridian_check_latency_seconds_count{service="app"}"#) > 0.0);
    assert!(ns.metric(r#"meridian_alerts_total{severity="P3"}"#) >= 1.0);
    assert!(ns.metric(r#"meridian_alerts_total{severity="P4"}"#) >= 2.0);
}

/// A zone naming a program outside `--allow-exec` is a configuration error of that prober:
/// it does not start, says why, and never runs the program.
#[test]
fn an_exec_check_outside_the_allowed_directory_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (checks, other) = (dir.path().join("checks"), dir.path().join("allowed"));
    std::fs::create_dir_all(&checks).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    write_script(&checks, "check.sh");
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    let zone = ZONE
        .replace("{{dir}}", &checks.display().to_string())
        .replace("{{app41}}", "1")
        .replace("{{app42}}", "1")
        .replace("{{ramp51}}", "1")
        .replace("{{ramp52}}", "1");
    std::fs::write(zones.join("app.test.toml"), zone).unwrap();
    let keys = key_file(dir.path());
    for allow in [None, Some(&other)] {
        let mut args = probe_args(
            &zones,
            "r1",
            "p1",
            &keys,
            &["http://127.0.0.1:9/v1/reports".into()],
        );
        if let Some(d) = allow {
            args.extend(["--allow-exec".into(), d.display().to_string()]);
        }
        let mut p = Process::spawn("prober p1", meridian_command(&args));
        let status = p
            .wait_exit(Duration::from_secs(10))
            .expect("the prober exits");
        assert_eq!(status.code(), Some(2), "{allow:?}: {}", p.log());
        let log = p.log();
        assert!(
            log.contains("check `script`") && log.contains("outside the directories"),
            "{allow:?}: {log}"
        );
    }
    assert!(!checks.join("ran.log").exists(), "the refused program ran");
}

/// The head of a zone of the probe-load tests (regions `a`), checks and services follow.
const LOAD_HEAD: &str = r#"
origin = "load.test."
ns = ["ns1.load.test."]
[soa]
mname = "ns1.load.test."
rname = "hostmaster.load.test."
serial = 1
[[record]]
name = "ns1"
type = "A"
data = ["127.0.0.53"]
[region.a]
"#;

/// Writes `zone` as the only zone of `dir`/zones and a key file; returns both paths.
fn load_zone(dir: &Path, zone: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(zones.join("load.test.toml"), zone).unwrap();
    (zones, key_file(dir))
}

/// `meridian serve` on `zones` accepting reports signed with `keys` (plus `serve_extra`
/// flags), and one prober `p1` of region `r1` (plus `probe_extra` flags) reporting to it.
fn serve_and_probe(
    zones: &Path,
    keys: &Path,
    serve_extra: &[&str],
    probe_extra: &[&str],
) -> (Meridian, Process) {
    let keys_arg = keys.display().to_string();
    let mut serve = vec!["--keys", keys_arg.as_str()];
    serve.extend_from_slice(serve_extra);
    let ns = Meridian::serve_dir(zones, &serve, false);
    let mut args = probe_args(
        zones,
        "r1",
        "p1",
        keys,
        &[format!("http://{}/v1/reports", ns.api)],
    );
    args.extend(probe_extra.iter().map(|a| a.to_string()));
    let prober = Process::meridian("prober p1", &args);
    (ns, prober)
}

/// A `meridian probe` publishing its reports to `sink` (a backend taking any POST), with
/// `--metrics-listen`; returns it and where its metrics are.
fn metered_prober(
    zones: &Path,
    keys: &Path,
    sink: &AppBackend,
    extra: &[&str],
) -> (Process, std::net::SocketAddr) {
    let mut args = probe_args(
        zones,
        "r1",
        "p1",
        keys,
        &[format!("http://{}/v1/reports", sink.addr)],
    );
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let p = Process::meridian("prober p1", &args);
    let ready = p.ready.clone().expect("ready line");
    let addr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("metrics="))
        .unwrap_or_else(|| panic!("no metrics address in {ready:?}"))
        .parse()
        .unwrap();
    (p, addr)
}

/// One series of a prober's `/metrics`.
fn probe_metric(addr: std::net::SocketAddr, selector: &str) -> f64 {
    let r = crate::harness::http_request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    crate::harness::metrics::sum(&r.body, selector)
        .unwrap_or_else(|| panic!("{selector} not in the prober's /metrics:\n{}", r.body))
}

/// Two services whose endpoints are the same backend, checked with identical settings (two
/// check names), cost that backend one check per interval, not two; both services' endpoints
/// still get the result.
#[test]
fn identical_checks_of_one_backend_are_made_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let backend = AppBackend::start(Ipv4Addr::new(127, 0, 0, 71));
    backend.set(200, HEALTHY, Duration::ZERO);
    let sink = AppBackend::start(Ipv4Addr::new(127, 0, 0, 72));
    let check = |name: &str| {
        format!(
            "[check.{name}]\ntype = \"http\"\npath = \"/health\"\nexpect_json = {{ \"/status\" = \"healthy\" }}\n\
             interval = 1\ntimeout = \"900ms\"\nrise = 1\nfall = 1\n"
        )
    };
    let service = |name: &str, check: &str| {
        format!(
            "[service.{name}]\npolicy = \"weighted\"\ncheck = \"{check}\"\n[[service.{name}.endpoint]]\nregion = \"a\"\n\
             address = \"127.0.0.71\"\nprobe_port = {}\n",
            backend.addr.port()
        )
    };
    let zone = [
        LOAD_HEAD.to_owned(),
        check("one"),
        check("two"),
        service("web", "one"),
        service("api", "two"),
    ]
    .concat();
    let (zones, keys) = load_zone(dir.path(), &zone);
    let (_prober, metrics) = metered_prober(&zones, &keys, &sink, &[]);
    // The ready line comes just before the runner counts its targets (another worker thread).
    wait_until(Duration::from_secs(5), "targets counted", || {
        probe_metric(metrics, "meridian_probe_targets") == 2.0
    });
    assert_eq!(probe_metric(metrics, "meridian_probe_distinct_checks"), 1.0);

    // Both endpoints are reported up from the one check.
    sink.wait_post(Duration::from_secs(5), "both endpoints up", |r| {
        let eps = &r["endpoints"];
        ["load.test/web/127.0.0.71", "load.test/api/127.0.0.71"]
            .iter()
            .all(|k| eps[k]["state"] == "up")
    });
    // Over a window of whole intervals the backend sees at most one check per interval (plus
    // one for a round whose jitter straddles the window's edge); two would be twice that.
    let before = backend.gets();
    let window = Duration::from_secs(4);
    std::thread::sleep(window);
    let checks = backend.gets() - before;
    assert!((1..=5).contains(&checks), "{checks} checks in {window:?}");
    assert!(probe_metric(metrics, r#"meridian_probe_checks_total{result="pass"}"#) >= 1.0);
    assert!(probe_metric(metrics, "meridian_probe_check_duration_seconds_count") >= 1.0);
}

/// With `--max-concurrent-checks 2`, six distinct checks of a backend that takes 500 ms to
/// answer never overlap more than two at a time (they would need three at once to keep up).
#[test]
fn the_concurrency_cap_bounds_checks_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let backend = AppBackend::start(Ipv4Addr::new(127, 0, 0, 73));
    backend.set(200, HEALTHY, Duration::from_millis(500));
    let sink = AppBackend::start(Ipv4Addr::new(127, 0, 0, 74));
    let mut zone = LOAD_HEAD.to_owned();
    for n in 1..=6 {
        // Distinct checks (paths differ), so none is shared.
        zone += &format!(
            "[check.c{n}]\ntype = \"http\"\npath = \"/c{n}\"\ninterval = 1\ntimeout = \"900ms\"\n\
             [service.s{n}]\npolicy = \"weighted\"\ncheck = \"c{n}\"\n[[service.s{n}.endpoint]]\nregion = \"a\"\n\
             address = \"127.0.0.{}\"\nprobe_address = \"127.0.0.73\"\nprobe_port = {}\n",
            80 + n,
            backend.addr.port()
        );
    }
    let (zones, keys) = load_zone(dir.path(), &zone);
    let (_prober, metrics) =
        metered_prober(&zones, &keys, &sink, &["--max-concurrent-checks", "2"]);
    // The ready line comes just before the runner counts its targets (another worker thread).
    wait_until(Duration::from_secs(5), "six distinct checks", || {
        probe_metric(metrics, "meridian_probe_distinct_checks") == 6.0
    });
    wait_until(Duration::from_secs(10), "12 checks answered", || {
        backend.gets() >= 12
    });
    assert_eq!(backend.peak_concurrency(), 2, "the cap is 2 and is reached");
}

/// An endpoint whose reported load rises past `shed_above` raises a P3 alert (webhook and
/// `meridian_alerts_total`) once, sheds as configured (within 3 % over 10,000 answers), and
/// a P4 when its load falls back.
#[test]
fn rising_load_pages_p3_when_shedding_starts() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = AppBackend::start(Ipv4Addr::new(127, 0, 0, 75));
    let peer = AppBackend::start(Ipv4Addr::new(127, 0, 0, 76));
    let hook = AppBackend::start(Ipv4Addr::new(127, 0, 0, 77));
    let body = |load: f64| format!(r#"{{"status": "healthy", "load": {load}}}"#);
    loaded.set(200, &body(0.2), Duration::ZERO);
    peer.set(200, &body(0.2), Duration::ZERO);
    let mut zone = LOAD_HEAD.to_owned()
        + "[check.app]\ntype = \"http\"\npath = \"/health\"\nload_pointer = \"/load\"\n\
           interval = 1\ntimeout = \"900ms\"\nrise = 1\nfall = 1\n\
           [service.app]\npolicy = \"weighted\"\ncheck = \"app\"\n";
    for b in [&loaded, &peer] {
        zone += &format!(
            "[[service.app.endpoint]]\nregion = \"a\"\naddress = \"{}\"\nprobe_port = {}\n",
            b.addr.ip(),
            b.addr.port()
        );
    }
    let (zones, keys) = load_zone(dir.path(), &zone);
    let hook_url = format!("http://{}/hook", hook.addr);
    let (ns, _prober) = serve_and_probe(
        &zones,
        &keys,
        &["--notify-url", &hook_url, "--webhook-min-severity", "P4"],
        &[],
    );
    let status = |addr: &str| {
        let r = ns.get("/v1/status");
        endpoint_status(&r.json(), "app", addr)
    };
    let load_is = |want: f64| move || status("127.0.0.75")["signals"]["load"] == want;

    // Rising: 0.2, then 0.5 (below shed_above 0.8: nothing), then 0.85 (sheds to 2/3).
    wait_until(Duration::from_secs(8), "load 0.2 reported", load_is(0.2));
    loaded.set(200, &body(0.5), Duration::ZERO);
    wait_until(Duration::from_secs(6), "load 0.5 reported", load_is(0.5));
    let p3_before = ns.metric(r#"meridian_alerts_total{severity="P3"}"#);
    assert_eq!(p3_before, 0.0, "no alert below shed_above");
    loaded.set(200, &body(0.85), Duration::ZERO);
    let started = hook.wait_post(Duration::from_secs(6), "shedding started", |e| {
        e["event"] == "endpoint_shedding_started"
    });
    assert_eq!(started["severity"], "P3", "{started:#}");
    assert_eq!(started["endpoint"], "127.0.0.75", "{started:#}");
    assert_eq!(started["load"], 0.85, "{started:#}");
    assert_eq!(started["region"], "a", "{started:#}");
    assert_eq!(ns.metric(r#"meridian_alerts_total{severity="P3"}"#), 1.0);
    // weight 100 x (0.95 - 0.85) / 0.15 = 66.7 beside 100.
    wait_until(Duration::from_secs(6), "shed weight compiled", || {
        status("127.0.0.75")["effective_weight"]
            .as_u64()
            .is_some_and(|w| (66..=67).contains(&w))
    });
    let weight = status("127.0.0.75")["effective_weight"].as_f64().unwrap();
    let (seen, _) = shares_of(&ns, "app.load.test.", 10_000);
    let got = share_of(&seen, "127.0.0.75");
    let want = weight / (weight + 100.0);
    assert!(
        (got - want).abs() < 0.03,
        "share {got}, want {want}: {seen:?}"
    );
    // Still shedding at a higher load: no second alert.
    loaded.set(200, &body(0.9), Duration::ZERO);
    wait_until(Duration::from_secs(6), "load 0.9 reported", load_is(0.9));
    // Back to normal: a P4.
    loaded.set(200, &body(0.2), Duration::ZERO);
    let stopped = hook.wait_post(Duration::from_secs(6), "shedding stopped", |e| {
        e["event"] == "endpoint_shedding_stopped"
    });
    assert_eq!(stopped["severity"], "P4", "{stopped:#}");
    assert_eq!(ns.metric(r#"meridian_alerts_total{severity="P3"}"#), 1.0);
    let starts = hook
        .posts()
        .iter()
        .filter(|p| p.contains("endpoint_shedding_started"))
        .count();
    assert_eq!(starts, 1, "{:?}", hook.posts());
}

/// Lifting a `down` override (issue 16, slow start): the endpoint comes back ramping from
/// 10 %, not at its full weight at once, and converges to its share. On the way, dynamic TTL:
/// fallback answers (the whole region forced down) carry `min_ttl`, steady ones the full TTL.
#[test]
fn lifting_a_down_override_ramps_the_endpoint_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = AppBackend::start(Ipv4Addr::new(127, 0, 0, 78));
    let b = AppBackend::start(Ipv4Addr::new(127, 0, 0, 79));
    for x in [&a, &b] {
        x.set(200, HEALTHY, Duration::ZERO);
    }
    let mut zone = LOAD_HEAD.to_owned()
        + "[check.app]\ntype = \"http\"\npath = \"/health\"\ninterval = 1\ntimeout = \"900ms\"\n\
           rise = 1\nfall = 1\n\
           [service.ramp]\npolicy = \"weighted\"\nslow_start = \"4s\"\ncheck = \"app\"\n\
           ttl = 20\ndynamic_ttl = true\nmin_ttl = 2\n";
    for x in [&a, &b] {
        zone += &format!(
            "[[service.ramp.endpoint]]\nregion = \"a\"\naddress = \"{}\"\nprobe_port = {}\n",
            x.addr.ip(),
            x.addr.port()
        );
    }
    let (zones, keys) = load_zone(dir.path(), &zone);
    let admin = admin_args();
    let (ns, _prober) = serve_and_probe(&zones, &keys, &[&admin[0], &admin[1]], &[]);
    let status = |addr: &str| {
        let r = ns.get("/v1/status");
        endpoint_status(&r.json(), "ramp", addr)
    };
    wait_until(Duration::from_secs(8), "both voted up", || {
        ["127.0.0.78", "127.0.0.79"]
            .iter()
            .all(|x| status(x)["votes"][0]["state"] == "up")
    });

    let (_, ttl) = shares_of(&ns, "ramp.load.test.", 10);
    assert_eq!(ttl, 20, "steady state: the full TTL");
    let force_down = |target: serde_json::Value| {
        let body = serde_json::json!({
            "target": target,
            "state": "down",
            "expires_in_seconds": 600,
            "reason": "maintenance",
        });
        let r = ns.admin_post("/v1/overrides", &body.to_string());
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_u64().unwrap()
    };
    let auth = format!("Bearer {}", crate::harness::ADMIN_TOKEN);
    let lift = |id: u64| {
        let r = crate::harness::http_request(
            ns.api,
            "DELETE",
            &format!("/v1/overrides/{id}"),
            &[("Authorization", &auth)],
            b"",
        );
        assert!(r.status < 300, "{} {}", r.status, r.body);
    };

    // The whole region down: answers come from the fallback, with min_ttl.
    let id =
        force_down(serde_json::json!({"zone": "load.test.", "service": "ramp", "region": "a"}));
    wait_until(Duration::from_secs(5), "region a out of the table", || {
        ["127.0.0.78", "127.0.0.79"]
            .iter()
            .all(|x| status(x)["serving"] == false)
    });
    let (seen, ttl) = shares_of(&ns, "ramp.load.test.", 10);
    assert!(!seen.is_empty(), "fallback answers are never empty");
    assert_eq!(ttl, 2, "fallback answers carry min_ttl");
    lift(id);
    // The region comes back ramping too; let it finish.
    wait_until(Duration::from_secs(10), "region ramp over", || {
        ["127.0.0.78", "127.0.0.79"]
            .iter()
            .all(|x| status(x)["effective_weight"] == 100)
    });

    let id = force_down(
        serde_json::json!({"zone": "load.test.", "service": "ramp", "address": "127.0.0.78"}),
    );
    wait_until(Duration::from_secs(5), "78 out of the table", || {
        status("127.0.0.78")["serving"] == false
    });
    lift(id);
    wait_until(Duration::from_secs(5), "78 back in the table", || {
        status("127.0.0.78")["serving"] == true
    });
    // Back ramping: well under its full weight at first (10 % plus what passed since).
    let st = status("127.0.0.78");
    let early = st["effective_weight"].as_u64().unwrap();
    assert!(early < 60, "weight right after the lift {early}: {st:#}");
    assert!(st["ramp"].as_f64().is_some_and(|r| r < 1.0), "{st:#}");
    wait_until(Duration::from_secs(10), "ramp over", || {
        status("127.0.0.78")["effective_weight"] == 100
    });
    let (seen, _) = shares_of(&ns, "ramp.load.test.", 10_000);
    let late = share_of(&seen, "127.0.0.78");
    assert!(
        (late - 0.5).abs() < 0.03,
        "converged share {late}: {seen:?}"
    );
}

/// Slow start *during* the ramp (issue 16: "converges within 3 % over 10,000 answers"): while
/// an endpoint ramps, its share of the answers is the share of the ramped weight that
/// `/v1/status` reports for the table serving them, not its full share and not nothing.
///
/// Not flaky by construction: the ramp is long (600 s: the weight moves 1.5 a second), the
/// weight is read before and after the 10,000 answers and the share must lie within 3 % of
/// the shares of those two weights (however long the answers take); the ramping endpoint has
/// weight 1000 against 100, so its ramped share (about 1/2 at 10 %) is far from both its full
/// share (10/11) and zero, and 3 % is six standard deviations of 10,000 draws at 1/2.
#[test]
fn slow_start_share_follows_the_ramp_while_it_ramps() {
    let dir = tempfile::tempdir().unwrap();
    let heavy = AppBackend::start(Ipv4Addr::new(127, 0, 0, 86));
    let light = AppBackend::start(Ipv4Addr::new(127, 0, 0, 87));
    for x in [&heavy, &light] {
        x.set(200, HEALTHY, Duration::ZERO);
    }
    let mut zone = LOAD_HEAD.to_owned()
        + "[check.app]\ntype = \"http\"\npath = \"/health\"\ninterval = 1\ntimeout = \"900ms\"\n\
           rise = 1\nfall = 1\n\
           [service.ramp]\npolicy = \"weighted\"\nslow_start = \"600s\"\ncheck = \"app\"\n";
    for (x, weight) in [(&heavy, 1000), (&light, 100)] {
        zone += &format!(
            "[[service.ramp.endpoint]]\nregion = \"a\"\naddress = \"{}\"\nprobe_port = {}\n\
             weight = {weight}\n",
            x.addr.ip(),
            x.addr.port()
        );
    }
    let (zones, keys) = load_zone(dir.path(), &zone);
    let admin = admin_args();
    let (ns, _prober) = serve_and_probe(&zones, &keys, &[&admin[0], &admin[1]], &[]);
    let status = |addr: &str| {
        let r = ns.get("/v1/status");
        assert_eq!(r.status, 200, "/v1/status: {}", r.body);
        endpoint_status(&r.json(), "ramp", addr)
    };
    wait_until(Duration::from_secs(8), "both serving", || {
        ["127.0.0.86", "127.0.0.87"]
            .iter()
            .all(|x| status(x)["serving"] == true)
    });
    // Up from the start: no ramp, the full weight.
    assert_eq!(status("127.0.0.86")["effective_weight"], 1000);

    // Down by override, then lifted: the ramp starts.
    let body = serde_json::json!({
        "target": {"zone": "load.test.", "service": "ramp", "address": "127.0.0.86"},
        "state": "down",
        "expires_in_seconds": 600,
        "reason": "maintenance",
    });
    let r = ns.admin_post("/v1/overrides", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_u64().unwrap();
    wait_until(Duration::from_secs(5), "86 out of the table", || {
        status("127.0.0.86")["serving"] == false
    });
    let auth = format!("Bearer {}", crate::harness::ADMIN_TOKEN);
    let r = crate::harness::http_request(
        ns.api,
        "DELETE",
        &format!("/v1/overrides/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert!(r.status < 300, "{} {}", r.status, r.body);
    wait_until(Duration::from_secs(5), "86 back, ramping", || {
        status("127.0.0.86")["serving"] == true
    });

    let share = |w: f64| w / (w + 100.0);
    let before = status("127.0.0.86");
    let w0 = before["effective_weight"].as_f64().unwrap();
    let ramp = before["ramp"].as_f64();
    assert!(ramp.is_some_and(|r| r < 0.2), "ramping: {before:#}");
    let (seen, _) = shares_of(&ns, "ramp.load.test.", 10_000);
    let w1 = status("127.0.0.86")["effective_weight"].as_f64().unwrap();
    // Ramping, not at the full weight: 10 % of 1000 plus 1.5 a second.
    assert!(
        (100.0..300.0).contains(&w0) && w0 <= w1 && w1 < 300.0,
        "{w0} -> {w1}"
    );
    let got = share_of(&seen, "127.0.0.86");
    let (lo, hi) = (share(w0), share(w1));
    assert!(
        got > lo - 0.03 && got < hi + 0.03,
        "share {got} while ramping from weight {w0} to {w1} (shares {lo:.3}-{hi:.3}): {seen:?}"
    );
    // Far from where it ends: the ramp is what is measured.
    assert!(share(1000.0) - got > 0.2, "{got}");
}
