//! The operator's kit against the code it describes: the Prometheus alert rules and the
//! Grafana dashboard in `contrib/` may only name metrics a live server exports (so a renamed
//! metric fails here, not in someone's alerting), promtool accepts the rules, their unit tests
//! and a live scrape; the man pages and completions come from the CLI; and the Debian package
//! installs in a fresh container, starts as its systemd unit says, and answers.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Meridian, run, system, wait_until};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `meridian_*` metric name in `text`, with the sample suffixes of histograms
/// (`_bucket`, `_sum`, `_count`) folded into the family name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("meridian_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if before_ok {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_string());
        }
        i = end;
    }
    names
}

/// A server whose one checked endpoint is up (a TCP check against a listener of this test),
/// so that the health metrics (endpoint state, probe votes) are in its scrape too, and whose
/// second zone file broke after it started (so the reload metrics are too).
fn server_with_health() -> (Meridian, TcpListener, tempfile::TempDir) {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let zones = tempfile::tempdir().unwrap();
    let zone = format!(
        r#"origin = "kit.test."
ttl = 300
ns = ["ns1.kit.test."]
[soa]
mname = "ns1.kit.test."
rname = "hostmaster.kit.test."
serial = 1
[[record]]
name = "ns1"
type = "A"
data = ["192.0.2.53"]
[region.eu]
location = [50.11, 8.68]
countries = ["GB"]
[check.tcp]
type = "tcp"
port = {port}
interval = "1s"
timeout = "500ms"
rise = 1
fall = 1
[service.www]
policy = "geo"
check = "tcp"
ttl = 5
[service.www.geo]
default = ["eu"]
[[service.www.endpoint]]
region = "eu"
address = "192.0.2.10"
probe_address = "127.0.0.1"
"#
    );
    std::fs::write(zones.path().join("kit.test.toml"), zone).unwrap();
    let other = zones.path().join("other.test.toml");
    std::fs::write(
        &other,
        "origin = \"other.test.\"\nns = [\"ns1.kit.test.\"]\n[soa]\nmname = \"ns1.kit.test.\"\n\
         rname = \"hostmaster.kit.test.\"\nserial = 1\n",
    )
    .unwrap();
    let ns = Meridian::serve_dir(zones.path(), &[], true);
    std::fs::write(&other, "origin = \"other.test.\"\nthis is not TOML\n").unwrap();
    ns.signal("HUP");
    wait_until(Duration::from_secs(10), "the failed reload", || {
        ns.metric("meridian_reloads_total{result=\"failed\"}") >= 1.0
    });
    (ns, backend, zones)
}

#[test]
#[ignore = "system test: needs promtool (Debian prometheus); run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn alert_rules_and_dashboard_name_only_metrics_a_live_server_exports() {
    system::require_tool("promtool", "prometheus");
    let rules = repo("contrib/prometheus/meridian-rules.yml");
    let tests = repo("contrib/prometheus/meridian-rules.test.yml");
    for args in [["check", "rules"], ["test", "rules"]] {
        let file = if args[0] == "check" { &rules } else { &tests };
        let out = Command::new("promtool")
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {} {}:\n{}{}",
            args.join(" "),
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (ns, _backend, _zones) = server_with_health();
    // A query, so the query counters have samples; then the prober's first vote.
    ns.a("www.kit.test.");
    wait_until(
        Duration::from_secs(10),
        "the local prober's first vote",
        || {
            ns.get("/metrics")
                .body
                .contains("meridian_probe_vote_age_seconds{")
        },
    );
    let scrape = ns.get("/metrics").body;

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics on a live scrape:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let exported = metric_names(&scrape);
    for file in [rules, repo("contrib/grafana/meridian-dashboard.json")] {
        let text = std::fs::read_to_string(&file).unwrap();
        let named = metric_names(&text);
        assert!(!named.is_empty(), "{} names no metric", file.display());
        let missing: Vec<_> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{} names metrics the server does not export: {missing:?}",
            file.display()
        );
    }
}

#[test]
fn metric_names_folds_histogram_samples_and_ignores_longer_words() {
    let names = metric_names(
        "rate(meridian_answer_latency_seconds_bucket[5m]) x_meridian_not meridian_up{a=\"b\"}",
    );
    let want: BTreeSet<String> = ["meridian_answer_latency_seconds", "meridian_up"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}

#[test]
fn version_names_the_commit_and_completions_know_the_subcommands() {
    let version = run(&["--version"]);
    assert_eq!(version.code, Some(0), "{}", version.stderr);
    let line = version.stdout.trim();
    let want = format!("meridian {} (", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want) && line.ends_with(')'), "{line:?}");
    assert!(!line.contains("()"), "an empty commit: {line:?}");

    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        // fish spells long flags `-l dns-listen`.
        for word in ["serve", "check-config", "dns-listen", "zones"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2), "an unknown shell is a usage error");
}

/// The package end to end: `contrib/deb/test.sh` builds it with cargo-deb from this test's
/// binary, checks its contents and unit (`systemd-analyze verify`), installs it with `dpkg -i`
/// in a container made from the locally built base image, starts `meridian` as the unit does
/// (its user, runtime directory and ExecStart line) and queries it from the host.
#[test]
#[ignore = "system test: needs Docker, cargo-deb, systemd-analyze and dig; run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn debian_package_installs_starts_as_its_unit_says_and_answers() {
    system::require_docker();
    system::require_tool("cargo-deb", "cargo-deb (cargo install cargo-deb)");
    system::require_tool("systemd-analyze", "systemd");
    system::require_tool("dig", "bind9-dnsutils");
    let started = Instant::now();
    let output = Command::new("timeout")
        .arg("900")
        .arg("bash")
        .arg(repo("contrib/deb/test.sh"))
        .env("MERIDIAN_BIN", env!("CARGO_BIN_EXE_meridian"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    eprintln!(
        "contrib/deb/test.sh took {:?}\n{}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "contrib/deb/test.sh failed: {:?}",
        output.status
    );
}

/// The OpenAPI document a server serves is the one in the repository, and every operation it
/// describes exists on a live server: no 404 for its path, no 405 for its method (the
/// unit test in src/api/openapi.rs matches it with the router's source).
#[test]
fn the_openapi_document_is_served_and_every_operation_it_names_exists() {
    let ns = Meridian::serve("core/basic");
    let served = ns.get("/v1/openapi.json");
    assert_eq!(served.status, 200);
    let file = std::fs::read_to_string(repo("src/api/openapi.json")).unwrap();
    assert_eq!(
        served.body, file,
        "the binary serves another document than the file"
    );
    let doc = served.json();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "999999");
        for method in item.as_object().unwrap().keys() {
            let r = crate::harness::http_request(
                ns.api,
                &method.to_uppercase(),
                &concrete,
                &[("Content-Type", "application/json")],
                b"{}",
            );
            assert!(
                r.status != 404 || path.contains('{'),
                "{method} {path}: 404, the route does not exist"
            );
            assert_ne!(r.status, 405, "{method} {path}: method not allowed");
            operations += 1;
        }
    }
    assert!(operations >= 10, "only {operations} operations described");
}
