//! The control plane as an operator drives it: reloads that never hide a rejected file, the
//! control socket (`meridian ctl`), the config watcher, `check-config` doing what `serve` does,
//! `/health` and draining. Fixtures: `tests/fixtures/control/` (see its README).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Finished, Meridian, fixture, run, run_serve, wait_until};

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
    wait_until(
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
    wait_until(Duration::from_secs(5), "the override is lifted", || {
        ns.a(app) == [Ipv4Addr::new(192, 0, 2, 10)]
    });
    let again = ctl(&socket, &["override", "remove", &id.to_string()]);
    assert_eq!(again.code, Some(1), "no such override any more");
}

#[test]
fn two_servers_never_share_a_control_socket_and_ctl_says_when_none_answers() {
    let (_ns, dir, socket) = serve_with_socket(&[]);
    let sock = socket.display().to_string();
    let second = run_serve(&fixture("control"), &["--control-socket", &sock]);
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
    wait_until(Duration::from_secs(10), "the saved zone serves", || {
        ns.a(WWW) == [Ipv4Addr::new(192, 0, 2, 8)]
    });

    // A half-written file fails validation and the last good version keeps serving.
    let full = zone_with_www("192.0.2.9");
    let failed_before = ns.metric(failed);
    ns.write_zone(ZONE_FILE, &full[..full.len() / 2]);
    wait_until(
        Duration::from_secs(10),
        "the broken save is rejected",
        || ns.metric(failed) > failed_before,
    );
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 8)]);
    // Completing the write reloads again.
    ns.write_zone(ZONE_FILE, &full);
    wait_until(Duration::from_secs(10), "the completed save serves", || {
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
    wait_until(Duration::from_secs(10), "SIGHUP reloads", || {
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

/// A zone whose `big` TXT RRset is about 30 KB, so that a few hundred pipelined answers fill
/// the socket buffers of a client that does not read: work in flight that a drain must finish.
fn big_answer_zone() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // `records_file` is a top-level key: it must come before the first table.
    let toml = std::fs::read_to_string(fixture("control").join(ZONE_FILE))
        .unwrap()
        .replacen("ns = [", "records_file = \"big.zone\"\nns = [", 1);
    std::fs::write(dir.path().join(ZONE_FILE), toml).unwrap();
    let mut master = String::new();
    for i in 0..60 {
        let chunk = format!("{i:03}").repeat(80);
        master.push_str(&format!("big 60 IN TXT \"{chunk}\" \"{chunk}\"\n"));
    }
    std::fs::write(dir.path().join("big.zone"), master).unwrap();
    dir
}

/// Sends `n` pipelined TXT queries for the big RRset on a new connection and reads nothing.
fn pipeline_big_queries(ns: &Meridian, n: u16) -> std::net::TcpStream {
    use std::io::Write;
    // A small, fixed receive buffer (no autotuning): the answers cannot all be absorbed by
    // the kernel, so the server really blocks on this client.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .connect_timeout(&ns.dns.into(), Duration::from_secs(3))
        .unwrap();
    let mut s: std::net::TcpStream = socket.into();
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut bytes = Vec::new();
    for id in 0..n {
        let q =
            crate::harness::Query::new("big.x.test.", hickory_proto::rr::RecordType::TXT).id(id);
        bytes.extend_from_slice(&crate::harness::frame(&q.to_bytes()));
    }
    s.write_all(&bytes).unwrap();
    s
}

#[test]
fn sigterm_drains_tcp_and_api_work_in_flight_answers_503_and_exits_0() {
    // Issue 10, item 7: SIGTERM ended the process without draining, and /health always said ok.
    let zones = big_answer_zone();
    let mut ns = Meridian::serve_dir(zones.path(), &["--drain-timeout", "20"], false);
    let ready = ns.get("/health");
    assert_eq!(ready.status, 200);
    let ready = ready.json();
    assert_eq!(
        (ready["status"].as_str(), ready["zone_count"].as_u64()),
        (Some("ok"), Some(1))
    );
    assert!(
        ready["newest_report_age_ms"].is_null(),
        "no prober has reported: {ready}"
    );
    let mut busy = pipeline_big_queries(&ns, 600);
    // Let the server fill the buffers and block on the client that does not read.
    std::thread::sleep(Duration::from_millis(500));

    ns.signal("TERM");
    // The signal is delivered asynchronously: poll, bounded.
    let mut health = ns.get("/health");
    wait_until(Duration::from_secs(5), "/health turns 503", || {
        health = ns.get("/health");
        health.status == 503
    });
    let body = health.json();
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["reason"].as_str().unwrap().contains("draining"),
        "{body}"
    );
    // New TCP connections are refused while draining; UDP still answers until the exit.
    wait_until(Duration::from_secs(5), "the TCP listener closes", || {
        std::net::TcpStream::connect_timeout(&ns.dns, Duration::from_millis(500)).is_err()
    });
    assert_eq!(ns.a(WWW), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(
        ns.wait_exit(Duration::from_millis(300)).is_none(),
        "exited with work in flight"
    );

    // The client reads now: every answer it gets is whole, in order, then the server closes.
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answered = 0u16;
    while let Some(raw) = crate::harness::read_frame(&mut busy) {
        let reply = hickory_proto::op::Message::from_vec(&raw).unwrap();
        assert_eq!(reply.metadata.id, answered, "answers come in order");
        assert_eq!(reply.answers.len(), 60, "a whole RRset");
        answered += 1;
    }
    assert!(answered > 0, "the query in flight was answered");
    let status = ns
        .wait_exit(Duration::from_secs(15))
        .expect("the server exits once drained");
    assert_eq!(status.code(), Some(0), "{}", ns.log());
    assert!(ns.log().contains("drained; shutting down"), "{}", ns.log());
}

#[test]
fn the_drain_is_bounded_by_drain_timeout() {
    let zones = big_answer_zone();
    let mut ns = Meridian::serve_dir(zones.path(), &["--drain-timeout", "2"], false);
    let _stuck = pipeline_big_queries(&ns, 600);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    ns.signal("TERM");
    let status = ns
        .wait_exit(Duration::from_secs(10))
        .expect("the drain timeout ends the wait");
    assert_eq!(status.code(), Some(0), "{}", ns.log());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "exited after {took:?}"
    );
    assert!(ns.log().contains("drain timeout reached"), "{}", ns.log());
}

#[test]
fn an_api_request_in_flight_at_sigterm_is_answered_before_the_exit() {
    use std::io::{Read, Write};
    let mut ns = Meridian::serve_with("control", &["--drain-timeout", "10"]);
    let mut s = std::net::TcpStream::connect_timeout(&ns.api, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = [b'x'; 100];
    write!(
        s,
        "POST /v1/reports HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        ns.api,
        body.len()
    )
    .unwrap();
    s.write_all(&body[..50]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ns.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ns.wait_exit(Duration::from_millis(10)).is_none(),
        "exited with a request in flight"
    );
    s.write_all(&body[50..]).unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 "), "no answer: {response:?}");
    let status = ns
        .wait_exit(Duration::from_secs(10))
        .expect("exits once drained");
    assert_eq!(status.code(), Some(0), "{}", ns.log());
}

#[test]
fn the_watcher_follows_records_files_the_geoip_database_and_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let geoip = dir.path().join("geo.txt");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/meridian-sample.txt"),
        &geoip,
    )
    .unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "k1 p1 00112233445566778899aabbccddeeff\n").unwrap();
    let (geoip_arg, keys_arg) = (geoip.display().to_string(), keys.display().to_string());
    let ns = Meridian::serve_copy_watched("control", &["--geoip", &geoip_arg, "--keys", &keys_arg]);
    let ok = r#"meridian_reloads_total{result="ok"}"#;
    let txt = |ns: &Meridian| -> Vec<String> {
        ns.query_udp("note.x.test.", hickory_proto::rr::RecordType::TXT)
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    };

    // A records file is watched once a zone names it.
    std::fs::write(
        ns.zones_dir().join("extra.zone"),
        "note 60 IN TXT \"one\"\n",
    )
    .unwrap();
    let with_records = std::fs::read_to_string(ns.zones_dir().join(ZONE_FILE))
        .unwrap()
        .replacen("ns = [", "records_file = \"extra.zone\"\nns = [", 1);
    ns.write_zone(ZONE_FILE, &with_records);
    wait_until(
        Duration::from_secs(10),
        "the zone naming the records file serves",
        || txt(&ns).iter().any(|t| t.contains("one")),
    );
    std::fs::write(
        ns.zones_dir().join("extra.zone"),
        "note 60 IN TXT \"two\"\n",
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "a change to the records file alone reloads",
        || txt(&ns).iter().any(|t| t.contains("two")),
    );

    // The GeoIP database and the key file, each on its own.
    for file in [&geoip, &keys] {
        let before = ns.metric(ok);
        let text = std::fs::read_to_string(file).unwrap();
        std::fs::write(file, text + "\n").unwrap();
        wait_until(Duration::from_secs(10), "a change reloads", || {
            ns.metric(ok) > before
        });
    }
    // A broken key file is reported and the previous keys are kept.
    let failed = r#"meridian_reloads_total{result="failed"}"#;
    let before = ns.metric(failed);
    std::fs::write(&keys, "not a key line\n").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the broken key file is rejected",
        || ns.metric(failed) > before,
    );
    assert!(ns.log().contains("previous keys kept"), "{}", ns.log());
}
