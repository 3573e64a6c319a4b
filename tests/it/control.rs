//! The control plane as an operator drives it: reloads that never hide a rejected file, the
//! control socket (`meridian ctl`), the config watcher, `check-config` doing what `serve` does,
//! `/health` and draining. Fixtures: `tests/fixtures/control/` (see its README).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Finished, Meridian, fixture, run};

const ZONE_FILE: &str = "x.test.toml";

/// The fixture zone with `www` answering `addr`.
fn zone_with_www(addr: &str) -> String {
    std::fs::read_to_string(fixture("control").join(ZONE_FILE))
        .unwrap()
        .replace("192.0.2.1\"", &format!("{addr}\""))
}

/// A server on a copy of the control fixture with a control socket; returns it and the socket.
fn serve_with_socket(extra: &[&str]) -> (Meridian, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let sock = socket.display().to_string();
    let mut args = vec!["--control-socket", sock.as_str()];
    args.extend_from_slice(extra);
    let ns = Meridian::serve_copy("control", &args);
    (ns, dir, socket)
}

fn ctl(socket: &Path, args: &[&str]) -> Finished {
    let sock = socket.display().to_string();
    let mut all = vec!["ctl", "--socket", sock.as_str(), "--json"];
    all.extend_from_slice(args);
    run(&all)
}

fn json(out: &Finished) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("ctl printed no JSON ({e}): {}{}", out.stdout, out.stderr))
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const WWW: &str = "www.x.test.";

#[test]
fn a_reload_never_hides_a_new_zone_behind_a_broken_one() {
    // Issue 10, item 5: b.toml held x.test. and is now broken; a new a.toml claims x.test.
    // The old b keeps serving, and the reload names both files and the kept zone.
    let (ns, _dir, socket) = serve_with_socket(&[]);
    std::fs::rename(
        ns.zones_dir().join(ZONE_FILE),
        ns.zones_dir().join("b.toml"),
    )
    .unwrap();
    let ok = ctl(&socket, &["reload"]);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 1)]);

    ns.write_zone("a.toml", &zone_with_www("192.0.2.2"));
    ns.write_zone("b.toml", "origin = \"x.test.\"\n[soa\nbroken");
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, Some(1), "a rejected file is a failed reload");
    let report = &json(&out)["result"];
    let errors: Vec<String> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("a.toml") && e.contains("b.toml") && e.contains("x.test")),
        "no error names both files: {errors:?}"
    );
    let kept = report["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{report}");
    assert!(kept[0]["file"].as_str().unwrap().ends_with("b.toml"));
    assert_eq!(kept[0]["origin"], "x.test.");
    assert!(!kept[0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 1)], "the old b serves");
    assert_eq!(
        ns.metric(r#"meridian_zone_kept_previous{zone="x.test."}"#),
        1.0,
        "the kept zone is exported"
    );
    assert!(
        ns.log().contains("zone kept at its previous version"),
        "the kept zone is logged"
    );

    // Fixing b clears the kept state; a still clashes with b (b served x.test first).
    ns.write_zone("b.toml", &zone_with_www("192.0.2.3"));
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 3)]);
    let metrics = ns.get("/metrics").body;
    assert!(
        !metrics.contains("meridian_zone_kept_previous{"),
        "no zone is kept any more:\n{metrics}"
    );
}

