//! DNS over TLS, HTTPS and QUIC: every transport gives the bytes UDP gives (a static, a
//! steered with ECS and a negative answer), certificates verify (and fail to when expired
//! or issued for another name), DoH rejects malformed requests, the certificate reloads and
//! survives a bad reload, the limits hold.
//!
//! The Rust clients (`harness::tls`: rustls, quinn) run everywhere; `dig`/`kdig` are the
//! second opinion in the system tests at the end.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::tls::{
    Issued, SERVER_NAME, TestPki, client_config, doh_get_target, doh_request, doq_exchange,
    dot_ask, dot_exchange, peer_leaf, tls_args, tls_connect,
};
use crate::harness::{Meridian, Query, fixture, run_serve, system, wait_until};
use crate::steering_support::CITY_DB;

/// A query's name, ECS option (address, source prefix) and expected RCODE.
type Case = (&'static str, Option<(&'static str, u8)>, ResponseCode);

/// The three answers every transport must give as UDP does.
const CASES: [Case; 3] = [
    ("static.steer.test.", None, ResponseCode::NoError),
    (
        "geo.steer.test.",
        Some(("2.2.3.0", 25)),
        ResponseCode::NoError,
    ),
    ("nothing.steer.test.", None, ResponseCode::NXDomain),
];

/// The steering fixture with the City test database, `issued` as the certificate and every
/// encrypted listener on an ephemeral loopback port, plus `extra`.
fn serve_encrypted(issued: &Issued, extra: &[&str]) -> Meridian {
    let mut args: Vec<String> = vec!["--geoip".into(), CITY_DB.into()];
    for flag in ["--dot-listen", "--doh-listen", "--doq-listen"] {
        args.push(flag.into());
        args.push("127.0.0.1:0".into());
    }
    args.extend(tls_args(issued));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Meridian::serve_with("steering", &args)
}

/// The wire query of a case, with message ID 0 (RFC 9250 §4.2.1 and RFC 8484 §4.1 ask for
/// it; with it every transport's answer is byte for byte comparable).
fn case_query(name: &str, ecs: Option<(&str, u8)>) -> Vec<u8> {
    let q = Query::new(name, RecordType::A).id(0).edns(1232);
    match ecs {
        Some((addr, len)) => q.ecs(addr.parse().unwrap(), len),
        None => q,
    }
    .to_bytes()
}

