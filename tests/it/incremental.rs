//! Incremental tables (issue 17), at a size where rebuilding everything would show: a zone of
//! [`SERVICES`] services and a small one. An override that takes one endpoint down rebuilds
//! that one service (`ctl status` says so; the same counts are on `/metrics`) and the table
//! serves it within the issue's 50 ms of the decision; a reload that changes the small
//! zone's file compiles that zone alone and keeps the large one, override and all.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::harness::{ADMIN_TOKEN, Meridian, admin_args, http_request_within, run, wait_until};

/// Services of the large zone: enough that compiling them all takes far longer than one
/// (a debug build loads them in about a second; the reload re-reads every file, which the
/// test's deadlines must allow on a loaded machine). The health side's work per override
/// and decision does not grow with them (`health::hub` unit tests count it).
const SERVICES: u32 = 20_000;

/// The issue's bound: a health decision reaches the answers within 50 ms.
const HEALTH_BOUND: Duration = Duration::from_millis(50);

fn address(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | n)
}

fn head(origin: &str, serial: u32) -> String {
    format!(
        "origin = \"{origin}\"\nns = [\"ns1.{origin}\"]\n[soa]\nmname = \"ns1.{origin}\"\n\
         rname = \"hostmaster.{origin}\"\nserial = {serial}\n[[record]]\nname = \"ns1\"\n\
         type = \"A\"\ndata = [\"192.0.2.53\"]\n[region.r0]\nlocation = [51.5, -0.1]\n"
    )
}

/// One endpoint per service, one region; `fallback = "none"`, so a service whose endpoint is
/// down answers NODATA (with the default fail-open fallback it would answer the same address).
fn write_zones(dir: &Path) {
    let mut big = head("big.test.", 1);
    for s in 0..SERVICES {
        let a = address(s);
        writeln!(
            big,
            "[service.s{s}]\nfallback = \"none\"\n[[service.s{s}.endpoint]]\nregion = \"r0\"\naddress = \"{a}\""
        )
        .unwrap();
    }
    std::fs::write(dir.join("big.toml"), big).unwrap();
    std::fs::write(dir.join("small.toml"), small(1, "192.0.2.1")).unwrap();
}

fn small(serial: u32, addr: &str) -> String {
    format!(
        "{}[service.www]\n[[service.www.endpoint]]\nregion = \"r0\"\naddress = \"{addr}\"\n",
        head("small.test.", serial)
    )
}

/// What a table build compiled and shared (`ctl status`'s `last_build`, a reload report's
/// `table`). Read there rather than from `/metrics`, whose per-service series make it a large
/// page at this size.
fn build_of(v: &serde_json::Value) -> (u64, u64, u64, u64, f64) {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (
        n("zones_compiled"),
        n("zones_reused"),
        n("services_compiled"),
        n("services_reused"),
        v["seconds"].as_f64().unwrap(),
    )
}

fn last_build(socket: &Path) -> serde_json::Value {
    let sock = socket.display().to_string();
    let out = run(&["ctl", "--socket", &sock, "--json", "status"]);
    let status: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("ctl printed no JSON ({e}): {}{}", out.stdout, out.stderr));
    status["result"]["last_build"].clone()
}

#[test]
fn a_health_change_and_a_reload_rebuild_only_what_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    write_zones(dir.path());
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join("ctl.sock");
    let mut extra: Vec<String> = admin_args().to_vec();
    extra.extend(["--control-socket".to_string(), socket.display().to_string()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let ns = Meridian::serve_dir_within(dir.path(), &extra, Duration::from_secs(120));
    let (target, other) = (7_777 % SERVICES, 12_345 % SERVICES);
    let name = format!("s{target}.big.test.");
    assert_eq!(ns.a(&name), [address(target)]);
    let start = last_build(&socket);
    assert_eq!(start["cause"], "start");
    let services = u64::from(SERVICES) + 1;
    assert_eq!(build_of(&start).2, services);

    // One endpoint down by override: the next table rebuilds that service alone.
    let body = format!(
        r#"{{"target":{{"zone":"big.test.","service":"s{target}"}},"state":"down","expires_in_seconds":600,"reason":"incremental test"}}"#
    );
    let r = ns.admin_post("/v1/overrides", &body);
    assert!(
        r.status == 200 || r.status == 201,
        "{} {}",
        r.status,
        r.body
    );
    let took = wait_until(
        Duration::from_secs(10),
        "the override reaches the answer",
        || ns.a(&name).is_empty(),
    );
    let health = last_build(&socket);
    assert_eq!(health["cause"], "health", "{health}");
    let (zones_compiled, zones_reused, compiled, reused, seconds) = build_of(&health);
    assert_eq!((zones_compiled, zones_reused), (0, 2), "{health}");
    assert_eq!((compiled, reused), (1, services - 1), "{health}");
    // From the publisher taking the decision to the table serving it.
    assert!(
        seconds < HEALTH_BOUND.as_secs_f64(),
        "health build took {seconds} s (override to answer: {took:?})"
    );
    assert_eq!(ns.a(&format!("s{other}.big.test.")), [address(other)]);

    // A reload that changes the small zone compiles it alone; the large zone is shared, so
    // the override still holds there without rebuilding it.
    std::fs::write(dir.path().join("small.toml"), small(2, "192.0.2.2")).unwrap();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http_request_within(
        ns.api,
        "POST",
        "/v1/reload",
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["table"]["cause"], "reload", "{report}");
    let (zones_compiled, zones_reused, compiled, reused, _) = build_of(&report["table"]);
    assert_eq!((zones_compiled, zones_reused), (1, 1), "{report}");
    assert_eq!((compiled, reused), (1, services - 1), "{report}");
    assert_eq!(ns.a("www.small.test."), [Ipv4Addr::new(192, 0, 2, 2)]);
    assert!(ns.a(&name).is_empty());
    assert_eq!(ns.a(&format!("s{other}.big.test.")), [address(other)]);
}