#[test]
fn the_control_socket_reloads_reports_status_and_manages_overrides() {
    let (ns, _dir, socket) = serve_with_socket(&[]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is the owner's alone");

    ns.write_zone(ZONE_FILE, &zone_with_www("192.0.2.7"));
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(json(&out)["result"]["ok"], true);
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 7)]);

    let status = json(&ctl(&socket, &["status"]));
    assert_eq!(status["ok"], true);
    assert_eq!(status["result"]["zones"][0]["origin"], "x.test.");
    assert_eq!(status["result"]["ready"], true);
    assert_eq!(status["result"]["last_reload"]["ok"], true);

    let app = "app.x.test.";
    assert_eq!(ns.a(app), [Ipv4Addr::new(192, 0, 2, 10)]);
    let added = ctl(
        &socket,
        &[
            "override",
            "add",
            "--zone",
            "x.test",
            "--service",
            "app",
            "--region",
            "a",
            "--state",
            "down",
            "--reason",
            "maintenance in a",
        ],
    );
    assert_eq!(added.code, Some(0), "{}{}", added.stdout, added.stderr);
    let id = json(&added)["result"]["id"].as_u64().unwrap();
    wait_for(
        Duration::from_secs(5),
        "the override reaches answers",
        || ns.a(app) == [Ipv4Addr::new(192, 0, 2, 20)],
    );
    let list = json(&ctl(&socket, &["override", "list"]));
    assert_eq!(list["result"][0]["reason"], "maintenance in a");

    // A target that names nothing is refused, with the reason.
    let bad = ctl(
        &socket,
        &[
            "override",
            "add",
            "--zone",
            "x.test",
            "--service",
            "nope",
            "--state",
            "down",
            "--reason",
            "typo",
        ],
    );
    assert_eq!(bad.code, Some(1));
    assert!(!json(&bad)["error"].as_str().unwrap().is_empty());

    let removed = ctl(&socket, &["override", "remove", &id.to_string()]);
    assert_eq!(
        removed.code,
        Some(0),
        "{}{}",
        removed.stdout,
        removed.stderr
    );
    wait_for(Duration::from_secs(5), "the override is lifted", || {
        ns.a(app) == [Ipv4Addr::new(192, 0, 2, 10)]
    });
    let again = ctl(&socket, &["override", "remove", &id.to_string()]);
    assert_eq!(again.code, Some(1), "no such override any more");
}

#[test]
fn two_servers_never_share_a_control_socket_and_ctl_says_when_none_answers() {
    let (_ns, dir, socket) = serve_with_socket(&[]);
    let zones = fixture("control").display().to_string();
    let sock = socket.display().to_string();
    let second = run(&[
        "serve",
        "--dns-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
        "--no-local-probe",
        "--no-watch",
        "--zones",
        &zones,
        "--control-socket",
        &sock,
    ]);
    assert_eq!(second.code, Some(2), "{}", second.stderr);
    assert!(
        second.stderr.contains("another meridian") && second.stderr.contains("ctl.sock"),
        "{}",
        second.stderr
    );

    let nobody = ctl(&dir.path().join("absent.sock"), &["status"]);
    assert_eq!(nobody.code, Some(2));
    assert!(nobody.stderr.contains("absent.sock"), "{}", nobody.stderr);
}

#[test]
fn the_watcher_reloads_on_save_and_keeps_the_last_good_version_of_a_half_written_file() {
    let ns = Meridian::serve_copy_watched("control", &[]);
    let failed = r#"meridian_reloads_total{result="failed"}"#;
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 1)]);

    // An editor's save: write a temporary file, rename it over the zone.
    let tmp = ns.zones_dir().join(".x.test.toml.tmp");
    std::fs::write(&tmp, zone_with_www("192.0.2.8")).unwrap();
    std::fs::rename(&tmp, ns.zones_dir().join(ZONE_FILE)).unwrap();
    wait_for(Duration::from_secs(10), "the saved zone serves", || {
        ns.a(WWW) == [Ipv4Addr::new(192, 0, 2, 8)]
    });

    // A half-written file fails validation and the last good version keeps serving.
    let full = zone_with_www("192.0.2.9");
    let failed_before = ns.metric(failed);
    ns.write_zone(ZONE_FILE, &full[..full.len() / 2]);
    wait_for(
        Duration::from_secs(10),
        "the broken save is rejected",
        || ns.metric(failed) > failed_before,
    );
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 8)]);
    // Completing the write reloads again.
    ns.write_zone(ZONE_FILE, &full);
    wait_for(Duration::from_secs(10), "the completed save serves", || {
        ns.a(WWW) == [Ipv4Addr::new(192, 0, 2, 9)]
    });
    assert!(ns.log().contains("configuration changed on disk"));
}