#[test]
fn every_transport_answers_what_udp_answers() {
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME, "127.0.0.1"], false);
    let ns = serve_encrypted(&issued, &[]);
    let ca = pki.ca_der();
    let (dot, doh, doq) = (ns.listener("dot"), ns.listener("doh"), ns.listener("doq"));
    for (name, ecs, rcode) in CASES {
        let query = case_query(name, ecs);
        let udp = ns.send_raw_udp(&query, Duration::from_secs(3)).unwrap();
        let decoded = Message::from_vec(&udp).unwrap();
        assert_eq!(decoded.metadata.response_code, rcode, "{name}: udp rcode");
        if ecs.is_some() {
            assert_eq!(
                crate::harness::a_records(&decoded),
                ["192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap()],
                "{name}: GB client steered to eu-west"
            );
        }
        assert_eq!(dot_exchange(dot, &ca, &query).unwrap(), udp, "{name}: DoT");
        assert_eq!(doq_exchange(doq, &ca, &query).unwrap(), udp, "{name}: DoQ");
        let get = doh_request(doh, &ca, "GET", &doh_get_target(&query), None, b"");
        assert_eq!(get.status, 200, "{name}: DoH GET");
        assert_eq!(get.header("content-type"), Some("application/dns-message"));
        assert_eq!(get.body, udp, "{name}: DoH GET");
        let post = doh_request(
            doh,
            &ca,
            "POST",
            "/dns-query",
            Some("application/dns-message"),
            &query,
        );
        assert_eq!(post.status, 200, "{name}: DoH POST");
        assert_eq!(post.body, udp, "{name}: DoH POST");
        // RFC 8484 §5.1: the freshness lifetime is the smallest TTL of the answer.
        let ttl = decoded
            .answers
            .iter()
            .chain(&decoded.authorities)
            .map(|r| r.ttl)
            .min()
            .unwrap();
        let want = format!("max-age={ttl}");
        assert_eq!(post.header("cache-control"), Some(want.as_str()), "{name}");
    }
    // Counted under each transport, with the existing metric names.
    assert_eq!(ns.metric(r#"meridian_queries_total{transport="tls"}"#), 3.0);
    assert_eq!(
        ns.metric(r#"meridian_queries_total{transport="quic"}"#),
        3.0
    );
    assert_eq!(
        ns.metric(r#"meridian_queries_total{transport="https"}"#),
        6.0
    );
    assert_eq!(
        ns.metric(r#"meridian_queries_total{transport="https",rcode="NXDOMAIN"}"#),
        2.0
    );
    assert_eq!(ns.metric(r#"meridian_queries_total{transport="udp"}"#), 3.0);
    assert_eq!(ns.metric(r#"meridian_queries_total{transport="tcp"}"#), 0.0);
    assert_eq!(ns.metric("meridian_ecs_queries_total"), 5.0);
    assert_eq!(
        ns.metric(r#"meridian_encrypted_connections_total{transport="tls"}"#),
        3.0
    );
}

#[test]
fn dot_answers_pipelined_queries_in_order() {
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &[]);
    let mut s = tls_connect(
        ns.listener("dot"),
        SERVER_NAME,
        client_config(&pki.ca_der(), &[b"dot"]),
    )
    .unwrap();
    // Three queries written before any answer is read (RFC 7766 §6.2.1.1).
    let mut burst = Vec::new();
    for (id, (name, ecs, _)) in CASES.iter().enumerate() {
        let q = Query::new(name, RecordType::A).id(id as u16 + 1).edns(1232);
        let q = match ecs {
            Some((a, l)) => q.ecs(a.parse().unwrap(), *l),
            None => q,
        };
        burst.extend(crate::harness::frame(&q.to_bytes()));
    }
    std::io::Write::write_all(&mut s, &burst).unwrap();
    for (id, (name, _, rcode)) in CASES.iter().enumerate() {
        let reply = Message::from_vec(&read_dot_reply(&mut s)).unwrap();
        assert_eq!(reply.metadata.id, id as u16 + 1, "{name}: answers in order");
        assert_eq!(reply.metadata.response_code, *rcode, "{name}");
    }
}

/// Reads one length-framed reply from a DoT connection.
fn read_dot_reply(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
) -> Vec<u8> {
    use std::io::Read;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn doh_rejects_malformed_requests() {
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &[]);
    let (doh, ca) = (ns.listener("doh"), pki.ca_der());
    let query = case_query("static.steer.test.", None);
    // (method, target, content type, body, status)
    type Request<'a> = (&'a str, String, Option<&'a str>, &'a [u8], u16);
    let cases: [Request<'_>; 8] = [
        ("GET", "/dns-query?dns=***".into(), None, b"", 400),
        ("GET", "/dns-query?dns=AAAB+AAB".into(), None, b"", 400), // base64, not base64url
        ("GET", "/dns-query".into(), None, b"", 400),
        ("GET", "/dns-query?dns=AAAB".into(), None, b"", 400), // 3 bytes: no DNS header
        ("POST", "/dns-query".into(), Some("text/plain"), &query, 415),
        (
            "POST",
            "/dns-query".into(),
            Some("application/dns-message"),
            b"\x00\x01",
            400,
        ),
        (
            "GET",
            format!("/resolve{}", &doh_get_target(&query)[10..]),
            None,
            b"",
            404,
        ),
        (
            "PUT",
            "/dns-query".into(),
            Some("application/dns-message"),
            &query,
            405,
        ),
    ];
    for (method, target, ct, body, want) in cases {
        let r = doh_request(doh, &ca, method, &target, ct, body);
        assert_eq!(
            r.status,
            want,
            "{method} {target}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // The listener still answers.
    let r = doh_request(doh, &ca, "GET", &doh_get_target(&query), None, b"");
    assert_eq!(r.status, 200);
}

#[test]
fn verifying_clients_refuse_expired_and_wrong_name_certificates() {
    let pki = TestPki::new();
    let ca = pki.ca_der();
    let query = case_query("static.steer.test.", None);
    for (stem, names, expired, want) in [
        ("expired", &[SERVER_NAME][..], true, "expired"),
        ("other", &["other.test"][..], false, "not valid for name"),
    ] {
        let issued = pki.issue(stem, names, expired);
        let ns = serve_encrypted(&issued, &[]);
        let err = dot_exchange(ns.listener("dot"), &ca, &query).unwrap_err();
        assert!(err.contains(want), "{stem}: DoT handshake error {err:?}");
        let err = doq_exchange(ns.listener("doq"), &ca, &query).unwrap_err();
        assert!(
            err.to_lowercase().contains("certificate") || err.contains(want),
            "{stem}: DoQ handshake error {err:?}"
        );
        wait_until(Duration::from_secs(3), "handshake failures counted", || {
            ns.metric(r#"meridian_tls_handshake_failures_total{transport="tls"}"#) >= 1.0
        });
    }
}

#[test]
fn a_bad_certificate_on_reload_keeps_the_old_one() {
    let pki = TestPki::new();
    let first = pki.issue("first", &[SERVER_NAME], false);
    let serving = pki.issue("serving", &[SERVER_NAME], false);
    std::fs::copy(&first.cert, &serving.cert).unwrap();
    std::fs::copy(&first.key, &serving.key).unwrap();
    let ns = serve_encrypted(&serving, &[]);
    let (dot, ca) = (ns.listener("dot"), pki.ca_der());
    let leaf = || {
        let s = tls_connect(dot, SERVER_NAME, client_config(&ca, &[b"dot"])).unwrap();
        peer_leaf(&s)
    };
    assert_eq!(leaf(), first.der);

    // A key that does not match the certificate: rejected, reported, the old one serves.
    let stranger = pki.issue("stranger", &[SERVER_NAME], false);
    std::fs::copy(&stranger.key, &serving.key).unwrap();
    ns.signal("HUP");
    wait_until(
        Duration::from_secs(5),
        "the bad certificate reported",
        || ns.metric(r#"meridian_tls_certificate_reloads_total{result="error"}"#) == 1.0,
    );
    assert_eq!(leaf(), first.der, "the previous certificate keeps serving");
    assert!(
        ns.log().contains("tls certificate rejected"),
        "{}",
        ns.log()
    );
    assert_eq!(ns.metric(r#"meridian_reloads_total{result="failed"}"#), 1.0);

    // A good pair: new handshakes get it.
    let second = pki.issue("second", &[SERVER_NAME], false);
    std::fs::copy(&second.cert, &serving.cert).unwrap();
    std::fs::copy(&second.key, &serving.key).unwrap();
    ns.signal("HUP");
    wait_until(Duration::from_secs(5), "the new certificate taken", || {
        ns.metric(r#"meridian_tls_certificate_reloads_total{result="ok"}"#) == 1.0
    });
    assert_eq!(leaf(), second.der);
    let query = case_query("static.steer.test.", None);
    assert!(dot_exchange(dot, &ca, &query).is_ok());
}

#[test]
fn a_listen_flag_without_a_certificate_stops_start_up() {
    for flag in ["--dot-listen", "--doh-listen", "--doq-listen"] {
        let out = run_serve(&fixture("steering"), &[flag, "127.0.0.1:0"]);
        assert_eq!(out.code, Some(2), "{flag}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("{flag} needs --tls-cert and --tls-key")),
            "{flag}: {}",
            out.stderr
        );
    }
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    std::fs::write(&issued.key, "not a key").unwrap();
    let mut args = vec!["--dot-listen".to_string(), "127.0.0.1:0".into()];
    args.extend(tls_args(&issued));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_serve(&fixture("steering"), &args);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("ns.key"), "{}", out.stderr);
}

#[test]
fn connections_over_the_per_client_cap_are_refused() {
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &["--max-tls-connections-per-client", "1"]);
    let (dot, ca) = (ns.listener("dot"), pki.ca_der());
    let query = case_query("static.steer.test.", None);
    let mut held = tls_connect(dot, SERVER_NAME, client_config(&ca, &[b"dot"])).unwrap();
    dot_ask(&mut held, &query).unwrap();
    // The second connection from 127.0.0.1 is closed before its handshake.
    assert!(dot_exchange(dot, &ca, &query).is_err());
    assert_eq!(
        ns.metric(
            r#"meridian_encrypted_connections_refused_total{transport="tls",reason="per_client"}"#
        ),
        1.0
    );
    // The held one still answers; once it is closed, a new one is admitted.
    dot_ask(&mut held, &query).unwrap();
    drop(held);
    wait_until(Duration::from_secs(3), "the slot freed", || {
        dot_exchange(dot, &ca, &query).is_ok()
    });
}

#[test]
fn idle_dot_connections_are_closed() {
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &["--tls-idle-timeout", "1"]);
    let mut s = tls_connect(
        ns.listener("dot"),
        SERVER_NAME,
        client_config(&pki.ca_der(), &[b"dot"]),
    )
    .unwrap();
    dot_ask(&mut s, &case_query("static.steer.test.", None)).unwrap();
    // The server closes (close_notify, then EOF) once the connection was idle for 1 s; the
    // read below waits for that, bounded by the socket's 3 s timeout.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let r = std::io::Read::read(&mut s, &mut buf);
    let waited = started.elapsed();
    assert!(
        matches!(r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "{r:?}"
    );
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(2900),
        "closed after {waited:?}"
    );
}

#[test]
fn a_dot_query_dripped_a_byte_at_a_time_is_cut_off() {
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &["--tls-idle-timeout", "1"]);
    let mut s = tls_connect(
        ns.listener("dot"),
        SERVER_NAME,
        client_config(&pki.ca_der(), &[b"dot"]),
    )
    .unwrap();
    let framed = crate::harness::frame(&case_query("static.steer.test.", None));
    let started = std::time::Instant::now();
    // A slow-loris client: one byte every 300 ms (pacing, not synchronisation). Each byte
    // is within the idle timeout of the previous one, but the message is not within 1 s of
    // its first byte, so the server closes it.
    let mut cut = None;
    for byte in &framed {
        if std::io::Write::write_all(&mut s, &[*byte]).is_err() || s.flush().is_err() {
            cut = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut = cut.unwrap_or_else(|| {
        // Every byte went out (the kernel buffers them): the server must not answer.
        let mut len = [0u8; 2];
        assert!(std::io::Read::read_exact(&mut s, &mut len).is_err());
        started.elapsed()
    });
    assert!(cut < Duration::from_secs(4), "connection held for {cut:?}");
    assert_eq!(ns.metric(r#"meridian_queries_total{transport="tls"}"#), 0.0);
}

#[test]
fn doq_closes_connections_that_send_a_nonzero_message_id() {
    // RFC 9250 §4.2.1: the ID must be 0; anything else is DOQ_PROTOCOL_ERROR.
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &[]);
    let query = Query::new("static.steer.test.", RecordType::A)
        .id(7)
        .to_bytes();
    let err = doq_exchange(ns.listener("doq"), &pki.ca_der(), &query).unwrap_err();
    assert!(
        err.contains("ApplicationClosed") && err.contains("error_code: 2"),
        "{err}"
    );
}

// ---- system tests: dig and kdig as the clients ----

/// Runs `tool ARGS` and returns its stdout (fails the test when the tool fails).
fn run_tool(tool: &str, args: &[String]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The answer's status and records as `dig`/`kdig` print them, without timings or IDs.
fn essence(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .lines()
        .filter(|l| {
            let l = l.trim();
            (!l.is_empty() && !l.starts_with(';'))
                || l.contains("->>HEADER<<-")
                || l.contains("CLIENT-SUBNET:")
        })
        .map(|l| {
            // The status and the echoed ECS (with its scope), as both tools word them.
            for key in ["status:", "CLIENT-SUBNET:"] {
                if let Some(i) = l.find(key) {
                    return l[i..].split([',', ';']).next().unwrap().trim().to_string();
                }
            }
            l.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    lines.sort();
    lines
}

#[test]
#[ignore = "system test: needs dig (bind9-dnsutils 9.18) and kdig (knot-dnsutils)"]
fn dig_and_kdig_over_tls_and_https_see_what_udp_sees() {
    system::require_tool("dig", "bind9-dnsutils");
    system::require_tool("kdig", "knot-dnsutils");
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME, "127.0.0.1"], false);
    let ns = serve_encrypted(&issued, &[]);
    let port = |name: &str| ns.listener(name).port().to_string();
    let ca = format!("+tls-ca={}", pki.ca_file().display());
    for (name, ecs, _) in CASES {
        let mut base = vec![name.to_string(), "A".into(), "+norec".into()];
        if let Some((a, l)) = ecs {
            base.push(format!("+subnet={a}/{l}"));
        }
        let with = |extra: &[&str]| -> Vec<String> {
            let mut v = vec!["@127.0.0.1".to_string()];
            v.extend(extra.iter().map(|s| s.to_string()));
            v.extend(base.iter().cloned());
            v
        };
        let udp = essence(&run_tool("dig", &with(&["-p", &ns.dns.port().to_string()])));
        assert!(udp.len() >= 2, "{udp:?}");
        if let Some((a, l)) = ecs {
            assert!(
                udp.contains(&format!("CLIENT-SUBNET: {a}/{l}/{l}")),
                "{udp:?}"
            );
        }
        let runs = [
            ("dig", with(&["-p", &port("dot"), "+tls"])),
            ("dig", with(&["-p", &port("doh"), "+https"])),
            ("dig", with(&["-p", &port("doh"), "+https-get"])),
            ("kdig", with(&["-p", &port("dot"), "+tls"])),
            (
                "kdig",
                with(&[
                    "-p",
                    &port("dot"),
                    &ca,
                    &format!("+tls-hostname={SERVER_NAME}"),
                ]),
            ),
            ("kdig", with(&["-p", &port("doh"), "+https"])),
            ("kdig", with(&["-p", &port("doh"), "+https-get"])),
        ];
        for (tool, args) in runs {
            let out = run_tool(tool, &args);
            // kdig prints the transport's name in its header; both print the same records.
            assert_eq!(essence(&out), udp, "{tool} {args:?}:\n{out}");
        }
    }
}

#[test]
#[ignore = "system test: needs kdig (knot-dnsutils)"]
fn kdig_refuses_expired_and_wrong_name_certificates() {
    system::require_tool("kdig", "knot-dnsutils");
    let pki = TestPki::new();
    let ca = format!("+tls-ca={}", pki.ca_file().display());
    let hostname = format!("+tls-hostname={SERVER_NAME}");
    for (stem, names, expired) in [
        ("good", &[SERVER_NAME][..], false),
        ("expired", &[SERVER_NAME][..], true),
        ("other", &["other.test"][..], false),
    ] {
        let issued = pki.issue(stem, names, expired);
        let ns = serve_encrypted(&issued, &[]);
        let out = Command::new("kdig")
            .args(["@127.0.0.1", "-p", &ns.listener("dot").port().to_string()])
            .args([ca.as_str(), hostname.as_str(), "+time=2", "+retry=0"])
            .args(["static.steer.test.", "A"])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let answered = text.contains("192.0.2.200");
        assert_eq!(answered, stem == "good", "{stem}: kdig said\n{text}");
        if stem != "good" {
            assert!(text.contains("TLS, handshake failed"), "{stem}: {text}");
        }
    }
}

#[test]
#[ignore = "system test: needs unbound and dig"]
fn unbound_resolves_through_meridian_over_verified_dot() {
    // A resolver reaching the authoritative over DoT, verifying its certificate: Unbound's
    // stub zone with `stub-tls-upstream` (RFC 9539's opportunistic probing is the unverified
    // version of the same path).
    system::require_tool("unbound", "unbound");
    system::require_tool("dig", "bind9-dnsutils");
    let pki = TestPki::new();
    let issued = pki.issue("ns", &[SERVER_NAME], false);
    let ns = serve_encrypted(&issued, &[]);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = pki.dir();
    let conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  \
             username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  \
             use-syslog: no\n  logfile: \"\"\n  do-not-query-localhost: no\n  \
             access-control: 127.0.0.0/8 allow\n  tls-cert-bundle: \"{ca}\"\n  \
             module-config: \"iterator\"\n  local-zone: \"test.\" transparent\n\
             remote-control:\n  control-enable: no\n\
             stub-zone:\n  name: \"steer.test\"\n  stub-addr: 127.0.0.1@{dot}#{SERVER_NAME}\n  \
             stub-tls-upstream: yes\n",
        dir = dir.display(),
        ca = pki.ca_file().display(),
        dot = ns.listener("dot").port(),
    );
    let _unbound = crate::harness::unbound::spawn_with_config(dir, &conf);
    let ask = |name: &str, extra: &[&str]| -> String {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+time=2",
                "+tries=1",
                "+short",
            ])
            .args(extra)
            .args([name, "A"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    wait_until(Duration::from_secs(10), "unbound answers", || {
        ask("static.steer.test.", &[]) == "192.0.2.200"
    });
    // Without its subnetcache module Unbound sends no ECS: the resolver's own address
    // (127.0.0.1, not in the GeoIP database) gets the default region.
    assert_eq!(ask("geo.steer.test.", &[]), "192.0.2.100");
    assert!(ns.metric(r#"meridian_queries_total{transport="tls"}"#) >= 2.0);
    assert_eq!(ns.metric(r#"meridian_queries_total{transport="udp"}"#), 0.0);
}
