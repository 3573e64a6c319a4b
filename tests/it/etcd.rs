//! Distributed mode (issue 15): a real etcd (Debian's `etcd-server`), real `meridian serve`,
//! `probe` and `config push`/`pull` processes, all on loopback.
//!
//! System tests: they need the `etcd` and `etcdctl` binaries, so they are `#[ignore]`d in a
//! plain `cargo test` and run under `.ci/run` (`--include-ignored`), where a missing etcd
//! fails them (`harness::system`). One, an etcd that never answers, needs no etcd and always
//! runs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::etcd::Etcd;
use crate::harness::{Finished, Meridian, Process, run, run_serve, wait_until};
use crate::health_support::{Lab, endpoint_status, fresh_vote, served, status, wait_all_up};

/// Push to answer, on loopback: the target is under a second.
const PROPAGATION: Duration = Duration::from_secs(2);
/// Enough for anything that waits on etcd reconnecting (backoff caps at 5 s).
const RECONNECT: Duration = Duration::from_secs(15);

/// `--zones` of a nameserver in distributed mode: never read (the zones come from etcd).
const NOT_READ: &str = "/nonexistent/zones-come-from-etcd";

fn zone_text(address: &str) -> String {
    format!(
        "origin = \"e.test.\"\nns = [\"ns1.e.test.\"]\n[soa]\nmname = \"ns1.e.test.\"\n\
         rname = \"admin.e.test.\"\nserial = 1\n\n[[record]]\nname = \"ns1\"\ntype = \"A\"\n\
         data = [\"192.0.2.53\"]\n\n[[record]]\nname = \"www\"\ntype = \"A\"\n\
         data = [\"{address}\"]\n"
    )
}

/// A zone directory serving `www.e.test.` at `address`.
fn zones(address: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.test.toml"), zone_text(address)).unwrap();
    dir
}

fn push(etcd: &Etcd, dir: &Path, extra: &[&str]) -> Finished {
    let dir = dir.display().to_string();
    let mut args = vec!["config", "push", "--zones", &dir, "--etcd", &etcd.url];
    args.extend_from_slice(extra);
    run(&args)
}

fn push_ok(etcd: &Etcd, dir: &Path) -> i64 {
    let out = push(etcd, dir, &[]);
    assert_eq!(out.code, Some(0), "push failed: {out:?}");
    revision_in(&out.stdout)
}

/// The revision a push or pull printed (`... revision N)` or `at revision N`).
fn revision_in(text: &str) -> i64 {
    let tail = text.rsplit("revision ").next().unwrap_or_default();
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no revision in {text:?}"))
}

fn nameserver(etcd: &Etcd, extra: &[&str]) -> Meridian {
    let mut args = vec!["--etcd", etcd.url.as_str()];
    args.extend_from_slice(extra);
    Meridian::serve_dir(Path::new(NOT_READ), &args, false)
}

fn etcd_status(ns: &Meridian) -> serde_json::Value {
    let r = ns.get("/v1/status");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["etcd"].clone()
}

fn www(ns: &Meridian) -> Vec<Ipv4Addr> {
    ns.a("www.e.test.")
}