#[test]
fn no_watch_leaves_edits_alone_until_asked() {
    let ns = Meridian::serve_copy("control", &[]);
    let ok = r#"meridian_reloads_total{result="ok"}"#;
    ns.write_zone(ZONE_FILE, &zone_with_www("192.0.2.8"));
    // Bounded negative check: several debounce intervals pass without a reload.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ns.metric(ok), 0.0);
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 1)]);
    ns.signal("HUP");
    wait_for(Duration::from_secs(10), "SIGHUP reloads", || {
        ns.a(WWW) == [Ipv4Addr::new(192, 0, 2, 8)]
    });
}

#[test]
fn check_config_opens_the_geoip_database_as_serve_does() {
    // Issue 10, item 7: check-config accepted what serve then refused.
    let zones = fixture("control").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.mmdb").display().to_string();
    let out = run(&["check-config", "--zones", &zones, "--geoip", &missing]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("missing.mmdb"), "{}", out.stderr);

    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"not a maxmind database").unwrap();
    let garbage = garbage.display().to_string();
    let out = run(&["check-config", "--zones", &zones, "--geoip", &garbage]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("garbage.mmdb"), "{}", out.stderr);

    // The same configuration with the real database passes, and serve starts on it.
    let out = run(&["check-config", "--zones", &zones]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("ok table: 1 zones, 1 services compiled")
    );
    assert!(out.stdout.contains("ok geoip: "));
}

#[test]
fn check_config_checks_the_key_file_too() {
    let zones = fixture("control").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "k1 p1 not-hex\n").unwrap();
    let keys = keys.display().to_string();
    let out = run(&["check-config", "--zones", &zones, "--keys", &keys]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("keys.txt:1"), "{}", out.stderr);
}

#[test]
fn check_config_print_shows_the_compiled_decisions() {
    let zones = fixture("steering").display().to_string();
    let out = run(&["check-config", "--zones", &zones, "--print"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let decisions: String = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("zone "))
        .map(|l| format!("{l}\n"))
        .collect();
    let golden = std::fs::read_to_string(fixture("control").join("print.golden")).unwrap();
    assert_eq!(
        decisions, golden,
        "check-config --print changed; if intended, regenerate print.golden (see the fixture README)"
    );
}

#[test]
fn explain_counts_nowhere_and_shows_the_draw_as_probabilities() {
    // Issue 10, item 8: explain bumped the query and answer counters and showed a second
    // random draw.
    let ns = Meridian::serve("control");
    let zone_queries = r#"meridian_zone_queries_total{zone="x.test."}"#;
    let answers = r#"meridian_service_answers_total{zone="x.test.",service="app"}"#;
    let before = (ns.metric(zone_queries), ns.metric(answers));
    let mut explained = None;
    for _ in 0..5 {
        let r = ns.get("/v1/explain?name=app.x.test&client=192.0.2.99");
        assert_eq!(r.status, 200, "{}", r.body);
        explained = Some(r.json());
    }
    assert_eq!(
        (ns.metric(zone_queries), ns.metric(answers)),
        before,
        "explain moved the query counters"
    );
    let x = explained.unwrap();
    assert_eq!(x["answer"].as_array().unwrap().len(), 1, "{x}");
    let regions = x["service"]["regions"].as_array().unwrap();
    let p = |region: usize| {
        regions[region]["endpoints"][0]["probability"]
            .as_f64()
            .unwrap()
    };
    assert_eq!((p(0), p(1)), (1.0, 0.0), "{x}");

    // A real query still counts.
    ns.a("app.x.test.");
    assert_eq!(ns.metric(zone_queries), before.0 + 1.0);
}
