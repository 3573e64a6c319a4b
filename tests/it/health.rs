//! Health end to end (issue 4): real nameservers, real `meridian probe` processes and real
//! HTTP/HTTPS/TCP backends on 127.0.0.x, stopped and started by the test.
//!
//! Scenarios: failover and recovery timing on two nameservers with three probers; a
//! partitioned prober; all probers dead (last state, then fail-open after the grace); forged,
//! replayed, garbled, stale, oversize reports; overrides; a flapping backend; the embedded
//! prober; reloads of the nameserver and of a prober that must not forget health, and vote
//! order that follows the prober's sequence, not its clock (issue 10). The zone is `tests/fixtures/health/h.test.toml.in` (see its README). Failover and
//! recovery times are printed as `failover_ms=` / `recovery_ms=` lines.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use meridian::health::report::{KEY_ID_HEADER, MAX_REPORT_BYTES, SIGNATURE_HEADER, sign, unix_ms};

use crate::harness::{Meridian, Transport};
use crate::health_support::{
    BACKENDS, Lab, Process, answer, answer_at, closed_port, endpoint_status, fresh_vote,
    http_request, post_report, post_signed, report, served, status, vote_of, wait_all_up,
    wait_until,
};

/// Check interval of every check in the fixture.
const INTERVAL: Duration = Duration::from_secs(1);
/// `rise` of every check in the fixture.
const RISE: u32 = 2;
/// Issue 4: backend stops -> both nameservers stop returning it, at most this long.
const FAILOVER_TARGET: Duration = Duration::from_secs(3);
/// Issue 4: backend returns -> served again within rise x interval + 1 s.
fn recovery_target() -> Duration {
    INTERVAL * RISE + Duration::from_secs(1)
}
/// Time for fresh probers to vote every endpoint up (rise 2 at 1 s, plus start-up).
const WARM_UP: Duration = Duration::from_secs(10);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The failover services of the fixture: (service, primary backend, primary, secondary).
const SERVICES: &[(&str, &str, &str, &str)] = &[
    ("www", "www_a", "127.0.0.11", "127.0.0.12"),
    ("secure", "secure_a", "127.0.0.21", "127.0.0.22"),
    ("db", "db_a", "127.0.0.31", "127.0.0.32"),
];