fn ip(s: &str) -> Vec<Ipv4Addr> {
    vec![s.parse().unwrap()]
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_push_reaches_every_nameserver_which_show_the_revision() {
    let etcd = Etcd::start();
    let v1 = zones("192.0.2.1");
    let first = push(&etcd, v1.path(), &[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert!(first.stdout.contains("+ e.test.toml"), "{}", first.stdout);
    let r1 = revision_in(&first.stdout);
    let nss = [nameserver(&etcd, &[]), nameserver(&etcd, &[])];
    for ns in &nss {
        assert_eq!(www(ns), ip("192.0.2.1"));
        let st = etcd_status(ns);
        assert_eq!(st["config_revision"], r1, "{st}");
        assert_eq!(st["connected"], true, "{st}");
        assert_eq!(ns.metric("meridian_config_revision"), r1 as f64);
        assert_eq!(ns.metric("meridian_etcd_connected"), 1.0);
    }
    // The same directory again: nothing to write.
    let again = push(&etcd, v1.path(), &[]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );

    // Pushes of the example zone (the target: under 1 s from push to answer) reach
    // both nameservers: time from starting `config push` (validation included) to the new
    // answer on each.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zones/example.toml"))
            .unwrap();
    let mail = "data = [\"192.0.2.25\"]";
    assert!(
        example.contains(mail),
        "zones/example.toml changed: update this test"
    );
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut revision = r1;
    for i in 0..20u8 {
        let address = format!("192.0.2.{}", 130 + i);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e.test.toml"), zone_text("192.0.2.1")).unwrap();
        std::fs::write(
            dir.path().join("example.toml"),
            example.replace(mail, &format!("data = [\"{address}\"]")),
        )
        .unwrap();
        let started = Instant::now();
        let r = push_ok(&etcd, dir.path());
        assert!(r > revision, "revision {r} after {revision}");
        revision = r;
        for (ns, times) in nss.iter().zip(&mut times) {
            wait_until(PROPAGATION, "the pushed answer", || {
                ns.a("mail.gslb.example.test.") == ip(&address)
            });
            times.push(started.elapsed());
        }
        for ns in &nss {
            wait_until(PROPAGATION, "the pushed revision reported", || {
                etcd_status(ns)["config_revision"] == r
                    && ns.metric("meridian_config_revision") == r as f64
            });
        }
    }
    for (i, times) in times.iter_mut().enumerate() {
        times.sort();
        let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
        eprintln!(
            "push to answer, ns{}, 20 pushes of the example zone: median {median:?}, worst {worst:?} (from starting `config push`, validation included)",
            i + 1
        );
        assert!(median < Duration::from_secs(1), "median {median:?}");
    }

    // Pull gives back exactly what was pushed last.
    let out = tempfile::tempdir().unwrap();
    let pulled_dir = out.path().join("pulled");
    let pull = run(&[
        "config",
        "pull",
        "--out",
        &pulled_dir.display().to_string(),
        "--etcd",
        &etcd.url,
    ]);
    assert_eq!(pull.code, Some(0), "{pull:?}");
    assert_eq!(revision_in(&pull.stdout), revision);
    assert_eq!(
        std::fs::read_to_string(pulled_dir.join("e.test.toml")).unwrap(),
        zone_text("192.0.2.1")
    );
    assert_eq!(
        std::fs::read_to_string(pulled_dir.join("example.toml")).unwrap(),
        example.replace(mail, "data = [\"192.0.2.149\"]")
    );
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn an_invalid_zone_is_never_pushed() {
    let etcd = Etcd::start();
    let dir = zones("192.0.2.1");
    std::fs::write(
        dir.path().join("bad.toml"),
        zone_text("not-an-address").replace("e.test.", "bad.test."),
    )
    .unwrap();
    let out = push(&etcd, dir.path(), &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("bad.toml") && out.stderr.contains("nothing was written"),
        "{}",
        out.stderr
    );
    assert_eq!(
        etcd.ctl(&["get", "--prefix", "--keys-only", "/meridian/"])
            .trim(),
        ""
    );
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn of_two_pushes_from_one_revision_one_wins_and_the_other_writes_nothing() {
    let etcd = Etcd::start();
    let base = push_ok(&etcd, zones("192.0.2.1").path());
    // Two operators reviewed revision `base` and push at once.
    let (b, c) = (zones("192.0.2.2"), zones("192.0.2.3"));
    std::fs::write(
        b.path().join("extra.toml"),
        zone_text("192.0.2.9").replace("e.test.", "x.test."),
    )
    .unwrap();
    let rev = base.to_string();
    let (pb, pc) = (b.path().to_path_buf(), c.path().to_path_buf());
    let outs: Vec<Finished> = thread::scope(|s| {
        let runs = [pb, pc].map(|dir| {
            let (etcd, rev) = (&etcd, &rev);
            s.spawn(move || push(etcd, &dir, &["--if-revision", rev]))
        });
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins: Vec<usize> = (0..2).filter(|i| outs[*i].code == Some(0)).collect();
    assert_eq!(wins.len(), 1, "exactly one push wins: {outs:?}");
    let loser = &outs[1 - wins[0]];
    assert_eq!(loser.code, Some(1), "{loser:?}");
    assert!(loser.stderr.contains("conflict"), "{}", loser.stderr);
    // All of the winner's files, none of the loser's.
    let stored = etcd.get("/meridian/config/zones/e.test.toml").unwrap();
    let extra = etcd.get("/meridian/config/zones/extra.toml");
    if wins[0] == 0 {
        assert_eq!(stored, zone_text("192.0.2.2").trim_end());
        assert!(extra.is_some());
    } else {
        assert_eq!(stored, zone_text("192.0.2.3").trim_end());
        assert!(extra.is_none());
    }

    // Without --if-revision, racing pushes each land whole or are refused whole.
    for round in 0..4u8 {
        let dirs = [
            zones(&format!("198.51.100.{round}")),
            zones(&format!("203.0.113.{round}")),
        ];
        std::fs::write(
            dirs[0].path().join("only-a.toml"),
            zone_text("192.0.2.7").replace("e.test.", "a.test."),
        )
        .unwrap();
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let outs: Vec<Finished> = thread::scope(|s| {
            let runs: Vec<_> = paths
                .iter()
                .map(|dir| {
                    let etcd = &etcd;
                    s.spawn(move || push(etcd, dir, &[]))
                })
                .collect();
            runs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in &outs {
            assert!(
                o.code == Some(0) || (o.code == Some(1) && o.stderr.contains("conflict")),
                "{o:?}"
            );
        }
        assert!(outs.iter().any(|o| o.code == Some(0)), "{outs:?}");
        let stored = etcd.get("/meridian/config/zones/e.test.toml").unwrap();
        let only_a = etcd.get("/meridian/config/zones/only-a.toml").is_some();
        let a = zone_text(&format!("198.51.100.{round}"));
        let b = zone_text(&format!("203.0.113.{round}"));
        assert!(
            (stored == a.trim_end() && only_a) || (stored == b.trim_end() && !only_a),
            "a half-written push: {stored:?}, only-a present: {only_a}"
        );
    }
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_broken_zone_written_into_etcd_keeps_its_last_good_version() {
    let etcd = Etcd::start();
    let good = push_ok(&etcd, zones("192.0.2.1").path());
    let ns = nameserver(&etcd, &[]);
    assert_eq!(www(&ns), ip("192.0.2.1"));
    // Written by something else, past `config push` and its validation.
    etcd.put(
        "/meridian/config/zones/e.test.toml",
        &zone_text("192.0.2.99").replace(
            "type = \"A\"\ndata = [\"192.0.2.99\"]",
            "type = \"A\"\ndata = [\"not-an-ip\"]",
        ),
    );
    let kept = "meridian_zone_kept_previous{zone=\"e.test.\"";
    wait_until(PROPAGATION, "the broken zone reported as kept", || {
        ns.get("/metrics").body.contains(kept)
    });
    assert!(ns.metric("meridian_reloads_total{result=\"failed\"}") >= 1.0);
    assert_eq!(www(&ns), ip("192.0.2.1"), "the last good version serves");
    assert!(ns.metric("meridian_config_revision") > good as f64);
    let log = ns.log();
    assert!(log.contains("zone kept at its previous version"), "{log}");
    // A good version replaces it.
    push_ok(&etcd, zones("192.0.2.2").path());
    wait_until(PROPAGATION, "the fixed zone serves", || {
        www(&ns) == ip("192.0.2.2")
    });
    assert!(!ns.get("/metrics").body.contains(kept));
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn with_etcd_down_the_nameserver_keeps_answering_and_says_so_then_resumes() {
    let mut etcd = Etcd::start();
    let r1 = push_ok(&etcd, zones("192.0.2.1").path());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock").display().to_string();
    let ns = nameserver(&etcd, &["--control-socket", &socket]);
    // `ctl status` has a line for people: the revision and etcd's state, since when.
    let ctl_status = || {
        let out = run(&["ctl", "--socket", &socket, "status"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        out.stdout
    };
    let reachable =
        format!("\"summary\": \"serving configuration revision {r1}; etcd reachable since 20");
    let text = ctl_status();
    assert!(text.contains(&reachable), "{text}");
    etcd.kill();
    wait_until(RECONNECT, "etcd reported down", || {
        etcd_status(&ns)["connected"] == false
    });
    let unreachable =
        format!("\"summary\": \"serving configuration revision {r1}; etcd unreachable since 20");
    let text = ctl_status();
    assert!(text.contains(&unreachable), "{text}");
    assert_eq!(ns.metric("meridian_etcd_connected"), 0.0);
    assert!(ns.metric("meridian_etcd_disconnects_total") >= 1.0);
    let st = etcd_status(&ns);
    assert!(
        st["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{st}"
    );
    assert_eq!(st["config_revision"], r1);
    for _ in 0..20 {
        assert_eq!(www(&ns), ip("192.0.2.1"));
        thread::sleep(Duration::from_millis(50));
    }
    // Still in service for load balancers: /health answers 200.
    ns.health();

    etcd.restart();
    wait_until(RECONNECT, "etcd reported back", || {
        etcd_status(&ns)["connected"] == true
    });
    assert_eq!(ns.metric("meridian_etcd_connected"), 1.0);
    push_ok(&etcd, zones("192.0.2.2").path());
    wait_until(PROPAGATION, "a push after the outage", || {
        www(&ns) == ip("192.0.2.2")
    });
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_restart_during_an_etcd_outage_serves_the_revision_saved_in_the_state_dir() {
    let mut etcd = Etcd::start();
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    push_ok(&etcd, zones("192.0.2.1").path());
    let r2 = {
        let ns = nameserver(&etcd, &["--state-dir", &state_arg]);
        let r2 = push_ok(&etcd, zones("192.0.2.2").path());
        // The revision is reported once it serves and is saved.
        wait_until(PROPAGATION, "the second revision", || {
            etcd_status(&ns)["config_revision"] == r2
        });
        assert_eq!(www(&ns), ip("192.0.2.2"));
        r2
    };
    etcd.kill();
    // Without a saved revision there is nothing to serve: start-up fails, saying why.
    let out = run_serve(Path::new(NOT_READ), &["--etcd", &etcd.url]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("--state-dir"), "{}", out.stderr);
    // With it, the last good revision serves.
    let ns = nameserver(&etcd, &["--state-dir", &state_arg]);
    assert_eq!(www(&ns), ip("192.0.2.2"));
    let st = etcd_status(&ns);
    assert_eq!(st["config_revision"], r2, "{st}");
    assert_eq!(st["from_state_dir"], true, "{st}");
    assert_eq!(st["connected"], false, "{st}");
    etcd.restart();
    wait_until(RECONNECT, "resynced from etcd", || {
        let st = etcd_status(&ns);
        st["connected"] == true && st["from_state_dir"] == false
    });
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn votes_through_etcd_move_answers_and_vanish_with_a_dead_probers_lease() {
    let etcd = Etcd::start();
    let lab = Lab::new();
    push_ok(&etcd, &lab.zones());
    let keys = lab.keys().display().to_string();
    let nss = [
        nameserver(&etcd, &["--keys", &keys]),
        nameserver(&etcd, &["--keys", &keys]),
    ];
    let prober = |id: &str, region: &str| {
        let mut args = crate::harness::probe_args(&lab.zones(), region, id, &lab.keys(), &[]);
        args.extend(["--etcd".to_string(), etcd.url.clone()]);
        Process::meridian(&format!("prober {id}"), &args)
    };
    // etcd only: no --publish.
    let _p1 = prober("p1", "eu");
    let mut p3 = prober("p3", "us");
    for ns in &nss {
        wait_all_up(ns, &["p1", "p3"], Duration::from_secs(10));
    }
    assert!(etcd.get("/meridian/votes/p1").is_some());
    for ns in &nss {
        assert!(ns.metric("meridian_etcd_votes_total{result=\"accepted\"}") >= 1.0);
        assert_eq!(ns.metric("meridian_reports_rejected_total"), 0.0);
    }

    // A failure both regions see moves both nameservers, within the bounds of HTTP push at
    // the same check settings (interval 1 s, fall 2): within 3 s, and within 0.5 s of each
    // other.
    lab.backend("www_a").stop();
    let started = Instant::now();
    let secondary: Ipv4Addr = "127.0.0.12".parse().unwrap();
    let mut moved: [Option<Duration>; 2] = [None, None];
    while moved.iter().any(Option::is_none) {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no failover: {moved:?}"
        );
        for (i, ns) in nss.iter().enumerate() {
            if moved[i].is_none() && served(ns, "www") == secondary {
                moved[i] = Some(started.elapsed());
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    let [a, b] = moved.map(Option::unwrap);
    eprintln!("failover through etcd: ns1 {a:?}, ns2 {b:?}");
    assert!(a.max(b) <= Duration::from_secs(3), "failover {a:?} / {b:?}");
    let apart = a.abs_diff(b);
    assert!(apart <= Duration::from_millis(500), "{apart:?} apart");

    // A prober killed without a word: its lease (3 intervals) expires, its key goes, and its
    // votes stop being fresh on every nameserver.
    p3.kill();
    wait_until(Duration::from_secs(8), "p3's vote key expires", || {
        etcd.get("/meridian/votes/p3").is_none()
    });
    for ns in &nss {
        wait_until(Duration::from_secs(5), "p3's votes stale", || {
            let st = status(ns);
            let e = endpoint_status(&st, "db", "127.0.0.31");
            fresh_vote(&e, "p3").is_none() && fresh_vote(&e, "p1").as_deref() == Some("up")
        });
    }
}

/// Push `n` of the leader-kill test: the health lab's zones (steered by votes) and two
/// static zones that both carry `n` (`www.v.test.` 192.0.2.n, `www.w.test.` 198.51.100.n),
/// so a push half applied would show as the two disagreeing.
fn numbered_push(lab: &Lab, n: u8) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["h.test.toml", "ca.pem"] {
        std::fs::copy(lab.zones().join(file), dir.path().join(file)).unwrap();
    }
    for (zone, net) in [("v.test.", "192.0.2"), ("w.test.", "198.51.100")] {
        let text = zone_text(&format!("{net}.{n}")).replace("e.test.", zone);
        std::fs::write(dir.path().join(format!("{zone}toml")), text).unwrap();
    }
    dir
}

/// The push number both static zones carry in etcd, read once etcd answers; panics if they
/// disagree (a push applied in part).
fn stored_push(etcd: &Etcd) -> u8 {
    let mut read = None;
    wait_until(RECONNECT, "etcd answers reads", || {
        read = ["v.test.toml", "w.test.toml"]
            .iter()
            .map(|f| etcd.try_get(&format!("/meridian/config/zones/{f}")))
            .collect::<Option<Vec<_>>>();
        read.is_some()
    });
    let numbers: Vec<u8> = read
        .unwrap()
        .into_iter()
        .map(|v| {
            let v = v.expect("both zones stored");
            // The last record is www's (the first is ns1's).
            let line = v.lines().rfind(|l| l.starts_with("data = [")).unwrap();
            let address: Ipv4Addr = line
                .trim_start_matches("data = [\"")
                .trim_end_matches("\"]")
                .parse()
                .unwrap();
            address.octets()[3]
        })
        .collect();
    assert_eq!(
        numbers[0], numbers[1],
        "a push applied in part: {numbers:?}"
    );
    numbers[0]
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn killing_the_etcd_leader_during_pushes_and_failovers_gives_no_wrong_answer_and_no_half_push() {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    let mut etcd = Etcd::cluster(3);
    let lab = Lab::new();
    push_ok(&etcd, numbered_push(&lab, 100).path());
    let keys = lab.keys().display().to_string();
    let nss = [
        nameserver(&etcd, &["--keys", &keys]),
        nameserver(&etcd, &["--keys", &keys]),
    ];
    // Probers on etcd alone: checks from the zones in etcd, votes into it.
    let _probers = [
        etcd_prober(&etcd, &lab, "p1", "a"),
        etcd_prober(&etcd, &lab, "p3", "b"),
    ];
    for ns in &nss {
        wait_all_up(ns, &["p1", "p3"], Duration::from_secs(10));
    }
    let (primary, secondary) = (ip("127.0.0.11"), ip("127.0.0.12"));
    // Every push numbered up to `highest` has started: an answer outside them is wrong.
    let highest = AtomicU8::new(100);
    let stop = AtomicBool::new(false);
    let (bad, asked) = thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut bad = Vec::new();
            let mut asked = 0;
            while !stop.load(Ordering::Relaxed) {
                for (i, ns) in nss.iter().enumerate() {
                    let top = highest.load(Ordering::Relaxed);
                    for (name, net) in [
                        ("www.v.test.", [192, 0, 2]),
                        ("www.w.test.", [198, 51, 100]),
                    ] {
                        let answer = ns.a(name);
                        let ok = matches!(answer.as_slice(), [a] if a.octets()[..3] == net
                            && (100..=top).contains(&a.octets()[3]));
                        if !ok {
                            bad.push(format!("ns{} {name} {answer:?}", i + 1));
                        }
                    }
                    let www = ns.a("www.h.test.");
                    if www != primary && www != secondary {
                        bad.push(format!("ns{} www.h.test. {www:?}", i + 1));
                    }
                    asked += 3;
                }
                thread::sleep(Duration::from_millis(10));
            }
            (bad, asked)
        });
        // A failed assertion below must end the checker too, or the scope never ends.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        let mut applied = 100;
        let mut leader = 0;
        for n in 101..=110u8 {
            if n == 104 {
                leader = etcd.leader();
                eprintln!("killing the etcd leader m{leader}, stopping www's primary");
                etcd.kill_member(leader);
                // A failover decided from votes that travel through the cluster electing a
                // new leader.
                lab.backend("www_a").stop();
            }
            if n == 108 {
                for ns in &nss {
                    wait_until(RECONNECT, "failover through etcd", || {
                        ns.a("www.h.test.") == secondary
                    });
                }
                lab.backend("www_a").start();
            }
            // Push 106 meets a cluster without quorum (a second member killed): refused.
            let other = (leader + 1) % 3;
            if n == 106 {
                etcd.kill_member(other);
            }
            highest.store(n, Ordering::Relaxed);
            let out = push(&etcd, numbered_push(&lab, n).path(), &[]);
            if n == 106 {
                assert_eq!(out.code, Some(1), "a push without quorum: {out:?}");
                etcd.start_member(other);
                etcd.start_member(leader);
            }
            let stored = stored_push(&etcd);
            match out.code {
                Some(0) => {
                    assert_eq!(stored, n, "push {n} reported applied: {out:?}");
                    applied = n;
                }
                // Refused while the cluster elects a leader: nothing of it was written.
                Some(1) => {
                    eprintln!("push {n} refused: {}", out.stderr.trim());
                    assert_eq!(stored, applied, "push {n} was refused but landed");
                }
                _ => panic!("push {n}: {out:?}"),
            }
        }
        assert!(applied > 104, "no push applied after the leader was killed");
        let last = (
            ip(&format!("192.0.2.{applied}")),
            ip(&format!("198.51.100.{applied}")),
        );
        for ns in &nss {
            wait_until(
                RECONNECT,
                "the last push and the recovery everywhere",
                || {
                    ns.a("www.v.test.") == last.0
                        && ns.a("www.w.test.") == last.1
                        && ns.a("www.h.test.") == primary
                },
            );
        }
        drop(_stop);
        checker.join().unwrap()
    });
    eprintln!("{asked} answers checked during the run");
    assert!(asked > 300, "only {asked} queries");
    assert!(bad.is_empty(), "wrong or empty answers: {bad:?}");
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_nameserver_cut_off_from_etcd_keeps_its_table_and_converges_when_it_heals() {
    use crate::harness::etcd::Partition;
    let etcd = Etcd::start();
    push_ok(&etcd, zones("192.0.2.1").path());
    let partition = Partition::to(&etcd);
    let cut_off = Meridian::serve_dir(Path::new(NOT_READ), &["--etcd", &partition.url], false);
    let other = nameserver(&etcd, &[]);
    assert_eq!(www(&cut_off), ip("192.0.2.1"));

    // Packets lost, nothing refused: only the ping can tell.
    partition.cut();
    let r2 = push_ok(&etcd, zones("192.0.2.2").path());
    wait_until(PROPAGATION, "the connected nameserver follows", || {
        www(&other) == ip("192.0.2.2")
    });
    wait_until(Duration::from_secs(5), "the partition reported", || {
        etcd_status(&cut_off)["connected"] == false
    });
    for _ in 0..20 {
        assert_eq!(www(&cut_off), ip("192.0.2.1"), "the last table serves");
        thread::sleep(Duration::from_millis(50));
    }

    partition.heal();
    // Converged: the current answer and the current revision, reported.
    let took = wait_until(
        Duration::from_secs(5),
        "converged after the partition",
        || {
            let st = etcd_status(&cut_off);
            www(&cut_off) == ip("192.0.2.2")
                && st["connected"] == true
                && st["config_revision"] == r2
        },
    );
    eprintln!("converged {took:?} after the partition healed");
    assert!(
        took <= Duration::from_secs(2),
        "took {took:?} (the bound: 2 s)"
    );
}

/// `meridian probe --etcd` without `--zones`: its checks come from the zones in etcd.
fn etcd_prober_args(etcd: &Etcd, lab: &Lab, id: &str, region: &str) -> Vec<String> {
    let keys = lab.keys().display().to_string();
    [
        "probe",
        "--region",
        region,
        "--id",
        id,
        "--key-file",
        &keys,
        "--etcd",
        &etcd.url,
    ]
    .map(String::from)
    .to_vec()
}

/// A prober that takes its zones from etcd (no `--zones`).
fn etcd_prober(etcd: &Etcd, lab: &Lab, id: &str, region: &str) -> Process {
    Process::meridian(
        &format!("prober {id}"),
        &etcd_prober_args(etcd, lab, id, region),
    )
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_prober_checks_the_zones_in_etcd_and_follows_a_push_without_restarting() {
    let etcd = Etcd::start();
    let lab = Lab::new();
    push_ok(&etcd, &lab.zones());
    let keys = lab.keys().display().to_string();
    let ns = nameserver(&etcd, &["--keys", &keys]);
    let mut p1 = etcd_prober(&etcd, &lab, "p1", "a");
    let ready = p1.ready.clone().unwrap_or_default();
    assert!(ready.contains("endpoints=6"), "{ready:?}");
    wait_all_up(&ns, &["p1"], Duration::from_secs(10));

    // A pushed zone with one more endpoint, on a port that accepts connections (the `db`
    // check is a TCP connect): the running prober checks it and its vote reaches the
    // nameserver.
    let listener = std::net::TcpListener::bind("127.0.0.33:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let zone = lab.zones().join("h.test.toml");
    let mut text = std::fs::read_to_string(&zone).unwrap();
    // The last table of the template is service.db's endpoint list: this extends it.
    text.push_str(&format!(
        "\n[[service.db.endpoint]]\nregion = \"b\"\naddress = \"127.0.0.33\"\nprobe_port = {port}\n"
    ));
    let next = tempfile::tempdir().unwrap();
    std::fs::write(next.path().join("h.test.toml"), &text).unwrap();
    std::fs::copy(lab.zones().join("ca.pem"), next.path().join("ca.pem")).unwrap();
    let pushed = Instant::now();
    push_ok(&etcd, next.path());
    wait_until(
        Duration::from_secs(10),
        "p1's vote on the new endpoint",
        || {
            let st = status(&ns);
            st["services"].to_string().contains("127.0.0.33")
                && fresh_vote(&endpoint_status(&st, "db", "127.0.0.33"), "p1").as_deref()
                    == Some("up")
        },
    );
    eprintln!(
        "push to the new endpoint's first vote: {:?}",
        pushed.elapsed()
    );
    assert!(p1.alive(), "the prober was not restarted");
    assert!(p1.log().contains("probe targets from etcd"), "{}", p1.log());

    // A zone written past `config push` that does not load: the prober says so and keeps
    // checking its last good version (its votes on the new endpoint stay fresh) ...
    etcd.put(
        "/meridian/config/zones/h.test.toml",
        &text.replace("policy = \"failover\"", "policy = \"no-such-policy\""),
    );
    wait_until(Duration::from_secs(5), "the bad zone reported", || {
        p1.log()
            .contains("zone from etcd rejected; checking its previous version")
    });
    // ... while another zone written beside it is checked too.
    let other = std::net::TcpListener::bind("127.0.0.34:0").unwrap();
    etcd.put(
        "/meridian/config/zones/x.test.toml",
        &format!(
            "origin = \"x.test.\"\nns = [\"ns1.x.test.\"]\n[soa]\nmname = \"ns1.x.test.\"\n\
             rname = \"admin.x.test.\"\nserial = 1\n\n[[record]]\nname = \"ns1\"\ntype = \"A\"\n\
             data = [\"192.0.2.53\"]\n\n[region.a]\n\n[check.db]\ntype = \"tcp\"\nport = {}\n\
             interval = 1\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n\n[service.api]\n\
             policy = \"failover\"\nfailover = [\"a\"]\nanswers = 1\nttl = 5\ncheck = \"db\"\n\
             [[service.api.endpoint]]\nregion = \"a\"\naddress = \"127.0.0.34\"\n",
            other.local_addr().unwrap().port()
        ),
    );
    let seen = Instant::now();
    wait_until(Duration::from_secs(10), "both zones checked", || {
        let st = status(&ns);
        let fresh = |service, address| {
            st["services"].to_string().contains(address)
                && fresh_vote(&endpoint_status(&st, service, address), "p1").as_deref()
                    == Some("up")
        };
        // Past the freshness window (3 intervals): votes written since the bad zone.
        seen.elapsed() > Duration::from_secs(4)
            && fresh("db", "127.0.0.33")
            && fresh("api", "127.0.0.34")
    });
    drop(listener);
}

#[test]
fn a_prober_whose_zones_come_from_an_unreachable_etcd_exits_1_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, format!("p1-k1 p1 {}\n", "ab".repeat(32))).unwrap();
    let port = crate::health_support::closed_port();
    let started = Instant::now();
    let out = run(&[
        "probe",
        "--region",
        "a",
        "--id",
        "p1",
        "--key-file",
        &keys.display().to_string(),
        "--etcd",
        &format!("http://127.0.0.1:{port}"),
    ]);
    // Not a configuration error (2): etcd may come back, so a supervisor should restart it.
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("the zones to check come from etcd and no revision is saved (give --state-dir, or --zones)"),
        "{}",
        out.stderr
    );
    eprintln!("gave up after {:?}", started.elapsed());
}

#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn with_etcd_down_health_still_arrives_over_http_push_from_probers_configured_for_both() {
    let mut etcd = Etcd::start();
    let lab = Lab::new();
    push_ok(&etcd, &lab.zones());
    let keys = lab.keys().display().to_string();
    let ns = nameserver(&etcd, &["--keys", &keys]);
    let url = format!("http://{}/v1/reports", ns.api);
    let prober = |id: &str, region: &str| {
        let mut args = crate::harness::probe_args(
            &lab.zones(),
            region,
            id,
            &lab.keys(),
            std::slice::from_ref(&url),
        );
        args.extend(["--etcd".to_string(), etcd.url.clone()]);
        Process::meridian(&format!("prober {id}"), &args)
    };
    let _probers = [prober("p1", "a"), prober("p3", "b")];
    wait_all_up(&ns, &["p1", "p3"], Duration::from_secs(10));
    // Both paths carry the votes (the copy that comes second counts as a duplicate).
    wait_until(Duration::from_secs(5), "votes read from etcd too", || {
        ns.get("/metrics")
            .body
            .contains("meridian_etcd_votes_total{result=")
    });

    etcd.kill();
    wait_until(RECONNECT, "etcd reported down", || {
        etcd_status(&ns)["connected"] == false
    });
    // Votes keep arriving over HTTP: a failure still moves answers (the bound of HTTP push).
    lab.backend("www_a").stop();
    let took = wait_until(Duration::from_secs(8), "failover without etcd", || {
        served(&ns, "www") == "127.0.0.12".parse::<Ipv4Addr>().unwrap()
    });
    eprintln!("failover with etcd down, over HTTP push: {took:?}");
    assert!(took <= Duration::from_secs(3), "took {took:?}");
    let st = status(&ns);
    assert_eq!(
        fresh_vote(&endpoint_status(&st, "www", "127.0.0.11"), "p3").as_deref(),
        Some("down"),
        "{st:#}"
    );
}

/// A prober of 10,000 endpoints votes through an etcd at its default limits. With names as
/// long as these its report is about 1.6 MB of JSON, and etcd refuses a put over
/// `--max-request-bytes` (1.5 MiB): stored as it was, the vote never reached a nameserver.
/// Every endpoint is probed at one closed port (`probe_address`), so the 10,000 votes cost
/// one check per interval.
#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_prober_of_ten_thousand_endpoints_votes_through_etcd_at_its_default_limits() {
    let etcd = Etcd::start();
    let many = crate::health_support::ManyEndpoints::new(100, 100);
    push_ok(&etcd, &many.zones);
    let ns = nameserver(&etcd, &["--keys", many.keys.to_str().unwrap()]);
    let _prober = many.prober(&[], &["--etcd".to_string(), etcd.url.clone()]);
    // The series appears with the first vote set read.
    wait_until(
        Duration::from_secs(20),
        "a vote set accepted from etcd",
        || {
            let page = ns.get("/metrics").body;
            crate::harness::metrics::sum(&page, "meridian_etcd_votes_total{result=\"accepted\"}")
                .is_some_and(|n| n >= 1.0)
        },
    );
    assert!(etcd.get("/meridian/votes/p1").is_some());
    many.wait_last_voted_down(&ns, Duration::from_secs(30));
    assert_eq!(ns.metric("meridian_reports_rejected_total"), 0.0);
}

/// A prober whose zones come from etcd keeps the last revision that loaded in `--state-dir`
/// and, restarted while etcd is down, checks it (before, it could not start until etcd was
/// back, and its region's health went unknown): its votes reach the nameservers over HTTP
/// push.
#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_prober_restarted_while_etcd_is_down_checks_the_revision_in_its_state_dir() {
    let mut etcd = Etcd::start();
    let lab = Lab::new();
    push_ok(&etcd, &lab.zones());
    let ns = lab.nameserver(&[]);
    let state = tempfile::tempdir().unwrap();
    let mut args = etcd_prober_args(&etcd, &lab, "p1", "a");
    args.extend([
        "--state-dir".to_string(),
        state.path().display().to_string(),
        "--publish".to_string(),
        format!("http://{}/v1/reports", ns.api),
    ]);
    let prober = || Process::meridian("prober p1", &args);
    let mut first = prober();
    wait_all_up(&ns, &["p1"], Duration::from_secs(10));
    let saved = state.path().join("etcd/good/h.test.toml");
    wait_until(Duration::from_secs(5), "the revision saved", || {
        saved.exists()
    });
    first.kill();
    etcd.kill();
    // The first process's votes go stale (3 intervals) before the second one starts.
    wait_until(Duration::from_secs(8), "p1's votes stale", || {
        fresh_vote(&endpoint_status(&status(&ns), "www", "127.0.0.11"), "p1").is_none()
    });
    let second = prober();
    let ready = second.ready.clone().unwrap_or_default();
    assert!(ready.contains("endpoints=6"), "{ready:?}");
    assert!(
        second
            .log()
            .contains("serving the revision saved in the state directory"),
        "{}",
        second.log()
    );
    wait_all_up(&ns, &["p1"], Duration::from_secs(10));
}

/// etcd must run with compaction (every vote is a new revision, docs/operations.md): nothing
/// Meridian does needs the history. After a compaction up to the current revision a push
/// still reaches a watching nameserver, a nameserver started afterwards reads the current
/// zones, and `--if-revision` compares against the current revision.
#[test]
#[ignore = "system test: needs etcd (etcd-server)"]
fn a_compacted_etcd_loses_no_push_and_no_nameserver() {
    let etcd = Etcd::start();
    push_ok(&etcd, zones("192.0.2.1").path());
    let ns = nameserver(&etcd, &[]);
    let mut last = 0;
    for i in 2..=4 {
        last = push_ok(&etcd, zones(&format!("192.0.2.{i}")).path());
    }
    wait_until(PROPAGATION, "the pushes followed", || {
        www(&ns) == ip("192.0.2.4")
    });
    etcd.ctl(&["compact", &last.to_string()]);
    let after = push_ok(&etcd, zones("192.0.2.5").path());
    wait_until(PROPAGATION, "a push after the compaction", || {
        www(&ns) == ip("192.0.2.5")
    });
    let late = nameserver(&etcd, &[]);
    assert_eq!(www(&late), ip("192.0.2.5"));
    assert_eq!(etcd_status(&late)["config_revision"], after);
    let out = push(
        &etcd,
        zones("192.0.2.6").path(),
        &["--if-revision", &after.to_string()],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    wait_until(PROPAGATION, "the conditional push", || {
        www(&ns) == ip("192.0.2.6") && www(&late) == ip("192.0.2.6")
    });
}