/// Polls every service on every nameserver (UDP and TCP in turn) until, for each service,
/// one round sees every nameserver answer `want(service)`; every answer on the way must be a
/// NOERROR with one address of the service. Returns the time from `t0` per service.
fn measure(
    nss: &[&Meridian],
    t0: Instant,
    limit: Duration,
    want: impl Fn(&str) -> Ipv4Addr,
) -> BTreeMap<&'static str, Duration> {
    let mut done: BTreeMap<&'static str, Duration> = BTreeMap::new();
    let mut round = 0u64;
    while done.len() < SERVICES.len() {
        let transport = if round % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        round += 1;
        for (service, _, primary, secondary) in SERVICES {
            let mut all = true;
            for (i, ns) in nss.iter().enumerate() {
                let got = answer(ns, service, transport)
                    .unwrap_or_else(|e| panic!("ns{} during failover: {e}", i + 1));
                assert!(
                    got == [ip(primary)] || got == [ip(secondary)],
                    "ns{}: {service} answered {got:?}",
                    i + 1
                );
                all &= got == [want(service)];
            }
            if all && !done.contains_key(service) {
                done.insert(service, t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < limit,
            "not every service reached its state within {limit:?}: {done:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    done
}

/// Keeps polling for `d`: every nameserver must keep answering `want(service)`.
fn hold(nss: &[&Meridian], d: Duration, want: impl Fn(&str) -> Ipv4Addr) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for (service, ..) in SERVICES {
            for (i, ns) in nss.iter().enumerate() {
                let got = answer(ns, service, Transport::Udp)
                    .unwrap_or_else(|e| panic!("ns{}: {e}", i + 1));
                assert_eq!(got, [want(service)], "ns{}: {service}", i + 1);
            }
        }
        thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn failover_and_recovery_meet_the_targets_on_two_nameservers() {
    let lab = Lab::new();
    let ns1 = lab.nameserver(&[]);
    let ns2 = lab.nameserver(&[]);
    let nss = [&ns1, &ns2];
    let zones = lab.zones();
    let _probers = [
        lab.prober(&zones, "p1", "eu", &nss),
        lab.prober(&zones, "p2", "us", &nss),
        lab.prober(&zones, "p3", "ap", &nss),
    ];
    for ns in nss {
        wait_all_up(ns, &["p1", "p2", "p3"], WARM_UP);
    }
    let primary = |s: &str| ip(SERVICES.iter().find(|x| x.0 == s).unwrap().2);
    let secondary = |s: &str| ip(SERVICES.iter().find(|x| x.0 == s).unwrap().3);
    hold(&nss, Duration::from_millis(200), primary);

    // HTTP, HTTPS and TCP primaries stop at once; each service is timed on its own.
    for (_, backend, ..) in SERVICES {
        lab.backend(backend).stop();
    }
    let t0 = Instant::now();
    let failover = measure(&nss, t0, Duration::from_secs(8), secondary);
    for (service, d) in &failover {
        eprintln!("failover_ms={} service={service}", d.as_millis());
    }
    hold(&nss, Duration::from_millis(500), secondary);
    for (service, d) in &failover {
        assert!(
            *d <= FAILOVER_TARGET,
            "{service}: failover took {d:?}, target {FAILOVER_TARGET:?}"
        );
    }
    // Both nameservers decided the same, and say why.
    let (s1, s2) = (status(&ns1), status(&ns2));
    assert_eq!(s1["health_digest"], s2["health_digest"]);
    assert_eq!(s1["endpoints_down"], 3, "{s1:#}");
    let e = endpoint_status(&s1, "www", "127.0.0.11");
    assert_eq!(e["decided"], "down");
    assert_eq!(e["serving"], false);
    for v in e["votes"].as_array().unwrap() {
        assert_eq!(v["state"], "down", "{v}");
        assert_eq!(v["reason"], "connect refused", "{v}");
    }
    for ns in nss {
        assert_eq!(ns.metric("meridian_health_transitions_total"), 3.0);
    }

    for (_, backend, ..) in SERVICES {
        lab.backend(backend).start();
    }
    let t1 = Instant::now();
    let recovery = measure(&nss, t1, Duration::from_secs(8), primary);
    for (service, d) in &recovery {
        eprintln!("recovery_ms={} service={service}", d.as_millis());
    }
    hold(&nss, Duration::from_millis(500), primary);
    for (service, d) in &recovery {
        assert!(
            *d <= recovery_target(),
            "{service}: recovery took {d:?}, target {:?}",
            recovery_target()
        );
    }
    assert_eq!(status(&ns1)["health_digest"], status(&ns2)["health_digest"]);
}

#[test]
fn a_partitioned_prober_does_not_flip_answers() {
    let lab = Lab::new();
    let ns1 = lab.nameserver(&[]);
    let ns2 = lab.nameserver(&[]);
    let nss = [&ns1, &ns2];
    // p3's view of the network is broken: every check it makes goes to a closed port, so it
    // sees every endpoint down. It is the only prober of its region, so a whole region says
    // down; the other region (p1, p2) says up.
    let closed = closed_port();
    assert!(
        BACKENDS
            .iter()
            .all(|(n, ..)| lab.backend(n).addr().port() != closed)
    );
    let partitioned = lab.write_zones("partitioned", |_| closed);
    let zones = lab.zones();
    // p3 starts first: it reaches `fall` on every endpoint about when p1 and p2 reach `rise`,
    // so for a while region us says down while eu's probers still say unknown.
    let _probers = [
        lab.prober(&partitioned, "p3", "us", &nss),
        lab.prober(&zones, "p1", "eu", &nss),
        lab.prober(&zones, "p2", "eu", &nss),
    ];
    let primary = |s: &str| ip(SERVICES.iter().find(|x| x.0 == s).unwrap().2);
    // Both nameservers hear p3 voting down on everything while p1 and p2 vote up; answers
    // and decisions never move on the way.
    wait_until(WARM_UP, "p3 votes down, p1 and p2 up, everywhere", || {
        nss.iter().all(|ns| {
            for (service, ..) in SERVICES {
                assert_eq!(served(ns, service), primary(service), "{service} flipped");
            }
            let st = status(ns);
            assert_eq!(st["endpoints_down"], 0, "{st:#}");
            BACKENDS.iter().all(|(name, _, addr)| {
                let e = endpoint_status(&st, name.split('_').next().unwrap(), addr);
                fresh_vote(&e, "p1").as_deref() == Some("up")
                    && fresh_vote(&e, "p2").as_deref() == Some("up")
                    && fresh_vote(&e, "p3").as_deref() == Some("down")
            })
        })
    });
    // Longer than a vote stays fresh (3 intervals): nothing moves.
    hold(&nss, Duration::from_secs(4), primary);
    for ns in nss {
        let st = status(ns);
        assert_eq!(st["endpoints_down"], 0, "{st:#}");
        assert_eq!(ns.metric("meridian_health_transitions_total"), 0.0);
        let p3 = st["probers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["prober_id"] == "p3")
            .unwrap_or_else(|| panic!("p3 missing from /v1/status probers: {st:#}"));
        assert_eq!(p3["region"], "us");
    }

    // The quorum still acts when the failure is real: both regions now agree.
    lab.backend("www_a").stop();
    for ns in nss {
        wait_until(
            FAILOVER_TARGET + Duration::from_secs(1),
            "www fails over",
            || served(ns, "www") == ip("127.0.0.12"),
        );
    }
}

#[test]
fn all_probers_dead_keeps_the_last_state_then_fails_open_after_the_grace() {
    let lab = Lab::new();
    let ns = lab.nameserver(&["--health-grace", "2"]);
    let zones = lab.zones();
    let mut probers = [
        lab.prober(&zones, "p1", "eu", &[&ns]),
        lab.prober(&zones, "p2", "us", &[&ns]),
    ];
    wait_all_up(&ns, &["p1", "p2"], WARM_UP);
    lab.backend("www_a").stop();
    wait_until(Duration::from_secs(5), "www fails over", || {
        served(&ns, "www") == ip("127.0.0.12")
    });

    for p in &mut probers {
        p.kill();
    }
    let killed = Instant::now();
    // The last votes stay fresh for 3 intervals after they arrived (the last one came at
    // most ~1.1 s before the kill), then the grace of 2 s runs: until kill + 3.5 s the last
    // known state must hold, the down endpoint out and the up ones in.
    while killed.elapsed() < Duration::from_millis(3500) {
        assert_eq!(
            served(&ns, "www"),
            ip("127.0.0.12"),
            "last known state lost"
        );
        assert_eq!(served(&ns, "secure"), ip("127.0.0.21"));
        assert_eq!(served(&ns, "db"), ip("127.0.0.31"));
        thread::sleep(Duration::from_millis(25));
    }
    // Then fail-open: served again although its backend is still stopped.
    wait_until(Duration::from_secs(4), "fail-open after the grace", || {
        served(&ns, "www") == ip("127.0.0.11")
    });
    eprintln!(
        "fail_open_ms={} after the probers died",
        killed.elapsed().as_millis()
    );
    assert!(!lab.backend("www_a").running());
    let st = status(&ns);
    assert_eq!(st["endpoints_down"], 0, "{st:#}");
    let latest = &st["transitions"][0];
    assert_eq!(latest["endpoint"], "h.test/www/127.0.0.11", "{st:#}");
    assert_eq!(latest["to"], "up");
    assert_eq!(latest["cause"], "grace_expired");
}

#[test]
fn forged_replayed_garbled_stale_and_oversize_reports_change_nothing() {
    let lab = Lab::new();
    let ns = lab.nameserver(&[]);
    let key = lab.key("p1");
    let boot = "boot-of-p1";
    // A real vote first, so that there is a state to protect: p1 (region eu) says all up.
    let up = report("p1", "eu", boot, 10, &[]).to_body().unwrap();
    let r = post_signed(&ns, key, &up);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recorded"], BACKENDS.len());
    let before = status(&ns);
    let generation = before["generation"].clone();
    assert_eq!(served(&ns, "www"), ip("127.0.0.11"));

    // Every bad report votes the primaries down: if any got through, p1 alone (one region)
    // would move every answer to the secondary.
    let down = |seq: u64| report("p1", "eu", boot, seq, &PRIMARIES);
    let body = |r: &meridian::health::report::ProbeReport| r.to_body().unwrap();
    let fresh = body(&down(11));
    let mut stale = down(11);
    stale.sent_at_ms = unix_ms(SystemTime::now()) - 60_000;
    let stale = body(&stale);
    let mut future = down(11);
    future.sent_at_ms = unix_ms(SystemTime::now()) + 60_000;
    let future = body(&future);
    let replayed_seq = body(&down(10));
    let garbled = br#"{"prober_id":"p1","region":"eu","sequence":"#.to_vec();
    let wrong_shape = br#"{"hello":"world"}"#.to_vec();
    let impostor = body(&report("p2", "eu", "boot-of-p2", 11, &PRIMARIES));
    let mut oversize = fresh.clone();
    oversize.resize(MAX_REPORT_BYTES + 1, b' ');
    let other = lab.key("p2");
    let mut huge = fresh.clone();
    huge.resize(3 * MAX_REPORT_BYTES, b' ');

    // (case, key id, signature, body, status, reason label)
    type Case<'a> = (&'a str, &'a str, String, &'a [u8], u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "forged: p2's secret under p1's key id",
            key.id(),
            sign(&fresh, other),
            &fresh,
            401,
            "bad_signature",
        ),
        (
            "forged: signature of another body",
            key.id(),
            sign(&up, key),
            &fresh,
            401,
            "bad_signature",
        ),
        (
            "no signature",
            key.id(),
            String::new(),
            &fresh,
            401,
            "bad_signature",
        ),
        (
            "unknown key id",
            "nobody-k1",
            sign(&fresh, key),
            &fresh,
            401,
            "unknown_key",
        ),
        (
            "replay: the same bytes again",
            key.id(),
            sign(&up, key),
            &up,
            409,
            "replay",
        ),
        (
            "replay: new votes, old sequence",
            key.id(),
            sign(&replayed_seq, key),
            &replayed_seq,
            409,
            "replay",
        ),
        (
            "garbled JSON, validly signed",
            key.id(),
            sign(&garbled, key),
            &garbled,
            400,
            "malformed",
        ),
        (
            "JSON that is no report",
            key.id(),
            sign(&wrong_shape, key),
            &wrong_shape,
            400,
            "malformed",
        ),
        (
            "sent 60 s ago",
            key.id(),
            sign(&stale, key),
            &stale,
            400,
            "stale_time",
        ),
        (
            "sent 60 s from now",
            key.id(),
            sign(&future, key),
            &future,
            400,
            "stale_time",
        ),
        (
            "oversize",
            key.id(),
            sign(&oversize, key),
            &oversize,
            413,
            "oversize",
        ),
        (
            "far oversize",
            key.id(),
            sign(&huge, key),
            &huge,
            413,
            "oversize",
        ),
        (
            "p1's key signing p2's report",
            key.id(),
            sign(&impostor, key),
            &impostor,
            403,
            "prober_mismatch",
        ),
    ];
    let mut want: BTreeMap<&str, f64> = BTreeMap::new();
    for (case, key_id, sig, body, status_code, reason) in &cases {
        let r = post_report(&ns, key_id, sig, body);
        assert_eq!(r.status, *status_code, "{case}: {}", r.body);
        assert_eq!(r.json()["reason"], *reason, "{case}");
        *want.entry(reason).or_default() += 1.0;
    }
    // Compressed bodies (probers gzip big reports): the signature covers the JSON, and
    // inflating stops past the report limit, so a few kilobytes cannot become gigabytes.
    let mut bomb = fresh.clone();
    bomb.resize(MAX_REPORT_BYTES + 1024 * 1024, b' ');
    let gzipped_bomb = gzip(&bomb);
    assert!(gzipped_bomb.len() < 64 * 1024, "{}", gzipped_bomb.len());
    let mut cut = gzip(&fresh);
    cut.truncate(cut.len() / 2);
    // (case, Content-Encoding, signature, body, status, reason label)
    type Encoded<'a> = (&'a str, &'a str, String, Vec<u8>, u16, &'a str);
    let encoded: Vec<Encoded<'_>> = vec![
        (
            "gzip that does not inflate",
            "gzip",
            sign(&fresh, key),
            cut,
            400,
            "malformed",
        ),
        (
            "gzip inflating past the limit",
            "gzip",
            sign(&bomb, key),
            gzipped_bomb,
            413,
            "oversize",
        ),
        (
            "an encoding other than gzip",
            "br",
            sign(&fresh, key),
            fresh.clone(),
            400,
            "malformed",
        ),
        (
            "gzipped, signed over the gzip instead of the JSON",
            "gzip",
            sign(&gzip(&fresh), key),
            gzip(&fresh),
            401,
            "bad_signature",
        ),
    ];
    for (case, encoding, sig, body, status_code, reason) in &encoded {
        let r = post_encoded(&ns, encoding, key.id(), sig, body);
        assert_eq!(r.status, *status_code, "{case}: {}", r.body);
        assert_eq!(r.json()["reason"], *reason, "{case}");
        *want.entry(reason).or_default() += 1.0;
    }
    for (reason, n) in &want {
        let got = ns.metric(&format!(
            "meridian_reports_rejected_total{{reason=\"{reason}\"}}"
        ));
        assert_eq!(got, *n, "rejected {reason}");
    }
    assert_eq!(ns.metric("meridian_reports_accepted_total"), 1.0);

    // Give the decide loop several turns (tick 500 ms) to act on anything that slipped in.
    thread::sleep(Duration::from_millis(1200));
    let after = status(&ns);
    assert_eq!(after["health_digest"], before["health_digest"]);
    assert_eq!(after["generation"], generation, "the table was rebuilt");
    assert_eq!(after["endpoints_down"], 0);
    for t in Transport::ALL {
        assert_eq!(answer(&ns, "www", t).unwrap(), [ip("127.0.0.11")], "{t:?}");
    }
    let v = endpoint_status(&after, "www", "127.0.0.11")["votes"].clone();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v[0]["state"], "up",
        "a rejected report replaced p1's vote: {v}"
    );
    // Overrides need a token this server was not given.
    let r = http_request(ns.api, "GET", "/v1/overrides", &[], b"");
    assert_eq!(r.status, 403, "{}", r.body);

    // The control: the same down votes, properly sent (gzipped, as a big report goes), do
    // move the answer.
    let r = post_encoded(&ns, "gzip", key.id(), &sign(&fresh, key), &gzip(&fresh));
    assert_eq!(r.status, 200, "{}", r.body);
    // One region alone: it may decide once the server is a vote's freshness (3 s) old.
    wait_until(
        Duration::from_secs(4),
        "a valid down report takes effect",
        || served(&ns, "www") == ip("127.0.0.12"),
    );
    assert_eq!(served(&ns, "secure"), ip("127.0.0.22"));
    assert_eq!(served(&ns, "db"), ip("127.0.0.32"));
}

const PRIMARIES: [&str; 3] = ["127.0.0.11", "127.0.0.21", "127.0.0.31"];

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(body).unwrap();
    z.finish().unwrap()
}

/// POSTs a report body sent in `encoding` (`Content-Encoding`).
fn post_encoded(
    ns: &Meridian,
    encoding: &str,
    key_id: &str,
    signature: &str,
    body: &[u8],
) -> crate::harness::HttpResponse {
    http_request(
        ns.api,
        "POST",
        "/v1/reports",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", encoding),
            (KEY_ID_HEADER, key_id),
            (SIGNATURE_HEADER, signature),
        ],
        body,
    )
}

const TOKEN: &str = "health-it-admin-token-0123456789";

fn override_request(
    ns: &Meridian,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> crate::harness::HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http_request(ns.api, method, path, &headers, body.as_bytes())
}

fn override_json(service: &str, address: Option<&str>, state: &str, secs: u64) -> String {
    let mut target = serde_json::json!({"zone": "h.test.", "service": service});
    if let Some(a) = address {
        target["region"] = "a".into();
        target["address"] = a.into();
    }
    serde_json::json!({
        "target": target,
        "state": state,
        "expires_in_seconds": secs,
        "reason": "health it",
    })
    .to_string()
}

#[test]
fn overrides_apply_expire_and_need_the_admin_token() {
    let lab = Lab::new();
    let token_file = lab.dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_arg = token_file.display().to_string();
    let ns = lab.nameserver(&["--admin-token-file", &token_arg]);
    assert_eq!(served(&ns, "www"), ip("127.0.0.11"));

    let down = override_json("www", Some("127.0.0.11"), "down", 60);
    for (token, want) in [(None, 401), (Some("wrong-token-wrong-token-wrong"), 401)] {
        let r = override_request(&ns, "POST", "/v1/overrides", token, &down);
        assert_eq!(r.status, want, "{token:?}: {}", r.body);
        let r = override_request(&ns, "GET", "/v1/overrides", token, "");
        assert_eq!(r.status, want, "{token:?}: {}", r.body);
        let r = override_request(&ns, "DELETE", "/v1/overrides/1", token, "");
        assert_eq!(r.status, want, "{token:?}: {}", r.body);
    }
    for (bad, why) in [
        (
            override_json("www", Some("127.0.0.11"), "down", 0),
            "no expiry",
        ),
        (
            override_json("www", Some("127.0.0.99"), "down", 60),
            "no such endpoint",
        ),
        (override_json("nope", None, "down", 60), "no such service"),
        (
            r#"{"target":{"zone":"h.test.","service":"www"},"state":"down"}"#.into(),
            "missing fields",
        ),
    ] {
        let r = override_request(&ns, "POST", "/v1/overrides", Some(TOKEN), &bad);
        assert_eq!(r.status, 400, "{why}: {}", r.body);
    }
    assert_eq!(
        served(&ns, "www"),
        ip("127.0.0.11"),
        "a refused override applied"
    );

    // down: the answer moves; GET lists it; it survives a reload; DELETE removes it.
    let r = override_request(&ns, "POST", "/v1/overrides", Some(TOKEN), &down);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_u64().unwrap();
    wait_until(Duration::from_secs(2), "down override moves www", || {
        served(&ns, "www") == ip("127.0.0.12")
    });
    let list = override_request(&ns, "GET", "/v1/overrides", Some(TOKEN), "").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["state"], "down");
    assert_eq!(list[0]["reason"], "health it");
    assert_eq!(list[0]["target"]["address"], "127.0.0.11");
    let r = override_request(&ns, "POST", "/v1/reload", Some(TOKEN), "");
    assert_eq!(r.status, 200, "{}", r.body);
    // Without the token, /v1/status gives the count only.
    assert_eq!(status(&ns)["overrides_active"], 1);
    assert_eq!(
        served(&ns, "www"),
        ip("127.0.0.12"),
        "override lost on reload"
    );
    let r = override_request(
        &ns,
        "DELETE",
        &format!("/v1/overrides/{id}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    wait_until(
        Duration::from_secs(2),
        "deleted override stops applying",
        || served(&ns, "www") == ip("127.0.0.11"),
    );
    let r = override_request(
        &ns,
        "DELETE",
        &format!("/v1/overrides/{id}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // drain: weight 0, still healthy; it expires by itself after 2 s.
    let drain = override_json("www", Some("127.0.0.11"), "drain", 2);
    let r = override_request(&ns, "POST", "/v1/overrides", Some(TOKEN), &drain);
    assert_eq!(r.status, 201, "{}", r.body);
    let created = Instant::now();
    wait_until(Duration::from_secs(2), "drain moves www", || {
        served(&ns, "www") == ip("127.0.0.12")
    });
    let e = endpoint_status(&status(&ns), "www", "127.0.0.11");
    assert_eq!(e["effective_weight"], 0, "{e}");
    assert_eq!(e["weight"], 100, "{e}");
    assert_eq!(
        e["serving"], true,
        "a drained endpoint is still healthy: {e}"
    );
    // Expiry is in whole seconds: not before 1 s after creation. Slower than that, the
    // status above may already have been the expired one.
    assert!(
        created.elapsed() < Duration::from_millis(1000),
        "too slow to see the drain"
    );
    let expired = wait_until(Duration::from_secs(4), "drain expires", || {
        served(&ns, "www") == ip("127.0.0.11")
    });
    assert!(
        created.elapsed() >= Duration::from_millis(1000),
        "expired after {expired:?}, before its second was up"
    );
    assert_eq!(status(&ns)["overrides_active"], 0);

    // A whole service down: no endpoint is eligible, so the fallback (fail-open) answers,
    // never an empty answer.
    let all = override_json("db", None, "down", 60);
    let r = override_request(&ns, "POST", "/v1/overrides", Some(TOKEN), &all);
    assert_eq!(r.status, 201, "{}", r.body);
    wait_until(Duration::from_secs(2), "db endpoints all down", || {
        status(&ns)["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["service"] == "db")
            .flat_map(|s| s["regions"].as_array().unwrap())
            .flat_map(|r| r["endpoints"].as_array().unwrap())
            .all(|e| e["serving"] == false)
    });
    for t in Transport::ALL {
        let got = answer(&ns, "db", t).unwrap();
        assert!(!got.is_empty(), "{t:?}");
    }
    assert_eq!(ns.metric("meridian_overrides_active"), 1.0);
}

#[test]
fn a_flapping_backend_does_not_flap_answers_faster_than_rise_and_fall() {
    // One prober: the decided state follows its vote, and its vote can change only after
    // `rise` (or `fall`) consecutive results, each at least 0.9 interval apart. With several
    // regions the quorum adds its own hysteresis; one prober is the strict case.
    let lab = Lab::new();
    let ns = lab.nameserver(&[]);
    let _prober = lab.prober(&lab.zones(), "p1", "eu", &[&ns]);
    wait_all_up(&ns, &["p1"], WARM_UP);

    let window = Duration::from_secs(9);
    let stop = AtomicBool::new(false);
    let toggles = AtomicUsize::new(0);
    let mut changes: Vec<(Duration, Ipv4Addr)> = Vec::new();
    thread::scope(|s| {
        s.spawn(|| {
            let b = lab.backend("www_a");
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(300));
                if b.running() {
                    b.stop();
                } else {
                    b.start();
                }
                toggles.fetch_add(1, Ordering::Relaxed);
            }
            b.start();
        });
        let t0 = Instant::now();
        let mut last = served(&ns, "www");
        while t0.elapsed() < window {
            let now = answer(&ns, "www", Transport::Udp).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(now.len(), 1);
            if now[0] != last {
                changes.push((t0.elapsed(), now[0]));
                last = now[0];
            }
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let toggles = toggles.load(Ordering::Relaxed);
    eprintln!("flapping: backend toggled {toggles} times, answer changed at {changes:?}");
    assert!(toggles >= 25, "the backend toggled only {toggles} times");
    // Two vote changes need at least min(rise, fall) = 2 results, 2 x 0.9 s; allow for the
    // report delivery and the decide loop (up to ~0.3 s).
    let min_gap = Duration::from_millis(1400);
    for pair in changes.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= min_gap, "answers changed {gap:?} apart: {changes:?}");
    }
    let most = (window.as_secs_f64() / 1.8).floor() as usize + 1;
    assert!(
        changes.len() <= most,
        "{} changes in {window:?}",
        changes.len()
    );
    let transitions = ns.metric("meridian_health_transitions_total");
    assert!(
        transitions as usize <= most + 1,
        "{transitions} transitions for {toggles} toggles"
    );
}

#[test]
fn the_embedded_prober_alone_moves_answers() {
    let lab = Lab::new();
    // No --no-local-probe, no keys: `serve` checks the endpoints itself (region `local`).
    let ns = Meridian::serve_dir(&lab.zones(), &[], true);
    wait_all_up(&ns, &["local"], WARM_UP);
    // /health tells how fresh health is: the embedded prober reports every interval (1 s).
    let age = ns.health()["newest_report_age_ms"].as_u64().unwrap();
    assert!(age < 5_000, "newest report {age} ms old");
    assert_eq!(served(&ns, "www"), ip("127.0.0.11"));
    lab.backend("www_a").stop();
    let t0 = Instant::now();
    wait_until(
        Duration::from_secs(4),
        "embedded prober fails www over",
        || served(&ns, "www") == ip("127.0.0.12"),
    );
    eprintln!("embedded failover_ms={}", t0.elapsed().as_millis());
    let e = endpoint_status(&status(&ns), "www", "127.0.0.11");
    assert_eq!(e["votes"][0]["prober_id"], "local");
    assert_eq!(e["votes"][0]["reason"], "connect refused");
    lab.backend("www_a").start();
    let t1 = Instant::now();
    wait_until(
        Duration::from_secs(4),
        "embedded prober brings www back",
        || served(&ns, "www") == ip("127.0.0.11"),
    );
    eprintln!("embedded recovery_ms={}", t1.elapsed().as_millis());
    assert_eq!(served(&ns, "secure"), ip("127.0.0.21"));
    assert_eq!(served(&ns, "db"), ip("127.0.0.31"));
}

#[test]
fn a_restarted_nameserver_does_not_take_a_partitioned_probers_word_for_it() {
    // After a restart the book is empty; whichever report arrives first is all it knows.
    // p3 cannot reach region a (its checks of the `_a` backends go to a closed port) and is
    // started first, so its periodic report tends to be the first in after each restart.
    let lab = Lab::new();
    let closed = closed_port();
    let partitioned = lab.write_zones("region-a-unreachable", |name| {
        if name.ends_with("_a") {
            closed
        } else {
            lab.backend(name).addr().port()
        }
    });
    // Fixed ports: the probers keep publishing to the same URL across restarts.
    let dns: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let args: Vec<String> = [
        "serve",
        "--no-local-probe",
        "--dns-listen",
        &dns.to_string(),
        "--api-listen",
        &api.to_string(),
        "--zones",
        &lab.zones().display().to_string(),
        "--keys",
        &lab.keys().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut ns = Process::meridian("nameserver", &args);
    let url = format!("http://{api}/v1/reports");
    let _probers = [
        lab.prober_to(&partitioned, "p3", "us", std::slice::from_ref(&url)),
        lab.prober_to(&lab.zones(), "p1", "eu", std::slice::from_ref(&url)),
        lab.prober_to(&lab.zones(), "p2", "eu", std::slice::from_ref(&url)),
    ];
    let primary = |s: &str| ip(SERVICES.iter().find(|x| x.0 == s).unwrap().2);
    let check_answers = || {
        for (service, ..) in SERVICES {
            let got = answer_at(dns, service, Transport::Udp).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, [primary(service)], "{service} flipped");
        }
    };
    let status_at = || http_request(api, "GET", "/v1/status", &[], b"").json();
    wait_until(WARM_UP, "p3 votes region a down, p1 and p2 up", || {
        check_answers();
        let st = status_at();
        SERVICES.iter().all(|(service, _, a, b)| {
            let (ea, eb) = (
                endpoint_status(&st, service, a),
                endpoint_status(&st, service, b),
            );
            fresh_vote(&ea, "p3").as_deref() == Some("down")
                && fresh_vote(&eb, "p3").as_deref() == Some("up")
                && ["p1", "p2"]
                    .iter()
                    .all(|p| fresh_vote(&ea, p).as_deref() == Some("up"))
        })
    });
    for round in 0..3 {
        ns.kill();
        drop(ns);
        ns = Process::meridian("nameserver", &args);
        // Every prober has reported within a second; watch for a vote's freshness (3 s).
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            check_answers();
            thread::sleep(Duration::from_millis(20));
        }
        let st = status_at();
        assert_eq!(st["endpoints_down"], 0, "round {round}: {st:#}");
        assert_eq!(st["transitions"], serde_json::json!([]), "round {round}");
        let heard: Vec<_> = st["probers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["prober_id"].clone())
            .collect();
        assert_eq!(heard.len(), 3, "round {round}: {heard:?}");
    }
}

/// The `/v1/status` vote of `prober` on `service`/`address` (panics when there is none).
fn vote(ns: &Meridian, service: &str, address: &str, prober: &str) -> serde_json::Value {
    let e = endpoint_status(&status(ns), service, address);
    vote_of(&e, prober).unwrap_or_else(|| panic!("no {prober} vote on {service}/{address}: {e}"))
}

/// Every transition `/v1/status` lists, for the assertion that none is `grace_expired`.
fn grace_expiries(ns: &Meridian) -> Vec<serde_json::Value> {
    status(ns)["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["cause"] == "grace_expired")
        .cloned()
        .collect()
}

/// Issue 10, item 1: a reload must not forget health. The embedded prober keeps its boot id,
/// sequence and rise/fall state across reloads of unchanged zones, so a dead endpoint stays out
/// of answers however often the nameserver reloads, far beyond the grace period.
#[test]
fn reloads_every_half_second_keep_a_dead_endpoint_out() {
    let lab = Lab::new();
    let ns = Meridian::serve_dir(&lab.zones(), &["--health-grace", "3"], true);
    wait_all_up(&ns, &["local"], WARM_UP);
    lab.backend("www_a").stop();
    wait_until(
        Duration::from_secs(6),
        "embedded prober fails www over",
        || served(&ns, "www") == ip("127.0.0.12"),
    );
    let before = vote(&ns, "www", "127.0.0.11", "local");
    assert_eq!(before["state"], "down", "{before}");
    let reloads = |ns: &Meridian| ns.metric("meridian_reloads_total{result=\"ok\"}");
    let reloads_before = reloads(&ns);

    // Freshness (3 s) + grace (3 s) is when a forgotten vote lets the endpoint back in; reload
    // every 0.5 s for well over that.
    let t0 = Instant::now();
    let mut last_hup: Option<Instant> = None;
    let mut sent = 0u32;
    while t0.elapsed() < Duration::from_secs(10) {
        if last_hup.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            ns.signal("HUP");
            last_hup = Some(Instant::now());
            sent += 1;
        }
        for t in Transport::ALL {
            let got = answer(&ns, "www", t).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                got,
                [ip("127.0.0.12")],
                "{t:?}: the dead endpoint is answered again after {:?} of reloads; {:?}",
                t0.elapsed(),
                grace_expiries(&ns)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    // The reloads really happened (SIGHUPs arriving during a reload may coalesce).
    wait_until(Duration::from_secs(5), "reloads counted", || {
        reloads(&ns) - reloads_before >= f64::from(sent / 2)
    });
    assert_eq!(grace_expiries(&ns), Vec::<serde_json::Value>::new());
    let after = vote(&ns, "www", "127.0.0.11", "local");
    assert_eq!(after["state"], "down", "{after}");
    assert_eq!(after["fresh"], true, "{after}");
    assert!(before["boot_id"].is_string(), "{before}");
    assert_eq!(after["boot_id"], before["boot_id"], "the prober restarted");
    assert!(
        after["sequence"].as_u64() > before["sequence"].as_u64(),
        "{before} -> {after}"
    );
    assert!(
        after["consecutive"].as_u64().unwrap() >= before["consecutive"].as_u64().unwrap() + 5,
        "rise/fall state was reset: {before} -> {after}"
    );
    let e = endpoint_status(&status(&ns), "www", "127.0.0.11");
    assert_eq!(e["decided"], "down", "{e}");
}

/// Replaces the first `timeout = ...` line after `[check.NAME]` in a zone file.
fn set_check_timeout(zone_file: &std::path::Path, check: &str, timeout: &str) {
    let text = std::fs::read_to_string(zone_file).unwrap();
    let start = text.find(&format!("[check.{check}]")).unwrap();
    let at = start + text[start..].find("timeout = ").unwrap();
    let end = at + text[at..].find('\n').unwrap();
    let new = format!("{}timeout = \"{timeout}\"{}", &text[..at], &text[end..]);
    std::fs::write(zone_file, new).unwrap();
}

/// Issue 10, item 1, for `meridian probe`: SIGHUP re-reads the zones; unchanged checks keep
/// their state, boot id and sequence, a changed check starts fresh, and a broken zone
/// directory is logged while the old targets keep being checked.
#[test]
fn sighup_on_a_prober_keeps_its_boot_and_state() {
    let lab = Lab::new();
    let ns = lab.nameserver(&["--health-grace", "3"]);
    // The prober's own copy of the zones, edited below; the nameserver's stays as it is.
    let probe_zones = lab.write_zones("probe-zones", |name| lab.backend(name).addr().port());
    let mut prober = lab.prober(&probe_zones, "p1", "eu", &[&ns]);
    wait_all_up(&ns, &["p1"], WARM_UP);
    lab.backend("www_a").stop();
    wait_until(Duration::from_secs(6), "www fails over", || {
        served(&ns, "www") == ip("127.0.0.12")
    });
    let first = vote(&ns, "www", "127.0.0.11", "p1");
    assert!(first["boot_id"].is_string(), "{first}");
    let boot = first["boot_id"].clone();
    let steady = |prober: &mut Process, what: &str| {
        assert!(prober.alive(), "{what}: the prober exited");
        assert_eq!(served(&ns, "www"), ip("127.0.0.12"), "{what}");
        assert_eq!(served(&ns, "db"), ip("127.0.0.31"), "{what}");
        let v = vote(&ns, "www", "127.0.0.11", "p1");
        assert_eq!(v["boot_id"], boot, "{what}: new boot");
        assert_eq!(v["state"], "down", "{what}: {v}");
        assert_eq!(v["fresh"], true, "{what}: {v}");
        v
    };

    // Unchanged zones, SIGHUP every 0.5 s for longer than freshness + grace.
    let t0 = Instant::now();
    let mut last_hup: Option<Instant> = None;
    while t0.elapsed() < Duration::from_secs(8) {
        if last_hup.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            prober.signal("HUP");
            last_hup = Some(Instant::now());
        }
        steady(&mut prober, "unchanged zones");
        thread::sleep(Duration::from_millis(50));
    }
    let kept = steady(&mut prober, "after the reloads");
    assert!(kept["sequence"].as_u64() > first["sequence"].as_u64());
    assert!(
        kept["consecutive"].as_u64().unwrap() >= first["consecutive"].as_u64().unwrap() + 5,
        "rise/fall state was reset: {first} -> {kept}"
    );
    let db = vote(&ns, "db", "127.0.0.31", "p1");
    let db_streak = db["consecutive"].as_u64().unwrap();
    assert!(db_streak >= 8, "{db}");
    assert_eq!(grace_expiries(&ns), Vec::<serde_json::Value>::new());

    // The db check changes: its targets start fresh, www keeps its state.
    set_check_timeout(&probe_zones.join("h.test.toml"), "db", "400ms");
    prober.signal("HUP");
    wait_until(
        Duration::from_secs(5),
        "the changed db check starts fresh",
        || {
            steady(&mut prober, "db check changed");
            vote(&ns, "db", "127.0.0.31", "p1")["consecutive"]
                .as_u64()
                .unwrap()
                < db_streak
        },
    );
    let www = steady(&mut prober, "db check changed");
    assert!(
        www["consecutive"].as_u64() >= kept["consecutive"].as_u64(),
        "www was restarted: {kept} -> {www}"
    );

    // A broken zone directory: logged, and the old targets keep being checked.
    std::fs::write(probe_zones.join("h.test.toml"), "this is not [ toml").unwrap();
    prober.signal("HUP");
    let seq = steady(&mut prober, "broken zones")["sequence"].as_u64();
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(4) {
        steady(&mut prober, "broken zones");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(steady(&mut prober, "broken zones")["sequence"].as_u64() > seq);
    assert_eq!(grace_expiries(&ns), Vec::<serde_json::Value>::new());
}

/// Issue 10, item 6: votes are ordered by the prober's (boot, sequence) as received, never by
/// its clock. A report 29 s in the future does not shadow the correctly timed ones after it, a
/// clock stepping back keeps being recorded, and a newer boot supersedes an older one.
#[test]
fn vote_order_follows_the_probers_sequence_not_its_clock() {
    let lab = Lab::new();
    let ns = lab.nameserver(&[]);
    let key = lab.key("p1");
    let post = |boot: &str, seq: u64, skew_ms: i64, down: &[&str]| {
        let mut r = report("p1", "eu", boot, seq, down);
        r.sent_at_ms = r.sent_at_ms.checked_add_signed(skew_ms).unwrap();
        let resp = post_signed(&ns, key, &r.to_body().unwrap());
        assert_eq!(
            resp.status, 200,
            "{boot}/{seq} skew {skew_ms}: {}",
            resp.body
        );
        resp.json()
    };
    let recorded = |r: &serde_json::Value, what: &str| {
        assert_eq!(r["accepted"], true, "{what}: {r}");
        assert_eq!(r["recorded"], 6, "{what}: {r}");
        assert_eq!(r["outdated"], 0, "{what}: {r}");
    };

    recorded(&post("boot-1", 1, 29_000, &[]), "29 s ahead");
    let mut seq = 1;
    wait_until(
        Duration::from_secs(6),
        "correctly timed down votes after a report 29 s ahead take www out",
        || {
            seq += 1;
            recorded(&post("boot-1", seq, 0, &["127.0.0.11"]), "on time");
            served(&ns, "www") == ip("127.0.0.12")
        },
    );
    // /v1/status shows the view of the latest decision (at most a decide tick behind).
    wait_until(
        Duration::from_secs(2),
        "the status shows the latest sequence",
        || {
            let v = vote(&ns, "www", "127.0.0.11", "p1");
            (v["state"].as_str(), v["sequence"].as_u64()) == (Some("down"), Some(seq))
        },
    );

    // The prober's clock steps back 29 s: still recorded, the decision follows.
    wait_until(
        Duration::from_secs(6),
        "votes from a clock 29 s behind bring www back",
        || {
            seq += 1;
            recorded(&post("boot-1", seq, -29_000, &[]), "29 s behind");
            served(&ns, "www") == ip("127.0.0.11")
        },
    );
    // And forward again.
    wait_until(
        Duration::from_secs(6),
        "votes from a clock 29 s ahead take www out again",
        || {
            seq += 1;
            recorded(
                &post("boot-1", seq, 29_000, &["127.0.0.11"]),
                "29 s ahead again",
            );
            served(&ns, "www") == ip("127.0.0.12")
        },
    );

    // Replay protection stays: the same sequence again is refused.
    let mut again = report("p1", "eu", "boot-1", seq, &[]);
    again.sent_at_ms -= 1;
    let r = post_signed(&ns, key, &again.to_body().unwrap());
    assert_eq!(r.status, 409, "{}", r.body);

    // A restarted prober (new boot, sequence from 1, clock behind) supersedes the old boot; a
    // delayed report of the old boot arriving afterwards is outdated, whatever its sent_at.
    recorded(&post("boot-2", 1, -20_000, &[]), "new boot");
    let late = post("boot-1", seq + 1, 25_000, &["127.0.0.11"]);
    assert_eq!(
        (late["recorded"].as_u64(), late["outdated"].as_u64()),
        (Some(0), Some(6)),
        "{late}"
    );
    wait_until(
        Duration::from_secs(4),
        "the new boot's up votes count",
        || served(&ns, "www") == ip("127.0.0.11"),
    );
    wait_until(
        Duration::from_secs(2),
        "the status shows boot-2's vote",
        || {
            let v = vote(&ns, "www", "127.0.0.11", "p1");
            v["boot_id"] == "boot-2" && v["state"] == "up"
        },
    );
    hold(&[&ns], Duration::from_millis(1200), |s| {
        ip(SERVICES.iter().find(|x| x.0 == s).unwrap().2)
    });
}

/// A prober of 2,000 endpoints sends reports of over 64 KiB of JSON, so gzipped; the
/// nameserver inflates them and every endpoint gets its vote.
#[test]
fn a_big_probers_gzipped_reports_reach_the_nameserver() {
    let many = crate::health_support::ManyEndpoints::new(20, 100);
    let ns = Meridian::serve_dir(&many.zones, &["--keys", many.keys.to_str().unwrap()], false);
    let _prober = many.prober(&[format!("http://{}/v1/reports", ns.api)], &[]);
    many.wait_last_voted_down(&ns, Duration::from_secs(10));
    assert!(ns.metric("meridian_reports_accepted_total") >= 1.0);
    assert_eq!(ns.metric("meridian_reports_rejected_total"), 0.0);
}
